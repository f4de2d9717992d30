//! `backup` end to end: the round trip of every data type, the record's
//! fields, fresh saves (one already running, two in the same second, with
//! and without Redis 7's save counter), what happens to dump.rdb, and
//! backups that must fail without leaving anything.

use crate::harness::*;
use std::fs;

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn round_trip_of_every_type_in_two_dbs() {
    let t = TestRedis::start();
    let mut c = t.conn();
    fill_every_type(&mut c);
    let before = c.state();
    let version = c.info_field("server", "redis_version");

    let rec = t.backup_json(&[]);
    let id = rec["id"].as_str().expect("record has an id").to_string();
    assert_eq!(rec["format"], 2, "{rec}");
    assert_eq!(rec["server"]["name"], "redis", "{rec}");
    assert_eq!(rec["server"]["version"], version.as_str(), "{rec}");
    assert_eq!(rec["source"], "snapshot", "{rec}");
    assert_eq!(rec["persistence"], "rdb", "{rec}");
    assert_eq!(rec["redis_version"], version.as_str(), "{rec}");
    assert_eq!(
        rec["instance"],
        hostname().as_str(),
        "default instance: {rec}"
    );
    assert_eq!(keys_of_record(&rec), before.keys, "{rec}");
    let key_id = rec["key_id"].as_str().expect("key_id");
    assert!(is_hex(key_id, 16), "key_id is 16 hex digits: {rec}");
    let created = rec["created_at"].as_str().expect("created_at");
    assert!(
        created.len() == 27
            && created.as_bytes()[10] == b'T'
            && created.as_bytes()[19] == b'.'
            && created.ends_with('Z'),
        "created_at is RFC 3339 UTC to the microsecond: {created}"
    );
    assert!(
        rec["location"].as_str().expect("location").contains(&id),
        "{rec}"
    );

    // Exactly the object and its record in storage, no leftovers.
    assert_eq!(
        t.storage_files(),
        vec![format!("{id}.json"), format!("{id}.rbk")]
    );
    let object = t.storage_dir().join(format!("{id}.rbk"));
    assert_eq!(
        rec["stored_size"].as_u64(),
        Some(fs::metadata(&object).unwrap().len()),
        "{rec}"
    );

    t.run(&["verify", &id]).ok();

    let rdb = t.export(&id, "export.rdb");
    let raw = fs::read(&rdb).unwrap();
    assert!(raw.starts_with(b"REDIS"), "export is an RDB file");
    assert_eq!(rec["raw_size"].as_u64(), Some(raw.len() as u64), "{rec}");
    assert_eq!(rec["raw_sha256"], sha256_hex(&raw).as_str(), "{rec}");
    assert_eq!(
        digest_of_rdb(&rdb),
        before,
        "the export holds the same data"
    );

    assert_eq!(
        t.list(&[]),
        vec![rec.clone()],
        "list has exactly this record"
    );
    let shown = t.run(&["--json", "show", &id]);
    assert_eq!(shown.ok().json(), rec, "show --json is the record");

    // The backup did not change the data.
    assert_eq!(t.state(), before);
}

#[test]
fn a_save_already_running_is_not_taken_for_ours() {
    let t = TestRedis::start();
    let mut c = t.conn();
    fill_every_type(&mut c);
    add_filler(&mut c, 300);
    let saves = c.rdb_saves();
    // ~560 keys at 3 ms each: the first save runs for ~1.7 s. The forked
    // child keeps the delay, so it can be reset for later saves at once.
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "3000"]);
    assert_eq!(
        c.ok(&["BGSAVE"]),
        Reply::Status("Background saving started".into())
    );
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    c.ok(&["SET", "after-first-save", "present"]);
    assert_eq!(
        c.info_field("persistence", "rdb_bgsave_in_progress"),
        "1",
        "precondition: the first save is still running"
    );

    let id = t.backup();

    assert!(
        c.rdb_saves() >= saves + 2,
        "the tool must have waited for the running save and made its own"
    );
    let rdb = t.export(&id, "export.rdb");
    let loaded = LoadedRdb::load(&rdb);
    assert_eq!(
        loaded.get("after-first-save").as_deref(),
        Some(&b"present"[..]),
        "the backup is the save already running, not a fresh one"
    );
    assert_eq!(loaded.state(), c.state());
}

