//! toptraffic: counts InfluxDB line protocol received over UDP per group key
//! over a sliding window, and serves the result.
//!
//! Follow a datagram: `ingest` (receive and count) → `snapshot` (one interval's
//! counts) → `window` (the sliding sum per key) → `view` (what the `api`
//! serves). `daemon` wires the threads together.

pub(crate) mod alert;
/// The alerting's benchmark, for `cargo xtask bench micro`.
#[cfg(feature = "bench")]
pub use alert::bench::AlertBench;
pub(crate) mod api;
pub mod caps;
pub mod clock;
pub(crate) mod cluster;
/// Simulated cluster nodes, for `cargo xtask bench cluster`.
#[cfg(feature = "bench")]
pub use cluster::sim as cluster_sim;
pub mod config;
pub(crate) mod control;
pub mod daemon;
pub mod dirs;
mod goformat;
pub mod import;
pub mod ingest;
pub mod key;
pub mod lineproto;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub(crate) mod persist;
#[cfg(test)]
mod proptest_config;
pub mod replay;
pub(crate) mod rotation;
pub mod rules;
pub mod ruletest;
pub(crate) mod sink;
pub mod sketch;
pub mod snapshot;
pub mod stats;
pub mod top;
pub(crate) mod view;
pub mod window;

/// Installs rustls's crypto provider (ring), once per process: every TLS
/// client (HTTP sinks, `rediss://`) needs one.
pub fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Err only when a provider is already installed: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP client builder with TLS (rustls over ring); every HTTP client
/// comes from here.
pub fn http_client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder().user_agent(concat!("toptraffic/", env!("CARGO_PKG_VERSION")))
}
