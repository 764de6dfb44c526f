//! Property tests proving that the line protocol parser reads generated lines
//! back exactly, agrees with the `influxdb-line-protocol` crate, never panics
//! on arbitrary bytes, and never lets a bad line hide a good one.
//!
//! Lines are generated as structures (measurement, tags, typed fields,
//! timestamp) whose names and values draw on the characters that need
//! escaping; each is serialised with the escapes its section requires, so
//! the expected parse is known without trusting any parser. The
//! `influxdb-line-protocol` crate then serves as an independent oracle for
//! the same lines and for slightly corrupted ones; where it is known to
//! deviate from InfluxDB's own Go parser the comparison says so and skips.
//!
//! A failure is persisted under `proptest-regressions/` and replayed first on
//! every later run (commit the file); its shrunk case also belongs in
//! `lineproto.rs`'s unit tests.

use super::{EscapeSet, Escaped, FieldValue, Line, Lines};
use influxdb_line_protocol as oracle;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use crate::proptest_config::config;

// ---------------------------------------------------------------------------
// The comparable form of a parsed line.

/// A field value; floats compare by their bits, so `-0` and `0` differ.
#[derive(Clone, Debug)]
enum Value {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Str(String),
    Boolean(bool),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Integer(a), Value::Integer(b)) => a == b,
            (Value::Unsigned(a), Value::Unsigned(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Boolean(a), Value::Boolean(b)) => a == b,
            _ => false,
        }
    }
}

impl From<FieldValue<'_>> for Value {
    fn from(v: FieldValue<'_>) -> Self {
        match v {
            FieldValue::Float(v) => Value::Float(v),
            FieldValue::Integer(v) => Value::Integer(v),
            FieldValue::Unsigned(v) => Value::Unsigned(v),
            FieldValue::String(s) => Value::Str(s.to_string_lossy()),
            FieldValue::Boolean(v) => Value::Boolean(v),
        }
    }
}

impl From<&oracle::FieldValue<'_>> for Value {
    fn from(v: &oracle::FieldValue<'_>) -> Self {
        match v {
            oracle::FieldValue::F64(v) => Value::Float(*v),
            oracle::FieldValue::I64(v) => Value::Integer(*v),
            oracle::FieldValue::U64(v) => Value::Unsigned(*v),
            oracle::FieldValue::String(s) => Value::Str(s.to_string()),
            oracle::FieldValue::Boolean(v) => Value::Boolean(*v),
        }
    }
}

/// One line with every name and value unescaped.
#[derive(Clone, Debug, PartialEq)]
struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    timestamp: Option<i64>,
}

impl Point {
    fn ours(line: &Line<'_>) -> Self {
        Point {
            measurement: line.measurement.to_string_lossy(),
            tags: line
                .tags()
                .map(|(k, v)| (k.to_string_lossy(), v.to_string_lossy()))
                .collect(),
            fields: line
                .fields()
                .map(|(k, v)| (k.to_string_lossy(), Value::from(v)))
                .collect(),
            timestamp: line.timestamp,
        }
    }

    fn oracle(line: &oracle::ParsedLine<'_>) -> Self {
        Point {
            measurement: line.series.measurement.to_string(),
            tags: line
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: line
                .field_set
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(v)))
                .collect(),
            timestamp: line.timestamp,
        }
    }
}

/// Our parse of `text`: a point per valid line, `None` per rejected one.
fn parse_ours(text: &str) -> Vec<Option<Point>> {
    Lines::new(text.as_bytes())
        .map(|r| r.ok().map(|l| Point::ours(&l)))
        .collect()
}

/// The oracle's parse of `text`, in the same form.
fn parse_oracle(text: &str) -> Vec<Option<Point>> {
    oracle::parse_lines(text)
        .map(|r| r.ok().map(|l| Point::oracle(&l)))
        .collect()
}

// ---------------------------------------------------------------------------
// Generating valid lines.

