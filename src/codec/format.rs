//! The byte layout of a backup and the only code that knows it: the
//! authenticated header (in format 2 with the backup's identity), the
//! sequence of encrypted and MACed frames, and the trailer carried by the
//! final frame. vendor-notes/FORMAT.md describes the same layout for people
//! writing a decoder elsewhere; keep them in step. New backups are format 2;
//! format 1 is still read.
//!
//! Reading is ordered so that nothing unauthenticated is acted on: the key id
//! is compared before the header tag, the header tag before any header field
//! is trusted (the one exception: a format-2 header's backup ID, which its
//! keys are derived from, is located under tight caps first), frame lengths
//! are capped before a byte is allocated, and a frame's tag is checked before
//! it is decrypted or inflated.

use std::io::{ErrorKind, Read};
use std::ops::Range;

use crate::codec::crypto::{hex, BackupKeys, MasterKey, TAG_LEN};
use crate::error::{Error, Result};
use crate::id::BackupId;

pub const MAGIC: &[u8; 8] = b"REDISBAK";
/// The version every new backup is written in.
pub const VERSION: u16 = 2;
/// The versions this build reads.
pub const READS: [u16; 2] = [1, 2];
/// Bytes of the fixed header, before the identity (format 2) or the tag.
pub const HEADER_LEN: usize = 60;
/// The most bytes a format-2 identity may take, so a damaged length cannot
/// make a reader allocate much.
pub const MAX_IDENTITY_LEN: usize = 4096;
/// The most bytes one identity field may take.
pub const MAX_FIELD_LEN: usize = 1024;
/// Fields of a format-2 identity, in their order.
pub const IDENTITY_FIELDS: usize = 6;
pub const MIN_FRAME_SIZE: usize = 64 * 1024;
pub const MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;
pub const DEFAULT_FRAME_SIZE: usize = 1024 * 1024;
/// flags (1) + ciphertext length (4).
pub const FRAME_PREFIX_LEN: usize = 5;
/// Slack allowed above `frame_size` for a frame's ciphertext, so a writer may
/// keep a deflated frame that came out a little larger (our writers never do).
pub const FRAME_SLACK: usize = 64;
/// Plaintext of the final frame: raw_size u64 LE + raw_sha256.
pub const TRAILER_LEN: usize = 8 + 32;
/// The highest deflate level.
pub const MAX_LEVEL: u8 = 9;

const FLAG_FINAL: u8 = 0b01;
const FLAG_STORED: u8 = 0b10;

/// How frame payloads are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Deflate = 1,
}

/// The authenticated header of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u16,
    pub compression: Compression,
    /// Deflate level used by the writer, 0..=9.
    pub level: u8,
    /// Maximum plaintext bytes per frame.
    pub frame_size: u32,
    pub salt: [u8; 32],
    pub key_id: [u8; 8],
    /// Which backup this is; format 2 only.
    pub identity: Option<Identity>,
}

/// Who, what and when a format-2 backup is, authenticated with its header:
/// an object copied under another ID, or relabelled as another instance's,
/// says what it really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub backup_id: BackupId,
    pub instance: String,
    /// RFC 3339 UTC to the microsecond.
    pub created_at: String,
    /// "redis" or "valkey".
    pub server_name: String,
    pub server_version: String,
    /// How the RDB was taken: "snapshot" or "replication".
    pub source: String,
}

impl Identity {
    fn fields(&self) -> [&str; IDENTITY_FIELDS] {
        [
            self.backup_id.as_str(),
            &self.instance,
            &self.created_at,
            &self.server_name,
            &self.server_version,
            &self.source,
        ]
    }

