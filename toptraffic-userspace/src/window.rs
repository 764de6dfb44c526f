//! Ring of interval snapshots that yields each key's value over the window.
//!
//! Each key holds one slot per interval of the window (period / every). After
//! interval `i` is applied, a key's value is the sum of its slots for
//! intervals `i - n + 1 ..= i`; a key whose slots are all out of the window is
//! removed in the same pass, so state lives only while the window holds
//! something for the key. Time enters only as interval indices: the engine
//! never reads a clock.

use crate::config::Overflow;
use crate::key::Key;
use crate::sketch::{Sketch, SketchRing};
use crate::snapshot::{ByPath, IntervalSnapshot, Spare};

/// A key's bookkeeping besides its slots.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Slots are current up to this interval.
    cursor: u64,
    /// The last interval that added to this key.
    last_seen: u64,
    /// Sum of the slots, recomputed (not adjusted) after each rotation so
    /// that float error cannot build up.
    sum: f64,
    /// A key promoted from the sketch at interval `since`: its slots up to
    /// `since` are the sketch's estimates, over by at most `bound`. None
    /// once they have left the window (or for a key exact from the start).
    approx: Option<Approx>,
}

/// Where a promoted key's value is still estimated.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Approx {
    since: u64,
    bound: f64,
}

/// A rule's approximate tier: the keys its exact table has no room for.
#[derive(Debug)]
struct Tier {
    ring: SketchRing,
    /// The estimate at which a key is promoted (besides passing the
    /// smallest exact key when the table is full).
    promote_at: f64,
    /// Whether `promote_at` was set or derived (not 0 for "past the
    /// smallest exact key"): a key that finds room takes its estimated past
    /// along only when it reaches a real threshold.
    seeds: bool,
    stats: TierStats,
}

/// What a rule's approximate tier did (totals since the rule began).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TierStats {
    /// Keys moved from the sketch into the exact table.
    pub promotions: u64,
    /// Exact keys moved to the sketch to make room.
    pub demotions: u64,
    /// Lines counted in the sketch rather than refused.
    pub lines_estimated: u64,
    /// Distinct keys the sketch took lines of in the last interval.
    pub keys_last_interval: u64,
    /// Lines of the last interval that a full receive table counted in
    /// the sketch without their key.
    pub unnamed_last_interval: u64,
    /// What an estimate over the window may exceed its value by (with the
    /// configured confidence): error × the sketch's amounts.
    pub error_bound: f64,
}

impl TierStats {
    /// Whether lines went to the sketch in the last interval: the rule is
    /// in overflow.
    pub fn active(&self) -> bool {
        self.keys_last_interval > 0 || self.unnamed_last_interval > 0
    }
}

/// One rule's keys over the window.
///
/// Keys, their bookkeeping and their slots live in dense arrays (a key and
/// its `n` slots at the same position), found through a table of 4-byte
/// positions: no allocation per key, and a key's removal moves the last one
/// into its place. A hash map of whole entries would double its memory when
/// churn fills it with tombstones; this table is 5 bytes a bucket.
#[derive(Debug)]
pub struct RuleWindow {
    index: hashbrown::HashTable<u32>,
    hasher: ahash::RandomState,
    keys: Vec<Key>,
    meta: Vec<Meta>,
    /// Key i's slots at `i * n .. (i + 1) * n`; interval j's at `j % n`.
    slots: Vec<f64>,
    n: usize,
    max_keys: usize,
    /// Lines of keys refused because a table of this rule held max_keys
    /// keys: the window's own refusals, and those of the interval tables
    /// reported with each snapshot (total since the rule began).
    pub overflow_lines: u64,
    tier: Option<Tier>,
}

/// One key's slots, as a state file holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRing {
    pub key: Key,
    pub cursor: u64,
    pub last_seen: u64,
    pub ring: Vec<f64>,
    /// For a key whose slots up to `.0` are estimates: that interval and
    /// their error bound.
    pub approx: Option<(u64, f64)>,
}

/// A rule's approximate tier, as a state file holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TierState {
    pub error: f64,
    /// Each interval's sketch, from the window's last interval back.
    pub by_age: Vec<Sketch>,
    pub promotions: u64,
    pub demotions: u64,
    pub lines_estimated: u64,
}

impl RuleWindow {
    fn empty(n: usize, max_keys: usize) -> RuleWindow {
        RuleWindow {
            index: hashbrown::HashTable::new(),
            hasher: ahash::RandomState::new(),
            keys: Vec::new(),
            meta: Vec::new(),
            slots: Vec::new(),
            n,
            max_keys,
            overflow_lines: 0,
            tier: None,
        }
    }

    /// The approximate tier's totals; None when the rule has none.
    pub fn tier_stats(&self) -> Option<TierStats> {
        self.tier.as_ref().map(|t| t.stats)
    }

    /// Whether the exact table is full and lines go to the sketch: the
    /// rule is in overflow.
    pub fn in_overflow(&self) -> bool {
        self.tier.as_ref().is_some_and(|t| t.stats.active())
    }

    /// Key `key`'s error bound while part of its value is still the
    /// sketch's estimate (a promoted key); None when it is exact.
    pub fn approximate(&self, key: &[u8]) -> Option<f64> {
        self.find(key)
            .and_then(|i| self.meta[i].approx.map(|a| a.bound))
    }

    /// The sketch's estimate of a key that is not in the exact table, and
    /// its error bound; None without a sketch, or for an exact key.
    pub fn estimate(&self, key: &[u8]) -> Option<(f64, f64)> {
        let t = self.tier.as_ref()?;
        if self.find(key).is_some() {
            return None;
        }
        Some((t.ring.estimate(key), t.ring.error_bound()))
    }

    /// Each key's value over the window, and its error bound while it is
    /// approximate.
    pub fn iter_with_bounds(&self) -> impl Iterator<Item = (&Key, f64, Option<f64>)> {
        self.keys
            .iter()
            .zip(&self.meta)
            .map(|(k, m)| (k, m.sum, m.approx.map(|a| a.bound)))
    }

