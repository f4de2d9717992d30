//! The commands, each run as its help says, and the printing of every
//! command's result (human lines, or one JSON document with `--json`).
//! Backup, restore and archive are orchestrations of their own
//! (`backup`, `restore`, `archive`); the commands around a stored backup
//! live here, a family to a file: the catalog (`list`, `show`, `delete`,
//! `timeline`), `prune`, reading a backup back (`verify`, `export`,
//! `export --at`), and `keygen`.

mod catalog;
mod keygen;
mod prune;
mod read;

use crate::archive;
use crate::backup;
use crate::cli::{Command, Target};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::restore::{self, Restored};
use crate::status;
use crate::storage;
use crate::units::{self, human_size};
use serde_json::{json, Value};
use std::io::{self, Write};
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
        Command::Verify(target) => read::verify(config, target),
        Command::List { instance } => catalog::list(config, instance.as_deref()),
        Command::Show(id) => catalog::show(config, &id),
        Command::Delete(id) => catalog::delete(config, &id),
        Command::Export {
            id,
            out,
            allow_format_1,
        } => read::export(config, &id, &out, allow_format_1),
        Command::Keygen { out } => keygen::keygen(out.as_deref().unwrap_or(&config.key_file)),
        Command::ExportAt {
            micros,
            instance,
            out,
        } => read::export_at(config, micros, instance.as_deref(), &out),
        Command::Archive { instance } => {
            archive::follow::run(config, archive::follow::Request { instance })?;
            Ok(Report {
                lines: vec![],
                json: json!({ "archiving": "stopped" }),
            })
        }
        Command::Timeline { instance } => catalog::timeline(config, instance.as_deref()),
        Command::Prune {
            keep_last,
            instance,
            dry_run,
        } => prune::prune(config, keep_last, instance.as_deref(), dry_run),
        Command::Help(_) | Command::Version => unreachable!("handled by main"),
    }
}

/// The status file of a backup or restore, when one is configured.
/// How long a run waits for another's report to be written.
const STATUS_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The lock of the status file's read-modify-write: beside the host lock,
/// whose folder is checked to be root's alone.
fn status_lock_of(config: &Config) -> std::path::PathBuf {
    let mut name = config.lock_file.clone().into_os_string();
    name.push(".status");
    name.into()
}

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
    // Its read-modify-write, one run at a time: a run's report made while
    // another wrote its own was lost. Not the host lock, which a run
    // refused for it does not have, and which a restore may hold for long.
    let _status_lock = crate::fs::lock_waiting(&status_lock_of(config), STATUS_LOCK_WAIT);
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

/// A new file the operator named (`export --out`, `keygen --out`) is
/// written only where no other account may replace it: in a folder the
/// data dir's owner may write (the data dir itself, where a dump is put
/// in place by hand), that account would rename root's temporary file
/// away and put its own under the name, for root to link into place.
fn refuse_folder_of_others(out: &Path) -> Result<()> {
    let who = crate::fs::writers::others_who_may_replace(out).map_err(|e| {
        Error::usage(format!(
            "cannot check who may write beside {}: {e}",
            out.display()
        ))
    })?;
    match who {
        None => Ok(()),
        Some(who) => Err(Error::usage(format!(
            "refusing to write {} as root: {who}, and could put a file of their own in its place; write it in a folder only root may write (or /tmp, /var/tmp) and move it from there",
            out.display()
        ))),
    }
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
