//! Property tests proving that the line protocol parser reads generated lines
//! back exactly, never panics on arbitrary bytes, and never lets a bad line
//! hide a good one.
//!
//! Lines are generated as structures (measurement, tags, typed fields,
//! timestamp) whose names and values draw on the characters that need
//! escaping; each is serialised with the escapes its section requires, so
//! the expected parse is known without trusting any parser. What InfluxDB
//! 1.x itself makes of hostile lines is pinned by the unit tests in
//! `lineproto.rs` and checked against a real influxd by `tests/influxd.rs`.
//!
//! A failure is persisted under `proptest-regressions/` and replayed first on
//! every later run (commit the file); its shrunk case also belongs in
//! `lineproto.rs`'s unit tests.

use super::{EscapeSet, Escaped, FieldValue, Line, Lines};
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
    Str(String),
    Boolean(bool),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Integer(a), Value::Integer(b)) => a == b,
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
            FieldValue::String(s) => Value::Str(s.to_string_lossy()),
            FieldValue::Boolean(v) => Value::Boolean(v),
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
}

// ---------------------------------------------------------------------------
// Generating valid lines.

/// Writes `s` with the escapes of `set`. A backslash is written as is where
/// it cannot be read as an escape (in names always, as InfluxDB 1.x keeps a
/// backslash before a byte the section does not escape); in strings, with
/// `raw_backslashes`, before a byte other than `"` and `\`.
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
        // A backslash makes the next byte ordinary in InfluxDB 1.x, so a
        // name cannot end in one, and one before an escaped delimiter would
        // read differently in the field scanner and scanLine (which take
        // `\\` as a pair): hostile spellings are left to the unit tests and
        // the influxd comparison.
        let mut s = String::new();
        for (i, &c) in chars.iter().enumerate() {
            s.push(c);
            let next = chars.get(i + 1).copied();
            if c == '\\' && next.is_none_or(|n| matches!(n, ',' | '=' | ' ' | '"' | '\\')) {
                s.push('x');
            }
        }
        let written = escape(&s, set, raw);
        (s, written)
    })
}

fn measurement() -> impl Strategy<Value = (String, String)> {
    escaped_name(EscapeSet::Name).prop_filter("a leading # makes a comment line", |(s, _)| {
        !s.starts_with('#')
    })
}

fn tag_name() -> impl Strategy<Value = (String, String)> {
    escaped_name(EscapeSet::Tag)
}

/// A field key holds no backslash: scanFields takes `\\` as a pair, the
/// field iterator does not (see the unit tests).
fn field_key() -> impl Strategy<Value = (String, String)> {
    escaped_name(EscapeSet::Name).prop_filter("no backslash", |(s, _)| !s.contains('\\'))
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
            "[0-9]{0,20}",
            proptest::option::of("[0-9]{0,20}"),
            proptest::option::of("[eE][+-]?[0-9]{1,2}"),
        )
            .prop_filter("a digit", |(_, int, frac, _)| {
                !int.is_empty() || frac.as_ref().is_some_and(|f| !f.is_empty())
            })
            .prop_map(|(neg, int, frac, exp)| {
                // scanNumber and ParseFloat take `1.`, `.5` and `1.e5`.
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
        (vec(string_char(), 0..10), any::<bool>()).prop_map(|(chars, raw)| {
            let s: String = chars.into_iter().collect();
            let written = format!("\"{}\"", escape(&s, EscapeSet::Str, raw));
            (Value::Str(s), written)
        }),
        select(&BOOLEANS[..]).prop_map(|(t, v)| (Value::Boolean(v), t.to_string())),
    ]
}

/// Keeps the first of each key: InfluxDB rejects duplicate tags, and of a
/// repeated field the last wins, which the comparison need not model.
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
        vec((tag_name(), tag_name()), 0..6),
        vec((field_key(), field_value()), 1..5),
        proptest::option::of(super::MIN_TIME..=super::MAX_TIME),
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
    // `\r` is content in InfluxDB 1.x: no `\r\n` here.
    let eol = Just("\n");
    let filler = prop_oneof![
        Just(String::new()),
        select(vec![" ", "\t", "  \t ", "\0", " \0\t"]).prop_map(str::to_string),
        "[ \t]{0,2}#[a-z0-9 ,=#]{0,12}",
    ];
    (eol, vec((filler, eol), 0..3)).prop_map(|(first, extra)| {
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
// 2. Edits (also used by the kernel equivalence tests).

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
            // A valid line has a field set, though its only field may be one
            // Kapacitor skips (an empty key after a tab: `m \t=1`).
            prop_assert!(fields >= 1 || !line.field_set().is_empty());
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
    let s = s.trim_start_matches([' ', '\t', '\0']);
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
    ) {
        let mut text = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                text += "\n";
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
