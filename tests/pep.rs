//! Personal eventing (XEP-0163) through the node's inputs and outputs:
//! publishing with auto-create and publish-options, who may read a node,
//! notifications to the sessions that asked for them in their entity
//! capabilities (XEP-0115, asked once and verified), the last item on
//! presence, retraction, configuration and deletion, the bounds, and the
//! nodes surviving a restart and a compaction.

use base64::Engine;
use outpost::model::pep::{self, PepConfig, PepItem, PepRecord};
use outpost::node::{AdminCommand, AdminReply, NodeConfig};
use outpost::sim::{caps_of as disco, SimNode};
use outpost::state::Record;

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const AVATAR: &str = "urn:xmpp:avatar:metadata";

fn node() -> SimNode {
    let mut sim = SimNode::new(NodeConfig::new("localhost"), 9);
    for user in ["alice", "bob", "eve"] {
        sim.add_user(user, "pw");
    }
    sim
}

/// Alice and Bob subscribed to each other; Eve to nobody.
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
    sim.take(alice);
    sim.take(bob);
    (alice, bob)
}

/// Available with caps for `features`; the node's capabilities query is
/// answered if it comes. Returns whether it came.
fn online_with(sim: &mut SimNode, conn: u64, features: &[&str]) -> bool {
    sim.online_with_features(conn, features)
}

fn publish(
    sim: &mut SimNode,
    conn: u64,
    node: &str,
    id: &str,
    payload: &str,
    options: &str,
) -> String {
    sim.send(
        conn,
        &format!("<iq type='set' id='pub'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='{id}'>{payload}</item></publish>{options}</pubsub></iq>"),
    );
    sim.take(conn)
}

fn options(fields: &[(&str, &str)]) -> String {
    let mut x = format!("<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value></field>");
    for (var, value) in fields {
        x.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    x + "</x></publish-options>"
}

fn items(sim: &mut SimNode, conn: u64, owner: &str, node: &str) -> String {
    sim.send(
        conn,
        &format!("<iq type='get' id='items' to='{owner}@localhost'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>"),
    );
    sim.take(conn)
}

fn metadata(n: u32) -> String {
    format!("<metadata xmlns='{AVATAR}'><info id='{n}' bytes='{n}' type='image/png'/></metadata>")
}

#[test]
fn a_contact_that_asked_gets_each_publish_and_others_do_not() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    let eve = sim.login("eve", "pw", "e");
    assert!(online_with(&mut sim, bob, &[&format!("{AVATAR}+notify")]));
    online_with(&mut sim, eve, &[&format!("{AVATAR}+notify")]);
    let bob_desk = sim.login("bob", "pw", "desk");
    // The same capabilities: known already, not asked again.
    assert!(!online_with(
        &mut sim,
        bob_desk,
        &[&format!("{AVATAR}+notify")]
    ));
    let bob_old = sim.login("bob", "pw", "old");
    assert!(online_with(&mut sim, bob_old, &["urn:xmpp:other+notify"]));
    sim.send(alice, "<presence/>");
    for c in [bob, bob_desk, bob_old, eve] {
        sim.take(c);
    }
    let out = publish(&mut sim, alice, AVATAR, "v1", &metadata(1), "");
    assert!(
        out.contains("type='result'") && out.contains("<item id='v1'/>"),
        "{out}"
    );
    for c in [bob, bob_desk] {
        let got = sim.take(c);
        assert!(
            got.contains("type='headline'")
                && got.contains("from='alice@localhost'")
                && got.contains(&format!("<items node='{AVATAR}'><item id='v1'>")),
            "{got}"
        );
    }
    assert_eq!(sim.take(bob_old), "", "did not ask for this node");
    assert_eq!(sim.take(eve), "", "not subscribed to Alice's presence");
    // Reading: the owner and a contact may, a stranger may not.
    assert!(items(&mut sim, bob, "alice", AVATAR).contains("<item id='v1'>"));
    let refused = items(&mut sim, eve, "alice", AVATAR);
    assert!(
        refused.contains("<not-authorized") && refused.contains("presence-subscription-required"),
        "{refused}"
    );
}

#[test]
fn the_last_item_comes_when_a_session_that_asked_comes_online() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    publish(&mut sim, alice, AVATAR, "v1", &metadata(1), "");
    publish(&mut sim, alice, AVATAR, "v2", &metadata(2), "");
    assert!(online_with(&mut sim, bob, &[&format!("{AVATAR}+notify")]));
    let got = sim.take(bob);
    assert!(
        got.contains("<item id='v2'>") && !got.contains("<item id='v1'>"),
        "{got}"
    );
    assert!(got.contains("<delay xmlns='urn:xmpp:delay'"), "{got}");
    // The default keeps the last item only.
    let all = items(&mut sim, bob, "alice", AVATAR);
    assert!(
        all.contains("<item id='v2'>") && !all.contains("v1"),
        "{all}"
    );
}

