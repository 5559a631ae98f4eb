//! Link bytes and time to converge after an outage, in the simulator: HQ
//! with 2 occupants, a site with K, a 9600 bit/s link with 300 ms latency each
//! way (600 ms round trip). During the outage HQ sends one 100-byte message
//! (random words) every 10 s and an HQ user leaves and rejoins every 10 minutes. After the
//! link returns we count the bytes until every site user has every message,
//! and compare them with the missed messages' bodies plus stanza-ids (the
//! issue's yardstick: at most 1.2x).
//!
//! In the same run, the reference "part and full rejoin" (what XEP-0289
//! suggests, and what clients do across plain federation or when they use HQ
//! directly): K clients at the site that talk to HQ's server across the link
//! each rejoin with the history since the outage began. Their bytes are the
//! room traffic only (join, presences, history); logging in again would add
//! more, so the reference is if anything flattered.
//!
//!     cargo bench --bench resync_bytes

use outpost::sim::{Network, Shape};

mod common;
use common::{chat_line, hq_and_site, logged_in, BODY_LEN, HQ, ROOM, SITE};

const LINK: Shape = Shape {
    latency_ms: 300,
    rate: 1200,
};

struct Outcome {
    link_bytes: u64,
    yardstick: u64,
    converged_ms: u64,
    rejoin_bytes: u64,
}

/// `k` people at the site, behind its Outpost node, or (`direct`) using
/// HQ's server across the link themselves.
fn run(k: usize, outage_s: u64, direct: bool) -> Outcome {
    let (k, k_direct) = if direct { (0, k) } else { (k, 0) };
    let mut net = hq_and_site(LINK);
    net.node(HQ).add_user("kevin", "k");
    net.node(HQ).add_user("scott", "s");
    let kevin = net.node(HQ).login("kevin", "k", "hq");
    // The reference: the same K people using HQ's server across the link.
    let direct = logged_in(&mut net, HQ, "r", k_direct);
    let scott = net.node(HQ).login("scott", "s", "hq");
    let locals = logged_in(&mut net, SITE, "u", k);
    net.advance(100);
    let join = |net: &mut Network, node: usize, c: u64, nick: &str| {
        net.node(node).send(c, &format!("<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"));
    };
    join(&mut net, HQ, kevin, "Kevin");
    net.settle();
    // History long enough for the reference's rejoin to fetch a whole hour.
    net.node(HQ).send(kevin, &format!("<iq type='set' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_historylength'><value>1000</value></field></x></query></iq>"));
    join(&mut net, HQ, scott, "Scott");
    for (i, c) in locals.iter().enumerate() {
        join(&mut net, SITE, *c, &format!("U{i}"));
        net.advance(5_000);
    }
    for (i, c) in direct.iter().enumerate() {
        join(&mut net, HQ, *c, &format!("R{i}"));
    }
    net.advance(30_000);
    for c in &locals {
        net.node(SITE).take(*c);
    }
    net.cut(SITE);
    // The direct clients lose their connections with the link.
    for c in &direct {
        net.node(HQ).disconnect(*c);
    }
    let outage_began = net.node(HQ).now.unix_ms;
    let mut sent = Vec::new();
    for t in 0..outage_s / 10 {
        let body = chat_line(t + 1);
        net.node(HQ).send(
            kevin,
            &format!("<message to='{ROOM}' type='groupchat'><body>{body}</body></message>"),
        );
        sent.push(body);
        if t % 60 == 59 {
            net.node(HQ).send(
                scott,
                &format!("<presence to='{ROOM}/Scott' type='unavailable'/>"),
            );
            join(&mut net, HQ, scott, "Scott");
        }
        net.advance(10_000);
    }
    // The missed messages' bodies plus their ids, as the yardstick.
    let archive = &net.node(HQ).node.state().rooms["chat"].archive;
    let yardstick: u64 = archive
        .iter()
        .rev()
        .take(sent.len())
        .map(|m| (m.stanza_id.len() + BODY_LEN) as u64)
        .sum();
    net.reset_counters();
    net.restore(SITE);
    let start = net.now_ms;
    let mut seen = vec![String::new(); k];
    loop {
        net.advance(1_000);
        for (i, c) in locals.iter().enumerate() {
            seen[i].push_str(&net.node(SITE).take(*c));
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
    let (up, down) = net.link_bytes(SITE);
    // The reference: each client comes back and rejoins with the history
    // since the outage began.
    let since = outpost::stanza::timestamp(outage_began - 1_000);
    let mut rejoin_bytes = 0;
    for i in 0..k_direct {
        let c = net.node(HQ).login(&format!("r{i}"), "p", "tv");
        net.node(HQ).take(c);
        let request = format!("<presence to='{ROOM}/R{i}'><x xmlns='http://jabber.org/protocol/muc'><history since='{since}'/></x></presence>");
        net.node(HQ).send(c, &request);
        net.settle();
        let answer = net.node(HQ).take(c);
        let got = sent.iter().filter(|b| answer.contains(b.as_str())).count();
        assert_eq!(got, sent.len(), "the rejoin fetched every missed message");
        rejoin_bytes += (request.len() + answer.len()) as u64;
    }
    Outcome {
        link_bytes: up + down,
        yardstick,
        converged_ms: elapsed,
        rejoin_bytes,
    }
}

fn main() {
    println!("resync after an outage: 9600 bit/s, 600 ms round trip, 1 message / 10 s, HQ presence churn");
    println!(
        "{:>8} {:>3} {:>12} {:>12} {:>7} {:>12} {:>14} {:>9}",
        "outage",
        "K",
        "link bytes",
        "bodies+ids",
        "ratio",
        "converged in",
        "part+rejoin",
        "rejoin/us"
    );
    for (outage, label) in [(60, "1 min"), (3_600, "1 hour")] {
        for k in [1, 20] {
            let o = run(k, outage, false);
            let reference = run(k, outage, true);
            println!(
                "{label:>8} {k:>3} {:>12} {:>12} {:>6.2}x {:>10.1} s {:>14} {:>8.1}x",
                o.link_bytes,
                o.yardstick,
                o.link_bytes as f64 / o.yardstick as f64,
                o.converged_ms as f64 / 1000.0,
                reference.rejoin_bytes,
                reference.rejoin_bytes as f64 / o.link_bytes as f64
            );
        }
    }
}
