//! A hostile peer on a pinned link: a site that sends its master, or a
//! master that sends its site, well-formed but arbitrary events (seeded).
//! The other node must never panic, must keep serving its own users, and
//! what it keeps must stay within its bounds and in order.
//!
//! `HOSTILE_SEEDS=n` runs n schedules per direction (default 60); a failure
//! names the seed (`HOSTILE_SEED=s` replays it).
#![allow(clippy::disallowed_methods)] // Test knobs come from the environment.

use outpost::jid::Jid;
use outpost::link::event::DMUC;
use outpost::model::event::{LinkEvent, OccupantChange, OccupantInfo};
use outpost::model::room::{Affiliation, Archived, RoomConfig, Subject};
use outpost::muc::Role;
use outpost::node::{Event, NodeConfig};
use outpost::sim::{Rng, SimNode};
use outpost::xml::{ns, Element};

const HQ_DOMAIN: &str = "fairfax.example";
const SERVICE: &str = "conference.fairfax.example";
const SITE_DOMAIN: &str = "raleigh.example";
const STEPS: usize = 250;

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

/// Words the generator builds names from: the real ones, near misses and junk.
fn word(rng: &mut Rng) -> String {
    let w = pick(
        rng,
        &[
            "chat",
            "Chat",
            "other",
            "Kevin",
            "Wayne",
            "Keith",
            "x",
            "",
            " ",
            "a b",
            "ü",
            "verylongnameverylongnameverylongname",
        ],
    );
    if chance(rng, 10) {
        format!("{w}{}", rng.below(1000))
    } else {
        w.to_string()
    }
}

fn jid(rng: &mut Rng) -> String {
    if chance(rng, 50) {
        return pick(
            rng,
            &["wayne@raleigh.example/tv", "keith@raleigh.example/tv"],
        )
        .to_string();
    }
    pick(
        rng,
        &[
            "wayne@raleigh.example/tv",
            "keith@raleigh.example/tv",
            "ghost@raleigh.example/x",
            "raleigh.example",
            "wayne@raleigh.example",
            "kevin@fairfax.example/hq",
            "kevin@fairfax.example",
            "chat@conference.fairfax.example/Kevin",
            "chat@conference.fairfax.example",
            "conference.fairfax.example",
            "mallory@elsewhere.example/x",
        ],
    )
    .to_string()
}

fn parse_jid(s: &str) -> Jid {
    Jid::parse(s).unwrap_or_else(|_| Jid::parse("ghost@raleigh.example/x").unwrap())
}

/// Mostly the presence a client sends to a room, sometimes anything.
fn presence(rng: &mut Rng) -> Element {
    if chance(rng, 15) {
        return stanza(rng);
    }
    let mut p = Element::new("presence", ns::CLIENT);
    if chance(rng, 60) {
        p = p.child(Element::new("x", "http://jabber.org/protocol/muc"));
    }
    if chance(rng, 30) {
        p = p.child(Element::new("show", ns::CLIENT).text(pick(rng, &["away", "dnd", "x"])));
    }
    p
}

/// Mostly a groupchat message with a body, sometimes anything.
fn groupchat(rng: &mut Rng) -> Element {
    if chance(rng, 20) {
        return stanza(rng);
    }
    let mut m = Element::new("message", ns::CLIENT).attr("type", "groupchat");
    if chance(rng, 80) {
        m = m.child(Element::new("body", ns::CLIENT).text(word(rng)));
    } else {
        m = m.child(Element::new("subject", ns::CLIENT).text(word(rng)));
    }
    m
}

