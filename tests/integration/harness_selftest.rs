//! Tests of the harness itself, which need no working `redis-backup`: the
//! systemctl stand-in (start, stop, is-active, failure injection, run-as-user),
//! the RESP client, the fake Redis (scripted replies and drip-feed),
//! `fill_every_type` and `digest_of_rdb`, and the runner's environment. If these fail, the other failures mean nothing.

use crate::harness::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn shim_starts_stops_and_reports_redis() {
    let t = TestRedis::builder().without_key().start();
    assert!(t.is_active(), "is-active after start");
    let mut c = t.conn();
    assert_eq!(c.ok(&["PING"]), Reply::Status("PONG".into()));
    c.ok(&["SET", "survives", "restart"]);
    drop(c);

    // start on an active unit is a no-op, like systemd's
    let pid = t.pid().expect("pid file");
    t.start_redis();
    assert_eq!(
        t.pid(),
        Some(pid),
        "second start must not start another server"
    );

    t.stop_redis();
    assert!(!t.is_active(), "is-active after stop");
    assert!(
        t.raw_conn().is_err(),
        "still accepting connections after stop"
    );
    // stop on an inactive unit succeeds
    t.stop_redis();

    // default save rules: Redis saved on SIGTERM and loads it again
    t.start_redis();
    assert!(t.is_active());
    let got = t.conn().ok(&["GET", "survives"]);
    assert_eq!(got, Reply::Bulk(b"restart".to_vec()));

    let calls = t.shim_calls();
    let stop = format!("stop {}", t.unit);
    let is_active = format!("is-active --quiet {}", t.unit);
    assert!(calls.contains(&stop), "calls.log: {calls:?}");
    assert!(calls.contains(&is_active), "calls.log: {calls:?}");
}

#[test]
fn shim_fail_start_marker_makes_start_fail() {
    let t = TestRedis::builder().without_key().start();
    t.stop_redis();
    t.fail_start(true);
    let out = t.systemctl(&["start", &t.unit]);
    out.code(1);
    assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
    assert!(!t.is_active());
    t.fail_start(false);
    t.start_redis();
    assert!(t.is_active());
    // ".service" suffix is accepted too
    t.systemctl(&["stop", &format!("{}.service", t.unit)]).ok();
    assert!(!t.is_active());
}

#[test]
fn shim_rejects_other_forms() {
    let t = TestRedis::builder().without_key().prepare();
    t.systemctl(&["restart", &t.unit]).code(2);
    t.systemctl(&["is-active", &t.unit]).code(2);
    t.systemctl(&["start"]).code(2);
    // an unknown unit cannot start
    t.systemctl(&["start", "no-such-unit"]).code(1);
    t.systemctl(&["is-active", "--quiet", "no-such-unit"])
        .code(1);
}

#[test]
fn shim_runs_redis_as_another_user_and_bgsave_can_fail() {
    if !is_root() {
        eprintln!("skipped: needs root to run redis-server as nobody");
        return;
    }
    let t = TestRedis::builder().without_key().run_as("nobody").start();
    let (uid, _) = user_ids("nobody");
    let pid = t.pid().expect("pid");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let real_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().next())
        .expect("Uid line");
    assert_eq!(real_uid, uid.to_string(), "redis-server runs as nobody");

    // The precondition of the "BGSAVE fails" test: a root-owned data dir.
    std::os::unix::fs::chown(t.data_dir(), Some(0), Some(0)).expect("chown");
    set_mode(&t.data_dir(), 0o755);
    let mut c = t.conn();
    c.ok(&["SET", "k", "v"]);
    assert_eq!(
        c.ok(&["BGSAVE"]),
        Reply::Status("Background saving started".into())
    );
    c.wait_no_save();
    assert_eq!(c.info_field("persistence", "rdb_last_bgsave_status"), "err");
}

