//! The state of an instance at a moment: its window's base, then every
//! archived command received at or before that moment, applied by the
//! target's own server as the instance's replicas applied them: the server
//! is made the replica of this process (`primary`), which sends it the base
//! as a full resync's RDB (read to its length, whatever follows its end)
//! and the commands as the stream after it; once it has applied every byte
//! sent, it saves the RDB that export or restore takes. Chunks are proven
//! one by one: each record and object authenticated, each the next in the
//! window by sequence number and offset, so a gap, a duplicate, a reorder
//! or an edit stops the replay (exit 5) instead of being stepped over.
//! Which of their commands go in, and as what, is `apply`'s business.
//!
//! The server runs as an account of its own: a uid (and gid) chosen at
//! random, in no passwd or group file nor lent as a subordinate id, that
//! no process has, so nothing on the host can reach its socket, read the
//! decrypted data or touch its files (a shared `nobody` could). It listens
//! on no TCP port and has no config file, and works in a directory that is
//! root's until it is handed over. When it has saved and is gone, root
//! opens the RDB once, without following a link, checks it as an RDB and
//! reads it from that same descriptor. Everything waits at most until the
//! replay's deadline (`save_timeout`).

use super::apply::{Applier, Arities, Spill, DATABASES};
use super::primary::{Link, Primary};
use super::stream::{self, Batch};
use super::windows::Window;
use super::ChunkName;
use crate::codec::crypto::{self, MasterKey};
use crate::codec::rdb::{RdbCheck, RdbInfo};
use crate::error::{Error, Result};
use crate::fs::data_dir::{self, PrivateDir, Removal};
use crate::record::{ArchivePlace, Record};
use crate::redis::as_account;
use crate::redis::server::{Flavor, ServerBinary};
use crate::redis::server_log::ServerLog;
use crate::redis::{ConnectOptions, Connection, Endpoint};
use crate::storage::Storage;
use crate::stored::{load_record, Stored};
use crate::units;
use log::info;
use rustix::fs::{self as rfs, Mode};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the replay account's uid is drawn from: far above any real
/// account's, below the 2^31 some tools choke on.
const UID_RANGE: std::ops::Range<u32> = 0x6000_0000..0x7000_0000;
const DIR_PREFIX: &str = "redis-backup-replay-";
/// Large: it holds the base RDB and the commands.
const PARENT: &str = "/var/tmp";
const RDB_NAME: &str = "replayed.rdb";
const POLL: Duration = Duration::from_millis(50);
/// Less free in `PARENT` than this, as the replay fails, and that is why
/// (the replica's sync file and its save say so in other words).
const NEARLY_FULL: u64 = 1 << 20;
/// What a replay made.
pub struct Replayed {
    /// The saved RDB, opened once and checked; read it from the start.
    rdb: File,
    /// What the check found, and its size.
    pub rdb_info: RdbInfo,
    pub rdb_size: u64,
    _dir: ReplayDir,
    /// The receive time of the last command applied (the base's time if none).
    pub applied_until: u64,
    pub commands: u64,
    pub base: String,
    /// The databases that hold keys in the RDB.
    pub databases: Vec<u32>,
}

impl Replayed {
    /// The RDB the replay saved.
    pub fn rdb(&mut self) -> &mut File {
        &mut self.rdb
    }
}

