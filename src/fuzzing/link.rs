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
    let (cfg, peer) = if mode & 1 == 1 {
        (site_config(), HQ_MUC)
    } else {
        (master_config(), SITE)
    };
    let domain = cfg.domain.clone();
    let mut node = SimNode::new(cfg, 7);
    node.add_user("alice", "a");
    let conn = node.alloc_conn();
    node.event(Event::LinkUp {
        conn,
        peer: peer.into(),
    });
    let mut stream = Vec::with_capacity(payload.len() + 1);
    if compressed {
        stream.push(b'Z');
    }
    stream.extend_from_slice(payload);
    for piece in chunks(&stream, &sizes) {
        if node.is_closed(conn) {
            break;
        }
        node.event(Event::Data {
            conn,
            bytes: piece.to_vec(),
        });
    }
    node.advance(1_000); // Acks and other timers fire.
    if mode & 2 == 2 && !node.is_closed(conn) {
        node.disconnect(conn);
        node.advance(1_000);
    }
    still_serves_local_users(&mut node, &domain);
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
        seeds.push(("link_plain", name.to_string(), with_header(mode, &plain)));
        // The same bytes delivered in 7-byte reads, and a dropped link after.
        let mut split = vec![mode | 2, 1, 7];
        split.extend_from_slice(&plain);
        seeds.push(("link_plain", format!("{name}-split"), split));
        // Compressed as a node does it: one stream, flushed per batch.
        let mut deflater = Deflater::new();
        let packed: Vec<u8> = chunks.iter().flat_map(|c| deflater.compress(c)).collect();
        seeds.push((
            "link_compressed",
            name.to_string(),
            with_header(mode, &packed),
        ));
    }
    seeds
}

fn with_header(mode: u8, payload: &[u8]) -> Vec<u8> {
    let mut input = vec![mode, 0];
    input.extend_from_slice(payload);
    input
}

/// What crossed a plain link (site to master, master to site), write by write.
fn capture_link_traffic() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let room = format!("chat@{HQ_MUC}");
    let mut hq = master_config();
    hq.link.compress = false;
    let mut site = site_config();
    site.link.compress = false;
    let mut net = Network::new();
    let (h, s) = (net.add_node(hq, 1), net.add_node(site, 2));
    net.add_link(s, h, Shape::default());
    net.node(h).add_user("kevin", "k");
    net.node(s).add_user("wayne", "w");
    let kevin = net.node(h).login("kevin", "k", "hq");
    let wayne = net.node(s).login("wayne", "w", "tv");
    net.advance(100);
    let steps: Vec<(usize, u64, String)> = vec![
        (h, kevin, format!("<presence to='{room}/Kevin'><x xmlns='http://jabber.org/protocol/muc'/></presence>")),
        (h, kevin, format!("<iq type='set' id='i' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")),
        (h, kevin, format!("<message to='{room}' type='groupchat'><subject>Ops</subject></message>")),
        (s, wayne, format!("<presence to='{room}/Wayne'><x xmlns='http://jabber.org/protocol/muc'/></presence>")),
        (s, wayne, format!("<message to='{room}' type='groupchat' id='m1'><body>hello</body></message>")),
        (h, kevin, format!("<message to='{room}' type='groupchat' id='m2'><body>hi &amp; welcome</body></message>")),
        (s, wayne, format!("<message to='{room}' type='groupchat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")),
        (s, wayne, format!("<message to='{room}/Kevin' type='chat' id='pm'><body>psst</body></message>")),
        (s, wayne, format!("<presence to='{room}/Wayne'><show>away</show></presence>")),
        (h, kevin, format!("<iq type='set' id='k' to='{room}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Wayne' role='moderator'/></query></iq>")),
        (s, wayne, format!("<presence to='{room}/Wayne' type='unavailable'/>")),
    ];
    for (node, conn, stanza) in steps {
        net.node(node).send(conn, &stanza);
        net.settle();
        net.advance(300);
    }
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (to_master, text) in net.take_transcript(s) {
        if to_master { &mut up } else { &mut down }.push(text.into_bytes());
    }
    (up, down)
}
