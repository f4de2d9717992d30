//! Self-tests of the attacker harness (`attacker.rs`): the user it plays, the
//! permission check behind "no copy readable by the attacker", and the
//! victims' change detection.
//! They pass on any code: they test the harness, not the tool.

use crate::attacker::*;
use crate::harness::*;
use std::fs;
use std::os::unix::fs::MetadataExt;

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