#[test]
fn two_backups_in_the_same_second_are_both_fresh() {
    let t = TestRedis::start();
    let mut c = t.conn();
    c.ok(&["SET", "k1", "v1"]);
    // Retried a few times in the rare case the two saves fall in different
    // seconds (then LASTSAVE would tell them apart and the test proves less).
    for attempt in 0..5 {
        let first = t.backup();
        let first_save = c.info_field("persistence", "rdb_last_save_time");
        let key = format!("k2-{attempt}");
        c.ok(&["SET", &key, "v2"]);
        let second = t.backup();
        let second_save = c.info_field("persistence", "rdb_last_save_time");
        assert_ne!(first, second, "two backups got the same ID");

        let rdb = t.export(&second, &format!("second-{attempt}.rdb"));
        let loaded = LoadedRdb::load(&rdb);
        assert_eq!(
            loaded.get(&key).as_deref(),
            Some(&b"v2"[..]),
            "second backup (attempt {attempt}) lacks {key} written after the first"
        );
        if first_save == second_save {
            return;
        }
    }
    eprintln!("note: the saves never fell in the same second; checked different seconds only");
}

#[test]
fn two_backups_in_the_same_second_without_rdb_saves_are_both_fresh() {
    // Before 7.0 Redis has no rdb_saves: only LASTSAVE, in whole seconds,
    // tells a new save from the last one. The fake plays such a server, its
    // last save this second, its saves writing a real RDB. A tool that sent
    // BGSAVE in the second of the last save would never see LASTSAVE move,
    // and fail on save_timeout. Nor would one that sent it as TIME passed
    // the second: LASTSAVE comes from Redis's coarse clock, a tick behind
    // TIME's (a backup of Redis 6.2 waited out save_timeout in the CI of
    // 2026-12-03; the fake plays the lag longer than a tick).
    let mut t = TestRedis::builder()
        .save(Save::Off)
        .setting("save_timeout", "10")
        .prepare();
    let rdb = make_rdb(&[("k", b"v")]);
    let fake = ScriptedRedis::new()
        .older_than_7()
        .config("dir", &t.data_dir().display().to_string())
        .saving(rdb.clone())
        .serve();
    t.set_setting("redis_port", &fake.port.to_string());
    let lastsave = || {
        Resp::tcp(fake.port)
            .expect("connect to the fake")
            .call(&["LASTSAVE"])
            .int()
    };

    let before = lastsave();
    let first = t.backup_json(&[]);
    let after_first = lastsave();
    let second = t.backup_json(&[]);
    let after_second = lastsave();

    assert!(
        before < after_first && after_first < after_second,
        "LASTSAVE {before}, {after_first}, {after_second}: each save in a second of its own"
    );
    assert_eq!(fake.count("BGSAVE"), 2, "{:?}", fake.commands());
    for record in [first, second] {
        assert_eq!(record["raw_sha256"], sha256_hex(&rdb).as_str(), "{record}");
        assert_eq!(record["redis_version"], "6.2.14", "{record}");
    }
}

#[test]
fn persistence_off_removes_the_dump_file() {
    let t = TestRedis::builder().save(Save::Off).start();
    let mut c = t.conn();
    fill_every_type(&mut c);
    let before = c.state();
    let id = t.backup();
    assert!(
        !t.dump_file().exists(),
        "with save \"\" and appendonly no, dump.rdb must be removed after the backup"
    );
    let leftovers: Vec<String> = dir_entries(&t.data_dir());
    assert!(leftovers.is_empty(), "data dir: {leftovers:?}");
    let rdb = t.export(&id, "x.rdb");
    assert_eq!(digest_of_rdb(&rdb), before);
}

