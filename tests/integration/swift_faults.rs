//! Swift through a fault-injecting TCP proxy (`FaultProxy` in the harness):
//! a TempAuth token that expires during a slow upload, a pre-authenticated
//! token that expired, a download cut mid-object (resumed with `Range`), an
//! upload cut mid-segment (nothing left behind). TempAuth's X-Storage-Url
//! follows the request's Host header, so an ST_AUTH that names the proxy
//! sends every request of the tool through it.

use crate::harness::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const MIB: u64 = 1_048_576;

/// `redis_on_swift`, with no compression (`compression_level = 0`).
fn uncompressed_on_swift(container: &str) -> TestRedis {
    let mut t = redis_on_swift(container);
    t.set_setting("compression_level", "0");
    t
}

/// TempAuth settings of `swift`, with ST_AUTH through `proxy`.
fn through(t: &mut TestRedis, swift: &SwiftStack, proxy: &FaultProxy) {
    for (k, v) in swift.tempauth_settings() {
        t.set_setting(k, &v);
    }
    t.set_setting("st_auth", &format!("{}/auth/v1.0", proxy.base_url(false)));
}

/// A Swift stack, a pass-through fault proxy in front of it, and a Redis
/// whose tool stores in `swift://container` through the proxy.
fn behind_a_proxy(container: &str) -> (SwiftStack, FaultProxy, TestRedis) {
    let swift = SwiftStack::start(None);
    let proxy = FaultProxy::to(swift.proxy_port);
    let mut t = uncompressed_on_swift(container);
    through(&mut t, &swift, &proxy);
    (swift, proxy, t)
}

#[test]
fn swift_token_expires_during_a_slow_backup() {
    // Short tokens, so that several expire during one backup. And a proxy
    // that holds each segment's first PUT for longer than a token lives, so
    // that every segment starts on a token that has expired when Swift
    // checks it: what TempAuth (which hands out the same token until it has
    // expired) and a busy Swift make happen now and then, here every time.
    // Each such 401 must cost a log-in and that segment again, nothing more.
    const LIFE: u64 = 2;
    const RATE: u64 = 4 * MIB; // bytes per second
    const HOLD: Duration = Duration::from_millis(2200);
    let swift = SwiftStack::builder().token_life(LIFE as u32).start();
    let proxy = FaultProxy::to(swift.proxy_port);
    let container = "rbslow";
    let mut t = uncompressed_on_swift(container);
    through(&mut t, &swift, &proxy);
    let mut c = t.conn();
    add_noise_keys(&mut c, 6 * 1024, 21);
    let before = t.state();

    // Precondition: a login through the proxy names the proxy.
    let login = swift.http(
        &format!("{}/auth/v1.0", proxy.base_url(false)),
        "GET",
        &[
            ("X-Auth-User", &swift.st_user),
            ("X-Auth-Key", &swift.st_key),
        ],
        None,
    );
    login.expect(&[200]);
    assert!(
        login
            .must_header("X-Storage-Url")
            .starts_with(&proxy.base_url(false)),
        "{login:?}"
    );

    // ~6 MiB in 1 MiB segments, one more than the failures a backup may
    // have: ~10 token lives.
    proxy.set(Fault::Throttle(RATE));
    proxy.hold(format!("{container}_segments/").as_bytes(), HOLD);
    proxy.watch(b"GET /auth/v1.0 ");
    let start = Instant::now();
    let out = t.run(&["--json", "backup"]);
    let took = start.elapsed();
    let rec = out.ok().lacks(&swift.st_key).json();
    let id = id_of(&rec);
    let sent = proxy.bytes(Direction::ToServer);
    assert!(sent >= 6 * MIB, "only {sent} bytes went through the proxy");
    assert!(
        took >= Duration::from_secs(3 * LIFE),
        "the backup took {took:?}: not clearly longer than the token life ({LIFE} s)"
    );
    assert!(
        proxy.watched() >= 2,
        "one TempAuth login for a {took:?} backup with {LIFE} s tokens: not renewed?"
    );
    let segments = swift.names(&format!("{container}_segments"), &format!("{id}.rbk/"));
    assert!(segments.len() >= 6, "{} segments", segments.len());
    let expired = out
        .stderr
        .matches("token expired during a segment upload")
        .count();
    assert_eq!(expired, segments.len(), "{out}");
    eprintln!(
        "throttled backup: {took:?}, {sent} bytes, {} logins, {} segments",
        proxy.watched(),
        segments.len()
    );

    proxy.set(Fault::PassThrough);
    t.run(&["verify", &id]).ok();
    let rdb = t.export(&id, "export.rdb");
    assert_eq!(digest_of_rdb(&rdb), before, "the backup holds the data");

    // A pre-authenticated token cannot be renewed: once it has expired (Swift
    // says 401 to it), the tool gives up with a message about the token.
    for (k, _) in swift.tempauth_settings() {
        if k != "swift_allow_http" {
            t.remove_setting(k);
        }
    }
    let (url, token) = swift.auth();
    wait_for("the pre-authenticated token to expire", || {
        let r = swift.http(&url, "HEAD", &[("X-Auth-Token", &token)], None);
        (r.status == 401).then_some(())
    });
    let out = t
        .cmd(&["list"])
        .env("OS_STORAGE_URL", &url)
        .env("OS_AUTH_TOKEN", &token)
        .run();
    out.code(4).stderr_has("token").lacks(&token);
}

