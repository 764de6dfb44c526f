//! What the sink tests share: an event, a receiver served on loopback, a
//! temporary directory and polling with a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use tokio::sync::mpsc;

use super::backoff::Backoff;
use super::handle::SinkHandle;
use super::spawn::spawn_config;
use super::worker::Policy;
use crate::alert::event::{AlertEvent, Level};
use crate::config::SinkConfig;

/// The event recorded from kapacitord 1.5.7 (shared/KAPACITOR.md), at `level`.
pub(crate) fn event(level: Level) -> AlertEvent {
    AlertEvent {
        id: "combined:id=900002,ip=192.0.2.2".into(),
        message: format!(
            "Observed 18630 requests to Production Store ID 900002 for IP 192.0.2.2 within the last minute. {level}"
        ),
        details: "{&#34;Name&#34;:&#34;combined&#34;}".into(),
        // 2026-11-24T23:57:40Z
        time: UNIX_EPOCH + Duration::from_secs(1_795_564_660),
        duration: Duration::ZERO,
        level,
        previous_level: Level::Ok,
        recoverable: true,
        name: "combined".into(),
        task: "top_combined".into(),
        block: "#1".into(),
        tags: [("ip", "192.0.2.2"), ("id", "900002")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        field: "totalCount".into(),
        value: 18630.0,
        error_bound: None,
        shares: None,
    }
}

/// Waits until `cond` holds, failing the test after a few seconds.
pub(crate) async fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

/// How the receiver answers a request.
pub(crate) enum Reply {
    Status(u16),
    /// Never answers.
    Hang,
}

/// An HTTP server on 127.0.0.1 that records every request it gets.
pub(crate) struct Receiver {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Request>,
}

impl Receiver {
    /// Serves on a free port, answering each request with `reply`.
    pub(crate) async fn serve(reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let reply = Arc::new(reply);
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
                let reply = reply.clone();
                let tx = tx.clone();
                async move {
                    let req = Request {
                        method,
                        path: uri.path().to_string(),
                        headers,
                        body,
                    };
                    let answer = reply(&req);
                    let _ = tx.send(req);
                    match answer {
                        Reply::Status(s) => StatusCode::from_u16(s).unwrap(),
                        Reply::Hang => std::future::pending().await,
                    }
                }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, requests }
    }

    /// Answers every request with 200.
    pub(crate) async fn ok() -> Self {
        Self::serve(|_| Reply::Status(200)).await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, which must come within `limit`.
    pub(crate) async fn next_within(&mut self, limit: Duration) -> Request {
        tokio::time::timeout(limit, self.requests.recv())
            .await
            .unwrap_or_else(|_| panic!("no request within {limit:?}"))
            .expect("the server runs as long as the receiver")
    }

    pub(crate) async fn next(&mut self) -> Request {
        self.next_within(Duration::from_secs(5)).await
    }
}

/// A directory under the system's temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "toptraffic-sink-{label}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a sink on the current runtime with quick backoff (1 ms doubling
/// to 10 ms), `retries` and `timeout`, other options as configured.
pub(crate) fn spawn_fast(cfg: SinkConfig, retries: u32, timeout: Duration) -> SinkHandle {
    let mut options = cfg.options();
    options.retries = retries;
    options.timeout = timeout;
    let backoff = Backoff {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(10),
    };
    spawn_config(
        cfg,
        "test".into(),
        Policy::new(&options, backoff),
        &tokio::runtime::Handle::current(),
    )
}
