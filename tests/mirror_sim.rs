//! Mirroring (DMUC) across a simulated network: HQ masters the room, two
//! sites mirror it; one copy of each room event crosses each link.

use outpost::node::{Event, NodeConfig};
use outpost::sim::{between, Network, Shape};

const ROOM: &str = "chat@conference.fairfax.example";
const HQ: usize = 0;
const RALEIGH: usize = 1;
const DURHAM: usize = 2;

fn hq_config() -> NodeConfig {
    let mut c = NodeConfig::new("fairfax.example");
    c.link.peers = vec!["raleigh.example".into(), "durham.example".into()];
    c
}

fn site_config(domain: &str) -> NodeConfig {
    let mut c = NodeConfig::new(domain);
    c.link.upstreams = vec!["conference.fairfax.example".into()];
    c
}

struct World {
    net: Network,
    kevin: u64,
    wayne: u64,
    keith: u64,
    dana: u64,
}

fn world() -> World {
    world_with(hq_config())
}

/// As `world` with link compression off everywhere: for tests that read
/// or write the wire themselves, or count copies byte for byte.
fn plain_world() -> World {
    let mut hq = hq_config();
    hq.link.compress = false;
    world_of(hq, false)
}

/// HQ (with this configuration) and two sites; Kevin has created the room.
fn world_with(hq: NodeConfig) -> World {
    world_of(hq, true)
}

fn world_of(hq: NodeConfig, sites_compress: bool) -> World {
    let mut net = Network::new();
    net.add_node(hq, 1);
    for (domain, seed) in [("raleigh.example", 2), ("durham.example", 3)] {
        let mut site = site_config(domain);
        site.link.compress = sites_compress;
        net.add_node(site, seed);
    }
    net.add_link(RALEIGH, HQ, Shape::default());
    net.add_link(DURHAM, HQ, Shape::default());
    net.node(HQ).add_user("kevin", "k");
    net.node(RALEIGH).add_user("wayne", "w");
    net.node(RALEIGH).add_user("keith", "k");
    net.node(DURHAM).add_user("dana", "d");
    let kevin = net.node(HQ).login("kevin", "k", "hq");
    let wayne = net.node(RALEIGH).login("wayne", "w", "tv");
    let keith = net.node(RALEIGH).login("keith", "k", "tv");
    let dana = net.node(DURHAM).login("dana", "d", "tv");
    net.advance(100); // Sites dial HQ.
    join(&mut net, HQ, kevin, "Kevin"); // Kevin creates the room at HQ.
    net.node(HQ).send(kevin, &format!("<iq type='set' id='inst' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    net.settle();
    net.node(HQ).take(kevin);
    World {
        net,
        kevin,
        wayne,
        keith,
        dana,
    }
}

fn join(net: &mut Network, node: usize, conn: u64, nick: &str) -> String {
    net.node(node).send(
        conn,
        &format!(
            "<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ),
    );
    net.settle();
    net.node(node).take(conn)
}

fn say(net: &mut Network, node: usize, conn: u64, body: &str) {
    net.node(node).send(
        conn,
        &format!(
            "<message to='{ROOM}' type='groupchat' id='c-{body}'><body>{body}</body></message>"
        ),
    );
}

fn stanza_id(out: &str, body: &str) -> String {
    let at = out
        .find(&format!("<body>{body}</body>"))
        .expect("the message");
    between(&out[at..], "<stanza-id xmlns='urn:xmpp:sid:0' id='", "'")
        .expect("a stanza-id")
        .to_string()
}

#[test]
fn a_site_user_joins_a_room_at_hq_through_the_mirror() {
    let mut w = world();
    w.net.node(HQ).send(
        w.kevin,
        &format!("<message to='{ROOM}' type='groupchat'><subject>Ops</subject></message>"),
    );
    say(&mut w.net, HQ, w.kevin, "before-wayne");
    w.net.settle();
    w.net.node(HQ).take(w.kevin);
    let out = join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    let kevin_p = out
        .find(&format!("from='{ROOM}/Kevin'"))
        .expect("kevin's presence");
    let own = out.find("code='110'").expect("self-presence");
    let history = out.find("<body>before-wayne</body>").expect("history");
    let subject = out.find("<subject>Ops</subject>").expect("subject");
    assert!(kevin_p < own && own < history && history < subject, "{out}");
    assert!(
        out.contains("affiliation='owner' role='moderator'"),
        "{out}"
    );
    let seen = w.net.node(HQ).take(w.kevin);
    assert!(
        seen.contains(&format!("from='{ROOM}/Wayne'"))
            && seen.contains("jid='wayne@raleigh.example/tv'"),
        "{seen}"
    );
}

#[test]
fn one_copy_per_site_and_the_same_stanza_id_everywhere() {
    let mut w = plain_world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, DURHAM, w.dana, "Dana");
    w.net.node(HQ).take(w.kevin);
    w.net.reset_counters();
    say(&mut w.net, HQ, w.kevin, "one");
    w.net.advance(1000);
    let (_, one_occupant) = w.net.link_bytes(RALEIGH);
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    w.net.advance(1000);
    w.net.reset_counters();
    say(&mut w.net, HQ, w.kevin, "two");
    w.net.advance(1000);
    let (_, two_occupants) = w.net.link_bytes(RALEIGH);
    assert!(one_occupant > 0);
    // Equal up to an acknowledgement (`<a h='N'/>`) landing in one window and not the other.
    assert!(
        two_occupants.abs_diff(one_occupant) <= 16,
        "one copy per site: {one_occupant} vs {two_occupants}"
    );
    let at_wayne = w.net.node(RALEIGH).take(w.wayne);
    let at_keith = w.net.node(RALEIGH).take(w.keith);
    let at_dana = w.net.node(DURHAM).take(w.dana);
    let at_kevin = w.net.node(HQ).take(w.kevin);
    let id = stanza_id(&at_kevin, "two");
    for out in [&at_wayne, &at_keith, &at_dana] {
        assert_eq!(stanza_id(out, "two"), id);
    }
}

#[test]
fn a_site_message_is_delivered_locally_at_once_and_keeps_its_id() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    join(&mut w.net, DURHAM, w.dana, "Dana");
    for (n, c) in [(HQ, w.kevin), (RALEIGH, w.wayne), (RALEIGH, w.keith)] {
        w.net.node(n).take(c);
    }
    say(&mut w.net, RALEIGH, w.wayne, "from-raleigh");
    // Before anything crosses the link, the site has delivered it.
    let keith_now = w.net.node(RALEIGH).take(w.keith);
    let wayne_now = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        keith_now.contains("from-raleigh") && wayne_now.contains("id='c-from-raleigh'"),
        "{keith_now}"
    );
    let id = stanza_id(&keith_now, "from-raleigh");
    w.net.settle();
    let kevin = w.net.node(HQ).take(w.kevin);
    assert_eq!(
        stanza_id(&kevin, "from-raleigh"),
        id,
        "the site's id is kept at HQ"
    );
    assert_eq!(
        stanza_id(&w.net.node(DURHAM).take(w.dana), "from-raleigh"),
        id
    );
    assert!(
        !w.net.node(RALEIGH).take(w.keith).contains("from-raleigh"),
        "no duplicate at the site"
    );
    // HQ's archive holds it once, under that id.
    assert_eq!(
        w.net.node(HQ).node.state().rooms["chat"]
            .archive
            .iter()
            .filter(|m| m.stanza_id == id)
            .count(),
        1
    );
}

#[test]
fn join_errors_reach_only_the_failing_user() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.node(RALEIGH).take(w.wayne);
    let out = join(&mut w.net, RALEIGH, w.keith, "Kevin");
    assert!(
        out.contains("type='error'") && out.contains("<conflict"),
        "{out}"
    );
    assert!(out.contains("to='keith@raleigh.example/tv'"), "{out}");
    assert_eq!(
        w.net.node(RALEIGH).take(w.wayne),
        "",
        "wayne hears nothing of it"
    );
    // Keith can still join under a free nick.
    assert!(join(&mut w.net, RALEIGH, w.keith, "Keith").contains("code='110'"));
}

#[test]
fn leaving_and_the_mirror_going_away() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    w.net.node(RALEIGH).take(w.wayne);
    w.net.node(HQ).take(w.kevin);
    w.net.node(RALEIGH).send(
        w.keith,
        &format!("<presence to='{ROOM}/Keith' type='unavailable'/>"),
    );
    w.net.settle();
    assert!(w.net.node(RALEIGH).take(w.keith).contains("code='110'"));
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.wayne)
        .contains(&format!("from='{ROOM}/Keith'")));
    assert!(w
        .net
        .node(HQ)
        .take(w.kevin)
        .contains(&format!("from='{ROOM}/Keith'")));
    w.net.node(RALEIGH).disconnect(w.wayne);
    w.net.settle();
    assert!(w
        .net
        .node(HQ)
        .take(w.kevin)
        .contains(&format!("type='unavailable' from='{ROOM}/Wayne'")));
    // With no local occupant left the site keeps no copy, and HQ sends it nothing more.
    w.net.reset_counters();
    say(&mut w.net, HQ, w.kevin, "nobody-at-raleigh");
    w.net.advance(1000);
    let (_, down) = w.net.link_bytes(RALEIGH);
    assert!(down < 40, "only acks and keepalives, got {down} bytes");
}

