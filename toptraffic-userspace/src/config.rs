//! The TOML configuration: schema, defaults in one place, and validation whose
//! errors name the file, the line and the field.
//!
//! [`Config::parse`] turns text into a validated [`Config`]; nothing else in
//! the daemon sees the raw TOML types.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The embedded default: the seed's three Kapacitor tasks as rules.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");
/// Name shown in errors and logs for the embedded default.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default>";

/// Largest UDP payload over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// A configuration error, positioned in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name (or [`DEFAULT_CONFIG_NAME`]).
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
    pub rules: Vec<Rule>,
    /// Where the config came from (file name or DEFAULT_CONFIG_NAME) and its
    /// text, so that later stages (alert compilation) can name lines too.
    pub source: String,
    pub text: String,
}

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Written on SIGTERM, read at start when younger than the window.
    pub path: Option<std::path::PathBuf>,
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
    pub alerts: Vec<AlertBlock>,
}

impl Rule {
    /// What the rule counts and how it groups: two rules with the same
    /// grouping produce the same keys from the same lines, so a reload or a
    /// restart may carry one's counts over to the other.
    pub fn grouping(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}",
            self.measurement, self.filters, self.group_by, self.aggregate
        )
    }
}

/// One alert node of a rule. Parsed and checked for shape here; expressions
/// and templates are compiled by the alert engine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertBlock {
    /// Shown in logs and the API; defaults to the block's position.
    pub name: Option<String>,
    pub info: Option<Spanned<String>>,
    pub warn: Option<Spanned<String>>,
    pub crit: Option<Spanned<String>>,
    /// `[low, high]`, as Kapacitor's `.flapping(low, high)`.
    pub flapping: Option<Spanned<[f64; 2]>>,
    /// Levels remembered for flapping (Kapacitor's `.history(n)`).
    pub history: Option<Spanned<usize>>,
    /// `true`, or a duration after which an unchanged non-OK level is re-sent.
    pub state_changes_only: Option<Spanned<StateChangesOnly>>,
    #[serde(default)]
    pub no_recoveries: bool,
    pub id: Option<Spanned<String>>,
    pub message: Option<Spanned<String>>,
    pub details: Option<Spanned<String>>,
    pub log: Option<LogSink>,
    pub exec: Option<ExecSink>,
    pub slack: Option<SlackSink>,
    #[serde(default)]
    pub http: Vec<HttpSink>,
    pub alertmanager: Option<AlertmanagerSink>,
}

/// `state_changes_only = true` or `= "5m"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StateChangesOnly {
    Enabled(bool),
    Every(String),
}

/// Options every sink shares: queueing, concurrency, timeout and retries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkOptions {
    #[serde(default = "defaults::sink_queue")]
    pub queue: usize,
    #[serde(default = "defaults::sink_concurrency")]
    pub concurrency: usize,
    #[serde(default = "defaults::sink_timeout", with = "humantime_serde")]
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

/// Defaults, written once.
pub mod defaults {
    use std::time::Duration;

    pub const LISTEN: &str = "127.0.0.1:9100";
    pub const HTTP_LISTEN: &str = "127.0.0.1:9101";
    pub const RECV_BUFFER: usize = 64 << 20;
    pub const MAX_DATAGRAM: usize = 8192;
    pub const PERIOD: Duration = Duration::from_secs(60);
    pub const EVERY: Duration = Duration::from_secs(5);
    pub const MAX_KEYS: usize = 200_000;
    pub const PIN_DIR: &str = "/sys/fs/bpf/toptraffic";

    pub fn sink_queue() -> usize {
        1024
    }
    pub fn sink_concurrency() -> usize {
        4
    }
    pub fn sink_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn sink_retries() -> u32 {
        3
    }
    pub fn log_max_size() -> u64 {
        100 << 20
    }
    pub fn log_max_files() -> u32 {
        5
    }
    pub fn slack_username() -> String {
        "kapacitor".to_string()
    }
}

mod humantime_serde {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Durations as `"5s"`, `"1m"`, `"1m30s"`; zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("bad duration {s:?} ({e}); write e.g. \"5s\", \"1m\", \"2m30s\""))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be more than zero"));
    }
    Ok(d)
}

/// Byte sizes as an integer or a string with a binary suffix (`"64MiB"`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?}; write e.g. 65536, \"512KiB\", \"64MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return Err(format!("bad size unit in {s:?}; use B, KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawBytes {
    Int(u64),
    Str(String),
}

