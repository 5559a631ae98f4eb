//! The c2s and IM state machines driven without sockets, on a virtual clock.

use base64::Engine;
use outpost::node::{AdminCommand, AdminReply, NodeConfig};
use outpost::sim::{between, SimNode};

fn node() -> SimNode {
    let mut cfg = NodeConfig::new("localhost");
    cfg.handshake_timeout_ms = 10_000;
    cfg.stanza_timeout_ms = 5_000;
    cfg.limits.max_stanza_bytes = 4096;
    let mut sim = SimNode::new(cfg, 7);
    sim.add_user("alice", "wonderland");
    sim.add_user("bob", "builder");
    sim
}

fn stream_error_of(out: &str) -> Option<&str> {
    let i = out.find("<stream:error><")? + "<stream:error><".len();
    let j = out[i..].find([' ', '/', '>'])? + i;
    Some(&out[i..j])
}

/// The session answers a ping.
fn assert_alive(sim: &mut SimNode, conn: u64) {
    assert!(sim.answers_ping(conn), "session {conn} is not served");
}

/// Sessions that fetched their roster (so they get pushes) and went online; output drained.
fn online_with_roster(sim: &mut SimNode, conns: &[u64]) {
    for &c in conns {
        sim.send(
            c,
            "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        );
        sim.send(c, "<presence/>");
    }
    for &c in conns {
        sim.take(c);
    }
}

/// Alice and Bob online with their rosters, Alice subscribed to Bob's
/// presence (approved); output drained.
fn alice_follows_bob(sim: &mut SimNode) -> (u64, u64) {
    let alice = sim.login("alice", "wonderland", "a");
    let bob = sim.login("bob", "builder", "b");
    online_with_roster(sim, &[alice, bob]);
    sim.send(alice, "<presence to='bob@localhost' type='subscribe'/>");
    sim.send(bob, "<presence to='alice@localhost' type='subscribed'/>");
    sim.take(alice);
    sim.take(bob);
    (alice, bob)
}

/// Connect, open the stream and negotiate TLS; ready for SASL.
fn tls_stream(sim: &mut SimNode) -> u64 {
    let c = sim.connect();
    let h = sim.header();
    sim.send(c, &h);
    sim.send(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    sim.send(c, &h);
    sim.take(c);
    c
}

#[test]
fn login_offers_starttls_then_scram_then_bind() {
    let mut sim = node();
    let c = sim.connect();
    let h = sim.header();
    sim.send(c, &h);
    let out = sim.take(c);
    assert!(
        out.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{out}"
    );
    assert!(!out.contains("mechanism"), "no SASL before TLS: {out}");
    sim.send(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert!(sim.take(c).contains("<proceed"));
    sim.send(c, &h);
    let out = sim.take(c);
    for m in ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        assert!(
            out.contains(&format!("<mechanism>{m}</mechanism>")),
            "{out}"
        );
    }
    sim.authenticate(c, "alice", "wonderland").unwrap();
    sim.send(c, &h);
    assert!(sim
        .take(c)
        .contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"));
    sim.send(
        c,
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    let out = sim.take(c);
    assert!(
        out.contains("<jid>alice@localhost/outpost-"),
        "server-generated resource: {out}"
    );
}

#[test]
fn sasl_before_tls_is_refused_and_plain_is_never_offered_in_clear() {
    let mut sim = node();
    let c = sim.connect();
    let h = sim.header();
    sim.send(c, &h);
    sim.take(c);
    sim.send(c, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdvbmRlcmxhbmQ=</auth>");
    assert!(sim.take(c).contains("<encryption-required/>"));

    // With TLS optional, SCRAM is offered in clear but PLAIN still is not.
    let mut cfg = NodeConfig::new("localhost");
    cfg.require_tls = false;
    let mut sim = SimNode::new(cfg, 1);
    sim.add_user("alice", "wonderland");
    let c = sim.connect();
    sim.send(c, &h);
    let out = sim.take(c);
    assert!(
        out.contains("SCRAM-SHA-256") && !out.contains("PLAIN"),
        "{out}"
    );
    sim.send(c, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdvbmRlcmxhbmQ=</auth>");
    assert!(sim.take(c).contains("<encryption-required/>"));
    sim.authenticate(c, "alice", "wonderland").unwrap();
}

#[test]
fn plain_over_tls_works_and_checks_the_password() {
    let mut sim = node();
    let c = tls_stream(&mut sim);
    // "\0alice\0wrong"
    sim.send(
        c,
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>",
    );
    assert_eq!(sim.take(c), "", "the failure is held back");
    sim.advance(250);
    assert!(sim.take(c).contains("<not-authorized/>"));
    sim.send(c, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdvbmRlcmxhbmQ=</auth>");
    assert!(sim.take(c).contains("<success"));
}

#[test]
fn wrong_passwords_get_growing_delays_then_the_stream_is_closed() {
    let mut sim = node();
    let c = tls_stream(&mut sim);
    let mut delays = Vec::new();
    for _ in 0..5 {
        let before = sim.now.mono_ms;
        let err = sim.authenticate(c, "alice", "guess").unwrap_err();
        assert!(err.contains("<not-authorized/>"), "{err}");
        delays.push(sim.now.mono_ms - before);
    }
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "delays grow: {delays:?}"
    );
    assert!(sim.is_closed(c));
    // Unknown users fail the same way, at the same step.
    let c = tls_stream(&mut sim);
    let err = sim.authenticate(c, "mallory", "x").unwrap_err();
    assert!(err.contains("<not-authorized/>"), "{err}");
}

#[test]
fn bad_input_gets_the_right_stream_error_and_other_sessions_carry_on() {
    let cases: &[(&str, &str)] = &[
        ("<message><body>x</message>", "not-well-formed"),
        ("<message><body>&xxe;</body></message>", "restricted-xml"),
        (
            "<!DOCTYPE foo [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>",
            "restricted-xml",
        ),
        ("<!-- hello -->", "restricted-xml"),
        ("<foo:bar/>", "invalid-namespace"),
        ("<x xmlns='urn:unknown'/>", "unsupported-stanza-type"),
    ];
    for (input, expected) in cases {
        let mut sim = node();
        let alice = sim.login("alice", "wonderland", "a");
        let bob = sim.login("bob", "builder", "b");
        sim.send(bob, "<presence/>");
        sim.send(alice, "<presence/>");
        sim.take(bob);
        sim.take(alice);
        sim.send(alice, input);
        let out = sim.take(alice);
        assert_eq!(stream_error_of(&out), Some(*expected), "{input}: {out}");
        assert!(out.ends_with("</stream:stream>"));
        assert!(sim.is_closed(alice));
        // Bob still has a working session.
        assert_alive(&mut sim, bob);
    }
}

#[test]
fn oversize_stanza_is_a_policy_violation() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    let body = "x".repeat(5000);
    sim.send(alice, &format!("<message to='bob@localhost'><body>{body}"));
    let out = sim.take(alice);
    assert_eq!(stream_error_of(&out), Some("policy-violation"), "{out}");
    assert!(sim.is_closed(alice));
}

#[test]
fn stream_header_errors() {
    let cases = [
        ("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>", "invalid-namespace"),
        ("<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>", "invalid-namespace"),
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.example' version='1.0'>", "host-unknown"),
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", "host-unknown"),
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>", "unsupported-version"),
    ];
    for (header, expected) in cases {
        let mut sim = node();
        let c = sim.connect();
        sim.send(c, header);
        let out = sim.take(c);
        assert!(
            out.starts_with("<?xml version='1.0'?><stream:stream"),
            "our header comes first: {out}"
        );
        assert_eq!(stream_error_of(&out), Some(expected), "{header}");
    }
}

#[test]
fn stanzas_before_authentication_are_not_authorized() {
    let mut sim = node();
    let c = tls_stream(&mut sim);
    sim.send(c, "<message to='bob@localhost'><body>hi</body></message>");
    assert_eq!(stream_error_of(&sim.take(c)), Some("not-authorized"));
}

#[test]
fn malformed_jid_in_a_stanza_is_bounced_with_jid_malformed() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        "<message to='bad@@jid' id='m1' type='chat'><body>x</body></message>",
    );
    let out = sim.take(alice);
    assert!(
        out.contains("type='error'") && out.contains("<jid-malformed"),
        "{out}"
    );
    assert!(!sim.is_closed(alice));
}

#[test]
fn silent_clients_are_timed_out() {
    let mut sim = node();
    let idle = sim.connect();
    sim.advance(9_999);
    assert!(!sim.is_closed(idle));
    sim.advance(1);
    assert_eq!(stream_error_of(&sim.take(idle)), Some("connection-timeout"));
    assert!(sim.is_closed(idle));

    // A bound client that leaves a stanza half-written.
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(alice, "<message to='bob@localhost'><bo");
    sim.advance(4_999);
    assert!(!sim.is_closed(alice));
    sim.advance(1);
    assert_eq!(
        stream_error_of(&sim.take(alice)),
        Some("connection-timeout")
    );

    // A bound client that is merely quiet stays, and gets whitespace keepalives.
    let bob = sim.login("bob", "builder", "b");
    sim.take(bob);
    sim.advance(60_000);
    assert_eq!(sim.take(bob), " ");
    sim.advance(3_600_000);
    assert!(!sim.is_closed(bob));
}

#[test]
fn resource_conflict_replaces_the_old_session() {
    let mut sim = node();
    let first = sim.login("alice", "wonderland", "phone");
    let second = sim.login("alice", "wonderland", "phone");
    assert_eq!(stream_error_of(&sim.take(first)), Some("conflict"));
    assert!(sim.is_closed(first));
    assert_alive(&mut sim, second);
}

#[test]
fn message_to_bare_jid_reaches_every_available_resource() {
    let mut sim = node();
    let b1 = sim.login("bob", "builder", "laptop");
    let b2 = sim.login("bob", "builder", "phone");
    let b3 = sim.login("bob", "builder", "away-negative");
    sim.send(b1, "<presence/>");
    sim.send(b2, "<presence><priority>5</priority></presence>");
    sim.send(b3, "<presence><priority>-1</priority></presence>");
    let alice = sim.login("alice", "wonderland", "a");
    for c in [b1, b2, b3] {
        sim.take(c);
    }
    sim.send(
        alice,
        "<message to='bob@localhost' type='chat' id='m1'><body>hello</body></message>",
    );
    for c in [b1, b2] {
        let out = sim.take(c);
        assert!(
            out.contains("from='alice@localhost/a'") && out.contains("<body>hello</body>"),
            "{out}"
        );
    }
    assert_eq!(
        sim.take(b3),
        "",
        "negative priority gets no bare-JID messages"
    );
    // A full JID reaches only that resource, even with negative priority.
    sim.send(
        alice,
        "<message to='bob@localhost/away-negative' type='chat'><body>direct</body></message>",
    );
    assert!(sim.take(b3).contains("direct"));
    assert_eq!(sim.take(b1), "");
}

#[test]
fn offline_messages_are_durable_and_delivered_with_delay_on_presence() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    let persisted = sim.persisted;
    sim.send(
        alice,
        "<message to='bob@localhost' type='chat' id='o1'><body>first</body></message>",
    );
    sim.send(
        alice,
        "<message to='bob@localhost/gone' type='chat' id='o2'><body>second</body></message>",
    );
    sim.send(alice, "<message to='bob@localhost' type='chat' id='o3'><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
    // Each message: stored for Bob, and in Alice's and Bob's archives.
    assert_eq!(
        sim.persisted,
        persisted + 2 * 3,
        "chat states alone are not stored"
    );
    sim.crash_and_restart();
    let bob = sim.login("bob", "builder", "b");
    assert_eq!(sim.take(bob), "", "nothing before initial presence");
    sim.send(bob, "<presence/>");
    let out = sim.take(bob);
    let first = out.find("first").expect("first delivered");
    let second = out.find("second").expect("second delivered");
    assert!(first < second, "in order: {out}");
    assert!(
        out.contains("<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2026-"),
        "{out}"
    );
    // Delivered once only.
    sim.disconnect(bob);
    let bob = sim.login("bob", "builder", "b");
    sim.send(bob, "<presence/>");
    assert!(!sim.take(bob).contains("first"));
}

#[test]
fn offline_storage_is_bounded() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.offline_limit = 3;
    let mut sim = SimNode::new(cfg, 3);
    sim.add_user("alice", "wonderland");
    sim.add_user("bob", "builder");
    let alice = sim.login("alice", "wonderland", "a");
    for i in 0..3 {
        sim.send(
            alice,
            &format!("<message to='bob@localhost' id='{i}'><body>{i}</body></message>"),
        );
    }
    assert_eq!(sim.take(alice), "");
    sim.send(
        alice,
        "<message to='bob@localhost' id='full'><body>too many</body></message>",
    );
    let out = sim.take(alice);
    assert!(out.contains("<resource-constraint"), "{out}");
    assert!(out.contains("message storage is full"), "{out}");
}

/// 50 messages of 20 KB to one offline account: the bytes are bounded per
/// account, whatever the count, and the sender hears why.
#[test]
fn offline_storage_is_bounded_in_bytes_per_account_and_per_node() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.offline_bytes_per_account = 100_000;
    cfg.offline_bytes_total = 150_000;
    let mut sim = SimNode::new(cfg, 3);
    sim.add_user("alice", "wonderland");
    sim.add_user("bob", "builder");
    sim.add_user("carol", "singer");
    let alice = sim.login("alice", "wonderland", "a");
    let big = "x".repeat(20_000);
    let mut accepted = 0;
    for i in 0..50 {
        sim.send(
            alice,
            &format!("<message to='bob@localhost' id='b{i}'><body>{big}</body></message>"),
        );
        let out = sim.take(alice);
        if out.is_empty() {
            accepted += 1;
        } else {
            assert!(out.contains("<resource-constraint"), "{out}");
            assert!(out.contains("bob is offline and their message storage is full"));
            assert!(out.contains(&format!("id='b{i}'")));
        }
    }
    assert_eq!(
        accepted, 4,
        "100 kB hold four 20 kB messages and their markup"
    );
    let bob_bytes = sim.node.state().accounts["bob"].offline.bytes();
    assert!(bob_bytes <= 100_000, "{bob_bytes}");
    // The node's total binds across accounts.
    let mut to_carol = 0;
    for i in 0..50 {
        sim.send(
            alice,
            &format!("<message to='carol@localhost' id='c{i}'><body>{big}</body></message>"),
        );
        let out = sim.take(alice);
        if out.is_empty() {
            to_carol += 1;
        } else {
            assert!(
                out.contains("this server's message storage is full"),
                "{out}"
            );
        }
    }
    assert_eq!(to_carol, 3);
    assert!(sim.node.state().offline_bytes() <= 150_000);
    // Delivery frees the space; the counts survive a restart.
    sim.crash_and_restart();
    assert_eq!(sim.node.state().accounts["bob"].offline.bytes(), bob_bytes);
    let bob = sim.login("bob", "builder", "b");
    sim.send(bob, "<presence/>");
    assert_eq!(sim.take(bob).matches("<body>").count(), 4);
    assert_eq!(sim.node.state().accounts["bob"].offline.bytes(), 0);
    let alice = sim.login("alice", "wonderland", "a2");
    sim.send(
        alice,
        &format!("<message to='carol@localhost' id='again'><body>{big}</body></message>"),
    );
    assert_eq!(sim.take(alice), "", "room again after bob's were delivered");
}

#[test]
fn messages_to_unknown_users_and_other_domains_bounce() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        "<message to='nobody@localhost' id='x'><body>x</body></message>",
    );
    assert!(sim.take(alice).contains("<service-unavailable"));
    sim.send(
        alice,
        "<message to='bob@elsewhere.example' id='y'><body>x</body></message>",
    );
    assert!(sim.take(alice).contains("<remote-server-not-found"));
}

