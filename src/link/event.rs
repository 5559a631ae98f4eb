//! The typed events a link carries, and their XML codec (DMUC3 as corrected,
//! see docs/protocol.md). Routing works on `LinkEvent`; only the codec knows
//! the wire form, so a compact codec can replace it later.

use crate::jid::Jid;
use crate::model::event::{LinkEvent, OccupantChange, OccupantInfo};
use crate::model::occupants::Role;
use crate::model::room::{Affiliation, Archived, RoomConfig, Subject};
use crate::xml::muc_ns as mns;
use crate::xml::{ns, Element, Node as XmlNode};

pub const DMUC: &str = "urn:xmpp:dmuc:0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn el(name: &str) -> Element {
    Element::new(name, DMUC)
}

fn config_el(name: &str, c: &RoomConfig) -> Element {
    let mut e = el(name)
        .attr("name", c.name.clone())
        .attr("description", c.description.clone())
        .attr("persistent", flag(c.persistent))
        .attr("public", flag(c.public))
        .attr("members-only", flag(c.members_only))
        .attr("max-users", c.max_users.to_string())
        .attr("moderated", flag(c.moderated))
        .attr(
            "whois",
            if c.whois_anyone {
                "anyone"
            } else {
                "moderators"
            },
        )
        .attr("change-subject", flag(c.subject_by_anyone))
        .attr("allow-invites", flag(c.allow_invites))
        .attr("history", c.history_length.to_string())
        .attr("archiving", flag(c.archiving));
    if let Some(p) = &c.password {
        e.set_attr("password", p.clone());
    }
    e
}

/// An archived message on the wire: its identity (stanza-id, occupant-id,
/// sender) once, as attributes; the receiver rebuilds the full stanza.
fn archived_el(m: &Archived) -> Result<Element, DecodeError> {
    let mut message =
        crate::xml::parse_fragment(&m.xml).map_err(|e| bad(format!("archived message: {e:?}")))?;
    let occupant_id = message
        .get_child("occupant-id", mns::OCCUPANT_ID)
        .and_then(|o| o.get_attr("id"))
        .unwrap_or("")
        .to_string();
    message.remove_attr("from");
    message.children.retain(|c| match c {
        XmlNode::Element(e) => !(e.ns == mns::SID || e.ns == mns::OCCUPANT_ID),
        XmlNode::Text(_) => true,
    });
    Ok(el("m")
        .attr("seq", m.seq.to_string())
        .attr("id", m.stanza_id.clone())
        .attr("stamp", crate::stanza::timestamp(m.stamp_ms))
        .attr("nick", m.nick.clone())
        .attr("real", m.real.clone())
        .attr("oid", occupant_id)
        .child(message))
}

/// An occupant on the wire. The bare JID is sent only when it is not the
/// full JID's, and an empty presence payload not at all.
fn occupant_el(info: &OccupantInfo) -> Element {
    let mut e = el("occupant")
        .attr("nick", info.nick.clone())
        .attr("jid", info.jid.clone());
    if bare_of(&info.jid) != info.bare {
        e.set_attr("bare", info.bare.clone());
    }
    e = e
        .attr("affiliation", info.affiliation.as_str())
        .attr("role", info.role.as_str())
        .attr("oid", info.occupant_id.clone());
    if !info.presence.children.is_empty() || !info.presence.attrs.is_empty() {
        e = e.child(info.presence.clone());
    }
    e
}

