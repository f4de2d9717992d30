//! The byte layout of a backup, format v1, and the only code that knows it:
//! the authenticated header, the sequence of encrypted and MACed frames, and
//! the trailer carried by the final frame. vendor-notes/FORMAT.md describes
//! the same layout for people writing a decoder elsewhere; keep them in step.
//!
//! Reading is ordered so that nothing unauthenticated is acted on: the key id
//! is compared before the header tag, the header tag before any header field
//! is trusted, frame lengths are capped before a byte is allocated, and a
//! frame's tag is checked before it is decrypted or inflated.

use std::io::{ErrorKind, Read};
use std::ops::Range;

use crate::codec::crypto::{hex, BackupKeys, MasterKey, TAG_LEN};
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"REDISBAK";
pub const VERSION: u16 = 1;
/// Bytes of the header before its tag.
pub const HEADER_LEN: usize = 60;
/// Header plus its tag: what precedes the first frame.
pub const HEADER_TOTAL_LEN: usize = HEADER_LEN + TAG_LEN;
pub const MIN_FRAME_SIZE: usize = 64 * 1024;
pub const MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;
pub const DEFAULT_FRAME_SIZE: usize = 1024 * 1024;
/// flags (1) + ciphertext length (4).
pub const FRAME_PREFIX_LEN: usize = 5;
/// Slack allowed above `frame_size` for a frame's ciphertext, so a writer may
/// keep a deflated frame that came out a little larger (v1 writers never do).
pub const FRAME_SLACK: usize = 64;
/// Plaintext of the final frame: raw_size u64 LE + raw_sha256.
pub const TRAILER_LEN: usize = 8 + 32;

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
    pub compression: Compression,
    /// Deflate level used by the writer; informational only.
    pub level: u8,
    /// Maximum plaintext bytes per frame.
    pub frame_size: u32,
    pub salt: [u8; 32],
    pub key_id: [u8; 8],
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

/// Whether `frame_size` is one a v1 reader accepts.
pub fn frame_size_ok(frame_size: usize) -> bool {
    (MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&frame_size)
}

/// The largest a whole frame (prefix, ciphertext, tag) can be on the wire:
/// the buffer size that holds any frame of a backup with this frame size.
pub fn max_frame_bytes(frame_size: usize) -> usize {
    FRAME_PREFIX_LEN + frame_size + FRAME_SLACK + TAG_LEN
}

impl Header {
    /// The header followed by its tag, ready to be written.
    pub fn to_bytes(&self, keys: &BackupKeys) -> [u8; HEADER_TOTAL_LEN] {
        let mut out = [0u8; HEADER_TOTAL_LEN];
        let header = self.unsigned_bytes();
        out[..HEADER_LEN].copy_from_slice(&header);
        out[HEADER_LEN..].copy_from_slice(&keys.tag(&[&header]));
        out
    }

    fn unsigned_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(MAGIC);
        out[8..10].copy_from_slice(&VERSION.to_le_bytes());
        out[10] = self.compression as u8;
        out[11] = self.level;
        out[12..16].copy_from_slice(&self.frame_size.to_le_bytes());
        out[16..48].copy_from_slice(&self.salt);
        out[48..56].copy_from_slice(&self.key_id);
        out
    }
}