fn de_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match RawBytes::deserialize(d)? {
        RawBytes::Int(n) => Ok(n),
        RawBytes::Str(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

// ---- The raw TOML shape ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    ingest: RawIngest,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    window: RawWindow,
    #[serde(default)]
    state: RawState,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    listen: Option<Spanned<String>>,
    mode: Option<Mode>,
    #[serde(default, deserialize_with = "de_opt_bytes")]
    recv_buffer: Option<u64>,
    max_datagram: Option<Spanned<usize>>,
    threads: Option<usize>,
    xdp_interface: Option<String>,
    xdp_mode: Option<XdpMode>,
    pin_dir: Option<String>,
}

fn de_opt_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_bytes(d).map(Some)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    #[serde(default)]
    reload: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawState {
    path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    period: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    measurement: Spanned<String>,
    #[serde(default, rename = "where")]
    filters: BTreeMap<String, String>,
    group_by: Spanned<Vec<String>>,
    #[serde(default)]
    aggregate: Option<Spanned<String>>,
    field: Option<Spanned<String>>,
    #[serde(rename = "as")]
    as_name: Option<String>,
    max_keys: Option<Spanned<usize>>,
    #[serde(default)]
    alert: Vec<AlertBlock>,
}

/// Maps byte offsets to 1-based lines.
struct Source<'a> {
    name: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
            + 1
    }

    fn at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            source: self.name.to_string(),
            line: Some(self.line(&span)),
            message: message.into(),
        }
    }

    fn nowhere(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            source: self.name.to_string(),
            line: None,
            message: message.into(),
        }
    }
}

impl Config {
    /// The embedded default configuration.
    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME)
            .expect("the embedded default config is valid (tested)")
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: name.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &name)
    }

    /// Parses and validates config text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let src = Source { name, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            match e.span() {
                Some(span) => src.at(span, message),
                None => src.nowhere(message),
            }
        })?;
        validate(raw, &src)
    }
}

fn socket_addr(
    src: &Source<'_>,
    field: &str,
    v: &Spanned<String>,
) -> Result<SocketAddr, ConfigError> {
    v.get_ref().parse().map_err(|_| {
        src.at(
            v.span(),
            format!(
                "{field} = {:?} is not an address; write ip:port, e.g. \"127.0.0.1:9100\"",
                v.get_ref()
            ),
        )
    })
}

fn duration(src: &Source<'_>, field: &str, v: &Spanned<String>) -> Result<Duration, ConfigError> {
    parse_duration(v.get_ref()).map_err(|e| src.at(v.span(), format!("{field}: {e}")))
}

