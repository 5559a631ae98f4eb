//! One network across a simulated network: users at HQ and at two sites
//! message each other one-to-one and query each other (iq) over the
//! links; a site reaches the other site through HQ, which relays. During
//! a split messages queue and arrive once, with <delay/>, after it; the
//! stanza-id minted at the sender's node is the one in both archives.
//! Presence and subscriptions across the links, PEP notifications once per
//! node, blocking of contacts at other nodes, and the hostile cases: what
//! a site may speak for, what one user or one peer can make a node hold.

use outpost::node::{Event, NodeConfig};
use outpost::sim::{between, Network, Shape};

const HQ: usize = 0;
const RALEIGH: usize = 1;
const DURHAM: usize = 2;
const ROOM: &str = "chat@conference.fairfax.example";

struct World {
    net: Network,
    kevin: u64,
    wayne: u64,
    dana: u64,
}

fn world() -> World {
    world_with(|_| {})
}

/// HQ (tuned by `tune_hq`) and two sites, a user online at each.
fn world_with(tune_hq: impl FnOnce(&mut NodeConfig)) -> World {
    let mut net = Network::new();
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into(), "durham.example".into()];
    hq.link.compress = false;
    tune_hq(&mut hq);
    net.add_node(hq, 1);
    for (domain, seed) in [("raleigh.example", 2), ("durham.example", 3)] {
        let mut site = NodeConfig::new(domain);
        site.link.upstreams = vec!["conference.fairfax.example".into()];
        site.link.compress = false;
        net.add_node(site, seed);
    }
    net.add_link(RALEIGH, HQ, Shape::default());
    net.add_link(DURHAM, HQ, Shape::default());
    net.node(HQ).add_user("kevin", "k");
    net.node(RALEIGH).add_user("wayne", "w");
    net.node(DURHAM).add_user("dana", "d");
    let kevin = online(&mut net, HQ, "kevin", "k");
    let wayne = online(&mut net, RALEIGH, "wayne", "w");
    let dana = online(&mut net, DURHAM, "dana", "d");
    net.advance(100); // Sites dial HQ and learn what it reaches.
    net.settle();
    World {
        net,
        kevin,
        wayne,
        dana,
    }
}

/// A raw link connection at HQ as `site` (it replaces the real one), the
/// hello said; `frames` follow it.
fn forge_link(net: &mut Network, site: &str, frames: &str) -> u64 {
    let hq = net.node(HQ);
    let conn = hq.alloc_conn();
    hq.event(Event::LinkUp {
        conn,
        peer: site.into(),
    });
    hq.take(conn);
    let hello = format!("<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' from='{site}' version='1.0'><hello received='0'/>");
    hq.send(conn, &format!("{hello}{frames}"));
    conn
}

fn online(net: &mut Network, node: usize, user: &str, pw: &str) -> u64 {
    let c = net.node(node).login(user, pw, "r");
    net.node(node).send(c, "<presence/>");
    net.node(node).take(c);
    c
}

/// The link of `site` comes back, and everything settles (its redial
/// backoff may have grown during the split).
fn heal(net: &mut Network, site: usize) {
    net.restore(site);
    net.advance(120_000);
    net.settle();
}

fn chat(net: &mut Network, node: usize, conn: u64, to: &str, body: &str) {
    net.node(node).send(
        conn,
        &format!("<message to='{to}' type='chat' id='m-{body}'><body>{body}</body></message>"),
    );
}

/// The stanza-ids of `user`'s archive at `node`, oldest first.
fn archive_ids(net: &mut Network, node: usize, user: &str) -> Vec<String> {
    net.node(node).node.state().accounts[user]
        .archive
        .iter()
        .map(|m| m.stanza_id.clone())
        .collect()
}

#[test]
fn users_at_hq_and_at_both_sites_message_each_other_with_one_stanza_id() {
    let mut w = world();
    chat(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "kevin@fairfax.example",
        "hello-hq",
    );
    w.net.settle();
    let got = w.net.node(HQ).take(w.kevin);
    assert!(
        got.contains("from='wayne@raleigh.example/r'") && got.contains("<body>hello-hq</body>"),
        "{got}"
    );
    assert!(!got.contains("urn:xmpp:delay"), "not deferred: {got}");
    assert_eq!(
        w.net.node(RALEIGH).take(w.wayne),
        "",
        "no error for the sender"
    );
    // One id in both archives, the one the recipient was given.
    let sent = archive_ids(&mut w.net, RALEIGH, "wayne");
    let received = archive_ids(&mut w.net, HQ, "kevin");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent, received);
    assert!(got.contains(&format!(
        "<stanza-id xmlns='urn:xmpp:sid:0' id='{}' by='kevin@fairfax.example'/>",
        sent[0]
    )));
    // HQ answers; and a site reaches the other site through HQ.
    chat(
        &mut w.net,
        HQ,
        w.kevin,
        "wayne@raleigh.example",
        "hello-site",
    );
    chat(
        &mut w.net,
        DURHAM,
        w.dana,
        "wayne@raleigh.example/r",
        "from-durham",
    );
    w.net.settle();
    let got = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        got.contains("<body>hello-site</body>") && got.contains("from='kevin@fairfax.example/r'"),
        "{got}"
    );
    assert!(
        got.contains("<body>from-durham</body>") && got.contains("from='dana@durham.example/r'"),
        "{got}"
    );
    assert_eq!(
        archive_ids(&mut w.net, DURHAM, "dana"),
        archive_ids(&mut w.net, RALEIGH, "wayne")[2..]
    );
    // Bodiless ones cross too (a chat state); a domain no link reaches does not.
    w.net.node(HQ).send(w.kevin, "<message to='dana@durham.example' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    w.net.settle();
    assert!(w.net.node(DURHAM).take(w.dana).contains("<composing"));
    chat(&mut w.net, RALEIGH, w.wayne, "x@elsewhere.example", "lost");
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.wayne)
        .contains("<remote-server-not-found"));
}

