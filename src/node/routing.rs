//! Where a client's stanza goes: the node hands the IM router what it
//! checks and routes, the MUC service what is for its rooms, the mirrors
//! what is for rooms mastered elsewhere, and carries out what the router
//! asks (sends, records, leaving rooms).

use super::{Action, Node};
use crate::common::{ConnId, Payload};
use crate::im::ImOutput;
use crate::jid::Jid;
use crate::xml::Element;

impl Node {
    pub(crate) fn on_bound(&mut self, conn: ConnId, jid: Jid) {
        let user = jid.local().map(str::to_string);
        self.im.on_bound(conn, jid);
        // Messages past the archive's age (or a lowered bound) go before
        // the user reads it, even if none came since.
        if let Some(user) = user {
            self.im
                .ctx(&mut self.state.accounts, &self.clients, self.now)
                .keep_archive_within_bounds(&user);
            self.drain_im();
        }
    }

    /// A stanza from the bound session `from`: checked by the router, then
    /// to the rooms' machines or routed.
    pub(crate) fn on_stanza(&mut self, conn: ConnId, from: &Jid, el: Element) {
        let checked = self
            .im
            .ctx(&mut self.state.accounts, &self.clients, self.now)
            .check(conn, from, el);
        self.drain_im();
        let Some((el, to)) = checked else {
            return;
        };
        match to {
            Some(t) if self.is_muc_service(&t) => {
                let origin = crate::muc::Origin::Local {
                    conn,
                    jid: from.clone(),
                };
                self.on_muc_stanza(&origin, el, t)
            }
            Some(t) if self.is_mirrored_service(&t) => self.on_mirror_stanza(conn, el, t),
            Some(t) if self.is_upload_service(&t) => self.on_upload_stanza(conn, from, el),
            to => {
                self.im
                    .ctx(&mut self.state.accounts, &self.clients, self.now)
                    .route(conn, el, to);
                self.drain_im();
            }
        }
    }

    /// A client session ended: it leaves its rooms, then the router lets
    /// it go (its presence, its offline messages).
    pub(crate) fn on_session_ended(
        &mut self,
        conn: ConnId,
        jid: Option<Jid>,
        undelivered: Vec<Payload>,
    ) {
        self.leave_all_rooms(conn);
        let mut im = self
            .im
            .ctx(&mut self.state.accounts, &self.clients, self.now);
        if let Some(user) = jid.as_ref().and_then(Jid::local) {
            im.keep_undelivered(conn, user, &undelivered);
        }
        im.ended(conn, jid);
        self.drain_im();
    }

    /// A client registered `user` (XEP-0077, checked by the client
    /// streams): the account is made, unless it came meanwhile.
    pub(crate) fn on_register(
        &mut self,
        conn: ConnId,
        user: String,
        creds: crate::scram::Credentials,
        iq: &Element,
    ) {
        let domain = self.cfg.domain.clone();
        if self.state.accounts.contains_key(&user) {
            if let Some(reply) = crate::stanza::error_reply(iq, "conflict", "cancel", &domain) {
                self.clients.send_el(conn, &reply);
            }
            return;
        }
        self.commit(crate::state::Record::AccountSet { user, creds });
        let mut reply = crate::stanza::iq_result(iq, &domain, None);
        reply.remove_attr("to");
        self.clients.send_el(conn, &reply);
    }

    /// A session lost its connection and waits to be resumed.
    pub(crate) fn on_detached(&mut self, conn: ConnId) {
        self.im
            .ctx(&mut self.state.accounts, &self.clients, self.now)
            .detached(conn);
        self.drain_im();
    }

    /// A session was resumed on a new connection.
    pub(crate) fn on_resumed(&mut self, conn: ConnId, offline_upto: Option<u64>) {
        self.im
            .ctx(&mut self.state.accounts, &self.clients, self.now)
            .resumed(conn, offline_upto);
        self.drain_im();
    }

    /// Offline messages of `user` up to `upto` were written to `conn`.
    pub(crate) fn offline_written(&mut self, conn: ConnId, user: &str, upto: u64) {
        self.im
            .ctx(&mut self.state.accounts, &self.clients, self.now)
            .offline_written(conn, user, upto);
        self.drain_im();
    }

    /// Route a message from a room (an invitation) to a local account, as
    /// any message: to its resources, or stored while it has none.
    pub(crate) fn route_message(&mut self, origin: ConnId, el: &Element, to: &Jid) -> bool {
        let routed = self
            .im
            .ctx(&mut self.state.accounts, &self.clients, self.now)
            .route_message(origin, el, to);
        self.drain_im();
        matches!(routed, crate::im::Routed::Accepted { .. })
    }

    /// Carry out what the router asked, in order (until it asks nothing
    /// more: leaving rooms may give it more to do).
    pub(super) fn drain_im(&mut self) {
        loop {
            let out = self.im.take_output();
            if out.is_empty() {
                return self.keep_account_archives_within_total();
            }
            for o in out {
                match o {
                    ImOutput::Send { conn, bytes } => self.clients.send(conn, bytes),
                    ImOutput::Paced { conn, bytes, done } => {
                        self.clients.send_paced(conn, bytes, done)
                    }
                    ImOutput::StreamError {
                        conn,
                        condition,
                        text,
                    } => self.clients.stream_error(conn, condition, text),
                    ImOutput::Persist(record) => self.push_action(Action::Persist(record)),
                    ImOutput::LeaveRooms { conn } => self.leave_all_rooms(conn),
                    ImOutput::Remote {
                        to,
                        el,
                        transient,
                        sent_by,
                    } => {
                        let sent = self.send_remote(&to, &el, transient);
                        if let Some(conn) = sent_by.filter(|_| sent) {
                            self.im
                                .ctx(&mut self.state.accounts, &self.clients, self.now)
                                .remote_message_sent(conn, &el);
                        }
                    }
                }
            }
        }
    }
}
