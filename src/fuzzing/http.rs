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
    upload_head(request);
    if let Parsed::Done(req) = whole {
        assert!(req.body.len() <= MAX_BODY);
        assert!(req.path.starts_with('/'));
        let _ = req.form();
        let _ = req.cookie("session");
    }
}

/// The upload server's head parser, ranges and file paths, on the same
/// bytes: a path it accepts names a file the way `url::path` writes it,
/// and a range lies within the file.
fn upload_head(request: &[u8]) {
    use crate::files::http::{parse_head, range, HeadParse, Range};
    use crate::files::url;
    let HeadParse::Done(head, used) = parse_head(request) else {
        return;
    };
    assert!(used <= request.len());
    if let Some((key, name)) = url::parse_path(head.path()) {
        assert!(url::is_key(&key) && url::is_name(&name));
        assert_eq!(url::parse_path(&url::path(&key, &name)), Some((key, name)));
    }
    for size in [0u64, 1, 511, 1 << 20] {
        if let Range::Part { start, end } = range(head.header("range"), size) {
            assert!(start <= end && end < size, "{start}-{end} of {size}");
        }
    }
    let _ = head.content_length();
    let _ = head.query("token");
}
