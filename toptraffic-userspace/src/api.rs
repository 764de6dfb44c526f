//! HTTP routes: top-N, stats, health and metrics. Thin: they read the state
//! the rotation publishes and never touch the counting path.
//!
//! The answers are the `toptraffic_api` types, which the clients read too.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use toptraffic_api::{
    AlertBlock, AlertBlockStats, Alerts, ErrorAnswer, Health, KernelSetup, KernelStats, KeyAlert,
    LastReload, LevelCounts, Number, OverflowStats, Reloaded, Reloads, RuleStats, SinkStats,
    Stalled, Stats, Top, TopQuery, TopRow, DEFAULT_LIMIT, MAX_LIMIT,
};

use crate::alert::engine::BlockView;
use crate::control::{Control, Reloader, TopAnswer};
use crate::goformat::rfc3339;
use crate::metrics::Metrics;
use crate::view::{KernelInfo, RuleView, Shared};

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
        .route("/api/v1/cluster", get(cluster))
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

async fn top(State(st): State<AppState>, q: Result<Query<TopQuery>, QueryRejection>) -> Response {
    // A bad query string is answered like every other error, in JSON.
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
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
    match q.scope.as_deref() {
        None | Some("node") => {}
        Some("cluster") => return cluster_top(&st, rule, limit, view.period_s),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("scope={other:?}: node or cluster"),
            )
        }
    }
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

/// `/api/v1/top?scope=cluster`: the rule's last exchanged interval.
fn cluster_top(st: &AppState, rule: &RuleView, limit: usize, period_s: f64) -> Response {
    let Some(status) = st.shared.cluster.get() else {
        return error(
            StatusCode::NOT_FOUND,
            "no [cluster] in the config: this node counts alone".into(),
        );
    };
    let view = status.view();
    let Some(x) = view.values.get(&rule.name) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no exchange of rule {:?} yet (a cluster rule with alert blocks is exchanged each interval)",
                rule.name
            ),
        );
    };
    let answer = TopAnswer {
        window_end: Some(x.window_end),
        keys: x.keys.len(),
        top: x
            .keys
            .iter()
            .take(limit)
            .map(|(k, v, _)| {
                let tags = crate::view::tags(&rule.group_by, k)
                    .map(|(n, v)| (n.to_string(), v))
                    .collect();
                (tags, *v, None)
            })
            .collect(),
    };
    let mut top = top_answer(&rule.name, &rule.as_name, &rule.group_by, period_s, answer);
    for (row, (_, _, shares)) in top.top.iter_mut().zip(&x.keys) {
        row.shares = Some(
            x.nodes
                .iter()
                .zip(shares)
                .map(|(n, v)| (n.clone(), Number(*v)))
                .collect(),
        );
    }
    top.cluster = Some(toptraffic_api::ClusterTop {
        complete: x.complete,
        nodes: x.nodes.clone(),
        threshold: Number(x.threshold),
    });
    Json(top).into_response()
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
        cluster: None,
        group_by: group_by.to_vec(),
        keys: answer.keys as u64,
        period_s: Number(period_s),
        rule: rule.to_string(),
        top: answer
            .top
            .into_iter()
            .map(|(tags, v, bound)| TopRow {
                approximate: bound.is_some(),
                error_bound: bound.map(Number),
                shares: None,
                tags: tags.into_iter().collect(),
                value: Number(v),
            })
            .collect(),
        window_end: answer.window_end.map(rfc3339),
    }
}

