//! One network across a simulated network: users at HQ and at two sites
//! message each other one-to-one and query each other (iq) over the
//! links; a site reaches the other site through HQ, which relays. During
//! a split messages queue and arrive once, with <delay/>, after it; the
//! stanza-id minted at the sender's node is the one in both archives.

use outpost::node::{Event, NodeConfig};
use outpost::sim::{between, Network, Shape};

const HQ: usize = 0;
const RALEIGH: usize = 1;
const DURHAM: usize = 2;

struct World {
    net: Network,
    kevin: u64,
    wayne: u64,
    dana: u64,
}

fn world() -> World {
    let mut net = Network::new();
    let mut hq = NodeConfig::new("fairfax.example");
    hq.link.peers = vec!["raleigh.example".into(), "durham.example".into()];
    hq.link.compress = false;
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

fn online(net: &mut Network, node: usize, user: &str, pw: &str) -> u64 {
    let c = net.node(node).login(user, pw, "r");
    net.node(node).send(c, "<presence/>");
    net.node(node).take(c);
    c
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
    w.net.restore(RALEIGH);
    w.net.advance(120_000); // Redial (its backoff grew during the minute), hello, resend.
    w.net.settle();
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
    let hq = w.net.node(HQ);
    let conn = hq.alloc_conn();
    hq.event(Event::LinkUp {
        conn,
        peer: "raleigh.example".into(),
    });
    hq.take(conn);
    // Raleigh claims to be Dana at Durham, then HQ's own Kevin.
    let forged = "<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' from='raleigh.example' version='1.0'><hello received='0'/>\
        <e n='1'><relay from='dana@durham.example/x' to='kevin@fairfax.example'><message xmlns='jabber:client' type='chat'><body>forged-1</body></message></relay></e>\
        <e n='2'><relay from='kevin@fairfax.example/x' to='kevin@fairfax.example'><message xmlns='jabber:client' type='chat'><body>forged-2</body></message></relay></e>\
        <e n='3'><relay from='mallory@raleigh.example/x' to='kevin@fairfax.example'><message xmlns='jabber:client' type='chat'><body>honest</body></message></relay></e>";
    hq.send(conn, forged);
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
    w.net.restore(RALEIGH);
    w.net.advance(120_000);
    w.net.settle();
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
    w.net.restore(RALEIGH);
    w.net.advance(120_000);
    w.net.settle();
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
