//! The worker's promises, with a fake sink: retries with backoff, bounded
//! queue and concurrency, a hung receiver that delays nothing else, a
//! bounded close.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::backoff::{random_u64, Backoff};
use super::deliver::{Deliver, DeliveryError};
use super::handle::SinkHandle;
use super::spawn::spawn_sink;
use super::test_support::{event, eventually, Receiver, Reply};
use super::worker::{spawn_worker, Policy};
use crate::alert::event::AlertEvent;
use crate::alert::event::Level;
use crate::config::{HttpSink, SinkConfig, SinkOptions};
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

/// Events a stop cuts short are failed and counted as abandoned, so that
/// the stop can report them undelivered.
#[tokio::test]
async fn close_past_the_drain_counts_what_it_cut_short() {
    let fake = Fake::new(|_| Outcome::Hang);
    let sink = spawn_fake(&fake, options(8, 1, 300, 0));
    for _ in 0..5 {
        assert!(sink.offer(ev()));
    }
    sink.close();
    tokio::time::timeout(Duration::from_secs(5), sink.closed())
        .await
        .expect("closed at the drain's deadline");
    let c = sink.stats().snapshot();
    assert_eq!((c.sent, c.failed), (0, 5));
    // The first attempt may time out just before the deadline (failed, not
    // abandoned); every other event was still queued or in an attempt.
    assert!((4..=5).contains(&c.abandoned), "{c:?}");
    assert_eq!(c.undelivered(), c.abandoned);
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
