//! Numbers, times and JSON written as Go writes them, for the API and for alerts.
//!
//! Kapacitor's users script against its output, so the alert JSON, the
//! templates and the API print numbers, RFC 3339 times and JSON strings the
//! way Go's strconv, time and encoding/json (Go 1.13, as in Kapacitor 1.5.7)
//! do. This module sits below both the API and alerting and imports nothing
//! of the crate.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

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
    let c = Civil::of(t);
    let mut s = String::with_capacity(20);
    push_date_time(&mut s, &c);
    s.push('Z');
    s
}

/// RFC 3339 with nanoseconds trimmed as Go's time.RFC3339Nano prints them
/// (`2026-11-24T23:57:40Z`, `2026-11-24T23:57:40.5Z`); any time, before
/// 1970 too.
pub(crate) fn rfc3339_nano(t: SystemTime) -> String {
    let c = Civil::of(t);
    let mut s = String::with_capacity(30);
    push_date_time(&mut s, &c);
    if c.nano != 0 {
        let frac = format!("{:09}", c.nano);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// `2006-01-02T15:04:05` as Go's appendInt writes the year: at least four
/// digits, a sign when negative.
fn push_date_time(s: &mut String, c: &Civil) {
    use std::fmt::Write as _;
    let year = if c.year < 0 {
        format!("-{:04}", -c.year)
    } else {
        format!("{:04}", c.year)
    };
    let _ = write!(
        s,
        "{year}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.month, c.day, c.hour, c.min, c.sec
    );
}

/// A UTC time broken down.
pub(crate) struct Civil {
    pub(crate) unix: i64,
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) min: u32,
    pub(crate) sec: u32,
    pub(crate) nano: u32,
    pub(crate) weekday: u32,
    pub(crate) yday: u32,
}

impl Civil {
    pub(crate) fn of(t: SystemTime) -> Civil {
        let (unix, nano) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
                if n == 0 {
                    (-s, 0)
                } else {
                    (-s - 1, 1_000_000_000 - n)
                }
            }
        };
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400) as u32;
        // Days to civil date (H. Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday = CUM[month as usize - 1] + day + u32::from(leap && month > 2);
        Civil {
            unix,
            year,
            month,
            day,
            hour: secs / 3600,
            min: secs / 60 % 60,
            sec: secs % 60,
            nano,
            weekday: (days + 4).rem_euclid(7) as u32,
            yday,
        }
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
    fn times_before_1970_format_as_go_formats_them() {
        // A wall clock set before 1970 must not stop the daemon.
        let t = UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(rfc3339_nano(t), "1969-12-31T23:59:58.5Z");
        assert_eq!(rfc3339(t), "1969-12-31T23:59:58Z");
        // 0001-01-01T00:00:00Z, Go's zero Time, and a year before it.
        let year1 = UNIX_EPOCH - Duration::from_secs(62_135_596_800);
        assert_eq!(rfc3339_nano(year1), "0001-01-01T00:00:00Z");
        // Year 0 (a leap year), then 1 BC, as Go writes them.
        let year0 = year1 - Duration::from_secs(366 * 86_400);
        assert_eq!(rfc3339(year0), "0000-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(year0 - Duration::from_secs(365 * 86_400)),
            "-0001-01-01T00:00:00Z"
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
