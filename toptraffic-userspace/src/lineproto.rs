//! InfluxDB line protocol parser: zero-copy, no allocation per line.
//!
//! It accepts exactly the lines InfluxDB 1.x's `models` package accepts (the
//! one Kapacitor 1.5.7 parses its UDP input with) and reads them the same
//! way; the Go function each rule comes from is named beside it, and
//! `tests/influxd.rs` checks the result against a real influxd 1.6. Where
//! influxd 1.6's later copy differs, Kapacitor's rules hold, but for a
//! backslash ending a datagram, on which Kapacitor's panics (see
//! `line_end`); 1.6 also rejects field sets its field iterator cannot split
//! (`walkFields`), which Kapacitor reads skipping the field.
//!
//! A datagram is cut into lines as `scanLine` cuts it (a `\n` inside a quoted
//! field string, or right after a backslash, does not end a line); blank
//! lines, lines of whitespace (space, tab, NUL) and `#` comments are skipped
//! (`ParsePointsWithPrecision`). Each other line is validated whole before it
//! is returned, so a malformed line is one [`ParseError`] and the walk goes on
//! with the next line, as the `models` package returns the good points beside
//! the error.
//!
//! The rules, briefly (`parsePoint`):
//! - A backslash makes the byte after it ordinary, whatever both are: `a\\,b`
//!   does not end the measurement at the comma (`scanMeasurement`,
//!   `scanTagsKey`, `scanTagsValue`). A name cannot end in a backslash.
//! - Unescaping drops a backslash only before a byte its section escapes;
//!   every other backslash stays, so `a\\b` reads `a\\b`: measurement
//!   `\,` `\"` `\ ` `\=` (`escape.Unescape`, `Point.Name`); tag keys and values
//!   `\,` `\ ` `\=` (`unescapeTag`); field keys `\,` `\"` `\ ` `\=`
//!   (`escape.AppendUnescaped`); strings `\"` `\\` (`unescapeStringField`).
//! - Tags: non-empty keys and values, an unescaped `=` in a value is an
//!   error (a value may start with `=`), no key twice (`scanTags`, `scanKey`).
//! - Fields: `scanFields`, with numbers as `scanNumber` takes them (`-?` digits
//!   with at most one `.`, `1.` and `.5` included; exponents; `Ni` integers
//!   within i64; no `u`, `+`, NaN or infinities; out of range is an error) and
//!   booleans as `scanBoolean` does. A repeated field key is allowed; the last
//!   one wins, as in the `Fields` map Kapacitor reads.
//! - Timestamp: an optional integer within InfluxDB's range (`scanTime`,
//!   `SafeCalcTime`), then only spaces. `\r` is an ordinary byte: a line
//!   ending in `\r\n` is not taken for one ending in `\n`.

use std::fmt;

/// Longest series key (measurement and tags as written), `MaxKeyLength`.
pub const MAX_KEY_LEN: usize = 65535;
/// Earliest and latest timestamps InfluxDB stores (`MinNanoTime`,
/// `MaxNanoTime`): the two lowest and the highest i64 are its sentinels.
pub const MIN_TIME: i64 = i64::MIN + 2;
pub const MAX_TIME: i64 = i64::MAX - 1;

/// Which bytes a backslash escapes when a section is unescaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EscapeSet {
    /// Measurement (`escape.Unescape`) and field keys
    /// (`escape.AppendUnescaped`): `\,` `\"` `\ ` `\=`.
    Name,
    /// Tag keys and values (`unescapeTag`): `\,` `\ ` `\=`.
    Tag,
    /// Quoted string field values (`unescapeStringField`): `\"` `\\`.
    Str,
}

impl EscapeSet {
    #[inline]
    fn escapes(self, c: u8) -> bool {
        match self {
            EscapeSet::Name => matches!(c, b',' | b'"' | b' ' | b'='),
            EscapeSet::Tag => matches!(c, b',' | b' ' | b'='),
            EscapeSet::Str => matches!(c, b'"' | b'\\'),
        }
    }
}

/// A name or value as it stands in the datagram, possibly with escapes.
#[derive(Clone, Copy)]
pub struct Escaped<'a> {
    raw: &'a [u8],
    set: EscapeSet,
    has_escapes: bool,
}

impl<'a> Escaped<'a> {
    fn new(raw: &'a [u8], set: EscapeSet) -> Self {
        let has_escapes = memchr(b'\\', raw).is_some();
        Escaped {
            raw,
            set,
            has_escapes,
        }
    }

    /// The bytes as written, escapes included.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether unescaping changes nothing: the raw bytes are the value.
    pub fn is_plain(&self) -> bool {
        !self.has_escapes
    }

    /// The unescaped bytes, one at a time.
    pub fn bytes(&self) -> Unescape<'a> {
        Unescape {
            raw: self.raw,
            pos: 0,
            set: self.set,
        }
    }

    /// Compares the unescaped value with `other` without allocating.
    pub fn eq_bytes(&self, other: &[u8]) -> bool {
        if !self.has_escapes {
            return self.raw == other;
        }
        let mut it = self.bytes();
        for &b in other {
            if it.next() != Some(b) {
                return false;
            }
        }
        it.next().is_none()
    }

    /// Appends the unescaped value to `out`.
    pub fn unescape_into(&self, out: &mut Vec<u8>) {
        if self.has_escapes {
            out.extend(self.bytes());
        } else {
            out.extend_from_slice(self.raw);
        }
    }

    /// Length of the unescaped value.
    pub fn unescaped_len(&self) -> usize {
        if self.has_escapes {
            self.bytes().count()
        } else {
            self.raw.len()
        }
    }

    /// The unescaped value as an owned string (lossy for invalid UTF-8).
    /// For tests, errors and the API, never the hot path.
    pub fn to_string_lossy(&self) -> String {
        let mut v = Vec::with_capacity(self.raw.len());
        self.unescape_into(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

/// Iterator over the unescaped bytes of an [`Escaped`]: a backslash before a
/// byte of its set is dropped, any other backslash is kept as a byte.
pub struct Unescape<'a> {
    raw: &'a [u8],
    pos: usize,
    set: EscapeSet,
}

impl Iterator for Unescape<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let b = *self.raw.get(self.pos)?;
        self.pos += 1;
        if b == b'\\' {
            if let Some(&n) = self.raw.get(self.pos) {
                if self.set.escapes(n) {
                    self.pos += 1;
                    return Some(n);
                }
            }
        }
        Some(b)
    }
}

