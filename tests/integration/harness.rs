//! The test harness: a scratch directory per test, a real `redis-server`
//! started and stopped through the `systemctl` stand-in in `tests/support`, a
//! tiny RESP client (independent of the crate's own), data of every type, and a
//! runner for the real `redis-backup` binary with a clean environment.
//!
//! Nothing here sleeps a fixed time: everything that waits polls against a
//! deadline and fails with a message saying what it waited for.

// The harness is shared by every test module, and later ones (restore) use
// parts the current ones do not.
#![allow(dead_code)]

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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

/// Pids of live (not zombie) processes whose command line names
/// `redis-server`.
pub fn live_redis_servers() -> Vec<u32> {
    dir_entries(Path::new("/proc"))
        .into_iter()
        .filter_map(|name| name.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
            String::from_utf8_lossy(&cmdline).contains("redis-server")
                && !matches!(state, None | Some('Z') | Some('X'))
        })
        .collect()
}

/// How restore names its work folder in the data dir:
/// `redis-backup-restore-<UTC time>`.
pub const RESTORE_WORK_PREFIX: &str = "redis-backup-restore-";

// ---------------------------------------------------------------------------
// Scratch directories

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory of its own for one test (or one throwaway server). Removed when
/// dropped, unless the test is failing: then it is kept and its path printed.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let test = thread::current()
            .name()
            .map(|name| name.rsplit("::").next().unwrap_or(name).to_string())
            .unwrap_or_else(|| "test".into());
        let test: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(28)
            .collect();
        // Short enough for a Unix socket path (108 bytes) inside it.
        let path =
            std::env::temp_dir().join(format!("rbit-{}-{n}-{tag}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        set_mode(&path, 0o755);
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "test failed: keeping {} for inspection",
                self.path.display()
            );
            return;
        }
        make_removable(&self.path);
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}

/// Give every directory under `dir` owner rwx so a non-root user can remove it.
fn make_removable(dir: &Path) {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        if meta.is_dir() {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
            if let Ok(rd) = fs::read_dir(dir) {
                for entry in rd.flatten() {
                    make_removable(&entry.path());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A tiny RESP2 client

#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(b) => write!(f, "${:?}", String::from_utf8_lossy(b)),
            Reply::Nil => write!(f, "(nil)"),
            Reply::Array(a) => f.debug_list().entries(a).finish(),
        }
    }
}

impl Reply {
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn text(&self) -> String {
        match self.bytes() {
            Some(b) => String::from_utf8_lossy(b).into_owned(),
            None => panic!("expected a string reply, got {self:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }
}

/// Build one command (an array of bulk strings) from anything byte-like.
pub fn cmd<A: AsRef<[u8]>>(args: &[A]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_ref().to_vec()).collect()
}

pub struct Resp {
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
}

impl Resp {
    pub fn tcp(port: u16) -> std::io::Result<Resp> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(DEADLINE))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Resp {
            reader: BufReader::new(Box::new(stream)),
            writer: Box::new(writer),
        })
    }

    pub fn unix(path: &Path) -> std::io::Result<Resp> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(DEADLINE))?;
        let writer = stream.try_clone()?;
        Ok(Resp {
            reader: BufReader::new(Box::new(stream)),
            writer: Box::new(writer),
        })
    }

    fn encode(out: &mut Vec<u8>, args: &[Vec<u8>]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Send one command and read its reply (which may be an error reply).
    pub fn try_call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Reply> {
        let mut out = Vec::new();
        Self::encode(&mut out, &cmd(args));
        self.writer.write_all(&out)?;
        self.writer.flush()?;
        self.read_reply(0)
    }

    /// Send one command; panic on I/O errors, return error replies as values.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let shown: Vec<String> = args
            .iter()
            .take(2)
            .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
            .collect();
        self.try_call(args)
            .unwrap_or_else(|e| panic!("RESP I/O error on {shown:?}: {e}"))
    }

    /// Like `call`, but an error reply fails the test.
    pub fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let reply = self.call(args);
        if reply.is_error() {
            let shown: Vec<String> = args
                .iter()
                .take(2)
                .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                .collect();
            panic!("Redis refused {shown:?}: {reply:?}");
        }
        reply
    }

    /// Send many commands at once, then read all replies; error replies fail.
    pub fn pipeline(&mut self, cmds: &[Vec<Vec<u8>>]) -> Vec<Reply> {
        let mut out = Vec::new();
        for c in cmds {
            Self::encode(&mut out, c);
        }
        self.writer.write_all(&out).expect("write pipeline");
        self.writer.flush().expect("flush pipeline");
        let replies: Vec<Reply> = (0..cmds.len())
            .map(|_| self.read_reply(0).expect("read pipeline reply"))
            .collect();
        for (c, r) in cmds.iter().zip(&replies) {
            assert!(
                !r.is_error(),
                "Redis refused {:?}: {r:?}",
                String::from_utf8_lossy(&c[0])
            );
        }
        replies
    }

    fn read_line(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by Redis",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(std::io::Error::other("RESP line without CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_reply(&mut self, depth: usize) -> std::io::Result<Reply> {
        let bad = |what: &str| std::io::Error::other(format!("bad RESP: {what}"));
        if depth > 16 {
            return Err(bad("nested too deep"));
        }
        let line = self.read_line()?;
        let (&kind, rest) = line.split_first().ok_or_else(|| bad("empty line"))?;
        let rest = String::from_utf8_lossy(rest).into_owned();
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad("number"));
        Ok(match kind {
            b'+' => Reply::Status(rest),
            b'-' => Reply::Error(rest),
            b':' => Reply::Int(num(&rest)?),
            b'$' => {
                let len = num(&rest)?;
                if len < 0 {
                    Reply::Nil
                } else {
                    let mut buf = vec![0u8; len as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(len as usize);
                    Reply::Bulk(buf)
                }
            }
            b'*' => {
                let len = num(&rest)?;
                if len < 0 {
                    Reply::Nil
                } else {
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(self.read_reply(depth + 1)?);
                    }
                    Reply::Array(items)
                }
            }
            _ => return Err(bad("unknown type byte")),
        })
    }

    /// `INFO section` as a map of `field -> value`.
    pub fn info(&mut self, section: &str) -> BTreeMap<String, String> {
        let text = self.ok(&["INFO", section]).text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }

    pub fn info_field(&mut self, section: &str, field: &str) -> String {
        self.info(section)
            .remove(field)
            .unwrap_or_else(|| panic!("INFO {section} has no field {field}"))
    }

    /// `rdb_saves` of `INFO persistence`: saves since start-up.
    pub fn rdb_saves(&mut self) -> u64 {
        self.info_field("persistence", "rdb_saves")
            .parse()
            .expect("rdb_saves")
    }

    /// `DEBUG DIGEST` and the key count of every non-empty database.
    pub fn state(&mut self) -> DbState {
        self.state_via("CONFIG")
    }

    /// `state`, on a server whose CONFIG command is called `config`
    /// (`rename-command CONFIG ...`).
    pub fn state_via(&mut self, config: &str) -> DbState {
        let digest = self.ok(&["DEBUG", "DIGEST"]).text();
        let databases: u32 = match self.ok(&[config, "GET", "databases"]) {
            Reply::Array(a) if a.len() == 2 => a[1].text().parse().expect("databases"),
            other => panic!("{config} GET databases: {other:?}"),
        };
        let mut cmds = Vec::new();
        for db in 0..databases {
            cmds.push(cmd(&["SELECT".to_string(), db.to_string()]));
            cmds.push(cmd(&["DBSIZE"]));
        }
        cmds.push(cmd(&["SELECT", "0"]));
        let replies = self.pipeline(&cmds);
        let mut keys = BTreeMap::new();
        for db in 0..databases {
            let n = replies[db as usize * 2 + 1].int() as u64;
            if n > 0 {
                keys.insert(db, n);
            }
        }
        DbState { digest, keys }
    }

    /// Wait until no RDB save runs (e.g. one started by someone else).
    pub fn wait_no_save(&mut self) {
        wait_for("the running BGSAVE to finish", || {
            (self.info_field("persistence", "rdb_bgsave_in_progress") == "0").then_some(())
        })
    }
}

/// The `id` of a backup record as printed by `--json`.
pub fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record has an id").to_string()
}

/// A small tmpfs mounted on `path` (needs root, as `make test` has),
/// unmounted lazily when dropped (a Redis may still have its cwd there).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(path: &Path, options: &str) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// What a dataset looks like: `DEBUG DIGEST` and `DBSIZE` per non-empty db.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbState {
    pub digest: String,
    pub keys: BTreeMap<u32, u64>,
}

