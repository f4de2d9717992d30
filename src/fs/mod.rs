//! File-system primitives that must be exactly right for a backup tool not to
//! lose data: write-to-temp-then-rename with fsyncs on the file and its
//! directory, private directories, and the per-host lock file. Policy (what to
//! write where) lives in the callers.

use crate::error::{Error, Result};
use crate::fs::write_behind::{Cache, WriteBehind};
use rustix::fs::{flock, FlockOperation, OFlags};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub mod acl;
pub mod cache;
pub mod data_dir;
pub mod room;
pub mod write_behind;
pub mod writers;

/// Create `dir` (and parents) with mode 0700 if missing; backups are secret-ish.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A file to read that someone else may have replaced or named: opened only
/// if it is a regular file (see `open_if_regular`).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let found = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    open_if_regular(&found)
}

/// At most `cap` bytes of a file this process's user wrote and that is as
/// it was left: a regular file of our uid with one name, reached without
/// following a link. Its folder may be another account's, which could
/// have put anything under the name; anything else is an error.
pub fn read_own(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let found = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&found)?;
    if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_nlink != 1 {
        return Err(io::Error::other("not a file of this user's alone"));
    }
    let mut bytes = Vec::new();
    open_if_regular(&found)?.take(cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `open_if_regular`'s error for what is not a regular file: no retry makes
/// it one. Its own type, so no EINVAL of the file system passes for it.
#[derive(Debug)]
struct NotRegular;

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a regular file")
    }
}

impl std::error::Error for NotRegular {}

/// Whether `e` is `open_if_regular`'s refusal of what is not a regular file.
pub fn is_not_regular(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotRegular>())
}

/// What `found`, a descriptor that only names a file (`O_PATH`), leads to,
/// opened to read if it is a regular file. Found without being opened,
/// checked, then opened through `/proc/self/fd`: a FIFO is never waited on,
/// a device never opened (opening some has effects: a watchdog starts
/// counting), and a rename in between changes nothing. The open does not
/// wait either (`open_unwaiting`).
pub fn open_if_regular(found: &OwnedFd) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let kind = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(found)?.st_mode);
    if kind != rustix::fs::FileType::RegularFile {
        return Err(io::Error::other(NotRegular));
    }
    open_unwaiting(Path::new(&format!("/proc/self/fd/{}", found.as_raw_fd())))
}

/// A file the kernel writes about a process (`/proc/PID/status`, `stat`,
/// `cmdline`), at most `cap` bytes of it, read without waiting
/// (`open_unwaiting`): any account may lease its own process's files.
pub fn read_proc(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_unwaiting(path)?.take(cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `path` opened to read without waiting: the file's owner may hold a write
/// lease on it, and an open that waits for the lease to be given up waits
/// the kernel's lease-break-time (45 s) on each such file. A leased file is
/// an error of kind `WouldBlock` that says so. (O_NONBLOCK changes nothing
/// for reading a regular file.)
pub fn open_unwaiting(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => io::Error::new(
                e.kind(),
                "another process holds a lease on it, which it would have to give up first",
            ),
            _ => e,
        })
}

/// Make a rename or unlink in `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file being written under a temporary name beside its final name. It
/// becomes visible under the final name only by `commit`, which fsyncs the data
/// before the rename and the directory after it; dropping it uncommitted
/// removes the temporary file, so a failed write leaves nothing behind.
pub struct AtomicFile {
    file: WriteBehind,
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        let dir = parent_of(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Ending in `.tmp`, not as the target does: whatever reads a
        // directory by suffix (node_exporter, `*.prom`) passes it over. A
        // part no other account can guess: in /tmp any account may create
        // names, and one planted under ours would make the write fail.
        let unguessable = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let temp = dir.join(format!(
            "{}{}-{unguessable:016x}-{name}.tmp",
            temp_prefix(),
            std::process::id()
        ));
        // create_new (O_EXCL) never follows a symlink planted under our name.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        // Held while the file is open, and let go by the kernel when the
        // writer dies: a sweep that can take it knows nobody writes here. A
        // file system without locks just leaves our temp files unswept.
        let _ = flock(&file, FlockOperation::NonBlockingLockExclusive);
        Ok(AtomicFile {
            file: WriteBehind::new(file, Cache::Forget),
            temp,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// Set the mode of the file (what a commit makes visible), whatever the
    /// umask.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::fchmod(
            self.file.get_ref(),
            rustix::fs::Mode::from_raw_mode(mode),
        )?)
    }

