//! The log at the sizes a board reaches in years of use: a state of
//! several hundred MiB is compacted and read back whole, through the same
//! functions the node uses.

use outpost::muc::model::{Archived, RoomRecord};
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
    let body = "w".repeat(100 * 1024);
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
        assert!(bytes > 300_000_000, "{bytes}");
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
    assert!(opened.snapshot_bytes > 300_000_000);
}
