//! The log format pinned: one record of every kind (and every kind of
//! room, replica and queued link event), then the snapshot of the state
//! they build, encoded and compared byte for byte with
//! `tests/fixtures/log-format-2.txt`. A change to any stored type fails
//! here: bump `LOG_FORMAT`, keep a decoder and a migration for the old
//! layout, keep a data_dir written by the release before (docs/storage.md,
//! "Formats"), and only then regenerate the file with
//! `OUTPOST_BLESS_FORMAT=1 cargo test --lib format_tests`. Appending an
//! enum variant keeps old records readable: add it here and regenerate.
#![allow(clippy::disallowed_methods)] // Reads and writes its fixture file.

use super::link::{Queued, QueuedEvent};
use super::snapshot::write_snapshot;
use super::{
    AbuseReport, ArchiveDefault, ArchivePrefs, LastSeen, Record, RosterItem, State, Subscription,
    LOG_FORMAT,
};
use crate::model::archive::BLOCK_BYTES;
use crate::model::block::Extent;
use crate::model::held::{HeldRoom, HeldSession, HeldStanza};
use crate::model::pep::{Access, PepConfig, PepItem, PepRecord, SendLast};
use crate::model::replica::MirrorRecord;
use crate::model::room::{Affiliation, Archived, RoomRecord};
use crate::model::samples;
use crate::scram::Credentials;

const FIXTURE: &str = "tests/fixtures/log-format-2.txt";
const PEER: &str = "raleigh.example";
const KEY: &str = "ops@conference.hq.example";

fn room(change: RoomRecord) -> Record {
    Record::Room {
        room: "chat".into(),
        change,
    }
}

fn mirror(key: &str, change: MirrorRecord) -> Record {
    Record::Mirror {
        key: key.into(),
        change: Box::new(change),
    }
}

