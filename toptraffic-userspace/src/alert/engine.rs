//! The alert engine: after each rotation, every key of a rule's window goes
//! through the rule's alert blocks (level from the lambdas, then the state
//! machine), and the events decided go to the blocks' sinks.
//!
//! Memory stays bounded by the window: a key has state in a block only while
//! it is in the window and its state differs from a fresh one (some non-OK
//! level in its history, flapping, or a last event that was not OK). A key
//! that leaves the window gets one last OK evaluation, which is a recovery
//! when it was not OK, and its state is dropped. Kapacitor never evaluates a
//! silent group again and would keep its last level forever.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing::warn;

use super::event::{AlertEvent, Level};
use super::expr::{Env, Expr};
use super::state::{AlertState, Settings, DEFAULT_HISTORY};
use super::template::{AlertInfo, ServerInfo, Template};
use crate::config::{AlertBlock, ConfigError, Rule, StateChangesOnly};
use crate::key::{self, Key};
use crate::sink::SinkHandle;
use crate::window::RuleWindow;

/// Kapacitor's default templates (pipeline/alert.go).
pub const DEFAULT_ID: &str = "{{ .Name }}:{{ .Group }}";
pub const DEFAULT_MESSAGE: &str = "{{ .ID }} is {{ .Level }}";
pub const DEFAULT_DETAILS: &str = "{{ json . }}";

/// Counters of one block.
#[derive(Debug, Default)]
pub struct BlockStats {
    /// Events handed to the sinks, by level (OK, INFO, WARNING, CRITICAL).
    pub events: [AtomicU64; 4],
    /// Expression evaluations that failed (counted as false, as Kapacitor).
    pub eval_errors: AtomicU64,
    /// Events not sent because a template failed to render.
    pub template_errors: AtomicU64,
}

/// One alert block, compiled.
pub struct Block {
    pub name: String,
    /// info, warn, crit.
    levels: [Option<Expr>; 3],
    settings: Settings,
    id: Template,
    message: Template,
    details: Template,
    pub sinks: Vec<SinkHandle>,
    pub stats: Arc<BlockStats>,
    states: hashbrown::HashMap<Key, KeyAlert, ahash::RandomState>,
}

struct KeyAlert {
    state: AlertState,
    value: f64,
}

/// The alert blocks of one rule.
pub struct RuleAlerts {
    pub rule: String,
    measurement: String,
    as_name: String,
    group_by: Vec<String>,
    /// `.ServerInfo` of the templates.
    server: ServerInfo,
    pub blocks: Vec<Block>,
}

/// A key's values as the lambdas see them: the window value under the
/// rule's `as` name, and the group-by tags.
struct KeyEnv<'a> {
    as_name: &'a str,
    value: f64,
    group_by: &'a [String],
    key: &'a [u8],
}

impl Env for KeyEnv<'_> {
    fn field(&self, name: &str) -> Option<f64> {
        (name == self.as_name).then_some(self.value)
    }

    fn tag(&self, name: &str) -> Option<&str> {
        let i = self.group_by.iter().position(|g| g == name)?;
        let v = key::values(self.key).nth(i)?;
        std::str::from_utf8(v).ok()
    }
}

/// This host's name, for `.ServerInfo.Hostname`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A block's position in the config, for errors.
fn block_name(b: &AlertBlock, index: usize) -> String {
    b.name.clone().unwrap_or_else(|| format!("#{}", index + 1))
}

