//! How the tool reaches Redis: details read from redis.conf (requirepass,
//! unix socket, rename-command), ACL credentials from the settings file or the
//! environment, and the exit code (3) and message when Redis refuses, is not
//! there, does not answer in time, or answers with more than any reply holds.

use crate::fake_swift::run_bounded;
use crate::harness::*;
use std::time::Duration;

/// Back up, export, and check that the export holds exactly `state`.
fn backup_holds(t: &TestRedis, run: Run, state: &DbState) -> String {
    let out = run.run();
    out.ok();
    let id = out.last_line();
    let rdb = t.export(&id, "check.rdb");
    assert_eq!(&digest_of_rdb(&rdb), state, "export of {id} differs");
    std::fs::remove_file(rdb).unwrap();
    id
}

fn small_dataset(t: &TestRedis) -> DbState {
    let mut c = t.conn();
    c.ok(&["SET", "plain", "value"]);
    c.ok(&["HSET", "hash", "f", "v"]);
    c.ok(&["SELECT", "1"]);
    c.ok(&["RPUSH", "list", "a", "b"]);
    c.ok(&["SELECT", "0"]);
    c.state()
}

#[test]
fn requirepass_is_read_from_redis_conf() {
    let t = TestRedis::builder().requirepass("conf-pass-4Tq9").start();
    let state = small_dataset(&t);
    let out = t.run(&["backup"]);
    out.ok().lacks("conf-pass-4Tq9");
    let rdb = t.export(&out.last_line(), "x.rdb");
    assert_eq!(digest_of_rdb(&rdb), state);
}

#[test]
fn acl_user_and_password_from_the_settings_file() {
    let t = TestRedis::builder()
        .acl_user("backup", "acl-file-pass-8Hw2")
        .default_user_off()
        .setting("redis_user", "backup")
        .setting("redis_password", "acl-file-pass-8Hw2")
        .start();
    let state = small_dataset(&t);
    backup_holds(&t, t.cmd(&["backup"]), &state);
}

#[test]
fn acl_user_and_password_from_the_environment() {
    let t = TestRedis::builder()
        .acl_user("backup", "acl-env-pass-3Kd7")
        .default_user_off()
        .start();
    let state = small_dataset(&t);
    // Without credentials the default user (off) is refused...
    let out = t.run(&["backup"]);
    out.code(3);
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
    // ...with them from the environment it works.
    let run = t
        .cmd(&["backup"])
        .env("REDIS_BACKUP_REDIS_USER", "backup")
        .env("REDIS_BACKUP_REDIS_PASSWORD", "acl-env-pass-3Kd7");
    backup_holds(&t, run, &state);
    // User from the file, password from the environment.
    let mut t = t;
    t.set_setting("redis_user", "backup");
    let run = t
        .cmd(&["backup"])
        .env("REDIS_BACKUP_REDIS_PASSWORD", "acl-env-pass-3Kd7");
    backup_holds(&t, run, &state);
}

#[test]
fn wrong_password_is_exit_3_and_not_echoed() {
    let t = TestRedis::builder()
        .acl_user("backup", "right-pass-6Vb1")
        .default_user_off()
        .setting("redis_user", "backup")
        .setting("redis_password", "wrong-pass-2Zx5")
        .start();
    small_dataset(&t);
    let out = t.run(&["-v", "backup"]);
    out.code(3)
        .stderr_has("rejected the password (WRONGPASS")
        .lacks("wrong-pass-2Zx5")
        .lacks("right-pass-6Vb1");
    assert!(!out.stderr.trim().is_empty(), "no error message\n{out}");
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());

    // Same through the environment, with requirepass instead of ACL.
    let t = TestRedis::builder().requirepass("right-pass-1Qa0").start();
    small_dataset(&t);
    let out = t
        .cmd(&["backup"])
        .env("REDIS_BACKUP_REDIS_PASSWORD", "wrong-pass-0Pl4")
        .run();
    out.code(3)
        .stderr_has("rejected the password (WRONGPASS")
        .lacks("wrong-pass-0Pl4")
        .lacks("right-pass-1Qa0");
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
}

#[test]
fn unix_socket_only() {
    let t = TestRedis::builder().unix_socket_only().start();
    let state = small_dataset(&t);
    backup_holds(&t, t.cmd(&["backup"]), &state);
}

#[test]
fn renamed_bgsave_and_lastsave_are_used() {
    let t = TestRedis::builder()
        .rename_command("BGSAVE", "bgsave-x81")
        .rename_command("LASTSAVE", "lastsave-x81")
        .start();
    let state = small_dataset(&t);
    let mut c = t.conn();
    let saves = c.rdb_saves();
    backup_holds(&t, t.cmd(&["backup"]), &state);
    assert!(c.rdb_saves() > saves, "the backup made Redis save");
}

