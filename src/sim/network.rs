//! A deterministic network of nodes: links with latency, a byte rate, and
//! cuts, all on one virtual clock. Link connections are plain byte pipes
//! (TLS is the shell's business); byte counters measure what crosses.

use super::SimNode;
use crate::node::{ConnId, Event, NodeConfig};
use std::collections::VecDeque;

/// Shape of a link between two nodes.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub latency_ms: u64,
    /// Bytes per second each way; 0 means unlimited.
    pub rate: u64,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            latency_ms: 50,
            rate: 0,
        }
    }
}

struct Wire {
    site: usize,
    master: usize,
    /// The site's name for the link (the upstream MUC service) and the master's (the site's domain).
    upstream: String,
    site_domain: String,
    shape: Shape,
    up: bool,
    /// Open connection: (site conn, master conn).
    conns: Option<(ConnId, ConnId)>,
    /// Bytes in flight: (arrival time, to the master?, bytes).
    flight: VecDeque<(u64, bool, Vec<u8>)>,
    free_at: [u64; 2],
    /// Latest arrival scheduled each way: TCP delivers in order even when the latency changes.
    last_arrival: [u64; 2],
    /// Bytes carried site→master and master→site.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Everything carried, in order: (towards the master?, text).
    transcript: Vec<(bool, String)>,
}

impl Wire {
    /// The connection is gone, and with it what it still carried: a new one
    /// does not queue behind the old one's backlog.
    fn drop_in_flight(&mut self) {
        self.flight.clear();
        self.free_at = [0, 0];
        self.last_arrival = [0, 0];
    }
}

pub struct Network {
    pub nodes: Vec<SimNode>,
    wires: Vec<Wire>,
    pub now_ms: u64,
}

impl Network {
    pub fn new() -> Network {
        Network {
            nodes: Vec::new(),
            wires: Vec::new(),
            now_ms: 0,
        }
    }

    pub fn add_node(&mut self, cfg: NodeConfig, seed: u64) -> usize {
        self.nodes.push(SimNode::new(cfg, seed));
        self.nodes.len() - 1
    }

    /// Link site `site` to the master of `upstream` (a MUC service of node `master`).
    pub fn add_link(&mut self, site: usize, master: usize, shape: Shape) {
        let upstream = self.nodes[master].node.config().muc_service.clone();
        let site_domain = self.nodes[site].node.config().domain.clone();
        self.wires.push(Wire {
            site,
            master,
            upstream,
            site_domain,
            shape,
            up: true,
            conns: None,
            flight: VecDeque::new(),
            free_at: [0, 0],
            last_arrival: [0, 0],
            bytes_up: 0,
            bytes_down: 0,
            transcript: Vec::new(),
        });
    }

    pub fn node(&mut self, i: usize) -> &mut SimNode {
        &mut self.nodes[i]
    }

    /// Bytes (site→master, master→site) carried so far on the link of `site`.
    pub fn link_bytes(&self, site: usize) -> (u64, u64) {
        let w = self.wires.iter().find(|w| w.site == site).expect("a link");
        (w.bytes_up, w.bytes_down)
    }

    /// What crossed the link of `site` since the last call: (towards the
    /// master?, text). Readable only with `LinkConfig::compress` off.
    pub fn take_transcript(&mut self, site: usize) -> Vec<(bool, String)> {
        let w = self
            .wires
            .iter_mut()
            .find(|w| w.site == site)
            .expect("a link");
        std::mem::take(&mut w.transcript)
    }

    pub fn reset_counters(&mut self) {
        for w in &mut self.wires {
            w.bytes_up = 0;
            w.bytes_down = 0;
        }
    }

    /// Cut the link of `site`: both ends see the connection drop.
    pub fn cut(&mut self, site: usize) {
        let i = self
            .wires
            .iter()
            .position(|w| w.site == site)
            .expect("a link");
        self.wires[i].up = false;
        self.wires[i].drop_in_flight();
        if let Some((s, m)) = self.wires[i].conns.take() {
            let (site_node, master_node) = (self.wires[i].site, self.wires[i].master);
            self.nodes[site_node].disconnect(s);
            self.nodes[master_node].disconnect(m);
        }
    }

    /// Power loss at node `i`: it restarts from its log; its links drop.
    pub fn crash_and_restart(&mut self, i: usize) {
        for w in self
            .wires
            .iter_mut()
            .filter(|w| w.site == i || w.master == i)
        {
            w.drop_in_flight();
            if let Some((s, m)) = w.conns.take() {
                let (other, conn) = if w.site == i {
                    (w.master, m)
                } else {
                    (w.site, s)
                };
                self.nodes[other].disconnect(conn);
            }
        }
        self.nodes[i].crash_and_restart();
        let now = self.now_ms;
        self.nodes[i].set_time(now);
    }

    /// A graceful stop of node `i` (sessions that can be resumed are
    /// kept), then a start from its log; its links drop.
    pub fn stop_and_restart(&mut self, i: usize) {
        self.nodes[i].event(crate::node::Event::Shutdown);
        self.crash_and_restart(i);
    }

    /// Change the latency and rate of the link of `site` (a stall, a throttle).
    pub fn reshape(&mut self, site: usize, shape: Shape) {
        let i = self
            .wires
            .iter()
            .position(|w| w.site == site)
            .expect("a link");
        self.wires[i].shape = shape;
    }

