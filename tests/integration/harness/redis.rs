//! The Redis under test (TestRedis, through the systemctl stand-in), a
//! throwaway server that loads an RDB or makes one, and the tool's lock held
//! from the test.

use super::*;

/// Save rules written to redis.conf.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Save {
    /// No `save` line: Redis's built-in rules, persistence on.
    #[default]
    Default,
    /// `save ""`: no RDB persistence.
    Off,
}

/// Options for a `TestRedis`; `TestRedis::builder()` starts one.
#[derive(Debug, Clone)]
pub struct Builder {
    requirepass: Option<String>,
    acl_user: Option<(String, String)>,
    default_user_off: bool,
    unix_only: bool,
    renames: Vec<(String, String)>,
    save: Save,
    appendonly: bool,
    run_as: Option<String>,
    conf_owner: Option<String>,
    keygen: bool,
    settings: Vec<(String, String)>,
    conf_lines: Vec<String>,
    server: Option<PathBuf>,
}

impl Builder {
    /// Run this server binary (another redis-server, or a valkey-server)
    /// instead of Debian's redis-server: the shim's `UNIT.server`, and the
    /// tool's `redis_server`.
    pub fn server(mut self, binary: &Path) -> Builder {
        self.settings
            .push(("redis_server".into(), binary.display().to_string()));
        self.server = Some(binary.to_path_buf());
        self
    }

    /// `requirepass PW` in redis.conf (the tool finds it there).
    pub fn requirepass(mut self, pw: &str) -> Builder {
        self.requirepass = Some(pw.into());
        self
    }

    /// `user NAME on >PW ~* &* +@all` in redis.conf. The tool is NOT told about
    /// it: add `redis_user`/`redis_password` with `setting` or the environment.
    pub fn acl_user(mut self, name: &str, pw: &str) -> Builder {
        self.acl_user = Some((name.into(), pw.into()));
        self
    }

    /// `user default off`: only the ACL user may connect.
    pub fn default_user_off(mut self) -> Builder {
        self.default_user_off = true;
        self
    }

    /// `port 0` plus `unixsocket <scratch>/redis.sock`, `unixsocketperm 700`.
    pub fn unix_socket_only(mut self) -> Builder {
        self.unix_only = true;
        self
    }

    /// `rename-command FROM TO` (`TO` empty disables the command).
    pub fn rename_command(mut self, from: &str, to: &str) -> Builder {
        self.renames.push((from.into(), to.into()));
        self
    }

    pub fn save(mut self, save: Save) -> Builder {
        self.save = save;
        self
    }

    pub fn appendonly(mut self) -> Builder {
        self.appendonly = true;
        self
    }

    /// Run redis-server as this user (the shim's `UNIT.user`); the data dir is
    /// chowned to the user.
    pub fn run_as(mut self, user: &str) -> Builder {
        self.run_as = Some(user.into());
        self
    }

    /// redis.conf owned by this user (and its group), mode 0640, as Debian
    /// ships `/etc/redis/redis.conf` (redis:redis 0640): that user may edit it.
    pub fn redis_conf_owner(mut self, user: &str) -> Builder {
        self.conf_owner = Some(user.into());
        self
    }

    /// Do not make a key file (harness self-tests that must not need the binary).
    pub fn without_key(mut self) -> Builder {
        self.keygen = false;
        self
    }