/// A typed field value.
#[derive(Clone, Copy, Debug)]
pub enum FieldValue<'a> {
    Float(f64),
    Integer(i64),
    String(Escaped<'a>),
    Boolean(bool),
}

impl FieldValue<'_> {
    /// The value as a number, for sums; strings and booleans have none.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Integer(v) => Some(v as f64),
            FieldValue::String(_) | FieldValue::Boolean(_) => None,
        }
    }
}

/// One valid line. Tags and fields are iterated from the validated sections.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    pub measurement: Escaped<'a>,
    /// Tag section without its leading comma; empty when there are no tags.
    tags: &'a [u8],
    fields: &'a [u8],
    pub timestamp: Option<i64>,
}

impl<'a> Line<'a> {
    /// Tags in the order written (no key appears twice).
    pub fn tags(&self) -> Tags<'a> {
        Tags { rest: self.tags }
    }

    /// Fields in the order written, as Kapacitor reads them (see [`Fields`]).
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            buf: self.fields,
            pos: 0,
        }
    }

    /// The field set as written.
    pub fn field_set(&self) -> &'a [u8] {
        self.fields
    }

    /// The tag named `key`.
    pub fn tag(&self, key: &[u8]) -> Option<Escaped<'a>> {
        self.tags().find(|(k, _)| k.eq_bytes(key)).map(|(_, v)| v)
    }

    /// The field named `key`; of a repeated key the last, as in the `Fields`
    /// map Kapacitor builds (`point.unmarshalBinary`).
    pub fn field(&self, key: &[u8]) -> Option<FieldValue<'a>> {
        // Only the values of `key` are converted.
        let mut it = self.fields();
        let mut last = None;
        while let Some((k, raw)) = it.next_raw() {
            if k.eq_bytes(key) {
                last = field_value(raw).or(last);
            }
        }
        last
    }
}

/// Iterator over a validated tag section, split as `parseTags` splits the
/// series key: the key ends at the first `=` not right after a backslash,
/// the value at the first such `,`.
pub struct Tags<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tags<'a> {
    type Item = (Escaped<'a>, Escaped<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let eq = find_unescaped(self.rest, 0, b'=');
        let key = &self.rest[..eq];
        let after = self.rest.get(eq + 1..).unwrap_or(&[]);
        let end = find_unescaped(after, 1, b',');
        let value = &after[..end];
        self.rest = after.get(end + 1..).unwrap_or(&[]);
        Some((
            Escaped::new(key, EscapeSet::Tag),
            Escaped::new(value, EscapeSet::Tag),
        ))
    }
}

/// Iterator over a validated field section as Kapacitor reads it
/// (`point.FieldIterator`, `unmarshalBinary`): the key ends at the first `=`
/// not right after a backslash, the value at the first `,` outside quotes
/// (`scanFieldValue`); its type is told by its first byte. A field with an
/// empty key or value is skipped, and so is one whose value Go could not
/// convert (only hostile lines where `scanFields` and the iterator split the
/// section differently have one; Kapacitor would panic on it).
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    /// The next field with a non-empty key, its value unconverted.
    fn next_raw(&mut self) -> Option<(Escaped<'a>, &'a [u8])> {
        while self.pos < self.buf.len() {
            let start = self.pos;
            // `scanTo` from the section's start: a `=` at offset 0 ends an
            // empty key.
            let mut eq = start;
            while eq < self.buf.len()
                && !(self.buf[eq] == b'=' && (eq == 0 || self.buf[eq - 1] != b'\\'))
            {
                eq += 1;
            }
            let key = &self.buf[start..eq];
            let v_start = (eq + 1).min(self.buf.len());
            let v_end = field_value_end(self.buf, v_start);
            self.pos = v_end + 1;
            let value = &self.buf[v_start..v_end];
            if !key.is_empty() {
                return Some((Escaped::new(key, EscapeSet::Name), value));
            }
        }
        None
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (Escaped<'a>, FieldValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some((key, raw)) = self.next_raw() {
            if let Some(v) = field_value(raw) {
                return Some((key, v));
            }
        }
        None
    }
}

