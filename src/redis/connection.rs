//! A blocking connection to one Redis server (TCP or Unix socket) and the
//! procedure that makes it write a fresh RDB snapshot. Here live AUTH, the
//! mapping of commands renamed in redis.conf, the translation of Redis's error
//! replies into one-line messages that say what to do, the wait for "our"
//! BGSAVE, and the time limits of every exchange: each command, its whole reply
//! included, has a deadline (`redis_timeout`), and a replication sync a budget
//! of waiting (`save_timeout`), so that a server trickling bytes cannot hold
//! the host lock for ever. Files on disk are someone else's business.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info};

use crate::error::{Error, Result};
use crate::redis::replication::SyncReader;
use crate::redis::resp::{self, RespError, Value};
use crate::redis::{arrival, tcp_owner, unix_socket};
use crate::secret::Secret;

/// Where Redis listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp {
        host: String,
        port: u16,
    },
    /// A port of this host, where any account may listen while Redis does
    /// not: used only if the socket that takes the connection is root's or
    /// one of `owners`' (`tcp_owner`).
    TcpOf {
        host: String,
        port: u16,
        owners: Vec<u32>,
    },
    /// A socket root chose (the settings; a server of the tool's own that
    /// nobody else can reach).
    Unix(PathBuf),
    /// A socket someone else named or can replace: used only if it is a
    /// socket of one of `owners` (`unix_socket`).
    UnixOf {
        path: PathBuf,
        owners: Vec<u32>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } | Endpoint::TcpOf { host, port, .. }
                if host.contains(':') =>
            {
                write!(f, "[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } | Endpoint::TcpOf { host, port, .. } => {
                write!(f, "{host}:{port}")
            }
            Endpoint::Unix(path) | Endpoint::UnixOf { path, .. } => {
                write!(f, "unix:{}", path.display())
            }
        }
    }
}

/// Everything needed to open a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub endpoint: Endpoint,
    /// ACL user; `None` authenticates as `default`.
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// From redis.conf: lower-case original name → new name, "" = disabled.
    pub renamed_commands: HashMap<String, String>,
    /// Connect, read and write timeout, and the deadline of each command
    /// with its whole reply (the `redis_timeout` setting). Zero: none.
    pub timeout: Duration,
}

/// The limits of a replication sync (`sync_rdb_within`), from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncLimits {
    /// How long Redis may keep us waiting in all, from SYNC to the RDB's last
    /// byte: keep-alives, the preamble and every wait for RDB bytes count,
    /// the time we spend storing what arrived does not (`save_timeout`:
    /// making the RDB is a save). Silence longer than the connection's
    /// `timeout` ends the sync sooner.
    pub wait: Duration,
    /// The longest RDB taken (`max_rdb_size`).
    pub max_rdb_size: u64,
}

/// What `snapshot` reports once Redis has written our RDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOutcome {
    /// LASTSAVE (Unix seconds) after our save.
    pub lastsave: i64,
    /// How long `snapshot` took, including waiting for someone else's save.
    pub duration: Duration,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// The socket, with the time limits of the exchange under way. Each read
/// waits at most `per_read` (a Redis silent that long is gone); the reads and
/// writes of one exchange together wait at most its budget, so a reply that
/// trickles in a byte at a time cannot stretch it. Before each read the
/// socket's timeout is set to whichever is shorter.
struct Timed {
    stream: Stream,
    per_read: Option<Duration>,
    exchange: Option<Exchange>,
    /// The read timeout now set on the socket (`None`: not set by us yet).
    applied: Option<Option<Duration>>,
    /// Reads ask when the kernel received what they take (`arrival`).
    stamped: bool,
    /// When the kernel received the newest byte the last read took.
    newest_arrival: Option<u64>,
}

/// What one exchange may spend waiting, and what to say when it has.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    budget: Duration,
    left: Duration,
    /// What did not arrive in time, and the setting that bounds it.
    what: &'static str,
    setting: &'static str,
}

impl Exchange {
    fn new(budget: Duration, what: &'static str, setting: &'static str) -> Exchange {
        Exchange {
            budget,
            left: budget,
            what,
            setting,
        }
    }
}

impl Timed {
    fn new(stream: Stream, per_read: Option<Duration>) -> Timed {
        Timed {
            stream,
            per_read,
            exchange: None,
            applied: None,
            stamped: false,
            newest_arrival: None,
        }
    }

    /// From now on, note when what each read takes was received (TCP only).
    fn stamp_arrivals(&mut self) {
        if let Stream::Tcp(s) = &self.stream {
            self.stamped = arrival::stamp_from_now(s).is_ok();
        }
    }

    /// From now on, wait at most `exchange.budget` in all (`None`: only
    /// `per_read` for each read).
    fn begin(&mut self, exchange: Option<Exchange>) {
        self.exchange = exchange;
    }

    fn spend(&mut self, waited: Duration) {
        if let Some(x) = &mut self.exchange {
            x.left = x.left.saturating_sub(waited);
        }
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.applied != Some(timeout) {
            match &self.stream {
                Stream::Tcp(s) => s.set_read_timeout(timeout)?,
                Stream::Unix(s) => s.set_read_timeout(timeout)?,
            }
            self.applied = Some(timeout);
        }
        Ok(())
    }

    /// The budget is spent: an error that says which limit, and where it is set.
    fn expired(x: &Exchange) -> io::Error {
        let msg = format!(
            "{} did not arrive within {} ({}s of waiting in all)",
            x.what,
            x.setting,
            crate::units::seconds(x.budget, 1)
        );
        io::Error::new(io::ErrorKind::TimedOut, Error::redis(msg))
    }

