//! Files: what users upload (XEP-0363) and what crosses the links once per
//! node. The machine here decides; the bytes are kept by a [`FileStore`]
//! the shell provides (files in `data_dir/files`) or the simulator (memory).
//!
//! * `upload`: slots, quotas, expiry, the HTTP server's questions.
//! * `transfer`: fetching another node's file over a link, chunk by chunk,
//!   in a lane that never makes chat wait; serving chunks to peers.
//! * `url`: the paths files live at, and rewriting messages' links.
//! * `http`: the request head and ranges, parsed without I/O.

pub mod http;
mod transfer;
mod upload;
pub mod url;

#[cfg(test)]
mod tests;

use crate::common::PeerId;
use crate::model::event::LinkEvent;
use crate::settings::UploadConfig;
use crate::state::Record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::rc::Rc;

pub use transfer::{Fetch, TransferStatus, CHUNK};
pub use upload::{Slot, NS as UPLOAD_NS};

/// A file: the node its user uploaded it at, and its random id there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileKey {
    pub origin: String,
    pub id: String,
}

impl std::fmt::Display for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.origin, self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    pub content_type: String,
    pub name: String,
}

/// A file this node keeps: its own users' uploads, and other nodes' files
/// fetched (or being fetched) for its users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    pub meta: FileMeta,
    /// The local account that uploaded it; none for another node's file.
    pub owner: Option<String>,
    /// Wall-clock time it was stored (or its fetch began): for expiry.
    pub stamp_ms: u64,
    /// All its bytes are here and their SHA-256 checked. False while
    /// another node's file is fetched.
    pub complete: bool,
}

/// The durable index of files, replayed from `FileStored`/`FileRemoved`.
pub type FileIndex = BTreeMap<FileKey, StoredFile>;

pub fn apply(index: &mut FileIndex, record: &Record) {
    match record {
        Record::FileStored { key, file } => {
            index.insert(key.clone(), file.clone());
        }
        Record::FileRemoved { key } => {
            index.remove(key);
        }
        _ => {}
    }
}

