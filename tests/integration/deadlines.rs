//! Limits while the host lock is held: whatever answers on the Redis port
//! may drip-feed its replies, send replication keep-alives for ever, or
//! stream an RDB without end. Each must end the backup with exit 3, within
//! the limit the settings give, naming the setting to change, and with
//! nothing stored; and a local disk is never filled. A real redis-server
//! cannot be made to misbehave like that, so each test talks to a small fake
//! one on threads of its own.

use crate::harness::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How the fake server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fake {
    /// Every reply one byte per 100 ms; INFO's is long enough for an hour.
    DripFeed,
    /// SYNC answered with a `\n` keep-alive every 100 ms, for ever.
    KeepAlives,
    /// SYNC answered with `$EOF:<mark>` and an RDB that never ends.
    EndlessDiskless,
    /// SYNC answered with `$<1 TiB>` and an RDB that never ends.
    HugeLength,
    /// As `EndlessDiskless`, of bytes that do not compress.
    EndlessNoise,
}

/// More than any test may read: a fake that gets this far stops sending, so
/// that a tool that does not stop cannot fill the disk.
const SAFETY_VALVE: u64 = 1 << 30;
const TICK: Duration = Duration::from_millis(100);
const MARK: &str = "0123456789abcdef0123456789abcdef01234567";

