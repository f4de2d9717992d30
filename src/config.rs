//! Settings: from the settings file, then the environment (`REDIS_BACKUP_<KEY>`,
//! and OpenStack's own `OS_*`/`ST_*` names), then flags, each layer overriding the
//! one before (ripgrep-style). Everything is validated here, once, into a typed
//! `Config`, so that a bad value is a usage error before anything is touched.

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::settings::{self, env_name, SETTINGS};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/redis-backup/redis-backup.conf";
pub const DEFAULT_CONTAINER: &str = "database_backups";
const MAX_SETTINGS_FILE: u64 = 1024 * 1024;
const MIN_MAX_RDB_SIZE: u64 = 1 << 20;
const MAX_MAX_RDB_SIZE: u64 = 1 << 50;

#[derive(Debug, Clone, PartialEq)]
pub enum StorageUrl {
    Dir(PathBuf),
    Swift { container: String },
}

#[derive(Debug)]
pub struct Config {
    pub redis_conf: PathBuf,
    pub redis_host: Option<String>,
    pub redis_port: Option<u16>,
    pub redis_socket: Option<PathBuf>,
    pub redis_user: Option<String>,
    pub redis_password: Option<Secret>,
    pub service: String,
    /// The server binary (`redis-server`, `valkey-server`, or a path).
    pub redis_server: String,
    pub storage: StorageUrl,
    pub key_file: PathBuf,
    pub compression_level: u8,
    pub segment_size: u64,
    pub instance: String,
    /// Point-in-time recovery: a chunk of the write stream is stored at
    /// least this often, and whenever this many bytes have come.
    pub archive_interval: Duration,
    pub archive_chunk_size: u64,
    pub lock_file: PathBuf,
    pub save_timeout: Duration,
    /// How long one command to Redis, its whole reply included, may take.
    pub redis_timeout: Duration,
    /// The largest RDB a backup reads from any source, in bytes.
    pub max_rdb_size: u64,
    /// Threads that compress/encrypt (backup) or decrypt/inflate (the rest).
    pub threads: usize,
    /// Where backup and restore write their status (JSON, and `.prom` beside).
    pub status_file: Option<PathBuf>,
    /// How long a storage request may wait for the server before it is
    /// treated as failed (and tried again).
    pub storage_timeout: Duration,
    /// Plain http to Swift or its auth service: refused unless set (test
    /// clouds), and never after an https auth URL.
    pub swift_allow_http: bool,
    /// OpenStack credentials by lower-case name; all treated as secret.
    pub openstack: BTreeMap<String, Secret>,
}

/// Where each raw value came from, for error messages that say what to fix.
struct Raw {
    value: String,
    origin: String,
}

impl Config {
    /// Read the settings file (the given one must exist; the default one only
    /// if present), the process environment and the flags.
    pub fn load(config_file: Option<&Path>, flags: &[(String, String)]) -> Result<Config> {
        let file = match config_file {
            Some(path) => Some((path.to_path_buf(), read_settings_file(path)?)),
            None => {
                let default = Path::new(DEFAULT_CONFIG_FILE);
                match default.exists() {
                    true => Some((default.to_path_buf(), read_settings_file(default)?)),
                    false => None,
                }
            }
        };
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        // Parsed once: what parsing says of a line is said once.
        let parsed = match &file {
            Some((path, text)) => Some(parse_file(path, text)?),
            None => None,
        };
        if let (Some((path, _)), Some(parsed)) = (&file, &parsed) {
            warn_if_secret_readable(path, parsed);
        }
        let config = resolve_parsed(parsed.unwrap_or_default(), env, flags)?;
        warn_of_unknown_variables();
        Ok(config)
    }
}

/// A `REDIS_BACKUP_` variable that is no setting is said, by name only (its
/// value may be a secret): a typo in a unit's `Environment=` would
/// otherwise leave the default in force unseen. Not refused: an image
/// rolled back to an older binary may still set a newer one's settings.
fn warn_of_unknown_variables() {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        // The project's own development variables are not settings either.
        let ours = [
            "REDIS_BACKUP_SERVERS",
            "REDIS_BACKUP_BENCH_RDB",
            "REDIS_BACKUP_TEST_",
        ];
        if name.starts_with("REDIS_BACKUP_")
            && !all_keys().any(|key| env_name(key) == name)
            && !ours.iter().any(|o| name.starts_with(o))
        {
            log::warn!(
                "{name} in the environment is not a setting of redis-backup (a typo?); ignored"
            );
        }
    }
}