    /// Each field as a u16 LE length and its UTF-8 bytes.
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for field in self.fields() {
            if field.len() > MAX_FIELD_LEN {
                return Err(Error::usage(format!(
                    "{field:?} is longer than the {MAX_FIELD_LEN} bytes a backup's identity may hold"
                )));
            }
            out.extend_from_slice(&(field.len() as u16).to_le_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        Ok(out)
    }

    /// The backup ID, read before the tag can be checked (the keys are
    /// derived from it): only its length is trusted, and only up to the cap.
    fn backup_id_of(bytes: &[u8]) -> Option<&[u8]> {
        let len = u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
        (len <= MAX_FIELD_LEN).then_some(())?;
        bytes.get(2..2 + len)
    }

    /// An authenticated identity; anything no writer of ours produces is
    /// refused all the same.
    fn parse(bytes: &[u8]) -> Result<Identity> {
        let invalid = |what: &str| {
            Error::integrity(format!(
                "the header's identity is invalid ({what}): written by an unknown redis-backup version"
            ))
        };
        let mut rest = bytes;
        let mut fields = Vec::with_capacity(IDENTITY_FIELDS);
        for _ in 0..IDENTITY_FIELDS {
            let len = match rest {
                [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
                _ => return Err(invalid("it ends early")),
            };
            let field = rest
                .get(2..2 + len)
                .filter(|_| len <= MAX_FIELD_LEN)
                .ok_or_else(|| invalid("a field is too long"))?;
            let field = std::str::from_utf8(field).map_err(|_| invalid("not UTF-8"))?;
            fields.push(field.to_string());
            rest = &rest[2 + len..];
        }
        if !rest.is_empty() {
            return Err(invalid("bytes after the last field"));
        }
        let [backup_id, instance, created_at, server_name, server_version, source] =
            <[String; IDENTITY_FIELDS]>::try_from(fields).expect("six fields");
        let backup_id = BackupId::parse(&backup_id).map_err(|_| invalid("a bad backup ID"))?;
        if crate::units::parse_rfc3339_micros(&created_at).is_none() {
            return Err(invalid("a bad created_at"));
        }
        Ok(Identity {
            backup_id,
            instance,
            created_at,
            server_name,
            server_version,
            source,
        })
    }
}

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Part of the RDB. `stored` means deflate was skipped for this frame
    /// because it did not shrink it (only with `Compression::Deflate`).
    Data { stored: bool },
    /// The trailer; always last.
    Final,
}

impl FrameKind {
    fn flags(self) -> u8 {
        match self {
            FrameKind::Data { stored: false } => 0,
            FrameKind::Data { stored: true } => FLAG_STORED,
            FrameKind::Final => FLAG_FINAL,
        }
    }
}

/// The content of the final frame: what the reader must have seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub raw_size: u64,
    pub raw_sha256: [u8; 32],
}

impl Trailer {
    pub fn to_bytes(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..8].copy_from_slice(&self.raw_size.to_le_bytes());
        out[8..].copy_from_slice(&self.raw_sha256);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Trailer> {
        if bytes.len() != TRAILER_LEN {
            return Err(Error::integrity(format!(
                "the final frame holds {} bytes instead of {TRAILER_LEN}",
                bytes.len()
            )));
        }
        let mut raw_sha256 = [0u8; 32];
        raw_sha256.copy_from_slice(&bytes[8..]);
        Ok(Trailer {
            raw_size: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            raw_sha256,
        })
    }
}

/// Whether `frame_size` is one a reader accepts.
pub fn frame_size_ok(frame_size: usize) -> bool {
    (MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&frame_size)
}

/// The largest a whole frame (prefix, ciphertext, tag) can be on the wire:
/// the buffer size that holds any frame of a backup with this frame size.
pub fn max_frame_bytes(frame_size: usize) -> usize {
    FRAME_PREFIX_LEN + frame_size + FRAME_SLACK + TAG_LEN
}

impl Header {
    /// The keys of this backup: format 2's are bound to its ID as well as
    /// its salt.
    pub fn keys(&self, master: &MasterKey) -> BackupKeys {
        match &self.identity {
            Some(identity) => {
                BackupKeys::derive_v2(master, &self.salt, identity.backup_id.as_str().as_bytes())
            }
            None => BackupKeys::derive_v1(master, &self.salt),
        }
    }

