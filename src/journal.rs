//! A restore's work folder inside the Redis data dir, and its journal. The
//! folder holds the staged RDB, the previous data files moved aside (never
//! deleted first) and, after a failure, the new files moved away. The journal
//! is a list of steps, each line fsynced before the step's effect, so a run
//! killed at any point leaves enough on disk for the next run to put the
//! previous data back. Being in the data dir keeps every move a rename on one
//! file system.

use crate::error::{Error, Result};
use crate::fsutil::fsync_dir;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const FOLDER_PREFIX: &str = "redis-backup-restore-";
const JOURNAL: &str = "journal";

/// What a restore has done so far. Only the order matters for recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The backup is decoded, checked and fsynced in the folder; Redis untouched.
    Staged,
    /// Redis is about to be stopped; `was_active` says whether to start it again.
    Stopping { was_active: bool },
    /// Every previous data file is in `previous/`; from here on, any data file
    /// in the data dir that is not from `previous/` is new.
    AsideDone,
    /// The restored data is in place and Redis runs on it.
    Placed,
    /// Rolling back: the new data files are in `failed/`.
    NewAway,
    /// Rolling back: the previous data files are back in the data dir.
    PutBack,
    /// Finished, successfully or by a completed rollback; nothing to recover.
    Done,
}

impl Step {
    fn line(&self) -> String {
        match self {
            Step::Staged => "staged".into(),
            Step::Stopping { was_active } => format!("stopping was_active={was_active}"),
            Step::AsideDone => "aside-done".into(),
            Step::Placed => "placed".into(),
            Step::NewAway => "new-away".into(),
            Step::PutBack => "put-back".into(),
            Step::Done => "done".into(),
        }
    }

    fn parse(line: &str) -> Option<Step> {
        Some(match line.trim() {
            "staged" => Step::Staged,
            "stopping was_active=true" => Step::Stopping { was_active: true },
            "stopping was_active=false" => Step::Stopping { was_active: false },
            "aside-done" => Step::AsideDone,
            "placed" => Step::Placed,
            "new-away" => Step::NewAway,
            "put-back" => Step::PutBack,
            "done" => Step::Done,
            _ => return None,
        })
    }
}

pub struct WorkDir {
    path: PathBuf,
    journal: File,
    /// The steps recorded so far, by this run or (when recovering) an earlier one.
    steps: Vec<Step>,
}

impl WorkDir {
    /// A new folder `<data dir>/redis-backup-restore-<stamp>` (with `-1`,
    /// `-2`... if a folder from the same second is still there), mode 0700.
    pub fn create(data_dir: &Path, stamp: &str) -> Result<WorkDir> {
        let mut path = data_dir.join(format!("{FOLDER_PREFIX}{stamp}"));
        let mut n = 0;
        while fs::symlink_metadata(&path).is_ok() {
            n += 1;
            path = data_dir.join(format!("{FOLDER_PREFIX}{stamp}-{n}"));
        }
        let failed = |e: io::Error| {
            Error::other(format!(
                "cannot create the restore work folder {}: {e}",
                path.display()
            ))
        };
        // Not recursive: a missing data dir is the caller's error to report,
        // not ours to create with the wrong owner.
        let private = |p: &Path| fs::DirBuilder::new().mode(0o700).create(p);
        private(&path).map_err(failed)?;
        private(&path.join("previous")).map_err(failed)?;
        let journal = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path.join(JOURNAL))
            .map_err(failed)?;
        fsync_dir(data_dir).map_err(failed)?;
        Ok(WorkDir {
            path,
            journal,
            steps: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn staged_rdb(&self) -> PathBuf {
        self.path.join("incoming.rdb")
    }

    pub fn previous(&self) -> PathBuf {
        self.path.join("previous")
    }

    pub fn failed(&self) -> PathBuf {
        self.path.join("failed")
    }

    /// Where the private redis-server of an AOF rebuild writes its pid.
    pub fn private_pid_file(&self) -> PathBuf {
        self.path.join("private-redis.pid")
    }

    /// Append a step and make it durable before the caller acts on it.
    pub fn record(&mut self, step: Step) -> Result<()> {
        writeln!(self.journal, "{}", step.line())
            .and_then(|()| self.journal.sync_all())
            .map_err(|e| {
                Error::other(format!(
                    "cannot write the restore journal in {}: {e}",
                    self.path.display()
                ))
            })?;
        self.steps.push(step);
        Ok(())
    }

    pub fn reached(&self, step: &Step) -> bool {
        self.steps.contains(step)
    }

    /// Whether Redis was running before this restore touched it; `None` if
    /// the restore never got that far.
    pub fn was_active(&self) -> Option<bool> {
        self.steps.iter().find_map(|s| match s {
            Step::Stopping { was_active } => Some(*was_active),
            _ => None,
        })
    }

    /// Remove the folder and everything in it.
    pub fn remove(self) -> io::Result<()> {
        let WorkDir { path, journal, .. } = self;
        drop(journal);
        fs::remove_dir_all(&path)?;
        fsync_dir(path.parent().unwrap_or(Path::new("/")))
    }
}

/// Unfinished restores in `data_dir`, oldest first.
pub fn interrupted(data_dir: &Path) -> Result<Vec<WorkDir>> {
    let entries = match fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::other(format!(
                "cannot read the Redis data dir {}: {e}",
                data_dir.display()
            )))
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(FOLDER_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(text) = fs::read_to_string(path.join(JOURNAL)) else {
            continue;
        };
        let steps: Vec<Step> = text.lines().filter_map(Step::parse).collect();
        if steps.contains(&Step::Done) {
            continue;
        }
        let journal = OpenOptions::new()
            .append(true)
            .open(path.join(JOURNAL))
            .map_err(|e| Error::other(format!("cannot reopen {}: {e}", path.display())))?;
        found.push(WorkDir {
            path,
            journal,
            steps,
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trip_and_recovery_listing() {
        let dir = std::env::temp_dir().join(format!("rb-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();

        let mut finished = WorkDir::create(&dir, "20261125T000000Z").unwrap();
        finished.record(Step::Staged).unwrap();
        finished.record(Step::Done).unwrap();

        let mut cut = WorkDir::create(&dir, "20261125T000001Z").unwrap();
        cut.record(Step::Staged).unwrap();
        cut.record(Step::Stopping { was_active: true }).unwrap();
        cut.record(Step::AsideDone).unwrap();
        let same_second = WorkDir::create(&dir, "20261125T000001Z").unwrap();
        assert!(same_second
            .path()
            .ends_with("redis-backup-restore-20261125T000001Z-1"));
        same_second.remove().unwrap();
        drop(cut);

        let found = interrupted(&dir).unwrap();
        assert_eq!(found.len(), 1, "only the unfinished one");
        assert_eq!(found[0].was_active(), Some(true));
        assert!(found[0].reached(&Step::AsideDone));
        assert!(!found[0].reached(&Step::Placed));
        assert!(found[0]
            .path()
            .ends_with("redis-backup-restore-20261125T000001Z"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
