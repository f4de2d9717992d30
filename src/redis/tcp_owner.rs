//! Whose socket took our connection to a port of this host, and which
//! addresses are this host's. Any account may
//! listen on a port above 1023 while Redis is not there (after a crash,
//! between the stop and the start of a restore), and would then get our
//! `AUTH` with the settings' password. Before anything is sent, the server
//! side of the connection is found in the kernel's tables (`/proc/net/tcp`
//! and `tcp6`: the entry whose local address is our peer and whose remote
//! address is us; a socket accepted from a listener, or still waiting in its
//! queue, carries the listener's owner) and must be root's or the account's
//! Redis runs as.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

/// The tables are read whole, but not without end.
const MAX_TABLE_LEN: u64 = 64 << 20;
/// The server side of a connection just made may not be in the table yet
/// when `connect` returns: the kernel handles the last packet of the
/// handshake on its own time.
const LOOKS: u32 = 20;
const BETWEEN_LOOKS: Duration = Duration::from_millis(5);

/// Refuses a connection to a port of this host unless the socket that took
/// it is root's or one of `owners`'. A port of another host cannot be
/// checked so.
pub fn check(stream: &TcpStream, owners: &[u32]) -> io::Result<()> {
    let (ours, theirs) = (stream.local_addr()?, stream.peer_addr()?);
    if !is_this_hosts(theirs.ip()) {
        return Ok(());
    }
    let mut found = None;
    for _ in 0..LOOKS {
        found = server_side_owner(ours, theirs)?;
        if found.is_some() {
            break;
        }
        std::thread::sleep(BETWEEN_LOOKS);
    }
    let Some(uid) = found else {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "no socket of this host took the connection, so whose it is cannot be told",
        ));
    };
    if uid == 0 || owners.contains(&uid) {
        return Ok(());
    }
    let expected: Vec<String> = owners.iter().map(u32::to_string).collect();
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the port is listened on by uid {uid}, not by root or Redis's account (uid {})",
            expected.join(" or ")
        ),
    ))
}

/// Whether `ip` is one of this host's own addresses: the kernel answers a
/// datagram to one of them from that same address (loopback aside, which is
/// all ours, 127.0.0.1 answering for the whole of 127/8).
pub fn is_this_hosts(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return true;
    }
    let unspecified: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    UdpSocket::bind(unspecified)
        .and_then(|socket| {
            socket.connect((ip, 9))?;
            socket.local_addr()
        })
        .is_ok_and(|local| local.ip() == ip)
}

/// The owner of the socket whose local address is `theirs` and whose remote
/// address is `ours`, if there is one.
fn server_side_owner(ours: SocketAddr, theirs: SocketAddr) -> io::Result<Option<u32>> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match crate::fs::read_proc(Path::new(table), MAX_TABLE_LEN) {
            Ok(text) => text,
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = owner_in(&String::from_utf8_lossy(&text), ours, theirs) {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

/// In one table: each line after the heading is `sl local remote state
/// queues timer retransmits uid ...`.
fn owner_in(table: &str, ours: SocketAddr, theirs: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        let same = |a: SocketAddr, b: SocketAddr| {
            a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
        };
        (same(parse_address(local)?, theirs) && same(parse_address(remote)?, ours))
            .then(|| uid.parse().ok())
            .flatten()
    })
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

    /// A listener of this process (root's or the tester's): found, and
    /// judged by its owner.
    #[test]
    fn the_socket_that_took_a_connection_is_found_with_its_owner() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let me = rustix::process::geteuid().as_raw();
        check(&stream, &[me]).unwrap();
        if me != 0 {
            let refused = check(&stream, &[me + 1]).unwrap_err();
            assert!(
                refused.to_string().contains(&format!("uid {me}")),
                "{refused}"
            );
        }
        let (ours, theirs) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
        assert_eq!(server_side_owner(ours, theirs).unwrap(), Some(me));
        let elsewhere = SocketAddr::from(([127, 0, 0, 1], 1));
        assert_eq!(server_side_owner(ours, elsewhere).unwrap(), None);
    }
}
