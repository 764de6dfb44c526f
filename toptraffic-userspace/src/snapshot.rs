//! The interval snapshot: what the ingest paths counted for one aligned
//! interval, per rule and group key.
//!
//! This is the seam between ingest and the window: the userspace receive
//! threads and the kernel drain both produce [`IntervalSnapshot`]s, which are
//! merged and handed to the window engine, which does not know their origin.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::key::Key;
use crate::sketch::{Shape, Sketch};

/// Integers up to this magnitude are exact in f64, so a value that is one
/// is taken as the integer it is.
const EXACT: f64 = (1u64 << 53) as f64;

/// What one key added in one interval.
///
/// The aggregate (lines for a count, the field's sum for a sum) is held in
/// two parts so that both ingest paths give the same value for the same
/// lines: the values that are integers of magnitude at most 2^53 (every
/// value the kernel sums is: it sums at most 2^31 - 1) add exactly in
/// `exact`, which cannot wrap (2^64 lines of 2^53 stay far below 2^127),
/// whatever the order and however the lines were split over threads and
/// CPUs; the others (fractions, larger numbers: only userspace counts them)
/// add as f64 in `rest`. [`Cell::value`] rounds the exact part once.
///
/// 40 bytes (docs/OPERATIONS.md's memory formula counts them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cell {
    /// The exact part, an i128 in two words: an i128 field would align the
    /// cell, and every table slot, to 16 bytes.
    exact_lo: u64,
    exact_hi: i64,
    pub rest: f64,
    /// Lines that contributed.
    pub lines: u64,
    /// Of `lines`, those this rule counts (the points), by the path that
    /// received them: a line is counted by the first rule, in config order,
    /// that took it and held its key when it arrived. When the cell is
    /// refused later (merge, window), these lines leave the points.
    pub owned: ByPath<u32>,
}

impl Cell {
    /// `lines` lines adding up to `value`, owned by no rule.
    #[inline]
    pub fn new(value: f64, lines: u64) -> Cell {
        // Also false for NaN and the infinities.
        if value.abs() <= EXACT && value.fract() == 0.0 {
            Cell::from_exact(value as i128, lines)
        } else {
            Cell {
                rest: value,
                lines,
                ..Cell::default()
            }
        }
    }

    /// One line that `owner` says whether this rule counts.
    #[inline]
    pub fn line(value: f64, path: Path, owner: bool) -> Cell {
        let mut c = Cell::new(value, 1);
        *c.owned.get_mut(path) = owner as u32;
        c
    }

    /// An exact integer sum, as the kernel's drain gives it.
    #[inline]
    pub fn from_exact(sum: i128, lines: u64) -> Cell {
        Cell {
            exact_lo: sum as u64,
            exact_hi: (sum >> 64) as i64,
            rest: 0.0,
            lines,
            owned: ByPath::default(),
        }
    }

    /// The sum of the integer values.
    #[inline]
    pub fn exact(&self) -> i128 {
        ((self.exact_hi as i128) << 64) | self.exact_lo as i128
    }

    /// The aggregate.
    #[inline]
    pub fn value(&self) -> f64 {
        if self.rest == 0.0 {
            self.exact() as f64
        } else {
            self.exact() as f64 + self.rest
        }
    }

    #[inline]
    pub fn add(&mut self, other: Cell) {
        let sum = self.exact().wrapping_add(other.exact());
        self.exact_lo = sum as u64;
        self.exact_hi = (sum >> 64) as i64;
        self.rest += other.rest;
        self.lines += other.lines;
        // 2^32 lines of one key in one interval saturate, never wrap.
        self.owned.kernel = self.owned.kernel.saturating_add(other.owned.kernel);
        self.owned.userspace = self.owned.userspace.saturating_add(other.owned.userspace);
    }
}

/// The ingest path that received a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Kernel,
    Userspace,
}

/// A count for each ingest path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByPath<T> {
    pub kernel: T,
    pub userspace: T,
}

impl<T> ByPath<T> {
    pub fn get_mut(&mut self, path: Path) -> &mut T {
        match path {
            Path::Kernel => &mut self.kernel,
            Path::Userspace => &mut self.userspace,
        }
    }
}

impl ByPath<u64> {
    /// Adds a cell's owned lines.
    #[inline]
    pub fn add_owned(&mut self, owned: ByPath<u32>) {
        self.kernel += owned.kernel as u64;
        self.userspace += owned.userspace as u64;
    }