#[test]
fn swift_download_resumes_after_a_dropped_connection() {
    let swift = SwiftStack::start(None);
    let proxy = FaultProxy::to(swift.proxy_port);
    let container = "rbdown";
    let mut t = uncompressed_on_swift(container);
    for (k, v) in swift.tempauth_settings() {
        t.set_setting(k, &v);
    }
    let mut c = t.conn();
    fill_every_type(&mut c);
    add_noise_keys(&mut c, 4 * 1024, 22);
    let before = t.state();
    // Made directly, not through the proxy.
    let rec = t.backup_json(&[]);
    let id = id_of(&rec);
    let stored = rec["stored_size"].as_u64().expect("stored_size");
    assert!(stored > 3 * MIB, "stored_size {stored}");
    assert_eq!(proxy.connections(), 0);

    through(&mut t, &swift, &proxy);
    proxy.set(Fault::DropOnce {
        direction: Direction::ToClient,
        after: MIB,
    });
    t.run(&["verify", &id]).ok();
    assert_eq!(proxy.drops(), 1, "the proxy cut the download");
    let got = proxy.bytes(Direction::ToClient);
    assert!(
        got > stored,
        "the whole object came through the proxy: {got} of {stored} bytes"
    );

    c.ok(&["SET", "after", "written after the backup"]);
    c.ok(&["DEL", "noise:3"]);
    assert_ne!(t.state(), before, "precondition: the data changed");
    proxy.set(Fault::DropOnce {
        direction: Direction::ToClient,
        after: MIB,
    });
    t.run(&["restore", &id]).ok();
    assert_eq!(proxy.drops(), 2, "the proxy cut the restore's download");
    assert!(t.is_active(), "Redis runs after the restore");
    assert_eq!(t.state(), before, "the restored data is the backup's");
}

