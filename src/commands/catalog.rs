//! What the storage holds, as the operator asks for it: `list`, `show`,
//! `delete` and `timeline`, and the listing of authentic records that
//! `prune` counts from too.

use super::Report;
use crate::archive;
use crate::codec::crypto::{self, MasterKey};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::record::Record;
use crate::storage::{self, Storage};
use crate::stored::{load_listed_record, load_record, Patience};
use crate::units::{self, human_size};
use serde_json::{json, Value};

/// Backups whose record does not authenticate, with the reason.
pub(super) type Refused = Vec<(BackupId, Error)>;

/// The records in storage that authenticate, oldest first, of one instance
/// or all; and those that do not.
pub(super) fn records(
    storage: &dyn Storage,
    key: &MasterKey,
    instance: Option<&str>,
) -> Result<(Vec<Record>, Refused)> {
    let (mut records, mut refused) = (Vec::new(), Vec::new());
    let mut patience = Patience::of(storage);
    for id in storage.list()? {
        match patience.try_load(&|| load_listed_record(storage, &id, key))? {
            Ok(record) => records.push(record),
            Err(e) => refused.push((id, e)),
        }
    }
    records.retain(|r| instance.is_none_or(|i| r.instance == i));
    Record::sort_oldest_first(&mut records);
    Ok((records, refused))
}

pub(super) fn list(config: &Config, instance: Option<&str>) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let storage = storage::open(config)?;
    let (records, refused) = records(&*storage, &key, instance)?;
    for (id, e) in refused {
        log::warn!("backup {id} is not listed: {e}");
    }
    // Authentic, and still not a backup of this storage: an archived chunk,
    // or a backup written elsewhere (another guest's, sharing the key),
    // copied in. Shown as what they are; prune neither keeps nor deletes
    // them.
    let line = |r: &Record| {
        let what = if r.source == archive::CHUNK_SOURCE {
            "  (an archived chunk, not a backup)".to_string()
        } else if !storage.is_location_of(&r.id, &r.location) {
            format!(
                "  (written to {}, not to this storage)",
                units::printable(&r.location)
            )
        } else {
            String::new()
        };
        r.summary_line() + &what
    };
    Ok(Report {
        lines: records.iter().map(line).collect(),
        json: Value::Array(records.iter().map(Record::to_json).collect()),
    })
}