    pub fn add(&mut self, other: ByPath<u64>) {
        self.kernel += other.kernel;
        self.userspace += other.userspace;
    }
}

type Map = hashbrown::HashMap<Key, Cell, ahash::RandomState>;

/// How many keys counted in a table's sketch it keeps the names of.
pub const SKETCHED_NAMES: usize = 64;

/// The keys with the largest estimates among those a table counted in its
/// sketch, by name, at most [`SKETCHED_NAMES`] of them. The window
/// promotes a key it can name; a key every line of which, in an interval,
/// came after its table had filled would otherwise be in the sketch only,
/// unnamed, and never promoted however heavy (a burst behind a flood).
///
/// A key heavy in the window is heavy in some table's sketch in some
/// interval, where the flood's keys, a line or so each, weigh little:
/// the places go to the heaviest (a new key needs twice the lightest
/// kept's estimate), and the window checks each against its promotion
/// threshold.
#[derive(Debug, Clone, Default)]
pub struct Heaviest {
    keys: hashbrown::HashMap<Key, f64, ahash::RandomState>,
    /// The smallest estimate kept, once full (a lower bound of it: a kept
    /// key's may have grown since).
    min: f64,
}

impl Heaviest {
    /// A key counted in the sketch, with its estimate there after it.
    #[inline]
    pub fn offer(&mut self, key: &[u8], estimate: f64) {
        let full = self.keys.len() >= SKETCHED_NAMES;
        // A key takes a place, or updates its own, only at twice the
        // lightest kept's estimate: as a flood fills the sketch its fresh
        // keys' estimates creep up, and each would otherwise be looked up
        // and replace the lightest, line after line. A kept key below that
        // is left as it was (it may then give its place up).
        if full && estimate < 2.0 * self.min {
            return;
        }
        if let Some(e) = self.keys.get_mut(key) {
            *e = e.max(estimate);
            return;
        }
        if full {
            let lightest = self
                .keys
                .iter()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(k, _)| k.clone());
            if let Some(k) = lightest {
                self.keys.remove(&k);
            }
        }
        self.keys.insert(key.into(), estimate);
        if self.keys.len() >= SKETCHED_NAMES {
            self.min = self.keys.values().copied().fold(f64::INFINITY, f64::min);
        }
    }

    /// Adds another table's names (each with its estimate there).
    pub fn merge(&mut self, other: Heaviest) {
        for (k, e) in other.keys {
            self.offer(k.as_slice(), e);
        }
    }

    pub fn into_keys(self) -> Vec<Key> {
        self.keys.into_keys().collect()
    }
}

/// One rule's counts for one interval, holding at most `max_keys` keys.
///
/// Counts arrive two ways: added line by line (the receive threads), which
/// needs a hash table to find a key's cell, or whole from a source that
/// yields each key once (the kernel drain), which needs no table: those go
/// into a plain list, at a third of a table's memory and without hashing.
/// A key may then appear in both, or in two merged lists (and takes room
/// toward `max_keys` in each); its cells add up, which is how every reader
/// (the window) takes them.
///
/// What does not fit is not lost when the rule has an overflow sketch
/// (`with_sketch`): a whole cell (a merge, a drain) waits, named, in the
/// spill, which the window then holds exactly (a key it already has), or
/// counts in its sketch; a line, or a cell past a spill of `max_keys`,
/// goes into the table's own sketch, which the window adds to its ring.
/// Without a sketch, what does not fit is refused and counted.
#[derive(Debug, Clone)]
pub struct CountTable {
    map: Map,
    list: Vec<(Key, Cell)>,
    /// Whole cells the table had no room for (see the type).
    spill: Vec<(Key, Cell)>,
    /// How many cells `spill` takes.
    spill_limit: usize,
    max_keys: usize,
    /// The shape of the rule's sketches; None: the rule has none.
    shape: Option<Shape>,
    /// Lines the table could not name, made when first needed.
    sketch: Option<Box<Sketch>>,
    /// The heaviest of the keys counted in `sketch`, named.
    heaviest: Heaviest,
    /// Lines counted in `sketch`, and those of them owned, by path.
    pub sketched_lines: u64,
    pub sketched_owned: ByPath<u64>,
    /// Lines of keys refused because the table was full.
    pub overflow_lines: u64,
    /// The owned lines ([`Cell::owned`]) of the cells refused by
    /// [`CountTable::merge`] or [`CountTable::push_unique`]: lines a source
    /// had already counted as points (the receive threads' tables, the
    /// kernel's map), which therefore leave them.
    pub late: ByPath<u64>,
}