#[test]
fn subscription_handshake_and_presence_between_two_users() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    let bob = sim.login("bob", "builder", "b");
    online_with_roster(&mut sim, &[alice, bob]);
    sim.send(alice, "<presence to='bob@localhost' type='subscribe'/>");
    let out = sim.take(alice);
    assert!(
        out.contains("jid='bob@localhost'") && out.contains("ask='subscribe'"),
        "roster push: {out}"
    );
    let out = sim.take(bob);
    assert!(
        out.contains("from='alice@localhost'") && out.contains("type='subscribe'"),
        "{out}"
    );
    sim.send(bob, "<presence to='alice@localhost' type='subscribed'/>");
    let out = sim.take(alice);
    assert!(out.contains("type='subscribed'"), "{out}");
    assert!(out.contains("subscription='to'"), "{out}");
    assert!(
        out.contains("from='bob@localhost/b'"),
        "bob's presence follows approval: {out}"
    );
    assert!(sim.take(bob).contains("subscription='from'"));
    // Bob changes status: alice sees it.
    sim.send(bob, "<presence><show>away</show></presence>");
    assert!(sim.take(alice).contains("<show>away</show>"));
    // Alice's presence does not reach bob (he is not subscribed to her).
    sim.send(alice, "<presence><show>dnd</show></presence>");
    assert!(!sim.take(bob).contains("dnd"));
    // Bob goes offline: alice is told.
    sim.disconnect(bob);
    let out = sim.take(alice);
    assert!(
        out.contains("from='bob@localhost/b'") && out.contains("type='unavailable'"),
        "{out}"
    );
    // Roster survives a restart, and a fresh login gets bob's presence by probe.
    sim.crash_and_restart();
    let bob = sim.login("bob", "builder", "b");
    sim.send(bob, "<presence><status>back</status></presence>");
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        "<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>",
    );
    let out = sim.take(alice);
    assert!(
        out.contains("<item jid='bob@localhost' subscription='to'/>"),
        "{out}"
    );
    sim.send(alice, "<presence/>");
    assert!(sim.take(alice).contains("<status>back</status>"));
}

