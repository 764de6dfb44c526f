//! A sink's counters: queued, sent, failed, dropped, retried.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