#[test]
fn default_persistence_keeps_the_dump_file() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    assert!(!t.dump_file().exists(), "precondition: no dump.rdb yet");
    let rec = t.backup_json(&[]);
    assert_eq!(rec["persistence"], "rdb");
    assert!(t.dump_file().exists(), "dump.rdb must stay");
    let raw = fs::read(t.dump_file()).unwrap();
    assert_eq!(rec["raw_sha256"], sha256_hex(&raw).as_str());
}

#[test]
fn aof_persistence_keeps_the_dump_file() {
    let t = TestRedis::builder().save(Save::Off).appendonly().start();
    t.conn().ok(&["SET", "k", "v"]);
    let rec = t.backup_json(&[]);
    assert_eq!(rec["persistence"], "aof", "{rec}");
    assert_eq!(rec["source"], "snapshot", "{rec}");
    assert!(
        t.dump_file().exists(),
        "with appendonly yes dump.rdb is not ours to remove"
    );
}

#[test]
fn redis_down_is_exit_3_and_leaves_nothing() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    t.stop_redis();
    let out = t.run(&["backup"]);
    out.code(3);
    assert!(!out.stderr.trim().is_empty(), "no error message\n{out}");
    assert_eq!(t.list(&[]), Vec::<serde_json::Value>::new());
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
    assert!(!t.is_active(), "backup must not start Redis");
}

#[test]
fn failing_bgsave_is_exit_3_and_leaves_nothing() {
    // Redis runs as nobody (as root would write anyway), in a data dir of
    // its own that it may not write: BGSAVE cannot create its temp file.
    let t = match is_root() {
        true => TestRedis::builder().run_as("nobody"),
        false => TestRedis::builder(),
    }
    .setting("save_timeout", "60")
    .start();
    set_mode(&t.data_dir(), 0o555);
    let mut c = t.conn();
    c.ok(&["SET", "k", "v"]);
    let out = t.run(&["backup"]);
    out.code(3).stderr_has(
        "BGSAVE failed on the Redis server (rdb_last_bgsave_status:err); check Redis's log \
         and free space/permissions in its dir",
    );
    assert_eq!(c.info_field("persistence", "rdb_last_bgsave_status"), "err");
    assert_eq!(t.list(&[]), Vec::<serde_json::Value>::new());
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
    set_mode(&t.data_dir(), 0o755);
}

#[test]
fn explicit_id_is_used() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let out = t.run(&["backup", "--id", "nightly-2026.11.25_a"]);
    assert_eq!(out.ok().last_line(), "nightly-2026.11.25_a");
    assert!(t.storage_dir().join("nightly-2026.11.25_a.rbk").exists());
    // The same ID again must not replace the first backup.
    let before = fs::read(t.storage_dir().join("nightly-2026.11.25_a.rbk")).unwrap();
    let saves = t.conn().rdb_saves();
    let again = t.run(&["backup", "--id", "nightly-2026.11.25_a"]);
    again.code(2);
    assert_eq!(
        t.conn().rdb_saves(),
        saves,
        "a usage error must not make Redis save"
    );
    let after = fs::read(t.storage_dir().join("nightly-2026.11.25_a.rbk")).unwrap();
    assert_eq!(before, after, "the first backup was overwritten");
}

