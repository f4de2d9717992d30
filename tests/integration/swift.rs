//! `storage = swift://CONTAINER` against a real OpenStack Swift all-in-one
//! (`tests/support/swift-aio.sh`, TempAuth, no Keystone) that each test starts
//! for itself: a segmented round trip checked object by object in Swift,
//! listing pages and delete, wrong credentials and missing backups, and an
//! unreachable Swift. What is in Swift is read with the harness's own client
//! (curl), never with the crate's code.
//!
//! A stack takes ~5 s to start and the test machines have 2 cores: keep these
//! tests few, each checking several things.

use crate::harness::*;
use serde_json::Value;
use std::fs;
use std::time::{Duration, Instant};

/// How long a command may take to give up on a Swift it cannot reach.
const GIVE_UP_WITHIN: Duration = Duration::from_secs(20);

/// `n` keys `rand:i` of 1 KiB of noise each in db 0, which deflate cannot
/// shrink: the backup is about `n` KiB in storage.
fn add_incompressible(conn: &mut Resp, n: usize, seed: u64) {
    for start in (0..n).step_by(500) {
        let cmds: Vec<_> = (start..n.min(start + 500))
            .map(|i| {
                cmd(&[
                    b"SET".to_vec(),
                    format!("rand:{i}").into_bytes(),
                    noise(1024, seed.wrapping_mul(1_000_003).wrapping_add(i as u64)),
                ])
            })
            .collect();
        conn.pipeline(&cmds);
    }
}

fn str_of<'a>(record: &'a Value, field: &str) -> &'a str {
    record[field]
        .as_str()
        .unwrap_or_else(|| panic!("record has no string `{field}`: {record}"))
}

#[test]
fn md5_of_the_harness_matches_known_digests() {
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        md5_hex(b"The quick brown fox jumps over the lazy dog"),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
    // Lengths around the padding boundary.
    assert_eq!(
        md5_hex(&[b'a'; 56]),
        "3b0c8ac703f828b04c6c197006d17218",
        "56 bytes"
    );
    assert_eq!(
        md5_hex(&[b'a'; 64]),
        "014842d480b571495a4a0363793f7367",
        "64 bytes"
    );
}

