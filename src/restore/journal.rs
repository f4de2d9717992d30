//! A restore's work folder inside the Redis data dir, and its journal. The
//! folder holds the staged RDB, the previous data files moved aside (never
//! deleted first) and, after a failure, the new files moved away. The journal
//! is a list of steps, each line fsynced before the step's effect, so a run
//! killed at any point leaves enough on disk for the next run to put the
//! previous data back. Being in the data dir keeps every move a rename on one
//! file system.
//!
//! The data dir belongs to Redis's account, which may rename, replace or
//! plant folders there. So the folder is root's (mode 0700, which that account
//! cannot enter or make), is used only through descriptors opened without
//! following links, and a folder found later is trusted as an interrupted
//! restore only if it is still root's and private; anything else under our
//! prefix is somebody else's and is left alone. For an AOF rebuild it holds
//! `aof/`, that account's, where its private server works while Redis still
//! runs; while that server and redis-check-aof run the folder is 0711, so
//! they can reach `aof/`, and lists nothing to anyone else. What is root's
//! in it stays 0600 and 0700, but for the staged RDB, which the server
//! loads: 0640, readable by the owner's group.

use crate::error::{Error, Result};
use crate::fs::data_dir::{self, DataDir, FileIdentity, Owner};
use rustix::fs::{self as rfs, Mode, OFlags};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
    /// The restored files are in place and the unit is asked to start: from
    /// here its start may go on in systemd after we stopped waiting for it
    /// (or were killed), whether Redis ran before or not.
    Starting,
    /// The restored data is in place and Redis runs on it.
    Placed,
    /// Rolling back: the new data files are in `failed/`.
    NewAway,
    /// Rolling back: the previous data files are back in the data dir.
    PutBack,
    /// Finished, successfully or by a completed rollback; nothing to recover.
    Done,
    /// The folder is being removed: a run that finds it so removes the rest.
    Removing,
}

impl Step {
    fn line(&self) -> String {
        match self {
            Step::Staged => "staged".into(),
            Step::Stopping { was_active } => format!("stopping was_active={was_active}"),
            Step::AsideDone => "aside-done".into(),
            Step::Starting => "starting".into(),
            Step::Placed => "placed".into(),
            Step::NewAway => "new-away".into(),
            Step::PutBack => "put-back".into(),
            Step::Done => "done".into(),
            Step::Removing => "removing".into(),
        }
    }

    fn parse(line: &str) -> Option<Step> {
        Some(match line.trim() {
            "staged" => Step::Staged,
            "stopping was_active=true" => Step::Stopping { was_active: true },
            "stopping was_active=false" => Step::Stopping { was_active: false },
            "aside-done" => Step::AsideDone,
            "starting" => Step::Starting,
            "placed" => Step::Placed,
            "new-away" => Step::NewAway,
            "put-back" => Step::PutBack,
            "done" => Step::Done,
            "removing" => Step::Removing,
            _ => return None,
        })
    }
}

pub struct WorkDir {
    /// The folder's name in the data dir (the attacker may rename it; we
    /// never use the name again but to remove the folder, checked).
    name: String,
    /// `<data dir>/<name>`, for messages.
    path: PathBuf,
    fd: OwnedFd,
    previous: OwnedFd,
    journal: File,
    /// The steps recorded so far, by this run or (when recovering) an earlier one.
    steps: Vec<Step>,
}

/// The staged RDB, the moved-aside data, the moved-away new data and the
/// private server's pid and log: names inside the work folder.
const STAGED: &str = "incoming.rdb";
const PREVIOUS: &str = "previous";
const FAILED: &str = "failed";
const PRIVATE_PID: &str = "private-redis.pid";
/// For a Redis that keeps nothing on disk: which file is the dump it saved
/// before the stop, and which the dump placed, so that a later run can
/// remove whichever a killed one left (`UnkeptDump`).
const MADE_DUMP: &str = "made-dump";
const PLACED_DUMP: &str = "placed-dump";
/// Present when the restore was not asked to keep the previous data.
const PREVIOUS_NOT_KEPT: &str = "previous-not-kept";
/// Before the save of a Redis that keeps nothing on disk: a run killed
/// during it (Redis finishes it alone) has noted no `made-dump`.
const SAVING_DUMP: &str = "saving-dump";
/// Where the private server rebuilds the AOF: the data dir owner's.
const AOF_BUILD: &str = "aof";
/// A journal is a few lines; more than this is not ours.
const MAX_JOURNAL_LEN: u64 = 64 * 1024;

