//! The commands around backups (show, list, delete, export) and the settings
//! and locking every command goes through: bad and missing IDs, secrets as
//! flags, flag > env > file precedence, the host lock, instance filters.

use crate::harness::*;
use serde_json::Value;
use std::fs;

#[test]
fn bad_ids_are_usage_errors_and_missing_ones_storage_errors() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let saves = t.conn().rdb_saves();
    for bad in ["../x", "a/b", ".hidden", "-x", ""] {
        t.run(&["show", bad]).code(2);
    }
    t.run(&["verify", "../x"]).code(2);
    t.run(&["delete", "a/b"]).code(2);
    t.run(&["backup", "--id", "../x"]).code(2);
    t.run(&["backup", "--id", "a/b"]).code(2);
    assert_eq!(t.conn().rdb_saves(), saves, "a usage error touched Redis");
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
    assert!(!t.scratch().join("x.rbk").exists());

    t.run(&["show", "nosuch"]).code(4);
    t.run(&["--json", "show", "nosuch"]).code(4);
    t.run(&["verify", "nosuch"]).code(4);
    t.run(&["delete", "nosuch"]).code(4);
    let out = t.path("nosuch.rdb");
    t.run(&["export", "nosuch", "--out", &out.display().to_string()])
        .code(4);
    assert!(
        !out.exists(),
        "export of a missing backup created its output"
    );

    let id = t.backup();
    t.run(&["show", &id]).ok();
    t.run(&["delete", &id]).ok();
    t.run(&["show", &id]).code(4);
    t.run(&["verify", &id]).code(4);
    assert!(
        t.storage_files().is_empty(),
        "delete left files: {:?}",
        t.storage_files()
    );
    assert_eq!(t.list(&[]), Vec::<Value>::new());
}

#[test]
fn export_refuses_to_overwrite() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let id = t.backup();
    let out = t.path("exists.rdb");
    std::fs::write(&out, b"precious").unwrap();
    t.run(&["export", &id, "--out", &out.display().to_string()])
        .code(2);
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
}

#[test]
fn redis_password_as_a_flag_is_refused_and_not_echoed() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let saves = t.conn().rdb_saves();
    let secret = "argv-pass-7Yy3";
    for args in [
        vec!["--redis-password", secret, "backup"],
        vec!["backup", "--redis-password", secret],
        vec!["list", &format!("--redis-password={secret}")],
    ] {
        let out = t.run(&args);
        out.code(2)
            .lacks(secret)
            .stderr_has("REDIS_BACKUP_REDIS_PASSWORD")
            .stderr_has("settings file");
    }
    assert_eq!(t.conn().rdb_saves(), saves, "a usage error touched Redis");
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
}

#[test]
fn storage_flag_beats_env_beats_file() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let file_dir = t.storage_dir();
    let env_dir = t.path("env-store");
    let flag_dir = t.path("flag-store");
    let url = |d: &std::path::Path| format!("file://{}", d.display());
    let has = |d: &std::path::Path, id: &str| {
        let files = dir_entries(d);
        files.contains(&format!("{id}.rbk")) && files.contains(&format!("{id}.json"))
    };

    let from_file = t.backup();
    assert!(has(&file_dir, &from_file));
    assert!(!env_dir.exists() && !flag_dir.exists());

    let out = t
        .cmd(&["backup"])
        .env("REDIS_BACKUP_STORAGE", url(&env_dir))
        .run();
    let from_env = out.ok().last_line();
    assert!(has(&env_dir, &from_env), "env beats the file");
    assert!(!has(&file_dir, &from_env));

    let out = t
        .cmd(&["backup", "--storage", &url(&flag_dir)])
        .env("REDIS_BACKUP_STORAGE", url(&env_dir))
        .run();
    let from_flag = out.ok().last_line();
    assert!(has(&flag_dir, &from_flag), "the flag beats env");
    assert!(!has(&env_dir, &from_flag) && !has(&file_dir, &from_flag));

    // The flag also counts before the command.
    let out = t
        .cmd(&["--storage", &url(&flag_dir), "backup"])
        .env("REDIS_BACKUP_STORAGE", url(&env_dir))
        .run();
    let before_cmd = out.ok().last_line();
    assert!(has(&flag_dir, &before_cmd));

    // list follows the same precedence.
    let ids = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(t.list(&[])), vec![from_file.clone()]);
    let listed = t
        .cmd(&["--json", "list", "--storage", &url(&flag_dir)])
        .env("REDIS_BACKUP_STORAGE", url(&env_dir))
        .run();
    let listed = match listed.ok().json() {
        Value::Array(a) => ids(a),
        other => panic!("not an array: {other}"),
    };
    let mut expected = vec![from_flag, before_cmd];
    expected.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, expected);
}

