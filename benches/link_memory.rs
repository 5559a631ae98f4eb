//! HQ heap per link, busy and idle, with 1, 100 and 1,000 sites: live heap
//! bytes of one HQ node (counted by this program's allocator) divided by
//! the number of links. The sites are scripted streams, so only HQ's heap
//! is counted. Beside it, the same HQ with sites of the release before
//! compression state was released (their hello lacks `z-restart`).
//!
//!     cargo bench --bench link_memory
//!
//! Busy: both directions mid-stream (a compressor and an inflater held).
//! Idle: 31 s later, the sites having ended their streams.

use outpost::node::{Event, NodeConfig};
use outpost::sim::SimNode;

#[path = "common/counting.rs"]
mod counting;
use counting::{live, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A DEFLATE stored block: what a scripted site sends, needing no compressor.
fn stored(data: &[u8], last: bool) -> Vec<u8> {
    let len = data.len() as u16;
    let mut out = vec![u8::from(last)];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// (busy, idle) heap bytes per link at HQ with `n` sites.
fn measure(n: usize, restarting_sites: bool) -> (usize, usize) {
    let site = |i: usize| format!("site{i}.example");
    let mut cfg = NodeConfig::new("fairfax.example");
    cfg.link.peers = (0..n).map(site).collect();
    let mut hq = SimNode::new(cfg, 1);
    hq.advance(1);
    let base = live();
    let mut conns = Vec::new();
    for i in 0..n {
        let conn = hq.alloc_conn();
        hq.event(Event::LinkUp {
            conn,
            peer: site(i).into(),
        });
        let restart = if restarting_sites {
            " z-restart='1'"
        } else {
            ""
        };
        let opening = format!(
            "<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' from='{}'><hello received='0' epoch='e'{restart}/>",
            site(i)
        );
        let mut bytes = b"Z".to_vec();
        bytes.extend(stored(opening.as_bytes(), false));
        hq.event(Event::Data { conn, bytes });
        hq.take_bytes(conn);
        conns.push(conn);
    }
    hq.advance(1_000);
    conns.iter().for_each(|c| drop(hq.take_bytes(*c)));
    let busy = (live() - base) / n;
    for &conn in &conns {
        if restarting_sites {
            // The site went idle: it ends its stream.
            hq.event(Event::Data {
                conn,
                bytes: stored(b"", true),
            });
        } else {
            // A keepalive, in the stream that never ends.
            hq.event(Event::Data {
                conn,
                bytes: stored(b" ", false),
            });
        }
    }
    hq.advance(outpost::link::DEFLATE_IDLE_MS + 1_000);
    conns.iter().for_each(|c| drop(hq.take_bytes(*c)));
    let idle = (live() - base) / n;
    (busy, idle)
}

fn main() {
    println!("HQ heap per link (bytes), scripted sites");
    println!(
        "{:>6} {:>10} {:>10} | {:>16} {:>16}",
        "sites", "busy", "idle", "busy, old sites", "idle, old sites"
    );
    for n in [1, 100, 1000] {
        let (busy, idle) = measure(n, true);
        let (old_busy, old_idle) = measure(n, false);
        println!("{n:>6} {busy:>10} {idle:>10} | {old_busy:>16} {old_idle:>16}");
    }
}
