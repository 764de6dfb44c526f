//! What one kind of sink implements: one delivery attempt, and why it failed.

use std::fmt;
use std::future::Future;

use crate::alert::event::AlertEvent;

/// What one kind of sink does with one event; the worker adds the queue,
/// the timeout and the retries.
pub(super) trait Deliver: Send + Sync + 'static {
    /// Deliveries go one at a time whatever `concurrency` says (a file's
    /// lines must stay in order).
    const SERIAL: bool = false;

    /// One attempt. Dropped when it overruns the timeout, so whatever it
    /// holds must clean up on drop.
    fn deliver(&self, ev: &AlertEvent) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}

/// Why an attempt failed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeliveryError(pub(super) String);

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeliveryError {
    pub(super) fn new(msg: impl Into<String>) -> Self {
        DeliveryError(msg.into())
    }

    /// An error and its causes: reqwest's own message hides the reason
    /// ("connection refused") in its source.
    pub(super) fn chain(context: &str, e: &dyn std::error::Error) -> Self {
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
