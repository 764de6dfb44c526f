//! Runs a rule test file: each test's inputs become datagrams, the replay
//! runs them through the daemon's engine, and the events sent are compared
//! with those expected; a difference is shown as a diff in time order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::spec::{self, ConfigRef, Expect, Input, TestCase, TestFile};
use crate::config::{Aggregate, Config, Rule};
use crate::replay::{self, Datagram, Options, Output, Precision, Skipped};

/// One test's outcome.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    /// Events the rules sent.
    pub events: usize,
    /// None when they were those expected; else the diff.
    pub diff: Option<String>,
}

/// A file's tests.
#[derive(Debug)]
pub struct FileResult {
    pub file: String,
    pub cases: Vec<CaseResult>,
}

/// An event as compared: what an expectation can name.
#[derive(Debug, Clone)]
struct Seen {
    at: Duration,
    level: String,
    rule: String,
    block: String,
    tags: BTreeMap<String, String>,
    value: f64,
    message: String,
}

/// Reads and runs every test of `path`; Err when the file cannot run.
pub fn run_file(path: &Path) -> Result<FileResult, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let file: TestFile = if yaml {
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{name}: {e}"))?
    } else {
        toml::from_str(&text).map_err(|e| format!("{name}: {e}"))?
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let config = match &file.config {
        None => Config::embedded_default(),
        Some(ConfigRef::Path(p)) => Config::load(&dir.join(p)).map_err(|e| e.to_string())?,
        Some(ConfigRef::Inline(t)) => {
            let toml = toml::to_string(t).map_err(|e| format!("{name}: [config]: {e}"))?;
            Config::parse(&toml, &format!("{name} [config]")).map_err(|e| e.to_string())?
        }
    };
    let start = spec::parse_time(file.start.as_deref().unwrap_or(spec::DEFAULT_START))
        .map_err(|e| format!("{name}: {e}"))?;
    let every = config.window.every;
    let since = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| format!("{name}: start is before 1970"))?;
    if since.as_nanos() % every.as_nanos() != 0 {
        return Err(format!(
            "{name}: start must be a multiple of window.every ({})",
            humantime::format_duration(every)
        ));
    }
    let precision: Precision = match &file.precision {
        Some(p) => p.parse().map_err(|e| format!("{name}: {e}"))?,
        None => Precision::default(),
    };
    let mut cases = Vec::new();
    for case in &file.tests {
        let ctx = |e: String| format!("{name}: test {:?}: {e}", case.name);
        // What a test expects is checked before it runs: an expectation
        // that no event could meet is a mistake in the file, not a failure.
        let mut expects = Vec::new();
        for x in &case.expects {
            let at = spec::parse_offset(&x.at).map_err(ctx)?;
            spec::check_expect(x, at, every).map_err(ctx)?;
            expects.push((at, x.clone()));
        }
        let (datagrams, until) = datagrams(case, &config, start, &dir, precision).map_err(ctx)?;
        let opts = Options {
            until_empty: case.until_empty,
            until,
            ..Options::default()
        };
        let mut seen = Vec::new();
        replay::replay(config.clone(), datagrams, &opts, |o| {
            if let Output::Event(e) = o {
                seen.push(Seen {
                    at: e.time.duration_since(start).unwrap_or_default(),
                    level: e.level.as_str().to_string(),
                    rule: e.task.clone(),
                    block: e.block.clone(),
                    tags: e.tags.clone(),
                    value: e.value,
                    message: e.message.clone(),
                });
            }
        })
        .map_err(|e| ctx(format!("{e:#}")))?;
        cases.push(CaseResult {
            name: case.name.clone(),
            events: seen.len(),
            diff: diff(&seen, &expects),
        });
    }
    Ok(FileResult { file: name, cases })
}

/// The test's inputs as datagrams, and the time it runs to.
fn datagrams(
    case: &TestCase,
    config: &Config,
    start: SystemTime,
    dir: &Path,
    precision: Precision,
) -> Result<(Vec<Datagram>, Option<SystemTime>), String> {
    let every = config.window.every;
    let mut out = Vec::new();
    for input in &case.inputs {
        match (&input.values, &input.file) {
            (Some(v), None) => series(input, v, config, start, every, &mut out)?,
            (None, Some(f)) => {
                let path: PathBuf = dir.join(f);
                replay::read(
                    &path,
                    precision,
                    config.ingest.listen.port(),
                    &mut out,
                    &mut Skipped::default(),
                )
                .map_err(|e| e.to_string())?;
            }
            _ => return Err("an input has either values or file".to_string()),
        }
    }
    let until = match &case.until {
        Some(u) => Some(start + spec::parse_offset(u)?),
        None => None,
    };
    Ok((out, until))
}