    /// One more `key = value` line in the tool's settings file.
    pub fn setting(mut self, key: &str, value: &str) -> Builder {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// One more raw line in redis.conf.
    pub fn conf_line(mut self, line: &str) -> Builder {
        self.conf_lines.push(line.into());
        self
    }

    /// Write everything, make the key, start Redis through the shim.
    pub fn start(self) -> TestRedis {
        let mut t = self.prepare();
        t.start_first_time();
        t
    }

    /// Write everything and make the key, but do not start Redis.
    pub fn prepare(self) -> TestRedis {
        let scratch = Scratch::new("t");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let unit = format!("rbtest-{}-{n}", std::process::id());
        let shim_dir = scratch.join("systemd");
        fs::create_dir_all(&shim_dir).expect("mkdir shim dir");
        fs::create_dir_all(scratch.join("data")).expect("mkdir data");
        fs::write(
            shim_dir.join(format!("{unit}.conf")),
            format!("{}\n", scratch.join("redis.conf").display()),
        )
        .expect("write unit file");
        if let Some(server) = &self.server {
            fs::write(
                shim_dir.join(format!("{unit}.server")),
                format!("{}\n", server.display()),
            )
            .expect("write unit server");
        }
        if let Some(user) = &self.run_as {
            fs::write(shim_dir.join(format!("{unit}.user")), format!("{user}\n"))
                .expect("write unit user");
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(scratch.join("data"), Some(uid), Some(gid))
                .expect("chown data dir");
        }
        let mut settings = vec![
            (
                "redis_conf".to_string(),
                scratch.join("redis.conf").display().to_string(),
            ),
            (
                "storage".to_string(),
                format!("file://{}", scratch.join("backups").display()),
            ),
            (
                "key_file".to_string(),
                scratch.join("backup.key").display().to_string(),
            ),
            (
                "lock_file".to_string(),
                scratch.join("redis-backup.lock").display().to_string(),
            ),
            ("service".to_string(), unit.clone()),
        ];
        settings.extend(self.settings.iter().cloned());
        let mut t = TestRedis {
            opts: self,
            port: 0,
            unit,
            shim_dir,
            settings,
            scratch,
        };
        if !t.opts.unix_only {
            t.port = free_port();
        }
        t.write_redis_conf();
        t.write_settings();
        if t.opts.keygen {
            let key = t.key_file();
            t.cmd(&["keygen", "--out", &key.display().to_string()])
                .run()
                .ok();
            assert_eq!(
                mode_of(&key) & 0o077,
                0,
                "keygen made a key readable by others"
            );
        }
        t
    }
}

/// One test's world: a scratch directory with redis.conf, the tool's settings
/// file and key, and a redis-server run through the systemctl stand-in.
/// Dropping it kills whatever Redis is left.
pub struct TestRedis {
    opts: Builder,
    /// TCP port, 0 when unix-socket only.
    pub port: u16,
    /// The systemd unit name (the tool's `service` setting).
    pub unit: String,
    pub shim_dir: PathBuf,
    settings: Vec<(String, String)>,
    scratch: Scratch,
}

impl TestRedis {
    pub fn builder() -> Builder {
        Builder {
            requirepass: None,
            acl_user: None,
            default_user_off: false,
            unix_only: false,
            renames: Vec::new(),
            save: Save::Default,
            appendonly: false,
            run_as: None,
            conf_owner: None,
            keygen: true,
            settings: Vec::new(),
            conf_lines: Vec::new(),
            server: None,
        }
    }

    /// A plain Redis with default settings, started, with a key.
    pub fn start() -> TestRedis {
        TestRedis::builder().start()
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.scratch.join(rel)
    }

    pub fn redis_conf(&self) -> PathBuf {
        self.path("redis.conf")
    }

    pub fn settings_file(&self) -> PathBuf {
        self.path("redis-backup.conf")
    }

    pub fn key_file(&self) -> PathBuf {
        self.path("backup.key")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.path("redis-backup.lock")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path("data")
    }

    pub fn dump_file(&self) -> PathBuf {
        self.path("data/dump.rdb")
    }

    /// The directory of the default `storage` (may not exist yet).
    pub fn storage_dir(&self) -> PathBuf {
        self.path("backups")
    }

