//! Files across the links: a node fetches another node's file once, into
//! its cache, and serves every local reader from there. Chunks travel in
//! a lane of their own, unnumbered and asked for one by one by the
//! receiver, so chat never queues behind more than a chunk:
//!
//! * The receiver asks for chunks one at a time, spaced to a rate it
//!   adapts: up while chunks come back as fast as the quickest one did,
//!   down when they come later (a queue is building on the link), after
//!   LEDBAT (RFC 6817). The file takes what the link has spare.
//! * The file's node answers each request at once, alone: chunks go on the
//!   wire spaced as they were asked, never in a burst, and chat is sent
//!   the moment it exists, so a message waits behind one chunk at most
//!   (plus the little queue the rate control allows).
//! * `link_rate` caps the lane's bytes per second on top.
//! * A cut or a restart loses nothing: the part file is on disk, and the
//!   fetch asks again from its end. The whole is checked by SHA-256
//!   before anyone is served it as complete.
//!
//! A node between the reader and the file's node (HQ, for a site's file
//! that another site wants) fetches it into its own cache and serves the
//! other site from there as bytes arrive: each link carries it once.

use super::{refused, FileAnswer, FileIndex, FileKey, FileMeta, Files, FilesOutput, StoredFile};
use crate::common::PeerId;
use crate::model::event::LinkEvent;
use crate::state::Record;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Bytes of file in one chunk: at 9600 bit/s, under half a second on the
/// wire, the most a chat message waits behind one.
pub const CHUNK: u32 = 512;
/// The rate a fetch starts at, and the least it goes down to (bytes/s).
const RATE_START: u64 = 1_024;
const RATE_MIN: u64 = 128;
/// Queueing the rate control tolerates before it slows down.
const TARGET_QUEUE_MS: u64 = 100;
/// Requests out at once, at most, whatever the rate.
const INFLIGHT_MAX: usize = 64;
/// Fetches at once (every reader of one file shares one).
pub const MAX_FETCHES: usize = 16;
/// HTTP requests waiting for bytes, in all.
const MAX_WAITERS: usize = 256;
/// A waiting HTTP request is answered after this even with nothing new.
const WAIT_MS: u64 = 20_000;
/// Peers' requests waiting on a fetch here, per fetch.
const PARKED_MAX: usize = INFLIGHT_MAX;
/// Chunks waiting in a peer's lane, at most.
const LANE_MAX: usize = INFLIGHT_MAX;
/// Bytes a link may have been handed and not written yet before its lane
/// waits: a peer that asks and does not read makes the node hold this,
/// not what it asked for.
pub const LANE_BACKLOG: u64 = 64 * 1024;
/// Chunks asked and not here after this are asked again.
const STALL_MS: u64 = 60_000;
/// A fetch asked again this many times in a row for nothing fails: a
/// peer that stops answering holds a fetch (and its room in the cache)
/// for minutes, not for ever.
const STALLS_MAX: u32 = 3;
/// The fastest pace (bytes/s), so that it cannot overflow on a link with
/// no delay.
const RATE_MAX: u64 = INFLIGHT_MAX as u64 * CHUNK as u64 * 1000;
/// How far back the rate shown is measured.
const RATE_WINDOW_MS: u64 = 10_000;

/// Another node's file coming here.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The link it comes over, while that link is up.
    pub peer: Option<PeerId>,
    pub meta: Option<FileMeta>,
    /// Bytes here, from the start.
    pub have: u64,
    /// The next byte to ask for.
    next: u64,
    /// Asked and not here: (offset, length, when asked).
    inflight: VecDeque<(u64, u32, u64)>,
    /// The rate chunks are asked at (bytes/s), and when the next may be.
    pace: u64,
    next_ask_ms: u64,
    /// The quickest answer seen: the link's delay with no queue.
    base_delay: Option<u64>,
    /// The pace changes at most once a round trip.
    steady_until_ms: u64,
    /// Only asked because a message named it: dropped once its size is
    /// known to be above `eager_bytes`, unless someone opened it meanwhile.
    eager: bool,
    /// Peers' requests for bytes not here yet (this node relays).
    parked: Vec<(PeerId, u64, u32)>,
    /// Bytes received recently: (when, how many), for the rate shown.
    recent: VecDeque<(u64, u32)>,
    /// SHA-256 of the bytes so far, taken as they come (none after a
    /// restart: the whole part is hashed at the end then).
    hasher: Option<Hasher>,
    /// Times in a row the fetch was asked again with nothing new.
    stalls: u32,
}

