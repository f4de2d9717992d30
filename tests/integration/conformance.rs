//! vendor-notes/FORMAT.md is enough to read a backup: `tests/conformance/
//! decode.py`, a decoder written from that page alone (in Python, with
//! nothing of ours), decodes what the binary writes to the same bytes, reads
//! both golden vectors, and refuses each tampered object or record that the
//! binary refuses, with exit 5 from both.

use crate::harness::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's python3, which has python3-cryptography (a pyenv first on PATH
/// may not).
const PYTHON: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/decode.py")
}

/// What the decoder said, and its exit status.
fn decode(
    key: &Path,
    object: &Path,
    record: Option<&Path>,
    expect_id: Option<&str>,
) -> (Value, i32) {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script()).arg("--key").arg(key).arg(object);
    if let Some(record) = record {
        cmd.arg("--record").arg(record);
    }
    if let Some(id) = expect_id {
        cmd.arg("--expect-id").arg(id);
    }
    let out = cmd.output().expect("run the conformance decoder");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "decoder printed no JSON line\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (said, out.status.code().unwrap_or(-1))
}

#[test]
fn a_decoder_written_from_the_spec_reads_what_the_binary_writes_and_refuses_the_same() {
    let t = TestRedis::start();
    let mut c = t.conn();
    fill_every_type(&mut c);
    // Several frames of 1 MiB, some of them incompressible (stored frames).
    for i in 0..3 {
        c.ok(&[
            b"SET".to_vec(),
            format!("noise:{i}").into_bytes(),
            noise(600_000, i),
        ]);
    }
    let record = t.backup_json(&[]);
    let id = id_of(&record);
    let (object, record_file) = (t.object_file(&id), t.record_file(&id));

    let (said, code) = decode(&t.key_file(), &object, Some(&record_file), Some(&id));
    assert_eq!(code, 0, "{said}");
    assert_eq!(said["format"], 2, "{said}");
    assert_eq!(said["raw_sha256"], record["raw_sha256"], "{said}");
    assert_eq!(said["raw_size"], record["raw_size"], "{said}");
    assert_eq!(said["identity"]["backup_id"], id.as_str(), "{said}");
    assert_eq!(
        said["identity"]["created_at"], record["created_at"],
        "{said}"
    );
    assert_eq!(said["record"], "authenticated", "{said}");

    // Tampered copies, each as `tampered.rbk` / `.json` beside a copy of the
    // key: the binary (verify --from-file reads the record beside it) and
    // the decoder must both refuse, with 5.
    let dir = t.path("tampered");
    fs::create_dir_all(&dir).unwrap();
    let bytes = fs::read(&object).unwrap();
    let identity_len = u16::from_le_bytes([bytes[56], bytes[57]]) as usize;
    let first_frame = 60 + identity_len + 32;
    let flip = |at: usize| {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        b
    };
    let original_record = fs::read(&record_file).unwrap();
    let edited_record = {
        let mut r: Value = serde_json::from_slice(&original_record).unwrap();
        r["instance"] = "someone-else".into();
        serde_json::to_vec_pretty(&r).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("header", flip(11), original_record.clone()),
        ("identity", flip(60 + 4), original_record.clone()),
        ("header tag", flip(first_frame - 1), original_record.clone()),
        ("frame", flip(first_frame + 20), original_record.clone()),
        (
            "final frame",
            flip(bytes.len() - 40),
            original_record.clone(),
        ),
        (
            "truncated",
            bytes[..bytes.len() - 1].to_vec(),
            original_record.clone(),
        ),
        (
            "appended",
            [bytes.clone(), b"x".to_vec()].concat(),
            original_record.clone(),
        ),
        ("record", bytes.clone(), edited_record),
    ];
    for (what, object_bytes, record_bytes) in cases {
        let object = dir.join(format!("{id}.rbk"));
        fs::write(&object, &object_bytes).unwrap();
        fs::write(dir.join(format!("{id}.json")), &record_bytes).unwrap();
        let ours = t.run(&["verify", "--from-file", &object.display().to_string()]);
        ours.code(5);
        let record = dir.join(format!("{id}.json"));
        let (said, code) = decode(&t.key_file(), &object, Some(&record), Some(&id));
        assert_eq!(
            code, 5,
            "{what}: the decoder accepted what the binary refused: {said}"
        );
        assert_eq!(said["ok"], false, "{what}: {said}");
    }
    // Renamed: the object asked for under another ID.
    let (said, code) = decode(&t.key_file(), &object, None, Some("another-id"));
    assert_eq!(
        (code, said["error"].as_str()),
        (5, Some("not_the_backup_asked_for")),
        "{said}"
    );
}

#[test]
fn the_spec_decoder_reads_both_golden_vectors() {
    let scratch = Scratch::new("golden-conformance");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let key = scratch.path().join("master.key");
    fs::copy(data.join("master.key"), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    for (dir, id, format) in [
        ("format1", "20261130T080000Z-5a5a5a5a", 1),
        ("format2", "20261130T090000Z-a5a5a5a5", 2),
    ] {
        let object = data.join(format!("{dir}/{id}.rbk"));
        let record = data.join(format!("{dir}/{id}.json"));
        let (said, code) = decode(&key, &object, Some(&record), Some(id));
        assert_eq!(code, 0, "{said}");
        assert_eq!(said["format"], format, "{said}");
        assert_eq!(
            said["raw_sha256"], "ab144c11db50f29cef709cfec88e81e7d822b314caf7b43873478ab02b432fa4",
            "{said}"
        );
    }
}
