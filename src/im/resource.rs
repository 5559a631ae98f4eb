//! What the router keeps of each bound session.

use crate::jid::Jid;
use crate::model::room::RoomKey;
use crate::xml::Element;
use std::collections::BTreeSet;

pub struct Resource {
    pub jid: Jid,
    /// The last available presence broadcast, if the resource is available.
    pub presence: Option<Element>,
    pub priority: i8,
    /// The client fetched the roster, so it gets roster pushes.
    pub roster_requested: bool,
    /// Full JIDs that got directed available presence and must hear of unavailability.
    pub directed: BTreeSet<String>,
    /// XEP-0280: copies of the account's one-to-one messages are wanted.
    pub carbons: bool,
    /// Rooms this session is in.
    pub rooms: BTreeSet<RoomKey>,
    /// The capability string its presence announced (XEP-0115), and its
    /// hash function.
    pub caps: Option<(String, String)>,
    /// What the client supports, once known.
    pub features: Option<super::caps::Features>,
    /// The last items of the PEP nodes it may see went to it.
    pub pep_primed: bool,
    /// It fetched the blocklist, so it gets its pushes (XEP-0191).
    pub blocklist_requested: bool,
}

impl Resource {
    pub fn new(jid: Jid) -> Resource {
        Resource {
            jid,
            presence: None,
            priority: 0,
            roster_requested: false,
            directed: BTreeSet::new(),
            carbons: false,
            rooms: BTreeSet::new(),
            caps: None,
            features: None,
            pep_primed: false,
            blocklist_requested: false,
        }
    }

    /// The full JID and the presence it broadcasts, if it is available.
    pub fn available(&self) -> Option<(&Jid, &Element)> {
        Some((&self.jid, self.presence.as_ref()?))
    }

    /// Whether it asked for notifications of the PEP node `node`.
    pub fn wants(&self, node: &str) -> bool {
        self.presence.is_some()
            && self
                .features
                .as_ref()
                .is_some_and(|f| f.contains(&format!("{node}+notify")))
    }

    /// Available with non-negative priority: receives messages to the bare JID.
    pub fn receives_bare_messages(&self) -> bool {
        self.presence.is_some() && self.priority >= 0
    }
}
