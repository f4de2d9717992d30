//! A fake Redis: whatever answers on the port. `FakeRedis` listens on
//! 127.0.0.1, reads RESP commands and answers each as a script says: at
//! once, a byte at a time, with a stream that does not end, or not at all.
//! Tests use it for what a real redis-server cannot be made to do: lie about
//! its files (least privilege), be older than the one installed (backup),
//! trickle its replies or send an RDB without end (deadlines).
//! `ScriptedRedis` is the script of a Redis that saves. Replies are encoded
//! by the harness's RESP client (`Reply::encode`).

use super::*;

/// What `FakeRedis` sends back for one command.
pub enum FakeReply {
    /// These bytes at once (usually `Reply::encode`).
    Bytes(Vec<u8>),
    /// These bytes one at a time, `every` apart (a drip-feed), for as long as
    /// the client reads and the server lives.
    Drip { bytes: Vec<u8>, every: Duration },
    /// `head`, then the chunks `more` makes, `every` apart, until the client
    /// stops reading, the server is dropped, `more` says `None` or the
    /// chunks of all connections reach `STREAM_CAP`; then the connection
    /// is closed. A replication stream: keep-alives, an endless RDB.
    Stream {
        head: Vec<u8>,
        more: Box<dyn FnMut() -> Option<Vec<u8>> + Send>,
        every: Duration,
    },
    /// Close the connection without answering.
    Close,
}

/// More than any test may read of a `FakeReply::Stream`: a fake that has sent
/// this much stops, so that a tool that does not stop cannot fill the disk.
pub const STREAM_CAP: u64 = 2 << 30;

type Handler = dyn Fn(&[Vec<u8>]) -> FakeReply + Send + Sync;

