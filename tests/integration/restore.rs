//! `restore` end to end: with AOF off and on, onto a running, a stopped and a
//! fresh instance, from storage and `--from-file`, with a password and renamed
//! commands; the placed files (owner, mode, nothing left behind); backups that
//! must be refused before Redis is touched (exit 5, a held lock, usage); and
//! the failures after Redis was stopped: rolled back (exit 6) or not (exit 7).
//!
//! Every test compares `DEBUG DIGEST` of the live server with the one taken
//! when the backup was made, and, where Redis must be untouched, its pid, its
//! digest, its files byte for byte and the shim's calls.

use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// Helpers

/// Redis runs as the `redis` user when the tests run as root (as on Debian,
/// where the tool runs as root and Redis as redis:redis), so that owner and
/// group of the placed files are something the tool had to get right.
fn as_redis_user(b: Builder) -> Builder {
    if is_root() {
        b.run_as("redis")
    } else {
        b
    }
}

/// Change the data after a backup: keys added in both dbs, one changed, one
/// deleted. Returns the new state, which differs from `backed_up`.
fn change_data(t: &TestRedis, backed_up: &DbState) -> DbState {
    let mut c = t.conn();
    c.ok(&["SET", "after:0", "written after the backup"]);
    c.ok(&["SET", "s:0:1", "changed after the backup"]);
    c.ok(&["DEL", "l:0:3"]);
    c.ok(&["SELECT", "1"]);
    c.ok(&["SET", "after:1", "written after the backup"]);
    c.ok(&["SELECT", "0"]);
    let changed = t.state();
    assert_ne!(
        changed.digest, backed_up.digest,
        "precondition: the data changed after the backup"
    );
    changed
}

/// The changes of `change_data` are gone: its new keys are missing, the
/// changed and the deleted key are as `fill_every_type` wrote them.
fn assert_changes_gone(t: &TestRedis) {
    let mut c = t.conn();
    assert_eq!(
        c.ok(&["GET", "after:0"]),
        Reply::Nil,
        "key written after the backup"
    );
    assert_eq!(
        c.ok(&["GET", "s:0:1"]),
        Reply::Bulk(b"value 1 in db 0".to_vec()),
        "key changed after the backup"
    );
    assert_eq!(
        c.ok(&["LLEN", "l:0:3"]),
        Reply::Int(10),
        "key deleted after the backup"
    );
    c.ok(&["SELECT", "1"]);
    assert_eq!(
        c.ok(&["GET", "after:1"]),
        Reply::Nil,
        "key written after the backup (db 1)"
    );
}

fn raw_sha256_of(record: &Value) -> String {
    record["raw_sha256"]
        .as_str()
        .expect("record has raw_sha256")
        .to_string()
}

/// Everything about a running Redis that a refused restore must leave alone.
struct Untouched {
    pid: Option<u32>,
    state: DbState,
    files: BTreeMap<String, String>,
    calls: usize,
}

impl Untouched {
    fn take(t: &TestRedis) -> Untouched {
        assert!(t.is_active(), "precondition: Redis runs");
        Untouched {
            pid: t.pid(),
            state: t.state(),
            files: t.data_files(),
            calls: t.shim_calls().len(),
        }
    }

    #[track_caller]
    fn check(&self, t: &TestRedis, case: &str) {
        let calls = t.shim_calls_since(self.calls);
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("stop ") || c.starts_with("start ")),
            "{case}: Redis was stopped or started: {calls:?}"
        );
        assert!(t.is_active(), "{case}: Redis no longer runs");
        assert_eq!(t.pid(), self.pid, "{case}: Redis was restarted");
        assert_eq!(t.state(), self.state, "{case}: the data changed");
        assert_eq!(t.data_files(), self.files, "{case}: the data dir changed");
        assert_eq!(
            t.restore_work_dirs(),
            Vec::<PathBuf>::new(),
            "{case}: work folder left behind"
        );
        assert_eq!(
            t.stray_redis_servers(),
            Vec::<u32>::new(),
            "{case}: stray redis-server"
        );
    }
}

/// `expected` occurs in `calls` in this order (other calls may come between).
#[track_caller]
fn assert_calls_in_order(calls: &[String], expected: &[String]) {
    let mut rest = calls.iter();
    for want in expected {
        assert!(
            rest.any(|c| c == want),
            "systemctl calls should include {expected:?} in this order; got {calls:?}"
        );
    }
}

/// The host lock is free again: neither the restored Redis nor a private
/// server inherited it (`hold_lock` panics if it cannot take it).
#[track_caller]
fn assert_lock_released(t: &TestRedis) {
    drop(hold_lock(&t.lock_file()));
}

/// Owner and group of `path` are those of the data dir.
#[track_caller]
fn assert_owned_like_data_dir(t: &TestRedis, path: &Path) {
    let dir = fs::metadata(t.data_dir()).expect("stat data dir");
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    assert_eq!(
        (meta.uid(), meta.gid()),
        (dir.uid(), dir.gid()),
        "owner:group of {} should be the data dir's",
        path.display()
    );
}

/// The placed dump.rdb: mode 0660, owner and group of the data dir.
#[track_caller]
fn assert_placed_dump(t: &TestRedis) {
    assert_eq!(
        mode_of(&t.dump_file()),
        0o660,
        "mode of the placed dump.rdb"
    );
    assert_owned_like_data_dir(t, &t.dump_file());
}

/// The AOF of a Redis 7 server: `<dir>/appendonlydir` with its manifest.
fn aof_dir(t: &TestRedis) -> PathBuf {
    t.data_dir().join("appendonlydir")
}

fn manifest(t: &TestRedis) -> PathBuf {
    aof_dir(t).join("appendonly.aof.manifest")
}

/// Absolute paths named in `text` (quotes and trailing punctuation removed).
fn paths_in(text: &str) -> Vec<PathBuf> {
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '`' | '(' | ')' | '[' | ']' | '<' | '>' | '='
            )
    })
    .map(|w| w.trim_end_matches(['.', ',', ';', ':']))
    .filter(|w| w.starts_with('/'))
    .map(PathBuf::from)
    .collect()
}

