//! The kernel programs' live counters, in the userspace path's terms.

use std::fmt;

use aya::maps::{MapData, PerCpuArray};
use toptraffic_common::counter;

use crate::stats::{CountersSnapshot, DropReason};

/// Live per-CPU counters of the programs, readable from any thread.
pub struct KernelCounters {
    pub(super) map: PerCpuArray<MapData, u64>,
}

impl fmt::Debug for KernelCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelCounters").finish_non_exhaustive()
    }
}

impl KernelCounters {
    /// Every counter summed over CPUs.
    pub fn read(&self) -> [u64; counter::COUNT as usize] {
        let mut out = [0u64; counter::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(v) = self.map.get(&(i as u32), 0) {
                *slot = v.iter().sum();
            }
        }
        out
    }

    /// The kernel path's share of the stats, in the userspace path's terms.
    pub fn snapshot(&self) -> CountersSnapshot {
        let c = self.read();
        let at = |i: u32| c[i as usize];
        // The programs count a line's point before committing it: lines
        // whose keys' cells all refused them (at u32::MAX lines in one
        // interval on one CPU) are in POINTS, and leave it here for
        // `evicted`. A full map loses nothing: it passes the datagram.
        let evicted = at(counter::LOST_LINES);
        let mut s = CountersSnapshot {
            datagrams: at(counter::SF_DATAGRAMS) + at(counter::XDP_DATAGRAMS),
            points: at(counter::POINTS).saturating_sub(evicted),
            ..Default::default()
        };
        s.dropped[DropReason::UnknownMeasurement as usize] = at(counter::DROP_UNKNOWN_MEASUREMENT);
        s.dropped[DropReason::Filtered as usize] = at(counter::DROP_FILTERED);
        s.dropped[DropReason::MissingField as usize] = at(counter::DROP_MISSING_FIELD);
        s.dropped[DropReason::Evicted as usize] = evicted;
        s
    }

    /// Datagrams handed to userspace, by reason name.
    pub fn passed(&self) -> Vec<(&'static str, u64)> {
        let c = self.read();
        counter::PASS_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, c[counter::PASS_FIRST as usize + i]))
            .collect()
    }

    /// Datagrams the socket filter consumed (the kernel counts them as socket
    /// drops too).
    pub fn socket_filter_datagrams(&self) -> u64 {
        self.read()[counter::SF_DATAGRAMS as usize]
    }
}
