//! Sessions kept across a graceful restart, the client streams' side. At
//! the stop, a session that can be resumed lets its connection go without
//! a stream error (its client resumes, as after a dropped connection) and
//! gives its counters and unacknowledged stanzas for the log; at the next
//! start it comes back detached and waits for its client as before.

use super::*;
use crate::model::held::{HeldSession, HeldStanza};

/// Restored sessions are known by numbers the shell never gives a
/// connection (it counts up from 1).
pub const RESTORED_CONN_BASE: ConnId = 1 << 48;

/// What the client streams keep of a session across a restart.
pub struct HeldStream {
    pub sm_id: String,
    pub handled: u32,
    pub sent: u32,
    pub unacked: Vec<HeldStanza>,
    /// How long it has waited for its client so far.
    pub waited_ms: u64,
    pub inactive: bool,
}

impl Clients {
    /// Bound sessions that can be resumed and are not ending, in order.
    pub fn resumable_sessions(&self) -> Vec<(ConnId, Jid)> {
        let mut found: Vec<(ConnId, Jid)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_resumable() && !s.closing)
            .filter_map(|(c, s)| Some((*c, s.jid()?.clone())))
            .collect();
        found.sort_unstable_by_key(|(c, _)| *c);
        found
    }

    /// The node is stopping: every session but those in `keep` is told so
    /// and closed.
    pub fn shutdown_except(&mut self, keep: &BTreeSet<ConnId>) {
        let mut conns: Vec<ConnId> = self
            .sessions
            .keys()
            .filter(|c| !keep.contains(c))
            .copied()
            .collect();
        conns.sort_unstable();
        for conn in conns {
            self.stream_error(conn, "system-shutdown", "the server is stopping");
        }
    }

    /// The node is stopping and keeps the resumable session `conn` for its
    /// client: its connection is closed, what it was to be sent numbered,
    /// and the session forgotten here without a word to the router. None
    /// (and the session ends as usual) if it holds more than a session may.
    pub fn hold_for_restart(&mut self, conn: ConnId) -> Option<HeldStream> {
        let s = self.sessions.get(&conn)?;
        if !s.is_resumable() || s.closing {
            return None;
        }
        if !s.is_detached() {
            let transport = s.transport;
            self.out.push(ClientOutput::Close { conn: transport });
            if self.detach(conn) {
                self.end_session(conn);
                return None;
            }
        }
        let s = self.sessions.get_mut(&conn)?;
        // Presences held for an inactive client go with the rest.
        let inactive = s.held.is_some();
        let held = s.held.take();
        let sm = s.sm.as_mut()?;
        for bytes in held.map(|mut h| h.take()).unwrap_or_default() {
            self.unacked_bytes += number(sm, &bytes, None);
        }
        if sm.over_bounds() {
            self.end_session(conn);
            return None;
        }
        let s = self.sessions.remove(&conn)?;
        if let Some(user) = s.user() {
            if let Some(list) = self.bound.get_mut(user) {
                list.retain(|c| *c != conn);
                if list.is_empty() {
                    self.bound.remove(user);
                }
            }
        }
        self.ready.remove(&conn);
        let sm = s.sm?;
        self.resumable.remove(sm.id.as_deref().unwrap_or_default());
        self.unacked_bytes -= sm.unacked_bytes();
        let waited = sm
            .detached_since
            .map_or(0, |since| self.now.saturating_sub(since));
        let unacked = sm
            .unacked()
            .map(|u| HeldStanza {
                xml: u.bytes.to_vec(),
                offline_upto: u
                    .done
                    .as_ref()
                    .map(|Completion::OfflineWritten { upto, .. }| *upto),
            })
            .collect();
        Some(HeldStream {
            sm_id: sm.id.clone()?,
            handled: sm.handled,
            sent: sm.sent_count(),
            unacked,
            waited_ms: sm.waited_before_ms + waited,
            inactive,
        })
    }

    /// At start: a session kept by the stop before comes back as `conn`,
    /// detached, waiting for its client (or ending at once if the restart
    /// took longer than it may wait). Its stream management state is set
    /// by `settle_restored`, once what restoring it sent is dropped.
    pub fn restore_held(&mut self, now: u64, conn: ConnId, jid: Jid, held: &HeldSession) {
        self.now = now;
        let Some(user) = jid.local().map(str::to_string) else {
            return;
        };
        let mut s = Session::new(
            conn,
            IpAddr::from([0, 0, 0, 0]),
            &self.cfg,
            now,
            String::new(),
        );
        s.stage = Stage::Bound(jid);
        s.tls = true;
        s.restoring = true;
        s.held = held.inactive.then(Box::default);
        s.sm = Some(Box::new(sm::StreamManagement::restored(
            held.sm_id.clone(),
            0,
            0,
            Vec::new(),
            now,
            0,
        )));
        self.sessions.insert(conn, s);
        self.bound.entry(user).or_default().push(conn);
        self.resumable.insert(held.sm_id.clone(), conn);
    }

    /// The restored session `conn` takes the counters and queue it had;
    /// what it is sent from now on is kept for its client. `down_ms`: how long the node was
    /// stopped, which counts against the session's timeout.
    pub fn settle_restored(&mut self, conn: ConnId, held: &HeldSession, down_ms: u64) {
        let user = self
            .sessions
            .get(&conn)
            .and_then(|s| s.user())
            .unwrap_or_default()
            .to_string();
        let queue = held
            .unacked
            .iter()
            .map(|u| sm::Unacked {
                bytes: u.xml.clone().into(),
                done: u.offline_upto.map(|upto| Completion::OfflineWritten {
                    user: user.clone(),
                    upto,
                }),
            })
            .collect();
        let restored = sm::StreamManagement::restored(
            held.sm_id.clone(),
            held.handled,
            held.sent,
            queue,
            self.now,
            held.waited_ms.saturating_add(down_ms),
        );
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.restoring = false;
        let old = s.sm.replace(Box::new(restored));
        self.unacked_bytes -= old.map_or(0, |sm| sm.unacked_bytes());
        self.unacked_bytes += s.sm.as_ref().map_or(0, |sm| sm.unacked_bytes());
        self.arm_timer(conn);
        if self.unacked_bytes > MAX_UNACKED_TOTAL {
            self.keep_unacked_within_total();
        }
    }
}
