//! `backup`, step by step: take the host lock, load the key, find Redis from its
//! own config, make it write a fresh snapshot and wait for *our* save, open the
//! dump at once, stream it through the pipeline into storage, and only then
//! write the record, so that a listed backup is always a complete one.

use crate::config::Config;
use crate::crypto::{self, MasterKey};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::BackupId;
use crate::pipeline::{self, EncodeOptions};
use crate::progress::Progress;
use crate::rdb::{RdbCheck, RdbInfo};
use crate::record::{self, human_size, Record};
use crate::redis::{ConnectOptions, Connection, Endpoint};
use crate::redis_conf::{self, RedisConf};
use crate::storage::{self, Storage};
use log::{info, warn};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub const FORMAT_VERSION: u64 = 1;
const REDIS_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Request {
    pub id: Option<BackupId>,
    pub instance: Option<String>,
}

pub fn run(config: &Config, request: Request) -> Result<Record> {
    let started = Instant::now();
    let _lock = fsutil::lock_host(&config.lock_file)?;
    let key = crypto::load_key_file(&config.key_file)?;
    let redis_conf = redis_conf::load(&config.redis_conf)?;
    let storage = storage::open(&config.storage)?;
    let id = match request.id {
        Some(id) => id,
        None => new_id()?,
    };
    let instance = request.instance.unwrap_or_else(|| config.instance.clone());

    let mut redis = Connection::connect(&connect_options(config, &redis_conf)?)?;
    let redis_version = redis.server_version()?;
    let live = LiveSettings::read(&mut redis, &redis_conf)?;
    info!(
        "Redis {redis_version}: dump {}, persistence {}",
        live.dump_path.display(),
        live.describe_persistence()
    );
    // Removes the dump on every way out when Redis was not meant to keep one.
    let _cleanup = DumpCleanup {
        path: (!live.persistent()).then(|| live.dump_path.clone()),
    };

    redis.snapshot(config.save_timeout)?;
    let dump = open_dump(&live.dump_path)?;
    let keys = key_counts(redis.keyspace()?);
    let (created_at, _) = record::utc_timestamps(SystemTime::now());

    let (summary, rdb, stored_size) = store(&*storage, &id, dump, &key, config)?;
    let record = Record {
        location: storage.location(&id),
        id,
        instance,
        created_at,
        redis_version,
        persistence: live.persistence_kind().into(),
        source: "snapshot".into(),
        raw_size: summary.raw_size,
        raw_sha256: summary.raw_sha256,
        stored_size,
        key_id: summary.key_id,
        format: FORMAT_VERSION,
        rdb_version: u64::from(rdb.version),
        keys,
    };
    let json = serde_json::to_vec_pretty(&record.to_json())
        .map_err(|e| Error::other(format!("encoding the record: {e}")))?;
    storage.put_record(&record.id, &json)?;
    info!(
        "backup {} complete: {} RDB stored as {} in {:.1}s",
        record.id,
        human_size(record.raw_size),
        human_size(record.stored_size),
        started.elapsed().as_secs_f64()
    );
    Ok(record)
}

/// Stream the dump into a new object; nothing is visible until it is committed.
fn store(
    storage: &dyn Storage,
    id: &BackupId,
    dump: File,
    key: &MasterKey,
    config: &Config,
) -> Result<(pipeline::EncodeSummary, RdbInfo, u64)> {
    let size = dump.metadata().map(|m| m.len()).unwrap_or(0);
    let mut input = CheckedDump {
        file: dump,
        check: RdbCheck::new(),
        progress: Progress::new("backup", size),
    };
    let mut object = storage.create(id)?;
    let options = EncodeOptions {
        level: config.compression_level,
        ..EncodeOptions::default()
    };
    let started = Instant::now();
    let summary = pipeline::encode(&mut input, &mut object, key, &options)?;
    // A dump that fails its own checksum would make a backup that cannot be
    // restored; refuse it before it is committed.
    let rdb = input.check.finish().map_err(|e| {
        e.context(
            "the dump Redis just wrote does not pass its own check; the backup was not stored",
        )
    })?;
    let stored_size = object.commit()?;
    info!(
        "stream: {} read, {} stored in {:.1}s",
        human_size(summary.raw_size),
        human_size(stored_size),
        started.elapsed().as_secs_f64()
    );
    Ok((summary, rdb, stored_size))
}

/// The dump file, checked (RDB magic and CRC64) and counted as it is read.
struct CheckedDump {
    file: File,
    check: RdbCheck,
    progress: Progress,
}

impl Read for CheckedDump {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.check.update(&buf[..n]);
        self.progress.advance(n as u64);
        Ok(n)
    }
}

fn new_id() -> Result<BackupId> {
    let (_, compact) = record::utc_timestamps(SystemTime::now());
    Ok(BackupId::generate(&compact, crypto::random_bytes::<2>()?))
}