#[test]
fn disabled_bgsave_is_exit_3_naming_bgsave() {
    let t = TestRedis::builder().rename_command("BGSAVE", "").start();
    small_dataset(&t);
    let out = t.run(&["backup"]);
    out.code(3).stderr_has(
        "the command BGSAVE is disabled by rename-command in redis.conf; this tool needs it",
    );
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
    assert!(t.is_active(), "Redis must be left running");
}

#[test]
fn disabled_config_is_read_from_redis_conf_instead() {
    let t = TestRedis::builder().rename_command("CONFIG", "").start();
    t.conn().ok(&["SET", "k", "from-redis"]);
    let id = t.backup();
    let rdb = t.export(&id, "x.rdb");
    assert_eq!(
        LoadedRdb::load(&rdb).get("k").as_deref(),
        Some(&b"from-redis"[..])
    );
}

#[test]
fn a_command_redis_does_not_know_is_exit_3_quoting_its_reply() {
    // LASTSAVE renamed in the server, but the tool is given a redis.conf
    // that does not say so: Redis's own error reply must reach the user.
    let t = TestRedis::builder()
        .rename_command("LASTSAVE", "lastsave-q7")
        .start();
    t.conn().ok(&["SET", "k", "v"]);
    let conf = std::fs::read_to_string(t.redis_conf()).unwrap();
    let unaware: String = conf
        .lines()
        .filter(|l| !l.starts_with("rename-command"))
        .map(|l| format!("{l}\n"))
        .collect();
    let other = t.path("unaware-redis.conf");
    std::fs::write(&other, unaware).unwrap();
    let out = t.run(&["backup", "--redis-conf", &other.display().to_string()]);
    out.code(3).stderr_has(&format!(
        "Redis at 127.0.0.1:{} refused LASTSAVE: ERR unknown command",
        t.port
    ));
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
}

#[test]
fn a_password_the_tool_was_not_given_is_exit_3_saying_where_to_set_it() {
    // Set at run time: redis.conf does not have it.
    let t = TestRedis::start();
    t.conn()
        .ok(&["CONFIG", "SET", "requirepass", "runtime-pass-5Rt2"]);
    let out = t.run(&["backup"]);
    out.code(3).lacks("runtime-pass-5Rt2").stderr_has(&format!(
        "Redis at 127.0.0.1:{} requires a password; set redis_password in the settings \
         file or requirepass in redis.conf",
        t.port
    ));
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
}

#[test]
fn a_user_without_a_command_it_needs_is_exit_3_naming_the_grant() {
    let t = TestRedis::builder()
        .conf_line("user limited on >Lim-Pw-52 ~* +info +ping")
        .setting("redis_user", "limited")
        .setting("redis_password", "Lim-Pw-52")
        .start();
    t.conn().ok(&["SET", "k", "v"]);
    let out = t.run(&["backup"]);
    out.code(3)
        .stderr_has("Redis user limited may not run ")
        .stderr_has("(NOPERM); grant it with ACL SETUSER limited +")
        .lacks("Lim-Pw-52");
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());
}

#[test]
fn an_absent_unix_socket_is_exit_3_saying_so() {
    let mut t = TestRedis::builder().unix_socket_only().start();
    let absent = t.path("absent.sock");
    t.set_setting("redis_socket", &absent.display().to_string());
    let out = t.run(&["backup"]);
    out.code(3).stderr_has(&format!(
        "cannot reach Redis at unix:{} (no such socket); is the service running?",
        absent.display()
    ));
}

#[test]
fn a_redis_that_does_not_answer_is_exit_3_within_redis_timeout() {
    let t = TestRedis::builder().setting("redis_timeout", "1").start();
    // Every client's commands wait for 20 s (CLIENT UNPAUSE too: the pause
    // just runs out); the tool's PING must not. Ending within 15 s proves
    // it did not wait for the pause, with room for a slow start; the
    // message proves it was redis_timeout that ended it.
    t.conn().ok(&["CLIENT", "PAUSE", "20000", "ALL"]);
    let out = t
        .cmd(&["backup"])
        .run_within(std::time::Duration::from_secs(15));
    out.code(3).stderr_has(&format!(
        "Redis at 127.0.0.1:{} did not answer PING within 1.0s (setting redis_timeout)",
        t.port
    ));
}

