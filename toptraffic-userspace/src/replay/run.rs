//! The replay itself: datagrams counted by the userspace path's counter,
//! intervals closed by the daemon's [`Rotator`] (window, alert engine) at
//! the times the datagrams name, as fast as the machine goes.
//!
//! Nothing differs from the daemon but the clock: an interval closes when
//! the first datagram of a later one comes (and every interval in between
//! closes too, empty, while a window can hold anything), rather than when
//! the wall clock passes its end.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use super::input::Datagram;
use crate::alert::engine::RuleAlerts;
use crate::alert::event::AlertEvent;
use crate::config::{Config, Mode};
use crate::ingest::udp::Counter;
use crate::metrics::Metrics;
use crate::rotation::{IntervalSource, Rotator};
use crate::rules::RuleSet;
use crate::sink::{spawn_sink, SinkHandle};
use crate::snapshot::{CountTable, IntervalSnapshot, Intervals};
use crate::stats::{DropReason, LocalCounters};
use crate::view::{ModeInfo, Shared};

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also report each interval's top keys of every rule that has keys.
    pub top: Option<usize>,
    /// Hand the events to the config's sinks too.
    pub sinks: bool,
    /// Go on closing intervals after the input until every window is empty
    /// (the step-downs and recoveries a daemon would then send).
    pub until_empty: bool,
    /// Close the intervals up to this time at least (while a window can
    /// hold anything), whatever the input's last datagram.
    pub until: Option<std::time::SystemTime>,
}

/// A rule's top keys at the end of an interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Top {
    pub rule: String,
    pub time: std::time::SystemTime,
    pub keys: usize,
    /// Tags (group_by order) and value, largest first.
    pub top: Vec<(Vec<(String, String)>, f64)>,
}

/// What a replay reports, in order.
#[derive(Debug, Clone)]
pub enum Output {
    /// An alert event, as the sinks get it.
    Event(Arc<AlertEvent>),
    Top(Top),
}

/// What was replayed.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub datagrams: u64,
    pub points: u64,
    pub dropped: Vec<(&'static str, u64)>,
    pub intervals: u64,
    pub events: u64,
    /// Events the sinks dropped (full queues), with `--sinks`.
    pub sink_drops: u64,
}

/// The open interval's counts, shared with the rotator's source.
struct Feed {
    tables: Arc<Mutex<Vec<CountTable>>>,
    rules: Arc<RuleSet>,
}

impl IntervalSource for Feed {
    fn drain_into(&mut self, snap: &mut IntervalSnapshot) {
        let mut t = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let tables = std::mem::replace(&mut *t, self.rules.new_tables());
        snap.merge(tables);
    }
}

/// Most events one rotation can offer: every key of every rule, in each
/// of its blocks, twice (its level, and a last OK when it leaves).
fn events_bound(config: &Config) -> usize {
    config
        .rules
        .iter()
        .map(|r| r.max_keys.saturating_mul(2).saturating_mul(r.alerts.len()))
        .fold(1024usize, usize::saturating_add)
}

