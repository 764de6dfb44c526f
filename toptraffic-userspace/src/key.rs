//! Group keys: a rule's group-by tag values packed into one byte string.
//!
//! The encoding is shared with the kernel programs (see `toptraffic-common`):
//! per group-by tag, a little-endian `u16` length and the unescaped value.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use toptraffic_common::KEY_LEN_PREFIX;

/// Bytes a key holds without a heap allocation: an IPv4 address and a store
/// id of up to 19 digits, or a short IPv6 address and a short id, with their
/// length prefixes. A key is 40 bytes in every table that holds it, so this
/// is a trade: longer keys (a full IPv6 address and an id) cost a heap
/// block besides, and every shorter one saves 24 bytes against room for
/// both.
const INLINE: usize = 38;

/// An owned group key, as held in interval snapshots and the window. Small
/// keys (all the seed's) live inline: no allocation when a key is first
/// counted, drained or copied into a view.
#[derive(Clone)]
pub enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for Key {
    #[inline]
    fn from(v: &[u8]) -> Key {
        if v.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..v.len()].copy_from_slice(v);
            Key::Inline {
                len: v.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(v.into())
        }
    }
}

impl Deref for Key {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Key {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

// Hashes as the byte slice does, so maps keyed by Key are searched by &[u8].
impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", to_strings(self))
    }
}

/// Appends one tag value to a key being built.
#[inline]
pub fn push_value(key: &mut Vec<u8>, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_le_bytes());
    key.extend_from_slice(&value[..len as usize]);
}

