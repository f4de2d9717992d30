//! A private redis-server that loads the restored RDB before Redis is
//! stopped: to rebuild the AOF of an instance that uses one, or only to
//! prove that this host's server loads a backup that a newer release or
//! the other flavor wrote (an RDB version it takes can still hold a type
//! it lacks). It is
//! the same binary with the same redis.conf (so the same modules, users and
//! renamed commands), overridden on the command line: no TCP port, a Unix
//! socket in a private directory, AOF off, no RDB saves. No client can reach
//! it, so nothing is written while the AOF is being built, and redis.conf is
//! never edited.
//!
//! It runs as the data dir's owner, never as root: redis.conf may be that
//! account's to write (a `loadmodule` line is code), and the server writes
//! files in a dir that account controls (a planted symlink must meet the
//! kernel's refusal, not root's rights). Its files come out owned by that
//! account with nothing to hand over afterwards. It works in the restore's
//! `aof/` folder, not the data dir, so the AOF is built while Redis still
//! runs and the outage is only the moves and Redis's own start.

use crate::bounded;
use crate::codec::crypto;
use crate::error::{Error, Result};
use crate::fs::data_dir::{self, DataDir, Owner, PrivateDir, Removal};
use crate::redis::as_account;
use crate::redis::conf::RedisConf;
use crate::redis::instance::DataFiles;
use crate::redis::server::{Flavor, ServerBinary};
use crate::redis::server_log::ServerLog;
use crate::redis::{ConnectOptions, Connection, Endpoint};
use crate::restore::journal::WorkDir;
use log::{debug, info, warn};
use rustix::fs::{self as rfs, Mode};
use rustix::process::{kill_process, pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);
/// The private server's socket directory is `/tmp/redis-backup-aof-<random>`.
const PRIVATE_DIR_PREFIX: &str = "redis-backup-aof-";
/// Files the private server creates get the modes Debian's unit gives
/// Redis's own (UMask=007).
const SERVER_UMASK: u32 = 0o007;

/// Has the target's own `*-check-aof` read the AOF just built in
/// `files.dir` (the manifest of Redis 7 and Valkey, or Redis 6's single
/// file), as the data dir's owner: the files are that account's, and root
/// does not open paths inside a directory another user can write.
pub fn check_aof(
    binary: &ServerBinary,
    files: &DataFiles,
    data: &DataDir,
    wait: Duration,
) -> Result<()> {
    let owner = Owned { files, data, wait };
    if !binary.writes_multipart_aof() {
        let file = files.dir.join(&files.appendfilename);
        let tool = binary.companion("check-aof");
        return owner.run(&tool, &tool, &[file.as_os_str()]);
    }
    // valkey-check-aof 9.0 and 9.1 refuse the VALKEY-magic RDB base their
    // own server writes ("not valid", though the server loads it): there
    // the base is checked with valkey-check-rdb instead, which reads it.
    // Finding it means listing the AOF dir, which the owner does too: root
    // lists nothing in a directory that account can swap.
    if binary.flavor == Flavor::Valkey && binary.major() >= 9 {
        let dir = files.dir.join(&files.appenddirname);
        let tool = binary.companion("check-rdb");
        let each_base = r#"for base in "$2"/*.base.rdb; do "$1" "$base" || exit 1; done"#;
        let args = [
            OsStr::new("-c"),
            OsStr::new(each_base),
            OsStr::new("sh"),
            OsStr::new(&tool),
            dir.as_os_str(),
        ];
        return owner.run(&tool, "sh", &args);
    }
    let manifest = files.aof_manifest();
    let tool = binary.companion("check-aof");
    owner.run(&tool, &tool, &[manifest.as_os_str()])
}

/// A check run as the data dir's owner, in `files.dir`, within `wait`.
struct Owned<'a> {
    files: &'a DataFiles,
    data: &'a DataDir,
    wait: Duration,
}

