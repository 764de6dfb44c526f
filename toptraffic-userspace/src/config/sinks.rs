//! The alert sinks' settings, as written under an alert block.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::defaults;
use super::units::{de_bytes, de_duration};

/// Options every sink shares: queueing, concurrency, timeout and retries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkOptions {
    #[serde(default = "defaults::sink_queue")]
    pub queue: usize,
    #[serde(default = "defaults::sink_concurrency")]
    pub concurrency: usize,
    #[serde(default = "defaults::sink_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    #[serde(default = "defaults::sink_retries")]
    pub retries: u32,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            queue: defaults::sink_queue(),
            concurrency: defaults::sink_concurrency(),
            timeout: defaults::sink_timeout(),
            retries: defaults::sink_retries(),
        }
    }
}

/// Alert JSON lines to a file or, with path "-", to stdout.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSink {
    pub path: String,
    /// Rotate the file when it grows past this many bytes.
    #[serde(default = "defaults::log_max_size", deserialize_with = "de_bytes")]
    pub max_size: u64,
    /// Rotated files kept (`alerts.log.1` ...).
    #[serde(default = "defaults::log_max_files")]
    pub max_files: u32,
    #[serde(default)]
    pub options: Option<SinkOptions>,
}

/// A command run per alert with the alert JSON on stdin.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecSink {
    /// Program and arguments.
    pub command: Vec<String>,
    #[serde(default)]
    pub options: Option<SinkOptions>,
}

/// A Slack incoming webhook.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlackSink {
    pub url: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default = "defaults::slack_username")]
    pub username: String,
    #[serde(default)]
    pub icon_emoji: String,
    #[serde(default)]
    pub options: Option<SinkOptions>,
}

/// An HTTP POST of the alert JSON.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub options: Option<SinkOptions>,
}

/// Prometheus Alertmanager, API v2.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSink {
    /// Base URL, e.g. `http://127.0.0.1:9093`.
    pub url: String,
    /// Extra labels on every alert.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: Option<SinkOptions>,
}

/// One sink's configuration, whichever kind it is.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    Log(LogSink),
    Exec(ExecSink),
    Slack(SlackSink),
    Http(HttpSink),
    Alertmanager(AlertmanagerSink),
}

impl SinkConfig {
    /// `log`, `exec`, `slack`, `http` or `alertmanager`: the metrics' `kind` label.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Log(_) => "log",
            SinkConfig::Exec(_) => "exec",
            SinkConfig::Slack(_) => "slack",
            SinkConfig::Http(_) => "http",
            SinkConfig::Alertmanager(_) => "alertmanager",
        }
    }

    /// The delivery options, or the defaults when the sink sets none.
    pub fn options(&self) -> SinkOptions {
        let options = match self {
            SinkConfig::Log(c) => &c.options,
            SinkConfig::Exec(c) => &c.options,
            SinkConfig::Slack(c) => &c.options,
            SinkConfig::Http(c) => &c.options,
            SinkConfig::Alertmanager(c) => &c.options,
        };
        options.clone().unwrap_or_default()
    }
}
