//! What the link benchmarks share.

/// Message bodies are this long: words of random letters, which deflate
/// compresses less than real chat text (a pessimistic stand-in).
pub const BODY_LEN: usize = 100;

pub fn chat_line(n: u64) -> String {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut line = String::new();
    while line.len() < BODY_LEN {
        let len = 2 + next() % 8;
        for _ in 0..len {
            line.push((b'a' + (next() % 26) as u8) as char);
        }
        line.push(' ');
    }
    line.truncate(BODY_LEN);
    line
}

use outpost::node::NodeConfig;
use outpost::sim::{Network, Shape};

pub const ROOM: &str = "chat@conference.fairfax.example";
pub const HQ: usize = 0;
pub const SITE: usize = 1;

/// HQ (fairfax.example, node 0) and a site mirroring its rooms (raleigh.example,
/// node 1) on one link of this shape.
pub fn hq_and_site(link: Shape) -> Network {
    let mut net = Network::new();
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into()];
    let mut site = NodeConfig::new("raleigh.example");
    site.link.upstreams = vec!["conference.fairfax.example".into()];
    net.add_node(hq, 1);
    net.add_node(site, 2);
    net.add_link(SITE, HQ, link);
    net
}

/// `n` accounts `{prefix}0..` on `node`, each logged in once.
pub fn logged_in(net: &mut Network, node: usize, prefix: &str, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            net.node(node).add_user(&format!("{prefix}{i}"), "p");
            net.node(node).login(&format!("{prefix}{i}"), "p", "tv")
        })
        .collect()
}
