//! The Redis instance on this host, as the settings and its own redis.conf
//! describe it: how to reach it, and where its data files are. The running
//! server's live values (CONFIG GET) win over the file, because an operator may
//! have changed them at runtime; the file is the fallback when CONFIG is renamed
//! away or Redis is not running (a restore onto a stopped or fresh instance).

use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::conf::RedisConf;
use crate::redis::tcp_owner::is_this_hosts;
use crate::redis::{ConnectOptions, Connection, Endpoint};
use log::info;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Redis's config, or, when it is not on this host and the settings say how
/// to reach Redis (a replication backup of a remote server), its defaults.
pub fn read_conf(config: &Config) -> Result<RedisConf> {
    let endpoint_given =
        config.redis_host.is_some() || config.redis_port.is_some() || config.redis_socket.is_some();
    if endpoint_given && !config.redis_conf.exists() {
        info!(
            "no {} on this host; reaching Redis through the settings alone",
            config.redis_conf.display()
        );
        return Ok(RedisConf::defaults(&config.redis_conf));
    }
    crate::redis::conf::load(&config.redis_conf)
}

/// Settings take precedence; otherwise Redis is reached the way its own
/// config says: the Unix socket if it has one, else TCP on its bind address.
pub fn connect_options(
    config: &Config,
    conf: &RedisConf,
    timeout: Duration,
) -> Result<ConnectOptions> {
    let tcp_chosen = config.redis_host.is_some() || config.redis_port.is_some();
    let endpoint = if let Some(socket) = &config.redis_socket {
        Endpoint::Unix(socket.clone())
    } else if let (false, Some(socket)) = (tcp_chosen, &conf.unixsocket) {
        conf_socket(conf, socket)?
    } else {
        let port = match (config.redis_port, &config.redis_host) {
            (Some(port), _) => port,
            // The conf describes the server on this host: its port is no
            // word for another, least of all one others may write.
            (None, Some(host)) if !conf_is_roots(conf) && !names_this_host(host, conf.port) => {
                return Err(Error::usage(format!(
                    "redis_host {host} is not this host, and the port in {} is not root's word alone; set redis_port",
                    conf.source.display()
                )));
            }
            (None, _) => conf.port,
        };
        if port == 0 {
            return Err(Error::usage(format!(
                "{} has port 0 and no unixsocket; set redis_socket or redis_port",
                conf.source.display()
            )));
        }
        let host = match &config.redis_host {
            Some(host) => host.clone(),
            None => conf_host(conf, port)?,
        };
        // A port the conf chose must be one its account listens on; one
        // the settings chose is checked too, if the conf tells whose (once
        // connected, if it is a port of this host: `tcp_owner`). A conf
        // that names a data dir which cannot be opened (a volume that did
        // not mount) tells nobody's: then only root's will do. Redis cannot
        // run there anyway, and any account may listen on its port.
        let account = match config.redis_port.is_none() && !conf_is_roots(conf) {
            true => redis_account(conf)?.map(|uid| vec![uid]),
            false => match redis_account(conf) {
                Ok(account) => account.map(|uid| vec![uid]),
                Err(e) => {
                    log::debug!("whose Redis's port is cannot be told ({e}): only root's is taken");
                    Some(Vec::new())
                }
            },
        };
        match account {
            Some(owners) => Endpoint::TcpOf { host, port, owners },
            None => Endpoint::Tcp { host, port },
        }
    };
    // redis.conf's renames and password describe the server it configures.
    // Sent to a server the settings chose instead (a remote primary), they
    // would let whoever writes redis.conf pick what we send there
    // (`rename-command PING FLUSHALL`): only root's word goes that far.
    let endpoint_chosen = tcp_chosen || config.redis_socket.is_some();
    let conf_speaks_for_endpoint = !endpoint_chosen || conf_is_roots(conf);
    if !conf_speaks_for_endpoint
        && (conf.requirepass.is_some() || !conf.renamed_commands.is_empty())
    {
        log::warn!(
            "{} is not root's alone, and the settings name the server to reach: its requirepass and rename-command lines are not used for {endpoint} (set redis_password in the settings)",
            conf.source.display()
        );
    }
    Ok(ConnectOptions {
        endpoint,
        user: config.redis_user.clone(),
        password: config.redis_password.clone().or_else(|| {
            conf.requirepass
                .clone()
                .filter(|_| conf_speaks_for_endpoint)
        }),
        renamed_commands: match conf_speaks_for_endpoint {
            true => conf.renamed_commands.clone(),
            false => Default::default(),
        },
        timeout,
    })
}