/// The settings file's text. It chooses programs root runs
/// (`redis_server`), the key and where backups go: it is refused if anyone
/// but root (or the account running the tool) may change what it says.
fn read_settings_file(path: &Path) -> Result<String> {
    let cannot = |e: std::io::Error| {
        Error::usage(format!("cannot read settings file {}: {e}", path.display()))
    };
    let file = crate::fs::open_regular(path).map_err(cannot)?;
    if let Some(who) = crate::fs::writers::others_who_may_change(path, &file).map_err(cannot)? {
        return Err(Error::usage(format!(
            "settings file {} may be changed by others ({who}); it chooses programs run as root: make it and its folders root's, not writable by group or others",
            path.display()
        )));
    }
    let meta = file.metadata().map_err(cannot)?;
    if meta.len() > MAX_SETTINGS_FILE {
        return Err(Error::usage(format!(
            "settings file {} is larger than 1 MiB; is it the right file?",
            path.display()
        )));
    }
    // Capped again while reading: a device such as /dev/zero has length 0.
    let mut text = String::new();
    file.take(MAX_SETTINGS_FILE + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_SETTINGS_FILE {
        return Err(Error::usage(format!(
            "settings file {} is larger than 1 MiB; is it the right file?",
            path.display()
        )));
    }
    Ok(text)
}

fn warn_if_secret_readable(path: &Path, parsed: &BTreeMap<String, Raw>) {
    let holds_secret = parsed.keys().any(|k| settings::is_secret(k));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if holds_secret && mode & 0o077 != 0 {
        log::warn!(
            "settings file {} holds a secret but has mode {:04o}; make it readable only by its owner: chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
}

/// The pure part of loading: layers merged and validated.
#[cfg(test)]
fn resolve(
    file: Option<(&Path, &str)>,
    env: impl Fn(&str) -> Option<String>,
    flags: &[(String, String)],
) -> Result<Config> {
    let parsed = match file {
        Some((path, text)) => parse_file(path, text)?,
        None => BTreeMap::new(),
    };
    resolve_parsed(parsed, env, flags)
}

/// `resolve` of a settings file already parsed.
fn resolve_parsed(
    mut raw: BTreeMap<String, Raw>,
    env: impl Fn(&str) -> Option<String>,
    flags: &[(String, String)],
) -> Result<Config> {
    for key in all_keys() {
        let name = env_name(key);
        if let Some(value) = env(&name) {
            raw.insert(
                key.to_string(),
                Raw {
                    value,
                    origin: format!("environment variable {name}"),
                },
            );
        }
    }
    for (key, value) in flags {
        raw.insert(
            key.clone(),
            Raw {
                value: value.clone(),
                origin: format!("--{}", key.replace('_', "-")),
            },
        );
    }
    build(raw)
}

fn all_keys() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|s| s.key)
}

fn parse_file(path: &Path, text: &str) -> Result<BTreeMap<String, Raw>> {
    let mut out: BTreeMap<String, Raw> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), index + 1);
        // The line itself is not quoted back: it may be a pasted password.
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::usage(format!(
                "{at}: expected `key = value` (the line is not shown, in case it holds a secret)"
            )));
        };
        let key = key.trim().to_lowercase();
        if !all_keys().any(|k| k == key) {
            // Nor is the unknown name: in `redis_password s3cr=t` or a pasted
            // `s3cr=t` it is the start of a password.
            return Err(Error::usage(format!(
                "{at}: unknown setting (the name is not shown, in case the line holds a secret); \
                 see redis-backup --help for the settings"
            )));
        }
        let value = value.trim();
        let unquoted = unquote(value);
        // A secret may hold anything, and is taken whole, said; the other
        // values are refused rather than taken with a comment as theirs.
        let comment =
            unquoted.len() == value.len() && value.split_whitespace().any(|w| w.starts_with('#'));
        if comment && settings::is_secret(&key) {
            log::warn!(
                "{at}: {key} holds a word starting with `#`; it is taken as part of the secret (if it is a comment, put it on a line of its own)"
            );
        } else if comment {
            return Err(Error::usage(format!(
                "{at}: {key} has a `#` in its value; comments go on lines of their own (quote the value if the `#` is part of it)"
            )));
        }
        let raw = Raw {
            value: unquoted.to_string(),
            origin: at,
        };
        // The last one is taken, as ever; an edit that meant to replace the
        // first may not know it is there.
        if let Some(first) = out.get(&key) {
            log::warn!(
                "{}: {key} is set again (first in {}): the last is taken",
                raw.origin,
                first.origin
            );
        }
        out.insert(key, raw);
    }
    Ok(out)
}