/// The `keys` object of a backup record (`{"db0": 120, "db1": 40}`) as a map,
/// leaving out empty databases.
pub fn keys_of_record(record: &Value) -> BTreeMap<u32, u64> {
    let obj = record["keys"]
        .as_object()
        .unwrap_or_else(|| panic!("record has no `keys` object: {record}"));
    obj.iter()
        .map(|(name, n)| {
            let db: u32 = name
                .strip_prefix("db")
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("bad db name {name:?} in keys"));
            (db, n.as_u64().unwrap_or_else(|| panic!("bad count {n}")))
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}

// ---------------------------------------------------------------------------
// Data of every type

/// Deterministic pseudo-random bytes (incompressible enough for the tests).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// The binary key holding every byte value, as written in `db`.
pub fn binary_key(db: u32) -> Vec<u8> {
    let mut key = format!("bin:{db}:").into_bytes();
    key.extend(0..=255u8);
    key
}

/// The value stored under `binary_key(db)`.
pub fn binary_value() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend((0..=255u8).rev());
    v.extend_from_slice(b"\r\n\0\r\n");
    v
}

/// Fill db 0 and db 1 with keys of every type: strings (binary keys and
/// values, integers, empty, ~100 KB), hashes, lists, sets and sorted sets in
/// both small and large encodings, streams with a consumer group, and keys with
/// a TTL. The two databases get different numbers of keys. Leaves db 0 selected.
pub fn fill_every_type(conn: &mut Resp) {
    for db in [0u32, 1] {
        let d = db.to_string();
        let mut c: Vec<Vec<Vec<u8>>> = vec![cmd(&["SELECT", &d])];
        let strings = if db == 0 { 80 } else { 30 };
        for i in 0..strings {
            c.push(cmd(&[
                "SET".to_string(),
                format!("s:{db}:{i}"),
                format!("value {i} in db {db}"),
            ]));
        }
        for i in 0..20i64 {
            c.push(cmd(&[
                "SET".to_string(),
                format!("n:{db}:{i}"),
                (i * 12345 - 70000).to_string(),
            ]));
        }
        c.push(cmd(&[b"SET".to_vec(), binary_key(db), binary_value()]));
        c.push(cmd(&[
            b"SET".as_slice(),
            format!("crlf\r\nkey {db}\0").as_bytes(),
            b"line\r\nbreak\0nul",
        ]));
        c.push(cmd(&[
            "SET".to_string(),
            format!("empty:{db}"),
            String::new(),
        ]));
        c.push(cmd(&[
            b"SET".to_vec(),
            format!("big:{db}").into_bytes(),
            noise(100_000, u64::from(db) + 7),
        ]));
        // Hashes: small (listpack) and large (hashtable), one binary field.
        for h in 0..10 {
            let mut args = vec![b"HSET".to_vec(), format!("h:{db}:{h}").into_bytes()];
            for f in 0..5 {
                args.push(format!("field{f}").into_bytes());
                args.push(format!("v{h}.{f}").into_bytes());
            }
            c.push(args);
        }
        let mut args = vec![b"HSET".to_vec(), format!("hbig:{db}").into_bytes()];
        for f in 0..200 {
            args.push(format!("f{f}").into_bytes());
            args.push(noise(20, f).to_vec());
        }
        args.push(vec![0, 1, 2, 255]);
        args.push(vec![255, 0]);
        c.push(args);
        // Lists: small and long (quicklist with several nodes).
        for l in 0..10 {
            let mut args = vec![b"RPUSH".to_vec(), format!("l:{db}:{l}").into_bytes()];
            args.extend((0..10).map(|i| format!("item{i}").into_bytes()));
            c.push(args);
        }
        let mut args = vec![b"RPUSH".to_vec(), format!("lbig:{db}").into_bytes()];
        args.extend((0..1000u64).map(|i| noise(12, i)));
        c.push(args);
        // Sets: intset, small strings (listpack), large (hashtable).
        let mut args = vec![b"SADD".to_vec(), format!("sint:{db}").into_bytes()];
        args.extend((0..50).map(|i: i64| (i * 7 - 100).to_string().into_bytes()));
        c.push(args);
        let mut args = vec![b"SADD".to_vec(), format!("sstr:{db}").into_bytes()];
        args.extend(["a", "b", "c", "dee", "\u{e9}t\u{e9}"].map(|s| s.as_bytes().to_vec()));
        c.push(args);
        let mut args = vec![b"SADD".to_vec(), format!("sbig:{db}").into_bytes()];
        args.extend((0..200).map(|i| format!("member-{i}").into_bytes()));
        c.push(args);
        // Sorted sets: small (listpack) and large (skiplist).
        let mut args = vec![b"ZADD".to_vec(), format!("z:{db}").into_bytes()];
        for i in 0..10 {
            args.push(format!("{}", f64::from(i) * 1.5 - 3.0).into_bytes());
            args.push(format!("zm{i}").into_bytes());
        }
        c.push(args);
        let mut args = vec![b"ZADD".to_vec(), format!("zbig:{db}").into_bytes()];
        for i in 0..200 {
            args.push(format!("{}", f64::from(i) * -0.25).into_bytes());
            args.push(format!("zmember-{i}").into_bytes());
        }
        c.push(args);
        // Streams, one with a consumer group.
        for s in 0..2 {
            let key = format!("stream:{db}:{s}");
            for i in 0..30 {
                c.push(cmd(&[
                    "XADD".to_string(),
                    key.clone(),
                    "*".to_string(),
                    "n".to_string(),
                    i.to_string(),
                    "payload".to_string(),
                    format!("entry {i} of {key}"),
                ]));
            }
        }
        c.push(cmd(&[
            "XGROUP",
            "CREATE",
            &format!("stream:{db}:0"),
            "g1",
            "0",
        ]));
        // Keys with a TTL.
        for i in 0..20 {
            c.push(cmd(&[
                "SET".to_string(),
                format!("ttl:{db}:{i}"),
                format!("expiring {i}"),
                "EX".to_string(),
                "3600".to_string(),
            ]));
        }
        c.push(cmd(&["EXPIRE", &format!("h:{db}:0"), "3600"]));
        conn.pipeline(&c);
    }
    conn.ok(&["SELECT", "0"]);
}

/// Add `n` plain string keys `filler:i` to db 0 (to make saves slower with
/// `rdb-key-save-delay`).
pub fn add_filler(conn: &mut Resp, n: usize) {
    let cmds: Vec<_> = (0..n)
        .map(|i| cmd(&["SET".to_string(), format!("filler:{i}"), format!("x{i}")]))
        .collect();
    conn.pipeline(&cmds);
}

// ---------------------------------------------------------------------------
// Running the binary

/// The result of one run of the binary (or of any program run by the harness).
pub struct Output {
    pub program: String,
    pub args: Vec<String>,
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {} {:?}", self.program, self.args)?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}--------------", self.stderr)
    }
}

impl Output {
    /// Fail (showing stdout and stderr) unless the exit code is `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}, got {:?}\n{self}",
            self.code
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Output {
        self.code(0)
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{self}"))
    }

    /// The last non-empty line of stdout, trimmed.
    #[track_caller]
    pub fn last_line(&self) -> String {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("stdout is empty\n{self}"))
            .trim()
            .to_string()
    }

    /// Fail unless stderr contains `needle` (case-insensitive).
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Output {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}\n{self}"
        );
        self
    }

    /// Fail (showing the output) if stderr contains `text`.
    #[track_caller]
    pub fn stderr_lacks(&self, text: &str) -> &Output {
        assert!(!self.stderr.contains(text), "stderr has {text:?}\n{self}");
        self
    }

    /// Fail if `secret` occurs in stdout or stderr.
    #[track_caller]
    pub fn lacks(&self, secret: &str) -> &Output {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "output contains the secret {secret:?} (exit {:?}; output not shown)",
            self.code
        );
        self
    }
}

/// One run of a program with a scrubbed environment, built step by step.
pub struct Run {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    remove_env: Vec<String>,
}