/// A key set twice in the settings file (an edit that appended where it
/// meant to replace): the last is taken, as ever, and said, naming both
/// lines.
#[test]
fn a_setting_given_twice_in_the_file_is_said() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let first = t.storage_dir().display().to_string();
    let second = t.path("second");
    let mut text = fs::read_to_string(t.settings_file()).unwrap();
    text.push_str(&format!("storage = file://{}\n", second.display()));
    fs::write(t.settings_file(), &text).unwrap();
    assert!(text.contains(&first), "{text}");

    let out = t.run(&["backup"]);

    out.ok().stderr_has("storage is set again");
    assert_eq!(
        out.stderr.matches("storage is set again").count(),
        1,
        "said once, not once per reading of the file\n{out}"
    );
    assert!(
        dir_entries(&second).len() == 2,
        "the last was not taken\n{out}"
    );
}

/// `storage` naming a folder that does not exist (a typo): list, prune
/// and timeline printed nothing, exit 0, as if there were no backups. Now
/// said; still exit 0 (before a host's first backup, it is true).
#[test]
fn a_storage_folder_that_does_not_exist_is_said() {
    let t = TestRedis::start();
    let missing = t.path("no-such-folder");
    let storage = format!("file://{}", missing.display());
    for command in [&["list"][..], &["prune", "--keep-last", "1"], &["timeline"]] {
        let out = t.cmd(command).env("REDIS_BACKUP_STORAGE", &storage).run();
        out.ok().stderr_has("does not exist");
    }
    assert!(!missing.exists());
}

#[test]
fn a_held_lock_stops_a_second_run_and_a_stale_one_does_not() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let held = hold_lock(&t.lock_file());
    let out = t.run(&["backup"]);
    out.code(1).stderr_has("lock");
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
    drop(held);

    // Left behind by a run that died: exists, has content, nobody holds it.
    std::fs::write(t.lock_file(), "4000000\n").unwrap();
    t.backup();
    assert_eq!(t.list(&[]).len(), 1);
}

#[test]
fn list_filters_by_instance_and_is_oldest_first() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    // IDs chosen so that name order is the reverse of time order.
    let out = t.run(&["backup", "--instance", "a", "--id", "zz-first"]);
    assert_eq!(out.ok().last_line(), "zz-first");
    // Let the clock reach the next second, so created_at differs.
    let done = now_secs();
    wait_for("the clock to pass one second", || {
        (now_secs() > done).then_some(())
    });
    let out = t.run(&["backup", "--instance", "b", "--id", "aa-second"]);
    assert_eq!(out.ok().last_line(), "aa-second");

    let only_a = t.list(&["--instance", "a"]);
    assert_eq!(only_a.len(), 1, "{only_a:?}");
    assert_eq!(only_a[0]["id"], "zz-first");
    assert_eq!(only_a[0]["instance"], "a");
    let only_b = t.list(&["--instance", "b"]);
    assert_eq!(only_b.len(), 1, "{only_b:?}");
    assert_eq!(only_b[0]["id"], "aa-second");
    assert_eq!(t.list(&["--instance", "c"]), Vec::<Value>::new());

    let all = t.list(&[]);
    let ids: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["zz-first", "aa-second"], "oldest first");

    // The plain (non-JSON) list names both.
    let out = t.run(&["list"]);
    out.ok();
    assert!(out.stdout.contains("zz-first") && out.stdout.contains("aa-second"));
}

