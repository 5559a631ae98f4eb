//! The log at the sizes a board reaches in years of use: a state of
//! several hundred MiB (of text that does not compress) is compacted and read back whole, through the same
//! functions the node uses.
#![allow(clippy::disallowed_methods)] // Reads the fixture's files.

use outpost::model::archive::BLOCK_BYTES;
use outpost::model::room::{Archived, RoomRecord};
use outpost::scram::Credentials;
use outpost::shell::datadir::open_state;
use outpost::state::{snapshot, Record, State};

/// 300 rooms of 1 MiB archives: 300 MiB of messages, far past the 64 MiB
/// that once made compaction write a snapshot the reader refused.
fn big_state() -> State {
    let mut state = State::default();
    state.apply(&Record::AccountSet {
        user: "alice".into(),
        creds: Credentials::derive("pw", b"salt", 16),
    });
    // Text that does not compress, so archive blocks stay as large.
    let mut x: u64 = 1;
    let body: String = (0..100 * 1024)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'a' + (x >> 59) as u8 % 26)
        })
        .collect();
    for r in 0..300 {
        let room = format!("room{r}");
        state.apply(&Record::Room {
            room: room.clone(),
            change: RoomRecord::Create {
                owner: "alice@localhost".into(),
                salt: vec![r as u8; 16],
            },
        });
        for seq in 1..=10 {
            let msg = Archived {
                seq,
                stanza_id: format!("{r}-{seq}"),
                stamp_ms: seq,
                nick: "alice".into(),
                real: "alice@localhost".into(),
                xml: format!("<message type='groupchat'><body>{body}</body></message>"),
            };
            state.apply(&Record::Room {
                room: room.clone(),
                change: RoomRecord::Message { msg },
            });
        }
    }
    state
}

#[test]
fn a_state_of_several_hundred_mib_survives_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = big_state();
    {
        let mut log = open_state(dir.path(), 1).unwrap().log;
        let bytes = snapshot::compact(&mut log, &state, 2).unwrap();
        assert!(bytes > 150_000_000, "{bytes}");
        let later = Record::AccountSet {
            user: "bob".into(),
            creds: Credentials::derive("pw", b"salt", 16),
        };
        log.append(later.kind(), &later.encode()).unwrap();
        log.commit().unwrap();
    }
    let opened = open_state(dir.path(), 3).unwrap();
    assert_eq!(opened.state.rooms.len(), 300);
    assert!(opened.state.accounts.contains_key("bob"));
    let mut expect = state;
    expect.apply(&Record::AccountSet {
        user: "bob".into(),
        creds: Credentials::derive("pw", b"salt", 16),
    });
    assert!(opened.state == expect, "the state read back differs");
    assert!(opened.snapshot_bytes > 150_000_000);
}

