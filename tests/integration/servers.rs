//! Every server its users run, for real: Redis 6.2 to 8.x and Valkey 8.0 to
//! 9.x, each the binary a host of it runs (installed by
//! tests/support/servers.sh through `make test-deps`; Debian's redis-server
//! 7.0 is the system's). For each: data of every type in two databases,
//! backup from a snapshot and from the replication stream, verify, export
//! (the SHA-256 of the record, the server's own magic), and restore with AOF
//! off and on, the data equal (DEBUG DIGEST) after the restore and again
//! after a restart. Then across servers: older into newer works; newer into
//! older, and Valkey 9 into Redis, are refused with exit 5, the target
//! untouched and running.

use crate::attacker::owner_user;
use crate::harness::*;
use serde_json::Value;
use std::path::PathBuf;

/// Where tests/support/servers.sh installs the servers.
fn servers_dir() -> PathBuf {
    std::env::var_os("REDIS_BACKUP_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/redis-backup-servers"))
}

/// The server binary of `name` ("redis-8.2.3", "valkey-9.1.2"; "redis-8.0"
/// is Debian 13's Redis 8.0, "redis-8" Debian experimental's newest Redis 8,
/// 8.6.3 when written), or Debian's redis-server for "redis-7.0".
pub fn binary(name: &str) -> PathBuf {
    if name == "redis-7.0" {
        return PathBuf::from("/usr/bin/redis-server");
    }
    let program = match name.starts_with("valkey") {
        true => "valkey-server",
        false => "redis-server",
    };
    let path = servers_dir().join(name).join("bin").join(program);
    assert!(
        path.exists(),
        "{} is missing: `make test-servers` installs it",
        path.display()
    );
    path
}

/// What the server reports as its name and version.
fn reported(t: &TestRedis) -> (String, String) {
    let mut c = t.conn();
    let info = c.info("server");
    match info.get("valkey_version") {
        Some(version) => ("valkey".into(), version.clone()),
        None => ("redis".into(), info["redis_version"].clone()),
    }
}

/// Backup (both sources), verify, export and restore on one server, with AOF
/// off and then on.
fn round_trip(name: &str) {
    let bin = binary(name);
    for aof in [false, true] {
        let mut b = TestRedis::builder().server(&bin);
        if aof {
            b = b.appendonly();
        }
        let (t, backed_up, record) = filled_and_backed_up(b);
        let id = id_of(&record);
        let (server, version) = reported(&t);
        assert_eq!(
            record["server"]["name"],
            server.as_str(),
            "{name}: {record}"
        );
        assert_eq!(record["server"]["version"], version.as_str(), "{name}");
        t.run(&["verify", &id]).ok();
        let rdb = t.export(&id, "export.rdb");
        assert_eq!(
            sha256_file(&rdb),
            record["raw_sha256"].as_str().unwrap(),
            "{name}: the export is the RDB the record describes"
        );
        let magic = std::fs::read(&rdb).unwrap()[..6].to_vec();
        let expected: &[u8] = match (server.as_str(), version.starts_with('9')) {
            ("valkey", true) => b"VALKEY",
            _ => b"REDIS0",
        };
        assert_eq!(magic, expected, "{name}: the server's own magic");

        let replicated = t.backup_json(&["--source", "replication"]);
        assert_eq!(replicated["source"], "replication", "{name}");
        t.run(&["verify", &id_of(&replicated)]).ok();

        let mut c = t.conn();
        c.ok(&["FLUSHALL"]);
        c.ok(&["SET", "after", "the backup"]);
        for backup in [&record, &replicated] {
            let restored = t.run(&["restore", &id_of(backup)]);
            restored.ok();
            if aof {
                // The target's own tool read the AOF rebuilt for it.
                restored.stderr_has("accepts the rebuilt");
            }
            assert_eq!(t.state(), backed_up, "{name}, aof {aof}: restored");
            t.stop_redis();
            t.start_redis();
            assert_eq!(t.state(), backed_up, "{name}, aof {aof}: after a restart");
        }
    }
}