impl CountTable {
    pub fn new(max_keys: usize) -> CountTable {
        CountTable::with_capacity(max_keys, 0)
    }

    /// An empty table with room for `capacity` keys before it grows.
    pub fn with_capacity(max_keys: usize, capacity: usize) -> CountTable {
        CountTable {
            map: Map::with_capacity_and_hasher(capacity.min(max_keys), Default::default()),
            list: Vec::new(),
            spill: Vec::new(),
            spill_limit: 0,
            max_keys,
            shape: None,
            sketch: None,
            heaviest: Heaviest::default(),
            sketched_lines: 0,
            sketched_owned: ByPath::default(),
            overflow_lines: 0,
            late: ByPath::default(),
        }
    }

    /// An empty table for a source that yields each key once, with room
    /// for `capacity` of them (see [`CountTable::push_unique`]).
    pub fn unique_with_capacity(max_keys: usize, capacity: usize) -> CountTable {
        CountTable::unique_in(max_keys, Vec::with_capacity(capacity.min(max_keys)))
    }

    /// An empty table for a source that yields each key once, in `list`
    /// (emptied; a [`Spare`] one).
    pub fn unique_in(max_keys: usize, mut list: Vec<(Key, Cell)>) -> CountTable {
        list.clear();
        let mut t = CountTable::new(max_keys);
        t.list = list;
        t
    }

    /// The same table, keeping what it has no room for in sketches of
    /// `shape` (the rule's overflow tier), or refusing it when None.
    pub fn with_sketch(mut self, shape: Option<Shape>) -> CountTable {
        self.shape = shape;
        self.spill_limit = if shape.is_some() { self.max_keys } else { 0 };
        self
    }

    /// The same table, spilling every whole cell it has no room for: for
    /// a source of bounded size (a kernel map) whose cells the interval's
    /// table then holds, spills or sketches as its rule says.
    pub fn spilling(mut self) -> CountTable {
        self.spill_limit = usize::MAX;
        self
    }

    /// Adds a line to `key`'s cell; false when the key is new, the table
    /// full and the rule without a sketch (the line is refused).
    #[inline]
    pub fn add(&mut self, key: &[u8], cell: Cell) -> bool {
        if let Some(c) = self.map.get_mut(key) {
            c.add(cell);
            return true;
        }
        if self.len() >= self.max_keys {
            return self.sketch(key, cell);
        }
        self.map.insert(key.into(), cell);
        true
    }

    /// Counts `cell` in the table's sketch; false (refused, counted) when
    /// the rule has none.
    fn sketch(&mut self, key: &[u8], cell: Cell) -> bool {
        let Some(shape) = self.shape else {
            self.overflow_lines += cell.lines;
            return false;
        };
        let estimate = self
            .sketch
            .get_or_insert_with(|| Box::new(Sketch::new(shape)))
            .add(key, cell.value());
        self.heaviest.offer(key, estimate);
        self.sketched_lines += cell.lines;
        self.sketched_owned.add_owned(cell.owned);
        true
    }

    /// Adds a whole cell, already counted by its source: held, spilled or
    /// sketched (see the type), or refused late.
    pub fn add_counted(&mut self, key: &[u8], cell: Cell) {
        if let Some(c) = self.map.get_mut(key) {
            c.add(cell);
        } else if self.len() < self.max_keys {
            self.map.insert(key.into(), cell);
        } else {
            self.overflow(key.into(), cell);
        }
    }

    /// A whole cell that found no room.
    fn overflow(&mut self, key: Key, cell: Cell) {
        if self.spill.len() < self.spill_limit {
            self.spill.push((key, cell));
        } else if !self.sketch(&key, cell) {
            self.late.add_owned(cell.owned);
        }
    }

    /// Appends a key that this source has not given before, without
    /// looking it up.
    #[inline]
    pub fn push_unique(&mut self, key: &[u8], cell: Cell) {
        if self.len() >= self.max_keys {
            self.overflow(key.into(), cell);
            return;
        }
        self.list.push((key.into(), cell));
    }

    /// Appends a key that this source has not listed before, looking it up
    /// only among those it gave by [`CountTable::add_counted`], if any.
    #[inline]
    pub fn push_listed(&mut self, key: &[u8], cell: Cell) {
        if !self.map.is_empty() {
            if let Some(c) = self.map.get_mut(key) {
                c.add(cell);
                return;
            }
        }
        self.push_unique(key, cell);
    }