#[test]
fn unsubscribing_withdraws_presence_on_both_sides() {
    let mut sim = node();
    let (alice, bob) = alice_follows_bob(&mut sim);
    sim.send(alice, "<presence to='bob@localhost' type='unsubscribe'/>");
    let out = sim.take(alice);
    assert!(out.contains("subscription='none'"), "{out}");
    assert!(
        out.contains("from='bob@localhost/b'") && out.contains("type='unavailable'"),
        "{out}"
    );
    let out = sim.take(bob);
    assert!(
        out.contains("type='unsubscribe'") && out.contains("subscription='none'"),
        "{out}"
    );
    sim.send(bob, "<presence><show>xa</show></presence>");
    assert!(!sim.take(alice).contains("xa"));
}

#[test]
fn pending_subscription_request_waits_for_login() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(alice, "<presence to='bob@localhost' type='subscribe'/>");
    sim.crash_and_restart();
    let bob = sim.login("bob", "builder", "b");
    sim.send(bob, "<presence/>");
    let out = sim.take(bob);
    assert!(
        out.contains("from='alice@localhost'") && out.contains("type='subscribe'"),
        "{out}"
    );
}

#[test]
fn roster_set_versioning_and_remove() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
    );
    let out = sim.take(alice);
    assert!(out.contains("ver='0'"), "{out}");
    sim.send(alice, "<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>");
    let out = sim.take(alice);
    assert!(
        out.contains("name='Bob'")
            && out.contains("<group>Friends</group>")
            && out.contains("ver='1'"),
        "push: {out}"
    );
    assert!(
        out.contains("id='s'") && out.contains("type='result'"),
        "{out}"
    );
    sim.send(
        alice,
        "<iq type='get' id='r'><query xmlns='jabber:iq:roster' ver='1'/></iq>",
    );
    let out = sim.take(alice);
    assert!(
        out.contains("type='result'") && !out.contains("<item"),
        "up to date: {out}"
    );
    sim.send(alice, "<iq type='set' id='d'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'><group>A</group><group>A</group></item></query></iq>");
    assert!(sim.take(alice).contains("<bad-request"));
    sim.send(alice, "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>");
    assert!(sim.take(alice).contains("subscription='remove'"));
    sim.send(alice, "<iq type='set' id='rm2'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>");
    assert!(sim.take(alice).contains("<item-not-found"));
}

