//! Alert sinks, one file each, and the shared queue/retry machinery.
//!
//! Every sink is one worker task fed by a bounded queue. The caller (the
//! rotation thread, outside any runtime) only ever `try_send`s, so a full
//! queue drops the event and counts it: a slow or dead receiver delays nothing
//! but its own sink. The worker takes events in order and delivers at most
//! `concurrency` of them at a time; each attempt is bounded by `timeout`, and a
//! failed one is retried up to `retries` times after an exponential backoff
//! with full jitter. An event keeps its concurrency slot while it waits for a
//! retry, so a dead receiver fills the slots, then the queue, then drops:
//! memory stays bounded by `queue + concurrency` events per sink.

mod alertmanager;
mod exec;
mod http;
mod log;
mod slack;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use crate::alert::event::AlertEvent;
use crate::config::{SinkConfig, SinkOptions};

/// A sink's counters, for the API and `/metrics`.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events accepted into the queue.
    pub queued: AtomicU64,
    /// Events delivered.
    pub sent: AtomicU64,
    /// Events given up on: every attempt failed, or shutdown cut them short.
    pub failed: AtomicU64,
    /// Events refused by [`SinkHandle::offer`]: the queue was full or closed.
    pub dropped: AtomicU64,
    /// Attempts after an event's first.
    pub retries: AtomicU64,
}

/// The counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub retries: u64,
}

impl SinkStats {
    pub fn snapshot(&self) -> SinkCounts {
        SinkCounts {
            queued: self.queued.load(Relaxed),
            sent: self.sent.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            retries: self.retries.load(Relaxed),
        }
    }
}

/// The sending side of a running sink. Cheap to clone; when the last clone is
/// dropped the sink closes as with [`SinkHandle::close`].
#[derive(Clone)]
pub struct SinkHandle {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Arc<AlertEvent>>,
    stats: Arc<SinkStats>,
    name: String,
    kind: &'static str,
    capacity: usize,
    close: CancellationToken,
    done: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close.cancel();
    }
}

impl fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkHandle")
            .field("name", &self.inner.name)
            .field("kind", &self.inner.kind)
            .field("stats", &self.inner.stats.snapshot())
            .finish()
    }
}

impl SinkHandle {
    /// Queues an event for delivery without ever waiting; usable from any
    /// thread, inside a runtime or not. False when the event was dropped
    /// because the queue is full or the sink is closed (counted in `dropped`).
    pub fn offer(&self, ev: Arc<AlertEvent>) -> bool {
        let inner = &*self.inner;
        match inner.tx.try_send(ev) {
            Ok(()) => {
                inner.stats.queued.fetch_add(1, Relaxed);
                true
            }
            Err(e) => {
                let dropped = inner.stats.dropped.fetch_add(1, Relaxed) + 1;
                // Logged at the 1st, 2nd, 4th, 8th … drop: a dead receiver
                // must not turn into a flood of log lines.
                if dropped.is_power_of_two() {
                    let reason = match e {
                        mpsc::error::TrySendError::Full(_) => "queue full",
                        mpsc::error::TrySendError::Closed(_) => "sink closed",
                    };
                    warn!(sink = %inner.name, kind = inner.kind, dropped, reason, "alert dropped");
                }
                false
            }
        }
    }

    pub fn stats(&self) -> Arc<SinkStats> {
        self.inner.stats.clone()
    }

    /// The name given to [`spawn_sink`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// See [`SinkConfig::kind`].
    pub fn kind(&self) -> &'static str {
        self.inner.kind
    }

    /// Events waiting in the queue (not those being delivered).
    pub fn queue_len(&self) -> usize {
        self.inner.capacity - self.inner.tx.capacity()
    }

    /// Stops accepting events. The worker goes on delivering what is queued
    /// or in flight for at most one `timeout`, then abandons the rest
    /// (counted as failed) and exits. Returns at once.
    pub fn close(&self) {
        self.inner.close.cancel();
    }

    /// Resolves once the worker has exited.
    pub async fn closed(&self) {
        self.inner.done.cancelled().await;
    }

    /// [`close`](Self::close), then [`closed`](Self::closed).
    pub async fn shutdown(&self) {
        self.close();
        self.closed().await;
    }
}

