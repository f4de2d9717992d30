//! `backup`, step by step: take the host lock, load the key, find Redis from its
//! own config, make it write a fresh snapshot and wait for *our* save, open the
//! dump at once, stream it through the pipeline into storage, and only then
//! write the record, so that a listed backup is always a complete one.

use crate::cli::Source;
use crate::codec::crypto::{self, MasterKey};
use crate::codec::format::{self, Identity};
use crate::codec::pipeline::{self, EncodeOptions};
use crate::codec::rdb::{RdbCheck, RdbInfo};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::fs::data_dir::{self, DataDir, FileIdentity};
use crate::fs::{cache::ReadOnce, lock_host};
use crate::id::BackupId;
use crate::progress::Progress;
use crate::record::{self, Record};
use crate::redis::conf::RedisConf;
use crate::redis::instance::{self, DataFiles};
use crate::redis::server::Flavor;
use crate::redis::{per_db, Connection, DbCount, SyncLimits};
use crate::restore::journal;
use crate::storage::{self, ObjectWriter, Storage, StorageIo};
use crate::units::{self, human_size};
use log::{debug, info, warn};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DUMP_AGE_SLACK_SECS: i64 = 5;
/// First pause before sending the rest of a stream whose upload failed;
/// doubled each time.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub struct Request {
    pub id: Option<BackupId>,
    pub instance: Option<String>,
    pub source: Source,
}

