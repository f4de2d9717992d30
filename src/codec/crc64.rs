//! CRC-64/Jones, the checksum Redis puts at the end of an RDB file. Every
//! byte of every backup, verify, export and restore goes through it, so it
//! has two implementations giving the same result: slice-by-8 tables
//! everywhere, and on x86_64 CPUs with carry-less multiplication (PCLMULQDQ)
//! a folding loop several times faster (Intel's "Fast CRC Computation for
//! Generic Polynomials Using PCLMULQDQ", 2009). Tests hold both to a bitwise
//! reference.

/// The polynomial, 0xad93d23594c935a9 (+ x^64). The CRC is reflected (least
/// significant bit first): it shifts right and needs the bit-reversed form.
const POLY_NORMAL: u64 = 0xad93_d235_94c9_35a9;
const POLY: u64 = POLY_NORMAL.reverse_bits();

use std::sync::OnceLock;

/// Continues a CRC-64/Jones over `data` (start with 0).
pub fn update(crc: u64, data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    if data.len() >= clmul::MIN_LEN && std::arch::is_x86_feature_detected!("pclmulqdq") {
        // SAFETY: the CPU has PCLMULQDQ (checked just above), and SSE2 is
        // part of x86_64.
        return unsafe { clmul::update(crc, data) };
    }
    update_tables(crc, data)
}

/// Slice-by-8 tables: `tables()[0]` is the classic byte-at-a-time table and
/// `tables()[k]` advances a byte through k further zero bytes, so eight input
/// bytes cost eight lookups and no data-dependent loop. Built on first use
/// (a few microseconds) rather than stored: 16 KB of the binary's budget.
fn tables() -> &'static [[u64; 256]; 8] {
    // Boxed: a OnceLock of the array itself is 16 KB of .data. black_box:
    // left to itself the compiler folds the loops into that constant again.
    static TABLES: OnceLock<Box<[[u64; 256]; 8]>> = OnceLock::new();
    TABLES.get_or_init(|| Box::new(build_tables(std::hint::black_box(POLY))))
}

fn build_tables(poly: u64) -> [[u64; 256]; 8] {
    let mut tables = [[0u64; 256]; 8];
    let mut n = 0;
    while n < 256 {
        let mut crc = n as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ poly
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][n] = crc;
        n += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut n = 0;
        while n < 256 {
            let prev = tables[k - 1][n];
            tables[k][n] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            n += 1;
        }
        k += 1;
    }
    tables
}

