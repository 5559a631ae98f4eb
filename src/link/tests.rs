//! The link machine through its inputs and outputs: two machines, a site's
//! and its master's, wired back to back with no node around them.

use super::{FromPeer, LinkOutput, Links};
use crate::common::ConnId;
use crate::model::event::LinkEvent;
use crate::settings::LinkConfig;
use crate::state::{LinkStore, Record};
use crate::xml::Limits;

const HQ: &str = "conference.hq.example";
const SITE: &str = "site.example";

struct Side {
    links: Links,
    store: LinkStore,
    out: Vec<LinkOutput>,
    /// What the peer said, in order.
    heard: Vec<FromPeer>,
    /// Records handed out to be persisted.
    persisted: Vec<Record>,
    conn: Option<ConnId>,
}

impl Side {
    fn new(cfg: LinkConfig, domain: &str, muc: &str, seed: u8) -> Side {
        Side {
            links: Links::new(
                cfg,
                domain,
                muc,
                Limits::default(),
                format!("epoch{seed}"),
                [seed; 32],
            ),
            store: LinkStore::new(),
            out: Vec::new(),
            heard: Vec::new(),
            persisted: Vec::new(),
            conn: None,
        }
    }

    /// Take what the peer said (applying numbered events at once) and
    /// return the bytes this side sends.
    fn run(&mut self, now: u64) -> Vec<u8> {
        while let Some(from) = self.links.poll(now, &mut self.store, &mut self.out) {
            if let FromPeer::Event {
                peer,
                seq: Some(seq),
                ..
            } = &from
            {
                let (peer, seq) = (peer.clone(), *seq);
                self.links
                    .applied(now, &peer, seq, &mut self.store, &mut self.out);
            }
            self.heard.push(from);
        }
        self.links.handle_timeout(now, &self.store, &mut self.out);
        self.links.flush(&mut self.out);
        let mut bytes = Vec::new();
        for o in self.out.drain(..) {
            match o {
                LinkOutput::Send { conn, bytes: b } if Some(conn) == self.conn => bytes.extend(b),
                LinkOutput::Persist(r) => self.persisted.push(*r),
                _ => {}
            }
        }
        bytes
    }

    fn events(&self) -> Vec<(Option<u64>, LinkEvent)> {
        self.heard
            .iter()
            .filter_map(|f| match f {
                FromPeer::Event { seq, event, .. } => Some((*seq, event.as_ref().clone().ok()?)),
                _ => None,
            })
            .collect()
    }
}

struct Pair {
    site: Side,
    hq: Side,
    now: u64,
    next_conn: ConnId,
}

impl Pair {
    fn new() -> Pair {
        let site_cfg = LinkConfig {
            upstreams: vec![HQ.into()],
            ..LinkConfig::default()
        };
        let hq_cfg = LinkConfig {
            peers: vec![SITE.into()],
            ..LinkConfig::default()
        };
        Pair {
            site: Side::new(site_cfg, SITE, "conference.site.example", 1),
            hq: Side::new(hq_cfg, "hq.example", HQ, 2),
            now: 1_000,
            next_conn: 1,
        }
    }

    fn connect(&mut self) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let now = self.now;
        self.site.conn = Some(conn);
        self.hq.conn = Some(conn);
        let (site, hq) = (&mut self.site, &mut self.hq);
        site.links
            .up(now, conn, HQ.into(), &site.store, &mut site.out);
        hq.links.up(now, conn, SITE.into(), &hq.store, &mut hq.out);
        self.settle();
    }

    fn cut(&mut self) {
        let now = self.now;
        for side in [&mut self.site, &mut self.hq] {
            if let Some(conn) = side.conn.take() {
                side.links.down(now, conn, &mut side.out);
                side.run(now);
            }
        }
    }

    /// Carry bytes both ways for five seconds, in steps longer than the
    /// acknowledgement delay (and well short of the keepalive).
    fn settle(&mut self) {
        for _ in 0..20 {
            self.now += 250;
            let to_hq = self.site.run(self.now);
            let to_site = self.hq.run(self.now);
            if let Some(conn) = self.hq.conn.filter(|_| !to_hq.is_empty()) {
                self.hq.links.data(self.now, conn, &to_hq);
            }
            if let Some(conn) = self.site.conn.filter(|_| !to_site.is_empty()) {
                self.site.links.data(self.now, conn, &to_site);
            }
        }
    }

    fn site_sends(&mut self, ev: LinkEvent) {
        let now = self.now;
        let site = &mut self.site;
        site.links
            .send(now, &HQ.into(), &ev, &mut site.store, &mut site.out);
    }
}