#[test]
fn publish_options_create_a_node_as_asked_and_are_preconditions_after() {
    let mut sim = node();
    let (alice, _) = friends(&mut sim);
    let eve = sim.login("eve", "pw", "e");
    let bundles = "eu.siacs.conversations.axolotl.bundles:1";
    let open = options(&[("pubsub#access_model", "open"), ("pubsub#max_items", "max")]);
    let out = publish(
        &mut sim,
        alice,
        bundles,
        "current",
        "<bundle xmlns='eu.siacs.conversations.axolotl'/>",
        &open,
    );
    assert!(out.contains("type='result'"), "{out}");
    assert!(
        items(&mut sim, eve, "alice", bundles).contains("<item id='current'>"),
        "open to anyone"
    );
    let private = options(&[("pubsub#access_model", "whitelist")]);
    let refused = publish(
        &mut sim,
        alice,
        bundles,
        "next",
        "<bundle xmlns='eu.siacs.conversations.axolotl'/>",
        &private,
    );
    assert!(
        refused.contains("<conflict") && refused.contains("precondition-not-met"),
        "{refused}"
    );
    // The owner reconfigures, then the same options are met.
    sim.send(alice, &format!("<iq type='get' id='cfg'><pubsub xmlns='{PUBSUB}#owner'><configure node='{bundles}'/></pubsub></iq>"));
    let form = sim.take(alice);
    assert!(
        form.contains("<value>open</value>") && form.contains("<value>256</value>"),
        "{form}"
    );
    sim.send(alice, &format!("<iq type='set' id='cfg2'><pubsub xmlns='{PUBSUB}#owner'><configure node='{bundles}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></configure></pubsub></iq>"));
    assert!(sim.take(alice).contains("type='result'"));
    let out = publish(
        &mut sim,
        alice,
        bundles,
        "next",
        "<bundle xmlns='eu.siacs.conversations.axolotl'/>",
        &private,
    );
    assert!(out.contains("type='result'"), "{out}");
    let closed = items(&mut sim, eve, "alice", bundles);
    assert!(
        closed.contains("<not-allowed") && closed.contains("closed-node"),
        "{closed}"
    );
    // Only the owner changes a node.
    let forged = publish(
        &mut sim,
        eve,
        bundles,
        "x",
        "<bundle xmlns='eu.siacs.conversations.axolotl'/>",
        "",
    )
    .replace("to='eve", "");
    assert!(forged.contains("type='result'"), "Eve's own node: {forged}");
    sim.send(eve, &format!("<iq type='set' id='x' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><publish node='{bundles}'><item><b/></item></publish></pubsub></iq>"));
    assert!(sim.take(eve).contains("<forbidden"));
}

#[test]
fn retraction_and_deletion_reach_those_who_asked_and_change_what_is_read() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    assert!(online_with(&mut sim, bob, &[&format!("{AVATAR}+notify")]));
    sim.send(alice, "<presence/>");
    let three = options(&[("pubsub#max_items", "3")]);
    for i in 1..=4 {
        publish(
            &mut sim,
            alice,
            AVATAR,
            &format!("v{i}"),
            &metadata(i),
            &three,
        );
    }
    sim.take(bob);
    let kept = items(&mut sim, alice, "alice", AVATAR);
    assert!(
        !kept.contains("'v1'") && kept.contains("'v4'"),
        "three kept: {kept}"
    );
    sim.send(alice, &format!("<iq type='set' id='r'><pubsub xmlns='{PUBSUB}'><retract node='{AVATAR}' notify='true'><item id='v4'/></retract></pubsub></iq>"));
    assert!(sim.take(alice).contains("type='result'"));
    assert!(sim.take(bob).contains("<retract id='v4'/>"));
    sim.send(alice, &format!("<iq type='set' id='r2'><pubsub xmlns='{PUBSUB}'><retract node='{AVATAR}'><item id='v4'/></retract></pubsub></iq>"));
    assert!(sim.take(alice).contains("<item-not-found"), "already gone");
    sim.send(alice, &format!("<iq type='set' id='d'><pubsub xmlns='{PUBSUB}#owner'><delete node='{AVATAR}'/></pubsub></iq>"));
    assert!(sim.take(alice).contains("type='result'"));
    assert!(sim
        .take(bob)
        .contains(&format!("<delete node='{AVATAR}'/>")));
    assert!(items(&mut sim, alice, "alice", AVATAR).contains("<item-not-found"));
}

#[test]
fn an_account_is_held_to_its_nodes_and_bytes_and_a_refused_publish_stores_nothing() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    // Bytes: items of 48 KB into one node that keeps them all.
    let keep = options(&[("pubsub#max_items", "max")]);
    let big = format!("<x xmlns='t'>{}</x>", "a".repeat(48 * 1024));
    let mut published = 0;
    loop {
        let out = publish(
            &mut sim,
            alice,
            "big",
            &format!("big{published}"),
            &big,
            &keep,
        );
        if !out.contains("type='result'") {
            assert!(out.contains("<resource-constraint"), "{out}");
            break;
        }
        published += 1;
        assert!(published < 100, "never refused");
    }
    assert!(published * 48 * 1024 <= pep::BYTES_PER_ACCOUNT);
    assert!((published + 2) * 48 * 1024 > pep::BYTES_PER_ACCOUNT);
    let kept = items(&mut sim, alice, "alice", "big");
    assert!(
        !kept.contains(&format!("big{published}")),
        "the refused item is not kept"
    );
    // Deleting the node gives its bytes back.
    sim.send(alice, &format!("<iq type='set' id='d'><pubsub xmlns='{PUBSUB}#owner'><delete node='big'/></pubsub></iq>"));
    let deleted = sim.take(alice);
    assert!(deleted.contains("type='result'"), "{deleted}");
    for n in 0..pep::NODES_PER_ACCOUNT {
        let out = publish(
            &mut sim,
            alice,
            &format!("node{n}"),
            "i",
            "<x xmlns='t'/>",
            "",
        );
        assert!(out.contains("type='result'"), "{out}");
    }
    let out = publish(&mut sim, alice, "one-too-many", "i", "<x xmlns='t'/>", "");
    assert!(out.contains("<resource-constraint"), "{out}");
    assert!(items(&mut sim, alice, "alice", "one-too-many").contains("<item-not-found"));
    // A node name past its bound is refused.
    let long = "n".repeat(pep::MAX_NAME_BYTES + 1);
    assert!(publish(&mut sim, alice, &long, "i", "<x xmlns='t'/>", "").contains("<not-acceptable"));
}

