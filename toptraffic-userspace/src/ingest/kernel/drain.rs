//! The generation maps at rotation: swap in the spare, read the old one
//! with BPF_MAP_LOOKUP_BATCH into per-rule count tables, and empty it on a
//! side thread before it becomes the spare again.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use aya::maps::{ArrayOfMaps, Map, MapData};
use toptraffic_common::{Cell as KCell, TOTALS_RULE};
use tracing::{debug, warn};

use super::counters::KernelCounters;
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
    pub evicted_lines: u64,
    pub evicted_keys: u64,
}

/// The two generation maps, which one the programs write, and the
/// emptying of the other.
pub(super) struct Generations {
    /// `GENERATION`: slot 0 names the map the programs write.
    pub(super) outer: Map,
    pub(super) maps: [MapData; 2],
    /// Index into `maps` of the map the programs write.
    pub(super) active: usize,
    /// Possible CPUs: the per-CPU values of each key.
    pub(super) ncpus: usize,
    /// Empties the generation drained last, off the rotation's path; waited
    /// for before that map becomes the active one again.
    clearer: Clearer,
    /// A generation handed to the clearer and not yet waited for.
    clearing: bool,
    last_clear: Duration,
    /// Keys per rule at the last drain, to size the next tables.
    pub(super) last_keys: Vec<usize>,
}

impl Generations {
    /// `maps[0]` is the one installed in `outer`, the active one.
    pub(super) fn new(
        outer: Map,
        maps: [MapData; 2],
        ncpus: usize,
        rules: usize,
    ) -> Result<Generations, KernelError> {
        Ok(Generations {
            outer,
            maps,
            active: 0,
            ncpus,
            clearer: Clearer::start(ncpus)?,
            clearing: false,
            last_clear: Duration::ZERO,
            last_keys: vec![0; rules],
        })
    }

    /// Swaps in the spare generation, then reads and empties the old one
    /// into per-rule tables: rule `i` (config order) keeps at most
    /// `max_keys[i]` keys, and `id_index` maps the rule ids of the kernel's
    /// keys to `i`.
    pub(super) fn drain(
        &mut self,
        max_keys: &[usize],
        id_index: &HashMap<u32, usize>,
        counters: &KernelCounters,
    ) -> io::Result<Drained> {
        // The spare must be empty before it is swapped in.
        self.finish_clearing()?;
        let started = Instant::now();
        let spare = 1 - self.active;
        {
            let mut arr: ArrayOfMaps<&mut MapData, MapData> =
                ArrayOfMaps::try_from(&mut self.outer)
                    .map_err(|e| io::Error::other(e.to_string()))?;
            // Returns after an RCU grace period: no program writes the old
            // generation any more.
            arr.set(0, &self.maps[spare], 0)
                .map_err(|e| io::Error::other(format!("swapping generations: {e}")))?;
        }
        let swap = started.elapsed();
        let old = self.active;
        self.active = spare;
        // The walk yields each key once: lists, not hash tables, sized
        // like the last drain.
        let mut tables: Vec<CountTable> = max_keys
            .iter()
            .zip(&self.last_keys)
            .map(|(m, n)| CountTable::unique_with_capacity(*m, n + n / 8))
            .collect();
        let (mut lines, mut keys) = (0u64, 0u64);
        let mut totals = Cell::default();
        let ncpus = self.ncpus;
        sys::batch_walk(
            self.maps[old].fd().as_fd(),
            ncpus,
            aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_BATCH,
            |key, cells| {
                let sum = add_cpus(cells);
                if key.rule == TOTALS_RULE {
                    totals.add(sum);
                    return;
                }
                lines += sum.lines;
                keys += 1;
                // Counts of a rule a reload removed or regrouped are gone
                // with it.
                if let Some(t) = id_index.get(&key.rule).and_then(|i| tables.get_mut(*i)) {
                    t.push_unique(key.bytes(), sum);
                }
            },
        )?;
        for (n, t) in self.last_keys.iter_mut().zip(&tables) {
            *n = t.len();
        }
        let drain = started.elapsed() - swap;
        // Emptied on the side (see Clearer); the map is not used until the
        // next drain, which waits for this.
        self.clearer
            .jobs
            .send(self.maps[old].fd().as_fd().as_raw_fd())
            .map_err(|_| io::Error::other("the clearing thread stopped"))?;
        self.clearing = true;
        let evicted_lines = totals.lines.saturating_sub(lines);
        let evicted_keys = (totals.exact().clamp(0, u64::MAX as i128) as u64).saturating_sub(keys);
        if evicted_lines > 0 {
            counters.evicted_lines.fetch_add(evicted_lines, Relaxed);
            warn!(
                evicted_lines,
                evicted_keys, "the generation map evicted keys; raise max_keys"
            );
        }
        debug!(keys, lines, ?swap, ?drain, clear = ?self.last_clear, "drained generation");
        Ok(Drained {
            tables,
            keys: keys as usize,
            swap,
            drain,
            evicted_lines,
            evicted_keys,
        })
    }

