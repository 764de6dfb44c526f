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
    /// Of `failed`: events the stop cut short (still queued, or in an
    /// attempt, when the sink's time to drain ran out): never delivered.
    pub abandoned: AtomicU64,
}

/// The counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub retries: u64,
    pub abandoned: u64,
}

impl SinkStats {
    pub fn snapshot(&self) -> SinkCounts {
        SinkCounts {
            queued: self.queued.load(Relaxed),
            sent: self.sent.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            retries: self.retries.load(Relaxed),
            abandoned: self.abandoned.load(Relaxed),
        }
    }
}

impl SinkCounts {
    /// Events accepted that never reached the sink's destination and were
    /// not given up on after their attempts: still queued or in an attempt
    /// now, or cut short by the stop. Every attempt failing is not among
    /// them (that is `failed` alone).
    pub fn undelivered(&self) -> u64 {
        self.queued.saturating_sub(self.sent + self.failed) + self.abandoned
    }
}
