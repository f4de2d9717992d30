//! Keys and the cryptographic primitives of a backup: the master key file,
//! the per-backup key derivation (HKDF-SHA256), AES-256-CTR and HMAC-SHA256.
//! This module knows nothing about the container layout; `format.rs` decides
//! which bytes get encrypted and authenticated. Every key lives in a type whose
//! `Debug` hides it and whose bytes are zeroed on drop, and no message built
//! here ever contains key material.

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

type Aes256Ctr = ctr::Ctr128BE<Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;

/// A key file holds 64 hex digits and a newline; anything much larger is not
/// ours, and reading it whole would let a wrong path eat memory.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// HKDF `info` strings: changing one changes every key, so they are part of
/// the format (see vendor-notes/FORMAT.md). The key id keeps its v1 label in
/// every version: it names the master key, whatever the format.
const INFO_BACKUP_KEYS_V1: &[u8] = b"redis-backup v1 keys";
/// Followed by a NUL and the backup ID: a v2 backup's keys are its own even
/// if its salt repeats another's.
const INFO_BACKUP_KEYS_V2: &[u8] = b"redis-backup v2 keys";
const INFO_RECORD_KEY: &[u8] = b"redis-backup v2 record";
const INFO_KEY_ID: &[u8] = b"redis-backup v1 key-id";

/// The 32-byte master key from the key file. Everything else is derived from it.
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Wraps raw key bytes. Tests only: real keys come from a key file, so
    /// that they are never typed, logged or passed on a command line.
    #[cfg(test)]
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    /// A fingerprint that names the key without revealing it, so a backup can
    /// say which key it needs and a wrong key is reported as such.
    pub fn key_id_bytes(&self) -> [u8; 8] {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut id = [0u8; 8];
        hk.expand(INFO_KEY_ID, &mut id)
            .expect("8 bytes is a valid HKDF-SHA256 output length");
        id
    }

    /// The key id as 16 lowercase hex digits, as shown to users and in metadata.
    pub fn key_id(&self) -> String {
        hex(&self.key_id_bytes())
    }

    /// The tag of a backup record's canonical bytes, under a key of its own
    /// (no data key ever tags a record, nor the record key data).
    pub fn record_tag(&self, canonical: &[u8]) -> [u8; TAG_LEN] {
        self.record_mac(canonical).finalize().into_bytes().into()
    }

    /// Constant-time check of a record's tag.
    pub fn record_tag_ok(&self, canonical: &[u8], tag: &[u8]) -> bool {
        self.record_mac(canonical).verify_slice(tag).is_ok()
    }

    fn record_mac(&self, canonical: &[u8]) -> HmacSha256 {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(INFO_RECORD_KEY, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key.as_ref())
            .expect("HMAC accepts keys of any length");
        mac.update(canonical);
        mac
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.key_id())
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The keys of one backup, derived from the master key and the backup's salt,
/// so no two backups share an AES keystream even though frame counters restart
/// at zero in each.
pub struct BackupKeys {
    enc: [u8; 32],
    mac: [u8; 32],
}

impl BackupKeys {
    /// The keys of a format-1 backup: bound to its salt alone.
    pub fn derive_v1(master: &MasterKey, salt: &[u8; 32]) -> BackupKeys {
        BackupKeys::expand(master, salt, &[INFO_BACKUP_KEYS_V1])
    }

    /// The keys of a format-2 backup: bound to its salt and its ID.
    pub fn derive_v2(master: &MasterKey, salt: &[u8; 32], backup_id: &[u8]) -> BackupKeys {
        BackupKeys::expand(master, salt, &[INFO_BACKUP_KEYS_V2, b"\0", backup_id])
    }

    fn expand(master: &MasterKey, salt: &[u8; 32], info: &[&[u8]]) -> BackupKeys {
        let hk = Hkdf::<Sha256>::new(Some(salt), &master.0);
        let mut okm = Zeroizing::new([0u8; 64]);
        hk.expand_multi_info(info, okm.as_mut())
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        let mut keys = BackupKeys {
            enc: [0; 32],
            mac: [0; 32],
        };
        keys.enc.copy_from_slice(&okm[..32]);
        keys.mac.copy_from_slice(&okm[32..]);
        keys
    }

