//! What this node knows of the cluster, for the API and the metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::exchange::Exchanged;
use crate::config::Cluster;

/// Shared between the membership task, which writes it, and its readers.
#[derive(Debug)]
pub struct ClusterStatus {
    inner: Mutex<ClusterView>,
    /// The window a stopping node leaves behind (`parked`), from the
    /// rotation thread once it has folded the open interval in.
    leaving: watch::Sender<Option<Arc<Vec<u8>>>>,
}

/// One reading of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub node: String,
    pub redis: Vec<String>,
    /// Whether the last exchange with Redis succeeded.
    pub up: bool,
    /// The live nodes, sorted, as of the last exchange.
    pub members: Vec<String>,
    /// Nodes that stopped cleanly less than a window ago, whose windows
    /// are still in the cluster's values (`parked`), sorted.
    pub parked: Vec<String>,
    /// Nodes that left without parking less than a window ago (died, or
    /// lost Redis), sorted: their lines are missing from the cluster's
    /// values, which the alerts take as a lower bound meanwhile.
    pub departed: Vec<String>,
    pub last_ok: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Exchanges with Redis, and those that failed or timed out.
    pub exchanges: u64,
    pub failures: u64,
    /// Each cluster rule's last exchanged interval.
    pub values: BTreeMap<String, Exchanged>,
    /// The node holding the sending lease, as of the last exchange.
    pub lease_holder: Option<String>,
    /// Times this node took the lease over from another (or from none).
    pub takeovers: u64,
    /// Cluster rules now evaluated on this node's counts (the exchange
    /// failed), by rule.
    pub fallback: BTreeMap<String, bool>,
    /// The rules exchanged, with their thresholds (the config's, as of the
    /// last reload).
    pub rules: Vec<ClusterRule>,
}

/// A cluster rule: its name and the threshold its keys are pruned by.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRule {
    pub name: String,
    pub threshold: f64,
}

impl ClusterRule {
    /// The config's cluster rules: those of scope cluster with alerts.
    pub fn of(config: &crate::config::Config) -> Vec<ClusterRule> {
        if config.cluster.is_none() {
            return Vec::new();
        }
        config
            .rules
            .iter()
            .filter(|r| r.scope == crate::config::Scope::Cluster)
            .filter_map(|r| {
                r.cluster_threshold.map(|threshold| ClusterRule {
                    name: r.name.clone(),
                    threshold,
                })
            })
            .collect()
    }
}

impl ClusterStatus {
    pub fn new(cfg: &Cluster) -> ClusterStatus {
        ClusterStatus {
            inner: Mutex::new(ClusterView {
                node: cfg.node.clone(),
                // Shown without a password.
                redis: cfg.redis.iter().map(|u| redacted(u)).collect(),
                up: false,
                members: Vec::new(),
                parked: Vec::new(),
                departed: Vec::new(),
                last_ok: None,
                last_error: None,
                exchanges: 0,
                failures: 0,
                values: BTreeMap::new(),
                lease_holder: None,
                takeovers: 0,
                fallback: BTreeMap::new(),
                rules: Vec::new(),
            }),
            leaving: watch::Sender::new(None),
        }
    }

    /// Hands the membership task the window this node leaves behind as it
    /// stops (the state file's encoding, the cluster rules only).
    pub fn leave_behind(&self, window: Vec<u8>) {
        self.leaving.send_replace(Some(Arc::new(window)));
    }

    /// Watches for the window [`leave_behind`](Self::leave_behind) hands
    /// over.
    pub(super) fn leaving(&self) -> watch::Receiver<Option<Arc<Vec<u8>>>> {
        self.leaving.subscribe()
    }

    /// The window handed over by [`leave_behind`](Self::leave_behind),
    /// waited for up to `within`.
    pub(super) async fn left_behind(&self, within: Duration) -> Option<Arc<Vec<u8>>> {
        let mut rx = self.leaving.subscribe();
        let got = tokio::time::timeout(within, async {
            rx.wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|w| w.clone())
        })
        .await;
        got.ok().flatten()
    }

    pub fn view(&self) -> ClusterView {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_departed(&self, nodes: Vec<String>) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .departed = nodes;
    }

    /// Marks cluster rule `rule` as running on this node's counts, or on
    /// the cluster's again.
    pub fn set_fallback(&self, rule: &str, on: bool) {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        v.fallback.insert(rule.to_string(), on);
    }

    /// The rules to exchange (at start and after each reload).
    pub fn set_rules(&self, rules: Vec<ClusterRule>) {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        v.fallback.retain(|r, _| rules.iter().any(|c| &c.name == r));
        v.values.retain(|r, _| rules.iter().any(|c| &c.name == r));
        v.rules = rules;
    }

    pub(super) fn set_lease(&self, holder: Option<String>, took_over: bool) {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        v.lease_holder = holder;
        v.takeovers += u64::from(took_over);
    }

    pub(super) fn set_values(&self, rule: &str, x: Exchanged) {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        v.values.insert(rule.to_string(), x);
    }

    /// Records an exchange: the live and parked members it read, or why it
    /// failed. Returns whether Redis was up before, and is now.
    pub(super) fn record(
        &self,
        result: Result<(Vec<String>, Vec<String>), String>,
        now: SystemTime,
    ) -> (bool, bool) {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let was = v.up;
        v.exchanges += 1;
        match result {
            Ok((members, parked)) => {
                v.up = true;
                v.members = members;
                v.parked = parked;
                v.last_ok = Some(now);
                v.last_error = None;
            }
            Err(e) => {
                v.up = false;
                v.failures += 1;
                v.last_error = Some(e);
            }
        }
        (was, v.up)
    }
}

/// `redis://user:secret@host:6379` as `redis://user:***@host:6379`.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://***@{host}"),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
        assert_eq!(redacted("rediss://u:pw@h:1/0"), "rediss://u:***@h:1/0");
        assert_eq!(redacted("redis://pw@h"), "redis://***@h");
    }
}
