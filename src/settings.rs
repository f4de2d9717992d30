//! The one table of settings: each key with its default, how it may be given
//! (a flag, or only the file and the environment because it is a secret or
//! belongs to the file), and its help line. The command line parser, the
//! settings loader and the help text take their keys from here, and a test
//! holds the README's settings table and `--help` to it.

/// How a setting may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    /// Flag, environment or file.
    Flag,
    /// Environment or file only (`instance`: a per-host fact).
    FileOnly,
    /// A secret: environment or file only, never argv (it would show in `ps`).
    Secret,
    /// An OpenStack credential or endpoint, by its OpenStack name
    /// (`OS_AUTH_URL`, ...); the secret ones are among `Secret`.
    OpenStack,
}

pub struct Setting {
    pub key: &'static str,
    /// As the README shows it; empty where the value is worked out at run
    /// time and the help line says how.
    pub default: &'static str,
    pub given: Given,
    pub help: &'static str,
}

const fn setting(
    key: &'static str,
    default: &'static str,
    given: Given,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        default,
        given,
        help,
    }
}

use Given::{FileOnly, Flag, OpenStack, Secret};

pub const SETTINGS: &[Setting] = &[
    setting(
        "redis_conf",
        "/etc/redis/redis.conf",
        Flag,
        "Redis's own config",
    ),
    setting(
        "redis_host",
        "",
        Flag,
        "how to reach Redis (default: from redis_conf)",
    ),
    setting(
        "redis_port",
        "",
        Flag,
        "how to reach Redis (default: from redis_conf)",
    ),
    setting(
        "redis_socket",
        "",
        Flag,
        "how to reach Redis (default: from redis_conf)",
    ),
    setting(
        "redis_user",
        "",
        Flag,
        "ACL user (default: the default user)",
    ),
    setting(
        "redis_password",
        "",
        Secret,
        "Redis's password (default: requirepass of redis_conf)",
    ),
    setting(
        "service",
        "redis-server",
        Flag,
        "systemd unit that restore stops and starts",
    ),
    setting(
        "redis_server",
        "redis-server",
        Flag,
        "the server binary restore asks what it loads and runs to rebuild an AOF",
    ),
    setting(
        "storage",
        "file:///var/lib/redis-backup",
        Flag,
        "file:///DIR or swift://CONTAINER",
    ),
    setting(
        "key_file",
        "/etc/redis-backup/backup.key",
        Flag,
        "master key, made by keygen",
    ),
    setting("compression_level", "1", Flag, "0 = none, 1..9 deflate"),
    setting(
        "segment_size",
        "1073741824",
        Flag,
        "Swift segment size in bytes",
    ),
    // Ten seconds of writes at most are lost with the host; shorter makes
    // more, smaller objects.
    setting(
        "archive_interval",
        "10",
        Flag,
        "seconds between stored chunks of the archived write stream (minimum 1)",
    ),
    // Bounds what the archiver holds in memory between chunks.
    setting(
        "archive_chunk_size",
        "8M",
        Flag,
        "bytes after which a chunk is stored before archive_interval (K/M/G suffixes)",
    ),
    setting(
        "instance",
        "",
        FileOnly,
        "recorded with each backup (default: the host name)",
    ),
    setting(
        "lock_file",
        "/run/redis-backup.lock",
        Flag,
        "the per-host lock",
    ),
    // How long Redis may take to write (or, for a replica, send) a snapshot.
    setting(
        "save_timeout",
        "3600",
        Flag,
        "seconds to wait for a save, a load, an AOF rewrite or a sync",
    ),
    // A healthy Redis answers the commands we send (INFO, CONFIG GET,
    // LASTSAVE, PING) in milliseconds; 30 s leaves room for a server busy
    // with someone else's large command.
    setting(
        "redis_timeout",
        "30",
        Flag,
        "seconds one command to Redis may take, reply included",
    ),
    // An RDB is normally smaller than the dataset it holds in memory, and the
    // hosts this tool runs on have far less than 64 GiB for Redis: a longer
    // stream is a server that will not stop, and this bounds what it can make
    // us store while the host lock is held (raise it for a larger instance).
    setting(
        "max_rdb_size",
        "64G",
        Flag,
        "largest RDB a backup takes (K/M/G/T suffixes)",
    ),
    setting(
        "threads",
        "",
        Flag,
        "compression and encryption threads (default: the number of cores, at most 4)",
    ),
    setting(
        "status_file",
        "",
        Flag,
        "JSON status of the last backup/restore, and .prom beside it",
    ),
    setting(
        "storage_timeout",
        "120",
        Flag,
        "seconds a Swift request may wait for an answer",
    ),
    setting(
        "swift_allow_http",
        "no",
        Flag,
        "yes allows plain http to Swift (a test cloud)",
    ),
    setting(
        "os_storage_url",
        "",
        OpenStack,
        "pre-authenticated Swift account URL",
    ),
    setting("os_auth_token", "", Secret, "pre-authenticated Swift token"),
    setting("os_auth_url", "", OpenStack, "Keystone v3 URL"),
    setting("os_username", "", OpenStack, "Keystone user"),
    setting("os_password", "", Secret, "Keystone password"),
    setting("os_project_name", "", OpenStack, "Keystone project"),
    setting(
        "os_user_domain_name",
        "",
        OpenStack,
        "Keystone user domain (default Default)",
    ),
    setting(
        "os_project_domain_name",
        "",
        OpenStack,
        "Keystone project domain (default Default)",
    ),
    setting(
        "os_region_name",
        "",
        OpenStack,
        "region of the object store in the catalog",
    ),
    setting(
        "os_interface",
        "",
        OpenStack,
        "public, internal or admin (default public)",
    ),
    setting(
        "os_application_credential_id",
        "",
        OpenStack,
        "Keystone application credential",
    ),
    setting(
        "os_application_credential_secret",
        "",
        Secret,
        "Keystone application credential secret",
    ),
    setting(
        "os_cacert",
        "",
        OpenStack,
        "CA bundle trusted besides the system's",
    ),
    setting("st_auth", "", OpenStack, "TempAuth (v1) URL"),
    setting("st_user", "", OpenStack, "TempAuth user"),
    setting("st_key", "", Secret, "TempAuth key"),
];

pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

pub fn is_flag(key: &str) -> bool {
    find(key).is_some_and(|s| s.given == Flag)
}

pub fn is_secret(key: &str) -> bool {
    find(key).is_some_and(|s| s.given == Secret)
}

/// OpenStack's own settings (credentials and endpoints), secret or not:
/// they are handed to the storage layer as they are.
pub fn is_openstack(key: &str) -> bool {
    key.starts_with("os_") || key.starts_with("st_")
}

/// `REDIS_BACKUP_KEY_FILE` for `key_file`; OpenStack names keep their own spelling.
pub fn env_name(key: &str) -> String {
    if is_openstack(key) {
        key.to_uppercase()
    } else {
        format!("REDIS_BACKUP_{}", key.to_uppercase())
    }
}

/// The settings part of `--help`: each flag with its help line and default.
pub fn help_lines() -> String {
    SETTINGS
        .iter()
        .filter(|s| s.given == Flag)
        .map(|s| {
            let flag = format!("--{}", s.key.replace('_', "-"));
            let default = match s.default {
                "" => String::new(),
                d => format!(" (default {d})"),
            };
            format!("  {flag:<22} {}{default}\n", s.help)
        })
        .collect()
}

/// Worker threads when the settings do not say: one per core, up to 4.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's settings table: key and default of each row.
    fn readme_rows() -> Vec<(String, String)> {
        let readme = include_str!("../README.md");
        let table = readme
            .split("| key | default | meaning |")
            .nth(1)
            .expect("README has the settings table");
        table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .flat_map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let default = cells[2].trim_matches('`').to_string();
                cells[1]
                    .split(',')
                    .map(|k| k.trim().trim_matches('`').to_string())
                    .map(|k| (k, default.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_readme_table_lists_every_setting_with_its_default() {
        let rows = readme_rows();
        for s in SETTINGS.iter().filter(|s| !is_openstack(s.key)) {
            let row = rows.iter().find(|(k, _)| k == s.key);
            let (_, default) = row.unwrap_or_else(|| panic!("{} is not in README's table", s.key));
            if !s.default.is_empty() {
                assert_eq!(default, s.default, "README's default of {}", s.key);
            }
        }
        for (key, _) in &rows {
            assert!(
                find(key).is_some(),
                "README lists {key}, which is no setting"
            );
        }
    }

    #[test]
    fn the_help_names_every_flag() {
        let help = crate::cli::main_help();
        for s in SETTINGS.iter().filter(|s| s.given == Flag) {
            let flag = format!("--{}", s.key.replace('_', "-"));
            assert!(help.contains(&flag), "--help does not mention {flag}");
        }
    }

    #[test]
    fn the_loaded_defaults_are_the_tables() {
        let config = crate::config::Config::load(None, &[]).unwrap();
        let default = |key: &str| find(key).unwrap().default;
        assert_eq!(config.redis_conf.to_str(), Some(default("redis_conf")));
        assert_eq!(config.service, default("service"));
        assert_eq!(config.key_file.to_str(), Some(default("key_file")));
        assert_eq!(
            config.compression_level.to_string(),
            default("compression_level")
        );
        assert_eq!(config.segment_size.to_string(), default("segment_size"));
        assert_eq!(config.lock_file.to_str(), Some(default("lock_file")));
        assert_eq!(
            config.save_timeout.as_secs().to_string(),
            default("save_timeout")
        );
        assert_eq!(
            config.redis_timeout.as_secs().to_string(),
            default("redis_timeout")
        );
        assert_eq!(config.max_rdb_size, 64 << 30, "{}", default("max_rdb_size"));
        assert_eq!(
            config.storage_timeout.as_secs().to_string(),
            default("storage_timeout")
        );
        assert!(!config.swift_allow_http, "{}", default("swift_allow_http"));
        assert_eq!(config.threads, default_threads());
    }
}
