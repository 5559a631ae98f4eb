//! Files in a simulated network: XEP-0363 uploads with their bounds, and
//! files crossing the links once per node in a lane that keeps chat
//! first, resuming after cuts and restarts, checked by SHA-256.
//! What the HTTP server does is played here through the same questions
//! it asks the core (`FileAsk`), with the bytes written as it writes them.

use outpost::files::{FileAnswer, FileAsk, FileKey, FileStore};
use outpost::node::{AdminCommand, AdminReply, Event};
use outpost::sim::{between, Network, Shape};

#[path = "common/files_world.rs"]
mod files_world;
use files_world::*;

fn key_of(path: &str) -> FileKey {
    outpost::files::url::parse_path(path)
        .expect("a file path")
        .0
}

/// GET `path` at `node` and follow it as the HTTP server does until the
/// file is whole: what it served.
fn download(net: &mut Network, node: usize, path: &str) -> Result<Vec<u8>, (u16, String)> {
    let mut req = 100;
    let mut answer = net.node(node).file_ask(
        req,
        FileAsk::Get {
            path: path.into(),
            head: false,
        },
    );
    loop {
        match answer {
            Some(FileAnswer::Serve {
                key,
                complete: true,
                ..
            }) => return Ok(net.node(node).files.file(&key).expect("the bytes")),
            Some(FileAnswer::Serve { key, have, .. }) => {
                req += 1;
                answer = net.node(node).file_ask(req, FileAsk::Wait { key, have });
            }
            Some(FileAnswer::Refused { status, why }) => return Err((status, why)),
            Some(other) => panic!("unexpected {other:?}"),
            None => {
                net.advance(1_000);
                answer = net.node(node).file_answer(req);
            }
        }
    }
}

fn local(net: &mut Network, node: usize, path: &str) -> Option<FileAnswer> {
    net.node(node).file_ask(
        7,
        FileAsk::Get {
            path: path.into(),
            head: false,
        },
    )
}

#[test]
fn a_user_uploads_a_file_and_the_node_serves_it_from_its_index() {
    let mut w = world(Shape::default(), |_| {});
    let data = photo(5000, 1);
    let path = upload(&mut w.net, HQ, w.kevin, "site photo.jpg", &data);
    assert!(path.starts_with("/files/fairfax.example/") && path.ends_with("/site%20photo.jpg"));
    let Some(FileAnswer::Serve { meta, complete, .. }) = local(&mut w.net, HQ, &path) else {
        panic!("not served");
    };
    assert!(complete);
    assert_eq!((meta.size, meta.name.as_str()), (5000, "site photo.jpg"));
    assert_eq!(meta.content_type, "image/jpeg");
    assert_eq!(download(&mut w.net, HQ, &path).unwrap(), data);
    // The index is durable: after a crash the file is still served.
    w.net.node(HQ).crash_and_restart();
    assert!(matches!(
        local(&mut w.net, HQ, &path),
        Some(FileAnswer::Serve { complete: true, .. })
    ));
}