    /// XORs the AES-256-CTR keystream starting at `iv` into `data`; the same
    /// call encrypts and decrypts.
    pub fn apply_keystream(&self, iv: &[u8; 16], data: &mut [u8]) {
        let mut cipher = Aes256Ctr::new(&self.enc.into(), iv.into());
        cipher.apply_keystream(data);
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        self.mac_over(parts).finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` against the HMAC of `parts`, so a forger
    /// learns nothing from how long a rejection takes.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac_over(parts).verify_slice(tag).is_ok()
    }

    fn mac_over(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.mac)
            .expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

impl fmt::Debug for BackupKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupKeys(***)")
    }
}

impl Drop for BackupKeys {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.mac.zeroize();
    }
}

/// Reads and checks a key file. Every refusal is a usage error: the file is a
/// setting the operator must fix, and nothing has been touched yet.
pub fn load_key_file(path: &Path) -> Result<MasterKey> {
    let shown = path.display();
    // Looked at before opening too, because opening a FIFO would block.
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return Err(Error::usage(format!(
                "key file {shown} is not a regular file"
            )));
        }
    }
    let file = match File::open(path) {
        Ok(file) => file,
        // Said to every command alike: a new key reads no existing backup, so
        // keygen is advice only for a first backup.
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::usage(format!(
                "key file {shown} not found; restore it from your safe copy (a new key reads no existing backup); for a first backup: `redis-backup keygen --out {shown}`"
            )))
        }
        Err(e) => return Err(Error::usage(format!("cannot open key file {shown}: {e}"))),
    };
    // Checked on the open handle, not the path, so a file swapped in between
    // the check and the read cannot slip through.
    let meta = file
        .metadata()
        .map_err(|e| Error::usage(format!("cannot inspect key file {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Error::usage(format!(
            "key file {shown} is not a regular file"
        )));
    }
    let us = rustix::process::geteuid().as_raw();
    if std::os::unix::fs::MetadataExt::uid(&meta) != us {
        return Err(Error::usage(format!(
            "key file {shown} belongs to uid {}, not to this user (uid {us}); whoever owns it can replace the key: chown it",
            std::os::unix::fs::MetadataExt::uid(&meta)
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::usage(format!(
            "key file {shown} has mode {mode:04o}; it must be readable only by its owner: chmod 600 {shown}"
        )));
    }
    let not_a_key = || {
        Error::usage(format!(
            "key file {shown} is not a redis-backup key (expected 64 hex digits)"
        ))
    };
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(not_a_key());
    }
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut text)
        .map_err(|e| Error::usage(format!("cannot read key file {shown}: {e}")))?;
    let digits = text.strip_suffix(b"\n").unwrap_or(&text);
    let bytes = parse_hex_key(digits).ok_or_else(not_a_key)?;
    Ok(MasterKey(*bytes))
}

/// Creates a new key file with a fresh random key. The file is created with
/// mode 0600 from the start (never widened then narrowed) and never replaces
/// an existing file: overwriting a key would orphan every backup made with it.
pub fn write_new_key_file(path: &Path) -> Result<MasterKey> {
    let shown = path.display();
    let key = MasterKey(random_bytes::<32>()?);
    let mut text = Zeroizing::new(hex(&key.0));
    text.push('\n');

    // Written whole to a temporary file (0600 from its creation), then
    // linked under its name: a keygen killed midway leaves no partial key,
    // which every later command would refuse and keygen would not replace.
    let exists = || {
        Error::usage(format!(
            "{shown} already exists; refusing to overwrite a key"
        ))
    };
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    let mut file = crate::fs::AtomicFile::create(path)
        .map_err(|e| Error::usage(format!("cannot create key file {shown}: {e}")))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.commit(true))
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => exists(),
            _ => Error::other(format!("writing key file {shown}: {e}")),
        })?;
    Ok(key)
}

/// Random bytes from the kernel. Read from /dev/urandom with plain file I/O,
/// which never blocks once the system is up and needs no extra crate.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::other(format!("reading random bytes from /dev/urandom: {e}")))?;
    Ok(bytes)
}

/// Lowercase hex, for key ids, hashes and key files.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

fn parse_hex_key(digits: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if digits.len() != 64 {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(key)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch_dir(name: &str) -> PathBuf {
        crate::testing::scratch_dir(&format!("crypto-{name}"))
    }

    fn write_with_mode(path: &Path, contents: &[u8], mode: u32) {
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn keygen_writes_0600_and_64_hex_digits_and_loads_back() {
        let dir = scratch_dir("keygen");
        let path = dir.join("backup.key");
        let key = write_new_key_file(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert!(text[..64]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let loaded = load_key_file(&path).unwrap();
        assert_eq!(loaded.0, key.0);
        assert_eq!(loaded.key_id(), key.key_id());
    }

    #[test]
    fn keygen_refuses_to_overwrite() {
        let dir = scratch_dir("overwrite");
        let path = dir.join("backup.key");
        write_with_mode(&path, b"precious", 0o600);
        let err = write_new_key_file(&path).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn key_file_readable_by_others_is_refused() {
        let dir = scratch_dir("mode");
        let path = dir.join("backup.key");
        write_with_mode(&path, format!("{}\n", "ab".repeat(32)).as_bytes(), 0o644);
        let err = load_key_file(&path).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let shown = path.display();
        assert_eq!(
            err.message(),
            format!("key file {shown} has mode 0644; it must be readable only by its owner: chmod 600 {shown}")
        );
        assert!(!err.message().contains("abab"));
    }

    #[test]
    fn missing_key_file_says_to_restore_it_before_making_one() {
        let dir = scratch_dir("missing");
        let path = dir.join("nope.key");
        let err = load_key_file(&path).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.message();
        assert!(!msg.contains('\n'), "{msg}");
        let restore = msg.find("restore it from your safe copy").expect(msg);
        let keygen = msg
            .find("for a first backup: `redis-backup keygen --out")
            .expect(msg);
        assert!(restore < keygen, "{msg}");
    }

