//! A stored backup, read back: the one way verify, export and restore get at
//! a backup's bytes. By ID, from storage: the record is loaded and the key
//! checked against it before a byte of the object is read, the object is
//! opened in the same storage session, and what it decodes to (every frame
//! authenticated, the RDB's own checks passed) must be what the record says.
//! From a file (`--from-file`, a hand-copied object): the record copied
//! beside it, if there is one, is held to the same comparison. Either way
//! the read shows progress, and a format-2 object's authenticated identity
//! must be the backup asked for and the one its record describes, before a
//! frame is read.

use crate::codec::crypto::MasterKey;
use crate::codec::format::{self, Header};
use crate::codec::pipeline::{self, DecodeSummary};
use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::progress::Progress;
use crate::record::Record;
use crate::storage::{Storage, StorageIo, OBJECT_SUFFIX, RECORD_SUFFIX};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// A backup opened for reading.
pub struct Stored {
    /// The backup ID, or the path given with --from-file.
    name: String,
    /// The ID asked for, when the backup was asked for by ID.
    requested: Option<BackupId>,
    /// Whether a format-1 backup, which nothing binds to its ID, may be
    /// read: the operator's word, never the storage's.
    allow_format_1: bool,
    record: Option<Record>,
    input: Box<dyn Read + Send>,
    /// Bytes to read (for progress).
    size: u64,
}

impl Stored {
    /// Backup `id` in `storage`, with its record, encrypted with `key`.
    pub fn open(
        storage: &dyn Storage,
        id: &BackupId,
        key: &MasterKey,
        allow_format_1: bool,
    ) -> Result<Stored> {
        let record = load_record(storage, id, key)?;
        check_key(&record, key)?;
        if !record.authenticated() && !allow_format_1 {
            return Err(format_1_refused(&id.to_string()));
        }
        let object = storage.open(id, 0).map_err(|e| match e {
            // The record was there a moment ago: "no backup" would mislead.
            Error::Missing(_) => Error::Missing(format!(
                "backup {id} has a record but no object: it was deleted, or never stored whole; nothing of it can be read (`redis-backup delete {id}` removes the record)"
            )),
            e => e,
        })?;
        let input = Box::new(StorageIo(object));
        Ok(Stored {
            name: id.to_string(),
            requested: Some(id.clone()),
            allow_format_1,
            size: record.stored_size,
            record: Some(record),
            input,
        })
    }