fn update_tables(mut crc: u64, data: &[u8]) -> u64 {
    let tables = tables();
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        crc ^= u64::from_le_bytes(word.try_into().expect("chunks of 8"));
        crc = tables[7][(crc & 0xff) as usize]
            ^ tables[6][((crc >> 8) & 0xff) as usize]
            ^ tables[5][((crc >> 16) & 0xff) as usize]
            ^ tables[4][((crc >> 24) & 0xff) as usize]
            ^ tables[3][((crc >> 32) & 0xff) as usize]
            ^ tables[2][((crc >> 40) & 0xff) as usize]
            ^ tables[1][((crc >> 48) & 0xff) as usize]
            ^ tables[0][(crc >> 56) as usize];
    }
    for &byte in words.remainder() {
        crc = tables[0][((crc ^ u64::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The folding loop. In the reflected bit order a 16-byte block, read little
/// endian, is a polynomial of degree < 128 whose first byte holds the highest
/// terms; the CRC of a message is message(x) * x^64 mod P. Four 128-bit lanes
/// each take every fourth block: a lane is carried 512 bits forward by
/// multiplying its two 64-bit halves by x^(512+64) and x^512 mod P and adding
/// the next block. At the end the lanes are carried onto the last one and the
/// tables finish: the CRC of the folded 16 bytes is the CRC of all before.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod clmul {
    use super::{update_tables, POLY_NORMAL};
    use std::arch::x86_64::{
        __m128i, _mm_clmulepi64_si128, _mm_loadu_si128, _mm_set_epi64x, _mm_storeu_si128,
        _mm_xor_si128,
    };

    const LANES: usize = 4;
    const BLOCK: usize = 16;
    /// Shorter inputs are quicker through the tables.
    pub const MIN_LEN: usize = 2 * LANES * BLOCK;

    /// x^n mod P in the reflected order. A carry-less product of two reflected
    /// 64-bit values comes out one degree low, hence the `- 1` of the callers.
    const fn x_pow_mod(n: u32) -> u64 {
        let mut r: u64 = 1;
        let mut i = 0;
        while i < n {
            let carry = r >> 63;
            r <<= 1;
            if carry == 1 {
                r ^= POLY_NORMAL;
            }
            i += 1;
        }
        r.reverse_bits()
    }

    /// Multipliers that carry a lane `bits` forward: for its first (higher)
    /// and second (lower) 64-bit half.
    const fn carry(bits: u32) -> (i64, i64) {
        (x_pow_mod(bits + 64 - 1) as i64, x_pow_mod(bits - 1) as i64)
    }

    const BY_4: (i64, i64) = carry(512);
    const BY_3: (i64, i64) = carry(384);
    const BY_2: (i64, i64) = carry(256);
    const BY_1: (i64, i64) = carry(128);

    /// `lane` carried forward by `k`, plus `next`.
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn fold(lane: __m128i, k: __m128i, next: __m128i) -> __m128i {
        // 0x00: first halves of both (lane's higher terms times k.0);
        // 0x11: second halves (lane's lower terms times k.1).
        let high = _mm_clmulepi64_si128::<0x00>(lane, k);
        let low = _mm_clmulepi64_si128::<0x11>(lane, k);
        _mm_xor_si128(_mm_xor_si128(high, low), next)
    }

    #[target_feature(enable = "pclmulqdq,sse2")]
    fn multiplier((first, second): (i64, i64)) -> __m128i {
        _mm_set_epi64x(second, first)
    }

    /// # Safety
    /// The CPU must support PCLMULQDQ; `data` must hold at least `MIN_LEN`
    /// bytes.
    #[target_feature(enable = "pclmulqdq,sse2")]
    pub unsafe fn update(crc: u64, data: &[u8]) -> u64 {
        debug_assert!(data.len() >= MIN_LEN);
        let load = |at: usize| -> __m128i {
            let block: &[u8; BLOCK] = data[at..at + BLOCK].try_into().expect("16 bytes");
            // SAFETY: `block` is 16 readable bytes; loadu allows any alignment.
            unsafe { _mm_loadu_si128(block.as_ptr().cast()) }
        };
        // The CRC so far is added to the first 8 bytes, as the tables do.
        let mut lanes = [
            _mm_xor_si128(load(0), _mm_set_epi64x(0, crc as i64)),
            load(BLOCK),
            load(2 * BLOCK),
            load(3 * BLOCK),
        ];
        let stride = LANES * BLOCK;
        let whole = data.len() / stride * stride;
        let by_4 = multiplier(BY_4);
        let mut at = stride;
        while at < whole {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = fold(*lane, by_4, load(at + i * BLOCK));
            }
            at += stride;
        }
        let last = fold(lanes[0], multiplier(BY_3), lanes[3]);
        let last = fold(lanes[1], multiplier(BY_2), last);
        let last = fold(lanes[2], multiplier(BY_1), last);
        let mut folded = [0u8; BLOCK];
        // SAFETY: `folded` is 16 writable bytes; storeu allows any alignment.
        unsafe { _mm_storeu_si128(folded.as_mut_ptr().cast(), last) };
        update_tables(update_tables(0, &folded), &data[whole..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::proptest_config as config;
    use proptest::prelude::*;

    fn bitwise(mut crc: u64, data: &[u8]) -> u64 {
        for &b in data {
            crc ^= u64::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| ((i * 37 + 11) ^ (i >> 7)) as u8)
            .collect()
    }

    #[test]
    fn check_value() {
        assert_eq!(update(0, b"123456789"), 0xe9c6d914c4b8d9ca);
        assert_eq!(update(0, b""), 0);
    }

    #[test]
    fn tables_and_folding_match_bitwise_at_every_length_to_600() {
        let data = sample(600);
        for len in 0..=data.len() {
            let expected = bitwise(0, &data[..len]);
            assert_eq!(
                update_tables(0, &data[..len]),
                expected,
                "tables, len {len}"
            );
            assert_eq!(update(0, &data[..len]), expected, "update, len {len}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[test]
    fn the_folding_loop_is_really_used_and_right_here() {
        // Every x86_64 CPU of the last decade has PCLMULQDQ; on one without
        // it the folding loop cannot be tested here, and that must be said
        // by choice (REDIS_BACKUP_TEST_NO_PCLMULQDQ=1), not pass unnoticed.
        if !std::arch::is_x86_feature_detected!("pclmulqdq") {
            assert!(
                std::env::var_os("REDIS_BACKUP_TEST_NO_PCLMULQDQ").is_some(),
                "no PCLMULQDQ on this CPU: the folding loop is not tested"
            );
            return;
        }
        let data = sample(1 << 20);
        // SAFETY: PCLMULQDQ checked above; 1 MiB is more than MIN_LEN.
        let folded = unsafe { clmul::update(0x1234_5678_9abc_def0, &data) };
        assert_eq!(folded, bitwise(0x1234_5678_9abc_def0, &data));
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn any_bytes_any_split_any_start(
            data in prop::collection::vec(any::<u8>(), 0..2000),
            split in any::<prop::sample::Index>(),
            start in any::<u64>(),
        ) {
            let at = split.index(data.len() + 1);
            let whole = bitwise(start, &data);
            prop_assert_eq!(update(start, &data), whole);
            prop_assert_eq!(update(update(start, &data[..at]), &data[at..]), whole);
        }
    }
}
