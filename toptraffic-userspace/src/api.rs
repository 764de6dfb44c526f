//! HTTP routes: top-N, stats, health and metrics. Thin: they read the state
//! the rotation publishes and never touch the counting path.
//!
//! The answers are the `toptraffic_api` types, which the clients read too.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use toptraffic_api::{
    AlertBlock, AlertBlockStats, Alerts, ErrorAnswer, Health, KernelSetup, KernelStats, KeyAlert,
    LastReload, LevelCounts, Number, Reloaded, Reloads, RuleStats, SinkStats, Stalled, Stats, Top,
    TopQuery, TopRow, DEFAULT_LIMIT, MAX_LIMIT,
};

use crate::alert::engine::BlockView;
use crate::control::{Control, Reloader, TopAnswer};
use crate::goformat::rfc3339;
use crate::metrics::Metrics;
use crate::view::{KernelInfo, Shared};

// The API's largest `limit` is the most keys a rule may hold.
const _: () = assert!(MAX_LIMIT == crate::config::defaults::MAX_KEYS_LIMIT);

#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub every: Duration,
    /// Receive socket address, for /api/v1/stats.
    pub listen: String,
    /// Set when POST /api/v1/reload is enabled (http.reload).
    pub reloader: Option<Arc<Reloader>>,
    /// To the rotation thread, which holds the window's keys.
    pub control: Arc<std::sync::Mutex<std::sync::mpsc::Sender<Control>>>,
}

/// Only what Prometheus and the kubelet need, for a listener on a
/// non-loopback address.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/top", get(top))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/reload", axum::routing::post(reload))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorAnswer { error: message })).into_response()
}

/// The query's `limit`, or why it is refused.
fn limit(asked: Option<usize>) -> Result<usize, String> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if n > MAX_LIMIT => Err(format!(
            "limit={n} is above the maximum, {MAX_LIMIT} (the most keys a rule can hold)"
        )),
        Some(n) => Ok(n),
    }
}

async fn top(State(st): State<AppState>, Query(q): Query<TopQuery>) -> Response {
    let view = st.shared.view();
    let names = || {
        view.rules
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(name) = q.rule else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("missing ?rule=NAME; rules: {}", names()),
        );
    };
    let Some(rule) = view.rule(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no rule {name:?}; rules: {}", names()),
        );
    };
    let limit = match limit(q.limit) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // The keys live in the window engine: ask the rotation thread, which
    // answers between rotations.
    let control = st.control.clone();
    let rule_name = rule.name.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Control::Top {
                rule: rule_name,
                limit,
                reply: tx,
            });
        sent.ok()?;
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .ok()
            .flatten()
    })
    .await
    .ok()
    .flatten();
    let Some(answer) = answer else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the rotation thread did not answer (stopping?)".into(),
        );
    };
    Json(top_answer(
        &rule.name,
        &rule.as_name,
        &rule.group_by,
        view.period_s,
        answer,
    ))
    .into_response()
}

/// The answer of `/api/v1/top`: a rule's top keys, their tags by name.
fn top_answer(
    rule: &str,
    as_name: &str,
    group_by: &[String],
    period_s: f64,
    answer: TopAnswer,
) -> Top {
    Top {
        as_name: as_name.to_string(),
        group_by: group_by.to_vec(),
        keys: answer.keys as u64,
        period_s: Number(period_s),
        rule: rule.to_string(),
        top: answer
            .top
            .into_iter()
            .map(|(tags, v)| TopRow {
                tags: tags.into_iter().collect(),
                value: Number(v),
            })
            .collect(),
        window_end: answer.window_end.map(rfc3339),
    }
}

async fn stats(State(st): State<AppState>) -> Json<Stats> {
    let s = &st.shared;
    let u = s.userspace.snapshot();
    let k = s.kernel_snapshot();
    let dropped = s
        .dropped()
        .into_iter()
        .map(|(r, n)| (r.as_str().to_string(), n))
        .collect();
    let view = s.view();
    let rules = view
        .rules
        .iter()
        .map(|r| RuleStats {
            keys: r.keys() as u64,
            name: r.name.clone(),
            overflow_lines: r.overflow_lines,
        })
        .collect();
    let mode = s.mode();
    let kernel = s.kernel.get().map(|k| {
        let drain = *s.last_drain.read().unwrap_or_else(|e| e.into_inner());
        KernelStats {
            last_drain_keys: drain.map(|d| d.1 as u64),
            last_drain_seconds: drain.map(|d| d.0),
            passed_to_userspace: k
                .passed()
                .into_iter()
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
            setup: mode.kernel.as_ref().map(kernel_setup),
        }
    });
    let alerts = s
        .blocks()
        .iter()
        .map(|(rule, block, st)| {
            let ev = |i: usize| st.events[i].load(Relaxed);
            AlertBlockStats {
                block: block.clone(),
                eval_errors: st.eval_errors.load(Relaxed),
                events: LevelCounts {
                    critical: ev(3),
                    info: ev(1),
                    ok: ev(0),
                    warning: ev(2),
                },
                rule: rule.clone(),
                template_errors: st.template_errors.load(Relaxed),
            }
        })
        .collect();
    let sinks = s
        .sinks()
        .iter()
        .map(|h| {
            let c = h.stats().snapshot();
            SinkStats {
                dropped: c.dropped,
                failed: c.failed,
                kind: h.kind().to_string(),
                name: h.name().to_string(),
                queue_len: h.queue_len() as u64,
                queued: c.queued,
                retries: c.retries,
                sent: c.sent,
            }
        })
        .collect();
    let last = s.last_reload().map(|(t, r)| {
        let (ok, message) = match r {
            Ok(m) => (true, m),
            Err(e) => (false, e),
        };
        LastReload {
            message,
            ok,
            time: rfc3339(t),
        }
    });
    Json(Stats {
        alerts,
        datagrams_kernel: k.datagrams,
        datagrams_userspace: u.datagrams,
        dropped,
        kernel,
        last_rotation_seconds: s.last_rotation_seconds(),
        listen: st.listen.clone(),
        mode: mode.active.to_string(),
        mode_reason: mode.reason,
        mode_requested: mode.requested.to_string(),
        points_kernel: k.points,
        points_userspace: u.points,
        reloads: Reloads {
            failed: s.reloads_failed.load(Relaxed),
            last,
            ok: s.reloads_ok.load(Relaxed),
        },
        rotations: s.rotations.load(Relaxed),
        rules,
        sinks,
        uptime_s: s.started.elapsed().unwrap_or_default().as_secs(),
        window_end: view.window_end.map(rfc3339),
    })
}

