//! Go's strconv as fmt and templates use it: FormatFloat (strconv/ftoa.go,
//! decimal.go), Quote, QuoteRune and CanBackquote (strconv/quote.go).

use std::fmt::Write as _;

/// Decimal digits of |v| (no leading or trailing zeros) and the position of
/// the decimal point: v = 0.d1d2... × 10^dp.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

impl Digits {
    /// The shortest digits that read back as v. Of two equally short
    /// candidates Go takes the nearer, and on an exact tie the even one
    /// (strconv/ftoa.go roundShortest, decimal.go shouldRoundUp); Rust's
    /// formatter may take the other, so round the exact value to the same
    /// length and keep that when it reads back as v.
    fn shortest(v: f64) -> Digits {
        let rust = Digits::from_exp_format(&format!("{:e}", v.abs()));
        let mut nearest = Digits::exact(v);
        nearest.round(rust.d.len() as i32);
        let digits = String::from_utf8_lossy(&nearest.d).into_owned();
        match format!("0.{digits}e{}", nearest.dp).parse::<f64>() {
            Ok(back) if back == v.abs() => nearest,
            _ => rust,
        }
    }

    /// The exact decimal expansion of v (a double has at most 767 significant digits).
    fn exact(v: f64) -> Digits {
        Digits::from_exp_format(&format!("{:.800e}", v.abs()))
    }

    fn from_exp_format(s: &str) -> Digits {
        let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
        while d.last() == Some(&b'0') {
            d.pop();
        }
        if d.is_empty() {
            return Digits { d, dp: 0 };
        }
        Digits { d, dp: exp + 1 }
    }

    /// strconv's decimal.Round: to nd digits, halves to even.
    fn round(&mut self, nd: i32) {
        if nd < 0 || nd as usize >= self.d.len() {
            return;
        }
        let nd = nd as usize;
        let up = if self.d[nd] == b'5' && nd + 1 == self.d.len() {
            nd > 0 && (self.d[nd - 1] - b'0') % 2 == 1
        } else {
            self.d[nd] >= b'5'
        };
        if up {
            let mut i = nd;
            loop {
                if i == 0 {
                    // All nines: 1 followed by zeros, one place up.
                    self.d = vec![b'1'];
                    self.dp += 1;
                    return;
                }
                i -= 1;
                if self.d[i] < b'9' {
                    self.d[i] += 1;
                    self.d.truncate(i + 1);
                    return;
                }
            }
        }
        self.d.truncate(nd);
        while self.d.last() == Some(&b'0') {
            self.d.pop();
        }
        if self.d.is_empty() {
            self.dp = 0;
        }
    }
}

