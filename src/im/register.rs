//! XEP-0077 for a logged-in user: what the account is, and a change of its
//! password. Accounts are made and removed by the operator (`outpost user`,
//! the admin page); a user cannot register or remove one in-band.

use super::Ctx;
use crate::common::ConnId;
use crate::jid::normalize_local;
use crate::scram::{Credentials, DEFAULT_ITERATIONS};
use crate::stanza;
use crate::state::Record;
use crate::xml::{ns, Element};
use rand_core::RngCore;

/// An account changes its password at most this often: each change derives
/// keys (4,096 rounds of HMAC on the event loop) and writes a record.
pub const PASSWORD_CHANGE_INTERVAL_MS: u64 = 60_000;

impl Ctx<'_> {
    pub(crate) fn on_register_iq(&mut self, conn: ConnId, iq: &Element, query: &Element) {
        let Some(user) = self.bound.user_of(conn) else {
            return;
        };
        let from = iq.get_attr("to").unwrap_or(&self.cfg.domain).to_string();
        if iq.get_attr("type") == Some("get") {
            let q = Element::new("query", ns::REGISTER)
                .child(Element::new("registered", ns::REGISTER))
                .child(Element::new("username", ns::REGISTER).text(user.clone()))
                .child(Element::new("password", ns::REGISTER));
            return self.send_el(conn, &stanza::iq_result(iq, &from, Some(q)));
        }
        if query.has_child("remove", ns::REGISTER) {
            let text = "accounts are removed by the server's operator";
            return self.bounce_explained(conn, iq, "not-allowed", text);
        }
        let field = |name: &str| {
            query
                .get_child(name, ns::REGISTER)
                .map(Element::text_content)
        };
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            return self.bounce_explained(
                conn,
                iq,
                "bad-request",
                "a username and a password are needed",
            );
        };
        if normalize_local(&username).ok().as_deref() != Some(user.as_str()) {
            let text = "a password is changed for the account logged in only";
            return self.bounce_explained(conn, iq, "not-allowed", text);
        }
        if let Err(why) = crate::scram::check_new_password(&password) {
            return self.bounce_explained(conn, iq, "not-acceptable", &why);
        }
        let now = self.now.mono_ms;
        if let Some(last) = self.password_changes.get(&user) {
            if now < last + PASSWORD_CHANGE_INTERVAL_MS {
                let text = "the password was changed less than a minute ago";
                return self.bounce_explained(conn, iq, "resource-constraint", text);
            }
        }
        let mut salt = [0u8; 16];
        self.rng.fill_bytes(&mut salt);
        let creds = Credentials::derive(&password, &salt, DEFAULT_ITERATIONS);
        self.commit(Record::AccountSet {
            user: user.clone(),
            creds,
        });
        // Entries older than the interval say nothing: let them go.
        self.password_changes
            .retain(|_, at| now < *at + PASSWORD_CHANGE_INTERVAL_MS);
        self.password_changes.insert(user.clone(), now);
        log::info!("account {user}: password changed by the user");
        self.send_el(conn, &stanza::iq_result(iq, &from, None));
    }
}
