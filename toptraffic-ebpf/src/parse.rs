//! The kernel's line protocol parser: a state machine over bytes, with
//! plain runs skipped a word at a time.
//!
//! Both programs (socket filter and XDP) copy the datagram's payload into a
//! per-CPU [`Scratch`] and make three passes, each a `bpf_loop` (the host
//! tests use plain loops):
//! 1. [`advance`] over the bytes, plus one virtual `\n` past the end (it
//!    skips plain runs and hands every other byte to [`step`]): validates
//!    the line protocol and records per line its measurement, the positions
//!    of the tag values the rules name, and the summed fields' values;
//! 2. [`eval_rule`] over the lines and rules: which rules take each line,
//!    as [`Item`]s;
//! 3. over the items: [`build_key`] and the map update (in the program).
//!
//! Pass 1 first tries each line against the [`Shape`] learned (per CPU,
//! per config) from an earlier line: ingress proxies send lines that
//! differ only in their values, and a line of the shape is parsed in one
//! pass that compares the bytes between values and scans the values
//! ([`fast_line`]), without the state machine; any other line goes a token
//! at a time, and the first such line of a datagram that could be a shape
//! becomes one ([`learn`]; four a CPU, by a line's first bytes).
//!
//! Splitting the work keeps each callback small for the verifier, which
//! checks each once (pass 1 calls `advance` four times a callback, pass 2
//! two rules a callback). Nothing is counted before pass 3, and pass 3 runs
//! only when passes 1 and 2 took the whole datagram: anything the parser
//! does not take, valid or not, sets [`State::bail`] and the datagram goes
//! to userspace whole, which keeps every datagram on exactly one path.
//!
//! What the kernel takes is a strict subset of what userspace accepts
//! (InfluxDB 1.x's rules, see `lineproto.rs`): no escapes, no quotes (not
//! even in comments), no `=` in tag values, no tag key twice, numeric fields
//! only (`-?D`, `-?D.D`, `-?Di`; floats of at most 308 integer digits), a
//! summed field once per line, single spaces, `\n` line ends, timestamps
//! within InfluxDB's range.

use toptraffic_common::{
    counter, fingerprint_words, GroupKey, KernelConfig, Name, RuleSpec, BUF_LEN, KEY_DATA,
    KEY_LEN_PREFIX, MAX_FIELDS, MAX_FILTERS, MAX_GROUP, MAX_ITEMS, MAX_LINES, MAX_MEASUREMENTS,
    MAX_NAMES, MAX_RULES, MAX_SUMMED, NAME_LEN, RULE_ENABLED, RULE_SUM,
};

const MASK: u32 = BUF_LEN as u32 - 1;
/// A byte of ones in each byte of a word, and each byte's high bit.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
/// No measurement, name or field matched.
pub const NONE: u32 = u32::MAX;
/// `Cap::len` of a tag not seen on this line.
pub const UNSET: u32 = u32::MAX;

// Parser states.
const LINE_START: u32 = 0;
const COMMENT: u32 = 1;
const MEAS: u32 = 2;
const TAG_KEY: u32 = 3;
const TAG_VALUE: u32 = 4;
const FIELD_KEY: u32 = 5;
const FIELD_VALUE: u32 = 6;
const TIMESTAMP: u32 = 7;

// Number flags.
const NUM_NEG: u32 = 1;
const NUM_DOT: u32 = 2;
const NUM_INT: u32 = 4;
const NUM_FRAC_NONZERO: u32 = 16;

/// Most integer digits of a summed value the accumulator holds (exact in
/// f64 and i64); a summed value must also be at most MAX_SUMMED.
const SUM_DIGITS: u32 = 15;
/// Most digits of an `i`/`u` field taken without range checks (19 digits
/// may overflow i64).
const INT_DIGITS: u32 = 18;
/// Most integer digits of a float taken without range checks: up to 308
/// digits it is below f64::MAX (about 1.8e308); past that userspace decides
/// (out of range is a parse error there).
const FLOAT_DIGITS: u32 = 308;
/// Most digits of a timestamp; its range is checked (nanoseconds since the
/// epoch have 19 digits).
const TS_DIGITS: u32 = 19;
/// Largest timestamp magnitude InfluxDB 1.x takes either way: its range is
/// [i64::MIN + 2, i64::MAX - 1] (`MinNanoTime`, `MaxNanoTime`).
const TS_LIMIT: u64 = (1u64 << 63) - 2;
/// Tag keys per line the kernel checks for repeats (InfluxDB rejects a
/// line with a key twice); a line with more goes to userspace.
pub const MAX_TAG_KEYS: usize = 8;

/// Drop reasons counted per line, as indices into `State::drops`.
pub const DROP_UNKNOWN: usize = 0;
pub const DROP_FILTERED: usize = 1;
pub const DROP_MISSING_FIELD: usize = 2;

/// Where a tag value sits in the buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub start: u32,
    pub len: u32,
}

impl Cap {
    pub const UNSEEN: Cap = Cap {
        start: 0,
        len: UNSET,
    };
}

/// `Item::committed` bits.
pub const COMMITTED: u32 = 1;
pub const OWNED: u32 = 2;

/// One count to commit: a rule, its value and where its group values are.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    pub rule: u32,
    pub n_group: u32,
    pub value: i64,
    /// 1 on the line's first item: its rule owns the line (counts it as a
    /// point) if the map takes the count, else the next item's rule does.
    pub owner: u32,
    /// Written by the commit: [`COMMITTED`], with [`OWNED`] when the item's
    /// rule took the line as its owner; what a commit taken back undoes.
    pub committed: u32,
    /// Written by the commit: the key's slot, whose cell an undo takes the
    /// count back from (the key may have lost its slot meanwhile).
    pub cell: u32,
    pub _pad: u32,
    pub slots: [Cap; MAX_GROUP],
}

/// Parser state; reset per datagram by [`State::start`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct State {
    pub len: u32,
    /// The next byte pass 1 looks at (see [`advance`]).
    pub pos: u32,
    pub state: u32,
    /// 0, or the `counter::PASS_*` reason the datagram goes to userspace.
    pub bail: u32,
    pub lines: u32,
    pub n_items: u32,
    /// Lines at least one rule took.
    pub points: u32,
    /// Valid lines no rule took, by DROP_* reason.
    pub drops: [u32; 3],
    pub tok_start: u32,
    pub name: u32,
    pub field: u32,
    pub nfields: u32,
    pub num_flags: u32,
    pub num_digits: u32,
    pub num_frac: u32,
    pub acc: i64,
    pub ts: u64,
    /// Fingerprints of the line's tag keys so far, to find a key written
    /// twice.
    pub tag_keys: [u64; MAX_TAG_KEYS],
    pub n_tag_keys: u32,
    /// Pass 2, the line in progress: whether a rule took it so far, and
    /// its drop reason if none does.
    pub line_counted: u32,
    pub line_reason: u32,
    /// The rule pass 2 is at.
    pub rule: u32,
    /// The line being parsed.
    pub cur: LineRec,
    /// Where the line being parsed has its tokens.
    pub at: LinePos,
    /// The first line of the datagram the parser took a token at a time
    /// and whose shape [`learn`] may take (when `learn_pending`).
    pub learn: LinePos,
    pub learn_pending: u32,
    /// 1 when the line at `pos` did not take the shape: [`advance`] parses
    /// it (see [`try_shape`]).
    pub by_token: u32,
    /// What fast_line passes through memory, for the verifier to see one
    /// unknown: the shape's slot, the position after the tags' values, the
    /// line's end.
    pub shape_pos: u32,
    /// The lines pass 2 evaluates (those fast_line did not), by index.
    pub n_general: u32,
    pub general: [u8; MAX_LINES as usize],
}

