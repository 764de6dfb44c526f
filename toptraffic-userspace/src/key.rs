//! Group keys: a rule's group-by tag values packed into one byte string.
//!
//! The encoding is shared with the kernel programs (see `toptraffic-common`):
//! per group-by tag, a little-endian `u16` length and the unescaped value.

use toptraffic_common::KEY_LEN_PREFIX;

/// An owned group key, as held in interval snapshots and the window.
pub type Key = Box<[u8]>;

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
    k.into_boxed_slice()
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
    fn truncated_key_stops_the_walk() {
        let k = [5u8, 0, b'a'];
        assert_eq!(values(&k).count(), 0);
    }
}
