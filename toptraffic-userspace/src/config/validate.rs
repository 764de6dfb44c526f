//! Validation: raw TOML in, a [`Config`] out, or an error that names the file,
//! the line and the field, and says what would be accepted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toptraffic_common::KEY_DATA;

use crate::key;

use super::alerts::{compile_block, RuleNames};
use super::cluster::{scope, validate_cluster};
use super::defaults::{
    self, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, MAX_INTERVALS, MAX_KEYS_LIMIT, MAX_RULE_TAGS,
    MAX_THREADS, MAX_UDP_PAYLOAD, MIN_OVERFLOW_ERROR,
};
use super::raw::{RawConfig, RawOverflow, RawRule};
use super::schema::{
    Aggregate, AlertBlock, Config, ConfigError, Http, Ingest, Overflow, PromoteFrom, Rule, Scope,
    State, Window,
};
use super::source::Source;
use super::units::parse_duration;

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
        threads: match &raw.ingest.threads {
            Some(v) if *v.get_ref() > MAX_THREADS => {
                return Err(src.at(
                    v.span(),
                    format!(
                        "ingest.threads = {} is out of range; accepted: 0 (one per CPU) to {MAX_THREADS}",
                        v.get_ref()
                    ),
                ))
            }
            Some(v) => *v.get_ref(),
            None => 0,
        },
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
    // Where the window's shape is wrong: `every`, else `period`.
    let window_span = raw
        .window
        .every
        .as_ref()
        .or(raw.window.period.as_ref())
        .map(|v| v.span())
        .unwrap_or(0..0);
    if period.as_nanos() % every.as_nanos() != 0 {
        return Err(src.at(
            window_span.clone(),
            format!(
                "window.every = {:?} does not divide window.period = {:?}; period must be a multiple of every",
                humantime::format_duration(every).to_string(),
                humantime::format_duration(period).to_string()
            ),
        ));
    }
    let window = Window { period, every };
    if window.intervals() > MAX_INTERVALS {
        return Err(src.at(
            window_span,
            format!(
                "window.period / window.every = {} intervals; at most {MAX_INTERVALS} are kept",
                window.intervals()
            ),
        ));
    }

    if raw.rules.is_empty() {
        return Err(src.nowhere("no [[rule]]: nothing would be counted"));
    }
    let cluster = validate_cluster(raw.cluster, window.every, src)?;
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    for r in raw.rules {
        rules.push(validate_rule(r, src, &rules, cluster.is_some())?);
    }
    let config = Config {
        ingest,
        http,
        window,
        state,
        cluster,
        rules,
        source: src.name.to_string(),
    };
    Ok(config)
}

