//! Heap held by room fan-out: 1,000 occupants who have not read yet, 200
//! messages of 100-byte bodies; the growth of the node's live heap (counted
//! by this program's allocator, less what the simulator holds as written to
//! the sockets: each client's 64 KiB window), per delivery, beside the
//! bytes each recipient is sent (what one copy per recipient would hold).
//!
//!     cargo bench --bench fanout_memory

use outpost::node::NodeConfig;
use outpost::sim::SimNode;

#[allow(dead_code)]
mod common;
use common::chat_line;

#[path = "common/counting.rs"]
mod counting;
use counting::{live, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const OCCUPANTS: usize = 1000;
const MESSAGES: usize = 200;
const ROOM: &str = "big@conference.localhost";

fn main() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.max_unauthenticated = 2 * OCCUPANTS;
    cfg.max_unauthenticated_per_address = 2 * OCCUPANTS;
    let mut sim = SimNode::new(cfg, 7);
    let mut conns = Vec::new();
    for i in 0..OCCUPANTS {
        let user = format!("u{i}");
        sim.add_user(&user, "p");
        let conn = sim.login(&user, "p", "r");
        let nick = format!("N{i}");
        sim.send(conn, &format!("<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"));
        if i == 0 {
            sim.send(conn, &format!("<iq type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_maxusers'><value>1000</value></field></x></query></iq>"));
        }
        conns.push(conn);
    }
    // Everyone has read what came so far; from now on nobody reads.
    for c in &conns {
        sim.take(*c);
    }
    let before = live();
    for m in 0..MESSAGES {
        let line = chat_line(m as u64);
        sim.send(
            conns[0],
            &format!(
                "<message to='{ROOM}' type='groupchat' id='m{m}'><body>{line}</body></message>"
            ),
        );
    }
    // What the simulator holds as written to sockets is not the node's.
    let grown = live() - before - sim.outbox_heap_bytes();
    let released = sim.unread_bytes();
    let sent_to_one = sim.take(conns[OCCUPANTS - 1]).len();
    assert_eq!(
        sim.take(conns[1]).matches("<body>").count(),
        MESSAGES,
        "every message reached every occupant"
    );
    let per_delivery = sent_to_one as f64 / MESSAGES as f64;
    // Deliveries past the clients' windows, waiting in the node.
    let waiting = (OCCUPANTS * MESSAGES) as f64 - released as f64 / per_delivery;
    println!(
        "room fan-out, {OCCUPANTS} occupants not reading, {MESSAGES} messages of 100-byte bodies"
    );
    println!(
        "{waiting:.0} deliveries wait in the node past the clients' windows: heap growth {:.1} MB, \
         {:.0} B per waiting delivery of {per_delivery:.0} B",
        grown as f64 / 1e6,
        grown as f64 / waiting,
    );
}
