//! Link stream compression: raw DEFLATE, one stream per direction and
//! connection, flushed at every write so each event leaves at once. Room
//! events repeat their attribute names, nicks, JIDs and id prefixes, and
//! chat text is text: this is what brings a resync close to the bytes of
//! the missed bodies themselves (docs/benchmarks.md).

use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// Both directions start from this text, as if it had just been sent:
/// the first event of a connection then costs about what later ones do
/// (after a short outage the first events are most of the traffic). Part
/// of the protocol (a stream opened with `Z`): both ends must use the same bytes.
const PRIMER: &[u8] = b"<stream:stream xmlns='urn:xmpp:dmuc:0' xmlns:stream='http://etherx.jabber.org/streams' from='.example'><hello received='0' epoch=''/>\
<e n='1'><snapshot room='' next-seq='1'><config name='' description='' persistent='0' public='1' members-only='0' max-users='100' moderated='0' whois='moderators' change-subject='0' allow-invites='1' history='20' archiving='1'/><affiliation jid='' affiliation='owner'/><occupant nick='' jid='' affiliation='none' role='participant' oid=''/></snapshot></e>\
<e n='2'><occupant nick='' jid='' affiliation='none' role='moderator' oid='' room='' change='joined'/></e><e n='3'><occupant room='' change='left'/></e>\
<e n='4'><join room='' nick='' from=''><presence xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc'/></presence></join></e><e n='5'><leave room='' from=''/></e>\
<e n='6'><groupchat room='' from='' nick='' id=''><message xmlns='jabber:client' type='groupchat' id=''><body></body></message></groupchat></e>\
<e n='7'><resync room='' last-seq='1'/></e><e n='8'><relay from='' to=''><iq xmlns='jabber:client' type='result' id=''/></relay></e>\
<a h='1'/><r/><e n='9'><message room=''><m seq='1' id='' stamp='2026-01-01T00:00:00.000Z' nick='' real='' oid=''><message xmlns='jabber:client' type='groupchat' id=''><body></body></message></m></message></e>\
<a h='2'/><e n='10'><message room=''><m seq='2' id='' stamp='2026-01-01T00:00:00.000Z' nick='' real='' oid=''><message xmlns='jabber:client' type='groupchat'><body></body></message></m></message></e>";

/// Bytes inflated at a time: the framer sees the stream in pieces of this
/// size, so a small input that inflates to a lot never sits in memory whole.
pub const INFLATE_CHUNK: usize = 16 * 1024;

/// Writes up to this long are sent, while no compressor is held, as a
/// stream of their own in one stored block: keepalives and acks on an idle
/// link need no compressor (and cost 5 bytes more than plain).
pub const STORED_MAX: usize = 128;

/// A DEFLATE compressor primed with [`PRIMER`] (about 300 KB: held only
/// while a link is busy, see `LinkConn`).
pub struct Deflater(Box<CompressorOxide>);

impl Deflater {
    pub fn new() -> Deflater {
        let mut d = Deflater::unprimed();
        d.compress(PRIMER); // The peer's inflater holds the same text.
        d
    }

    fn unprimed() -> Deflater {
        // Level 6, raw deflate (no zlib header: the stream never ends).
        Deflater(Box::new(CompressorOxide::new(
            create_comp_flags_from_zip_params(6, -15, 0),
        )))
    }

    /// Compress `data` and flush, so the peer can inflate all of it now.
    pub fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        self.deflate(data, MZFlush::Sync)
    }

    /// End the stream (a final empty block): the peer's inflater sees the
    /// end and is let go; what follows is a new stream.
    pub fn finish(mut self) -> Vec<u8> {
        self.deflate(&[], MZFlush::Finish)
    }

    fn deflate(&mut self, data: &[u8], flush: MZFlush) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 2 + 16);
        let mut buf = [0u8; 4096];
        let mut input = data;
        loop {
            let r = miniz_oxide::deflate::stream::deflate(&mut self.0, input, &mut buf, flush);
            input = &input[r.bytes_consumed..];
            out.extend_from_slice(&buf[..r.bytes_written]);
            // Done when everything is in and the flush fit in the buffer
            // (`Buf`: nothing was left to do; `StreamEnd`: finished).
            if matches!(r.status, Err(MZError::Buf) | Ok(MZStatus::StreamEnd))
                || (input.is_empty() && r.bytes_written < buf.len() && flush != MZFlush::Finish)
            {
                return out;
            }
        }
    }
}

impl Default for Deflater {
    fn default() -> Deflater {
        Deflater::new()
    }
}

/// `data` as a whole DEFLATE stream of one stored (uncompressed) block:
/// no compressor needed. At most 65,535 bytes.
pub fn stored_stream(data: &[u8]) -> Vec<u8> {
    stored_block(data, true)
}

