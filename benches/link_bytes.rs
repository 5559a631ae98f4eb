//! Link bytes per room message, presence change and join, for K occupants
//! at a site and 2 at HQ, measured on the simulated link (application
//! payload, compressed as on a real link: what TLS carries, before its ~22
//! bytes per record). Bodies are 100 bytes of random words.
//!
//!     cargo bench --bench link_bytes
//!
//! Prosody's plain-federation figures (DESIGN §7, measured the same way on
//! loopback) are printed beside ours.

use outpost::sim::{Network, Shape};

mod common;
use common::{chat_line, hq_and_site, logged_in, HQ, ROOM, SITE};

fn join(net: &mut Network, node: usize, conn: u64, nick: &str, history: u32) {
    net.node(node).send(
        conn,
        &format!("<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='{history}'/></x></presence>"),
    );
    net.settle();
    net.advance(1_000); // Let acknowledgements cross too.
}

fn total(net: &Network) -> u64 {
    let (up, down) = net.link_bytes(SITE);
    up + down
}

fn measure(k: usize) -> (f64, f64, u64, u64) {
    let mut net = hq_and_site(Shape::default());
    net.node(HQ).add_user("kevin", "k");
    net.node(HQ).add_user("scott", "s");
    let kevin = net.node(HQ).login("kevin", "k", "hq");
    let scott = net.node(HQ).login("scott", "s", "hq");
    let locals = logged_in(&mut net, SITE, "u", k);
    net.advance(100);
    join(&mut net, HQ, kevin, "Kevin", 0);
    net.node(HQ).send(kevin, &format!("<iq type='set' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    join(&mut net, HQ, scott, "Scott", 0);
    for i in 0..20 {
        net.node(HQ).send(
            kevin,
            &format!(
                "<message to='{ROOM}' type='groupchat' id='h{i}'><body>{}</body></message>",
                chat_line(i as u64)
            ),
        );
    }
    net.settle();
    net.advance(1_000);
    // First join: the mirror is created and fetches 20 messages of history.
    net.reset_counters();
    join(&mut net, SITE, locals[0], "U0", 20);
    let first_join = total(&net);
    for (i, c) in locals.iter().enumerate().skip(1).take(k.saturating_sub(2)) {
        join(&mut net, SITE, *c, &format!("U{i}"), 20);
    }
    // The K-th join, once the room is mirrored.
    let kth_join = if k > 1 {
        net.reset_counters();
        join(&mut net, SITE, locals[k - 1], &format!("U{}", k - 1), 20);
        total(&net)
    } else {
        first_join
    };
    net.reset_counters();
    for i in 0..200 {
        net.node(HQ).send(
            kevin,
            &format!(
                "<message to='{ROOM}' type='groupchat' id='m{i}'><body>{}</body></message>",
                chat_line(100 + i as u64)
            ),
        );
        net.settle();
    }
    net.advance(1_000);
    let per_message = total(&net) as f64 / 200.0;
    net.reset_counters();
    for i in 0..50 {
        let show = if i % 2 == 0 { "away" } else { "dnd" };
        net.node(HQ).send(
            kevin,
            &format!("<presence to='{ROOM}/Kevin'><show>{show}</show></presence>"),
        );
        net.settle();
    }
    net.advance(1_000);
    let per_presence = total(&net) as f64 / 50.0;
    (per_message, per_presence, first_join, kth_join)
}

fn main() {
    println!("link bytes, K occupants at the site, 2 at HQ, 100-byte bodies, 20-message history");
    println!(
        "{:>3} {:>12} {:>12} {:>12} {:>12} | {:>12} {:>12} {:>8}",
        "K",
        "per message",
        "per presence",
        "first join",
        "K-th join",
        "prosody msg",
        "prosody pres",
        "msg ratio"
    );
    for k in [1usize, 5, 20] {
        let (m, p, first, kth) = measure(k);
        let prosody_msg = 368.0 * k as f64;
        let prosody_pres = 429.0 * k as f64;
        println!(
            "{k:>3} {m:>12.0} {p:>12.0} {first:>12} {kth:>12} | {prosody_msg:>12.0} {prosody_pres:>12.0} {:>7.1}x",
            prosody_msg / m
        );
    }
}
