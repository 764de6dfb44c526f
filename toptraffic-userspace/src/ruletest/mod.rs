//! `toptraffic test`: rule unit tests. A TOML file names a config (or holds
//! one), gives per-key counts per interval (or a replay input) and the
//! alert events expected; `check` runs them through the replay and diffs
//! what was sent against what was expected.

mod check;
mod spec;

pub use check::{run_file, CaseResult, FileResult};

#[cfg(test)]
mod tests;