/// Replays `datagrams` (sorted here by arrival) through `config`'s rules,
/// handing every event, and with `top` every interval's top keys, to
/// `out` in order.
pub fn replay(
    config: Config,
    mut datagrams: Vec<Datagram>,
    opts: &Options,
    mut out: impl FnMut(Output),
) -> anyhow::Result<Summary> {
    datagrams.sort_by_key(|d| d.at);
    let rules = Arc::new(RuleSet::new(&config.rules));
    let shared = Arc::new(Shared::new(
        &rules,
        config.window.period.as_secs_f64(),
        ModeInfo {
            active: "userspace",
            requested: Mode::Userspace,
            reason: "replay".into(),
            kernel: None,
        },
    ));
    let metrics = Arc::new(Metrics::new(shared.clone()));
    let rt = if opts.sinks {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("toptraffic-replay-sinks")
                .enable_all()
                .build()?,
        )
    } else {
        None
    };
    let (collector, mut events) = SinkHandle::collector("replay", "log", events_bound(&config));
    let mut real_sinks = Vec::new();
    let alerts: Vec<RuleAlerts> = config
        .rules
        .iter()
        .map(|r| {
            RuleAlerts::new(r, |block| {
                let mut sinks = vec![collector.clone()];
                if let Some(rt) = &rt {
                    for c in &block.sinks {
                        let name = format!("{}/{}/{}", r.name, block.name, c.kind());
                        let h = spawn_sink(c.clone(), name, rt.handle());
                        real_sinks.push(h.clone());
                        sinks.push(h);
                    }
                }
                sinks
            })
        })
        .collect();
    let tables = Arc::new(Mutex::new(rules.new_tables()));
    let feed = Feed {
        tables: tables.clone(),
        rules: rules.clone(),
    };
    let intervals = Intervals::new(config.window.every);
    let window_intervals = config.window.intervals() as u64;
    let max_datagram = config.ingest.max_datagram;
    let top_rules: Vec<String> = config.rules.iter().map(|r| r.name.clone()).collect();
    let mut rotator = Rotator::new(
        config,
        shared,
        metrics,
        vec![Box::new(feed)],
        alerts,
        rt.as_ref().map(|r| r.handle().clone()),
    );
    let mut summary = Summary::default();
    let mut close = |rotator: &mut Rotator, index: u64, out: &mut dyn FnMut(Output)| {
        rotator.rotate(index);
        summary.intervals += 1;
        // The engine offers a block's events in its window's (hashed)
        // order: each block's are sorted by key, so that a replay always
        // prints the same lines in the same order.
        let mut batch: Vec<Arc<AlertEvent>> = Vec::new();
        while let Ok(ev) = events.try_recv() {
            batch.push(ev);
        }
        for run in batch.chunk_by_mut(|a, b| a.task == b.task && a.block == b.block) {
            run.sort_by(|a, b| a.tags.cmp(&b.tags));
        }
        for ev in batch {
            summary.events += 1;
            out(Output::Event(ev));
        }
        if let Some(n) = opts.top {
            for rule in &top_rules {
                if let Some(t) = rotator.top(rule, n).filter(|t| t.keys > 0) {
                    out(Output::Top(Top {
                        rule: rule.clone(),
                        time: intervals.end(index),
                        keys: t.keys,
                        top: t.top.into_iter().map(|(tags, v, _)| (tags, v)).collect(),
                    }));
                }
            }
        }
    };
    let mut counter = Counter::new();
    let mut local = LocalCounters::default();
    let mut open: Option<u64> = None;
    for d in &datagrams {
        let index = intervals.index_at(d.at);
        if let Some(o) = open.filter(|&o| index > o) {
            // The open interval and those between closed as a daemon would
            // close them; past a window's worth of empty ones nothing is
            // left to say, and the window jumps.
            for i in o..index.min(o + window_intervals + 2) {
                close(&mut rotator, i, &mut out);
            }
        }
        open = Some(open.map_or(index, |o| o.max(index)));
        if d.data.len() > max_datagram {
            local.datagrams += 1;
            local.drop(DropReason::Oversize);
            continue;
        }
        let mut t = tables.lock().unwrap_or_else(PoisonError::into_inner);
        counter.datagram(&d.data, &rules, &mut t, &mut local);
    }
    if let Some(o) = open {
        // Past a window and an interval after the last datagram every
        // window is empty and every key has had its last evaluation.
        let empty = o + window_intervals + 1;
        let mut last = if opts.until_empty { empty } else { o };
        if let Some(t) = opts.until {
            let end = intervals.index_at(t.checked_sub(Duration::from_nanos(1)).unwrap_or(t));
            last = last.max(end.min(empty));
        }
        for i in o..=last {
            close(&mut rotator, i, &mut out);
        }
    }
    summary.datagrams = local.datagrams;
    summary.points = local.points;
    summary.dropped = DropReason::ALL
        .iter()
        .filter(|r| local.dropped[**r as usize] > 0)
        .map(|r| (r.as_str(), local.dropped[*r as usize]))
        .collect();
    drop(rotator);
    if let Some(rt) = rt {
        for s in &real_sinks {
            s.close();
        }
        rt.block_on(async {
            for s in &real_sinks {
                let _ = tokio::time::timeout(Duration::from_secs(15), s.closed()).await;
            }
        });
        summary.sink_drops = real_sinks
            .iter()
            .map(|s| s.stats().snapshot().dropped)
            .sum();
        rt.shutdown_timeout(Duration::from_secs(1));
    }
    // A channel that could not take an event would be a lost line of the
    // output: the bound above makes it impossible.
    debug_assert!(matches!(
        events.try_recv(),
        Err(mpsc::error::TryRecvError::Empty | mpsc::error::TryRecvError::Disconnected)
    ));
    Ok(summary)
}

impl Output {
    /// One JSON line: an event as the log sink writes it, or
    /// `{"rule":..,"time":..,"keys":..,"top":[{"tags":{..},"value":..}]}`.
    pub fn to_json(&self) -> String {
        match self {
            Output::Event(e) => e.to_json(),
            Output::Top(t) => {
                let top: Vec<serde_json::Value> = t
                    .top
                    .iter()
                    .map(|(tags, v)| {
                        let tags: serde_json::Map<String, serde_json::Value> = tags
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect();
                        serde_json::json!({"tags": tags, "value": crate::goformat::json_number(*v)})
                    })
                    .collect();
                crate::goformat::to_json(&serde_json::json!({
                    "rule": t.rule,
                    "time": crate::goformat::rfc3339_nano(t.time),
                    "keys": t.keys,
                    "top": top,
                }))
            }
        }
    }
}