#[test]
fn messages_sent_during_a_split_arrive_once_in_order_and_delayed_after_it() {
    let mut w = world();
    w.net.cut(RALEIGH);
    for i in 0..3 {
        chat(
            &mut w.net,
            RALEIGH,
            w.wayne,
            "kevin@fairfax.example",
            &format!("cut-{i}"),
        );
        chat(
            &mut w.net,
            HQ,
            w.kevin,
            "wayne@raleigh.example",
            &format!("back-{i}"),
        );
    }
    // Durham reaches Raleigh through HQ: it waits at HQ.
    chat(
        &mut w.net,
        DURHAM,
        w.dana,
        "wayne@raleigh.example",
        "via-hq",
    );
    w.net.advance(60_000);
    assert!(!w.net.node(HQ).take(w.kevin).contains("cut-"));
    // (Whitespace keepalives aside.)
    assert_eq!(
        w.net.node(RALEIGH).take(w.wayne).trim(),
        "",
        "no error: deferred"
    );
    assert_eq!(w.net.node(DURHAM).take(w.dana).trim(), "");
    heal(&mut w.net, RALEIGH);
    let hq = w.net.node(HQ).take(w.kevin);
    let site = w.net.node(RALEIGH).take(w.wayne);
    for (out, prefix) in [(&hq, "cut-"), (&site, "back-")] {
        let order: Vec<usize> = (0..3)
            .map(|i| out.find(&format!("<body>{prefix}{i}</body>")).expect(out))
            .collect();
        assert!(order.windows(2).all(|p| p[0] < p[1]), "in order: {out}");
        for i in 0..3 {
            assert_eq!(
                out.matches(&format!("<body>{prefix}{i}</body>")).count(),
                1,
                "once: {out}"
            );
        }
    }
    assert_eq!(hq.matches("urn:xmpp:delay").count(), 3, "{hq}");
    assert!(site.contains("<body>via-hq</body>"), "{site}");
    assert_eq!(archive_ids(&mut w.net, RALEIGH, "wayne").len(), 7);
}

#[test]
fn an_offline_recipient_at_another_node_gets_it_from_offline_storage() {
    let mut w = world();
    w.net.node(DURHAM).disconnect(w.dana);
    w.net.settle();
    chat(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "dana@durham.example",
        "while-away",
    );
    w.net.settle();
    let dana = w.net.node(DURHAM).login("dana", "d", "phone");
    w.net.node(DURHAM).send(dana, "<presence/>");
    let got = w.net.node(DURHAM).take(dana);
    assert!(
        got.contains("<body>while-away</body>") && got.contains("urn:xmpp:delay"),
        "{got}"
    );
}

#[test]
fn queries_cross_the_link_and_fail_at_once_during_a_split() {
    let mut w = world();
    // To Kevin's client: his software version; his client answers.
    w.net.node(RALEIGH).send(w.wayne, "<iq type='get' id='v1' to='kevin@fairfax.example/r'><query xmlns='jabber:iq:version'/></iq>");
    w.net.settle();
    let asked = w.net.node(HQ).take(w.kevin);
    assert!(
        asked.contains("from='wayne@raleigh.example/r'") && asked.contains("id='v1'"),
        "{asked}"
    );
    w.net.node(HQ).send(w.kevin, "<iq type='result' id='v1' to='wayne@raleigh.example/r'><query xmlns='jabber:iq:version'><name>Gajim</name></query></iq>");
    w.net.settle();
    let answer = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        answer.contains("<name>Gajim</name>") && answer.contains("from='kevin@fairfax.example/r'"),
        "{answer}"
    );
    // To Kevin's account: the server at HQ answers for it (his vCard).
    w.net.node(HQ).send(
        w.kevin,
        "<iq type='set' id='vc'><vCard xmlns='vcard-temp'><FN>Kevin</FN></vCard></iq>",
    );
    w.net.node(HQ).take(w.kevin);
    w.net.node(DURHAM).send(
        w.dana,
        "<iq type='get' id='vc2' to='kevin@fairfax.example'><vCard xmlns='vcard-temp'/></iq>",
    );
    w.net.settle();
    let card = w.net.node(DURHAM).take(w.dana);
    assert!(
        card.contains("<FN>Kevin</FN>") && card.contains("from='kevin@fairfax.example'"),
        "{card}"
    );
    // HQ's server itself.
    w.net.node(RALEIGH).send(
        w.wayne,
        "<iq type='get' id='p' to='fairfax.example'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    w.net.settle();
    assert!(w.net.node(RALEIGH).take(w.wayne).contains("type='result'"));
    // Nobody there: an error, not silence.
    w.net.node(RALEIGH).send(
        w.wayne,
        "<iq type='get' id='n' to='nobody@fairfax.example'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    w.net.settle();
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.wayne)
        .contains("<service-unavailable"));
    // During a split: at once.
    w.net.cut(RALEIGH);
    w.net.advance(1_000);
    w.net.node(RALEIGH).send(w.wayne, "<iq type='get' id='v2' to='kevin@fairfax.example/r'><query xmlns='jabber:iq:version'/></iq>");
    let failed = w.net.node(RALEIGH).take(w.wayne);
    assert!(failed.contains("<remote-server-timeout"), "{failed}");
}