    /// Fsync, rename into place, fsync the directory. With `no_clobber`, an
    /// existing target makes this fail (hard link instead of rename) rather
    /// than replacing it.
    pub fn commit(mut self, no_clobber: bool) -> io::Result<()> {
        self.file.drain()?;
        self.file.get_ref().sync_all()?;
        if no_clobber {
            match fs::hard_link(&self.temp, &self.target) {
                Ok(()) => fs::remove_file(&self.temp)?,
                // File systems without hard links (vfat, some FUSE and CIFS
                // mounts): check, then rename. Callers hold the host lock.
                Err(e) if matches!(e.raw_os_error(), Some(EPERM | EOPNOTSUPP)) => {
                    if fs::symlink_metadata(&self.target).is_ok() {
                        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                    }
                    fs::rename(&self.temp, &self.target)?;
                }
                Err(e) => return Err(e),
            }
        } else {
            fs::rename(&self.temp, &self.target)?;
        }
        self.committed = true;
        fsync_dir(parent_of(&self.target))
    }
}

/// Temporary files made on this host start with this, then the writer's pid:
/// `.tmp-HOST-PID-RANDOM-NAME.tmp`. The host keeps a sweep on a shared directory to this
/// machine's files (a lock held over NFS is not always seen as held).
pub fn temp_prefix() -> String {
    let host: String = crate::id::host_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(".tmp-{host}-")
}

/// Remove from `dir` the temporary files (of names ending in `ending`)
/// that writers of this host left when they were killed: a half-written
/// backup or export can be as large as the dataset. The names removed. A
/// writer holds a lock on its file until it closes it or dies, so a file
/// whose lock we can take is abandoned.
///
/// Another writer of the directory (an NFS share) can plant anything under
/// these predictable names, so the sweep works from the directory's
/// descriptor and looks at each name without following a symlink or
/// opening it (a FIFO would wait for a writer forever, a device could act):
/// only a regular file is locked and removed; anything else is left alone.
pub fn remove_dead_temps(dir: &Path, ending: &str) -> Vec<String> {
    let prefix = temp_prefix();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(dir) = rustix::fs::open(dir, flags, rustix::fs::Mode::empty()) else {
        return Vec::new();
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = |n: &&str| n.starts_with(&prefix) && n.ends_with(ending);
        let Some(text) = name.to_str().ok().filter(ours) else {
            continue;
        };
        if remove_if_abandoned(&dir, name) {
            removed.push(text.to_string());
        }
    }
    removed
}

fn remove_if_abandoned(dir: &OwnedFd, name: &std::ffi::CStr) -> bool {
    use rustix::fs::{AtFlags, Mode};
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(found) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
        return false;
    };
    let Ok(file) = open_if_regular(&found) else {
        return false;
    };
    // Held: its writer is alive. Any other failure: we cannot tell.
    flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
        && rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok()
}

const EPERM: i32 = 1;
const ELOOP: i32 = 40;
const EOPNOTSUPP: i32 = 95;

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    /// Whatever went wrong before the rename, the temporary file goes.
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The folder `path`'s entry is in (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Held for the whole of a backup or restore; released when dropped (or when
/// the process dies, because the kernel drops the lock with the descriptor, so
/// a lock file left by a dead process never blocks).
#[derive(Debug)]
pub struct HostLock {
    _file: File,
}

pub fn lock_host(path: &Path) -> Result<HostLock> {
    match try_lock_host(path)? {
        Ok(lock) => Ok(lock),
        Err(holder) => Err(Error::other(format!(
            "another redis-backup run{holder} holds the lock {}; one runs at a time: wait for it to finish",
            path.display()
        ))),
    }
}

