//! HTTP routes: top-N, stats, health and metrics. Thin: they read the state
//! the rotation publishes and never touch the counting path.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::control::{Control, Reloader};
use crate::goformat::{json_number, rfc3339};
use crate::metrics::Metrics;
use crate::view::Shared;

/// Default and largest `limit` of `/api/v1/top`.
pub const DEFAULT_LIMIT: usize = 20;

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
    (status, Json(json!({ "error": message }))).into_response()
}

#[derive(Deserialize)]
struct TopQuery {
    rule: Option<String>,
    limit: Option<usize>,
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
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
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
    let top: Vec<Value> = answer
        .top
        .into_iter()
        .map(|(tags, v)| {
            let tags: Map<String, Value> = tags
                .into_iter()
                .map(|(n, v)| (n, Value::String(v)))
                .collect();
            json!({ "tags": tags, "value": json_number(v) })
        })
        .collect();
    Json(json!({
        "rule": rule.name,
        "as": rule.as_name,
        "group_by": rule.group_by,
        "window_end": answer.window_end.map(rfc3339),
        "period_s": json_number(view.period_s),
        "keys": answer.keys,
        "top": top,
    }))
    .into_response()
}

async fn stats(State(st): State<AppState>) -> Json<Value> {
    let s = &st.shared;
    let u = s.userspace.snapshot();
    let k = s.kernel_snapshot();
    let dropped: Map<String, Value> = s
        .dropped()
        .into_iter()
        .map(|(r, n)| (r.as_str().to_string(), json!(n)))
        .collect();
    let view = s.view();
    let rules: Vec<Value> = view
        .rules
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "keys": r.keys(),
                "overflow_lines": r.overflow_lines,
            })
        })
        .collect();
    let mode = s.mode();
    let kernel = s.kernel.get().map(|k| {
        let passed: Map<String, Value> = k
            .passed()
            .into_iter()
            .map(|(r, n)| (r.to_string(), json!(n)))
            .collect();
        let drain = *s.last_drain.read().unwrap_or_else(|e| e.into_inner());
        json!({
            "setup": mode.kernel,
            "passed_to_userspace": passed,
            "last_drain_seconds": drain.map(|d| d.0),
            "last_drain_keys": drain.map(|d| d.1),
        })
    });
    let blocks = s.blocks();
    let alert_blocks: Vec<Value> = blocks
        .iter()
        .map(|(rule, block, st)| {
            let ev = |i: usize| st.events[i].load(Relaxed);
            json!({
                "rule": rule,
                "block": block,
                "events": {"OK": ev(0), "INFO": ev(1), "WARNING": ev(2), "CRITICAL": ev(3)},
                "eval_errors": st.eval_errors.load(Relaxed),
                "template_errors": st.template_errors.load(Relaxed),
            })
        })
        .collect();
    let sink_list = s.sinks();
    let sinks: Vec<Value> = sink_list
        .iter()
        .map(|h| {
            let c = h.stats().snapshot();
            json!({
                "name": h.name(),
                "kind": h.kind(),
                "queued": c.queued,
                "sent": c.sent,
                "failed": c.failed,
                "dropped": c.dropped,
                "retries": c.retries,
                "queue_len": h.queue_len(),
            })
        })
        .collect();
    let last_reload = s.last_reload().map(|(t, r)| match r {
        Ok(m) => json!({"time": rfc3339(t), "ok": true, "message": m}),
        Err(e) => json!({"time": rfc3339(t), "ok": false, "message": e}),
    });
    Json(json!({
        "reloads": {
            "ok": s.reloads_ok.load(Relaxed),
            "failed": s.reloads_failed.load(Relaxed),
            "last": last_reload,
        },
        "alerts": alert_blocks,
        "sinks": sinks,
        "mode": mode.active,
        "mode_requested": mode.requested,
        "mode_reason": mode.reason,
        "listen": st.listen,
        "points_kernel": k.points,
        "points_userspace": u.points,
        "datagrams_kernel": k.datagrams,
        "datagrams_userspace": u.datagrams,
        "dropped": dropped,
        "kernel": kernel,
        "rules": rules,
        "rotations": s.rotations.load(Relaxed),
        "last_rotation_seconds": s.last_rotation_seconds(),
        "window_end": view.window_end.map(rfc3339),
        "uptime_s": s.started.elapsed().unwrap_or_default().as_secs(),
    }))
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
        Ok(m) => Json(json!({"status": "reloaded", "message": m})).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Keys not OK, per alert block.
async fn alerts(State(st): State<AppState>) -> Json<Value> {
    let view = st.shared.alerts();
    Json(json!({
        "window_end": st.shared.view().window_end.map(rfc3339),
        "blocks": &*view,
    }))
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
            Json(json!({
                "status": "stalled",
                "mode": mode.active,
                "seconds_since_rotation": lag.as_secs_f64(),
            })),
        )
            .into_response();
    }
    Json(json!({
        "status": "ok",
        "mode": mode.active,
        "window_end": view.window_end.map(rfc3339),
    }))
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