impl Run {
    pub fn new(program: &str) -> Run {
        Run {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            remove_env: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Run {
        self.args.push(arg.as_ref().to_string());
        self
    }

    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Run {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<str>) -> Run {
        self.env.push((key.to_string(), value.as_ref().to_string()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Run {
        self.remove_env.push(key.to_string());
        self
    }

    /// The command with stdin closed, an environment cleaned of the
    /// caller's settings, and this run's own variables.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("REDIS_BACKUP_")
                || key.starts_with("OS_")
                || key.starts_with("ST_")
                || key == "RUST_LOG"
                || key == "SYSTEMCTL_SHIM_DIR"
            {
                command.env_remove(&*key);
            }
        }
        for key in &self.remove_env {
            command.env_remove(key);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Start in the background (to be killed, or waited for with
    /// `wait_with_output`): stdout discarded, stderr piped.
    pub fn spawn(self) -> std::process::Child {
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program))
    }

    /// Run to completion (killed after `RUN_DEADLINE`) with stdin closed.
    pub fn run(self) -> Output {
        let mut command = self.command();
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let stdout_rx = read_all_in_background(out);
        let stderr_rx = read_all_in_background(err);
        // A process the child started and left running (a daemon, a private
        // redis-server) may keep the pipes open: then fail, do not hang.
        let collect = |rx: mpsc::Receiver<Vec<u8>>, what: &str| -> String {
            match rx.recv_timeout(DEADLINE) {
                Ok(v) => String::from_utf8_lossy(&v).into_owned(),
                Err(_) => panic!(
                    "{} {:?}: its {what} was still open {DEADLINE:?} after it ended; \
                     a process it started is still running and holds it",
                    self.program, self.args
                ),
            }
        };
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > RUN_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = collect(stdout_rx, "stdout");
                let stderr = collect(stderr_rx, "stderr");
                panic!(
                    "{} {:?} did not finish within {RUN_DEADLINE:?}; killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                    self.program, self.args
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let stdout = collect(stdout_rx, "stdout");
        let stderr = collect(stderr_rx, "stderr");
        Output {
            program: self.program,
            args: self.args,
            code: status.code(),
            stdout,
            stderr,
        }
    }
}

/// Read `from` to its end on a thread of its own; the bytes arrive on the
/// returned channel.
fn read_all_in_background(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = from.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

// ---------------------------------------------------------------------------
// The Redis under test

/// Save rules written to redis.conf.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Save {
    /// No `save` line: Redis's built-in rules, persistence on.
    #[default]
    Default,
    /// `save ""`: no RDB persistence.
    Off,
    /// `save <rules>`, e.g. `"3600 1"`.
    Rules(String),
}

/// Options for a `TestRedis`; `TestRedis::builder()` starts one.
#[derive(Debug, Clone)]
pub struct Builder {
    requirepass: Option<String>,
    acl_user: Option<(String, String)>,
    default_user_off: bool,
    unix_only: bool,
    renames: Vec<(String, String)>,
    save: Save,
    appendonly: bool,
    run_as: Option<String>,
    conf_owner: Option<String>,
    keygen: bool,
    settings: Vec<(String, String)>,
    conf_lines: Vec<String>,
}

impl Builder {
    /// `requirepass PW` in redis.conf (the tool finds it there).
    pub fn requirepass(mut self, pw: &str) -> Builder {
        self.requirepass = Some(pw.into());
        self
    }

    /// `user NAME on >PW ~* &* +@all` in redis.conf. The tool is NOT told about
    /// it: add `redis_user`/`redis_password` with `setting` or the environment.
    pub fn acl_user(mut self, name: &str, pw: &str) -> Builder {
        self.acl_user = Some((name.into(), pw.into()));
        self
    }

    /// `user default off`: only the ACL user may connect.
    pub fn default_user_off(mut self) -> Builder {
        self.default_user_off = true;
        self
    }

    /// `port 0` plus `unixsocket <scratch>/redis.sock`, `unixsocketperm 700`.
    pub fn unix_socket_only(mut self) -> Builder {
        self.unix_only = true;
        self
    }

    /// `rename-command FROM TO` (`TO` empty disables the command).
    pub fn rename_command(mut self, from: &str, to: &str) -> Builder {
        self.renames.push((from.into(), to.into()));
        self
    }

    pub fn save(mut self, save: Save) -> Builder {
        self.save = save;
        self
    }

    pub fn appendonly(mut self) -> Builder {
        self.appendonly = true;
        self
    }

    /// Run redis-server as this user (the shim's `UNIT.user`); the data dir is
    /// chowned to the user.
    pub fn run_as(mut self, user: &str) -> Builder {
        self.run_as = Some(user.into());
        self
    }

    /// redis.conf owned by this user (and its group), mode 0640, as Debian
    /// ships `/etc/redis/redis.conf` (redis:redis 0640): that user may edit it.
    pub fn redis_conf_owner(mut self, user: &str) -> Builder {
        self.conf_owner = Some(user.into());
        self
    }

    /// Do not make a key file (harness self-tests that must not need the binary).
    pub fn without_key(mut self) -> Builder {
        self.keygen = false;
        self
    }

    /// One more `key = value` line in the tool's settings file.
    pub fn setting(mut self, key: &str, value: &str) -> Builder {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// One more raw line in redis.conf.
    pub fn conf_line(mut self, line: &str) -> Builder {
        self.conf_lines.push(line.into());
        self
    }

    /// Write everything, make the key, start Redis through the shim.
    pub fn start(self) -> TestRedis {
        let mut t = self.prepare();
        t.start_first_time();
        t
    }

    /// Write everything and make the key, but do not start Redis.
    pub fn prepare(self) -> TestRedis {
        let scratch = Scratch::new("t");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let unit = format!("rbtest-{}-{n}", std::process::id());
        let shim_dir = scratch.join("systemd");
        fs::create_dir_all(&shim_dir).expect("mkdir shim dir");
        fs::create_dir_all(scratch.join("data")).expect("mkdir data");
        fs::write(
            shim_dir.join(format!("{unit}.conf")),
            format!("{}\n", scratch.join("redis.conf").display()),
        )
        .expect("write unit file");
        if let Some(user) = &self.run_as {
            fs::write(shim_dir.join(format!("{unit}.user")), format!("{user}\n"))
                .expect("write unit user");
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(scratch.join("data"), Some(uid), Some(gid))
                .expect("chown data dir");
        }
        let mut settings = vec![
            (
                "redis_conf".to_string(),
                scratch.join("redis.conf").display().to_string(),
            ),
            (
                "storage".to_string(),
                format!("file://{}", scratch.join("backups").display()),
            ),
            (
                "key_file".to_string(),
                scratch.join("backup.key").display().to_string(),
            ),
            (
                "lock_file".to_string(),
                scratch.join("redis-backup.lock").display().to_string(),
            ),
            ("service".to_string(), unit.clone()),
        ];
        settings.extend(self.settings.iter().cloned());
        let mut t = TestRedis {
            opts: self,
            port: 0,
            unit,
            shim_dir,
            settings,
            scratch,
        };
        if !t.opts.unix_only {
            t.port = free_port();
        }
        t.write_redis_conf();
        t.write_settings();
        if t.opts.keygen {
            let key = t.key_file();
            t.cmd(&["keygen", "--out", &key.display().to_string()])
                .run()
                .ok();
            assert_eq!(
                mode_of(&key) & 0o077,
                0,
                "keygen made a key readable by others"
            );
        }
        t
    }
}

/// One test's world: a scratch directory with redis.conf, the tool's settings
/// file and key, and a redis-server run through the systemctl stand-in.
/// Dropping it kills whatever Redis is left.
pub struct TestRedis {
    opts: Builder,
    /// TCP port, 0 when unix-socket only.
    pub port: u16,
    /// The systemd unit name (the tool's `service` setting).
    pub unit: String,
    pub shim_dir: PathBuf,
    settings: Vec<(String, String)>,
    scratch: Scratch,
}

impl TestRedis {
    pub fn builder() -> Builder {
        Builder {
            requirepass: None,
            acl_user: None,
            default_user_off: false,
            unix_only: false,
            renames: Vec::new(),
            save: Save::Default,
            appendonly: false,
            run_as: None,
            conf_owner: None,
            keygen: true,
            settings: Vec::new(),
            conf_lines: Vec::new(),
        }
    }

    /// A plain Redis with default settings, started, with a key.
    pub fn start() -> TestRedis {
        TestRedis::builder().start()
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.scratch.join(rel)
    }

    pub fn redis_conf(&self) -> PathBuf {
        self.path("redis.conf")
    }

    pub fn settings_file(&self) -> PathBuf {
        self.path("redis-backup.conf")
    }

    pub fn key_file(&self) -> PathBuf {
        self.path("backup.key")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.path("redis-backup.lock")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path("data")
    }

    pub fn dump_file(&self) -> PathBuf {
        self.path("data/dump.rdb")
    }

    /// The directory of the default `storage` (may not exist yet).
    pub fn storage_dir(&self) -> PathBuf {
        self.path("backups")
    }

    pub fn socket(&self) -> PathBuf {
        self.path("redis.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.shim_dir.join(format!("{}.pid", self.unit))
    }

    pub fn log_file(&self) -> PathBuf {
        self.shim_dir.join(format!("{}.log", self.unit))
    }

    /// The lines the shim was called with (`start UNIT`, ...).
    pub fn shim_calls(&self) -> Vec<String> {
        fs::read_to_string(self.shim_dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Entries of the storage directory, sorted.
    pub fn storage_files(&self) -> Vec<String> {
        dir_entries(&self.storage_dir())
    }

    /// Set (replace or add) a line of the tool's settings file.
    pub fn set_setting(&mut self, key: &str, value: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.into(), value.into()));
        self.write_settings();
    }

    pub fn remove_setting(&mut self, key: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.write_settings();
    }

    fn write_settings(&self) {
        let mut text = String::from("# written by the redis-backup integration tests\n");
        for (k, v) in &self.settings {
            text.push_str(&format!("{k} = {v}\n"));
        }
        let path = self.settings_file();
        fs::write(&path, text).expect("write settings file");
        set_mode(&path, 0o600);
    }

    fn write_redis_conf(&self) {
        let o = &self.opts;
        let s = self.scratch();
        let mut c = String::from("# written by the redis-backup integration tests\n");
        if o.unix_only {
            c.push_str("port 0\n");
            c.push_str(&format!("unixsocket {}\n", self.socket().display()));
            c.push_str("unixsocketperm 700\n");
        } else {
            c.push_str("bind 127.0.0.1\n");
            c.push_str(&format!("port {}\n", self.port));
        }
        c.push_str("daemonize yes\n");
        c.push_str(&format!("pidfile {}\n", self.pid_file().display()));
        c.push_str(&format!("logfile {}\n", self.log_file().display()));
        c.push_str(&format!("dir {}\n", s.join("data").display()));
        c.push_str("dbfilename dump.rdb\n");
        c.push_str("enable-debug-command yes\n");
        c.push_str(if o.appendonly {
            "appendonly yes\n"
        } else {
            "appendonly no\n"
        });
        match &o.save {
            Save::Default => {}
            Save::Off => c.push_str("save \"\"\n"),
            Save::Rules(r) => c.push_str(&format!("save {r}\n")),
        }
        if let Some(pw) = &o.requirepass {
            c.push_str(&format!("requirepass {pw}\n"));
        }
        if let Some((user, pw)) = &o.acl_user {
            c.push_str(&format!("user {user} on >{pw} ~* &* +@all\n"));
        }
        if o.default_user_off {
            c.push_str("user default off\n");
        }
        for (from, to) in &o.renames {
            let to = if to.is_empty() {
                "\"\"".to_string()
            } else {
                to.clone()
            };
            c.push_str(&format!("rename-command {from} {to}\n"));
        }
        for line in &o.conf_lines {
            c.push_str(line);
            c.push('\n');
        }
        fs::write(self.redis_conf(), c).expect("write redis.conf");
        set_mode(&self.redis_conf(), 0o644);
        if let Some(user) = &o.conf_owner {
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(self.redis_conf(), Some(uid), Some(gid))
                .expect("chown redis.conf");
            set_mode(&self.redis_conf(), 0o640);
        }
    }

    /// First start: pick a free port (retrying if a parallel test took it).
    fn start_first_time(&mut self) {
        let attempts = if self.opts.unix_only { 1 } else { 5 };
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.port = free_port();
                self.write_redis_conf();
            }
            let out = self.systemctl(&["start", &self.unit]);
            if out.code == Some(0) {
                return;
            }
            let log = fs::read_to_string(self.log_file()).unwrap_or_default();
            let port_taken = log.contains("Address already in use")
                || log.contains("Could not create server TCP listening socket");
            if !(port_taken && attempt < attempts) {
                panic!("could not start redis-server through the shim\n{out}\n--- log ---\n{log}");
            }
            let _ = fs::remove_file(self.log_file());
        }
    }

    /// Run the systemctl stand-in directly (as the tool would).
    pub fn systemctl(&self, args: &[&str]) -> Output {
        Run::new(&support_dir().join("systemctl").display().to_string())
            .args(args)
            .env("SYSTEMCTL_SHIM_DIR", self.shim_dir.display().to_string())
            .run()
    }

    /// `systemctl start UNIT`, which must succeed.
    pub fn start_redis(&self) {
        self.systemctl(&["start", &self.unit]).ok();
    }

    /// `systemctl stop UNIT`, which must succeed.
    pub fn stop_redis(&self) {
        self.systemctl(&["stop", &self.unit]).ok();
    }

    /// `systemctl is-active --quiet UNIT`.
    pub fn is_active(&self) -> bool {
        self.systemctl(&["is-active", "--quiet", &self.unit]).code == Some(0)
    }

    /// Make the next `systemctl start` of this unit fail (or not).
    pub fn fail_start(&self, fail: bool) {
        let marker = self.shim_dir.join(format!("{}.fail-start", self.unit));
        if fail {
            fs::write(marker, "").expect("write fail-start marker");
        } else {
            let _ = fs::remove_file(marker);
        }
    }

    /// Make only the next `systemctl start` of this unit fail (the shim's
    /// `UNIT.fail-start-once`, which that start removes).
    pub fn fail_start_once(&self) {
        fs::write(self.fail_start_once_marker(), "").expect("write fail-start-once marker");
    }

    pub fn fail_start_once_marker(&self) -> PathBuf {
        self.shim_dir.join(format!("{}.fail-start-once", self.unit))
    }

    /// The pid of the running redis-server, if any.
    pub fn pid(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// A connection without AUTH.
    pub fn raw_conn(&self) -> std::io::Result<Resp> {
        if self.opts.unix_only {
            Resp::unix(&self.socket())
        } else {
            Resp::tcp(self.port)
        }
    }

    /// A connection authenticated as configured (ACL user, else requirepass).
    pub fn conn(&self) -> Resp {
        let mut c = self
            .raw_conn()
            .unwrap_or_else(|e| panic!("cannot connect to the test Redis: {e}"));
        if let Some((user, pw)) = &self.opts.acl_user {
            c.ok(&["AUTH", user, pw]);
        } else if let Some(pw) = &self.opts.requirepass {
            c.ok(&["AUTH", pw]);
        }
        c
    }

    /// `DEBUG DIGEST` and per-db DBSIZE of the live server.
    pub fn state(&self) -> DbState {
        self.conn().state_via(&self.command_name("CONFIG"))
    }

    /// What `command` is called on this server: its `rename-command` name,
    /// else itself. Panics if it was disabled (renamed to "").
    pub fn command_name(&self, command: &str) -> String {
        match self
            .opts
            .renames
            .iter()
            .rev()
            .find(|(from, _)| from.eq_ignore_ascii_case(command))
        {
            Some((_, to)) if to.is_empty() => panic!("{command} is disabled on this server"),
            Some((_, to)) => to.clone(),
            None => command.to_string(),
        }
    }

    /// `CONFIG GET param` (under CONFIG's renamed name, if any): the value.
    pub fn config_get(&self, param: &str) -> String {
        let config = self.command_name("CONFIG");
        match self.conn().ok(&[config.as_str(), "GET", param]) {
            Reply::Array(a) if a.len() == 2 => a[1].text(),
            other => panic!("{config} GET {param}: {other:?}"),
        }
    }

    /// `<storage>/<id>.rbk`, the stored object of a backup.
    pub fn object_file(&self, id: &str) -> PathBuf {
        self.storage_dir().join(format!("{id}.rbk"))
    }

    /// `<storage>/<id>.json`, the stored record of a backup.
    pub fn record_file(&self, id: &str) -> PathBuf {
        self.storage_dir().join(format!("{id}.json"))
    }

    /// Every file under the data dir (relative path -> SHA-256), to prove
    /// that something left them byte for byte as they were.
    pub fn data_files(&self) -> BTreeMap<String, String> {
        file_hashes(&self.data_dir())
    }

    /// The work folders of restore (`redis-backup-restore-*`) in the data dir.
    pub fn restore_work_dirs(&self) -> Vec<PathBuf> {
        dir_entries(&self.data_dir())
            .into_iter()
            .filter(|name| name.starts_with(RESTORE_WORK_PREFIX))
            .map(|name| self.data_dir().join(name))
            .collect()
    }

    /// Live redis-servers working in this test's data dir (their cwd), other
    /// than the one the shim runs: e.g. a private server restore left behind.
    pub fn stray_redis_servers(&self) -> Vec<u32> {
        let data = fs::canonicalize(self.data_dir()).expect("data dir");
        let ours = self.pid();
        live_redis_servers()
            .into_iter()
            .filter(|&pid| Some(pid) != ours)
            .filter(|pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data))
            .collect()
    }

    /// Lines of the shim's calls.log from line `from` on.
    pub fn shim_calls_since(&self, from: usize) -> Vec<String> {
        self.shim_calls().into_iter().skip(from).collect()
    }

    /// A command line for the binary: `-c <settings file>` then `args`, with
    /// the shim first on PATH and its directory in `SYSTEMCTL_SHIM_DIR`.
    pub fn cmd<S: AsRef<str>>(&self, args: &[S]) -> Run {
        self.with_env(
            Run::new(BIN)
                .arg("-c")
                .arg(self.settings_file().display().to_string())
                .args(args),
        )
    }

    /// Add this test's environment to any run: the shim first on PATH and its
    /// directory in `SYSTEMCTL_SHIM_DIR`.
    pub fn with_env(&self, run: Run) -> Run {
        let path = format!(
            "{}:{}",
            support_dir().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        run.env("PATH", path)
            .env("SYSTEMCTL_SHIM_DIR", self.shim_dir.display().to_string())
    }

    /// Run the binary with `args` (see `cmd`).
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Output {
        self.cmd(args).run()
    }

    /// `backup`, which must succeed; returns the ID (last line of stdout).
    pub fn backup(&self) -> String {
        let out = self.run(&["backup"]);
        out.ok();
        out.last_line()
    }

    /// `backup --json`, which must succeed; returns the record.
    pub fn backup_json(&self, extra: &[&str]) -> Value {
        let mut args = vec!["--json", "backup"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        out.ok();
        out.json()
    }

    /// `export ID --out <scratch>/<name>`, which must succeed; returns the path.
    pub fn export(&self, id: &str, name: &str) -> PathBuf {
        let out = self.path(name);
        self.run(&["export", id, "--out", &out.display().to_string()])
            .ok();
        out
    }

    /// `list --json` parsed, which must succeed.
    pub fn list(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["--json", "list"];
        args.extend_from_slice(extra);
        match self.run(&args).ok().json() {
            Value::Array(items) => items,
            other => panic!("list --json is not an array: {other}"),
        }
    }

    /// Wait until nothing listens any more (after a stop).
    pub fn wait_unreachable(&self) {
        wait_for("Redis to stop accepting connections", || {
            self.raw_conn().is_err().then_some(())
        })
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            kill_and_wait(pid);
        }
    }
}

/// SIGKILL `pid` if it is a redis-server, and wait until it is gone.
fn kill_and_wait(pid: u32) {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("redis-server") {
        return;
    }
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat) => {
                let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
                if state == Some('Z') {
                    return;
                }
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A port that was free a moment ago (callers retry if someone took it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------
// Loading an RDB file into a throwaway server

/// A throwaway redis-server (unix socket only, no persistence) that loaded an
/// RDB file; killed and cleaned up when dropped.
pub struct LoadedRdb {
    child: Child,
    socket: PathBuf,
    scratch: Scratch,
}

impl LoadedRdb {
    pub fn load(rdb: &Path) -> LoadedRdb {
        let scratch = Scratch::new("rdb");
        fs::copy(rdb, scratch.join("dump.rdb"))
            .unwrap_or_else(|e| panic!("copy {}: {e}", rdb.display()));
        let socket = scratch.join("s.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(scratch.path())
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
                "--daemonize",
                "no",
                "--logfile",
            ])
            .arg(scratch.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut loaded = LoadedRdb {
            child,
            socket,
            scratch,
        };
        let log = loaded.scratch.join("redis.log");
        wait_for("a throwaway redis-server to load the RDB", || {
            if let Ok(Some(status)) = loaded.child.try_wait() {
                panic!(
                    "redis-server could not load {} ({status}):\n{}",
                    rdb.display(),
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let mut c = Resp::unix(&loaded.socket).ok()?;
            match c.try_call(&["PING"]).ok()? {
                Reply::Status(s) if s == "PONG" => Some(()),
                _ => None, // -LOADING
            }
        });
        loaded
    }

    pub fn conn(&self) -> Resp {
        Resp::unix(&self.socket).expect("connect to throwaway redis")
    }

    pub fn state(&self) -> DbState {
        self.conn().state()
    }

    /// GET `key` in db 0.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.conn().ok(&["GET", key]) {
            Reply::Nil => None,
            r => Some(r.bytes().expect("bulk").to_vec()),
        }
    }
}

impl Drop for LoadedRdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Load `rdb` into a throwaway server and return its digest and DBSIZEs.
pub fn digest_of_rdb(rdb: &Path) -> DbState {
    LoadedRdb::load(rdb).state()
}

// ---------------------------------------------------------------------------
// Holding the tool's lock from the test process

/// Open `path` and take an exclusive lock on it, as another run would.
pub fn hold_lock(path: &Path) -> fs::File {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.try_lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    file
}

// ---------------------------------------------------------------------------
// A real OpenStack Swift (tests/support/swift-aio.sh), and a client for it
// that is independent of the crate's own (curl, run as a program)

/// How long one request of the harness to Swift may take.
const SWIFT_REQUEST_TIMEOUT_SECS: u32 = 60;

/// One HTTP response, as curl got it.
pub struct HttpResponse {
    pub status: u16,
    /// Headers of the final response (not of a `100 Continue`), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "{k}: {v}")?;
        }
        if self.body.len() <= 2000 {
            write!(f, "\n{}", String::from_utf8_lossy(&self.body))
        } else {
            write!(f, "\n({} bytes of body)", self.body.len())
        }
    }
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name`, which must be present.
    #[track_caller]
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no header {name} in\n{self:?}"))
    }

    /// Fail unless the status is one of `codes`.
    #[track_caller]
    pub fn expect(&self, codes: &[u16]) -> &HttpResponse {
        assert!(
            codes.contains(&self.status),
            "expected HTTP {codes:?}, got\n{self:?}"
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{self:?}"))
    }
}

/// Percent-encode a Swift path or query value (`/` kept when `keep_slash`).
pub fn url_encode(s: &str, keep_slash: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request with curl: `method` on `url` with `headers` and an optional
/// body. Panics only if curl itself fails (no connection, timeout).
pub fn http(
    work: &Path,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    http_with(work, None, method, url, headers, body)
}

/// `http`, trusting the CA certificates in `cacert` (PEM) for `https` URLs.
pub fn http_with(
    work: &Path,
    cacert: Option<&Path>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    fs::create_dir_all(work).unwrap_or_else(|e| panic!("mkdir {}: {e}", work.display()));
    let head_file = work.join(format!("{n}.head"));
    let body_file = work.join(format!("{n}.body"));
    let req_file = work.join(format!("{n}.req"));
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", &SWIFT_REQUEST_TIMEOUT_SECS.to_string()])
        .arg("-D")
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file)
        // No `Expect: 100-continue` round trip for large bodies.
        .args(["-H", "Expect:"]);
    if let Some(ca) = cacert {
        c.arg("--cacert").arg(ca);
    }
    match method {
        "HEAD" => {
            c.arg("-I");
        }
        "GET" => {}
        m => {
            c.args(["-X", m]);
        }
    }
    for (k, v) in headers {
        c.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(body) = body {
        fs::write(&req_file, body).expect("write request body");
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            c.args(["-H", "Content-Type: application/octet-stream"]);
        }
        c.arg("--data-binary")
            .arg(format!("@{}", req_file.display()));
    }
    c.arg(url);
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (apt-get install curl): {e}"));
    assert!(
        out.status.success(),
        "curl {method} {url} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let head = fs::read_to_string(&head_file).unwrap_or_default();
    let body = fs::read(&body_file).unwrap_or_default();
    for f in [&head_file, &body_file, &req_file] {
        let _ = fs::remove_file(f);
    }
    let mut status = 0;
    let mut parsed = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HTTP/") {
            // A new response (after a 100 Continue or a redirect): start over.
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad status line {line:?}"));
            parsed.clear();
        } else if let Some((k, v)) = line.split_once(':') {
            parsed.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    assert!(status != 0, "curl {method} {url}: no response headers");
    HttpResponse {
        status,
        headers: parsed,
        body,
    }
}

/// Options for a `SwiftStack`: `SwiftStack::builder()...start()`. Every knob
/// of `swift-aio.sh` that is not set here is removed from its environment, so
/// nothing from the caller's environment leaks into a stack.
#[derive(Debug, Clone, Default)]
pub struct SwiftBuilder {
    keystone: bool,
    tls: bool,
    token_life: Option<u32>,
    keystone_token_life: Option<u32>,
    listing_limit: Option<u32>,
    catalog_url: Option<String>,
}

impl SwiftBuilder {
    /// Also run Keystone v3 and a second proxy (authtoken + keystoneauth)
    /// that Keystone's catalog names (`WITH_KEYSTONE=1`, ~14 s to start).
    pub fn keystone(mut self) -> SwiftBuilder {
        self.keystone = true;
        self
    }

    /// The proxies serve HTTPS with a throw-away CA (`SWIFT_TLS=1`); the CA
    /// is `SwiftStack::cacert`.
    pub fn tls(mut self) -> SwiftBuilder {
        self.tls = true;
        self
    }

    /// TempAuth tokens live `secs` seconds (`SWIFT_TOKEN_LIFE`).
    pub fn token_life(mut self, secs: u32) -> SwiftBuilder {
        self.token_life = Some(secs);
        self
    }

    /// Keystone tokens live `secs` seconds (`KEYSTONE_TOKEN_LIFE`).
    pub fn keystone_token_life(mut self, secs: u32) -> SwiftBuilder {
        self.keystone_token_life = Some(secs);
        self
    }

    /// At most `names` names per listing page (`SWIFT_LISTING_LIMIT`).
    pub fn listing_limit(mut self, names: u32) -> SwiftBuilder {
        self.listing_limit = Some(names);
        self
    }

    /// The object-store URL base in Keystone's catalog
    /// (`SWIFT_AIO_CATALOG_URL`, e.g. a `FaultProxy` in front of the Keystone
    /// proxy: `http://127.0.0.1:PORT`).
    pub fn catalog_url(mut self, url: &str) -> SwiftBuilder {
        self.catalog_url = Some(url.to_string());
        self
    }

    /// Start the stack (twice if the first start fails: a free port may in
    /// theory be taken before a server binds it); panics with the logs' tails.
    pub fn start(self) -> SwiftStack {
        let scratch = Scratch::new("swift");
        let dir = scratch.join("aio");
        let started = Instant::now();
        let mut out = None;
        for attempt in 1..=2 {
            let mut run = Run::new(&SwiftStack::script().display().to_string())
                .arg("start")
                .arg(dir.display().to_string())
                .env("WITH_KEYSTONE", if self.keystone { "1" } else { "0" });
            for knob in [
                "SWIFT_TLS",
                "SWIFT_TOKEN_LIFE",
                "KEYSTONE_TOKEN_LIFE",
                "SWIFT_LISTING_LIMIT",
                "SWIFT_AIO_PROXY_PORT",
                "SWIFT_AIO_KEYSTONE_PROXY_PORT",
                "SWIFT_AIO_KEYSTONE_PORT",
                "SWIFT_AIO_CATALOG_URL",
                "START_TIMEOUT",
            ] {
                run = run.env_remove(knob);
            }
            if self.tls {
                run = run.env("SWIFT_TLS", "1");
            }
            if let Some(secs) = self.token_life {
                run = run.env("SWIFT_TOKEN_LIFE", secs.to_string());
            }
            if let Some(secs) = self.keystone_token_life {
                run = run.env("KEYSTONE_TOKEN_LIFE", secs.to_string());
            }
            if let Some(limit) = self.listing_limit {
                run = run.env("SWIFT_LISTING_LIMIT", limit.to_string());
            }
            if let Some(url) = &self.catalog_url {
                run = run.env("SWIFT_AIO_CATALOG_URL", url);
            }
            let o = run.run();
            if o.code == Some(0) {
                out = Some(o);
                break;
            }
            let _ = Command::new(SwiftStack::script())
                .arg("stop")
                .arg(&dir)
                .status();
            if attempt == 2 {
                let logs: String = dir_entries(&dir.join("log"))
                    .iter()
                    .map(|name| {
                        let text =
                            fs::read_to_string(dir.join("log").join(name)).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(15).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        format!("--- {name} (tail) ---\n{}\n", tail.join("\n"))
                    })
                    .collect();
                panic!("could not start Swift (swift-aio.sh, {self:?})\n{o}\n{logs}");
            }
        }
        let out = out.expect("started");
        eprintln!(
            "swift-aio started in {:.1} s in {} ({self:?})",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
        let vars: BTreeMap<String, String> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let var = |k: &str| -> String {
            vars.get(k)
                .unwrap_or_else(|| panic!("swift-aio.sh printed no {k}\n{out}"))
                .clone()
        };
        let st_auth = var("ST_AUTH");
        let base_url = st_auth
            .strip_suffix("/auth/v1.0")
            .unwrap_or_else(|| panic!("ST_AUTH {st_auth} does not end in /auth/v1.0"))
            .to_string();
        let mut stack = SwiftStack {
            st_user: var("ST_USER"),
            st_key: var("ST_KEY"),
            proxy_port: var("SWIFT_PROXY_PORT").parse().expect("SWIFT_PROXY_PORT"),
            keystone_proxy_port: self.keystone.then(|| {
                var("SWIFT_KEYSTONE_PROXY_PORT")
                    .parse()
                    .expect("SWIFT_KEYSTONE_PROXY_PORT")
            }),
            cacert: self.tls.then(|| PathBuf::from(var("SWIFT_CACERT"))),
            st_auth,
            base_url,
            storage_url: String::new(),
            token: String::new(),
            current_token: Mutex::new(String::new()),
            vars,
            dir,
            scratch,
        };
        let (url, token) = stack.auth();
        stack.storage_url = url;
        stack.token = token.clone();
        stack.current_token = Mutex::new(token);
        stack
    }
}

/// A Swift account to look at directly: its URL and a token for it.
#[derive(Debug, Clone)]
pub struct SwiftAccount {
    pub storage_url: String,
    pub token: String,
}

/// A real Swift all-in-one (proxy with TempAuth, account, container and object
/// servers, memcached; optionally Keystone v3 with a second proxy) on
/// 127.0.0.1, started by `tests/support/swift-aio.sh` in a scratch directory of
/// its own; stopped when dropped. The helpers that look at Swift directly use a
/// TempAuth token of `st_user` on the TempAuth proxy, renewed when Swift says
/// it expired (stacks with a short `token_life`).
pub struct SwiftStack {
    /// Every KEY=VALUE line the start printed (ST_AUTH, ports, OS_*, ...).
    pub vars: BTreeMap<String, String>,
    pub st_auth: String,
    pub st_user: String,
    pub st_key: String,
    /// The TempAuth proxy's port.
    pub proxy_port: u16,
    /// The Keystone proxy's port (authtoken + keystoneauth), with Keystone.
    pub keystone_proxy_port: Option<u16>,
    /// The CA that signed the proxies' certificate (`tls()` stacks).
    pub cacert: Option<PathBuf>,
    /// `http[s]://127.0.0.1:PROXY_PORT` (ST_AUTH without `/auth/v1.0`).
    pub base_url: String,
    /// The account URL (`http://127.0.0.1:PORT/v1/AUTH_test`) and the token
    /// the stack got at start (see `account` for a current one).
    pub storage_url: String,
    pub token: String,
    current_token: Mutex<String>,
    dir: PathBuf,
    scratch: Scratch,
}

impl SwiftStack {
    /// `tests/support/swift-aio.sh`.
    pub fn script() -> PathBuf {
        support_dir().join("swift-aio.sh")
    }

    /// Options for a stack (Keystone, TLS, token lives, ...).
    pub fn builder() -> SwiftBuilder {
        SwiftBuilder::default()
    }

    /// Start a stack (without Keystone); `listing_limit` sets the names per
    /// listing page (Swift's default is 10000).
    pub fn start(listing_limit: Option<u32>) -> SwiftStack {
        let mut b = SwiftStack::builder();
        if let Some(limit) = listing_limit {
            b = b.listing_limit(limit);
        }
        b.start()
    }

    /// The stack's directory (logs in `log/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A value the start printed, which must be there (e.g. `OS_AUTH_URL`).
    #[track_caller]
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("swift-aio.sh printed no {key}: {:?}", self.vars.keys()))
    }

    /// `GET /info` of the proxy (no auth): Swift's capabilities and limits,
    /// e.g. `["swift"]["container_listing_limit"]`.
    pub fn info(&self) -> Value {
        let url = format!("{}/info", self.base_url);
        let r = self.http(&url, "GET", &[], None);
        r.expect(&[200]);
        r.json()
    }

    /// One request with the harness's client, trusting the stack's CA.
    pub fn http(
        &self,
        url: &str,
        method: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        http_with(
            &self.work(),
            self.cacert.as_deref(),
            method,
            url,
            headers,
            body,
        )
    }

    /// `GET ST_AUTH` with `X-Auth-User`/`X-Auth-Key`: the raw response.
    pub fn tempauth(&self, user: &str, key: &str) -> HttpResponse {
        self.http(
            &self.st_auth,
            "GET",
            &[("X-Auth-User", user), ("X-Auth-Key", key)],
            None,
        )
    }

    /// A fresh TempAuth login as ST_USER/ST_KEY: (X-Storage-Url, X-Auth-Token).
    pub fn auth(&self) -> (String, String) {
        let r = self.tempauth(&self.st_user, &self.st_key);
        r.expect(&[200]);
        (
            r.must_header("X-Storage-Url").to_string(),
            r.must_header("X-Auth-Token").to_string(),
        )
    }

    /// ST_AUTH, ST_USER, ST_KEY for `Run::env`.
    pub fn tempauth_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("ST_AUTH", self.st_auth.clone()),
            ("ST_USER", self.st_user.clone()),
            ("ST_KEY", self.st_key.clone()),
        ];
        env.extend(self.allow_http_env());
        env
    }

    /// `st_auth`, `st_user`, `st_key` for the settings file.
    pub fn tempauth_settings(&self) -> Vec<(&'static str, String)> {
        let mut settings = vec![
            ("st_auth", self.st_auth.clone()),
            ("st_user", self.st_user.clone()),
            ("st_key", self.st_key.clone()),
        ];
        if self.is_plain_http() {
            settings.push(("swift_allow_http", "yes".into()));
        }
        settings
    }

    /// Whether this stack is reached over plain http (the tool then needs
    /// `swift_allow_http`, as a test cloud would).
    pub fn is_plain_http(&self) -> bool {
        self.st_auth.starts_with("http://")
    }

    /// `REDIS_BACKUP_SWIFT_ALLOW_HTTP=yes` when the stack is plain http.
    pub fn allow_http_env(&self) -> Vec<(&'static str, String)> {
        match self.is_plain_http() {
            true => vec![("REDIS_BACKUP_SWIFT_ALLOW_HTTP", "yes".into())],
            false => Vec::new(),
        }
    }

    /// The Keystone v3 password credentials of the demo user, as printed:
    /// OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME,
    /// OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME, OS_REGION_NAME,
    /// OS_INTERFACE (for `Run::env`).
    pub fn keystone_env(&self) -> Vec<(&'static str, String)> {
        [
            "OS_AUTH_URL",
            "OS_USERNAME",
            "OS_PASSWORD",
            "OS_PROJECT_NAME",
            "OS_USER_DOMAIN_NAME",
            "OS_PROJECT_DOMAIN_NAME",
            "OS_REGION_NAME",
            "OS_INTERFACE",
        ]
        .into_iter()
        .map(|k| (k, self.var(k).to_string()))
        .chain(self.allow_http_env())
        .collect()
    }

    /// `keystone_env` as settings-file keys (lower case).
    pub fn keystone_settings(&self) -> Vec<(String, String)> {
        self.keystone_env()
            .into_iter()
            .map(|(k, v)| {
                let key = k.strip_prefix("REDIS_BACKUP_").unwrap_or(k);
                (key.to_lowercase(), v)
            })
            .collect()
    }

    /// OS_AUTH_URL, OS_APPLICATION_CREDENTIAL_ID and
    /// OS_APPLICATION_CREDENTIAL_SECRET of the demo user's application
    /// credential (for `Run::env`).
    pub fn app_credential_env(&self) -> Vec<(&'static str, String)> {
        [
            "OS_AUTH_URL",
            "OS_APPLICATION_CREDENTIAL_ID",
            "OS_APPLICATION_CREDENTIAL_SECRET",
        ]
        .into_iter()
        .map(|k| (k, self.var(k).to_string()))
        .chain(self.allow_http_env())
        .collect()
    }

    /// A Keystone v3 password login (user and project in domain Default),
    /// with the harness's client: the token and the public `object-store`
    /// URL of region `RegionOne` from its catalog.
    pub fn keystone_login(&self, user: &str, password: &str, project: &str) -> SwiftAccount {
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
        let url = format!("{}/auth/tokens", self.var("OS_AUTH_URL"));
        let r = http(
            &self.work(),
            "POST",
            &url,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        );
        r.expect(&[201]);
        let token = r.must_header("X-Subject-Token").to_string();
        let catalog = r.json()["token"]["catalog"].clone();
        let storage_url = catalog
            .as_array()
            .into_iter()
            .flatten()
            .filter(|service| service["type"] == "object-store")
            .flat_map(|service| service["endpoints"].as_array().cloned().unwrap_or_default())
            .find(|e| e["interface"] == "public" && e["region_id"] == "RegionOne")
            .and_then(|e| e["url"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no public object-store endpoint in {catalog}"));
        SwiftAccount { storage_url, token }
    }

    fn work(&self) -> PathBuf {
        self.scratch.join("http")
    }

    /// The TempAuth account of ST_USER with a current token.
    pub fn account(&self) -> SwiftAccount {
        SwiftAccount {
            storage_url: self.storage_url.clone(),
            token: self.current_token.lock().expect("token lock").clone(),
        }
    }

    /// The URL of `path` (`CONTAINER` or `CONTAINER/OBJECT`) in the account.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.storage_url, url_encode(path, true))
    }

    /// A request in `account`; `path_and_query` is already encoded (use
    /// `url_encode`), relative to the account URL. No renewal.
    pub fn request_in(
        &self,
        account: &SwiftAccount,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let mut h = vec![("X-Auth-Token", account.token.as_str())];
        h.extend_from_slice(headers);
        self.http(
            &format!("{}/{path_and_query}", account.storage_url),
            method,
            &h,
            body,
        )
    }

    /// A request with the stack's TempAuth token; `path_and_query` is already
    /// encoded (use `url_encode`), relative to the account URL. A 401 (the
    /// token expired) logs in again and sends the request once more.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let r = self.request_in(&self.account(), method, path_and_query, headers, body);
        if r.status != 401 {
            return r;
        }
        let (_, token) = self.auth();
        *self.current_token.lock().expect("token lock") = token;
        self.request_in(&self.account(), method, path_and_query, headers, body)
    }

    /// HEAD `CONTAINER/OBJECT` (or a container): status and headers.
    pub fn head(&self, path: &str) -> HttpResponse {
        self.request("HEAD", &url_encode(path, true), &[], None)
    }

    /// GET `CONTAINER/OBJECT` (an SLO manifest: its segments' bytes).
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", &url_encode(path, true), &[], None)
    }

    /// PUT `CONTAINER/OBJECT` (or a container, with an empty body).
    pub fn put(&self, path: &str, body: &[u8]) -> HttpResponse {
        self.request("PUT", &url_encode(path, true), &[], Some(body))
    }

    /// DELETE `CONTAINER/OBJECT` (a manifest alone, not its segments).
    pub fn delete(&self, path: &str) -> HttpResponse {
        self.request("DELETE", &url_encode(path, true), &[], None)
    }

    /// Every entry (`name`, `bytes`, `hash`, ...) of `container` whose name
    /// starts with `prefix`, following `marker` page after page. A missing
    /// container lists as empty.
    pub fn list(&self, container: &str, prefix: &str) -> Vec<Value> {
        Self::list_with(container, prefix, |query| {
            self.request("GET", query, &[], None)
        })
    }

    /// `list` in another account (e.g. a Keystone project's).
    pub fn list_in(&self, account: &SwiftAccount, container: &str, prefix: &str) -> Vec<Value> {
        Self::list_with(container, prefix, |query| {
            self.request_in(account, "GET", query, &[], None)
        })
    }

    fn list_with(container: &str, prefix: &str, get: impl Fn(&str) -> HttpResponse) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        let mut marker = String::new();
        for _page in 0..100_000 {
            let query = format!(
                "{}?format=json&prefix={}&marker={}",
                url_encode(container, false),
                url_encode(prefix, false),
                url_encode(&marker, false)
            );
            let r = get(&query);
            if r.status == 404 && marker.is_empty() {
                return all;
            }
            r.expect(&[200, 204]);
            let page = if r.body.is_empty() {
                Vec::new()
            } else {
                match r.json() {
                    Value::Array(items) => items,
                    other => panic!("listing of {container} is not an array: {other}"),
                }
            };
            let Some(last) = page.last() else {
                return all;
            };
            marker = last["name"]
                .as_str()
                .unwrap_or_else(|| panic!("listing entry without a name: {last}"))
                .to_string();
            all.extend(page);
        }
        panic!("listing of {container} never ended");
    }

    /// The names of `list(container, prefix)`.
    pub fn names(&self, container: &str, prefix: &str) -> Vec<String> {
        Self::names_of(&self.list(container, prefix))
    }

    /// The names of `list_in(account, container, prefix)`.
    pub fn names_in(&self, account: &SwiftAccount, container: &str, prefix: &str) -> Vec<String> {
        Self::names_of(&self.list_in(account, container, prefix))
    }

    fn names_of(entries: &[Value]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e["name"].as_str().expect("name").to_string())
            .collect()
    }
}

