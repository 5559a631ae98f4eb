//! A mirrored room as the site's own sessions see it: rendered from the
//! replica (`muc::RoomView`) and delivered to local sessions only (the
//! master serves everyone else).

use super::Ctx;
use crate::jid::Jid;
use crate::muc::{HistoryRequest, LiveRoom, RoomView};
use crate::xml::Element;

impl Ctx<'_> {
    /// The mirrored room `key` (its JID) as its occupants see it; empty
    /// while the master's snapshot is awaited.
    pub(crate) fn mirror_view(&self, key: &str) -> RoomView<'_> {
        static EMPTY: std::sync::OnceLock<LiveRoom> = std::sync::OnceLock::new();
        RoomView {
            jid: key.to_string(),
            state: self
                .replicas
                .get(key)
                .map_or(crate::muc::unsynced(), |c| &c.state),
            live: self
                .mirror_rooms
                .get(key)
                .unwrap_or_else(|| EMPTY.get_or_init(LiveRoom::default)),
        }
    }

    /// Deliver to a local session (others are the master's to serve).
    pub(super) fn deliver_local(&mut self, to: &Jid, mut el: Element) {
        if let Some(c) = self.bound.conn_of_full(to) {
            el.set_attr("to", to.to_string());
            self.send_el(c, &el);
        }
    }

    /// Occupant `nick`'s presence to every local session in the room (but
    /// `skip`); its own sessions get status 110 as well.
    pub(crate) fn mirror_broadcast_presence(
        &mut self,
        key: &str,
        nick: &str,
        codes: &[u16],
        unavailable: bool,
        skip: Option<&Jid>,
    ) {
        let sends = self
            .mirror_view(key)
            .presence_to_all(nick, codes, unavailable, skip);
        for (to, p) in sends {
            self.deliver_local(&to, p);
        }
    }

    /// The history a joining session asked for, paced, within what its
    /// connection may queue and the bound on join history.
    pub(crate) fn mirror_send_history(&mut self, key: &str, to: &Jid, req: &HistoryRequest) {
        let Some(conn) = self.bound.conn_of_full(to) else {
            return;
        };
        let budget = self
            .cfg
            .muc
            .join_history_bytes
            .min(self.clients.paced_room(conn));
        let history = self
            .mirror_view(key)
            .history(to, req, budget, self.now.unix_ms);
        for xml in history {
            self.send_paced(conn, xml.into_bytes());
        }
    }

    pub(crate) fn mirror_send_subject(&mut self, key: &str, to: &Jid) {
        let id = format!("subject-{}", self.random_id());
        let m = self.mirror_view(key).subject_message(id);
        self.deliver_local(to, m);
    }
}
