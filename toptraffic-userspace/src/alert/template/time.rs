//! Go's time formatting, in UTC: Time.String, Time.Format (time/format.go)
//! and Duration.String (time/time.go).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

pub(super) use crate::goformat::Civil;

pub(super) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
pub(super) const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Time.String: "2006-01-02 15:04:05.999999999 -0700 MST", in UTC.
pub(super) fn time_string(t: SystemTime) -> String {
    time_format(&Civil::of(t), "2006-01-02 15:04:05.999999999 -0700 MST")
}

/// Time.Format for a UTC time (time/format.go, nextStdChunk and AppendFormat).
pub(super) fn time_format(c: &Civil, layout: &str) -> String {
    let mut out = String::new();
    let mut rest = layout;
    while !rest.is_empty() {
        let Some((prefix, std, suffix)) = next_std_chunk(rest) else {
            out.push_str(rest);
            break;
        };
        out.push_str(prefix);
        rest = suffix;
        let hour12 = match c.hour % 12 {
            0 => 12,
            h => h,
        };
        let _ = match std {
            Std::LongMonth => write!(out, "{}", MONTHS[c.month as usize - 1]),
            Std::Month => write!(out, "{}", &MONTHS[c.month as usize - 1][..3]),
            Std::NumMonth => write!(out, "{}", c.month),
            Std::ZeroMonth => write!(out, "{:02}", c.month),
            Std::LongWeekDay => write!(out, "{}", DAYS[c.weekday as usize]),
            Std::WeekDay => write!(out, "{}", &DAYS[c.weekday as usize][..3]),
            Std::Day => write!(out, "{}", c.day),
            Std::UnderDay => write!(out, "{:>2}", c.day),
            Std::ZeroDay => write!(out, "{:02}", c.day),
            Std::Hour => write!(out, "{:02}", c.hour),
            Std::Hour12 => write!(out, "{hour12}"),
            Std::ZeroHour12 => write!(out, "{hour12:02}"),
            Std::Minute => write!(out, "{}", c.min),
            Std::ZeroMinute => write!(out, "{:02}", c.min),
            Std::Second => write!(out, "{}", c.sec),
            Std::ZeroSecond => write!(out, "{:02}", c.sec),
            Std::LongYear => {
                if c.year < 0 {
                    write!(out, "-{:04}", -c.year)
                } else {
                    write!(out, "{:04}", c.year)
                }
            }
            Std::Year => write!(out, "{:02}", c.year.rem_euclid(100)),
            Std::PM => write!(out, "{}", if c.hour >= 12 { "PM" } else { "AM" }),
            Std::Pm => write!(out, "{}", if c.hour >= 12 { "pm" } else { "am" }),
            Std::Tz => write!(out, "UTC"),
            Std::Iso8601 => write!(out, "Z"),
            Std::NumTz(s) => write!(out, "{s}"),
            Std::Frac0(n) => write!(out, ".{}", &format!("{:09}", c.nano)[..n.min(9)]),
            Std::Frac9(n) => {
                let digits = format!("{:09}", c.nano);
                let d = digits[..n.min(9)].trim_end_matches('0');
                if d.is_empty() {
                    Ok(())
                } else {
                    write!(out, ".{d}")
                }
            }
        };
    }
    out
}

enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    Tz,
    /// Z07:00 and friends: "Z" at UTC.
    Iso8601,
    /// -0700 and friends at UTC.
    NumTz(&'static str),
    Frac0(usize),
    Frac9(usize),
}

