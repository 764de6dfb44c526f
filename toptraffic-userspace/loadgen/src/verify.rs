//! Verification: what the daemon counted, from its API, against the truth.

use crate::generate::Truth;

/// Lines the daemon has accounted for so far: counted by either path or
/// dropped for a per-line reason.
pub fn lines_accounted(stats: &serde_json::Value) -> u64 {
    let n = |k: &str| stats[k].as_u64().unwrap_or(0);
    let dropped: u64 = stats["dropped"]
        .as_object()
        .map(|d| {
            d.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "oversize" | "receive_queue"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    n("points_kernel") + n("points_userspace") + dropped
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
pub fn compare(top: &serde_json::Value, truth: &Truth) -> Verdict {
    let mut v = Verdict {
        keys_sent: truth.len(),
        keys_reported: top["keys"].as_u64().unwrap_or(0) as usize,
        ..Verdict::default()
    };
    let mut seen = 0usize;
    for row in top["top"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let ip = row["tags"]["ip"].as_str().unwrap_or("").to_string();
        let id = row["tags"]["id"].as_str().unwrap_or("").to_string();
        let got = row["value"].as_f64().unwrap_or(f64::NAN);
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
    /// Lines counted in the kernel but evicted from its map before the
    /// drain: in the points, yet not in the window.
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
    pub fn between(base: &serde_json::Value, now: &serde_json::Value) -> Tally {
        let d = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
        let delta = |k: &str| d(now, k).saturating_sub(d(base, k));
        let drop = |r: &str| {
            now["dropped"][r]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(base["dropped"][r].as_u64().unwrap_or(0))
        };
        let all_drops = |v: &serde_json::Value| -> u64 {
            v["dropped"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| {
                            !matches!(k.as_str(), "oversize" | "receive_queue" | "evicted")
                        })
                        .filter_map(|(_, v)| v.as_u64())
                        .sum()
                })
                .unwrap_or(0)
        };
        Tally {
            points_kernel: delta("points_kernel"),
            points_userspace: delta("points_userspace"),
            evicted: drop("evicted"),
            line_drops: all_drops(now).saturating_sub(all_drops(base)),
            datagram_drops: drop("receive_queue") + drop("oversize"),
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
