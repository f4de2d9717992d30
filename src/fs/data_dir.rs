//! Redis's data dir as root may touch it. The account that owns the dir (and,
//! on Debian, redis.conf too) is treated as hostile: it can rename, replace
//! and plant anything there at any moment. So the dir is opened once, without
//! following a symlink, and everything root does inside it goes through that
//! descriptor (`openat`, `renameat2` without replacing, `unlinkat`, `fchown`),
//! never through a path that could be swapped underneath. What runs inside it
//! as a program (the private redis-server) runs as the dir's owner instead,
//! so that the kernel refuses whatever that account could not do itself.
//!
//! Whose dir it is also decides whose word redis.conf is (a data dir is only
//! accepted when every config file that named it could have been written by
//! root or by the dir's own owner): `RedisConf::check_authority`.

use crate::error::{Error, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags, CWD};
use std::ffi::CStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The account whose files these are: everything placed in the data dir gets
/// it, and the private redis-server runs as it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    /// The account's own group (from /etc/passwd), not the data dir's: a dir
    /// of the account's can be in a group it is not in (`chown redis` keeps
    /// group root; /var/log/redis is redis:adm), and redis.conf, which the
    /// account writes, chooses the dir.
    pub gid: u32,
}

/// Largest /etc/passwd read (a few thousand accounts use far less).
const MAX_PASSWD_LEN: u64 = 16 << 20;

/// The primary group of the account `uid` in `passwd`, if it has a line
/// there (an account from LDAP or a bare uid has none).
fn primary_group(uid: u32, passwd: &Path) -> io::Result<Option<u32>> {
    use std::io::Read;
    let mut text = Vec::new();
    File::open(passwd)?
        .take(MAX_PASSWD_LEN)
        .read_to_end(&mut text)?;
    Ok(String::from_utf8_lossy(&text).lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[..] {
            [_, _, u, g, ..] if u.parse() == Ok(uid) => g.parse().ok(),
            _ => None,
        }
    }))
}

/// The data dir, open.
#[derive(Debug)]
pub struct DataDir {
    fd: OwnedFd,
    path: PathBuf,
    owner: Owner,
    /// Whether `owner.gid` is the account's own group (from /etc/passwd)
    /// rather than the dir's.
    own_group: bool,
}

impl DataDir {
    /// Open the data dir `path`. Whose word named it is for the caller to
    /// check against `owner()` (`RedisConf::check_authority`).
    pub fn open(path: &Path) -> Result<DataDir> {
        let failed = |e: io::Error| {
            Error::usage(format!(
                "cannot open Redis's data dir {}: {e}",
                path.display()
            ))
        };
        let canonical = fs::canonicalize(path).map_err(failed)?;
        let fd = open_dir_path(&canonical).map_err(failed)?;
        let stat = rfs::fstat(&fd).map_err(|e| failed(e.into()))?;
        let own_group = primary_group(stat.st_uid, Path::new("/etc/passwd")).map_err(failed)?;
        let owner = Owner {
            uid: stat.st_uid,
            gid: own_group.unwrap_or(stat.st_gid),
        };
        let mode = stat.st_mode & 0o7777;
        if mode & 0o002 != 0 {
            return Err(Error::usage(format!(
                "Redis's data dir {} is writable by every user (mode {mode:o}); make it Redis's alone (chmod 750)",
                canonical.display()
            )));
        }
        Ok(DataDir {
            fd,
            path: canonical,
            owner,
            own_group: own_group.is_some(),
        })
    }