/// Writes `s` with the escapes of `set`. With `raw_backslashes`, a backslash
/// before a character the section cannot escape is written as is (`\q`
/// stands for itself), exercising the "any other backslash is literal" rule.
fn escape(s: &str, set: EscapeSet, raw_backslashes: bool) -> String {
    let escapes = |c: char| c.is_ascii() && set.escapes(c as u8);
    let mut out = String::with_capacity(2 * s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let literal = c == '\\' && raw_backslashes && chars.peek().is_some_and(|&n| !escapes(n));
        if escapes(c) && !literal {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Characters for names and tag values: mostly plain, often escapable.
fn name_char() -> impl Strategy<Value = char> {
    let plain: Vec<char> = ('a'..='z')
        .chain('0'..='9')
        .chain("_-./:".chars())
        .collect();
    prop_oneof![
        6 => select(plain),
        3 => select(vec![',', '=', ' ', '\\']),
        1 => select(vec!['"', '#', '\'', 'é', '日', '🦀']),
    ]
}

/// Characters for string field values, newlines included.
fn string_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => select(('a'..='z').chain('0'..='9').collect::<Vec<_>>()),
        3 => select(vec!['"', '\\', ',', '=', ' ', '\n', '#']),
        1 => select(vec!['é', '日', '\t', '\r']),
    ]
}

/// A name or tag value and how it is written in a section using `set`.
fn escaped_name(set: EscapeSet) -> impl Strategy<Value = (String, String)> {
    (vec(name_char(), 1..8), any::<bool>()).prop_map(move |(chars, raw)| {
        let mut s: String = chars.into_iter().collect();
        // A name may not end in a backslash: InfluxDB cannot tell `a\\,`
        // from an escaped delimiter.
        if s.ends_with('\\') {
            s.push('x');
        }
        let written = escape(&s, set, raw);
        (s, written)
    })
}

fn measurement() -> impl Strategy<Value = (String, String)> {
    escaped_name(EscapeSet::Measurement)
        .prop_filter("a leading # makes a comment line", |(s, _)| {
            !s.starts_with('#')
        })
}

fn key() -> impl Strategy<Value = (String, String)> {
    escaped_name(EscapeSet::Key)
}

/// Every spelling of a boolean.
const BOOLEANS: [(&str, bool); 10] = [
    ("t", true),
    ("T", true),
    ("true", true),
    ("True", true),
    ("TRUE", true),
    ("f", false),
    ("F", false),
    ("false", false),
    ("False", false),
    ("FALSE", false),
];

/// A float in the forms InfluxDB accepts: Rust's shortest round-trip
/// rendering (plain or exponent) of any finite f64, and hand-built
/// `-?D+(.D+)?([eE][+-]?D+)?` with leading zeros and long mantissas.
fn float_text() -> impl Strategy<Value = String> {
    let finite = || any::<f64>().prop_filter("finite", |v| v.is_finite());
    prop_oneof![
        finite().prop_map(|v| format!("{v}")),
        finite().prop_map(|v| format!("{v:e}")),
        finite().prop_map(|v| format!("{v:E}")),
        (
            any::<bool>(),
            "[0-9]{1,20}",
            proptest::option::of("[0-9]{1,20}"),
            proptest::option::of("[eE][+-]?[0-9]{1,2}"),
        )
            .prop_map(|(neg, int, frac, exp)| {
                let sign = if neg { "-" } else { "" };
                let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
                format!("{sign}{int}{frac}{}", exp.unwrap_or_default())
            }),
    ]
}

/// A field value and its exact text.
fn field_value() -> impl Strategy<Value = (Value, String)> {
    prop_oneof![
        float_text().prop_map(|t| (Value::Float(t.parse().expect("valid float")), t)),
        any::<i64>().prop_map(|v| (Value::Integer(v), format!("{v}i"))),
        any::<u64>().prop_map(|v| (Value::Unsigned(v), format!("{v}u"))),
        (vec(string_char(), 0..10), any::<bool>()).prop_map(|(chars, raw)| {
            let s: String = chars.into_iter().collect();
            let written = format!("\"{}\"", escape(&s, EscapeSet::Str, raw));
            (Value::Str(s), written)
        }),
        select(&BOOLEANS[..]).prop_map(|(t, v)| (Value::Boolean(v), t.to_string())),
    ]
}

/// Keeps the first of each key: InfluxDB rejects duplicate tags (the oracle
/// does not check), and a lookup by key finds the first only.
fn first_of_each_key<T>(items: Vec<((String, String), T)>) -> Vec<((String, String), T)> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|((k, _), _)| seen.insert(k.clone()))
        .collect()
}

