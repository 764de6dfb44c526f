//! Types and constants shared by the kernel programs and the daemon.
//!
//! Everything here is `#[repr(C)]` with explicit padding: sizes and field
//! order are the wire format between the eBPF programs and userspace, pinned
//! by the tests at the bottom.
//!
//! Group keys have one encoding on both ingest paths, so a snapshot drained
//! from the kernel and one counted in userspace merge key for key: for each
//! group-by tag, in the rule's group_by order, a little-endian `u16` length
//! followed by the tag value's unescaped bytes. A missing tag is an empty
//! value (length 0), as in Kapacitor.
#![no_std]

/// Bytes of the length prefix before each tag value in a group key.
pub const KEY_LEN_PREFIX: usize = 2;

/// Largest datagram payload the kernel parses; longer ones go to userspace
/// (as do those longer than `KernelConfig::max_datagram`).
/// A power of two: offsets into the parse buffer are masked with `BUF_LEN - 1`.
pub const BUF_LEN: usize = 4096;
/// Most lines of one datagram the kernel counts.
pub const MAX_LINES: u32 = 64;
/// Most (line, rule) counts of one datagram the kernel holds before committing.
pub const MAX_ITEMS: usize = 128;
/// Most rules the kernel evaluates.
pub const MAX_RULES: usize = 8;
/// Most group-by tags of a kernel rule.
pub const MAX_GROUP: usize = 4;
/// Most `where` filters of a kernel rule.
pub const MAX_FILTERS: usize = 2;
/// Most distinct measurements, tag names and field names the kernel matches.
pub const MAX_MEASUREMENTS: usize = 8;
pub const MAX_NAMES: usize = 8;
pub const MAX_FIELDS: usize = 4;
/// Longest name (measurement, tag, field, filter value) compared exactly.
pub const NAME_LEN: usize = 32;
/// Bytes of group key data in a kernel key. A power of two (offsets are
/// masked with `KEY_DATA - 1`).
pub const KEY_DATA: usize = 64;

/// FNV-1a, 64 bits (the state file's checksum).
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline(always)]
pub fn fnv1a_step(h: u64, c: u8) -> u64 {
    (h ^ c as u64).wrapping_mul(FNV_PRIME)
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        h = fnv1a_step(h, bytes[i]);
        i += 1;
    }
    h
}

/// A name's fingerprint: its length and its first and last eight bytes,
/// mixed. The kernel reads those three at a token's end with two word loads
/// each (a byte-by-byte hash would cost a step per byte); names that differ
/// only in the middle share a fingerprint, which is why a match is always
/// confirmed byte for byte, or only ever hands a line to userspace.
///
/// `head` is the first `min(len, 8)` bytes as a little-endian word, zero
/// above; `tail` the last 8 bytes when `len > 8`, else 0.
#[inline(always)]
pub fn fingerprint_words(head: u64, tail: u64, len: u32) -> u64 {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    (head.wrapping_mul(K1) ^ tail).wrapping_mul(K2) ^ len as u64
}

/// [`fingerprint_words`] of `bytes`.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let le = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    let n = bytes.len();
    let head = le(&bytes[..n.min(8)]);
    let tail = if n > 8 { le(&bytes[n - 8..]) } else { 0 };
    fingerprint_words(head, tail, n as u32)
}

/// A counted key: a rule and its group key bytes. The kernel gives each
/// key a slot (`KEYS`, key to slot) and writes the key once into the slot's
/// entry of `KEY_OF`, where the daemon reads it; the counts go to the
/// slot's cells.
///
/// 8-aligned: the kernel writes `data` a word at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub rule: u32,
    /// Bytes of `data` in use; the rest are zero (keys hash whole).
    pub len: u32,
    pub data: [u8; KEY_DATA],
}

impl GroupKey {
    pub const fn zeroed() -> GroupKey {
        GroupKey {
            rule: 0,
            len: 0,
            data: [0; KEY_DATA],
        }
    }

    /// The group key bytes (the userspace key encoding).
    pub fn bytes(&self) -> &[u8] {
        let n = if (self.len as usize) < KEY_DATA {
            self.len as usize
        } else {
            KEY_DATA
        };
        &self.data[..n]
    }
}

