//! A room as its occupants see it, whether mastered here or mirrored: the
//! presences, history and subject a room sends, rendered from its durable
//! state and who is in it. Pure: it decides what goes to whom, the caller
//! sends it.

use super::HistoryRequest;
use crate::jid::Jid;
use crate::model::occupants::{LiveRoom, Role};
use crate::model::room::RoomState;
use crate::stanza;
use crate::xml::muc_ns as mns;
use crate::xml::{escape, ns, Element};

pub struct RoomView<'a> {
    /// The room's bare JID.
    pub jid: String,
    pub state: &'a RoomState,
    pub live: &'a LiveRoom,
}

impl RoomView<'_> {
    pub fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    /// Whether a viewer with `viewer`'s role sees occupants' real JIDs.
    pub fn sees_jids(&self, viewer: Role) -> bool {
        self.state.config.whois_anyone || viewer == Role::Moderator
    }

    /// Status codes on a joining occupant's own presence: 110, 100 if the
    /// room shows real JIDs to all, 170 if it is archived.
    pub fn self_presence_codes(&self) -> Vec<u16> {
        let config = &self.state.config;
        let mut codes = vec![110];
        if config.whois_anyone {
            codes.push(100);
        }
        if config.archiving {
            codes.push(170);
        }
        codes
    }

    /// The presence of occupant `nick` as a viewer sees it.
    pub fn occupant_presence(
        &self,
        nick: &str,
        show_jid: bool,
        codes: &[u16],
        unavailable: bool,
    ) -> Element {
        let occ = &self.live.occupants[nick];
        let mut p = if unavailable {
            Element::new("presence", ns::CLIENT).attr("type", "unavailable")
        } else {
            occ.presence.clone()
        };
        p.set_attr("from", self.occupant_jid(nick));
        let affiliation = self.state.affiliation(&occ.bare);
        let role = if unavailable {
            "none"
        } else {
            occ.role.as_str()
        };
        let mut item = Element::new("item", mns::USER)
            .attr("affiliation", affiliation.as_str())
            .attr("role", role);
        if let (true, Some(first)) = (show_jid, occ.sessions.first()) {
            item.set_attr("jid", first.to_string());
        }
        let mut x = Element::new("x", mns::USER).child(item);
        for c in codes {
            x = x.child(Element::new("status", mns::USER).attr("code", c.to_string()));
        }
        p.child(x).child(
            Element::new("occupant-id", mns::OCCUPANT_ID).attr("id", occ.occupant_id.clone()),
        )
    }

    /// Occupant `nick`'s presence for every session in the room (but
    /// `skip`), as each viewer sees it; its own sessions get status 110 too.
    pub fn presence_to_all(
        &self,
        nick: &str,
        codes: &[u16],
        unavailable: bool,
        skip: Option<&Jid>,
    ) -> Vec<(Jid, Element)> {
        let mut out = Vec::new();
        for (vnick, session) in self.live.all_sessions() {
            if Some(&session) == skip {
                continue;
            }
            let viewer_role = self.live.occupants[&vnick].role;
            let mut all_codes = codes.to_vec();
            if vnick == nick {
                all_codes.insert(0, 110);
            }
            let show = self.sees_jids(viewer_role);
            out.push((
                session,
                self.occupant_presence(nick, show, &all_codes, unavailable),
            ));
        }
        out
    }

    /// The history a joining session asked for (`req`), newest last, within
    /// the room's history length and `budget` bytes (the newest that fit:
    /// never a refused join).
    pub fn history(
        &self,
        to: &Jid,
        req: &HistoryRequest,
        budget: usize,
        now_unix_ms: u64,
    ) -> Vec<String> {
        let mut limit = self.state.config.history_length as usize;
        if let Some(m) = req.maxstanzas {
            limit = limit.min(m);
        }
        let oldest = req.seconds.map(|s| now_unix_ms.saturating_sub(s * 1000));
        let to_attr = escape(&to.to_string());
        let (mut chars, mut bytes) = (0usize, 0usize);
        let mut picked = Vec::new();
        // Newest first, up to the limit (reading one decodes its block).
        for m in self.state.archive.iter().rev().take(limit) {
            if oldest.is_some_and(|o| m.stamp_ms < o) || req.since.is_some_and(|s| m.stamp_ms <= s)
            {
                break;
            }
            let delay = stanza::delay(&self.jid, m.stamp_ms).to_xml(ns::CLIENT);
            let xml = stanza::insert_before_close(
                &format!("<message to='{to_attr}'{}", &m.xml[8..]),
                &delay,
            );
            chars += xml.chars().count();
            bytes += xml.len();
            if req.maxchars.is_some_and(|max| chars > max) || bytes > budget {
                break;
            }
            picked.push(xml);
        }
        picked.reverse();
        picked
    }

    /// The subject message a joining session gets last (empty if none is set).
    pub fn subject_message(&self, id: String) -> Element {
        let (from, text) = match &self.state.subject {
            Some(s) if !s.nick.is_empty() => (self.occupant_jid(&s.nick), s.text.clone()),
            Some(s) => (self.jid.clone(), s.text.clone()),
            None => (self.jid.clone(), String::new()),
        };
        let mut subject = Element::new("subject", ns::CLIENT);
        if !text.is_empty() {
            subject = subject.text(text);
        }
        Element::new("message", ns::CLIENT)
            .attr("from", from)
            .attr("type", "groupchat")
            .attr("id", id)
            .child(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::occupants::Occupant;
    use crate::model::room::{Affiliation, Archived};

    fn room() -> (RoomState, LiveRoom) {
        let mut state = RoomState::new("alice@hq", vec![1; 16]);
        state.locked = false;
        state.config.history_length = 2;
        for seq in 1..=3 {
            state.archive.push(Archived {
                seq,
                stanza_id: format!("s{seq}"),
                stamp_ms: seq * 1000,
                nick: "Alice".into(),
                real: "alice@hq".into(),
                xml: format!(
                    "<message from='r@c/Alice' type='groupchat'><body>{seq}</body></message>"
                ),
            });
        }
        let mut live = LiveRoom::default();
        for (nick, bare, role) in [
            ("Alice", "alice@hq", Role::Moderator),
            ("Bob", "bob@hq", Role::Participant),
        ] {
            live.occupants.insert(
                nick.into(),
                Occupant {
                    bare: bare.into(),
                    sessions: vec![Jid::parse(&format!("{bare}/x")).unwrap()],
                    role,
                    presence: Element::new("presence", ns::CLIENT),
                    occupant_id: format!("id-{nick}"),
                },
            );
        }
        (state, live)
    }

    #[test]
    fn a_presence_shows_real_jids_only_to_moderators_of_a_semi_anonymous_room() {
        let (state, live) = room();
        let view = RoomView {
            jid: "r@c".into(),
            state: &state,
            live: &live,
        };
        assert_eq!(state.affiliation("alice@hq"), Affiliation::Owner);
        let sent = view.presence_to_all("Bob", &[], false, None);
        let to_alice = sent
            .iter()
            .find(|(to, _)| to.to_string() == "alice@hq/x")
            .unwrap();
        let to_bob = sent
            .iter()
            .find(|(to, _)| to.to_string() == "bob@hq/x")
            .unwrap();
        let alice_sees = to_alice.1.to_xml(ns::CLIENT);
        let bob_sees = to_bob.1.to_xml(ns::CLIENT);
        assert!(alice_sees.contains("jid='bob@hq/x'"), "{alice_sees}");
        assert!(!bob_sees.contains("jid="), "{bob_sees}");
        assert!(bob_sees.contains("code='110'") && !alice_sees.contains("code='110'"));
    }

    #[test]
    fn history_keeps_to_the_room_length_and_the_byte_budget_newest_last() {
        let (state, live) = room();
        let view = RoomView {
            jid: "r@c".into(),
            state: &state,
            live: &live,
        };
        let to = Jid::parse("bob@hq/x").unwrap();
        let all = view.history(&to, &HistoryRequest::default(), usize::MAX, 0);
        assert_eq!(all.len(), 2);
        assert!(all[0].contains("<body>2</body>") && all[1].contains("<body>3</body>"));
        let one = view.history(&to, &HistoryRequest::default(), all[1].len(), 0);
        assert_eq!(one.len(), 1);
        assert!(one[0].contains("<body>3</body>"));
    }
}