fn validate(raw: RawConfig, src: &Source<'_>) -> Result<Config, ConfigError> {
    let ingest = Ingest {
        listen: match &raw.ingest.listen {
            Some(v) => socket_addr(src, "ingest.listen", v)?,
            None => defaults::LISTEN.parse().expect("valid default"),
        },
        mode: raw.ingest.mode.unwrap_or_default(),
        recv_buffer: raw
            .ingest
            .recv_buffer
            .map(|b| b as usize)
            .unwrap_or(defaults::RECV_BUFFER),
        max_datagram: match &raw.ingest.max_datagram {
            Some(v) if *v.get_ref() < 64 || *v.get_ref() > MAX_UDP_PAYLOAD => {
                return Err(src.at(
                    v.span(),
                    format!(
                    "ingest.max_datagram = {} is out of range; accepted: 64 to {MAX_UDP_PAYLOAD}",
                    v.get_ref()
                ),
                ))
            }
            Some(v) => *v.get_ref(),
            None => defaults::MAX_DATAGRAM,
        },
        threads: raw.ingest.threads.unwrap_or(0),
        xdp_interface: raw.ingest.xdp_interface.filter(|s| !s.is_empty()),
        xdp_mode: raw.ingest.xdp_mode.unwrap_or_default(),
        pin_dir: match raw.ingest.pin_dir.as_deref() {
            None => Some(defaults::PIN_DIR.into()),
            Some("") => None,
            Some(p) => Some(p.into()),
        },
    };
    let http = Http {
        listen: match &raw.http.listen {
            Some(v) => socket_addr(src, "http.listen", v)?,
            None => defaults::HTTP_LISTEN.parse().expect("valid default"),
        },
        metrics_listen: match &raw.http.metrics_listen {
            Some(v) if !v.get_ref().is_empty() => Some(socket_addr(src, "http.metrics_listen", v)?),
            _ => None,
        },
        reload: raw.http.reload,
    };
    let state = State {
        path: raw.state.path.filter(|p| !p.is_empty()).map(Into::into),
    };
    let period = match &raw.window.period {
        Some(v) => duration(src, "window.period", v)?,
        None => defaults::PERIOD,
    };
    let every = match &raw.window.every {
        Some(v) => duration(src, "window.every", v)?,
        None => defaults::EVERY,
    };
    if every.subsec_nanos() % 1_000_000 != 0 {
        let span = raw.window.every.as_ref().map(|v| v.span()).unwrap_or(0..0);
        return Err(src.at(span, "window.every must be a whole number of milliseconds"));
    }
    if period.as_nanos() % every.as_nanos() != 0 {
        let span = raw
            .window
            .every
            .as_ref()
            .or(raw.window.period.as_ref())
            .map(|v| v.span())
            .unwrap_or(0..0);
        return Err(src.at(
            span,
            format!(
                "window.every = {:?} does not divide window.period = {:?}; period must be a multiple of every",
                humantime::format_duration(every).to_string(),
                humantime::format_duration(period).to_string()
            ),
        ));
    }
    let window = Window { period, every };
    if window.intervals() > 10_000 {
        return Err(src.nowhere(format!(
            "window.period / window.every = {} intervals; at most 10000 are kept",
            window.intervals()
        )));
    }

    if raw.rules.is_empty() {
        return Err(src.nowhere("no [[rule]]: nothing would be counted"));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    for r in raw.rules {
        rules.push(validate_rule(r, src, &rules)?);
    }
    let config = Config {
        ingest,
        http,
        window,
        state,
        rules,
        source: src.name.to_string(),
        text: src.text.to_string(),
    };
    // Expressions and templates: compiled here too, so that `check` and a
    // reload report them with their line.
    for r in &config.rules {
        crate::alert::engine::compile_rule(r, src.name, src.text, |_, _| Vec::new())?;
    }
    Ok(config)
}

fn validate_rule(r: RawRule, src: &Source<'_>, earlier: &[Rule]) -> Result<Rule, ConfigError> {
    let name = r.name.get_ref().clone();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(src.at(
            r.name.span(),
            format!("rule name {name:?} must be non-empty letters, digits, '_', '-' or '.'"),
        ));
    }
    if earlier.iter().any(|e| e.name == name) {
        return Err(src.at(r.name.span(), format!("duplicate rule name {name:?}")));
    }
    let ctx = |msg: String| format!("rule {name:?}: {msg}");
    if r.measurement.get_ref().is_empty() {
        return Err(src.at(r.measurement.span(), ctx("measurement is empty".into())));
    }
    let group_by = r.group_by.get_ref().clone();
    if group_by.is_empty() {
        return Err(src.at(
            r.group_by.span(),
            ctx("group_by is empty; name at least one tag, e.g. [\"ip\", \"id\"]".into()),
        ));
    }
    if group_by.len() > crate::rules::MAX_RULE_TAGS || r.filters.len() > crate::rules::MAX_RULE_TAGS
    {
        return Err(src.at(
            r.group_by.span(),
            ctx(format!(
                "at most {} group_by tags and {} where filters",
                crate::rules::MAX_RULE_TAGS,
                crate::rules::MAX_RULE_TAGS
            )),
        ));
    }
    for (i, t) in group_by.iter().enumerate() {
        if t.is_empty() {
            return Err(src.at(
                r.group_by.span(),
                ctx("group_by has an empty tag name".into()),
            ));
        }
        if group_by[..i].contains(t) {
            return Err(src.at(
                r.group_by.span(),
                ctx(format!("group_by names {t:?} twice")),
            ));
        }
    }
    let aggregate = match (r.aggregate.as_ref().map(|a| a.get_ref().as_str()), &r.field) {
        (None | Some("sum"), Some(f)) if !f.get_ref().is_empty() => Aggregate::Sum {
            field: f.get_ref().clone(),
        },
        (Some("sum"), _) | (None, Some(_)) => {
            let span = r
                .field
                .as_ref()
                .map(|f| f.span())
                .or(r.aggregate.as_ref().map(|a| a.span()))
                .unwrap_or(r.name.span());
            return Err(src.at(
                span,
                ctx("aggregate = \"sum\" needs field = \"<numeric field>\", e.g. \"count\"".into()),
            ));
        }
        (None | Some("count"), None) => Aggregate::Count,
        (Some("count"), Some(f)) => {
            return Err(src.at(
                f.span(),
                ctx("aggregate = \"count\" counts lines and takes no field; remove field or use aggregate = \"sum\"".into()),
            ))
        }
        (Some(other), _) => {
            return Err(src.at(
                r.aggregate.as_ref().expect("matched Some").span(),
                ctx(format!("aggregate = {other:?}; accepted: \"count\", \"sum\"")),
            ))
        }
    };
    let as_name = r.as_name.unwrap_or_else(|| match aggregate {
        Aggregate::Count => "count".into(),
        Aggregate::Sum { .. } => "sum".into(),
    });
    let max_keys = match &r.max_keys {
        Some(v) if *v.get_ref() == 0 || *v.get_ref() > 100_000_000 => {
            return Err(src.at(
                v.span(),
                ctx(format!(
                    "max_keys = {} is out of range; accepted: 1 to 100000000",
                    v.get_ref()
                )),
            ))
        }
        Some(v) => *v.get_ref(),
        None => defaults::MAX_KEYS,
    };
    if !r.alert.is_empty() && group_by.contains(&as_name) {
        return Err(src.at(
            r.name.span(),
            ctx(format!(
                "as = {as_name:?} is also a group_by tag: alert expressions could not tell them apart (Kapacitor refuses a field and a tag of one name)"
            )),
        ));
    }
    for (i, a) in r.alert.iter().enumerate() {
        validate_alert_shape(a, i, &name, src)?;
    }
    Ok(Rule {
        name,
        measurement: r.measurement.into_inner(),
        filters: r.filters.into_iter().collect(),
        group_by,
        aggregate,
        as_name,
        max_keys,
        alerts: r.alert,
    })
}