/// Appends one tag value given as its unescaped bytes (no allocation).
#[inline]
pub fn push_value_iter(key: &mut Vec<u8>, bytes: impl Iterator<Item = u8>) {
    let at = key.len();
    key.extend_from_slice(&[0; KEY_LEN_PREFIX]);
    key.extend(bytes);
    let len = u16::try_from(key.len() - at - KEY_LEN_PREFIX).unwrap_or(u16::MAX);
    key[at..at + KEY_LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
    key.truncate(at + KEY_LEN_PREFIX + len as usize);
}

/// The tag values of a key, in group_by order. Stops at a malformed tail.
pub fn values(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = key;
    std::iter::from_fn(move || {
        if rest.len() < KEY_LEN_PREFIX {
            return None;
        }
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let value = rest.get(KEY_LEN_PREFIX..KEY_LEN_PREFIX + len)?;
        rest = &rest[KEY_LEN_PREFIX + len..];
        Some(value)
    })
}

/// Marks a value shortened by [`bound`]: the value's first bytes, this, then
/// the 16 hex digits of the whole value's hash (`203.0.113.7`,
/// `st-3f1c…9e0c4f2b1a7d6e35`).
pub const SHORTENED: &str = "\u{2026}";
/// The fewest bytes a shortened value takes: no prefix, the marker, the hash.
pub const SHORTENED_MIN: usize = SHORTENED.len() + 16;

/// The fewest bytes [`bound`] can bring a key of `tags` values to.
pub const fn min_bound(tags: usize) -> usize {
    tags * (KEY_LEN_PREFIX + SHORTENED_MIN)
}

/// FNV-1a 64 and MurmurHash3's finalizer: fixed, so a shortened key is the
/// same in every process and across restarts (the state file holds keys);
/// the finalizer spreads a change in the last bytes (ids that differ only
/// in their end) over all 16 digits, which FNV-1a alone leaves alike.
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Brings a key over `max` bytes to at most `max` bytes, in place and
/// without allocating: the longest values are shortened, each to the same
/// length `c`, the largest that fits, as their first bytes (cut at a UTF-8
/// character's start), [`SHORTENED`] and the hash of the whole value, so
/// that short values (an ip) stay whole and two long values differ as their
/// hashes do. A key of at most `max` bytes is left as it is, so a bounded
/// key is its own bound. `max` is at least [`min_bound`] of the key's
/// values (validation sees to it); below that the key is left unbounded.
pub fn bound(key: &mut Vec<u8>, max: usize) {
    if key.len() <= max {
        return;
    }
    let tags = values(key).count();
    let Some(budget) = max.checked_sub(tags * KEY_LEN_PREFIX) else {
        return;
    };
    let fits = |c: usize| values(key).map(|v| v.len().min(c)).sum::<usize>() <= budget;
    if !fits(SHORTENED_MIN) {
        return;
    }
    // The largest cap that fits: fits(lo) holds, fits(hi) does not.
    let (mut lo, mut hi) = (
        SHORTENED_MIN,
        values(key).map(<[u8]>::len).max().unwrap_or(0),
    );
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let cap = lo;
    // Each value is written at or before where it was read: no value grows.
    let (mut read, mut write) = (0, 0);
    while read + KEY_LEN_PREFIX <= key.len() {
        let len = u16::from_le_bytes([key[read], key[read + 1]]) as usize;
        let start = read + KEY_LEN_PREFIX;
        let end = (start + len).min(key.len());
        read = end;
        if end - start <= cap {
            key.copy_within(start - KEY_LEN_PREFIX..end, write);
            write += end - start + KEY_LEN_PREFIX;
            continue;
        }
        let hash = hash(&key[start..end]);
        let mut prefix = cap - SHORTENED_MIN;
        // Not inside a UTF-8 character: skip back over continuation bytes.
        while prefix > 0 && key[start + prefix] & 0xc0 == 0x80 {
            prefix -= 1;
        }
        let out = prefix + SHORTENED_MIN;
        key[write..write + KEY_LEN_PREFIX].copy_from_slice(&(out as u16).to_le_bytes());
        key.copy_within(start..start + prefix, write + KEY_LEN_PREFIX);
        let mut at = write + KEY_LEN_PREFIX + prefix;
        key[at..at + SHORTENED.len()].copy_from_slice(SHORTENED.as_bytes());
        at += SHORTENED.len();
        for i in 0..16 {
            key[at + i] = b"0123456789abcdef"[(hash >> (60 - 4 * i)) as usize & 0xf];
        }
        write = at + 16;
    }
    key.truncate(write);
}

/// Builds a key from string values (tests and tools).
pub fn from_values<S: AsRef<[u8]>>(vals: &[S]) -> Key {
    let mut k = Vec::new();
    for v in vals {
        push_value(&mut k, v.as_ref());
    }
    Key::from(&k[..])
}

/// A key's values as text, lossy for invalid UTF-8 (for the API and logs).
pub fn to_strings(key: &[u8]) -> Vec<String> {
    values(key)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_including_empty_ones() {
        let k = from_values(&["10.0.0.1", "", "42"]);
        assert_eq!(to_strings(&k), ["10.0.0.1", "", "42"]);
        assert_eq!(&k[..4], &[8, 0, b'1', b'0']);
    }

    #[test]
    fn iterator_push_matches_slice_push() {
        let mut a = Vec::new();
        push_value(&mut a, b"abc");
        let mut b = Vec::new();
        push_value_iter(&mut b, b"abc".iter().copied());
        assert_eq!(a, b);
    }

    #[test]
    fn small_keys_are_inline_and_large_ones_on_the_heap_with_one_hash() {
        use std::collections::hash_map::DefaultHasher;
        let small = from_values(&["203.0.113.7", "123456789"]);
        assert!(matches!(small, Key::Inline { .. }));
        let big = from_values(&["x".repeat(100)]);
        assert!(matches!(big, Key::Heap(_)));
        let h = |v: &dyn Fn(&mut DefaultHasher)| {
            let mut s = DefaultHasher::new();
            v(&mut s);
            s.finish()
        };
        for k in [&small, &big] {
            assert_eq!(h(&|s| k.hash(s)), h(&|s| k.as_slice().hash(s)));
        }
        let mut m = std::collections::HashMap::new();
        m.insert(small.clone(), 1);
        assert_eq!(m.get(&small[..]), Some(&1));
        assert_eq!(std::mem::size_of::<Key>(), 40);
    }

    fn bounded(vals: &[&str], max: usize) -> Vec<String> {
        let mut k = from_values(vals).to_vec();
        bound(&mut k, max);
        assert!(k.len() <= max, "{} > {max}", k.len());
        to_strings(&k)
    }

    #[test]
    fn a_long_value_is_shortened_and_a_short_one_kept_whole() {
        let id = format!("store-{}", "x".repeat(4096));
        let got = bounded(&["203.0.113.7", &id], 128);
        assert_eq!(got[0], "203.0.113.7");
        // 128 - 2 x 2 prefixes - 11 for the ip: the id gets 113 bytes.
        assert_eq!(got[1].len(), 113);
        let hash = format!("{:016x}", hash(id.as_bytes()));
        assert_eq!(
            got[1],
            format!("{}\u{2026}{hash}", &id[..113 - SHORTENED_MIN])
        );
    }

    #[test]
    fn long_values_with_one_prefix_differ_and_one_value_is_one_key() {
        let a = format!("{}a", "p".repeat(500));
        let b = format!("{}b", "p".repeat(500));
        assert_ne!(bounded(&["1", &a], 64), bounded(&["1", &b], 64));
        assert_eq!(bounded(&["1", &a], 64), bounded(&["1", &a.clone()], 64));
    }

    #[test]
    fn a_key_at_the_limit_is_unchanged_and_a_bounded_key_is_its_own_bound() {
        let v = "v".repeat(124);
        let k = from_values(&["a", &v]);
        assert_eq!(k.len(), 129);
        let mut at = k.to_vec();
        bound(&mut at, 129);
        assert_eq!(at, k.to_vec());
        let mut once = k.to_vec();
        bound(&mut once, 128);
        assert_ne!(once, k.to_vec());
        let mut twice = once.clone();
        bound(&mut twice, 128);
        assert_eq!(once, twice);
    }

    #[test]
    fn several_long_values_share_the_room_and_utf8_is_cut_between_characters() {
        let long = "\u{e9}".repeat(300);
        let got = bounded(&[&long, "ip", &long], 96);
        assert_eq!(got[1], "ip");
        assert_eq!(got[0], got[2]);
        assert!(got[0].ends_with(&format!("\u{2026}{:016x}", hash(long.as_bytes()))));
        assert!(got[0].starts_with("\u{e9}\u{e9}"));
        // Each value gets (96 - 6 - 2) / 2 = 44 bytes; an odd prefix of é
        // would split one, so it is one byte shorter.
        assert_eq!(got[0].len(), 43);
    }

    #[test]
    fn the_tightest_bound_holds_every_value_as_a_bare_hash() {
        let long = "z".repeat(1000);
        let got = bounded(&[&long, &long, &long], min_bound(3));
        assert!(got
            .iter()
            .all(|v| v.starts_with('\u{2026}') && v.len() == SHORTENED_MIN));
    }

    #[test]
    fn the_hash_is_fixed_and_ids_differing_at_the_end_look_different() {
        // The state file holds bounded keys: this must never change.
        assert_eq!(hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash(b"store-42"), 0x1904_2736_450f_869f);
        let (a, b) = (hash(b"store-00000001"), hash(b"store-00000002"));
        assert!((a ^ b).count_ones() > 16, "{a:016x} {b:016x}");
    }

    #[test]
    fn truncated_key_stops_the_walk() {
        let k = [5u8, 0, b'a'];
        assert_eq!(values(&k).count(), 0);
    }
}
