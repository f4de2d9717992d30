//! The primary a replay server follows: this process, on a port of
//! 127.0.0.1, for the one connection of that server. It sends the base as a
//! full resync's RDB and the archived commands as the stream after it, so
//! the server applies them as the instance's replicas did: from its master
//! link, where Redis 7.4 and 8 take every hash field for alive, though its
//! TTL has passed by the clock (a server loading an AOF judges those
//! fields gone, and an `HINCRBY` on one starts again from 0).
//!
//! Any process of the host may connect to the port. Only a connection from
//! a socket of the replay server's account (the kernel's tables say whose)
//! that gives the password that server alone was told (over its socket,
//! never on a command line) gets anything past a `PONG`; any other is
//! dropped and the port keeps waiting for the right one.

use crate::codec::crypto;
use crate::error::{Error, Result};
use crate::redis::resp::{self, Value};
use crate::redis::tcp_owner;
use std::io::{BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long a connection may take over each step of the handshake.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const FULLRESYNC: &[u8] = b"+FULLRESYNC 0000000000000000000000000000000000000000 0\r\n";
/// As good as no wait (`tcp_owner::check` reads zero as its longest).
const NO_WAIT: Duration = Duration::from_millis(1);
/// The most a handshake command may be (the replica's are a few dozen bytes).
const COMMAND_CAP: u64 = 4096;
/// The most commands a handshake may have (a replica sends five or six).
const MOST_COMMANDS: usize = 16;

/// A port of 127.0.0.1 listening for the replay server.
pub(super) struct Primary {
    listener: TcpListener,
    password: String,
}

impl Primary {
    pub(super) fn listen() -> Result<Primary> {
        let failed = |e: std::io::Error| {
            Error::other(format!(
                "cannot listen on 127.0.0.1 for the replay server: {e}"
            ))
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        let password = crypto::hex(&crypto::random_bytes::<32>()?);
        Ok(Primary { listener, password })
    }

    pub(super) fn port(&self) -> Result<u16> {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| Error::other(format!("the replay's port: {e}")))
    }

    /// What the replay server must give as `masterauth`.
    pub(super) fn password(&self) -> &str {
        &self.password
    }

    /// The connection of the replay server, which runs as `account`, its
    /// handshake done up to the full resync: what is written to it next is
    /// the RDB.
    pub(super) fn accept(&self, account: u32, deadline: Instant) -> Result<Link> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // Another account's connection is dropped unread, at
                    // once: the server's socket is in the kernel's table
                    // before it connects, and one that closed at once has
                    // left it (waiting for it would let any account hold
                    // the port).
                    let ours = tcp_owner::check(&stream, &[account], NO_WAIT).is_ok();
                    if let Some(link) = ours.then(|| self.handshake(stream, deadline)).flatten() {
                        return Ok(link);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::other(format!("the replay's port: {e}"))),
            }
            if Instant::now() >= deadline {
                return Err(Error::other(
                    "the replay server did not connect to the port it was given in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `None` for a connection that is not the replay server's.
    fn handshake(&self, stream: TcpStream, deadline: Instant) -> Option<Link> {
        stream.set_nonblocking(false).ok()?;
        // Whatever the peer does, a byte at a time or a command after
        // another, it is over by the deadline.
        let mut reader = BufReader::new(ByDeadline {
            stream: stream.try_clone().ok()?,
            deadline,
        });
        let mut writer = stream;
        let mut authenticated = false;
        for _ in 0..MOST_COMMANDS {
            let left = deadline.checked_duration_since(Instant::now())?;
            let step = Some(left.min(STEP_TIMEOUT)).filter(|t| !t.is_zero())?;
            writer.set_write_timeout(Some(step)).ok()?;
            let args = match resp::read_value(&mut (&mut reader).take(COMMAND_CAP)).ok()? {
                Value::Array(Some(items)) => items,
                _ => return None,
            };
            let word = |i: usize| match args.get(i) {
                Some(Value::Bulk(Some(b))) => Some(b.as_slice()),
                _ => None,
            };
            let name = word(0)?.to_ascii_uppercase();
            let reply: &[u8] = match (name.as_slice(), authenticated) {
                (b"PING", _) => b"+PONG\r\n",
                (b"AUTH", _) if same(word(args.len() - 1)?, self.password.as_bytes()) => {
                    authenticated = true;
                    b"+OK\r\n"
                }
                (b"REPLCONF", true) => b"+OK\r\n",
                (b"PSYNC", true) => {
                    // Any 40 characters name the history: this server
                    // follows no other.
                    writer.write_all(FULLRESYNC).ok()?;
                    // It sends nothing more until it has loaded the RDB.
                    return reader
                        .buffer()
                        .is_empty()
                        .then(|| Link::new(writer, deadline));
                }
                _ => return None,
            };
            writer.write_all(reply).ok()?;
        }
        None
    }
}

/// A socket each read of which waits at most the step's timeout and ends
/// by the deadline.
struct ByDeadline {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for ByDeadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(std::io::ErrorKind::TimedOut)?;
        self.stream.set_read_timeout(Some(left.min(STEP_TIMEOUT)))?;
        self.stream.read(buf)
    }
}

/// Compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// The replay server's link, after its handshake: the RDB, then the
/// commands, whose bytes are counted as the server counts its offset.
/// Every write on it ends by the replay's deadline: a server that reads
/// slowly (a stream of commands that each take it long) must not hold the
/// replay past it.
pub(super) struct Link {
    stream: TcpStream,
    deadline: Instant,
    /// What waits to be sent, up to `BUFFER`.
    pending: Vec<u8>,
    /// Bytes sent after the RDB.
    pub(super) sent: u64,
}

const BUFFER: usize = 1 << 20;

impl Link {
    fn new(stream: TcpStream, deadline: Instant) -> Link {
        Link {
            stream,
            deadline,
            pending: Vec::with_capacity(BUFFER),
            sent: 0,
        }
    }

    /// Send an RDB of `size` bytes, which `fill` writes: exactly that many
    /// get through, for the server would take any more as commands.
    pub(super) fn send_rdb(
        &mut self,
        size: u64,
        fill: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        self.push(format!("${size}\r\n").as_bytes())
            .map_err(failed)?;
        let mut exact = Exact {
            link: self,
            left: size,
        };
        fill(&mut exact)?;
        if exact.left != 0 {
            return Err(Error::integrity("the base is shorter than its record says"));
        }
        Ok(())
    }

    pub(super) fn finish(&mut self) -> Result<()> {
        self.send_pending().map_err(failed)
    }

    /// Queue `bytes`; what waits is sent once it reaches `BUFFER`, and
    /// bytes as many as that go straight on.
    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.pending.len() + bytes.len() > BUFFER {
            self.send_pending()?;
        }
        match bytes.len() >= BUFFER {
            true => self.send(bytes),
            false => {
                self.pending.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn send_pending(&mut self) -> std::io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let sent = self.send(&pending);
        self.pending = pending;
        self.pending.clear();
        sent
    }

    /// Write `bytes` whole, each write by the deadline.
    fn send(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let e = "the replay's time is up (save_timeout)";
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, e));
            }
            self.stream.set_write_timeout(Some(left))?;
            match (&self.stream).write(bytes) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether the server has closed the link (it does on a protocol
    /// error, and would then wait to connect again for good). What it
    /// sent on it, its acknowledgements, is read and left.
    pub(super) fn closed(&self) -> bool {
        let mut stream = &self.stream;
        if stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut scratch = [0u8; 4096];
        loop {
            match stream.read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
            }
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf)?;
        self.sent += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_pending()
    }
}

fn failed(e: std::io::Error) -> Error {
    Error::other(format!("sending the replay to its server: {e}"))
}

/// The link, taking `left` bytes and refusing any more.
struct Exact<'a> {
    link: &'a mut Link,
    left: u64,
}

