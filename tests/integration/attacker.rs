//! The attacker of the least-privilege tests (issue 13), as a harness module:
//!
//! - `owner_user()`: an unprivileged system user, made once per process, that
//!   owns the Redis data dir and redis.conf (0640, as Debian ships it) and
//!   runs redis-server, as the `redis` account does (`debian_redis()`);
//! - programs that run as that user (`setpriv`) and race the root-run tool:
//!   `tests/support/attacks/attacker.c` (inotify and tight polling), built
//!   once per process with gcc, started with `Attacker::start`, and the
//!   module `evil_module.c` that a `loadmodule` line makes a server load;
//! - root-only victims outside the data dir (`Victim`, `RootOnly`) and the
//!   checks that owner, mode, bytes and entries are unchanged and that no
//!   copy of a victim is readable by the attacker in the data dir;
//! - `FakeRedis`, an in-process server speaking RESP on 127.0.0.1 with
//!   scripted replies, which can drip-feed a reply (`ScriptedRedis` plays a
//!   Redis that saves).

// Shared by the test modules; not every one uses every part.
#![allow(dead_code)]

use crate::harness::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// The redis account

/// The name of the unprivileged user the harness creates.
const OWNER: &str = "rb-redis";

/// An unprivileged system user (no home, no shell, its own group), created
/// once per process with `useradd`; "already exists" (another run, a
/// parallel process) is fine. It plays the `redis` account: it owns the data
/// dir and redis.conf and runs redis-server.
pub fn owner_user() -> &'static str {
    static CREATED: OnceLock<()> = OnceLock::new();
    CREATED.get_or_init(|| {
        assert!(
            is_root(),
            "the least-privilege tests create the user {OWNER} and act as it: run them as root"
        );
        let exists = || {
            Command::new("id")
                .arg(OWNER)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        wait_for(&format!("useradd to create {OWNER}"), || {
            if exists() {
                return Some(());
            }
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .args(["--user-group", OWNER])
                .output()
                .unwrap_or_else(|e| panic!("cannot run useradd: {e}"));
            // 9: the name is taken (a parallel run made it); 10: the passwd
            // or group file is locked by another useradd: try again.
            match out.status.code() {
                Some(0) | Some(9) | Some(10) => {}
                other => panic!(
                    "useradd {OWNER} failed ({other:?}): {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
            exists().then_some(())
        });
    });
    OWNER
}

/// Uid and gid of `owner_user()`.
pub fn owner_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| user_ids(owner_user()))
}

/// A Redis set up as on Debian: redis-server runs as `owner_user()`, which
/// owns the data dir and redis.conf (mode 0640).
pub fn debian_redis() -> Builder {
    TestRedis::builder()
        .run_as(owner_user())
        .redis_conf_owner(owner_user())
}

/// `program` run as `user` (its uid and primary gid, no other groups).
pub fn as_user(user: &str, program: &str) -> Run {
    let (uid, gid) = user_ids(user);
    Run::new("setpriv").args(&[
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_string(),
        program.to_string(),
    ])
}

/// `program` run as `owner_user()`.
pub fn as_owner(program: &str) -> Run {
    as_user(owner_user(), program)
}

/// `sh -c script` as `owner_user()`, which must succeed.
#[track_caller]
pub fn owner_sh(script: &str) -> Output {
    let out = as_owner("/bin/sh").args(&["-c", script]).run();
    out.ok();
    out
}

/// Whether `uid:gid` (no supplementary groups) has `bits` (4 read, 2 write,
/// 1 search/execute) on a file with this metadata.
pub fn user_may(meta: &fs::Metadata, uid: u32, gid: u32, bits: u32) -> bool {
    let mode = meta.mode();
    let granted = if meta.uid() == uid {
        mode >> 6
    } else if meta.gid() == gid {
        mode >> 3
    } else {
        mode
    } & 0o7;
    granted & bits == bits
}

// ---------------------------------------------------------------------------
// The attacker's programs

const ATTACKER_C: &str = include_str!("../support/attacks/attacker.c");
const MODULE_C: &str = include_str!("../support/attacks/evil_module.c");

struct Built {
    attacker: PathBuf,
    module: PathBuf,
}