#[test]
fn a_site_speaks_only_for_its_own_users() {
    let mut w = world();
    // Raleigh claims to be Dana at Durham, then HQ's own Kevin.
    let forged = "<e n='1'><relay from='dana@durham.example/x' to='kevin@fairfax.example'><message xmlns='jabber:client' type='chat'><body>forged-1</body></message></relay></e>\
        <e n='2'><relay from='kevin@fairfax.example/x' to='kevin@fairfax.example'><message xmlns='jabber:client' type='chat'><body>forged-2</body></message></relay></e>\
        <e n='3'><relay from='mallory@raleigh.example/x' to='kevin@fairfax.example'><message xmlns='jabber:client' type='chat'><body>honest</body></message></relay></e>";
    forge_link(&mut w.net, "raleigh.example", forged);
    let got = w.net.node(HQ).take(w.kevin);
    assert!(!got.contains("forged"), "{got}");
    assert!(
        got.contains("<body>honest</body>"),
        "its own users pass: {got}"
    );
}

#[test]
fn a_site_that_restarts_during_a_split_still_queues_for_hq() {
    let mut w = world();
    w.net.cut(RALEIGH);
    w.net.crash_and_restart(RALEIGH);
    let wayne = w.net.node(RALEIGH).login("wayne", "w", "again");
    chat(
        &mut w.net,
        RALEIGH,
        wayne,
        "kevin@fairfax.example",
        "after-restart",
    );
    assert_eq!(w.net.node(RALEIGH).take(wayne), "", "queued, not refused");
    w.net.restore(RALEIGH);
    w.net.advance(10_000);
    w.net.settle();
    let got = w.net.node(HQ).take(w.kevin);
    assert_eq!(
        got.matches("<body>after-restart</body>").count(),
        1,
        "{got}"
    );
    let _ = between(&got, "<stanza-id", "/>").expect("archived at HQ");
}

fn presence(net: &mut Network, node: usize, conn: u64, stanza: &str) {
    net.node(node).send(conn, stanza);
    net.settle();
}

/// `a` (at node `an`) and `b` (at `bn`) subscribe to each other, as
/// clients do: a asks, b approves and asks back, a approves.
fn befriend(
    net: &mut Network,
    (an, a, a_jid): (usize, u64, &str),
    (bn, b, b_jid): (usize, u64, &str),
) {
    presence(
        net,
        an,
        a,
        &format!("<presence to='{b_jid}' type='subscribe'/>"),
    );
    let asked = net.node(bn).take(b);
    assert!(
        asked.contains(&format!("from='{a_jid}'")) && asked.contains("type='subscribe'"),
        "{asked}"
    );
    presence(
        net,
        bn,
        b,
        &format!("<presence to='{a_jid}' type='subscribed'/>"),
    );
    presence(
        net,
        bn,
        b,
        &format!("<presence to='{a_jid}' type='subscribe'/>"),
    );
    presence(
        net,
        an,
        a,
        &format!("<presence to='{b_jid}' type='subscribed'/>"),
    );
    net.node(an).take(a);
    net.node(bn).take(b);
}

fn subscription(net: &mut Network, node: usize, user: &str, contact: &str) -> String {
    let item = &net.node(node).node.state().accounts[user].roster[contact];
    format!(
        "{:?} ask={} pending={}",
        item.subscription, item.ask_out, item.pending_in
    )
}

#[test]
fn subscriptions_work_in_every_direction_and_presence_follows() {
    let mut w = world();
    // A site user and an HQ user, both ways.
    presence(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<presence to='kevin@fairfax.example' type='subscribe'/>",
    );
    let asked = w.net.node(HQ).take(w.kevin);
    assert!(
        asked.contains("from='wayne@raleigh.example'") && asked.contains("type='subscribe'"),
        "{asked}"
    );
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence to='wayne@raleigh.example' type='subscribed'/>",
    );
    let site = w.net.node(RALEIGH).take(w.wayne);
    assert!(site.contains("type='subscribed'"), "the answer: {site}");
    assert!(
        site.contains("from='kevin@fairfax.example/r'") && !site.contains("type='unavailable'"),
        "and Kevin's presence: {site}"
    );
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence to='wayne@raleigh.example' type='subscribe'/>",
    );
    presence(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<presence to='kevin@fairfax.example' type='subscribed'/>",
    );
    assert!(w
        .net
        .node(HQ)
        .take(w.kevin)
        .contains("from='wayne@raleigh.example/r'"));
    // Both rosters say both.
    assert_eq!(
        subscription(&mut w.net, RALEIGH, "wayne", "kevin@fairfax.example"),
        "Both ask=false pending=false"
    );
    assert_eq!(
        subscription(&mut w.net, HQ, "kevin", "wayne@raleigh.example"),
        "Both ask=false pending=false"
    );
    // Between the two sites, through HQ.
    befriend(
        &mut w.net,
        (DURHAM, w.dana, "dana@durham.example"),
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
    );
    presence(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<presence><show>away</show></presence>",
    );
    assert!(w
        .net
        .node(DURHAM)
        .take(w.dana)
        .contains("<show>away</show>"));
    assert!(w.net.node(HQ).take(w.kevin).contains("<show>away</show>"));
    // A new session of Dana's hears Wayne's presence at once, from Durham's copy.
    w.net.reset_counters();
    let phone = w.net.node(DURHAM).login("dana", "d", "phone");
    w.net.node(DURHAM).send(phone, "<presence/>");
    let got = w.net.node(DURHAM).take(phone);
    assert!(
        got.contains("from='wayne@raleigh.example/r'") && got.contains("<show>away</show>"),
        "{got}"
    );
    // Unsubscribed: Kevin no longer sees Wayne.
    presence(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<presence to='kevin@fairfax.example' type='unsubscribed'/>",
    );
    let gone = w.net.node(HQ).take(w.kevin);
    assert!(
        gone.contains("type='unsubscribed'") && gone.contains("type='unavailable'"),
        "{gone}"
    );
    assert_eq!(
        subscription(&mut w.net, HQ, "kevin", "wayne@raleigh.example"),
        "From ask=false pending=false"
    );
}

