//! The status file, for monitoring a fleet: after each backup and restore,
//! when `status_file` is set, a small JSON document with the last attempt and
//! the last success of each operation, and beside it (`.prom`) the same in
//! Prometheus's text format for node_exporter's textfile collector. Both are
//! replaced atomically, so a reader never sees half a file, and are readable
//! by everyone (mode 0644): the monitoring agent is not root. Failing to write
//! them is logged, never turned into a failed backup.

use crate::error::Error;
use crate::fs::AtomicFile;
use crate::units::utc_timestamps;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// More than a status file of ours ever holds (a few entries).
const MAX_STATUS_SIZE: u64 = 1 << 20;

/// What one run of an operation did.
pub struct Outcome<'a> {
    pub operation: &'a str,
    pub instance: &'a str,
    pub duration: Duration,
    /// Bytes of RDB moved, when it succeeded.
    pub size: Option<u64>,
    /// The backup concerned, when known.
    pub id: Option<String>,
    pub error: Option<&'a Error>,
}

pub fn write(path: &Path, outcome: &Outcome) {
    if let Err(e) = try_write(path, outcome) {
        log::warn!("could not write the status file {}: {e}", path.display());
    }
}

/// Where the archiver stands, for an alert when archiving stops or falls
/// behind: written after each chunk and every few seconds.
pub struct Archiving<'a> {
    pub instance: &'a str,
    /// The window being extended, and the primary's history ID: none while
    /// the archiver waits to start a window.
    pub base: Option<&'a str>,
    pub replid: Option<&'a str>,
    /// The replication offset stored.
    pub offset: Option<u64>,
    /// When the last chunk was stored, and the receive time of its last command.
    pub last_chunk: Option<SystemTime>,
    pub last_stored_micros: Option<u64>,
    /// Received but not stored yet: how long the oldest of it has waited, and how much.
    pub lag: Duration,
    pub lag_bytes: u64,
    pub error: Option<&'a Error>,
}

/// The archiver's files beside the status file: `NAME-archive.json` and
/// `.prom`. Files of their own, so that the archiver, writing every few
/// seconds, never races a backup's read-modify-write of the shared one.
pub fn archive_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-archive.{}", ext.to_string_lossy()),
        None => format!("{stem}-archive"),
    };
    path.with_file_name(name)
}

pub fn write_archiving(path: &Path, state: &Archiving) {
    let path = &archive_path(path);
    let entry = json!({
        "instance": state.instance,
        "base": state.base,
        "replid": state.replid,
        "offset": state.offset,
        "last_chunk_unix": state.last_chunk.map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()),
        "last_stored_command_unix": state.last_stored_micros.map(|m| m as f64 / 1e6),
        "lag_seconds": state.lag.as_secs_f64(),
        "lag_bytes": state.lag_bytes,
        "last_error": state.error.map(|e| e.message().to_string()),
        "updated_unix": SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
    });
    // Written every few seconds: a failure is said once, until a write
    // works again.
    static FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let written = reached_through_roots(path)
        .and_then(|()| replace_entry(path, read_existing(path), "archive", entry));
    match written {
        Ok(()) => FAILING.store(false, std::sync::atomic::Ordering::Relaxed),
        Err(e) if !FAILING.swap(true, std::sync::atomic::Ordering::Relaxed) => {
            log::warn!("could not write the status file {}: {e}", path.display());
        }
        Err(_) => {}
    }
}

fn try_write(path: &Path, outcome: &Outcome) -> std::io::Result<()> {
    reached_through_roots(path)?;
    let now = SystemTime::now();
    let all = read_existing(path);
    // Another instance's last success is not this one's (two instances
    // sharing a status file, or one's file moved under the other's name).
    let previous = all
        .get(outcome.operation)
        .filter(|entry| entry["instance"] == outcome.instance)
        .cloned()
        .unwrap_or(Value::Null);
    let (at, _) = utc_timestamps(now);
    let epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let exit_code = outcome.error.map_or(0, |e| e.exit_code());
    let mut entry = json!({
        "instance": outcome.instance,
        "last_attempt": at,
        "last_attempt_unix": epoch,
        "last_result": if outcome.error.is_none() { "ok" } else { "failed" },
        "last_exit_code": exit_code,
        "last_duration_seconds": outcome.duration.as_secs_f64(),
        "last_error": outcome.error.map(|e| e.message().to_string()),
        "last_id": outcome.id,
    });
    if outcome.error.is_none() {
        entry["last_success"] = json!(at);
        entry["last_success_unix"] = json!(epoch);
        entry["last_size_bytes"] = json!(outcome.size);
    } else {
        for kept in ["last_success", "last_success_unix", "last_size_bytes"] {
            entry[kept] = previous.get(kept).cloned().unwrap_or(Value::Null);
        }
    }
    replace_entry(path, all, outcome.operation, entry)
}