    #[test]
    fn malformed_key_files_are_refused_without_echoing_them() {
        let dir = scratch_dir("malformed");
        let path = dir.join("backup.key");
        let good = "0123456789abcdef".repeat(4);
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            good.as_bytes()[..63].to_vec(),
            format!("{good}0").into_bytes(),
            format!("{good}\n\n").into_bytes(),
            format!(" {}", &good[1..]).into_bytes(),
            format!("{}g", &good[..63]).into_bytes(),
            vec![b'a'; 4096],
        ];
        for contents in cases {
            write_with_mode(&path, &contents, 0o600);
            let err = load_key_file(&path).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(err.message().contains("not a redis-backup key"), "{err}");
            assert!(!err.message().contains("0123456789"), "{err}");
        }
        for ok in [good.clone(), format!("{good}\n"), good.to_uppercase()] {
            write_with_mode(&path, ok.as_bytes(), 0o400);
            load_key_file(&path).unwrap();
        }
    }

    #[test]
    fn a_key_file_of_another_user_is_refused() {
        // Only root can give a file away; as anyone else there is nothing to try.
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        let dir = scratch_dir("owner");
        let path = dir.join("key");
        write_with_mode(&path, "ab".repeat(32).as_bytes(), 0o600);
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = load_key_file(&path).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message().contains("uid 65534"), "{err}");
    }

    #[test]
    fn a_directory_is_not_a_key_file() {
        let dir = scratch_dir("dir");
        let err = load_key_file(&dir).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message().contains("not a regular file"), "{err}");
    }

    #[test]
    fn debug_shows_the_key_id_not_the_key() {
        let key = MasterKey::from_bytes([0x42; 32]);
        let shown = format!("{key:?}");
        assert_eq!(shown, format!("MasterKey({})", key.key_id()));
        assert_eq!(key.key_id().len(), 16);
        assert!(!shown.contains("4242"));
        assert_ne!(key.key_id(), MasterKey::from_bytes([0x43; 32]).key_id());
    }

    #[test]
    fn record_tags_use_a_key_of_their_own() {
        let master = MasterKey::from_bytes([7; 32]);
        let tag = master.record_tag(b"{}");
        assert!(master.record_tag_ok(b"{}", &tag));
        assert!(!master.record_tag_ok(b"{ }", &tag));
        assert!(!MasterKey::from_bytes([8; 32]).record_tag_ok(b"{}", &tag));
        // Not the data MAC key of any backup.
        let data = BackupKeys::derive_v1(&master, &[0; 32]);
        assert!(!data.verify(&[b"{}".as_slice()], &tag));
    }

    #[test]
    fn backup_keys_depend_on_salt_and_verify_tags() {
        let master = MasterKey::from_bytes([7; 32]);
        let a = BackupKeys::derive_v1(&master, &[1; 32]);
        let b = BackupKeys::derive_v1(&master, &[2; 32]);
        assert_ne!(a.enc, b.enc);
        assert_ne!(a.enc, a.mac);
        let tag = a.tag(&[b"hello ".as_slice(), b"world"]);
        assert!(a.verify(&[b"hello world"], &tag));
        assert!(!b.verify(&[b"hello world"], &tag));
        assert!(!a.verify(&[b"hello world"], &tag[..31]));

        // Format 2: the same salt under another ID, or in format 1, is
        // another key, so a repeated salt never repeats keystream.
        let v2 = |id: &str| BackupKeys::derive_v2(&master, &[1; 32], id.as_bytes());
        let (x, y) = (
            v2("20261130T080000Z-0000000a"),
            v2("20261130T080000Z-0000000b"),
        );
        assert_ne!(x.enc, y.enc);
        assert_ne!(x.mac, y.mac);
        assert_ne!(x.enc, a.enc);
        // The NUL keeps "v2 keys" + "x" apart from a label that ends in x.
        assert_ne!(v2("1").enc, v2("12").enc);

        let mut data = *b"attack at dawn";
        a.apply_keystream(&[0; 16], &mut data);
        assert_ne!(&data, b"attack at dawn");
        a.apply_keystream(&[0; 16], &mut data);
        assert_eq!(&data, b"attack at dawn");
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes::<16>().unwrap(), random_bytes::<16>().unwrap());
    }

    // ---- properties: a key file is 64 hex digits or a usage error ----

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use crate::testing::proptest_config as config;

        /// Near misses of a key file as well as plain noise.
        fn contents() -> impl Strategy<Value = Vec<u8>> {
            let good = "[0-9a-fA-F]{64}";
            prop_oneof![
                2 => (good, prop::sample::select(ENDINGS)).prop_map(|(k, e)| format!("{k}{e}").into_bytes()),
                2 => "[0-9a-fA-F\n\r ]{60,68}".prop_map(String::into_bytes),
                1 => (good, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(k, at, b)| {
                    let mut bytes = k.into_bytes();
                    bytes[at.index(64)] = b;
                    bytes
                }),
                1 => prop::collection::vec(any::<u8>(), 0..200),
                1 => (1000usize..1100).prop_map(|n| vec![b'a'; n]),
            ]
        }

        const ENDINGS: &[&str] = &["", "\n", "\n\n", "\r\n", " ", "0", "\0"];

        /// What the loader must accept: 64 hex digits, then at most one LF.
        fn expected_key(contents: &[u8]) -> Option<[u8; 32]> {
            let digits = contents.strip_suffix(b"\n").unwrap_or(contents);
            if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let text = std::str::from_utf8(digits).unwrap();
            let mut key = [0u8; 32];
            for (i, byte) in key.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
            }
            Some(key)
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn key_files_load_exactly_when_well_formed(contents in contents()) {
                static CASE: AtomicUsize = AtomicUsize::new(0);
                let dir = scratch_dir("property");
                let path = dir.join(format!("{}.key", CASE.fetch_add(1, Ordering::Relaxed)));
                write_with_mode(&path, &contents, 0o600);
                let result = load_key_file(&path);
                std::fs::remove_file(&path).unwrap();
                match (result, expected_key(&contents)) {
                    (Ok(key), Some(expected)) => prop_assert_eq!(key.0, expected),
                    (Err(e), None) => {
                        prop_assert_eq!(e.exit_code(), 2);
                        // The one fixed sentence: nothing of the file in it.
                        prop_assert_eq!(
                            e.message(),
                            format!("key file {} is not a redis-backup key (expected 64 hex digits)", path.display())
                        );
                    }
                    (Ok(_), None) => prop_assert!(false, "accepted {:?}", String::from_utf8_lossy(&contents)),
                    (Err(e), Some(_)) => prop_assert!(false, "refused a good key: {}", e),
                }
            }
        }
    }
}