    /// For work done as the owner (a restore's files and private server):
    /// its own group must be known, for the dir's may be one the account
    /// is not in. A backup needs no group and goes on without.
    pub fn require_own_group(&self) -> Result<()> {
        match self.own_group {
            true => Ok(()),
            false => Err(Error::usage(format!(
                "the owner of Redis's data dir {}, uid {}, has no line in /etc/passwd: a restore works as that account with its own group, and cannot tell which group that is",
                self.path.display(),
                self.owner.uid
            ))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn owner(&self) -> Owner {
        self.owner
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `name` inside the dir, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether an entry `name` (of any kind, a symlink too) is there.
    pub fn has(&self, name: &str) -> bool {
        entry_exists(self.fd(), name)
    }

    /// The size of the regular file `name` (a link is not followed); 0 if
    /// there is none.
    pub fn file_size(&self, name: &str) -> u64 {
        match rfs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {
                stat.st_size as u64
            }
            _ => 0,
        }
    }

    /// Let the kernel drop the cached pages of `name`, if it is a file Redis
    /// could have written there (`open_dump`'s checks: the account may have
    /// put anything under the name, a link to another's file among them).
    /// Advice only: nothing is read, and nothing can fail.
    pub fn forget_cached(&self, name: &str) {
        if let Ok(dump) = self.open_dump(name) {
            crate::fs::cache::forget_all(&dump);
        }
    }

    /// Make renames and unlinks in the dir durable.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rfs::fsync(&self.fd)?)
    }

    /// The dump Redis just wrote, opened for reading only if it is what
    /// Redis would have written: a regular file (not a symlink, FIFO or
    /// device), owned by the dir's owner, with no other name. It is found
    /// without being opened (`O_PATH`) and opened only once checked, so a
    /// device put under its name is never opened.
    pub fn open_dump(&self, name: &str) -> Result<File> {
        let path = self.join(name);
        let cannot_open = |e: String| {
            Error::other(format!(
                "Redis finished saving but its dump {} cannot be opened: {e}",
                path.display()
            ))
        };
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let found = rfs::openat(self.fd(), name, flags, Mode::empty())
            .map_err(|e| cannot_open(io::Error::from(e).to_string()))?;
        let stat = rfs::fstat(&found)
            .map_err(|e| Error::other(format!("cannot stat {}: {e}", path.display())))?;
        let refuse = |why: String| {
            Err(Error::other(format!(
                "the dump {} {why}: it is not a file Redis wrote; nothing was stored",
                path.display()
            )))
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return refuse("is a symbolic link".into()),
            _ => return refuse("is not a regular file".into()),
        }
        if stat.st_uid != self.owner.uid {
            return refuse(format!(
                "belongs to uid {}, not to the data dir's owner (uid {})",
                stat.st_uid, self.owner.uid
            ));
        }
        if stat.st_nlink != 1 {
            return refuse(format!(
                "has {} names (hard links), where Redis writes one",
                stat.st_nlink
            ));
        }
        crate::fs::open_if_regular(&found).map_err(|e| cannot_open(e.to_string()))
    }

    /// Which file `name` is now (not following a link).
    pub fn identity_of(&self, name: &str) -> io::Result<FileIdentity> {
        let stat = rfs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(FileIdentity::of_stat(&stat))
    }

    /// Remove `name` only if it is still the very file whose `identity` was
    /// taken when it was opened: a file put there since is not ours to
    /// delete. Returns whether it was removed.
    pub fn remove_if_same(&self, name: &str, identity: FileIdentity) -> io::Result<bool> {
        let there = match rfs::statat(self.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if FileIdentity::of_stat(&there) != identity {
            return Ok(false);
        }
        // Between that look and an unlink of the name, a save (Redis's own,
        // an operator's SAVE) may rename a new dump in: what is there is
        // taken aside first, under a name of ours, and looked at there.
        let aside = UNKEPT_ASIDE;
        match move_entry(self.fd(), name, self.fd(), aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        let taken = rfs::statat(self.fd(), aside, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileIdentity::of_stat(&taken) == identity {
            rfs::unlinkat(self.fd(), aside, AtFlags::empty())?;
            return Ok(true);
        }
        // A newer dump: back under its name, unless a newer still is there
        // (which Redis's own rename would have put over it).
        match move_entry(self.fd(), aside, self.fd(), name) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                rfs::unlinkat(self.fd(), aside, AtFlags::empty())?;
            }
            moved => moved?,
        }
        Ok(false)
    }

    /// What a run killed inside `remove_if_same` left taken aside goes:
    /// left, nothing would look at it again, and it would keep a copy of
    /// the data set in the data dir for good. It is the dump that was being
    /// removed, unless a save landed just before the move and the kill just
    /// after it (a newer dump on its way back: lost then, as it would have
    /// been before 7afa657).
    pub fn remove_taken_aside(&self) {
        let _ = rfs::unlinkat(self.fd(), UNKEPT_ASIDE, AtFlags::empty());
    }

    /// Remove a dump we made or placed for a Redis that keeps nothing on
    /// disk (`remove_if_same`), lasting (the folder synced), and say so:
    /// left, its next start would load it. A failure is only said, with
    /// the advice to remove it: the run's own work is done.
    pub fn remove_unkept_dump(&self, name: &str, identity: FileIdentity, why: &str) {
        let path = self.join(name);
        match self.remove_if_same(name, identity) {
            Ok(true) => {
                let _ = self.sync();
                log::info!("removed {}: {why}", path.display());
            }
            Ok(false) => {}
            Err(e) => log::warn!(
                "{} stays ({e}): {why}, and would load it at its next start; remove it",
                path.display()
            ),
        }
    }
}

/// Device and inode: which file an open descriptor or a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    /// As root's notes keep it: "DEV INO".
    pub fn to_text(self) -> String {
        format!("{} {}", self.dev, self.ino)
    }

    pub fn from_text(text: &str) -> Option<FileIdentity> {
        let (dev, ino) = text.trim().split_once(' ')?;
        Some(FileIdentity {
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
        })
    }

    pub fn of(file: &File) -> io::Result<FileIdentity> {
        Ok(FileIdentity::of_stat(&rfs::fstat(file)?))
    }

    fn of_stat(stat: &rfs::Stat) -> FileIdentity {
        FileIdentity {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }
}

/// A name Redis keeps in its data dir (`dbfilename`, `appenddirname`,
/// `appendfilename`) must be a plain file name: `../x` or `a/b` would reach
/// outside the dir.
pub fn plain_name<'a>(setting: &str, name: &'a str) -> Result<&'a str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::usage(format!(
            "Redis's {setting} is {name:?}, which is not a plain file name inside its data dir; refusing to act on it"
        )));
    }
    Ok(name)
}

