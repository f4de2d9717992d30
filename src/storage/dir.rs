//! Local-directory storage (`file:///DIR`): `ID.rbk` holds the object and
//! `ID.json` the record. Both are written to a temporary file, fsynced and
//! renamed into place, with the directory fsynced after, so a crash leaves
//! either the old state or the new one, never half a backup under its name.
//! A backup never fills the disk it is written to: it stops (exit 4) while a
//! little of it is still free for Redis and the rest of the host.

use super::{
    already_exists, not_found, ObjectWriter, Storage, MAX_LISTED_NAMES, MAX_RECORD_SIZE,
    OBJECT_SUFFIX, RECORD_SUFFIX,
};
use crate::error::{Error, Result};
use crate::fs::cache::ReadOnce;
use crate::fs::room::{Room, Short};
use crate::fs::{create_private_dir, fsync_dir, AtomicFile};
use crate::id::BackupId;
use crate::units::human_size;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn out_of_space(dir: &Path, short: Short) -> String {
    format!(
        "only {} of space left in {} and {} of it stays free for Redis and the host; \
         free some space or store backups elsewhere",
        human_size(short.available),
        dir.display(),
        human_size(short.reserve)
    )
}

/// Take `name` out of `dir`: unlinked, or, if it is a folder (another
/// writer of a shared directory planted it), renamed to a hidden name of its
/// own. Root does not empty a folder that is not its own, and the name is
/// free either way: an archiver needs exactly this one for its next chunk.
fn remove_or_move_aside(dir: &Pinned, name: &str) -> io::Result<()> {
    match rustix::fs::unlinkat(&dir.fd, name, AtFlags::empty()) {
        Err(rustix::io::Errno::ISDIR) => {}
        other => return other.map_err(io::Error::from),
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let aside = format!(".not-ours-{}-{nanos}-{name}", std::process::id());
    rustix::fs::renameat(&dir.fd, name, &dir.fd, aside.as_str())?;
    log::warn!("{name} was a folder, not a file of ours; moved aside as {aside}");
    Ok(())
}

/// Unlink `name` in `dir` if it is a regular file nobody holds a lock on.
/// It is found without being opened (`O_PATH`), and opened, to take its
/// lock, only once it is known to be a regular file (`open_if_regular`): a
/// device planted under the name is never opened, a FIFO never waited on.
/// How old an object with no record must be before a backup removes it:
/// its own backup writes the record right after it, so far sooner.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// Remove from `dir` the objects (`ID.rbk`) with no record whose inode
/// changed last longer ago than `older_than`: nothing lists them, and a
/// whole one is as large as a backup. The change time, not the
/// modification time: `cp -a` or `rsync -a` of backups into the directory
/// keeps the old mtime of an object whose record is not copied yet, while
/// its ctime is the copy's (and nobody can set a ctime). As in
/// `fs::remove_dead_temps`, each name is found without following a link and
/// only a regular file is removed.
fn remove_orphan_objects(dir: &OwnedFd, older_than: Duration) -> Vec<String> {
    // `dir` only names the directory (`O_PATH`): the listing needs it open.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(entries) =
        rustix::fs::openat(dir, c".", flags, Mode::empty()).and_then(rustix::fs::Dir::read_from)
    else {
        return Vec::new();
    };
    let old_enough = |stat: &rustix::fs::Stat| {
        let changed = std::time::UNIX_EPOCH + Duration::from_secs(stat.st_ctime.max(0) as u64);
        changed.elapsed().is_ok_and(|age| age >= older_than)
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .ok()
            .and_then(|n| n.strip_suffix(OBJECT_SUFFIX))
        else {
            continue;
        };
        if BackupId::parse(stem).is_err() {
            continue;
        }
        // Only a record known to be absent makes an orphan: any other
        // failure to look (EIO or ESTALE from a share, a soft mount timing
        // out) says nothing, and the object may be a good backup's.
        match rustix::fs::statat(
            dir,
            format!("{stem}{RECORD_SUFFIX}"),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Err(rustix::io::Errno::NOENT) => {}
            _ => continue,
        }
        let orphan = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|stat| {
            rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile
                && old_enough(&stat)
        });
        if orphan && rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok() {
            removed.push(stem.to_string() + OBJECT_SUFFIX);
        }
    }
    removed
}

/// The archive's chunks: a directory inside the storage directory.
const ARCHIVE_DIR: &str = "archive";

