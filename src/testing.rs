//! Helpers shared by the unit tests only (compiled under `cfg(test)`).

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::Value;

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