/// The dumps a restore makes for a Redis that keeps nothing on disk.
#[derive(Clone, Copy)]
pub enum UnkeptDump {
    /// Saved before the stop: Redis's own data, to put back on a rollback.
    Made,
    /// The restored RDB, placed: loaded, then to go.
    Placed,
}

/// What `saving-dump` notes, before Redis saves for the restore: which
/// server process (`run_id`), its count of saves (`rdb_saves`) and the file
/// under its dbfilename then, if any. Once that server has made exactly one
/// save more, a different file under the name is the one it made for us.
pub struct SavingDump {
    pub run_id: String,
    pub saves: u64,
    pub before: Option<FileIdentity>,
}

impl UnkeptDump {
    fn note(self) -> &'static str {
        match self {
            UnkeptDump::Made => MADE_DUMP,
            UnkeptDump::Placed => PLACED_DUMP,
        }
    }
}

impl WorkDir {
    /// A new folder `<data dir>/redis-backup-restore-<stamp>` (with `-1`,
    /// `-2`... if a folder from the same second is still there), mode 0700.
    pub fn create(data: &DataDir, stamp: &str) -> Result<WorkDir> {
        let mut name = format!("{FOLDER_PREFIX}{stamp}");
        let mut n = 0;
        while data.has(&name) {
            n += 1;
            name = format!("{FOLDER_PREFIX}{stamp}-{n}");
        }
        let path = data.join(&name);
        let failed = |e: io::Error| {
            Error::other(format!(
                "cannot create the restore work folder {}: {e}",
                path.display()
            ))
        };
        let fd = data_dir::create_private_dir(data.fd(), &name).map_err(failed)?;
        let previous = data_dir::create_private_dir(fd.as_fd(), PREVIOUS).map_err(failed)?;
        let journal = create_file(fd.as_fd(), JOURNAL, OFlags::APPEND).map_err(failed)?;
        data.sync().map_err(failed)?;
        Ok(WorkDir {
            name,
            path,
            fd,
            previous,
            journal,
            steps: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Where the previous data files wait while the restored ones are tried.
    pub fn previous(&self) -> BorrowedFd<'_> {
        self.previous.as_fd()
    }

    pub fn previous_path(&self) -> PathBuf {
        self.path.join(PREVIOUS)
    }

    pub fn failed_path(&self) -> PathBuf {
        self.path.join(FAILED)
    }

    /// The folder for new files moved away by a rollback, made if missing.
    pub fn failed(&self) -> Result<OwnedFd> {
        let opened = match data_dir::open_dir(self.fd(), FAILED) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                data_dir::create_private_dir(self.fd(), FAILED)
            }
            opened => opened,
        };
        opened
            .map_err(|e| Error::other(format!("cannot open {}: {e}", self.failed_path().display())))
    }