pub fn run(config: &Config, request: Request) -> Result<Record> {
    let started = Instant::now();
    let _lock = lock_host(&config.lock_file)?;
    let key = crypto::load_key_file(&config.key_file)?;
    let redis_conf = instance::read_conf(config)?;
    let storage = storage::open(config)?;
    let id = match request.id {
        Some(id) => id,
        None => storage::new_id()?,
    };
    // A taken ID or unwritable storage must fail before Redis is asked to save.
    storage.prepare(&id)?;
    // Before Redis is asked for anything: a SYNC's RDB waits for no one.
    storage.tidy();
    let instance = request.instance.unwrap_or_else(|| config.instance.clone());

    let interrupted = refuse_during_interrupted_restore(&redis_conf)?;
    let options = instance::connect_options(config, &redis_conf, config.redis_timeout)?;
    let mut redis = Connection::connect(&options).map_err(|e| match &interrupted {
        // Likely why it is down: the way back is what the operator needs.
        Some(work) => e.context(format!(
            "a restore was interrupted and left {} (run `redis-backup restore` again, which first finishes it)",
            work.display()
        )),
        None => e,
    })?;
    let server = redis.server()?;
    let redis_version = server.redis_version.clone();
    // As people know it: "Valkey 9.1.2", not its Redis compatibility version.
    let server_label = format!(
        "{} {}",
        Flavor::from_name(&server.name).name(),
        server.version
    );
    // Key counts can only be read beside the save, not inside it: the record
    // keeps the counts from just before and just after, and restore accepts
    // anything between them.
    let (input, files, keyspace_before) = match request.source {
        Source::Snapshot => {
            let files = DataFiles::live(&mut redis, &redis_conf)?;
            let data = local_data_dir(&files, &redis_conf)?;
            data.remove_taken_aside();
            info!(
                "{server_label}: dump {}, persistence {}",
                files.dump_path().display(),
                files.describe_persistence()
            );
            let keyspace_before = recordable(redis.keyspace()?)?;
            refuse_a_replica_with_nothing(&mut redis, &keyspace_before)?;
            let snapshot = redis.snapshot(config.save_timeout)?;
            let dump = open_dump(&data, &files.dbfilename, snapshot.lastsave)?;
            refuse_oversized(&dump, config.max_rdb_size)?;
            // Redis was not meant to keep a dump: the one we made it write
            // goes at once (read through the descriptor from here), so that
            // no way out, a kill included, leaves it for Redis's next start
            // to load. Only that file.
            if !files.persistent() {
                remove_our_dump(&data, &files.dbfilename, &dump)?;
            }
            let dump =
                ReadOnce::new(dump).map_err(|e| Error::other(format!("reading the dump: {e}")))?;
            (DumpSource::File(dump), Some(files), keyspace_before)
        }
        Source::Replication => {
            // Redis may be elsewhere; its files are only a hint here.
            let files = DataFiles::live(&mut redis, &redis_conf).ok();
            info!("{server_label}: taking the RDB from a replica's sync");
            let keyspace_before = recordable(redis.keyspace()?)?;
            let limits = SyncLimits {
                wait: config.save_timeout,
                max_rdb_size: config.max_rdb_size,
            };
            let stream = Connection::connect(&options)?.sync_rdb_within(limits)?;
            (DumpSource::Stream(Box::new(stream)), files, keyspace_before)
        }
    };
    let identity = Identity {
        backup_id: id.clone(),
        instance: instance.clone(),
        created_at: units::utc_micros(SystemTime::now()),
        server_name: server.name,
        server_version: server.version,
        source: match request.source {
            Source::Snapshot => "snapshot",
            Source::Replication => "replication",
        }
        .into(),
    };

    let (summary, rdb, stored_size) = store(&*storage, input, &key, &identity, config)?;
    // The object is stored: nothing from here may lose it for a Redis that
    // went away meanwhile (the first connection sat idle all along).
    let keyspace = match Connection::connect(&options).and_then(|mut c| c.keyspace()) {
        Ok(keyspace) => keyspace,
        Err(e) => {
            warn!("key counts after the save unavailable ({e}); recording those from before");
            keyspace_before.clone()
        }
    };
    let Identity {
        backup_id: id,
        instance,
        created_at,
        server_name,
        server_version,
        source,
    } = identity;
    let record = Record {
        location: storage.location(&id),
        id,
        instance,
        created_at,
        redis_version,
        server_name,
        server_version,
        persistence: files.map_or("rdb", |f| f.persistence_kind()).into(),
        source,
        raw_size: summary.raw_size,
        raw_sha256: summary.raw_sha256,
        stored_size,
        key_id: summary.key_id,
        format: record::FORMAT,
        compression_level: Some(config.compression_level),
        rdb_version: u64::from(rdb.version),
        keys: per_db(&keyspace, |count| count.keys),
        keys_before: per_db(&keyspace_before, |count| count.keys),
        expires: per_db(&keyspace, |count| count.expires),
        archive: None,
    };
    let stored = record.to_stored_within(&key, storage::MAX_RECORD_SIZE);
    if let Err(e) = stored.and_then(|json| storage.put_record(&record.id, &json)) {
        // Without its record the object would be unlisted but its ID taken.
        if let Err(cleanup) = storage.delete(&record.id) {
            warn!(
                "could not remove the object of unrecorded backup {}: {cleanup}",
                record.id
            );
        }
        return Err(e);
    }
    info!(
        "backup {} complete: {} RDB stored as {} in {}s",
        record.id,
        human_size(record.raw_size),
        human_size(record.stored_size),
        units::seconds(started.elapsed(), 1)
    );
    Ok(record)
}

/// A replica whose link to its primary is down and which holds no keys has
/// not synced since it started (or is syncing now): its dump is empty, and
/// stored as a backup it counted in prune against the backups that hold
/// data. Refused. One that synced and then lost its primary keeps a copy
/// worth having (in an outage, often the only one): backed up, and said.
/// (`--source replication` needs no such check: a replica whose link is
/// down refuses to be synced from.)
fn refuse_a_replica_with_nothing(
    redis: &mut Connection,
    keyspace: &BTreeMap<u32, DbCount>,
) -> Result<()> {
    let replication = redis.info("replication")?;
    let field = |name: &str| replication.get(name).map_or("?", String::as_str);
    if field("role") != "slave" || field("master_link_status") == "up" {
        return Ok(());
    }
    let (host, port) = (field("master_host"), field("master_port"));
    if keyspace.is_empty() {
        return Err(Error::redis(format!(
            "Redis is a replica that has not synced with its primary {host}:{port} (master_link_status:down) and holds no keys: its backup would be empty; back up once INFO replication says master_link_status:up, or back up the primary"
        )));
    }
    warn!("Redis is a replica and its link to its primary {host}:{port} is down (master_link_down_since_seconds:{}, -1 since it started): the backup holds its data as of its last sync", field("master_link_down_since_seconds"));
    Ok(())
}