/// The programs, compiled once per process (and kept, by the hash of their
/// source, in Cargo's target tmp dir for later runs).
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let hash = sha256_hex(format!("{ATTACKER_C}\0{MODULE_C}").as_bytes());
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rb-attacks-{}", &hash[..16]));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Built {
            attacker: compile(&dir, "rb-attacker", ATTACKER_C, &[]),
            module: compile(&dir, "evil_module.so", MODULE_C, &["-shared", "-fPIC"]),
        }
    })
}

fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    if out.is_file() {
        return out;
    }
    let pid = std::process::id();
    let src = dir.join(format!("{name}.{pid}.c"));
    let tmp = dir.join(format!("{name}.{pid}.tmp"));
    fs::write(&src, source).unwrap_or_else(|e| panic!("write {}: {e}", src.display()));
    let result = Command::new("gcc")
        .args(["-O2", "-Wall"])
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .output();
    let output = match result {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "gcc is needed to build the attacker programs of the least-privilege tests \
             (apt-get install gcc): {e}"
        ),
        Err(e) => panic!("cannot run gcc: {e}"),
    };
    assert!(
        output.status.success(),
        "gcc could not build {name}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = fs::remove_file(&src);
    // A rename: a parallel process building the same source is harmless.
    fs::rename(&tmp, &out).unwrap_or_else(|e| panic!("rename {}: {e}", tmp.display()));
    out
}

/// `<scratch>/attacker`, the attacker's own directory (owned by it, 0755):
/// its program, logs and ready files. Made on first use.
pub fn lair(scratch: &Path) -> PathBuf {
    let dir = scratch.join("attacker");
    if !dir.is_dir() {
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let (uid, gid) = owner_ids();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the attacker's dir");
        set_mode(&dir, 0o755);
    }
    let program = dir.join("rb-attacker");
    if !program.exists() {
        fs::copy(&built().attacker, &program).expect("copy rb-attacker");
        set_mode(&program, 0o755);
    }
    dir
}

/// The attacker's module, copied to `<scratch>/evil/evil.so`; each server
/// that loads it writes its uid to `<scratch>/evil/markers/uid-<pid>` (a
/// world-writable 1777 directory).
pub struct EvilModule {
    pub so: PathBuf,
    pub markers: PathBuf,
}

impl EvilModule {
    pub fn new(scratch: &Path) -> EvilModule {
        let dir = scratch.join("evil");
        let markers = dir.join("markers");
        fs::create_dir_all(&markers).expect("mkdir evil/markers");
        set_mode(&dir, 0o755);
        set_mode(&markers, 0o1777);
        let so = dir.join("evil.so");
        fs::copy(&built().module, &so).expect("copy evil.so");
        let (uid, gid) = owner_ids();
        std::os::unix::fs::chown(&so, Some(uid), Some(gid)).expect("chown evil.so");
        set_mode(&so, 0o755);
        EvilModule { so, markers }
    }

    /// The uids written by the servers that loaded the module: marker file
    /// name -> uid.
    pub fn uids(&self) -> BTreeMap<String, u32> {
        dir_entries(&self.markers)
            .into_iter()
            .map(|name| {
                let text = fs::read_to_string(self.markers.join(&name)).unwrap_or_default();
                let uid = text
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("marker {name} holds {text:?}, not a uid"));
                (name, uid)
            })
            .collect()
    }
}

/// One attacker program running as `owner_user()` in the background, armed;
/// killed when dropped.
pub struct Attacker {
    child: Child,
    mode: String,
    log: PathBuf,
}

static ATTACKERS: AtomicUsize = AtomicUsize::new(0);

