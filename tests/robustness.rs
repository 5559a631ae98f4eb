//! Seeded random mutations of real client traffic, fed to the core: it must
//! never panic, must answer garbage with a stream error or a stanza error,
//! and must keep serving everyone else. (A stand-in for coverage-guided
//! fuzzing that runs on the stable toolchain in every test run.)

use outpost::node::NodeConfig;
use outpost::sim::Rng;
use outpost::sim::SimNode;

/// An index in `0..n`.
fn below(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

const STANZAS: &[&str] = &[
    "<message to='bob@localhost' type='chat' id='m1'><body>hello &amp; welcome</body></message>",
    "<presence><show>away</show><status>out</status><priority>3</priority></presence>",
    "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
    "<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='B'><group>G</group></item></query></iq>",
    "<presence to='bob@localhost' type='subscribe'/>",
    "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    "<message to='bob@localhost/b'><body><![CDATA[<x>]]></body><x xmlns='urn:e' a=\"'\"/></message>",
    "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
    "<presence to='r@conference.localhost/N'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='2'/></x></presence>",
    "<message to='r@conference.localhost' type='groupchat' id='g'><body>hi</body></message>",
    "<iq type='set' id='o' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>",
    "<iq type='set' id='a' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='N' role='none'/></query></iq>",
    "<iq type='set' id='q' to='r@conference.localhost'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></query></iq>",
    "<presence to='r@conference.localhost/M'/>",
    "<message to='r@conference.localhost/N' type='chat'><body>pm</body></message>",
    "<enable xmlns='urn:xmpp:sm:3' resume='true'/>",
    "<r xmlns='urn:xmpp:sm:3'/>",
    "<a xmlns='urn:xmpp:sm:3' h='1'/>",
    "<iq type='set' id='mq'><query xmlns='urn:xmpp:mam:2' queryid='x'><x xmlns='jabber:x:data' type='submit'><field var='with'><value>bob@localhost</value></field><field var='ids'><value>a</value><value>b</value></field></x><set xmlns='http://jabber.org/protocol/rsm'><max>3</max><after>zz</after></set><flip-page/></query></iq>",
    "<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>bob@localhost</jid></always><never/></prefs></iq>",
    "<iq type='get' id='md'><metadata xmlns='urn:xmpp:mam:2'/></iq>",
    "<iq type='get' id='l' to='bob@localhost'><query xmlns='jabber:iq:last'/></iq>",
    "<presence to='bob@localhost' type='subscribed'/>",
    "<inactive xmlns='urn:xmpp:csi:0'/>",
    "<iq type='set' id='pb'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:metadata'><item id='a'><metadata xmlns='urn:xmpp:avatar:metadata'/></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#max_items'><value>max</value></field></x></publish-options></pubsub></iq>",
    "<iq type='get' id='it' to='bob@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata' max_items='1'><item id='a'/></items></pubsub></iq>",
    "<iq type='set' id='rt'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='n' notify='1'><item id='a'/></retract></pubsub></iq>",
    "<iq type='set' id='cf'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>",
    "<iq type='set' id='cr'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='n'/></pubsub></iq>",
    "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
    "<iq type='result' id='caps-1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='n#v'><identity category='client' type='pc'/><feature var='x+notify'/><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>t</value></field></x></query></iq>",
    "<iq type='set' id='bl'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'><text>t</text></report></item></block></iq>",
    "<iq type='set' id='ub'><unblock xmlns='urn:xmpp:blocking'/></iq>",
    "<iq type='set' id='pv'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='r@conference.localhost'/></storage></query></iq>",
    "<iq type='set' id='vc'><vCard xmlns='vcard-temp'><FN>A</FN></vCard></iq>",
    "<iq type='get' id='vg' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>",
    "<iq type='set' id='mo' to='r@conference.localhost'><moderate id='x' xmlns='urn:xmpp:message-moderate:1'><retract xmlns='urn:xmpp:message-retract:1'/><reason>r</reason></moderate></iq>",
    "<iq type='set' id='mf' to='r@conference.localhost'><apply-to id='x' xmlns='urn:xmpp:fasten:0'><moderate xmlns='urn:xmpp:message-moderate:0'><retract xmlns='urn:xmpp:message-retract:0'/></moderate></apply-to></iq>",
];

const NASTY: &[&str] = &[
    "<",
    ">",
    "&",
    "'",
    "\"",
    "]]>",
    "<!",
    "<?",
    "</",
    "/>",
    "&#0;",
    "\u{0}",
    "\u{ff}",
    "xmlns:x='y' ",
];

fn mutate(rng: &mut Rng, input: &str) -> Vec<u8> {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..=below(rng, 3) {
        let at = below(rng, bytes.len() + 1);
        match below(rng, 4) {
            0 if !bytes.is_empty() => {
                let i = below(rng, bytes.len());
                bytes[i] ^= 1 << below(rng, 8);
            }
            1 => {
                let n = NASTY[below(rng, NASTY.len())];
                bytes.splice(at..at, n.bytes());
            }
            2 if at < bytes.len() => {
                let end = (at + below(rng, 8)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                let s = STANZAS[below(rng, STANZAS.len())];
                bytes.splice(at..at, s.bytes());
            }
        }
    }
    bytes
}

#[test]
fn mutated_streams_never_panic_and_never_disturb_others() {
    let mut rng = Rng(0x05ee_d0f0_u64 | 1);
    let mut cfg = NodeConfig::new("localhost");
    cfg.limits.max_stanza_bytes = 2048;
    let mut sim = SimNode::new(cfg, 11);
    sim.add_user("alice", "wonderland");
    sim.add_user("bob", "builder");
    let bob = sim.login("bob", "builder", "b");
    sim.send(bob, "<presence/>");
    let mut closed_with_error = 0;
    for round in 0..400 {
        let alice = sim.login("alice", "wonderland", &format!("r{round}"));
        for _ in 0..8 {
            let base = STANZAS[below(&mut rng, STANZAS.len())];
            let bytes = mutate(&mut rng, base);
            // Deliver in random chunks, as TCP would.
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + below(&mut rng, rest.len());
                sim.event(outpost::node::Event::Data {
                    conn: alice,
                    bytes: rest[..n].to_vec(),
                });
                rest = &rest[n..];
            }
            if sim.is_closed(alice) {
                break;
            }
        }
        let out = sim.take(alice);
        if sim.is_closed(alice) {
            assert!(
                out.contains("<stream:error>") && out.ends_with("</stream:stream>"),
                "round {round}: {out}"
            );
            closed_with_error += 1;
        } else {
            sim.disconnect(alice);
        }
        sim.advance(61_000); // Let timers fire on whatever was left half-written.
        sim.take(bob);
        sim.send(
            bob,
            "<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        assert!(
            sim.take(bob).contains("id='alive'"),
            "round {round}: bob lost service"
        );
    }
    assert!(
        closed_with_error > 50,
        "mutations should often be fatal: {closed_with_error}"
    );
}

#[test]
fn random_bytes_before_and_during_negotiation_never_panic() {
    let mut rng = Rng(42);
    let mut sim = SimNode::new(NodeConfig::new("localhost"), 5);
    sim.add_user("alice", "wonderland");
    let header = sim.header();
    let openings = [
        String::new(),
        header.clone(),
        format!("{header}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>{header}"),
        format!("{header}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>{header}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiYw==</auth>"),
    ];
    for i in 0..2000 {
        let c = sim.connect();
        let opening = &openings[i % openings.len()];
        let tail = mutate(&mut rng, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdvbmRlcmxhbmQ=</auth><response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdzLHI9YWJj</response>");
        sim.send(c, opening);
        sim.event(outpost::node::Event::Data {
            conn: c,
            bytes: tail,
        });
        sim.disconnect(c);
        sim.take(c);
    }
    assert_eq!(sim.node.session_count(), 0, "every session was cleaned up");
}

/// Line noise on the serial port: any bytes, in any order, never panic the
/// console, every answer stays bounded, and it still takes commands after.
#[test]
fn the_console_survives_line_noise() {
    use outpost::admin::console::{Console, Request};
    let mut rng = Rng(0x00c0_501e);
    for trusted in [true, false] {
        let mut console = Console::new(trusted, true);
        console.take_output();
        for round in 0..300 {
            let noise: Vec<u8> = (0..below(&mut rng, 400))
                .map(|_| rng.next_u64() as u8)
                .collect();
            for &b in &noise {
                match console.push(b) {
                    Some(Request::Login(_)) => console.login_result(round % 2 == 0),
                    Some(_) => console.finish(if round % 3 == 0 {
                        Ok("done".into())
                    } else {
                        Err("no".into())
                    }),
                    None => {}
                }
                let out = console.take_output();
                assert!(out.len() < 4096, "one byte, one bounded answer");
            }
        }
        // Ctrl-C drops whatever is half typed (a password prompt too); a
        // trusted console then takes a command.
        if trusted {
            let mut asked = None;
            for &b in b"\x03status\r" {
                asked = asked.or(console.push(b));
            }
            assert_eq!(asked, Some(Request::Run(outpost::admin::Command::Status)));
        }
    }
}

/// Mutated requests to the admin page: the parser never panics, and what it
/// accepts parses as a form without panicking either.
#[test]
fn the_http_parser_survives_mutated_requests() {
    use outpost::admin::http::{parse, Parsed};
    let mut rng = Rng(47_779);
    let base = "POST /action HTTP/1.1\r\nHost: x\r\nCookie: outpost_sid=abc\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 31\r\n\r\ncsrf=t&op=user_add&user=a%20b+c";
    let (mut done, mut refused) = (0, 0);
    for _ in 0..5000 {
        let bytes = mutate(&mut rng, base);
        match parse(&bytes) {
            Parsed::Done(r) => {
                let _ = r.form();
                let _ = r.cookie("outpost_sid");
                done += 1;
            }
            Parsed::Error(status, _) => {
                assert!((400..=505).contains(&status));
                refused += 1;
            }
            Parsed::Incomplete => {}
        }
    }
    assert!(
        done > 100 && refused > 100,
        "{done} parsed, {refused} refused"
    );
}

/// A link peer that opens a compressed stream and then sends garbage loses
/// its link, nothing else: no panic, no unbounded buffering.
#[test]
fn garbage_in_a_compressed_link_closes_only_that_link() {
    let mut rng = Rng(0x0002_1e57);
    let mut cfg = NodeConfig::new("fairfax.example");
    cfg.link.peers = vec!["raleigh.example".into()];
    let mut sim = SimNode::new(cfg, 9);
    sim.add_user("kevin", "k");
    let kevin = sim.login("kevin", "k", "hq");
    let mut closed = 0;
    for _ in 0..300 {
        let conn = sim.alloc_conn();
        sim.event(outpost::node::Event::LinkUp {
            conn,
            peer: "raleigh.example".into(),
        });
        let mut bytes = b"Z".to_vec();
        bytes.extend((0..1 + below(&mut rng, 2000)).map(|_| rng.next_u64() as u8));
        sim.event(outpost::node::Event::Data { conn, bytes });
        if sim.is_closed(conn) {
            closed += 1;
        } else {
            sim.disconnect(conn);
        }
        sim.take_bytes(conn);
    }
    assert!(closed > 250, "garbage is refused: {closed}/300");
    sim.take(kevin);
    sim.send(
        kevin,
        "<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(sim.take(kevin).contains("id='alive'"));
}