/// Open the absolute, canonical `path` one component at a time, none of them
/// followed if it is a symlink: a component swapped for a link after the
/// path was resolved makes the open fail instead of leading elsewhere.
fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let mut dir = open_dir(CWD, "/")?;
    for part in path.components() {
        if let std::path::Component::Normal(name) = part {
            dir = open_dir(&dir, name)?;
        }
    }
    Ok(dir)
}

/// Open the directory `name` in `at` without following a symlink.
pub fn open_dir<P: rustix::path::Arg>(at: impl AsFd, name: P) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rfs::openat(at, name, flags, Mode::empty())?)
}

/// Create the directory `name` in `at`, mode 0700, and open it. It must then
/// be ours (our uid) and empty: anything else means someone raced us to the
/// name, and the caller must not work in it.
pub fn create_private_dir(at: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    rfs::mkdirat(at, name, Mode::from_raw_mode(0o700))?;
    let fd = open_dir(at, name)?;
    let stat = rfs::fstat(&fd)?;
    if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{name} was replaced by someone else's directory"
        )));
    }
    if !is_empty(fd.as_fd())? {
        return Err(io::Error::other(format!(
            "{name} was replaced by a directory that is not empty"
        )));
    }
    Ok(fd)
}

/// A directory of root's, 0700, made fresh as `name` in `parent` (a random
/// name in a sticky temporary dir: nobody can plant it in advance, rename it
/// or replace it), worked in through its descriptor, and removed with all
/// it holds when dropped. It is locked (`flock`) from before anything is
/// put in it until its descriptor closes, which a killed run's does too:
/// that is how `sweep_abandoned` tells a killed run's from a live one's.
pub struct PrivateDir {
    path: PathBuf,
    fd: OwnedFd,
    removal: Removal,
}

