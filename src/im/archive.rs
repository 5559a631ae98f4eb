//! Accounts' archives (XEP-0313): which one-to-one messages are kept, the
//! stanza-id (XEP-0359) each gets, what is kept within the retention
//! bounds, and the account's archive iq: queries, the query form,
//! preferences and metadata. The paging is the shared one (`crate::mam`).

use super::Ctx;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::mam;
use crate::model::room::Archived;
use crate::stanza;
use crate::state::{ArchiveDefault, ArchivePrefs, Record};
use crate::xml::{ns, Element, Node};

const OMEMO_LEGACY: &str = "eu.siacs.conversations.axolotl";
const OMEMO: &str = "urn:xmpp:omemo:2";
const RETRACT: &str = "urn:xmpp:message-retract:1";
const FASTEN: &str = "urn:xmpp:fasten:0";
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Whether a message belongs in its users' archives: chat and normal ones
/// with a body, an encrypted payload or a retraction, or that ask to be
/// stored; never one that asks not to be (XEP-0334).
pub(crate) fn archivable(el: &Element) -> bool {
    if !matches!(el.get_attr("type").unwrap_or("normal"), "chat" | "normal") {
        return false;
    }
    if el.has_child("no-store", ns::HINTS) || el.has_child("no-permanent-store", ns::HINTS) {
        return false;
    }
    el.has_child("body", ns::CLIENT)
        || el.has_child("store", ns::HINTS)
        || el.has_child("encrypted", OMEMO_LEGACY)
        || el.has_child("encrypted", OMEMO)
        || el.has_child("retract", RETRACT)
        || el.has_child("apply-to", FASTEN)
}

/// `el` without stanza-ids by `by` (a bare JID): one the sender put there
/// would claim an id of an archive not theirs.
pub(crate) fn without_stanza_id(el: &Element, by: &str) -> Element {
    let mut el = el.clone();
    el.children.retain(|c| match c {
        Node::Element(e) => !(e.is("stanza-id", ns::SID) && e.get_attr("by") == Some(by)),
        Node::Text(_) => true,
    });
    el
}

/// `el` with a stanza-id by `by` in place of any it carried.
pub(crate) fn with_stanza_id(el: &Element, by: &str, id: &str) -> Element {
    without_stanza_id(el, by).child(
        Element::new("stanza-id", ns::SID)
            .attr("id", id)
            .attr("by", by),
    )
}