fn kernel_setup(k: &KernelInfo) -> KernelSetup {
    KernelSetup {
        attach: k.attach.clone(),
        interface: k.interface.clone(),
        map_entries: k.map_entries,
        pin_dir: k.pin_dir.clone(),
        userspace_rules: k.userspace_rules.clone(),
    }
}

/// Reloads the config file, as SIGHUP does, when http.reload allows it.
async fn reload(State(st): State<AppState>) -> Response {
    let Some(r) = st.reloader.clone() else {
        return error(
            StatusCode::FORBIDDEN,
            "reload over HTTP is disabled (set http.reload = true, or send SIGHUP)".into(),
        );
    };
    let result = tokio::task::spawn_blocking(move || r.reload())
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    st.shared.record_reload(&result);
    match result {
        Ok(m) => Json(Reloaded {
            message: m,
            status: "reloaded".into(),
        })
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Keys not OK, per alert block.
async fn alerts(State(st): State<AppState>) -> Json<Alerts> {
    let view = st.shared.alerts();
    Json(Alerts {
        blocks: view.iter().map(alert_block).collect(),
        window_end: st.shared.view().window_end.map(rfc3339),
    })
}

fn alert_block(b: &BlockView) -> AlertBlock {
    AlertBlock {
        alerts: b
            .alerts
            .iter()
            .map(|a| KeyAlert {
                flapping: a.flapping,
                level: a.level.as_str().to_string(),
                since: a.since.clone(),
                tags: a.tags.clone(),
                // Written by goformat::json_number: a number, or null.
                value: Number(a.value.as_f64().unwrap_or(f64::NAN)),
            })
            .collect(),
        block: b.block.clone(),
        rule: b.rule.clone(),
    }
}

/// Healthy while rotations keep coming: the last window closed within three
/// intervals (or the daemon started less than three intervals ago).
async fn healthz(State(st): State<AppState>) -> Response {
    let view = st.shared.view();
    let now = SystemTime::now();
    let grace = st.every * 3;
    let since = view.window_end.unwrap_or(st.shared.started);
    let lag = now.duration_since(since).unwrap_or_default();
    let mode = st.shared.mode();
    if lag > grace {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Stalled {
                mode: mode.active.to_string(),
                seconds_since_rotation: lag.as_secs_f64(),
                status: "stalled".into(),
            }),
        )
            .into_response();
    }
    Json(Health {
        mode: mode.active.to_string(),
        status: "ok".into(),
        window_end: view.window_end.map(rfc3339),
    })
    .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_top_answer_has_its_tags_by_name_and_integral_values_without_a_fraction() {
        let answer = TopAnswer {
            window_end: Some(UNIX_EPOCH + Duration::from_secs(1_795_600_805)),
            keys: 49087,
            top: vec![
                (
                    vec![("ip".into(), "10.0.0.1".into()), ("id".into(), "42".into())],
                    1234.0,
                ),
                (
                    vec![("ip".into(), "10.0.0.2".into()), ("id".into(), "7".into())],
                    2.5,
                ),
            ],
        };
        let group_by = ["ip".to_string(), "id".to_string()];
        let top = top_answer("top_combined", "totalCount", &group_by, 60.0, answer);
        assert_eq!(
            serde_json::to_string(&top).unwrap(),
            concat!(
                r#"{"as":"totalCount","group_by":["ip","id"],"keys":49087,"period_s":60,"#,
                r#""rule":"top_combined","top":[{"tags":{"id":"42","ip":"10.0.0.1"},"value":1234},"#,
                r#"{"tags":{"id":"7","ip":"10.0.0.2"},"value":2.5}],"#,
                r#""window_end":"2026-11-25T10:00:05Z"}"#
            )
        );
        let none = TopAnswer {
            window_end: None,
            keys: 0,
            top: vec![],
        };
        assert_eq!(
            serde_json::to_string(&top_answer("r", "count", &[], 2.5, none)).unwrap(),
            r#"{"as":"count","group_by":[],"keys":0,"period_s":2.5,"rule":"r","top":[],"window_end":null}"#
        );
    }

    #[test]
    fn limit_defaults_and_has_a_maximum() {
        assert_eq!(limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some(0)), Ok(0));
        assert_eq!(limit(Some(MAX_LIMIT)), Ok(MAX_LIMIT));
        let e = limit(Some(MAX_LIMIT + 1)).unwrap_err();
        assert!(e.contains("100000000"), "{e}");
    }
}