/// End of a field value starting at `i` (`scanFieldValue`): the first `,`
/// outside quotes; `\"` and `\\` are skipped as pairs.
fn field_value_end(buf: &[u8], mut i: usize) -> usize {
    let mut quoted = false;
    while i < buf.len() {
        match buf[i] {
            b'\\' if matches!(buf.get(i + 1), Some(b'"' | b'\\')) => {
                i += 2;
                continue;
            }
            b'"' => quoted = !quoted,
            b',' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    i.min(buf.len())
}

/// A field value's type and content (`point.Next` and its `*Value`
/// accessors); None where Kapacitor keeps nothing or would fail.
fn field_value(v: &[u8]) -> Option<FieldValue<'_>> {
    let (&first, &last) = (v.first()?, v.last()?);
    match first {
        b'"' => {
            let inner = v.get(1..v.len() - 1).unwrap_or(&[]);
            Some(FieldValue::String(Escaped::new(inner, EscapeSet::Str)))
        }
        b'0'..=b'9' | b'-' | b'.' | b'n' | b'N' | b'i' | b'I' => {
            if last == b'i' {
                parse_i64(&v[..v.len() - 1]).map(FieldValue::Integer)
            } else {
                parse_float(v).map(FieldValue::Float)
            }
        }
        // strconv.ParseBool.
        _ => match v {
            b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(FieldValue::Boolean(true)),
            b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(FieldValue::Boolean(false)),
            _ => None,
        },
    }
}

/// Why a line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Missing measurement, or a comma first (`scanMeasurement`).
    Measurement,
    /// A tag without key, `=` or value, a value with an unescaped `=`, or a
    /// key twice (`scanTagsKey`, `scanTagsValue`, `scanKey`).
    Tag,
    /// Measurement and tags longer than 65535 bytes (`MaxKeyLength`).
    KeyTooLong,
    /// No field set, or a field without key or value (`scanFields`).
    Field,
    /// A field value that is no valid number, boolean or closed string
    /// (`scanNumber`, `scanBoolean`, `scanFields`).
    FieldValue,
    /// A timestamp that is no integer or lies outside InfluxDB's range
    /// (`scanTime`, `SafeCalcTime`).
    Timestamp,
    /// Something other than spaces after the timestamp (`parsePoint`).
    Trailing,
}

impl ParseError {
    pub fn as_str(&self) -> &'static str {
        match self {
            ParseError::Measurement => "bad measurement",
            ParseError::Tag => "bad tag",
            ParseError::KeyTooLong => "series key too long",
            ParseError::Field => "missing or bad field",
            ParseError::FieldValue => "bad field value",
            ParseError::Timestamp => "bad timestamp",
            ParseError::Trailing => "unexpected data after timestamp",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ParseError {}

/// Walks the lines of one datagram, skipping blank and `#` comment lines
/// (`ParsePointsWithPrecision`).
pub struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Lines { buf, pos: 0 }
    }
}

impl<'a> Lines<'a> {
    /// The next line's bytes, as [`Iterator::next`] parses them (blank
    /// lines and comments skipped): a replay sends each as a datagram.
    pub fn next_raw(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.buf.len() {
            let end = line_end(self.buf, self.pos);
            let mut block = &self.buf[self.pos..end];
            self.pos = end + 1;
            let start = skip_whitespace(block, 0);
            if start >= block.len() || block[start] == b'#' {
                continue;
            }
            if block.last() == Some(&b'\n') {
                block = &block[..block.len() - 1];
            }
            return Some(&block[start..]);
        }
        None
    }

    /// Bytes read so far.
    pub fn offset(&self) -> usize {
        self.pos.min(self.buf.len())
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw().map(parse_point)
    }
}

/// Where the line starting at `i` ends (`scanLine`): the offset of its `\n`,
/// or the buffer's length. A backslash takes the next byte with it; after
/// the first space a `"` opens or closes a string when more `=` than `,`
/// were seen, and a `\n` in a string does not end the line.
///
/// Not in the last two bytes, as influxd 1.6's scanLine has it: the models
/// package Kapacitor 1.5.7 vendors skips a final backslash's pair past the
/// datagram and panics slicing it; one before the last byte leaves the same
/// line either way (a final `\n` is dropped from the line in both).
fn line_end(buf: &[u8], start: usize) -> usize {
    // Without a quote or backslash before it, the first `\n` ends the line:
    // the usual case, found without the state machine.
    let rest = &buf[start..];
    match rest.iter().position(|&c| matches!(c, b'\n' | b'"' | b'\\')) {
        None => return buf.len(),
        Some(at) if rest[at] == b'\n' => return start + at,
        Some(_) => {}
    }
    let mut i = start;
    let mut quoted = false;
    let mut fields = false;
    let (mut equals, mut commas) = (0usize, 0usize);
    while i < buf.len() {
        let c = buf[i];
        if c == b'\\' && i + 2 < buf.len() {
            i += 2;
            continue;
        }
        if c == b' ' {
            fields = true;
        }
        if fields {
            match c {
                b'=' if !quoted => equals += 1,
                b',' if !quoted => commas += 1,
                b'"' if equals > commas => quoted = !quoted,
                _ => {}
            }
        }
        if c == b'\n' && !quoted {
            return i;
        }
        i += 1;
    }
    i
}

/// Skips spaces, tabs and NULs (`skipWhitespace`).
#[inline]
fn skip_whitespace(buf: &[u8], mut i: usize) -> usize {
    while matches!(buf.get(i), Some(b' ' | b'\t' | b'\0')) {
        i += 1;
    }
    i
}

/// Parses one line, leading whitespace and `\n` removed (`parsePoint`).
fn parse_point(buf: &[u8]) -> Result<Line<'_>, ParseError> {
    // scanMeasurement: up to a `,` or ` ` not right after a backslash. The
    // first byte may be anything but a comma; a line without a space has
    // no fields.
    if buf.is_empty() || buf[0] == b',' {
        return Err(ParseError::Measurement);
    }
    let mut i = 0;
    loop {
        i += 1;
        if i >= buf.len() {
            return Err(ParseError::Field);
        }
        if buf[i - 1] != b'\\' && matches!(buf[i], b',' | b' ') {
            break;
        }
    }
    let measurement = Escaped::new(&buf[..i], EscapeSet::Name);
    let mut tags: &[u8] = &[];
    if buf[i] == b',' {
        i += 1;
        let t_start = i;
        i = scan_tags(buf, i)?;
        tags = &buf[t_start..i];
    }
    if i > MAX_KEY_LEN {
        return Err(ParseError::KeyTooLong);
    }
    let (f_start, f_end) = scan_fields(buf, i)?;
    let fields = &buf[f_start..f_end];
    let timestamp = scan_time(buf, f_end)?;
    Ok(Line {
        measurement,
        tags,
        fields,
        timestamp,
    })
}