/// `Storage::patience` of a directory: what Swift's is with the default
/// `storage_timeout`.
const DIR_PATIENCE: Duration = Duration::from_secs(240);

pub struct DirStorage {
    dir: PathBuf,
    /// A directory inside the storage directory (`archive`), which must
    /// never be a symlink (see `pin`).
    inside: bool,
}

/// The storage directory as one operation sees it: opened once, without
/// being read (`O_PATH`), and every name then looked up in that very
/// directory through `/proc/self/fd/N/NAME`. Another writer of a shared
/// directory may swap `archive` for a link at any moment; the directory
/// checked is the one used, whatever its name leads to by then.
struct Pinned {
    /// Kept open for as long as `path` is used.
    fd: OwnedFd,
    path: PathBuf,
}

impl Pinned {
    fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl DirStorage {
    /// The IDs that have a record, and if `with_times` when each record
    /// was last modified (seconds since the epoch). `fstatat` of the entry,
    /// never following a link: a name planted as one gives the link's.
    fn records(&self, with_times: bool) -> Result<Vec<(BackupId, Option<u64>)>> {
        let Some(dir) = self.pin()? else {
            // A typo in `storage` must not read as "no backups" at 3 a.m.
            if !self.inside {
                log::warn!(
                    "{} does not exist (yet): no backups are there",
                    self.dir.display()
                );
            }
            return Ok(Vec::new());
        };
        let entries =
            fs::read_dir(&dir.path).map_err(|e| self.failed("cannot list", &self.dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.failed("cannot list", &self.dir, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(RECORD_SUFFIX)) else {
                continue;
            };
            // Temporary files start with '.', which no ID does.
            let Ok(id) = BackupId::parse(stem) else {
                continue;
            };
            let modified = with_times
                .then(|| entry.metadata().ok()?.modified().ok())
                .flatten()
                .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok());
            ids.push((id, modified.map(|since| since.as_secs())));
            if ids.len() > MAX_LISTED_NAMES {
                return Err(Error::storage(format!(
                    "more than {MAX_LISTED_NAMES} records are in {}: not this tool's doing; whoever else writes there is misbehaving",
                    self.dir.display()
                )));
            }
        }
        Ok(ids)
    }

    pub fn new(dir: PathBuf) -> DirStorage {
        DirStorage { dir, inside: false }
    }

    /// The directory, pinned for one operation (`None` if it does not
    /// exist). A directory made inside the storage directory is ours to
    /// make, so it is never a symlink: another writer of a shared (NFS)
    /// directory could point `archive` at /etc, and chunks would be
    /// written, listed and deleted there. (The storage directory itself is
    /// the administrator's choice and may be a link.)
    fn pin(&self) -> Result<Option<Pinned>> {
        let mut flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if self.inside {
            flags |= OFlags::NOFOLLOW;
        }
        match rustix::fs::open(&self.dir, flags, Mode::empty()) {
            Ok(fd) => {
                use std::os::fd::AsRawFd;
                if !self.inside {
                    self.check_nobody_else_may_replace()?;
                }
                let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                Ok(Some(Pinned { fd, path }))
            }
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(_) if self.inside && self.is_link() => Err(Error::storage(format!(
                "{} is a symbolic link, not the directory this tool makes there; remove it",
                self.dir.display()
            ))),
            Err(e) => Err(self.failed("cannot open", &self.dir, e.into())),
        }
    }

    /// Reached through a folder another account may write in (a share of
    /// theirs, a home), on the way or where a link on the way leads, the
    /// directory is theirs to swap for a link to any of root's, which root
    /// would then fill, sweep and delete in: refused, whatever the command.
    fn check_nobody_else_may_replace(&self) -> Result<()> {
        let us = rustix::process::geteuid().as_raw();
        let folder = crate::fs::writers::folder_of_others(&self.dir, us)
            .map_err(|e| self.failed("cannot check who may write beside", &self.dir, e))?;
        match folder {
            Some(folder) if !folder.writers.only_root_or(us) => Err(Error::usage(format!(
                "backup directory {} can be replaced by others ({}): use one reached through folders only root may write in",
                self.dir.display(),
                folder.whoever_may_write()
            ))),
            _ => Ok(()),
        }
    }

    fn is_link(&self) -> bool {
        fs::symlink_metadata(&self.dir).is_ok_and(|meta| meta.file_type().is_symlink())
    }

    fn object_name(id: &BackupId) -> String {
        format!("{id}{OBJECT_SUFFIX}")
    }

    fn record_name(id: &BackupId) -> String {
        format!("{id}{RECORD_SUFFIX}")
    }

    /// Where a name is, as the operator knows it (for messages).
    fn shown(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn failed(&self, what: &str, path: &Path, err: io::Error) -> Error {
        Error::storage(format!("{what} {}: {err}", path.display()))
    }

    fn where_(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// The directory exists, durably, and only its owner may write in it: in a
    /// directory others can write to, they could plant files under our names.
    fn ensure_private_dir(&self) -> Result<Pinned> {
        let pinned = match self.pin()? {
            Some(pinned) => pinned,
            None => {
                create_private_dir(&self.dir)
                    .map_err(|e| self.failed("cannot create backup directory", &self.dir, e))?;
                if let Some(parent) = self.dir.parent() {
                    fsync_dir(parent).map_err(|e| self.failed("cannot sync", parent, e))?;
                }
                self.pin()?.ok_or_else(|| {
                    self.failed(
                        "cannot create backup directory",
                        &self.dir,
                        io::ErrorKind::NotFound.into(),
                    )
                })?
            }
        };
        let meta = rustix::fs::fstat(&pinned.fd)
            .map_err(|e| self.failed("cannot stat backup directory", &self.dir, e.into()))?;
        // Made in advance by another account (under a world-writable /tmp,
        // say), it would be theirs to fill and empty whatever its mode.
        let us = rustix::process::geteuid().as_raw();
        if meta.st_uid != us {
            return Err(Error::usage(format!(
                "backup directory {} belongs to uid {}, not to this user (uid {us}); use a directory of your own",
                self.dir.display(),
                meta.st_uid
            )));
        }
        let mode = meta.st_mode;
        if mode & 0o022 != 0 {
            return Err(Error::usage(format!(
                "backup directory {} has mode {:04o}: others could write in it; chmod 700 {}",
                self.dir.display(),
                mode & 0o7777,
                self.dir.display()
            )));
        }
        Ok(pinned)
    }

    /// `prepare`, keeping the directory it checked.
    fn prepared(&self, id: &BackupId) -> Result<Pinned> {
        let pinned = self.ensure_private_dir()?;
        let taken = |name: String| fs::symlink_metadata(pinned.join(&name)).is_ok();
        match (taken(Self::object_name(id)), taken(Self::record_name(id))) {
            (false, false) => {}
            (true, false) => {
                return Err(Error::usage(format!(
                    "an object of a backup named {id}, with no record, is in {}: a backup killed before it finished (`delete {id}` removes it; a backup removes it an hour after it was written); choose another --id",
                    self.where_()
                )))
            }
            _ => return Err(already_exists(id, &self.where_())),
        }
        let room = Room::keeping(0)
            .check(pinned.fd.as_fd(), 0)
            .map_err(|e| self.failed("cannot read the free space of", &self.dir, e))?;
        if let Err(short) = room {
            return Err(Error::storage(out_of_space(&self.dir, short)));
        }
        Ok(pinned)
    }

    /// A regular file of the directory, opened to read. Found without
    /// following a link (another writer of a shared directory could plant
    /// one to a file of this host) and opened only once known to be a
    /// regular file (`open_if_regular`).
    fn open_file(&self, id: &BackupId, name: &str) -> Result<fs::File> {
        let shown = self.shown(name);
        let Some(pinned) = self.pin()? else {
            return Err(not_found(id, &self.where_()));
        };
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let opened = rustix::fs::openat(&pinned.fd, name, flags, Mode::empty())
            .map_err(io::Error::from)
            .and_then(|found| crate::fs::open_if_regular(&found));
        match opened {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(id, &self.where_())),
            // Not ours, and it will not become ours by waiting.
            Err(e) if crate::fs::is_not_regular(&e) => Err(Error::integrity(format!(
                "{} is not a regular file: not a record or object of this tool; whoever can write the storage put it there",
                shown.display()
            ))),
            Err(e) => Err(self.failed("cannot open", &shown, e)),
        }
    }
}

struct DirObject {
    file: AtomicFile,
    written: u64,
    path: PathBuf,
    /// The directory it is written in (dropped after `file`, whose names
    /// go through it), its name for messages, and when (in bytes written)
    /// to look at its free space again.
    dir: Pinned,
    shown_dir: PathBuf,
    room: Room,
}

impl DirObject {
    fn check_space(&mut self, want: usize) -> io::Result<()> {
        self.room
            .check(self.dir.fd.as_fd(), want as u64)?
            .map_err(|short| {
                io::Error::new(
                    io::ErrorKind::StorageFull,
                    out_of_space(&self.shown_dir, short),
                )
            })
    }
}

impl Write for DirObject {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_space(buf.len())?;
        let n = self.file.write(buf)?;
        self.written += n as u64;
        self.room.wrote(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl ObjectWriter for DirObject {
    fn commit(self: Box<Self>, _metadata: &[(&str, String)]) -> Result<u64> {
        let DirObject {
            file,
            written,
            path,
            dir,
            ..
        } = *self;
        file.commit(true)
            .map_err(|e| Error::storage(format!("finishing {}: {e}", path.display())))?;
        drop(dir);
        Ok(written)
    }
}

impl Storage for DirStorage {
    fn location(&self, id: &BackupId) -> String {
        format!("file://{}", self.shown(&Self::object_name(id)).display())
    }

    /// The same directory, however its path was spelled when the record
    /// was written (a `.`, a doubled or trailing `/`, a link on the way),
    /// and the object's own name in it. The directory is what is compared,
    /// not the object: a link or a hard link planted under our name, to
    /// another storage's object or to a chunk's, is the same file but was
    /// not written here.
    fn is_location_of(&self, id: &BackupId, location: &str) -> bool {
        let Some(theirs) = location.strip_prefix("file://").map(Path::new) else {
            return false;
        };
        let name = Self::object_name(id);
        let ours = self.shown(&name);
        if theirs.components().eq(ours.components()) {
            return true;
        }
        let (Some(their_dir), Some(their_name)) = (theirs.parent(), theirs.file_name()) else {
            return false;
        };
        match (fs::metadata(their_dir), fs::metadata(&self.dir)) {
            (Ok(a), Ok(b)) if their_name == name.as_str() => {
                use std::os::unix::fs::MetadataExt;
                (a.dev(), a.ino()) == (b.dev(), b.ino())
            }
            _ => false,
        }
    }

    fn prepare(&self, id: &BackupId) -> Result<()> {
        self.prepared(id).map(drop)
    }

    fn create(&self, id: &BackupId) -> Result<Box<dyn ObjectWriter>> {
        let dir = self.prepared(id)?;
        for name in crate::fs::remove_dead_temps(&dir.path, "") {
            log::info!("removed {name}, left by a backup that was killed");
        }
        for name in remove_orphan_objects(&dir.fd, ORPHAN_AGE) {
            log::info!("removed {name}, an object with no record for over an hour: a backup killed before its record, or a prune or delete after removing it");
        }
        let name = Self::object_name(id);
        let path = self.shown(&name);
        let file = AtomicFile::create(&dir.join(&name))
            .map_err(|e| self.failed("cannot create", &path, e))?;
        Ok(Box::new(DirObject {
            file,
            written: 0,
            path,
            dir,
            shown_dir: self.dir.clone(),
            room: Room::keeping(0),
        }))
    }

    fn open(&self, id: &BackupId, offset: u64) -> Result<Box<dyn Read + Send>> {
        let path = self.shown(&Self::object_name(id));
        let mut file = self.open_file(id, &Self::object_name(id))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| self.failed("cannot seek in", &path, e))?;
        let object = ReadOnce::new(file).map_err(|e| self.failed("cannot seek in", &path, e))?;
        Ok(Box::new(object))
    }

    fn put_record(&self, id: &BackupId, json: &[u8]) -> Result<()> {
        let name = Self::record_name(id);
        let path = self.shown(&name);
        let dir = self
            .pin()?
            .ok_or_else(|| self.failed("cannot create", &path, io::ErrorKind::NotFound.into()))?;
        let mut file = AtomicFile::create(&dir.join(&name))
            .map_err(|e| self.failed("cannot create", &path, e))?;
        file.write_all(json)
            .and_then(|()| file.commit(true))
            .map_err(|e| self.failed("cannot write record", &path, e))
    }

    fn get_record(&self, id: &BackupId) -> Result<Vec<u8>> {
        let path = self.shown(&Self::record_name(id));
        let file = self.open_file(id, &Self::record_name(id))?;
        let mut json = Vec::new();
        file.take(MAX_RECORD_SIZE as u64 + 1)
            .read_to_end(&mut json)
            .map_err(|e| self.failed("cannot read", &path, e))?;
        if json.len() > MAX_RECORD_SIZE {
            return Err(Error::integrity(format!(
                "record {} is larger than {MAX_RECORD_SIZE} bytes; it is not a redis-backup record",
                path.display()
            )));
        }
        Ok(json)
    }

    /// A directory answers at once, or hangs where no patience helps; what
    /// it lists costs a read each, bounded by the names' 133 bytes.
    fn patience(&self) -> Duration {
        DIR_PATIENCE
    }

    fn archive(&self) -> Box<dyn Storage> {
        Box::new(DirStorage {
            dir: self.dir.join(ARCHIVE_DIR),
            inside: true,
        })
    }

    fn list(&self) -> Result<Vec<BackupId>> {
        let listed = self.records(false)?;
        Ok(listed.into_iter().map(|(id, _)| id).collect())
    }

    /// Each record's modification time: when it was put in place (a copy
    /// that keeps it, `cp -p` or rsync, keeps the original's).
    fn stored_at(&self) -> Result<BTreeMap<BackupId, u64>> {
        let listed = self.records(true)?;
        Ok(listed
            .into_iter()
            .filter_map(|(id, at)| Some((id, at?)))
            .collect())
    }

    fn delete(&self, id: &BackupId) -> Result<()> {
        let Some(dir) = self.pin()? else {
            return Err(not_found(id, &self.where_()));
        };
        // Each name is taken whatever is there (a link that leads nowhere
        // too): a name that stays blocks the next backup of that ID.
        let mut removed = [false; 2];
        for (name, removed) in [Self::record_name(id), Self::object_name(id)]
            .iter()
            .zip(&mut removed)
        {
            match remove_or_move_aside(&dir, name) {
                Ok(()) => *removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.failed("cannot remove", &self.shown(name), e)),
            }
        }
        match removed {
            [false, false] => return Err(not_found(id, &self.where_())),
            [false, true] => log::warn!("backup {id} had no record; removed its object only"),
            [true, false] => log::warn!("backup {id} had a record but no object"),
            [true, true] => {}
        }
        fsync_dir(&dir.path).map_err(|e| self.failed("cannot sync", &self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};

    fn storage(name: &str) -> (DirStorage, PathBuf) {
        let dir = std::env::temp_dir().join(format!("rb-dir-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        (DirStorage::new(dir.join("backups")), dir)
    }

    #[test]
    fn only_unlocked_temps_of_this_host_are_swept() {
        let (_, root) = storage("sweep");
        let dir = root.join("backups");
        crate::fs::create_private_dir(&dir).unwrap();
        // A live writer: its temp file is locked while it is open.
        let mut live = crate::fs::AtomicFile::create(&dir.join("live.rbk")).unwrap();
        live.write_all(b"x").unwrap();
        let prefix = crate::fs::temp_prefix();
        let names = [
            format!("{prefix}4242-dead.rbk"),
            ".tmp-some_other_host-4242-other.rbk".to_string(),
            "e.rbk".to_string(),
        ];
        for name in &names {
            fs::write(dir.join(name), b"x").unwrap();
        }
        let before = left_in(&dir);
        assert_eq!(
            crate::fs::remove_dead_temps(&dir, ""),
            vec![names[0].clone()]
        );
        let mut expected: Vec<String> = before.into_iter().filter(|n| *n != names[0]).collect();
        expected.sort();
        assert_eq!(left_in(&dir), expected);
        assert_eq!(expected.len(), 3, "the live temp, the other host's, e.rbk");
        // Once its writer is done (here: dropped uncommitted), it is gone.
        drop(live);
        assert_eq!(left_in(&dir), vec![names[1].clone(), names[2].clone()]);
        fs::remove_dir_all(&root).unwrap();
    }

    /// A backup killed between its object and its record (or a prune
    /// between the record and the object) leaves an object nothing lists:
    /// the next backup removes it once it is an hour old (by its ctime:
    /// an old mtime, as `cp -a` keeps, does not count), and a backup under
    /// its ID says what is in the way.
    #[test]
    fn objects_without_a_record_are_swept_once_old() {
        let (storage, root) = storage("orphans");
        let dir = root.join("backups");
        crate::fs::create_private_dir(&dir).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
        for name in [
            "20260101T000000Z-00000001.rbk",
            "20260101T000000Z-00000003.rbk",
            "20260101T000000Z-00000003.json",
            ".not-an-id.rbk",
        ] {
            fs::File::create(dir.join(name))
                .and_then(|f| f.set_modified(old))
                .unwrap();
        }
        let err = storage
            .create(&id("20260101T000000Z-00000001"))
            .err()
            .expect("in the way");
        assert!(err.message().contains("no record"), "{err}");
        // Copied in with its old mtime a moment ago: not an orphan yet.
        drop(storage.create(&id("20260101T000000Z-00000004")).unwrap());
        assert!(dir.join("20260101T000000Z-00000001.rbk").exists());
        let pinned = storage.pin().unwrap().expect("the directory");
        assert_eq!(
            remove_orphan_objects(&pinned.fd, Duration::ZERO),
            ["20260101T000000Z-00000001.rbk"]
        );
        assert_eq!(
            left_in(&dir),
            [
                ".not-an-id.rbk",
                "20260101T000000Z-00000003.json",
                "20260101T000000Z-00000003.rbk",
            ]
        );
        fs::remove_dir_all(&root).unwrap();
    }

    fn left_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn id(s: &str) -> BackupId {
        BackupId::parse(s).unwrap()
    }

    #[test]
    fn a_directory_of_more_records_than_a_listing_holds_is_refused() {
        let (store, root) = storage("many");
        store.prepare(&id("b0")).unwrap();
        let dir = root.join("backups");
        for i in 0..=MAX_LISTED_NAMES {
            fs::File::create(dir.join(format!("b{i}.json"))).unwrap();
        }
        let Err(err) = store.list() else {
            panic!("{} records listed", MAX_LISTED_NAMES + 1);
        };
        assert_eq!(err.exit_code(), 4, "{err}");
        assert!(err.to_string().contains("misbehaving"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn object_and_record_round_trip_and_listing() {
        let (store, root) = storage("rt");
        assert!(
            store.list().unwrap().is_empty(),
            "missing dir lists as empty"
        );
        let mut w = store.create(&id("b1")).unwrap();
        w.write_all(b"0123456789").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(w.commit(&[]).unwrap(), 10);
        assert!(store.list().unwrap().is_empty(), "no record, not listed");
        store.put_record(&id("b1"), b"{}").unwrap();
        assert_eq!(store.list().unwrap(), vec![id("b1")]);

        let mut tail = String::new();
        store
            .open(&id("b1"), 4)
            .unwrap()
            .read_to_string(&mut tail)
            .unwrap();
        assert_eq!(tail, "456789");
        let mode = fs::metadata(root.join("backups"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);

        assert_eq!(store.create(&id("b1")).err().unwrap().exit_code(), 2);
        store.delete(&id("b1")).unwrap();
        assert_eq!(store.get_record(&id("b1")).unwrap_err().exit_code(), 4);
        assert_eq!(store.delete(&id("b1")).unwrap_err().exit_code(), 4);
        assert_eq!(store.open(&id("b1"), 0).err().unwrap().exit_code(), 4);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let (store, root) = storage("shared");
        fs::create_dir_all(root.join("backups")).unwrap();
        fs::set_permissions(root.join("backups"), fs::Permissions::from_mode(0o777)).unwrap();
        let err = store.prepare(&id("b3")).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.message().contains("chmod 700"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_directory_made_by_another_user_is_refused() {
        // Only root can give a directory away.
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        let (store, root) = storage("theirs");
        fs::create_dir_all(root.join("backups")).unwrap();
        fs::set_permissions(root.join("backups"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(root.join("backups"), Some(65534), None).unwrap();
        let err = store.prepare(&id("b4")).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.message().contains("uid 65534"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_fifo_as_a_record_or_object_is_an_error_not_a_hang() {
        let (store, root) = storage("fifo");
        store.prepare(&id("b5")).unwrap();
        for name in ["b5.json", "b5.rbk"] {
            crate::testing::make_fifo(&root.join("backups").join(name));
        }
        assert_eq!(store.get_record(&id("b5")).unwrap_err().exit_code(), 5);
        assert_eq!(store.open(&id("b5"), 0).err().unwrap().exit_code(), 5);
        fs::remove_dir_all(&root).unwrap();
    }

    /// Another host's root, writing the same share, plants folders under a
    /// backup's names: delete frees the names without emptying them.
    #[test]
    fn folders_under_a_backups_names_are_moved_aside_whole() {
        let (store, root) = storage("folders");
        store.prepare(&id("b8")).unwrap();
        let backups = root.join("backups");
        for name in ["b8.json", "b8.rbk"] {
            fs::create_dir(backups.join(name)).unwrap();
            fs::write(backups.join(name).join("theirs"), name).unwrap();
        }
        store.delete(&id("b8")).unwrap();
        assert!(fs::symlink_metadata(backups.join("b8.json")).is_err());
        assert!(fs::symlink_metadata(backups.join("b8.rbk")).is_err());
        let mut kept: Vec<String> = fs::read_dir(&backups)
            .unwrap()
            .flatten()
            .map(|entry| fs::read_to_string(entry.path().join("theirs")).unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept, ["b8.json", "b8.rbk"]);
        assert!(
            store.list().unwrap().is_empty(),
            "hidden names are not listed"
        );
        store.prepare(&id("b8")).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    /// A link that leads nowhere, under an object's name with no record:
    /// delete takes it (checked by a path, it looked like nothing there),
    /// and the name is free again.
    #[test]
    fn a_dangling_link_under_an_objects_name_is_deleted() {
        let (store, root) = storage("dangling");
        store.prepare(&id("b7")).unwrap();
        let link = root.join("backups").join("b7.rbk");
        std::os::unix::fs::symlink("/nonexistent-target", &link).unwrap();
        assert_eq!(store.prepare(&id("b7")).unwrap_err().exit_code(), 2);
        store.delete(&id("b7")).unwrap();
        assert!(fs::symlink_metadata(&link).is_err());
        store.prepare(&id("b7")).unwrap();
        assert_eq!(store.delete(&id("b7")).unwrap_err().exit_code(), 4);
        fs::remove_dir_all(&root).unwrap();
    }

    /// Another writer of a shared directory plants links under a backup's
    /// names, to files of this host: they are not followed, and nothing of
    /// what they lead to is read.
    #[test]
    fn a_link_as_a_record_or_object_is_not_followed() {
        let (store, root) = storage("link-names");
        store.prepare(&id("b9")).unwrap();
        let elsewhere = root.join("host-file");
        fs::write(&elsewhere, b"{}").unwrap();
        for name in ["b9.json", "b9.rbk"] {
            std::os::unix::fs::symlink(&elsewhere, root.join("backups").join(name)).unwrap();
        }
        let err = store.get_record(&id("b9")).unwrap_err();
        assert_eq!(err.exit_code(), 5, "{err}");
        assert!(err.message().contains("not a regular file"), "{err}");
        let err = store.open(&id("b9"), 0).err().unwrap();
        assert!(err.message().contains("not a regular file"), "{err}");
        fs::remove_dir_all(&root).unwrap();
    }

    /// Another writer of the directory plants a FIFO and a symlink to a
    /// device under the names our temporary files take: creating an object
    /// returns at once (opening the FIFO would wait for a writer forever)
    /// and leaves both where they are, removing only a killed backup's
    /// regular file.
    #[test]
    fn a_fifo_or_a_link_under_a_temporary_name_neither_hangs_nor_is_followed() {
        let (store, root) = storage("planted");
        store.prepare(&id("b6")).unwrap();
        let dir = root.join("backups");
        let fifo = dir.join(format!("{}4242-x.rbk", crate::fs::temp_prefix()));
        let link = dir.join(format!("{}4243-y.rbk", crate::fs::temp_prefix()));
        crate::testing::make_fifo(&fifo);
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        // A killed backup's file, which the sweep does remove.
        let dead = dir.join(format!("{}4244-z.rbk", crate::fs::temp_prefix()));
        fs::write(&dead, b"half a backup").unwrap();
        let writer_opened = crate::testing::writer_waiting_on(&fifo);
        let (done, created) = std::sync::mpsc::channel();
        let store = std::sync::Arc::new(store);
        let creator = store.clone();
        std::thread::spawn(move || {
            let writer = creator.create(&id("b6")).map(drop);
            let _ = done.send(writer.map_err(|e| e.to_string()));
        });
        let created = created.recv_timeout(std::time::Duration::from_secs(5));
        // Let a thread stuck in open() go: a writer to the FIFO releases it.
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&fifo);
        assert!(
            matches!(created, Ok(Ok(()))),
            "create did not return within 5 s: {created:?}"
        );
        let during = writer_opened.recv_timeout(std::time::Duration::from_millis(300));
        assert!(during.is_err(), "the sweep opened the FIFO");
        let _release = fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&fifo)
            .unwrap();
        let kind = |p: &Path| fs::symlink_metadata(p).map(|m| m.file_type());
        assert!(kind(&fifo).unwrap().is_fifo(), "the FIFO is left alone");
        assert!(kind(&link).unwrap().is_symlink(), "the link is left alone");
        assert!(
            kind(&dead).is_err(),
            "an abandoned temporary file is removed"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    /// Another writer of a shared directory makes `archive` a symlink to
    /// a directory of the host's (here a stand-in for /etc): nothing is
    /// listed, read, written or deleted through it.
    #[test]
    fn an_archive_folder_that_is_a_symlink_is_refused() {
        let (store, root) = storage("archive-link");
        store.prepare(&id("b7")).unwrap();
        let elsewhere = root.join("etc");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).unwrap();
        for name in ["b7.json", "b7.rbk"] {
            fs::write(elsewhere.join(name), b"{}").unwrap();
        }
        std::os::unix::fs::symlink(&elsewhere, root.join("backups").join(ARCHIVE_DIR)).unwrap();
        let archive = store.archive();
        let refused = |what: &str, result: Result<()>| {
            let err = result.expect_err(what);
            assert_eq!(err.exit_code(), 4, "{what}: {err}");
            assert!(err.message().contains("symbolic link"), "{what}: {err}");
        };
        refused("list", archive.list().map(drop));
        refused("get_record", archive.get_record(&id("b7")).map(drop));
        refused("open", archive.open(&id("b7"), 0).map(drop));
        refused("delete", archive.delete(&id("b7")));
        refused("create", archive.create(&id("b8")).map(drop));
        refused("put_record", archive.put_record(&id("b8"), b"{}"));
        let mut left: Vec<_> = fs::read_dir(&elsewhere)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["b7.json", "b7.rbk"]);
        fs::remove_dir_all(&root).unwrap();
    }

    /// The same writer swaps `archive` with a link to that directory
    /// (`RENAME_EXCHANGE`, back and forth as fast as it can) while records
    /// are written, listed and deleted: a check of the name followed by a
    /// use of the name would sometimes land in the other directory. Each
    /// operation must use the one directory it checked.
    #[test]
    fn an_archive_folder_swapped_for_a_link_mid_operation_leads_nowhere() {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        use std::sync::atomic::{AtomicBool, Ordering};
        let (store, root) = storage("archive-swap");
        let archive = store.archive();
        let real = root.join("backups").join(ARCHIVE_DIR);
        crate::fs::create_private_dir(&real).unwrap();
        let elsewhere = root.join("etc");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(elsewhere.join("v.json"), b"{}").unwrap();
        let swap = root.join("backups").join("swap");
        std::os::unix::fs::symlink(&elsewhere, &swap).unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    renameat_with(CWD, &real, CWD, &swap, RenameFlags::EXCHANGE).unwrap();
                }
            });
            for i in 0..3000 {
                let _ = archive.put_record(&id(&format!("r{i}")), b"{}");
                let _ = archive.list();
                let _ = archive.get_record(&id("v"));
                let _ = archive.delete(&id("v"));
            }
            stop.store(true, Ordering::Relaxed);
        });
        let mut left: Vec<_> = fs::read_dir(&elsewhere)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert!(
            left == ["v.json"],
            "written or removed through the link: {} names there, {:?}...",
            left.len(),
            &left[..left.len().min(4)]
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_backup_out_of_space_says_what_is_left_and_kept() {
        let short = Short {
            available: 3 << 20,
            reserve: 10 << 20,
        };
        let msg = out_of_space(Path::new("/b"), short);
        assert!(
            msg.starts_with("only 3.0 MiB of space left in /b and 10.0 MiB"),
            "{msg}"
        );
    }

    #[test]
    fn an_uncommitted_object_leaves_nothing() {
        let (store, root) = storage("abort");
        let mut w = store.create(&id("b2")).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(root.join("backups")).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }
}
