//! Link bytes and time to converge after an outage, in the simulator: HQ
//! with 2 occupants, a site with K, a 9600 bit/s link with 300 ms latency each
//! way (600 ms round trip). During the outage HQ sends one 100-byte message
//! every 10 s and an HQ user leaves and rejoins every 10 minutes. After the
//! link returns we count the bytes until every site user has every message,
//! and compare them with the missed messages' bodies plus stanza-ids (the
//! issue's yardstick: at most 1.2x).
//!
//!     cargo bench --bench resync_bytes

use outpost::node::NodeConfig;
use outpost::sim::{Network, Shape};

const ROOM: &str = "chat@conference.fairfax.example";
const BODY: &str = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";
const LINK: Shape = Shape {
    latency_ms: 300,
    rate: 1200,
};

fn run(k: usize, outage_s: u64) -> (u64, u64, u64) {
    let mut net = Network::new();
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into()];
    let mut site = NodeConfig::new("raleigh.example");
    site.link.upstreams = vec!["conference.fairfax.example".into()];
    net.add_node(hq, 1);
    net.add_node(site, 2);
    net.add_link(1, 0, LINK);
    net.node(0).add_user("kevin", "k");
    net.node(0).add_user("scott", "s");
    let kevin = net.node(0).login("kevin", "k", "hq");
    let scott = net.node(0).login("scott", "s", "hq");
    let locals: Vec<u64> = (0..k)
        .map(|i| {
            net.node(1).add_user(&format!("u{i}"), "p");
            net.node(1).login(&format!("u{i}"), "p", "tv")
        })
        .collect();
    net.advance(100);
    let join = |net: &mut Network, node: usize, c: u64, nick: &str| {
        net.node(node).send(c, &format!("<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"));
    };
    join(&mut net, 0, kevin, "Kevin");
    net.settle();
    net.node(0).send(kevin, &format!("<iq type='set' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    join(&mut net, 0, scott, "Scott");
    for (i, c) in locals.iter().enumerate() {
        join(&mut net, 1, *c, &format!("U{i}"));
        net.advance(5_000);
    }
    net.advance(30_000);
    for c in &locals {
        net.node(1).take(*c);
    }
    net.cut(1);
    let mut sent = Vec::new();
    for t in 0..outage_s / 10 {
        let body = format!("{t:06} {BODY}");
        net.node(0).send(
            kevin,
            &format!("<message to='{ROOM}' type='groupchat'><body>{body}</body></message>"),
        );
        sent.push(body);
        if t % 60 == 59 {
            net.node(0).send(
                scott,
                &format!("<presence to='{ROOM}/Scott' type='unavailable'/>"),
            );
            join(&mut net, 0, scott, "Scott");
        }
        net.advance(10_000);
    }
    // The missed messages' bodies plus their ids, as the yardstick.
    let archive = &net.node(0).node.state().rooms["chat"].archive;
    let yardstick: u64 = archive
        .iter()
        .rev()
        .take(sent.len())
        .map(|m| (m.stanza_id.len() + BODY.len() + 7) as u64)
        .sum();
    net.reset_counters();
    net.restore(1);
    let start = net.now_ms;
    let mut seen = vec![String::new(); k];
    loop {
        net.advance(1_000);
        for (i, c) in locals.iter().enumerate() {
            seen[i].push_str(&net.node(1).take(*c));
        }
        if seen
            .iter()
            .all(|s| sent.iter().all(|b| s.contains(b.as_str())))
            || net.now_ms - start > 6 * 3_600_000
        {
            break;
        }
    }
    let elapsed = net.now_ms - start;
    net.advance(2_000);
    let (up, down) = net.link_bytes(1);
    (up + down, yardstick, elapsed)
}

fn main() {
    println!("resync after an outage: 9600 bit/s, 600 ms round trip, 1 message / 10 s, HQ presence churn");
    println!(
        "{:>8} {:>3} {:>12} {:>14} {:>7} {:>12}",
        "outage", "K", "link bytes", "bodies+ids", "ratio", "converged in"
    );
    for (outage, label) in [(60, "1 min"), (3_600, "1 hour")] {
        for k in [1, 20] {
            let (bytes, yardstick, ms) = run(k, outage);
            println!(
                "{label:>8} {k:>3} {bytes:>12} {yardstick:>14} {:>6.2}x {:>10.1} s",
                bytes as f64 / yardstick as f64,
                ms as f64 / 1000.0
            );
        }
    }
}