impl Ctx<'_> {
    /// A fresh stanza-id for a message entering the archives.
    pub(crate) fn mint_stanza_id(&mut self) -> String {
        crate::common::random_id(&mut self.rng)
    }

    /// Keep an accepted one-to-one message in the archive of each local
    /// party whose preferences allow it: `sender` and `recipient` (those
    /// that are local), under one stanza-id.
    pub(crate) fn archive_message(
        &mut self,
        el: &Element,
        stanza_id: &str,
        sender: Option<&str>,
        recipient: Option<&str>,
    ) {
        let from = el.get_attr("from").unwrap_or("").to_string();
        let to = el.get_attr("to").unwrap_or("").to_string();
        let xml = el.to_xml(ns::CLIENT);
        let mut owners = Vec::new();
        if let Some(recipient) = recipient {
            owners.push((recipient, from));
        }
        if let Some(sender) = sender.filter(|s| Some(*s) != recipient) {
            owners.push((sender, to));
        }
        for (user, with) in owners {
            let Some(acc) = self.accounts.get(user) else {
                continue;
            };
            let with_bare = Jid::parse(&with).map_or(with.clone(), |j| j.to_bare().to_string());
            if !acc
                .archive_prefs
                .archives(&with_bare, acc.roster.contains_key(&with_bare))
            {
                continue;
            }
            let msg = Archived {
                seq: acc.archive.last_seq().map_or(1, |s| s + 1),
                stanza_id: stanza_id.to_string(),
                // Never before the previous message, even if the clock
                // stepped back (time bounds are found by binary search).
                stamp_ms: self.now.unix_ms.max(acc.archive.last_stamp()),
                nick: String::new(),
                real: with,
                xml: xml.clone(),
            };
            let user = user.to_string();
            self.commit(Record::AccountArchived {
                user: user.clone(),
                msg,
            });
            self.keep_archive_within_bounds(&user);
        }
    }

    /// Drop the oldest messages of `user`'s archive past the bounds per
    /// account: count, bytes and age.
    pub(crate) fn keep_archive_within_bounds(&mut self, user: &str) {
        let Some(acc) = self.accounts.get(user) else {
            return;
        };
        let archive = &acc.archive;
        let by_size = archive.trim_point(
            self.cfg.archive_messages_per_account,
            self.cfg.archive_bytes_per_account,
        );
        let by_age = match self.cfg.archive_days {
            0 => None,
            days => {
                let cutoff = self.now.unix_ms.saturating_sub(days.saturating_mul(DAY_MS));
                let first_kept = archive.first_at_or_after(cutoff);
                first_kept
                    .checked_sub(1)
                    .and_then(|p| archive.get(p))
                    .map(|m| m.seq)
            }
        };
        if let Some(upto) = by_size.max(by_age) {
            self.commit(Record::AccountArchiveTrim {
                user: user.to_string(),
                upto,
            });
        }
    }

    /// The archive iq of the session `conn` to its own account.
    pub(crate) fn on_archive_iq(
        &mut self,
        conn: ConnId,
        el: &Element,
        payload: &Element,
        set: bool,
    ) {
        let Some(me) = self.bound.jid_of(conn).cloned() else {
            return;
        };
        let Some(user) = me.local().map(str::to_string) else {
            return;
        };
        let bare = me.to_bare().to_string();
        let reply = |payload: Option<Element>| stanza::iq_result(el, &bare, payload);
        match (payload.name.as_str(), set) {
            ("query", true) => self.archive_query(conn, el, payload, &user, &me),
            ("query", false) => {
                let form = Element::new("query", ns::MAM).child(mam::form());
                self.send_el(conn, &reply(Some(form)));
            }
            ("metadata", false) => {
                let Some(acc) = self.accounts.get(&user) else {
                    return;
                };
                let metadata = mam::metadata(&acc.archive);
                self.send_el(conn, &reply(Some(metadata)));
            }
            ("prefs", false) => {
                let Some(acc) = self.accounts.get(&user) else {
                    return;
                };
                let prefs = prefs_element(&acc.archive_prefs);
                self.send_el(conn, &reply(Some(prefs)));
            }
            ("prefs", true) => match parse_prefs(payload) {
                Err(condition) => self.bounce(conn, el, condition),
                Ok(prefs) if !prefs.within_bounds() => self.bounce_explained(
                    conn,
                    el,
                    "not-acceptable",
                    "archive preferences name too many JIDs",
                ),
                Ok(prefs) => {
                    let answer = prefs_element(&prefs);
                    if self.accounts.get(&user).map(|a| &a.archive_prefs) != Some(&prefs) {
                        self.commit(Record::AccountArchivePrefs { user, prefs });
                    }
                    self.send_el(conn, &reply(Some(answer)));
                }
            },
            _ => self.bounce(conn, el, "bad-request"),
        }
    }

    fn archive_query(&mut self, conn: ConnId, el: &Element, query: &Element, user: &str, me: &Jid) {
        let bare = me.to_bare().to_string();
        let Some(acc) = self.accounts.get(user) else {
            return;
        };
        let answer = mam::parse(query, self.cfg.muc.mam_max_page).and_then(|q| {
            // A bare `with` matches the contact's every resource; a full
            // one, that resource only.
            let with = q.with.clone();
            let with_contact = move |m: &Archived| match &with {
                None => true,
                Some(w) if w.resource().is_some() => Jid::parse(&m.real).is_ok_and(|j| j == *w),
                Some(w) => Jid::parse(&m.real).is_ok_and(|j| j.to_bare() == *w),
            };
            let matches: Option<&dyn Fn(&Archived) -> bool> =
                q.with.as_ref().map(|_| &with_contact as _);
            let to = me.to_string();
            let queryid = query.get_attr("queryid");
            let render = |m: &Archived| mam::result_xml(m, &to, Some(&bare), &bare, queryid);
            mam::page(&acc.archive, &q, matches, render)
        });
        match answer {
            Ok(page) => {
                for xml in page.results {
                    self.send_paced(conn, xml.into_bytes(), None);
                }
                let fin = stanza::iq_result(el, &bare, Some(page.fin));
                self.send_el(conn, &fin);
            }
            Err(condition) => self.bounce(conn, el, condition),
        }
    }
}

fn prefs_element(prefs: &ArchivePrefs) -> Element {
    let list = |name: &str, jids: &std::collections::BTreeSet<String>| {
        jids.iter().fold(Element::new(name, ns::MAM), |l, j| {
            l.child(Element::new("jid", ns::MAM).text(j.clone()))
        })
    };
    Element::new("prefs", ns::MAM)
        .attr("default", prefs.default.as_str())
        .child(list("always", &prefs.always))
        .child(list("never", &prefs.never))
}

/// The preferences a `<prefs/>` set asks for (its JIDs made bare).
fn parse_prefs(el: &Element) -> Result<ArchivePrefs, &'static str> {
    let default = el
        .get_attr("default")
        .and_then(ArchiveDefault::parse)
        .ok_or("bad-request")?;
    let jids = |name: &str| -> Result<std::collections::BTreeSet<String>, &'static str> {
        let Some(list) = el.get_child(name, ns::MAM) else {
            return Ok(Default::default());
        };
        list.elements()
            .filter(|j| j.is("jid", ns::MAM))
            .map(|j| {
                Jid::parse(j.text_content().trim())
                    .map(|j| j.to_bare().to_string())
                    .map_err(|_| "jid-malformed")
            })
            .collect()
    };
    Ok(ArchivePrefs {
        default,
        always: jids("always")?,
        never: jids("never")?,
    })
}
