//! Counters of what each ingest path received, counted and dropped, by reason.
//!
//! Receive threads add to a [`LocalCounters`] per batch and flush it into the
//! shared [`PathCounters`] (relaxed atomics, one cache line each), so the hot
//! path touches shared memory once per batch, not per line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Why a line (or datagram) was not counted. Every received line is either
/// counted by some rule or counted here, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Malformed line protocol (per line).
    ParseError,
    /// No rule takes this measurement (per line).
    UnknownMeasurement,
    /// Rules take the measurement but their `where` filters excluded it.
    Filtered,
    /// The rule sums a field the line does not have.
    MissingField,
    /// The summed field is a string or boolean.
    FieldType,
    /// The rule already holds max_keys keys (per line): every rule that took
    /// the line in a receive thread's table, or later, at the merge or in
    /// the window, the rule that owns the line (`snapshot::Cell::owned`).
    /// A rule with an overflow sketch refuses nothing in the window: the
    /// line is counted in the sketch and stays a point.
    KeyTableFull,
    /// Datagram longer than ingest.max_datagram (per datagram; its lines are
    /// unknown).
    Oversize,
    /// Datagrams the kernel dropped because the socket's receive queue was
    /// full (per datagram).
    ReceiveQueue,
    /// Lines the kernel parsed that no generation map cell could hold: the
    /// key of each rule taking the line was at u32::MAX lines on that CPU
    /// in the interval (per line). The maps never evict, and a key a full
    /// map cannot take sends its datagram to userspace instead (`map_full`).
    Evicted,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::ParseError,
        DropReason::UnknownMeasurement,
        DropReason::Filtered,
        DropReason::MissingField,
        DropReason::FieldType,
        DropReason::KeyTableFull,
        DropReason::Oversize,
        DropReason::ReceiveQueue,
        DropReason::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::ParseError => "parse_error",
            DropReason::UnknownMeasurement => "unknown_measurement",
            DropReason::Filtered => "filtered",
            DropReason::MissingField => "missing_field",
            DropReason::FieldType => "field_type",
            DropReason::KeyTableFull => "key_table_full",
            DropReason::Oversize => "oversize",
            DropReason::ReceiveQueue => "receive_queue",
            DropReason::Evicted => "evicted",
        }
    }

    /// Of two reasons why rules refused one line, the more telling one.
    pub fn max_severity(self, other: DropReason) -> DropReason {
        self.max(other)
    }
}

/// Per-path totals, shared between the receive threads and readers.
#[derive(Default, Debug)]
#[repr(align(64))]
pub struct PathCounters {
    /// Datagrams received (whole, not oversize).
    pub datagrams: AtomicU64,
    /// Lines counted by at least one rule's interval table (lines refused
    /// after that are taken off by `Shared`'s snapshots).
    pub points: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl PathCounters {
    pub fn add_dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Relaxed);
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }

    pub fn flush(&self, local: &mut LocalCounters) {
        if local.datagrams != 0 {
            self.datagrams.fetch_add(local.datagrams, Relaxed);
        }
        if local.points != 0 {
            self.points.fetch_add(local.points, Relaxed);
        }
        for (i, n) in local.dropped.iter().enumerate() {
            if *n != 0 {
                self.dropped[i].fetch_add(*n, Relaxed);
            }
        }
        *local = LocalCounters::default();
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            datagrams: self.datagrams.load(Relaxed),
            points: self.points.load(Relaxed),
            dropped: DropReason::ALL.map(|r| self.dropped(r)),
        }
    }
}

/// A receive thread's counts since its last flush.
#[derive(Default, Debug, Clone)]
pub struct LocalCounters {
    pub datagrams: u64,
    pub points: u64,
    pub dropped: [u64; DropReason::ALL.len()],
}

impl LocalCounters {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }
}

/// A copy of a path's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub datagrams: u64,
    pub points: u64,
    pub dropped: [u64; DropReason::ALL.len()],
}

impl CountersSnapshot {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_moves_local_counts_and_resets_them() {
        let shared = PathCounters::default();
        let mut local = LocalCounters {
            datagrams: 2,
            points: 5,
            ..Default::default()
        };
        local.drop(DropReason::ParseError);
        local.drop(DropReason::ParseError);
        shared.flush(&mut local);
        shared.flush(&mut local);
        let s = shared.snapshot();
        assert_eq!((s.datagrams, s.points), (2, 5));
        assert_eq!(s.dropped(DropReason::ParseError), 2);
        assert_eq!(local.points, 0);
    }

    #[test]
    fn reason_names_are_snake_case_and_distinct() {
        let names: std::collections::BTreeSet<_> =
            DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
