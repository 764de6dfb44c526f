//! html/template's JavaScript escapers (html/template/js.go, Go 1.13):
//! values become JSON expressions, strings and regexp literals get their
//! specials escaped as hex so the result also survives in an HTML
//! attribute.

use super::json::json_encode;
use super::strconv::format_float;
use super::time::duration_string;
use super::transition::is_js_ident_part;
use super::value::Value;

/// jsValEscaper: the value as a JSON expression (json.Marshal, which
/// escapes `<`, `>`, `&`, U+2028 and U+2029), padded with spaces where it
/// would run into a neighbouring identifier or keyword. time.Time is a
/// json.Marshaler; time.Duration a Stringer, so it is its String().
pub(super) fn js_val_escaper(v: &Value) -> String {
    let v = match v {
        Value::Duration(d) => Value::Str(duration_string(*d)),
        v => v.clone(),
    };
    let mut b = String::new();
    if json_encode(&mut b, &v).is_err() {
        // The comment keeps `x/{{.}}` from becoming a line comment.
        return format!(" /* {} */null ", marshal_error(&v).replace("*/", "* /"));
    }
    let first = b.bytes().next().is_some_and(is_js_ident_part);
    let last = b.bytes().last().is_some_and(is_js_ident_part);
    if first || last {
        format!(" {b} ")
    } else {
        b
    }
}

/// json.Marshal's error for the first value it cannot write, in its order.
fn marshal_error(v: &Value) -> String {
    fn find(v: &Value) -> Option<String> {
        match v {
            Value::Float(f) if !f.is_finite() => Some(format!(
                "json: unsupported value: {}",
                format_float(*f, b'g', -1)
            )),
            Value::Time(_) => Some(
                "json: error calling MarshalJSON for type time.Time: Time.MarshalJSON: year outside of range [0,9999]"
                    .to_string(),
            ),
            Value::Map(m) => m.values().find_map(find),
            Value::Struct(_, fields) => fields.iter().find_map(|(_, v)| find(v)),
            _ => None,
        }
    }
    find(v).unwrap_or_else(|| "json: unsupported value".to_string())
}

/// jsStrReplacementTable.
const JS_STR_TABLE: &[(char, &str)] = &[
    ('\0', r"\0"),
    ('\t', r"\t"),
    ('\n', r"\n"),
    ('\x0b', r"\x0b"),
    ('\x0c', r"\f"),
    ('\r', r"\r"),
    ('"', r"\x22"),
    ('&', r"\x26"),
    ('\'', r"\x27"),
    ('+', r"\x2b"),
    ('/', r"\/"),
    ('<', r"\x3c"),
    ('>', r"\x3e"),
    ('\\', r"\\"),
];

/// jsRegexpReplacementTable.
const JS_REGEXP_TABLE: &[(char, &str)] = &[
    ('\0', r"\0"),
    ('\t', r"\t"),
    ('\n', r"\n"),
    ('\x0b', r"\x0b"),
    ('\x0c', r"\f"),
    ('\r', r"\r"),
    ('"', r"\x22"),
    ('$', r"\$"),
    ('&', r"\x26"),
    ('\'', r"\x27"),
    ('(', r"\("),
    (')', r"\)"),
    ('*', r"\*"),
    ('+', r"\x2b"),
    ('-', r"\-"),
    ('.', r"\."),
    ('/', r"\/"),
    ('<', r"\x3c"),
    ('>', r"\x3e"),
    ('?', r"\?"),
    ('[', r"\["),
    ('\\', r"\\"),
    (']', r"\]"),
    ('^', r"\^"),
    ('{', r"\{"),
    ('|', r"\|"),
    ('}', r"\}"),
];

/// js.go, replace: each rune through the table, and U+2028 and U+2029 as
/// `\u2028` and `\u2029`.
fn replace(s: &str, table: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match table.iter().find(|(t, _)| *t == c) {
            Some((_, r)) => out.push_str(r),
            None if c == '\u{2028}' => out.push_str(r"\u2028"),
            None if c == '\u{2029}' => out.push_str(r"\u2029"),
            None => out.push(c),
        }
    }
    out
}

/// jsStrEscaper: for inside a JS string literal.
pub(super) fn js_str_escaper(s: &str) -> String {
    replace(s, JS_STR_TABLE)
}

/// jsRegexpEscaper: for inside a JS regexp literal, matching literally;
/// empty becomes `(?:)` so `/{{.}}/` is no line comment.
pub(super) fn js_regexp_escaper(s: &str) -> String {
    let s = replace(s, JS_REGEXP_TABLE);
    if s.is_empty() {
        "(?:)".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn values_become_padded_json() {
        assert_eq!(js_val_escaper(&Value::Float(18630.0)), " 18630 ");
        assert_eq!(js_val_escaper(&Value::Float(-2.5)), " -2.5 ");
        assert_eq!(js_val_escaper(&Value::Bool(true)), " true ");
        assert_eq!(js_val_escaper(&Value::Nil), " null ");
        assert_eq!(
            js_val_escaper(&Value::Str("</script>\u{2028}'\"".into())),
            r#""\u003c/script\u003e\u2028'\"""#
        );
        let t = UNIX_EPOCH + Duration::new(1_795_564_660, 500_000_000);
        assert_eq!(
            js_val_escaper(&Value::Time(t)),
            r#""2026-11-24T23:57:40.5Z""#
        );
        assert_eq!(
            js_val_escaper(&Value::Duration(Duration::from_secs(90))),
            r#""1m30s""#
        );
        let m = BTreeMap::from([("a".to_string(), Value::Float(1.0))]);
        assert_eq!(js_val_escaper(&Value::Map(m)), r#"{"a":1}"#);
        assert_eq!(
            js_val_escaper(&Value::Float(f64::NAN)),
            " /* json: unsupported value: NaN */null "
        );
    }

    #[test]
    fn strings_and_regexps_escape_as_go() {
        assert_eq!(
            js_str_escaper("a'b\"c</d>\\e&f+g\n\u{2029}"),
            r"a\x27b\x22c\x3c\/d\x3e\\e\x26f\x2bg\n\u2029"
        );
        assert_eq!(js_regexp_escaper("a.b*(c)"), r"a\.b\*\(c\)");
        assert_eq!(js_regexp_escaper(""), "(?:)");
    }
}