#[test]
fn swift_upload_dropped_mid_segment_is_resumed_or_leaves_nothing() {
    let container = "rbup";
    let segments = format!("{container}_segments");
    let (swift, proxy, t) = behind_a_proxy(container);
    let mut c = t.conn();
    add_noise_keys(&mut c, 5 * 1024, 23);
    let before = t.state();

    // Cuts that defeat every attempt: the first in the third segment, after
    // two were stored, then every 512 KiB, so no 1 MiB segment gets through
    // again (small requests, like the clean-up's DELETEs, do).
    proxy.set(Fault::DropRepeatedly {
        direction: Direction::ToServer,
        first: 5 * MIB / 2,
        every: MIB / 2,
    });
    let out = t.run(&["backup", "--id", "cut1"]);
    out.code(4).lacks(&swift.st_key);
    assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
    assert!(proxy.drops() >= 1, "the proxy cut the upload");
    eprintln!(
        "upload cut {} times before the backup gave up",
        proxy.drops()
    );
    proxy.set(Fault::PassThrough);
    assert_eq!(
        swift.names(container, ""),
        Vec::<String>::new(),
        "no manifest, no record"
    );
    assert_eq!(
        swift.names(&segments, "cut1.rbk/"),
        Vec::<String>::new(),
        "the segments written before the cut were removed"
    );
    assert_eq!(t.list(&[]), Vec::<Value>::new(), "list is empty");

    // One cut in the third segment: the upload goes on from there and the
    // backup is whole (the same ID, now that nothing of it is left).
    let cuts = proxy.drops();
    proxy.set(Fault::DropOnce {
        direction: Direction::ToServer,
        after: 5 * MIB / 2,
    });
    let rec = t.backup_json(&["--id", "cut1"]);
    assert_eq!(proxy.drops(), cuts + 1, "the proxy cut the upload once");
    assert_eq!(id_of(&rec), "cut1");
    assert_eq!(t.list(&[]), vec![rec.clone()]);
    let stored = rec["stored_size"].as_u64().expect("stored_size");
    let listed = swift.list(&segments, "cut1.rbk/");
    let names: Vec<String> = listed
        .iter()
        .map(|e| segment_shape(e["name"].as_str().expect("name")))
        .collect();
    let expected: Vec<String> = (1..=stored.div_ceil(SEGMENT))
        .map(|i| format!("cut1.rbk/{i:08}"))
        .collect();
    assert_eq!(names, expected, "one segment per MiB, no leftovers");
    let sizes: u64 = listed.iter().map(|e| e["bytes"].as_u64().unwrap()).sum();
    assert_eq!(sizes, stored, "the segments add up to the object");
    t.run(&["verify", "cut1"]).ok();
    let rdb = t.export("cut1", "export.rdb");
    assert_eq!(digest_of_rdb(&rdb), before, "the backup holds the data");

    // A cut in the last segment, which the end of the stream closes: it is
    // retried like the others (it used to fail the backup).
    let cuts = proxy.drops();
    proxy.set(Fault::DropOnce {
        direction: Direction::ToServer,
        after: stored - 200_000,
    });
    let rec = t.backup_json(&["--id", "cut2"]);
    assert_eq!(
        proxy.drops(),
        cuts + 1,
        "the proxy cut the last segment once"
    );
    let last = stored.div_ceil(SEGMENT);
    assert_eq!(
        swift.names(&segments, "cut2.rbk/").len() as u64,
        last,
        "no leftovers"
    );
    assert_eq!(id_of(&rec), "cut2");
    t.run(&["verify", "cut2"]).ok();
}

/// The object server's pid and command line, from the stack's run/object.pid.
fn object_server(swift: &SwiftStack) -> (u32, Vec<String>) {
    let record = std::fs::read_to_string(swift.dir().join("run/object.pid")).expect("object.pid");
    let pid: u32 = record
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let argv = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (pid, argv)
}

/// The port in the `bind_port` line of the config file a Swift server was
/// started with (the argument naming its `*-server.conf`).
fn bind_port(argv: &[String]) -> u16 {
    let conf = argv
        .iter()
        .find(|a| a.ends_with("-server.conf"))
        .unwrap_or_else(|| panic!("no *-server.conf in {argv:?}"));
    std::fs::read_to_string(conf)
        .expect("the server's config")
        .lines()
        .find_map(|l| l.strip_prefix("bind_port = ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no bind_port in {conf}"))
}

