//! XEP-0198 resumption across a graceful restart of the node: a session
//! that can be resumed is kept in the log by the stop and waits for its
//! client after the start, in its rooms and with its presence, its
//! timeout counting the time the node was stopped; one not resumed in
//! time ends into offline storage; a crash keeps none of it.

use outpost::c2s::sm::stanzas;
use outpost::node::NodeConfig;
use outpost::sim::{between, SimNode};

const SM: &str = "urn:xmpp:sm:3";
const MUC: &str = "http://jabber.org/protocol/muc";

fn node() -> SimNode {
    let mut sim = SimNode::new(NodeConfig::new("localhost"), 5);
    for user in ["alice", "bob", "carol"] {
        sim.add_user(user, "pw");
    }
    sim
}

/// Subscribe `a` and `b` to each other (both logged in).
fn befriend(sim: &mut SimNode, (a, a_name): (u64, &str), (b, b_name): (u64, &str)) {
    for (c, other) in [(a, b_name), (b, a_name)] {
        sim.send(
            c,
            "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        );
        sim.send(
            c,
            &format!("<presence to='{other}@localhost' type='subscribe'/>"),
        );
    }
    for (c, other) in [(a, b_name), (b, a_name)] {
        sim.send(
            c,
            &format!("<presence to='{other}@localhost' type='subscribed'/>"),
        );
    }
}

/// Bob's phone with resumption enabled: (connection, resumption id).
fn resumable(sim: &mut SimNode, user: &str, resource: &str) -> (u64, String) {
    let conn = sim.login(user, "pw", resource);
    sim.send(conn, &format!("<enable xmlns='{SM}' resume='true'/>"));
    let enabled = sim.take(conn);
    let id = between(&enabled, "id='", "'")
        .unwrap_or_else(|| panic!("{enabled}"))
        .to_string();
    (conn, id)
}

/// What `conn` reads now, acknowledged in full; `handled` counts it.
fn read_acking(sim: &mut SimNode, conn: u64, handled: &mut u32) -> String {
    let out = sim.take(conn);
    *handled += stanzas(out.as_bytes()).len() as u32;
    sim.send(conn, &format!("<a xmlns='{SM}' h='{handled}'/>"));
    out
}

/// Everything `conn` is sent, acknowledged as it comes (output waits for
/// acknowledgements past 512 KiB).
fn drain(sim: &mut SimNode, conn: u64, handled: &mut u32) -> String {
    let mut all = String::new();
    loop {
        let out = read_acking(sim, conn, handled);
        if out.is_empty() {
            return all;
        }
        all += &out;
    }
}

fn chat(sim: &mut SimNode, from: u64, to: &str, body: &str) {
    sim.send(
        from,
        &format!("<message to='{to}@localhost' type='chat'><body>{body}</body></message>"),
    );
}

fn bodies(out: &str) -> Vec<String> {
    out.split("<body>")
        .skip(1)
        .filter_map(|b| b.split("</body>").next().map(str::to_string))
        .collect()
}

/// Resume `id` on a new connection having handled `h`: what it was sent.
fn resume(sim: &mut SimNode, user: &str, id: &str, h: u32) -> (u64, String) {
    let (conn, _) = sim.authenticated(user, "pw");
    sim.send(
        conn,
        &format!("<resume xmlns='{SM}' previd='{id}' h='{h}'/>"),
    );
    let out = sim.take(conn);
    (conn, out)
}

#[test]
fn a_session_is_resumed_after_a_graceful_restart_with_everything_it_missed_once_in_order() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "laptop");
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    befriend(&mut sim, (alice, "alice"), (bob, "bob"));
    sim.send(alice, "<presence/>");
    sim.send(bob, "<presence><status>on the road</status></presence>");
    sim.send(
        bob,
        "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
    );
    let mut handled = 0;
    read_acking(&mut sim, bob, &mut handled);
    sim.take(alice);
    chat(&mut sim, alice, "bob", "acked");
    read_acking(&mut sim, bob, &mut handled);
    chat(&mut sim, alice, "bob", "read-not-acked");
    let unacked = sim.take(bob);
    assert_eq!(bodies(&unacked), ["read-not-acked"]);
    sim.stop_and_restart(20_000);
    // Alice comes back first: Bob is there, as he was.
    let alice = sim.login("alice", "pw", "laptop");
    sim.send(alice, "<presence/>");
    let seen = sim.take(alice);
    assert!(
        seen.contains("from='bob@localhost/phone'") && seen.contains("on the road"),
        "{seen}"
    );
    chat(&mut sim, alice, "bob", "after-restart");
    let (phone, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.starts_with(&format!("<resumed xmlns='{SM}'")), "{out}");
    assert_eq!(bodies(&out), ["read-not-acked", "after-restart"], "{out}");
    // He heard Alice leave with the old run and come back with the new.
    let unavailable = out.find("type='unavailable'").expect("alice left");
    let back = out
        .rfind("from='alice@localhost/laptop'")
        .expect("alice back");
    assert!(unavailable < back, "{out}");
    // The session goes on: his messages, his carbons.
    sim.send(
        phone,
        "<message to='alice@localhost/laptop' type='chat'><body>hi again</body></message>",
    );
    assert_eq!(bodies(&sim.take(alice)), ["hi again"]);
    let desk = sim.login("bob", "pw", "desk");
    sim.send(desk, "<presence/>");
    sim.take(phone);
    sim.send(
        alice,
        "<message to='bob@localhost/desk' type='chat'><body>to the desk</body></message>",
    );
    let carbon = sim.take(phone);
    assert!(
        carbon.contains("<received xmlns='urn:xmpp:carbons:2'"),
        "{carbon}"
    );
    assert_eq!(bodies(&carbon), ["to the desk"]);
    chat(&mut sim, alice, "bob", "later");
    assert_eq!(bodies(&sim.take(phone)), ["later"]);
}

