//! Least privilege (issue 13): whoever holds the account that owns Redis's
//! data dir (the `redis` account on Debian) must gain nothing from the
//! root-run tool. Each test plays one attack of the issue for real: an
//! unprivileged user made by the harness (`owner_user()`) owns the data dir
//! and redis.conf (0640) and runs redis-server, and the attacker's moves are
//! made by a process running as that user (`Attacker`, C programs racing the
//! tool with inotify and tight polling), or by a server answering on the
//! Redis port. The victim is always root-only (root:root, 0600 in a 0700
//! directory) and outside the data dir; it must keep its owner, mode and
//! bytes, and no copy of it may be readable by the attacker in the data dir.
//!
//! A restore under attack may end well (exit 0, with the backup's data live)
//! or refuse and put the previous data back (exit 6); what it may never do is
//! act as root on what the attacker points it at.

use crate::attacker::*;
use crate::fake_swift::run_bounded;
use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Helpers

/// A path as an argument for an attacker program.
fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// `debian_redis()` with `save_timeout` well inside a test's time: a tool
/// that waits for something the attacker made impossible (a manifest behind
/// a link it no longer follows, a rewrite that keeps failing) gives up and
/// rolls back instead of outliving the test.
fn redis() -> Builder {
    debian_redis().setting("save_timeout", "20")
}

/// The attacker's module, named by the account in its own redis.conf
/// (which row 3 lets it write): every server started with that config
/// loads it.
fn evil_module_in_the_conf_of(t: &TestRedis) -> EvilModule {
    let module = EvilModule::new(t.scratch());
    owner_sh(&format!(
        "echo 'loadmodule {}' >> '{}'",
        module.so.display(),
        t.redis_conf().display()
    ));
    module
}

/// The tool ended by itself, with an exit code of its own: not killed by a
/// signal, not a panic (101).
#[track_caller]
fn assert_no_crash(out: &Output, context: &str) {
    assert!(
        matches!(out.code, Some(code) if code != 101),
        "the tool crashed (exit {:?})\n{context}",
        out.code
    );
}

/// Exit 0 with the backed-up data live, or exit 6: the restore failed and
/// the previous data was put back.
#[track_caller]
fn assert_restored_or_rolled_back(t: &TestRedis, out: &Output, backed_up: &DbState, context: &str) {
    match out.code {
        Some(0) => assert_eq!(
            &t.state(),
            backed_up,
            "the restore said it worked, but the live data is not the backup's\n{context}"
        ),
        Some(6) => {}
        other => panic!("expected exit 0 (restored) or 6 (rolled back), got {other:?}\n{context}"),
    }
}

/// Restore `id` while `attacker` plays, and hold the outcome to the rules:
/// every victim keeps owner, mode and bytes, no copy of one is readable in
/// the data dir, and the restore either worked or was rolled back.
fn restore_under_attack(
    t: &TestRedis,
    id: &str,
    attacker: Attacker,
    backed_up: &DbState,
    victims: &[&Victim],
) {
    let (out, context, _) = restore_attacked(t, id, attacker, victims);
    assert_restored_or_rolled_back(t, &out, backed_up, &context);
}

/// Restore `id` while `attacker` plays; every victim keeps owner, mode and
/// bytes, and no copy of one is readable in the data dir. Returns the run,
/// the context for messages and what the attacker said, for the outcome's
/// own checks.
fn restore_attacked(
    t: &TestRedis,
    id: &str,
    attacker: Attacker,
    victims: &[&Victim],
) -> (Output, String, String) {
    restore_attacked_until(t, id, attacker, victims, "")
}

/// `restore_attacked`, the attacker's log read once it holds `said`.
fn restore_attacked_until(
    t: &TestRedis,
    id: &str,
    attacker: Attacker,
    victims: &[&Victim],
    said: &str,
) -> (Output, String, String) {
    let out = t.run(&["restore", id]);
    let log = attacker.settled_log_saying(said);
    let context = format!("{out}\n{attacker}");
    // Stopped before the checks: nothing it does after the restore counts.
    drop(attacker);
    assert_all_intact(victims, &context);
    for victim in victims {
        victim.assert_no_copy_readable_in(&t.data_dir(), &context);
    }
    assert_no_crash(&out, &context);
    (out, context, log)
}

/// The work folder of an "interrupted restore" planted by the attacker: a
/// journal saying the previous data was moved aside, `previous` a symlink to
/// `previous` and `failed` one to `failed`.
fn plant_interrupted_restore(t: &TestRedis, previous: &Path, failed: &Path) {
    let folder = t
        .data_dir()
        .join(format!("{RESTORE_WORK_PREFIX}20000101T000000Z"));
    owner_sh(&format!(
        "set -e; mkdir '{f}'; \
         printf 'staged\\nstopping was_active=true\\naside-done\\n' > '{f}/journal'; \
         ln -s '{p}' '{f}/previous'; ln -s '{x}' '{f}/failed'",
        f = folder.display(),
        p = previous.display(),
        x = failed.display()
    ));
}

/// A root-only directory (`previous` of a planted folder) holding files under
/// the data files' names, as a victim.
fn root_dir_with_data_file_names(t: &TestRedis, name: &str) -> Victim {
    let mut victim = Victim::new(t.scratch(), name);
    let secret = victim.bytes.clone();
    for file in ["dump.rdb", "appendonly.aof"] {
        victim.root.file(file, &secret);
    }
    victim
}

// ---------------------------------------------------------------------------
// 1. The work folder swapped mid-restore

/// The attacker waits for restore's work folder to appear in the data dir
/// and, once staging is over (Redis's shutdown save is the next thing it
/// sees there), renames it away and puts its own in its place, with
/// `incoming.rdb` a symlink to the root-only victim and `previous/` a
/// directory of its own. Today the ownership fix-up of the staged RDB
/// chowns and chmods the victim through the link.
#[test]
fn work_folder_swapped_mid_restore() {
    let (t, backed_up, record) = filled_and_backed_up(redis());
    let id = id_of(&record);
    let victim = Victim::new(t.scratch(), "victim");
    let attacker = Attacker::start(
        t.scratch(),
        "swap-workdir",
        &[
            arg(&t.data_dir()),
            arg(&victim.file),
            "-".into(),
            "-".into(),
        ],
    );

    restore_under_attack(&t, &id, attacker, &backed_up, &[&victim]);
}

/// The same swap, with `previous` and `failed` of the attacker's folder
/// symlinks to two root-only directories (each holding a root-only file):
/// the previous data moved aside into one, the restored files moved away
/// into the other. Neither may change, nor the victim.
#[test]
fn work_folder_swapped_with_previous_and_failed_linked_to_root_dirs() {
    let (t, backed_up, record) = filled_and_backed_up(redis());
    let id = id_of(&record);
    let victim = Victim::new(t.scratch(), "victim");
    let previous = Victim::new(t.scratch(), "root-previous");
    let failed = Victim::new(t.scratch(), "root-failed");
    let attacker = Attacker::start(
        t.scratch(),
        "swap-workdir",
        &[
            arg(&t.data_dir()),
            arg(&victim.file),
            arg(previous.dir()),
            arg(failed.dir()),
        ],
    );

    restore_under_attack(
        &t,
        &id,
        attacker,
        &backed_up,
        &[&victim, &previous, &failed],
    );
}

// ---------------------------------------------------------------------------
// 2. appendonlydir replaced while the AOF is rebuilt

