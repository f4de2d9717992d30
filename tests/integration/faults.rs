//! Backups when things go wrong underneath them: the save child killed, Redis
//! killed mid-save, the tool itself killed with SIGKILL mid-stream, and a full
//! disk under local storage. Each must leave no listed backup, no partial
//! object under a backup's name, and a next backup that works.

use crate::harness::*;
use std::fs;

/// Children of `parent` (the fork that writes an RDB is one).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let after = stat.rsplit(") ").next().unwrap_or("");
                let mut fields = after.split_whitespace();
                let state = fields.next();
                let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
                state != Some("Z") && ppid == Some(parent)
            })
        })
        .collect()
}

fn exit_code_of(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("wait for redis-backup");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A backup started while Redis's save is slow (2000 keys at 2 ms each:
/// seconds, time enough to kill something): the running tool, Redis's pid
/// and the pid of the save child Redis forked for it.
fn backup_during_a_slow_save(t: &TestRedis) -> (std::process::Child, u32, u32) {
    let mut c = t.conn();
    add_filler(&mut c, 2000);
    c.ok(&["CONFIG", "SET", "rdb-key-save-delay", "2000"]);
    let redis_pid = t.pid().expect("redis pid");
    let tool = t.cmd(&["backup"]).spawn();
    let child = wait_for("Redis to fork the save child", || {
        children_of(redis_pid).first().copied()
    });
    (tool, redis_pid, child)
}

#[test]
fn the_save_child_killed_mid_save_is_exit_3_and_nothing_recorded() {
    let t = TestRedis::start();
    let (tool, _, child) = backup_during_a_slow_save(&t);
    kill9(child);
    let (code, stderr) = exit_code_of(tool);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("BGSAVE failed"), "{stderr}");
    assert!(t.list(&[]).is_empty(), "nothing recorded");
    assert_eq!(t.storage_files(), Vec::<String>::new());
    t.conn().ok(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    t.backup();
}

#[test]
fn redis_killed_mid_save_is_exit_3_and_nothing_recorded() {
    let t = TestRedis::start();
    let (tool, redis_pid, child) = backup_during_a_slow_save(&t);
    kill9(redis_pid);
    kill9(child);
    let (code, stderr) = exit_code_of(tool);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(t.list(&[]).is_empty());
    assert_eq!(t.storage_files(), Vec::<String>::new());
}

#[test]
fn the_tool_killed_mid_stream_leaves_nothing_listed_and_the_next_backup_works() {
    let mut t = TestRedis::start();
    // Incompressible data, one thread, deflate level 9: a stream of seconds.
    add_noise_keys(&mut t.conn(), 40_000, 7);
    t.set_setting("compression_level", "9");
    t.set_setting("threads", "1");
    let tool = t.cmd(&["backup", "--id", "killed"]).spawn();
    let storage = t.storage_dir();
    wait_for("the object to be half written", || {
        fs::read_dir(&storage).ok()?.flatten().find(|e| {
            e.file_name().to_string_lossy().starts_with(".tmp-")
                && e.metadata().is_ok_and(|m| m.len() > 1 << 20)
        })
    });
    let mut tool = tool;
    tool.kill().expect("kill -9 the tool");
    tool.wait().expect("reap the tool");

    assert!(t.list(&[]).is_empty(), "a killed backup is never listed");
    t.run(&["show", "killed"]).code(4);
    assert!(
        !storage.join("killed.rbk").exists() && !storage.join("killed.json").exists(),
        "nothing under the backup's name"
    );
    let temps = || {
        dir_entries(&storage)
            .into_iter()
            .filter(|n| n.starts_with(".tmp-"))
            .count()
    };
    assert_eq!(temps(), 1, "the killed run's half-written object");
    // The lock died with the process; the same ID can be used again, and
    // the next backup removes the dead run's temporary file.
    t.set_setting("compression_level", "1");
    t.set_setting("threads", "2");
    let out = t.run(&["backup", "--id", "killed"]);
    out.ok();
    assert_eq!(temps(), 0, "the dead run's temporary file is gone");
    t.run(&["verify", "killed"]).ok();
}

#[test]
fn a_full_disk_under_local_storage_is_exit_4_with_no_partial_files() {
    // Storage on a 512 KiB tmpfs, a backup of several MiB of noise. Needs
    // root (mount), as make test has.
    let t = TestRedis::start();
    add_noise_keys(&mut t.conn(), 3000, 11);
    let storage = t.storage_dir();
    fs::create_dir_all(&storage).unwrap();
    let _tmpfs = Tmpfs::mount(&storage, "size=512k,mode=0700");
    let before = t.state();

    let out = t.run(&["backup", "--id", "full"]);
    out.code(4);
    assert!(
        out.stderr.contains("No space left") || out.stderr.contains("space"),
        "{out}"
    );
    assert_eq!(
        dir_entries(&storage),
        Vec::<String>::new(),
        "no partial object or temp file left"
    );
    assert!(t.is_active());
    assert_eq!(t.state(), before, "Redis untouched");
}

/// Run the tool with `args` under strace, following its threads (the
/// write-behind flusher is one), with the strace options `strace`.
fn under_strace(t: &TestRedis, strace: &[&str], args: &[&str]) -> Output {
    let settings = t.settings_file().display().to_string();
    t.with_env(
        Run::new("strace")
            .args(&["-f"])
            .args(strace)
            .args(&[BIN, "-c", &settings])
            .args(args),
    )
    .run()
}

/// Long files (a backup object, an export, a restore's staging file) are
/// flushed behind the writer every 16 MiB, and a stored backup's pages are
/// dropped behind its reader. A flush that fails (EIO from fdatasync,
/// injected by strace; the kernel reports such an error to one fsync only,
/// and here it is the flusher's) fails the command: nothing under the final
/// name, no temp file, Redis untouched. Only the flusher calls fdatasync
/// (every other sync is an fsync), so the injection hits nothing else.
#[test]
fn a_failed_flush_behind_the_writer_fails_the_command_and_leaves_nothing() {
    let t = TestRedis::builder().save(Save::Off).start();
    // ~20 MiB of noise, stored and plain alike: one flush, at 16 MiB, and no
    // write after the next window to report its failure. Only the check
    // before the final fsync can.
    add_noise_keys(&mut t.conn(), 20_000, 3);
    let before = t.state();
    let eio = ["-o", "/dev/null", "-e", "inject=fdatasync:error=EIO"];

    let out = under_strace(&t, &eio, &["backup", "--id", "eio"]);
    out.code(4);
    assert!(out.stderr.contains("Input/output error"), "{out}");
    assert_eq!(dir_entries(&t.storage_dir()), Vec::<String>::new());

    let id = t.backup();
    let export = t.path("export.rdb");
    let export_arg = export.display().to_string();
    let out = under_strace(&t, &eio, &["export", &id, "--out", &export_arg]);
    out.code(1);
    assert!(out.stderr.contains("Input/output error"), "{out}");
    let exports = |t: &TestRedis| {
        dir_entries(t.scratch())
            .into_iter()
            .filter(|n| n.contains("export"))
            .collect::<Vec<_>>()
    };
    assert_eq!(exports(&t), Vec::<String>::new());

    let out = under_strace(&t, &eio, &["restore", &id]);
    out.code(1);
    assert!(out.stderr.contains("Input/output error"), "{out}");
    assert!(t.is_active());
    assert_eq!(t.state(), before, "Redis untouched");
    assert_eq!(t.restore_work_dirs(), Vec::<std::path::PathBuf>::new());

    // Without the fault, on ~40 MiB: two flushes, each followed by a drop
    // of what it synced, on the flusher's thread (the reader of the stored
    // backup drops pages too, on another).
    add_noise_keys(&mut t.conn(), 40_000, 3);
    let id = t.backup();
    let trace = t.path("export.strace");
    let trace_arg = trace.display().to_string();
    let traced = ["-o", &trace_arg, "-e", "trace=fdatasync,fadvise64"];
    under_strace(&t, &traced, &["export", &id, "--out", &export_arg]).ok();
    let trace = fs::read_to_string(&trace).unwrap();
    let thread_of = |line: &str| line.split_whitespace().next().unwrap_or("").to_string();
    let flushers: Vec<String> = trace
        .lines()
        .filter(|l| l.contains("fdatasync("))
        .map(thread_of)
        .collect();
    assert_eq!(flushers.len(), 2, "{trace}");
    let dropped_by_flusher = trace
        .lines()
        .filter(|l| l.contains("POSIX_FADV_DONTNEED") && flushers.contains(&thread_of(l)))
        .count();
    assert_eq!(dropped_by_flusher, 2, "{trace}");
    let shown = t.run(&["--json", "show", &id]);
    assert_eq!(
        sha256_file(&export),
        shown.ok().json()["raw_sha256"].as_str().unwrap()
    );

    // Reading a stored backup drops what was read, as it goes.
    let trace = t.path("verify.strace");
    let trace_arg = trace.display().to_string();
    under_strace(
        &t,
        &["-o", &trace_arg, "-e", "trace=fadvise64"],
        &["verify", &id],
    )
    .ok();
    let trace = fs::read_to_string(&trace).unwrap();
    assert!(trace.matches("POSIX_FADV_DONTNEED").count() >= 2, "{trace}");
}

/// A Redis that keeps nothing on disk (`save ""`, `appendonly no`) is made
/// to write a dump for the backup. A backup killed (a host shut down
/// during the nightly run) must not leave it: the next start of Redis
/// would load it, and keys deleted since would come back.
#[test]
fn a_backup_killed_midway_leaves_no_dump_for_a_redis_that_keeps_none() {
    let t = TestRedis::builder().save(Save::Off).start();
    t.conn().ok(&["SET", "deleted-later", "stale"]);
    assert!(!t.dump_file().exists(), "precondition: no dump");
    // Killed as it commits the object, long after the save.
    let killed = ["-o", "/dev/null", "-e", "inject=linkat:signal=KILL:when=1"];
    let out = under_strace(&t, &killed, &["backup"]);
    assert_eq!(out.code, None, "not killed: {out}");
    assert!(!t.dump_file().exists(), "the backup's dump was left");
    t.conn().ok(&["DEL", "deleted-later"]);
    t.stop_redis();
    t.start_redis();
    assert_eq!(t.conn().ok(&["GET", "deleted-later"]), Reply::Nil);
}

/// Run the tool with `args` under strace, killed on entry to the `n`th of
/// `syscalls` (any thread); false if it made fewer and finished.
fn killed_at_nth(t: &TestRedis, args: &[&str], syscalls: &str, n: usize) -> bool {
    let inject = format!("inject={syscalls}:signal=KILL:when={n}");
    let trace = format!("trace={syscalls}");
    let out = under_strace(t, &["-o", "/dev/null", "-e", &trace, "-e", &inject], args);
    if out.code == Some(0) {
        return false;
    }
    assert_eq!(
        out.code, None,
        "{args:?} at {syscalls} #{n}: failed, not killed\n{out}"
    );
    true
}

/// Every backup listed is whole: `verify` reads and checks it.
fn every_listed_backup_verifies(t: &TestRedis, at: &str) -> Vec<String> {
    let ids: Vec<String> = t.list(&[]).iter().map(id_of).collect();
    for id in &ids {
        let out = t.run(&["verify", id]);
        assert_eq!(
            out.code,
            Some(0),
            "{id} listed but not whole after a kill at {at}\n{out}"
        );
    }
    ids
}

/// kill -9 of a backup to a local directory, of `delete` and of `prune`, on
/// entry to each link, unlink, rename and fsync they make: whatever a kill
/// leaves, every backup listed verifies, nothing is listed twice or lost
/// but what the command was deleting, and the next backup works.
#[test]
fn backup_delete_and_prune_killed_at_every_step_leave_only_whole_backups() {
    let t = TestRedis::builder().save(Save::Off).start();
    add_noise_keys(&mut t.conn(), 2_000, 1);
    let syscalls = "linkat,link,unlink,unlinkat,rename,renameat,renameat2,fsync";
    let mut n = 1;
    while killed_at_nth(&t, &["backup"], syscalls, n) {
        assert!(n < 60, "the backup never finished under strace");
        let at = format!("backup {syscalls} #{n}");
        let before = every_listed_backup_verifies(&t, &at);
        assert!(before.len() <= n, "{at}: {before:?}");
        n += 1;
    }
    assert!(n > 4, "the backup made {} such calls", n - 1);
    let kept = t.backup();
    let listed = every_listed_backup_verifies(&t, "the end of the backups");
    assert!(listed.contains(&kept));

    // delete, killed at each step: the backup is listed whole or gone.
    let mut n = 1;
    loop {
        let victim = t.backup();
        if !killed_at_nth(&t, &["delete", &victim], syscalls, n) {
            break;
        }
        let at = format!("delete {syscalls} #{n}");
        let listed = every_listed_backup_verifies(&t, &at);
        assert!(listed.contains(&kept), "{at}: another backup went");
        if listed.contains(&victim) {
            t.run(&["delete", &victim]).ok();
        } else {
            // Gone from the listing; what is left of it goes by its name.
            let _ = t.run(&["delete", &victim]);
        }
        n += 1;
        assert!(n < 30);
    }
    // prune, killed at each step.
    let mut n = 1;
    loop {
        t.backup();
        t.backup();
        let newest = t.backup();
        if !killed_at_nth(&t, &["prune", "--keep-last", "1"], syscalls, n) {
            break;
        }
        let at = format!("prune {syscalls} #{n}");
        let listed = every_listed_backup_verifies(&t, &at);
        assert!(listed.contains(&newest), "{at}: the newest went");
        t.run(&["prune", "--keep-last", "1"]).ok();
        n += 1;
        assert!(n < 60);
    }
    let listed = every_listed_backup_verifies(&t, "the end");
    assert_eq!(listed.len(), 1, "{listed:?}");
    t.backup();
}

/// A backup removes the objects left with no record for over an hour. It
/// took any failure to look at the record (EIO or ESTALE from an NFS or
/// CIFS share, a soft mount timing out) for "no record", and deleted the
/// object of a good backup: every backup older than an hour was one
/// transient error away from being lost. Here the host's clock runs two
/// hours ahead (so the backup made a moment ago is old enough), and the one
/// look at its record fails with EIO.
#[test]
fn a_record_that_cannot_be_looked_at_for_now_does_not_make_its_object_an_orphan() {
    let t = TestRedis::builder().save(Save::Off).start();
    t.conn().ok(&["SET", "k", "v"]);
    let id = t.backup();
    let record = format!("{id}.json");
    let settings = t.settings_file().display().to_string();
    let library = crate::pitr::clock_shift_library().display().to_string();
    // Two hours on, with the record there to be seen: the object stays.
    t.cmd(&["backup"])
        .env("LD_PRELOAD", &library)
        .env("SHIFT_SECS", "7200")
        .run()
        .ok();
    assert!(t.storage_dir().join(format!("{id}.rbk")).exists());
    let out = t
        .with_env(
            Run::new("strace")
                .args(&["-f", "-o", "/dev/null", "-P", &record])
                .args(&["-e", "trace=newfstatat,statx,fstatat64"])
                .args(&["-e", "inject=newfstatat,statx,fstatat64:error=EIO"])
                .args(&[BIN, "-c", &settings, "backup"]),
        )
        .env("LD_PRELOAD", &library)
        .env("SHIFT_SECS", "7200")
        .run();
    out.ok();
    assert!(
        t.storage_dir().join(format!("{id}.rbk")).exists(),
        "the object of backup {id} was removed as an orphan\n{out}"
    );
    t.run(&["verify", &id]).ok();
}

/// (Review of 7afa657.) A backup of a Redis that keeps nothing on disk
/// removes its dump by taking it aside first; killed before the unlink,
/// the dump (the whole data set) stays under the aside name, and the next
/// backup must not leave it there.
#[test]
fn a_backup_killed_as_it_removes_its_dump_leaves_no_copy_aside() {
    let t = TestRedis::builder().save(Save::Off).start();
    for i in 0..200 {
        t.conn().ok(&["SET", &format!("k{i}"), &"v".repeat(256)]);
    }
    let data = t.dump_file().parent().unwrap().to_path_buf();
    for n in 1..30 {
        t.conn().ok(&["SET", "changed", &n.to_string()]);
        if !killed_at_nth(&t, &["backup"], "unlink,unlinkat", n) {
            assert!(n > 1, "the backup made no unlink");
            return;
        }
        t.run(&["backup"]).ok();
        let left: Vec<String> = fs::read_dir(&data)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".redis-backup-unkept"))
            .collect();
        assert!(
            left.is_empty() && !t.dump_file().exists(),
            "a backup killed at unlink #{n}: {left:?} stays in the data dir"
        );
    }
    panic!("the backup never ran through");
}