#[test]
fn a_presence_change_crosses_once_per_node_whatever_the_subscribers() {
    let mut w = world();
    let mut fans = Vec::new();
    for i in 0..20 {
        let user = format!("fan{i}");
        w.net.node(DURHAM).add_user(&user, "f");
        let c = online(&mut w.net, DURHAM, &user, "f");
        let jid = format!("{user}@durham.example");
        befriend(
            &mut w.net,
            (DURHAM, c, &jid),
            (HQ, w.kevin, "kevin@fairfax.example"),
        );
        fans.push(c);
    }
    w.net.take_transcript(DURHAM);
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence><show>dnd</show></presence>",
    );
    let down: Vec<String> = w
        .net
        .take_transcript(DURHAM)
        .into_iter()
        .filter(|(up, _)| !*up)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        down.concat().matches("<show>dnd</show>").count(),
        1,
        "{down:?}"
    );
    for c in fans {
        assert!(w.net.node(DURHAM).take(c).contains("<show>dnd</show>"));
    }
}

#[test]
fn after_a_long_split_contacts_go_unavailable_and_come_back() {
    let mut w = world();
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (DURHAM, w.dana, "dana@durham.example"),
    );
    w.net.cut(RALEIGH);
    // A request sent during the split waits for it.
    w.net.node(RALEIGH).add_user("ann", "a");
    let ann = online(&mut w.net, RALEIGH, "ann", "a");
    presence(
        &mut w.net,
        RALEIGH,
        ann,
        "<presence to='kevin@fairfax.example' type='subscribe'/>",
    );
    w.net.advance(400_000); // Past the grace period.
    let hq = w.net.node(HQ).take(w.kevin);
    assert!(
        hq.contains("from='wayne@raleigh.example/r'") && hq.contains("type='unavailable'"),
        "{hq}"
    );
    let durham = w.net.node(DURHAM).take(w.dana);
    assert!(
        durham.contains("from='wayne@raleigh.example/r'") && durham.contains("type='unavailable'"),
        "{durham}"
    );
    let site = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        site.contains("from='kevin@fairfax.example/r'") && site.contains("type='unavailable'"),
        "{site}"
    );
    heal(&mut w.net, RALEIGH);
    let hq = w.net.node(HQ).take(w.kevin);
    assert!(
        hq.contains("from='wayne@raleigh.example/r'") && !hq.contains("unavailable"),
        "back: {hq}"
    );
    assert!(
        hq.contains("from='ann@raleigh.example'") && hq.contains("type='subscribe'"),
        "the request: {hq}"
    );
    assert!(w
        .net
        .node(DURHAM)
        .take(w.dana)
        .contains("from='wayne@raleigh.example/r'"));
    let site = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        site.contains("from='kevin@fairfax.example/r'")
            && site.contains("from='dana@durham.example/r'"),
        "{site}"
    );
}

#[test]
fn a_short_split_shows_nobody_leaving_and_only_changes_after_it() {
    let mut w = world();
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    w.net.cut(RALEIGH);
    w.net.advance(20_000);
    w.net.restore(RALEIGH);
    w.net.advance(60_000);
    w.net.settle();
    let hq = w.net.node(HQ).take(w.kevin);
    assert!(
        !hq.contains("<presence"),
        "nothing changed, nothing shown: {hq}"
    );
}

