//! A private redis-server for rebuilding the AOF of a restored instance. It is
//! the same binary with the same redis.conf (so the same modules, users and
//! renamed commands), overridden on the command line: no TCP port, a Unix
//! socket in a private 0700 directory, AOF off, no RDB saves. No client
//! can reach it, so nothing is written while the AOF is being built, and
//! redis.conf is never edited. Also: which RDB versions this host's
//! redis-server can load.

use crate::error::{Error, Result};
use crate::instance::DataFiles;
use crate::redis::{ConnectOptions, Connection, Endpoint};
use log::{debug, info, warn};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);
/// The private server's socket directory is `<tmp>/redis-backup-aof-<pid>`.
const PRIVATE_DIR_PREFIX: &str = "redis-backup-aof-";

/// The version of the `redis-server` on PATH ("7.0.15").
pub fn server_version() -> Result<String> {
    let output = Command::new("redis-server")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::other(format!("cannot run redis-server --version: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .map(str::to_string)
        .ok_or_else(|| {
            Error::other(format!(
                "cannot tell the version of redis-server from {:?}",
                text.trim()
            ))
        })
}

pub struct PrivateRedis {
    child: Child,
    socket_dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl PrivateRedis {
    /// Start it on the data of `files.dir` and wait until it has loaded.
    /// `pid_file` lets a later run find it if this one is killed.
    pub fn start(
        redis_conf: &Path,
        files: &DataFiles,
        folder: &Path,
        pid_file: &Path,
        connect: &ConnectOptions,
        timeout: Duration,
    ) -> Result<(PrivateRedis, Connection)> {
        let socket_dir = private_socket_dir()?;
        let socket = socket_dir.join("redis.sock");
        let log = folder.join("private-redis.log");
        let mut command = Command::new("redis-server");
        command
            .arg(redis_conf)
            // Unreachable: no TCP, no TLS, only a socket in a 0700 directory.
            .args(["--port", "0", "--tls-port", "0"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700"])
            // Not a replica: a full sync would replace the restored data.
            .args(["--replicaof", "no", "one"])
            .args(["--appendonly", "no", "--save", ""])
            .args(["--daemonize", "no", "--supervised", "no"])
            .arg("--dir")
            .arg(&files.dir)
            .args(["--dbfilename", &files.dbfilename])
            .args(["--appendfilename", &files.appendfilename])
            .arg("--pidfile")
            .arg(pid_file)
            .arg("--logfile")
            .arg(&log);
        // `appenddirname` exists from Redis 7 on; older servers refuse it.
        if server_version().is_ok_and(|v| major(&v) >= 7) {
            command.args(["--appenddirname", &files.appenddirname]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::other(format!("cannot start a private redis-server: {e}")))?;
        info!(
            "started a private redis-server (pid {}) to build the AOF",
            child.id()
        );
        let mut server = PrivateRedis {
            child,
            socket_dir,
            socket,
            log,
        };
        let options = ConnectOptions {
            endpoint: Endpoint::Unix(server.socket.clone()),
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
                return Err(self.failed(&format!("exited ({status}) while loading")));
            }
            match Connection::connect(options) {
                Ok(mut conn) => {
                    let persistence = conn.info("persistence")?;
                    if field(&persistence, "loading") == Some("0") {
                        return Ok(conn);
                    }
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
            let idle = field(&p, "aof_rewrite_in_progress") == Some("0")
                && field(&p, "aof_rewrite_scheduled") == Some("0");
            // `aof_rewrites` (7.0+) counts finished rewrites of this fresh server.
            let rewritten = field(&p, "aof_rewrites").is_none_or(|n| n != "0");
            if idle && rewritten && field(&p, "aof_enabled") == Some("1") {
                if field(&p, "aof_last_bgrewrite_status") != Some("ok") {
                    return Err(
                        self.failed("failed to write the AOF (aof_last_bgrewrite_status:err)")
                    );
                }
                let pre7_file = files.dir.join(&files.appendfilename);
                if files.aof_manifest().exists() || pre7_file.exists() {
                    info!(
                        "AOF rebuilt from the restored data in {}s",
                        crate::record::seconds(started.elapsed(), 1)
                    );
                    return Ok(());
                }
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
            "the private redis-server that rebuilds the AOF {what}; its log is {}",
            self.log.display()
        ))
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
        let _ = fs::remove_dir_all(&self.socket_dir);
    }
}

/// A fresh 0700 directory for the socket, under the temporary dir rather than
/// the work folder: a Unix socket path must be shorter than 108 bytes, and a
/// data dir can be deep.
fn private_socket_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{PRIVATE_DIR_PREFIX}{}", std::process::id()));
    // Left by an earlier run with our pid (after a reboot): ours to replace.
    let _ = fs::remove_dir_all(&dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::other(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// A private redis-server that a killed run left behind, found by its pid
/// file, is ended before anything touches the files it may be writing. Only a
/// process that is a redis-server working in `data_dir` is signalled.
pub fn end_orphan(pid_file: &Path, data_dir: &Path) -> Result<()> {
    let Some(pid) = fs::read_to_string(pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return Ok(());
    };
    if !is_private_server(pid, data_dir) {
        return Ok(());
    }
    warn!("ending the private redis-server (pid {pid}) an interrupted restore left running");
    terminate(pid)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while is_private_server(pid, data_dir) {
        if Instant::now() >= deadline {
            return Err(Error::other(format!(
                "the private redis-server (pid {pid}) left by an interrupted restore does not stop; end it by hand"
            )));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

fn is_private_server(pid: u32, data_dir: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let running = fs::read_to_string(proc_dir.join("stat"))
        .map(|stat| {
            !matches!(
                stat.rsplit(") ").next().and_then(|r| r.chars().next()),
                Some('Z' | 'X')
            )
        })
        .unwrap_or(false);
    // Only ours: its title names the socket in our private directory (a
    // server with no TCP port shows its socket), never the service's Redis.
    let is_ours = fs::read(proc_dir.join("cmdline"))
        .map(|cmdline| {
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("redis-server") && cmdline.contains(PRIVATE_DIR_PREFIX)
        })
        .unwrap_or(false);
    let cwd = fs::read_link(proc_dir.join("cwd")).ok();
    let in_data_dir = cwd.is_some_and(|cwd| Some(cwd) == fs::canonicalize(data_dir).ok());
    running && is_ours && in_data_dir
}

/// SIGTERM by pid, with the `kill` command (no unsafe code for a signal).
fn terminate(pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|e| Error::other(format!("cannot run kill: {e}")))?;
    match status.success() {
        true => Ok(()),
        false => Err(Error::other(format!("kill -TERM {pid} failed ({status})"))),
    }
}

fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

fn field<'a>(info: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    info.get(name).map(String::as_str)
}
