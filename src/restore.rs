//! `restore`, step by step, as an operator would do it by hand at 3 a.m., but
//! without the mistakes: take the lock; finish off any restore a previous run
//! left half done; stage and prove the backup while Redis keeps running; only
//! then stop Redis, move its files aside (never delete them first), place the
//! new RDB, rebuild the AOF privately if the instance uses one, start, and check
//! the key counts. Any failure after Redis was touched puts the old files back.

use crate::cli::Target;
use crate::commands::{check_against_record, check_key, load_record};
use crate::config::Config;
use crate::crypto::{self, MasterKey};
use crate::error::{Error, Result};
use crate::fsutil::{self, fsync_dir};
use crate::instance::{self, DataFiles};
use crate::journal::{self, Step, WorkDir};
use crate::pipeline::{self, DecodeSummary};
use crate::private_redis::{self, PrivateRedis};
use crate::rdb;
use crate::record::{self, human_size, Record};
use crate::redis::{ConnectOptions, Connection};
use crate::redis_conf::{self, RedisConf};
use crate::service::Service;
use crate::storage;
use log::{info, warn};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const REDIS_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Request {
    pub target: Target,
    pub keep_previous: bool,
}

/// What was restored, for the report.
pub struct Restored {
    /// The backup ID, or the path given with --from-file.
    pub name: String,
    pub raw_size: u64,
    pub keys: BTreeMap<String, u64>,
    pub seconds: f64,
    pub previous: Option<String>,
}

/// Everything the steps after staging need, gathered once.
struct Plan<'a> {
    config: &'a Config,
    conf: RedisConf,
    connect: ConnectOptions,
    files: DataFiles,
    service: Service,
    was_active: bool,
}

pub fn run(config: &Config, request: Request) -> Result<Restored> {
    let started = Instant::now();
    let _lock = fsutil::lock_host(&config.lock_file)?;
    let key = crypto::load_key_file(&config.key_file)?;
    let conf = redis_conf::load(&config.redis_conf)?;
    let connect = instance::connect_options(config, &conf, REDIS_TIMEOUT)?;
    let service = Service::new(&config.service);

    let files = current_files(&service, &connect, &conf)?;
    recover_interrupted(&files, &service, &connect)?;
    let was_active = service.is_active()?;
    let plan = Plan {
        config,
        conf,
        connect,
        files,
        service,
        was_active,
    };

    let (record, name) = match &request.target {
        Target::Id(id) => {
            let storage = storage::open(config)?;
            let record = load_record(&*storage, id)?;
            check_key(&record, &key)?;
            (Some(record), id.to_string())
        }
        Target::File(path) => (None, path.display().to_string()),
    };
    let (_, stamp) = record::utc_timestamps(SystemTime::now());
    let mut work = WorkDir::create(&plan.files.dir, &stamp)?;
    let summary = match stage(config, &request.target, record.as_ref(), &key, &work) {
        Ok(summary) => summary,
        Err(e) => {
            // Redis was never touched; drop what we staged.
            let _ = work.remove();
            return Err(e);
        }
    };
    work.record(Step::Staged)?;
    info!(
        "staged and verified {name}: {} RDB version {}",
        human_size(summary.raw_size),
        summary.rdb.version
    );

    match swap_in(&plan, &mut work, record.as_ref()) {
        Ok(keys) => {
            work.record(Step::Done)?;
            let previous = finish(work, request.keep_previous);
            let seconds = started.elapsed().as_secs_f64();
            info!("restored {name} in {seconds:.1}s");
            Ok(Restored {
                name,
                raw_size: summary.raw_size,
                keys,
                seconds,
                previous,
            })
        }
        Err(cause) => Err(roll_back(&plan, work, cause)),
    }
}

/// Where the data files are: the running server says; a stopped one's
/// redis.conf does.
fn current_files(
    service: &Service,
    connect: &ConnectOptions,
    conf: &RedisConf,
) -> Result<DataFiles> {
    if !service.is_active()? {
        info!(
            "{} is not running; taking the data dir from {}",
            service.unit(),
            conf.source.display()
        );
        return Ok(DataFiles::from_conf(conf));
    }
    let mut redis = Connection::connect(connect)?;
    DataFiles::live(&mut redis, conf)
}