fn subscribe(sim: &mut SimNode, conn: u64, owner: &str, node: &str, jid: &str) -> String {
    sim.send(
        conn,
        &format!("<iq type='set' id='sub' to='{owner}@localhost'><pubsub xmlns='{PUBSUB}'><subscribe node='{node}' jid='{jid}'/></pubsub></iq>"),
    );
    sim.take(conn)
}

#[test]
fn an_explicit_subscriber_hears_every_change_until_it_leaves_or_may_no_longer_see() {
    let mut sim = node();
    let (alice, _) = friends(&mut sim);
    let open = options(&[("pubsub#access_model", "open")]);
    publish(&mut sim, alice, "news", "n1", "<n xmlns='x'>one</n>", &open);
    // Eve is no contact and her client announces nothing.
    let eve = sim.login("eve", "pw", "e");
    sim.send(eve, "<presence/>");
    sim.take(eve);
    let out = subscribe(&mut sim, eve, "alice", "news", "eve@localhost");
    let (reply, last) = out.split_once("</iq>").expect(&out);
    assert!(
        reply.contains("<subscription node='news' jid='eve@localhost' subscription='subscribed'/>"),
        "{out}"
    );
    assert!(
        last.contains("<item id='n1'>") && last.contains("<delay"),
        "the last item after the answer: {out}"
    );
    publish(&mut sim, alice, "news", "n2", "<n xmlns='x'>two</n>", "");
    assert!(sim.take(eve).contains("<item id='n2'>"));
    sim.send(eve, &format!("<iq type='get' id='s' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><subscriptions/></pubsub></iq>"));
    assert!(sim
        .take(eve)
        .contains("<subscription node='news' jid='eve@localhost' subscription='subscribed'/>"));
    // Not hers to subscribe, not a node she may see, not there.
    assert!(subscribe(&mut sim, eve, "alice", "news", "bob@localhost").contains("<invalid-jid"));
    publish(&mut sim, alice, AVATAR, "v1", &metadata(1), "");
    assert!(subscribe(&mut sim, eve, "alice", AVATAR, "eve@localhost")
        .contains("<presence-subscription-required"));
    assert!(subscribe(&mut sim, eve, "alice", "none", "eve@localhost").contains("<item-not-found"));
    // The owner lists and ends it.
    sim.send(alice, &format!("<iq type='get' id='o' ><pubsub xmlns='{PUBSUB}#owner'><subscriptions node='news'/></pubsub></iq>"));
    assert!(sim
        .take(alice)
        .contains("<subscription jid='eve@localhost' subscription='subscribed'/>"));
    sim.send(alice, &format!("<iq type='set' id='o2'><pubsub xmlns='{PUBSUB}#owner'><subscriptions node='news'><subscription jid='eve@localhost' subscription='none'/></subscriptions></pubsub></iq>"));
    assert!(sim.take(alice).contains("type='result'"));
    publish(&mut sim, alice, "news", "n3", "<n xmlns='x'>three</n>", "");
    assert_eq!(sim.take(eve), "");
    // Back, then the node closes to her: she hears nothing more.
    subscribe(&mut sim, eve, "alice", "news", "eve@localhost");
    sim.send(alice, &format!("<iq type='set' id='c'><pubsub xmlns='{PUBSUB}#owner'><configure node='news'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></configure></pubsub></iq>"));
    sim.take(alice);
    publish(&mut sim, alice, "news", "n4", "<n xmlns='x'>four</n>", "");
    assert_eq!(sim.take(eve), "");
    // Her own unsubscription, twice.
    sim.send(eve, &format!("<iq type='set' id='u' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><unsubscribe node='news' jid='eve@localhost'/></pubsub></iq>"));
    assert!(sim.take(eve).contains("type='result'"));
    sim.send(eve, &format!("<iq type='set' id='u' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><unsubscribe node='news' jid='eve@localhost'/></pubsub></iq>"));
    assert!(sim.take(eve).contains("<not-subscribed"));
}

#[test]
fn subscriptions_are_bounded_per_node_and_per_subscriber() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    let open = options(&[("pubsub#access_model", "open")]);
    for i in 0..pep::NODES_PER_ACCOUNT {
        publish(
            &mut sim,
            alice,
            &format!("n{i}"),
            "1",
            "<n xmlns='x'/>",
            &open,
        );
    }
    // A node's subscribers.
    for i in 0..pep::SUBSCRIBERS_PER_NODE {
        let user = format!("s{i}");
        sim.add_user(&user, "pw");
        let c = sim.login(&user, "pw", "r");
        let out = subscribe(&mut sim, c, "alice", "n0", &format!("{user}@localhost"));
        assert!(out.contains("subscription='subscribed'"), "{i}: {out}");
    }
    let eve = sim.login("eve", "pw", "e");
    let full = subscribe(&mut sim, eve, "alice", "n0", "eve@localhost");
    assert!(full.contains("<too-many-subscriptions"), "{full}");
    // One subscriber's subscriptions, over several accounts' nodes.
    let mut held = 0;
    'owners: for owner in ["alice", "bob", "s0"] {
        let c = sim.login(owner, "pw", "pub");
        // Alice's n0 is full already.
        let first = usize::from(owner == "alice");
        for i in first..pep::NODES_PER_ACCOUNT {
            if owner != "alice" {
                publish(&mut sim, c, &format!("n{i}"), "1", "<n xmlns='x'/>", &open);
            }
            for jid in ["eve@localhost", "eve@localhost/e"] {
                let out = subscribe(&mut sim, eve, owner, &format!("n{i}"), jid);
                if out.contains("<too-many-subscriptions") {
                    break 'owners;
                }
                assert!(out.contains("subscription='subscribed'"), "{out}");
                held += 1;
            }
        }
    }
    assert_eq!(held, pep::SUBSCRIPTIONS_PER_ACCOUNT);
}

