//! Client-to-server streams (RFC 6120): framing, stream headers, STARTTLS,
//! SASL, resource binding, stream errors and timeouts. Once bound, stanzas
//! go to the IM logic in `im`.

pub mod output;
mod session;
pub mod throttle;

pub use session::{Session, Stage};

use crate::jid::{normalize_domain, normalize_local, Jid};
use crate::node::{Action, ConnId, Node};
use crate::scram::{parse_client_first, parse_plain, Hash, SaslError, ScramServer};
use crate::stanza;
use crate::xml::{ns, parse_header, parse_stanza, Element, Frame};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// After this many failed logins on one connection it is closed.
const MAX_AUTH_FAILURES_PER_STREAM: u32 = 5;
/// Input a session may hold while it cannot take it. The shell reads a
/// connection only a few buffers ahead of the core, so a client that
/// keeps to the protocol never comes near it.
const MAX_HELD_INPUT: usize = 64 * 1024;

impl Node {
    pub(crate) fn on_data(&mut self, conn: ConnId, bytes: &[u8]) {
        self.consume(conn, bytes);
        self.count_input(conn);
    }

    /// Keep the node's total of buffered input true for `conn`, and hold
    /// it to its bound: a connection that grows it past the bound is closed.
    fn count_input(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let (before, now) = (s.counted_input, s.buffered_input());
        s.counted_input = now;
        self.buffered_input = self.buffered_input - before + now;
        if now > before && self.buffered_input > self.cfg.max_buffered_input {
            log::warn!(
                "c2s {conn}: unfinished stanzas of all connections exceed {} bytes; closing this one",
                self.cfg.max_buffered_input
            );
            self.stream_error(
                conn,
                "resource-constraint",
                "the server holds too much unfinished input",
            );
        }
    }

