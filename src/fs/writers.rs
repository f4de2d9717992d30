//! Who may write a file, as root must read it before taking the file's
//! word: its owner and mode, whoever its ACL lets write, and whoever may
//! write in a folder on the way to it, who may put another file under its
//! name. redis.conf's word decides whose data dir root acts on
//! (`redis::conf`); the settings file's decides what root runs.

use crate::fs::acl::{self, AclWriters};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Who may write a file or a folder, as the checks read it: its owner, a
/// group if 0o020 is set, everybody if 0o002 is. Two accounts, or two
/// groups, that could each write it are as good as everybody:
/// `check_authority` refuses the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writers {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

pub const EVERYBODY: u32 = 0o002;

impl Writers {
    pub fn of(meta: &fs::Metadata) -> Writers {
        Writers {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }

    /// Whether only root and `us` may write: the owner is one of them, and
    /// neither its group nor everybody may.
    pub fn only_root_or(&self, us: u32) -> bool {
        (self.uid == 0 || self.uid == us) && self.mode & 0o022 == 0
    }

    /// One more account that may write (root adds nothing).
    pub fn add_user(&mut self, uid: u32) {
        if uid == 0 {
            return;
        }
        if self.uid != 0 && self.uid != uid {
            self.mode |= EVERYBODY;
        }
        self.uid = uid;
    }

    /// One more group that may write.
    pub fn add_group(&mut self, gid: u32) {
        if self.mode & 0o020 != 0 && self.gid != gid {
            self.mode |= EVERYBODY;
        }
        self.gid = gid;
        self.mode |= 0o020;
    }

    /// With an ACL, the mode's group bits are its mask: the owning group
    /// writes only if its own entry lets it, and named users and groups
    /// may write too.
    pub fn with_acl(mut self, acl: Option<AclWriters>) -> Writers {
        let Some(acl) = acl else { return self };
        if !acl.owning_group {
            self.mode &= !0o020;
        }
        acl.users.into_iter().for_each(|uid| self.add_user(uid));
        acl.groups.into_iter().for_each(|gid| self.add_group(gid));
        self
    }
}

/// A folder on the way to a file, as found by `folder_of_others`.
pub struct Folder {
    pub path: PathBuf,
    pub writers: Writers,
}

impl Folder {
    /// Who may write in it, for a message.
    pub fn whoever_may_write(&self) -> String {
        format!(
            "whoever may write in {} (uid {}, gid {}, mode {:04o}, or its ACL)",
            self.path.display(),
            self.writers.uid,
            self.writers.gid,
            self.writers.mode
        )
    }
}

/// Most symbolic links followed on the way to one file, as the kernel's
/// limit.
const MAX_LINKS: usize = 40;

/// The first folder on the way to `path` that someone other than root and
/// `trusted` (root again, or the account running the tool) may write in,
/// following links as the open will: its entries, and so what `path` leads
/// to, are that writer's to replace. In a root folder with the sticky bit
/// (/tmp), an entry of root's (or `trusted`'s) is theirs alone: nobody else
/// may rename or remove it.
pub fn folder_of_others(path: &Path, trusted: u32) -> std::io::Result<Option<Folder>> {
    use std::collections::VecDeque;
    use std::path::Component;
    let absolute = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir()?.join(path),
    };
    let mut ahead: VecDeque<std::ffi::OsString> = absolute
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    // `at` never holds a link: `..` is its parent.
    let mut at = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = ahead.pop_front() {
        if name == ".." {
            at.pop();
            continue;
        }
        let folder = fs::metadata(&at)?;
        let next = at.join(&name);
        let entry = fs::symlink_metadata(&next)?;
        let ours = |uid: u32| uid == 0 || uid == trusted;
        let sticky_keeps_it = folder.uid() == 0 && folder.mode() & 0o1000 != 0 && ours(entry.uid());
        if (!ours(folder.uid()) || folder.mode() & 0o022 != 0) && !sticky_keeps_it {
            let writers = Writers::of(&folder).with_acl(acl::of_path(&at)?);
            // With an ACL the mode's group bits are its mask: a folder
            // whose entries let only root (or `trusted`) write is passed
            // like any of theirs, and the walk goes on below it.
            if !writers.only_root_or(trusted) {
                return Ok(Some(Folder { path: at, writers }));
            }
        }
        if !entry.file_type().is_symlink() {
            at = next;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(std::io::Error::other("too many levels of symbolic links"));
        }
        let target = fs::read_link(&next)?;
        if target.is_absolute() {
            at = PathBuf::from("/");
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(name) => ahead.push_front(name.to_os_string()),
                Component::ParentDir => ahead.push_front("..".into()),
                _ => {}
            }
        }
    }
    Ok(None)
}

