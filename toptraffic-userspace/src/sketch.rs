//! Count-Min sketches with conservative update: a fixed-size estimate of
//! every key's amount, never below the truth.
//!
//! A [`Sketch`] holds `depth` rows of `width` counters; a key adds to one
//! counter a row and is estimated by the smallest of its counters. With
//! `width = ⌈e / error⌉` and `depth = ⌈ln(1 / (1 - confidence))⌉`, an
//! estimate exceeds the truth by more than `error × total` with probability
//! at most `1 - confidence` (Cormode and Muthukrishnan, 2005). Conservative
//! update (raise each counter only as far as the new estimate) keeps that
//! bound and makes the over-estimate much smaller in practice.
//!
//! A [`SketchRing`] keeps one sketch per interval of a window, so the
//! window's estimate is the sum of the last `n` intervals' estimates and a
//! rotation forgets the oldest interval whole. Every sketch of a ring uses
//! the same hash family: the sum of a key's counters in one row over the
//! ring is a Count-Min row of the whole window, so the bound holds for the
//! window's total with the same confidence.
//!
//! The hash is this module's own, seeded with constants: estimates are the
//! same on every run and every machine.

/// A sketch's shape from the error bound it must keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Counters a row.
    pub width: usize,
    /// Rows (independent hashes).
    pub depth: usize,
}

impl Shape {
    /// The smallest shape that over-estimates by at most `error` × the
    /// total with probability `confidence`. `error` in (0, 1), `confidence`
    /// in (0, 1); the config checks both.
    pub fn for_bound(error: f64, confidence: f64) -> Shape {
        assert!(error > 0.0 && error < 1.0, "error {error} not in (0, 1)");
        assert!(
            confidence > 0.0 && confidence < 1.0,
            "confidence {confidence} not in (0, 1)"
        );
        let width = (std::f64::consts::E / error).ceil() as usize;
        let depth = (1.0 / (1.0 - confidence)).ln().ceil().max(1.0) as usize;
        Shape { width, depth }
    }

    /// Counters a sketch of this shape holds.
    pub fn counters(self) -> usize {
        self.width * self.depth
    }
}

/// Seeds of the two base hashes; row `r` uses `h1 + r × h2` (Kirsch and
/// Mitzenmacher), as good as `depth` independent hashes for Count-Min.
const SEED1: u64 = 0x243f_6a88_85a3_08d3;
const SEED2: u64 = 0x1319_8a2e_0370_7344;

/// A 64-bit hash of `bytes`, 8 bytes a step, finished with MurmurHash3's
/// mixer. Portable: the same on every machine and build.
fn hash(bytes: &[u8], seed: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(last))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    fmix64(h)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Where a key lands: one counter index a row.
#[derive(Debug, Clone, Copy)]
struct Cells {
    h1: u64,
    h2: u64,
}

impl Cells {
    fn of(key: &[u8]) -> Cells {
        // A zero step would put the key in the same column of every row.
        Cells {
            h1: hash(key, SEED1),
            h2: hash(key, SEED2) | 1,
        }
    }

    /// The counter of row `r` in a sketch of `shape`, as an index into
    /// its `depth × width` counters.
    fn index(self, shape: Shape, r: usize) -> usize {
        let h = self.h1.wrapping_add((r as u64).wrapping_mul(self.h2));
        r * shape.width + (h % shape.width as u64) as usize
    }
}

/// One Count-Min sketch with conservative update, over nonnegative amounts.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    shape: Shape,
    counters: Vec<f64>,
    /// Sum of every amount added: the error bound's base.
    total: f64,
}

impl Sketch {
    pub fn new(shape: Shape) -> Sketch {
        Sketch {
            shape,
            counters: vec![0.0; shape.counters()],
            total: 0.0,
        }
    }

    /// Adds `amount` to `key` and returns the key's estimate after it.
    /// Amounts that are not finite and positive are ignored: a sketch
    /// cannot take anything back.
    pub fn add(&mut self, key: &[u8], amount: f64) -> f64 {
        self.add_cells(Cells::of(key), amount)
    }

    fn add_cells(&mut self, cells: Cells, amount: f64) -> f64 {
        if !(amount.is_finite() && amount > 0.0) {
            return self.estimate_cells(cells);
        }
        self.total += amount;
        // Conservative update: no counter of the key needs to exceed its
        // new estimate, so raise only those below it.
        let target = self.estimate_cells(cells) + amount;
        for r in 0..self.shape.depth {
            let c = &mut self.counters[cells.index(self.shape, r)];
            if *c < target {
                *c = target;
            }
        }
        target
    }