#[test]
fn fill_every_type_survives_an_rdb_round_trip() {
    let t = TestRedis::builder().without_key().start();
    let mut c = t.conn();
    fill_every_type(&mut c);
    let before = c.state();
    assert_eq!(before.keys.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    assert!(before.keys[&0] > 100 && before.keys[&1] > 80, "{before:?}");
    assert_ne!(before.keys[&0], before.keys[&1]);
    assert_eq!(c.ok(&["TYPE", "stream:0:1"]).text(), "stream");
    assert_eq!(c.ok(&["TYPE", "zbig:0"]).text(), "zset");
    assert!(c.ok(&["TTL", "ttl:0:3"]).int() > 3000);
    let big = c.ok(&[b"GET".as_slice(), b"big:0"]);
    assert_eq!(big.bytes().unwrap().len(), 100_000);

    c.ok(&["SAVE"]);
    let loaded = LoadedRdb::load(&t.dump_file());
    assert_eq!(loaded.state(), before);
    let mut lc = loaded.conn();
    let v = lc.ok(&[b"GET".to_vec(), binary_key(0)]);
    assert_eq!(v.bytes().unwrap(), binary_value().as_slice());
    lc.ok(&["SELECT", "1"]);
    let v = lc.ok(&[b"GET".to_vec(), binary_key(1)]);
    assert_eq!(v.bytes().unwrap(), binary_value().as_slice());

    // and the digest does notice a change
    c.ok(&["SET", "one-more", "key"]);
    assert_ne!(c.state().digest, before.digest);
}

#[test]
fn auth_options_and_unix_socket_work() {
    let t = TestRedis::builder()
        .without_key()
        .unix_socket_only()
        .acl_user("backup", "acl-pw-self")
        .default_user_off()
        .start();
    assert_eq!(t.port, 0);
    let conf = fs::read_to_string(t.redis_conf()).unwrap();
    assert!(conf.contains("port 0\n"), "{conf}");
    let mut raw = t.raw_conn().expect("unix socket");
    assert!(raw.call(&["PING"]).is_error(), "default user must be off");
    assert!(raw.call(&["AUTH", "backup", "wrong"]).is_error());
    assert_eq!(t.conn().ok(&["PING"]), Reply::Status("PONG".into()));

    let t = TestRedis::builder()
        .without_key()
        .requirepass("req-pw-self")
        .rename_command("BGSAVE", "bgsave-renamed")
        .rename_command("LASTSAVE", "")
        .start();
    assert!(t.raw_conn().unwrap().call(&["PING"]).is_error());
    let mut c = t.conn();
    assert!(c.call(&["BGSAVE"]).is_error());
    assert!(c.call(&["LASTSAVE"]).is_error());
    c.ok(&["bgsave-renamed"]);
    c.wait_no_save();
    assert!(t.dump_file().exists());
}

#[test]
fn runner_puts_the_shim_first_and_scrubs_the_environment() {
    let t = TestRedis::builder().without_key().prepare();
    let out = t
        .with_env(Run::new("sh").args(&["-c", "command -v systemctl; env"]))
        .env("REDIS_BACKUP_EXTRA", "yes")
        .run();
    out.ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        support_dir().join("systemctl").display().to_string(),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("SYSTEMCTL_SHIM_DIR={}", t.shim_dir.display())),
        "{out}"
    );
    assert!(out.stdout.contains("REDIS_BACKUP_EXTRA=yes"), "{out}");
    assert!(!out.stdout.contains("RUST_LOG="), "{out}");
    let settings = fs::read_to_string(t.settings_file()).unwrap();
    for key in ["redis_conf", "storage", "key_file", "lock_file", "service"] {
        assert!(settings.contains(&format!("{key} = ")), "{settings}");
    }
    assert_eq!(mode_of(&t.settings_file()), 0o600);
}

#[test]
fn held_lock_excludes_another_holder() {
    let dir = Scratch::new("lock");
    let path = dir.join("lock");
    let held = hold_lock(&path);
    let other = fs::OpenOptions::new().write(true).open(&path).unwrap();
    assert!(other.try_lock().is_err(), "second exclusive lock must fail");
    drop(held);
    other.try_lock().expect("free after the holder closed it");
}

#[test]
fn the_fake_redis_answers_from_its_script_and_plays_a_save() {
    let fake = ScriptedRedis::new()
        .config("dir", "/nowhere")
        .keyspace(&["db0:keys=3,expires=0,avg_ttl=0"])
        .serve();
    let mut c = Resp::tcp(fake.port).expect("connect to the fake");
    assert_eq!(c.call(&["PING"]), Reply::Status("PONG".into()));
    assert_eq!(
        c.call(&["CONFIG", "GET", "dir"]),
        Reply::Array(vec![
            Reply::Bulk(b"dir".to_vec()),
            Reply::Bulk(b"/nowhere".to_vec())
        ])
    );
    assert_eq!(c.call(&["CONFIG", "GET", "nothing"]), Reply::Array(vec![]));
    assert_eq!(c.info_field("server", "redis_version"), "7.0.15");
    assert_eq!(
        c.info_field("keyspace", "db0"),
        "keys=3,expires=0,avg_ttl=0"
    );
    let before = c.call(&["LASTSAVE"]).int();
    assert_eq!(c.rdb_saves(), 0);
    c.ok(&["BGSAVE"]);
    assert_eq!(c.rdb_saves(), 1);
    assert_eq!(c.info_field("persistence", "rdb_bgsave_in_progress"), "0");
    assert!(c.call(&["LASTSAVE"]).int() > before, "LASTSAVE moved");
    assert!(c.call(&["FLUSHALL"]).is_error());
    assert_eq!(fake.count("config"), 2);
}