/// A server on 127.0.0.1 (port chosen by the system) that answers each
/// command with what `handler` says; one thread per connection. Dropping it
/// shuts every connection down.
pub struct FakeRedis {
    pub port: u16,
    shared: Arc<FakeShared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

struct FakeShared {
    stop: AtomicBool,
    handler: Box<Handler>,
    received: Mutex<Vec<Vec<Vec<u8>>>>,
    open: Mutex<Vec<TcpStream>>,
    /// Bytes of `Stream` chunks sent so far, over all connections.
    streamed: AtomicU64,
}

impl FakeRedis {
    pub fn start(handler: impl Fn(&[Vec<u8>]) -> FakeReply + Send + Sync + 'static) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Redis");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(FakeShared {
            stop: AtomicBool::new(false),
            handler: Box::new(handler),
            received: Mutex::new(Vec::new()),
            open: Mutex::new(Vec::new()),
            streamed: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                if let Ok(clone) = stream.try_clone() {
                    s.open.lock().expect("open lock").push(clone);
                }
                let shared = Arc::clone(&s);
                thread::spawn(move || serve_connection(&shared, stream));
            }
        });
        FakeRedis {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Every command received so far, arguments joined by spaces (lossy).
    pub fn commands(&self) -> Vec<String> {
        self.shared
            .received
            .lock()
            .expect("received lock")
            .iter()
            .map(|args| {
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    /// How many commands named `name` (case-insensitive) were received.
    pub fn count(&self, name: &str) -> usize {
        self.shared
            .received
            .lock()
            .expect("received lock")
            .iter()
            .filter(|args| {
                args.first()
                    .is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
            })
            .count()
    }

    /// Bytes of `FakeReply::Stream` chunks the client took so far (the
    /// heads not counted), over all connections.
    pub fn streamed(&self) -> u64 {
        self.shared.streamed.load(Ordering::SeqCst)
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.shared.open.lock().expect("open lock").iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve_connection(shared: &FakeShared, stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let stopped = || shared.stop.load(Ordering::SeqCst);
    while !stopped() {
        let Some(args) = read_command(&mut reader) else {
            return;
        };
        shared
            .received
            .lock()
            .expect("received lock")
            .push(args.clone());
        match (shared.handler)(&args) {
            FakeReply::Bytes(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            FakeReply::Drip { bytes, every } => {
                for byte in bytes {
                    if stopped() || writer.write_all(&[byte]).is_err() {
                        return;
                    }
                    thread::sleep(every);
                }
            }
            FakeReply::Stream {
                head,
                mut more,
                every,
            } => {
                if writer.write_all(&head).is_err() {
                    return;
                }
                while !stopped() && shared.streamed.load(Ordering::SeqCst) < STREAM_CAP {
                    let Some(chunk) = more() else { break };
                    if writer.write_all(&chunk).is_err() {
                        return;
                    }
                    shared
                        .streamed
                        .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    thread::sleep(every);
                }
                return;
            }
            FakeReply::Close => {
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

/// One command: a RESP array of bulk strings, or an inline command line.
/// `None` at the end of the stream or on garbage.
fn read_command(reader: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let line = read_line(reader)?;
    let Some(count) = line.strip_prefix(b"*") else {
        let text = String::from_utf8_lossy(&line).into_owned();
        let args: Vec<Vec<u8>> = text
            .split_whitespace()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        return if args.is_empty() {
            read_command(reader)
        } else {
            Some(args)
        };
    };
    let count: usize = std::str::from_utf8(count).ok()?.parse().ok()?;
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let header = read_line(reader)?;
        let len: usize = std::str::from_utf8(header.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let mut arg = vec![0u8; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

fn read_line(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).ok()?;
    if line.is_empty() {
        return None;
    }
    while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        line.pop();
    }
    Some(line)
}

// ---------------------------------------------------------------------------
// The script of a Redis that saves

/// A scripted Redis for `FakeRedis`: answers what a backup asks (AUTH, PING,
/// INFO, CONFIG GET, LASTSAVE, TIME, BGSAVE, DBSIZE, SELECT, ...) from a
/// table, and plays a save: BGSAVE "starts" one that is over at once
/// (`rdb_saves` and LASTSAVE move, `rdb_bgsave_in_progress:0`,
/// `rdb_last_bgsave_status:ok`) and writes nothing unless told to
/// (`saving`). Any command can be answered by a drip-feed instead (`drip`).
/// Everything else gets an error reply.
pub struct ScriptedRedis {
    config: BTreeMap<String, String>,
    version: String,
    /// More `# Server` lines (`server_name:valkey`).
    server_extra: Vec<String>,
    keyspace: Vec<String>,
    drips: BTreeMap<String, Duration>,
    /// Whether INFO has `rdb_saves` (Redis 7.0 and later).
    save_counter: bool,
    /// What BGSAVE writes to `dir`/`dbfilename`.
    dump: Option<Vec<u8>>,
    /// `rdb_saves` and LASTSAVE.
    saves: Mutex<(u64, i64)>,
}

impl Default for ScriptedRedis {
    fn default() -> Self {
        ScriptedRedis::new()
    }
}

impl ScriptedRedis {
    /// Redis 7.0.15 with persistence off (`save ""`, `appendonly no`), its
    /// dir `/var/lib/redis`, `dump.rdb`, one key in db 0, last saved 100 s ago.
    pub fn new() -> ScriptedRedis {
        let config = [
            ("dir", "/var/lib/redis"),
            ("dbfilename", "dump.rdb"),
            ("appenddirname", "appendonlydir"),
            ("appendfilename", "appendonly.aof"),
            ("save", ""),
            ("appendonly", "no"),
            ("databases", "16"),
        ];
        ScriptedRedis {
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            version: "7.0.15".into(),
            server_extra: Vec::new(),
            keyspace: vec!["db0:keys=1,expires=0,avg_ttl=0".into()],
            drips: BTreeMap::new(),
            save_counter: true,
            dump: None,
            saves: Mutex::new((0, now_secs() as i64 - 100)),
        }
    }

    /// Play Redis 6.2, older than `rdb_saves`: a finished save shows only in
    /// LASTSAVE, which counts whole seconds, so a save in the second of the
    /// one before leaves it where it was. The last save was this second.
    /// LASTSAVE is Redis's `time(NULL)`, which reads the kernel's coarse
    /// clock, a tick (4 to 10 ms) behind TIME's: a save ended just past a
    /// second is dated the second before. Played 60 ms behind here, more
    /// than a tick, so that every save the tool starts in the first 50 ms
    /// of a second falls in it.
    pub fn older_than_7(mut self) -> ScriptedRedis {
        self.version = "6.2.14".into();
        self.save_counter = false;
        self.saves.get_mut().expect("saves lock").1 = now_secs() as i64;
        self
    }

    /// Make BGSAVE write `rdb` to `dir`/`dbfilename` (as CONFIG GET answers
    /// them), as a real save does.
    pub fn saving(mut self, rdb: Vec<u8>) -> ScriptedRedis {
        self.dump = Some(rdb);
        self
    }

    /// What `CONFIG GET name` answers.
    pub fn config(mut self, name: &str, value: &str) -> ScriptedRedis {
        self.config.insert(name.to_string(), value.to_string());
        self
    }

    /// What INFO says `redis_version` is, and the `# Server` lines after it.
    pub fn server(mut self, version: &str, extra: &[&str]) -> ScriptedRedis {
        self.version = version.to_string();
        self.server_extra = extra.iter().map(|l| format!("{l}\r\n")).collect();
        self
    }

    /// The `# Keyspace` lines of INFO (`db0:keys=1,expires=0,avg_ttl=0`).
    pub fn keyspace(mut self, lines: &[&str]) -> ScriptedRedis {
        self.keyspace = lines.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Answer `command` (e.g. "INFO", "PING") one byte every `every`.
    pub fn drip(mut self, command: &str, every: Duration) -> ScriptedRedis {
        self.drips.insert(command.to_ascii_uppercase(), every);
        self
    }

    /// Serve it on a port of its own.
    pub fn serve(self) -> FakeRedis {
        FakeRedis::start(move |args| self.answer(args))
    }

    fn info(&self, section: &str) -> String {
        let (saves, lastsave) = *self.saves.lock().expect("saves lock");
        let server = format!(
            "# Server\r\nredis_version:{}\r\nredis_mode:standalone\r\nprocess_id:4242\r\n{}",
            self.version,
            self.server_extra.concat()
        );
        let persistence = format!(
            "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\n\
             rdb_bgsave_in_progress:0\r\nrdb_last_save_time:{lastsave}\r\n\
             rdb_last_bgsave_status:ok\r\n{counter}aof_enabled:0\r\n\
             aof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n\
             aof_last_bgrewrite_status:ok\r\n",
            counter = match self.save_counter {
                true => format!("rdb_saves:{saves}\r\n"),
                false => String::new(),
            }
        );
        let replication = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n".to_string();
        let mut keyspace = "# Keyspace\r\n".to_string();
        for line in &self.keyspace {
            keyspace.push_str(line);
            keyspace.push_str("\r\n");
        }
        match section.to_ascii_lowercase().as_str() {
            "server" => server,
            "persistence" => persistence,
            "replication" => replication,
            "keyspace" => keyspace,
            "" | "all" | "default" | "everything" => {
                [server, persistence, replication, keyspace].join("\r\n")
            }
            _ => String::new(),
        }
    }

    /// What a save writes, if anything: the dump, through a temporary file
    /// renamed over it, as Redis does.
    fn write_dump(&self) {
        let Some(rdb) = &self.dump else { return };
        let dir = Path::new(&self.config["dir"]);
        let tmp = dir.join("temp-fake-redis.rdb");
        fs::write(&tmp, rdb).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        let dump = dir.join(&self.config["dbfilename"]);
        fs::rename(&tmp, &dump).unwrap_or_else(|e| panic!("rename to {}: {e}", dump.display()));
    }

    /// The answer to one command.
    fn answer(&self, args: &[Vec<u8>]) -> FakeReply {
        let name = String::from_utf8_lossy(args.first().map(Vec::as_slice).unwrap_or(b""))
            .to_ascii_uppercase();
        let arg = |i: usize| {
            args.get(i)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default()
        };
        let bulk = |text: &str| Reply::Bulk(text.as_bytes().to_vec());
        let reply = match name.as_str() {
            "AUTH" | "SELECT" | "CLIENT" | "REPLCONF" => Reply::Status("OK".into()),
            "PING" => Reply::Status("PONG".into()),
            "INFO" => bulk(&self.info(&arg(1))),
            "CONFIG" if arg(1).eq_ignore_ascii_case("GET") => {
                let wanted = arg(2);
                match self.config.get(&wanted) {
                    Some(value) => Reply::Array(vec![bulk(&wanted), bulk(value)]),
                    None => Reply::Array(vec![]),
                }
            }
            "CONFIG" => Reply::Error("ERR the fake Redis only answers CONFIG GET".into()),
            "LASTSAVE" => Reply::Int(self.saves.lock().expect("saves lock").1),
            "TIME" => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
                Reply::Array(vec![
                    bulk(&now.as_secs().to_string()),
                    bulk(&now.subsec_micros().to_string()),
                ])
            }
            "BGSAVE" => {
                self.write_dump();
                let mut saves = self.saves.lock().expect("saves lock");
                saves.0 += 1;
                saves.1 = match self.save_counter {
                    true => (now_secs() as i64).max(saves.1 + 1),
                    false => {
                        let coarse = SystemTime::now() - Duration::from_millis(60);
                        let coarse = coarse.duration_since(UNIX_EPOCH).expect("clock");
                        coarse.as_secs() as i64
                    }
                };
                Reply::Status("Background saving started".into())
            }
            "DBSIZE" => Reply::Int(1),
            _ => Reply::Error(format!("ERR unknown command '{name}'")),
        };
        let bytes = reply.encode();
        match self.drips.get(&name) {
            Some(&every) => FakeReply::Drip { bytes, every },
            None => FakeReply::Bytes(bytes),
        }
    }
}
