//! Blocking (XEP-0191) with abuse reports (XEP-0377) through the node's
//! inputs and outputs: the list and its pushes, what a block stops both
//! ways (messages, iq, presence), unblocking, the bound, and the list and
//! the reports surviving a restart.

use outpost::node::NodeConfig;
use outpost::sim::SimNode;

const BLOCKING: &str = "urn:xmpp:blocking";

fn node() -> SimNode {
    let mut sim = SimNode::new(NodeConfig::new("localhost"), 13);
    for user in ["alice", "bob"] {
        sim.add_user(user, "pw");
    }
    sim
}

/// Alice and Bob subscribed to each other, online; Alice fetched her list.
fn friends(sim: &mut SimNode) -> (u64, u64) {
    let alice = sim.login("alice", "pw", "a");
    let bob = sim.login("bob", "pw", "b");
    for (c, other) in [(alice, "bob"), (bob, "alice")] {
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
    for c in [alice, bob] {
        sim.send(c, "<presence/>");
    }
    sim.send(
        alice,
        &format!("<iq type='get' id='bl'><blocklist xmlns='{BLOCKING}'/></iq>"),
    );
    let list = sim.take(alice);
    assert!(
        list.contains(&format!("<blocklist xmlns='{BLOCKING}'/>")),
        "{list}"
    );
    sim.take(bob);
    (alice, bob)
}

fn block(sim: &mut SimNode, conn: u64, items: &str) -> String {
    sim.send(
        conn,
        &format!("<iq type='set' id='blk'><block xmlns='{BLOCKING}'>{items}</block></iq>"),
    );
    sim.take(conn)
}

fn chat(sim: &mut SimNode, from: u64, to: &str, body: &str) {
    sim.send(
        from,
        &format!("<message to='{to}' type='chat'><body>{body}</body></message>"),
    );
}

#[test]
fn a_block_stops_messages_iq_and_presence_both_ways_and_an_unblock_restores_them() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    let desk = sim.login("alice", "pw", "desk");
    sim.send(desk, "<presence/>");
    sim.take(alice);
    sim.take(bob);
    let out = block(&mut sim, alice, "<item jid='bob@localhost'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'><text>buy now</text></report></item>");
    assert!(out.contains("type='result'"), "{out}");
    assert!(
        out.contains(&format!(
            "<block xmlns='{BLOCKING}'><item jid='bob@localhost'/></block>"
        )),
        "pushed: {out}"
    );
    assert!(
        out.contains("type='unavailable' from='bob@localhost/b'"),
        "{out}"
    );
    assert!(
        !sim.take(desk).contains("<block "),
        "no push to a session that did not fetch the list"
    );
    assert!(sim
        .take(bob)
        .contains("type='unavailable' from='alice@localhost/a'"));
    // Bob's words do not arrive (he is not told why); Alice's are refused
    // with the reason.
    chat(&mut sim, bob, "alice@localhost", "hello?");
    let bounced = sim.take(bob);
    assert!(
        bounced.contains("<service-unavailable") && !bounced.contains("blocked"),
        "{bounced}"
    );
    assert_eq!(sim.take(alice), "");
    chat(&mut sim, alice, "bob@localhost", "hi");
    let refused = sim.take(alice);
    assert!(
        refused.contains("<not-acceptable")
            && refused.contains("<blocked xmlns='urn:xmpp:blocking:errors'/>"),
        "{refused}"
    );
    assert_eq!(sim.take(bob), "");
    sim.send(
        bob,
        "<iq type='get' id='l' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>",
    );
    assert!(sim.take(bob).contains("<service-unavailable"));
    // Presence stops both ways.
    sim.send(bob, "<presence><show>away</show></presence>");
    sim.send(alice, "<presence><show>dnd</show></presence>");
    assert!(!sim.take(alice).contains("from='bob"));
    assert!(!sim.take(bob).contains("from='alice"));
    // Unblocking all: presence again, and words.
    sim.send(
        alice,
        &format!("<iq type='set' id='ub'><unblock xmlns='{BLOCKING}'/></iq>"),
    );
    let out = sim.take(alice);
    assert!(
        out.contains(&format!("<unblock xmlns='{BLOCKING}'/>")),
        "an unblock-all push names nobody: {out}"
    );
    assert!(
        out.contains("from='bob@localhost/b'"),
        "she sees him again: {out}"
    );
    assert!(sim.take(bob).contains("from='alice@localhost/a'"));
    chat(&mut sim, bob, "alice@localhost", "back");
    assert!(sim.take(alice).contains("<body>back</body>"));
}