#[test]
fn a_query_left_unanswered_times_out_and_its_late_answer_is_dropped() {
    let mut w = world();
    w.net.node(RALEIGH).send(w.wayne, "<iq type='get' id='slow' to='kevin@fairfax.example/r'><query xmlns='jabber:iq:version'/></iq>");
    w.net.settle();
    assert!(w.net.node(HQ).take(w.kevin).contains("id='slow'"));
    // Kevin's client never answers in time.
    w.net.advance(31_000);
    let out = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        out.contains("id='slow'") && out.contains("<remote-server-timeout"),
        "{out}"
    );
    w.net.node(HQ).send(
        w.kevin,
        "<iq type='result' id='slow' to='wayne@raleigh.example/r'/>",
    );
    w.net.settle();
    assert!(
        !w.net.node(RALEIGH).take(w.wayne).contains("id='slow'"),
        "too late"
    );
    // Nor can a node answer what was never asked.
    w.net.node(HQ).send(
        w.kevin,
        "<iq type='result' id='never' to='wayne@raleigh.example/r'/>",
    );
    w.net.settle();
    assert!(!w.net.node(RALEIGH).take(w.wayne).contains("id='never'"));
    // One session's waiting queries are bounded.
    for i in 0..40 {
        w.net.node(RALEIGH).send(w.wayne, &format!("<iq type='get' id='q{i}' to='kevin@fairfax.example/r'><ping xmlns='urn:xmpp:ping'/></iq>"));
    }
    let out = w.net.node(RALEIGH).take(w.wayne);
    assert_eq!(out.matches("<resource-constraint").count(), 8, "{out}");
}

#[test]
fn a_pep_notification_crosses_once_per_node_to_the_sessions_that_asked() {
    let mut w = world();
    let metadata = "urn:xmpp:avatar:metadata";
    let notify = format!("{metadata}+notify");
    // Dana and a fan at Durham see Kevin's presence; Dana asked for avatars.
    befriend(
        &mut w.net,
        (DURHAM, w.dana, "dana@durham.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    w.net.node(DURHAM).add_user("fan", "f");
    let fan = online(&mut w.net, DURHAM, "fan", "f");
    befriend(
        &mut w.net,
        (DURHAM, fan, "fan@durham.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    assert!(w.net.node(DURHAM).online_with_features(w.dana, &[&notify]));
    w.net.settle();
    w.net.node(DURHAM).take(w.dana);
    w.net.take_transcript(DURHAM);
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{metadata}'><item id='a1'><metadata xmlns='{metadata}'><info id='a1' bytes='5' type='image/png'/></metadata></item></publish></pubsub></iq>"));
    w.net.settle();
    assert!(w.net.node(HQ).take(w.kevin).contains("type='result'"));
    let got = w.net.node(DURHAM).take(w.dana);
    assert!(
        got.contains("from='kevin@fairfax.example'") && got.contains("<item id='a1'>"),
        "{got}"
    );
    assert!(
        !w.net.node(DURHAM).take(fan).contains("<item"),
        "the fan did not ask"
    );
    let crossed: usize = w
        .net
        .take_transcript(DURHAM)
        .iter()
        .filter(|(up, t)| !*up && t.contains("<item id='a1'>"))
        .count();
    assert_eq!(crossed, 1);
    // Raleigh has no contact of Kevin's: nothing crosses there.
    assert!(!w
        .net
        .take_transcript(RALEIGH)
        .iter()
        .any(|(_, t)| t.contains("<item id='a1'>")));
}

#[test]
fn one_user_fills_only_its_share_of_a_split_links_queue() {
    let mut w = world();
    w.net.cut(RALEIGH);
    w.net.advance(1_000);
    let share = outpost::link::RELAYS_PER_SENDER;
    for i in 0..share {
        chat(
            &mut w.net,
            RALEIGH,
            w.wayne,
            "kevin@fairfax.example",
            &format!("q{i}"),
        );
    }
    assert!(
        !w.net.node(RALEIGH).take(w.wayne).contains("type='error'"),
        "all queued"
    );
    chat(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "kevin@fairfax.example",
        "one-too-many",
    );
    let refused = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        refused.contains("<resource-constraint") && refused.contains("too much from you waits"),
        "{refused}"
    );
    // Another user at the site still gets through, and nothing queued is lost.
    w.net.node(RALEIGH).add_user("ann", "a");
    let ann = online(&mut w.net, RALEIGH, "ann", "a");
    chat(
        &mut w.net,
        RALEIGH,
        ann,
        "kevin@fairfax.example",
        "from-ann",
    );
    assert!(!w.net.node(RALEIGH).take(ann).contains("type='error'"));
    heal(&mut w.net, RALEIGH);
    let got = w.net.node(HQ).take(w.kevin);
    assert_eq!(got.matches("<body>q").count(), share);
    assert!(got.contains("<body>from-ann</body>") && !got.contains("one-too-many"));
}

#[test]
fn sessions_that_died_with_a_crashed_node_go_unavailable_at_the_others() {
    let mut w = world();
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    befriend(
        &mut w.net,
        (DURHAM, w.dana, "dana@durham.example"),
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
    );
    w.net.crash_and_restart(HQ);
    let kevin = w.net.node(HQ).login("kevin", "k", "again");
    w.net.node(HQ).send(kevin, "<presence/>");
    w.net.advance(60_000);
    w.net.settle();
    let site = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        site.contains("type='unavailable' from='kevin@fairfax.example/r'"),
        "{site}"
    );
    assert!(
        !site.contains("type='unavailable' from='dana@durham.example/r'"),
        "Durham did not restart: {site}"
    );
    // Kevin's new session shows; a new session of Wayne's sees it alone.
    let phone = w.net.node(RALEIGH).login("wayne", "w", "phone");
    w.net.node(RALEIGH).send(phone, "<presence/>");
    let seen = w.net.node(RALEIGH).take(phone);
    assert!(
        seen.contains("from='kevin@fairfax.example/again'"),
        "{seen}"
    );
    assert!(!seen.contains("from='kevin@fairfax.example/r'"), "{seen}");
    // A site that crashes: HQ and the other site let its sessions go.
    w.net.crash_and_restart(RALEIGH);
    w.net.advance(60_000);
    w.net.settle();
    assert!(w
        .net
        .node(HQ)
        .take(kevin)
        .contains("type='unavailable' from='wayne@raleigh.example/r'"));
    assert!(w
        .net
        .node(DURHAM)
        .take(w.dana)
        .contains("type='unavailable' from='wayne@raleigh.example/r'"));
}

// ---- presence after a short split ------------------------------------------

#[test]
fn a_contact_who_went_offline_during_a_short_split_is_not_shown_online_after_it() {
    let mut w = world();
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    w.net.cut(RALEIGH);
    w.net.advance(5_000);
    // Wayne goes offline during the split (its unavailable is transient: lost).
    w.net
        .node(RALEIGH)
        .send(w.wayne, "<presence type='unavailable'/>");
    w.net.advance(15_000); // Well within the grace period.
    w.net.restore(RALEIGH);
    w.net.advance(60_000);
    w.net.settle();
    let hq = w.net.node(HQ).take(w.kevin);
    assert!(
        hq.contains("from='wayne@raleigh.example/r'") && hq.contains("type='unavailable'"),
        "Kevin is never told Wayne left: {hq}"
    );
}

#[test]
fn a_new_session_is_not_shown_a_contact_who_left_during_a_short_split() {
    let mut w = world();
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    w.net.cut(RALEIGH);
    w.net.advance(5_000);
    w.net.node(RALEIGH).disconnect(w.wayne);
    w.net.advance(15_000);
    w.net.restore(RALEIGH);
    w.net.advance(60_000);
    w.net.settle();
    let phone = w.net.node(HQ).login("kevin", "k", "phone");
    w.net.node(HQ).send(phone, "<presence/>");
    let got = w.net.node(HQ).take(phone);
    assert!(
        !got.contains("from='wayne@raleigh.example/r'"),
        "a stale copy of Wayne's presence, kept forever: {got}"
    );
}

// ---- blocking a contact at another node --------------------------------------

#[test]
fn blocking_a_remote_contact_stops_presence_reaching_them() {
    let mut w = world();
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='wayne@raleigh.example'/></block></iq>",
    );
    assert!(w.net.node(HQ).take(w.kevin).contains("type='result'"));
    let at_block = w.net.node(RALEIGH).take(w.wayne);
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence><show>away</show><status>secret</status></presence>",
    );
    let after = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        !after.contains("<status>secret</status>"),
        "the blocked contact still sees Kevin's presence: {after}"
    );
    assert!(
        at_block.contains("from='kevin@fairfax.example/r'") && at_block.contains("unavailable"),
        "XEP-0191 §3.3: the blocked contact sees Kevin go: {at_block}"
    );
}

