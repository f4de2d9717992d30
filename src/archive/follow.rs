//! `archive`: follow the primary as a replica until SIGTERM or SIGINT. On
//! start it finds where the instance's newest window ends and asks Redis to
//! go on from there (`PSYNC replid offset+1`); when Redis cannot (its
//! backlog no longer holds those bytes, or the history changed), the resync's
//! RDB becomes the base of a new window, and the old window stays restorable
//! up to its end. The stream is read on one thread, cut into whole commands
//! stamped with their arrival time, and stored as a chunk every
//! `archive_interval` or `archive_chunk_size`, whichever comes first. A
//! third thread acknowledges every second the offset *stored*, so `WAIT`
//! on the primary counts a write as archived only once it is in storage.

use super::behind::{self, Intervals, Seen, Waiting, Watch};
use super::stream::{self, Batch, Splitter, TooLong};
use super::windows::windows;
use super::{ChunkName, BASE_SOURCE, CHUNK_SOURCE, MAX_WINDOW_CHUNKS};
use crate::codec::crypto::{self, MasterKey};
use crate::codec::format::{self, Identity};
use crate::codec::pipeline::{self, EncodeOptions};
use crate::codec::rdb::RdbCheck;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::id::BackupId;
use crate::progress::Progress;
use crate::record::{self, ArchivePlace, Record};
use crate::redis::server::Flavor;
use crate::redis::{
    instance, ConnectOptions, Connection, Psync, ReplicaAcks, ReplicaInput, SyncLimits,
};
use crate::status;
use crate::storage::{self, Storage, StorageIo};
use crate::units::{self, human_size};
use log::{info, warn};
use std::collections::{BTreeMap, VecDeque};
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Set by SIGTERM and SIGINT.
static STOP: AtomicBool = AtomicBool::new(false);
/// How often the loops look at `STOP`, and the primary hears from us.
const TICK: Duration = Duration::from_millis(200);
const ACK_EVERY: Duration = Duration::from_secs(1);
/// Batches in flight between the reader and the storer; their bytes are
/// bounded apart (`Handover`): one batch is a whole command, which may be
/// as large as a chunk. A reader keeping up makes a batch of each read,
/// often of one command: a few seconds of them at thousands a second fit,
/// so that storing a chunk does not hold the reader back (it would be
/// behind the primary meanwhile).
const QUEUE: usize = 4096;
const READ_SIZE: usize = 256 * 1024;
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);
/// The primary decides when we must resync (whoever answers on its port,
/// or a Redis in a crash loop, can do so at every PSYNC), and each base is
/// a whole dataset and names in the storage, which lists at most 100,000.
/// So the time between two full resyncs taken doubles with each one of the
/// last `RECENT_RESYNCS`, from 1 s (the second) up to `LONGEST_BASE_GAP`:
/// about a dozen bases an hour at most, where a crash loop would make
/// hundreds.
const RECENT_RESYNCS: Duration = Duration::from_secs(3600);
const LONGEST_BASE_GAP: Duration = Duration::from_secs(300);
const STORE_ATTEMPTS: u32 = 5;
const MAX_WINDOW_STREAM: u64 = 1 << 30;
/// How often the status file is written between chunks.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub struct Request {
    pub instance: Option<String>,
}

/// Where the archive stands: the window being extended and its end.
#[derive(Debug, Clone)]
struct Position {
    base: BackupId,
    replid: String,
    seq: u64,
    /// The replication offset of the last byte stored.
    offset: u64,
    /// Where the base is in the stream, and its size: how long the window
    /// may grow before a fresh base is taken.
    base_offset: u64,
    base_size: u64,
    /// No chunk stored yet in this session.
    session_start: bool,
}

/// Everything a session needs, gathered once.
struct Archiver<'a> {
    config: &'a Config,
    storage: &'a dyn Storage,
    /// Where chunks go (`Storage::archive`).
    chunks: Box<dyn Storage>,
    key: &'a MasterKey,
    instance: String,
    connect: ConnectOptions,
    /// Kept across sessions: a status written after a lost connection
    /// still says when the last chunk was stored.
    report: std::cell::RefCell<Report>,
    /// Set when the window cannot or should not go on (the primary sent a
    /// command larger than a chunk may be, or the window is full): the
    /// next session starts a new one.
    new_window: AtomicBool,
    /// When the full resyncs of the last `RECENT_RESYNCS` were taken: by this
    /// process, whether or not a base came of them (one whose RDB fails its
    /// check costs as much), or before it started (as the bases' records
    /// say). On the monotonic clock: a wall clock stepped back must not
    /// make a base look recent for as long as the step.
    recent_resyncs: std::cell::RefCell<Vec<Instant>>,
    /// The last session turned a full resync down (`base_gap_left`): the
    /// next waits the gap out, where after other failures it need not.
    resync_turned_down: AtomicBool,
}