#[test]
fn server_iq_disco_ping_and_unknown_payloads() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(alice, "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let out = sim.take(alice);
    assert!(
        out.contains("category='server'") && out.contains("var='urn:xmpp:ping'"),
        "{out}"
    );
    sim.send(alice, "<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    assert!(sim.take(alice).contains("type='result'"));
    sim.send(
        alice,
        "<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(sim.take(alice).contains("type='result'"));
    sim.send(
        alice,
        "<iq type='get' id='u' to='localhost'><query xmlns='urn:example:unknown'/></iq>",
    );
    assert!(sim.take(alice).contains("<service-unavailable"));
    sim.send(alice, "<iq type='get' id='n'/>");
    assert!(sim.take(alice).contains("<bad-request"));
    sim.send(
        alice,
        "<iq type='get' id='f' to='bob@localhost/none'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(sim.take(alice).contains("<service-unavailable"));
    let bob = sim.login("bob", "builder", "b");
    sim.send(
        alice,
        "<iq type='get' id='f2' to='bob@localhost/b'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(sim.take(bob).contains("from='alice@localhost/a'"));
}

/// Entity capabilities (XEP-0115): the stream features carry the server's
/// hash; the info at `node#ver` is the server's, and hashes to `ver` as
/// the client would compute it. Other nodes are not found (XEP-0030).
#[test]
fn the_server_announces_caps_and_answers_for_its_node_only() {
    let mut sim = node();
    let c = sim.connect();
    sim.send(c, &sim.header());
    let features = sim.take(c);
    let ver = between(&features, "ver='", "'")
        .expect("a caps hash")
        .to_string();
    assert!(
        features.contains(
            "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:x-outpost'"
        ),
        "{features}"
    );
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(alice, &format!("<iq type='get' id='c' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:x-outpost#{ver}'/></iq>"));
    let info = sim.take(alice);
    assert!(
        info.contains("type='result'") && info.contains(&format!("node='urn:x-outpost#{ver}'")),
        "{info}"
    );
    // The verification string from the answer, as a client builds it.
    let mut features: Vec<&str> = info
        .split("<feature var='")
        .skip(1)
        .filter_map(|f| f.split('\'').next())
        .collect();
    features.sort_unstable();
    let mut s = String::from("server/im//Outpost<");
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(digest),
        ver
    );
    for (id, query) in [
        (
            "x1",
            "<query xmlns='http://jabber.org/protocol/disco#info' node='urn:x-outpost#stale'/>",
        ),
        (
            "x2",
            "<query xmlns='http://jabber.org/protocol/disco#items' node='anything'/>",
        ),
    ] {
        sim.send(
            alice,
            &format!("<iq type='get' id='{id}' to='localhost'>{query}</iq>"),
        );
        let out = sim.take(alice);
        assert!(
            out.contains("type='error'") && out.contains("<item-not-found"),
            "{out}"
        );
    }
}

/// XEP-0077 for a logged-in user: the account shown, the password changed
/// durably (the old one fails, the new one works, after a crash too);
/// another account's name, an empty or huge password, removal, and a
/// second change within a minute are refused with the XEP's errors.
#[test]
fn a_user_changes_their_password_and_nothing_else() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        "<iq type='get' id='g' to='localhost'><query xmlns='jabber:iq:register'/></iq>",
    );
    let out = sim.take(alice);
    assert!(
        out.contains("<registered/>") && out.contains("<username>alice</username>"),
        "{out}"
    );
    let change = |id: &str, user: &str, password: &str| {
        format!("<iq type='set' id='{id}' to='localhost'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>")
    };
    let refused = |sim: &mut SimNode, stanza: &str, condition: &str| {
        sim.send(alice, stanza);
        let out = sim.take(alice);
        assert!(
            out.contains("type='error'") && out.contains(&format!("<{condition}")),
            "{condition}: {out}"
        );
    };
    refused(&mut sim, &change("c1", "bob", "stolen"), "not-allowed");
    refused(&mut sim, &change("c2", "alice", ""), "not-acceptable");
    refused(&mut sim, &change("c2b", "alice", "short"), "not-acceptable");
    refused(
        &mut sim,
        &change("c3", "alice", &"x".repeat(1025)),
        "not-acceptable",
    );
    refused(
        &mut sim,
        "<iq type='set' id='c4'><query xmlns='jabber:iq:register'><remove/></query></iq>",
        "not-allowed",
    );
    refused(&mut sim, "<iq type='set' id='c5'><query xmlns='jabber:iq:register'><username>alice</username></query></iq>", "bad-request");
    sim.send(alice, &change("c6", "Alice", "looking-glass"));
    assert!(sim.take(alice).contains("type='result'"));
    refused(
        &mut sim,
        &change("c7", "alice", "again-and-again"),
        "resource-constraint",
    );
    // Bob's account is untouched.
    sim.login("bob", "builder", "b");
    let old = tls_stream(&mut sim);
    assert!(sim.authenticate(old, "alice", "wonderland").is_err());
    sim.login("alice", "looking-glass", "b");
    sim.crash_and_restart();
    let old = tls_stream(&mut sim);
    assert!(sim.authenticate(old, "alice", "wonderland").is_err());
    let alice = sim.login("alice", "looking-glass", "c");
    sim.advance(60_000);
    sim.send(alice, &change("c8", "alice", "third-one"));
    assert!(sim.take(alice).contains("type='result'"));
    sim.login("alice", "third-one", "d");
}

/// XEP-0352: while alice's phone says it is inactive, bob's two resources
/// change their status ten times each. The phone gets nothing until it is
/// active, then the latest of each: a fifth of what her laptop, active
/// all along, read. A message takes the held presences along before it,
/// a subscription request is not held, and keepalives do not flush them.
#[test]
fn an_inactive_client_gets_only_the_latest_presence_of_each_contact() {
    let mut sim = node();
    sim.add_user("carol", "singer");
    let (phone, bob) = alice_follows_bob(&mut sim);
    let laptop = sim.login("alice", "wonderland", "laptop");
    online_with_roster(&mut sim, &[laptop]);
    let bob2 = sim.login("bob", "builder", "b2");
    online_with_roster(&mut sim, &[bob2]);
    sim.take(phone);
    sim.take(laptop);
    sim.send(phone, "<inactive xmlns='urn:xmpp:csi:0'/>");
    for i in 0..10 {
        sim.send(
            bob,
            &format!("<presence><show>away</show><status>b {i}</status></presence>"),
        );
        sim.send(
            bob2,
            &format!("<presence><status>b2 {i}</status></presence>"),
        );
    }
    sim.advance(120_000); // Whitespace keepalives meanwhile.
    assert_eq!(sim.take(phone).trim(), "", "held while inactive");
    let active_bytes = sim.take(laptop).trim().len();
    sim.send(phone, "<active xmlns='urn:xmpp:csi:0'/>");
    let latest = sim.take(phone);
    assert_eq!(latest.matches("<presence").count(), 2, "{latest}");
    assert!(
        latest.contains("<status>b 9</status>") && latest.contains("<status>b2 9</status>"),
        "{latest}"
    );
    assert!(
        latest.len() * 5 <= active_bytes,
        "{} bytes against {active_bytes}",
        latest.len()
    );
    // Inactive again: a message takes the held presence along, first.
    sim.send(phone, "<inactive xmlns='urn:xmpp:csi:0'/>");
    sim.send(bob, "<presence><status>back</status></presence>");
    sim.send(
        bob,
        "<message to='alice@localhost/a' type='chat'><body>hi</body></message>",
    );
    let out = sim.take(phone);
    let (presence, message) = (
        out.find("<status>back").unwrap(),
        out.find("<body>hi").unwrap(),
    );
    assert!(presence < message, "{out}");
    // A subscription request is not held.
    let carol = sim.login("carol", "singer", "c");
    sim.send(carol, "<presence to='alice@localhost' type='subscribe'/>");
    assert!(sim.take(phone).contains("type='subscribe'"));
}

/// XEP-0202: the server's time, in UTC.
#[test]
fn the_server_tells_its_time() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        "<iq type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>",
    );
    let out = sim.take(alice);
    assert!(
        out.contains("type='result'") && out.contains("<tzo>+00:00</tzo>"),
        "{out}"
    );
    let utc = between(&out, "<utc>", "</utc>").expect("a utc element");
    assert!(
        utc.len() == 24 && utc.ends_with('Z') && utc.as_bytes()[10] == b'T',
        "{utc}"
    );
}

#[test]
fn spoofed_from_is_a_stream_error() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        "<message from='bob@localhost/b' to='alice@localhost'><body>x</body></message>",
    );
    assert_eq!(stream_error_of(&sim.take(alice)), Some("invalid-from"));
}

#[test]
fn deleting_a_user_ends_their_sessions_and_login() {
    let mut sim = node();
    let bob = sim.login("bob", "builder", "b");
    assert_eq!(
        sim.admin(AdminCommand::UserDel { user: "bob".into() }),
        AdminReply::Done
    );
    assert_eq!(stream_error_of(&sim.take(bob)), Some("not-authorized"));
    let c = tls_stream(&mut sim);
    assert!(sim.authenticate(c, "bob", "builder").is_err());
    assert!(
        matches!(sim.admin(AdminCommand::UserList), AdminReply::Users(u) if u == vec!["alice".to_string()])
    );
}

