//! Putting the previous data back: after a restore failed once Redis was
//! touched, and at the start of the next run when one was killed half way.
//! Each stage is journaled before the next begins (new files away, previous
//! files back, Redis started), so undoing can itself be interrupted and
//! resumed without ever mistaking the old files for the new ones.

use super::journal::{self, Step, UnkeptDump, WorkDir};
use crate::error::{Error, Result};
use crate::fs::data_dir::{self, DataDir, FileIdentity};
use crate::redis::instance::DataFiles;
use crate::redis::{ConnectOptions, Connection};
use crate::restore::private_redis;
use crate::service::Service;
use log::{info, warn};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The instance being restored, as rollback needs to see it.
pub struct Server<'a> {
    pub files: &'a DataFiles,
    pub data: &'a DataDir,
    pub service: &'a Service,
    pub connect: &'a ConnectOptions,
    pub wait: Duration,
}

/// Put the previous files back after `cause`; exit 6 if that worked, 7 if not.
pub fn roll_back(server: &Server, mut work: WorkDir, was_active: bool, cause: Error) -> Error {
    warn!("restore failed, putting the previous data back: {cause}");
    let folder = work.path().display().to_string();
    let dir = server.data.path().display();
    let touched = work.files_were_moved();
    let unit = server.service.unit();
    match put_previous_back(server, &mut work, was_active) {
        Ok(()) if !touched => {
            // Nothing of Redis's is in it: the staged copy must not keep
            // taking the space Redis needs (nothing else would remove it).
            if let Err(e) = work.remove(server.data) {
                warn!("could not remove {folder}: {e}");
            }
            Error::RolledBack(format!(
                "restore failed before any data file was moved: {cause}; Redis's data files are as they were{}",
                if was_active { ", and Redis is running" } else { "" }
            ))
        }
        Ok(()) => Error::RolledBack(format!(
            "restore failed: {cause}; the previous data was put back{}; the restored files are kept in {folder}/failed",
            if was_active { " and Redis restarted" } else { "" }
        )),
        Err(again) if !touched => Error::RollbackFailed(format!(
            "restore failed before any data file was moved: {cause}; Redis's data files are as they were in {dir}, but Redis did not start again: {again}; `journalctl -u {unit}` says why, then `systemctl start {unit}`"
        )),
        Err(again) if work.reached(&Step::PutBack) => Error::RollbackFailed(format!(
            "restore failed: {cause}; the previous files are back in {dir}, but Redis did not start again: {again}; `journalctl -u {unit}` says why, then `systemctl start {unit}` (the restored files are in {folder}/failed)"
        )),
        Err(again) => Error::RollbackFailed(format!(
            "restore failed: {cause}; putting the previous data back also failed: {again}; the previous files are in {folder}/previous and must be moved back into {dir} by hand"
        )),
    }
}

/// Finish off restores that an earlier run left half done, before anything
/// else: undo those that had touched Redis, drop those that had not.
pub fn recover_interrupted(server: &Server) -> Result<()> {
    server.data.remove_taken_aside();
    journal::finish_removals(server.data);
    for mut interrupted in journal::interrupted(server.data)? {
        let folder = interrupted.path().display().to_string();
        match interrupted.was_active() {
            None => {
                info!("removing {folder}, left by a restore that never touched Redis");
                // Its private server may still be building the AOF in it.
                private_redis::end_orphan(&interrupted, server.data)?;
                // Killed between the save before the stop and the stop: a
                // Redis that keeps nothing on disk runs on, and would load
                // that dump at its next start.
                // Only if the server running now keeps nothing on disk: one
                // started since from redis.conf (a boot) may keep its data
                // on disk, and loaded that dump, its only copy until a save.
                if let Some(made) = interrupted.unkept_dump(UnkeptDump::Made) {
                    let now = Connection::connect(server.connect);
                    if now.is_ok_and(|mut redis| keeps_nothing(&mut redis)) {
                        remove_unkept(server, made, MADE_WHY);
                    }
                } else if let Some(saving) = interrupted.saving_dump() {
                    remove_the_save_cut_short(server, &saving);
                }
                let _ = interrupted.remove(server.data);
            }
            // It had finished and checked the restore; only "done" is missing.
            // Finished off as that run would have: the dump a Redis that
            // keeps nothing on disk started on goes, and so does the
            // folder unless the previous data was to be kept.
            Some(_) if interrupted.reached(&Step::Placed) => {
                if let Some(placed) = interrupted.unkept_dump(UnkeptDump::Placed) {
                    remove_unkept(
                        server,
                        placed,
                        "Redis started on it and keeps nothing on disk",
                    );
                }
                interrupted.record(Step::Done)?;
                if interrupted.keeps_previous() {
                    warn!("a previous restore finished but was not marked done; its previous data stays in {folder}/previous");
                } else if let Err(e) = interrupted.remove(server.data) {
                    warn!("a previous restore finished but was not marked done, and {folder} could not be removed: {e}; remove it by hand");
                }
            }
            Some(was_active) => {
                warn!("a previous restore was interrupted ({folder}); putting its previous data back first");
                // Running now, though it did not before, and not started by
                // that restore: the operator (or a boot) started it since,
                // and it runs again once its data is back.
                let start_again = was_active
                    || (!interrupted.reached(&Step::Starting) && server.service.is_active()?);
                put_previous_back(server, &mut interrupted, start_again).map_err(|e| {
                    Error::RollbackFailed(format!(
                        "an interrupted restore left {folder}, and putting its previous data back failed: {e}; the previous files are in {folder}/previous unless {} already holds them",
                        server.data.path().display()
                    ))
                })?;
                tidy_up(interrupted, server.data);
            }
        }
    }
    Ok(())
}