/// Largest magnitude of a value the kernel sums; a datagram with a larger
/// summed integer goes to userspace whole (`counter::PASS_LARGE_VALUE`).
/// With at most u32::MAX lines in a cell, a cell's sum stays within
/// (2^32 - 1) x (2^31 - 1) < 2^63: it never wraps.
pub const MAX_SUMMED: i64 = i32::MAX as i64;

/// What a key's slot added in one generation, on one CPU: the cell of slot
/// `s` on CPU `c` is entry `c x slots + s` of the generation's cell array.
///
/// 16 bytes (there is one for every slot on every possible CPU): the
/// line counts are 32 bits, and a cell refuses a line that would take
/// `lines` past u32::MAX, so that the sum, of values of at most
/// [`MAX_SUMMED`] in magnitude, never wraps. The drain adds the CPUs' cells
/// in i128.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    /// Lines counted; 0 in a slot nothing was counted in (a count taken
    /// back leaves 0: see `counter::PASS_MAP_FULL`).
    pub lines: u32,
    /// Of `lines`, those this rule owns: the line's first rule, in config
    /// order, whose count was committed (the rule that counts it as a
    /// point).
    pub owned: u32,
    /// Sum of the aggregate (1 per line for a count).
    pub sum: i64,
}

impl Cell {
    /// Adds `lines` lines, `owned` of them owned, summing to `v`; false,
    /// adding nothing, when `lines` would pass u32::MAX. `v` is at most
    /// `lines x MAX_SUMMED` in magnitude, so the sum stays exact.
    #[inline(always)]
    pub fn add(&mut self, lines: u32, owned: u32, v: i64) -> bool {
        let Some(n) = self.lines.checked_add(lines) else {
            return false;
        };
        self.lines = n;
        // owned <= lines: it cannot pass u32::MAX either.
        self.owned = self.owned.wrapping_add(owned);
        // Bounded as MAX_SUMMED says: never wraps.
        self.sum = self.sum.wrapping_add(v);
        true
    }

    /// Takes back what an [`Cell::add`] of the same arguments that returned
    /// true added, exactly.
    #[inline(always)]
    pub fn undo(&mut self, lines: u32, owned: u32, v: i64) {
        self.lines = self.lines.wrapping_sub(lines);
        self.owned = self.owned.wrapping_sub(owned);
        self.sum = self.sum.wrapping_sub(v);
    }
}

/// A name the kernel matches: fingerprint and length first, then the bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name {
    /// [`fingerprint`] of the whole name.
    pub fp: u64,
    pub len: u32,
    /// 1 when `bytes` holds the whole name (it is at most NAME_LEN long);
    /// 0 when only the fingerprint is known, which is enough to hand a line to
    /// userspace but never to count it.
    pub exact: u32,
    pub bytes: [u8; NAME_LEN],
}

impl Name {
    pub const fn empty() -> Name {
        Name {
            fp: 0,
            len: 0,
            exact: 0,
            bytes: [0; NAME_LEN],
        }
    }

    pub fn new(name: &[u8]) -> Name {
        let mut n = Name::empty();
        n.fp = fingerprint(name);
        n.len = name.len() as u32;
        if name.len() <= NAME_LEN {
            n.bytes[..name.len()].copy_from_slice(name);
            n.exact = 1;
        }
        n
    }
}

/// `RuleSpec::flags` bits.
pub const RULE_ENABLED: u32 = 1;
/// The rule sums `RuleSpec::field`; without it the rule counts lines.
pub const RULE_SUM: u32 = 2;

/// One rule as the kernel evaluates it; names are indices into
/// [`KernelConfig`]'s tables.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub flags: u32,
    /// Index into `KernelConfig::fields` of the summed field.
    pub field: u32,
    pub n_group: u32,
    pub n_filters: u32,
    /// Indices into `KernelConfig::names`, in group_by order.
    pub group: [u32; MAX_GROUP],
    /// Indices into `KernelConfig::names` of the filtered tags.
    pub filter_name: [u32; MAX_FILTERS],
    /// What the kernel writes as `GroupKey::rule`: an id the daemon keeps
    /// for the rule across reloads (while its grouping stays the same), so
    /// a drain after a reload attributes counts by id, not by position.
    pub id: u32,
    pub _pad: u32,
    pub filter_value: [Name; MAX_FILTERS],
}

