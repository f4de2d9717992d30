//! When the kernel received what a read takes from a TCP socket: the
//! archiver stamps the primary's commands as its read returns, and a reader
//! held up after its bytes came (stopped, frozen, its CPU taken by the
//! hypervisor) would stamp them late without knowing. With `SO_TIMESTAMPNS`
//! set, each `recvmsg` also says when the newest byte it took was received.
//! Unix sockets say nothing (`None`).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Asks the kernel to stamp what the socket receives from now on.
pub fn stamp_from_now(socket: &TcpStream) -> io::Result<()> {
    let on: libc::c_int = 1;
    #[allow(unsafe_code)]
    // SAFETY: the option's value is a c_int, passed with its size.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Reads into `buf` as `read` would, and returns when the kernel received
/// the newest byte read (µs since the epoch; `None` if it does not say).
pub fn read(socket: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    // Room for one timespec message, aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    #[allow(unsafe_code)]
    // SAFETY: msghdr is plain data; zero is its empty value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    #[allow(unsafe_code)]
    // SAFETY: iov and control point into buffers that outlive the call, of
    // the lengths given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, received_at(&msg)))
}

fn received_at(msg: &libc::msghdr) -> Option<u64> {
    #[allow(unsafe_code)]
    // SAFETY: the kernel filled `msg_control` up to `msg_controllen`; the
    // CMSG_ macros stay within it, and a SCM_TIMESTAMPNS message holds a
    // timespec (read unaligned, as the data need not be).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
                let at: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                // Zero: received before stamping was asked for.
                return match (u64::try_from(at.tv_sec), u64::try_from(at.tv_nsec)) {
                    (Ok(0), _) | (Err(_), _) | (_, Err(_)) => None,
                    (Ok(secs), Ok(nanos)) => Some(secs * 1_000_000 + nanos / 1_000),
                };
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn now_micros() -> u64 {
        crate::units::now_micros()
    }

    /// The stamp is of the newest byte, taken as it came, not as it is read.
    #[test]
    fn a_read_says_when_its_newest_byte_was_received() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let reader = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut writer, _) = listener.accept().unwrap();
        stamp_from_now(&reader).unwrap();
        writer.write_all(b"first").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let sent = now_micros();
        writer.write_all(b"second").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(60));
        let mut buf = [0u8; 64];
        let before = now_micros();
        let (n, at) = read(&reader, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"firstsecond");
        let at = at.expect("the kernel stamps TCP on loopback");
        assert!(
            (sent..before).contains(&at) && before - at >= 50_000,
            "received at {at}, the second write sent at {sent}, read at {before}"
        );
    }

    #[test]
    fn a_socket_not_asked_to_stamp_says_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let reader = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut writer, _) = listener.accept().unwrap();
        writer.write_all(b"x").unwrap();
        let (n, at) = read(&reader, &mut [0u8; 8]).unwrap();
        assert_eq!((n, at), (1, None));
    }
}