/// Where file bytes live. A file being written (an upload, a fetch) is a
/// part file until `complete` checks it and makes it the file.
pub trait FileStore {
    /// Up to `len` bytes at `offset` of the file (or of its part file).
    fn read(&self, key: &FileKey, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
    /// Write at `offset` of the part file (made if missing).
    fn write_part(&self, key: &FileKey, offset: u64, data: &[u8]) -> std::io::Result<()>;
    /// Bytes in the part file (0 if none).
    fn part_len(&self, key: &FileKey) -> u64;
    /// Make the part file the file if its SHA-256 is `sha256` (hex);
    /// otherwise remove it and say so. `None`: the caller hashed the
    /// bytes as they were written; the part is made the file as it is.
    fn complete(&self, key: &FileKey, sha256: Option<&str>) -> std::io::Result<bool>;
    /// Whether the (complete) file is there.
    fn has_file(&self, key: &FileKey) -> bool;
    /// Remove the file and its part file.
    fn remove(&self, key: &FileKey);
    /// Every file and part file kept (for removing what the index lost).
    fn keys(&self) -> Vec<FileKey>;
}

/// What the upload HTTP server asks the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAsk {
    /// A PUT to `path` with the slot's `token`: may `len` bytes come?
    Put {
        path: String,
        token: String,
        len: u64,
    },
    /// The PUT's body is in the part file: `len` bytes with this SHA-256.
    PutDone {
        path: String,
        token: String,
        len: u64,
        sha256: String,
    },
    /// The PUT that took the slot `token` ended without its body: the
    /// slot may be used again while it lives.
    PutFailed { token: String },
    /// A GET of `path`; a HEAD (`head`) wants the size alone, which does
    /// not bring another node's file over the link.
    Get { path: String, head: bool },
    /// Answer when more than `have` bytes of `key` are here, it is
    /// complete, or the fetch failed (or after a while, with what is).
    Wait { key: FileKey, have: u64 },
    /// Transfers across the links in progress.
    Transfers,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAnswer {
    /// Write the body to `key`'s part file.
    PutAccepted {
        key: FileKey,
    },
    /// Stored; the GET URL serves it.
    Stored,
    /// Serve `key`: `have` bytes are here (all of them if `complete`).
    Serve {
        key: FileKey,
        meta: FileMeta,
        have: u64,
        complete: bool,
    },
    /// An HTTP status and why.
    Refused {
        status: u16,
        why: String,
    },
    Transfers(Vec<TransferStatus>),
}

fn refused(status: u16, why: impl Into<String>) -> FileAnswer {
    FileAnswer::Refused {
        status,
        why: why.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilesOutput {
    /// Send on the link to `peer`, unnumbered, in the file lane.
    Link {
        peer: PeerId,
        event: LinkEvent,
    },
    Persist(Record),
    /// The answer to a deferred question of the HTTP server.
    Reply {
        req: u64,
        answer: FileAnswer,
    },
}

/// The files machine. Durable: the index (`State::files`), handed in with
/// each call. In memory: slots, fetches, peers' waiting chunks, the HTTP
/// server's waiting questions.
pub struct Files {
    cfg: UploadConfig,
    domain: String,
    store: Option<Rc<dyn FileStore>>,
    slots: BTreeMap<String, Slot>,
    fetches: BTreeMap<FileKey, Fetch>,
    /// Per peer: chunks waiting for the file lane's rate (`link_rate`).
    lanes: BTreeMap<PeerId, transfer::Lane>,
    waiters: Vec<transfer::Waiter>,
    /// When each kept file of another node was last opened (least
    /// recently used go first when the cache needs room).
    used: BTreeMap<FileKey, u64>,
    out: Vec<FilesOutput>,
}

impl Files {
    pub fn new(cfg: UploadConfig, domain: &str) -> Files {
        Files {
            cfg,
            domain: domain.to_string(),
            store: None,
            slots: BTreeMap::new(),
            fetches: BTreeMap::new(),
            lanes: BTreeMap::new(),
            waiters: Vec::new(),
            used: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    pub fn reconfigure(&mut self, cfg: UploadConfig) {
        self.cfg = cfg;
    }

    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    pub fn config(&self) -> &UploadConfig {
        &self.cfg
    }

    /// Where file bytes are kept; without one, uploads and transfers are
    /// refused (a node built for tests of other things).
    pub fn install_store(&mut self, store: Rc<dyn FileStore>) {
        self.store = Some(store);
    }

    pub fn take_output(&mut self) -> Vec<FilesOutput> {
        std::mem::take(&mut self.out)
    }

    fn persist(&mut self, index: &mut FileIndex, record: Record) {
        apply(index, &record);
        self.out.push(FilesOutput::Persist(record));
    }

    /// Forget a file: its bytes, its index entry.
    fn remove_file(&mut self, index: &mut FileIndex, key: &FileKey) {
        if let Some(store) = &self.store {
            store.remove(key);
        }
        self.used.remove(key);
        if index.contains_key(key) {
            self.persist(index, Record::FileRemoved { key: key.clone() });
        }
    }

    /// At start: part and whole files the index does not name are left
    /// over from a crash (an upload whose record never came): removed.
    pub fn remove_strays(&mut self, index: &FileIndex) {
        let Some(store) = &self.store else { return };
        for key in store.keys() {
            if !index.contains_key(&key) {
                log::info!("files: removing {key}, which no record names");
                store.remove(&key);
            }
        }
    }

    /// Bytes kept of this node's users' files, and of other nodes'.
    pub fn usage(index: &FileIndex) -> (u64, u64) {
        let mut own = 0;
        let mut others = 0;
        for f in index.values() {
            match f.owner {
                Some(_) => own += f.meta.size,
                None => others += f.meta.size,
            }
        }
        (own, others)
    }

    /// A question of the HTTP server; none: the answer comes later, as a
    /// `FilesOutput::Reply` for `req`.
    pub fn ask(
        &mut self,
        index: &mut FileIndex,
        now: crate::common::Now,
        req: u64,
        ask: FileAsk,
        route: transfer::Route,
    ) -> Option<FileAnswer> {
        if self.store.is_none() {
            return Some(refused(503, "this node keeps no files"));
        }
        match ask {
            FileAsk::Put { path, token, len } => Some(self.put(now.mono_ms, &path, &token, len)),
            FileAsk::PutDone {
                path,
                token,
                len,
                sha256,
            } => Some(self.put_done(index, now, &path, &token, len, &sha256)),
            FileAsk::PutFailed { token } => {
                self.put_failed(&token);
                Some(FileAnswer::Stored)
            }
            FileAsk::Get { path, head } => self.get(index, now.mono_ms, req, &path, head, route),
            FileAsk::Wait { key, have } => {
                self.wait(index, now.mono_ms, req, key, Some(have), false)
            }
            FileAsk::Transfers => Some(FileAnswer::Transfers(self.transfers(now.mono_ms))),
        }
    }

    pub fn handle_timeout(&mut self, index: &mut FileIndex, now: crate::common::Now) {
        self.expire_slots(now.mono_ms);
        self.handle_transfer_timeouts(index, now.mono_ms);
    }

    pub fn next_deadline(&self) -> Option<u64> {
        [self.next_slot_expiry(), self.next_transfer_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Files past their age go (hourly, and at start).
    pub fn expire(&mut self, index: &mut FileIndex, unix_ms: u64) {
        if self.cfg.expire_days == 0 {
            return;
        }
        let max_age = self.cfg.expire_days * 86_400_000;
        let old: Vec<FileKey> = index
            .iter()
            .filter(|(k, f)| {
                f.stamp_ms.saturating_add(max_age) <= unix_ms && !self.fetches.contains_key(k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in old {
            log::info!("files: {key} expired");
            self.remove_file(index, &key);
        }
    }
}