#[test]
fn blocking_a_remote_contact_stops_pep_events_reaching_them() {
    let mut w = world();
    let metadata = "urn:xmpp:avatar:metadata";
    let notify = format!("{metadata}+notify");
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    assert!(w
        .net
        .node(RALEIGH)
        .online_with_features(w.wayne, &[&notify]));
    w.net.settle();
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='wayne@raleigh.example'/></block></iq>",
    );
    w.net.node(HQ).take(w.kevin);
    w.net.node(RALEIGH).take(w.wayne);
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{metadata}'><item id='a1'><metadata xmlns='{metadata}'><info id='a1' bytes='5' type='image/png'/></metadata></item></publish></pubsub></iq>"));
    w.net.settle();
    assert!(w.net.node(HQ).take(w.kevin).contains("type='result'"));
    let got = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        !got.contains("<item id='a1'>"),
        "the blocked contact gets Kevin's PEP event: {got}"
    );
}

// ---- a sender's share of a split link's queue ---------------------------------

/// Wayne fills his share of the split link's queue.
fn fill_share(w: &mut World) {
    w.net.cut(RALEIGH);
    w.net.advance(1_000);
    for i in 0..outpost::link::RELAYS_PER_SENDER {
        chat(
            &mut w.net,
            RALEIGH,
            w.wayne,
            "kevin@fairfax.example",
            &format!("q{i}"),
        );
    }
    w.net.node(RALEIGH).take(w.wayne);
}

#[test]
fn a_subscription_answer_is_not_lost_when_the_senders_share_is_full() {
    let mut w = world();
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence to='wayne@raleigh.example' type='subscribe'/>",
    );
    w.net.node(RALEIGH).take(w.wayne);
    fill_share(&mut w);
    // Wayne approves Kevin's request during the split.
    w.net.node(RALEIGH).send(
        w.wayne,
        "<presence to='kevin@fairfax.example' type='subscribed'/>",
    );
    let said = w.net.node(RALEIGH).take(w.wayne);
    heal(&mut w.net, RALEIGH);
    assert_eq!(
        subscription(&mut w.net, RALEIGH, "wayne", "kevin@fairfax.example"),
        "From ask=false pending=false",
        "Raleigh recorded the approval"
    );
    assert_eq!(
        subscription(&mut w.net, HQ, "kevin", "wayne@raleigh.example"),
        "To ask=false pending=false",
        "but it never reached HQ, and nobody was told ({said:?}): the rosters disagree for good"
    );
}