/// Checks what can be checked without compiling expressions and templates.
fn validate_alert_shape(
    a: &AlertBlock,
    index: usize,
    rule: &str,
    src: &Source<'_>,
) -> Result<(), ConfigError> {
    let block = a.name.clone().unwrap_or_else(|| format!("#{}", index + 1));
    let ctx = |msg: &str| format!("rule {rule:?} alert {block:?}: {msg}");
    if a.info.is_none() && a.warn.is_none() && a.crit.is_none() {
        return Err(src.nowhere(ctx("needs at least one of info, warn, crit")));
    }
    if let Some(f) = &a.flapping {
        let [low, high] = *f.get_ref();
        if !(0.0..=1.0).contains(&low) || !(0.0..=1.0).contains(&high) || low > high {
            return Err(src.at(
                f.span(),
                ctx("flapping = [low, high] needs 0 <= low <= high <= 1"),
            ));
        }
    }
    if let Some(h) = &a.history {
        if *h.get_ref() < 2 {
            return Err(src.at(h.span(), ctx("history must be at least 2")));
        }
    }
    if let Some(s) = &a.state_changes_only {
        if let StateChangesOnly::Every(d) = s.get_ref() {
            parse_duration(d)
                .map_err(|e| src.at(s.span(), ctx(&format!("state_changes_only: {e}"))))?;
        }
    }
    if let Some(e) = &a.exec {
        if e.command.is_empty() || e.command[0].is_empty() {
            return Err(src.nowhere(ctx("exec.command needs a program")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    const RULE: &str = "[[rule]]\nname = \"r\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\n";

    #[test]
    fn embedded_default_runs_the_seed_tasks() {
        let c = Config::embedded_default();
        let names: Vec<_> = c.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["top_combined", "top_ips", "top_stores"]);
        let combined = &c.rules[0];
        assert_eq!(combined.measurement, "combined");
        assert_eq!(combined.group_by, ["ip", "id"]);
        assert_eq!(
            combined.aggregate,
            Aggregate::Sum {
                field: "count".into()
            }
        );
        assert_eq!(combined.as_name, "totalCount");
        assert_eq!(c.rules[1].group_by, ["ip"]);
        assert_eq!(c.rules[2].group_by, ["id"]);
        assert_eq!(c.window.period, Duration::from_secs(60));
        assert_eq!(c.window.every, Duration::from_secs(5));
        assert_eq!(c.window.intervals(), 12);
        assert_eq!(c.ingest.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:9101");
        assert_eq!(c.ingest.mode, Mode::Auto);
        for r in &c.rules {
            assert!(!r.alerts.is_empty(), "{} has an alert block", r.name);
        }
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../config/example.toml");
        let c = Config::parse(text, "example.toml").unwrap();
        assert!(!c.rules.is_empty());
    }

    #[test]
    fn unknown_key_names_line_and_field() {
        let e = err("[window]\nperiod = \"1m\"\nevry = \"5s\"\n");
        assert!(e.starts_with("t.toml:3: "), "{e}");
        assert!(e.contains("evry"), "{e}");
    }

    #[test]
    fn bad_duration_names_the_field() {
        let e = err(&format!("[window]\nperiod = \"1 fortnight\"\n{RULE}"));
        assert!(
            e.starts_with("t.toml:2: window.period: bad duration"),
            "{e}"
        );
    }

    #[test]
    fn period_must_be_a_multiple_of_every() {
        let e = err(&format!(
            "[window]\nperiod = \"1m\"\nevery = \"7s\"\n{RULE}"
        ));
        assert!(
            e.starts_with("t.toml:3: window.every = \"7s\" does not divide"),
            "{e}"
        );
    }

    #[test]
    fn empty_group_by_is_refused() {
        let e = err("[[rule]]\nname = \"r\"\nmeasurement = \"m\"\ngroup_by = []\n");
        assert!(
            e.starts_with("t.toml:4: rule \"r\": group_by is empty"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_rule_names_are_refused() {
        let e = err(&format!("{RULE}\n{RULE}"));
        assert!(e.starts_with("t.toml:7: duplicate rule name \"r\""), "{e}");
    }

    #[test]
    fn sum_needs_a_field_and_count_takes_none() {
        let e = err(&format!("{RULE}aggregate = \"sum\"\n"));
        assert!(e.contains("needs field"), "{e}");
        let e = err(&format!("{RULE}aggregate = \"count\"\nfield = \"x\"\n"));
        assert!(e.starts_with("t.toml:6: "), "{e}");
        let e = err(&format!("{RULE}aggregate = \"avg\"\n"));
        assert!(e.contains("accepted: \"count\", \"sum\""), "{e}");
        let c = Config::parse(&format!("{RULE}field = \"count\"\n"), "t").unwrap();
        assert_eq!(c.rules[0].as_name, "sum");
        let c = Config::parse(RULE, "t").unwrap();
        assert_eq!(c.rules[0].aggregate, Aggregate::Count);
        assert_eq!(c.rules[0].as_name, "count");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = err("[window]\nperiod = \"1m\n");
        assert!(e.starts_with("t.toml:2: "), "{e}");
    }

    #[test]
    fn sizes_and_addresses() {
        let c = Config::parse(
            &format!("[ingest]\nrecv_buffer = \"8MiB\"\nlisten = \"0.0.0.0:1\"\n{RULE}"),
            "t",
        )
        .unwrap();
        assert_eq!(c.ingest.recv_buffer, 8 << 20);
        let e = err(&format!("[ingest]\nlisten = \"localhost\"\n{RULE}"));
        assert!(e.starts_with("t.toml:2: ingest.listen"), "{e}");
        assert_eq!(parse_bytes("65536").unwrap(), 65536);
        assert!(parse_bytes("12XB").is_err());
    }

    #[test]
    fn alert_block_shape_is_checked() {
        let e = err(&format!(
            "{RULE}[[rule.alert]]\nwarn = '\"x\" > 1'\nflapping = [0.5, 0.25]\n"
        ));
        assert!(
            e.starts_with("t.toml:7: rule \"r\" alert \"#1\": flapping"),
            "{e}"
        );
        let e = err(&format!(
            "{RULE}[[rule.alert]]\nwarn = '\"x\" > 1'\nstate_changes_only = \"soon\"\n"
        ));
        assert!(e.contains("state_changes_only: bad duration"), "{e}");
        let e = err(&format!(
            "{RULE}[[rule.alert]]\nwarn = '\"x\" > 1'\n[rule.alert.slak]\n"
        ));
        assert!(e.contains("slak"), "{e}");
    }
}
