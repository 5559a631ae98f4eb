//! The bound sessions the router knows, and the lookups everything that
//! delivers to a local user needs.

use super::Resource;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::model::room::RoomKey;
use crate::xml::Element;
use std::collections::HashMap;

#[derive(Default)]
pub struct Bound {
    pub(crate) resources: HashMap<ConnId, Resource>,
    /// Bound sessions of each account (localpart), in bind order.
    pub(crate) by_user: HashMap<String, Vec<ConnId>>,
}

impl Bound {
    pub(crate) fn insert(&mut self, conn: ConnId, jid: Jid) {
        if let Some(user) = jid.local() {
            self.by_user.entry(user.to_string()).or_default().push(conn);
        }
        self.resources.insert(conn, Resource::new(jid));
    }

    pub(crate) fn forget(&mut self, conn: ConnId, jid: Option<&Jid>) {
        if let Some(user) = jid.and_then(|j| j.local()) {
            if let Some(list) = self.by_user.get_mut(user) {
                list.retain(|c| *c != conn);
                if list.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
        self.resources.remove(&conn);
    }

    pub fn resource(&self, conn: ConnId) -> Option<&Resource> {
        self.resources.get(&conn)
    }

    pub fn resource_mut(&mut self, conn: ConnId) -> Option<&mut Resource> {
        self.resources.get_mut(&conn)
    }

    /// The account a session is logged in as.
    pub fn user_of(&self, conn: ConnId) -> Option<String> {
        Some(self.jid_of(conn)?.local()?.to_string())
    }

    /// The full JID of a bound session.
    pub fn jid_of(&self, conn: ConnId) -> Option<&Jid> {
        Some(&self.resources.get(&conn)?.jid)
    }

    pub fn conns_of(&self, user: &str) -> Vec<ConnId> {
        self.by_user.get(user).cloned().unwrap_or_default()
    }

    pub fn available_conns(&self, user: &str) -> Vec<ConnId> {
        self.conns_of(user)
            .into_iter()
            .filter(|c| self.resources[c].presence.is_some())
            .collect()
    }

    /// The presence of each available session of `user`, from its full
    /// JID, with its connection.
    pub fn available_presences(&self, user: &str) -> Vec<(ConnId, Element)> {
        self.available_conns(user)
            .into_iter()
            .filter_map(|c| {
                let (full, presence) = self.resources[&c].available()?;
                let mut p = presence.clone();
                p.set_attr("from", full.to_string());
                Some((c, p))
            })
            .collect()
    }

    pub fn conn_of_full(&self, jid: &Jid) -> Option<ConnId> {
        let user = jid.local()?;
        self.conns_of(user)
            .into_iter()
            .find(|c| self.jid_of(*c) == Some(jid))
    }

    /// Sessions that get messages sent to `user`'s bare JID.
    pub fn bare_message_targets(&self, user: &str) -> Vec<ConnId> {
        self.conns_of(user)
            .into_iter()
            .filter(|c| self.resources[c].receives_bare_messages())
            .collect()
    }

    /// A session here is no longer in `room`: forget it in the session's
    /// own list.
    pub fn forget_joined_room(&mut self, session: &Jid, room: &RoomKey) {
        if let Some(s) = self
            .conn_of_full(session)
            .and_then(|c| self.resources.get_mut(&c))
        {
            s.rooms.remove(room);
        }
    }
}
