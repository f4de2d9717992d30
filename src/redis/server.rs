//! The server binary on this host (`redis-server` or `valkey-server`): what
//! it is, asked of the binary itself (`--version` works with the server
//! stopped), and which RDBs it can load. Restore asks before anything is
//! touched, so a backup the target would refuse at start-up, leaving the
//! host without its data, is refused instead.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::codec::rdb::{Magic, RdbInfo};
use crate::error::{Error, Result};

/// Which server family a binary or an RDB belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Redis,
    Valkey,
}

impl Flavor {
    /// From the lower-case name INFO and records use (`server_name`).
    pub fn from_name(name: &str) -> Flavor {
        match name {
            "valkey" => Flavor::Valkey,
            _ => Flavor::Redis,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Redis => "Redis",
            Flavor::Valkey => "Valkey",
        }
    }
}

/// A server binary and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBinary {
    /// The program as configured (`redis-server`, a path).
    pub program: String,
    pub flavor: Flavor,
    /// As the binary prints it: "7.0.15".
    pub version: String,
}

/// Valkey's `rdb-version-check` (8.1 on): whether it loads `REDIS` RDBs of
/// versions it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionCheck {
    Strict,
    Relaxed,
}

impl VersionCheck {
    /// From the target's config; Valkey's default is strict.
    pub fn from_conf(value: Option<&str>) -> VersionCheck {
        match value.map(str::to_ascii_lowercase).as_deref() {
            Some("relaxed") => VersionCheck::Relaxed,
            _ => VersionCheck::Strict,
        }
    }
}

impl ServerBinary {
    /// Runs `program --version` ("Redis server v=7.0.15 sha=…" or "Valkey
    /// server v=9.1.2 …").
    pub fn ask(program: &str) -> Result<ServerBinary> {
        let output = Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .output()
            .map_err(|e| {
                Error::usage(format!(
                    "cannot run {program} --version: {e}; set redis_server to the server's binary"
                ))
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        parse_version_line(program, &text).ok_or_else(|| {
            Error::usage(format!(
                "cannot tell what {program} is from its --version ({:?}); set redis_server to the server's binary",
                text.trim()
            ))
        })
    }

    /// The program beside this one that `--version` named differently:
    /// `tool` "check-aof" gives `redis-check-aof` (or `valkey-check-aof`),
    /// in the same directory when the server was given as a path. (In both
    /// servers these are the server binary under another name.)
    pub fn companion(&self, tool: &str) -> String {
        let name = match self.flavor {
            Flavor::Redis => format!("redis-{tool}"),
            Flavor::Valkey => format!("valkey-{tool}"),
        };
        match Path::new(&self.program).parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(name).display().to_string(),
            _ => name,
        }
    }

    /// Whether its AOF is a directory with a manifest (`appenddirname`):
    /// Redis from 7.0 on, and every Valkey (forked from 7.2). Older Redis
    /// keeps one `appendfilename` file.
    pub fn writes_multipart_aof(&self) -> bool {
        self.flavor == Flavor::Valkey || self.major() >= 7
    }

    /// The major version; 0 if it does not parse.
    pub fn major(&self) -> u32 {
        self.major_minor().0
    }

    /// Whether a backup that `flavor` `version` wrote is proven loadable by
    /// its RDB version alone: this server's own flavor, and not newer. A
    /// server loads what older releases of its own wrote (each type they
    /// know, it knows); a newer release or the other flavor can write a
    /// type this one lacks in an RDB version it takes.
    pub fn loads_all_of(&self, flavor: Flavor, version: &str) -> bool {
        let release =
            |v: &str| -> Option<Vec<u32>> { v.split('.').map(|p| p.parse().ok()).collect() };
        match (release(version), release(&self.version)) {
            (Some(theirs), Some(ours)) => flavor == self.flavor && theirs <= ours,
            _ => false,
        }
    }

    /// (major, minor) of the version; (0, 0) if it does not parse.
    fn major_minor(&self) -> (u32, u32) {
        let mut parts = self.version.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next().flatten().unwrap_or(0);
        let minor = parts.next().flatten().unwrap_or(0);
        (major, minor)
    }

    /// Whether this server can load `rdb`; if not, the reason, naming both
    /// sides. `written_by` is what the backup says wrote it ("Redis 8.2.3"),
    /// if it says.
    pub fn check_loads(
        &self,
        rdb: &RdbInfo,
        check: VersionCheck,
        written_by: Option<&str>,
    ) -> Result<()> {
        let verdict = match self.flavor {
            Flavor::Redis => self.redis_loads(rdb),
            Flavor::Valkey => self.valkey_loads(rdb, check),
        };
        if let Verdict::Refused = verdict {
            let what = match written_by {
                Some(by) => format!("an RDB of {by}"),
                None => "an RDB".to_string(),
            };
            let check = match (self.flavor, self.major_minor() >= (8, 1)) {
                (Flavor::Valkey, true) => format!(
                    " with rdb-version-check {}",
                    match check {
                        VersionCheck::Strict => "strict",
                        VersionCheck::Relaxed => "relaxed",
                    }
                ),
                _ => String::new(),
            };
            return Err(Error::integrity(format!(
                "this backup is {what} ({} version {}); {} {}{check} cannot load it; restore it on a server that can",
                magic_name(rdb.magic),
                rdb.version,
                self.program_name(),
                self.version,
            )));
        }
        if let Verdict::Foreign = verdict {
            log::warn!(
                "{} {} loads this {} version {} RDB only because rdb-version-check is relaxed; it stops at the first type it does not know",
                self.program_name(),
                self.version,
                magic_name(rdb.magic),
                rdb.version
            );
        }
        Ok(())
    }

    fn program_name(&self) -> &str {
        Path::new(&self.program)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&self.program)
    }