/// time/format.go, nextStdChunk (Go 1.13's layout elements).
fn next_std_chunk(layout: &str) -> Option<(&str, Std, &str)> {
    let b = layout.as_bytes();
    let lower_follows = |j: usize| b.get(j).is_some_and(u8::is_ascii_lowercase);
    for i in 0..b.len() {
        let r = &layout[i..];
        let cut = |n: usize, s: Std| Some((&layout[..i], s, &layout[i + n..]));
        match b[i] {
            b'J' if r.starts_with("Jan") => {
                if r.starts_with("January") {
                    return cut(7, Std::LongMonth);
                }
                if !lower_follows(i + 3) {
                    return cut(3, Std::Month);
                }
            }
            b'M' => {
                if r.starts_with("Mon") {
                    if r.starts_with("Monday") {
                        return cut(6, Std::LongWeekDay);
                    }
                    if !lower_follows(i + 3) {
                        return cut(3, Std::WeekDay);
                    }
                }
                if r.starts_with("MST") {
                    return cut(3, Std::Tz);
                }
            }
            b'0' if b.get(i + 1).is_some_and(|c| (b'1'..=b'6').contains(c)) => {
                let s = match b[i + 1] {
                    b'1' => Std::ZeroMonth,
                    b'2' => Std::ZeroDay,
                    b'3' => Std::ZeroHour12,
                    b'4' => Std::ZeroMinute,
                    b'5' => Std::ZeroSecond,
                    _ => Std::Year,
                };
                return cut(2, s);
            }
            b'1' => {
                if r.starts_with("15") {
                    return cut(2, Std::Hour);
                }
                return cut(1, Std::NumMonth);
            }
            b'2' => {
                if r.starts_with("2006") {
                    return cut(4, Std::LongYear);
                }
                return cut(1, Std::Day);
            }
            b'_' if r.starts_with("_2") => {
                if r.starts_with("_2006") {
                    return Some((&layout[..i + 1], Std::LongYear, &layout[i + 5..]));
                }
                return cut(2, Std::UnderDay);
            }
            b'3' => return cut(1, Std::Hour12),
            b'4' => return cut(1, Std::Minute),
            b'5' => return cut(1, Std::Second),
            b'P' if r.starts_with("PM") => return cut(2, Std::PM),
            b'p' if r.starts_with("pm") => return cut(2, Std::Pm),
            b'-' => {
                for (pat, out) in [
                    ("-070000", "+000000"),
                    ("-07:00:00", "+00:00:00"),
                    ("-0700", "+0000"),
                    ("-07:00", "+00:00"),
                    ("-07", "+00"),
                ] {
                    if r.starts_with(pat) {
                        return cut(pat.len(), Std::NumTz(out));
                    }
                }
            }
            b'Z' => {
                for pat in ["Z070000", "Z07:00:00", "Z0700", "Z07:00", "Z07"] {
                    if r.starts_with(pat) {
                        return cut(pat.len(), Std::Iso8601);
                    }
                }
            }
            b'.' if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == ch {
                    j += 1;
                }
                // Only a fractional second if the digits end here.
                if !b.get(j).is_some_and(u8::is_ascii_digit) {
                    let n = j - (i + 1);
                    let s = if ch == b'0' {
                        Std::Frac0(n)
                    } else {
                        Std::Frac9(n)
                    };
                    return Some((&layout[..i], s, &layout[j..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Duration.String (time/time.go): `1h2m3.5s`, `1.5ms`, `0s`.
pub(super) fn duration_string(d: Duration) -> String {
    let u = d.as_nanos().min(i64::MAX as u128) as u64;
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        // Below a second: smaller units, like 1.2ms.
        let (prec, unit) = match u {
            _ if u < 1_000 => (0, "ns"),
            _ if u < 1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (frac, int) = fmt_frac(u, prec);
        return format!("{int}{frac}{unit}");
    }
    let (frac, secs) = fmt_frac(u, 9);
    let mut s = format!("{}{frac}s", secs % 60);
    let mins = secs / 60;
    if mins > 0 {
        s = format!("{}m{s}", mins % 60);
        let hours = mins / 60;
        if hours > 0 {
            s = format!("{hours}h{s}");
        }
    }
    s
}

/// time.go, fmtFrac: the fraction of v/10^prec without trailing zeros (and
/// no point when it is zero), and the integer part.
fn fmt_frac(v: u64, prec: u32) -> (String, u64) {
    let p = 10u64.pow(prec);
    let (int, frac) = (v / p, v % p);
    if frac == 0 {
        return (String::new(), int);
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (format!(".{}", digits.trim_end_matches('0')), int)
}
