//! `restore`, step by step, as an operator would do it by hand at 3 a.m., but
//! without the mistakes: take the lock; finish off any restore a previous run
//! left half done; stage and prove the backup while Redis keeps running; only
//! then stop Redis, move its files aside (never delete them first), place the
//! new RDB, rebuild the AOF privately if the instance uses one, start, and check
//! the key counts. Any failure after Redis was touched puts the old files back.

pub mod journal;
mod private_redis;
pub mod rollback;

use crate::archive;
use crate::cli::Target;
use crate::codec::crypto::{self, MasterKey};
use crate::codec::rdb::RdbInfo;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fs::data_dir::{self, DataDir, FileIdentity};
use crate::fs::lock_host;
use crate::fs::room::{self, Room};
use crate::fs::write_behind::{Cache, WriteBehind};
use crate::record::Record;
use crate::redis::conf::{self as redis_conf, RedisConf};
use crate::redis::instance::{self, DataFiles};
use crate::redis::resp::Value;
use crate::redis::server::{Flavor, ServerBinary, VersionCheck};
use crate::redis::{ConnectOptions, Connection};
use crate::restore::journal::{SavingDump, Step, UnkeptDump, WorkDir};
use crate::service::Service;
use crate::signals::Held;
use crate::storage;
use crate::stored::Stored;
use crate::units::{self, human_size};
use log::{info, warn};
use private_redis::PrivateRedis;
use rollback::{sync_both, wait_until_ready, Server};
use rustix::fs::{self as rfs, Mode, OFlags};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

pub struct Request {
    pub target: Target,
    pub keep_previous: bool,
    /// The operator's word that a format-1 backup may be restored.
    pub allow_format_1: bool,
}

/// What was restored, for the report.
pub struct Restored {
    /// The backup ID, or the path given with --from-file.
    pub name: String,
    pub raw_size: u64,
    pub keys: BTreeMap<String, u64>,
    pub took: std::time::Duration,
    pub previous: Option<String>,
}

/// Everything the steps after staging need, gathered once.
struct Plan<'a> {
    config: &'a Config,
    conf: &'a RedisConf,
    /// The target's own server binary.
    binary: &'a ServerBinary,
    connect: &'a ConnectOptions,
    files: &'a DataFiles,
    data: &'a DataDir,
    service: &'a Service,
    was_active: bool,
    /// What the running server does with its data, by its live settings.
    keeps: Keeps,
}

/// Whether the running server writes its data to disk, by its live `save`
/// and `appendonly` (CONFIG SET may have changed them since redis.conf).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keeps {
    /// Not running (or nothing could be asked): nothing of it to keep.
    Nothing,
    /// Save rules: it saves as it is stopped, and may at any time.
    OnDisk,
    /// `save ""` and `appendonly yes`: its AOF holds everything, and it
    /// writes no RDB as it stops.
    AofOnly,
    /// `save ""` and `appendonly no`: stopped, its data is gone.
    InMemoryOnly,
}

pub fn run(config: &Config, request: Request) -> Result<Restored> {
    let started = Instant::now();
    let _lock = lock_host(&config.lock_file)?;
    let key = crypto::load_key_file(&config.key_file)?;
    let conf = redis_conf::load(&config.redis_conf)?;
    let connect = instance::connect_options(config, &conf, config.redis_timeout)?;
    let service = Service::new(&config.service, config.save_timeout);
    // Asked of the binary itself: the server may be stopped.
    let binary = ServerBinary::ask(&config.redis_server)?;

    let (files, data, keeps) = files_to_restore(&service, &connect, &conf)?;
    let server = Server {
        files: &files,
        data: &data,
        service: &service,
        connect: &connect,
        wait: config.save_timeout,
    };
    {
        let held = Held::during("an interrupted restore was finished");
        rollback::recover_interrupted(&server)?;
        if let Some(signal) = held.arrived() {
            return Err(Error::other(format!(
                "stopped by signal {signal}: the interrupted restore was finished first, and nothing else was done"
            )));
        }
    }
    let was_active = service.is_active()?;
    refuse_a_replica(&conf, &connect, &data, was_active)?;

    // One storage session for the record and the object.
    let input = match &request.target {
        Target::Id(id) => Input::Stored(Box::new(Stored::open(
            &*storage::open(config)?,
            id,
            &key,
            request.allow_format_1,
        )?)),
        Target::File(path) => Input::Stored(Box::new(Stored::from_file(
            path,
            &key,
            request.allow_format_1,
        )?)),
        Target::At { micros, instance } => {
            let storage = storage::open(config)?;
            let instance = instance.as_deref().unwrap_or(&config.instance);
            let window = archive::windows::holding(&*storage, &key, instance, *micros)?;
            // Replayed while Redis keeps running, like any staging.
            let replayed = archive::replay::replay(
                &*storage,
                &key,
                &binary,
                &window,
                *micros,
                config.save_timeout,
            )?;
            Input::Replayed {
                name: format!("instance {instance} as at {}", units::utc_millis(*micros)),
                replayed,
            }
        }
    };
    let (record, name) = match &input {
        Input::Stored(stored) => (stored.record().cloned(), stored.name().to_string()),
        Input::Replayed { name, .. } => (None, name.clone()),
    };
    match (&record, &input) {
        (Some(record), _) => refuse_databases_it_lacks(databases_of(record), &conf)?,
        (None, Input::Replayed { replayed, .. }) => {
            refuse_databases_it_lacks(replayed.databases.iter().map(|&db| u64::from(db)), &conf)?
        }
        (None, Input::Stored(_)) => {}
    }
    let plan = Plan {
        config,
        conf: &conf,
        binary: &binary,
        connect: &connect,
        files: &files,
        data: &data,
        service: &service,
        was_active,
        keeps,
    };
    let (_, stamp) = units::utc_timestamps(SystemTime::now());
    let mut work = WorkDir::create(&data, &stamp)?;
    if !request.keep_previous {
        // What a later run finishing this one off may then remove.
        work.note_previous_not_kept()?;
    }
    // The dump about to be replaced is cached for nothing now. Its pages go
    // before the new RDB is staged, so the restore holds the page cache of
    // one RDB, not two; and on a guest that gives free memory back to its
    // host, staging writes into the pages just freed instead of fresh ones
    // (vendor-notes/PERFORMANCE.md: 0.85 s instead of 1.45 s).
    data.forget_cached(&files.dbfilename);
    // From here to the end a signal is held: while staging, it stops the
    // staging where it is (the staged copy, as large as the dataset, would
    // stay in the data dir until the next restore); from the save before
    // the stop on, see below.
    let held = Held::during("the restore was under way");
    let staging = Instant::now();
    let staged = stage(&plan, input, &key, &work).and_then(|summary| {
        let loaded = match (plan.files.appendonly, summary.by_this_server) {
            (true, _) => rebuild_aof(&plan, &work),
            (false, false) => load_privately(&plan, &work),
            (false, true) => return prove_the_config_starts(&plan, &work).map(|()| summary),
        };
        loaded.map_err(|e| cannot_load(&plan, &summary, e))?;
        Ok(summary)
    });
    let summary = match (staged, held.arrived()) {
        (Ok(summary), None) => summary,
        (staged, signal) => {
            // Redis was never touched; drop what we staged.
            let _ = work.remove(&data);
            return Err(match signal {
                Some(signal) => Error::other(format!(
                    "stopped by signal {signal} while the restore was staged: what was staged is removed, and Redis was not touched"
                )),
                None => staged.err().expect("a failed staging"),
            });
        }
    };
    work.record(Step::Staged)?;
    info!(
        "staged and verified {name}: {} RDB version {} in {}s",
        human_size(summary.raw_size),
        summary.rdb.version,
        units::seconds(staging.elapsed(), 3)
    );

    // From the save before the stop until Redis runs again, on the restored
    // data or (rolled back) its own, and the work folder is gone or kept. A
    // signal during the save ends the run once it is over, Redis untouched.
    let made = match save_before_the_stop(&plan, &work, summary.raw_size) {
        Ok(made) => made,
        Err(e) => {
            let _ = work.remove(&data);
            // (A server that keeps nothing on disk does not refuse writes
            // for a failed save, and a dump of it would be loaded again.)
            if e.exit_code() == 3 && plan.keeps != Keeps::InMemoryOnly && the_save_failed(&plan) {
                save_again_once_room_is_back(&plan);
            }
            return Err(e);
        }
    };
    if let Some(made) = made {
        if let Err(e) = work.note_unkept_dump(UnkeptDump::Made, made) {
            remove_the_dump_made(&plan, Some(made));
            let _ = work.remove(&data);
            return Err(e);
        }
    }
    if let Some(signal) = held.arrived() {
        remove_the_dump_made(&plan, made);
        let _ = work.remove(&data);
        return Err(Error::other(format!(
            "stopped by signal {signal} as Redis saved before the stop: Redis and its data are as they were"
        )));
    }
    match swap_in(&plan, &mut work, record.as_ref()) {
        Ok((keys, placed)) => {
            // Before "done": a run killed after it has nothing left to do.
            if let Some(placed) = placed {
                leave_no_dump(&files, &data, placed);
            }
            work.record(Step::Done)?;
            let previous = finish(work, &data, request.keep_previous);
            let took = started.elapsed();
            info!("restored {name} in {}s", units::seconds(took, 1));
            Ok(Restored {
                name,
                raw_size: summary.raw_size,
                keys,
                took,
                previous,
            })
        }
        Err(cause) => {
            // Once Redis runs on its own data again, the dump made before
            // the stop (noted in the work folder) goes, before "done".
            Err(rollback::roll_back(&server, work, was_active, cause))
        }
    }
}