#[test]
fn moderation_at_hq_reaches_site_users() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    w.net.node(RALEIGH).take(w.keith);
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='k' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Wayne' role='none'><reason>calm</reason></item></query></iq>"));
    w.net.settle();
    let wayne = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        wayne.contains("code='307'") && wayne.contains("code='110'"),
        "{wayne}"
    );
    assert!(w.net.node(RALEIGH).take(w.keith).contains("code='307'"));
    // A site user's admin action is decided by HQ: Keith may not kick Kevin.
    w.net.node(RALEIGH).send(w.keith, &format!("<iq type='set' id='k2' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Kevin' role='none'/></query></iq>"));
    w.net.settle();
    let out = w.net.node(RALEIGH).take(w.keith);
    assert!(
        out.contains("id='k2'") && out.contains("<forbidden"),
        "{out}"
    );
}

#[test]
fn private_messages_between_nodes() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.node(HQ).take(w.kevin);
    w.net.node(RALEIGH).send(
        w.wayne,
        &format!("<message to='{ROOM}/Kevin' type='chat'><body>psst</body></message>"),
    );
    w.net.settle();
    let out = w.net.node(HQ).take(w.kevin);
    assert!(
        out.contains(&format!("from='{ROOM}/Wayne'")) && out.contains("psst"),
        "{out}"
    );
    w.net.node(HQ).send(
        w.kevin,
        &format!("<message to='{ROOM}/Wayne' type='chat'><body>back</body></message>"),
    );
    w.net.settle();
    let out = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        out.contains(&format!("from='{ROOM}/Kevin'")) && out.contains("back"),
        "{out}"
    );
}

#[test]
fn events_queued_while_the_link_is_cut_arrive_once_after_reconnect() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.node(RALEIGH).take(w.wayne);
    w.net.cut(RALEIGH);
    say(&mut w.net, HQ, w.kevin, "while-cut");
    w.net.advance(500);
    assert!(!w.net.node(RALEIGH).take(w.wayne).contains("while-cut"));
    w.net.restore(RALEIGH);
    w.net.advance(5_000); // Redial with backoff, hello, resend.
    let out = w.net.node(RALEIGH).take(w.wayne);
    assert_eq!(out.matches("<body>while-cut</body>").count(), 1, "{out}");
    // Acknowledged: nothing stays queued at HQ.
    w.net.advance(1_000);
    assert!(w.net.node(HQ).node.state().links["raleigh.example"]
        .unacked
        .is_empty());
}

#[test]
fn self_ping_is_answered_at_the_site() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.reset_counters();
    w.net.node(RALEIGH).send(
        w.wayne,
        &format!("<iq type='get' id='sp' to='{ROOM}/Wayne'><ping xmlns='urn:xmpp:ping'/></iq>"),
    );
    assert!(w.net.node(RALEIGH).take(w.wayne).contains("id='sp'"));
    w.net.settle();
    assert_eq!(w.net.link_bytes(RALEIGH), (0, 0));
}

#[test]
fn a_site_may_speak_only_for_its_own_users() {
    let mut w = plain_world();
    // A forged join from raleigh's link on behalf of a durham user.
    let hq = w.net.node(HQ);
    let conn = hq.alloc_conn();
    hq.event(Event::LinkUp {
        conn,
        peer: "raleigh.example".into(),
    });
    hq.take(conn);
    let forged = "<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' from='raleigh.example' version='1.0'><hello received='0'/>\
        <e n='1'><join room='chat' nick='Mallory' from='dana@durham.example/x'><presence xmlns='jabber:client'/></join></e>";
    hq.send(conn, forged);
    assert!(!hq.node.state().rooms.is_empty());
    hq.take(w.kevin);
    w.net.settle();
    assert!(
        !w.net.node(HQ).take(w.kevin).contains("Mallory"),
        "the forged join was refused"
    );
    // Malformed frames close that link only.
    let hq = w.net.node(HQ);
    hq.send(conn, "<e n='2'><join/></e><bogus/>");
    assert!(hq.is_closed(conn));
    let out = join(&mut w.net, DURHAM, w.dana, "Dana");
    assert!(
        out.contains("code='110'"),
        "other links are unaffected: {out}"
    );
}

/// Open a raw link to HQ as raleigh and return (conn, HQ's greeting).
fn raw_link(w: &mut World) -> u64 {
    let hq = w.net.node(HQ);
    let conn = hq.alloc_conn();
    hq.event(Event::LinkUp {
        conn,
        peer: "raleigh.example".into(),
    });
    hq.take(conn);
    hq.send(conn, "<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' from='raleigh.example' version='1.0'><hello received='0'/>");
    conn
}

#[test]
fn acks_outside_the_window_close_the_link() {
    let mut w = plain_world();
    let conn = raw_link(&mut w);
    // HQ never sent event 5 on this link: acknowledging it is a lie.
    w.net.node(HQ).send(conn, "<a h='5'/>");
    assert!(w.net.node(HQ).is_closed(conn));
    let conn = raw_link(&mut w);
    // A hello claiming more than was ever sent is refused too.
    w.net.node(HQ).send(conn, "<hello received='99'/>");
    assert!(w.net.node(HQ).is_closed(conn));
}

#[test]
fn replayed_events_are_applied_once() {
    let mut w = plain_world();
    let conn = raw_link(&mut w);
    let join = "<e n='1'><join room='chat' nick='Wayne' from='wayne@raleigh.example/tv'><presence xmlns='jabber:client'/></join></e>";
    let msg = "<e n='2'><groupchat room='chat' from='wayne@raleigh.example/tv' nick='Wayne' id='raleigh-1'><message xmlns='jabber:client' type='groupchat'><body>once</body></message></groupchat></e>";
    w.net.node(HQ).send(conn, &format!("{join}{msg}{msg}"));
    // The same events again on a new connection (a resend after a lost ack).
    let again = raw_link(&mut w);
    w.net.node(HQ).send(again, &format!("{join}{msg}"));
    let kevin = w.net.node(HQ).take(w.kevin);
    assert_eq!(kevin.matches("<body>once</body>").count(), 1, "{kevin}");
    assert!(!w.net.node(HQ).is_closed(again));
    // Events that skip numbers mean lost events: the link is closed.
    w.net.node(HQ).send(again, "<e n='9'><leave room='chat' from='wayne@raleigh.example/tv'><presence xmlns='jabber:client'/></leave></e>");
    assert!(w.net.node(HQ).is_closed(again));
}

#[test]
fn events_from_site_users_not_in_a_room_are_checked_like_joins() {
    let mut w = plain_world();
    // Wayne is banned; then his site claims he speaks in the room.
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='b' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='wayne@raleigh.example' affiliation='outcast'/></query></iq>"));
    w.net.settle();
    w.net.node(HQ).take(w.kevin);
    let conn = raw_link(&mut w);
    w.net.node(HQ).send(conn, "<e n='1'><groupchat room='chat' from='wayne@raleigh.example/tv' nick='Wayne' id='x'><message xmlns='jabber:client' type='groupchat'><body>banned words</body></message></groupchat></e>\
        <e n='2'><leave room='chat' from='wayne@raleigh.example/tv'><presence xmlns='jabber:client'/></leave></e>\
        <e n='3'><groupchat room='nosuchroom' from='wayne@raleigh.example/tv' nick='W' id='y'><message xmlns='jabber:client' type='groupchat'><body>nowhere</body></message></groupchat></e>");
    let kevin = w.net.node(HQ).take(w.kevin);
    assert!(
        !kevin.contains("banned words") && !kevin.contains("nowhere"),
        "{kevin}"
    );
    assert!(w.net.node(HQ).node.state().rooms["chat"].archive.is_empty());
    assert!(!w.net.node(HQ).node.state().rooms.contains_key("nosuchroom"));
    assert!(!w.net.node(HQ).is_closed(conn), "refused, not fatal");
    // The refusals go back to the user through the link.
    let out = w.net.node(HQ).take(conn);
    assert!(out.contains("forbidden"), "{out}");
}

/// Runs the documented exchange and prints the wire text (docs/protocol.md).
#[test]
fn capture_protocol_examples() {
    let mut w = plain_world();
    w.net.take_transcript(RALEIGH);
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    let join_wire = w.net.take_transcript(RALEIGH);
    say(&mut w.net, RALEIGH, w.wayne, "hello");
    w.net.settle();
    w.net.advance(1000);
    let msg_wire = w.net.take_transcript(RALEIGH);
    let text = |wire: &[(bool, String)], up: bool| -> String {
        wire.iter()
            .filter(|(u, _)| *u == up)
            .map(|(_, t)| t.as_str())
            .collect()
    };
    // What docs/protocol.md shows: the forwarded join, the snapshot, the
    // site's message with its minted id, the master's numbered echo.
    assert!(text(&join_wire, true)
        .contains("<join room='chat' nick='Wayne' from='wayne@raleigh.example/tv'>"));
    assert!(text(&join_wire, false).contains("<snapshot room='chat'"));
    assert!(text(&msg_wire, true).contains(
        "<groupchat room='chat' from='wayne@raleigh.example/tv' nick='Wayne' id='raleigh.example-"
    ));
    assert!(text(&msg_wire, false).contains("<message room='chat'><m seq='1' id='raleigh.example-"));
    for (title, wire) in [("join", join_wire), ("message", msg_wire)] {
        println!("==== {title}");
        for (up, text) in wire {
            println!("{} {text}", if up { "S->M" } else { "M->S" });
        }
    }
}