    /// The header (with the identity, in format 2) followed by its tag,
    /// ready to be written.
    pub fn to_bytes(&self, keys: &BackupKeys) -> Result<Vec<u8>> {
        let identity = match &self.identity {
            Some(identity) => identity.to_bytes()?,
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + identity.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(self.compression as u8);
        out.push(self.level);
        out.extend_from_slice(&self.frame_size.to_le_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.key_id);
        // Format 1: four reserved zero bytes. Format 2: the identity's
        // length, then two reserved zero bytes.
        out.extend_from_slice(&(identity.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&identity);
        let tag = keys.tag(&[&out]);
        out.extend_from_slice(&tag);
        Ok(out)
    }
}

/// Reads and authenticates the header, returning it with the backup's keys.
pub fn read_header(input: &mut dyn Read, master: &MasterKey) -> Result<(Header, BackupKeys)> {
    let mut fixed = [0u8; HEADER_LEN];
    read_exact(input, &mut fixed)?;
    if &fixed[0..8] != MAGIC {
        return Err(Error::integrity(
            "not a redis-backup backup: it does not start with REDISBAK",
        ));
    }
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if !READS.contains(&version) {
        return Err(Error::integrity(format!(
            "backup format version {version} is not supported (this redis-backup reads versions 1 and 2)"
        )));
    }
    // The key id comes before the tag: with the wrong key every tag fails, and
    // "wrong key" is the message the operator can act on.
    let ours = master.key_id_bytes();
    if fixed[48..56] != ours {
        return Err(Error::integrity(format!(
            "backup was encrypted with key {}, but the key file has key {}: wrong key",
            hex(&fixed[48..56]),
            hex(&ours)
        )));
    }
    let identity_len = match version {
        1 => 0,
        _ => u16::from_le_bytes([fixed[56], fixed[57]]) as usize,
    };
    if identity_len > MAX_IDENTITY_LEN {
        return Err(Error::integrity(format!(
            "the header claims {identity_len} bytes of identity, more than {MAX_IDENTITY_LEN}: tampered or corrupt backup"
        )));
    }
    let mut rest = vec![0u8; identity_len + TAG_LEN];
    read_exact(input, &mut rest)?;
    let (identity_bytes, tag) = rest.split_at(identity_len);
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&fixed[16..48]);
    let keys = match version {
        1 => BackupKeys::derive_v1(master, &salt),
        _ => {
            let Some(id) = Identity::backup_id_of(identity_bytes) else {
                return Err(Error::integrity(
                    "header failed authentication: tampered backup",
                ));
            };
            BackupKeys::derive_v2(master, &salt, id)
        }
    };
    if !keys.verify(&[&fixed, identity_bytes], tag) {
        return Err(Error::integrity(
            "header failed authentication: tampered backup",
        ));
    }
    let compression = match fixed[10] {
        0 => Compression::None,
        1 => Compression::Deflate,
        other => {
            return Err(Error::integrity(format!(
                "unknown compression {other} in the header"
            )))
        }
    };
    let level = fixed[11];
    if level > MAX_LEVEL {
        return Err(Error::integrity(format!(
            "compression level {level} in the header is outside 0..={MAX_LEVEL}"
        )));
    }
    let frame_size = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
    if !frame_size_ok(frame_size as usize) {
        return Err(Error::integrity(format!(
            "frame size {frame_size} in the header is outside {MIN_FRAME_SIZE}..={MAX_FRAME_SIZE}"
        )));
    }
    // Unused bytes must be zero, which keeps them available to a later
    // version: four in format 1, two after the identity length in format 2.
    let reserved = match version {
        1 => &fixed[56..60],
        _ => &fixed[58..60],
    };
    if reserved.iter().any(|&b| b != 0) {
        return Err(Error::integrity(
            "reserved header bytes are not zero: written by an unknown redis-backup version",
        ));
    }
    let identity = match version {
        1 => None,
        _ => Some(Identity::parse(identity_bytes)?),
    };
    let header = Header {
        version,
        compression,
        level,
        frame_size,
        salt,
        key_id: ours,
        identity,
    };
    Ok((header, keys))
}

/// Builds frame `index` around `payload` into `out` (replacing its contents):
/// prefix, ciphertext, tag.
pub fn seal_frame(
    keys: &BackupKeys,
    index: u64,
    kind: FrameKind,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let len = u32::try_from(payload.len()).expect("frame payloads are at most 16 MiB + 64");
    out.clear();
    out.push(kind.flags());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    let body = &mut out[FRAME_PREFIX_LEN..];
    keys.apply_keystream(&frame_iv(index), body);
    let tag = keys.tag(&[&index.to_le_bytes(), &out[..]]);
    out.extend_from_slice(&tag);
}

/// Reads the next whole frame into `buf` (replacing its contents), checking
/// the flags and capping the length first. The frame is not authenticated
/// yet: that is `open_frame`'s job, which may run on another thread.
pub fn read_frame(input: &mut dyn Read, header: &Header, buf: &mut Vec<u8>) -> Result<FrameKind> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    read_exact(input, &mut prefix)?;
    let kind = parse_flags(header, prefix[0])?;
    let len = u32::from_le_bytes(prefix[1..].try_into().expect("4 bytes")) as usize;
    let max = match kind {
        FrameKind::Final => TRAILER_LEN,
        FrameKind::Data { .. } => header.frame_size as usize + FRAME_SLACK,
    };
    if len > max || (kind == FrameKind::Final && len != TRAILER_LEN) || len == 0 {
        return Err(Error::integrity(format!(
            "a frame claims {len} bytes, which this backup's frames cannot hold \
             (at most {max}): tampered or corrupt backup"
        )));
    }
    buf.clear();
    buf.extend_from_slice(&prefix);
    buf.resize(FRAME_PREFIX_LEN + len + TAG_LEN, 0);
    read_exact(input, &mut buf[FRAME_PREFIX_LEN..])?;
    Ok(kind)
}