/// The dump `save_before_the_stop` had a Redis that keeps nothing on disk
/// write, for a restore that did not go on: left, Redis's next start would
/// load it (keys deleted since back), as a backup's would.
fn remove_the_dump_made(plan: &Plan, made: Option<FileIdentity>) {
    if let Some(made) = made {
        plan.data.remove_unkept_dump(
            &plan.files.dbfilename,
            made,
            "Redis keeps nothing on disk, and saved it only for the restore, which did not go on",
        );
    }
}

/// A backup with keys in a database the target does not serve (keys in
/// db1, `databases 1`): Redis refuses to start on it, and that would be
/// found only after the stop. Refused before anything is touched, exit 5,
/// by what the server started after the stop will serve: redis.conf's
/// `databases` (not the running server's: it cannot change at run time,
/// and raising it in redis.conf is the mend).
fn refuse_databases_it_lacks(needs: impl Iterator<Item = u64>, conf: &RedisConf) -> Result<()> {
    match needs.max() {
        Some(db) if db >= conf.databases => Err(Error::integrity(format!(
            "the backup has keys in db{db}, but {} makes Redis serve {} databases (`databases`); Redis was not touched: raise it and run the restore again",
            conf.source.display(),
            conf.databases
        ))),
        _ => Ok(()),
    }
}

/// The databases a backup holds keys in, by its record: the counts from
/// before the save too, as a database emptied while Redis saved is in the
/// RDB, but not in the counts from after.
fn databases_of(record: &Record) -> impl Iterator<Item = u64> + '_ {
    record
        .keys
        .keys()
        .chain(record.keys_before.keys())
        .filter_map(|db| db.strip_prefix("db")?.parse::<u64>().ok())
}

