//! Room that must stay free on a file system while a large file is
//! written to it: the host's share (a backup's object in a directory
//! storage leaves that), and beside it what else must fit (a staged
//! restore leaves Redis room for its own save). The
//! writer asks before each write and stops short of the reserve; free space
//! is looked at again only after half of what was left to use (within
//! bounds), so that a write costs a `statvfs` now and then, not each time.

use std::io;
use std::os::fd::BorrowedFd;

/// The host's share of a file system: 1%, at most `MAX_SHARE`. Redis may
/// have to save on that disk too, and a host whose disk is full fails in
/// ways that are hard to see.
const SHARE_DIVISOR: u64 = 100;
const MAX_SHARE: u64 = 1 << 30;
/// How often, in bytes written, free space is checked again.
const MIN_CHECK_STEP: u64 = 64 << 10;
const MAX_CHECK_STEP: u64 = 64 << 20;

/// Free space on the file system of `dir` for an account other than root
/// (root's own reserve is not ours to take), and the host's share of it.
pub fn free_space(dir: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let vfs = rustix::fs::fstatvfs(dir)?;
    let available = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    let size = vfs.f_blocks.saturating_mul(vfs.f_frsize);
    Ok((available, host_share(size)))
}

fn host_share(filesystem_size: u64) -> u64 {
    (filesystem_size / SHARE_DIVISOR).min(MAX_SHARE)
}

/// Bytes that may be written before looking again, or `None` when `want`
/// more bytes would eat into `reserve`.
fn next_check_step(available: u64, reserve: u64, want: u64) -> Option<u64> {
    let room = available.checked_sub(reserve)?;
    (room >= want).then(|| (room / 2).clamp(MIN_CHECK_STEP, MAX_CHECK_STEP))
}

/// How much is left to write before it must be looked at again.
pub struct Room {
    /// What stays free beside the host's share.
    extra: u64,
    written: u64,
    next_check: u64,
}

/// Writing on would leave less than the reserve: what was free, and what
/// must stay so.
#[derive(Debug, PartialEq, Eq)]
pub struct Short {
    pub available: u64,
    pub reserve: u64,
}

impl Room {
    /// Keeping free the host's share of the file system and `extra` bytes.
    pub fn keeping(extra: u64) -> Room {
        Room {
            extra,
            written: 0,
            next_check: 0,
        }
    }

    /// Whether `want` more bytes may be written in `dir`.
    pub fn check(&mut self, dir: BorrowedFd<'_>, want: u64) -> io::Result<Result<(), Short>> {
        if self.written.saturating_add(want) < self.next_check {
            return Ok(Ok(()));
        }
        let (available, share) = free_space(dir)?;
        let reserve = share.saturating_add(self.extra);
        Ok(match next_check_step(available, reserve, want) {
            Some(step) => {
                self.next_check = self.written.saturating_add(step);
                Ok(())
            }
            None => Err(Short { available, reserve }),
        })
    }

    pub fn wrote(&mut self, bytes: u64) {
        self.written = self.written.saturating_add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_leaves_the_reserve_free() {
        // 1% of the filesystem, at most 1 GiB.
        assert_eq!(host_share(10 << 30), (10 << 30) / 100);
        assert_eq!(host_share(1 << 40), 1 << 30);
        assert_eq!(host_share(512 << 10), 5242);
        // Room for the write: look again after half of what is left.
        assert_eq!(next_check_step(100 << 20, 0, 1 << 20), Some(50 << 20));
        assert_eq!(next_check_step(1 << 40, 1 << 30, 1), Some(MAX_CHECK_STEP));
        assert_eq!(next_check_step(1 << 20, 1 << 20, 0), Some(MIN_CHECK_STEP));
        // No room: the reserve is not touched.
        assert_eq!(next_check_step(10 << 20, 9 << 20, (1 << 20) + 1), None);
        assert_eq!(next_check_step(1 << 20, 2 << 20, 0), None);
    }

    #[test]
    fn a_reserve_larger_than_the_disk_stops_the_first_write() {
        let dir = std::fs::File::open("/").unwrap();
        use std::os::fd::AsFd;
        let mut room = Room::keeping(u64::MAX);
        let short = room.check(dir.as_fd(), 1).unwrap().unwrap_err();
        assert_eq!(short.reserve, u64::MAX);
        let mut room = Room::keeping(0);
        assert_eq!(room.check(dir.as_fd(), 1).unwrap(), Ok(()));
    }
}
