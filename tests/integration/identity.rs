//! Format 2 against someone who can write to the storage but has no key: a
//! backup copied under another ID, an object swapped under another record
//! (hashes edited to match), an instance renamed, a date moved to 2099, a
//! record edited by hand, a record downgraded to format 1. Each is refused
//! by verify and restore with exit 5 and Redis untouched, left out of list
//! (and named on stderr), and ignored by prune, which never deletes a real
//! backup because of it. Then: exact order within one second, and the
//! golden format-1 and format-2 backups of tests/data still verifying,
//! exporting and restoring bit for bit. On local storage and on Swift.

use crate::harness::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const GOLDEN_SHA256: &str = "ab144c11db50f29cef709cfec88e81e7d822b314caf7b43873478ab02b432fa4";
const GOLDEN_V1: &str = "20261130T080000Z-5a5a5a5a";
const GOLDEN_V2: &str = "20261130T090000Z-a5a5a5a5";

/// A change made to a record by someone without the key.
type Edit = fn(&mut Value);
/// The same, with another record at hand.
type EditWith = fn(&mut Value, &Value);

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The golden key in a 0600 file of this test (git keeps no modes).
fn golden_key(t: &TestRedis) -> PathBuf {
    let path = t.path("golden.key");
    fs::copy(golden_dir().join("master.key"), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn record_value(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

fn listed_ids(t: &TestRedis) -> Vec<String> {
    t.list(&[]).iter().map(id_of).collect()
}

/// `verify` and `restore` of `id` both refuse with exit 5, saying `why`, and
/// Redis, its data and its files are as they were.
fn refused_untouched(t: &TestRedis, id: &str, why: &str) {
    let (state, files) = (t.state(), t.data_files());
    let verify = t.run(&["verify", id]);
    match why {
        // verify, which only reads, reads format 1 too, and says what it is.
        "--allow-format-1" => verify.ok().stdout_has("format 1: identity not bound"),
        _ => verify.code(5).stderr_has(why),
    };
    let restore = t.run(&["restore", id]);
    restore.code(5).stderr_has(why);
    assert!(t.is_active(), "{id}: Redis was stopped\n{restore}");
    assert_eq!(t.state(), state, "{id}: the data changed");
    assert_eq!(t.data_files(), files, "{id}: the data dir changed");
    let out = t.path(&format!("{id}.rdb"));
    t.run(&["export", id, "--out", &out.display().to_string()])
        .code(5);
    assert!(!out.exists(), "{id}: export left a file");
}

/// `list` leaves `forged` out and names it on stderr; `prune --keep-last 1`
/// (dry run and real) neither counts nor deletes it, and keeps `newest`.
fn list_and_prune_ignore(t: &TestRedis, forged: &[&str], newest: &str) {
    let listed = t.run(&["--json", "list"]);
    listed.ok();
    let ids: Vec<String> = match listed.json() {
        Value::Array(items) => items.iter().map(id_of).collect(),
        other => panic!("{other}"),
    };
    for id in forged {
        assert!(!ids.contains(&id.to_string()), "{id} listed: {ids:?}");
        listed.stderr_has(&format!("backup {id} is not listed"));
    }
    let human = t.run(&["list"]);
    human.ok();
    for id in forged {
        assert!(!human.stdout.contains(id), "{id} listed\n{human}");
    }
    let dry = t.run(&["--json", "prune", "--keep-last", "1", "--dry-run"]);
    dry.ok();
    let would = dry.json();
    for id in forged {
        assert!(!would["deleted"].to_string().contains(id), "{would}");
        assert!(would["ignored"].to_string().contains(id), "{would}");
        dry.stderr_has(&format!("prune ignores backup {id}"));
    }
    assert!(!would["deleted"].to_string().contains(newest), "{would}");
    t.run(&["prune", "--keep-last", "1"]).ok();
    assert_eq!(listed_ids(t), [newest], "prune kept the newest real backup");
}

#[test]
fn forged_backups_on_local_storage_are_refused_listed_nowhere_and_never_pruned_for() {
    let t = TestRedis::start();
    let mut c = t.conn();
    c.ok(&["SET", "which", "first"]);
    let a = id_of(&t.backup_json(&["--id", "a"]));
    c.ok(&["SET", "which", "second"]);
    let b_record = t.backup_json(&["--id", "b"]);
    let b = id_of(&b_record);
    c.ok(&["SET", "which", "live"]);
    let a_record = record_value(&t.record_file(&a));

    // 1. A relabelled copy: a's object and record under a new ID, the
    //    record's id edited to match.
    fs::copy(t.object_file(&a), t.object_file("copy")).unwrap();
    let mut copy = a_record.clone();
    copy["id"] = "copy".into();
    write_json(&t.record_file("copy"), &copy);
    refused_untouched(&t, "copy", "failed authentication");
    // ... and with the record left naming a: still refused.
    fs::copy(t.record_file(&a), t.record_file("copy")).unwrap();
    refused_untouched(&t, "copy", "names backup a");

    // 2. Another backup's object under b's ID, b's record edited to its hashes.
    fs::copy(t.object_file(&a), t.object_file("swap")).unwrap();
    let mut swap = b_record.clone();
    swap["id"] = "swap".into();
    swap["raw_sha256"] = a_record["raw_sha256"].clone();
    swap["raw_size"] = a_record["raw_size"].clone();
    write_json(&t.record_file("swap"), &swap);
    refused_untouched(&t, "swap", "failed authentication");
    // ... and under b's own authentic record: the object says it is a.
    let b_object = fs::read(t.object_file(&b)).unwrap();
    fs::copy(t.object_file(&a), t.object_file(&b)).unwrap();
    refused_untouched(&t, &b, "is backup a");
    fs::write(t.object_file(&b), &b_object).unwrap();
    t.run(&["verify", &b]).ok();

    // 3. a relabelled as another instance's; 4. a moved to 2099; 5. key
    //    counts edited; 6. downgraded to an untagged format-1 record.
    let edits: [(&str, Edit); 5] = [
        ("instance", |r| r["instance"] = "another-guest".into()),
        ("future", |r| {
            r["created_at"] = "2099-01-01T00:00:00.000000Z".into()
        }),
        ("keys", |r| r["keys"]["db0"] = 999.into()),
        ("downgrade", |r| {
            r["format"] = 1.into();
            r.as_object_mut().unwrap().remove("record_tag");
        }),
        // No redis-backup writes format 0: it must not pass as one that
        // needs no tag and no --allow-format-1 either.
        ("format-0", |r| {
            r["format"] = 0.into();
            r.as_object_mut().unwrap().remove("record_tag");
        }),
    ];
    let mut forged = Vec::new();
    for (name, edit) in edits {
        let id = format!("{a}-{name}");
        fs::copy(t.object_file(&a), t.object_file(&id)).unwrap();
        let mut record = a_record.clone();
        record["id"] = id.clone().into();
        edit(&mut record);
        write_json(&t.record_file(&id), &record);
        forged.push(id);
    }
    for id in &forged[..3] {
        refused_untouched(&t, id, "failed authentication");
        t.run(&["show", id]).code(5);
    }
    // The downgrade authenticates as format 1 (nothing binds those) but its
    // object is format 2 and says it is backup a.
    let downgraded = &forged[3];
    let state = t.state();
    t.run(&["verify", downgraded])
        .code(5)
        .stderr_has("is backup a");
    t.run(&["restore", downgraded])
        .code(5)
        .stderr_has("--allow-format-1");
    t.run(&["restore", downgraded, "--allow-format-1"])
        .code(5)
        .stderr_has("is backup a");
    assert!(t.is_active());
    assert_eq!(t.state(), state, "a refused restore changed the data");
    t.run(&["show", downgraded])
        .ok()
        .stdout_has("identity not bound");
    let format_0 = &forged[4];
    for args in [
        &["show", format_0][..],
        &["verify", format_0],
        &["restore", format_0, "--allow-format-1"],
    ] {
        t.run(args).code(5).stderr_has("format 0");
    }
    assert_eq!(t.state(), state, "a refused restore changed the data");
    // list and prune look at the object of a format-1 record: a format-2
    // one under it means a downgraded record, which would otherwise count
    // as older than every format-2 backup and be the first prune deletes.
    let mut ignored: Vec<&str> = vec!["copy", "swap"];
    ignored.extend(forged.iter().map(String::as_str));
    assert_eq!(listed_ids(&t), [a.as_str(), b.as_str()]);
    list_and_prune_ignore(&t, &ignored, &b);
    for id in &ignored {
        assert!(t.object_file(id).exists(), "prune deleted forged {id}");
    }
}

#[test]
fn forged_backups_on_swift_are_refused_listed_nowhere_and_never_pruned_for() {
    let swift = SwiftStack::start(None);
    let container = "forged";
    let mut t = TestRedis::builder()
        .setting("storage", &format!("swift://{container}"))
        .setting("swift_allow_http", "yes")
        .start();
    for (k, v) in swift.tempauth_settings() {
        t.set_setting(k, &v);
    }
    let mut c = t.conn();
    c.ok(&["SET", "which", "first"]);
    let a = id_of(&t.backup_json(&["--id", "a"]));
    c.ok(&["SET", "which", "second"]);
    let b = id_of(&t.backup_json(&["--id", "b"]));
    c.ok(&["SET", "which", "live"]);
    let get = |name: &str| {
        let got = swift.get(&format!("{container}/{name}"));
        got.expect(&[200]);
        got
    };
    let put = |name: &str, body: &[u8]| {
        swift
            .put(&format!("{container}/{name}"), body)
            .expect(&[201]);
    };
    let a_record = get(&format!("{a}.json")).json();

    // A copy of a's whole object (Swift's server-side copy) under a new ID
    // with its record relabelled; a record moved to 2099.
    let copy = |from: &str, to: &str| {
        swift
            .request(
                "PUT",
                &format!("{container}/{to}.rbk"),
                &[("X-Copy-From", &format!("{container}/{from}.rbk"))],
                Some(b""),
            )
            .expect(&[201]);
    };
    let copy_object = |to: &str| copy(&a, to);
    let b_record = get(&format!("{b}.json")).json();
    let edits: [(&str, EditWith); 5] = [
        ("forged-copy", |_, _| {}),
        ("forged-future", |r, _| {
            r["created_at"] = "2099-01-01T00:00:00.000000Z".into()
        }),
        ("forged-instance", |r, _| {
            r["instance"] = "another-guest".into()
        }),
        ("forged-keys", |r, _| r["keys"]["db0"] = 999.into()),
        // b's record, its hashes edited to those of a's object under it.
        ("forged-swap", |r, b| {
            let (sha, size) = (r["raw_sha256"].clone(), r["raw_size"].clone());
            *r = b.clone();
            r["raw_sha256"] = sha;
            r["raw_size"] = size;
        }),
    ];
    for (id, edit) in edits {
        copy_object(id);
        let mut record = a_record.clone();
        edit(&mut record, &b_record);
        record["id"] = id.into();
        put(&format!("{id}.json"), &serde_json::to_vec(&record).unwrap());
        refused_untouched(&t, id, "failed authentication");
    }
    // a's bytes in place of b's object, under b's authentic record: the
    // object says it is a. (Put back after: prune would count b, whose
    // object is not there whole, as nothing.)
    copy(&b, "b-aside");
    copy_object(&b);
    refused_untouched(&t, &b, "is backup a");
    copy("b-aside", &b);
    let forged = [
        "forged-copy",
        "forged-future",
        "forged-instance",
        "forged-keys",
        "forged-swap",
    ];
    list_and_prune_ignore(&t, &forged, &b);
    assert!(swift
        .names(container, "")
        .contains(&"forged-future.json".to_string()));
}

#[test]
fn backups_made_within_one_second_keep_their_order() {
    let t = TestRedis::start();
    let mut c = t.conn();
    // IDs that sort the other way round, so only created_at can order them.
    let ids = ["e", "d", "c", "b", "a"];
    let mut created = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        c.ok(&["SET", "n", &n.to_string()]);
        let record = t.backup_json(&["--id", id]);
        created.push(record["created_at"].as_str().unwrap().to_string());
    }
    assert_eq!(listed_ids(&t), ids, "list is in creation order");
    let human = t.run(&["list"]);
    let order: Vec<&str> = human
        .ok()
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(order, ids, "{human}");
    t.run(&["prune", "--keep-last", "2"]).ok();
    assert_eq!(listed_ids(&t), ["b", "a"], "the two made last stay");
    // Not asserted (the clock decides), but shown when this fails: how many
    // of the five shared a second.
    let seconds: std::collections::BTreeSet<&str> = created.iter().map(|c| &c[..19]).collect();
    eprintln!(
        "5 backups in {} distinct seconds: {created:?}",
        seconds.len()
    );
}

#[test]
fn golden_backups_of_both_formats_verify_export_and_restore_bit_for_bit() {
    let mut t = TestRedis::start();
    t.conn().ok(&["SET", "live", "before the restore"]);
    let key = golden_key(&t);
    t.set_setting("key_file", &key.display().to_string());
    fs::create_dir_all(t.storage_dir()).unwrap();
    for (dir, id) in [("format1", GOLDEN_V1), ("format2", GOLDEN_V2)] {
        for ext in ["rbk", "json"] {
            fs::copy(
                golden_dir().join(format!("{dir}/{id}.{ext}")),
                t.storage_dir().join(format!("{id}.{ext}")),
            )
            .unwrap();
        }
    }
    assert_eq!(listed_ids(&t), [GOLDEN_V1, GOLDEN_V2], "format 1 first");
    t.run(&["show", GOLDEN_V1])
        .ok()
        .stdout_has("identity not bound");
    t.run(&["show", GOLDEN_V2])
        .ok()
        .stdout_has("record authenticated");
    t.run(&["list"]).ok().stdout_has("format 1");
    t.run(&["verify", GOLDEN_V1])
        .ok()
        .stdout_has("format 1: identity not bound");
    let verified = t.run(&["--json", "verify", GOLDEN_V2]);
    let identity = verified.ok().json()["identity"].clone();
    assert_eq!(identity["id"], GOLDEN_V2, "{identity}");
    assert_eq!(identity["instance"], "golden", "{identity}");
    assert_eq!(identity["created_at"], "2026-11-30T09:00:00.250000Z");
    // Format 1 binds nothing: restore and export want the operator's word.
    let out = t.path("refused.rdb").display().to_string();
    t.run(&["export", GOLDEN_V1, "--out", &out])
        .code(5)
        .stderr_has("--allow-format-1");
    t.run(&["restore", GOLDEN_V1])
        .code(5)
        .stderr_has("--allow-format-1");
    assert_eq!(t.conn().call(&["GET", "live"]).text(), "before the restore");
    let with_word: &[&str] = &["--allow-format-1"];
    for (id, extra) in [(GOLDEN_V1, with_word), (GOLDEN_V2, &[])] {
        let rdb = t.path(&format!("{id}.rdb"));
        let rdb_arg = rdb.display().to_string();
        t.run(&[&["export", id, "--out", &rdb_arg], extra].concat())
            .ok();
        assert_eq!(sha256_file(&rdb), GOLDEN_SHA256, "{id}");
        t.run(&[&["restore", id], extra].concat()).ok();
        assert_eq!(
            sha256_file(&t.dump_file()),
            GOLDEN_SHA256,
            "{id}: the dump in place is the backed-up RDB"
        );
        let mut c = t.conn();
        assert_eq!(c.call(&["DBSIZE"]).int(), 404, "{id}");
        let line = c.call(&["GET", "line:7"]).text();
        assert!(
            line.starts_with("line 7 of the golden vector"),
            "{id}: {line}"
        );
    }
}

/// The golden format-1 backup (made with the golden key) in `t`'s storage
/// under `id`, its record relabelled, as whoever can write to the storage
/// could do with any old backup made with the same key.
fn plant_format_1(t: &TestRedis, id: &str, like: Option<&Value>) {
    fs::copy(
        golden_dir().join(format!("format1/{GOLDEN_V1}.rbk")),
        t.object_file(id),
    )
    .unwrap();
    let mut record = record_value(&golden_dir().join(format!("format1/{GOLDEN_V1}.json")));
    record["id"] = id.into();
    // Where a backup of this storage would say it is.
    record["location"] = format!("file://{}", t.object_file(id).display()).into();
    if let Some(like) = like {
        record["instance"] = like["instance"].clone();
        record["created_at"] = like["created_at"].clone();
    }
    write_json(&t.record_file(id), &record);
}

#[test]
fn an_old_backup_put_in_place_of_a_new_one_is_not_restored_without_the_operators_word() {
    let mut t = TestRedis::start();
    let key = golden_key(&t);
    t.set_setting("key_file", &key.display().to_string());
    t.conn().ok(&["SET", "which", "the real backup"]);
    let x = t.backup_json(&["--id", "x"]);
    t.conn().ok(&["SET", "which", "live"]);
    // x's object and record replaced by an old (format-1) backup of the same
    // key, its record made to look like x's.
    plant_format_1(&t, "x", Some(&x));
    refused_untouched(&t, "x", "--allow-format-1");
    t.run(&["show", "x"]).ok().stdout_has("identity not bound");
    // With the operator's word it is what it is: the old backup.
    t.run(&["restore", "x", "--allow-format-1"])
        .ok()
        .stderr_has("format-1 backup");
    assert_eq!(t.conn().call(&["DBSIZE"]).int(), 404);
}

/// Whoever writes to storage can plant a format-1 record (nothing binds
/// those) saying anything: its text reaches the operator's terminal through
/// `--json` too, so C1 controls (a CSI of its own), DEL and bidirectional
/// overrides go out as JSON escapes, which read back as the same string.
#[test]
fn a_planted_records_text_is_escaped_in_json_output_too() {
    let mut t = TestRedis::start();
    let key = golden_key(&t);
    t.set_setting("key_file", &key.display().to_string());
    const HOSTILE: &str = "prod\u{202e}gnp.exe\u{9b}2J\u{7f}\u{1b}[31mRED\u{2066}";
    t.backup_json(&["--id", "real"]);
    plant_format_1(&t, "planted", None);
    let mut record = record_value(&t.record_file("planted"));
    record["instance"] = HOSTILE.into();
    write_json(&t.record_file("planted"), &record);

    for args in [&["--json", "show", "planted"][..], &["--json", "list"][..]] {
        let out = t.run(args);
        out.ok();
        let raw: Vec<char> = out
            .stdout
            .chars()
            .filter(|&c| (c.is_control() && c != '\n') || ('\u{2000}'..='\u{206f}').contains(&c))
            .collect();
        assert!(
            raw.is_empty(),
            "{args:?} printed {raw:?} as they are\n{out}"
        );
        assert!(out.stdout.contains("\\u202e"), "{out}");
        let shown = out.json();
        // list: format 1 first.
        let instance = match args[1] {
            "show" => &shown["instance"],
            _ => &shown[0]["instance"],
        };
        assert_eq!(instance.as_str(), Some(HOSTILE), "{out}");
    }
}

#[test]
fn planted_format_1_records_never_make_prune_delete_a_real_backup() {
    let mut t = TestRedis::start();
    let key = golden_key(&t);
    t.set_setting("key_file", &key.display().to_string());
    t.conn().ok(&["SET", "k", "v"]);
    let new = t.backup_json(&["--id", "new", "--instance", "golden"]);
    // A real old backup of the same instance (the golden one, kept as is).
    plant_format_1(&t, "old", None);
    // Planted: a few bytes that start like a format-1 object, and a real
    // format-1 object under a record dated 2099 of the same instance.
    fs::write(t.object_file("fake"), b"REDISBAK\x01\x00").unwrap();
    let mut fake = record_value(&golden_dir().join(format!("format1/{GOLDEN_V1}.json")));
    fake["id"] = "fake".into();
    fake["created_at"] = "2099-01-01T00:00:00Z".into();
    write_json(&t.record_file("fake"), &fake);
    plant_format_1(&t, "future", None);
    let mut future = record_value(&t.record_file("future"));
    future["created_at"] = "2099-01-01T00:00:00Z".into();
    write_json(&t.record_file("future"), &future);

    let listed = t.run(&["--json", "list"]);
    listed.ok().stderr_has("backup fake is not listed");
    let ids: Vec<String> = t.list(&[]).iter().map(id_of).collect();
    assert_eq!(
        ids,
        ["old", "future", "new"],
        "format 1 first, fake left out"
    );
    // Format-1 backups never count towards what is kept: with fewer than N
    // format-2 backups, nothing goes.
    t.run(&["prune", "--keep-last", "2"]).ok();
    assert_eq!(listed_ids(&t), ["old", "future", "new"]);
    // With N format-2 backups kept, every format-1 one goes, planted or real.
    t.run(&["prune", "--keep-last", "1"]).ok();
    assert_eq!(listed_ids(&t), ["new"]);
    assert!(
        t.object_file("fake").exists(),
        "the unlisted fake is not prune's"
    );
    assert_eq!(id_of(&new), "new");
}

#[test]
fn prune_leaves_alone_an_authentic_backup_written_to_another_storage() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let elsewhere = t.path("elsewhere");
    t.run(&[
        "backup",
        "--id",
        "theirs",
        "--storage",
        &format!("file://{}", elsewhere.display()),
    ])
    .ok();
    t.run(&["backup", "--id", "ours"]).ok();
    // Another guest's backup (same key, same instance name), copied in.
    for ext in ["rbk", "json"] {
        fs::copy(
            elsewhere.join(format!("theirs.{ext}")),
            t.storage_dir().join(format!("theirs.{ext}")),
        )
        .unwrap();
    }
    let dry = t.run(&["--json", "prune", "--keep-last", "1", "--dry-run"]);
    dry.ok().stderr_has("not to this storage");
    assert_eq!(dry.json()["deleted"], serde_json::json!([]), "{dry}");
    t.run(&["prune", "--keep-last", "1"]).ok();
    assert!(t.object_file("ours").exists() && t.object_file("theirs").exists());
}

/// The storage's directory spelled another way (a trailing `/`, a `.`, a
/// doubled `/`, a link on the way) is the same storage: its backups were
/// all taken for another's, and prune deleted nothing, saying so only as a
/// warning (exit 0), while `timeline` showed no window.
#[test]
fn the_same_storage_spelled_another_way_is_still_this_storage() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    t.run(&["backup", "--id", "a"]).ok();
    t.run(&["backup", "--id", "b"]).ok();
    let dir = t.storage_dir().display().to_string();
    let link = t.path("link-to-backups");
    std::os::unix::fs::symlink(t.storage_dir(), &link).unwrap();
    let scratch = t.scratch().display().to_string();
    for spelling in [
        format!("{dir}/"),
        format!("{dir}/."),
        format!("{scratch}//backups"),
        format!("{scratch}/./backups/"),
        link.display().to_string(),
    ] {
        let storage = format!("file://{spelling}");
        let listed = t.run(&["list", "--storage", &storage]);
        assert!(
            !listed.ok().stdout.contains("not to this storage"),
            "{spelling}: {listed}"
        );
        let dry = t.run(&[
            "--json",
            "prune",
            "--keep-last",
            "1",
            "--dry-run",
            "--storage",
            &storage,
        ]);
        assert_eq!(
            dry.ok().json()["deleted"],
            serde_json::json!(["a"]),
            "{spelling}: {dry}"
        );
    }
    // A link under our name to another storage's object, its record copied
    // beside it: not this storage's (its object is never read through it).
    let elsewhere = t.path("elsewhere");
    let storage = format!("file://{}", elsewhere.display());
    t.run(&["backup", "--id", "theirs", "--storage", &storage])
        .ok();
    std::os::unix::fs::symlink(
        elsewhere.join("theirs.rbk"),
        t.storage_dir().join("theirs.rbk"),
    )
    .unwrap();
    fs::copy(
        elsewhere.join("theirs.json"),
        t.storage_dir().join("theirs.json"),
    )
    .unwrap();
    t.run(&["list"]).ok().stdout_has("not to this storage");

    // Nor a hard link to it: the same file, but not in this directory.
    fs::remove_file(t.storage_dir().join("theirs.rbk")).unwrap();
    fs::hard_link(
        elsewhere.join("theirs.rbk"),
        t.storage_dir().join("theirs.rbk"),
    )
    .unwrap();
    let listed = t.run(&["list"]);
    let line = listed.ok().line_with("theirs");
    assert!(line.contains("not to this storage"), "{listed}");
}