    /// `key`'s amount plus at most the bound (with the shape's confidence);
    /// never less than its amount.
    pub fn estimate(&self, key: &[u8]) -> f64 {
        self.estimate_cells(Cells::of(key))
    }

    fn estimate_cells(&self, cells: Cells) -> f64 {
        (0..self.shape.depth)
            .map(|r| self.counters[cells.index(self.shape, r)])
            .fold(f64::INFINITY, f64::min)
    }

    /// Sum of every amount added since the sketch was cleared.
    pub fn total(&self) -> f64 {
        self.total
    }

    pub fn clear(&mut self) {
        self.counters.fill(0.0);
        self.total = 0.0;
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Its total and counters, as a state file keeps them.
    pub fn parts(&self) -> (f64, &[f64]) {
        (self.total, &self.counters)
    }

    /// A sketch from [`Sketch::parts`]; None when the counters do not fit
    /// the shape.
    pub fn from_parts(shape: Shape, total: f64, counters: Vec<f64>) -> Option<Sketch> {
        (counters.len() == shape.counters()).then_some(Sketch {
            shape,
            counters,
            total,
        })
    }

    /// Adds `other`'s counts (another thread's, same interval); false,
    /// and nothing added, when its shape differs. Every counter of a key
    /// is at least its amount in each sketch, so in the sum it is at least
    /// the sum of its amounts: the estimate still never falls short.
    pub fn merge(&mut self, other: &Sketch) -> bool {
        if other.shape != self.shape {
            return false;
        }
        for (c, o) in self.counters.iter_mut().zip(&other.counters) {
            *c += o;
        }
        self.total += other.total;
        true
    }
}

/// One sketch per interval of a window: `add` goes to the current
/// interval, `estimate` sums the window, `rotate` starts a new interval in
/// the place of the oldest.
#[derive(Debug, Clone)]
pub struct SketchRing {
    error: f64,
    sketches: Vec<Sketch>,
    current: usize,
}

impl SketchRing {
    /// `intervals` sketches of the shape for `error` at `confidence`.
    pub fn new(intervals: usize, error: f64, confidence: f64) -> SketchRing {
        assert!(intervals > 0);
        let shape = Shape::for_bound(error, confidence);
        SketchRing {
            error,
            sketches: vec![Sketch::new(shape); intervals],
            current: 0,
        }
    }

    /// Bytes a ring of this size holds in counters (what the memory bound
    /// counts).
    pub fn bytes_for(intervals: usize, error: f64, confidence: f64) -> usize {
        intervals * Shape::for_bound(error, confidence).counters() * std::mem::size_of::<f64>()
    }

    pub fn shape(&self) -> Shape {
        self.sketches[0].shape
    }

    /// The error bound's share of the window's amounts.
    pub fn error(&self) -> f64 {
        self.error
    }

    /// Adds `amount` to `key` in the current interval.
    pub fn add(&mut self, key: &[u8], amount: f64) {
        self.sketches[self.current].add(key, amount);
    }

    /// `key`'s amount over the window, plus at most [`Self::error_bound`]
    /// (with the ring's confidence); never less than its amount.
    pub fn estimate(&self, key: &[u8]) -> f64 {
        let cells = Cells::of(key);
        self.sketches.iter().map(|s| s.estimate_cells(cells)).sum()
    }

    /// The most an estimate exceeds the truth, with the ring's confidence:
    /// `error` × everything the window's sketches hold.
    pub fn error_bound(&self) -> f64 {
        self.error * self.total()
    }

    /// Sum of every amount the window's sketches hold.
    pub fn total(&self) -> f64 {
        self.sketches.iter().map(Sketch::total).sum()
    }

    /// Starts a new interval: the oldest is cleared and becomes current.
    pub fn rotate(&mut self) {
        self.current = (self.current + 1) % self.sketches.len();
        self.sketches[self.current].clear();
    }

    /// Adds another sketch of the current interval (what the tables of
    /// one interval could not name); false when its shape differs.
    pub fn merge_current(&mut self, other: &Sketch) -> bool {
        self.sketches[self.current].merge(other)
    }

    /// The interval sketches from the current one back (a state file's
    /// order).
    pub fn by_age(&self) -> impl Iterator<Item = &Sketch> {
        (0..self.sketches.len()).map(|age| &self.sketches[self.at(age)])
    }

