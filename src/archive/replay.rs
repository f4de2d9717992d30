//! The state of an instance at a moment: its window's base, then every
//! archived command received at or before that moment, loaded by the
//! target's own server as an AOF (the base as the AOF's RDB part, the
//! commands after it), which then saves the RDB that export or restore
//! takes. The base is first loaded alone, as the plain RDB it is, and
//! saved again: a server loading an AOF runs whatever follows the first
//! end of its RDB part as commands, and the primary chose those bytes.
//! Chunks are proven one by one: each record and object authenticated,
//! each the next in the window by sequence number and offset, so a gap, a
//! duplicate, a reorder or an edit stops the replay (exit 5) instead of
//! being stepped over. A transaction is applied whole or
//! not at all; PINGs and REPLCONFs are the link's, not the data's.
//!
//! Each server runs as an account of its own: a uid (and gid) chosen at
//! random, in no passwd or group file nor lent as a subordinate id, that
//! no process has, so nothing on the host can reach its socket, read the
//! decrypted data or touch its files (a shared `nobody` could). It has no TCP port and no config file,
//! and works in a directory that is root's while root writes the files
//! there, handed over only once root is done. When it has saved and is
//! gone, root opens the RDB once, without following a link, checks it as an
//! RDB and reads it from that same descriptor.