#[test]
fn nodes_and_items_survive_a_restart_and_a_compaction() {
    let mut sim = node();
    let (alice, _) = friends(&mut sim);
    let open = options(&[("pubsub#access_model", "open"), ("pubsub#max_items", "2")]);
    for i in 1..=3 {
        publish(
            &mut sim,
            alice,
            AVATAR,
            &format!("v{i}"),
            &metadata(i),
            &open,
        );
    }
    let eve = sim.login("eve", "pw", "e");
    assert!(subscribe(&mut sim, eve, "alice", AVATAR, "eve@localhost")
        .contains("subscription='subscribed'"));
    let before = sim.node.state().accounts["alice"].pep.clone();
    assert_eq!(before[AVATAR].subscribers.len(), 1);
    sim.crash_and_restart();
    assert_eq!(sim.node.state().accounts["alice"].pep, before);
    let eve = sim.login("eve", "pw", "e");
    let read = items(&mut sim, eve, "alice", AVATAR);
    assert!(
        read.contains("'v2'") && read.contains("'v3'") && !read.contains("'v1'"),
        "{read}"
    );
    // Through a snapshot.
    let dir = tempfile::tempdir().unwrap();
    let state = sim.node.state().clone();
    {
        let mut log = outpost::shell::datadir::open_state(dir.path(), 1)
            .unwrap()
            .log;
        outpost::state::snapshot::compact(&mut log, &state, 2).unwrap();
    }
    let opened = outpost::shell::datadir::open_state(dir.path(), 3).unwrap();
    assert_eq!(opened.state.accounts["alice"].pep, before);
}

#[test]
fn bookmarks_reach_the_owners_other_devices_and_nobody_else() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    let bookmarks = "urn:xmpp:bookmarks:1";
    let notify = format!("{bookmarks}+notify");
    assert!(online_with(&mut sim, bob, &[&notify]));
    let laptop = sim.login("alice", "pw", "laptop");
    online_with(&mut sim, laptop, &[&notify]);
    sim.send(alice, "<presence/>");
    for c in [bob, laptop] {
        sim.take(c);
    }
    // XEP-0402 §4: whitelist, every item kept.
    let private = options(&[
        ("pubsub#access_model", "whitelist"),
        ("pubsub#max_items", "max"),
        ("pubsub#send_last_published_item", "never"),
    ]);
    let room = "<conference xmlns='urn:xmpp:bookmarks:1' name='Ops' autojoin='true'><nick>Alice</nick></conference>";
    for r in ["ops@conference.localhost", "field@conference.localhost"] {
        let out = publish(&mut sim, alice, bookmarks, r, room, &private);
        assert!(out.contains("type='result'"), "{out}");
    }
    let got = sim.take(laptop);
    assert_eq!(got.matches("<item id=").count(), 2, "{got}");
    assert_eq!(sim.take(bob), "", "a contact never hears of them");
    let refused = items(&mut sim, bob, "alice", bookmarks);
    assert!(refused.contains("<closed-node"), "{refused}");
    // A device coming online later gets no last item (send_last never) but reads them all.
    let phone = sim.login("alice", "pw", "phone");
    online_with(&mut sim, phone, &[&notify]);
    assert!(!sim.take(phone).contains("<item id="));
    let all = items(&mut sim, phone, "alice", bookmarks);
    assert_eq!(all.matches("<conference").count(), 2, "{all}");
}

fn private(sim: &mut SimNode, conn: u64, kind: &str, inner: &str) -> String {
    sim.send(
        conn,
        &format!("<iq type='{kind}' id='p'><query xmlns='jabber:iq:private'>{inner}</query></iq>"),
    );
    sim.take(conn)
}

/// Alice's phone (XEP-0402), her old laptop reading private XML and her
/// old tablet asking for the XEP-0048 PEP node.
fn three_bookmark_clients(sim: &mut SimNode) -> (u64, u64, u64) {
    let phone = sim.login("alice", "pw", "phone");
    let laptop = sim.login("alice", "pw", "laptop");
    let tablet = sim.login("alice", "pw", "tablet");
    online_with(sim, phone, &["urn:xmpp:bookmarks:1+notify"]);
    online_with(sim, laptop, &[]);
    online_with(sim, tablet, &["storage:bookmarks+notify"]);
    for c in [phone, laptop, tablet] {
        sim.take(c);
    }
    (phone, laptop, tablet)
}