/// A fetch's running SHA-256 (the digest context, shown by name only).
#[derive(Clone)]
struct Hasher(ring::digest::Context);

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Hasher")
    }
}

/// Chunks for one peer waiting for the lane's rate.
#[derive(Debug, Default)]
pub(super) struct Lane {
    queue: VecDeque<LinkEvent>,
    /// Bytes the lane may send now (refilled at `link_rate`).
    allowance: u64,
    refilled_ms: u64,
}

/// An HTTP request waiting for a file's bytes.
#[derive(Debug, Clone)]
pub(super) struct Waiter {
    req: u64,
    key: FileKey,
    /// None: waiting for the size (the first answer).
    have: Option<u64>,
    since_ms: u64,
    /// A HEAD: the size is all it waits for.
    head: bool,
}

/// A transfer in progress, for the console and the web page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStatus {
    pub file: String,
    pub name: String,
    /// The link it comes over (none while that link is down).
    pub peer: Option<String>,
    pub size: Option<u64>,
    pub have: u64,
    /// Bytes per second over the last ten seconds.
    pub rate: u64,
    /// The rate chunks are asked at now (bytes/s).
    pub pace: u64,
}

/// Where a domain's files come from: the link that reaches it, if up.
pub type Route<'a> = &'a dyn Fn(&str) -> Option<PeerId>;

impl Fetch {
    fn new(peer: Option<PeerId>, meta: Option<FileMeta>, have: u64, eager: bool) -> Fetch {
        Fetch {
            peer,
            meta,
            have,
            next: have,
            inflight: VecDeque::new(),
            pace: RATE_START,
            next_ask_ms: 0,
            base_delay: None,
            steady_until_ms: 0,
            eager,
            parked: Vec::new(),
            recent: VecDeque::new(),
            hasher: (have == 0).then(|| Hasher(ring::digest::Context::new(&ring::digest::SHA256))),
            stalls: 0,
        }
    }

    fn rate(&self, now_ms: u64) -> u64 {
        let bytes: u64 = self
            .recent
            .iter()
            .filter(|(t, _)| *t + RATE_WINDOW_MS > now_ms)
            .map(|(_, n)| u64::from(*n))
            .sum();
        bytes * 1000 / RATE_WINDOW_MS
    }

    /// A chunk came `delay` ms after it was asked: ask faster while
    /// nothing queues, slower when something does (once a round trip).
    fn adapt(&mut self, now_ms: u64, delay: u64) {
        let base = self.base_delay.map_or(delay, |b| b.min(delay));
        self.base_delay = Some(base);
        if now_ms < self.steady_until_ms {
            return;
        }
        let queued = delay - base;
        if queued > TARGET_QUEUE_MS {
            self.pace = (self.pace * 7 / 8).max(RATE_MIN);
        } else if queued <= TARGET_QUEUE_MS / 2 {
            self.pace = (self.pace + self.pace / 16 + u64::from(CHUNK) / 8).min(RATE_MAX);
        } else {
            return;
        }
        self.steady_until_ms = now_ms + delay.max(1);
    }

    /// Whether it has more to ask for over a link that is up, and room to.
    fn wants_to_ask(&self) -> bool {
        let size = self.meta.as_ref().map_or(0, |m| m.size);
        self.peer.is_some() && self.next < size && self.inflight.len() < self.inflight_cap()
    }

    /// Requests that may be out at once: what the pace asks for in a
    /// round trip and the queue allowed, and two at least.
    fn inflight_cap(&self) -> usize {
        let span = self.base_delay.unwrap_or(1_000) + TARGET_QUEUE_MS;
        let chunks = self.pace * span / 1000 / u64::from(CHUNK);
        (chunks as usize).clamp(2, INFLIGHT_MAX)
    }
}