/// The data directory an older release wrote (tests/fixtures/bbde3c9, made
/// by tests/fixtures/make_old_data_dir.py with a build of that release):
/// a whole-state snapshot record, records after it, v1 segment headers and
/// no batch markers. It opens, and the node serves what it holds.
#[test]
fn a_data_dir_written_by_the_previous_release_opens_and_serves() {
    use outpost::node::NodeConfig;
    use outpost::sim::SimNode;
    use outpost::store::{MemStorage, Storage};
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bbde3c9/data");
    // Through the node's own start-up path, on a copy (opening may write).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("log")).unwrap();
    let mut storage = MemStorage::new();
    for entry in std::fs::read_dir(fixture.join("log")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            dir.path().join("log").join(path.file_name().unwrap()),
        )
        .unwrap();
        let seg = u64::from_str_radix(path.file_stem().unwrap().to_str().unwrap(), 16).unwrap();
        storage.append(seg, &std::fs::read(&path).unwrap()).unwrap();
    }
    let opened = open_state(dir.path(), 1).unwrap();
    let state = &opened.state;
    let users: Vec<&String> = state.accounts.keys().collect();
    assert_eq!(users, ["alice", "bob", "carol"]);
    let bob = &state.accounts["alice"].roster["bob@localhost"];
    assert_eq!(bob.name.as_deref(), Some("Bob B."));
    assert_eq!(bob.groups, ["Field"]);
    assert_eq!(state.accounts["carol"].offline.len(), 2);
    let ops = &state.rooms["ops"];
    assert!(ops.config.persistent);
    assert_eq!(ops.config.name, "Operations");
    assert_eq!(ops.subject.as_ref().unwrap().text, "Weekly ops");
    // And a node on it serves all of that.
    let mut sim = SimNode::from_storage(NodeConfig::new("localhost"), 1, storage);
    let carol = sim.login("carol", "lorac", "x");
    sim.send(carol, "<presence/>");
    let out = sim.take(carol);
    assert!(
        out.contains("first while away") && out.contains("second while away"),
        "{out}"
    );
    let alice = sim.login("alice", "ecila", "x");
    sim.send(
        alice,
        "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
    );
    let out = sim.take(alice);
    assert!(
        out.contains("name='Bob B.'") && out.contains("subscription='both'"),
        "{out}"
    );
    sim.send(alice, "<presence to='ops@conference.localhost/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    let out = sim.take(alice);
    assert!(
        out.contains("kept 2") && out.contains("Weekly ops"),
        "{out}"
    );
    // What it writes from now on is the new format, and reads back.
    sim.crash_and_restart();
    let bob = sim.login("bob", "bob", "x");
    assert!(sim.answers_ping(bob));
}

/// A room message as the log holds it, with a body that varies.
fn room_message(room: &str, seq: u64) -> Record {
    let words = [
        "road", "north", "water", "pump", "fuel", "team", "late", "ok",
    ];
    let body: Vec<&str> = (0..14)
        .map(|i| words[((seq * 5 + i * 3) % 8) as usize])
        .collect();
    Record::Room {
        room: room.into(),
        change: RoomRecord::Message {
            msg: Archived {
                seq,
                stanza_id: format!("{room}-{seq}"),
                stamp_ms: 1_795_000_000_000 + seq,
                nick: "alice".into(),
                real: "alice@localhost".into(),
                xml: format!(
                    "<message from='{room}@conference.localhost/alice' type='groupchat'><body>{} {seq}</body></message>",
                    body.join(" ")
                ),
            },
        },
    }
}

fn create_room(room: &str) -> Record {
    Record::Room {
        room: room.into(),
        change: RoomRecord::Create {
            owner: "alice@localhost".into(),
            salt: vec![1; 16],
        },
    }
}

/// Apply and append, as the node commits.
fn commit(
    log: &mut outpost::store::Log<impl outpost::store::Storage>,
    state: &mut State,
    r: Record,
) {
    state.apply(&r);
    log.append(r.kind(), &r.encode()).unwrap();
}