    /// Keys with something in the window.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Each key's value over the window.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, f64)> {
        self.keys.iter().zip(&self.meta).map(|(k, m)| (k, m.sum))
    }

    pub fn value(&self, key: &[u8]) -> Option<f64> {
        self.find(key).map(|i| self.meta[i].sum)
    }

    /// The `limit` largest values, descending (ties by key, for stable
    /// output).
    pub fn top(&self, limit: usize) -> Vec<(&Key, f64)> {
        let mut all: Vec<(&Key, f64)> = self.iter().collect();
        let order =
            |a: &(&Key, f64), b: &(&Key, f64)| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0));
        if limit < all.len() {
            if limit == 0 {
                return Vec::new();
            }
            all.select_nth_unstable_by(limit - 1, order);
            all.truncate(limit);
        }
        all.sort_unstable_by(order);
        all
    }

    /// Every key's slots, for a state file.
    pub fn export(&self) -> impl Iterator<Item = KeyRing> + '_ {
        (0..self.keys.len()).map(|i| KeyRing {
            key: self.keys[i].clone(),
            cursor: self.meta[i].cursor,
            last_seen: self.meta[i].last_seen,
            ring: self.slots(i).to_vec(),
            approx: self.meta[i].approx.map(|a| (a.since, a.bound)),
        })
    }

    /// The approximate tier, for a state file; None without one.
    pub fn export_tier(&self) -> Option<TierState> {
        let t = self.tier.as_ref()?;
        Some(TierState {
            error: t.ring.error(),
            by_age: t.ring.by_age().cloned().collect(),
            promotions: t.stats.promotions,
            demotions: t.stats.demotions,
            lines_estimated: t.stats.lines_estimated,
        })
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.find_hashed(self.hash(key), key)
    }

    fn find_hashed(&self, h: u64, key: &[u8]) -> Option<usize> {
        let keys = &self.keys;
        self.index
            .find(h, |&i| keys[i as usize].as_slice() == key)
            .map(|&i| i as usize)
    }

    /// Asks the CPU for the index entries of hash `h` and for the key,
    /// bookkeeping and ring slot `slot` of each position they name: a
    /// lookup of a key of that hash then finds them in the cache. Reads
    /// nothing else.
    fn prefetch(&self, h: u64, slot: usize) {
        let (keys, meta, slots, n) = (&self.keys, &self.meta, &self.slots, self.n);
        self.index.find(h, |&i| {
            let i = i as usize;
            prefetch(keys.as_ptr().wrapping_add(i));
            prefetch(meta.as_ptr().wrapping_add(i));
            prefetch(slots.as_ptr().wrapping_add(i * n + slot));
            false
        });
    }

    fn slots(&self, i: usize) -> &[f64] {
        &self.slots[i * self.n..(i + 1) * self.n]
    }

    /// Appends a key with empty slots current at `index`; its position.
    fn push(&mut self, key: Key, meta: Meta) -> usize {
        let i = self.keys.len();
        let h = self.hash(&key);
        self.keys.push(key);
        self.meta.push(meta);
        self.slots.resize(self.slots.len() + self.n, 0.0);
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.index.insert_unique(h, i as u32, |&j| {
            hasher.hash_one(keys[j as usize].as_slice())
        });
        i
    }

    /// Removes key `i`; the last key takes its position.
    fn remove(&mut self, i: usize) {
        let last = self.keys.len() - 1;
        let h = self.hash(&self.keys[i]);
        if let Ok(e) = self.index.find_entry(h, |&j| j as usize == i) {
            e.remove();
        }
        if i != last {
            let h = self.hash(&self.keys[last]);
            if let Some(p) = self.index.find_mut(h, |&j| j as usize == last) {
                *p = i as u32;
            }
            let n = self.n;
            self.slots.copy_within(last * n..(last + 1) * n, i * n);
        }
        self.keys.swap_remove(i);
        self.meta.swap_remove(i);
        self.slots.truncate(last * self.n);
    }

    /// Clears key `i`'s slots of intervals after its cursor up to `index`:
    /// they still hold values from one ring turn earlier.
    fn advance(&mut self, i: usize, index: u64) {
        let n = self.n as u64;
        let m = &mut self.meta[i];
        if index <= m.cursor {
            return;
        }
        let from = m.cursor + 1;
        let to = index.min(m.cursor + n);
        m.cursor = index;
        let base = i * self.n;
        for j in from..=to {
            self.slots[base + (j % n) as usize] = 0.0;
        }
    }

    /// Gives memory back after a burst of keys has left.
    fn shrink(&mut self) {
        if self.keys.capacity() > 1024 && self.keys.len() < self.keys.capacity() / 4 {
            let keep = self.keys.len() * 2;
            self.keys.shrink_to(keep);
            self.meta.shrink_to(keep);
            self.slots.shrink_to(keep * self.n);
            let (keys, hasher) = (&self.keys, &self.hasher);
            self.index
                .shrink_to(keep, |&j| hasher.hash_one(keys[j as usize].as_slice()));
        }
    }
}

/// Entries of an interval's table whose window memory is asked for before
/// they are added (see [`WindowEngine::apply`]).
const LOOKAHEAD: usize = 16;

/// A hint that the cache line at `p` is read soon; a no-op where the
/// architecture has none here. Never dereferences `p`.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint: it reads nothing and faults on no
    // address, valid or not.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The slot of the interval `age` before interval `index`, in a ring of
/// `n` (an index below `age` is fine: only its place in the ring counts).
fn slot_of(index: u64, age: usize, n: usize) -> usize {
    ((index % n as u64) as usize + n - age % n) % n
}

/// What one rotation did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ApplyReport {
    /// Per rule: lines refused because the window was full and the rule
    /// has no approximate tier.
    pub overflow_lines: Vec<u64>,
    /// Per rule: of those, the lines the rule owned ([`crate::snapshot::Cell::owned`]),
    /// which leave the points.
    pub refused_owned: Vec<ByPath<u64>>,
    /// Per rule: keys removed because their window emptied.
    pub expired_keys: Vec<u64>,
    /// Per rule: keys promoted from the sketch into the exact table.
    pub promoted: Vec<u64>,
    /// Per rule: exact keys moved to the sketch to make room.
    pub demoted: Vec<u64>,
}

/// The sliding windows of all rules.
#[derive(Debug)]
pub struct WindowEngine {
    n: usize,
    rules: Vec<RuleWindow>,
    current: Option<u64>,
    /// The lists of the last interval applied, emptied (see [`Spare`]).
    spare: Spare,
}

impl WindowEngine {
    /// A window of `intervals` slots for rules with these max_keys.
    pub fn new(intervals: usize, max_keys: impl IntoIterator<Item = usize>) -> WindowEngine {
        assert!(intervals > 0);
        WindowEngine {
            n: intervals,
            rules: max_keys
                .into_iter()
                .map(|m| RuleWindow::empty(intervals, m))
                .collect(),
            current: None,
            spare: Spare::default(),
        }
    }

    /// The lists of the last interval applied, emptied, for the next
    /// interval's sources to fill.
    pub fn take_spare(&mut self) -> Spare {
        std::mem::take(&mut self.spare)
    }

    /// The last interval applied: the window ends where it ends.
    pub fn current(&self) -> Option<u64> {
        self.current
    }

    pub fn intervals(&self) -> usize {
        self.n
    }

    pub fn rule(&self, i: usize) -> &RuleWindow {
        &self.rules[i]
    }

    pub fn rules(&self) -> &[RuleWindow] {
        &self.rules
    }

    /// Rearranges the rules after a reload: new rule `j` takes over the
    /// window of old rule `keep[j]` (its counts go on), or starts empty.
    pub fn remap(&mut self, keep: &[Option<usize>], max_keys: &[usize]) {
        let mut old: Vec<Option<RuleWindow>> = std::mem::take(&mut self.rules)
            .into_iter()
            .map(Some)
            .collect();
        let n = self.n;
        self.rules = keep
            .iter()
            .zip(max_keys)
            .map(|(k, &m)| {
                let mut w = k
                    .and_then(|i| old.get_mut(i).and_then(Option::take))
                    .unwrap_or_else(|| RuleWindow::empty(n, m));
                w.max_keys = m;
                w
            })
            .collect();
    }