/// Replay `window` up to `at` (µs since the epoch).
pub fn replay(
    storage: &dyn Storage,
    key: &MasterKey,
    binary: &ServerBinary,
    window: &Window,
    at: u64,
    timeout: Duration,
) -> Result<Replayed> {
    let started = Instant::now();
    let deadline = started + timeout;
    let dir = ReplayDir::create()?;
    let account = fresh_account()?;
    dir.hand_over(SERVER_DIR, account)?;
    let primary = Primary::listen()?;
    let mut server = ReplayServer::start(binary, &dir, account, timeout)?;
    let mut conn = server.reachable(deadline)?;
    let arities = server.arities(&mut conn)?;
    server.follow(&mut conn, &primary)?;
    let mut link = primary.accept(account, deadline)?;

    let mut applier = Applier::new(at, arities, dir.spill()?);
    send(storage, key, window, &mut applier, &mut link).map_err(|e| {
        if link.closed() {
            server.failed("dropped the link to its primary")
        } else if Instant::now() >= deadline {
            server.failed("did not take the archive in time (save_timeout)")
        } else {
            e
        }
    })?;
    let base = &window.base;
    let base_place = base.archive.as_ref().expect("a base has its place");
    let applied_until = applier.applied_until.unwrap_or(base_place.span_micros().0);
    info!(
        "sent the base and {} commands of window {} up to {} to a private {}",
        applier.commands,
        base.id,
        units::utc_millis(applied_until),
        binary.program
    );
    server.caught_up(&mut conn, &link, deadline)?;
    // The databases the RDB will hold keys in (a replica expires none):
    // a restore refuses a target that serves fewer before it stops Redis.
    let databases = conn.keyspace()?.into_keys().collect();
    server.save(&mut conn, deadline)?;
    // The server goes before its link and the port: it must never sync
    // again, from whatever might take the port next.
    drop(server);
    drop(link);
    drop(primary);
    let (rdb, rdb_info, rdb_size) = checked_rdb(&dir, SERVER_DIR, RDB_NAME)?;
    info!(
        "replayed window {} to {} in {}s",
        base.id,
        units::utc_millis(applied_until),
        units::seconds(started.elapsed(), 1)
    );
    Ok(Replayed {
        rdb,
        rdb_info,
        rdb_size,
        _dir: dir,
        applied_until,
        commands: applier.commands,
        base: base.id.to_string(),
        databases,
    })
}

/// Send the base of `window` on `link`, then the commands `applier` takes.
fn send(
    storage: &dyn Storage,
    key: &MasterKey,
    window: &Window,
    applier: &mut Applier,
    link: &mut Link,
) -> Result<()> {
    let base = &window.base;
    let stored = Stored::open(storage, &base.id, key, false)?;
    link.send_rdb(base.raw_size, |out| {
        stored.decode_into(out, key, 2).map(drop)
    })?;
    let at = applier.at;
    let base_place = base.archive.as_ref().expect("a base has its place");
    let chunks = storage.archive();
    let mut chain = Chain::new(base, base_place);
    for name in window.chunks_to(at) {
        let Some(record) = chain.next(&*chunks, key, name)? else {
            continue;
        };
        let place = record.archive.clone().expect("checked by the chain");
        if place.span_micros().0 > at {
            break;
        }
        let batches = read_chunk(&*chunks, key, &record, &place)?;
        if !applier.apply(&batches, link)? {
            break;
        }
    }
    applier.finish()?;
    link.finish()
}

/// The chunks of one window, checked in order: each authentic, of this
/// base and instance, and exactly the next by sequence number and offset.
struct Chain<'a> {
    base: &'a Record,
    seq: u64,
    offset: u64,
}

