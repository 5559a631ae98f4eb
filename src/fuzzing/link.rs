//! A node's link to another node, fed what the other end might send, plain
//! or DEFLATE-compressed. Whatever arrives, the node keeps serving its
//! local users.

use super::{chunks, split_plan};
use crate::link::compress::Deflater;
use crate::node::{Event, NodeConfig};
use crate::sim::{Network, Shape, SimNode};

const HQ: &str = "hq.example";
const SITE: &str = "site.example";
const HQ_MUC: &str = "conference.hq.example";
const ROOM: &str = "chat@conference.hq.example";

fn master_config() -> NodeConfig {
    let mut c = NodeConfig::new(HQ);
    c.link.peers = vec![SITE.into()];
    c
}

fn site_config() -> NodeConfig {
    let mut c = NodeConfig::new(SITE);
    c.link.upstreams = vec![HQ_MUC.into()];
    c
}

/// Input: a mode byte (bit 0: the node is the site and the input comes
/// from its master, else the node is the master; bit 1: the link drops
/// after the input), a chunking plan (see `split_plan`), then the stream.
pub fn link_plain(data: &[u8]) {
    link(data, false)
}

/// As [`link_plain`], but the stream is raw DEFLATE: the target sends the
/// `Z` that announces it.
pub fn link_compressed(data: &[u8]) {
    link(data, true)
}

fn link(data: &[u8], compressed: bool) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (sizes, payload) = split_plan(rest);
    let site = mode & 1 == 1;
    let (cfg, peer) = if site {
        (site_config(), HQ_MUC)
    } else {
        (master_config(), SITE)
    };
    let domain = cfg.domain.clone();
    let mut node = SimNode::new(cfg, 7);
    let conn = node.alloc_conn();
    // As in the captured seeds: Alice is in the room on this node's side.
    node.add_user("alice", "a");
    let alice = node.login("alice", "a", if site { "tv" } else { "hq" });
    if !site {
        node.send(alice, &join("Boss"));
        node.send(alice, &instant_room());
    }
    node.event(Event::LinkUp {
        conn,
        peer: peer.into(),
    });
    let mut stream = Vec::with_capacity(payload.len() + 1);
    if compressed {
        stream.push(b'Z');
    }
    stream.extend_from_slice(payload);
    for (i, piece) in chunks(&stream, &sizes).into_iter().enumerate() {
        if node.is_closed(conn) {
            break;
        }
        node.event(Event::Data {
            conn,
            bytes: piece.to_vec(),
        });
        if site && i == 0 {
            // A site takes joins once its master's hello is in: the seeds
            // end their first piece there.
            node.send(alice, &join("Alice"));
        }
    }
    node.advance(1_000); // Acks and other timers fire.
    if mode & 2 == 2 && !node.is_closed(conn) {
        node.disconnect(conn);
        node.advance(1_000);
    }
    still_serves_local_users(&mut node, &domain);
}

fn join(nick: &str) -> String {
    format!("<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
}

fn instant_room() -> String {
    format!("<iq type='set' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")
}

fn still_serves_local_users(node: &mut SimNode, domain: &str) {
    let conn = node.login("alice", "a", "fuzz"); // Asserts every step.
    node.send(
        conn,
        &format!("<iq type='get' id='alive' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"),
    );
    let out = node.take(conn);
    assert!(
        out.contains("id='alive'") && out.contains("type='result'"),
        "no answer to a ping: {out}"
    );
}

/// Seed inputs for both link targets: real traffic of a site user joining
/// and using a room mastered at HQ, each direction, plain and compressed.
/// Returns (target, file name, input).
pub fn link_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let (up, down) = capture_link_traffic();
    let mut seeds = Vec::new();
    for (mode, name, chunks) in [(0u8, "to-master", &up), (1u8, "to-site", &down)] {
        let plain: Vec<u8> = chunks.concat();
        // First piece: up to the end of the hello (see `link`), then 255 bytes at a time.
        let hello_end = find(&plain, b"/>").map_or(255, |i| (i + 2).min(255)) as u8;
        let plan = [mode, 2, hello_end, 255];
        seeds.push(("link_plain", name.to_string(), [&plan[..], &plain].concat()));
        // 7-byte reads, and the link drops after the input.
        let plan = [mode | 2, 1, 7];
        seeds.push((
            "link_plain",
            format!("{name}-split"),
            [&plan[..], &plain].concat(),
        ));
        // Compressed as a node does it: one stream, flushed per batch
        // (the first batch holds the hello; +1 for the `Z`).
        let mut deflater = Deflater::new();
        let packed: Vec<Vec<u8>> = chunks.iter().map(|c| deflater.compress(c)).collect();
        let first = packed.first().map_or(255, |p| (p.len() + 1).min(255)) as u8;
        let plan = [mode, 2, first, 255];
        seeds.push((
            "link_compressed",
            name.to_string(),
            [&plan[..], &packed.concat()].concat(),
        ));
    }
    seeds
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What crossed a plain link (site to master, master to site), write by write.
fn capture_link_traffic() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let room = ROOM;
    let mut hq = master_config();
    hq.link.compress = false;
    let mut site = site_config();
    site.link.compress = false;
    let mut net = Network::new();
    let (h, s) = (net.add_node(hq, 1), net.add_node(site, 2));
    net.add_link(s, h, Shape::default());
    net.node(h).add_user("alice", "a");
    net.node(s).add_user("alice", "a");
    let boss = net.node(h).login("alice", "a", "hq");
    let alice = net.node(s).login("alice", "a", "tv");
    net.advance(100);
    let steps: Vec<(usize, u64, String)> = vec![
        (h, boss, join("Boss")),
        (h, boss, instant_room()),
        (h, boss, format!("<message to='{room}' type='groupchat'><subject>Ops</subject></message>")),
        (s, alice, join("Alice")),
        (s, alice, format!("<message to='{room}' type='groupchat' id='m1'><body>hello</body></message>")),
        (h, boss, format!("<message to='{room}' type='groupchat' id='m2'><body>hi &amp; welcome</body></message>")),
        (s, alice, format!("<message to='{room}' type='groupchat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")),
        (s, alice, format!("<message to='{room}/Boss' type='chat' id='pm'><body>psst</body></message>")),
        (s, alice, format!("<presence to='{room}/Alice'><show>away</show></presence>")),
        (h, boss, format!("<iq type='set' id='k' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Alice' role='moderator'/></query></iq>")),
        (s, alice, format!("<presence to='{room}/Alice' type='unavailable'/>")),
    ];
    for (node, conn, stanza) in steps {
        net.node(node).send(conn, &stanza);
        net.settle();
        net.advance(300);
    }
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (to_master, text) in net.take_transcript(s) {
        if to_master { &mut up } else { &mut down }.push(without_acks(&text).into_bytes());
    }
    (up, down)
}

/// The text without acknowledgements of events: the fuzzed node has not
/// sent the events the captured acks are for, and would close the link
/// at the first one.
fn without_acks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("<a h='") {
        out.push_str(&rest[..at]);
        let ack_len = rest[at..].find("/>").map_or(rest.len() - at, |end| end + 2);
        if &rest[at..at + ack_len] == "<a h='0'/>" {
            out.push_str("<a h='0'/>");
        }
        rest = &rest[at + ack_len..];
    }
    out.push_str(rest);
    out
}