    fn silent(per_read: Duration) -> io::Error {
        let msg = format!(
            "Redis sent nothing for redis_timeout ({}s)",
            crate::units::seconds(per_read, 1)
        );
        io::Error::new(io::ErrorKind::TimedOut, Error::redis(msg))
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (timeout, by_budget) = match (self.exchange, self.per_read) {
            (Some(x), _) if x.left.is_zero() => return Err(Timed::expired(&x)),
            (Some(x), Some(per_read)) if per_read < x.left => (Some(per_read), false),
            (Some(x), _) => (Some(x.left), true),
            (None, per_read) => (per_read, false),
        };
        self.set_read_timeout(timeout)?;
        let started = Instant::now();
        self.newest_arrival = None;
        let result = match &mut self.stream {
            Stream::Tcp(s) if self.stamped => arrival::read(s, buf).map(|(n, at)| {
                self.newest_arrival = at;
                n
            }),
            stream => stream.read(buf),
        };
        self.spend(started.elapsed());
        match result {
            Err(e) if is_timeout(&e) => match self.exchange {
                Some(mut x) if by_budget || x.left.is_zero() => {
                    x.left = Duration::ZERO;
                    self.exchange = Some(x);
                    Err(Timed::expired(&x))
                }
                _ => Err(timeout.map_or(e, Timed::silent)),
            },
            other => other,
        }
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let started = Instant::now();
        let result = self.stream.write(buf);
        self.spend(started.elapsed());
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// What may be said of a refused AUTH: its code, and the server's words
/// only where they are known to quote nothing. Other replies are not
/// shown: an "unknown command" (AUTH renamed on the server) quotes the
/// arguments, cut at 128 bytes and with CR and LF made spaces, so no
/// replacing of the password could be sure to catch it.
fn auth_refusal(text: &str) -> String {
    let code = text.split_whitespace().next().unwrap_or("ERR");
    let code: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    let lower = text.to_ascii_lowercase();
    let why = if lower.contains("unknown command") {
        "AUTH is not a command this server knows: renamed? (rename-command in redis.conf)"
    } else if lower.contains("without any password configured") {
        "the server has no password for this user: remove redis_password"
    } else if code == "WRONGPASS" {
        "invalid username-password pair or user is disabled"
    } else if lower.contains("invalid password") {
        "invalid password"
    } else {
        "the server's reply is not shown: it may quote the password"
    };
    format!("{code} {why}")
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The RDB of a replication sync, as a plain reader. Its errors carry an
/// `Error` of Redis's kind (exit 3) that names the server and the limit.
pub struct SyncRdb(RdbFrom<BufReader<Timed>>);

impl Read for SyncRdb {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// The RDB part of a sync reply, from the server at `endpoint`.
struct RdbFrom<R> {
    reader: SyncReader<R>,
    endpoint: Endpoint,
}

impl<R: io::BufRead> Read for RdbFrom<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).map_err(|e| {
            let err = Error::from_io(e).unwrap_or_else(|e| Error::redis(e.to_string()));
            err.context(format!("reading the RDB from Redis at {}", self.endpoint))
                .into()
        })
    }
}

/// How a primary answered PSYNC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Psync {
    /// A full resync: the RDB at `offset` of history `replid` comes first.
    Full { replid: String, offset: u64 },
    /// The stream goes on from the offset asked for; `replid` is set when
    /// the primary now calls the history by another ID (a failover).
    Continue { replid: Option<String> },
}

/// A replica's link after PSYNC: the stream to read, and a way to send
/// `REPLCONF ACK` from another thread while the reader waits.
pub struct ReplicaLink {
    input: BufReader<Timed>,
    /// Stream bytes already read past the RDB's end mark.
    pending: Vec<u8>,
    closer: Stream,
    output: Mutex<Stream>,
    endpoint: Endpoint,
}

impl ReplicaLink {
    /// Hand the RDB of a full resync to `take` as a reader (cut at
    /// `limits.max_rdb_size`, with `limits.wait` for Redis to make it), then
    /// go on to the stream that follows it.
    pub fn take_rdb<T>(
        &mut self,
        limits: SyncLimits,
        take: impl FnOnce(&mut (dyn Read + Send)) -> Result<T>,
    ) -> Result<T> {
        let exchange = Exchange::new(limits.wait, "the RDB", "save_timeout");
        self.input.get_mut().begin(Some(exchange));
        let endpoint = self.endpoint.clone();
        let reader = SyncReader::start(&mut self.input, limits.max_rdb_size)
            .map_err(|e| e.context(format!("PSYNC with Redis at {endpoint}")))?;
        let mut rdb = RdbFrom { reader, endpoint };
        let taken = take(&mut rdb)?;
        // Whoever took it must have read it to its end.
        if rdb
            .read(&mut [0u8; 1])
            .map_err(|e| Error::from_io(e).unwrap_or_else(|e| Error::redis(e.to_string())))?
            != 0
        {
            return Err(Error::other(
                "the RDB of the resync was not read to its end",
            ));
        }
        self.pending = rdb.reader.leftover();
        self.input.get_mut().begin(None);
        Ok(taken)
    }

    /// Split into the reading half and the acknowledging half.
    pub fn split(mut self) -> (ReplicaInput, ReplicaAcks) {
        self.input.get_mut().stamp_arrivals();
        (
            ReplicaInput {
                input: self.input,
                pending: self.pending,
                endpoint: self.endpoint.clone(),
            },
            ReplicaAcks {
                closer: self.closer,
                output: self.output,
                endpoint: self.endpoint,
            },
        )
    }
}

/// The stream from the primary, as bytes.
pub struct ReplicaInput {
    input: BufReader<Timed>,
    pending: Vec<u8>,
    endpoint: Endpoint,
}

impl Read for ReplicaInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        self.input.read(buf).map_err(|e| {
            // Left as it is, for the caller to read again (see `Reader::run`).
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            let err = Error::from_io(e).unwrap_or_else(|e| Error::redis(e.to_string()));
            err.context(format!("the replication stream from {}", self.endpoint))
                .into()
        })
    }
}

impl ReplicaInput {
    /// Bytes received but not read yet: a read returns these, not what the
    /// socket holds.
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.input.buffer().len()
    }

    /// What the socket holds: received, not read yet (`None` if the kernel
    /// cannot say).
    pub fn queued(&self) -> Option<u64> {
        let queued = match &self.input.get_ref().stream {
            Stream::Tcp(s) => rustix::io::ioctl_fionread(s),
            Stream::Unix(s) => rustix::io::ioctl_fionread(s),
        };
        queued.ok()
    }

    /// When the kernel received the newest byte the last read from the
    /// socket took (µs since the epoch; `None` if it does not say, as on a
    /// Unix socket).
    pub fn newest_arrival(&self) -> Option<u64> {
        self.input.get_ref().newest_arrival
    }
}

/// Sends `REPLCONF ACK` on the link.
pub struct ReplicaAcks {
    /// For `close`, apart from `output`: an ACK blocked in a write (a
    /// primary that stopped reading) must not hold the link open.
    closer: Stream,
    output: Mutex<Stream>,
    endpoint: Endpoint,
}