#[test]
fn a_site_user_disconnecting_while_others_watch() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    // Kevin makes Keith a moderator at the site, so Keith sees real JIDs.
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='m' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Keith' role='moderator'/></query></iq>"));
    w.net.settle();
    w.net.node(RALEIGH).take(w.keith);
    w.net.node(RALEIGH).disconnect(w.wayne);
    w.net.settle();
    let out = w.net.node(RALEIGH).take(w.keith);
    assert!(
        out.contains(&format!("type='unavailable' from='{ROOM}/Wayne'")),
        "{out}"
    );
    assert!(w
        .net
        .node(HQ)
        .take(w.kevin)
        .contains(&format!("type='unavailable' from='{ROOM}/Wayne'")));
}

#[test]
fn queued_events_survive_a_restart_of_hq_and_arrive_once() {
    let mut w = world();
    let room_key = "chat";
    // Make the room persistent so it outlives HQ's restart.
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='p' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"));
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000); // Acknowledgements flow.
    w.net.node(RALEIGH).take(w.wayne);
    w.net.cut(RALEIGH);
    say(&mut w.net, HQ, w.kevin, "queued-at-hq");
    w.net.advance(100);
    assert_eq!(
        w.net.node(HQ).node.state().links["raleigh.example"]
            .unacked
            .len(),
        1
    );
    w.net.crash_and_restart(HQ);
    assert_eq!(
        w.net.node(HQ).node.state().links["raleigh.example"]
            .unacked
            .len(),
        1,
        "the queue is in the log"
    );
    assert!(w.net.node(HQ).node.state().rooms.contains_key(room_key));
    w.net.restore(RALEIGH);
    w.net.advance(10_000);
    let out = w.net.node(RALEIGH).take(w.wayne);
    assert_eq!(out.matches("<body>queued-at-hq</body>").count(), 1, "{out}");
}

#[test]
fn nick_changes_through_the_mirror() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    w.net.node(RALEIGH).take(w.keith);
    w.net.node(HQ).take(w.kevin);
    w.net
        .node(RALEIGH)
        .send(w.wayne, &format!("<presence to='{ROOM}/W2'/>"));
    w.net.settle();
    for out in [
        w.net.node(RALEIGH).take(w.keith),
        w.net.node(HQ).take(w.kevin),
    ] {
        assert!(
            out.contains("code='303'") && out.contains("nick='W2'"),
            "{out}"
        );
        assert!(out.contains(&format!("from='{ROOM}/W2'")), "{out}");
    }
    let own = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        own.contains("code='110'") && own.contains("code='303'"),
        "{own}"
    );
    say(&mut w.net, RALEIGH, w.wayne, "renamed");
    w.net.settle();
    assert!(w
        .net
        .node(HQ)
        .take(w.kevin)
        .contains(&format!("from='{ROOM}/W2'")));
}

#[test]
fn archive_queries_are_answered_at_the_site() {
    let mut w = world();
    for i in 0..5 {
        say(&mut w.net, HQ, w.kevin, &format!("old{i}"));
    }
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    say(&mut w.net, HQ, w.kevin, "new");
    w.net.settle();
    w.net.node(RALEIGH).take(w.wayne);
    w.net.reset_counters();
    w.net.node(RALEIGH).send(
        w.wayne,
        &format!(
            "<iq type='set' id='mam' to='{ROOM}'><query xmlns='urn:xmpp:mam:2' queryid='q'/></iq>"
        ),
    );
    let out = w.net.node(RALEIGH).take(w.wayne);
    assert_eq!(
        out.matches("<result xmlns='urn:xmpp:mam:2' queryid='q'")
            .count(),
        6,
        "{out}"
    );
    assert!(out.contains("complete='true'"), "{out}");
    assert_eq!(
        w.net.link_bytes(RALEIGH),
        (0, 0),
        "answered without the link"
    );
    // The same stanza-ids as HQ's archive.
    let hq_ids: Vec<String> = w.net.node(HQ).node.state().rooms["chat"]
        .archive
        .iter()
        .map(|m| m.stanza_id.clone())
        .collect();
    for id in hq_ids {
        assert!(out.contains(&format!("id='{id}'")), "{id}");
    }
}

#[test]
fn the_service_advertises_dmuc() {
    let mut w = world();
    w.net.node(HQ).send(w.kevin, "<iq type='get' id='d' to='conference.fairfax.example'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    assert!(w
        .net
        .node(HQ)
        .take(w.kevin)
        .contains("var='urn:xmpp:dmuc:0'"));
}

#[test]
fn subject_config_and_bans_made_at_hq_take_effect_at_sites() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    w.net.node(RALEIGH).take(w.wayne);
    w.net.node(HQ).send(
        w.kevin,
        &format!("<message to='{ROOM}' type='groupchat'><subject>New topic</subject></message>"),
    );
    w.net.settle();
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.wayne)
        .contains("<subject>New topic</subject>"));
    // A ban removes the site user at once and keeps them out.
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='b' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='keith@raleigh.example' affiliation='outcast'/></query></iq>"));
    w.net.settle();
    assert!(w.net.node(RALEIGH).take(w.keith).contains("code='301'"));
    assert!(w.net.node(RALEIGH).take(w.wayne).contains("code='301'"));
    let out = join(&mut w.net, RALEIGH, w.keith, "Keith");
    assert!(out.contains("<forbidden"), "{out}");
    // A moderated room: a newcomer at the site is a visitor and may not speak.
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='c' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_moderatedroom'><value>1</value></field></x></query></iq>"));
    w.net.settle();
    w.net.node(RALEIGH).add_user("ann", "a");
    let ann = w.net.node(RALEIGH).login("ann", "a", "tv");
    let out = join(&mut w.net, RALEIGH, ann, "Ann");
    assert!(out.contains("role='visitor'"), "{out}");
    say(&mut w.net, RALEIGH, ann, "may-i");
    assert!(w.net.node(RALEIGH).take(ann).contains("<forbidden"));
    w.net.settle();
    assert!(!w.net.node(HQ).take(w.kevin).contains("may-i"));
}

#[test]
fn an_oversized_frame_closes_only_that_link() {
    let mut w = plain_world();
    let conn = raw_link(&mut w);
    let flood = format!(
        "<e n='1'><relay from='x@raleigh.example/y' to='{ROOM}'>{}",
        "<a/>".repeat(outpost::link::MAX_LINK_FRAME / 4 + 1024)
    );
    w.net.node(HQ).send(conn, &flood);
    assert!(w.net.node(HQ).is_closed(conn));
    assert!(join(&mut w.net, DURHAM, w.dana, "Dana").contains("code='110'"));
}

/// Wayne and Keith (Raleigh) are in the room, everyone's output is read,
/// and Raleigh's link is cut.
fn split_with_wayne_and_keith_in() -> World {
    let mut w = plain_world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    w.net.advance(1_000);
    for c in [w.wayne, w.keith] {
        w.net.node(RALEIGH).take(c);
    }
    w.net.node(HQ).take(w.kevin);
    w.net.cut(RALEIGH);
    w
}

#[test]
fn during_a_split_the_site_keeps_chatting_and_what_needs_hq_fails_at_once() {
    let mut w = split_with_wayne_and_keith_in();
    w.net.advance(1_000);
    // Local chat goes on, delivered at once.
    say(&mut w.net, RALEIGH, w.wayne, "during-split");
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.keith)
        .contains("<body>during-split</body>"));
    // Self-ping is answered.
    w.net.node(RALEIGH).send(
        w.wayne,
        &format!("<iq type='get' id='sp' to='{ROOM}/Wayne'><ping xmlns='urn:xmpp:ping'/></iq>"),
    );
    assert!(w.net.node(RALEIGH).take(w.wayne).contains("id='sp'"));
    // Administration and joining an unknown room need HQ: a clear error now.
    w.net.node(RALEIGH).send(w.keith, &format!("<iq type='set' id='k' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Kevin' role='none'/></query></iq>"));
    let out = w.net.node(RALEIGH).take(w.keith);
    assert!(
        out.contains("id='k'")
            && out.contains("<remote-server-timeout")
            && out.contains("unreachable"),
        "{out}"
    );
    w.net.node(RALEIGH).send(w.keith, "<presence to='other@conference.fairfax.example/K'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    let out = w.net.node(RALEIGH).take(w.keith);
    assert!(
        out.contains("type='error'") && out.contains("<remote-server-timeout"),
        "{out}"
    );
    // Leaving is confirmed at once.
    w.net.node(RALEIGH).send(
        w.keith,
        &format!("<presence to='{ROOM}/Keith' type='unavailable'/>"),
    );
    assert!(w.net.node(RALEIGH).take(w.keith).contains("code='110'"));
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.wayne)
        .contains(&format!("type='unavailable' from='{ROOM}/Keith'")));
    // Back together: HQ gets the message once and Keith's departure.
    w.net.restore(RALEIGH);
    w.net.advance(10_000);
    let kevin = w.net.node(HQ).take(w.kevin);
    assert_eq!(
        kevin.matches("<body>during-split</body>").count(),
        1,
        "{kevin}"
    );
    assert!(
        kevin.contains(&format!("type='unavailable' from='{ROOM}/Keith'")),
        "{kevin}"
    );
    assert!(
        !w.net.node(RALEIGH).take(w.wayne).contains("during-split"),
        "no duplicate at the site"
    );
}