/// Settings take precedence; otherwise Redis is reached the way its own
/// config says: the Unix socket if it has one, else TCP on its bind address.
fn connect_options(config: &Config, conf: &RedisConf) -> Result<ConnectOptions> {
    let tcp_chosen = config.redis_host.is_some() || config.redis_port.is_some();
    let endpoint = if let Some(socket) = &config.redis_socket {
        Endpoint::Unix(socket.clone())
    } else if let (false, Some(socket)) = (tcp_chosen, &conf.unixsocket) {
        Endpoint::Unix(socket.clone())
    } else {
        let port = config.redis_port.unwrap_or(conf.port);
        if port == 0 {
            return Err(Error::usage(format!(
                "{} has port 0 and no unixsocket; set redis_socket or redis_port",
                conf.source.display()
            )));
        }
        let host = config
            .redis_host
            .clone()
            .unwrap_or_else(|| local_address(&conf.bind));
        Endpoint::Tcp { host, port }
    };
    Ok(ConnectOptions {
        endpoint,
        user: config.redis_user.clone(),
        password: config
            .redis_password
            .clone()
            .or_else(|| conf.requirepass.clone()),
        renamed_commands: conf.renamed_commands.clone(),
        timeout: REDIS_TIMEOUT,
    })
}

/// The address to dial for Redis's first `bind` entry ("-" marks an optional
/// address; wildcards mean any local address will do).
fn local_address(bind: &[String]) -> String {
    let first = bind.first().map(|b| b.trim_start_matches('-'));
    match first {
        None | Some("*") | Some("0.0.0.0") => "127.0.0.1".into(),
        Some("::") | Some("::*") => "::1".into(),
        Some(addr) => addr.into(),
    }
}

/// What the running server actually does; redis.conf only when CONFIG is
/// unavailable (renamed away or forbidden to our user).
struct LiveSettings {
    dump_path: PathBuf,
    save_rules: Option<String>,
    appendonly: bool,
}

impl LiveSettings {
    fn read(redis: &mut Connection, conf: &RedisConf) -> Result<LiveSettings> {
        let dir = match redis.config_get("dir")? {
            Some(dir) => PathBuf::from(dir),
            None => conf_dir(conf),
        };
        let dbfilename = redis
            .config_get("dbfilename")?
            .unwrap_or_else(|| conf.dbfilename.clone());
        let save_rules = match redis.config_get("save")? {
            Some(rules) => Some(rules),
            None => conf.save.clone(),
        };
        let appendonly = match redis.config_get("appendonly")? {
            Some(value) => value == "yes",
            None => conf.appendonly,
        };
        Ok(LiveSettings {
            dump_path: dir.join(dbfilename),
            save_rules,
            appendonly,
        })
    }

    /// No save rules (`save ""`) and no AOF: Redis keeps nothing on disk, so
    /// neither may we leave the dump we made it write.
    fn persistent(&self) -> bool {
        self.appendonly || self.save_rules.as_deref() != Some("")
    }

    fn persistence_kind(&self) -> &'static str {
        if self.appendonly {
            "aof"
        } else {
            "rdb"
        }
    }

    fn describe_persistence(&self) -> String {
        match (self.appendonly, self.save_rules.as_deref()) {
            (true, _) => "AOF".into(),
            (false, Some("")) => "off (the dump is removed after the backup)".into(),
            (false, None) => "RDB (default save rules)".into(),
            (false, Some(rules)) => format!("RDB (save {rules})"),
        }
    }
}

fn conf_dir(conf: &RedisConf) -> PathBuf {
    let dir = conf.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    if dir.is_absolute() {
        return dir;
    }
    warn!(
        "redis.conf gives a relative dir {:?} and CONFIG is unavailable; taking it relative to {}",
        dir,
        conf.source.display()
    );
    conf.source.parent().unwrap_or(Path::new("/")).join(dir)
}

fn open_dump(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| {
        Error::other(format!(
            "Redis finished saving but its dump {} cannot be opened: {e}",
            path.display()
        ))
    })
}

fn key_counts(keyspace: BTreeMap<u32, u64>) -> BTreeMap<String, u64> {
    keyspace
        .into_iter()
        .map(|(db, keys)| (format!("db{db}"), keys))
        .collect()
}

struct DumpCleanup {
    path: Option<PathBuf>,
}

impl Drop for DumpCleanup {
    fn drop(&mut self) {
        let Some(path) = &self.path else { return };
        match std::fs::remove_file(path) {
            Ok(()) => info!(
                "removed {} because Redis persistence is off",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(
                "could not remove {} (Redis persistence is off): {e}",
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_address_follows_the_first_bind_entry() {
        let bind = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(local_address(&bind(&[])), "127.0.0.1");
        assert_eq!(local_address(&bind(&["127.0.0.1", "-::1"])), "127.0.0.1");
        assert_eq!(local_address(&bind(&["-::1"])), "::1");
        assert_eq!(local_address(&bind(&["*", "-::*"])), "127.0.0.1");
        assert_eq!(local_address(&bind(&["0.0.0.0"])), "127.0.0.1");
        assert_eq!(local_address(&bind(&["10.0.0.5"])), "10.0.0.5");
    }

    #[test]
    fn persistence_is_off_only_without_save_rules_and_aof() {
        let live = |save: Option<&str>, aof| LiveSettings {
            dump_path: "/x".into(),
            save_rules: save.map(str::to_string),
            appendonly: aof,
        };
        assert!(!live(Some(""), false).persistent());
        assert!(
            live(None, false).persistent(),
            "no save line = default rules"
        );
        assert!(live(Some("3600 1"), false).persistent());
        assert!(live(Some(""), true).persistent());
        assert_eq!(live(Some(""), true).persistence_kind(), "aof");
    }
}
