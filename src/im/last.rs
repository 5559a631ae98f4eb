//! XEP-0012 last activity: the server's uptime, and when a contact was
//! last online (kept durably when an account's last resource goes
//! offline, with the status it left), for those who may see its presence.

use super::Ctx;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::stanza;
use crate::state::{LastSeen, Record};
use crate::xml::{ns, Element};

/// Bytes of the status kept with a last logout.
const STATUS_BYTES: usize = 1024;

fn answer(seconds: u64, status: &str) -> Element {
    let query = Element::new("query", ns::LAST).attr("seconds", seconds.to_string());
    match status {
        "" => query,
        status => query.text(status),
    }
}

impl Ctx<'_> {
    /// The account of `conn` went offline with its last resource: when,
    /// and the status it left.
    pub(crate) fn remember_last_seen(&mut self, user: &str, unavailable: &Element) {
        if !self.bound.available_conns(user).is_empty() {
            return;
        }
        let mut status = unavailable
            .get_child("status", ns::CLIENT)
            .map(Element::text_content)
            .unwrap_or_default();
        if status.len() > STATUS_BYTES {
            let cut = (0..=STATUS_BYTES)
                .rev()
                .find(|i| status.is_char_boundary(*i))
                .unwrap_or(0);
            status.truncate(cut);
        }
        let last = LastSeen {
            stamp_ms: self.now.unix_ms,
            status,
        };
        self.commit(Record::AccountLastSeen {
            user: user.to_string(),
            last,
        });
    }

    /// Uptime: `mono_ms` counts from the start of the process.
    pub(crate) fn server_last_activity(&mut self, conn: ConnId, el: &Element, from: &str) {
        let reply = stanza::iq_result(el, from, Some(answer(self.now.mono_ms / 1000, "")));
        self.send_el(conn, &reply);
    }

    /// When the local account `target` was last online, asked by the
    /// session `conn`: 0 seconds while it is, `<forbidden/>` to someone not
    /// allowed to see its presence (RFC 6121 §8.5.2.1.3, XEP-0012 §4).
    pub(crate) fn account_last_activity(&mut self, conn: ConnId, el: &Element, target: &Jid) {
        let (Some(asker), Some(user)) = (self.requester(conn, el), target.local()) else {
            return;
        };
        let asker_bare = asker.to_bare().to_string();
        let Some(acc) = self.accounts.get(user) else {
            return;
        };
        let may_see = asker.to_bare() == target.to_bare()
            || acc
                .roster
                .get(&asker_bare)
                .is_some_and(|i| i.subscription.has_from());
        if !may_see {
            return self.bounce(conn, el, "forbidden");
        }
        let from = target.to_string();
        let query = if !self.bound.available_conns(user).is_empty() {
            answer(0, "")
        } else {
            match &acc.last_seen {
                Some(last) => {
                    let seconds = self.now.unix_ms.saturating_sub(last.stamp_ms) / 1000;
                    answer(seconds, &last.status)
                }
                // Never seen since this release kept it.
                None => return self.bounce(conn, el, "item-not-found"),
            }
        };
        let reply = stanza::iq_result(el, &from, Some(query));
        self.send_el(conn, &reply);
    }
}