impl Files {
    pub fn transfers(&self, now_ms: u64) -> Vec<TransferStatus> {
        self.fetches
            .iter()
            .map(|(key, f)| TransferStatus {
                file: key.to_string(),
                name: f.meta.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                peer: f.peer.as_ref().map(|p| p.as_str().to_string()),
                size: f.meta.as_ref().map(|m| m.size),
                have: f.have,
                rate: f.rate(now_ms),
                pace: f.pace,
            })
            .collect()
    }

    pub fn fetch(&self, key: &FileKey) -> Option<&Fetch> {
        self.fetches.get(key)
    }

    /// At start: fetches a stop or a crash interrupted go on from the end
    /// of their part files once their links are up.
    pub fn restore(&mut self, index: &mut FileIndex) {
        let Some(store) = self.store.clone() else {
            return;
        };
        // Bytes are removed before the record saying so is durable: a crash
        // between the two leaves an entry with nothing behind it.
        let lost: Vec<FileKey> = index
            .iter()
            .filter(|(k, f)| f.complete && !store.has_file(k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in lost {
            log::warn!("files: {key} is indexed but not on disk; forgotten");
            self.remove_file(index, &key);
        }
        let partial: Vec<(FileKey, FileMeta)> = index
            .iter()
            .filter(|(_, f)| !f.complete)
            .map(|(k, f)| (k.clone(), f.meta.clone()))
            .collect();
        for (key, meta) in partial {
            let have = store.part_len(&key);
            if have > meta.size {
                store.remove(&key);
                self.remove_file(index, &key);
                continue;
            }
            self.fetches
                .insert(key, Fetch::new(None, Some(meta), have, false));
        }
    }

    /// A message named another node's file: fetch it now if it is small,
    /// or whatever its size if `whole` (a room whose files come at once).
    pub fn noticed(
        &mut self,
        index: &mut FileIndex,
        now_ms: u64,
        key: &FileKey,
        whole: bool,
        route: Route,
    ) {
        if key.origin == self.domain || index.contains_key(key) || self.fetches.contains_key(key) {
            return;
        }
        if self.fetches.len() >= MAX_FETCHES / 2 {
            // Eager fetches never take the slots readers need.
            return;
        }
        let _ = self.start_fetch(now_ms, key, route, !whole);
    }

    fn start_fetch(
        &mut self,
        now_ms: u64,
        key: &FileKey,
        route: Route,
        eager: bool,
    ) -> Result<(), (u16, String)> {
        if self.store.is_none() {
            return Err((503, "this node keeps no files".into()));
        }
        if let Some(f) = self.fetches.get_mut(key) {
            f.eager &= eager;
            return Ok(());
        }
        if self.fetches.len() >= MAX_FETCHES {
            return Err((503, "too many files are being fetched; try later".into()));
        }
        let Some(peer) = route(&key.origin) else {
            return Err((
                504,
                format!("{} is not reachable now; try later", key.origin),
            ));
        };
        self.fetches
            .insert(key.clone(), Fetch::new(Some(peer), None, 0, eager));
        self.ask_chunks(now_ms, key);
        Ok(())
    }

    /// Ask for chunks as the pace allows, up to what may be out at once.
    fn ask_chunks(&mut self, now_ms: u64, key: &FileKey) {
        let Some(f) = self.fetches.get_mut(key) else {
            return;
        };
        let Some(peer) = f.peer.clone() else { return };
        let size = match &f.meta {
            Some(m) => m.size,
            // Until the size is known, one chunk (with the size) at a time;
            // an eager look asks for the size alone.
            None if f.inflight.is_empty() => {
                let len = if f.eager { 0 } else { CHUNK };
                f.inflight.push_back((0, len, now_ms));
                f.next = u64::from(len);
                let event = want(key, 0, len);
                self.out.push(FilesOutput::Link { peer, event });
                return;
            }
            None => return,
        };
        while f.inflight.len() < f.inflight_cap() && f.next < size && f.next_ask_ms <= now_ms {
            let len = (size - f.next).min(u64::from(CHUNK)) as u32;
            f.inflight.push_back((f.next, len, now_ms));
            // One request now, the next when the pace allows.
            f.next_ask_ms = now_ms.max(f.next_ask_ms) + u64::from(len) * 1000 / f.pace;
            let event = want(key, f.next, len);
            f.next += u64::from(len);
            self.out.push(FilesOutput::Link {
                peer: peer.clone(),
                event,
            });
        }
    }

    /// A peer asks for part of a file: from here if it is here, else
    /// fetched (this node is on the way to the file's node).
    #[allow(clippy::too_many_arguments)]
    pub fn on_want(
        &mut self,
        index: &mut FileIndex,
        now_ms: u64,
        from: &PeerId,
        key: FileKey,
        offset: u64,
        len: u32,
        route: Route,
    ) {
        let len = len.min(CHUNK);
        if let Some(file) = index.get(&key).filter(|f| f.complete) {
            let meta = file.meta.clone();
            self.used.insert(key.clone(), now_ms);
            return self.send_chunk(now_ms, from, &key, &meta, offset, len);
        }
        if key.origin == self.domain {
            return self.send_missing(from, &key);
        }
        // Not for the peer it comes from (that would loop). A request for
        // the size alone (the other node's eager look) looks here too.
        let via = |d: &str| route(d).filter(|p| p != from);
        if let Err(why) = self.start_fetch(now_ms, &key, &via, len == 0) {
            log::debug!("files: {from} asked for {key}: {why:?}");
            return self.send_missing(from, &key);
        }
        let fetch = self.fetches.get_mut(&key).expect("started");
        match fetch.meta.clone() {
            Some(meta) if offset < fetch.have || len == 0 => {
                let have = fetch.have;
                let len = (have.saturating_sub(offset)).min(u64::from(len)) as u32;
                self.send_chunk(now_ms, from, &key, &meta, offset, len)
            }
            _ if fetch.parked.len() >= PARKED_MAX => self.send_missing(from, &key),
            _ => fetch.parked.push((from.clone(), offset, len)),
        }
    }

    fn send_missing(&mut self, peer: &PeerId, key: &FileKey) {
        let event = LinkEvent::FileMissing {
            origin: key.origin.clone(),
            id: key.id.clone(),
        };
        self.out.push(FilesOutput::Link {
            peer: peer.clone(),
            event,
        });
    }

    fn send_chunk(
        &mut self,
        now_ms: u64,
        peer: &PeerId,
        key: &FileKey,
        meta: &FileMeta,
        offset: u64,
        len: u32,
    ) {
        let Some(store) = &self.store else { return };
        let len = meta.size.saturating_sub(offset).min(u64::from(len)) as usize;
        let data = match store.read(key, offset, len) {
            Ok(d) if d.len() == len => d,
            Ok(_) | Err(_) => {
                log::warn!("files: {key} could not be read at {offset}");
                return self.send_missing(peer, key);
            }
        };
        let event = LinkEvent::FileChunk {
            origin: key.origin.clone(),
            id: key.id.clone(),
            offset,
            meta: (offset == 0).then(|| meta.clone()),
            data,
        };
        self.lane_send(now_ms, peer, event);
    }

    /// Into the peer's lane; it leaves with `release_lanes`.
    fn lane_send(&mut self, _now_ms: u64, peer: &PeerId, event: LinkEvent) {
        let lane = self.lanes.entry(peer.clone()).or_default();
        if lane.queue.len() >= LANE_MAX {
            // More than an honest receiver asks at once: it asks again
            // after a stall.
            return;
        }
        lane.queue.push_back(event);
    }

    /// Chunks leave each lane while the link has taken what it was given
    /// (`backlog`: bytes handed to the shell for the peer and not written
    /// yet), within `link_rate` if one is set. A peer asking for chunks
    /// faster than it reads them gets no more than `LANE_BACKLOG` ahead.
    pub fn release_lanes(&mut self, now_ms: u64, backlog: &dyn Fn(&PeerId) -> u64) {
        let rate = self.cfg.link_rate;
        let burst = u64::from(CHUNK) * 2;
        for (peer, lane) in self.lanes.iter_mut() {
            if rate > 0 {
                let earned = now_ms.saturating_sub(lane.refilled_ms) * rate / 1000;
                if earned > 0 {
                    lane.allowance = (lane.allowance + earned).min(burst);
                    lane.refilled_ms = now_ms;
                }
            }
            let mut handed = backlog(peer);
            while let Some(LinkEvent::FileChunk { data, .. }) = lane.queue.front() {
                let cost = data.len() as u64;
                if handed >= LANE_BACKLOG || (rate > 0 && lane.allowance < cost.min(burst)) {
                    break;
                }
                if rate > 0 {
                    lane.allowance -= cost.min(burst);
                }
                handed += cost;
                let event = lane.queue.pop_front().expect("front");
                self.out.push(FilesOutput::Link {
                    peer: peer.clone(),
                    event,
                });
            }
        }
        self.lanes.retain(|_, l| !l.queue.is_empty() || rate > 0);
    }

    /// Whether a lane has chunks waiting.
    pub fn lanes_waiting(&self) -> bool {
        self.lanes.values().any(|l| !l.queue.is_empty())
    }

    /// A peer sent part of a file this node asked for.
    #[allow(clippy::too_many_arguments)]
    pub fn on_chunk(
        &mut self,
        index: &mut FileIndex,
        now: crate::common::Now,
        from: &PeerId,
        key: FileKey,
        offset: u64,
        meta: Option<FileMeta>,
        data: Vec<u8>,
    ) {
        let now_ms = now.mono_ms;
        let Some(f) = self.fetches.get_mut(&key) else {
            return;
        };
        if f.peer.as_ref() != Some(from) {
            return;
        }
        let asked = f.inflight.iter().position(|(o, _, _)| *o == offset);
        let Some(at) = asked else {
            // Not asked (or asked before a reconnection): ignored.
            return;
        };
        let (_, asked_len, asked_ms) = f.inflight.remove(at).expect("found");
        if let Some(meta) = meta {
            if let Err(why) = self.take_meta(index, now, &key, meta) {
                return self.fail(index, &key, 502, why);
            }
        }
        let Some(f) = self.fetches.get_mut(&key) else {
            return; // an eager look, and the file is large
        };
        let Some(size) = f.meta.as_ref().map(|m| m.size) else {
            return self.fail(
                index,
                &key,
                502,
                "the first chunk came without the file's size",
            );
        };
        if data.len() > asked_len as usize || offset + data.len() as u64 > size {
            return self.fail(index, &key, 502, "a chunk larger than asked");
        }
        if offset != f.have {
            // Out of order after a reconnection: ask again from the end.
            f.inflight.clear();
            f.next = f.have;
            return self.ask_chunks(now_ms, &key);
        }
        if data.is_empty() && asked_len > 0 && offset < size {
            return self.fail(index, &key, 502, "an empty chunk");
        }
        if !data.is_empty() {
            let Some(store) = self.store.clone() else {
                return;
            };
            if let Err(e) = store.write_part(&key, offset, &data) {
                log::warn!("files: writing {key}: {e}");
                return self.fail(index, &key, 507, "the file could not be stored");
            }
            let f = self.fetches.get_mut(&key).expect("present");
            if let Some(h) = &mut f.hasher {
                h.0.update(&data);
            }
            f.stalls = 0;
            f.have += data.len() as u64;
            f.recent.push_back((now_ms, data.len() as u32));
            while f
                .recent
                .front()
                .is_some_and(|(t, _)| t + RATE_WINDOW_MS <= now_ms)
            {
                f.recent.pop_front();
            }
            f.adapt(now_ms, now_ms.saturating_sub(asked_ms));
        }
        let f = self.fetches.get(&key).expect("present");
        if f.have == size {
            return self.finish(index, now, &key);
        }
        self.serve_parked(now_ms, &key);
        self.wake_waiters(index, &key);
        self.ask_chunks(now_ms, &key);
    }

    /// The file's size and hash arrived: make room for it, note it.
    fn take_meta(
        &mut self,
        index: &mut FileIndex,
        now: crate::common::Now,
        key: &FileKey,
        meta: FileMeta,
    ) -> Result<(), &'static str> {
        let f = self.fetches.get(key).expect("present");
        if let Some(known) = &f.meta {
            return if *known == meta {
                Ok(())
            } else {
                Err("the file changed while it was fetched")
            };
        }
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&meta.sha256) || !super::url::is_name(&meta.name) {
            return Err("the file's description is malformed");
        }
        let meta = FileMeta {
            content_type: super::http::content_type(Some(&meta.content_type)),
            ..meta
        };
        let waited_on = f.parked.iter().any(|(_, _, len)| *len > 0)
            || self.waiters.iter().any(|w| w.key == *key && !w.head);
        if f.eager && meta.size > self.cfg.eager_bytes && !waited_on {
            // Large: it crosses when someone opens it. Whoever asked for
            // the size alone (a HEAD, another node's look) has it.
            let fetch = self.fetches.remove(key).expect("present");
            let (heads, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
                .into_iter()
                .partition(|w| w.key == *key);
            self.waiters = others;
            let answer = FileAnswer::Serve {
                key: key.clone(),
                meta: meta.clone(),
                have: 0,
                complete: false,
            };
            for w in heads {
                self.out.push(FilesOutput::Reply {
                    req: w.req,
                    answer: answer.clone(),
                });
            }
            for (peer, _, _) in fetch.parked {
                let event = LinkEvent::FileChunk {
                    origin: key.origin.clone(),
                    id: key.id.clone(),
                    offset: 0,
                    meta: Some(meta.clone()),
                    data: Vec::new(),
                };
                self.lane_send(now.mono_ms, &peer, event);
            }
            return Ok(());
        }
        if meta.size > self.cfg.max_file_bytes {
            // What it may cost the cache is what a file may be here.
            return Err("the file is larger than this node takes");
        }
        if !self.make_room(index, meta.size) {
            return Err("the cache has no room for the file");
        }
        let file = StoredFile {
            meta: meta.clone(),
            owner: None,
            stamp_ms: now.unix_ms,
            complete: false,
        };
        self.persist(
            index,
            Record::FileStored {
                key: key.clone(),
                file,
            },
        );
        let f = self.fetches.get_mut(key).expect("present");
        f.meta = Some(meta);
        f.next = f.next.max(f.have);
        Ok(())
    }

    /// Evict the least recently used complete files of other nodes until
    /// one more file, of `size` bytes in the cache, fits (in bytes, and in
    /// count: `files_total`); false if it cannot.
    pub(super) fn make_room(&mut self, index: &mut FileIndex, size: u64) -> bool {
        if size > self.cfg.cache_bytes {
            return false;
        }
        let (_, mut cached) = Files::usage(index);
        let (budget, most) = (self.cfg.cache_bytes, self.cfg.files_total);
        let fits = |cached: u64, count: usize| cached + size <= budget && count < most;
        if fits(cached, index.len()) {
            return true;
        }
        // Least recently opened first; sorted once, however many go.
        let mut victims: Vec<(u64, u64, FileKey, u64)> = index
            .iter()
            .filter(|(_, f)| f.owner.is_none() && f.complete)
            .map(|(k, f)| {
                let used = self.used.get(k).copied().unwrap_or(0);
                (used, f.stamp_ms, k.clone(), f.meta.size)
            })
            .collect();
        victims.sort();
        for (_, _, victim, bytes) in victims {
            log::info!("files: {victim} leaves the cache to make room");
            self.remove_file(index, &victim);
            cached -= bytes;
            if fits(cached, index.len()) {
                return true;
            }
        }
        false
    }

    fn finish(&mut self, index: &mut FileIndex, now: crate::common::Now, key: &FileKey) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let meta = self.fetches[key].meta.clone().expect("complete");
        // Hashed as it came, unless a restart came between: then the part
        // file is hashed whole now.
        let hashed = self.fetches.get_mut(key).and_then(|f| f.hasher.take());
        let checked = hashed.is_some();
        if hashed.is_some_and(|h| crate::common::hex(h.0.finish().as_ref()) != meta.sha256) {
            return self.fail(index, key, 502, "the file's SHA-256 does not match");
        }
        if meta.size == 0 {
            // No chunk carried bytes, so no part file was made.
            if let Err(e) = store.write_part(key, 0, &[]) {
                log::warn!("files: storing {key}: {e}");
                return self.fail(index, key, 507, "the file could not be stored");
            }
        }
        match store.complete(key, (!checked).then_some(meta.sha256.as_str())) {
            Ok(true) => {}
            Ok(false) => return self.fail(index, key, 502, "the file's SHA-256 does not match"),
            Err(e) => {
                log::warn!("files: completing {key}: {e}");
                return self.fail(index, key, 507, "the file could not be stored");
            }
        }
        let fetch = self.fetches.remove(key).expect("present");
        let file = StoredFile {
            meta: meta.clone(),
            owner: None,
            stamp_ms: index.get(key).map_or(now.unix_ms, |f| f.stamp_ms),
            complete: true,
        };
        self.persist(
            index,
            Record::FileStored {
                key: key.clone(),
                file,
            },
        );
        self.used.insert(key.clone(), now.mono_ms);
        log::info!("files: {key} ({} bytes) is here", meta.size);
        for (peer, offset, len) in fetch.parked {
            self.send_chunk(now.mono_ms, &peer, key, &meta, offset, len);
        }
        self.wake_waiters(index, key);
    }

