//! Numbers, times and JSON written as Go writes them, for the API and for alerts.
//!
//! Kapacitor's users script against its output, so the alert JSON, the
//! templates and the API print numbers, RFC 3339 times and JSON strings the
//! way Go's strconv, time and encoding/json (Go 1.13, as in Kapacitor 1.5.7)
//! do. This module sits below both the API and alerting and imports nothing
//! of the crate.

use std::io;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, Serializer};

/// A number as JSON, as encoding/json writes a float64 that holds an
/// integer: without a fraction (`1234`, not `1234.0`). The API's
/// [`Number`](toptraffic_api::Number) is the one implementation.
pub(crate) fn json_number(v: f64) -> serde_json::Value {
    serde_json::to_value(toptraffic_api::Number(v)).expect("a number serializes")
}

/// RFC 3339 to the second, as the API prints window ends.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// RFC 3339 with nanoseconds trimmed as Go's time.RFC3339Nano prints them
/// (`2026-11-24T23:57:40Z`, `2026-11-24T23:57:40.5Z`).
pub(crate) fn rfc3339_nano(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_nanos(t).to_string();
    // humantime prints 9 fraction digits; Go trims trailing zeros and the dot.
    match s.split_once('.') {
        Some((head, frac)) => {
            let frac = frac.trim_end_matches('Z').trim_end_matches('0');
            if frac.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{frac}Z")
            }
        }
        None => s,
    }
}

/// Appends `c` as encoding/json's `encodeState.string` writes it with
/// escapeHTML: the short escapes are only `\\`, `\"`, `\n`, `\r` and `\t`;
/// other control characters, `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
fn push_json_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '<' | '>' | '&' | '\u{0}'..='\u{1f}' | '\u{2028}' | '\u{2029}' => {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
        c => out.push(c),
    }
}

/// Appends `s` as a quoted JSON string, escaped as Go's encoding/json does.
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        push_json_char(out, c);
    }
    out.push('"');
}

/// serde_json's compact output with strings escaped by [`push_json_char`],
/// so serde-serialized payloads read byte for byte as Go's.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut out = String::with_capacity(fragment.len());
        for c in fragment.chars() {
            push_json_char(&mut out, c);
        }
        writer.write_all(out.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let c = match escape {
            CharEscape::Quote => '"',
            CharEscape::ReverseSolidus => '\\',
            CharEscape::Solidus => '/',
            CharEscape::Backspace => '\u{8}',
            CharEscape::FormFeed => '\u{c}',
            CharEscape::LineFeed => '\n',
            CharEscape::CarriageReturn => '\r',
            CharEscape::Tab => '\t',
            CharEscape::AsciiControl(b) => char::from(b),
        };
        let mut out = String::with_capacity(6);
        push_json_char(&mut out, c);
        writer.write_all(out.as_bytes())
    }
}

/// `v` as compact JSON, escaped as Go's encoding/json writes it.
pub(crate) fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    let mut buf = Vec::with_capacity(256);
    v.serialize(&mut Serializer::with_formatter(&mut buf, GoFormatter))
        .expect("serializing to memory cannot fail");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn integral_numbers_have_no_fraction() {
        assert_eq!(json_number(1234.0).to_string(), "1234");
        assert_eq!(json_number(-3.0).to_string(), "-3");
        assert_eq!(json_number(1.5).to_string(), "1.5");
        assert_eq!(json_number(1e300).to_string(), "1e+300");
    }

    #[test]
    fn rfc3339_nano_trims_zeros_as_go_does() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_028_660);
        assert_eq!(rfc3339_nano(t), "2025-11-24T23:57:40Z");
        assert_eq!(
            rfc3339_nano(t + Duration::from_millis(500)),
            "2025-11-24T23:57:40.5Z"
        );
        assert_eq!(
            rfc3339(t + Duration::from_millis(500)),
            "2025-11-24T23:57:40Z"
        );
    }

    #[test]
    fn strings_escape_as_encoding_json_with_escape_html() {
        let mut out = String::new();
        json_string(&mut out, "a<b>&\"\\\n\r\t\u{8}\u{c}\u{1}\u{2028}é/");
        assert_eq!(
            out,
            r#""a\u003cb\u003e\u0026\"\\\n\r\t\u0008\u000c\u0001\u2028é/""#
        );
    }

    #[test]
    fn serde_output_escapes_exactly_as_json_string() {
        let s = "x<&>\u{8}\u{c}\u{1f}\u{2029}\"\\/\n";
        let mut direct = String::new();
        json_string(&mut direct, s);
        assert_eq!(to_json(s), direct);
        assert_eq!(
            to_json(&serde_json::json!({"k": s, "n": 1})),
            format!("{{\"k\":{direct},\"n\":1}}")
        );
    }
}