impl RuleSpec {
    pub const fn empty() -> RuleSpec {
        RuleSpec {
            flags: 0,
            field: 0,
            n_group: 0,
            n_filters: 0,
            group: [0; MAX_GROUP],
            filter_name: [0; MAX_FILTERS],
            id: 0,
            _pad: 0,
            filter_value: [Name::empty(); MAX_FILTERS],
        }
    }
}

/// The rules as the kernel sees them: one entry of the config map, written
/// by the daemon at start and on reload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    pub n_measurements: u32,
    pub n_names: u32,
    pub n_fields: u32,
    pub n_rules: u32,
    /// XDP only: UDP destination port (host order) and IPv4 destination
    /// address (network order; 0 for any) of the daemon's socket.
    pub port: u32,
    pub addr: u32,
    /// `ingest.max_datagram`: a longer payload is left to the socket whole,
    /// where userspace drops it as `oversize` (0: BUF_LEN is the only bound).
    pub max_datagram: u32,
    /// XDP only: the address families it counts, [`XDP_IPV4`] and
    /// [`XDP_IPV6`] bits (those the daemon's socket receives).
    pub families: u32,
    pub measurements: [Name; MAX_MEASUREMENTS],
    /// Per measurement: bitmask of the kernel rules that take it.
    pub measurement_rules: [u32; MAX_MEASUREMENTS],
    /// Per measurement: 1 when a rule the kernel cannot evaluate takes it, so
    /// that its datagrams must go to userspace whole.
    pub measurement_userspace: [u32; MAX_MEASUREMENTS],
    pub names: [Name; MAX_NAMES],
    pub fields: [Name; MAX_FIELDS],
    pub rules: [RuleSpec; MAX_RULES],
    /// XDP only: the IPv6 destination address of the daemon's socket, its
    /// 16 bytes in network order read as two native-endian u64s (0, 0 for
    /// any).
    pub addr6: [u64; 2],
    /// Slots of the key set `epoch` names: a CPU's cells are the `slots`
    /// cells from `cpu x slots` of its cell arrays (see [`Cell`]).
    pub slots: u32,
    /// Which of the two key sets (the entries of the programs' outer maps)
    /// the programs use: a resize fills the other and flips this with the
    /// config.
    pub epoch: u32,
    /// Differs in every config the daemon writes (never 0): what the
    /// kernel learned from lines under one config (their shapes, which
    /// name the tables' indices) it uses under that config only.
    pub version: u32,
    pub _pad: u32,
}

/// `KernelConfig::families`: XDP counts IPv4 UDP.
pub const XDP_IPV4: u32 = 1;
/// `KernelConfig::families`: XDP counts IPv6 UDP.
pub const XDP_IPV6: u32 = 2;

impl KernelConfig {
    pub const fn empty() -> KernelConfig {
        KernelConfig {
            n_measurements: 0,
            n_names: 0,
            n_fields: 0,
            n_rules: 0,
            port: 0,
            addr: 0,
            max_datagram: 0,
            families: 0,
            measurements: [Name::empty(); MAX_MEASUREMENTS],
            measurement_rules: [0; MAX_MEASUREMENTS],
            measurement_userspace: [0; MAX_MEASUREMENTS],
            names: [Name::empty(); MAX_NAMES],
            fields: [Name::empty(); MAX_FIELDS],
            rules: [RuleSpec::empty(); MAX_RULES],
            addr6: [0; 2],
            slots: 0,
            epoch: 0,
            version: 0,
            _pad: 0,
        }
    }
}