#[test]
fn a_kept_session_is_back_in_its_lasting_rooms_and_told_its_temporary_ones_ended() {
    let mut sim = node();
    let carol = sim.login("carol", "pw", "desk");
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    let lasting = "ops@conference.localhost";
    let temporary = "tmp@conference.localhost";
    sim.send(
        carol,
        &format!("<presence to='{lasting}/Carol'><x xmlns='{MUC}'/></presence>"),
    );
    sim.send(carol, &format!("<iq type='set' id='cfg' to='{lasting}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='muc#roomconfig_roomsecret'><value>s3cret</value></field><field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field></x></query></iq>"));
    sim.send(
        carol,
        &format!("<presence to='{temporary}/Carol'><x xmlns='{MUC}'/></presence>"),
    );
    sim.send(carol, &format!("<iq type='set' id='i' to='{temporary}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    let configured = sim.take(carol);
    assert!(!configured.contains("type='error'"), "{configured}");
    sim.send(bob, "<presence/>");
    sim.send(bob, &format!("<presence to='{lasting}/Bob'><x xmlns='{MUC}'><password>s3cret</password></x></presence>"));
    sim.send(
        bob,
        &format!("<presence to='{temporary}/Bob'><x xmlns='{MUC}'/></presence>"),
    );
    let mut handled = 0;
    let joined = read_acking(&mut sim, bob, &mut handled);
    assert!(!joined.contains("type='error'"), "{joined}");
    sim.send(
        carol,
        &format!("<message to='{lasting}' type='groupchat'><body>before</body></message>"),
    );
    read_acking(&mut sim, bob, &mut handled);
    sim.stop_and_restart(5_000);
    let carol = sim.login("carol", "pw", "desk");
    sim.send(carol, &format!("<presence to='{lasting}/Carol'><x xmlns='{MUC}'><password>s3cret</password><history maxstanzas='0'/></x></presence>"));
    let rejoined = sim.take(carol);
    assert!(
        rejoined.contains(&format!("from='{lasting}/Bob'")),
        "Bob is in the room: {rejoined}"
    );
    sim.send(
        carol,
        &format!("<message to='{lasting}' type='groupchat'><body>after</body></message>"),
    );
    let (phone, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.starts_with(&format!("<resumed xmlns='{SM}'")), "{out}");
    assert_eq!(
        bodies(&out),
        ["after"],
        "no history again, nothing twice: {out}"
    );
    assert!(
        out.contains(&format!("from='{temporary}/Bob'")) && out.contains("code='332'"),
        "told the temporary room ended: {out}"
    );
    assert!(
        !out.contains(&format!("from='{lasting}/Bob'")),
        "no self-presence again for the room it never left: {out}"
    );
    sim.send(
        phone,
        &format!("<message to='{lasting}' type='groupchat'><body>still here</body></message>"),
    );
    assert!(sim.take(carol).contains("still here"));
}

#[test]
fn the_restart_counts_against_the_timeout_and_a_late_session_ends_into_offline_storage() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "laptop");
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    befriend(&mut sim, (alice, "alice"), (bob, "bob"));
    sim.send(alice, "<presence/>");
    sim.send(bob, "<presence/>");
    let mut handled = 0;
    read_acking(&mut sim, bob, &mut handled);
    chat(&mut sim, alice, "bob", "one");
    sim.disconnect(bob);
    chat(&mut sim, alice, "bob", "two");
    // 100 s waiting, 150 s stopped: 50 s of the 300 are left.
    sim.advance(100_000);
    sim.stop_and_restart(150_000);
    let alice = sim.login("alice", "pw", "laptop");
    sim.send(alice, "<presence/>");
    sim.advance(49_000);
    assert!(!sim.take(alice).contains("type='unavailable'"));
    sim.advance(2_000);
    let gone = sim.take(alice);
    assert!(
        gone.contains("from='bob@localhost/phone'") && gone.contains("type='unavailable'"),
        "{gone}"
    );
    let (late, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.contains("<item-not-found"), "{out}");
    sim.send(
        late,
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    sim.send(late, "<presence/>");
    assert_eq!(bodies(&sim.take(late)), ["one", "two"]);
}

#[test]
fn a_session_whose_time_ran_out_while_the_node_was_stopped_ends_at_the_start() {
    let mut sim = node();
    let (bob, _) = resumable(&mut sim, "bob", "phone");
    let alice = sim.login("alice", "pw", "laptop");
    sim.send(bob, "<presence/>");
    sim.take(bob);
    chat(&mut sim, alice, "bob", "unread");
    sim.stop_and_restart(301_000);
    let again = sim.login("bob", "pw", "phone");
    sim.send(again, "<presence/>");
    assert_eq!(bodies(&sim.take(again)), ["unread"]);
}

#[test]
fn a_crash_keeps_no_session_and_a_resumption_is_refused_cleanly() {
    let mut sim = node();
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    let alice = sim.login("alice", "pw", "laptop");
    sim.send(bob, "<presence/>");
    let mut handled = 0;
    read_acking(&mut sim, bob, &mut handled);
    chat(&mut sim, alice, "bob", "delivered-live");
    sim.crash_and_restart();
    let (late, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.contains("<item-not-found"), "{out}");
    sim.send(
        late,
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    sim.send(
        late,
        "<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>",
    );
    assert_eq!(
        bodies(&sim.take(late)),
        ["delivered-live"],
        "what a crash took from the session is in the archive"
    );
}

#[test]
fn a_second_restart_does_not_bring_back_a_session_the_first_one_ended() {
    let mut sim = node();
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    sim.send(bob, "<presence/>");
    let mut handled = 0;
    read_acking(&mut sim, bob, &mut handled);
    sim.stop_and_restart(1_000);
    sim.advance(301_000);
    sim.stop_and_restart(1_000);
    let (_, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.contains("<item-not-found"), "{out}");
    // And one resumed after the first restart is kept by the second.
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    sim.send(bob, "<presence/>");
    let mut handled = 0;
    read_acking(&mut sim, bob, &mut handled);
    sim.stop_and_restart(1_000);
    let (phone, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.starts_with("<resumed"), "{out}");
    sim.stop_and_restart(1_000);
    let (_, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.starts_with("<resumed"), "kept again: {out}");
    let _ = phone;
}

#[test]
fn many_kept_sessions_in_one_room_all_come_back_with_what_they_were_owed() {
    let mut sim = node();
    let room = "crowd@conference.localhost";
    let status = "s".repeat(15 * 1024);
    let mut phones = Vec::new();
    for i in 0..40 {
        let user = format!("user{i}");
        sim.add_user(&user, "pw");
        let (conn, id) = resumable(&mut sim, &user, "phone");
        sim.send(conn, "<presence/>");
        sim.send(conn, &format!("<presence to='{room}/U{i}'><status>{status}</status><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"));
        if i == 0 {
            sim.send(conn, &format!("<iq type='set' id='cfg' to='{room}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"));
        }
        phones.push((user, conn, id, 0u32));
    }
    for (_, conn, _, handled) in phones.iter_mut() {
        drain(&mut sim, *conn, handled);
    }
    let alice = sim.login("alice", "pw", "laptop");
    chat(&mut sim, alice, "user0", "keep-me");
    sim.take(phones[0].1);
    sim.stop_and_restart(1_000);
    for (i, (user, _, id, handled)) in phones.iter().enumerate() {
        let (conn, out) = resume(&mut sim, user, id, *handled);
        assert!(
            out.starts_with("<resumed"),
            "{user}: {}",
            &out[..out.len().min(300)]
        );
        let mut h = *handled;
        let all = out + &drain(&mut sim, conn, &mut h);
        if i == 0 {
            assert_eq!(bodies(&all), ["keep-me"]);
        }
    }
}

#[test]
fn a_kept_session_hears_who_left_with_the_restart_and_of_a_room_it_could_not_get_back_into() {
    let mut sim = node();
    let carol = sim.login("carol", "pw", "desk");
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    let rooms = ["one@conference.localhost", "two@conference.localhost"];
    for room in rooms {
        sim.send(
            carol,
            &format!("<presence to='{room}/Carol'><x xmlns='{MUC}'/></presence>"),
        );
        sim.send(carol, &format!("<iq type='set' id='cfg' to='{room}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"));
        sim.send(
            bob,
            &format!("<presence to='{room}/Bob'><x xmlns='{MUC}'/></presence>"),
        );
    }
    sim.take(carol);
    let mut handled = 0;
    read_acking(&mut sim, bob, &mut handled);
    // One room a session now, from this restart on.
    sim.cfg.muc.rooms_per_session = 1;
    sim.stop_and_restart(1_000);
    let (_, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.starts_with("<resumed"), "{out}");
    for room in rooms {
        assert!(
            out.contains(&format!("<presence type='unavailable' from='{room}/Carol'")),
            "Carol left with the restart: {out}"
        );
    }
    let out_of_two = format!("from='{}/Bob'", rooms[1]);
    let told = out.split("<presence").find(|p| p.contains(&out_of_two));
    assert!(
        told.is_some_and(|p| p.contains("type='unavailable'") && p.contains("code='110'")),
        "told it is out of the second room: {out}"
    );
}

#[test]
fn offline_messages_a_session_is_sent_again_on_resuming_come_once() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "laptop");
    for i in 0..3 {
        chat(&mut sim, alice, "bob", &format!("off{i}"));
    }
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    sim.send(bob, "<presence/>");
    let got = sim.take(bob);
    assert_eq!(bodies(&got), ["off0", "off1", "off2"]);
    sim.disconnect(bob);
    let (phone, out) = resume(&mut sim, "bob", &id, 0);
    let mut all = out;
    all += &sim.take(phone);
    assert_eq!(bodies(&all), ["off0", "off1", "off2"], "{all}");
    // Acknowledged: stored no more.
    sim.send(
        phone,
        &format!("<a xmlns='{SM}' h='{}'/>", stanzas(all.as_bytes()).len()),
    );
    sim.disconnect(phone);
    sim.advance(301_000);
    let again = sim.login("bob", "pw", "desk");
    sim.send(again, "<presence/>");
    assert!(bodies(&sim.take(again)).is_empty());
}