fn unquote(value: &str) -> &str {
    let quoted = value.len() >= 2
        && ((value.starts_with('"') && value.ends_with('"'))
            || (value.starts_with('\'') && value.ends_with('\'')));
    if quoted {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// Where Debian puts each server's config.
const REDIS_CONF: &str = "/etc/redis/redis.conf";
const VALKEY_CONF: &str = "/etc/valkey/valkey.conf";
/// redis.conf's folder, in root's /etc: the redis account cannot remove
/// it, as it can the config in it (the folder is its own, 2770).
const REDIS_CONF_DIR: &str = "/etc/redis";

/// On a Valkey host (Debian 13's `valkey-server`: no /etc/redis, a
/// valkey.conf) the defaults are Valkey's config, unit and binary, unless
/// redis_conf is set. Where /etc/redis is there without its redis.conf,
/// the redis account may have removed it to have this run act on Valkey's
/// data: which server is meant is not guessed.
fn valkey_host_defaults(
    raw: &mut BTreeMap<String, Raw>,
    exists: impl Fn(&Path) -> bool,
) -> Result<()> {
    if raw.contains_key("redis_conf")
        || exists(Path::new(REDIS_CONF))
        || !exists(Path::new(VALKEY_CONF))
    {
        return Ok(());
    }
    if exists(Path::new(REDIS_CONF_DIR)) {
        return Err(Error::usage(format!(
            "{REDIS_CONF_DIR} has no redis.conf, and {VALKEY_CONF} is there: which server this host backs up is not guessed; set redis_conf"
        )));
    }
    for (key, value) in [
        ("redis_conf", VALKEY_CONF),
        ("service", "valkey-server"),
        ("redis_server", "valkey-server"),
    ] {
        raw.entry(key.to_string()).or_insert_with(|| Raw {
            value: value.to_string(),
            origin: format!("the default of {key} on a Valkey host"),
        });
    }
    Ok(())
}

fn build(mut raw: BTreeMap<String, Raw>) -> Result<Config> {
    valkey_host_defaults(&mut raw, Path::exists)?;
    // A value given, or the settings table's default (parsed like a given
    // one, so the table is the only place a default is written).
    let mut take = |key: &str| {
        raw.remove(key).or_else(|| {
            let default = settings::find(key)?.default;
            (!default.is_empty()).then(|| Raw {
                value: default.to_string(),
                origin: format!("the default of {key}"),
            })
        })
    };
    let config = Config {
        redis_conf: path(&take("redis_conf").expect("a default"))?,
        redis_host: take("redis_host").map(nonempty).transpose()?,
        redis_port: take("redis_port")
            .map(|r| number::<u16>(&r, 1, u16::MAX as u64))
            .transpose()?,
        redis_socket: take("redis_socket").map(|r| path(&r)).transpose()?,
        redis_user: take("redis_user").map(nonempty).transpose()?,
        redis_password: take("redis_password").map(secret).transpose()?,
        service: nonempty(take("service").expect("a default"))?,
        redis_server: nonempty(take("redis_server").expect("a default"))?,
        storage: parse_storage(&take("storage").expect("a default"))?,
        key_file: path(&take("key_file").expect("a default"))?,
        compression_level: number::<u8>(&take("compression_level").expect("a default"), 0, 9)?,
        segment_size: number::<u64>(&take("segment_size").expect("a default"), 1 << 20, 5 << 30)?,
        instance: match take("instance") {
            Some(r) => instance_name(&r)?,
            None => default_instance(),
        },
        archive_interval: seconds(&take("archive_interval").expect("a default"), 24 * 3600)?,
        archive_chunk_size: size(
            &take("archive_chunk_size").expect("a default"),
            64 << 10,
            1 << 30,
        )?,
        lock_file: path(&take("lock_file").expect("a default"))?,
        save_timeout: seconds(&take("save_timeout").expect("a default"), 7 * 24 * 3600)?,
        redis_timeout: seconds(&take("redis_timeout").expect("a default"), 3600)?,
        max_rdb_size: size(
            &take("max_rdb_size").expect("a default"),
            MIN_MAX_RDB_SIZE,
            MAX_MAX_RDB_SIZE,
        )?,
        status_file: take("status_file").map(|r| path(&r)).transpose()?,
        storage_timeout: seconds(&take("storage_timeout").expect("a default"), 3600)?,
        threads: match take("threads") {
            Some(r) => number::<usize>(&r, 1, 64)?,
            None => settings::default_threads(),
        },
        swift_allow_http: yes_no(&take("swift_allow_http").expect("a default"))?,
        openstack: BTreeMap::new(),
    };
    // By insertion, not `collect()`: see `redis::per_db`.
    let mut openstack = BTreeMap::new();
    for (k, r) in raw {
        // An empty one is unset: `OS_PASSWORD=` in root's environment is
        // not a password, nor a reason to refuse a command that uses none.
        if settings::is_openstack(&k) && !r.value.is_empty() {
            openstack.insert(k, Secret::new(r.value));
        }
    }
    Ok(Config {
        openstack,
        ..config
    })
}

/// `redis_password` is never empty: it would send `AUTH ""`, in place of
/// redis.conf's `requirepass`.
fn secret(raw: Raw) -> Result<Secret> {
    if raw.value.is_empty() {
        return Err(bad(
            &raw,
            "an empty redis_password; leave it out to use redis.conf's requirepass",
        ));
    }
    Ok(Secret::new(raw.value))
}

fn bad(raw: &Raw, what: &str) -> Error {
    Error::usage(format!("{}: {what}", raw.origin))
}

fn seconds(raw: &Raw, max: u64) -> Result<Duration> {
    Ok(Duration::from_secs(number::<u64>(raw, 1, max)?))
}

fn yes_no(raw: &Raw) -> Result<bool> {
    match raw.value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(bad(raw, "expects yes or no")),
    }
}

fn nonempty(raw: Raw) -> Result<String> {
    if raw.value.is_empty() {
        return Err(bad(&raw, "must not be empty"));
    }
    Ok(raw.value)
}

fn path(raw: &Raw) -> Result<PathBuf> {
    if raw.value.is_empty() {
        return Err(bad(raw, "must be a path, not empty"));
    }
    Ok(PathBuf::from(&raw.value))
}

fn number<T: TryFrom<u64>>(raw: &Raw, min: u64, max: u64) -> Result<T> {
    let parsed = raw
        .value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n));
    parsed.and_then(|n| T::try_from(n).ok()).ok_or_else(|| {
        bad(
            raw,
            &format!("{:?} is not a number from {min} to {max}", raw.value),
        )
    })
}

