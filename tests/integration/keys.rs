//! The key file (keygen, its mode, its format) and secrets: no password and
//! no key ever shows in the output, however verbose.

use crate::harness::*;
use std::fs;

fn is_key_text(text: &str) -> bool {
    text.len() == 65 && text.ends_with('\n') && text[..64].bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    let t = TestRedis::builder().prepare();
    let key = t.path("new.key");
    let key_s = key.display().to_string();
    t.run(&["keygen", "--out", &key_s]).ok();
    assert_eq!(mode_of(&key), 0o600, "key file mode");
    let text = fs::read_to_string(&key).unwrap();
    assert!(
        is_key_text(&text),
        "64 hex digits and a newline: {:?}",
        text.len()
    );
    // The harness's key was made the same way, and differs.
    let first = fs::read_to_string(t.key_file()).unwrap();
    assert!(is_key_text(&first));
    assert_ne!(first, text, "two keygens made the same key");

    let out = t.run(&["keygen", "--out", &key_s]);
    out.code(2);
    assert_eq!(
        fs::read_to_string(&key).unwrap(),
        text,
        "key was overwritten"
    );
    assert_eq!(mode_of(&key), 0o600);
}

/// keygen killed at its first write: the key file is whole or absent,
/// never an empty file that every later command calls "not a key" and
/// keygen refuses to replace.
#[test]
fn a_keygen_killed_mid_write_leaves_no_partial_key() {
    let t = TestRedis::builder().prepare();
    let key = t.path("killed.key");
    let out = Run::new("strace")
        .args(&["-o", "/dev/null", "-e", "trace=write", "-e"])
        .arg("inject=write:signal=KILL:when=1")
        .args(&[BIN, "keygen", "--out", &key.display().to_string()])
        .run();
    assert_eq!(out.code, None, "not killed\n{out}");
    assert!(
        !key.exists() || is_key_text(&fs::read_to_string(&key).unwrap()),
        "a partial key file was left"
    );
    t.run(&["keygen", "--out", &key.display().to_string()]).ok();
    assert!(is_key_text(&fs::read_to_string(&key).unwrap()));
}

#[test]
fn bad_key_files_are_usage_errors_that_touch_nothing() {
    let t = TestRedis::start();
    t.conn().ok(&["SET", "k", "v"]);
    let saves = t.conn().rdb_saves();
    let good = fs::read(t.key_file()).unwrap();

    set_mode(&t.key_file(), 0o644);
    let out = t.run(&["backup"]);
    out.code(2).stderr_has("key");
    set_mode(&t.key_file(), 0o600);

    let hex63: String = "a".repeat(63) + "\n";
    let hex_bad: String = "g".repeat(64) + "\n";
    let long: String = "ab".repeat(64) + "\n";
    for (case, text) in [
        ("not a key", "not a key\n"),
        ("63 hex digits", hex63.as_str()),
        ("non-hex", hex_bad.as_str()),
        ("128 hex digits", long.as_str()),
        ("empty", ""),
    ] {
        fs::write(t.key_file(), text).unwrap();
        set_mode(&t.key_file(), 0o600);
        let out = t.run(&["backup"]);
        assert_eq!(out.code, Some(2), "key file {case}: expected exit 2\n{out}");
    }
    fs::remove_file(t.key_file()).unwrap();
    let out = t.run(&["backup"]);
    assert_eq!(
        out.code,
        Some(2),
        "missing key file: expected exit 2\n{out}"
    );
    // A command that reads backups must not send the operator to keygen
    // first: a new key reads none of them.
    t.run(&["list"])
        .code(2)
        .stderr_has("restore it from your safe copy");

    assert_eq!(
        t.conn().rdb_saves(),
        saves,
        "a settings error touched Redis"
    );
    assert!(t.storage_files().is_empty(), "{:?}", t.storage_files());

    // With the good key back, the same backup works.
    fs::write(t.key_file(), &good).unwrap();
    set_mode(&t.key_file(), 0o600);
    t.backup();
}

