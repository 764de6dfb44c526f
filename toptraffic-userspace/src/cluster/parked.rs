//! A node that stops cleanly leaves its window behind in Redis: the lines
//! it counted happened, and they stay in the cluster's values until they
//! leave the window, as they would on one central counter. Without this, a
//! rolling restart takes each node's share out of every key while the node
//! is away: a key its share kept over a threshold recovers and alerts
//! again. While a node is parked the lease holder posts its values in the
//! exchange for it (each key's saved slots, slid to the interval being
//! exchanged); once the node beats again it posts its own (restored from
//! its state file, the same slots) and the parked window is dropped. A
//! parked window is gone a window after the stop, when all of its slots
//! would have left the window anyway.
//!
//! The window travels in the state file's format (`persist`), with only
//! the cluster rules' keys.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::key::Key;
use crate::persist::{self, SavedState};
use crate::snapshot::Intervals;

/// A stopped node's window, as the lease holder reads it back.
#[derive(Debug)]
pub struct Parked {
    every: Duration,
    intervals: u64,
    rules: HashMap<String, Keys>,
}

/// A rule's keys: key i, the interval its slots are current up to, and its
/// slots at `i * n .. (i + 1) * n` (one allocation for all of them).
#[derive(Debug, Default)]
struct Keys {
    keys: Vec<Key>,
    cursors: Vec<u64>,
    slots: Vec<f64>,
}

impl Parked {
    /// Reads a parked window written by a node of the same window shape.
    pub fn decode(bytes: &[u8], every: Duration, intervals: usize) -> Result<Parked, String> {
        let state = persist::decode(bytes)?;
        if state.every != every || state.intervals != intervals {
            return Err("it was written for another window".into());
        }
        Ok(Parked::of(state))
    }

    fn of(state: SavedState) -> Parked {
        let n = state.intervals;
        let rules = state.rules.into_iter().map(|r| {
            let mut keys = Keys::default();
            // A ring of another length is not this window's (decode
            // checked the shape; a key's ring is its own).
            for k in r.keys.into_iter().filter(|k| k.ring.len() == n) {
                keys.keys.push(k.key);
                keys.cursors.push(k.cursor);
                keys.slots.extend_from_slice(&k.ring);
            }
            (r.name, keys)
        });
        Parked {
            every: state.every,
            intervals: n as u64,
            rules: rules.collect(),
        }
    }

    /// Rule `rule`'s keys with something left in the window that ends at
    /// `window_end`, with their values there.
    pub fn values(&self, rule: &str, window_end: SystemTime) -> HashMap<Vec<u8>, f64> {
        let Some(keys) = self.rules.get(rule) else {
            return HashMap::new();
        };
        // The interval that ends at window_end.
        let Some(last) = Intervals::new(self.every)
            .index_at(window_end)
            .checked_sub(1)
        else {
            return HashMap::new();
        };
        let n = self.intervals as usize;
        (0..keys.keys.len())
            .filter_map(|i| {
                let ring = &keys.slots[i * n..(i + 1) * n];
                let v = slid(keys.cursors[i], ring, last, self.intervals);
                (v != 0.0).then(|| (keys.keys[i].to_vec(), v))
            })
            .collect()
    }
}

/// A key's value over the window whose last interval is `last`, from its
/// slots current up to interval `cursor` (slot `j % n` holds interval j,
/// for j in `cursor - n + 1 ..= cursor`; nothing was counted after
/// `cursor`).
fn slid(cursor: u64, ring: &[f64], last: u64, n: u64) -> f64 {
    if ring.len() as u64 != n || n == 0 {
        return 0.0;
    }
    // Not earlier than the window that was saved: the node's own intervals
    // are never taken back.
    let last = last.max(cursor);
    let first = (last + 1)
        .saturating_sub(n)
        .max((cursor + 1).saturating_sub(n));
    (first..=cursor).map(|j| ring[(j % n) as usize]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::SavedRule;
    use crate::window::KeyRing;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_keys_slots_leave_the_window_one_interval_at_a_time() {
        // n = 4; the key counted 1, 2, 3, 4 in intervals 10..=13.
        let ring = [1.0, 2.0, 3.0, 4.0]; // slot j % 4: 12 -> 0, 13 -> 1, 10 -> 2, 11 -> 3
        let ring = [ring[2], ring[3], ring[0], ring[1]];
        assert_eq!(slid(13, &ring, 13, 4), 10.0);
        assert_eq!(slid(13, &ring, 14, 4), 9.0);
        assert_eq!(slid(13, &ring, 15, 4), 7.0);
        assert_eq!(slid(13, &ring, 16, 4), 4.0);
        assert_eq!(slid(13, &ring, 17, 4), 0.0);
        assert_eq!(slid(13, &ring, 1000, 4), 0.0);
        // Never more than the saved window.
        assert_eq!(slid(13, &ring, 5, 4), 10.0);
        // A ring of another length is not this window's.
        assert_eq!(slid(13, &ring[..3], 13, 4), 0.0);
    }

    #[test]
    fn a_parked_window_reads_back_slid_to_the_interval_exchanged() {
        let every = Duration::from_secs(5);
        let at = |i: u64| UNIX_EPOCH + every * (i as u32 + 1);
        let state = SavedState {
            saved_at: at(13),
            every,
            intervals: 4,
            current: Some(13),
            rules: vec![SavedRule {
                name: "top".into(),
                grouping: String::new(),
                overflow_lines: 0,
                keys: vec![
                    KeyRing {
                        key: Key::from(&b"a"[..]),
                        cursor: 13,
                        last_seen: 13,
                        // intervals 12, 13, 10, 11
                        ring: vec![3.0, 4.0, 1.0, 2.0],
                        approx: None,
                    },
                    KeyRing {
                        key: Key::from(&b"b"[..]),
                        cursor: 11,
                        last_seen: 11,
                        ring: vec![0.0, 0.0, 0.0, 5.0],
                        approx: None,
                    },
                ],
                alerts: Vec::new(),
                tier: None,
            }],
        };
        let bytes = persist::encode(&state);
        let p = Parked::decode(&bytes, every, 4).unwrap();
        let v = p.values("top", at(13));
        assert_eq!(v[&b"a"[..]], 10.0);
        assert_eq!(v[&b"b"[..]], 5.0);
        let v = p.values("top", at(15));
        assert_eq!(v[&b"a"[..]], 7.0);
        assert!(!v.contains_key(&b"b"[..]), "b's interval 11 left at 15");
        assert!(p.values("top", at(17)).is_empty());
        assert!(p.values("other", at(13)).is_empty());
        assert!(Parked::decode(&bytes, every * 2, 4).is_err());
        assert!(Parked::decode(&bytes, every, 12).is_err());
        assert!(Parked::decode(&bytes[..bytes.len() - 1], every, 4).is_err());
    }
}
