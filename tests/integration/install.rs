//! `make install`: the binary, the systemd units and the example settings
//! land where they should with the right modes, an existing settings file is
//! never overwritten, and systemd accepts the units (where systemd-analyze
//! is installed, as on Debian).

use crate::harness::*;
use std::fs;
use std::path::Path;
use std::process::Command;

fn make_install(root: &Path) -> std::process::Output {
    Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("install-files")
        .arg(format!("BIN={BIN}"))
        .arg(format!("PREFIX={}", root.join("usr").display()))
        .arg(format!("UNITDIR={}", root.join("units").display()))
        .arg(format!("SYSCONF={}", root.join("etc").display()))
        .output()
        .expect("run make")
}

#[test]
fn make_install_puts_binary_units_and_private_settings_in_place() {
    let scratch = Scratch::new("install");
    let root = scratch.join("root");
    let out = make_install(&root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(mode_of(&root.join("usr/bin/redis-backup")), 0o755);
    assert_eq!(mode_of(&root.join("etc")), 0o700);
    let settings = root.join("etc/redis-backup.conf");
    assert_eq!(mode_of(&settings), 0o600, "the settings may hold secrets");
    let service = fs::read_to_string(root.join("units/redis-backup.service")).unwrap();
    assert!(
        service.contains(&format!(
            "ExecStart={} --config {} backup",
            root.join("usr/bin/redis-backup").display(),
            settings.display()
        )),
        "{service}"
    );
    // The status file's documented home must be writable under
    // ProtectSystem=strict, or monitoring would never see a backup.
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    // The folder of the file path README shows right after `before`.
    let documented_folder = |before: &str| {
        readme
            .split(before)
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .and_then(|file| Path::new(file).parent())
            .unwrap_or_else(|| panic!("README shows a path after {before:?}"))
            .display()
            .to_string()
    };
    let status_dir = documented_folder("status_file = ");
    // So must the default lock's folder: the archive unit lacked /run, and
    // its archiver could never take its lock (found by review).
    let lock_dir = documented_folder("| `lock_file` | `");
    let archive = fs::read_to_string(root.join("units/redis-backup-archive.service")).unwrap();
    for unit in [&service, &archive] {
        let writable = unit
            .lines()
            .find_map(|l| l.strip_prefix("ReadWritePaths="))
            .expect("ReadWritePaths");
        // A path that does not exist keeps the unit from starting at all
        // (226/NAMESPACE) unless marked '-': the data dirs of Redis and
        // Valkey, the storage on a host with Swift (found by review).
        for path in writable.split_whitespace().filter(|p| *p != "/run") {
            assert!(path.starts_with('-'), "{path} in ReadWritePaths={writable}");
        }
        assert!(
            unit.contains("StateDirectory=redis-backup\nStateDirectoryMode=0700\n"),
            "{unit}"
        );
        // Ordered after Redis on a Valkey host too (found by review).
        let after = unit.lines().find_map(|l| l.strip_prefix("After="));
        assert!(
            after.is_some_and(
                |a| a.contains(" redis-server.service") && a.contains(" valkey-server.service")
            ),
            "{after:?}"
        );
        for needed in [&status_dir, &lock_dir] {
            assert!(
                writable
                    .split_whitespace()
                    .any(|p| p.trim_start_matches('-') == needed.as_str()),
                "{needed} is not in ReadWritePaths={writable}"
            );
        }
    }
    assert!(
        archive.contains(&format!(
            "ExecStart={} --config {} archive",
            root.join("usr/bin/redis-backup").display(),
            settings.display()
        )) && archive.contains("Restart=always"),
        "{archive}"
    );
    // Every exit restarts it, a settings error (exit 2) too, which may be
    // the redis account's lease held on its redis.conf for a moment: a unit
    // that gave up would leave point-in-time recovery off for good. The
    // pause grows instead.
    assert!(!archive.contains("RestartPreventExitStatus"), "{archive}");
    assert!(archive.contains("\nRestartMaxDelaySec="), "{archive}");
    let timer = fs::read_to_string(root.join("units/redis-backup.timer")).unwrap();
    assert!(timer.contains("Persistent=true") && timer.contains("RandomizedDelaySec="));

    // A second install keeps the operator's settings.
    fs::write(&settings, "storage = file:///mine\n").unwrap();
    assert!(make_install(&root).status.success());
    assert_eq!(
        fs::read_to_string(&settings).unwrap(),
        "storage = file:///mine\n"
    );

    if Path::new("/usr/bin/systemd-analyze").exists() {
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(root.join("units/redis-backup.service"))
            .arg(root.join("units/redis-backup.timer"))
            .arg(root.join("units/redis-backup-archive.service"))
            .output()
            .expect("run systemd-analyze");
        let stderr = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success(), "{stderr}");
        assert!(
            !stderr.lines().any(|l| l.starts_with("redis-backup.")),
            "systemd-analyze complains about our units:\n{stderr}"
        );
    }
}
