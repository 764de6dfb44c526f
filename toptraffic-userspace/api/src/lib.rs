//! The HTTP API's requests and JSON answers, shared by the daemon that
//! writes them and the clients that read them (`toptraffic top`, the load
//! generator).
//!
//! Fields are declared in alphabetical order: the answers have always been
//! written with their keys sorted, and serde writes a struct's fields in
//! declaration order. Times are RFC 3339 text to the second.

mod alerts;
mod cluster;
mod number;
mod stats;
mod status;
mod top;

pub use alerts::{AlertBlock, Alerts, KeyAlert};
pub use cluster::{Cluster, ClusterExchange};
pub use number::Number;
pub use stats::{
    AlertBlockStats, KernelSetup, KernelStats, LastReload, LevelCounts, OverflowStats, Reloads,
    RuleStats, SinkStats, Stats,
};
pub use status::{ErrorAnswer, Health, Reloaded, Stalled};
pub use top::{ClusterTop, Top, TopQuery, TopRow, DEFAULT_LIMIT, MAX_LIMIT};
