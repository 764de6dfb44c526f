//! The rotation thread: closes an interval at every multiple of `every`
//! (drain the sources, slide the window, evaluate alerts, publish), applies
//! reloads between rotations, and saves and restores the state file.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, info_span, warn};

use crate::alert::engine::{Basis, Outgoing, RuleAlerts};
use crate::clock::Clock;
use crate::config::Config;
use crate::config::Scope;
use crate::control::{ClusterInput, Control, LocalAnswer, LocalQuery, TopAnswer};
use crate::metrics::Metrics;
use crate::persist::{self, SavedRule, SavedState};
use crate::rules::RuleSet;
use crate::sink::{spawn_sink, SinkHandle};
use crate::snapshot::{ByPath, CountTable, IntervalSnapshot, Intervals};
use crate::view::{Shared, WindowView};
use crate::window::{ApplyReport, WindowEngine};

/// What a reload hands each source.
pub struct Reload<'a> {
    pub rules: &'a Arc<RuleSet>,
    pub config: &'a Config,
    /// Per new rule: the id its counts carry (kept for rules whose grouping
    /// did not change).
    pub ids: &'a [u32],
    /// Counts made before the switch, by old rule index: the rotator moves
    /// them to the rules that keep their grouping.
    pub carry: Vec<(usize, CountTable)>,
}

/// Where a closed interval's counts come from.
pub trait IntervalSource: Send {
    /// Moves everything counted since the last call into `snap`.
    fn drain_into(&mut self, snap: &mut IntervalSnapshot);

    /// Switches to new rules. Called after `check_reload` said yes. An
    /// error leaves the source as it was, with the old rules. Sources
    /// reload in order and the first error ends the reload, so a source
    /// whose reload can fail comes before those whose reload cannot.
    fn reload(&mut self, _r: &mut Reload<'_>) -> Result<(), String> {
        Ok(())
    }

    /// Whether this source can take the new rules (before anything changes).
    fn check_reload(&self, _config: &Config) -> Result<(), String> {
        Ok(())
    }
}

/// Starts the sinks of every rule's alert blocks on `rt`; publishes the
/// blocks and sinks for the API and metrics.
pub fn start_alerts(
    config: &Config,
    shared: &Shared,
    rt: &tokio::runtime::Handle,
) -> Vec<RuleAlerts> {
    let mut sinks: Vec<SinkHandle> = Vec::new();
    let mut alerts = Vec::with_capacity(config.rules.len());
    for r in &config.rules {
        let ra = RuleAlerts::new(r, |block| {
            block
                .sinks
                .iter()
                .map(|c| {
                    let sink_name = format!("{}/{}/{}", r.name, block.name, c.kind());
                    let h = spawn_sink(c.clone(), sink_name, rt);
                    sinks.push(h.clone());
                    h
                })
                .collect()
        });
        for b in &ra.blocks {
            info!(
                rule = %r.name,
                block = %b.name,
                sinks = ?b.sinks.iter().map(|s| s.name().to_string()).collect::<Vec<_>>(),
                "alert block"
            );
        }
        alerts.push(ra);
    }
    let blocks = alerts
        .iter()
        .flat_map(|a| {
            a.blocks
                .iter()
                .map(|b| (a.rule.clone(), b.name.clone(), b.stats.clone()))
        })
        .collect();
    shared.set_alerting(blocks, sinks);
    alerts
}

/// Where a rule's alerts take their values from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Eval {
    /// This node's window, at each rotation.
    Node,
    /// The cluster's values, when the exchange brings them (`pending`: the
    /// end of the interval they are awaited for). `fallback`: the last
    /// exchange failed, so each rotation evaluates this node's window
    /// until one succeeds again. `known`: the end of the last interval
    /// evaluated on whole cluster values (every node's in), or where
    /// values that were not whole first came.
    Cluster {
        pending: Option<SystemTime>,
        fallback: bool,
        known: Option<SystemTime>,
    },
}

fn evals(config: &Config) -> Vec<Eval> {
    config
        .rules
        .iter()
        .map(|r| match (r.scope, r.cluster_threshold, &config.cluster) {
            (Scope::Cluster, Some(_), Some(_)) => Eval::Cluster {
                pending: None,
                fallback: false,
                known: None,
            },
            _ => Eval::Node,
        })
        .collect()
}

/// Closes intervals: drains the sources, slides the window, publishes.
pub struct Rotator {
    config: Config,
    rules: Arc<RuleSet>,
    /// Per rule: the id its kernel counts carry.
    ids: Vec<u32>,
    next_id: u32,
    window: WindowEngine,
    intervals: Intervals,
    /// End of the last closed interval as the wall clock named it (the
    /// window's own index runs ahead of it after a step back).
    window_end: Option<SystemTime>,
    period_s: f64,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    sources: Vec<Box<dyn IntervalSource>>,
    /// Per rule (config order), or empty for a rotator without alerting
    /// (its rules then all evaluate on this node's window: a cluster rule
    /// has alert blocks by construction, so needs its RuleAlerts).
    alerts: Vec<RuleAlerts>,
    /// Per rule: where its alerts take their values from.
    evals: Vec<Eval>,
    /// Counts of rules that survived a reload, made before the switch; they
    /// join the next interval.
    carry: Vec<CountTable>,
    rt: Option<tokio::runtime::Handle>,
}

impl Rotator {
    pub fn new(
        config: Config,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        sources: Vec<Box<dyn IntervalSource>>,
        alerts: Vec<RuleAlerts>,
        rt: Option<tokio::runtime::Handle>,
    ) -> Rotator {
        let rules = Arc::new(RuleSet::new(&config.rules));
        let n = config.rules.len();
        let mut window = WindowEngine::new(
            config.window.intervals(),
            config.rules.iter().map(|r| r.max_keys),
        );
        for (i, r) in config.rules.iter().enumerate() {
            window.set_overflow(i, r.overflow.as_ref());
        }
        Rotator {
            evals: evals(&config),
            alerts,
            window,
            ids: (0..n as u32).collect(),
            next_id: n as u32,
            rules,
            intervals: Intervals::new(config.window.every),
            window_end: None,
            period_s: config.window.period.as_secs_f64(),
            carry: Vec::new(),
            config,
            shared,
            metrics,
            sources,
            rt,
        }
    }

    #[cfg(test)]
    pub fn intervals(&self) -> Intervals {
        self.intervals
    }

    /// Rule ids as the kernel path must be configured with them.
    #[cfg(test)]
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Rule `rule`'s `limit` largest keys in the window.
    pub fn top(&self, rule: &str, limit: usize) -> Option<TopAnswer> {
        let i = self.config.rules.iter().position(|r| r.name == rule)?;
        let group_by = &self.config.rules[i].group_by;
        let w = self.window.rule(i);
        Some(TopAnswer {
            window_end: self.window_end,
            keys: w.len(),
            top: w
                .top(limit)
                .into_iter()
                .map(|(k, v)| {
                    let tags = crate::view::tags(group_by, k)
                        .map(|(n, v)| (n.to_string(), v))
                        .collect();
                    (tags, v, w.approximate(k))
                })
                .collect(),
        })
    }