/// Archives on flash: sealed blocks go to the archive files, memory keeps
/// where they are, and the state read back (from a snapshot that refers to
/// the files, and records after it) is the same, its messages read from the
/// files. Blocks written after the snapshot are written again from the
/// records at the next start, and their first copies cut away.
#[test]
fn archive_blocks_live_in_files_and_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut expect = State::default();
    {
        let opened = open_state(dir.path(), 1).unwrap();
        let (mut log, mut state, files) = (opened.log, opened.state, opened.archive);
        for r in ["ops", "logistics"] {
            commit(&mut log, &mut state, create_room(r));
        }
        for seq in 1..=3_000 {
            commit(
                &mut log,
                &mut state,
                room_message(["ops", "logistics"][seq as usize % 2], seq),
            );
        }
        log.commit().unwrap();
        let held_before = state.rooms["ops"].archive.held_bytes();
        write_out(&mut state, &files);
        let ops = &state.rooms["ops"].archive;
        assert!(!state.has_held_blocks());
        // Only the open messages stay in memory, less than a block's worth.
        let held = ops.held_bytes();
        assert!(
            held < held_before && held < BLOCK_BYTES as u64,
            "{held} of {held_before} held"
        );
        assert!(held * 10 < ops.bytes(), "{held} of {}", ops.bytes());
        // Read from the files.
        assert_eq!(ops.seq_of("ops-500"), Some(500));
        assert!(ops.get(10).unwrap().xml.contains(" 22</body>"));
        snapshot::compact(&mut log, &state, 2).unwrap();
        // After the snapshot: more messages, sealed and written, then a
        // stop without another snapshot.
        for seq in 3_001..=4_000 {
            commit(&mut log, &mut state, room_message("ops", seq));
        }
        log.commit().unwrap();
        write_out(&mut state, &files);
        // The state is compared through its messages (blocks may lie
        // elsewhere after the restart).
        for r in ["ops", "logistics"] {
            expect.apply(&create_room(r));
        }
        for seq in 1..=4_000 {
            let room = if seq > 3_000 {
                "ops"
            } else {
                ["ops", "logistics"][seq as usize % 2]
            };
            expect.apply(&room_message(room, seq));
        }
        assert!(state == expect);
    }
    let files_before = files_bytes(dir.path());
    let opened = open_state(dir.path(), 3).unwrap();
    assert!(opened.state == expect, "the archives read back differ");
    // What was written after the snapshot was cut (it is held again).
    assert!(files_bytes(dir.path()) < files_before);
    let ops = &opened.state.rooms["ops"].archive;
    assert_eq!(ops.seq_of("ops-3999"), Some(3_999));
    assert_eq!(ops.seq_of("ops-2"), Some(2));
    assert_eq!(ops.position(ops.seq_of("ops-1000").unwrap()), Some(499));
}

/// Offline queues on flash: 300 accounts with a few KiB each (no queue
/// fills a block) pass the node's bound on open messages; the largest are
/// sealed and written out, and the state read back after a restart (from
/// a snapshot that refers to the files) is the same, delivered messages
/// gone.
#[test]
fn offline_queues_past_the_open_bound_live_in_files_across_a_restart() {
    use outpost::node::OPEN_MESSAGE_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let creds = Credentials::derive("pw", b"fixed salt", 64);
    let push = |user: &str, i: usize| Record::OfflinePush {
        user: user.into(),
        stamp_ms: 1_795_000_000_000 + i as u64,
        xml: format!(
            "<message from='hq@localhost/a' type='chat'><body>{i} {}</body></message>",
            "situation report ".repeat(50)
        ),
    };
    let users: Vec<String> = (0..300).map(|u| format!("user{u}")).collect();
    let mut expect = State::default();
    {
        let opened = open_state(dir.path(), 1).unwrap();
        let (mut log, mut state, files) = (opened.log, opened.state, opened.archive);
        for user in &users {
            let set = Record::AccountSet {
                user: user.clone(),
                creds: creds.clone(),
            };
            commit(&mut log, &mut state, set.clone());
            expect.apply(&set);
            for i in 0..8 {
                commit(&mut log, &mut state, push(user, i));
                expect.apply(&push(user, i));
            }
        }
        log.commit().unwrap();
        let open = |s: &State| -> u64 {
            let all = s
                .accounts
                .values()
                .map(|a| a.offline.archive().held_bytes());
            all.sum()
        };
        assert!(open(&state) > OPEN_MESSAGE_BYTES as u64, "{}", open(&state));
        // What the node does after each commit.
        assert!(state.bound_open_messages(OPEN_MESSAGE_BYTES) > 0);
        write_out(&mut state, &files);
        assert!(open(&state) <= OPEN_MESSAGE_BYTES as u64 / 2);
        assert!(state == expect);
        snapshot::compact(&mut log, &state, 2).unwrap();
        // Delivered after the snapshot: records only.
        let done = Record::OfflineDone {
            user: "user7".into(),
            upto: 5,
        };
        commit(&mut log, &mut state, done.clone());
        expect.apply(&done);
        log.commit().unwrap();
    }
    assert!(
        files_bytes(dir.path()) > 0,
        "blocks went to the archive files"
    );
    let opened = open_state(dir.path(), 3).unwrap();
    assert!(opened.state == expect, "the queues read back differ");
    let user7: Vec<u64> = opened.state.accounts["user7"]
        .offline
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(user7, [6, 7, 8]);
    let last = opened.state.accounts["user299"]
        .offline
        .iter()
        .last()
        .unwrap();
    assert!(last.xml.contains("<body>7 situation"), "{}", last.xml);
}