#[test]
fn bookmarks_written_by_an_old_client_are_read_by_a_new_one_and_back() {
    let mut sim = node();
    let (phone, laptop, tablet) = three_bookmark_clients(&mut sim);
    sim.send(laptop, "<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let info = sim.take(laptop);
    assert!(
        info.contains("urn:xmpp:bookmarks-conversion:0")
            && info.contains("urn:xmpp:bookmarks:1#compat"),
        "{info}"
    );
    // The laptop saves two rooms and a web link in private XML.
    let old = "<storage xmlns='storage:bookmarks'>\
        <conference jid='ops@conference.localhost' name='Ops' autojoin='true'><nick>Alice</nick><password>s3cret</password></conference>\
        <conference jid='field@conference.localhost' name='Field'/>\
        <url name='Wiki' url='https://wiki.example/'/></storage>";
    assert!(private(&mut sim, laptop, "set", old).contains("type='result'"));
    let told = sim.take(phone);
    assert_eq!(
        told.matches("<conference xmlns='urn:xmpp:bookmarks:1'")
            .count(),
        2,
        "{told}"
    );
    assert!(told.contains("<item id='ops@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' name='Ops' autojoin='true'><nick>Alice</nick><password>s3cret</password>"), "{told}");
    let tablet_told = sim.take(tablet);
    assert!(tablet_told.contains("<items node='storage:bookmarks'><item id='current'><storage xmlns='storage:bookmarks'>"), "{tablet_told}");
    assert!(
        tablet_told.contains("field@conference.localhost") && tablet_told.contains("wiki.example"),
        "{tablet_told}"
    );
    let new = items(&mut sim, phone, "alice", "urn:xmpp:bookmarks:1");
    assert_eq!(new.matches("<conference").count(), 2, "{new}");
    // The phone renames one and drops the other; the old forms follow.
    let room = "<conference xmlns='urn:xmpp:bookmarks:1' name='Operations' autojoin='true'><nick>Al</nick></conference>";
    assert!(publish(
        &mut sim,
        phone,
        "urn:xmpp:bookmarks:1",
        "ops@conference.localhost",
        room,
        ""
    )
    .contains("type='result'"));
    sim.send(phone, &format!("<iq type='set' id='r'><pubsub xmlns='{PUBSUB}'><retract node='urn:xmpp:bookmarks:1' notify='true'><item id='field@conference.localhost'/></retract></pubsub></iq>"));
    sim.take(phone);
    let read = private(
        &mut sim,
        laptop,
        "get",
        "<storage xmlns='storage:bookmarks'/>",
    );
    assert!(read.contains("<conference jid='ops@conference.localhost' name='Operations' autojoin='true'><nick>Al</nick></conference>"), "{read}");
    assert!(!read.contains("field@"), "{read}");
    assert!(
        read.contains("<url name='Wiki' url='https://wiki.example/'/>"),
        "the link is kept: {read}"
    );
    let last = sim.take(tablet);
    assert!(
        last.contains("Operations") && !last.rsplit("<message").next().unwrap().contains("field@"),
        "{last}"
    );
    // The tablet reads and writes the old PEP node.
    let read = items(&mut sim, tablet, "alice", "storage:bookmarks");
    assert!(read.contains("<item id='current'><storage xmlns='storage:bookmarks'><conference jid='ops@conference.localhost'"), "{read}");
    let written = publish(&mut sim, tablet, "storage:bookmarks", "current", "<storage xmlns='storage:bookmarks'><conference jid='ops@conference.localhost' name='Operations' autojoin='false'/></storage>", "");
    assert!(written.contains("type='result'"), "{written}");
    let told = sim.take(phone);
    assert!(
        told.contains("<conference xmlns='urn:xmpp:bookmarks:1' name='Operations'/>"),
        "autojoin off, nick gone: {told}"
    );
    let read = private(
        &mut sim,
        laptop,
        "get",
        "<storage xmlns='storage:bookmarks'/>",
    );
    assert!(
        !read.contains("wiki.example"),
        "the tablet's list had no link: {read}"
    );
}

#[test]
fn an_old_client_is_held_to_the_bookmark_bounds_and_a_refused_write_changes_nothing() {
    let mut sim = node();
    let (phone, laptop, _) = three_bookmark_clients(&mut sim);
    let one =
        "<storage xmlns='storage:bookmarks'><conference jid='ops@conference.localhost'/></storage>";
    assert!(private(&mut sim, laptop, "set", one).contains("type='result'"));
    sim.take(phone);
    let mut many = "<storage xmlns='storage:bookmarks'>".to_string();
    for i in 0..=pep::MAX_ITEMS {
        many.push_str(&format!("<conference jid='r{i}@conference.localhost'/>"));
    }
    many.push_str("</storage>");
    let out = private(&mut sim, laptop, "set", &many);
    assert!(out.contains("<resource-constraint"), "{out}");
    assert_eq!(sim.take(phone), "", "nothing changed, nobody told");
    let read = private(
        &mut sim,
        laptop,
        "get",
        "<storage xmlns='storage:bookmarks'/>",
    );
    assert_eq!(read.matches("<conference").count(), 1, "{read}");
    // Bytes: with the account nearly full of other items, a list with a
    // long link does not fit either.
    let keep = options(&[("pubsub#max_items", "max")]);
    let big = format!("<x xmlns='t'>{}</x>", "a".repeat(48 * 1024 - 20));
    let mut i = 0;
    while publish(&mut sim, phone, "fill", &format!("i{i}"), &big, &keep).contains("type='result'")
    {
        i += 1;
    }
    let long = format!("<storage xmlns='storage:bookmarks'><conference jid='ops@conference.localhost'/><url name='x' url='{}'/></storage>", "u".repeat(48 * 1024));
    assert!(private(&mut sim, laptop, "set", &long).contains("<resource-constraint"));
    assert_eq!(
        private(
            &mut sim,
            laptop,
            "get",
            "<storage xmlns='storage:bookmarks'/>"
        ),
        read
    );
}

#[test]
fn extensions_of_a_new_client_survive_an_old_clients_write_and_a_restart() {
    let mut sim = node();
    let (phone, laptop, _) = three_bookmark_clients(&mut sim);
    let room = "<conference xmlns='urn:xmpp:bookmarks:1' name='Ops'><extensions><pinned xmlns='urn:xmpp:example'/></extensions></conference>";
    publish(
        &mut sim,
        phone,
        "urn:xmpp:bookmarks:1",
        "ops@conference.localhost",
        room,
        "",
    );
    let old = "<storage xmlns='storage:bookmarks'><conference jid='ops@conference.localhost' name='Ops!' autojoin='true'/></storage>";
    assert!(private(&mut sim, laptop, "set", old).contains("type='result'"));
    sim.crash_and_restart();
    let phone = sim.login("alice", "pw", "phone");
    let read = items(&mut sim, phone, "alice", "urn:xmpp:bookmarks:1");
    assert!(read.contains("name='Ops!' autojoin='true'><extensions><pinned xmlns='urn:xmpp:example'/></extensions>"), "{read}");
}

fn vcard_of(sim: &mut SimNode, conn: u64, owner: &str) -> String {
    sim.send(
        conn,
        &format!("<iq type='get' id='vc' to='{owner}@localhost'><vCard xmlns='vcard-temp'/></iq>"),
    );
    sim.take(conn)
}

/// A 1x1 PNG, and its XEP-0084 id (the hex SHA-1 of its bytes).
fn tiny_png() -> (Vec<u8>, String, String) {
    let png: Vec<u8> = [
        &b"\x89PNG\r\n\x1a\n"[..],
        &[
            0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0,
        ],
    ]
    .concat();
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &png);
    let id: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    (png, id, b64)
}