fn resync(n: u64) -> LinkEvent {
    LinkEvent::Resync {
        room: "ops".into(),
        last_seq: n,
    }
}

#[test]
fn an_event_is_durable_first_delivered_once_and_acknowledged() {
    let mut p = Pair::new();
    p.connect();
    assert!(p.site.links.is_up(HQ) && p.hq.links.is_up(SITE));
    p.site_sends(resync(7));
    // Durable before anything is written: the record is the first output.
    assert!(matches!(
        p.site.out.first(),
        Some(LinkOutput::Persist(r)) if matches!(r.as_ref(), Record::LinkQueued { .. })
    ));
    p.settle();
    assert_eq!(p.hq.events(), vec![(Some(1), resync(7))]);
    assert_eq!(p.hq.store[SITE].last_in, 1);
    assert!(p.site.store[HQ].unacked.is_empty(), "acknowledged");
    assert!(p
        .site
        .persisted
        .iter()
        .any(|r| matches!(r, Record::LinkAcked { upto: 1, .. })));
}

#[test]
fn events_queued_while_the_link_is_down_are_resent_once_after_it_returns() {
    let mut p = Pair::new();
    p.connect();
    p.site_sends(resync(1));
    p.settle();
    p.cut();
    assert!(!p.site.links.is_up(HQ));
    for n in 2..=4 {
        p.site_sends(resync(n));
    }
    assert_eq!(p.site.store[HQ].unacked.len(), 3);
    p.connect();
    let got: Vec<u64> = p.hq.events().iter().filter_map(|(s, _)| *s).collect();
    assert_eq!(got, vec![1, 2, 3, 4], "each exactly once, in order");
    assert!(p.site.store[HQ].unacked.is_empty());
}

#[test]
fn past_the_unacknowledged_bound_the_oldest_go_and_the_peer_is_told() {
    let mut p = Pair::new();
    p.site = Side::new(
        LinkConfig {
            upstreams: vec![HQ.into()],
            max_unacked: 3,
            ..LinkConfig::default()
        },
        SITE,
        "conference.site.example",
        1,
    );
    for n in 1..=5 {
        p.site_sends(resync(n));
    }
    let kept: Vec<u64> = p.site.store[HQ].unacked.iter().map(|q| q.seq).collect();
    assert_eq!(kept, vec![3, 4, 5], "count bound");
    p.connect();
    // HQ hears of the gap (the site is not an upstream of HQ, so no
    // resync notice) and applies what was kept.
    let got: Vec<u64> = p.hq.events().iter().filter_map(|(s, _)| *s).collect();
    assert_eq!(got, vec![3, 4, 5]);
    assert_eq!(p.hq.store[SITE].last_in, 5);
}

#[test]
fn a_peer_that_claims_more_than_was_sent_is_refused() {
    let mut p = Pair::new();
    // HQ remembers applying 9 events the site never sent (a site restored
    // from an old backup): the site refuses the hello and closes.
    p.hq.store.entry(SITE.into()).or_default().last_in = 9;
    p.connect();
    assert!(!p.site.links.is_up(HQ));
}

/// Parser limits changed at run time apply to the next link connection.
#[test]
fn new_parser_limits_apply_to_the_next_connection() {
    let hello = |side: &Side| {
        side.heard
            .iter()
            .filter(|f| matches!(f, FromPeer::Hello { .. }))
            .count()
    };
    let mut p = Pair::new();
    p.connect();
    assert_eq!(hello(&p.hq), 1, "the site's hello was read");
    let hq_cfg = LinkConfig {
        peers: vec![SITE.into()],
        ..LinkConfig::default()
    };
    // No element may carry an attribute any more: the hello cannot be read.
    let strict = Limits {
        max_attrs: 0,
        ..Limits::default()
    };
    p.hq.links.reconfigure(hq_cfg, strict);
    p.connect();
    assert_eq!(hello(&p.hq), 1, "the next hello was refused");
}