    /// Frame and handle input, as far as the session takes it now; the
    /// rest is held until it can (see `Session::reads_input`).
    fn consume(&mut self, conn: ConnId, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(s) = self.sessions.get_mut(&conn) else {
                return;
            };
            if s.closing || s.tls_pending {
                // Bytes after <starttls/> in plaintext are discarded (RFC 6120 §5.4.3.3).
                return;
            }
            if !s.reads_input() {
                if s.held_input.len() + rest.len() > MAX_HELD_INPUT {
                    return self.stream_error(
                        conn,
                        "policy-violation",
                        "sending faster than the server answers",
                    );
                }
                s.held_input.extend_from_slice(rest);
                return;
            }
            let result = s.framer.next_frame(rest);
            s.partial_since = if s.framer.has_partial() {
                Some(s.partial_since.unwrap_or(self.now.mono_ms))
            } else {
                None
            };
            match result {
                Ok((used, frame)) => {
                    rest = &rest[used..];
                    if let Some(frame) = frame {
                        self.on_frame(conn, frame);
                    }
                }
                Err(e) => {
                    log::info!("c2s {conn}: {}: {}", e.condition(), e.text());
                    self.stream_error(conn, e.condition(), e.text());
                    return;
                }
            }
        }
    }

    /// Input held while the session could not take it, now that it may.
    pub(crate) fn resume_input(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.held_input.is_empty() || !s.reads_input() {
            return;
        }
        let held = std::mem::take(&mut s.held_input);
        self.consume(conn, &held);
        self.count_input(conn);
    }

    /// A new client connection: it takes one of the slots for connections
    /// not authenticated yet, or is refused at once, saying why.
    pub(crate) fn on_accepted(&mut self, conn: ConnId, peer: std::net::IpAddr) {
        let id = self.random_id();
        let session = Session::new(peer, &self.cfg, self.now.mono_ms, id);
        self.sessions.insert(conn, session);
        match self.preauth.admit(peer) {
            Ok(()) => {
                if let Some(s) = self.sessions.get_mut(&conn) {
                    s.preauth_slot = true;
                }
                self.arm_timer(conn);
            }
            Err(refused) => {
                log::debug!("c2s {conn}: refused {peer}: {}", refused.text());
                self.stream_error(conn, "policy-violation", refused.text());
            }
        }
    }

    /// Give back a connection's unauthenticated slot (it authenticated, or went).
    fn release_preauth_slot(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            if std::mem::take(&mut s.preauth_slot) {
                let peer = s.peer;
                self.preauth.release(peer);
            }
        }
    }

    fn on_frame(&mut self, conn: ConnId, frame: Frame) {
        match frame {
            Frame::StreamOpen(raw) => self.on_stream_open(conn, &raw),
            Frame::StreamClose => {
                self.send(conn, b"</stream:stream>".to_vec());
                self.push_action(Action::Close { conn });
                self.end_session(conn);
            }
            Frame::Stanza(raw) => {
                let Some(header) = self.sessions.get(&conn).and_then(|s| s.header.as_ref()) else {
                    return;
                };
                match parse_stanza(header, &raw) {
                    Ok(el) => self.on_element(conn, el),
                    Err(e) => {
                        log::info!("c2s {conn}: {}: {:?}", e.condition(), e);
                        self.stream_error(conn, e.condition(), "");
                    }
                }
            }
        }
    }

    fn our_header(&self, stream_id: &str) -> Vec<u8> {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{}' from='{}' version='1.0' xml:lang='en'>",
            ns::CLIENT,
            ns::STREAMS,
            stream_id,
            crate::xml::escape(&self.cfg.domain)
        )
        .into_bytes()
    }

    fn on_stream_open(&mut self, conn: ConnId, raw: &[u8]) {
        let id = self.random_id();
        let header_bytes = self.our_header(&id);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.stream_id = id;
        s.header_sent = true;
        self.send(conn, header_bytes);
        let header = match parse_header(raw) {
            Ok(h) => h,
            Err(e) => return self.stream_error(conn, e.condition(), "unparseable stream header"),
        };
        if header.ns != ns::STREAMS || header.name != "stream" {
            return self.stream_error(
                conn,
                "invalid-namespace",
                "the root must be <stream> in the streams namespace",
            );
        }
        if header.default_ns != ns::CLIENT {
            return self.stream_error(
                conn,
                "invalid-namespace",
                "the default namespace must be jabber:client",
            );
        }
        let to_ok = header
            .attr("to")
            .and_then(|t| normalize_domain(t).ok())
            .is_some_and(|d| d == self.cfg.domain);
        if !to_ok {
            return self.stream_error(
                conn,
                "host-unknown",
                "this server does not serve that domain",
            );
        }
        let major = header
            .attr("version")
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major != Some(1) {
            return self.stream_error(conn, "unsupported-version", "version 1.0 is required");
        }
        let features = self.features(conn);
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.header = Some(header);
        }
        self.send(conn, features.into_bytes());
    }

    fn features(&self, conn: ConnId) -> String {
        let s = &self.sessions[&conn];
        let mut f = String::from("<stream:features>");
        match s.stage {
            Stage::Authenticated(_) => {
                f.push_str(&format!(
                    "<bind xmlns='{}'/><session xmlns='{}'><optional/></session><ver xmlns='{}'/>",
                    ns::BIND,
                    ns::SESSION,
                    ns::ROSTER_VER
                ));
            }
            _ if !s.tls && self.cfg.require_tls => {
                f.push_str(&format!(
                    "<starttls xmlns='{}'><required/></starttls>",
                    ns::TLS
                ));
            }
            _ => {
                if !s.tls {
                    f.push_str(&format!("<starttls xmlns='{}'/>", ns::TLS));
                }
                f.push_str(&format!("<mechanisms xmlns='{}'>", ns::SASL));
                f.push_str(
                    "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism>",
                );
                if s.tls {
                    f.push_str("<mechanism>PLAIN</mechanism>");
                }
                f.push_str("</mechanisms>");
            }
        }
        f.push_str("</stream:features>");
        f
    }

    fn on_element(&mut self, conn: ConnId, el: Element) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let (tls, bound) = (s.tls, s.is_bound());
        if bound {
            return self.on_stanza(conn, el);
        }
        if el.is("starttls", ns::TLS) {
            return self.on_starttls(conn);
        }
        if el.ns == ns::SASL {
            if !tls && self.cfg.require_tls {
                return self.sasl_failure(conn, "encryption-required", false);
            }
            return match el.name.as_str() {
                "auth" => self.on_auth(conn, &el),
                "response" => self.on_sasl_response(conn, &el),
                "abort" => self.sasl_failure(conn, "aborted", false),
                _ => self.stream_error(conn, "unsupported-stanza-type", ""),
            };
        }
        if el.is("iq", ns::CLIENT) && matches!(s.stage, Stage::Authenticated(_)) {
            return self.on_preauth_iq(conn, &el);
        }
        if el.ns == ns::CLIENT && matches!(el.name.as_str(), "message" | "presence" | "iq") {
            return self.stream_error(
                conn,
                "not-authorized",
                "authenticate and bind a resource first",
            );
        }
        self.stream_error(conn, "unsupported-stanza-type", "")
    }

    fn on_starttls(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.tls || !matches!(s.stage, Stage::Connected) {
            return self.stream_error(conn, "policy-violation", "TLS is already negotiated");
        }
        s.tls_pending = true;
        self.send(conn, format!("<proceed xmlns='{}'/>", ns::TLS).into_bytes());
        self.push_action(Action::StartTls { conn });
    }

    pub(crate) fn on_tls_established(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.tls = true;
            s.tls_pending = false;
            restart_stream(s);
        }
    }

    fn on_auth(&mut self, conn: ConnId, el: &Element) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        if !matches!(s.stage, Stage::Connected) {
            return self.sasl_failure(conn, "aborted", false);
        }
        let peer = s.peer;
        let text = el.text_content();
        let initial = match text.trim() {
            "" => None,
            "=" => Some(Vec::new()),
            t => match B64.decode(t) {
                Ok(b) => Some(b),
                Err(_) => return self.sasl_failure(conn, "incorrect-encoding", false),
            },
        };
        // The throttle first: an attempt from an address or on an account
        // that failed recently waits, unread and unevaluated, for its turn.
        let account = match (el.get_attr("mechanism"), &initial) {
            (Some("PLAIN"), Some(msg)) => parse_plain(msg).ok().map(|(_, name, _)| name),
            (Some("SCRAM-SHA-256" | "SCRAM-SHA-1"), Some(msg)) => {
                parse_client_first(msg).ok().map(|f| f.username)
            }
            _ => None,
        };
        let account = account.map(|a| self.sasl_user(&a).unwrap_or_else(|| a.to_lowercase()));
        if let Some(account) = &account {
            let ready = self.auth_throttle.ready_at(peer, account);
            if ready > self.now.mono_ms {
                if let Some(s) = self.sessions.get_mut(&conn) {
                    s.auth_hold = Some((ready, el.clone()));
                }
                return self.arm_timer(conn);
            }
        }
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.auth_account = account;
        }
        match el.get_attr("mechanism") {
            Some("PLAIN") => self.auth_plain(conn, initial),
            Some("SCRAM-SHA-256") => self.auth_scram(conn, Hash::Sha256, initial),
            Some("SCRAM-SHA-1") => self.auth_scram(conn, Hash::Sha1, initial),
            _ => self.sasl_failure(conn, "invalid-mechanism", false),
        }
    }

    /// The account a SASL username refers to: a localpart or a bare JID of ours.
    fn sasl_user(&self, name: &str) -> Option<String> {
        let name = match name.rsplit_once('@') {
            Some((local, domain)) if normalize_domain(domain).ok()? == self.cfg.domain => local,
            Some(_) => return None,
            None => name,
        };
        normalize_local(name).ok()
    }

    fn authzid_ok(&self, authzid: Option<&str>, user: &str) -> bool {
        match authzid {
            None => true,
            Some(a) => Jid::parse(a).is_ok_and(|j| {
                j.is_bare() && j.domain() == self.cfg.domain && j.local() == Some(user)
            }),
        }
    }

    fn auth_plain(&mut self, conn: ConnId, initial: Option<Vec<u8>>) {
        if !self.sessions[&conn].tls {
            return self.sasl_failure(conn, "encryption-required", false);
        }
        let Some(msg) = initial else {
            return self.sasl_failure(conn, "malformed-request", false);
        };
        let (authzid, authcid, password) = match parse_plain(&msg) {
            Ok(p) => p,
            Err(e) => return self.sasl_failure(conn, e.condition(), false),
        };
        let user = self.sasl_user(&authcid);
        let ok = user.as_ref().is_some_and(|u| {
            self.state
                .accounts
                .get(u)
                .is_some_and(|a| a.creds.verify_password(&password))
        });
        match user {
            Some(u) if ok => {
                if !self.authzid_ok(authzid.as_deref(), &u) {
                    return self.sasl_failure(conn, "invalid-authzid", false);
                }
                self.sasl_success(conn, u, None)
            }
            _ => self.sasl_failure(conn, "not-authorized", true),
        }
    }

    fn auth_scram(&mut self, conn: ConnId, hash: Hash, initial: Option<Vec<u8>>) {
        let Some(msg) = initial else {
            return self.sasl_failure(conn, "malformed-request", false);
        };
        let first = match parse_client_first(&msg) {
            Ok(f) => f,
            Err(e) => return self.sasl_failure(conn, e.condition(), false),
        };
        let user = self.sasl_user(&first.username);
        if let Some(u) = &user {
            if !self.authzid_ok(first.authzid.as_deref(), u) {
                return self.sasl_failure(conn, "invalid-authzid", false);
            }
        }
        let creds = user
            .as_ref()
            .and_then(|u| self.state.accounts.get(u))
            .map(|a| a.creds.clone());
        let mut nonce = [0u8; 18];
        self.random_bytes(&mut nonce);
        let nonce = B64.encode(nonce);
        let fake_salt = self.fake_salt(&first.username);
        match ScramServer::start(hash, &msg, creds.as_ref(), &nonce, &fake_salt) {
            Ok((server, server_first)) => {
                let mut server = Box::new(server);
                // Bind the exchange to the normalised account name.
                server.username = user.unwrap_or_default();
                let Some(s) = self.sessions.get_mut(&conn) else {
                    return;
                };
                s.stage = Stage::Scram(server);
                let challenge = format!(
                    "<challenge xmlns='{}'>{}</challenge>",
                    ns::SASL,
                    B64.encode(server_first)
                );
                self.send(conn, challenge.into_bytes());
            }
            Err(e) => self.sasl_failure(conn, e.condition(), false),
        }
    }

    fn on_sasl_response(&mut self, conn: ConnId, el: &Element) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Stage::Scram(server) = std::mem::replace(&mut s.stage, Stage::Connected) else {
            return self.sasl_failure(conn, "malformed-request", false);
        };
        let Ok(msg) = B64.decode(el.text_content().trim()) else {
            return self.sasl_failure(conn, "incorrect-encoding", false);
        };
        match server.finish(&msg) {
            Ok(server_final) => {
                self.sasl_success(conn, server.username.clone(), Some(server_final))
            }
            Err(SaslError::NotAuthorized) => self.sasl_failure(conn, "not-authorized", true),
            Err(e) => self.sasl_failure(conn, e.condition(), false),
        }
    }

    fn sasl_success(&mut self, conn: ConnId, user: String, additional: Option<String>) {
        self.auth_throttle.succeeded(&user);
        // Logged in but not bound yet, an account's streams hold slots that
        // no resource limit counts: no more of them than it may have resources.
        let unbound = self
            .sessions
            .values()
            .filter(|s| matches!(&s.stage, Stage::Authenticated(u) if *u == user))
            .count();
        if unbound >= self.cfg.max_resources_per_user {
            log::info!("c2s {conn}: {user} has {unbound} streams logged in and not bound");
            return self.sasl_failure(conn, "temporary-auth-failure", false);
        }
        let body = additional.map(|a| B64.encode(a)).unwrap_or_default();
        self.send(
            conn,
            format!("<success xmlns='{}'>{body}</success>", ns::SASL).into_bytes(),
        );
        self.release_preauth_slot(conn);
        let limits = self.cfg.limits;
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        log::info!("c2s {conn}: {user} authenticated from {}", s.peer);
        s.stage = Stage::Authenticated(user);
        restart_stream(s);
        s.framer.reset_with(limits);
    }

    /// Report a SASL failure. Wrong credentials are reported only after a
    /// delay that doubles with each recent failure from the same address.
    fn sasl_failure(&mut self, conn: ConnId, condition: &str, wrong_credentials: bool) {
        let bytes = format!("<failure xmlns='{}'><{condition}/></failure>", ns::SASL).into_bytes();
        if !wrong_credentials {
            if let Some(s) = self.sessions.get_mut(&conn) {
                s.stage = Stage::Connected;
            }
            return self.send(conn, bytes);
        }
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let (peer, account) = (s.peer, s.auth_account.clone().unwrap_or_default());
        let now = self.now.mono_ms;
        let delay = self.auth_throttle.failed(peer, &account, now);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.stage = Stage::Connected;
        s.auth_failures += 1;
        let due = s.delayed.back().map_or(now, |d| d.0.max(now)) + delay;
        let close = s.auth_failures >= MAX_AUTH_FAILURES_PER_STREAM;
        log::info!("c2s {conn}: authentication failed from {peer} (answer delayed {delay} ms)");
        s.delayed.push_back((due, bytes, close));
    }

    fn on_preauth_iq(&mut self, conn: ConnId, el: &Element) {
        let Stage::Authenticated(user) = &self.sessions[&conn].stage else {
            return;
        };
        let user = user.clone();
        let domain = self.cfg.domain.clone();
        match (el.get_attr("type"), el.get_child("bind", ns::BIND)) {
            (Some("set"), Some(bind)) => {
                let requested = bind
                    .get_child("resource", ns::BIND)
                    .map(|r| r.text_content());
                self.bind(conn, &user, requested.as_deref(), el);
            }
            _ => {
                if let Some(reply) = stanza::error_reply(el, "not-authorized", "auth", &domain) {
                    self.send_el(conn, &reply);
                }
            }
        }
    }

    fn bind(&mut self, conn: ConnId, user: &str, requested: Option<&str>, iq: &Element) {
        let domain = self.cfg.domain.clone();
        let resource = match requested.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => r.to_string(),
            None => format!("outpost-{}", self.random_id()),
        };
        let jid = match Jid::new(Some(user), &domain, Some(&resource)) {
            Ok(j) => j,
            Err(_) => {
                if let Some(reply) = stanza::error_reply(iq, "bad-request", "modify", &domain) {
                    self.send_el(conn, &reply);
                }
                return;
            }
        };
        let existing: Vec<ConnId> = self.bound.get(user).cloned().unwrap_or_default();
        let conflict = existing
            .iter()
            .copied()
            .find(|c| self.sessions.get(c).and_then(|s| s.jid()) == Some(&jid));
        if conflict.is_none() && existing.len() >= self.cfg.max_resources_per_user {
            if let Some(reply) = stanza::error_reply(iq, "resource-constraint", "wait", &domain) {
                self.send_el(conn, &reply);
            }
            return;
        }
        if let Some(old) = conflict {
            // RFC 6120 §7.7.2.2: the new session wins; the old one is told why.
            self.stream_error(
                old,
                "conflict",
                "replaced by a new session with the same resource",
            );
        }
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.stage = Stage::Bound(jid.clone());
        s.partial_since = None;
        s.keepalive_due = self.now.mono_ms + self.cfg.keepalive_ms;
        self.bound.entry(user.to_string()).or_default().push(conn);
        let result = stanza::iq_result(
            iq,
            &domain,
            Some(
                Element::new("bind", ns::BIND)
                    .child(Element::new("jid", ns::BIND).text(jid.to_string())),
            ),
        );
        let mut result = result;
        result.remove_attr("to");
        self.send_el(conn, &result);
        log::debug!("c2s {conn}: bound {jid}");
    }

    /// Send a stream error, close the stream and forget the session.
    pub(crate) fn stream_error(&mut self, conn: ConnId, condition: &str, text: &str) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        if s.closing {
            return;
        }
        if !s.header_sent {
            let id = s.stream_id.clone();
            let header = self.our_header(&id);
            self.send(conn, header);
        }
        self.send(conn, stanza::stream_error(condition, text));
        self.push_action(Action::Close { conn });
        self.end_session(conn);
    }

    /// The connection is gone (or going): withdraw presence and forget it.
    pub(crate) fn end_session(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.closing = true;
        self.buffered_input -= std::mem::take(&mut s.counted_input);
        self.release_preauth_slot(conn);
        // Offline messages it was being handed and did not get stay stored
        // (for another session of the account, below, or the next one).
        let unclaimed: Vec<String> = self
            .offline_claims
            .iter()
            .filter(|(_, (owner, _))| *owner == conn)
            .map(|(user, _)| user.clone())
            .collect();
        for user in &unclaimed {
            self.offline_claims.remove(user);
        }
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.is_bound() {
            self.leave_all_rooms(conn);
            self.go_unavailable(conn, None);
            let user = self.sessions[&conn].user().map(str::to_string);
            if let Some(user) = user {
                if let Some(list) = self.bound.get_mut(&user) {
                    list.retain(|c| *c != conn);
                    if list.is_empty() {
                        self.bound.remove(&user);
                    }
                }
            }
        }
        self.sessions.remove(&conn);
        for user in unclaimed {
            if let Some(&other) = self.bare_message_targets(&user).first() {
                self.deliver_offline(other, &user);
            }
        }
    }

    pub(crate) fn on_session_timer(&mut self, conn: ConnId) {
        let now = self.now.mono_ms;
        loop {
            let Some(s) = self.sessions.get_mut(&conn) else {
                return;
            };
            match s.delayed.front() {
                Some((due, _, _)) if *due <= now => {
                    let Some((_, bytes, close)) = s.delayed.pop_front() else {
                        break;
                    };
                    self.send(conn, bytes);
                    if close {
                        return self.stream_error(
                            conn,
                            "policy-violation",
                            "too many authentication failures",
                        );
                    }
                }
                _ => break,
            }
        }
        // An attempt that waited for the throttle gets its turn.
        let held = self
            .sessions
            .get_mut(&conn)
            .and_then(|s| s.auth_hold.take_if(|(due, _)| *due <= now));
        if let Some((_, el)) = held {
            self.on_auth(conn, &el);
        }
        self.resume_input(conn);
        let cfg = &self.cfg;
        let (handshake_ms, stanza_ms, keepalive_ms) = (
            cfg.handshake_timeout_ms,
            cfg.stanza_timeout_ms,
            cfg.keepalive_ms,
        );
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        if !s.is_bound() && now >= s.opened_ms + handshake_ms {
            log::info!("c2s {conn}: handshake not completed in time");
            return self.stream_error(
                conn,
                "connection-timeout",
                "the stream was not negotiated in time",
            );
        }
        if s.partial_since.is_some_and(|t| now >= t + stanza_ms) {
            log::info!("c2s {conn}: stanza not completed in time");
            return self.stream_error(conn, "connection-timeout", "a stanza was left unfinished");
        }
        if s.is_bound() && now >= s.keepalive_due {
            if let Some(s) = self.sessions.get_mut(&conn) {
                s.keepalive_due = now + keepalive_ms;
            }
            self.send(conn, b" ".to_vec());
        }
    }
}

fn restart_stream(s: &mut Session) {
    s.framer.reset();
    s.header = None;
    s.header_sent = false;
    s.partial_since = None;
}