impl Attacker {
    /// Start `rb-attacker MODE READY ARGS...` (see attacker.c) as the owner
    /// user, and wait until it says it is armed.
    pub fn start<S: AsRef<OsStr>>(scratch: &Path, mode: &str, args: &[S]) -> Attacker {
        let dir = lair(scratch);
        let n = ATTACKERS.fetch_add(1, Ordering::SeqCst);
        let ready = dir.join(format!("{mode}-{n}.ready"));
        let log = dir.join(format!("{mode}-{n}.log"));
        let log_file = fs::File::create(&log).expect("create the attacker's log");
        let (uid, gid) = owner_ids();
        let child = Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(dir.join("rb-attacker"))
            .arg(mode)
            .arg(&ready)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the attacker ({mode}): {e}"));
        let mut attacker = Attacker {
            child,
            mode: mode.to_string(),
            log,
        };
        wait_for(&format!("the attacker ({mode}) to be armed"), || {
            if let Ok(Some(status)) = attacker.child.try_wait() {
                panic!(
                    "the attacker ({mode}) ended ({status}) before it was armed:\n{}",
                    attacker.log()
                );
            }
            ready.exists().then_some(())
        });
        attacker
    }

    /// What it said it did so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether one of its lines contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.log().contains(text)
    }
}

impl fmt::Display for Attacker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--- attacker ({}) said ---\n{}--------------",
            self.mode,
            self.log()
        )
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Root-only victims

static VICTIMS: AtomicUsize = AtomicUsize::new(0);

/// Bytes no other test or file has: `what`, the pid, a counter, the time.
pub fn distinctive(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!(
        "RBV{:x}{:x}{:x}-{what}",
        std::process::id(),
        VICTIMS.fetch_add(1, Ordering::SeqCst),
        nanos % 0xffff_ffff
    )
}