/// Write `<id>.json` in storage again with `edit` applied to the record, and
/// tagged again as the holder of the key would: wrong yet authentic.
fn edit_record(t: &TestRedis, id: &str, edit: impl FnOnce(&mut Value)) {
    let path = t.record_file(id);
    let mut record: Value =
        serde_json::from_slice(&fs::read(&path).expect("read record")).expect("record is JSON");
    retag_record(&t.key_file(), &mut record, edit);
    fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).expect("write record");
}

/// Wait until the clock is past the second in which the last run ended, so the
/// next restore's work folder (named by the UTC second) cannot collide with
/// one a failed restore kept.
fn next_second() {
    let now = now_secs();
    wait_for("the clock to pass one second", || {
        (now_secs() > now).then_some(())
    });
}

// ---------------------------------------------------------------------------
// The stand-in's failure marker that restore's exit 6 relies on

#[test]
fn shim_fail_start_once_fails_exactly_one_start() {
    let t = TestRedis::builder().without_key().start();
    t.stop_redis();
    t.fail_start_once();
    let out = t.systemctl(&["start", &t.unit]);
    out.code(1);
    assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
    assert!(!t.is_active(), "the failed start started Redis");
    assert!(
        !t.fail_start_once_marker().exists(),
        "the marker was not consumed"
    );
    t.start_redis();
    assert!(t.is_active(), "the start after the failed one works");
}

// ---------------------------------------------------------------------------
// Restores that work

#[test]
fn aof_off_restore_brings_back_the_backup() {
    let (t, backed_up, record) = filled_and_backed_up(as_redis_user(TestRedis::builder()));
    let id = id_of(&record);
    change_data(&t, &backed_up);
    let conf = fs::read(t.redis_conf()).unwrap();
    let calls = t.shim_calls().len();

    let out = t.run(&["--json", "restore", &id]);
    out.ok();
    let summary = out.json();
    assert_eq!(
        summary["id"],
        id.as_str(),
        "restore --json names the backup\n{out}"
    );
    assert!(
        !summary["keys"].is_null(),
        "restore --json has `keys`\n{out}"
    );

    assert!(t.is_active(), "Redis runs after the restore");
    assert_eq!(t.state(), backed_up, "the restored data is the backup's");
    assert_changes_gone(&t);
    assert_placed_dump(&t);
    assert_eq!(
        sha256_file(&t.dump_file()),
        raw_sha256_of(&record),
        "dump.rdb is the backed-up RDB, byte for byte"
    );
    assert_eq!(
        t.restore_work_dirs(),
        Vec::<PathBuf>::new(),
        "work folder left behind"
    );
    assert_eq!(t.stray_redis_servers(), Vec::<u32>::new());
    assert_lock_released(&t);
    assert_eq!(
        fs::read(t.redis_conf()).unwrap(),
        conf,
        "redis.conf was edited"
    );
    let unit = &t.unit;
    assert_calls_in_order(
        &t.shim_calls_since(calls),
        &[
            format!("stop {unit}"),
            format!("is-active --quiet {unit}"),
            format!("start {unit}"),
        ],
    );

    // It stays restored across a restart.
    t.stop_redis();
    t.start_redis();
    assert_eq!(t.state(), backed_up, "after stop + start");
}

#[test]
fn aof_on_restore_rebuilds_a_complete_aof() {
    let (t, backed_up, record) =
        filled_and_backed_up(as_redis_user(TestRedis::builder().appendonly()));
    let id = id_of(&record);
    assert!(manifest(&t).exists(), "precondition: Redis writes an AOF");
    change_data(&t, &backed_up);
    let conf = fs::read(t.redis_conf()).unwrap();
    let calls = t.shim_calls().len();

    let out = t.run(&["restore", &id]);
    out.ok();
    assert!(
        out.stdout.contains(&id),
        "restore names what it restored\n{out}"
    );

    assert!(t.is_active(), "Redis runs after the restore");
    assert_eq!(t.state(), backed_up, "the restored data is the backup's");
    assert_changes_gone(&t);
    assert_eq!(t.config_get("appendonly"), "yes");
    assert_eq!(t.conn().info_field("persistence", "aof_enabled"), "1");
    assert!(manifest(&t).is_file(), "no AOF manifest after the restore");
    assert_placed_dump(&t);
    assert_owned_like_data_dir(&t, &aof_dir(&t));
    for name in dir_entries(&aof_dir(&t)) {
        assert_owned_like_data_dir(&t, &aof_dir(&t).join(name));
    }
    assert_eq!(
        fs::read(t.redis_conf()).unwrap(),
        conf,
        "redis.conf was edited"
    );
    assert_eq!(
        t.restore_work_dirs(),
        Vec::<PathBuf>::new(),
        "work folder left behind"
    );
    let allowed = ["appendonlydir", "dump.rdb"];
    let entries = dir_entries(&t.data_dir());
    assert!(
        entries.iter().all(|e| allowed.contains(&e.as_str())),
        "left in the data dir besides the AOF and dump.rdb: {entries:?}"
    );
    assert_eq!(
        t.stray_redis_servers(),
        Vec::<u32>::new(),
        "the private redis-server was left running"
    );
    assert_lock_released(&t);
    let unit = &t.unit;
    assert_calls_in_order(
        &t.shim_calls_since(calls),
        &[format!("stop {unit}"), format!("start {unit}")],
    );

    // With appendonly yes Redis loads only the AOF: the same data after a
    // restart proves the AOF is valid and complete.
    t.stop_redis();
    t.start_redis();
    assert_eq!(
        t.state(),
        backed_up,
        "after stop + start (loaded from the AOF)"
    );
    assert_eq!(t.config_get("appendonly"), "yes");
}

/// Pages of `path` in the page cache, as util-linux's fincore counts them.
fn cached_pages(path: &Path) -> u64 {
    let out = Run::new("fincore")
        .args(&[
            "--noheadings",
            "--output",
            "PAGES",
            &path.display().to_string(),
        ])
        .run();
    out.ok();
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("fincore: {out}"))
}