    /// What a cluster exchange asks of rule `q.rule`'s window.
    pub fn local(&self, q: &LocalQuery) -> Option<LocalAnswer> {
        let i = self.config.rules.iter().position(|r| r.name == q.rule)?;
        let w = self.window.rule(i);
        let over = match q.at_least {
            Some(t) => w
                .iter()
                .filter(|(_, v)| *v >= t)
                .map(|(k, v)| (k.to_vec(), v))
                .collect(),
            None => Vec::new(),
        };
        let stateful = match q.at_least {
            Some(_) => self.alerts[i]
                .stateful_keys()
                .iter()
                .map(|k| k.to_vec())
                .collect(),
            None => Vec::new(),
        };
        Some(LocalAnswer {
            window_end: self.window_end,
            over,
            values: q.keys.iter().map(|k| w.value(k).unwrap_or(0.0)).collect(),
            stateful,
            top: w
                .top(q.top)
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v))
                .collect(),
        })
    }

    /// Evaluates cluster rule `i`'s alerts on this node's window, which
    /// ends at `end`, and hands the events to the sinks: the node counts
    /// alone for the rule until an exchange succeeds again.
    fn fall_back(&mut self, i: usize, end: SystemTime, why: &str) {
        self.enter_fallback(i, why);
        self.evaluate_own(i, end);
    }

    /// Evaluates rule `i`'s alerts on this node's window, which ends at
    /// `end`. For a cluster rule whose exchange fails, the node's counts
    /// are a lower bound of the cluster's (see [`Self::basis`]).
    fn evaluate_own(&mut self, i: usize, end: SystemTime) {
        let whole = !matches!(self.evals[i], Eval::Cluster { fallback: true, .. });
        let basis = self.basis(i, end, whole);
        let every = self.intervals.every();
        // None: a rotator without alerting.
        if let Some(a) = self.alerts.get_mut(i) {
            a.evaluate(self.window.rule(i), end, every, basis);
        }
    }

    /// Cluster rule `i` runs on this node's window from now on (once per
    /// outage: a log line, and the rule's fallback flag for the API).
    fn enter_fallback(&mut self, i: usize, why: &str) {
        if let Eval::Cluster {
            pending, fallback, ..
        } = &mut self.evals[i]
        {
            *pending = None;
            if !*fallback {
                warn!(
                    rule = %self.config.rules[i].name,
                    why,
                    "cluster rule falls back to this node's counts"
                );
                if let Some(c) = self.shared.cluster.get() {
                    c.set_fallback(&self.config.rules[i].name, true);
                }
            }
            *fallback = true;
        }
    }

    /// How rule `i`'s alerts take its values at `end`. Whole values are
    /// exact. A cluster rule's values that are not whole (this node's
    /// alone, or an exchange a node missed or that lacks a departed node)
    /// are a lower bound of the cluster's, taken as such (they raise
    /// levels but do not lower them) for one window period after whole
    /// values were last known: the lines that made its levels may still be
    /// in the window then, so a Redis outage or a late node sends no false
    /// recovery, nor the alert again once the values are whole. Past that
    /// period the values decide alone.
    fn basis(&mut self, i: usize, end: SystemTime, whole: bool) -> Basis {
        let period = self.config.window.period;
        let Eval::Cluster { known, .. } = &mut self.evals[i] else {
            return Basis::Exact;
        };
        if whole {
            return Basis::Exact;
        }
        let since = *known.get_or_insert(end);
        // A clock stepped back (end before `since`) holds too.
        match end.duration_since(since).map_or(true, |d| d < period) {
            true => Basis::LowerBound,
            false => Basis::Exact,
        }
    }

    /// An exchange's outcome for a cluster rule: evaluates the rule's
    /// alerts on the cluster values of the interval whose values are
    /// awaited, and returns the events for the lease holder to send; on a
    /// failed exchange, evaluates this node's window instead.
    pub fn cluster(&mut self, input: ClusterInput) -> Vec<Outgoing> {
        let Some(i) = self.config.rules.iter().position(|r| r.name == input.rule) else {
            return Vec::new();
        };
        let Eval::Cluster {
            pending,
            fallback,
            known,
        } = self.evals[i]
        else {
            return Vec::new();
        };
        let events = match (input.values, pending) {
            (None, Some(end)) => {
                self.fall_back(i, end, "the exchange failed");
                Vec::new()
            }
            (None, None) => {
                // Nothing awaited: the next rotation evaluates this node's
                // window at once.
                self.enter_fallback(i, "the exchange failed");
                Vec::new()
            }
            (Some((end, values)), p) => {
                if fallback {
                    info!(rule = %input.rule, "cluster rule evaluates the cluster's values again");
                    if let Some(c) = self.shared.cluster.get() {
                        c.set_fallback(&input.rule, false);
                    }
                }
                self.evals[i] = Eval::Cluster {
                    pending: p.filter(|&p| p != end),
                    fallback: false,
                    known: if p == Some(end) && values.complete {
                        Some(end)
                    } else {
                        known
                    },
                };
                let every = self.intervals.every();
                if p != Some(end) {
                    // This interval was evaluated already (on this node's
                    // window, while the exchange failed): the next one is
                    // the cluster's.
                    Vec::new()
                } else {
                    let basis = self.basis(i, end, values.complete);
                    self.alerts[i].decide(&values, end, every, basis)
                }
            }
        };
        self.shared
            .publish_alerts(self.alerts.iter().flat_map(|a| a.view()).collect());
        events
    }

    /// Drains every source into a snapshot of interval `index`, with what
    /// a reload carried over.
    fn collect(&mut self, index: u64) -> IntervalSnapshot {
        let mut snap = self.rules.new_snapshot(index);
        snap.spare = self.window.take_spare();
        if !self.carry.is_empty() {
            snap.merge(std::mem::take(&mut self.carry));
        }
        for s in &mut self.sources {
            s.drain_into(&mut snap);
        }
        snap
    }

    /// Closes interval `index`: its counts enter the window, which slides by
    /// one interval at least and then ends at the interval's end.
    pub fn rotate(&mut self, index: u64) {
        let span = info_span!("rotation", interval = index);
        let _g = span.enter();
        let started = Instant::now();
        let snap = self.collect(index);
        let lines: u64 = snap.rules.iter().map(|t| t.lines()).sum();
        // A cluster interval whose values never came is evaluated on this
        // node's window before it slides.
        for i in 0..self.evals.len() {
            if let Eval::Cluster {
                pending: Some(end), ..
            } = self.evals[i]
            {
                self.fall_back(i, end, "no cluster values came within the interval");
            }
        }
        let report = self.slide(snap);
        let end = self.intervals.end(index);
        self.window_end = Some(end);
        // Alerts see the window the API is about to publish; a cluster
        // rule's wait for the exchange.
        for i in 0..self.evals.len() {
            match &mut self.evals[i] {
                Eval::Cluster {
                    pending,
                    fallback: false,
                    ..
                } => *pending = Some(end),
                _ => self.evaluate_own(i, end),
            }
        }
        self.publish(Some(end), started);
        tracing::debug!(
            lines,
            expired_keys = report.expired_keys.iter().sum::<u64>(),
            overflow_lines = report.overflow_lines.iter().sum::<u64>(),
            "rotated"
        );
    }

    /// Adds `snap` to the window, and counts as dropped the lines that a
    /// path counted as points and their owning rule then refused, at the
    /// merge or in the window (see `Cell::owned`): each path's share leaves
    /// that path's points for key_table_full.
    fn slide(&mut self, snap: IntervalSnapshot) -> ApplyReport {
        let mut refused = ByPath::default();
        for t in &snap.rules {
            refused.add(t.late);
        }
        let was: Vec<bool> = self
            .window
            .rules()
            .iter()
            .map(|r| r.in_overflow())
            .collect();
        let report = self.window.apply(snap);
        for r in &report.refused_owned {
            refused.add(*r);
        }
        for ((rule, w), was) in self.config.rules.iter().zip(self.window.rules()).zip(was) {
            let Some(t) = w.tier_stats() else { continue };
            match (was, w.in_overflow()) {
                (false, true) => info!(
                    rule = %rule.name,
                    max_keys = rule.max_keys,
                    keys_estimated = t.keys_last_interval,
                    error_bound = t.error_bound,
                    "rule entered overflow: keys beyond max_keys are estimated in its sketch"
                ),
                (true, false) => info!(
                    rule = %rule.name,
                    promotions = t.promotions,
                    demotions = t.demotions,
                    lines_estimated = t.lines_estimated,
                    "rule left overflow: every key fits its exact table"
                ),
                _ => {}
            }
        }
        self.shared.refuse_late(refused);
        report
    }

    fn publish(&mut self, end: Option<SystemTime>, started: Instant) {
        self.shared
            .publish_alerts(self.alerts.iter().flat_map(|a| a.view()).collect());
        let view = WindowView::capture(&self.rules, &self.window, end, self.period_s);
        let elapsed = started.elapsed().as_secs_f64();
        self.shared.publish(view, elapsed);
        self.metrics.rotation_seconds.observe(elapsed);
    }

    /// Applies a new config: rules whose grouping did not change keep their
    /// window and alert states; the others start fresh. Window, ingest, HTTP
    /// and state settings take a restart (a window change is refused; the
    /// others are reported and kept as they were).
    pub fn reload(&mut self, mut new: Config) -> Result<String, String> {
        let old = &self.config;
        if new.window != old.window {
            return Err(format!(
                "{}: window.period and window.every cannot change while running; restart to apply (the config was not reloaded)",
                new.source
            ));
        }
        let mut restart = Vec::new();
        if new.ingest != old.ingest {
            restart.push("[ingest]");
        }
        if new.http != old.http {
            restart.push("[http]");
        }
        if new.state != old.state {
            restart.push("[state]");
        }
        // What cannot change now stays as it was.
        new.ingest = old.ingest.clone();
        new.http = old.http.clone();
        new.state = old.state.clone();

        for s in &self.sources {
            s.check_reload(&new)?;
        }
        let keep: Vec<Option<usize>> = new
            .rules
            .iter()
            .map(|n| {
                old.rules
                    .iter()
                    .position(|o| o.name == n.name && o.grouping() == n.grouping())
            })
            .collect();
        let mut next_id = self.next_id;
        let ids: Vec<u32> = keep
            .iter()
            .map(|k| match k {
                Some(i) => self.ids[*i],
                None => {
                    next_id += 1;
                    next_id - 1
                }
            })
            .collect();
        let rules = Arc::new(RuleSet::new(&new.rules));
        let mut r = Reload {
            rules: &rules,
            config: &new,
            ids: &ids,
            carry: Vec::new(),
        };
        // Everything that can fail comes first: a source that cannot take
        // the rules (the kernel's maps or rule map) leaves every source,
        // the window and the alert blocks with the old config.
        for s in &mut self.sources {
            s.reload(&mut r).map_err(|e| {
                format!(
                    "{}: {e} (the config was not reloaded; the old one stays in force)",
                    new.source
                )
            })?;
        }
        self.next_id = next_id;
        let old_sinks = self.shared.sinks();
        let mut alerts = match &self.rt {
            Some(rt) => start_alerts(&new, &self.shared, rt),
            None => Vec::new(),
        };
        // Counts made before the switch go to the rules that kept their
        // grouping, with what was carried before.
        let mut carry: Vec<CountTable> = RuleSet::new(&new.rules).new_tables();
        let old_carry = std::mem::take(&mut self.carry);
        for (i, t) in r.carry.into_iter().chain(old_carry.into_iter().enumerate()) {
            if let Some(j) = keep.iter().position(|k| *k == Some(i)) {
                carry[j].merge(t);
            }
        }
        self.carry = carry;
        let max_keys: Vec<usize> = new.rules.iter().map(|x| x.max_keys).collect();
        self.window.remap(&keep, &max_keys);
        for (i, r) in new.rules.iter().enumerate() {
            self.window.set_overflow(i, r.overflow.as_ref());
        }
        let mut old_alerts: Vec<Option<RuleAlerts>> = std::mem::take(&mut self.alerts)
            .into_iter()
            .map(Some)
            .collect();
        for (j, a) in alerts.iter_mut().enumerate() {
            if let Some(old) = keep[j].and_then(|i| old_alerts.get_mut(i).and_then(Option::take)) {
                a.adopt(old);
            }
        }
        // Sinks of the old blocks finish what they hold, then stop.
        for s in old_sinks.iter() {
            s.close();
        }
        let kept = keep.iter().filter(|k| k.is_some()).count();
        let fresh = keep.len() - kept;
        let removed = old.rules.len() - kept;
        self.alerts = alerts;
        let mut evals = evals(&new);
        for (j, e) in evals.iter_mut().enumerate() {
            // A kept cluster rule keeps its place in the exchange.
            if let (Eval::Cluster { .. }, Some(Some(old @ Eval::Cluster { .. }))) =
                (*e, keep[j].map(|i| self.evals.get(i).copied()))
            {
                *e = old;
            }
        }
        self.evals = evals;
        if let Some(c) = self.shared.cluster.get() {
            c.set_rules(crate::cluster::ClusterRule::of(&new));
        }
        self.rules = rules;
        self.ids = ids;
        self.config = new;
        self.publish(self.window_end, Instant::now());
        let mut msg = format!(
            "reloaded {}: {kept} rules kept their counts, {fresh} started fresh, {removed} removed",
            self.config.source
        );
        if !restart.is_empty() {
            msg.push_str(&format!(
                "; {} changed and take a restart to apply",
                restart.join(", ")
            ));
        }
        Ok(msg)
    }

    /// Writes the state file: the open interval's counts enter the window
    /// first, so nothing counted is lost.
    /// False when the file could not be written (logged).
    #[cfg(test)]
    pub fn save(&mut self, now: SystemTime) -> bool {
        if self.config.state.path.is_none() {
            return true;
        }
        self.fold_open(now);
        self.write_state(now)
    }

    /// Writes the state file of the window as it is (the open interval
    /// folded in already).
    fn write_state(&mut self, now: SystemTime) -> bool {
        let Some(path) = self.config.state.path.clone() else {
            return true;
        };
        let state = self.saved_state(now, |_| true, true);
        let keys: usize = state.rules.iter().map(|r| r.keys.len()).sum();
        match persist::write(&path, &state) {
            Ok(()) => {
                info!(path = %path.display(), keys, "saved the window and alert states");
                true
            }
            Err(e) => {
                error!(path = %path.display(), error = %e, "could not save the state file");
                false
            }
        }
    }

    /// Folds the open interval's counts into the window.
    fn fold_open(&mut self, now: SystemTime) {
        let index = self.intervals.index_at(now);
        let snap = self.collect(index);
        self.slide(snap);
    }

    /// The window of the rules `which` takes, as a state file holds it;
    /// with their alert states and overflow sketches when `whole`.
    fn saved_state(
        &self,
        now: SystemTime,
        which: impl Fn(usize) -> bool,
        whole: bool,
    ) -> SavedState {
        SavedState {
            saved_at: now,
            every: self.config.window.every,
            intervals: self.window.intervals(),
            current: self.window.current(),
            rules: (0..self.config.rules.len())
                .filter(|i| which(*i))
                .map(|i| {
                    let r = &self.config.rules[i];
                    let w = self.window.rule(i);
                    SavedRule {
                        name: r.name.clone(),
                        grouping: r.grouping().key(),
                        overflow_lines: w.overflow_lines,
                        keys: w.export().collect(),
                        alerts: match (whole, self.alerts.get(i)) {
                            (true, Some(a)) => a.export_states(),
                            _ => Vec::new(),
                        },
                        tier: w.export_tier().filter(|_| whole),
                    }
                })
                .collect(),
        }
    }

    /// Restores the state file when it fits this config and is younger
    /// than the window; reports and ignores it otherwise. Whether it did.
    pub fn restore(&mut self, now: SystemTime) -> bool {
        let Some(path) = self.config.state.path.clone() else {
            return false;
        };
        let state = match persist::read(&path) {
            Ok(Some(s)) => s,
            Ok(None) => return false,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "ignoring the state file");
                return false;
            }
        };
        let restored = self.restore_from(state, now);
        if let Err(e) = &restored {
            warn!(path = %path.display(), reason = %e, "ignoring the state file");
        }
        // Used once: a crash later must not restore this old state again.
        let _ = std::fs::remove_file(&path);
        restored.is_ok()
    }

    /// Restores the cluster rules' window this node parked in Redis at its
    /// last stop (the state file's encoding), as [`Self::restore`] does a
    /// state file: for a start without one. Whether it did.
    pub fn restore_parked(&mut self, window: &[u8], now: SystemTime) -> bool {
        let restored = persist::decode(window).and_then(|state| self.restore_from(state, now));
        match &restored {
            Ok(()) => info!("restored the cluster rules' window this node parked in Redis"),
            Err(e) => warn!(reason = %e, "ignoring the window this node parked in Redis"),
        }
        restored.is_ok()
    }

    fn restore_from(&mut self, state: SavedState, now: SystemTime) -> Result<(), String> {
        let w = self.config.window;
        if state.every != w.every || state.intervals != w.intervals() {
            return Err("it was saved for another window".into());
        }
        let age = now.duration_since(state.saved_at).unwrap_or(Duration::MAX);
        if age >= w.period {
            return Err(format!(
                "it is {} old, older than the window",
                humantime::format_duration(Duration::from_secs(age.as_secs().min(u32::MAX as u64)))
            ));
        }
        let Some(current) = state.current else {
            return Err("it holds no interval".into());
        };
        let (mut keys, mut alerts, mut sketches) = (0, 0, 0);
        for saved in state.rules {
            let Some(i) = self
                .config
                .rules
                .iter()
                .position(|r| r.name == saved.name && r.grouping().key() == saved.grouping)
            else {
                continue;
            };
            // A file written before keys were bounded may hold longer ones:
            // they are left out, and their lines count anew, bounded.
            let max = self.config.rules[i].max_key_bytes;
            let bounded = saved.keys.into_iter().filter(|k| k.key.len() <= max);
            keys += self.window.import(i, current, bounded.collect());
            self.window.add_overflow(i, saved.overflow_lines);
            // Restored only where the sketches keep their shape: a key
            // they hold comes back with its estimate, not from nothing.
            if let Some(t) = saved.tier {
                sketches += self.window.import_tier(i, t) as usize;
            }
            if let Some(a) = self.alerts.get_mut(i) {
                for (block, key, parts, value) in saved.alerts {
                    if key.len() > max {
                        continue;
                    }
                    alerts += a.import_state(&block, key, parts, value) as usize;
                }
            }
        }
        info!(
            keys,
            alerts, sketches, "restored the window, the overflow sketches and alert states"
        );
        self.window_end = Some(self.intervals.end(current));
        self.publish(self.window_end, Instant::now());
        Ok(())
    }

    /// Saves the state file (the open interval folded in), then drains the
    /// sources once more: what they still held came after the save and is
    /// lost with the process. Returns those lines (none, normally, as the
    /// daemon stops receiving before it asks to stop) and whether the save
    /// succeeded. Without a state file nothing is kept.
    pub fn stop(&mut self, now: SystemTime) -> Stopped {
        // A cluster node leaves its cluster rules' windows behind in Redis.
        let cluster = self
            .shared
            .cluster
            .get()
            .cloned()
            .filter(|_| self.evals.iter().any(|e| matches!(e, Eval::Cluster { .. })));
        if self.config.state.path.is_none() && cluster.is_none() {
            return Stopped {
                uncounted_lines: 0,
                saved: true,
            };
        }
        self.fold_open(now);
        // Parked first: the state file's fsync may take a while, and the
        // cluster counts this node live until it has parked.
        if let Some(c) = cluster {
            let evals = &self.evals;
            let parked = self.saved_state(now, |i| matches!(evals[i], Eval::Cluster { .. }), false);
            c.leave_behind(persist::encode(&parked));
        }
        let saved = self.write_state(now);
        let late = self.collect(self.intervals.index_at(now));
        Stopped {
            uncounted_lines: late.rules.iter().map(|t| t.lines()).sum(),
            saved,
        }
    }

    /// Rotates every `every` of `clock`'s monotonic time, at the wall
    /// clock's interval boundaries (see [`Pacer`]), applies reloads, and on
    /// Stop (or when every sender is gone) saves the state and returns what
    /// [`Rotator::stop`] returns.
    pub fn run(mut self, clock: Arc<dyn Clock>, control: mpsc::Receiver<Control>) -> Stopped {
        let mut pacer = Pacer::start(self.config.window.every, clock.now(), clock.monotonic());
        self.shared.watch_rotations(clock.clone());
        loop {
            loop {
                let wait = pacer.wait(clock.monotonic());
                if wait.is_zero() {
                    break;
                }
                // A simulated clock moves without waking anyone: look again
                // at least every 200 ms.
                match control.recv_timeout(wait.min(Duration::from_millis(200))) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(Control::Reload(config, reply)) => {
                        let r = self.reload(*config);
                        let _ = reply.send(r);
                    }
                    Ok(Control::Top { rule, limit, reply }) => {
                        let _ = reply.send(self.top(&rule, limit));
                    }
                    Ok(Control::Local(q, reply)) => {
                        let _ = reply.send(self.local(&q));
                    }
                    Ok(Control::Cluster(input, reply)) => {
                        let _ = reply.send(self.cluster(input));
                    }
                    Ok(Control::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                        // Nothing is answered from here: a query waiting
                        // (a cluster exchange's) fails at once rather than
                        // after the save.
                        drop(control);
                        return self.stop(clock.now());
                    }
                }
            }
            let closing = pacer.close(clock.now(), clock.monotonic());
            self.rotate(closing);
            self.shared.interval_closed(clock.monotonic());
        }
    }
}