#[test]
fn the_upload_service_is_in_disco_and_says_its_largest_file() {
    let mut w = world(Shape::default(), |_| {});
    let hq = w.net.node(HQ);
    hq.send(w.kevin, "<iq type='get' id='i' to='fairfax.example'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    assert!(hq.take(w.kevin).contains("jid='upload.fairfax.example'"));
    hq.send(w.kevin, "<iq type='get' id='j' to='upload.fairfax.example'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let info = hq.take(w.kevin);
    assert!(info.contains("urn:xmpp:http:upload:0") && info.contains("<value>10485760</value>"));
}

#[test]
fn slots_are_bounded_per_file_per_user_and_per_node_and_bad_puts_store_nothing() {
    let mut w = world(Shape::default(), |c| {
        c.upload.max_file_bytes = 10_000;
        c.upload.user_quota_bytes = 25_000;
        c.upload.total_bytes = 30_000;
        c.upload.slots_per_user = 3;
    });
    let (hq, kevin) = (HQ, w.kevin);
    // Larger than a file may be: not-acceptable, with the maximum.
    let big = ask_slot(&mut w.net, hq, kevin, "big.jpg", 10_001);
    assert!(
        big.contains("<not-acceptable") && big.contains("<max-file-size>10000</max-file-size>")
    );
    // A name with a path in it.
    let tricky = ask_slot(&mut w.net, hq, kevin, "../../etc/passwd", 10);
    assert!(tricky.contains("<bad-request"), "{tricky}");
    // Slots count against the quota before their upload: three of 9,000
    // bytes pass 25,000.
    let first = ask_slot(&mut w.net, hq, kevin, "a.jpg", 9_000);
    let _second = ask_slot(&mut w.net, hq, kevin, "b.jpg", 9_000);
    let third = ask_slot(&mut w.net, hq, kevin, "c.jpg", 9_000);
    assert!(third.contains("<resource-constraint"), "{third}");
    // A wrong token, a length not the slot's, a path trick: refused.
    let (path, token) = put_target(&first);
    let n = w.net.node(hq);
    let put = |path: &str, token: &str, len| FileAsk::Put {
        path: path.into(),
        token: token.into(),
        len,
    };
    assert!(matches!(
        n.file_ask(1, put(&path, "00", 9_000)),
        Some(FileAnswer::Refused { status: 403, .. })
    ));
    assert!(matches!(
        n.file_ask(1, put(&path, &token, 9_001)),
        Some(FileAnswer::Refused { status: 400, .. })
    ));
    let trick = path.replace("/a.jpg", "/..%2F..%2Fa.jpg");
    assert!(matches!(
        n.file_ask(1, put(&trick, &token, 9_000)),
        Some(FileAnswer::Refused { status: 404, .. })
    ));
    // One PUT at a time takes a slot; a second is refused while it runs.
    let Some(FileAnswer::PutAccepted { key }) = n.file_ask(1, put(&path, &token, 9_000)) else {
        panic!("refused");
    };
    assert!(matches!(
        n.file_ask(1, put(&path, &token, 9_000)),
        Some(FileAnswer::Refused { status: 409, .. })
    ));
    // A body that ended early: the PUT gives the slot back, nothing stored.
    n.files.write_part(&key, 0, &photo(4_000, 2)).unwrap();
    n.files.remove(&key);
    let failed = FileAsk::PutFailed {
        token: token.clone(),
    };
    n.file_ask(2, failed);
    assert_eq!(n.files.stored(), (0, 0));
    assert!(n.node.state().files.is_empty());
    assert!(matches!(
        n.file_ask(1, put(&path, &token, 9_000)),
        Some(FileAnswer::PutAccepted { .. })
    ));
    n.file_ask(
        2,
        FileAsk::PutFailed {
            token: token.clone(),
        },
    );
    // Slots expire, with their bytes, and give their quota back.
    w.net.advance(301_000);
    let n = w.net.node(hq);
    assert!(matches!(
        n.file_ask(1, put(&path, &token, 9_000)),
        Some(FileAnswer::Refused { status: 403, .. })
    ));
    assert!(n.files.parts.borrow().is_empty());
    let again = ask_slot(&mut w.net, hq, kevin, "c.jpg", 9_000);
    assert!(again.contains("<slot"), "{again}");
    // The node's bound holds across its users.
    w.net.node(HQ).add_user("kim", "k");
    let kim = online(&mut w.net, HQ, "kim", "k");
    for i in 0..2 {
        let d = photo(9_000, 10 + i);
        upload(&mut w.net, HQ, kim, &format!("k{i}.jpg"), &d);
    }
    let over = ask_slot(&mut w.net, HQ, kim, "k3.jpg", 5_000);
    assert!(
        over.contains("<resource-constraint") && over.contains("full"),
        "{over}"
    );
    let _ = (w.wayne, w.dana);
}

#[test]
fn ten_readers_at_a_site_cost_the_link_one_copy_of_the_file() {
    let mut w = world(Shape::default(), |_| {});
    let data = photo(200_000, 3);
    let path = upload(&mut w.net, HQ, w.kevin, "photo.jpg", &data);
    w.net.reset_counters();
    assert_eq!(download(&mut w.net, RALEIGH, &path).unwrap(), data);
    let (up, down) = w.net.link_bytes(RALEIGH);
    assert!(
        (200_000..230_000).contains(&down),
        "one copy crossed: {down}"
    );
    for _ in 0..9 {
        assert_eq!(download(&mut w.net, RALEIGH, &path).unwrap(), data);
    }
    assert_eq!(
        w.net.link_bytes(RALEIGH),
        (up, down),
        "nothing more crossed"
    );
    let _ = (w.wayne, w.dana);
}

#[test]
fn a_site_reads_another_sites_file_through_hq_which_keeps_a_copy() {
    let mut w = world(Shape::default(), |_| {});
    let data = photo(30_000, 4);
    let path = upload(&mut w.net, RALEIGH, w.wayne, "from-raleigh.jpg", &data);
    w.net.reset_counters();
    assert_eq!(download(&mut w.net, DURHAM, &path).unwrap(), data);
    let (raleigh_up, raleigh_down) = w.net.link_bytes(RALEIGH);
    assert!((30_000..34_500).contains(&raleigh_up), "{raleigh_up}");
    assert!(raleigh_down < 3_000, "{raleigh_down}");
    // HQ kept it: HQ's reader costs Raleigh's link nothing.
    let before = w.net.link_bytes(RALEIGH);
    assert_eq!(download(&mut w.net, HQ, &path).unwrap(), data);
    assert_eq!(w.net.link_bytes(RALEIGH), before);
    let _ = (w.kevin, w.dana);
}

/// One-to-one messages from Raleigh to Kevin every `every_ms` for
/// `count` messages: how long each took to arrive, in ms.
fn chat_latencies(w: &mut World, count: usize, every_ms: u64) -> Vec<u64> {
    let mut latencies = Vec::new();
    for i in 0..count {
        w.net.node(RALEIGH).send(
            w.wayne,
            &format!("<message to='kevin@fairfax.example' type='chat' id='c{i}'><body>ping {i}</body></message>"),
        );
        let sent = w.net.now_ms;
        let mut waited = 0;
        loop {
            w.net.advance(10);
            waited += 10;
            if w.net.node(HQ).take(w.kevin).contains(&format!("ping {i}<")) {
                break;
            }
            assert!(waited < 60_000, "message {i} never came");
        }
        latencies.push(w.net.now_ms - sent);
        w.net.advance(every_ms.saturating_sub(waited));
    }
    latencies
}

#[test]
fn chat_waits_at_most_a_chunk_behind_a_file_on_a_9600_bit_link() {
    let shape = Shape {
        latency_ms: 300,
        rate: 1200,
    };
    let mut w = world(shape, |_| {});
    let idle = chat_latencies(&mut w, 5, 3_000);
    let data = photo(100_000, 5);
    let path = upload(&mut w.net, HQ, w.kevin, "big.jpg", &data);
    // Kevin's photo crosses to Raleigh while Wayne chats to Kevin, the
    // other way; and HQ answers Wayne on the way the file goes.
    let key = key_of(&path);
    assert_eq!(
        local(&mut w.net, RALEIGH, &path),
        None,
        "the GET waits for the file's size"
    );
    let busy = chat_latencies(&mut w, 10, 3_000);
    let mut busy_down = Vec::new();
    for i in 0..10 {
        w.net.node(HQ).send(
            w.kevin,
            &format!("<message to='wayne@raleigh.example' type='chat' id='d{i}'><body>pong {i}</body></message>"),
        );
        let sent = w.net.now_ms;
        loop {
            w.net.advance(10);
            if w.net
                .node(RALEIGH)
                .take(w.wayne)
                .contains(&format!("pong {i}<"))
            {
                break;
            }
        }
        busy_down.push(w.net.now_ms - sent);
        w.net.advance(2_000);
    }
    let fetch = w.net.node(RALEIGH).node.files_fetch_have(&key);
    assert!(
        fetch.is_some_and(|h| h > 0 && h < 100_000),
        "still crossing: {fetch:?}"
    );
    let idle_max = *idle.iter().max().unwrap();
    for l in busy.iter().chain(&busy_down) {
        assert!(
            *l <= idle_max + 1_000,
            "idle {idle:?}, during {busy:?} / {busy_down:?}"
        );
    }
    // And the file does come, whole.
    assert_eq!(download(&mut w.net, RALEIGH, &path).unwrap(), data);
}

#[test]
fn a_cut_and_a_restart_mid_transfer_resume_where_the_file_stopped() {
    let shape = Shape {
        latency_ms: 300,
        rate: 1200,
    };
    let mut w = world(shape, |_| {});
    let data = photo(20_000, 6);
    let path = upload(&mut w.net, HQ, w.kevin, "resume.jpg", &data);
    let key = key_of(&path);
    w.net.reset_counters();
    assert_eq!(local(&mut w.net, RALEIGH, &path), None);
    w.net.advance(6_000);
    let have = w.net.node(RALEIGH).node.files_fetch_have(&key).unwrap();
    assert!(have > 0, "some came before the cut");
    // The console and the web page show it: how far, how fast, from where.
    let AdminReply::Status(status) = w.net.node(RALEIGH).admin(AdminCommand::Status) else {
        panic!("no status");
    };
    let t = &status.transfers[0];
    assert_eq!((t.have, t.size), (have, Some(20_000)));
    assert_eq!(t.peer.as_deref(), Some("conference.fairfax.example"));
    assert!(t.rate > 0 && t.name == "resume.jpg", "{t:?}");
    w.net.cut(RALEIGH);
    w.net.advance(30_000);
    w.net.restore(RALEIGH);
    let mut after_cut = have;
    for _ in 0..120 {
        w.net.advance(1_000);
        after_cut = w.net.node(RALEIGH).node.files_fetch_have(&key).unwrap();
        if after_cut > have {
            break;
        }
    }
    assert!(after_cut > have, "it went on from {have}: {after_cut}");
    // A crash: the part file stays, and the fetch goes on from its end.
    w.net.node(RALEIGH).crash_and_restart();
    w.net.advance(120_000);
    w.net.settle();
    assert_eq!(download(&mut w.net, RALEIGH, &path).unwrap(), data);
    let (_, down) = w.net.link_bytes(RALEIGH);
    assert!(
        down < 20_000 + 6_000,
        "no part crossed twice (or little): {down}"
    );
}

#[test]
fn a_peer_that_sends_bytes_not_matching_the_hash_leaves_nothing_stored() {
    let mut w = world(Shape::default(), |_| {});
    let data = photo(3_000, 7);
    let path = upload(&mut w.net, RALEIGH, w.wayne, "lie.jpg", &data);
    let key = key_of(&path);
    // Raleigh's bytes change under it (a lying or broken peer): the
    // description says one hash, the chunks carry other bytes.
    let bad = photo(3_000, 8);
    w.net
        .node(RALEIGH)
        .files
        .files
        .borrow_mut()
        .insert(key.clone(), bad);
    let got = download(&mut w.net, HQ, &path);
    assert!(got.is_err(), "{got:?}");
    assert!(w.net.node(HQ).node.state().files.is_empty());
    assert!(w.net.node(HQ).files.keys().is_empty());
    let _ = (w.kevin, w.dana);
}

#[test]
fn the_cache_keeps_its_bound_and_lets_the_least_recently_opened_go() {
    let mut w = world(Shape::default(), |c| c.upload.cache_bytes = 25_000);
    let paths: Vec<String> = (0..3)
        .map(|i| {
            let d = photo(10_000, 20 + i);
            upload(&mut w.net, HQ, w.kevin, &format!("p{i}.jpg"), &d)
        })
        .collect();
    download(&mut w.net, RALEIGH, &paths[0]).unwrap();
    download(&mut w.net, RALEIGH, &paths[1]).unwrap();
    w.net.advance(1_000);
    download(&mut w.net, RALEIGH, &paths[0]).unwrap(); // p0 opened again
    download(&mut w.net, RALEIGH, &paths[2]).unwrap();
    let kept: Vec<FileKey> = w
        .net
        .node(RALEIGH)
        .node
        .state()
        .files
        .keys()
        .cloned()
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&key_of(&paths[0])) && kept.contains(&key_of(&paths[2])));
    assert_eq!(w.net.node(RALEIGH).files.stored(), (2, 20_000));
    // A file larger than the whole cache is refused, not fetched.
    let huge = photo(30_000, 30);
    let p = upload(&mut w.net, HQ, w.kevin, "huge.jpg", &huge);
    assert!(matches!(download(&mut w.net, RALEIGH, &p), Err((502, _))));
    let _ = w.dana;
}