#[test]
fn swift_503_while_the_object_server_is_down_is_retried() {
    let swift = SwiftStack::start(None);
    let mut t = uncompressed_on_swift("rb503");
    for (k, v) in swift.tempauth_settings() {
        t.set_setting(k, &v);
    }
    add_noise_keys(&mut t.conn(), 3 * 1024, 9);
    let before = t.state();

    // The object server goes away: the proxy answers 503 to every object
    // request (containers and auth still work).
    let (pid, argv) = object_server(&swift);
    kill9(pid);
    wait_for("the object server to be gone", || {
        (!std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()))
        .then_some(())
    });

    let (out, mut restarted) = {
        let mut backup = t.cmd(&["backup", "--id", "b503"]).watch();
        // Once the backup has met a 503, bring the object server back. A
        // Python server takes seconds to listen on a loaded machine, longer
        // than the tool's retries last: the tool is held (SIGSTOP) meanwhile,
        // so that the case is the same however slow the machine.
        backup.wait_for_line("503");
        let held = Stopped::hold(backup.pid(), "the backup");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(swift.dir().join("log/object.log"))
            .expect("object log");
        let child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("restart the object server");
        // Recorded like the script does, so that its `stop` ends it too.
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        let start = stat
            .rsplit(") ")
            .next()
            .unwrap_or("")
            .split_whitespace()
            .nth(19)
            .unwrap_or("0")
            .to_string();
        std::fs::write(
            swift.dir().join("run/object.pid"),
            format!("{} {start}\n", child.id()),
        )
        .unwrap();
        let port = bind_port(&argv);
        wait_for("the restarted object server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        drop(held);
        (backup.finish(), child)
    };
    out.ok();
    assert!(
        out.stderr.contains("503"),
        "the backup never met a 503:\n{}",
        out.stderr
    );
    t.run(&["verify", "b503"]).ok();
    let rdb = t.export("b503", "export.rdb");
    assert_eq!(digest_of_rdb(&rdb), before);
    // The stack's stop ends the restarted server; reap it.
    drop(swift);
    let _ = restarted.wait();
}

#[test]
fn swift_too_slow_to_answer_is_timed_out_and_tried_again() {
    // The proxy server frozen (SIGSTOP) until the tool has timed out once:
    // with storage_timeout = 3, requests time out and are sent again until
    // it answers.
    let swift = SwiftStack::start(None);
    let mut t = uncompressed_on_swift("rbslow");
    // Short enough to time out within the test, long enough that a Swift
    // slow to work through what queued up while frozen still answers.
    t.set_setting("storage_timeout", "3");
    t.conn().ok(&["SET", "k", "v"]);
    let (url, token) = swift.auth();
    let run = |t: &TestRedis, args: &[&str]| {
        t.cmd(args)
            .env("OS_STORAGE_URL", &url)
            .env("OS_AUTH_TOKEN", &token)
            .run()
    };
    run(&t, &["backup", "--id", "slow"]).ok();

    let record = std::fs::read_to_string(swift.dir().join("run/proxy.pid")).expect("proxy.pid");
    let proxy_pid = record.split_whitespace().next().expect("pid").to_string();
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &proxy_pid])
            .status()
            .expect("run kill");
    };
    signal("-STOP");
    let mut verify = t
        .cmd(&["verify", "slow"])
        .env("OS_STORAGE_URL", &url)
        .env("OS_AUTH_TOKEN", &token)
        .watch();
    verify.wait_for_line("trying again");
    signal("-CONT");
    let out = verify.finish();
    out.ok();
    assert!(
        out.stderr.to_lowercase().contains("timed out") || out.stderr.contains("trying again"),
        "the verify never waited on a frozen Swift:\n{}",
        out.stderr
    );
}

