//! XEP-0363: slots for this node's users, their uploads, and what the
//! HTTP server may serve. A slot counts against the quotas from the moment
//! it is granted, so slots asked at once cannot overrun them together.

use super::{refused, url, FileAnswer, FileIndex, FileKey, FileMeta, Files, StoredFile};
use crate::state::Record;
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:http:upload:0";

/// A granted slot, waiting for its PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub key: FileKey,
    pub owner: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    /// Monotonic time after which the PUT is refused.
    pub expires_ms: u64,
    /// A PUT took it: no other may, and it does not expire until that
    /// PUT's own deadline (a large file on a slow phone takes a while).
    pub uploading_until: Option<u64>,
}

/// How long one PUT may take once it started.
const PUT_MS: u64 = 3_600_000;

impl Slot {
    fn live(&self, now_ms: u64) -> bool {
        match self.uploading_until {
            Some(until) => until > now_ms,
            None => self.expires_ms > now_ms,
        }
    }
}

/// Why a slot was refused: the stanza error's condition, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRefused {
    pub condition: &'static str,
    pub text: String,
    /// `<file-too-large>` with the maximum, for `not-acceptable`.
    pub too_large: Option<u64>,
}

fn slot_refused(condition: &'static str, text: impl Into<String>) -> SlotRefused {
    SlotRefused {
        condition,
        text: text.into(),
        too_large: None,
    }
}

/// A granted slot's URLs.
pub struct SlotUrls {
    pub put: String,
    pub get: String,
}

impl Files {
    /// Bytes `owner` has stored and has been granted slots for.
    fn user_bytes(&self, index: &FileIndex, owner: &str) -> u64 {
        let stored: u64 = index
            .values()
            .filter(|f| f.owner.as_deref() == Some(owner))
            .map(|f| f.meta.size)
            .sum();
        let slots: u64 = self
            .slots
            .values()
            .filter(|s| s.owner == owner)
            .map(|s| s.size)
            .sum();
        stored + slots
    }

    /// A slot request (`<request/>`) from `owner`; `id` and `token` are
    /// fresh random hex (the node's generator).
    pub fn request_slot(
        &mut self,
        index: &FileIndex,
        now_ms: u64,
        owner: &str,
        request: &Element,
        id: String,
        token: String,
    ) -> Result<SlotUrls, SlotRefused> {
        if !self.cfg.enabled || self.store.is_none() {
            return Err(slot_refused(
                "service-unavailable",
                "this node takes no uploads",
            ));
        }
        let name = request
            .get_attr("filename")
            .unwrap_or("")
            .trim()
            .to_string();
        if !url::is_name(&name) {
            return Err(slot_refused(
                "bad-request",
                "the file name is missing, too long, or has a path in it",
            ));
        }
        let Some(size) = request.get_attr("size").and_then(|s| s.parse::<u64>().ok()) else {
            return Err(slot_refused(
                "bad-request",
                "the size is missing or not a number",
            ));
        };
        if size > self.cfg.max_file_bytes {
            return Err(SlotRefused {
                condition: "not-acceptable",
                text: format!(
                    "the file is larger than the {} bytes this node takes",
                    self.cfg.max_file_bytes
                ),
                too_large: Some(self.cfg.max_file_bytes),
            });
        }
        let held = self.slots.values().filter(|s| s.owner == owner).count();
        let stored = index
            .values()
            .filter(|f| f.owner.as_deref() == Some(owner))
            .count();
        if stored + held >= self.cfg.files_per_user {
            return Err(slot_refused(
                "resource-constraint",
                format!(
                    "you have {} files here, the most one account may keep",
                    self.cfg.files_per_user
                ),
            ));
        }
        if index.len() + self.slots.len() >= self.cfg.files_total {
            // Other nodes' files make room for this node's own.
            let cached = index.values().filter(|f| f.owner.is_none()).count();
            if cached == 0 {
                return Err(slot_refused(
                    "resource-constraint",
                    "this node keeps as many files as it may",
                ));
            }
        }
        if held >= self.cfg.slots_per_user {
            return Err(slot_refused(
                "resource-constraint",
                "too many uploads waiting; finish or let them expire first",
            ));
        }
        if self.user_bytes(index, owner) + size > self.cfg.user_quota_bytes {
            return Err(slot_refused(
                "resource-constraint",
                format!(
                    "your files would take more than your {} bytes",
                    self.cfg.user_quota_bytes
                ),
            ));
        }
        let pending: u64 = self.slots.values().map(|s| s.size).sum();
        if Files::usage(index).0 + pending + size > self.cfg.total_bytes {
            return Err(slot_refused(
                "resource-constraint",
                "this node's file storage is full",
            ));
        }
        let key = FileKey {
            origin: self.domain.clone(),
            id,
        };
        let get = format!("{}{}", self.cfg.public_url, url::path(&key, &name));
        let put = format!("{get}?token={token}");
        let content_type = super::http::content_type(request.get_attr("content-type"));
        self.slots.insert(
            token,
            Slot {
                key,
                owner: owner.to_string(),
                name,
                size,
                content_type,
                expires_ms: now_ms + self.cfg.slot_ms,
                uploading_until: None,
            },
        );
        Ok(SlotUrls { put, get })
    }