#[test]
fn links_in_messages_point_at_the_readers_node_and_small_files_come_with_them() {
    let mut w = world(Shape::default(), |c| c.upload.eager_bytes = 4_000);
    let small = photo(3_000, 9);
    let small_path = upload(&mut w.net, HQ, w.kevin, "thumb.jpg", &small);
    let large = photo(9_000, 10);
    let large_path = upload(&mut w.net, HQ, w.kevin, "large.jpg", &large);
    let hq_url = |p: &str| format!("https://fairfax.example:5281{p}");
    w.net.node(HQ).send(
        w.kevin,
        &format!(
            "<message to='wayne@raleigh.example' type='chat' id='f'><body>look {}</body><x xmlns='jabber:x:oob'><url>{}</url></x></message>",
            hq_url(&small_path),
            hq_url(&large_path)
        ),
    );
    w.net.settle();
    let got = w.net.node(RALEIGH).take(w.wayne);
    let here = |p: &str| format!("https://raleigh.example:5281{p}");
    assert!(
        got.contains(&format!("look {}</body>", here(&small_path))),
        "{got}"
    );
    assert!(
        got.contains(&format!("<url>{}</url>", here(&large_path))),
        "{got}"
    );
    // The small file came without anyone opening it; the large one not.
    w.net.advance(5_000);
    w.net.settle();
    let n = w.net.node(RALEIGH);
    assert_eq!(n.files.file(&key_of(&small_path)), Some(small));
    assert!(n.files.file(&key_of(&large_path)).is_none());
    assert!(!n.node.state().files.contains_key(&key_of(&large_path)));
    let _ = w.dana;
}