#[test]
fn a_kept_session_is_asked_its_capabilities_again_and_gets_pep_notifications() {
    use base64::Engine;
    let feature = "urn:xmpp:avatar:metadata+notify";
    let s = format!("client/phone//P<{feature}<");
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    let ver = base64::engine::general_purpose::STANDARD.encode(digest);
    let disco =
        format!("<identity category='client' type='phone' name='P'/><feature var='{feature}'/>");
    let mut sim = node();
    let alice = sim.login("alice", "pw", "laptop");
    let (bob, id) = resumable(&mut sim, "bob", "phone");
    befriend(&mut sim, (alice, "alice"), (bob, "bob"));
    sim.send(bob, &format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='{ver}'/></presence>"));
    let mut handled = 0;
    let asked = read_acking(&mut sim, bob, &mut handled);
    let q = between(&asked, "<iq type='get' id='", "'")
        .unwrap()
        .to_string();
    sim.send(bob, &format!("<iq type='result' id='{q}' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='n#{ver}'>{disco}</query></iq>"));
    sim.stop_and_restart(1_000);
    let (phone, out) = resume(&mut sim, "bob", &id, handled);
    assert!(out.starts_with("<resumed"), "{out}");
    let q = between(&out, "<iq type='get' id='", "'")
        .expect("asked again")
        .to_string();
    sim.send(phone, &format!("<iq type='result' id='{q}' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='n#{ver}'>{disco}</query></iq>"));
    let alice = sim.login("alice", "pw", "laptop");
    sim.send(alice, "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:metadata'><item id='a1'><metadata xmlns='urn:xmpp:avatar:metadata'/></item></publish></pubsub></iq>");
    assert!(sim.take(alice).contains("type='result'"));
    let got = sim.take(phone);
    assert!(got.contains("<item id='a1'>"), "{got}");
}