#[test]
fn a_photo_set_in_a_vcard_becomes_the_pep_avatar_and_its_hash_rides_on_presence() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    assert!(online_with(&mut sim, bob, &[&format!("{AVATAR}+notify")]));
    sim.send(alice, "<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    assert!(sim.take(alice).contains("urn:xmpp:pep-vcard-conversion:0"));
    let (png, id, b64) = tiny_png();
    // An old client sets its vCard with a photo (base64 folded over lines).
    let folded = format!("{}\n {}", &b64[..20], &b64[20..]);
    sim.send(alice, &format!("<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><BINVAL>{folded}</BINVAL></PHOTO></vCard></iq>"));
    assert!(sim.take(alice).contains("type='result'"));
    let told = sim.take(bob);
    assert!(told.contains(&format!("<item id='{id}'><metadata xmlns='{AVATAR}'><info id='{id}' bytes='{}' type='image/png'/>", png.len())), "{told}");
    let data = items(&mut sim, bob, "alice", "urn:xmpp:avatar:data");
    assert!(
        data.contains(&format!("<data xmlns='urn:xmpp:avatar:data'>{b64}</data>")),
        "{data}"
    );
    // Anyone reads the photo in the vCard, as before; it is kept once.
    let eve = sim.login("eve", "pw", "e");
    let card = vcard_of(&mut sim, eve, "alice");
    assert!(
        card.contains("<FN>Alice</FN>")
            && card.contains(&format!(
                "<PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO>"
            )),
        "{card}"
    );
    let stored = &sim.node.state().accounts["alice"].pep["vcard-temp"];
    assert!(
        !stored.items[0].xml.contains("BINVAL"),
        "the photo is not kept twice"
    );
    // Presence carries its hash, to contacts and into a room; a client's
    // own empty photo is its word.
    sim.send(alice, "<presence><show>away</show></presence>");
    let p = sim.take(bob);
    assert!(
        p.contains(&format!(
            "<x xmlns='vcard-temp:x:update'><photo>{id}</photo></x>"
        )),
        "{p}"
    );
    sim.send(alice, "<presence to='ops@conference.localhost/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    sim.send(alice, "<iq type='set' id='cfg' to='ops@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>");
    sim.take(alice);
    sim.send(bob, "<presence to='ops@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    let room = sim.take(bob);
    assert!(
        room.contains("from='ops@conference.localhost/Alice'")
            && room.contains(&format!("<photo>{id}</photo>")),
        "{room}"
    );
    sim.send(
        alice,
        "<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>",
    );
    let p = sim.take(bob);
    assert!(p.contains("<photo/>") && !p.contains(&id), "{p}");
    // The same photo set again publishes nothing.
    sim.send(alice, &format!("<iq type='set' id='v2'><vCard xmlns='vcard-temp'><FN>Alice L.</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO></vCard></iq>"));
    assert!(sim.take(alice).contains("type='result'"));
    assert_eq!(sim.take(bob), "");
}

#[test]
fn a_pep_avatar_is_the_vcards_photo_for_those_who_may_see_it() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    sim.send(bob, "<presence/>");
    let (_, id, b64) = tiny_png();
    // A modern client publishes with PEP's default access: contacts only.
    let data = format!("<data xmlns='urn:xmpp:avatar:data'>{b64}</data>");
    assert!(
        publish(&mut sim, alice, "urn:xmpp:avatar:data", &id, &data, "").contains("type='result'")
    );
    let meta = format!(
        "<metadata xmlns='{AVATAR}'><info id='{id}' bytes='21' type='image/png'/></metadata>"
    );
    assert!(publish(&mut sim, alice, AVATAR, &id, &meta, "").contains("type='result'"));
    let card = vcard_of(&mut sim, bob, "alice");
    assert!(card.contains(&format!("<BINVAL>{b64}</BINVAL>")), "{card}");
    let eve = sim.login("eve", "pw", "e");
    let card = vcard_of(&mut sim, eve, "alice");
    assert!(
        !card.contains("PHOTO"),
        "a stranger does not see it: {card}"
    );
    // Switched off: no photo, and presence says so.
    let off = format!("<metadata xmlns='{AVATAR}'/>");
    publish(&mut sim, alice, AVATAR, "off", &off, "");
    assert!(!vcard_of(&mut sim, bob, "alice").contains("PHOTO"));
    sim.take(bob);
    sim.send(alice, "<presence/>");
    let p = sim.take(bob);
    assert!(
        p.contains("<x xmlns='vcard-temp:x:update'><photo/></x>"),
        "{p}"
    );
}

#[test]
fn a_vcard_photo_that_is_not_base64_or_does_not_fit_is_refused_and_stores_nothing() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    sim.send(alice, "<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>A</FN><PHOTO><BINVAL>not*base64</BINVAL></PHOTO></vCard></iq>");
    assert!(sim.take(alice).contains("<bad-request"));
    assert!(
        !vcard_of(&mut sim, alice, "alice").contains("<FN>"),
        "nothing stored"
    );
    // The account nearly full: a photo past what is left is refused.
    let keep = options(&[("pubsub#max_items", "max")]);
    let big = format!("<x xmlns='t'>{}</x>", "a".repeat(48 * 1024 - 20));
    let mut i = 0;
    while publish(&mut sim, alice, "fill", &format!("i{i}"), &big, &keep).contains("type='result'")
    {
        i += 1;
    }
    let photo = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 40 * 1024]);
    sim.send(alice, &format!("<iq type='set' id='v2'><vCard xmlns='vcard-temp'><FN>A</FN><PHOTO><BINVAL>{photo}</BINVAL></PHOTO></vCard></iq>"));
    assert!(sim.take(alice).contains("<resource-constraint"));
    let pep = &sim.node.state().accounts["alice"].pep;
    assert!(!pep.contains_key("urn:xmpp:avatar:data") && !pep.contains_key("vcard-temp"));
    assert!(pep::account_bytes(pep) <= pep::BYTES_PER_ACCOUNT);
}