/// Authenticates frame `index` (as read by `read_frame`) and decrypts it in
/// place. Returns its kind and where its payload now lies in `buf`.
pub fn open_frame(
    keys: &BackupKeys,
    index: u64,
    buf: &mut [u8],
) -> Result<(FrameKind, Range<usize>)> {
    let (signed, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
    if !keys.verify(&[&index.to_le_bytes(), signed], tag) {
        return Err(Error::integrity(format!(
            "frame {index} failed authentication: tampered, reordered or truncated backup"
        )));
    }
    let kind = if signed[0] & FLAG_FINAL != 0 {
        FrameKind::Final
    } else {
        FrameKind::Data {
            stored: signed[0] & FLAG_STORED != 0,
        }
    };
    keys.apply_keystream(&frame_iv(index), &mut signed[FRAME_PREFIX_LEN..]);
    Ok((kind, FRAME_PREFIX_LEN..signed.len()))
}

/// Succeeds only if `input` has nothing left: a backup ends with its final
/// frame, and bytes after it mean the object is not what was written.
pub fn expect_end(input: &mut dyn Read) -> Result<()> {
    let mut probe = [0u8; 1];
    loop {
        match input.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(Error::integrity(
                    "unexpected bytes after the final frame: tampered or corrupt backup",
                ))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(read_backup_error(e)),
        }
    }
}

/// Frame `index` encrypts with counter blocks `index << 64`, `index << 64 + 1`,
/// ...; a frame of at most 16 MiB + 64 bytes uses about 2^20 blocks, far from
/// reaching the next frame's range.
fn frame_iv(index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&index.to_be_bytes());
    iv
}

fn parse_flags(header: &Header, flags: u8) -> Result<FrameKind> {
    let kind = match flags {
        0 => Some(FrameKind::Data { stored: false }),
        FLAG_STORED if header.compression == Compression::Deflate => {
            Some(FrameKind::Data { stored: true })
        }
        FLAG_FINAL => Some(FrameKind::Final),
        _ => None,
    };
    kind.ok_or_else(|| {
        Error::integrity(format!(
            "a frame has invalid flags {flags:#04x}: tampered or corrupt backup"
        ))
    })
}

fn read_exact(input: &mut dyn Read, buf: &mut [u8]) -> Result<()> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => Error::integrity("backup is truncated"),
        _ => read_backup_error(e),
    })
}

/// The reader knows what its bytes are (storage wraps its objects in
/// `storage::StorageIo`); an untyped failure is only "reading".
fn read_backup_error(e: std::io::Error) -> Error {
    Error::from_io(e).unwrap_or_else(|e| Error::other(format!("reading the backup: {e}")))
}