/// A size in bytes: digits, optionally followed by K, M, G or T (powers of
/// 1024, any case, with or without a trailing `B` or `iB`).
fn size(raw: &Raw, min: u64, max: u64) -> Result<u64> {
    let text = raw.value.trim().to_ascii_lowercase();
    let text = text
        .strip_suffix("ib")
        .or_else(|| text.strip_suffix('b'))
        .unwrap_or(&text);
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'k')) => (&text[..at], 10),
        Some((at, 'm')) => (&text[..at], 20),
        Some((at, 'g')) => (&text[..at], 30),
        Some((at, 't')) => (&text[..at], 40),
        _ => (text, 0),
    };
    let parsed = Some(digits)
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok())
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| (min..=max).contains(n));
    parsed.ok_or_else(|| {
        bad(
            raw,
            &format!(
                "{:?} is not a size from {min} to {max} bytes (K, M, G, T suffixes allowed)",
                raw.value
            ),
        )
    })
}

fn parse_storage(raw: &Raw) -> Result<StorageUrl> {
    if let Some(dir) = raw.value.strip_prefix("file://") {
        if !dir.starts_with('/') {
            return Err(bad(
                raw,
                "file storage needs an absolute directory: file:///var/lib/redis-backup",
            ));
        }
        // One spelling for new records: `/a/./b/` is `/a/b`.
        return Ok(StorageUrl::Dir(Path::new(dir).components().collect()));
    }
    if let Some(container) = raw.value.strip_prefix("swift://") {
        let container = match container.trim_end_matches('/') {
            "" => DEFAULT_CONTAINER,
            name => name,
        };
        // "." and ".." would be resolved as path steps, above the account.
        let unsafe_char = |c: char| c == '/' || c == '?' || c == '#' || c.is_control();
        if container.contains(unsafe_char)
            || container == "."
            || container == ".."
            || container.len() > 256
        {
            return Err(bad(
                raw,
                "a Swift container name has no '/', '?', '#' or control characters, is not . or .., and has at most 256 bytes",
            ));
        }
        return Ok(StorageUrl::Swift {
            container: container.to_string(),
        });
    }
    Err(bad(
        raw,
        &format!(
            "{:?} is not a storage URL; use file:///DIR or swift://CONTAINER",
            raw.value
        ),
    ))
}