#[test]
fn after_hq_restarts_the_site_reannounces_its_occupants() {
    let mut w = world();
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='p' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"));
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    w.net.advance(1_000);
    w.net.node(RALEIGH).take(w.wayne);
    w.net.crash_and_restart(HQ);
    w.net.advance(10_000); // The site redials; HQ's new epoch triggers the re-announcement.
    let live = w.net.node(HQ).node.state().rooms.contains_key("chat");
    assert!(live, "the persistent room survived");
    let kevin = w.net.node(HQ).login("kevin", "k", "hq");
    let out = join(&mut w.net, HQ, kevin, "Kevin");
    assert!(
        out.contains(&format!("from='{ROOM}/Wayne'"))
            && out.contains(&format!("from='{ROOM}/Keith'")),
        "{out}"
    );
    let at_wayne = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        at_wayne.contains(&format!("type='unavailable' from='{ROOM}/Kevin'")),
        "the old Kevin session is gone: {at_wayne}"
    );
    assert!(
        at_wayne.contains(&format!("from='{ROOM}/Kevin'>"))
            || at_wayne.matches(&format!("from='{ROOM}/Kevin'")).count() >= 2,
        "{at_wayne}"
    );
    assert!(
        !at_wayne.contains(&format!("from='{ROOM}/Keith'")),
        "no noise about a local user: {at_wayne}"
    );
    say(&mut w.net, RALEIGH, w.wayne, "after-restart");
    w.net.settle();
    assert_eq!(
        w.net
            .node(HQ)
            .take(kevin)
            .matches("<body>after-restart</body>")
            .count(),
        1
    );
    assert_eq!(
        w.net
            .node(RALEIGH)
            .take(w.keith)
            .matches("<body>after-restart</body>")
            .count(),
        1
    );
}

#[test]
fn after_a_site_restarts_hq_lets_its_dead_sessions_go() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000);
    w.net.node(HQ).take(w.kevin);
    w.net.crash_and_restart(RALEIGH);
    w.net.advance(10_000);
    let out = w.net.node(HQ).take(w.kevin);
    assert!(
        out.contains(&format!("type='unavailable' from='{ROOM}/Wayne'")),
        "{out}"
    );
    // Wayne logs in again at the site and rejoins under his nick.
    let wayne = w.net.node(RALEIGH).login("wayne", "w", "tv");
    let out = join(&mut w.net, RALEIGH, wayne, "Wayne");
    assert!(out.contains("code='110'"), "{out}");
    assert!(w
        .net
        .node(HQ)
        .take(w.kevin)
        .contains(&format!("from='{ROOM}/Wayne'")));
}

#[test]
fn a_session_a_site_keeps_across_its_restart_stays_in_the_room_and_hq_never_sees_it_leave() {
    let mut w = world();
    let sm = "urn:xmpp:sm:3";
    let phone = w.net.node(RALEIGH).login("wayne", "w", "phone");
    w.net
        .node(RALEIGH)
        .send(phone, &format!("<enable xmlns='{sm}' resume='true'/>"));
    let enabled = w.net.node(RALEIGH).take(phone);
    let id = between(&enabled, "id='", "'").unwrap().to_string();
    let mut seen = join(&mut w.net, RALEIGH, phone, "Wayne");
    // Keith's session cannot be resumed: it ends with the stop.
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    seen += &w.net.node(RALEIGH).take(phone);
    say(&mut w.net, HQ, w.kevin, "before");
    w.net.settle();
    seen += &w.net.node(RALEIGH).take(phone);
    let handled = outpost::c2s::sm::stanzas(seen.as_bytes()).len();
    w.net.node(HQ).take(w.kevin);
    w.net.stop_and_restart(RALEIGH);
    say(&mut w.net, HQ, w.kevin, "during");
    w.net.advance(70_000); // The site redials and resyncs.
    let kevin = w.net.node(HQ).take(w.kevin);
    assert!(
        !kevin.contains(&format!("from='{ROOM}/Wayne'")),
        "HQ never saw Wayne leave or come back: {kevin}"
    );
    assert!(
        kevin.contains(&format!("type='unavailable' from='{ROOM}/Keith'"))
            && !kevin.contains("333"),
        "Keith left as the site stopped: {kevin}"
    );
    let (resumed, _) = w.net.node(RALEIGH).authenticated("wayne", "w");
    w.net.node(RALEIGH).send(
        resumed,
        &format!("<resume xmlns='{sm}' previd='{id}' h='{handled}'/>"),
    );
    w.net.settle();
    let out = w.net.node(RALEIGH).take(resumed);
    assert!(out.starts_with("<resumed"), "{out}");
    assert_eq!(out.matches("<body>during</body>").count(), 1, "{out}");
    assert!(!out.contains("<body>before</body>"), "{out}");
    say(&mut w.net, RALEIGH, resumed, "back");
    w.net.settle();
    assert!(w.net.node(HQ).take(w.kevin).contains("<body>back</body>"));
    // The site knows who is in the room again: a newcomer there sees all.
    let keith = w.net.node(RALEIGH).login("keith", "k", "laptop");
    let out = join(&mut w.net, RALEIGH, keith, "Keith");
    for nick in ["Kevin", "Wayne"] {
        assert!(out.contains(&format!("from='{ROOM}/{nick}'")), "{out}");
    }
}

#[test]
fn after_hq_restarts_keeping_a_session_the_sites_occupants_are_back_in_its_rooms() {
    let mut w = world();
    let sm = "urn:xmpp:sm:3";
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='p' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"));
    w.net.settle();
    assert!(!w.net.node(HQ).take(w.kevin).contains("type='error'"));
    let phone = w.net.node(HQ).login("kevin", "k", "phone");
    w.net
        .node(HQ)
        .send(phone, &format!("<enable xmlns='{sm}' resume='true'/>"));
    let enabled = w.net.node(HQ).take(phone);
    let id = between(&enabled, "id='", "'").unwrap().to_string();
    let mut seen = join(&mut w.net, HQ, phone, "Kev");
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    seen += &w.net.node(HQ).take(phone);
    let handled = outpost::c2s::sm::stanzas(seen.as_bytes()).len();
    w.net.node(RALEIGH).take(w.wayne);
    w.net.stop_and_restart(HQ);
    w.net.advance(70_000); // The sites redial and announce their occupants.
                           // A newcomer at HQ sees both.
    let kevin = w.net.node(HQ).login("kevin", "k", "desk");
    let out = join(&mut w.net, HQ, kevin, "Kevin2");
    for nick in ["Kev", "Wayne"] {
        assert!(out.contains(&format!("from='{ROOM}/{nick}'")), "{out}");
    }
    say(&mut w.net, RALEIGH, w.wayne, "from the site");
    w.net.settle();
    let (resumed, _) = w.net.node(HQ).authenticated("kevin", "k");
    w.net.node(HQ).send(
        resumed,
        &format!("<resume xmlns='{sm}' previd='{id}' h='{handled}'/>"),
    );
    w.net.settle();
    let out = w.net.node(HQ).take(resumed);
    assert!(out.starts_with("<resumed"), "{out}");
    assert_eq!(
        out.matches("<body>from the site</body>").count(),
        1,
        "{out}"
    );
    say(&mut w.net, HQ, resumed, "from hq");
    w.net.settle();
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.wayne)
        .contains("<body>from hq</body>"));
}

