//! The node's side of the files machine (`files::Files`): upload slots
//! asked by clients, the HTTP server's questions, file events from the
//! links, and links to files in messages arriving over a link.

use super::{Action, AdminReply, ConnId, Node};
use crate::common::PeerId;
use crate::files::{url::Rewriter, FileAsk, FileKey, FilesOutput};
use crate::jid::Jid;
use crate::model::event::LinkEvent;
use crate::stanza;
use crate::xml::{ns, Element};

/// How often files past their age are looked for.
const EXPIRY_EVERY_MS: u64 = 3_600_000;

impl Node {
    /// The upload service's address: `upload.<domain>`.
    pub fn upload_service(&self) -> String {
        format!("upload.{}", self.cfg.domain)
    }

    /// Bytes here of another node's file being fetched (for tests and
    /// the admin page).
    pub fn files_fetch_have(&self, key: &FileKey) -> Option<u64> {
        self.files.fetch(key).map(|f| f.have)
    }

    pub fn files_in_progress(&self) -> usize {
        self.files.transfers(self.now.mono_ms).len()
    }

    pub(crate) fn is_upload_service(&self, jid: &Jid) -> bool {
        self.cfg.upload.enabled && jid.local().is_none() && jid.domain() == self.upload_service()
    }

    /// Where file bytes live (the shell's directory, the simulator's
    /// memory). Parts the index does not name are removed, and fetches a
    /// stop interrupted go on once their links are up.
    pub fn install_file_store(&mut self, store: std::rc::Rc<dyn crate::files::FileStore>) {
        self.files.install_store(store);
        self.files.remove_strays(&self.state.files);
        self.files.restore(&mut self.state.files);
        self.drain_files();
    }

    /// Run `f` with the files machine, the index and the routes to other
    /// nodes' files (links that are up), then carry out what it gave out.
    fn with_files<R>(
        &mut self,
        f: impl FnOnce(
            &mut crate::files::Files,
            &mut crate::files::FileIndex,
            &dyn Fn(&str) -> Option<PeerId>,
        ) -> R,
    ) -> R {
        let (links, store) = (&self.links, &self.state.links);
        let route = |domain: &str| {
            links
                .route_for(domain, store)
                .filter(|p| links.is_up(p.as_str()))
        };
        let result = f(&mut self.files, &mut self.state.files, &route);
        self.release_file_lanes();
        result
    }

    /// Chunks waiting in the lanes go as far as the links take them.
    pub(crate) fn release_file_lanes(&mut self) {
        if self.files.lanes_waiting() {
            let links = &self.links;
            let backlog = |peer: &PeerId| links.unwritten(peer);
            self.files.release_lanes(self.now.mono_ms, &backlog);
        }
        self.drain_files();
    }

    fn drain_files(&mut self) {
        for out in self.files.take_output() {
            match out {
                FilesOutput::Link { peer, event } => self.link_send_transient(&peer, &event),
                FilesOutput::Persist(record) => self.push_action(Action::Persist(Box::new(record))),
                FilesOutput::Reply { req, answer } => self.push_action(Action::AdminReply {
                    req,
                    reply: AdminReply::File(answer),
                }),
            }
        }
    }

    /// A question of the HTTP server: answered now, or later for `req`.
    pub(crate) fn on_file_ask(&mut self, req: u64, ask: FileAsk) {
        let now = self.now;
        if let FileAsk::Get { path, .. } = &ask {
            // A file of a domain no link reaches is no file of the network.
            let unknown = crate::files::url::parse_path(path).is_some_and(|(key, _)| {
                key.origin != self.cfg.domain
                    && self
                        .links
                        .route_for(&key.origin, &self.state.links)
                        .is_none()
            });
            if unknown {
                let reply = AdminReply::File(crate::files::FileAnswer::Refused {
                    status: 404,
                    why: "no such file".into(),
                });
                return self.push_action(Action::AdminReply { req, reply });
            }
        }
        let answer = self.with_files(|files, index, route| files.ask(index, now, req, ask, route));
        if let Some(answer) = answer {
            self.push_action(Action::AdminReply {
                req,
                reply: AdminReply::File(answer),
            });
        }
    }

    /// A client's stanza to the upload service.
    pub(crate) fn on_upload_stanza(&mut self, conn: ConnId, from: &Jid, el: Element) {
        let service = self.upload_service();
        if el.name != "iq" {
            if let Some(reply) = stanza::error_reply(&el, "service-unavailable", "cancel", &service)
            {
                self.clients.send_el(conn, &reply);
            }
            return;
        }
        let Ok(stanza::Iq::Request { set, payload }) = stanza::check_iq(&el) else {
            return; // Results and errors to the service are dropped.
        };
        let reply = match (payload.name.as_str(), payload.ns.as_str(), set) {
            ("query", ns::DISCO_INFO, false) => {
                stanza::iq_result(&el, &service, Some(self.files.disco_info()))
            }
            ("query", ns::DISCO_ITEMS, false) => {
                stanza::iq_result(&el, &service, Some(Element::new("query", ns::DISCO_ITEMS)))
            }
            ("request", crate::files::UPLOAD_NS, false) => {
                match self.slot_reply(from, &el, payload) {
                    Some(reply) => reply,
                    None => return,
                }
            }
            _ => match stanza::error_reply(&el, "service-unavailable", "cancel", &service) {
                Some(reply) => reply,
                None => return,
            },
        };
        self.clients.send_el(conn, &reply);
    }

