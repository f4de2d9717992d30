//! The commands around a backup: `list`, `show`, `delete`, `verify`, `export`
//! and `keygen`, plus the printing of every command's result (human lines, or
//! one JSON document with `--json`). Each reads top to bottom as its help says.

use crate::archive;
use crate::backup;
use crate::cli::{Command, Target};
use crate::codec::crypto::{self, MasterKey};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fs::AtomicFile;
use crate::id::BackupId;
use crate::record::Record;
use crate::restore::{self, Restored};
use crate::status;
use crate::storage::{self, Storage};
use crate::stored::{load_listed_record, load_record, Patience, Stored};
use crate::units::{self, human_size};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

/// What a command produced: human lines and the JSON form of the same.
pub struct Report {
    pub lines: Vec<String>,
    pub json: Value,
}

pub fn run(config: &Config, command: Command) -> Result<Report> {
    // Storage settings are checked before any command takes the lock or
    // touches Redis: a usage error (exit 2) must mean nothing was touched.
    if !matches!(command, Command::Keygen { .. }) {
        storage::check_settings(config)?;
    }
    match command {
        Command::Backup {
            id,
            instance,
            source,
        } => {
            let started = Instant::now();
            let name = instance.clone().unwrap_or_else(|| config.instance.clone());
            let requested = id.as_ref().map(ToString::to_string);
            let result = backup::run(
                config,
                backup::Request {
                    id,
                    instance,
                    source,
                },
            );
            report_status(
                config,
                "backup",
                &name,
                started,
                &result,
                |record| (record.raw_size, Some(record.id.to_string())),
                requested,
            );
            let record = result?;
            Ok(Report {
                lines: vec![record.summary_line(), record.id.to_string()],
                json: record.to_json(),
            })
        }
        Command::Restore {
            target,
            keep_previous,
            allow_format_1,
        } => {
            let started = Instant::now();
            let requested = match &target {
                Target::Id(id) => Some(id.to_string()),
                Target::File(path) => Some(path.display().to_string()),
                Target::At { micros, .. } => Some(format!("at {}", units::utc_millis(*micros))),
            };
            let result = restore::run(
                config,
                restore::Request {
                    target,
                    keep_previous,
                    allow_format_1,
                },
            );
            report_status(
                config,
                "restore",
                &config.instance,
                started,
                &result,
                |restored| (restored.raw_size, Some(restored.name.clone())),
                requested,
            );
            Ok(restore_report(&result?))
        }
        Command::Verify(target) => verify(config, target),
        Command::List { instance } => list(config, instance.as_deref()),
        Command::Show(id) => show(config, &id),
        Command::Delete(id) => delete(config, &id),
        Command::Export {
            id,
            out,
            allow_format_1,
        } => export(config, &id, &out, allow_format_1),
        Command::Keygen { out } => keygen(out.as_deref().unwrap_or(&config.key_file)),
        Command::ExportAt {
            micros,
            instance,
            out,
        } => export_at(config, micros, instance.as_deref(), &out),
        Command::Archive { instance } => {
            archive::follow::run(config, archive::follow::Request { instance })?;
            Ok(Report {
                lines: vec![],
                json: json!({ "archiving": "stopped" }),
            })
        }
        Command::Timeline { instance } => timeline(config, instance.as_deref()),
        Command::Prune {
            keep_last,
            instance,
            dry_run,
        } => prune(config, keep_last, instance.as_deref(), dry_run),
        Command::Help(_) | Command::Version => unreachable!("handled by main"),
    }
}

/// The status file of a backup or restore, when one is configured.
fn report_status<T>(
    config: &Config,
    operation: &str,
    instance: &str,
    started: Instant,
    result: &Result<T>,
    facts: impl Fn(&T) -> (u64, Option<String>),
    requested: Option<String>,
) {
    let Some(path) = &config.status_file else {
        return;
    };
    let (size, id) = match result {
        Ok(value) => {
            let (size, id) = facts(value);
            (Some(size), id)
        }
        Err(_) => (None, requested),
    };
    status::write(
        path,
        &status::Outcome {
            operation,
            instance,
            duration: started.elapsed(),
            size,
            id,
            error: result.as_ref().err(),
        },
    );
}

