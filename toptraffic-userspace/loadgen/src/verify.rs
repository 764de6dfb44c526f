//! Verification: what the daemon counted, from its API, against the truth.
//!
//! The typed functions read `toptraffic_api` answers; their twins on
//! `serde_json::Value` serve tests and benchmarks that hold the raw
//! document, and read what is not a stats document (null: no baseline) as
//! zeros.

use serde::Deserialize;
use serde_json::Value;
use toptraffic_api::{Stats, Top};

use crate::generate::Truth;

/// A stats document as [`Stats`]; zeros when it is none.
fn stats_of(v: &Value) -> Stats {
    Stats::deserialize(v).unwrap_or_default()
}

/// Lines the daemon has accounted for so far: counted by either path or
/// dropped for a per-line reason.
pub fn lines_accounted(stats: &Value) -> u64 {
    accounted(&stats_of(stats))
}

/// [`lines_accounted`] of a typed stats answer.
pub fn accounted(stats: &Stats) -> u64 {
    let dropped: u64 = stats
        .dropped
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "oversize" | "receive_queue"))
        .map(|(_, n)| n)
        .sum();
    stats.points_kernel + stats.points_userspace + dropped
}

/// How the daemon's window compares with the truth.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub keys_sent: usize,
    pub keys_reported: usize,
    /// Keys whose value differs from the lines sent (or that are missing).
    pub wrong: usize,
    /// Keys reported that were never sent.
    pub extra: usize,
    pub first_wrong: Option<String>,
}

impl Verdict {
    pub fn exact(&self) -> bool {
        self.wrong == 0 && self.extra == 0 && self.keys_sent == self.keys_reported
    }
}

/// Compares a `/api/v1/top` answer (keyed by ip and id) with the truth.
pub fn compare(top: &Value, truth: &Truth) -> Verdict {
    match Top::deserialize(top) {
        Ok(top) => compare_top(&top, truth),
        // Nothing reported: every key sent is missing.
        Err(e) => Verdict {
            keys_sent: truth.len(),
            wrong: truth.len(),
            first_wrong: Some(format!("not a /api/v1/top answer: {e}")),
            ..Verdict::default()
        },
    }
}

/// [`compare`] with a typed answer.
pub fn compare_top(top: &Top, truth: &Truth) -> Verdict {
    let mut v = Verdict {
        keys_sent: truth.len(),
        keys_reported: top.keys as usize,
        ..Verdict::default()
    };
    let mut seen = 0usize;
    for row in &top.top {
        let tag = |name: &str| row.tags.get(name).cloned().unwrap_or_default();
        let (ip, id) = (tag("ip"), tag("id"));
        let got = row.value.0;
        match truth.get(&(ip.clone(), id.clone())) {
            Some(&want) => {
                seen += 1;
                if got != want as f64 {
                    v.wrong += 1;
                    v.first_wrong
                        .get_or_insert_with(|| format!("ip={ip} id={id}: got {got}, sent {want}"));
                }
            }
            None => v.extra += 1,
        }
    }
    v.wrong += truth.len().saturating_sub(seen);
    if v.first_wrong.is_none() && truth.len() > seen {
        v.first_wrong = Some(format!("{} keys sent are missing", truth.len() - seen));
    }
    v
}

/// What the daemon made of the lines between two `/api/v1/stats` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub points_kernel: u64,
    pub points_userspace: u64,
    /// Lines the kernel parsed that no generation map cell could hold
    /// (`dropped.evicted`: a cell's line bound; the maps never evict).
    pub evicted: u64,
    /// Lines dropped for a per-line reason (parse error, unknown
    /// measurement, key table full, ...), evictions aside.
    pub line_drops: u64,
    /// Datagrams the socket's queue dropped (the daemon updates this at each
    /// rotation on the kernel path) or that were too long.
    pub datagram_drops: u64,
}

impl Tally {
    /// The difference `now - base` of two stats documents.
    pub fn between(base: &Value, now: &Value) -> Tally {
        Tally::of(&stats_of(base), &stats_of(now))
    }

