//! The kernel path: loads the eBPF programs, writes the rules into their
//! config map, attaches them (socket filter on the daemon's sockets, or XDP
//! on an interface), and every interval swaps and drains the generation maps
//! into the same count tables the userspace path fills.
//!
//! Exact rotation: slot 0 of the `GENERATION` array of maps names the map
//! the programs write. Updating it from userspace returns only after an RCU
//! grace period, so once the swap returns no program still writes the old
//! map; it is then read and emptied in one pass of
//! `BPF_MAP_LOOKUP_AND_DELETE_BATCH` and becomes the next spare.
//!
//! `probe` says whether the path can run here, `pins` keeps the maps on
//! bpffs, `path` loads, attaches and rotates, `drain` reads a generation,
//! `counters` reads the programs' counters, and `sys` holds every raw
//! system call. `bench` is what only the benchmarks use.

#[cfg(any(test, feature = "bench"))]
mod bench;
mod counters;
mod drain;
mod path;
mod pins;
mod probe;
mod sys;

#[cfg(test)]
mod tests;

pub use counters::KernelCounters;
pub use drain::Drained;
pub use path::{Attach, KernelPath, Options};
pub use probe::{probe, KernelError};
