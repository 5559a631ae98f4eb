//! What tests and the simulator check of a node's rooms.

use super::Node;

impl Node {
    /// Whether the link to `peer` holds a compressor and an inflater now.
    pub fn link_compression_held(&self, peer: &str) -> Option<(bool, bool)> {
        self.links.compression_held(peer)
    }

    /// Stanza-ids of a mirrored room's replica, in the master's order (for checks).
    pub fn mirror_sequence(&self, room_jid: &str) -> Vec<String> {
        self.state
            .mirrors
            .get(room_jid)
            .map(|m| {
                m.state
                    .archive
                    .iter()
                    .map(|a| a.stanza_id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Who holds a nick in a mirrored room, as this site sees it (for checks).
    pub fn mirror_occupant_bare(&self, room_jid: &str, nick: &str) -> Option<String> {
        self.mirrors
            .rooms()
            .get(room_jid)?
            .occupants
            .get(nick)
            .map(|o| o.bare.clone())
    }

    /// Nick → bare JID of everyone in a room as this node shows it; `key` is
    /// a mastered room's localpart or a mirrored room's JID (for checks).
    pub fn room_roster(&self, key: &str) -> std::collections::BTreeMap<String, String> {
        self.muc
            .live_rooms()
            .get(key)
            .or_else(|| self.mirrors.rooms().get(key))
            .map(|l| {
                l.occupants
                    .iter()
                    .map(|(n, o)| (n.clone(), o.bare.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What mirrors still hold for later: joins awaiting the master, messages
    /// held past a gap, local messages awaiting the master's echo (for
    /// checks: nothing is left once the network is quiet).
    pub fn mirror_backlog(&self) -> usize {
        self.mirrors.mirrors().values().map(|m| m.backlog()).sum()
    }

    /// True if a mirrored room's replica holds a message with this text (for checks).
    pub fn mirror_contains(&self, room_jid: &str, text: &str) -> bool {
        self.state
            .mirrors
            .get(room_jid)
            .is_some_and(|m| m.state.archive.iter().any(|a| a.xml.contains(text)))
    }
}
