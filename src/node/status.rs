//! The node's own account of itself, for the serial console and the web page.

use super::{Node, NodeStatus, RoomStatus, StorageStatus};

impl Node {
    pub(crate) fn status(&self) -> NodeStatus {
        let service = &self.cfg.muc_service;
        let mastered = self
            .muc
            .live_rooms()
            .iter()
            .map(|(room, live)| (format!("{room}@{service}"), None, live));
        let mirrored = self.mirrors.rooms().iter().map(|(jid, live)| {
            let upstream = self
                .mirrors
                .mirrors()
                .get(jid)
                .map(|m| m.upstream.to_string());
            (jid.clone(), upstream, live)
        });
        let mut rooms: Vec<RoomStatus> = mastered
            .chain(mirrored)
            .filter(|(_, _, live)| !live.occupants.is_empty())
            .map(|(jid, mirrored_from, live)| RoomStatus {
                jid,
                mirrored_from,
                occupants: live
                    .occupants
                    .iter()
                    .map(|(nick, o)| (nick.clone(), o.bare.clone()))
                    .collect(),
            })
            .collect();
        // Mastered rooms nobody is in still exist: list them, empty.
        for room in self.state.rooms.keys() {
            if self
                .muc
                .live_rooms()
                .get(room)
                .is_none_or(|l| l.occupants.is_empty())
            {
                rooms.push(RoomStatus {
                    jid: format!("{room}@{}", self.cfg.muc_service),
                    mirrored_from: None,
                    occupants: Vec::new(),
                });
            }
        }
        rooms.sort_by(|a, b| a.jid.cmp(&b.jid));
        NodeStatus {
            domain: self.cfg.domain.clone(),
            accounts: self.state.accounts.len(),
            sessions: self.clients.session_count(),
            rooms,
            links: self.link_status(),
            storage: self.storage_status(),
            transfers: self.files.transfers(self.now.mono_ms),
        }
    }

    fn storage_status(&self) -> StorageStatus {
        let s = &self.state;
        let rooms = s.rooms.values().map(|r| &r.archive);
        let room_archives = rooms.chain(s.mirrors.values().map(|m| &m.state.archive));
        let accounts = s.accounts.values();
        let account_archives = accounts.clone().map(|a| &a.archive);
        let offline = accounts.map(|a| a.offline.archive());
        let archived_messages = room_archives.clone().map(|a| a.len() as u64).sum();
        // What is compressed and what is in memory: every kind of archive.
        let (mut packed, mut memory) = (0, 0);
        for a in room_archives.chain(account_archives.clone()).chain(offline) {
            packed += a.packed_bytes();
            memory += a.held_bytes();
        }
        StorageStatus {
            archived_messages,
            archive_bytes: super::retention::archive_bytes(s),
            archive_budget: self.cfg.muc.archive_bytes_total,
            archive_packed_bytes: packed,
            archive_memory_bytes: memory,
            offline_messages: s.accounts.values().map(|a| a.offline.len() as u64).sum(),
            offline_bytes: s.offline_bytes(),
            offline_budget: self.cfg.offline_bytes_total,
            account_archive_messages: account_archives.map(|a| a.len() as u64).sum(),
            account_archive_bytes: super::retention::account_archive_bytes(s),
            account_archive_budget: self.cfg.archive_bytes_total,
            upload_bytes: crate::files::Files::usage(&s.files).0,
            upload_budget: self.cfg.upload.total_bytes,
            file_cache_bytes: crate::files::Files::usage(&s.files).1,
            file_cache_budget: self.cfg.upload.cache_bytes,
        }
    }
}