    /// [`Tally::between`] two typed stats answers.
    pub fn of(base: &Stats, now: &Stats) -> Tally {
        let drop = |s: &Stats, r: &str| s.dropped.get(r).copied().unwrap_or(0);
        let delta = |r: &str| drop(now, r).saturating_sub(drop(base, r));
        let all_drops = |s: &Stats| -> u64 {
            s.dropped
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "oversize" | "receive_queue" | "evicted"))
                .map(|(_, n)| n)
                .sum()
        };
        Tally {
            points_kernel: now.points_kernel.saturating_sub(base.points_kernel),
            points_userspace: now.points_userspace.saturating_sub(base.points_userspace),
            evicted: delta("evicted"),
            line_drops: all_drops(now).saturating_sub(all_drops(base)),
            datagram_drops: delta("receive_queue") + delta("oversize"),
        }
    }

    /// Lines that made it into the window.
    pub fn counted(&self) -> u64 {
        (self.points_kernel + self.points_userspace).saturating_sub(self.evicted)
    }

    /// Lines of `sent` not accounted for: neither counted nor dropped for
    /// a per-line reason (lost, or still on their way).
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.counted() + self.line_drops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use toptraffic_api::{Number, TopRow};

    fn stats(points: u64, parse_error: u64, receive_queue: u64) -> Stats {
        Stats {
            points_userspace: points,
            dropped: [
                ("parse_error", parse_error),
                ("receive_queue", receive_queue),
            ]
            .map(|(k, n)| (k.to_string(), n))
            .into(),
            ..Stats::default()
        }
    }

    #[test]
    fn lines_accounted_are_counted_or_dropped_per_line() {
        assert_eq!(accounted(&stats(100, 5, 7)), 105);
        let doc = serde_json::to_value(stats(100, 5, 7)).unwrap();
        assert_eq!(lines_accounted(&doc), 105);
        assert_eq!(lines_accounted(&Value::Null), 0);
    }

    #[test]
    fn a_tally_from_no_baseline_counts_everything() {
        let now = serde_json::to_value(stats(100, 5, 7)).unwrap();
        let t = Tally::between(&Value::Null, &now);
        assert_eq!((t.counted(), t.line_drops, t.datagram_drops), (100, 5, 7));
        assert_eq!(t.lost(110), 5);
        let t = Tally::of(&stats(40, 1, 0), &stats(100, 5, 7));
        assert_eq!((t.counted(), t.line_drops), (60, 4));
    }

    fn top(rows: &[(&str, &str, f64)], keys: u64) -> Top {
        Top {
            as_name: "count".into(),
            cluster: None,
            group_by: vec!["ip".into(), "id".into()],
            keys,
            period_s: Number(60.0),
            rule: "top_combined".into(),
            top: rows
                .iter()
                .map(|&(ip, id, v)| TopRow {
                    approximate: false,
                    error_bound: None,
                    shares: None,
                    tags: [("ip", ip), ("id", id)]
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .into(),
                    value: Number(v),
                })
                .collect(),
            window_end: None,
        }
    }

    #[test]
    fn compare_finds_wrong_missing_and_extra_keys() {
        let truth: Truth = [(("10.0.0.1", "1"), 3), (("10.0.0.2", "2"), 4)]
            .map(|((ip, id), n)| ((ip.to_string(), id.to_string()), n))
            .into();
        let exact = top(&[("10.0.0.2", "2", 4.0), ("10.0.0.1", "1", 3.0)], 2);
        assert!(compare_top(&exact, &truth).exact());
        assert!(compare(&serde_json::to_value(&exact).unwrap(), &truth).exact());
        let v = compare_top(
            &top(&[("10.0.0.2", "2", 5.0), ("10.0.0.9", "9", 1.0)], 2),
            &truth,
        );
        assert_eq!((v.wrong, v.extra), (2, 1));
        assert_eq!(
            v.first_wrong.as_deref(),
            Some("ip=10.0.0.2 id=2: got 5, sent 4")
        );
        let v = compare(&json!({"error": "no rule"}), &truth);
        assert_eq!((v.wrong, v.keys_reported, v.exact()), (2, 0, false));
    }
}