#[test]
fn a_link_that_asks_for_files_can_make_a_node_hold_little() {
    // A peer asking for what does not exist gets "missing" and leaves
    // nothing behind; asking for more than a chunk gets a chunk.
    let mut w = world(Shape::default(), |c| c.link.compress = false);
    let data = photo(5_000, 11);
    let path = upload(&mut w.net, HQ, w.kevin, "x.jpg", &data);
    let key = key_of(&path);
    let hq = w.net.node(HQ);
    let conn = hq.alloc_conn();
    hq.event(Event::LinkUp {
        conn,
        peer: "raleigh.example".into(),
    });
    hq.take(conn);
    let hello = "<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' from='raleigh.example' version='1.0'><hello received='0'/>";
    let frames = format!(
        "<t><fw o='fairfax.example' i='{}' at='0' n='100000'/></t><t><fw o='fairfax.example' i='00000000000000000000000000000000' at='0' n='10'/></t><t><fw o='elsewhere.example' i='{}' at='0' n='10'/></t>",
        key.id, key.id
    );
    hq.send(conn, &format!("{hello}{frames}"));
    let out = hq.take(conn);
    let chunk = between(&out, "<fc ", "</fc>").expect("a chunk");
    assert!(chunk.contains("size='5000'"));
    let b64 = &chunk[chunk.find('>').unwrap() + 1..];
    assert_eq!(b64.len(), 684, "one chunk: 512 bytes in base64");
    assert_eq!(out.matches("<fm ").count(), 2, "{out}");
    assert_eq!(hq.node.files_in_progress(), 0);
    let _ = (w.wayne, w.dana);
}