/// A deleted user's contacts see them go offline, and a login of theirs
/// that was half-way through SCRAM is ended rather than completed.
#[test]
fn deleting_a_user_tells_their_contacts_and_ends_a_login_in_progress() {
    let mut sim = node();
    let (alice, _bob) = alice_follows_bob(&mut sim);
    // A second login of bob's stops after the server's first SCRAM message.
    let half = tls_stream(&mut sim);
    let client_first =
        base64::engine::general_purpose::STANDARD.encode("n,,n=bob,r=fyko+d2lbbFgONRv9qkxdawL");
    sim.send(half, &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{client_first}</auth>"));
    assert!(sim.take(half).contains("<challenge"));
    assert_eq!(
        sim.admin(AdminCommand::UserDel { user: "bob".into() }),
        AdminReply::Done
    );
    let out = sim.take(alice);
    assert!(
        out.contains("from='bob@localhost/b'") && out.contains("type='unavailable'"),
        "{out}"
    );
    assert_eq!(stream_error_of(&sim.take(half)), Some("not-authorized"));
    assert!(sim.is_closed(half));
}

#[test]
fn pipelined_auth_and_restart_in_one_read_are_handled() {
    let mut sim = node();
    let c = tls_stream(&mut sim);
    let h = sim.header();
    // "\0alice\0wonderland", then the restarted stream header in the same packet.
    sim.send(c, &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdvbmRlcmxhbmQ=</auth>{h}"));
    let out = sim.take(c);
    assert!(out.contains("<success") && out.contains("<bind"), "{out}");
}

#[test]
fn carbons_copy_conversations_to_the_other_resources() {
    let mut sim = node();
    let phone = sim.login("alice", "wonderland", "phone");
    let laptop = sim.login("alice", "wonderland", "laptop");
    let quiet = sim.login("alice", "wonderland", "no-carbons");
    for c in [phone, laptop, quiet] {
        sim.send(c, "<presence/>");
    }
    for c in [phone, laptop] {
        sim.send(
            c,
            "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
        );
        assert!(sim.take(c).contains("id='c'"));
    }
    let bob = sim.login("bob", "builder", "b");
    sim.take(quiet);
    sim.send(
        bob,
        "<message to='alice@localhost/phone' type='chat'><body>to the phone</body></message>",
    );
    assert!(sim.take(phone).contains("to the phone"));
    let copy = sim.take(laptop);
    assert!(copy.contains("<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'"), "{copy}");
    assert!(
        copy.contains("from='alice@localhost' to='alice@localhost/laptop'"),
        "{copy}"
    );
    assert_eq!(sim.take(quiet), "", "carbons are opt-in");
    sim.send(
        phone,
        "<message to='bob@localhost' type='chat'><body>from the phone</body></message>",
    );
    assert!(sim
        .take(laptop)
        .contains("<sent xmlns='urn:xmpp:carbons:2'>"));
    sim.send(phone, "<message to='bob@localhost' type='chat'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>");
    assert_eq!(sim.take(laptop), "", "private messages are not copied");
    sim.send(
        laptop,
        "<iq type='set' id='d'><disable xmlns='urn:xmpp:carbons:2'/></iq>",
    );
    sim.take(laptop);
    sim.send(
        bob,
        "<message to='alice@localhost/phone' type='chat'><body>again</body></message>",
    );
    assert_eq!(sim.take(laptop), "");
}

#[test]
fn limits_changed_while_running_apply_at_once() {
    // The console and the web page apply limit changes live (Event::Reconfigure).
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    let mut cfg = sim.node.config().clone();
    cfg.offline_limit = 1;
    sim.event(outpost::node::Event::Reconfigure {
        config: Box::new(cfg),
    });
    sim.send(
        alice,
        "<message to='bob@localhost' id='1'><body>one</body></message>",
    );
    assert_eq!(sim.take(alice), "");
    sim.send(
        alice,
        "<message to='bob@localhost' id='2'><body>two</body></message>",
    );
    assert!(sim.take(alice).contains("<resource-constraint"));
}

/// Subscription requests to users that do not exist used to add roster
/// items past the cap (10,000 of them; with long addresses the roster
/// could no longer be fetched). Every path that adds an item is bounded,
/// in items and in bytes.
#[test]
fn subscription_requests_cannot_grow_a_roster_past_its_bounds() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.roster_limit = 50;
    let mut sim = SimNode::new(cfg, 3);
    sim.add_user("alice", "wonderland");
    let alice = sim.login("alice", "wonderland", "a");
    let mut refused = 0;
    for i in 0..80 {
        sim.send(
            alice,
            &format!("<presence to='ghost{i}@localhost' type='subscribe' id='s{i}'/>"),
        );
        let out = sim.take(alice);
        if out.contains("<resource-constraint") {
            refused += 1;
            assert!(out.contains("your roster is full"), "{out}");
        }
    }
    assert_eq!(refused, 30);
    assert_eq!(sim.node.state().accounts["alice"].roster.len(), 50);
    // And in bytes: long addresses fill the bytes bound before the count.
    let mut cfg = NodeConfig::new("localhost");
    cfg.roster_bytes = 64 * 1024;
    let mut sim = SimNode::new(cfg, 4);
    sim.add_user("alice", "wonderland");
    let alice = sim.login("alice", "wonderland", "a");
    let long = "l".repeat(1000);
    for i in 0..200 {
        sim.send(
            alice,
            &format!("<presence to='{long}{i}@localhost' type='subscribe'/>"),
        );
        sim.take(alice);
    }
    let n = sim.node.state().accounts["alice"].roster.len();
    assert!((50..70).contains(&n), "{n} items of 1 kB in 64 kB");
    sim.send(
        alice,
        "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
    );
    let out = sim.take(alice);
    assert!(
        out.contains("id='r'") && out.len() < 100 * 1024,
        "{}",
        out.len()
    );
    // A roster set meets the same bound.
    sim.send(alice, &format!("<iq type='set' id='set'><query xmlns='jabber:iq:roster'><item jid='{long}new@localhost'/></query></iq>"));
    assert!(sim.take(alice).contains("<resource-constraint"));
}

/// The other side of a request: pending requests fill the contact's roster
/// only up to its bounds, and the requester hears why it stopped.
#[test]
fn requests_cannot_fill_the_contacts_roster_past_its_bounds() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.roster_limit = 3;
    let mut sim = SimNode::new(cfg, 5);
    sim.add_user("bob", "builder");
    for i in 0..5 {
        sim.add_user(&format!("u{i}"), "p");
    }
    for i in 0..5 {
        let c = sim.login(&format!("u{i}"), "p", "x");
        sim.send(c, "<presence to='bob@localhost' type='subscribe'/>");
        let out = sim.take(c);
        if i < 3 {
            assert!(!out.contains("error"), "{out}");
        } else {
            assert!(out.contains("cannot take more contact requests"), "{out}");
            let own = &sim.node.state().accounts[&format!("u{i}")].roster["bob@localhost"];
            assert!(!own.ask_out, "no request left pending forever");
        }
    }
    assert_eq!(sim.node.state().accounts["bob"].roster.len(), 3);
}

fn plain_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
}