pub fn run(config: &Config, request: Request) -> Result<()> {
    install_stop_handlers();
    let instance = request.instance.unwrap_or_else(|| config.instance.clone());
    // One archiver per instance on this host: two would store the same
    // window's chunks over each other. (Not the host lock, which backups
    // and restores take for minutes.)
    let _lock = crate::fs::lock_host(&archive_lock(config, &instance))
        .map_err(|e| e.context(format!("the archive lock of instance {instance}")))?;
    let key = crypto::load_key_file(&config.key_file)?;
    let redis_conf = instance::read_conf(config)?;
    let storage = storage::open(config)?;
    let archiver = Archiver {
        config,
        storage: &*storage,
        chunks: storage.archive(),
        key: &key,
        instance,
        connect: instance::connect_options(config, &redis_conf, config.redis_timeout)?,
        report: Default::default(),
        new_window: AtomicBool::new(false),
        recent_resyncs: Default::default(),
        resync_turned_down: AtomicBool::new(false),
    };
    let mut position = archiver.resume_point()?;
    match &position {
        Some(p) => info!(
            "archiving instance {}: going on from window {} at offset {}",
            archiver.instance, p.base, p.offset
        ),
        None => info!(
            "archiving instance {}: no window to go on with; the first resync makes the base of a new one",
            archiver.instance
        ),
    }
    let mut pause = FIRST_PAUSE;
    let mut ever_connected = false;
    loop {
        // A new window is certain: it waits out the gap before asking.
        if let Some(left) = archiver.base_gap_left().filter(|_| position.is_none()) {
            let why = format!(
                "{} full resyncs taken in the last {} minutes: the next new window waits {}s",
                archiver.recent_resyncs.borrow().len(),
                RECENT_RESYNCS.as_secs() / 60,
                units::seconds(left, 0)
            );
            info!("{why}");
            // Nothing is archived meanwhile: monitoring hears why.
            let report = &archiver.report.borrow();
            archiver.write_status(None, report, Duration::ZERO, 0, Some(&Error::redis(why)));
            if sleep_unless_stopped(left) {
                info!("archiving stopped");
                return Ok(());
            }
        }
        let before = position.as_ref().map(|p| (p.base.clone(), p.offset));
        let ended = archiver.session(&mut position, &mut ever_connected);
        // A session that stored something was a good one: the next pause
        // starts short again.
        if position.as_ref().map(|p| (p.base.clone(), p.offset)) != before {
            pause = FIRST_PAUSE;
        }
        match ended {
            Ok(()) if STOP.load(Ordering::Relaxed) => {
                info!("archiving stopped; everything received is stored");
                return Ok(());
            }
            // The window is full: on to a new one (after the gap, if the
            // bases come fast).
            Ok(()) => continue,
            // Settings, keys and integrity do not mend by waiting; nor does
            // a Redis that never once let us follow it (a wrong password, an
            // ACL without +psync): say so at once. Storage that fails may
            // answer later, first session or not.
            Err(e) if matches!(e.exit_code(), 1 | 2 | 5) => return Err(e),
            Err(e) if !ever_connected && matches!(e, Error::Redis(_)) => return Err(e),
            Err(e) => {
                let wait = match archiver.resync_turned_down.swap(false, Ordering::Relaxed) {
                    true => pause.max(archiver.base_gap_left().unwrap_or_default()),
                    false => pause,
                };
                warn!(
                    "{e}; following the primary again in {}s",
                    units::seconds(wait, 0)
                );
                let report = &archiver.report.borrow();
                archiver.write_status(position.as_ref(), report, Duration::ZERO, 0, Some(&e));
                if sleep_unless_stopped(wait) {
                    info!("archiving stopped");
                    return Ok(());
                }
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}

impl Archiver<'_> {
    /// The end of the instance's newest window, if there is one. A damaged
    /// one (a chunk's record unreadable, a hole in its offsets) has no end
    /// that can be known: going on from an earlier chunk would store one
    /// that overlaps, and the window would replay no further. Then a new
    /// window starts.
    fn resume_point(&self) -> Result<Option<Position>> {
        let mut windows = windows(self.storage, self.key, Some(&self.instance))?;
        // A record dated later than now (this host's clock was ahead when
        // it was stored, or another's was) counts as a base just stored.
        let (now, wall) = (Instant::now(), SystemTime::now());
        *self.recent_resyncs.borrow_mut() = windows
            .iter()
            .filter_map(|w| units::parse_rfc3339_micros(&w.base.created_at))
            .map(|micros| {
                let stored = UNIX_EPOCH + Duration::from_micros(micros);
                wall.duration_since(stored).unwrap_or_default()
            })
            .filter(|age| *age < RECENT_RESYNCS)
            .filter_map(|age| now.checked_sub(age))
            .collect();
        // Monitoring alerts on the last chunk stored: after a restart that
        // is the archive's newest, not none, or the alert would hear
        // nothing while nothing is archived. (Its newest command's receive
        // time, no later than its storing; one dated ahead counts as now,
        // or the alert would wait for the clock to catch up.)
        let wall_micros = units::now_micros();
        let newest_chunk = windows
            .iter()
            .filter(|w| w.last.seq > 0)
            .filter_map(|w| units::parse_rfc3339_micros(&w.last.last_at))
            .map(|micros| micros.min(wall_micros))
            .max();
        if let Some(micros) = newest_chunk {
            let mut report = self.report.borrow_mut();
            report.last_stored_micros = Some(micros);
            report.last_chunk = Some(UNIX_EPOCH + Duration::from_micros(micros));
        }
        let newest = windows.pop();
        // The storage failing now may answer later: a new base (a full
        // resync of the primary) is not worth a passing failure.
        if let Some(w) = newest.as_ref().filter(|w| w.unreadable) {
            return Err(Error::storage(format!(
                "the newest window cannot be read whole now ({}); not going on with it or starting another",
                w.damaged.first().map_or("", String::as_str)
            )));
        }
        if let Some(why) = newest.as_ref().and_then(|w| w.damaged.first()) {
            warn!("the newest window cannot be gone on with ({why}): a new window starts");
            return Ok(None);
        }
        Ok(newest.map(|w| Position {
            base: w.base.id.clone(),
            replid: w.last.replid.clone(),
            seq: w.last.seq,
            offset: w.last.end_offset,
            base_offset: w.base.archive.as_ref().map_or(0, |a| a.start_offset),
            base_size: w.base.raw_size,
            session_start: true,
        }))
    }

    /// How long until a new base may be stored, if it may not be now.
    fn base_gap_left(&self) -> Option<Duration> {
        let mut recent = self.recent_resyncs.borrow_mut();
        recent.retain(|at| at.elapsed() < RECENT_RESYNCS);
        let ages: Vec<Duration> = recent.iter().map(Instant::elapsed).collect();
        base_gap_left(&ages)
    }

    /// One connection: PSYNC, a base if Redis resyncs us, then the stream
    /// until it ends (`Err`) or we are told to stop (`Ok`).
    fn session(&self, position: &mut Option<Position>, ever_connected: &mut bool) -> Result<()> {
        // With no window a full resync is certain: storage that cannot take
        // its base now is found before the primary is asked for one (and,
        // syncing from disk, forks for it).
        if position.is_none() {
            self.storage.prepare(&storage::new_id()?)?;
            // What killed backups left, swept while no RDB waits for us.
            self.storage.tidy();
        }
        let mut conn = Connection::connect(&self.connect)?;
        let server = conn.server()?;
        let from = position
            .as_ref()
            .map(|p| (p.replid.clone(), p.offset.saturating_add(1)));
        let from = from.as_ref().map(|(r, o)| (r.as_str(), *o));
        let (psync, mut link) = conn.psync(from, self.config.save_timeout)?;
        *ever_connected = true;
        let label = format!(
            "{} {}",
            Flavor::from_name(&server.name).name(),
            server.version
        );
        match psync {
            Psync::Continue { replid } => {
                let Some(p) = position.as_mut() else {
                    return Err(Error::redis(format!(
                        "{label} answered PSYNC ? -1 (a full resync) with CONTINUE: not a primary"
                    )));
                };
                info!(
                    "{label} continues window {} from offset {}",
                    p.base, p.offset
                );
                if let Some(replid) = replid {
                    info!("the primary's history is now called {replid}");
                    p.replid = replid;
                }
            }
            Psync::Full { replid, offset } => {
                if let Some(left) = self.base_gap_left() {
                    self.resync_turned_down.store(true, Ordering::Relaxed);
                    return Err(Error::redis(format!(
                        "{label} cannot continue window {} (a full resync) so soon after its last full resyncs: no new base for {}s",
                        position.as_ref().map_or("", |p| p.base.as_str()),
                        units::seconds(left, 0)
                    )));
                }
                if let Some(p) = position.as_ref() {
                    warn!(
                        "{label} cannot continue window {} at offset {} (restarted, failed over, or its backlog no longer holds those bytes); window {} ends there, and a new one starts",
                        p.base, p.offset, p.base
                    );
                }
                // Storage that fails now costs the primary nothing more: not
                // a resync taken.
                let id = storage::new_id()?;
                self.storage.prepare(&id)?;
                let taken = {
                    let mut recent = self.recent_resyncs.borrow_mut();
                    recent.push(Instant::now());
                    recent.len()
                };
                info!(
                    "{label} resyncs the archiver: full resync {taken} of the last {} minutes",
                    RECENT_RESYNCS.as_secs() / 60
                );
                let limits = SyncLimits {
                    wait: self.config.save_timeout,
                    max_rdb_size: self.config.max_rdb_size,
                };
                let base = link.take_rdb(limits, |rdb| {
                    self.store_base(rdb, id, &server, &replid, offset)
                })?;
                *position = Some(Position {
                    base: base.id,
                    replid,
                    seq: 0,
                    offset,
                    base_offset: offset,
                    base_size: base.raw_size,
                    session_start: true,
                });
            }
        }
        let current = position.as_mut().expect("set above");
        current.session_start = true;
        let watch = Watch::new(
            self.primary_offset()
                .map_or(0, |at| at.saturating_sub(current.offset)),
        );
        let (input, acks) = link.split();
        let followed = self.follow(input, acks, current, &server, watch);
        if self.new_window.swap(false, Ordering::Relaxed) {
            // A full resync starts the next window: the window is full, or
            // the primary sent a command too large for a chunk (which a
            // PSYNC would send again; the new base's RDB holds its value).
            if followed.is_err() {
                warn!(
                    "window {} ends at offset {}: raise archive_chunk_size to archive commands that large",
                    current.base, current.offset
                );
            }
            *position = None;
        }
        followed
    }

    /// The primary's replication offset now, asked on a connection of its
    /// own (the link carries the stream): what it had done by now is not
    /// all received until the stream reaches it, whether it sends what a
    /// gap or a full resync left in its buffers or this reader is slow.
    /// Without it the reader's own view is all there is: said.
    fn primary_offset(&self) -> Option<u64> {
        let offset = Connection::connect(&self.connect).and_then(|mut c| c.info("replication"));
        match offset.map(|info| info.get("master_repl_offset").and_then(|o| o.parse().ok())) {
            Ok(Some(offset)) => Some(offset),
            Ok(None) => {
                warn!("the primary did not say its replication offset: the session's first moments may lack writes it was still sending");
                None
            }
            Err(e) => {
                warn!("{e}; the session's first moments may lack writes the primary was still sending");
                None
            }
        }
    }

    /// The resync's RDB, stored as the base of a new window.
    fn store_base(
        &self,
        rdb: &mut (dyn Read + Send),
        id: BackupId,
        server: &crate::redis::Server,
        replid: &str,
        offset: u64,
    ) -> Result<Record> {
        info!("storing base {id} of a new window (history {replid}, offset {offset})");
        let created_at = units::utc_micros(SystemTime::now());
        let identity = Identity {
            backup_id: id.clone(),
            instance: self.instance.clone(),
            created_at: created_at.clone(),
            server_name: server.name.clone(),
            server_version: server.version.clone(),
            source: BASE_SOURCE.into(),
        };
        let mut checked = CheckedRdb {
            inner: rdb,
            check: RdbCheck::new(),
            progress: Progress::new("base", 0),
        };
        let (summary, stored_size) =
            self.store_object(self.storage, &identity, &mut checked, self.config.threads)?;
        let rdb = checked.check.finish().map_err(|e| {
            // Not listed, but as large as the RDB: nothing else would
            // remove the object.
            let _ = self.storage.delete(&id);
            // The primary's bytes, not the archive, failed: a later resync
            // may mend that (spaced like any other), as after other
            // failures of the primary's.
            Error::redis(format!(
                "the resync's RDB does not pass its own check; no base was stored: {}",
                e.message()
            ))
        })?;
        let place = ArchivePlace {
            base: id.clone(),
            replid: replid.to_string(),
            seq: 0,
            start_offset: offset,
            end_offset: offset,
            first_at: created_at.clone(),
            last_at: created_at,
            session_start: true,
            behind: Vec::new(),
        };
        let record = self.record(
            self.storage,
            identity,
            server,
            (summary, stored_size),
            u64::from(rdb.version),
            place,
        );
        self.put_record(self.storage, &record)?;
        info!(
            "base {} stored: {} RDB as {}",
            record.id,
            human_size(record.raw_size),
            human_size(record.stored_size)
        );
        Ok(record)
    }

    fn record(
        &self,
        storage: &dyn Storage,
        identity: Identity,
        server: &crate::redis::Server,
        (summary, stored_size): (pipeline::EncodeSummary, u64),
        rdb_version: u64,
        place: ArchivePlace,
    ) -> Record {
        Record {
            location: storage.location(&identity.backup_id),
            id: identity.backup_id,
            instance: identity.instance,
            created_at: identity.created_at,
            redis_version: server.redis_version.clone(),
            server_name: identity.server_name,
            server_version: identity.server_version,
            persistence: "rdb".into(),
            source: identity.source,
            raw_size: summary.raw_size,
            raw_sha256: summary.raw_sha256,
            stored_size,
            key_id: summary.key_id,
            format: record::FORMAT,
            compression_level: Some(self.config.compression_level),
            rdb_version,
            keys: BTreeMap::new(),
            keys_before: BTreeMap::new(),
            expires: BTreeMap::new(),
            archive: Some(place),
        }
    }

    fn put_record(&self, storage: &dyn Storage, record: &Record) -> Result<()> {
        let stored = record.to_stored_within(self.key, storage::MAX_RECORD_SIZE);
        if let Err(e) = stored.and_then(|json| storage.put_record(&record.id, &json)) {
            let _ = storage.delete(&record.id);
            return Err(e);
        }
        Ok(())
    }

    /// Read the stream and store it chunk by chunk; see the module comment.
    fn follow(
        &self,
        input: ReplicaInput,
        acks: ReplicaAcks,
        position: &mut Position,
        server: &crate::redis::Server,
        watch: Watch,
    ) -> Result<()> {
        let stored = AtomicU64::new(position.offset);
        let done = AtomicBool::new(false);
        let handover = Handover::new(self.config.archive_chunk_size);
        let waiting = Waiting::default();
        thread::scope(|s| {
            let (acks, stored, done, handover) = (&acks, &stored, &done, &handover);
            let waiting = &waiting;
            let (max, new_window) = (self.config.archive_chunk_size, &self.new_window);
            let reader = Reader {
                out: handover,
                acks,
                stored,
                max_command: max,
                new_window,
                watch,
                waiting,
            };
            s.spawn(move || reader.run(input));
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    if acks.ack(stored.load(Ordering::Relaxed)).is_err() {
                        return;
                    }
                    thread::sleep(ACK_EVERY);
                }
            });
            let result = self.store_chunks((handover, waiting), position, server, stored);
            done.store(true, Ordering::Relaxed);
            handover.storer_gone();
            // Wakes the reader if it waits on the socket.
            acks.close();
            result
        })
    }

    /// The status file's `archive` entry, if there is a status file.
    fn write_status(
        &self,
        position: Option<&Position>,
        report: &Report,
        lag: Duration,
        lag_bytes: u64,
        error: Option<&Error>,
    ) {
        if let Some(path) = &self.config.status_file {
            status::write_archiving(
                path,
                &status::Archiving {
                    instance: &self.instance,
                    base: position.map(|p| p.base.as_str()),
                    replid: position.map(|p| p.replid.as_str()),
                    offset: position.map(|p| p.offset),
                    last_chunk: report.last_chunk,
                    last_stored_micros: report.last_stored_micros,
                    lag,
                    lag_bytes,
                    error,
                },
            );
        }
    }

    fn store_chunks(
        &self,
        (handover, waiting): (&Handover, &Waiting),
        position: &mut Position,
        server: &crate::redis::Server,
        stored: &AtomicU64,
    ) -> Result<()> {
        let mut behind = Intervals::default();
        let mut chunk: Vec<Batch> = Vec::new();
        let mut bytes = 0u64;
        let mut started: Option<Instant> = None;
        let mut report = self.report.borrow_mut();
        let mut said_full = false;
        loop {
            let received = handover.recv_timeout(TICK);
            let ended = match received {
                Some((Ok(batch), seen)) => {
                    behind.saw(seen);
                    started.get_or_insert_with(Instant::now);
                    bytes += batch.bytes.len() as u64;
                    chunk.push(batch);
                    None
                }
                // The reads up to the end may have seen the archiver catch
                // up with what it holds.
                Some((Err(e), seen)) => {
                    behind.saw(seen);
                    Some(Err(e))
                }
                None => None,
            };
            let stopping = STOP.load(Ordering::Relaxed);
            let due = started.is_some_and(|t| t.elapsed() >= self.config.archive_interval);
            if !chunk.is_empty()
                && (ended.is_some() || stopping || due || bytes >= self.config.archive_chunk_size)
            {
                let first = chunk.first().expect("not empty").at_micros;
                let last = chunk.last().expect("not empty").at_micros;
                if waiting.since(last) {
                    behind.caught_up_at(last);
                }
                let (recorded, new_session) = behind.for_chunk(first, last);
                if new_session && !position.session_start {
                    info!(
                        "the archiver fell behind the primary more than {} times in this session: its next chunk starts another, so that what the records stored hold stays held",
                        behind::MAX_INTERVALS
                    );
                    position.session_start = true;
                }
                self.store_chunk(&chunk, bytes, recorded, position, server)?;
                stored.store(position.offset, Ordering::Relaxed);
                report.stored(&chunk);
                chunk.clear();
                bytes = 0;
                started = None;
                // A full window goes on until a base may be stored: a new
                // one would wait out the gap with nothing archived, and a
                // busy primary fills windows faster than the gap at its
                // longest.
                if position.is_full() && ended.is_none() && !stopping {
                    let held = |p: &Position| {
                        let stream = human_size(p.offset - p.base_offset);
                        format!("{} chunks and {stream} of stream", p.seq)
                    };
                    match self.base_gap_left() {
                        None => {
                            info!(
                                "window {} holds {}: a fresh base starts the next one",
                                position.base,
                                held(position)
                            );
                            self.new_window.store(true, Ordering::Relaxed);
                            return Ok(());
                        }
                        Some(left) if !said_full => {
                            said_full = true;
                            info!(
                                "window {} holds {}, and goes on until a new base may be stored, in {}s",
                                position.base,
                                held(position),
                                units::seconds(left, 0)
                            );
                        }
                        Some(_) => {}
                    }
                }
            }
            report.maybe_write(self, position, started, bytes, None);
            if let Some(result) = ended {
                return result;
            }
            if stopping {
                return Ok(());
            }
        }
    }

    /// One chunk: the object, then its record. Storage failures are tried
    /// again (the bytes are in memory); an ID left taken by a failed
    /// attempt is cleared first.
    fn store_chunk(
        &self,
        batches: &[Batch],
        bytes: u64,
        behind: Vec<(u64, u64)>,
        position: &mut Position,
        server: &crate::redis::Server,
    ) -> Result<()> {
        let end = position.offset.checked_add(bytes).ok_or_else(|| {
            Error::redis("the replication offset overflows: not a primary's stream")
        })?;
        let name = ChunkName {
            base: position.base.clone(),
            start: position.offset,
            end,
            session_start: position.session_start,
        };
        let id = name.id();
        let first = batches.first().expect("a chunk has a batch").at_micros;
        let last = batches.last().expect("a chunk has a batch").at_micros;
        let at = |micros: u64| units::utc_micros(UNIX_EPOCH + Duration::from_micros(micros));
        let identity = Identity {
            backup_id: id.clone(),
            instance: self.instance.clone(),
            created_at: at(first),
            server_name: server.name.clone(),
            server_version: server.version.clone(),
            source: CHUNK_SOURCE.into(),
        };
        let payload = stream::encode_chunk(batches);
        let place = ArchivePlace {
            base: position.base.clone(),
            replid: position.replid.clone(),
            seq: position.seq + 1,
            start_offset: name.start,
            end_offset: name.end,
            first_at: at(first),
            last_at: at(last),
            session_start: position.session_start,
            behind,
        };
        let chunks = &*self.chunks;
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=STORE_ATTEMPTS {
            let stored = self
                .store_object(chunks, &identity, &mut Cursor::new(&payload), 1)
                .and_then(|(summary, size)| {
                    let record = self.record(
                        chunks,
                        identity.clone(),
                        server,
                        (summary, size),
                        0,
                        place.clone(),
                    );
                    self.put_record(chunks, &record)
                });
            match stored {
                Ok(()) => {
                    position.seq += 1;
                    position.offset = name.end;
                    position.session_start = false;
                    log::debug!("stored chunk {id} ({bytes} bytes of stream)");
                    return Ok(());
                }
                // An archiver killed between a chunk's object and its
                // record left the object: its bytes were never counted as
                // stored (the window ends before them), so it is replaced.
                // So is whatever a writer of the storage planted under the
                // name: only an authentic record is another archiver's.
                Err(e) if attempt == 1 && e.exit_code() == 2 => {
                    if crate::stored::load_record(chunks, &id, self.key)
                        .is_ok_and(|r| r.authenticated())
                    {
                        return Err(Error::integrity(format!(
                            "chunk {id} is stored already, by another archiver of instance {}: this one stops",
                            self.instance
                        )));
                    }
                    warn!("chunk {id} was left half stored by an archiver that was stopped, or is not ours; storing it again");
                    let _ = chunks.delete(&id);
                }
                Err(e) if attempt < STORE_ATTEMPTS && e.exit_code() == 4 => {
                    warn!(
                        "storing chunk {id}: {e}; trying again in {}s",
                        pause.as_secs()
                    );
                    let _ = chunks.delete(&id);
                    thread::sleep(pause);
                    pause *= 2;
                }
                Err(e) => return Err(e.context(format!("storing chunk {id}"))),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// `input` to its end as object `identity`, visible only once whole.
    /// (A stream cannot be read twice: a failed upload is tried again by the
    /// caller, from bytes it still holds, or not at all.)
    fn store_object(
        &self,
        storage: &dyn Storage,
        identity: &Identity,
        input: &mut (dyn Read + Send),
        workers: usize,
    ) -> Result<(pipeline::EncodeSummary, u64)> {
        let mut object = storage.create(&identity.backup_id)?;
        let options = EncodeOptions {
            identity: identity.clone(),
            level: self.config.compression_level,
            frame_size: format::DEFAULT_FRAME_SIZE,
            workers,
            salt: None,
        };
        let summary = pipeline::encode(input, &mut StorageIo(&mut *object), self.key, &options)?;
        let metadata = [
            ("Backup-Id", identity.backup_id.to_string()),
            ("Raw-Size", summary.raw_size.to_string()),
            ("Raw-Sha256", summary.raw_sha256.clone()),
            ("Key-Id", summary.key_id.clone()),
        ];
        let size = object.commit(&metadata)?;
        Ok((summary, size))
    }
}

/// The resync's RDB, checked (magic, CRC64) as it is read.
struct CheckedRdb<'a> {
    inner: &'a mut (dyn Read + Send),
    check: RdbCheck,
    progress: Progress,
}

impl Read for CheckedRdb<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check.update(&buf[..n]);
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// What the status file says of the chunks stored, and when it was last written.
#[derive(Default)]
struct Report {
    last_chunk: Option<SystemTime>,
    last_stored_micros: Option<u64>,
    written: Option<Instant>,
}

impl Report {
    fn stored(&mut self, chunk: &[Batch]) {
        self.last_chunk = Some(SystemTime::now());
        self.last_stored_micros = chunk.last().map(|b| b.at_micros);
        // Written at once after a chunk.
        self.written = None;
    }

    fn maybe_write(
        &mut self,
        archiver: &Archiver,
        position: &Position,
        pending_since: Option<Instant>,
        pending_bytes: u64,
        error: Option<&Error>,
    ) {
        if self.written.is_some_and(|at| at.elapsed() < STATUS_EVERY) {
            return;
        }
        let lag = pending_since.map(|t| t.elapsed()).unwrap_or_default();
        archiver.write_status(Some(position), self, lag, pending_bytes, error);
        self.written = Some(Instant::now());
    }
}

/// What the reader hands the storer: a batch, or why the stream ended, and
/// what the reads up to it saw.
type Received = (Result<Batch>, Seen);

/// The queue from the reader to the storer: at most `QUEUE` batches and
/// `limit` bytes (the chunk size), or one batch however large. Bounded by
/// bytes as well, as a batch is a whole command, and a primary sending
/// commands just under the chunk size faster than they are stored would
/// otherwise have the archiver hold `QUEUE` of them.
struct Handover {
    state: Mutex<Handed>,
    changed: Condvar,
    limit: u64,
}

#[derive(Default)]
struct Handed {
    items: VecDeque<Received>,
    bytes: u64,
    reader_gone: bool,
    storer_gone: bool,
}

impl Handover {
    fn new(limit: u64) -> Handover {
        Handover {
            state: Mutex::default(),
            changed: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Handed> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `item` once there is room; false once the storer is gone.
    fn send(&self, item: Received) -> bool {
        let n = item.0.as_ref().map_or(0, |batch| batch.bytes.len() as u64);
        let mut state = self.lock();
        while !state.storer_gone
            && !state.items.is_empty()
            && (state.items.len() >= QUEUE || state.bytes.saturating_add(n) > self.limit)
        {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.storer_gone {
            return false;
        }
        state.bytes += n;
        state.items.push_back(item);
        self.changed.notify_all();
        true
    }

    /// The next item, waiting up to `wait` (`None` if none came); once the
    /// reader is gone and nothing is left, that the stream ended.
    fn recv_timeout(&self, wait: Duration) -> Option<Received> {
        let mut state = self.lock();
        if state.items.is_empty() && !state.reader_gone {
            state = self
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match state.items.pop_front() {
            Some(item) => {
                state.bytes -= item.0.as_ref().map_or(0, |batch| batch.bytes.len() as u64);
                self.changed.notify_all();
                Some(item)
            }
            None if state.reader_gone => {
                let seen = Seen {
                    ended: None,
                    behind_since: None,
                };
                Some((Err(Error::redis("the replication stream ended")), seen))
            }
            None => None,
        }
    }

    fn storer_gone(&self) {
        self.lock().storer_gone = true;
        self.changed.notify_all();
    }
}

/// The reader ended, however it did (a panic included): the storer must
/// not wait for it.
struct ReaderGone<'a>(&'a Handover);

impl Drop for ReaderGone<'_> {
    fn drop(&mut self) {
        self.0.lock().reader_gone = true;
        self.0.changed.notify_all();
    }
}

/// The reader: whole commands, stamped as they arrive; `REPLCONF GETACK`
/// answered at once with what is stored.
struct Reader<'a> {
    out: &'a Handover,
    acks: &'a ReplicaAcks,
    stored: &'a AtomicU64,
    max_command: u64,
    new_window: &'a AtomicBool,
    watch: Watch,
    waiting: &'a Waiting,
}

impl Reader<'_> {
    fn run(mut self, mut input: ReplicaInput) {
        let _gone = ReaderGone(self.out);
        let mut splitter = Splitter::new(self.max_command);
        let mut buf = vec![0u8; READ_SIZE];
        // A clock stepped back (NTP) must not make stamps go backwards: the
        // replay holds a chunk whose stamps do to be tampered with.
        let mut last_stamp = 0u64;
        let run_queue = behind::RunQueue::of_this_thread();
        loop {
            // Whether this read takes from the socket, not from a buffer.
            let from_socket = input.buffered() == 0;
            let clean_at_start = from_socket && !splitter.holds_part();
            let preempted_before = run_queue.waited_micros();
            // Taken before the socket is asked: what it holds then arrived
            // after the read before, or that one left it.
            let began = units::now_micros().max(last_stamp);
            let empty_at_start = clean_at_start && input.queued() == Some(0);
            self.waiting
                .begin(empty_at_start && self.watch.offset_reached(), last_stamp);
            // Stopped since the socket was asked (a stop lands as that call
            // returns), what came meanwhile waits in it, and the read takes
            // it at once as if just come: the socket no longer counts as
            // empty. (A stop in the few instructions left before the read,
            // or a tracer holding its entry, is not seen.)
            let empty_at_start =
                empty_at_start && units::now_micros().saturating_sub(began) <= behind::SLACK_MICROS;
            let read = input.read(&mut buf);
            if matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::Interrupted) {
                // A read with a timeout set on the socket is not restarted
                // after a stop (SIGSTOP, a freeze, a debugger attaching):
                // no fault of the link. Not a read either: the next begins
                // afresh, and finds what came meanwhile in the socket.
                self.waiting.end();
                continue;
            }
            let read = read.map_err(|e| {
                Error::from_io(e)
                    .unwrap_or_else(|e| Error::redis(format!("reading the stream: {e}")))
            });
            self.waiting.end();
            // Stamped as the read returns: what comes after takes time.
            last_stamp = last_stamp.max(units::now_micros());
            let preempted = run_queue.waited_micros().saturating_sub(preempted_before);
            let n = *read.as_ref().unwrap_or(&0);
            let eof = matches!(read, Ok(0));
            let whole = match read {
                Ok(0) => Err(Error::redis("the primary closed the replication stream")),
                Ok(n) => splitter.push(&buf[..n]).and_then(|pushed| {
                    pushed.map_err(|TooLong { max }| {
                        self.new_window.store(true, Ordering::Relaxed);
                        Error::redis(format!(
                            "the primary sent a command of more than archive_chunk_size ({max} bytes), which the archive does not hold"
                        ))
                    })
                }),
                Err(e) => Err(e),
            };
            self.watch.read(behind::Read {
                at: last_stamp,
                began: began.min(last_stamp),
                n,
                empty_at_start,
                preempted_micros: preempted,
                newest_arrival: input.newest_arrival().filter(|_| from_socket),
                eof,
                clean_at_start,
                // All the socket held was read, and no command is half in.
                drained: from_socket
                    && n < behind::DRAINED_BELOW
                    && input.buffered() == 0
                    && !splitter.holds_part(),
            });
            let whole = match whole {
                Ok(bytes) if bytes.is_empty() => continue,
                whole => whole,
            };
            let batch = whole.map(|bytes| Batch {
                at_micros: last_stamp,
                bytes,
            });
            let failed = batch.is_err();
            if let Ok(batch) = &batch {
                if stream::commands(&batch.bytes).any(is_getack) {
                    let _ = self.acks.ack(self.stored.load(Ordering::Relaxed));
                }
            }
            if !self.out.send((batch, self.watch.seen())) || failed {
                return;
            }
        }
    }
}