/// One backup made while the host's clock was five years ahead (a guest
/// booted before NTP set its clock; `faketime`, installed by `make
/// test-deps`, plays it): ordered by its date it was the newest
/// for good, and every prune deleted the backups made after it, each in
/// turn. A record dated later than now is neither counted nor deleted, and
/// prune says so; those made since are kept by their own order.
#[test]
fn a_backup_made_while_the_clock_was_ahead_pushes_no_later_one_out() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    t.run(&["backup", "--id", "good"]).ok();
    let ahead = ["-f", "+1826d", crate::harness::BIN, "-c"];
    let settings = t.settings_file().display().to_string();
    t.with_env(Run::new("faketime").args(&ahead).args(&[
        settings.as_str(),
        "backup",
        "--id",
        "ahead",
    ]))
    .run()
    .ok();
    t.run(&["backup", "--id", "tonight"]).ok();

    let out = t.run(&["prune", "--keep-last", "1"]);

    out.ok().stderr_has("ahead").stderr_has("later than");
    let mut left: Vec<String> = t
        .list(&[])
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["ahead", "tonight"], "{out}");
}

/// A backup made while the host's clock was three days behind (a guest
/// started from a snapshot, before NTP set its clock) is dated before the
/// backups stored ahead of it: ordered by its date alone it went first,
/// and the prune that followed it deleted the newest backup there was.
/// The backups the storage stored last are kept too (its record's
/// modification time here, as if each backup had been made a day apart),
/// and prune says why; it goes once newer ones are stored after it.
#[test]
fn a_backup_made_while_the_clock_was_behind_is_not_pruned_as_the_oldest() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    t.run(&["backup", "--id", "monday"]).ok();
    t.run(&["backup", "--id", "tuesday"]).ok();
    let behind = ["-f", "-3d", crate::harness::BIN, "-c"];
    let settings = t.settings_file().display().to_string();
    t.with_env(Run::new("faketime").args(&behind).args(&[
        settings.as_str(),
        "backup",
        "--id",
        "wednesday",
    ]))
    .run()
    .ok();
    let stored_days_ago = |id: &str, days: u64| {
        let at = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
        let record = fs::File::options()
            .write(true)
            .open(t.record_file(id))
            .unwrap();
        record.set_modified(at).unwrap();
    };
    stored_days_ago("monday", 2);
    stored_days_ago("tuesday", 1);
    let left = |t: &TestRedis| {
        let mut left: Vec<String> = t
            .list(&[])
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        left.sort();
        left
    };

    let out = t.run(&["prune", "--keep-last", "2"]);

    out.ok()
        .stderr_has("keeping wednesday")
        .stderr_has("clock was behind");
    assert_eq!(left(&t), ["monday", "tuesday", "wednesday"], "{out}");
    t.run(&["verify", "wednesday"]).ok();

    t.run(&["backup", "--id", "thursday"]).ok();
    let out = t.run(&["prune", "--keep-last", "2"]);
    out.ok();
    assert_eq!(left(&t), ["thursday", "tuesday", "wednesday"], "{out}");
}

/// The newest backup's object gone or cut short (a lost object, a disk
/// that failed): prune counted its record among the newest, and deleted
/// the older backup that still held the data. A backup whose object is not
/// there whole is neither counted nor deleted.
#[test]
fn a_backup_whose_object_is_gone_or_cut_short_pushes_no_whole_one_out() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    for id in ["whole", "cut", "gone"] {
        t.run(&["backup", "--id", id]).ok();
    }
    let cut = fs::read(t.object_file("cut")).unwrap();
    fs::write(t.object_file("cut"), &cut[..cut.len() - 1]).unwrap();
    fs::remove_file(t.object_file("gone")).unwrap();

    let out = t.run(&["prune", "--keep-last", "1"]);

    out.ok()
        .stderr_has("prune ignores backup gone")
        .stderr_has("prune ignores backup cut");
    t.run(&["verify", "whole"]).ok();
    let left: Vec<String> = t
        .list(&[])
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["whole", "cut", "gone"], "{out}");
}