/// TLS negotiated from `ip`; ready for SASL.
fn tls_stream_from(sim: &mut SimNode, ip: &str) -> u64 {
    let c = sim.connect_from(ip.parse().unwrap());
    let h = sim.header();
    sim.send(c, &h);
    sim.send(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    sim.send(c, &h);
    sim.take(c);
    c
}

/// Advance the clock in steps until `conn` has output; returns it and the time it took.
fn wait_for_output(sim: &mut SimNode, conn: u64, limit_ms: u64) -> (String, u64) {
    let start = sim.now.mono_ms;
    loop {
        let out = sim.take(conn);
        if !out.is_empty() || sim.now.mono_ms - start >= limit_ms {
            return (out, sim.now.mono_ms - start);
        }
        sim.advance(50);
    }
}

/// 2,000 PLAIN attempts pipelined in one write used to be answered one
/// after another at once (a success in 1.67 s). One attempt is evaluated
/// at a time, each next one only after the delay, and the stream is closed
/// after five: the right password at the end is never even read.
#[test]
fn pipelined_guesses_are_read_one_at_a_time_after_each_delay() {
    let mut sim = node();
    let c = tls_stream_from(&mut sim, "10.0.0.7");
    let mut burst: String = (0..2000)
        .map(|i| plain_auth("alice", &format!("guess{i}")))
        .collect();
    burst.push_str(&plain_auth("alice", "wonderland"));
    // The shell reads a connection only a few buffers ahead of the core;
    // the simulator hands it over in pieces the same way.
    for piece in burst.as_bytes().chunks(2048).take(4) {
        sim.send(c, std::str::from_utf8(piece).unwrap());
    }
    assert_eq!(sim.take(c), "", "no answer before the first delay");
    let mut failures = 0;
    let mut elapsed = 0;
    while !sim.is_closed(c) && elapsed < 120_000 {
        let (out, took) = wait_for_output(&mut sim, c, 60_000);
        elapsed += took;
        assert!(!out.contains("<success"), "{out}");
        failures += out.matches("<not-authorized/>").count();
    }
    assert_eq!(failures, 5);
    assert!(elapsed >= 250 + 500 + 1000 + 2000 + 4000, "{elapsed} ms");
}

/// Failures count across streams, per address and per account: while a
/// failure's delay runs, a second stream from the guessing address waits,
/// so does a guesser elsewhere on the same account; the account's owner
/// still gets in, within the cap.
#[test]
fn failures_count_across_streams_per_address_and_per_account() {
    let mut sim = node();
    let guesser = tls_stream_from(&mut sim, "10.0.0.7");
    for i in 0..3 {
        sim.send(guesser, &plain_auth("alice", &format!("g{i}")));
        let (out, _) = wait_for_output(&mut sim, guesser, 60_000);
        assert!(out.contains("<not-authorized/>"), "{out}");
    }
    // A fourth guess; its failure is told after 2 s. Meanwhile:
    sim.send(guesser, &plain_auth("alice", "g3"));
    // a new stream from the same address, on another account, waits;
    let second = tls_stream_from(&mut sim, "10.0.0.7");
    sim.send(second, &plain_auth("bob", "builder"));
    // another address guessing the same account waits as well.
    let elsewhere = tls_stream_from(&mut sim, "10.0.0.8");
    sim.send(elsewhere, &plain_auth("alice", "nope"));
    assert_eq!(sim.take(second), "");
    assert_eq!(sim.take(elsewhere), "");
    let (out, waited) = wait_for_output(&mut sim, second, 60_000);
    assert!(out.contains("<success"), "{out}");
    assert!(waited >= 2000, "same address waited {waited} ms");
    let (out, waited) = wait_for_output(&mut sim, elsewhere, 60_000);
    assert!(out.contains("<not-authorized/>"), "{out}");
    assert!(waited >= 2000, "same account waited {waited} ms");
    // The owner, from a third address, gets in: late, never locked out.
    let owner = tls_stream_from(&mut sim, "10.0.0.9");
    sim.send(owner, &plain_auth("alice", "wonderland"));
    let (out, waited) = wait_for_output(&mut sim, owner, 60_000);
    assert!(out.contains("<success"), "{out}");
    assert!(waited <= 16_000, "{waited} ms");
    // And her success clears the account's failures.
    let again = tls_stream_from(&mut sim, "10.0.0.10");
    sim.send(again, &plain_auth("alice", "wonderland"));
    assert!(sim.take(again).contains("<success"));
}

/// The numbers of the whole messages in `out` whose bodies begin `#N#`.
fn message_numbers(out: &str) -> Vec<usize> {
    out.split("<message ")
        .filter(|m| m.contains("</message>"))
        .filter_map(|m| m.split('#').nth(1)?.parse().ok())
        .collect()
}

/// 500 offline messages of 4 KB, and a client that reads slowly and is
/// killed halfway: before, everything was marked delivered when queued
/// (249 arrived, the rest were lost). Now only what was written counts,
/// so the next session gets the rest, each message exactly once whole.
#[test]
fn offline_messages_count_as_delivered_only_once_written() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.offline_bytes_per_account = 8 * 1024 * 1024;
    let mut sim = SimNode::new(cfg, 11);
    sim.add_user("alice", "wonderland");
    sim.add_user("bob", "builder");
    let alice = sim.login("alice", "wonderland", "a");
    let body = "o".repeat(4000);
    for i in 0..500 {
        sim.send(alice, &format!("<message to='bob@localhost' type='chat' id='m{i}'><body>#{i}# {body}</body></message>"));
    }
    assert_eq!(sim.take(alice), "");
    let bob = sim.login("bob", "builder", "phone");
    sim.send(bob, "<presence/>");
    let mut first = String::new();
    for _ in 0..10 {
        first += &sim.take_some(bob, 100_000);
    }
    // A second session of the account meanwhile is not handed the same ones.
    let laptop = sim.login("bob", "builder", "laptop");
    sim.send(laptop, "<presence/>");
    assert!(
        !sim.take(laptop).contains("<body>#"),
        "no message goes to two sessions"
    );
    sim.disconnect(bob);
    sim.disconnect(laptop);
    let bob = sim.login("bob", "builder", "phone");
    sim.send(bob, "<presence/>");
    let second = sim.take(bob);
    let mut got = message_numbers(&first);
    got.extend(message_numbers(&second));
    got.sort();
    assert_eq!(got, (0..500).collect::<Vec<_>>(), "each exactly once");
    assert!(
        message_numbers(&first).len() < 500,
        "the first session did not read them all"
    );
    assert!(sim.node.state().accounts["bob"].offline.is_empty());
}

/// Offline messages are sealed into blocks and written out like a room's
/// archive: memory keeps less than a block's worth of them. A session that
/// reads part, a crash, and the next session reads the rest from the
/// blocks: each exactly once, in order.
#[test]
fn offline_messages_live_in_blocks_and_each_comes_once_across_a_crash() {
    let mut sim = SimNode::new(NodeConfig::new("localhost"), 12);
    sim.add_user("alice", "wonderland");
    sim.add_user("bob", "builder");
    let alice = sim.login("alice", "wonderland", "a");
    let body = "o".repeat(1000);
    for i in 0..100 {
        sim.send(alice, &format!("<message to='bob@localhost' type='chat' id='m{i}'><body>#{i}# {body}</body></message>"));
    }
    let queue = &sim.node.state().accounts["bob"].offline;
    assert_eq!(queue.len(), 100);
    assert!(
        queue.archive().held_bytes() < 16 * 1024 && queue.bytes() > 100_000,
        "{} of {} bytes in memory",
        queue.archive().held_bytes(),
        queue.bytes()
    );
    let bob = sim.login("bob", "builder", "phone");
    sim.send(bob, "<presence/>");
    let first = message_numbers(&sim.take_some(bob, 30_000));
    assert!(!first.is_empty() && first.len() < 100, "{first:?}");
    sim.crash_and_restart();
    let bob = sim.login("bob", "builder", "phone");
    sim.send(bob, "<presence/>");
    let second = message_numbers(&sim.take(bob));
    let all: Vec<usize> = first.iter().chain(&second).copied().collect();
    assert_eq!(all, (0..100).collect::<Vec<_>>(), "each once, in order");
    assert!(sim.node.state().accounts["bob"].offline.is_empty());
}

/// A client that lets live traffic pile up unread is disconnected (it
/// used to be the shell's rule; now the core's, with paced deliveries
/// not counted against it), and everyone else carries on.
#[test]
fn a_client_that_does_not_read_is_disconnected_not_the_others() {
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    let bob = sim.login("bob", "builder", "b");
    sim.send(bob, "<presence/>");
    sim.take(bob);
    let body = "x".repeat(3000);
    for i in 0..600 {
        sim.send(
            alice,
            &format!("<message to='bob@localhost/b' id='{i}'><body>{body}</body></message>"),
        );
        sim.take(alice);
    }
    assert!(sim.is_closed(bob), "bob never read 1.8 MB");
    assert_alive(&mut sim, alice);
}

/// 1,000 idle connections from one address used to take every slot, and
/// nobody could log in. Unauthenticated connections are capped per address
/// and in all; the rest of the slots are kept for users who log in.
#[test]
fn one_address_cannot_take_every_slot() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.max_unauthenticated = 20;
    cfg.max_unauthenticated_per_address = 4;
    let mut sim = SimNode::new(cfg, 12);
    sim.add_user("alice", "wonderland");
    let mut refused = 0;
    for _ in 0..1000 {
        let c = sim.connect_from("10.0.0.66".parse().unwrap());
        if sim.is_closed(c) {
            refused += 1;
            let out = sim.take(c);
            assert_eq!(stream_error_of(&out), Some("policy-violation"), "{out}");
            assert!(out.contains("from your address"), "{out}");
        }
    }
    assert_eq!(refused, 996);
    // Someone else logs in as usual.
    let c = sim.connect_from("10.0.0.5".parse().unwrap());
    assert!(!sim.is_closed(c));
    sim.disconnect(c);
    let alice = sim.login("alice", "wonderland", "a");
    assert_alive(&mut sim, alice);
    // Many addresses together fill the unauthenticated slots, not the server:
    // authenticated users free theirs.
    for i in 0..30 {
        sim.connect_from(format!("10.1.0.{i}").parse().unwrap());
    }
    let late = sim.connect_from("10.2.0.1".parse().unwrap());
    assert!(sim.is_closed(late), "the unauthenticated slots are full");
    assert!(sim.take(late).contains("too many connections in progress"));
    // The idle ones are dropped at the (short) handshake deadline.
    sim.advance(NodeConfig::new("localhost").handshake_timeout_ms);
    let alice2 = sim.login("alice", "wonderland", "b");
    assert_alive(&mut sim, alice2);
}