#[test]
fn swift_round_trip_in_many_segments() {
    let swift = SwiftStack::start(None);
    let container = "rbtest";
    let segments = format!("{container}_segments");
    let mut t = redis_on_swift(container);
    for (k, v) in swift.tempauth_settings() {
        t.set_setting(k, &v);
    }
    let mut c = t.conn();
    fill_every_type(&mut c);
    add_incompressible(&mut c, 5000, 1);
    let before = t.state();

    let out = t.run(&["--json", "backup"]);
    out.ok().lacks(&swift.st_key);
    let rec = out.json();
    let id = id_of(&rec);
    let object = format!("{id}.rbk");
    // The account is part of where it was written (`AUTH_test`, the last
    // part of the account URL).
    let account = swift.storage_url.rsplit('/').next().expect("account");
    assert_eq!(
        str_of(&rec, "location"),
        format!("swift://{account}/{container}/{object}"),
        "{rec}"
    );
    assert_eq!(keys_of_record(&rec), before.keys, "{rec}");

    // The manifest: an SLO with the record's metadata on a plain HEAD.
    let head = swift.head(&format!("{container}/{object}"));
    head.expect(&[200]);
    assert_eq!(
        head.header("X-Static-Large-Object").map(str::to_lowercase),
        Some("true".into()),
        "{head:?}"
    );
    assert_eq!(head.header("X-Object-Meta-Backup-Id"), Some(id.as_str()));
    assert_eq!(
        head.header("X-Object-Meta-Raw-Sha256"),
        Some(str_of(&rec, "raw_sha256")),
        "{head:?}"
    );
    assert_eq!(
        head.header("X-Object-Meta-Key-Id"),
        Some(str_of(&rec, "key_id")),
        "{head:?}"
    );
    assert_eq!(
        head.header("Content-Length")
            .and_then(|l| l.parse::<u64>().ok()),
        rec["stored_size"].as_u64(),
        "stored_size is the size of the object in Swift\n{head:?}\n{rec}"
    );

    // The record object is the record `backup --json` printed, with its tag.
    let stored = swift.get(&format!("{container}/{id}.json"));
    stored.expect(&[200]);
    let mut stored = stored.json();
    let tag = stored.as_object_mut().unwrap().remove("record_tag");
    assert!(tag.is_some_and(|t| t.as_str().is_some_and(|t| t.len() == 64)));
    assert_eq!(stored, rec, "{container}/{id}.json");
    assert_eq!(
        swift.names(container, ""),
        vec![format!("{id}.json"), object.clone()],
        "the container holds the record and the manifest, nothing else"
    );

    // The segments: numbered from 00000001, 1 MiB each but the last, listed
    // with the MD5 of their bytes; together they are the object.
    let listed = swift.list(&segments, "");
    assert!(listed.len() >= 3, "expected >= 3 segments: {listed:?}");
    let mut whole = Vec::new();
    for (i, entry) in listed.iter().enumerate() {
        let name = str_of(entry, "name");
        assert_eq!(
            segment_shape(name),
            format!("{object}/{:08}", i + 1),
            "{listed:?}"
        );
        let bytes = swift.get(&format!("{segments}/{name}"));
        bytes.expect(&[200]);
        assert_eq!(
            entry["bytes"].as_u64(),
            Some(bytes.body.len() as u64),
            "{entry}"
        );
        assert_eq!(
            str_of(entry, "hash"),
            md5_hex(&bytes.body),
            "listing hash of {name}"
        );
        let size = bytes.body.len() as u64;
        if i + 1 < listed.len() {
            assert_eq!(size, SEGMENT, "segment {name} is not the last");
        } else {
            assert!(size > 0 && size <= SEGMENT, "last segment {name}: {size}");
        }
        whole.extend_from_slice(&bytes.body);
    }
    assert_eq!(rec["stored_size"].as_u64(), Some(whole.len() as u64));
    let got = swift.get(&format!("{container}/{object}"));
    got.expect(&[200]);
    assert!(
        got.body == whole,
        "GET of the manifest is not its segments in order ({} vs {} bytes)",
        got.body.len(),
        whole.len()
    );

    // The commands, through Swift.
    assert_eq!(t.list(&[]), vec![rec.clone()], "list --json");
    assert_eq!(
        t.run(&["--json", "show", &id]).ok().json(),
        rec,
        "show --json"
    );
    t.run(&["verify", &id]).ok().lacks(&swift.st_key);
    let rdb = t.export(&id, "export.rdb");
    assert_eq!(sha256_file(&rdb), str_of(&rec, "raw_sha256"), "export");
    assert_eq!(
        rec["raw_size"].as_u64(),
        Some(fs::metadata(&rdb).unwrap().len())
    );
    assert_eq!(digest_of_rdb(&rdb), before, "the export holds the data");

    // Restore brings back the data of backup time.
    c.ok(&["SET", "after", "written after the backup"]);
    c.ok(&["DEL", "rand:7"]);
    c.ok(&["SET", "rand:8", "changed"]);
    assert_ne!(t.state(), before, "precondition: the data changed");
    t.run(&["restore", &id]).ok().lacks(&swift.st_key);
    assert!(t.is_active(), "Redis runs after the restore");
    assert_eq!(t.state(), before, "the restored data is the backup's");
}

