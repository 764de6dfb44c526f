//! InfluxDB line protocol parser: zero-copy, no allocation per line.
//!
//! A datagram is walked line by line with [`Lines`]. Each line is validated
//! whole (measurement, tag set, field set with typed values, timestamp) before
//! it is returned, so a malformed line is reported as one [`ParseError`] and the
//! walk resumes at the next line. Names and values are handed out as
//! [`Escaped`] slices of the datagram: comparing them with a rule's names or
//! copying them into a group key unescapes on the fly.
//!
//! The grammar follows InfluxDB's (models/points.go) and the
//! `influxdb-line-protocol` crate, which the tests use as an oracle:
//! backslash escapes `\,` `\ ` `\\` in measurements and additionally `\=` in
//! tag keys, tag values and field keys; any other backslash is literal; a name
//! or value may not end in a backslash, escaped or not; strings escape only
//! `\"` and `\\`.
//! Lines end at `\n` outside a quoted string, as InfluxDB's scanLine reckons
//! it from the line's very start (which matters for comments and for indented
//! or broken lines); a trailing `\r` is dropped.

use std::fmt;

/// Which characters a backslash escapes in a section of the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EscapeSet {
    /// Measurement: `\,` `\ ` `\\`.
    Measurement,
    /// Tag keys, tag values and field keys: `\,` `\=` `\ ` `\\`.
    Key,
    /// Quoted string field values: `\"` `\\`.
    Str,
}

impl EscapeSet {
    #[inline]
    fn escapes(self, c: u8) -> bool {
        match self {
            EscapeSet::Measurement => matches!(c, b',' | b' ' | b'\\'),
            EscapeSet::Key => matches!(c, b',' | b'=' | b' ' | b'\\'),
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

/// Iterator over the unescaped bytes of an [`Escaped`].
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
    Unsigned(u64),
    String(Escaped<'a>),
    Boolean(bool),
}

impl FieldValue<'_> {
    /// The value as a number, for sums; strings and booleans have none.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Integer(v) => Some(v as f64),
            FieldValue::Unsigned(v) => Some(v as f64),
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
    /// Tags in the order written.
    pub fn tags(&self) -> Tags<'a> {
        Tags { rest: self.tags }
    }

    /// Fields in the order written.
    pub fn fields(&self) -> Fields<'a> {
        Fields { rest: self.fields }
    }

    /// The first tag named `key`.
    pub fn tag(&self, key: &[u8]) -> Option<Escaped<'a>> {
        self.tags().find(|(k, _)| k.eq_bytes(key)).map(|(_, v)| v)
    }

    /// The first field named `key`.
    pub fn field(&self, key: &[u8]) -> Option<FieldValue<'a>> {
        self.fields().find(|(k, _)| k.eq_bytes(key)).map(|(_, v)| v)
    }
}

/// Iterator over a validated tag section.
pub struct Tags<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tags<'a> {
    type Item = (Escaped<'a>, Escaped<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let eq = find_unescaped(self.rest, |c| c == b'=');
        let key = &self.rest[..eq];
        let after = &self.rest[eq + 1..];
        let end = find_unescaped(after, |c| c == b',');
        let value = &after[..end];
        self.rest = after.get(end + 1..).unwrap_or(&[]);
        Some((
            Escaped::new(key, EscapeSet::Key),
            Escaped::new(value, EscapeSet::Key),
        ))
    }
}

/// Iterator over a validated field section.
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = (Escaped<'a>, FieldValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let eq = find_unescaped(self.rest, |c| c == b'=');
        let key = Escaped::new(&self.rest[..eq], EscapeSet::Key);
        // The section was validated, so this cannot fail; stop rather than panic.
        let (value, used) = field_value(self.rest, eq + 1).ok()?;
        self.rest = self.rest.get(used + 1..).unwrap_or(&[]);
        Some((key, value))
    }
}

/// Why a line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Missing, empty or badly escaped measurement.
    Measurement,
    /// A tag without `=`, with an empty key or value, or ending in a backslash.
    Tag,
    /// No field set, or a field without key or `=`.
    Field,
    /// A field value that is no valid float, integer, unsigned, string or boolean.
    FieldValue,
    /// A timestamp that is not a signed 64-bit integer.
    Timestamp,
    /// Something after the timestamp, or a string never closed (also as
    /// InfluxDB's line splitting sees it).
    Trailing,
}

