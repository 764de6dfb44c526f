//! toptraffic: counts InfluxDB line protocol received over UDP per group key
//! over a sliding window, and serves the result.
//!
//! Follow a datagram: `ingest` (receive and count) → `snapshot` (one interval's
//! counts) → `window` (the sliding sum per key) → `view` (what the `api`
//! serves). `daemon` wires the threads together.

pub mod api;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod ingest;
pub mod key;
pub mod lineproto;
pub mod loadgen;
pub mod metrics;
pub mod rules;
pub mod snapshot;
pub mod stats;
pub mod top;
pub mod view;
pub mod window;
