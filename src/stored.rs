//! A stored backup, read back: the one way verify, export and restore get at
//! a backup's bytes. By ID, from storage: the record is loaded and the key
//! checked against it before a byte of the object is read, the object is
//! opened in the same storage session, and what it decodes to (every frame
//! authenticated, the RDB's own checks passed) must be what the record says.
//! From a file (`--from-file`, a hand-copied object): the record copied
//! beside it, if there is one, is held to the same comparison. Either way
//! the read shows progress.

use crate::codec::crypto::MasterKey;
use crate::codec::pipeline::{self, DecodeSummary};
use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::progress::Progress;
use crate::record::Record;
use crate::storage::{Storage, StorageIo, OBJECT_SUFFIX, RECORD_SUFFIX};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// A backup opened for reading.
pub struct Stored {
    /// The backup ID, or the path given with --from-file.
    name: String,
    record: Option<Record>,
    input: Box<dyn Read + Send>,
    /// Bytes to read (for progress).
    size: u64,
}

impl Stored {
    /// Backup `id` in `storage`, with its record, encrypted with `key`.
    pub fn open(storage: &dyn Storage, id: &BackupId, key: &MasterKey) -> Result<Stored> {
        let record = load_record(storage, id)?;
        check_key(&record, key)?;
        let input = Box::new(StorageIo(storage.open(id, 0)?));
        Ok(Stored {
            name: id.to_string(),
            size: record.stored_size,
            record: Some(record),
            input,
        })
    }

    /// A backup object copied out of storage into a file.
    pub fn from_file(path: &Path, key: &MasterKey) -> Result<Stored> {
        let file = File::open(path).map_err(|e| {
            Error::storage(format!("cannot open backup file {}: {e}", path.display()))
        })?;
        let record = sibling_record(path);
        if let Some(record) = &record {
            check_key(record, key)?;
        }
        Ok(Stored {
            name: path.display().to_string(),
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
        let summary = pipeline::decode(&mut input, output, key, threads)?;
        if let Some(record) = &self.record {
            check_against_record(record, &summary)?;
        }
        Ok(summary)
    }
}

pub fn load_record(storage: &dyn Storage, id: &BackupId) -> Result<Record> {
    Record::from_json(&storage.get_record(id)?, id)
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
/// `ID.rbk`), if there is one.
fn sibling_record(object: &Path) -> Option<Record> {
    let name = object.file_name()?.to_str()?;
    let id = BackupId::parse(name.strip_suffix(OBJECT_SUFFIX)?).ok()?;
    let mut bytes = Vec::new();
    File::open(object.with_file_name(format!("{id}{RECORD_SUFFIX}")))
        .ok()?
        .take(crate::storage::MAX_RECORD_SIZE as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    match Record::from_json(&bytes, &id) {
        Ok(record) => Some(record),
        Err(e) => {
            log::warn!("ignoring the record beside {}: {e}", object.display());
            None
        }
    }
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