    /// Redis loads `REDIS` RDBs up to its own version, never `VALKEY`.
    fn redis_loads(&self, rdb: &RdbInfo) -> Verdict {
        if rdb.magic == Magic::Valkey {
            return Verdict::Refused;
        }
        let newest = match self.major_minor() {
            (0..=2, _) | (3, 0..=1) => 6,
            (3, _) => 7,
            (4, _) => 8,
            (5 | 6, _) => 9,
            (7, 0..=1) => 10,
            (7, 2..=3) => 11,
            (7, _) | (8, 0..=5) => 12,
            (8, _) => 13,
            // Newer than this table: not second-guessed.
            _ => return Verdict::Loads,
        };
        match rdb.version <= newest {
            true => Verdict::Loads,
            false => Verdict::Refused,
        }
    }

    /// Valkey loads `REDIS` RDBs up to 11 (what Redis 7.2, its fork point,
    /// writes); with `rdb-version-check relaxed`, from 9.0 on, later ones
    /// too. (8.1 accepts the directive, but 8.1.8, tried for real, still
    /// refuses version 12 with it.) Valkey 9 also loads `VALKEY` RDBs up to
    /// its own version.
    fn valkey_loads(&self, rdb: &RdbInfo, check: VersionCheck) -> Verdict {
        let major = self.major();
        match rdb.magic {
            Magic::Redis if rdb.version <= 11 => Verdict::Loads,
            Magic::Redis if major >= 9 && check == VersionCheck::Relaxed => Verdict::Foreign,
            Magic::Redis => Verdict::Refused,
            Magic::Valkey => match major {
                0..=8 => Verdict::Refused,
                9 if rdb.version <= 80 => Verdict::Loads,
                9 => Verdict::Refused,
                // Newer than this table: not second-guessed.
                _ => Verdict::Loads,
            },
        }
    }
}

enum Verdict {
    Loads,
    /// Loads only because the target was told to try.
    Foreign,
    Refused,
}

fn magic_name(magic: Magic) -> &'static str {
    match magic {
        Magic::Redis => "REDIS",
        Magic::Valkey => "VALKEY",
    }
}

