//! Alerting with Kapacitor's semantics: per rule, alert blocks evaluate
//! every key's window value after each rotation.

#[cfg(feature = "bench")]
pub mod bench;
pub mod engine;
pub mod event;
pub mod state;
pub mod template;
pub mod tick;