fn stored_block(data: &[u8], last: bool) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("a stored block holds at most 65,535 bytes");
    let mut out = Vec::with_capacity(data.len() + 5);
    out.push(u8::from(last)); // BFINAL, BTYPE 00 (stored), padded to the byte.
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out
}

pub struct Inflater(Box<InflateState>);

/// What starting a stream costs the receiver (an inflater made and primed),
/// in inflated bytes of its per-turn budget.
pub const NEW_STREAM_COST: usize = 4 * 1024;

/// What one call of [`Inflater::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub written: usize,
    /// The stream ended: what follows in the input is a new stream.
    pub ended: bool,
}

impl Inflater {
    pub fn new() -> Inflater {
        let mut i = Inflater(InflateState::new_boxed(DataFormat::Raw));
        // Any deflate encoding of the primer leaves the same window behind;
        // a stored block needs no compressor to make.
        let primed = stored_block(PRIMER, false);
        let mut input = &primed[..];
        let mut sink = vec![0u8; PRIMER.len()];
        while !input.is_empty() {
            let step = i.step(input, &mut sink).expect("the primer inflates");
            input = &input[step.consumed..];
        }
        i
    }

    /// Inflate from `input` into `out`. Call again while it consumes or
    /// writes anything, until the stream ends.
    pub fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<Step, String> {
        let r = miniz_oxide::inflate::stream::inflate(&mut self.0, input, out, MZFlush::None);
        let step = |ended| Step {
            consumed: r.bytes_consumed,
            written: r.bytes_written,
            ended,
        };
        match r.status {
            Ok(MZStatus::StreamEnd) => Ok(step(true)),
            Ok(_) | Err(MZError::Buf) => Ok(step(false)),
            Err(e) => Err(format!("corrupt compressed data ({e:?})")),
        }
    }
}

impl Default for Inflater {
    fn default() -> Inflater {
        Inflater::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(inf: &mut Inflater, mut input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1000];
        loop {
            let step = inf.step(input, &mut buf).unwrap();
            input = &input[step.consumed..];
            out.extend_from_slice(&buf[..step.written]);
            if step.consumed == 0 && step.written == 0 || step.ended {
                assert!(input.is_empty(), "nothing read past the stream's end");
                return out;
            }
        }
    }

    #[test]
    fn every_write_inflates_whole_at_the_other_end() {
        let (mut d, mut i) = (Deflater::new(), Inflater::new());
        let event = b"<e n='7'><message room='chat'><m seq='7' nick='Wayne'/></message></e>";
        let first = d.compress(event);
        assert_eq!(inflate_all(&mut i, &first), event);
        let second = d.compress(event);
        assert!(
            second.len() < first.len() / 2,
            "the repeat costs little: {}",
            second.len()
        );
        assert_eq!(inflate_all(&mut i, &second), event);
        // A large write, and one byte at a time on the way in.
        let big: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
        let packed = d.compress(&big);
        let mut got = Vec::new();
        for b in packed.chunks(1) {
            got.extend(inflate_all(&mut i, b));
        }
        assert_eq!(got, big);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut i = Inflater::new();
        let mut buf = [0u8; 64];
        assert!(i.step(&[0xff; 64], &mut buf).is_err());
    }

    #[test]
    fn a_stream_ends_exactly_where_its_bytes_do_and_the_next_starts_fresh() {
        let event = b"<e n='7'><message room='chat'><m seq='7' nick='Wayne'/></message></e>";
        let mut wire = Vec::new();
        let mut d = Deflater::new();
        wire.extend(d.compress(event));
        wire.extend(d.finish());
        let first_end = wire.len();
        wire.extend(stored_stream(b" "));
        let mut d = Deflater::new();
        wire.extend(d.compress(event));
        wire.extend(d.compress(event));
        // Read as a receiver does: a stream's end lets its inflater go.
        let (mut got, mut ends, mut input) = (Vec::new(), Vec::new(), &wire[..]);
        let mut inflater: Option<Inflater> = None;
        let mut buf = vec![0u8; 64];
        while !input.is_empty() || inflater.is_some() {
            let i = inflater.get_or_insert_with(Inflater::new);
            let step = i.step(input, &mut buf).unwrap();
            input = &input[step.consumed..];
            got.extend_from_slice(&buf[..step.written]);
            if step.ended {
                inflater = None;
                ends.push(wire.len() - input.len());
            } else if step.consumed == 0 && step.written == 0 {
                break;
            }
        }
        assert_eq!(ends, [first_end, first_end + 6]);
        let mut want = event.to_vec();
        want.push(b' ');
        want.extend_from_slice(event);
        want.extend_from_slice(event);
        assert_eq!(got, want);
    }
}
