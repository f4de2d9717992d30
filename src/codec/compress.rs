//! Raw deflate (RFC 1951) of one frame at a time: deflate with miniz_oxide's
//! low-level streaming API (its level 1 is the best trade of speed and size
//! on Redis data, and safe Rust, which matters as it reads what the redis
//! account wrote), inflate with libdeflate (1.8 times miniz_oxide's speed;
//! what it inflates has always passed the frame's MAC first). Each
//! frame is an independent deflate stream, so frames can be compressed and
//! inflated on different threads; the (large) compressor and decompressor
//! states are reset per frame rather than rebuilt, and output goes into a
//! caller-owned `Vec` that is reused across frames.

use libdeflater::{DecompressionError, Decompressor};
use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};

use crate::error::{Error, Result};

/// Negative window bits ask miniz_oxide for raw deflate: no zlib header or
/// Adler-32, which the frame MAC makes redundant.
const RAW_DEFLATE_WINDOW_BITS: i32 = -15;

/// Compresses frames at one level (1..=9). Level 0 never reaches this type:
/// it means "no compression" in the format, not deflate's stored blocks.
pub struct Deflater {
    state: Box<CompressorOxide>,
}

impl Deflater {
    pub fn new(level: u8) -> Deflater {
        debug_assert!((1..=9).contains(&level), "deflate level {level}");
        let flags = create_comp_flags_from_zip_params(i32::from(level), RAW_DEFLATE_WINDOW_BITS, 0);
        Deflater {
            state: Box::new(CompressorOxide::new(flags)),
        }
    }

    /// Deflates `input` into `out` (replacing its contents). Returns `false`,
    /// with `out` in an unspecified state, when the result would not be
    /// shorter than the input: the caller then stores the frame as is, and
    /// incompressible data costs one bounded attempt instead of an ever
    /// growing buffer.
    pub fn deflate(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.state.reset();
        out.clear();
        out.resize(input.len().saturating_sub(1), 0);
        let (mut read, mut written) = (0, 0);
        loop {
            let (status, r, w) = compress(
                &mut self.state,
                &input[read..],
                &mut out[written..],
                TDEFLFlush::Finish,
            );
            read += r;
            written += w;
            match status {
                TDEFLStatus::Done => {
                    out.truncate(written);
                    return Ok(true);
                }
                // Like zlib's Z_BUF_ERROR: the output is full. Our buffer is
                // as large as a useful result may be, so "need more room"
                // means "not worth compressing".
                TDEFLStatus::Okay if written == out.len() => return Ok(false),
                TDEFLStatus::Okay if r > 0 || w > 0 => {}
                status => {
                    return Err(Error::other(format!(
                        "deflate failed ({status:?}); this is a bug in redis-backup"
                    )))
                }
            }
        }
    }
}

/// Inflates frames, refusing any that would exceed a size cap.
pub struct Inflater {
    state: Decompressor,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    pub fn new() -> Inflater {
        Inflater {
            state: Decompressor::new(),
        }
    }

    /// Inflates the complete raw deflate stream `input` into `out` (replacing
    /// its contents). More than `cap` bytes of output or a stream that is not
    /// valid deflate (one cut short among them) are integrity errors: the
    /// frame cannot be what a redis-backup writer produced.
    ///
    /// Bytes after the end of the stream are not noticed: libdeflate stops
    /// at the final block. The frame's MAC has already proved that these are
    /// the bytes our writer stored, and the SHA-256 of the whole RDB proves
    /// what came out.
    pub fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, cap: usize) -> Result<()> {
        // libdeflate writes into a slice of known length. `out` comes with
        // the capacity (the ring's buffers have it), so this only zeroes
        // what lies past its length: about 1% of a decode's CPU.
        out.resize(cap, 0);
        match self.state.deflate_decompress(input, out) {
            Ok(len) => {
                out.truncate(len);
                Ok(())
            }
            // Also what a stream cut short in its last block can look like:
            // libdeflate cannot tell "more output" from "no end". Either
            // way the frame is not what a writer made (and has a valid MAC).
            Err(DecompressionError::InsufficientSpace) => Err(more_than(cap)),
            Err(DecompressionError::BadData) => Err(Error::integrity(
                "a compressed frame is not valid deflate data",
            )),
        }
    }
}