/// A record holds a key count of each non-empty database (three times:
/// before, after, with a TTL), and is at most 64 KiB: this many fit.
const MAX_RECORDED_DATABASES: usize = 512;

/// `keyspace`, if a record can hold its counts: refused before Redis is
/// asked to save, not after the whole dump was stored.
fn recordable(keyspace: BTreeMap<u32, DbCount>) -> Result<BTreeMap<u32, DbCount>> {
    if keyspace.len() > MAX_RECORDED_DATABASES {
        return Err(Error::redis(format!(
            "Redis reports {} non-empty databases; a backup's record holds the key counts of at most {MAX_RECORDED_DATABASES}",
            keyspace.len()
        )));
    }
    Ok(keyspace)
}

/// The data dir a snapshot is read from. Whatever answers on Redis's port
/// says where its dump is; that is believed only where redis.conf agrees
/// (the same dir, a plain file name in it), and the dir is opened once, for
/// every later step to work through (see `data_dir`).
fn local_data_dir(live: &DataFiles, conf: &RedisConf) -> Result<DataDir> {
    let source = conf.source.display();
    let Some(conf_dir) = conf.dir.as_ref().filter(|d| d.is_absolute()) else {
        return Err(Error::usage(format!(
            "{source} does not name an absolute data dir (dir); a snapshot backup reads the dump Redis writes there, so set it"
        )));
    };
    let canonical = |dir: &Path| std::fs::canonicalize(dir).ok();
    let same_dir = live.dir.is_absolute()
        && canonical(&live.dir).is_some()
        && canonical(&live.dir) == canonical(conf_dir);
    if !same_dir {
        return Err(Error::usage(format!(
            "Redis says its data dir is {}, but {source} says {}; a snapshot backup reads only from the dir of redis.conf (if Redis was moved with CONFIG SET, write it back with CONFIG REWRITE)",
            live.dir.display(),
            conf_dir.display()
        )));
    }
    data_dir::plain_name("dbfilename", &live.dbfilename)?;
    let data = DataDir::open(conf_dir)?;
    conf.check_authority(data.path(), data.owner())?;
    Ok(data)
}

/// After a restore was killed half way, Redis may be running on an empty or
/// partial data dir while the real data waits in the work folder: backing that
/// up (and later pruning good backups) would lose it, whatever the source (a
/// replica's sync takes the same data). Not so once the data files are whole
/// again (a rollback put them back but Redis did not start, and the operator
/// started it). Looked for in the data dir redis.conf names, before Redis is
/// asked anything; the folder of an interrupted restore that left the data
/// in place is returned, for the message if Redis cannot be reached.
fn refuse_during_interrupted_restore(conf: &RedisConf) -> Result<Option<PathBuf>> {
    let Some(dir) = conf.dir.as_ref().filter(|d| d.is_absolute()) else {
        return Ok(None);
    };
    // Not on this host (a replica's sync of a Redis elsewhere): no restore
    // of ours can have been interrupted in it.
    let Ok(data) = DataDir::open(dir) else {
        return Ok(None);
    };
    let interrupted = journal::interrupted(&data)?;
    let unfinished = interrupted
        .iter()
        .find(|work| work.was_active().is_some() && !work.data_in_place());
    match unfinished {
        None => Ok(interrupted.first().map(|work| work.path().to_path_buf())),
        Some(work) => Err(Error::other(format!(
            "a restore was interrupted and left {}, whose previous/ may hold the real data; run `redis-backup restore` again (it first puts that data back) before taking backups",
            work.path().display()
        ))),
    }
}