#[test]
fn the_fake_redis_drip_feeds_a_reply() {
    let every = Duration::from_millis(20);
    let fake = ScriptedRedis::new().drip("PING", every).serve();
    let mut c = Resp::tcp(fake.port).expect("connect to the fake");
    let started = Instant::now();
    assert_eq!(c.call(&["PING"]), Reply::Status("PONG".into()));
    // "+PONG\r\n": 7 bytes, a pause after each.
    assert!(
        started.elapsed() >= every * 6,
        "the reply came in {:?}, faster than a drip",
        started.elapsed()
    );
    assert!(!c.call(&["CONFIG", "GET", "save"]).is_error());
}

/// The stand-in's jobs behave as systemd's: a stop goes on when the
/// systemctl that asked for it is killed, `is-active` is false while it
/// runs (the unit is deactivating), and a job that is itself killed fails
/// its caller instead of keeping it waiting.
#[test]
fn shim_jobs_outlive_their_caller_and_the_unit_is_not_active_meanwhile() {
    let t = TestRedis::builder().without_key().start();
    let slow_stop = |t: &TestRedis| {
        let mut c = t.conn();
        add_filler(&mut c, 3000);
        // 1 ms a key: the save as it stops takes some 3 s.
        c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "1000"]);
    };
    let stop = |t: &TestRedis| {
        Run::new(&support_dir().join("systemctl").display().to_string())
            .args(&["stop", &t.unit])
            .env("SYSTEMCTL_SHIM_DIR", t.shim_dir.display().to_string())
            .spawn()
    };
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();

    slow_stop(&t);
    let server = t.pid().expect("pid");
    let mut caller = stop(&t);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        alive(server),
        "the server stopped at once: the test proves nothing"
    );
    assert!(!t.is_active(), "is-active while stopping");
    caller.kill().unwrap();
    caller.wait().unwrap();
    let started = Instant::now();
    while alive(server) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the stop did not go on"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    t.start_redis();
    slow_stop(&t);
    let mut caller = stop(&t);
    let state = t.shim_dir.join(format!("{}.state", t.unit));
    let started = Instant::now();
    let job = loop {
        if let Some(pid) = fs::read_to_string(&state)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no job");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The stand-in's own job process, and nothing else.
    Command::new("kill")
        .args(["-KILL", &job.to_string()])
        .status()
        .unwrap();
    // Not left behind waiting for good.
    let status = exit_within(&mut caller, Duration::from_secs(5))
        .expect("the caller kept waiting for a killed job");
    assert_eq!(status.code(), Some(1));
}

/// How `child` ended, if it does within `bound`; killed otherwise.
fn exit_within(
    child: &mut std::process::Child,
    bound: Duration,
) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// As systemd's: a stop asked while a start is still under way replaces it
/// (the start's caller is told it was canceled) and stops what the start
/// began, rather than waiting for the start to finish first.
#[test]
fn shim_a_stop_cancels_a_start_still_under_way() {
    let t = TestRedis::builder().without_key().start();
    t.stop_redis();
    // A server that takes 15 s before it is ready (the stand-in gives a
    // start 20 s): a stop that waits behind the start takes that long.
    let slow = t.scratch().join("slow-redis-server");
    fs::write(&slow, "#!/bin/sh\nsleep 15\nexec redis-server \"$@\"\n").unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&slow)
        .status()
        .unwrap();
    fs::write(
        t.shim_dir.join(format!("{}.server", t.unit)),
        format!("{}\n", slow.display()),
    )
    .unwrap();
    let systemctl = |verb: &str| {
        Run::new(&support_dir().join("systemctl").display().to_string())
            .args(&[verb, &t.unit])
            .env("SYSTEMCTL_SHIM_DIR", t.shim_dir.display().to_string())
    };
    let mut start = systemctl("start").spawn();
    let started = Instant::now();
    while t.pid().is_none() {
        assert!(started.elapsed() < Duration::from_secs(5), "no start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let asked = Instant::now();
    let stop = systemctl("stop").run();
    let stop_took = asked.elapsed();
    let start_status = exit_within(&mut start, Duration::from_secs(30))
        .expect("the start's caller was never answered");
    stop.ok();
    assert!(
        stop_took < Duration::from_secs(10),
        "the stop waited {stop_took:?}, behind the start"
    );
    assert_eq!(start_status.code(), Some(1), "the start was not canceled");
    assert!(!t.is_active(), "active after the stop");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        t.raw_conn().is_err(),
        "a server answers after the stop: the canceled start went on"
    );
}
