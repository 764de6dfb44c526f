//! Ring of interval snapshots that yields each key's value over the window.
//!
//! Each key holds one slot per interval of the window (period / every). After
//! interval `i` is applied, a key's value is the sum of its slots for
//! intervals `i - n + 1 ..= i`; a key whose slots are all out of the window is
//! removed in the same pass, so state lives only while the window holds
//! something for the key. Time enters only as interval indices: the engine
//! never reads a clock.

use crate::key::Key;
use crate::snapshot::IntervalSnapshot;

type Map = hashbrown::HashMap<Key, KeyState, ahash::RandomState>;

#[derive(Debug)]
struct KeyState {
    /// Values per interval, at `index % n`.
    ring: Box<[f64]>,
    /// Slots are current up to this interval.
    cursor: u64,
    /// The last interval that added to this key.
    last_seen: u64,
    /// Sum of the ring, recomputed (not adjusted) after each rotation so that
    /// float error cannot build up.
    sum: f64,
}

impl KeyState {
    fn new(n: usize, index: u64) -> KeyState {
        KeyState {
            ring: vec![0.0; n].into_boxed_slice(),
            cursor: index,
            last_seen: index,
            sum: 0.0,
        }
    }

    /// Clears the slots of intervals after the cursor up to `index`: they
    /// still hold values from one ring turn earlier.
    fn advance(&mut self, index: u64) {
        let n = self.ring.len() as u64;
        if index <= self.cursor {
            return;
        }
        let from = self.cursor + 1;
        let to = index.min(self.cursor + n);
        for j in from..=to {
            self.ring[(j % n) as usize] = 0.0;
        }
        self.cursor = index;
    }
}

/// One rule's keys over the window.
#[derive(Debug)]
pub struct RuleWindow {
    keys: Map,
    max_keys: usize,
    /// Lines of keys refused because the window held max_keys keys (total).
    pub overflow_lines: u64,
}

impl RuleWindow {
    /// Keys with something in the window.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Each key's value over the window.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, f64)> {
        self.keys.iter().map(|(k, s)| (k, s.sum))
    }

    pub fn value(&self, key: &[u8]) -> Option<f64> {
        self.keys.get(key).map(|s| s.sum)
    }
}

/// What one rotation did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ApplyReport {
    /// Per rule: lines refused because the window was full.
    pub overflow_lines: Vec<u64>,
    /// Per rule: keys removed because their window emptied.
    pub expired_keys: Vec<u64>,
}

/// The sliding windows of all rules.
#[derive(Debug)]
pub struct WindowEngine {
    n: usize,
    rules: Vec<RuleWindow>,
    current: Option<u64>,
}

impl WindowEngine {
    /// A window of `intervals` slots for rules with these max_keys.
    pub fn new(intervals: usize, max_keys: impl IntoIterator<Item = usize>) -> WindowEngine {
        assert!(intervals > 0);
        WindowEngine {
            n: intervals,
            rules: max_keys
                .into_iter()
                .map(|m| RuleWindow {
                    keys: Map::default(),
                    max_keys: m,
                    overflow_lines: 0,
                })
                .collect(),
            current: None,
        }
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

    /// Adds a closed interval and slides every rule's window to end with it.
    /// A snapshot older than the current interval (the clock stepped back) is
    /// folded into the current one rather than rewriting the past.
    pub fn apply(&mut self, snap: IntervalSnapshot) -> ApplyReport {
        let index = match self.current {
            Some(cur) if snap.index <= cur => cur,
            _ => snap.index,
        };
        let n = self.n;
        let mut report = ApplyReport::default();
        for (rule, table) in self.rules.iter_mut().zip(snap.rules) {
            let mut overflow = 0;
            for (key, cell) in table {
                if let Some(st) = rule.keys.get_mut(&key) {
                    st.advance(index);
                    st.ring[(index % n as u64) as usize] += cell.value;
                    st.last_seen = index;
                } else if rule.keys.len() < rule.max_keys {
                    let mut st = KeyState::new(n, index);
                    st.ring[(index % n as u64) as usize] = cell.value;
                    rule.keys.insert(key, st);
                } else {
                    overflow += cell.lines;
                }
            }
            rule.overflow_lines += overflow;
            report.overflow_lines.push(overflow);
            let before = rule.keys.len();
            rule.keys.retain(|_, st| {
                st.advance(index);
                st.sum = st.ring.iter().sum();
                index - st.last_seen < n as u64
            });
            report.expired_keys.push((before - rule.keys.len()) as u64);
        }
        self.current = Some(index);
        report
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
            s.rules[0].add(
                &from_values(&[k]),
                Cell {
                    value: *v,
                    lines: 1,
                },
            );
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
    fn late_snapshot_is_folded_into_the_current_interval() {
        let mut w = WindowEngine::new(N, [100]);
        w.apply(snap(50, &[("a", 1.0)]));
        w.apply(snap(49, &[("a", 2.0)]));
        assert_eq!(w.current(), Some(50));
        assert_eq!(value(&w, "a"), Some(3.0));
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
                let one = Cell {
                    value: 1.0,
                    lines: 1,
                };
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