/// A client-namespace stanza of any kind a room might see.
fn stanza(rng: &mut Rng) -> Element {
    let id = format!("s{}", rng.below(50));
    match rng.below(9) {
        0 => {
            let mut p = Element::new("presence", ns::CLIENT);
            if let Some(t) = [
                None,
                Some("unavailable"),
                Some("error"),
                Some("subscribe"),
                Some("bogus"),
            ][rng.below(5) as usize]
            {
                p.set_attr("type", t);
            }
            if chance(rng, 50) {
                p = p.child(Element::new("x", "http://jabber.org/protocol/muc"));
            }
            if chance(rng, 30) {
                p = p.child(Element::new("status", ns::CLIENT).text(word(rng)));
            }
            p
        }
        1 | 2 => {
            let mut m = Element::new("message", ns::CLIENT).attr("id", id);
            let t = pick(
                rng,
                &["groupchat", "chat", "normal", "error", "headline", ""],
            );
            if !t.is_empty() {
                m.set_attr("type", t);
            }
            match rng.below(5) {
                0 => m = m.child(Element::new("body", ns::CLIENT).text(word(rng))),
                1 => m = m.child(Element::new("subject", ns::CLIENT).text(word(rng))),
                2 => {
                    m = m.child(
                        Element::new("x", "http://jabber.org/protocol/muc#user").child(
                            Element::new("invite", "http://jabber.org/protocol/muc#user")
                                .attr("to", jid(rng)),
                        ),
                    )
                }
                3 => {
                    m = m.child(Element::new(
                        "composing",
                        "http://jabber.org/protocol/chatstates",
                    ))
                }
                _ => {}
            }
            m
        }
        _ => {
            let t = pick(rng, &["get", "set", "result", "error", "bogus"]);
            let mut iq = Element::new("iq", ns::CLIENT).attr("type", t);
            if chance(rng, 90) {
                iq.set_attr("id", id);
            }
            for _ in 0..rng.below(3) {
                iq = iq.child(iq_payload(rng));
            }
            iq
        }
    }
}

fn iq_payload(rng: &mut Rng) -> Element {
    let item = |rng: &mut Rng| {
        let mut i = Element::new("item", "");
        for (attr, values) in [
            (
                "affiliation",
                &["owner", "admin", "member", "none", "outcast", "x"][..],
            ),
            (
                "role",
                &["moderator", "participant", "visitor", "none", "x"][..],
            ),
        ] {
            if chance(rng, 50) {
                i.set_attr(attr, pick(rng, values));
            }
        }
        if chance(rng, 50) {
            i.set_attr("jid", jid(rng));
        }
        if chance(rng, 50) {
            i.set_attr("nick", word(rng));
        }
        i
    };
    let ns = pick(
        rng,
        &[
            "http://jabber.org/protocol/muc#admin",
            "http://jabber.org/protocol/muc#owner",
            "urn:xmpp:mam:2",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "urn:xmpp:ping",
            "jabber:iq:roster",
            "urn:x:unknown",
        ],
    );
    let name = if ns == "urn:xmpp:ping" {
        "ping"
    } else {
        "query"
    };
    let mut q = Element::new(name, ns);
    for _ in 0..rng.below(3) {
        let mut i = item(rng);
        i.ns = ns.to_string();
        q = q.child(i);
    }
    if chance(rng, 30) {
        let mut x = Element::new("x", "jabber:x:data").attr("type", "submit");
        for var in [
            "muc#roomconfig_maxusers",
            "muc#roomconfig_persistentroom",
            "FORM_TYPE",
            "muc#roomconfig_historylength",
        ] {
            if chance(rng, 50) {
                x = x.child(
                    Element::new("field", "jabber:x:data")
                        .attr("var", var)
                        .child(
                            Element::new("value", "jabber:x:data")
                                .text(pick(rng, &["0", "1", "-1", "99999999999", "x"])),
                        ),
                );
            }
        }
        q = q.child(x);
    }
    if chance(rng, 20) {
        q = q.child(Element::new("destroy", ns).attr("jid", jid(rng)));
    }
    q
}

fn archived(rng: &mut Rng, seq: u64) -> Archived {
    Archived {
        seq,
        stanza_id: format!("id{}", rng.below(40)),
        stamp_ms: rng.below(3_000_000_000_000),
        nick: word(rng),
        real: jid(rng),
        xml: stanza_xml(rng),
    }
}

fn stanza_xml(rng: &mut Rng) -> String {
    let mut m = stanza(rng);
    if chance(rng, 70) {
        m = Element::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .child(Element::new("body", ns::CLIENT).text(word(rng)));
    }
    m.to_xml(ns::CLIENT)
}

fn occupant(rng: &mut Rng) -> OccupantInfo {
    let full = jid(rng);
    OccupantInfo {
        nick: word(rng),
        bare: full.split('/').next().unwrap_or("").to_string(),
        jid: full,
        affiliation: [
            Affiliation::Owner,
            Affiliation::Admin,
            Affiliation::Member,
            Affiliation::None,
            Affiliation::Outcast,
        ][rng.below(5) as usize],
        role: [Role::Moderator, Role::Participant, Role::Visitor][rng.below(3) as usize],
        occupant_id: format!("occ{}", rng.below(10)),
        presence: {
            let mut p = Element::new("presence", ns::CLIENT);
            if chance(rng, 30) {
                p = p.child(Element::new("show", ns::CLIENT).text("away"));
            }
            p
        },
    }
}