    /// A ring of `error`'s sketches given from the current interval back
    /// ([`SketchRing::by_age`]); None when there are none or their shapes
    /// differ.
    pub fn from_ages(error: f64, by_age: Vec<Sketch>) -> Option<SketchRing> {
        let shape = by_age.first()?.shape;
        if by_age.iter().any(|s| s.shape != shape) {
            return None;
        }
        let n = by_age.len();
        let mut sketches = by_age.clone();
        for (age, s) in by_age.into_iter().enumerate() {
            sketches[(n - age) % n] = s;
        }
        Some(SketchRing {
            error,
            sketches,
            current: 0,
        })
    }

    /// Intervals in the ring.
    pub fn intervals(&self) -> usize {
        self.sketches.len()
    }

    /// The sketch `age` intervals before the current one (0: current).
    fn at(&self, age: usize) -> usize {
        let n = self.sketches.len();
        (self.current + n - age % n) % n
    }

    /// `key`'s estimate in the interval `age` before the current one.
    pub fn estimate_at(&self, key: &[u8], age: usize) -> f64 {
        self.sketches[self.at(age)].estimate(key)
    }

    /// Adds `amount` to `key` in the interval `age` before the current one
    /// (a key leaving an exact table takes its past intervals along).
    pub fn add_at(&mut self, key: &[u8], age: usize, amount: f64) {
        let i = self.at(age);
        self.sketches[i].add(key, amount);
    }