/// How much of what a private directory holds root removes with it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Removal {
    /// Everything: nobody but root (and an account of root's making) could
    /// put anything there.
    Whole,
    /// Only what is directly in it, never a folder's contents: another
    /// account may write in it, and could move in a folder of its own with
    /// root's folders inside (a restore's kept previous data), which root
    /// would then delete.
    Flat,
}

impl PrivateDir {
    pub fn create(parent: &Path, name: &str, removal: Removal) -> io::Result<PrivateDir> {
        let at = open_dir(CWD, parent)?;
        let fd = create_private_dir(at.as_fd(), name)?;
        rfs::flock(&fd, rfs::FlockOperation::LockExclusive)?;
        Ok(PrivateDir {
            path: parent.join(name),
            fd,
            removal,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = empty(self.fd.as_fd(), self.removal);
        let _ = fs::remove_dir(&self.path);
    }
}

/// Remove what `dir` holds, as `removal` allows.
fn empty(dir: BorrowedFd<'_>, removal: Removal) -> io::Result<()> {
    match removal {
        Removal::Whole => remove_contents(dir),
        // Name by name, going on past one that cannot go (the account may
        // swap a name for a folder in between): what stays stays.
        Removal::Flat => for_each_name(dir, |name| {
            let file = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) != FileType::Directory);
            if file {
                let _ = rfs::unlinkat(dir, name, AtFlags::empty());
            }
            Ok(())
        }),
    }
}

/// Remove the private directories (`PrivateDir`) named `prefix…` in
/// `parent` that runs killed before they could remove them left: a
/// replay's holds a whole dataset. Taken are only directories of ours
/// (not links) that nobody holds locked and that are not empty, or empty
/// and older than `EMPTY_FOR` (a server killed with its run removes its
/// socket as it ends, and leaves the folder empty); a younger empty one
/// may be a live run's between its `mkdir` and its lock. Others' entries
/// under such names are passed over. What they hold is removed as
/// `removal` allows (as their own runs would have). Housekeeping: what
/// cannot be removed is a warning, and the caller goes on.
pub fn sweep_abandoned(parent: &Path, prefix: &str, removal: Removal) {
    let ours = rustix::process::geteuid().as_raw();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let long_empty = |dir: BorrowedFd<'_>| {
        rfs::fstat(dir).is_ok_and(|stat| now - stat.st_mtime > EMPTY_FOR.as_secs() as i64)
    };
    let swept = open_dir(CWD, parent).and_then(|at| {
        for_each_name(at.as_fd(), |name| {
            if !name.to_bytes().starts_with(prefix.as_bytes()) {
                return Ok(());
            }
            let Ok(dir) = open_dir(at.as_fd(), name) else {
                return Ok(());
            };
            let abandoned = rfs::fstat(&dir).is_ok_and(|stat| stat.st_uid == ours)
                && rfs::flock(&dir, rfs::FlockOperation::NonBlockingLockExclusive).is_ok()
                && is_empty(dir.as_fd()).is_ok_and(|empty| !empty || long_empty(dir.as_fd()));
            if abandoned {
                let gone = empty(dir.as_fd(), removal)
                    .and_then(|()| Ok(rfs::unlinkat(at.as_fd(), name, AtFlags::REMOVEDIR)?));
                match gone {
                    Ok(()) => log::info!(
                        "removed {}, left by a run that was killed",
                        parent.join(display_name(name)).display()
                    ),
                    Err(e) => log::warn!(
                        "cannot remove {}, left by a run that was killed: {e}",
                        parent.join(display_name(name)).display()
                    ),
                }
            }
            Ok(())
        })
    });
    if let Err(e) = swept {
        log::warn!(
            "cannot look for folders killed runs left in {}: {e}",
            parent.display()
        );
    }
}

