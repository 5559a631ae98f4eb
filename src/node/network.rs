//! One network at the node: which domains each link reaches (a master
//! reaches the sites it masters; a site what its master says it reaches,
//! kept durably so traffic queues during a split and after a restart),
//! one-to-one traffic sent over them, and what comes over a link for a
//! user here, or (at a master) for a user at another of its sites.

use super::Node;
use crate::common::PeerId;
use crate::im::Routes;
use crate::jid::Jid;
use crate::model::event::LinkEvent;
use crate::state::Record;
use crate::xml::Element;

impl Node {
    /// Tell the router which domains the links reach and which of those
    /// links are up: after a start, a hello, a link lost, new routes.
    pub(crate) fn refresh_routes(&mut self) {
        let mut routes = Routes::default();
        for site in &self.cfg.link.peers {
            routes.insert(site.clone(), self.links.is_up(site));
        }
        for upstream in &self.cfg.link.upstreams {
            let Some(l) = self.state.links.get(upstream.as_str()) else {
                continue;
            };
            let up = self.links.is_up(upstream);
            for domain in l.routes.iter().filter(|d| **d != self.cfg.domain) {
                routes.insert(domain.clone(), up);
            }
        }
        self.im.set_routes(routes);
    }

    /// At a master, on a site's hello: the domains it reaches through us
    /// (ours, and the other sites': we relay between them); then our
    /// users' presence for it, and a probe for its users'.
    pub(crate) fn site_linked(&mut self, site: &PeerId) {
        let mut domains = vec![self.cfg.domain.clone()];
        let others = self.cfg.link.peers.iter().filter(|p| *p != site.as_str());
        domains.extend(others.take(crate::model::event::ROUTES_MAX - 1).cloned());
        self.link_send_transient(site, &LinkEvent::Routes { domains });
        self.refresh_routes();
        self.exchange_presence(&[site.to_string()]);
    }

    /// Our users' presence to each of `domains`, and a probe for theirs:
    /// what a split or a restart may have lost.
    fn exchange_presence(&mut self, domains: &[String]) {
        let mut im = self
            .im
            .ctx(&mut self.state.accounts, &self.clients, self.now);
        for d in domains {
            im.say_presence_to(d);
            im.probe_domain(d);
        }
        self.drain_im();
    }

    /// A link is down past its grace period: the users it reached go
    /// unavailable here; a master tells its other sites that the site's
    /// users went.
    pub(crate) fn link_gone(&mut self, peer: &PeerId) {
        let domains: Vec<String> = match self.is_site(peer) {
            true => vec![peer.to_string()],
            false => self
                .state
                .links
                .get(peer)
                .map(|l| l.routes.clone())
                .unwrap_or_default(),
        };
        self.users_gone(peer, &domains);
    }

    /// A peer restarted (its hello says so): its own users' sessions died
    /// with it (those of the sites a master relays for did not).
    pub(crate) fn peer_restarted(&mut self, peer: &PeerId) {
        let own: Vec<String> = match self.is_site(peer) {
            true => vec![peer.to_string()],
            // A master names its own domain first.
            false => self
                .state
                .links
                .get(peer)
                .and_then(|l| l.routes.first().cloned())
                .into_iter()
                .collect(),
        };
        self.users_gone(peer, &own);
    }

    /// The users of `domains` (reached through `peer`) go unavailable
    /// here, and, at a master, at its other sites.
    fn users_gone(&mut self, peer: &PeerId, domains: &[String]) {
        let mut im = self
            .im
            .ctx(&mut self.state.accounts, &self.clients, self.now);
        for d in domains {
            im.remote_domain_gone(d);
        }
        self.drain_im();
        if self.is_site(peer) {
            for other in self.cfg.link.peers.clone() {
                if other == peer.as_str() {
                    continue;
                }
                let (Ok(from), Ok(to)) = (Jid::parse(peer.as_str()), Jid::parse(&other)) else {
                    continue;
                };
                let gone = Element::new("presence", crate::xml::ns::CLIENT)
                    .attr("type", "unavailable")
                    .attr("from", from.to_string())
                    .attr("to", to.to_string());
                self.send_remote(&to, &gone, true);
            }
        }
    }

    /// At a site: what its master reaches, kept if it changed.
    pub(crate) fn on_routes(&mut self, peer: &PeerId, domains: Vec<String>) {
        let domains: Vec<String> = domains
            .into_iter()
            .filter(|d| *d != self.cfg.domain)
            .collect();
        if self.state.links.get(peer).map(|l| &l.routes) != Some(&domains) {
            let peer = peer.clone();
            self.commit(Record::LinkRoutes {
                peer,
                domains: domains.clone(),
            });
        }
        self.refresh_routes();
        // Said on every hello: what a split or a restart may have lost.
        self.exchange_presence(&domains);
    }