/// Decode into the work folder, fsync, and prove it: every MAC, SHA-256 against
/// the record, RDB magic and CRC64, and an RDB version this host can load.
fn stage(
    config: &Config,
    target: &Target,
    record: Option<&Record>,
    key: &MasterKey,
    work: &WorkDir,
) -> Result<DecodeSummary> {
    let input: Box<dyn Read + Send> = match target {
        Target::Id(id) => storage::open(config)?.open(id, 0)?,
        Target::File(path) => Box::new(File::open(path).map_err(|e| {
            Error::storage(format!("cannot open backup file {}: {e}", path.display()))
        })?),
    };
    let staged = work.staged_rdb();
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staged)
        .map_err(|e| Error::other(format!("cannot create {}: {e}", staged.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, StagingFile { file, full: false });
    let decoded = pipeline::decode(&mut { input }, &mut out, key, pipeline::default_workers());
    let flushed = decoded.and_then(|summary| {
        out.flush()
            .and_then(|()| out.get_ref().file.sync_all())
            .map(|()| summary)
            .map_err(|e| Error::other(format!("writing {}: {e}", staged.display())))
    });
    if out.get_ref().full {
        return Err(Error::storage(format!(
            "not enough free space in {} to stage the restore{}; free some space there and run the restore again (Redis was not touched)",
            work.path().parent().unwrap_or(work.path()).display(),
            record.map(|r| format!(" ({} needed)", human_size(r.raw_size))).unwrap_or_default()
        )));
    }
    let summary = flushed?;
    if let Some(record) = record {
        check_against_record(record, &summary)?;
    }
    check_loadable(summary.rdb.version, &private_redis::server_version()?)?;
    Ok(summary)
}

/// Refuse an RDB newer than this host's redis-server can load, naming both.
fn check_loadable(rdb_version: u32, server_version: &str) -> Result<()> {
    match rdb::newest_loadable(server_version) {
        Some(newest) if rdb_version > newest => Err(Error::integrity(format!(
            "the backup holds an RDB of version {rdb_version}, but this host's redis-server {server_version} loads RDB versions up to {newest}; restore it on a newer Redis"
        ))),
        _ => Ok(()),
    }
}

/// The staging file, noting when the disk ran full so that the error can say
/// so plainly instead of quoting an errno from deep in the pipeline.
struct StagingFile {
    file: File,
    full: bool,
}

impl Write for StagingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .write(buf)
            .inspect_err(|e| self.full |= is_disk_full(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Steps 3 to 7: stop, move aside, place, (rebuild the AOF,) start, check.
fn swap_in(
    plan: &Plan,
    work: &mut WorkDir,
    record: Option<&Record>,
) -> Result<BTreeMap<String, u64>> {
    work.record(Step::Stopping {
        was_active: plan.was_active,
    })?;
    if plan.was_active {
        plan.service.stop()?;
    }
    move_aside(&plan.files, work)?;
    work.record(Step::AsideDone)?;
    place(&plan.files, work)?;
    if plan.files.appendonly {
        rebuild_aof(plan, work)?;
    }
    plan.service.start()?;
    let keys = check_restored(plan, record)?;
    work.record(Step::Placed)?;
    Ok(keys)
}

fn move_aside(files: &DataFiles, work: &WorkDir) -> Result<()> {
    let previous = work.previous();
    for name in files.data_names() {
        let from = files.dir.join(name);
        if fs::symlink_metadata(&from).is_err() {
            continue;
        }
        let to = previous.join(name);
        fs::rename(&from, &to).map_err(|e| {
            Error::other(format!(
                "cannot move {} aside to {}: {e}",
                from.display(),
                to.display()
            ))
        })?;
        info!("moved {} aside to {}", from.display(), to.display());
    }
    sync_both(&files.dir, &previous)
}

/// The staged RDB becomes the dump: owner and group of the data dir, 0660.
fn place(files: &DataFiles, work: &WorkDir) -> Result<()> {
    let target = files.dump_path();
    let staged = work.staged_rdb();
    let owner = fs::metadata(&files.dir)
        .map_err(|e| Error::other(format!("cannot stat {}: {e}", files.dir.display())))?;
    let failed =
        |what: &str, e: io::Error| Error::other(format!("cannot {what} {}: {e}", staged.display()));
    std::os::unix::fs::chown(&staged, Some(owner.uid()), Some(owner.gid()))
        .map_err(|e| failed("chown", e))?;
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o660))
        .map_err(|e| failed("chmod", e))?;
    fs::rename(&staged, &target).map_err(|e| failed("move into place", e))?;
    fsync_dir(&files.dir).map_err(|e| failed("sync the data dir for", e))?;
    info!("placed the restored RDB as {}", target.display());
    Ok(())
}

/// With `appendonly yes`, Redis 7 ignores dump.rdb when there is no AOF and
/// would start empty, so the AOF is built first, where no client can write.
fn rebuild_aof(plan: &Plan, work: &WorkDir) -> Result<()> {
    let timeout = plan.config.save_timeout;
    let (mut server, mut conn) = PrivateRedis::start(
        &plan.conf.source,
        &plan.files,
        work.path(),
        &plan.connect,
        timeout,
    )?;
    server.build_aof(&mut conn, &plan.files, timeout)?;
    server.shut_down(conn, timeout)?;
    give_to_data_dir_owner(
        &plan.files.dir,
        &plan.files.dir.join(&plan.files.appenddirname),
    )?;
    give_to_data_dir_owner(
        &plan.files.dir,
        &plan.files.dir.join(&plan.files.appendfilename),
    )
}

/// The private server ran as us (root): hand what it wrote to Redis's user,
/// with the modes Debian's unit (UMask=007) would have given.
fn give_to_data_dir_owner(dir: &Path, path: &Path) -> Result<()> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    let owner = fs::metadata(dir)
        .map_err(|e| Error::other(format!("cannot stat {}: {e}", dir.display())))?;
    let set = |p: &Path, mode: u32| -> io::Result<()> {
        std::os::unix::fs::chown(p, Some(owner.uid()), Some(owner.gid()))?;
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
    };
    let result = if meta.is_dir() {
        set(path, 0o770)
            .and_then(|()| fs::read_dir(path)?.try_for_each(|entry| set(&entry?.path(), 0o660)))
    } else {
        set(path, 0o660)
    };
    result.map_err(|e| {
        Error::other(format!(
            "cannot hand {} to Redis's user: {e}",
            path.display()
        ))
    })
}

