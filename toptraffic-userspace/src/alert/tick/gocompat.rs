//! The Go and influxql behaviours the lambda language inherits, ported to
//! match them to the last bit.
//!
//! Follows Go's `strconv` (`FormatFloat`, `ParseBool`, `ParseInt`,
//! `ParseFloat`), `math` (`Max`, `Min`, `Mod`, `Logb`, `Pow10`), `strings`
//! and `unicode` (`ToLower`, `ToUpper`), the float to integer conversion of
//! the amd64 compiler, and influxql's `ParseDuration` and `FormatDuration` as
//! vendored by Kapacitor 1.5.7 (`vendor/github.com/influxdata/influxdb/influxql/`).

/// Go's float64 to int64 conversion on amd64: out of range and NaN give
/// the minimum integer, where Rust's `as` saturates.
pub(super) fn go_f64_to_i64(x: f64) -> i64 {
    // ±2^63, exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if x.is_nan() || !(-LIMIT..LIMIT).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

/// `strconv.FormatFloat(x, 'f', -1, 64)`.
pub(super) fn go_format_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_string()
    } else if x.is_infinite() {
        let s = if x > 0.0 { "+Inf" } else { "-Inf" };
        s.to_string()
    } else {
        // Rust prints the shortest round-trip digits without exponent too.
        x.to_string()
    }
}

pub(super) fn go_parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

pub(super) fn go_parse_int(s: &str) -> Result<i64, String> {
    use std::num::IntErrorKind;
    s.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing {s:?}: {why}")
    })
}

pub(super) fn go_parse_float(s: &str) -> Result<f64, String> {
    let x = s
        .parse::<f64>()
        .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))?;
    let spelled_inf = s
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf");
    if x.is_infinite() && !spelled_inf {
        return Err(format!(
            "strconv.ParseFloat: parsing {s:?}: value out of range"
        ));
    }
    Ok(x)
}

/// Go's `math.Max`: NaN wins unless an operand is +Inf.
pub(super) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: NaN wins unless an operand is -Inf.
pub(super) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Go's `math.Mod`: the C fmod, which Rust's `%` on floats is.
pub(super) fn go_mod(x: f64, y: f64) -> f64 {
    x % y
}

/// Go's `math.Logb`: the binary exponent.
pub(super) fn go_logb(x: f64) -> f64 {
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    if x.is_nan() {
        return x;
    }
    let (mut x, mut shift) = (x.abs(), 0);
    if x < f64::MIN_POSITIVE {
        // Subnormal: normalise first, as Go does.
        x *= (1u64 << 52) as f64;
        shift = -52;
    }
    (((x.to_bits() >> 52) & 0x7ff) as i64 - 1023 + shift) as f64
}

/// Go's `math.Pow10`, with its tables, so results match to the last bit.
pub(super) fn go_pow10(n: i64) -> f64 {
    const TAB: [f64; 32] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31,
    ];
    const POS: [f64; 10] = [
        1e0, 1e32, 1e64, 1e96, 1e128, 1e160, 1e192, 1e224, 1e256, 1e288,
    ];
    const NEG: [f64; 11] = [
        1e0, 1e-32, 1e-64, 1e-96, 1e-128, 1e-160, 1e-192, 1e-224, 1e-256, 1e-288, 1e-320,
    ];
    if (0..=308).contains(&n) {
        POS[n as usize / 32] * TAB[n as usize % 32]
    } else if (-323..0).contains(&n) {
        let m = n.unsigned_abs() as usize;
        NEG[m / 32] / TAB[m % 32]
    } else if n > 0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// strSubstring: byte offsets, `stop` must be below the length.
pub(super) fn go_substring(s: &str, start: i64, stop: i64) -> Result<String, String> {
    if start < 0 {
        return Err(format!("found negative index for strSubstring: {start}"));
    }
    if stop < 0 {
        return Err(format!("found negative index for strSubstring: {stop}"));
    }
    if stop >= s.len() as i64 {
        return Err(format!(
            "stop index too large for string in strSubstring: {stop}"
        ));
    }
    if start > stop {
        // A panic in Go.
        return Err(format!("slice bounds out of range [{start}:{stop}]"));
    }
    // Offsets inside a character give replacement characters, where Go
    // would return invalid UTF-8.
    Ok(String::from_utf8_lossy(&s.as_bytes()[start as usize..stop as usize]).into_owned())
}

/// A character's simple case mapping, as Go's `unicode.To*`: multi-character
/// mappings (ß → SS) leave the character as it is.
fn simple_case(mut mapped: impl Iterator<Item = char>, c: char) -> char {
    match (mapped.next(), mapped.next()) {
        (Some(m), None) => m,
        _ => c,
    }
}

pub(super) fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            // The one character whose simple lower case differs from its full one.
            '\u{130}' => 'i',
            c => simple_case(c.to_lowercase(), c),
        })
        .collect()
}

pub(super) fn go_to_upper(s: &str) -> String {
    s.chars()
        .map(|c| simple_case(c.to_uppercase(), c))
        .collect()
}

pub(super) const NS_US: i64 = 1_000;
pub(super) const NS_MS: i64 = 1_000_000;
pub(super) const NS_S: i64 = 1_000_000_000;
pub(super) const NS_M: i64 = 60 * NS_S;
pub(super) const NS_H: i64 = 60 * NS_M;
pub(super) const NS_D: i64 = 24 * NS_H;
pub(super) const NS_W: i64 = 7 * NS_D;

/// influxql's `ParseDuration` (as vendored by Kapacitor 1.5.7): digits and
/// a unit, repeated, with an optional leading minus; Go's wrapping
/// arithmetic, and only a negative total counts as overflow.
pub(super) fn parse_influx_duration(s: &str) -> Result<i64, String> {
    const INVALID: &str = "invalid duration";
    if s.len() < 2 {
        return Err(INVALID.to_string());
    }
    let a: Vec<char> = s.chars().collect();
    let negative = a[0] == '-';
    let mut i = usize::from(negative);
    let mut d: i64 = 0;
    let (mut measure, mut unit) = (0i64, String::new());
    while i < a.len() {
        let start = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        if i >= a.len() || i == start {
            return Err(INVALID.to_string());
        }
        let digits: String = a[start..i].iter().collect();
        measure = digits.parse().map_err(|_| INVALID.to_string())?;
        unit = a[i].to_string();
        let scale = match a[i] {
            'u' | 'µ' => NS_US,
            'm' if a.get(i + 1) == Some(&'s') => {
                unit.push('s');
                i += 1;
                NS_MS
            }
            'm' => NS_M,
            's' => NS_S,
            'h' => NS_H,
            'd' => NS_D,
            'w' => NS_W,
            _ => return Err(INVALID.to_string()),
        };
        d = d.wrapping_add(measure.wrapping_mul(scale));
        i += 1;
    }
    if d < 0 && !negative {
        return Err(format!(
            "overflowed duration {measure}{unit}: choose a smaller duration or INF"
        ));
    }
    Ok(if negative { d.wrapping_neg() } else { d })
}

/// influxql's `FormatDuration`: the largest unit that divides exactly,
/// microseconds at least.
pub(super) fn format_influx_duration(d: i64) -> String {
    if d == 0 {
        return "0s".to_string();
    }
    for (unit, suffix) in [
        (NS_W, "w"),
        (NS_D, "d"),
        (NS_H, "h"),
        (NS_M, "m"),
        (NS_S, "s"),
        (NS_MS, "ms"),
    ] {
        if d % unit == 0 {
            return format!("{}{suffix}", d / unit);
        }
    }
    format!("{}u", d / NS_US)
}