/// The dump a restore replaces is cached for nothing once the new RDB is
/// staged: its pages are given up first, so a restore holds the page cache
/// of one RDB, not two (and staging does not write into fresh memory on a
/// guest that gives free memory back to its host).
#[test]
fn the_replaced_dump_leaves_the_page_cache_before_staging() {
    // No save rules (the dump moved aside is the one read below), and the
    // AOF on: a server that keeps nothing on disk would be left no dump.
    let builder = TestRedis::builder().save(Save::Off).appendonly();
    let (t, backed_up, record) = filled_and_backed_up(builder);
    let id = id_of(&record);
    change_data(&t, &backed_up);
    t.conn().ok(&["SAVE"]);
    // Read whole, so that every page of it is cached.
    let old = fs::read(t.dump_file()).expect("read the dump");
    assert!(cached_pages(&t.dump_file()) > 0, "the dump is cached");

    t.run(&["restore", &id, "--keep-previous"]).ok();

    let work = t.restore_work_dirs();
    let previous = work[0].join("previous/dump.rdb");
    assert_eq!(fs::metadata(&previous).unwrap().len(), old.len() as u64);
    assert_eq!(
        cached_pages(&previous),
        0,
        "pages of the replaced dump cached"
    );
    assert!(
        cached_pages(&t.dump_file()) > 0,
        "the restored dump stays cached"
    );
}

#[test]
fn keep_previous_keeps_the_old_files_in_the_work_folder() {
    // No save rules: Redis does not save on the stop, so the dump.rdb moved
    // aside is, byte for byte, the one SAVE wrote before the restore.
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder().save(Save::Off));
    let id = id_of(&record);
    let changed = change_data(&t, &backed_up);
    t.conn().ok(&["SAVE"]);
    let old_dump = sha256_file(&t.dump_file());

    t.run(&["restore", &id, "--keep-previous"]).ok();
    assert_eq!(t.state(), backed_up);

    let work = t.restore_work_dirs();
    assert_eq!(work.len(), 1, "one work folder kept: {work:?}");
    let work = &work[0];
    let name = work.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name.strip_prefix(RESTORE_WORK_PREFIX).unwrap().as_bytes();
    assert!(
        stamp.len() >= 16
            && stamp[..8].iter().all(u8::is_ascii_digit)
            && stamp[8] == b'T'
            && stamp[9..15].iter().all(u8::is_ascii_digit)
            && stamp[15] == b'Z',
        "work folder named by the UTC time like {RESTORE_WORK_PREFIX}20261125T031500Z: {name}"
    );
    assert_eq!(mode_of(work), 0o700, "mode of {}", work.display());
    let previous = work.join("previous/dump.rdb");
    assert_eq!(
        sha256_file(&previous),
        old_dump,
        "previous/dump.rdb is the old dump"
    );
    assert_eq!(
        digest_of_rdb(&previous),
        changed,
        "previous/dump.rdb holds the old data"
    );
}

/// The AOF is rebuilt before Redis is stopped: while the private server
/// runs, the service is still up and answering with its old data, and the
/// log has the rebuild before anything was moved. The outage is only the
/// moves and Redis's own start and load.
#[test]
fn the_aof_is_rebuilt_while_redis_still_serves() {
    let t = as_redis_user(TestRedis::builder().appendonly()).start();
    fill_every_type(&mut t.conn());
    add_filler(&mut t.conn(), 200_000);
    let backed_up = t.state();
    let id = t.backup();
    t.conn().ok(&["SET", "written-after", "the backup"]);

    let tool = t.cmd(&["restore", &id]).spawn();
    let private = wait_for("the private redis-server", || t.private_server_pid());
    // Held while we look, so that a slow look cannot fall after the rebuild.
    let held = Stopped::hold(private, "the private redis-server");
    let active_meanwhile = t.is_active();
    let served_meanwhile = t.conn().ok(&["GET", "written-after"]);
    drop(held);
    let out = tool.wait_with_output().expect("wait for the restore");
    let log = String::from_utf8_lossy(&out.stderr);

    assert!(out.status.success(), "restore failed:\n{log}");
    assert!(
        active_meanwhile,
        "Redis was down while the AOF was rebuilt\n{log}"
    );
    assert_eq!(served_meanwhile, Reply::Bulk(b"the backup".to_vec()));
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"))
    };
    assert!(
        at("AOF rebuilt from the restored data") < at("aside to"),
        "the AOF was rebuilt after the old files were moved\n{log}"
    );
    assert!(log.contains("was out of service for"), "{log}");
    assert_eq!(t.state(), backed_up);
    t.stop_redis();
    t.start_redis();
    assert_eq!(t.state(), backed_up, "the AOF is complete");
}

#[test]
fn keep_previous_keeps_the_old_aof_dir() {
    let t = TestRedis::builder().appendonly().start();
    t.conn().ok(&["SET", "k", "backed up"]);
    let id = t.backup();
    t.conn().ok(&["SET", "k", "changed"]);
    let old_aof = dir_entries(&aof_dir(&t));
    assert!(!old_aof.is_empty(), "precondition: an AOF dir");

    t.run(&["restore", &id, "--keep-previous"]).ok();
    assert_eq!(
        t.conn().ok(&["GET", "k"]),
        Reply::Bulk(b"backed up".to_vec())
    );
    let work = t.restore_work_dirs();
    assert_eq!(work.len(), 1, "one work folder kept: {work:?}");
    assert_eq!(
        dir_entries(&work[0].join("previous/appendonlydir")),
        old_aof,
        "previous/appendonlydir holds the old AOF"
    );
    // What the private server worked in goes once the AOF is placed (it
    // held a second link to the placed dump), and the folder is private again.
    assert!(
        !work[0].join("aof").exists(),
        "the kept folder still holds aof/"
    );
    assert_eq!(mode_of(&work[0]), 0o700);
}