fn config(rng: &mut Rng) -> RoomConfig {
    RoomConfig {
        name: word(rng),
        persistent: chance(rng, 50),
        members_only: chance(rng, 30),
        password: chance(rng, 20).then(|| word(rng)),
        max_users: [0, 1, 2, 100, u32::MAX][rng.below(5) as usize],
        moderated: chance(rng, 30),
        whois_anyone: chance(rng, 50),
        history_length: [0, 1, 20, u32::MAX][rng.below(4) as usize],
        archiving: chance(rng, 70),
        ..RoomConfig::default()
    }
}

fn room(rng: &mut Rng) -> String {
    if chance(rng, 70) {
        return "chat".into();
    }
    pick(rng, &["other", "Chat", "", "a/b"]).to_string()
}

/// Any event of the link protocol, with plausible and implausible values.
fn event(rng: &mut Rng, seq_hint: u64) -> LinkEvent {
    let from = parse_jid(&jid(rng));
    let seq = match rng.below(4) {
        0 => seq_hint,
        1 => seq_hint + 1 + rng.below(3),
        2 => rng.below(seq_hint + 2),
        _ => rng.next_u64() >> rng.below(64),
    };
    match rng.below(13) {
        0 => LinkEvent::Join {
            room: room(rng),
            nick: word(rng),
            from,
            presence: presence(rng),
        },
        1 => LinkEvent::Update {
            room: room(rng),
            nick: word(rng),
            from,
            presence: presence(rng),
        },
        2 => LinkEvent::Leave {
            room: room(rng),
            from,
            presence: presence(rng),
        },
        3 => LinkEvent::Groupchat {
            room: room(rng),
            from,
            nick: word(rng),
            stanza_id: format!("raleigh.example-{}", rng.below(30)),
            message: groupchat(rng),
        },
        4 => LinkEvent::Resync {
            room: room(rng),
            last_seq: seq,
        },
        5 => LinkEvent::Relay {
            from,
            to: parse_jid(&jid(rng)),
            stanza: stanza(rng),
        },
        6 => LinkEvent::Snapshot {
            room: room(rng),
            config: config(rng),
            affiliations: (0..rng.below(4))
                .map(|_| {
                    (
                        jid(rng),
                        [
                            Affiliation::Owner,
                            Affiliation::Outcast,
                            Affiliation::Member,
                        ][rng.below(3) as usize],
                    )
                })
                .collect(),
            subject: chance(rng, 50).then(|| Subject {
                text: word(rng),
                nick: word(rng),
                stamp_ms: 5,
            }),
            occupants: (0..rng.below(5)).map(|_| occupant(rng)).collect(),
            history: (0..rng.below(5))
                .map(|i| archived(rng, seq.saturating_sub(4) + i))
                .collect(),
            next_seq: seq,
            gap: chance(rng, 20),
            locked: chance(rng, 20),
        },
        7 => {
            let change = match rng.below(5) {
                0 => OccupantChange::Joined,
                1 => OccupantChange::Updated,
                2 => OccupantChange::Left {
                    status: chance(rng, 50).then(|| word(rng)),
                },
                3 => OccupantChange::Renamed {
                    new_nick: word(rng),
                },
                _ => OccupantChange::Removed {
                    code: [301, 307, 321, 322, 333, 0, 999][rng.below(7) as usize],
                    actor: chance(rng, 30).then(|| word(rng)),
                    reason: chance(rng, 30).then(|| word(rng)),
                },
            };
            LinkEvent::Occupant {
                room: room(rng),
                info: occupant(rng),
                change,
            }
        }
        8 | 9 => LinkEvent::Message {
            room: room(rng),
            msg: archived(rng, seq),
        },
        10 => LinkEvent::Subject {
            room: room(rng),
            seq,
            subject: Subject {
                text: word(rng),
                nick: word(rng),
                stamp_ms: 7,
            },
        },
        11 => LinkEvent::Config {
            room: room(rng),
            config: config(rng),
        },
        _ => match rng.below(3) {
            2 => LinkEvent::Vcard {
                room: room(rng),
                vcard: chance(rng, 70).then(|| {
                    outpost::xml::Element::new("vCard", "vcard-temp").child(
                        outpost::xml::Element::new("PHOTO", "vcard-temp").child(
                            outpost::xml::Element::new("BINVAL", "vcard-temp").text(word(rng)),
                        ),
                    )
                }),
            },
            0 => LinkEvent::Affiliation {
                room: room(rng),
                jid: jid(rng),
                affiliation: [Affiliation::Owner, Affiliation::None, Affiliation::Outcast]
                    [rng.below(3) as usize],
            },
            _ => LinkEvent::Destroyed {
                room: room(rng),
                alt: chance(rng, 50).then(|| jid(rng)),
                reason: chance(rng, 50).then(|| word(rng)),
            },
        },
    }
}

