//! A fault-injecting TCP proxy (std threads only).

use super::*;

/// Which way bytes go through a `FaultProxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client (the tool) to the server (Swift): requests, uploads.
    ToServer,
    /// From the server to the client: responses, downloads.
    ToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// What a `FaultProxy` does to the bytes it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    PassThrough,
    /// At most this many bytes per second in each direction (all connections
    /// together).
    Throttle(u64),
    /// Once: the connection that carries byte number `after` in `direction`
    /// (counted over all connections since this fault was set) gets exactly
    /// the bytes up to it forwarded, then both its sides are shut down (the
    /// client's later writes meet a reset). Pass-through afterwards.
    DropOnce { direction: Direction, after: u64 },
    /// Like `DropOnce` at byte `first`, and then again every `every` bytes
    /// (in `direction`, over all connections) after the previous cut, for as
    /// long as the fault is set: e.g. no upload larger than `every` can
    /// succeed, while small requests still go through.
    DropRepeatedly {
        direction: Direction,
        first: u64,
        every: u64,
    },
    /// Once: where `DropOnce` would cut the client-to-server bytes at
    /// `after`, the proxy instead answers the request itself with
    /// `500 Internal Server Error` (`Connection: close`): the server gets
    /// nothing more of it (a partial request it throws away), and the rest
    /// of what the client sends is read and discarded.
    ErrorOnce { after: u64 },
    /// `ErrorOnce` at byte `first`, then again every `every` bytes after.
    ErrorRepeatedly { first: u64, every: u64 },
}

impl Fault {
    /// The direction and the byte count of the first cut, if it cuts.
    fn first_cut(self) -> Option<(Direction, u64)> {
        match self {
            Fault::DropOnce { direction, after } => Some((direction, after)),
            Fault::DropRepeatedly {
                direction, first, ..
            } => Some((direction, first)),
            Fault::ErrorOnce { after } => Some((Direction::ToServer, after)),
            Fault::ErrorRepeatedly { first, .. } => Some((Direction::ToServer, first)),
            Fault::PassThrough | Fault::Throttle(_) => None,
        }
    }

    fn answers_500(self) -> bool {
        matches!(
            self,
            Fault::ErrorOnce { .. } | Fault::ErrorRepeatedly { .. }
        )
    }
}

/// A TCP proxy on 127.0.0.1 (port chosen by the system) in front of a server
/// port on 127.0.0.1, which injects a `Fault`. One thread per direction and
/// connection; connections are shut down when the proxy is dropped.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<ProxyShared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

struct ProxyShared {
    /// The server's port; 0 until known (connections are closed until then).
    target: AtomicU16,
    state: Mutex<ProxyState>,
    stop: AtomicBool,
    accepted: AtomicUsize,
    /// Both sockets of every open connection, to shut them down on drop.
    open: Mutex<BTreeMap<usize, (TcpStream, TcpStream)>>,
}

struct ProxyState {
    fault: Fault,
    /// Bytes forwarded per direction since the fault was set.
    bytes: [u64; 2],
    /// Bytes forwarded per direction since the start.
    total: [u64; 2],
    /// The direction and byte count (in `bytes`) of the next cut, if any.
    next_cut: Option<(Direction, u64)>,
    drops: usize,
    /// When the throttle lets the next bytes go, per direction.
    next_slot: [Instant; 2],
    /// Counted in the client-to-server bytes (e.g. `GET /auth/v1.0 `).
    watch: Vec<u8>,
    watched: usize,
    /// See `hold`: the needle, the delay, and the requests held so far.
    hold: (Vec<u8>, Duration, BTreeSet<Vec<u8>>),
}

impl FaultProxy {
    /// A proxy in front of `127.0.0.1:target`, passing everything through.
    pub fn to(target: u16) -> FaultProxy {
        let proxy = FaultProxy::unconnected();
        proxy.set_target(target);
        proxy
    }