fn records() -> Vec<Record> {
    let creds = Credentials::derive("wonderland", b"fixed salt", 64);
    let mut records = vec![
        Record::ServerSecret {
            secret: vec![7; 32],
        },
        Record::AdminPassword {
            creds: creds.clone(),
        },
        Record::AccountSet {
            user: "alice".into(),
            creds: creds.clone(),
        },
        Record::AccountSet {
            user: "carol".into(),
            creds: creds.clone(),
        },
        Record::AccountDel {
            user: "carol".into(),
        },
        Record::RosterSet {
            user: "alice".into(),
            contact: "bob@localhost".into(),
            item: RosterItem {
                name: Some("Bob".into()),
                groups: vec!["Friends".into()],
                subscription: Subscription::Both,
                ask_out: false,
                pending_in: false,
                visible: true,
            },
        },
        Record::RosterSet {
            user: "alice".into(),
            contact: "eve@localhost".into(),
            item: RosterItem {
                subscription: Subscription::From,
                ask_out: true,
                pending_in: true,
                ..RosterItem::default()
            },
        },
        Record::RosterDel {
            user: "alice".into(),
            contact: "eve@localhost".into(),
        },
        Record::OfflinePush {
            user: "alice".into(),
            stamp_ms: 1_795_000_000_000,
            xml: "<message from='bob@localhost/b' type='chat'><body>one</body></message>".into(),
        },
        Record::OfflinePush {
            user: "alice".into(),
            stamp_ms: 1_795_000_000_001,
            xml: "<message from='bob@localhost/b' type='chat'><body>two</body></message>".into(),
        },
        Record::OfflineDone {
            user: "alice".into(),
            upto: 1,
        },
        Record::AccountSet {
            user: "dave".into(),
            creds: creds.clone(),
        },
        Record::OfflinePush {
            user: "dave".into(),
            stamp_ms: 1_795_000_000_002,
            xml: "<message from='bob@localhost/b' type='chat'><body>three</body></message>".into(),
        },
        Record::AccountArchived {
            user: "alice".into(),
            msg: personal(1, "a1b2c3"),
        },
        Record::AccountArchived {
            user: "alice".into(),
            msg: personal(2, "d4e5f6"),
        },
        Record::AccountArchiveTrim {
            user: "alice".into(),
            upto: 1,
        },
        Record::RosterPreapproved {
            user: "alice".into(),
            contact: "bob@localhost".into(),
            on: true,
        },
        Record::AccountLastSeen {
            user: "alice".into(),
            last: LastSeen {
                stamp_ms: 1_795_000_000_500,
                status: "in the field".into(),
            },
        },
        Record::AccountArchivePrefs {
            user: "alice".into(),
            prefs: ArchivePrefs {
                default: ArchiveDefault::Roster,
                always: ["bob@localhost".to_string()].into(),
                never: ["eve@localhost".to_string()].into(),
            },
        },
        room(RoomRecord::Create {
            owner: "alice@localhost".into(),
            salt: vec![1; 16],
        }),
        room(RoomRecord::Configure {
            config: samples::config(),
        }),
        room(RoomRecord::Affiliate {
            jid: "wayne@raleigh.example".into(),
            affiliation: Affiliation::Member,
        }),
        room(RoomRecord::Subject {
            subject: samples::subject(),
        }),
        room(RoomRecord::Message {
            msg: samples::archived(1),
        }),
        room(RoomRecord::Message {
            msg: samples::archived(2),
        }),
        room(RoomRecord::Trim { upto: 1 }),
        // Messages that fill blocks: the snapshot stores the kept part of
        // the first one loose, the second as a block, the last one open.
        room(RoomRecord::Message { msg: big(3) }),
        room(RoomRecord::Message {
            msg: samples::archived(4),
        }),
        room(RoomRecord::Message { msg: big(5) }),
        room(RoomRecord::Message {
            msg: samples::archived(6),
        }),
        room(RoomRecord::Trim { upto: 2 }),
        Record::Room {
            room: "gone".into(),
            change: RoomRecord::Create {
                owner: "alice@localhost".into(),
                salt: vec![2; 16],
            },
        },
        Record::Room {
            room: "gone".into(),
            change: RoomRecord::Destroy,
        },
        mirror(
            KEY,
            MirrorRecord::Synced {
                upstream: "conference.hq.example".into(),
                room: "ops".into(),
                config: samples::config(),
                affiliations: vec![("kevin@hq.example".into(), Affiliation::Owner)],
                subject: None,
                history: vec![samples::archived(3)],
                next_seq: 4,
            },
        ),
        mirror(KEY, MirrorRecord::Locked),
        mirror(
            KEY,
            MirrorRecord::Subject {
                seq: 4,
                subject: samples::subject(),
            },
        ),
        mirror(
            KEY,
            MirrorRecord::Config {
                config: samples::config(),
            },
        ),
        mirror(
            KEY,
            MirrorRecord::Affiliation {
                jid: "wayne@raleigh.example".into(),
                affiliation: Affiliation::Admin,
            },
        ),
        mirror(
            KEY,
            MirrorRecord::Message {
                msg: samples::archived(5),
            },
        ),
        mirror(
            "dropped@conference.hq.example",
            MirrorRecord::Synced {
                upstream: "conference.hq.example".into(),
                room: "dropped".into(),
                config: samples::config(),
                affiliations: vec![],
                subject: None,
                history: vec![],
                next_seq: 1,
            },
        ),
        mirror(KEY, MirrorRecord::Message { msg: big(6) }),
        mirror(KEY, MirrorRecord::Trim { upto: 1 }),
        mirror(
            KEY,
            MirrorRecord::Moderated {
                seq: 6,
                tombstone: "<message type='groupchat'><retracted xmlns='urn:xmpp:message-retract:1' stamp='2026-11-28T03:00:00.000Z'/></message>".into(),
            },
        ),
        room(RoomRecord::Moderated {
            seq: 4,
            tombstone: "<message type='groupchat'><retracted xmlns='urn:xmpp:message-retract:1' stamp='2026-11-28T03:00:00.000Z'/></message>".into(),
        }),
        mirror("dropped@conference.hq.example", MirrorRecord::Drop),
    ];
    let events = samples::link_events();
    let n = events.len() as u64;
    for (i, event) in events.into_iter().enumerate() {
        records.push(Record::LinkQueued {
            peer: PEER.into(),
            queued: Box::new(Queued {
                seq: i as u64 + 1,
                bytes: 100,
                event: QueuedEvent::Typed(Box::new(event)),
            }),
        });
    }
    records.extend([
        Record::LinkOut {
            peer: PEER.into(),
            seq: n + 1,
            xml: "<resync room='chat' last-seq='3'/>".into(),
        },
        Record::LinkAcked {
            peer: PEER.into(),
            upto: 1,
        },
        Record::LinkIn {
            peer: PEER.into(),
            seq: 5,
        },
        Record::SessionHeld(Box::new(HeldSession {
            jid: "alice@localhost/phone".into(),
            sm_id: "f1e2d3".into(),
            handled: 7,
            sent: u32::MAX,
            unacked: vec![
                HeldStanza {
                    xml: b"<message><body>hi</body></message>".to_vec(),
                    offline_upto: None,
                },
                HeldStanza {
                    xml: b"<message><body>stored</body></message>".to_vec(),
                    offline_upto: Some(3),
                },
            ],
            held_at_unix_ms: 1_795_000_001_000,
            waited_ms: 12_000,
            presence: Some("<presence><show>away</show></presence>".into()),
            priority: -1,
            roster_requested: true,
            carbons: true,
            directed: vec!["chat@conference.localhost/x".into()],
            inactive: true,
            rooms: vec![HeldRoom {
                room: "chat@conference.localhost".into(),
                nick: "Alice".into(),
                presence: "<presence/>".into(),
            }],
            caps: Some((
                "https://conversations.im#9VwBO/S8G5CbzIydJUNXaX1Rpps=".into(),
                "sha-1".into(),
            )),
            blocklist_requested: true,
        })),
        Record::Pep {
            user: "alice".into(),
            node: "urn:xmpp:avatar:metadata".into(),
            change: PepRecord::Configured {
                config: PepConfig {
                    access: Access::Open,
                    persist_items: true,
                    max_items: 3,
                    send_last: SendLast::OnSubAndPresence,
                    notify_retract: false,
                },
            },
        },
        Record::Pep {
            user: "alice".into(),
            node: "urn:xmpp:avatar:metadata".into(),
            change: PepRecord::Published {
                item: PepItem {
                    id: "a1".into(),
                    xml: "<metadata xmlns='urn:xmpp:avatar:metadata'/>".into(),
                    stamp_ms: 1_795_000_002_000,
                },
            },
        },
        Record::Pep {
            user: "alice".into(),
            node: "urn:xmpp:avatar:metadata".into(),
            change: PepRecord::Published {
                item: PepItem {
                    id: "a2".into(),
                    xml: "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='x'/></metadata>"
                        .into(),
                    stamp_ms: 1_795_000_003_000,
                },
            },
        },
        Record::Pep {
            user: "alice".into(),
            node: "urn:xmpp:avatar:metadata".into(),
            change: PepRecord::Retracted { id: "a1".into() },
        },
        Record::Pep {
            user: "alice".into(),
            node: "gone".into(),
            change: PepRecord::Configured {
                config: PepConfig::default(),
            },
        },
        Record::Pep {
            user: "alice".into(),
            node: "gone".into(),
            change: PepRecord::Deleted,
        },
        Record::Blocklist {
            user: "alice".into(),
            jids: vec![
                "spam.example".into(),
                "eve@localhost".into(),
                "x@y.example/r".into(),
            ],
            blocked: true,
        },
        Record::Blocklist {
            user: "alice".into(),
            jids: vec!["x@y.example/r".into()],
            blocked: false,
        },
        Record::AbuseReported {
            user: "alice".into(),
            report: AbuseReport {
                jid: "eve@localhost".into(),
                reason: "urn:xmpp:reporting:spam".into(),
                text: "buy now".into(),
                stamp_ms: 1_795_000_004_000,
            },
        },
        Record::LinkEpochKept {
            epoch: "0a1b2c3d4e5f607182".into(),
        },
        Record::Pep {
            user: "alice".into(),
            node: "urn:xmpp:avatar:metadata".into(),
            change: PepRecord::Subscribed {
                jid: "bob@localhost".into(),
            },
        },
        room(RoomRecord::Vcard {
            vcard: Some(
                "<vCard xmlns='vcard-temp'><PHOTO><BINVAL>YWJj</BINVAL></PHOTO></vCard>".into(),
            ),
        }),
        mirror(
            KEY,
            MirrorRecord::Vcard {
                vcard: Some("<vCard xmlns='vcard-temp'><DESC>ops</DESC></vCard>".into()),
            },
        ),
        Record::LinkRoutes {
            peer: crate::common::PeerId::new(PEER),
            domains: vec!["hq.example".into(), "durham.example".into()],
        },
        Record::FileStored {
            key: file_key("0123456789abcdef0123456789abcdef"),
            file: crate::files::StoredFile {
                meta: crate::files::FileMeta {
                    size: 5000,
                    sha256: "ab".repeat(32),
                    content_type: "image/jpeg".into(),
                    name: "site photo.jpg".into(),
                },
                owner: Some("alice".into()),
                stamp_ms: 1_795_000_000_000,
                complete: true,
            },
        },
        Record::FileStored {
            key: file_key("fedcba9876543210fedcba9876543210"),
            file: crate::files::StoredFile {
                meta: crate::files::FileMeta {
                    size: 1,
                    sha256: "cd".repeat(32),
                    content_type: "application/octet-stream".into(),
                    name: "gone.bin".into(),
                },
                owner: None,
                stamp_ms: 1_795_000_000_000,
                complete: false,
            },
        },
        Record::FileRemoved {
            key: file_key("fedcba9876543210fedcba9876543210"),
        },
        // Taken back by the start: the snapshot has none.
        Record::HeldSessionsTaken,
    ]);
    records
}