    pub fn socket(&self) -> PathBuf {
        self.path("redis.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.shim_dir.join(format!("{}.pid", self.unit))
    }

    pub fn log_file(&self) -> PathBuf {
        self.shim_dir.join(format!("{}.log", self.unit))
    }

    /// The lines the shim was called with (`start UNIT`, ...).
    pub fn shim_calls(&self) -> Vec<String> {
        fs::read_to_string(self.shim_dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Entries of the storage directory, sorted.
    pub fn storage_files(&self) -> Vec<String> {
        dir_entries(&self.storage_dir())
    }

    /// Restore from `source`'s storage with its key, as another host
    /// sharing them would.
    pub fn use_backups_of(&mut self, source: &TestRedis) {
        self.set_setting(
            "storage",
            &format!("file://{}", source.storage_dir().display()),
        );
        self.set_setting("key_file", &source.key_file().display().to_string());
    }

    /// Set (replace or add) a line of the tool's settings file.
    pub fn set_setting(&mut self, key: &str, value: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.into(), value.into()));
        self.write_settings();
    }

    pub fn remove_setting(&mut self, key: &str) {
        self.settings.retain(|(k, _)| k != key);
        self.write_settings();
    }

    fn write_settings(&self) {
        let mut text = String::from("# written by the redis-backup integration tests\n");
        for (k, v) in &self.settings {
            text.push_str(&format!("{k} = {v}\n"));
        }
        let path = self.settings_file();
        fs::write(&path, text).expect("write settings file");
        set_mode(&path, 0o600);
    }

    fn write_redis_conf(&self) {
        let o = &self.opts;
        let s = self.scratch();
        let mut c = String::from("# written by the redis-backup integration tests\n");
        if o.unix_only {
            c.push_str("port 0\n");
            c.push_str(&format!("unixsocket {}\n", self.socket().display()));
            c.push_str("unixsocketperm 700\n");
        } else {
            c.push_str("bind 127.0.0.1\n");
            c.push_str(&format!("port {}\n", self.port));
        }
        c.push_str("daemonize yes\n");
        c.push_str(&format!("pidfile {}\n", self.pid_file().display()));
        c.push_str(&format!("logfile {}\n", self.log_file().display()));
        c.push_str(&format!("dir {}\n", s.join("data").display()));
        c.push_str("dbfilename dump.rdb\n");
        // DEBUG (for DEBUG DIGEST) is off by default from Redis 7 on; older
        // servers know no such directive and have it on.
        if !o.server.as_deref().is_some_and(before_redis_7) {
            c.push_str("enable-debug-command yes\n");
        }
        c.push_str(if o.appendonly {
            "appendonly yes\n"
        } else {
            "appendonly no\n"
        });
        match &o.save {
            Save::Default => {}
            Save::Off => c.push_str("save \"\"\n"),
        }
        if let Some(pw) = &o.requirepass {
            c.push_str(&format!("requirepass {pw}\n"));
        }
        if let Some((user, pw)) = &o.acl_user {
            c.push_str(&format!("user {user} on >{pw} ~* &* +@all\n"));
        }
        if o.default_user_off {
            c.push_str("user default off\n");
        }
        for (from, to) in &o.renames {
            let to = if to.is_empty() {
                "\"\"".to_string()
            } else {
                to.clone()
            };
            c.push_str(&format!("rename-command {from} {to}\n"));
        }
        for line in &o.conf_lines {
            c.push_str(line);
            c.push('\n');
        }
        fs::write(self.redis_conf(), c).expect("write redis.conf");
        set_mode(&self.redis_conf(), 0o644);
        if let Some(user) = &o.conf_owner {
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(self.redis_conf(), Some(uid), Some(gid))
                .expect("chown redis.conf");
            set_mode(&self.redis_conf(), 0o640);
        }
    }

    /// First start: pick a free port (retrying if a parallel test took it).
    fn start_first_time(&mut self) {
        let attempts = if self.opts.unix_only { 1 } else { 5 };
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.port = free_port();
                self.write_redis_conf();
            }
            let out = self.systemctl(&["start", &self.unit]);
            if out.code == Some(0) {
                return;
            }
            let log = fs::read_to_string(self.log_file()).unwrap_or_default();
            let port_taken = log.contains("Address already in use")
                || log.contains("Could not create server TCP listening socket");
            if !(port_taken && attempt < attempts) {
                panic!("could not start redis-server through the shim\n{out}\n--- log ---\n{log}");
            }
            let _ = fs::remove_file(self.log_file());
        }
    }

    /// Run the systemctl stand-in directly (as the tool would).
    pub fn systemctl(&self, args: &[&str]) -> Output {
        Run::new(&support_dir().join("systemctl").display().to_string())
            .args(args)
            .env("SYSTEMCTL_SHIM_DIR", self.shim_dir.display().to_string())
            .run()
    }