async fn stats(State(st): State<AppState>) -> Json<Stats> {
    let s = &st.shared;
    let u = s.userspace_snapshot();
    let k = s.kernel_snapshot();
    let dropped = s
        .dropped()
        .into_iter()
        .map(|(r, n)| (r.as_str().to_string(), n))
        .collect();
    let view = s.view();
    let cluster = s.cluster.get().map(|c| c.view());
    let rules = view
        .rules
        .iter()
        .map(|r| RuleStats {
            keys: r.keys() as u64,
            name: r.name.clone(),
            cluster: cluster.as_ref().and_then(|c| {
                c.rules.iter().any(|x| x.name == r.name).then(|| {
                    match c.fallback.get(&r.name) {
                        Some(true) => "fallback",
                        _ => "cluster",
                    }
                    .to_string()
                })
            }),
            overflow: r.tier.map(|t| OverflowStats {
                demotions: t.demotions,
                error_bound: Number(t.error_bound),
                in_overflow: t.active(),
                keys_estimated: t.keys_last_interval,
                lines_estimated: t.lines_estimated,
                promotions: t.promotions,
            }),
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
    let (reloads_ok, reloads_failed, last) = s.reloads();
    let last = last.map(|(t, r)| {
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
            failed: reloads_failed,
            last,
            ok: reloads_ok,
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
async fn cluster(State(st): State<AppState>) -> Response {
    let Some(status) = st.shared.cluster.get() else {
        return error(
            StatusCode::NOT_FOUND,
            "no [cluster] in the config: this node counts alone".into(),
        );
    };
    let v = status.view();
    Json(toptraffic_api::Cluster {
        exchanges: v.exchanges,
        failures: v.failures,
        fallback: v.fallback,
        lease_holder: v.lease_holder,
        takeovers: v.takeovers,
        last_error: v.last_error,
        last_ok: v.last_ok.map(rfc3339),
        members: v.members,
        parked: v.parked,
        departed: v.departed,
        node: v.node,
        redis: v.redis,
        rules: v
            .values
            .iter()
            .map(|(rule, x)| {
                let e = toptraffic_api::ClusterExchange {
                    bytes: x.bytes,
                    candidates: x.keys.len() as u64,
                    complete: x.complete,
                    nodes: x.nodes.clone(),
                    round_trips: x.round_trips,
                    threshold: Number(x.threshold),
                    window_end: rfc3339(x.window_end),
                };
                (rule.clone(), e)
            })
            .collect(),
        up: v.up,
    })
    .into_response()
}

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
                approximate: a.error_bound.is_some(),
                error_bound: a.error_bound.map(Number),
                flapping: a.flapping,
                level: a.level.as_str().to_string(),
                since: a.since.clone(),
                tags: a.tags.clone(),
                // Written by goformat::json_number: a number, or null.
                value: Number(a.value.as_f64().unwrap_or(f64::NAN)),
                scope: a.scope.map(str::to_string),
                nodes: a.nodes.map(|n| n as u64),
                shares: a.shares.as_ref().map(|s| {
                    s.iter()
                        .map(|(n, v)| (n.clone(), Number(v.as_f64().unwrap_or(f64::NAN))))
                        .collect()
                }),
                held: a.held,
            })
            .collect(),
        block: b.block.clone(),
        rule: b.rule.clone(),
    }
}

/// Healthy while intervals keep closing: the last closed less than three
/// intervals ago on the rotation thread's monotonic clock (or the thread
/// started less than three intervals ago). A wall clock stepped either way
/// changes nothing here.
fn health(shared: &Shared, every: Duration) -> Result<Health, Stalled> {
    let mode = shared.mode().active.to_string();
    let since = shared.since_last_close().unwrap_or_default();
    if since > every * 3 {
        return Err(Stalled {
            mode,
            seconds_since_rotation: since.as_secs_f64(),
            status: "stalled".into(),
        });
    }
    Ok(Health {
        mode,
        status: "ok".into(),
        window_end: shared.view().window_end.map(rfc3339),
    })
}

async fn healthz(State(st): State<AppState>) -> Response {
    match health(&st.shared, st.every) {
        Ok(h) => Json(h).into_response(),
        Err(s) => (StatusCode::SERVICE_UNAVAILABLE, Json(s)).into_response(),
    }
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
                    None,
                ),
                (
                    vec![("ip".into(), "10.0.0.2".into()), ("id".into(), "7".into())],
                    2.5,
                    Some(0.25),
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
                r#"{"approximate":true,"error_bound":0.25,"tags":{"id":"7","ip":"10.0.0.2"},"value":2.5}],"#,
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

    fn shared() -> Arc<Shared> {
        let c = crate::config::Config::embedded_default();
        Arc::new(Shared::new(
            &crate::rules::RuleSet::new(&c.rules),
            60.0,
            crate::view::ModeInfo {
                active: "userspace",
                requested: crate::config::Mode::Userspace,
                reason: "test".into(),
                kernel: None,
            },
        ))
    }

    const EVERY: Duration = Duration::from_secs(5);

    fn t0() -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn health_is_stalled_once_no_interval_closed_for_three_on_the_monotonic_clock() {
        use crate::clock::{Clock, ManualClock};
        let shared = shared();
        let clock = Arc::new(ManualClock::new(t0()));
        assert!(health(&shared, EVERY).is_ok(), "no rotation thread yet");
        shared.watch_rotations(clock.clone());
        clock.advance(EVERY * 3);
        assert!(health(&shared, EVERY).is_ok(), "started 15 s ago");
        clock.advance(Duration::from_millis(1));
        let s = health(&shared, EVERY).unwrap_err();
        assert_eq!(
            (s.status.as_str(), s.mode.as_str()),
            ("stalled", "userspace")
        );
        assert!((s.seconds_since_rotation - 15.001).abs() < 1e-9, "{s:?}");
        shared.interval_closed(clock.monotonic());
        assert_eq!(health(&shared, EVERY).unwrap().status, "ok");
        // The wall clock moving either way changes nothing.
        clock.step_forward(Duration::from_secs(3600));
        assert!(health(&shared, EVERY).is_ok());
        clock.step_back(Duration::from_secs(7200));
        clock.advance(EVERY * 3 + Duration::from_millis(1));
        let s = health(&shared, EVERY).unwrap_err();
        assert!((s.seconds_since_rotation - 15.001).abs() < 1e-9, "{s:?}");
    }

    /// A source whose drain blocks while its gate is shut, as a kernel
    /// drain stuck in a syscall would.
    struct Gate(Arc<(std::sync::Mutex<(bool, u64)>, std::sync::Condvar)>);

    impl crate::rotation::IntervalSource for Gate {
        fn drain_into(&mut self, _snap: &mut crate::snapshot::IntervalSnapshot) {
            let (lock, cv) = &*self.0;
            let mut g = lock.lock().unwrap();
            g.1 += 1;
            cv.notify_all();
            // Bounded: a test that fails must not leave the thread behind.
            let _ = cv
                .wait_timeout_while(g, Duration::from_secs(30), |g| !g.0)
                .unwrap();
        }
    }

    #[test]
    fn healthz_answers_503_while_the_rotation_thread_is_stuck_in_a_drain() {
        use crate::clock::{Clock, ManualClock};
        use toptraffic_loadgen::http_get;
        let shared = shared();
        let metrics = Arc::new(Metrics::new(shared.clone()));
        let gate = Arc::new((
            std::sync::Mutex::new((true, 0u64)),
            std::sync::Condvar::new(),
        ));
        let config = crate::config::Config::embedded_default();
        assert_eq!(config.window.every, EVERY);
        let rotator = crate::rotation::Rotator::new(
            config,
            shared.clone(),
            metrics.clone(),
            vec![Box::new(Gate(gate.clone()))],
            Vec::new(),
            None,
        );
        let clock = Arc::new(ManualClock::new(t0()));
        let (tx, rx) = std::sync::mpsc::channel();
        let c: Arc<dyn Clock> = clock.clone();
        let rotation = std::thread::spawn(move || rotator.run(c, rx));
        let state = AppState {
            shared: shared.clone(),
            metrics,
            every: EVERY,
            listen: "127.0.0.1:0".into(),
            reloader: None,
            control: Arc::new(std::sync::Mutex::new(tx.clone())),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, router(state)).await });

        let wait_until = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let drains = || gate.0.lock().unwrap().1;
        wait_until("the rotation thread started", &|| {
            shared.since_last_close().is_some()
        });
        clock.advance(EVERY);
        wait_until("rotation 1", &|| shared.rotations.load(Relaxed) == 1);
        wait_until("rotation 1 recorded", &|| {
            shared.since_last_close() == Some(Duration::ZERO)
        });
        assert_eq!(http_get(addr, "/healthz").unwrap().0, 200);

        // The next drain blocks.
        gate.0.lock().unwrap().0 = false;
        clock.advance(EVERY);
        wait_until("the second drain began", &|| drains() == 2);
        clock.advance(EVERY * 2);
        let (status, body) = http_get(addr, "/healthz").unwrap();
        assert_eq!(status, 200, "{body}");
        clock.advance(Duration::from_millis(500));
        let (status, body) = http_get(addr, "/healthz").unwrap();
        assert_eq!(status, 503, "{body}");
        let s: Stalled = serde_json::from_str(&body).unwrap();
        assert_eq!(s.status, "stalled");
        assert!((s.seconds_since_rotation - 15.5).abs() < 1e-9, "{body}");

        // The drain returns: intervals close again, and healthz says so.
        let (lock, cv) = &*gate;
        lock.lock().unwrap().0 = true;
        cv.notify_all();
        wait_until("rotation 2", &|| shared.rotations.load(Relaxed) >= 2);
        wait_until("healthy again", &|| {
            http_get(addr, "/healthz").map(|r| r.0).unwrap_or(0) == 200
        });
        tx.send(Control::Stop).unwrap();
        rotation.join().unwrap();
        rt.shutdown_timeout(Duration::from_secs(1));
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