/// Escapes a measurement, tag key or tag value for line protocol.
fn escape(s: &str, out: &mut String, equals: bool) {
    for c in s.chars() {
        if c == ',' || c == ' ' || (equals && c == '=') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A key's counts per interval as lines at each interval's start: one
/// line carrying the value for a sum, as many lines as the value for a
/// count.
fn series(
    input: &Input,
    values: &str,
    config: &Config,
    start: SystemTime,
    every: Duration,
    out: &mut Vec<Datagram>,
) -> Result<(), String> {
    let rule: &Rule = match &input.rule {
        Some(r) => config
            .rules
            .iter()
            .find(|x| x.name == *r)
            .ok_or_else(|| format!("no rule {r:?} in the config"))?,
        None => config.rules.first().ok_or("the config has no rule")?,
    };
    let mut tags: BTreeMap<&str, &str> = rule
        .filters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in &input.tags {
        if let Some(f) = tags.get(k.as_str()).filter(|f| **f != v) {
            return Err(format!(
                "tag {k:?} = {v:?}: rule {:?} takes only {k} = {f:?}",
                rule.name
            ));
        }
        tags.insert(k, v);
    }
    let mut head = String::new();
    escape(&rule.measurement, &mut head, false);
    for (k, v) in &tags {
        head.push(',');
        escape(k, &mut head, true);
        head.push('=');
        escape(v, &mut head, true);
    }
    let from = match &input.from {
        Some(f) => spec::parse_offset(f)?,
        None => Duration::ZERO,
    };
    if from.as_nanos() % every.as_nanos() != 0 {
        return Err(format!("from = {from:?} is not a multiple of window.every"));
    }
    for (i, v) in spec::expand(values)?.into_iter().enumerate() {
        let Some(v) = v else { continue };
        let at = start + from + every * i as u32;
        match &rule.aggregate {
            Aggregate::Sum { field } => {
                let mut line = head.clone();
                line.push(' ');
                escape(field, &mut line, true);
                let _ = write!(line, "={v:?}");
                out.push(Datagram {
                    at,
                    data: line.into_bytes(),
                });
            }
            Aggregate::Count => {
                if v < 0.0 || v.fract() != 0.0 || v > 10_000_000.0 {
                    return Err(format!(
                        "rule {:?} counts lines: {v} is not a whole number of lines (at most 10000000)",
                        rule.name
                    ));
                }
                for _ in 0..v as u64 {
                    out.push(Datagram {
                        at,
                        data: format!("{head} value=1").into_bytes(),
                    });
                }
            }
        }
    }
    Ok(())
}

fn matches(s: &Seen, at: Duration, x: &Expect) -> bool {
    s.at == at
        && s.level.eq_ignore_ascii_case(&x.level)
        && x.tags.iter().all(|(k, v)| s.tags.get(k) == Some(v))
        && x.value
            .is_none_or(|v| (v - s.value).abs() <= 1e-9 * v.abs().max(1.0))
        && x.rule.as_ref().is_none_or(|r| *r == s.rule)
        && x.block.as_ref().is_none_or(|b| *b == s.block)
        && x.message.as_ref().is_none_or(|m| *m == s.message)
}

/// `5m55s`, `40s`, `0s`.
fn offset(d: Duration) -> String {
    let (m, s) = (d.as_secs() / 60, d.as_secs() % 60);
    let ms = d.subsec_millis();
    let mut out = if m > 0 {
        format!("{m}m")
    } else {
        String::new()
    };
    if s > 0 || ms > 0 || m == 0 {
        let _ = write!(out, "{s}");
        if ms > 0 {
            let _ = write!(out, ".{ms:03}");
        }
        out.push('s');
    }
    out
}

fn tags_text(t: &BTreeMap<String, String>) -> String {
    let kv: Vec<String> = t.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", kv.join(", "))
}

fn number(v: f64) -> String {
    crate::goformat::json_number(v).to_string()
}

/// None when every event was expected and every expectation met; else the
/// events and expectations in time order, `-` for an expectation no event
/// met, `+` for an event not expected.
fn diff(seen: &[Seen], expects: &[(Duration, Expect)]) -> Option<String> {
    let mut used = vec![false; expects.len()];
    let mut lines: Vec<(Duration, usize, String)> = Vec::new();
    let mut differs = false;
    for (n, s) in seen.iter().enumerate() {
        let hit = expects
            .iter()
            .enumerate()
            .find(|(i, (at, x))| !used[*i] && matches(s, *at, x))
            .map(|(i, _)| i);
        let mark = match hit {
            Some(i) => {
                used[i] = true;
                ' '
            }
            None => {
                differs = true;
                '+'
            }
        };
        let mut line = format!(
            "{mark} {:>7} {:<9} {}/{} {} {}",
            offset(s.at),
            s.level,
            s.rule,
            s.block,
            tags_text(&s.tags),
            number(s.value)
        );
        if mark == '+' {
            let _ = write!(line, "\n          message: {}", s.message);
        }
        lines.push((s.at, n * 2 + 1, line));
    }
    for (i, (at, x)) in expects.iter().enumerate() {
        if used[i] {
            continue;
        }
        differs = true;
        let mut line = format!(
            "- {:>7} {:<9} {}/{} {} {}",
            offset(*at),
            x.level.to_ascii_uppercase(),
            x.rule.as_deref().unwrap_or("*"),
            x.block.as_deref().unwrap_or("*"),
            tags_text(&x.tags),
            x.value.map_or("*".to_string(), number)
        );
        if let Some(m) = &x.message {
            let _ = write!(line, "\n          message: {m}");
        }
        // Before the events of the same time.
        lines.push((*at, i * 2, line));
    }
    if !differs {
        return None;
    }
    lines.sort_by_key(|(at, order, _)| (*at, *order % 2, *order));
    let mut out = String::from("  (- expected, not sent; + sent, not expected)\n");
    for (_, _, l) in lines {
        out.push_str("  ");
        out.push_str(&l);
        out.push('\n');
    }
    Some(out)
}