    /// Puts keys back into rule `rule` (from a state file) and sets the
    /// current interval. Keys beyond max_keys, or with a ring of another
    /// length, are skipped; returns how many were restored.
    pub fn import(&mut self, rule: usize, current: u64, keys: Vec<KeyRing>) -> usize {
        let n = self.n;
        self.current = Some(self.current.map_or(current, |c| c.max(current)));
        let Some(r) = self.rules.get_mut(rule) else {
            return 0;
        };
        let mut restored = 0;
        for k in keys {
            if k.ring.len() != n
                || r.len() >= r.max_keys
                || k.last_seen > current
                || r.find(&k.key).is_some()
            {
                continue;
            }
            let meta = Meta {
                cursor: k.cursor.min(current),
                last_seen: k.last_seen,
                sum: k.ring.iter().sum(),
                approx: k.approx.map(|(since, bound)| Approx { since, bound }),
            };
            let i = r.push(k.key, meta);
            r.slots[i * n..(i + 1) * n].copy_from_slice(&k.ring);
            restored += 1;
        }
        restored
    }

    /// Gives rule `rule` an approximate tier as `overflow` says, or none.
    /// A tier already there is kept when its sketch's shape stays (its
    /// estimates go on), and rebuilt empty otherwise.
    pub fn set_overflow(&mut self, rule: usize, overflow: Option<&Overflow>) {
        let n = self.n;
        let Some(r) = self.rules.get_mut(rule) else {
            return;
        };
        let Some(o) = overflow else {
            r.tier = None;
            return;
        };
        let promote_at = o.promote_at.unwrap_or(0.0);
        let ring = SketchRing::new(n, o.error, o.confidence);
        match &mut r.tier {
            Some(t) if t.ring.shape() == ring.shape() && t.ring.error() == o.error => {
                t.promote_at = promote_at;
                t.seeds = o.promote_at.is_some();
            }
            tier => {
                *tier = Some(Tier {
                    ring,
                    promote_at,
                    seeds: o.promote_at.is_some(),
                    stats: TierStats::default(),
                })
            }
        }
    }

    /// Restores rule `rule`'s approximate tier, saved at the window's
    /// current interval (its sketches then slide with the window's slots):
    /// only into a tier of the same shape and window, as its estimates
    /// mean nothing to another. Whether it was restored.
    pub fn import_tier(&mut self, rule: usize, saved: TierState) -> bool {
        let n = self.n;
        let Some(t) = self.rules.get_mut(rule).and_then(|r| r.tier.as_mut()) else {
            return false;
        };
        if saved.by_age.len() != n
            || saved.error != t.ring.error()
            || saved.by_age.iter().any(|s| s.shape() != t.ring.shape())
        {
            return false;
        }
        let Some(ring) = SketchRing::from_ages(saved.error, saved.by_age) else {
            return false;
        };
        t.ring = ring;
        t.stats.promotions = saved.promotions;
        t.stats.demotions = saved.demotions;
        t.stats.lines_estimated = saved.lines_estimated;
        t.stats.error_bound = t.ring.error_bound();
        true
    }

    /// Adds lines refused by an interval table to rule `rule`'s count.
    pub fn add_overflow(&mut self, rule: usize, lines: u64) {
        if let Some(r) = self.rules.get_mut(rule) {
            r.overflow_lines += lines;
        }
    }

    /// Adds a closed interval and slides every rule's window to end with it.
    ///
    /// Every apply slides the window by one interval at least: a snapshot at
    /// or before the current interval (the wall clock stepped back) becomes
    /// the interval after it, so a key leaves `n` applies after its last
    /// line whatever the wall clock did. A snapshot further ahead (the wall
    /// clock jumped) closes the intervals in between as empty, at the cost
    /// of at most `n` of them.
    pub fn apply(&mut self, snap: IntervalSnapshot) -> ApplyReport {
        let index = match self.current {
            Some(cur) if snap.index <= cur => cur + 1,
            _ => snap.index,
        };
        let steps = self.current.map_or(0, |cur| index - cur);
        let n = self.n;
        let mut report = ApplyReport::default();
        let slot = (index % n as u64) as usize;
        for (rule, mut table) in self.rules.iter_mut().zip(snap.rules) {
            rule.overflow_lines += table.overflow_lines;
            if let Some(t) = &mut rule.tier {
                // The sketch's intervals follow the window's: skipped ones
                // close empty, at most a whole ring of them.
                for _ in 0..steps.min(n as u64) {
                    t.ring.rotate();
                }
                t.stats.unnamed_last_interval = 0;
            }
            let mut overflow = 0;
            let mut owned = ByPath::default();
            // Lines an interval table could not name: into the ring.
            let unnamed = table.take_sketch().filter(|(sketch, lines)| {
                let merged = rule.tier.as_mut().is_some_and(|t| {
                    let ok = t.ring.merge_current(sketch);
                    if ok {
                        t.stats.lines_estimated += lines;
                        t.stats.unnamed_last_interval = *lines;
                    }
                    ok
                });
                if !merged {
                    // The tier went, or changed shape, with a reload.
                    overflow += lines;
                }
                merged
            });
            // The heaviest keys of those lines, by name: candidates for
            // promotion as the keys that found no room are.
            let heaviest = if unnamed.is_some() {
                table.take_heaviest()
            } else {
                Vec::new()
            };
            let unnamed_owned = table.sketched_owned;
            if unnamed.is_none() {
                owned.add(unnamed_owned);
            }
            let mut estimated: Vec<Key> = Vec::new();
            let mut entries = table.drain();
            let mut ahead = std::collections::VecDeque::with_capacity(LOOKAHEAD);
            loop {
                // The window's memory of the keys a few entries on is
                // asked for now: each key's lookup is a chain of cache
                // misses (index, key, slots) that would otherwise be
                // waited for one after another.
                while ahead.len() < LOOKAHEAD {
                    let Some((key, cell)) = entries.next() else {
                        break;
                    };
                    let h = rule.hash(&key);
                    rule.prefetch(h, slot);
                    ahead.push_back((h, key, cell));
                }
                let Some((h, key, cell)) = ahead.pop_front() else {
                    break;
                };
                if let Some(i) = rule.find_hashed(h, &key) {
                    rule.advance(i, index);
                    rule.slots[i * n + slot] += cell.value();
                    rule.meta[i].last_seen = index;
                } else if rule.len() < rule.max_keys {
                    let meta = Meta {
                        cursor: index,
                        last_seen: index,
                        sum: 0.0,
                        approx: None,
                    };
                    let past = rule.tier.as_ref().and_then(|t| t.past(&key, cell.value()));
                    let i = rule.push(key, meta);
                    rule.slots[i * n + slot] = cell.value();
                    if let Some((past, bound)) = past {
                        for (age, e) in past.into_iter().enumerate().skip(1) {
                            rule.slots[i * n + slot_of(index, age, n)] = e;
                        }
                        rule.meta[i].approx = Some(Approx {
                            since: index.saturating_sub(1),
                            bound,
                        });
                    }
                } else if let Some(t) = &mut rule.tier {
                    // Counted, approximately: the line stays a point.
                    t.ring.add(&key, cell.value());
                    t.stats.lines_estimated += cell.lines;
                    estimated.push(key);
                } else {
                    overflow += cell.lines;
                    owned.add_owned(cell.owned);
                }
            }
            drop(entries);
            self.spare.put(table.into_list());
            rule.overflow_lines += overflow;
            report.overflow_lines.push(overflow);
            report.refused_owned.push(owned);
            if let Some((sketch, _)) = unnamed {
                rule.add_unnamed(&sketch, index);
            }
            let before = rule.len();
            let mut i = 0;
            while i < rule.len() {
                rule.advance(i, index);
                if index - rule.meta[i].last_seen >= n as u64 {
                    // The last key moves here: look at position i again.
                    rule.remove(i);
                    continue;
                }
                rule.meta[i].sum = rule.slots(i).iter().sum();
                let m = &mut rule.meta[i];
                if m.approx.is_some_and(|a| index - a.since >= n as u64) {
                    m.approx = None;
                }
                i += 1;
            }
            let expired = (before - rule.len()) as u64;
            let (promoted, demoted) = rule.promote(estimated, heaviest, index);
            rule.shrink();
            report.expired_keys.push(expired);
            report.promoted.push(promoted);
            report.demoted.push(demoted);
        }
        self.current = Some(index);
        report
    }
}