/// What a tree looked like: relative path ("." for the top) -> type, owner,
/// mode and content hash or link target. Symlinks are not followed.
pub fn tree_of(top: &Path) -> BTreeMap<String, String> {
    fn describe(path: &Path) -> String {
        let meta =
            fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let who = format!("{}:{} {:04o}", meta.uid(), meta.gid(), meta.mode() & 0o7777);
        let kind = meta.file_type();
        if kind.is_dir() {
            format!("dir {who}")
        } else if kind.is_file() {
            format!("file {who} sha256 {}", sha256_file(path))
        } else if kind.is_symlink() {
            format!("symlink -> {}", fs::read_link(path).unwrap().display())
        } else {
            format!("{kind:?} {who}")
        }
    }
    fn walk(top: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for name in dir_entries(dir) {
            let path = dir.join(&name);
            let rel = path.strip_prefix(top).unwrap().display().to_string();
            out.insert(rel, describe(&path));
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                walk(top, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    if fs::symlink_metadata(top).is_err() {
        out.insert(".".to_string(), "(missing)".to_string());
        return out;
    }
    out.insert(".".to_string(), describe(top));
    if fs::symlink_metadata(top).is_ok_and(|m| m.is_dir()) {
        walk(top, top, &mut out);
    }
    out
}

/// The differences between two `tree_of`, one line each.
fn tree_diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let mut lines = Vec::new();
    for (path, was) in before {
        match after.get(path) {
            None => lines.push(format!("  {path}: {was}  ->  gone")),
            Some(now) if now != was => lines.push(format!("  {path}: {was}  ->  {now}")),
            Some(_) => {}
        }
    }
    for (path, now) in after {
        if !before.contains_key(path) {
            lines.push(format!("  {path}: new: {now}"));
        }
    }
    lines.join("\n")
}

/// A root-only directory (root:root 0700) outside the data dir, with root-only
/// files (0600), and what it looked like when it was made.
pub struct RootOnly {
    pub dir: PathBuf,
    before: BTreeMap<String, String>,
}

impl RootOnly {
    /// `parent/name`, empty.
    pub fn new(parent: &Path, name: &str) -> RootOnly {
        let dir = parent.join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).expect("chown root dir");
        set_mode(&dir, 0o700);
        let before = tree_of(&dir);
        RootOnly { dir, before }
    }

    /// Add the root-only file `name` holding `bytes` (0600).
    pub fn file(&mut self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::os::unix::fs::chown(&path, Some(0), Some(0)).expect("chown root file");
        set_mode(&path, 0o600);
        self.before = tree_of(&self.dir);
        path
    }

    /// What changed in the directory since it was made (entries, owners,
    /// modes, bytes), one line each; empty if nothing did.
    pub fn problems(&self) -> Vec<String> {
        let after = tree_of(&self.dir);
        if after == self.before {
            return Vec::new();
        }
        vec![format!(
            "the root-only {} was changed:\n{}",
            self.dir.display(),
            tree_diff(&self.before, &after)
        )]
    }

    /// Fail, naming every difference, unless the directory and everything in
    /// it has the same entries, owners, modes and bytes as when it was made.
    #[track_caller]
    pub fn assert_intact(&self, context: impl fmt::Display) {
        let problems = self.problems();
        assert!(problems.is_empty(), "{}\n{context}", problems.join("\n"));
    }
}

/// A root-only file (root:root 0600) of distinctive bytes in a root-only
/// directory (0700) outside the data dir: what the attacker is after.
pub struct Victim {
    pub root: RootOnly,
    pub file: PathBuf,
    pub bytes: Vec<u8>,
    /// What a copy would contain (the distinctive part of `bytes`).
    pub needle: Vec<u8>,
}

impl Victim {
    /// `parent/name/secret`, a few lines of distinctive text.
    pub fn new(parent: &Path, name: &str) -> Victim {
        let needle = distinctive(name).into_bytes();
        let mut bytes = b"root-only secret: ".to_vec();
        bytes.extend_from_slice(&needle);
        bytes.extend_from_slice(b"\nnot for the redis account\n");
        Victim::with_bytes(parent, name, "secret", bytes, needle)
    }

    /// `parent/name/file_name` holding `bytes`; `needle` is what a copy would
    /// contain.
    pub fn with_bytes(
        parent: &Path,
        name: &str,
        file_name: &str,
        bytes: Vec<u8>,
        needle: Vec<u8>,
    ) -> Victim {
        let mut root = RootOnly::new(parent, name);
        let file = root.file(file_name, &bytes);
        Victim {
            root,
            file,
            bytes,
            needle,
        }
    }

    /// `parent/name/file_name`, a real RDB (made by a real redis-server) of
    /// another instance, holding `key` = a distinctive value (the needle).
    pub fn rdb(parent: &Path, name: &str, file_name: &str, key: &str) -> Victim {
        // Short enough (<= 20 bytes) to be stored as it is, not compressed.
        let value = distinctive("");
        let value = value[..value.len().min(20)].to_string();
        let bytes = make_rdb(&[(key, value.as_bytes())]);
        Victim::with_bytes(parent, name, file_name, bytes, value.into_bytes())
    }

    pub fn dir(&self) -> &Path {
        &self.root.dir
    }

    /// The value of the victim RDB's key (`rdb` victims).
    pub fn value(&self) -> &[u8] {
        &self.needle
    }

    /// Set the file's modification time to now, as if the instance it belongs
    /// to had just saved (its owner, mode and bytes stay).
    pub fn touch(&self) {
        fs::File::options()
            .write(true)
            .open(&self.file)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .unwrap_or_else(|e| panic!("touch {}: {e}", self.file.display()));
    }

    /// How the victim differs from what it was: the file's owner (root), mode
    /// (0600) or bytes, or its directory; empty if it is intact.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let file = self.file.display();
        match fs::symlink_metadata(&self.file) {
            Err(e) => problems.push(format!("the root-only victim {file} is gone ({e})")),
            Ok(meta) => {
                let got = (meta.uid(), meta.gid(), meta.mode() & 0o7777);
                if got != (0, 0, 0o600) || !meta.is_file() {
                    problems.push(format!(
                        "the root-only victim {file} is now owned {}:{} mode {:04o} (was 0:0 0600)",
                        got.0, got.1, got.2
                    ));
                }
                let now = fs::read(&self.file).unwrap_or_default();
                if now != self.bytes {
                    problems.push(format!(
                        "the root-only victim {file} was overwritten: {} bytes now, {} before; it starts {:?}",
                        now.len(),
                        self.bytes.len(),
                        String::from_utf8_lossy(&now[..now.len().min(40)])
                    ));
                }
            }
        }
        problems.extend(self.root.problems());
        problems
    }

    /// Fail, naming everything that changed, unless the file keeps its owner,
    /// mode and bytes and its directory is as it was.
    #[track_caller]
    pub fn assert_intact(&self, context: impl fmt::Display) {
        assert_all_intact(&[self], context);
    }

    /// Fail if a regular file under `dir` that the attacker may read holds
    /// the victim's distinctive bytes.
    #[track_caller]
    pub fn assert_no_copy_readable_in(&self, dir: &Path, context: impl fmt::Display) {
        let (uid, gid) = owner_ids();
        let copies = readable_copies(dir, &self.needle, uid, gid);
        assert!(
            copies.is_empty(),
            "copies of the root-only victim {} readable by {}: {copies:?}\n{context}",
            self.file.display(),
            owner_user()
        );
    }
}