/// A valid line: what it means and how it is written.
#[derive(Clone, Debug)]
struct Generated {
    point: Point,
    text: String,
}

fn valid_line() -> impl Strategy<Value = Generated> {
    (
        measurement(),
        vec((key(), key()), 0..6),
        vec((key(), field_value()), 1..5),
        proptest::option::of(any::<i64>()),
        1..3usize,
        0..3usize,
    )
        .prop_map(|(m, tags, fields, timestamp, gap, trailing)| {
            let tags = first_of_each_key(tags);
            let fields = first_of_each_key(fields);
            let gap = " ".repeat(gap);
            let mut text = m.1;
            for ((_, k), (_, v)) in &tags {
                text += &format!(",{k}={v}");
            }
            text += &gap;
            for (i, ((_, k), (_, v))) in fields.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                text += &format!("{sep}{k}={v}");
            }
            if let Some(ts) = timestamp {
                text += &format!("{gap}{ts}");
            }
            text += &" ".repeat(trailing);
            let point = Point {
                measurement: m.0,
                tags: tags.into_iter().map(|((k, _), (v, _))| (k, v)).collect(),
                fields: fields.into_iter().map(|((k, _), (v, _))| (k, v)).collect(),
                timestamp,
            };
            Generated { point, text }
        })
}

/// A valid line the oracle reads as InfluxDB does.
fn oracle_line() -> impl Strategy<Value = Generated> {
    valid_line().prop_map(|mut g| {
        // The oracle rejects trailing spaces after the field set when no
        // timestamp follows; InfluxDB (scanTime) accepts them. (A field
        // value never ends in a space, so only the trailing ones go.)
        if g.point.timestamp.is_none() {
            g.text.truncate(g.text.trim_end_matches(' ').len());
        }
        g
    })
}

/// Whether a name holds a `"`: InfluxDB's scanLine takes an indenting space
/// for the one before the field set, so in an indented line such a quote may
/// open a string and move the end of the line.
fn quote_in_names(p: &Point) -> bool {
    let tags = p.tags.iter().flat_map(|(k, v)| [k, v]);
    let fields = p.fields.iter().map(|(k, _)| k);
    let mut names = std::iter::once(&p.measurement).chain(tags).chain(fields);
    names.any(|n| n.contains('"'))
}

/// What may separate lines: a newline, optionally with blank and comment
/// lines in between. Comments hold no `"` or `\`, which would make Go's
/// scanLine run the comment on into the next line.
fn separator() -> impl Strategy<Value = String> {
    let eol = select(vec!["\n", "\r\n"]);
    let filler = prop_oneof![
        Just(String::new()),
        select(vec![" ", "\t", "  \t "]).prop_map(str::to_string),
        "[ \t]{0,2}#[a-z0-9 ,=#]{0,12}",
    ];
    (eol.clone(), vec((filler, eol), 0..3)).prop_map(|(first, extra)| {
        let mut s = first.to_string();
        for (line, eol) in extra {
            s += &line;
            s += eol;
        }
        s
    })
}

/// Indentation before a line.
fn indent() -> impl Strategy<Value = &'static str> {
    select(vec!["", "", " ", "\t", " \t "])
}

// ---------------------------------------------------------------------------
// Checking our parse against a known point.

/// `e` stands for `want`, by every means `Escaped` offers.
fn check_escaped(e: &Escaped<'_>, want: &str) -> Result<(), TestCaseError> {
    let want = want.as_bytes();
    prop_assert!(
        e.eq_bytes(want),
        "{:?} != {:?}",
        e,
        String::from_utf8_lossy(want)
    );
    prop_assert!(!e.eq_bytes(&[want, b"x"].concat()));
    prop_assert!(!e.eq_bytes(&want[..want.len().saturating_sub(1)]) || want.is_empty());
    prop_assert_eq!(e.unescaped_len(), want.len());
    prop_assert_eq!(e.bytes().collect::<Vec<_>>(), want);
    let mut out = b"prefix".to_vec();
    e.unescape_into(&mut out);
    prop_assert_eq!(&out[6..], want);
    if e.is_plain() {
        prop_assert_eq!(e.raw(), want);
    }
    Ok(())
}

