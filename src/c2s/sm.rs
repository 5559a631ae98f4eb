//! XEP-0198 stream management for one session: the counters both ways
//! (modulo 2^32), the stanzas sent and not yet acknowledged, and whether
//! the session outlives its connection (resumption). The stanzas a session
//! is sent are found in its output bytes (`stanzas`): whatever produced
//! them (one stanza, a room's history in one piece), each is numbered.

use super::output::Completion;
use crate::common::Payload;
use std::collections::VecDeque;
use std::ops::Range;

pub const NS: &str = "urn:xmpp:sm:3";
/// Stanzas sent and not acknowledged that one session may hold: a
/// connected session's output waits for acknowledgements past it; a
/// detached one ends (what it holds goes to offline storage).
pub const MAX_UNACKED: usize = 500;
pub const MAX_UNACKED_BYTES: usize = 512 * 1024;
/// The server asks for an acknowledgement once this many stanzas wait.
pub const REQUEST_AFTER: usize = 5;

/// A stanza sent and not acknowledged; `done` while the completion of its
/// delivery (an offline message's) has not fired.
#[derive(Debug, Clone)]
pub struct Unacked {
    pub bytes: Payload,
    pub done: Option<Completion>,
}

/// The client acknowledged more stanzas than were sent.
#[derive(Debug, PartialEq, Eq)]
pub struct HandledTooHigh;

/// What may still leave unacknowledged: bytes, and pieces of output (each
/// holds one stanza at least).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub bytes: usize,
    pub chunks: usize,
}

/// What an acknowledgement let go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Acked {
    pub freed: usize,
    /// Deliveries acknowledged before their bytes were reported written
    /// (an offline message the client has, whatever the shell says).
    pub completions: Vec<Completion>,
}

#[derive(Debug, Default)]
pub struct StreamManagement {
    /// The id a resumption names; None when the session cannot be resumed.
    pub id: Option<String>,
    /// Stanzas received from the client (its `h` for our acknowledgements).
    pub handled: u32,
    /// Stanzas sent (the number of the last one).
    sent: u32,
    /// The stanzas sent and not acknowledged, the oldest first: they are
    /// numbered `sent - len + 1 ..= sent`.
    queue: VecDeque<Unacked>,
    queue_bytes: usize,
    /// When an `<r/>` was sent that is not answered yet (monotonic ms).
    pub ack_requested: Option<u64>,
    /// Since when the session has had no connection (monotonic ms).
    pub detached_since: Option<u64>,
    /// How long it had waited before that, in a run of the node before
    /// this one: it counts against the resumption's timeout.
    pub waited_before_ms: u64,
}

impl StreamManagement {
    pub fn new(id: Option<String>) -> StreamManagement {
        StreamManagement {
            id,
            ..StreamManagement::default()
        }
    }

    /// A session kept across a restart: its counters and queue as they
    /// were, detached since `now`, having waited `waited_ms` already.
    pub fn restored(
        id: String,
        handled: u32,
        sent: u32,
        queue: Vec<Unacked>,
        now: u64,
        waited_ms: u64,
    ) -> StreamManagement {
        let queue_bytes = queue.iter().map(|u| u.bytes.len()).sum();
        StreamManagement {
            id: Some(id),
            handled,
            sent,
            queue: queue.into(),
            queue_bytes,
            ack_requested: None,
            detached_since: Some(now),
            waited_before_ms: waited_ms,
        }
    }

    /// The number of the last stanza sent.
    pub fn sent_count(&self) -> u32 {
        self.sent
    }

    /// When a resumption is too late, if the session is detached.
    pub fn resume_deadline(&self, timeout_ms: u64) -> Option<u64> {
        let since = self.detached_since?;
        Some(since + timeout_ms.saturating_sub(self.waited_before_ms))
    }

    /// One stanza sent.
    pub fn sent(&mut self, bytes: Payload, done: Option<Completion>) {
        self.sent = self.sent.wrapping_add(1);
        self.queue_bytes += bytes.len();
        self.queue.push_back(Unacked { bytes, done });
    }