#[test]
fn a_record_beside_a_copied_object_cannot_be_switched_off() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "a"]);
    let a = id_of(&t.backup_json(&["--id", "a"]));
    t.conn().ok(&["SET", "k", "b"]);
    let b = id_of(&t.backup_json(&["--id", "b"]));
    let dir = t.path("copied");
    fs::create_dir_all(&dir).unwrap();
    // a's object under b's name, beside b's record: refused.
    let object = dir.join(format!("{b}.rbk"));
    fs::copy(t.object_file(&a), &object).unwrap();
    let record = dir.join(format!("{b}.json"));
    fs::copy(t.record_file(&b), &record).unwrap();
    let object_arg = object.display().to_string();
    t.run(&["verify", "--from-file", &object_arg])
        .code(5)
        .stderr_has("the object says backup ID a");
    // A directory or a FIFO in the record's place does not switch the
    // record's checks off, and does not hang the run.
    fs::remove_file(&record).unwrap();
    fs::create_dir(&record).unwrap();
    t.run(&["verify", "--from-file", &object_arg])
        .code(5)
        .stderr_has("cannot be read");
    fs::remove_dir(&record).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&record).status();
    assert!(made.unwrap().success());
    let out = t
        .cmd(&["verify", "--from-file", &object_arg])
        .run_within(std::time::Duration::from_secs(20));
    out.code(5).stderr_has("cannot be read");
    // With no record at all, verify says what the file is.
    fs::remove_file(&record).unwrap();
    t.run(&["verify", "--from-file", &object_arg])
        .ok()
        .stdout_has("backup a of");
}