#[test]
fn a_client_that_never_answers_its_capabilities_holds_up_no_other() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    let eve = sim.login("eve", "pw", "e");
    let (_, ver) = disco(&[&format!("{AVATAR}+notify")]);
    // Eve announces Bob's capabilities and never answers the question.
    sim.send(eve, &format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://test.example' ver='{ver}'/></presence>"));
    assert!(sim.take(eve).contains("<iq type='get'"));
    assert!(
        online_with(&mut sim, bob, &[&format!("{AVATAR}+notify")]),
        "Bob is asked too"
    );
    sim.send(alice, "<presence/>");
    sim.take(bob);
    publish(&mut sim, alice, AVATAR, "v1", &metadata(1), "");
    assert!(sim.take(bob).contains("<item id='v1'>"));
}

#[test]
fn last_items_respect_blocks_and_come_again_after_a_session_was_away() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    publish(&mut sim, alice, AVATAR, "v1", &metadata(1), "");
    assert!(online_with(&mut sim, bob, &[&format!("{AVATAR}+notify")]));
    assert!(sim.take(bob).contains("<item id='v1'>"));
    // Unavailable, a new item, back: the last item again.
    sim.send(bob, "<presence type='unavailable'/>");
    publish(&mut sim, alice, AVATAR, "v2", &metadata(2), "");
    sim.take(bob);
    sim.send(bob, &format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://test.example' ver='{}'/></presence>", disco(&[&format!("{AVATAR}+notify")]).1));
    assert!(sim.take(bob).contains("<item id='v2'>"));
    // Once Alice blocks Bob, he gets none.
    sim.send(alice, "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>");
    sim.take(alice);
    sim.send(bob, "<presence type='unavailable'/>");
    sim.take(bob);
    sim.send(bob, &format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://test.example' ver='{}'/></presence>", disco(&[&format!("{AVATAR}+notify")]).1));
    assert!(!sim.take(bob).contains("<item"));
}

#[test]
fn the_owner_creates_nodes_and_is_told_what_is_not_implemented() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    sim.send(alice, &format!("<iq type='set' id='c'><pubsub xmlns='{PUBSUB}'><create node='mine'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>"));
    assert!(sim.take(alice).contains("type='result'"));
    sim.send(
        alice,
        &format!(
            "<iq type='set' id='c2'><pubsub xmlns='{PUBSUB}'><create node='mine'/></pubsub></iq>"
        ),
    );
    assert!(sim.take(alice).contains("<conflict"));
    sim.send(alice, &format!("<iq type='set' id='pg'><pubsub xmlns='{PUBSUB}#owner'><purge node='mine'/></pubsub></iq>"));
    let out = sim.take(alice);
    assert!(
        out.contains("<feature-not-implemented") && out.contains("feature='purge-nodes'"),
        "{out}"
    );
    let eve = sim.login("eve", "pw", "e");
    assert!(
        items(&mut sim, eve, "alice", "mine").contains("type='result'"),
        "open, empty"
    );
}

#[test]
fn all_accounts_together_are_held_to_the_node_total() {
    let mut sim = node();
    let per_account = pep::BYTES_PER_ACCOUNT / (48 * 1024);
    let accounts = pep::BYTES_TOTAL / pep::BYTES_PER_ACCOUNT + 1;
    let keep = options(&[("pubsub#max_items", "max")]);
    let big = format!("<x xmlns='t'>{}</x>", "a".repeat(48 * 1024 - 20));
    let mut refused = None;
    'all: for a in 0..accounts {
        let user = format!("u{a}");
        sim.add_user(&user, "pw");
        let conn = sim.login(&user, "pw", "r");
        for i in 0..per_account {
            let out = publish(&mut sim, conn, "fill", &format!("i{i}"), &big, &keep);
            if !out.contains("type='result'") {
                assert!(out.contains("<resource-constraint"), "{out}");
                refused = Some((a, i));
                break 'all;
            }
        }
    }
    let (a, _) = refused.expect("the node total refused a publish");
    assert_eq!(
        a,
        accounts - 1,
        "refused only once the others filled the node"
    );
    let all: usize = sim
        .node
        .state()
        .accounts
        .values()
        .map(|acc| pep::account_bytes(&acc.pep))
        .sum();
    assert!(
        all <= pep::BYTES_TOTAL && all + 48 * 1024 > pep::BYTES_TOTAL,
        "{all}"
    );
}