use super::field_ttls::{FieldTtls, Note};
use super::stream::{self, Batch};
use super::windows::Window;
use super::ChunkName;
use crate::codec::crypto::{self, MasterKey};
use crate::codec::rdb::{RdbCheck, RdbInfo};
use crate::error::{Error, Result};
use crate::fs::data_dir::{self, PrivateDir, Removal};
use crate::record::{ArchivePlace, Record};
use crate::redis::as_account;
use crate::redis::server::ServerBinary;
use crate::redis::{ConnectOptions, Connection, Endpoint};
use crate::storage::Storage;
use crate::stored::{load_record, Stored};
use crate::units;
use log::{debug, info};
use rustix::fs::{self as rfs, Mode};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
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
const AOF_NAME: &str = "replay.aof";
const AOF_DIR: &str = "aof";
const RDB_NAME: &str = "replayed.rdb";
/// The base as the primary sent it, in `base/`, and as its server saved it.
const BASE_NAME: &str = "base.rdb";
const POLL: Duration = Duration::from_millis(50);
/// Commands a primary never sends its replicas, and that would act on the
/// replay server rather than on the data. Whatever answered on Redis's port
/// chose the stream, so a stream that holds one is refused, not replayed.
///
/// The policy: the replay server loads the stream as an AOF, and a server
/// loading an AOF runs every command in it, whatever its flags. So every
/// command that reaches beyond the keys is listed here: the network
/// (MIGRATE connects where it says and pushes keys; replication, cluster,
/// failover), the file system (saves and rewrites, CONFIG, MODULE, ACL
/// SAVE/LOAD, DEBUG), the server itself (CLIENT, SHUTDOWN) — and the
/// scripts, because a script may call MIGRATE (Redis refuses CONFIG or
/// DEBUG in a script, not MIGRATE) and the tool cannot judge a script.
/// A primary never sends its replicas any of these: a MIGRATE reaches
/// them as the DEL of what left, and a script (EVAL, FCALL) as its
/// effects (Redis 7 and Valkey always; Redis 6.2 unless configured with
/// `lua-replicate-commands no`, whose streams are therefore refused).
/// FUNCTION and SCRIPT stay: a primary does send FUNCTION LOAD, and a
/// library's code loaded cannot call commands; only FCALL would run it.
/// Allowing only a list of known write commands instead would refuse the
/// streams of modules and of every new release.
const NEVER_REPLICATED: &[&str] = &[
    // The network.
    "CLUSTER",
    "FAILOVER",
    "MIGRATE",
    "MONITOR",
    "PSYNC",
    "REPLICAOF",
    "SLAVEOF",
    "SYNC",
    // The file system and the server's own settings.
    "ACL",
    "BGREWRITEAOF",
    "BGSAVE",
    "CONFIG",
    "DEBUG",
    "MODULE",
    "SAVE",
    // Other clients and the server's life.
    "CLIENT",
    "SHUTDOWN",
    "UNWATCH",
    "WATCH",
    // Scripts, which may call MIGRATE.
    "EVAL",
    "EVALSHA",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL",
    "FCALL_RO",
];

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
    let dir = ReplayDir::create()?;
    let (mut clean_base, base_loaded) =
        resaved_base(storage, key, binary, &window.base, &dir, timeout)?;
    let server_dir = dir.server_dir(SERVER_DIR);
    let multipart = binary.writes_multipart_aof();
    let (base_path, incr_path) = match multipart {
        true => {
            fs::create_dir(server_dir.join(AOF_DIR)).map_err(|e| dir.failed("create", e))?;
            (
                server_dir
                    .join(AOF_DIR)
                    .join(format!("{AOF_NAME}.1.base.rdb")),
                Some(
                    server_dir
                        .join(AOF_DIR)
                        .join(format!("{AOF_NAME}.1.incr.aof")),
                ),
            )
        }
        // Redis 6: one file, the RDB then the commands.
        false => (server_dir.join(AOF_NAME), None),
    };

    let base = &window.base;
    let mut out = BufWriter::with_capacity(1 << 20, create(&base_path)?);
    std::io::copy(&mut clean_base, &mut out).map_err(|e| dir.failed("copy the base", e))?;
    drop(clean_base);
    // Best effort: whatever is left goes with the whole folder at the end.
    let _ = data_dir::remove_tree(dir.0.fd(), BASE_DIR);
    let mut out = match &incr_path {
        Some(path) => {
            finish(out, &base_path)?;
            BufWriter::with_capacity(1 << 20, create(path)?)
        }
        None => out,
    };
    let mut applier = Applier::new(at, base_loaded.arities);
    let base_place = base.archive.as_ref().expect("a base has its place");
    let base_time = base_place.span_micros().0;
    let chunks = storage.archive();
    let mut chain = Chain::new(base, base_place);
    for name in &window.chunks {
        let Some(record) = chain.next(&*chunks, key, name)? else {
            continue;
        };
        let place = record.archive.clone().expect("checked by the chain");
        if place.span_micros().0 > at {
            break;
        }
        let batches = read_chunk(&*chunks, key, &record, &place)?;
        if !applier.apply(&batches, &mut out)? {
            break;
        }
    }
    applier.finish(&mut out)?;
    if let Some(warning) = applier
        .field_ttls
        .warning(binary, base_loaded.hashes_with_field_ttls)
    {
        log::warn!("{warning}");
    }
    let written = incr_path.as_deref().unwrap_or(&base_path);
    finish(out, written)?;
    if multipart {
        let manifest = format!(
            "file {AOF_NAME}.1.base.rdb seq 1 type b\nfile {AOF_NAME}.1.incr.aof seq 1 type i\n"
        );
        let path = server_dir
            .join(AOF_DIR)
            .join(format!("{AOF_NAME}.manifest"));
        let mut file = create(&path)?;
        file.write_all(manifest.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| dir.failed("write", e))?;
    }
    info!(
        "replaying {} commands of window {} up to {} into a private {}",
        applier.commands,
        base.id,
        units::utc_millis(applier.applied_until.unwrap_or(base_time)),
        binary.program
    );
    let account = fresh_account()?;
    dir.hand_over(SERVER_DIR, account)?;
    let load = Load::Aof { multipart };
    let mut server = ReplayServer::start(binary, &dir, load, account)?;
    let mut conn = server.loaded(timeout)?;
    server.save(&mut conn)?;
    drop(server);
    let (rdb, rdb_info, rdb_size) = checked_rdb(&dir, SERVER_DIR, RDB_NAME)?;
    info!(
        "replayed window {} to {} in {}s",
        base.id,
        units::utc_millis(applier.applied_until.unwrap_or(base_time)),
        units::seconds(started.elapsed(), 1)
    );
    Ok(Replayed {
        rdb,
        rdb_info,
        rdb_size,
        _dir: dir,
        applied_until: applier.applied_until.unwrap_or(base_time),
        commands: applier.commands,
        base: base.id.to_string(),
    })
}

/// The window's base, loaded by a server as a plain RDB (which ends at its
/// first end, as it does for a replica) and saved by it: an RDB that ends
/// where it says, holding every key the base held. Its own folder and
/// account: nothing the base could make a server leave behind reaches the
/// second.
fn resaved_base(
    storage: &dyn Storage,
    key: &MasterKey,
    binary: &ServerBinary,
    base: &Record,
    dir: &ReplayDir,
    timeout: Duration,
) -> Result<(File, Loaded)> {
    let path = dir.server_dir(BASE_DIR).join(BASE_NAME);
    let mut out = BufWriter::with_capacity(1 << 20, create(&path)?);
    Stored::open(storage, &base.id, key, false)?.decode_into(&mut out, key, 2)?;
    finish(out, &path)?;
    let account = fresh_account()?;
    dir.hand_over(BASE_DIR, account)?;
    let mut server = ReplayServer::start(binary, dir, Load::Rdb, account)?;
    let mut conn = server.loaded(timeout)?;
    let loaded = server.describe(&mut conn)?;
    server.save(&mut conn)?;
    drop(server);
    checked_rdb(dir, BASE_DIR, BASE_NAME).map(|(file, _, _)| (file, loaded))
}