/// The socket redis.conf names. Root connecting passes any socket's
/// permissions, so a conf that is not root's alone may only lead us to a
/// socket of the account Redis runs as (`redis_account`).
fn conf_socket(conf: &RedisConf, socket: &std::path::Path) -> Result<Endpoint> {
    if conf_is_roots(conf) {
        return Ok(Endpoint::Unix(socket.to_path_buf()));
    }
    Ok(Endpoint::UnixOf {
        path: socket.to_path_buf(),
        owners: redis_account(conf)?
            .into_iter()
            .filter(|&uid| uid != 0)
            .collect(),
    })
}

/// The account Redis runs as, by its config: the owner of the data dir it
/// names (Redis writes its dump there), or, if it names no absolute dir,
/// the one account other than root that writes the config. A port or a
/// socket is taken only if it is that account's (or root's): any account
/// may listen on a port while Redis does not, and root's connect passes any
/// socket's permissions. A config that is not root's alone must be allowed
/// to name that dir (`check_authority`, which a backup and a restore hold
/// it to later anyway), checked before anything is sent: otherwise a third
/// account that may write it would point us at a dir, and so a server, of
/// another's. `None`: the config does not tell (a conf of root's that
/// names no absolute dir); an error: it names a dir that cannot be opened,
/// or one its writer has no say over.
fn redis_account(conf: &RedisConf) -> Result<Option<u32>> {
    let roots = conf_is_roots(conf);
    if let Some(dir) = conf.dir.as_ref().filter(|dir| dir.is_absolute()) {
        let data = crate::fs::data_dir::DataDir::open(dir)?;
        if !roots {
            conf.check_authority(data.path(), data.owner())?;
        }
        return Ok(Some(data.owner().uid));
    }
    if roots {
        return Ok(None);
    }
    let mut writers: Vec<u32> = conf
        .files
        .iter()
        .map(|f| f.uid)
        .filter(|&uid| uid != 0)
        .collect();
    writers.sort_unstable();
    writers.dedup();
    let everybody = conf.files.iter().any(|f| f.mode & 0o002 != 0);
    match (everybody, writers.as_slice()) {
        (false, []) => Ok(None),
        (false, [one]) => Ok(Some(*one)),
        _ => Err(Error::usage(format!(
            "{} may be written by more than one account, and names no absolute data dir (dir) to tell which runs Redis; set redis_port or redis_socket in the settings",
            conf.source.display()
        ))),
    }
}

/// Every file of the config is root's and writable by root alone.
fn conf_is_roots(conf: &RedisConf) -> bool {
    conf.files.iter().all(|file| file.is_roots_alone())
}

/// The host to dial as redis.conf's `bind` names it. Redis can listen only
/// on this host's own addresses, so a conf that is not root's alone naming
/// another is its writer's way to have us send the settings' password, and
/// our commands, to a host of its choosing: refused, before anything is
/// sent. Redis binds every entry (one marked `-` only if it can), so the
/// first that is this host's will do.
fn conf_host(conf: &RedisConf, port: u16) -> Result<String> {
    if conf_is_roots(conf) || conf.bind.is_empty() {
        return Ok(local_address(&conf.bind));
    }
    let own = conf.bind.iter().find_map(|entry| {
        let host = local_address(std::slice::from_ref(entry));
        addresses_of(&host, port)
            .into_iter()
            .find(|&ip| is_this_hosts(ip))
    });
    match own {
        Some(ip) => Ok(ip.to_string()),
        None => Err(Error::redis(format!(
            "{} binds Redis to {}, not an address of this host; set redis_host in the settings if Redis is elsewhere",
            conf.source.display(),
            conf.bind.join(" ")
        ))),
    }
}

