//! The kernel path: loads the eBPF programs, writes the rules into their
//! config map, attaches them (socket filter on the daemon's sockets, or XDP
//! on an interface), and every interval swaps and drains the generation maps
//! into the same count tables the userspace path fills.
//!
//! Exact rotation: the programs count in slots of a key set (key to slot
//! in `KEYS`, slot to key in `KEY_OF`), adding to the slot's cell in the
//! cell array that entry `epoch` of the `GENERATION` array of maps names.
//! Updating it from userspace returns only after an RCU grace period, so
//! once the swap returns no program still writes the old array; the daemon
//! then reads it whole, in slot order, through its own mapping, empties it,
//! and gives the slots of keys gone idle back to the free queue.
//!
//! `probe` says whether the path can run here, `pins` keeps the maps on
//! bpffs, `path` loads, attaches and rotates, `drain` keeps the key set and reads a generation,
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

#[cfg(feature = "bench")]
pub use bench::{hash_drain_baseline, JitLines};
pub use counters::KernelCounters;
pub use drain::Drained;
pub use path::{Attach, KernelPath, Options};
pub use probe::{probe, KernelError};