struct FakeRedis {
    port: u16,
    /// Bytes of RDB sent so far, over all connections.
    rdb_sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeRedis {
    fn start(fake: Fake) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Redis");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let rdb_sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (rdb_sent, stop) = (rdb_sent.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            conn.set_nonblocking(false).unwrap();
                            let (rdb_sent, stop) = (rdb_sent.clone(), stop.clone());
                            thread::spawn(move || serve(conn, fake, &rdb_sent, &stop));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        FakeRedis {
            port,
            rdb_sent,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn rdb_sent(&self) -> u64 {
        self.rdb_sent.load(Ordering::Relaxed)
    }

    /// A test world whose settings point the tool at this fake; no real
    /// redis-server is started.
    fn world(&self, settings: &[(&str, &str)]) -> TestRedis {
        let mut builder = TestRedis::builder()
            .setting("redis_host", "127.0.0.1")
            .setting("redis_port", &self.port.to_string());
        for (key, value) in settings {
            builder = builder.setting(key, value);
        }
        builder.prepare()
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// One client: commands answered until SYNC, which gets the misbehaviour.
fn serve(conn: TcpStream, fake: Fake, rdb_sent: &AtomicU64, stop: &AtomicBool) {
    let mut out = conn.try_clone().unwrap();
    let mut input = BufReader::new(conn);
    while let Some(args) = read_command(&mut input) {
        let name = args
            .first()
            .cloned()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let section = args
            .get(1)
            .cloned()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let reply = match (name.as_str(), section.as_str()) {
            ("PING", _) => b"+PONG\r\n".to_vec(),
            ("REPLCONF", _) => b"+OK\r\n".to_vec(),
            ("INFO", "keyspace") => bulk("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"),
            ("INFO", _) if fake == Fake::DripFeed => {
                // 36000 bytes at one per 100 ms: an hour.
                bulk(&format!(
                    "# Server\r\nredis_version:7.2.4\r\n{}",
                    "x".repeat(36_000)
                ))
            }
            ("INFO", _) => bulk("# Server\r\nredis_version:7.2.4\r\n"),
            ("SYNC", _) | ("PSYNC", _) => {
                answer_sync(&mut out, fake, rdb_sent, stop);
                return;
            }
            _ => b"-ERR unknown command\r\n".to_vec(),
        };
        let sent = if fake == Fake::DripFeed {
            drip(&mut out, &reply, stop)
        } else {
            out.write_all(&reply).is_ok()
        };
        if !sent {
            return;
        }
    }
}

fn answer_sync(out: &mut TcpStream, fake: Fake, rdb_sent: &AtomicU64, stop: &AtomicBool) {
    let preamble = match fake {
        Fake::KeepAlives => {
            while !stop.load(Ordering::Relaxed) && out.write_all(b"\n").is_ok() {
                thread::sleep(TICK);
            }
            return;
        }
        Fake::EndlessDiskless | Fake::EndlessNoise => format!("$EOF:{MARK}\r\nREDIS0011"),
        Fake::HugeLength => format!("${}\r\nREDIS0011", 1u64 << 40),
        Fake::DripFeed => return,
    };
    if out.write_all(preamble.as_bytes()).is_err() {
        return;
    }
    // Zeros compress to next to nothing, should a broken build store them.
    let mut chunk = vec![0u8; 64 * 1024];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.load(Ordering::Relaxed) && rdb_sent.load(Ordering::Relaxed) < SAFETY_VALVE {
        if fake == Fake::EndlessNoise {
            for byte in chunk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *byte = seed as u8;
            }
        }
        if out.write_all(&chunk).is_err() {
            return;
        }
        rdb_sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

/// Write `reply` one byte per tick; false once the client is gone.
fn drip(out: &mut TcpStream, reply: &[u8], stop: &AtomicBool) -> bool {
    for byte in reply {
        if stop.load(Ordering::Relaxed) || out.write_all(&[*byte]).is_err() {
            return false;
        }
        thread::sleep(TICK);
    }
    true
}

fn bulk(text: &str) -> Vec<u8> {
    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
}

/// One RESP command (an array of bulk strings); `None` at the end of input.
fn read_command(input: &mut impl BufRead) -> Option<Vec<String>> {
    let count: usize = read_line(input)?.strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let len: usize = read_line(input)?.strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0u8; len + 2];
        input.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Some(args)
}

fn read_line(input: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_string()),
    }
}

/// Run `run` to its end, or kill it and fail once `bound` has passed: the
/// point of these tests is that the tool stops by itself, in time.
fn run_within(run: Run, bound: Duration) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = run.spawn();
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reader.join().unwrap_or_default();
            panic!("still running after {bound:?}; killed\n--- stderr ---\n{stderr}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    (status.code(), reader.join().unwrap_or_default(), elapsed)
}

/// Exit 3 within `bound`, with `setting` named on stderr, and nothing stored.
#[track_caller]
fn fails_in_time(t: &TestRedis, args: &[&str], bound: Duration, setting: &str) -> Duration {
    let (code, stderr, elapsed) = run_within(t.cmd(args), bound);
    assert_eq!(code, Some(3), "expected exit 3\n--- stderr ---\n{stderr}");
    assert!(
        stderr.contains(setting),
        "the error should name {setting}\n--- stderr ---\n{stderr}"
    );
    assert!(t.list(&[]).is_empty(), "a backup was listed");
    assert!(
        t.storage_files().is_empty(),
        "left in storage: {:?}",
        t.storage_files()
    );
    elapsed
}

#[test]
fn a_drip_fed_reply_cannot_stretch_the_command_deadline() {
    let fake = FakeRedis::start(Fake::DripFeed);
    let t = fake.world(&[("redis_timeout", "2")]);
    // PING (7 bytes, 0.7 s) gets through; INFO, an hour long, must not.
    let elapsed = fails_in_time(&t, &["backup"], Duration::from_secs(30), "redis_timeout");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

#[test]
fn replication_keepalives_count_against_save_timeout() {
    let fake = FakeRedis::start(Fake::KeepAlives);
    let t = fake.world(&[("redis_timeout", "2"), ("save_timeout", "3")]);
    let elapsed = fails_in_time(
        &t,
        &["backup", "--source", "replication"],
        Duration::from_secs(30),
        "save_timeout",
    );
    assert!(elapsed >= Duration::from_secs(3), "took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn an_endless_diskless_rdb_is_cut_at_max_rdb_size() {
    let fake = FakeRedis::start(Fake::EndlessDiskless);
    let t = fake.world(&[("max_rdb_size", "1M")]);
    fails_in_time(
        &t,
        &["backup", "--source", "replication"],
        Duration::from_secs(60),
        "max_rdb_size",
    );
    // What the socket buffers took, at most, beyond the cap.
    assert!(
        fake.rdb_sent() < 64 << 20,
        "read {} bytes of a 1 MiB cap",
        fake.rdb_sent()
    );
}

#[test]
fn an_rdb_announced_longer_than_max_rdb_size_is_refused_unread() {
    let fake = FakeRedis::start(Fake::HugeLength);
    let t = fake.world(&[("max_rdb_size", "1M")]);
    fails_in_time(
        &t,
        &["backup", "--source", "replication"],
        Duration::from_secs(60),
        "max_rdb_size",
    );
    assert!(
        fake.rdb_sent() < 64 << 20,
        "read {} bytes of a 1 TiB RDB announced",
        fake.rdb_sent()
    );
}

#[test]
fn a_backup_stops_before_it_fills_the_local_disk() {
    // Storage on an 8 MiB tmpfs (needs root, as make test has), an endless
    // RDB that does not compress, and no cap that would stop it first: the
    // free-space check must, while 1% of the disk is still free.
    let fake = FakeRedis::start(Fake::EndlessNoise);
    let t = fake.world(&[]);
    let storage = t.storage_dir();
    std::fs::create_dir_all(&storage).unwrap();
    let _tmpfs = Tmpfs::mount(&storage, "size=8m,mode=0700");
    let (code, stderr, _) = run_within(
        t.cmd(&["backup", "--source", "replication"]),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(4), "expected exit 4\n--- stderr ---\n{stderr}");
    assert!(
        stderr.contains("stays free for Redis and the host"),
        "stopped by a full disk, not before\n--- stderr ---\n{stderr}"
    );
    assert!(t.list(&[]).is_empty(), "a backup was listed");
    assert!(
        t.storage_files().is_empty(),
        "left in storage: {:?}",
        t.storage_files()
    );
}
