//! XEP-0198 stream management through the node's inputs and outputs, on a
//! virtual clock: acknowledgements both ways, resumption onto a new
//! connection (with the room and presence state kept), sessions that are
//! not resumed in time handing what they were sent to offline storage, and
//! the bounds on what a session may leave unacknowledged.

use outpost::c2s::sm::{stanzas, MAX_UNACKED};
use outpost::node::NodeConfig;
use outpost::sim::{between, SimNode};

const SM: &str = "urn:xmpp:sm:3";
const ROOM: &str = "room@conference.localhost";

fn node() -> SimNode {
    let mut sim = SimNode::new(NodeConfig::new("localhost"), 21);
    for user in ["alice", "bob"] {
        sim.add_user(user, "pw");
    }
    sim
}

/// Alice and Bob subscribed to each other and online; Bob's session
/// enabled resumption. Returns (alice, bob, the resumption id, the
/// stanzas Bob has been sent since enabling).
fn alice_and_resumable_bob(sim: &mut SimNode) -> (u64, u64, String, u32) {
    let alice = sim.login("alice", "pw", "a");
    let bob = sim.login("bob", "pw", "phone");
    for (c, other) in [(alice, "bob"), (bob, "alice")] {
        sim.send(
            c,
            "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        );
        sim.send(
            c,
            &format!("<presence to='{other}@localhost' type='subscribe'/>"),
        );
    }
    for (c, other) in [(alice, "bob"), (bob, "alice")] {
        sim.send(
            c,
            &format!("<presence to='{other}@localhost' type='subscribed'/>"),
        );
    }
    sim.send(bob, &format!("<enable xmlns='{SM}' resume='true'/>"));
    let enabled = sim.take(bob);
    let id = between(&enabled, "<enabled xmlns='urn:xmpp:sm:3' id='", "'")
        .unwrap_or_else(|| panic!("{enabled}"))
        .to_string();
    assert!(enabled.contains("resume='true' max='300'"), "{enabled}");
    for c in [alice, bob] {
        sim.send(c, "<presence/>");
    }
    let sent = stanzas(sim.take(bob).as_bytes()).len() as u32;
    sim.take(alice);
    (alice, bob, id, sent)
}

fn chat(sim: &mut SimNode, from: u64, body: &str) {
    sim.send(
        from,
        &format!("<message to='bob@localhost' type='chat'><body>{body}</body></message>"),
    );
}

fn bodies(out: &str) -> Vec<String> {
    out.split("<body>")
        .skip(1)
        .filter_map(|b| b.split("</body>").next().map(str::to_string))
        .collect()
}

#[test]
fn the_server_answers_requests_and_asks_for_acknowledgements() {
    let mut sim = node();
    let (alice, bob, _, _) = alice_and_resumable_bob(&mut sim);
    sim.send(bob, &format!("<r xmlns='{SM}'/>"));
    // Only what came after enabling counts: its initial presence.
    assert_eq!(sim.take(bob), format!("<a xmlns='{SM}' h='1'/>"));
    sim.send(
        bob,
        "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    sim.send(bob, &format!("<r xmlns='{SM}'/>"));
    assert!(sim.take(bob).ends_with(&format!("<a xmlns='{SM}' h='2'/>")));
    for i in 0..5 {
        chat(&mut sim, alice, &format!("m{i}"));
    }
    let out = sim.take(bob);
    assert_eq!(
        out.matches(&format!("<r xmlns='{SM}'/>")).count(),
        1,
        "one request until answered: {out}"
    );
}

#[test]
fn a_resumed_session_gets_what_it_missed_once_in_order_and_nobody_saw_it_leave() {
    let mut sim = node();
    let (alice, bob, id, mut sent) = alice_and_resumable_bob(&mut sim);
    chat(&mut sim, alice, "one");
    chat(&mut sim, alice, "two");
    let got = sim.take(bob);
    assert_eq!(bodies(&got), ["one", "two"]);
    sent += stanzas(got.as_bytes()).len() as u32;
    // Bob acknowledges all but "two", then his Wi-Fi drops.
    sim.send(bob, &format!("<a xmlns='{SM}' h='{}'/>", sent - 1));
    sim.disconnect(bob);
    chat(&mut sim, alice, "three");
    chat(&mut sim, alice, "four");
    sim.advance(60_000);
    assert_eq!(
        sim.take(alice).trim(),
        "",
        "no unavailable presence, no error"
    );
    let (phone, features) = sim.authenticated("bob", "pw");
    assert!(
        features.contains(&format!("<sm xmlns='{SM}'/>")),
        "{features}"
    );
    sim.send(
        phone,
        &format!("<resume xmlns='{SM}' previd='{id}' h='{}'/>", sent - 1),
    );
    let out = sim.take(phone);
    assert!(
        out.starts_with(&format!("<resumed xmlns='{SM}' h='")),
        "{out}"
    );
    assert_eq!(bodies(&out), ["two", "three", "four"], "{out}");
    // The session goes on: same JID, same presence.
    chat(&mut sim, alice, "five");
    assert_eq!(bodies(&sim.take(phone)), ["five"]);
    sim.send(
        phone,
        "<message to='alice@localhost' type='chat'><body>back</body></message>",
    );
    let to_alice = sim.take(alice);
    assert!(
        to_alice.contains("from='bob@localhost/phone'"),
        "{to_alice}"
    );
    assert!(!to_alice.contains("unavailable"), "{to_alice}");
}

#[test]
fn a_session_not_resumed_in_time_hands_what_it_missed_to_offline_storage() {
    let mut sim = node();
    let (alice, bob, id, _) = alice_and_resumable_bob(&mut sim);
    chat(&mut sim, alice, "seen-not-acked");
    sim.take(bob);
    sim.disconnect(bob);
    chat(&mut sim, alice, "while-away");
    sim.advance(299_000);
    assert_eq!(sim.take(alice).trim(), "");
    sim.advance(2_000);
    let gone = sim.take(alice);
    assert!(
        gone.contains("from='bob@localhost/phone'") && gone.contains("type='unavailable'"),
        "{gone}"
    );
    // Too late to resume; a new login gets both from offline storage, once.
    let (late, _) = sim.authenticated("bob", "pw");
    sim.send(late, &format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"));
    assert!(sim.take(late).contains("<item-not-found"));
    sim.send(
        late,
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    sim.send(late, "<presence/>");
    let out = sim.take(late);
    assert_eq!(bodies(&out), ["seen-not-acked", "while-away"], "{out}");
    assert_eq!(out.matches("<delay").count(), 2, "{out}");
}

#[test]
fn a_resumption_is_refused_for_another_account_a_bad_id_or_a_count_too_high() {
    let mut sim = node();
    let (_, bob, id, sent) = alice_and_resumable_bob(&mut sim);
    sim.disconnect(bob);
    let (alice2, _) = sim.authenticated("alice", "pw");
    sim.send(
        alice2,
        &format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"),
    );
    assert!(sim
        .take(alice2)
        .contains("<failed xmlns='urn:xmpp:sm:3'><item-not-found"));
    let (bob2, _) = sim.authenticated("bob", "pw");
    sim.send(bob2, &format!("<resume xmlns='{SM}' previd='nope' h='0'/>"));
    assert!(sim.take(bob2).contains("<item-not-found"));
    sim.send(
        bob2,
        &format!("<resume xmlns='{SM}' previd='{id}' h='{}'/>", sent + 7),
    );
    assert!(sim.take(bob2).contains("<failed"));
    // Still resumable with the right count.
    sim.send(
        bob2,
        &format!("<resume xmlns='{SM}' previd='{id}' h='{sent}'/>"),
    );
    let out = sim.take(bob2);
    assert!(out.starts_with("<resumed"), "{out}");
}

#[test]
fn enabling_before_binding_and_twice_is_refused() {
    let mut sim = node();
    let (c, _) = sim.authenticated("bob", "pw");
    sim.send(c, &format!("<enable xmlns='{SM}'/>"));
    assert!(sim
        .take(c)
        .contains("<failed xmlns='urn:xmpp:sm:3'><unexpected-request"));
    sim.send(
        c,
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    sim.take(c);
    sim.send(c, &format!("<enable xmlns='{SM}'/>"));
    let enabled = sim.take(c);
    assert_eq!(
        enabled,
        format!("<enabled xmlns='{SM}'/>"),
        "no resumption asked: no id"
    );
    sim.send(c, &format!("<enable xmlns='{SM}'/>"));
    assert!(sim.take(c).contains("<unexpected-request"));
    sim.send(c, &format!("<a xmlns='{SM}' h='9'/>"));
    assert!(
        sim.take(c).contains("<undefined-condition"),
        "more acknowledged than sent"
    );
    assert!(sim.is_closed(c));
}

#[test]
fn a_session_without_resumption_hands_unacknowledged_messages_to_offline_storage() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    let bob = sim.login("bob", "pw", "b");
    sim.send(bob, &format!("<enable xmlns='{SM}'/>"));
    sim.send(bob, "<presence/>");
    sim.take(bob);
    chat(&mut sim, alice, "never-acked");
    sim.take(bob);
    sim.disconnect(bob);
    let again = sim.login("bob", "pw", "b");
    sim.send(again, "<presence/>");
    assert_eq!(bodies(&sim.take(again)), ["never-acked"]);
}

#[test]
fn a_resumed_occupant_stays_in_its_room_and_one_that_times_out_leaves() {
    let mut sim = node();
    let (alice, bob, id, mut sent) = alice_and_resumable_bob(&mut sim);
    sim.send(
        alice,
        &format!(
            "<presence to='{ROOM}/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ),
    );
    sim.send(alice, &format!("<iq type='set' id='inst' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    sim.send(
        bob,
        &format!(
            "<presence to='{ROOM}/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ),
    );
    sim.take(alice);
    sent += stanzas(sim.take(bob).as_bytes()).len() as u32;
    sim.disconnect(bob);
    sim.send(
        alice,
        &format!(
            "<message to='{ROOM}' type='groupchat'><body>while you were away</body></message>"
        ),
    );
    sim.take(alice);
    let (phone, _) = sim.authenticated("bob", "pw");
    sim.send(
        phone,
        &format!("<resume xmlns='{SM}' previd='{id}' h='{sent}'/>"),
    );
    let resumed = sim.take(phone);
    assert_eq!(bodies(&resumed), ["while you were away"], "{resumed}");
    assert_eq!(sim.take(alice).trim(), "", "no presence noise in the room");
    sim.send(
        phone,
        &format!("<message to='{ROOM}' type='groupchat'><body>still here</body></message>"),
    );
    assert!(sim.take(alice).contains("still here"));
    // This time the phone stays away.
    sim.disconnect(phone);
    sim.advance(301_000);
    let left = sim.take(alice);
    assert!(
        left.contains(&format!("type='unavailable' from='{ROOM}/Bob'")),
        "{left}"
    );
}

#[test]
fn a_detached_session_holds_a_bounded_queue_then_ends_into_offline_storage() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.offline_limit = 10_000;
    let mut sim = SimNode::new(cfg, 3);
    for user in ["alice", "bob"] {
        sim.add_user(user, "pw");
    }
    let alice = sim.login("alice", "pw", "a");
    let bob = sim.login("bob", "pw", "b");
    sim.send(bob, &format!("<enable xmlns='{SM}' resume='true'/>"));
    sim.send(bob, "<presence/>");
    sim.take(bob);
    sim.disconnect(bob);
    for i in 0..MAX_UNACKED + 1 {
        chat(&mut sim, alice, &format!("n{i}"));
    }
    // Over the bound the session ended: its presence is gone, and the
    // next message is stored offline like any other.
    chat(&mut sim, alice, "after");
    let again = sim.login("bob", "pw", "b");
    sim.send(again, "<presence/>");
    let mut got = Vec::new();
    for _ in 0..50 {
        let out = sim.take(again);
        if out.is_empty() {
            break;
        }
        got.extend(bodies(&out));
    }
    assert_eq!(got.len(), MAX_UNACKED + 2, "every message, once");
    assert_eq!(got.last().map(String::as_str), Some("after"));
}

#[test]
fn an_unanswered_request_marks_the_connection_dead() {
    let mut sim = node();
    let (alice, bob, id, sent) = alice_and_resumable_bob(&mut sim);
    // The phone went off the network: nothing answers, TCP says nothing.
    sim.advance(60_000);
    assert!(
        sim.take(bob).contains(&format!("<r xmlns='{SM}'/>")),
        "the keepalive asks"
    );
    sim.advance(60_000);
    assert!(sim.is_closed(bob), "no answer in an interval: closed");
    chat(&mut sim, alice, "queued");
    let (phone, _) = sim.authenticated("bob", "pw");
    sim.send(
        phone,
        &format!("<resume xmlns='{SM}' previd='{id}' h='{sent}'/>"),
    );
    assert_eq!(bodies(&sim.take(phone)), ["queued"]);
}

#[test]
fn a_shutdown_keeps_what_resumable_sessions_did_not_acknowledge() {
    let mut sim = node();
    let (alice, bob, _, _) = alice_and_resumable_bob(&mut sim);
    chat(&mut sim, alice, "before-shutdown");
    sim.take(bob);
    sim.disconnect(bob);
    chat(&mut sim, alice, "detached");
    sim.stop_and_restart(1_000);
    // Kept for a resumption that never comes (tests/resume_across_restart.rs
    // has the one that does), then into offline storage.
    sim.advance(300_000);
    let again = sim.login("bob", "pw", "b");
    sim.send(again, "<presence/>");
    assert_eq!(bodies(&sim.take(again)), ["before-shutdown", "detached"]);
}

#[test]
fn a_phone_that_drops_its_connection_every_few_seconds_in_three_rooms_loses_nothing() {
    for seed in 1..=10 {
        flaky_phone_in_three_rooms(seed);
    }
}

fn flaky_phone_in_three_rooms(seed: u64) {
    let mut sim = node();
    sim.add_user("carol", "pw");
    let rooms = ["r1", "r2", "r3"].map(|r| format!("{r}@conference.localhost"));
    let alice = sim.login("alice", "pw", "a");
    let carol = sim.login("carol", "pw", "c");
    let mut bob = sim.login("bob", "pw", "phone");
    sim.send(bob, &format!("<enable xmlns='{SM}' resume='true'/>"));
    let enabled = sim.take(bob);
    let id = between(&enabled, "id='", "'").unwrap().to_string();
    for room in &rooms {
        sim.send(alice, &format!("<presence to='{room}/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
        sim.send(alice, &format!("<iq type='set' id='i' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
        for (c, nick) in [(carol, "Carol"), (bob, "Bob")] {
            sim.send(c, &format!("<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"));
        }
    }
    let mut handled = stanzas(sim.take(bob).as_bytes()).len() as u32;
    sim.take(alice);
    sim.take(carol);
    let mut rng = outpost::sim::Rng(seed);
    let mut sent = Vec::new();
    let mut got = Vec::new();
    let mut others_saw = String::new();
    for step in 0..60 {
        // A few messages in the rooms, from Alice and Carol.
        for _ in 0..rng.below(4) {
            let (from, room) = (
                [alice, carol][rng.below(2) as usize],
                &rooms[rng.below(3) as usize],
            );
            let body = format!("m{}", sent.len());
            sim.send(
                from,
                &format!("<message to='{room}' type='groupchat'><body>{body}</body></message>"),
            );
            sent.push(body);
        }
        sim.advance(1_000 + rng.below(3_000));
        // The phone reads what reached it, or loses it with the connection.
        if rng.below(3) > 0 {
            let out = sim.take(bob);
            handled += stanzas(out.as_bytes()).len() as u32;
            got.extend(bodies(&out));
            sim.send(bob, &format!("<a xmlns='{SM}' h='{handled}'/>"));
        }
        others_saw.push_str(&sim.take(alice));
        others_saw.push_str(&sim.take(carol));
        if step % 3 == 2 {
            sim.disconnect(bob);
            sim.advance(rng.below(5_000));
            let (phone, _) = sim.authenticated("bob", "pw");
            sim.send(
                phone,
                &format!("<resume xmlns='{SM}' previd='{id}' h='{handled}'/>"),
            );
            let out = sim.take(phone);
            assert!(out.starts_with("<resumed"), "step {step}: {out}");
            handled += stanzas(out.as_bytes()).len() as u32;
            got.extend(bodies(&out));
            bob = phone;
        }
    }
    let out = sim.take(bob);
    got.extend(bodies(&out));
    assert_eq!(got, sent, "seed {seed}: every message once, in order");
    assert!(sent.len() > 50, "{}", sent.len());
    assert!(
        !others_saw.contains("/Bob' type='unavailable'")
            && !others_saw.contains("from='bob@localhost"),
        "no presence noise: {others_saw}"
    );
}

/// Read everything `conn` is sent, acknowledging as a client does;
/// `handled` counts the stanzas since enabling.
fn read_acking(sim: &mut SimNode, conn: u64, handled: &mut u32) -> String {
    let mut all = String::new();
    loop {
        let out = sim.take(conn);
        if out.is_empty() {
            return all;
        }
        *handled += stanzas(out.as_bytes()).len() as u32;
        sim.send(conn, &format!("<a xmlns='{SM}' h='{handled}'/>"));
        all.push_str(&out);
    }
}

fn big_message(to: &str, n: usize) -> String {
    format!(
        "<message to='{to}' type='chat'><body>{}</body></message>",
        "x".repeat(n)
    )
}

#[test]
fn large_deliveries_wait_for_acknowledgements_instead_of_ending_the_session() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.limits.max_stanza_bytes = 256 * 1024;
    let mut sim = SimNode::new(cfg, 4);
    for user in ["alice", "bob"] {
        sim.add_user(user, "pw");
    }
    let alice = sim.login("alice", "pw", "a");
    // Three large messages stored while Bob is away, then three more sent
    // at once while he is online: well past what may wait unacknowledged.
    for _ in 0..3 {
        sim.send(alice, &big_message("bob@localhost", 200_000));
    }
    let bob = sim.login("bob", "pw", "phone");
    sim.send(bob, &format!("<enable xmlns='{SM}' resume='true'/>"));
    sim.take(bob);
    sim.send(bob, "<presence/>");
    let mut handled = 0;
    let out = read_acking(&mut sim, bob, &mut handled);
    let shown: String = out.chars().filter(|c| *c != 'x').collect();
    assert_eq!(
        out.matches("<body>").count(),
        3,
        "the offline ones: {shown}"
    );
    let burst: String = (0..3)
        .map(|_| big_message("bob@localhost/phone", 200_000))
        .collect();
    sim.send(alice, &burst);
    let out = read_acking(&mut sim, bob, &mut handled);
    assert_eq!(out.matches("<body>").count(), 3, "the burst");
    assert!(!sim.is_closed(bob) && !out.contains("resource-constraint"));
}

#[test]
fn a_client_that_never_acknowledges_is_held_back_not_served_into_memory() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    let bob = sim.login("bob", "pw", "phone");
    sim.send(bob, &format!("<enable xmlns='{SM}' resume='true'/>"));
    sim.send(bob, "<presence/>");
    sim.take(bob);
    for i in 0..MAX_UNACKED + 100 {
        chat(&mut sim, alice, &format!("n{i}"));
    }
    // It reads but never acknowledges: what it gets stops at the bound.
    // (Its own presence came back first: one of the stanzas counted.)
    let out = sim.take(bob);
    assert_eq!(
        out.matches("<body>").count(),
        MAX_UNACKED - 1,
        "held back past the bound"
    );
    // It acknowledges: the rest comes.
    sim.send(bob, &format!("<a xmlns='{SM}' h='{MAX_UNACKED}'/>"));
    let out = sim.take(bob);
    assert_eq!(out.matches("<body>").count(), 101);
}

#[test]
fn a_session_waiting_to_be_resumed_does_not_keep_offline_messages_from_another() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    for i in 0..3 {
        chat(&mut sim, alice, &format!("m{i}"));
    }
    let phone = sim.login("bob", "pw", "phone");
    sim.send(phone, &format!("<enable xmlns='{SM}' resume='true'/>"));
    sim.send(phone, "<presence/>");
    // The phone drops before reading anything.
    sim.disconnect(phone);
    let laptop = sim.login("bob", "pw", "laptop");
    sim.send(laptop, "<presence/>");
    assert_eq!(bodies(&sim.take(laptop)), ["m0", "m1", "m2"]);
}

#[test]
fn a_message_another_resource_got_is_not_stored_again_when_a_session_ends() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    let laptop = sim.login("bob", "pw", "laptop");
    sim.send(laptop, "<presence/>");
    let phone = sim.login("bob", "pw", "phone");
    sim.send(phone, &format!("<enable xmlns='{SM}' resume='true'/>"));
    sim.send(phone, "<presence/>");
    sim.take(phone);
    sim.take(laptop);
    chat(&mut sim, alice, "once");
    assert_eq!(bodies(&sim.take(laptop)), ["once"]);
    sim.take(phone);
    sim.disconnect(phone);
    sim.advance(301_000);
    sim.disconnect(laptop);
    let again = sim.login("bob", "pw", "laptop");
    sim.send(again, "<presence/>");
    assert!(bodies(&sim.take(again)).is_empty(), "not a second time");
}

#[test]
fn a_client_that_logs_in_anew_instead_of_resuming_is_not_locked_out() {
    let mut cfg = NodeConfig::new("localhost");
    cfg.max_resources_per_user = 2;
    let mut sim = SimNode::new(cfg, 6);
    sim.add_user("bob", "pw");
    // Each time a new resource, resumption enabled, then the Wi-Fi drops.
    for i in 0..5 {
        let c = sim.login("bob", "pw", &format!("r{i}"));
        sim.send(c, &format!("<enable xmlns='{SM}' resume='true'/>"));
        sim.send(c, "<presence/>");
        sim.take(c);
        sim.disconnect(c);
    }
    // Two sessions here and now: the waiting ones gave way, not these.
    let a = sim.login("bob", "pw", "here-1");
    let b = sim.login("bob", "pw", "here-2");
    assert!(!sim.is_closed(a) && !sim.is_closed(b));
    // A third, with both here, is refused as before.
    let (c, _) = sim.authenticated("bob", "pw");
    sim.send(
        c,
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    );
    assert!(sim.take(c).contains("<resource-constraint"));
}

/// Sessions waiting to be resumed hold at most `MAX_UNACKED_TOTAL` for the
/// node: past it the one waiting longest ends (what it held goes to
/// offline storage), and the others stay resumable.
#[test]
fn the_node_bounds_what_all_detached_sessions_hold() {
    use outpost::c2s::MAX_UNACKED_TOTAL;
    let mut sim = node();
    let users: Vec<String> = (0..7).map(|u| format!("u{u}")).collect();
    for u in &users {
        sim.add_user(u, "pw");
    }
    let mut detached = Vec::new();
    for u in &users {
        for r in 0..10 {
            let c = sim.login(u, "pw", &format!("r{r}"));
            sim.send(c, &format!("<enable xmlns='{SM}' resume='true'/>"));
            let id = between(&sim.take(c), "id='", "'").unwrap().to_string();
            sim.disconnect(c);
            sim.advance(1);
            detached.push((u.clone(), format!("r{r}"), id));
        }
    }
    // Each is sent two messages of 250 KB (just under a session's own
    // bound): 70 sessions hold about 35 MB in all.
    let alice = sim.login("alice", "pw", "a");
    let body = "q".repeat(250_000);
    for (u, r, _) in &detached {
        for _ in 0..2 {
            sim.send(alice, &format!("<message to='{u}@localhost/{r}' type='chat'><body>{body}</body><no-store xmlns='urn:xmpp:hints'/></message>"));
        }
    }
    let held = detached.len() * 2 * 250_000;
    assert!(held > MAX_UNACKED_TOTAL);
    let (first_user, _, first_id) = &detached[0];
    let (c, _) = sim.authenticated(first_user, "pw");
    sim.send(
        c,
        &format!("<resume xmlns='{SM}' previd='{first_id}' h='0'/>"),
    );
    assert!(
        sim.take(c).contains("<item-not-found"),
        "the longest waiting ended"
    );
    let (last_user, _, last_id) = detached.last().unwrap();
    let (c, _) = sim.authenticated(last_user, "pw");
    sim.send(
        c,
        &format!("<resume xmlns='{SM}' previd='{last_id}' h='0'/>"),
    );
    let mut handled = 0;
    let out = read_acking(&mut sim, c, &mut handled);
    assert!(
        out.starts_with("<resumed"),
        "{}",
        &out[..200.min(out.len())]
    );
    assert_eq!(out.matches("<body>").count(), 2, "the newest kept theirs");
    // What the ended one held is offline now.
    sim.send(c, "<presence/>");
    let first = sim.login(first_user, "pw", "back");
    sim.send(first, "<presence/>");
    let mut handled = 0;
    let back = read_acking(&mut sim, first, &mut handled);
    assert!(back.matches("<body>").count() >= 2, "nothing lost");
}
