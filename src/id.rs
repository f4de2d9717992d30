//! Backup IDs. An ID becomes a file name and a Swift object name, so only a
//! conservative alphabet is accepted (CONTRACT: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`);
//! anything else is a usage error before storage is touched.

use crate::error::{Error, Result};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

impl BackupId {
    pub fn parse(text: &str) -> Result<BackupId> {
        let bytes = text.as_bytes();
        let first_ok = bytes.first().is_some_and(|b| b.is_ascii_alphanumeric());
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if first_ok && rest_ok && bytes.len() <= 128 {
            Ok(BackupId(text.to_string()))
        } else {
            Err(Error::usage(format!(
                "{text:?} is not a valid backup ID: use 1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
            )))
        }
    }

    /// A new ID from the UTC time (so IDs sort by age) and a random suffix (so
    /// two hosts or two runs in one second do not collide: 32 bits, as many
    /// guests may share one Swift container).
    pub fn generate(utc_compact: &str, random: [u8; 4]) -> BackupId {
        BackupId(format!("{utc_compact}-{:08x}", u32::from_be_bytes(random)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ID of the archived chunk of window `base` holding the stream
    /// from offset `start` to `end`: `BASE.cSTART-END`, or `BASE.rSTART-END`
    /// for the first chunk an archiver session stored (what came between it
    /// and the chunk before was not being received), offsets zero-padded to
    /// 20 digits.
    pub fn chunk(base: &BackupId, start: u64, end: u64, session_start: bool) -> BackupId {
        let kind = if session_start { 'r' } else { 'c' };
        BackupId(format!("{base}.{kind}{start:020}-{end:020}"))
    }

    /// `(base, start, end, session_start)` if this ID has a chunk's shape.
    pub fn chunk_parts(&self) -> Option<(BackupId, u64, u64, bool)> {
        let (base, range) = self.0.rsplit_once('.')?;
        let session_start = match range.as_bytes().first()? {
            b'c' => false,
            b'r' => true,
            _ => return None,
        };
        let (start, end) = range[1..].split_once('-')?;
        let offset = |digits: &str| {
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u64>().ok())
                .flatten()
        };
        Some((
            BackupId::parse(base).ok()?,
            offset(start)?,
            offset(end)?,
            session_start,
        ))
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// This host's name (trimmed; empty if it cannot be read): the default
/// instance name, and part of the names of our temporary files.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_alphabet() {
        for ok in ["a", "20261125T031500Z-4f2a", "Z.9_x-y", &"x".repeat(128)] {
            assert_eq!(BackupId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_paths_and_oddities() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-flag",
            "a b",
            "ü",
            &"x".repeat(129),
        ] {
            let err = BackupId::parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_valid() {
        let id = BackupId::generate("20261125T031500Z", [0x4f, 0x2a, 0x00, 0x9c]);
        assert_eq!(id.as_str(), "20261125T031500Z-4f2a009c");
        assert!(BackupId::parse(id.as_str()).is_ok());
    }
}