/// Fail, naming everything that changed in any of them, unless every victim
/// is intact (see `Victim::problems`).
#[track_caller]
pub fn assert_all_intact(victims: &[&Victim], context: impl fmt::Display) {
    let problems: Vec<String> = victims.iter().flat_map(|v| v.problems()).collect();
    assert!(problems.is_empty(), "{}\n{context}", problems.join("\n"));
}

/// Regular files under `dir` that `uid:gid` can read (every directory on the
/// way searchable, the file readable; symlinks not followed) whose bytes
/// contain `needle`.
pub fn readable_copies(dir: &Path, needle: &[u8], uid: u32, gid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &[u8], uid: u32, gid: u32, out: &mut Vec<PathBuf>) {
        for name in dir_entries(dir) {
            let path = dir.join(&name);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if user_may(&meta, uid, gid, 0o1) {
                    walk(&path, needle, uid, gid, out);
                }
            } else if meta.is_file() && user_may(&meta, uid, gid, 0o4) {
                let bytes = fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() && user_may(&meta, uid, gid, 0o1) => {
            walk(dir, needle, uid, gid, &mut out)
        }
        _ => {}
    }
    out
}

/// The bytes of an RDB holding `pairs` (string keys in db 0), written by a
/// throwaway redis-server.
pub fn make_rdb(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let scratch = Scratch::new("mkrdb");
    let socket = scratch.join("s.sock");
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args(["--unixsocketperm", "700", "--dir"])
        .arg(scratch.path())
        .args([
            "--dbfilename",
            "made.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--logfile"])
        .arg(scratch.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    let mut conn = wait_for("a throwaway redis-server to make an RDB", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the throwaway redis-server ended ({status})");
        }
        let mut c = Resp::unix(&socket).ok()?;
        matches!(c.try_call(&["PING"]), Ok(Reply::Status(_))).then_some(c)
    });
    for (key, value) in pairs {
        conn.ok(&[b"SET".as_slice(), key.as_bytes(), value]);
    }
    conn.ok(&["SAVE"]);
    let bytes = fs::read(scratch.join("made.rdb")).expect("read the RDB made");
    let _ = child.kill();
    let _ = child.wait();
    bytes
}

// ---------------------------------------------------------------------------
// A fake Redis: whatever answers on the port

/// What `FakeRedis` does with one command.
#[derive(Debug, Clone)]
pub enum Answer {
    /// These bytes at once (an encoded reply: see `resp_*`).
    Bytes(Vec<u8>),
    /// These bytes one at a time, `every` apart (a drip-feed), for as long as
    /// the client reads and the server lives.
    Drip { bytes: Vec<u8>, every: Duration },
    /// Close the connection without answering.
    Close,
    /// Never answer; keep the connection open until the server is dropped.
    Hang,
}

/// `+text`
pub fn resp_status(text: &str) -> Vec<u8> {
    format!("+{text}\r\n").into_bytes()
}

/// `-text`
pub fn resp_error(text: &str) -> Vec<u8> {
    format!("-{text}\r\n").into_bytes()
}

/// `:n`
pub fn resp_int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

/// `$len` and the bytes.
pub fn resp_bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// `$-1`
pub fn resp_nil() -> Vec<u8> {
    b"$-1\r\n".to_vec()
}

/// `*n` and the already encoded items.
pub fn resp_array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

type Handler = dyn Fn(&[Vec<u8>]) -> Answer + Send + Sync;

