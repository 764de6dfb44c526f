//! The TOML configuration: schema, defaults in one place, and validation whose
//! errors name the file, the line and the field.
//!
//! [`Config::parse`] turns text into a validated [`Config`], alert lambdas
//! and templates compiled; nothing else in the daemon sees the raw TOML
//! types.

mod alerts;
mod cluster;
pub mod defaults;
mod memory;
mod raw;
mod schema;
mod sinks;
mod source;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use defaults::{DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, MAX_RULE_TAGS, MAX_UDP_PAYLOAD};
pub use memory::{bytes_per_key, memory_bound, sketch_bytes, MemoryBound, CELL_BYTES};
pub use schema::{
    Aggregate, AlertBlock, Cluster, Config, ConfigError, Grouping, Http, Ingest, Mode, Overflow,
    Overrides, PromoteFrom, Rule, Scope, State, Window, XdpMode,
};
pub use sinks::{
    AlertmanagerSink, ExecSink, HttpSink, LogSink, SinkConfig, SinkOptions, SlackSink,
};
pub use units::{parse_bytes, parse_duration};