#[test]
fn an_account_keeps_a_bounded_count_of_files_however_small() {
    let mut w = world(Shape::default(), |c| {
        c.upload.files_per_user = 5;
        c.upload.files_total = 8;
    });
    for i in 0..5 {
        upload(&mut w.net, HQ, w.kevin, &format!("f{i}.txt"), &[i]);
    }
    let sixth = ask_slot(&mut w.net, HQ, w.kevin, "f5.txt", 1);
    assert!(
        sixth.contains("<resource-constraint") && sixth.contains("most one account"),
        "{sixth}"
    );
    // The node's count bound: other nodes' files make room for its own.
    let remote: Vec<String> = (0..3)
        .map(|i| upload(&mut w.net, RALEIGH, w.wayne, &format!("r{i}.txt"), &[9, i]))
        .collect();
    for p in &remote {
        download(&mut w.net, HQ, p).unwrap();
    }
    assert_eq!(w.net.node(HQ).node.state().files.len(), 8);
    w.net.node(HQ).add_user("kim", "k");
    let kim = online(&mut w.net, HQ, "kim", "k");
    upload(&mut w.net, HQ, kim, "k.txt", b"kim");
    let files = &w.net.node(HQ).node.state().files;
    assert_eq!(files.len(), 8, "a cached file went for kim's");
    assert_eq!(files.values().filter(|f| f.owner.is_none()).count(), 2);
    let _ = w.dana;
}

