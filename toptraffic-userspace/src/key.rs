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

    #[test]
    fn truncated_key_stops_the_walk() {
        let k = [5u8, 0, b'a'];
        assert_eq!(values(&k).count(), 0);
    }
}