/// Indices of the kernel's per-CPU counters.
pub mod counter {
    /// Datagrams counted whole by the socket filter (they never reach the
    /// socket; the kernel still adds them to the socket's drop count).
    pub const SF_DATAGRAMS: u32 = 0;
    /// Datagrams counted whole by the XDP program.
    pub const XDP_DATAGRAMS: u32 = 1;
    /// Lines counted by at least one rule.
    pub const POINTS: u32 = 2;
    /// Valid lines no rule takes, by reason (as in userspace).
    pub const DROP_UNKNOWN_MEASUREMENT: u32 = 3;
    pub const DROP_FILTERED: u32 = 4;
    pub const DROP_MISSING_FIELD: u32 = 5;
    /// Lines of a counted datagram none of whose (line, rule) counts a
    /// generation map took: the keys' cells were at their line bound (a
    /// full map passes the datagram instead, `PASS_MAP_FULL`).
    pub const LOST_LINES: u32 = 6;
    /// First of the reasons a datagram was handed to userspace whole.
    pub const PASS_FIRST: u32 = 7;
    /// Longer than BUF_LEN or than `KernelConfig::max_datagram`.
    pub const PASS_TOO_LONG: u32 = 7;
    /// A backslash escape.
    pub const PASS_ESCAPE: u32 = 8;
    /// More than MAX_LINES lines, or MAX_ITEMS counts.
    pub const PASS_TOO_MANY_LINES: u32 = 9;
    /// A group key longer than KEY_DATA.
    pub const PASS_KEY_TOO_LONG: u32 = 10;
    /// Valid line protocol the kernel parser does not take: string, boolean
    /// or exponent field values, indentation, `\r`, several spaces, quotes
    /// outside field values.
    pub const PASS_UNSUPPORTED: u32 = 11;
    /// Not valid line protocol: userspace counts the parse error.
    pub const PASS_INVALID: u32 = 12;
    /// A summed value that is not an integer.
    pub const PASS_FRACTION: u32 = 13;
    /// A measurement that a rule the kernel cannot evaluate takes.
    pub const PASS_USERSPACE_RULE: u32 = 14;
    /// The program could not reach its scratch, config or generation map.
    pub const PASS_INTERNAL: u32 = 15;
    /// A summed integer past [`crate::MAX_SUMMED`] in magnitude.
    pub const PASS_LARGE_VALUE: u32 = 16;
    /// A new key of the datagram that found no free slot: nothing of the
    /// datagram stays counted in the kernel.
    pub const PASS_MAP_FULL: u32 = 17;
    /// Broadcast or multicast copies that the sockets other than the first
    /// emptied (the first socket's copy is counted).
    pub const PEER_COPIES: u32 = 18;
    pub const COUNT: u32 = 19;

    /// Names of the pass reasons, from PASS_FIRST, for stats and metrics.
    pub const PASS_NAMES: [&str; (PEER_COPIES - PASS_FIRST) as usize] = [
        "too_long",
        "escape",
        "too_many_lines",
        "key_too_long",
        "unsupported",
        "invalid",
        "fraction",
        "userspace_rule",
        "internal",
        "large_value",
        "map_full",
    ];
}

#[cfg(feature = "user")]
mod pod {
    // aya copies these to and from the kernel as bytes: sound for Copy
    // types with no padding (no uninitialised byte is read) whose fields
    // take any bit pattern (integers and arrays of them). The sizes that
    // prove there is no padding are pinned by `layouts_are_the_wire_format`.