    /// The fetch failed: nothing of it is kept; whoever waited is told.
    fn fail(&mut self, index: &mut FileIndex, key: &FileKey, status: u16, why: &str) {
        log::warn!("files: fetching {key} failed: {why}");
        let Some(fetch) = self.fetches.remove(key) else {
            return;
        };
        self.remove_file(index, key);
        for (peer, _, _) in fetch.parked {
            self.send_missing(&peer, key);
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.key == *key);
        self.waiters = waiting;
        for w in done {
            self.out.push(FilesOutput::Reply {
                req: w.req,
                answer: refused(status, why),
            });
        }
    }

    /// The peer has no such file (or lost it).
    pub fn on_missing(&mut self, index: &mut FileIndex, from: &PeerId, key: &FileKey) {
        if self.fetches.get(key).and_then(|f| f.peer.as_ref()) == Some(from) {
            self.fail(index, key, 404, "no such file");
        }
    }

    fn serve_parked(&mut self, now_ms: u64, key: &FileKey) {
        let Some(f) = self.fetches.get_mut(key) else {
            return;
        };
        let (Some(meta), have) = (f.meta.clone(), f.have) else {
            return;
        };
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut f.parked)
            .into_iter()
            .partition(|(_, offset, len)| *offset < have || *len == 0);
        f.parked = waiting;
        for (peer, offset, len) in ready {
            let len = (have - offset.min(have)).min(u64::from(len)) as u32;
            self.send_chunk(now_ms, &peer, key, &meta, offset, len);
        }
    }

    /// Answer HTTP requests waiting on `key` that can go on now.
    fn wake_waiters(&mut self, index: &FileIndex, key: &FileKey) {
        let answer = self.answer_for(index, key);
        let Some(answer @ FileAnswer::Serve { have, .. }) = answer else {
            return;
        };
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.key == *key && w.have.is_none_or(|h| h < have));
        self.waiters = waiting;
        for w in ready {
            self.out.push(FilesOutput::Reply {
                req: w.req,
                answer: answer.clone(),
            });
        }
    }

    /// What is here of `key`, if anything.
    fn answer_for(&self, index: &FileIndex, key: &FileKey) -> Option<FileAnswer> {
        if let Some(file) = index.get(key).filter(|f| f.complete) {
            return Some(FileAnswer::Serve {
                key: key.clone(),
                meta: file.meta.clone(),
                have: file.meta.size,
                complete: true,
            });
        }
        let f = self.fetches.get(key)?;
        Some(FileAnswer::Serve {
            key: key.clone(),
            meta: f.meta.clone()?,
            have: f.have,
            complete: false,
        })
    }

    /// A GET: serve it, or fetch it and answer once its size is here.
    pub(super) fn get(
        &mut self,
        index: &mut FileIndex,
        now_ms: u64,
        req: u64,
        path: &str,
        head: bool,
        route: Route,
    ) -> Option<FileAnswer> {
        let Some((key, _)) = super::url::parse_path(path) else {
            return Some(refused(404, "no such file"));
        };
        if let Some(f) = self.fetches.get_mut(&key).filter(|_| !head) {
            f.eager = false;
        }
        if let Some(answer) = self.answer_for(index, &key) {
            if key.origin != self.domain {
                self.used.insert(key, now_ms);
            }
            return Some(answer);
        }
        if key.origin == self.domain {
            return Some(refused(404, "no such file"));
        }
        // A HEAD looks at the size only: the file does not cross for it.
        if let Err((status, why)) = self.start_fetch(now_ms, &key, route, head) {
            return Some(refused(status, why));
        }
        self.wait(index, now_ms, req, key, None, head)
    }

    pub(super) fn wait(
        &mut self,
        index: &FileIndex,
        now_ms: u64,
        req: u64,
        key: FileKey,
        have: Option<u64>,
        head: bool,
    ) -> Option<FileAnswer> {
        match self.answer_for(index, &key) {
            Some(answer @ FileAnswer::Serve { complete: true, .. }) => return Some(answer),
            Some(answer @ FileAnswer::Serve { have: here, .. })
                if have.is_none_or(|h| h < here) =>
            {
                return Some(answer)
            }
            None if have.is_some() && !self.fetches.contains_key(&key) => {
                return Some(refused(404, "the file is no longer here"))
            }
            _ => {}
        }
        if self.waiters.len() >= MAX_WAITERS {
            return Some(refused(503, "too many downloads are waiting; try later"));
        }
        self.waiters.push(Waiter {
            req,
            key,
            have,
            since_ms: now_ms,
            head,
        });
        None
    }

    /// A link came up: fetches it serves ask again from where they are.
    pub fn link_up(&mut self, now_ms: u64, route: Route) {
        let keys: Vec<FileKey> = self.fetches.keys().cloned().collect();
        for key in keys {
            let f = self.fetches.get_mut(&key).expect("present");
            if f.peer.is_some() {
                continue;
            }
            if let Some(peer) = route(&key.origin) {
                f.peer = Some(peer);
                f.inflight.clear();
                f.next = f.have;
                // Another connection, maybe another path: measured anew.
                f.base_delay = None;
                f.pace = RATE_START;
                f.next_ask_ms = now_ms;
                self.ask_chunks(now_ms, &key);
            }
        }
    }

    /// A link went down: what was asked over it is lost; peers' requests
    /// from it are forgotten.
    pub fn link_down(&mut self, peer: &PeerId) {
        for f in self.fetches.values_mut() {
            if f.peer.as_ref() == Some(peer) {
                f.peer = None;
                f.inflight.clear();
                f.next = f.have;
            }
            f.parked.retain(|(p, _, _)| p != peer);
        }
        self.lanes.remove(peer);
    }

    pub(super) fn handle_transfer_timeouts(&mut self, index: &mut FileIndex, now_ms: u64) {
        let paced: Vec<FileKey> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.wants_to_ask() && f.next_ask_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for key in paced {
            self.ask_chunks(now_ms, &key);
        }
        let stalled: Vec<FileKey> = self
            .fetches
            .iter()
            .filter(|(_, f)| {
                f.peer.is_some()
                    && f.inflight
                        .front()
                        .is_some_and(|(_, _, at)| at + STALL_MS <= now_ms)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stalled {
            let f = self.fetches.get_mut(&key).expect("present");
            f.stalls += 1;
            if f.stalls > STALLS_MAX {
                self.fail(index, &key, 504, "the file's node stopped answering");
                continue;
            }
            f.inflight.clear();
            f.next = f.have;
            f.pace = RATE_START;
            self.ask_chunks(now_ms, &key);
        }
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.since_ms + WAIT_MS <= now_ms);
        self.waiters = waiting;
        for w in due {
            let answer = self
                .answer_for(index, &w.key)
                .unwrap_or_else(|| refused(504, "the file did not come in time; try again"));
            self.out.push(FilesOutput::Reply { req: w.req, answer });
        }
    }

    pub(super) fn next_transfer_deadline(&self) -> Option<u64> {
        let lanes = self
            .lanes
            .values()
            .filter(|l| !l.queue.is_empty() && self.cfg.link_rate > 0)
            .map(|l| l.refilled_ms + 1000 * u64::from(CHUNK) / self.cfg.link_rate);
        let stalls = self
            .fetches
            .values()
            .filter(|f| f.peer.is_some())
            .filter_map(|f| f.inflight.front().map(|(_, _, at)| at + STALL_MS));
        let waiters = self.waiters.iter().map(|w| w.since_ms + WAIT_MS);
        let asks = self
            .fetches
            .values()
            .filter(|f| f.wants_to_ask())
            .map(|f| f.next_ask_ms);
        lanes.chain(stalls).chain(waiters).chain(asks).min()
    }
}

fn want(key: &FileKey, offset: u64, len: u32) -> LinkEvent {
    LinkEvent::FileWant {
        origin: key.origin.clone(),
        id: key.id.clone(),
        offset,
        len,
    }
}