    /// Moves every cell of `other` into this table.
    pub fn merge(&mut self, mut other: CountTable) {
        self.overflow_lines += other.overflow_lines;
        self.late.add(other.late);
        if let Some(theirs) = other.sketch.take() {
            let merged = match &mut self.sketch {
                None => {
                    self.sketch = Some(theirs);
                    true
                }
                Some(mine) => mine.merge(&theirs),
            };
            if merged {
                self.sketched_lines += other.sketched_lines;
                self.sketched_owned.add(other.sketched_owned);
                self.heaviest.merge(std::mem::take(&mut other.heaviest));
            } else {
                // A reload changed the sketch's shape between the two:
                // these lines can be neither named nor added.
                self.overflow_lines += other.sketched_lines;
                self.late.add(other.sketched_owned);
            }
        }
        let spill = std::mem::take(&mut other.spill);
        self.merge_cells(other);
        for (k, c) in spill {
            self.add_owned(k, c);
        }
    }

    fn merge_cells(&mut self, other: CountTable) {
        if self.is_empty() && other.len() <= self.max_keys {
            self.map = other.map;
            self.list = other.list;
            return;
        }
        for (k, c) in other.map {
            self.add_owned(k, c);
        }
        if self.list.is_empty() && self.len() + other.list.len() <= self.max_keys {
            self.list = other.list;
            return;
        }
        for (k, c) in other.list {
            if self.len() < self.max_keys {
                self.list.push((k, c));
            } else {
                self.overflow(k, c);
            }
        }
    }

    /// Adds an owned key's cell (the merge path: no copy of the key).
    fn add_owned(&mut self, key: Key, cell: Cell) {
        if let Some(c) = self.map.get_mut(&key) {
            c.add(cell);
        } else if self.len() < self.max_keys {
            self.map.insert(key, cell);
        } else {
            self.overflow(key, cell);
        }
    }

    /// Entries held: the keys, or more when a key came from two sources
    /// (the spill not included).
    pub fn len(&self) -> usize {
        self.map.len() + self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.list.is_empty()
    }

    /// A key's cells added up, spill included (a walk of the lists: for
    /// tests and tools).
    pub fn get(&self, key: &[u8]) -> Option<Cell> {
        let mut found = self.map.get(key).copied();
        for (k, c) in self.list.iter().chain(&self.spill) {
            if k.as_slice() == key {
                found.get_or_insert_with(Cell::default).add(*c);
            }
        }
        found
    }

    /// Every entry, spill included; a key may come twice (see the type).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Cell)> {
        self.map
            .iter()
            .chain(self.list.iter().chain(&self.spill).map(|(k, c)| (k, c)))
    }

    /// Takes the lines the table could not name: their sketch and their
    /// count.
    pub fn take_sketch(&mut self) -> Option<(Box<Sketch>, u64)> {
        let s = self.sketch.take()?;
        Some((s, std::mem::take(&mut self.sketched_lines)))
    }

    /// Takes the names of the heaviest keys counted in the sketch (at most
    /// [`SKETCHED_NAMES`]): the window's candidates for promotion among
    /// keys none of whose lines found room (see [`Heaviest`]).
    pub fn take_heaviest(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.heaviest).into_keys()
    }

    /// Lines held in the table, named or sketched.
    pub fn lines(&self) -> u64 {
        self.iter().map(|(_, c)| c.lines).sum::<u64>() + self.sketched_lines
    }

    /// Empties the table, keeping its allocation for the next interval.
    pub fn take(&mut self) -> CountTable {
        let cap = self.map.capacity().min(self.max_keys);
        let full = std::mem::replace(
            &mut self.map,
            Map::with_capacity_and_hasher(cap / 2, Default::default()),
        );
        CountTable {
            map: full,
            list: std::mem::take(&mut self.list),
            spill: std::mem::take(&mut self.spill),
            spill_limit: self.spill_limit,
            max_keys: self.max_keys,
            shape: self.shape,
            sketch: self.sketch.take(),
            heaviest: std::mem::take(&mut self.heaviest),
            sketched_lines: std::mem::take(&mut self.sketched_lines),
            sketched_owned: std::mem::take(&mut self.sketched_owned),
            overflow_lines: std::mem::take(&mut self.overflow_lines),
            late: std::mem::take(&mut self.late),
        }
    }
}