fn is_getack(command: &[u8]) -> bool {
    let args = stream::arguments(command);
    args.len() >= 2
        && args[0].eq_ignore_ascii_case(b"REPLCONF")
        && args[1].eq_ignore_ascii_case(b"GETACK")
}

impl Position {
    /// Whether the window has grown enough that a fresh base is cheaper
    /// than replaying it: a day of chunks at the default interval (and the
    /// listing of its chunks stays small), or more stream than twice its
    /// base (at least 1 GiB).
    fn is_full(&self) -> bool {
        let stream = self.offset - self.base_offset;
        self.seq >= MAX_WINDOW_CHUNKS || stream > (2 * self.base_size).max(MAX_WINDOW_STREAM)
    }
}

/// How long until the next full resync may be taken (and a base stored),
/// given the ages of the recent ones: a second after the first, two after
/// the second, and so on up to `LONGEST_BASE_GAP` after the last.
fn base_gap_left(recent_ages: &[Duration]) -> Option<Duration> {
    let since = recent_ages.iter().min()?;
    let doublings = u32::try_from(recent_ages.len() - 1)
        .unwrap_or(u32::MAX)
        .min(10);
    let gap = (FIRST_PAUSE * (1 << doublings)).min(LONGEST_BASE_GAP);
    gap.checked_sub(*since).filter(|left| !left.is_zero())
}