#[test]
fn swift_list_pages_and_delete_removes_segments() {
    // 3 names a page: the container's 10 names and the segments take pages.
    let swift = SwiftStack::start(Some(3));
    let container = "database_backups";
    let segments = "database_backups_segments";
    let t = redis_on_swift(container);
    // Pre-authenticated, as Trove hands it to its backup jobs.
    let (url, token) = swift.auth();
    let run = |args: &[&str]| -> Output {
        let out = t
            .cmd(args)
            .env("OS_STORAGE_URL", &url)
            .env("OS_AUTH_TOKEN", &token)
            .run();
        out.lacks(&token);
        out
    };
    let mut c = t.conn();
    add_incompressible(&mut c, 1500, 2);

    let mut records = Vec::new();
    for n in 1..=5 {
        c.ok(&["SET", "n", &n.to_string()]);
        let id = format!("b{n}");
        let rec = run(&["--json", "backup", "--id", &id]).ok().json();
        assert_eq!(id_of(&rec), id, "{rec}");
        let account = swift.storage_url.rsplit('/').next().expect("account");
        assert_eq!(
            str_of(&rec, "location"),
            format!("swift://{account}/{container}/{id}.rbk")
        );
        records.push(rec);
    }
    let mut expected: Vec<String> = (1..=5)
        .flat_map(|n| [format!("b{n}.json"), format!("b{n}.rbk")])
        .collect();
    assert_eq!(
        swift.info()["swift"]["container_listing_limit"],
        3,
        "precondition: Swift pages listings by 3"
    );
    let page = swift.request("GET", &format!("{container}?format=json"), &[], None);
    assert_eq!(page.json().as_array().map(Vec::len), Some(3), "one page");
    assert_eq!(swift.names(container, ""), expected, "paged by the harness");
    for n in 1..=5 {
        assert!(
            swift.names(segments, &format!("b{n}.rbk/")).len() >= 2,
            "b{n} of ~1.5 MiB has >= 2 segments of 1 MiB: {:?}",
            swift.names(segments, "")
        );
    }

    let listed = match run(&["--json", "list"]).ok().json() {
        Value::Array(items) => items,
        other => panic!("list --json is not an array: {other}"),
    };
    assert_eq!(listed, records, "list --json: all 5, oldest first");

    run(&["delete", "b3"]).ok();
    run(&["show", "b3"]).code(4);
    run(&["verify", "b3"]).code(4);
    run(&["delete", "b3"]).code(4);
    expected.retain(|name| !name.starts_with("b3."));
    assert_eq!(swift.names(container, ""), expected, "b3.* gone");
    assert_eq!(
        swift.names(segments, "b3.rbk/"),
        Vec::<String>::new(),
        "the segments of b3 are gone"
    );
    for id in ["b1", "b2", "b4", "b5"] {
        assert!(
            !swift.names(segments, &format!("{id}.rbk/")).is_empty(),
            "the segments of {id} were left alone"
        );
        run(&["verify", id]).ok();
    }
    let listed = match run(&["--json", "list"]).ok().json() {
        Value::Array(items) => items,
        other => panic!("list --json is not an array: {other}"),
    };
    let ids: Vec<String> = listed.iter().map(id_of).collect();
    assert_eq!(ids, ["b1", "b2", "b4", "b5"]);

    // prune on Swift: a dry run changes nothing; then the two oldest go,
    // segments and all.
    let dry = run(&["--json", "prune", "--keep-last", "2", "--dry-run"])
        .ok()
        .json();
    assert_eq!(dry["deleted"], serde_json::json!(["b1", "b2"]), "{dry}");
    assert_eq!(
        swift.names(container, "").len(),
        8,
        "a dry run deletes nothing"
    );
    run(&["prune", "--keep-last", "2"]).ok();
    for id in ["b1", "b2"] {
        run(&["show", id]).code(4);
        assert!(
            swift.names(segments, &format!("{id}.rbk/")).is_empty(),
            "segments of {id}"
        );
    }
    assert_eq!(
        swift.names(container, ""),
        ["b4.json", "b4.rbk", "b5.json", "b5.rbk"]
    );
}

#[test]
fn swift_wrong_key_and_missing_backups() {
    let swift = SwiftStack::start(None);
    let container = "database_backups";
    let mut t = redis_on_swift(container);
    t.conn().ok(&["SET", "k", "v"]);
    let wrong = "Wr0ng-Swift-Key-9f3c";
    assert_ne!(wrong, swift.st_key);
    assert_eq!(swift.tempauth(&swift.st_user, wrong).status, 401);

    // Wrong key in the environment, then in the settings file.
    let out = t
        .cmd(&["backup"])
        .env("ST_AUTH", &swift.st_auth)
        .env("ST_USER", &swift.st_user)
        .env("ST_KEY", wrong)
        .run();
    out.code(4).lacks(wrong).lacks(&swift.st_key);
    assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
    t.set_setting("st_auth", &swift.st_auth);
    t.set_setting("st_user", &swift.st_user);
    t.set_setting("st_key", wrong);
    let out = t.run(&["backup"]);
    out.code(4).lacks(wrong).lacks(&swift.st_key);
    t.run(&["list"]).code(4).lacks(wrong);
    // A token Swift does not know (pre-authenticated).
    let bogus = "AUTH_tk0123456789abcdef0123456789abcdef";
    let out = t
        .cmd(&["backup"])
        .env("OS_STORAGE_URL", &swift.storage_url)
        .env("OS_AUTH_TOKEN", bogus)
        .run();
    out.code(4).lacks(bogus);
    assert_eq!(swift.names(container, ""), Vec::<String>::new());
    assert_eq!(
        swift.names(&format!("{container}_segments"), ""),
        Vec::<String>::new()
    );

    // The right key: backups that do not exist are storage errors.
    t.set_setting("st_key", &swift.st_key);
    let id = t.backup();
    t.run(&["show", &id]).ok();
    for args in [
        vec!["show", "nosuch"],
        vec!["--json", "show", "nosuch"],
        vec!["verify", "nosuch"],
        vec!["delete", "nosuch"],
    ] {
        t.run(&args).code(4).lacks(&swift.st_key);
    }
    let out_file = t.path("nosuch.rdb");
    t.run(&["export", "nosuch", "--out", &out_file.display().to_string()])
        .code(4);
    assert!(!out_file.exists(), "export of a missing backup made a file");
    let before = t.state();
    let pid = t.pid();
    t.run(&["restore", "nosuch"]).code(4);
    assert_eq!((t.pid(), t.state()), (pid, before), "Redis was touched");
    assert_eq!(
        swift.names(container, ""),
        vec![format!("{id}.json"), format!("{id}.rbk")],
        "the missing IDs left nothing behind"
    );
}