#[test]
fn prune_keeps_the_newest_per_instance_and_never_the_last_one() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    for (id, instance) in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("a3", "a")] {
        // No pause between them: created_at orders to the microsecond.
        t.run(&["backup", "--id", id, "--instance", instance]).ok();
    }
    let listed = |t: &TestRedis| -> Vec<String> {
        t.list(&[])
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };

    let dry = t.run(&["prune", "--keep-last", "1", "--dry-run"]);
    dry.ok();
    assert!(
        dry.stdout.contains("would delete a1") && dry.stdout.contains("a2"),
        "{dry}"
    );
    assert_eq!(
        listed(&t),
        ["a1", "b1", "a2", "a3"],
        "a dry run deletes nothing"
    );

    t.run(&["prune", "--keep-last", "2", "--instance", "a"])
        .ok();
    assert_eq!(
        listed(&t),
        ["b1", "a2", "a3"],
        "only instance a, oldest first"
    );

    t.run(&["prune", "--keep-last", "1"]).ok();
    assert_eq!(
        listed(&t),
        ["b1", "a3"],
        "the newest of each instance stays"
    );
    assert_eq!(
        t.storage_files(),
        ["a3.json", "a3.rbk", "b1.json", "b1.rbk"],
        "objects go with their records"
    );
    t.run(&["prune", "--keep-last", "0"]).code(2);
    assert_eq!(listed(&t), ["b1", "a3"]);
}

#[test]
fn the_status_file_tells_monitoring_about_success_and_failure() {
    let mut t = TestRedis::start();
    let status = t.path("status/redis-backup.json");
    std::fs::create_dir_all(status.parent().unwrap()).unwrap();
    t.set_setting("status_file", &status.display().to_string());
    t.conn().ok(&["SET", "k", "v"]);
    let rec = t.backup_json(&["--id", "s1"]);

    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&status).expect("status file")).expect("JSON")
    };
    let after_success = read();
    let backup = &after_success["backup"];
    assert_eq!(backup["last_result"], "ok", "{after_success}");
    assert_eq!(backup["last_exit_code"], 0);
    assert_eq!(backup["last_id"], "s1");
    assert_eq!(backup["last_size_bytes"], rec["raw_size"]);
    let success_time = backup["last_success_unix"]
        .as_u64()
        .expect("last_success_unix");

    t.stop_redis();
    t.run(&["backup"]).code(3);
    let after_failure = read();
    let backup = &after_failure["backup"];
    assert_eq!(backup["last_result"], "failed", "{after_failure}");
    assert_eq!(backup["last_exit_code"], 3);
    assert_eq!(
        backup["last_success_unix"].as_u64(),
        Some(success_time),
        "kept"
    );
    assert!(backup["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("Redis")));

    let prom = std::fs::read_to_string(t.path("status/redis-backup.prom")).expect("prom file");
    assert!(
        prom.contains(&format!(
            "redis_backup_last_success_timestamp_seconds{{operation=\"backup\",instance=\"{}\"}} {success_time}",
            hostname()
        )),
        "{prom}"
    );
    assert!(
        prom.contains("redis_backup_last_exit_code{operation=\"backup\""),
        "{prom}"
    );

    t.start_redis();
    t.run(&["restore", "s1"]).ok();
    assert_eq!(read()["restore"]["last_result"], "ok");
    assert_eq!(
        read()["backup"]["last_result"],
        "failed",
        "each operation has its own entry"
    );
}

#[test]
fn progress_goes_to_stderr_with_verbose_only_and_never_into_json() {
    let mut t = TestRedis::start();
    // Incompressible data, deflate level 9, one thread: a stream of seconds.
    add_noise_keys(&mut t.conn(), 60_000, 5);
    t.set_setting("compression_level", "9");
    t.set_setting("threads", "1");
    let out = t.run(&["--json", "-v", "backup", "--id", "slow1"]);
    out.ok();
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(json["id"], "slow1");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("backup: ") && l.contains("%") && l.contains("/s")),
        "no progress line on stderr with -v:\n{}",
        out.stderr
    );
    // Not a terminal and no -v: the log of a timer run stays short.
    let quiet = t.run(&["backup", "--id", "slow2"]);
    quiet.ok();
    assert!(
        !quiet
            .stderr
            .lines()
            .any(|l| l.contains("backup: ") && l.contains("%")),
        "{}",
        quiet.stderr
    );
}