/// Before authentication only small stanzas are buffered (990 connections
/// holding an unfinished 255 KB stanza used to pin 223 MB); after it, the
/// configured size applies; and all connections' unfinished input together
/// is bounded.
#[test]
fn unauthenticated_input_is_bounded_far_lower_and_all_input_in_total() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.limits.max_stanza_bytes = 256 * 1024;
    let mut sim = SimNode::new(cfg, 13);
    sim.add_user("alice", "wonderland");
    let c = tls_stream(&mut sim);
    sim.send(
        c,
        &format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}",
            "A".repeat(20_000)
        ),
    );
    assert_eq!(stream_error_of(&sim.take(c)), Some("policy-violation"));
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        &format!(
            "<message to='alice@localhost'><body>{}",
            "b".repeat(100_000)
        ),
    );
    assert!(
        !sim.is_closed(alice),
        "an authenticated user may send large stanzas"
    );
    sim.send(alice, "</body></message>");
    assert_alive(&mut sim, alice);

    let mut cfg = NodeConfig::new("localhost");
    cfg.limits.max_stanza_bytes = 256 * 1024;
    cfg.max_buffered_input = 500_000;
    let mut sim = SimNode::new(cfg, 14);
    for i in 0..4 {
        sim.add_user(&format!("u{i}"), "p");
    }
    let conns: Vec<u64> = (0..4)
        .map(|i| sim.login(&format!("u{i}"), "p", "x"))
        .collect();
    for &c in &conns {
        sim.send(
            c,
            &format!("<message to='u0@localhost'><body>{}", "b".repeat(200_000)),
        );
    }
    let closed: Vec<bool> = conns.iter().map(|c| sim.is_closed(*c)).collect();
    assert_eq!(closed, [false, false, true, true], "past 500 kB in all");
    assert!(sim.take(conns[2]).contains("too much unfinished input"));
    // Finishing a stanza gives its bytes back.
    sim.send(conns[0], "</body></message>");
    let c = sim.login("u2", "p", "y");
    sim.send(
        c,
        &format!(
            "<message to='u0@localhost'><body>{}</body></message>",
            "b".repeat(200_000)
        ),
    );
    assert!(!sim.is_closed(c));
}

/// XML 1.0 forbids most control characters, raw or as references, and
/// U+FFFE/U+FFFF. Before, `<body>x&#x1;y</body>` went into a room's history
/// and broke the stream of everyone who joined later, on every join.
#[test]
fn characters_xml_forbids_are_refused_at_input() {
    for body in [
        "x&#x1;y",
        "x&#1;y",
        "x\u{1}y",
        "x\u{FFFE}y",
        "x&#xFFFF;y",
        "x&#x0;y",
    ] {
        let mut sim = node();
        let alice = sim.login("alice", "wonderland", "a");
        sim.send(
            alice,
            &format!("<message to='bob@localhost' id='bad'><body>{body}</body></message>"),
        );
        let out = sim.take(alice);
        assert_eq!(
            stream_error_of(&out),
            Some("not-well-formed"),
            "{body:?}: {out}"
        );
        assert!(
            sim.node.state().accounts["bob"].offline.is_empty(),
            "{body:?} was stored"
        );
        // In an attribute too.
        let alice = sim.login("alice", "wonderland", "b");
        sim.send(
            alice,
            &format!("<message to='bob@localhost' id='{body}'><body>x</body></message>"),
        );
        assert_eq!(
            stream_error_of(&sim.take(alice)),
            Some("not-well-formed"),
            "{body:?}"
        );
    }
    // What XML allows still passes: tab, newline, the whole of Unicode's planes.
    let mut sim = node();
    let alice = sim.login("alice", "wonderland", "a");
    sim.send(
        alice,
        "<message to='bob@localhost' id='ok'><body>a\tb\nc &#x9; 😀 \u{E000}</body></message>",
    );
    assert_eq!(sim.take(alice), "");
    assert_eq!(sim.node.state().accounts["bob"].offline.len(), 1);
}

/// What an older release stored with such characters is repaired when the
/// log is read: the recipient gets U+FFFD and keeps its stream.
#[test]
fn stored_forbidden_characters_are_repaired_when_read() {
    use outpost::state::Record;
    let mut sim = node();
    for (i, xml) in [
        "<message from='x@localhost/a' to='bob@localhost' type='chat'><body>one\u{1}two</body></message>",
        "<message from='x@localhost/a' to='bob@localhost' type='chat'><body>\u{FFFF}three</body></message>",
    ]
    .iter()
    .enumerate()
    {
        let r = Record::OfflinePush {
            user: "bob".into(),
            stamp_ms: i as u64,
            xml: xml.to_string(),
        };
        sim.log.append(r.kind(), &r.encode()).unwrap();
    }
    sim.log.commit().unwrap();
    sim.crash_and_restart();
    let bob = sim.login("bob", "builder", "b");
    sim.send(bob, "<presence/>");
    let out = sim.take(bob);
    assert!(
        out.contains("one\u{FFFD}two") && out.contains("\u{FFFD}three"),
        "{out}"
    );
    assert!(!out.contains('\u{1}') && !out.contains('\u{FFFF}'));
    assert_alive(&mut sim, bob);
}

/// Streams logged in but never bound are not counted by the resource
/// limit; one account cannot hold more of them than it may have resources.
#[test]
fn one_account_cannot_hold_slots_with_streams_it_never_binds() {
    let mut sim = node();
    let max = NodeConfig::new("localhost").max_resources_per_user;
    for _ in 0..max {
        let c = tls_stream(&mut sim);
        sim.authenticate(c, "alice", "wonderland").unwrap();
    }
    let c = tls_stream(&mut sim);
    let err = sim.authenticate(c, "alice", "wonderland").unwrap_err();
    assert!(err.contains("<temporary-auth-failure/>"), "{err}");
    // Other accounts are not affected.
    let bob = sim.login("bob", "builder", "b");
    assert_alive(&mut sim, bob);
}