/// A run killed while a Redis that keeps nothing on disk saved for it
/// (`SavingDump`): once that server, still running, has ended the save and
/// made exactly one more, a file under its dbfilename other than the one
/// there before is that save's, and goes. Anything less sure is only said.
fn remove_the_save_cut_short(server: &Server, saving: &journal::SavingDump) {
    let name = &server.files.dbfilename;
    let ours = (|| -> Result<Option<FileIdentity>> {
        let mut redis = Connection::connect(server.connect)?;
        if redis.info("server")?.get("run_id") != Some(&saving.run_id) {
            return Ok(None);
        }
        let deadline = Instant::now() + server.wait;
        let persistence = loop {
            let persistence = redis.info("persistence")?;
            let saving = persistence
                .get("rdb_bgsave_in_progress")
                .map(String::as_str);
            if saving != Some("1") || Instant::now() >= deadline {
                break persistence;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let saves = persistence
            .get("rdb_saves")
            .and_then(|n| n.parse::<u64>().ok());
        if saves != Some(saving.saves + 1) || !keeps_nothing(&mut redis) {
            return Ok(None);
        }
        let now = server.data.identity_of(name).ok();
        Ok(now.filter(|now| Some(*now) != saving.before))
    })();
    match ours {
        Ok(Some(made)) => remove_unkept(
            server,
            made,
            "Redis keeps nothing on disk, and saved it only for a restore killed as it saved",
        ),
        _ if server.data.identity_of(name).ok() != saving.before => {
            warn!("{} may be the dump Redis saved for a restore killed as it saved; if Redis keeps nothing on disk, remove it: its next start would load it", server.data.join(name).display());
        }
        _ => {}
    }
}

const MADE_WHY: &str =
    "Redis keeps nothing on disk, and saved it only for the restore, which did not go on";

/// Whether the server running keeps nothing on disk (`save ""`,
/// `appendonly no`), as it runs now.
fn keeps_nothing(redis: &mut Connection) -> bool {
    let mut live = |name| redis.config_get(name).ok().flatten();
    live("save").as_deref() == Some("") && live("appendonly").as_deref() == Some("no")
}

/// The dump noted for a Redis that keeps nothing on disk, if it is still
/// that file.
fn remove_unkept(server: &Server, dump: FileIdentity, why: &str) {
    server
        .data
        .remove_unkept_dump(&server.files.dbfilename, dump, why);
}

/// After an interrupted restore was undone: the staged copy goes, and so does
/// the folder unless it keeps new files (in failed/) for inspection.
fn tidy_up(work: WorkDir, data: &DataDir) {
    work.remove_staged();
    // previous/ not empty: files under names the settings no longer use.
    if work.previous_holds_files() {
        warn!(
            "{} still holds files that were not put back; look at them before removing the folder",
            work.previous_path().display()
        );
    } else if work.failed_holds_files() {
        info!(
            "the interrupted restore's files are kept in {}",
            work.failed_path().display()
        );
    } else if let Err(e) = work.remove(data) {
        warn!("could not remove an interrupted restore's folder: {e}");
    }
}

/// Undo in journaled stages: stop Redis, move the new data files into
/// `failed/`, the previous ones back, start Redis if it ran before.
fn put_previous_back(server: &Server, work: &mut WorkDir, start_again: bool) -> Result<()> {
    let files = server.files;
    // A private redis-server of a killed run may still be writing the AOF.
    private_redis::end_orphan(work, server.data)?;
    let mut start_again = start_again;
    if work.files_were_moved() {
        if !work.reached(&Step::NewAway) {
            // Not only when it is active: a start of ours that did not
            // return in time (or was killed) goes on in systemd, the unit
            // "activating", not active, and the server loading the new
            // files would save them over the previous ones once back. A
            // stop of it, inactive, does nothing, and ends a start job
            // still waiting.
            let ours_may_run = start_again || work.reached(&Step::Starting);
            if ours_may_run || server.service.is_active()? {
                stop_for_the_rollback(server, start_again)?;
            }
            move_new_away(files, server.data, work)?;
            work.record(Step::NewAway)?;
        } else if !work.reached(&Step::PutBack) {
            // Killed between the two moves: a server running now was started
            // since (a boot, the operator) on neither the new files nor the
            // previous ones, and would save its data over them once back;
            // or, keeping nothing on disk, never load them. It is stopped
            // (a start job still waiting ends too), and runs again on them.
            start_again |= server.service.is_active()?;
            stop_for_the_rollback(server, start_again)?;
        }
        if !work.reached(&Step::PutBack) {
            move_previous_back(files, server.data, work)?;
            work.record(Step::PutBack)?;
        }
    }
    if start_again {
        if !server.service.is_active()? {
            server.service.start()?;
        }
        let mut redis = wait_until_ready(server.connect, server.wait)?;
        // Redis, started again, loaded its own data from the dump it saved
        // for the restore; if it keeps nothing on disk, it goes. Asked of
        // the server started (redis.conf's), not the one planned on: `save
        // ""` set at run time, it may save again, and needs its dump. Before
        // "done": a run killed after it leaves a folder no later run reads.
        if let Some(made) = work.unkept_dump(UnkeptDump::Made) {
            if keeps_nothing(&mut redis) {
                remove_unkept(server, made, MADE_WHY);
            }
        }
    }
    work.record(Step::Done)
}

/// A unit that did not run before the restore and is not active now may
/// be one systemd does not know (its start failed at once): systemctl
/// refuses its stop, and nothing of ours runs under it to stop. A stop
/// that does not end in time is no such answer: its unit may be saving.
fn stop_for_the_rollback(server: &Server, start_again: bool) -> Result<()> {
    match server.service.stop_unless_refused()? {
        Err(refused) if !start_again && !server.service.is_active()? => {
            warn!("{refused}; going on: the unit is not active");
            Ok(())
        }
        stopped => stopped,
    }
}

fn move_new_away(files: &DataFiles, data: &DataDir, work: &WorkDir) -> Result<()> {
    let failed = work.failed()?;
    let all_aside = work.reached(&Step::AsideDone);
    for name in files.data_names() {
        let had_old = data_dir::entry_exists(work.previous(), name);
        // Before every old file was aside, a data file whose old version is
        // not in previous/ is still the old one: leave it where it is.
        if !(had_old || all_aside) || !data.has(name) {
            continue;
        }
        keep_in_failed(data, name, failed.as_fd(), work)?;
    }
    sync_both(data, failed.as_fd(), &work.failed_path())
}

/// Move the data dir's `name` into `failed/`, under a name not yet used
/// there: nothing kept for inspection is ever replaced.
fn keep_in_failed(
    data: &DataDir,
    name: &str,
    failed: BorrowedFd<'_>,
    work: &WorkDir,
) -> Result<()> {
    let to = unused_name(failed, name);
    move_between(
        data.fd(),
        name,
        failed,
        &to,
        data.join(name),
        &work.failed_path().join(&to),
    )
}

fn move_previous_back(files: &DataFiles, data: &DataDir, work: &WorkDir) -> Result<()> {
    for name in files.data_names() {
        if data_dir::entry_exists(work.previous(), name) {
            // Something put under the name since the new files went away
            // (Redis's account may keep planting it): kept aside in failed/
            // like the new files, so the previous data can go back.
            if data.has(name) {
                keep_in_failed(data, name, work.failed()?.as_fd(), work)?;
            }
            let back = data.join(name);
            move_between(
                work.previous(),
                name,
                data.fd(),
                name,
                work.previous_path().join(name),
                &back,
            )?;
            info!("put {} back", back.display());
        }
    }
    sync_both(data, work.previous(), &work.previous_path())
}

/// `name`, or `name.1`, `.2`... so nothing kept for inspection is ever
/// replaced.
fn unused_name(dir: BorrowedFd<'_>, name: &str) -> String {
    let mut candidate = name.to_string();
    let mut n = 0;
    while data_dir::entry_exists(dir, &candidate) {
        n += 1;
        candidate = format!("{name}.{n}");
    }
    candidate
}

fn move_between(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
    from_path: std::path::PathBuf,
    to_path: &Path,
) -> Result<()> {
    data_dir::move_entry(from_dir, from, to_dir, to).map_err(|e| {
        Error::other(format!(
            "cannot move {} to {}: {e}",
            from_path.display(),
            to_path.display()
        ))
    })
}

/// Make the moves between the data dir and a folder of ours durable.
pub fn sync_both(data: &DataDir, other: BorrowedFd<'_>, other_path: &Path) -> Result<()> {
    data.sync()
        .and_then(|()| Ok(rustix::fs::fsync(other)?))
        .map_err(|e| {
            Error::other(format!(
                "cannot sync {} and {}: {e}",
                data.path().display(),
                other_path.display()
            ))
        })
}

/// Connect, retrying while Redis starts or loads its dataset.
pub fn wait_until_ready(connect: &ConnectOptions, timeout: Duration) -> Result<Connection> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = Connection::connect(connect).and_then(|mut conn| {
            let loading = conn.info("persistence")?.get("loading").cloned();
            match loading.as_deref() {
                Some("0") => Ok(conn),
                _ => Err(Error::redis("Redis is still loading its dataset")),
            }
        });
        match attempt {
            Ok(conn) => return Ok(conn),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context("waiting for Redis to answer"))
            }
            // Every poll is a connect and an INFO: cheap next to a load,
            // and a coarser step would add to the outage it ends.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