impl Owned<'_> {
    /// Runs `program` (a server's checking `tool`, or a shell around it);
    /// its verdict is its exit status. It is that account's process, which
    /// the account may stop or keep busy: past `wait` it is killed, with
    /// what it started, and the check has failed.
    fn run(&self, tool: &str, program: &str, args: &[&OsStr]) -> Result<()> {
        let owner = self.data.owner();
        let checked = args
            .last()
            .map_or(String::new(), |a| a.to_string_lossy().into_owned());
        let mut child = as_account::command(program, owner.uid, owner.gid)
            .args(args)
            .current_dir(&self.files.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::other(format!("cannot run {program}: {e}")))?;
        // Read apart, and never waited for past the deadline: what the
        // tool started may hold the pipe open after it.
        let said_rx = bounded::read_apart(child.stdout.take().expect("piped"));
        let waited = bounded::wait_until(&mut child, Instant::now() + self.wait)
            .map_err(|e| Error::other(format!("cannot wait for {program}: {e}")))?;
        let status = match waited {
            Some(status) => status,
            None => {
                // Its group first (it leads one, in a session of its own:
                // `as_account`), while the leader is not reaped: its id
                // cannot be another's then.
                if let Some(group) = Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(group, Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::other(format!(
                    "{tool} did not finish checking the rebuilt {checked} within {}s (save_timeout; it runs as the data dir's owner, who may have stopped it); Redis was not touched",
                    self.wait.as_secs()
                )));
            }
        };
        if !status.success() {
            let said = said_rx.recv_timeout(POLL).unwrap_or_default();
            let said = String::from_utf8_lossy(&said);
            let last = said
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(Error::other(format!(
                "{tool} does not accept the rebuilt {checked} ({status}): {last}"
            )));
        }
        info!("{tool} accepts the rebuilt {checked}");
        Ok(())
    }
}

pub struct PrivateRedis {
    child: Child,
    /// Removed when the server is gone (after `Drop` below has ended it).
    _socket_dir: SocketDir,
    /// What it says (`ServerLog`: its output, never in a file).
    log: ServerLog,
    /// Its directory (the work folder's `aof/`), opened from the work
    /// folder's descriptor: the data dir's owner may rename the folder and
    /// put another under its name, and root looks only in this one.
    dir: OwnedFd,
    /// What it is for, in its messages: "rebuilds the AOF".
    purpose: &'static str,
    /// The redis.conf it was started on, for a message.
    conf: PathBuf,
}