fn create(path: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::other(format!("cannot create {}: {e}", path.display())))
}

fn finish(out: BufWriter<File>, path: &Path) -> Result<()> {
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::other(format!("writing {}: {e}", path.display())))
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
            || record.location != storage.location(&id)
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

/// A command a replica applies as its primary sent it but a server loading
/// an AOF cannot, in a form with the same effect that it can; `None` where
/// the command stands as it is. `VADD … CAS` (Redis 8) would block the
/// loading client, which aborts the server; CAS only asks for the threaded
/// path. Only the option is dropped: an element, or an option's value, may
/// be the word CAS.
fn loadable_form(name: &str, args: &[&[u8]]) -> Option<Vec<u8>> {
    if name != "VADD" {
        return None;
    }
    // As Redis compares them (strcasecmp): up to a first NUL byte.
    let word = |at: usize, w: &str| {
        args.get(at).is_some_and(|a| {
            let c_string = a.split(|&b| b == 0).next().unwrap_or_default();
            c_string.eq_ignore_ascii_case(w.as_bytes())
        })
    };
    // VADD key [REDUCE dim] (FP32 blob | VALUES n v1..vn) element [options]
    let mut at = 2;
    if word(at, "REDUCE") {
        at += 2;
    }
    if word(at, "FP32") {
        at += 2;
    } else if word(at, "VALUES") {
        let n: usize = std::str::from_utf8(args.get(at + 1)?).ok()?.parse().ok()?;
        at = at.checked_add(2)?.checked_add(n)?;
    } else {
        return None;
    }
    at += 1; // the element
    let mut kept: Vec<&[u8]> = args.get(..at)?.to_vec();
    let mut dropped = false;
    while at < args.len() {
        if word(at, "CAS") {
            dropped = true;
            at += 1;
        } else if word(at, "EF") || word(at, "SETATTR") || word(at, "M") {
            kept.extend(args.get(at..at + 2)?);
            at += 2;
        } else {
            kept.push(args[at]);
            at += 1;
        }
    }
    if !dropped {
        return None;
    }
    let mut command = Vec::new();
    crate::redis::resp::write_command(&mut command, &kept).ok()?;
    Some(command)
}

/// Where the replayed commands go. A transaction's commands are held until
/// its EXEC, up to `HELD_MAX`, then written as they come: a primary may
/// send one that never ends, and holding it all would let it take root's
/// memory. What was written of one that is discarded, or still open at the
/// moment asked for, is cut off again.
trait ReplayOut: Write {
    /// Bytes written so far.
    fn position(&mut self) -> std::io::Result<u64>;
    /// Forget everything written after `position`.
    fn cut_at(&mut self, position: u64) -> std::io::Result<()>;
}

/// How much of an open transaction is held in memory.
const HELD_MAX: usize = 1 << 20;

impl ReplayOut for BufWriter<File> {
    fn position(&mut self) -> std::io::Result<u64> {
        let buffered = self.buffer().len() as u64;
        Ok(self.get_mut().stream_position()? + buffered)
    }

    fn cut_at(&mut self, position: u64) -> std::io::Result<()> {
        self.flush()?;
        let file = self.get_mut();
        file.set_len(position)?;
        file.seek(SeekFrom::Start(position)).map(drop)
    }
}

impl ReplayOut for Vec<u8> {
    fn position(&mut self) -> std::io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn cut_at(&mut self, position: u64) -> std::io::Result<()> {
        self.truncate(position as usize);
        Ok(())
    }
}

fn write_failed(e: std::io::Error) -> Error {
    Error::other(format!("writing the replay: {e}"))
}

/// A transaction from its MULTI on, until its EXEC or DISCARD.
#[derive(Default)]
struct OpenTransaction {
    /// Its commands, while they are at most `HELD_MAX` bytes.
    held: Vec<u8>,
    /// Where its MULTI was written, once it outgrew `held`.
    written_from: Option<u64>,
    /// What its commands would add to the replay's field-TTL tally.
    field_ttls: FieldTtls,
}

impl OpenTransaction {
    fn push(&mut self, command: &[u8], out: &mut impl ReplayOut) -> Result<()> {
        if self.written_from.is_none() && self.held.len() + command.len() > HELD_MAX {
            self.written_from = Some(out.position().map_err(write_failed)?);
            out.write_all(&self.held).map_err(write_failed)?;
            self.held = Vec::new();
        }
        match self.written_from {
            Some(_) => out.write_all(command).map_err(write_failed),
            None => {
                self.held.extend_from_slice(command);
                Ok(())
            }
        }
    }

