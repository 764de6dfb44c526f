//! `GET /api/v1/stats`: what the daemon counted, dropped and sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::number::Number;

/// The daemon's counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Per alert block: events per level and errors.
    pub alerts: Vec<AlertBlockStats>,
    pub datagrams_kernel: u64,
    pub datagrams_userspace: u64,
    /// Lines no rule counted (datagrams, for `oversize` and
    /// `receive_queue`), by reason, over both paths.
    pub dropped: BTreeMap<String, u64>,
    /// The kernel path, when it runs.
    pub kernel: Option<KernelStats>,
    /// Wall-clock seconds of the last rotation.
    pub last_rotation_seconds: f64,
    /// The UDP address the daemon receives on.
    pub listen: String,
    /// The path that counts: "kernel" or "userspace".
    pub mode: String,
    /// Why this path counts.
    pub mode_reason: String,
    /// What the config or command line asked for: "auto", "kernel" or
    /// "userspace".
    pub mode_requested: String,
    /// Lines counted by at least one rule, per path.
    pub points_kernel: u64,
    pub points_userspace: u64,
    pub reloads: Reloads,
    pub rotations: u64,
    pub rules: Vec<RuleStats>,
    pub sinks: Vec<SinkStats>,
    pub uptime_s: u64,
    /// End of the last closed interval; null before the first.
    pub window_end: Option<String>,
}

/// One alert block's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertBlockStats {
    pub block: String,
    /// Expression evaluations that failed (counted as false).
    pub eval_errors: u64,
    /// Events handed to the sinks, by level.
    pub events: LevelCounts,
    pub rule: String,
    /// Events not sent because a template failed to render.
    pub template_errors: u64,
}

/// A count per alert level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelCounts {
    #[serde(rename = "CRITICAL")]
    pub critical: u64,
    #[serde(rename = "INFO")]
    pub info: u64,
    #[serde(rename = "OK")]
    pub ok: u64,
    #[serde(rename = "WARNING")]
    pub warning: u64,
}

/// The kernel path's counters and set-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelStats {
    /// Keys read at the last drain of the generation map.
    pub last_drain_keys: Option<u64>,
    /// Seconds the last drain took to swap and read the map.
    pub last_drain_seconds: Option<f64>,
    /// Datagrams the kernel left to userspace, by reason.
    pub passed_to_userspace: BTreeMap<String, u64>,
    pub setup: Option<KernelSetup>,
}

/// How the kernel path runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSetup {
    /// "socket_filter" or "xdp".
    pub attach: String,
    /// The XDP interface and mode, when XDP.
    pub interface: Option<String>,
    /// Entries of each generation map.
    pub map_entries: u32,
    pub pin_dir: Option<String>,
    /// Rules that run in userspace, and why: (rule, reason).
    pub userspace_rules: Vec<(String, String)>,
}

/// Config reloads applied and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloads {
    pub failed: u64,
    /// The last reload's outcome; null before any.
    pub last: Option<LastReload>,
    pub ok: u64,
}

/// One reload's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReload {
    /// A summary of the change, or why the config was refused.
    pub message: String,
    pub ok: bool,
    pub time: String,
}

/// One rule's window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleStats {
    /// Keys with anything in the window: the exact tier's keys.
    pub keys: u64,
    pub name: String,
    /// For a cluster rule: "cluster" while its alerts run on the cluster's
    /// values, "fallback" while on this node's counts (Redis failed);
    /// absent for a node rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The approximate tier; absent when the rule has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<OverflowStats>,
    /// Lines the rule refused because a table of it held max_keys keys.
    pub overflow_lines: u64,
}

/// A rule's approximate tier: the sketch counting keys beyond max_keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverflowStats {
    /// Exact keys moved to the sketch to make room, since the rule began.
    pub demotions: u64,
    /// What an estimate over the window may exceed a key's value by (with
    /// the configured confidence).
    pub error_bound: Number,
    /// Whether lines went to the sketch in the last interval.
    pub in_overflow: bool,
    /// Distinct keys the sketch took lines of in the last interval.
    pub keys_estimated: u64,
    /// Lines counted in the sketch rather than refused, since the rule
    /// began.
    pub lines_estimated: u64,
    /// Keys moved from the sketch into the exact table, since the rule
    /// began.
    pub promotions: u64,
}