/// A server on 127.0.0.1 (port chosen by the system) that reads RESP
/// commands and answers each with what `handler` says; one thread per
/// connection. Dropping it shuts every connection down.
pub struct FakeRedis {
    pub port: u16,
    shared: Arc<FakeShared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

struct FakeShared {
    stop: AtomicBool,
    handler: Box<Handler>,
    received: Mutex<Vec<Vec<Vec<u8>>>>,
    open: Mutex<Vec<TcpStream>>,
    connections: AtomicUsize,
}

impl FakeRedis {
    pub fn start(handler: impl Fn(&[Vec<u8>]) -> Answer + Send + Sync + 'static) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Redis");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(FakeShared {
            stop: AtomicBool::new(false),
            handler: Box::new(handler),
            received: Mutex::new(Vec::new()),
            open: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                if let Ok(clone) = stream.try_clone() {
                    s.open.lock().expect("open lock").push(clone);
                }
                s.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&s);
                thread::spawn(move || serve_connection(&shared, stream));
            }
        });
        FakeRedis {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Every command received so far, arguments joined by spaces (lossy).
    pub fn commands(&self) -> Vec<String> {
        self.shared
            .received
            .lock()
            .expect("received lock")
            .iter()
            .map(|args| {
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    /// How many commands named `name` (case-insensitive) were received.
    pub fn count(&self, name: &str) -> usize {
        self.shared
            .received
            .lock()
            .expect("received lock")
            .iter()
            .filter(|args| {
                args.first()
                    .is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
            })
            .count()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.shared.open.lock().expect("open lock").iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn serve_connection(shared: &FakeShared, stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(args) = read_command(&mut reader) else {
            return;
        };
        shared
            .received
            .lock()
            .expect("received lock")
            .push(args.clone());
        match (shared.handler)(&args) {
            Answer::Bytes(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            Answer::Drip { bytes, every } => {
                for byte in bytes {
                    if shared.stop.load(Ordering::SeqCst) || writer.write_all(&[byte]).is_err() {
                        return;
                    }
                    thread::sleep(every);
                }
            }
            Answer::Close => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Answer::Hang => {
                while !shared.stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        }
    }
}

/// One command: a RESP array of bulk strings, or an inline command line.
/// `None` at the end of the stream or on garbage.
fn read_command(reader: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let line = read_line(reader)?;
    let Some(count) = line.strip_prefix(b"*") else {
        let text = String::from_utf8_lossy(&line).into_owned();
        let args: Vec<Vec<u8>> = text
            .split_whitespace()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        return if args.is_empty() {
            read_command(reader)
        } else {
            Some(args)
        };
    };
    let count: usize = std::str::from_utf8(count).ok()?.parse().ok()?;
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let header = read_line(reader)?;
        let len: usize = std::str::from_utf8(header.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let mut arg = vec![0u8; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

fn read_line(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).ok()?;
    if line.is_empty() {
        return None;
    }
    while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        line.pop();
    }
    Some(line)
}

/// A scripted Redis for `FakeRedis`: answers what a backup asks (AUTH, PING,
/// INFO, CONFIG GET, LASTSAVE, TIME, BGSAVE, DBSIZE, SELECT, ...) from a
/// table, and plays a save: BGSAVE "starts" one that is over at once
/// (`rdb_saves` and LASTSAVE move, `rdb_bgsave_in_progress:0`,
/// `rdb_last_bgsave_status:ok`). Any command can be answered by a drip-feed
/// instead (`drip`). Everything else gets an error reply.
pub struct ScriptedRedis {
    config: BTreeMap<String, String>,
    version: String,
    keyspace: Vec<String>,
    drips: BTreeMap<String, Duration>,
    saves: Mutex<(u64, i64)>,
}

impl Default for ScriptedRedis {
    fn default() -> Self {
        ScriptedRedis::new()
    }
}

impl ScriptedRedis {
    /// Redis 7.0.15 with persistence off (`save ""`, `appendonly no`), its
    /// dir `/var/lib/redis`, `dump.rdb`, one key in db 0, last saved 100 s ago.
    pub fn new() -> ScriptedRedis {
        let config = [
            ("dir", "/var/lib/redis"),
            ("dbfilename", "dump.rdb"),
            ("appenddirname", "appendonlydir"),
            ("appendfilename", "appendonly.aof"),
            ("save", ""),
            ("appendonly", "no"),
            ("databases", "16"),
        ];
        ScriptedRedis {
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            version: "7.0.15".into(),
            keyspace: vec!["db0:keys=1,expires=0,avg_ttl=0".into()],
            drips: BTreeMap::new(),
            saves: Mutex::new((0, now_secs() as i64 - 100)),
        }
    }

    /// What `CONFIG GET name` answers.
    pub fn config(mut self, name: &str, value: &str) -> ScriptedRedis {
        self.config.insert(name.to_string(), value.to_string());
        self
    }

    /// The `# Keyspace` lines of INFO (`db0:keys=1,expires=0,avg_ttl=0`).
    pub fn keyspace(mut self, lines: &[&str]) -> ScriptedRedis {
        self.keyspace = lines.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Answer `command` (e.g. "INFO", "PING") one byte every `every`.
    pub fn drip(mut self, command: &str, every: Duration) -> ScriptedRedis {
        self.drips.insert(command.to_ascii_uppercase(), every);
        self
    }

    /// Serve it on a port of its own.
    pub fn serve(self) -> FakeRedis {
        FakeRedis::start(move |args| self.answer(args))
    }

    fn info(&self, section: &str) -> String {
        let (saves, lastsave) = *self.saves.lock().expect("saves lock");
        let server = format!(
            "# Server\r\nredis_version:{}\r\nredis_mode:standalone\r\nprocess_id:4242\r\n",
            self.version
        );
        let persistence = format!(
            "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\n\
             rdb_bgsave_in_progress:0\r\nrdb_last_save_time:{lastsave}\r\n\
             rdb_last_bgsave_status:ok\r\nrdb_saves:{saves}\r\naof_enabled:0\r\n\
             aof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n\
             aof_last_bgrewrite_status:ok\r\n"
        );
        let replication = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n".to_string();
        let mut keyspace = "# Keyspace\r\n".to_string();
        for line in &self.keyspace {
            keyspace.push_str(line);
            keyspace.push_str("\r\n");
        }
        match section.to_ascii_lowercase().as_str() {
            "server" => server,
            "persistence" => persistence,
            "replication" => replication,
            "keyspace" => keyspace,
            "" | "all" | "default" | "everything" => {
                [server, persistence, replication, keyspace].join("\r\n")
            }
            _ => String::new(),
        }
    }

    /// The answer to one command.
    pub fn answer(&self, args: &[Vec<u8>]) -> Answer {
        let name = String::from_utf8_lossy(args.first().map(Vec::as_slice).unwrap_or(b""))
            .to_ascii_uppercase();
        let arg = |i: usize| {
            args.get(i)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default()
        };
        let bytes = match name.as_str() {
            "AUTH" | "SELECT" | "CLIENT" | "REPLCONF" => resp_status("OK"),
            "PING" => resp_status("PONG"),
            "INFO" => resp_bulk(self.info(&arg(1)).as_bytes()),
            "CONFIG" if arg(1).eq_ignore_ascii_case("GET") => {
                let wanted = arg(2);
                match self.config.get(&wanted) {
                    Some(value) => {
                        resp_array(&[resp_bulk(wanted.as_bytes()), resp_bulk(value.as_bytes())])
                    }
                    None => resp_array(&[]),
                }
            }
            "CONFIG" => resp_error("ERR the fake Redis only answers CONFIG GET"),
            "LASTSAVE" => resp_int(self.saves.lock().expect("saves lock").1),
            "TIME" => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
                resp_array(&[
                    resp_bulk(now.as_secs().to_string().as_bytes()),
                    resp_bulk(now.subsec_micros().to_string().as_bytes()),
                ])
            }
            "BGSAVE" => {
                let mut saves = self.saves.lock().expect("saves lock");
                saves.0 += 1;
                saves.1 = (now_secs() as i64).max(saves.1 + 1);
                resp_status("Background saving started")
            }
            "DBSIZE" => resp_int(1),
            _ => resp_error(&format!("ERR unknown command '{name}'")),
        };
        match self.drips.get(&name) {
            Some(&every) => Answer::Drip { bytes, every },
            None => Answer::Bytes(bytes),
        }
    }
}