/// `-q` is errors only even with RUST_LOG set (in a unit, a profile):
/// the flag was asked for on this command line.
#[test]
fn quiet_wins_over_rust_log() {
    let t = TestRedis::builder().prepare();
    let key = t.path("quiet.key").display().to_string();
    let out = t
        .cmd(&["-q", "keygen", "--out", &key])
        .env("RUST_LOG", "debug")
        .run();
    out.ok();
    assert!(!out.stderr.contains("INFO"), "{out}");
    // Without -q, RUST_LOG is still honoured.
    let key = t.path("loud.key").display().to_string();
    let out = t
        .cmd(&["keygen", "--out", &key])
        .env("RUST_LOG", "debug")
        .run();
    out.ok().stderr_has("INFO");
}

#[test]
fn the_version_with_json_is_one_json_document() {
    let version = Run::new(BIN).args(&["--json", "-V"]).run().ok().json();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"), "{version}");
    Run::new(BIN)
        .args(&["--version"])
        .run()
        .ok()
        .stdout_has(concat!("redis-backup ", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_record_whose_object_is_gone_is_named_as_such_and_can_be_deleted() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let id = t.backup();
    std::fs::remove_file(t.storage_dir().join(format!("{id}.rbk"))).unwrap();
    for command in ["verify", "export", "restore"] {
        let mut args = vec![command, &id];
        if command == "export" {
            args.extend(["--out", "/dev/null"]);
        }
        t.run(&args)
            .code(4)
            .stderr_has(&format!("backup {id} has a record but no object"));
    }
    t.run(&["delete", &id]).ok();
    t.run(&["show", &id]).code(4).stderr_has("no backup");
}

#[test]
fn a_variable_that_is_no_setting_is_named_but_not_its_value() {
    let t = TestRedis::start();
    let out = t
        .cmd(&["list"])
        .env("REDIS_BACKUP_STORGE", "file:///s3cr3t-value")
        .run();
    out.ok()
        .stderr_has("REDIS_BACKUP_STORGE in the environment is not a setting");
    assert!(!out.stderr.contains("s3cr3t"), "{out}");
    let storage = format!("file://{}", t.storage_dir().display());
    let quiet = t.cmd(&["list"]).env("REDIS_BACKUP_STORAGE", storage).run();
    assert!(!quiet.ok().stderr.contains("not a setting"), "{quiet}");
}

/// An export killed before it finished left its temporary file (as large
/// as the RDB) beside PATH for good. The next export to that PATH removes
/// the ones of this host nobody holds; others are left alone.
#[test]
fn an_export_removes_what_a_killed_export_to_the_same_path_left() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let id = t.backup();
    let out_dir = t.path("exports");
    std::fs::create_dir(&out_dir).unwrap();
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let left = format!(".tmp-{host}-999999-0123456789abcdef-x.rdb.tmp");
    let other = format!(".tmp-{host}-999999-0123456789abcdef-y.rdb.tmp");
    for name in [&left, &other] {
        std::fs::write(out_dir.join(name), b"a killed export's partial RDB").unwrap();
    }

    let out = out_dir.join("x.rdb").display().to_string();
    t.run(&["export", &id, "--out", &out]).ok();

    assert_eq!(dir_entries(&out_dir), vec![other, "x.rdb".to_string()]);
}

/// Each run reads the status file, sets its own entry and writes it back.
/// A backup held as it wrote its file (strace delays its rename 3 s)
/// while a restore wrote its own: the restore's entry was lost, as the
/// crash review showed. The read-modify-write is one run's at a time now.
#[test]
fn a_report_written_while_another_is_does_not_erase_it() {
    let mut t = TestRedis::start();
    let status = t.path("status/redis-backup.json");
    fs::create_dir_all(status.parent().unwrap()).unwrap();
    t.set_setting("status_file", &status.display().to_string());
    t.conn().ok(&["SET", "k", "v"]);
    let id = t.backup();
    let slow = t
        .with_env(
            Run::new("strace")
                .args(&[
                    "-f",
                    "-o",
                    "/dev/null",
                    "-e",
                    "trace=rename,renameat,renameat2",
                ])
                .args(&[
                    "-e",
                    "inject=rename,renameat,renameat2:delay_enter=3000000:when=1",
                ])
                .args(&[BIN, "-c", &t.settings_file().display().to_string()])
                .args(&["backup"]),
        )
        .spawn();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    t.run(&["restore", &id]).ok();
    let backup = slow.wait_with_output().unwrap();
    assert!(backup.status.success(), "{backup:?}");
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&status).unwrap()).unwrap();
    assert!(report["restore"].is_object(), "{report}");
    assert!(report["backup"].is_object(), "{report}");
}