/// The lock at `path` (as `lock_host` checks and takes it), waited for at
/// most `within`; `None`, said in the log, if it stayed held or cannot be
/// had: for a step short enough that going on without it is the lesser harm.
pub fn lock_waiting(path: &Path, within: std::time::Duration) -> Option<HostLock> {
    let deadline = std::time::Instant::now() + within;
    loop {
        match try_lock_host(path) {
            Ok(Ok(lock)) => return Some(lock),
            Ok(Err(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(Err(holder)) => {
                log::warn!(
                    "{} stayed held{holder}; going on without it",
                    path.display()
                );
                return None;
            }
            Err(e) => {
                log::warn!("{e}; going on without it");
                return None;
            }
        }
    }
}

/// The lock, or (inner `Err`) who holds it, as " (pid N)" or nothing.
fn try_lock_host(path: &Path) -> Result<std::result::Result<HostLock, String>> {
    // In (or through) a folder another account may write, that account
    // could rename the lock away (two runs at once), swap a folder on the
    // way for one of root's (where root would write its pid), or, in a
    // sticky one (/tmp, /run/lock), take the name first: no run again.
    let others = writers::others_who_may_name(path).map_err(|e| {
        Error::usage(format!(
            "lock file {}: {e}; set lock_file to a path in a folder that exists and only root may write (such as /run)",
            path.display()
        ))
    })?;
    if let Some(who) = others {
        return Err(Error::usage(format!(
            "lock file {}: {who}, and could take the lock from under us; set lock_file to a path in a folder only root may write (such as /run)",
            path.display()
        )));
    }
    // We are root and write the file: never through a planted symlink (not
    // followed), a FIFO (not waited on) or another name of someone's file.
    let not_ours = |why: &str| {
        Error::other(format!(
            "lock file {} {why}; remove it or set lock_file to another path",
            path.display()
        ))
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(ELOOP) => not_ours("is a symbolic link"),
            _ => Error::other(format!(
                "cannot open lock file {}: {e}; set lock_file to a writable path",
                path.display()
            )),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::other(format!("cannot stat lock file {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(not_ours("is not a regular file"));
    }
    if meta.nlink() != 1 || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(not_ours("belongs to another user or has other names"));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Ok(Err(who));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(Error::other(format!("cannot lock {}: {e}", path.display())))
        }
    }
    // The pid is only a hint for the message above; the lock itself is the flock.
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    Ok(Ok(HostLock { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rb-fsutil-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_private_dir(&dir).unwrap();
        dir
    }

    /// node_exporter's textfile collector reads every name ending in
    /// `.prom`, hidden ones too: a status file's temporary copy, left by a
    /// killed run, would be read as a second, stale status.
    #[test]
    fn a_temporary_file_does_not_end_as_its_target_does() {
        let dir = scratch("tempname");
        let file = AtomicFile::create(&dir.join("redis-backup.prom")).unwrap();
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with(&temp_prefix()), "{names:?}");
        assert!(!names[0].ends_with(".prom"), "{names:?}");
        drop(file);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_once_reads_from_where_the_file_stands_and_rewinds_to_the_start() {
        use cache::ReadOnce;
        use std::io::{Seek, SeekFrom};
        let dir = scratch("readonce");
        let path = dir.join("obj");
        // Past a drop window, so bytes are read after pages were dropped.
        let data: Vec<u8> = (0..(40u32 << 20) + 3).map(|i| (i % 253) as u8).collect();
        fs::write(&path, &data).unwrap();
        let mut file = File::open(&path).unwrap();
        file.seek(SeekFrom::Start(5)).unwrap();
        let mut object = ReadOnce::new(file).unwrap();
        let mut back = Vec::new();
        object.read_to_end(&mut back).unwrap();
        assert!(back == data[5..], "resumed read differs");
        object.rewind().unwrap();
        back.clear();
        object.read_to_end(&mut back).unwrap();
        assert!(back == data, "second pass differs");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_file_appears_only_on_commit() {
        let dir = scratch("atomic");
        let target = dir.join("obj");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"data").unwrap();
        assert!(!target.exists());
        f.commit(true).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"data");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "temp file left behind"
        );

        let mut again = AtomicFile::create(&target).unwrap();
        again.write_all(b"other").unwrap();
        assert!(again.commit(true).is_err(), "no_clobber must not replace");
        assert_eq!(fs::read(&target).unwrap(), b"data");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "a failed commit leaves no temp file"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dropped_atomic_file_leaves_nothing() {
        let dir = scratch("drop");
        let mut f = AtomicFile::create(&dir.join("obj")).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_in_place_of_the_lock_file_is_refused() {
        let dir = scratch("locklink");
        let victim = dir.join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("lock")).unwrap();
        assert_eq!(lock_host(&dir.join("lock")).unwrap_err().exit_code(), 1);
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_is_not_a_regular_file_is_refused_without_being_opened() {
        let dir = scratch("notopened");
        let fifo = dir.join("pipe");
        crate::testing::make_fifo(&fifo);
        let writer_opened = crate::testing::writer_waiting_on(&fifo);
        let err = open_regular(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(is_not_regular(&err));
        let einval = io::Error::from_raw_os_error(22);
        assert!(
            !is_not_regular(&einval),
            "the file system's EINVAL is not it"
        );
        let during = writer_opened.recv_timeout(std::time::Duration::from_millis(300));
        assert!(during.is_err(), "open_regular opened the FIFO");
        let _release = fs::OpenOptions::new()
            .read(true)
            .custom_flags(OFlags::NONBLOCK.bits() as i32)
            .open(&fifo)
            .unwrap();
        assert!(
            writer_opened.recv().unwrap(),
            "the writer opened it in the end"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_or_another_name_of_a_file_as_the_lock_is_refused() {
        let dir = scratch("lockfifo");
        let fifo = dir.join("fifo");
        crate::testing::make_fifo(&fifo);
        // Refused at once, not waiting for a writer.
        assert_eq!(lock_host(&fifo).unwrap_err().exit_code(), 1);
        let victim = dir.join("victim");
        fs::write(&victim, b"keep").unwrap();
        fs::hard_link(&victim, dir.join("lock")).unwrap();
        let err = lock_host(&dir.join("lock")).unwrap_err();
        assert!(err.message().contains("other names"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let dir = scratch("lock");
        let path = dir.join("lock");
        let first = lock_host(&path).unwrap();
        let err = lock_host(&path).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.message().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        lock_host(&path).expect("lock is free again");
        fs::remove_dir_all(&dir).unwrap();
    }
}
