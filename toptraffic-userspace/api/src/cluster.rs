//! `GET /api/v1/cluster`: the nodes meeting in Redis, as this node sees them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::number::Number;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// Exchanges with Redis, and those that failed or timed out.
    pub exchanges: u64,
    pub failures: u64,
    /// Cluster rules now evaluated on this node's counts alone (the
    /// exchange failed), by rule: false while the cluster's values come.
    #[serde(default)]
    pub fallback: BTreeMap<String, bool>,
    /// The node that sends the cluster rules' alerts; null before Redis
    /// answered.
    #[serde(default)]
    pub lease_holder: Option<String>,
    /// Why the last exchange failed; null when it succeeded.
    pub last_error: Option<String>,
    /// When Redis last answered (RFC 3339); null before it ever did.
    pub last_ok: Option<String>,
    /// The live nodes, sorted, as of the last answer.
    pub members: Vec<String>,
    /// Nodes that stopped cleanly less than a window ago: the lines they
    /// counted are still in the cluster's values, sorted.
    #[serde(default)]
    pub parked: Vec<String>,
    /// Nodes that left without parking less than a window ago (died, or
    /// lost Redis), sorted: their lines are missing from the cluster's
    /// values, so alerts do not lower levels on them meanwhile.
    #[serde(default)]
    pub departed: Vec<String>,
    /// This node's name.
    pub node: String,
    /// The Redis URLs, without passwords.
    pub redis: Vec<String>,
    /// Times this node took the sending lease (at start or from a node
    /// that stopped).
    #[serde(default)]
    pub takeovers: u64,
    /// Each cluster rule's last exchanged interval.
    pub rules: BTreeMap<String, ClusterExchange>,
    /// Whether Redis answered the last exchange: while false, cluster rules
    /// run on this node's counts alone.
    pub up: bool,
}

/// One rule's last exchange, as this node took part in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterExchange {
    /// Bytes this node sent and received, and its round trips to Redis.
    pub bytes: u64,
    /// Keys that can reach the threshold: their values were exchanged.
    pub candidates: u64,
    /// Whether every live node took part in time.
    pub complete: bool,
    pub nodes: Vec<String>,
    pub round_trips: u64,
    /// T / N.
    pub threshold: Number,
    pub window_end: String,
}
