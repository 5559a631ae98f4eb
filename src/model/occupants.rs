//! Who is in a room right now. Not durable: after a restart rooms are empty.

use crate::jid::Jid;
use crate::xml::Element;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Occupant {
    /// Bare JID of the person behind the nick.
    pub bare: String,
    /// Every session of that person joined under this nick.
    pub sessions: Vec<Jid>,
    pub role: Role,
    /// The client's presence payload (show, status, caps…), without MUC elements.
    pub presence: Element,
    /// XEP-0421 id, minted by the master.
    pub occupant_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct LiveRoom {
    pub occupants: BTreeMap<String, Occupant>,
}

impl LiveRoom {
    /// The nick under which this session is joined.
    pub fn nick_of(&self, session: &Jid) -> Option<String> {
        self.occupants
            .iter()
            .find(|(_, o)| o.sessions.contains(session))
            .map(|(n, _)| n.clone())
    }

    pub fn nicks_of_bare(&self, bare: &str) -> Vec<String> {
        self.occupants
            .iter()
            .filter(|(_, o)| o.bare == bare)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every (nick, session) pair: where a broadcast goes.
    pub fn all_sessions(&self) -> Vec<(String, Jid)> {
        let mut out = Vec::new();
        for (nick, o) in &self.occupants {
            for s in &o.sessions {
                out.push((nick.clone(), s.clone()));
            }
        }
        out
    }
}
