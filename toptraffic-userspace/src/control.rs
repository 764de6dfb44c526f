//! Messages to the rotation thread: what the HTTP layer and the daemon may ask of it.
//!
//! The rotation thread owns the window and the alert states; everything
//! else talks to it through [`Control`] on a channel, and it answers between
//! rotations. The HTTP layer depends on this protocol, not on the thread.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::alert::engine::{ClusterValues, Outgoing};
use crate::config::{Config, Overrides, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};

/// A rule's top keys, as the API serves them.
#[derive(Debug, Clone, PartialEq)]
pub struct TopAnswer {
    pub window_end: Option<SystemTime>,
    /// Keys in the window (all of them, not only those returned).
    pub keys: usize,
    /// By value descending.
    pub top: Vec<TopKey>,
}

/// A key's tags in group_by order, its value, and the value's error bound
/// while it is partly the overflow sketch's estimate.
pub type TopKey = (Vec<(String, String)>, f64, Option<f64>);

/// What a cluster exchange asks of this node's window: the keys of rule
/// `rule` whose value is at least `at_least` (None: none asked), and the
/// values of `keys` (0 for a key the window does not hold).
pub struct LocalQuery {
    pub rule: String,
    pub at_least: Option<f64>,
    pub keys: Vec<Vec<u8>>,
    /// This many of the largest keys, with their values.
    pub top: usize,
}

/// The answer, of the window ending at `window_end`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalAnswer {
    pub window_end: Option<SystemTime>,
    pub over: Vec<(Vec<u8>, f64)>,
    pub values: Vec<f64>,
    /// The `top` largest keys.
    pub top: Vec<(Vec<u8>, f64)>,
    /// The rule's keys with alert state (asked with `at_least`): their
    /// cluster values are exchanged whatever they are.
    pub stateful: Vec<Vec<u8>>,
}

/// A cluster exchange's outcome for rule `rule`: the cluster values of the
/// window ending at the given time, or None when the exchange failed (the
/// rule's alerts then run on this node's window).
pub struct ClusterInput {
    pub rule: String,
    pub values: Option<(SystemTime, ClusterValues)>,
}

/// Messages to the rotation thread.
pub enum Control {
    /// Save the state file (if configured) and stop.
    Stop,
    /// A rule's top `limit` keys; None when there is no such rule.
    Top {
        rule: String,
        limit: usize,
        reply: mpsc::Sender<Option<TopAnswer>>,
    },
    /// Local values for a cluster exchange; None when there is no such rule.
    Local(LocalQuery, mpsc::Sender<Option<LocalAnswer>>),
    /// Evaluate a cluster rule's alerts on the cluster's values; the
    /// events decided come back, for the node holding the sending lease.
    Cluster(ClusterInput, mpsc::Sender<Vec<Outgoing>>),
    /// Apply a validated config; the result (a summary, or why not) goes
    /// back on the channel.
    Reload(Box<Config>, mpsc::Sender<Result<String, String>>),
}

/// Loads the config again and hands it to the rotation thread.
pub struct Reloader {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
    pub control: Arc<Mutex<mpsc::Sender<Control>>>,
}

impl Reloader {
    /// Blocking: reads and validates the config, then waits for the
    /// rotation thread to apply it. Errors name the file, line and field.
    pub fn reload(&self) -> Result<String, String> {
        let mut config = match &self.path {
            Some(p) => Config::load(p),
            None => Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME),
        }
        .map_err(|e| e.to_string())?;
        self.overrides.apply(&mut config);
        let (tx, rx) = mpsc::channel();
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Control::Reload(Box::new(config), tx))
            .map_err(|_| "the daemon is stopping".to_string())?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the rotation thread did not answer".to_string())?
    }
}