/// A backup of a filled Redis, for restoring elsewhere: (its Redis, the state
/// at backup time, the ID).
fn source_backup() -> (TestRedis, DbState, String) {
    let (source, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    (source, backed_up, id_of(&record))
}

/// A Redis prepared (never started, empty data dir) that reads `source`'s
/// storage with `source`'s key.
fn fresh_instance(b: Builder, source: &TestRedis) -> TestRedis {
    let mut t = b.prepare();
    t.use_backups_of(source);
    assert_eq!(
        dir_entries(&t.data_dir()),
        Vec::<String>::new(),
        "precondition: no data files"
    );
    assert!(!t.is_active(), "precondition: never started");
    t
}

#[test]
fn restore_onto_a_fresh_instance() {
    let (source, backed_up, id) = source_backup();
    let t = fresh_instance(as_redis_user(TestRedis::builder()), &source);

    let out = t.run(&["restore", &id]);
    out.ok();
    assert!(
        out.stdout.contains(&id),
        "restore names what it restored\n{out}"
    );
    assert!(t.is_active(), "restore starts a Redis that never ran");
    assert_eq!(t.state(), backed_up);
    assert_placed_dump(&t);
    assert_eq!(
        t.restore_work_dirs(),
        Vec::<PathBuf>::new(),
        "work folder left behind"
    );
}

#[test]
fn restore_onto_a_fresh_aof_instance() {
    // The backup was made with AOF off; the new instance has it on: the AOF
    // must be built, or Redis 7 would start empty.
    let (source, backed_up, id) = source_backup();
    let t = fresh_instance(as_redis_user(TestRedis::builder().appendonly()), &source);

    t.run(&["restore", &id]).ok();
    assert!(t.is_active(), "restore starts a Redis that never ran");
    assert_eq!(t.state(), backed_up);
    assert_eq!(t.config_get("appendonly"), "yes");
    assert!(manifest(&t).is_file(), "no AOF manifest after the restore");
    assert_eq!(
        t.restore_work_dirs(),
        Vec::<PathBuf>::new(),
        "work folder left behind"
    );
    assert_eq!(t.stray_redis_servers(), Vec::<u32>::new());
    assert_lock_released(&t);
    t.stop_redis();
    t.start_redis();
    assert_eq!(
        t.state(),
        backed_up,
        "after stop + start (loaded from the AOF)"
    );
}

#[test]
fn restore_while_redis_is_stopped_starts_it() {
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    change_data(&t, &backed_up);
    t.stop_redis();
    assert!(
        t.dump_file().exists(),
        "precondition: the stop saved the changed data"
    );

    t.run(&["restore", &id_of(&record)]).ok();
    assert!(t.is_active(), "restore starts the Redis it found stopped");
    assert_eq!(t.state(), backed_up);
    assert_changes_gone(&t);
    assert_placed_dump(&t);
    assert_eq!(
        t.restore_work_dirs(),
        Vec::<PathBuf>::new(),
        "work folder left behind"
    );
}

/// The `service` setting names a unit that is not the one running Redis
/// (a typo, or Redis started by hand): the unit is not active, so the
/// restore took Redis for stopped and moved the data files from under the
/// running server, then failed to start the unit (exit 6); with a unit that
/// did start, the live server's next save would have replaced the restore.
/// Something answering where Redis listens is refused now, exit 2.
#[test]
fn redis_answering_while_its_unit_is_not_active_is_refused() {
    let (mut t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    let changed = change_data(&t, &backed_up);
    t.set_setting("service", "redis-server@typo.service");
    let pid = t.pid();
    let calls = t.shim_calls().len();

    let out = t.run(&["restore", &id_of(&record)]);

    out.code(2)
        .stderr_has("redis-server@typo.service is not active")
        .stderr_has("a server has answered");
    assert_eq!(t.pid(), pid);
    assert_eq!(t.state(), changed);
    let calls = t.shim_calls_since(calls);
    assert!(
        calls.iter().all(|c| c.starts_with("is-active")),
        "{calls:?}"
    );
    assert_eq!(t.restore_work_dirs(), Vec::<PathBuf>::new());
}

#[test]
fn restore_from_a_file_copied_out_of_storage() {
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    let id = id_of(&record);
    change_data(&t, &backed_up);
    let copy = t.path(&format!("copied-{id}.rbk"));
    fs::copy(t.object_file(&id), &copy).unwrap();
    t.run(&["delete", &id]).ok();

    // The backup is gone from storage: restore by ID is a storage error.
    let before = Untouched::take(&t);
    let out = t.run(&["restore", &id]);
    out.code(4);
    before.check(&t, "restore of a deleted backup");

    let copy_s = copy.display().to_string();
    let out = t.run(&["--json", "restore", "--from-file", &copy_s]);
    out.ok();
    assert!(
        out.stdout.contains(&copy_s) || out.stdout.contains(&id),
        "restore --json names the file or the backup\n{out}"
    );
    assert!(t.is_active());
    assert_eq!(t.state(), backed_up);
    assert_changes_gone(&t);
    assert_eq!(
        t.restore_work_dirs(),
        Vec::<PathBuf>::new(),
        "work folder left behind"
    );
    assert!(copy.exists(), "restore must not consume the file");
}

#[test]
fn password_and_renamed_commands() {
    let pw = "restore-pw-Q7xw";
    let (t, backed_up, record) = filled_and_backed_up(
        TestRedis::builder()
            .requirepass(pw)
            .rename_command("CONFIG", "cfg-r7k")
            .rename_command("BGSAVE", "bgs-r7k"),
    );
    change_data(&t, &backed_up);

    let out = t
        .cmd(&["-vv", "restore", &id_of(&record)])
        .env("RUST_LOG", "debug")
        .run();
    out.ok().lacks(pw);
    assert!(t.is_active());
    assert_eq!(t.state(), backed_up);
    assert_changes_gone(&t);
    assert_eq!(
        t.restore_work_dirs(),
        Vec::<PathBuf>::new(),
        "work folder left behind"
    );
}

#[test]
fn aof_on_with_password_and_renamed_config() {
    // The private server that builds the AOF reads the same redis.conf: it
    // wants the password and knows CONFIG only by its new name.
    let pw = "restore-aof-pw-M3v";
    let (t, backed_up, record) = filled_and_backed_up(
        TestRedis::builder()
            .appendonly()
            .requirepass(pw)
            .rename_command("CONFIG", "cfg-a9q"),
    );
    change_data(&t, &backed_up);

    let out = t.run(&["restore", &id_of(&record)]);
    out.ok().lacks(pw);
    assert_eq!(t.state(), backed_up);
    assert_eq!(t.config_get("appendonly"), "yes");
    assert!(manifest(&t).is_file(), "no AOF manifest after the restore");
    assert_eq!(t.stray_redis_servers(), Vec::<u32>::new());
    assert_lock_released(&t);
    t.stop_redis();
    t.start_redis();
    assert_eq!(
        t.state(),
        backed_up,
        "after stop + start (loaded from the AOF)"
    );
}

// ---------------------------------------------------------------------------
// Restores refused before Redis is touched

#[test]
fn damaged_backup_or_wrong_key_is_exit_5_and_redis_untouched() {
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    let id = id_of(&record);
    change_data(&t, &backed_up);
    let before = Untouched::take(&t);
    let object = t.object_file(&id);
    let original = fs::read(&object).unwrap();
    assert!(original.len() > 1000, "object is {} bytes", original.len());

    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x01;
    let cases = [
        ("one byte flipped in the middle", flipped),
        ("cut in half", original[..original.len() / 2].to_vec()),
        (
            "last 10 bytes cut",
            original[..original.len() - 10].to_vec(),
        ),
    ];
    for (case, bytes) in cases {
        fs::write(&object, &bytes).unwrap();
        let out = t.run(&["restore", &id]);
        assert_eq!(out.code, Some(5), "{case}: expected exit 5\n{out}");
        assert!(!out.stderr.trim().is_empty(), "{case}: no message");
        before.check(&t, case);
    }
    fs::write(&object, &original).unwrap();

    let other = t.path("other.key");
    let other_s = other.display().to_string();
    t.run(&["keygen", "--out", &other_s]).ok();
    let out = t.run(&["restore", &id, "--key-file", &other_s]);
    out.code(5);
    before.check(&t, "wrong key");

    // The failures above were the damage and the key: the object is good.
    t.run(&["verify", &id]).ok();
}

#[test]
fn a_held_lock_refuses_a_second_restore() {
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    change_data(&t, &backed_up);
    let before = Untouched::take(&t);
    let held = hold_lock(&t.lock_file());
    let out = t.run(&["restore", &id_of(&record)]);
    out.code(1).stderr_has("lock");
    before.check(&t, "lock held");
    drop(held);
}

#[test]
fn usage_errors_touch_nothing() {
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    change_data(&t, &backed_up);
    let before = Untouched::take(&t);
    let id = id_of(&record);
    let file = t.object_file(&id).display().to_string();
    for args in [
        vec!["restore"],
        vec!["restore", "../x"],
        vec!["restore", "a/b"],
        vec!["restore", "--from-file"],
        vec!["restore", &id, "--from-file", &file],
    ] {
        let out = t.run(&args);
        assert_eq!(out.code, Some(2), "{args:?}: expected exit 2\n{out}");
        before.check(&t, &format!("{args:?}"));
    }
}

// ---------------------------------------------------------------------------
// Failures after Redis was stopped

#[test]
fn service_failing_with_the_restored_data_rolls_back_exit_6() {
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    let id = id_of(&record);
    let changed = change_data(&t, &backed_up);
    let calls = t.shim_calls().len();
    t.fail_start_once();

    let out = t.run(&["restore", &id]);
    out.code(6);
    assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
    assert!(
        !t.fail_start_once_marker().exists(),
        "restore never tried to start Redis with the restored data"
    );
    let starts = t
        .shim_calls_since(calls)
        .iter()
        .filter(|c| **c == format!("start {}", t.unit))
        .count();
    assert!(starts >= 2, "the failed start and the rollback's: {starts}");
    assert!(t.is_active(), "Redis runs again after the rollback");
    assert_eq!(
        t.state(),
        changed,
        "the data from before the restore is back"
    );
    assert_lock_released(&t);

    // The restored files were kept for inspection: in the work folder, or
    // where the message says.
    let raw = raw_sha256_of(&record);
    let in_work = t
        .restore_work_dirs()
        .iter()
        .any(|w| file_hashes(w).values().any(|h| *h == raw));
    let named = paths_in(&out.stderr).iter().any(|p| {
        if !p.starts_with(t.scratch()) {
            false // not walked: only this test's files can hold it
        } else if p.is_dir() {
            file_hashes(p).values().any(|h| *h == raw)
        } else {
            p.is_file() && sha256_file(p) == raw
        }
    });
    assert!(
        in_work || named,
        "the restored RDB was not kept under {}/{RESTORE_WORK_PREFIX}*/ nor where stderr says\n{out}",
        t.data_dir().display()
    );
}

#[test]
fn rollback_impossible_is_exit_7_naming_the_old_files() {
    // No save rules: the old dump.rdb keeps its bytes through the stop.
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder().save(Save::Off));
    let changed = change_data(&t, &backed_up);
    t.conn().ok(&["SAVE"]);
    let old_dump = sha256_file(&t.dump_file());
    t.fail_start(true);

    let out = t.run(&["restore", &id_of(&record)]);
    out.code(7);
    let holds_old_dump = |p: &Path| -> bool {
        [
            p.to_path_buf(),
            p.join("dump.rdb"),
            p.join("previous/dump.rdb"),
        ]
        .iter()
        .any(|f| f.is_file() && sha256_file(f) == old_dump)
    };
    let named: Vec<PathBuf> = paths_in(&out.stderr)
        .into_iter()
        .filter(|p| holds_old_dump(p))
        .collect();
    assert!(
        !named.is_empty(),
        "stderr must name where the old dump.rdb is (a path holding it, or its previous/)\n{out}"
    );

    // What the message points at really is the old data.
    let p = &named[0];
    let old = [p.clone(), p.join("dump.rdb"), p.join("previous/dump.rdb")]
        .into_iter()
        .find(|f| f.is_file() && sha256_file(f) == old_dump)
        .unwrap();
    assert_eq!(digest_of_rdb(&old), changed);
}

#[test]
fn key_counts_of_the_record_are_checked_after_the_restore() {
    // No key with a TTL: a missing key cannot be excused as expired.
    let t = TestRedis::start();
    let mut c = t.conn();
    let mut cmds: Vec<Vec<Vec<u8>>> = (0..20)
        .map(|i| cmd(&["SET".to_string(), format!("k{i}"), format!("v{i}")]))
        .collect();
    cmds.push(cmd(&["SELECT", "1"]));
    cmds.push(cmd(&["RPUSH", "list", "a", "b", "c"]));
    cmds.push(cmd(&["SELECT", "0"]));
    c.pipeline(&cmds);
    let backed_up = t.state();
    let record = t.backup_json(&[]);
    let id = id_of(&record);
    let original_record = fs::read(t.record_file(&id)).unwrap();
    c.ok(&["SET", "after", "written after the backup"]);
    c.ok(&["DEL", "k3"]);
    let changed = t.state();
    assert_ne!(changed.digest, backed_up.digest);

    // The record claims one more key in db 0 than the backup holds. Besides
    // `keys` the record may count the keys before the save too (a range, as
    // writes may land between the count and the save): claim one more there.
    edit_record(&t, &id, |r| {
        let n = r["keys"]["db0"].as_u64().expect("keys.db0 in the record");
        r["keys"]["db0"] = Value::from(n + 1);
        if let Some(n) = r["keys_before"]["db0"].as_u64() {
            r["keys_before"]["db0"] = Value::from(n + 1);
        }
    });
    let out = t.run(&["restore", &id]);
    out.code(6);
    assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
    assert!(t.is_active(), "Redis runs again after the rollback");
    assert_eq!(
        t.state(),
        changed,
        "the data from before the restore is back"
    );
    assert_lock_released(&t);

    // The same backup with its true record restores: the counts were the cause.
    fs::write(t.record_file(&id), &original_record).unwrap();
    next_second();
    t.run(&["restore", &id]).ok();
    assert_eq!(t.state(), backed_up);
}

#[test]
fn not_enough_disk_to_stage_is_exit_4_and_redis_untouched() {
    // A data dir on a 160 KiB tmpfs: room for the instance's own small dump,
    // not for the ~250 KiB RDB of the backup. Needs root, as `make test` has.
    let (source, _, id) = source_backup();
    let mut t = TestRedis::builder().save(Save::Off).prepare();
    let _tmpfs = Tmpfs::mount(&t.data_dir(), "size=160k,mode=0755");
    t.use_backups_of(&source);
    t.start_redis();
    let mut c = t.conn();
    c.ok(&["SET", "small", "dataset"]);
    c.ok(&["SAVE"]);
    let before = t.state();
    let files = t.data_files();
    let pid = t.pid();

    let out = t.run(&["restore", &id]);
    out.code(4);
    out.stderr_has("not enough free space");
    assert!(t.is_active(), "Redis keeps running");
    assert_eq!(t.pid(), pid, "Redis was not restarted");
    assert_eq!(t.state(), before, "Redis's data is unchanged");
    assert_eq!(t.data_files(), files, "the data files are unchanged");
    assert_eq!(t.restore_work_dirs(), Vec::<PathBuf>::new());
}

/// systemctl is the one program root runs with an environment of ours: a
/// stand-in that starts the service itself (as the test's does, as the
/// redis account) would hand it on. No secret of the operator's reaches it.
#[test]
fn no_secret_of_the_environment_reaches_systemctl() {
    let t = TestRedis::builder().start();
    let id = t.backup();
    let wrapper = t.path("wrapped");
    fs::create_dir(&wrapper).unwrap();
    let seen = t.path("systemctl-env");
    fs::write(
        wrapper.join("systemctl"),
        format!(
            "#!/bin/sh\nenv >> {}\nexec {} \"$@\"\n",
            seen.display(),
            support_dir().join("systemctl").display()
        ),
    )
    .unwrap();
    set_mode(&wrapper.join("systemctl"), 0o755);
    let path = format!(
        "{}:{}:{}",
        wrapper.display(),
        support_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    t.cmd(&["restore", &id])
        .env("PATH", path)
        .env("OS_PASSWORD", "Leak-1-os-password")
        .env("ST_KEY", "Leak-2-tempauth-key")
        .env("OS_APPLICATION_CREDENTIAL_SECRET", "Leak-3-app-secret")
        .env("REDIS_BACKUP_OS_PASSWORD", "Leak-4-setting")
        .run()
        .ok();

    let env = fs::read_to_string(&seen).expect("systemctl ran");
    assert!(env.contains("SYSTEMCTL_SHIM_DIR="), "{env}");
    assert!(!env.contains("Leak-"), "a secret reached systemctl:\n{env}");
}

/// The private server that rebuilds the AOF starts from redis.conf, so it
/// takes redis.conf's password. One changed with CONFIG SET and not
/// written back (the settings name the new one) is refused at once, saying
/// so, instead of being sent again until `save_timeout` and blamed on a
/// server that "did not finish loading".
#[test]
fn a_private_server_that_refuses_the_password_ends_the_restore_at_once() {
    let mut t = TestRedis::builder()
        .appendonly()
        .requirepass("Old-Pw-1")
        .setting("save_timeout", "60")
        .start();
    let mut conn = t.conn();
    fill_every_type(&mut conn);
    let id = t.backup();
    let before = t.state();
    conn.ok(&["CONFIG", "SET", "requirepass", "New-Pw-2"]);
    t.set_setting("redis_password", "New-Pw-2");

    let out = t
        .cmd(&["restore", &id])
        .run_within(std::time::Duration::from_secs(30));
    assert_ne!(out.code, Some(0), "{out}");
    out.stderr_has("password");
    assert!(t.is_active(), "Redis was stopped");
    conn.ok(&["CONFIG", "SET", "requirepass", "Old-Pw-1"]);
    assert_eq!(t.state(), before);
}

/// Clients reconnect the moment Redis is back and write at once. The check
/// of the restored key counts took their keys for a wrong load: exit 6, and
/// the rollback dropped writes Redis had answered OK to. Writes since the
/// load are allowed for (Redis counts them from 0 as it loads).
#[test]
fn clients_writing_as_soon_as_redis_is_back_do_not_fail_the_restore() {
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    let id = id_of(&record);
    change_data(&t, &backed_up);
    let port = t.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut written = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut conn) = Resp::tcp(port) else {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    continue;
                };
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match conn.try_call(&["SET", &format!("live:{written}"), "v"]) {
                        Ok(reply) if !reply.is_error() => written += 1,
                        _ => break,
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            written
        })
    };

    let out = t.run(&["restore", &id]);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().expect("writer");
    out.ok();
    assert!(written > 0, "the writer wrote nothing");
}