fn files_bytes(data_dir: &std::path::Path) -> u64 {
    std::fs::read_dir(data_dir.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Files that retention emptied but for a few live blocks are rewritten:
/// their blocks are read back and written with the next ones, and the
/// files go. Nothing is lost on the way.
#[test]
fn sparse_archive_files_are_rewritten_and_removed() {
    use outpost::model::block::install_reader;
    use outpost::shell::archive_files::{ArchiveFiles, SharedFiles};
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::rc::Rc;
    let dir = tempfile::tempdir().unwrap();
    let files = ArchiveFiles::open(dir.path())
        .unwrap()
        .with_file_bytes(16 * 1024);
    let files = SharedFiles(Rc::new(RefCell::new(files)));
    install_reader(Some(Rc::new(files.clone())));
    let mut state = State::default();
    state.apply(&create_room("quiet"));
    state.apply(&create_room("busy"));
    // A quiet room's few blocks among a busy room's many, turn by turn.
    for seq in 1..=6_000 {
        let room = if seq <= 400 && seq % 2 == 0 {
            "quiet"
        } else {
            "busy"
        };
        match room_message(room, seq) {
            Record::Room { change, .. } => state.apply(&Record::Room {
                room: room.into(),
                change,
            }),
            _ => unreachable!(),
        }
        if seq % 50 == 0 {
            write_out(&mut state, &files);
        }
    }
    write_out(&mut state, &files);
    let expect_quiet: Vec<Archived> = state.rooms["quiet"].archive.iter().collect();
    let first_files: BTreeSet<u32> = state.rooms["quiet"]
        .archive
        .extents()
        .map(|e| e.file)
        .collect();
    // Retention drops most of the busy room.
    state.apply(&Record::Room {
        room: "busy".into(),
        change: RoomRecord::Trim { upto: 5_000 },
    });
    let sparse: BTreeSet<u32> = files
        .0
        .borrow()
        .sparse(&state.block_usage())
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        first_files.is_subset(&sparse),
        "{first_files:?} not in {sparse:?}"
    );
    assert!(state.rehold_blocks(&sparse, u64::MAX) > 0);
    write_out(&mut state, &files);
    let removed = files
        .0
        .borrow_mut()
        .collect(&state.block_files(), false)
        .unwrap();
    assert!(removed.files >= first_files.len());
    let numbers = files.0.borrow().numbers().unwrap();
    assert!(first_files.iter().all(|f| !numbers.contains(f)));
    // Every message is still there, read from the files it is in now.
    let quiet: Vec<Archived> = state.rooms["quiet"].archive.iter().collect();
    assert_eq!(quiet, expect_quiet);
    let busy = &state.rooms["busy"].archive;
    assert_eq!(busy.back().unwrap().seq, 6_000);
    assert_eq!(busy.seq_of("busy-5999"), Some(5_999));
    install_reader(None);
}

/// A replica's archive as the log holds it: resync and message records.
fn replica_synced(history: Vec<Archived>, next_seq: u64) -> Record {
    Record::Mirror {
        key: "r@conf.hq".into(),
        change: Box::new(outpost::model::replica::MirrorRecord::Synced {
            upstream: "conf.hq".into(),
            room: "r".into(),
            config: Default::default(),
            affiliations: vec![],
            subject: None,
            history,
            next_seq,
        }),
    }
}

fn replica_message(seq: u64) -> Archived {
    Archived {
        seq,
        stanza_id: format!("m{seq}"),
        stamp_ms: 1_795_000_000_000 + seq,
        nick: "alice".into(),
        real: "alice@hq".into(),
        xml: format!("<message type='groupchat'><body>hello number {seq}</body></message>"),
    }
}

fn replica_seqs(s: &State) -> Vec<u64> {
    s.mirrors["r@conf.hq"]
        .state
        .archive
        .iter()
        .map(|m| m.seq)
        .collect()
}

/// Early sealing (the node-wide bound on open messages) takes rooms' and
/// offline queues' open runs, never a replica's: a replica trims itself by
/// whole blocks as it applies a message, so its blocks must end where a
/// replay of the log ends them.
#[test]
fn early_sealing_leaves_replicas_as_a_replay_makes_them() {
    let mut state = State::default();
    state.apply(&create_room("ops"));
    state.apply(&room_message("ops", 1));
    state.apply(&replica_synced(vec![replica_message(1)], 2));
    let replica_open = |s: &State| s.mirrors["r@conf.hq"].state.archive.open_bytes();
    assert!(replica_open(&state) > 0);
    assert_eq!(state.bound_open_messages(0), 1, "the room's run only");
    assert_eq!(state.rooms["ops"].archive.open_bytes(), 0);
    assert!(replica_open(&state) > 0);
}

/// A record after the snapshot that rewinds into a stored block reads it at
/// every replay: the clean-up at start-up keeps what the snapshot refers
/// to, not only what the state does, so a second start loses nothing.
#[test]
fn a_rewind_into_a_stored_block_survives_two_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let expect;
    {
        let opened = open_state(dir.path(), 1).unwrap();
        let (mut log, mut state, files) = (opened.log, opened.state, opened.archive);
        let history = (1..=10).map(replica_message).collect();
        commit(&mut log, &mut state, replica_synced(history, 11));
        for seq in 11..=600 {
            let change = Box::new(outpost::model::replica::MirrorRecord::Message {
                msg: replica_message(seq),
            });
            let key = "r@conf.hq".into();
            commit(&mut log, &mut state, Record::Mirror { key, change });
            log.commit().unwrap();
            write_out(&mut state, &files);
        }
        snapshot::compact(&mut log, &state, 2).unwrap();
        // The upstream resends from 300: the replica rewinds into a block.
        let resent = (300..=620).map(replica_message).collect();
        commit(&mut log, &mut state, replica_synced(resent, 621));
        log.commit().unwrap();
        expect = replica_seqs(&state);
        assert_eq!(expect, (1..=620).collect::<Vec<_>>());
    }
    for salt in [3, 4, 5] {
        let opened = open_state(dir.path(), salt).unwrap();
        assert_eq!(replica_seqs(&opened.state), expect, "start {salt}");
    }
}

