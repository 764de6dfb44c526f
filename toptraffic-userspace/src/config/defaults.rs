//! Defaults and limits, written once: what a config that says nothing gets,
//! and the most it may ask for.

use std::time::Duration;

/// The embedded default: the seed's three Kapacitor tasks as rules.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");
/// Name shown in errors and logs for the embedded default.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default>";

/// Largest UDP payload over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// Most group-by tags, and most filters, one rule may name.
pub const MAX_RULE_TAGS: usize = 16;
/// Most keys one rule may hold.
pub const MAX_KEYS_LIMIT: usize = 100_000_000;
/// Most intervals (period / every) the window may keep.
pub const MAX_INTERVALS: usize = 10_000;
/// Most receive threads (`ingest.threads`): a socket, a thread and tables
/// each; past this, file descriptors and memory run out before it helps.
pub const MAX_THREADS: usize = 1024;

pub const LISTEN: &str = "127.0.0.1:9100";
pub const HTTP_LISTEN: &str = "127.0.0.1:9101";
pub const RECV_BUFFER: usize = 64 << 20;
pub const MAX_DATAGRAM: usize = 8192;
pub const PERIOD: Duration = Duration::from_secs(60);
pub const EVERY: Duration = Duration::from_secs(5);
pub const MAX_KEYS: usize = 200_000;
/// Longest key held whole (its values with their 2-byte lengths); longer
/// ones are held shortened (`key::bound`). Room for an IPv6 address and a
/// 100-byte id; a rule of more than six group_by tags gets
/// `key::min_bound` of them instead.
pub const MAX_KEY_BYTES: usize = 128;
/// The overflow sketch's error: an estimate exceeds a key's value by at
/// most this share of the lines (or amounts) the sketch holds over the
/// window ...
pub const OVERFLOW_ERROR: f64 = 0.0005;
/// ... with this probability.
pub const OVERFLOW_CONFIDENCE: f64 = 0.99;
/// The smallest overflow error accepted: its sketch is 2.7 million counters
/// a row, about 1.3 GB over 12 intervals at the default confidence.
pub const MIN_OVERFLOW_ERROR: f64 = 0.000_001;
pub const PIN_DIR: &str = "/sys/fs/bpf/toptraffic";

pub fn sink_queue() -> usize {
    1024
}
pub fn sink_concurrency() -> usize {
    4
}
pub fn sink_timeout() -> Duration {
    Duration::from_secs(10)
}
pub fn sink_retries() -> u32 {
    3
}
pub fn log_max_size() -> u64 {
    100 << 20
}
pub fn log_max_files() -> u32 {
    5
}
pub fn slack_username() -> String {
    "kapacitor".to_string()
}