#[test]
fn no_secret_in_any_output() {
    let default_pw = "default-pw-Zq81x";
    let acl_pw = "acl-pw-Kx93mT";
    let t = TestRedis::builder()
        .requirepass(default_pw)
        .acl_user("backup", acl_pw)
        .setting("redis_user", "backup")
        .setting("redis_password", acl_pw)
        .start();
    fill_every_type(&mut t.conn());
    let key_text = fs::read_to_string(t.key_file()).unwrap();
    let key_hex = key_text.trim().to_string();
    let key_bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let secrets = [
        default_pw.to_string(),
        acl_pw.to_string(),
        key_hex.to_lowercase(),
        key_hex.to_uppercase(),
    ];
    let check = |out: &Output| {
        out.ok();
        for s in &secrets {
            out.lacks(s);
        }
    };

    let out = t.cmd(&["-vv", "backup"]).env("RUST_LOG", "debug").run();
    check(&out);
    assert!(
        !out.stderr.trim().is_empty(),
        "-vv backup logged nothing, so this test would prove nothing"
    );
    let id = out.last_line();
    let out = t
        .cmd(&["-vv", "--json", "backup"])
        .env("RUST_LOG", "debug")
        .run();
    check(&out);

    for args in [
        vec!["-vv", "verify", &id],
        vec!["-vv", "list"],
        vec!["-vv", "--json", "list"],
        vec!["-vv", "show", &id],
        vec!["-vv", "--json", "show", &id],
    ] {
        check(&t.cmd(&args).env("RUST_LOG", "debug").run());
    }
    // The password from the environment is not shown either.
    let mut t = t;
    t.remove_setting("redis_password");
    let out = t
        .cmd(&["-vv", "backup"])
        .env("RUST_LOG", "debug")
        .env("REDIS_BACKUP_REDIS_PASSWORD", acl_pw)
        .run();
    check(&out);

    // Nor in storage: records hold no secret, objects not the key.
    for name in t.storage_files() {
        let bytes = fs::read(t.storage_dir().join(&name)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{name} holds a secret");
        }
        assert!(
            !bytes.windows(32).any(|w| w == key_bytes.as_slice()),
            "{name} holds the raw key"
        );
    }
}

#[test]
fn no_secret_in_the_argv_of_any_process_the_tool_starts() {
    // A restore of an AOF instance starts the most: systemctl (the shim,
    // which records its arguments) and a private redis-server.
    let pw = "argv-secret-Pq72w";
    let t = TestRedis::builder().requirepass(pw).appendonly().start();
    fill_every_type(&mut t.conn());
    add_filler(&mut t.conn(), 200_000);
    let backed_up = t.state();
    let id = t.backup();
    let key_hex = fs::read_to_string(t.key_file())
        .unwrap()
        .trim()
        .to_lowercase();

    // An operator's Swift password in the environment (README: export it)
    // must not reach the private server: it runs as Redis's account.
    let env_secret = "env-secret-Zx81c";
    let tool = t
        .cmd(&["-vv", "restore", &id])
        .env("OS_PASSWORD", env_secret)
        .spawn();
    let pid = wait_for("the private redis-server", || t.private_server_pid());
    let held = Stopped::hold(pid, "the private redis-server");
    let argv = fs::read(format!("/proc/{pid}/cmdline")).expect("the private server's argv");
    let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
    assert!(argv.contains("redis-server"), "{argv}");
    let environ =
        fs::read(format!("/proc/{pid}/environ")).expect("the private server's environment");
    let environ = String::from_utf8_lossy(&environ).replace('\0', " ");
    assert!(
        !environ.contains(env_secret),
        "the private server's environment: {environ}"
    );
    assert!(!environ.contains("REDIS_BACKUP_"), "{environ}");
    drop(held);
    let out = tool.wait_with_output().expect("the restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(t.state(), backed_up);

    let calls = t.shim_calls().join("\n");
    assert!(calls.contains("stop") && calls.contains("start"), "{calls}");
    for secret in [pw, key_hex.as_str()] {
        assert!(!argv.contains(secret), "the private server's argv: {argv}");
        assert!(!calls.contains(secret), "systemctl's argv: {calls}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
    }
}