    // SAFETY: #[repr(C)] u32, u32, [u8; 64]: 72 bytes, no padding.
    unsafe impl aya::Pod for super::GroupKey {}
    // SAFETY: #[repr(C)] u32, u32, i64: 16 bytes, no padding.
    unsafe impl aya::Pod for super::Cell {}
    // SAFETY: #[repr(C)] eight u32s, then arrays of Name (u64, u32, u32,
    // [u8; 32]), of u32 and of RuleSpec (u32s, with `_pad` filling to the
    // 8-byte alignment of its Names), then two u64s and two u32s: every
    // field starts where the one before ends, so no padding anywhere.
    unsafe impl aya::Pod for super::KernelConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts_are_the_wire_format() {
        assert_eq!(size_of::<GroupKey>(), 72);
        assert_eq!(offset_of!(GroupKey, len), 4);
        assert_eq!(offset_of!(GroupKey, data), 8);
        assert_eq!(size_of::<Cell>(), 16);
        assert_eq!(offset_of!(Cell, owned), 4);
        assert_eq!(offset_of!(Cell, sum), 8);
        assert_eq!(size_of::<Name>(), 48);
        assert_eq!(offset_of!(Name, bytes), 16);
        assert_eq!(size_of::<RuleSpec>(), 16 + 16 + 8 + 8 + 96);
        assert_eq!(offset_of!(RuleSpec, id), 40);
        assert_eq!(offset_of!(RuleSpec, filter_value), 48);
        assert_eq!(offset_of!(KernelConfig, max_datagram), 24);
        assert_eq!(offset_of!(KernelConfig, families), 28);
        assert_eq!(offset_of!(KernelConfig, measurements), 32);
        assert_eq!(align_of::<KernelConfig>(), 8);
        let rules_end = 32 + 8 * 48 + 8 * 4 + 8 * 4 + 8 * 48 + 4 * 48 + 8 * 144;
        assert_eq!(offset_of!(KernelConfig, addr6), rules_end);
        assert_eq!(offset_of!(KernelConfig, slots), rules_end + 16);
        assert_eq!(offset_of!(KernelConfig, version), rules_end + 24);
        assert_eq!(size_of::<KernelConfig>(), rules_end + 32);
    }

    #[test]
    fn fnv_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_full_cell_refuses_lines_and_its_sum_never_wraps() {
        let (max, min) = (MAX_SUMMED, -MAX_SUMMED);
        let mut c = Cell::default();
        for v in [max, max, min, 5] {
            assert!(c.add(1, 1, v));
        }
        assert_eq!((c.lines, c.owned, c.sum), (4, 4, max + 5));
        // The bound's worst case, either sign: u32::MAX lines of the
        // largest value fit in i64.
        for v in [max, min] {
            let mut c = Cell::default();
            assert!(c.add(u32::MAX - 1, 1, (u32::MAX as i64 - 1) * v));
            assert!(c.add(1, 0, v));
            assert_eq!(c.sum as i128, u32::MAX as i128 * v as i128);
            let before = c;
            assert!(!c.add(1, 1, v), "full");
            assert_eq!(c, before, "nothing added");
        }
        // undo takes back exactly what add added.
        let mut c = Cell::default();
        assert!(c.add(1, 1, max));
        let before = c;
        assert!(c.add(1, 0, min));
        c.undo(1, 0, min);
        assert_eq!(c, before);
        c.undo(1, 1, max);
        assert_eq!(c, Cell::default());
        // The bound itself: no cell sum can pass i64.
        assert!(u32::MAX as i128 * MAX_SUMMED as i128 <= i64::MAX as i128);
        assert!(-(u32::MAX as i128) * MAX_SUMMED as i128 >= i64::MIN as i128);
    }

    #[test]
    fn fingerprints_read_the_length_and_the_ends() {
        let mut seen = [0u64; 20];
        for (n, slot) in seen.iter_mut().enumerate() {
            let name = &b"abcdefghijklmnopqrst"[..n];
            let mut head = [0u8; 8];
            head[..n.min(8)].copy_from_slice(&name[..n.min(8)]);
            let tail = if n > 8 {
                u64::from_le_bytes(name[n - 8..].try_into().unwrap())
            } else {
                0
            };
            *slot = fingerprint(name);
            assert_eq!(
                *slot,
                fingerprint_words(u64::from_le_bytes(head), tail, n as u32)
            );
        }
        for i in 0..seen.len() {
            for j in 0..i {
                assert_ne!(seen[i], seen[j], "prefixes of {i} and {j} bytes");
            }
        }
        assert_ne!(fingerprint(b"ip"), fingerprint(b"id"));
        // The middle is not read: byte-for-byte checks confirm a match.
        assert_eq!(
            fingerprint(b"abcdefgh_X_stuvwxyz"),
            fingerprint(b"abcdefgh_Y_stuvwxyz")
        );
    }

    #[test]
    fn long_names_are_fingerprint_only() {
        let n = Name::new(&[b'x'; NAME_LEN + 1]);
        assert_eq!(n.exact, 0);
        assert_eq!(Name::new(b"combined").exact, 1);
    }
}
