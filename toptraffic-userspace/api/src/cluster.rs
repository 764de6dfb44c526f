//! `GET /api/v1/cluster`: the nodes meeting in Redis, as this node sees them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Exchanges with Redis, and those that failed or timed out.
    pub exchanges: u64,
    pub failures: u64,
    /// Why the last exchange failed; null when it succeeded.
    pub last_error: Option<String>,
    /// When Redis last answered (RFC 3339); null before it ever did.
    pub last_ok: Option<String>,
    /// The live nodes, sorted, as of the last answer.
    pub members: Vec<String>,
    /// This node's name.
    pub node: String,
    /// The Redis URLs, without passwords.
    pub redis: Vec<String>,
    /// Whether Redis answered the last exchange: while false, cluster rules
    /// run on this node's counts alone.
    pub up: bool,
}
