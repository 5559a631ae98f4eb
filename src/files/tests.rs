//! The pure parts: paths, ranges, heads, rewriting links.

use super::http::{content_type, parse_head, range, HeadParse, Range};
use super::url::{parse_path, path, Rewriter};
use super::FileKey;
use crate::xml::Element;

const ID: &str = "0123456789abcdef0123456789abcdef";

fn key(origin: &str) -> FileKey {
    FileKey {
        origin: origin.into(),
        id: ID.into(),
    }
}

#[test]
fn paths_round_trip_and_refuse_tricks() {
    let k = key("hq.example");
    let p = path(&k, "a photo/../x.jpg");
    assert_eq!(p, format!("/files/hq.example/{ID}/a%20photo%2F..%2Fx.jpg"));
    // An encoded slash in a name is refused: it would be a path.
    assert_eq!(parse_path(&p), None);
    let p = path(&k, "réunion 1.jpg");
    assert_eq!(parse_path(&p), Some((k.clone(), "réunion 1.jpg".into())));
    for bad in [
        format!("/files/../{ID}/x"),
        format!("/files/hq.example/{ID}/.."),
        format!("/files/hq.example/{ID}/%2e%2e"),
        format!("/files/hq.example/{}/x", &ID[..31]),
        format!("/files/HQ.example/{ID}/x"),
        format!("/files/hq.example/{ID}/a%00b"),
        format!("/files/hq.example/{ID}/"),
        "/files/hq.example".to_string(),
        format!("/admin/hq.example/{ID}/x"),
    ] {
        assert_eq!(parse_path(&bad), None, "{bad}");
    }
}

#[test]
fn ranges_are_one_span_within_the_file_or_unsatisfiable() {
    assert_eq!(range(None, 100), Range::Full);
    assert_eq!(
        range(Some("bytes=0-9"), 100),
        Range::Part { start: 0, end: 9 }
    );
    assert_eq!(
        range(Some("bytes=90-"), 100),
        Range::Part { start: 90, end: 99 }
    );
    assert_eq!(
        range(Some("bytes=90-500"), 100),
        Range::Part { start: 90, end: 99 }
    );
    assert_eq!(
        range(Some("bytes=-10"), 100),
        Range::Part { start: 90, end: 99 }
    );
    assert_eq!(
        range(Some("bytes=-500"), 100),
        Range::Part { start: 0, end: 99 }
    );
    assert_eq!(range(Some("bytes=100-"), 100), Range::Unsatisfiable);
    assert_eq!(range(Some("bytes=0-0"), 0), Range::Unsatisfiable);
    assert_eq!(range(Some("bytes=5-2"), 100), Range::Full);
    assert_eq!(range(Some("bytes=0-1,5-6"), 100), Range::Full);
    assert_eq!(range(Some("items=0-1"), 100), Range::Full);
}

#[test]
fn a_head_is_parsed_once_whole_and_bounded() {
    let req = b"PUT /files/a/b/c?token=ab HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nbody";
    let HeadParse::Done(head, used) = parse_head(req) else {
        panic!("not parsed");
    };
    assert_eq!(&req[used..], b"body");
    assert_eq!(
        (head.path(), head.query("token")),
        ("/files/a/b/c", Some("ab"))
    );
    assert_eq!(head.content_length(), Ok(12));
    assert_eq!(parse_head(&req[..20]), HeadParse::Incomplete);
    let huge = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
    assert!(matches!(parse_head(&huge), HeadParse::Error(431, _)));
    let chunked = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let HeadParse::Done(head, _) = parse_head(chunked) else {
        panic!("not parsed");
    };
    assert_eq!(head.content_length().map_err(|e| e.0), Err(411));
}

#[test]
fn content_types_are_kept_only_when_they_are_one() {
    assert_eq!(content_type(Some("image/jpeg")), "image/jpeg");
    assert_eq!(
        content_type(Some("text/plain; charset=utf-8")),
        "text/plain; charset=utf-8"
    );
    for bad in ["", "jpeg", "text/html\r\nX: y", "a/b<script>"] {
        assert_eq!(content_type(Some(bad)), "application/octet-stream", "{bad}");
    }
}

#[test]
fn links_to_network_files_are_rewritten_others_and_encrypted_ones_are_not() {
    let known = |d: &str| d == "hq.example";
    let r = Rewriter {
        local: "https://site.example:5281",
        domain: "site.example",
        known: &known,
    };
    let hq = format!("https://hq.example:5281/files/hq.example/{ID}/p.jpg");
    let here = format!("https://site.example:5281/files/hq.example/{ID}/p.jpg");
    let other = format!("https://example.com/files/elsewhere.example/{ID}/p.jpg");
    let aesgcm = format!("aesgcm://files.example.org/files/hq.example/{ID}/p.jpg#00ff");
    let mut msg = Element::new("message", crate::xml::ns::CLIENT)
        .child(
            Element::new("body", crate::xml::ns::CLIENT)
                .text(format!("see {hq}\nand {other} and {aesgcm}")),
        )
        .child(
            Element::new("x", "jabber:x:oob").child(Element::new("url", "jabber:x:oob").text(hq)),
        );
    let keys = r.message(&mut msg);
    assert_eq!(keys, vec![key("hq.example")]);
    let xml = msg.to_xml(crate::xml::ns::CLIENT);
    assert!(
        xml.contains(&format!("see {here}\nand {other} and {aesgcm}</body>")),
        "{xml}"
    );
    assert!(xml.contains(&format!("<url>{here}</url>")), "{xml}");
    // An organisation-wide host every node serves needs no rewriting.
    let org = Rewriter {
        local: "https://files.example.org",
        domain: "site.example",
        known: &known,
    };
    let url = format!("https://files.example.org/files/hq.example/{ID}/p.jpg");
    assert_eq!(org.url(&url), Some((url.clone(), key("hq.example"))));
}

#[test]
fn a_content_length_is_digits_given_once() {
    let head = |h: &str| match parse_head(format!("PUT / HTTP/1.1\r\n{h}\r\n\r\n").as_bytes()) {
        HeadParse::Done(head, _) => head,
        other => panic!("{other:?}"),
    };
    assert_eq!(head("Content-Length: 12").content_length(), Ok(12));
    for bad in [
        "Content-Length: +5",
        "Content-Length: 5 5",
        "Content-Length: -1",
        "Content-Length: 5\r\nContent-Length: 5",
        "Content-Length: 99999999999999999999999",
    ] {
        assert_eq!(
            head(bad).content_length().map_err(|e| e.0),
            Err(400),
            "{bad}"
        );
    }
}