impl CountTable {
    /// Every entry, spill last, leaving the table empty; the sketch stays
    /// behind (take it first with [`CountTable::take_sketch`]). The list
    /// keeps its allocation, for [`CountTable::into_list`].
    pub fn drain(&mut self) -> impl Iterator<Item = (Key, Cell)> + '_ {
        self.map
            .drain()
            .chain(self.list.drain(..))
            .chain(self.spill.drain(..))
    }

    /// The list, with its allocation (see [`Spare`]).
    pub fn into_list(self) -> Vec<(Key, Cell)> {
        self.list
    }
}

/// Emptied lists of whole cells, kept from one interval to the next.
///
/// The kernel's drain fills a list per rule every interval (80 bytes a
/// key: 28 MiB for the soak's 324,000 keys), which the window empties.
/// Taking the last interval's lists again keeps those pages in place:
/// allocated and freed each rotation, they made RSS step by their size as
/// the allocator gave pages back and took them again (docs/BENCHMARKS.md,
/// the soak).
#[derive(Debug, Default, Clone)]
pub struct Spare(Vec<Vec<(Key, Cell)>>);

impl Spare {
    /// Keeps `list`'s allocation, if it has one.
    pub fn put(&mut self, mut list: Vec<(Key, Cell)>) {
        if list.capacity() > 0 {
            list.clear();
            self.0.push(list);
        }
    }

    /// An empty list with room for `len` entries and an eighth more, at
    /// most `max`: the largest spare one, grown if it must, and shrunk when
    /// more than twice that (what a flood grew goes back); else a new one.
    pub fn take(&mut self, len: usize, max: usize) -> Vec<(Key, Cell)> {
        let need = len.min(max);
        let want = (len + len / 8).min(max);
        let largest = (0..self.0.len()).max_by_key(|&i| self.0[i].capacity());
        let Some(i) = largest else {
            return Vec::with_capacity(want);
        };
        let mut list = self.0.swap_remove(i);
        if list.capacity() < need {
            list.reserve_exact(want);
        } else if list.capacity() > 2 * want + 1024 {
            list.shrink_to(want);
        }
        list
    }

    /// Lists held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for CountTable {
    type Item = (Key, Cell);
    type IntoIter = std::iter::Chain<
        std::iter::Chain<hashbrown::hash_map::IntoIter<Key, Cell>, std::vec::IntoIter<(Key, Cell)>>,
        std::vec::IntoIter<(Key, Cell)>,
    >;
    /// Every entry, spill last; the sketch stays behind (take it first
    /// with [`CountTable::take_sketch`]).
    fn into_iter(self) -> Self::IntoIter {
        self.map.into_iter().chain(self.list).chain(self.spill)
    }
}

/// Everything counted in one aligned interval, per rule (in config order).
#[derive(Debug, Clone)]
pub struct IntervalSnapshot {
    /// The interval's index: it covers `[index * every, (index + 1) * every)`
    /// since the Unix epoch.
    pub index: u64,
    pub rules: Vec<CountTable>,
    /// Lists the window emptied, for a source to fill again.
    pub spare: Spare,
}

impl IntervalSnapshot {
    pub fn empty(index: u64, max_keys: impl IntoIterator<Item = usize>) -> IntervalSnapshot {
        IntervalSnapshot {
            index,
            rules: max_keys.into_iter().map(CountTable::new).collect(),
            spare: Spare::default(),
        }
    }

    /// Folds another path's or thread's tables for the same interval in.
    pub fn merge(&mut self, tables: Vec<CountTable>) {
        for (mine, theirs) in self.rules.iter_mut().zip(tables) {
            mine.merge(theirs);
        }
    }
}

/// Aligned interval arithmetic (Kapacitor's `.align()`): intervals are
/// multiples of `every` since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    every: Duration,
}

