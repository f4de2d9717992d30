//! Limits while the host lock is held: whatever answers on the Redis port
//! may drip-feed its replies, send replication keep-alives for ever, or
//! stream an RDB without end. Each must end the backup with exit 3, within
//! the limit the settings give, naming the setting to change, and with
//! nothing stored; and a local disk is never filled. A real redis-server
//! cannot be made to misbehave like that, so each test talks to the
//! harness's `FakeRedis`, scripted here.

use crate::harness::*;
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

const TICK: Duration = Duration::from_millis(100);
const MARK: &str = "0123456789abcdef0123456789abcdef01234567";

/// A fake Redis that misbehaves as `fake` says.
fn fake_redis(fake: Fake) -> FakeRedis {
    FakeRedis::start(move |args| answer(fake, args))
}

/// A test world whose settings point the tool at `fake`; no real
/// redis-server is started.
fn world(fake: &FakeRedis, settings: &[(&str, &str)]) -> TestRedis {
    let mut builder = TestRedis::builder()
        .setting("redis_host", "127.0.0.1")
        .setting("redis_port", &fake.port.to_string());
    for (key, value) in settings {
        builder = builder.setting(key, value);
    }
    builder.prepare()
}

/// Commands are answered until SYNC, which gets the misbehaviour.
fn answer(fake: Fake, args: &[Vec<u8>]) -> FakeReply {
    let arg = |i: usize| String::from_utf8_lossy(args.get(i).map_or(b"", |a| a)).into_owned();
    let name = arg(0).to_ascii_uppercase();
    let section = arg(1).to_ascii_lowercase();
    let bulk = |text: &str| Reply::Bulk(text.as_bytes().to_vec());
    let reply = match (name.as_str(), section.as_str()) {
        ("PING", _) => Reply::Status("PONG".into()),
        ("REPLCONF", _) => Reply::Status("OK".into()),
        ("INFO", "keyspace") => bulk("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"),
        ("INFO", _) if fake == Fake::DripFeed => {
            // 36000 bytes at one per 100 ms: an hour.
            bulk(&format!(
                "# Server\r\nredis_version:7.2.4\r\n{}",
                "x".repeat(36_000)
            ))
        }
        ("INFO", _) => bulk("# Server\r\nredis_version:7.2.4\r\n"),
        ("SYNC", _) | ("PSYNC", _) => return answer_sync(fake),
        _ => Reply::Error("ERR unknown command".into()),
    };
    match fake {
        Fake::DripFeed => FakeReply::Drip {
            bytes: reply.encode(),
            every: TICK,
        },
        _ => FakeReply::Bytes(reply.encode()),
    }
}

fn answer_sync(fake: Fake) -> FakeReply {
    let head = match fake {
        Fake::KeepAlives => {
            return FakeReply::Stream {
                head: Vec::new(),
                more: Box::new(|| Some(b"\n".to_vec())),
                every: TICK,
            }
        }
        Fake::EndlessDiskless | Fake::EndlessNoise => format!("$EOF:{MARK}\r\nREDIS0011"),
        Fake::HugeLength => format!("${}\r\nREDIS0011", 1u64 << 40),
        Fake::DripFeed => return FakeReply::Close,
    };
    // Zeros compress to next to nothing, should a broken build store them.
    let mut chunk = vec![0u8; 64 * 1024];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let more = move || {
        if fake == Fake::EndlessNoise {
            for byte in chunk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *byte = seed as u8;
            }
        }
        Some(chunk.clone())
    };
    FakeReply::Stream {
        head: head.into_bytes(),
        more: Box::new(more),
        every: Duration::ZERO,
    }
}

