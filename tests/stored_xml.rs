//! XML an account keeps for its clients, through the node's inputs and
//! outputs: private XML storage (XEP-0049) and vcard-temp (XEP-0054),
//! their errors, their bounds (shared with PEP) and their surviving a
//! restart.

use outpost::model::pep;
use outpost::node::NodeConfig;
use outpost::sim::SimNode;

fn node() -> SimNode {
    let mut sim = SimNode::new(NodeConfig::new("localhost"), 17);
    for user in ["alice", "bob"] {
        sim.add_user(user, "pw");
    }
    sim
}

fn private(sim: &mut SimNode, conn: u64, kind: &str, inner: &str) -> String {
    sim.send(
        conn,
        &format!("<iq type='{kind}' id='p'><query xmlns='jabber:iq:private'>{inner}</query></iq>"),
    );
    sim.take(conn)
}

const BOOKMARKS: &str = "<storage xmlns='storage:bookmarks'><conference jid='ops@conference.localhost' autojoin='true' name='Ops'><nick>Alice</nick></conference></storage>";

#[test]
fn private_xml_is_kept_per_namespace_for_the_account_alone() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    let empty = private(
        &mut sim,
        alice,
        "get",
        "<storage xmlns='storage:bookmarks'/>",
    );
    assert!(
        empty.contains("<storage xmlns='storage:bookmarks'/>"),
        "nothing yet: {empty}"
    );
    assert!(private(&mut sim, alice, "set", BOOKMARKS).contains("type='result'"));
    assert!(private(
        &mut sim,
        alice,
        "set",
        "<prefs xmlns='x:client'><theme>dark</theme></prefs>"
    )
    .contains("type='result'"));
    let got = private(
        &mut sim,
        alice,
        "get",
        "<storage xmlns='storage:bookmarks'/>",
    );
    assert!(
        got.contains("<conference jid='ops@conference.localhost'"),
        "{got}"
    );
    assert!(!got.contains("dark"), "one namespace a query");
    // Another device of hers reads it; nobody else can.
    let laptop = sim.login("alice", "pw", "laptop");
    assert!(
        private(&mut sim, laptop, "get", "<prefs xmlns='x:client'/>")
            .contains("<theme>dark</theme>")
    );
    let bob = sim.login("bob", "pw", "b");
    sim.send(bob, "<iq type='get' id='p' to='alice@localhost'><query xmlns='jabber:iq:private'><prefs xmlns='x:client'/></query></iq>");
    let refused = sim.take(bob);
    assert!(
        refused.contains("type='error'") && !refused.contains("dark"),
        "{refused}"
    );
    // Errors: two elements, or the reserved namespaces.
    assert!(
        private(&mut sim, alice, "set", "<a xmlns='x'/><b xmlns='y'/>").contains("<not-acceptable")
    );
    assert!(
        private(&mut sim, alice, "get", "<query xmlns='jabber:iq:private'/>")
            .contains("<not-acceptable")
    );
    sim.crash_and_restart();
    let alice = sim.login("alice", "pw", "a");
    assert!(private(
        &mut sim,
        alice,
        "get",
        "<storage xmlns='storage:bookmarks'/>"
    )
    .contains("name='Ops'"));
}

#[test]
fn private_xml_has_a_bound_on_namespaces_and_bytes_and_drops_nothing_for_it() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    for i in 0..pep::MAX_ITEMS {
        let out = private(&mut sim, alice, "set", &format!("<x xmlns='ns{i}'/>"));
        assert!(out.contains("type='result'"), "{i}: {out}");
    }
    let full = private(&mut sim, alice, "set", "<x xmlns='one-more'/>");
    assert!(full.contains("<resource-constraint"), "{full}");
    assert!(private(&mut sim, alice, "get", "<x xmlns='ns0'/>").contains("<x xmlns='ns0'/>"));
    // Replacing a kept namespace is fine.
    assert!(
        private(&mut sim, alice, "set", "<x xmlns='ns0'><v>2</v></x>").contains("type='result'")
    );
}

#[test]
fn a_vcard_is_set_by_its_owner_and_read_by_anyone() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    let bob = sim.login("bob", "pw", "b");
    sim.send(
        bob,
        "<iq type='get' id='v' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
    );
    assert!(
        sim.take(bob).contains("<vCard xmlns='vcard-temp'/>"),
        "none yet: empty"
    );
    sim.send(alice, "<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard></iq>");
    assert!(sim.take(alice).contains("type='result'"));
    sim.send(
        bob,
        "<iq type='get' id='v2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
    );
    let card = sim.take(bob);
    assert!(
        card.contains("<FN>Alice Liddell</FN>") && card.contains("from='alice@localhost'"),
        "{card}"
    );
    sim.send(bob, "<iq type='set' id='v3' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>");
    assert!(sim.take(bob).contains("<forbidden"));
    // Her own, without a to.
    sim.send(
        alice,
        "<iq type='get' id='v4'><vCard xmlns='vcard-temp'/></iq>",
    );
    assert!(sim.take(alice).contains("Alice Liddell"));
    // Too big for the account's bytes: refused, the old one kept.
    let huge = format!(
        "<iq type='set' id='v5'><vCard xmlns='vcard-temp'><FN>{}</FN></vCard></iq>",
        "x".repeat(60 * 1024)
    );
    let big_node = format!("<x xmlns='t'>{}</x>", "a".repeat(60 * 1024));
    let mut i = 0;
    while private(
        &mut sim,
        alice,
        "set",
        &big_node.replace("'t'", &format!("'t{i}'")),
    )
    .contains("type='result'")
    {
        i += 1;
        assert!(i < 100);
    }
    sim.send(alice, &huge);
    assert!(sim.take(alice).contains("<resource-constraint"));
    sim.send(
        bob,
        "<iq type='get' id='v6' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>",
    );
    assert!(sim.take(bob).contains("Alice Liddell"));
}
