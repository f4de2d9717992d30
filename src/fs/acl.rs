//! Who a POSIX access ACL lets write, beyond what the mode bits say. With an
//! ACL the group bits of the mode are its mask, so "nobody but the owner may
//! write" can still be read from the mode alone: no write in the mask, no
//! write for any entry under it. But who else may write, when the mask
//! allows it, only the ACL says: named users and groups, and the owning
//! group only if its own entry allows it. The ACL is read from the file
//! system's `system.posix_acl_access` attribute (the kernel's format: a
//! version word, then entries of tag, permissions and id).

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

const ACCESS_ACL: &str = "system.posix_acl_access";
const VERSION: u32 = 2;
const ENTRY_LEN: usize = 8;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const WRITE: u16 = 0x02;
/// More entries than any file system keeps (ext4 holds an ACL in one 4 KiB
/// block). A larger one is refused rather than half read.
const MAX_ENTRIES: usize = 1024;

/// Whom an access ACL lets write, under its mask.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AclWriters {
    pub users: Vec<u32>,
    pub groups: Vec<u32>,
    /// Whether the owning group may write: its own entry, not the mode's
    /// group bits, which are the mask.
    pub owning_group: bool,
}

/// The writers the ACL of an open file names, or `None` if it has no ACL
/// beyond its mode bits (or its file system keeps none).
pub fn of_file(file: &impl AsFd) -> io::Result<Option<AclWriters>> {
    let mut buf = vec![0u8; 4 + ENTRY_LEN * MAX_ENTRIES];
    let read = rustix::fs::fgetxattr(file, ACCESS_ACL, &mut buf[..]);
    found(read, &buf)
}

/// As `of_file`, for the file or folder `path` leads to.
pub fn of_path(path: &Path) -> io::Result<Option<AclWriters>> {
    let mut buf = vec![0u8; 4 + ENTRY_LEN * MAX_ENTRIES];
    let read = rustix::fs::getxattr(path, ACCESS_ACL, &mut buf[..]);
    found(read, &buf)
}

fn found(read: rustix::io::Result<usize>, buf: &[u8]) -> io::Result<Option<AclWriters>> {
    match read {
        Ok(len) => parse(&buf[..len]).map(Some),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => Ok(None),
        Err(rustix::io::Errno::RANGE) => Err(io::Error::other(format!(
            "an ACL of more than {MAX_ENTRIES} entries"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The writers in an ACL in the kernel's format (all little-endian).
pub fn parse(bytes: &[u8]) -> io::Result<AclWriters> {
    let unreadable = || io::Error::new(io::ErrorKind::InvalidData, "an ACL it cannot read");
    let (version, entries) = bytes.split_at_checked(4).ok_or_else(unreadable)?;
    if u32::from_le_bytes(version.try_into().expect("4 bytes")) != VERSION
        || entries.len() % ENTRY_LEN != 0
    {
        return Err(unreadable());
    }
    let mut mask = u16::MAX;
    let mut writers = AclWriters::default();
    let mut group_obj = 0u16;
    let mut named = Vec::new();
    for entry in entries.chunks_exact(ENTRY_LEN) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        let perm = u16::from_le_bytes([entry[2], entry[3]]);
        let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        match tag {
            TAG_MASK => mask = perm,
            TAG_GROUP_OBJ => group_obj = perm,
            TAG_USER | TAG_GROUP if perm & WRITE != 0 => named.push((tag, id)),
            _ => {}
        }
    }
    if mask & WRITE == 0 {
        return Ok(writers);
    }
    writers.owning_group = group_obj & WRITE != 0;
    for (tag, id) in named {
        match tag {
            TAG_USER => writers.users.push(id),
            _ => writers.groups.push(id),
        }
    }
    Ok(writers)
}

/// An ACL in the kernel's format, from entries of tag, permissions and id,
/// as `setfacl` stores it (for tests that set one).
#[cfg(test)]
pub(crate) mod encode {
    pub const TAG_USER: u16 = super::TAG_USER;
    pub const TAG_GROUP_OBJ: u16 = super::TAG_GROUP_OBJ;
    pub const TAG_GROUP: u16 = super::TAG_GROUP;
    pub const TAG_MASK: u16 = super::TAG_MASK;
    pub const TAG_USER_OBJ: u16 = 0x01;
    pub const TAG_OTHER: u16 = 0x20;
    /// The id of an entry that has none (the base entries, the mask).
    pub const NO_ID: u32 = u32::MAX;

    pub fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut bytes = super::VERSION.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            bytes.extend_from_slice(&tag.to_le_bytes());
            bytes.extend_from_slice(&perm.to_le_bytes());
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{acl, NO_ID as ANY, TAG_OTHER as OTHER, TAG_USER_OBJ as USER_OBJ};
    use super::*;

    #[test]
    fn named_writers_count_only_under_a_mask_that_writes() {
        let base = [(USER_OBJ, 6, ANY), (TAG_GROUP_OBJ, 4, ANY), (OTHER, 4, ANY)];
        let named = [
            (TAG_USER, 6, 1001),
            (TAG_USER, 4, 1002),
            (TAG_GROUP, 7, 2001),
        ];
        let with_mask = |mask: u16| {
            let mut entries = base.to_vec();
            entries.extend_from_slice(&named);
            entries.push((TAG_MASK, mask, ANY));
            parse(&acl(&entries)).unwrap()
        };
        let writing = with_mask(6);
        assert_eq!(writing.users, [1001]);
        assert_eq!(writing.groups, [2001]);
        assert!(!writing.owning_group, "group::r-- does not write");
        assert_eq!(with_mask(4), AclWriters::default());
    }

    #[test]
    fn the_owning_group_writes_by_its_own_entry() {
        let entries = [
            (USER_OBJ, 6, ANY),
            (TAG_GROUP_OBJ, 6, ANY),
            (TAG_MASK, 6, ANY),
            (OTHER, 0, ANY),
        ];
        assert!(parse(&acl(&entries)).unwrap().owning_group);
    }

    #[test]
    fn what_is_not_an_acl_is_an_error() {
        for bytes in [vec![], vec![2, 0, 0], vec![1, 0, 0, 0], {
            let mut b = acl(&[(USER_OBJ, 6, 0)]);
            b.pop();
            b
        }] {
            assert_eq!(
                parse(&bytes).unwrap_err().kind(),
                io::ErrorKind::InvalidData,
                "{bytes:?}"
            );
        }
    }
}
