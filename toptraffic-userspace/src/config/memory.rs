//! The memory bound of docs/OPERATIONS.md (capacity planning), computed from
//! a config: what the DaemonSet's limit is checked against and what the
//! daemon's measured RSS must stay under. The derivation is in the docs;
//! this is its one implementation.

use super::schema::{Config, Rule};
use crate::sketch::SketchRing;

/// Bytes of a `Key` in every table that holds it.
const KEY: u64 = 40;
/// Longest key held inline in a `Key`.
const INLINE: u64 = 38;
/// Longest key the kernel counts (`toptraffic_common::GroupKey`).
const KERNEL_KEY: u64 = 64;
/// Bytes of a count table's cell (`snapshot::Cell`, whose test checks it).
pub const CELL_BYTES: u64 = 40;

/// The three parts of the bound, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBound {
    /// The process's fixed part and the receive buffers.
    pub base: u64,
    /// Every rule's `max_keys` keys at their worst-case size, and its
    /// overflow sketches.
    pub userspace: u64,
    /// The kernel's key set (its slots, key maps and two generations of
    /// cells), every rule counted there.
    pub kernel: u64,
}

impl MemoryBound {
    pub fn total(&self) -> u64 {
        self.base + self.userspace + self.kernel
    }
}

/// The heap block of a key of `len` bytes: none when inline, else the bytes
/// rounded up to the allocator's size class (under a quarter more) and its
/// header.
fn heap(len: u64) -> u64 {
    if len <= INLINE {
        0
    } else {
        len + len / 4 + 16
    }
}

/// Bytes one key of `rule` may cost, at its longest (`max_key_bytes`), with
/// `intervals` slots in the window and `threads` receive threads: the
/// window, and either every thread's interval table and the merged snapshot
/// or the state file being written next to the open interval's table.
pub fn bytes_per_key(rule: &Rule, intervals: u64, threads: u64) -> u64 {
    let l = rule.max_key_bytes as u64;
    let h = heap(l);
    let n = intervals;
    // Dense arrays (key, 24 bytes of bookkeeping, n slots) that may have
    // doubled, and the 4-byte index with its control byte at 2.29 buckets a
    // key; the key's heap block once.
    let window = 2 * (KEY + 24 + 8 * n) + 12 + h;
    // A hash table slot (key, cell, control byte) at 2.29 slots a key, and
    // the key's own heap block.
    let table = (KEY + CELL_BYTES + 1) * 229 / 100 + 1 + h;
    // At SIGTERM: every key's ring copied out (the key cloned), and encoded
    // into a buffer that may have doubled once.
    let state = KEY + 40 + h + (8 * n + 16) + 2 * (l + 8 * n + 24);
    // The merged snapshot's spill: up to max_keys whole cells it had no
    // room for, in a vector that may have doubled; a key moved from a
    // receive table brings its heap block along, one copied from the
    // kernel's map (at most KERNEL_KEY bytes) has its own.
    let spill = 2 * (KEY + CELL_BYTES) + heap(l.min(KERNEL_KEY));
    window + ((threads + 1) * table + spill).max(state + table)
}

/// Bytes of `rule`'s overflow sketches: the window's ring of `intervals`,
/// allocated whole when the rule starts, one more for each receive
/// thread's table and the merged snapshot, made when a table fills, and
/// at SIGTERM the ring copied out and encoded into a buffer that may have
/// doubled.
pub fn sketch_bytes(rule: &Rule, intervals: u64, threads: u64) -> u64 {
    let sketches = 4 * intervals + threads + 1;
    rule.overflow.as_ref().map_or(0, |o| {
        SketchRing::bytes_for(sketches as usize, o.error, o.confidence) as u64
    })
}

/// The bound for `config` on a node with `cpus` possible CPUs (which also
/// gives the receive threads when `ingest.threads` is 0).
pub fn memory_bound(config: &Config, cpus: u64) -> MemoryBound {
    let threads = match config.ingest.threads {
        0 => cpus,
        t => t as u64,
    };
    let n = config.window.intervals() as u64;
    let userspace = config
        .rules
        .iter()
        .map(|r| r.max_keys as u64 * bytes_per_key(r, n, threads) + sketch_bytes(r, n, threads))
        .sum();
    let keys: u64 = config.rules.iter().map(|r| r.max_keys as u64).sum();
    // daemon.rs's map_entries: the key set's slots. Per slot: KEYS, a
    // preallocated hash (16-byte buckets, a power of two of them; 128-byte
    // elements of a 72-byte key and a u32), KEY_OF (72 bytes), FREE (4),
    // and a 16-byte cell on every possible CPU in each of the two
    // generations; the arrays round up to pages.
    let slots = keys + 1024;
    let key_set = 16 * slots.next_power_of_two() + (128 + 72 + 4 + 2 * 16 * cpus) * slots;
    MemoryBound {
        base: (32 << 20) + threads * 64 * config.ingest.max_datagram as u64,
        userspace,
        kernel: key_set + (16 << 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example() {
        // docs/OPERATIONS.md works this example through: the default
        // window and max_key_bytes, 4 threads, 350,000 keys, 16 CPUs.
        let mut cfg = Config::embedded_default();
        cfg.ingest.threads = 4;
        for (r, k) in cfg.rules.iter_mut().zip([200_000, 100_000, 50_000]) {
            r.max_keys = k;
        }
        assert_eq!(bytes_per_key(&cfg.rules[0], 12, 4), 2574);
        let b = memory_bound(&cfg, 16);
        assert_eq!(
            (b.base, b.userspace, b.kernel),
            (35_651_584, 900_900_000 + 3 * 11_526_440, 259_738_176)
        );
        // Each rule's sketches: 4 x 12 intervals, 4 threads and the
        // snapshot, of 5 x 5,437 counters of 8 bytes.
        assert_eq!(sketch_bytes(&cfg.rules[0], 12, 4), 11_526_440);
        assert_eq!(b.total(), 1_230_869_080);
    }
}