/// Whether every address `host` has is one of this host's.
fn names_this_host(host: &str, port: u16) -> bool {
    let addrs = addresses_of(host, port);
    !addrs.is_empty() && addrs.into_iter().all(is_this_hosts)
}

/// The addresses `host` resolves to (none if it does not).
fn addresses_of(host: &str, port: u16) -> Vec<IpAddr> {
    (host, port)
        .to_socket_addrs()
        .into_iter()
        .flatten()
        .map(|addr| addr.ip())
        .collect()
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

/// Where the instance keeps its data, and whether it keeps any.
#[derive(Debug, Clone)]
pub struct DataFiles {
    pub dir: PathBuf,
    pub dbfilename: String,
    /// Redis 7's multipart AOF directory (relative to `dir`).
    pub appenddirname: String,
    /// The pre-7 single AOF file (relative to `dir`); also the base name of
    /// Redis 7's manifest and parts.
    pub appendfilename: String,
    /// `None`: no `save` line (Redis's built-in rules apply); `Some("")`: off.
    pub save_rules: Option<String>,
    pub appendonly: bool,
}

impl DataFiles {
    /// From the running server, with redis.conf for anything CONFIG won't say.
    pub fn live(redis: &mut Connection, conf: &RedisConf) -> Result<DataFiles> {
        let mut files = DataFiles::from_conf(conf);
        match redis.config_get("dir")? {
            Some(dir) => files.dir = PathBuf::from(dir),
            // Redis resolves a relative dir against its own working directory,
            // which we cannot know: guessing would read or write the wrong files.
            None if files.dir.is_relative() => {
                return Err(Error::usage(format!(
                    "{} gives the relative dir {:?} and CONFIG is unavailable to ask Redis where it is; set an absolute dir",
                    conf.source.display(),
                    files.dir
                )))
            }
            None => {}
        }
        if let Some(name) = redis.config_get("dbfilename")? {
            files.dbfilename = name;
        }
        if let Some(name) = redis.config_get("appenddirname")? {
            files.appenddirname = name;
        }
        if let Some(name) = redis.config_get("appendfilename")? {
            files.appendfilename = name;
        }
        if let Some(rules) = redis.config_get("save")? {
            files.save_rules = Some(rules);
        }
        if let Some(value) = redis.config_get("appendonly")? {
            files.appendonly = value == "yes";
        }
        Ok(files)
    }

    /// From redis.conf alone; `dir` as written there (Redis's default is its
    /// working directory, `./`).
    pub fn from_conf(conf: &RedisConf) -> DataFiles {
        DataFiles {
            dir: conf.dir.clone().unwrap_or_else(|| PathBuf::from(".")),
            dbfilename: conf.dbfilename.clone(),
            appenddirname: conf.appenddirname.clone(),
            appendfilename: conf.appendfilename.clone(),
            save_rules: conf.save.clone(),
            appendonly: conf.appendonly,
        }
    }

    pub fn dump_path(&self) -> PathBuf {
        self.dir.join(&self.dbfilename)
    }

    /// Redis 7's AOF manifest, which names the base and increment files.
    pub fn aof_manifest(&self) -> PathBuf {
        self.dir
            .join(&self.appenddirname)
            .join(format!("{}.manifest", self.appendfilename))
    }

    /// The names, relative to `dir`, a restore must move aside: the dump, the
    /// Redis 7 AOF directory and the pre-7 AOF file.
    pub fn data_names(&self) -> [&str; 3] {
        [&self.dbfilename, &self.appenddirname, &self.appendfilename]
    }

    /// No save rules (`save ""`) and no AOF: Redis keeps nothing on disk, so
    /// neither may a backup leave the dump it made Redis write.
    pub fn persistent(&self) -> bool {
        self.appendonly || self.save_rules.as_deref() != Some("")
    }

    pub fn persistence_kind(&self) -> &'static str {
        if self.appendonly {
            "aof"
        } else {
            "rdb"
        }
    }

    pub fn describe_persistence(&self) -> String {
        match (self.appendonly, self.save_rules.as_deref()) {
            (true, _) => "AOF".into(),
            (false, Some("")) => "off (the dump is removed after the backup)".into(),
            (false, None) => "RDB (default save rules)".into(),
            (false, Some(rules)) => format!("RDB (save {rules})"),
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

    /// Debian's redis.conf: the redis account's, 0640, naming a data dir
    /// of the account's. As root, the account is uid 102 (gid 105);
    /// otherwise the user running the tests.
    fn conf_of_the_account(name: &str) -> RedisConf {
        let dir = crate::testing::scratch_dir(name);
        let (uid, gid) = match rustix::process::geteuid().as_raw() {
            0 => (102, 105),
            _ => (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
        };
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        let mut conf = RedisConf::defaults(std::path::Path::new("/etc/redis/redis.conf"));
        conf.dir = Some(dir);
        conf.files.push(crate::redis::conf::ConfFile {
            path: conf.source.clone(),
            uid,
            gid,
            mode: 0o640,
            via: None,
            owner: uid,
        });
        conf
    }

    fn account_of(conf: &RedisConf) -> u32 {
        conf.files[0].uid
    }

    fn settings(pairs: &[(&str, &str)]) -> Config {
        let flags: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(None, &flags).unwrap()
    }

    #[test]
    fn a_conf_not_roots_alone_may_bind_only_this_hosts_addresses() {
        let mut conf = conf_of_the_account("bind-only-this-host");
        let mut bound = |addresses: &[&str]| {
            conf.bind = addresses.iter().map(|s| s.to_string()).collect();
            conf_host(&conf, 6379).map_err(|e| e.to_string())
        };
        assert_eq!(bound(&["127.0.0.1"]).unwrap(), "127.0.0.1");
        assert_eq!(bound(&["127.0.0.5"]).unwrap(), "127.0.0.5");
        assert_eq!(bound(&["*"]).unwrap(), "127.0.0.1");
        let localhost: IpAddr = bound(&["localhost"]).unwrap().parse().unwrap();
        assert!(localhost.is_loopback());
        // 198.51.100.0/24 is for documentation: never a host's own.
        let refused = bound(&["198.51.100.7"]).unwrap_err();
        assert!(refused.contains("not an address of this host"), "{refused}");
        // Redis binds each entry: the first of this host's will do.
        assert_eq!(bound(&["-198.51.100.7", "127.0.0.1"]).unwrap(), "127.0.0.1");
        // The settings name another host: the conf's port is not used.
        let endpoint = |pairs: &[(&str, &str)]| {
            connect_options(&settings(pairs), &conf, Duration::ZERO).map(|o| o.endpoint.to_string())
        };
        let err = endpoint(&[("redis_host", "198.51.100.9")]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.message().contains("set redis_port"), "{err}");
        let both = [("redis_host", "198.51.100.9"), ("redis_port", "6380")];
        assert_eq!(endpoint(&both).unwrap(), "198.51.100.9:6380");
        assert_eq!(
            endpoint(&[("redis_host", "127.0.0.1")]).unwrap(),
            "127.0.0.1:6379"
        );
        // Root's own conf is root's word, wherever it points.
        conf.files[0].uid = 0;
        assert_eq!(conf_host(&conf, 6379).unwrap(), "198.51.100.7");
    }

    #[test]
    fn a_socket_named_by_a_conf_two_accounts_write_is_nobodys() {
        let mut conf = conf_of_the_account("socket-two-accounts");
        let socket = std::path::Path::new("/run/redis/redis.sock");
        match conf_socket(&conf, socket).unwrap() {
            Endpoint::UnixOf { owners, .. } => assert_eq!(owners, [account_of(&conf)]),
            other => panic!("{other}"),
        }
        let mut theirs = conf.files[0].clone();
        (theirs.uid, theirs.owner) = (103, 103);
        conf.files.push(theirs);
        let err = conf_socket(&conf, socket).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
    }

    /// A conf another account may write (here one file of it is that
    /// account's) may not choose the port or the socket: its word is
    /// refused before anything is sent, as it names a data dir not its
    /// own. Without a data dir, its one writer is Redis's account. A port
    /// of this host is taken only if that account (or root) listens there.
    #[test]
    fn a_conf_speaks_only_for_the_account_of_its_data_dir() {
        let mut conf = conf_of_the_account("conf-account");
        let account = account_of(&conf);
        let endpoint = |conf: &RedisConf, pairs: &[(&str, &str)]| {
            connect_options(&settings(pairs), conf, Duration::ZERO).map(|o| o.endpoint)
        };
        let listened_by = |uid: u32| Endpoint::TcpOf {
            host: "127.0.0.1".into(),
            port: 6379,
            owners: vec![uid],
        };
        assert_eq!(endpoint(&conf, &[]).unwrap(), listened_by(account));
        let mut third = conf.files[0].clone();
        (third.uid, third.owner) = (account + 1, account + 1);
        conf.files.push(third);
        let err = endpoint(&conf, &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.message().contains("may be written by uid"), "{err}");
        // The settings choose the port: the conf's writers choose nothing,
        // and, telling no account, leave the port unchecked.
        let chosen = endpoint(&conf, &[("redis_port", "6380")]).unwrap();
        assert_eq!(chosen.to_string(), "127.0.0.1:6380");
        conf.dir = None;
        let err = endpoint(&conf, &[]).unwrap_err();
        assert!(err.message().contains("more than one account"), "{err}");
        conf.files.pop();
        assert_eq!(endpoint(&conf, &[]).unwrap(), listened_by(account));
        // Another host: checked only if the connection is made to this
        // host after all (`tcp_owner`).
        let remote = endpoint(
            &conf,
            &[("redis_host", "198.51.100.9"), ("redis_port", "6379")],
        );
        assert!(matches!(remote.unwrap(), Endpoint::TcpOf { .. }));
    }

    #[test]
    fn a_conf_of_redis_names_no_password_or_renames_for_a_server_the_settings_chose() {
        let mut conf = conf_of_the_account("no-password-for-others");
        conf.requirepass = Some(crate::secret::Secret::new("pw"));
        conf.renamed_commands
            .insert("ping".into(), "flushall".into());
        let remote_settings = settings(&[("redis_host", "10.0.0.9"), ("redis_port", "6379")]);
        let remote = connect_options(&remote_settings, &conf, Duration::ZERO).unwrap();
        assert!(remote.password.is_none());
        assert!(remote.renamed_commands.is_empty());
        // Its own server (the endpoint from the conf): its word counts.
        let own = connect_options(&settings(&[]), &conf, Duration::ZERO).unwrap();
        assert!(own.password.is_some());
        assert_eq!(own.renamed_commands["ping"], "flushall");
        // Root's conf speaks for any server.
        conf.files[0].uid = 0;
        let remote = connect_options(
            &settings(&[("redis_host", "10.0.0.9")]),
            &conf,
            Duration::ZERO,
        )
        .unwrap();
        assert!(remote.password.is_some());
    }

    #[test]
    fn persistence_is_off_only_without_save_rules_and_aof() {
        let files = |save: Option<&str>, aof| DataFiles {
            dir: "/x".into(),
            dbfilename: "dump.rdb".into(),
            appenddirname: "appendonlydir".into(),
            appendfilename: "appendonly.aof".into(),
            save_rules: save.map(str::to_string),
            appendonly: aof,
        };
        assert!(!files(Some(""), false).persistent());
        assert!(
            files(None, false).persistent(),
            "no save line = default rules"
        );
        assert!(files(Some("3600 1"), false).persistent());
        assert!(files(Some(""), true).persistent());
        assert_eq!(files(Some(""), true).persistence_kind(), "aof");
        assert_eq!(
            files(None, true).aof_manifest(),
            PathBuf::from("/x/appendonlydir/appendonly.aof.manifest")
        );
    }
}
