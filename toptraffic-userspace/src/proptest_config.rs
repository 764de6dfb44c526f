//! The property tests' runner settings: how many cases, and failures that
//! replay.
//!
//! A failing case is persisted (proptest's default file persistence, under
//! `toptraffic-userspace/proptest-regressions/`, parallel to the source
//! file) and replayed before new cases on every later run, so a failure
//! seen once, in CI or anywhere, reproduces from the repository.

use proptest::test_runner::Config;

/// `cases` per test unless `PROPTEST_CASES` asks for another number (for a
/// longer hunt).
pub(crate) fn config(cases: u32) -> Config {
    let default = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            cases
        },
        ..default
    }
}
