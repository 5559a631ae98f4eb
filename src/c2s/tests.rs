//! The client streams machine through its inputs and outputs, with no
//! node around it.

use super::{ClientOutput, Clients, FromClient};
use crate::common::ConnId;
use crate::jid::Jid;
use crate::scram::Credentials;
use crate::settings::NodeConfig;
use crate::state::{Record, State};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
/// "\0alice\0wonderland"
const PLAIN_ALICE: &str = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdvbmRlcmxhbmQ=</auth>";

struct Bench {
    clients: Clients,
    state: State,
    now: u64,
}

impl Bench {
    fn new() -> Bench {
        let mut state = State::default();
        state.apply(&Record::AccountSet {
            user: "alice".into(),
            creds: Credentials::derive("wonderland", b"salt", 64),
        });
        Bench {
            clients: Clients::new(NodeConfig::new("localhost"), [3; 32]),
            state,
            now: 1_000,
        }
    }

    /// Feed `conn` bytes; what the router hears, and what the shell is sent.
    fn input(&mut self, conn: ConnId, bytes: &str) -> (Vec<FromClient>, String) {
        self.clients.data(self.now, conn, bytes.as_bytes());
        self.run()
    }

    fn run(&mut self) -> (Vec<FromClient>, String) {
        let mut heard = Vec::new();
        while let Some(f) = self.clients.poll(self.now, &self.state) {
            heard.push(f);
        }
        let mut sent = String::new();
        for o in self.clients.take_output() {
            match o {
                ClientOutput::Send { bytes, .. } => {
                    sent.push_str(&String::from_utf8_lossy(&bytes.to_vec()))
                }
                ClientOutput::StartTls { .. } => sent.push_str("[starttls]"),
                ClientOutput::Close { .. } => sent.push_str("[close]"),
            }
        }
        (heard, sent)
    }

    /// A connection taken as far as a bound resource.
    fn bound(&mut self, conn: ConnId, resource: &str) -> Jid {
        self.clients
            .accepted(self.now, conn, "192.0.2.1".parse().unwrap());
        self.input(conn, HEADER);
        let (_, sent) = self.input(conn, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert!(sent.ends_with("[starttls]"), "{sent}");
        self.clients.tls_established(conn);
        self.input(conn, HEADER);
        let (_, sent) = self.input(conn, PLAIN_ALICE);
        assert!(sent.contains("<success"), "{sent}");
        let bind = format!("{HEADER}<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>");
        let (heard, sent) = self.input(conn, &bind);
        let jid = Jid::parse(&format!("alice@localhost/{resource}")).unwrap();
        assert!(sent.contains(&format!("<jid>{jid}</jid>")), "{sent}");
        assert_eq!(
            heard,
            vec![FromClient::Bound {
                conn,
                jid: jid.clone()
            }]
        );
        jid
    }
}

#[test]
fn the_router_hears_of_a_bound_session_then_its_stanzas_in_order() {
    let mut b = Bench::new();
    let jid = b.bound(1, "desk");
    let (heard, sent) = b.input(
        1,
        "<presence/><message to='bob@localhost'><body>hi</body></message>",
    );
    assert_eq!(sent, "", "stanzas are the router's to answer");
    let names: Vec<(&Jid, &str)> = heard
        .iter()
        .map(|f| match f {
            FromClient::Stanza { jid, el, .. } => (jid, el.name.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, vec![(&jid, "presence"), (&jid, "message")]);
}

#[test]
fn a_stanza_before_binding_ends_the_stream_and_the_router_hears_of_it() {
    let mut b = Bench::new();
    b.clients.accepted(b.now, 1, "192.0.2.1".parse().unwrap());
    b.input(1, HEADER);
    let (heard, sent) = b.input(1, "<message to='bob@localhost'/>");
    assert!(
        sent.contains("<not-authorized") && sent.ends_with("[close]"),
        "{sent}"
    );
    assert_eq!(
        heard,
        vec![FromClient::Ended {
            conn: 1,
            jid: None,
            undelivered: vec![]
        }]
    );
    assert_eq!(b.clients.session_count(), 0);
}

#[test]
fn a_bound_session_that_goes_away_is_reported_with_its_jid() {
    let mut b = Bench::new();
    let jid = b.bound(1, "desk");
    b.clients.disconnected(b.now, 1);
    let (heard, _) = b.run();
    assert_eq!(
        heard,
        vec![FromClient::Ended {
            conn: 1,
            jid: Some(jid),
            undelivered: vec![]
        }]
    );
    // Nothing sent to it goes anywhere now.
    b.clients.send(1, b"<message/>".to_vec());
    assert_eq!(b.run(), (vec![], String::new()));
}

#[test]
fn a_client_that_does_not_read_is_closed_and_its_session_ends() {
    let mut b = Bench::new();
    let jid = b.bound(1, "desk");
    // Nothing is reported written: the window fills, then the backlog.
    for _ in 0..40 {
        b.clients.send(1, vec![b'x'; 64 * 1024]);
    }
    let (heard, sent) = b.run();
    assert!(sent.ends_with("[close]"));
    assert_eq!(
        heard,
        vec![FromClient::Ended {
            conn: 1,
            jid: Some(jid),
            undelivered: vec![]
        }]
    );
}

#[test]
fn deleting_an_account_ends_every_session_of_it() {
    let mut b = Bench::new();
    b.bound(1, "desk");
    b.bound(2, "phone");
    b.clients
        .close_account("alice", "not-authorized", "the account was deleted");
    let (heard, _) = b.run();
    let ended: Vec<ConnId> = heard
        .iter()
        .filter_map(|f| match f {
            FromClient::Ended {
                conn, jid: Some(_), ..
            } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 2);
    assert_eq!(b.clients.session_count(), 0);
}

/// Plaintext sent after `<starttls/>` in the same packet (say, appended by
/// someone on the path) is dropped, never read as if it came over TLS.
#[test]
fn plaintext_after_starttls_in_the_same_read_is_never_read_after_tls() {
    let mut b = Bench::new();
    b.clients.accepted(b.now, 1, "192.0.2.1".parse().unwrap());
    b.input(1, HEADER);
    let injected =
        format!("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>{HEADER}{PLAIN_ALICE}");
    let (_, sent) = b.input(1, &injected);
    assert!(sent.ends_with("[starttls]"), "{sent}");
    b.clients.tls_established(1);
    // The client's first bytes over TLS: a new stream header, nothing else.
    let (heard, sent) = b.input(1, HEADER);
    assert!(heard.is_empty(), "{heard:?}");
    assert!(
        !sent.contains("<success"),
        "the injected <auth> was not read: {sent}"
    );
    assert!(sent.contains("<stream:features"), "a fresh stream: {sent}");
    // And the client can still log in.
    let (_, sent) = b.input(1, PLAIN_ALICE);
    assert!(sent.contains("<success"), "{sent}");
}

/// A stream error reaches the client even when its output window is full
/// (what the window holds back is dropped with the session).
#[test]
fn a_stream_error_goes_out_past_a_full_output_window() {
    let mut b = Bench::new();
    b.bound(1, "desk");
    // 256 KiB the client has not read: more than the window lets out.
    for _ in 0..64 {
        b.clients.send(1, vec![b' '; 4096]);
    }
    b.run();
    b.clients
        .close_account("alice", "not-authorized", "the account was deleted");
    let (_, sent) = b.run();
    assert!(
        sent.contains("<not-authorized") && sent.ends_with("[close]"),
        "{}",
        &sent[sent.len().saturating_sub(300)..]
    );
}