    /// Its EXEC came: it is applied whole.
    fn commit(self, exec: &[u8], out: &mut impl ReplayOut, tally: &mut FieldTtls) -> Result<()> {
        out.write_all(&self.held).map_err(write_failed)?;
        out.write_all(exec).map_err(write_failed)?;
        tally.merge(self.field_ttls);
        Ok(())
    }

    /// It is discarded, or still open at the end: none of it is applied.
    fn abandon(self, out: &mut impl ReplayOut) -> Result<()> {
        match self.written_from {
            Some(multi) => out.cut_at(multi).map_err(write_failed),
            None => Ok(()),
        }
    }
}

/// Writes the commands received at or before `at`, whole transactions only.
struct Applier {
    at: u64,
    /// The replay server's commands: one with the wrong number of
    /// arguments is refused here, since a server loading an AOF does not
    /// count them (a replica refuses it).
    arities: Arities,
    transaction: Option<OpenTransaction>,
    commands: u64,
    applied_until: Option<u64>,
    /// What the replayed commands did with hash-field TTLs.
    field_ttls: FieldTtls,
}

impl Applier {
    fn new(at: u64, arities: Arities) -> Applier {
        Applier {
            at,
            arities,
            transaction: None,
            commands: 0,
            applied_until: None,
            field_ttls: FieldTtls::default(),
        }
    }

    /// Apply `batches`; false once a batch came after `at`.
    fn apply(&mut self, batches: &[Batch], out: &mut impl ReplayOut) -> Result<bool> {
        for batch in batches {
            if batch.at_micros > self.at {
                return Ok(false);
            }
            for command in stream::commands(&batch.bytes) {
                let args = stream::arguments(command);
                let name = stream::name(&args);
                if NEVER_REPLICATED.contains(&name.as_str()) {
                    return Err(Error::integrity(format!(
                        "the archived stream holds {name}, which a primary never sends its replicas: whatever answered on Redis's port sent it; not replayed"
                    )));
                }
                if !self.arities.take(&name, &args) {
                    return Err(Error::integrity(format!(
                        "the archived stream holds {name} with {} arguments, which no server takes: whatever answered on Redis's port sent it; not replayed",
                        args.len() - 1
                    )));
                }
                let loadable = loadable_form(&name, &args);
                let command = loadable.as_deref().unwrap_or(command);
                match name.as_str() {
                    "PING" | "REPLCONF" => continue,
                    // As a replica's server takes them: a MULTI inside a
                    // transaction is refused and the transaction goes on;
                    // a DISCARD drops what was queued (outside one, it is
                    // refused).
                    "MULTI" if self.transaction.is_some() => continue,
                    "MULTI" => {
                        let mut open = OpenTransaction::default();
                        open.push(command, out)?;
                        self.transaction = Some(open);
                    }
                    "DISCARD" => self.abandon_transaction(out)?,
                    "EXEC" => match self.transaction.take() {
                        Some(open) => {
                            open.commit(command, out, &mut self.field_ttls)?;
                            self.commands += 1;
                        }
                        None => {
                            return Err(Error::integrity(
                                "the archived stream has an EXEC without MULTI",
                            ))
                        }
                    },
                    _ => {
                        let note = Note::of(&name, &args);
                        match &mut self.transaction {
                            Some(open) => {
                                open.push(command, out)?;
                                open.field_ttls.add_all(note);
                            }
                            None => {
                                out.write_all(command).map_err(write_failed)?;
                                self.commands += 1;
                                self.field_ttls.add_all(note);
                            }
                        }
                    }
                }
            }
            if self.transaction.is_none() {
                self.applied_until = Some(batch.at_micros);
            }
        }
        Ok(true)
    }

    /// A transaction still open at `at` was not applied on the primary
    /// either: it is dropped, never half written.
    fn finish(&mut self, out: &mut impl ReplayOut) -> Result<()> {
        if self.transaction.is_some() {
            debug!("a transaction open at the moment asked for is left out");
        }
        self.abandon_transaction(out)
    }

    fn abandon_transaction(&mut self, out: &mut impl ReplayOut) -> Result<()> {
        match self.transaction.take() {
            Some(open) => open.abandon(out),
            None => Ok(()),
        }
    }
}

/// The folder of the server that loads the base alone, and of the one that
/// replays.
const BASE_DIR: &str = "base";
const SERVER_DIR: &str = "srv";