    pub fn restore(&mut self, site: usize) {
        let i = self
            .wires
            .iter()
            .position(|w| w.site == site)
            .expect("a link");
        self.wires[i].up = true;
    }

    /// Move link bytes out of node outboxes, answer dials, deliver what has
    /// arrived by `now_ms`. Returns true if anything happened.
    fn pump(&mut self) -> bool {
        let mut busy = false;
        for wi in 0..self.wires.len() {
            // Dials from the site for this wire's upstream.
            let site = self.wires[wi].site;
            let upstream = self.wires[wi].upstream.clone();
            let dialed = {
                let d = &mut self.nodes[site].dials;
                let before = d.len();
                d.retain(|p| p != &upstream);
                before != d.len()
            };
            if dialed {
                busy = true;
                if self.wires[wi].up && self.wires[wi].conns.is_none() {
                    let master = self.wires[wi].master;
                    let (s, m) = (
                        self.nodes[site].alloc_conn(),
                        self.nodes[master].alloc_conn(),
                    );
                    self.wires[wi].conns = Some((s, m));
                    let site_domain = self.wires[wi].site_domain.clone();
                    self.nodes[master].event(Event::LinkUp {
                        conn: m,
                        peer: site_domain.into(),
                    });
                    self.nodes[site].event(Event::LinkUp {
                        conn: s,
                        peer: upstream.clone().into(),
                    });
                } else if !self.wires[wi].up {
                    self.nodes[site].event(Event::DialFailed {
                        peer: upstream.clone().into(),
                    });
                }
            }
            // Outgoing bytes onto the wire.
            if let Some((s, m)) = self.wires[wi].conns {
                let master = self.wires[wi].master;
                for (to_master, node, conn) in [(true, site, s), (false, master, m)] {
                    if self.nodes[node].is_closed(conn) {
                        // One end closed it: the other sees the drop.
                        self.wires[wi].conns = None;
                        self.wires[wi].drop_in_flight();
                        let (other, oc) = if to_master { (master, m) } else { (site, s) };
                        self.nodes[other].disconnect(oc);
                        self.nodes[node].disconnect(conn);
                        busy = true;
                        break;
                    }
                    let out = self.nodes[node].take_bytes(conn);
                    if out.is_empty() {
                        continue;
                    }
                    busy = true;
                    let w = &mut self.wires[wi];
                    let dir = usize::from(!to_master);
                    // Unlimited when the rate is 0.
                    let transmit = (out.len() as u64 * 1000)
                        .checked_div(w.shape.rate)
                        .unwrap_or(0);
                    let start = w.free_at[dir].max(self.now_ms);
                    w.free_at[dir] = start + transmit;
                    if to_master {
                        w.bytes_up += out.len() as u64;
                    } else {
                        w.bytes_down += out.len() as u64;
                    }
                    w.transcript
                        .push((to_master, String::from_utf8_lossy(&out).into_owned()));
                    let arrival = (start + transmit + w.shape.latency_ms).max(w.last_arrival[dir]);
                    w.last_arrival[dir] = arrival;
                    w.flight.push_back((arrival, to_master, out));
                }
            }
            // Arrivals: everything due, in order (each direction's times only grow).
            let now = self.now_ms;
            let due: Vec<(bool, Vec<u8>)> = {
                let flight = &mut self.wires[wi].flight;
                let mut due = Vec::new();
                let mut keep = VecDeque::with_capacity(flight.len());
                for (t, to_master, bytes) in flight.drain(..) {
                    if t <= now {
                        due.push((to_master, bytes));
                    } else {
                        keep.push_back((t, to_master, bytes));
                    }
                }
                *flight = keep;
                due
            };
            for (to_master, bytes) in due {
                let Some((s, m)) = self.wires[wi].conns else {
                    break;
                };
                let (node, conn) = if to_master {
                    (self.wires[wi].master, m)
                } else {
                    (site, s)
                };
                self.nodes[node].event(Event::Data { conn, bytes });
                busy = true;
            }
        }
        busy
    }

    fn next_arrival(&self) -> Option<u64> {
        self.wires
            .iter()
            .filter_map(|w| w.flight.iter().map(|f| f.0).min())
            .min()
    }

    fn set_time(&mut self, t: u64) {
        self.now_ms = t;
        for n in &mut self.nodes {
            n.set_time(t);
        }
    }

    /// Run until nothing is in flight (timers that are due fire too).
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            while self.pump() {}
            match self.next_arrival() {
                Some(t) => self.set_time(t.max(self.now_ms)),
                None => return,
            }
        }
        panic!("the network did not settle");
    }

    /// Let `ms` of virtual time pass, delivering and firing timers on the way.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        loop {
            while self.pump() {}
            let next = [
                self.next_arrival(),
                self.nodes
                    .iter()
                    .filter_map(|n| n.node.next_deadline())
                    .min(),
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t <= end)
            .min();
            match next {
                Some(t) => self.set_time(t.max(self.now_ms)),
                None => break,
            }
            if self.now_ms >= end && self.next_arrival().is_none_or(|t| t > end) {
                while self.pump() {}
                break;
            }
        }
        self.set_time(end);
        while self.pump() {}
    }
}

impl Default for Network {
    fn default() -> Network {
        Network::new()
    }
}