fn file_key(id: &str) -> crate::files::FileKey {
    crate::files::FileKey {
        origin: "localhost".into(),
        id: id.into(),
    }
}

/// A one-to-one message in alice's archive.
fn personal(seq: u64, stanza_id: &str) -> Archived {
    Archived {
        seq,
        stanza_id: stanza_id.into(),
        stamp_ms: 1_795_000_000_000 + seq,
        nick: String::new(),
        real: "bob@localhost/b".into(),
        xml: "<message from='alice@localhost/a' to='bob@localhost/b' type='chat'><body>hi</body></message>".into(),
    }
}

/// A message whose stanza alone fills an archive block.
fn big(seq: u64) -> Archived {
    let body = "field report ".repeat(BLOCK_BYTES / 13 + 1);
    let mut msg = samples::archived(seq);
    msg.xml = msg.xml.replace("hi &amp; bye", &body);
    msg
}

/// One line per record: its kind and its encoding, in hex.
fn encoded() -> String {
    let mut state = State::default();
    let mut all = records();
    for r in &all {
        state.apply(r);
    }
    // Alice's offline queue sealed into a block (held), dave's open: the
    // snapshot pins both forms of a queue.
    let alice = &mut state.accounts.get_mut("alice").unwrap().offline;
    alice.archive_mut().seal_open();
    // The replica's blocks as written to an archive file; the room's stay
    // held in memory: the snapshot pins both forms.
    let replica = &mut state.mirrors.get_mut(KEY).unwrap().state.archive;
    replica
        .spill(&mut |bytes| {
            Ok(Extent {
                file: 7,
                offset: 4096,
                len: bytes.len() as u32,
            })
        })
        .unwrap();
    write_snapshot(&state, |r| {
        all.push(r);
        Ok(())
    })
    .unwrap();
    let mut out = format!("# log format {LOG_FORMAT}: see src/state/format_tests.rs\n");
    for r in &all {
        let bytes = r.encode();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("{} {hex}\n", r.kind()));
        // And each reads back as itself.
        assert_eq!(&Record::decode(r.kind(), &bytes).unwrap(), r);
    }
    out
}

#[test]
fn the_log_format_is_what_the_fixture_pins() {
    let now = encoded();
    if std::env::var("OUTPOST_BLESS_FORMAT").is_ok() {
        std::fs::write(FIXTURE, &now).unwrap();
    }
    let pinned = std::fs::read_to_string(FIXTURE).unwrap_or_default();
    assert!(
        now == pinned,
        "the encoding of stored records changed: see src/state/format_tests.rs for what a format change needs"
    );
}