/// One element of link traffic: mostly numbered events, sometimes the
/// protocol's other elements with any values.
fn link_element(rng: &mut Rng, next: &mut u64) -> String {
    match rng.below(100) {
        0 => format!("<a h='{}'/>", rng.below(*next + 3)),
        1..=3 => "<r/>".to_string(),
        4 => format!("<skip to='{}'/>", rng.below(*next + 3)),
        5..=9 => format!("<t>{}</t>", event(rng, *next).encode().to_xml(DMUC)),
        10 => format!("<hello received='{}'/>", rng.below(5)),
        11 => format!("<e n='{}'/>", *next + 1),
        _ => {
            let n = if chance(rng, 97) {
                *next + 1
            } else {
                rng.below(*next + 3)
            };
            *next = (*next).max(n);
            format!("<e n='{n}'>{}</e>", event(rng, *next).encode().to_xml(DMUC))
        }
    }
}

fn header(from: &str) -> String {
    format!("<stream:stream xmlns='{DMUC}' xmlns:stream='http://etherx.jabber.org/streams' from='{from}' version='1.0'><hello received='0'/>")
}

/// The node still answers one of its users.
fn assert_serves(sim: &mut SimNode, conn: u64, seed: u64, step: usize) {
    assert!(
        sim.answers_ping(conn),
        "seed {seed} step {step}: the node stopped serving its user"
    );
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("HOSTILE_SEED") {
        return vec![s.parse().expect("HOSTILE_SEED is a number")];
    }
    let n = std::env::var("HOSTILE_SEEDS").map_or(60, |s| s.parse().expect("a number"));
    (1..=n).collect()
}

/// A hostile peer's side of a link: it reconnects when the node closes it
/// and picks up the numbering where the node left it.
struct HostileLink {
    conn: u64,
    next: u64,
    peer: &'static str,
    from: &'static str,
}

impl HostileLink {
    fn open(sim: &mut SimNode, peer: &'static str, from: &'static str) -> HostileLink {
        HostileLink {
            conn: link_from(sim, peer, from),
            next: 0,
            peer,
            from,
        }
    }

    /// Send one element of arbitrary link traffic.
    fn send(&mut self, sim: &mut SimNode, rng: &mut Rng) {
        if sim.is_closed(self.conn) {
            self.conn = link_from(sim, self.peer, self.from);
            let applied = sim.node.state().links.get(self.peer);
            self.next = applied.map_or(0, |l| l.last_in);
        }
        let el = link_element(rng, &mut self.next);
        sim.send(self.conn, &el);
    }
}

/// Open a link from a (fake) peer; returns the connection.
fn link_from(sim: &mut SimNode, peer: &str, from_domain: &str) -> u64 {
    let conn = sim.alloc_conn();
    sim.event(Event::LinkUp {
        conn,
        peer: peer.into(),
    });
    sim.take_bytes(conn);
    sim.send(conn, &header(from_domain));
    conn
}