/// The error line written to a stderr whose reader is gone (`| tee`, the
/// SSH session that ran it dropped): eprintln! panicked, and the run ended
/// in an abort (134), its exit code lost. (The second self-review of the
/// twenty-first session.) The exit code is the error's still.
#[test]
fn an_error_said_to_a_stderr_that_is_gone_keeps_its_exit_code() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = std::process::Command::new(crate::harness::BIN)
        .args(["-c", "/nonexistent/settings.conf", "list"])
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2), "{status:?}");
}

/// Concurrency review: two prunes at once (a cron job and an operator, or
/// two hosts sharing the storage). The one held as it deletes finds the
/// other has deleted the same backups already; the storage ends as both
/// asked, and neither run should fail for it.
#[test]
fn two_prunes_at_once_both_succeed() {
    let t = TestRedis::start();
    let mut ids = Vec::new();
    for i in 0..4 {
        t.conn().ok(&["SET", "k", &i.to_string()]);
        ids.push(t.backup());
    }
    let slow = t.with_env(
        Run::new("strace")
            .args(&[
                "-f",
                "-o",
                "/dev/null",
                "-e",
                "trace=unlink,unlinkat,rename,renameat,renameat2",
            ])
            .args(&[
                "-e",
                "inject=unlink,unlinkat,rename,renameat,renameat2:delay_enter=3000000:when=1",
            ])
            .args(&[BIN, "-c", &t.settings_file().display().to_string()])
            .args(&["--json", "prune", "--keep-last", "1"]),
    );
    let slow = std::thread::spawn(move || slow.run());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let quick = t.run(&["--json", "prune", "--keep-last", "1"]).ok().json();
    let held = slow.join().unwrap();
    let listed: Vec<String> = t
        .list(&[])
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec![ids[3].clone()], "the newest stays");
    // The held prune succeeds though the storage is as it asked.
    let held = held.ok().json();
    // Each says it deleted only what it deleted: together, each backup
    // once.
    let mut deleted: Vec<&str> = [&quick, &held]
        .iter()
        .flat_map(|report| report["deleted"].as_array().expect("a list"))
        .map(|id| id.as_str().expect("an ID"))
        .collect();
    deleted.sort();
    let mut pruned = ids[..3].to_vec();
    pruned.sort();
    assert_eq!(deleted, pruned, "{quick}\n{held}");
}