    /// Whether `peer` may speak for `from`: a site for its own domain, a
    /// master for the domains it said it reaches.
    fn speaks_for(&self, peer: &PeerId, from: &Jid) -> bool {
        if self.is_site(peer) {
            return from.domain() == peer.as_str();
        }
        self.state
            .links
            .get(peer)
            .is_some_and(|l| l.routes.iter().any(|d| d == from.domain()))
    }

    /// A user's stanza that came over the link from `peer`, not for a
    /// room: to the user here, or on to the site it is for.
    pub(crate) fn on_remote_stanza(
        &mut self,
        peer: &PeerId,
        from: Jid,
        to: Jid,
        mut stanza: Element,
    ) {
        if !self.speaks_for(peer, &from) {
            return log::warn!(
                "link {peer}: refused a stanza from {from}: not a domain it speaks for"
            );
        }
        if from.local().is_none() && !crate::link::event::relay_may_be_transient(&stanza) {
            // A node speaks as itself only to probe and to say its users
            // went: nothing it sends as itself is queued.
            return log::warn!(
                "link {peer}: refused a {} from the domain {from}",
                stanza.name
            );
        }
        stanza.set_attr("from", from.to_string());
        stanza.set_attr("to", to.to_string());
        if to.domain() == self.cfg.domain {
            self.im
                .ctx(&mut self.state.accounts, &self.clients, self.now)
                .route_from_link(stanza);
            return self.drain_im();
        }
        if self.is_site(to.domain()) && to.domain() != peer.as_str() {
            // A master relays between its sites, in order, queued durably
            // (but what is said again after a split).
            let transient = crate::link::event::relay_may_be_transient(&stanza);
            let down = !self.links.is_up(to.domain());
            let request = matches!(stanza.get_attr("type"), Some("get" | "set"));
            if transient && down && stanza.name == "iq" && request {
                return self.answer_over_link(&stanza, "remote-server-timeout");
            }
            self.send_remote(&to, &stanza, transient);
            return;
        }
        self.answer_over_link(&stanza, "remote-server-not-found");
    }

    /// An error from here for the sender of `stanza`, at another node.
    fn answer_over_link(&mut self, stanza: &Element, condition: &str) {
        let Some(from) = stanza.get_attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return;
        };
        let kind = crate::stanza::error_type_for(condition);
        let domain = self.cfg.domain.clone();
        if let Some(error) = crate::stanza::error_reply(stanza, condition, kind, &domain) {
            self.send_remote(&from, &error, stanza.name == "iq");
        }
    }

    /// Whether a user's stanza may wait for the link to `to`: if not (its
    /// sender's share is used, or the queue is full), the sender is told
    /// and nothing is queued.
    fn relay_fits(&mut self, to: &Jid, el: &Element) -> bool {
        let Some(from) = el.get_attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return true;
        };
        if from.local().is_none() {
            return true; // The server's own: domain-wide presence.
        }
        // Subscriptions are held to no share (the rosters bound them, and
        // an answer must not be refused for messages), only to the queue.
        let bare = from.to_bare();
        let share = (el.name != "presence").then_some(&bare);
        let bytes = el.to_xml(crate::xml::ns::CLIENT).len() as u64 + 64;
        if self
            .links
            .relay_fits(to.domain(), share, bytes, &self.state.links)
        {
            return true;
        }
        log::warn!(
            "link to {}: refused a stanza from {from}: too much waits",
            to.domain()
        );
        let text = format!("too much from you waits for the link to {}", to.domain());
        if let Some(mut error) =
            crate::stanza::error_reply(el, "resource-constraint", "wait", to.domain())
        {
            error = crate::stanza::with_error_text(error, &text);
            if from.domain() == self.cfg.domain {
                if let Some(c) = self.im.bound().conn_of_full(&from) {
                    self.clients.send_el(c, &error);
                }
            } else {
                self.link_deliver_stanza(&from, &error);
            }
        }
        false
    }

    /// A stanza for a user or server the links reach; `transient`: only
    /// if its link is up now (never queued).
    pub(crate) fn send_remote(&mut self, to: &Jid, el: &Element, transient: bool) -> bool {
        if !transient && !self.relay_fits(to, el) {
            return false;
        }
        let sent = match transient {
            true => self
                .links
                .relay_transient(self.now.mono_ms, to, el, &self.state.links),
            false => {
                // A message that waits for the link says when it was sent.
                let waits = el.name == "message"
                    && !self.links.is_up_for(to.domain(), &self.state.links)
                    && !el.has_child("delay", crate::xml::ns::DELAY);
                match waits {
                    true => {
                        let stamp = crate::stanza::delay(&self.cfg.domain, self.now.unix_ms);
                        self.link_deliver_stanza(to, &el.clone().child(stamp))
                    }
                    false => self.link_deliver_stanza(to, el),
                }
            }
        };
        if !sent {
            log::debug!(
                "no link reaches {} now: a stanza for {to} not sent",
                to.domain()
            );
        }
        sent
    }
}