#[test]
fn redis_6_2() {
    round_trip("redis-6.2.14");
}

#[test]
fn redis_7_0() {
    round_trip("redis-7.0");
}

#[test]
fn redis_7_2() {
    round_trip("redis-7.2.4");
}

#[test]
fn redis_7_4() {
    round_trip("redis-7.4.1");
}

#[test]
fn redis_8_0() {
    round_trip("redis-8.0");
}

#[test]
fn redis_8_2() {
    round_trip("redis-8.2.3");
}

/// Debian experimental's Redis 8 (8.6.3, RDB version 13, when written).
#[test]
fn redis_8_6() {
    round_trip("redis-8");
}

#[test]
fn valkey_8_0() {
    round_trip("valkey-8.0.1");
}

#[test]
fn valkey_8_1() {
    round_trip("valkey-8.1.8");
}

#[test]
fn valkey_9_0() {
    round_trip("valkey-9.0.0");
}

#[test]
fn valkey_9_1() {
    round_trip("valkey-9.1.2");
}

/// A backup of `from` restored onto a fresh `to` sharing its storage and key.
fn across(from: &str, to: &str) -> (Output, TestRedis, Value) {
    across_onto(from, TestRedis::builder().server(&binary(to)))
}

/// A backup of `from` restored onto a fresh `target` sharing its storage and key.
fn across_onto(from: &str, target: Builder) -> (Output, TestRedis, Value) {
    let (source, _, record) = filled_and_backed_up(TestRedis::builder().server(&binary(from)));
    let mut target = target.start();
    target.use_backups_of(&source);
    target.conn().ok(&["SET", "target", "own data"]);
    let out = target.run(&["restore", &id_of(&record)]);
    (out, target, record)
}

#[test]
fn older_into_newer_works() {
    for (from, to) in [
        ("redis-6.2.14", "redis-7.0"),
        ("redis-7.0", "redis-8.2.3"),
        ("redis-8.0", "redis-8.2.3"),
        // Newer, but the same RDB version (12): 8.0 loads it.
        ("redis-8.2.3", "redis-8.0"),
        ("redis-8.2.3", "redis-8"),
        ("redis-7.2.4", "valkey-8.1.8"),
        ("valkey-8.0.1", "valkey-9.1.2"),
        ("redis-7.0", "valkey-9.0.0"),
    ] {
        let (out, target, record) = across(from, to);
        out.ok();
        assert_eq!(
            keys_of_record(&record),
            target.state().keys,
            "{from} into {to}"
        );
    }
}

#[test]
fn newer_into_older_is_refused_and_the_target_untouched() {
    for (from, to, why) in [
        ("redis-8.2.3", "redis-7.0", "cannot load it"),
        ("redis-8.0", "redis-7.2.4", "cannot load it"),
        ("redis-8", "redis-8.2.3", "cannot load it"),
        (
            "redis-8",
            "valkey-9.1.2",
            "rdb-version-check strict cannot load it",
        ),
        (
            "redis-7.4.1",
            "valkey-9.1.2",
            "rdb-version-check strict cannot load it",
        ),
        ("valkey-9.1.2", "redis-8.2.3", "VALKEY version 80"),
        ("valkey-9.0.0", "valkey-8.1.8", "cannot load it"),
    ] {
        let (out, target, _) = across(from, to);
        out.code(5).stderr_has(why);
        assert!(target.is_active(), "{from} into {to}: the target stopped");
        let mut c = target.conn();
        assert_eq!(
            c.call(&["GET", "target"]).text(),
            "own data",
            "{from} into {to}"
        );
    }
}