/// Whatever answers on Redis's port answers PING with one reply that never
/// ends, each piece within the per-value caps: `head`, then `piece` again
/// and again.
fn endless_reply_to_ping(head: &[u8], piece: Vec<u8>) -> FakeRedis {
    let head = head.to_vec();
    FakeRedis::start(move |args| {
        let piece = piece.clone();
        match String::from_utf8_lossy(&args[0])
            .to_ascii_uppercase()
            .as_str()
        {
            "PING" => FakeReply::Stream {
                head: head.clone(),
                more: Box::new(move || Some(piece.clone())),
                every: Duration::ZERO,
            },
            _ => FakeReply::Bytes(Reply::Status("OK".into()).encode()),
        }
    })
}

/// A backup against `fake`, bounded in time and measured for memory; the
/// tool must end by itself, exit 3, naming the reply's limit.
fn backup_refuses_the_flood(fake: &FakeRedis) {
    let mut t = TestRedis::builder()
        .setting("redis_timeout", "30")
        .prepare();
    t.set_setting("redis_port", &fake.port.to_string());
    t.remove_setting("redis_password");
    let b = run_bounded(t.cmd(&["backup"]), Duration::from_secs(20));
    assert!(
        b.finished,
        "still running after {:?}, peak RSS {}\n{}",
        b.elapsed,
        b.rss_text(),
        b.out
    );
    b.out
        .code(3)
        .stderr_has(&format!(
            "Redis at 127.0.0.1:{} sent a malformed reply to PING",
            fake.port
        ))
        .stderr_has("the limit for one reply");
    eprintln!("refused after {:?}, peak RSS {}", b.elapsed, b.rss_text());
    b.rss_below(200);
    assert!(b.elapsed < Duration::from_secs(10), "{:?}", b.elapsed);
}

#[test]
fn a_reply_of_a_million_64_mib_bulks_is_exit_3_within_bounded_memory() {
    let mut bulk = format!("${}\r\n", 64 << 20).into_bytes();
    bulk.resize(bulk.len() + (64 << 20), b'x');
    bulk.extend_from_slice(b"\r\n");
    backup_refuses_the_flood(&endless_reply_to_ping(b"*1048576\r\n", bulk));
}

#[test]
fn a_reply_of_arrays_of_a_million_integers_is_exit_3_within_bounded_memory() {
    // Each `:0` is 4 bytes on the wire and a 32-byte value once decoded.
    let mut inner = b"*1048576\r\n".to_vec();
    inner.extend(b":0\r\n".repeat(1 << 20));
    backup_refuses_the_flood(&endless_reply_to_ping(b"*1048576\r\n", inner));
}

/// Whatever answers on Redis's port puts terminal escape sequences in its
/// error reply (a new window title, a cleared screen), a right-to-left
/// override (which shows the words after it in reverse order) and in INFO's
/// version: what the operator reads on stderr shows them escaped, never
/// sends them.
#[test]
fn escape_sequences_from_the_redis_port_never_reach_the_terminal() {
    const ESCAPES: &str = "\x1b]0;owned\x07\x1b[2J\u{202e}";
    let fake = FakeRedis::start(move |args| {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let reply = match name.as_str() {
            "PING" => Reply::Status("PONG".into()),
            "INFO" => {
                Reply::Bulk(format!("# Server\r\nredis_version:7.2.4{ESCAPES}\r\n").into_bytes())
            }
            _ => Reply::Error(format!("ERR no{ESCAPES} thanks")),
        };
        FakeReply::Bytes(reply.encode())
    });
    let mut t = TestRedis::builder().prepare();
    t.set_setting("redis_port", &fake.port.to_string());
    t.remove_setting("redis_password");

    let out = t.cmd(&["-v", "backup"]).run_within(Duration::from_secs(30));

    assert!(out.code.is_some_and(|c| c != 0), "{out}");
    assert!(
        !out.stderr.contains('\x1b')
            && !out.stderr.contains('\x07')
            && !out.stderr.contains('\u{202e}'),
        "raw escape sequences on stderr: {:?}",
        out.stderr
    );
    assert!(out.stderr.contains("\\u{1b}"), "{out}");
    assert!(out.stderr.contains("\\u{202e}"), "{out}");
}

/// A backup from a scripted Redis (`fake`) that saves a one-key RDB into
/// `t`'s data dir; its output, the files left in the storage, and how many
/// saves it asked for.
fn backup_from(t: &mut TestRedis, fake: ScriptedRedis) -> (Output, Vec<String>, usize) {
    let fake = fake
        .config("dir", &t.data_dir().display().to_string())
        .saving(make_rdb(&[("k", b"v")]))
        .serve();
    t.set_setting("redis_port", &fake.port.to_string());
    let b = run_bounded(t.cmd(&["backup"]), Duration::from_secs(60));
    assert!(b.finished, "still running after {:?}\n{}", b.elapsed, b.out);
    eprintln!("peak RSS {}", b.rss_text());
    b.rss_below(200);
    (b.out, t.storage_files(), fake.count("BGSAVE"))
}

