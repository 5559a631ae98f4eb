#![no_main]
// The body lives in the crate (outpost::fuzzing) so that
// tests/fuzz_corpus.rs replays this corpus on stable Rust.
libfuzzer_sys::fuzz_target!(|data: &[u8]| outpost::fuzzing::link_plain(data));