/// Who, other than root and this process's own account, may change what
/// the open `file` found at `path` says, named for a message: through its
/// owner, its mode, its ACL, or a folder on the way to it. `None` if
/// nobody.
pub fn others_who_may_change(path: &Path, file: &fs::File) -> std::io::Result<Option<String>> {
    let us = rustix::process::geteuid().as_raw();
    let writers = Writers::of(&file.metadata()?).with_acl(acl::of_file(file)?);
    if !writers.only_root_or(us) {
        return Ok(Some(format!(
            "uid {} and mode {:04o}, or its ACL",
            writers.uid, writers.mode
        )));
    }
    match folder_of_others(path, us)? {
        Some(folder) if !folder.writers.only_root_or(us) => Ok(Some(folder.whoever_may_write())),
        _ => Ok(None),
    }
}

/// Who, other than root and this process's own account, may rename or
/// replace a new file of ours at `path` (not there yet), named for a
/// message: whoever may write in its folder (unless that folder is root's
/// and sticky, as /tmp is: an entry of ours there is ours alone) or in a
/// folder on the way to it. `None` if nobody.
pub fn others_who_may_replace(path: &Path) -> std::io::Result<Option<String>> {
    others_who_may_write_beside(path, true)
}

/// The same, with no exception for a sticky folder: for a file of a name
/// known in advance that we open again and again (the lock), which anyone
/// who may create names there could take first.
pub fn others_who_may_name(path: &Path) -> std::io::Result<Option<String>> {
    others_who_may_write_beside(path, false)
}

fn others_who_may_write_beside(
    path: &Path,
    sticky_keeps_ours: bool,
) -> std::io::Result<Option<String>> {
    let us = rustix::process::geteuid().as_raw();
    // The folder in full, for the message: `.` says nothing.
    let full = std::env::current_dir()?.join(path);
    let folder = full.parent().unwrap_or(Path::new("/")).to_path_buf();
    if let Some(on_the_way) = folder_of_others(&folder, us)? {
        if !on_the_way.writers.only_root_or(us) {
            return Ok(Some(on_the_way.whoever_may_write()));
        }
    }
    let meta = fs::metadata(&folder)?;
    let writers = Writers::of(&meta).with_acl(acl::of_path(&folder)?);
    let sticky_root = meta.uid() == 0 && meta.mode() & 0o1000 != 0;
    match writers.only_root_or(us) || (sticky_keeps_ours && sticky_root) {
        true => Ok(None),
        false => Ok(Some(
            Folder {
                path: folder,
                writers,
            }
            .whoever_may_write(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of the trusted account on the way is passed, not taken for
    /// the end of the walk: one deeper that others may write in is found.
    #[test]
    fn the_walk_goes_on_past_a_folder_of_the_trusted_account() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let base = std::env::temp_dir().join(format!("rb-writers-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("home/open")).unwrap();
        let file = base.join("home/open/s.conf");
        fs::write(&file, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        mode(&base, 0o755);
        mode(&base.join("home"), 0o755);
        mode(&base.join("home/open"), 0o777);
        std::os::unix::fs::chown(base.join("home"), Some(65534), None).unwrap();
        std::os::unix::fs::chown(base.join("home/open"), Some(65534), None).unwrap();

        let found = folder_of_others(&file, 65534)
            .unwrap()
            .expect("the open folder");
        assert_eq!(found.path, base.join("home/open"));
        let as_root = folder_of_others(&file, 0)
            .unwrap()
            .expect("the first folder");
        assert_eq!(as_root.path, base.join("home"));
        mode(&base.join("home/open"), 0o755);
        assert!(folder_of_others(&file, 65534).unwrap().is_none());
        fs::remove_dir_all(&base).unwrap();
    }
}