/// The status folder may be another account's (it can only replace what
/// is under the names there), but not a folder on the way to it: that
/// account could swap the status folder for any folder of root's, and
/// root would read, create or replace files under the status names there.
fn reached_through_roots(path: &Path) -> std::io::Result<()> {
    let folder = crate::fs::parent_of(path);
    let us = rustix::process::geteuid().as_raw();
    match crate::fs::writers::folder_of_others(folder, us)? {
        None => Ok(()),
        Some(on_the_way) => Err(std::io::Error::other(format!(
            "{}, and could swap the status folder for another; put it in a folder reached through folders only root may write",
            on_the_way.whoever_may_write()
        ))),
    }
}

/// Put `entry` under `operation` in `all` (what the JSON file held), and
/// write both files. The caller has checked the way to them
/// (`reached_through_roots`).
fn replace_entry(
    path: &Path,
    mut all: Map<String, Value>,
    operation: &str,
    entry: Value,
) -> std::io::Result<()> {
    all.insert(operation.to_string(), entry);

    // Read by monitoring (node_exporter runs as its own user); nothing in
    // them is secret.
    let mut json_file = AtomicFile::create(path)?;
    json_file.set_mode(0o644)?;
    serde_json::to_writer_pretty(&mut json_file, &Value::Object(all.clone()))?;
    writeln!(json_file)?;
    json_file.commit(false)?;

    let mut prom = AtomicFile::create(&prom_path(path))?;
    prom.set_mode(0o644)?;
    prom.write_all(prometheus(&all).as_bytes())?;
    prom.commit(false)
}

/// What the status file held, if this tool wrote it: the folder may be
/// another account's (node_exporter's textfile folder often is), and what
/// that account put under the name (a link to a file of root's, a FIFO, a
/// forged entry) is neither followed, waited on nor carried on.
fn read_existing(path: &Path) -> Map<String, Value> {
    crate::fs::read_own(path, MAX_STATUS_SIZE)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|value| value.as_object().cloned())
        .unwrap_or_default()
}

/// `status.json` → `status.prom`, beside it.
pub fn prom_path(path: &Path) -> PathBuf {
    path.with_extension("prom")
}

/// Times of "last good" alerts go by: none known is 0, so that the alert
/// fires on it (a host whose series were missing would be silent, and
/// `absent()` speaks only for a fleet's whole series).
const ZERO_WHEN_UNKNOWN: [&str; 2] = ["last_success_unix", "last_chunk_unix"];

/// `field` of `entry` as a gauge's value, in serde_json's own number
/// formatting (not std's float code).
fn gauge(entry: &Value, field: &str) -> Option<serde_json::Number> {
    match entry.get(field) {
        Some(Value::Number(value)) => Some(value.clone()),
        _ if ZERO_WHEN_UNKNOWN.contains(&field) => Some(0.into()),
        _ => None,
    }
}