#[test]
fn swift_unreachable_is_a_storage_error() {
    // Nothing listens on a port that was free a moment ago.
    let port = free_port();
    let t = redis_on_swift("database_backups");
    let key = "unreachable-key";
    let token = "AUTH_tk00unreachable00token00";
    let tempauth = [
        ("ST_AUTH", format!("http://127.0.0.1:{port}/auth/v1.0")),
        ("ST_USER", "test:tester".to_string()),
        ("ST_KEY", key.to_string()),
    ];
    let preauth = [
        (
            "OS_STORAGE_URL",
            format!("http://127.0.0.1:{port}/v1/AUTH_test"),
        ),
        ("OS_AUTH_TOKEN", token.to_string()),
    ];
    let check = |how: &str, env: &[(&str, String)], args: &[&str]| {
        let mut run = t.cmd(args);
        for (k, v) in env {
            run = run.env(k, v);
        }
        let start = Instant::now();
        let out = run.run();
        let took = start.elapsed();
        out.code(4).lacks(key).lacks(token);
        assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
        assert!(
            took < GIVE_UP_WITHIN,
            "{how} {args:?} took {took:?} to give up on a closed port"
        );
    };
    check("TempAuth", &tempauth, &["backup"]);
    check("TempAuth", &tempauth, &["list"]);
    check("pre-authenticated", &preauth, &["backup"]);
    check("pre-authenticated", &preauth, &["show", "b1"]);
}