#[cfg(test)]
impl Identity {
    /// The identity unit tests give their backups (the one FORMAT.md's
    /// worked sizes use).
    pub fn for_tests() -> Identity {
        Identity {
            backup_id: BackupId::parse("20261130T080000Z-0123abcd").unwrap(),
            instance: "cache-1".into(),
            created_at: "2026-11-30T08:00:00.123456Z".into(),
            server_name: "redis".into(),
            server_version: "7.0.15".into(),
            source: "snapshot".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::for_tests()
    }

    fn setup() -> (MasterKey, Header, BackupKeys) {
        let master = MasterKey::from_bytes([9; 32]);
        let header = Header {
            version: 2,
            compression: Compression::Deflate,
            level: 6,
            frame_size: DEFAULT_FRAME_SIZE as u32,
            salt: [3; 32],
            key_id: master.key_id_bytes(),
            identity: Some(identity()),
        };
        let keys = header.keys(&master);
        (master, header, keys)
    }

    fn setup_v1() -> (MasterKey, Header, BackupKeys) {
        let (master, header, _) = setup();
        let header = Header {
            version: 1,
            identity: None,
            ..header
        };
        let keys = header.keys(&master);
        (master, header, keys)
    }

    /// `bytes` (a whole header) with its tag made again by `keys`.
    fn retag(bytes: &mut Vec<u8>, keys: &BackupKeys) {
        bytes.truncate(bytes.len() - TAG_LEN);
        let tag = keys.tag(&[bytes.as_slice()]);
        bytes.extend_from_slice(&tag);
    }

    #[test]
    fn header_layout_is_as_documented() {
        let (_, header, keys) = setup();
        let bytes = header.to_bytes(&keys).unwrap();
        assert_eq!(&bytes[..8], b"REDISBAK");
        assert_eq!(&bytes[8..10], &[2, 0]);
        assert_eq!(bytes[10], 1);
        assert_eq!(bytes[11], 6);
        assert_eq!(&bytes[12..16], &[0, 0, 0x10, 0]);
        assert_eq!(&bytes[16..48], &[3; 32]);
        assert_eq!(&bytes[48..56], &header.key_id);
        let identity_len = u16::from_le_bytes([bytes[56], bytes[57]]) as usize;
        assert_eq!(&bytes[58..60], &[0; 2], "reserved bytes are zero");
        let identity = &bytes[60..60 + identity_len];
        let mut expected = Vec::new();
        for field in [
            "20261130T080000Z-0123abcd",
            "cache-1",
            "2026-11-30T08:00:00.123456Z",
            "redis",
            "7.0.15",
            "snapshot",
        ] {
            expected.extend_from_slice(&(field.len() as u16).to_le_bytes());
            expected.extend_from_slice(field.as_bytes());
        }
        assert_eq!(identity, expected);
        assert_eq!(bytes.len(), 60 + identity_len + 32);
        let tag = keys.tag(&[&bytes[..60 + identity_len]]);
        assert_eq!(&bytes[60 + identity_len..], &tag);
    }

    #[test]
    fn format_1_header_layout_is_as_documented() {
        let (_, header, keys) = setup_v1();
        let bytes = header.to_bytes(&keys).unwrap();
        assert_eq!(&bytes[8..10], &[1, 0]);
        assert_eq!(&bytes[56..60], &[0; 4], "reserved bytes are zero");
        assert_eq!(bytes.len(), 92);
    }

    #[test]
    fn header_round_trips() {
        for (master, header, keys) in [setup(), setup_v1()] {
            let bytes = header.to_bytes(&keys).unwrap();
            let (back, _) = read_header(&mut &bytes[..], &master).unwrap();
            assert_eq!(back, header);
        }
    }

    #[test]
    fn every_header_bit_flip_is_an_integrity_error() {
        for (master, header, keys) in [setup(), setup_v1()] {
            let bytes = header.to_bytes(&keys).unwrap();
            for bit in 0..bytes.len() * 8 {
                let mut bad = bytes.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                let err = read_header(&mut &bad[..], &master).unwrap_err();
                assert_eq!(err.exit_code(), 5, "bit {bit}: {err}");
            }
        }
    }

    #[test]
    fn an_identity_cannot_be_relabelled() {
        let (master, header, keys) = setup();
        // Another ID under the old keys: the tag cannot be made to fit,
        // because the keys are the ID's own.
        let relabelled = Header {
            identity: Some(Identity {
                backup_id: BackupId::parse("20261130T080000Z-0123abce").unwrap(),
                ..identity()
            }),
            ..header.clone()
        };
        let bytes = relabelled.to_bytes(&keys).unwrap();
        let err = read_header(&mut &bytes[..], &master).unwrap_err();
        assert!(err.message().contains("failed authentication"), "{err}");
        // Any other field, likewise.
        let renamed = Header {
            identity: Some(Identity {
                instance: "cache-2".into(),
                ..identity()
            }),
            ..header.clone()
        };
        let mut bytes = renamed.to_bytes(&keys).unwrap();
        let at = bytes.len() - TAG_LEN;
        bytes[at..].copy_from_slice(&header.to_bytes(&keys).unwrap()[at..]);
        assert!(read_header(&mut &bytes[..], &master).is_err());
    }

    #[test]
    fn identity_lengths_are_capped_before_reading() {
        let (master, header, keys) = setup();
        let mut bytes = header.to_bytes(&keys).unwrap();
        bytes[56..58].copy_from_slice(&(MAX_IDENTITY_LEN as u16 + 1).to_le_bytes());
        let err = read_header(&mut &bytes[..60], &master).unwrap_err();
        assert!(err.message().contains("bytes of identity"), "{err}");
        // A backup ID length past the cap: no keys can be derived.
        let mut bytes = header.to_bytes(&keys).unwrap();
        bytes[60..62].copy_from_slice(&u16::MAX.to_le_bytes());
        let err = read_header(&mut &bytes[..], &master).unwrap_err();
        assert_eq!(err.exit_code(), 5, "{err}");
    }

    #[test]
    fn authentic_but_malformed_identities_are_refused() {
        let (master, header, keys) = setup();
        let cases: Vec<(Identity, &str)> = vec![
            (
                Identity {
                    created_at: "yesterday".into(),
                    ..identity()
                },
                "created_at",
            ),
            (
                Identity {
                    instance: "x".repeat(MAX_FIELD_LEN + 1),
                    ..identity()
                },
                "longer than",
            ),
        ];
        for (identity, what) in cases {
            let bad = Header {
                identity: Some(identity),
                ..header.clone()
            };
            let err = match bad.to_bytes(&keys) {
                Err(e) => e,
                Ok(bytes) => read_header(&mut &bytes[..], &master).unwrap_err(),
            };
            assert!(err.message().contains(what), "{what}: {err}");
        }
        // Bytes after the last field, under a fitting tag.
        let mut bytes = header.to_bytes(&keys).unwrap();
        let identity_len = u16::from_le_bytes([bytes[56], bytes[57]]);
        bytes[56..58].copy_from_slice(&(identity_len + 1).to_le_bytes());
        bytes.insert(60 + identity_len as usize, b'x');
        retag(&mut bytes, &keys);
        let err = read_header(&mut &bytes[..], &master).unwrap_err();
        assert!(err.message().contains("after the last field"), "{err}");
    }

    #[test]
    fn wrong_key_is_named_before_the_tag_is_checked() {
        let (_, header, keys) = setup();
        let bytes = header.to_bytes(&keys).unwrap();
        let other = MasterKey::from_bytes([10; 32]);
        let err = read_header(&mut &bytes[..], &other).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert_eq!(
            err.message(),
            format!(
                "backup was encrypted with key {}, but the key file has key {}: wrong key",
                hex(&header.key_id),
                other.key_id()
            )
        );
    }

    #[test]
    fn authenticated_but_invalid_header_fields_are_refused() {
        for (master, header, keys) in [setup(), setup_v1()] {
            for frame_size in [
                0,
                1024,
                MIN_FRAME_SIZE as u32 - 1,
                MAX_FRAME_SIZE as u32 + 1,
                u32::MAX,
            ] {
                let bad = Header {
                    frame_size,
                    ..header.clone()
                };
                let bytes = bad.to_bytes(&keys).unwrap();
                let err = read_header(&mut &bytes[..], &master).unwrap_err();
                assert_eq!(err.exit_code(), 5);
                assert!(err.message().contains("frame size"), "{err}");
            }
            for level in [10, 255] {
                let bad = Header {
                    level,
                    ..header.clone()
                };
                let bytes = bad.to_bytes(&keys).unwrap();
                let err = read_header(&mut &bytes[..], &master).unwrap_err();
                assert!(err.message().contains("compression level"), "{err}");
            }
            let mut bytes = header.to_bytes(&keys).unwrap();
            bytes[10] = 2;
            retag(&mut bytes, &keys);
            let err = read_header(&mut &bytes[..], &master).unwrap_err();
            assert!(err.message().contains("unknown compression"), "{err}");
            let mut bytes = header.to_bytes(&keys).unwrap();
            bytes[59] = 1;
            retag(&mut bytes, &keys);
            let err = read_header(&mut &bytes[..], &master).unwrap_err();
            assert!(err.message().contains("reserved"), "{err}");
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let (master, header, keys) = setup();
        let mut bytes = header.to_bytes(&keys).unwrap();
        bytes[8] = 3;
        let err = read_header(&mut &bytes[..], &master).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(
            err.message().contains("version 3 is not supported"),
            "{err}"
        );
    }

    #[test]
    fn frame_round_trip_and_index_binding() {
        let (_, header, keys) = setup();
        let mut frame = Vec::new();
        seal_frame(
            &keys,
            7,
            FrameKind::Data { stored: true },
            b"payload",
            &mut frame,
        );
        assert_eq!(frame[0], FLAG_STORED);
        assert_eq!(&frame[1..5], &7u32.to_le_bytes());
        assert_ne!(&frame[5..12], b"payload");
        assert_eq!(frame.len(), 5 + 7 + 32);

        let mut buf = Vec::new();
        let kind = read_frame(&mut &frame[..], &header, &mut buf).unwrap();
        assert_eq!(kind, FrameKind::Data { stored: true });
        let mut moved = buf.clone();
        assert!(open_frame(&keys, 8, &mut moved).is_err());
        let (kind, range) = open_frame(&keys, 7, &mut buf).unwrap();
        assert_eq!(kind, FrameKind::Data { stored: true });
        assert_eq!(&buf[range], b"payload");
    }

    #[test]
    fn oversized_lengths_are_refused_before_reading() {
        let (_, header, _) = setup();
        let mut buf = Vec::new();
        // Claims 4 GiB - 1 and provides nothing: must fail on the claim, not
        // by trying to allocate or read it.
        let frame = [0u8, 0xff, 0xff, 0xff, 0xff];
        let err = read_frame(&mut &frame[..], &header, &mut buf).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(err.message().contains("claims 4294967295 bytes"), "{err}");
        assert!(buf.capacity() < 1024);

        let just_over = (header.frame_size as usize + FRAME_SLACK + 1) as u32;
        let mut frame = vec![FLAG_STORED];
        frame.extend_from_slice(&just_over.to_le_bytes());
        assert!(read_frame(&mut &frame[..], &header, &mut buf).is_err());

        let mut final_frame = vec![FLAG_FINAL];
        final_frame.extend_from_slice(&41u32.to_le_bytes());
        assert!(read_frame(&mut &final_frame[..], &header, &mut buf).is_err());
    }

    #[test]
    fn invalid_flags_are_refused() {
        let (_, header, _) = setup();
        let mut buf = Vec::new();
        for flags in [0b100, 0b11, 0x80] {
            let frame = [flags, 1, 0, 0, 0, 0];
            assert!(read_frame(&mut &frame[..], &header, &mut buf).is_err());
        }
        let plain = Header {
            compression: Compression::None,
            ..header
        };
        let frame = [FLAG_STORED, 1, 0, 0, 0, 0];
        assert!(read_frame(&mut &frame[..], &plain, &mut buf).is_err());
    }

    #[test]
    fn trailer_round_trips_and_rejects_wrong_sizes() {
        let t = Trailer {
            raw_size: 123,
            raw_sha256: [5; 32],
        };
        assert_eq!(Trailer::from_bytes(&t.to_bytes()).unwrap(), t);
        assert!(Trailer::from_bytes(&[0; 39]).is_err());
    }

    #[test]
    fn expect_end_spots_trailing_bytes() {
        expect_end(&mut &b""[..]).unwrap();
        assert_eq!(expect_end(&mut &b"x"[..]).unwrap_err().exit_code(), 5);
    }

    // ---- properties: whatever the bytes, an integrity error or the truth ----

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// No regression files in the source tree; a failure found here
        /// becomes a named test above.
        use crate::testing::proptest_config as config;

        fn header_with(compression: Compression, frame_size: u32) -> Header {
            Header {
                compression,
                frame_size,
                ..setup().1
            }
        }

        fn compression() -> impl Strategy<Value = Compression> {
            prop_oneof![Just(Compression::None), Just(Compression::Deflate)]
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn arbitrary_headers_are_integrity_errors(
                bytes in prop::collection::vec(any::<u8>(), 0..200),
                magic in any::<bool>(),
            ) {
                let mut bytes = bytes;
                if magic && bytes.len() >= 10 {
                    // Get past the first checks to the key id and the tag.
                    bytes[..8].copy_from_slice(MAGIC);
                    bytes[8..10].copy_from_slice(&VERSION.to_le_bytes());
                }
                let (master, _, _) = setup();
                let err = read_header(&mut &bytes[..], &master).unwrap_err();
                prop_assert_eq!(err.exit_code(), 5, "{}", err);
            }

            #[test]
            fn authentic_headers_round_trip(
                compression in compression(),
                level in 0..=MAX_LEVEL,
                frame_size in (MIN_FRAME_SIZE as u32)..=(MAX_FRAME_SIZE as u32),
                salt in prop::array::uniform32(any::<u8>()),
                instance in "\\PC{0,40}",
                v1 in any::<bool>(),
            ) {
                let (master, base, _) = if v1 { setup_v1() } else { setup() };
                let identity = base.identity.map(|i| Identity { instance, ..i });
                let header = Header { compression, level, frame_size, salt, identity, ..base };
                let keys = header.keys(&master);
                let bytes = header.to_bytes(&keys).unwrap();
                let (back, _) = read_header(&mut &bytes[..], &master).unwrap();
                prop_assert_eq!(back, header);
            }

            #[test]
            fn read_frame_never_holds_more_than_one_frame(
                compression in compression(),
                frame_size in prop_oneof![Just(MIN_FRAME_SIZE as u32), Just(MAX_FRAME_SIZE as u32)],
                flags in prop_oneof![Just(0u8), Just(FLAG_FINAL), Just(FLAG_STORED), any::<u8>()],
                len in prop_oneof![any::<u32>(), 0u32..100, Just(TRAILER_LEN as u32)],
                body in prop::collection::vec(any::<u8>(), 0..128),
            ) {
                let header = header_with(compression, frame_size);
                let mut bytes = vec![flags];
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(&body);
                let mut buf = Vec::new();
                let result = read_frame(&mut &bytes[..], &header, &mut buf);
                // The claim is capped before anything is reserved for it.
                prop_assert!(buf.capacity() <= max_frame_bytes(frame_size as usize));
                match result {
                    Ok(kind) => {
                        prop_assert_eq!(buf.len(), FRAME_PREFIX_LEN + len as usize + TAG_LEN);
                        prop_assert_eq!(kind.flags(), flags);
                    }
                    Err(e) => prop_assert_eq!(e.exit_code(), 5, "{}", e),
                }
            }

            #[test]
            fn unauthentic_frames_are_never_opened(
                index in any::<u64>(),
                bytes in prop::collection::vec(any::<u8>(), TAG_LEN + FRAME_PREFIX_LEN..300),
            ) {
                let (_, _, keys) = setup();
                let mut buf = bytes.clone();
                let err = open_frame(&keys, index, &mut buf).unwrap_err();
                prop_assert_eq!(err.exit_code(), 5);
                prop_assert_eq!(buf, bytes, "nothing is decrypted before the tag checks out");
            }

            #[test]
            fn sealed_frames_open_only_at_their_index(
                index in any::<u64>(),
                other in any::<u64>(),
                stored in any::<bool>(),
                payload in prop::collection::vec(any::<u8>(), 1..300),
                flip in any::<prop::sample::Index>(),
            ) {
                let (_, header, keys) = setup();
                let kind = FrameKind::Data { stored };
                let mut frame = Vec::new();
                seal_frame(&keys, index, kind, &payload, &mut frame);
                let mut buf = Vec::new();
                prop_assert_eq!(read_frame(&mut &frame[..], &header, &mut buf).unwrap(), kind);
                if other != index {
                    prop_assert!(open_frame(&keys, other, &mut buf.clone()).is_err());
                }
                let mut flipped = buf.clone();
                flipped[flip.index(buf.len())] ^= 1;
                prop_assert_eq!(open_frame(&keys, index, &mut flipped).unwrap_err().exit_code(), 5);
                let (opened, range) = open_frame(&keys, index, &mut buf).unwrap();
                prop_assert_eq!(opened, kind);
                prop_assert_eq!(&buf[range], &payload[..]);
            }
        }
    }
}