pub fn print(report: &Report, as_json: bool) {
    let mut stdout = io::stdout().lock();
    let written = if as_json {
        serde_json::to_string_pretty(&report.json)
            .map_err(io::Error::from)
            .and_then(|json| writeln!(stdout, "{}", units::printable_json(&json)))
    } else {
        report
            .lines
            .iter()
            .try_for_each(|line| writeln!(stdout, "{}", units::printable(line)))
    };
    // A closed pipe (`| head`) is not worth an error; the work is done.
    let _ = written;
}

/// Backups whose record does not authenticate, with the reason.
type Refused = Vec<(BackupId, Error)>;

/// The records in storage that authenticate, oldest first, of one instance
/// or all; and those that do not.
fn records(
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
    records.sort_by(|a, b| a.age().cmp(&b.age()));
    Ok((records, refused))
}

fn list(config: &Config, instance: Option<&str>) -> Result<Report> {
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
        } else if r.location != storage.location(&r.id) {
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

fn show(config: &Config, id: &BackupId) -> Result<Report> {
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

/// Per instance, the backups but the newest `keep_last`, and the archive
/// windows but the newest `keep_last` that end before the oldest backup
/// kept (`surplus`, `bases_kept`), oldest first.
fn prune(
    config: &Config,
    keep_last: usize,
    instance: Option<&str>,
    dry_run: bool,
) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let storage = storage::open(config)?;
    let (records, mut refused) = records(&*storage, &key, instance)?;
    // An authentic record written to another storage (a copy of another
    // guest's backup that shares the key and the instance name) is not
    // ours to count or delete.
    let (records, elsewhere): (Vec<Record>, Vec<Record>) = records
        .into_iter()
        .partition(|r| r.location == storage.location(&r.id));
    for record in elsewhere {
        let e = Error::integrity(format!(
            "it was written to {}, not to this storage",
            record.location
        ));
        refused.push((record.id, e));
    }
    // A record that does not authenticate says nothing true about age: it
    // neither counts towards what is kept nor is deleted.
    for (id, e) in &refused {
        log::warn!("prune ignores backup {id} (neither kept nor deleted): {e}");
    }
    let mut by_instance: std::collections::BTreeMap<String, Vec<Record>> = Default::default();
    for record in records {
        by_instance
            .entry(record.instance.clone())
            .or_default()
            .push(record);
    }
    // The newest archive window of an instance is the one its archiver
    // extends: pruning its base would silently end point-in-time recovery.
    let mut kept_bases: Vec<(BackupId, String)> = by_instance
        .values()
        .filter_map(|records| {
            records
                .iter()
                .filter(|r| is_base(r))
                .max_by(|a, b| a.age().cmp(&b.age()))
                .map(|r| {
                    (
                        r.id.clone(),
                        "the base of the newest archive window".to_string(),
                    )
                })
        })
        .collect();
    let mut reach = std::collections::BTreeMap::new();
    let mut surplus_records = Vec::new();
    for (instance, records) in by_instance {
        let (doomed, oldest_kept) = surplus(records, keep_last);
        surplus_records.extend(doomed);
        if let Some(micros) = oldest_kept {
            reach.insert(instance, micros);
        }
    }
    // A listed record the storage cannot give now may be a backup prune
    // would keep: how far back the windows must reach is then unknown.
    let unsure = refused
        .iter()
        .find(|(_, e)| e.exit_code() == 4 && !matches!(e, Error::Missing(_)));
    let unsure = unsure.map(|(id, _)| id);
    kept_bases.extend(bases_kept(
        &*storage,
        &key,
        &surplus_records,
        &reach,
        unsure,
    )?);
    let doomed: Vec<Record> = surplus_records
        .into_iter()
        .filter(|r| match kept_bases.iter().find(|(id, _)| *id == r.id) {
            Some((_, why)) => {
                log::info!("keeping {} of {}: {why}", r.id, r.instance);
                false
            }
            None => true,
        })
        .collect();
    // A chunk is worth keeping only with its window's base.
    let chunks = storage.archive();
    let mut lines = Vec::new();
    let mut chunks_deleted = Vec::new();
    for record in &doomed {
        let of_base = match record.archive.is_some() {
            true => match archive::windows::chunks_of(&*chunks, record)? {
                Some(of_base) => of_base,
                None => continue,
            },
            false => Vec::new(),
        };
        if dry_run {
            lines.push(format!("would delete {}", record.summary_line()));
            if !of_base.is_empty() {
                lines.push(format!(
                    "would delete {} archived chunks of it",
                    of_base.len()
                ));
            }
        } else {
            let before = chunks_deleted.len();
            for chunk in &of_base {
                match chunks.delete(chunk) {
                    Ok(()) => chunks_deleted.push(chunk.to_string()),
                    // Listed, but gone: another prune, a listing not yet
                    // up to date, or a name whoever answers made up.
                    Err(Error::Missing(e)) => log::warn!("{e}; skipped"),
                    Err(e) => return Err(e),
                }
            }
            storage.delete(&record.id)?;
            log::info!("pruned backup {} of {}", record.id, record.instance);
            lines.push(format!("deleted {}", record.summary_line()));
            let deleted = chunks_deleted.len() - before;
            if deleted > 0 {
                lines.push(format!("deleted {deleted} archived chunks of it"));
            }
        }
    }
    if doomed.is_empty() {
        lines.push(format!(
            "nothing to prune: no instance has more than {keep_last} backups, nor archive windows older than the backups it keeps"
        ));
    }
    Ok(Report {
        lines,
        json: json!({
            "dry_run": dry_run,
            "deleted": doomed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            "ignored": refused.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            "chunks_deleted": chunks_deleted,
        }),
    })
}

/// Of the bases among `doomed`, those kept after all, and why. Beyond the
/// newest `keep_last`, a window is kept while it may hold a moment at or
/// after the oldest backup kept (`reach`, per instance): its end, not the
/// next base's start, says so, as an archiver may have gone on with an
/// older window. Kept too is the base of the window with the newest chunk:
/// an archiver goes on with the window it found newest as it started, and
/// whoever writes the storage could have hidden a newer base from it then.
/// The windows are read once, for all instances; if they cannot be read,
/// or a listed record (`unsure`) cannot be given now, every base among
/// `doomed` is kept (said), the rest pruned. So are an instance's bases if
/// one of its windows has records the storage cannot give now (a record
/// listed but not there is not such a failure: a listing of made-up names
/// would stop all pruning).
fn bases_kept(
    storage: &dyn Storage,
    key: &MasterKey,
    doomed: &[Record],
    reach: &std::collections::BTreeMap<String, u64>,
    unsure: Option<&BackupId>,
) -> Result<Vec<(BackupId, String)>> {
    let bases: Vec<&Record> = doomed.iter().filter(|r| is_base(r)).collect();
    let all_kept = |why: String| -> Vec<(BackupId, String)> {
        bases.iter().map(|r| (r.id.clone(), why.clone())).collect()
    };
    if bases.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(id) = unsure {
        log::warn!("record {id} cannot be read now: the bases are kept");
        return Ok(all_kept(format!("record {id} cannot be read now")));
    }
    let windows = match archive::windows::windows(storage, key, None) {
        Ok(windows) => windows,
        Err(e) => {
            log::warn!("the archive windows cannot be read ({e}): the bases are kept");
            return Ok(all_kept("the archive windows cannot be read".into()));
        }
    };
    let end = |w: &archive::windows::Window| w.last.span_micros().1;
    let mut newest: std::collections::BTreeMap<&str, &archive::windows::Window> =
        Default::default();
    for window in &windows {
        let slot = newest.entry(window.instance()).or_insert(window);
        if end(window) > end(slot) {
            *slot = window;
        }
    }
    // A window whose records the storage cannot give now has a newest
    // chunk nobody can tell: it may be the one an archiver extends.
    let unranked: std::collections::BTreeSet<&str> = windows
        .iter()
        .filter(|w| w.unreadable)
        .map(|w| w.instance())
        .collect();
    let mut kept = Vec::new();
    for base in bases {
        let instance = base.instance.as_str();
        let window = windows.iter().find(|w| w.base.id == base.id);
        let why = if unranked.contains(instance) {
            log::warn!(
                "a window of instance {instance} cannot be read whole now: base {} is kept",
                base.id
            );
            "a window of its instance cannot be read whole now"
        } else if window.is_none() {
            // Read a moment ago, not now (windows leave out what they
            // cannot read): where its window ends is not known.
            log::warn!("base {} cannot be read now: it is kept", base.id);
            "its record cannot be read now"
        } else if newest.get(instance).is_some_and(|w| w.base.id == base.id) {
            "its window has the newest chunk: the one an archiver extends"
        } else if window.is_some_and(|w| reach.get(instance).is_some_and(|r| end(w) >= *r)) {
            "its window reaches the oldest backup kept"
        } else {
            continue;
        };
        kept.push((base.id.clone(), why.to_string()));
    }
    Ok(kept)
}

/// Of one instance's records, oldest first, those prune would delete, and
/// the time (µs) of the oldest backup it keeps, if any. Backups and archive
/// bases are counted apart: bases come as often as the primary resyncs the
/// archiver, which whoever answers on its port decides (a Redis in a crash
/// loop too), and counted with the backups a burst of them would push every
/// backup out. Beyond the newest `keep_last` format-2 backups, backups go;
/// format-1 records bind nothing, so they never count towards what is kept
/// (records planted by whoever can write to the storage can then never push
/// a real backup out) and go only once `keep_last` format-2 backups are
/// kept. Beyond the newest `keep_last` bases, bases are named here; which of
/// them still reach the oldest backup kept, `bases_kept` tells.
fn surplus(records: Vec<Record>, keep_last: usize) -> (Vec<Record>, Option<u64>) {
    let (bases, backups): (Vec<Record>, Vec<Record>) = records.into_iter().partition(is_base);
    let (bound, unbound): (Vec<Record>, Vec<Record>) =
        backups.into_iter().partition(Record::authenticated);
    let old_backups = bound.len().saturating_sub(keep_last);
    let oldest_kept = bound.get(old_backups).map(|r| r.age().1);
    let old_bases = bases.len().saturating_sub(keep_last);
    let backups_go = match bound.len() < keep_last {
        true => Vec::new(),
        false => unbound
            .into_iter()
            .chain(bound.into_iter().take(old_backups))
            .collect(),
    };
    let mut doomed: Vec<Record> = backups_go
        .into_iter()
        .chain(bases.into_iter().take(old_bases))
        .collect();
    doomed.sort_by(|a, b| a.age().cmp(&b.age()));
    (doomed, oldest_kept)
}

/// A base of an archive window (listed like a backup).
fn is_base(record: &Record) -> bool {
    record.source == archive::BASE_SOURCE && record.archive.is_some()
}

fn delete(config: &Config, id: &BackupId) -> Result<Report> {
    let storage = storage::open(config)?;
    storage.delete(id)?;
    log::info!("deleted backup {id}");
    Ok(Report {
        lines: vec![format!("deleted {id}")],
        json: json!({ "deleted": id.as_str() }),
    })
}

fn verify(config: &Config, target: Target) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let started = Instant::now();
    let stored = match &target {
        // Read-only, and its report says plainly when a backup is format 1.
        Target::Id(id) => Stored::open(&*storage::open(config)?, id, &key, true)?,
        Target::File(path) => Stored::from_file(path, &key, true)?,
        Target::At { .. } => return Err(Error::usage("verify takes an ID or --from-file PATH")),
    };
    let name = stored.name().to_string();
    let is_chunk = stored
        .record()
        .is_some_and(|r| r.source == archive::CHUNK_SOURCE);
    if is_chunk {
        // Its bytes are a stretch of the write stream, not an RDB.
        let raw_size = stored.decode_stream_into(&mut io::sink(), &key)?;
        return Ok(Report {
            lines: vec![format!(
                "{name}: OK, an archived chunk of {} of write stream",
                human_size(raw_size)
            )],
            json: json!({ "verified": name, "chunk": true, "raw_size": raw_size }),
        });
    }
    let summary = stored.decode_into(&mut io::sink(), &key, config.threads)?;
    log::info!(
        "verified {name} in {}s",
        crate::units::seconds(started.elapsed(), 1)
    );
    // Which backup this is, as the object itself says (and has proven):
    // what a file copied by hand is, in particular.
    let identity = summary.header.identity.as_ref();
    let which = match identity {
        Some(i) => format!(
            "backup {} of {} made {} from {} {} ({})",
            i.backup_id, i.instance, i.created_at, i.server_name, i.server_version, i.source
        ),
        None => "format 1: identity not bound".into(),
    };
    Ok(Report {
        lines: vec![format!(
            "{name}: OK, {} RDB (version {}), sha256 {}; {which}",
            human_size(summary.raw_size),
            summary.rdb.version,
            summary.raw_sha256
        )],
        json: json!({
            "verified": name,
            "format": summary.header.version,
            "identity": identity.map(|i| json!({
                "id": i.backup_id.as_str(),
                "instance": i.instance,
                "created_at": i.created_at,
                "server": {"name": i.server_name, "version": i.server_version},
                "source": i.source,
            })),
            "raw_size": summary.raw_size,
            "raw_sha256": summary.raw_sha256,
            "rdb_version": summary.rdb.version,
        }),
    })
}