fn instance_name(raw: &Raw) -> Result<String> {
    crate::id::BackupId::parse(&raw.value)
        .map(|id| id.as_str().to_string())
        .map_err(|_| bad(raw, "an instance name uses only A-Z a-z 0-9 . _ -"))
}

/// The host name, which is what identifies a Trove guest; "redis" if unknown.
fn default_instance() -> String {
    Some(crate::id::host_name())
        .filter(|h| crate::id::BackupId::parse(h).is_ok())
        .unwrap_or_else(|| "redis".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_valkey_host_defaults_to_valkeys_config_unit_and_binary() {
        let on = |files: &'static [&'static str]| {
            let mut raw = BTreeMap::new();
            valkey_host_defaults(&mut raw, |p: &Path| files.iter().any(|f| Path::new(f) == p)).map(
                |()| {
                    raw.into_iter()
                        .map(|(k, r)| (k, r.value))
                        .collect::<BTreeMap<_, _>>()
                },
            )
        };
        let valkey = on(&[VALKEY_CONF]).unwrap();
        assert_eq!(valkey["redis_conf"], VALKEY_CONF);
        assert_eq!(valkey["service"], "valkey-server");
        assert_eq!(valkey["redis_server"], "valkey-server");
        let both = on(&[REDIS_CONF_DIR, REDIS_CONF, VALKEY_CONF]).unwrap();
        assert!(both.is_empty(), "redis.conf wins");
        assert!(on(&[]).unwrap().is_empty());
        assert!(on(&[REDIS_CONF_DIR]).unwrap().is_empty());
        // redis.conf gone from its folder (the redis account can remove
        // it): not taken for a Valkey host.
        let err = on(&[REDIS_CONF_DIR, VALKEY_CONF]).unwrap_err();
        assert!(err.message().contains("set redis_conf"), "{err:?}");
        // A redis_conf given says which server this is.
        let mut raw = BTreeMap::new();
        raw.insert(
            "redis_conf".to_string(),
            Raw {
                value: "/srv/r.conf".into(),
                origin: "flag".into(),
            },
        );
        valkey_host_defaults(&mut raw, |_| true).unwrap();
        assert_eq!(raw.len(), 1);
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = resolve(None, no_env, &[]).unwrap();
        assert_eq!(c.redis_conf, PathBuf::from("/etc/redis/redis.conf"));
        assert_eq!(c.storage, StorageUrl::Dir("/var/lib/redis-backup".into()));
        assert_eq!(c.key_file, PathBuf::from("/etc/redis-backup/backup.key"));
        assert_eq!(c.service, "redis-server");
        assert_eq!(c.compression_level, 1);
        assert_eq!(c.segment_size, 1 << 30);
        assert_eq!(c.redis_timeout, Duration::from_secs(30));
        assert_eq!(c.max_rdb_size, 64 << 30);
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        let max_rdb_size = |value: &str| {
            resolve(None, no_env, &flags(&[("max_rdb_size", value)])).map(|c| c.max_rdb_size)
        };
        assert_eq!(max_rdb_size("1048576").unwrap(), 1 << 20);
        assert_eq!(max_rdb_size("2M").unwrap(), 2 << 20);
        assert_eq!(max_rdb_size("64g").unwrap(), 64 << 30);
        assert_eq!(max_rdb_size("64GiB").unwrap(), 64 << 30);
        assert_eq!(max_rdb_size("1TB").unwrap(), 1 << 40);
        assert_eq!(max_rdb_size("2048K").unwrap(), 2 << 20);
        for bad in ["", "G", "1.5G", "-1G", "1X", "1K", "99999999999T", "+1G"] {
            let err = max_rdb_size(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            assert!(err.message().starts_with("--max-rdb-size: "), "{err}");
        }
    }

    #[test]
    fn flag_beats_environment_beats_file() {
        let file = "storage = file:///from/file\nservice = from-file\ncompression_level = 3\n";
        let env = |name: &str| match name {
            "REDIS_BACKUP_STORAGE" => Some("file:///from/env".to_string()),
            "REDIS_BACKUP_SERVICE" => Some("from-env".to_string()),
            _ => None,
        };
        let c = resolve(
            Some((Path::new("f.conf"), file)),
            env,
            &flags(&[("storage", "file:///from/flag")]),
        )
        .unwrap();
        assert_eq!(c.storage, StorageUrl::Dir("/from/flag".into()));
        assert_eq!(c.service, "from-env");
        assert_eq!(c.compression_level, 3);
    }

    #[test]
    fn secrets_and_openstack_names_from_file_and_env() {
        let file = "# comment\nredis_password = \"s3cret\"\nos_password = p\n";
        let env = |name: &str| (name == "OS_AUTH_URL").then(|| "http://k:5000/v3".to_string());
        let c = resolve(Some((Path::new("f"), file)), env, &[]).unwrap();
        assert_eq!(c.redis_password.unwrap().expose(), "s3cret");
        assert_eq!(c.openstack["os_password"].expose(), "p");
        assert_eq!(c.openstack["os_auth_url"].expose(), "http://k:5000/v3");
    }

    /// `storage = file:///x   # or swift://...`, as an example once showed
    /// it, stored backups under a directory whose name ended in the comment.
    #[test]
    fn a_comment_after_a_value_is_refused_not_taken_for_the_value() {
        for file in [
            "storage = file:///var/lib/b   # or swift://c\n",
            "compression_level = 1\t# 0 = none\n",
            "redis_conf = /etc/redis/redis.conf #\n",
            "service = # none\n",
            "redis_user = #\n",
        ] {
            let err = resolve(Some((Path::new("s.conf"), file)), no_env, &[]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{file:?}");
            assert!(err.message().contains("s.conf:1"), "{err}");
            assert!(err.message().contains("lines of their own"), "{err}");
        }
        // `a#b` is a value, not a comment.
        let c = resolve(Some((Path::new("s.conf"), "service = a#b\n")), no_env, &[]).unwrap();
        assert_eq!(c.service, "a#b");
        // Quoted, a `#` is the value's; in a secret, whatever it holds.
        let file = "storage = \"file:///b #1\"\nredis_password = pass #word\n";
        let c = resolve(Some((Path::new("s.conf"), file)), no_env, &[]).unwrap();
        assert_eq!(c.storage, StorageUrl::Dir("/b #1".into()));
        assert_eq!(c.redis_password.unwrap().expose(), "pass #word");
    }

    /// `redis_password =` sent `AUTH ""` (exit 3, or in place of
    /// redis.conf's requirepass). An empty OpenStack setting is unset: an
    /// empty `OS_PASSWORD` in root's environment refused every command.
    #[test]
    fn an_empty_redis_password_is_a_settings_error_an_empty_os_one_unset() {
        for file in ["redis_password =\n", "redis_password = \"\"\n"] {
            let err = resolve(Some((Path::new("s.conf"), file)), no_env, &[]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{file:?}");
            assert!(err.message().contains("s.conf:1"), "{err}");
        }
        let env = |name: &str| (name == "REDIS_BACKUP_REDIS_PASSWORD").then(String::new);
        let err = resolve(None, env, &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let env = |name: &str| {
            ["OS_PASSWORD", "OS_AUTH_TOKEN"]
                .contains(&name)
                .then(String::new)
        };
        let c = resolve(Some((Path::new("s.conf"), "os_username = \n")), env, &[]).unwrap();
        assert!(c.openstack.is_empty());
    }

    #[test]
    fn swift_container_defaults_to_database_backups() {
        let c = resolve(None, no_env, &flags(&[("storage", "swift://")])).unwrap();
        assert_eq!(
            c.storage,
            StorageUrl::Swift {
                container: "database_backups".into()
            }
        );
    }

    #[test]
    fn bad_values_are_usage_errors_naming_their_origin() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("compression_level = 10\n", &[]),
            ("", &[("redis_port", "70000")]),
            ("", &[("storage", "s3://bucket")]),
            ("", &[("storage", "file://relative")]),
            ("", &[("save_timeout", "0")]),
            ("", &[("redis_timeout", "0")]),
            ("max_rdb_size = 1K\n", &[]),
            ("", &[("threads", "0")]),
            ("no_such_key = 1\n", &[]),
            ("just words\n", &[]),
            ("instance = a/b\n", &[]),
        ];
        for (file, fl) in cases {
            let err = resolve(Some((Path::new("s.conf"), file)), no_env, &flags(fl)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{file:?} {fl:?}");
            let from_flag = !fl.is_empty();
            assert!(
                err.message()
                    .contains(if from_flag { "--" } else { "s.conf:1" }),
                "{err}"
            );
        }
    }

    #[test]
    fn an_endless_settings_file_is_refused_without_reading_it_all() {
        let err = read_settings_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.message().contains("not a regular file"), "{err}");
        let dir = scratch_dir("large");
        let large = dir.join("large.conf");
        std::fs::File::create(&large)
            .and_then(|f| f.set_len(2 << 20))
            .unwrap();
        let err = read_settings_file(&large).unwrap_err();
        assert!(err.message().contains("larger than 1 MiB"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A fresh folder of ours (0755) under the temporary dir.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rb-settings-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    /// The settings choose programs run as root: nobody else may be able
    /// to change them, by the file's mode or owner or a folder on the way.
    #[test]
    fn a_settings_file_others_may_change_is_refused() {
        let dir = scratch_dir("writers");
        let file = dir.join("s.conf");
        std::fs::write(&file, "service = redis-server\n").unwrap();
        let mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        mode(&file, 0o644);
        assert!(read_settings_file(&file).is_ok());
        for bits in [0o664, 0o646] {
            mode(&file, bits);
            let err = read_settings_file(&file).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.message().contains("may be changed by others"), "{err}");
        }
        mode(&file, 0o600);
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            assert!(read_settings_file(&file).is_err(), "another account's file");
            std::os::unix::fs::chown(&file, Some(0), None).unwrap();
        }
        mode(&dir, 0o777);
        let err = read_settings_file(&file).unwrap_err();
        assert!(err.message().contains("may write in"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_malformed_line_is_not_echoed() {
        let err = resolve(Some((Path::new("s"), "hunter2\n")), no_env, &[]).unwrap_err();
        assert!(!err.message().contains("hunter2"), "{err}");
    }

    #[test]
    fn an_unknown_name_is_not_echoed_either() {
        // Found by `settings_files_never_leak_a_secret_into_an_error`: the
        // text before `=` can be the start of a password.
        for text in [
            "redis_password\thunter=2\n",
            "redis_password: hunter=2\n",
            "hunter=2\n",
        ] {
            let err = resolve(Some((Path::new("s"), text)), no_env, &[]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(err.message().starts_with("s:1: unknown setting"), "{err}");
            assert!(!err.message().contains("hunter"), "{err}");
        }
    }

    // ---- properties: any settings file is a config or a usage error ----

    mod properties {
        use super::*;
        use proptest::prelude::*;

        use crate::testing::proptest_config as config;

        /// Secrets are drawn from letters that appear in no setting name and
        /// no message of ours, so any trace of one in an error is a leak.
        const SECRET_LETTERS: &str = "жщяюф";
        fn secret() -> impl Strategy<Value = String> {
            "[жщяюф][жщяюф= :#'\"]{0,10}[жщяюф]"
        }

        fn leaks(message: &str) -> bool {
            message.chars().any(|c| SECRET_LETTERS.contains(c))
        }

        const TYPOS: &[&str] = &[": ", " ", " := ", "\t", "-", " == "];
        const QUOTES: &[&str] = &["", "\"", "'"];

        /// A line as people write them: right, wrong and in between.
        fn line() -> impl Strategy<Value = String> {
            let key = prop::sample::select(all_keys().collect::<Vec<_>>());
            let secrets: Vec<&str> = SETTINGS
                .iter()
                .filter(|s| settings::is_secret(s.key))
                .map(|s| s.key)
                .collect();
            let secret_key = || prop::sample::select(secrets.clone());
            prop_oneof![
                3 => (key, "[ -~]{0,20}").prop_map(|(k, v)| format!("{k} = {v}")),
                2 => (secret_key(), secret()).prop_map(|(k, v)| format!("{k} = {v}")),
                1 => (secret_key(), secret()).prop_map(|(k, v)| format!("  {}='{v}'  ", k.to_uppercase())),
                // Typos and pastes around a secret.
                1 => (secret_key(), secret(), prop::sample::select(TYPOS))
                    .prop_map(|(k, v, sep)| format!("{k}{sep}{v}")),
                1 => secret(),
                1 => (secret(), secret()).prop_map(|(a, b)| format!("{a}={b}")),
                1 => "[ -~]{0,30}",
                1 => "#[^\n]{0,20}",
                1 => Just(String::new()),
            ]
        }

        fn no_env(_: &str) -> Option<String> {
            None
        }

        proptest! {
            #![proptest_config(config(256))]

            #[test]
            fn arbitrary_text_is_a_config_or_a_usage_error(text in "\\PC{0,200}|[\\x00-\\x7f]{0,200}") {
                if let Err(e) = resolve(Some((Path::new("s.conf"), &text)), no_env, &[]) {
                    prop_assert_eq!(e.exit_code(), 2, "{}", e);
                    prop_assert!(e.message().starts_with("s.conf:"), "{}", e);
                }
            }

            #[test]
            fn settings_files_never_leak_a_secret_into_an_error(
                lines in prop::collection::vec(line(), 0..12),
                crlf in any::<bool>(),
            ) {
                let text = lines.join(if crlf { "\r\n" } else { "\n" });
                match resolve(Some((Path::new("s.conf"), &text)), no_env, &[]) {
                    Err(e) => {
                        prop_assert_eq!(e.exit_code(), 2, "{}", e);
                        prop_assert!(!leaks(e.message()), "secret in {:?}", e.message());
                    }
                    Ok(c) => prop_assert!(!leaks(&format!("{c:?}")), "secret in {:?}", c),
                }
            }

            #[test]
            fn the_password_is_the_value_after_the_last_redis_password(
                passwords in prop::collection::vec(secret(), 1..4),
                quote in prop::sample::select(QUOTES),
            ) {
                let text: String = passwords
                    .iter()
                    .map(|p| format!("redis_password = {quote}{p}{quote}\n"))
                    .collect();
                let c = resolve(Some((Path::new("s.conf"), &text)), no_env, &[]).unwrap();
                // Secrets start and end with a letter, so nothing is trimmed.
                let password = c.redis_password.unwrap();
                prop_assert_eq!(password.expose(), passwords.last().unwrap().as_str());
            }
        }
    }
}