fn validate_rule(
    r: RawRule,
    src: &Source<'_>,
    earlier: &[Rule],
    cluster: bool,
) -> Result<Rule, ConfigError> {
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
    if group_by.len() > MAX_RULE_TAGS || r.filters.len() > MAX_RULE_TAGS {
        return Err(src.at(
            r.group_by.span(),
            ctx(format!(
                "at most {MAX_RULE_TAGS} group_by tags and {MAX_RULE_TAGS} where filters"
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
        Some(v) if *v.get_ref() == 0 || *v.get_ref() > MAX_KEYS_LIMIT => {
            return Err(src.at(
                v.span(),
                ctx(format!(
                    "max_keys = {} is out of range; accepted: 1 to {MAX_KEYS_LIMIT}",
                    v.get_ref()
                )),
            ))
        }
        Some(v) => *v.get_ref(),
        None => defaults::MAX_KEYS,
    };
    // The kernel counts keys of up to KEY_DATA bytes as they are: it must
    // never count one that userspace would shorten.
    let least = key::min_bound(group_by.len()).max(KEY_DATA);
    let max_key_bytes = match &r.max_key_bytes {
        Some(v) if *v.get_ref() < least || *v.get_ref() > MAX_UDP_PAYLOAD => {
            return Err(src.at(
                v.span(),
                ctx(format!(
                    "max_key_bytes = {} is out of range; accepted: {least} to {MAX_UDP_PAYLOAD} (at least {KEY_DATA}, and {} for each of the {} group_by tags)",
                    v.get_ref(),
                    key::min_bound(1),
                    group_by.len()
                )),
            ))
        }
        Some(v) => *v.get_ref(),
        None => defaults::MAX_KEY_BYTES.max(least),
    };
    if !r.alert.is_empty() && group_by.contains(&as_name) {
        return Err(src.at(
            r.name.span(),
            ctx(format!(
                "as = {as_name:?} is also a group_by tag: alert expressions could not tell them apart (Kapacitor refuses a field and a tag of one name)"
            )),
        ));
    }
    let alerts = r
        .alert
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let rule = RuleNames {
                rule: &name,
                as_name: &as_name,
                measurement: r.measurement.get_ref(),
                group_by: &group_by,
                span: r.name.span(),
            };
            compile_block(a, i, &rule, src).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A block's name names its sinks in logs, stats and metrics: two blocks
    // of one name would report as one.
    for (i, b) in alerts.iter().enumerate() {
        if alerts[..i].iter().any(|e| e.name == b.name) {
            let span = match &r.alert[i].name {
                Some(n) => n.span(),
                None => r.name.span(),
            };
            return Err(src.at(
                span,
                ctx(format!("duplicate alert block name {:?}", b.name)),
            ));
        }
    }
    let overflow = validate_overflow(
        r.overflow.as_ref(),
        r.name.span(),
        &as_name,
        &alerts,
        src,
        &ctx,
    )?;
    let scope = scope(r.scope.as_ref(), cluster, src, &ctx)?;
    let cluster_threshold = match scope {
        Scope::Cluster if !alerts.is_empty() => Some(
            lowest_threshold(&alerts, &as_name)
                .map_err(|none| {
                    let span = r.scope.as_ref().map_or(r.name.span(), |s| s.span());
                    src.at(
                        span,
                        ctx(format!(
                            "a cluster rule's alerts need a threshold to exchange keys by, and none can be derived: no alert lambda compares {as_name:?} with a number as '{as_name:?} > N' does ({none}); or set scope = \"node\""
                        )),
                    )
                })?
                .0,
        ),
        _ => None,
    };
    Ok(Rule {
        name,
        scope,
        cluster_threshold,
        measurement: r.measurement.into_inner(),
        filters: r.filters.into_iter().collect(),
        group_by,
        aggregate,
        as_name,
        max_keys,
        max_key_bytes,
        overflow,
        alerts,
    })
}

/// The lowest number any of the alert lambdas compares the rule's value
/// with (`Expr::lower_bound`), and where it came from: a key whose value is
/// under it is OK at every level. Err: the lambdas that give none.
pub(super) fn lowest_threshold(
    alerts: &[Arc<AlertBlock>],
    as_name: &str,
) -> Result<(f64, PromoteFrom), String> {
    let mut lowest: Option<(f64, PromoteFrom)> = None;
    let mut none = Vec::new();
    for b in alerts {
        for (level, e) in ["info", "warn", "crit"].into_iter().zip(&b.levels) {
            let Some(e) = e else { continue };
            match e.lower_bound(as_name) {
                Some(t) if lowest.as_ref().is_none_or(|(l, _)| t < *l) => {
                    let from = PromoteFrom::Alert {
                        block: b.name.clone(),
                        level,
                    };
                    lowest = Some((t, from));
                }
                Some(_) => {}
                None => none.push(format!("alert {:?} {level} = '{e}'", b.name)),
            }
        }
    }
    lowest.ok_or_else(|| none.join(", "))
}

/// `[rule.overflow]`, on unless `enabled = false`. Its promotion threshold
/// is `promote_at`, or else the lowest number the rule's alert lambdas
/// compare its value against (`Expr::lower_bound`): a key under it cannot
/// fire any level, so it may stay approximate. A rule with alert blocks of
/// which none gives a number must say `promote_at`.
fn validate_overflow(
    overflow: Option<&Spanned<RawOverflow>>,
    name_span: std::ops::Range<usize>,
    as_name: &str,
    alerts: &[Arc<AlertBlock>],
    src: &Source<'_>,
    ctx: &dyn Fn(String) -> String,
) -> Result<Option<Overflow>, ConfigError> {
    let raw = overflow.map(|o| o.get_ref());
    if raw.and_then(|o| o.enabled) == Some(false) {
        return Ok(None);
    }
    let share = |field: &str, v: Option<&Spanned<f64>>, default: f64, lo: f64| match v {
        Some(v) if !(*v.get_ref() >= lo && *v.get_ref() < 1.0) => Err(src.at(
            v.span(),
            ctx(format!(
                "overflow.{field} = {} is out of range; accepted: {lo} or more, under 1",
                v.get_ref()
            )),
        )),
        Some(v) => Ok(*v.get_ref()),
        None => Ok(default),
    };
    let error = share(
        "error",
        raw.and_then(|o| o.error.as_ref()),
        defaults::OVERFLOW_ERROR,
        MIN_OVERFLOW_ERROR,
    )?;
    let confidence = share(
        "confidence",
        raw.and_then(|o| o.confidence.as_ref()),
        defaults::OVERFLOW_CONFIDENCE,
        0.5,
    )?;
    let (promote_at, promote_from) = match raw.and_then(|o| o.promote_at.as_ref()) {
        Some(v) if !(v.get_ref().is_finite() && *v.get_ref() >= 0.0) => {
            return Err(src.at(
                v.span(),
                ctx(format!(
                    "overflow.promote_at = {} is out of range; accepted: 0 or more",
                    v.get_ref()
                )),
            ))
        }
        Some(v) => (Some(*v.get_ref()), PromoteFrom::Configured),
        None if alerts.is_empty() => (None, PromoteFrom::SmallestExact),
        None => match lowest_threshold(alerts, as_name) {
            Ok((t, from)) => (Some(t), from),
            Err(none) => {
                let span = overflow.map(|o| o.span()).unwrap_or(name_span);
                return Err(src.at(
                    span,
                    ctx(format!(
                        "overflow needs a promotion threshold and none can be derived: no alert lambda compares {as_name:?} with a number as '{as_name:?} > N' does ({none}); set [rule.overflow] promote_at = N, or enabled = false"
                    )),
                ));
            }
        },
    };
    Ok(Some(Overflow {
        error,
        confidence,
        promote_at,
        promote_from,
    }))
}