#[test]
fn swift_500_replies_are_retried_and_a_persistent_one_leaves_nothing() {
    let container = "rb500";
    let segments = format!("{container}_segments");
    let (swift, proxy, t) = behind_a_proxy(container);
    add_noise_keys(&mut t.conn(), 5 * 1024, 29);
    let before = t.state();

    // A 500 for the third segment and every 512 KiB after: the backup
    // gives up, and what it had stored goes.
    proxy.set(Fault::ErrorRepeatedly {
        first: 5 * MIB / 2,
        every: MIB / 2,
    });
    let out = t.run(&["backup", "--id", "e1"]);
    out.code(4).stderr_has("500").lacks(&swift.st_key);
    assert!(proxy.drops() >= 2, "the proxy answered 500 more than once");
    proxy.set(Fault::PassThrough);
    assert_eq!(swift.names(container, ""), Vec::<String>::new());
    assert_eq!(swift.names(&segments, "e1.rbk/"), Vec::<String>::new());
    assert_eq!(t.list(&[]), Vec::<Value>::new());

    // One 500 in the third segment: sent again, and the backup is whole.
    let errors = proxy.drops();
    proxy.set(Fault::ErrorOnce { after: 5 * MIB / 2 });
    let out = t.run(&["--json", "backup", "--id", "e1"]);
    // Retried because it was a 500, not because the connection broke.
    out.ok().stderr_has("answered 500");
    let rec = out.json();
    assert_eq!(proxy.drops(), errors + 1, "one 500");
    assert_eq!(id_of(&rec), "e1");
    let stored = rec["stored_size"].as_u64().expect("stored_size");
    assert_eq!(
        swift.names(&segments, "e1.rbk/").len() as u64,
        stored.div_ceil(SEGMENT),
        "one segment per MiB, no leftovers"
    );

    // A 500 for a request of the download (its first, one in the middle,
    // its last): retried, and the data is whole.
    proxy.set(Fault::PassThrough);
    t.export("e1", "export.rdb");
    let sent = proxy.bytes(Direction::ToServer);
    for after in [1, sent / 2, sent - 20] {
        let errors = proxy.drops();
        proxy.set(Fault::ErrorOnce { after });
        let rdb = t.export("e1", &format!("export-{after}.rdb"));
        assert_eq!(
            proxy.drops(),
            errors + 1,
            "one 500 at byte {after} of {sent}"
        );
        assert_eq!(digest_of_rdb(&rdb), before, "the backup holds the data");
    }
}

#[test]
fn swift_backup_killed_mid_upload_is_never_listed_and_its_segments_go() {
    let container = "rbkill";
    let segments = format!("{container}_segments");
    let (swift, proxy, t) = behind_a_proxy(container);
    add_noise_keys(&mut t.conn(), 6 * 1024, 31);

    // Slow the upload down, kill -9 the tool once three segments are stored
    // (at 1 MiB/s, seconds before the last of its ~7 segments and its
    // manifest: room for a listing that is slow to answer).
    let kill_mid_upload = |id: &str| {
        proxy.set(Fault::Throttle(MIB));
        let mut tool = t.cmd(&["backup", "--id", id]).spawn();
        wait_for("three stored segments", || {
            (swift.names(&segments, &format!("{id}.rbk/")).len() >= 3).then_some(())
        });
        tool.kill().expect("kill -9 the backup");
        tool.wait().expect("reap the backup");
        proxy.set(Fault::PassThrough);
        assert!(
            !t.list(&[]).iter().any(|r| id_of(r) == id),
            "a killed backup is never listed"
        );
        assert_eq!(swift.names(container, id), Vec::<String>::new());
        t.run(&["show", id]).code(4);
    };

    // `delete` removes what the killed run left.
    kill_mid_upload("k1");
    assert!(!swift.names(&segments, "k1.rbk/").is_empty());
    t.run(&["delete", "k1"]).ok();
    assert_eq!(swift.names(&segments, "k1.rbk/"), Vec::<String>::new());
    t.run(&["delete", "k1"]).code(4);

    // A backup under the same ID writes segments of its own, so its object
    // is exactly its own segments, fewer now that the data shrank; the
    // killed run's stay apart until `delete` (or the sweep, a day on).
    kill_mid_upload("k2");
    t.conn().ok(&["FLUSHALL"]);
    add_noise_keys(&mut t.conn(), 1024, 37);
    let before = t.state();
    let rec = t.backup_json(&["--id", "k2"]);
    let stored = rec["stored_size"].as_u64().expect("stored_size");
    let expected: Vec<String> = (1..=stored.div_ceil(SEGMENT))
        .map(|i| format!("k2.rbk/{i:08}"))
        .collect();
    assert!(expected.len() < 3, "{expected:?}");
    let uploads = by_upload(&swift.names(&segments, "k2.rbk/"));
    assert_eq!(
        uploads.len(),
        2,
        "the killed run's and the new one's: {uploads:?}"
    );
    assert!(uploads.values().any(|s| *s == expected), "{uploads:?}");
    let rdb = t.export("k2", "export.rdb");
    assert_eq!(digest_of_rdb(&rdb), before);
    t.run(&["delete", "k2"]).ok();
    assert_eq!(swift.names(&segments, "k2.rbk/"), Vec::<String>::new());

    // `delete` of an unfinished ID racing a backup of that ID finishing
    // elsewhere (its manifest appears while the segments go): the finished
    // one has lost segments, and delete says so instead of succeeding.
    add_noise_keys(&mut t.conn(), 6 * 1024, 41);
    kill_mid_upload("k3");
    // Only segment DELETEs name a segment (the listing asks by prefix). The
    // DELETE of the first segment is held 5 s: time for the manifest to be
    // stored before delete looks for it, however slow Swift is today.
    proxy.watch(b"_segments/k3.rbk/");
    proxy.hold(b"/00000001 HTTP", Duration::from_secs(5));
    let began = Instant::now();
    let racing = t.cmd(&["delete", "k3"]).spawn();
    wait_for("delete to remove segments", || {
        (proxy.watched() >= 1).then_some(())
    });
    swift
        .put(&format!("{container}/k3.rbk"), b"finished elsewhere")
        .expect(&[201]);
    let out = racing.wait_with_output().expect("the racing delete");
    assert!(
        began.elapsed() >= Duration::from_secs(5),
        "the first segment's DELETE was not held"
    );
    proxy.set(Fault::PassThrough);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("being written"), "{stderr}");
}

