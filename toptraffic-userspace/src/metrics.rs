//! Prometheus exposition of the daemon's counters (`/metrics`).
//!
//! Counters live where they are counted (atomics in [`Shared`]); a collector
//! reads them at scrape time, so the hot path pays nothing for metrics.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::view::Shared;

/// The registry and the metrics observed directly.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Time to take, merge and apply one interval.
    pub rotation_seconds: Histogram,
    /// Time to swap and drain one kernel generation map.
    pub drain_seconds: Histogram,
}

impl Metrics {
    pub fn new(shared: Arc<Shared>) -> Metrics {
        let mut registry = Registry::with_prefix("toptraffic");
        // 100 µs .. ~6.5 s.
        let rotation_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register_with_unit(
            "rotation_duration",
            "Time to take, merge and apply one interval into the window",
            Unit::Seconds,
            rotation_seconds.clone(),
        );
        let drain_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register_with_unit(
            "kernel_drain_duration",
            "Time to swap and drain one kernel generation map",
            Unit::Seconds,
            drain_seconds.clone(),
        );
        registry.register_collector(Box::new(SharedCollector(shared)));
        Metrics {
            registry,
            rotation_seconds,
            drain_seconds,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[derive(Debug)]
struct SharedCollector(Arc<Shared>);

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(&[(&str, &str)], u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (labels, v) in values {
        let labels: Vec<(&str, &str)> = labels.to_vec();
        ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<N: EncodeGaugeValue + std::fmt::Debug + Copy>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(&[(&str, &str)], N)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (labels, v) in values {
        let labels: Vec<(&str, &str)> = labels.to_vec();
        ConstGauge::new(*v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for SharedCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let u = s.userspace_snapshot();
        let k = s.kernel_snapshot();
        counter(
            &mut enc,
            "points",
            "Lines counted by at least one rule, by ingest path",
            &[
                (&[("path", "kernel")], k.points),
                (&[("path", "userspace")], u.points),
            ],
        )?;
        counter(
            &mut enc,
            "datagrams",
            "Datagrams handled, by ingest path",
            &[
                (&[("path", "kernel")], k.datagrams),
                (&[("path", "userspace")], u.datagrams),
            ],
        )?;
        let dropped = s.dropped();
        let dropped: Vec<([(&str, &str); 1], u64)> = dropped
            .iter()
            .map(|(r, n)| ([("reason", r.as_str())], *n))
            .collect();
        let dropped: Vec<(&[(&str, &str)], u64)> =
            dropped.iter().map(|(l, n)| (&l[..], *n)).collect();
        counter(
            &mut enc,
            "dropped",
            "Lines no rule counted (datagrams for oversize and receive_queue), by reason",
            &dropped,
        )?;

        let view = s.view();
        let names: Vec<[(&str, &str); 1]> = view
            .rules
            .iter()
            .map(|r| [("rule", r.name.as_str())])
            .collect();
        let overflow: Vec<(&[(&str, &str)], u64)> = names
            .iter()
            .zip(&view.rules)
            .map(|(l, r)| (&l[..], r.overflow_lines))
            .collect();
        counter(
            &mut enc,
            "key_overflow_lines",
            "Lines a rule refused because it held max_keys keys",
            &overflow,
        )?;
        let keys: Vec<(&[(&str, &str)], i64)> = names
            .iter()
            .zip(&view.rules)
            .map(|(l, r)| (&l[..], r.keys() as i64))
            .collect();
        gauge(
            &mut enc,
            "active_keys",
            "Keys with something in the rule's window",
            &keys,
        )?;
        // The approximate tier of the rules that have one.
        let tiers: Vec<(&[(&str, &str)], crate::window::TierStats)> = names
            .iter()
            .zip(&view.rules)
            .filter_map(|(l, r)| r.tier.map(|t| (&l[..], t)))
            .collect();
        let each = |f: fn(&crate::window::TierStats) -> u64| -> Vec<(&[(&str, &str)], u64)> {
            tiers.iter().map(|(l, t)| (*l, f(t))).collect()
        };
        counter(
            &mut enc,
            "overflow_promotions",
            "Keys a rule moved from its overflow sketch into its exact table",
            &each(|t| t.promotions),
        )?;
        counter(
            &mut enc,
            "overflow_demotions",
            "Exact keys a rule moved to its overflow sketch to make room",
            &each(|t| t.demotions),
        )?;
        counter(
            &mut enc,
            "overflow_lines_estimated",
            "Lines a rule counted in its overflow sketch rather than refused",
            &each(|t| t.lines_estimated),
        )?;
        let each_gauge = |f: fn(&crate::window::TierStats) -> i64| -> Vec<(&[(&str, &str)], i64)> {
            tiers.iter().map(|(l, t)| (*l, f(t))).collect()
        };
        gauge(
            &mut enc,
            "overflow_keys",
            "Distinct keys a rule's overflow sketch took lines of in the last interval (its exact keys: active_keys)",
            &each_gauge(|t| t.keys_last_interval as i64),
        )?;
        gauge(
            &mut enc,
            "overflow_active",
            "1 while a rule is in overflow: lines of keys beyond max_keys went to its sketch in the last interval",
            &each_gauge(|t| t.active() as i64),
        )?;
        let bounds: Vec<(&[(&str, &str)], f64)> =
            tiers.iter().map(|(l, t)| (*l, t.error_bound)).collect();
        gauge(
            &mut enc,
            "overflow_error_bound",
            "What a rule's sketch estimate over the window may exceed a key's value by, at the configured confidence",
            &bounds,
        )?;
        counter(
            &mut enc,
            "rotations",
            "Intervals closed and applied to the window",
            &[(&[], s.rotations.load(Relaxed))],
        )?;
        if let Some(c) = s.cluster.get() {
            let c = c.view();
            gauge(
                &mut enc,
                "cluster_up",
                "1 while Redis answers; 0: cluster rules run on this node's counts",
                &[(&[], c.up as i64)],
            )?;
            gauge(
                &mut enc,
                "cluster_members",
                "Live nodes of the cluster, as of Redis's last answer",
                &[(&[], c.members.len() as i64)],
            )?;
            gauge(
                &mut enc,
                "cluster_parked",
                "Nodes that stopped cleanly within a window, whose lines still count in the cluster's values",
                &[(&[], c.parked.len() as i64)],
            )?;
            gauge(
                &mut enc,
                "cluster_departed",
                "Nodes that left without parking within a window: the cluster's values lack their lines, and alerts hold levels",
                &[(&[], c.departed.len() as i64)],
            )?;
            let holds = c.lease_holder.as_deref() == Some(c.node.as_str());
            gauge(
                &mut enc,
                "cluster_lease_held",
                "1 while this node holds the lease that sends the cluster rules' alerts",
                &[(&[], holds as i64)],
            )?;
            counter(
                &mut enc,
                "cluster_takeovers",
                "Times this node took the sending lease",
                &[(&[], c.takeovers)],
            )?;
            let fallback: Vec<(String, i64)> = c
                .rules
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        c.fallback.get(&r.name).copied().unwrap_or(false) as i64,
                    )
                })
                .collect();
            let fallback_labels: Vec<([(&str, &str); 1], i64)> = fallback
                .iter()
                .map(|(r, v)| ([("rule", r.as_str())], *v))
                .collect();
            gauge(
                &mut enc,
                "cluster_fallback",
                "1 while a cluster rule's alerts run on this node's counts alone (the exchange failed)",
                &fallback_labels
                    .iter()
                    .map(|(l, v)| (&l[..], *v))
                    .collect::<Vec<_>>(),
            )?;
            counter(
                &mut enc,
                "cluster_exchanges",
                "Exchanges with Redis, by outcome",
                &[
                    (&[("outcome", "ok")], c.exchanges - c.failures),
                    (&[("outcome", "failed")], c.failures),
                ],
            )?;
        }
        if let Some(end) = view.window_end {
            let secs = end
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let m = enc.encode_descriptor(
                "window_end_timestamp",
                "End of the last closed interval, Unix time",
                Some(&Unit::Seconds),
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            ConstGauge::new(secs).encode(m)?;
        }
        if let Some(k) = s.kernel.get() {
            let passed = k.passed();
            let labels: Vec<([(&str, &str); 1], u64)> =
                passed.iter().map(|(r, n)| ([("reason", *r)], *n)).collect();
            let labels: Vec<(&[(&str, &str)], u64)> =
                labels.iter().map(|(l, n)| (&l[..], *n)).collect();
            counter(
                &mut enc,
                "kernel_passed_datagrams",
                "Datagrams the kernel handed to userspace whole, by reason",
                &labels,
            )?;
        }
        let blocks = s.blocks();
        if !blocks.is_empty() {
            let mut m = enc.encode_descriptor(
                "alert_events",
                "Alert events handed to the sinks, by rule, block and level",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (rule, block, st) in blocks.iter() {
                for (i, level) in ["OK", "INFO", "WARNING", "CRITICAL"].iter().enumerate() {
                    let labels = [
                        ("rule", rule.as_str()),
                        ("block", block.as_str()),
                        ("level", level),
                    ];
                    ConstCounter::new(st.events[i].load(Relaxed))
                        .encode(m.encode_family(&labels)?)?;
                }
            }
            let mut m = enc.encode_descriptor(
                "alert_eval_errors",
                "Alert expressions that failed to evaluate (counted as false)",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (rule, block, st) in blocks.iter() {
                let labels = [("rule", rule.as_str()), ("block", block.as_str())];
                ConstCounter::new(st.eval_errors.load(Relaxed))
                    .encode(m.encode_family(&labels)?)?;
            }
        }
        let sinks = s.sinks();
        if !sinks.is_empty() {
            let mut m = enc.encode_descriptor(
                "sink_events",
                "Alert events per sink: sent, failed (after retries) or dropped (queue full)",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for h in sinks.iter() {
                let c = h.stats().snapshot();
                for (outcome, n) in [
                    ("sent", c.sent),
                    ("failed", c.failed),
                    ("dropped", c.dropped),
                ] {
                    let labels = [("sink", h.name()), ("kind", h.kind()), ("outcome", outcome)];
                    ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
            let mut m = enc.encode_descriptor(
                "sink_retries",
                "Delivery attempts after an event's first, per sink",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for h in sinks.iter() {
                let labels = [("sink", h.name()), ("kind", h.kind())];
                ConstCounter::new(h.stats().snapshot().retries)
                    .encode(m.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut enc,
            "reloads",
            "Config reloads, applied or refused",
            &[
                (&[("outcome", "ok")], s.reloads_ok.load(Relaxed)),
                (&[("outcome", "failed")], s.reloads_failed.load(Relaxed)),
            ],
        )?;
        let mode = s.mode();
        let mut m = enc.encode_descriptor(
            "mode",
            "The ingest path that counts (1 for the active one)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for path in ["kernel", "userspace"] {
            let v = i64::from(mode.active == path);
            ConstGauge::new(v).encode(m.encode_family(&[("path", path)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Mode};
    use crate::rules::RuleSet;
    use crate::stats::DropReason;
    use crate::view::ModeInfo;

    #[test]
    fn exposition_names_carry_prefix_and_units() {
        let c = Config::embedded_default();
        let rules = RuleSet::new(&c.rules);
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
        shared.userspace.points.fetch_add(7, Relaxed);
        shared.userspace.add_dropped(DropReason::ParseError, 2);
        let mut view = crate::view::WindowView::empty(&rules, 60.0);
        view.rules[0].tier = Some(crate::window::TierStats {
            promotions: 3,
            demotions: 2,
            lines_estimated: 2000,
            keys_last_interval: 5,
            unnamed_last_interval: 0,
            error_bound: 1.5,
        });
        shared.publish(view, 0.01);
        let m = Metrics::new(shared);
        m.rotation_seconds.observe(0.01);
        let text = m.encode();
        assert!(
            text.contains("toptraffic_points_total{path=\"userspace\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("toptraffic_dropped_total{reason=\"parse_error\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("toptraffic_active_keys{rule=\"top_combined\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("toptraffic_rotation_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("toptraffic_mode{path=\"userspace\"} 1"),
            "{text}"
        );
        for line in [
            "toptraffic_overflow_promotions_total{rule=\"top_combined\"} 3",
            "toptraffic_overflow_demotions_total{rule=\"top_combined\"} 2",
            "toptraffic_overflow_lines_estimated_total{rule=\"top_combined\"} 2000",
            "toptraffic_overflow_keys{rule=\"top_combined\"} 5",
            "toptraffic_overflow_active{rule=\"top_combined\"} 1",
            "toptraffic_overflow_error_bound{rule=\"top_combined\"} 1.5",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            !text.contains("toptraffic_overflow_keys{rule=\"top_ips\"}"),
            "a rule whose view holds no tier has no overflow series"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