pub(super) fn show(config: &Config, id: &BackupId) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let storage = storage::open(config)?;
    let record = load_record(&*storage, id, &key)?;
    let keys: Vec<String> = record
        .keys
        .iter()
        .map(|(db, n)| format!("{db}={n}"))
        .collect();
    let lines = vec![
        format!("id:            {}", record.id),
        format!("instance:      {}", record.instance),
        format!("created_at:    {}", record.created_at),
        format!("redis_version: {}", record.redis_version),
        format!(
            "server:        {} {}",
            record.server_name, record.server_version
        ),
        format!("persistence:   {}", record.persistence),
        format!("source:        {}", record.source),
        format!(
            "raw_size:      {} ({})",
            record.raw_size,
            human_size(record.raw_size)
        ),
        format!("raw_sha256:    {}", record.raw_sha256),
        format!("stored_size:   {}", record.stored_size),
        format!("key_id:        {}", record.key_id),
        format!("location:      {}", record.location),
        match record.authenticated() {
            true => format!("format:        {} (record authenticated)", record.format),
            false => format!(
                "format:        {} (identity not bound: an older backup, whose record cannot be authenticated)",
                record.format
            ),
        },
        format!("keys:          {}", keys.join(" ")),
    ];
    Ok(Report {
        lines,
        json: record.to_json(),
    })
}
/// Delete backup `id`, and the archived chunks named after it if it is a
/// window's base: without it they restore nothing, and nothing else would
/// ever find them. The chunks go first: a delete cut short leaves the base
/// to name those left, and a delete of a base already gone still removes
/// them. A base is deleted only while no archiver of its instance runs on
/// this host (its lock held meanwhile): that archiver would go on storing
/// chunks under it.
pub(super) fn delete(config: &Config, id: &BackupId) -> Result<Report> {
    let storage = storage::open(config)?;
    let chunks = storage.archive();
    // A base's archiver is waited for before its chunks are listed: one
    // stopped in between stores its last chunk as it goes.
    let base_lock = no_archiver_of(config, &*storage, id, false)?;
    let Some(of_base) = archive::windows::chunks_of(&*chunks, id)? else {
        return Err(Error::storage(format!(
            "the listing of base {id}'s chunks names more than a window holds: the storage is misbehaving; {id} and its chunks are kept"
        )));
    };
    let _archiver = match (base_lock, of_base.is_empty()) {
        (None, false) => no_archiver_of(config, &*storage, id, true)?,
        (lock, _) => lock,
    };
    let mut patience = Patience::of(&*storage);
    let chunks_deleted = archive::windows::delete_chunks(&*chunks, &of_base, &mut patience)?;
    let mut lines = Vec::new();
    match storage.delete(id) {
        Ok(()) => {
            log::info!("deleted backup {id}");
            lines.push(format!("deleted {id}"));
        }
        Err(Error::Missing(_)) if !chunks_deleted.is_empty() => {
            lines.push(format!("backup {id} was gone already"));
        }
        Err(e) => return Err(e),
    }
    if !chunks_deleted.is_empty() {
        lines.push(format!(
            "deleted {} archived chunks of it",
            chunks_deleted.len()
        ));
    }
    Ok(Report {
        lines,
        json: json!({ "deleted": id.as_str(), "chunks_deleted": chunks_deleted }),
    })
}

/// The archive lock of base `id`'s instance, taken: no archiver of it runs
/// on this host while it is held. `None` when the base is gone already
/// (its instance unknown): only its chunks are left to delete. Without
/// chunks (`has_chunks` false) `id` is a base only if its record says so:
/// an archiver's first chunk comes after its base, on an idle primary long
/// after. A backup whose key or record cannot be read is deleted as ever.
fn no_archiver_of(
    config: &Config,
    storage: &dyn Storage,
    id: &BackupId,
    has_chunks: bool,
) -> Result<Option<crate::fs::HostLock>> {
    let base =
        crypto::load_key_file(&config.key_file).and_then(|key| load_record(storage, id, &key));
    let base = match base {
        Ok(record) if has_chunks || record.source == archive::BASE_SOURCE => record,
        Err(e) if has_chunks && !matches!(e, Error::Missing(_)) => return Err(e),
        _ => return Ok(None),
    };
    let lock = archive::follow::archive_lock(config, &base.instance);
    crate::fs::lock_host(&lock).map(Some).map_err(|e| {
        Error::other(format!(
            "{id} is the base of an archive window of instance {}, whose archiver may be going on with it ({e}); stop it first, or its next chunks would belong to no window",
            base.instance
        ))
    })
}

pub(super) fn timeline(config: &Config, instance: Option<&str>) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let storage = storage::open(config)?;
    let windows = archive::windows::windows(&*storage, &key, instance)?;
    Ok(Report {
        lines: windows.iter().flat_map(|w| w.describe()).collect(),
        json: Value::Array(windows.iter().flat_map(|w| w.to_json()).collect()),
    })
}

#[cfg(test)]
mod tests {
    use crate::units;

    #[test]
    fn control_characters_from_records_are_shown_escaped() {
        let line = "b1  2026-11-30T00:00:00Z  vm\x1b]0;owned\x07\x1b[2J  1 keys\n";
        let shown = units::printable(line);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("\\u{1b}]0;owned\\u{7}"), "{shown}");
        assert_eq!(units::printable("plain ünïcode line"), "plain ünïcode line");
    }
}