/// A restore into a replica said it worked (exit 0); seconds later its
/// primary's sync replaced the restored data, and the previous data had
/// gone with the work folder. Refused before anything is touched, whether
/// redis.conf makes it a replica or it is one now.
#[test]
fn a_restore_into_a_replica_is_refused() {
    let primary = TestRedis::builder().start();
    primary.conn().ok(&["SET", "k", "primary's"]);
    let (t, backed_up, record) = filled_and_backed_up(TestRedis::builder());
    let id = id_of(&record);
    change_data(&t, &backed_up);

    t.conn()
        .ok(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
    let synced = std::time::Instant::now();
    while t.conn().info_field("replication", "master_link_status") != "up" {
        assert!(synced.elapsed().as_secs() < 20, "the replica never synced");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let before = Untouched::take(&t);
    t.run(&["restore", &id])
        .code(2)
        .stderr_has("is a replica of 127.0.0.1")
        .stderr_has("promote it first");
    before.check(&t, "a replica now");

    t.conn().ok(&["REPLICAOF", "NO", "ONE"]);
    let conf = t.redis_conf();
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str(&format!("replicaof 127.0.0.1 {}\n", primary.port));
    fs::write(&conf, text).unwrap();
    let before = Untouched::take(&t);
    t.run(&["restore", &id])
        .code(2)
        .stderr_has("makes Redis a replica of 127.0.0.1");
    before.check(&t, "a replica by its config");
}

/// A Redis that keeps nothing on disk (`save ""`, `appendonly no`) starts
/// on the dump the restore places; left there, every later start of Redis
/// loaded it again: keys deleted since came back, keys written since were
/// lost for stale ones (the crash review). Once Redis runs on it and the
/// restore is done, it goes, as a backup's dump does.
#[test]
fn a_restore_into_a_redis_that_keeps_nothing_on_disk_leaves_no_dump() {
    let t = TestRedis::builder().save(Save::Off).start();
    t.conn().ok(&["SET", "k", "restored"]);
    let id = t.backup();
    t.conn().ok(&["SET", "k", "changed"]);

    t.run(&["restore", &id]).ok();

    assert_eq!(t.conn().call(&["GET", "k"]).text(), "restored");
    assert!(!t.dump_file().exists(), "the placed dump is left");
    t.conn().ok(&["DEL", "k"]);
    t.stop_redis();
    t.start_redis();
    assert_eq!(
        t.conn().call(&["EXISTS", "k"]).int(),
        0,
        "a deleted key came back"
    );
}

/// (The second self-review.) redis.conf says `save ""`, but the unit runs the server with
/// save rules of its own (`--save` on its command line): it keeps data on
/// disk, the restore still removes the dump it placed, and a crash before
/// its first save brings it back empty.
#[test]
fn a_restore_into_a_redis_saved_by_its_unit_keeps_its_dump() {
    a_restore_into_a_redis_saved_by_its_unit(TestRedis::builder());
}

/// The same where CONFIG cannot be asked (renamed away: a hardened
/// server's, or an ACL's refusal): redis.conf stood in for what the server
/// runs with, and said it saves nothing (the last review).
#[test]
fn a_restore_into_a_redis_saved_by_its_unit_and_no_config_keeps_its_dump() {
    a_restore_into_a_redis_saved_by_its_unit(TestRedis::builder().rename_command("CONFIG", ""));
}

fn a_restore_into_a_redis_saved_by_its_unit(builder: Builder) {
    use std::os::unix::fs::PermissionsExt;
    let t = builder.save(Save::Off).prepare();
    let wrapper = t.path("wrapper-redis-server");
    fs::write(
        &wrapper,
        "#!/bin/bash\nexec redis-server \"$@\" --save \"3600 1\"\n",
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        t.shim_dir.join(format!("{}.server", t.unit)),
        format!("{}\n", wrapper.display()),
    )
    .unwrap();
    t.start_redis();
    t.conn().ok(&["SET", "k", "restored"]);
    let id = t.backup();
    t.conn().ok(&["SET", "k", "changed"]);

    let out = t.run(&["restore", &id]);
    out.ok();
    assert!(
        t.dump_file().exists(),
        "the dump of a server that saves went\n{out}"
    );
    // A crash (power loss, OOM kill) before the first save.
    let pid = t.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    t.start_redis();
    let got = t.conn().call(&["GET", "k"]);
    assert!(
        t.dump_file().exists() || format!("{got:?}").contains("restored"),
        "restored data lost"
    );
}

/// (The second self-review.) The dump removed was whatever was there once
/// the work folder was gone, not the one placed: an operator's SAVE right
/// after Redis was back was removed too. Only the placed file goes.
#[test]
fn a_save_made_after_the_restart_is_not_removed() {
    use std::os::unix::fs::MetadataExt;
    let t = TestRedis::builder().save(Save::Off).start();
    t.conn().ok(&["SET", "k", "restored"]);
    let id = t.backup();
    t.conn().ok(&["SET", "k", "changed"]);
    let mut tool = t
        .with_env(
            Run::new("strace")
                .args(&["-o", "/dev/null", "-e", "trace=unlinkat", "-e"])
                .arg("inject=unlinkat:delay_enter=1500000")
                .args(&[BIN, "-c", &t.settings_file().display().to_string()])
                .args(&["restore", &id]),
        )
        .watch();
    tool.wait_for_line("was out of service");
    let placed = fs::metadata(t.dump_file()).unwrap().ino();
    t.conn().ok(&["SET", "written-after", "1"]);
    t.conn().ok(&["SAVE"]);
    let saved = fs::metadata(t.dump_file()).unwrap().ino();
    let out = tool.finish();
    out.ok();
    assert_ne!(placed, saved, "the SAVE made no new file");
    assert!(t.dump_file().exists(), "the operator's SAVE was removed");
}

/// A cluster node's role is in its nodes.conf, not redis.conf: a stopped
/// node that a failover made a replica passed `refuse_a_replica` (which
/// asks only redis.conf when Redis is down). The restore placed the RDB,
/// started the node, counted the keys and said it worked (exit 0);
/// seconds later the node's primary replaced the restored data by a full
/// sync, and the previous data had gone with the work folder.
#[test]
fn a_restore_into_a_stopped_cluster_replica_is_refused() {
    let node = || {
        TestRedis::builder()
            .conf_line("cluster-enabled yes")
            .conf_line(&format!("cluster-port {}", free_port()))
            .conf_line("cluster-node-timeout 2000")
            .start()
    };
    let primary = node();
    let mut replica = node();
    let mut p = primary.conn();
    p.ok(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    let waited = std::time::Instant::now();
    while !p
        .ok(&["CLUSTER", "INFO"])
        .text()
        .contains("cluster_state:ok")
    {
        assert!(waited.elapsed().as_secs() < 20, "the cluster never came up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    p.ok(&["SET", "k", "backed up"]);
    let id = primary.backup();
    p.ok(&["SET", "k", "live"]);
    let primary_id = p.ok(&["CLUSTER", "MYID"]).text();
    let bus = p.ok(&["CONFIG", "GET", "cluster-port"]);
    let bus = match bus {
        Reply::Array(items) => items[1].text(),
        other => panic!("{other:?}"),
    };

    let mut r = replica.conn();
    r.ok(&[
        "CLUSTER",
        "MEET",
        "127.0.0.1",
        &primary.port.to_string(),
        &bus,
    ]);
    let waited = std::time::Instant::now();
    loop {
        let replied = r.call(&["CLUSTER", "REPLICATE", &primary_id]);
        if !replied.is_error() {
            break;
        }
        assert!(waited.elapsed().as_secs() < 20, "never met: {replied:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    while r.info_field("replication", "master_link_status") != "up" {
        assert!(waited.elapsed().as_secs() < 30, "the replica never synced");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(r);
    replica.stop_redis();
    replica.use_backups_of(&primary);
    let restored = replica.run(&["restore", &id]);

    // Let the node find its primary again, whatever the restore said.
    let settled = std::time::Instant::now();
    let value = loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Ok(mut r) = replica.raw_conn() else {
            break None;
        };
        r.ok(&["READONLY"]);
        let up = r.info_field("replication", "master_link_status") == "up";
        let value = r.call(&["GET", "k"]).text();
        if up || settled.elapsed().as_secs() > 15 {
            break Some(value);
        }
    };
    assert_ne!(
        restored.code,
        Some(0),
        "the restore into a cluster replica said it worked, and the node now holds {value:?} (the primary's, not the backup's)\n{restored}"
    );
    // (Refused before anything is touched: its nodes.conf says so.)
    restored.code(2).stderr_has("myself,slave");
    assert_eq!(value, None, "the stopped node was started");

    // A nodes file the restore cannot read first (outside the data dir):
    // the started server's role is checked, and the restore rolled back.
    let elsewhere = replica.path("nodes-elsewhere.conf");
    fs::rename(replica.data_dir().join("nodes.conf"), &elsewhere).unwrap();
    let conf = replica.redis_conf();
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str(&format!("cluster-config-file {}\n", elsewhere.display()));
    fs::write(&conf, text).unwrap();
    replica
        .run(&["restore", &id])
        .code(6)
        .stderr_has("role:slave")
        .stderr_has("the previous data was put back");
}

/// The databases a backup needs are told from the record's counts after
/// the save only: a database emptied while Redis saved (the save holds its
/// keys) is in `keys_before` and in the RDB, not in `keys`. On a target
/// serving fewer databases, the restore went on, stopped Redis, placed the
/// RDB, and the start failed ("Data file was created with a Redis server
/// configured to handle more than 4 databases"): an outage and a rollback
/// for what is refused up front, Redis untouched, when `keys` says it.
#[test]
fn a_database_emptied_while_redis_saved_is_still_checked_against_the_target() {
    let source = TestRedis::start();
    let mut c = source.conn();
    add_filler(&mut c, 300);
    c.ok(&["SELECT", "5"]);
    c.ok(&["SET", "in-db5", "saved"]);
    c.ok(&["SELECT", "0"]);
    // ~300 keys at 3 ms each: the save runs for about a second.
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "3000"]);
    let record = std::thread::scope(|s| {
        let backup = s.spawn(|| source.backup_json(&[]));
        let mut w = source.conn();
        let waited = std::time::Instant::now();
        while w.info_field("persistence", "rdb_bgsave_in_progress") != "1" {
            assert!(waited.elapsed().as_secs() < 20, "the save never started");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        w.ok(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
        w.ok(&["SELECT", "5"]);
        w.ok(&["FLUSHDB"]);
        assert_eq!(
            w.info_field("persistence", "rdb_bgsave_in_progress"),
            "1",
            "precondition: db5 emptied while Redis saved"
        );
        backup.join().expect("backup thread")
    });
    assert_eq!(record["keys_before"]["db5"], 1, "{record}");
    assert!(record["keys"].get("db5").is_none(), "{record}");
    let id = id_of(&record);

    let mut target = TestRedis::builder().conf_line("databases 4").start();
    target.conn().ok(&["SET", "k", "the target's"]);
    target.use_backups_of(&source);
    let pid = target.pid();
    let calls = target.shim_calls().len();
    let out = target.run(&["restore", &id]);
    let calls = target.shim_calls_since(calls);
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("stop") || c.contains("start")),
        "Redis was stopped (and started again) for a backup it cannot load: {calls:?}\n{out}"
    );
    out.code(5).stderr_has("db5");
    assert_eq!(target.pid(), pid);
}

/// A primary Sentinel watches: an outage longer than Sentinel's
/// `down-after-milliseconds` (a restore's, as its data loads) has it fail
/// the primary over, and the restored server, back, is made a replica of
/// the new primary, whose sync replaces the restored data after the
/// restore said it worked (the review of the session's restore changes
/// played it with a stopped primary). Refused before anything is touched
/// while Sentinel says hello to it.
#[test]
fn a_restore_into_a_primary_sentinel_watches_is_refused() {
    let (t, _, record) = filled_and_backed_up(TestRedis::builder());
    let id = id_of(&record);
    let sentinel_port = free_port();
    let conf = t.scratch().join("sentinel.conf");
    fs::write(
        &conf,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir {}\nsentinel monitor m 127.0.0.1 {} 1\n",
            t.scratch().display(),
            t.port
        ),
    )
    .unwrap();
    struct Sentinel(std::process::Child);
    impl Drop for Sentinel {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let sentinel = Sentinel(
        std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("Sentinel to watch the primary", || {
        let numsub = format!(
            "{:?}",
            t.conn().call(&["PUBSUB", "NUMSUB", "__sentinel__:hello"])
        );
        (!numsub.contains("Integer(0)")).then_some(())
    });
    let before = Untouched::take(&t);
    t.run(&["restore", &id])
        .code(2)
        .stderr_has("Sentinel watches this Redis")
        .stderr_has("SENTINEL REMOVE");
    before.check(&t, "watched by Sentinel");
    drop(sentinel);
}