/// Validates the tags from `i` (just past the measurement's comma) to the
/// space before the fields, and returns that space's offset (`scanTags`).
/// No key may appear twice, compared as written (`scanKey`): the first
/// keys are compared as they come, from a small array on the stack.
fn scan_tags(buf: &[u8], mut i: usize) -> Result<usize, ParseError> {
    const KEPT: usize = 16;
    let mut keys = [(0usize, 0usize); KEPT];
    let mut n = 0;
    let t_start = i;
    loop {
        let k_start = i;
        // scanTagsKey: a key may not start with ` `, `,` or `=`, and ends
        // at a `=` not right after a backslash; an unescaped ` ` or `,`
        // before it means a tag without value.
        if i >= buf.len() || matches!(buf[i], b' ' | b',' | b'=') {
            return Err(ParseError::Tag);
        }
        loop {
            i += 1;
            if i >= buf.len() {
                return Err(ParseError::Tag);
            }
            if buf[i - 1] == b'\\' {
                continue;
            }
            match buf[i] {
                b' ' | b',' => return Err(ParseError::Tag),
                b'=' => break,
                _ => {}
            }
        }
        let key = &buf[k_start..i];
        if keys[..n.min(KEPT)].iter().any(|&(a, b)| &buf[a..b] == key) {
            return Err(ParseError::Tag);
        }
        if n < KEPT {
            keys[n] = (k_start, i);
        }
        n += 1;
        i += 1;
        // scanTagsValue: a value may not be empty; its first byte may be
        // `=`, a later unescaped `=` is an error ("invalid tag format").
        if i >= buf.len() || matches!(buf[i], b',' | b' ') {
            return Err(ParseError::Tag);
        }
        loop {
            i += 1;
            if i >= buf.len() {
                // A tag set without fields ("missing fields").
                return Err(ParseError::Field);
            }
            if buf[i - 1] == b'\\' {
                continue;
            }
            match buf[i] {
                b'=' => return Err(ParseError::Tag),
                b',' => break,
                b' ' if n <= KEPT => return Ok(i),
                b' ' => {
                    check_duplicate_tags(&buf[t_start..i])?;
                    return Ok(i);
                }
                _ => {}
            }
        }
        i += 1;
    }
}

/// No tag key twice in a section of many tags: pairwise, by the iterator.
fn check_duplicate_tags(section: &[u8]) -> Result<(), ParseError> {
    let mut outer = Tags { rest: section };
    while let Some((k, _)) = outer.next() {
        let mut later = Tags { rest: outer.rest };
        if later.any(|(l, _)| l.raw() == k.raw()) {
            return Err(ParseError::Tag);
        }
    }
    Ok(())
}

/// Validates the field set from `i` (the space after measurement or tags);
/// returns its start and end (`scanFields`).
fn scan_fields(buf: &[u8], i: usize) -> Result<(usize, usize), ParseError> {
    let start = skip_whitespace(buf, i);
    let mut i = start;
    let mut quoted = false;
    let (mut equals, mut commas) = (0usize, 0usize);
    while i < buf.len() {
        let c = buf[i];
        if c == b'\\' && i + 1 < buf.len() {
            i += 2;
            continue;
        }
        // Quotes matter in values only: more `=` than `,` so far.
        if c == b'"' && equals > commas {
            quoted = !quoted;
            i += 1;
            continue;
        }
        if c == b'=' && !quoted {
            equals += 1;
            // A key must precede the `=` ("missing field key"), unless the
            // space or comma before it is escaped. `i >= 2`: the
            // measurement and its space come first.
            if matches!(buf[i - 1], b' ' | b',') && buf[i - 2] != b'\\' {
                return Err(ParseError::Field);
            }
            // And a value follow it ("missing field value").
            let Some(&n) = buf.get(i + 1) else {
                return Err(ParseError::FieldValue);
            };
            match n {
                b',' | b' ' => return Err(ParseError::FieldValue),
                b'0'..=b'9' | b'.' | b'-' | b'N' | b'n' => {
                    i = scan_number(buf, i + 1)?;
                    continue;
                }
                b'"' => {}
                _ => {
                    i = scan_boolean(buf, i + 1)?;
                    continue;
                }
            }
        }
        if !quoted {
            if c == b',' {
                commas += 1;
            } else if c == b' ' {
                break;
            }
        }
        i += 1;
    }
    if quoted {
        // "unbalanced quotes"
        return Err(ParseError::FieldValue);
    }
    // Every field has a key and a value ("invalid field format").
    if equals == 0 || commas != equals - 1 {
        return Err(ParseError::Field);
    }
    Ok((start, i))
}