#[test]
fn a_hostile_site_cannot_crash_or_corrupt_its_master() {
    for seed in seeds() {
        let mut cfg = NodeConfig::new(HQ_DOMAIN);
        cfg.link.peers = vec![SITE_DOMAIN.into()];
        cfg.link.compress = false;
        let mut hq = SimNode::new(cfg, seed);
        hq.add_user("kevin", "k");
        let kevin = hq.login("kevin", "k", "hq");
        hq.send(kevin, &format!("<presence to='chat@{SERVICE}/Kevin'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
        hq.send(kevin, &format!("<iq type='set' id='c' to='chat@{SERVICE}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
        hq.take(kevin);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut site = HostileLink::open(&mut hq, SITE_DOMAIN, SITE_DOMAIN);
        for step in 0..STEPS {
            site.send(&mut hq, &mut rng);
            if chance(&mut rng, 10) {
                hq.advance(rng.below(60_000));
            }
            if chance(&mut rng, 10) {
                let body = format!("<message to='chat@{SERVICE}' type='groupchat' id='k{step}'><body>from kevin {step}</body></message>");
                hq.send(kevin, &body);
            }
            if step % 25 == 0 {
                assert_serves(&mut hq, kevin, seed, step);
            }
        }
        assert_serves(&mut hq, kevin, seed, STEPS);
        // The room's order is the master's: strictly increasing, no repeats.
        if let Some(rs) = hq.node.state().rooms.get("chat") {
            let seqs: Vec<u64> = rs.archive.iter().map(|m| m.seq).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "seed {seed}: {seqs:?}"
            );
        }
        // It survives a restart: what it wrote reads back.
        hq.crash_and_restart();
        let kevin = hq.login("kevin", "k", "hq2");
        assert_serves(&mut hq, kevin, seed, STEPS + 1);
    }
}

#[test]
fn a_hostile_master_cannot_crash_or_corrupt_its_site() {
    for seed in seeds() {
        let mut cfg = NodeConfig::new(SITE_DOMAIN);
        cfg.link.upstreams = vec![SERVICE.into()];
        cfg.link.compress = false;
        let mut site = SimNode::new(cfg, seed);
        for u in ["wayne", "keith"] {
            site.add_user(u, "p");
        }
        let wayne = site.login("wayne", "p", "tv");
        let mut keith = site.login("keith", "p", "tv");
        let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
        let mut master = HostileLink::open(&mut site, SERVICE, HQ_DOMAIN);
        for step in 0..STEPS {
            // Local users act on the mirrored room while the master misbehaves.
            match rng.below(12) {
                0 => {
                    let nick = pick(&mut rng, &["Keith", "Kevin", "K2"]);
                    site.send(keith, &format!("<presence to='chat@{SERVICE}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
                }
                1 => site.send(keith, &format!("<message to='chat@{SERVICE}' type='groupchat' id='w{step}'><body>keith {step}</body></message>")),
                2 => site.send(keith, &format!("<presence to='chat@{SERVICE}/Keith' type='unavailable'/>")),
                3 => site.send(keith, &format!("<iq type='set' id='mam{step}' to='chat@{SERVICE}'><query xmlns='urn:xmpp:mam:2'/></iq>")),
                4 => {
                    site.disconnect(keith);
                    keith = site.login("keith", "p", "tv");
                }
                _ => {}
            }
            master.send(&mut site, &mut rng);
            if chance(&mut rng, 10) {
                site.advance(rng.below(600_000));
            }
            site.take(keith);
            if step % 25 == 0 {
                assert_serves(&mut site, wayne, seed, step);
            }
        }
        assert_serves(&mut site, wayne, seed, STEPS);
        for (key, m) in &site.node.state().mirrors {
            let seqs: Vec<u64> = m.state.archive.iter().map(|a| a.seq).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "seed {seed} {key}: {seqs:?}"
            );
        }
        site.crash_and_restart();
        let wayne = site.login("wayne", "p", "tv2");
        assert_serves(&mut site, wayne, seed, STEPS + 1);
    }
}

/// Where a user's stanza may go: accounts, rooms, nicks, services, nonsense.
fn address(rng: &mut Rng) -> String {
    pick(
        rng,
        &[
            "alice@localhost",
            "bob@localhost/pc",
            "bob@localhost",
            "nobody@localhost",
            "localhost",
            "room@conference.localhost",
            "room@conference.localhost/Bob",
            "room@conference.localhost/Alice",
            "other@conference.localhost",
            "conference.localhost",
            "x@elsewhere.example",
            "",
        ],
    )
    .to_string()
}

/// Users of one node doing anything a client can: the node must keep
/// serving everyone, and come back from a restart with what it wrote.
#[test]
fn hostile_users_cannot_crash_the_node() {
    for seed in seeds() {
        let mut sim = SimNode::new(NodeConfig::new("localhost"), seed);
        let users = ["alice", "bob", "carol"];
        for u in users {
            sim.add_user(u, "p");
        }
        let mut conns: Vec<u64> = users.iter().map(|u| sim.login(u, "p", "pc")).collect();
        let watcher = {
            sim.add_user("watch", "p");
            sim.login("watch", "p", "w")
        };
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        for step in 0..STEPS * 2 {
            let who = rng.below(users.len() as u64) as usize;
            let conn = conns[who];
            let mut el = match rng.below(4) {
                0 => presence(&mut rng),
                1 => groupchat(&mut rng),
                _ => stanza(&mut rng),
            };
            let to = address(&mut rng);
            if !to.is_empty() {
                el.set_attr("to", to);
            }
            if chance(&mut rng, 3) {
                el.set_attr(
                    "type",
                    pick(
                        &mut rng,
                        &[
                            "subscribe",
                            "subscribed",
                            "unsubscribe",
                            "unsubscribed",
                            "probe",
                        ],
                    ),
                );
            }
            sim.send(conn, &el.to_xml(ns::CLIENT));
            if chance(&mut rng, 3) {
                sim.disconnect(conn);
                conns[who] = sim.login(users[who], "p", "pc");
            }
            if chance(&mut rng, 5) {
                sim.advance(rng.below(120_000));
            }
            for &c in &conns {
                sim.take(c);
            }
            if step % 50 == 0 {
                assert_serves(&mut sim, watcher, seed, step);
            }
        }
        assert_serves(&mut sim, watcher, seed, STEPS * 2);
        sim.crash_and_restart();
        let watcher = sim.login("watch", "p", "w2");
        assert_serves(&mut sim, watcher, seed, STEPS * 2 + 1);
    }
}

/// A master cannot make a site hold more occupants than any room may have,
/// nor presences larger than a room keeps.
#[test]
fn a_master_cannot_make_a_site_hold_without_bound() {
    let mut cfg = NodeConfig::new(SITE_DOMAIN);
    cfg.link.upstreams = vec![SERVICE.into()];
    cfg.link.compress = false;
    cfg.muc.max_users = 5;
    let mut site = SimNode::new(cfg, 1);
    site.add_user("keith", "p");
    let keith = site.login("keith", "p", "tv");
    let conn = link_from(&mut site, SERVICE, HQ_DOMAIN);
    site.send(keith, &format!("<presence to='chat@{SERVICE}/Keith'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
    let mut n = 0;
    let mut send = |site: &mut SimNode, ev: LinkEvent| {
        n += 1;
        site.send(
            conn,
            &format!("<e n='{n}'>{}</e>", ev.encode().to_xml(DMUC)),
        );
    };
    let info = |nick: String, status: usize| OccupantInfo {
        nick: nick.clone(),
        bare: format!("{nick}@fairfax.example"),
        jid: format!("{nick}@fairfax.example/x"),
        affiliation: Affiliation::None,
        role: Role::Participant,
        occupant_id: nick,
        presence: Element::new("presence", ns::CLIENT)
            .child(Element::new("status", ns::CLIENT).text("s".repeat(status))),
    };
    send(
        &mut site,
        LinkEvent::Snapshot {
            room: "chat".into(),
            config: RoomConfig::default(),
            affiliations: vec![],
            subject: None,
            occupants: vec![],
            history: vec![],
            next_seq: 1,
            gap: false,
            locked: false,
        },
    );
    for i in 0..20 {
        let change = OccupantChange::Joined;
        send(
            &mut site,
            LinkEvent::Occupant {
                room: "chat".into(),
                info: info(format!("n{i}"), 100_000),
                change,
            },
        );
    }
    let status = match site.admin(outpost::node::AdminCommand::Status) {
        outpost::node::AdminReply::Status(s) => s,
        other => panic!("{other:?}"),
    };
    let room = status
        .rooms
        .iter()
        .find(|r| r.jid == format!("chat@{SERVICE}"))
        .unwrap();
    assert!(room.occupants.len() <= 5, "{}", room.occupants.len());
    let out = site.take(keith);
    assert!(
        !out.contains(&"s".repeat(100_000)),
        "huge presences are not kept or shown"
    );
    assert_serves(&mut site, keith, 0, 0);
}

/// HQ with Kevin logged in, and a link connection from the site that has
/// sent nothing yet: (HQ, Kevin's connection, the link's).
fn hq_with_a_site_connected() -> (SimNode, u64, u64) {
    let mut cfg = NodeConfig::new(HQ_DOMAIN);
    cfg.link.peers = vec![SITE_DOMAIN.into()];
    let mut hq = SimNode::new(cfg, 1);
    hq.add_user("kevin", "k");
    let kevin = hq.login("kevin", "k", "hq");
    let conn = hq.alloc_conn();
    hq.event(Event::LinkUp {
        conn,
        peer: SITE_DOMAIN.into(),
    });
    hq.take_bytes(conn);
    (hq, kevin, conn)
}

/// A compressed link whose input inflates hugely is handled a piece per
/// turn (before, 1 GB of whitespace stalled the node 2.7 s), and a peer
/// that sends nothing but whitespace is cut off.
#[test]
fn a_compressed_flood_is_handled_a_piece_per_turn() {
    use outpost::link::compress::Deflater;
    let (mut hq, kevin, conn) = hq_with_a_site_connected();
    let mut deflate = Deflater::new();
    let mut stream = b"Z".to_vec();
    stream.extend(deflate.compress(header(SITE_DOMAIN).as_bytes()));
    // Many real events, 6 MB in all once inflated.
    let mut events = String::new();
    for n in 1..=3000 {
        events.push_str(&format!(
            "<e n='{n}'><resync room='nowhere{}' last-seq='0'/></e>",
            "x".repeat(2000)
        ));
    }
    stream.extend(deflate.compress(events.as_bytes()));
    hq.event(Event::Data {
        conn,
        bytes: stream,
    });
    let applied = |hq: &SimNode| hq.node.state().links[SITE_DOMAIN].last_in;
    let first = applied(&hq);
    assert!(first > 0 && first < 3000, "one turn handled {first} events");
    assert!(
        !hq.node.accepts_input(conn),
        "the link is not read meanwhile"
    );
    assert_serves(&mut hq, kevin, 0, 0);
    let mut turns = 1;
    while applied(&hq) < 3000 {
        hq.advance(0);
        turns += 1;
        assert!(turns < 100);
    }
    assert!(turns >= 5, "{turns} turns");
    assert!(hq.node.accepts_input(conn));
    // Nothing but whitespace: cut off after a bounded amount.
    let spaces = deflate.compress(&vec![b' '; 4 * 1024 * 1024]);
    assert!(spaces.len() < 64 * 1024);
    hq.event(Event::Data {
        conn,
        bytes: spaces,
    });
    for _ in 0..10 {
        hq.advance(0);
    }
    assert!(hq.is_closed(conn), "closed for too much whitespace");
    assert_serves(&mut hq, kevin, 0, 1);
}

/// A peer that ends its compressed stream after every event makes the
/// receiver start an inflater each time: that is counted against the
/// turn's budget, so the node stays responsive and every event still
/// arrives, once.
#[test]
fn a_stream_restarted_every_event_is_handled_a_piece_per_turn() {
    use outpost::link::compress::{stored_stream, Deflater};
    let (mut hq, kevin, conn) = hq_with_a_site_connected();
    let mut stream = b"Z".to_vec();
    let mut opening = Deflater::new();
    stream.extend(opening.compress(header(SITE_DOMAIN).as_bytes()));
    stream.extend(opening.finish());
    // 2,000 events, each a stream of its own, each a few dozen bytes.
    const EVENTS: u64 = 2000;
    for n in 1..=EVENTS {
        let event = format!("<e n='{n}'><resync room='r' last-seq='0'/></e>");
        stream.extend(stored_stream(event.as_bytes()));
    }
    hq.event(Event::Data {
        conn,
        bytes: stream,
    });
    let applied = |hq: &SimNode| hq.node.state().links[SITE_DOMAIN].last_in;
    let first = applied(&hq);
    assert!(
        first > 0 && first < EVENTS,
        "one turn handled {first} events"
    );
    assert_serves(&mut hq, kevin, 0, 0);
    let mut turns = 1;
    while applied(&hq) < EVENTS {
        hq.advance(0);
        turns += 1;
        assert!(turns < 100);
    }
    assert!(!hq.is_closed(conn), "a restarted stream is no error");
    assert_eq!(
        hq.node.link_compression_held(SITE_DOMAIN),
        Some((true, false)),
        "the last stream ended: no inflater is held"
    );
}
