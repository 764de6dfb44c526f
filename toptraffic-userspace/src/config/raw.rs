//! The TOML as written: serde's view of a config file, before validation.
//!
//! Only validation reads these types; every position an error may need is
//! kept as a span.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::schema::{Mode, XdpMode};
use super::sinks::{AlertmanagerSink, ExecSink, HttpSink, LogSink, SinkConfig, SlackSink};
use super::units::de_opt_bytes;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) ingest: RawIngest,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) window: RawWindow,
    #[serde(default)]
    pub(super) state: RawState,
    pub(super) cluster: Option<Spanned<RawCluster>>,
    #[serde(default, rename = "rule")]
    pub(super) rules: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIngest {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) mode: Option<Mode>,
    #[serde(default, deserialize_with = "de_opt_bytes")]
    pub(super) recv_buffer: Option<u64>,
    pub(super) max_datagram: Option<Spanned<usize>>,
    pub(super) threads: Option<Spanned<usize>>,
    pub(super) xdp_interface: Option<String>,
    pub(super) xdp_mode: Option<XdpMode>,
    pub(super) pin_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) metrics_listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) reload: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) path: Option<String>,
}

/// `[cluster]`: the nodes that share their counts through Redis.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) redis: Spanned<RedisUrls>,
    pub(super) node: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) key_prefix: Option<Spanned<String>>,
    pub(super) top: Option<Spanned<i64>>,
}

/// One Redis server, or the seed nodes of a Redis Cluster.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RedisUrls {
    One(String),
    Seeds(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub(super) period: Option<Spanned<String>>,
    pub(super) every: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Spanned<String>,
    pub(super) measurement: Spanned<String>,
    #[serde(default, rename = "where")]
    pub(super) filters: BTreeMap<String, String>,
    pub(super) group_by: Spanned<Vec<String>>,
    #[serde(default)]
    pub(super) aggregate: Option<Spanned<String>>,
    pub(super) field: Option<Spanned<String>>,
    #[serde(rename = "as")]
    pub(super) as_name: Option<String>,
    pub(super) max_keys: Option<Spanned<usize>>,
    pub(super) max_key_bytes: Option<Spanned<usize>>,
    pub(super) overflow: Option<Spanned<RawOverflow>>,
    /// "cluster" or "node".
    pub(super) scope: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) alert: Vec<RawAlertBlock>,
}

/// `[rule.overflow]`: the approximate tier for the keys beyond max_keys.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverflow {
    pub(super) enabled: Option<bool>,
    pub(super) error: Option<Spanned<f64>>,
    pub(super) confidence: Option<Spanned<f64>>,
    pub(super) promote_at: Option<Spanned<f64>>,
}

/// One alert node of a rule as written; validation compiles it into an
/// [`AlertBlock`](super::AlertBlock).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlertBlock {
    /// Shown in logs and the API; defaults to the block's position.
    pub(super) name: Option<Spanned<String>>,
    pub(super) info: Option<Spanned<String>>,
    pub(super) warn: Option<Spanned<String>>,
    pub(super) crit: Option<Spanned<String>>,
    /// `[low, high]`, as Kapacitor's `.flapping(low, high)`.
    pub(super) flapping: Option<Spanned<[f64; 2]>>,
    /// Levels remembered for flapping (Kapacitor's `.history(n)`).
    pub(super) history: Option<Spanned<usize>>,
    /// `true`, or a duration after which an unchanged non-OK level is re-sent.
    pub(super) state_changes_only: Option<Spanned<StateChangesOnly>>,
    #[serde(default)]
    pub(super) no_recoveries: bool,
    pub(super) id: Option<Spanned<String>>,
    pub(super) message: Option<Spanned<String>>,
    pub(super) details: Option<Spanned<String>>,
    pub(super) log: Option<LogSink>,
    pub(super) exec: Option<ExecSink>,
    pub(super) slack: Option<SlackSink>,
    #[serde(default)]
    pub(super) http: Vec<HttpSink>,
    pub(super) alertmanager: Option<AlertmanagerSink>,
}

/// `state_changes_only = true` or `= "5m"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub(super) enum StateChangesOnly {
    Enabled(bool),
    Every(String),
}

impl RawAlertBlock {
    /// Every sink the block names: log, exec, slack, each http, alertmanager.
    pub(super) fn sinks(&self) -> Vec<SinkConfig> {
        let mut sinks = Vec::new();
        sinks.extend(self.log.clone().map(SinkConfig::Log));
        sinks.extend(self.exec.clone().map(SinkConfig::Exec));
        sinks.extend(self.slack.clone().map(SinkConfig::Slack));
        sinks.extend(self.http.iter().cloned().map(SinkConfig::Http));
        sinks.extend(self.alertmanager.clone().map(SinkConfig::Alertmanager));
        sinks
    }
}
