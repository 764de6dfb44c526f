//! The worker behind every sink: a bounded queue, at most `concurrency`
//! deliveries at a time, each bounded by `timeout` and retried with backoff,
//! and a bounded drain on close.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

use super::backoff::{random_u64, Backoff};
use super::deliver::{Deliver, DeliveryError};
use super::handle::{Inner, Left, SinkHandle};
use super::stats::SinkStats;
use crate::alert::event::AlertEvent;
use crate::config::SinkOptions;

/// How a worker delivers: the options, resolved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub(super) queue: usize,
    pub(super) concurrency: usize,
    pub(super) timeout: Duration,
    pub(super) retries: u32,
    pub(super) backoff: Backoff,
    /// How long a closing sink goes on delivering.
    pub(super) drain: Duration,
}

impl Policy {
    pub(super) fn new(o: &SinkOptions, backoff: Backoff) -> Self {
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

pub(super) fn spawn_worker<D: Deliver>(
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
    let left = Left::default();
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
        attempts: HashMap::new(),
        left: left.clone(),
    };
    rt.spawn(worker.run(done.clone().drop_guard()));
    SinkHandle::new(Inner {
        tx,
        stats,
        name,
        kind,
        capacity: policy.queue,
        close,
        done,
        left,
    })
}

/// What each delivery task shares with the worker.
pub(super) struct TaskCtx {
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
    /// The event of each delivery task running.
    attempts: HashMap<Id, Arc<AlertEvent>>,
    /// Where the events the stop cuts short go.
    left: Left,
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
            while let Some(r) = inflight.join_next_with_id().await {
                self.note(r);
            }
        })
        .await;
        if drained.is_err() {
            // In attempts first: they came before the queued ones.
            inflight.abort_all();
            let mut left = Vec::new();
            while let Some(r) = inflight.join_next_with_id().await {
                // A task that finished before the abort counted itself.
                match r {
                    Ok((id, ())) => {
                        self.attempts.remove(&id);
                    }
                    Err(e) => left.extend(self.attempts.remove(&e.id())),
                }
            }
            left.sort_by_key(|ev| ev.time);
            left.extend(pending.take());
            while let Ok(ev) = self.rx.try_recv() {
                left.push(ev);
            }
            let abandoned = left.len() as u64;
            self.left
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(left);
            self.ctx.stats.failed.fetch_add(abandoned, Relaxed);
            self.ctx.stats.abandoned.fetch_add(abandoned, Relaxed);
            warn!(sink = %self.ctx.name, kind = self.ctx.kind, abandoned, "closed with undelivered alerts");
        }
        debug!(sink = %self.ctx.name, kind = self.ctx.kind, "sink closed");
    }

    fn start(
        &mut self,
        inflight: &mut JoinSet<()>,
        ev: Arc<AlertEvent>,
        slot: OwnedSemaphorePermit,
    ) {
        let sink = self.sink.clone();
        let ctx = self.ctx.clone();
        let task_ev = ev.clone();
        let task = inflight.spawn(async move {
            deliver_with_retries(&*sink, &task_ev, &ctx).await;
            drop(slot);
        });
        self.attempts.insert(task.id(), ev);
    }

    /// Collects finished tasks so the set does not grow.
    fn reap(&mut self, inflight: &mut JoinSet<()>) {
        while let Some(r) = inflight.try_join_next_with_id() {
            self.note(r);
        }
    }

    fn note(&mut self, r: Result<(Id, ()), JoinError>) {
        let id = match &r {
            Ok((id, ())) => *id,
            Err(e) => e.id(),
        };
        self.attempts.remove(&id);
        if let Err(e) = r {
            // Only a panic gets here while the worker runs: tasks are not
            // aborted before the drain deadline.
            self.ctx.stats.failed.fetch_add(1, Relaxed);
            warn!(sink = %self.ctx.name, kind = self.ctx.kind, error = %e, "delivery task failed");
        }
    }
}

/// Attempts until one succeeds or the retries run out, counting both.
pub(super) async fn deliver_with_retries<D: Deliver>(sink: &D, ev: &AlertEvent, ctx: &TaskCtx) {
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