impl Drop for SwiftStack {
    fn drop(&mut self) {
        match Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "swift-aio.sh stop {} failed ({}): {}",
                self.dir.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run swift-aio.sh stop: {e}"),
        }
    }
}

/// MD5 of `data` as lower-case hex (what Swift puts in ETags and listings).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex(&Md5::digest(data))
}

/// `n` keys `noise:i` of 1 KiB of noise each in db 0, which deflate cannot
/// shrink: a backup of about `n` KiB in storage.
pub fn add_noise_keys(conn: &mut Resp, n: usize, seed: u64) {
    for start in (0..n).step_by(500) {
        let cmds: Vec<_> = (start..n.min(start + 500))
            .map(|i| {
                cmd(&[
                    b"SET".to_vec(),
                    format!("noise:{i}").into_bytes(),
                    noise(1024, seed.wrapping_mul(1_000_003).wrapping_add(i as u64)),
                ])
            })
            .collect();
        conn.pipeline(&cmds);
    }
}

// ---------------------------------------------------------------------------
// A fault-injecting TCP proxy (std threads only)

/// Which way bytes go through a `FaultProxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (the tool) to the server (Swift): requests, uploads.
    ToServer,
    /// From the server to the client: responses, downloads.
    ToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// What a `FaultProxy` does to the bytes it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    PassThrough,
    /// At most this many bytes per second in each direction (all connections
    /// together).
    Throttle(u64),
    /// Once: the connection that carries byte number `after` in `direction`
    /// (counted over all connections since this fault was set) gets exactly
    /// the bytes up to it forwarded, then both its sides are shut down (the
    /// client's later writes meet a reset). Pass-through afterwards.
    DropOnce { direction: Direction, after: u64 },
    /// Like `DropOnce` at byte `first`, and then again every `every` bytes
    /// (in `direction`, over all connections) after the previous cut, for as
    /// long as the fault is set: e.g. no upload larger than `every` can
    /// succeed, while small requests still go through.
    DropRepeatedly {
        direction: Direction,
        first: u64,
        every: u64,
    },
    /// Once: where `DropOnce` would cut the client-to-server bytes at
    /// `after`, the proxy instead answers the request itself with
    /// `500 Internal Server Error` (`Connection: close`): the server gets
    /// nothing more of it (a partial request it throws away), and the rest
    /// of what the client sends is read and discarded.
    ErrorOnce { after: u64 },
    /// `ErrorOnce` at byte `first`, then again every `every` bytes after.
    ErrorRepeatedly { first: u64, every: u64 },
}