impl RuleWindow {
    /// Adds to each exact key, in interval `index`, its estimate in
    /// `sketch`: lines of this interval that a full receive table counted
    /// without their key, any of which may be an exact key's. The estimate
    /// never falls short, so neither does the key's value, which is marked
    /// approximate until the interval leaves the window.
    fn add_unnamed(&mut self, sketch: &Sketch, index: u64) {
        let bound = self.tier.as_ref().map_or(0.0, |t| t.ring.error()) * sketch.total();
        let n = self.n;
        let slot = (index % n as u64) as usize;
        for i in 0..self.len() {
            let e = sketch.estimate(&self.keys[i]);
            if e <= 0.0 {
                continue;
            }
            self.advance(i, index);
            self.slots[i * n + slot] += e;
            // Not last_seen: only a key's own lines keep it in the window.
            let m = &mut self.meta[i];
            m.approx = Some(match m.approx {
                Some(a) => Approx {
                    since: index,
                    bound: a.bound + bound,
                },
                None => Approx {
                    since: index,
                    bound,
                },
            });
        }
    }
}

impl Tier {
    /// A key that finds room in the exact table after its lines went to the
    /// sketch: its estimates for the window's past intervals (index 0, the
    /// current interval, unused) and their error bound, when with `now`
    /// they reach the promotion threshold. Without that, a key that went
    /// to the sketch and then found room (keys left the window) would show
    /// less than its window's value, and could miss its alert.
    fn past(&self, key: &[u8], now: f64) -> Option<(Vec<f64>, f64)> {
        if !self.seeds || self.ring.total() == 0.0 {
            return None;
        }
        let n = self.ring.intervals();
        let mut past = vec![0.0; n];
        for (age, e) in past.iter_mut().enumerate().skip(1) {
            *e = self.ring.estimate_at(key, age);
        }
        let sum: f64 = past.iter().sum();
        (sum > 0.0 && sum + now >= self.promote_at).then(|| (past, self.ring.error_bound()))
    }
}

impl RuleWindow {
    /// Moves into the exact table the keys of `estimated` (whole cells that
    /// went to the sketch in interval `index`) and of `heaviest` (the
    /// heaviest keys of the lines the interval's tables could not name)
    /// whose estimate over the window reaches the promotion threshold,
    /// each in the place of the exact key with the smallest value when the
    /// table is full, which leaves for the sketch. A key is promoted only
    /// over a smaller one, so two keys never trade places back and forth on
    /// noise. Returns the promotions and demotions.
    fn promote(&mut self, estimated: Vec<Key>, heaviest: Vec<Key>, index: u64) -> (u64, u64) {
        // Out of `self` while keys move between the tiers.
        let Some(mut tier) = self.tier.take() else {
            return (0, 0);
        };
        let done = self.promote_with(&mut tier, estimated, heaviest, index);
        self.tier = Some(tier);
        done
    }