impl Write for Exact<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the base is longer than its record says",
            ));
        }
        self.link.push(buf)?;
        self.left -= buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A peer that passes the owner check (root's: any test's) but keeps
    /// the handshake going with a PING now and then held the replay past
    /// its deadline, for as long as it went on.
    #[test]
    fn a_handshake_that_never_ends_ends_by_the_deadline() {
        assert!(
            over_by_the_deadline(b"", b"*1\r\n$4\r\nPING\r\n", 100),
            "still in the handshake 3 s past its deadline"
        );
    }

    /// The same with one command sent a byte at a time: each read had the
    /// step's 10 s, and 4096 bytes of them (the self-review's trickle).
    #[test]
    fn a_command_trickled_a_byte_at_a_time_ends_by_the_deadline() {
        assert!(
            over_by_the_deadline(b"*1\r\n$4000\r\n", b"x", 300),
            "still in the handshake 3 s past its deadline"
        );
    }

    /// A peer (root's, as the test is: it passes the owner check) sends
    /// `first`, then `again` every `pause_ms`, for 6 s: whether `accept`,
    /// given a second, gave up within 4.
    fn over_by_the_deadline(first: &'static [u8], again: &'static [u8], pause_ms: u64) -> bool {
        let primary = Primary::listen().unwrap();
        let port = primary.port().unwrap();
        let peer = std::thread::spawn(move || {
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
            let _ = stream.write_all(first);
            for _ in 0..6000 / pause_ms {
                if stream.write_all(again).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(pause_ms));
            }
        });
        let (done, outcome) = mpsc::channel();
        let me = rustix::process::geteuid().as_raw();
        std::thread::spawn(move || {
            let accepted = primary.accept(me, Instant::now() + Duration::from_secs(1));
            let _ = done.send(accepted.is_err());
        });
        let ended = outcome.recv_timeout(Duration::from_secs(4));
        let _ = peer.join();
        ended == Ok(true)
    }
}
