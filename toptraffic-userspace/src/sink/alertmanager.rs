//! The Alertmanager sink: posts each event as one alert to Prometheus
//! Alertmanager's API v2 (`POST {url}/api/v2/alerts`).
//!
//! Labels are an alert's identity in Alertmanager, so they hold only what
//! names the alert, never what changes while it fires:
//!
//! - `alertname` = the rule (Kapacitor's task name), `rule` = the rule too
//!   (kept when `alertname` is overridden by a configured label), `block` =
//!   the alert block;
//! - every group-by tag, under its own name;
//! - the configured `labels`, which win over all of the above.
//!
//! The level is an annotation, not a label: with a level label, WARNING →
//! CRITICAL would open a second alert beside the first, and the recovery
//! could not resolve either. To route by severity, give each severity its
//! own alert block with `labels = { severity = "critical" }`, as Prometheus
//! rules do.
//!
//! Annotations: `summary` and `message` (the message), `details`, `level`
//! (`OK`, `INFO`, `WARNING`, `CRITICAL`), `value` (the window's value) and
//! `id` (the rendered alert ID).
//!
//! `startsAt` is when the alert started (the event's time minus its
//! duration). A recovery (level OK) sets `endsAt` to the event's time, which
//! resolves the alert. Other events leave `endsAt` out, so Alertmanager
//! resolves the alert by itself after its `resolve_timeout` (5m by default)
//! unless it is sent again: use `state_changes_only` with an interval shorter
//! than `resolve_timeout`, or raise `resolve_timeout`. Label names that
//! Alertmanager would refuse (`[a-zA-Z_][a-zA-Z0-9_]*`) have every other
//! character replaced by `_`.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde::Serialize;

use super::deliver::{Deliver, DeliveryError};
use super::http_util::{http_client, post};
use crate::alert::event::{AlertEvent, Level};
use crate::config::AlertmanagerSink;
use crate::goformat::{json_number, rfc3339_nano};

pub(super) struct Alertmanager {
    client: reqwest::Client,
    endpoint: String,
    labels: BTreeMap<String, String>,
}

impl Alertmanager {
    pub(super) fn new(cfg: AlertmanagerSink) -> Self {
        Alertmanager {
            client: http_client(),
            endpoint: format!("{}/api/v2/alerts", cfg.url.trim_end_matches('/')),
            labels: cfg.labels,
        }
    }
}

impl Deliver for Alertmanager {
    async fn deliver(&self, ev: &AlertEvent) -> Result<(), DeliveryError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = serde_json::to_string(&[alert(ev, &self.labels)])
            .expect("serializing strings cannot fail");
        post(&self.client, &self.endpoint, headers, body).await
    }
}

/// API v2's `postableAlert`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
}

fn alert(ev: &AlertEvent, extra: &BTreeMap<String, String>) -> PostableAlert {
    let mut labels = BTreeMap::new();
    let mut set = |name: &str, value: &str| {
        if let Some(name) = label_name(name) {
            labels.insert(name, value.to_string());
        }
    };
    for (tag, value) in &ev.tags {
        set(tag, value);
    }
    set("alertname", &ev.task);
    set("rule", &ev.task);
    set("block", &ev.block);
    for (name, value) in extra {
        set(name, value);
    }

    let annotations = BTreeMap::from([
        ("summary", ev.message.clone()),
        ("message", ev.message.clone()),
        ("details", ev.details.clone()),
        ("level", ev.level.as_str().to_string()),
        ("value", json_number(ev.value).to_string()),
        ("id", ev.id.clone()),
    ]);
    let started = ev.time.checked_sub(ev.duration).unwrap_or(ev.time);
    PostableAlert {
        labels,
        annotations,
        starts_at: rfc3339_nano(started),
        ends_at: (ev.level == Level::Ok).then(|| rfc3339_nano(ev.time)),
    }
}

/// `name` as a label name Alertmanager accepts; None when nothing is left.
fn label_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkConfig;
    use crate::sink::test_support::spawn_fast;
    use crate::sink::test_support::{event, eventually, Receiver, Reply};
    use std::sync::Arc;
    use std::time::Duration;

    fn cfg(url: String) -> AlertmanagerSink {
        AlertmanagerSink {
            url,
            labels: [("team".to_string(), "ingress".to_string())].into(),
            options: None,
        }
    }

    #[tokio::test]
    async fn firing_alert_has_labels_annotations_and_no_end() {
        let mut rx = Receiver::ok().await;
        // A trailing slash on the base URL must not double up.
        let sink = spawn_fast(
            SinkConfig::Alertmanager(cfg(rx.url("/"))),
            0,
            Duration::from_secs(5),
        );
        let mut ev = event(Level::Critical);
        ev.duration = Duration::from_secs(10);
        sink.offer(Arc::new(ev.clone()));
        let req = rx.next().await;
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/api/v2/alerts");
        assert_eq!(req.headers["content-type"], "application/json");
        let got: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        let want = serde_json::json!([{
            "labels": {
                "alertname": "top_combined",
                "rule": "top_combined",
                "block": "#1",
                "id": "900002",
                "ip": "192.0.2.2",
                "team": "ingress",
            },
            "annotations": {
                "summary": ev.message,
                "message": ev.message,
                "details": ev.details,
                "level": "CRITICAL",
                "value": "18630",
                "id": "combined:id=900002,ip=192.0.2.2",
            },
            // 10 s before the event's 23:57:40.
            "startsAt": "2026-11-24T23:57:30Z",
        }]);
        assert_eq!(got, want);
        eventually(|| sink.stats().snapshot().sent == 1).await;
    }

    #[test]
    fn recovery_ends_the_alert_at_the_event_time_with_the_same_labels() {
        let firing = alert(&event(Level::Warning), &BTreeMap::new());
        let mut ok = event(Level::Ok);
        ok.previous_level = Level::Warning;
        ok.duration = Duration::from_millis(60_500);
        let resolved = alert(&ok, &BTreeMap::new());
        assert_eq!(resolved.labels, firing.labels);
        assert_eq!(resolved.ends_at.as_deref(), Some("2026-11-24T23:57:40Z"));
        assert_eq!(resolved.starts_at, "2026-11-24T23:56:39.5Z");
        assert_eq!(resolved.annotations["level"], "OK");
        assert_eq!(firing.ends_at, None);
    }

    #[test]
    fn configured_labels_win_and_odd_names_are_made_valid() {
        let mut ev = event(Level::Warning);
        ev.tags.insert("host.name".into(), "a".into());
        ev.tags.insert("9lives".into(), "b".into());
        ev.tags.insert("block".into(), "shadowed".into());
        let extra = [("alertname".to_string(), "TopTraffic".to_string())].into();
        let a = alert(&ev, &extra);
        assert_eq!(a.labels["host_name"], "a");
        assert_eq!(a.labels["_9lives"], "b");
        assert_eq!(a.labels["block"], "#1");
        assert_eq!(a.labels["alertname"], "TopTraffic");
        assert_eq!(a.labels["rule"], "top_combined");
    }

    #[tokio::test]
    async fn rejected_alert_is_a_failure() {
        let mut rx = Receiver::serve(|_| Reply::Status(400)).await;
        let sink = spawn_fast(
            SinkConfig::Alertmanager(cfg(rx.url(""))),
            0,
            Duration::from_secs(5),
        );
        sink.offer(Arc::new(event(Level::Warning)));
        rx.next().await;
        eventually(|| sink.stats().snapshot().failed == 1).await;
    }
}
