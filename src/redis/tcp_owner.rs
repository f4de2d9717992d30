//! Whose socket took our connection to a port of this host, and which
//! addresses are this host's. Any account may listen on a port above 1023
//! while Redis is not there (after a crash, between the stop and the start
//! of a restore), and would then get our `AUTH` with the settings'
//! password. Before anything is sent, the server side of the connection is
//! found in the kernel's tables (`/proc/net/tcp` and `tcp6`: the entries
//! whose local address is our peer and whose remote address is us) and
//! must be root's or the account's Redis runs as. Only an accepted socket
//! tells: a connection still in a listener's queue shows root as its owner
//! on kernels before 6.17 (a socket without a file), and a closed one
//! waiting out TIME_WAIT shows root on all; neither has an inode. Redis
//! accepts at once, so we wait for it.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// A line of the tables is 150 bytes; a longer one is not the kernel's.
const MAX_LINE_LEN: u64 = 4096;
const BETWEEN_LOOKS: Duration = Duration::from_millis(5);
/// How long Redis may take to accept us when no timeout is set.
const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// Refuses a connection to a port of this host unless the socket that
/// accepted it is root's or one of `owners`', waiting at most `timeout`
/// (zero: `LONGEST_WAIT`) for it to be accepted. A port of another host
/// cannot be checked so.
pub fn check(stream: &TcpStream, owners: &[u32], timeout: Duration) -> io::Result<()> {
    let (ours, theirs) = (stream.local_addr()?, stream.peer_addr()?);
    if !answers_from_itself(theirs) {
        return Ok(());
    }
    let wait = if timeout.is_zero() {
        LONGEST_WAIT
    } else {
        timeout
    };
    let deadline = Instant::now() + wait;
    let uids = loop {
        let uids = accepted_by(ours, theirs)?;
        if !uids.is_empty() || Instant::now() >= deadline {
            break uids;
        }
        std::thread::sleep(BETWEEN_LOOKS);
    };
    if uids.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "no socket of this host accepted the connection within {}s, so whose it is cannot be told",
                crate::units::seconds(wait, 1)
            ),
        ));
    }
    match uids
        .into_iter()
        .find(|&uid| uid != 0 && !owners.contains(&uid))
    {
        None => Ok(()),
        Some(uid) if owners.is_empty() => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the port is listened on by uid {uid}, not by root, and whose Redis's port is cannot be told here (the data dir redis.conf names cannot be opened): set redis_socket, or run where that dir is"
            ),
        )),
        Some(uid) => {
            let expected: Vec<String> = owners.iter().map(u32::to_string).collect();
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the port is listened on by uid {uid}, not by root or Redis's account (uid {})",
                    expected.join(" or ")
                ),
            ))
        }
    }
}

/// Whether `ip` is one of this host's own addresses.
pub fn is_this_hosts(ip: IpAddr) -> bool {
    answers_from_itself(SocketAddr::new(ip, 9))
}

/// Whether the address of `to` (its port aside; an IPv6 one with its scope)
/// is one of this host's: the kernel answers a datagram to it from that
/// same address (loopback aside, which is all ours, 127.0.0.1 answering for
/// the whole of 127/8).
fn answers_from_itself(mut to: SocketAddr) -> bool {
    to.set_ip(to.ip().to_canonical());
    to.set_port(9);
    if to.ip().is_loopback() {
        return true;
    }
    let unspecified: SocketAddr = match to.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    UdpSocket::bind(unspecified)
        .and_then(|socket| {
            socket.connect(to)?;
            socket.local_addr()
        })
        .is_ok_and(|local| local.ip() == to.ip())
}

/// The owner of the accepted socket (one with an inode) whose local
/// address is `theirs` and whose remote address is `ours`, if there is one
/// yet: none or one, the addresses of a live connection being its own.
fn accepted_by(ours: SocketAddr, theirs: SocketAddr) -> io::Result<Vec<u32>> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let file = match crate::fs::open_unwaiting(Path::new(table)) {
            Ok(file) => file,
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = owner_in(BufReader::new(file), ours, theirs)? {
            return Ok(vec![uid]);
        }
    }
    Ok(Vec::new())
}

