//! The generation maps at rotation: swap in the spare, then read and empty
//! the old one in one walk (BPF_MAP_LOOKUP_AND_DELETE_BATCH) into per-rule
//! count tables; it is the spare for the next rotation.
//!
//! One walk, not a read and then a clearing walk on a side thread: the
//! kernel's walk of the per-CPU hash is the drain's cost, and deleting as
//! it reads adds nothing measurable to it (`cargo xtask bench drain`: 150k
//! keys in 60-64 ms either way), where the second walk cost 27-47 ms of CPU
//! every rotation.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use aya::maps::{ArrayOfMaps, Map, MapData};
use toptraffic_common::Cell as KCell;
use tracing::debug;

use super::probe::KernelError;
use super::sys;
use crate::snapshot::{Cell, CountTable};

/// One drain's result.
#[derive(Debug)]
pub struct Drained {
    /// Per rule (config order).
    pub tables: Vec<CountTable>,
    pub keys: usize,
    /// Time to swap, and to read and empty the old map.
    pub swap: Duration,
    pub drain: Duration,
}

/// The two generation maps, which one the programs write, and the
/// emptying of the other.
pub(super) struct Generations {
    /// `GENERATION`: slot 0 names the map the programs write.
    pub(super) outer: Map,
    pub(super) maps: [MapData; 2],
    /// Index into `maps` of the map the programs write.
    pub(super) active: usize,
    /// Entries each of `maps` holds.
    capacity: u32,
    /// Generations a resize took out of `outer` in the open interval: no
    /// program writes them any more, and their counts join the next drain.
    retired: Vec<MapData>,
    /// Possible CPUs: the per-CPU values of each key.
    pub(super) ncpus: usize,
    /// The drain's batch buffers, kept between rotations.
    bufs: sys::WalkBuffers,
    /// Keys per rule at the last drain, to size the next tables.
    pub(super) last_keys: Vec<usize>,
}

impl Generations {
    /// `maps[0]` is the one installed in `outer`, the active one.
    pub(super) fn new(
        outer: Map,
        maps: [MapData; 2],
        capacity: u32,
        ncpus: usize,
        rules: usize,
    ) -> Result<Generations, KernelError> {
        Ok(Generations {
            outer,
            maps,
            active: 0,
            capacity,
            retired: Vec::new(),
            ncpus,
            bufs: sys::WalkBuffers::default(),
            last_keys: vec![0; rules],
        })
    }

    /// Entries each generation map holds.
    pub(super) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Two empty generation maps of `entries` entries, like the ones in
    /// use; nothing changes until [`Generations::resize`] installs them.
    pub(super) fn create_maps(&self, entries: u32) -> io::Result<[MapData; 2]> {
        let like = self.maps[0]
            .info()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let make = |name: &str| {
            let fd = sys::create_generation_map(&like, entries, name)?;
            MapData::from_fd(fd).map_err(|e| io::Error::other(e.to_string()))
        };
        Ok([make("GEN_A")?, make("GEN_B")?])
    }

    /// Makes `maps` (from [`Generations::create_maps`]) the generation
    /// maps: the first is swapped in at once; the one it replaces keeps its
    /// counts for the next drain (the swap returns after every program
    /// writing it has finished, so they are whole), the spare is dropped.
    /// On error nothing changed.
    pub(super) fn resize(&mut self, maps: [MapData; 2], entries: u32) -> io::Result<()> {
        install(&mut self.outer, &maps[0])?;
        let [a, b] = std::mem::replace(&mut self.maps, maps);
        let (old, _spare) = if self.active == 0 { (a, b) } else { (b, a) };
        self.retired.push(old);
        self.active = 0;
        self.capacity = entries;
        Ok(())
    }

    /// The two generation maps, in pin order (GEN_A, GEN_B).
    pub(super) fn maps(&self) -> &[MapData; 2] {
        &self.maps
    }

    /// Swaps in the spare generation, then reads and empties the old one
    /// (and any a resize retired) into per-rule tables: rule `i` (config
    /// order) keeps at most `max_keys[i]` keys, and `id_index` maps the rule
    /// ids of the kernel's keys to `i`.
    pub(super) fn drain(
        &mut self,
        max_keys: &[usize],
        id_index: &HashMap<u32, usize>,
    ) -> io::Result<Drained> {
        // The spare is empty: the last drain emptied it.
        let started = Instant::now();
        let spare = 1 - self.active;
        install(&mut self.outer, &self.maps[spare])?;
        let swap = started.elapsed();
        let old = self.active;
        self.active = spare;
        // A walk yields each key once: lists, not hash tables, sized like
        // the last drain. Maps a resize retired hold the same keys again:
        // then the tables add up.
        let unique = self.retired.is_empty();
        let mut tables: Vec<CountTable> = max_keys
            .iter()
            .zip(&self.last_keys)
            .map(|(m, n)| {
                // Keys past max_keys wait for the interval's table, which
                // holds, sketches or refuses them as the rule says.
                if unique {
                    CountTable::unique_with_capacity(*m, n + n / 8).spilling()
                } else {
                    CountTable::with_capacity(*m, n + n / 8).spilling()
                }
            })
            .collect();
        let mut walked = Walked::default();
        for map in std::iter::once(&self.maps[old]).chain(&self.retired) {
            walked.add(walk(
                map,
                self.ncpus,
                id_index,
                &mut tables,
                unique,
                &mut self.bufs,
            )?);
        }
        // Read whole: no longer needed (the programs never saw them again).
        self.retired.clear();
        for (n, t) in self.last_keys.iter_mut().zip(&tables) {
            *n = t.len();
        }
        let drain = started.elapsed() - swap;
        let Walked { owned, keys } = walked;
        debug!(keys, owned, ?swap, ?drain, "drained generation");
        Ok(Drained {
            tables,
            keys: keys as usize,
            swap,
            drain,
        })
    }
}

