//! Helpers shared by the unit tests only (compiled under `cfg(test)`).

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::Value;

/// A new, empty folder of this test's in the temporary dir, named by `name`
/// (unique among the tests) and the process; what an earlier run left there
/// is removed first.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Make a FIFO at `path` (mode 0600): what a hostile account plants where
/// a file is expected, to make a reader wait for ever.
pub fn make_fifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// A thread that opens the FIFO `path` to write, and waits there (in the
/// kernel) until someone opens it to read; returned once it is waiting. It
/// sends whether its open succeeded: the sign that something opened the
/// FIFO to read.
pub fn writer_waiting_on(path: &std::path::Path) -> std::sync::mpsc::Receiver<bool> {
    let (opened, writer_opened) = std::sync::mpsc::channel();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // /proc/thread-self is a link to PID/task/TID.
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        let _ = tid_tx.send(me.file_name().unwrap().to_string_lossy().into_owned());
        let writer = std::fs::OpenOptions::new().write(true).open(&path);
        let _ = opened.send(writer.is_ok());
    });
    let tid = tid_rx.recv().unwrap();
    // Waiting in openat (syscall 257 on x86_64, 56 on aarch64): the first
    // field of /proc/self/task/TID/syscall is the syscall it is blocked in.
    let syscall = format!("/proc/self/task/{tid}/syscall");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&syscall)
        .is_ok_and(|s| s.starts_with("257 ") || s.starts_with("56 "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never waited on the FIFO"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    writer_opened
}

/// `cases` cases per property, and no regression files written into the
/// source tree: a case a property finds becomes an ordinary named test.
pub fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep, with keys and strings that sometimes
/// are the ones our parsers look for.
pub fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(Value::from("b1")),
        Just(Value::from("object-store")),
        Just(Value::from("public")),
        Just(Value::from("http://127.0.0.1:8080/v1/AUTH_x")),
    ];
    let key = prop_oneof![
        "[a-z_]{1,12}",
        prop::sample::select(vec![
            "name",
            "token",
            "catalog",
            "type",
            "endpoints",
            "interface",
            "region",
            "url",
            "expires_at",
        ])
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
