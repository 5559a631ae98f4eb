//! Plain-text reports for the console (the web page renders the same facts
//! as HTML in `web`).

use crate::config::Config;
use crate::node::{LinkStatus, NodeStatus, RoomStatus};
use std::fmt::Write;

/// What only the shell knows, shown beside the node's own status.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// This node's link key fingerprint (what peers pin).
    pub fingerprint: String,
    /// Bytes in the append log.
    pub log_bytes: u64,
    /// Where settings are saved.
    pub config_file: String,
    /// Saved settings differ from the running ones.
    pub restart_pending: bool,
}

/// The pinned fingerprint of a link's peer, from the configuration.
pub fn pinned_fingerprint<'c>(cfg: &'c Config, peer: &str) -> Option<&'c str> {
    cfg.upstream
        .iter()
        .find(|u| u.muc.0 == peer)
        .map(|u| u.fingerprint.as_str())
        .or_else(|| {
            cfg.link
                .peer
                .iter()
                .find(|p| p.domain.0 == peer)
                .map(|p| p.fingerprint.as_str())
        })
}

pub fn status(s: &NodeStatus, facts: &Facts, cfg: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "outpost {} serving {} ({} accounts, {} client connections)",
        env!("CARGO_PKG_VERSION"),
        s.domain,
        s.accounts,
        s.sessions
    );
    let _ = writeln!(
        out,
        "log: {} bytes; settings in {}",
        facts.log_bytes, facts.config_file
    );
    let st = &s.storage;
    let _ = writeln!(
        out,
        "archives: {} messages, {} of {} bytes ({} compressed, {} in memory); \
         offline messages: {}, {} of {} bytes; accounts' archives: {} messages, {} of {} bytes",
        st.archived_messages,
        st.archive_bytes,
        st.archive_budget,
        st.archive_packed_bytes,
        st.archive_memory_bytes,
        st.offline_messages,
        st.offline_bytes,
        st.offline_budget,
        st.account_archive_messages,
        st.account_archive_bytes,
        st.account_archive_budget
    );
    let _ = writeln!(
        out,
        "files: uploads {} of {} bytes; other nodes' files kept {} of {} bytes",
        st.upload_bytes, st.upload_budget, st.file_cache_bytes, st.file_cache_budget
    );
    out.push_str(&transfers(&s.transfers));
    if facts.restart_pending {
        let _ = writeln!(
            out,
            "saved settings differ from the running ones: restart to apply"
        );
    }
    out.push_str(&links(&s.links, facts, cfg));
    out.push_str(&rooms(&s.rooms));
    out
}

/// Files coming over the links now: how far, how fast.
pub fn transfers(transfers: &[crate::files::TransferStatus]) -> String {
    let mut out = String::new();
    for t in transfers {
        let size = t.size.map_or("?".to_string(), |s| s.to_string());
        let percent = t.size.map_or(0, |s| t.have * 100 / s.max(1));
        let _ = writeln!(
            out,
            "transfer {} ({}) from {}: {} of {} bytes ({percent}%), {} bytes/s",
            t.file,
            t.name,
            t.peer.as_deref().unwrap_or("(link down)"),
            t.have,
            size,
            t.rate
        );
    }
    out
}

pub fn links(links: &[LinkStatus], facts: &Facts, cfg: &Config) -> String {
    let mut out = format!("this node's fingerprint: {}\n", facts.fingerprint);
    if links.is_empty() {
        out.push_str("no links configured\n");
    }
    for l in links {
        let _ = writeln!(
            out,
            "link {}: {}, rtt {}, in {} B, out {} B, saved {} B, unacked {}, fingerprint {}",
            l.peer,
            if l.connected { "up" } else { "down" },
            l.rtt_ms.map_or("-".to_string(), |r| format!("{r} ms")),
            l.bytes_in,
            l.bytes_out,
            l.saved_bytes,
            l.unacked,
            pinned_fingerprint(cfg, &l.peer).unwrap_or("?")
        );
    }
    out
}

pub fn rooms(rooms: &[RoomStatus]) -> String {
    let mut out = String::new();
    if rooms.is_empty() {
        out.push_str("no rooms\n");
    }
    for r in rooms {
        let origin = match &r.mirrored_from {
            Some(up) => format!(" (mirror of {up})"),
            None => String::new(),
        };
        let who: Vec<String> = r
            .occupants
            .iter()
            .map(|(nick, jid)| format!("{nick} <{jid}>"))
            .collect();
        let _ = writeln!(
            out,
            "room {}{origin}: {} occupant(s){}{}",
            r.jid,
            r.occupants.len(),
            if who.is_empty() { "" } else { ": " },
            who.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::files::TransferStatus;

    #[test]
    fn a_transfer_shows_its_progress_rate_and_link() {
        let t = |peer: Option<&str>, size| TransferStatus {
            file: "hq.example/0123".into(),
            name: "crane.jpg".into(),
            peer: peer.map(str::to_string),
            size,
            have: 250_000,
            rate: 980,
            pace: 1_000,
        };
        let text = super::transfers(&[
            t(Some("conference.hq.example"), Some(1_000_000)),
            t(None, None),
        ]);
        assert_eq!(
            text,
            "transfer hq.example/0123 (crane.jpg) from conference.hq.example: 250000 of 1000000 bytes (25%), 980 bytes/s\n\
             transfer hq.example/0123 (crane.jpg) from (link down): 250000 of ? bytes (0%), 980 bytes/s\n"
        );
    }
}