fn export(config: &Config, id: &BackupId, out: &Path, allow_format_1: bool) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let stored = Stored::open(&*storage::open(config)?, id, &key, allow_format_1)?;
    refuse_existing(out)?;
    let summary = write_new_file(out, |writer| {
        stored.decode_into(writer, &key, config.threads)
    })?;
    Ok(Report {
        lines: vec![format!(
            "exported {id} to {} ({}, sha256 {})",
            out.display(),
            human_size(summary.raw_size),
            summary.raw_sha256
        )],
        json: json!({
            "exported": id.as_str(),
            "out": out.display().to_string(),
            "raw_size": summary.raw_size,
            "raw_sha256": summary.raw_sha256,
        }),
    })
}

/// `export --at`: the replayed RDB, to PATH as `export` writes a backup's.
fn export_at(config: &Config, at: u64, instance: Option<&str>, out: &Path) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let storage = storage::open(config)?;
    let instance = instance.unwrap_or(&config.instance);
    let window = archive::windows::holding(&*storage, &key, instance, at)?;
    refuse_existing(out)?;
    let binary = crate::redis::server::ServerBinary::ask(&config.redis_server)?;
    let mut replayed =
        archive::replay::replay(&*storage, &key, &binary, &window, at, config.save_timeout)?;
    let (raw_size, sha) = write_new_file(out, |writer| {
        let mut hashed = Hashed {
            inner: writer,
            hasher: Sha256::new(),
            size: 0,
        };
        io::copy(replayed.rdb(), &mut hashed)
            .map_err(|e| Error::other(format!("writing {}: {e}", out.display())))?;
        Ok((
            hashed.size,
            crate::codec::crypto::hex(&hashed.hasher.finalize()),
        ))
    })?;
    let until = units::utc_millis(replayed.applied_until);
    Ok(Report {
        lines: vec![format!(
            "exported instance {instance} as at {} to {} ({}, sha256 {sha}): base {} and {} commands up to {until}",
            units::utc_millis(at),
            out.display(),
            human_size(raw_size),
            replayed.base,
            replayed.commands
        )],
        json: json!({
            "exported_at": units::utc_millis(at),
            "instance": instance,
            "base": replayed.base,
            "commands": replayed.commands,
            "applied_until": until,
            "out": out.display().to_string(),
            "raw_size": raw_size,
            "raw_sha256": sha,
        }),
    })
}