    /// Waits for the previous generation to be emptied.
    pub(super) fn finish_clearing(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.clearing) {
            self.last_clear = self
                .clearer
                .done
                .recv()
                .map_err(|_| io::Error::other("the clearing thread stopped"))??;
        }
        Ok(())
    }

    /// How long emptying the last drained generation took.
    pub(super) fn last_clear(&self) -> Duration {
        self.last_clear
    }
}

/// A key's per-CPU cells added up, exactly: the kernel's sums stay
/// integers until the window reads them (see `snapshot::Cell`).
fn add_cpus(cells: &[KCell]) -> Cell {
    let mut sum = Cell::default();
    for c in cells {
        sum.add(Cell::from_exact(c.sum(), c.lines()));
    }
    sum
}

/// The thread that empties drained generations, off the rotation's path:
/// deleting is as slow as reading. It walks with a batch command that
/// deletes as it reads (a list of the keys would cost as much memory as
/// the keys). One thread for the daemon's life rather than one started
/// every interval.
struct Clearer {
    jobs: std::sync::mpsc::Sender<RawFd>,
    done: std::sync::mpsc::Receiver<io::Result<Duration>>,
}

impl Clearer {
    fn start(ncpus: usize) -> Result<Clearer, KernelError> {
        let (jobs, rx) = std::sync::mpsc::channel::<RawFd>();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("kernel-clear".into())
            .spawn(move || {
                // Ends when the KernelPath drops its sender.
                for fd in rx {
                    let t = Instant::now();
                    // The map outlives the job: the KernelPath waits for the
                    // result before it swaps the map in again and before it
                    // drops.
                    let r = sys::delete_all(fd, ncpus);
                    if tx.send(r.map(|()| t.elapsed())).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| KernelError::Other(format!("starting the clearing thread: {e}")))?;
        Ok(Clearer { jobs, done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(values: &[i64]) -> KCell {
        let mut c = KCell::default();
        for v in values {
            assert!(c.add(1, *v));
        }
        c
    }

    #[test]
    fn cpus_add_up_exactly_past_i64() {
        let (max, min) = (i64::MAX, i64::MIN);
        let cells = [cpu(&[max, max]), cpu(&[max]), cpu(&[]), cpu(&[1, 2])];
        let c = add_cpus(&cells);
        assert_eq!(c.exact(), 3 * max as i128 + 3);
        assert_eq!(c.lines, 5);
        assert_eq!(c.value(), (3 * max as i128 + 3) as f64);
        // Each CPU past i64 in its own direction: they cancel exactly.
        let c = add_cpus(&[cpu(&[max, max, 7]), cpu(&[min, min]), cpu(&[-2])]);
        assert_eq!((c.exact(), c.lines), (3, 6));
        assert_eq!(c.value(), 3.0);
    }
}
