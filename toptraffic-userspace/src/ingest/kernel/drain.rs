//! The key set and its generations at rotation: swap in the spare cell
//! array, read the old one whole, in slot order, and empty it; then keep
//! the slots: a slot counted for the first time gets its key from
//! `KEY_OF`, and the slots of keys that stopped counting go back to the
//! free queue.
//!
//! The kernel gives a key a slot at its first count and keeps it (see the
//! programs' crate). What the daemon knows of each slot, and the rules that
//! keep every count exact:
//! - `Free`: on the free queue, or taken by a program for a key that has
//!   not shown a count yet. A counted `Free` slot is a new key's: its
//!   `KEY_OF` entry was written before its first count, and the swap's
//!   grace period makes both visible.
//! - `Live(idle)`: a key's, `idle` rotations since its last count. Idle
//!   for a window ([`RETIRE_AFTER`]), or for a rotation when the slots run
//!   short, it is retired: its key is deleted from `KEYS`, so that the
//!   programs give the key a new slot at its next count.
//! - `Retiring`: a program that found the key before the delete may still
//!   add to the slot in the open generation. The next drain reads that
//!   generation (after the swap's grace period, no program holds the slot)
//!   and then frees it. Its key may meanwhile have a second slot: a drain
//!   that reads a retiring slot's count adds keys up instead of listing
//!   them.
//!
//! A datagram that found no free slot takes back what it counted, but the
//! slots it gave keys stay in `KEYS` with nothing counted: `Free` to the
//! daemon, in use to the kernel. When the kernel reports full slots while
//! the daemon sees free ones, it reads `KEYS` and retires those (at most
//! once a window).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use aya::maps::{ArrayOfMaps, Map, MapData};
use toptraffic_common::{Cell as KCell, GroupKey};
use tracing::{debug, warn};

use super::sys::{self, Mapped, SetMap};
use crate::snapshot::{Cell, CountTable, Spare};

/// Rotations without a count after which a key gives its slot back: a
/// window of the default 5-s interval, after which the key has left the
/// window anyway.
pub const RETIRE_AFTER: u8 = 12;

/// Rule id to the rule's index in config order: looked up for every key
/// drained, so with a fast hash.
pub(super) type IdIndex = HashMap<u32, usize, ahash::RandomState>;

/// One drain's result.
#[derive(Debug)]
pub struct Drained {
    /// Per rule (config order).
    pub tables: Vec<CountTable>,
    pub keys: usize,
    /// Time to swap, and to read and empty the old cells and keep the slots.
    pub swap: Duration,
    pub drain: Duration,
    /// Slots given back (retired) at this drain.
    pub retired: usize,
}

/// What the daemon knows of a slot (see the module's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    Live(u8),
    Retiring,
}

/// Whether slot `s` of a generation's `cells` (`n` slots a CPU, `ncpus`
/// CPUs) holds a count on any CPU.
fn counted_in(cells: &[KCell], n: usize, ncpus: usize, s: usize) -> bool {
    (0..ncpus).any(|c| cells[c * n + s].lines != 0)
}

/// A slot counted in the generation read: its CPUs' cells added up.
struct Counted {
    lines: u64,
    owned: u64,
    sum: i128,
}

/// The programs' outer maps: a key set's maps go in at its epoch.
pub(super) struct Outer {
    pub(super) generation: Map,
    pub(super) keys: Map,
    pub(super) key_of: Map,
    pub(super) free: Map,
}

/// One key set: its maps, mapped where the daemon reads them, and the
/// daemon's view of its slots.
pub(super) struct KeySet {
    slots: u32,
    ncpus: usize,
    /// Key to slot (hash), slot to key (array), the free slots (queue).
    keys: MapData,
    key_of: MapData,
    free: MapData,
    key_of_view: Mapped<GroupKey>,
    /// The two generations' cells; `active` is the one the programs write.
    cells: [MapData; 2],
    cell_views: [Mapped<KCell>; 2],
    active: usize,
    state: Vec<Slot>,
    /// Slots in state `Free`.
    free_count: usize,
    /// Slots in state `Retiring`, freed at the next drain.
    retiring: Vec<u32>,
}

fn map_data(fd: OwnedFd) -> io::Result<MapData> {
    MapData::from_fd(fd).map_err(|e| io::Error::other(e.to_string()))
}