/// strconv.FormatFloat(v, fmt, prec, 64) for fmt in b, e, E, f, g, G, x, X.
pub(super) fn format_float(v: f64, fmt: u8, prec: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = v.is_sign_negative();
    if matches!(fmt, b'b' | b'x' | b'X') {
        // genericFtoa: the mantissa with its implicit bit, the unbiased
        // exponent (a denormal's is the smallest normal one).
        let bits = v.to_bits();
        let field = ((bits >> 52) & 0x7ff) as i32;
        let mut mant = bits & ((1 << 52) - 1);
        let mut exp = field;
        if field == 0 {
            exp += 1;
        } else {
            mant |= 1 << 52;
        }
        exp -= 1023;
        return if fmt == b'b' {
            fmt_b(neg, mant, exp)
        } else {
            fmt_x(prec, fmt, neg, mant, exp)
        };
    }
    let shortest = prec < 0;
    let mut prec = prec;
    let digs = if shortest {
        let d = Digits::shortest(v);
        let nd = d.d.len() as i32;
        prec = match fmt {
            b'e' | b'E' => (nd - 1).max(0),
            b'f' => (nd - d.dp).max(0),
            _ => nd,
        };
        d
    } else {
        let mut d = Digits::exact(v);
        match fmt {
            b'e' | b'E' => d.round(prec + 1),
            b'f' => d.round(d.dp + prec),
            _ => {
                if prec == 0 {
                    prec = 1;
                }
                d.round(prec)
            }
        }
        d
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let nd = digs.d.len() as i32;
    match fmt {
        b'e' | b'E' => fmt_e(&mut out, &digs, prec, fmt),
        b'f' => fmt_f(&mut out, &digs, prec),
        _ => {
            // %e is used if the exponent from the conversion is less than -4
            // or greater than or equal to the precision; if precision was the
            // shortest possible, use precision 6 for this decision
            // (strconv/ftoa.go, formatDigits). So %v prints 123456 but 1.234567e+06.
            let mut eprec = prec;
            if eprec > nd && nd >= digs.dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = digs.dp - 1;
            let e = if fmt == b'G' { b'E' } else { b'e' };
            if exp < -4 || exp >= eprec {
                if prec > nd {
                    prec = nd;
                }
                fmt_e(&mut out, &digs, prec - 1, e);
            } else {
                if prec > digs.dp {
                    prec = nd;
                }
                fmt_f(&mut out, &digs, (prec - digs.dp).max(0));
            }
        }
    }
    out
}

/// ftoa.go fmtB: `-ddddp±ddd`, a decimal mantissa and a binary exponent.
fn fmt_b(neg: bool, mant: u64, exp: i32) -> String {
    let exp = exp - 52;
    let sign = if neg { "-" } else { "" };
    let esign = if exp >= 0 { "+" } else { "" };
    format!("{sign}{mant}p{esign}{exp}")
}

/// ftoa.go fmtX: `-0x1.yyyyp±dd`, a hex mantissa (rounded to `prec` hex
/// digits, halves to even, when 0 <= prec < 15) and a binary exponent of
/// at least two digits.
fn fmt_x(prec: i32, fmt: u8, neg: bool, mut mant: u64, mut exp: i32) -> String {
    if mant == 0 {
        exp = 0;
    }
    // The leading 1 (if any) at bit 60.
    mant <<= 60 - 52;
    while mant != 0 && mant & (1 << 60) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    if (0..15).contains(&prec) {
        let shift = (prec * 4) as u32;
        let extra = (mant << shift) & ((1 << 60) - 1);
        mant >>= 60 - shift;
        if extra | (mant & 1) > 1 << 59 {
            mant += 1;
        }
        mant <<= 60 - shift;
        if mant & (1 << 61) != 0 {
            // Rounded up past 2: one more in the exponent.
            mant >>= 1;
            exp += 1;
        }
    }
    let hex: &[u8; 16] = if fmt == b'X' {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push('0');
    out.push(fmt as char);
    out.push((b'0' + ((mant >> 60) & 1) as u8) as char);
    mant <<= 4;
    if prec < 0 && mant != 0 {
        out.push('.');
        while mant != 0 {
            out.push(hex[((mant >> 60) & 15) as usize] as char);
            mant <<= 4;
        }
    } else if prec > 0 {
        out.push('.');
        for _ in 0..prec {
            out.push(hex[((mant >> 60) & 15) as usize] as char);
            mant <<= 4;
        }
    }
    out.push(if fmt == b'X' { 'P' } else { 'p' });
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
    out
}

fn fmt_e(out: &mut String, d: &Digits, prec: i32, e: u8) {
    out.push(d.d.first().map_or('0', |&c| c as char));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec as usize {
            out.push(d.d.get(i).map_or('0', |&c| c as char));
        }
    }
    out.push(e as char);
    let exp = if d.d.is_empty() { 0 } else { d.dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

fn fmt_f(out: &mut String, d: &Digits, prec: i32) {
    if d.dp > 0 {
        let m = (d.dp as usize).min(d.d.len());
        out.extend(d.d[..m].iter().map(|&c| c as char));
        for _ in m..d.dp as usize {
            out.push('0');
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            let j = d.dp + i - 1;
            out.push(if 0 <= j && (j as usize) < d.d.len() {
                d.d[j as usize] as char
            } else {
                '0'
            });
        }
    }
}

/// unicode.IsPrint, exact for ASCII; for other characters an approximation
/// (letters, marks, numbers, punctuation and symbols are printable; controls,
/// format characters, spaces other than U+0020 and private use are not).
pub(super) fn go_is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{a0}' | '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{180e}'
            | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}' | '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..='\u{10ffff}'))
}