/// `lock_file` with `.archive-INSTANCE` before its extension.
pub fn archive_lock(config: &Config, instance: &str) -> std::path::PathBuf {
    let path = &config.lock_file;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.archive-{instance}.lock"))
}

/// Sleep up to `pause`; true if told to stop meanwhile.
fn sleep_unless_stopped(pause: Duration) -> bool {
    let until = Instant::now() + pause;
    while Instant::now() < until {
        if STOP.load(Ordering::Relaxed) {
            return true;
        }
        thread::sleep(TICK);
    }
    STOP.load(Ordering::Relaxed)
}

extern "C" fn note_stop(_signal: libc::c_int) {
    // Only an atomic store: nothing else is safe in a signal handler.
    STOP.store(true, Ordering::Relaxed);
}

/// SIGTERM (systemd's stop) and SIGINT (Ctrl-C) ask for what is received
/// to be stored, then a clean exit.
#[allow(unsafe_code)]
fn install_stop_handlers() {
    let handler = note_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `note_stop` only stores to an atomic, which is
    // async-signal-safe; `signal` has no other precondition.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_before_a_full_resync_doubles_with_each_recent_one() {
        let ages = |secs: &[u64]| -> Vec<Duration> {
            secs.iter().map(|s| Duration::from_secs(*s)).collect()
        };
        let left = |secs: &[u64]| base_gap_left(&ages(secs)).map(|d| d.as_secs());
        assert_eq!(left(&[]), None);
        // One resync: a second after it.
        assert_eq!(left(&[0]), Some(1));
        assert_eq!(left(&[1]), None);
        // Three: four seconds after the last, whatever their order.
        assert_eq!(left(&[1, 9, 5]), Some(3));
        assert_eq!(left(&[4, 9, 5]), None);
        // Many: at most five minutes.
        let many: Vec<u64> = (1..=40).map(|i| i * 60).collect();
        assert_eq!(left(&many), Some(240));
    }

    #[test]
    fn a_window_is_full_after_a_day_of_chunks_or_twice_its_base() {
        let position = |seq: u64, stream: u64, base_size: u64| Position {
            base: BackupId::parse("b").unwrap(),
            replid: "r".into(),
            seq,
            offset: 1000 + stream,
            base_offset: 1000,
            base_size,
            session_start: false,
        };
        assert!(!position(10, 1 << 20, 1 << 20).is_full());
        assert!(position(MAX_WINDOW_CHUNKS, 0, 0).is_full());
        assert!(position(1, (1 << 30) + 1, 1 << 20).is_full());
        assert!(!position(1, (3 << 30) - 1, 3 << 29).is_full());
        assert!(position(1, (3 << 30) + 1, 3 << 29).is_full());
    }
}
