//! A backup that was changed, cut short or is read with the wrong key is
//! refused with exit 5, by `verify` and by `export` (which then leaves no
//! output behind).

use crate::harness::*;
use std::fs;
use std::path::Path;

/// `verify` and `export` of `id` must both fail with exit 5, leaving `out_dir` empty.
fn refused(t: &TestRedis, id: &str, out_dir: &Path, extra: &[&str], case: &str) {
    let mut args = vec!["verify", id];
    args.extend_from_slice(extra);
    let out = t.run(&args);
    assert_eq!(out.code, Some(5), "verify, {case}: expected exit 5\n{out}");
    assert!(!out.stderr.trim().is_empty(), "verify, {case}: no message");
    assert!(out.stderr.contains(id), "verify, {case}: not named\n{out}");

    let target = out_dir.join("out.rdb");
    let target_s = target.display().to_string();
    let mut args = vec!["export", id, "--out", &target_s];
    args.extend_from_slice(extra);
    let out = t.run(&args);
    assert_eq!(out.code, Some(5), "export, {case}: expected exit 5\n{out}");
    assert!(out.stderr.contains(id), "export, {case}: not named\n{out}");
    assert_eq!(
        dir_entries(out_dir),
        Vec::<String>::new(),
        "export, {case}: left files behind"
    );
}

#[test]
fn tampered_truncated_and_wrong_key_are_exit_5() {
    let t = TestRedis::start();
    let mut c = t.conn();
    fill_every_type(&mut c);
    let id = t.backup();
    let object = t.storage_dir().join(format!("{id}.rbk"));
    let original = fs::read(&object).unwrap();
    assert!(original.len() > 1000, "object is {} bytes", original.len());
    let out_dir = t.path("out");
    fs::create_dir(&out_dir).unwrap();

    let mut flipped_middle = original.clone();
    flipped_middle[original.len() / 2] ^= 0x01;
    let mut flipped_last = original.clone();
    *flipped_last.last_mut().unwrap() ^= 0x80;
    let mut flipped_first = original.clone();
    flipped_first[0] ^= 0x01;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("one byte flipped in the middle", flipped_middle),
        ("last byte flipped", flipped_last),
        ("first byte flipped", flipped_first),
        ("cut in half", original[..original.len() / 2].to_vec()),
        (
            "last 10 bytes cut",
            original[..original.len() - 10].to_vec(),
        ),
        ("empty", Vec::new()),
    ];
    for (case, bytes) in cases {
        fs::write(&object, &bytes).unwrap();
        refused(&t, &id, &out_dir, &[], case);
    }

    // The original still verifies: the failures above were the damage.
    fs::write(&object, &original).unwrap();
    t.run(&["verify", &id]).ok();

    // Another key.
    let other = t.path("other.key");
    t.run(&["keygen", "--out", &other.display().to_string()])
        .ok();
    let other_s = other.display().to_string();
    refused(&t, &id, &out_dir, &["--key-file", &other_s], "wrong key");

    // And the right key still exports.
    let rdb = t.export(&id, "good.rdb");
    assert_eq!(digest_of_rdb(&rdb), c.state());
}
