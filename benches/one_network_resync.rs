//! One-to-one traffic across a split, in the simulator: HQ and a site on a
//! 9600 bit/s link with 300 ms latency each way. During an outage of one
//! minute or one hour, an HQ user sends a site user one 100-byte message
//! (random words) every 10 s, and the site user one back every 30 s; both
//! change their presence every 10 minutes. After the link returns we count
//! the bytes and the time until each has every message the other sent,
//! and how many arrived (all must: they were queued durably), against the
//! messages' bodies plus stanza-ids (the yardstick: at most 1.2x).
//!
//! Prosody's s2s over the same relay is measured by
//! benches/one_network_bytes.py (a one-minute cut: it bounces what was
//! sent during it); an hour of real time is left to the simulator.
//!
//!     cargo bench --bench one_network_resync

use outpost::sim::Shape;

#[allow(dead_code)] // Each bench uses its own part of it.
mod common;
use common::{chat_line, hq_and_site, BODY_LEN, HQ, SITE};

const LINK: Shape = Shape {
    latency_ms: 300,
    rate: 1200,
};

struct Outcome {
    sent: usize,
    delivered: usize,
    link_bytes: u64,
    yardstick: u64,
    converged_ms: u64,
}

fn online(net: &mut outpost::sim::Network, node: usize, user: &str) -> u64 {
    net.node(node).add_user(user, "p");
    let c = net.node(node).login(user, "p", "tv");
    net.node(node).send(c, "<presence/>");
    c
}

fn run(outage_s: u64) -> Outcome {
    let mut net = hq_and_site(LINK);
    let kevin = online(&mut net, HQ, "kevin");
    let wayne = online(&mut net, SITE, "wayne");
    net.advance(5_000);
    // Contacts both ways.
    let (k, w) = ("kevin@fairfax.example", "wayne@raleigh.example");
    for (node, c, other) in [(SITE, wayne, k), (HQ, kevin, w)] {
        net.node(node)
            .send(c, &format!("<presence to='{other}' type='subscribe'/>"));
        net.node(node)
            .send(c, &format!("<presence to='{other}' type='subscribed'/>"));
        net.advance(5_000);
    }
    net.advance(30_000);
    net.node(HQ).take(kevin);
    net.node(SITE).take(wayne);
    net.cut(SITE);
    let mut to_site = Vec::new();
    let mut to_hq = Vec::new();
    for t in 0..outage_s / 10 {
        let body = chat_line(t + 1);
        net.node(HQ).send(
            kevin,
            &format!("<message to='{w}' type='chat'><body>{body}</body></message>"),
        );
        to_site.push(body);
        if t % 3 == 2 {
            let body = chat_line(1_000_000 + t);
            net.node(SITE).send(
                wayne,
                &format!("<message to='{k}' type='chat'><body>{body}</body></message>"),
            );
            to_hq.push(body);
        }
        if t % 60 == 59 {
            let show = ["away", "xa", "dnd"][(t / 60 % 3) as usize];
            for (node, c) in [(HQ, kevin), (SITE, wayne)] {
                net.node(node)
                    .send(c, &format!("<presence><show>{show}</show></presence>"));
            }
        }
        net.advance(10_000);
    }
    let ids = |net: &mut outpost::sim::Network, node: usize, user: &str, n: usize| -> u64 {
        let archive = &net.node(node).node.state().accounts[user].archive;
        archive
            .iter()
            .rev()
            .take(n)
            .map(|m| (m.stanza_id.len() + BODY_LEN) as u64)
            .sum()
    };
    let yardstick = ids(&mut net, HQ, "kevin", to_site.len() + to_hq.len());
    net.reset_counters();
    net.restore(SITE);
    let start = net.now_ms;
    let (mut at_site, mut at_hq) = (String::new(), String::new());
    let all = |seen: &str, sent: &[String]| sent.iter().all(|b| seen.contains(b.as_str()));
    loop {
        net.advance(1_000);
        at_site.push_str(&net.node(SITE).take(wayne));
        at_hq.push_str(&net.node(HQ).take(kevin));
        if (all(&at_site, &to_site) && all(&at_hq, &to_hq)) || net.now_ms - start > 6 * 3_600_000 {
            break;
        }
    }
    let converged_ms = net.now_ms - start;
    net.advance(2_000);
    let (up, down) = net.link_bytes(SITE);
    let once = |seen: &str, sent: &[String]| {
        sent.iter()
            .filter(|b| seen.matches(&format!("<body>{b}</body>")).count() == 1)
            .count()
    };
    Outcome {
        sent: to_site.len() + to_hq.len(),
        delivered: once(&at_site, &to_site) + once(&at_hq, &to_hq),
        link_bytes: up + down,
        yardstick,
        converged_ms,
    }
}

fn main() {
    println!("one-to-one across a split: 9600 bit/s, 600 ms round trip, HQ -> site every 10 s, site -> HQ every 30 s");
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>7} {:>12}",
        "outage", "delivered", "link bytes", "bodies+ids", "ratio", "converged in"
    );
    for (outage, label) in [(60, "1 min"), (3_600, "1 hour")] {
        let o = run(outage);
        println!(
            "{label:>8} {:>4} of {:>3} {:>12} {:>12} {:>6.2}x {:>10.1} s",
            o.delivered,
            o.sent,
            o.link_bytes,
            o.yardstick,
            o.link_bytes as f64 / o.yardstick as f64,
            o.converged_ms as f64 / 1000.0
        );
    }
}