    /// What the error bound was over the intervals `0..ages` before the
    /// current one: `error` × their totals.
    pub fn error_bound_over(&self, ages: usize) -> f64 {
        let n = self.sketches.len();
        self.error
            * (0..ages.min(n))
                .map(|a| self.sketches[self.at(a)].total())
                .sum::<f64>()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        for s in &mut self.sketches {
            s.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proptest_config::config;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn shape_follows_the_error_bound() {
        let s = Shape::for_bound(0.0005, 0.99);
        assert_eq!(s.width, 5437, "⌈e / 0.0005⌉");
        assert_eq!(s.depth, 5, "⌈ln 100⌉");
        assert_eq!(Shape::for_bound(0.01, 0.5).depth, 1);
        assert_eq!(SketchRing::bytes_for(12, 0.0005, 0.99), 12 * 5437 * 5 * 8);
    }

    #[test]
    fn hash_is_fixed() {
        // A changed hash would change every estimate: the values are pinned.
        assert_eq!(hash(b"", SEED1), hash(b"", SEED1));
        assert_ne!(hash(b"a", SEED1), hash(b"a", SEED2));
        assert_ne!(hash(b"abcdefgh", SEED1), hash(b"abcdefgh\0", SEED1));
        assert_eq!(hash(b"10.0.0.1", SEED1), 6_659_364_142_136_941_120);
    }

    #[test]
    fn a_lone_key_is_exact() {
        let mut s = Sketch::new(Shape::for_bound(0.01, 0.99));
        s.add(b"a", 3.0);
        s.add(b"a", 4.0);
        assert_eq!(s.estimate(b"a"), 7.0);
        assert_eq!(s.estimate(b"b"), 0.0);
        assert_eq!(s.total(), 7.0);
        s.add(b"a", -5.0);
        s.add(b"a", f64::NAN);
        assert_eq!(s.estimate(b"a"), 7.0, "nothing is taken back");
    }

    #[test]
    fn ring_sums_the_window_and_forgets_the_oldest_interval() {
        let mut r = SketchRing::new(3, 0.01, 0.99);
        r.add(b"a", 1.0);
        r.rotate();
        r.add(b"a", 2.0);
        r.rotate();
        r.add(b"a", 4.0);
        assert_eq!(r.estimate(b"a"), 7.0);
        assert_eq!(r.total(), 7.0);
        assert!((r.error_bound() - 0.07).abs() < 1e-12);
        r.rotate();
        assert_eq!(r.estimate(b"a"), 6.0, "the first interval left");
        r.rotate();
        r.rotate();
        assert_eq!(r.estimate(b"a"), 0.0);
        r.add(b"b", 1.0);
        r.clear();
        assert_eq!(r.total(), 0.0);
    }

    #[test]
    fn a_ring_rebuilt_from_its_ages_estimates_the_same() {
        let mut ring = SketchRing::new(4, 0.01, 0.9);
        for i in 0..6u32 {
            ring.add(&i.to_le_bytes(), f64::from(i + 1));
            ring.rotate();
        }
        ring.add(b"now", 3.0);
        let ages: Vec<Sketch> = ring
            .by_age()
            .map(|s| {
                let (total, counters) = s.parts();
                Sketch::from_parts(s.shape(), total, counters.to_vec()).unwrap()
            })
            .collect();
        let back = SketchRing::from_ages(ring.error(), ages).unwrap();
        for age in 0..4 {
            for k in [&b"now"[..], &3u32.to_le_bytes(), &5u32.to_le_bytes()] {
                assert_eq!(back.estimate_at(k, age), ring.estimate_at(k, age));
            }
        }
        assert_eq!(back.total(), ring.total());
        let wrong = Sketch::from_parts(ring.shape(), 0.0, vec![0.0; 3]);
        assert!(wrong.is_none());
    }

    #[test]
    fn intervals_are_reached_by_age() {
        let mut r = SketchRing::new(3, 0.01, 0.99);
        r.add(b"a", 1.0);
        r.rotate();
        r.add(b"a", 2.0);
        r.add_at(b"b", 1, 5.0);
        assert_eq!(r.estimate_at(b"a", 0), 2.0);
        assert_eq!(r.estimate_at(b"a", 1), 1.0);
        assert_eq!(r.estimate_at(b"a", 2), 0.0);
        assert_eq!(r.estimate_at(b"b", 1), 5.0);
        assert!((r.error_bound_over(1) - 0.02).abs() < 1e-12);
        assert!((r.error_bound_over(5) - r.error_bound()).abs() < 1e-12);
        r.rotate();
        r.rotate();
        assert_eq!(r.estimate(b"b"), 0.0, "b's interval left with a's first");
        assert_eq!(r.estimate_at(b"a", 2), 2.0);
    }

    #[test]
    fn a_heavy_key_among_many_light_ones_is_estimated_within_the_bound() {
        // 20,000 one-line keys and one key of 2,000 lines over 12 intervals.
        let mut r = SketchRing::new(12, 0.0005, 0.99);
        for i in 0..12u32 {
            for j in 0..20_000 / 12 {
                r.add(format!("k{i}-{j}").as_bytes(), 1.0);
            }
            r.add(b"heavy", 2000.0 / 12.0);
            if i < 11 {
                r.rotate();
            }
        }
        let e = r.estimate(b"heavy");
        assert!(e >= 2000.0 - 1e-6);
        assert!(
            e - 2000.0 <= r.error_bound(),
            "{e} vs bound {}",
            r.error_bound()
        );
    }

    /// Keys from a small alphabet so that some repeat, amounts as lines.
    fn stream() -> impl Strategy<Value = Vec<Vec<(u16, u8)>>> {
        prop::collection::vec(prop::collection::vec((0u16..2000, 1u8..20), 0..400), 1..8)
    }

    proptest! {
        #![proptest_config(config(64))]

        #[test]
        fn never_below_the_truth_and_within_the_bound_for_the_confidence(
            intervals in stream(),
            error in 0.002f64..0.05,
            confidence in 0.5f64..0.999,
        ) {
            let n = 4;
            let mut ring = SketchRing::new(n, error, confidence);
            let mut truth: Vec<HashMap<u16, f64>> = Vec::new();
            for (i, lines) in intervals.iter().enumerate() {
                if i > 0 {
                    ring.rotate();
                }
                let mut t = HashMap::new();
                for &(k, a) in lines {
                    ring.add(&k.to_le_bytes(), f64::from(a));
                    *t.entry(k).or_insert(0.0) += f64::from(a);
                }
                truth.push(t);
            }
            let window = &truth[truth.len().saturating_sub(n)..];
            let mut keys: Vec<u16> = window.iter().flat_map(|t| t.keys().copied()).collect();
            keys.sort_unstable();
            keys.dedup();
            let bound = ring.error_bound();
            let mut within = 0;
            for &k in &keys {
                let want: f64 = window.iter().filter_map(|t| t.get(&k)).sum();
                let got = ring.estimate(&k.to_le_bytes());
                prop_assert!(got >= want, "key {k}: {got} < {want}");
                if got - want <= bound {
                    within += 1;
                }
            }
            // Each key is within the bound with probability `confidence`:
            // the keys over it are at most the expected share, three
            // standard deviations of a binomial, and one colliding pair
            // (two keys that share every counter fail together, which a
            // case of a few keys may hit).
            let k = keys.len() as f64;
            let over = k - within as f64;
            let allowed = (1.0 - confidence) * k
                + 3.0 * (k * confidence * (1.0 - confidence)).sqrt()
                + 2.0;
            prop_assert!(
                over <= allowed,
                "{over} of {k} over {bound}, at most {allowed}"
            );
        }
    }
}
