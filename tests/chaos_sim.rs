//! Seeded chaos over the simulated network: concurrent chat at HQ and two
//! sites while links are cut, stalled and throttled. At quiescence every
//! message must have reached every occupant exactly once, and every mirror
//! must hold the master's sequence.
//!
//! `CHAOS_SEEDS=n` runs n schedules (default 200); a failure prints the
//! command that replays its seed (`CHAOS_SEED=s`); `CHAOS_TRACE=1` prints
//! each step of a schedule.

use outpost::node::NodeConfig;
use outpost::sim::Rng;
use outpost::sim::{Network, Shape};
use std::collections::HashMap;

const ROOM: &str = "chat@conference.fairfax.example";
const HQ: usize = 0;
const SITES: [usize; 2] = [1, 2];

struct User {
    node: usize,
    conn: u64,
    seen: String,
}

fn build() -> (Network, Vec<User>) {
    let mut net = Network::new();
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into(), "durham.example".into()];
    // A short grace period, so that schedules cross it: splits then show
    // 333 both ways and resynchronise.
    hq.link.grace_ms = 8_000;
    net.add_node(hq, 1);
    for (i, domain) in ["raleigh.example", "durham.example"].iter().enumerate() {
        let mut c = NodeConfig::new(domain);
        c.link.upstreams = vec!["conference.fairfax.example".into()];
        // Detect dead links quickly enough for a short schedule.
        c.link.dead_ms = 20_000;
        c.link.grace_ms = 8_000;
        net.add_node(c, 2 + i as u64);
        net.add_link(SITES[i], HQ, Shape::default());
    }
    let mut users = Vec::new();
    for (node, names) in [
        (HQ, ["h0", "h1"]),
        (SITES[0], ["r0", "r1"]),
        (SITES[1], ["d0", "d1"]),
    ] {
        for name in names {
            net.node(node).add_user(name, "p");
            let conn = net.node(node).login(name, "p", "x");
            users.push(User {
                node,
                conn,
                seen: String::new(),
            });
        }
    }
    net.advance(100);
    for (i, u) in users.iter().enumerate() {
        net.node(u.node).send(
            u.conn,
            &format!(
                "<presence to='{ROOM}/n{i}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        );
        net.settle();
        if i == 0 {
            net.node(HQ).send(u.conn, &format!("<iq type='set' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"));
            net.settle();
        }
    }
    net.advance(2_000);
    for u in &mut users {
        u.seen = net.node(u.node).take(u.conn);
    }
    (net, users)
}

fn collect(net: &mut Network, users: &mut [User]) {
    for u in users.iter_mut() {
        let out = net.node(u.node).take(u.conn);
        u.seen.push_str(&out);
    }
}

/// Run one schedule; Err describes the first broken invariant.
fn run(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let (mut net, mut users) = build();
    let mut bodies = Vec::new();
    for step in 0..40 {
        let action = rng.below(10);
        if std::env::var("CHAOS_TRACE").is_ok() {
            eprintln!("step {step} action {action}");
        }
        match action {
            0..=5 => {
                let who = rng.below(users.len() as u64) as usize;
                let body = format!("s{seed}-{step}-u{who}");
                let u = &users[who];
                net.node(u.node).send(
                    u.conn,
                    &format!("<message to='{ROOM}' type='groupchat'><body>{body}</body></message>"),
                );
                bodies.push(body);
            }
            6 => net.cut(SITES[rng.below(2) as usize]),
            7 => net.restore(SITES[rng.below(2) as usize]),
            8 => {
                // A stall: seconds of latency.
                let site = SITES[rng.below(2) as usize];
                net.reshape(
                    site,
                    Shape {
                        latency_ms: 1_000 + rng.below(10_000),
                        rate: 0,
                    },
                );
            }
            _ => {
                // Throttle to something between 75 and 9600 bit/s.
                let site = SITES[rng.below(2) as usize];
                net.reshape(
                    site,
                    Shape {
                        latency_ms: 300,
                        rate: 10 + rng.below(1_190),
                    },
                );
            }
        }
        net.advance(rng.below(5_000));
        collect(&mut net, &mut users);
        if std::env::var("CHAOS_TRACE").is_ok() {
            eprintln!("step {step} t={} ms", net.now_ms);
        }
    }
    for site in SITES {
        net.restore(site);
        net.reshape(site, Shape::default());
    }
    net.advance(300_000);
    collect(&mut net, &mut users);

    // Every message, exactly once, at every user.
    for (i, u) in users.iter().enumerate() {
        for b in &bodies {
            let n = u.seen.matches(&format!("<body>{b}</body>")).count();
            if n != 1 {
                let in_master = net.node(HQ).node.state().rooms["chat"]
                    .archive
                    .iter()
                    .any(|m| m.xml.contains(b.as_str()));
                let in_mirror = net.node(u.node).node.mirror_contains(ROOM, b);
                return Err(format!(
                    "user {i} saw '{b}' {n} times (in the master's archive: {in_master}, in its node's replica: {in_mirror})"
                ));
            }
        }
    }
    // The master's archive holds each once; every mirror holds the master's order.
    let master: Vec<String> = net.node(HQ).node.state().rooms["chat"]
        .archive
        .iter()
        .map(|m| m.stanza_id.clone())
        .collect();
    if master.len() != bodies.len() {
        return Err(format!(
            "master archive holds {} messages, {} were sent",
            master.len(),
            bodies.len()
        ));
    }
    for site in SITES {
        let mirror = net.node(site).node.mirror_sequence(ROOM);
        let start = master.len() - mirror.len().min(master.len());
        if mirror != master[start..] {
            return Err(format!(
                "site {site} holds {mirror:?}, the master {master:?}"
            ));
        }
    }
    // Nothing stays queued on any link.
    for i in 0..3 {
        for (peer, l) in &net.node(i).node.state().links {
            if !l.unacked.is_empty() {
                return Err(format!(
                    "node {i} still has {} events queued for {peer}",
                    l.unacked.len()
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn chaos() {
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEED") {
        Ok(s) => vec![s.parse().expect("CHAOS_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("CHAOS_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            (1..=n).collect()
        }
    };
    let mut failures: HashMap<u64, String> = HashMap::new();
    for seed in seeds {
        if let Err(e) = run(seed) {
            failures.insert(seed, e);
        }
    }
    if !failures.is_empty() {
        let mut msg = String::new();
        for (seed, e) in &failures {
            msg.push_str(&format!(
                "seed {seed}: {e}\n  replay: CHAOS_SEED={seed} cargo test --test chaos_sim\n"
            ));
        }
        panic!("{} schedules failed:\n{msg}", failures.len());
    }
}
