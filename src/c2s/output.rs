//! What a client connection is sent, paced by what it reads.
//!
//! The node hands the shell at most a window of bytes per connection; the
//! shell reports what it wrote (`Event::Written`), which opens the window
//! again. What does not fit waits here, in order. Large deliveries (offline
//! messages, room history, archive pages, the roster) are *paced*: they wait
//! as long as the client takes to read them, and a completion attached to
//! one fires only once its bytes are written, so nothing is counted as
//! delivered before it left the server. Everything else is *live* traffic; a
//! client that lets more than [`MAX_LIVE_BACKLOG`] of it pile up is not
//! reading and is disconnected.

use super::sm::Allowance;
use crate::common::Payload;
use std::collections::VecDeque;

/// Bytes handed to the shell and not yet reported written, at most.
pub const WINDOW: usize = 64 * 1024;
/// Live bytes that may wait for a client that does not read.
pub const MAX_LIVE_BACKLOG: usize = 1024 * 1024;
/// Paced bytes that may wait for one connection: deliveries past it are
/// cut short (history) or left for later (offline messages).
pub const MAX_PACED_BACKLOG: usize = 8 * 1024 * 1024;
/// Past this much waiting, the connection's input is not read: a client
/// that asks faster than it reads is slowed down, not served into memory.
pub const INPUT_PAUSE_BACKLOG: usize = 128 * 1024;

/// Something to do once bytes are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Offline messages of `user` up to id `upto` have left the server.
    OfflineWritten { user: String, upto: u64 },
}

/// What a chunk is to stream management (XEP-0198).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Stanzas sent for the first time: numbered as they leave.
    Stanzas,
    /// Stanzas sent again after a resumption: numbered already.
    Resent,
    /// Stream management's own elements: never numbered, and ahead of
    /// everything waiting (an acknowledgement must not wait behind the
    /// stanzas it would release).
    Nonza,
}

struct Chunk {
    bytes: Payload,
    paced: bool,
    done: Option<Completion>,
    kind: Kind,
}

/// A chunk handed to the shell.
pub struct Released {
    pub bytes: Payload,
    pub kind: Kind,
    pub done: Option<Completion>,
}

#[derive(Default)]
pub struct Output {
    in_flight: usize,
    sent_total: u64,
    written_total: u64,
    waiting: VecDeque<Chunk>,
    waiting_live: usize,
    waiting_paced: usize,
    /// Completions by the offset their bytes end at, in order.
    pending: VecDeque<(u64, Completion)>,
}

/// The live backlog passed its bound: the client is not reading.
#[derive(Debug, PartialEq, Eq)]
pub struct NotReading;

impl Output {
    /// Queue bytes; `Err` if a client lets live traffic pile up past the bound.
    pub fn push(
        &mut self,
        bytes: Payload,
        paced: bool,
        done: Option<Completion>,
    ) -> Result<(), NotReading> {
        self.push_kind(bytes, paced, done, Kind::Stanzas)
    }

    pub fn push_kind(
        &mut self,
        bytes: Payload,
        paced: bool,
        done: Option<Completion>,
        kind: Kind,
    ) -> Result<(), NotReading> {
        if paced {
            self.waiting_paced += bytes.len();
        } else {
            self.waiting_live += bytes.len();
            if self.waiting_live > MAX_LIVE_BACKLOG {
                self.waiting_live -= bytes.len();
                return Err(NotReading);
            }
        }
        let chunk = Chunk {
            bytes,
            paced,
            done,
            kind,
        };
        if kind == Kind::Nonza {
            let at = self
                .waiting
                .iter()
                .take_while(|c| c.kind == Kind::Nonza)
                .count();
            self.waiting.insert(at, chunk);
        } else {
            self.waiting.push_back(chunk);
        }
        Ok(())
    }

    /// Everything waiting, not handed to the shell (the connection is gone).
    pub fn take_waiting(&mut self) -> Vec<Released> {
        self.waiting_live = 0;
        self.waiting_paced = 0;
        self.waiting
            .drain(..)
            .map(|c| Released {
                bytes: c.bytes,
                kind: c.kind,
                done: c.done,
            })
            .collect()
    }