    /// `systemctl ARGS` for a thread of the test's own (which cannot borrow
    /// the server): whether it succeeded, its stderr dropped.
    pub fn systemctl_for_a_thread(&self) -> impl Fn(&[&str]) -> bool + Clone + Send + 'static {
        let (systemctl, shim_dir) = (support_dir().join("systemctl"), self.shim_dir.clone());
        move |args: &[&str]| {
            Command::new(&systemctl)
                .args(args)
                .env("SYSTEMCTL_SHIM_DIR", &shim_dir)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        }
    }

    /// `systemctl start UNIT`, which must succeed.
    pub fn start_redis(&self) {
        self.systemctl(&["start", &self.unit]).ok();
    }

    /// A crash (kill -9 of the server, no save), then `systemctl start`:
    /// what the server comes back with is what it keeps on disk.
    pub fn crash_and_start_again(&self) {
        kill9(self.pid().expect("the server's pid"));
        wait_for("Redis to die", || (!self.is_active()).then_some(()));
        self.start_redis();
    }

    /// `systemctl stop UNIT`, which must succeed.
    pub fn stop_redis(&self) {
        self.systemctl(&["stop", &self.unit]).ok();
    }

    /// `systemctl is-active --quiet UNIT`.
    pub fn is_active(&self) -> bool {
        self.systemctl(&["is-active", "--quiet", &self.unit]).code == Some(0)
    }

    /// Make the next `systemctl start` of this unit fail (or not).
    pub fn fail_start(&self, fail: bool) {
        let marker = self.shim_dir.join(format!("{}.fail-start", self.unit));
        if fail {
            fs::write(marker, "").expect("write fail-start marker");
        } else {
            let _ = fs::remove_file(marker);
        }
    }

    /// Have `systemctl stop` wait for the server with no deadline, as
    /// Debian's redis-server.service does (`TimeoutStopSec=0`).
    pub fn stop_without_timeout(&self) {
        let marker = self.shim_dir.join(format!("{}.stop-timeout-0", self.unit));
        fs::write(marker, "").expect("write stop-timeout-0 marker");
    }

    /// Make only the next `systemctl start` of this unit fail (the shim's
    /// `UNIT.fail-start-once`, which that start removes).
    pub fn fail_start_once(&self) {
        fs::write(self.fail_start_once_marker(), "").expect("write fail-start-once marker");
    }

    pub fn fail_start_once_marker(&self) -> PathBuf {
        self.shim_dir.join(format!("{}.fail-start-once", self.unit))
    }

    /// The pid of the running redis-server, if any.
    pub fn pid(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// A connection without AUTH.
    pub fn raw_conn(&self) -> std::io::Result<Resp> {
        if self.opts.unix_only {
            Resp::unix(&self.socket())
        } else {
            Resp::tcp(self.port)
        }
    }

    /// A connection authenticated as configured (ACL user, else requirepass).
    pub fn conn(&self) -> Resp {
        let mut c = self
            .raw_conn()
            .unwrap_or_else(|e| panic!("cannot connect to the test Redis: {e}"));
        if let Some((user, pw)) = &self.opts.acl_user {
            c.ok(&["AUTH", user, pw]);
        } else if let Some(pw) = &self.opts.requirepass {
            c.ok(&["AUTH", pw]);
        }
        c
    }

    /// `DEBUG DIGEST` and per-db DBSIZE of the live server.
    pub fn state(&self) -> DbState {
        self.conn().state_via(&self.command_name("CONFIG"))
    }

    /// What `command` is called on this server: its `rename-command` name,
    /// else itself. Panics if it was disabled (renamed to "").
    pub fn command_name(&self, command: &str) -> String {
        match self
            .opts
            .renames
            .iter()
            .rev()
            .find(|(from, _)| from.eq_ignore_ascii_case(command))
        {
            Some((_, to)) if to.is_empty() => panic!("{command} is disabled on this server"),
            Some((_, to)) => to.clone(),
            None => command.to_string(),
        }
    }

    /// `CONFIG GET param` (under CONFIG's renamed name, if any): the value.
    pub fn config_get(&self, param: &str) -> String {
        let config = self.command_name("CONFIG");
        match self.conn().ok(&[config.as_str(), "GET", param]) {
            Reply::Array(a) if a.len() == 2 => a[1].text(),
            other => panic!("{config} GET {param}: {other:?}"),
        }
    }

    /// `<storage>/<id>.rbk`, the stored object of a backup.
    pub fn object_file(&self, id: &str) -> PathBuf {
        self.storage_dir().join(format!("{id}.rbk"))
    }

    /// `<storage>/<id>.json`, the stored record of a backup.
    pub fn record_file(&self, id: &str) -> PathBuf {
        self.storage_dir().join(format!("{id}.json"))
    }

    /// Every file under the data dir (relative path -> SHA-256), to prove
    /// that something left them byte for byte as they were.
    pub fn data_files(&self) -> BTreeMap<String, String> {
        file_hashes(&self.data_dir())
    }

    /// The work folders of restore (`redis-backup-restore-*`) in the data dir.
    pub fn restore_work_dirs(&self) -> Vec<PathBuf> {
        dir_entries(&self.data_dir())
            .into_iter()
            .filter(|name| name.starts_with(RESTORE_WORK_PREFIX))
            .map(|name| self.data_dir().join(name))
            .collect()
    }

    /// The pid a running restore noted for its private server (in its work
    /// folder's `private-redis.pid`), once it has noted one.
    pub fn private_server_pid(&self) -> Option<u32> {
        self.restore_work_dirs().iter().find_map(|w| {
            fs::read_to_string(w.join("private-redis.pid"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Live redis-servers working in this test's data dir (their cwd), other
    /// than the one the shim runs: e.g. a private server restore left behind.
    pub fn stray_redis_servers(&self) -> Vec<u32> {
        let data = fs::canonicalize(self.data_dir()).expect("data dir");
        let ours = self.pid();
        live_redis_servers()
            .into_iter()
            .filter(|&pid| Some(pid) != ours)
            // In the data dir, or below it (a restore's private server
            // works in its work folder's `aof/`).
            .filter(|pid| {
                fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&data))
            })
            .collect()
    }

    /// Lines of the shim's calls.log from line `from` on.
    pub fn shim_calls_since(&self, from: usize) -> Vec<String> {
        self.shim_calls().into_iter().skip(from).collect()
    }

    /// A command line for the binary: `-c <settings file>` then `args`, with
    /// the shim first on PATH and its directory in `SYSTEMCTL_SHIM_DIR`.
    pub fn cmd<S: AsRef<str>>(&self, args: &[S]) -> Run {
        self.with_env(
            Run::new(BIN)
                .arg("-c")
                .arg(self.settings_file().display().to_string())
                .args(args),
        )
    }

    /// Add this test's environment to any run: the shim first on PATH and its
    /// directory in `SYSTEMCTL_SHIM_DIR`.
    pub fn with_env(&self, run: Run) -> Run {
        let path = format!(
            "{}:{}",
            support_dir().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        run.env("PATH", path)
            .env("SYSTEMCTL_SHIM_DIR", self.shim_dir.display().to_string())
    }

    /// Run the binary with `args` (see `cmd`).
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Output {
        self.cmd(args).run()
    }

    /// `backup`, which must succeed; returns the ID (last line of stdout).
    pub fn backup(&self) -> String {
        let out = self.run(&["backup"]);
        out.ok();
        out.last_line()
    }

    /// `backup --json`, which must succeed; returns the record.
    pub fn backup_json(&self, extra: &[&str]) -> Value {
        let mut args = vec!["--json", "backup"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        out.ok();
        out.json()
    }

    /// `export ID --out <scratch>/<name>`, which must succeed; returns the path.
    pub fn export(&self, id: &str, name: &str) -> PathBuf {
        let out = self.path(name);
        self.run(&["export", id, "--out", &out.display().to_string()])
            .ok();
        out
    }

    /// `list --json` parsed, which must succeed.
    pub fn list(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["--json", "list"];
        args.extend_from_slice(extra);
        match self.run(&args).ok().json() {
            Value::Array(items) => items,
            other => panic!("list --json is not an array: {other}"),
        }
    }
}

/// Whether `server` is a Redis older than 7.0 (from its `--version`).
fn before_redis_7(server: &Path) -> bool {
    let out = Command::new(server).arg("--version").output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.is_ok_and(|t| {
        t.starts_with("Redis server v=")
            && t["Redis server v=".len()..]
                .split('.')
                .next()
                .and_then(|major| major.parse::<u32>().ok())
                .is_some_and(|major| major < 7)
    })
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            kill_and_wait(pid);
        }
    }
}

/// SIGKILL `pid` if it is a redis-server or valkey-server, and wait until it
/// is gone.
fn kill_and_wait(pid: u32) {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if !cmdline.contains("redis-server") && !cmdline.contains("valkey-server") {
        return;
    }
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat) => {
                let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
                if state == Some('Z') {
                    return;
                }
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A port that was free a moment ago (callers retry if someone took it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------
// A throwaway server: to look into an RDB file, or to make one

/// A throwaway redis-server (unix socket only, no persistence) that loaded an
/// RDB file, or started empty to make one; killed and cleaned up when
/// dropped.
pub struct LoadedRdb {
    child: Child,
    socket: PathBuf,
    scratch: Scratch,
}

impl LoadedRdb {
    /// A server with no data, on a socket of root's (0700).
    pub fn empty() -> LoadedRdb {
        LoadedRdb::start(Scratch::new("rdb"), "start empty")
    }

    /// A server with no data run as `user`, in a folder of that user's
    /// (0700) holding its socket (0700): another account's Redis.
    pub fn empty_as(user: &str) -> LoadedRdb {
        let scratch = Scratch::new("rdb");
        let (uid, gid) = user_ids(user);
        std::os::unix::fs::chown(scratch.path(), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", scratch.path().display()));
        set_mode(scratch.path(), 0o700);
        LoadedRdb::start_as(scratch, &format!("start empty as {user}"), Some((uid, gid)))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its folder (`dir`), which holds its socket.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    pub fn load(rdb: &Path) -> LoadedRdb {
        let scratch = Scratch::new("rdb");
        fs::copy(rdb, scratch.join("dump.rdb"))
            .unwrap_or_else(|e| panic!("copy {}: {e}", rdb.display()));
        LoadedRdb::start(scratch, &format!("load {}", rdb.display()))
    }

    /// A server in `scratch`, loading `scratch/dump.rdb` if there is one;
    /// `what` it was started for goes into the message if it cannot.
    fn start(scratch: Scratch, what: &str) -> LoadedRdb {
        LoadedRdb::start_as(scratch, what, None)
    }

    /// `start`, as the account `ids` (uid, gid) if given.
    fn start_as(scratch: Scratch, what: &str, ids: Option<(u32, u32)>) -> LoadedRdb {
        let socket = scratch.join("s.sock");
        let mut command = match ids {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                    "--clear-groups",
                ]);
                c.arg("redis-server");
                c
            }
            None => Command::new("redis-server"),
        };
        let child = command
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(scratch.path())
            .args([
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
                "--daemonize",
                "no",
                "--logfile",
            ])
            .arg(scratch.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut loaded = LoadedRdb {
            child,
            socket,
            scratch,
        };
        let log = loaded.scratch.join("redis.log");
        wait_for(&format!("a throwaway redis-server to {what}"), || {
            if let Ok(Some(status)) = loaded.child.try_wait() {
                panic!(
                    "redis-server could not {what} ({status}):\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let mut c = Resp::unix(&loaded.socket).ok()?;
            match c.try_call(&["PING"]).ok()? {
                Reply::Status(s) if s == "PONG" => Some(()),
                _ => None, // -LOADING
            }
        });
        loaded
    }

    pub fn conn(&self) -> Resp {
        Resp::unix(&self.socket).expect("connect to throwaway redis")
    }

    pub fn state(&self) -> DbState {
        self.conn().state()
    }

    /// GET `key` in db 0.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.conn().ok(&["GET", key]) {
            Reply::Nil => None,
            r => Some(r.bytes().expect("bulk").to_vec()),
        }
    }
}

impl Drop for LoadedRdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Load `rdb` into a throwaway server and return its digest and DBSIZEs.
pub fn digest_of_rdb(rdb: &Path) -> DbState {
    LoadedRdb::load(rdb).state()
}

/// The bytes of an RDB holding `pairs` (string keys in db 0), written by a
/// throwaway redis-server.
pub fn make_rdb(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let server = LoadedRdb::start(Scratch::new("mkrdb"), "make an RDB");
    let mut conn = server.conn();
    for (key, value) in pairs {
        conn.ok(&[b"SET".as_slice(), key.as_bytes(), value]);
    }
    conn.ok(&["SAVE"]);
    fs::read(server.scratch.join("dump.rdb")).expect("read the RDB made")
}

// ---------------------------------------------------------------------------
// Holding the tool's lock from the test process

/// Open `path` and take an exclusive lock on it, as another run would.
pub fn hold_lock(path: &Path) -> fs::File {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.try_lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    file
}
