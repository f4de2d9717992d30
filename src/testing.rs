//! Helpers shared by the unit tests only (compiled under `cfg(test)`).

use proptest::test_runner::Config as ProptestConfig;

/// `cases` cases per property, and no regression files written into the
/// source tree: a case a property finds becomes an ordinary named test.
pub fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