    /// The slot `token` grants for `path`, if it is live.
    fn slot_for(&self, now_ms: u64, path: &str, token: &str) -> Result<&Slot, (u16, &'static str)> {
        let Some((key, _)) = url::parse_path(path) else {
            return Err((404, "no such file"));
        };
        match self.slots.get(token) {
            Some(s) if s.key == key && s.live(now_ms) => Ok(s),
            Some(s) if s.key == key => Err((403, "the slot expired; ask for another")),
            _ => Err((403, "no slot for this URL with this token")),
        }
    }

    pub(super) fn put(&mut self, now_ms: u64, path: &str, token: &str, len: u64) -> FileAnswer {
        let key = match self.slot_for(now_ms, path, token) {
            Ok(slot) if slot.size != len => {
                return refused(
                    400,
                    format!("the slot is for {} bytes, not {len}", slot.size),
                )
            }
            Ok(slot) if slot.uploading_until.is_some() => {
                return refused(409, "an upload to this slot is under way")
            }
            Ok(slot) => slot.key.clone(),
            Err((status, why)) => return refused(status, why),
        };
        let slot = self.slots.get_mut(token).expect("found");
        slot.uploading_until = Some(now_ms + PUT_MS);
        FileAnswer::PutAccepted { key }
    }

    /// The PUT that took `token`'s slot failed: the slot may be used again
    /// while it lives.
    pub(super) fn put_failed(&mut self, token: &str) {
        if let Some(slot) = self.slots.get_mut(token) {
            slot.uploading_until = None;
        }
    }

    pub(super) fn put_done(
        &mut self,
        index: &mut FileIndex,
        now: crate::common::Now,
        path: &str,
        token: &str,
        len: u64,
        sha256: &str,
    ) -> FileAnswer {
        let slot = match self.slot_for(now.mono_ms, path, token) {
            Ok(slot) if slot.size == len && slot.uploading_until.is_some() => slot.clone(),
            Ok(_) => return refused(400, "no PUT of the slot's length took this slot"),
            Err((status, why)) => return refused(status, why),
        };
        let Some(store) = self.store.clone() else {
            return refused(503, "this node keeps no files");
        };
        // The shell hashed the body as it wrote it: the part is the file.
        let _ = sha256;
        match store.complete(&slot.key, None) {
            Ok(true) => {}
            Ok(false) => return refused(500, "the file as stored is not the file received"),
            Err(e) => {
                log::warn!("files: storing {}: {e}", slot.key);
                store.remove(&slot.key);
                return refused(507, "the file could not be stored");
            }
        }
        self.slots.remove(token);
        // Counted against `files_total` when the slot was granted; a
        // cached file makes room if one must.
        self.make_room(index, 0);
        let file = StoredFile {
            meta: FileMeta {
                size: len,
                sha256: sha256.to_string(),
                content_type: slot.content_type,
                name: slot.name,
            },
            owner: Some(slot.owner),
            stamp_ms: now.unix_ms,
            complete: true,
        };
        self.persist(
            index,
            Record::FileStored {
                key: slot.key,
                file,
            },
        );
        FileAnswer::Stored
    }

    /// Slots past their time go, with whatever part of an upload they got.
    pub(super) fn expire_slots(&mut self, now_ms: u64) {
        let gone: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.live(now_ms))
            .map(|(t, _)| t.clone())
            .collect();
        for token in gone {
            if let Some(slot) = self.slots.remove(&token) {
                if let Some(store) = &self.store {
                    store.remove(&slot.key);
                }
            }
        }
    }

    pub(super) fn next_slot_expiry(&self) -> Option<u64> {
        self.slots
            .values()
            .map(|s| s.uploading_until.unwrap_or(s.expires_ms))
            .min()
    }

    /// The disco#info of the upload service (XEP-0363 §2).
    pub fn disco_info(&self) -> Element {
        use crate::xml::ns;
        const DATA: &str = "jabber:x:data";
        let field = |var: &str, value: String| {
            Element::new("field", DATA)
                .attr("var", var)
                .child(Element::new("value", DATA).text(value))
        };
        Element::new("query", ns::DISCO_INFO)
            .child(
                Element::new("identity", ns::DISCO_INFO)
                    .attr("category", "store")
                    .attr("type", "file")
                    .attr("name", "HTTP File Upload"),
            )
            .child(Element::new("feature", ns::DISCO_INFO).attr("var", NS))
            .child(
                Element::new("x", DATA)
                    .attr("type", "result")
                    .child(
                        Element::new("field", DATA)
                            .attr("var", "FORM_TYPE")
                            .attr("type", "hidden")
                            .child(Element::new("value", DATA).text(NS)),
                    )
                    .child(field("max-file-size", self.cfg.max_file_bytes.to_string())),
            )
    }
}
