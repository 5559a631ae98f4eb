//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/) through
//! the same bodies the cargo-fuzz targets run (outpost::fuzzing), so CI
//! checks the corpora on stable Rust. `write_seeds` (ignored) regenerates
//! the hand-made seeds; campaigns add to the corpora (docs/fuzzing.md).
#![allow(clippy::disallowed_methods)] // Reads and writes the corpus files.

use outpost::fuzzing::{link_seeds, TARGETS};
use std::fs;
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn every_committed_corpus_file_replays_cleanly() {
    for (target, run) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no corpus", dir.display());
        for file in files {
            let input = fs::read(&file).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
        }
    }
}

const STREAM: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// `(target, name, input)` for every hand-made seed.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = link_seeds();
    let mut add = |target: &'static str, name: &str, input: Vec<u8>| {
        seeds.push((target, name.to_string(), input));
    };
    let whole = |s: &str| [&[0u8][..], s.as_bytes()].concat();
    let split = |s: &str| [&[2u8, 5, 1][..], s.as_bytes()].concat();

    for (name, stanzas) in [
        ("login", "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj11c2VyLHI9YWJj</auth>"),
        ("message", "<message to='a@b' xml:lang='en'><body>x &amp; y<![CDATA[<z>]]></body><x xmlns='urn:e' a='&apos;'/></message><presence/>"),
        ("iq", "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq><stream:error><x/></stream:error></stream:stream>"),
        ("deep", "<a><b><c><d><e><f><g><h><i/></h></g></f></e></d></c></b></a>"),
    ] {
        add("framer", name, whole(&format!("{STREAM}{stanzas}")));
        add("framer", &format!("{name}-split"), split(&format!("{STREAM}{stanzas}")));
    }

    for (name, first, last) in [
        ("rfc7677", "n,,n=user,r=rOprNGfwEbeRWgbNEkqO", "c=biws,r=rOprNGfwEbeRWgbNEkqOserver-nonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        ("authzid", "y,a=admin=2Cx,n=us=3Der,r=abc", "c=eSxhPWFkbWluPTJDeCw=,r=abcserver-nonce,p=AAAA"),
        ("plain", "\0user\0pencil", "admin\0user\0pencil"),
    ] {
        for mode in [0u8, 3] {
            add("scram", &format!("{name}-{mode}"), [&[mode][..], first.as_bytes(), &[0xff], last.as_bytes()].concat());
        }
    }

    for (name, req) in [
        ("get", "GET /status?x=1 HTTP/1.1\r\nHost: 10.0.0.1\r\nCookie: a=b; session=abc\r\n\r\n"),
        ("post", "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 27\r\n\r\nuser=admin&password=p%40ss+"),
        ("chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ] {
        add("http", name, whole(req));
        add("http", &format!("{name}-split"), split(req));
    }
    // A head ending just below the limit, read 3 bytes at a time.
    let mut at_limit = b"GET / HTTP/1.1\r\nX: ".to_vec();
    at_limit.resize(outpost::admin::http::MAX_HEAD - 2, b'a');
    add(
        "http",
        "head-at-limit",
        [&[1u8, 3][..], &at_limit, b"\r\n\r\n"].concat(),
    );

    for (name, mode, typed) in [
        ("trusted", 0b1111_1101u8, &b"help\rstatus\r\nconfig get c2s.listen\nuser add bob\rsecret\rsecret\r\x1b[Auser del bob\r"[..]),
        ("login", 0b0000_0110, &b"wrong-password\rright-password\rlogout\r"[..]),
        ("setup", 0b1111_1100, &b"first-choice\rfirst-choice\r\x7f\x08peer del x\r\x03"[..]),
        ("noise", 0b0000_0001, &b"\x00\x01\xff\xfe\x1b[12;\r\t\x15 rooms\r"[..]),
    ] {
        add("console", name, [&[mode][..], typed].concat());
    }

    add(
        "config",
        "embedded",
        outpost::config::EMBEDDED_DEFAULT.as_bytes().to_vec(),
    );
    add(
        "config",
        "full",
        outpost::fuzzing::CONFIG_FILE.as_bytes().to_vec(),
    );
    for (name, edit) in [
        ("edit-listen", "=c2s.listen=0.0.0.0:5223"),
        ("edit-domain", "=domain=other.example"),
        ("edit-number", "=c2s.max_stanza_bytes=1024"),
        ("edit-table", "=muc=1"),
    ] {
        add("config", name, edit.as_bytes().to_vec());
    }

    // Base log, then mutations: flip, truncate, torn write, append, remove.
    for (name, input) in [
        ("pristine-0", vec![0u8]),
        ("pristine-1", vec![1u8]),
        ("flip", vec![0, 0, 0, 0x40, 0x00]),
        ("truncate-tail", vec![1, 1, 1, 0xff, 0x00]),
        ("torn", vec![0, 52, 0, 0xf0, 0x00]),
        (
            "garbage",
            vec![1, 3 + 5 * 8, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        ),
        ("remove-old", vec![1, 4, 0, 0, 0]),
    ] {
        add("log_recovery", name, input);
    }
    seeds
}

/// Regenerate the hand-made seeds: `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore]
fn write_seeds() {
    for (target, name, input) in seeds() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(format!("seed-{name}")), input).expect("a seed");
    }
}