/// `line` means exactly `want`, also through lookups by name.
fn check_line(line: &Line<'_>, want: &Point) -> Result<(), TestCaseError> {
    prop_assert_eq!(&Point::ours(line), want);
    check_escaped(&line.measurement, &want.measurement)?;
    for ((k, v), (want_k, want_v)) in line.tags().zip(&want.tags) {
        check_escaped(&k, want_k)?;
        check_escaped(&v, want_v)?;
        let found = line.tag(want_k.as_bytes());
        prop_assert!(found.is_some_and(|f| f.eq_bytes(want_v.as_bytes())));
    }
    for ((k, v), (want_k, want_v)) in line.fields().zip(&want.fields) {
        check_escaped(&k, want_k)?;
        if let (FieldValue::String(s), Value::Str(want_s)) = (v, want_v) {
            check_escaped(&s, want_s)?;
        }
        let found = line.field(want_k.as_bytes()).map(Value::from);
        prop_assert_eq!(found.as_ref(), Some(want_v));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. Valid lines round-trip.

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn generated_valid_line_round_trips(g in valid_line()) {
        let mut lines = Lines::new(g.text.as_bytes());
        let line = lines.next().expect("one line");
        prop_assert!(line.is_ok(), "{:?} rejected: {:?}", g.text, line);
        check_line(&line.unwrap(), &g.point)?;
        prop_assert!(lines.next().is_none());
    }

    #[test]
    fn generated_datagram_round_trips(
        lead in separator(),
        lines in vec((valid_line(), separator(), indent()), 1..6),
        tail in proptest::option::of(separator()),
    ) {
        // The leading separator only contributes blank and comment lines.
        let mut text = lead.trim_start_matches(['\r', '\n']).to_string();
        for (i, (g, sep, indent)) in lines.iter().enumerate() {
            if i > 0 {
                text += sep;
            }
            if !quote_in_names(&g.point) {
                text += indent;
            }
            text += &g.text;
        }
        text += tail.as_deref().unwrap_or("");
        let got: Vec<_> = Lines::new(text.as_bytes()).collect();
        prop_assert_eq!(got.len(), lines.len(), "in {:?}", text);
        for (got, (want, _, _)) in got.iter().zip(&lines) {
            match got {
                Ok(line) => check_line(line, &want.point)?,
                Err(e) => {
                    prop_assert!(false, "{:?} rejected ({}) in {:?}", want.text, e, text)
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 2. Agreement with the `influxdb-line-protocol` crate.

/// One edit to a sequence (of characters, or of bytes in the kernel
/// equivalence tests).
#[derive(Clone, Debug)]
pub(crate) enum Edit<T> {
    Delete(Index),
    Insert(Index, T),
    Replace(Index, T),
}

impl<T: Copy> Edit<T> {
    pub(crate) fn apply(&self, v: &mut Vec<T>) {
        match *self {
            Edit::Delete(at) if !v.is_empty() => {
                v.remove(at.index(v.len()));
            }
            Edit::Insert(at, c) => v.insert(at.index(v.len() + 1), c),
            Edit::Replace(at, c) if !v.is_empty() => {
                let i = at.index(v.len());
                v[i] = c;
            }
            _ => {}
        }
    }
}

/// An edit that deletes, or inserts or writes one of `alphabet`.
pub(crate) fn edit<T: Clone + std::fmt::Debug + 'static>(
    alphabet: Vec<T>,
) -> impl Strategy<Value = Edit<T>> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), select(alphabet.clone())).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<Index>(), select(alphabet)).prop_map(|(at, c)| Edit::Replace(at, c)),
    ]
}

/// Valid lines joined by `\n` with a few characters deleted, inserted or
/// replaced: mostly broken, sometimes still (or differently) valid.
fn almost_valid() -> impl Strategy<Value = String> {
    let alphabet = ", =\"\\ 1ia-.eu#tE+\t\n".chars().collect();
    (vec(oracle_line(), 1..4), vec(edit(alphabet), 1..4)).prop_map(|(lines, edits)| {
        let text: Vec<&str> = lines.iter().map(|g| g.text.as_str()).collect();
        let mut chars: Vec<char> = text.join("\n").chars().collect();
        for e in &edits {
            e.apply(&mut chars);
        }
        chars.into_iter().collect()
    })
}