/// How a stop went: the lines counted after the state was saved (lost
/// with the process), and whether the save succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub uncounted_lines: u64,
    pub saved: bool,
}

/// How far the wall clock may move from the monotonic one between two
/// rotations (NTP slewing, at most 0.5 ms a second) before the rotations are
/// aligned to its boundaries again; at most a quarter interval.
const WALL_TOLERANCE: Duration = Duration::from_millis(100);

/// When the next rotation is due and which interval it closes: paced by the
/// monotonic clock, named by the wall clock.
///
/// - **Start.** The first rotation is due at the first wall-clock boundary
///   at least half an interval away; it closes the interval that boundary
///   ends.
/// - **In step.** Each next rotation is due `every` after the previous one
///   on the monotonic clock and closes the next interval, as long as the
///   wall clock, when it is due, reads the boundary within
///   [`WALL_TOLERANCE`] (plus however late the rotation runs).
/// - **Out of step** (the wall clock was stepped or jumped, a VM resumed, or
///   the rotation ran an interval or more late): the rotation closes the
///   interval the wall clock was in half an interval ago (where most of the
///   lines it drains arrived), and the next is aligned as at start, at
///   least half an interval later: one rotation, never a burst of them. (A
///   rotation late by less than an interval keeps the schedule: the next is
///   due `every` after the time it was due.)
///
/// The window ([`WindowEngine::apply`]) slides by one interval at least at
/// each rotation: after a step back the wall clock names intervals it named
/// before, and keys still leave one period after their last line on the
/// monotonic clock. A jump forward by k intervals closes the k - 1 skipped
/// ones as empty in that one rotation: after a jump of a period or more the
/// window holds only what the last interval counted.
#[derive(Debug, Clone, Copy)]
struct Pacer {
    intervals: Intervals,
    every: Duration,
    tolerance: Duration,
    /// The interval the next rotation closes.
    next: u64,
    /// When it is due, on the monotonic clock.
    due: Instant,
}

