//! Link stream compression: raw DEFLATE, one stream per direction and
//! connection, flushed at every write so each event leaves at once. Room
//! events repeat their attribute names, nicks, JIDs and id prefixes, and
//! chat text is text: this is what brings a resync close to the bytes of
//! the missed bodies themselves (docs/benchmarks.md).

use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush};

/// Bytes inflated at a time: the framer sees the stream in pieces of this
/// size, so a small input that inflates to a lot never sits in memory whole.
pub const INFLATE_CHUNK: usize = 16 * 1024;

pub struct Deflater(Box<CompressorOxide>);

impl Deflater {
    pub fn new() -> Deflater {
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
        Inflater(InflateState::new_boxed(DataFormat::Raw))
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