/// Reads and authenticates the header, returning it with the backup's keys.
pub fn read_header(input: &mut dyn Read, master: &MasterKey) -> Result<(Header, BackupKeys)> {
    let mut bytes = [0u8; HEADER_TOTAL_LEN];
    read_exact(input, &mut bytes)?;
    let (header, tag) = bytes.split_at(HEADER_LEN);
    if &header[0..8] != MAGIC {
        return Err(Error::integrity(
            "not a redis-backup backup: it does not start with REDISBAK",
        ));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != VERSION {
        return Err(Error::integrity(format!(
            "backup format version {version} is not supported (this redis-backup reads version {VERSION})"
        )));
    }
    // The key id comes before the tag: with the wrong key every tag fails, and
    // "wrong key" is the message the operator can act on.
    let ours = master.key_id_bytes();
    if header[48..56] != ours {
        return Err(Error::integrity(format!(
            "backup was encrypted with key {}, but the key file has key {}: wrong key",
            hex(&header[48..56]),
            hex(&ours)
        )));
    }
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&header[16..48]);
    let keys = BackupKeys::derive(master, &salt);
    if !keys.verify(&[header], tag) {
        return Err(Error::integrity(
            "header failed authentication: tampered backup",
        ));
    }
    let compression = match header[10] {
        0 => Compression::None,
        1 => Compression::Deflate,
        other => {
            return Err(Error::integrity(format!(
                "unknown compression {other} in the header"
            )))
        }
    };
    let frame_size = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    if !frame_size_ok(frame_size as usize) {
        return Err(Error::integrity(format!(
            "frame size {frame_size} in the header is outside {MIN_FRAME_SIZE}..={MAX_FRAME_SIZE}"
        )));
    }
    // The spec's 60-byte header has 4 bytes after the key id that v1 does not
    // use; requiring zeros keeps them available to a later version.
    if header[56..60] != [0; 4] {
        return Err(Error::integrity(
            "reserved header bytes are not zero: written by an unknown redis-backup version",
        ));
    }
    let header = Header {
        compression,
        level: header[11],
        frame_size,
        salt,
        key_id: ours,
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
mod tests {
    use super::*;

    fn setup() -> (MasterKey, Header, BackupKeys) {
        let master = MasterKey::from_bytes([9; 32]);
        let header = Header {
            compression: Compression::Deflate,
            level: 6,
            frame_size: DEFAULT_FRAME_SIZE as u32,
            salt: [3; 32],
            key_id: master.key_id_bytes(),
        };
        let keys = BackupKeys::derive(&master, &header.salt);
        (master, header, keys)
    }

    #[test]
    fn header_layout_is_as_documented() {
        let (_, header, keys) = setup();
        let bytes = header.to_bytes(&keys);
        assert_eq!(&bytes[..8], b"REDISBAK");
        assert_eq!(&bytes[8..10], &[1, 0]);
        assert_eq!(bytes[10], 1);
        assert_eq!(bytes[11], 6);
        assert_eq!(&bytes[12..16], &[0, 0, 0x10, 0]);
        assert_eq!(&bytes[16..48], &[3; 32]);
        assert_eq!(&bytes[48..56], &header.key_id);
        assert_eq!(&bytes[56..60], &[0; 4], "reserved bytes are zero");
        assert_eq!(bytes.len(), 92);
    }

    #[test]
    fn header_round_trips() {
        let (master, header, keys) = setup();
        let bytes = header.to_bytes(&keys);
        let (back, _) = read_header(&mut &bytes[..], &master).unwrap();
        assert_eq!(back, header);
    }

    #[test]
    fn every_header_bit_flip_is_an_integrity_error() {
        let (master, header, keys) = setup();
        let bytes = header.to_bytes(&keys);
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            let err = read_header(&mut &bad[..], &master).unwrap_err();
            assert_eq!(err.exit_code(), 5, "bit {bit}: {err}");
        }
    }

    #[test]
    fn wrong_key_is_named_before_the_tag_is_checked() {
        let (_, header, keys) = setup();
        let bytes = header.to_bytes(&keys);
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
        let (master, header, keys) = setup();
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
            let err = read_header(&mut &bad.to_bytes(&keys)[..], &master).unwrap_err();
            assert_eq!(err.exit_code(), 5);
            assert!(err.message().contains("frame size"), "{err}");
        }
        let mut bytes = header.to_bytes(&keys);
        bytes[10] = 2;
        let tag = keys.tag(&[&bytes[..HEADER_LEN]]);
        bytes[HEADER_LEN..].copy_from_slice(&tag);
        let err = read_header(&mut &bytes[..], &master).unwrap_err();
        assert!(err.message().contains("unknown compression"), "{err}");
    }

    #[test]
    fn unknown_version_is_refused() {
        let (master, header, keys) = setup();
        let mut bytes = header.to_bytes(&keys);
        bytes[8] = 2;
        let err = read_header(&mut &bytes[..], &master).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(
            err.message().contains("version 2 is not supported"),
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
                level in any::<u8>(),
                frame_size in (MIN_FRAME_SIZE as u32)..=(MAX_FRAME_SIZE as u32),
                salt in prop::array::uniform32(any::<u8>()),
            ) {
                let (master, _, _) = setup();
                let header = Header { compression, level, frame_size, salt, key_id: master.key_id_bytes() };
                let keys = BackupKeys::derive(&master, &salt);
                let (back, _) = read_header(&mut &header.to_bytes(&keys)[..], &master).unwrap();
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
