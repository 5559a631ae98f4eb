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

struct Chunk {
    bytes: Payload,
    paced: bool,
    done: Option<Completion>,
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
        if paced {
            self.waiting_paced += bytes.len();
        } else {
            self.waiting_live += bytes.len();
            if self.waiting_live > MAX_LIVE_BACKLOG {
                return Err(NotReading);
            }
        }
        self.waiting.push_back(Chunk { bytes, paced, done });
        Ok(())
    }

    /// What may go to the shell now, in order (at least one chunk when
    /// nothing is in flight, so a chunk larger than the window still goes).
    pub fn release(&mut self) -> Vec<Payload> {
        let mut out = Vec::new();
        while let Some(chunk) = self.waiting.front() {
            if self.in_flight > 0 && self.in_flight + chunk.bytes.len() > WINDOW {
                break;
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
            if let Some(done) = chunk.done {
                self.pending.push_back((self.sent_total, done));
            }
            out.push(chunk.bytes);
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
    pub fn wants_input(&self) -> bool {
        self.backlog() <= INPUT_PAUSE_BACKLOG
    }

    /// Something still waits to be written or confirmed written.
    pub fn is_busy(&self) -> bool {
        !self.waiting.is_empty() || self.in_flight > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(chunks: &[Payload]) -> Vec<usize> {
        chunks.iter().map(Payload::len).collect()
    }

    #[test]
    fn the_window_paces_what_goes_out_and_keeps_order() {
        let mut o = Output::default();
        for i in 0..5 {
            o.push(vec![i; 30 * 1024].into(), true, None).unwrap();
        }
        assert_eq!(sizes(&o.release()), [30 * 1024, 30 * 1024]);
        assert!(o.release().is_empty(), "the window is full");
        o.push(b"live".to_vec().into(), false, None).unwrap();
        o.written(30 * 1024);
        let next = o.release();
        assert_eq!(next.len(), 1);
        assert_eq!(
            next[0].head[0], 2,
            "in order: the paced chunk before the live one"
        );
        o.written(60 * 1024);
        let rest = o.release();
        assert_eq!(rest.last().unwrap().to_vec(), b"live");
        assert_eq!(o.backlog(), 0);
    }

    #[test]
    fn a_chunk_bigger_than_the_window_still_goes_alone() {
        let mut o = Output::default();
        o.push(vec![0; 200 * 1024].into(), true, None).unwrap();
        o.push(vec![1; 10].into(), false, None).unwrap();
        assert_eq!(sizes(&o.release()), [200 * 1024]);
        o.written(200 * 1024);
        assert_eq!(sizes(&o.release()), [10]);
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
        assert_eq!(o.release().len(), 2);
        assert_eq!(o.written(150), [done(1)]);
        assert_eq!(o.written(49), []);
        assert_eq!(o.written(1), [done(2)]);
    }

    #[test]
    fn live_traffic_a_client_does_not_read_is_bounded_paced_is_not_counted() {
        let mut o = Output::default();
        o.push(vec![0; WINDOW].into(), false, None).unwrap();
        o.release();
        o.push(vec![0; 4 * MAX_LIVE_BACKLOG].into(), true, None)
            .unwrap();
        for _ in 0..(MAX_LIVE_BACKLOG / 1024) {
            o.push(vec![0; 1024].into(), false, None).unwrap();
        }
        assert!(!o.wants_input());
        assert_eq!(o.push(vec![0; 1].into(), false, None), Err(NotReading));
    }
}