/// How long an empty private directory may be a live run's, between its
/// `mkdir` and its lock (microseconds, in truth).
const EMPTY_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether `name` exists in `at` (a symlink counts, and is not followed).
pub fn entry_exists(at: BorrowedFd<'_>, name: &str) -> bool {
    rfs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// The name `remove_if_same` takes a dump aside under: one name, so that
/// the next run finds what a kill left there. (The redis account, which
/// can list the data dir, sees any name; NOREPLACE refuses one it put.)
const UNKEPT_ASIDE: &str = ".redis-backup-unkept";

/// Move `from` in `from_dir` to `to` in `to_dir`, never replacing what is
/// at `to`.
pub fn move_entry(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
) -> io::Result<()> {
    Ok(rfs::renameat_with(
        from_dir,
        from,
        to_dir,
        to,
        RenameFlags::NOREPLACE,
    )?)
}

/// Call `each` with every name in a directory but `.` and `..`, as it is
/// read. The redis account can put any number of names in the directories
/// root walks (the data dir, `appendonlydir`, `aof/`); none is kept, so what
/// root holds does not grow with them. `each` may remove the name it is
/// given: Linux's file systems go on from where the reading was.
pub fn for_each_name(
    dir: BorrowedFd<'_>,
    mut each: impl FnMut(&CStr) -> io::Result<()>,
) -> io::Result<()> {
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            each(name)?;
        }
    }
    Ok(())
}