impl ReplicaAcks {
    pub fn ack(&self, offset: u64) -> Result<()> {
        let offset = offset.to_string();
        let mut out = self.output.lock().unwrap_or_else(|e| e.into_inner());
        resp::write_command(&mut *out, &[b"REPLCONF", b"ACK", offset.as_bytes()])
            .map_err(|e| Error::redis(format!("sending REPLCONF ACK to {}: {e}", self.endpoint)))
    }

    /// End the link both ways: a reader waiting on it wakes up.
    pub fn close(&self) {
        let _ = match &self.closer {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

/// More than any server's INFO section (they are a few KiB): each line of
/// one is kept in a map, and what is built from them goes into a record.
const MAX_INFO_SIZE: usize = 1 << 20;

/// More than any server's version (`7.2.4`, `8.0.0-rc1`).
const MAX_VERSION_LEN: usize = 64;

/// How often `snapshot` asks Redis whether the save has finished: quickly at
/// first, since small datasets save in milliseconds, then a little slower.
const FAST_POLL: Duration = Duration::from_millis(50);
/// Ten times the longest kernel tick (HZ 100): see `wait_for_clock_past`.
const LASTSAVE_TICK: Duration = Duration::from_millis(100);
const SLOW_POLL: Duration = Duration::from_millis(100);
const FAST_POLL_FOR: Duration = Duration::from_secs(1);

/// The server's name and version, and the Redis version it reports
/// (the same for Redis; Valkey's compatibility version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub version: String,
    pub redis_version: String,
}

/// One open, authenticated connection.
pub struct Connection {
    /// Reads go through the buffer; writes go straight to the inner stream
    /// (`get_mut`), which is safe because RESP is strictly request/reply.
    stream: BufReader<Timed>,
    endpoint: Endpoint,
    user: Option<String>,
    renamed: HashMap<String, String>,
    timeout: Duration,
    /// Set after an I/O or protocol error: the reply stream may be out of
    /// step, so any later reply could belong to an earlier command.
    broken: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects, authenticates if a password is set, and checks with PING
    /// that Redis will serve us (not loading, password accepted).
    pub fn connect(options: &ConnectOptions) -> Result<Connection> {
        let endpoint = &options.endpoint;
        let stream = match endpoint {
            Endpoint::Tcp { host, port } => {
                Stream::Tcp(connect_tcp(host, *port, options.timeout, endpoint)?)
            }
            Endpoint::TcpOf { host, port, owners } => {
                let stream = connect_tcp(host, *port, options.timeout, endpoint)?;
                tcp_owner::check(&stream, owners, options.timeout)
                    .map_err(|e| unreachable(endpoint, &e))?;
                Stream::Tcp(stream)
            }
            Endpoint::Unix(path) => Stream::Unix(
                unix_socket::connect(path, None, options.timeout)
                    .map_err(|e| unreachable(endpoint, &e))?,
            ),
            Endpoint::UnixOf { path, owners } => Stream::Unix(
                unix_socket::connect(path, Some(owners), options.timeout)
                    .map_err(|e| unreachable(endpoint, &e))?,
            ),
        };
        // Zero means "no timeout" here; std refuses a zero timeout.
        let timeout = Some(options.timeout).filter(|t| !t.is_zero());
        let set = match &stream {
            Stream::Tcp(s) => s
                .set_read_timeout(timeout)
                .and_then(|()| s.set_write_timeout(timeout))
                .and_then(|()| s.set_nodelay(true)),
            Stream::Unix(s) => s
                .set_read_timeout(timeout)
                .and_then(|()| s.set_write_timeout(timeout)),
        };
        set.map_err(|e| Error::redis(format!("cannot set timeouts on {endpoint}: {e}")))?;
        let mut conn = Connection {
            stream: BufReader::new(Timed::new(stream, timeout)),
            endpoint: endpoint.clone(),
            user: options.user.clone(),
            renamed: options
                .renamed_commands
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            timeout: options.timeout,
            broken: false,
        };
        debug!("connected to Redis at {endpoint}");
        if let Some(password) = &options.password {
            conn.auth(password)?;
        }
        conn.ping()?;
        Ok(conn)
    }

    /// Whether something accepts connections where `options` point; it is
    /// told nothing.
    pub fn something_listens(options: &ConnectOptions) -> bool {
        let endpoint = &options.endpoint;
        match endpoint {
            Endpoint::Tcp { host, port } | Endpoint::TcpOf { host, port, .. } => {
                connect_tcp(host, *port, options.timeout, endpoint).is_ok()
            }
            Endpoint::Unix(path) | Endpoint::UnixOf { path, .. } => {
                unix_socket::connect(path, None, options.timeout).is_ok()
            }
        }
    }

    fn auth(&mut self, password: &Secret) -> Result<()> {
        let pass = password.expose().as_bytes();
        let reply = match self.user.clone() {
            Some(user) => self.call_raw("AUTH", &[user.as_bytes(), pass])?,
            None => self.call_raw("AUTH", &[pass])?,
        };
        match reply {
            Value::Error(text) => Err(self.server_error("AUTH", &auth_refusal(&text))),
            _ => Ok(()),
        }
    }

    fn ping(&mut self) -> Result<()> {
        match self.call_raw("PING", &[])? {
            // An ACL user that may not PING can still be a fine backup user.
            Value::Error(text) if text.starts_with("NOPERM") => Ok(()),
            // After a failed save Redis refuses even PING (stop-writes-on-
            // bgsave-error) until a save succeeds: a backup is what fixes it.
            Value::Error(text) if text.starts_with("MISCONF") => {
                log::warn!("Redis at {} reports its last save failed (MISCONF); a new save will be attempted", self.endpoint);
                Ok(())
            }
            Value::Error(text) => Err(self.server_error("PING", &text)),
            _ => Ok(()),
        }
    }

    /// Turn this connection into the stream of a replica's initial sync and
    /// return the RDB in it as a reader: `REPLCONF capa eof`, `REPLCONF
    /// rdb-only 1` (Redis 7 ends the sync after the RDB; older servers refuse
    /// it, which is fine), then `SYNC`. From SYNC on, Redis may keep us
    /// waiting `limits.wait` in all, and the RDB is cut at
    /// `limits.max_rdb_size`.
    pub fn sync_rdb_within(mut self, limits: SyncLimits) -> Result<SyncRdb> {
        self.call("REPLCONF", &[b"capa", b"eof"])?;
        if let Value::Error(text) = self.call_raw("REPLCONF", &[b"rdb-only", b"1"])? {
            debug!("REPLCONF rdb-only refused ({text}); reading up to the RDB's end");
        }
        let name = self.wire_name("SYNC")?;
        debug!("-> SYNC");
        let exchange = Exchange::new(limits.wait, "the RDB", "save_timeout");
        self.stream.get_mut().begin(Some(exchange));
        resp::write_command(self.stream.get_mut(), &[name.as_bytes()]).map_err(|e| {
            Error::redis(format!("sending SYNC to Redis at {}: {e}", self.endpoint))
        })?;
        let endpoint = self.endpoint.clone();
        let reader = SyncReader::start(self.stream, limits.max_rdb_size)
            .map_err(|e| e.context(format!("SYNC with Redis at {endpoint}")))?;
        Ok(SyncRdb(RdbFrom { reader, endpoint }))
    }

    /// Turn this connection into a replica's link to the primary: announce
    /// what we understand (`capa eof psync2`), then `PSYNC replid offset`
    /// (the next byte wanted) or, with nothing to continue, `PSYNC ? -1`.
    /// Redis may keep us waiting `wait` for the answer (it answers a full
    /// resync only when the save for it starts, sending lone `\n` until then).
    pub fn psync(
        mut self,
        from: Option<(&str, u64)>,
        wait: Duration,
    ) -> Result<(Psync, ReplicaLink)> {
        self.call("REPLCONF", &[b"capa", b"eof", b"capa", b"psync2"])?;
        let (replid, offset) = match from {
            Some((replid, next)) => (replid.to_string(), next.to_string()),
            None => ("?".to_string(), "-1".to_string()),
        };
        let text = self.psync_answer(wait, &replid, &offset)?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let well_formed_id = |id: &str| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let psync = match words.as_slice() {
            ["FULLRESYNC", id, offset] if well_formed_id(id) => Psync::Full {
                replid: id.to_string(),
                // Offsets count bytes since the history began: far below
                // 2^62 for any server, and room to add to them.
                offset: offset
                    .parse::<u64>()
                    .ok()
                    .filter(|o| *o < 1 << 62)
                    .ok_or_else(|| {
                        Error::redis(format!(
                            "Redis sent a malformed FULLRESYNC offset: {text:?}"
                        ))
                    })?,
            },
            ["CONTINUE"] => Psync::Continue { replid: None },
            ["CONTINUE", id] if well_formed_id(id) => Psync::Continue {
                replid: Some(id.to_string()),
            },
            _ => {
                return Err(Error::redis(format!(
                    "Redis at {} answered PSYNC with {text:?}",
                    self.endpoint
                )))
            }
        };
        let clone = |stream: &Stream| {
            stream.try_clone().map_err(|e| {
                Error::redis(format!(
                    "cannot share the replication link to {}: {e}",
                    self.endpoint
                ))
            })
        };
        let output = clone(&self.stream.get_ref().stream)?;
        let closer = clone(&self.stream.get_ref().stream)?;
        // A primary PINGs its replicas every 10 s by default: silence past
        // redis_timeout means the link is gone.
        self.stream.get_mut().begin(None);
        Ok((
            psync,
            ReplicaLink {
                input: self.stream,
                pending: Vec::new(),
                closer,
                output: Mutex::new(output),
                endpoint: self.endpoint,
            },
        ))
    }

    /// Send PSYNC and read its one-line answer, past keep-alives.
    fn psync_answer(&mut self, wait: Duration, replid: &str, offset: &str) -> Result<String> {
        let name = self.wire_name("PSYNC")?;
        debug!("-> PSYNC {replid} {offset}");
        let exchange = Exchange::new(wait, "the answer to PSYNC", "save_timeout");
        self.stream.get_mut().begin(Some(exchange));
        let args: [&[u8]; 3] = [name.as_bytes(), replid.as_bytes(), offset.as_bytes()];
        let endpoint = self.endpoint.clone();
        let failed = |e: io::Error| {
            let err = Error::from_io(e).unwrap_or_else(|e| Error::redis(e.to_string()));
            err.context(format!("PSYNC with Redis at {endpoint}"))
        };
        resp::write_command(self.stream.get_mut(), &args).map_err(failed)?;
        let line = loop {
            let mut line = Vec::new();
            io::BufRead::read_until(&mut (&mut self.stream).take(512), b'\n', &mut line)
                .map_err(failed)?;
            match line.as_slice() {
                [] => {
                    return Err(Error::redis(format!(
                        "Redis at {} closed the connection after PSYNC",
                        self.endpoint
                    )))
                }
                b"\n" => continue,
                _ => break line,
            }
        };
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        match text.strip_prefix('-') {
            Some(error) => Err(self.server_error("PSYNC", error)),
            None => Ok(text.trim_start_matches('+').to_string()),
        }
    }

    /// The deadline of each command from now on (zero: none).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs a command and turns an error reply into `Error::Redis`.
    pub fn call(&mut self, command: &str, args: &[&[u8]]) -> Result<Value> {
        match self.call_raw(command, args)? {
            Value::Error(text) => Err(self.server_error(command, &text)),
            value => Ok(value),
        }
    }

    /// Runs a command and returns the reply as it is, error replies included,
    /// for callers that handle particular errors themselves. Transport and
    /// protocol failures, and a command disabled by rename-command, are still
    /// `Err`.
    pub fn call_raw(&mut self, command: &str, args: &[&[u8]]) -> Result<Value> {
        let name = self.wire_name(command)?;
        if self.broken {
            return Err(Error::redis(format!(
                "the connection to Redis at {} is unusable after an earlier error",
                self.endpoint
            )));
        }
        let mut argv: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
        argv.push(name.as_bytes());
        argv.extend_from_slice(args);
        // Only the name and the count: arguments may be a password.
        debug!("-> {command} ({} arguments)", args.len());
        let deadline = Some(self.timeout)
            .filter(|t| !t.is_zero())
            .map(|t| Exchange::new(t, "the reply", "redis_timeout"));
        self.stream.get_mut().begin(deadline);
        let sent = resp::write_command(self.stream.get_mut(), &argv);
        let reply = sent
            .map_err(RespError::Io)
            .and_then(|()| resp::read_value(&mut self.stream));
        match reply {
            Ok(value) => {
                // An error about AUTH might quote its arguments; see `auth`.
                match &value {
                    Value::Error(_) if command.eq_ignore_ascii_case("AUTH") => {
                        debug!("<- {command}: error reply")
                    }
                    Value::Error(text) => debug!("<- {command}: -{text}"),
                    _ => {}
                }
                Ok(value)
            }
            Err(e) => {
                self.broken = true;
                Err(self.transport_error(command, e))
            }
        }
    }

    /// Whether rename-command in redis.conf took `command` away.
    pub fn disabled(&self, command: &str) -> bool {
        self.renamed
            .get(&command.to_ascii_lowercase())
            .is_some_and(String::is_empty)
    }

    /// The name to send for `command`, after rename-command.
    fn wire_name(&self, command: &str) -> Result<String> {
        match self.renamed.get(&command.to_ascii_lowercase()) {
            Some(new) if new.is_empty() => Err(Error::redis(format!(
                "the command {} is disabled by rename-command in redis.conf; this tool needs it",
                command.to_ascii_uppercase()
            ))),
            Some(new) => Ok(new.clone()),
            None => Ok(command.to_string()),
        }
    }

    fn transport_error(&self, command: &str, e: RespError) -> Error {
        let ep = &self.endpoint;
        let msg = match &e {
            _ if e.is_timeout() => format!(
                "Redis at {ep} did not answer {command} within {}s (setting redis_timeout)",
                crate::units::seconds(self.timeout, 1)
            ),
            RespError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
                format!("Redis at {ep} closed the connection during {command}")
            }
            RespError::Io(io) => {
                format!("lost the connection to Redis at {ep} during {command}: {io}")
            }
            RespError::Protocol(m) => {
                format!("Redis at {ep} sent a malformed reply to {command}: {m}")
            }
        };
        Error::redis(msg)
    }

    /// Turns an error reply into a message that says what to do.
    fn server_error(&self, command: &str, text: &str) -> Error {
        let ep = &self.endpoint;
        let command = command.to_ascii_uppercase();
        let code = text.split_whitespace().next().unwrap_or("");
        let user = self.user.as_deref().unwrap_or("default");
        let msg = match code {
            "NOAUTH" => format!(
                "Redis at {ep} requires a password; set redis_password in the settings file \
                 or requirepass in redis.conf"
            ),
            "WRONGPASS" => format!("Redis at {ep} rejected the password ({text})"),
            "NOPERM" => format!(
                "Redis user {user} may not run {command} (NOPERM); grant it with \
                 ACL SETUSER {user} +{} or use another user",
                command.to_ascii_lowercase()
            ),
            "LOADING" => format!(
                "Redis at {ep} is still loading its dataset; try again when it has finished"
            ),
            _ if command == "AUTH" && text.contains("invalid password") => {
                format!("Redis at {ep} rejected the password ({text})")
            }
            _ => format!("Redis at {ep} refused {command}: {text}"),
        };
        Error::redis(msg)
    }

    /// `INFO section` as a map of its `key:value` lines.
    pub fn info(&mut self, section: &str) -> Result<HashMap<String, String>> {
        let text = self.bulk_text("INFO", &[section.as_bytes()])?;
        if text.len() > MAX_INFO_SIZE {
            return Err(Error::redis(format!(
                "Redis at {} sent an INFO {section} of {} bytes, more than any server's ({MAX_INFO_SIZE})",
                self.endpoint,
                text.len()
            )));
        }
        Ok(parse_info(&text))
    }

    /// LASTSAVE: Unix time of the last successful save.
    pub fn lastsave(&mut self) -> Result<i64> {
        match self.call("LASTSAVE", &[])? {
            Value::Integer(t) => Ok(t),
            other => Err(self.unexpected("LASTSAVE", &other)),
        }
    }

    /// The server's clock, in whole seconds (TIME).
    pub fn time_micros(&mut self) -> Result<i64> {
        let items = match self.call("TIME", &[])? {
            Value::Array(Some(items)) => items,
            other => return Err(self.unexpected("TIME", &other)),
        };
        let number = |at: usize| match items.get(at) {
            Some(Value::Bulk(Some(digits))) => {
                std::str::from_utf8(digits).ok()?.parse::<i64>().ok()
            }
            _ => None,
        };
        match (number(0), number(1)) {
            (Some(secs), Some(micros)) if (0..1_000_000).contains(&micros) => secs
                .checked_mul(1_000_000)
                .and_then(|whole| whole.checked_add(micros))
                .ok_or_else(|| Error::redis(format!("Redis at {} sent a bad TIME", self.endpoint))),
            _ => Err(Error::redis(format!(
                "Redis at {} sent a bad TIME",
                self.endpoint
            ))),
        }
    }

    /// `CONFIG GET name`. `Ok(None)` when the parameter is unknown or CONFIG
    /// is disabled or refused, so the caller can fall back to redis.conf.
    pub fn config_get(&mut self, name: &str) -> Result<Option<String>> {
        if self.wire_name("CONFIG").is_err() {
            debug!("CONFIG is disabled by rename-command; not asking for {name}");
            return Ok(None);
        }
        match self.call_raw("CONFIG", &[b"GET", name.as_bytes()])? {
            Value::Array(Some(items)) => match items.get(1) {
                Some(Value::Bulk(Some(v))) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
                _ => Ok(None),
            },
            Value::Error(text) => {
                debug!("CONFIG GET {name} refused ({text}); falling back to redis.conf");
                Ok(None)
            }
            other => Err(self.unexpected("CONFIG GET", &other)),
        }
    }

    /// Keys (and keys with a TTL) per database, from INFO keyspace.
    pub fn keyspace(&mut self) -> Result<BTreeMap<u32, DbCount>> {
        let info = self.info("keyspace")?;
        Ok(parse_keyspace(&info))
    }

    /// `redis_version` from INFO server.
    /// What the server is: Valkey reports its own name and version beside
    /// the Redis version it is compatible with.
    pub fn server(&mut self) -> Result<Server> {
        let mut info = self.info("server")?;
        let redis_version = info.remove("redis_version").ok_or_else(|| {
            Error::redis(format!(
                "Redis at {} did not report redis_version",
                self.endpoint
            ))
        })?;
        let redis_version = self.version("redis_version", redis_version)?;
        let (name, version) = match (info.remove("server_name"), info.remove("valkey_version")) {
            (Some(name), Some(version)) if name == "valkey" => {
                (name, self.version("valkey_version", version)?)
            }
            _ => ("redis".to_string(), redis_version.clone()),
        };
        Ok(Server {
            name,
            version,
            redis_version,
        })
    }

    /// `value` of INFO's `field` if it is a version: it goes into records
    /// and the identity of backups, whose fields are capped.
    fn version(&self, field: &str, value: String) -> Result<String> {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"._+-".contains(&b);
        if (1..=MAX_VERSION_LEN).contains(&value.len()) && value.bytes().all(token) {
            return Ok(value);
        }
        let shown: String = value.chars().take(MAX_VERSION_LEN).collect();
        Err(Error::redis(format!(
            "Redis at {} reported a {field} that is not a version ({} bytes: {shown:?}{})",
            self.endpoint,
            value.len(),
            if shown.len() < value.len() { "..." } else { "" }
        )))
    }

    fn bulk_text(&mut self, command: &str, args: &[&[u8]]) -> Result<String> {
        match self.call(command, args)? {
            Value::Bulk(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            other => Err(self.unexpected(command, &other)),
        }
    }

    fn unexpected(&self, command: &str, value: &Value) -> Error {
        debug!("unexpected reply to {command}: {value:?}");
        Error::redis(format!(
            "Redis at {} sent an unexpected reply to {command}",
            self.endpoint
        ))
    }

    /// Makes Redis write a fresh RDB and returns once *our* BGSAVE has
    /// finished successfully.
    ///
    /// Why this is enough to know that our save finished:
    /// - Redis runs at most one fork child at a time (RDB save, AOF rewrite or
    ///   module fork). BGSAVE replies "Background saving started" only when it
    ///   forked a child for us, so from that reply on, the running RDB child is
    ///   ours until it exits; seeing `rdb_bgsave_in_progress:0` after the reply
    ///   means ours has ended. A save someone else started earlier cannot be
    ///   mistaken for ours: it must end before ours can start.
    /// - `rdb_saves` (7.0+) is incremented when a background save *starts*
    ///   (checked on 7.0.15: it reads 1 while the first save is still running).
    ///   So it does not by itself say a save *finished*, and another save
    ///   finishing between our BGSAVE reply and our poll cannot move it for
    ///   us. We still require it to be above the value read before our
    ///   BGSAVE: after a "started" reply it always is, and after a
    ///   "scheduled" reply (Redis answers that inside MULTI, which we never
    ///   send) it keeps an idle server from passing for a finished save.
    /// - Without `rdb_saves`, LASTSAVE must move. It has one-second resolution,
    ///   so before BGSAVE we wait until the server's clock is past the old
    ///   LASTSAVE: a save started after that cannot leave LASTSAVE unchanged.
    /// - `rdb_last_bgsave_status` tells whether the save that ended last, ours
    ///   or a newer one, worked; a failed save never replaces the RDB file.
    pub fn snapshot(&mut self, timeout: Duration) -> Result<SnapshotOutcome> {
        let started = Instant::now();
        let deadline = started + timeout;
        let (saves_before, lastsave_before) = loop {
            let persistence = self.wait_for_idle_child(started, deadline, timeout)?;
            let saves_before = parse_field::<u64>(&persistence, "rdb_saves");
            let lastsave_before = self.lastsave()?;
            if saves_before.is_none() {
                self.wait_for_clock_past(lastsave_before, started, deadline, timeout)?;
            }
            match self.call_raw("BGSAVE", &[])? {
                Value::Simple(reply) => {
                    debug!("BGSAVE: {reply}");
                    break (saves_before, lastsave_before);
                }
                // Someone started a save between our check and our BGSAVE, or
                // an AOF rewrite is running: wait for it and try again. (BGSAVE
                // SCHEDULE would start the save later, when we could no longer
                // tell it apart from a save someone else starts meanwhile.)
                Value::Error(text)
                    if text.contains("already in progress")
                        || text.contains("Another child process") =>
                {
                    debug!("BGSAVE deferred: {text}");
                    self.sleep_until_next_poll(started, deadline, timeout)?;
                }
                Value::Error(text) => return Err(self.server_error("BGSAVE", &text)),
                other => return Err(self.unexpected("BGSAVE", &other)),
            }
        };
        let save_started = Instant::now();
        loop {
            self.sleep_until_next_poll(started, deadline, timeout)?;
            let persistence = self.info("persistence")?;
            if field(&persistence, "rdb_bgsave_in_progress") != Some("0") {
                continue;
            }
            if field(&persistence, "rdb_last_bgsave_status") != Some("ok") {
                return Err(Error::redis(
                    "BGSAVE failed on the Redis server (rdb_last_bgsave_status:err); check Redis's \
                     log and free space/permissions in its dir",
                ));
            }
            let lastsave = match parse_field::<i64>(&persistence, "rdb_last_save_time") {
                Some(t) => t,
                None => self.lastsave()?,
            };
            let ours_done = match saves_before {
                Some(before) => {
                    parse_field::<u64>(&persistence, "rdb_saves").is_some_and(|n| n > before)
                }
                None => lastsave > lastsave_before,
            };
            if ours_done {
                info!(
                    "Redis wrote a fresh RDB snapshot in {}s",
                    crate::units::seconds(save_started.elapsed(), 2)
                );
                return Ok(SnapshotOutcome {
                    lastsave,
                    duration: started.elapsed(),
                });
            }
        }
    }

    /// Polls INFO persistence until no RDB save or AOF rewrite is running.
    fn wait_for_idle_child(
        &mut self,
        started: Instant,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<HashMap<String, String>> {
        let mut logged = false;
        loop {
            let persistence = self.info("persistence")?;
            let busy = ["rdb_bgsave_in_progress", "aof_rewrite_in_progress"]
                .into_iter()
                .find(|f| field(&persistence, f).is_some_and(|v| v != "0"));
            match busy {
                None => return Ok(persistence),
                Some(what) if !logged => {
                    info!("waiting for a save already running in Redis to finish ({what})");
                    logged = true;
                }
                Some(_) => {}
            }
            self.sleep_until_next_poll(started, deadline, timeout)?;
        }
    }

    /// Waits until the server's clock has passed `lastsave` (whole seconds)
    /// by `LASTSAVE_TICK`. LASTSAVE is Redis's `time(NULL)`, the kernel's
    /// coarse clock, a tick (4 to 10 ms) behind TIME's: a save begun as
    /// TIME passed the second and ended within that tick was dated the
    /// second before, LASTSAVE never moved, and the backup waited out
    /// `save_timeout` (Redis 6.2, once in CI).
    fn wait_for_clock_past(
        &mut self,
        lastsave: i64,
        started: Instant,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<()> {
        let past = lastsave
            .saturating_add(1)
            .saturating_mul(1_000_000)
            .saturating_add(LASTSAVE_TICK.as_micros() as i64);
        while self.time_micros()? < past {
            self.sleep_until_next_poll(started, deadline, timeout)?;
        }
        Ok(())
    }

    fn sleep_until_next_poll(
        &self,
        started: Instant,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<()> {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::redis(format!(
                "Redis at {} did not finish the snapshot within {}s (setting save_timeout); \
                 a save may still be running there",
                self.endpoint,
                crate::units::seconds(timeout, 1)
            )));
        }
        let interval = if now - started < FAST_POLL_FOR {
            FAST_POLL
        } else {
            SLOW_POLL
        };
        thread::sleep(interval.min(deadline - now));
        Ok(())
    }
}

fn connect_tcp(host: &str, port: u16, timeout: Duration, endpoint: &Endpoint) -> Result<TcpStream> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::redis(format!("cannot resolve the Redis host {host}: {e}")))?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name has no addresses");
    for addr in &addrs {
        let attempt = if timeout.is_zero() {
            TcpStream::connect(addr)
        } else {
            TcpStream::connect_timeout(addr, timeout)
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                debug!("connecting to {addr}: {e}");
                last = e;
            }
        }
    }
    Err(unreachable(endpoint, &last))
}