    pub fn staged_name(&self) -> &'static str {
        STAGED
    }

    pub fn staged_path(&self) -> PathBuf {
        self.path.join(STAGED)
    }

    /// The file the backup is decoded into, new and ours.
    pub fn create_staged(&self) -> Result<File> {
        create_file(self.fd(), STAGED, OFlags::empty()).map_err(|e| {
            Error::other(format!(
                "cannot create {}: {e}",
                self.staged_path().display()
            ))
        })
    }

    /// The staged file again (a run that is resuming a rollback removes it).
    pub fn remove_staged(&self) {
        let _ = rfs::unlinkat(self.fd(), STAGED, rfs::AtFlags::empty());
    }

    /// `aof/`, handed to `owner` with a link to the staged RDB named
    /// `dbfilename` in it: where the private server loads the restored data
    /// and writes the AOF before Redis is stopped. The staged file stays
    /// root's, readable by the owner's group (the same data is theirs once
    /// placed), so nothing the server does can change what is placed.
    pub fn create_aof_build(&self, dbfilename: &str, owner: Owner) -> Result<()> {
        let failed = |e: io::Error| {
            Error::other(format!(
                "cannot prepare {} for the AOF rebuild: {e}",
                self.aof_build_path().display()
            ))
        };
        let build = data_dir::create_private_dir(self.fd(), AOF_BUILD).map_err(failed)?;
        rfs::linkat(self.fd(), STAGED, &build, dbfilename, rfs::AtFlags::empty())
            .map_err(|e| failed(e.into()))?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let staged =
            rfs::openat(self.fd(), STAGED, flags, Mode::empty()).map_err(|e| failed(e.into()))?;
        let gid = Some(rfs::Gid::from_raw(owner.gid));
        rfs::fchown(&staged, None, gid)
            .and_then(|()| rfs::fchmod(&staged, Mode::from_raw_mode(0o640)))
            .and_then(|()| rfs::fchown(&build, Some(rfs::Uid::from_raw(owner.uid)), gid))
            .and_then(|()| rfs::fchmod(self.fd(), Mode::from_raw_mode(0o711)))
            .map_err(|e| failed(e.into()))
    }

    pub fn aof_build_path(&self) -> PathBuf {
        self.path.join(AOF_BUILD)
    }

    /// `aof/`, opened where only root can change which directory it is.
    pub fn aof_build(&self) -> io::Result<OwnedFd> {
        data_dir::open_dir(self.fd(), AOF_BUILD)
    }

    /// Once the private server and redis-check-aof are done: the folder is
    /// 0700 again, so the account cannot reach `aof/` through it.
    pub fn close_aof_build(&self) -> io::Result<()> {
        Ok(rfs::fchmod(self.fd(), Mode::from_raw_mode(0o700))?)
    }

    /// Once the AOF is placed: what is left in `aof/` (the link to the
    /// placed RDB, anything the owner put there) goes, without following a
    /// link; a folder not of `owner`'s stops it, at any depth (the owner
    /// can move one of root's in, even through a descriptor of `aof/` it
    /// kept).
    pub fn remove_aof_build(&self, owner: u32) -> io::Result<()> {
        data_dir::remove_tree(self.fd(), AOF_BUILD, Some(owner))
    }

    /// Note the private redis-server's pid, so that a later run can end it
    /// if this one is killed. Written by us, where only root can write.
    pub fn record_private_pid(&self, pid: u32) -> Result<()> {
        create_file(self.fd(), PRIVATE_PID, OFlags::TRUNC)
            .and_then(|mut f| {
                writeln!(f, "{pid}")?;
                f.sync_all()
            })
            .map_err(|e| Error::other(format!("cannot note the private server's pid: {e}")))
    }

    /// Note which file is `dump` of a Redis that keeps nothing on disk,
    /// durably, before the step that would leave it: a run killed after
    /// that step leaves the next one to remove it.
    pub fn note_unkept_dump(&self, dump: UnkeptDump, identity: FileIdentity) -> Result<()> {
        create_file(self.fd(), dump.note(), OFlags::TRUNC)
            .and_then(|mut f| {
                writeln!(f, "{}", identity.to_text())?;
                f.sync_all()
            })
            .map_err(|e| Error::other(format!("cannot note the dump of the restore: {e}")))
    }

    /// Note, durably, the save about to be made (`SavingDump`).
    pub fn note_saving_dump(&self, saving: &SavingDump) -> Result<()> {
        let before = saving.before.map_or("-".to_string(), FileIdentity::to_text);
        create_file(self.fd(), SAVING_DUMP, OFlags::TRUNC)
            .and_then(|mut f| {
                writeln!(f, "{} {} {before}", saving.run_id, saving.saves)?;
                f.sync_all()
            })
            .map_err(|e| Error::other(format!("cannot note the save of the restore: {e}")))
    }

    /// The save noted by `note_saving_dump`, if any.
    pub fn saving_dump(&self) -> Option<SavingDump> {
        let text = read_capped(self.fd(), SAVING_DUMP).ok()?;
        let text = String::from_utf8_lossy(&text);
        let mut words = text.split_whitespace();
        let run_id = words.next()?.to_string();
        let saves = words.next()?.parse().ok()?;
        let before = match words.collect::<Vec<_>>().join(" ").as_str() {
            "-" => None,
            identity => Some(FileIdentity::from_text(identity)?),
        };
        Some(SavingDump {
            run_id,
            saves,
            before,
        })
    }

    /// Note that the previous data is not to be kept once the restore is
    /// done, for a later run that finishes this one off. (A folder with no
    /// such note, of a killed run or an older version, keeps it.)
    pub fn note_previous_not_kept(&self) -> Result<()> {
        create_file(self.fd(), PREVIOUS_NOT_KEPT, OFlags::TRUNC)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::other(format!("cannot write in the restore's folder: {e}")))
    }

    pub fn keeps_previous(&self) -> bool {
        rfs::statat(self.fd(), PREVIOUS_NOT_KEPT, rfs::AtFlags::SYMLINK_NOFOLLOW).is_err()
    }

    /// The file noted by `note_unkept_dump`, if any.
    pub fn unkept_dump(&self, dump: UnkeptDump) -> Option<FileIdentity> {
        let text = read_capped(self.fd(), dump.note()).ok()?;
        FileIdentity::from_text(&String::from_utf8_lossy(&text))
    }

    /// The pid noted by `record_private_pid`, if any.
    pub fn private_pid(&self) -> Option<u32> {
        let text = read_capped(self.fd(), PRIVATE_PID).ok()?;
        String::from_utf8_lossy(&text).trim().parse().ok()
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

    /// Whether the data dir holds a whole set of data files, though the
    /// journal has no `done`: the previous ones, never moved or put back
    /// (a rollback whose start of Redis failed, exit 7), or the restored
    /// ones, placed and checked. Only the start, or `done`, is missing.
    pub fn data_in_place(&self) -> bool {
        !self.files_were_moved()
            || self.reached(&Step::PutBack)
            || (self.reached(&Step::Placed) && !self.reached(&Step::NewAway))
    }

    /// Whether the restore got as far as moving a data file aside.
    pub fn files_were_moved(&self) -> bool {
        self.reached(&Step::AsideDone) || self.previous_holds_files()
    }

    /// Whether Redis was running before this restore touched it; `None` if
    /// the restore never got that far.
    pub fn was_active(&self) -> Option<bool> {
        self.steps.iter().find_map(|s| match s {
            Step::Stopping { was_active } => Some(*was_active),
            _ => None,
        })
    }

    /// Whether `previous/` or `failed/` holds anything.
    pub fn previous_holds_files(&self) -> bool {
        data_dir::is_empty(self.previous()).is_ok_and(|empty| !empty)
    }

    pub fn failed_holds_files(&self) -> bool {
        data_dir::open_dir(self.fd(), FAILED)
            .and_then(|fd| data_dir::is_empty(fd.as_fd()))
            .is_ok_and(|empty| !empty)
    }

    /// Remove the folder and everything in it, unless it holds a folder
    /// that is not the data dir owner's (`remove_folder`): then the error
    /// names it, and the folder stays. The contents go through our
    /// descriptor; the folder's name is removed only if it is still ours
    /// (Redis's account may have renamed it, and put something else there).
    /// Journaled first, the journal removed last: a run killed on the way
    /// leaves a folder the next restore knows to finish removing
    /// (`finish_removals`), never one holding a dataset that no run looks
    /// at again.
    pub fn remove(mut self, data: &DataDir) -> io::Result<()> {
        // On a full disk the step cannot be noted; the folder goes all the
        // same (what it holds may be what fills the disk), the journal
        // still last.
        let _ = self.record(Step::Removing);
        remove_folder(data, &self.name, self.fd.as_fd())
    }
}