/// Where a line's tokens sit, for [`learn`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinePos {
    pub start: u32,
    pub n_tags: u32,
    /// Each tag's value, in the line's order, and its name's index.
    pub values: [Cap; MAX_TAG_KEYS],
    pub names: [u32; MAX_TAG_KEYS],
    /// The field's value's first byte, and 1 when that value is one
    /// [`fast_line`] takes (the line's only field, 1 to FAST_DIGITS digits).
    pub field_value: u32,
    pub plain_field: u32,
    pub meas: u32,
    pub field: u32,
}

impl LinePos {
    pub const EMPTY: LinePos = LinePos {
        start: 0,
        n_tags: 0,
        values: [Cap::UNSEEN; MAX_TAG_KEYS],
        names: [NONE; MAX_TAG_KEYS],
        field_value: 0,
        plain_field: 0,
        meas: NONE,
        field: NONE,
    };
}

/// Shapes a CPU keeps: a proxy's lines of a few measurements each have
/// theirs.
pub const SHAPES: usize = 4;

/// The slot of [`Scratch::shapes`] for the line at `at`: by its first 4
/// bytes, which a shape's first piece always covers (a measurement, a
/// delimiter, a key and its `=`).
#[inline(always)]
fn shape_slot(buf: &Buf, at: u32) -> usize {
    let head = load_word(buf, at) as u32;
    (head.wrapping_mul(0x9e37_79b1) >> 30) as usize & (SHAPES - 1)
}

/// Pieces of a shape: one before each tag's value, one before the field's.
pub const SHAPE_PIECES: usize = MAX_TAG_KEYS + 1;

/// A line's shape: its bytes other than its values (measurement, tag keys,
/// delimiters, the field's key), learned from a line the parser took
/// token by token. A line with the same bytes there, plain tag values and
/// a small integer for the one field parses to what the token-by-token
/// parse makes of it, which [`fast_line`] does in one pass without the
/// state machine.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// The [`KernelConfig::version`] the indices below are of; 0: none.
    pub version: u32,
    pub n_tags: u32,
    pub meas: u32,
    pub field: u32,
    pub names: [u32; MAX_TAG_KEYS],
    /// The bytes before each tag's value, then before the field's.
    pub pieces: [Name; SHAPE_PIECES],
}

impl Shape {
    pub const EMPTY: Shape = Shape {
        version: 0,
        n_tags: 0,
        meas: NONE,
        field: NONE,
        names: [NONE; MAX_TAG_KEYS],
        pieces: [Name::empty(); SHAPE_PIECES],
    };
}

/// What pass 1 keeps of a line for pass 2.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRec {
    /// Index of the measurement, or NONE.
    pub meas: u32,
    /// Bit per field slot seen.
    pub fset: u32,
    pub caps: [Cap; MAX_NAMES],
    pub fvals: [i64; MAX_FIELDS],
}

impl LineRec {
    pub const EMPTY: LineRec = LineRec {
        meas: NONE,
        fset: 0,
        caps: [Cap::UNSEEN; MAX_NAMES],
        fvals: [0; MAX_FIELDS],
    };

    /// Where the tag of name index `name` sits, or UNSEEN (not on the
    /// line, or an index past the table).
    #[inline(always)]
    fn cap(&self, name: u32) -> Cap {
        match self.caps.get(name as usize) {
            Some(c) => *c,
            None => Cap::UNSEEN,
        }
    }
}

/// Bytes of the parse buffer: a payload of up to BUF_LEN bytes, then
/// NAME_LEN bytes no payload reaches, so that [`eq_name`] reads whole words
/// of a token that ends the buffer.
pub const BUF_SPACE: usize = BUF_LEN + NAME_LEN;
pub type Buf = [u8; BUF_SPACE];

/// The per-CPU parse area: the payload, the state, the lines and the items.
#[repr(C)]
pub struct Scratch {
    pub buf: Buf,
    pub st: State,
    pub lines: [LineRec; MAX_LINES as usize],
    pub items: [Item; MAX_ITEMS],
    /// Kept from datagram to datagram (per CPU): the last shape learned
    /// in each slot (see [`shape_slot`]).
    pub shapes: [Shape; SHAPES],
    /// The key pass 3 builds and looks up: here rather than on the
    /// program's stack, where the verifier wants every access aligned and
    /// at a fixed offset.
    pub key: GroupKey,
}

impl Scratch {
    /// An empty parse area, for the host tests (the programs use the
    /// per-CPU map's).
    pub const EMPTY: Scratch = Scratch {
        buf: [0; BUF_SPACE],
        st: State::new(),
        lines: [LineRec::EMPTY; MAX_LINES as usize],
        items: [Item {
            rule: 0,
            n_group: 0,
            value: 0,
            owner: 0,
            committed: 0,
            cell: 0,
            _pad: 0,
            slots: [Cap::UNSEEN; MAX_GROUP],
        }; MAX_ITEMS],
        shapes: [Shape::EMPTY; SHAPES],
        key: GroupKey::zeroed(),
    };
}

/// Whether a payload of `len` bytes goes to userspace whole as too long:
/// past what the scratch holds, or past `ingest.max_datagram`. The receive
/// buffer is where `oversize` is decided and counted (userspace's
/// `DropReason::Oversize`), for both paths: the kernel only declines.
#[inline(always)]
pub fn too_long(len: u32, cfg: &KernelConfig) -> bool {
    len as usize > BUF_LEN || (cfg.max_datagram != 0 && len > cfg.max_datagram)
}

/// Passes 1 and 2 over `data` as the programs run them, with plain loops
/// instead of `bpf_loop` (host tests): Err is the `counter::PASS_*` reason
/// the datagram goes to userspace whole; on Ok the items to count are
/// `s.items[..s.st.n_items]`.
#[cfg(not(target_arch = "bpf"))]
pub fn parse_lines(s: &mut Scratch, cfg: &KernelConfig, data: &[u8]) -> Result<(), u32> {
    if data.len() > u32::MAX as usize || too_long(data.len() as u32, cfg) {
        return Err(counter::PASS_TOO_LONG);
    }
    s.buf[..data.len()].copy_from_slice(data);
    s.st.start(data.len() as u32);
    // Pass 1: PASS1_CALLS, each a line by its shape, a token, or the mark
    // that the line goes a token at a time.
    for _ in 0..pass1_calls(data.len() as u32) {
        match try_shape(s, cfg) {
            Some(true) => {}
            Some(false) => break,
            None => {
                if !advance(s, cfg) {
                    break;
                }
            }
        }
    }
    if s.st.bail != 0 {
        return Err(s.st.bail);
    }
    learn(s, cfg);
    // Pass 2: the lines fast_line left, a rule at a time.
    'lines: for g in 0..s.st.n_general {
        let l = s.st.general[g as usize] as u32;
        for r in 0..rules_per_line(cfg) {
            if !eval_rule(s, cfg, l, r) {
                break 'lines;
            }
        }
    }
    if s.st.bail != 0 {
        return Err(s.st.bail);
    }
    Ok(())
}

impl State {
    pub const fn new() -> State {
        State {
            len: 0,
            pos: 0,
            state: LINE_START,
            bail: 0,
            lines: 0,
            n_items: 0,
            points: 0,
            drops: [0; 3],
            tok_start: 0,
            name: NONE,
            field: NONE,
            nfields: 0,
            num_flags: 0,
            num_digits: 0,
            num_frac: 0,
            acc: 0,
            ts: 0,
            tag_keys: [0; MAX_TAG_KEYS],
            n_tag_keys: 0,
            line_counted: 0,
            line_reason: 0,
            rule: 0,
            cur: LineRec::EMPTY,
            at: LinePos::EMPTY,
            learn: LinePos::EMPTY,
            learn_pending: 0,
            by_token: 0,
            shape_pos: 0,
            n_general: 0,
            general: [0; MAX_LINES as usize],
        }
    }

