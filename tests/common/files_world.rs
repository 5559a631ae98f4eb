//! The simulated network the file tests and the file bench share: HQ and
//! two sites, a user online at each, and uploads done the way the HTTP
//! server does them (the questions it asks the core, the bytes written as
//! it writes them). Included with `#[path]` by tests/files_sim.rs and
//! benches/file_lane.rs; each uses part of it.
#![allow(dead_code)]

use outpost::files::{FileAnswer, FileAsk, FileStore};
use outpost::node::NodeConfig;
use outpost::sim::{between, sha256_hex, Network, Shape};

pub const HQ: usize = 0;
pub const RALEIGH: usize = 1;
pub const DURHAM: usize = 2;

pub struct World {
    pub net: Network,
    pub kevin: u64,
    pub wayne: u64,
    pub dana: u64,
}

pub fn world(shape: Shape, tune: impl Fn(&mut NodeConfig)) -> World {
    let mut net = Network::new();
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into(), "durham.example".into()];
    tune(&mut hq);
    net.add_node(hq, 1);
    for (domain, seed) in [("raleigh.example", 12), ("durham.example", 13)] {
        let mut site = NodeConfig::new(domain);
        site.link.upstreams = vec!["conference.fairfax.example".into()];
        tune(&mut site);
        net.add_node(site, seed);
    }
    net.add_link(RALEIGH, HQ, shape);
    net.add_link(DURHAM, HQ, shape);
    net.node(HQ).add_user("kevin", "k");
    net.node(RALEIGH).add_user("wayne", "w");
    net.node(DURHAM).add_user("dana", "d");
    let kevin = online(&mut net, HQ, "kevin", "k");
    let wayne = online(&mut net, RALEIGH, "wayne", "w");
    let dana = online(&mut net, DURHAM, "dana", "d");
    net.advance(100);
    net.settle();
    World {
        net,
        kevin,
        wayne,
        dana,
    }
}

pub fn online(net: &mut Network, node: usize, user: &str, pw: &str) -> u64 {
    let c = net.node(node).login(user, pw, "r");
    net.node(node).send(c, "<presence/>");
    net.node(node).take(c);
    c
}

/// Deterministic bytes that do not compress (as a photo does not).
pub fn photo(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Ask for a slot; the reply as the client gets it.
pub fn ask_slot(net: &mut Network, node: usize, conn: u64, name: &str, size: usize) -> String {
    let domain = net.node(node).cfg.domain.clone();
    net.node(node).send(
        conn,
        &format!("<iq type='get' id='slot' to='upload.{domain}'><request xmlns='urn:xmpp:http:upload:0' filename='{name}' size='{size}' content-type='image/jpeg'/></iq>"),
    );
    net.node(node).take(conn)
}

/// The path and token of a slot's PUT URL.
pub fn put_target(reply: &str) -> (String, String) {
    let put = between(reply, "<put url='", "'").expect("a put URL");
    let put = put.replace("&amp;", "&");
    let path = put[put.find("/files/").expect("a file path")..].to_string();
    let (path, token) = path.split_once("?token=").expect("a token");
    (path.to_string(), token.to_string())
}

/// Upload `data` as `name` the way the HTTP server does: the file's path.
pub fn upload(net: &mut Network, node: usize, conn: u64, name: &str, data: &[u8]) -> String {
    let reply = ask_slot(net, node, conn, name, data.len());
    let (path, token) = put_target(&reply);
    let n = net.node(node);
    let len = data.len() as u64;
    let ask = FileAsk::Put {
        path: path.clone(),
        token: token.clone(),
        len,
    };
    let Some(FileAnswer::PutAccepted { key }) = n.file_ask(1, ask) else {
        panic!("the PUT is refused");
    };
    n.files.write_part(&key, 0, data).unwrap();
    let sha256 = sha256_hex(data);
    let done = FileAsk::PutDone {
        path: path.clone(),
        token,
        len,
        sha256,
    };
    assert_eq!(n.file_ask(2, done), Some(FileAnswer::Stored));
    path
}