impl ParseError {
    pub fn as_str(&self) -> &'static str {
        match self {
            ParseError::Measurement => "bad measurement",
            ParseError::Tag => "bad tag",
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

/// Walks the lines of one datagram, skipping blank and `#` comment lines.
pub struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Lines { buf, pos: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // Leading whitespace (spaces, tabs, empty lines, `\r`) is skipped.
            // `line_start` stays where InfluxDB's scanLine starts the line,
            // before its indentation.
            let mut line_start = self.pos;
            while let Some(&c) = self.buf.get(self.pos) {
                match c {
                    b'\n' => {
                        self.pos += 1;
                        line_start = self.pos;
                    }
                    b' ' | b'\t' | b'\r' => self.pos += 1,
                    _ => break,
                }
            }
            if self.pos >= self.buf.len() {
                return None;
            }
            if self.buf[self.pos] == b'#' {
                // A comment is the whole line as scanLine cuts it: like
                // InfluxDB, a quote after a space and `=` carries it on over
                // newlines.
                self.pos = line_end(self.buf, line_start);
                continue;
            }
            let start = self.pos;
            return Some(match parse_line(self.buf, start) {
                // scanLine takes an indenting space for the one before the
                // field set, so in an indented line a `"` in a name can open
                // a string and move the line's end. Unless the line ends where
                // scanLine says, it is not one InfluxDB would read.
                Ok((line, end)) if start == line_start || end == line_end(self.buf, line_start) => {
                    self.pos = end;
                    Ok(line)
                }
                Ok(_) => {
                    self.pos = line_end(self.buf, line_start);
                    Err(ParseError::Trailing)
                }
                Err(e) => {
                    self.pos = line_end(self.buf, line_start);
                    Err(e)
                }
            });
        }
    }
}

/// Parses the line starting at `start`; returns it and the offset just past
/// its end (past the `\n`, or the buffer's end).
fn parse_line(buf: &[u8], start: usize) -> Result<(Line<'_>, usize), ParseError> {
    // Measurement: up to an unescaped ',' or ' '.
    let mut i = start;
    let m_end = scan_token(buf, &mut i, |c| {
        matches!(c, b',' | b' ' | b'\t' | b'\n' | b'\0')
    })
    .ok_or(ParseError::Measurement)?;
    if m_end == start || buf.get(i) == Some(&b'\0') {
        return Err(ParseError::Measurement);
    }
    let measurement = Escaped::new(&buf[start..m_end], EscapeSet::Measurement);

    // Tag set.
    let mut tags: &[u8] = &[];
    if buf.get(i) == Some(&b',') {
        i += 1;
        let t_start = i;
        loop {
            let k_start = i;
            // An unescaped comma cannot be part of a tag key: InfluxDB's
            // scanTags reads it as the end of a tag without a value.
            let k_end = scan_token(buf, &mut i, |c| {
                matches!(c, b'=' | b',' | b' ' | b'\t' | b'\n')
            })
            .ok_or(ParseError::Tag)?;
            if k_end == k_start || buf.get(i) != Some(&b'=') {
                return Err(ParseError::Tag);
            }
            i += 1;
            let v_start = i;
            let v_end = scan_token(buf, &mut i, |c| matches!(c, b',' | b' ' | b'\t' | b'\n'))
                .ok_or(ParseError::Tag)?;
            if v_end == v_start {
                return Err(ParseError::Tag);
            }
            match buf.get(i) {
                Some(b',') => i += 1,
                _ => break,
            }
        }
        tags = &buf[t_start..i];
    }

    // At least one space, then the field set.
    if !skip_spaces(buf, &mut i) {
        return Err(ParseError::Field);
    }
    let f_start = i;
    loop {
        let k_start = i;
        // An unescaped comma cannot be part of a field key: InfluxDB's
        // scanFields (and scanLine, which decides where a quoted string
        // starts) counts it as a field separator.
        let k_end = scan_token(buf, &mut i, |c| {
            matches!(c, b'=' | b',' | b' ' | b'\t' | b'\n')
        })
        .ok_or(ParseError::Field)?;
        if k_end == k_start || buf.get(i) != Some(&b'=') {
            return Err(ParseError::Field);
        }
        let (_, used) = field_value(buf, i + 1)?;
        i = used;
        match buf.get(i) {
            Some(b',') => i += 1,
            _ => break,
        }
    }
    let fields = &buf[f_start..i];

    // Optional timestamp, optional trailing spaces, then end of line.
    let mut timestamp = None;
    if skip_spaces(buf, &mut i) && !at_line_end(buf, i) {
        let ts_start = i;
        if buf.get(i) == Some(&b'-') {
            i += 1;
        }
        while buf.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        timestamp = Some(parse_i64(&buf[ts_start..i]).ok_or(ParseError::Timestamp)?);
        if !at_line_end(buf, i) && !matches!(buf.get(i), Some(b' ')) {
            return Err(ParseError::Timestamp);
        }
        skip_spaces(buf, &mut i);
    }
    if !at_line_end(buf, i) {
        return Err(ParseError::Trailing);
    }
    if buf.get(i) == Some(&b'\r') {
        i += 1;
    }
    if buf.get(i) == Some(&b'\n') {
        i += 1;
    }
    let line = Line {
        measurement,
        tags,
        fields,
        timestamp,
    };
    Ok((line, i))
}