    /// Resets for a datagram of `len` bytes: the fields read before a
    /// datagram writes them; the rest (the token, the number, the tag keys
    /// past `n_tag_keys`, pass 2's progress) are written first.
    ///
    /// Field by field, not `*self = State::new()`, and by volatile stores:
    /// the compiler makes a memset call of a run of zeros, a byte loop on
    /// the BPF target.
    #[inline(always)]
    pub fn start(&mut self, len: u32) {
        self.len = len;
        let [d0, d1, d2] = &mut self.drops;
        for field in [
            &mut self.pos,
            &mut self.state,
            &mut self.bail,
            &mut self.lines,
            &mut self.n_items,
            &mut self.points,
            &mut self.learn_pending,
            &mut self.by_token,
            &mut self.n_general,
            d0,
            d1,
            d2,
        ] {
            // SAFETY: a valid, aligned u32 field of self.
            unsafe { core::ptr::write_volatile(field, 0) };
        }
        const _: () = assert!(LINE_START == 0);
        self.reset_line();
    }

    #[inline(always)]
    fn reset_line(&mut self) {
        self.name = NONE;
        self.field = NONE;
        self.nfields = 0;
        self.n_tag_keys = 0;
        // The fields' values are read only where `fset` has their bit,
        // and a cap's start only where its len is set.
        self.cur.meas = NONE;
        self.cur.fset = 0;
        let mut k = 0;
        while k < MAX_NAMES {
            self.cur.caps[k].len = UNSET;
            k += 1;
        }
    }

    /// Leaves line `l` (< MAX_LINES) to pass 2.
    #[inline(always)]
    fn leave_to_pass2(&mut self, l: u32) {
        self.general[(self.n_general & (MAX_LINES - 1)) as usize] = l as u8;
        self.n_general += 1;
    }

