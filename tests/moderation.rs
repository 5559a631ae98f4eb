//! Moderation of room messages (XEP-0425) through the nodes' inputs and
//! outputs: a moderator's retraction in both forms reaches every occupant,
//! leaves a tombstone in the archive (MAM and history) that survives a
//! restart, is refused to anyone else; in a room mastered at HQ, a
//! moderator at a site retracts through the master and the sites'
//! replicas keep the tombstone too.

use outpost::node::NodeConfig;
use outpost::sim::{between, Network, Shape, SimNode};

const ROOM: &str = "room@conference.localhost";
const MUC: &str = "http://jabber.org/protocol/muc";

fn join(sim: &mut SimNode, conn: u64, room: &str, nick: &str) -> String {
    sim.send(conn, &format!("<presence to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"));
    sim.take(conn)
}

fn setup() -> (SimNode, u64, u64, u64) {
    let mut sim = SimNode::new(NodeConfig::new("localhost"), 23);
    for u in ["alice", "bob", "carol"] {
        sim.add_user(u, "pw");
    }
    let alice = sim.login("alice", "pw", "pc");
    let bob = sim.login("bob", "pw", "pc");
    let carol = sim.login("carol", "pw", "pc");
    join(&mut sim, alice, ROOM, "Alice");
    sim.send(alice, &format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"));
    sim.take(alice);
    join(&mut sim, bob, ROOM, "Bob");
    join(&mut sim, carol, ROOM, "Carol");
    sim.take(alice);
    (sim, alice, bob, carol)
}

/// Bob says something bad; its stanza-id as everyone got it.
fn bad_message(sim: &mut SimNode, bob: u64, others: &[u64]) -> String {
    sim.send(bob, &format!("<message to='{ROOM}' type='groupchat' id='b1'><body>buy cheap watches</body></message>"));
    let got = sim.take(bob);
    for c in others {
        sim.take(*c);
    }
    between(&got, "<stanza-id xmlns='urn:xmpp:sid:0' id='", "'")
        .unwrap()
        .to_string()
}

fn mam(sim: &mut SimNode, conn: u64) -> String {
    sim.send(
        conn,
        &format!("<iq type='set' id='q' to='{ROOM}'><query xmlns='urn:xmpp:mam:2'/></iq>"),
    );
    sim.take(conn)
}

#[test]
fn a_moderator_retracts_a_message_for_everyone_and_in_the_archive() {
    let (mut sim, alice, bob, carol) = setup();
    let id = bad_message(&mut sim, bob, &[alice, carol]);
    // Carol is no moderator.
    sim.send(carol, &format!("<iq type='set' id='m0' to='{ROOM}'><moderate id='{id}' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>"));
    assert!(sim.take(carol).contains("<forbidden"));
    sim.send(alice, &format!("<iq type='set' id='m1' to='{ROOM}'><moderate id='nope' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>"));
    assert!(sim.take(alice).contains("<item-not-found"));
    sim.send(alice, &format!("<iq type='set' id='m2' to='{ROOM}'><moderate id='{id}' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate></iq>"));
    let out = sim.take(alice);
    assert!(
        out.contains("id='m2'") && out.contains("type='result'"),
        "{out}"
    );
    for c in [alice, bob, carol] {
        let got = if c == alice { out.clone() } else { sim.take(c) };
        assert!(
            got.contains(&format!("<retract xmlns='urn:xmpp:message-retract:1' id='{id}'><moderated xmlns='urn:xmpp:message-moderate:1' by='{ROOM}/Alice'>")),
            "{got}"
        );
        assert!(got.contains(&format!("<apply-to xmlns='urn:xmpp:fasten:0' id='{id}'><moderated xmlns='urn:xmpp:message-moderate:0' by='{ROOM}/Alice'>")), "{got}");
        assert!(got.contains("<reason>spam</reason>"), "{got}");
    }
    // The archive keeps a tombstone with the same stanza-id, and the retraction.
    let archived = mam(&mut sim, carol);
    assert!(!archived.contains("cheap watches"), "{archived}");
    assert!(
        archived.contains(&format!("id='{id}'"))
            && archived.contains("<retracted xmlns='urn:xmpp:message-retract:1' stamp="),
        "{archived}"
    );
    // So does the history a newcomer gets, and after a restart.
    sim.crash_and_restart();
    let carol = sim.login("carol", "pw", "pc");
    assert!(!mam(&mut sim, carol).contains("cheap watches"));
    sim.send(
        carol,
        &format!("<presence to='{ROOM}/Carol'><x xmlns='{MUC}'/></presence>"),
    );
    let history = sim.take(carol);
    assert!(
        history.contains("<retracted xmlns='urn:xmpp:message-retract:1' stamp=")
            && !history.contains("cheap watches"),
        "{history}"
    );
}

#[test]
fn the_older_form_clients_still_send_works_too() {
    let (mut sim, alice, bob, carol) = setup();
    let id = bad_message(&mut sim, bob, &[alice, carol]);
    sim.send(alice, &format!("<iq type='set' id='m' to='{ROOM}'><apply-to id='{id}' xmlns='urn:xmpp:fasten:0'><moderate xmlns='urn:xmpp:message-moderate:0'><retract xmlns='urn:xmpp:message-retract:0'/><reason>off topic</reason></moderate></apply-to></iq>"));
    assert!(sim.take(alice).contains("type='result'"));
    assert!(sim.take(carol).contains("<reason>off topic</reason>"));
    assert!(!mam(&mut sim, carol).contains("cheap watches"));
}

#[test]
fn a_moderator_at_a_site_retracts_through_hq_and_every_replica_keeps_the_tombstone() {
    const HQ_ROOM: &str = "ops@conference.fairfax.example";
    let mut net = Network::new();
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into(), "durham.example".into()];
    net.add_node(hq, 1);
    for (domain, seed) in [("raleigh.example", 2), ("durham.example", 3)] {
        let mut site = NodeConfig::new(domain);
        site.link.upstreams = vec!["conference.fairfax.example".into()];
        net.add_node(site, seed);
    }
    net.add_link(1, 0, Shape::default());
    net.add_link(2, 0, Shape::default());
    net.node(0).add_user("kevin", "pw");
    net.node(1).add_user("wayne", "pw");
    net.node(2).add_user("dana", "pw");
    let kevin = net.node(0).login("kevin", "pw", "hq");
    let wayne = net.node(1).login("wayne", "pw", "tv");
    let dana = net.node(2).login("dana", "pw", "tv");
    net.advance(100);
    net.node(0).send(
        kevin,
        &format!("<presence to='{HQ_ROOM}/Kevin'><x xmlns='{MUC}'/></presence>"),
    );
    net.node(0).send(kevin, &format!("<iq type='set' id='cfg' to='{HQ_ROOM}'><query xmlns='{MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    // Wayne is made a moderator (an admin of the room).
    net.node(0).send(kevin, &format!("<iq type='set' id='adm' to='{HQ_ROOM}'><query xmlns='{MUC}#admin'><item affiliation='admin' jid='wayne@raleigh.example'/></query></iq>"));
    net.settle();
    for (node, conn, nick) in [(1, wayne, "Wayne"), (2, dana, "Dana")] {
        net.node(node).send(
            conn,
            &format!("<presence to='{HQ_ROOM}/{nick}'><x xmlns='{MUC}'/></presence>"),
        );
    }
    net.settle();
    net.node(2).take(dana);
    net.node(2).send(dana, &format!("<message to='{HQ_ROOM}' type='groupchat' id='d1'><body>buy cheap watches</body></message>"));
    net.settle();
    let at_raleigh = net.node(1).take(wayne);
    let id = between(&at_raleigh, "<stanza-id xmlns='urn:xmpp:sid:0' id='", "'")
        .unwrap()
        .to_string();
    net.node(0).take(kevin);
    net.node(2).take(dana);
    net.node(1).send(wayne, &format!("<iq type='set' id='mod' to='{HQ_ROOM}'><moderate id='{id}' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/></moderate></iq>"));
    net.settle();
    let out = net.node(1).take(wayne);
    assert!(
        out.contains("id='mod'") && out.contains("type='result'"),
        "{out}"
    );
    for (node, conn) in [(0, kevin), (2, dana)] {
        let got = net.node(node).take(conn);
        assert!(
            got.contains(&format!(
                "<retract xmlns='urn:xmpp:message-retract:1' id='{id}'"
            )),
            "{got}"
        );
    }
    // Every archive: HQ's and both replicas (asked at each site).
    for (node, conn) in [(0, kevin), (1, wayne), (2, dana)] {
        net.node(node).send(
            conn,
            &format!("<iq type='set' id='q' to='{HQ_ROOM}'><query xmlns='urn:xmpp:mam:2'/></iq>"),
        );
        net.settle();
        let archived = net.node(node).take(conn);
        assert!(
            archived.contains("<retracted xmlns='urn:xmpp:message-retract:1' stamp=")
                && !archived.contains("cheap watches"),
            "node {node}: {archived}"
        );
    }
    // The replica's tombstone is the master's, byte for byte.
    let hq = net.node(0).node.state().rooms["ops"]
        .archive
        .replaced()
        .clone();
    let site = net.node(1).node.state().mirrors[HQ_ROOM]
        .state
        .archive
        .replaced()
        .clone();
    assert_eq!(hq, site);
    assert_eq!(hq.len(), 1);
}
