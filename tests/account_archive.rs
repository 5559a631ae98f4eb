//! Accounts' archives (XEP-0313) through the node's inputs and outputs, on
//! a virtual clock: what is archived and under which stanza-id, queries
//! against the XEP's rules, preferences, retention and restarts.

use outpost::node::NodeConfig;
use outpost::sim::{between, SimNode};

fn config() -> NodeConfig {
    NodeConfig::new("localhost")
}

fn node_with(cfg: NodeConfig) -> SimNode {
    let mut sim = SimNode::new(cfg, 11);
    for user in ["alice", "bob", "carol"] {
        sim.add_user(user, "pw");
    }
    sim
}

fn online(sim: &mut SimNode, user: &str, resource: &str) -> u64 {
    let c = sim.login(user, "pw", resource);
    sim.send(c, "<presence/>");
    sim.take(c);
    c
}

fn chat(sim: &mut SimNode, from: u64, to: &str, body: &str) {
    sim.send(
        from,
        &format!("<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>"),
    );
}

/// A query to the session's own archive: its form fields, RSM and extras.
fn query(sim: &mut SimNode, conn: u64, fields: &str, rsm: &str, extra: &str) -> String {
    sim.send(
        conn,
        &format!(
            "<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2' queryid='f27'>\
             <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
             <value>urn:xmpp:mam:2</value></field>{fields}</x>\
             <set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set>{extra}</query></iq>"
        ),
    );
    sim.take(conn)
}

/// The bodies of a page's results, in the order sent.
fn bodies(out: &str) -> Vec<String> {
    out.split("<result xmlns='urn:xmpp:mam:2'")
        .skip(1)
        .filter_map(|r| between(r, "<body>", "</body>").map(str::to_string))
        .collect()
}