/// A replica's data is its primary's: at its next sync, as it starts again,
/// it replaces whatever was restored, seconds after the restore said it
/// worked (and without `--keep-previous`, the previous data is gone too).
/// Refused, exit 2, before anything is touched, whether redis.conf makes
/// it one or it is one now (Sentinel makes a server one at run time, and
/// writes that back).
fn refuse_a_replica(
    conf: &RedisConf,
    connect: &ConnectOptions,
    data: &DataDir,
    was_active: bool,
) -> Result<()> {
    let promote = "promote it first (REPLICAOF NO ONE, and no replicaof in its config), or restore on the primary";
    if let Some(primary) = &conf.replicaof {
        return Err(Error::usage(format!(
            "{} makes Redis a replica of {primary}: its primary would replace the restored data as it starts; {promote}",
            conf.source.display()
        )));
    }
    if !was_active {
        if conf.cluster_enabled && a_cluster_replica_by_its_nodes_file(conf, data) {
            return Err(Error::usage(format!(
                "Redis is a cluster node, and its {} says it is a replica (myself,slave): its primary would replace the restored data as it starts; restore on the node that is its primary now (CLUSTER FAILOVER makes this one it first)",
                data.join(&conf.cluster_config_file).display()
            )));
        }
        return Ok(());
    }
    let mut redis = Connection::connect(connect)?;
    let replication = redis.info("replication")?;
    if replication.get("role").map(String::as_str) == Some("slave") {
        let field = |name: &str| replication.get(name).map_or("?", String::as_str);
        return Err(Error::usage(format!(
            "Redis is a replica of {}:{} (role:slave): its primary would replace the restored data at its next sync; {promote}",
            field("master_host"),
            field("master_port")
        )));
    }
    // Sentinels say hello to the servers they watch on this channel. An
    // outage longer than their down-after-milliseconds (a restore's, as
    // the data loads) has them fail it over, and the restored server, back,
    // is made a replica, its data replaced (a restore of a stopped primary
    // that was failed over meanwhile cannot be told: README).
    let hello: &[&[u8]] = &[b"NUMSUB", b"__sentinel__:hello"];
    if let Ok(Value::Array(Some(reply))) = redis.call_raw("PUBSUB", hello) {
        if let Some(Value::Integer(watching @ 1..)) = reply.get(1) {
            return Err(Error::usage(format!(
                "Sentinel watches this Redis ({watching} subscribed to __sentinel__:hello): stopped for the restore, it may be failed over and made a replica whose primary replaces the restored data; take it out of Sentinel first (SENTINEL REMOVE on each Sentinel), restore, then have them monitor it again"
            )));
        }
    }
    Ok(())
}

/// Whether a stopped cluster node's nodes file (the account's, in the
/// data dir, opened as its dump is: no link followed) names it a replica.
/// Only read to refuse; one that cannot be read says nothing, and the
/// restored server's role is checked again once it runs
/// (`check_restored`).
fn a_cluster_replica_by_its_nodes_file(conf: &RedisConf, data: &DataDir) -> bool {
    use std::io::Read;
    if data_dir::plain_name("cluster-config-file", &conf.cluster_config_file).is_err() {
        return false;
    }
    let Ok(file) = data.open_dump(&conf.cluster_config_file) else {
        return false;
    };
    let mut text = String::new();
    if file.take(4 << 20).read_to_string(&mut text).is_err() {
        return false;
    }
    text.lines().any(|line| {
        let flags: Vec<&str> = line.split(' ').nth(2).unwrap_or("").split(',').collect();
        flags.contains(&"myself") && flags.contains(&"slave")
    })
}

/// Where the restored files go: where redis.conf says, because that is what
/// the restarted server reads. A running server whose live settings differ
/// (a CONFIG SET never written back) would restart elsewhere or with another
/// persistence: refused before anything is touched, as are a relative or
/// missing data dir, data file names that are not plain names in it, a data
/// dir that redis.conf's writer has no say over, and an AOF instance whose
/// CONFIG is disabled.
fn files_to_restore(
    service: &Service,
    connect: &ConnectOptions,
    conf: &RedisConf,
) -> Result<(DataFiles, DataDir, Keeps)> {
    let files = DataFiles::from_conf(conf);
    let source = conf.source.display();
    if files.dir.is_relative() {
        return Err(Error::usage(format!(
            "{source} gives the relative dir {:?}, which depends on where Redis was started; set an absolute dir",
            files.dir
        )));
    }
    if !files.dir.is_dir() {
        return Err(Error::usage(format!(
            "Redis's data dir {} does not exist; create it owned by Redis's user (install -d -o redis -g redis -m 750 {})",
            files.dir.display(),
            files.dir.display()
        )));
    }
    data_dir::plain_name("dbfilename", &files.dbfilename)?;
    data_dir::plain_name("appenddirname", &files.appenddirname)?;
    data_dir::plain_name("appendfilename", &files.appendfilename)?;
    let data = DataDir::open(&files.dir)?;
    conf.check_authority(data.path(), data.owner())?;
    data.require_own_group()?;
    if files.appendonly
        && conf
            .renamed_commands
            .get("config")
            .is_some_and(|n| n.is_empty())
    {
        return Err(Error::usage(format!(
            "{source} has appendonly yes and disables CONFIG (rename-command CONFIG \"\"); rebuilding the AOF needs CONFIG SET appendonly yes"
        )));
    }
    let mut keeps = Keeps::Nothing;
    let running = unit_state(service, connect)?;
    if running == UnitState::Active {
        let mut redis = Connection::connect(connect)?;
        let live = DataFiles::live(&mut redis, conf)?;
        check_agrees(&files, &live, conf)?;
        keeps = match (live.appendonly, live.save_rules.as_deref()) {
            (false, Some("")) => Keeps::InMemoryOnly,
            (true, Some("")) => Keeps::AofOnly,
            _ => Keeps::OnDisk,
        };
    } else if running == UnitState::AnswersWhileNotActive {
        // Taken for stopped, its files would be moved from under it, and
        // its next save would replace the restore.
        return Err(Error::usage(format!(
            "{} is not active, but a server has answered at {} for {}s: the unit is still starting (Redis loading) or stopping, or Redis runs outside it (the `service` setting names another, or it was started by hand); wait until `systemctl is-active` says active or inactive (a unit in a crash loop: systemctl stop it) and run the restore again, or set `service` to the unit that runs it (nothing was touched)",
            service.unit(),
            connect.endpoint,
            (UNIT_SETTLES + SILENT_FOR).as_secs()
        )));
    } else {
        info!(
            "{} is not running; the data dir is {}",
            service.unit(),
            files.dir.display()
        );
    }
    Ok((files, data, keeps))
}

/// How long a unit that is not active while a server answers is watched
/// before that is refused.
const UNIT_SETTLES: Duration = Duration::from_secs(10);

/// How long a unit not active must stay silent to be taken for stopped:
/// longer than systemd's pause between a stop and the next start
/// (`RestartSec`, 100 ms by default; a `systemctl restart`) and than a
/// starting Redis takes to bind its port.
const SILENT_FOR: Duration = Duration::from_secs(2);

#[derive(PartialEq)]
enum UnitState {
    Active,
    Stopped,
    AnswersWhileNotActive,
}

