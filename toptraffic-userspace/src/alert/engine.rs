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

use super::event::{AlertEvent, Level, Shares};
use super::state::{AlertState, StateParts};
use super::template::{group_of, AlertInfo, ServerInfo};
use super::tick::Env;
use crate::config::{AlertBlock, Rule};
use crate::key::{self, Key};
use crate::sink::SinkHandle;
use crate::window::RuleWindow;

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

/// One alert block at work: its compiled spec, its sinks and its keys' states.
pub struct Block {
    pub name: String,
    spec: Arc<AlertBlock>,
    pub sinks: Vec<SinkHandle>,
    pub stats: Arc<BlockStats>,
    states: hashbrown::HashMap<Key, KeyAlert, ahash::RandomState>,
}

struct KeyAlert {
    state: AlertState,
    value: f64,
    /// The value's error bound while it is partly the overflow sketch's
    /// estimate.
    bound: Option<f64>,
    /// Under cluster scope: the nodes and each one's share of `value`.
    shares: Option<Shares>,
    /// The last values were a lower bound under its level, which it kept.
    held: bool,
}

/// What an evaluation reads: each key's value (with its error bound while
/// approximate), and what a key that is not there holds.
pub trait Values {
    /// Every key with a value, its value and error bound.
    fn each(&self, f: &mut dyn FnMut(&Key, f64, Option<f64>));
    /// Whether `key` has a value.
    fn holds(&self, key: &[u8]) -> bool;
    /// An estimate of a key that is not held, and its bound (the overflow
    /// sketch's); None: the key left.
    fn estimate(&self, _key: &[u8]) -> Option<(f64, f64)> {
        None
    }
    /// The nodes' shares of `key`'s value, for cluster values.
    fn shares(&self, _key: &[u8]) -> Option<Shares> {
        None
    }
}

impl Values for RuleWindow {
    fn each(&self, f: &mut dyn FnMut(&Key, f64, Option<f64>)) {
        for (k, v, b) in self.iter_with_bounds() {
            f(k, v, b);
        }
    }

    fn holds(&self, key: &[u8]) -> bool {
        self.value(key).is_some()
    }

    fn estimate(&self, key: &[u8]) -> Option<(f64, f64)> {
        RuleWindow::estimate(self, key)
    }
}

/// One interval's cluster-wide values of a rule: every key that can reach
/// the rule's lowest threshold, or that has alert state, with each node's
/// share; a key not here is below the threshold on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterValues {
    pub nodes: Arc<[String]>,
    pub keys: hashbrown::HashMap<Key, (f64, Vec<f64>), ahash::RandomState>,
    /// Every node's values are in; false (a node missed the exchange's
    /// deadline, or died within a window): each value is a lower bound of
    /// the key's.
    pub complete: bool,
}

impl Values for ClusterValues {
    fn each(&self, f: &mut dyn FnMut(&Key, f64, Option<f64>)) {
        for (k, (v, _)) in &self.keys {
            if *v != 0.0 {
                f(k, *v, None);
            }
        }
    }

    fn holds(&self, key: &[u8]) -> bool {
        self.keys.get(key).is_some_and(|(v, _)| *v != 0.0)
    }

    fn shares(&self, key: &[u8]) -> Option<Shares> {
        let (_, s) = self.keys.get(key)?;
        Some(Shares {
            nodes: self.nodes.clone(),
            values: s.clone(),
        })
    }
}

/// An event decided and the sinks it goes to: handed over at once, or
/// later by the node that holds a cluster's sending lease.
#[derive(Clone)]
pub struct Outgoing {
    pub event: Arc<AlertEvent>,
    pub sinks: Vec<SinkHandle>,
    pub stats: Arc<BlockStats>,
}

