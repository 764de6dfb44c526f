//! Types and constants shared by the kernel programs and the daemon.
//!
//! Group keys have one encoding on both ingest paths, so a snapshot drained
//! from the kernel and one counted in userspace merge key for key: for each
//! group-by tag, in the rule's group_by order, a little-endian `u16` length
//! followed by the tag value's unescaped bytes. A missing tag is an empty
//! value (length 0), as in Kapacitor.
#![no_std]

/// Bytes of the length prefix before each tag value in a group key.
pub const KEY_LEN_PREFIX: usize = 2;