/// Whether a directory holds nothing, read no further than its first name.
pub fn is_empty(dir: BorrowedFd<'_>) -> io::Result<bool> {
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        if entry.file_name() != c"." && entry.file_name() != c".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A name from a directory, for a message (it may not be UTF-8).
pub fn display_name(name: &CStr) -> String {
    String::from_utf8_lossy(name.to_bytes()).into_owned()
}

/// Directories a removal goes down, at most. Ours and Redis's are shallow
/// (a work folder holds `previous/appendonlydir/` and its files); a tree
/// deeper than this was made by someone else, who must not choose how deep
/// root recurses (one stack frame and two descriptors per level).
const MAX_TREE_DEPTH: usize = 32;

/// Remove `name` from `at` and, if it is a directory, everything under it,
/// without ever following a symlink: links are removed, not their targets.
/// With an `owner`, every directory under `name` must be that uid's (see
/// `remove_levels`). A tree more than `MAX_TREE_DEPTH` directories deep is
/// an error, and what was not removed stays.
pub fn remove_tree(at: BorrowedFd<'_>, name: &str, owner: Option<u32>) -> io::Result<()> {
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    remove_levels(at, &name, MAX_TREE_DEPTH, owner)
}

/// Remove everything in the directory `dir`, but not the directory itself.
pub fn remove_contents(dir: BorrowedFd<'_>) -> io::Result<()> {
    remove_contents_but(dir, None, None)
}

/// The same, but for the entry named `kept`, if given, and with every
/// directory under the entries `owner`'s, if given.
pub fn remove_contents_but(
    dir: BorrowedFd<'_>,
    kept: Option<&str>,
    owner: Option<u32>,
) -> io::Result<()> {
    remove_entries(dir, kept, MAX_TREE_DEPTH, owner)
}

/// Remove each entry of `dir` but `kept`, going on past one that cannot
/// go (a folder left in place): all else goes, and the first failure is
/// the answer. Stopped at it, the previous dataset beside it stayed for
/// good, every later restore trying again.
fn remove_entries(
    dir: BorrowedFd<'_>,
    kept: Option<&str>,
    levels: usize,
    owner: Option<u32>,
) -> io::Result<()> {
    let mut failed = None;
    for_each_name(dir, |name| {
        if Some(name.to_bytes()) != kept.map(str::as_bytes) {
            if let Err(e) = remove_levels(dir, name, levels, owner) {
                failed.get_or_insert(e);
            }
        }
        Ok(())
    })?;
    failed.map_or(Ok(()), Err)
}

/// `name` itself is the caller's to vouch for (an entry of a folder of
/// root's). Under it, a tree of the data dir owner's may hold a folder of
/// anybody's that the owner could rename, root's too (one a restore kept),
/// moved in at any time, even through a descriptor it kept: so with an
/// `owner`, each directory is checked as it is opened, and one of anyone
/// else's is left in place, with what holds it (the rest goes). Files go
/// all the same: the owner could remove them itself.
fn remove_levels(
    at: BorrowedFd<'_>,
    name: &CStr,
    levels: usize,
    owner: Option<u32>,
) -> io::Result<()> {
    let stat = rfs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Ok(rfs::unlinkat(at, name, AtFlags::empty())?);
    }
    let Some(below) = levels.checked_sub(1) else {
        return Err(io::Error::other(format!(
            "{} is more than {MAX_TREE_DEPTH} directories down: not a tree of ours or Redis's, left in place",
            display_name(name)
        )));
    };
    let dir = open_dir(at, name)?;
    if let Some(uid) = owner.filter(|_| levels < MAX_TREE_DEPTH) {
        if rfs::fstat(&dir)?.st_uid != uid {
            return Err(io::Error::other(format!(
                "{} is a folder not of the data dir owner's, so not Redis's: left in place",
                display_name(name)
            )));
        }
    }
    remove_entries(dir.as_fd(), None, below, owner)?;
    Ok(rfs::unlinkat(at, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private folder another account may write in (a socket's) is
    /// emptied of what is directly in it, never of a folder's contents:
    /// the account could have moved in a folder of its own holding root's.
    #[test]
    fn a_flat_private_folder_keeps_the_folders_moved_into_it() {
        let base = std::env::temp_dir().join(format!("rb-flat-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let plant = |dir: &Path| {
            fs::create_dir_all(dir.join("moved/roots")).unwrap();
            fs::write(dir.join("moved/roots/kept"), b"x").unwrap();
            fs::write(dir.join("redis.sock"), b"").unwrap();
        };
        let live = PrivateDir::create(&base, "rb-f-live", Removal::Flat).unwrap();
        plant(live.path());
        drop(live);
        assert!(base.join("rb-f-live/moved/roots/kept").exists());
        assert!(!base.join("rb-f-live/redis.sock").exists());

        fs::create_dir(base.join("rb-f-killed")).unwrap();
        plant(&base.join("rb-f-killed"));
        sweep_abandoned(&base, "rb-f-", Removal::Flat);
        assert!(base.join("rb-f-killed/moved/roots/kept").exists());
        assert!(!base.join("rb-f-killed/redis.sock").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn only_unlocked_folders_of_ours_with_something_in_them_or_long_empty_are_swept() {
        let base = std::env::temp_dir().join(format!("rb-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let live = PrivateDir::create(&base, "rb-x-live", Removal::Whole).unwrap();
        fs::write(live.path().join("f"), b"x").unwrap();
        for (name, owner) in [("rb-x-killed", 0), ("rb-x-others", 65534), ("other-x", 0)] {
            fs::create_dir_all(base.join(name).join("sub")).unwrap();
            fs::write(base.join(name).join("sub/f"), b"x").unwrap();
            std::os::unix::fs::chown(base.join(name), Some(owner), None).unwrap();
        }
        fs::create_dir(base.join("rb-x-empty")).unwrap();
        // Emptied by a server that removed its socket as it ended, long ago.
        fs::create_dir(base.join("rb-x-emptied")).unwrap();
        let long_ago = std::time::SystemTime::now() - EMPTY_FOR - std::time::Duration::from_secs(5);
        fs::File::open(base.join("rb-x-emptied"))
            .and_then(|dir| dir.set_modified(long_ago))
            .unwrap();
        std::os::unix::fs::symlink(base.join("other-x"), base.join("rb-x-link")).unwrap();

        sweep_abandoned(&base, "rb-x-", Removal::Whole);
        let left: std::collections::BTreeSet<String> = fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            [
                "other-x",
                "rb-x-empty",
                "rb-x-link",
                "rb-x-live",
                "rb-x-others"
            ]
            .map(String::from)
            .into()
        );
        assert!(live.path().join("f").exists());
        assert!(base.join("other-x/sub/f").exists());
        drop(live);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_path_is_opened_without_following_any_link_in_it() {
        let base = std::env::temp_dir().join(format!("rb-datadir-w-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("real/data")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        let canonical = fs::canonicalize(&base).unwrap();
        assert!(open_dir_path(&canonical.join("real/data")).is_ok());
        assert!(open_dir_path(&canonical.join("link/data")).is_err());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_owner_has_its_own_group_from_passwd() {
        let passwd = std::env::temp_dir().join(format!("rb-passwd-{}", std::process::id()));
        fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/bash\nbroken\nredis:x:102:110::/var/lib/redis:/usr/sbin/nologin\n",
        )
        .unwrap();
        assert_eq!(primary_group(102, &passwd).unwrap(), Some(110));
        assert_eq!(primary_group(0, &passwd).unwrap(), Some(0));
        assert_eq!(primary_group(4242, &passwd).unwrap(), None);
        fs::remove_file(&passwd).unwrap();
    }

    #[test]
    fn an_owner_with_no_passwd_line_may_be_backed_up_not_restored_into() {
        let base = crate::testing::scratch_dir("datadir-nss");
        // A uid no /etc/passwd names (an LDAP account, a bare container uid).
        std::os::unix::fs::chown(&base, Some(4_000_042), Some(4_000_042)).unwrap();
        let data = DataDir::open(&base).unwrap();
        assert_eq!(data.owner().uid, 4_000_042);
        let err = data.require_own_group().unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("no line in /etc/passwd"), "{err}");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_dump_is_opened_only_once_known_to_be_a_file_redis_wrote() {
        let base = crate::testing::scratch_dir("datadir-dump");
        let data = DataDir::open(&base).unwrap();
        fs::write(base.join("dump.rdb"), b"REDIS0011").unwrap();
        assert!(data.open_dump("dump.rdb").is_ok());
        let refused = |name: &str, why: &str| {
            let err = data.open_dump(name).unwrap_err();
            assert!(err.to_string().contains(why), "{name}: {err}");
        };
        std::os::unix::fs::symlink(base.join("dump.rdb"), base.join("link.rdb")).unwrap();
        refused("link.rdb", "is a symbolic link");
        fs::hard_link(base.join("dump.rdb"), base.join("second.rdb")).unwrap();
        refused("second.rdb", "has 2 names");
        // A FIFO is refused without being opened: a writer waiting on it
        // stays waiting (an open for reading would let it through).
        let fifo = base.join("fifo.rdb");
        crate::testing::make_fifo(&fifo);
        let writer_opened = crate::testing::writer_waiting_on(&fifo);
        refused("fifo.rdb", "is not a regular file");
        data.forget_cached("fifo.rdb");
        let during = writer_opened.recv_timeout(std::time::Duration::from_millis(300));
        assert!(during.is_err(), "the FIFO was opened");
        let _release = fs::File::open(&fifo).unwrap();
        assert!(
            writer_opened.recv().unwrap(),
            "the writer opened it in the end"
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn only_plain_names_are_accepted() {
        assert!(plain_name("dbfilename", "dump.rdb").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd"] {
            let err = plain_name("dbfilename", bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn remove_tree_stops_at_a_depth_no_tree_of_ours_reaches() {
        let base = std::env::temp_dir().join(format!("rb-datadir-deep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let chain = |top: &str, levels: usize| {
            let mut path = base.join(top);
            for _ in 0..levels {
                path = path.join("d");
            }
            fs::create_dir_all(&path).unwrap();
            fs::write(path.join("f"), b"bottom").unwrap();
        };
        chain("shallow", MAX_TREE_DEPTH - 1);
        chain("deep", MAX_TREE_DEPTH + 8);
        let at = open_dir_path(&base).unwrap();
        remove_tree(at.as_fd(), "shallow", None).unwrap();
        assert!(!base.join("shallow").exists());
        let err = remove_tree(at.as_fd(), "deep", None).unwrap_err();
        assert!(err.to_string().contains("left in place"), "{err}");
        assert!(base.join("deep/d").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    /// A folder of root's that the owner moved into its own, at any depth
    /// of the tree, stops the removal and stays whole; the top (root's,
    /// like `previous/`) is the caller's.
    #[test]
    fn remove_tree_of_an_owner_stops_at_a_folder_of_anyone_else() {
        let base = crate::testing::scratch_dir("datadir-owner");
        fs::create_dir_all(base.join("tree/theirs/deeper/roots")).unwrap();
        fs::write(base.join("tree/theirs/deeper/roots/kept"), b"kept").unwrap();
        for dir in ["tree/theirs", "tree/theirs/deeper"] {
            std::os::unix::fs::chown(base.join(dir), Some(65534), None).unwrap();
        }
        let at = open_dir(CWD, &base).unwrap();
        let err = remove_tree(at.as_fd(), "tree", Some(65534)).unwrap_err();
        assert!(
            err.to_string()
                .contains("roots is a folder not of the data dir owner's"),
            "{err}"
        );
        assert_eq!(
            fs::read(base.join("tree/theirs/deeper/roots/kept")).unwrap(),
            b"kept"
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn remove_tree_removes_names_that_are_not_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let base = std::env::temp_dir().join(format!("rb-datadir-u-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("tree")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"odd-\xff-name");
        fs::write(base.join("tree").join(odd), b"x").unwrap();
        let at = open_dir(CWD, &base).unwrap();
        let tree = open_dir(at.as_fd(), "tree").unwrap();
        assert!(!is_empty(tree.as_fd()).unwrap());
        remove_contents(tree.as_fd()).unwrap();
        assert!(is_empty(tree.as_fd()).unwrap());
        fs::write(base.join("tree").join(odd), b"x").unwrap();
        remove_tree(at.as_fd(), "tree", None).unwrap();
        assert!(!base.join("tree").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn remove_tree_removes_links_not_their_targets() {
        let base = std::env::temp_dir().join(format!("rb-datadir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("tree/sub")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/keep"), b"keep").unwrap();
        fs::write(base.join("tree/sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink(base.join("outside"), base.join("tree/link")).unwrap();
        std::os::unix::fs::symlink(base.join("outside/keep"), base.join("tree/sub/l")).unwrap();
        let at = open_dir(CWD, &base).unwrap();
        remove_tree(at.as_fd(), "tree", None).unwrap();
        assert!(!base.join("tree").exists());
        assert_eq!(fs::read(base.join("outside/keep")).unwrap(), b"keep");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_private_dir_is_made_once_and_moves_never_replace() {
        let base = crate::testing::scratch_dir("datadir-p");
        let at = open_dir(CWD, &base).unwrap();
        let work = create_private_dir(at.as_fd(), "work").unwrap();
        assert!(create_private_dir(at.as_fd(), "work").is_err(), "exists");
        fs::write(base.join("a"), b"a").unwrap();
        fs::write(base.join("work/a"), b"other").unwrap();
        assert!(move_entry(at.as_fd(), "a", work.as_fd(), "a").is_err());
        assert_eq!(fs::read(base.join("work/a")).unwrap(), b"other");
        move_entry(at.as_fd(), "a", work.as_fd(), "b").unwrap();
        let mut names = 0;
        for_each_name(work.as_fd(), |_| {
            names += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(names, 2);
        fs::remove_dir_all(&base).unwrap();
    }
}
