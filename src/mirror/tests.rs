//! The mirrors through their inputs and outputs, with no node around them.

use super::{MirrorOutput, Mirrors, Replicas};
use crate::c2s::Clients;
use crate::common::{ConnId, Now};
use crate::im::Bound;
use crate::jid::Jid;
use crate::link::{LinkOutput, Links};
use crate::model::event::{LinkEvent, OccupantChange, OccupantInfo};
use crate::model::occupants::Role;
use crate::model::room::{Affiliation, RoomConfig};
use crate::settings::{LinkConfig, NodeConfig};
use crate::state::{LinkStore, Record};
use crate::xml::{ns, parse_fragment, Element, Limits};

const HQ: &str = "conference.hq.example";
const ROOM: &str = "ops@conference.hq.example";

struct Bench {
    mirrors: Mirrors,
    replicas: Replicas,
    queues: LinkStore,
    bound: Bound,
    clients: Clients,
    links: Links,
    now: Now,
}

impl Bench {
    fn new() -> Bench {
        let mut cfg = NodeConfig::new("site.example");
        cfg.link.upstreams = vec![HQ.into()];
        let link_cfg = LinkConfig {
            upstreams: vec![HQ.into()],
            compress: false,
            ..LinkConfig::default()
        };
        Bench {
            mirrors: Mirrors::new(cfg.clone(), [1; 32]),
            replicas: Replicas::new(),
            queues: LinkStore::new(),
            bound: Bound::default(),
            clients: Clients::new(cfg.clone(), [2; 32]),
            links: Links::new(
                link_cfg,
                "site.example",
                &cfg.muc_service,
                Limits::default(),
                "e".into(),
                [3; 32],
            ),
            now: Now {
                mono_ms: 1,
                unix_ms: 1_700_000_000_000,
            },
        }
    }

    /// The link to HQ comes up (its hello arrives).
    fn link_up(&mut self) {
        let mut out: Vec<LinkOutput> = Vec::new();
        self.links.up(1, 99, HQ.into(), &self.queues, &mut out);
        let hello = format!(
            "<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='{}' from='{HQ}'><hello received='0' epoch='x'/>",
            ns::STREAMS
        );
        self.links.data(1, 99, hello.as_bytes());
        while self.links.poll(1, &mut self.queues, &mut out).is_some() {}
        assert!(self.links.is_up(HQ));
    }

    fn local(&mut self, conn: ConnId, jid: &str) -> Jid {
        let jid = Jid::parse(jid).unwrap();
        self.bound.insert(conn, jid.clone());
        jid
    }

    fn ctx_run(&mut self, f: impl FnOnce(&mut super::Ctx)) -> Vec<MirrorOutput> {
        let mut ctx = self.mirrors.ctx(
            &mut self.replicas,
            &self.queues,
            &self.bound,
            &self.clients,
            &self.links,
            self.now,
        );
        f(&mut ctx);
        self.mirrors.take_output()
    }

    fn stanza(&mut self, conn: ConnId, from: &Jid, xml: &str) -> Vec<MirrorOutput> {
        let mut el: Element = parse_fragment(xml).unwrap();
        el.set_attr("from", from.to_string());
        let to = Jid::parse(el.get_attr("to").unwrap()).unwrap();
        self.ctx_run(|m| m.on_mirror_stanza(conn, el, to))
    }

    fn master_says(&mut self, ev: LinkEvent) -> Vec<MirrorOutput> {
        self.ctx_run(|m| m.on_upstream_event(&HQ.into(), ev))
    }
}

fn sent_to(out: &[MirrorOutput], to: ConnId) -> String {
    out.iter()
        .filter_map(|o| match o {
            MirrorOutput::Send { conn, bytes } if *conn == to => {
                Some(String::from_utf8_lossy(&bytes.to_vec()).into_owned())
            }
            MirrorOutput::Paced { conn, bytes } if *conn == to => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
            _ => None,
        })
        .collect()
}