#[test]
fn a_split_longer_than_the_grace_period_shows_333_and_converges() {
    let mut w = split_with_wayne_and_keith_in();
    say(&mut w.net, HQ, w.kevin, "hq-during-split");
    say(&mut w.net, RALEIGH, w.wayne, "site-during-split");
    w.net.advance(301_000); // Past the 300 s grace period.
    let wayne = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        wayne.contains(&format!("type='unavailable' from='{ROOM}/Kevin'"))
            && wayne.contains("code='333'"),
        "{wayne}"
    );
    let kevin = w.net.node(HQ).take(w.kevin);
    assert!(
        kevin.contains(&format!("type='unavailable' from='{ROOM}/Wayne'"))
            && kevin.contains("code='333'"),
        "{kevin}"
    );
    assert!(kevin.contains(&format!("type='unavailable' from='{ROOM}/Keith'")));
    w.net.restore(RALEIGH);
    w.net.advance(70_000); // Redial (backoff up to a minute), resync.
    let wayne = w.net.node(RALEIGH).take(w.wayne);
    assert_eq!(
        wayne.matches("<body>hq-during-split</body>").count(),
        1,
        "{wayne}"
    );
    assert!(
        wayne.contains(&format!("<delay xmlns='urn:xmpp:delay' from='{ROOM}'")),
        "missed messages are delayed: {wayne}"
    );
    assert!(
        wayne.contains(&format!("from='{ROOM}/Kevin'>"))
            || wayne.contains(&format!("from='{ROOM}/Kevin' to=")),
        "Kevin is back: {wayne}"
    );
    assert!(
        !wayne.contains(&format!("from='{ROOM}/Keith'")),
        "no noise about a local user: {wayne}"
    );
    let kevin = w.net.node(HQ).take(w.kevin);
    assert_eq!(
        kevin.matches("<body>site-during-split</body>").count(),
        1,
        "{kevin}"
    );
    assert!(
        kevin.contains(&format!("from='{ROOM}/Wayne'"))
            && kevin.contains(&format!("from='{ROOM}/Keith'")),
        "{kevin}"
    );
    let master: Vec<String> = w.net.node(HQ).node.state().rooms["chat"]
        .archive
        .iter()
        .map(|m| m.stanza_id.clone())
        .collect();
    let mirror = w.net.node(RALEIGH).node.mirror_sequence(ROOM);
    assert_eq!(mirror, master[master.len() - mirror.len()..].to_vec());
    assert!(w.net.node(HQ).node.state().links["raleigh.example"]
        .unacked
        .is_empty());
}

/// HQ keeps few unacknowledged events and a short archive, so a long outage
/// outlasts both.
fn forgetful_world(queue: usize, archive: usize) -> World {
    let mut hq = hq_config();
    hq.link.max_unacked = queue;
    hq.muc.archive_messages = archive;
    world_with(hq)
}

/// Wayne at Raleigh; the link is cut while HQ sends m0..m19; then it returns.
fn outage(queue: usize, archive: usize) -> String {
    let mut w = forgetful_world(queue, archive);
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000);
    w.net.node(RALEIGH).take(w.wayne);
    w.net.cut(RALEIGH);
    for i in 0..20 {
        say(&mut w.net, HQ, w.kevin, &format!("m{i}"));
    }
    w.net.advance(1_000);
    w.net.restore(RALEIGH);
    w.net.advance(10_000);
    w.net.node(RALEIGH).take(w.wayne)
}

#[test]
fn an_outage_longer_than_the_queue_is_filled_from_the_archive() {
    let out = outage(5, 10_000);
    for i in 0..20 {
        assert_eq!(
            out.matches(&format!("<body>m{i}</body>")).count(),
            1,
            "m{i}: {out}"
        );
    }
    let first = out.find("<body>m0</body>").unwrap();
    let last = out.find("<body>m19</body>").unwrap();
    assert!(first < last, "in HQ's order");
}

/// The queue is bounded in bytes too: a few big events outlast it the same way.
#[test]
fn an_outage_longer_than_the_queue_in_bytes_is_filled_from_the_archive() {
    let mut hq = hq_config();
    hq.link.max_unacked_bytes = 3_000;
    let mut w = world_with(hq);
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000);
    w.net.node(RALEIGH).take(w.wayne);
    w.net.cut(RALEIGH);
    let big = "b".repeat(500);
    for i in 0..20 {
        say(&mut w.net, HQ, w.kevin, &format!("m{i} {big}"));
    }
    let queue = &w.net.node(HQ).node.state().links["raleigh.example"];
    assert!(queue.unacked_bytes <= 3_000, "{}", queue.unacked_bytes);
    assert!(queue.unacked.len() < 20);
    w.net.advance(1_000);
    w.net.restore(RALEIGH);
    w.net.advance(10_000);
    let out = w.net.node(RALEIGH).take(w.wayne);
    for i in 0..20 {
        assert_eq!(out.matches(&format!("<body>m{i} ")).count(), 1, "m{i}");
    }
}

#[test]
fn an_outage_longer_than_the_archive_says_so() {
    let out = outage(5, 8);
    assert!(
        out.contains("no longer kept"),
        "the site says what it could not fetch: {out}"
    );
    for i in 12..20 {
        assert_eq!(
            out.matches(&format!("<body>m{i}</body>")).count(),
            1,
            "m{i}: {out}"
        );
    }
}

#[test]
fn provisional_joins_during_a_split_are_confirmed_by_hq() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000);
    w.net.node(RALEIGH).take(w.wayne);
    w.net.node(HQ).take(w.kevin);
    w.net.cut(RALEIGH);
    w.net.advance(1_000);
    // Keith joins the room the site mirrors: admitted at once from the cache.
    let out = join(&mut w.net, RALEIGH, w.keith, "Keith");
    assert!(
        out.contains("code='110'") && out.contains(&format!("from='{ROOM}/Kevin'")),
        "{out}"
    );
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.wayne)
        .contains(&format!("from='{ROOM}/Keith'")));
    w.net.restore(RALEIGH);
    w.net.advance(10_000);
    assert!(
        w.net
            .node(HQ)
            .take(w.kevin)
            .contains(&format!("from='{ROOM}/Keith'")),
        "HQ confirmed the join"
    );
    let later = w.net.node(RALEIGH).take(w.keith);
    assert!(
        !later.contains("code='110'") && !later.contains("type='error'"),
        "no second join sequence: {later}"
    );
}

#[test]
fn a_provisional_join_with_a_nick_taken_at_hq_is_refused_with_a_clear_error() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000);
    w.net.node(RALEIGH).take(w.wayne);
    w.net.cut(RALEIGH);
    // Meanwhile at HQ, someone takes the nick Keith.
    w.net.node(HQ).add_user("scott", "s");
    let scott = w.net.node(HQ).login("scott", "s", "hq");
    join(&mut w.net, HQ, scott, "Keith");
    let out = join(&mut w.net, RALEIGH, w.keith, "Keith");
    assert!(out.contains("code='110'"), "admitted provisionally: {out}");
    w.net.node(RALEIGH).take(w.wayne);
    w.net.restore(RALEIGH);
    w.net.advance(10_000);
    let out = w.net.node(RALEIGH).take(w.keith);
    assert!(
        out.contains("type='error'") && out.contains("<conflict"),
        "{out}"
    );
    let wayne = w.net.node(RALEIGH).take(w.wayne);
    let gone = wayne
        .find(&format!("type='unavailable' from='{ROOM}/Keith'"))
        .expect("the provisional Keith leaves");
    assert!(
        wayne[gone..].contains(&format!("<presence from='{ROOM}/Keith'")),
        "HQ's Keith is shown: {wayne}"
    );
    let site_keith = w.net.node(RALEIGH).node.mirror_occupant_bare(ROOM, "Keith");
    assert_eq!(
        site_keith.as_deref(),
        Some("scott@fairfax.example"),
        "the site's copy knows HQ's Keith"
    );
    // HQ's occupant keeps the nick.
    let hq_room = w.net.node(HQ).take(w.kevin);
    assert!(!hq_room.contains("keith@raleigh.example"), "{hq_room}");
}

#[test]
fn a_site_crash_during_a_split_loses_no_message_and_leaves_no_ghost() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000);
    w.net.node(HQ).take(w.kevin);
    w.net.cut(RALEIGH);
    say(&mut w.net, RALEIGH, w.wayne, "before-the-crash");
    w.net.advance(500);
    w.net.crash_and_restart(RALEIGH);
    w.net.restore(RALEIGH);
    w.net.advance(10_000);
    let kevin = w.net.node(HQ).take(w.kevin);
    assert_eq!(
        kevin.matches("<body>before-the-crash</body>").count(),
        1,
        "{kevin}"
    );
    let gone = kevin.rfind(&format!("type='unavailable' from='{ROOM}/Wayne'"));
    let back = kevin.rfind(&format!("<presence from='{ROOM}/Wayne'"));
    assert!(
        gone.is_some() && back.is_none_or(|b| b < gone.unwrap()),
        "Wayne's dead session does not linger: {kevin}"
    );
    let hq_room = &w.net.node(HQ).node.state().rooms["chat"];
    assert_eq!(
        hq_room
            .archive
            .iter()
            .filter(|m| m.xml.contains("before-the-crash"))
            .count(),
        1
    );
}

#[test]
fn link_flapping_makes_no_presence_noise_and_little_traffic() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000);
    w.net.node(RALEIGH).take(w.wayne);
    w.net.node(HQ).take(w.kevin);
    w.net.reset_counters();
    for _ in 0..20 {
        w.net.cut(RALEIGH);
        w.net.advance(2_000);
        w.net.restore(RALEIGH);
        w.net.advance(8_000);
    }
    assert!(
        !w.net.node(RALEIGH).take(w.wayne).contains("<presence"),
        "no presence noise at the site"
    );
    assert!(
        !w.net.node(HQ).take(w.kevin).contains("<presence"),
        "no presence noise at HQ"
    );
    let (up, down) = w.net.link_bytes(RALEIGH);
    assert!(
        up + down < 20 * 600,
        "a reconnect costs a header and a hello: {up} up, {down} down"
    );
    say(&mut w.net, HQ, w.kevin, "still-here");
    w.net.settle();
    assert_eq!(
        w.net
            .node(RALEIGH)
            .take(w.wayne)
            .matches("<body>still-here</body>")
            .count(),
        1
    );
}