#[test]
fn valkey_9_with_rdb_version_check_relaxed_takes_a_newer_redis_rdb() {
    // Refused under strict (above); relaxed in the target's own config lets
    // Valkey 9 load it (these types it knows). Valkey 8.1 accepts the
    // directive but still refuses version 12: the tool refuses it there.
    let relaxed = |server: &str| {
        TestRedis::builder()
            .server(&binary(server))
            .conf_line("rdb-version-check relaxed")
    };
    let (out, target, record) = across_onto("redis-7.4.1", relaxed("valkey-9.1.2"));
    out.ok().stderr_has("rdb-version-check is relaxed");
    assert_eq!(keys_of_record(&record), target.state().keys);
    let (out, target, _) = across_onto("redis-7.4.1", relaxed("valkey-8.1.8"));
    out.code(5)
        .stderr_has("valkey-server 8.1.8 with rdb-version-check relaxed cannot load it");
    assert!(target.is_active());
    assert_eq!(target.conn().call(&["GET", "target"]).text(), "own data");
}

/// A Debian 13 Valkey host, for the runs of one test: each run is in a
/// mount namespace of its own where /etc is an overlay without
/// /etc/redis/redis.conf and with /etc/valkey/valkey.conf (the test's
/// config), and /usr/local/bin an overlay holding valkey-server and its
/// check tools, as the package installs them. The host's own files are
/// untouched: the overlays' upper dirs are in the test's scratch.
struct ValkeyHost<'a> {
    t: &'a TestRedis,
    dir: PathBuf,
}

impl<'a> ValkeyHost<'a> {
    const UNIT: &'static str = "valkey-server";

    fn new(t: &'a TestRedis, server: &str) -> ValkeyHost<'a> {
        let dir = t.scratch().join("valkey-host");
        for sub in ["etc-up", "etc-work", "bin-up", "bin-work"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let bin = binary(server);
        std::fs::write(dir.join("bin-dir"), bin.parent().unwrap().to_str().unwrap()).unwrap();
        // The unit the package ships, started with the package's config.
        let shim = |ext: &str, text: &str| {
            std::fs::write(t.shim_dir.join(format!("{}.{ext}", Self::UNIT)), text).unwrap()
        };
        shim("conf", "/etc/valkey/valkey.conf\n");
        shim("server", "/usr/local/bin/valkey-server\n");
        if let Ok(user) = std::fs::read_to_string(t.shim_dir.join(format!("{}.user", t.unit))) {
            shim("user", &user);
        }
        ValkeyHost { t, dir }
    }

    /// The same host with Redis installed beside Valkey: `/etc/redis`
    /// (2770, the redis account's, as Debian makes it) holding the
    /// config of `redis`, whose account is `owner_user()`.
    fn beside_redis(t: &'a TestRedis, server: &str, redis: &TestRedis) -> ValkeyHost<'a> {
        let host = Self::new(t, server);
        std::fs::write(host.dir.join("beside-redis"), "").unwrap();
        let owner = owner_user();
        let setup = format!(
            "rm -rf /etc/redis && mkdir -m 2770 /etc/redis && cp '{}' /etc/redis/redis.conf && chmod 0640 /etc/redis/redis.conf && chown -R {owner}:{owner} /etc/redis",
            redis.redis_conf().display()
        );
        host.run(&["sh", "-c", &setup]).ok();
        host
    }

    fn run(&self, command: &[&str]) -> Output {
        let script = r#"set -e
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/etc-up,workdir=$1/etc-work" /etc
[ -e "$1/beside-redis" ] || rm -rf /etc/redis
mkdir -p /etc/valkey
cp "$2" /etc/valkey/valkey.conf
mount -t overlay overlay -o "lowerdir=/usr/local/bin,upperdir=$1/bin-up,workdir=$1/bin-work" /usr/local/bin
bin=$(cat "$1/bin-dir")
for tool in valkey-server valkey-check-aof valkey-check-rdb; do ln -sf "$bin/$tool" /usr/local/bin/$tool; done
shift 2
exec "$@""#;
        let dir = self.dir.display().to_string();
        let conf = self.t.redis_conf().display().to_string();
        let mut args = vec![
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ];
        args.extend([dir.as_str(), conf.as_str()]);
        args.extend(command);
        self.t.with_env(Run::new("unshare").args(&args)).run()
    }

    fn tool(&self, args: &[&str]) -> Output {
        let settings = self.t.settings_file().display().to_string();
        let mut command = vec![BIN, "-c", settings.as_str()];
        command.extend(args);
        self.run(&command)
    }
}

impl Drop for ValkeyHost<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["systemctl", "stop", Self::UNIT]);
    }
}