    /// A proxy whose server is not known yet (`set_target` later): e.g. to put
    /// its URL in Keystone's catalog before the stack is started.
    pub fn unconnected() -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(ProxyShared {
            target: AtomicU16::new(0),
            state: Mutex::new(ProxyState {
                fault: Fault::PassThrough,
                bytes: [0; 2],
                total: [0; 2],
                next_cut: None,
                drops: 0,
                next_slot: [Instant::now(); 2],
                watch: Vec::new(),
                watched: 0,
                hold: (Vec::new(), Duration::ZERO, BTreeSet::new()),
            }),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            open: Mutex::new(BTreeMap::new()),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let target = s.target.load(Ordering::SeqCst);
                if target == 0 {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let id = s.accepted.fetch_add(1, Ordering::SeqCst);
                let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                s.open.lock().expect("open lock").insert(id, (c3, s3));
                let shared = Arc::clone(&s);
                thread::spawn(move || {
                    let down_shared = Arc::clone(&shared);
                    let down = thread::spawn(move || {
                        pump(&down_shared, Direction::ToClient, server, c2);
                    });
                    pump(&shared, Direction::ToServer, client, s2);
                    let _ = down.join();
                    // Closing the last handles: unread bytes make the kernel
                    // answer with a reset.
                    shared.open.lock().expect("open lock").remove(&id);
                });
            }
        });
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Forward new connections to `127.0.0.1:target`.
    pub fn set_target(&self, target: u16) {
        self.shared.target.store(target, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:PORT` (or `https://...` if `tls`).
    pub fn base_url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Inject `fault` from now on; the byte counts of the drops start at 0.
    pub fn set(&self, fault: Fault) {
        let mut st = self.shared.state.lock().expect("proxy state");
        st.fault = fault;
        st.bytes = [0; 2];
        st.next_cut = fault.first_cut();
        st.next_slot = [Instant::now(); 2];
    }

    /// Count the occurrences of `needle` in the client-to-server bytes from
    /// now on (`watched`), e.g. `b"GET /auth/v1.0 "` for TempAuth logins.
    pub fn watch(&self, needle: &[u8]) {
        assert!(!needle.is_empty(), "an empty needle");
        let mut st = self.shared.state.lock().expect("proxy state");
        st.watch = needle.to_vec();
        st.watched = 0;
    }

    /// From now on, whatever the fault, hold back for `delay` the first
    /// client-to-server read of each distinct request whose line holds
    /// `needle` (`PUT /v1/AUTH_x/c/o HTTP/1.1`): a hop in front of the
    /// server that is slow once per object, so that the same request sent
    /// again goes straight through.
    pub fn hold(&self, needle: &[u8], delay: Duration) {
        assert!(!needle.is_empty(), "an empty needle");
        let mut st = self.shared.state.lock().expect("proxy state");
        st.hold = (needle.to_vec(), delay, BTreeSet::new());
    }

    /// How often the `watch` needle went through.
    pub fn watched(&self) -> usize {
        self.shared.state.lock().expect("proxy state").watched
    }

    /// How many connections were cut (or answered 500) since the start.
    pub fn drops(&self) -> usize {
        self.shared.state.lock().expect("proxy state").drops
    }

    /// Bytes forwarded in `direction` since the last `set`.
    pub fn bytes(&self, direction: Direction) -> u64 {
        self.shared.state.lock().expect("proxy state").bytes[direction.index()]
    }

    /// Connections accepted (and forwarded) since the start.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor up.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for (client, server) in self.shared.open.lock().expect("open lock").values() {
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Forward `from` to `to` in `direction` until either ends, applying the
/// proxy's fault.
fn pump(shared: &ProxyShared, direction: Direction, mut from: TcpStream, mut to: TcpStream) {
    let d = direction.index();
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous chunk, so that a watched or held needle split
    // across two reads is still found.
    let mut tail: Vec<u8> = Vec::new();
    let cut = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(std::net::Shutdown::Both);
        let _ = b.shutdown(std::net::Shutdown::Both);
    };
    loop {
        // How much to read at once: small under a throttle (smooth pacing),
        // never past the byte where a drop is due.
        let want = {
            let st = shared.state.lock().expect("proxy state");
            match (st.fault, st.next_cut) {
                (Fault::Throttle(rate), _) => (rate / 20).clamp(512, buf.len() as u64) as usize,
                (_, Some((dd, at))) if dd == direction => {
                    at.saturating_sub(st.bytes[d]).clamp(1, buf.len() as u64) as usize
                }
                _ => buf.len(),
            }
        };
        let n = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let (forward, drop_now, answer_500, wake_at) = {
            let mut st = shared.state.lock().expect("proxy state");
            st.bytes[d] += n as u64;
            st.total[d] += n as u64;
            let mut held = Duration::ZERO;
            if direction == Direction::ToServer && !(st.watch.is_empty() && st.hold.0.is_empty()) {
                let mut window = std::mem::take(&mut tail);
                window.extend_from_slice(&buf[..n]);
                let count = |needle: &[u8]| match needle.is_empty() {
                    true => 0,
                    false => window
                        .windows(needle.len())
                        .filter(|w| *w == needle)
                        .count(),
                };
                st.watched += count(&st.watch);
                if let Some(line) = request_line_with(&window, &st.hold.0) {
                    if st.hold.2.insert(line) {
                        held = st.hold.1;
                    }
                }
                let longest = st.watch.len().max(st.hold.0.len());
                let keep = (longest - 1).min(window.len());
                tail = window[window.len() - keep..].to_vec();
            }
            if !held.is_zero() {
                drop(st);
                thread::sleep(held);
                st = shared.state.lock().expect("proxy state");
            }
            match (st.fault, st.next_cut) {
                (fault, Some((dd, at))) if dd == direction && st.bytes[d] >= at => {
                    st.next_cut = match fault {
                        Fault::DropRepeatedly { every, .. }
                        | Fault::ErrorRepeatedly { every, .. } => {
                            Some((direction, st.bytes[d] + every.max(1)))
                        }
                        _ => None,
                    };
                    st.drops += 1;
                    let over = (st.bytes[d] - at) as usize;
                    (n - over.min(n), true, fault.answers_500(), None)
                }
                (Fault::Throttle(rate), _) => {
                    let now = Instant::now();
                    let start = st.next_slot[d].max(now);
                    let at = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
                    st.next_slot[d] = at;
                    (n, false, false, Some(at))
                }
                _ => (n, false, false, None),
            }
        };
        if let Some(at) = wake_at {
            let now = Instant::now();
            if at > now {
                thread::sleep(at - now);
            }
        }
        if to.write_all(&buf[..forward]).is_err() {
            cut(&from, &to);
            return;
        }
        if answer_500 {
            answer_500_and_drain(from, to);
            return;
        }
        if drop_now {
            cut(&from, &to);
            return;
        }
    }
}

/// The request line (up to its CR LF) around the first occurrence of
/// `needle` in `bytes`, if that is in a request line (not in a body).
fn request_line_with(bytes: &[u8], needle: &[u8]) -> Option<Vec<u8>> {
    if needle.is_empty() {
        return None;
    }
    let at = bytes.windows(needle.len()).position(|w| w == needle)?;
    let start = bytes[..at]
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |p| p + 2);
    let end = bytes[at..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(bytes.len(), |p| at + p);
    let line = &bytes[start..end];
    line.windows(7)
        .any(|w| w == b" HTTP/1")
        .then(|| line.to_vec())
}

/// Answer the request under way on `client` with a 500 of the proxy's own,
/// end the server's side, and swallow whatever the client still sends (the
/// rest of an upload) until it closes, so it reads the answer, not a reset.
fn answer_500_and_drain(mut client: TcpStream, server: TcpStream) {
    // Written before the server's side ends: ending it makes the other pump
    // shut the client's write side.
    let _ = client.write_all(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let _ = server.shutdown(std::net::Shutdown::Both);
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut sink = [0u8; 64 * 1024];
    while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
    let _ = client.shutdown(std::net::Shutdown::Both);
}