/// A client that sends its stream restart, bind, presence and a ping in one
/// packet after logging in (as pipelining clients do) gets every answer
/// without sending anything more.
#[test]
fn a_pipelined_bind_presence_and_ping_are_all_answered() {
    let mut sim = node();
    let c = tls_stream(&mut sim);
    // "\0alice\0wonderland"
    sim.send(c, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdvbmRlcmxhbmQ=</auth>");
    assert!(sim.take(c).contains("<success"));
    let header = sim.header();
    sim.send(
        c,
        &format!(
            "{header}<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>\
             <presence/><iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"
        ),
    );
    let out = sim.take(c);
    assert!(out.contains("alice@localhost/r</jid>"), "{out}");
    assert!(out.contains("<presence from='alice@localhost/r'"), "{out}");
    assert!(
        out.contains("id='p'") && out.contains("type='result'"),
        "{out}"
    );
}

/// XEP-0012: the server's uptime; a contact's last logout, kept across a
/// restart, for those who may see the contact's presence.
#[test]
fn last_activity_of_the_server_and_of_a_contact() {
    let mut sim = node();
    sim.add_user("carol", "singer");
    let (alice, bob) = alice_follows_bob(&mut sim);
    sim.advance(5_000);
    let last = |to: &str, id: &str| {
        format!("<iq type='get' id='{id}' to='{to}'><query xmlns='jabber:iq:last'/></iq>")
    };
    sim.send(alice, &last("localhost", "up"));
    let up = sim.take(alice);
    let seconds: u64 = between(&up, "seconds='", "'").unwrap().parse().unwrap();
    assert!(seconds >= 5, "{up}");
    sim.send(alice, &last("bob@localhost", "on"));
    assert!(sim
        .take(alice)
        .contains("<query xmlns='jabber:iq:last' seconds='0'/>"));
    sim.send(
        bob,
        "<presence type='unavailable'><status>gone fishing</status></presence>",
    );
    sim.advance(90_000);
    sim.send(alice, &last("bob@localhost", "off"));
    let off = sim.take(alice);
    assert!(off.contains("seconds='90'>gone fishing</query>"), "{off}");
    let carol = sim.login("carol", "singer", "c");
    sim.send(carol, &last("bob@localhost", "nosy"));
    assert!(sim.take(carol).contains("<forbidden"));
    sim.crash_and_restart();
    let alice = sim.login("alice", "wonderland", "a2");
    sim.advance(10_000);
    sim.send(alice, &last("bob@localhost", "later"));
    let later = sim.take(alice);
    assert!(later.contains("seconds='100'>gone fishing"), "{later}");
}

/// XEP-0077 registration: off unless the operator allows it; then over
/// TLS, with a password rule and one account per address per ten minutes.
#[test]
fn registration_is_off_by_default_and_limited_when_allowed() {
    let register = |user: &str, password: &str| {
        format!("<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>")
    };
    let mut sim = node();
    let c = tls_stream(&mut sim);
    sim.send(c, &register("mallory", "mallory-password"));
    assert!(sim.take(c).contains("<service-unavailable"));

    let mut cfg = NodeConfig::new("localhost");
    cfg.allow_registration = true;
    let mut sim = SimNode::new(cfg, 5);
    sim.add_user("alice", "wonderland");
    let c = sim.connect();
    let h = sim.header();
    sim.send(c, &h);
    assert!(
        !sim.take(c).contains("iq-register"),
        "not offered before TLS"
    );
    sim.send(c, &register("early", "early-password"));
    assert!(
        sim.take(c).contains("<not-authorized"),
        "no passwords in clear"
    );
    let c = sim.connect();
    sim.send(c, &h);
    sim.send(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    sim.take(c);
    sim.send(c, &h);
    assert!(sim
        .take(c)
        .contains("<register xmlns='http://jabber.org/features/iq-register'/>"));
    sim.send(
        c,
        "<iq type='get' id='form'><query xmlns='jabber:iq:register'/></iq>",
    );
    let form = sim.take(c);
    assert!(
        form.contains("<username/><password/>") && form.contains("at least 8"),
        "{form}"
    );
    sim.send(c, &register("dave", "short"));
    assert!(sim.take(c).contains("<not-acceptable"));
    sim.send(c, &register("alice", "another-password"));
    assert!(sim.take(c).contains("<conflict"));
    sim.send(c, &register("Dave", "dave-the-diver"));
    assert!(sim.take(c).contains("type='result' id='reg'"));
    sim.send(c, &register("eve", "eve-password"));
    let again = sim.take(c);
    assert!(
        again.contains("<resource-constraint") && again.contains("ten minutes"),
        "{again}"
    );
    sim.login("dave", "dave-the-diver", "d");
    let elsewhere = sim.connect_from("198.51.100.9".parse().unwrap());
    sim.send(elsewhere, &h);
    sim.send(
        elsewhere,
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    );
    sim.send(elsewhere, &h);
    sim.take(elsewhere);
    sim.send(elsewhere, &register("eve", "eve-password"));
    assert!(
        sim.take(elsewhere).contains("type='result'"),
        "another address may"
    );
    sim.crash_and_restart();
    sim.login("eve", "eve-password", "e");
    // A deleted account's name stays taken while rosters name it.
    let eve = sim.login("eve", "eve-password", "e2");
    sim.send(eve, "<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='dave@localhost'/></query></iq>");
    sim.take(eve);
    assert_eq!(
        sim.admin(AdminCommand::UserDel {
            user: "dave".into()
        }),
        AdminReply::Done
    );
    sim.advance(10 * 60_000);
    let later = sim.connect_from("203.0.113.5".parse().unwrap());
    sim.send(later, &h);
    sim.send(later, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    sim.send(later, &h);
    sim.take(later);
    sim.send(later, &register("dave", "not-the-same-dave"));
    let out = sim.take(later);
    assert!(
        out.contains("<conflict") && out.contains("was in use"),
        "{out}"
    );
}

/// RFC 6121 §3.4: a `subscribed` before any request pre-approves it; the
/// request is then approved at once, without asking; `unsubscribed`
/// withdraws it; it survives a restart and counts in the roster's bounds.
#[test]
fn a_pre_approved_subscription_request_is_approved_at_once() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.roster_limit = 3;
    let mut sim = SimNode::new(cfg, 8);
    for (u, p) in [
        ("alice", "wonderland"),
        ("bob", "builder"),
        ("carol", "singer"),
        ("dave", "d"),
    ] {
        sim.add_user(u, p);
    }
    let alice = sim.login("alice", "wonderland", "a");
    let bob = sim.login("bob", "builder", "b");
    online_with_roster(&mut sim, &[alice, bob]);
    let features = sim.authenticated("carol", "singer").1;
    assert!(
        features.contains("<sub xmlns='urn:xmpp:features:pre-approval'/>"),
        "{features}"
    );
    sim.send(alice, "<presence to='bob@localhost' type='subscribed'/>");
    let push = sim.take(alice);
    assert!(
        push.contains("jid='bob@localhost' subscription='none' approved='true'"),
        "{push}"
    );
    assert_eq!(sim.take(bob).trim(), "", "nothing for bob yet");
    sim.send(bob, "<presence to='alice@localhost' type='subscribe'/>");
    let to_bob = sim.take(bob);
    assert!(
        to_bob.contains("from='alice@localhost' to='bob@localhost' type='subscribed'")
            && to_bob.contains("from='alice@localhost/a'"),
        "approved at once, with alice's presence: {to_bob}"
    );
    let to_alice = sim.take(alice);
    assert!(
        !to_alice.contains("type='subscribe'"),
        "alice is not asked: {to_alice}"
    );
    assert!(
        to_alice.contains("jid='bob@localhost' subscription='from'")
            && !to_alice.contains("approved"),
        "{to_alice}"
    );
    // Withdrawn before it is used.
    sim.send(alice, "<presence to='carol@localhost' type='subscribed'/>");
    sim.send(
        alice,
        "<presence to='carol@localhost' type='unsubscribed'/>",
    );
    sim.take(alice);
    let carol = sim.login("carol", "singer", "c");
    online_with_roster(&mut sim, &[carol]);
    sim.send(carol, "<presence to='alice@localhost' type='subscribe'/>");
    assert!(sim
        .take(alice)
        .contains("from='carol@localhost' to='alice@localhost' type='subscribe'"));
    // Kept across a restart.
    sim.send(alice, "<presence to='dave@localhost' type='subscribed'/>");
    sim.take(alice);
    sim.crash_and_restart();
    let dave = sim.login("dave", "d", "d");
    online_with_roster(&mut sim, &[dave]);
    sim.send(dave, "<presence to='alice@localhost' type='subscribe'/>");
    assert!(sim
        .take(dave)
        .contains("from='alice@localhost' to='dave@localhost' type='subscribed'"));
    // Alice's roster is full (bob, carol, dave): one more is refused.
    let alice = sim.login("alice", "wonderland", "a2");
    sim.send(alice, "<presence to='eve@localhost' type='subscribed'/>");
    let full = sim.take(alice);
    assert!(
        full.contains("<resource-constraint") && full.contains("roster is full"),
        "{full}"
    );
}

#[test]
fn the_status_kept_with_a_last_logout_is_bounded() {
    let mut sim = node();
    let (alice, bob) = alice_follows_bob(&mut sim);
    let long = "z".repeat(3_000); // (the stanza stays under this node's 4 KiB)
    sim.send(
        bob,
        &format!("<presence type='unavailable'><status>{long}</status></presence>"),
    );
    sim.send(
        alice,
        "<iq type='get' id='l' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>",
    );
    let out = sim.take(alice);
    let status = between(&out, "seconds='0'>", "</query>").expect("a status");
    assert_eq!(status.len(), 1024, "cut to 1 KiB");
}