#[test]
fn a_message_refused_for_a_full_share_is_not_archived_as_sent() {
    let mut w = world();
    fill_share(&mut w);
    chat(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "kevin@fairfax.example",
        "one-too-many",
    );
    assert!(w
        .net
        .node(RALEIGH)
        .take(w.wayne)
        .contains("<resource-constraint"));
    let archived = w.net.node(RALEIGH).node.state().accounts["wayne"]
        .archive
        .iter()
        .any(|m| m.xml.contains("one-too-many"));
    assert!(
        !archived,
        "refused (never sent) yet in the sender's archive (and carbons) as sent"
    );
}

// ---- what a site may queue as itself -------------------------------------------

#[test]
fn a_site_cannot_push_other_users_queued_messages_out_with_domain_stanzas() {
    let mut w = world_with(|hq| hq.link.max_unacked = 8);
    w.net.cut(DURHAM);
    w.net.advance(1_000);
    chat(&mut w.net, HQ, w.kevin, "dana@durham.example", "k0");
    chat(&mut w.net, HQ, w.kevin, "dana@durham.example", "k1");
    assert!(!w.net.node(HQ).take(w.kevin).contains("type='error'"));
    // Raleigh (a site: it speaks for its domain) sends durable stanzas from
    // its domain JID to Durham: no share bounds them.
    let mut frames = String::new();
    for n in 1..=8 {
        frames.push_str(&format!("<e n='{n}'><relay from='raleigh.example' to='dana@durham.example'><message xmlns='jabber:client' type='chat'><body>flood-{n}</body></message></relay></e>"));
    }
    forge_link(&mut w.net, "raleigh.example", &frames);
    heal(&mut w.net, DURHAM);
    let dana = w.net.node(DURHAM).take(w.dana);
    assert!(
        dana.contains("<body>k0</body>") && dana.contains("<body>k1</body>"),
        "Kevin's accepted messages were pushed out of the queue: {dana}"
    );
}

// ---- room traffic and queued one-to-one messages -----------------------------

#[test]
fn room_traffic_during_a_split_does_not_drop_queued_one_to_one_messages() {
    let mut w = world_with(|hq| hq.link.max_unacked = 5);
    let join = |net: &mut Network, node: usize, conn: u64, nick: &str| {
        net.node(node).send(
            conn,
            &format!("<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
        );
        net.settle();
        net.node(node).take(conn);
    };
    join(&mut w.net, HQ, w.kevin, "Kevin");
    w.net.node(HQ).send(w.kevin, &format!("<iq type='set' id='inst' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"));
    w.net.settle();
    w.net.node(HQ).take(w.kevin);
    join(&mut w.net, DURHAM, w.dana, "Dana");
    w.net.advance(1_000);
    w.net.node(DURHAM).take(w.dana);
    w.net.cut(DURHAM);
    w.net.advance(1_000);
    chat(&mut w.net, HQ, w.kevin, "dana@durham.example", "private-0");
    assert!(!w.net.node(HQ).take(w.kevin).contains("type='error'"));
    for i in 0..10 {
        w.net.node(HQ).send(
            w.kevin,
            &format!("<message to='{ROOM}' type='groupchat'><body>room-{i}</body></message>"),
        );
    }
    heal(&mut w.net, DURHAM);
    let dana = w.net.node(DURHAM).take(w.dana);
    assert!(dana.contains("<body>room-9</body>"), "{dana}");
    assert!(
        dana.contains("<body>private-0</body>"),
        "the accepted one-to-one message was dropped for room events: {dana}"
    );
}

// ---- what is kept of contacts nobody follows ----------------------------------

#[test]
fn a_presence_kept_for_a_contact_nobody_follows_is_not_shown_later() {
    let mut w = world();
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence to='wayne@raleigh.example' type='subscribe'/>",
    );
    presence(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<presence to='kevin@fairfax.example' type='subscribed'/>",
    );
    // Kevin stops following Wayne; Wayne pre-approves him and leaves.
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence to='wayne@raleigh.example' type='unsubscribe'/>",
    );
    presence(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<presence to='kevin@fairfax.example' type='subscribed'/>",
    );
    w.net.node(RALEIGH).disconnect(w.wayne);
    w.net.settle();
    // Kevin asks again: approved at once (pre-approval).
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence to='wayne@raleigh.example' type='subscribe'/>",
    );
    assert_eq!(
        subscription(&mut w.net, HQ, "kevin", "wayne@raleigh.example"),
        "To ask=false pending=false"
    );
    let phone = w.net.node(HQ).login("kevin", "k", "phone");
    w.net.node(HQ).send(phone, "<presence/>");
    let got = w.net.node(HQ).take(phone);
    assert!(
        !got.contains("from='wayne@raleigh.example/r'"),
        "Wayne (offline) shown online from a copy kept after nobody followed him: {got}"
    );
}

// ---- queries from contacts at other nodes ------------------------------------

#[test]
fn a_remote_contacts_last_activity_query_is_answered() {
    let mut w = world();
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    w.net.node(RALEIGH).send(
        w.wayne,
        "<iq type='get' id='last1' to='kevin@fairfax.example'><query xmlns='jabber:iq:last'/></iq>",
    );
    w.net.settle();
    let got = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        got.contains("id='last1'"),
        "no answer at all (the router asks bound.user_of(LINK_CONN)): {got:?}"
    );
}