/// SUBSCRIBERS_PER_NODE counts JIDs, and one account may subscribe any
/// number of its own full JIDs (bound or not): a stranger takes every
/// slot of someone's open node (an avatar made from a vCard is open)
/// with 128 invented resources, and the owner's contacts are locked out.
#[test]
fn one_stranger_cannot_take_every_subscription_slot_of_an_open_node() {
    let mut sim = node();
    let (alice, bob) = friends(&mut sim);
    let open = options(&[("pubsub#access_model", "open")]);
    publish(&mut sim, alice, "news", "n1", "<n xmlns='x'>one</n>", &open);
    let eve = sim.login("eve", "pw", "e");
    let mut taken = 0;
    for i in 0..outpost::model::pep::SUBSCRIBERS_PER_NODE {
        let out = subscribe(
            &mut sim,
            eve,
            "alice",
            "news",
            &format!("eve@localhost/r{i}"),
        );
        if !out.contains("subscription='subscribed'") {
            break;
        }
        taken += 1;
    }
    let out = subscribe(&mut sim, bob, "alice", "news", "bob@localhost");
    assert!(
        out.contains("subscription='subscribed'"),
        "Eve took {taken} slots with invented resources and Bob, Alice's contact, is refused: {out}"
    );
}

/// Before the conversion, `storage:bookmarks` was an ordinary PEP node,
/// made with the PEP default (presence access) by a client that sent no
/// publish-options. After the upgrade the owner's requests to that name
/// are answered from the XEP-0402 node and the old node is never
/// migrated: the owner loses those bookmarks, cannot delete the node any
/// more, and contacts still read it (passwords included).
#[test]
fn bookmarks_in_the_old_pep_node_survive_the_upgrade_and_stay_private() {
    let mut sim = node();
    let (_, _) = friends(&mut sim);
    // The log as the previous version left it.
    let old = "<storage xmlns='storage:bookmarks'><conference jid='ops@conference.localhost' autojoin='true'><nick>A</nick><password>s3cret</password></conference></storage>";
    for change in [
        PepRecord::Configured {
            config: PepConfig::default(),
        },
        PepRecord::Published {
            item: PepItem {
                id: "current".into(),
                xml: old.into(),
                stamp_ms: 1,
            },
        },
    ] {
        let r = Record::Pep {
            user: "alice".into(),
            node: "storage:bookmarks".into(),
            change,
        };
        sim.log.append(r.kind(), &r.encode()).unwrap();
    }
    sim.log.commit().unwrap();
    sim.crash_and_restart();
    let alice = sim.login("alice", "pw", "a2");
    let bob = sim.login("bob", "pw", "b2");
    // A contact reads the owner's old bookmarks, password and all.
    let leaked = items(&mut sim, bob, "alice", "storage:bookmarks");
    // The owner sees none of them, in either form.
    let own_old = items(&mut sim, alice, "alice", "storage:bookmarks");
    let own_new = items(&mut sim, alice, "alice", "urn:xmpp:bookmarks:1");
    // ... and cannot delete the node that leaks them.
    sim.send(alice, &format!("<iq type='set' id='del'><pubsub xmlns='{PUBSUB}#owner'><delete node='storage:bookmarks'/></pubsub></iq>"));
    let delete = sim.take(alice);
    let mut wrong = Vec::new();
    if !own_old.contains("ops@conference.localhost")
        && !own_new.contains("ops@conference.localhost")
    {
        wrong.push(format!(
            "the owner's old bookmarks are gone from every view:\n{own_old}\n{own_new}"
        ));
    }
    if leaked.contains("s3cret") {
        wrong.push(format!("a contact still reads the old node: {leaked}"));
    }
    // The old node went with the upgrade: there is nothing left to delete.
    if !delete.contains("type='result'") && !delete.contains("<item-not-found") {
        wrong.push(format!("the owner cannot delete it: {delete}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Account deletion removes the account's nodes but not the explicit
/// subscriptions it held on other accounts' nodes: they keep their slots
/// (SUBSCRIBERS_PER_NODE), show in the owner's list, and an account made
/// later under the same name inherits them and is told of every change
/// without ever having subscribed.
#[test]
fn a_deleted_accounts_subscriptions_go_with_it() {
    let mut sim = node();
    let alice = sim.login("alice", "pw", "a");
    let open = options(&[("pubsub#access_model", "open")]);
    publish(&mut sim, alice, "news", "n1", "<n xmlns='x'>one</n>", &open);
    let eve = sim.login("eve", "pw", "e");
    assert!(subscribe(&mut sim, eve, "alice", "news", "eve@localhost").contains("subscribed"));
    assert_eq!(
        sim.admin(AdminCommand::UserDel { user: "eve".into() }),
        AdminReply::Done
    );
    sim.send(alice, &format!("<iq type='get' id='o'><pubsub xmlns='{PUBSUB}#owner'><subscriptions node='news'/></pubsub></iq>"));
    let list = sim.take(alice);
    sim.add_user("eve", "other");
    let new_eve = sim.login("eve", "other", "new");
    publish(&mut sim, alice, "news", "n2", "<n xmlns='x'>two</n>", "");
    let heard = sim.take(new_eve);
    assert!(
        !heard.contains("<item id='n2'>"),
        "a new account named eve hears a node it never subscribed to: {heard}"
    );
    assert!(
        !list.contains("eve@localhost"),
        "the deleted account still holds its slot: {list}"
    );
}