impl Fault {
    /// The direction and the byte count of the first cut, if it cuts.
    fn first_cut(self) -> Option<(Direction, u64)> {
        match self {
            Fault::DropOnce { direction, after } => Some((direction, after)),
            Fault::DropRepeatedly {
                direction, first, ..
            } => Some((direction, first)),
            Fault::ErrorOnce { after } => Some((Direction::ToServer, after)),
            Fault::ErrorRepeatedly { first, .. } => Some((Direction::ToServer, first)),
            Fault::PassThrough | Fault::Throttle(_) => None,
        }
    }

    fn answers_500(self) -> bool {
        matches!(
            self,
            Fault::ErrorOnce { .. } | Fault::ErrorRepeatedly { .. }
        )
    }
}

/// A TCP proxy on 127.0.0.1 (port chosen by the system) in front of a server
/// port on 127.0.0.1, which injects a `Fault`. One thread per direction and
/// connection; connections are shut down when the proxy is dropped.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<ProxyShared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

struct ProxyShared {
    /// The server's port; 0 until known (connections are closed until then).
    target: AtomicU16,
    state: Mutex<ProxyState>,
    stop: AtomicBool,
    accepted: AtomicUsize,
    /// Both sockets of every open connection, to shut them down on drop.
    open: Mutex<BTreeMap<usize, (TcpStream, TcpStream)>>,
}