#[cfg(test)]
impl SinkHandle {
    /// A handle without a worker: what is offered waits in the returned
    /// receiver (tests of what the alert engine sends).
    pub(crate) fn capture(
        name: &str,
        kind: &'static str,
    ) -> (SinkHandle, mpsc::Receiver<Arc<AlertEvent>>) {
        let capacity = 4096;
        let (tx, rx) = mpsc::channel(capacity);
        let inner = Inner {
            tx,
            stats: Arc::default(),
            name: name.to_string(),
            kind,
            capacity,
            close: CancellationToken::new(),
            done: CancellationToken::new(),
        };
        (
            SinkHandle {
                inner: Arc::new(inner),
            },
            rx,
        )
    }
}

/// Starts a sink's worker on `rt` and returns the handle that feeds it.
/// `name` identifies the sink in logs and metrics (e.g. `top_ips/#1/http`).
pub fn spawn_sink(cfg: SinkConfig, name: String, rt: &tokio::runtime::Handle) -> SinkHandle {
    let policy = Policy::new(&cfg.options(), Backoff::DEFAULT);
    spawn_config(cfg, name, policy, rt)
}

fn spawn_config(
    cfg: SinkConfig,
    name: String,
    policy: Policy,
    rt: &tokio::runtime::Handle,
) -> SinkHandle {
    let kind = cfg.kind();
    match cfg {
        SinkConfig::Log(c) => spawn_worker(log::LogFile::new(c), name, kind, policy, rt),
        SinkConfig::Exec(c) => spawn_worker(exec::Exec::new(c), name, kind, policy, rt),
        SinkConfig::Slack(c) => spawn_worker(slack::Slack::new(c), name, kind, policy, rt),
        SinkConfig::Http(c) => spawn_worker(http::HttpPost::new(c), name, kind, policy, rt),
        SinkConfig::Alertmanager(c) => {
            spawn_worker(alertmanager::Alertmanager::new(c), name, kind, policy, rt)
        }
    }
}

/// What one kind of sink does with one event; the worker adds the queue,
/// the timeout and the retries.
trait Deliver: Send + Sync + 'static {
    /// Deliveries go one at a time whatever `concurrency` says (a file's
    /// lines must stay in order).
    const SERIAL: bool = false;

    /// One attempt. Dropped when it overruns the timeout, so whatever it
    /// holds must clean up on drop.
    fn deliver(&self, ev: &AlertEvent) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}

/// Why an attempt failed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeliveryError(String);

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeliveryError {
    fn new(msg: impl Into<String>) -> Self {
        DeliveryError(msg.into())
    }

    /// An error and its causes: reqwest's own message hides the reason
    /// ("connection refused") in its source.
    fn chain(context: &str, e: &dyn std::error::Error) -> Self {
        let mut msg = format!("{context}: {e}");
        let mut cause = e.source();
        while let Some(c) = cause {
            msg.push_str(": ");
            msg.push_str(&c.to_string());
            cause = c.source();
        }
        DeliveryError(msg)
    }
}

/// POSTs `body` with `headers`; anything but a 2xx status is a failure that
/// names the status and the start of the reply.
async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: reqwest::header::HeaderMap,
    body: String,
) -> Result<(), DeliveryError> {
    let mut resp = client
        .post(url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| DeliveryError::chain(&format!("POST {url}"), &e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let reply = match resp.chunk().await {
        Ok(Some(bytes)) => excerpt(&bytes),
        _ => String::new(),
    };
    Err(DeliveryError::new(format!(
        "POST {url}: status {status}: {reply:?}"
    )))
}

/// The start of a peer's reply or stderr, enough to say what went wrong.
fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 256;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    text.trim().to_string()
}

/// A client for the HTTP sinks; one per sink so each has its own pool.
fn http_client() -> reqwest::Client {
    crate::http_client()
        .build()
        // Fails only when the TLS backend cannot initialize, which it can
        // once its provider is installed (crate::http_client does that).
        .expect("an HTTP client builds")
}

/// Waits between attempts: exponential, capped, with full jitter so that
/// sinks failing together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(30),
    };

    /// The longest wait before retry `n` (1-based): base · 2^(n-1), capped.
    fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(31);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A wait drawn uniformly from [0, ceiling(retry)] by `random`.
    fn delay(&self, retry: u32, random: u64) -> Duration {
        self.ceiling(retry).mul_f64(random as f64 / u64::MAX as f64)
    }
}

