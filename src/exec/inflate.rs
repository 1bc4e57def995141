//! Inflating the compressed output pieces of the run envelope (`o` and `e` marker lines).
//!
//! The runner in the container compresses a piece of the command's stdout or stderr with node's
//! `zlib.deflateRawSync` when that makes it smaller: each such piece is one complete raw deflate
//! stream (finished, so nothing is held back in a compressor between pieces) of at most
//! [`PIECE_BYTES`] of output. evoctl inflates each piece on its own with `flate2`'s pure-Rust
//! backend, into a buffer that never grows past [`MAX_INFLATED`]: a piece that would inflate
//! beyond it is not the runner's (a bomb) and ends the run as a protocol error.

use flate2::{Decompress, FlushDecompress, Status};

/// The most output the runner puts in one compressed piece.
pub const PIECE_BYTES: usize = 64 * 1024;
/// The most one compressed piece may inflate to: 16 times what the runner ever puts in one.
pub const MAX_INFLATED: usize = 1024 * 1024;
/// The first allocation for a piece's output (grown by doubling up to the limit).
const FIRST_ALLOCATION: usize = 16 * 1024;

/// Why a compressed piece could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past [`MAX_INFLATED`].
    TooLarge,
    /// It is not one whole raw deflate stream.
    Corrupt,
}

/// A raw-deflate inflater reused for every piece of a run.
pub struct Inflater {
    state: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater { state: Decompress::new(false) }
    }
}

impl Inflater {
    /// Inflate one piece: a whole raw deflate stream, nothing after it.
    pub fn inflate(&mut self, piece: &[u8]) -> Result<Vec<u8>, InflateError> {
        self.state.reset(false);
        let mut out = Vec::with_capacity(FIRST_ALLOCATION.min(MAX_INFLATED + 1));
        loop {
            let read = usize::try_from(self.state.total_in()).map_err(|_| InflateError::Corrupt)?;
            let rest = piece.get(read..).ok_or(InflateError::Corrupt)?;
            let written = out.len();
            // Not `Finish`: the Rust backend takes a first `Finish` call as a promise that the
            // whole output fits, and fails for good when it does not.
            let status =
                self.state.decompress_vec(rest, &mut out, FlushDecompress::None).map_err(|_| InflateError::Corrupt)?;
            if out.len() > MAX_INFLATED {
                return Err(InflateError::TooLarge);
            }
            let consumed = usize::try_from(self.state.total_in()).map_err(|_| InflateError::Corrupt)?;
            match status {
                // Bytes after the end of the stream are not the runner's either.
                Status::StreamEnd if consumed == piece.len() => return Ok(out),
                Status::StreamEnd => return Err(InflateError::Corrupt),
                Status::Ok | Status::BufError => {
                    if out.len() == out.capacity() {
                        // Room for at most one byte past the limit: enough to see it crossed.
                        let more = out.capacity().min(MAX_INFLATED + 1 - out.len());
                        out.reserve_exact(more);
                    } else if consumed == read && out.len() == written {
                        // No progress with room to spare: the input ended inside the stream.
                        return Err(InflateError::Corrupt);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::DeflateEncoder;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect()
    }

    #[test]
    fn pieces_round_trip_one_after_another_with_one_inflater() {
        let mut inflater = Inflater::default();
        let json = br#"{"instance":{"instanceName":"named1","status":"open"}},"#.repeat(1200);
        let random = pseudo_random(PIECE_BYTES);
        for data in [json.as_slice(), b"", b"x", random.as_slice(), json.as_slice()] {
            assert_eq!(inflater.inflate(&deflate(data)).unwrap(), data);
        }
    }

    #[test]
    fn a_piece_that_inflates_past_the_limit_is_refused() {
        let mut inflater = Inflater::default();
        let exactly = vec![b'a'; MAX_INFLATED];
        assert_eq!(inflater.inflate(&deflate(&exactly)).unwrap().len(), MAX_INFLATED);
        let bomb = deflate(&vec![0; MAX_INFLATED + 1]);
        assert!(bomb.len() < 2048, "{} bytes", bomb.len());
        assert_eq!(inflater.inflate(&bomb), Err(InflateError::TooLarge));
        let huge = deflate(&vec![0; 64 * MAX_INFLATED]);
        assert_eq!(inflater.inflate(&huge), Err(InflateError::TooLarge));
        // The inflater is usable again after a refusal.
        assert_eq!(inflater.inflate(&deflate(b"after")).unwrap(), b"after");
    }

    #[test]
    fn cut_garbled_or_padded_pieces_are_corrupt() {
        let mut inflater = Inflater::default();
        let whole = deflate(&br#"{"state":"open"}"#.repeat(100));
        for cut in [0, 1, whole.len() / 2, whole.len() - 1] {
            assert_eq!(inflater.inflate(&whole[..cut]), Err(InflateError::Corrupt), "cut at {cut}");
        }
        let mut padded = whole.clone();
        padded.push(0);
        assert_eq!(inflater.inflate(&padded), Err(InflateError::Corrupt));
        // BTYPE 11 is reserved: never valid deflate.
        assert_eq!(inflater.inflate(&[0xff, 0xff, 0xff]), Err(InflateError::Corrupt));
    }
}