    /// The client handled stanzas up to `h`: they are let go. An `h`
    /// behind what it acknowledged before (a client that saved its count
    /// late) changes nothing.
    pub fn acknowledged(&mut self, h: u32) -> Result<Acked, HandledTooHigh> {
        let acked_before = self.sent.wrapping_sub(self.queue.len() as u32);
        let newly = h.wrapping_sub(acked_before) as usize;
        if newly > self.queue.len() {
            let behind = acked_before.wrapping_sub(h) < 1 << 31;
            if behind {
                self.ack_requested = None;
                return Ok(Acked::default());
            }
            return Err(HandledTooHigh);
        }
        let mut acked = Acked::default();
        for u in self.queue.drain(..newly) {
            acked.freed += u.bytes.len();
            acked.completions.extend(u.done);
        }
        self.queue_bytes -= acked.freed;
        self.ack_requested = None;
        Ok(acked)
    }

    /// What new stanzas may take before the client acknowledges more
    /// (None: anything, nothing being unacknowledged).
    pub fn allowance(&self) -> Option<Allowance> {
        (!self.queue.is_empty()).then(|| Allowance {
            bytes: MAX_UNACKED_BYTES.saturating_sub(self.queue_bytes),
            chunks: MAX_UNACKED.saturating_sub(self.queue.len()),
        })
    }

    pub fn unacked(&self) -> impl Iterator<Item = &Unacked> {
        self.queue.iter()
    }

    pub fn unacked_len(&self) -> usize {
        self.queue.len()
    }

    pub fn unacked_bytes(&self) -> usize {
        self.queue_bytes
    }

    pub fn over_bounds(&self) -> bool {
        self.queue.len() > MAX_UNACKED || self.queue_bytes > MAX_UNACKED_BYTES
    }

    /// Whether to ask for an acknowledgement now (once per answer).
    pub fn should_request(&mut self, now: u64) -> bool {
        let due = self.ack_requested.is_none() && self.queue.len() >= REQUEST_AFTER;
        if due {
            self.ack_requested = Some(now);
        }
        due
    }

    /// The delivery this completion belongs to was written: the stanza is
    /// no longer kept elsewhere.
    pub fn completed(&mut self, done: &Completion) {
        if let Some(u) = self
            .queue
            .iter_mut()
            .find(|u| u.done.as_ref() == Some(done))
        {
            u.done = None;
        }
    }

    /// What the session was sent and did not acknowledge, that nothing
    /// else keeps (an offline message whose delivery was never written
    /// is still stored), for offline storage when the session ends.
    pub fn into_undelivered(self) -> Vec<Payload> {
        self.queue
            .into_iter()
            .filter(|u| u.done.is_none())
            .map(|u| u.bytes)
            .collect()
    }
}

/// The stanzas (`message`, `presence`, `iq`) at the top level of output
/// bytes, as ranges; anything else (whitespace, `</stream:stream>`, stream
/// management's own elements) is not one. The bytes are the server's own
/// serialisation: `<` starts a tag and `>` appears in no value (both are
/// escaped), so tags are found without parsing.
pub fn stanzas(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let (mut depth, mut start) = (0usize, None);
    let mut i = 0;
    while let Some(lt) = bytes[i..].iter().position(|&b| b == b'<') {
        let tag = i + lt;
        let Some(gt) = bytes[tag..].iter().position(|&b| b == b'>') else {
            break;
        };
        let end = tag + gt + 1;
        let inner = &bytes[tag + 1..end - 1];
        if inner.first() == Some(&b'/') {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                if let Some(s) = start.take() {
                    found.push(s..end);
                }
            }
        } else if !matches!(inner.first(), Some(b'?' | b'!')) {
            if depth == 0 && is_stanza_name(inner) {
                start = Some(tag);
            }
            if inner.last() == Some(&b'/') {
                if depth == 0 {
                    if let Some(s) = start.take() {
                        found.push(s..end);
                    }
                }
            } else {
                depth += 1;
            }
        }
        i = end;
    }
    found
}

fn is_stanza_name(tag: &[u8]) -> bool {
    let name_end = tag
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/')
        .unwrap_or(tag.len());
    matches!(&tag[..name_end], b"message" | b"presence" | b"iq")
}