impl Outgoing {
    /// Hands the event to its sinks (each queues it; none blocks).
    pub fn deliver(&self) {
        self.stats.events[self.event.level as usize].fetch_add(1, Relaxed);
        for s in &self.sinks {
            s.offer(self.event.clone());
        }
    }
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
    /// The time of the last evaluation, to notice a wall clock stepped back.
    last_end: Option<SystemTime>,
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

impl RuleAlerts {
    /// The rule's alert blocks, as the config compiled them, each with the
    /// sinks `sinks` starts for it.
    pub fn new(rule: &Rule, mut sinks: impl FnMut(&AlertBlock) -> Vec<SinkHandle>) -> RuleAlerts {
        let blocks = rule
            .alerts
            .iter()
            .map(|spec| Block {
                name: spec.name.clone(),
                sinks: sinks(spec),
                spec: spec.clone(),
                stats: Arc::default(),
                states: Default::default(),
            })
            .collect();
        RuleAlerts {
            rule: rule.name.clone(),
            measurement: rule.measurement.clone(),
            as_name: rule.as_name.clone(),
            group_by: rule.group_by.clone(),
            server: ServerInfo {
                hostname: hostname(),
                ..ServerInfo::default()
            },
            blocks,
            last_end: None,
        }
    }
}

impl Block {
    /// Kapacitor's determineLevel without level resets: the highest level
    /// whose expression holds. A failing expression counts as false.
    fn level(&self, env: &KeyEnv<'_>) -> Level {
        for (slot, level) in [(2, Level::Critical), (1, Level::Warning), (0, Level::Info)] {
            if let Some(e) = &self.spec.levels[slot] {
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
    let group = group_of(&tags);
    (tags, group)
}

/// What a key's value says of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Basis {
    /// The key's value.
    Exact,
    /// At most the key's value (some of its lines are not in it: a
    /// cluster rule's own node while the exchange fails, or cluster values
    /// that are not whole). A value that reaches a level proves it, so
    /// levels rise as on exact values, but one under the key's level proves
    /// nothing, so the key keeps its level and state (no point for it this
    /// interval) until exact values say otherwise.
    LowerBound,
}

/// A key's value at one evaluation.
struct Point {
    value: f64,
    /// Its error bound, while partly the overflow sketch's estimate.
    bound: Option<f64>,
    /// False: the key left the window (its last evaluation, at OK).
    in_window: bool,
    basis: Basis,
}

impl RuleAlerts {
    /// Evaluates every key of the rule's window at `end`, `every` or more
    /// after the previous evaluation, then gives the keys that left the
    /// window their last (OK) evaluation.
    ///
    /// An event's time is `end`, the window's end as the wall clock names
    /// it. When the wall clock was stepped back, `end` is earlier than one
    /// interval after the previous evaluation; the window slid one interval
    /// all the same (rotation.rs's `Pacer`), and so do the alert states:
    /// their remembered times move back with the clock, so that a run's
    /// duration and the time since the last event sent (stateChangesOnly's
    /// re-send) grow by one interval at the step, instead of reading zero
    /// (a negative difference, saturated) until the clock reads what it
    /// read before. A jump forward is time passing, for the states as for
    /// the window. The values are what `basis` says of them.
    pub fn evaluate(
        &mut self,
        window: &RuleWindow,
        end: SystemTime,
        every: Duration,
        basis: Basis,
    ) {
        for o in self.decide(window, end, every, basis) {
            o.deliver();
        }
    }

    /// Evaluates `values` as `evaluate` does a window, and returns the
    /// events decided instead of handing them to the sinks.
    pub fn decide(
        &mut self,
        values: &dyn Values,
        end: SystemTime,
        every: Duration,
        basis: Basis,
    ) -> Vec<Outgoing> {
        if let Some(Err(back)) = self.last_end.map(|l| end.duration_since(l + every)) {
            let by = back.duration();
            for b in &mut self.blocks {
                for ka in b.states.values_mut() {
                    ka.state.move_back(by);
                }
            }
        }
        self.last_end = Some(end);
        let mut out = Vec::new();
        for b in 0..self.blocks.len() {
            values.each(&mut |k, value, bound| {
                let point = Point {
                    value,
                    bound,
                    in_window: true,
                    basis,
                };
                self.evaluate_key(b, k, point, values.shares(k), end, &mut out);
            });
            let gone: Vec<Key> = self.blocks[b]
                .states
                .keys()
                .filter(|k| !values.holds(k))
                .cloned()
                .collect();
            for k in gone {
                // A key demoted to the sketch goes on at its estimate, so
                // that making room sends no false recovery; a key that
                // left the window recovers.
                let shares = values.shares(&k);
                let point = match values.estimate(&k) {
                    Some((value, bound)) if value > 0.0 => Point {
                        value,
                        bound: Some(bound),
                        in_window: true,
                        basis,
                    },
                    _ => Point {
                        value: 0.0,
                        bound: None,
                        in_window: false,
                        basis,
                    },
                };
                self.evaluate_key(b, &k, point, shares, end, &mut out);
            }
        }
        out
    }

    /// Keys with state in any block: under cluster scope, their cluster
    /// values are exchanged whatever their value, so that a recovery says
    /// the real one.
    pub fn stateful_keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self
            .blocks
            .iter()
            .flat_map(|b| b.states.keys().cloned())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn evaluate_key(
        &mut self,
        b: usize,
        k: &Key,
        point: Point,
        shares: Option<Shares>,
        end: SystemTime,
        out: &mut Vec<Outgoing>,
    ) {
        let Point {
            value,
            bound,
            in_window,
            basis,
        } = point;
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
                let mut st = AlertState::new(block.spec.settings.history);
                let d = st.update(&block.spec.settings, end, level);
                block.states.insert(
                    k.clone(),
                    KeyAlert {
                        state: st,
                        value,
                        bound,
                        shares: shares.clone(),
                        held: false,
                    },
                );
                d
            }
            Some(ka) if basis == Basis::LowerBound && level < ka.state.level() => {
                ka.held = true;
                return;
            }
            Some(ka) => {
                ka.held = false;
                ka.value = value;
                ka.bound = bound;
                ka.shares = shares.clone();
                let d = ka.state.update(&block.spec.settings, end, level);
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
        let rendered = block.spec.id.render(&info.id_data()).and_then(|id| {
            let message = block.spec.message.render(&info.message_data(&id))?;
            let details = block
                .spec
                .details
                .render(&info.details_data(&id, &message))?;
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
        let event = Arc::new(AlertEvent {
            id,
            message,
            details,
            time: d.time,
            duration: d.duration,
            level: d.level,
            previous_level: d.previous_level,
            recoverable: !block.spec.settings.no_recoveries,
            name: self.measurement.clone(),
            task: self.rule.clone(),
            block: block.name.clone(),
            tags,
            field: self.as_name.clone(),
            value,
            error_bound: bound,
            shares,
        });
        out.push(Outgoing {
            event,
            sinks: block.sinks.clone(),
            stats: block.stats.clone(),
        });
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
                        since: ka.state.since().map(crate::goformat::rfc3339),
                        value: crate::goformat::json_number(ka.value),
                        error_bound: ka.bound,
                        flapping: ka.state.flapping(),
                        scope: ka.shares.as_ref().map(|_| "cluster"),
                        nodes: ka.shares.as_ref().map(|s| s.nodes.len()),
                        shares: ka.shares.as_ref().map(Shares::by_node),
                        held: ka.held,
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

    /// Takes over the key states of `old`'s blocks of the same name and
    /// history length (a reload that kept the rule's grouping).
    pub fn adopt(&mut self, mut old: RuleAlerts) {
        self.last_end = old.last_end;
        for b in &mut self.blocks {
            if let Some(ob) = old.blocks.iter_mut().find(|o| o.name == b.name) {
                if ob.spec.settings.history.max(super::state::MIN_HISTORY)
                    == b.spec.settings.history.max(super::state::MIN_HISTORY)
                {
                    b.states = std::mem::take(&mut ob.states);
                }
            }
        }
    }

    /// Every block's key states, for a state file: (block, key, state,
    /// last value).
    pub fn export_states(&self) -> Vec<(String, Key, StateParts, f64)> {
        self.blocks
            .iter()
            .flat_map(|b| {
                b.states
                    .iter()
                    .map(|(k, ka)| (b.name.clone(), k.clone(), ka.state.to_parts(), ka.value))
            })
            .collect()
    }

    /// Restores one key's state into block `block` (from a state file);
    /// false when no such block, or the history length differs.
    pub fn import_state(&mut self, block: &str, key: Key, parts: StateParts, value: f64) -> bool {
        let Some(b) = self.blocks.iter_mut().find(|b| b.name == block) else {
            return false;
        };
        if parts.history.len() != b.spec.settings.history.max(super::state::MIN_HISTORY) {
            return false;
        }
        match AlertState::from_parts(parts) {
            Some(state) => {
                b.states.insert(
                    key,
                    KeyAlert {
                        state,
                        value,
                        bound: None,
                        shares: None,
                        held: false,
                    },
                );
                true
            }
            None => false,
        }
    }

    /// Keys with state, over all blocks (the tests of the memory bound).
    #[cfg(test)]
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
    /// Its error bound while it is partly the overflow sketch's estimate.
    pub error_bound: Option<f64>,
    pub flapping: bool,
    /// Under cluster scope: "cluster", the nodes and each one's share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<BTreeMap<String, serde_json::Value>>,
    /// The last values were a lower bound under its level (a cluster
    /// rule's while its values are not whole): the level and `value` are
    /// those last known whole.
    pub held: bool,
}

/// One block's keys that are not OK.
#[derive(Debug, Clone, Serialize)]
pub struct BlockView {
    pub rule: String,
    pub block: String,
    pub alerts: Vec<KeyAlertView>,
}

#[cfg(test)]
mod tests {
    //! The engine on simulated time against what kapacitord 1.5.7 emitted
    //! for the seed's TICKscript without its barrier (../shared/KAPACITOR.md,
    //! "Recorded from kapacitord 1.5.7 without the barrier"): three keys at
    //! 21,000, 30,000 and 12,000 lines a minute for 7 minutes, then silence.
    //! The recorded first alerts (WARNING at 18,300 then CRITICAL at 23,300
    //! ten seconds later for 30k/min; WARNING at 18,060 for 21k/min) match a
    //! first, partial interval of 1.6 s, which the test reproduces. Levels
    //! follow alert.go (determineLevel, alertState); re-sends follow
    //! stateChangesOnly(5m) counted from the last event sent.
    use super::*;
    use crate::config::Config;
    use crate::key::from_values;
    use crate::snapshot::{Cell, IntervalSnapshot};
    use crate::window::WindowEngine;
    use std::time::{Duration, UNIX_EPOCH};
    use tokio::sync::mpsc;

    const SEED: &str = r##"
[[rule]]
name = "top_combined"
measurement = "combined"
group_by = ["ip", "id"]
field = "count"
as = "totalCount"

[[rule.alert]]
name = "slack"
warn = '"totalCount" > 17500'
crit = '"totalCount" > 22500'
flapping = [0.25, 0.5]
history = 21
message = 'Observed {{ index .Fields "totalCount" }} requests to Production Store ID {{ index .Tags "id" }} for IP {{ index .Tags "ip" }} within the last minute.'
no_recoveries = true
state_changes_only = "5m"
[rule.alert.slack]
url = "http://127.0.0.1:9/unused"
channel = "#ops-noise"

[[rule.alert]]
name = "pubsub"
warn = '"totalCount" > 17500'
crit = '"totalCount" > 22500'
flapping = [0.25, 0.5]
history = 21
message = 'Observed {{ index .Fields "totalCount" }} requests to Production Store ID {{ index .Tags "id" }} for IP {{ index .Tags "ip" }} within the last minute.'
state_changes_only = "5m"
[rule.alert.exec]
command = ["/usr/bin/kapacitor_pubsub_stdin_invoker.sh"]
[rule.alert.log]
path = "/var/log/kapacitor/alerts.log"
"##;

    type Captured = (String, mpsc::Receiver<Arc<AlertEvent>>);

    const EVERY: Duration = Duration::from_secs(5);

    fn engine() -> (RuleAlerts, Vec<Captured>) {
        engine_with(SEED)
    }

    fn engine_with(config: &str) -> (RuleAlerts, Vec<Captured>) {
        let c = Config::parse(config, "test.toml").unwrap();
        let mut rx = Vec::new();
        let ra = RuleAlerts::new(&c.rules[0], |b| {
            b.sinks
                .iter()
                .map(|s| {
                    let label = format!("{}/{}", b.name, s.kind());
                    let (h, r) = SinkHandle::capture(&label, s.kind());
                    rx.push((label, r));
                    h
                })
                .collect()
        });
        (ra, rx)
    }

    /// (seconds after the first boundary, sink, ip, level, value, message,
    /// duration in seconds).
    type Seen = (u64, String, String, Level, f64, String, u64);

    #[test]
    fn seed_tickscript_without_barrier_matches_kapacitor() {
        let (mut ra, mut sinks) = engine();
        let keys = [
            ("192.0.2.1", "900001", 21_000u64),
            ("192.0.2.2", "900002", 30_000),
            ("192.0.2.3", "900003", 12_000),
        ];
        let mut window = WindowEngine::new(12, [1000]);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_564_660);
        // Interval 0 is the partial first one (1.6 s of traffic), 1..=84
        // are full, then silence until every key has left the window.
        for i in 0..=110u64 {
            let mut snap = IntervalSnapshot::empty(i, [1000]);
            for (ip, id, per_min) in keys {
                let lines = match i {
                    0 => per_min * 16 / 600,
                    1..=84 => per_min / 12,
                    _ => 0,
                };
                if lines > 0 {
                    let cell = Cell::new(lines as f64, lines);
                    snap.rules[0].add(&from_values(&[ip, id]), cell);
                }
            }
            window.apply(snap);
            ra.evaluate(
                window.rule(0),
                t0 + Duration::from_secs(5 * i),
                EVERY,
                Basis::Exact,
            );
        }
        let mut seen: Vec<Seen> = Vec::new();
        for (label, rx) in &mut sinks {
            while let Ok(e) = rx.try_recv() {
                let at = e.time.duration_since(t0).unwrap().as_secs();
                let ip = e.tags["ip"].clone();
                let dur = e.duration.as_secs();
                seen.push((
                    at,
                    label.clone(),
                    ip,
                    e.level,
                    e.value,
                    e.message.clone(),
                    dur,
                ));
            }
        }
        seen.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let msg = |v: u64, id: &str, ip: &str| {
            format!("Observed {v} requests to Production Store ID {id} for IP {ip} within the last minute.")
        };
        let mut want: Vec<Seen> = Vec::new();
        let mut push = |at: u64, ip: &str, id: &str, level: Level, v: u64, dur: u64| {
            let sinks: &[&str] = if level == Level::Ok {
                // noRecoveries: Slack never hears of an OK.
                &["pubsub/exec", "pubsub/log"]
            } else {
                &["pubsub/exec", "pubsub/log", "slack/slack"]
            };
            for s in sinks {
                want.push((
                    at,
                    s.to_string(),
                    ip.into(),
                    level,
                    v as f64,
                    msg(v, id, ip),
                    dur,
                ));
            }
        };
        // 30k/min: WARNING at 18,300, CRITICAL at 23,300 ten seconds later,
        // re-sent 300 s after that at the steady 30,000.
        push(35, "192.0.2.2", "900002", Level::Warning, 18_300, 0);
        push(45, "192.0.2.2", "900002", Level::Critical, 23_300, 10);
        // 21k/min: WARNING at 18,060, re-sent 300 s later at 21,000.
        push(50, "192.0.2.1", "900001", Level::Warning, 18_060, 0);
        push(345, "192.0.2.2", "900002", Level::Critical, 30_000, 310);
        push(350, "192.0.2.1", "900001", Level::Warning, 21_000, 300);
        // Silence from interval 85: the sliding sums fall. Kapacitor, whose
        // stream window waits for the next point, sent nothing here;
        // toptraffic re-evaluates every interval and recovers.
        push(430, "192.0.2.1", "900001", Level::Ok, 17_500, 380);
        push(435, "192.0.2.2", "900002", Level::Warning, 22_500, 400);
        push(445, "192.0.2.2", "900002", Level::Ok, 17_500, 410);
        want.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        assert_eq!(seen, want);
        // Every key left the window: no state is held.
        assert_eq!(ra.states(), 0);
    }

    #[test]
    fn a_key_that_leaves_while_not_ok_recovers_and_its_state_is_dropped() {
        let (mut ra, mut sinks) = engine();
        let mut window = WindowEngine::new(12, [10]);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_564_660);
        // 30,000 lines in one interval, then nothing: CRITICAL, which holds
        // until the interval leaves the window 60 s later, then OK.
        let mut snap = IntervalSnapshot::empty(0, [10]);
        let cell = Cell::new(30_000.0, 30_000);
        snap.rules[0].add(&from_values(&["10.0.0.1", "1"]), cell);
        window.apply(snap);
        ra.evaluate(window.rule(0), t0, EVERY, Basis::Exact);
        assert_eq!(ra.states(), 2, "one state per block");
        assert_eq!(ra.view()[1].alerts[0].level, Level::Critical);
        for i in 1..=12u64 {
            window.apply(IntervalSnapshot::empty(i, [10]));
            ra.evaluate(
                window.rule(0),
                t0 + Duration::from_secs(5 * i),
                EVERY,
                Basis::Exact,
            );
        }
        assert!(window.rule(0).is_empty());
        assert_eq!(ra.states(), 0);
        let (_, exec) = sinks.iter_mut().find(|(l, _)| l == "pubsub/exec").unwrap();
        let levels: Vec<(Level, f64)> = std::iter::from_fn(|| exec.try_recv().ok())
            .map(|e| (e.level, e.value))
            .collect();
        assert_eq!(levels, [(Level::Critical, 30_000.0), (Level::Ok, 0.0)]);
    }

    #[test]
    fn values_that_are_a_lower_bound_raise_levels_but_never_lower_them() {
        let (mut ra, mut sinks) = engine();
        let mut window = WindowEngine::new(12, [10]);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_564_660);
        let (held, rising) = (
            from_values(&["10.0.0.1", "1"]),
            from_values(&["10.0.0.2", "2"]),
        );
        let put = |i: u64, lines: &[(&Key, u64)]| {
            let mut snap = IntervalSnapshot::empty(i, [10]);
            for (k, n) in lines {
                snap.rules[0].add(k, Cell::new(*n as f64, *n));
            }
            snap
        };
        let at = |i: u64| t0 + Duration::from_secs(5 * i);
        // `held` at 30,000 (CRITICAL) on whole values.
        window.apply(put(0, &[(&held, 30_000)]));
        ra.evaluate(window.rule(0), at(0), EVERY, Basis::Exact);
        // Then lower-bound values: `held` falls to OK as its interval
        // leaves (and out of the window), `rising` climbs to WARNING and
        // then CRITICAL. Only the rises are decided.
        for i in 1..=13u64 {
            let n = match i {
                3 => 20_000,
                6 => 5_000,
                _ => 0,
            };
            window.apply(put(i, &[(&rising, n)]));
            ra.evaluate(window.rule(0), at(i), EVERY, Basis::LowerBound);
        }
        assert!(window.rule(0).value(&held).is_none());
        let crit = ra.view()[1].alerts.clone();
        assert_eq!(crit.len(), 2, "{crit:?}");
        assert!(crit.iter().all(|a| a.level == Level::Critical), "{crit:?}");
        let held: Vec<(f64, bool)> = crit
            .iter()
            .map(|a| (a.value.as_f64().unwrap(), a.held))
            .collect();
        assert!(
            held.contains(&(30_000.0, true)),
            "at its last whole value: {crit:?}"
        );
        assert!(held.contains(&(25_000.0, false)), "{crit:?}");
        // Whole values again: `held` is at 0 and recovers.
        window.apply(IntervalSnapshot::empty(14, [10]));
        ra.evaluate(window.rule(0), at(14), EVERY, Basis::Exact);
        let (_, exec) = sinks.iter_mut().find(|(l, _)| l == "pubsub/exec").unwrap();
        let events: Vec<(u64, String, Level, f64)> = std::iter::from_fn(|| exec.try_recv().ok())
            .map(|e| {
                let i = e.time.duration_since(t0).unwrap().as_secs() / 5;
                (i, e.tags["ip"].clone(), e.level, e.value)
            })
            .collect();
        let want = [
            (0, "10.0.0.1", Level::Critical, 30_000.0),
            (3, "10.0.0.2", Level::Warning, 20_000.0),
            (6, "10.0.0.2", Level::Critical, 25_000.0),
            (14, "10.0.0.1", Level::Ok, 0.0),
        ]
        .map(|(i, ip, l, v)| (i, ip.to_string(), l, v));
        assert_eq!(events, want);
    }

    #[test]
    fn a_key_demoted_to_the_sketch_goes_on_at_its_estimate_without_a_recovery() {
        let (mut ra, mut sinks) = engine_with(STEADY);
        let c = Config::parse(STEADY, "t").unwrap();
        let mut window = WindowEngine::new(12, [1]);
        window.set_overflow(0, c.rules[0].overflow.as_ref());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_564_660);
        let snap = |i: u64, ip: &str, n: u64| {
            let mut s = IntervalSnapshot::empty(i, [1]);
            let cell = Cell::new(n as f64, n);
            s.rules[0].add(&from_values(&[ip]), cell);
            s
        };
        window.apply(snap(0, "a", 50));
        ra.evaluate(window.rule(0), t0, EVERY, Basis::Exact);
        // b's 500 lines take a's place (the threshold, 10, is warn's).
        let r = window.apply(snap(1, "b", 500));
        assert_eq!(
            (r.promoted.as_slice(), r.demoted.as_slice()),
            (&[1][..], &[1][..])
        );
        ra.evaluate(window.rule(0), t0 + EVERY, EVERY, Basis::Exact);
        let view = &ra.view()[0].alerts;
        let a = view
            .iter()
            .find(|k| k.tags["ip"] == "a")
            .expect("a still alerting");
        assert_eq!(a.level, Level::Warning);
        assert!(a.value.as_f64().unwrap() >= 50.0);
        assert!(a.error_bound.is_some(), "a's value is the sketch's");
        let b = view
            .iter()
            .find(|k| k.tags["ip"] == "b")
            .expect("b alerting");
        assert_eq!(b.level, Level::Critical);
        assert!(b.error_bound.is_some(), "b's value is partly the sketch's");
        let (_, log) = &mut sinks[0];
        let sent: Vec<(String, Level, Option<f64>)> = std::iter::from_fn(|| log.try_recv().ok())
            .map(|e| (e.tags["ip"].clone(), e.level, e.error_bound))
            .collect();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(
            (sent[0].0.as_str(), sent[0].1, sent[0].2),
            ("a", Level::Warning, None)
        );
        assert_eq!((sent[1].0.as_str(), sent[1].1), ("b", Level::Critical));
        assert!(sent[1].2.is_some(), "the event says b is approximate");
    }

    /// WARNING above 10 in the window, CRITICAL above 100; an unchanged
    /// level is re-sent a minute after the last event sent.
    const STEADY: &str = r#"
[[rule]]
name = "r"
measurement = "m"
group_by = ["ip"]
field = "n"
as = "n"

[[rule.alert]]
name = "b"
warn = '"n" > 10'
crit = '"n" > 100'
state_changes_only = "1m"
[rule.alert.log]
path = "/dev/null"
"#;

    /// One key's events as (rotation, level, time, duration): rotation `i`
    /// (every 5 s of monotonic time) closes an interval ending at
    /// `end(i)` with `value(i)` counted. The key sends 5 an interval up to
    /// rotation 40 (WARNING from rotation 2, a sum of 15), 30 up to 50
    /// (CRITICAL from 45), then nothing: it recovers at 59 and leaves the
    /// 12-interval window at 62.
    fn steady_key_events(end: impl Fn(u64) -> SystemTime) -> (RuleAlerts, Vec<Event>) {
        let (mut ra, mut sinks) = engine_with(STEADY);
        let mut window = WindowEngine::new(12, [10]);
        let mut events = Vec::new();
        for i in 0..70u64 {
            let value = match i {
                0..=40 => 5.0,
                41..=50 => 30.0,
                _ => 0.0,
            };
            let mut snap = IntervalSnapshot::empty(i, [10]);
            if value > 0.0 {
                let cell = Cell::new(value, 1);
                snap.rules[0].add(&from_values(&["10.0.0.1"]), cell);
            }
            window.apply(snap);
            ra.evaluate(window.rule(0), end(i), EVERY, Basis::Exact);
            while let Ok(e) = sinks[0].1.try_recv() {
                events.push((i, e.level, e.time, e.duration));
            }
        }
        (ra, events)
    }

    type Event = (u64, Level, SystemTime, Duration);

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_564_660)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn after_a_step_back_event_times_follow_the_clock_and_durations_and_re_sends_carry_on() {
        // NTP steps the wall clock back an hour between rotations 19 and 20.
        const HOUR: Duration = Duration::from_secs(3600);
        let end = |i: u64| {
            let t = t0() + EVERY * i as u32;
            if i < 20 {
                t
            } else {
                t - HOUR
            }
        };
        let (ra, events) = steady_key_events(end);
        // Each event is timed by the window's end, which went back with the
        // clock: the re-send at 26 comes an hour "before" the one at 14.
        // What the state measures carries on as if the clock had always
        // read so: the run's duration grows 5 s a rotation, the re-sends
        // come a minute apart (not an hour and a minute), and the run's
        // start (time - duration, Alertmanager's startsAt) moves back an
        // hour with the clock, so it never comes after the event.
        let want: Vec<Event> = [
            (2, Level::Warning),
            (14, Level::Warning),
            (26, Level::Warning),
            (38, Level::Warning),
            (42, Level::Critical),
            (54, Level::Critical),
            (59, Level::Warning),
            (62, Level::Ok),
        ]
        .into_iter()
        .map(|(i, level)| (i, level, end(i), EVERY * (i - 2) as u32))
        .collect();
        assert_eq!(events, want);
        assert_eq!(events[2].2 - events[2].3, t0() + secs(10) - HOUR);
        assert_eq!(ra.states(), 0);
    }