/// An AOF restore while the attacker's `aof-dir` program, in `mode`,
/// exchanges `appendonlydir` once it has been rebuilt (see the two tests).
fn aof_dir_swapped_during_an_aof_restore(mode: &str) {
    let (t, backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let victim = Victim::new(t.scratch(), "victim");
    let attacker = Attacker::start(
        t.scratch(),
        "aof-dir",
        &[
            arg(&t.data_dir()),
            mode.into(),
            arg(victim.dir()),
            arg(&victim.file),
        ],
    );

    restore_under_attack(&t, &id, attacker, &backed_up, &[&victim]);
}

/// During an AOF restore, the attacker waits for `appendonlydir` to be made
/// anew and its manifest written, then exchanges it (atomically) for a
/// symlink to a root-only directory, and makes `appendonly.aof` (the pre-7
/// name, which also counts as "AOF written") a symlink to the root-only file
/// in it. Today the ownership fix-up chowns and chmods both through the links.
#[test]
fn aof_dir_replaced_by_a_symlink_while_rebuilt() {
    aof_dir_swapped_during_an_aof_restore("symlink");
}

/// The same moment, but `appendonlydir` is exchanged for a real directory of
/// the attacker's: copies of the rebuilt files, plus an entry
/// `appendonly.aof.9.incr.aof` that is a symlink to the root-only victim.
/// Today the fix-up chowns and chmods every entry, following the link.
#[test]
fn aof_dir_replaced_by_one_holding_a_symlink_while_rebuilt() {
    aof_dir_swapped_during_an_aof_restore("entry");
}

// ---------------------------------------------------------------------------
// 3. Code execution through the private redis-server

/// The attacker, who owns redis.conf (0640, as on Debian), appends
/// `loadmodule <its module>` to it while Redis runs (the running server does
/// not reread it), then waits for an AOF restore, whose private redis-server
/// reads that file. The module writes the uid it runs as to a marker, then
/// fails, so any server loading it exits at once (the shim's start of the
/// service then fails fast too: nothing hangs). Today the private server
/// runs as root: the attacker's code runs as uid 0.
///
/// Either outcome is fine: the module ran, but never as root (the marker
/// exists and names the redis account), or the restore refused before any
/// server was started (no marker, Redis neither stopped nor started). The
/// restore cannot succeed with a config that no server can load, so any
/// exit code but 0 (and a crash) is accepted.
#[test]
fn loadmodule_in_a_redis_writable_conf_never_runs_as_root() {
    let (t, _backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let module = evil_module_in_the_conf_of(&t);
    let calls = t.shim_calls().len();

    let out = t.run(&["restore", &id]);

    let uids = module.uids();
    let context = format!("{out}\nmodule markers (file -> uid): {uids:?}");
    let as_root: Vec<&String> = uids
        .iter()
        .filter(|(_, &uid)| uid == 0)
        .map(|(m, _)| m)
        .collect();
    assert!(
        as_root.is_empty(),
        "the attacker's module ran as root (uid 0 in {as_root:?})\n{context}"
    );
    assert_no_crash(&out, &context);
    assert_ne!(
        out.code,
        Some(0),
        "a restore with an unloadable config worked?\n{context}"
    );
    let (owner_uid, _) = owner_ids();
    if uids.is_empty() {
        let touched: Vec<String> = t
            .shim_calls_since(calls)
            .into_iter()
            .filter(|c| c.starts_with("stop ") || c.starts_with("start "))
            .collect();
        assert!(
            touched.is_empty(),
            "no server loaded the module, yet the restore stopped or started Redis ({touched:?})\n{context}"
        );
    } else {
        assert!(
            uids.values().all(|&uid| uid == owner_uid),
            "the module ran as someone other than {} ({owner_uid})\n{context}",
            owner_user()
        );
    }
}

/// A data dir can be the redis account's but in a group that account is not
/// in (`chown redis` leaves group root; Debian's /var/log/redis is
/// redis:adm), and redis.conf, the account's own, chooses the data dir. The
/// private server must then run with the account's own group, never the
/// dir's: the attacker's module records the groups it got, and none may be
/// the dir's foreign group (`adm` here), which reads the host's logs.
#[test]
fn a_data_dir_in_a_group_its_owner_is_not_in_lends_that_group_to_nobody() {
    const ADM: u32 = 4;
    let (t, _backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let (owner_uid, owner_gid) = owner_ids();
    std::os::unix::fs::chown(t.data_dir(), Some(owner_uid), Some(ADM)).expect("chgrp adm");
    let module = evil_module_in_the_conf_of(&t);

    let out = t.run(&["restore", &id]);

    let ids = module.ids();
    let context = format!("{out}\nmodule markers (file -> uid, groups): {ids:?}");
    assert_no_crash(&out, &context);
    assert!(
        !ids.is_empty(),
        "no server loaded the module: the test proves nothing\n{context}"
    );
    for (uid, groups) in ids.values() {
        assert_eq!(*uid, owner_uid, "{context}");
        assert_eq!(
            groups.first(),
            Some(&owner_gid),
            "not the owner's own group\n{context}"
        );
        assert!(
            !groups.contains(&ADM),
            "the module got the data dir's group\n{context}"
        );
    }
}

/// A restore with `--keep-previous` leaves a folder of root's (0700) in the
/// data dir, which the redis account cannot empty. It can rename it, though,
/// to a name a restore moves aside (`appendonlydir`, free with the AOF off):
/// the next restore then moved root's folder into `previous/` and removed
/// it whole once done. Only Redis's own files may be removed that way: the
/// folder must survive, kept with a warning.
#[test]
fn a_kept_folder_renamed_to_a_data_name_is_not_removed_with_the_previous_data() {
    let (t, backed_up, record) = filled_and_backed_up(redis());
    let id = id_of(&record);
    t.run(&["restore", &id, "--keep-previous"]).ok();
    let kept = t.restore_work_dirs();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let kept_dump = fs::read(kept[0].join("previous/dump.rdb")).expect("the kept dump");
    owner_sh(&format!(
        "mv '{}' '{}'",
        kept[0].display(),
        t.data_dir().join("appendonlydir").display()
    ));

    let out = t.run(&["restore", &id]);

    let context = format!("{out}");
    out.ok();
    assert_eq!(t.state(), backed_up, "{context}");
    let survived: Vec<_> = t
        .restore_work_dirs()
        .into_iter()
        .map(|work| work.join("previous/appendonlydir/previous/dump.rdb"))
        .filter(|dump| fs::read(dump).ok().as_ref() == Some(&kept_dump))
        .collect();
    assert_eq!(survived.len(), 1, "the kept folder was removed\n{context}");
    out.stderr_has("a folder not of the data dir owner's");
}

/// A restore with `--keep-previous` run while Redis's `dir` is `sub`, a
/// folder of the account's in the data dir (its redis.conf is its own to
/// edit): root's kept folder is then inside `sub`. Back to the data dir,
/// the account is free to move `sub`, and root's folder with it. Returns
/// the kept folder's name and its files (path -> SHA-256).
fn kept_in_a_folder_of_the_accounts(
    t: &TestRedis,
    id: &str,
    sub: &Path,
) -> (String, BTreeMap<String, String>) {
    let conf = t.redis_conf().display().to_string();
    let line = format!("dir {}", sub.display());
    t.stop_redis();
    owner_sh(&format!(
        "mkdir -m 750 '{}' && echo '{line}' >> '{conf}'",
        sub.display()
    ));
    t.start_redis();
    t.conn().ok(&["SET", "k", "kept-by-the-operator"]);
    t.conn().ok(&["SAVE"]);
    t.run(&["restore", id, "--keep-previous"]).ok();
    let kept: Vec<_> = dir_entries(sub)
        .into_iter()
        .filter(|name| name.starts_with("redis-backup-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let files = file_hashes(&sub.join(&kept[0]));
    assert!(files.keys().any(|path| !path.ends_with('/')), "{files:?}");
    t.stop_redis();
    owner_sh(&format!(
        "kept=$(grep -vxF '{line}' '{conf}') && printf '%s\\n' \"$kept\" > '{conf}'"
    ));
    t.start_redis();
    (kept[0].clone(), files)
}

/// The same folder of root's, one level down: the account has it kept in
/// `sub` (`kept_in_a_folder_of_the_accounts`), then renames `sub` to
/// `appendonlydir`. The next restore moves that aside; root's folder inside
/// it must survive the removal of the previous data, however deep it is.
#[test]
fn a_kept_folder_nested_in_a_data_folder_is_not_removed_with_the_previous_data() {
    let (t, backed_up, record) = filled_and_backed_up(redis());
    let id = id_of(&record);
    let sub = t.data_dir().join("sub");
    let (kept, files) = kept_in_a_folder_of_the_accounts(&t, &id, &sub);
    owner_sh(&format!(
        "mv '{}' '{}'",
        sub.display(),
        t.data_dir().join("appendonlydir").display()
    ));

    let out = t.run(&["restore", &id]);

    let context = format!("{out}");
    out.ok();
    assert_eq!(t.state(), backed_up, "{context}");
    let survived: Vec<_> = t
        .restore_work_dirs()
        .into_iter()
        .filter(|work| file_hashes(&work.join("previous/appendonlydir").join(&kept)) == files)
        .collect();
    assert_eq!(survived.len(), 1, "the kept folder was removed\n{context}");
    out.stderr_has("a folder not of the data dir owner's");
    // All else went (the previous dataset beside it stayed for good): only
    // the path to root's folder is left, and the journal.
    let mut left: Vec<String> = file_hashes(&survived[0]).into_keys().collect();
    left.retain(|path| path != "journal");
    let kept_path = format!("previous/appendonlydir/{kept}/");
    assert!(
        left.iter()
            .all(|path| path.starts_with(&kept_path) || kept_path.starts_with(path.as_str())),
        "{left:?}\n{context}"
    );
}

/// The same through the AOF rebuild: while the private server works, the
/// work folder is 0711 and its `aof/` the account's, which moves `sub`
/// (holding root's kept folder) into it. What is left in `aof/` is removed
/// once the AOF is placed, and the work folder once the restore is done;
/// neither removal may take root's folder.
#[test]
fn a_kept_folder_moved_into_the_aof_build_is_not_removed_with_it() {
    let (t, backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let sub = t.data_dir().join("sub");
    let (kept, files) = kept_in_a_folder_of_the_accounts(&t, &id, &sub);
    // Polls for the next work folder's aof/ for two minutes at most.
    let mover = format!(
        "while [ $SECONDS -lt 120 ]; do for aof in '{data}'/redis-backup-restore-*/aof; do \
         [ -d \"$aof\" ] && mv '{sub}' \"$aof/\" 2>/dev/null && exit 0; done; done; exit 1",
        data = t.data_dir().display(),
        sub = sub.display()
    );
    let mut mover = as_owner("/bin/bash").args(&["-c", &mover]).spawn();

    let out = t.run(&["restore", &id]);

    let _ = mover.kill();
    let _ = mover.wait();
    let context = format!("{out}");
    out.ok();
    assert_eq!(t.state(), backed_up, "{context}");
    assert!(
        !sub.exists(),
        "sub never got into aof/: the test proves nothing\n{context}"
    );
    let survived: Vec<_> = t
        .restore_work_dirs()
        .into_iter()
        .filter(|work| file_hashes(&work.join("aof/sub").join(&kept)) == files)
        .collect();
    assert_eq!(survived.len(), 1, "the kept folder was removed\n{context}");
    out.stderr_has("a folder not of the data dir owner's");
}

/// A file of root's among the data files (a dump an admin copied in as
/// root) is moved aside like Redis's: the account could remove it itself,
/// so the previous data goes as usual, and no dataset-sized folder is left
/// behind after every restore.
#[test]
fn a_data_file_of_roots_is_removed_with_the_previous_data() {
    let (t, backed_up, record) = filled_and_backed_up(redis());
    let id = id_of(&record);
    std::os::unix::fs::chown(t.data_dir().join("dump.rdb"), Some(0), Some(0)).unwrap();

    let out = t.run(&["restore", &id]);

    out.ok();
    assert_eq!(t.state(), backed_up, "{out}");
    assert_eq!(
        t.restore_work_dirs(),
        Vec::<std::path::PathBuf>::new(),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// 4. Symlinks planted in the private server's working directory

/// While an AOF restore runs, the attacker keeps `temp-rewriteaof-<pid>.aof`
/// and `temp-rewriteaof-bg-<pid>.aof` symlinks to the root-only victim
/// planted in the data dir for the next 1000 pids the kernel will hand out
/// (no config access needed). The private redis-server's rewrite child
/// opens the first of these names for its pid and writes the AOF through it.
/// Today that child runs as root: the victim is overwritten with RDB data.
#[test]
fn rewrite_temp_symlinks_planted_in_the_data_dir() {
    let (t, backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let victim = Victim::new(t.scratch(), "victim");
    let attacker = Attacker::start(
        t.scratch(),
        "plant-rewrite",
        &[arg(&t.data_dir()), arg(&victim.file)],
    );

    restore_under_attack(&t, &id, attacker, &backed_up, &[&victim]);
}

// ---------------------------------------------------------------------------
// 4b. The work folder's aof/, the owner's while Redis still runs

/// An AOF restore while the attacker's `aof-build` program, in `variant`,
/// gets into the work folder's `aof/` the moment it is handed over, probes
/// what the work folder gives away, then attacks (see the two tests). The
/// root-only victim keeps owner, mode and bytes; the restore either works
/// (the backup's data live) or fails with Redis on its old data (a key
/// written after the backup still there). The attacker must have reached
/// `aof/` and made the move of `variant`, or the test proves nothing.
fn aof_build_folder_attacked(variant: &str, done: &str) {
    let (t, backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    t.conn().ok(&["SET", "written-after", "the backup"]);
    let old = t.state();
    let victim = Victim::new(t.scratch(), "victim");
    let attacker = Attacker::start(
        t.scratch(),
        "aof-build",
        &[
            arg(&t.data_dir()),
            variant.into(),
            arg(victim.dir()),
            arg(&victim.file),
        ],
    );

    let (out, context, log) = restore_attacked_until(&t, &id, attacker, &[&victim], done);
    eprintln!("{context}");
    if out.code == Some(0) {
        assert_eq!(
            t.state(),
            backed_up,
            "the restore said it worked, but the live data is not the backup's\n{context}"
        );
    } else {
        assert!(t.is_active(), "a failed restore left Redis down\n{context}");
        assert_eq!(
            t.state(),
            old,
            "a failed restore left Redis without its old data\n{context}"
        );
    }
    assert!(
        log.contains("entered ") && log.contains("/aof, ours"),
        "the attacker never got into aof/: the test proves nothing\n{context}"
    );
    assert!(
        log.contains(done),
        "the attacker never made its move ({done:?})\n{context}"
    );
    assert!(
        log.contains("forbidden list the work folder: refused")
            && log.contains("forbidden open incoming.rdb for writing: refused")
            && log.contains("read-write: refused"),
        "the probes did not run, or were not refused\n{context}"
    );
    assert!(
        !log.contains("ALLOWED"),
        "the redis account could do what the work folder must not let it\n{context}"
    );
}

/// The attacker plants `temp-rewriteaof-<pid>.aof` and
/// `temp-rewriteaof-bg-<pid>.aof` symlinks to the root-only victim in `aof/`
/// for the next 1000 pids, where the private server's rewrite child opens
/// them: as the redis account it meets the kernel's refusal, and the restore
/// fails before Redis is stopped. Before that, it tries to list the work
/// folder, read the journal and the private server's log, and write,
/// truncate, chmod, chown and hard-link the staged RDB through its link in
/// `aof/`: all refused (reading it through the group is by design).
#[test]
fn aof_build_folder_with_rewrite_symlinks_and_the_staged_rdb_probed() {
    aof_build_folder_attacked("plant", "planted ");
}

/// Once the private server has written `aof/appendonlydir` and its manifest,
/// the attacker exchanges it (atomically) for a directory of its own holding
/// copies of the files and `appendonly.aof.9.incr.aof`, a symlink to the
/// root-only victim; then, in a second restore, for a symlink to the
/// victim's root-only directory (with `aof/appendonly.aof` a symlink to the
/// victim). Root only renames what is there into the data dir, following
/// no link.
#[test]
fn aof_build_folder_appendonlydir_exchanged() {
    aof_build_folder_attacked("entry", "swapped: aof/appendonlydir is ours");
    aof_build_folder_attacked("symlink", "swapped: aof/appendonlydir -> ");
}

/// The attacker builds a chain of 100,000 nested directories in `aof/`
/// (the deepest holding a symlink to the victim), which root removes once
/// the AOF is placed. A removal that recursed once per level ran out of
/// stack or of descriptors; root now stops at a depth no tree of ours
/// reaches, leaves the folder and says so, and the restore is done.
#[test]
fn aof_build_folder_with_a_tree_too_deep_to_remove() {
    let (t, backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let (out, victim, left, context) = restore_beside_a_deep_tree(&t, &id);
    assert_no_crash(&out, &context);
    // Root met the tree (it was already too deep), and left it.
    out.ok()
        .stderr_has("could not remove what is left in")
        .stderr_has("more than 32 directories down");
    assert_eq!(left.len(), 1, "{left:?}\n{context}");
    assert_all_intact(&[&victim], &context);
    assert_eq!(t.state(), backed_up, "{context}");
    t.stop_redis();
    t.start_redis();
    assert_eq!(t.state(), backed_up, "the AOF is complete\n{context}");
}

/// Restore `id` onto `t` while the account builds a tree 100,000
/// directories deep in the work folder's `aof/`, a link to a victim at its
/// bottom: the restore's output, the victim, the `aof/` folders left (each
/// removed by the test since), and the context for messages.
fn restore_beside_a_deep_tree(t: &TestRedis, id: &str) -> (Output, Victim, Vec<PathBuf>, String) {
    let victim = Victim::new(t.scratch(), "victim");
    let attacker = Attacker::start(
        t.scratch(),
        "aof-build",
        &[
            arg(&t.data_dir()),
            "deep".into(),
            arg(victim.dir()),
            arg(&victim.file),
        ],
    );
    let out = t.run(&["restore", id]);
    let log = attacker.log();
    let context = format!("{out}\n{attacker}");
    drop(attacker);
    let left: Vec<_> = t
        .restore_work_dirs()
        .into_iter()
        .map(|w| w.join("aof"))
        .filter(|aof| aof.exists())
        .collect();
    for aof in &left {
        remove_chain(aof);
    }
    assert!(
        log.contains("building a tree 100000 directories deep in aof/"),
        "the attacker never started its tree: the test proves nothing\n{context}"
    );
    (out, victim, left, context)
}

/// The same tree, planted in `aof/` while the private server only loads a
/// backup that a newer release wrote (Redis 8.2's, onto 8.0; AOF off),
/// which root removes once that server has stopped. The removal stops at
/// its depth as before; it must not end the restore, nor follow the link.
#[test]
fn load_folder_with_a_tree_too_deep_to_remove() {
    let source = TestRedis::builder()
        .server(&crate::servers::binary("redis-8.2.3"))
        .start();
    fill_every_type(&mut source.conn());
    let backed_up = source.state();
    let id = source.backup();
    let mut t = redis().server(&crate::servers::binary("redis-8.0")).start();
    t.use_backups_of(&source);
    let (out, victim, _, context) = restore_beside_a_deep_tree(&t, &id);
    assert!(
        out.stderr.contains("loads the restored RDB first"),
        "no private load: the test proves nothing\n{context}"
    );
    assert_no_crash(&out, &context);
    out.ok()
        .stderr_has("could not remove what is left in")
        .stderr_has("more than 32 directories down");
    assert_all_intact(&[&victim], &context);
    assert_eq!(t.state(), backed_up, "{context}");
}

/// The redis account fills the data dir and `appendonlydir` (which a
/// restore moves aside, then removes) with 200,000 long names each, one of
/// them not UTF-8, and 100 folders under restore's own prefix. Root must
/// walk those directories without holding their names: its peak RSS stays
/// within a few MiB of the same restore's without them (holding the names
/// costs over 40 MiB). The odd name is removed like the rest, and the
/// planted folders cost a bounded number of warnings, not one each.
#[test]
fn planted_names_cost_root_no_memory() {
    const PLANTED: usize = 200_000;
    let (t, backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let restore = || {
        let run = run_bounded(t.cmd(&["restore", &id]), Duration::from_secs(300));
        run.ended().ok();
        assert_eq!(t.state(), backed_up, "{}", run.out);
        run
    };
    let plain = restore();
    // Hard links: on ext4 a new inode costs far more than a new name.
    let script = "import os, sys\n\
d, n = sys.argv[1], int(sys.argv[2])\n\
pad = 'n' * 230\n\
for sub in ('', 'appendonlydir'):\n    \
for i in range(n):\n        \
name = os.path.join(d, sub, '%s%08d' % (pad, i))\n        \
if i % 50000 == 0:\n            \
first = name\n            \
os.close(os.open(first, os.O_CREAT | os.O_WRONLY, 0o600))\n        \
else:\n            \
os.link(first, name)\n\
os.close(os.open(os.path.join(d, 'appendonlydir').encode() + b'/odd-\\xff-name', os.O_CREAT | os.O_WRONLY, 0o600))\n\
for i in range(100):\n    os.mkdir(os.path.join(d, 'redis-backup-restore-planted-%03d' % i))\n";
    as_owner("/usr/bin/python3")
        .args(&["-c", script])
        .arg(t.data_dir().display().to_string())
        .arg(PLANTED.to_string())
        .run()
        .ok();
    let planted = restore();
    let context = format!("{}\n{}", plain.out, planted.out);
    let (before, after) = (plain.peak_rss_kib.unwrap(), planted.peak_rss_kib.unwrap());
    assert!(
        after < before + 8 * 1024,
        "peak RSS {} MiB with the planted names, {} MiB without\n{context}",
        after / 1024,
        before / 1024
    );
    let left: Vec<_> = t
        .restore_work_dirs()
        .into_iter()
        .filter(|dir| !dir.to_string_lossy().contains("planted"))
        .collect();
    assert!(left.is_empty(), "work folders left: {left:?}\n{context}");
    let warned = planted
        .out
        .stderr
        .matches("redis-backup-restore-planted-")
        .count();
    assert!(
        warned <= 5,
        "{warned} warnings name a planted folder\n{context}"
    );
    assert!(
        planted.out.stderr.contains("100 folders"),
        "the planted folders are counted\n{context}"
    );
}

/// The restore fails after the AOF was rebuilt and before it is placed:
/// the attacker puts a `dump.rdb` of its own in the data dir the moment
/// the old one is moved aside, so the restored one cannot be placed and the
/// restore rolls back, keeping its work folder (`failed/` holds the planted
/// file). The work folder was opened (0711) for the private server to reach
/// `aof/`; it must be root's alone again (0700) once that server is done,
/// not left open with the account's `aof/` in it for good.
#[test]
fn a_rollback_after_the_aof_rebuild_leaves_the_work_folder_closed() {
    let (t, _, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    t.conn().ok(&["SET", "written-after", "the backup"]);
    let old = t.state();
    let attacker = Attacker::start(t.scratch(), "replant-dump", &[arg(&t.data_dir())]);

    let (out, context, log) = restore_attacked(&t, &id, attacker, &[]);

    assert!(
        log.contains("planted a dump.rdb of ours"),
        "the attacker never planted its dump: the test proves nothing\n{context}"
    );
    out.code(6);
    assert_eq!(t.state(), old, "{context}");
    let kept = t.restore_work_dirs();
    assert_eq!(kept.len(), 1, "{kept:?}\n{context}");
    let work = &kept[0];
    assert_eq!(
        mode_of(work) & 0o7777,
        0o700,
        "{} is left open to the redis account\n{context}",
        work.display()
    );
    let entered = as_owner("/bin/ls")
        .arg(work.join("aof").display().to_string())
        .run();
    assert_ne!(
        entered.code,
        Some(0),
        "the redis account can still get into the work folder\n{entered}\n{context}"
    );
}

/// A wrapper that starts the tool with a descriptor of its own open (a
/// cron job's `3</root/secrets.env`, a shell's `exec 5>>/root/ops.log`)
/// must not have it handed on to the redis account. The attacker takes
/// every descriptor of every process it owns with `pidfd_getfd` (the same
/// uid is all it needs) while an AOF restore starts a private server and
/// redis-check-aof as the account, and Redis again through systemctl.
#[test]
fn a_descriptor_the_tool_inherited_does_not_reach_the_account() {
    let (t, backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let secret = distinctive("inherited descriptor");
    let mut secrets = RootOnly::new(t.scratch(), "operator");
    let file = secrets.file("secrets.env", secret.as_bytes());
    let attacker = Attacker::start(t.scratch(), "steal-fds", &[] as &[&str]);
    let wrapper = Run::new("/bin/bash")
        .args(&["-c", "exec 250<\"$1\"; shift; exec \"$@\"", "wrapper"])
        .arg(file.display().to_string())
        .arg(BIN)
        .arg("-c")
        .arg(t.settings_file().display().to_string())
        .args(&["restore", &id]);

    let out = t.with_env(wrapper).run();
    let log = attacker.log();
    let context = format!("{out}\n{attacker}");
    drop(attacker);

    out.ok();
    assert_eq!(t.state(), backed_up, "{context}");
    let pid = t.pid().expect("Redis runs");
    assert!(
        log.lines()
            .any(|l| l.starts_with("took fd ") && l.contains(&format!(" of {pid} ("))),
        "the attacker took no descriptor of the restarted Redis: the test proves nothing\n{context}"
    );
    assert!(
        log.contains("redis-backup-aof-"),
        "the attacker never saw the private server: the test proves nothing\n{context}"
    );
    assert!(
        !log.contains(&secret),
        "a descriptor the tool inherited reached the redis account\n{context}"
    );
    assert!(secrets.problems().is_empty(), "{:?}", secrets.problems());
}

/// Remove a chain of nested `d` directories below `top` (and what its
/// deepest holds), however deep: by walking down and back up with chdir in
/// a process of its own, one level at a time.
fn remove_chain(top: &Path) {
    let script = "import os, sys\n\
os.chdir(sys.argv[1])\n\
n = 0\n\
while os.path.isdir('d') and not os.path.islink('d'):\n    os.chdir('d'); n += 1\n\
for e in os.listdir('.'): os.unlink(e)\n\
for _ in range(n):\n    os.chdir('..'); os.rmdir('d')\n";
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(top)
        .status()
        .expect("run python3");
    assert!(
        status.success(),
        "could not remove the chain in {}",
        top.display()
    );
}

// ---------------------------------------------------------------------------
// 5. backup trusts whatever answers on the port

/// Back up from a fake Redis (what the redis account can put on the port
/// once it stopped its server) that says persistence is off and the dump is
/// `dir`/`dbfilename`, and makes BGSAVE look done at once. The victim is a
/// real RDB of another instance, so a naive tool happily stores it, and then
/// deletes it ("persistence is off: remove the dump we made").
fn backup_from_a_fake_redis(dir_and_name: impl Fn(&TestRedis, &Victim) -> (String, String)) {
    let mut t = redis().save(Save::Off).prepare();
    let victim = Victim::rdb(t.scratch(), "victim", "other.rdb", "other:secret");
    let (dir, dbfilename) = dir_and_name(&t, &victim);
    let fake = ScriptedRedis::new()
        .config("dir", &dir)
        .config("dbfilename", &dbfilename)
        .config("save", "")
        .config("appendonly", "no")
        .serve();
    t.set_setting("redis_port", &fake.port.to_string());

    let out = t.run(&["backup"]);

    let context = format!(
        "{out}\nthe fake Redis (dir {dir}, dbfilename {dbfilename}) was sent: {:?}",
        fake.commands()
    );
    victim.assert_intact(&context);
    assert_ne!(
        out.code,
        Some(0),
        "a backup of a dump outside Redis's data dir was made\n{context}"
    );
    assert_no_crash(&out, &context);
    assert_eq!(
        t.list(&[]),
        Vec::<Value>::new(),
        "something was stored\n{context}"
    );
}

/// The fake says `dir` is the root-only victim's directory and `dbfilename`
/// its name.
#[test]
fn backup_from_a_fake_server_naming_a_root_only_dir() {
    backup_from_a_fake_redis(|_, victim| {
        (
            victim.dir().display().to_string(),
            victim
                .file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        )
    });
}

/// The fake says `dir` is the real data dir, and `dbfilename` is
/// `../<victim's dir>/<victim>`.
#[test]
fn backup_from_a_fake_server_naming_a_dump_outside_by_dotdot() {
    backup_from_a_fake_redis(|t, victim| {
        (
            t.data_dir().display().to_string(),
            format!(
                "../{}/{}",
                victim.dir().file_name().unwrap().to_string_lossy(),
                victim.file.file_name().unwrap().to_string_lossy()
            ),
        )
    });
}

/// redis.conf is the redis account's, so it may name any Unix socket: here
/// root's own Redis (socket 0700, which the account cannot open), with PING
/// renamed to FLUSHALL. Root's connect would pass the socket's permissions
/// and send FLUSHALL there. A socket named by a conf that is not root's
/// alone is used only if it is that conf's owner's: the backup fails
/// (exit 3) and the other server keeps its key.
#[test]
fn a_conf_of_redis_cannot_point_root_at_another_accounts_socket() {
    let t = redis().start();
    let other = LoadedRdb::empty();
    other.conn().ok(&["SET", "other:secret", "kept"]);
    owner_sh(&format!(
        "printf 'unixsocket %s\\nrename-command PING FLUSHALL\\n' '{}' >> '{}'",
        other.socket().display(),
        t.redis_conf().display()
    ));

    let out = t.run(&["backup"]);

    let context = format!("{out}");
    assert_no_crash(&out, &context);
    assert_eq!(
        other.get("other:secret").as_deref(),
        Some(b"kept".as_slice()),
        "root reached the other server through the conf's socket\n{context}"
    );
    out.code(3).stderr_has("not the socket of");
}

/// Some installs keep redis.conf root's but let the redis group write it
/// (root:redis 0660). Every file of the conf being root's, the socket it
/// names was taken to be the data dir owner's, and the group's word names
/// the data dir: the account points `dir` at the folder of another account
/// (`nobody`, whose Redis holds a key), `unixsocket` at that account's
/// socket (0700), and renames PING to FLUSHALL. Root's connect would pass
/// the socket's permissions. A group may only name a data dir of its own
/// (`check_authority`), checked before the connect: exit 2.
/// Or (found by the second review) it includes a file of that account's,
/// which made that account a writer of the conf and so its socket's owner:
/// a file others may write includes only its writer's files, exit 2.
/// Either way the other server keeps its key.
#[test]
fn a_conf_a_group_may_write_cannot_lead_root_to_another_accounts_socket() {
    for (lends, code, says) in [
        ("dir", 2, "is writable by group"),
        ("include", 2, "may only include files of its own owner"),
    ] {
        let t = redis().start();
        let (_, group) = owner_ids();
        std::os::unix::fs::chown(t.redis_conf(), Some(0), Some(group)).unwrap();
        fs::set_permissions(
            t.redis_conf(),
            std::os::unix::fs::PermissionsExt::from_mode(0o660),
        )
        .unwrap();
        let other = LoadedRdb::empty_as("nobody");
        other.conn().ok(&["SET", "other:secret", "kept"]);
        let theirs = other.dir().join("theirs.conf");
        as_user("nobody", "/bin/sh")
            .args(&["-c", &format!("echo 'port 0' > '{}'", theirs.display())])
            .run()
            .ok();
        let lent = match lends {
            "dir" => other.dir().display().to_string(),
            _ => theirs.display().to_string(),
        };
        owner_sh(&format!(
            "printf '{lends} %s\\nunixsocket %s\\nrename-command PING FLUSHALL\\n' '{lent}' '{}' >> '{}'",
            other.socket().display(),
            t.redis_conf().display()
        ));

        let out = t.run(&["backup"]);

        let context = format!("{lends}: {out}");
        assert_no_crash(&out, &context);
        assert_eq!(
            other.get("other:secret").as_deref(),
            Some(b"kept".as_slice()),
            "root reached the other account's server through the conf's socket\n{context}"
        );
        out.code(code).stderr_has(says);
    }
}

/// The settings name a socket in a directory the redis account writes (as
/// /run/redis is), and the account puts a link there to root's own Redis
/// (socket 0700). Root's connect would follow it and pass the socket's
/// permissions: the backup must fail (exit 3) without a single connection
/// reaching root's Redis.
#[test]
fn a_link_in_place_of_the_settings_socket_is_not_followed() {
    let t = redis().start();
    let other = LoadedRdb::empty();
    let connections = || -> u64 {
        let count = other
            .conn()
            .info_field("stats", "total_connections_received");
        count.parse().unwrap()
    };
    let link = t.data_dir().join("redis.sock");
    owner_sh(&format!(
        "ln -s '{}' '{}'",
        other.socket().display(),
        link.display()
    ));
    let before = connections();

    let out = t.run(&["--redis-socket", &link.display().to_string(), "backup"]);

    let context = format!("{out}");
    assert_no_crash(&out, &context);
    // This count's own connection is the one more.
    assert_eq!(
        connections(),
        before + 1,
        "root reached the other server\n{context}"
    );
    out.code(3).stderr_has("symbolic link");
}

/// A Redis whose password only the settings hold (`redis_password`), with
/// a short `redis_timeout`: a run that dials a listener that never answers
/// ends soon.
fn redis_with_a_settings_password(password: &str) -> TestRedis {
    redis()
        .requirepass(password)
        .setting("redis_password", password)
        .setting("redis_timeout", "2")
        .start()
}

/// The account edits its own redis.conf with `sed` (in place by rewriting:
/// the folder around the conf is not its to make a temporary file in).
fn owner_edits_conf(t: &TestRedis, sed: &str) {
    owner_sh(&format!(
        "conf=$(sed {sed} '{conf}') && printf '%s\\n' \"$conf\" > '{conf}'",
        conf = t.redis_conf().display()
    ));
}

/// Nothing reached a listener that should have got nothing, least of all
/// the settings' password.
#[track_caller]
fn assert_nothing_reached(received: &[u8], password: &str, listener: &str, context: &str) {
    let received = String::from_utf8_lossy(received);
    assert!(
        !received.contains(password),
        "the settings' password went to {listener}\n{context}\nit received: {received:?}"
    );
    assert_eq!(received, "", "something went to {listener}\n{context}");
}

#[track_caller]
fn assert_nothing_went_next_door(next_door: &OtherHost, context: &str) {
    let received = String::from_utf8_lossy(&next_door.received()).into_owned();
    assert_eq!(
        received, "",
        "something went to the host next door\n{context}"
    );
}

/// The settings hold a password for Redis (root's secret, not in the
/// conf) and name only the port, so the host comes from redis.conf's
/// `bind`. The account rewrites `bind` to the address of a host next door
/// that it runs. Redis can only listen on this host's own addresses, so a
/// conf that is not root's alone naming another one must be refused
/// (exit 3) before a single byte, least of all the password, goes there.
#[test]
fn a_conf_of_redis_cannot_send_the_settings_password_to_another_host() {
    let password = "settings-only-password-7f3a";
    let mut t = redis_with_a_settings_password(password);
    let next_door = OtherHost::start(t.scratch());
    t.set_setting("redis_port", &next_door.port.to_string());
    owner_edits_conf(
        &t,
        &format!(
            "-e '/^requirepass/d' -e 's/^bind .*/bind {}/'",
            next_door.address
        ),
    );

    let out = t.cmd(&["backup"]).run_within(Duration::from_secs(30));

    let context = format!("{out}");
    assert_no_crash(&out, &context);
    assert_nothing_reached(
        &next_door.received(),
        password,
        "the host the conf named",
        &context,
    );
    out.code(3).stderr_has("not an address of this host");
}

/// The settings name a Redis on another host (a replication backup) with
/// its password, but no port. The port came from redis.conf, which
/// describes this host's server and which the account writes: it could
/// send the password to a port of its own choosing there (a port forward,
/// a load balancer's). Refused (exit 2) before anything is sent.
#[test]
fn a_conf_of_redis_cannot_choose_the_port_of_another_host() {
    let mut t = redis_with_a_settings_password("settings-only-password-5d1b");
    let next_door = OtherHost::start(t.scratch());
    t.set_setting("redis_host", &next_door.address);
    owner_edits_conf(&t, &format!("-e 's/^port .*/port {}/'", next_door.port));

    let out = t
        .cmd(&["backup", "--source", "replication"])
        .run_within(Duration::from_secs(30));

    let context = format!("{out}");
    assert_no_crash(&out, &context);
    assert_nothing_went_next_door(&next_door, &context);
    out.code(2).stderr_has("set redis_port");
}

/// As on Debian, redis.conf is in a folder of the account's (/etc/redis,
/// redis:redis 2770). The account starts a setuid-root program whose
/// arguments are config lines (`su root -c "…"`, left waiting for a
/// password): its `/proc/PID/cmdline` is a file of root's, mode 0444, that
/// says what the account chose. It puts a link to it in place of
/// redis.conf. A conf taken for root's alone speaks for any server: its
/// `bind` would be dialled wherever it points, with the settings' password.
/// A file reached through the account's folder is the account's word.
#[test]
fn a_file_of_roots_linked_into_the_accounts_folder_is_the_accounts_word() {
    let mut t = redis_with_a_settings_password("settings-only-password-2c9e");
    let next_door = OtherHost::start(t.scratch());
    let folder = t.scratch().join("etc-redis");
    fs::create_dir(&folder).unwrap();
    let (uid, gid) = user_ids(owner_user());
    std::os::unix::fs::chown(&folder, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(
        &folder,
        std::os::unix::fs::PermissionsExt::from_mode(0o2770),
    )
    .unwrap();
    let conf = folder.join("redis.conf");
    t.set_setting("redis_conf", &arg(&conf));
    let lines = format!("x\nbind {}\nport {}\n#", next_door.address, next_door.port);
    let out = owner_sh(&format!(
        "sleep 30 </dev/null 2>/dev/null | su root -c \"$(printf '{}')\" >/dev/null 2>&1 &
         su=$!; echo $su
         until [ \"$(stat -c %u /proc/$su/cmdline 2>/dev/null)\" = 0 ]; do sleep 0.01; done
         ln -s /proc/$su/cmdline '{new}' && mv -T '{new}' '{conf}'",
        lines.replace('\n', "\\n"),
        new = arg(&folder.join("new.conf")),
        conf = arg(&conf)
    ));
    let su = out.stdout.trim().to_string();
    let said = fs::read(&conf).unwrap();
    assert!(
        String::from_utf8_lossy(&said).contains(&next_door.address),
        "the account's link does not lead to its words: {said:?}"
    );

    let out = t.cmd(&["backup"]).run_within(Duration::from_secs(30));

    let _ = Run::new("kill").arg(&su).run();
    let context = format!("{out}");
    assert_no_crash(&out, &context);
    assert_nothing_went_next_door(&next_door, &context);
    out.code(3).stderr_has("not an address of this host");
}

/// A third account (`nobody`) may write redis.conf, which the settings'
/// password does not know: by an ACL on a conf of root's (`setfacl -m
/// u:nobody:rw`, the mode then shows the ACL's mask, rw for the group, and
/// the mode bits alone say "root's group"), or as its owner. It points
/// `port` at a listener of this host and drops requirepass. The conf's
/// word was checked against its data dir only once connected, after the
/// AUTH had gone to that port. A conf's port or socket is now taken only
/// from a conf that may name its data dir, checked before the connect:
/// exit 2, nothing sent.
#[test]
fn a_conf_a_third_account_may_write_cannot_choose_where_the_password_goes() {
    for how in ["acl", "owner"] {
        let password = "settings-only-password-41ac";
        let t = redis_with_a_settings_password(password);
        let listener = LocalListener::start(t.scratch());
        let conf = t.redis_conf();
        match how {
            "acl" => {
                std::os::unix::fs::chown(&conf, Some(0), Some(0)).unwrap();
                set_mode(&conf, 0o644);
                Run::new("setfacl")
                    .args(&["-m", "u:nobody:rw", &arg(&conf)])
                    .run()
                    .ok();
            }
            _ => {
                let (uid, gid) = user_ids("nobody");
                std::os::unix::fs::chown(&conf, Some(uid), Some(gid)).unwrap();
            }
        }
        as_user("nobody", "/bin/sh")
            .args(&[
                "-c",
                &format!(
                    "conf=$(sed -e '/^requirepass/d' -e 's/^port .*/port {}/' '{conf}') && printf '%s\\n' \"$conf\" > '{conf}'",
                    listener.port,
                    conf = arg(&conf)
                ),
            ])
            .run()
            .ok();
        assert!(
            fs::read_to_string(&conf)
                .unwrap()
                .contains(&format!("port {}", listener.port)),
            "{how}: nobody could not write the conf"
        );

        let out = t.cmd(&["backup"]).run_within(Duration::from_secs(30));

        let context = format!("{how}: {out}");
        assert_no_crash(&out, &context);
        assert_nothing_reached(
            &listener.received(),
            password,
            "the port a third account chose",
            &context,
        );
        out.code(2).stderr_has("may be written by uid");
    }
}

/// Redis is down (it crashed, or a restore is between its stop and its
/// start). Any account may listen on a port above 1023: `nobody` listens on
/// Redis's and keeps what it gets. The backup dialled it and sent `AUTH`
/// with the settings' password. The socket that accepts a connection to a
/// port of this host must now be root's or the account's Redis runs as
/// (the data dir's owner): exit 3, nothing sent. In the second round
/// `nobody` accepts only after a while, and reads what reached its queue
/// meanwhile: before Linux 6.17 a connection not yet accepted shows root as
/// its owner, so the check waits for the accept (on this kernel the round
/// passes either way; the unit tests in `redis::tcp_owner` show the rule).
#[test]
fn a_port_another_account_listens_on_while_redis_is_down_gets_nothing() {
    for accept_after in [0, 4] {
        let password = "settings-only-password-9e07";
        let t = redis_with_a_settings_password(password);
        t.stop_redis();
        let listener = LocalListener::start_as(t.scratch(), Some("nobody"), t.port, accept_after);

        let out = t.cmd(&["backup"]).run_within(Duration::from_secs(30));
        if accept_after > 0 {
            std::thread::sleep(Duration::from_secs(u64::from(accept_after) + 1));
        }

        let context = format!("accepting after {accept_after} s: {out}");
        assert_no_crash(&out, &context);
        assert_nothing_reached(
            &listener.received(),
            password,
            "nobody's listener",
            &context,
        );
        out.code(3).stderr_has(match accept_after {
            0 => "listened on by uid",
            _ => "accepted the connection within",
        });
    }
}

/// The account takes a write lease on its own redis.conf and never gives it
/// up. Root's open of the conf would wait the kernel's lease-break-time
/// (45 s), once per file it reads, and the conf may include 64 of them:
/// the backup must instead stop at once, saying why.
#[test]
fn a_lease_on_the_conf_cannot_hold_root_waiting() {
    let t = redis().start();
    let attacker = Attacker::start(t.scratch(), "lease", &[arg(&t.redis_conf())]);

    let out = t.cmd(&["backup"]).run_within(Duration::from_secs(20));

    let context = format!("{out}\n{attacker}");
    assert_no_crash(&out, &context);
    out.code(2).stderr_has("holds a lease");
}

/// A settings file the account may write (mode 0666 here) lets it choose
/// `redis_server`, which root runs (`--version`) before a restore: its
/// program would run as root. Such a file is refused, exit 2, before
/// anything it says is acted on.
#[test]
fn a_settings_file_others_may_write_is_refused() {
    let t = redis().start();
    let id = t.backup();
    let marker = t.path("ran-as-root");
    let evil = t.path("evil.sh");
    fs::write(
        &evil,
        format!(
            "#!/bin/sh\nid -u > {}\necho 'Redis server v=7.0.15'\n",
            arg(&marker)
        ),
    )
    .unwrap();
    set_mode(&evil, 0o755);
    set_mode(&t.settings_file(), 0o666);
    as_user(owner_user(), "/bin/sh")
        .args(&[
            "-c",
            &format!(
                "echo 'redis_server = {}' >> {}",
                arg(&evil),
                arg(&t.settings_file())
            ),
        ])
        .run()
        .ok();

    let out = t.run(&["restore", &id]);
    out.code(2).stderr_has("settings file");
    assert!(!marker.exists(), "the account's program ran as root\n{out}");
    assert!(t.is_active(), "Redis was touched");
}

// ---------------------------------------------------------------------------
// 6. dump.rdb swapped for a symlink right after BGSAVE

/// The attacker watches the data dir with inotify and, the instant Redis
/// renames a fresh dump.rdb into place, replaces it with a symlink to the
/// root-only RDB of another instance (a real RDB holding a distinctive key,
/// freshly saved). Today the backup opens the dump by path, following the
/// link, and stores the other instance's data, which any restore then hands
/// to the redis account. Each of a few backups must either fail or hold this
/// instance's data only.
#[test]
fn dump_swapped_for_a_symlink_right_after_bgsave() {
    let t = redis().start();
    t.conn().ok(&["SET", "ours", "this instance's own data"]);
    let other = Victim::rdb(t.scratch(), "other-instance", "dump.rdb", "other:secret");
    let other_sha = sha256_hex(&other.bytes);
    let attacker = Attacker::start(
        t.scratch(),
        "swap-dump",
        &[arg(&t.data_dir()), arg(&other.file)],
    );

    for round in 1..=3 {
        // The other instance has just saved: its dump is as fresh as ours.
        other.touch();
        let out = t.run(&["--json", "backup"]);
        let context = format!("round {round}\n{out}\n{attacker}");
        assert_no_crash(&out, &context);
        if out.code != Some(0) {
            continue; // refusing the swapped dump is fine
        }
        let id = id_of(&out.json());
        let export = t.export(&id, &format!("export-{round}.rdb"));
        assert!(
            sha256_file(&export) != other_sha,
            "backup {id} holds the other instance's root-only RDB, byte for byte\n{context}"
        );
        let loaded = LoadedRdb::load(&export);
        assert_eq!(
            loaded.get("other:secret"),
            None,
            "backup {id} holds the other instance's key\n{context}"
        );
        assert_eq!(
            loaded.get("ours").as_deref(),
            Some(b"this instance's own data".as_slice()),
            "backup {id} does not hold this instance's data\n{context}"
        );
        other.assert_intact(&context);
    }
}

// ---------------------------------------------------------------------------
// 7. A planted "interrupted restore" folder

/// The attacker makes `redis-backup-restore-20000101T000000Z/` in the data
/// dir with a journal saying the previous data was moved aside, `previous` a
/// symlink to a root-only directory holding files named like data files
/// (dump.rdb, appendonly.aof), and `failed` a symlink to another. Today the
/// next restore "puts the previous data back": it moves Redis's files into
/// one root directory and the root files out of the other into the data dir.
/// A restore of a real backup must leave both untouched.
#[test]
fn planted_interrupted_restore_folder_is_not_recovered_by_restore() {
    let (t, backed_up, record) = filled_and_backed_up(redis());
    let id = id_of(&record);
    let previous = root_dir_with_data_file_names(&t, "root-previous");
    let failed = Victim::new(t.scratch(), "root-failed");
    plant_interrupted_restore(&t, previous.dir(), failed.dir());

    let out = t.run(&["restore", &id]);

    let context = format!("{out}");
    assert_all_intact(&[&previous, &failed], &context);
    previous.assert_no_copy_readable_in(&t.data_dir(), &context);
    failed.assert_no_copy_readable_in(&t.data_dir(), &context);
    assert_no_crash(&out, &context);
    if out.code == Some(0) {
        assert_eq!(
            t.state(),
            backed_up,
            "the restore said it worked, but the live data is not the backup's\n{context}"
        );
    }
}

/// The same planted folder must not block nightly backups (today every
/// backup is refused: "a restore was interrupted"), nor make a backup touch
/// the root directories.
#[test]
fn planted_interrupted_restore_folder_does_not_block_backups() {
    let t = redis().start();
    fill_every_type(&mut t.conn());
    let previous = root_dir_with_data_file_names(&t, "root-previous");
    let failed = Victim::new(t.scratch(), "root-failed");
    plant_interrupted_restore(&t, previous.dir(), failed.dir());

    let out = t.run(&["backup"]);

    let context = format!("{out}");
    assert_all_intact(&[&previous, &failed], &context);
    assert_eq!(
        out.code,
        Some(0),
        "a folder planted by the redis account blocked the backup\n{context}"
    );
    assert_eq!(t.list(&[]).len(), 1, "the backup is listed\n{context}");
}

// ---------------------------------------------------------------------------
// 9. Status files readable by monitoring

/// With `status_file` in a root-owned 0755 directory, the `.json` and the
/// `.prom` beside it must be readable by others (node_exporter runs as its
/// own user): mode 0644, and `nobody` can read them. Today they are 0600.
#[test]
fn status_files_are_readable_by_monitoring() {
    let mut t = redis().start();
    let dir = t.path("status");
    fs::create_dir(&dir).expect("mkdir status");
    set_mode(&dir, 0o755);
    let json = dir.join("redis-backup.json");
    t.set_setting("status_file", &json.display().to_string());

    t.backup();

    for file in [json.clone(), json.with_extension("prom")] {
        let read = as_user("nobody", "cat")
            .arg(file.display().to_string())
            .run();
        assert_eq!(
            read.code,
            Some(0),
            "nobody cannot read {} (mode {:04o})\n{read}",
            file.display(),
            mode_of(&file)
        );
        assert_eq!(
            read.stdout,
            fs::read_to_string(&file).unwrap(),
            "what nobody read of {}",
            file.display()
        );
        assert_eq!(mode_of(&file), 0o644, "mode of {}", file.display());
    }
}

// ---------------------------------------------------------------------------
// 36. export (and keygen) --out into a folder of the account's

/// An operator at 3 a.m. exports a backup into the data dir, to put it in
/// place by hand. The account watches its folder and, the moment root's
/// temporary file appears, renames it away and puts a file of its own
/// under that name, which root then linked into place: PATH held the
/// account's bytes, exit 0, and the sha256 printed was the real data's.
/// (`keygen --out` there the same: root would use the account's key.)
/// Nothing is written as root into a folder another account may write:
/// exit 2, with the way out named; a folder of root's, or /tmp's sticky
/// one, is taken as before.
#[test]
fn export_and_keygen_into_a_folder_of_the_accounts_are_refused() {
    let t = redis().start();
    t.conn().ok(&["SET", "ours", "this instance's own data"]);
    let id = t.backup();
    let data = t.data_dir();
    let attacker = Attacker::start(t.scratch(), "swap-temp", &[&data]);

    let exported = data.join("exported.rdb");
    let out = t.run(&["export", &id, "--out", &exported.display().to_string()]);
    out.code(2).stderr_has("may write in");
    assert!(!exported.exists(), "{out}\n{}", attacker.log());
    let key = data.join("new.key");
    let out = t.run(&["keygen", "--out", &key.display().to_string()]);
    out.code(2).stderr_has("may write in");
    assert!(!key.exists(), "{out}\n{}", attacker.log());

    let ours = t.scratch().join("exported.rdb");
    t.run(&["export", &id, "--out", &ours.display().to_string()])
        .ok();
    let in_tmp = std::env::temp_dir().join(format!("rb-export-{}.rdb", std::process::id()));
    t.run(&["export", &id, "--out", &in_tmp.display().to_string()])
        .ok();
    let _ = fs::remove_file(&in_tmp);
}

/// A folder of root's (0755) for the status files or the lock, reached
/// through a folder of the account's (found by review): the account swaps
/// it for a link to another folder of root's, and root created or replaced
/// files under the status names there (a 0600 file of root's became the
/// 0644 status), and wrote its pid into a file of root's named as the
/// lock. The lock in such a folder is refused (exit 2, nothing touched);
/// the status is not written there (said in the log), as it is a report,
/// not the backup.
#[test]
fn status_and_lock_files_are_not_written_through_a_folder_of_the_accounts() {
    let mut t = redis().start();
    t.conn().ok(&["SET", "ours", "this instance's own data"]);
    let (uid, gid) = owner_ids();
    let exporter = t.scratch().join("node_exporter");
    fs::create_dir(&exporter).unwrap();
    std::os::unix::fs::chown(&exporter, Some(uid), Some(gid)).unwrap();
    let textfile = exporter.join("textfile");
    fs::create_dir(&textfile).unwrap();
    let roots = t.scratch().join("roots");
    fs::create_dir(&roots).unwrap();
    let secret = b"root's own file, not a status";
    for name in ["redis-backup.json", "rb.lock"] {
        fs::write(roots.join(name), secret).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        fs::set_permissions(roots.join(name), mode).unwrap();
    }
    owner_sh(&format!(
        "mv {0} {0}.old && ln -s {1} {0}",
        textfile.display(),
        roots.display()
    ));

    t.set_setting(
        "status_file",
        &textfile.join("redis-backup.json").display().to_string(),
    );
    let out = t.run(&["backup"]);
    out.ok().stderr_has("could not write the status file");
    // The archiver writes its status every 5 s: said once (it was said
    // each time).
    t.set_setting("archive_interval", "1");
    let archiver = t.cmd(&["archive"]).watch();
    std::thread::sleep(Duration::from_secs(12));
    archiver.signal("TERM");
    let archiver = archiver.finish();
    let said = archiver
        .stderr
        .matches("could not write the status file")
        .count();
    assert_eq!(said, 1, "{archiver}");
    t.set_setting("lock_file", &textfile.join("rb.lock").display().to_string());
    t.run(&["backup"]).code(2).stderr_has("lock file");
    for name in ["redis-backup.json", "rb.lock"] {
        assert_eq!(fs::read(roots.join(name)).unwrap(), secret, "{name}");
    }
    assert!(!roots.join("redis-backup.prom").exists());
    assert!(!roots.join("redis-backup-archive.json").exists());

    // A sticky folder of root's (/tmp, /run/lock) keeps an entry of root's
    // root's, but anyone may take a name there first, and the lock's name
    // is known: no run again. Refused before anyone does.
    let sticky = t.scratch().join("sticky");
    fs::create_dir(&sticky).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o1777);
    fs::set_permissions(&sticky, mode).unwrap();
    t.set_setting("lock_file", &sticky.join("rb.lock").display().to_string());
    t.run(&["backup"]).code(2).stderr_has("lock file");
}

/// `/tmp` is where README sends an export or a key that must not go to a
/// folder of the account's, and any account may create names there. The
/// temporary name beside PATH was the host, the pid and the name: the
/// account planted it for the next pids the kernel hands out, and the
/// write failed (found by review: "File exists", naming a key file that
/// was not there). It holds a part nobody can guess now.
#[test]
fn names_planted_in_tmp_for_the_next_pids_do_not_stop_keygen() {
    let t = redis().prepare();
    let name = format!("rb-key-{}", std::process::id());
    let key = Path::new("/tmp").join(&name);
    let host: String = hostname()
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || c == '.' {
            true => c,
            false => '_',
        })
        .collect();
    // One process plants them all: each `ln` would take a pid itself.
    owner_sh(&format!(
        "exec python3 -c 'import os\nlast = int(open(\"/proc/sys/kernel/ns_last_pid\").read())\nfor p in range(last + 1, last + 2000):\n    os.symlink(\"/nowhere\", \"/tmp/.tmp-{host}-%d-{name}.tmp\" % p)'"
    ));
    let out = t.run(&["keygen", "--out", &key.display().to_string()]);
    owner_sh(&format!("rm -f /tmp/.tmp-{host}-*-{name}.tmp"));
    out.ok();
    let _ = fs::remove_file(&key);
}

/// The AOF a restore rebuilds is checked by the server's own tool, run as
/// the data dir's owner, and root waited for it without end: the owner
/// stops it (SIGSTOP, its own process), and the restore, the host lock
/// with it, was held for as long as the owner liked. It has `save_timeout`
/// now, as the rebuild has, and then the tool is killed and the restore
/// ends with Redis untouched.
#[test]
fn a_check_of_the_rebuilt_aof_the_owner_stops_ends_at_save_timeout() {
    let t = debian_redis()
        .setting("save_timeout", "5")
        .appendonly()
        .start();
    fill_every_type(&mut t.conn());
    // Long enough to check for the loop below to find the tool.
    add_filler(&mut t.conn(), 400_000);
    let id = t.backup();
    t.conn().ok(&["SET", "after", "x"]);
    let pid = t.pid();
    let restore = t.cmd(&["restore", &id]).watch();
    // Only this restore's (other tests' run as the same account), and
    // only while it runs: a loop left behind would stop theirs.
    let tool = restore.pid();
    let mut stopper = as_owner("/bin/sh")
        .args(&[
            "-c",
            &format!(
                "while [ -d /proc/{tool} ]; do pkill -STOP -P {tool} -x redis-check-aof; done"
            ),
        ])
        .spawn();

    let out = restore.finish();
    let _ = stopper.kill();
    let _ = stopper.wait();

    out.code(1)
        .stderr_has("redis-check-aof")
        .stderr_has("within 5s");
    assert_eq!(t.pid(), pid, "Redis was stopped");
    assert_eq!(t.conn().ok(&["GET", "after"]), Reply::Bulk(b"x".to_vec()));
    assert!(
        !fs::read_dir("/proc").unwrap().flatten().any(|e| {
            fs::read_to_string(e.path().join("stat")).is_ok_and(|s| s.contains("(redis-check-aof)"))
        }),
        "a checking tool is left"
    );
}

/// Root's shell in a terminal, its session keyring holding a secret
/// (`rb-root-secret`): runs `argv[1..]` on a pty of its own, prints what
/// it wrote and exits with its status.
const ROOT_TERMINAL: &str = r#"
import ctypes, os, platform, pty, sys
add_key, keyctl = {'x86_64': (248, 250), 'aarch64': (217, 219)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
if libc.syscall(keyctl, 1, b'rb-root-shell') < 0:
    sys.exit('cannot join a session keyring: errno %d' % ctypes.get_errno())
if libc.syscall(add_key, b'user', b'rb-root-secret', b'ROOTS-SECRET', 12, -3) < 0:
    sys.exit('cannot add a key: errno %d' % ctypes.get_errno())
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out = b''
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors='replace'))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// An operator runs restore by hand, in a terminal. The private server
/// runs what the account's redis.conf loads: in root's session it could
/// type into root's terminal (TIOCSTI: the shell runs it as root once the
/// restore ends), write escape sequences to it, and read the keys of root's
/// session keyring, which it possessed. It gets a session of its own and a
/// keyring of its own.
#[test]
fn the_private_server_reaches_nothing_of_the_operators_terminal_or_keyring() {
    let (t, _backed_up, record) = filled_and_backed_up(redis().appendonly());
    let id = id_of(&record);
    let module = evil_module_in_the_conf_of(&t);
    let settings = t.settings_file().display().to_string();
    let out = t
        .with_env(Run::new("python3").args(&[
            "-c",
            ROOT_TERMINAL,
            BIN,
            "-c",
            &settings,
            "restore",
            &id,
        ]))
        .run();
    let sessions = module.sessions();
    let context = format!("{out}\nmodule markers (file -> session): {sessions:?}");
    assert_no_crash(&out, &context);
    assert!(
        !sessions.is_empty(),
        "no server loaded the module: the test proves nothing\n{context}"
    );
    for session in sessions.values() {
        assert_eq!(session, "tty=0 keyring=-", "{context}");
    }
}

/// The account keeps Redis from saving as it stops (its data dir made
/// read-only: the save fails, "can't exit", and Redis goes on), under a
/// unit that never kills it (Debian's, `TimeoutStopSec=0`). The restore
/// waited in `systemctl stop` for good, holding the host lock, every
/// backup refused meanwhile. Now systemctl is waited for at most
/// `save_timeout`; the restore ends saying why, its data files untouched,
/// and releases the lock.
#[test]
fn a_redis_the_account_keeps_from_stopping_does_not_hold_the_restore() {
    let t = redis().setting("save_timeout", "5").start();
    t.conn().ok(&["SET", "k", "v"]);
    let id = t.backup();
    // Saved, so that the restore does not save first (that save would
    // fail too, and refuse it); Redis saves as it stops all the same.
    t.conn().ok(&["SET", "k", "newer"]);
    t.conn().ok(&["SAVE"]);
    t.stop_without_timeout();
    let data = t.data_dir().display().to_string();
    let mode = std::os::unix::fs::MetadataExt::mode(&fs::metadata(t.data_dir()).unwrap()) & 0o7777;
    owner_sh(&format!("chmod 0500 '{data}'"));

    let out = t.cmd(&["restore", &id]).run_within(Duration::from_secs(90));

    let stuck = t.pid();
    owner_sh(&format!("chmod {mode:o} '{data}'"));
    assert_no_crash(&out, &format!("{out}"));
    assert_ne!(out.code, Some(0), "{out}");
    out.stderr_has("did not return within 5s");
    assert!(stuck.is_some(), "Redis was killed: {out}");
}

/// The storage directory is reached through a folder the account may write
/// in (a share of its own): it puts there, under the storage's name, a
/// link to a folder of root's. The backup went into root's folder, and
/// every backup swept it (temporary and orphaned names). Refused, exit 2,
/// before anything is written.
#[test]
fn a_storage_directory_in_a_folder_the_account_writes_is_refused() {
    let mut t = redis().start();
    t.conn().ok(&["SET", "k", "v"]);
    let share = t.path("share");
    fs::create_dir(&share).unwrap();
    let (uid, gid) = owner_ids();
    std::os::unix::fs::chown(&share, Some(uid), Some(gid)).unwrap();
    set_mode(&share, 0o755);
    let roots = t.path("roots");
    fs::create_dir(&roots).unwrap();
    set_mode(&roots, 0o700);
    let store = share.join("store");
    owner_sh(&format!(
        "ln -s '{}' '{}'",
        roots.display(),
        store.display()
    ));
    t.set_setting("storage", &format!("file://{}", store.display()));

    t.run(&["backup"])
        .code(2)
        .stderr_has("can be replaced by others");
    assert_eq!(
        dir_entries(&roots),
        Vec::<String>::new(),
        "written into root's folder"
    );

    // Nor through a link of root's leading into that folder, nor for the
    // commands that read or delete there.
    let admin = t.path("admin");
    fs::create_dir(&admin).unwrap();
    let backups = admin.join("backups");
    std::os::unix::fs::symlink(&store, &backups).unwrap();
    t.set_setting("storage", &format!("file://{}", backups.display()));
    for command in [&["backup"][..], &["list"], &["prune", "--keep-last", "1"]] {
        t.run(command)
            .code(2)
            .stderr_has("can be replaced by others");
    }
    assert_eq!(
        dir_entries(&roots),
        Vec::<String>::new(),
        "written into root's folder"
    );
}

/// The data dir redis.conf names cannot be opened (a volume that did not
/// mount; a fresh host): Redis cannot run, whose port it is could not be
/// told, and the check of who accepted the connection was skipped, with
/// a conf of root's, or with `redis_port` in the settings: `nobody`,
/// listening on the port, got `AUTH` and the password. Not knowing whose
/// the port is now means only root's will do.
#[test]
fn a_data_dir_that_cannot_be_opened_leaves_the_port_to_no_other_account() {
    for how in ["a conf of root's", "redis_port in the settings"] {
        let password = "settings-only-password-51c3";
        let mut t = redis_with_a_settings_password(password);
        match how {
            "a conf of root's" => {
                std::os::unix::fs::chown(t.redis_conf(), Some(0), None).unwrap();
                set_mode(&t.redis_conf(), 0o640);
            }
            _ => t.set_setting("redis_port", &t.port.to_string()),
        }
        t.stop_redis();
        let away = t.path("data.off");
        fs::rename(t.data_dir(), &away).unwrap();
        let listener = LocalListener::start_as(t.scratch(), Some("nobody"), t.port, 0);

        let out = t.cmd(&["backup"]).run_within(Duration::from_secs(30));

        let context = format!("{how}: {out}");
        assert_no_crash(&out, &context);
        assert_nothing_reached(
            &listener.received(),
            password,
            "nobody's listener",
            &context,
        );
        out.code(3)
            .stderr_has("listened on by uid")
            .stderr_has("cannot be told here")
            .stderr_lacks("(uid )");
        fs::rename(&away, t.data_dir()).unwrap();
    }
}

/// Any account may open as many sockets as its limits allow, each a line
/// of `/proc/net/tcp`: `nobody` opens 520,000 listeners (some 74 MB of
/// table). The table was read whole up to 64 MiB, the line of our own
/// connection past that cap, so whose socket accepted it was "not found":
/// every backup, the archiver and every replay refused, exit 3, for as
/// long as the sockets stayed (the PITR review). It is read line by line
/// now, to the line sought. Played in a network namespace of its own, so
/// that other tests beside it do not read that table.
#[test]
fn a_tcp_table_grown_past_64_mib_by_another_account_does_not_hide_redis() {
    let t = redis().setting("redis_timeout", "10").prepare();
    let account = setpriv_args(owner_user()).join(" ");
    let nobody = setpriv_args("nobody").join(" ");
    let log = t.path("netns-redis.log");
    fs::write(&log, "").unwrap();
    let (uid, gid) = user_ids(owner_user());
    std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
    let lair = t.path("nobodys");
    fs::create_dir(&lair).unwrap();
    let (nobody_uid, nobody_gid) = user_ids("nobody");
    std::os::unix::fs::chown(&lair, Some(nobody_uid), Some(nobody_gid)).unwrap();
    let flag = lair.join("listening");
    let listeners = support_dir().join("listeners.py");
    // Whatever way the script ends, nothing it started outlives it.
    let script = format!(
        r#"set -u
ip link set lo up || exit 90
setpriv {account} redis-server '{conf}' --daemonize no --logfile '{log}' --pidfile '' &
redis=$!
filler=
trap 'kill -KILL $redis $filler 2>/dev/null' EXIT
until redis-cli -p {port} ping 2>/dev/null | grep -q .; do
  sleep 0.1; kill -0 $redis 2>/dev/null || exit 91
done
setpriv {nobody} /usr/bin/python3 '{listeners}' 520000 '{flag}' 60 &
filler=$!
until [ -e '{flag}' ]; do sleep 0.2; kill -0 $filler 2>/dev/null || exit 92; done
echo "table $(wc -c < /proc/net/tcp)"
'{bin}' -c '{settings}' backup
echo "backup $?""#,
        conf = t.redis_conf().display(),
        log = log.display(),
        port = t.port,
        listeners = listeners.display(),
        flag = flag.display(),
        bin = BIN,
        settings = t.settings_file().display(),
    );
    let out = t
        .with_env(Run::new("unshare").args(&["--net", "bash", "-c", &script]))
        .run_within(Duration::from_secs(120));
    out.ok();
    let table: u64 = out
        .line_with("table ")
        .trim_start_matches("table ")
        .trim()
        .parse()
        .unwrap();
    assert!(
        table > 64 << 20,
        "the attack did not take: {table} bytes\n{out}"
    );
    assert_eq!(out.line_with("backup ").trim(), "backup 0", "{out}");
    assert_eq!(t.list(&[]).len(), 1, "{out}");
}

/// (The third self-review of the twenty-first session.) A running Redis
/// restored from a backup it wrote, AOF off: a private server proves that
/// redis.conf starts a server before Redis is stopped, and only its refusal
/// of the config ends the restore. The account put an RDB of its own under
/// the name that server is started on, in `aof/`, holding a key twice named
/// "FATAL CONFIG FILE ERROR": the server logged it as it exited, and every
/// such restore was refused as a config to mend (exit 2). Only a line that
/// starts so, before the server says its config is loaded, counts now; the
/// proof's failure is said, and the restore goes on.
#[test]
fn a_forged_config_refusal_does_not_stop_a_restore() {
    let (t, backed_up, record) = filled_and_backed_up(redis());
    let id = id_of(&record);
    t.conn().ok(&["SET", "after", "x"]);
    let attacker = Attacker::start(t.scratch(), "forge-refusal", &[arg(&t.data_dir())]);

    // The plant races the private server's start: a restore it lost goes
    // as any other, and the next is raced again.
    for _ in 0..5 {
        let out = t.run(&["restore", &id]);
        let context = format!("{out}\n{attacker}");
        out.ok();
        assert_eq!(t.state(), backed_up, "{context}");
        if attacker.log().contains("planted") {
            return;
        }
    }
    panic!("the attack was never made\n{attacker}");
}