/// `<PARENT>/redis-backup-replay-<random>/` (root's, 0711) with `base/` and
/// `srv/` inside, each root's while root writes, then its server's account's.
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
        for sub in [BASE_DIR, SERVER_DIR] {
            data_dir::create_private_dir(dir.fd(), sub).map_err(failed)?;
        }
        Ok(ReplayDir(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
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
    log: PathBuf,
}

/// What a replay server said of what it loaded.
struct Loaded {
    /// Hashes with a field that has a TTL (Redis 7.4 on: `subexpiry`).
    hashes_with_field_ttls: u64,
    /// Its commands' arities, by upper-case name.
    arities: Arities,
}

/// Each command's arity as COMMAND gives it: the number of arguments,
/// name included, or at least minus that if negative; and, from Redis 7
/// on, its subcommands' (which count the command's name too).
#[derive(Debug, Default, Clone)]
struct Arities {
    commands: HashMap<String, i64>,
    /// By command, then by upper-case subcommand.
    subcommands: HashMap<String, HashMap<String, i64>>,
}

impl Arities {
    /// Those of a COMMAND reply: each entry is name, arity, …, and its
    /// subcommands' entries (named `command|sub`) as the tenth field.
    fn of(reply: &crate::redis::resp::Value) -> Arities {
        use crate::redis::resp::Value;
        let name_and_arity = |entry: &Value| match entry {
            Value::Array(Some(fields)) => match fields.as_slice() {
                [Value::Bulk(Some(name)), Value::Integer(arity), ..] => {
                    Some((String::from_utf8_lossy(name).to_ascii_uppercase(), *arity))
                }
                _ => None,
            },
            _ => None,
        };
        let mut arities = Arities::default();
        let Value::Array(Some(entries)) = reply else {
            return arities;
        };
        for entry in entries {
            let Some((name, arity)) = name_and_arity(entry) else {
                continue;
            };
            if let Value::Array(Some(fields)) = entry {
                if let Some(Value::Array(Some(subcommands))) = fields.get(9) {
                    let subs = subcommands
                        .iter()
                        .filter_map(name_and_arity)
                        .filter_map(|(full, arity)| {
                            Some((full.split_once('|')?.1.to_string(), arity))
                        })
                        .collect::<HashMap<_, _>>();
                    if !subs.is_empty() {
                        arities.subcommands.insert(name.clone(), subs);
                    }
                }
            }
            arities.commands.insert(name, arity);
        }
        arities
    }

    /// Whether command `name` takes `args` (its name included); one the
    /// server does not know is its to refuse as it loads.
    fn take(&self, name: &str, args: &[&[u8]]) -> bool {
        let sub = match (self.subcommands.get(name), args.get(1)) {
            (Some(subs), Some(sub)) => subs.get(&String::from_utf8_lossy(sub).to_ascii_uppercase()),
            _ => None,
        };
        let count = args.len() as i64;
        match sub.or_else(|| self.commands.get(name)) {
            Some(&arity) if arity >= 0 => count == arity,
            Some(&arity) => count >= -arity,
            None => true,
        }
    }
}

/// The sum of `subexpiry` over the databases of `INFO keyspace`
/// (`db0:keys=3,expires=0,avg_ttl=0,subexpiry=1`); 0 where not given.
fn hashes_with_field_ttls(keyspace: &HashMap<String, String>) -> u64 {
    keyspace
        .values()
        .flat_map(|db| db.split(','))
        .filter_map(|part| part.strip_prefix("subexpiry="))
        .filter_map(|n| n.parse::<u64>().ok())
        .fold(0, u64::saturating_add)
}

/// What a replay server loads.
#[derive(Clone, Copy)]
enum Load {
    /// `base/`'s base as a plain RDB (to save it again).
    Rdb,
    /// `srv/`'s AOF (Redis 7 and Valkey: a folder of files with a manifest).
    Aof { multipart: bool },
}

impl ReplayServer {
    fn start(
        binary: &ServerBinary,
        dir: &ReplayDir,
        load: Load,
        account: u32,
    ) -> Result<ReplayServer> {
        let (sub, dbfilename, appendonly) = match load {
            Load::Rdb => (BASE_DIR, BASE_NAME, "no"),
            Load::Aof { .. } => (SERVER_DIR, RDB_NAME, "yes"),
        };
        let srv = dir.server_dir(sub);
        let socket = srv.join("s.sock");
        let log = dir.path().join(format!("{sub}.log"));
        let log_file = File::create(&log)
            .map_err(|e| Error::other(format!("cannot create {}: {e}", log.display())))?;
        let mut command = as_account::command(&binary.program, account, account);
        command
            .args(["--port", "0"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "700"])
            .args(["--appendonly", appendonly, "--appendfilename", AOF_NAME])
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
            .args(["--dbfilename", dbfilename]);
        if let Load::Aof { multipart: true } = load {
            command.args(["--appenddirname", AOF_DIR]);
        }
        // Both run as replicas, which expire nothing of their own accord.
        // A primary loading a plain RDB drops the keys whose TTL has
        // passed, though the stream after the base may keep them alive
        // (PEXPIRE, PERSIST); and once it has loaded, it deletes them
        // before it saves, though they were the data of the moment asked
        // for. Port 0 of this host is a primary nothing can listen on, so
        // neither ever syncs.
        command.args(["--replicaof", "127.0.0.1", "0"]);
        command
            .current_dir(&srv)
            .stdout(Stdio::from(log_file.try_clone().map_err(|e| {
                Error::other(format!("cannot share the replay log: {e}"))
            })?))
            .stderr(Stdio::from(log_file));
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
        let server = ReplayServer { child, socket, log };
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

    /// Wait until it has loaded everything: a connection to it then.
    fn loaded(&mut self, timeout: Duration) -> Result<Connection> {
        let options = ConnectOptions {
            endpoint: Endpoint::Unix(self.socket.clone()),
            user: None,
            password: None,
            renamed_commands: HashMap::new(),
            timeout,
        };
        let deadline = Instant::now() + timeout;
        let conn = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failed(&format!("exited ({status}) while loading")));
            }
            if let Ok(mut conn) = Connection::connect(&options) {
                if conn
                    .info("persistence")
                    .ok()
                    .and_then(|p| p.get("loading").cloned())
                    == Some("0".into())
                {
                    break conn;
                }
            }
            if Instant::now() >= deadline {
                return Err(self.failed("did not finish loading in time"));
            }
            std::thread::sleep(POLL);
        };
        Ok(conn)
    }

    /// Have it save the RDB, once `loaded`.
    fn save(&self, conn: &mut Connection) -> Result<()> {
        conn.call("SAVE", &[])
            .map_err(|e| self.failed(&format!("could not save: {e}")))
            .map(drop)
    }

    /// What the server loaded, and the commands it knows.
    fn describe(&self, conn: &mut Connection) -> Result<Loaded> {
        let failed = |e: Error| self.failed(&format!("could not say what it loaded: {e}"));
        let keyspace = conn.info("keyspace").map_err(failed)?;
        let commands = conn.call("COMMAND", &[]).map_err(failed)?;
        Ok(Loaded {
            hashes_with_field_ttls: hashes_with_field_ttls(&keyspace),
            arities: Arities::of(&commands),
        })
    }

    fn failed(&self, what: &str) -> Error {
        let tail = fs::read_to_string(&self.log)
            .ok()
            .and_then(|log| {
                log.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        Error::integrity(format!(
            "the private server replaying the archive {what} (its last words: {tail:?}); the archived stream could not be applied"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::stream::tests::cmd;

    fn batch(at: u64, commands: &[&[&str]]) -> Batch {
        Batch {
            at_micros: at,
            bytes: commands.iter().flat_map(|c| cmd(c)).collect(),
        }
    }

    /// A Vec that counts the cuts made in it.
    #[derive(Default)]
    struct CountedCuts {
        bytes: Vec<u8>,
        cuts: usize,
    }

    impl Write for CountedCuts {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl ReplayOut for CountedCuts {
        fn position(&mut self) -> std::io::Result<u64> {
            self.bytes.position()
        }

        fn cut_at(&mut self, position: u64) -> std::io::Result<()> {
            self.cuts += 1;
            self.bytes.cut_at(position)
        }
    }

    /// A transaction is held until its EXEC while it is small (a DISCARD
    /// then costs no file work), written as it comes once it is not, and
    /// cut off again if it is discarded or left open.
    #[test]
    fn transactions_are_held_while_small_and_cut_off_once_written() {
        let big = "v".repeat(HELD_MAX);
        let run = |batches: &[Batch]| {
            let mut out = CountedCuts::default();
            let mut applier = Applier::new(100, Arities::default());
            applier.apply(batches, &mut out).unwrap();
            applier.finish(&mut out).unwrap();
            out
        };
        let small_discarded = run(&[batch(
            10,
            &[
                &["SET", "a", "1"],
                &["MULTI"],
                &["SET", "b", "2"],
                &["DISCARD"],
            ],
        )]);
        assert_eq!(small_discarded.bytes, cmd(&["SET", "a", "1"]));
        assert_eq!(small_discarded.cuts, 0);
        let big_discarded = run(&[
            batch(10, &[&["SET", "a", "1"], &["MULTI"], &["SET", "b", &big]]),
            batch(20, &[&["SET", "c", "3"], &["DISCARD"], &["SET", "d", "4"]]),
        ]);
        let kept = [cmd(&["SET", "a", "1"]), cmd(&["SET", "d", "4"])].concat();
        assert_eq!(big_discarded.bytes, kept);
        assert_eq!(big_discarded.cuts, 1);
        let big_open = run(&[batch(10, &[&["MULTI"], &["SET", "b", &big]])]);
        assert_eq!((big_open.bytes.len(), big_open.cuts), (0, 1));
        let big_applied = run(&[batch(
            10,
            &[
                &["MULTI"],
                &["SET", "b", &big],
                &["SET", "c", "3"],
                &["EXEC"],
            ],
        )]);
        let whole = [
            cmd(&["MULTI"]),
            cmd(&["SET", "b", &big]),
            cmd(&["SET", "c", "3"]),
            cmd(&["EXEC"]),
        ]
        .concat();
        assert_eq!(big_applied.bytes, whole);
    }

    /// Only what is replayed is counted: not a discarded transaction, nor
    /// one still open at the moment, nor what came after it.
    #[test]
    fn only_the_commands_replayed_count_for_the_field_ttl_warning() {
        let redis = ServerBinary {
            program: "redis-server".into(),
            flavor: crate::redis::server::Flavor::Redis,
            version: "7.4.1".into(),
        };
        let persist = |key| ["HPERSIST", key, "FIELDS", "1", "f"];
        let batches = [
            batch(10, &[&["MULTI"], &persist("discarded"), &["DISCARD"]]),
            batch(20, &[&["MULTI"], &persist("kept"), &["EXEC"]]),
            batch(30, &[&["MULTI"], &persist("open")]),
            batch(60, &[&persist("late")]),
        ];
        let mut applier = Applier::new(50, Arities::default());
        applier.apply(&batches, &mut Vec::new()).unwrap();
        applier.finish(&mut Vec::new()).unwrap();
        let warning = applier.field_ttls.warning(&redis, 1).expect("one replayed");
        assert!(warning.contains(": 1 commands replayed"), "{warning}");
        assert!(warning.ends_with("wrong in \"kept\""), "{warning}");
    }

    #[test]
    fn vadd_is_loaded_without_cas_and_nothing_else_changes() {
        let form = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            loadable_form(&stream::name(&args), &args)
        };
        assert_eq!(
            form(&["VADD", "v", "VALUES", "2", "1", "2", "e", "CAS", "SETATTR", "CAS"]),
            Some(cmd(&[
                "VADD", "v", "VALUES", "2", "1", "2", "e", "SETATTR", "CAS"
            ]))
        );
        assert_eq!(
            form(&["vadd", "v", "REDUCE", "2", "FP32", "blob", "CAS", "cas", "EF", "5"]),
            Some(cmd(&[
                "vadd", "v", "REDUCE", "2", "FP32", "blob", "CAS", "EF", "5"
            ]))
        );
        assert_eq!(form(&["VADD", "v", "VALUES", "1", "1", "CAS"]), None);
        assert_eq!(form(&["VADD", "v", "VALUES", "9", "1", "CAS"]), None);
        let huge = u64::MAX.to_string();
        assert_eq!(form(&["VADD", "v", "VALUES", &huge, "1", "e", "CAS"]), None);
        // Redis reads its words as C strings: up to a NUL byte.
        assert_eq!(
            form(&["VADD", "v", "VALUES", "1", "1", "e", "SETATTR\0x", "CAS"]),
            None,
            "CAS is SETATTR's value here"
        );
        assert_eq!(
            form(&["VADD", "v", "VALUES", "1", "1", "e", "CAS\0x", "Q8"]),
            Some(cmd(&["VADD", "v", "VALUES", "1", "1", "e", "Q8"]))
        );
        assert_eq!(form(&["SET", "CAS", "CAS"]), None);
    }

    #[test]
    fn arities_are_read_off_command_and_judge_the_arguments() {
        use crate::redis::resp::Value;
        let entry = |name: &str, arity, subcommands: Vec<Value>| {
            let mut fields = vec![
                Value::Bulk(Some(name.as_bytes().to_vec())),
                Value::Integer(arity),
            ];
            fields.extend((2..9).map(|_| Value::Array(Some(vec![]))));
            fields.push(Value::Array(Some(subcommands)));
            Value::Array(Some(fields))
        };
        let reply = Value::Array(Some(vec![
            entry("get", 2, vec![]),
            entry("set", -3, vec![]),
            entry("xgroup", -2, vec![entry("xgroup|destroy", 4, vec![])]),
            Value::Integer(7),
        ]));
        let arities = Arities::of(&reply);
        assert_eq!(arities.commands.len(), 3);
        let takes = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            arities.take(&stream::name(&args), &args)
        };
        assert!(takes(&["GET", "k"]) && !takes(&["GET", "k", "x"]));
        assert!(takes(&["SET", "k", "v"]) && takes(&["set", "k", "v", "NX", "GET"]));
        assert!(!takes(&["SET", "k"]));
        assert!(takes(&["XGROUP", "destroy", "k", "g"]));
        assert!(!takes(&["XGROUP", "DESTROY", "k", "g", "extra"]));
        assert!(takes(&["XGROUP", "NEWSUB", "k"]), "the command's own count");
        assert!(takes(&["MODULE.CMD"]), "the server's to judge");
        let batches = [batch(10, &[&["SET", "a"]])];
        let err = Applier::new(100, arities.clone())
            .apply(&batches, &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(err.message().contains("SET with 1 arguments"), "{err}");
    }

    #[test]
    fn hashes_with_field_ttls_are_summed_over_the_databases() {
        let keyspace: HashMap<String, String> = [
            ("db0", "keys=3,expires=0,avg_ttl=0,subexpiry=2"),
            ("db3", "keys=1,expires=1,avg_ttl=9,subexpiry=1"),
            ("db4", "keys=1,expires=0,avg_ttl=0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(hashes_with_field_ttls(&keyspace), 3);
        assert_eq!(hashes_with_field_ttls(&HashMap::new()), 0);
    }

    #[test]
    fn commands_up_to_the_moment_and_only_whole_transactions() {
        let batches = [
            batch(10, &[&["SELECT", "0"], &["SET", "a", "1"], &["PING"]]),
            batch(20, &[&["MULTI"], &["SET", "b", "2"]]),
            batch(30, &[&["EXEC"], &["REPLCONF", "GETACK", "*"]]),
            batch(40, &[&["MULTI"], &["SET", "c", "3"]]),
            batch(50, &[&["EXEC"]]),
        ];
        let run = |at| {
            let mut out = Vec::new();
            let mut applier = Applier::new(at, Arities::default());
            applier.apply(&batches, &mut out).unwrap();
            applier.finish(&mut out).unwrap();
            (out, applier.applied_until)
        };
        let (out, until) = run(25);
        assert_eq!(
            out,
            [cmd(&["SELECT", "0"]), cmd(&["SET", "a", "1"])].concat()
        );
        assert_eq!(until, Some(10));
        let (out, until) = run(45);
        let whole_b = [cmd(&["MULTI"]), cmd(&["SET", "b", "2"]), cmd(&["EXEC"])].concat();
        assert_eq!(
            out,
            [cmd(&["SELECT", "0"]), cmd(&["SET", "a", "1"]), whole_b].concat()
        );
        assert_eq!(until, Some(30));
        assert_eq!(run(5).0, b"");
    }

    /// What a replica's server does with them: a MULTI inside a
    /// transaction is refused and the transaction goes on; a DISCARD drops
    /// what was queued, and outside a transaction is refused.
    #[test]
    fn nested_multi_and_discard_as_a_replica_applies_them() {
        let batches = [batch(
            10,
            &[
                &["MULTI"],
                &["SET", "c", "discarded"],
                &["DISCARD"],
                &["SET", "d", "1"],
                &["DISCARD"],
                &["MULTI"],
                &["SET", "a", "1"],
                &["MULTI"],
                &["SET", "b", "2"],
                &["EXEC"],
            ],
        )];
        let mut out = Vec::new();
        let mut applier = Applier::new(100, Arities::default());
        applier.apply(&batches, &mut out).unwrap();
        applier.finish(&mut out).unwrap();
        let transaction = [
            cmd(&["MULTI"]),
            cmd(&["SET", "a", "1"]),
            cmd(&["SET", "b", "2"]),
            cmd(&["EXEC"]),
        ]
        .concat();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&[cmd(&["SET", "d", "1"]), transaction].concat())
        );
        assert_eq!(applier.applied_until, Some(10));
    }

    #[test]
    fn a_stream_with_commands_no_primary_sends_is_refused() {
        for bad in [
            &["CONFIG", "SET", "dir", "/etc"][..],
            &["module", "load", "/x.so"],
            &["SAVE"],
            &["migrate", "127.0.0.1", "6379", "k", "0", "1000", "COPY"],
            &[
                "EVAL",
                "return redis.call('MIGRATE', '10.0.0.1', 1, 'k', 0, 9)",
                "0",
            ],
            &["fcall_ro", "f", "0"],
        ] {
            let batches = [batch(10, &[&["SET", "a", "1"], bad])];
            let err = Applier::new(100, Arities::default())
                .apply(&batches, &mut Vec::new())
                .unwrap_err();
            assert_eq!(err.exit_code(), 5, "{bad:?}");
        }
    }
}