    /// A backup object copied out of storage into a file.
    pub fn from_file(path: &Path, key: &MasterKey, allow_format_1: bool) -> Result<Stored> {
        let file = crate::fs::open_regular(path).map_err(|e| {
            Error::storage(format!("cannot open backup file {}: {e}", path.display()))
        })?;
        let record = sibling_record(path, key)?;
        if let Some(record) = &record {
            check_key(record, key)?;
        }
        Ok(Stored {
            name: path.display().to_string(),
            requested: None,
            allow_format_1,
            size: file.metadata().map(|m| m.len()).unwrap_or(0),
            record,
            input: Box::new(StorageIo(file)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn record(&self) -> Option<&Record> {
        self.record.as_ref()
    }

    /// Decode into `output`: every frame authenticated, the RDB's magic and
    /// CRC64 checked, and its size and SHA-256 those of the record.
    pub fn decode_into(
        self,
        output: &mut dyn Write,
        key: &MasterKey,
        threads: usize,
    ) -> Result<DecodeSummary> {
        let mut input = Counted {
            inner: self.input,
            progress: Progress::new("read", self.size),
        };
        let (requested, record) = (self.requested.as_ref(), self.record.as_ref());
        let (name, allow_format_1) = (&self.name, self.allow_format_1);
        let expected = |header: &Header| {
            if header.identity.is_none() && !allow_format_1 {
                return Err(format_1_refused(name));
            }
            check_identity(header, requested, record)
        };
        let summary = pipeline::decode(&mut input, output, key, threads, &expected)
            .and_then(|summary| match &self.record {
                Some(record) => check_against_record(record, &summary).map(|()| summary),
                None => Ok(summary),
            })
            .map_err(|e| named(e, "backup", name))?;
        Ok(summary)
    }
}

impl Stored {
    /// `decode_into` for a chunk of an archived stream: its bytes are not an
    /// RDB, so only the frames, the trailer and the record are checked.
    /// Returns the plain size.
    pub fn decode_stream_into(self, output: &mut dyn Write, key: &MasterKey) -> Result<u64> {
        let mut input = self.input;
        let (requested, record) = (self.requested.as_ref(), self.record.as_ref());
        let expected = |header: &Header| match header.identity {
            None => Err(format_1_refused(&self.name)),
            Some(_) => check_identity(header, requested, record),
        };
        let (_, raw_size, raw_sha256) =
            pipeline::decode_stream(&mut input, output, key, 1, &expected)
                .map_err(|e| named(e, "chunk", &self.name))?;
        if let Some(record) = &self.record {
            if raw_sha256 != record.raw_sha256 || raw_size != record.raw_size {
                return Err(Error::integrity(format!(
                    "chunk {} decodes to {raw_size} bytes with sha256 {raw_sha256}, but its record says {} bytes with sha256 {}: the object or the record was replaced",
                    record.id, record.raw_size, record.raw_sha256
                )));
            }
        }
        Ok(raw_size)
    }
}

/// An integrity error of `name`'s object, naming it (once): an operator
/// verifying many backups, or a restore among others in a log, must see
/// which one is damaged.
fn named(e: Error, what: &str, name: &str) -> Error {
    match e {
        Error::Integrity(ref m) if !m.contains(name) => e.context(format!("{what} {name}")),
        e => e,
    }
}

/// The record of backup `id`, authenticated with `key` (format 2 on).
pub fn load_record(storage: &dyn Storage, id: &BackupId, key: &MasterKey) -> Result<Record> {
    Record::from_stored(&storage.get_record(id)?, id, key)
}

/// Time lost to listed names that give nothing usable (a record that cannot
/// be read, or that is not what its name promised), bounded in all by the
/// storage's patience. A listing names as many objects as whoever answers
/// likes, and each costs requests of its own: each request is bounded,
/// their number is not. Past the bound the command ends, exit 4.
pub struct Patience {
    lost: Duration,
    names: usize,
    limit: Duration,
}

impl Patience {
    pub fn of(storage: &dyn Storage) -> Patience {
        Patience {
            lost: Duration::ZERO,
            names: 0,
            limit: storage.patience(),
        }
    }

    /// `load` for a listed name: its own error is that name's (the caller
    /// leaves it out and goes on); the outer one ends the command. A record
    /// that was read but does not authenticate counts a tenth of its time:
    /// a storage shared by several guests lists theirs, under other keys,
    /// by the thousand, and reads each as quickly as any of ours.
    pub fn try_load(&mut self, load: &dyn Fn() -> Result<Record>) -> Result<Result<Record>> {
        let started = Instant::now();
        let loaded = load();
        if let Err(e) = &loaded {
            self.lost_to(started, e)?;
        }
        Ok(loaded)
    }

    /// What a request about a listed name, begun at `started`, cost when
    /// it gave nothing (`e`); the error once the patience has run out.
    pub fn lost_to(&mut self, started: Instant, e: &Error) -> Result<()> {
        self.lost += match e {
            Error::Integrity(_) => started.elapsed() / 10,
            _ => started.elapsed(),
        };
        self.names += 1;
        if self.lost > self.limit {
            return Err(Error::storage(format!(
                "{} listed names gave nothing usable in {}s; the storage endpoint is misbehaving",
                self.names,
                crate::units::seconds(self.lost, 1)
            )));
        }
        Ok(())
    }
}

/// `load_record`, for `list` and `prune`, which act on records without
/// reading objects: a record that claims format 1 (nothing authenticates
/// those) is believed only if its object starts with an authentic format-1
/// header. Otherwise anyone who can write to the storage could turn a
/// format-2 backup's record into a format-1 one, or plant a record beside a
/// few bytes of their own.
pub fn load_listed_record(storage: &dyn Storage, id: &BackupId, key: &MasterKey) -> Result<Record> {
    let record = load_record(storage, id, key)?;
    if record.authenticated() {
        return Ok(record);
    }
    let header = storage
        .open(id, 0)
        .and_then(|object| format::read_header(&mut StorageIo(object), key));
    match header {
        Ok((header, _)) if header.version == 1 => Ok(record),
        Ok((header, _)) => Err(Error::integrity(format!(
            "record of backup {id} claims format 1, but its object is format {}: a downgraded record",
            header.version
        ))),
        Err(e) => Err(e.context(format!("the object of format-1 backup {id}"))),
    }
}

/// Say "wrong key" plainly before reading a byte of the object.
fn check_key(record: &Record, key: &MasterKey) -> Result<()> {
    let ours = key.key_id();
    if record.key_id != ours {
        return Err(Error::integrity(format!(
            "backup {} was encrypted with key {}, but the key file has key {ours}: wrong key",
            record.id, record.key_id
        )));
    }
    Ok(())
}

fn check_against_record(record: &Record, summary: &DecodeSummary) -> Result<()> {
    if summary.raw_sha256 != record.raw_sha256 || summary.raw_size != record.raw_size {
        return Err(Error::integrity(format!(
            "backup {} decodes to {} bytes with sha256 {}, but its record says {} bytes with sha256 {}: the object or the record was replaced",
            record.id, summary.raw_size, summary.raw_sha256, record.raw_size, record.raw_sha256
        )));
    }
    Ok(())
}

/// The record copied beside a hand-copied object (`ID.json` next to
/// `ID.rbk`), if there is one. One that is there but cannot be read or does
/// not authenticate is refused, not ignored: it was copied to be believed,
/// and making it unreadable must not be a way to switch its checks off.
fn sibling_record(object: &Path, key: &MasterKey) -> Result<Option<Record>> {
    let Some(id) = object
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_suffix(OBJECT_SUFFIX))
        .and_then(|id| BackupId::parse(id).ok())
    else {
        return Ok(None);
    };
    let path = object.with_file_name(format!("{id}{RECORD_SUFFIX}"));
    let mut bytes = Vec::new();
    let read = crate::fs::open_regular(&path).and_then(|f| {
        f.take(crate::storage::MAX_RECORD_SIZE as u64)
            .read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::integrity(format!(
                "the record beside {} cannot be read ({e}); move it away to check the object alone",
                object.display()
            )))
        }
    }
    Record::from_stored(&bytes, &id, key)
        .map(Some)
        .map_err(|e| e.context(format!("the record beside {}", object.display())))
}

/// The operator must say so before a format-1 backup is used: substituting
/// one (any old backup made with the same key) for the backup asked for is
/// undetectable.
fn format_1_refused(name: &str) -> Error {
    Error::integrity(format!(
        "{name} is a format-1 backup: its object does not say which backup it is, so anyone who can write to the storage could have put another one in its place; if you know it is yours, from before format 2, run again with --allow-format-1"
    ))
}

/// A format-2 object says which backup it is; that must be the one asked
/// for, and the one its record describes. (A format-1 object cannot say; its
/// record must at least not claim format 2.)
fn check_identity(
    header: &Header,
    requested: Option<&BackupId>,
    record: Option<&Record>,
) -> Result<()> {
    let Some(identity) = &header.identity else {
        return match record.filter(|r| r.format != 1) {
            Some(record) => Err(replaced(&record.id, "format", &1, &record.format)),
            None => Ok(()),
        };
    };
    let id = &identity.backup_id;
    if let Some(requested) = requested.filter(|r| *r != id) {
        return Err(Error::integrity(format!(
            "the object stored as backup {requested} is backup {id}: it was copied or renamed; the backup is not what it claims"
        )));
    }
    let Some(record) = record else {
        return Ok(());
    };
    let level = record.compression_level.map(u64::from);
    let pairs: [(&str, String, String); 8] = [
        ("backup ID", id.to_string(), record.id.to_string()),
        (
            "format",
            header.version.to_string(),
            record.format.to_string(),
        ),
        (
            "instance",
            identity.instance.clone(),
            record.instance.clone(),
        ),
        (
            "created_at",
            identity.created_at.clone(),
            record.created_at.clone(),
        ),
        (
            "server",
            identity.server_name.clone(),
            record.server_name.clone(),
        ),
        (
            "server version",
            identity.server_version.clone(),
            record.server_version.clone(),
        ),
        ("source", identity.source.clone(), record.source.clone()),
        (
            "compression level",
            header.level.to_string(),
            level.map_or("none".into(), |l| l.to_string()),
        ),
    ];
    for (what, object, recorded) in pairs {
        if object != recorded {
            return Err(replaced(&record.id, what, &object, &recorded));
        }
    }
    Ok(())
}

fn replaced(
    id: &BackupId,
    what: &str,
    object: &dyn std::fmt::Display,
    record: &dyn std::fmt::Display,
) -> Error {
    Error::integrity(format!(
        "backup {id}: the object says {what} {object}, its record says {record}: the object or the record was replaced"
    ))
}

/// The stored bytes, counted for the progress line as they are read.
struct Counted {
    inner: Box<dyn Read + Send>,
    progress: Progress,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