impl Intervals {
    pub fn new(every: Duration) -> Intervals {
        assert!(!every.is_zero());
        Intervals { every }
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    /// The index of the interval that contains `t`.
    pub fn index_at(&self, t: SystemTime) -> u64 {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        (since.as_nanos() / self.every.as_nanos()) as u64
    }

    /// When interval `index` starts.
    pub fn start(&self, index: u64) -> SystemTime {
        // u64 nanoseconds reach the year 2554.
        UNIX_EPOCH + Duration::from_nanos((index as u128 * self.every.as_nanos()) as u64)
    }

    /// When interval `index` ends: the end of the window it closes.
    pub fn end(&self, index: u64) -> SystemTime {
        self.start(index + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::from_values;

    fn cell(v: f64) -> Cell {
        Cell::line(v, Path::Userspace, true)
    }

    #[test]
    fn the_heaviest_sketched_keys_are_named_and_their_number_bounded() {
        let shape = Some(crate::sketch::Shape::for_bound(0.0005, 0.99));
        let mut t = CountTable::new(10).with_sketch(shape);
        let flood = |i: usize| from_values(&[&format!("f{i}")]);
        for i in 0..10 {
            assert!(t.add(&flood(i), cell(1.0)));
        }
        // Heavy keys among a flood, some before it, some inside, some after.
        let heavy: Vec<Key> = (0..8).map(|i| from_values(&[&format!("h{i}")])).collect();
        for (n, h) in heavy.iter().enumerate() {
            for i in 0..20_000 {
                if i % 40 == 0 {
                    assert!(t.add(h, cell(1.0)), "{n}");
                }
                assert!(t.add(&flood(10 + n * 20_000 + i), cell(1.0)));
            }
        }
        // Another thread's table, full with one key.
        let mut other = CountTable::new(1).with_sketch(shape);
        let late = from_values(&["late"]);
        for _ in 0..300 {
            assert!(other.add(&flood(0), cell(1.0)));
            assert!(other.add(&late, cell(1.0)));
        }
        t.merge(other);
        let names = t.take_heaviest();
        assert!(names.len() <= SKETCHED_NAMES, "{}", names.len());
        for h in heavy.iter().chain([&late]) {
            assert!(names.contains(h), "{h:?} among {}", names.len());
        }
        assert!(t.take_heaviest().is_empty(), "taken");
    }

    #[test]
    fn spare_lists_are_taken_again_and_shrink_after_a_flood() {
        let mut spare = Spare::default();
        assert_eq!(spare.take(100, 1000).capacity(), 112, "an eighth more");
        let mut big = Vec::with_capacity(5000);
        big.push((from_values(&["a"]), cell(1.0)));
        let ptr = big.as_ptr();
        spare.put(big);
        spare.put(Vec::new());
        assert_eq!(spare.len(), 1, "nothing to keep of an empty list");
        // The same allocation, emptied, when it fits.
        let l = spare.take(4000, 10_000);
        assert_eq!((l.as_ptr(), l.len(), l.capacity()), (ptr, 0, 5000));
        spare.put(l);
        // Grown when it does not.
        assert!(spare.take(6000, 10_000).capacity() >= 6000);
        // Shrunk when more than twice what is asked.
        spare.put(Vec::with_capacity(100_000));
        let l = spare.take(1000, 10_000);
        assert!(
            l.capacity() >= 1000 && l.capacity() < 2000,
            "{}",
            l.capacity()
        );
        // Never past max_keys.
        assert_eq!(spare.take(1000, 500).capacity(), 500);
    }

    #[test]
    fn a_listed_key_finds_its_cell_given_whole_before() {
        let k = from_values(&["a"]);
        let mut t = CountTable::unique_in(10, Vec::new());
        t.push_listed(&from_values(&["b"]), cell(1.0));
        t.add_counted(&k, cell(2.0));
        t.push_listed(&k, cell(3.0));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&k).unwrap().value(), 5.0);
    }

    #[test]
    fn integer_values_add_exactly_whatever_the_order() {
        let big = 999_999_999_999_999.0;
        let mut up = Cell::default();
        let mut down = Cell::default();
        let values: Vec<f64> = (0..20_000)
            .map(|i| if i % 3 == 2 { -big } else { big })
            .chain([1.0, -0.0, 7.0])
            .collect();
        for v in &values {
            up.add(cell(*v));
        }
        for v in values.iter().rev() {
            down.add(cell(*v));
        }
        assert_eq!(up, down);
        // 13,334 x big - 6,666 x big + 8, past f64's exact integers: one
        // rounding, of the exact sum.
        let want = 6_668i128 * 999_999_999_999_999 + 8;
        assert_eq!(up.exact(), want);
        assert_eq!(up.value(), want as f64);
        assert_eq!(up.lines, 20_003);
        // Past i64, and back across zero.
        let mut c = Cell::default();
        for _ in 0..10_000 {
            c.add(cell(big));
        }
        assert!(c.exact() > i64::MAX as i128);
        for _ in 0..10_000 {
            c.add(cell(-big));
        }
        assert_eq!(c.value(), 0.0);
    }

    #[test]
    fn fractions_and_huge_values_add_as_floats() {
        let mut c = cell(0.5);
        c.add(cell(2.0));
        c.add(cell(9_007_199_254_740_994.0));
        assert_eq!((c.exact(), c.rest), (2, 9_007_199_254_740_994.0));
        assert_eq!(c.value(), 9_007_199_254_740_996.0);
        assert_eq!(cell(-1e300).rest, -1e300);
        assert_eq!(cell(f64::NAN).exact(), 0);
        assert!(cell(f64::NAN).value().is_nan());
    }

    fn late(kernel: u64, userspace: u64) -> ByPath<u64> {
        ByPath { kernel, userspace }
    }

    #[test]
    fn table_refuses_new_keys_when_full_and_counts_their_lines() {
        let mut t = CountTable::new(2);
        assert!(t.add(b"a", cell(1.0)));
        assert!(t.add(b"b", cell(1.0)));
        assert!(!t.add(b"c", cell(1.0)));
        assert!(t.add(b"a", cell(2.0)), "known keys still count");
        assert_eq!(t.len(), 2);
        assert_eq!(t.overflow_lines, 1);
        assert_eq!(t.get(b"a").unwrap().value(), 3.0);
    }

    #[test]
    fn merge_counts_apart_the_lines_it_refuses() {
        let mut snap = IntervalSnapshot::empty(1, [2]);
        let mut a = CountTable::new(2);
        a.add(b"a", cell(1.0));
        a.add(b"b", cell(1.0));
        assert!(!a.add(b"c", cell(1.0)));
        let mut b = CountTable::new(2);
        b.add(b"d", cell(1.0));
        b.add(b"a", cell(1.0));
        snap.merge(vec![a]);
        snap.merge(vec![b]);
        let t = &snap.rules[0];
        // c was refused by its thread's table, d by the merge.
        assert_eq!((t.overflow_lines, t.late), (2, late(0, 1)));
        assert_eq!(t.lines(), 3);
    }

    #[test]
    fn merge_adds_cells_key_for_key() {
        let mut a = IntervalSnapshot::empty(7, [10]);
        a.rules[0].add(&from_values(&["x"]), cell(1.0));
        let mut b = CountTable::new(10);
        b.add(&from_values(&["x"]), cell(2.0));
        b.add(&from_values(&["y"]), cell(5.0));
        a.merge(vec![b]);
        assert_eq!(a.rules[0].get(&from_values(&["x"])).unwrap().value(), 3.0);
        assert_eq!(a.rules[0].get(&from_values(&["x"])).unwrap().lines, 2);
        assert_eq!(a.rules[0].lines(), 3);
    }

    #[test]
    fn unique_entries_and_looked_up_ones_add_up() {
        let (x, y) = (from_values(&["x"]), from_values(&["y"]));
        let mut kernel = CountTable::unique_with_capacity(4, 2);
        kernel.push_unique(&x, cell(1.0));
        kernel.push_unique(&y, cell(2.0));
        // A source's counted key refused is a late refusal too.
        let mut full = CountTable::unique_with_capacity(1, 1);
        full.push_unique(&x, cell(1.0));
        full.push_unique(&y, cell(1.0));
        assert_eq!((full.overflow_lines, full.late), (1, late(0, 1)));
        let mut thread = CountTable::new(4);
        thread.add(&x, cell(4.0));
        thread.add(&from_values(&["z"]), cell(8.0));
        let mut s = IntervalSnapshot::empty(1, [4]);
        s.merge(vec![kernel]);
        s.merge(vec![thread]);
        let t = &s.rules[0];
        assert_eq!(t.get(&x).unwrap().value(), 5.0);
        assert_eq!(t.get(&x).unwrap().lines, 2);
        // x once from each source, y and z.
        assert_eq!(t.len(), 4);
        assert_eq!(t.lines(), 4);
        assert_eq!(t.overflow_lines, 0);
        let mut full = CountTable::unique_with_capacity(1, 1);
        full.push_unique(&x, cell(1.0));
        full.push_unique(&y, cell(1.0));
        assert_eq!(full.overflow_lines, 1);
    }

    fn shape() -> Option<Shape> {
        Some(Shape::for_bound(0.01, 0.99))
    }

    #[test]
    fn with_a_sketch_nothing_is_refused_and_whole_cells_stay_named() {
        let (a, b, c) = (
            from_values(&["a"]),
            from_values(&["b"]),
            from_values(&["c"]),
        );
        // A receive thread's table: a line past max_keys goes to its
        // sketch and counts as held.
        let mut thread = CountTable::new(1).with_sketch(shape());
        assert!(thread.add(&a, cell(1.0)));
        assert!(thread.add(&b, cell(2.0)));
        assert!(thread.add(&b, Cell::line(3.0, Path::Userspace, false)));
        assert_eq!((thread.len(), thread.sketched_lines), (1, 2));
        assert_eq!(thread.sketched_owned, late(0, 1));
        assert_eq!(thread.overflow_lines, 0);
        // A drain's list past max_keys spills every cell, named.
        let d = from_values(&["d"]);
        let mut kernel = CountTable::unique_with_capacity(1, 1).spilling();
        kernel.push_unique(&c, Cell::line(4.0, Path::Kernel, true));
        kernel.push_unique(&d, Cell::line(16.0, Path::Kernel, true));
        kernel.push_unique(&a, Cell::line(8.0, Path::Kernel, true));
        assert_eq!((kernel.len(), kernel.get(&a).unwrap().value()), (1, 8.0));
        // The interval's table holds one key, spills up to max_keys more
        // named and sketches the rest: every line is still there.
        let mut snap = CountTable::new(1).with_sketch(shape());
        snap.merge(thread);
        snap.merge(kernel);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap.get(&a).unwrap().value(), 9.0, "a: held, then added");
        assert_eq!(snap.get(&c).unwrap().value(), 4.0, "c: spilled");
        assert_eq!(snap.get(&d), None, "d: past the spill, sketched");
        assert_eq!((snap.overflow_lines, snap.late), (0, late(0, 0)));
        assert_eq!(snap.lines(), 6);
        let (sketch, lines) = snap.take_sketch().unwrap();
        assert_eq!(
            (lines, sketch.estimate(&b), sketch.estimate(&d)),
            (3, 5.0, 16.0)
        );
        assert_eq!(snap.into_iter().map(|(_, c)| c.lines).sum::<u64>(), 3);
    }

