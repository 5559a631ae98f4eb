//! Which one-to-one messages an account's archive keeps (XEP-0313 §6.1
//! preferences): a default, and JIDs always or never archived.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// JIDs the two lists hold together, and their bytes: a user's preferences
/// are a short list of contacts, and each change is a log record.
pub const MAX_PREF_JIDS: usize = 200;
pub const MAX_PREF_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ArchiveDefault {
    #[default]
    Always,
    Never,
    /// Only conversations with contacts in the roster.
    Roster,
}

impl ArchiveDefault {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveDefault::Always => "always",
            ArchiveDefault::Never => "never",
            ArchiveDefault::Roster => "roster",
        }
    }

    pub fn parse(s: &str) -> Option<ArchiveDefault> {
        match s {
            "always" => Some(ArchiveDefault::Always),
            "never" => Some(ArchiveDefault::Never),
            "roster" => Some(ArchiveDefault::Roster),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ArchivePrefs {
    pub default: ArchiveDefault,
    /// Bare JIDs archived whatever the default says.
    pub always: BTreeSet<String>,
    /// Bare JIDs never archived (this wins over `always`).
    pub never: BTreeSet<String>,
}

impl ArchivePrefs {
    /// Whether a message with the contact `with` (a bare JID) is archived;
    /// `in_roster`: whether the contact is in the user's roster.
    pub fn archives(&self, with: &str, in_roster: bool) -> bool {
        if self.never.contains(with) {
            return false;
        }
        if self.always.contains(with) {
            return true;
        }
        match self.default {
            ArchiveDefault::Always => true,
            ArchiveDefault::Never => false,
            ArchiveDefault::Roster => in_roster,
        }
    }

    pub fn is_default(&self) -> bool {
        *self == ArchivePrefs::default()
    }

    /// Whether the lists fit [`MAX_PREF_JIDS`] and [`MAX_PREF_BYTES`].
    pub fn within_bounds(&self) -> bool {
        let jids = self.always.len() + self.never.len();
        let bytes: usize = self.always.iter().chain(&self.never).map(String::len).sum();
        jids <= MAX_PREF_JIDS && bytes <= MAX_PREF_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_wins_then_always_then_the_default() {
        let mut p = ArchivePrefs {
            default: ArchiveDefault::Roster,
            ..ArchivePrefs::default()
        };
        assert!(p.archives("a@x", true));
        assert!(!p.archives("a@x", false));
        p.always.insert("a@x".into());
        assert!(p.archives("a@x", false));
        p.never.insert("a@x".into());
        assert!(!p.archives("a@x", true));
        p.default = ArchiveDefault::Never;
        assert!(!p.archives("b@x", true));
    }

    #[test]
    fn bounds_count_jids_and_bytes() {
        let mut p = ArchivePrefs::default();
        for i in 0..MAX_PREF_JIDS {
            p.always.insert(format!("u{i}@x"));
        }
        assert!(p.within_bounds());
        p.never.insert("one-more@x".into());
        assert!(!p.within_bounds());
        let big = ArchivePrefs {
            never: [format!("{}@x", "a".repeat(MAX_PREF_BYTES))].into(),
            ..ArchivePrefs::default()
        };
        assert!(!big.within_bounds());
    }
}