/// The archive ids of a page's results, in the order sent.
fn result_ids(out: &str) -> Vec<String> {
    out.split("<result xmlns='urn:xmpp:mam:2'")
        .skip(1)
        .filter_map(|r| between(r, " id='", "'").map(str::to_string))
        .collect()
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

#[test]
fn a_one_to_one_message_is_archived_by_both_users_under_the_id_the_recipient_sees() {
    let mut sim = node_with(config());
    let alice = online(&mut sim, "alice", "phone");
    let bob = online(&mut sim, "bob", "laptop");
    chat(&mut sim, alice, "bob@localhost", "hello");
    let got = sim.take(bob);
    let id = between(&got, "<stanza-id xmlns='urn:xmpp:sid:0' id='", "'")
        .expect("the recipient's copy carries a stanza-id")
        .to_string();
    assert!(got.contains("by='bob@localhost'"), "{got}");
    for (conn, with) in [(alice, "bob@localhost"), (bob, "alice@localhost")] {
        let out = query(&mut sim, conn, "", "", "");
        assert_eq!(bodies(&out), ["hello"], "{out}");
        assert_eq!(result_ids(&out), std::slice::from_ref(&id), "{out}");
        assert!(
            out.contains("<fin xmlns='urn:xmpp:mam:2' complete='true'>"),
            "{out}"
        );
        // The result is the message as sent, with its delay.
        assert!(out.contains("<delay xmlns='urn:xmpp:delay'"), "{out}");
        let filtered = query(&mut sim, conn, &field("with", with), "", "");
        assert_eq!(bodies(&filtered), ["hello"], "{filtered}");
        let other = query(&mut sim, conn, &field("with", "carol@localhost"), "", "");
        assert!(bodies(&other).is_empty(), "{other}");
    }
}

#[test]
fn an_offline_message_and_carbons_carry_the_stanza_id() {
    let mut sim = node_with(config());
    let alice = online(&mut sim, "alice", "phone");
    let desk = online(&mut sim, "alice", "desk");
    sim.send(
        desk,
        "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
    );
    sim.take(desk);
    chat(&mut sim, alice, "bob@localhost", "while-you-were-out");
    let sent = sim.take(desk);
    assert!(sent.contains("<sent xmlns='urn:xmpp:carbons:2'>"), "{sent}");
    let sender_id = between(
        &sent,
        "<stanza-id xmlns='urn:xmpp:sid:0' id='",
        "' by='alice@localhost'/>",
    )
    .expect("the sent carbon carries the id of the sender's archive")
    .to_string();
    let bob = sim.login("bob", "pw", "b");
    sim.send(bob, "<presence/>");
    let got = sim.take(bob);
    assert!(got.contains("while-you-were-out"), "{got}");
    assert!(
        got.contains(&format!(
            "<stanza-id xmlns='urn:xmpp:sid:0' id='{sender_id}' by='bob@localhost'/>"
        )),
        "the offline copy carries the same id: {got}"
    );
    assert_eq!(result_ids(&query(&mut sim, bob, "", "", "")), [sender_id]);
}

#[test]
fn a_forged_stanza_id_is_replaced_and_bodiless_or_unstorable_messages_are_not_archived() {
    let mut sim = node_with(config());
    let alice = online(&mut sim, "alice", "a");
    let bob = online(&mut sim, "bob", "b");
    sim.send(alice, "<message to='bob@localhost' type='chat'><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='bob@localhost'/></message>");
    let got = sim.take(bob);
    assert!(!got.contains("forged"), "{got}");
    sim.send(alice, "<message to='bob@localhost' type='chat'><body>unstored</body><no-store xmlns='urn:xmpp:hints'/><stanza-id xmlns='urn:xmpp:sid:0' id='forged-too' by='bob@localhost'/></message>");
    assert!(
        !sim.take(bob).contains("forged-too"),
        "not archived, still not forged"
    );
    sim.send(alice, "<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    sim.send(alice, "<message to='bob@localhost' type='chat'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>");
    sim.send(
        alice,
        "<message to='bob@localhost' type='headline'><body>news</body></message>",
    );
    sim.send(alice, "<message to='bob@localhost' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><payload>AAAA</payload></encrypted></message>");
    sim.take(bob);
    let out = query(&mut sim, bob, "", "", "");
    assert_eq!(
        result_ids(&out).len(),
        2,
        "the body and the encrypted one: {out}"
    );
    assert!(
        out.contains("<payload>AAAA</payload>") && !out.contains("secret"),
        "{out}"
    );
}

#[test]
fn pages_follow_rsm_forward_backward_and_flipped() {
    let mut sim = node_with(config());
    let alice = online(&mut sim, "alice", "a");
    for i in 1..=5 {
        chat(&mut sim, alice, "bob@localhost", &format!("m{i}"));
        sim.advance(1000);
    }
    let first = query(&mut sim, alice, "", "<max>2</max>", "");
    assert_eq!(bodies(&first), ["m1", "m2"]);
    assert!(
        first.contains("<fin xmlns='urn:xmpp:mam:2'><set"),
        "not complete: {first}"
    );
    assert!(
        first.contains("<first index='0'>") && first.contains("<count>5</count>"),
        "{first}"
    );
    let last_id = between(&first, "<last>", "</last>").unwrap().to_string();
    let next = query(
        &mut sim,
        alice,
        "",
        &format!("<max>2</max><after>{last_id}</after>"),
        "",
    );
    assert_eq!(bodies(&next), ["m3", "m4"]);
    assert!(next.contains("<first index='2'>"), "{next}");
    let end = query(&mut sim, alice, "", "<max>2</max><before/>", "");
    assert_eq!(bodies(&end), ["m4", "m5"], "the last page, oldest first");
    assert!(
        !end.contains("complete='true'"),
        "older messages are left: {end}"
    );
    let flipped = query(&mut sim, alice, "", "<max>2</max><before/>", "<flip-page/>");
    assert_eq!(
        bodies(&flipped),
        ["m5", "m4"],
        "the same page, newest first"
    );
    assert!(!end.contains("index="), "no index walking backwards: {end}");
    let before_m4 = between(&end, "<first>", "</first>").unwrap().to_string();
    let older = query(
        &mut sim,
        alice,
        "",
        &format!("<max>10</max><before>{before_m4}</before>"),
        "",
    );
    assert_eq!(bodies(&older), ["m1", "m2", "m3"]);
    assert!(older.contains("complete='true'"), "{older}");
    let missing = query(&mut sim, alice, "", "<after>no-such-id</after>", "");
    assert!(missing.contains("<item-not-found"), "{missing}");
}

#[test]
fn time_bounds_extended_fields_and_metadata() {
    let mut sim = node_with(config());
    let alice = online(&mut sim, "alice", "a");
    let mut stamps = Vec::new();
    for i in 1..=4 {
        chat(&mut sim, alice, "bob@localhost", &format!("m{i}"));
        sim.advance(60_000);
    }
    let all = query(&mut sim, alice, "", "", "");
    let ids = result_ids(&all);
    for r in all.split("<delay xmlns='urn:xmpp:delay'").skip(1) {
        stamps.push(between(r, "stamp='", "'").unwrap().to_string());
    }
    let window = format!("{}{}", field("start", &stamps[1]), field("end", &stamps[2]));
    assert_eq!(
        bodies(&query(&mut sim, alice, &window, "", "")),
        ["m2", "m3"]
    );
    let between_ids = format!(
        "{}{}",
        field("after-id", &ids[0]),
        field("before-id", &ids[3])
    );
    assert_eq!(
        bodies(&query(&mut sim, alice, &between_ids, "", "")),
        ["m2", "m3"]
    );
    let listed = format!(
        "<field var='ids'><value>{}</value><value>{}</value><value>unknown</value></field>",
        ids[3], ids[0]
    );
    assert_eq!(
        bodies(&query(&mut sim, alice, &listed, "", "")),
        ["m1", "m4"],
        "in archive order"
    );
    let unknown = query(
        &mut sim,
        alice,
        &field("urn:example:free-text", "x"),
        "",
        "",
    );
    assert!(unknown.contains("<feature-not-implemented"), "{unknown}");
    sim.send(
        alice,
        "<iq type='get' id='md'><metadata xmlns='urn:xmpp:mam:2'/></iq>",
    );
    let md = sim.take(alice);
    assert!(
        md.contains(&format!(
            "<start id='{}' timestamp='{}'/>",
            ids[0], stamps[0]
        )) && md.contains(&format!("<end id='{}' timestamp='{}'/>", ids[3], stamps[3])),
        "{md}"
    );
    sim.send(
        alice,
        "<iq type='get' id='form'><query xmlns='urn:xmpp:mam:2'/></iq>",
    );
    let form = sim.take(alice);
    assert!(
        form.contains("var='with'") && form.contains("var='ids'"),
        "{form}"
    );
    sim.send(
        alice,
        "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    let _ = sim.take(alice);
    sim.send(alice, "<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let disco = sim.take(alice);
    assert!(
        disco.contains("var='urn:xmpp:mam:2'") && disco.contains("var='urn:xmpp:mam:2#extended'"),
        "{disco}"
    );
}

#[test]
fn another_users_archive_is_refused() {
    let mut sim = node_with(config());
    let alice = online(&mut sim, "alice", "a");
    sim.send(
        alice,
        "<iq type='set' id='x' to='bob@localhost'><query xmlns='urn:xmpp:mam:2'/></iq>",
    );
    assert!(sim.take(alice).contains("<forbidden"));
}

#[test]
fn preferences_choose_what_is_archived_and_survive_a_restart() {
    let mut sim = node_with(config());
    let alice = online(&mut sim, "alice", "a");
    sim.send(alice, "<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>carol@localhost</jid></always><never><jid>bob@localhost/phone</jid></never></prefs></iq>");
    let set = sim.take(alice);
    assert!(
        set.contains("default='roster'") && set.contains("<never><jid>bob@localhost</jid></never>"),
        "JIDs are kept bare: {set}"
    );
    let bob = online(&mut sim, "bob", "b");
    let carol = online(&mut sim, "carol", "c");
    chat(&mut sim, bob, "alice@localhost", "from-bob");
    chat(&mut sim, carol, "alice@localhost", "from-carol");
    sim.take(alice);
    assert_eq!(bodies(&query(&mut sim, alice, "", "", "")), ["from-carol"]);
    // Bob's own archive follows Bob's preferences (the default: always).
    assert_eq!(bodies(&query(&mut sim, bob, "", "", "")), ["from-bob"]);
    sim.crash_and_restart();
    let alice = online(&mut sim, "alice", "a");
    sim.send(
        alice,
        "<iq type='get' id='g'><prefs xmlns='urn:xmpp:mam:2'/></iq>",
    );
    let got = sim.take(alice);
    assert!(
        got.contains("default='roster'")
            && got.contains("<always><jid>carol@localhost</jid></always>"),
        "{got}"
    );
    assert_eq!(
        bodies(&query(&mut sim, alice, "", "", "")),
        ["from-carol"],
        "after a restart"
    );
    let huge: String = (0..300).map(|i| format!("<jid>u{i}@x</jid>")).collect();
    sim.send(alice, &format!("<iq type='set' id='h'><prefs xmlns='urn:xmpp:mam:2' default='always'><always>{huge}</always></prefs></iq>"));
    assert!(sim.take(alice).contains("<not-acceptable"));
}

#[test]
fn retention_keeps_the_newest_within_count_and_age() {
    let mut cfg = config();
    cfg.archive_messages_per_account = 3;
    cfg.archive_days = 1;
    let mut sim = node_with(cfg);
    let alice = online(&mut sim, "alice", "a");
    for i in 1..=5 {
        chat(&mut sim, alice, "bob@localhost", &format!("m{i}"));
    }
    assert_eq!(
        bodies(&query(&mut sim, alice, "", "", "")),
        ["m3", "m4", "m5"]
    );
    // A day and a bit later, nothing came: the next login drops them.
    sim.advance(25 * 60 * 60 * 1000);
    let again = sim.login("alice", "pw", "b");
    assert!(bodies(&query(&mut sim, again, "", "", "")).is_empty());
    sim.advance(1000);
    chat(&mut sim, again, "bob@localhost", "fresh");
    assert_eq!(bodies(&query(&mut sim, again, "", "", "")), ["fresh"]);
}

#[test]
fn the_node_total_cuts_the_largest_archive_first() {
    let mut cfg = config();
    cfg.archive_bytes_total = 40_000;
    // Above the total: only the total can cut.
    cfg.archive_bytes_per_account = 1_000_000;
    let mut sim = node_with(cfg);
    let alice = online(&mut sim, "alice", "a");
    let carol = online(&mut sim, "carol", "c");
    chat(&mut sim, carol, "carol@localhost", "note-to-self");
    let body = "x".repeat(1000);
    for i in 0..60 {
        chat(&mut sim, alice, "alice@localhost", &format!("{i}-{body}"));
    }
    let kept = bodies(&query(&mut sim, alice, "", "<max>100</max>", ""));
    assert!(
        kept.len() < 40 && kept.last().unwrap().starts_with("59-"),
        "{}",
        kept.len()
    );
    assert_eq!(
        bodies(&query(&mut sim, carol, "", "", "")),
        ["note-to-self"],
        "the small one is kept"
    );
    // The operator sees the space used against the budget.
    let status = match sim.admin(outpost::node::AdminCommand::Status) {
        outpost::node::AdminReply::Status(s) => s.storage,
        other => panic!("{other:?}"),
    };
    assert_eq!(status.account_archive_budget, 40_000);
    assert!(
        status.account_archive_bytes <= 40_000,
        "{}",
        status.account_archive_bytes
    );
    assert_eq!(status.account_archive_messages, kept.len() as u64 + 1);
}

#[test]
fn the_archive_survives_a_restart() {
    let mut sim = node_with(config());
    let alice = online(&mut sim, "alice", "a");
    for i in 1..=300 {
        chat(
            &mut sim,
            alice,
            "bob@localhost",
            &format!("message number {i}"),
        );
    }
    let before = query(&mut sim, alice, "", "<max>250</max>", "");
    sim.crash_and_restart();
    let alice = online(&mut sim, "alice", "a");
    let after = query(&mut sim, alice, "", "<max>250</max>", "");
    assert_eq!(result_ids(&before), result_ids(&after));
    assert_eq!(bodies(&after).len(), 250);
    let bob = online(&mut sim, "bob", "b");
    let theirs = query(&mut sim, bob, "", "<max>1</max><before/>", "");
    assert_eq!(bodies(&theirs), ["message number 300"]);
}

#[test]
fn a_query_naming_too_many_ids_is_refused_and_bytes_bound_an_account() {
    let mut cfg = config();
    cfg.archive_bytes_per_account = 20_000;
    let mut sim = node_with(cfg);
    let alice = online(&mut sim, "alice", "a");
    let ids: String = (0..251).map(|i| format!("<value>id{i}</value>")).collect();
    let out = query(
        &mut sim,
        alice,
        &format!("<field var='ids'>{ids}</field>"),
        "",
        "",
    );
    assert!(out.contains("<policy-violation"), "{out}");
    // 40 messages of about 1 KB against 20,000 bytes: the newest that fit.
    let body = "y".repeat(1000);
    for i in 0..40 {
        chat(&mut sim, alice, "bob@localhost", &format!("{i:02}-{body}"));
    }
    let kept = bodies(&query(&mut sim, alice, "", "<max>100</max>", ""));
    let bytes: usize = kept.iter().map(String::len).sum();
    assert!(
        bytes <= 20_000 && kept.len() >= 9,
        "{} kept, {bytes} bytes",
        kept.len()
    );
    assert!(kept.last().unwrap().starts_with("39-"));
}