/// The folder's own entries are root's, but what `previous/`, `failed/` and
/// `aof/` hold is the data dir owner's, who can put a folder of root's in
/// it, at any depth (one `--keep-previous` left, renamed to a data file's
/// name or moved into `aof/`): such a folder stops the removal.
fn remove_folder(data: &DataDir, name: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
    data_dir::remove_contents_but(fd, Some(JOURNAL), Some(data.owner().uid))?;
    match rfs::unlinkat(fd, JOURNAL, rfs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let ours = rfs::fstat(fd)?;
    let there = rfs::statat(data.fd(), name, rfs::AtFlags::SYMLINK_NOFOLLOW)?;
    if (there.st_dev, there.st_ino) == (ours.st_dev, ours.st_ino) {
        rfs::unlinkat(data.fd(), name, rfs::AtFlags::REMOVEDIR)?;
    }
    data.sync()
}

/// The folders of earlier runs killed while removing them (their journal
/// says `removing`, or it is gone and they are empty): removed now,
/// whatever else they hold.
pub fn finish_removals(data: &DataDir) {
    let mut names = Vec::new();
    let _ = data_dir::for_each_name(data.fd(), |name| {
        if let Some(name) = std::str::from_utf8(name.to_bytes())
            .ok()
            .filter(|name| name.starts_with(FOLDER_PREFIX))
        {
            names.push(name.to_string());
        }
        Ok(())
    });
    for name in names {
        let Ok(fd) = data_dir::open_dir(data.fd(), &name) else {
            continue;
        };
        let ours = rfs::fstat(&fd).is_ok_and(|stat| private_to_root(&stat).is_ok());
        let removing = read_capped(fd.as_fd(), JOURNAL).is_ok_and(|text| {
            String::from_utf8_lossy(&text)
                .lines()
                .any(|line| Step::parse(line) == Some(Step::Removing))
        });
        // Killed after its journal went, before the folder did: empty.
        let emptied = data_dir::is_empty(fd.as_fd()).unwrap_or(false);
        if ours && (removing || emptied) {
            log::info!(
                "removing {}, which an earlier run began to remove",
                data.join(&name).display()
            );
            if let Err(e) = remove_folder(data, &name, fd.as_fd()) {
                log::warn!(
                    "could not remove {}: {e}; look at what is left in it, then remove it by hand",
                    data.join(&name).display()
                );
            }
        }
    }
}

/// A new file of ours in `dir`: never through a link, never an old one.
fn create_file(dir: BorrowedFd<'_>, name: &str, extra: OFlags) -> io::Result<File> {
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::EXCL
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | (extra - OFlags::TRUNC);
    match rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(File::from(fd)),
        // Replacing our own earlier note (the pid file of a retried start).
        Err(rustix::io::Errno::EXIST) if extra.contains(OFlags::TRUNC) => {
            rfs::unlinkat(dir, name, rfs::AtFlags::empty())?;
            create_file(dir, name, extra - OFlags::TRUNC)
        }
        Err(e) => Err(e.into()),
    }
}