/// Stream the dump into a new object; nothing is visible until it is committed.
fn store(
    storage: &dyn Storage,
    source: DumpSource,
    key: &MasterKey,
    identity: &Identity,
    config: &Config,
) -> Result<(pipeline::EncodeSummary, RdbInfo, u64)> {
    let id = &identity.backup_id;
    let mut input = CheckedDump {
        progress: Progress::new("backup", source.size()),
        source,
        check: RdbCheck::new(),
        started: false,
        identity: None,
        read_so_far: 0,
    };
    let mut object = storage.create(id)?;
    let options = EncodeOptions {
        identity: identity.clone(),
        level: config.compression_level,
        frame_size: format::DEFAULT_FRAME_SIZE,
        workers: config.threads,
        // Fixed up front so that a resumed upload encodes the same bytes.
        salt: Some(pipeline::fresh_salt()?),
    };
    let started = Instant::now();
    let mut resume_from = 0;
    let mut pause = RETRY_PAUSE;
    let summary = loop {
        input.rewind()?;
        let mut out = SkipTo {
            inner: StorageIo(&mut *object),
            skip: resume_from,
            position: 0,
        };
        match pipeline::encode(&mut input, &mut out, key, &options) {
            Ok(summary) => break summary,
            // The storage kept what came before `offset`: encode again and
            // send only the rest (re-reading the RDB is cheap next to a
            // network upload, and keeps memory flat).
            Err(e) => match object.resume_offset() {
                Some(resume) if input.rewindable() => {
                    if resume.after_fault {
                        warn!("{e}");
                        std::thread::sleep(pause);
                        pause *= 2;
                    } else {
                        debug!("{e}");
                    }
                    resume_from = resume.offset;
                }
                _ => return Err(e),
            },
        }
    };
    // A dump that fails its own checksum would make a backup that cannot be
    // restored; refuse it before it is committed.
    let rdb = input.check.finish().map_err(|e| {
        e.context(
            "the dump Redis just wrote does not pass its own check; the backup was not stored",
        )
    })?;
    let metadata = [
        ("Backup-Id", id.to_string()),
        ("Raw-Size", summary.raw_size.to_string()),
        ("Raw-Sha256", summary.raw_sha256.clone()),
        ("Key-Id", summary.key_id.clone()),
    ];
    let stored_size = object.commit(&metadata)?;
    info!(
        "stream: {} read, {} stored in {}s",
        human_size(summary.raw_size),
        human_size(stored_size),
        units::seconds(started.elapsed(), 3)
    );
    Ok((summary, rdb, stored_size))
}

/// Where the RDB comes from: the dump file Redis wrote, or a sync stream.
enum DumpSource {
    File(ReadOnce),
    Stream(Box<dyn Read + Send>),
}

impl DumpSource {
    fn size(&self) -> u64 {
        match self {
            DumpSource::File(file) => file.get_ref().metadata().map(|m| m.len()).unwrap_or(0),
            DumpSource::Stream(_) => 0,
        }
    }
}

/// The RDB, checked (magic and CRC64) and counted as it is read.
struct CheckedDump {
    source: DumpSource,
    check: RdbCheck,
    progress: Progress,
    started: bool,
    /// Size and modification time at the first read: a resumed upload must
    /// encode the very same bytes again.
    identity: Option<(u64, Option<SystemTime>)>,
    /// Bytes of the file read in this pass.
    read_so_far: u64,
}

impl CheckedDump {
    /// Whether the input can be read again from the start: a file can, a
    /// replication stream cannot (an upload that failed then is final).
    fn rewindable(&self) -> bool {
        matches!(self.source, DumpSource::File(_))
    }