fn unreachable(endpoint: &Endpoint, e: &io::Error) -> Error {
    let why = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::NotFound
            if !matches!(endpoint, Endpoint::Tcp { .. } | Endpoint::TcpOf { .. }) =>
        {
            "no such socket".to_string()
        }
        io::ErrorKind::PermissionDenied
            if matches!(endpoint, Endpoint::UnixOf { .. } | Endpoint::TcpOf { .. }) =>
        {
            e.to_string()
        }
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".to_string(),
        _ => e.to_string(),
    };
    Error::redis(format!(
        "cannot reach Redis at {endpoint} ({why}); is the service running?"
    ))
}

fn field<'a>(map: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    map.get(name).map(String::as_str)
}

fn parse_field<T: std::str::FromStr>(map: &HashMap<String, String>, name: &str) -> Option<T> {
    field(map, name).and_then(|v| v.parse().ok())
}

fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// How many keys one database holds, and how many of them have a TTL (those
/// may legitimately be gone after a restore, once they expire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbCount {
    pub keys: u64,
    pub expires: u64,
}

/// One count of each database, by its name in a record (`db0`). Built by
/// insertion, with a plain function for `field`: each closure or iterator
/// type a `collect()` into a map is used with is a copy of a whole sort in
/// the binary.
pub fn per_db(
    keyspace: &BTreeMap<u32, DbCount>,
    field: fn(&DbCount) -> u64,
) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (db, count) in keyspace {
        counts.insert(format!("db{db}"), field(count));
    }
    counts
}

