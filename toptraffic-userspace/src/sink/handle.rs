//! The sending side of a sink: offer an event without ever waiting, read
//! the counters, close.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::stats::SinkStats;
use crate::alert::event::AlertEvent;

/// The sending side of a running sink. Cheap to clone; when the last clone is
/// dropped the sink closes as with [`SinkHandle::close`].
#[derive(Clone)]
pub struct SinkHandle {
    inner: Arc<Inner>,
}

/// What a worker hands its handle: the queue's sending side, the counters,
/// and the tokens that close the worker and say it has exited.
pub(super) struct Inner {
    pub(super) tx: mpsc::Sender<Arc<AlertEvent>>,
    pub(super) stats: Arc<SinkStats>,
    pub(super) name: String,
    pub(super) kind: &'static str,
    pub(super) capacity: usize,
    pub(super) close: CancellationToken,
    pub(super) done: CancellationToken,
    /// What the stop cut short, for the daemon to keep (`outbox`).
    pub(super) left: Left,
}

/// Events a closing worker abandoned, undelivered.
pub(super) type Left = Arc<Mutex<Vec<Arc<AlertEvent>>>>;

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
    pub(super) fn new(inner: Inner) -> SinkHandle {
        SinkHandle {
            inner: Arc::new(inner),
        }
    }

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

    /// The name given to [`spawn_sink`](super::spawn_sink).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// See [`SinkConfig::kind`](crate::config::SinkConfig::kind).
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

    /// The events the worker abandoned when its time to drain ran out
    /// (still queued, or in an attempt), in the order they came; taken
    /// once.
    pub fn take_left(&self) -> Vec<Arc<AlertEvent>> {
        std::mem::take(&mut *self.inner.left.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// [`close`](Self::close), then [`closed`](Self::closed).
    #[cfg(test)]
    pub async fn shutdown(&self) {
        self.close();
        self.closed().await;
    }
}

impl SinkHandle {
    /// A handle without a worker: what is offered waits in the returned
    /// receiver, up to `capacity` events (`toptraffic replay` prints them;
    /// tests read what the alert engine sends).
    pub fn collector(
        name: &str,
        kind: &'static str,
        capacity: usize,
    ) -> (SinkHandle, mpsc::Receiver<Arc<AlertEvent>>) {
        let (tx, rx) = mpsc::channel(capacity);
        let inner = Inner {
            tx,
            stats: Arc::default(),
            name: name.to_string(),
            kind,
            capacity,
            close: CancellationToken::new(),
            done: CancellationToken::new(),
            left: Left::default(),
        };
        (
            SinkHandle {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// [`collector`](Self::collector) with room for 4096 events.
    #[cfg(test)]
    pub(crate) fn capture(
        name: &str,
        kind: &'static str,
    ) -> (SinkHandle, mpsc::Receiver<Arc<AlertEvent>>) {
        SinkHandle::collector(name, kind, 4096)
    }
}