/// On a host with Valkey's layout and no redis.conf, the tool needs none of
/// redis_conf, service or redis_server: it finds /etc/valkey/valkey.conf,
/// stops and starts the valkey-server unit, asks valkey-server what it
/// loads, rebuilds the AOF with it and checks it with valkey-check-aof (or
/// -rdb), and names the server as Valkey.
#[test]
fn a_valkey_host_needs_no_server_settings() {
    if !is_root() {
        eprintln!("skipped: needs root for mount namespaces");
        return;
    }
    let server = "valkey-9.1.2";
    let mut t = TestRedis::builder()
        .server(&binary(server))
        .appendonly()
        .run_as("redis")
        .prepare();
    for key in ["redis_conf", "service", "redis_server"] {
        t.remove_setting(key);
    }
    let host = ValkeyHost::new(&t, server);
    host.run(&["systemctl", "start", ValkeyHost::UNIT]).ok();
    fill_every_type(&mut t.conn());
    let backed_up = t.state();

    let out = host.tool(&["backup"]);
    out.ok().stderr_has("Valkey 9.1.2");
    let id = out.last_line();
    t.conn().ok(&["FLUSHALL"]);
    let out = host.tool(&["restore", &id]);

    out.ok()
        .stderr_has("started a private valkey-server 9.1.2")
        .stderr_has("valkey-check-rdb accepts the rebuilt");
    assert!(
        out.stderr
            .contains(&format!("{} was out of service", ValkeyHost::UNIT)),
        "the valkey-server unit was not the one restarted\n{out}"
    );
    assert_eq!(t.state(), backed_up);
    assert_eq!(t.conn().info_field("persistence", "aof_enabled"), "1");
    let record: Value =
        serde_json::from_str(&host.tool(&["--json", "show", &id]).ok().stdout).unwrap();
    assert_eq!(record["server"]["name"], "valkey", "{record}");
}

/// Redis and Valkey on one host, the settings naming neither's config: the
/// redis account removes its own redis.conf (its folder, `/etc/redis`, is
/// its own), and the tool took the host for a Valkey one. The operator's
/// next restore of a Redis backup stopped the valkey-server unit and
/// replaced the Valkey account's data with the redis account's (exit 0).
/// Which server a host runs is now told by `/etc/redis` itself, in root's
/// `/etc`: the restore is refused with exit 2, asking for redis_conf, and
/// Valkey is left alone.
#[test]
fn the_redis_account_cannot_make_a_restore_take_the_host_for_a_valkey_one() {
    if !is_root() {
        eprintln!("skipped: needs root for mount namespaces");
        return;
    }
    let redis = crate::attacker::debian_redis().start();
    redis.conn().ok(&["SET", "from", "the-redis-account"]);
    let id = redis.backup();
    let server = "valkey-9.1.2";
    let mut valkey = TestRedis::builder()
        .server(&binary(server))
        .run_as("redis")
        .prepare();
    valkey.use_backups_of(&redis);
    for key in ["redis_conf", "service", "redis_server"] {
        valkey.remove_setting(key);
    }
    let host = ValkeyHost::beside_redis(&valkey, server, &redis);
    host.run(&["systemctl", "start", ValkeyHost::UNIT]).ok();
    valkey.conn().ok(&["SET", "valkey-only", "precious"]);
    valkey.conn().ok(&["SAVE"]);
    let before = valkey.state();
    let pid = valkey.pid();
    let owner = owner_user();
    host.run(&[
        "setpriv",
        &format!("--reuid={owner}"),
        &format!("--regid={owner}"),
        "--clear-groups",
        "rm",
        "/etc/redis/redis.conf",
    ])
    .ok();

    let out = host.tool(&["restore", &id]);

    out.code(2).stderr_has("redis_conf");
    assert_eq!(valkey.pid(), pid, "Valkey was restarted\n{out}");
    assert_eq!(valkey.state(), before, "Valkey's data was replaced\n{out}");
}