#[test]
fn a_site_restarted_during_a_split_admits_joins_from_its_cached_replica() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    say(&mut w.net, HQ, w.kevin, "before-the-split");
    w.net.advance(1_000);
    let before = w.net.node(RALEIGH).node.mirror_sequence(ROOM);
    assert_eq!(before.len(), 1);
    w.net.cut(RALEIGH);
    w.net.advance(1_000);
    // The gateway loses power while the link is down, and comes back.
    w.net.crash_and_restart(RALEIGH);
    assert_eq!(
        w.net.node(RALEIGH).node.mirror_sequence(ROOM),
        before,
        "the replica and its archive come back from the log"
    );
    let keith = w.net.node(RALEIGH).login("keith", "k", "tv2");
    let out = join(&mut w.net, RALEIGH, keith, "Keith");
    assert!(
        out.contains("code='110'") && out.contains("<body>before-the-split</body>"),
        "admitted provisionally, with history from the cache: {out}"
    );
    say(&mut w.net, RALEIGH, keith, "from-the-dark");
    say(&mut w.net, HQ, w.kevin, "meanwhile-at-hq");
    w.net.settle();
    w.net.restore(RALEIGH);
    w.net.advance(30_000);
    let kevin = w.net.node(HQ).take(w.kevin);
    assert_eq!(kevin.matches("<body>from-the-dark</body>").count(), 1);
    let keith_saw = w.net.node(RALEIGH).take(keith);
    assert_eq!(
        keith_saw.matches("<body>meanwhile-at-hq</body>").count(),
        1,
        "{keith_saw}"
    );
    assert_eq!(keith_saw.matches("<body>from-the-dark</body>").count(), 1);
    let master: Vec<String> = w.net.node(HQ).node.state().rooms["chat"]
        .archive
        .iter()
        .map(|m| m.stanza_id.clone())
        .collect();
    assert_eq!(w.net.node(RALEIGH).node.mirror_sequence(ROOM), master);
    assert_eq!(master.len(), 3);
}

#[test]
fn a_restored_replica_nobody_rejoins_is_dropped_after_the_grace_period() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.advance(1_000);
    w.net.crash_and_restart(RALEIGH);
    w.net.advance(1_000);
    assert!(w.net.node(RALEIGH).node.state().mirrors.contains_key(ROOM));
    let grace = w.net.node(RALEIGH).node.config().link.grace_ms;
    w.net.advance(grace + 1_000);
    assert!(
        w.net.node(RALEIGH).node.state().mirrors.is_empty(),
        "the cache goes like any replica nobody here is in"
    );
    // Joining again later builds it afresh from the master.
    let wayne = w.net.node(RALEIGH).login("wayne", "w", "tv2");
    let out = join(&mut w.net, RALEIGH, wayne, "Wayne");
    assert!(out.contains("code='110'"), "{out}");
}

#[test]
fn a_short_dead_timeout_holds_against_a_peer_with_a_long_keepalive() {
    // The site wants a dead link noticed within 20 s; HQ sends keepalives
    // only every 60 s. The site asks for an ack when it has heard nothing
    // for half its timeout, so an idle, healthy link stays up.
    let mut hq = hq_config();
    hq.link.keepalive_ms = 60_000;
    hq.link.compress = false; // The test reads the probes on the wire.
    let mut net = Network::new();
    net.add_node(hq, 1);
    let mut site = site_config("raleigh.example");
    site.link.compress = false;
    site.link.keepalive_ms = 60_000;
    site.link.dead_ms = 20_000;
    net.add_node(site, 2);
    net.add_link(RALEIGH, HQ, Shape::default());
    net.advance(1_000);
    net.take_transcript(RALEIGH);
    net.advance(600_000);
    let transcript = net.take_transcript(RALEIGH);
    assert!(
        !transcript.iter().any(|(_, t)| t.contains("<hello")),
        "the link was never re-established: {transcript:?}"
    );
    let probes = transcript
        .iter()
        .filter(|(up, t)| *up && t == "<r/>")
        .count();
    assert!(
        (20..=70).contains(&probes),
        "about one probe per 10 s of silence: {probes}"
    );
    // A real outage (nothing gets through, nobody closes) is still noticed.
    net.reshape(
        RALEIGH,
        Shape {
            latency_ms: 3_600_000,
            rate: 0,
        },
    );
    let cut_at = net.now_ms;
    net.advance(25_000);
    let down = net.node(RALEIGH).admin(outpost::node::AdminCommand::Links);
    assert!(
        matches!(&down, outpost::node::AdminReply::Links(l) if !l[0].connected),
        "noticed within 20 s of {cut_at}: {down:?}"
    );
}

#[test]
fn status_shows_the_round_trip_and_the_bytes_mirroring_saved() {
    use outpost::node::{AdminCommand, AdminReply};
    let mut w = world();
    let status = |net: &mut Network, node: usize| match net.node(node).admin(AdminCommand::Status) {
        AdminReply::Status(s) => s,
        other => panic!("{other:?}"),
    };
    // The probe sent when the link came up measured 2 x 50 ms.
    let s = status(&mut w.net, RALEIGH);
    assert_eq!(s.links[0].peer, "conference.fairfax.example");
    assert_eq!(s.links[0].rtt_ms, Some(100));
    // A longer path is measured by the next probe (after a cut, at once).
    w.net.cut(RALEIGH);
    w.net.reshape(
        RALEIGH,
        Shape {
            latency_ms: 300,
            rate: 0,
        },
    );
    w.net.restore(RALEIGH);
    w.net.advance(60_000);
    assert_eq!(status(&mut w.net, RALEIGH).links[0].rtt_ms, Some(600));

    // Two people at Raleigh in the room: each HQ message crosses once and is
    // delivered twice, so the site shows bytes saved; HQ saves nothing itself.
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    let before = status(&mut w.net, RALEIGH).links[0].saved_bytes;
    for i in 0..20 {
        say(&mut w.net, HQ, w.kevin, &format!("news-{i}"));
    }
    w.net.advance(10_000);
    let s = status(&mut w.net, RALEIGH);
    let saved = s.links[0].saved_bytes - before;
    assert!(
        saved > 20 * 200,
        "about one message's bytes per message: {saved}"
    );
    let room = s
        .rooms
        .iter()
        .find(|r| r.jid == ROOM)
        .expect("the mirrored room");
    assert_eq!(
        room.mirrored_from.as_deref(),
        Some("conference.fairfax.example")
    );
    let nicks: Vec<&str> = room.occupants.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nicks, ["Keith", "Kevin", "Wayne"]);
    let hq = status(&mut w.net, HQ);
    assert!(hq.links.iter().all(|l| l.saved_bytes == 0));
    assert!(hq
        .rooms
        .iter()
        .any(|r| r.jid == ROOM && r.mirrored_from.is_none()));
}

#[test]
fn links_are_compressed_when_both_sides_offer_it() {
    // Twenty messages with the same metadata: compressed, the link carries
    // far fewer bytes than the same exchange in the clear, and everyone
    // still gets every message once.
    let cost = |mut w: World| {
        join(&mut w.net, RALEIGH, w.wayne, "Wayne");
        w.net.take_transcript(RALEIGH);
        w.net.reset_counters();
        for i in 0..20 {
            say(
                &mut w.net,
                HQ,
                w.kevin,
                &format!("status report number {i} from the north gate"),
            );
        }
        w.net.advance(5_000);
        let seen = w.net.node(RALEIGH).take(w.wayne);
        for i in 0..20 {
            let body = format!("<body>status report number {i} from the north gate</body>");
            assert_eq!(seen.matches(&body).count(), 1);
        }
        let wire: String = w
            .net
            .take_transcript(RALEIGH)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let (up, down) = w.net.link_bytes(RALEIGH);
        (up + down, wire.contains("<body>"))
    };
    let (compressed, readable) = cost(world());
    assert!(!readable, "the bodies do not cross in the clear");
    let (plain, readable) = cost(plain_world());
    assert!(readable);
    assert!(compressed * 3 < plain, "{compressed} vs {plain}");
}