fn prometheus(all: &Map<String, Value>) -> String {
    let metrics = [
        (
            "last_success_timestamp_seconds",
            "last_success_unix",
            "Unix time of the last successful run",
        ),
        (
            "last_attempt_timestamp_seconds",
            "last_attempt_unix",
            "Unix time of the last run",
        ),
        (
            "last_duration_seconds",
            "last_duration_seconds",
            "How long the last run took",
        ),
        (
            "last_size_bytes",
            "last_size_bytes",
            "Bytes of RDB in the last successful run",
        ),
        (
            "last_exit_code",
            "last_exit_code",
            "Exit code of the last run (0 = success)",
        ),
    ];
    let mut out = String::new();
    let archive = [
        (
            "archive_last_chunk_timestamp_seconds",
            "last_chunk_unix",
            "Unix time the archiver last stored a chunk of the write stream",
        ),
        (
            "archive_last_stored_command_timestamp_seconds",
            "last_stored_command_unix",
            "Receive time of the newest archived command",
        ),
        (
            "archive_lag_seconds",
            "lag_seconds",
            "How long the oldest received but unstored command has waited",
        ),
        (
            "archive_lag_bytes",
            "lag_bytes",
            "Bytes of stream received but not stored yet",
        ),
        (
            "archive_offset",
            "offset",
            "Replication offset stored by the archiver",
        ),
    ];
    if let Some(entry) = all.get("archive") {
        let instance = label(entry["instance"].as_str().unwrap_or(""));
        for (name, field, help) in archive {
            if let Some(value) = gauge(entry, field) {
                out.push_str(&format!(
                    "# HELP redis_backup_{name} {help}.\n# TYPE redis_backup_{name} gauge\nredis_backup_{name}{{instance=\"{instance}\"}} {value}\n"
                ));
            }
        }
        if let (Some(base), Some(replid)) = (entry["base"].as_str(), entry["replid"].as_str()) {
            out.push_str(&format!(
                "# HELP redis_backup_archive_history The window and replication history being archived.\n# TYPE redis_backup_archive_history gauge\nredis_backup_archive_history{{instance=\"{instance}\",base=\"{}\",replid=\"{}\"}} 1\n",
                label(base),
                label(replid)
            ));
        }
    }
    for (name, field, help) in metrics {
        out.push_str(&format!(
            "# HELP redis_backup_{name} {help}.\n# TYPE redis_backup_{name} gauge\n"
        ));
        for (operation, entry) in all.iter().filter(|(op, _)| *op != "archive") {
            let Some(value) = gauge(entry, field) else {
                continue;
            };
            let instance = entry["instance"].as_str().unwrap_or("");
            out.push_str(&format!(
                "redis_backup_{name}{{operation=\"{}\",instance=\"{}\"}} {value}\n",
                label(operation),
                label(instance)
            ));
        }
    }
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn a_failed_backup(path: &Path) {
        a_failed_backup_of(path, "i1");
    }

    fn a_failed_backup_of(path: &Path, instance: &str) {
        let failure = Error::redis("cannot reach Redis");
        write(
            path,
            &Outcome {
                operation: "backup",
                instance,
                duration: Duration::from_millis(10),
                size: None,
                id: None,
                error: Some(&failure),
            },
        );
    }

    /// README's alert is on the time since the last success: with none
    /// known (a first run that failed, a status file that could not be
    /// read back) the gauge was left out, and the alert had nothing to fire
    /// on. It is 0 now.
    #[test]
    fn a_success_never_known_is_a_time_of_zero() {
        let dir = crate::testing::scratch_dir("status-unknown");
        let path = dir.join("status.json");
        a_failed_backup(&path);
        let prom = std::fs::read_to_string(prom_path(&path)).unwrap();
        assert!(
            prom.contains(
                "\nredis_backup_last_success_timestamp_seconds{operation=\"backup\",instance=\"i1\"} 0\n"
            ),
            "{prom}"
        );
        // What stays unknown without a success is left out.
        assert!(!prom.contains("redis_backup_last_size_bytes{"), "{prom}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Found by review: a status file of root's that another account may
    /// move under the name (another instance's, in a folder it can write)
    /// had its last success carried on as this instance's.
    #[test]
    fn another_instances_last_success_is_not_carried_on() {
        let dir = crate::testing::scratch_dir("status-other");
        let path = dir.join("status.json");
        write(
            &path,
            &Outcome {
                operation: "backup",
                instance: "i1",
                duration: Duration::from_millis(10),
                size: Some(1),
                id: Some("b1".into()),
                error: None,
            },
        );
        a_failed_backup_of(&path, "i2");
        let status: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            status["backup"]["last_success_unix"],
            Value::Null,
            "{status}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The status folder may be another account's (node_exporter's
    /// textfile folder often is), and so what stands under the status
    /// file's name before it is written again: a link to a file of root's
    /// was read and its keys copied into the 0644 file; a FIFO stopped the
    /// writer for good (on the archiver's own thread, and with it the
    /// archive); a file of that account's own had its forged entries
    /// (a backup's last success) carried on as ours.
    #[test]
    fn what_another_account_put_under_the_status_name_is_not_believed() {
        let dir = crate::testing::scratch_dir("status-planted");
        let secret = dir.join("secret.json");
        std::fs::write(&secret, br#"{"token": "s3cr3t"}"#).unwrap();
        let path = dir.join("status.json");
        std::os::unix::fs::symlink(&secret, &path).unwrap();
        a_failed_backup(&path);
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(!written.contains("s3cr3t"), "{written}");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read(&secret).unwrap(), br#"{"token": "s3cr3t"}"#);

        std::fs::remove_file(&path).unwrap();
        crate::testing::make_fifo(&path);
        let (done, finished) = std::sync::mpsc::channel();
        let fifo = path.clone();
        std::thread::spawn(move || {
            a_failed_backup(&fifo);
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(5))
            .expect("the status was written without waiting on the FIFO");

        let forged = br#"{"backup": {"last_success_unix": 4102444800}}"#;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, forged).unwrap();
        std::os::unix::fs::lchown(&path, Some(65534), Some(65534)).unwrap();
        a_failed_backup(&path);
        let status: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            status["backup"]["last_success_unix"],
            Value::Null,
            "{status}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn success_then_failure_keeps_the_last_success() {
        let dir = std::env::temp_dir().join(format!("rb-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status.json");
        let ok = Outcome {
            operation: "backup",
            instance: "i1",
            duration: Duration::from_millis(1500),
            size: Some(1234),
            id: Some("b1".into()),
            error: None,
        };
        write(&path, &ok);
        let failure = Error::redis("cannot reach Redis");
        write(
            &path,
            &Outcome {
                size: None,
                id: None,
                error: Some(&failure),
                ..ok
            },
        );
        let status: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let backup = &status["backup"];
        assert_eq!(backup["last_result"], "failed");
        assert_eq!(backup["last_exit_code"], 3);
        assert_eq!(backup["last_size_bytes"], 1234, "kept from the success");
        assert!(backup["last_success_unix"].as_u64().is_some());
        let prom = std::fs::read_to_string(prom_path(&path)).unwrap();
        assert!(
            prom.contains("redis_backup_last_exit_code{operation=\"backup\",instance=\"i1\"} 3"),
            "{prom}"
        );
        assert!(prom
            .contains("redis_backup_last_size_bytes{operation=\"backup\",instance=\"i1\"} 1234"));
        assert!(prom.contains("# TYPE redis_backup_last_success_timestamp_seconds gauge"));
        use std::os::unix::fs::PermissionsExt;
        for file in [path.clone(), prom_path(&path)] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{} is for monitoring to read", file.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