/// Exit 3 within `bound` (else the tool is killed and the test fails: the
/// point of these tests is that it stops by itself, in time), with `setting`
/// named on stderr, and nothing stored.
#[track_caller]
fn fails_in_time(t: &TestRedis, args: &[&str], bound: Duration, setting: &str) -> Duration {
    let started = Instant::now();
    let out = t.cmd(args).run_within(bound);
    let elapsed = started.elapsed();
    out.code(3);
    assert!(
        out.stderr.contains(setting),
        "the error should name {setting}\n{out}"
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
    let fake = fake_redis(Fake::DripFeed);
    let t = world(&fake, &[("redis_timeout", "2")]);
    // PING (7 bytes, 0.7 s) gets through; INFO, an hour long, must not.
    let elapsed = fails_in_time(&t, &["backup"], Duration::from_secs(30), "redis_timeout");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

#[test]
fn replication_keepalives_count_against_save_timeout() {
    let fake = fake_redis(Fake::KeepAlives);
    let t = world(&fake, &[("redis_timeout", "2"), ("save_timeout", "3")]);
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
    let fake = fake_redis(Fake::EndlessDiskless);
    let t = world(&fake, &[("max_rdb_size", "1M")]);
    fails_in_time(
        &t,
        &["backup", "--source", "replication"],
        Duration::from_secs(60),
        "max_rdb_size",
    );
    // What the socket buffers took, at most, beyond the cap.
    assert!(
        fake.streamed() < 64 << 20,
        "read {} bytes of a 1 MiB cap",
        fake.streamed()
    );
}

#[test]
fn an_rdb_announced_longer_than_max_rdb_size_is_refused_unread() {
    let fake = fake_redis(Fake::HugeLength);
    let t = world(&fake, &[("max_rdb_size", "1M")]);
    fails_in_time(
        &t,
        &["backup", "--source", "replication"],
        Duration::from_secs(60),
        "max_rdb_size",
    );
    assert!(
        fake.streamed() < 64 << 20,
        "read {} bytes of a 1 TiB RDB announced",
        fake.streamed()
    );
}

#[test]
fn a_backup_stops_before_it_fills_the_local_disk() {
    // Storage on an 8 MiB tmpfs (needs root, as make test has), an endless
    // RDB that does not compress, and no cap that would stop it first: the
    // free-space check must, while 1% of the disk is still free.
    let fake = fake_redis(Fake::EndlessNoise);
    let t = world(&fake, &[]);
    let storage = t.storage_dir();
    std::fs::create_dir_all(&storage).unwrap();
    let _tmpfs = Tmpfs::mount(&storage, "size=8m,mode=0700");
    let out = t
        .cmd(&["backup", "--source", "replication"])
        .run_within(Duration::from_secs(60));
    out.code(4);
    assert!(
        out.stderr.contains("stays free for Redis and the host"),
        "stopped by a full disk, not before\n{out}"
    );
    assert!(t.list(&[]).is_empty(), "a backup was listed");
    assert!(
        t.storage_files().is_empty(),
        "left in storage: {:?}",
        t.storage_files()
    );
}

/// Whatever owns the socket path listens with a queue of one, fills it
/// itself, and never accepts: a connect to it waits in the kernel. It must
/// wait no longer than `redis_timeout`.
#[test]
fn a_unix_socket_that_never_accepts_cannot_hold_the_connect() {
    let t = TestRedis::builder().setting("redis_timeout", "2").prepare();
    let socket = t.path("full.sock");
    let ready = t.path("full.ready");
    let script = "import socket, sys, time\n\
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(0)\n\
filler = socket.socket(socket.AF_UNIX); filler.connect(sys.argv[1])\n\
open(sys.argv[2], 'w').close()\n\
time.sleep(3600)\n";
    let _listener = KilledOnDrop(
        std::process::Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(&socket)
            .arg(&ready)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the listener"),
    );
    wait_for("the listener to fill its queue", || {
        ready.exists().then_some(())
    });
    let started = Instant::now();
    let out = t
        .cmd(&["--redis-socket", &socket.display().to_string(), "backup"])
        .run_within(Duration::from_secs(30));
    let elapsed = started.elapsed();
    out.code(3);
    assert!(out.stderr.contains("full.sock"), "{out}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}\n{out}");
}

/// A helper process, killed when the test ends, whatever its outcome.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
