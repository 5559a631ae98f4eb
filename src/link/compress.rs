//! Link stream compression: raw DEFLATE, one stream per direction and
//! connection, flushed at every write so each event leaves at once. Room
//! events repeat their attribute names, nicks, JIDs and id prefixes, and
//! chat text is text: this is what brings a resync close to the bytes of
//! the missed bodies themselves (docs/benchmarks.md).

use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush};

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
        let mut out = Vec::with_capacity(data.len() / 2 + 16);
        let mut buf = [0u8; 4096];
        let mut input = data;
        loop {
            let r =
                miniz_oxide::deflate::stream::deflate(&mut self.0, input, &mut buf, MZFlush::Sync);
            input = &input[r.bytes_consumed..];
            out.extend_from_slice(&buf[..r.bytes_written]);
            // Done when everything is in and the flush fit in the buffer
            // (`Buf`: nothing was left to do).
            if matches!(r.status, Err(MZError::Buf))
                || (input.is_empty() && r.bytes_written < buf.len())
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

pub struct Inflater(Box<InflateState>);

impl Inflater {
    pub fn new() -> Inflater {
        let mut i = Inflater(InflateState::new_boxed(DataFormat::Raw));
        // Any deflate encoding of the primer leaves the same window behind.
        let mut primed = &Deflater::unprimed().compress(PRIMER)[..];
        let mut sink = vec![0u8; PRIMER.len()];
        while !primed.is_empty() {
            let (used, _) = i.step(primed, &mut sink).expect("the primer inflates");
            primed = &primed[used..];
        }
        i
    }

    /// Inflate from `input` into `out`: (bytes consumed, bytes written).
    /// Call again while either is non-zero.
    pub fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), String> {
        let r = miniz_oxide::inflate::stream::inflate(&mut self.0, input, out, MZFlush::None);
        match r.status {
            Ok(_) | Err(MZError::Buf) => Ok((r.bytes_consumed, r.bytes_written)),
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
            let (used, n) = inf.step(input, &mut buf).unwrap();
            input = &input[used..];
            out.extend_from_slice(&buf[..n]);
            if used == 0 && n == 0 {
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
}