/// Compiles a rule's alert blocks; errors name the rule, the block, the
/// field and the position.
pub fn compile_rule(
    rule: &Rule,
    source: &str,
    text: &str,
    mut sinks: impl FnMut(&AlertBlock, &str) -> Vec<SinkHandle>,
) -> Result<RuleAlerts, ConfigError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut blocks = Vec::with_capacity(rule.alerts.len());
    for (i, b) in rule.alerts.iter().enumerate() {
        let name = block_name(b, i);
        let err = |field: &str, span_start: usize, pos: usize, msg: &str| ConfigError {
            source: source.to_string(),
            line: Some(line_of(span_start)),
            message: format!(
                "rule {:?} alert {name:?}: {field}: {msg} (at character {})",
                rule.name,
                pos + 1
            ),
        };
        let mut levels: [Option<Expr>; 3] = [None, None, None];
        for (slot, field, src) in [
            (0, "info", &b.info),
            (1, "warn", &b.warn),
            (2, "crit", &b.crit),
        ] {
            if let Some(src) = src {
                // The TOML string's span starts at its quote.
                let e = Expr::parse(src.get_ref())
                    .map_err(|e| err(field, src.span().start, e.pos, &e.message))?;
                for r in e.references() {
                    if r != rule.as_name && !rule.group_by.iter().any(|g| g == r) {
                        return Err(err(
                            field,
                            src.span().start,
                            0,
                            &format!(
                                "\"{r}\" is neither the rule's value ({:?}) nor one of its group_by tags {:?}",
                                rule.as_name, rule.group_by
                            ),
                        ));
                    }
                }
                levels[slot] = Some(e);
            }
        }
        let tmpl = |field: &str, v: &Option<toml::Spanned<String>>, default: &str, html: bool| {
            let (src, start) = match v {
                Some(s) => (s.get_ref().as_str(), s.span().start),
                None => (default, 0),
            };
            let parsed = if html {
                Template::parse_html(src)
            } else {
                Template::parse(src)
            };
            parsed.map_err(|e| err(field, start, e.pos, &e.msg))
        };
        let id = tmpl("id", &b.id, DEFAULT_ID, false)?;
        let message = tmpl("message", &b.message, DEFAULT_MESSAGE, false)?;
        // Kapacitor renders details with html/template.
        let details = tmpl("details", &b.details, DEFAULT_DETAILS, true)?;
        let (state_changes_only, every) = match b.state_changes_only.as_ref().map(|s| s.get_ref()) {
            None | Some(StateChangesOnly::Enabled(false)) => (false, Duration::ZERO),
            Some(StateChangesOnly::Enabled(true)) => (true, Duration::ZERO),
            Some(StateChangesOnly::Every(d)) => (
                true,
                crate::config::parse_duration(d).expect("validated with the config"),
            ),
        };
        let settings = Settings {
            flapping: b.flapping.as_ref().map(|f| {
                let [lo, hi] = *f.get_ref();
                (lo, hi)
            }),
            history: b.history.as_ref().map_or(DEFAULT_HISTORY, |h| *h.get_ref()),
            state_changes_only,
            state_changes_every: every,
            no_recoveries: b.no_recoveries,
        };
        blocks.push(Block {
            sinks: sinks(b, &name),
            name,
            levels,
            settings,
            id,
            message,
            details,
            stats: Arc::default(),
            states: Default::default(),
        });
    }
    Ok(RuleAlerts {
        rule: rule.name.clone(),
        measurement: rule.measurement.clone(),
        as_name: rule.as_name.clone(),
        group_by: rule.group_by.clone(),
        server: ServerInfo {
            hostname: hostname(),
            ..ServerInfo::default()
        },
        blocks,
    })
}