/// Whether the oracle is known to judge `line` differently from InfluxDB,
/// given our reading of it and the oracle's.
fn oracle_deviates(line: &str, ours: &[Option<Point>], theirs: &[Option<Point>]) -> bool {
    // A `\r` before or after the line: by design we take it for (part of) a
    // `\r\n` line end; the oracle, like InfluxDB, for content.
    let trimmed = line.trim_matches([' ', '\t']);
    if trimmed.starts_with('\r') || trimmed.ends_with('\r') {
        return true;
    }
    // A comment that scanLine carries over a newline (inside quotes): the
    // oracle ends it at the newline and parses the rest, InfluxDB skips it all.
    if trimmed.starts_with('#') && trimmed.contains('\n') {
        return true;
    }
    match (ours, theirs) {
        // Trailing spaces after the fields, no timestamp: the oracle rejects
        // them, InfluxDB's scanTime skips them.
        ([Some(p)], [None]) => p.timestamp.is_none() && line.ends_with(' '),
        ([None], [Some(p)]) => {
            // An unescaped comma in a tag or field key: the oracle takes it
            // as part of the key, InfluxDB's scanTags and scanFields as a
            // separator (and fail).
            let comma_in_key = p.fields.iter().any(|(k, _)| k.contains(','))
                || p.tags.iter().any(|(k, _)| k.contains(','));
            // A float out of range: the oracle reads it as an infinity,
            // InfluxDB rejects it.
            let infinite = p.fields.iter().any(|(_, v)| match v {
                Value::Float(f) => !f.is_finite(),
                _ => false,
            });
            comma_in_key || infinite || single_field_then_comma(line, p)
        }
        _ => false,
    }
}

/// Whether `line`, read by the oracle as `p`, has one field followed by a
/// comma: the oracle's field list swallows that comma; InfluxDB's scanFields
/// counts a field without `=` and fails.
fn single_field_then_comma(line: &str, p: &Point) -> bool {
    let mut rest = line.trim_end_matches(' ');
    if p.timestamp.is_some() {
        rest = rest.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        rest = rest.trim_end_matches(' ');
    }
    p.fields.len() == 1 && rest.ends_with(',')
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn valid_lines_agree_with_oracle(lines in vec(oracle_line(), 1..5)) {
        let text = lines.iter().map(|g| g.text.as_str()).collect::<Vec<_>>().join("\n");
        let want: Vec<_> = lines.iter().map(|g| Some(g.point.clone())).collect();
        prop_assert_eq!(parse_oracle(&text), want.clone(), "oracle on {:?}", text);
        prop_assert_eq!(parse_ours(&text), want, "ours on {:?}", text);
    }

    #[test]
    fn almost_valid_lines_agree_with_oracle(text in almost_valid()) {
        // The oracle's split_lines ports InfluxDB's scanLine: our walk must cut
        // the datagram into the same lines.
        let segments: Vec<&str> = oracle::split_lines(&text).collect();
        let by_segment: Vec<_> = segments.iter().flat_map(|s| parse_ours(s)).collect();
        prop_assert_eq!(parse_ours(&text), by_segment, "line split of {:?}", text);
        for segment in segments {
            let (ours, theirs) = (parse_ours(segment), parse_oracle(segment));
            if !oracle_deviates(segment, &ours, &theirs) {
                prop_assert_eq!(ours, theirs, "on line {:?}", segment);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Arbitrary bytes never panic.

/// Bytes biased towards those the grammar cares about.
fn noisy_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        2 => any::<u8>(),
        3 => select(b" ,=\\\"\n\r\t#\0".to_vec()),
        3 => select(b"mftTFaeE0123456789.-+iu".to_vec()),
    ];
    vec(byte, 0..160)
}

/// Generated datagrams with random bytes overwritten, inserted or removed:
/// reaches deeper into the grammar than noise alone.
fn damaged_datagram() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(valid_line(), 1..4),
        vec((any::<Index>(), any::<u8>(), 0..3u8), 1..6),
    )
        .prop_map(|(lines, damage)| {
            let text: Vec<&str> = lines.iter().map(|g| g.text.as_str()).collect();
            let mut bytes = text.join("\n").into_bytes();
            for (at, b, how) in damage {
                match how {
                    0 => bytes.insert(at.index(bytes.len() + 1), b),
                    _ if bytes.is_empty() => {}
                    1 => {
                        let i = at.index(bytes.len());
                        bytes[i] = b;
                    }
                    _ => {
                        bytes.remove(at.index(bytes.len()));
                    }
                }
            }
            bytes
        })
}