fn timeline(config: &Config, instance: Option<&str>) -> Result<Report> {
    let key = crypto::load_key_file(&config.key_file)?;
    let storage = storage::open(config)?;
    let windows = archive::windows::windows(&*storage, &key, instance)?;
    Ok(Report {
        lines: windows.iter().flat_map(|w| w.describe()).collect(),
        json: Value::Array(windows.iter().flat_map(|w| w.to_json()).collect()),
    })
}

/// Refuse early; the final link refuses again if PATH appears meanwhile.
fn refuse_existing(out: &Path) -> Result<()> {
    match fs::symlink_metadata(out) {
        Ok(_) => Err(exists(out)),
        Err(_) => Ok(()),
    }
}

/// `write` fills a new file at `out`, written under a temporary name and
/// linked into place only when complete and checked, so not even a killed
/// export leaves a partial RDB at PATH.
fn write_new_file<T>(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<AtomicFile>) -> Result<T>,
) -> Result<T> {
    let file = AtomicFile::create(out).map_err(|e| {
        Error::other(format!(
            "cannot create a file beside {}: {e}",
            out.display()
        ))
    })?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let written = write(&mut writer)?;
    let file = writer
        .into_inner()
        .map_err(|e| Error::other(format!("writing {}: {}", out.display(), e.error())))?;
    file.commit(true).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => exists(out),
        _ => Error::other(format!("writing {}: {e}", out.display())),
    })?;
    Ok(written)
}