/// One alert sink's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    pub dropped: u64,
    pub failed: u64,
    pub kind: String,
    pub name: String,
    /// Events waiting now.
    pub queue_len: u64,
    pub queued: u64,
    pub retries: u64,
    pub sent: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        Stats {
            alerts: vec![AlertBlockStats {
                block: "pager".into(),
                eval_errors: 1,
                events: LevelCounts {
                    critical: 2,
                    info: 3,
                    ok: 4,
                    warning: 5,
                },
                rule: "top_combined".into(),
                template_errors: 6,
            }],
            datagrams_kernel: 7,
            datagrams_userspace: 8,
            dropped: [("parse_error", 9), ("evicted", 0)]
                .map(|(k, v)| (k.to_string(), v))
                .into(),
            kernel: Some(KernelStats {
                last_drain_keys: Some(10),
                last_drain_seconds: Some(0.25),
                passed_to_userspace: [("escape".to_string(), 11)].into(),
                setup: Some(KernelSetup {
                    attach: "socket_filter".into(),
                    interface: None,
                    map_entries: 65536,
                    pin_dir: Some("/sys/fs/bpf/toptraffic".into()),
                    userspace_rules: vec![("top_sum".into(), "sum".into())],
                }),
            }),
            last_rotation_seconds: 0.0,
            listen: "127.0.0.1:8094".into(),
            mode: "kernel".into(),
            mode_reason: "requested".into(),
            mode_requested: "auto".into(),
            points_kernel: 12,
            points_userspace: 13,
            reloads: Reloads {
                failed: 0,
                last: Some(LastReload {
                    message: "2 rules".into(),
                    ok: true,
                    time: "2026-11-25T10:00:00Z".into(),
                }),
                ok: 1,
            },
            rotations: 14,
            rules: vec![RuleStats {
                keys: 15,
                name: "top_combined".into(),
                cluster: None,
                overflow: None,
                overflow_lines: 16,
            }],
            sinks: vec![SinkStats {
                dropped: 17,
                failed: 18,
                kind: "slack".into(),
                name: "ops".into(),
                queue_len: 19,
                queued: 20,
                retries: 21,
                sent: 22,
            }],
            uptime_s: 23,
            window_end: None,
        }
    }

    #[test]
    fn writes_every_field_with_sorted_keys() {
        let text = serde_json::to_string(&stats()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"alerts":[{"block":"pager","eval_errors":1,"#,
                r#""events":{"CRITICAL":2,"INFO":3,"OK":4,"WARNING":5},"#,
                r#""rule":"top_combined","template_errors":6}],"#,
                r#""datagrams_kernel":7,"datagrams_userspace":8,"#,
                r#""dropped":{"evicted":0,"parse_error":9},"#,
                r#""kernel":{"last_drain_keys":10,"last_drain_seconds":0.25,"#,
                r#""passed_to_userspace":{"escape":11},"#,
                r#""setup":{"attach":"socket_filter","interface":null,"map_entries":65536,"#,
                r#""pin_dir":"/sys/fs/bpf/toptraffic","userspace_rules":[["top_sum","sum"]]}},"#,
                r#""last_rotation_seconds":0.0,"listen":"127.0.0.1:8094","#,
                r#""mode":"kernel","mode_reason":"requested","mode_requested":"auto","#,
                r#""points_kernel":12,"points_userspace":13,"#,
                r#""reloads":{"failed":0,"last":{"message":"2 rules","ok":true,"#,
                r#""time":"2026-11-25T10:00:00Z"},"ok":1},"#,
                r#""rotations":14,"rules":[{"keys":15,"name":"top_combined","overflow_lines":16}],"#,
                r#""sinks":[{"dropped":17,"failed":18,"kind":"slack","name":"ops","#,
                r#""queue_len":19,"queued":20,"retries":21,"sent":22}],"#,
                r#""uptime_s":23,"window_end":null}"#
            )
        );
        assert_eq!(serde_json::from_str::<Stats>(&text).unwrap(), stats());
    }

    /// The keys come out as a sorted map would write them, at every level.
    #[test]
    fn keys_are_in_the_order_of_a_sorted_map() {
        let typed = serde_json::to_string(&stats()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&typed).unwrap();
        assert_eq!(typed, value.to_string());
    }

    #[test]
    fn a_userspace_daemon_has_no_kernel_and_no_reload_yet() {
        let s = Stats {
            kernel: None,
            reloads: Reloads::default(),
            ..stats()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""kernel":null,"#), "{text}");
        assert!(text.contains(r#""reloads":{"failed":0,"last":null,"ok":0}"#));
        assert_eq!(serde_json::from_str::<Stats>(&text).unwrap(), s);
    }
}
