//! The validated configuration: the types every other module reads.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::sinks::SinkConfig;
use crate::alert::state::Settings;
use crate::alert::template::Template;
use crate::alert::tick::Expr;

/// A configuration error, positioned in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name (or the embedded default's name).
    pub source: String,
    /// 1-based line, when the error has a place.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.source, line, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Which ingest path counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The kernel path when it loads, else userspace.
    #[default]
    Auto,
    /// The kernel path or fail.
    Kernel,
    /// Userspace only.
    Userspace,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "kernel" => Ok(Mode::Kernel),
            "userspace" => Ok(Mode::Userspace),
            _ => Err(format!(
                "unknown mode {s:?}; expected auto, kernel or userspace"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Kernel => "kernel",
            Mode::Userspace => "userspace",
        })
    }
}

/// What a rule adds up per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregate {
    /// Number of lines.
    Count,
    /// Sum of a numeric field.
    Sum { field: String },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub ingest: Ingest,
    pub http: Http,
    pub window: Window,
    pub state: State,
    /// The nodes sharing counts through Redis; None: this node alone.
    pub cluster: Option<Cluster>,
    pub rules: Vec<Rule>,
    /// Where the config came from (file name or DEFAULT_CONFIG_NAME), for
    /// messages.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingest {
    pub listen: SocketAddr,
    pub mode: Mode,
    /// SO_RCVBUF asked for each socket, in bytes.
    pub recv_buffer: usize,
    /// Largest datagram accepted whole; longer ones are dropped as oversize.
    pub max_datagram: usize,
    /// Receive threads (one SO_REUSEPORT socket each); 0 means one per CPU.
    pub threads: usize,
    /// Count with XDP on this interface instead of a socket filter.
    pub xdp_interface: Option<String>,
    pub xdp_mode: XdpMode,
    /// Where the kernel path pins its maps; None: no pins.
    pub pin_dir: Option<std::path::PathBuf>,
}

/// How the XDP program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native when the driver supports it, else generic.
    #[default]
    Auto,
    /// Generic (in the stack, any interface; slower).
    Skb,
    /// Native, in the driver.
    Driver,
}

impl XdpMode {
    /// The name a config writes (`auto`, `skb`, `driver`).
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Skb => "skb",
            XdpMode::Driver => "driver",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// The API, /metrics and /healthz.
    pub listen: SocketAddr,
    /// Also serve /metrics and /healthz (only) here, e.g. on the node's
    /// address for Prometheus and the kubelet, while the API stays on
    /// loopback.
    pub metrics_listen: Option<SocketAddr>,
    /// Accept POST /api/v1/reload (SIGHUP always reloads).
    pub reload: bool,
}

/// Where the window and alert states survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Written on SIGTERM, read at start when younger than the window.
    pub path: Option<std::path::PathBuf>,
}

/// `[cluster]`: where the nodes of an ingress tier meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `redis://` or `rediss://` URLs (with AUTH as `redis://user:pass@`):
    /// one server, or several seed nodes of a Redis Cluster.
    pub redis: Vec<String>,
    /// This node's name among them (default: the host name).
    pub node: String,
    /// The longest any exchange with Redis may take.
    pub timeout: Duration,
    /// What every key in Redis starts with, in braces: one hash slot in a
    /// Redis Cluster.
    pub key_prefix: String,
    /// The exact cluster-wide top this many keys per rule, each interval
    /// (TPUT's first phase); 0: only the keys that can reach the rule's
    /// threshold.
    pub top: usize,
}

/// Whether a rule's values are this node's or the cluster's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Node,
    Cluster,
}

/// The sliding window: `period` long, re-evaluated every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub period: Duration,
    pub every: Duration,
}

impl Window {
    /// Intervals in the ring (period / every).
    pub fn intervals(&self) -> usize {
        (self.period.as_nanos() / self.every.as_nanos()) as usize
    }
}

/// One counting rule, like one Kapacitor task.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub measurement: String,
    /// Tag equality filters: a line counts only when every one holds.
    pub filters: Vec<(String, String)>,
    pub group_by: Vec<String>,
    pub aggregate: Aggregate,
    /// Name of the result (Kapacitor's `.as()`).
    pub as_name: String,
    /// Most keys held for the rule, in each interval and in the window.
    pub max_keys: usize,
    /// Longest key held as it is; a longer one is counted under its bounded
    /// form (`key::bound`), so that a key costs at most this many bytes.
    pub max_key_bytes: usize,
    /// The approximate tier for keys beyond max_keys; None when disabled.
    pub overflow: Option<Overflow>,
    /// `cluster` (the default with `[cluster]`) or `node`.
    pub scope: Scope,
    /// For a cluster rule with alert blocks: the lowest value they compare
    /// with (as `promote_at` is derived). A key under it on every node
    /// can reach it in the cluster only if some node holds at least it / N
    /// of it (N nodes): the nodes exchange those keys' values alone.
    pub cluster_threshold: Option<f64>,
    /// Compiled once, here; shared with the alert engine.
    pub alerts: Vec<Arc<AlertBlock>>,
}