fn parse_version_line(program: &str, text: &str) -> Option<ServerBinary> {
    let mut words = text.split_whitespace();
    let flavor = match words.next()? {
        "Redis" => Flavor::Redis,
        "Valkey" => Flavor::Valkey,
        _ => return None,
    };
    let version = words.find_map(|w| w.strip_prefix("v="))?.to_string();
    Some(ServerBinary {
        program: program.to_string(),
        flavor,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `redis_server` setting naming no server is a settings error.
    #[test]
    fn a_server_that_is_not_there_or_not_a_server_is_exit_2() {
        for program in ["/nonexistent/redis-server", "/bin/true"] {
            let err = ServerBinary::ask(program).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(err.message().contains("redis_server"), "{err}");
        }
    }

    #[test]
    fn older_releases_of_its_own_flavor_are_proven_by_version() {
        let server = |flavor, version: &str| ServerBinary {
            program: "redis-server".into(),
            flavor,
            version: version.into(),
        };
        let redis_7_4 = server(Flavor::Redis, "7.4.1");
        assert!(redis_7_4.loads_all_of(Flavor::Redis, "7.4.1"));
        assert!(redis_7_4.loads_all_of(Flavor::Redis, "7.2.4"));
        assert!(redis_7_4.loads_all_of(Flavor::Redis, "6.2.14"));
        assert!(!redis_7_4.loads_all_of(Flavor::Redis, "7.4.2"));
        assert!(!redis_7_4.loads_all_of(Flavor::Redis, "7.10.0"));
        assert!(!redis_7_4.loads_all_of(Flavor::Valkey, "7.2.4"));
        assert!(!redis_7_4.loads_all_of(Flavor::Redis, "7.4.x"));
        let redis_8_0 = server(Flavor::Redis, "8.0.2");
        assert!(!redis_8_0.loads_all_of(Flavor::Redis, "8.2.3"));
        let valkey_9_1 = server(Flavor::Valkey, "9.1.2");
        assert!(!valkey_9_1.loads_all_of(Flavor::Redis, "7.4.1"));
        assert!(valkey_9_1.loads_all_of(Flavor::Valkey, "8.0.1"));
    }

    fn server(line: &str) -> ServerBinary {
        parse_version_line("/usr/bin/x-server", line).unwrap()
    }

    fn rdb(magic: Magic, version: u32) -> RdbInfo {
        RdbInfo {
            magic,
            version,
            checksum: None,
        }
    }

    fn loads(target: &ServerBinary, magic: Magic, version: u32, check: VersionCheck) -> bool {
        target
            .check_loads(&rdb(magic, version), check, None)
            .is_ok()
    }

    #[test]
    fn version_lines_of_both_servers_parse() {
        let redis =
            server("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1");
        assert_eq!(
            (redis.flavor, redis.version.as_str()),
            (Flavor::Redis, "7.0.15")
        );
        let valkey = server("Valkey server v=9.1.2 sha=00000000:0 malloc=libc bits=64 build=2");
        assert_eq!(
            (valkey.flavor, valkey.version.as_str()),
            (Flavor::Valkey, "9.1.2")
        );
        assert!(parse_version_line("x", "KeyDB server v=6.3.4").is_none());
        assert!(parse_version_line("x", "").is_none());
    }

    #[test]
    fn redis_loads_its_own_version_and_older_never_valkey_9() {
        use Magic::*;
        let strict = VersionCheck::Strict;
        let r = |v: &str| server(&format!("Redis server v={v}"));
        assert!(loads(&r("7.0.15"), Redis, 10, strict));
        assert!(!loads(&r("7.0.15"), Redis, 11, strict));
        assert!(loads(&r("6.2.14"), Redis, 9, strict));
        assert!(!loads(&r("6.2.14"), Redis, 10, strict));
        assert!(loads(&r("7.4.1"), Redis, 12, strict));
        assert!(loads(&r("8.2.3"), Redis, 12, strict));
        assert!(!loads(&r("8.2.3"), Redis, 13, strict));
        assert!(loads(&r("8.6.3"), Redis, 13, strict));
        assert!(!loads(&r("8.6.3"), Valkey, 80, strict));
        assert!(loads(&r("10.0.0"), Redis, 14, strict), "not second-guessed");
    }

    #[test]
    fn valkey_loads_by_its_rules() {
        use Magic::*;
        let (strict, relaxed) = (VersionCheck::Strict, VersionCheck::Relaxed);
        let v = |v: &str| server(&format!("Valkey server v={v}"));
        assert!(loads(&v("8.0.1"), Redis, 11, strict));
        assert!(
            !loads(&v("8.0.1"), Redis, 12, relaxed),
            "no relaxed before 8.1"
        );
        assert!(!loads(&v("8.1.8"), Redis, 12, strict));
        assert!(
            !loads(&v("8.1.8"), Redis, 12, relaxed),
            "8.1.8 refuses it, tried"
        );
        assert!(!loads(&v("8.1.8"), Valkey, 80, relaxed));
        assert!(loads(&v("9.0.0"), Redis, 12, relaxed));
        assert!(loads(&v("9.1.2"), Valkey, 80, strict));
        assert!(loads(&v("9.1.2"), Redis, 10, strict));
        assert!(!loads(&v("9.1.2"), Redis, 12, strict));
        assert!(!loads(&v("9.0.0"), Valkey, 81, strict));
    }

    #[test]
    fn a_refusal_names_both_sides() {
        let target = server("Valkey server v=9.1.2");
        let err = target
            .check_loads(
                &rdb(Magic::Redis, 12),
                VersionCheck::Strict,
                Some("Redis 8.2.3"),
            )
            .unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert_eq!(
            err.message(),
            "this backup is an RDB of Redis 8.2.3 (REDIS version 12); x-server 9.1.2 with rdb-version-check strict cannot load it; restore it on a server that can"
        );
        let redis = server("Redis server v=7.0.15");
        let err = redis
            .check_loads(&rdb(Magic::Valkey, 80), VersionCheck::Strict, None)
            .unwrap_err();
        assert!(
            err.message()
                .contains("an RDB (VALKEY version 80); x-server 7.0.15 cannot"),
            "{err}"
        );
    }

    #[test]
    fn companions_sit_beside_the_server() {
        let on_path = parse_version_line("valkey-server", "Valkey server v=9.1.2").unwrap();
        assert_eq!(on_path.companion("check-aof"), "valkey-check-aof");
        let by_path = server("Redis server v=6.2.14");
        assert_eq!(by_path.companion("check-aof"), "/usr/bin/redis-check-aof");
    }

    #[test]
    fn version_check_comes_from_the_config_and_defaults_to_strict() {
        assert_eq!(VersionCheck::from_conf(None), VersionCheck::Strict);
        assert_eq!(
            VersionCheck::from_conf(Some("relaxed")),
            VersionCheck::Relaxed
        );
        assert_eq!(
            VersionCheck::from_conf(Some("RELAXED")),
            VersionCheck::Relaxed
        );
        assert_eq!(
            VersionCheck::from_conf(Some("strict")),
            VersionCheck::Strict
        );
    }
}
