//! The SASL server side: arbitrary client messages never panic and never
//! authenticate, and an honest client with the right password always does.

use crate::scram::{parse_client_first, parse_plain, Credentials, Hash, ScramClient, ScramServer};
use std::sync::OnceLock;

/// One PBKDF2 round: the fuzzer is after parsing, not password strength.
const ITERATIONS: u32 = 1;

fn stored_credentials() -> &'static Credentials {
    static CREDS: OnceLock<Credentials> = OnceLock::new();
    CREDS.get_or_init(|| Credentials::derive("pencil", b"fuzz-salt", ITERATIONS))
}

/// Input: a mode byte (bit 0: SHA-1, bit 1: the user exists), then the
/// client-first message, a 0xff byte, and the client-final message.
pub fn scram(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let hash = if mode & 1 == 1 {
        Hash::Sha1
    } else {
        Hash::Sha256
    };
    let (first, last) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let _ = parse_client_first(first);
    let _ = parse_plain(first);
    let _ = parse_plain(last);

    let creds = (mode & 2 == 2).then(stored_credentials);
    if let Ok((server, server_first)) =
        ScramServer::start(hash, first, creds, "server-nonce", b"fake-salt")
    {
        assert!(server_first.starts_with("r="), "{server_first}");
        assert!(
            server.finish(last).is_err(),
            "a made-up client proof was accepted"
        );
    }
    honest_client_logs_in(hash, first, last);
}

/// The client and server sides agree on any user name and password, and a
/// wrong password fails.
fn honest_client_logs_in(hash: Hash, user: &[u8], password: &[u8]) {
    let user = String::from_utf8_lossy(&user[..user.len().min(64)]).into_owned();
    let password = String::from_utf8_lossy(&password[..password.len().min(64)]).into_owned();
    let creds = Credentials::derive(&password, b"salt", ITERATIONS);
    for (attempt, ok) in [(password.clone(), true), (format!("{password}x"), false)] {
        let (mut client, client_first) = ScramClient::new(hash, &user, &attempt, "client-nonce");
        let (server, server_first) = ScramServer::start(
            hash,
            client_first.as_bytes(),
            Some(&creds),
            "server-nonce",
            b"",
        )
        .expect("the server takes an honest client-first message");
        assert_eq!(server.username, user);
        let client_final = client
            .respond(&server_first)
            .expect("the client takes the server-first message");
        match server.finish(client_final.as_bytes()) {
            Ok(server_final) if ok => assert!(client.verify_server(&server_final)),
            Err(_) if !ok => {}
            other => panic!("password right: {ok}, server said {other:?}"),
        }
    }
}