/// Whether the unit runs the server, looked at until the unit and the port
/// agree. A unit in a crash loop, or restarting, is activating or
/// deactivating (not active) while its server loads or saves, and answers:
/// taken at one look for a server outside the unit, the restore was
/// refused. Taken for stopped as soon as nothing answered, the moment
/// between a stop and the next start passed for a stopped unit, and the
/// server back a moment later, serving, was stopped as one not running (no
/// save first, and left down by a rollback: the review of 2026-12-03). So
/// a unit is stopped only once it has been silent, and not active, for
/// `SILENT_FOR`; active as soon as it is; and a server answering with its
/// unit not active for `UNIT_SETTLES` is refused (a crash loop that goes
/// on: the operator stops it).
fn unit_state(service: &Service, connect: &ConnectOptions) -> Result<UnitState> {
    let started = Instant::now();
    let mut silent_since = None;
    loop {
        if service.is_active()? {
            return Ok(UnitState::Active);
        }
        let now = Instant::now();
        if Connection::something_listens(connect) {
            silent_since = None;
        } else if now - *silent_since.get_or_insert(now) >= SILENT_FOR {
            return Ok(UnitState::Stopped);
        }
        if now - started >= UNIT_SETTLES + SILENT_FOR {
            return Ok(UnitState::AnswersWhileNotActive);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_agrees(files: &DataFiles, live: &DataFiles, conf: &RedisConf) -> Result<()> {
    let canonical = |dir: &Path| fs::canonicalize(dir).ok();
    let same_dir = canonical(&files.dir).is_some() && canonical(&files.dir) == canonical(&live.dir);
    let differences = [
        (
            "dir",
            !same_dir,
            live.dir.display().to_string(),
            files.dir.display().to_string(),
        ),
        (
            "dbfilename",
            live.dbfilename != files.dbfilename,
            live.dbfilename.clone(),
            files.dbfilename.clone(),
        ),
        (
            "appendonly",
            live.appendonly != files.appendonly,
            yes_no(live.appendonly),
            yes_no(files.appendonly),
        ),
        (
            "appenddirname",
            live.appenddirname != files.appenddirname,
            live.appenddirname.clone(),
            files.appenddirname.clone(),
        ),
        (
            "appendfilename",
            live.appendfilename != files.appendfilename,
            live.appendfilename.clone(),
            files.appendfilename.clone(),
        ),
    ];
    match differences.into_iter().find(|(_, differs, _, _)| *differs) {
        None => Ok(()),
        Some((name, _, running, written)) => Err(Error::usage(format!(
            "Redis runs with {name} {running}, but {} says {written}, and that is what the restarted server will use; make them agree (CONFIG REWRITE, or edit the file) and run the restore again",
            conf.source.display()
        ))),
    }
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.into()
}

/// What restore puts in place: a stored backup, or the state of an
/// instance at a moment, replayed from its archive.
enum Input {
    Stored(Box<Stored>),
    Replayed {
        name: String,
        replayed: archive::replay::Replayed,
    },
}

/// What staging proved.
struct StagedRdb {
    raw_size: u64,
    rdb: RdbInfo,
    /// Who wrote it, as the backup says ("Redis 8.2.3"); a format-1 backup
    /// does not say.
    written_by: Option<String>,
    /// Whether this host's server loads all of it by its own word: an older
    /// release of its own flavor, or itself, wrote it (a replay's server
    /// is this host's). An RDB version it takes can still hold a type it
    /// lacks when a newer release or the other flavor wrote it (Redis 8.2's
    /// vector sets in 8.0, of the same RDB version).
    by_this_server: bool,
}

/// Decode (or copy) into the work folder, fsync, and prove it: for a backup
/// every MAC, SHA-256 against the record, RDB magic and CRC64; for a replay
/// the RDB's own checks; for both an RDB version this host can load.
fn stage(plan: &Plan, input: Input, key: &MasterKey, work: &WorkDir) -> Result<StagedRdb> {
    let needed = match &input {
        Input::Stored(stored) => stored.record().map(|r| r.raw_size),
        Input::Replayed { replayed, .. } => Some(replayed.rdb_size),
    };
    if let Some(size) = needed {
        check_room(plan, size, Written::Nothing)?;
    }
    let staged = work.staged_path();
    let file = WriteBehind::new(work.create_staged()?, Cache::Keep);
    let mut out = BufWriter::with_capacity(
        1 << 20,
        StagingFile {
            file,
            full: false,
            data: plan.data.fd(),
            room: Room::keeping(redis_saves(plan)),
        },
    );
    // A replay's RDB was checked as it was saved, from a descriptor only
    // root holds: copying it whole is all that is left to prove.
    let mut replayed_rdb = None;
    let written = match input {
        Input::Stored(stored) => stored
            .decode_into(&mut out, key, plan.config.threads)
            .map(Some),
        Input::Replayed { mut replayed, .. } => {
            let size = replayed.rdb_size;
            // Saved by this host's own server, which loaded the base and
            // applied the stream.
            replayed_rdb = Some(StagedRdb {
                raw_size: size,
                rdb: replayed.rdb_info,
                written_by: None,
                by_this_server: true,
            });
            match io::copy(replayed.rdb(), &mut out) {
                Ok(copied) if copied == size => Ok(None),
                Ok(copied) => Err(Error::other(format!(
                    "copied {copied} bytes of the replayed RDB, which has {size}"
                ))),
                Err(e) => Err(Error::other(format!("copying the replayed RDB: {e}"))),
            }
        }
    };
    let flushed = written.and_then(|summary| {
        out.flush()
            .and_then(|()| out.get_mut().drain())
            .and_then(|()| out.get_ref().file.get_ref().sync_all())
            .map(|()| summary)
            .map_err(|e| Error::other(format!("writing {}: {e}", staged.display())))
    });
    if out.get_ref().full {
        return Err(Error::storage(format!(
            "not enough free space in {} to stage the restore{} and keep {} free for Redis's own save and the host (1% of the disk); free some space there and run the restore again (Redis was not touched)",
            work.path().parent().unwrap_or(work.path()).display(),
            needed.map(|n| format!(" ({} needed)", human_size(n))).unwrap_or_default(),
            human_size(redis_saves(plan))
        )));
    }
    let check = VersionCheck::from_conf(plan.conf.rdb_version_check.as_deref());
    let Some(summary) = flushed? else {
        let staged = replayed_rdb.expect("a replay staged");
        plan.binary.check_loads(&staged.rdb, check, None)?;
        return Ok(staged);
    };
    let writer = summary
        .header
        .identity
        .as_ref()
        .map(|i| (Flavor::from_name(&i.server_name), &i.server_version));
    let by_this_server = writer.is_some_and(|(f, v)| plan.binary.loads_all_of(f, v));
    let written_by = writer.map(|(flavor, version)| format!("{} {version}", flavor.name()));
    // A backup read with no record (`--from-file` of the object alone)
    // said its size only now: what must still fit beside it is checked.
    if needed.is_none() {
        check_room(plan, summary.raw_size, Written::Rdb)?;
    }
    plan.binary
        .check_loads(&summary.rdb, check, written_by.as_deref())?;
    // Say which backup this is, as its object has proven, before Redis is
    // touched: above all for a file copied by hand.
    match &summary.header.identity {
        Some(i) => {
            log::info!(
                "restoring backup {} of instance {}, made {} from {} {} ({})",
                i.backup_id,
                i.instance,
                i.created_at,
                i.server_name,
                i.server_version,
                i.source
            );
            if i.instance != plan.config.instance {
                log::warn!(
                    "backup {} was taken of instance {}, and this host's instance is {}",
                    i.backup_id,
                    i.instance,
                    plan.config.instance
                );
            }
        }
        None => log::warn!("restoring a format-1 backup: which backup it is cannot be proven"),
    }
    Ok(StagedRdb {
        raw_size: summary.raw_size,
        rdb: summary.rdb,
        written_by,
        by_this_server,
    })
}

/// Staging (and with AOF on, the rebuilt AOF, about the RDB's size again)
/// must leave the running server room to save its own data: it may save
/// at any time, and saves as it is stopped, writing about its last dump's
/// size. A stop whose save fails does not end (`Error trying to save the
/// DB, can't exit`) until systemd kills the server, with whatever it had
/// not saved; and a server whose saves fail refuses writes. So the staged
/// restore must fit beside that, or Redis is not touched: exit 4.
/// `written`: what of the restore is on the disk already; the rest must fit.
fn check_room(plan: &Plan, staged: u64, written: Written) -> Result<()> {
    let aof = match (plan.files.appendonly, written) {
        (true, Written::Nothing | Written::Rdb) => staged,
        _ => 0,
    };
    let redis_saves = redis_saves(plan);
    let staged_already = written != Written::Nothing;
    let still_to_write = if staged_already { 0 } else { staged };
    // What an account other than root may use (Redis's own limit), and
    // the host's share of it, which nothing of ours takes.
    let (available, share) = room::free_space(plan.data.fd()).map_err(|e| {
        Error::other(format!(
            "cannot read the free space of {}: {e}",
            plan.data.path().display()
        ))
    })?;
    let needed = still_to_write
        .saturating_add(aof)
        .saturating_add(redis_saves)
        .saturating_add(share);
    if available >= needed {
        return Ok(());
    }
    let mut parts = match staged_already {
        false => format!("{} for the restored RDB", human_size(staged)),
        true => format!("beside the restored RDB of {}", human_size(staged)),
    };
    if aof > 0 {
        parts.push_str(&format!(", {} for its AOF", human_size(aof)));
    }
    if redis_saves > 0 {
        parts.push_str(&format!(
            ", {} for Redis's own save as it runs and stops",
            human_size(redis_saves)
        ));
    }
    parts.push_str(&format!(
        ", {} left free for the host (1% of the disk)",
        human_size(share)
    ));
    Err(Error::storage(format!(
        "not enough free space in {} for the restore: it needs {} ({parts}), and {} is free; free some space there and run the restore again (Redis was not touched)",
        plan.data.path().display(),
        human_size(needed),
        human_size(available)
    )))
}

/// What of the restore is on the data dir's disk (`check_room`): the
/// staged RDB (of `staged` bytes), and with AOF on the AOF rebuilt from it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    Nothing,
    Rdb,
    RdbAndAof,
}

/// What the running server writes when it saves: about its last dump's
/// size (with none there, nothing tells until `save_before_the_stop` has
/// it save). What it appends as it runs is replaced by the restore, and a
/// rewrite that fails for want of room loses nothing.
fn redis_saves(plan: &Plan) -> u64 {
    match plan.keeps {
        Keeps::Nothing | Keeps::AofOnly => 0,
        Keeps::OnDisk | Keeps::InMemoryOnly => plan.data.file_size(&plan.files.dbfilename),
    }
}

/// The staging file, noting when the disk ran full so that the error can say
/// so plainly instead of quoting an errno from deep in the pipeline. It
/// stops short of the room Redis's own save needs: a backup read with no
/// record (`--from-file` of the object alone) says its size only at its
/// end, and writing on until the disk is full fails the live server's
/// writes (with `appendfsync always`, it exits).
struct StagingFile<'a> {
    file: WriteBehind,
    full: bool,
    data: BorrowedFd<'a>,
    room: Room,
}

impl Write for StagingFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if crate::signals::pending() {
            return Err(io::Error::other("stopped by a signal"));
        }
        if let Err(short) = self.room.check(self.data, buf.len() as u64)? {
            self.full = true;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "{} free, {} of it kept for Redis's own save",
                    human_size(short.available),
                    human_size(short.reserve)
                ),
            ));
        }
        let written = self
            .file
            .write(buf)
            .inspect_err(|e| self.full |= is_disk_full(e))?;
        self.room.wrote(written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl StagingFile<'_> {
    /// Wait for the write-behind; a full disk may first show there.
    fn drain(&mut self) -> io::Result<()> {
        self.file
            .drain()
            .inspect_err(|e| self.full |= is_disk_full(e))
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Once the restore is staged and proven, a running server that will save
/// as it stops saves now, unless its dump is there and holds every change,
/// and the room for that save is checked again beside the staged restore.
/// Only a save says how large it is: with no dump yet, or one far older
/// than the data, `check_room` counted too little; staging took the room,
/// the save at the stop failed, and the server was killed with what it
/// held. A server that keeps its data only in memory (`save ""`,
/// `appendonly no`) must save in any case: it loses its data as it is
/// stopped, and there would be nothing to put back if the restore failed,
/// nothing for `--keep-previous` to keep. (A backup of such a server
/// removes the dump its save made, and leaves the count of changes at 0.)
/// Not before staging: the dump may be the last good copy an operator
/// falls back on if the restore is refused. A save that fails is exit 3,
/// Redis untouched. The dump made for a server that keeps nothing on disk,
/// if one was: the caller removes it if the restore goes no further.
fn save_before_the_stop(
    plan: &Plan,
    work: &WorkDir,
    restored_size: u64,
) -> Result<Option<FileIdentity>> {
    if !plan.was_active || !matches!(plan.keeps, Keeps::OnDisk | Keeps::InMemoryOnly) {
        return Ok(None);
    }
    let mut redis = Connection::connect(plan.connect)?;
    let persistence = redis.info("persistence")?;
    let changes = persistence.get("rdb_changes_since_last_save");
    if changes.map(String::as_str) == Some("0") && plan.data.file_size(&plan.files.dbfilename) > 0 {
        return Ok(None);
    }
    let only_in_memory = plan.keeps == Keeps::InMemoryOnly;
    if redis.disabled("BGSAVE") && !only_in_memory {
        log::warn!("BGSAVE is disabled by rename-command: the room Redis's own save at the stop needs was taken to be its last dump's size, which may be too little");
        return Ok(None);
    }
    let why = match only_in_memory {
        true => "Redis keeps its data only in memory (save \"\" and appendonly no)",
        false => "Redis saves as it stops, and the restore must leave room for that save",
    };
    if only_in_memory {
        // Killed during the save (Redis ends it alone), no made-dump is
        // noted: this lets the next run tell the dump it made.
        let run_id = redis.info("server")?.get("run_id").cloned();
        let saves = persistence.get("rdb_saves").and_then(|n| n.parse().ok());
        if let (Some(run_id), Some(saves)) = (run_id, saves) {
            let before = plan.data.identity_of(&plan.files.dbfilename).ok();
            work.note_saving_dump(&SavingDump {
                run_id,
                saves,
                before,
            })?;
        }
    }
    info!("{why}: saving it before the stop");
    redis.snapshot(plan.config.save_timeout).map_err(|e| {
        // Room is the advice only where the save itself failed: a server
        // busy with a script, or not answering, is another matter.
        let advice = match the_save_failed(plan) {
            true => format!(
                "make room in {} (or have it SAVE), and run the restore again",
                plan.data.path().display()
            ),
            false => "run the restore again once it can save".to_string(),
        };
        Error::redis(format!(
            "{why}, and saving it before the stop failed: {}; so Redis was not touched: {advice}",
            e.message()
        ))
    })?;
    let made = only_in_memory
        .then(|| plan.data.identity_of(&plan.files.dbfilename).ok())
        .flatten();
    check_room(plan, restored_size, Written::RdbAndAof).inspect_err(|_| {
        remove_the_dump_made(plan, made);
    })?;
    Ok(made)
}

/// Whether Redis says its last save failed (`rdb_last_bgsave_status:err`),
/// as against refusing or never answering the request for one.
fn the_save_failed(plan: &Plan) -> bool {
    Connection::connect(plan.connect)
        .and_then(|mut redis| redis.info("persistence"))
        .is_ok_and(|p| p.get("rdb_last_bgsave_status").map(String::as_str) == Some("err"))
}

/// A save that failed for want of the room the staged restore took leaves
/// the server refusing writes (`stop-writes-on-bgsave-error`) until a save
/// works, which its own rules may not try for an hour. With that room
/// given back, it is asked once more; whatever the outcome, it is said.
fn save_again_once_room_is_back(plan: &Plan) {
    let saved = Connection::connect(plan.connect)
        .and_then(|mut redis| redis.snapshot(plan.config.save_timeout));
    match saved {
        Ok(_) => info!("with the staged restore removed, Redis saved again and takes writes"),
        Err(e) => log::warn!("Redis could not save even with the staged restore removed ({}): it may refuse writes until a save works", e.message()),
    }
}

/// A Redis that keeps nothing on disk (`save ""`, `appendonly no`, as it
/// runs now) runs on the restored data; the dump it started on, left
/// there, would be loaded again at each later start: keys deleted since
/// back, keys written since lost for stale ones. It goes, as the dump a
/// backup of such a server makes does; only the file placed (`placed`),
/// not one the server or an operator saved since.
fn leave_no_dump(files: &DataFiles, data: &DataDir, placed: FileIdentity) {
    data.remove_unkept_dump(
        &files.dbfilename,
        placed,
        "Redis started on it and keeps nothing on disk",
    );
}

/// Steps 3 to 7: stop, move aside, place, (rebuild the AOF,) start, check.
/// The key counts, and the dump placed if the server that runs on it
/// keeps nothing on disk (`leave_no_dump`).
fn swap_in(
    plan: &Plan,
    work: &mut WorkDir,
    record: Option<&Record>,
) -> Result<(BTreeMap<String, u64>, Option<FileIdentity>)> {
    work.record(Step::Stopping {
        was_active: plan.was_active,
    })?;
    // The outage: what the staged design keeps short, measured for the
    // operator (and `make bench`, which sets it beside Redis's own restart).
    let outage = Instant::now();
    // A unit not active is stopped too: one in a crash loop ("activating
    // (auto-restart)" is not active) would start Redis, empty, between the
    // move aside and the placing; a stop job cancels its restarts. A unit
    // systemd does not know is the start's to refuse.
    match plan.was_active {
        true => plan.service.stop()?,
        false => drop(plan.service.stop_unless_refused()?),
    }
    move_aside(plan.files, plan.data, work)?;
    work.record(Step::AsideDone)?;
    let placed = place(plan.files, plan.data, work)?;
    if plan.files.appendonly {
        place_aof(plan, work)?;
    }
    work.record(Step::Starting)?;
    plan.service.start()?;
    let (keys, keeps_nothing) = check_restored(plan, record)?;
    info!(
        "{} was out of service for {}s (stop, place, start, load)",
        plan.service.unit(),
        units::seconds(outage.elapsed(), 3)
    );
    if keeps_nothing {
        work.note_unkept_dump(UnkeptDump::Placed, placed)?;
    }
    work.record(Step::Placed)?;
    Ok((keys, Some(placed).filter(|_| keeps_nothing)))
}

/// Each data file, whatever it is (a symlink planted there is moved as a
/// link), goes into `previous/`, which only root can reach.
fn move_aside(files: &DataFiles, data: &DataDir, work: &WorkDir) -> Result<()> {
    for name in files.data_names() {
        if !data.has(name) {
            continue;
        }
        let to = work.previous_path().join(name);
        data_dir::move_entry(data.fd(), name, work.previous(), name).map_err(|e| {
            Error::other(format!(
                "cannot move {} aside to {}: {e}",
                data.join(name).display(),
                to.display()
            ))
        })?;
        info!(
            "moved {} aside to {}",
            data.join(name).display(),
            to.display()
        );
    }
    sync_both(data, work.previous(), &work.previous_path())
}

/// The staged RDB becomes the dump: owner and group of the data dir, 0660,
/// set on the file we wrote (by descriptor), then renamed in without
/// replacing anything that appeared there meanwhile. Which file it is.
fn place(files: &DataFiles, data: &DataDir, work: &WorkDir) -> Result<FileIdentity> {
    let staged = work.staged_path();
    let target = data.join(&files.dbfilename);
    let failed =
        |what: &str, e: io::Error| Error::other(format!("cannot {what} {}: {e}", staged.display()));
    let owner = data.owner();
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = rfs::openat(work.fd(), work.staged_name(), flags, Mode::empty())
        .map(std::fs::File::from)
        .map_err(|e| failed("open", e.into()))?;
    let placed = FileIdentity::of(&file).map_err(|e| failed("stat", e))?;
    rfs::fchown(
        &file,
        Some(rfs::Uid::from_raw(owner.uid)),
        Some(rfs::Gid::from_raw(owner.gid)),
    )
    .and_then(|()| rfs::fchmod(&file, Mode::from_raw_mode(0o660)))
    .map_err(|e| failed("hand to Redis's user", e.into()))?;
    data_dir::move_entry(work.fd(), work.staged_name(), data.fd(), &files.dbfilename)
        .map_err(|e| failed("move into place", e))?;
    data.sync()
        .map_err(|e| failed("sync the data dir for", e))?;
    info!("placed the restored RDB as {}", target.display());
    Ok(placed)
}

/// With `appendonly yes`, Redis 7 ignores dump.rdb when there is no AOF and
/// would start empty, so the AOF is built first, while Redis still runs, in
/// the work folder's `aof/`, where no client can write, by a server running
/// as the data dir's owner: what it writes is that account's already.
fn rebuild_aof(plan: &Plan, work: &WorkDir) -> Result<()> {
    let built = aof_build_files(plan, work);
    let rebuilt = on_private_server(plan, work, "rebuilds the AOF", |server, conn| {
        server.build_aof(conn, &built, plan.config.save_timeout)
    })
    .and_then(|()| {
        private_redis::check_aof(plan.binary, &built, plan.data, plan.config.save_timeout)
    });
    // Nothing of the account's needs a way into aof/ any more; whatever
    // happens next (a rollback keeps the folder), it is root's alone.
    work.close_aof_build()
        .map_err(|e| Error::other(format!("cannot close the work folder again: {e}")))?;
    rebuilt
}

/// Have this host's server load the staged RDB, as `rebuild_aof` does,
/// and stop it: proven before Redis is stopped. It costs what the rebuild
/// costs, memory for the dataset a second time, and is only done for a
/// backup that a newer release or the other flavor wrote.
fn load_privately(plan: &Plan, work: &WorkDir) -> Result<()> {
    let loaded = on_private_server(plan, work, "loads the restored RDB first", |_, _| Ok(()));
    work.close_aof_build()
        .map_err(|e| Error::other(format!("cannot close the work folder again: {e}")))?;
    empty_aof_build(plan, work);
    if loaded.is_ok() {
        info!("this host's {} loads the restored RDB", plan.binary.program);
    }
    loaded
}

/// A running Redis is stopped only if its config starts a server: one
/// edited since it started (a directive it now refuses) failed the start
/// after the stop, and the rollback's start too, Redis left down (exit 7;
/// the operator review). The AOF rebuild and the private load prove it on
/// the way; otherwise a private server starts on it with no data (an RDB
/// name that is not there), and is stopped: a fraction of a second.
fn prove_the_config_starts(plan: &Plan, work: &WorkDir) -> Result<()> {
    if !plan.was_active {
        return Ok(());
    }
    work.create_aof_build(&plan.files.dbfilename, plan.data.owner())?;
    let files = DataFiles {
        dbfilename: "redis-backup-no-data.rdb".into(),
        ..aof_build_files(plan, work)
    };
    let started = PrivateRedis::start(
        "starts on redis.conf as it stands",
        plan.binary,
        plan.conf,
        &files,
        plan.data,
        work,
        plan.connect,
        plan.config.save_timeout,
    )
    .and_then(|(server, conn)| server.shut_down(conn, plan.config.save_timeout));
    work.close_aof_build()
        .map_err(|e| Error::other(format!("cannot close the work folder again: {e}")))?;
    empty_aof_build(plan, work);
    // Only a config the server refuses ends the restore: a start that
    // fails for anything else (a relative `aclfile`, which the private
    // server, in another dir, does not find; a cluster bus port in use)
    // says nothing of how Redis will start in its own place.
    match started {
        Err(e @ Error::Usage(_)) => Err(e),
        Err(e) => {
            warn!(
                "could not prove that {} starts a server ({}); going on",
                plan.conf.source.display(),
                e.message()
            );
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Start the private server on the staged RDB in the work folder's `aof/`
/// (handed to the data dir's owner, whom it runs as), once it has loaded
/// have it do `with`, and stop it. The caller closes `aof/` again.
fn on_private_server(
    plan: &Plan,
    work: &WorkDir,
    purpose: &'static str,
    with: impl FnOnce(&mut PrivateRedis, &mut Connection) -> Result<()>,
) -> Result<()> {
    let timeout = plan.config.save_timeout;
    work.create_aof_build(&plan.files.dbfilename, plan.data.owner())?;
    let (mut server, mut conn) = PrivateRedis::start(
        purpose,
        plan.binary,
        plan.conf,
        &aof_build_files(plan, work),
        plan.data,
        work,
        plan.connect,
        timeout,
    )?;
    with(&mut server, &mut conn)?;
    server.shut_down(conn, timeout)
}

/// A private server's refusal of the staged RDB, as a refusal of the
/// backup naming both sides (exit 5).
fn cannot_load(plan: &Plan, staged: &StagedRdb, e: Error) -> Error {
    let Error::Integrity(reason) = e else {
        return e;
    };
    let of = match &staged.written_by {
        Some(by) => format!(" (an RDB of {by})"),
        None => String::new(),
    };
    Error::integrity(format!(
        "this host's {} {} cannot load this backup{of}: {reason}; Redis was not touched: restore it on a server that can",
        plan.binary.program, plan.binary.version
    ))
}

/// The instance's file names, in the work folder's `aof/`.
fn aof_build_files(plan: &Plan, work: &WorkDir) -> DataFiles {
    DataFiles {
        dir: work.aof_build_path(),
        ..plan.files.clone()
    }
}

/// The rebuilt AOF (Redis 7's directory, or the single file of Redis 6)
/// moves from `aof/` into the data dir, by name, as it is: a rename
/// follows no link, and what is in it was the owner's all along.
fn place_aof(plan: &Plan, work: &WorkDir) -> Result<()> {
    let files = plan.files;
    let name = if plan.binary.writes_multipart_aof() {
        &files.appenddirname
    } else {
        &files.appendfilename
    };
    let from = aof_build_files(plan, work).dir.join(name);
    let failed = |e: io::Error| {
        Error::other(format!(
            "cannot move the rebuilt AOF {} into place: {e}",
            from.display()
        ))
    };
    let build = work.aof_build().map_err(failed)?;
    data_dir::move_entry(build.as_fd(), name, plan.data.fd(), name).map_err(failed)?;
    plan.data.sync().map_err(failed)?;
    info!(
        "placed the rebuilt AOF as {}",
        plan.data.join(name).display()
    );
    empty_aof_build(plan, work);
    Ok(())
}

/// Once the private server is done: what is left in `aof/` goes, without
/// following a link. What cannot go now (a tree deeper than any of ours,
/// a folder not of the owner's, the owner's doing) is left and said; the
/// work folder's removal stops at it again, and says so.
fn empty_aof_build(plan: &Plan, work: &WorkDir) {
    if let Err(e) = work.remove_aof_build(plan.data.owner().uid) {
        warn!(
            "could not remove what is left in {}: {e}",
            aof_build_files(plan, work).dir.display()
        );
    }
}

/// The restored server answers, has loaded, and holds what the record says:
/// the same keys per database, less at most those that had a TTL.
/// The key counts, checked, and whether the server, as it runs now (its
/// unit may give it settings redis.conf does not), keeps nothing on disk.
fn check_restored(plan: &Plan, record: Option<&Record>) -> Result<(BTreeMap<String, u64>, bool)> {
    let mut redis = wait_until_ready(plan.connect, plan.config.save_timeout)?;
    // The server must have loaded the file we placed, not one elsewhere.
    let live = DataFiles::live(&mut redis, plan.conf)?;
    check_agrees(plan.files, &live, plan.conf)?;
    // A replica by something redis.conf does not say (a cluster node's
    // nodes.conf, which a failover rewrites): its primary replaces the
    // restored data at its first sync, seconds after the counts below.
    let replication = redis.info("replication")?;
    if replication.get("role").map(String::as_str) == Some("slave") {
        let field = |name: &str| replication.get(name).map_or("?", String::as_str);
        return Err(Error::usage(format!(
            "Redis started as a replica of {}:{} (role:slave; a cluster node's role is in its nodes.conf): its primary would replace the restored data at its first sync; restore on the primary, or promote this one first",
            field("master_host"),
            field("master_port")
        )));
    }
    // Only as the server itself says it: where CONFIG is disabled or not
    // granted, redis.conf stands in, and its unit may give it save rules.
    let said_live = |redis: &mut Connection, name| redis.config_get(name).ok().flatten();
    let keeps_nothing = said_live(&mut redis, "save").as_deref() == Some("")
        && said_live(&mut redis, "appendonly").as_deref() == Some("no");
    let keyspace = redis.keyspace()?;
    let restored = crate::redis::per_db(&keyspace, |count| count.keys);
    // Keys evicted under maxmemory are lost, not expired: the allowance
    // below for keys with a TTL must not cover them. (A cache full by
    // design evicts as the clients that reconnect write: that alone is
    // no failure, only said; their writes are changes, allowed for.)
    let evicted: u64 = redis
        .info("stats")?
        .get("evicted_keys")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if evicted > 0 {
        warn!(
            "the restored server has evicted {evicted} keys under its maxmemory since it started"
        );
    }
    let Some(record) = record else {
        return Ok((restored, keeps_nothing));
    };
    // Clients reconnect and write the moment it is back. Each key a write
    // adds or removes is a change, counted from 0 as the server loads;
    // read after the counts, it covers every write they saw. Not after
    // an AOF of commands (`aof-use-rdb-preamble no`, the AOF we rebuilt
    // is written so): loading it counted each key as a change, and the
    // allowance would cover any count at all.
    let counted_from_load = !plan.files.appendonly || plan.conf.aof_rdb_preamble;
    let changed: u64 = match counted_from_load {
        true => redis
            .info("persistence")?
            .get("rdb_changes_since_last_save")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        false => 0,
    };
    let only_restored = restored.keys().filter(|db| !record.keys.contains_key(*db));
    for db in record.keys.keys().chain(only_restored) {
        let count = |counts: &BTreeMap<String, u64>| counts.get(db).copied().unwrap_or(0);
        let after = count(&record.keys);
        // Old records have no `keys_before`: then the one count is exact.
        let before = record.keys_before.get(db).copied().unwrap_or(after);
        // Keys evicted are missing keys too, and missing keys with a TTL
        // cannot be told from expired ones: after an eviction, none is let
        // pass as expired (the writes that evicted are counted changes).
        let may_expire = match evicted {
            0 => count(&record.expires),
            _ => 0,
        };
        let got = count(&restored);
        let (low, high) = (before.min(after), before.max(after));
        if got > high.saturating_add(changed)
            || got.saturating_add(may_expire).saturating_add(changed) < low
        {
            return Err(Error::other(format!(
                "the restored server has {got} keys in {db}, but the backup recorded {} ({} with a TTL), {changed} changes were made since it loaded, and it evicted {evicted} (under maxmemory)",
                if low == high { low.to_string() } else { format!("between {low} and {high}") },
                count(&record.expires)
            )));
        }
    }
    Ok((restored, keeps_nothing))
}

/// Remove the work folder, or keep it (with the previous files) on request.
fn finish(work: WorkDir, data: &DataDir, keep_previous: bool) -> Option<String> {
    if keep_previous {
        let kept = work.previous_path().display().to_string();
        info!("kept the previous data in {kept}");
        return Some(kept);
    }
    let path = work.path().to_path_buf();
    if let Err(e) = work.remove(data) {
        warn!(
            "restore done, but {} could not be removed: {e}; look at what is left in it, then remove it by hand",
            path.display()
        );
    }
    None
}