/// In one table, read line by line in constant memory to the line sought:
/// a table is as long as any account makes it (a line a socket), and one
/// read whole up to a cap was cut short by 450,000 listeners of a user's,
/// our connection's line past the cap, every connection refused. Each line
/// after the heading is `sl local remote state queues timer retransmits
/// uid timeout inode ...`.
fn owner_in(
    mut table: impl BufRead,
    ours: SocketAddr,
    theirs: SocketAddr,
) -> io::Result<Option<u32>> {
    let same = |a: SocketAddr, b: SocketAddr| {
        a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
    };
    let mut line = Vec::with_capacity(256);
    let mut heading = true;
    loop {
        line.clear();
        if (&mut table)
            .take(MAX_LINE_LEN)
            .read_until(b'\n', &mut line)?
            == 0
        {
            return Ok(None);
        }
        if std::mem::take(&mut heading) {
            continue;
        }
        let line = String::from_utf8_lossy(&line);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let found = || -> Option<u32> {
            let (local, remote) = (
                parse_address(fields.get(1)?)?,
                parse_address(fields.get(2)?)?,
            );
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (same(local, theirs) && same(remote, ours) && inode != 0)
                .then(|| fields.get(7)?.parse().ok())
                .flatten()
        };
        if let Some(uid) = found() {
            return Ok(Some(uid));
        }
    }
}

/// `0100007F:18EB`: the address as the kernel keeps it, printed word by
/// word in this machine's byte order, then the port.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn addresses_read_as_the_kernel_prints_them() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 6379));
        assert_eq!(
            parse_address(&format!("{:08X}:18EB", u32::from_ne_bytes([127, 0, 0, 1]))),
            Some(loopback)
        );
        // ::ffff:127.0.0.1, as four words of four bytes.
        let mapped: String = [[0u8; 4], [0; 4], [0, 0, 0xff, 0xff], [127, 0, 0, 1]]
            .iter()
            .map(|word| format!("{:08X}", u32::from_ne_bytes(*word)))
            .collect();
        let v6 = parse_address(&format!("{mapped}:18EB")).unwrap();
        assert_eq!(v6.ip().to_canonical(), loopback.ip());
        assert_eq!(parse_address("zz:1"), None);
    }

    /// A listener of this process (root's or the tester's): once it has
    /// accepted, found and judged by its owner.
    #[test]
    fn the_socket_that_accepted_a_connection_is_found_with_its_owner() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _accepted = listener.accept().unwrap();
        let me = rustix::process::geteuid().as_raw();
        check(&stream, &[me], Duration::from_secs(5)).unwrap();
        if me != 0 {
            let refused = check(&stream, &[me + 1], Duration::from_secs(5)).unwrap_err();
            assert!(
                refused.to_string().contains(&format!("uid {me}")),
                "{refused}"
            );
        }
        let (ours, theirs) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
        assert_eq!(accepted_by(ours, theirs).unwrap(), [me]);
        let elsewhere = SocketAddr::from(([127, 0, 0, 1], 1));
        assert!(accepted_by(ours, elsewhere).unwrap().is_empty());
    }

    /// A connection the listener never accepts tells no owner (older
    /// kernels show root for it): refused once the wait is over.
    #[test]
    fn a_connection_never_accepted_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let refused = check(&stream, &[], Duration::from_millis(100)).unwrap_err();
        assert!(refused.to_string().contains("accepted"), "{refused}");
    }

    /// Lines as the kernel writes them: a closed connection in TIME_WAIT
    /// (root's, no inode) beside the live one it shares its addresses with.
    #[test]
    fn only_accepted_sockets_count() {
        let ours = SocketAddr::from(([127, 0, 0, 1], 40000));
        let theirs = SocketAddr::from(([127, 0, 0, 1], 6379));
        let hex = |a: SocketAddr| match a.ip() {
            IpAddr::V4(ip) => format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), a.port()),
            IpAddr::V6(_) => unreachable!(),
        };
        let line = |state: &str, uid: u32, inode: u64| {
            format!(
                "   0: {} {} {state} 00000000:00000000 00:00000000 00000000 {uid:>5}        0 {inode} 1 0000000000000000\n",
                hex(theirs),
                hex(ours)
            )
        };
        let heading = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let owner = |table: &str| owner_in(table.as_bytes(), ours, theirs).unwrap();
        let table = format!("{heading}{}{}", line("06", 0, 0), line("01", 65534, 4242));
        assert_eq!(owner(&table), Some(65534));
        let only_closed = format!("{heading}{}", line("06", 0, 0));
        assert_eq!(owner(&only_closed), None);
    }
}