    /// Back to the start, for another pass of an upload being resumed.
    fn rewind(&mut self) -> Result<()> {
        if !self.started {
            return Ok(());
        }
        let DumpSource::File(file) = &mut self.source else {
            return Err(Error::other("a replication stream cannot be read twice"));
        };
        if file_identity(file.get_ref()) != self.identity {
            return Err(Error::other(
                "the dump changed while its upload was being resumed; run the backup again",
            ));
        }
        file.rewind()
            .map_err(|e| Error::other(format!("rewinding the dump: {e}")))?;
        self.check = RdbCheck::new();
        self.read_so_far = 0;
        self.progress = Progress::new("backup", self.source.size());
        Ok(())
    }
}

impl Read for CheckedDump {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            if let DumpSource::File(file) = &self.source {
                self.identity = file_identity(file.get_ref());
            }
        }
        self.started = true;
        let n = match &mut self.source {
            DumpSource::File(file) => {
                let n = file.read(buf)?;
                // Redis renamed the dump into place whole; bytes past the
                // size it had when we started are someone else's doing.
                let size = self.identity.map_or(0, |(size, _)| size);
                self.read_so_far += n as u64;
                if self.read_so_far > size {
                    return Err(io::Error::other(
                        "the dump grew while it was read; it is not the file Redis wrote",
                    ));
                }
                n
            }
            DumpSource::Stream(stream) => stream.read(buf)?,
        };
        self.check.update(&buf[..n]);
        self.progress.advance(n as u64);
        Ok(n)
    }
}

fn file_identity(file: &File) -> Option<(u64, Option<SystemTime>)> {
    file.metadata().ok().map(|m| (m.len(), m.modified().ok()))
}

/// Passes the stream on from byte `skip` (what the storage already holds).
struct SkipTo<'a> {
    inner: StorageIo<&'a mut dyn ObjectWriter>,
    skip: u64,
    position: u64,
}

impl Write for SkipTo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.position < self.skip {
            let n = buf.len().min((self.skip - self.position) as usize);
            self.position += n as u64;
            return Ok(n);
        }
        let n = self.inner.write(buf)?;
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A dump larger than `max_rdb_size` is refused before it is read; one that
/// grows while it is read (its owner appending to it) is cut where it stood
/// (`CheckedDump`).
fn refuse_oversized(dump: &File, max_rdb_size: u64) -> Result<()> {
    let size = dump
        .metadata()
        .map_err(|e| Error::other(format!("cannot stat the dump: {e}")))?
        .len();
    if size > max_rdb_size {
        return Err(Error::redis(format!(
            "the dump is {} bytes, more than max_rdb_size ({max_rdb_size}); raise the setting if that is expected",
            size
        )));
    }
    Ok(())
}

/// Open the dump Redis has just written, and make sure it is that one: a
/// file Redis could have written (see `DataDir::open_dump`), and not older
/// than the save (the wrong `dir` in redis.conf, say).
fn open_dump(data: &DataDir, name: &str, lastsave: i64) -> Result<File> {
    let file = data.open_dump(name)?;
    let path = data.join(name);
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .map_err(|e| Error::other(format!("cannot stat {}: {e}", path.display())))?;
    let modified = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // The file is renamed into place just before Redis records LASTSAVE; a few
    // seconds of slack cover clock granularity, not a stale file.
    if modified + DUMP_AGE_SLACK_SECS < lastsave {
        return Err(Error::redis(format!(
            "Redis finished a save at {lastsave} (unix time), but {} was last written at {modified}: it is not the file this Redis saves to; check dir and dbfilename in redis_conf",
            path.display()
        )));
    }
    Ok(file)
}

/// Removes the dump, if it is still the file we opened (same device and
/// inode), through the data dir's descriptor: a newer dump, or anything put
/// under its name since, is not ours to delete.
fn remove_our_dump(data: &DataDir, name: &str, opened: &File) -> Result<()> {
    let identity =
        FileIdentity::of(opened).map_err(|e| Error::other(format!("cannot stat the dump: {e}")))?;
    data.remove_unkept_dump(
        name,
        identity,
        "Redis keeps nothing on disk (the backup reads the dump through its open descriptor)",
    );
    Ok(())
}
