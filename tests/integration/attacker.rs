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
//!   copy of a victim is readable by the attacker in the data dir.
//!
//! What the attacker puts on the Redis port is the harness's `FakeRedis`.

use crate::harness::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    Run::new("setpriv")
        .args(&setpriv_args(user))
        .args(&[program])
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

pub fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
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
        self.ids()
            .into_iter()
            .map(|(name, (uid, _))| (name, uid))
            .collect()
    }

    /// What each server that loaded the module reached of its starter's
    /// session: marker file name -> `tty=0|1 keyring=SECRET|-`.
    pub fn sessions(&self) -> BTreeMap<String, String> {
        dir_entries(&self.markers)
            .into_iter()
            .map(|name| {
                let text = fs::read_to_string(self.markers.join(&name)).unwrap_or_default();
                let third = text.lines().nth(2).unwrap_or_default().to_string();
                (name, third)
            })
            .collect()
    }

    /// The uid and groups (the gid first, then the supplementary ones) of
    /// the servers that loaded the module: marker file name -> ids.
    pub fn ids(&self) -> BTreeMap<String, (u32, Vec<u32>)> {
        dir_entries(&self.markers)
            .into_iter()
            .map(|name| {
                let text = fs::read_to_string(self.markers.join(&name)).unwrap_or_default();
                let bad = || panic!("marker {name} holds {text:?}, not a uid and groups");
                let mut lines = text.lines();
                let uid = lines.next().and_then(|l| l.trim().parse().ok());
                let groups: Option<Vec<u32>> = lines
                    .next()
                    .map(|l| l.split_whitespace().map(|g| g.parse().ok()).collect())
                    .unwrap_or(Some(Vec::new()));
                match (uid, groups) {
                    (Some(uid), Some(groups)) => (name, (uid, groups)),
                    _ => bad(),
                }
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

    /// Its log once it has said what it was saying: a restore its move
    /// made fail at once can end before the attacker has logged the move
    /// (a busy machine). Waits until the log is still for 200 ms and holds
    /// `said`, at most 10 s: a move the attacker logs only once it is done
    /// (thousands of links planted) may come later than that on a busy
    /// machine.
    pub fn settled_log_saying(&self, said: &str) -> String {
        let started = Instant::now();
        let mut last = self.log();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.log();
            let quiet = now == last && now.contains(said);
            if quiet || started.elapsed() > Duration::from_secs(10) {
                return now;
            }
            last = now;
        }
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