#[test]
fn a_failed_backup_with_persistence_off_keeps_the_existing_dump() {
    // save "" still loads dump.rdb at start-up, so an operator's manual SAVE
    // may be the only copy on disk: a failing backup must not delete it.
    let t = TestRedis::builder().save(Save::Off).start();
    let mut c = t.conn();
    c.ok(&["SET", "k", "v"]);
    c.ok(&["SAVE"]);
    let dump = fs::read(t.dump_file()).unwrap();
    t.run(&["backup", "--id", "../bad"]).code(2);
    c.ok(&["RENAME", "k", "k2"]);
    // Make the tool's own save slow enough to time out.
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "3000000"]);
    t.run(&["backup", "--save-timeout", "1"])
        .code(3)
        .stderr_has("did not finish the snapshot within 1.0s (setting save_timeout)");
    // Checked while Redis's slow save is still writing its temp file, before
    // it renames its own result over dump.rdb.
    assert_eq!(
        fs::read(t.dump_file()).unwrap(),
        dump,
        "the operator's dump.rdb must survive a failed backup"
    );
    assert!(t.list(&[]).is_empty());
    c.wait_no_save();
}

#[test]
fn a_dump_older_than_the_save_is_refused() {
    // CONFIG renamed away and redis.conf naming another dir than the one Redis
    // really saves to: the file found there is stale and must not be stored.
    let t = TestRedis::builder().rename_command("CONFIG", "").start();
    t.conn().ok(&["SET", "k", "v"]);
    let elsewhere = t.scratch().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::write(elsewhere.join("dump.rdb"), b"REDIS0010 stale").unwrap();
    let stale_time = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(elsewhere.join("dump.rdb"))
        .unwrap()
        .set_modified(stale_time)
        .unwrap();
    let conf = fs::read_to_string(t.redis_conf()).unwrap();
    let other = t.scratch().join("other-redis.conf");
    fs::write(&other, format!("{conf}\ndir {}\n", elsewhere.display())).unwrap();
    let out = t.run(&["backup", "--redis-conf", other.to_str().unwrap()]);
    out.code(3);
    out.stderr_has("not the file this Redis saves to");
    assert!(t.list(&[]).is_empty());
}

#[test]
fn the_dump_is_not_left_in_the_page_cache() {
    // The dump is read once; keeping it cached would push the Redis beside
    // us out of memory. Checked with util-linux's fincore.
    let t = TestRedis::start();
    add_noise_keys(&mut t.conn(), 8 * 1024, 13);
    t.backup();
    let size = fs::metadata(t.dump_file()).unwrap().len();
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(t.dump_file())
        .output()
        .expect("run fincore (util-linux)");
    let resident: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("fincore RES");
    assert!(
        resident < size / 10,
        "{resident} of {size} bytes of the dump still cached after the backup"
    );
}

/// A replica that has not synced since it started holds nothing of its
/// primary: its BGSAVE is an empty dump, stored as a backup (exit 0), and
/// a timer's `prune --keep-last N` then kept N of those and deleted every
/// backup that held data. Refused (exit 3), nothing stored. A replica
/// that did sync and then lost its primary keeps a copy worth keeping (in
/// an outage, often the only one): backed up, and the log says how old.
#[test]
fn a_replica_that_never_synced_is_not_backed_up_as_empty() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    t.backup();
    // As a replica's restart with no dump of its own leaves it.
    t.conn().ok(&["FLUSHALL"]);
    let nobody_listens = free_port();
    t.conn()
        .ok(&["REPLICAOF", "127.0.0.1", &nobody_listens.to_string()]);
    t.run(&["backup"])
        .code(3)
        .stderr_has("has not synced with its primary 127.0.0.1")
        .stderr_has("master_link_status:up");
    assert_eq!(t.list(&[]).len(), 1, "only the backup that holds data");

    let primary = TestRedis::start();
    primary.conn().ok(&["SET", "theirs", "1"]);
    t.conn()
        .ok(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
    wait_for("the replica's sync", || {
        (t.conn().info_field("replication", "master_link_status") == "up").then_some(())
    });
    primary.stop_redis();
    wait_for("the link to go down", || {
        (t.conn().info_field("replication", "master_link_status") == "down").then_some(())
    });
    let out = t.run(&["backup"]);
    out.ok().stderr_has("its link to its primary 127.0.0.1");
    assert_eq!(t.list(&[]).len(), 2);
}