/// A small file of ours in `dir`: a regular file, read without following a
/// link, and capped.
fn read_capped(dir: BorrowedFd<'_>, name: &str) -> io::Result<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = File::from(rfs::openat(dir, name, flags, Mode::empty())?);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!("{name} is not a regular file")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_JOURNAL_LEN).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Unfinished restores in the data dir, oldest first. Only folders that are
/// still root's and private count; others are named in a warning (the first
/// few: the redis account can make any number of them) and left.
pub fn interrupted(data: &DataDir) -> Result<Vec<WorkDir>> {
    let mut ours = Vec::new();
    let mut others = Others::default();
    data_dir::for_each_name(data.fd(), |name| {
        let Some(name) = std::str::from_utf8(name.to_bytes())
            .ok()
            .filter(|name| name.starts_with(FOLDER_PREFIX))
        else {
            return Ok(());
        };
        match looks_ours(data, name) {
            Ok(()) => ours.push(name.to_string()),
            Err(why) => others.ignore(data, name, &why),
        }
        Ok(())
    })
    .map_err(|e| {
        Error::other(format!(
            "cannot read the Redis data dir {}: {e}",
            data.path().display()
        ))
    })?;
    others.report(data);
    // Names in one folder are unique.
    ours.sort_unstable();
    let mut found = Vec::new();
    for name in ours {
        match open_interrupted(data, &name) {
            Ok(Some(work)) => found.push(work),
            Ok(None) => {}
            Err(why) => log::warn!(
                "ignoring {}: {why}; it was not left by redis-backup",
                data.join(&name).display()
            ),
        }
    }
    Ok(found)
}

/// Folders under our prefix that are not ours: counted, the first few named.
#[derive(Default)]
struct Others {
    count: usize,
}

impl Others {
    const NAMED: usize = 3;

    fn ignore(&mut self, data: &DataDir, name: &str, why: &str) {
        self.count += 1;
        if self.count <= Self::NAMED {
            log::warn!(
                "ignoring {}: {why}; it was not left by redis-backup",
                data.join(name).display()
            );
        }
    }

    fn report(&self, data: &DataDir) {
        if self.count > Self::NAMED {
            log::warn!(
                "ignored {} folders named {FOLDER_PREFIX}* in {} in all (the first {} are named above): none was left by redis-backup",
                self.count,
                data.path().display(),
                Self::NAMED
            );
        }
    }
}

/// Whether `name` is a folder that only root could have made: a directory
/// of root's, private. Looked at without following a link; what is kept
/// is looked at again through its descriptor.
fn looks_ours(data: &DataDir, name: &str) -> std::result::Result<(), String> {
    let stat =
        rfs::statat(data.fd(), name, rfs::AtFlags::SYMLINK_NOFOLLOW).map_err(|e| e.to_string())?;
    if rfs::FileType::from_raw_mode(stat.st_mode) != rfs::FileType::Directory {
        return Err("it is not a directory".into());
    }
    private_to_root(&stat)
}

/// 0700, or 0711 while an AOF rebuild needs `aof/` reachable.
fn private_to_root(stat: &rfs::Stat) -> std::result::Result<(), String> {
    if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o066 != 0 {
        return Err(format!(
            "it belongs to uid {} with mode {:o}, where ours are root's and private",
            stat.st_uid,
            stat.st_mode & 0o7777
        ));
    }
    Ok(())
}

/// An earlier run's folder, if it is ours and its restore unfinished.
fn open_interrupted(data: &DataDir, name: &str) -> std::result::Result<Option<WorkDir>, String> {
    let fd = data_dir::open_dir(data.fd(), name).map_err(|e| e.to_string())?;
    private_to_root(&rfs::fstat(&fd).map_err(|e| e.to_string())?)?;
    let Ok(text) = read_capped(fd.as_fd(), JOURNAL) else {
        return Ok(None);
    };
    let steps: Vec<Step> = String::from_utf8_lossy(&text)
        .lines()
        .filter_map(Step::parse)
        .collect();
    if steps.contains(&Step::Done) {
        return Ok(None);
    }
    let previous =
        data_dir::open_dir(fd.as_fd(), PREVIOUS).map_err(|e| format!("{PREVIOUS}: {e}"))?;
    let journal = rfs::openat(
        fd.as_fd(),
        JOURNAL,
        OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot reopen its journal: {e}"))?;
    Ok(Some(WorkDir {
        name: name.to_string(),
        path: data.join(name),
        fd,
        previous,
        journal: File::from(journal),
        steps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn data_dir(dir: &Path) -> DataDir {
        DataDir::open(dir).unwrap()
    }

    #[test]
    fn the_save_noted_before_it_is_read_back() {
        let dir = crate::testing::scratch_dir("journal-saving");
        let data = data_dir(&dir);
        fs::write(dir.join("dump.rdb"), b"x").unwrap();
        let work = WorkDir::create(&data, "20261125T000000Z").unwrap();
        assert!(work.saving_dump().is_none());
        for before in [None, Some(data.identity_of("dump.rdb").unwrap())] {
            let saving = SavingDump {
                run_id: "0123abcd".to_string(),
                saves: 7,
                before,
            };
            work.note_saving_dump(&saving).unwrap();
            let read = work.saving_dump().unwrap();
            assert_eq!(
                (read.run_id, read.saves, read.before),
                ("0123abcd".to_string(), 7, before)
            );
        }
    }

    #[test]
    fn journal_round_trip_and_recovery_listing() {
        let dir = crate::testing::scratch_dir("journal");
        let data = data_dir(&dir);

        let mut finished = WorkDir::create(&data, "20261125T000000Z").unwrap();
        finished.record(Step::Staged).unwrap();
        finished.record(Step::Done).unwrap();

        let mut cut = WorkDir::create(&data, "20261125T000001Z").unwrap();
        cut.record(Step::Staged).unwrap();
        cut.record(Step::Stopping { was_active: true }).unwrap();
        cut.record(Step::AsideDone).unwrap();
        cut.record_private_pid(4242).unwrap();
        let same_second = WorkDir::create(&data, "20261125T000001Z").unwrap();
        assert!(same_second
            .path()
            .ends_with("redis-backup-restore-20261125T000001Z-1"));
        same_second.remove(&data).unwrap();
        drop(cut);

        // Someone else's folder under our prefix is not a restore of ours.
        let planted = dir.join(format!("{FOLDER_PREFIX}20000101T000000Z"));
        fs::create_dir(&planted).unwrap();
        fs::write(planted.join(JOURNAL), "staged\nstopping was_active=true\n").unwrap();
        fs::set_permissions(
            &planted,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();

        let found = interrupted(&data).unwrap();
        assert_eq!(found.len(), 1, "only the unfinished one of ours");
        assert_eq!(found[0].was_active(), Some(true));
        assert!(found[0].reached(&Step::AsideDone));
        assert!(!found[0].reached(&Step::Placed));
        assert_eq!(found[0].private_pid(), Some(4242));
        assert!(found[0]
            .path()
            .ends_with("redis-backup-restore-20261125T000001Z"));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Backups are refused while a restore left the data dir without its
    /// files; not when none was moved (a stop or a move that failed first,
    /// then a start that failed: exit 7, the files where they were).
    #[test]
    fn the_data_is_in_place_until_a_file_is_moved_and_again_once_back() {
        let dir = crate::testing::scratch_dir("journal-in-place");
        let data = data_dir(&dir);
        let mut work = WorkDir::create(&data, "20261125T000003Z").unwrap();
        work.record(Step::Staged).unwrap();
        work.record(Step::Stopping { was_active: true }).unwrap();
        assert!(work.data_in_place(), "nothing was moved");
        fs::write(dir.join("dump.rdb"), b"old").unwrap();
        data_dir::move_entry(data.fd(), "dump.rdb", work.previous(), "dump.rdb").unwrap();
        assert!(!work.data_in_place(), "the dump is aside");
        work.record(Step::AsideDone).unwrap();
        work.record(Step::NewAway).unwrap();
        assert!(!work.data_in_place());
        work.record(Step::PutBack).unwrap();
        assert!(work.data_in_place(), "the dump is back");
    }

    #[test]
    fn a_renamed_work_folder_is_still_used_and_the_impostor_left_alone() {
        let dir = crate::testing::scratch_dir("journal-mv");
        let data = data_dir(&dir);
        let work = WorkDir::create(&data, "20261125T000002Z").unwrap();
        let mut staged = work.create_staged().unwrap();
        staged.write_all(b"rdb").unwrap();
        // Renamed away, and another folder put under its name.
        fs::rename(work.path(), dir.join("moved")).unwrap();
        fs::create_dir(work.path()).unwrap();
        fs::write(work.path().join("keep"), b"x").unwrap();
        assert_eq!(fs::read(dir.join("moved").join(STAGED)).unwrap(), b"rdb");
        let impostor = work.path().to_path_buf();
        work.remove(&data).unwrap();
        assert_eq!(fs::read(impostor.join("keep")).unwrap(), b"x");
        assert_eq!(
            fs::read_dir(dir.join("moved")).unwrap().count(),
            0,
            "our folder was emptied through its descriptor"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
