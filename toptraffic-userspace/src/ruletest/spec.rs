//! A rule test file as written (TOML, or the same keys in YAML when the
//! file ends in `.yaml` or `.yml`):
//!
//! ```toml
//! config = "my.toml"             # relative to this file; the embedded default without it
//! start = "2026-01-01T00:00:00Z" # when the first interval starts (default shown)
//!
//! [[test]]
//! name = "a steady 350 a second warns"
//! until = "2m"                   # close intervals up to here at least
//! [[test.input]]
//! rule = "top_combined"          # default: the config's first rule
//! tags = { ip = "192.0.2.1", id = "7" }
//! values = "1750x24"             # per interval: 1750 for 24 intervals
//! [[test.expect]]
//! at = "55s"                     # the window's end, after start
//! level = "WARNING"
//! tags = { ip = "192.0.2.1", id = "7" }
//! value = 19250                  # optional, as are rule, block and message
//! ```
//!
//! `config` may also be a table holding the config itself (`[config]`,
//! `[[config.rule]]`). An input is a key's counts per interval (`values`),
//! or a replay input (`file`: line protocol with timestamps, or a
//! capture). `values` are numbers separated by spaces, `_` for an interval
//! without lines, `VxN` for V in N intervals, `V+DxN` for N intervals from
//! V, D more each (`V-DxN`, D less).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    pub config: Option<ConfigRef>,
    pub start: Option<String>,
    /// Unit of the timestamps of line protocol inputs.
    pub precision: Option<String>,
    #[serde(rename = "test")]
    pub tests: Vec<TestCase>,
}

/// A config file's path, or the config inline.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ConfigRef {
    Path(String),
    Inline(toml::Table),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// Close intervals up to this long after `start` at least.
    pub until: Option<String>,
    /// Go on until every window is empty after the input.
    #[serde(default)]
    pub until_empty: bool,
    #[serde(default, rename = "input")]
    pub inputs: Vec<Input>,
    #[serde(default, rename = "expect")]
    pub expects: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub rule: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub values: Option<String>,
    /// Offset of the first value after `start` (a multiple of `every`).
    pub from: Option<String>,
    /// A replay input instead, relative to the test file.
    pub file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub at: String,
    pub level: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub rule: Option<String>,
    pub block: Option<String>,
    pub message: Option<String>,
}

/// Default `start`: a round time, a multiple of every usual `every`.
pub const DEFAULT_START: &str = "2026-01-01T00:00:00Z";

pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(s)
        .map_err(|e| format!("start = {s:?}: {e}; write e.g. \"{DEFAULT_START}\""))
}

/// An offset such as `55s` or `5m55s`; zero allowed.
pub fn parse_offset(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" || s.trim() == "0s" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("bad offset {s:?} ({e}); write e.g. \"55s\", \"5m55s\""))
}

/// Whether an expectation could be met by some event: a level that
/// exists, a time at the end of an interval (`at` after a start that is
/// one), a finite value.
pub fn check_expect(x: &Expect, at: Duration, every: Duration) -> Result<(), String> {
    const LEVELS: [&str; 4] = ["OK", "INFO", "WARNING", "CRITICAL"];
    if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(&x.level)) {
        return Err(format!(
            "expect level = {:?}: one of {}",
            x.level,
            LEVELS.join(", ")
        ));
    }
    if !at.as_nanos().is_multiple_of(every.as_nanos()) {
        return Err(format!(
            "expect at = {:?}: not a multiple of window.every ({}); events come at the ends of intervals",
            x.at,
            humantime::format_duration(every)
        ));
    }
    if let Some(v) = x.value.filter(|v| !v.is_finite()) {
        return Err(format!("expect value = {v}: a finite number"));
    }
    Ok(())
}

/// Expands `values` into one entry per interval (None: no lines).
pub fn expand(values: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in values.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        let bad = || format!("bad value {tok:?} in {values:?}: write numbers, _, VxN or V+DxN");
        // Finite numbers only: "NaN" and "inf" parse as f64.
        let num = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(bad)
        };
        match tok.split_once('x') {
            None => out.push(Some(num(tok)?)),
            Some((base, n)) => {
                let n: usize = n.parse().map_err(|_| bad())?;
                if n > 1_000_000 {
                    return Err(format!("{tok:?}: at most 1000000 intervals"));
                }
                // V+D or V-D, a sign after the first character.
                let split = base
                    .char_indices()
                    .skip(1)
                    .find(|(_, c)| *c == '+' || *c == '-')
                    .map(|(i, _)| i);
                let (v, d) = match split {
                    Some(i) => (num(&base[..i])?, num(&base[i..])?),
                    None => (num(base)?, 0.0),
                };
                out.extend((0..n).map(|i| Some(v + d * i as f64)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_expand_as_documented() {
        assert_eq!(
            expand("1 _ 2x3 10+5x3 9-1x2").unwrap(),
            [1.0, f64::NAN, 2.0, 2.0, 2.0, 10.0, 15.0, 20.0, 9.0, 8.0]
                .iter()
                .map(|v| (!v.is_nan()).then_some(*v))
                .collect::<Vec<_>>()
        );
        assert!(expand("1y").is_err());
        assert!(expand("1x").is_err());
        for not_finite in ["NaN", "inf", "-infinity", "NaNx3", "1+infx2"] {
            assert!(expand(not_finite).is_err(), "{not_finite}");
        }
    }

    #[test]
    fn expectations_no_event_could_meet_are_refused() {
        let every = Duration::from_secs(5);
        let x = |at: &str, level: &str, value: Option<f64>| Expect {
            at: at.into(),
            level: level.into(),
            tags: BTreeMap::new(),
            value,
            rule: None,
            block: None,
            message: None,
        };
        let check = |e: &Expect| check_expect(e, parse_offset(&e.at).unwrap(), every);
        assert!(check(&x("55s", "warning", Some(1.0))).is_ok());
        assert!(check(&x("0s", "OK", None)).is_ok());
        let e = check(&x("55s", "WARN", None)).unwrap_err();
        assert!(e.contains("OK, INFO, WARNING, CRITICAL"), "{e}");
        let e = check(&x("7s", "WARNING", None)).unwrap_err();
        assert!(e.contains("not a multiple of window.every (5s)"), "{e}");
        let e = check(&x("55s", "WARNING", Some(f64::NAN))).unwrap_err();
        assert!(e.contains("a finite number"), "{e}");
    }
}