    #[test]
    fn a_late_refusal_takes_off_only_the_lines_the_rule_owns_by_path() {
        // Three lines of key k: two the rule counts (one from each path),
        // one an earlier rule of the measurement counts.
        let k = from_values(&["k"]);
        let mut thread = CountTable::new(1);
        assert!(thread.add(&k, Cell::line(1.0, Path::Userspace, true)));
        assert!(thread.add(&k, Cell::line(1.0, Path::Userspace, false)));
        let mut kernel = CountTable::unique_with_capacity(1, 1);
        kernel.push_unique(&k, Cell::line(1.0, Path::Kernel, true));
        // The interval already holds another key: both are refused late.
        let mut s = IntervalSnapshot::empty(1, [1]);
        s.rules[0].add(&from_values(&["other"]), cell(1.0));
        s.merge(vec![thread]);
        s.merge(vec![kernel]);
        let t = &s.rules[0];
        assert_eq!(t.overflow_lines, 3, "every line the rule refused");
        assert_eq!(t.late, late(1, 1), "only the lines it counted, by path");
    }

    #[test]
    fn a_cell_is_the_size_the_memory_formula_counts() {
        // config::memory_bound (docs/OPERATIONS.md's interval table).
        assert_eq!(
            std::mem::size_of::<Cell>() as u64,
            crate::config::CELL_BYTES
        );
    }

    #[test]
    fn owned_lines_add_by_path_and_saturate() {
        let mut c = Cell::line(1.0, Path::Kernel, true);
        c.add(Cell::line(2.0, Path::Userspace, true));
        c.add(Cell::line(2.0, Path::Userspace, false));
        assert_eq!((c.lines, c.owned.kernel, c.owned.userspace), (3, 1, 1));
        c.owned.kernel = u32::MAX;
        c.add(Cell::line(1.0, Path::Kernel, true));
        assert_eq!(c.owned.kernel, u32::MAX);
    }

    #[test]
    fn take_leaves_an_empty_table() {
        let mut t = CountTable::new(10);
        t.add(b"a", cell(1.0));
        let full = t.take();
        assert_eq!(full.len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn intervals_are_aligned_to_every() {
        let iv = Intervals::new(Duration::from_secs(5));
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_003_250);
        let i = iv.index_at(t);
        assert_eq!(i, 340_000_000);
        assert_eq!(iv.start(i), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(iv.end(i), UNIX_EPOCH + Duration::from_secs(1_700_000_005));
    }
}