impl<'a> Chain<'a> {
    fn new(base: &'a Record, place: &ArchivePlace) -> Chain<'a> {
        Chain {
            base,
            seq: 0,
            offset: place.start_offset,
        }
    }

    /// The record of chunk `name` if it is the next one; an error if the
    /// window has a gap or a chunk out of place.
    fn next(
        &mut self,
        storage: &dyn Storage,
        key: &MasterKey,
        name: &ChunkName,
    ) -> Result<Option<Record>> {
        let base = &self.base.id;
        if name.start != self.offset {
            let what = match name.start < self.offset {
                true => "overlaps what came before it: a duplicate or a chunk out of place",
                false => "leaves a gap after the chunk before it: a chunk is missing",
            };
            return Err(Error::integrity(format!(
                "window {base}: chunk {} starts at offset {}, where the stream is at {}; it {what}",
                name.id(),
                name.start,
                self.offset
            )));
        }
        let id = name.id();
        let record = load_record(storage, &id, key)?;
        let place = record.archive.as_ref().ok_or_else(|| {
            Error::integrity(format!(
                "chunk {id} has no place in an archive: not a chunk"
            ))
        })?;
        let expected = (
            base,
            self.seq + 1,
            name.start,
            name.end,
            name.session_start,
            &self.base.instance,
        );
        let found = (
            &place.base,
            place.seq,
            place.start_offset,
            place.end_offset,
            place.session_start,
            &record.instance,
        );
        if found != expected
            || record.source != super::CHUNK_SOURCE
            || !storage.is_location_of(&id, &record.location)
        {
            return Err(Error::integrity(format!(
                "chunk {id} is not the next chunk of window {base} (it says base {}, number {}, offsets {}..{}, instance {}, written to {}; expected number {}): moved, copied or replaced",
                place.base, place.seq, place.start_offset, place.end_offset, record.instance, record.location, self.seq + 1
            )));
        }
        self.seq += 1;
        self.offset = name.end;
        Ok(Some(record))
    }
}

/// A chunk's batches, its object authenticated against its record.
fn read_chunk(
    storage: &dyn Storage,
    key: &MasterKey,
    record: &Record,
    place: &ArchivePlace,
) -> Result<Vec<Batch>> {
    let mut payload = Vec::with_capacity(record.raw_size.min(1 << 30) as usize);
    Stored::open(storage, &record.id, key, false)?.decode_stream_into(&mut payload, key)?;
    let batches = stream::decode_chunk(&payload)?;
    let bytes: u64 = batches.iter().map(|b| b.bytes.len() as u64).sum();
    let (first, last) = place.span_micros();
    let in_order = batches.windows(2).all(|w| w[0].at_micros <= w[1].at_micros);
    let span = (
        batches.first().map(|b| b.at_micros),
        batches.last().map(|b| b.at_micros),
    );
    if bytes != place.end_offset - place.start_offset
        || !in_order
        || span != (Some(first), Some(last))
    {
        return Err(Error::integrity(format!(
            "chunk {} does not hold what its record says (offsets, times or order): tampered",
            record.id
        )));
    }
    Ok(batches)
}

/// The folder of the server that replays.
const SERVER_DIR: &str = "srv";

/// `<PARENT>/redis-backup-replay-<random>/` (root's, 0711) with `srv/`
/// inside, root's until it is handed to its server's account.
struct ReplayDir(PrivateDir);

impl ReplayDir {
    fn create() -> Result<ReplayDir> {
        data_dir::sweep_abandoned(Path::new(PARENT), DIR_PREFIX, Removal::Whole);
        let random = crypto::hex(&crypto::random_bytes::<8>()?);
        let name = format!("{DIR_PREFIX}{random}");
        let failed = |e: std::io::Error| {
            Error::other(format!(
                "cannot create {}: {e}",
                Path::new(PARENT).join(&name).display()
            ))
        };
        let dir = PrivateDir::create(Path::new(PARENT), &name, Removal::Whole).map_err(failed)?;
        rfs::fchmod(dir.fd(), Mode::from_raw_mode(0o711)).map_err(|e| failed(e.into()))?;
        data_dir::create_private_dir(dir.fd(), SERVER_DIR).map_err(failed)?;
        Ok(ReplayDir(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// A file without a name, in this folder of root's.
    fn spill(&self) -> Result<Spill> {
        let flags = rfs::OFlags::RDWR | rfs::OFlags::TMPFILE | rfs::OFlags::CLOEXEC;
        rfs::openat(self.0.fd(), ".", flags, Mode::from_raw_mode(0o600))
            .map(|fd| Spill::new(File::from(fd)))
            .map_err(|e| self.failed("create a file", e.into()))
    }

    fn server_dir(&self, sub: &str) -> PathBuf {
        self.path().join(sub)
    }

    fn failed(&self, what: &str, e: std::io::Error) -> Error {
        Error::other(format!("cannot {what} in {}: {e}", self.path().display()))
    }

    /// Give `sub/` and everything in it to the replay account.
    fn hand_over(&self, sub: &str, account: u32) -> Result<()> {
        let srv = data_dir::open_dir(self.0.fd(), sub).map_err(|e| self.failed("open", e))?;
        give(srv.as_fd(), account).map_err(|e| self.failed("hand over", e))
    }
}

/// `fchown` the directory `dir` and what is in it (one level of
/// subdirectories: all a replay makes), by descriptor.
fn give(dir: std::os::fd::BorrowedFd<'_>, account: u32) -> std::io::Result<()> {
    let (uid, gid) = (
        Some(rfs::Uid::from_raw(account)),
        Some(rfs::Gid::from_raw(account)),
    );
    data_dir::for_each_name(dir, |name| {
        let flags = rfs::OFlags::RDONLY | rfs::OFlags::NOFOLLOW | rfs::OFlags::CLOEXEC;
        let entry = rfs::openat(dir, name, flags, Mode::empty())?;
        if rfs::fstat(&entry)?.st_mode & 0o170000 == 0o040000 {
            give(entry.as_fd(), account)
        } else {
            Ok(rfs::fchown(&entry, uid, gid)?)
        }
    })?;
    rfs::fchown(dir, uid, gid)?;
    Ok(())
}

/// A uid (also the gid) no account and no process has: nothing on the host
/// shares it with the replay server.
fn fresh_account() -> Result<u32> {
    let taken_in = |file: &str| -> std::collections::HashSet<u32> {
        fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(':').nth(2)?.parse().ok())
            .collect()
    };
    let (users, groups) = (taken_in("/etc/passwd"), taken_in("/etc/group"));
    // An account given a range of subordinate ids may act as any of them
    // in a user namespace of its own.
    let delegated: Vec<(u64, u64)> = ["/etc/subuid", "/etc/subgid"]
        .iter()
        .flat_map(|file| {
            fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut fields = l.split(':').skip(1);
                    let start: u64 = fields.next()?.trim().parse().ok()?;
                    let count: u64 = fields.next()?.trim().parse().ok()?;
                    Some((start, start.saturating_add(count)))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for _ in 0..64 {
        let random = u32::from_le_bytes(crypto::random_bytes::<4>()?);
        let id = UID_RANGE.start + random % (UID_RANGE.end - UID_RANGE.start);
        let lent = delegated
            .iter()
            .any(|&(from, to)| (from..to).contains(&u64::from(id)));
        if !users.contains(&id) && !groups.contains(&id) && !lent && !has_processes(id) {
            return Ok(id);
        }
    }
    Err(Error::other("found no free uid for the replay server"))
}

/// Whether any process runs with `uid` (real, effective, saved or fs).
fn has_processes(uid: u32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        match crate::fs::read_proc(&entry.path().join("status"), PROC_STATUS_CAP) {
            Ok(status) => String::from_utf8_lossy(&status)
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|line| {
                    line.split_whitespace()
                        .skip(1)
                        .any(|u| u == uid.to_string())
                }),
            // Leased: only the process's own account can have done that,
            // and the folder is that account's.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => entry
                .metadata()
                .is_ok_and(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == uid),
            Err(_) => false,
        }
    })
}

/// `/proc/PID/status` is about 1.5 KB.
const PROC_STATUS_CAP: u64 = 64 << 10;

/// The target's server binary on the replay files, unreachable but by its
/// socket in `srv/`.
struct ReplayServer {
    child: Child,
    socket: PathBuf,
    said: ServerLog,
}

impl ReplayServer {
    fn start(
        binary: &ServerBinary,
        dir: &ReplayDir,
        account: u32,
        timeout: Duration,
    ) -> Result<ReplayServer> {
        let srv = dir.server_dir(SERVER_DIR);
        let socket = srv.join("s.sock");
        // What it says goes into a pipe, read as it is written, only its
        // gist kept (`Gist`): never to a file. A library's load-time Lua
        // (FUNCTION LOAD in the stream, a library in the base) may log
        // gigabytes from a few hundred archived bytes; on a file they
        // filled /var/tmp, and reading them back for a message took as
        // much memory. It may quote the data too: root's alone.
        let (said, says) = std::io::pipe()
            .map_err(|e| Error::other(format!("cannot make a pipe for the replay server: {e}")))?;
        let mut command = as_account::command(&binary.program, account, account);
        command
            .args(["--port", "0"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700"])
            .args(["--appendonly", "no"])
            .args([
                "--save",
                "",
                "--daemonize",
                "no",
                "--pidfile",
                "",
                "--logfile",
                "",
            ])
            // The primary chose the data: every value is checked whole as
            // it is loaded, not only as far as a command later reads it.
            .args(["--sanitize-dump-payload", "yes"])
            .arg("--dir")
            .arg(&srv)
            .args(["--dbfilename", RDB_NAME])
            .args(["--databases", DATABASES])
            // Loading a large base, the link is quiet for long; the
            // replay's own deadline is the one that counts.
            .arg("--repl-timeout")
            .arg(timeout.as_secs().max(60).to_string());
        // A command from its primary that it refuses (one it does not
        // know, a syntax it does not take, which `apply` cannot all judge)
        // ends it, rather than being left out of the data. Redis 6.2 has
        // no such setting: `caught_up` reads its count of such errors.
        // And ends at once: the memory test of a crash takes seconds.
        if binary.flavor == Flavor::Valkey || binary.major() >= 7 {
            command.args(["--propagation-error-behavior", "panic"]);
            command.args(["--crash-memcheck-enabled", "no"]);
        }
        // It runs as a replica from its start, which expires nothing of
        // its own accord. A primary loading an RDB drops the keys whose
        // TTL has passed, though the stream after the base may keep them
        // alive (PEXPIRE, PERSIST); and it deletes them before it saves,
        // though they were the data of the moment asked for. Port 0 of
        // this host is a primary nothing can listen on, until `follow`
        // names ours.
        command.args(["--replicaof", "127.0.0.1", "0"]);
        command
            .current_dir(&srv)
            .stdout(Stdio::from(says.try_clone().map_err(|e| {
                Error::other(format!("cannot share the replay server's pipe: {e}"))
            })?))
            .stderr(Stdio::from(says));
        // What the stream makes the server hold is not bounded by the
        // stream's size: a SETRANGE at an offset of 512 MiB is some 50
        // bytes. It may have what the host has to spare as it starts, no
        // more, and the OOM killer takes it before anything else: Redis
        // itself runs beside a `restore --at`.
        let memory = available_memory()
            .map_err(|e| Error::other(format!("cannot bound the replay server's memory: {e}")))?;
        cap_data_size(&mut command, memory);
        let child = command.spawn().map_err(|e| {
            Error::other(format!(
                "cannot start {} for the replay: {e}",
                binary.program
            ))
        })?;
        // Ours closed with `command`: the pipe ends when the server does.
        drop(command);
        let server = ReplayServer {
            child,
            socket,
            said: ServerLog::read_from(said),
        };
        // From here, as root: once its uid changed, its own /proc is not
        // its own to write. In its first moments it has not grown yet, and
        // its pid stays its own until we reap it, even if it has ended.
        let adj = format!("/proc/{}/oom_score_adj", server.child.id());
        fs::write(adj, "1000").map_err(|e| {
            Error::other(format!(
                "cannot make the replay server the OOM killer's first: {e}"
            ))
        })?;
        Ok(server)
    }

    /// Wait until it has started: a connection to it then.
    fn reachable(&mut self, deadline: Instant) -> Result<Connection> {
        let options = ConnectOptions {
            endpoint: Endpoint::Unix(self.socket.clone()),
            user: None,
            password: None,
            renamed_commands: HashMap::new(),
            timeout: deadline.saturating_duration_since(Instant::now()),
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failed(&format!("exited ({status}) as it started")));
            }
            if let Ok(conn) = Connection::connect(&options) {
                return Ok(conn);
            }
            if Instant::now() >= deadline {
                return Err(self.failed("did not start in time"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The commands it knows, and their arities.
    fn arities(&self, conn: &mut Connection) -> Result<Arities> {
        conn.call("COMMAND", &[])
            .map(|commands| Arities::of(&commands))
            .map_err(|e| self.failed(&format!("could not list its commands: {e}")))
    }

    /// Have it follow `primary`: told its password over its socket, which
    /// only root and its account may reach.
    fn follow(&self, conn: &mut Connection, primary: &Primary) -> Result<()> {
        let port = primary.port()?.to_string();
        conn.call(
            "CONFIG",
            &[b"SET", b"masterauth", primary.password().as_bytes()],
        )
        .and_then(|_| conn.call("REPLICAOF", &[b"127.0.0.1", port.as_bytes()]))
        .map_err(|e| self.failed(&format!("could not be made a replica: {e}")))
        .map(drop)
    }

    /// Wait until it has loaded the RDB and applied every byte of
    /// commands sent on `link` after it.
    fn caught_up(&mut self, conn: &mut Connection, link: &Link, deadline: Instant) -> Result<()> {
        // A server that ended fails the INFO: `call_failed` says how.
        loop {
            self.within(conn, deadline, "apply the archive")?;
            // Replication and stats: one snapshot of both.
            let info = match conn.info("default") {
                Ok(info) => info,
                Err(e) => return Err(self.call_failed("say where it is", e, deadline)),
            };
            let offset = info
                .get("master_repl_offset")
                .and_then(|o| o.parse::<u64>().ok());
            if info.get("master_link_status").map(String::as_str) == Some("up")
                && offset.is_some_and(|o| o >= link.sent)
            {
                // Redis 6.2 leaves out a command from its primary that it
                // refuses and counts its bytes all the same; only this
                // count of its errors to the primary tells.
                return match info.get("unexpected_error_replies") {
                    Some(n) if n != "0" => Err(self.failed("refused a command of the stream")),
                    _ => Ok(()),
                };
            }
            if link.closed() {
                return Err(self.failed("dropped the link to its primary"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Give `conn`'s next command the time left to `deadline`: an error
    /// if none is.
    fn within(&self, conn: &mut Connection, deadline: Instant, what: &str) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.failed(&format!("did not {what} in time (save_timeout)")));
        }
        conn.set_timeout(left);
        Ok(())
    }

    /// What a command that failed on it says: that it ended, that the
    /// time ran out, or the failure.
    fn call_failed(&mut self, what: &str, e: Error, deadline: Instant) -> Error {
        match self.ended() {
            Some(status) => self.failed(&format!("exited ({status}) applying the archive")),
            None if Instant::now() >= deadline => {
                self.failed(&format!("did not {what} in time (save_timeout)"))
            }
            None => self.failed(&format!("could not {what}: {e}")),
        }
    }

    /// How it ended, if it has or does within a second (a connection to
    /// it may break as it ends).
    fn ended(&mut self) -> Option<std::process::ExitStatus> {
        for _ in 0..20 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(POLL);
        }
        None
    }

    /// Have it save the RDB, once it has caught up.
    fn save(&mut self, conn: &mut Connection, deadline: Instant) -> Result<()> {
        self.within(conn, deadline, "save")?;
        match conn.call("SAVE", &[]) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.call_failed("save", e, deadline)),
        }
    }

    fn failed(&self, what: &str) -> Error {
        let gist = self.said.said();
        let words = gist.last_words();
        // This host's want of room is not the archive's fault: an
        // integrity error would send the operator after a damage that is
        // not there.
        let nearly_full = rustix::fs::statvfs(PARENT)
            .is_ok_and(|v| v.f_bavail.saturating_mul(v.f_frsize) < NEARLY_FULL);
        if nearly_full || gist.disk_full {
            return Error::other(format!(
                "the private server replaying the archive {what}: the disk of {PARENT} is full (its last words: {words:?}); the replay needs room there for the base and the RDB it saves: free some and run again"
            ));
        }
        // Not damage either: a base a newer server wrote (restore refuses
        // such a backup the same way, exit 5, naming it).
        if let Some(said) = gist.unloadable {
            return Error::integrity(format!(
                "the private server replaying the archive {what}: it cannot load the window's base ({said:?}), which a newer server wrote; replay it with a redis_server that can"
            ));
        }
        Error::integrity(format!(
            "the private server replaying the archive {what} (its last words: {words:?}); the archived stream could not be applied"
        ))
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server may allocate at most `bytes` of data (`RLIMIT_DATA`: the
/// heap and private mappings), set in the child before it runs anything.
#[allow(unsafe_code)]
fn cap_data_size(command: &mut Command, bytes: u64) {
    use rustix::process::{setrlimit, Resource, Rlimit};
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls belong: one setrlimit system call,
    // made by rustix without allocating or taking a lock.
    unsafe {
        command.pre_exec(move || {
            let limit = Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            };
            setrlimit(Resource::Data, limit).map_err(Into::into)
        });
    }
}

/// What this host can give a new process without swapping, in bytes
/// (`MemAvailable`: free memory and the page cache it can drop).
fn available_memory() -> std::io::Result<u64> {
    fs::read_to_string("/proc/meminfo")?
        .lines()
        .find_map(|line| line.strip_prefix("MemAvailable:"))
        .and_then(|kib| kib.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::other("/proc/meminfo has no MemAvailable"))
}

/// The saved RDB, opened once (never through a link, a regular file),
/// passes its own checks; returned at its start, with what the check found
/// and its size.
fn checked_rdb(dir: &ReplayDir, sub: &str, name: &str) -> Result<(File, RdbInfo, u64)> {
    let path = dir.server_dir(sub).join(name);
    let failed = |e: std::io::Error| {
        Error::other(format!("the replay saved no RDB ({}): {e}", path.display()))
    };
    let srv = data_dir::open_dir(dir.0.fd(), sub).map_err(failed)?;
    // Found without being opened, and opened only as a regular file: a
    // process the server left behind (its uid's) could put a FIFO there.
    let flags = rfs::OFlags::PATH | rfs::OFlags::NOFOLLOW | rfs::OFlags::CLOEXEC;
    let found = rfs::openat(&srv, name, flags, Mode::empty()).map_err(|e| failed(e.into()))?;
    let mut file = crate::fs::open_if_regular(&found).map_err(failed)?;
    let mut check = RdbCheck::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(failed)?;
        if n == 0 {
            break;
        }
        check.update(&buf[..n]);
        size += n as u64;
    }
    let info = check.finish()?;
    file.seek(SeekFrom::Start(0)).map_err(failed)?;
    Ok((file, info, size))
}