/// A rule's approximate tier: a ring of Count-Min sketches (one per
/// interval) counts the keys the exact table has no room for, and a key
/// whose estimate over the window reaches `promote_at` takes the place of
/// the exact key with the smallest value.
#[derive(Debug, Clone, PartialEq)]
pub struct Overflow {
    /// An estimate exceeds the truth by at most `error` × the amounts the
    /// sketches hold over the window ...
    pub error: f64,
    /// ... with this probability.
    pub confidence: f64,
    /// The estimate at which a key is promoted; None for a rule without
    /// alert blocks, whose keys are promoted when they outgrow the smallest
    /// exact key.
    pub promote_at: Option<f64>,
    /// Where `promote_at` came from, for `toptraffic check`.
    pub promote_from: PromoteFrom,
}

/// Where a rule's promotion threshold came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteFrom {
    /// `promote_at` in the config.
    Configured,
    /// The lowest number an alert lambda compares the value against: the
    /// block's name and the level (`info`, `warn`, `crit`).
    Alert { block: String, level: &'static str },
    /// No alert block: promoted when outgrowing the smallest exact key.
    SmallestExact,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "overflow sketch error {} at confidence {}, ",
            self.error, self.confidence
        )?;
        match (&self.promote_from, self.promote_at) {
            (PromoteFrom::Configured, Some(t)) => write!(f, "promote_at {t} (configured)"),
            (PromoteFrom::Alert { block, level }, Some(t)) => {
                write!(f, "promote_at {t} (from alert {block:?} {level})")
            }
            _ => f.write_str("promoted past the smallest exact key (no alert block)"),
        }
    }
}

impl Rule {
    /// What the rule counts and how it groups.
    pub fn grouping(&self) -> Grouping<'_> {
        Grouping {
            measurement: &self.measurement,
            filters: &self.filters,
            group_by: &self.group_by,
            aggregate: &self.aggregate,
            max_key_bytes: self.max_key_bytes,
        }
    }
}

/// What a rule counts and how it groups: two rules with the same grouping
/// produce the same keys from the same lines, so a reload or a restart may
/// carry one's counts over to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping<'a> {
    measurement: &'a str,
    filters: &'a [(String, String)],
    group_by: &'a [String],
    aggregate: &'a Aggregate,
    /// Another bound makes other keys of the same lines.
    max_key_bytes: usize,
}

impl Grouping<'_> {
    /// A stable text form, for the state file: it is made of what the user
    /// wrote, each name quoted as a JSON string so that none can forge a
    /// separator, and never of a derived format that a refactor could
    /// change.
    pub fn key(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(",");
        let filters = list(
            &mut self
                .filters
                .iter()
                .map(|(k, v)| format!("{}={}", q(k), q(v))),
        );
        let group_by = list(&mut self.group_by.iter().map(|g| q(g)));
        let aggregate = match self.aggregate {
            Aggregate::Count => "count".to_string(),
            Aggregate::Sum { field } => format!("sum({})", q(field)),
        };
        // Written only when not 128: state files from before keys were
        // bounded, when every key was kept whole, still match the default
        // (the restore leaves out their keys over the bound).
        let bound = match self.max_key_bytes {
            128 => String::new(),
            n => format!(";max_key_bytes={n}"),
        };
        format!(
            "measurement={};where={filters};group_by={group_by};aggregate={aggregate}{bound}",
            q(self.measurement)
        )
    }
}

/// One alert node of a rule (Kapacitor's `|alert()`), validated and
/// compiled: the alert engine runs it as it is.
#[derive(Debug)]
pub struct AlertBlock {
    /// Shown in logs and the API: the block's `name`, or its position (`#1`).
    pub name: String,
    /// The info, warn and crit lambdas, in that order.
    pub levels: [Option<Expr>; 3],
    /// Flapping, history, stateChangesOnly and noRecoveries.
    pub settings: Settings,
    pub id: Template,
    pub message: Template,
    /// Rendered with html/template, as Kapacitor does.
    pub details: Template,
    /// Every sink the block names: log, exec, slack, each http, alertmanager.
    pub sinks: Vec<SinkConfig>,
}

/// Options from the command line that override the config.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub mode: Option<Mode>,
    pub listen: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

impl Overrides {
    /// Writes the overrides into `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(m) = self.mode {
            config.ingest.mode = m;
        }
        if let Some(a) = self.listen {
            config.ingest.listen = a;
        }
        if let Some(a) = self.http {
            config.http.listen = a;
        }
    }
}