    /// Bytes handed to the shell and not reported written yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// What may go to the shell now, in order (at least one chunk when
    /// nothing is in flight, so a chunk larger than the window still goes).
    /// New stanzas take from `allowance`, if given (what stream management
    /// lets out before the client acknowledges more); a chunk past it waits
    /// unless it is the only thing unacknowledged (`allowance` None).
    pub fn release(&mut self, mut allowance: Option<Allowance>) -> Vec<Released> {
        let mut out = Vec::new();
        while let Some(chunk) = self.waiting.front() {
            if self.in_flight > 0 && self.in_flight + chunk.bytes.len() > WINDOW {
                break;
            }
            if chunk.kind == Kind::Stanzas {
                if let Some(left) = allowance.as_mut() {
                    if chunk.bytes.len() > left.bytes || left.chunks == 0 {
                        break;
                    }
                    left.bytes -= chunk.bytes.len();
                    left.chunks -= 1;
                }
            }
            let Some(chunk) = self.waiting.pop_front() else {
                break;
            };
            if chunk.paced {
                self.waiting_paced -= chunk.bytes.len();
            } else {
                self.waiting_live -= chunk.bytes.len();
            }
            self.in_flight += chunk.bytes.len();
            self.sent_total += chunk.bytes.len() as u64;
            if let Some(done) = &chunk.done {
                self.pending.push_back((self.sent_total, done.clone()));
            }
            out.push(Released {
                bytes: chunk.bytes,
                kind: chunk.kind,
                done: chunk.done,
            });
        }
        out
    }

    /// The shell wrote `n` bytes: the completions now due, in order.
    pub fn written(&mut self, n: usize) -> Vec<Completion> {
        self.in_flight = self.in_flight.saturating_sub(n);
        self.written_total += n as u64;
        let mut due = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|(end, _)| *end <= self.written_total)
        {
            if let Some((_, done)) = self.pending.pop_front() {
                due.push(done);
            }
        }
        due
    }

    /// Bytes waiting for the window.
    pub fn backlog(&self) -> usize {
        self.waiting_live + self.waiting_paced
    }

    /// Room left for paced deliveries.
    pub fn paced_room(&self) -> usize {
        MAX_PACED_BACKLOG.saturating_sub(self.waiting_paced)
    }

    /// Whether to go on reading the connection's input.
    /// (`held_back`: bytes that may wait for the client's acknowledgements
    /// rather than its reading: it is read on to take them.)
    pub fn wants_input(&self, held_back: usize) -> bool {
        self.backlog() <= INPUT_PAUSE_BACKLOG + held_back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(chunks: &[Released]) -> Vec<usize> {
        chunks.iter().map(|c| c.bytes.len()).collect()
    }

    #[test]
    fn the_window_paces_what_goes_out_and_keeps_order() {
        let mut o = Output::default();
        for i in 0..5 {
            o.push(vec![i; 30 * 1024].into(), true, None).unwrap();
        }
        assert_eq!(sizes(&o.release(None)), [30 * 1024, 30 * 1024]);
        assert!(o.release(None).is_empty(), "the window is full");
        o.push(b"live".to_vec().into(), false, None).unwrap();
        o.written(30 * 1024);
        let next = o.release(None);
        assert_eq!(next.len(), 1);
        assert_eq!(
            next[0].bytes.head[0], 2,
            "in order: the paced chunk before the live one"
        );
        o.written(60 * 1024);
        let rest = o.release(None);
        assert_eq!(rest.last().unwrap().bytes.to_vec(), b"live");
        assert_eq!(o.backlog(), 0);
    }

    #[test]
    fn a_chunk_bigger_than_the_window_still_goes_alone() {
        let mut o = Output::default();
        o.push(vec![0; 200 * 1024].into(), true, None).unwrap();
        o.push(vec![1; 10].into(), false, None).unwrap();
        assert_eq!(sizes(&o.release(None)), [200 * 1024]);
        o.written(200 * 1024);
        assert_eq!(sizes(&o.release(None)), [10]);
    }

    #[test]
    fn completions_fire_only_once_their_bytes_are_written() {
        let mut o = Output::default();
        let done = |upto| Completion::OfflineWritten {
            user: "bob".into(),
            upto,
        };
        o.push(vec![0; 100].into(), true, Some(done(1))).unwrap();
        o.push(vec![0; 100].into(), true, Some(done(2))).unwrap();
        assert_eq!(o.release(None).len(), 2);
        assert_eq!(o.written(150), [done(1)]);
        assert_eq!(o.written(49), []);
        assert_eq!(o.written(1), [done(2)]);
    }

    #[test]
    fn live_traffic_a_client_does_not_read_is_bounded_paced_is_not_counted() {
        let mut o = Output::default();
        o.push(vec![0; WINDOW].into(), false, None).unwrap();
        o.release(None);
        o.push(vec![0; 4 * MAX_LIVE_BACKLOG].into(), true, None)
            .unwrap();
        for _ in 0..(MAX_LIVE_BACKLOG / 1024) {
            o.push(vec![0; 1024].into(), false, None).unwrap();
        }
        assert!(!o.wants_input(0));
        assert_eq!(o.push(vec![0; 1].into(), false, None), Err(NotReading));
    }
}