/// `backup --id pre-upgrade` run on two hosts at once (an ad-hoc command
/// over a fleet sharing one container and key; the concurrency review).
/// Each checked that the ID was free, then uploaded segments under names
/// made of the ID alone and wrote manifest and record over whatever was
/// there: host B, whose first segment the proxy held until host A's backup
/// was done, replaced A's segment, manifest and record, both said they
/// succeeded, and a restore of `pre-upgrade` on host A loaded host B's
/// data. Each upload's segments are its own now, and a manifest is written
/// only where none is: the first to finish keeps the ID, whole; the other
/// is exit 4 and leaves nothing.
#[test]
fn the_same_id_backed_up_by_two_hosts_at_once_keeps_the_first_whole() {
    let swift = SwiftStack::start(None);
    let proxy = FaultProxy::to(swift.proxy_port);
    let mut a = uncompressed_on_swift("fleet");
    for (k, v) in swift.tempauth_settings() {
        a.set_setting(k, &v);
    }
    let mut b = uncompressed_on_swift("fleet");
    through(&mut b, &swift, &proxy);
    b.set_setting("key_file", &a.key_file().display().to_string());
    a.set_setting("instance", "host-a");
    b.set_setting("instance", "host-b");
    a.conn().ok(&["SET", "host", "A"]);
    b.conn().ok(&["SET", "host", "B"]);
    let a_data = a.state();

    proxy.watch(b"_segments/pre-upgrade.rbk/");
    proxy.hold(b"/00000001 HTTP", Duration::from_secs(8));
    let on_b = b.cmd(&["backup", "--id", "pre-upgrade"]).spawn();
    wait_for("host B to upload its first segment", || {
        (proxy.watched() >= 1).then_some(())
    });
    a.run(&["backup", "--id", "pre-upgrade"]).ok();
    let on_b = on_b.wait_with_output().expect("host B's backup");
    let said = String::from_utf8_lossy(&on_b.stderr).into_owned();
    assert_eq!(on_b.status.code(), Some(4), "host B: {said}");
    assert!(said.contains("written meanwhile by another run"), "{said}");

    let shown = a.run(&["--json", "show", "pre-upgrade"]).ok().json();
    assert_eq!(shown["instance"], "host-a", "{shown}");
    a.run(&["verify", "pre-upgrade"]).ok();
    let uploads: std::collections::BTreeSet<String> = swift
        .names("fleet_segments", "pre-upgrade.rbk/")
        .iter()
        .map(|name| {
            name.rsplit_once('/')
                .map_or("", |(upload, _)| upload)
                .to_string()
        })
        .collect();
    assert_eq!(uploads.len(), 1, "host B's segments are gone: {uploads:?}");
    a.conn().ok(&["SET", "host", "changed"]);
    a.run(&["restore", "pre-upgrade"]).ok();
    assert_eq!(a.state(), a_data, "host A's own data");
}