/// End of line: the buffer's end, `\n`, or `\r\n`.
#[inline]
fn at_line_end(buf: &[u8], i: usize) -> bool {
    match buf.get(i) {
        None | Some(b'\n') => true,
        Some(b'\r') => matches!(buf.get(i + 1), None | Some(b'\n')),
        _ => false,
    }
}

/// Skips one or more spaces; false when there was none.
#[inline]
fn skip_spaces(buf: &[u8], i: &mut usize) -> bool {
    let start = *i;
    while buf.get(*i) == Some(&b' ') {
        *i += 1;
    }
    *i > start
}

/// Scans a name or tag value from `*i` up to the first unescaped byte for which
/// `stop` holds (or the end). Returns the end offset, or None when the token
/// ends in a backslash, lone or escaped. A `\r` right before the line end also
/// stops it.
#[inline]
fn scan_token(buf: &[u8], i: &mut usize, stop: impl Fn(u8) -> bool) -> Option<usize> {
    let start = *i;
    while let Some(&c) = buf.get(*i) {
        if c == b'\\' {
            match buf.get(*i + 1) {
                None => return None,
                // A known escape takes its character; an unknown one keeps
                // both bytes literally (as InfluxDB does): either way the
                // next byte belongs to the token.
                Some(_) => {
                    *i += 2;
                    continue;
                }
            }
        }
        if stop(c) || (c == b'\r' && at_line_end(buf, *i)) {
            break;
        }
        *i += 1;
    }
    // A lone backslash at the end was caught above. An escaped one is refused
    // too: InfluxDB takes any delimiter after a backslash as escaped, so `a\\`
    // cannot end a name there, and the oracle crate rejects it. Since a
    // backslash always pairs with the next byte, a trailing `\\` is that pair.
    if buf[start..*i].ends_with(b"\\\\") {
        return None;
    }
    Some(*i)
}

