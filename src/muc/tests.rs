//! The MUC service through its inputs and outputs, with no node around it.

use super::{MucOutput, Origin, Service};
use crate::c2s::Clients;
use crate::common::{ConnId, Now};
use crate::im::Bound;
use crate::jid::Jid;
use crate::link::Links;
use crate::model::event::{LinkEvent, OccupantChange};
use crate::model::room::{RoomRecord, Rooms};
use crate::settings::{LinkConfig, NodeConfig};
use crate::state::Record;
use crate::xml::{parse_fragment, Limits};

const ROOM: &str = "ops@conference.hq.example";
const SITE: &str = "site.example";

struct Bench {
    muc: Service,
    rooms: Rooms,
    bound: Bound,
    clients: Clients,
    links: Links,
    now: Now,
}

impl Bench {
    fn new() -> Bench {
        let mut cfg = NodeConfig::new("hq.example");
        cfg.link.peers = vec![SITE.into()];
        let link_cfg = LinkConfig {
            peers: vec![SITE.into()],
            ..LinkConfig::default()
        };
        Bench {
            muc: Service::new(cfg.clone(), [1; 32]),
            rooms: Rooms::new(),
            bound: Bound::default(),
            clients: Clients::new(cfg.clone(), [2; 32]),
            links: Links::new(
                link_cfg,
                "hq.example",
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

    fn local(&mut self, conn: ConnId, jid: &str) -> Origin {
        let jid = Jid::parse(jid).unwrap();
        self.bound.insert(conn, jid.clone());
        Origin::Local { conn, jid }
    }

    fn stanza(&mut self, origin: &Origin, xml: &str) -> Vec<MucOutput> {
        let el = parse_fragment(xml).unwrap();
        let to = Jid::parse(el.get_attr("to").unwrap()).unwrap();
        self.muc
            .ctx(
                &mut self.rooms,
                &self.bound,
                &self.clients,
                &self.links,
                self.now,
            )
            .on_muc_stanza(origin, el, to);
        self.muc.take_output()
    }
}

fn sent_to(out: &[MucOutput], to: ConnId) -> String {
    out.iter()
        .filter_map(|o| match o {
            MucOutput::Send { conn, bytes } if *conn == to => {
                Some(String::from_utf8_lossy(&bytes.to_vec()).into_owned())
            }
            MucOutput::Paced { conn, bytes } if *conn == to => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
            _ => None,
        })
        .collect()
}

fn join(nick: &str) -> String {
    format!("<presence xmlns='jabber:client' to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
}

#[test]
fn the_first_join_creates_the_room_durably_and_tells_the_router() {
    let mut b = Bench::new();
    let kevin = b.local(1, "kevin@hq.example/desk");
    let out = b.stanza(&kevin, &join("Kevin"));
    assert!(matches!(
        out.first(),
        Some(MucOutput::Persist(r)) if matches!(r.as_ref(), Record::Room { change: RoomRecord::Create { .. }, .. })
    ));
    assert!(b.rooms.contains_key("ops"), "applied to the rooms");
    let to_kevin = sent_to(&out, 1);
    assert!(
        to_kevin.contains("code='110'") && to_kevin.contains("code='201'"),
        "{to_kevin}"
    );
    assert!(out.contains(&MucOutput::Joined {
        conn: 1,
        room: "ops".into()
    }));
    assert!(b.muc.live_rooms()["ops"].occupants.contains_key("Kevin"));
}

#[test]
fn a_message_is_archived_delivered_and_sent_to_the_sites_with_occupants() {
    let mut b = Bench::new();
    let kevin = b.local(1, "kevin@hq.example/desk");
    b.stanza(&kevin, &join("Kevin"));
    // An instant room: unlocked for others.
    b.stanza(&kevin, &format!("<iq xmlns='jabber:client' type='set' id='i' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    // Wayne joins from the site (through its link).
    let wayne = Origin::Remote {
        peer: SITE.into(),
        jid: Jid::parse("wayne@site.example/tv").unwrap(),
    };
    let out = b.stanza(&wayne, &join("Wayne"));
    let snapshot = out.iter().any(|o| matches!(o, MucOutput::ToSite { peer, event, .. } if peer == SITE && matches!(event.as_ref(), LinkEvent::Snapshot { .. })));
    assert!(
        snapshot,
        "the site's first occupant brings it the room: {out:?}"
    );
    let joined = out.iter().any(|o| matches!(o, MucOutput::ToSite { event, .. } if matches!(event.as_ref(), LinkEvent::Occupant { change: OccupantChange::Joined, .. })));
    assert!(joined);
    let out = b.stanza(
        &kevin,
        &format!("<message xmlns='jabber:client' to='{ROOM}' type='groupchat' id='m1'><body>hi</body></message>"),
    );
    assert!(out.iter().any(|o| matches!(o, MucOutput::Persist(r) if matches!(r.as_ref(), Record::Room { change: RoomRecord::Message { .. }, .. }))));
    assert_eq!(b.rooms["ops"].archive.len(), 1);
    assert!(sent_to(&out, 1).contains("<body>hi</body>"));
    let to_site = out.iter().any(|o| matches!(o, MucOutput::ToSite { peer, event, transient: false } if peer == SITE && matches!(event.as_ref(), LinkEvent::Message { .. })));
    assert!(to_site, "one copy for the site: {out:?}");
}

#[test]
fn a_site_user_is_answered_through_the_link_not_a_local_session() {
    let mut b = Bench::new();
    let wayne = Origin::Remote {
        peer: SITE.into(),
        jid: Jid::parse("wayne@site.example/tv").unwrap(),
    };
    let out = b.stanza(
        &wayne,
        &format!("<iq xmlns='jabber:client' type='get' id='d' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
    );
    assert!(
        matches!(out.as_slice(), [MucOutput::Remote { to, el }] if to.to_string() == "wayne@site.example/tv" && el.get_attr("type") == Some("error")),
        "{out:?}"
    );
}
