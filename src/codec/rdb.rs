//! Checks that a byte stream is a complete RDB file without holding it in
//! memory: the header (`REDIS` + 4-digit version, or Valkey 9's `VALKEY` +
//! 3-digit version), and the trailer, which is the
//! EOF opcode 0xFF followed by the little-endian CRC-64/Jones of everything
//! before the CRC itself (0 when Redis ran with `rdbchecksum no`). Restore uses
//! it so that a file Redis would refuse to load is caught before Redis is
//! stopped.

use crate::error::{Error, Result};

use crate::codec::crc64;

/// CRC-64/Jones of `data`, as Redis computes it for RDB files. Only tests
/// need it whole; `RdbCheck` streams with `crc64::update`.
#[cfg(test)]
pub fn crc64(data: &[u8]) -> u64 {
    crc64::update(0, data)
}

const HEADER_LEN: usize = 9;
/// RDB versions some Redis release writes that end in a CRC-64: 5 (the
/// first with one; Redis 2.6 writes 6) to 13 (Redis 8.6). A version outside
/// them is damage or a server we have never seen, and a backup of it could
/// not be proven restorable.
pub const KNOWN_VERSIONS: std::ops::RangeInclusive<u32> = 5..=13;
/// Versions behind Valkey's own magic: 80 (Valkey 9.0 and 9.1).
pub const KNOWN_VALKEY_VERSIONS: std::ops::RangeInclusive<u32> = 80..=80;

/// Whose format an RDB's header names. Valkey before 9 writes `REDIS`
/// headers (version 11); Valkey 9 moved to its own magic, which no Redis
/// loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    Redis,
    Valkey,
}
const CRC_LEN: usize = 8;
const EOF_OPCODE: u8 = 0xff;

/// What a successful check learned about the RDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdbInfo {
    pub magic: Magic,
    /// The format version from the header (10 for Redis 7.0, 11 for 7.2,
    /// 80 behind Valkey 9's magic).
    pub version: u32,
    /// The stored CRC-64, or `None` when it is 0 (`rdbchecksum no`).
    pub checksum: Option<u64>,
}

/// Streaming checker: feed the RDB bytes in any chunking, then `finish`.
#[derive(Debug, Default)]
pub struct RdbCheck {
    header: [u8; HEADER_LEN],
    total: u64,
    crc: u64,
    /// The last bytes seen, which are not yet known to be CRC input: the
    /// final 8 bytes of a file are the CRC itself and are excluded from it.
    tail: [u8; CRC_LEN],
    tail_len: usize,
    /// The last byte that went into the CRC: at the end it must be 0xFF.
    last_crc_byte: Option<u8>,
}

impl RdbCheck {
    pub fn new() -> RdbCheck {
        RdbCheck::default()
    }

    /// Feeds the next chunk. Never fails: the verdict, header included, comes
    /// from `finish`, so the checker can sit inside a `Read` adapter.
    pub fn update(&mut self, chunk: &[u8]) {
        if self.total < HEADER_LEN as u64 {
            let at = self.total as usize;
            let n = chunk.len().min(HEADER_LEN - at);
            self.header[at..at + n].copy_from_slice(&chunk[..n]);
        }
        self.total += chunk.len() as u64;

        if chunk.len() >= CRC_LEN {
            let (body, tail) = chunk.split_at(chunk.len() - CRC_LEN);
            let held = self.tail;
            self.crc_feed(&held[..self.tail_len]);
            self.crc_feed(body);
            self.tail.copy_from_slice(tail);
            self.tail_len = CRC_LEN;
        } else {
            let overflow = (self.tail_len + chunk.len()).saturating_sub(CRC_LEN);
            let spill = self.tail;
            self.crc_feed(&spill[..overflow]);
            self.tail.copy_within(overflow..self.tail_len, 0);
            self.tail_len -= overflow;
            self.tail[self.tail_len..self.tail_len + chunk.len()].copy_from_slice(chunk);
            self.tail_len += chunk.len();
        }
    }

    /// Checks the end of the file and returns what was learned.
    pub fn finish(self) -> Result<RdbInfo> {
        if self.total < HEADER_LEN as u64 {
            return Err(Error::integrity(format!(
                "not an RDB file: only {} bytes, too short for the REDIS header",
                self.total
            )));
        }
        let (magic, version) = parse_header(&self.header)?;
        if self.total < (HEADER_LEN + 1 + CRC_LEN) as u64 || self.last_crc_byte != Some(EOF_OPCODE)
        {
            return Err(Error::integrity(
                "not an RDB file: it does not end with the EOF opcode 0xFF and a checksum; \
                 is it truncated?",
            ));
        }
        let stored = u64::from_le_bytes(self.tail);
        if stored == 0 {
            return Ok(RdbInfo {
                magic,
                version,
                checksum: None,
            });
        }
        if stored != self.crc {
            return Err(Error::integrity(format!(
                "RDB checksum mismatch: the file says {stored:016x} but its contents give {:016x}",
                self.crc
            )));
        }
        Ok(RdbInfo {
            magic,
            version,
            checksum: Some(stored),
        })
    }

    fn crc_feed(&mut self, data: &[u8]) {
        if let Some(&last) = data.last() {
            self.crc = crc64::update(self.crc, data);
            self.last_crc_byte = Some(last);
        }
    }
}

fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(Magic, u32)> {
    let (magic, digits, known) = if header.starts_with(b"REDIS") {
        (Magic::Redis, &header[5..], &KNOWN_VERSIONS)
    } else if header.starts_with(b"VALKEY") {
        (Magic::Valkey, &header[6..], &KNOWN_VALKEY_VERSIONS)
    } else {
        return Err(not_an_rdb());
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(not_an_rdb());
    }
    let version = digits.iter().fold(0, |v, d| v * 10 + u32::from(d - b'0'));
    if !known.contains(&version) {
        let writer = match magic {
            Magic::Redis => "Redis",
            Magic::Valkey => "Valkey",
        };
        return Err(Error::integrity(format!(
            "RDB version {version} is not one any known {writer} writes ({}..={}): a damaged RDB, or a server this redis-backup does not know",
            known.start(),
            known.end()
        )));
    }
    Ok((magic, version))
}

fn not_an_rdb() -> Error {
    Error::integrity(
        "not an RDB file: it does not start with REDIS and a 4-digit version, or VALKEY and a 3-digit one",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syntactically complete RDB: header, `body`, EOF opcode, CRC.
    pub(crate) fn fake_rdb(body: &[u8]) -> Vec<u8> {
        let mut rdb = b"REDIS0011".to_vec();
        rdb.extend_from_slice(body);
        rdb.push(EOF_OPCODE);
        let crc = crc64(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        rdb
    }

    fn check_in_chunks(data: &[u8], chunk: usize) -> Result<RdbInfo> {
        let mut check = RdbCheck::new();
        for piece in data.chunks(chunk.max(1)) {
            check.update(piece);
        }
        check.finish()
    }

    #[test]
    fn versions_no_known_redis_writes_are_refused() {
        for version in [b"0000", b"0004", b"0099", b"0014", b"9999"] {
            let mut rdb = fake_rdb(b"");
            rdb[5..9].copy_from_slice(version);
            let err = check_in_chunks(&rdb, 4).unwrap_err();
            assert_eq!(err.exit_code(), 5);
            assert!(err.message().contains("not one any known Redis"), "{err}");
        }
        for version in [b"0005", b"0009", b"0012", b"0013"] {
            let mut rdb = fake_rdb(b"");
            rdb[5..9].copy_from_slice(version);
            // The CRC covers the header: make it fit again.
            let crc_at = rdb.len() - 8;
            let crc = crc64(&rdb[..crc_at]);
            rdb[crc_at..].copy_from_slice(&crc.to_le_bytes());
            assert!(check_in_chunks(&rdb, 4).is_ok());
        }
    }

    #[test]
    fn valid_rdb_passes_in_any_chunking() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 256) as u8).collect();
        let rdb = fake_rdb(&body);
        for chunk in [1, 2, 3, 7, 8, 9, 10, 17, 4096, rdb.len()] {
            let info = check_in_chunks(&rdb, chunk).unwrap();
            assert_eq!(info.version, 11);
            assert_eq!(info.checksum, Some(crc64(&rdb[..rdb.len() - 8])));
        }
        // The smallest possible file: no body at all.
        assert_eq!(check_in_chunks(&fake_rdb(b""), 1).unwrap().version, 11);
    }

    #[test]
    fn real_redis_dump_passes_if_present() {
        // A dump made by redis-server, when a test environment provides one.
        if let Ok(path) = std::env::var("REDIS_BACKUP_TEST_RDB") {
            let data = std::fs::read(path).unwrap();
            check_in_chunks(&data, 4096).unwrap();
        }
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut rdb = fake_rdb(b"data");
        rdb[0] = b'X';
        let err = check_in_chunks(&rdb, 2).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(err.message().starts_with("not an RDB file"), "{err}");
        let mut rdb = fake_rdb(b"data");
        rdb[8] = b'x';
        assert_eq!(check_in_chunks(&rdb, 3).unwrap_err().exit_code(), 5);
    }

    #[test]
    fn bad_crc_is_refused() {
        let mut rdb = fake_rdb(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        rdb[12] ^= 1;
        for chunk in [1, 5, 100] {
            let err = check_in_chunks(&rdb, chunk).unwrap_err();
            assert_eq!(err.exit_code(), 5);
            assert!(err.message().starts_with("RDB checksum mismatch"), "{err}");
        }
    }

    #[test]
    fn zero_checksum_is_accepted_and_reported() {
        let mut rdb = fake_rdb(b"some data");
        let n = rdb.len();
        rdb[n - 8..].fill(0);
        let info = check_in_chunks(&rdb, 4).unwrap();
        assert_eq!(info.checksum, None);
    }

    #[test]
    fn truncated_or_short_files_are_refused() {
        let rdb = fake_rdb(b"0123456789");
        for len in [0, 5, 9, 17, rdb.len() - 1] {
            let err = check_in_chunks(&rdb[..len], 4).unwrap_err();
            assert_eq!(err.exit_code(), 5, "len {len}");
        }
        let mut no_eof = rdb.clone();
        let n = no_eof.len();
        no_eof[n - 9] = 0xfe;
        assert!(check_in_chunks(&no_eof, 4)
            .unwrap_err()
            .message()
            .contains("EOF opcode"));
    }

    #[test]
    fn valkey_9_headers_are_read() {
        let mut rdb = b"VALKEY080".to_vec();
        rdb.push(EOF_OPCODE);
        let crc = crc64(&rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        let info = check_in_chunks(&rdb, 3).unwrap();
        assert_eq!((info.magic, info.version), (Magic::Valkey, 80));
        for bad in [&b"VALKEY079"[..], b"VALKEY81x", b"VALKEY012"] {
            let mut other = rdb.clone();
            other[..9].copy_from_slice(bad);
            assert_eq!(check_in_chunks(&other, 3).unwrap_err().exit_code(), 5);
        }
        let redis = check_in_chunks(&fake_rdb(b""), 5).unwrap();
        assert_eq!((redis.magic, redis.version), (Magic::Redis, 11));
    }
}