/// Parses a field value starting at `start`; returns it and the offset past it.
fn field_value(buf: &[u8], start: usize) -> Result<(FieldValue<'_>, usize), ParseError> {
    let first = *buf.get(start).ok_or(ParseError::FieldValue)?;
    if first == b'"' {
        let mut i = start + 1;
        loop {
            match buf.get(i) {
                None => return Err(ParseError::Trailing),
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let s = Escaped::new(&buf[start + 1..i.min(buf.len())], EscapeSet::Str);
        let end = i + 1;
        return if value_ends(buf, end) {
            Ok((FieldValue::String(s), end))
        } else {
            Err(ParseError::FieldValue)
        };
    }
    let mut end = start;
    while let Some(&c) = buf.get(end) {
        if matches!(c, b',' | b' ' | b'\t' | b'\n') || (c == b'\r' && at_line_end(buf, end)) {
            break;
        }
        end += 1;
    }
    let tok = &buf[start..end];
    let value = match tok {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => FieldValue::Boolean(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => FieldValue::Boolean(false),
        [digits @ .., b'i'] => {
            FieldValue::Integer(parse_i64(digits).ok_or(ParseError::FieldValue)?)
        }
        [digits @ .., b'u'] => {
            FieldValue::Unsigned(parse_u64(digits).ok_or(ParseError::FieldValue)?)
        }
        _ => FieldValue::Float(parse_float(tok).ok_or(ParseError::FieldValue)?),
    };
    if !value_ends(buf, end) {
        return Err(ParseError::FieldValue);
    }
    Ok((value, end))
}

/// A field value must be followed by `,`, a space or the line's end.
#[inline]
fn value_ends(buf: &[u8], i: usize) -> bool {
    matches!(buf.get(i), Some(b',') | Some(b' ')) || at_line_end(buf, i)
}

/// `-?[0-9]+` as i64, None on syntax error or overflow.
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

/// `[0-9]+` as u64, None on syntax error or overflow.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

/// Floats as InfluxDB writes them: `-?D`, `-?D.D`, `-?DeX`, `-?D.DeX`, with
/// `X` an optionally signed integer. Plain digit strings, the common case, are
/// converted without the general float parser.
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
    let mut i = 0;
    let int_len = count_digits(&digits[i..]);
    if int_len == 0 {
        return None;
    }
    i += int_len;
    if digits.get(i) == Some(&b'.') {
        i += 1;
        let frac = count_digits(&digits[i..]);
        if frac == 0 {
            return None;
        }
        i += frac;
    }
    if matches!(digits.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(digits.get(i), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        let exp = count_digits(&digits[i..]);
        if exp == 0 {
            return None;
        }
        i += exp;
    }
    if i != digits.len() {
        return None;
    }
    // Validated as ASCII above. Out of range is an error, as in InfluxDB
    // (strconv.ParseFloat's ErrRange), not an infinity that poisons sums.
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

#[inline]
fn count_digits(s: &[u8]) -> usize {
    s.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// Offset of the first unescaped byte matching `pred`, or the length.
#[inline]
fn find_unescaped(s: &[u8], pred: impl Fn(u8) -> bool) -> usize {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'\\' {
            i += 2;
            continue;
        }
        if pred(c) {
            return i;
        }
        i += 1;
    }
    s.len()
}

/// End of the line that starts at `start`, past its `\n`: a newline inside a
/// quoted field string does not end the line (InfluxDB's scanLine).
fn line_end(buf: &[u8], start: usize) -> usize {
    let mut quoted = false;
    let mut in_fields = false;
    let (mut equals, mut commas) = (0usize, 0usize);
    let mut i = start;
    while i < buf.len() {
        let c = buf[i];
        if c == b'\\' {
            i += 2;
            continue;
        }
        match c {
            b' ' => in_fields = true,
            b'=' if in_fields && !quoted => equals += 1,
            b',' if in_fields && !quoted => commas += 1,
            b'"' if in_fields && equals > commas => quoted = !quoted,
            b'\n' if !quoted => return i + 1,
            _ => {}
        }
        i += 1;
    }
    buf.len()
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

    #[test]
    fn parses_the_seed_line() {
        let l = one(
            "combined,uri=/path/to/some/product,id=123456789,ip=127.0.0.1,role=ingresstype count=1",
        );
        assert!(l.measurement.eq_bytes(b"combined"));
        assert_eq!(
            tags(&l),
            [
                ("uri", "/path/to/some/product"),
                ("id", "123456789"),
                ("ip", "127.0.0.1"),
                ("role", "ingresstype")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(l.field(b"count").and_then(|v| v.as_f64()), Some(1.0));
        assert_eq!(l.timestamp, None);
    }

    #[test]
    fn unescapes_measurement_tags_and_field_keys() {
        let l = one(r"my\ meas\,x,ta\=g\ k=v\,al\ ue\=x f\ k\==1i 1700000000000000000");
        assert_eq!(l.measurement.to_string_lossy(), "my meas,x");
        assert!(l.measurement.eq_bytes(b"my meas,x"));
        assert_eq!(tags(&l), [("ta=g k".to_string(), "v,al ue=x".to_string())]);
        let (k, v) = l.fields().next().unwrap();
        assert_eq!(k.to_string_lossy(), "f k=");
        assert!(matches!(v, FieldValue::Integer(1)));
        assert_eq!(l.timestamp, Some(1_700_000_000_000_000_000));
    }

    #[test]
    fn measurement_keeps_backslash_before_equals() {
        // `=` is not escapable in a measurement: the backslash stays.
        assert_eq!(one(r"a\=b f=1").measurement.to_string_lossy(), r"a\=b");
        // An unknown escape keeps both bytes.
        assert_eq!(one(r"a\qb f=1").measurement.to_string_lossy(), r"a\qb");
        assert_eq!(one(r"a\\b f=1").measurement.to_string_lossy(), r"a\b");
    }

    #[test]
    fn field_types() {
        let l = one(r#"m a=1.5,b=-2i,c=3u,d="x \"q\" \\ y",e=true,f=F,g=1e3,h=-1.5E-2,i=7"#);
        let v: Vec<String> = l.fields().map(|(_, v)| format!("{v:?}")).collect();
        assert_eq!(v[0], "Float(1.5)");
        assert_eq!(v[1], "Integer(-2)");
        assert_eq!(v[2], "Unsigned(3)");
        assert_eq!(v[3], r#"String("x \"q\" \\ y")"#);
        assert_eq!(v[4], "Boolean(true)");
        assert_eq!(v[5], "Boolean(false)");
        assert_eq!(v[6], "Float(1000.0)");
        assert_eq!(v[7], "Float(-0.015)");
        assert_eq!(v[8], "Float(7.0)");
    }

    #[test]
    fn integer_bounds() {
        assert!(matches!(
            one("m a=-9223372036854775808i").field(b"a"),
            Some(FieldValue::Integer(i64::MIN))
        ));
        assert_eq!(err("m a=9223372036854775808i"), ParseError::FieldValue);
        assert!(matches!(
            one("m a=18446744073709551615u").field(b"a"),
            Some(FieldValue::Unsigned(u64::MAX))
        ));
        assert_eq!(err("m a=18446744073709551616u"), ParseError::FieldValue);
        assert_eq!(err("m a=-1u"), ParseError::FieldValue);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(err("m,id,ip=1 f=1"), ParseError::Tag);
        assert_eq!(err("m"), ParseError::Field);
        assert_eq!(err("m "), ParseError::Field);
        assert_eq!(err(",t=1 f=1"), ParseError::Measurement);
        assert_eq!(err("m,t f=1"), ParseError::Tag);
        assert_eq!(err("m,t= f=1"), ParseError::Tag);
        assert_eq!(err("m,=v f=1"), ParseError::Tag);
        assert_eq!(err("m, f=1"), ParseError::Tag);
        assert_eq!(err("m f"), ParseError::Field);
        assert_eq!(err("m f="), ParseError::FieldValue);
        assert_eq!(err("m f=abc"), ParseError::FieldValue);
        assert_eq!(err("m f=1.2.3"), ParseError::FieldValue);
        assert_eq!(err("m f=1 12x"), ParseError::Timestamp);
        assert_eq!(err("m f=1 1 2"), ParseError::Trailing);
        assert_eq!(err(r#"m f="abc"#), ParseError::Trailing);
        assert_eq!(err(r"m\ f=1"), ParseError::Field);
        assert_eq!(err("m,t=v\\"), ParseError::Tag);
        assert_eq!(err("m f=inf"), ParseError::FieldValue);
        assert_eq!(err("m f=NaN"), ParseError::FieldValue);
        assert_eq!(err("m\0 f=1"), ParseError::Measurement);
    }

    #[test]
    fn bad_line_does_not_hide_the_others() {
        let d = b"a f=1\nbroken line here\r\nb,t=1 f=2i 5\r\n\n# comment\n  c f=3\n";
        let got: Vec<_> = Lines::new(d)
            .map(|r| r.map(|l| l.measurement.to_string_lossy()))
            .collect();
        assert_eq!(
            got,
            vec![
                Ok("a".to_string()),
                Err(ParseError::Field),
                Ok("b".to_string()),
                Ok("c".to_string())
            ]
        );
    }

    #[test]
    fn newline_inside_a_string_does_not_end_the_line() {
        let d = b"a s=\"x\ny\" 1\nb f=1\n";
        let got: Vec<_> = Lines::new(d).collect();
        assert_eq!(got.len(), 2);
        let a = got[0].as_ref().unwrap();
        assert!(matches!(a.field(b"s"), Some(FieldValue::String(s)) if s.eq_bytes(b"x\ny")));
        // And after a broken line with such a string, the walk resyncs past it.
        let d = b"a,t s=\"x\ny\"\nb f=1";
        let got: Vec<_> = Lines::new(d).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err());
        assert!(got[1].as_ref().unwrap().measurement.eq_bytes(b"b"));
    }

    #[test]
    fn crlf_and_trailing_spaces() {
        let l = one("m,t=v f=1i 42   \r\n");
        assert_eq!(l.timestamp, Some(42));
        assert_eq!(tags(&l), [("t".to_string(), "v".to_string())]);
        let l = one("m f=1\r");
        assert!(matches!(l.field(b"f"), Some(FieldValue::Float(v)) if v == 1.0));
    }

    #[test]
    fn tag_value_may_contain_equals() {
        let l = one("m,k=a=b f=1");
        assert_eq!(tags(&l), [("k".to_string(), "a=b".to_string())]);
    }

    // The cases below were found by the property tests (lineproto_proptests.rs).

    #[test]
    fn names_may_not_end_in_an_escaped_backslash() {
        assert_eq!(err(r"m\\ f=1"), ParseError::Measurement);
        assert_eq!(err(r"m,t=a\\ f=1"), ParseError::Tag);
        assert_eq!(err(r"m,t\\=a f=1"), ParseError::Tag);
        assert_eq!(err(r"m f\\=1"), ParseError::Field);
        assert_eq!(err(r"m,t=a\\\\ f=1"), ParseError::Tag);
        // Inside a name it is fine.
        assert_eq!(tags(&one(r"m,t=a\\b f=1"))[0].1, r"a\b");
        assert_eq!(tags(&one(r"m,t=a\\\\b f=1"))[0].1, r"a\\b");
    }

    #[test]
    fn unescaped_comma_ends_a_field_key() {
        assert_eq!(err("m a,b=1"), ParseError::Field);
        assert_eq!(err("m a=1,b,c=2"), ParseError::Field);
        // So scanLine's idea of where a string starts holds: this is two lines.
        let got: Vec<_> = Lines::new(b"m a\\\\,=\"x\ny f=1").collect();
        assert_eq!(got.len(), 2);
        assert!(got[1].as_ref().is_ok_and(|l| l.measurement.eq_bytes(b"y")));
    }

    #[test]
    fn float_out_of_range_is_rejected() {
        assert_eq!(err("m f=1e999"), ParseError::FieldValue);
        assert_eq!(err("m f=-1.5E309"), ParseError::FieldValue);
        assert!(matches!(one("m f=1e-999").field(b"f"), Some(FieldValue::Float(v)) if v == 0.0));
        assert!(
            matches!(one("m f=1.7e308").field(b"f"), Some(FieldValue::Float(v)) if v == 1.7e308)
        );
    }

    #[test]
    fn indented_lines_end_where_scanline_ends_them() {
        // scanLine takes the indent for the space before the fields, so
        // `=` then `"` opens a string running over the newline: one bad line.
        let got: Vec<_> = Lines::new(b" = \"=0\na a=0").collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().err(), Some(&ParseError::Trailing));
        // Unindented, the same text is two good lines.
        assert!(Lines::new(b"= \"=0\na a=0").all(|r| r.is_ok()));
        // A broken indented line resyncs where scanLine ends it.
        let got: Vec<_> = Lines::new(b" m=x,t=\"y\nb f=1\"\nc f=2").collect();
        assert_eq!(got.len(), 2);
        assert!(got[1].as_ref().is_ok_and(|l| l.measurement.eq_bytes(b"c")));
    }

    #[test]
    fn comment_ends_where_scanline_ends_it() {
        let got: Vec<_> = Lines::new(b"# a=\"x\nb f=1\"\nc f=2").collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().is_ok_and(|l| l.measurement.eq_bytes(b"c")));
    }
}

#[cfg(test)]
#[path = "lineproto_proptests.rs"]
pub(crate) mod proptests;
