//! The node's side of the link machine (`link::Links`): what it hands the
//! machine, and what it does with what the machine gives out: bytes and
//! records go to the shell at once, in order; what a peer said goes to the
//! rooms (a site's events) or the mirrors (a master's).

use super::{Action, ConnId, Node};
use crate::common::PeerId;
use crate::jid::Jid;
use crate::link::{FromPeer, LinkOutput};
use crate::model::event::LinkEvent;
use crate::xml::Element;

impl Node {
    pub(crate) fn is_upstream(&self, peer: &str) -> bool {
        self.links.is_upstream(peer)
    }

    pub(crate) fn is_site(&self, peer: &str) -> bool {
        self.links.is_site(peer)
    }

    /// Queue an event for `peer`: durable first, then sent if the link is up.
    pub(crate) fn link_send(&mut self, peer: &PeerId, ev: &LinkEvent) {
        let now = self.now.mono_ms;
        self.links
            .send(now, peer, ev, &mut self.state.links, &mut self.link_out);
        self.take_link_out();
    }

    /// Send an event now if the link is up, unnumbered: never queued.
    pub(crate) fn link_send_transient(&mut self, peer: &PeerId, ev: &LinkEvent) {
        self.links.send_transient(self.now.mono_ms, peer, ev);
    }

    /// Send a stanza for a user at a linked node. False if no link serves
    /// that user's domain.
    pub(crate) fn link_deliver_stanza(&mut self, to: &Jid, el: &Element) -> bool {
        let now = self.now.mono_ms;
        let sent = self
            .links
            .relay(now, to, el, &mut self.state.links, &mut self.link_out);
        self.take_link_out();
        sent
    }

    pub(crate) fn link_status(&self) -> Vec<super::LinkStatus> {
        self.links.status(&self.state.links)
    }

    pub(crate) fn on_link_up(&mut self, conn: ConnId, peer: PeerId) {
        let now = self.now.mono_ms;
        self.links
            .up(now, conn, peer, &self.state.links, &mut self.link_out);
        self.take_link_out();
    }

    pub(crate) fn on_link_data(&mut self, conn: ConnId, bytes: &[u8]) {
        self.links.data(self.now.mono_ms, conn, bytes);
        self.pump_links();
    }

    pub(crate) fn on_link_down(&mut self, conn: ConnId) {
        self.links.down(self.now.mono_ms, conn, &mut self.link_out);
        self.take_link_out();
        self.pump_links();
    }

    pub(crate) fn on_link_timeouts(&mut self) {
        let now = self.now.mono_ms;
        self.links
            .handle_timeout(now, &self.state.links, &mut self.link_out);
        self.take_link_out();
        self.pump_links();
    }

    pub(crate) fn flush_links(&mut self) {
        self.links.flush(&mut self.link_out);
        self.take_link_out();
    }

    /// What the link machine gave out: bytes, closes, dials and records go
    /// to the shell at once (records after the machine applied them to the
    /// state, so in order with every other record); what needs the rooms
    /// or the mirrors waits for `pump_links`.
    pub(crate) fn take_link_out(&mut self) {
        for o in std::mem::take(&mut self.link_out) {
            match o {
                LinkOutput::Send { conn, bytes } => self.push_action(Action::Send {
                    conn,
                    bytes: bytes.into(),
                }),
                LinkOutput::Close { conn } => self.push_action(Action::Close { conn }),
                LinkOutput::Dial { peer } => self.push_action(Action::Dial { peer }),
                LinkOutput::Persist(record) => self.push_action(Action::Persist(record)),
                notice @ (LinkOutput::Down { .. } | LinkOutput::GraceExpired { .. }) => {
                    self.link_notices.push_back(notice)
                }
            }
        }
    }

    /// Act on what the peers said, one element at a time (each applied
    /// before the next is read), and on the machine's notices.
    pub(crate) fn pump_links(&mut self) {
        loop {
            while let Some(notice) = self.link_notices.pop_front() {
                self.on_link_notice(notice);
            }
            let now = self.now.mono_ms;
            let from = self
                .links
                .poll(now, &mut self.state.links, &mut self.link_out);
            self.take_link_out();
            match from {
                Some(from) => self.on_from_peer(from),
                None if self.link_notices.is_empty() => break,
                None => {}
            }
        }
    }

    fn on_link_notice(&mut self, notice: LinkOutput) {
        match &notice {
            LinkOutput::Down { peer } => {
                self.files_link_down(peer);
                self.refresh_routes()
            }
            LinkOutput::GraceExpired { peer } => self.link_gone(peer),
            _ => {}
        }
        match notice {
            LinkOutput::Down { peer } if self.is_upstream(&peer) => {
                self.mirrors.link_down(&peer);
            }
            LinkOutput::GraceExpired { peer } if self.is_upstream(&peer) => {
                self.with_mirrors(|m| m.mirror_detach(&peer))
            }
            LinkOutput::GraceExpired { peer } => self.with_muc(|m| m.master_detach_site(&peer)),
            _ => {}
        }
    }

    fn on_from_peer(&mut self, from: FromPeer) {
        match from {
            FromPeer::Event { peer, seq, event } => {
                let mut event = *event;
                if let Ok(ev) = &mut event {
                    self.localise_file_links(&peer, ev);
                }
                match event {
                    Ok(
                        ev @ (LinkEvent::FileWant { .. }
                        | LinkEvent::FileChunk { .. }
                        | LinkEvent::FileMissing { .. }),
                    ) => self.on_file_event(&peer, ev),
                    Ok(ev) if self.is_site(&peer) => self.on_site_event(&peer, ev),
                    Ok(ev) => self.on_upstream_event(&peer, ev),
                    // A well-framed event we cannot use is refused, not retried forever.
                    Err(e) => log::warn!("link {peer}: refused event {seq:?}: {e}"),
                }
                if let Some(seq) = seq {
                    let now = self.now.mono_ms;
                    self.links
                        .applied(now, &peer, seq, &mut self.state.links, &mut self.link_out);
                    self.take_link_out();
                }
            }
            FromPeer::Hello {
                peer,
                restarted,
                forgot,
                was_detached,
            } => {
                if restarted {
                    // Its users' sessions died with it: before the presence
                    // of the live ones is asked for again.
                    self.peer_restarted(&peer);
                }
                if self.is_upstream(&peer) {
                    self.with_mirrors(|m| m.schedule_idle_mirror_drop(&peer));
                    let after_start = self.mirrors.take_resync_when_linked(&peer);
                    if restarted || forgot || was_detached || after_start {
                        // The master lost track of our occupants, or we showed
                        // its occupants as gone: announce ours, ask what we missed.
                        self.with_mirrors(|m| m.resync_upstream(&peer));
                    }
                } else {
                    if restarted {
                        // The site restarted: its sessions are gone.
                        self.with_muc(|m| m.forget_site_occupants(&peer));
                    }
                    self.site_linked(&peer);
                }
                self.refresh_routes();
                self.files_link_up();
            }
            FromPeer::Skipped { peer } => self.with_mirrors(|m| m.resync_upstream(&peer)),
        }
    }
}