impl KeySet {
    /// A set of `slots` slots, every one on the free queue, for `ncpus`
    /// possible CPUs.
    pub(super) fn new(slots: u32, ncpus: usize) -> io::Result<KeySet> {
        let cells_len = slots as usize * ncpus;
        let cell_entries = u32::try_from(cells_len)
            .map_err(|_| io::Error::other(format!("{slots} slots x {ncpus} CPUs pass 2^32")))?;
        // The hash first: past its limits it fails at once, before the
        // arrays are allocated.
        let keys = map_data(sys::create_set_map(SetMap::Keys, slots, "KEYS")?)?;
        let free = map_data(sys::create_set_map(SetMap::Free, slots, "FREE")?)?;
        let key_of = map_data(sys::create_set_map(SetMap::KeyOf, slots, "KEY_OF")?)?;
        let cells = [
            map_data(sys::create_set_map(SetMap::Cells, cell_entries, "GEN_A")?)?,
            map_data(sys::create_set_map(SetMap::Cells, cell_entries, "GEN_B")?)?,
        ];
        let cell_views = [
            Mapped::new(cells[0].fd().as_fd(), cells_len)?,
            Mapped::new(cells[1].fd().as_fd(), cells_len)?,
        ];
        let key_of_view = Mapped::new(key_of.fd().as_fd(), slots as usize)?;
        for s in 0..slots {
            sys::push_free(free.fd().as_fd(), s)?;
        }
        Ok(KeySet {
            slots,
            ncpus,
            keys,
            key_of,
            free,
            key_of_view,
            cells,
            cell_views,
            active: 0,
            state: vec![Slot::Free; slots as usize],
            free_count: slots as usize,
            retiring: Vec::new(),
        })
    }

    pub(super) fn slots(&self) -> u32 {
        self.slots
    }

    /// Puts this set's maps in the outer maps at `epoch`; each put returns
    /// after an RCU grace period.
    fn install(&self, outer: &mut Outer, epoch: u32) -> io::Result<()> {
        put(&mut outer.generation, epoch, &self.cells[self.active])?;
        put(&mut outer.keys, epoch, &self.keys)?;
        put(&mut outer.key_of, epoch, &self.key_of)?;
        put(&mut outer.free, epoch, &self.free)
    }

