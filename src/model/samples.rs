//! One value of every stored and carried variant, with fixed contents: for
//! tests that pin the log format and check the link codec.

use super::event::{LinkEvent, OccupantChange, OccupantInfo};
use super::occupants::Role;
use super::room::{Affiliation, Archived, RoomConfig, Subject};
use crate::jid::Jid;
use crate::xml::{ns, Element};

pub fn from() -> Jid {
    Jid::parse("wayne@raleigh.example/TV").unwrap()
}

pub fn presence() -> Element {
    Element::new("presence", ns::CLIENT).child(Element::new("show", ns::CLIENT).text("away"))
}

pub fn message() -> Element {
    crate::xml::parse_fragment(
        "<message type='groupchat' id='x'><body>hi &amp; bye</body></message>",
    )
    .unwrap()
}

pub fn archived(seq: u64) -> Archived {
    Archived {
        seq,
        stanza_id: format!("sid{seq}"),
        stamp_ms: 1_795_000_000_000 + seq,
        nick: "Wayne".into(),
        real: "wayne@raleigh.example".into(),
        // As the master stores it: sender, then the client's attributes;
        // payload, then stanza-id and occupant-id.
        xml: format!("<message from='chat@conf.x/Wayne' type='groupchat' id='x'><body>hi &amp; bye</body><stanza-id xmlns='urn:xmpp:sid:0' id='sid{seq}' by='chat@conf.x'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='oid'/></message>"),
    }
}

pub fn subject() -> Subject {
    Subject {
        text: "topic".into(),
        nick: "Kevin".into(),
        stamp_ms: 1_795_000_000_000,
    }
}

pub fn config() -> RoomConfig {
    RoomConfig {
        password: Some("pw".into()),
        ..RoomConfig::default()
    }
}

pub fn occupant() -> OccupantInfo {
    OccupantInfo {
        nick: "Wayne".into(),
        bare: "wayne@raleigh.example".into(),
        jid: from().to_string(),
        affiliation: Affiliation::Member,
        role: Role::Participant,
        occupant_id: "oid".into(),
        presence: presence(),
    }
}

/// Every kind of link event (and of occupant change).
pub fn link_events() -> Vec<LinkEvent> {
    let changes = [
        OccupantChange::Joined,
        OccupantChange::Updated,
        OccupantChange::Left {
            status: Some("bye".into()),
        },
        OccupantChange::Renamed {
            new_nick: "W2".into(),
        },
        OccupantChange::Removed {
            code: 307,
            actor: Some("Kevin".into()),
            reason: Some("calm".into()),
        },
    ];
    let mut events = vec![
        LinkEvent::Join {
            room: "chat".into(),
            nick: "Wayne".into(),
            from: from(),
            presence: presence(),
        },
        LinkEvent::Update {
            room: "chat".into(),
            nick: "Wayne".into(),
            from: from(),
            presence: presence(),
        },
        LinkEvent::Leave {
            room: "chat".into(),
            from: from(),
            presence: Element::new("presence", ns::CLIENT).attr("type", "unavailable"),
        },
        LinkEvent::Groupchat {
            room: "chat".into(),
            from: from(),
            nick: "Wayne".into(),
            stanza_id: "s1".into(),
            message: message(),
        },
        LinkEvent::Resync {
            room: "chat".into(),
            last_seq: 6,
        },
        LinkEvent::Relay {
            from: from(),
            to: Jid::parse("chat@conf.x/Kevin").unwrap(),
            stanza: message(),
        },
        LinkEvent::Snapshot {
            room: "chat".into(),
            config: config(),
            affiliations: vec![("kevin@fairfax.example".into(), Affiliation::Owner)],
            subject: Some(subject()),
            occupants: vec![occupant()],
            history: vec![archived(7)],
            next_seq: 8,
            gap: true,
            locked: true,
        },
        LinkEvent::Message {
            room: "chat".into(),
            msg: archived(8),
        },
        LinkEvent::Subject {
            room: "chat".into(),
            seq: 9,
            subject: subject(),
        },
        LinkEvent::Config {
            room: "chat".into(),
            config: config(),
        },
        LinkEvent::Affiliation {
            room: "chat".into(),
            jid: "dana@raleigh.example".into(),
            affiliation: Affiliation::Outcast,
        },
        LinkEvent::Destroyed {
            room: "chat".into(),
            alt: Some("other@conf.x".into()),
            reason: Some("moved".into()),
        },
    ];
    for change in changes {
        events.push(LinkEvent::Occupant {
            room: "chat".into(),
            info: occupant(),
            change,
        });
    }
    events
}