struct ProxyState {
    fault: Fault,
    /// Bytes forwarded per direction since the fault was set.
    bytes: [u64; 2],
    /// Bytes forwarded per direction since the start.
    total: [u64; 2],
    /// The direction and byte count (in `bytes`) of the next cut, if any.
    next_cut: Option<(Direction, u64)>,
    drops: usize,
    /// When the throttle lets the next bytes go, per direction.
    next_slot: [Instant; 2],
    /// Counted in the client-to-server bytes (e.g. `GET /auth/v1.0 `).
    watch: Vec<u8>,
    watched: usize,
}

impl FaultProxy {
    /// A proxy in front of `127.0.0.1:target`, passing everything through.
    pub fn to(target: u16) -> FaultProxy {
        let proxy = FaultProxy::unconnected();
        proxy.set_target(target);
        proxy
    }

    /// A proxy whose server is not known yet (`set_target` later): e.g. to put
    /// its URL in Keystone's catalog before the stack is started.
    pub fn unconnected() -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(ProxyShared {
            target: AtomicU16::new(0),
            state: Mutex::new(ProxyState {
                fault: Fault::PassThrough,
                bytes: [0; 2],
                total: [0; 2],
                next_cut: None,
                drops: 0,
                next_slot: [Instant::now(); 2],
                watch: Vec::new(),
                watched: 0,
            }),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            open: Mutex::new(BTreeMap::new()),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let target = s.target.load(Ordering::SeqCst);
                if target == 0 {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let id = s.accepted.fetch_add(1, Ordering::SeqCst);
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                s.open.lock().expect("open lock").insert(id, (c3, s3));
                let shared = Arc::clone(&s);
                thread::spawn(move || {
                    let down_shared = Arc::clone(&shared);
                    let down = thread::spawn(move || {
                        pump(&down_shared, Direction::ToClient, server, c2);
                    });
                    pump(&shared, Direction::ToServer, client, s2);
                    let _ = down.join();
                    // Closing the last handles: unread bytes make the kernel
                    // answer with a reset.
                    shared.open.lock().expect("open lock").remove(&id);
                });
            }
        });
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Forward new connections to `127.0.0.1:target`.
    pub fn set_target(&self, target: u16) {
        self.shared.target.store(target, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:PORT` (or `https://...` if `tls`).
    pub fn base_url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Inject `fault` from now on; the byte counts of the drops start at 0.
    pub fn set(&self, fault: Fault) {
        let mut st = self.shared.state.lock().expect("proxy state");
        st.fault = fault;
        st.bytes = [0; 2];
        st.next_cut = fault.first_cut();
        st.next_slot = [Instant::now(); 2];
    }

    /// Count the occurrences of `needle` in the client-to-server bytes from
    /// now on (`watched`), e.g. `b"GET /auth/v1.0 "` for TempAuth logins.
    pub fn watch(&self, needle: &[u8]) {
        assert!(!needle.is_empty(), "an empty needle");
        let mut st = self.shared.state.lock().expect("proxy state");
        st.watch = needle.to_vec();
        st.watched = 0;
    }

    /// How often the `watch` needle went through.
    pub fn watched(&self) -> usize {
        self.shared.state.lock().expect("proxy state").watched
    }

    /// How many connections were cut (or answered 500) since the start.
    pub fn drops(&self) -> usize {
        self.shared.state.lock().expect("proxy state").drops
    }

    /// Bytes forwarded in `direction` since the last `set`.
    pub fn bytes(&self, direction: Direction) -> u64 {
        self.shared.state.lock().expect("proxy state").bytes[direction.index()]
    }

    /// Bytes forwarded in `direction` since the start.
    pub fn total_bytes(&self, direction: Direction) -> u64 {
        self.shared.state.lock().expect("proxy state").total[direction.index()]
    }

    /// Connections accepted (and forwarded) since the start.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor up.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for (client, server) in self.shared.open.lock().expect("open lock").values() {
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Forward `from` to `to` in `direction` until either ends, applying the
/// proxy's fault.
fn pump(shared: &ProxyShared, direction: Direction, mut from: TcpStream, mut to: TcpStream) {
    let d = direction.index();
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous chunk, so that a watched needle split across
    // two reads is still counted.
    let mut tail: Vec<u8> = Vec::new();
    let cut = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(std::net::Shutdown::Both);
        let _ = b.shutdown(std::net::Shutdown::Both);
    };
    loop {
        // How much to read at once: small under a throttle (smooth pacing),
        // never past the byte where a drop is due.
        let want = {
            let st = shared.state.lock().expect("proxy state");
            match (st.fault, st.next_cut) {
                (Fault::Throttle(rate), _) => (rate / 20).clamp(512, buf.len() as u64) as usize,
                (_, Some((dd, at))) if dd == direction => {
                    at.saturating_sub(st.bytes[d]).clamp(1, buf.len() as u64) as usize
                }
                _ => buf.len(),
            }
        };
        let n = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let (forward, drop_now, answer_500, wake_at) = {
            let mut st = shared.state.lock().expect("proxy state");
            st.bytes[d] += n as u64;
            st.total[d] += n as u64;
            if direction == Direction::ToServer && !st.watch.is_empty() {
                let mut window = std::mem::take(&mut tail);
                window.extend_from_slice(&buf[..n]);
                let needle = st.watch.clone();
                st.watched += window
                    .windows(needle.len())
                    .filter(|w| *w == needle.as_slice())
                    .count();
                let keep = (needle.len() - 1).min(window.len());
                tail = window[window.len() - keep..].to_vec();
            }
            match (st.fault, st.next_cut) {
                (fault, Some((dd, at))) if dd == direction && st.bytes[d] >= at => {
                    st.next_cut = match fault {
                        Fault::DropRepeatedly { every, .. }
                        | Fault::ErrorRepeatedly { every, .. } => {
                            Some((direction, st.bytes[d] + every.max(1)))
                        }
                        _ => None,
                    };
                    st.drops += 1;
                    let over = (st.bytes[d] - at) as usize;
                    (n - over.min(n), true, fault.answers_500(), None)
                }
                (Fault::Throttle(rate), _) => {
                    let now = Instant::now();
                    let start = st.next_slot[d].max(now);
                    let at = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
                    st.next_slot[d] = at;
                    (n, false, false, Some(at))
                }
                _ => (n, false, false, None),
            }
        };
        if let Some(at) = wake_at {
            let now = Instant::now();
            if at > now {
                thread::sleep(at - now);
            }
        }
        if to.write_all(&buf[..forward]).is_err() {
            cut(&from, &to);
            return;
        }
        if answer_500 {
            answer_500_and_drain(from, to);
            return;
        }
        if drop_now {
            cut(&from, &to);
            return;
        }
    }
}

/// Answer the request under way on `client` with a 500 of the proxy's own,
/// end the server's side, and swallow whatever the client still sends (the
/// rest of an upload) until it closes, so it reads the answer, not a reset.
fn answer_500_and_drain(mut client: TcpStream, server: TcpStream) {
    // Written before the server's side ends: ending it makes the other pump
    // shut the client's write side.
    let _ = client.write_all(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let _ = server.shutdown(std::net::Shutdown::Both);
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut sink = [0u8; 64 * 1024];
    while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
    let _ = client.shutdown(std::net::Shutdown::Both);
}