    #[inline(always)]
    fn begin_token(&mut self, at: u32) {
        self.tok_start = at;
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// Stops the walk: the datagram goes to userspace for `reason`.
#[inline(always)]
fn bail(st: &mut State, reason: u32) -> bool {
    st.bail = reason;
    false
}

/// `WORD_MASK[len][w]`: the bytes of word `w` (bytes `8w..8w+8`) that a
/// name of `len` bytes covers, as a little-endian mask. Rows past NAME_LEN
/// are zero (no exact name is that long): 64 rows, so that `len & 63`
/// indexes it, a bound the verifier sees on the index itself.
static WORD_MASK: [[u64; NAME_WORDS]; 64] = {
    let mut m = [[0u64; NAME_WORDS]; 64];
    let mut len = 0;
    while len <= NAME_LEN {
        let mut j = 0;
        while j < len {
            m[len][j / 8] |= 0xff << ((j % 8) * 8);
            j += 1;
        }
        len += 1;
    }
    m
};
const NAME_WORDS: usize = NAME_LEN / 8;
// eq_name reads a name's bytes as aligned words.
const _: () = assert!(core::mem::offset_of!(Name, bytes).is_multiple_of(8));

/// Whether `len` bytes of `buf` from `start` are exactly `name`.
///
/// Word by word, the bytes past `len` masked by a table load: no branch
/// a byte, which the verifier would walk as a state per length (BPF has no
/// conditional move), and no loop, which it walks once an iteration. The
/// words may reach past the payload into the buffer's tail (see [`Buf`]).
#[inline(always)]
fn eq_name(buf: &Buf, start: u32, len: u32, name: &Name) -> bool {
    // An exact name is at most NAME_LEN long, so len is too past this test;
    // the compiler cannot know it, and keeps the mask below for the
    // verifier (a comparison here would have it drop the mask).
    if name.exact == 0 || name.len != len {
        return false;
    }
    let mask = &WORD_MASK[(len & 63) as usize];
    let mut diff = 0u64;
    let mut w = 0;
    while w < NAME_WORDS {
        // A word at or past `len` is masked whole: where it wraps round
        // the buffer does not matter.
        let a = load_word(buf, start.wrapping_add(w as u32 * 8));
        // SAFETY: bytes is 8-aligned in a Name (asserted above), a Name is
        // 8-aligned (its u64), and word w < NAME_WORDS lies inside bytes.
        let b = u64::from_le(unsafe { *(name.bytes.as_ptr().add(w * 8) as *const u64) });
        diff |= (a ^ b) & mask[w];
        w += 1;
    }
    diff == 0
}

/// The 8 bytes of `buf` from `p`, of any alignment, as a little-endian
/// word: two aligned loads and shifts (the BPF target splits an unaligned
/// load into eight). `p` may reach BUF_LEN only for an empty token, whose
/// bytes no caller keeps.
#[inline(always)]
fn load_word(buf: &Buf, p: u32) -> u64 {
    let at = (p & MASK) as usize & !7;
    let sh = (p & 7) * 8;
    // SAFETY: at <= BUF_LEN - 8, so both words lie in `buf` (BUF_SPACE =
    // BUF_LEN + NAME_LEN bytes), and at is a multiple of 8 from an 8-aligned
    // `buf` (see skip_plain). Any 8 bytes are a valid u64.
    let (w0, w1) = unsafe {
        let w = buf.as_ptr().add(at) as *const u64;
        (u64::from_le(*w), u64::from_le(*w.add(1)))
    };
    // Two shifts for the second word: one of 64 (at sh = 0) is undefined.
    (w0 >> sh) | ((w1 << 1) << (63 - sh))
}

/// Ones in the low `min(rest, 8)` bytes of a word: of a word loaded `rest`
/// bytes before the end of what it reads, the bytes that are within it.
#[inline(always)]
fn bytes_within(rest: u32) -> u64 {
    let d = rest as i32 - 8;
    let n = 8u32.wrapping_add((d & (d >> 31)) as u32); // min(rest, 8)
                                                       // Two shifts: one of 64 (at n = 8) is undefined.
    ((1u64 << (n * 4)) << (n * 4)).wrapping_sub(1)
}

/// The index of the lowest byte of `m` (nonzero, high bits of bytes only)
/// whose high bit is set: its bit, shifted to the byte's low bit, times a
/// multiplier whose top byte then reads the index.
#[inline(always)]
fn lowest_flagged(m: u64) -> u32 {
    let low = (m & m.wrapping_neg()) >> 7;
    (low.wrapping_mul(0x0001_0203_0405_0607) >> 56) as u32
}

/// The [`fingerprint_words`] of the `len` bytes of `buf` from `start`,
/// without a branch (BPF has no conditional move: a branch here would have
/// the verifier walk the rest of the step once per side).
#[inline(always)]
fn token_fp(buf: &Buf, start: u32, len: u32) -> u64 {
    let head = load_word(buf, start) & bytes_within(len);
    // `long` is all ones when len > 8: then the tail is the last 8 bytes,
    // from start + len - 8.
    let d = len.wrapping_sub(8);
    let long = ((8u32.wrapping_sub(len) as i32) >> 31) as u32;
    let tail = load_word(buf, start.wrapping_add(d & long)) & (long as i32 as i64 as u64);
    fingerprint_words(head, tail, len)
}

/// Index of the name in `table[..n]` that the token equals, or NONE.
#[inline(always)]
fn find<const N: usize>(
    buf: &Buf,
    table: &[Name; N],
    n: u32,
    start: u32,
    len: u32,
    fp: u64,
) -> u32 {
    let mut k = 0usize;
    while k < N {
        if k as u32 >= n {
            break;
        }
        let name = &table[k];
        if name.fp == fp && name.len == len && eq_name(buf, start, len, name) {
            return k as u32;
        }
        k += 1;
    }
    NONE
}

/// One call of pass 1: skips the plain bytes of a name (measurement, tag
/// key, field key) or of a tag value or comment eight at a time, then
/// [`step`]s over the next byte. Returns false when the walk is over: the
/// virtual newline past the end was taken, or the datagram goes to
/// userspace (see `st.bail`). Each call takes at least one byte, so
/// `len + 1` calls always finish.
///
/// One token a call; the programs call it four times a callback. Where
/// returns are cheap, more tokens a callback saved nothing measurable;
/// where the kernel sends every return through a thunk (SRSO mitigated),
/// four save about a fifth of a seed line's cost (docs/BENCHMARKS.md,
/// section 10).
#[inline(always)]
pub fn advance(s: &mut Scratch, cfg: &KernelConfig) -> bool {
    let mut pos = s.st.pos;
    if pos > s.st.len {
        return false;
    }
    // SAFETY: the pointer comes from a reference to a u32 field, so it is
    // valid, aligned and initialised; volatile only keeps the compiler from
    // carrying the value over (see step).
    let state = unsafe { core::ptr::read_volatile(&s.st.state) };
    let name = state == MEAS || state == TAG_KEY || state == FIELD_KEY;
    if name || state == TAG_VALUE || state == COMMENT {
        let equals = name || state == TAG_VALUE;
        pos = skip_plain(&s.buf, pos, s.st.len, equals);
        // Through memory: skip_plain's exits leave `pos` with as many
        // ranges as it has paths, and the verifier would walk step once
        // for each; read back from the map value it is one unknown.
        // SAFETY: a u32 field of the scratch, valid and aligned.
        unsafe {
            core::ptr::write_volatile(&mut s.st.pos, pos);
            pos = core::ptr::read_volatile(&s.st.pos);
        }
    }
    if !step(s, cfg, pos) {
        return false;
    }
    s.st.pos = pos + 1;
    pos < s.st.len
}

/// Words a call of [`skip_plain`] looks at: bounded for the verifier,
/// which walks straight-line code cheaply.
const SKIP_WORDS: u32 = 4;

/// The first byte at or after `pos` that may end or break a token (`,`
/// `\` `"`, any byte below `!` (space, `\n`, `\t`, `\r` and NUL among
/// them), with `equals` also `=`), or `len`: where it stops (such a byte,
/// the end of the payload, or SKIP_WORDS words looked at), the byte there
/// is handed to [`step`], which decides. Every byte it skips is one `step`
/// would have passed over without effect; stopping early is always safe.
#[inline(always)]
fn skip_plain(buf: &Buf, pos: u32, len: u32, equals: bool) -> u32 {
    // The high bit of each byte of `w` below `c` (c <= 0x80; exact for the
    // lowest such byte, which is the one used).
    #[inline(always)]
    fn below(w: u64, c: u8) -> u64 {
        w.wrapping_sub(ONES * c as u64) & !w & HIGHS
    }
    // The high bit of each byte of `w` that equals `c` (as exact).
    #[inline(always)]
    fn eq(w: u64, c: u8) -> u64 {
        below(w ^ (ONES * c as u64), 1)
    }
    let mut p = pos;
    let mut k = 0;
    while k < SKIP_WORDS {
        let at = p & !7;
        // An aligned load inside the buffer: `at` is a multiple of 8 and
        // at most BUF_LEN - 8 after the mask.
        let off = (at & MASK) as usize & !7;
        // SAFETY: off = (at & MASK) & !7 is at most BUF_LEN - 8, so the 8
        // bytes read are inside `buf`. The only caller passes `&s.buf`, the
        // first field of a Scratch, which its u64 fields make 8-aligned on
        // the host, and which is a map value, 8-aligned, in the kernel: so
        // buf + off is 8-aligned. Any 8 bytes are a valid u64.
        let w = u64::from_le(unsafe { *(buf.as_ptr().add(off) as *const u64) });
        let mut m = below(w, b'!') | eq(w, b',') | eq(w, b'\\') | eq(w, b'"');
        if equals {
            m |= eq(w, b'=');
        }
        // The bytes from `len` on are not the payload's: flagged, so that
        // the walk stops at `len` without a branch (at <= p <= len, and
        // `at` is len itself, with every byte flagged, only when p is).
        m |= HIGHS & !bytes_within(len - at);
        // Bytes before `p` were taken already.
        let from = p & 7;
        m &= !0u64 << (from * 8);
        // The lowest flagged byte's index (8: none).
        let to = if m != 0 { lowest_flagged(m) } else { 8 };
        if to < 8 {
            return at + to;
        }
        p = at + 8;
        k += 1;
    }
    p
}

/// Advances the parser over byte `i` (past the end: a virtual `\n`).
/// Returns false when the walk must stop (see `st.bail`).
#[inline(always)]
pub fn step(s: &mut Scratch, cfg: &KernelConfig, i: u32) -> bool {
    let c = if i < s.st.len {
        s.buf[(i & MASK) as usize]
    } else {
        b'\n'
    };
    let st = &mut s.st;
    // Read from memory each step: a state the compiler carried in a register
    // from the previous step would be a known constant to the verifier,
    // which would then walk every path of a chunk of steps separately.
    // SAFETY: the pointer comes from a reference to a u32 field, so it is
    // valid, aligned and initialised.
    let state = unsafe { core::ptr::read_volatile(&st.state) };
    match state {
        LINE_START => match c {
            b'\n' => {}
            b'#' => st.state = COMMENT,
            b' ' | b'\t' | b'\r' | b'"' => return bail(st, counter::PASS_UNSUPPORTED),
            b',' | 0 => return bail(st, counter::PASS_INVALID),
            b'\\' => return bail(st, counter::PASS_ESCAPE),
            _ => {
                st.begin_token(i);
                st.at.start = i;
                st.state = MEAS;
            }
        },
        COMMENT => match c {
            b'\n' => {
                st.state = LINE_START;
                st.by_token = 0;
            }
            // Like InfluxDB's scanLine, userspace carries a comment over a
            // newline inside a quoted string (after ` ` and `=`) or after a
            // backslash: it may swallow the lines that follow.
            b'"' => return bail(st, counter::PASS_UNSUPPORTED),
            b'\\' => return bail(st, counter::PASS_ESCAPE),
            _ => {}
        },
        MEAS => match c {
            b',' | b' ' => {
                let len = i - st.tok_start;
                let fp = token_fp(&s.buf, st.tok_start, len);
                let mut m = NONE;
                let mut k = 0usize;
                while k < MAX_MEASUREMENTS {
                    if k as u32 >= cfg.n_measurements {
                        break;
                    }
                    let name = &cfg.measurements[k];
                    if name.fp == fp && name.len == len {
                        // A userspace-only rule's measurement may be known
                        // by fingerprint alone: enough to hand the datagram over,
                        // never to count.
                        if cfg.measurement_userspace[k] != 0 {
                            return bail(st, counter::PASS_USERSPACE_RULE);
                        }
                        if eq_name(&s.buf, st.tok_start, len, name) {
                            m = k as u32;
                            break;
                        }
                    }
                    k += 1;
                }
                st.cur.meas = m;
                st.state = if c == b',' { TAG_KEY } else { FIELD_KEY };
                st.begin_token(i + 1);
            }
            b'\\' => return bail(st, counter::PASS_ESCAPE),
            b'\n' => return bail(st, counter::PASS_INVALID),
            // Ordinary bytes in names to InfluxDB 1.x: valid, for userspace.
            b'\t' | 0 => return bail(st, counter::PASS_UNSUPPORTED),
            b'\r' | b'"' => return bail(st, counter::PASS_UNSUPPORTED),
            _ => {}
        },
        TAG_KEY => match c {
            b'=' => {
                if i == st.tok_start {
                    return bail(st, counter::PASS_INVALID);
                }
                // A key twice is an error in InfluxDB (scanKey's "duplicate
                // tags"); equal fingerprints go to userspace, which compares
                // keys.
                let len = i - st.tok_start;
                let fp = token_fp(&s.buf, st.tok_start, len);
                let mut k = 0usize;
                while k < MAX_TAG_KEYS {
                    if (k as u32) < st.n_tag_keys && st.tag_keys[k] == fp {
                        return bail(st, counter::PASS_UNSUPPORTED);
                    }
                    k += 1;
                }
                match st.tag_keys.get_mut(st.n_tag_keys as usize) {
                    Some(slot) => *slot = fp,
                    None => return bail(st, counter::PASS_UNSUPPORTED),
                }
                st.n_tag_keys += 1;
                st.name = find(&s.buf, &cfg.names, cfg.n_names, st.tok_start, len, fp);
                st.state = TAG_VALUE;
                st.begin_token(i + 1);
            }
            b',' | b' ' | b'\n' => return bail(st, counter::PASS_INVALID),
            b'\\' => return bail(st, counter::PASS_ESCAPE),
            b'\r' | b'"' | b'\t' => return bail(st, counter::PASS_UNSUPPORTED),
            _ => {}
        },
        TAG_VALUE => match c {
            b',' | b' ' => {
                if i == st.tok_start {
                    return bail(st, counter::PASS_INVALID);
                }
                let t = st.n_tag_keys.wrapping_sub(1) as usize;
                if let Some(v) = st.at.values.get_mut(t) {
                    *v = Cap {
                        start: st.tok_start,
                        len: i - st.tok_start,
                    };
                }
                if let Some(n) = st.at.names.get_mut(t) {
                    *n = st.name;
                }
                // A repeated key went to userspace at its `=`.
                if let Some(cap) = st.cur.caps.get_mut(st.name as usize) {
                    if cap.len == UNSET {
                        *cap = Cap {
                            start: st.tok_start,
                            len: i - st.tok_start,
                        };
                    }
                }
                st.name = NONE;
                st.state = if c == b',' { TAG_KEY } else { FIELD_KEY };
                st.begin_token(i + 1);
            }
            b'\n' => return bail(st, counter::PASS_INVALID),
            b'\t' => return bail(st, counter::PASS_UNSUPPORTED),
            // An `=` may start a value in InfluxDB 1.x, nowhere else in it
            // (scanTagsValue's "invalid tag format").
            b'=' if i == st.tok_start => return bail(st, counter::PASS_UNSUPPORTED),
            b'=' => return bail(st, counter::PASS_INVALID),
            b'\\' => return bail(st, counter::PASS_ESCAPE),
            b'\r' | b'"' => return bail(st, counter::PASS_UNSUPPORTED),
            _ => {}
        },
        FIELD_KEY => match c {
            b'=' => {
                if i == st.tok_start {
                    return bail(st, counter::PASS_INVALID);
                }
                let len = i - st.tok_start;
                let fp = token_fp(&s.buf, st.tok_start, len);
                st.field = find(&s.buf, &cfg.fields, cfg.n_fields, st.tok_start, len, fp);
                st.at.field = st.field;
                st.at.field_value = i + 1;
                st.num_flags = 0;
                st.num_digits = 0;
                st.num_frac = 0;
                st.acc = 0;
                st.state = FIELD_VALUE;
            }
            // A second space (or a NUL, whitespace to InfluxDB there) before
            // the fields is valid but not taken here.
            b' ' | 0 if i == st.tok_start => return bail(st, counter::PASS_UNSUPPORTED),
            b',' | b' ' | b'\n' => return bail(st, counter::PASS_INVALID),
            b'\\' => return bail(st, counter::PASS_ESCAPE),
            b'\r' | b'"' | b'\t' => return bail(st, counter::PASS_UNSUPPORTED),
            _ => {}
        },
        FIELD_VALUE => match c {
            b'0'..=b'9' => {
                if st.num_flags & NUM_INT != 0 {
                    return bail(st, counter::PASS_INVALID);
                }
                if st.num_flags & NUM_DOT != 0 {
                    st.num_frac += 1;
                    if c != b'0' {
                        st.num_flags |= NUM_FRAC_NONZERO;
                    }
                } else {
                    st.num_digits += 1;
                    if st.num_digits <= SUM_DIGITS {
                        st.acc = st.acc * 10 + (c - b'0') as i64;
                    }
                }
            }
            b'-' => {
                if st.num_flags != 0 || st.num_digits != 0 {
                    return bail(st, counter::PASS_INVALID);
                }
                st.num_flags = NUM_NEG;
            }
            b'.' => {
                if st.num_flags & (NUM_DOT | NUM_INT) != 0 || st.num_digits == 0 {
                    return bail(st, counter::PASS_INVALID);
                }
                st.num_flags |= NUM_DOT;
            }
            b'i' => {
                if st.num_flags & (NUM_DOT | NUM_INT) != 0 || st.num_digits == 0 {
                    return bail(st, counter::PASS_INVALID);
                }
                st.num_flags |= NUM_INT;
            }
            b',' | b' ' | b'\n' => {
                // What learn takes: one field, a plain integer of at most
                // FAST_DIGITS digits, the line's end or a timestamp after.
                let learnable =
                    st.nfields == 0 && st.num_flags == 0 && st.num_digits <= FAST_DIGITS;
                if !end_field_value(st) {
                    return false;
                }
                st.at.plain_field = learnable as u32;
                if learnable && c == b'\n' {
                    learn_line(st);
                }
                match c {
                    b',' => {
                        st.state = FIELD_KEY;
                        st.begin_token(i + 1);
                    }
                    b' ' => {
                        st.state = TIMESTAMP;
                        st.num_flags = 0;
                        st.num_digits = 0;
                        st.ts = 0;
                    }
                    _ => return end_line(st, &mut s.lines),
                }
            }
            // Strings, booleans and exponents: valid, but for userspace.
            b'"' | b't' | b'T' | b'f' | b'F' | b'e' | b'E' | b'\r' => {
                return bail(st, counter::PASS_UNSUPPORTED)
            }
            _ => return bail(st, counter::PASS_INVALID),
        },
        TIMESTAMP => match c {
            b'0'..=b'9' => {
                st.num_digits += 1;
                if st.num_digits <= TS_DIGITS {
                    st.ts = st.ts * 10 + (c - b'0') as u64;
                }
            }
            b'-' if st.num_digits == 0 && st.num_flags == 0 => st.num_flags = NUM_NEG,
            b'\n' => {
                // No digits: trailing spaces (valid; for userspace). Past
                // InfluxDB's range or 20+ digits: userspace decides.
                if st.num_digits == 0 || st.num_digits > TS_DIGITS || st.ts > TS_LIMIT {
                    return bail(st, counter::PASS_UNSUPPORTED);
                }
                if st.at.plain_field != 0 && st.num_flags == 0 {
                    learn_line(st);
                }
                return end_line(st, &mut s.lines);
            }
            b' ' | b'\r' => return bail(st, counter::PASS_UNSUPPORTED),
            _ => return bail(st, counter::PASS_INVALID),
        },
        _ => return bail(st, counter::PASS_INTERNAL),
    }
    true
}

/// Checks the number that just ended and keeps it when it is a summed field.
#[inline(always)]
fn end_field_value(st: &mut State) -> bool {
    let f = st.num_flags;
    if st.num_digits == 0 {
        return bail(st, counter::PASS_INVALID);
    }
    if f & NUM_DOT != 0 && st.num_frac == 0 {
        // `1.` is a float to InfluxDB 1.x (scanNumber): valid, for userspace.
        return bail(st, counter::PASS_UNSUPPORTED);
    }
    if f & NUM_INT != 0 && st.num_digits > INT_DIGITS {
        // May be out of i64/u64 range: userspace decides.
        return bail(st, counter::PASS_UNSUPPORTED);
    }
    if st.num_digits > FLOAT_DIGITS {
        // A float that may be out of f64's range: userspace decides.
        return bail(st, counter::PASS_UNSUPPORTED);
    }
    st.nfields += 1;
    if st.field != NONE && st.field < MAX_FIELDS as u32 {
        let bit = 1u32 << st.field;
        // Of a repeated field userspace sums the last, as Kapacitor's
        // Fields map keeps it: not decided here.
        if st.cur.fset & bit != 0 {
            return bail(st, counter::PASS_UNSUPPORTED);
        }
        {
            if f & NUM_FRAC_NONZERO != 0 {
                return bail(st, counter::PASS_FRACTION);
            }
            // Past MAX_SUMMED a cell's sum could wrap: userspace sums it.
            if st.num_digits > SUM_DIGITS || st.acc > MAX_SUMMED {
                return bail(st, counter::PASS_LARGE_VALUE);
            }
            let v = if f & NUM_NEG != 0 { -st.acc } else { st.acc };
            if let Some(slot) = st.cur.fvals.get_mut(st.field as usize) {
                *slot = v;
            }
            st.cur.fset |= bit;
        }
    }
    st.field = NONE;
    true
}

/// The line that ends is one [`learn`] takes: the datagram's first such
/// line is kept for it.
#[inline(always)]
fn learn_line(st: &mut State) {
    if st.learn_pending == 0 {
        st.at.meas = st.cur.meas;
        st.at.n_tags = st.n_tag_keys;
        st.learn = st.at;
        st.learn_pending = 1;
    }
}

/// A valid line ended: keep its record for pass 2.
#[inline(always)]
fn end_line(st: &mut State, lines: &mut [LineRec; MAX_LINES as usize]) -> bool {
    if st.lines >= MAX_LINES {
        return bail(st, counter::PASS_TOO_MANY_LINES);
    }
    lines[(st.lines & (MAX_LINES - 1)) as usize] = st.cur;
    st.leave_to_pass2(st.lines);
    st.lines += 1;
    st.reset_line();
    st.state = LINE_START;
    st.by_token = 0;
    true
}

/// Most digits of the field's value that [`fast_line`] takes: they and the
/// byte after them are in one word.
const FAST_DIGITS: u32 = 7;

/// Calls of pass 1 that finish a payload of `len` bytes: each call takes a
/// byte or more (the virtual newline past the end included), but for the
/// calls that find the line at `pos` off the shape, once a line.
#[inline(always)]
pub fn pass1_calls(len: u32) -> u32 {
    2 * (len + 1)
}

/// The shape's part of a call of pass 1: Some(whether the walk goes on)
/// when it took the line at `pos` by the shape, or found it off the shape
/// and marked it `by_token`; None when the line is `by_token`, for
/// [`advance`]. Apart, the two parts are checked apart by the verifier: a
/// shape's every way out leading into the token steps had it walk those
/// once a way.
#[inline(always)]
pub fn try_shape(s: &mut Scratch, cfg: &KernelConfig) -> Option<bool> {
    // SAFETY: a u32 field of the scratch, valid and aligned; volatile, so
    // that the verifier sees one unknown, not the value of a branch.
    if unsafe { core::ptr::read_volatile(&s.st.by_token) } != 0 {
        return None;
    }
    if fast_line(s, cfg) {
        Some(s.st.pos <= s.st.len)
    } else {
        s.st.by_token = 1;
        Some(true)
    }
}

/// Whether the 19 digits at `t` are at most TS_LIMIT (9223372036854775806),
/// compared as strings of equal length: big-endian words of 8, 8 and 3
/// bytes.
#[inline(always)]
fn ts19_in_range(buf: &Buf, t: u32) -> bool {
    const A: u64 = u64::from_be_bytes(*b"92233720");
    const B: u64 = u64::from_be_bytes(*b"36854775");
    const C: u64 = u64::from_be_bytes(*b"806\0\0\0\0\0");
    const _: () = assert!(TS_LIMIT == 9_223_372_036_854_775_806);
    let a = load_word(buf, t).swap_bytes();
    let b = load_word(buf, t + 8).swap_bytes();
    let c = (load_word(buf, t + 16) & 0xff_ffff).swap_bytes();
    a < A || (a == A && (b < B || (b == B && c <= C)))
}

/// The digits from `p`: how many (0-8; 8 when the word's 8 bytes are all
/// digits) and the word, each byte less `0`.
#[inline(always)]
fn digit_run(buf: &Buf, p: u32, len: u32) -> (u32, u64) {
    // A byte is a digit when it is 0-9 after the xor: flagged when it is
    // 10 or more, exactly for each byte (no carry crosses bytes), and so is
    // every byte past the payload.
    let w = load_word(buf, p) ^ (ONES * b'0' as u64);
    let mut m = (((w & !HIGHS) + ONES * (0x80 - 10)) | w) & HIGHS;
    m |= HIGHS & !bytes_within(len.wrapping_sub(p));
    if m == 0 {
        return (8, w);
    }
    (lowest_flagged(m), w)
}

/// Takes the shape of `st.learn` into its slot of `s.shapes`: after pass 1, for the
/// datagrams that follow (on this CPU, under this config). A shape with a
/// piece longer than a [`Name`] holds is not taken.
#[inline(always)]
pub fn learn(s: &mut Scratch, cfg: &KernelConfig) {
    let l = s.st.learn;
    if s.st.learn_pending == 0 || l.n_tags as usize > MAX_TAG_KEYS {
        return;
    }
    let sh = &mut s.shapes[shape_slot(&s.buf, l.start)];
    // Unusable while it is written.
    sh.version = 0;
    let mut from = l.start;
    let mut k = 0usize;
    while k < SHAPE_PIECES {
        let (to, next) = if k < l.n_tags as usize && k < MAX_TAG_KEYS {
            let v = l.values[k];
            (v.start, v.start.wrapping_add(v.len))
        } else {
            (l.field_value, 0)
        };
        let len = to.wrapping_sub(from);
        if len == 0 || len as usize > NAME_LEN {
            return;
        }
        let piece = &mut sh.pieces[k];
        piece.len = len;
        piece.exact = 1;
        let mut w = 0;
        while w < NAME_WORDS {
            let word = load_word(&s.buf, from.wrapping_add(w as u32 * 8));
            // SAFETY: bytes is 8-aligned in a Name (asserted at eq_name)
            // and word w < NAME_WORDS lies inside it.
            unsafe { *(piece.bytes.as_mut_ptr().add(w * 8) as *mut u64) = word.to_le() };
            w += 1;
        }
        if k >= l.n_tags as usize {
            break;
        }
        from = next;
        k += 1;
    }
    sh.n_tags = l.n_tags;
    sh.names = l.names;
    sh.meas = l.meas;
    sh.field = l.field;
    sh.version = cfg.version;
}

/// Parses the line at `st.pos` by the learned shape, when it has it: the
/// shape's pieces, a plain tag value after each but the last, and an
/// integer of 1 to FAST_DIGITS digits ending the line or followed by a
/// timestamp of 1 to TS_DIGITS digits within InfluxDB's range. Its record is what
/// the token-by-token parse would make: the pieces are bytes of a line
/// that parse took, and a value ends at the first byte that would end or
/// break its token there. Returns false, changing nothing pass 2 reads,
/// for any other line, which [`advance`] then takes a token at a time.
#[inline(always)]
pub fn fast_line(s: &mut Scratch, cfg: &KernelConfig) -> bool {
    // SAFETY: a u32 field of the scratch, valid and aligned; volatile as
    // in step.
    let state = unsafe { core::ptr::read_volatile(&s.st.state) };
    if state != LINE_START {
        return false;
    }
    // Through memory: one unknown index for the verifier.
    // SAFETY: a u32 field of the scratch, valid and aligned.
    let slot = unsafe {
        core::ptr::write_volatile(&mut s.st.shape_pos, shape_slot(&s.buf, s.st.pos) as u32);
        core::ptr::read_volatile(&s.st.shape_pos)
    };
    let sh = &s.shapes[slot as usize & (SHAPES - 1)];
    if sh.version != cfg.version || sh.version == 0 {
        return false;
    }
    let (len, n) = (s.st.len, s.st.lines);
    if n >= MAX_LINES || sh.n_tags as usize > MAX_TAG_KEYS {
        return false;
    }
    let rec = &mut s.lines[(n & (MAX_LINES - 1)) as usize];
    rec.meas = sh.meas;
    rec.fset = 0;
    let mut k = 0;
    while k < MAX_NAMES {
        rec.caps[k].len = UNSET;
        k += 1;
    }
    let mut p = s.st.pos;
    let mut t = 0usize;
    while t < MAX_TAG_KEYS {
        if t as u32 >= sh.n_tags {
            break;
        }
        let piece = &sh.pieces[t];
        if p + piece.len > len || !eq_name(&s.buf, p, piece.len, piece) {
            return false;
        }
        p += piece.len;
        let q = skip_plain(&s.buf, p, len, true);
        // Through memory, as in advance: one unknown, not a range for
        // each of skip_plain's exits.
        // SAFETY: a u32 field of the scratch, valid and aligned.
        let q = unsafe {
            core::ptr::write_volatile(&mut s.st.shape_pos, q);
            core::ptr::read_volatile(&s.st.shape_pos)
        };
        if q <= p {
            return false;
        }
        if let Some(cap) = rec.caps.get_mut(sh.names[t] as usize) {
            *cap = Cap {
                start: p,
                len: q - p,
            };
        }
        p = q;
        t += 1;
    }
    // The loop's exits (one a tag count) leave `p` and `t` with ranges of
    // their own, and the verifier would walk what follows once for each:
    // through memory, `p` is one unknown, and `n_tags` is `t` (t stopped
    // at it, at most MAX_TAG_KEYS).
    // SAFETY: u32 fields of the scratch, valid and aligned.
    let (mut p, t) = unsafe {
        core::ptr::write_volatile(&mut s.st.shape_pos, p);
        (
            core::ptr::read_volatile(&s.st.shape_pos),
            core::ptr::read_volatile(&sh.n_tags) as usize,
        )
    };
    let Some(piece) = sh.pieces.get(t) else {
        return false;
    };
    if p + piece.len > len || !eq_name(&s.buf, p, piece.len, piece) {
        return false;
    }
    p += piece.len;
    let (digits, w) = digit_run(&s.buf, p, len);
    if digits == 0 || digits > FAST_DIGITS {
        return false;
    }
    let mut end = p + digits;
    if end < len && s.buf[(end & MASK) as usize] == b' ' {
        // A timestamp: 1 to TS_DIGITS digits within InfluxDB's range
        // (anything else, a sign among them, for the token steps).
        let t = end + 1;
        let (a, _) = digit_run(&s.buf, t, len);
        let ts_digits = if a < 8 {
            a
        } else {
            let (b, _) = digit_run(&s.buf, t + 8, len);
            if b < 8 {
                8 + b
            } else {
                16 + digit_run(&s.buf, t + 16, len).0
            }
        };
        if ts_digits == 0
            || ts_digits > TS_DIGITS
            || (ts_digits == TS_DIGITS && !ts19_in_range(&s.buf, t))
        {
            return false;
        }
        end = t + ts_digits;
    }
    // Through memory: one unknown for what follows, not a range for each
    // way here.
    // SAFETY: a u32 field of the scratch, valid and aligned.
    let end = unsafe {
        core::ptr::write_volatile(&mut s.st.shape_pos, end);
        core::ptr::read_volatile(&s.st.shape_pos)
    };
    if end < len && s.buf[(end & MASK) as usize] != b'\n' {
        return false;
    }
    // The digits, first the most significant, right-aligned in a word and
    // summed in pairs, fours and eights.
    let keep = ((1u64 << (digits * 4)) << (digits * 4)).wrapping_sub(1);
    let mut x = (w & keep) << ((8 - digits) * 8);
    x = ((x & 0x0f0f_0f0f_0f0f_0f0f).wrapping_mul(2561)) >> 8;
    x = ((x & 0x00ff_00ff_00ff_00ff).wrapping_mul(6_553_601)) >> 16;
    x = ((x & 0x0000_ffff_0000_ffff).wrapping_mul(42_949_672_960_001)) >> 32;
    if let Some(v) = rec.fvals.get_mut(sh.field as usize) {
        *v = x as i64;
        rec.fset = 1 << (sh.field & 31);
    }
    if !decide_one_rule(s, cfg, n) {
        s.st.leave_to_pass2(n);
    }
    s.st.lines = n + 1;
    s.st.pos = end + 1;
    true
}

/// Pass 2's decision for line `l`, made in pass 1 when at most one rule
/// may take it and that rule has no filter (every rule of a config
/// without filters that gives a measurement one rule): the line's item,
/// or its drop reason, as [`eval_rule`] would make them. False, having
/// changed nothing, leaves the line to pass 2.
#[inline(always)]
fn decide_one_rule(s: &mut Scratch, cfg: &KernelConfig, l: u32) -> bool {
    let line = &s.lines[(l & (MAX_LINES - 1)) as usize];
    let st = &mut s.st;
    let Some(mask) = cfg.measurement_rules.get(line.meas as usize) else {
        st.drops[DROP_UNKNOWN] += 1;
        return true;
    };
    // The rules pass 2 would look at: those of the first rules_per_line.
    let m = mask & ((1u32 << rules_per_line(cfg)) - 1) & 0xff;
    if m == 0 {
        st.drops[DROP_FILTERED] += 1;
        return true;
    }
    if m & (m - 1) != 0 {
        return false;
    }
    // The index of m's one bit.
    let r = (((m & 0xf0) != 0) as usize) << 2
        | (((m & 0xcc) != 0) as usize) << 1
        | ((m & 0xaa) != 0) as usize;
    let spec = &cfg.rules[r & (MAX_RULES - 1)];
    if spec.flags & RULE_ENABLED == 0 {
        st.drops[DROP_FILTERED] += 1;
        return true;
    }
    if spec.n_filters != 0 {
        return false;
    }
    let Some(value) = counted_value(line, spec) else {
        st.drops[DROP_MISSING_FIELD] += 1;
        return true;
    };
    let idx = st.n_items as usize;
    if idx >= MAX_ITEMS {
        return false;
    }
    // Past n_items, what fill_item writes is not read unless the item is
    // taken: pass 2 writes it again.
    if !fill_item(&mut s.items[idx], line, spec, value, 1) {
        return false;
    }
    st.n_items += 1;
    st.points += 1;
    true
}

/// What rule `spec` counts for `line`: 1, or the summed field's value;
/// None when the line lacks that field.
#[inline(always)]
fn counted_value(line: &LineRec, spec: &RuleSpec) -> Option<i64> {
    if spec.flags & RULE_SUM == 0 {
        return Some(1);
    }
    let f = spec.field as usize & (MAX_FIELDS - 1);
    if line.fset & (1 << f) == 0 {
        return None;
    }
    Some(line.fvals[f])
}

/// Writes the item rule `spec` makes of `line`. Returns whether its group
/// key fits in KEY_DATA bytes.
#[inline(always)]
fn fill_item(item: &mut Item, line: &LineRec, spec: &RuleSpec, value: i64, owner: u32) -> bool {
    item.rule = spec.id;
    item.value = value;
    item.owner = owner;
    item.committed = 0;
    let mut key_len = 0u32;
    let mut g = 0usize;
    while g < MAX_GROUP {
        if g as u32 >= spec.n_group {
            break;
        }
        let cap = line.cap(spec.group[g]);
        let len = if cap.len == UNSET { 0 } else { cap.len };
        key_len += KEY_LEN_PREFIX as u32 + len;
        item.slots[g] = cap;
        g += 1;
    }
    item.n_group = g as u32;
    key_len <= KEY_DATA as u32
}

/// Calls of pass 2 per line: one per rule slot the config uses.
#[inline(always)]
pub fn rules_per_line(cfg: &KernelConfig) -> u32 {
    cfg.n_rules.clamp(1, MAX_RULES as u32)
}

/// Pass 2 for rule `r` of line `l`: whether the rule takes the line, as an
/// [`Item`] appended. Called for each line, for `r` in
/// `0..rules_per_line(cfg)` in order: the line's outcome (a point, or a
/// drop reason) is settled at its last rule.
///
/// One rule a call, not one line: what a rule decides would otherwise be
/// carried in registers to the next rule, and the verifier walk every
/// combination of eight rules' outcomes (it exceeded its million
/// instructions so). Between calls the line's progress is in the scratch,
/// which the verifier does not track.
/// Returns false when the datagram must go to userspace (see `bail`).
#[inline(always)]
pub fn eval_rule(s: &mut Scratch, cfg: &KernelConfig, l: u32, r: u32) -> bool {
    let line = &s.lines[(l & (MAX_LINES - 1)) as usize];
    let st = &mut s.st;
    let last = r + 1 >= rules_per_line(cfg);
    if r == 0 {
        st.line_counted = 0;
        st.line_reason = DROP_FILTERED as u32;
    }
    let mask = match cfg.measurement_rules.get(line.meas as usize) {
        Some(m) => *m,
        None => {
            if last {
                st.drops[DROP_UNKNOWN] += 1;
            }
            return true;
        }
    };
    // The mask is for the verifier, which does not know r < MAX_RULES; the
    // compiler does (r is a remainder of rules_per_line), and would drop a
    // mask of the value it knows: so the mask is of a copy it does not.
    st.rule = r;
    // SAFETY: a u32 field of the scratch, valid and aligned.
    let r = unsafe { core::ptr::read_volatile(&st.rule) } as usize & (MAX_RULES - 1);
    let spec = &cfg.rules[r];
    let mut take = mask & (1 << r) != 0 && spec.flags & RULE_ENABLED != 0;
    let mut k = 0usize;
    while take && k < MAX_FILTERS {
        if k as u32 >= spec.n_filters {
            break;
        }
        let cap = line.cap(spec.filter_name[k]);
        take = cap.len != UNSET && eq_name(&s.buf, cap.start, cap.len, &spec.filter_value[k]);
        k += 1;
    }
    let mut value = 1;
    if take {
        match counted_value(line, spec) {
            Some(v) => value = v,
            None => {
                st.line_reason = DROP_MISSING_FIELD as u32;
                take = false;
            }
        }
    }
    if take {
        let idx = st.n_items as usize;
        if idx >= MAX_ITEMS {
            return bail(st, counter::PASS_TOO_MANY_LINES);
        }
        let owner = (st.line_counted == 0) as u32;
        if !fill_item(&mut s.items[idx], line, spec, value, owner) {
            return bail(st, counter::PASS_KEY_TOO_LONG);
        }
        st.n_items += 1;
        st.line_counted = 1;
    }
    if last {
        if st.line_counted != 0 {
            st.points += 1;
        } else if st.line_reason == DROP_MISSING_FIELD as u32 {
            st.drops[DROP_MISSING_FIELD] += 1;
        } else {
            st.drops[DROP_FILTERED] += 1;
        }
    }
    true
}

/// Words of a group key's data.
const KEY_WORDS: usize = KEY_DATA / 8;
// build_key writes the data as aligned words.
const _: () =
    assert!(core::mem::offset_of!(GroupKey, data).is_multiple_of(8) && KEY_DATA.is_multiple_of(8));

/// Writes an item's group key: per group tag, a u16 LE length and the value
/// bytes from the buffer. All of `key` is written, zero past the key's
/// bytes (keys hash whole), so it needs no clearing first.
///
/// A word at a time: the bytes go in as words or-ed into the data's words
/// at their offset. A byte at a time cost a store and a load a byte, and
/// clearing the key first a call of the target's memset, which is a byte
/// loop too.
#[inline(always)]
pub fn build_key(buf: &Buf, item: &Item, key: &mut GroupKey) {
    key.rule = item.rule;
    let data = key.data.as_mut_ptr() as *mut u64;
    let mut w = 0;
    while w < KEY_WORDS {
        // Volatile: plain stores of zero the compiler makes a memset call.
        // SAFETY: word w < KEY_WORDS of `data`, which is 8-aligned (asserted
        // above; GroupKey is 8-aligned).
        unsafe { core::ptr::write_volatile(data.add(w), 0) };
        w += 1;
    }
    let mut off = 0u32;
    let mut g = 0usize;
    while g < MAX_GROUP {
        if g as u32 >= item.n_group {
            break;
        }
        let cap = item.slots[g];
        let len = if cap.len == UNSET { 0 } else { cap.len };
        put_bytes(data, off, len as u64);
        off += KEY_LEN_PREFIX as u32;
        let mut j = 0u32;
        while j < KEY_DATA as u32 {
            if j >= len {
                break;
            }
            // The value's next 8 bytes or fewer, zero above.
            let keep = bytes_within(len - j);
            put_bytes(data, off + j, load_word(buf, cap.start + j) & keep);
            j += 8;
        }
        off += len;
        g += 1;
    }
    key.len = off;
}

/// Ors the bytes of `v` (little-endian) into the key data from byte `off`.
/// eval_rule checked that every key fits in KEY_DATA bytes, so what would
/// pass the last word is zero, and the mask that wraps it to the first
/// word (for the verifier, which cannot follow that) adds nothing.
#[inline(always)]
fn put_bytes(data: *mut u64, off: u32, v: u64) {
    let w = ((off >> 3) as usize) & (KEY_WORDS - 1);
    let sh = (off & 7) * 8;
    // SAFETY: w and (w + 1) & (KEY_WORDS - 1) are words of `data`, the
    // 8-aligned KEY_WORDS words of a GroupKey the caller borrows mutably.
    unsafe {
        *data.add(w) |= v << sh;
        // Two shifts: one of 64 (at sh = 0) is undefined.
        *data.add((w + 1) & (KEY_WORDS - 1)) |= (v >> 1) >> (63 - sh);
    }
}

#[cfg(test)]
mod tests;