    fn slot_reply(&mut self, from: &Jid, iq: &Element, request: &Element) -> Option<Element> {
        let service = self.upload_service();
        let owner = from.local()?.to_string();
        let mut id = [0u8; 16];
        self.random_bytes(&mut id);
        let mut token = [0u8; 16];
        self.random_bytes(&mut token);
        let (id, token) = (crate::common::hex(&id), crate::common::hex(&token));
        let now_ms = self.now.mono_ms;
        let index = &self.state.files;
        match self
            .files
            .request_slot(index, now_ms, &owner, request, id, token)
        {
            Ok(urls) => {
                let ns = crate::files::UPLOAD_NS;
                let slot = Element::new("slot", ns)
                    .child(Element::new("put", ns).attr("url", urls.put))
                    .child(Element::new("get", ns).attr("url", urls.get));
                Some(stanza::iq_result(iq, &service, Some(slot)))
            }
            Err(refused) => {
                let mut reply = stanza::error_reply(
                    iq,
                    refused.condition,
                    stanza::error_type_for(refused.condition),
                    &service,
                )?;
                reply = stanza::with_error_text(reply, &refused.text);
                if let Some(max) = refused.too_large {
                    if let Some(crate::xml::Node::Element(error)) = reply
                        .children
                        .iter_mut()
                        .find(|c| matches!(c, crate::xml::Node::Element(e) if e.name == "error"))
                    {
                        error.children.push(crate::xml::Node::Element(
                            Element::new("file-too-large", crate::files::UPLOAD_NS).child(
                                Element::new("max-file-size", crate::files::UPLOAD_NS)
                                    .text(max.to_string()),
                            ),
                        ));
                    }
                }
                Some(reply)
            }
        }
    }

    /// A file event from a peer.
    pub(crate) fn on_file_event(&mut self, peer: &PeerId, ev: LinkEvent) {
        let now = self.now;
        let key = match &ev {
            LinkEvent::FileWant { origin, id, .. }
            | LinkEvent::FileChunk { origin, id, .. }
            | LinkEvent::FileMissing { origin, id } => FileKey {
                origin: origin.clone(),
                id: id.clone(),
            },
            _ => return,
        };
        if !crate::files::url::is_key(&key) {
            log::warn!("link {peer}: refused a file event naming {key}");
            return;
        }
        self.with_files(|files, index, route| match ev {
            LinkEvent::FileWant { offset, len, .. } => {
                files.on_want(index, now.mono_ms, peer, key, offset, len, route)
            }
            LinkEvent::FileChunk {
                offset, meta, data, ..
            } => files.on_chunk(index, now, peer, key, offset, meta, data),
            _ => files.on_missing(index, peer, &key),
        })
    }

    /// A link is up (its hello done): fetches it serves go on.
    pub(crate) fn files_link_up(&mut self) {
        let now_ms = self.now.mono_ms;
        self.with_files(|files, _, route| files.link_up(now_ms, route));
    }

    pub(crate) fn files_link_down(&mut self, peer: &PeerId) {
        self.files.link_down(peer);
    }

    pub(crate) fn files_timeouts(&mut self) {
        let now = self.now;
        if now.mono_ms >= self.files_expiry_due {
            self.files_expiry_due = now.mono_ms + EXPIRY_EVERY_MS;
            self.with_files(|files, index, _| files.expire(index, now.unix_ms));
        }
        if self
            .files
            .next_deadline()
            .is_some_and(|at| at <= now.mono_ms)
        {
            self.with_files(|files, index, _| files.handle_timeout(index, now));
        }
    }

    pub(crate) fn files_deadline(&self) -> Option<u64> {
        let expiry = (self.files.has_store()).then_some(self.files_expiry_due);
        [self.files.next_deadline(), expiry]
            .into_iter()
            .flatten()
            .min()
    }

    /// A message from another node names files: its links point at this
    /// node (which fetches them once for every reader here), and small
    /// files start coming at once.
    pub(crate) fn localise_file_links(&mut self, peer: &PeerId, ev: &mut LinkEvent) {
        let room = match &*ev {
            LinkEvent::Message { room, .. } => Some(format!("{room}@{peer}")),
            LinkEvent::Groupchat { room, .. } => Some(format!("{room}@{}", self.cfg.muc_service)),
            _ => None,
        };
        let whole = room.is_some_and(|r| self.cfg.upload.eager_rooms.contains(&r));
        let keys = {
            let (links, store) = (&self.links, &self.state.links);
            let known = |domain: &str| links.route_for(domain, store).is_some();
            let rewriter = Rewriter {
                local: &self.cfg.upload.public_url,
                domain: &self.cfg.domain,
                known: &known,
            };
            match ev {
                LinkEvent::Relay { stanza, .. }
                | LinkEvent::Groupchat {
                    message: stanza, ..
                } if stanza.name == "message" => rewriter.message(stanza),
                LinkEvent::Message { msg, .. } => {
                    let Ok(mut m) = crate::xml::parse_fragment(&msg.xml) else {
                        return;
                    };
                    let keys = rewriter.message(&mut m);
                    if !keys.is_empty() {
                        msg.xml = m.to_xml(ns::CLIENT);
                    }
                    keys
                }
                _ => return,
            }
        };
        let now_ms = self.now.mono_ms;
        for key in keys {
            self.with_files(|files, index, route| files.noticed(index, now_ms, &key, whole, route));
        }
    }
}