/// strconv.Quote (or QuoteToASCII).
pub(super) fn go_quote(s: &str, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_rune(&mut out, c, '"', ascii);
    }
    out.push('"');
    out
}

/// strconv.QuoteRune (or QuoteRuneToASCII).
pub(super) fn go_quote_rune(c: char, ascii: bool) -> String {
    let mut out = String::from("'");
    escape_rune(&mut out, c, '\'', ascii);
    out.push('\'');
    out
}

/// strconv.appendEscapedRune.
fn escape_rune(out: &mut String, c: char, quote: char, ascii: bool) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if if ascii {
        c.is_ascii() && go_is_print(c)
    } else {
        go_is_print(c)
    } {
        out.push(c);
        return;
    }
    let _ = match c {
        '\x07' => write!(out, "\\a"),
        '\x08' => write!(out, "\\b"),
        '\x0c' => write!(out, "\\f"),
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        '\x0b' => write!(out, "\\v"),
        c if (c as u32) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", c as u32),
        c if (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32),
        c => write!(out, "\\U{:08x}", c as u32),
    };
}

/// strconv.CanBackquote.
pub(super) fn can_backquote(s: &str) -> bool {
    s.chars().all(|c| {
        c != '`'
            && c != '\u{FEFF}'
            && (c == '\t' || !c.is_control() || !c.is_ascii())
            && c != '\x7f'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_hex_floats_as_strconv_writes_them() {
        // strconv.FormatFloat(v, c, p, 64) by ftoa.go fmtB and fmtX (the
        // hex digits agree with Python's float.hex).
        for (v, c, p, want) in [
            (1.0, b'b', -1, "4503599627370496p-52"),
            (-0.5, b'b', -1, "-4503599627370496p-53"),
            (0.0, b'b', -1, "0p-1074"),
            (1.0, b'x', -1, "0x1p+00"),
            (3.5, b'x', -1, "0x1.cp+01"),
            (-3.5, b'X', -1, "-0X1.CP+01"),
            (0.0, b'x', -1, "0x0p+00"),
            (1e300, b'x', -1, "0x1.7e43c8800759cp+996"),
            (5e-324, b'x', -1, "0x1p-1074"),
            (18000.0, b'x', 2, "0x1.19p+14"),
            // Halves to even, and a round-up past 2.
            (1.03125, b'x', 1, "0x1.0p+00"),
            (1.09375, b'x', 1, "0x1.2p+00"),
            (1.99999, b'x', 0, "0x1p+01"),
        ] {
            assert_eq!(format_float(v, c, p), want, "{v} {} {p}", c as char);
        }
    }

    #[test]
    fn float_formatting_rounds_halves_to_even_on_the_exact_value() {
        assert_eq!(format_float(0.125, b'f', 2), "0.12");
        assert_eq!(format_float(0.375, b'f', 2), "0.38");
        assert_eq!(format_float(2.675, b'f', 2), "2.67"); // 2.67499999...
        assert_eq!(format_float(9.5, b'f', 0), "10");
        assert_eq!(format_float(0.5, b'f', 0), "0");
        assert_eq!(format_float(99.96, b'e', 2), "1.00e+02");
        assert_eq!(format_float(1e100, b'g', -1), "1e+100");
        assert_eq!(format_float(f64::NAN, b'g', -1), "NaN");
        assert_eq!(format_float(f64::NEG_INFINITY, b'f', 2), "-Inf");
    }
}