impl PrivateRedis {
    /// Start it, as the data dir's owner, on the RDB in `files.dir` (the
    /// restore's `aof/`) and wait until it has loaded. Its pid is noted in
    /// the work folder so that a later run can end it if this one is killed.
    /// An RDB the server stops at while loading it is an integrity error
    /// quoting the server's reason (the caller names the backup).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        purpose: &'static str,
        binary: &ServerBinary,
        redis_conf: &RedisConf,
        files: &DataFiles,
        data: &DataDir,
        work: &WorkDir,
        connect: &ConnectOptions,
        timeout: Duration,
    ) -> Result<(PrivateRedis, Connection)> {
        let owner = data.owner();
        let socket_dir = SocketDir::create(owner)?;
        let socket = socket_dir.path().join("redis.sock");
        let (said, says) = std::io::pipe()
            .map_err(|e| Error::other(format!("cannot make a pipe for the private server: {e}")))?;
        let dir = work
            .aof_build()
            .map_err(|e| Error::other(format!("cannot open {}: {e}", files.dir.display())))?;
        let mut command = as_account::command(&binary.program, owner.uid, owner.gid);
        command
            .arg(&redis_conf.source)
            // Unreachable: no TCP, no TLS, only a socket in a private directory.
            .args(["--port", "0"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700"])
            // Not a replica: a full sync would replace the restored data.
            .args(["--replicaof", "no", "one"])
            .args(["--appendonly", "no", "--save", ""])
            .args(["--daemonize", "no", "--supervised", "no"])
            // No pid file (the service's would be overwritten) and the log on
            // stdout, which goes to a pipe of ours.
            .args(["--pidfile", "", "--logfile", ""])
            .arg("--dir")
            .arg(&files.dir)
            .args(["--dbfilename", &files.dbfilename])
            .args(["--appendfilename", &files.appendfilename]);
        // A server built without TLS refuses `tls-port` even as 0 (Redis
        // 6.2 does); one with a TLS port configured must be told to close it.
        if redis_conf.tls_port_set {
            command.args(["--tls-port", "0"]);
        }
        // `appenddirname` exists from Redis 7 on (Valkey forked from 7.2);
        // older servers refuse it.
        if binary.writes_multipart_aof() {
            command.args(["--appenddirname", &files.appenddirname]);
        }
        let stdout = says
            .try_clone()
            .map_err(|e| Error::other(format!("cannot share the private server's pipe: {e}")))?;
        command
            .current_dir(&files.dir)
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(says));
        // The umask is the process's; nothing else of ours creates files
        // while the server is being started.
        let umask = rustix::process::umask(Mode::from_raw_mode(SERVER_UMASK));
        let spawned = command.spawn();
        rustix::process::umask(umask);
        // Ours closed with `command`: the pipe ends when the server does.
        drop(command);
        let child = spawned
            .map_err(|e| Error::other(format!("cannot start a private {}: {e}", binary.program)))?;
        info!(
            "started a private {} {} (pid {}, uid {}) that {purpose}",
            binary.program,
            binary.version,
            child.id(),
            owner.uid
        );
        let mut server = PrivateRedis {
            child,
            _socket_dir: socket_dir,
            log: ServerLog::read_from(said),
            dir,
            purpose,
            conf: redis_conf.source.clone(),
        };
        work.record_private_pid(server.child.id())?;
        // The socket's directory is writable by the owner's group, which
        // could put another socket (or a link to one) in its place.
        let options = ConnectOptions {
            endpoint: Endpoint::UnixOf {
                path: socket,
                owners: vec![data.owner().uid],
            },
            ..connect.clone()
        };
        let conn = server.wait_until_loaded(&options, timeout)?;
        Ok((server, conn))
    }

    fn wait_until_loaded(
        &mut self,
        options: &ConnectOptions,
        timeout: Duration,
    ) -> Result<Connection> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Killed (the OOM killer, say) is not the RDB's doing.
                if let Some(reason) = status.code().and(self.load_refusal()) {
                    return Err(Error::integrity(reason));
                }
                // A config it refuses is a setting to mend (exit 2), not
                // the RDB's fault; only as it exits by itself.
                if let Some(at) = status.code().and(self.log.said().config_refused) {
                    return Err(Error::usage(format!(
                        "the private server that {} refused {}{at}: {}; Redis was not touched: mend it, and run the restore again",
                        self.purpose,
                        self.conf.display(),
                        self.last_words()
                    )));
                }
                return Err(self.failed(&format!("exited ({status}) while loading")));
            }
            match Connection::connect(options) {
                Ok(mut conn) => {
                    let persistence = conn.info("persistence")?;
                    if field(&persistence, "loading") == Some("0") {
                        return Ok(conn);
                    }
                }
                // It takes redis.conf's password, which the live server
                // may no longer have (CONFIG SET without CONFIG REWRITE):
                // asking again changes nothing.
                Err(e) if e.message().contains("password") => {
                    return Err(self.failed(&format!(
                        "does not take the password we have ({e}); it starts from redis.conf: is the live server's password one CONFIG SET gave it and CONFIG REWRITE did not write back?"
                    )));
                }
                Err(e) => debug!("private redis-server not ready: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(self.failed("did not finish loading in time"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Turn the AOF on and wait until Redis has written it completely: the
    /// rewrite ran and ended well, and the manifest names its files.
    pub fn build_aof(
        &mut self,
        conn: &mut Connection,
        files: &DataFiles,
        timeout: Duration,
    ) -> Result<()> {
        let started = Instant::now();
        conn.call("CONFIG", &[b"SET", b"appendonly", b"yes"])?;
        let deadline = started + timeout;
        loop {
            let p = conn.info("persistence")?;
            // A rewrite that failed (the disk full, say) is tried again and
            // again, minutes apart: waiting for it would hold the host lock
            // and the space until `save_timeout`.
            if field(&p, "aof_last_bgrewrite_status") == Some("err") {
                return Err(self.failed("failed to write the AOF (aof_last_bgrewrite_status:err)"));
            }
            let idle = field(&p, "aof_rewrite_in_progress") == Some("0")
                && field(&p, "aof_rewrite_scheduled") == Some("0");
            // `aof_rewrites` (7.0+) counts finished rewrites of this fresh server.
            let rewritten = field(&p, "aof_rewrites").is_none_or(|n| n != "0");
            let enabled = field(&p, "aof_enabled") == Some("1");
            if idle && rewritten && enabled && aof_written(self.dir.as_fd(), files) {
                info!(
                    "AOF rebuilt from the restored data in {}s",
                    crate::units::seconds(started.elapsed(), 1)
                );
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failed("did not finish writing the AOF in time"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM to our own child (not the service): a clean shutdown that
    /// fsyncs the AOF, and one that works even when redis.conf renamed
    /// SHUTDOWN away. Then wait for the process to end.
    pub fn shut_down(mut self, conn: Connection, timeout: Duration) -> Result<()> {
        drop(conn);
        terminate(self.child.id())?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(self.failed(&format!("exited with {status} when told to stop")))
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => return Err(self.failed("did not shut down in time")),
            }
        }
    }

    fn failed(&self, what: &str) -> Error {
        Error::other(format!(
            "the private server that {} {what}; the last line of its log: {}",
            self.purpose,
            self.last_words()
        ))
    }

    /// The last line the server logged, or what it sent its primary.
    fn last_words(&self) -> String {
        let words = self.log.said().last_words();
        match words.is_empty() {
            true => "(empty)".to_string(),
            false => words,
        }
    }

    /// Why a server that exited had refused the RDB (`Gist::load_refusal`).
    fn load_refusal(&self) -> Option<String> {
        self.log.said().load_refusal()
    }
}

impl Drop for PrivateRedis {
    /// A private server left running would hold the data dir; it is our own
    /// child (not the service), so ending it directly is safe.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh directory for the socket, under the temporary dir rather than the
/// work folder: a Unix socket path must be shorter than 108 bytes, and a data
/// dir can be deep. Its name is random (nobody can plant it in advance), it
/// stays root's (so in a sticky /tmp nobody else can rename or replace it),
/// and only its group is the data dir owner's, so the server can make its
/// socket there.
struct SocketDir(PrivateDir);

impl SocketDir {
    fn create(owner: Owner) -> Result<SocketDir> {
        let random = crypto::hex(&crypto::random_bytes::<8>()?);
        // Not $TMPDIR: the environment of a run by hand may name a folder
        // another account may write in, which could take the folder away.
        let tmp = PathBuf::from("/tmp");
        // The owner's group may write in it (for the server's socket).
        data_dir::sweep_abandoned(&tmp, PRIVATE_DIR_PREFIX, Removal::Flat);
        let name = format!("{PRIVATE_DIR_PREFIX}{random}");
        let failed = |e: std::io::Error| {
            Error::other(format!("cannot create {}: {e}", tmp.join(&name).display()))
        };
        let dir = PrivateDir::create(&tmp, &name, Removal::Flat).map_err(failed)?;
        rfs::fchown(dir.fd(), None, Some(gid(owner.gid)))
            .and_then(|()| rfs::fchmod(dir.fd(), Mode::from_raw_mode(0o770)))
            .map_err(|e| failed(e.into()))?;
        Ok(SocketDir(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn gid(raw: u32) -> rfs::Gid {
    rfs::Gid::from_raw(raw)
}

/// A private redis-server that a killed run left behind, found by the pid
/// that run noted in its work folder, is ended before anything touches the
/// files it may be writing. Only a process that is a redis-server of ours,
/// running as the data dir's owner in that run's `aof/`, is signalled.
pub fn end_orphan(work: &WorkDir, data: &DataDir) -> Result<()> {
    let Some(pid) = work.private_pid() else {
        return Ok(());
    };
    // The pidfd pins the process: once it is open, the checks below are of
    // the process we will signal, not of one that took its pid meanwhile.
    let Some(pidfd) = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
    else {
        return Ok(());
    };
    let dir = work.aof_build_path();
    if !is_private_server(pid, &dir, data) {
        return Ok(());
    }
    warn!("ending the private redis-server (pid {pid}) an interrupted restore left running");
    pidfd_send_signal(&pidfd, Signal::TERM)
        .map_err(|e| Error::other(format!("cannot signal process {pid}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while is_private_server(pid, &dir, data) {
        if Instant::now() >= deadline {
            return Err(Error::other(format!(
                "the private redis-server (pid {pid}) left by an interrupted restore does not stop; end it by hand"
            )));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

fn is_private_server(pid: u32, dir: &Path, data: &DataDir) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    // Read without waiting on a lease (`read_proc`): the server is the
    // owner's, and one that cannot be read is not taken for ours.
    let running = crate::fs::read_proc(&proc_dir.join("stat"), PROC_FILE_CAP)
        .map(|stat| {
            let stat = String::from_utf8_lossy(&stat);
            !matches!(
                stat.rsplit(") ").next().and_then(|r| r.chars().next()),
                Some('Z' | 'X')
            )
        })
        .unwrap_or(false);
    // Only ours: its title names the socket in our private directory (a
    // server with no TCP port shows its socket), never the service's Redis.
    let is_ours = crate::fs::read_proc(&proc_dir.join("cmdline"), PROC_FILE_CAP)
        .map(|cmdline| {
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("redis-server") || cmdline.contains("valkey-server"))
                && cmdline.contains(PRIVATE_DIR_PREFIX)
        })
        .unwrap_or(false);
    let cwd = fs::read_link(proc_dir.join("cwd")).ok();
    let in_its_dir = cwd.is_some_and(|cwd| cwd == dir);
    running && is_ours && in_its_dir && real_uid(&proc_dir) == Some(data.owner().uid)
}

/// The real uid of a process, from its `status`.
fn real_uid(proc_dir: &Path) -> Option<u32> {
    let status = crate::fs::read_proc(&proc_dir.join("status"), PROC_FILE_CAP).ok()?;
    let status = String::from_utf8_lossy(&status);
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// More than any `stat`, `status` or server `cmdline` holds.
const PROC_FILE_CAP: u64 = 64 << 10;

/// Whether the rewrite left its file in `dir`: Redis 7's manifest in its
/// directory, or Redis 6's single file. Looked up by descriptor without
/// following a link: the folder is the owner's, who may swap a link in, and
/// root learns nothing about where it points.
fn aof_written(dir: BorrowedFd<'_>, files: &DataFiles) -> bool {
    let manifest = format!("{}.manifest", files.appendfilename);
    data_dir::entry_exists(dir, &files.appendfilename)
        || data_dir::open_dir(dir, files.appenddirname.as_str())
            .is_ok_and(|aof| data_dir::entry_exists(aof.as_fd(), &manifest))
}

/// SIGTERM by pid.
fn terminate(pid: u32) -> Result<()> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Error::other(format!("{pid} is not a process id")))?;
    kill_process(target, Signal::TERM)
        .map_err(|e| Error::other(format!("cannot signal process {pid}: {e}")))
}

fn field<'a>(info: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    info.get(name).map(String::as_str)
}