fn bare_of(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

/// Between users: presence broadcasts and probes (said again on every
/// hello), chat states (stale after a split), queries and their answers.
pub fn relay_may_be_transient(stanza: &Element) -> bool {
    match stanza.name.as_str() {
        "presence" => matches!(
            stanza.get_attr("type"),
            None | Some("unavailable" | "probe")
        ),
        // A query is answered now or not at all.
        "iq" => true,
        "message" => {
            !stanza.has_child("body", ns::CLIENT)
                && stanza
                    .elements()
                    .any(|c| c.ns == "http://jabber.org/protocol/chatstates")
        }
        _ => false,
    }
}

impl LinkEvent {
    /// What may travel unnumbered (`<t>`): a groupchat message with neither
    /// body nor subject (chat states, markers): nothing the archive keeps;
    /// a master's routes, said again on every hello; and between users,
    /// presence broadcasts (said again on every hello) and chat states.
    pub fn is_transient(&self) -> bool {
        match self {
            LinkEvent::Groupchat { message, .. } => {
                !message.has_child("body", ns::CLIENT) && !message.has_child("subject", ns::CLIENT)
            }
            LinkEvent::Routes { .. }
            | LinkEvent::FileWant { .. }
            | LinkEvent::FileChunk { .. }
            | LinkEvent::FileMissing { .. } => true,
            LinkEvent::Relay { stanza, .. } => relay_may_be_transient(stanza),
            _ => false,
        }
    }

    pub fn encode(&self) -> Element {
        match self {
            LinkEvent::Join {
                room,
                nick,
                from,
                presence,
            } => el("join")
                .attr("room", room.clone())
                .attr("nick", nick.clone())
                .attr("from", from.to_string())
                .child(presence.clone()),
            LinkEvent::Update {
                room,
                nick,
                from,
                presence,
            } => el("update")
                .attr("room", room.clone())
                .attr("nick", nick.clone())
                .attr("from", from.to_string())
                .child(presence.clone()),
            LinkEvent::Leave {
                room,
                from,
                presence,
            } => el("leave")
                .attr("room", room.clone())
                .attr("from", from.to_string())
                .child(presence.clone()),
            LinkEvent::Groupchat {
                room,
                from,
                nick,
                stanza_id,
                message,
            } => el("groupchat")
                .attr("room", room.clone())
                .attr("from", from.to_string())
                .attr("nick", nick.clone())
                .attr("id", stanza_id.clone())
                .child(message.clone()),
            LinkEvent::Resync { room, last_seq } => el("resync")
                .attr("room", room.clone())
                .attr("last-seq", last_seq.to_string()),
            LinkEvent::Relay { from, to, stanza } => el("relay")
                .attr("from", from.to_string())
                .attr("to", to.to_string())
                .child(stanza.clone()),
            LinkEvent::Snapshot {
                room,
                config,
                affiliations,
                subject,
                occupants,
                history,
                next_seq,
                gap,
                locked,
            } => {
                let mut e = el("snapshot")
                    .attr("room", room.clone())
                    .attr("next-seq", next_seq.to_string())
                    .child(config_el("config", config));
                if *gap {
                    e.set_attr("gap", "1");
                }
                if *locked {
                    e.set_attr("locked", "1");
                }
                for (jid, a) in affiliations {
                    e = e.child(
                        el("affiliation")
                            .attr("jid", jid.clone())
                            .attr("affiliation", a.as_str()),
                    );
                }
                if let Some(s) = subject {
                    e = e.child(subject_el(s));
                }
                for o in occupants {
                    e = e.child(occupant_el(o));
                }
                for m in history {
                    if let Ok(m) = archived_el(m) {
                        e = e.child(m);
                    }
                }
                e
            }
            LinkEvent::Occupant { room, info, change } => {
                let mut e = occupant_el(info).attr("room", room.clone());
                match change {
                    OccupantChange::Joined => e.set_attr("change", "joined"),
                    OccupantChange::Updated => e.set_attr("change", "updated"),
                    OccupantChange::Left { status } => {
                        e.set_attr("change", "left");
                        if let Some(s) = status {
                            e.set_attr("status", s.clone());
                        }
                    }
                    OccupantChange::Renamed { new_nick } => {
                        e.set_attr("change", "renamed");
                        e.set_attr("new-nick", new_nick.clone());
                    }
                    OccupantChange::Removed {
                        code,
                        actor,
                        reason,
                    } => {
                        e.set_attr("change", "removed");
                        e.set_attr("code", code.to_string());
                        if let Some(a) = actor {
                            e.set_attr("actor", a.clone());
                        }
                        if let Some(r) = reason {
                            e.set_attr("reason", r.clone());
                        }
                    }
                }
                e
            }
            LinkEvent::Message { room, msg } => match archived_el(msg) {
                Ok(m) => el("message").attr("room", room.clone()).child(m),
                Err(_) => el("message").attr("room", room.clone()),
            },
            LinkEvent::Subject { room, seq, subject } => subject_el(subject)
                .attr("room", room.clone())
                .attr("seq", seq.to_string()),
            LinkEvent::Config { room, config } => {
                config_el("config", config).attr("room", room.clone())
            }
            LinkEvent::Affiliation {
                room,
                jid,
                affiliation,
            } => el("affiliation")
                .attr("room", room.clone())
                .attr("jid", jid.clone())
                .attr("affiliation", affiliation.as_str()),
            LinkEvent::Routes { domains } => {
                let mut e = el("routes");
                for d in domains {
                    e = e.child(el("domain").text(d.clone()));
                }
                e
            }
            LinkEvent::FileWant {
                origin,
                id,
                offset,
                len,
            } => el("fw")
                .attr("o", origin.clone())
                .attr("i", id.clone())
                .attr("at", offset.to_string())
                .attr("n", len.to_string()),
            LinkEvent::FileChunk {
                origin,
                id,
                offset,
                meta,
                data,
            } => {
                use base64::Engine;
                let mut e = el("fc")
                    .attr("o", origin.clone())
                    .attr("i", id.clone())
                    .attr("at", offset.to_string());
                if let Some(m) = meta {
                    e = e
                        .attr("size", m.size.to_string())
                        .attr("sha", m.sha256.clone())
                        .attr("type", m.content_type.clone())
                        .attr("name", m.name.clone());
                }
                e.text(base64::engine::general_purpose::STANDARD.encode(data))
            }
            LinkEvent::FileMissing { origin, id } => {
                el("fm").attr("o", origin.clone()).attr("i", id.clone())
            }
            LinkEvent::Vcard { room, vcard } => {
                let e = el("vcard").attr("room", room.clone());
                match vcard {
                    Some(card) => e.child(card.clone()),
                    None => e,
                }
            }
            LinkEvent::Destroyed { room, alt, reason } => {
                let mut e = el("destroyed").attr("room", room.clone());
                if let Some(a) = alt {
                    e.set_attr("alt", a.clone());
                }
                if let Some(r) = reason {
                    e = e.text(r.clone());
                }
                e
            }
        }
    }

    /// Decode an event from its wire XML alone (as older releases queued
    /// it), outside a link stream.
    pub fn decode_wire(xml: &str, muc_service: &str) -> Result<LinkEvent, DecodeError> {
        let header = format!(
            "<stream:stream xmlns='{DMUC}' xmlns:stream='{}'>",
            ns::STREAMS
        );
        let header = crate::xml::parse_header(header.as_bytes()).expect("a valid header");
        let el =
            crate::xml::parse_stanza(&header, xml.as_bytes()).map_err(|e| bad(format!("{e:?}")))?;
        LinkEvent::decode(&el, muc_service)
    }

    /// Decode an event; `muc_service` is the MUC service of the master the
    /// event concerns (room names on the link are localparts).
    pub fn decode(e: &Element, muc_service: &str) -> Result<LinkEvent, DecodeError> {
        if e.ns != DMUC {
            return Err(bad(format!("unknown namespace {}", e.ns)));
        }
        let attr = |n: &str| {
            e.get_attr(n)
                .map(str::to_string)
                .ok_or_else(|| bad(format!("<{}> lacks '{n}'", e.name)))
        };
        let jid = |n: &str| -> Result<Jid, DecodeError> {
            Jid::parse(&attr(n)?).map_err(|_| bad(format!("<{}> has a malformed '{n}'", e.name)))
        };
        let child = |name: &str, namespace: &str| {
            e.get_child(name, namespace)
                .cloned()
                .ok_or_else(|| bad(format!("<{}> lacks <{name}/>", e.name)))
        };
        let first_child = || {
            e.elements()
                .next()
                .cloned()
                .ok_or_else(|| bad(format!("<{}> is empty", e.name)))
        };
        let room_jid = || attr("room").map(|r| format!("{r}@{muc_service}"));
        Ok(match e.name.as_str() {
            "join" => LinkEvent::Join {
                room: attr("room")?,
                nick: attr("nick")?,
                from: jid("from")?,
                presence: child("presence", ns::CLIENT)?,
            },
            "update" => LinkEvent::Update {
                room: attr("room")?,
                nick: attr("nick")?,
                from: jid("from")?,
                presence: child("presence", ns::CLIENT)?,
            },
            "leave" => LinkEvent::Leave {
                room: attr("room")?,
                from: jid("from")?,
                presence: child("presence", ns::CLIENT)?,
            },
            "groupchat" => LinkEvent::Groupchat {
                room: attr("room")?,
                from: jid("from")?,
                nick: attr("nick")?,
                stanza_id: attr("id")?,
                message: child("message", ns::CLIENT)?,
            },
            "resync" => LinkEvent::Resync {
                room: attr("room")?,
                last_seq: number(&attr("last-seq")?)?,
            },
            "relay" => {
                let stanza = first_child()?;
                if stanza.ns != ns::CLIENT
                    || !matches!(stanza.name.as_str(), "message" | "presence" | "iq")
                {
                    return Err(bad("<relay> carries a message, a presence or an iq"));
                }
                LinkEvent::Relay {
                    from: jid("from")?,
                    to: jid("to")?,
                    stanza,
                }
            }
            "snapshot" => {
                let config = decode_config(&child("config", DMUC)?)?;
                let mut affiliations = Vec::new();
                let mut occupants = Vec::new();
                let mut history = Vec::new();
                let mut subject = None;
                for c in e.elements() {
                    match c.name.as_str() {
                        "affiliation" => affiliations.push((
                            c.get_attr("jid")
                                .ok_or_else(|| bad("affiliation without jid"))?
                                .to_string(),
                            decode_affiliation(c)?,
                        )),
                        "occupant" => occupants.push(decode_occupant(c)?),
                        "m" => history.push(decode_archived(c, &room_jid()?)?),
                        "subject" => subject = Some(decode_subject(c)?),
                        _ => {}
                    }
                }
                LinkEvent::Snapshot {
                    room: attr("room")?,
                    config,
                    affiliations,
                    subject,
                    occupants,
                    history,
                    next_seq: number(&attr("next-seq")?)?,
                    gap: e.get_attr("gap") == Some("1"),
                    locked: e.get_attr("locked") == Some("1"),
                }
            }
            "occupant" => {
                let change = match attr("change")?.as_str() {
                    "joined" => OccupantChange::Joined,
                    "updated" => OccupantChange::Updated,
                    "left" => OccupantChange::Left {
                        status: e.get_attr("status").map(str::to_string),
                    },
                    "renamed" => OccupantChange::Renamed {
                        new_nick: attr("new-nick")?,
                    },
                    "removed" => OccupantChange::Removed {
                        code: number(&attr("code")?)? as u16,
                        actor: e.get_attr("actor").map(str::to_string),
                        reason: e.get_attr("reason").map(str::to_string),
                    },
                    other => return Err(bad(format!("unknown occupant change {other:?}"))),
                };
                LinkEvent::Occupant {
                    room: attr("room")?,
                    info: decode_occupant(e)?,
                    change,
                }
            }
            "message" => LinkEvent::Message {
                room: attr("room")?,
                msg: decode_archived(&child("m", DMUC)?, &room_jid()?)?,
            },
            "subject" => LinkEvent::Subject {
                room: attr("room")?,
                seq: number(&attr("seq")?)?,
                subject: decode_subject(e)?,
            },
            "config" => LinkEvent::Config {
                room: attr("room")?,
                config: decode_config(e)?,
            },
            "affiliation" => LinkEvent::Affiliation {
                room: attr("room")?,
                jid: attr("jid")?,
                affiliation: decode_affiliation(e)?,
            },
            "routes" => {
                let domains: Vec<String> = e
                    .elements()
                    .filter(|d| d.is("domain", DMUC))
                    .map(|d| d.text_content())
                    .collect();
                let bare_domain = |d: &String| {
                    Jid::parse(d).is_ok_and(|j| j.local().is_none() && j.resource().is_none())
                };
                if domains.len() > crate::model::event::ROUTES_MAX
                    || !domains.iter().all(bare_domain)
                {
                    return Err(bad("<routes> names at most 256 domains, each a domain"));
                }
                LinkEvent::Routes { domains }
            }
            "fw" => LinkEvent::FileWant {
                origin: attr("o")?,
                id: attr("i")?,
                offset: number(&attr("at")?)?,
                len: u32::try_from(number(&attr("n")?)?).map_err(|_| bad("len too large"))?,
            },
            "fc" => {
                use base64::Engine;
                let meta = match e.get_attr("size") {
                    Some(size) => Some(crate::files::FileMeta {
                        size: number(size)?,
                        sha256: attr("sha")?,
                        content_type: attr("type")?,
                        name: attr("name")?,
                    }),
                    None => None,
                };
                let data = base64::engine::general_purpose::STANDARD
                    .decode(e.text_content().trim())
                    .map_err(|_| bad("a file chunk that is not base64"))?;
                LinkEvent::FileChunk {
                    origin: attr("o")?,
                    id: attr("i")?,
                    offset: number(&attr("at")?)?,
                    meta,
                    data,
                }
            }
            "fm" => LinkEvent::FileMissing {
                origin: attr("o")?,
                id: attr("i")?,
            },
            "vcard" => LinkEvent::Vcard {
                room: attr("room")?,
                vcard: e.get_child("vCard", crate::im::NS_VCARD).cloned(),
            },
            "destroyed" => LinkEvent::Destroyed {
                room: attr("room")?,
                alt: e.get_attr("alt").map(str::to_string),
                reason: Some(e.text_content()).filter(|t| !t.is_empty()),
            },
            other => return Err(bad(format!("unknown event <{other}/>"))),
        })
    }
}

fn number(s: &str) -> Result<u64, DecodeError> {
    s.parse().map_err(|_| bad(format!("not a number: {s:?}")))
}

fn decode_flag(e: &Element, n: &str) -> Result<bool, DecodeError> {
    match e.get_attr(n) {
        Some("1") => Ok(true),
        Some("0") | None => Ok(false),
        Some(v) => Err(bad(format!("'{n}' is not 0 or 1: {v:?}"))),
    }
}

fn decode_config(e: &Element) -> Result<RoomConfig, DecodeError> {
    Ok(RoomConfig {
        name: e.get_attr("name").unwrap_or("").to_string(),
        description: e.get_attr("description").unwrap_or("").to_string(),
        persistent: decode_flag(e, "persistent")?,
        public: decode_flag(e, "public")?,
        members_only: decode_flag(e, "members-only")?,
        password: e.get_attr("password").map(str::to_string),
        max_users: number(e.get_attr("max-users").unwrap_or("100"))? as u32,
        moderated: decode_flag(e, "moderated")?,
        whois_anyone: e.get_attr("whois") == Some("anyone"),
        subject_by_anyone: decode_flag(e, "change-subject")?,
        allow_invites: decode_flag(e, "allow-invites")?,
        history_length: number(e.get_attr("history").unwrap_or("20"))? as u32,
        archiving: decode_flag(e, "archiving")?,
    })
}

fn decode_affiliation(e: &Element) -> Result<Affiliation, DecodeError> {
    e.get_attr("affiliation")
        .and_then(Affiliation::parse)
        .ok_or_else(|| bad("bad affiliation"))
}

fn subject_el(s: &Subject) -> Element {
    el("subject")
        .attr("nick", s.nick.clone())
        .attr("stamp", crate::stanza::timestamp(s.stamp_ms))
        .text(s.text.clone())
}

fn decode_subject(e: &Element) -> Result<Subject, DecodeError> {
    Ok(Subject {
        text: e.text_content(),
        nick: e.get_attr("nick").unwrap_or("").to_string(),
        stamp_ms: e
            .get_attr("stamp")
            .and_then(crate::stanza::parse_timestamp)
            .ok_or_else(|| bad("bad stamp"))?,
    })
}

fn decode_occupant(e: &Element) -> Result<OccupantInfo, DecodeError> {
    let get = |n: &str| {
        e.get_attr(n)
            .map(str::to_string)
            .ok_or_else(|| bad(format!("occupant lacks '{n}'")))
    };
    let jid = get("jid")?;
    Ok(OccupantInfo {
        nick: get("nick")?,
        bare: e.get_attr("bare").unwrap_or(bare_of(&jid)).to_string(),
        jid,
        affiliation: decode_affiliation(e)?,
        role: e
            .get_attr("role")
            .and_then(Role::parse)
            .ok_or_else(|| bad("bad role"))?,
        occupant_id: get("oid")?,
        presence: e
            .get_child("presence", ns::CLIENT)
            .cloned()
            .unwrap_or_else(|| Element::new("presence", ns::CLIENT)),
    })
}

/// Rebuild an archived message exactly as the master stored it.
fn decode_archived(e: &Element, room_jid: &str) -> Result<Archived, DecodeError> {
    let get = |n: &str| {
        e.get_attr(n)
            .map(str::to_string)
            .ok_or_else(|| bad(format!("<m> lacks '{n}'")))
    };
    let wire = e
        .get_child("message", ns::CLIENT)
        .ok_or_else(|| bad("<m> without a message"))?;
    let (stanza_id, nick) = (get("id")?, get("nick")?);
    let mut message =
        Element::new("message", ns::CLIENT).attr("from", format!("{room_jid}/{nick}"));
    message
        .attrs
        .extend(wire.attrs.iter().filter(|(k, _)| k != "from").cloned());
    message.children = wire.children.clone();
    message = message
        .child(
            Element::new("stanza-id", mns::SID)
                .attr("id", stanza_id.clone())
                .attr("by", room_jid),
        )
        .child(Element::new("occupant-id", mns::OCCUPANT_ID).attr("id", get("oid")?));
    Ok(Archived {
        seq: number(&get("seq")?)?,
        stanza_id,
        stamp_ms: crate::stanza::parse_timestamp(&get("stamp")?).ok_or_else(|| bad("bad stamp"))?,
        nick,
        real: get("real")?,
        xml: message.to_xml(ns::CLIENT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(ev: LinkEvent) {
        let xml = ev.encode().to_xml(DMUC);
        let parsed = crate::xml::parse_stanza(
            &crate::xml::parse_header(format!("<stream:stream xmlns='{DMUC}' xmlns:stream='http://etherx.jabber.org/streams'>").as_bytes()).unwrap(),
            xml.as_bytes(),
        )
        .unwrap();
        assert_eq!(LinkEvent::decode(&parsed, "conf.x").unwrap(), ev, "{xml}");
    }

    #[test]
    fn events_survive_the_codec() {
        for ev in crate::model::samples::link_events() {
            round_trip(ev);
        }
    }

    #[test]
    fn malformed_events_are_refused() {
        for xml in [
            "<join xmlns='urn:xmpp:dmuc:0' room='r'/>",
            "<join xmlns='urn:xmpp:dmuc:0' room='r' nick='n' from='bad@@jid'><presence xmlns='jabber:client'/></join>",
            "<occupant xmlns='urn:xmpp:dmuc:0' room='r' change='exploded' nick='n' bare='b' jid='j' affiliation='none' role='participant' oid='o'/>",
            "<teleport xmlns='urn:xmpp:dmuc:0'/>",
            "<join xmlns='urn:other'/>",
        ] {
            let el = crate::xml::parse_fragment(xml).unwrap();
            assert!(LinkEvent::decode(&el, "conf.x").is_err(), "{xml}");
        }
    }
}
