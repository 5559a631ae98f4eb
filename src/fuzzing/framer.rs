//! The stream framer and stanza parser: chunking must not change what is
//! framed, and a parsed stanza must survive the writer and parse again.

use super::{chunks, split_plan};
use crate::xml::{
    parse_fragment, parse_header, parse_stanza, Frame, FrameError, Framer, Limits, StreamHeader,
};

/// Small limits, so that inputs of a few KiB reach every limit check.
const LIMITS: Limits = Limits {
    max_stanza_bytes: 2048,
    max_depth: 8,
    max_attrs: 16,
};

const CLIENT_HEADER: &[u8] =
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn frame_all(pieces: &[&[u8]]) -> (Vec<Frame>, Option<FrameError>) {
    let mut framer = Framer::new(LIMITS);
    let mut frames = Vec::new();
    for piece in pieces {
        if let Err(e) = framer.feed(piece, &mut frames) {
            return (frames, Some(e)); // The stream is dead: feed nothing more.
        }
    }
    (frames, None)
}

pub fn framer(data: &[u8]) {
    let (sizes, stream) = split_plan(data);
    let whole = frame_all(&[stream]);
    let pieces = frame_all(&chunks(stream, &sizes));
    assert_eq!(whole, pieces, "chunking changed the frames");

    let mut header = parse_header(CLIENT_HEADER).expect("the client header parses");
    for frame in &whole.0 {
        match frame {
            Frame::StreamOpen(raw) => {
                if let Ok(h) = parse_header(raw) {
                    header = h;
                }
            }
            Frame::Stanza(raw) => {
                assert!(
                    raw.len() <= LIMITS.max_stanza_bytes,
                    "a frame over the limit"
                );
                stanza_round_trip(&header, raw);
            }
            Frame::StreamClose => {}
        }
    }
    if let Ok(text) = std::str::from_utf8(stream) {
        let _ = parse_fragment(text);
    }
}

/// What the node forwards is the writer's output for a parsed stanza: it
/// must parse again, to the same element.
fn stanza_round_trip(header: &StreamHeader, raw: &[u8]) {
    let Ok(el) = parse_stanza(header, raw) else {
        return;
    };
    let xml = el.to_xml(&header.default_ns);
    match parse_stanza(header, xml.as_bytes()) {
        Ok(again) => assert_eq!(el, again, "the writer changed the stanza: {xml}"),
        Err(e) => panic!("the writer's output does not parse ({e:?}): {xml}"),
    }
}