/// A random u64 without a dependency or the clock: every `RandomState` is
/// keyed afresh, so hashing anything with a new one gives new bits.
fn random_u64() -> u64 {
    RandomState::new().hash_one(0u8)
}

/// How a worker delivers: the options, resolved.
#[derive(Debug, Clone, Copy)]
struct Policy {
    queue: usize,
    concurrency: usize,
    timeout: Duration,
    retries: u32,
    backoff: Backoff,
    /// How long a closing sink goes on delivering.
    drain: Duration,
}

impl Policy {
    fn new(o: &SinkOptions, backoff: Backoff) -> Self {
        Policy {
            // Zero would panic in mpsc::channel and stall the semaphore.
            queue: o.queue.max(1),
            concurrency: o.concurrency.max(1),
            timeout: o.timeout,
            retries: o.retries,
            backoff,
            // One attempt's worth: a hung receiver holds shutdown no longer
            // than it holds a delivery.
            drain: o.timeout,
        }
    }
}

fn spawn_worker<D: Deliver>(
    sink: D,
    name: String,
    kind: &'static str,
    mut policy: Policy,
    rt: &tokio::runtime::Handle,
) -> SinkHandle {
    if D::SERIAL {
        policy.concurrency = 1;
    }
    let (tx, rx) = mpsc::channel(policy.queue);
    let stats = Arc::new(SinkStats::default());
    let close = CancellationToken::new();
    let done = CancellationToken::new();
    let worker = Worker {
        sink: Arc::new(sink),
        rx,
        ctx: Arc::new(TaskCtx {
            stats: stats.clone(),
            policy,
            name: name.clone(),
            kind,
        }),
        close: close.clone(),
    };
    rt.spawn(worker.run(done.clone().drop_guard()));
    SinkHandle {
        inner: Arc::new(Inner {
            tx,
            stats,
            name,
            kind,
            capacity: policy.queue,
            close,
            done,
        }),
    }
}

/// What each delivery task shares with the worker.
struct TaskCtx {
    stats: Arc<SinkStats>,
    policy: Policy,
    name: String,
    kind: &'static str,
}

struct Worker<D> {
    sink: Arc<D>,
    rx: mpsc::Receiver<Arc<AlertEvent>>,
    ctx: Arc<TaskCtx>,
    close: CancellationToken,
}