fn more_than(cap: usize) -> Error {
    Error::integrity(format!(
        "a compressed frame inflates to more than {cap} bytes"
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes deflate cannot shrink (an LCG's top byte), for tests of the stored path.
    pub(crate) fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 56) as u8
            })
            .collect()
    }

    /// Inflate speed of this Inflater against miniz_oxide's, one thread,
    /// on 1 MiB frames of a real RDB deflated at level 1 (run by hand:
    /// REDIS_BACKUP_BENCH_RDB=dump.rdb cargo test --release inflate_speed
    /// -- --ignored --nocapture). Both in one run, so the ratio means
    /// something on a noisy machine.
    #[test]
    #[ignore]
    fn inflate_speed() {
        use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
        let Ok(path) = std::env::var("REDIS_BACKUP_BENCH_RDB") else {
            return;
        };
        let rdb = std::fs::read(path).unwrap();
        let frame = 1 << 20;
        let mut deflater = Deflater::new(1);
        let frames: Vec<Vec<u8>> = rdb
            .chunks(frame)
            .filter_map(|chunk| {
                let mut out = Vec::new();
                deflater.deflate(chunk, &mut out).unwrap().then_some(out)
            })
            .collect();
        let plain: usize = frames.len() * frame;
        let mut out = Vec::with_capacity(frame + 1);
        for round in 0..3 {
            let t = std::time::Instant::now();
            let mut inflater = Inflater::new();
            for f in &frames {
                inflater.inflate(f, &mut out, frame).unwrap();
            }
            let ours = plain as f64 / 1e6 / t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let mut state = Box::<DecompressorOxide>::default();
            let mut buf = vec![0u8; frame];
            for f in &frames {
                state.init();
                let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
                let (status, _, _) = decompress(&mut state, f, &mut buf, 0, flags);
                assert_eq!(status, miniz_oxide::inflate::TINFLStatus::Done);
            }
            let miniz = plain as f64 / 1e6 / t.elapsed().as_secs_f64();
            println!(
                "round {round}: {} frames; Inflater {ours:.0} MB/s, miniz_oxide {miniz:.0} MB/s ({:.2}x)",
                frames.len(),
                ours / miniz
            );
        }
    }

    fn mixed(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                if (i / 4096) % 2 == 0 {
                    (i % 251) as u8
                } else {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_at_every_level_reusing_state() {
        let mut out = Vec::new();
        let mut back = Vec::new();
        let mut inflater = Inflater::new();
        for level in 1..=9 {
            let mut deflater = Deflater::new(level);
            for len in [1, 2, 100, 65_536, 200_000] {
                let input = mixed(len);
                if deflater.deflate(&input, &mut out).unwrap() {
                    assert!(out.len() < input.len());
                    inflater.inflate(&out, &mut back, len).unwrap();
                    assert_eq!(back, input, "level {level} len {len}");
                }
            }
        }
    }

    #[test]
    fn incompressible_input_is_reported_not_grown() {
        let noise = noise(100_000);
        let mut out = Vec::new();
        assert!(!Deflater::new(1).deflate(&noise, &mut out).unwrap());
        assert!(out.len() < noise.len());
        // And it still works for the next, compressible frame.
        let zeros = vec![0u8; 100_000];
        let mut d = Deflater::new(1);
        assert!(!d.deflate(&noise, &mut out).unwrap());
        assert!(d.deflate(&zeros, &mut out).unwrap());
        let mut back = Vec::new();
        Inflater::new()
            .inflate(&out, &mut back, zeros.len())
            .unwrap();
        assert_eq!(back, zeros);
    }

    #[test]
    fn inflate_enforces_the_cap_exactly() {
        let input = vec![7u8; 10_000];
        let mut packed = Vec::new();
        assert!(Deflater::new(6).deflate(&input, &mut packed).unwrap());
        let mut out = Vec::new();
        let mut inflater = Inflater::new();
        inflater.inflate(&packed, &mut out, 10_000).unwrap();
        assert_eq!(out, input);
        let err = inflater.inflate(&packed, &mut out, 9_999).unwrap_err();
        assert_eq!(err.exit_code(), 5, "{err}");
    }

    #[test]
    fn damaged_streams_are_integrity_errors() {
        let input = mixed(50_000);
        let mut packed = Vec::new();
        assert!(Deflater::new(6).deflate(&input, &mut packed).unwrap());
        let mut out = Vec::new();
        let mut inflater = Inflater::new();
        let cut = &packed[..packed.len() / 2];
        assert_eq!(
            inflater
                .inflate(cut, &mut out, 50_000)
                .unwrap_err()
                .exit_code(),
            5
        );
        // Bytes after the end are not seen (the MAC has vouched for them),
        // and change nothing in what comes out.
        let mut extra = packed.clone();
        extra.extend_from_slice(b"junk");
        inflater.inflate(&extra, &mut out, 50_000).unwrap();
        assert_eq!(out, input);
        assert_eq!(
            inflater
                .inflate(&[0xff; 64], &mut out, 50_000)
                .unwrap_err()
                .exit_code(),
            5
        );
        inflater.inflate(&packed, &mut out, 50_000).unwrap();
        assert_eq!(out, input);
    }
}