    /// The maps to pin, by pin name.
    pub(super) fn pins(&self) -> [(&'static str, &MapData); 5] {
        [
            ("GEN_A", &self.cells[0]),
            ("GEN_B", &self.cells[1]),
            ("KEYS", &self.keys),
            ("KEY_OF", &self.key_of),
            ("FREE", &self.free),
        ]
    }

    /// Reads and empties generation `g`, which no program writes any more:
    /// `f` gets every counted slot of `slots`, in their order, with its
    /// state and key. Streamed, not listed: a list of a generation's
    /// counted slots was the drain's largest buffer (48 bytes a key, 24 MiB
    /// held for the soak's 324,000 keys).
    fn take(
        &mut self,
        g: usize,
        slots: impl IntoIterator<Item = u32>,
        mut f: impl FnMut(&mut Slot, &GroupKey, &Counted),
    ) {
        let n = self.slots as usize;
        let ncpus = self.ncpus;
        let cells = self.cell_views[g].idle_entries();
        for s in slots {
            let s = s as usize;
            // A slot none of whose CPUs counted a line holds nothing: a
            // count taken back leaves exactly zero.
            if !counted_in(cells, n, ncpus, s) {
                continue;
            }
            let mut k = Counted {
                lines: 0,
                owned: 0,
                sum: 0,
            };
            for c in 0..ncpus {
                let cell = &mut cells[c * n + s];
                // Each CPU's sum is within i64 (see toptraffic_common::Cell);
                // their total may not be: added exactly, as the window needs.
                k.lines += cell.lines as u64;
                k.owned += cell.owned as u64;
                k.sum += cell.sum as i128;
                *cell = KCell::default();
            }
            // Counted: a program gave the slot its key (see `key`).
            f(&mut self.state[s], self.key_of_view.settled(s), &k);
        }
    }

    /// The key of a slot a program gave one (Live, Retiring, or counted):
    /// not on the free queue, so its entry stays as it is until the daemon
    /// frees the slot.
    fn key(&self, slot: u32) -> &GroupKey {
        self.key_of_view.settled(slot as usize)
    }

    /// Frees the slots retired at the last drain: their last counts were
    /// read by this one.
    fn free_retired(&mut self) -> io::Result<()> {
        for s in std::mem::take(&mut self.retiring) {
            sys::push_free(self.free.fd().as_fd(), s)?;
            self.state[s as usize] = Slot::Free;
            self.free_count += 1;
        }
        Ok(())
    }

    /// Adopts the slots the kernel holds for keys that never showed a
    /// count (see the module's comment): they retire at once.
    fn reconcile(&mut self) -> io::Result<usize> {
        let mut n = 0;
        for (_, s) in sys::key_slots(self.keys.fd().as_fd())? {
            if let Some(st @ Slot::Free) = self.state.get_mut(s as usize) {
                *st = Slot::Live(RETIRE_AFTER);
                self.free_count -= 1;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Retires the slots idle for RETIRE_AFTER rotations, or for one when
    /// `short` of slots.
    fn retire_idle(&mut self, short: bool) -> io::Result<usize> {
        let min = if short { 1 } else { RETIRE_AFTER };
        let mut keys = Vec::new();
        for (s, st) in self.state.iter_mut().enumerate() {
            if let Slot::Live(idle) = *st {
                if idle >= min {
                    *st = Slot::Retiring;
                    self.retiring.push(s as u32);
                }
            }
        }
        keys.extend(self.retiring.iter().map(|s| *self.key(*s)));
        sys::delete_keys(self.keys.fd().as_fd(), &keys)?;
        Ok(keys.len())
    }
}

/// Puts `map` at `index` of the outer map `outer`. Returns after an RCU
/// grace period: no program uses the map it replaced any more.
fn put(outer: &mut Map, index: u32, map: &MapData) -> io::Result<()> {
    let mut arr: ArrayOfMaps<&mut MapData, MapData> =
        ArrayOfMaps::try_from(outer).map_err(|e| io::Error::other(e.to_string()))?;
    arr.set(index, map, 0)
        .map_err(|e| io::Error::other(format!("installing a key set map: {e}")))
}

/// The key sets, the epoch the programs use, and the drain.
pub(super) struct Generations {
    outer: Outer,
    pub(super) set: KeySet,
    epoch: u32,
    /// Sets a resize replaced: no program uses them after the next swap,
    /// and their counts join the next drain.
    retired: Vec<KeySet>,
    /// The kernel's map_full total at the last drain.
    last_full: u64,
    /// Drains since the last reconcile.
    since_reconcile: u32,
    /// Keys per rule at the last drain, to size the next tables.
    pub(super) last_keys: Vec<usize>,
}

impl Generations {
    /// Installs `set` at epoch 0.
    pub(super) fn new(mut outer: Outer, set: KeySet, rules: usize) -> io::Result<Generations> {
        set.install(&mut outer, 0)?;
        Ok(Generations {
            outer,
            set,
            epoch: 0,
            retired: Vec::new(),
            last_full: 0,
            since_reconcile: 0,
            last_keys: vec![0; rules],
        })
    }

    /// Slots of the set in use.
    pub(super) fn capacity(&self) -> u32 {
        self.set.slots
    }

    /// The epoch the config must name, and its slots.
    pub(super) fn epoch(&self) -> (u32, u32) {
        (self.epoch, self.set.slots)
    }

    /// Possible CPUs.
    pub(super) fn ncpus(&self) -> usize {
        self.set.ncpus
    }

    /// Puts `set` (a new, larger one) at the other epoch, which no program
    /// uses until a config names it; returns that epoch. Then
    /// [`Generations::resized`] once the config names it.
    pub(super) fn install_other(&mut self, set: &KeySet) -> io::Result<u32> {
        let epoch = 1 - self.epoch;
        set.install(&mut self.outer, epoch)?;
        Ok(epoch)
    }

    /// Makes `set`, installed by [`Generations::install_other`] and named
    /// by the live config, the set in use. The old one may still be written
    /// by programs that read the old config; its last generation is read
    /// whole at the next drain, after the swap's grace period.
    pub(super) fn resized(&mut self, set: KeySet) {
        let old = std::mem::replace(&mut self.set, set);
        self.retired.push(old);
        self.epoch = 1 - self.epoch;
    }

    /// Swaps in the spare generation, then reads and empties the old one
    /// (and the last generation of any set a resize replaced) into per-rule
    /// tables: rule `i` (config order) keeps at most `max_keys[i]` keys, and
    /// `id_index` maps the rule ids of the kernel's keys to `i`. `map_full`
    /// is the kernel's total of datagrams that found no free slot. The
    /// tables' lists come from `lists` where it has them.
    pub(super) fn drain(
        &mut self,
        max_keys: &[usize],
        id_index: &IdIndex,
        map_full: u64,
        lists: &mut Spare,
    ) -> io::Result<Drained> {
        let started = Instant::now();
        let set = &mut self.set;
        let spare = 1 - set.active;
        put(&mut self.outer.generation, self.epoch, &set.cells[spare])?;
        let swap = started.elapsed();
        let old = set.active;
        set.active = spare;

        for st in &mut set.state {
            if let Slot::Live(idle) = st {
                *idle = idle.saturating_add(1);
            }
        }
        // Keys past max_keys wait for the interval's table, which holds,
        // sketches or refuses them as the rule says.
        let mut tables: Vec<CountTable> = max_keys
            .iter()
            .zip(&self.last_keys)
            .map(|(m, n)| CountTable::unique_in(*m, lists.take(*n, *m)).spilling())
            .collect();
        let (mut keys, mut owned) = (0usize, 0u64);
        // A key is in one live slot, listed without a lookup. A retiring
        // slot or a replaced set may hold it too (`again`): those few are
        // read first, into the table's map, where the live slot's count
        // then finds them. (A table of every key, for the rotations that
        // had such a slot, was 30 MiB allocated and freed at once in the
        // soak.)
        let mut record = |key: &GroupKey, c: &Counted, again: bool| {
            keys += 1;
            owned += c.owned;
            // Counts of a rule a reload removed or regrouped are gone with
            // it.
            if let Some(t) = id_index.get(&key.rule).and_then(|i| tables.get_mut(*i)) {
                let mut cell = Cell::from_exact(c.sum, c.lines);
                cell.owned.kernel = c.owned.min(u32::MAX as u64) as u32;
                if again {
                    t.add_counted(key.bytes(), cell);
                } else {
                    t.push_listed(key.bytes(), cell);
                }
            }
        };
        for mut gone in self.retired.drain(..) {
            let g = gone.active;
            gone.take(g, 0..gone.slots, |_, key, c| record(key, c, true));
            // Its maps go with it (the outer maps held them too).
            let o = &self.outer;
            for m in [&o.generation, &o.keys, &o.key_of, &o.free] {
                if let Map::ArrayOfMaps(d) = m {
                    if let Err(e) = sys::clear_outer(d.fd().as_fd(), 1 - self.epoch) {
                        warn!(error = %e, "cannot let go of a replaced key set");
                    }
                }
            }
        }
        // Read and emptied here, the retiring slots count nothing in the
        // pass over every slot.
        let retiring = std::mem::take(&mut set.retiring);
        set.take(old, retiring.iter().copied(), |_, key, c| {
            record(key, c, true)
        });
        set.retiring = retiring;
        let mut taken = 0;
        set.take(old, 0..set.slots, |st, key, c| {
            match *st {
                Slot::Free => {
                    *st = Slot::Live(0);
                    taken += 1;
                }
                Slot::Live(_) => *st = Slot::Live(0),
                Slot::Retiring => {}
            }
            record(key, c, false);
        });
        set.free_count -= taken;
        for (n, t) in self.last_keys.iter_mut().zip(&tables) {
            *n = t.len();
        }

        // The slots: free those whose last counts were just read, retire
        // the idle ones.
        set.free_retired()?;
        let full = map_full > self.last_full;
        self.last_full = map_full;
        self.since_reconcile = self.since_reconcile.saturating_add(1);
        let short = full || set.free_count < set.slots as usize / 8;
        if full && set.free_count >= set.slots as usize / 8 {
            // The kernel found no slot where the daemon sees free ones.
            if self.since_reconcile >= RETIRE_AFTER as u32 {
                self.since_reconcile = 0;
                match set.reconcile() {
                    Ok(n) => debug!(slots = n, "slots held for keys never counted"),
                    Err(e) => warn!(error = %e, "cannot read the kernel's key map"),
                }
            }
        }
        let retired = set.retire_idle(short)?;
        let drain = started.elapsed() - swap;
        debug!(keys, owned, retired, ?swap, ?drain, "drained generation");
        Ok(Drained {
            tables,
            keys,
            swap,
            drain,
            retired,
        })
    }
}

#[cfg(any(test, feature = "bench"))]
impl Generations {
    /// Sets the cell on CPU 0 of each of `keys` to `cell` in the generation
    /// the programs write, giving a key without a slot a free one as the
    /// programs do (its KEY_OF entry first, then KEYS). For benchmarks and
    /// tests of the drain.
    pub(super) fn fill_active(&mut self, keys: &[GroupKey], cell: KCell) -> io::Result<()> {
        let set = &mut self.set;
        let held: HashMap<GroupKey, u32> =
            sys::key_slots(set.keys.fd().as_fd())?.into_iter().collect();
        let (mut new_keys, mut new_slots) = (Vec::new(), Vec::new());
        for k in keys {
            let slot = match held.get(k) {
                Some(s) => *s,
                None => {
                    let s = sys::pop_free(set.free.fd().as_fd())?
                        .ok_or_else(|| io::Error::other("no free slot"))?;
                    set.key_of_view.set(s as usize, *k);
                    new_keys.push(*k);
                    new_slots.push(s);
                    s
                }
            };
            set.cell_views[set.active].set(slot as usize, cell);
        }
        sys::update_batch(set.keys.fd().as_fd(), &new_keys, &new_slots, 1)
    }
}

#[cfg(test)]
impl Generations {
    /// Sets the cell on CPU 0 of every retiring slot to `cell` in the
    /// generation the programs write: what a program that found the key
    /// before its delete does. Returns the slots.
    pub(super) fn count_retiring(&mut self, cell: KCell) -> usize {
        let set = &mut self.set;
        for &s in &set.retiring {
            set.cell_views[set.active].set(s as usize, cell);
        }
        set.retiring.len()
    }
}