impl Block {
    /// Kapacitor's determineLevel without level resets: the highest level
    /// whose expression holds. A failing expression counts as false.
    fn level(&self, env: &KeyEnv<'_>) -> Level {
        for (slot, level) in [(2, Level::Critical), (1, Level::Warning), (0, Level::Info)] {
            if let Some(e) = &self.levels[slot] {
                match e.eval_bool(env) {
                    Ok(true) => return level,
                    Ok(false) => {}
                    Err(_) => {
                        self.stats.eval_errors.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        Level::Ok
    }
}

/// Group tags sorted by name, and Kapacitor's `.Group` string.
fn tags_and_group(group_by: &[String], key: &[u8]) -> (BTreeMap<String, String>, String) {
    let tags: BTreeMap<String, String> = group_by
        .iter()
        .cloned()
        .zip(key::values(key).map(|v| String::from_utf8_lossy(v).into_owned()))
        .collect();
    let group = tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    (tags, group)
}

impl RuleAlerts {
    /// Evaluates every key of the rule's window at `end`, then gives the
    /// keys that left the window their last (OK) evaluation.
    pub fn evaluate(&mut self, window: &RuleWindow, end: SystemTime) {
        for b in 0..self.blocks.len() {
            for (k, value) in window.iter() {
                self.evaluate_key(b, k, value, end, true);
            }
            let gone: Vec<Key> = self.blocks[b]
                .states
                .keys()
                .filter(|k| window.value(k).is_none())
                .cloned()
                .collect();
            for k in gone {
                self.evaluate_key(b, &k, 0.0, end, false);
            }
        }
    }

    fn evaluate_key(&mut self, b: usize, k: &Key, value: f64, end: SystemTime, in_window: bool) {
        let block = &mut self.blocks[b];
        let env = KeyEnv {
            as_name: &self.as_name,
            value,
            group_by: &self.group_by,
            key: k,
        };
        let level = if in_window {
            block.level(&env)
        } else {
            Level::Ok
        };
        let decision = match block.states.get_mut(k) {
            None if level == Level::Ok => return,
            None => {
                let mut st = AlertState::new(block.settings.history);
                let d = st.update(&block.settings, end, level);
                block
                    .states
                    .insert(k.clone(), KeyAlert { state: st, value });
                d
            }
            Some(ka) => {
                ka.value = value;
                let d = ka.state.update(&block.settings, end, level);
                if !in_window || (level == Level::Ok && ka.state.is_quiet()) {
                    block.states.remove(k);
                }
                d
            }
        };
        let Some(d) = decision else {
            return;
        };
        let (tags, group) = tags_and_group(&self.group_by, k);
        let fields: BTreeMap<String, f64> = [(self.as_name.clone(), value)].into();
        let info = AlertInfo {
            name: &self.measurement,
            task_name: &self.rule,
            group: &group,
            tags: &tags,
            server: &self.server,
            fields: &fields,
            level: d.level,
            time: d.time,
            duration: d.duration,
        };
        let rendered = block.id.render(&info.id_data()).and_then(|id| {
            let message = block.message.render(&info.message_data(&id))?;
            let details = block.details.render(&info.details_data(&id, &message))?;
            Ok((id, message, details))
        });
        let (id, message, details) = match rendered {
            Ok(r) => r,
            Err(e) => {
                block.stats.template_errors.fetch_add(1, Relaxed);
                warn!(rule = %self.rule, block = %block.name, error = %e, "alert template failed");
                return;
            }
        };
        block.stats.events[d.level as usize].fetch_add(1, Relaxed);
        let event = Arc::new(AlertEvent {
            id,
            message,
            details,
            time: d.time,
            duration: d.duration,
            level: d.level,
            previous_level: d.previous_level,
            recoverable: !block.settings.no_recoveries,
            name: self.measurement.clone(),
            task: self.rule.clone(),
            block: block.name.clone(),
            tags,
            field: self.as_name.clone(),
            value,
        });
        for s in &block.sinks {
            s.offer(event.clone());
        }
    }

    /// Keys not OK, per block, for `/api/v1/alerts`.
    pub fn view(&self) -> Vec<BlockView> {
        self.blocks
            .iter()
            .map(|b| {
                let mut alerts: Vec<KeyAlertView> = b
                    .states
                    .iter()
                    .filter(|(_, ka)| ka.state.level() != Level::Ok)
                    .map(|(k, ka)| KeyAlertView {
                        tags: tags_and_group(&self.group_by, k).0,
                        level: ka.state.level(),
                        since: ka.state.since().map(crate::api::rfc3339),
                        value: crate::api::number(ka.value),
                        flapping: ka.state.flapping(),
                    })
                    .collect();
                alerts.sort_by(|a, b| b.level.cmp(&a.level).then_with(|| a.tags.cmp(&b.tags)));
                BlockView {
                    rule: self.rule.clone(),
                    block: b.name.clone(),
                    alerts,
                }
            })
            .collect()
    }

    /// Keys with state, over all blocks (for the memory bound's metrics).
    pub fn states(&self) -> usize {
        self.blocks.iter().map(|b| b.states.len()).sum()
    }
}

/// A key that is not OK, as `/api/v1/alerts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyAlertView {
    pub tags: BTreeMap<String, String>,
    pub level: Level,
    /// When the current non-OK run was first sent.
    pub since: Option<String>,
    /// The window value at the last evaluation.
    pub value: serde_json::Value,
    pub flapping: bool,
}

/// One block's keys that are not OK.
#[derive(Debug, Clone, Serialize)]
pub struct BlockView {
    pub rule: String,
    pub block: String,
    pub alerts: Vec<KeyAlertView>,
}