    #[test]
    fn after_a_jump_forward_durations_include_it_and_a_re_send_due_goes_at_once() {
        // A VM resumes ten minutes later between rotations 19 and 20.
        let end = |i: u64| {
            let t = t0() + EVERY * i as u32;
            if i < 20 {
                t
            } else {
                t + secs(600)
            }
        };
        let (_, events) = steady_key_events(end);
        // As for the window, the ten minutes passed: the run lasted them,
        // and the re-send due during them goes out at the first rotation
        // after, then a minute apart again.
        let want: Vec<Event> = [
            (2, Level::Warning),
            (14, Level::Warning),
            (20, Level::Warning),
            (32, Level::Warning),
            (42, Level::Critical),
            (54, Level::Critical),
            (59, Level::Warning),
            (62, Level::Ok),
        ]
        .into_iter()
        .map(|(i, level)| {
            let jumped = if i < 20 { secs(0) } else { secs(600) };
            (i, level, end(i), EVERY * (i - 2) as u32 + jumped)
        })
        .collect();
        assert_eq!(events, want);
    }

    #[test]
    fn an_alert_on_a_bounded_key_names_it_as_the_api_shows_it() {
        let (mut ra, mut sinks) = engine();
        let mut window = WindowEngine::new(12, [10]);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_564_660);
        let mut key = from_values(&["10.0.0.1", &"7".repeat(4096)]).to_vec();
        crate::key::bound(&mut key, 128);
        let id = crate::key::to_strings(&key)[1].clone();
        assert!(id.starts_with("777") && id.contains('\u{2026}'), "{id}");
        let mut snap = IntervalSnapshot::empty(0, [10]);
        let cell = Cell::new(30_000.0, 30_000);
        snap.rules[0].add(&key, cell);
        window.apply(snap);
        ra.evaluate(window.rule(0), t0, EVERY, Basis::Exact);
        let (_, exec) = sinks.iter_mut().find(|(l, _)| l == "pubsub/exec").unwrap();
        let e = exec.try_recv().unwrap();
        assert_eq!(e.tags["id"], id);
        assert!(e.id.contains(&id), "{}", e.id);
        assert!(
            e.message
                .contains(&format!("Store ID {id} for IP 10.0.0.1")),
            "{}",
            e.message
        );
    }
}