#[test]
fn a_blocked_domain_covers_its_addresses_and_the_list_has_a_bound() {
    let mut sim = node();
    let (alice, _) = friends(&mut sim);
    assert!(block(&mut sim, alice, "<item jid='spam.example'/>").contains("type='result'"));
    chat(&mut sim, alice, "x@spam.example/r", "no");
    assert!(sim
        .take(alice)
        .contains("<blocked xmlns='urn:xmpp:blocking:errors'/>"));
    assert!(
        block(&mut sim, alice, "").contains("<bad-request"),
        "a block names someone"
    );
    assert!(block(&mut sim, alice, "<item jid='@@'/>").contains("<jid-malformed"));
    let mut items = String::new();
    for i in 1..outpost::im::BLOCKLIST_MAX {
        items.push_str(&format!("<item jid='u{i}@spam{i}.example'/>"));
    }
    assert!(block(&mut sim, alice, &items).contains("type='result'"));
    let full = block(&mut sim, alice, "<item jid='one-more@example.org'/>");
    assert!(full.contains("<resource-constraint"), "{full}");
    assert_eq!(
        sim.node.state().accounts["alice"].blocked.len(),
        outpost::im::BLOCKLIST_MAX
    );
}

#[test]
fn the_blocklist_and_reports_survive_a_restart() {
    let mut sim = node();
    let (alice, _) = friends(&mut sim);
    block(&mut sim, alice, "<item jid='bob@localhost'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:abuse'><text>rude</text></report></item>");
    sim.crash_and_restart();
    let alice = sim.login("alice", "pw", "a");
    sim.send(
        alice,
        &format!("<iq type='get' id='bl'><blocklist xmlns='{BLOCKING}'/></iq>"),
    );
    assert!(sim.take(alice).contains("<item jid='bob@localhost'/>"));
    let reports = &sim.node.state().accounts["alice"].reports;
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (reports[0].jid.as_str(), reports[0].text.as_str()),
        ("bob@localhost", "rude")
    );
    let bob = sim.login("bob", "pw", "b");
    chat(&mut sim, bob, "alice@localhost", "still blocked");
    assert_eq!(sim.take(alice), "");
}

#[test]
fn a_block_tells_presence_only_to_those_who_saw_it_and_an_unblock_keeps_other_blocks() {
    let mut sim = node();
    sim.add_user("carol", "pw");
    let (alice, bob) = friends(&mut sim);
    let carol = sim.login("carol", "pw", "c");
    sim.send(carol, "<presence/>");
    sim.take(alice);
    sim.take(carol);
    // Carol never saw Alice's presence: a block tells her nothing (not
    // even Alice's resources).
    block(&mut sim, alice, "<item jid='carol@localhost'/>");
    assert_eq!(sim.take(carol), "");
    // Bob blocked by bare JID and one of his resources; unblocking the
    // resource leaves him blocked, and shows him nothing.
    block(
        &mut sim,
        alice,
        "<item jid='bob@localhost'/><item jid='bob@localhost/b'/>",
    );
    sim.take(bob);
    sim.send(alice, &format!("<iq type='set' id='ub'><unblock xmlns='{BLOCKING}'><item jid='bob@localhost/b'/></unblock></iq>"));
    sim.take(alice);
    assert_eq!(sim.take(bob), "", "still blocked by his bare JID");
    sim.send(alice, &format!("<iq type='set' id='ub2'><unblock xmlns='{BLOCKING}'><item jid='bob@localhost'/></unblock></iq>"));
    let mine = sim.take(alice);
    assert!(
        mine.contains("from='bob@localhost/b'"),
        "she sees him again: {mine}"
    );
    assert!(
        sim.take(bob).contains("from='alice@localhost/a'"),
        "and he her"
    );
}

#[test]
fn a_report_comes_once_with_a_new_block() {
    let mut sim = node();
    let (alice, _) = friends(&mut sim);
    let report = "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'><text>again</text></report>";
    let item = format!("<item jid='spam@spam.example'>{report}</item>");
    block(&mut sim, alice, &format!("{item}{item}"));
    for _ in 0..5 {
        block(&mut sim, alice, &item);
    }
    assert_eq!(sim.node.state().accounts["alice"].reports.len(), 1);
}

#[test]
fn an_account_keeps_its_newest_hundred_reports() {
    let mut sim = node();
    let (alice, _) = friends(&mut sim);
    let text = "x".repeat(2000);
    for i in 0..outpost::im::REPORTS_MAX + 5 {
        block(&mut sim, alice, &format!("<item jid='s{i}@spam.example'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'><text>{text}</text></report></item>"));
    }
    let reports = &sim.node.state().accounts["alice"].reports;
    assert_eq!(reports.len(), outpost::im::REPORTS_MAX);
    assert_eq!(reports[0].jid, "s5@spam.example", "the oldest went");
    assert!(
        reports.iter().all(|r| r.text.len() == 1024),
        "text cut to 1 KiB"
    );
}