#[test]
fn chat_states_cross_at_once_and_are_never_queued() {
    let mut w = world();
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, RALEIGH, w.keith, "Keith");
    join(&mut w.net, DURHAM, w.dana, "Dana");
    w.net.advance(1_000);
    let people = [
        (HQ, w.kevin),
        (RALEIGH, w.wayne),
        (RALEIGH, w.keith),
        (DURHAM, w.dana),
    ];
    for (node, c) in people {
        w.net.node(node).take(c);
    }
    let typing = |id: &str| {
        format!("<message to='{ROOM}' type='groupchat' id='{id}'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    };
    // From HQ and from a site: everyone sees each chat state once, from the
    // room as the room shows the sender.
    for (node, conn, nick) in [(HQ, w.kevin, "Kevin"), (RALEIGH, w.wayne, "Wayne")] {
        w.net.node(node).send(conn, &typing(nick));
        w.net.advance(1_000);
        for (n, c) in people {
            let out = w.net.node(n).take(c);
            assert_eq!(
                out.matches("<composing").count(),
                1,
                "{nick} at {n}/{c}: {out}"
            );
            assert!(out.contains(&format!("from='{ROOM}/{nick}'")), "{out}");
        }
    }
    // Nothing of it is archived, at HQ or in the site's replica.
    assert!(w.net.node(HQ).node.state().rooms["chat"]
        .archive
        .iter()
        .all(|m| !m.xml.contains("composing")));
    assert!(!w.net.node(RALEIGH).node.mirror_contains(ROOM, "composing"));
    // During a cut each side still sees its own; nothing arrives late.
    w.net.cut(RALEIGH);
    w.net.node(HQ).send(w.kevin, &typing("late-k"));
    w.net.node(RALEIGH).send(w.wayne, &typing("late-w"));
    w.net.advance(1_000);
    assert!(w.net.node(DURHAM).take(w.dana).contains("<composing"));
    assert!(w.net.node(RALEIGH).take(w.keith).contains("<composing"));
    for (n, c) in people {
        w.net.node(n).take(c);
    }
    w.net.restore(RALEIGH);
    w.net.advance(60_000);
    for (n, c) in people {
        let out = w.net.node(n).take(c);
        assert!(
            !out.contains("<composing"),
            "a stale chat state at {n}/{c}: {out}"
        );
    }
    assert_eq!(w.net.node(RALEIGH).node.mirror_backlog(), 0);
}

#[test]
fn only_chat_states_may_skip_the_numbering() {
    let mut w = plain_world();
    let conn = raw_link(&mut w);
    w.net.node(HQ).take(w.kevin);
    // A message with a body must be numbered (it is archived and resynced).
    w.net.node(HQ).send(conn, "<t><groupchat room='chat' from='wayne@raleigh.example/tv' nick='Wayne' id='raleigh.example-1'><message xmlns='jabber:client' type='groupchat'><body>sneaky</body></message></groupchat></t>");
    w.net.settle();
    assert!(!w.net.node(HQ).take(w.kevin).contains("sneaky"));
    assert!(w.net.node(HQ).node.state().rooms["chat"]
        .archive
        .iter()
        .all(|m| !m.xml.contains("sneaky")));
    assert!(!w.net.node(HQ).is_closed(conn), "refused, not fatal");
}

/// A pinned site relays an iq request without a payload to a room: before,
/// the master aborted on it (the check existed only on the client path).
#[test]
fn a_site_cannot_crash_its_master_with_an_iq_without_payload() {
    let mut w = plain_world();
    let conn = raw_link(&mut w);
    let mut n = 0;
    for iq in [
        "<iq xmlns='jabber:client' type='get' id='x'/>",
        "<iq xmlns='jabber:client' type='set' id='y'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>",
        "<iq xmlns='jabber:client' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
    ] {
        for to in [
            ROOM,
            "conference.fairfax.example",
            "chat@conference.fairfax.example/Kevin",
        ] {
            n += 1;
            w.net.node(HQ).send(
                conn,
                &format!(
                    "<e n='{n}'><relay from='wayne@raleigh.example/tv' to='{to}'>{iq}</relay></e>"
                ),
            );
        }
    }
    w.net.settle();
    assert!(!w.net.node(HQ).is_closed(conn), "refused, not fatal");
    let applied = w.net.node(HQ).node.state().links["raleigh.example"].last_in;
    assert_eq!(applied, n, "every event was taken (and refused)");
    // HQ still serves its own users.
    w.net.node(HQ).send(
        w.kevin,
        "<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(w.net.node(HQ).take(w.kevin).contains("id='alive'"));
}

/// The users of one site together may create only so many rooms at HQ.
#[test]
fn one_site_may_create_only_so_many_rooms_at_its_master() {
    let mut hq = hq_config();
    hq.muc.rooms_per_site = 2;
    let mut w = world_with(hq);
    let create = |net: &mut Network, conn: u64, room: &str| {
        net.node(RALEIGH).send(conn, &format!("<presence to='{room}@conference.fairfax.example/N'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
        net.settle();
        net.node(RALEIGH).take(conn)
    };
    assert!(create(&mut w.net, w.wayne, "w1").contains("code='110'"));
    assert!(create(&mut w.net, w.keith, "k1").contains("code='110'"));
    let out = create(&mut w.net, w.keith, "k2");
    assert!(
        out.contains("<not-allowed") && out.contains("users of raleigh.example"),
        "{out}"
    );
    // HQ's own users are not held back by it.
    w.net.node(HQ).send(w.kevin, "<presence to='hq2@conference.fairfax.example/K'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    w.net.settle();
    assert!(w.net.node(HQ).take(w.kevin).contains("code='201'"));
}

/// What a snapshot carries to a site is bounded in bytes: a new mirror gets
/// the newest history that fits, and a site back from a split the newest
/// missed messages that fit, told that the rest could not be fetched.
#[test]
fn snapshots_to_a_site_are_bounded_in_bytes() {
    let mut hq = hq_config();
    hq.muc.snapshot_history_bytes = 4_000;
    let mut w = world_with(hq);
    let big = "s".repeat(900);
    for i in 0..10 {
        say(&mut w.net, HQ, w.kevin, &format!("old{i} {big}"));
    }
    w.net.settle();
    let out = join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    assert!(out.contains("code='110'"), "the join itself succeeds");
    let got: Vec<usize> = (0..10)
        .filter(|i| out.contains(&format!("old{i} ")))
        .collect();
    assert!(
        !got.is_empty() && got.len() <= 4 && got.contains(&9),
        "{got:?}"
    );
    w.net.cut(RALEIGH);
    for i in 0..10 {
        say(&mut w.net, HQ, w.kevin, &format!("new{i} {big}"));
    }
    w.net.advance(400_000); // Past the grace period: the site resyncs from a snapshot.
    w.net.node(RALEIGH).take(w.wayne);
    w.net.restore(RALEIGH);
    // Longer than the longest redial backoff (30 s, plus jitter).
    w.net.advance(60_000);
    let out = w.net.node(RALEIGH).take(w.wayne);
    assert!(out.contains("new9 "), "the newest arrives");
    assert!(
        out.contains("no longer kept"),
        "the rest is said to be missing: {out:.500}"
    );
}

/// A room created by a user at a site: like a creator at HQ, they are told
/// (status 201) that the room waits for its configuration, and nobody else
/// can join until they configure it; then everyone can.
#[test]
fn a_room_created_from_a_site_is_configured_by_its_creator() {
    let mut w = world();
    let room = "fresh@conference.fairfax.example";
    let enter = |net: &mut Network, node: usize, conn: u64, nick: &str| {
        net.node(node).send(conn, &format!("<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"));
        net.settle();
        net.node(node).take(conn)
    };
    let out = enter(&mut w.net, RALEIGH, w.wayne, "Wayne");
    assert!(
        out.contains("code='110'") && out.contains("code='201'"),
        "{out}"
    );
    // Locked until configured: another user is refused.
    let refused = enter(&mut w.net, HQ, w.kevin, "Kevin");
    assert!(refused.contains("<item-not-found"), "{refused}");
    // The creator asks for an instant room (what clients do on 201).
    w.net.node(RALEIGH).send(w.wayne, &format!("<iq type='set' id='instant' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    w.net.settle();
    let answer = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        answer.contains("id='instant'") && answer.contains("type='result'"),
        "{answer}"
    );
    let joined = enter(&mut w.net, HQ, w.kevin, "Kevin");
    assert!(
        joined.contains("code='110'") && !joined.contains("code='201'"),
        "{joined}"
    );
    // Others at the site join the configured room as usual.
    let keith = enter(&mut w.net, RALEIGH, w.keith, "Keith");
    assert!(
        keith.contains("code='110'") && !keith.contains("code='201'"),
        "{keith}"
    );
}

#[test]
fn an_idle_link_lets_its_compression_state_go_and_what_follows_still_arrives() {
    let mut w = world();
    join(&mut w.net, HQ, w.kevin, "Kevin");
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    w.net.node(HQ).take(w.kevin);
    let held = |net: &mut Network| {
        let hq = net.node(HQ).node.link_compression_held("raleigh.example");
        let site = net
            .node(RALEIGH)
            .node
            .link_compression_held("conference.fairfax.example");
        (hq.expect("linked"), site.expect("linked"))
    };
    // Busy: both ends compress and inflate.
    assert_eq!(held(&mut w.net), ((true, true), (true, true)));
    for round in 0..3 {
        // Idle past the release time, keepalives and probes included.
        w.net.advance(outpost::link::DEFLATE_IDLE_MS + 70_000);
        assert_eq!(
            held(&mut w.net),
            ((false, false), (false, false)),
            "round {round}: an idle link holds no compression state"
        );
        let links = w.net.node(HQ).admin(outpost::node::AdminCommand::Links);
        assert!(
            matches!(&links, outpost::node::AdminReply::Links(l) if l.iter().all(|l| l.connected)),
            "the link stays up: {links:?}"
        );
        // Traffic after the release crosses both ways, each on a new stream.
        let (up, down) = (
            format!("up {round} {}", "x".repeat(200)),
            format!("down {round}"),
        );
        say(&mut w.net, RALEIGH, w.wayne, &up);
        w.net.settle();
        say(&mut w.net, HQ, w.kevin, &down);
        w.net.settle();
        let at_hq = w.net.node(HQ).take(w.kevin);
        let at_site = w.net.node(RALEIGH).take(w.wayne);
        assert!(at_hq.contains(&up) && at_hq.contains(&down), "{at_hq}");
        assert!(
            at_site.contains(&up) && at_site.contains(&down),
            "{at_site}"
        );
        assert_eq!(held(&mut w.net), ((true, true), (true, true)));
    }
}

#[test]
fn replicas_count_in_the_sites_archive_budget_and_keep_it_across_a_restart() {
    const TOTAL: u64 = 32 * 1024;
    let mut net = Network::new();
    net.add_node(hq_config(), 1);
    let mut site = site_config("raleigh.example");
    site.muc.archive_bytes_total = TOTAL;
    net.add_node(site, 2);
    net.add_link(RALEIGH, HQ, Shape::default());
    net.node(HQ).add_user("kevin", "k");
    net.node(RALEIGH).add_user("wayne", "w");
    let kevin = net.node(HQ).login("kevin", "k", "hq");
    let wayne = net.node(RALEIGH).login("wayne", "w", "tv");
    net.advance(100);
    join(&mut net, HQ, kevin, "Kevin");
    net.node(HQ).send(kevin, &format!("<iq type='set' id='inst' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    join(&mut net, RALEIGH, wayne, "Wayne");
    let line = "r".repeat(500);
    for i in 0..300 {
        say(&mut net, HQ, kevin, &format!("{i} {line}"));
        net.settle();
        net.node(HQ).take(kevin);
        net.node(RALEIGH).take(wayne);
    }
    let replica = |net: &mut Network| {
        let m = &net.node(RALEIGH).node.state().mirrors[ROOM];
        let seqs: Vec<u64> = m.state.archive.iter().map(|a| a.seq).collect();
        (m.state.archive.bytes(), seqs)
    };
    let (bytes, seqs) = replica(&mut net);
    assert!(bytes <= TOTAL, "{bytes}");
    assert!(seqs.len() < 100 && seqs.len() > 10, "{}", seqs.len());
    // HQ's own archive is its own budget's business: all 300 there.
    assert_eq!(net.node(HQ).node.state().rooms["chat"].archive.len(), 300);
    let before = replica(&mut net);
    net.crash_and_restart(RALEIGH);
    assert_eq!(replica(&mut net), before, "trimmed through the log");
}

fn room_vcard(net: &mut Network, node: usize, conn: u64) -> String {
    net.node(node).send(
        conn,
        &format!("<iq type='get' id='rv' to='{ROOM}'><vCard xmlns='vcard-temp'/></iq>"),
    );
    net.settle();
    net.node(node).take(conn)
}

fn set_room_vcard(net: &mut Network, node: usize, conn: u64, card: &str) -> String {
    net.node(node).send(
        conn,
        &format!(
            "<iq type='set' id='sv' to='{ROOM}'><vCard xmlns='vcard-temp'>{card}</vCard></iq>"
        ),
    );
    net.settle();
    net.node(node).take(conn)
}

#[test]
fn a_rooms_avatar_is_set_by_an_owner_and_read_at_each_site_from_its_replica() {
    let mut w = plain_world();
    let photo = "<PHOTO><TYPE>image/png</TYPE><BINVAL>YWJj</BINVAL></PHOTO>"; // "abc"
    let set = set_room_vcard(&mut w.net, HQ, w.kevin, photo);
    assert!(set.contains("type='result'"), "{set}");
    w.net.node(HQ).send(w.kevin, &format!("<iq type='get' id='d' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
    let info = w.net.node(HQ).take(w.kevin);
    assert!(info.contains("<feature var='vcard-temp'/>"), "{info}");
    assert!(
        info.contains("<field var='muc#roominfo_avatarhash' type='text-multi' label='Avatar hash'><value>a9993e364706816aba3e25717850c26c9cd0d89d</value>"),
        "XEP-0153's hash, the SHA-1 of the image: {info}"
    );
    // A site user reads it from the site's replica: not across the link.
    join(&mut w.net, RALEIGH, w.wayne, "Wayne");
    join(&mut w.net, DURHAM, w.dana, "Dana");
    w.net.reset_counters();
    let read = room_vcard(&mut w.net, RALEIGH, w.wayne);
    assert!(
        read.contains("<BINVAL>YWJj</BINVAL>") && read.contains(&format!("from='{ROOM}'")),
        "{read}"
    );
    assert_eq!(w.net.link_bytes(RALEIGH), (0, 0), "answered at the site");
    // Only an owner sets it, wherever they are.
    let refused = set_room_vcard(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<PHOTO><BINVAL>eHl6</BINVAL></PHOTO>",
    );
    assert!(refused.contains("<forbidden"), "{refused}");
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='o' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='wayne@raleigh.example' affiliation='owner'/></query></iq>"));
    w.net.settle();
    let set = set_room_vcard(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<PHOTO><BINVAL>eHl6</BINVAL></PHOTO>",
    );
    assert!(set.contains("type='result'"), "{set}");
    assert!(
        w.net.node(DURHAM).take(w.dana).contains("code='104'"),
        "occupants are told"
    );
    assert!(room_vcard(&mut w.net, DURHAM, w.dana).contains("<BINVAL>eHl6</BINVAL>"));
    // A site that restarts keeps it, and answers during a split.
    w.net.crash_and_restart(DURHAM);
    w.net.settle();
    w.net.cut(DURHAM);
    let dana = w.net.node(DURHAM).login("dana", "d", "tv2");
    join(&mut w.net, DURHAM, dana, "Dana");
    assert!(room_vcard(&mut w.net, DURHAM, dana).contains("<BINVAL>eHl6</BINVAL>"));
    w.net.restore(DURHAM);
    // Removed with an empty vCard; too big is refused.
    assert!(set_room_vcard(&mut w.net, HQ, w.kevin, "").contains("type='result'"));
    let read = room_vcard(&mut w.net, RALEIGH, w.wayne);
    assert!(read.contains("<vCard xmlns='vcard-temp'/>"), "{read}");
    let huge = format!(
        "<DESC>{}</DESC>",
        "x".repeat(outpost::model::room::VCARD_BYTES)
    );
    assert!(set_room_vcard(&mut w.net, HQ, w.kevin, &huge).contains("<not-acceptable"));
}

/// `send_snapshot` is followed by a `Vcard` event, and a resync answer is
/// a snapshot: after every restart of the site (or split past the grace
/// period) the whole vCard, up to 128 KiB of base64, crosses the link
/// again though the site kept it (MirrorRecord::Synced keeps it and
/// `mirror_vcard` drops it as "the same again"). At 9600 bit/s that is
/// about two minutes per room, in the same ordered queue as the chat
/// (DESIGN §1: photos cross once per site and never hold a chat back).
#[test]
fn an_unchanged_room_vcard_does_not_cross_the_link_again_on_resync() {
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into()];
    hq.link.compress = false;
    let mut site = NodeConfig::new("raleigh.example");
    site.link.upstreams = vec!["conference.fairfax.example".into()];
    site.link.compress = false;
    let mut net = Network::new();
    net.add_node(hq, 1);
    net.add_node(site, 2);
    net.add_link(RALEIGH, HQ, Shape::default());
    net.node(HQ).add_user("kevin", "k");
    net.node(RALEIGH).add_user("wayne", "w");
    let kevin = net.node(HQ).login("kevin", "k", "hq");
    let wayne = net.node(RALEIGH).login("wayne", "w", "tv");
    net.advance(100);
    join(&mut net, HQ, kevin, "Kevin");
    net.node(HQ).send(kevin, &format!("<iq type='set' id='inst' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    net.settle();
    net.node(HQ).take(kevin);
    // A 60 KiB photo.
    let b64 = "QUJD".repeat(15 * 1024);
    net.node(HQ).send(
        kevin,
        &format!("<iq type='set' id='sv' to='{ROOM}'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO></vCard></iq>"),
    );
    net.settle();
    assert!(net.node(HQ).take(kevin).contains("type='result'"));
    join(&mut net, RALEIGH, wayne, "Wayne");
    net.settle();
    net.take_transcript(RALEIGH);
    // A split past the grace period: the site resyncs from a snapshot.
    net.cut(RALEIGH);
    net.advance(301_000);
    net.restore(RALEIGH);
    net.advance(70_000);
    let resynced = net.node(RALEIGH).take(wayne);
    assert!(resynced.contains("code='333'"), "{resynced}");
    let again: usize = net
        .take_transcript(RALEIGH)
        .iter()
        .filter(|(up, text)| !*up && text.contains("<vcard"))
        .map(|(_, text)| text.len())
        .sum();
    assert_eq!(
        again, 0,
        "the unchanged room vCard crossed the link again on resync ({again} bytes)"
    );
}