/// The restored server answers, has loaded, and holds what the record says:
/// the same keys per database, less at most those that had a TTL.
fn check_restored(plan: &Plan, record: Option<&Record>) -> Result<BTreeMap<String, u64>> {
    let mut redis = wait_until_ready(&plan.connect, plan.config.save_timeout)?;
    let keyspace = redis.keyspace()?;
    let restored: BTreeMap<String, u64> = keyspace
        .iter()
        .map(|(db, count)| (format!("db{db}"), count.keys))
        .collect();
    let Some(record) = record else {
        return Ok(restored);
    };
    let mut dbs: Vec<&String> = record.keys.keys().chain(restored.keys()).collect();
    dbs.sort();
    dbs.dedup();
    for db in dbs {
        let count = |counts: &BTreeMap<String, u64>| counts.get(db).copied().unwrap_or(0);
        let after = count(&record.keys);
        // Old records have no `keys_before`: then the one count is exact.
        let before = record.keys_before.get(db).copied().unwrap_or(after);
        let may_expire = count(&record.expires);
        let got = count(&restored);
        let (low, high) = (before.min(after), before.max(after));
        if got > high || got + may_expire < low {
            return Err(Error::other(format!(
                "the restored server has {got} keys in {db}, but the backup recorded {} ({may_expire} with a TTL)",
                if low == high { low.to_string() } else { format!("between {low} and {high}") }
            )));
        }
    }
    Ok(restored)
}

