//! The admin page's HTTP request parser: the shell calls `parse` on all
//! bytes received so far after every read, so where the reads happen to
//! split the request must not change the outcome.

use super::{chunks, split_plan};
use crate::admin::http::{parse, Parsed, MAX_BODY};

/// What the shell's read loop ends with, given these reads.
fn read_loop(pieces: &[&[u8]]) -> Parsed {
    let mut buf = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        match parse(&buf) {
            Parsed::Incomplete => {}
            done => return done,
        }
    }
    Parsed::Incomplete
}

pub fn http(data: &[u8]) {
    let (sizes, request) = split_plan(data);
    let whole = parse(request);
    let pieces = read_loop(&chunks(request, &sizes));
    assert_eq!(
        whole, pieces,
        "how the request was split changed the outcome"
    );
    if let Parsed::Done(req) = whole {
        assert!(req.body.len() <= MAX_BODY);
        assert!(req.path.starts_with('/'));
        let _ = req.form();
        let _ = req.cookie("session");
    }
}