/// A salvage leaves out what cannot be read from the archive files and
/// refers to no file of the original: the new node numbers its own from 1.
#[test]
fn a_salvage_leaves_out_unreadable_blocks_and_refers_to_no_file() {
    let from = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let to = parent.path().join("salvaged");
    {
        let opened = open_state(from.path(), 1).unwrap();
        let (mut log, mut state, files) = (opened.log, opened.state, opened.archive);
        commit(&mut log, &mut state, create_room("ops"));
        for seq in 1..=3_000 {
            commit(&mut log, &mut state, room_message("ops", seq));
        }
        log.commit().unwrap();
        write_out(&mut state, &files);
        snapshot::compact(&mut log, &state, 2).unwrap();
    }
    // Damage: the first block's bytes are zeroed.
    let path = from.path().join("archive/00000001.blk");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..64].fill(0);
    std::fs::write(&path, bytes).unwrap();
    outpost::shell::data::salvage(from.path(), &to).unwrap();
    let opened = open_state(&to, 3).unwrap();
    assert!(opened.state.block_files().is_empty());
    let ops = &opened.state.rooms["ops"].archive;
    let seqs: Vec<u64> = ops.iter().map(|m| m.seq).collect();
    assert!(seqs.len() < 3_000 && seqs.len() > 2_500, "{}", seqs.len());
    assert_eq!(seqs.last(), Some(&3_000));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

/// What the shell does with the blocks a turn sealed: write them to the
/// archive files; and before a compaction step: make them durable.
fn write_out(state: &mut State, files: &outpost::shell::archive_files::SharedFiles) {
    state
        .spill_blocks(&mut |b| files.0.borrow_mut().append(b))
        .unwrap();
    files.0.borrow_mut().sync().unwrap();
}