/// Every view of `e` agrees with every other and none panics.
fn exercise(e: &Escaped<'_>) -> Result<(), TestCaseError> {
    let mut out = Vec::new();
    e.unescape_into(&mut out);
    prop_assert_eq!(e.bytes().collect::<Vec<_>>(), out.clone());
    prop_assert_eq!(e.unescaped_len(), out.len());
    prop_assert!(e.eq_bytes(&out));
    prop_assert_eq!(
        e.to_string_lossy(),
        String::from_utf8_lossy(&out).into_owned()
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn random_bytes_never_panic(bytes in prop_oneof![noisy_bytes(), damaged_datagram()]) {
        let mut items = 0;
        for line in Lines::new(&bytes) {
            items += 1;
            let Ok(line) = line else { continue };
            exercise(&line.measurement)?;
            prop_assert!(!line.measurement.raw().is_empty());
            for (k, v) in line.tags() {
                exercise(&k)?;
                exercise(&v)?;
                let mut key = Vec::new();
                k.unescape_into(&mut key);
                prop_assert!(line.tag(&key).is_some());
            }
            let mut fields = 0;
            for (k, v) in line.fields() {
                fields += 1;
                exercise(&k)?;
                match v {
                    FieldValue::String(s) => exercise(&s)?,
                    FieldValue::Float(f) => prop_assert!(f.is_finite(), "{} read", f),
                    _ => {}
                }
            }
            prop_assert!(fields >= 1, "a valid line has a field");
        }
        let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
        prop_assert!(items <= newlines + 1, "{} items from {} newlines", items, newlines);
    }
}

// ---------------------------------------------------------------------------
// 4. A bad line never hides the good ones.

/// A line our parser rejects, or a blank or comment line. It holds no
/// newline, no `"` (an unclosed quote legitimately runs on into the next
/// line, as in InfluxDB) and does not end in a backslash (which escapes the
/// newline after it).
fn garbage() -> impl Strategy<Value = String> {
    let c = select(" ,=\\1ia-.eEuTf#\t\rmxé\0".chars().collect::<Vec<_>>());
    vec(c, 1..30)
        .prop_map(|chars| chars.into_iter().collect::<String>())
        .prop_filter("a backslash would escape the newline", |s| {
            !s.ends_with('\\')
        })
        .prop_filter("must not be a valid line", |s| {
            Lines::new(s.as_bytes()).all(|r| r.is_err())
        })
}

/// Whether `s` is skipped as a blank or comment line.
fn is_blank_or_comment(s: &str) -> bool {
    let s = s.trim_start_matches([' ', '\t', '\r']);
    s.is_empty() || s.starts_with('#')
}

#[derive(Clone, Debug)]
enum Mixed {
    Valid(Generated),
    Garbage(String),
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn bad_line_never_hides_good_ones(
        items in vec(prop_oneof![
            valid_line().prop_map(Mixed::Valid),
            garbage().prop_map(Mixed::Garbage),
        ], 1..10),
        crlf in vec(any::<bool>(), 10),
    ) {
        let mut text = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                text += if crlf[i] { "\r\n" } else { "\n" };
            }
            text += match item {
                Mixed::Valid(g) => &g.text,
                Mixed::Garbage(s) => s,
            };
        }
        let mut got = Lines::new(text.as_bytes());
        for item in &items {
            match item {
                Mixed::Valid(g) => match got.next() {
                    Some(Ok(line)) => check_line(&line, &g.point)?,
                    other => {
                        prop_assert!(false, "{:?} gave {:?} in {:?}", g.text, other, text)
                    }
                },
                Mixed::Garbage(s) if is_blank_or_comment(s) => {}
                Mixed::Garbage(s) => {
                    let next = got.next();
                    let bad = matches!(next, Some(Err(_)));
                    prop_assert!(bad, "{:?} gave {:?} in {:?}", s, next, text);
                }
            }
        }
        prop_assert!(got.next().is_none(), "extra items from {:?}", text);
    }
}