/// A writer that hashes and counts what goes through it.
struct Hashed<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn exists(out: &Path) -> Error {
    Error::usage(format!(
        "{} already exists; export never overwrites a file, choose another --out",
        out.display()
    ))
}

fn keygen(path: &Path) -> Result<Report> {
    let key = crypto::write_new_key_file(path)?;
    let key_id = key.key_id();
    log::info!("wrote a new key to {} (key id {key_id})", path.display());
    Ok(Report {
        lines: vec![
            format!("wrote {} (key id {key_id}, mode 0600)", path.display()),
            "Keep a copy of this key somewhere safe: without it no backup can be read.".into(),
        ],
        json: json!({ "key_file": path.display().to_string(), "key_id": key_id }),
    })
}

fn restore_report(restored: &Restored) -> Report {
    let keys: Vec<String> = restored
        .keys
        .iter()
        .map(|(db, n)| format!("{db}={n}"))
        .collect();
    let mut lines = vec![format!(
        "restored {}: {} RDB, keys {} in {}s",
        restored.name,
        human_size(restored.raw_size),
        keys.join(" "),
        crate::units::seconds(restored.took, 1)
    )];
    if let Some(previous) = &restored.previous {
        lines.push(format!("previous data kept in {previous}"));
    }
    Report {
        lines,
        json: json!({
            "id": restored.name,
            "raw_size": restored.raw_size,
            "keys": restored.keys,
            "seconds": restored.took.as_secs_f64(),
            "previous": restored.previous,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_records_are_shown_escaped() {
        let line = "b1  2026-11-30T00:00:00Z  vm\x1b]0;owned\x07\x1b[2J  1 keys\n";
        let shown = units::printable(line);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("\\u{1b}]0;owned\\u{7}"), "{shown}");
        assert_eq!(units::printable("plain ünïcode line"), "plain ünïcode line");
    }

    /// `b` for a backup, `a` for a base, `f` for a format-1 backup, then
    /// the minute it was made.
    fn records(names: &[&str]) -> Vec<Record> {
        names
            .iter()
            .map(|name| {
                let id = BackupId::parse(name).unwrap();
                let minute: u32 = name[1..].parse().unwrap();
                let created_at = format!("2026-11-25T03:{minute:02}:00.000000Z");
                let archive = name.starts_with('a').then(|| crate::record::ArchivePlace {
                    base: id.clone(),
                    replid: "r".repeat(40),
                    seq: 0,
                    start_offset: 0,
                    end_offset: 0,
                    first_at: created_at.clone(),
                    last_at: created_at.clone(),
                    session_start: true,
                });
                Record {
                    id,
                    created_at,
                    source: match archive {
                        Some(_) => archive::BASE_SOURCE.into(),
                        None => "snapshot".into(),
                    },
                    format: if name.starts_with('f') { 1 } else { 2 },
                    archive,
                    ..Record::sample()
                }
            })
            .collect()
    }

    /// What `surplus` names, and the minute of the oldest backup kept.
    fn pruned(names: &[&str], keep_last: usize) -> (Vec<String>, Option<u64>) {
        let (doomed, oldest_kept) = surplus(records(names), keep_last);
        let minute = |micros: u64| (micros / 60_000_000) % 60;
        let ids = doomed.into_iter().map(|r| r.id.to_string()).collect();
        (ids, oldest_kept.map(minute))
    }

    #[test]
    fn backups_and_bases_are_counted_apart() {
        // A burst of bases after the backups pushes no backup out (counted
        // together, before, b1 and b2 went); the bases beyond the newest
        // two are named, for `bases_kept` to judge by where their windows
        // end against the oldest backup kept (b1).
        let burst = ["b1", "b2", "a3", "a4", "a5", "a6", "a7"];
        assert_eq!(
            pruned(&burst, 2),
            (vec!["a3".into(), "a4".into(), "a5".into()], Some(1))
        );
        assert_eq!(
            pruned(&burst, 1),
            (
                vec![
                    "b1".into(),
                    "a3".into(),
                    "a4".into(),
                    "a5".into(),
                    "a6".into()
                ],
                Some(2)
            )
        );
        // With no backup, nothing for windows to reach.
        assert_eq!(pruned(&["a1", "a2", "a3"], 2), (vec!["a1".into()], None));
        // Fewer backups than kept: all kept, the oldest is how far back.
        assert_eq!(
            pruned(&["a1", "a2", "b3", "a4"], 2),
            (vec!["a1".into()], Some(3))
        );
        // Format 1 counts for nothing, and goes once enough are bound.
        assert_eq!(
            pruned(&["f1", "b2", "b3", "a4"], 2),
            (vec!["f1".into()], Some(2))
        );
        assert_eq!(pruned(&["f1", "b2", "b3", "a4"], 3), (vec![], Some(2)));
    }

    /// A storage whose record of `failing` cannot be given now.
    struct Flaky {
        inner: storage::dir::DirStorage,
        failing: BackupId,
    }

    impl Storage for Flaky {
        fn location(&self, id: &BackupId) -> String {
            self.inner.location(id)
        }
        fn prepare(&self, id: &BackupId) -> Result<()> {
            self.inner.prepare(id)
        }
        fn create(&self, id: &BackupId) -> Result<Box<dyn storage::ObjectWriter>> {
            self.inner.create(id)
        }
        fn open(&self, id: &BackupId, offset: u64) -> Result<Box<dyn io::Read + Send>> {
            self.inner.open(id, offset)
        }
        fn put_record(&self, id: &BackupId, json: &[u8]) -> Result<()> {
            self.inner.put_record(id, json)
        }
        fn get_record(&self, id: &BackupId) -> Result<Vec<u8>> {
            match *id == self.failing {
                true => Err(Error::storage("Swift answered 503")),
                false => self.inner.get_record(id),
            }
        }
        fn list(&self) -> Result<Vec<BackupId>> {
            self.inner.list()
        }
        fn delete(&self, id: &BackupId) -> Result<()> {
            self.inner.delete(id)
        }
        fn patience(&self) -> std::time::Duration {
            self.inner.patience()
        }
        fn archive(&self) -> Box<dyn Storage> {
            self.inner.archive()
        }
    }

    /// Found by a review: a base whose record was read for the count but
    /// not for the windows (a Swift 503 on that one request) had no window
    /// to judge, and went, though its window reached the oldest backup kept.
    #[test]
    fn a_base_whose_window_cannot_be_read_now_is_kept() {
        let dir = crate::testing::scratch_dir("prune-flaky");
        let key = MasterKey::from_bytes([7; 32]);
        let flaky = Flaky {
            inner: storage::dir::DirStorage::new(dir.clone()),
            failing: BackupId::parse("a01").unwrap(),
        };
        // a01, extended to 03:30, and a40; the backup kept was made at 03:20.
        let mut bases = records(&["a01", "a40"]);
        bases[0].archive.as_mut().unwrap().last_at = "2026-11-25T03:30:00.000000Z".into();
        for base in &mut bases {
            base.location = flaky.location(&base.id);
            let stored = base.to_stored(&key);
            flaky.inner.put_record(&base.id, &stored).unwrap();
        }
        let base = bases.remove(0);
        let reach = std::collections::BTreeMap::from([(
            base.instance.clone(),
            units::parse_rfc3339_micros("2026-11-25T03:20:00.000000Z").unwrap(),
        )]);
        let kept = |storage: &dyn Storage| -> Vec<String> {
            let kept = bases_kept(storage, &key, std::slice::from_ref(&base), &reach, None);
            kept.unwrap().into_iter().map(|(_, why)| why).collect()
        };
        assert_eq!(
            kept(&flaky.inner),
            ["its window reaches the oldest backup kept"]
        );
        assert_eq!(kept(&flaky), ["its record cannot be read now"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
