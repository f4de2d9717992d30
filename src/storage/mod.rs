//! Where backups live. A backup is two things under one ID: the object (the
//! encrypted stream, written once, atomically) and the record (a small JSON
//! document written only after the object is complete, so that a listed backup
//! is always a whole one). Backends know nothing about what the bytes mean.

pub mod dir;
pub mod swift;

use crate::config::{Config, StorageUrl};
use crate::error::{Error, Result};
use crate::id::BackupId;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// Records are small; anything bigger is not ours.
pub const MAX_RECORD_SIZE: usize = 64 * 1024;
/// A backup `ID` is stored as `ID.rbk` (the object) and `ID.json` (its
/// record), in every backend.
pub const OBJECT_SUFFIX: &str = ".rbk";
pub const RECORD_SUFFIX: &str = ".json";
/// Names one listing may hold in all: far above what backups need (two
/// objects per backup, at most a Swift backup's segments each), far below
/// what would strain memory. A listing is whoever writes the storage's to
/// fill.
pub const MAX_LISTED_NAMES: usize = 100_000;

/// An object being written. Nothing is visible to readers until `commit`;
/// dropping it uncommitted discards what was written.
pub trait ObjectWriter: Write + Send {
    /// Make the object durable and visible; returns its size in bytes.
    /// `metadata` (name, value) travels with the object where the backend
    /// can keep it (Swift's `X-Object-Meta-*`).
    fn commit(self: Box<Self>, metadata: &[(&str, String)]) -> Result<u64>;

    /// After a write failed: where this object can take the rest of the
    /// stream again, or `None` when the failure is final.
    fn resume_offset(&mut self) -> Option<Resume> {
        None
    }
}

/// Where a failed object write can go on, and whether it failed by a fault.
pub struct Resume {
    /// The offset of the stream from which the object takes the rest (all
    /// before it is safely stored).
    pub offset: u64,
    /// A fault (worth a pause before the next try), not a routine event
    /// such as a storage token that expired and was renewed.
    pub after_fault: bool,
}

pub trait Storage {
    /// Where an object is, for records and messages (`file:///dir/ID.rbk`).
    fn location(&self, id: &BackupId) -> String;
    /// Whether `location`, as a record gives it, is `id`'s place here: the
    /// record was written to this storage.
    fn is_location_of(&self, id: &BackupId, location: &str) -> bool {
        location == self.location(id)
    }
    /// Check, before any work, that a new backup `id` can be written here:
    /// the storage is reachable and writable, and the ID is not taken.
    fn prepare(&self, id: &BackupId) -> Result<()>;
    /// Remove some of what killed backups left, where the storage cannot
    /// see it otherwise; a failure is only warned of. Called where it
    /// holds nothing up: before Redis is asked for anything (a SYNC's RDB
    /// unread while it runs gets the replica dropped after `repl-timeout`).
    fn tidy(&self) {}
    /// Start writing a new object; fails if a backup with this ID exists.
    fn create(&self, id: &BackupId) -> Result<Box<dyn ObjectWriter>>;
    /// Read an object from `offset` on (so a reader can resume).
    fn open(&self, id: &BackupId, offset: u64) -> Result<Box<dyn Read + Send>>;
    fn put_record(&self, id: &BackupId, json: &[u8]) -> Result<()>;
    fn get_record(&self, id: &BackupId) -> Result<Vec<u8>>;
    /// IDs that have a record, in no particular order.
    fn list(&self) -> Result<Vec<BackupId>>;
    /// When each listed record was stored, in seconds since the epoch, by
    /// the storage's clock (a record's modification time; Swift's
    /// `last_modified`), where it says. Not authenticated: used only to
    /// keep more (see `prune`).
    fn stored_at(&self) -> Result<BTreeMap<BackupId, u64>> {
        Ok(BTreeMap::new())
    }
    /// Remove the record first (so the backup stops being listed), then the object.
    fn delete(&self, id: &BackupId) -> Result<()>;
    /// IDs that have a record and start with `prefix`.
    fn list_prefix(&self, prefix: &str) -> Result<Vec<BackupId>> {
        let mut ids = self.list()?;
        ids.retain(|id| id.as_str().starts_with(prefix));
        Ok(ids)
    }
    /// How long a command may lose, in all, to listed names that give
    /// nothing usable (see `stored::Patience`).
    fn patience(&self) -> Duration;
    /// Where the archive's chunks go: beside the backups but apart
    /// (`DIR/archive`, the Swift container `CONTAINER_archive`), so that
    /// listing backups never pages through them.
    fn archive(&self) -> Box<dyn Storage>;
}

/// Whether the storage settings can work at all (credentials complete,
/// endpoints acceptable, the CA file readable), without a byte sent.
pub fn check_settings(config: &Config) -> Result<()> {
    if let StorageUrl::Swift { .. } = &config.storage {
        swift::auth::Credentials::from_settings(&config.openstack, config.swift_allow_http)?;
        swift::tls::client_config(cacert(config).as_deref())?;
    }
    Ok(())
}

fn cacert(config: &Config) -> Option<std::path::PathBuf> {
    config
        .openstack
        .get("os_cacert")
        .map(|path| std::path::PathBuf::from(path.expose()))
}

pub fn open(config: &Config) -> Result<Box<dyn Storage>> {
    match &config.storage {
        StorageUrl::Dir(path) => Ok(Box::new(dir::DirStorage::new(path.clone()))),
        StorageUrl::Swift { container } => {
            let credentials = swift::auth::Credentials::from_settings(
                &config.openstack,
                config.swift_allow_http,
            )?;
            let tls = swift::tls::client_config(cacert(config).as_deref())?;
            Ok(Box::new(swift::SwiftStorage::new(
                container,
                credentials,
                tls,
                config.segment_size,
                config.storage_timeout,
                config.swift_allow_http,
            )))
        }
    }
}

/// A stored object's bytes, read or written: an I/O failure on it is a
/// storage error (exit 4), whoever meets it. The codec reading or writing
/// through this knows nothing of storage; a failure that already carries an
/// error of ours (the Swift reader's "connection ended early") keeps it.
pub struct StorageIo<T>(pub T);

impl<R: Read> Read for StorageIo<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| storage_io_error(e, "reading the backup"))
    }
}

impl<W: Write> Write for StorageIo<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write(buf)
            .map_err(|e| storage_io_error(e, "writing the backup"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .flush()
            .map_err(|e| storage_io_error(e, "writing the backup"))
    }
}

fn storage_io_error(e: std::io::Error, doing: &str) -> std::io::Error {
    match Error::from_io(e) {
        Ok(ours) => ours.into(),
        // Retried by whoever reads; not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => e,
        Err(e) => Error::storage(format!("{doing}: {e}")).into(),
    }
}

/// A new backup's ID: the UTC time, sortable, and a random suffix.
pub fn new_id() -> Result<BackupId> {
    let (_, compact) = crate::units::utc_timestamps(std::time::SystemTime::now());
    Ok(BackupId::generate(
        &compact,
        crate::codec::crypto::random_bytes::<4>()?,
    ))
}

pub fn already_exists(id: &BackupId, where_: &str) -> Error {
    Error::usage(format!(
        "a backup named {id} already exists in {where_}; choose another --id"
    ))
}

pub fn not_found(id: &BackupId, where_: &str) -> Error {
    Error::Missing(format!(
        "no backup {id} in {where_}; `redis-backup list` shows the backups there"
    ))
}