impl Pacer {
    fn start(every: Duration, wall: SystemTime, mono: Instant) -> Pacer {
        let mut p = Pacer {
            intervals: Intervals::new(every),
            every,
            tolerance: WALL_TOLERANCE.min(every / 4),
            next: 0,
            due: mono,
        };
        p.align(wall, mono);
        p
    }

    /// Aims at the first wall-clock boundary at least half an interval away.
    fn align(&mut self, wall: SystemTime, mono: Instant) {
        self.next = self.intervals.index_at(wall + self.every / 2);
        let wait = self.intervals.end(self.next).duration_since(wall);
        self.due = mono + wait.unwrap_or_default();
    }

    /// How long until the next rotation is due.
    fn wait(&self, mono: Instant) -> Duration {
        self.due.saturating_duration_since(mono)
    }

    /// The interval the rotation due now closes; plans the next one.
    fn close(&mut self, wall: SystemTime, mono: Instant) -> u64 {
        let late = mono.saturating_duration_since(self.due);
        let expected = self.intervals.end(self.next) + late;
        let drift = match wall.duration_since(expected) {
            Ok(ahead) => ahead,
            Err(behind) => behind.duration(),
        };
        if late < self.every && drift <= self.tolerance {
            let closing = self.next;
            self.next += 1;
            self.due += self.every;
            return closing;
        }
        let middle = wall.checked_sub(self.every / 2).unwrap_or(wall);
        let closing = self.intervals.index_at(middle);
        self.align(wall, mono);
        warn!(
            drift_ms = drift.as_millis() as u64,
            wall_ahead = wall >= expected,
            late_ms = late.as_millis() as u64,
            interval = closing,
            "the wall clock moved or the rotation ran late: rotations are aligned to the wall clock again"
        );
        closing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::event::Level;
    use crate::config::Mode;
    use crate::key;
    use crate::snapshot::Cell;
    use crate::view::ModeInfo;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Mutex;

    /// (rule index, key, value) for the next interval.
    type Pending = Arc<Mutex<Vec<(usize, Vec<u8>, f64)>>>;

    /// A source fed by the test: what it holds goes into the next interval.
    struct Feed(Pending, usize);

    impl IntervalSource for Feed {
        fn drain_into(&mut self, snap: &mut IntervalSnapshot) {
            let mut tables: Vec<CountTable> = (0..self.1).map(|_| CountTable::new(1000)).collect();
            for (r, k, v) in self.0.lock().unwrap().drain(..) {
                tables[r].add(&k, Cell::new(v, 1));
            }
            snap.merge(tables);
        }

        fn reload(&mut self, r: &mut Reload<'_>) -> Result<(), String> {
            self.1 = r.config.rules.len();
            Ok(())
        }
    }

    fn rotator_with(config: Config) -> (Rotator, Pending, Arc<Shared>) {
        let rules = RuleSet::new(&config.rules);
        let shared = Arc::new(Shared::new(
            &rules,
            60.0,
            ModeInfo {
                active: "userspace",
                requested: Mode::Userspace,
                reason: "test".into(),
                kernel: None,
            },
        ));
        let metrics = Arc::new(Metrics::new(shared.clone()));
        let feed = Arc::new(Mutex::new(Vec::new()));
        let n = config.rules.len();
        let r = Rotator::new(
            config,
            shared.clone(),
            metrics,
            vec![Box::new(Feed(feed.clone(), n))],
            Vec::new(),
            None,
        );
        (r, feed, shared)
    }

    fn rotator() -> (Rotator, Pending, Arc<Shared>) {
        rotator_with(Config::embedded_default())
    }

    /// Captured events of a rotator's cluster rule's alerts.
    type Events = tokio::sync::mpsc::Receiver<Arc<crate::alert::event::AlertEvent>>;

    /// A rotator with a cluster rule "top" by ip (warn over 300, crit over
    /// 600, state changes only, one interval 5 s, the window 60 s), its
    /// alerts' events captured.
    fn cluster_rotator() -> (Rotator, Pending, Events) {
        let config = Config::parse(
            r#"
[window]
period = "60s"
every = "5s"
[cluster]
redis = "redis://127.0.0.1:1"
node = "node-a"
[[rule]]
name = "top"
measurement = "combined"
group_by = ["ip"]
[[rule.alert]]
warn = '"count" > 300'
crit = '"count" > 600'
state_changes_only = true
[rule.alert.log]
path = "/dev/null"
"#,
            "t.toml",
        )
        .unwrap();
        let mut rx = None;
        let alerts = vec![RuleAlerts::new(&config.rules[0], |_| {
            let (h, r) = crate::sink::SinkHandle::capture("top/log", "log");
            rx = Some(r);
            vec![h]
        })];
        let (mut r, feed, _) = rotator_with(config);
        r.alerts = alerts;
        (r, feed, rx.unwrap())
    }

    const HOT: &str = "192.0.2.9";

    /// Hands rule "top" the exchange of the interval ending at `end`: the
    /// key HOT at `v`, 350 of it this node's; None: the exchange failed.
    /// The levels of the events decided.
    fn exchanged(r: &mut Rotator, end: Option<SystemTime>, v: f64, complete: bool) -> Vec<Level> {
        use crate::alert::engine::ClusterValues;
        let values = end.map(|end| {
            let k = key::from_values(&[HOT]);
            let keys = [(k, (v, vec![350.0, v - 350.0]))].into_iter().collect();
            let nodes: Arc<[String]> = vec!["node-a".to_string(), "node-b".to_string()].into();
            let values = ClusterValues {
                nodes,
                keys,
                complete,
            };
            (end, values)
        });
        let input = ClusterInput {
            rule: "top".into(),
            values,
        };
        r.cluster(input).iter().map(|o| o.event.level).collect()
    }

    fn sent(rx: &mut Events) -> Vec<(Level, f64)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| (e.level, e.value))
            .collect()
    }

    fn level(r: &Rotator) -> Level {
        r.alerts[0].view()[0].alerts[0].level
    }

    #[test]
    fn while_the_exchange_fails_a_cluster_alert_is_held_for_a_window_then_runs_on_own_counts() {
        let (mut r, feed, mut rx) = cluster_rotator();
        let k = key::from_values(&[HOT]).to_vec();
        let first = 400_000_000u64;
        // 350 here, 700 in the cluster: CRITICAL, for the holder to send.
        feed.lock().unwrap().push((0, k.clone(), 350.0));
        r.rotate(first);
        let end = r.intervals().end(first);
        assert_eq!(exchanged(&mut r, Some(end), 700.0, true), [Level::Critical]);
        // Redis goes. This node's 350 is all it knows: the CRITICAL holds
        // for a window period after the cluster's 700 (nothing sent), then
        // the node's own counts decide: WARNING. 350 more at the sixth
        // interval keep the node's value at 350 when the first leave.
        assert!(exchanged(&mut r, None, 0.0, true).is_empty());
        for i in 1..=12u64 {
            if i == 6 {
                feed.lock().unwrap().push((0, k.clone(), 350.0));
            }
            r.rotate(first + i);
            if i < 12 {
                assert_eq!(sent(&mut rx), [], "interval {i}");
                assert_eq!(level(&r), Level::Critical);
            } else {
                assert_eq!(sent(&mut rx), [(Level::Warning, 350.0)], "a window on");
            }
        }
        // Redis is back: the interval already evaluated here stays so, the
        // next is the cluster's 700: CRITICAL, for the holder to send.
        for i in [13, 14] {
            r.rotate(first + i);
            let end = r.intervals().end(first + i);
            let want: &[Level] = if i == 13 { &[] } else { &[Level::Critical] };
            assert_eq!(exchanged(&mut r, Some(end), 700.0, true), want, "{i}");
        }
    }

    #[test]
    fn an_exchange_a_node_missed_raises_levels_but_lowers_none_for_a_window() {
        let (mut r, _, _) = cluster_rotator();
        let first = 400_000_000u64;
        let at = |r: &mut Rotator, i: u64, v: f64, complete: bool| {
            r.rotate(first + i);
            let end = r.intervals().end(first + i);
            exchanged(r, Some(end), v, complete)
        };
        assert_eq!(at(&mut r, 0, 400.0, true), [Level::Warning]);
        // node-b misses the deadline: its share is not in, the values are
        // at least what they say. 700 is CRITICAL; 350 (node-a's share
        // alone) holds it.
        assert_eq!(at(&mut r, 1, 700.0, false), [Level::Critical]);
        for i in 2..=11 {
            assert_eq!(at(&mut r, i, 350.0, false), [], "interval {i}");
            assert_eq!(level(&r), Level::Critical);
        }
        // A window after the last whole values (interval 0), the values
        // decide alone, whole or not.
        assert_eq!(at(&mut r, 12, 350.0, false), [Level::Warning]);
        // Whole values again decide at once.
        assert_eq!(at(&mut r, 13, 700.0, true), [Level::Critical]);
        assert_eq!(at(&mut r, 14, 200.0, true), [Level::Ok]);
    }

    #[test]
    fn a_steady_key_reaches_its_per_minute_rate_and_leaves_75s_after_silence() {
        // 20,000 lines a minute on simulated time: 1,666.67 per 5 s interval.
        let (mut r, feed, shared) = rotator();
        let k = key::from_values(&["192.0.2.2", "900002"]);
        let start = 340_000_000u64;
        for i in 0..24 {
            feed.lock().unwrap().push((0, k.to_vec(), 20_000.0 / 12.0));
            r.rotate(start + i);
        }
        let v = r.top("top_combined", 1).unwrap().top[0].1;
        assert!((v - 20_000.0).abs() < 1e-6, "{v}");
        // 75 s of silence: 15 rotations.
        for i in 24..39 {
            r.rotate(start + i);
        }
        assert_eq!(shared.view().rule("top_combined").unwrap().keys(), 0);
        assert_eq!(shared.rotations.load(Relaxed), 39);
    }

    #[test]
    fn rotation_thread_closes_each_interval_once_on_simulated_time() {
        use crate::clock::ManualClock;
        use std::time::UNIX_EPOCH;
        let (r, feed, shared) = rotator();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = Arc::new(ManualClock::new(t0));
        let (tx, rx) = mpsc::channel();
        let c: Arc<dyn Clock> = clock.clone();
        let th = std::thread::spawn(move || r.run(c, rx));
        feed.lock()
            .unwrap()
            .push((0, key::from_values(&["a", "b"]).to_vec(), 1.0));
        // Advance only once the thread has read the clock since the last
        // rotation, so that it waits for the boundary this test then passes.
        let wait_for_read = |after: u64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while clock.reads() <= after {
                assert!(
                    Instant::now() < deadline,
                    "rotation thread never read the clock"
                );
                std::thread::yield_now();
            }
        };
        // The thread has read both clocks once it watches its rotations.
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.since_last_close().is_none() {
            assert!(Instant::now() < deadline, "rotation thread never started");
            std::thread::yield_now();
        }
        for n in 1..=3u64 {
            clock.advance(Duration::from_secs(5));
            let deadline = Instant::now() + Duration::from_secs(10);
            while shared.rotations.load(Relaxed) < n {
                assert!(Instant::now() < deadline, "rotation {n} did not happen");
                std::thread::sleep(Duration::from_millis(1));
            }
            wait_for_read(clock.reads());
        }
        tx.send(Control::Stop).unwrap();
        th.join().unwrap();
        let view = shared.view();
        assert_eq!(
            view.window_end,
            Some(t0 + Duration::from_secs(15)),
            "the window ends at the last boundary passed"
        );
        assert_eq!(view.rule("top_combined").unwrap().keys(), 1);
    }

    /// Lets simulated time pass until the pacer's next rotation is due,
    /// runs it, and returns how long that was and the interval it closed.
    fn next_rotation(
        clock: &crate::clock::ManualClock,
        pacer: &mut Pacer,
        r: &mut Rotator,
    ) -> (Duration, u64) {
        let wait = pacer.wait(clock.monotonic());
        clock.advance(wait);
        let closing = pacer.close(clock.now(), clock.monotonic());
        r.rotate(closing);
        (wait, closing)
    }

    fn t0() -> SystemTime {
        // A multiple of 5 s: intervals start on the second.
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    const EVERY: Duration = Duration::from_secs(5);

    #[test]
    fn a_step_back_of_30s_mid_window_leaves_rotations_every_5s_and_expiry_one_period_after_the_last_line(
    ) {
        use crate::clock::ManualClock;
        let (mut r, feed, shared) = rotator();
        let clock = ManualClock::new(t0());
        let mut pacer = Pacer::start(EVERY, clock.now(), clock.monotonic());
        let keys = || shared.view().rule("top_combined").unwrap().keys();
        feed.lock()
            .unwrap()
            .push((0, key::from_values(&["a", "b"]).to_vec(), 1.0));
        let (_, first) = next_rotation(&clock, &mut pacer, &mut r);
        let last_line = clock.monotonic();
        for _ in 2..=6 {
            assert_eq!(next_rotation(&clock, &mut pacer, &mut r).0, EVERY);
        }
        // Two seconds into the seventh interval, NTP steps the clock back
        // 30 s: the rotation is still due 3 s later.
        clock.advance(Duration::from_secs(2));
        clock.step_back(Duration::from_secs(30));
        assert_eq!(pacer.wait(clock.monotonic()), Duration::from_secs(3));
        let (_, seventh) = next_rotation(&clock, &mut pacer, &mut r);
        // The wall clock names it: the first interval again.
        assert_eq!(seventh, first);
        assert_eq!(shared.view().window_end, Some(clock.now()));
        for n in 8..=12 {
            assert_eq!(
                next_rotation(&clock, &mut pacer, &mut r).0,
                EVERY,
                "rotation {n}"
            );
            assert_eq!(keys(), 1, "still in the window after rotation {n}");
        }
        let (wait, _) = next_rotation(&clock, &mut pacer, &mut r);
        assert_eq!(wait, EVERY);
        assert_eq!(keys(), 0, "gone after rotation 13");
        assert_eq!(clock.monotonic() - last_line, Duration::from_secs(60));
        assert_eq!(shared.view().window_end, Some(clock.now()));
        assert_eq!(shared.rotations.load(Relaxed), 13);
    }

    #[test]
    fn a_jump_forward_of_10_minutes_empties_the_window_without_a_burst_of_rotations() {
        use crate::clock::ManualClock;
        let (mut r, feed, shared) = rotator();
        let clock = ManualClock::new(t0());
        let mut pacer = Pacer::start(EVERY, clock.now(), clock.monotonic());
        let push = |k: &str| {
            feed.lock()
                .unwrap()
                .push((0, key::from_values(&[k, "1"]).to_vec(), 1.0));
        };
        for k in ["a", "b", "c"] {
            push(k);
            next_rotation(&clock, &mut pacer, &mut r);
        }
        assert_eq!(shared.view().rule("top_combined").unwrap().keys(), 3);
        // A VM resumes 10 minutes later, two seconds into an interval in
        // which a line arrives.
        clock.advance(Duration::from_secs(2));
        clock.step_forward(Duration::from_secs(600));
        push("d");
        let (_, closed) = next_rotation(&clock, &mut pacer, &mut r);
        assert_eq!(closed, r.intervals().index_at(clock.now()) - 1);
        assert_eq!(shared.view().window_end, Some(clock.now()));
        let top = r.top("top_combined", 10).unwrap();
        assert_eq!(top.keys, 1, "only the last interval's line is left");
        assert_eq!(top.window_end, Some(clock.now()));
        // One rotation closed the 120 skipped intervals; the next minute of
        // monotonic time has one every 5 s, on the wall clock's boundaries.
        let rotations = shared.rotations.load(Relaxed);
        let start = clock.monotonic();
        while clock.monotonic() - start < Duration::from_secs(60) {
            let (wait, _) = next_rotation(&clock, &mut pacer, &mut r);
            assert_eq!(wait, EVERY);
            let end = shared.view().window_end.unwrap();
            assert_eq!(end, clock.now());
        }
        assert_eq!(shared.rotations.load(Relaxed) - rotations, 12);
        assert_eq!(shared.view().rule("top_combined").unwrap().keys(), 0);
    }

    #[test]
    fn a_rotation_late_by_several_intervals_is_not_followed_by_a_burst() {
        let clock = crate::clock::ManualClock::new(t0() + Duration::from_millis(4_990));
        let mut pacer = Pacer::start(EVERY, clock.now(), clock.monotonic());
        // Started 10 ms before a boundary: the first rotation closes the
        // next interval, not a 10 ms one.
        assert_eq!(pacer.wait(clock.monotonic()), Duration::from_millis(5_010));
        let first = pacer.next;
        // The rotation thread was held up (a slow drain) for 20 s.
        clock.advance(Duration::from_millis(25_010));
        let closed = pacer.close(clock.now(), clock.monotonic());
        assert_eq!(
            closed,
            first + 4,
            "the interval the lines mostly arrived in"
        );
        assert_eq!(pacer.wait(clock.monotonic()), EVERY);
        // A slightly late wake-up and NTP slewing stay in step.
        clock.advance(EVERY + Duration::from_millis(30));
        clock.step_back(Duration::from_millis(20));
        assert_eq!(pacer.close(clock.now(), clock.monotonic()), closed + 1);
        assert_eq!(pacer.wait(clock.monotonic()), Duration::from_millis(4_970));
    }

    #[test]
    fn after_a_step_back_of_an_hour_an_alert_runs_on_from_where_it_was() {
        use crate::alert::event::Level;
        use crate::clock::ManualClock;
        use crate::sink::SinkHandle;
        const HOUR: Duration = Duration::from_secs(3600);
        let text = "[[rule]]\nname = \"r\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\n\
                    [[rule.alert]]\nname = \"b\"\nwarn = '\"count\" > 0'\n\
                    state_changes_only = \"1m\"\n[rule.alert.log]\npath = \"/dev/null\"\n";
        let config = Config::parse(text, "t.toml").unwrap();
        let (mut r, feed, shared) = rotator_with(config.clone());
        let (sink, mut events) = SinkHandle::capture("r/b/log", "log");
        r.alerts = vec![RuleAlerts::new(&config.rules[0], |_| vec![sink.clone()])];
        let clock = ManualClock::new(t0());
        let mut pacer = Pacer::start(EVERY, clock.now(), clock.monotonic());
        let mut rotate = || {
            feed.lock()
                .unwrap()
                .push((0, key::from_values(&["a"]).to_vec(), 1.0));
            next_rotation(&clock, &mut pacer, &mut r);
        };
        rotate();
        let first = events.try_recv().unwrap();
        assert_eq!(
            (first.level, first.duration),
            (Level::Warning, Duration::ZERO)
        );
        for _ in 2..=6 {
            rotate();
        }
        // Two seconds into the seventh interval, the clock steps back an
        // hour: the window's end, and so the alert's `since`, go back with
        // it.
        clock.advance(Duration::from_secs(2));
        clock.step_back(HOUR);
        rotate();
        assert_eq!(shared.view().window_end, Some(clock.now()));
        let since = |shared: &Shared| shared.alerts()[0].alerts[0].since.clone();
        assert_eq!(
            since(&shared),
            Some(crate::goformat::rfc3339(first.time - HOUR))
        );
        for _ in 8..=12 {
            rotate();
        }
        assert!(events.try_recv().is_err(), "nothing new to say until 1m");
        // A minute after the first event, on the monotonic clock, the
        // unchanged WARNING is re-sent, a minute into its run.
        rotate();
        let again = events.try_recv().unwrap();
        assert_eq!(again.level, Level::Warning);
        assert_eq!(again.time, clock.now());
        assert_eq!(again.time, first.time + Duration::from_secs(60) - HOUR);
        assert_eq!(again.duration, Duration::from_secs(60));
    }

    const TWO: &str = "[[rule]]\nname = \"a\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\n\
                       [[rule]]\nname = \"b\"\nmeasurement = \"m\"\ngroup_by = [\"id\"]\n";

    #[test]
    fn reload_keeps_counts_of_unchanged_rules_and_restarts_regrouped_ones() {
        let (mut r, feed, shared) = rotator_with(Config::parse(TWO, "t.toml").unwrap());
        feed.lock()
            .unwrap()
            .push((0, key::from_values(&["1.1.1.1"]).to_vec(), 3.0));
        feed.lock()
            .unwrap()
            .push((1, key::from_values(&["42"]).to_vec(), 5.0));
        r.rotate(100);
        // b now groups by ip: fresh. A new rule c. a unchanged (its max_keys
        // changes, which is not grouping), and moves to the end.
        let text = "[[rule]]\nname = \"b\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\n\
                    [[rule]]\nname = \"c\"\nmeasurement = \"n\"\ngroup_by = [\"ip\"]\n\
                    [[rule]]\nname = \"a\"\nmeasurement = \"m\"\ngroup_by = [\"ip\"]\nmax_keys = 10\n";
        let msg = r.reload(Config::parse(text, "t.toml").unwrap()).unwrap();
        assert!(
            msg.contains("1 rules kept their counts, 2 started fresh, 1 removed"),
            "{msg}"
        );
        let view = shared.view();
        assert_eq!(view.rule("a").unwrap().keys(), 1);
        assert_eq!(view.rule("b").unwrap().keys(), 0);
        assert_eq!(view.rule("c").unwrap().keys(), 0);
        // a's id is kept, b and c get new ones.
        assert_eq!(r.ids(), [2, 3, 0]);
        feed.lock()
            .unwrap()
            .push((2, key::from_values(&["1.1.1.1"]).to_vec(), 1.0));
        r.rotate(101);
        assert_eq!(r.top("a", 1).unwrap().top[0].1, 4.0);
        assert_eq!(shared.view().rule("a").unwrap().keys(), 1);
    }

    /// A source whose reload fails the first `self.0` times, as the
    /// kernel's does when it cannot take the rules.
    struct Refuses(usize);

    impl IntervalSource for Refuses {
        fn drain_into(&mut self, _snap: &mut IntervalSnapshot) {}

        fn reload(&mut self, _r: &mut Reload<'_>) -> Result<(), String> {
            if self.0 == 0 {
                return Ok(());
            }
            self.0 -= 1;
            Err("the maps cannot grow".into())
        }
    }

    #[test]
    fn a_source_refusing_the_reload_leaves_the_old_config_in_force() {
        let (mut r, feed, shared) = rotator_with(Config::parse(TWO, "t.toml").unwrap());
        r.sources.insert(0, Box::new(Refuses(1)));
        feed.lock()
            .unwrap()
            .push((1, key::from_values(&["42"]).to_vec(), 5.0));
        r.rotate(100);
        let text = "[[rule]]\nname = \"b\"\nmeasurement = \"m\"\ngroup_by = [\"id\"]\n\
                    [[rule]]\nname = \"c\"\nmeasurement = \"n\"\ngroup_by = [\"ip\"]\n";
        let e = r
            .reload(Config::parse(text, "t.toml").unwrap())
            .unwrap_err();
        assert!(e.contains("the maps cannot grow"), "{e}");
        assert!(e.contains("the old one stays in force"), "{e}");
        // Rules, ids, window and the other sources as they were.
        assert_eq!(r.ids(), [0, 1]);
        assert!(r.top("a", 1).is_some() && r.top("c", 1).is_none());
        feed.lock()
            .unwrap()
            .push((1, key::from_values(&["42"]).to_vec(), 1.0));
        r.rotate(101);
        assert_eq!(r.top("b", 1).unwrap().top[0].1, 6.0);
        assert_eq!(shared.view().rule("a").unwrap().keys(), 0);
        // The same reload, accepted, takes the ids the refused one did not.
        r.reload(Config::parse(text, "t.toml").unwrap()).unwrap();
        assert_eq!(r.ids(), [1, 2]);
        assert_eq!(r.top("b", 1).unwrap().top[0].1, 6.0);
    }

    #[test]
    fn reload_refuses_a_window_change() {
        let (mut r, _, _) = rotator_with(Config::parse(TWO, "t.toml").unwrap());
        let text = format!("[window]\nperiod = \"2m\"\n{TWO}");
        let e = r
            .reload(Config::parse(&text, "t.toml").unwrap())
            .unwrap_err();
        assert!(e.contains("cannot change while running"), "{e}");
    }

    #[test]
    fn state_survives_a_restart_and_a_stale_or_foreign_file_is_ignored() {
        let dir = std::env::temp_dir().join(format!("tt-state-{}", std::process::id()));
        let path = dir.join("state");
        let text = format!("[state]\npath = \"{}\"\n{TWO}", path.display());
        let (mut r, feed, _) = rotator_with(Config::parse(&text, "t.toml").unwrap());
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let iv = r.intervals();
        feed.lock()
            .unwrap()
            .push((0, key::from_values(&["1.1.1.1"]).to_vec(), 3.0));
        r.rotate(iv.index_at(t0));
        // Counted in the open interval, then SIGTERM: saved too.
        feed.lock()
            .unwrap()
            .push((0, key::from_values(&["1.1.1.1"]).to_vec(), 2.0));
        r.save(t0 + Duration::from_secs(7));

        let (mut back, _, shared) = rotator_with(Config::parse(&text, "t.toml").unwrap());
        back.restore(t0 + Duration::from_secs(9));
        assert_eq!(back.top("a", 1).unwrap().top[0].1, 5.0);
        assert_eq!(shared.view().rule("a").unwrap().keys(), 1);
        assert!(!path.exists(), "a state file is used once");

        // Older than the window: ignored.
        r.save(t0 + Duration::from_secs(7));
        let (mut late, _, shared) = rotator_with(Config::parse(&text, "t.toml").unwrap());
        late.restore(t0 + Duration::from_secs(7 + 61));
        assert_eq!(shared.view().rule("a").unwrap().keys(), 0);

        // Not a state file: ignored.
        std::fs::write(&path, b"garbage").unwrap();
        let (mut bad, _, shared) = rotator_with(Config::parse(&text, "t.toml").unwrap());
        bad.restore(t0 + Duration::from_secs(8));
        assert_eq!(shared.view().rule("a").unwrap().keys(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_overflow_sketches_and_approximate_keys_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("tt-sketch-{}", std::process::id()));
        let path = dir.join("state");
        let text = format!(
            "[state]\npath = \"{}\"\n[[rule]]\nname = \"a\"\nmeasurement = \"m\"\n\
             group_by = [\"ip\"]\nmax_keys = 2\n",
            path.display()
        );
        let (mut r, feed, _) = rotator_with(Config::parse(&text, "t.toml").unwrap());
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let iv = r.intervals();
        let k = |ip: &str| key::from_values(&[ip]).to_vec();
        for ip in ["1.1.1.1", "2.2.2.2"] {
            feed.lock().unwrap().push((0, k(ip), 1.0));
        }
        r.rotate(iv.index_at(t0));
        // The table is full: 3.3.3.3 goes to the sketch, 4.4.4.4 passes the
        // smallest exact key and is promoted, approximate.
        feed.lock().unwrap().push((0, k("3.3.3.3"), 1.0));
        feed.lock().unwrap().push((0, k("4.4.4.4"), 9.0));
        r.rotate(iv.index_at(t0) + 1);
        let before = r.window.rule(0);
        let (est, approx) = (
            before.estimate(&k("3.3.3.3")),
            before.approximate(&k("4.4.4.4")),
        );
        assert!(est.is_some() && approx.is_some(), "{est:?} {approx:?}");
        r.save(t0 + Duration::from_secs(11));
        // The save closed the open interval: what the restart resumes from.
        let stats = r.window.rule(0).tier_stats();

        let (mut back, _, _) = rotator_with(Config::parse(&text, "t.toml").unwrap());
        back.restore(t0 + Duration::from_secs(12));
        let after = back.window.rule(0);
        assert_eq!(after.estimate(&k("3.3.3.3")), est);
        assert_eq!(after.approximate(&k("4.4.4.4")), approx);
        assert_eq!(after.tier_stats(), stats);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bounded_key_survives_a_restart_as_the_same_key() {
        let dir = std::env::temp_dir().join(format!("tt-long-{}", std::process::id()));
        let path = dir.join("state");
        let text = format!("[state]\npath = \"{}\"\n{TWO}", path.display());
        let bounded = |id: &str| {
            let mut k = key::from_values(&[id]).to_vec();
            key::bound(&mut k, 128);
            k
        };
        let long = "s".repeat(4096);
        let (mut r, feed, _) = rotator_with(Config::parse(&text, "t.toml").unwrap());
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        feed.lock().unwrap().push((1, bounded(&long), 3.0));
        // As a file from before keys were bounded may hold: left out.
        let whole = key::from_values(&["t".repeat(4096)]).to_vec();
        feed.lock().unwrap().push((1, whole, 1.0));
        r.rotate(r.intervals().index_at(t0));
        r.save(t0 + Duration::from_secs(7));

        let (mut back, feed, _) = rotator_with(Config::parse(&text, "t.toml").unwrap());
        back.restore(t0 + Duration::from_secs(9));
        // The same value, bounded anew, adds to the restored key.
        feed.lock().unwrap().push((1, bounded(&long), 2.0));
        back.rotate(back.intervals().index_at(t0) + 1);
        let top = back.top("b", 5).unwrap();
        assert_eq!(top.keys, 1);
        assert_eq!(top.top[0].1, 5.0);

        // Another bound makes other keys: the rule starts afresh.
        back.save(t0 + Duration::from_secs(12));
        let other = text.replace(
            "group_by = [\"id\"]\n",
            "group_by = [\"id\"]\nmax_key_bytes = 64\n",
        );
        let (mut fresh, _, shared) = rotator_with(Config::parse(&other, "t.toml").unwrap());
        fresh.restore(t0 + Duration::from_secs(13));
        assert_eq!(shared.view().rule("b").unwrap().keys(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
