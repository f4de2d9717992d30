//! Connecting to a Unix socket as root. Three things differ from a plain
//! `UnixStream::connect`. A listener that never accepts, its queue full,
//! holds a connect in the kernel for ever, so the wait is bounded. A link is
//! never followed: socket dirs such as /run/redis are the redis account's,
//! and a link there would lead root anywhere. And root passes any socket's
//! permissions, so a socket that someone other than root named (a
//! redis.conf of the redis account's) or could replace (the private
//! server's, made in a directory its account writes) is used only if it is
//! a socket of the expected account. The socket checked is the one
//! connected to: found with `O_PATH` and reached through `/proc/self/fd`,
//! so a rename in between changes nothing.

use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{self, sockopt, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connect to `path`, waiting at most `timeout` (zero: no limit) for the
/// listener to take us. It must be a socket, not a link to one (a socket
/// dir such as /run/redis is the redis account's, and a link there would
/// lead root to any socket); with `owners`, a socket of one of theirs.
pub fn connect(path: &Path, owners: Option<&[u32]>, timeout: Duration) -> io::Result<UnixStream> {
    let found = rfs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    check_socket(&rfs::fstat(&found)?, owners)?;
    let target = PathBuf::from(format!("/proc/self/fd/{}", found.as_raw_fd()));
    let socket = net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    if !timeout.is_zero() {
        sockopt::set_socket_timeout(&socket, sockopt::Timeout::Send, Some(timeout))?;
    }
    match net::connect(&socket, &SocketAddrUnix::new(target.as_path())?) {
        Ok(()) => Ok(UnixStream::from(socket)),
        Err(Errno::AGAIN) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("it took no connection within {timeout:?}"),
        )),
        Err(e) => Err(e.into()),
    }
}

fn check_socket(stat: &rfs::Stat, owners: Option<&[u32]>) -> io::Result<()> {
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::Socket {
        return Err(io::Error::other(format!(
            "it is a {} (not followed), not a socket",
            match kind {
                FileType::Symlink => "symbolic link",
                FileType::Directory => "directory",
                _ => "file",
            }
        )));
    }
    // Another name (a hard link) of a socket may be anyone's socket: one
    // anybody may write to can be linked into a dir the account writes.
    if stat.st_nlink != 1 {
        return Err(io::Error::other("the socket has another name too"));
    }
    let Some(owners) = owners else {
        return Ok(());
    };
    if !owners.contains(&stat.st_uid) {
        let named_by = match owners {
            [] => "an account its config may lead root to (a config others may write leads to no socket of root's)".to_string(),
            _ => format!(
                "the account that named it (uid {})",
                owners
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        };
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("it is uid {}'s, not the socket of {named_by}", stat.st_uid),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn scratch(name: &str) -> PathBuf {
        crate::testing::scratch_dir(&format!("unix-{name}"))
    }

    #[test]
    fn a_socket_of_another_account_or_behind_a_link_is_refused() {
        let dir = scratch("owner");
        let path = dir.join("s.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let me = rustix::process::geteuid().as_raw();
        assert!(connect(&path, Some(&[me]), Duration::from_secs(1)).is_ok());
        assert!(connect(&path, None, Duration::from_secs(1)).is_ok());
        let err = connect(&path, Some(&[me + 1]), Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("not the socket of"), "{err}");
        std::os::unix::fs::symlink(&path, dir.join("link.sock")).unwrap();
        std::fs::hard_link(&path, dir.join("second.sock")).unwrap();
        let err = connect(&path, None, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("another name"), "{err}");
        std::fs::remove_file(dir.join("second.sock")).unwrap();
        for owners in [Some(&[me][..]), None] {
            let err = connect(&dir.join("link.sock"), owners, Duration::from_secs(1)).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_listener_that_never_accepts_holds_a_connect_no_longer_than_the_timeout() {
        let dir = scratch("full");
        let path = dir.join("s.sock");
        let listener = net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        net::bind(&listener, &SocketAddrUnix::new(path.as_path()).unwrap()).unwrap();
        net::listen(&listener, 0).unwrap();
        let _filler = UnixStream::connect(&path).unwrap();
        let err = connect(&path, None, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