/// Validates a number starting at `start`; returns the offset past it
/// (`scanNumber`). Floats are converted later; here they are range-checked
/// only where Go does so: with an exponent or 25 bytes or more.
fn scan_number(buf: &[u8], start: usize) -> Result<usize, ParseError> {
    let bad = Err(ParseError::FieldValue);
    let mut i = start;
    if buf[i] == b'-' {
        i += 1;
        if i == buf.len() {
            return bad;
        }
    }
    let (mut int, mut decimal, mut scientific) = (false, false, false);
    while i < buf.len() {
        let c = buf[i];
        if c == b',' || c == b' ' {
            break;
        }
        if c == b'i' && i > start && !int {
            int = true;
            i += 1;
            continue;
        }
        if c == b'.' {
            if decimal {
                return bad;
            }
            decimal = true;
        }
        if i > start && (c == b'e' || c == b'E') {
            scientific = true;
            i += 1;
            continue;
        }
        if (c == b'+' || c == b'-') && matches!(buf[i - 1], b'e' | b'E') {
            i += 1;
            continue;
        }
        // Anything else, `N` of NaN and a second `i` included.
        if !(c.is_ascii_digit() || c == b'.') {
            return bad;
        }
        i += 1;
    }
    if int && (decimal || scientific) {
        return bad;
    }
    let digits = i - start - int as usize - decimal as usize - (buf[start] == b'-') as usize;
    if digits == 0 {
        return bad;
    }
    let text = &buf[start..i];
    if int {
        // `9i9`: the `i` must come last; 19 digits or more may overflow.
        if buf[i - 1] != b'i' || (text.len() > 19 && parse_i64(&text[..text.len() - 1]).is_none()) {
            return bad;
        }
    } else if (scientific || text.len() >= 25) && parse_float(text).is_none() {
        return bad;
    }
    Ok(i)
}

/// Validates a boolean starting at `start` (`scanBoolean`): `t` `T` `true`
/// `True` `TRUE` `f` `F` `false` `False` `FALSE`, up to a `,` or ` `.
fn scan_boolean(buf: &[u8], start: usize) -> Result<usize, ParseError> {
    let mut i = start;
    while i < buf.len() && buf[i] != b',' && buf[i] != b' ' {
        i += 1;
    }
    match &buf[start..i] {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" | b"f" | b"F" | b"false" | b"False"
        | b"FALSE" => Ok(i),
        _ => Err(ParseError::FieldValue),
    }
}

/// The optional timestamp after the fields ending at `i` (`scanTime`,
/// `parsePoint`): whitespace, `-?D+` within InfluxDB's range, then only
/// spaces. With no timestamp nothing after it is looked at.
fn scan_time(buf: &[u8], i: usize) -> Result<Option<i64>, ParseError> {
    let start = skip_whitespace(buf, i);
    let mut i = start;
    while i < buf.len() && buf[i] != b'\n' && buf[i] != b' ' {
        if !(buf[i].is_ascii_digit() || (i == start && buf[i] == b'-')) {
            return Err(ParseError::Timestamp);
        }
        i += 1;
    }
    if i == start {
        return Ok(None);
    }
    let ts = parse_i64(&buf[start..i]).ok_or(ParseError::Timestamp)?;
    if !(MIN_TIME..=MAX_TIME).contains(&ts) {
        return Err(ParseError::Timestamp);
    }
    if buf[i..].iter().any(|&c| c != b' ') {
        return Err(ParseError::Trailing);
    }
    Ok(Some(ts))
}