fn parse_keyspace(info: &HashMap<String, String>) -> BTreeMap<u32, DbCount> {
    let db_count = |name: &str, value: &str| -> Option<(u32, DbCount)> {
        let db = name.strip_prefix("db")?.parse().ok()?;
        let number = |field: &str| -> Option<u64> {
            value
                .split(',')
                .find_map(|kv| kv.strip_prefix(field))?
                .parse()
                .ok()
        };
        let keys = number("keys=")?;
        let expires = number("expires=").unwrap_or(0);
        Some((db, DbCount { keys, expires }))
    };
    // By insertion, not `collect()`: see `redis::per_db`.
    let mut counts = BTreeMap::new();
    for (db, count) in info
        .iter()
        .filter_map(|(name, value)| db_count(name, value))
    {
        counts.insert(db, count);
    }
    counts
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refused_auth_is_said_without_the_servers_quote() {
        let long = "Pw".repeat(100);
        let quoted = format!(
            "ERR unknown command 'AUTH', with args beginning with: '{}'",
            &long[..120]
        );
        let said = super::auth_refusal(&quoted);
        assert!(!said.contains("PwPw"), "{said}");
        assert!(said.starts_with("ERR AUTH is not a command"), "{said}");
        let said = super::auth_refusal("ERR something 'short Secret9' odd");
        assert!(!said.contains("Secret9"), "{said}");
        assert_eq!(
            super::auth_refusal("WRONGPASS invalid username-password pair or user is disabled."),
            "WRONGPASS invalid username-password pair or user is disabled"
        );
        assert_eq!(
            super::auth_refusal("ERR invalid password"),
            "ERR invalid password"
        );
    }

    use super::*;
    use std::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn redis_error(result: Result<impl fmt::Debug>) -> String {
        match result {
            Err(e @ Error::Redis(_)) => {
                assert_eq!(e.exit_code(), 3);
                e.message().to_string()
            }
            other => panic!("expected a Redis error, got {other:?}"),
        }
    }

    /// A server of our own on a thread: `script` gets the accepted socket.
    fn fake_server(script: impl FnOnce(TcpStream) + Send + 'static) -> ConnectOptions {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            if let Ok((conn, _)) = listener.accept() {
                script(conn);
            }
        });
        ConnectOptions {
            endpoint: Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            user: None,
            password: None,
            renamed_commands: HashMap::new(),
            timeout: TIMEOUT,
        }
    }

    /// Reads one command (an array of bulk strings) and returns its name.
    fn next_command(input: &mut impl io::BufRead) -> String {
        let mut line = String::new();
        input.read_line(&mut line).unwrap();
        let count: usize = line.trim()[1..].parse().unwrap();
        let mut args = Vec::new();
        for _ in 0..count {
            line.clear();
            input.read_line(&mut line).unwrap();
            line.clear();
            input.read_line(&mut line).unwrap();
            args.push(line.trim().to_string());
        }
        args.remove(0)
    }

    /// Answers PING and REPLCONF, and `SYNC` (or anything else) with `then`.
    fn until_sync(then: impl FnOnce(&mut TcpStream) + Send + 'static) -> ConnectOptions {
        fake_server(move |conn| {
            let mut out = conn.try_clone().unwrap();
            let mut input = BufReader::new(conn);
            loop {
                match next_command(&mut input).as_str() {
                    "PING" => out.write_all(b"+PONG\r\n").unwrap(),
                    "REPLCONF" => out.write_all(b"+OK\r\n").unwrap(),
                    _ => return then(&mut out),
                }
            }
        })
    }

    fn drip(out: &mut TcpStream, bytes: &[u8], every: Duration) {
        for byte in bytes {
            if out.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(every);
        }
    }

    const MARK: &str = "0123456789abcdef0123456789abcdef01234567";

    fn sync_error(result: io::Result<usize>) -> String {
        let err = Error::from_io(result.unwrap_err()).unwrap();
        assert_eq!(err.exit_code(), 3, "{err}");
        err.message().to_string()
    }

    #[test]
    fn a_reply_trickling_in_cannot_stretch_the_deadline() {
        let mut options = until_sync(|out| {
            drip(
                out,
                b"$1000\r\nredis_version:7.2.4\r\n",
                Duration::from_millis(50),
            )
        });
        options.timeout = Duration::from_millis(500);
        let mut conn = Connection::connect(&options).unwrap();
        let started = Instant::now();
        let msg = redis_error(conn.info("server"));
        let took = started.elapsed();
        assert!(
            msg.ends_with("did not answer INFO within 0.5s (setting redis_timeout)"),
            "{msg}"
        );
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[test]
    fn keepalives_count_against_the_sync_budget() {
        let mut options = until_sync(|out| {
            while out.write_all(b"\n").is_ok() {
                thread::sleep(Duration::from_millis(50));
            }
        });
        options.timeout = Duration::from_secs(1);
        let limits = SyncLimits {
            wait: Duration::from_millis(400),
            max_rdb_size: 1 << 20,
        };
        let started = Instant::now();
        let conn = Connection::connect(&options).unwrap();
        let msg = redis_error(conn.sync_rdb_within(limits).map(|_| ()));
        let took = started.elapsed();
        assert!(msg.starts_with("SYNC with Redis at 127.0.0.1:"), "{msg}");
        assert!(
            msg.ends_with(": the RDB did not arrive within save_timeout (0.4s of waiting in all)"),
            "{msg}"
        );
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[test]
    fn a_trickling_rdb_is_bounded_by_the_sync_budget() {
        let mut options = until_sync(|out| {
            out.write_all(format!("$EOF:{MARK}\r\nREDIS").as_bytes())
                .unwrap();
            drip(out, &[0u8; 10_000], Duration::from_millis(20));
        });
        options.timeout = Duration::from_secs(1);
        let limits = SyncLimits {
            wait: Duration::from_millis(400),
            max_rdb_size: 1 << 20,
        };
        let started = Instant::now();
        let mut rdb = Connection::connect(&options)
            .unwrap()
            .sync_rdb_within(limits)
            .unwrap();
        let msg = sync_error(io::copy(&mut rdb, &mut io::sink()).map(|n| n as usize));
        assert!(
            msg.starts_with("reading the RDB from Redis at 127.0.0.1:"),
            "{msg}"
        );
        assert!(
            msg.ends_with("the RDB did not arrive within save_timeout (0.4s of waiting in all)"),
            "{msg}"
        );
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn silence_during_a_sync_is_bounded_by_the_read_timeout() {
        let mut options = until_sync(|out| {
            out.write_all(format!("$EOF:{MARK}\r\nREDIS").as_bytes())
                .unwrap();
            thread::sleep(Duration::from_secs(5));
        });
        options.timeout = Duration::from_millis(300);
        let limits = SyncLimits {
            wait: Duration::from_secs(60),
            max_rdb_size: 1 << 20,
        };
        let mut rdb = Connection::connect(&options)
            .unwrap()
            .sync_rdb_within(limits)
            .unwrap();
        let msg = sync_error(rdb.read(&mut [0u8; 64]));
        assert!(
            msg.ends_with(": Redis sent nothing for redis_timeout (0.3s)"),
            "{msg}"
        );
    }

    #[test]
    fn time_spent_storing_what_arrived_does_not_count() {
        let options = until_sync(|out| {
            let body = [7u8; 3000];
            out.write_all(format!("$EOF:{MARK}\r\n").as_bytes())
                .unwrap();
            out.write_all(&body).unwrap();
            out.write_all(MARK.as_bytes()).unwrap();
            thread::sleep(Duration::from_secs(5));
        });
        let limits = SyncLimits {
            wait: Duration::from_millis(300),
            max_rdb_size: 1 << 20,
        };
        let mut rdb = Connection::connect(&options)
            .unwrap()
            .sync_rdb_within(limits)
            .unwrap();
        // A slow consumer (a busy upload): 1.5 s in all, none of it waiting.
        let mut total = 0;
        let mut buf = [0u8; 1000];
        loop {
            thread::sleep(Duration::from_millis(500));
            match rdb.read(&mut buf).unwrap() {
                0 => break,
                n => total += n,
            }
        }
        assert_eq!(total, 3000);
    }

    #[test]
    fn an_rdb_over_the_cap_is_a_redis_error_naming_the_setting() {
        let options = until_sync(|out| {
            let _ = out.write_all(format!("$EOF:{MARK}\r\n").as_bytes());
            let zeros = [0u8; 8192];
            while out.write_all(&zeros).is_ok() {}
        });
        let limits = SyncLimits {
            wait: Duration::from_secs(60),
            max_rdb_size: 100_000,
        };
        let mut rdb = Connection::connect(&options)
            .unwrap()
            .sync_rdb_within(limits)
            .unwrap();
        let msg = sync_error(io::copy(&mut rdb, &mut io::sink()).map(|n| n as usize));
        assert!(
            msg.contains(
                ": the RDB is longer than max_rdb_size (100000 bytes); raise max_rdb_size"
            ),
            "{msg}"
        );
    }

    #[test]
    fn parses_info_and_keyspace() {
        let info = parse_info("# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb12:keys=40,expires=1,avg_ttl=5\r\n\r\nx:y:z\r\n");
        assert_eq!(info["x"], "y:z");
        let keyspace = parse_keyspace(&info);
        let count = |keys, expires| DbCount { keys, expires };
        assert_eq!(
            keyspace,
            BTreeMap::from([(0, count(3, 0)), (12, count(40, 1))])
        );
    }

    #[test]
    fn endpoints_display_like_addresses() {
        let tcp = |host: &str| {
            Endpoint::Tcp {
                host: host.into(),
                port: 6379,
            }
            .to_string()
        };
        assert_eq!(tcp("127.0.0.1"), "127.0.0.1:6379");
        assert_eq!(tcp("::1"), "[::1]:6379");
        assert_eq!(
            Endpoint::Unix("/run/redis/redis.sock".into()).to_string(),
            "unix:/run/redis/redis.sock"
        );
    }

    #[test]
    fn connection_refused_is_a_redis_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = ConnectOptions {
            endpoint: Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            user: None,
            password: None,
            renamed_commands: HashMap::new(),
            timeout: TIMEOUT,
        };
        let msg = redis_error(Connection::connect(&options));
        assert_eq!(
            msg,
            format!("cannot reach Redis at 127.0.0.1:{port} (connection refused); is the service running?")
        );
    }
}
