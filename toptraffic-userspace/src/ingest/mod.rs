//! Ingest paths: where datagrams become interval counts.
//!
//! `udp` receives and counts in userspace. Both paths hand the rotation the
//! same [`crate::snapshot::CountTable`]s.

pub mod kernel;
pub mod kernel_config;
pub mod udp;

#[cfg(test)]
mod kernel_equivalence;