/// `-?[0-9]+` as i64, None on syntax error or overflow (strconv.ParseInt).
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub((c - b'0') as i64)?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// A float as strconv.ParseFloat reads what scanNumber lets through: `-?`,
/// digits with at most one `.` and at least one digit, an optional exponent.
/// Out of range is an error (ErrRange), not an infinity. Plain digit
/// strings, the common case, are converted without the general parser.
fn parse_float(s: &[u8]) -> Option<f64> {
    let digits = match s {
        [b'-', rest @ ..] => rest,
        _ => s,
    };
    if digits.len() <= 15 && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        // Fewer than 16 digits are exact in an f64.
        let v = digits
            .iter()
            .fold(0u64, |acc, &c| acc * 10 + (c - b'0') as u64) as f64;
        return Some(if s[0] == b'-' { -v } else { v });
    }
    // Only the characters scanNumber allows; Rust's parser would also read
    // `inf`, `NaN` and a leading `+`.
    let mantissa_end = digits
        .iter()
        .position(|&c| c == b'e' || c == b'E')
        .unwrap_or(digits.len());
    let mantissa = &digits[..mantissa_end];
    if !mantissa.iter().all(|&c| c.is_ascii_digit() || c == b'.')
        || !mantissa.iter().any(u8::is_ascii_digit)
    {
        return None;
    }
    if mantissa_end < digits.len() {
        let exp = &digits[mantissa_end + 1..];
        let exp = exp
            .strip_prefix(b"+")
            .or(exp.strip_prefix(b"-"))
            .unwrap_or(exp);
        if exp.is_empty() || !exp.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// Offset of the first `stop` at or after `from` not right after a
/// backslash (`scanTo`, `scanTagValue`), or the length.
#[inline]
fn find_unescaped(s: &[u8], from: usize, stop: u8) -> usize {
    let mut i = from;
    while i < s.len() {
        if s[i] == stop && (i == 0 || s[i - 1] != b'\\') {
            return i;
        }
        i += 1;
    }
    s.len()
}

#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Line<'_> {
        let mut it = Lines::new(s.as_bytes());
        let l = it.next().expect("a line").expect("valid");
        assert!(it.next().is_none(), "exactly one line");
        l
    }

    fn err(s: &str) -> ParseError {
        Lines::new(s.as_bytes())
            .next()
            .expect("a line")
            .expect_err("invalid")
    }

    fn tags(l: &Line<'_>) -> Vec<(String, String)> {
        l.tags()
            .map(|(k, v)| (k.to_string_lossy(), v.to_string_lossy()))
            .collect()
    }

    fn tag(s: &str, key: &str) -> String {
        one(s).tag(key.as_bytes()).expect("tag").to_string_lossy()
    }

    fn float(s: &str) -> f64 {
        match one(s).field(b"f") {
            Some(FieldValue::Float(v)) => v,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_seed_line() {
        let l = one(
            "combined,uri=/path/to/some/product,id=123456789,ip=127.0.0.1,role=ingresstype count=1",
        );
        assert!(l.measurement.eq_bytes(b"combined"));
        assert_eq!(
            tags(&l),
            pairs(&[
                ("uri", "/path/to/some/product"),
                ("id", "123456789"),
                ("ip", "127.0.0.1"),
                ("role", "ingresstype")
            ])
        );
        assert_eq!(l.field(b"count").and_then(|v| v.as_f64()), Some(1.0));
        assert_eq!(l.timestamp, None);
    }

    /// scanTagsValue: an unescaped `=` after a tag value's first byte is
    /// "invalid tag format"; as the first byte it is part of the value.
    #[test]
    fn equals_in_a_tag_value() {
        assert_eq!(
            err("combined,uri=/kv/k=v/0,id=2003,ip=1.2.3.4 count=1"),
            ParseError::Tag
        );
        assert_eq!(err("m,k=a=b f=1"), ParseError::Tag);
        assert_eq!(tag(r"m,k=a\=b f=1", "k"), "a=b");
        assert_eq!(tag("m,k==b f=1", "k"), "=b");
        assert_eq!(tag("m,k== f=1", "k"), "=");
    }

    /// scanTagsValue, scanMeasurement, scanTagsKey: a backslash makes the
    /// next byte ordinary, so a value ending in one runs on over the comma.
    #[test]
    fn a_backslash_escapes_the_delimiter_after_it() {
        // `\,` keeps the comma in uri's value; `id=2004` then follows inside
        // the same value: an unescaped `=` there ("invalid tag format").
        assert_eq!(
            err(r"combined,uri=/end\,id=2004,ip=1.2.3.4 count=1"),
            ParseError::Tag
        );
        assert_eq!(tag(r"m,uri=/end\,x,id=1 f=1", "uri"), "/end,x");
        // `\\` is no escaped backslash: the second backslash still escapes
        // what follows. Here the space: the value runs on into `f=1`, whose
        // `=` is unescaped; the measurement runs to the end.
        assert_eq!(err(r"m,t=a\\ f=1"), ParseError::Tag);
        assert_eq!(err(r"m\\ f=1"), ParseError::Field);
        assert_eq!(err(r"m,t\\=a f=1"), ParseError::Tag);
        assert_eq!(tag(r"m,t=a\\,u f=1", "t"), r"a\,u");
        assert_eq!(err(r"m,t=a\\,u=1 f=1"), ParseError::Tag);
    }

    /// unescapeTag drops a backslash only before `,` ` ` `=`; Point.Name
    /// (escape.Unescape) also before `"`; every other backslash stays.
    #[test]
    fn unescaping_follows_the_go_helpers() {
        assert_eq!(tag(r"m,id=L052\\x f=1", "id"), r"L052\\x");
        assert_eq!(tag(r"m,id=a\qb f=1", "id"), r"a\qb");
        assert_eq!(tag(r#"m,id=a\"b f=1"#, "id"), r#"a\"b"#);
        assert_eq!(tag(r"m,id=a\\\,b f=1", "id"), r"a\\,b");
        assert_eq!(tag(r"m,t\ k\,\==v\ w f=1", r"t k,="), "v w");
        let l = one(r"comb\=ined f=1");
        assert_eq!(l.measurement.to_string_lossy(), "comb=ined");
        assert!(l.measurement.eq_bytes(b"comb=ined"));
        let l = one(r#"a\"b\,c\ d\qe\\f f=1"#);
        assert_eq!(l.measurement.to_string_lossy(), r#"a"b,c d\qe\\f"#);
        assert_eq!(one(r"a\\b f=1").measurement.to_string_lossy(), r"a\\b");
        // Field keys (escape.AppendUnescaped): `\,` `\"` `\ ` `\=`.
        let l = one(r#"m f\ k\=\"\q=1i"#);
        let (k, v) = l.fields().next().unwrap();
        assert_eq!(k.to_string_lossy(), r#"f k="\q"#);
        assert!(matches!(v, FieldValue::Integer(1)));
        // Strings (unescapeStringField): `\"` and `\\` only.
        let l = one(r#"m s="a\"b\\c\qd""#);
        assert!(matches!(l.field(b"s"), Some(FieldValue::String(s)) if s.eq_bytes(br#"a"b\c\qd"#)));
    }

    /// scanKey: the same tag key twice ("duplicate tags"), sorted or not.
    #[test]
    fn duplicate_tag_keys() {
        assert_eq!(err("m,a=1,a=2 f=1"), ParseError::Tag);
        assert_eq!(err("m,b=1,a=2,b=3 f=1"), ParseError::Tag);
        assert_eq!(err(r"m,a\ b=1,c=2,a\ b=3 f=1"), ParseError::Tag);
        assert_eq!(
            tags(&one("m,b=1,a=2 f=1")),
            pairs(&[("b", "1"), ("a", "2")])
        );
        // Past the keys compared as they come, the whole set is compared.
        let many: String = (0..20).map(|k| format!(",k{k}=v")).collect();
        assert_eq!(one(&format!("m{many} f=1")).tags().count(), 20);
        assert_eq!(err(&format!("m{many},k18=w f=1")), ParseError::Tag);
        assert_eq!(err(&format!("m{many},k3=w f=1")), ParseError::Tag);
    }

    /// scanTagsKey and scanTagsValue: keys and values are not empty, a key
    /// does not start with `=`, and a tag has a `=`.
    #[test]
    fn malformed_tags() {
        for s in [
            "m,id,ip=1 f=1",
            "m,t f=1",
            "m,t= f=1",
            "m,t=,u=1 f=1",
            "m,=v f=1",
            "m, f=1",
            "m,,t=1 f=1",
            "m,t=1, f=1",
        ] {
            assert_eq!(err(s), ParseError::Tag, "{s:?}");
        }
        // A tag set running to the end has no fields ("missing fields").
        assert_eq!(err("m,t=v"), ParseError::Field);
        assert_eq!(err(r"m,t=v\"), ParseError::Field);
    }

    /// scanMeasurement and skipWhitespace: tabs and NULs are ordinary bytes
    /// inside names, whitespace only before the measurement, fields and
    /// timestamp.
    #[test]
    fn tabs_and_nuls() {
        assert_eq!(tag("m,t=a\tb\0c f=1", "t"), "a\tb\0c");
        assert_eq!(one("m\tx\0 f=1").measurement.to_string_lossy(), "m\tx\0");
        assert_eq!(one("\t\0 m f=1").measurement.to_string_lossy(), "m");
        // Before the fields: after one space any mix of whitespace.
        assert!(one("m \t\0f=1").field(b"f").is_some());
        assert_eq!(one("m f=1 \t\0 5").timestamp, Some(5));
        // A tab is no separator: the measurement runs on.
        assert_eq!(err("m\tf=1"), ParseError::Field);
        // An `=` right after whitespace other than a space has an empty key,
        // which scanFields lets pass and the field iterator skips.
        assert!(one("m \t=1").fields().next().is_none());
    }

    /// scanNumber: `-?` digits with at most one `.`, exponents checked by
    /// ParseFloat, `i` last for integers; no `u`, `+`, NaN or Inf.
    #[test]
    fn numbers() {
        assert_eq!(float("m f=1."), 1.0);
        assert_eq!(float("m f=.5"), 0.5);
        assert_eq!(float("m f=-.5"), -0.5);
        assert_eq!(float("m f=1.e5"), 1e5);
        assert_eq!(float("m f=007"), 7.0);
        assert_eq!(float("m f=1E+2"), 100.0);
        assert_eq!(float("m f=1e-999"), 0.0);
        assert!(float("m f=-0").is_sign_negative());
        assert!(matches!(
            one("m f=-0i").field(b"f"),
            Some(FieldValue::Integer(0))
        ));
        let l = one(r#"m a=1.5,b=-2i,d="x",e=true,g=F,h=-1.5E-2"#);
        let v: Vec<String> = l.fields().map(|(_, v)| format!("{v:?}")).collect();
        assert_eq!(
            v,
            [
                "Float(1.5)",
                "Integer(-2)",
                "String(\"x\")",
                "Boolean(true)",
                "Boolean(false)",
                "Float(-0.015)"
            ]
        );
        for s in [
            "m f=1u",
            "m f=+1",
            "m f=NaN",
            "m f=nan",
            "m f=Inf",
            "m f=-Inf",
            "m f=inf",
            "m f=1.2.3",
            "m f=-",
            "m f=.",
            "m f=-.",
            "m f=1e",
            "m f=1e+",
            "m f=1ee5",
            "m f=1e5.5",
            "m f=.e5",
            "m f=1i1",
            "m f=1ii",
            "m f=1.5i",
            "m f=1e5i",
            "m f=i",
            "m f=-i",
            "m f=1-2",
            "m f=1\r",
            "m f=1\t",
            "m f=1e400",
            "m f=-1.5E309",
            "m f=abc",
            "m f=tru",
            "m f=truE",
            "m f=t\"",
        ] {
            assert_eq!(err(s), ParseError::FieldValue, "{s:?}");
        }
        // Integers: i64, checked from 19 digits on.
        assert!(matches!(
            one("m f=-9223372036854775808i").field(b"f"),
            Some(FieldValue::Integer(i64::MIN))
        ));
        assert_eq!(err("m f=9223372036854775808i"), ParseError::FieldValue);
        assert_eq!(err("m f=-9223372036854775809i"), ParseError::FieldValue);
        // Without an exponent and under 25 bytes a float is not range
        // checked, and cannot overflow; 25 bytes on it is.
        assert_eq!(float("m f=123456789012345678901234"), 1.2345678901234568e23);
        let huge = format!("m f={}", "9".repeat(400));
        assert_eq!(err(&huge), ParseError::FieldValue);
    }

    /// scanBoolean: the ten spellings.
    #[test]
    fn booleans() {
        for s in [
            "t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE",
        ] {
            let text = format!("m b={s}");
            let l = one(&text);
            assert!(matches!(l.field(b"b"), Some(FieldValue::Boolean(_))), "{s}");
        }
        for s in ["tRUE", "yes", "FaLSE", "1t"] {
            assert!(
                Lines::new(format!("m b={s}").as_bytes())
                    .next()
                    .unwrap()
                    .is_err(),
                "{s}"
            );
        }
    }

    /// scanFields: keys and values present, quotes only in values.
    #[test]
    fn field_sets() {
        for s in [
            "m",
            "m ",
            "m f",
            "m f,g=1",
            "m f=1,",
            "m f=1,g",
            "m =1",
            "m f=1,=2",
            "m f=1,,g=2",
        ] {
            assert!(
                matches!(err(s), ParseError::Field | ParseError::FieldValue),
                "{s:?}"
            );
        }
        assert_eq!(err("m f="), ParseError::FieldValue);
        assert_eq!(err("m f=,g=1"), ParseError::FieldValue);
        assert_eq!(err(r#"m f="abc"#), ParseError::FieldValue);
        // Escaped separators are part of the key.
        assert!(one(r"m a\ =1").field(b"a ").is_some());
        assert!(one(r"m a=1,b\,=2").field(b"b,").is_some());
        // A quote in a key is an ordinary byte.
        assert!(one(r#"m a"b=1"#).field(br#"a"b"#).is_some());
        // Bytes after a closing quote, `\r` included, stay in the value.
        assert!(one("m s=\"x\"\r").field(b"s").is_some());
        assert!(one(r#"m s="x"y,f=2"#).field(b"f").is_some());
        // A repeated field key is allowed; the last wins (Fields map).
        assert!(matches!(
            one("m f=1,f=2i").field(b"f"),
            Some(FieldValue::Integer(2))
        ));
    }

    /// scanTime and SafeCalcTime: an integer in [MinInt64+2, MaxInt64-1],
    /// then spaces only; parsePoint's "point is invalid" for other bytes.
    #[test]
    fn timestamps() {
        assert_eq!(one("m f=1 -9223372036854775806").timestamp, Some(MIN_TIME));
        assert_eq!(one("m f=1 9223372036854775806").timestamp, Some(MAX_TIME));
        assert_eq!(one("m f=1 42   ").timestamp, Some(42));
        assert_eq!(one("m f=1    ").timestamp, None);
        for s in [
            "m f=1 9223372036854775807",
            "m f=1 -9223372036854775807",
            "m f=1 -9223372036854775808",
            "m f=1 99999999999999999999",
            "m f=1 -",
            "m f=1 --5",
            "m f=1 12x",
            "m f=1 1.5",
            "m f=1 5\r",
        ] {
            assert_eq!(err(s), ParseError::Timestamp, "{s:?}");
        }
        assert_eq!(err("m f=1 1 2"), ParseError::Trailing);
        // A tab is no separator after the timestamp: it is part of it.
        assert_eq!(err("m f=1 1\t"), ParseError::Timestamp);
    }

    /// ParsePointsWithPrecision and scanLine: `\r` is content, so CRLF lines
    /// with numbers fail; blank, whitespace and comment lines are skipped;
    /// a bad line does not hide the others.
    #[test]
    fn datagrams() {
        let d = b"a f=1\nbroken line here\nb,t=1 f=2i 5\r\n\n# comment\n \t c f=3\n\0\n";
        let got: Vec<_> = Lines::new(d)
            .map(|r| r.map(|l| l.measurement.to_string_lossy()))
            .collect();
        assert_eq!(
            got,
            vec![
                Ok("a".to_string()),
                Err(ParseError::Field),
                Err(ParseError::Timestamp),
                Ok("c".to_string())
            ]
        );
        assert_eq!(err("m f=1\r\n"), ParseError::FieldValue);
    }

    /// scanLine: a `\n` inside a quoted string or after a backslash does
    /// not end the line. A backslash ending the datagram is an ordinary byte
    /// (influxd 1.6; Kapacitor 1.5.7 panics), so only garbage after a closed
    /// string can end so validly.
    #[test]
    fn line_ends() {
        let d = b"a s=\"x\ny\" 1\nb f=1\n";
        let got: Vec<_> = Lines::new(d).collect();
        assert_eq!(got.len(), 2);
        let a = got[0].as_ref().unwrap();
        assert!(matches!(a.field(b"s"), Some(FieldValue::String(s)) if s.eq_bytes(b"x\ny")));
        // The escaped newline joins the lines: `m\<LF>x` is one measurement.
        let l = one("m\\\nx f=1");
        assert_eq!(l.measurement.raw(), b"m\\\nx");
        assert_eq!(err("m f=1\\"), ParseError::FieldValue);
        assert_eq!(err("m s=\"a\\"), ParseError::FieldValue);
        assert!(one("m s=\"a\"b\\").field(b"s").is_some());
        assert!(one("m s=\"a\"b\\\n").field(b"s").is_some());
        assert_eq!(Lines::new(b"a f=1\\\nb f=2").count(), 1);
        assert_eq!(Lines::new(b"a f=1\n#\\").count(), 1);
        // A comment is cut by scanLine too: a quote after ` ` and `=` runs
        // it on over the newline.
        let got: Vec<_> = Lines::new(b"# a=\"x\nb f=1\"\nc f=2").collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().is_ok_and(|l| l.measurement.eq_bytes(b"c")));
        // Indentation counts as the space before the fields for scanLine.
        let got: Vec<_> = Lines::new(b" = \"=0\na a=0").collect();
        assert_eq!(got.len(), 1);
        assert!(Lines::new(b"= \"=0\na a=0").all(|r| r.is_ok()));
    }

    /// parsePoint and scanMeasurement: a measurement is required and may
    /// not start with a comma; any other first byte is fine.
    #[test]
    fn measurements() {
        assert_eq!(err(",t=1 f=1"), ParseError::Measurement);
        assert_eq!(one("=x f=1").measurement.to_string_lossy(), "=x");
        assert_eq!(one("\"m\" f=1").measurement.to_string_lossy(), "\"m\"");
        assert_eq!(one("é€ f=1").measurement.to_string_lossy(), "é€");
        assert_eq!(one(r"\ m f=1").measurement.to_string_lossy(), " m");
    }

    /// parsePoint: MaxKeyLength bounds measurement and tags as written.
    #[test]
    fn key_length() {
        let ok = format!("{} f=1", "m".repeat(MAX_KEY_LEN));
        assert!(Lines::new(ok.as_bytes()).next().unwrap().is_ok());
        let long = format!("{} f=1", "m".repeat(MAX_KEY_LEN + 1));
        assert_eq!(err(&long), ParseError::KeyTooLong);
    }

    #[test]
    fn escaped_views_agree() {
        let l = one(r"m\ x,t\=k=v\,a\\l f\ k=1i");
        for e in [
            l.measurement,
            l.tags().next().unwrap().0,
            l.tags().next().unwrap().1,
        ] {
            let mut out = Vec::new();
            e.unescape_into(&mut out);
            assert_eq!(e.bytes().collect::<Vec<_>>(), out);
            assert_eq!(e.unescaped_len(), out.len());
            assert!(e.eq_bytes(&out));
            assert!(!e.is_plain() || e.raw() == out);
        }
    }
}

#[cfg(test)]
#[path = "lineproto_proptests.rs"]
pub(crate) mod proptests;