/// A writer of the container replaces an old backup's manifest with one
/// whose only entry is its own first segment, and makes that segment an SLO
/// manifest listing an object in another container: Swift marks the entry
/// `sub_slo`, and `DELETE ?multipart-manifest=delete` would follow it and
/// delete the victim with our token. `delete` and `prune` must remove only
/// the backup's own names: the victims stay.
#[test]
fn swift_delete_and_prune_never_follow_a_nested_manifest() {
    let swift = SwiftStack::start(None);
    let container = "c";
    let segments = "c_segments";
    let mut t = redis_on_swift(container);
    for (k, v) in swift.tempauth_settings() {
        t.set_setting(k, &v);
    }
    let mut c = t.conn();
    c.ok(&["SET", "k", "v"]);
    let ids: Vec<String> = (1..=3).map(|_| t.backup()).collect();
    swift.put("victim", b"").expect(&[201, 202]);
    for id in &ids[..2] {
        swift
            .put(&format!("victim/of_{id}"), b"not yours")
            .expect(&[201]);
        let put_manifest = |object: String, target: String| {
            let listing = format!(r#"[{{"path": "{target}"}}]"#);
            swift
                .request(
                    "PUT",
                    &format!("{object}?multipart-manifest=put"),
                    &[],
                    Some(listing.as_bytes()),
                )
                .expect(&[201]);
        };
        put_manifest(
            format!("{segments}/{id}.rbk/00000001"),
            format!("/victim/of_{id}"),
        );
        put_manifest(
            format!("{container}/{id}.rbk"),
            format!("/{segments}/{id}.rbk/00000001"),
        );
        let planted = swift.request(
            "GET",
            &format!("{container}/{id}.rbk?multipart-manifest=get"),
            &[],
            None,
        );
        assert_eq!(
            planted.json()[0]["sub_slo"],
            true,
            "precondition: Swift marks the entry sub_slo"
        );
    }

    t.run(&["delete", &ids[0]]).ok().lacks(&swift.st_key);
    t.run(&["prune", "--keep-last", "1"])
        .ok()
        .lacks(&swift.st_key);
    for id in &ids[..2] {
        swift.head(&format!("victim/of_{id}")).expect(&[200]);
        assert_eq!(
            swift.names(segments, &format!("{id}.rbk/")),
            Vec::<String>::new(),
            "the segments of {id} are gone"
        );
    }
    assert_eq!(
        swift.names(container, ""),
        vec![format!("{}.json", ids[2]), format!("{}.rbk", ids[2])]
    );
    t.run(&["verify", &ids[2]]).ok();
}

/// Another account's backup, made with the same key and instance and
/// copied into this account's container of the same name, is not this
/// storage's: the account is part of where a record says it was written.
/// Counted as ours, it would push this guest's own backups out of prune.
#[test]
fn a_backup_copied_from_another_account_is_not_ours() {
    let swift = SwiftStack::start(None);
    let t = redis_on_swift("database_backups");
    t.conn().ok(&["SET", "k", "v"]);
    let (ours, theirs) = (swift.tempauth_env(), {
        let mut env = swift.tempauth_env();
        env.retain(|(k, _)| *k != "ST_USER" && *k != "ST_KEY");
        env.extend([
            ("ST_USER", "test2:tester2".to_string()),
            ("ST_KEY", "testing2".to_string()),
        ]);
        env
    });
    let run = |env: &[(&'static str, String)], args: &[&str]| {
        let mut run = t.cmd(args);
        for (k, v) in env {
            run = run.env(k, v);
        }
        run.run()
    };
    for id in ["a1", "a2"] {
        run(&ours, &["backup", "--id", id]).ok();
    }
    run(&theirs, &["backup", "--id", "theirs"]).ok();
    let other = swift.tempauth("test2:tester2", "testing2");
    let other = SwiftAccount {
        storage_url: other.must_header("X-Storage-Url").to_string(),
        token: other.must_header("X-Auth-Token").to_string(),
    };
    assert_ne!(other.storage_url, swift.storage_url);
    let record = swift.request_in(&other, "GET", "database_backups/theirs.json", &[], None);
    record.expect(&[200]);
    swift
        .put("database_backups/theirs.json", &record.body)
        .expect(&[201]);

    let listed = run(&ours, &["list"]);
    let line = listed.ok().line_with("theirs");
    assert!(line.contains("not to this storage"), "{listed}");
    let dry = run(&ours, &["--json", "prune", "--keep-last", "2", "--dry-run"]);
    let dry = dry.ok().json();
    assert_eq!(dry["deleted"], serde_json::json!([]), "{dry}");
    assert!(dry["ignored"].to_string().contains("theirs"), "{dry}");
    // In its own account it is its own.
    let listed = run(&theirs, &["list"]);
    assert!(
        listed.ok().stdout.contains("theirs") && !listed.stdout.contains("not to this storage"),
        "{listed}"
    );
}

/// A backup made while the host's clock was three days behind is dated
/// before the backups Swift stored ahead of it, and prune took it for the
/// oldest. Swift's `last_modified` in the listing (its own clock, moved
/// back here as if each backup had been made a day apart) keeps the
/// backups it stored last too, as the modification time of a record does
/// in a directory (`commands::a_backup_made_while_the_clock_was_behind…`).
#[test]
fn a_backup_made_while_the_clock_was_behind_is_kept_by_swifts_order() {
    let swift = SwiftStack::builder()
        .listing_limit(3)
        .movable_clock()
        .start();
    let t = redis_on_swift("database_backups");
    t.conn().ok(&["SET", "k", "v"]);
    let (url, token) = swift.auth();
    let settings = t.settings_file().display().to_string();
    let run = |run: Run| -> Output {
        t.with_env(run)
            .env("OS_STORAGE_URL", &url)
            .env("OS_AUTH_TOKEN", &token)
            .run()
    };
    let backup = |id: &str, days_ago: i64, tool_behind: &str| {
        swift.move_clock(-days_ago * 86_400);
        let faketime = ["-f", tool_behind, crate::harness::BIN, "-c", &settings];
        run(Run::new("faketime")
            .args(&faketime)
            .args(&["backup", "--id", id]))
        .ok();
    };
    backup("monday", 2, "+0");
    backup("tuesday", 1, "+0");
    backup("wednesday", 0, "-3d");
    let left = || {
        let listed = run(Run::new(crate::harness::BIN).args(&["-c", &settings, "--json", "list"]));
        let mut ids: Vec<String> = listed
            .ok()
            .json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| r["id"].as_str().expect("an id").to_string())
            .collect();
        ids.sort();
        ids
    };
    let prune =
        || run(Run::new(crate::harness::BIN).args(&["-c", &settings, "prune", "--keep-last", "2"]));

    let out = prune();

    out.ok()
        .stderr_has("keeping wednesday")
        .stderr_has("clock was behind");
    assert_eq!(left(), ["monday", "tuesday", "wednesday"], "{out}");
    backup("thursday", 0, "+0");
    let out = prune();
    out.ok();
    assert_eq!(left(), ["thursday", "tuesday", "wednesday"], "{out}");
    run(Run::new(crate::harness::BIN).args(&["-c", &settings, "verify", "wednesday"])).ok();
}

/// A backup killed between its manifest and its record, or killed as it
/// uploaded (SIGKILL, the OOM killer, a host that died), left its manifest
/// and segments in Swift for good: never listed, so never pruned or
/// deleted, and paid for. A backup now removes a manifest with no record
/// once it is an hour old, with its segments, and segments no manifest
/// lists once they are a day old (an upload still going, perhaps from
/// another host, writes a segment far more often). Fresher ones stay, and
/// so does every name of a shape we do not write. Ages were taken by this
/// host's clock against Swift's: a host a day ahead (faketime here; an RTC
/// kept in local time, a guest started from an old snapshot) removed
/// another host's manifest in the seconds before its record, and an
/// upload's segments as it went. They are now Swift's clock against
/// Swift's: its `Date` against the object's `X-Timestamp`. (The leftovers
/// are written with the proxies' clock set back. Listings come 3 names a
/// page, so that the rolled-up one is paged too.)
#[test]
fn leftovers_of_killed_backups_are_swept_once_old_by_swifts_clock() {
    let swift = SwiftStack::builder()
        .listing_limit(3)
        .movable_clock()
        .start();
    let container = "database_backups";
    let segments = "database_backups_segments";
    let t = redis_on_swift(container);
    t.conn().ok(&["SET", "k", "v"]);
    let (url, token) = swift.auth();
    t.cmd(&["backup", "--id", "first"])
        .env("OS_STORAGE_URL", &url)
        .env("OS_AUTH_TOKEN", &token)
        .run()
        .ok();
    let put = |path: String, hours_old: i64| {
        swift.move_clock(-hours_old * 3600);
        swift.put(&path, b"left").expect(&[201]);
    };
    for (name, hours_old) in [
        ("dead.rbk/00000001", 25),
        ("dead.rbk/00000002", 25),
        ("unrecorded.rbk/00000001", 2),
        ("uploading.rbk/0123456789abcdef/00000001", 23),
        ("uploading.rbk/0123456789abcdef/00000002", 0),
        ("recording.rbk/fedcba9876543210/00000001", 0),
    ] {
        put(format!("{segments}/{name}"), hours_old);
    }
    put(format!("{container}/unrecorded.rbk"), 2);
    put(format!("{container}/recording.rbk"), 0);
    put(format!("{segments}/notes.rbk/old"), 25);
    put(format!("{segments}/notes.txt"), 25);
    put(format!("{container}/notes.rbk.bak"), 25);
    swift.move_clock(0);
    let all_names = || {
        let mut names = swift.names(container, "");
        names.extend(swift.names(segments, "").into_iter().filter(|name| {
            !["first.rbk/", "second.rbk/"]
                .iter()
                .any(|ours| name.starts_with(ours))
        }));
        names.sort();
        names
    };
    let mut expected = all_names();
    let (url, token) = swift.auth();
    let settings = t.settings_file().display().to_string();

    let out = t
        .with_env(
            Run::new("faketime")
                .args(&["-f", "+25h", crate::harness::BIN, "-c", &settings])
                .args(&["backup", "--id", "second"]),
        )
        .env("OS_STORAGE_URL", &url)
        .env("OS_AUTH_TOKEN", &token)
        .run();

    out.ok();
    expected.retain(|name| !name.starts_with("unrecorded") && !name.starts_with("dead"));
    expected.extend(["second.json".to_string(), "second.rbk".to_string()]);
    expected.sort();
    assert_eq!(all_names(), expected, "{out}");
    for id in ["first", "second"] {
        t.cmd(&["verify", id])
            .env("OS_STORAGE_URL", &url)
            .env("OS_AUTH_TOKEN", &token)
            .run()
            .ok();
    }
}