/// Puts `map` in slot 0 of `outer`, GENERATION. Returns after an RCU grace
/// period: no program writes the map it replaced any more.
fn install(outer: &mut Map, map: &MapData) -> io::Result<()> {
    let mut arr: ArrayOfMaps<&mut MapData, MapData> =
        ArrayOfMaps::try_from(outer).map_err(|e| io::Error::other(e.to_string()))?;
    arr.set(0, map, 0)
        .map_err(|e| io::Error::other(format!("swapping generations: {e}")))
}

/// What the walk of one generation map found.
#[derive(Default)]
struct Walked {
    /// Lines the drained keys own (see `Cell::owned`).
    owned: u64,
    keys: u64,
}

impl Walked {
    fn add(&mut self, o: Walked) {
        self.owned += o.owned;
        self.keys += o.keys;
    }
}

/// A key's per-CPU cells added up: lines, owned lines and the sum. Each
/// CPU's sum is within i64 (see `toptraffic_common::Cell`); their total
/// may not be: added exactly, as the window needs (see `snapshot::Cell`).
fn add_cpus(cells: &[KCell]) -> (u64, u64, i128) {
    let (mut lines, mut owned, mut sum) = (0u64, 0u64, 0i128);
    for c in cells {
        lines += c.lines as u64;
        owned += c.owned as u64;
        sum += c.sum as i128;
    }
    (lines, owned, sum)
}

/// Reads and empties the generation map `map`, which no program writes any
/// more, into `tables` (with `push_unique` when `unique`, else adding up).
/// On an error the keys not yet read stay in the map, and are counted when
/// it is drained next.
fn walk(
    map: &MapData,
    ncpus: usize,
    id_index: &HashMap<u32, usize>,
    tables: &mut [CountTable],
    unique: bool,
    bufs: &mut sys::WalkBuffers,
) -> io::Result<Walked> {
    let (mut owned, mut keys) = (0u64, 0u64);
    sys::batch_walk(
        map.fd().as_fd(),
        ncpus,
        aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH,
        bufs,
        |key, cells| {
            let (lines, own, sum) = add_cpus(cells);
            // A key a datagram inserted before the map turned out full for
            // a later key of it: its count was taken back, the datagram
            // counted in userspace.
            if lines == 0 {
                return;
            }
            owned += own;
            keys += 1;
            // Counts of a rule a reload removed or regrouped are gone
            // with it.
            if let Some(t) = id_index.get(&key.rule).and_then(|i| tables.get_mut(*i)) {
                let mut cell = Cell::from_exact(sum, lines);
                cell.owned.kernel = own.min(u32::MAX as u64) as u32;
                if unique {
                    t.push_unique(key.bytes(), cell);
                } else {
                    t.add_counted(key.bytes(), cell);
                }
            }
        },
    )?;
    Ok(Walked { owned, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(values: &[i64]) -> KCell {
        let mut c = KCell::default();
        for v in values {
            assert!(c.add(1, 1, *v));
        }
        c
    }

    #[test]
    fn cpus_add_up_exactly_past_i64() {
        // The most a CPU's cell can hold: u32::MAX lines of MAX_SUMMED.
        let full = |v: i64| KCell {
            lines: u32::MAX,
            owned: 1,
            sum: u32::MAX as i64 * v,
        };
        let max = toptraffic_common::MAX_SUMMED;
        let cells = [full(max), full(max), cpu(&[]), cpu(&[1, 2])];
        let want = 2 * u32::MAX as i128 * max as i128 + 3;
        assert!(want > i64::MAX as i128);
        assert_eq!(add_cpus(&cells), (2 * u32::MAX as u64 + 2, 4, want));
        // CPUs in opposite directions cancel exactly.
        let cells = [full(max), full(-max), full(max), cpu(&[-2, 7])];
        let (lines, _, sum) = add_cpus(&cells);
        assert_eq!(
            (lines, sum),
            (3 * u32::MAX as u64 + 2, u32::MAX as i128 * max as i128 + 5)
        );
    }
}
