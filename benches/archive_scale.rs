//! How the cost of room traffic grows with the room's archive: HQ CPU per
//! message sent from a site (the master checks the site-minted stanza-id
//! against what it holds), and an archive query paged from an id in the
//! middle, at archive sizes 0, 100k and (with `ARCHIVE_SIZES`) more.
//!
//!     cargo bench --bench archive_scale
//!     ARCHIVE_SIZES=0,100000,1000000 cargo bench --bench archive_scale
//!
//! Figures are per operation on the simulated network (site, link and HQ
//! on this thread), so the ratio between sizes is what to read: flat means
//! the archive's size costs nothing per message.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use outpost::model::room::{Archived, RoomRecord};
use outpost::node::NodeConfig;
use outpost::sim::{Network, Shape};
use outpost::state::Record;
use std::time::Instant;

#[allow(dead_code)]
mod common;
use common::{chat_line, logged_in, HQ, ROOM, SITE};

const MESSAGES: usize = 500;
const QUERIES: usize = 200;

fn network() -> Network {
    let mut net = Network::new();
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into()];
    // Room retention high enough to hold every size measured.
    hq.muc.archive_messages = usize::MAX;
    hq.muc.archive_bytes = u64::MAX;
    hq.muc.archive_bytes_total = u64::MAX;
    let mut site = NodeConfig::new("raleigh.example");
    site.link.upstreams = vec!["conference.fairfax.example".into()];
    net.add_node(hq, 1);
    net.add_node(site, 2);
    net.add_link(SITE, HQ, Shape::default());
    net
}

fn send(net: &mut Network, node: usize, conn: u64, xml: &str) {
    net.node(node).send(conn, xml);
    net.settle();
}

/// Append `n` archived messages to the room in HQ's log and restart HQ on it.
fn fill_archive(net: &mut Network, n: usize) {
    let hq = net.node(HQ);
    let next = hq.node.state().rooms["chat"].next_seq;
    let stamp = hq.now.unix_ms - n as u64;
    for i in 0..n as u64 {
        let seq = next + i;
        let id = format!("old-{seq:016x}");
        let msg = Archived {
            seq,
            stanza_id: id.clone(),
            stamp_ms: stamp + i,
            nick: "Kevin".into(),
            real: "kevin@fairfax.example".into(),
            xml: format!(
                "<message from='{ROOM}/Kevin' type='groupchat' id='x{seq}'><body>{}</body><stanza-id xmlns='urn:xmpp:sid:0' id='{id}' by='{ROOM}'/></message>",
                chat_line(seq)
            ),
        };
        let r = Record::Room {
            room: "chat".into(),
            change: RoomRecord::Message { msg },
        };
        hq.log.append(r.kind(), &r.encode()).expect("append");
        if i % 10_000 == 9_999 {
            hq.log.commit().expect("commit");
        }
    }
    hq.log.commit().expect("commit");
    net.crash_and_restart(HQ);
    net.advance(60_000);
}

#[derive(Clone, Copy)]
struct Figures {
    site_message_us: f64,
    mam_by_id_us: f64,
}

fn measure(size: usize) -> Figures {
    let mut net = network();
    net.node(HQ).add_user("kevin", "k");
    let kevin = net.node(HQ).login("kevin", "k", "hq");
    send(
        &mut net,
        HQ,
        kevin,
        &format!("<presence to='{ROOM}/Kevin'/>"),
    );
    send(&mut net, HQ, kevin, &format!("<iq type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"));
    fill_archive(&mut net, size);
    let kevin = net.node(HQ).login("kevin", "k", "hq");
    send(&mut net, HQ, kevin, &format!("<presence to='{ROOM}/Kevin'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"));
    let site = logged_in(&mut net, SITE, "u", 1)[0];
    send(&mut net, SITE, site, &format!("<presence to='{ROOM}/U0'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"));
    net.advance(1_000);
    net.node(SITE).take(site);
    net.node(HQ).take(kevin);

    let started = Instant::now();
    let mut got = 0;
    for i in 0..MESSAGES {
        let line = chat_line(i as u64);
        send(
            &mut net,
            SITE,
            site,
            &format!(
                "<message to='{ROOM}' type='groupchat' id='s{i}'><body>{line}</body></message>"
            ),
        );
        // Read as a client does (its output window opens as it reads).
        got += net.node(HQ).take(kevin).matches("<body>").count();
        net.node(SITE).take(site);
    }
    net.advance(1_000);
    let site_message_us = started.elapsed().as_secs_f64() * 1e6 / MESSAGES as f64;
    got += net.node(HQ).take(kevin).matches("<body>").count();
    assert_eq!(got, MESSAGES, "every site message reached HQ");

    // Pages of 10 after an id half-way through the archive (or the start).
    let after = if size > 0 {
        let seq =
            net.node(HQ).node.state().rooms["chat"].next_seq - MESSAGES as u64 - size as u64 / 2;
        format!("<after>old-{seq:016x}</after>")
    } else {
        String::new()
    };
    let started = Instant::now();
    for q in 0..QUERIES {
        send(&mut net, HQ, kevin, &format!("<iq type='set' id='q{q}' to='{ROOM}'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>10</max>{after}</set></query></iq>"));
        let page = net.node(HQ).take(kevin);
        assert!(page.contains("<fin"), "a page: {page}");
    }
    let mam_by_id_us = started.elapsed().as_secs_f64() * 1e6 / QUERIES as f64;
    Figures {
        site_message_us,
        mam_by_id_us,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("ARCHIVE_SIZES")
        .unwrap_or_else(|_| "0,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("sizes are numbers"))
        .collect();
    println!("room archive size against the cost of traffic (µs on the simulated network)");
    println!(
        "{:>9} {:>18} {:>8} {:>18} {:>8}",
        "archived", "per site message", "ratio", "MAM page by id", "ratio"
    );
    // A first run is slower whatever its size (caches, the allocator's
    // first growth): one untimed, so that the first size is not flattered
    // against the others.
    measure(0);
    let mut base: Option<Figures> = None;
    for size in sizes {
        let f = measure(size);
        let b = *base.get_or_insert(f);
        println!(
            "{size:>9} {:>18.1} {:>7.2}x {:>18.1} {:>7.2}x",
            f.site_message_us,
            f.site_message_us / b.site_message_us,
            f.mam_by_id_us,
            f.mam_by_id_us / b.mam_by_id_us
        );
    }
}