fn join(net: &mut Network, node: usize, conn: u64, nick: &str) {
    net.node(node).send(
        conn,
        &format!("<presence to='ops@conference.fairfax.example/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
    );
    net.settle();
    net.node(node).take(conn);
}

#[test]
fn a_rooms_photos_come_to_a_site_at_once_when_its_policy_says_so() {
    let mut w = world(Shape::default(), |c| {
        c.upload.eager_bytes = 1_000;
        if c.domain == "raleigh.example" {
            c.upload.eager_rooms = vec!["ops@conference.fairfax.example".into()];
        }
    });
    join(&mut w.net, HQ, w.kevin, "kevin");
    w.net.node(HQ).send(
        w.kevin,
        "<iq type='set' id='cfg' to='ops@conference.fairfax.example'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>",
    );
    w.net.settle();
    join(&mut w.net, RALEIGH, w.wayne, "wayne");
    join(&mut w.net, DURHAM, w.dana, "dana");
    let data = photo(20_000, 40);
    let path = upload(&mut w.net, HQ, w.kevin, "crane.jpg", &data);
    w.net.node(HQ).send(
        w.kevin,
        &format!("<message to='ops@conference.fairfax.example' type='groupchat' id='g'><body>https://fairfax.example:5281{path}</body></message>"),
    );
    w.net.settle();
    w.net.advance(10_000);
    w.net.settle();
    let got = w.net.node(RALEIGH).take(w.wayne);
    assert!(
        got.contains(&format!("<body>https://raleigh.example:5281{path}</body>")),
        "{got}"
    );
    let key = key_of(&path);
    // Raleigh's policy fetched it whole; Durham's (none) did not.
    assert_eq!(w.net.node(RALEIGH).files.file(&key), Some(data));
    assert!(w.net.node(DURHAM).files.file(&key).is_none());
    let got = w.net.node(DURHAM).take(w.dana);
    assert!(
        got.contains(&format!("<body>https://durham.example:5281{path}</body>")),
        "{got}"
    );
}

/// A raw link at HQ as Raleigh (replacing the real one), its hello said.
fn forge_raleigh(net: &mut Network) -> u64 {
    let hq = net.node(HQ);
    let conn = hq.alloc_conn();
    hq.event(Event::LinkUp {
        conn,
        peer: "raleigh.example".into(),
    });
    hq.take(conn);
    hq.send(conn, "<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' from='raleigh.example' version='1.0'><hello received='0'/>");
    hq.take(conn);
    conn
}

#[test]
fn a_peer_asking_for_chunks_it_does_not_read_makes_the_node_hold_little() {
    let mut w = world(Shape::default(), |c| c.link.compress = false);
    let data = photo(100_000, 12);
    let key = key_of(&upload(&mut w.net, HQ, w.kevin, "x.jpg", &data));
    let conn = forge_raleigh(&mut w.net);
    let want = format!(
        "<t><fw o='fairfax.example' i='{}' at='0' n='512'/></t>",
        key.id
    );
    let hq = w.net.node(HQ);
    hq.send(conn, &want.repeat(10_000));
    // Ten thousand chunks asked (5 MB); what waits for the peer to read is
    // the lane's backlog, not what it asked for.
    let held = hq.unread_bytes();
    assert!(
        held < 80 * 1024,
        "{held} bytes held for a peer that does not read"
    );
    // As it reads, more goes, a backlog at a time; the asks past what the
    // lane keeps (what an honest receiver asks at once) were dropped.
    let mut chunks = 0;
    loop {
        let read = hq.take_some(conn, 64 * 1024);
        if read.is_empty() {
            break;
        }
        chunks += read.matches("<fc ").count();
        assert!(hq.unread_bytes() < 80 * 1024);
    }
    assert!(chunks < 200, "{chunks} chunks for 10,000 asks");
}

#[test]
fn a_site_looking_at_another_sites_file_through_hq_does_not_bring_it_over() {
    let mut w = world(Shape::default(), |c| c.upload.eager_bytes = 4_000);
    let data = photo(200_000, 13);
    let path = upload(&mut w.net, RALEIGH, w.wayne, "survey.bin", &data);
    w.net.reset_counters();
    w.net.node(RALEIGH).send(
        w.wayne,
        &format!("<message to='dana@durham.example' type='chat' id='s'><body>https://raleigh.example:5281{path}</body></message>"),
    );
    w.net.settle();
    w.net.advance(10_000);
    w.net.settle();
    let (up, _) = w.net.link_bytes(RALEIGH);
    assert!(up < 5_000, "only the message and the size crossed: {up}");
    assert!(!w
        .net
        .node(HQ)
        .node
        .state()
        .files
        .contains_key(&key_of(&path)));
    // A HEAD at Durham learns the size without the file crossing either.
    let head = w.net.node(DURHAM).file_ask(
        50,
        FileAsk::Get {
            path: path.clone(),
            head: true,
        },
    );
    let answer = match head {
        Some(a) => a,
        None => {
            w.net.settle();
            w.net.node(DURHAM).file_answer(50).expect("an answer")
        }
    };
    assert!(
        matches!(&answer, FileAnswer::Serve { meta, .. } if meta.size == 200_000),
        "{answer:?}"
    );
    w.net.advance(10_000);
    w.net.settle();
    let (up, _) = w.net.link_bytes(RALEIGH);
    assert!(up < 5_000, "{up}");
    let _ = (w.kevin, w.dana);
}

#[test]
fn a_peer_declaring_a_huge_file_or_going_silent_keeps_neither_the_cache_nor_a_fetch() {
    let mut w = world(Shape::default(), |c| {
        c.link.compress = false;
        c.upload.max_file_bytes = 50_000;
        c.upload.cache_bytes = 100_000;
    });
    // Two of Durham's files in HQ's cache.
    for i in 0..2 {
        let p = upload(
            &mut w.net,
            DURHAM,
            w.dana,
            &format!("d{i}.jpg"),
            &photo(20_000, 20 + i),
        );
        download(&mut w.net, HQ, &p).unwrap();
    }
    assert_eq!(w.net.node(HQ).node.state().files.len(), 2);
    let conn = forge_raleigh(&mut w.net);
    let id = "0123456789abcdef0123456789abcdef";
    let path = format!("/files/raleigh.example/{id}/big.bin");
    assert_eq!(local(&mut w.net, HQ, &path), None);
    // It says the file is larger than this node takes.
    let hq = w.net.node(HQ);
    hq.take(conn);
    let sha = "ab".repeat(32);
    hq.send(conn, &format!("<t><fc o='raleigh.example' i='{id}' at='0' size='100000' sha='{sha}' type='a/b' name='big.bin'>AAAA</fc></t>"));
    assert_eq!(hq.node.state().files.len(), 2, "the cache kept its files");
    assert_eq!(hq.node.files_in_progress(), 0);
    // Another fetch, and the peer goes silent after the size: it fails
    // after a few stalls, with nothing kept.
    let path = format!("/files/raleigh.example/{}/quiet.bin", "1".repeat(32));
    let get = FileAsk::Get { path, head: false };
    assert_eq!(w.net.node(HQ).file_ask(8, get), None);
    let hq = w.net.node(HQ);
    hq.take(conn);
    let first = format!("<t><fc o='raleigh.example' i='{}' at='0' size='30000' sha='{sha}' type='a/b' name='quiet.bin'>{}=</fc></t>", "1".repeat(32), "A".repeat(683));
    hq.send(conn, &first);
    assert_eq!(hq.node.files_in_progress(), 1);
    for _ in 0..10 {
        hq.advance(61_000);
        hq.take(conn);
        hq.send(conn, " "); // alive, answering nothing
    }
    assert_eq!(hq.node.files_in_progress(), 0);
    assert_eq!(hq.node.state().files.len(), 2);
    assert!(hq.files.parts.borrow().is_empty());
    let _ = (w.kevin, w.wayne);
}

#[test]
fn a_file_crosses_a_link_with_no_delay_without_its_pace_running_away() {
    let mut w = world(
        Shape {
            latency_ms: 0,
            rate: 0,
        },
        |_| {},
    );
    let data = photo(2_000_000, 14);
    let path = upload(&mut w.net, HQ, w.kevin, "big.bin", &data);
    w.net.node(HQ).cfg.upload.max_file_bytes = 4_000_000;
    assert_eq!(download(&mut w.net, RALEIGH, &path).unwrap(), data);
    let _ = w.dana;
}

#[test]
fn an_upload_that_outlasts_its_slot_is_kept() {
    let mut w = world(Shape::default(), |_| {});
    let reply = ask_slot(&mut w.net, HQ, w.kevin, "slow.jpg", 1_000);
    let (path, token) = put_target(&reply);
    let n = w.net.node(HQ);
    let put = FileAsk::Put {
        path: path.clone(),
        token: token.clone(),
        len: 1_000,
    };
    let Some(FileAnswer::PutAccepted { key }) = n.file_ask(1, put) else {
        panic!("refused");
    };
    // A slow phone: six minutes for the body, past the slot's five.
    n.files.write_part(&key, 0, &photo(500, 15)).unwrap();
    n.advance(360_000);
    assert_eq!(
        n.files.part_len(&key),
        500,
        "the part stays while the PUT runs"
    );
    n.files.write_part(&key, 500, &photo(500, 16)).unwrap();
    let done = FileAsk::PutDone {
        path,
        token,
        len: 1_000,
        sha256: "unused".into(),
    };
    assert_eq!(n.file_ask(2, done), Some(FileAnswer::Stored));
    assert!(n.node.state().files.contains_key(&key));
}

#[test]
fn readers_can_make_a_node_fetch_sixteen_files_at_once_not_more() {
    let shape = Shape {
        latency_ms: 300,
        rate: 1200,
    };
    let mut w = world(shape, |_| {});
    let paths: Vec<String> = (0..17)
        .map(|i| {
            upload(
                &mut w.net,
                RALEIGH,
                w.wayne,
                &format!("p{i}.jpg"),
                &photo(20_000, i),
            )
        })
        .collect();
    for (i, path) in paths.iter().enumerate().take(16) {
        let get = FileAsk::Get {
            path: path.clone(),
            head: false,
        };
        assert_eq!(
            w.net.node(HQ).file_ask(200 + i as u64, get),
            None,
            "fetch {i} starts"
        );
    }
    assert_eq!(w.net.node(HQ).node.files_in_progress(), 16);
    let get = FileAsk::Get {
        path: paths[16].clone(),
        head: false,
    };
    assert!(matches!(
        w.net.node(HQ).file_ask(300, get),
        Some(FileAnswer::Refused { status: 503, .. })
    ));
    // One finished is one more that may start.
    w.net.advance(600_000);
    assert!(w.net.node(HQ).node.files_in_progress() < 16);
    assert_eq!(
        download(&mut w.net, HQ, &paths[16]).unwrap(),
        photo(20_000, 16)
    );
    let _ = (w.kevin, w.dana);
}