/// Whatever answers on Redis's port reports a version of 70,000 bytes:
/// the backup said "complete" (exit 0) and stored a record larger than any
/// reader takes, so nothing could list, verify or restore it. (For a
/// Valkey, whose own version is the one checked for length, `redis_version`
/// went unchecked.) A version is a short token now, or exit 3.
#[test]
fn a_version_that_is_not_a_version_is_exit_3_and_nothing_is_stored() {
    let huge = format!("7.2.4{}", "9".repeat(70_000));
    for (version, extra) in [
        (
            huge.as_str(),
            vec!["server_name:valkey", "valkey_version:8.1.1"],
        ),
        (
            "7.2.4",
            vec!["server_name:valkey", "valkey_version:8.1.1 x"],
        ),
        (huge.as_str(), vec![]),
    ] {
        let mut t = TestRedis::builder().save(Save::Off).prepare();
        let (out, stored, _) = backup_from(&mut t, ScriptedRedis::new().server(version, &extra));
        out.code(3).stderr_has("that is not a version");
        assert!(out.stderr.len() < 2_000, "the value is quoted whole\n{out}");
        assert_eq!(stored, Vec::<String>::new(), "{extra:?}");
    }
}

/// INFO keyspace names 3.5 million databases (62 MB, within what one reply
/// may be): a map of each, three times, and a 206 MB record, 2.9 GB of
/// memory in all. An INFO larger than any server's is refused now, and a
/// record larger than a reader takes is never stored (exit 3 both).
#[test]
fn a_keyspace_of_millions_of_databases_is_exit_3_within_bounded_memory() {
    let lines: Vec<String> = (0..3_500_000).map(|i| format!("db{i}:keys=1")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut t = TestRedis::builder().save(Save::Off).prepare();
    let (out, stored, _) = backup_from(&mut t, ScriptedRedis::new().keyspace(&lines));
    out.code(3).stderr_has("INFO keyspace");
    assert_eq!(stored, Vec::<String>::new());

    // 30,000 of them fit in an INFO, not in a record: refused before the
    // save (it was refused after a whole upload).
    let mut t = TestRedis::builder().save(Save::Off).prepare();
    let (out, stored, saves) = backup_from(&mut t, ScriptedRedis::new().keyspace(&lines[..30_000]));
    out.code(3).stderr_has("at most 512");
    assert_eq!(stored, Vec::<String>::new());
    assert_eq!(saves, 0, "{out}");
}

/// A server that reported `expires=` of 2^64 - 1 when it was backed up:
/// the restore's key count check added it to the keys it found, which
/// overflowed (a panic after Redis was started on the restored data; in a
/// release build a false mismatch, and a rollback, exit 6).
#[test]
fn a_recorded_ttl_count_of_u64_max_does_not_overflow_the_restore_check() {
    let mut source = TestRedis::builder().save(Save::Off).prepare();
    let fake = ScriptedRedis::new().keyspace(&["db0:keys=1,expires=18446744073709551615"]);
    let (out, _, _) = backup_from(&mut source, fake);
    out.ok();
    let id = out.last_line();
    let mut t = TestRedis::start();
    t.use_backups_of(&source);

    let restored = t.run(&["restore", &id]);

    restored.ok();
    assert_eq!(t.conn().call(&["GET", "k"]), Reply::Bulk(b"v".to_vec()));
}

/// AUTH renamed on the server, and the tool not told: the server's
/// "unknown command" reply quotes the arguments, cut at 128 bytes and with
/// CR and LF made spaces, so replacing the password by `***` missed it,
/// and its start reached the error, the status file (0644) and the
/// journal. A refused AUTH is now said by its code alone.
#[test]
fn a_refused_auth_never_quotes_the_password() {
    let long = format!("Long{}", "SecretPw".repeat(40));
    let mut t = TestRedis::builder()
        .requirepass(&long)
        .rename_command("AUTH", "AUTH-8c1f")
        .start();
    // The running server has the rename; the config the tool reads, not.
    let conf = t.path("redis.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("rename-command"))
        .collect();
    std::fs::write(&conf, kept.join("\n") + "\n").unwrap();
    let status = t.path("status.json");
    t.set_setting("status_file", &status.display().to_string());
    for password in [long.as_str(), "short\rSecret9"] {
        let out = t
            .cmd(&["backup"])
            .env("REDIS_BACKUP_REDIS_PASSWORD", password)
            .run();
        out.code(3).stderr_has("AUTH");
        for part in ["SecretPw", "Secret9"] {
            out.lacks(part);
            let status = std::fs::read_to_string(&status).expect("the status file");
            assert!(!status.contains(part), "{status}");
        }
    }
}