impl<D: Deliver> Worker<D> {
    /// `_done` fires when this future ends, however it ends.
    async fn run(mut self, _done: DropGuard) {
        let slots = Arc::new(Semaphore::new(self.ctx.policy.concurrency));
        let mut inflight = JoinSet::new();
        let mut pending = None;

        // Open: deliver until closed.
        loop {
            // Close first: the drain deadline starts when close is asked.
            let ev = tokio::select! {
                biased;
                () = self.close.cancelled() => break,
                ev = self.rx.recv() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
            };
            let slot = tokio::select! {
                biased;
                () = self.close.cancelled() => {
                    pending = Some(ev);
                    break;
                }
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            self.reap(&mut inflight);
            self.start(&mut inflight, ev, slot);
        }

        // Closing: refuse new events, deliver the queued ones for a while.
        self.rx.close();
        let deadline = Instant::now() + self.ctx.policy.drain;
        let drained = tokio::time::timeout_at(deadline, async {
            loop {
                // The event stays in `pending` until it has a slot, so that
                // the deadline finds it there to count.
                if pending.is_none() {
                    pending = self.rx.recv().await;
                }
                if pending.is_none() {
                    break;
                }
                let slot = slots.clone().acquire_owned().await;
                let slot = slot.expect("the semaphore is never closed");
                let ev = pending.take().expect("checked above");
                self.start(&mut inflight, ev, slot);
            }
            while let Some(r) = inflight.join_next().await {
                self.note(r);
            }
        })
        .await;
        if drained.is_err() {
            let mut abandoned = u64::from(pending.is_some());
            while self.rx.try_recv().is_ok() {
                abandoned += 1;
            }
            inflight.abort_all();
            while let Some(r) = inflight.join_next().await {
                // A task that finished before the abort counted itself.
                if r.is_err() {
                    abandoned += 1;
                }
            }
            self.ctx.stats.failed.fetch_add(abandoned, Relaxed);
            warn!(sink = %self.ctx.name, kind = self.ctx.kind, abandoned, "closed with undelivered alerts");
        }
        debug!(sink = %self.ctx.name, kind = self.ctx.kind, "sink closed");
    }

    fn start(&self, inflight: &mut JoinSet<()>, ev: Arc<AlertEvent>, slot: OwnedSemaphorePermit) {
        let sink = self.sink.clone();
        let ctx = self.ctx.clone();
        inflight.spawn(async move {
            deliver_with_retries(&*sink, &ev, &ctx).await;
            drop(slot);
        });
    }

    /// Collects finished tasks so the set does not grow.
    fn reap(&self, inflight: &mut JoinSet<()>) {
        while let Some(r) = inflight.try_join_next() {
            self.note(r);
        }
    }

    fn note(&self, r: Result<(), JoinError>) {
        if let Err(e) = r {
            // Only a panic gets here while the worker runs: tasks are not
            // aborted before the drain deadline.
            self.ctx.stats.failed.fetch_add(1, Relaxed);
            warn!(sink = %self.ctx.name, kind = self.ctx.kind, error = %e, "delivery task failed");
        }
    }
}

/// Attempts until one succeeds or the retries run out, counting both.
async fn deliver_with_retries<D: Deliver>(sink: &D, ev: &AlertEvent, ctx: &TaskCtx) {
    let p = &ctx.policy;
    let mut retry = 0;
    loop {
        let result = match tokio::time::timeout(p.timeout, sink.deliver(ev)).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::new(format!(
                "timed out after {}",
                humantime::format_duration(p.timeout)
            ))),
        };
        let error = match result {
            Ok(()) => {
                ctx.stats.sent.fetch_add(1, Relaxed);
                return;
            }
            Err(e) => e,
        };
        if retry >= p.retries {
            ctx.stats.failed.fetch_add(1, Relaxed);
            warn!(sink = %ctx.name, kind = ctx.kind, id = %ev.id, attempts = retry + 1, %error, "alert not delivered; giving up");
            return;
        }
        retry += 1;
        ctx.stats.retries.fetch_add(1, Relaxed);
        let wait = p.backoff.delay(retry, random_u64());
        debug!(sink = %ctx.name, kind = ctx.kind, id = %ev.id, retry, ?wait, %error, "delivery failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use super::test_support::{event, eventually, Receiver, Reply};
    use super::*;
    use crate::alert::event::Level;
    use crate::config::HttpSink;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    /// What the fake sink does on its n-th attempt (0-based).
    #[derive(Clone, Copy, Debug)]
    enum Outcome {
        Deliver,
        Fail,
        Hang,
        /// Waits for a permit of the gate, then delivers.
        Gated,
    }

    struct Fake {
        plan: fn(usize) -> Outcome,
        attempts: AtomicUsize,
        times: Mutex<Vec<Instant>>,
        gate: Semaphore,
    }

    impl Fake {
        fn new(plan: fn(usize) -> Outcome) -> Arc<Fake> {
            Arc::new(Fake {
                plan,
                attempts: AtomicUsize::new(0),
                times: Mutex::new(Vec::new()),
                gate: Semaphore::new(0),
            })
        }

        fn attempts(&self) -> usize {
            self.attempts.load(Relaxed)
        }
    }

    impl Deliver for Arc<Fake> {
        async fn deliver(&self, _: &AlertEvent) -> Result<(), DeliveryError> {
            let n = self.attempts.fetch_add(1, Relaxed);
            self.times.lock().unwrap().push(Instant::now());
            match (self.plan)(n) {
                Outcome::Deliver => Ok(()),
                Outcome::Fail => Err(DeliveryError::new("refused")),
                Outcome::Hang => std::future::pending().await,
                Outcome::Gated => {
                    self.gate.acquire().await.unwrap().forget();
                    Ok(())
                }
            }
        }
    }

    fn options(queue: usize, concurrency: usize, timeout_ms: u64, retries: u32) -> SinkOptions {
        SinkOptions {
            queue,
            concurrency,
            timeout: Duration::from_millis(timeout_ms),
            retries,
        }
    }

    const FAST: Backoff = Backoff {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(40),
    };

    fn spawn_fake(fake: &Arc<Fake>, o: SinkOptions) -> SinkHandle {
        let rt = tokio::runtime::Handle::current();
        spawn_worker(
            fake.clone(),
            "fake".into(),
            "fake",
            Policy::new(&o, FAST),
            &rt,
        )
    }

    fn ev() -> Arc<AlertEvent> {
        Arc::new(event(Level::Warning))
    }

    #[test]
    fn offer_works_from_a_plain_thread_and_never_waits() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = Fake::new(|_| Outcome::Hang);
        let sink = rt.block_on(async { spawn_fake(&fake, options(4, 1, 60_000, 0)) });
        let offering = sink.clone();
        let took = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let accepted = (0..100).filter(|_| offering.offer(ev())).count();
            (accepted, start.elapsed())
        })
        .join()
        .unwrap();
        // One hangs in flight, one waits for its slot, four are queued.
        let (accepted, elapsed) = took;
        assert!(accepted <= 6, "{accepted}");
        assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
        let counts = sink.stats().snapshot();
        assert_eq!(counts.queued + counts.dropped, 100);
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let fake = Fake::new(|_| Outcome::Gated);
        let sink = spawn_fake(&fake, options(2, 1, 60_000, 0));
        assert!(sink.offer(ev()));
        eventually(|| fake.attempts() == 1).await;
        // The worker takes the next one and holds it until a slot frees.
        assert!(sink.offer(ev()));
        eventually(|| sink.queue_len() == 0).await;
        assert!(sink.offer(ev()));
        assert!(sink.offer(ev()));
        assert_eq!(sink.queue_len(), 2);
        assert!(!sink.offer(ev()));
        assert!(!sink.offer(ev()));
        assert!(!sink.offer(ev()));
        let counts = sink.stats().snapshot();
        assert_eq!((counts.queued, counts.dropped), (4, 3));

        fake.gate.add_permits(4);
        eventually(|| sink.stats().snapshot().sent == 4).await;
    }

    #[tokio::test]
    async fn failures_are_retried_with_backoff_then_given_up() {
        let fake = Fake::new(|_| Outcome::Fail);
        let sink = spawn_fake(&fake, options(8, 1, 1_000, 3));
        sink.offer(ev());
        eventually(|| sink.stats().snapshot().failed == 1).await;
        let counts = sink.stats().snapshot();
        assert_eq!((counts.sent, counts.retries), (0, 3));
        assert_eq!(fake.attempts(), 4);
        let times = fake.times.lock().unwrap();
        for (retry, pair) in (1..).zip(times.windows(2)) {
            let gap = pair[1] - pair[0];
            // Full jitter: anywhere up to the ceiling (plus scheduling).
            assert!(
                gap <= FAST.ceiling(retry) + Duration::from_millis(50),
                "retry {retry} after {gap:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_retry_that_succeeds_counts_sent() {
        let fake = Fake::new(|n| {
            if n < 2 {
                Outcome::Fail
            } else {
                Outcome::Deliver
            }
        });
        let sink = spawn_fake(&fake, options(8, 1, 1_000, 5));
        sink.offer(ev());
        eventually(|| sink.stats().snapshot().sent == 1).await;
        let counts = sink.stats().snapshot();
        assert_eq!((counts.retries, counts.failed), (2, 0));
    }

    #[tokio::test]
    async fn attempt_overrunning_the_timeout_is_abandoned_and_retried() {
        let fake = Fake::new(|n| {
            if n == 0 {
                Outcome::Hang
            } else {
                Outcome::Deliver
            }
        });
        let sink = spawn_fake(&fake, options(8, 1, 100, 1));
        let start = Instant::now();
        sink.offer(ev());
        eventually(|| sink.stats().snapshot().sent == 1).await;
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert_eq!(sink.stats().snapshot().retries, 1);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_full_jitter() {
        let b = Backoff::DEFAULT;
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(2), Duration::from_millis(400));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(8), Duration::from_millis(25_600));
        assert_eq!(b.ceiling(9), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
        assert_eq!(b.delay(3, 0), Duration::ZERO);
        assert_eq!(b.delay(3, u64::MAX), Duration::from_millis(800));
        let half = b.delay(3, u64::MAX / 2).as_millis();
        assert!((399..=401).contains(&half), "{half}");
        assert_ne!(random_u64(), random_u64());
    }

    #[tokio::test]
    async fn close_delivers_what_is_queued_then_refuses() {
        let fake = Fake::new(|_| Outcome::Gated);
        let sink = spawn_fake(&fake, options(8, 1, 5_000, 0));
        for _ in 0..5 {
            assert!(sink.offer(ev()));
        }
        sink.close();
        fake.gate.add_permits(5);
        tokio::time::timeout(Duration::from_secs(2), sink.closed())
            .await
            .expect("drained in time");
        assert_eq!(sink.stats().snapshot().sent, 5);
        assert!(!sink.offer(ev()));
        assert_eq!(sink.stats().snapshot().dropped, 1);
    }

    #[tokio::test]
    async fn dropping_every_handle_drains_the_queue() {
        let fake = Fake::new(|_| Outcome::Deliver);
        let sink = spawn_fake(&fake, options(8, 2, 5_000, 0));
        let stats = sink.stats();
        let other = sink.clone();
        for _ in 0..3 {
            sink.offer(ev());
        }
        drop(sink);
        drop(other);
        eventually(|| stats.sent.load(Relaxed) == 3).await;
    }

    #[tokio::test]
    async fn closing_gives_up_on_a_hung_receiver_after_one_timeout() {
        let fake = Fake::new(|_| Outcome::Hang);
        let sink = spawn_fake(&fake, options(8, 1, 200, 100));
        for _ in 0..3 {
            sink.offer(ev());
        }
        eventually(|| fake.attempts() == 1).await;
        let start = Instant::now();
        sink.shutdown().await;
        let took = start.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}");
        let counts = sink.stats().snapshot();
        assert_eq!((counts.sent, counts.failed), (0, 3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hung_receiver_delays_neither_its_other_deliveries_nor_other_sinks() {
        // Never answers a CRITICAL; answers everything else.
        let mut hanging = Receiver::serve(|req| {
            if req.body.contains("\"level\":\"CRITICAL\"") {
                Reply::Hang
            } else {
                Reply::Status(200)
            }
        })
        .await;
        let mut healthy = Receiver::ok().await;
        let http = |url: String| {
            SinkConfig::Http(HttpSink {
                url,
                headers: Default::default(),
                options: Some(options(16, 4, 30_000, 0)),
            })
        };
        let rt = tokio::runtime::Handle::current();
        let a = spawn_sink(http(hanging.url("/")), "a".into(), &rt);
        let b = spawn_sink(http(healthy.url("/")), "b".into(), &rt);

        let start = Instant::now();
        assert!(a.offer(Arc::new(event(Level::Critical))));
        assert!(a.offer(Arc::new(event(Level::Critical))));
        hanging.next().await;
        hanging.next().await;
        assert!(a.offer(Arc::new(event(Level::Warning))));
        assert!(b.offer(Arc::new(event(Level::Warning))));
        assert!(start.elapsed() < Duration::from_millis(500));

        let second = hanging.next_within(Duration::from_secs(1)).await;
        assert!(second.body.contains("\"level\":\"WARNING\""));
        healthy.next_within(Duration::from_secs(1)).await;
        eventually(|| a.stats().snapshot().sent == 1 && b.stats().snapshot().sent == 1).await;
        assert_eq!(a.stats().snapshot().failed, 0);
    }
}
