//! Self-tests of the attacker harness (`attacker.rs`): the user it plays, the
//! permission check behind "no copy readable by the attacker", the victims'
//! change detection, and the fake Redis (scripted replies and drip-feed).
//! They pass on any code: they test the harness, not the tool.

use crate::attacker::*;
use crate::harness::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

#[test]
fn the_owner_user_is_unprivileged_and_acts_as_itself() {
    let (uid, gid) = owner_ids();
    assert_ne!(uid, 0, "{} must not be root", owner_user());
    assert_ne!(gid, 0, "{}'s group must not be root's", owner_user());
    let out = as_owner("id").run();
    out.ok();
    assert_eq!(
        out.stdout.trim(),
        format!(
            "uid={uid}({user}) gid={gid}({user}) groups={gid}({user})",
            user = owner_user()
        ),
        "setpriv runs programs as the owner user with no other group"
    );
}

#[test]
fn readable_copies_follow_what_the_attacker_may_read() {
    let scratch = Scratch::new("copies");
    let (uid, gid) = owner_ids();
    let needle = distinctive("copies");
    let dir = scratch.join("data");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    let write = |name: &str, mode: u32| {
        let path = dir.join(name);
        fs::write(&path, format!("before {needle} after")).unwrap();
        set_mode(&path, mode);
        path
    };
    let readable = write("world-readable", 0o644);
    write("root-only", 0o600);
    let private = dir.join("private");
    fs::create_dir(&private).unwrap();
    set_mode(&private, 0o700);
    fs::write(private.join("inside"), &needle).unwrap();
    set_mode(&private.join("inside"), 0o644);
    std::os::unix::fs::symlink(&readable, dir.join("link")).unwrap();
    assert_eq!(
        readable_copies(&dir, needle.as_bytes(), uid, gid),
        vec![readable],
        "only the file the attacker can reach and read"
    );
}

#[test]
fn victims_notice_owner_mode_bytes_and_entries() {
    let scratch = Scratch::new("victims");
    let victim = Victim::new(scratch.path(), "victim");
    assert!(victim.problems().is_empty(), "{:?}", victim.problems());
    let meta = fs::metadata(&victim.file).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o600)
    );
    assert_eq!(mode_of(victim.dir()), 0o700);

    let (uid, gid) = owner_ids();
    std::os::unix::fs::chown(&victim.file, Some(uid), Some(gid)).unwrap();
    assert_eq!(victim.problems().len(), 2, "the file and its directory");
    std::os::unix::fs::chown(&victim.file, Some(0), Some(0)).unwrap();
    fs::write(&victim.file, b"other bytes").unwrap();
    set_mode(&victim.file, 0o600);
    assert!(
        victim.problems()[0].contains("overwritten"),
        "{:?}",
        victim.problems()
    );
    fs::write(&victim.file, &victim.bytes).unwrap();
    fs::write(victim.dir().join("new"), b"").unwrap();
    assert!(
        victim.problems()[0].contains("new: file"),
        "{:?}",
        victim.problems()
    );
    fs::remove_file(victim.dir().join("new")).unwrap();
    assert!(victim.problems().is_empty(), "{:?}", victim.problems());
}

#[test]
fn the_fake_redis_answers_from_its_script_and_plays_a_save() {
    let fake = ScriptedRedis::new()
        .config("dir", "/nowhere")
        .keyspace(&["db0:keys=3,expires=0,avg_ttl=0"])
        .serve();
    let mut c = Resp::tcp(fake.port).expect("connect to the fake");
    assert_eq!(c.call(&["PING"]), Reply::Status("PONG".into()));
    assert_eq!(
        c.call(&["CONFIG", "GET", "dir"]),
        Reply::Array(vec![
            Reply::Bulk(b"dir".to_vec()),
            Reply::Bulk(b"/nowhere".to_vec())
        ])
    );
    assert_eq!(c.call(&["CONFIG", "GET", "nothing"]), Reply::Array(vec![]));
    assert_eq!(c.info_field("server", "redis_version"), "7.0.15");
    assert_eq!(
        c.info_field("keyspace", "db0"),
        "keys=3,expires=0,avg_ttl=0"
    );
    let before = c.call(&["LASTSAVE"]).int();
    assert_eq!(c.rdb_saves(), 0);
    c.ok(&["BGSAVE"]);
    assert_eq!(c.rdb_saves(), 1);
    assert_eq!(c.info_field("persistence", "rdb_bgsave_in_progress"), "0");
    assert!(c.call(&["LASTSAVE"]).int() > before, "LASTSAVE moved");
    assert!(c.call(&["FLUSHALL"]).is_error());
    assert_eq!(fake.count("config"), 2);
}

#[test]
fn the_fake_redis_drip_feeds_a_reply() {
    let every = Duration::from_millis(20);
    let fake = ScriptedRedis::new().drip("PING", every).serve();
    let mut c = Resp::tcp(fake.port).expect("connect to the fake");
    let started = Instant::now();
    assert_eq!(c.call(&["PING"]), Reply::Status("PONG".into()));
    // "+PONG\r\n": 7 bytes, a pause after each.
    assert!(
        started.elapsed() >= every * 6,
        "the reply came in {:?}, faster than a drip",
        started.elapsed()
    );
    assert!(!c.call(&["CONFIG", "GET", "save"]).is_error());
}