/// Connect, retrying while Redis starts or loads its dataset.
fn wait_until_ready(connect: &ConnectOptions, timeout: Duration) -> Result<Connection> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = Connection::connect(connect).and_then(|mut conn| {
            let loading = conn.info("persistence")?.get("loading").cloned();
            match loading.as_deref() {
                Some("0") => Ok(conn),
                _ => Err(Error::redis("Redis is still loading its dataset")),
            }
        });
        match attempt {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context("waiting for the restored Redis to answer"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Remove the work folder, or keep it (with the previous files) on request.
fn finish(work: WorkDir, keep_previous: bool) -> Option<String> {
    if keep_previous {
        let kept = work.previous().display().to_string();
        info!("kept the previous data in {kept}");
        return Some(kept);
    }
    let path = work.path().to_path_buf();
    if let Err(e) = work.remove() {
        warn!(
            "restore done, but {} could not be removed: {e}; remove it by hand",
            path.display()
        );
    }
    None
}

/// Put the previous files back after `cause`; exit 6 if that worked, 7 if not.
fn roll_back(plan: &Plan, work: WorkDir, cause: Error) -> Error {
    warn!("restore failed, putting the previous data back: {cause}");
    let folder = work.path().display().to_string();
    match put_previous_back(&plan.files, &plan.service, &plan.connect, work, plan.was_active) {
        Ok(()) => Error::RolledBack(format!(
            "restore failed: {cause}; the previous data was put back{}; the restored files are kept in {folder}/failed",
            if plan.was_active { " and Redis restarted" } else { "" }
        )),
        Err(again) => Error::RollbackFailed(format!(
            "restore failed: {cause}; putting the previous data back also failed: {again}; the previous files are in {folder}/previous and must be moved back into {} by hand",
            plan.files.dir.display()
        )),
    }
}

/// Undo a restore: stop Redis, move the new data files into `failed/`, the
/// previous ones back, and start Redis if it ran before. Also used for a
/// restore that a previous run left unfinished (killed, power loss).
fn put_previous_back(
    files: &DataFiles,
    service: &Service,
    connect: &ConnectOptions,
    mut work: WorkDir,
    start_again: bool,
) -> Result<()> {
    if service.is_active()? {
        service.stop()?;
    }
    let previous = work.previous();
    let failed = work.failed();
    fsutil::create_private_dir(&failed)
        .map_err(|e| Error::other(format!("cannot create {}: {e}", failed.display())))?;
    let all_aside = work.reached(&Step::AsideDone);
    for name in files.data_names() {
        let current = files.dir.join(name);
        let old = previous.join(name);
        let old_exists = fs::symlink_metadata(&old).is_ok();
        // Before every old file was aside, a file in the data dir whose old
        // version is not in previous/ is still the old one: leave it.
        if !(old_exists || all_aside) || fs::symlink_metadata(&current).is_err() {
            continue;
        }
        let to = failed.join(name);
        fs::rename(&current, &to).map_err(|e| {
            Error::other(format!(
                "cannot move {} to {}: {e}",
                current.display(),
                to.display()
            ))
        })?;
    }
    for name in files.data_names() {
        let old = previous.join(name);
        if fs::symlink_metadata(&old).is_ok() {
            let back = files.dir.join(name);
            fs::rename(&old, &back).map_err(|e| {
                Error::other(format!(
                    "cannot move {} back to {}: {e}",
                    old.display(),
                    back.display()
                ))
            })?;
            info!("put {} back", back.display());
        }
    }
    sync_both(&files.dir, &failed)?;
    if start_again {
        service.start()?;
        wait_until_ready(connect, REDIS_TIMEOUT * 20)?;
    }
    work.record(Step::Done)
}

/// Finish off restores that an earlier run left half done, before anything
/// else: their previous files go back where they were.
fn recover_interrupted(
    files: &DataFiles,
    service: &Service,
    connect: &ConnectOptions,
) -> Result<()> {
    for interrupted in journal::interrupted(&files.dir)? {
        let folder = interrupted.path().display().to_string();
        match interrupted.was_active() {
            None => {
                info!("removing {folder}, left by a restore that never touched Redis");
                let _ = interrupted.remove();
            }
            Some(was_active) => {
                warn!("a previous restore was interrupted ({folder}); putting its previous data back first");
                put_previous_back(files, service, connect, interrupted, was_active).map_err(|e| {
                    Error::RollbackFailed(format!(
                        "an interrupted restore left {folder}, and putting its previous data back failed: {e}; the previous files are in {folder}/previous"
                    ))
                })?;
            }
        }
    }
    Ok(())
}

fn sync_both(a: &Path, b: &Path) -> Result<()> {
    fsync_dir(a).and_then(|()| fsync_dir(b)).map_err(|e| {
        Error::other(format!(
            "cannot sync {} and {}: {e}",
            a.display(),
            b.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rdb_newer_than_the_server_is_refused_naming_both_versions() {
        let err = check_loadable(11, "7.0.15").unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(err.message().contains("version 11"), "{err}");
        assert!(err.message().contains("7.0.15"), "{err}");
        assert!(err.message().contains("up to 10"), "{err}");
        assert!(check_loadable(10, "7.0.15").is_ok());
        assert!(check_loadable(9, "7.0.15").is_ok());
        assert!(check_loadable(13, "9.9.9").is_ok(), "unknown newer server");
    }
}
