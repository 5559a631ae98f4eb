//! The router through its inputs and outputs, with no node around it.

use super::{ImOutput, Router};
use crate::c2s::output::Completion;
use crate::c2s::Clients;
use crate::common::{ConnId, Now};
use crate::jid::Jid;
use crate::scram::Credentials;
use crate::settings::NodeConfig;
use crate::state::{Accounts, Record};
use crate::xml::{parse_fragment, Element};

struct Bench {
    router: Router,
    accounts: Accounts,
    clients: Clients,
    now: Now,
}

impl Bench {
    fn new() -> Bench {
        let mut accounts = Accounts::new();
        for user in ["alice", "bob"] {
            crate::state::apply_account(
                &mut accounts,
                &Record::AccountSet {
                    user: user.into(),
                    creds: Credentials::derive("pw", b"salt", 64),
                },
            );
        }
        let cfg = NodeConfig::new("localhost");
        Bench {
            router: Router::new(cfg.clone(), [7; 32]),
            accounts,
            clients: Clients::new(cfg, [5; 32]),
            now: Now {
                mono_ms: 1,
                unix_ms: 1_700_000_000_000,
            },
        }
    }

    fn bind(&mut self, conn: ConnId, jid: &str) -> Jid {
        let jid = Jid::parse(jid).unwrap();
        self.router.on_bound(conn, jid.clone());
        jid
    }

    /// A stanza from `conn` (bound as `from`), checked and routed.
    fn stanza(&mut self, conn: ConnId, from: &Jid, xml: &str) -> Vec<ImOutput> {
        let el: Element = parse_fragment(xml).unwrap();
        let mut ctx = self.router.ctx(&mut self.accounts, &self.clients, self.now);
        if let Some((el, to)) = ctx.check(conn, from, el) {
            ctx.route(conn, el, to);
        }
        self.router.take_output()
    }
}

fn sent_to(out: &[ImOutput], to: ConnId) -> String {
    out.iter()
        .filter_map(|o| match o {
            ImOutput::Send { conn, bytes } | ImOutput::Paced { conn, bytes, .. } if *conn == to => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_chat_message_goes_to_the_available_resource_of_the_recipient() {
    let mut b = Bench::new();
    let alice = b.bind(1, "alice@localhost/a");
    let bob = b.bind(2, "bob@localhost/b");
    b.stanza(2, &bob, "<presence xmlns='jabber:client'/>");
    let out = b.stanza(
        1,
        &alice,
        "<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>hi</body></message>",
    );
    let to_bob = sent_to(&out, 2);
    assert!(
        to_bob.contains("from='alice@localhost/a'") && to_bob.contains("<body>hi</body>"),
        "{to_bob}"
    );
    assert!(
        !out.iter().any(
            |o| matches!(o, ImOutput::Persist(r) if matches!(r.as_ref(), Record::OfflinePush { .. }))
        ),
        "not stored offline"
    );
}

#[test]
fn a_message_for_an_absent_account_is_stored_then_handed_out_paced_and_marked_when_written() {
    let mut b = Bench::new();
    let alice = b.bind(1, "alice@localhost/a");
    let out = b.stanza(
        1,
        &alice,
        "<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>later</body></message>",
    );
    assert!(out.iter().any(|o| matches!(o, ImOutput::Persist(r) if matches!(r.as_ref(), Record::OfflinePush { user, .. } if user == "bob"))));
    assert_eq!(
        b.accounts["bob"].offline.len(),
        1,
        "applied to the accounts"
    );
    let bob = b.bind(2, "bob@localhost/b");
    let out = b.stanza(2, &bob, "<presence xmlns='jabber:client'/>");
    let delivery = out.iter().find_map(|o| match o {
        ImOutput::Paced {
            conn: 2,
            bytes,
            done,
        } => Some((String::from_utf8_lossy(bytes).into_owned(), done.clone())),
        _ => None,
    });
    let (xml, done) = delivery.expect("a paced delivery");
    assert!(
        xml.contains("later") && xml.contains("urn:xmpp:delay"),
        "{xml}"
    );
    let Some(Completion::OfflineWritten { user, upto }) = done else {
        panic!("no completion");
    };
    assert_eq!(b.accounts["bob"].offline.len(), 1, "kept until written");
    b.router
        .ctx(&mut b.accounts, &b.clients, b.now)
        .offline_written(2, &user, upto);
    assert!(b.accounts["bob"].offline.is_empty());
}

#[test]
fn going_unavailable_leaves_rooms_before_the_presence_goes_out() {
    let mut b = Bench::new();
    let alice = b.bind(1, "alice@localhost/a");
    let _other = b.bind(2, "alice@localhost/b");
    b.stanza(
        2,
        &Jid::parse("alice@localhost/b").unwrap(),
        "<presence xmlns='jabber:client'/>",
    );
    b.stanza(1, &alice, "<presence xmlns='jabber:client'/>");
    let out = b.stanza(
        1,
        &alice,
        "<presence xmlns='jabber:client' type='unavailable'/>",
    );
    assert_eq!(out.first(), Some(&ImOutput::LeaveRooms { conn: 1 }));
    assert!(sent_to(&out, 2).contains("type='unavailable'"));
}

#[test]
fn a_stanza_claiming_another_sender_ends_the_stream() {
    let mut b = Bench::new();
    let alice = b.bind(1, "alice@localhost/a");
    let out = b.stanza(
        1,
        &alice,
        "<message xmlns='jabber:client' from='bob@localhost' to='alice@localhost'><body>x</body></message>",
    );
    assert_eq!(
        out,
        vec![ImOutput::StreamError {
            conn: 1,
            condition: "invalid-from",
            text: "the from address is not yours"
        }]
    );
}