/// Where the RDB version says a server loads a backup but a type in it
/// says otherwise (Redis 8.2's vector sets in 8.0, of the same RDB version;
/// Redis 7.4's hash field TTLs in a Valkey 9 that takes version 12 with
/// `rdb-version-check relaxed`), the target's own server loads it first,
/// privately: refused with exit 5, naming both sides and the server's
/// reason, before the target is stopped (the same process still runs).
#[test]
fn a_backup_holding_a_type_the_target_lacks_is_refused_before_it_is_stopped() {
    let vector_set: &[&[&str]] = &[&["VADD", "vs", "VALUES", "2", "1", "2", "e1"]];
    let field_ttl: &[&[&str]] = &[
        &["HSET", "h", "f1", "a", "f2", "b"],
        &["HEXPIRE", "h", "100000", "FIELDS", "1", "f1"],
    ];
    let target = |server: &str| TestRedis::builder().server(&binary(server));
    for (from, fill, onto, why) in [
        ("redis-8.2.3", vector_set, target("redis-8.0"), "vectorset"),
        (
            "redis-8.2.3",
            vector_set,
            target("redis-8.0").appendonly(),
            "vectorset",
        ),
        (
            "redis-7.4.1",
            field_ttl,
            target("valkey-9.1.2").conf_line("rdb-version-check relaxed"),
            "opcode 25",
        ),
    ] {
        let source = TestRedis::builder().server(&binary(from)).start();
        for command in fill {
            source.conn().ok(command);
        }
        let record = source.backup_json(&[]);
        let mut target = onto.start();
        target.use_backups_of(&source);
        target.conn().ok(&["SET", "target", "own data"]);
        let pid = target.conn().info("server")["process_id"].clone();
        let out = target.run(&["restore", &id_of(&record)]);
        out.code(5)
            .stderr_has(&format!("Redis {}", &from["redis-".len()..]))
            .stderr_has(why)
            .stderr_has("Redis was not touched");
        let mut c = target.conn();
        assert_eq!(
            c.info("server")["process_id"],
            pid,
            "{from}: the target was stopped"
        );
        assert_eq!(c.call(&["GET", "target"]).text(), "own data", "{from}");
    }
}

/// A window archived from Redis 7.2 (RDB version 11), replayed by Redis
/// 7.0 (`redis_server`), which cannot load its base: said as such, exit 5
/// as restore says it of such a backup, not as an archived stream that
/// "could not be applied" (the PITR review).
#[test]
fn a_window_whose_base_the_replay_server_cannot_load_is_said_to_be_so() {
    let mut t = TestRedis::builder()
        .server(&binary("redis-7.2.4"))
        .setting("archive_interval", "1")
        .start();
    t.conn().ok(&["SET", "k", "v"]);
    let mut archiver = t.cmd(&["archive"]).watch();
    archiver.wait_for_line("stored");
    t.conn().ok(&["SET", "k", "w"]);
    assert_eq!(t.conn().call(&["WAIT", "1", "20000"]).int(), 1);
    archiver.signal("TERM");
    archiver.finish().ok();
    let windows = t.run(&["--json", "timeline"]).json();
    let end = windows[0]["to"].as_str().expect("a window").to_string();
    t.set_setting("redis_server", "/usr/bin/redis-server");
    t.set_setting("save_timeout", "15");

    let out = t.run(&[
        "export",
        "--at",
        &end,
        "--out",
        &t.path("at.rdb").display().to_string(),
    ]);

    out.code(5)
        .stderr_has("cannot load the window's base")
        .stderr_has("RDB format version 11");
}