    fn promote_with(
        &mut self,
        tier: &mut Tier,
        mut estimated: Vec<Key>,
        heaviest: Vec<Key>,
        index: u64,
    ) -> (u64, u64) {
        estimated.sort_unstable();
        estimated.dedup();
        tier.stats.keys_last_interval = estimated.len() as u64;
        // A key held exactly has its share of the sketch already.
        estimated.extend(heaviest.into_iter().filter(|k| self.find(k).is_none()));
        estimated.sort_unstable();
        estimated.dedup();
        tier.stats.error_bound = tier.ring.error_bound();
        let mut candidates: Vec<(f64, Key)> = estimated
            .into_iter()
            .map(|k| (tier.ring.estimate(&k), k))
            .filter(|(e, _)| *e >= tier.promote_at && *e > 0.0)
            .collect();
        if candidates.is_empty() {
            return (0, 0);
        }
        // Heaviest first; each takes the room left, then the smallest exact
        // key still smaller than it.
        candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let room = self.max_keys.saturating_sub(self.len());
        let need = candidates.len().saturating_sub(room);
        let mut smallest: Vec<(f64, usize)> = self
            .meta
            .iter()
            .enumerate()
            .map(|(i, m)| (m.sum, i))
            .collect();
        let need = need.min(smallest.len());
        if need > 0 && need < smallest.len() {
            smallest.select_nth_unstable_by(need - 1, |a, b| a.0.total_cmp(&b.0));
        }
        smallest.truncate(need);
        smallest.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // Demote first (removal moves the last key into the gap, so by
        // descending position), then promote.
        let mut victims: Vec<usize> = Vec::new();
        let mut promote: Vec<(f64, Key)> = Vec::new();
        let mut next = smallest.into_iter();
        for (e, k) in candidates {
            if promote.len() < room {
                promote.push((e, k));
                continue;
            }
            match next.next() {
                Some((v, i)) if e > v => {
                    victims.push(i);
                    promote.push((e, k));
                }
                _ => break,
            }
        }
        let n = self.n;
        victims.sort_unstable_by(|a, b| b.cmp(a));
        for &i in &victims {
            // Every key was advanced to `index`: its slots are current.
            for age in 0..n {
                let v = self.slots[i * n + slot_of(index, age, n)];
                tier.ring.add_at(&self.keys[i], age, v);
            }
        }
        let demoted = victims.len() as u64;
        for i in victims {
            self.remove(i);
        }
        let bound = tier.ring.error_bound();
        let mut estimates = vec![0.0; n];
        let mut promoted_keys = Vec::with_capacity(promote.len());
        for (_, k) in promote {
            for (age, e) in estimates.iter_mut().enumerate() {
                *e = tier.ring.estimate_at(&k, age);
            }
            promoted_keys.push((k, estimates.clone()));
        }
        let promoted = promoted_keys.len() as u64;
        tier.stats.promotions += promoted;
        tier.stats.demotions += demoted;
        tier.stats.error_bound = bound;
        for (k, est) in promoted_keys {
            let meta = Meta {
                cursor: index,
                last_seen: index,
                sum: est.iter().sum(),
                approx: Some(Approx {
                    since: index,
                    bound,
                }),
            };
            let i = self.push(k, meta);
            for (age, e) in est.into_iter().enumerate() {
                self.slots[i * n + slot_of(index, age, n)] = e;
            }
        }
        (promoted, demoted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::from_values;
    use crate::snapshot::Cell;

    const N: usize = 12;

    fn snap(index: u64, entries: &[(&str, f64)]) -> IntervalSnapshot {
        let mut s = IntervalSnapshot::empty(index, [100]);
        for (k, v) in entries {
            s.rules[0].add(&from_values(&[k]), Cell::new(*v, 1));
        }
        s
    }

    fn value(w: &WindowEngine, k: &str) -> Option<f64> {
        w.rule(0).value(&from_values(&[k]))
    }

    #[test]
    fn value_is_the_sum_over_the_last_n_intervals() {
        let mut w = WindowEngine::new(N, [100]);
        for i in 0..30u64 {
            w.apply(snap(1000 + i, &[("a", (i + 1) as f64)]));
            // Interval i added i + 1; the window holds the last N of them.
            let hi = i + 1;
            let lo = hi.saturating_sub(N as u64 - 1).max(1);
            let want: u64 = (lo..=hi).sum();
            assert_eq!(value(&w, "a"), Some(want as f64), "after interval {i}");
        }
    }

    #[test]
    fn a_drained_list_comes_back_emptied_for_the_next_interval() {
        let mut w = WindowEngine::new(N, [100]);
        let mut s = IntervalSnapshot::empty(1000, [100]);
        let list = crate::snapshot::Spare::default().take(40, 100);
        let (ptr, cap) = (list.as_ptr(), list.capacity());
        s.rules[0] = crate::snapshot::CountTable::unique_in(100, list);
        s.rules[0].push_unique(&from_values(&["a"]), Cell::new(2.0, 1));
        s.rules[0].push_unique(&from_values(&["b"]), Cell::new(3.0, 1));
        w.apply(s);
        assert_eq!((value(&w, "a"), value(&w, "b")), (Some(2.0), Some(3.0)));
        let mut spare = w.take_spare();
        assert_eq!(spare.len(), 1);
        let again = spare.take(40, 100);
        assert_eq!(
            (again.as_ptr(), again.len(), again.capacity()),
            (ptr, 0, cap)
        );
        assert!(w.take_spare().is_empty(), "handed over once");
    }

    #[test]
    fn key_is_forgotten_one_period_after_its_last_point() {
        let mut w = WindowEngine::new(N, [100]);
        w.apply(snap(100, &[("a", 5.0)]));
        for i in 101..100 + N as u64 {
            w.apply(snap(i, &[]));
            assert_eq!(value(&w, "a"), Some(5.0), "still in the window at {i}");
        }
        let r = w.apply(snap(100 + N as u64, &[]));
        assert_eq!(value(&w, "a"), None);
        assert!(w.rule(0).is_empty());
        assert_eq!(r.expired_keys, [1]);
    }

    #[test]
    fn a_gap_longer_than_the_window_clears_the_ring() {
        let mut w = WindowEngine::new(N, [100]);
        w.apply(snap(10, &[("a", 1.0)]));
        w.apply(snap(11, &[("a", 1.0)]));
        // The daemon was stopped for a long while; the key comes back.
        w.apply(snap(500, &[("a", 7.0)]));
        assert_eq!(value(&w, "a"), Some(7.0));
    }

    #[test]
    fn stale_slots_from_a_ring_turn_ago_are_not_counted() {
        let mut w = WindowEngine::new(3, [100]);
        w.apply(snap(0, &[("a", 1.0)]));
        w.apply(snap(1, &[("a", 2.0)]));
        w.apply(snap(2, &[]));
        assert_eq!(value(&w, "a"), Some(3.0));
        // Interval 3 reuses slot 0 and interval 4 slot 1.
        w.apply(snap(4, &[("a", 10.0)]));
        assert_eq!(value(&w, "a"), Some(10.0));
    }

    #[test]
    fn max_keys_is_enforced_with_counted_overflow() {
        let mut w = WindowEngine::new(N, [2]);
        let r = w.apply(snap(1, &[("a", 1.0), ("b", 1.0), ("c", 1.0)]));
        assert_eq!(w.rule(0).len(), 2);
        assert_eq!(r.overflow_lines, [1]);
        // Once the keys leave (N intervals after interval 1), a new one fits.
        for i in 2..=N as u64 + 1 {
            w.apply(snap(i, &[]));
        }
        assert!(w.rule(0).is_empty());
        w.apply(snap(20, &[("c", 1.0)]));
        assert_eq!(value(&w, "c"), Some(1.0));
        assert_eq!(w.rule(0).overflow_lines, 1);
    }

    #[test]
    fn a_full_window_reports_the_owned_lines_it_refuses_by_path() {
        use crate::snapshot::{ByPath, Path};
        let mut w = WindowEngine::new(N, [1]);
        w.apply(snap(1, &[("a", 1.0)]));
        let mut s = IntervalSnapshot::empty(2, [10]);
        let b = from_values(&["b"]);
        s.rules[0].add(&b, Cell::line(1.0, Path::Userspace, true));
        s.rules[0].add(&b, Cell::line(1.0, Path::Userspace, false));
        s.rules[0].push_unique(&b, Cell::line(1.0, Path::Kernel, true));
        let r = w.apply(s);
        assert_eq!(r.overflow_lines, [3]);
        assert_eq!(
            r.refused_owned,
            [ByPath {
                kernel: 1,
                userspace: 1
            }]
        );
    }

    fn overflow(promote_at: Option<f64>) -> Overflow {
        Overflow {
            error: 0.0005,
            confidence: 0.99,
            promote_at,
            promote_from: crate::config::PromoteFrom::Configured,
        }
    }

    fn lines(index: u64, max_keys: usize, entries: &[(String, u64)]) -> IntervalSnapshot {
        let mut s = IntervalSnapshot::empty(index, [max_keys]);
        for (k, n) in entries {
            let mut c = Cell::line(*n as f64, crate::snapshot::Path::Userspace, true);
            c.lines = *n;
            c.owned.userspace = *n as u32;
            s.rules[0].add(&from_values(&[k]), c);
        }
        s
    }

    #[test]
    fn lines_a_full_interval_table_could_not_name_still_count() {
        let mut w = WindowEngine::new(N, [2]);
        w.set_overflow(0, Some(&overflow(Some(500.0))));
        let shape = Some(crate::sketch::Shape::for_bound(0.0005, 0.99));
        let (a, b, heavy) = (
            from_values(&["a"]),
            from_values(&["b"]),
            from_values(&["h"]),
        );
        let one = |owner| Cell::line(1.0, crate::snapshot::Path::Userspace, owner);
        let mut s = IntervalSnapshot::empty(1, [2]);
        s.rules[0].add(&a, one(true));
        s.rules[0].add(&b, one(true));
        w.apply(s);
        // A receive table of the next interval fills with two other keys:
        // the heavy key's 600 lines and 10 of a's go to its sketch, counted.
        let mut s = IntervalSnapshot::empty(2, [2]);
        s.rules[0] = crate::snapshot::CountTable::new(2).with_sketch(shape);
        assert!(s.rules[0].add(&from_values(&["c"]), one(true)));
        assert!(s.rules[0].add(&from_values(&["d"]), one(true)));
        for _ in 0..600 {
            assert!(s.rules[0].add(&heavy, one(true)));
        }
        for _ in 0..10 {
            assert!(s.rules[0].add(&a, one(false)));
        }
        let r = w.apply(s);
        assert_eq!(r.overflow_lines, [0]);
        assert_eq!(r.refused_owned, [ByPath::default()]);
        let rw = w.rule(0);
        assert!(rw.in_overflow());
        // c and d, named, went to the ring too.
        assert_eq!(rw.tier_stats().unwrap().lines_estimated, 612);
        // a's own lines went to the sketch: its value has them back, and
        // says it is approximate, within the sketch's bound.
        let (va, bound) = (rw.value(&a).unwrap(), rw.approximate(&a).unwrap());
        assert!(va >= 11.0 && va <= 11.0 + bound, "{va} within {bound}");
        assert!((bound - 0.0005 * 610.0).abs() < 1e-9, "{bound}");
        // None of the heavy key's lines found room, but the table named it
        // among its sketch's heaviest: promoted at once over b, the
        // smallest, with its estimate.
        assert_eq!(
            (r.promoted.as_slice(), r.demoted.as_slice()),
            (&[1][..], &[1][..])
        );
        let v = rw.value(&heavy).expect("promoted");
        let bound = rw.approximate(&heavy).unwrap();
        assert!((600.0..=600.0 + bound).contains(&v), "{v} within {bound}");
        assert!(rw.value(&b).is_none(), "b left for the sketch");
        // Its next lines count exactly.
        let mut s = IntervalSnapshot::empty(3, [2]);
        s.rules[0].add(&heavy, one(true));
        let r = w.apply(s);
        assert_eq!(r.promoted, [0]);
        let v = w.rule(0).value(&heavy).unwrap();
        assert!((601.0..=601.0 + bound).contains(&v), "{v} within {bound}");
    }

    /// The burst behind a flood: every line of the heavy key comes after
    /// 10,000 one-line keys filled a receive table of 100, in one interval.
    /// Named by the table's sketch, it is promoted and alertable at that
    /// interval's rotation, not only when a line of it finds room later.
    #[test]
    fn a_burst_after_a_flood_filled_the_table_is_promoted_at_once() {
        let mut w = WindowEngine::new(N, [100]);
        w.set_overflow(0, Some(&overflow(Some(100.0))));
        let shape = Some(crate::sketch::Shape::for_bound(0.0005, 0.99));
        let one = || Cell::line(1.0, crate::snapshot::Path::Userspace, true);
        let heavy = from_values(&["9.9.9.9", "HEAVY"]);
        // Two receive threads' tables, merged as the interval closes.
        let mut threads = [0, 1].map(|_| crate::snapshot::CountTable::new(100).with_sketch(shape));
        for i in 0..10_000 {
            let k = from_values(&[&format!("10.0.{}.{}", i / 256, i % 256), "flood"]);
            assert!(threads[i % 2].add(&k, one()));
        }
        for i in 0..500 {
            assert!(threads[i % 2].add(&heavy, one()));
        }
        let mut s = IntervalSnapshot::empty(1, [100]);
        for t in threads {
            s.rules[0].merge(t);
        }
        let r = w.apply(s);
        assert_eq!(r.overflow_lines, [0]);
        assert!(r.promoted[0] >= 1, "{:?}", r.promoted);
        let rw = w.rule(0);
        assert_eq!(rw.len(), 100);
        let v = rw.value(&heavy).expect("the burst is promoted");
        let bound = rw.approximate(&heavy).unwrap();
        assert!((500.0..=500.0 + bound).contains(&v), "{v} within {bound}");
        // Among the top keys: the flood's weigh a line or so each.
        let top = rw.top(1);
        assert_eq!(top[0].0, &heavy);
    }

    #[test]
    fn a_heavy_key_behind_a_full_table_is_promoted_not_hidden() {
        // max_keys 1,000 filled by 1,000 one-line keys; then one key of
        // 2,000 lines against a threshold of 500.
        let mut w = WindowEngine::new(N, [1000]);
        w.set_overflow(0, Some(&overflow(Some(500.0))));
        let light: Vec<(String, u64)> = (0..1000).map(|i| (format!("k{i}"), 1)).collect();
        w.apply(lines(1, 1000, &light));
        assert_eq!(w.rule(0).len(), 1000);
        let r = w.apply(lines(2, 1000, &[("heavy".into(), 2000)]));
        assert_eq!(r.overflow_lines, [0], "nothing refused");
        assert_eq!(r.refused_owned, [ByPath::default()]);
        assert_eq!(
            (r.promoted.as_slice(), r.demoted.as_slice()),
            (&[1][..], &[1][..])
        );
        let rw = w.rule(0);
        assert_eq!(rw.len(), 1000, "one light key made room");
        let v = value(&w, "heavy").expect("promoted");
        let bound = rw
            .approximate(&from_values(&["heavy"]))
            .expect("approximate");
        assert!(v >= 2000.0 && v <= 2000.0 + bound, "{v} within {bound}");
        assert!(
            (bound - 0.0005 * 2001.0).abs() < 1e-9,
            "the sketch held its 2,000 lines and the demoted key's one: {bound}"
        );
        assert_eq!(rw.top(1)[0].0, &from_values(&["heavy"]));
        let stats = rw.tier_stats().unwrap();
        assert_eq!(
            (stats.promotions, stats.demotions, stats.lines_estimated),
            (1, 1, 2000)
        );
        assert!(rw.in_overflow());
        // Its next lines count exactly; the estimated interval leaves the
        // window N intervals later, and the key is exact from then on.
        w.apply(lines(3, 1000, &[("heavy".into(), 10)]));
        assert_eq!(value(&w, "heavy"), Some(v + 10.0));
        assert!(!w.rule(0).in_overflow(), "no line went to the sketch");
        for i in 4..2 + N as u64 {
            w.apply(lines(i, 1000, &[]));
            assert!(w.rule(0).approximate(&from_values(&["heavy"])).is_some());
        }
        w.apply(lines(2 + N as u64, 1000, &[]));
        assert_eq!(value(&w, "heavy"), Some(10.0));
        assert_eq!(w.rule(0).approximate(&from_values(&["heavy"])), None);
    }

    #[test]
    fn a_key_is_promoted_when_its_estimate_over_the_window_reaches_the_threshold() {
        let mut w = WindowEngine::new(N, [10]);
        w.set_overflow(0, Some(&overflow(Some(500.0))));
        let light: Vec<(String, u64)> = (0..10).map(|i| (format!("k{i}"), 1)).collect();
        w.apply(lines(1, 10, &light));
        // 200 lines an interval: 200, 400 stay in the sketch, 600 is promoted.
        for i in 2..=3 {
            let r = w.apply(lines(i, 10, &[("slow".into(), 200)]));
            assert_eq!(r.promoted, [0]);
            assert_eq!(value(&w, "slow"), None);
        }
        let r = w.apply(lines(4, 10, &[("slow".into(), 200)]));
        assert_eq!(r.promoted, [1]);
        assert_eq!(
            value(&w, "slow"),
            Some(600.0),
            "a lone key's estimate is exact"
        );
        assert_eq!(w.rule(0).tier_stats().unwrap().lines_estimated, 600);
    }

    #[test]
    fn without_a_threshold_a_key_is_promoted_only_past_the_smallest_exact_key() {
        let mut w = WindowEngine::new(N, [2]);
        w.set_overflow(0, Some(&overflow(None)));
        w.apply(lines(1, 2, &[("a".into(), 3), ("b".into(), 5)]));
        let r = w.apply(lines(2, 2, &[("c".into(), 3)]));
        assert_eq!(r.promoted, [0], "not over a's 3");
        let r = w.apply(lines(3, 2, &[("c".into(), 1)]));
        assert_eq!(
            (r.promoted.as_slice(), r.demoted.as_slice()),
            (&[1][..], &[1][..])
        );
        assert_eq!(value(&w, "c"), Some(4.0));
        assert_eq!(value(&w, "a"), None, "a went to the sketch");
        // a's lines are in the sketch now: one more line brings it back
        // over c's 4.
        let r = w.apply(lines(4, 2, &[("a".into(), 2)]));
        assert_eq!(r.promoted, [1]);
        assert_eq!(value(&w, "a"), Some(5.0));
        assert_eq!(value(&w, "b"), Some(5.0));
        assert_eq!(value(&w, "c"), None);
    }

    #[test]
    fn a_key_that_finds_room_takes_its_estimated_past_when_it_reaches_the_threshold() {
        let n = 4;
        let mut w = WindowEngine::new(n, [2]);
        w.set_overflow(0, Some(&overflow(Some(1000.0))));
        w.apply(lines(1, 2, &[("a".into(), 1), ("b".into(), 1)]));
        // a and b still hold the table when c's 900 lines come; they leave
        // the window in the same rotation.
        let r = w.apply(lines(5, 2, &[("c".into(), 900), ("d".into(), 5)]));
        assert_eq!(
            (r.promoted.as_slice(), r.expired_keys.as_slice()),
            (&[0][..], &[2][..])
        );
        // c finds room with 200 more: 1,100 over the window, not 200.
        w.apply(lines(6, 2, &[("c".into(), 200), ("d".into(), 1)]));
        assert_eq!(value(&w, "c"), Some(1100.0));
        assert!(w.rule(0).approximate(&from_values(&["c"])).is_some());
        // d stays under the threshold: it starts exact, from its new line.
        assert_eq!(value(&w, "d"), Some(1.0));
        assert_eq!(w.rule(0).approximate(&from_values(&["d"])), None);
        // The estimated interval (5) leaves the window at 9.
        w.apply(lines(9, 2, &[]));
        assert_eq!(value(&w, "c"), Some(200.0));
        assert_eq!(w.rule(0).approximate(&from_values(&["c"])), None);
    }

    #[test]
    fn a_reload_keeps_the_sketch_unless_its_shape_changes() {
        let mut w = WindowEngine::new(N, [1]);
        w.set_overflow(0, Some(&overflow(Some(100.0))));
        w.apply(lines(1, 1, &[("a".into(), 1)]));
        w.apply(lines(2, 1, &[("b".into(), 60)]));
        // A new threshold keeps the estimates: b's 60 and 50 more reach it.
        w.remap(&[Some(0)], &[1]);
        w.set_overflow(0, Some(&overflow(Some(110.0))));
        let r = w.apply(lines(3, 1, &[("b".into(), 50)]));
        assert_eq!(r.promoted, [1]);
        assert_eq!(value(&w, "b"), Some(110.0));
        // Another error bound is another sketch: it starts empty.
        let mut other = overflow(Some(110.0));
        other.error = 0.01;
        w.set_overflow(0, Some(&other));
        assert_eq!(w.rule(0).tier_stats(), Some(TierStats::default()));
    }

    #[test]
    fn removing_the_tier_refuses_again() {
        let mut w = WindowEngine::new(N, [1]);
        w.set_overflow(0, Some(&overflow(Some(100.0))));
        w.set_overflow(0, None);
        w.apply(lines(1, 1, &[("a".into(), 1)]));
        let r = w.apply(lines(2, 1, &[("b".into(), 1000)]));
        assert_eq!(r.overflow_lines, [1000]);
        assert!(w.rule(0).tier_stats().is_none());
    }

    #[test]
    fn a_late_snapshot_still_slides_the_window_by_one() {
        let mut w = WindowEngine::new(N, [100]);
        w.apply(snap(50, &[("a", 1.0)]));
        // The wall clock stepped back: intervals 49, 40, 45... come next.
        w.apply(snap(49, &[("a", 2.0)]));
        assert_eq!(w.current(), Some(51));
        assert_eq!(value(&w, "a"), Some(3.0));
        for i in 0..N as u64 - 2 {
            w.apply(snap(40 + i % 3, &[]));
        }
        assert_eq!(w.current(), Some(50 + N as u64 - 1));
        assert_eq!(
            value(&w, "a"),
            Some(3.0),
            "interval 50 is still in the window"
        );
        w.apply(snap(0, &[]));
        assert_eq!(value(&w, "a"), Some(2.0), "interval 50 left, 51 is in");
        let r = w.apply(snap(1, &[]));
        assert_eq!(r.expired_keys, [1], "gone N applies after its last line");
        assert!(w.rule(0).is_empty());
    }

    #[test]
    fn a_jump_forward_closes_the_skipped_intervals_as_empty() {
        let mut w = WindowEngine::new(N, [100]);
        w.apply(snap(50, &[("a", 1.0)]));
        w.apply(snap(51, &[("b", 1.0)]));
        // N - 1 intervals skipped: b's line is still in the window, a's not.
        w.apply(snap(51 + N as u64 - 1, &[("c", 1.0)]));
        assert_eq!(value(&w, "a"), None);
        assert_eq!(value(&w, "b"), Some(1.0));
        // Ten minutes skipped: only what the snapshot brought is left.
        let r = w.apply(snap(51 + N as u64 - 1 + 120, &[("d", 4.0)]));
        assert_eq!(r.expired_keys, [2]);
        assert_eq!(w.rule(0).len(), 1);
        assert_eq!(value(&w, "d"), Some(4.0));
    }

    #[test]
    fn remap_keeps_the_windows_of_rules_that_stay() {
        let mut w = WindowEngine::new(N, [100, 100]);
        let mut s = snap(1, &[("a", 5.0)]);
        s.rules.push(crate::snapshot::CountTable::new(100));
        s.rules[1].add(&from_values(&["b"]), Cell::new(7.0, 1));
        w.apply(s);
        // Old rule 1 becomes rule 0; rule 1 is new.
        w.remap(&[Some(1), None], &[50, 100]);
        assert_eq!(w.rule(0).value(&from_values(&["b"])), Some(7.0));
        assert!(w.rule(1).is_empty());
        assert_eq!(w.current(), Some(1));
    }

    /// The same lines, drained from the kernel as one exact sum per
    /// interval or added line by line in userspace (in another order),
    /// give the window the same values, also past i64 and 2^53.
    #[test]
    fn sums_read_the_same_whichever_path_counted_them() {
        let big = 999_999_999_999_999i64;
        let lines: Vec<i64> = (0..16_000)
            .map(|i| if i % 5 == 4 { -big } else { big })
            .collect();
        let mut kernel = WindowEngine::new(N, [100]);
        let mut user = WindowEngine::new(N, [100]);
        for i in 0..3u64 {
            let exact: i128 = lines.iter().map(|v| *v as i128).sum::<i128>() + i as i128;
            assert!(exact > i64::MAX as i128);
            let mut k = IntervalSnapshot::empty(i, [100]);
            k.rules[0].add(&from_values(&["a"]), Cell::from_exact(exact, 16_001));
            kernel.apply(k);
            let mut u = IntervalSnapshot::empty(i, [100]);
            for v in lines.iter().rev().chain([&(i as i64)]) {
                u.rules[0].add(&from_values(&["a"]), Cell::new(*v as f64, 1));
            }
            user.apply(u);
            assert_eq!(
                kernel
                    .rule(0)
                    .value(&from_values(&["a"]))
                    .unwrap()
                    .to_bits(),
                user.rule(0).value(&from_values(&["a"])).unwrap().to_bits(),
                "after interval {i}"
            );
        }
    }

    #[test]
    fn export_and_import_restore_values_and_expiry() {
        let mut w = WindowEngine::new(N, [100]);
        w.apply(snap(10, &[("a", 1.0)]));
        w.apply(snap(11, &[("a", 2.0), ("b", 4.0)]));
        let keys: Vec<KeyRing> = w.rule(0).export().collect();
        let mut back = WindowEngine::new(N, [100]);
        assert_eq!(back.import(0, 11, keys), 2);
        assert_eq!(value(&back, "a"), Some(3.0));
        assert_eq!(back.current(), Some(11));
        // Restored slots slide out on time: interval 10 leaves first, and
        // the keys leave N intervals after their last point (11).
        for i in 12..=10 + N as u64 {
            back.apply(snap(i, &[]));
        }
        assert_eq!(value(&back, "a"), Some(2.0));
        assert_eq!(value(&back, "b"), Some(4.0));
        back.apply(snap(11 + N as u64, &[]));
        assert!(back.rule(0).is_empty());
    }

    #[test]
    fn the_tier_and_approximate_keys_survive_export_and_import() {
        let mut w = WindowEngine::new(N, [2]);
        w.set_overflow(0, Some(&overflow(Some(500.0))));
        w.apply(lines(1, 2, &[("a".into(), 1), ("b".into(), 1)]));
        w.apply(lines(2, 2, &[("heavy".into(), 600), ("c".into(), 3)]));
        let heavy = from_values(&["heavy"]);
        let (v, bound) = (value(&w, "heavy").unwrap(), w.rule(0).approximate(&heavy));
        assert!(bound.is_some(), "promoted, approximate");
        let keys: Vec<KeyRing> = w.rule(0).export().collect();
        let tier = w.rule(0).export_tier().unwrap();
        let mut back = WindowEngine::new(N, [2]);
        back.set_overflow(0, Some(&overflow(Some(500.0))));
        assert_eq!(back.import(0, 2, keys), 2);
        assert!(back.import_tier(0, tier.clone()));
        assert_eq!(value(&back, "heavy"), Some(v));
        assert_eq!(back.rule(0).approximate(&heavy), bound);
        let c = from_values(&["c"]);
        assert_eq!(back.rule(0).estimate(&c), w.rule(0).estimate(&c));
        // The totals come back; the last interval's keys are the next's.
        let totals = TierStats {
            keys_last_interval: 0,
            ..w.rule(0).tier_stats().unwrap()
        };
        assert_eq!(back.rule(0).tier_stats(), Some(totals));
        // Both go on alike: the restored sketch slides with the window.
        for i in 3..3 + N as u64 {
            let s = [("c".to_string(), 1)];
            w.apply(lines(i, 2, &s));
            back.apply(lines(i, 2, &s));
            assert_eq!(back.rule(0).estimate(&c), w.rule(0).estimate(&c), "{i}");
        }
        // Another shape or window is not restored.
        let mut other = WindowEngine::new(N, [2]);
        let mut o = overflow(Some(500.0));
        o.error = 0.001;
        other.set_overflow(0, Some(&o));
        assert!(!other.import_tier(0, tier.clone()));
        assert!(!WindowEngine::new(N + 1, [2]).import_tier(0, tier));
    }

    #[test]
    fn top_is_sorted_by_value_then_key_and_limited() {
        let mut w = WindowEngine::new(N, [100]);
        w.apply(snap(1, &[("a", 1.0), ("b", 5.0), ("c", 5.0), ("d", 3.0)]));
        let top: Vec<(Vec<String>, f64)> = w
            .rule(0)
            .top(3)
            .into_iter()
            .map(|(k, v)| (crate::key::to_strings(k), v))
            .collect();
        let s = |x: &str| vec![x.to_string()];
        assert_eq!(top, [(s("b"), 5.0), (s("c"), 5.0), (s("d"), 3.0)]);
        assert_eq!(w.rule(0).top(10).len(), 4);
        assert!(w.rule(0).top(0).is_empty());
    }

    #[test]
    fn matches_a_naive_model_under_random_churn() {
        // Random keys appear and go silent over 400 intervals with gaps; every
        // key's value must equal the plain sum of what it got in the last N
        // intervals, and no other key may be held.
        let mut w = WindowEngine::new(N, [10_000]);
        let mut rng = toptraffic_loadgen::Rng::new(42);
        let mut history: Vec<(u64, String, f64)> = Vec::new();
        let mut index = 1000u64;
        for _ in 0..400 {
            index += 1 + rng.below(3) as u64;
            let mut entries = Vec::new();
            for _ in 0..rng.below(40) {
                let k = format!("k{}", rng.below(120));
                let v = (1 + rng.below(9)) as f64;
                entries.push((k.clone(), v));
                history.push((index, k, v));
            }
            let refs: Vec<(&str, f64)> = entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            w.apply(snap(index, &refs));
            let mut want: std::collections::BTreeMap<String, f64> = Default::default();
            for (i, k, v) in &history {
                if index - i < N as u64 {
                    *want.entry(k.clone()).or_default() += v;
                }
            }
            let got: std::collections::BTreeMap<String, f64> = w
                .rule(0)
                .iter()
                .map(|(k, v)| (crate::key::to_strings(k)[0].clone(), v))
                .collect();
            assert_eq!(got, want, "at interval {index}");
            for (k, v) in &want {
                assert_eq!(value(&w, k), Some(*v));
            }
        }
    }

    #[test]
    fn hours_of_churn_keep_state_bounded() {
        // 2 hours of 5 s rotations; each interval brings 50 new keys and
        // repeats 50 old ones: state never exceeds what the window holds.
        let mut w = WindowEngine::new(N, [100_000]);
        let mut max_len = 0;
        for i in 0..1440u64 {
            let mut s = IntervalSnapshot::empty(i, [100_000]);
            for j in 0..50 {
                let one = Cell::new(1.0, 1);
                s.rules[0].add(&from_values(&[format!("new{i}-{j}")]), one);
                s.rules[0].add(&from_values(&[format!("old{j}")]), one);
            }
            w.apply(s);
            max_len = max_len.max(w.rule(0).len());
        }
        assert_eq!(max_len, 50 * N + 50);
        assert_eq!(value(&w, "old7"), Some(N as f64));
    }
}