#[test]
fn a_query_to_a_site_split_from_hq_fails_at_once() {
    let mut w = world();
    w.net.cut(DURHAM);
    w.net.advance(1_000);
    w.net.node(RALEIGH).send(
        w.wayne,
        "<iq type='get' id='v1' to='dana@durham.example/r'><query xmlns='jabber:iq:version'/></iq>",
    );
    w.net.advance(2_000);
    let got = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        got.contains("id='v1'") && got.contains("type='error'"),
        "HQ drops the query silently; Wayne waits 30 s: {got:?}"
    );
}

// ---- delayed delivery through HQ ----------------------------------------------

#[test]
fn a_message_that_waits_at_hq_for_the_other_site_is_marked_delayed() {
    let mut w = world();
    w.net.cut(DURHAM);
    w.net.advance(1_000);
    chat(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "dana@durham.example",
        "waited",
    );
    w.net.advance(60_000);
    heal(&mut w.net, DURHAM);
    let dana = w.net.node(DURHAM).take(w.dana);
    assert!(dana.contains("<body>waited</body>"), "{dana}");
    assert!(
        dana.contains("urn:xmpp:delay"),
        "a minute late, without <delay/>: {dana}"
    );
}

// ---- bounds on what is kept of other nodes' presence --------------------------

#[test]
fn one_site_cannot_fill_the_remote_presence_cache_for_the_others() {
    let mut w = world();
    befriend(
        &mut w.net,
        (RALEIGH, w.wayne, "wayne@raleigh.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    befriend(
        &mut w.net,
        (DURHAM, w.dana, "dana@durham.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    // Raleigh says Wayne has ten thousand sessions (unnumbered presences).
    let mut frames = String::new();
    for i in 0..10_000 {
        frames.push_str(&format!("<t><relay from='wayne@raleigh.example/x{i}' to='fairfax.example'><presence xmlns='jabber:client'/></relay></t>"));
    }
    forge_link(&mut w.net, "raleigh.example", &frames);
    let flood = w.net.node(HQ).take(w.kevin);
    assert!(
        flood.contains("wayne@raleigh.example/x9999"),
        "{}",
        &flood[..flood.len().min(2000)]
    );
    // Dana comes online on her phone too: no room left for it.
    let dana_phone = w.net.node(DURHAM).login("dana", "d", "phone");
    presence(&mut w.net, DURHAM, dana_phone, "<presence/>");
    assert!(w
        .net
        .node(HQ)
        .take(w.kevin)
        .contains("from='dana@durham.example/phone'"));
    let phone = w.net.node(HQ).login("kevin", "k", "phone");
    w.net.node(HQ).send(phone, "<presence/>");
    let got = w.net.node(HQ).take(phone);
    assert!(
        got.contains("from='dana@durham.example/phone'"),
        "Dana's presence was not kept: Raleigh filled the cache: {}",
        got.len()
    );
}

// ---- a peer removed from the settings -----------------------------------------

#[test]
fn a_site_removed_from_the_settings_is_no_longer_a_route() {
    let mut w = world();
    let mut cfg = NodeConfig::new("fairfax.example");
    cfg.link.peers = vec!["raleigh.example".into()];
    cfg.link.compress = false;
    w.net.node(HQ).event(Event::Reconfigure {
        config: Box::new(cfg),
    });
    chat(&mut w.net, HQ, w.kevin, "dana@durham.example", "nowhere");
    w.net.settle();
    let got = w.net.node(HQ).take(w.kevin);
    assert!(
        got.contains("<remote-server-not-found"),
        "the router still routes there (routes not refreshed): {got}"
    );
    let archived = w.net.node(HQ).node.state().accounts["kevin"]
        .archive
        .iter()
        .any(|m| m.xml.contains("nowhere"));
    assert!(!archived, "archived as sent");
}

// ---- a request to nobody at another node --------------------------------------

#[test]
fn a_subscription_request_to_nobody_at_another_node_is_answered() {
    let mut w = world();
    presence(
        &mut w.net,
        RALEIGH,
        w.wayne,
        "<presence to='nobody@fairfax.example' type='subscribe'/>",
    );
    let got = w.net.node(RALEIGH).take(w.wayne);
    assert_eq!(
        subscription(&mut w.net, RALEIGH, "wayne", "nobody@fairfax.example"),
        "None ask=false pending=false",
        "pending for ever (a local request to nobody is answered unsubscribed): {got}"
    );
}

#[test]
fn a_second_subscriber_at_a_node_is_shown_the_contacts_presence_at_once() {
    let mut w = world();
    befriend(
        &mut w.net,
        (DURHAM, w.dana, "dana@durham.example"),
        (HQ, w.kevin, "kevin@fairfax.example"),
    );
    w.net.node(DURHAM).add_user("fan", "f");
    let fan = online(&mut w.net, DURHAM, "fan", "f");
    presence(
        &mut w.net,
        DURHAM,
        fan,
        "<presence to='kevin@fairfax.example' type='subscribe'/>",
    );
    w.net.node(HQ).take(w.kevin);
    presence(
        &mut w.net,
        HQ,
        w.kevin,
        "<presence to='fan@durham.example' type='subscribed'/>",
    );
    let got = w.net.node(DURHAM).take(fan);
    assert!(
        got.contains("type='subscribed'")
            && got.contains("<presence from='kevin@fairfax.example/r'"),
        "{got}"
    );
    assert_eq!(
        w.net.node(DURHAM).take(w.dana),
        "",
        "Dana saw nothing change"
    );
}