fn join(nick: &str) -> String {
    format!("<presence xmlns='jabber:client' to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
}

fn info(nick: &str, jid: &str) -> OccupantInfo {
    OccupantInfo {
        nick: nick.into(),
        bare: jid.split('/').next().unwrap().into(),
        jid: jid.into(),
        affiliation: Affiliation::None,
        role: Role::Participant,
        occupant_id: format!("oid-{nick}"),
        presence: Element::new("presence", ns::CLIENT),
    }
}

#[test]
fn a_join_goes_to_the_master_and_is_rendered_from_its_answer() {
    let mut b = Bench::new();
    b.link_up();
    let wayne = b.local(1, "wayne@site.example/tv");
    let out = b.stanza(1, &wayne, &join("Wayne"));
    assert!(out.iter().any(|o| matches!(o, MirrorOutput::ToMaster { upstream, event, transient: false } if upstream == HQ && matches!(event.as_ref(), LinkEvent::Join { .. }))), "{out:?}");
    assert!(out.contains(&MirrorOutput::Joined {
        conn: 1,
        key: ROOM.into()
    }));
    assert_eq!(
        sent_to(&out, 1),
        "",
        "nothing shown before the master answers"
    );
    // The master: the whole room, then the newcomer.
    let out = b.master_says(LinkEvent::Snapshot {
        room: "ops".into(),
        config: RoomConfig::default(),
        affiliations: vec![("kevin@hq.example".into(), Affiliation::Owner)],
        subject: None,
        occupants: vec![info("Kevin", "kevin@hq.example/desk")],
        history: vec![],
        next_seq: 1,
        gap: false,
        locked: false,
    });
    assert!(out.iter().any(
        |o| matches!(o, MirrorOutput::Persist(r) if matches!(r.as_ref(), Record::Mirror { .. }))
    ));
    assert!(b.replicas.contains_key(ROOM), "the replica is kept");
    let out = b.master_says(LinkEvent::Occupant {
        room: "ops".into(),
        info: info("Wayne", "wayne@site.example/tv"),
        change: OccupantChange::Joined,
    });
    let to_wayne = sent_to(&out, 1);
    assert!(
        to_wayne.contains(&format!("from='{ROOM}/Kevin'")),
        "{to_wayne}"
    );
    assert!(to_wayne.contains("code='110'"), "{to_wayne}");
    assert!(
        !to_wayne.contains("code='201'"),
        "not a new room: {to_wayne}"
    );
}

#[test]
fn a_join_while_the_master_is_unreachable_fails_at_once_saying_so() {
    let mut b = Bench::new();
    let wayne = b.local(1, "wayne@site.example/tv");
    let out = b.stanza(1, &wayne, &join("Wayne"));
    let to_wayne = sent_to(&out, 1);
    assert!(
        to_wayne.contains("remote-server-timeout") && to_wayne.contains("unreachable"),
        "{to_wayne}"
    );
    assert!(!out
        .iter()
        .any(|o| matches!(o, MirrorOutput::ToMaster { .. })));
}

#[test]
fn a_local_message_is_shown_at_once_sent_up_and_not_shown_again_when_the_master_echoes_it() {
    let mut b = Bench::new();
    b.link_up();
    let wayne = b.local(1, "wayne@site.example/tv");
    b.stanza(1, &wayne, &join("Wayne"));
    b.master_says(LinkEvent::Snapshot {
        room: "ops".into(),
        config: RoomConfig::default(),
        affiliations: vec![],
        subject: None,
        occupants: vec![],
        history: vec![],
        next_seq: 1,
        gap: false,
        locked: false,
    });
    b.master_says(LinkEvent::Occupant {
        room: "ops".into(),
        info: info("Wayne", "wayne@site.example/tv"),
        change: OccupantChange::Joined,
    });
    let out = b.stanza(
        1,
        &wayne,
        &format!("<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='m1'><body>hi</body></message>"),
    );
    assert!(sent_to(&out, 1).contains("<body>hi</body>"), "local first");
    let Some(LinkEvent::Groupchat {
        stanza_id, message, ..
    }) = out.iter().find_map(|o| match o {
        MirrorOutput::ToMaster { event, .. } => Some(event.as_ref().clone()),
        _ => None,
    })
    else {
        panic!("not sent up: {out:?}");
    };
    assert!(message.has_child("body", ns::CLIENT));
    // The master's echo, with the id minted here and its place in order.
    let stamped = sent_to(&out, 1);
    let xml =
        stamped[stamped.find("<message").unwrap()..].replace(" to='wayne@site.example/tv'", "");
    let echo = LinkEvent::Message {
        room: "ops".into(),
        msg: crate::model::room::Archived {
            seq: 1,
            stanza_id,
            stamp_ms: b.now.unix_ms,
            nick: "Wayne".into(),
            real: "wayne@site.example".into(),
            xml,
        },
    };
    let out = b.master_says(echo);
    assert_eq!(sent_to(&out, 1), "", "not delivered twice");
    assert_eq!(
        b.replicas[ROOM].state.archive.len(),
        1,
        "kept in the replica's archive"
    );
}

/// A session that leaves before the master answered its join is out at
/// once; the master hears it leave after the join, and its late admission
/// shows the session nothing.
#[test]
fn leaving_before_the_master_answers_the_join_is_not_undone_by_the_answer() {
    let mut b = Bench::new();
    b.link_up();
    let wayne = b.local(1, "wayne@site.example/tv");
    b.stanza(1, &wayne, &join("Wayne"));
    let out = b.stanza(
        1,
        &wayne,
        &format!("<presence xmlns='jabber:client' to='{ROOM}/Wayne' type='unavailable'/>"),
    );
    let to_wayne = sent_to(&out, 1);
    assert!(
        to_wayne.contains("type='unavailable'") && to_wayne.contains("code='110'"),
        "{to_wayne}"
    );
    assert!(out.iter().any(|o| matches!(o, MirrorOutput::ToMaster { event, .. } if matches!(event.as_ref(), LinkEvent::Leave { .. }))), "{out:?}");
    assert!(out.contains(&MirrorOutput::Left {
        session: wayne.clone(),
        key: ROOM.into()
    }));
    // The master's answer to the join arrives afterwards.
    let mut late = b.master_says(LinkEvent::Snapshot {
        room: "ops".into(),
        config: RoomConfig::default(),
        affiliations: vec![],
        subject: None,
        occupants: vec![info("Wayne", "wayne@site.example/tv")],
        history: vec![],
        next_seq: 1,
        gap: false,
        locked: false,
    });
    late.extend(b.master_says(LinkEvent::Occupant {
        room: "ops".into(),
        info: info("Wayne", "wayne@site.example/tv"),
        change: OccupantChange::Joined,
    }));
    assert_eq!(
        sent_to(&late, 1),
        "",
        "nothing shown to a session that left"
    );
}

/// A room destroyed while a local join waits for the master: the join
/// fails, saying why, and the session is not counted in the room.
#[test]
fn a_join_waiting_when_the_room_is_destroyed_fails() {
    let mut b = Bench::new();
    b.link_up();
    let wayne = b.local(1, "wayne@site.example/tv");
    b.stanza(1, &wayne, &join("Wayne"));
    let out = b.master_says(LinkEvent::Destroyed {
        room: "ops".into(),
        alt: None,
        reason: None,
    });
    let to_wayne = sent_to(&out, 1);
    assert!(
        to_wayne.contains("type='error'") && to_wayne.contains("<gone"),
        "{to_wayne}"
    );
    assert!(out.contains(&MirrorOutput::Left {
        session: wayne,
        key: ROOM.into()
    }));
}