/// Each stanza of `bytes` on its own (a payload that is one stanza is kept
/// as it is, sharing its bytes).
pub fn split(bytes: &Payload) -> Vec<Payload> {
    let flat;
    let contiguous: &[u8] = if bytes.shared.is_none() {
        &bytes.head
    } else {
        flat = bytes.to_vec();
        &flat
    };
    let ranges = stanzas(contiguous);
    if let [only] = &ranges[..] {
        if only.start == 0 && only.end == contiguous.len() {
            return vec![bytes.clone()];
        }
    }
    ranges
        .into_iter()
        .map(|r| Payload::from(contiguous[r].to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8], ranges: &[Range<usize>]) -> Vec<String> {
        ranges
            .iter()
            .map(|r| String::from_utf8_lossy(&bytes[r.clone()]).into_owned())
            .collect()
    }

    #[test]
    fn stanzas_are_found_at_the_top_level_only() {
        let out = b" <message to='a'><body>x &lt;y/&gt;</body><x xmlns='y'/></message>\n<presence/><r xmlns='urn:xmpp:sm:3'/><iq type='result' id='1'><query/></iq></stream:stream>";
        assert_eq!(
            text(out, &stanzas(out)),
            [
                "<message to='a'><body>x &lt;y/&gt;</body><x xmlns='y'/></message>",
                "<presence/>",
                "<iq type='result' id='1'><query/></iq>"
            ]
        );
        // A message nested in a message (a forwarded copy) is one stanza.
        let carbon = b"<message><sent><forwarded><message><body>a</body></message></forwarded></sent></message>";
        assert_eq!(stanzas(carbon).len(), 1);
        assert!(stanzas(b"<a xmlns='urn:xmpp:sm:3' h='3'/> ").is_empty());
    }

    #[test]
    fn acknowledgements_count_modulo_2_to_the_32() {
        let mut sm = StreamManagement::new(None);
        // As if 2^32 - 2 stanzas had been sent and acknowledged.
        sm.sent = u32::MAX - 1;
        for i in 0..4 {
            sm.sent(vec![b'x'; 10 + i].into(), None);
        }
        assert_eq!(sm.unacked_len(), 4);
        // h wraps: u32::MAX, then 0, 1.
        let freed = |r: Result<Acked, HandledTooHigh>| r.map(|a| a.freed);
        assert_eq!(freed(sm.acknowledged(u32::MAX)), Ok(10));
        assert_eq!(freed(sm.acknowledged(1)), Ok(11 + 12));
        assert_eq!(sm.unacked_len(), 1);
        assert_eq!(freed(sm.acknowledged(1)), Ok(0), "an old h changes nothing");
        assert_eq!(
            freed(sm.acknowledged(u32::MAX - 5)),
            Ok(0),
            "nor one behind, across the wrap"
        );
        assert_eq!(sm.acknowledged(3), Err(HandledTooHigh));
        assert_eq!(freed(sm.acknowledged(2)), Ok(13));
        assert_eq!(sm.unacked_bytes(), 0);
    }

    #[test]
    fn an_ack_is_requested_once_until_answered() {
        let mut sm = StreamManagement::new(None);
        for _ in 0..REQUEST_AFTER - 1 {
            sm.sent(b"<presence/>".to_vec().into(), None);
            assert!(!sm.should_request(1));
        }
        sm.sent(b"<presence/>".to_vec().into(), None);
        assert!(sm.should_request(1));
        sm.sent(b"<presence/>".to_vec().into(), None);
        assert!(!sm.should_request(2), "one request outstanding");
        sm.acknowledged(1).unwrap();
        assert!(sm.should_request(3));
    }

    #[test]
    fn what_offline_storage_still_holds_is_not_handed_back() {
        let mut sm = StreamManagement::new(Some("id".into()));
        let done = Completion::OfflineWritten {
            user: "bob".into(),
            upto: 7,
        };
        sm.sent(
            b"<message>stored</message>".to_vec().into(),
            Some(done.clone()),
        );
        sm.sent(b"<message>live</message>".to_vec().into(), None);
        let mut written = StreamManagement::new(None);
        std::mem::swap(&mut written, &mut sm);
        let back: Vec<Vec<u8>> = written
            .into_undelivered()
            .iter()
            .map(Payload::to_vec)
            .collect();
        assert_eq!(back, [b"<message>live</message>".to_vec()]);
        let mut sm = StreamManagement::new(None);
        sm.sent(
            b"<message>stored</message>".to_vec().into(),
            Some(done.clone()),
        );
        sm.completed(&done);
        assert_eq!(sm.into_undelivered().len(), 1, "written: now only here");
    }
}
