//! The test harness: a scratch directory per test, a real `redis-server`
//! started and stopped through the `systemctl` stand-in in `tests/support`, a
//! tiny RESP client (independent of the crate's own), a fake Redis that
//! answers from a script, data of every type, and a runner for the real
//! `redis-backup` binary with a clean environment.
//!
//! Nothing here sleeps a fixed time: everything that waits polls against a
//! deadline and fails with a message saying what it waited for.
//!
//! One file per part: `scratch`, `resp`, `data`, `run`, `redis`,
//! `fake_redis`, `other_host`, `swift`, `proxy`, `records`; this one holds the small
//! helpers they share. Nothing unused is kept (no `allow(dead_code)`): a
//! helper goes when its last user does.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod data;
mod fake_redis;
mod other_host;
mod proxy;
mod records;
mod redis;
mod resp;
mod run;
mod scratch;
mod swift;

pub use data::*;
pub use fake_redis::*;
pub use other_host::*;
pub use proxy::*;
pub use records::*;
pub use redis::*;
pub use resp::*;
pub use run::*;
pub use scratch::*;
pub use swift::*;

/// How long anything may take before a test gives up on it.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// How long one run of the binary may take before it is killed.
pub const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_redis-backup");

/// `tests/support`, which holds the `systemctl` stand-in.
pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

/// Poll `f` until it returns `Some`, or panic after `DEADLINE` naming `what`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex(&hasher.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .map(|euid| euid == "0")
        .unwrap_or(false)
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

/// Uid and gid of a local user, via `id` (no libc in the tests).
pub fn user_ids(user: &str) -> (u32, u32) {
    let get = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .expect("run id");
        assert!(out.status.success(), "no user {user}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (get("-u"), get("-g"))
}

/// The arguments of `setpriv` that run a program as `user`: its uid and
/// primary gid, no other groups.
pub fn setpriv_args(user: &str) -> [String; 3] {
    let (uid, gid) = user_ids(user);
    [
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_string(),
    ]
}

pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Names of the entries of `dir`, sorted; empty if `dir` does not exist.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read dir {}: {e}", dir.display()),
    };
    names.sort();
    names
}

/// Every regular file under `dir`, recursively: path relative to `dir` ->
/// SHA-256. Empty if `dir` does not exist.
pub fn file_hashes(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for name in dir_entries(dir) {
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &path, out);
            } else if meta.is_file() {
                out.insert(rel, sha256_file(&path));
            } else {
                out.insert(rel, format!("(not a file: {:?})", meta.file_type()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// SIGKILL `pid` (gone already is fine).
pub fn kill9(pid: u32) {
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
}

/// A process held by SIGSTOP until this is dropped (SIGCONT): so that a test
/// looks at it, or at what it is doing, before it moves on, however slowly
/// the test gets to look on a loaded machine.
pub struct Stopped(u32);

impl Stopped {
    /// Stop `pid`; panics, naming `what`, if it is gone already.
    #[track_caller]
    pub fn hold(pid: u32, what: &str) -> Stopped {
        let stopped = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .expect("run kill")
            .success();
        assert!(stopped, "{what} ({pid}) was gone before it could be held");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// Pids of live (not zombie) processes whose command line names
/// `redis-server` or `valkey-server`.
pub fn live_redis_servers() -> Vec<u32> {
    dir_entries(Path::new("/proc"))
        .into_iter()
        .filter_map(|name| name.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("redis-server") || cmdline.contains("valkey-server"))
                && !matches!(state, None | Some('Z') | Some('X'))
        })
        .collect()
}

/// How restore names its work folder in the data dir:
/// `redis-backup-restore-<UTC time>`.
pub const RESTORE_WORK_PREFIX: &str = "redis-backup-restore-";

/// Bytes of the regular files under `dir`, at any depth.
pub fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&e.path()),
            Ok(kind) if kind.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
