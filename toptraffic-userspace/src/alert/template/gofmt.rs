//! Go's fmt as templates print: Sprint and Sprintf with their verbs, flags
//! and error forms (fmt/print.go, fmt/format.go).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::strconv::{can_backquote, format_float, go_is_print, go_quote, go_quote_rune};
use super::time::{duration_string, time_string};
use super::value::Value;

/// fmt.Sprint: spaces between operands when neither is a string.
pub(super) fn sprint(a: &[Value]) -> String {
    let mut s = String::new();
    sprint_into(&mut s, a);
    s
}

pub(super) fn sprint_into(out: &mut String, a: &[Value]) {
    let mut prev_string = false;
    for (i, v) in a.iter().enumerate() {
        let is_string = matches!(v, Value::Str(_));
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        Printer::new(out).print_arg(v, 'v');
        prev_string = is_string;
    }
}

#[derive(Default, Clone, Copy)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    plus_v: bool,
    sharp_v: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

pub(super) struct Printer<'a> {
    buf: &'a mut String,
    f: Flags,
    /// fmt's `erroring`: inside a bad-verb report, Stringers are not called.
    erroring: bool,
}

const LDIGITS: &[u8] = b"0123456789abcdefx";
const UDIGITS: &[u8] = b"0123456789ABCDEFX";

/// fmt.Sprintf.
pub(super) fn sprintf(format: &str, a: &[Value]) -> String {
    let mut out = String::new();
    let mut p = Printer::new(&mut out);
    p.do_printf(format, a);
    out
}

/// fmt's parsenum: digits at `s[start..end]`, none over 1e6.
fn parsenum(s: &[u8], start: usize, end: usize) -> (Option<usize>, usize) {
    if start >= end {
        return (None, end);
    }
    let mut num = 0usize;
    let mut i = start;
    while i < end && s[i].is_ascii_digit() {
        if num > 1_000_000 {
            return (None, end);
        }
        num = num * 10 + (s[i] - b'0') as usize;
        i += 1;
    }
    if i == start {
        (None, i)
    } else {
        (Some(num), i)
    }
}

impl<'a> Printer<'a> {
    pub(super) fn new(buf: &'a mut String) -> Self {
        Printer {
            buf,
            f: Flags::default(),
            erroring: false,
        }
    }

    /// print.go, doPrintf.
    fn do_printf(&mut self, format: &str, a: &[Value]) {
        let s = format.as_bytes();
        let end = s.len();
        let mut arg_num = 0usize;
        let mut after_index;
        let mut reordered = false;
        let mut i = 0;
        'outer: while i < end {
            let mut good_arg_num = true;
            let lasti = i;
            while i < end && s[i] != b'%' {
                i += 1;
            }
            if i > lasti {
                self.buf.push_str(&format[lasti..i]);
            }
            if i >= end {
                break;
            }
            i += 1;
            self.f = Flags::default();
            while i < end {
                let c = s[i];
                match c {
                    b'#' => self.f.sharp = true,
                    b'0' => self.f.zero = !self.f.minus,
                    b'+' => self.f.plus = true,
                    b'-' => {
                        self.f.minus = true;
                        self.f.zero = false;
                    }
                    b' ' => self.f.space = true,
                    _ => {
                        // Fast path: a lowercase verb right after the flags.
                        if c.is_ascii_lowercase() && arg_num < a.len() {
                            if c == b'v' {
                                self.f.sharp_v = self.f.sharp;
                                self.f.sharp = false;
                                self.f.plus_v = self.f.plus;
                                self.f.plus = false;
                            }
                            self.print_arg(&a[arg_num], c as char);
                            arg_num += 1;
                            i += 1;
                            continue 'outer;
                        }
                        break;
                    }
                }
                i += 1;
            }
            // An explicit argument index?
            (arg_num, i, after_index) =
                self.arg_number(arg_num, s, i, a.len(), &mut good_arg_num, &mut reordered);
            if i < end && s[i] == b'*' {
                i += 1;
                let (w, ok, n) = int_from_arg(a, arg_num);
                arg_num = n;
                if !ok {
                    self.buf.push_str("%!(BADWIDTH)");
                    self.f.wid = None;
                } else if w < 0 {
                    self.f.wid = Some(w.unsigned_abs() as usize);
                    self.f.minus = true;
                    self.f.zero = false;
                } else {
                    self.f.wid = Some(w as usize);
                }
                after_index = false;
            } else {
                let (w, ni) = parsenum(s, i, end);
                self.f.wid = w;
                i = ni;
                if after_index && w.is_some() {
                    good_arg_num = false;
                }
            }
            if i + 1 < end && s[i] == b'.' {
                i += 1;
                if after_index {
                    good_arg_num = false;
                }
                (arg_num, i, after_index) =
                    self.arg_number(arg_num, s, i, a.len(), &mut good_arg_num, &mut reordered);
                if i < end && s[i] == b'*' {
                    i += 1;
                    let (p, ok, n) = int_from_arg(a, arg_num);
                    arg_num = n;
                    self.f.prec = if ok && p >= 0 { Some(p as usize) } else { None };
                    if !ok {
                        self.buf.push_str("%!(BADPREC)");
                    }
                    after_index = false;
                } else {
                    let (p, ni) = parsenum(s, i, end);
                    i = ni;
                    self.f.prec = Some(p.unwrap_or(0));
                }
            }
            if !after_index {
                (arg_num, i, _) =
                    self.arg_number(arg_num, s, i, a.len(), &mut good_arg_num, &mut reordered);
            }
            if i >= end {
                self.buf.push_str("%!(NOVERB)");
                break;
            }
            let verb = format[i..].chars().next().unwrap_or('?');
            i += verb.len_utf8();
            match verb {
                '%' => self.buf.push('%'),
                _ if !good_arg_num => {
                    let _ = write!(self.buf, "%!{verb}(BADINDEX)");
                }
                _ if arg_num >= a.len() => {
                    let _ = write!(self.buf, "%!{verb}(MISSING)");
                }
                _ => {
                    if verb == 'v' {
                        self.f.sharp_v = self.f.sharp;
                        self.f.sharp = false;
                        self.f.plus_v = self.f.plus;
                        self.f.plus = false;
                    }
                    self.print_arg(&a[arg_num], verb);
                    arg_num += 1;
                }
            }
        }
        if !reordered && arg_num < a.len() {
            self.f = Flags::default();
            self.buf.push_str("%!(EXTRA ");
            for (k, v) in a[arg_num..].iter().enumerate() {
                if k > 0 {
                    self.buf.push_str(", ");
                }
                if *v == Value::Nil {
                    self.buf.push_str("<nil>");
                } else {
                    self.buf.push_str(v.type_name());
                    self.buf.push('=');
                    self.print_arg(v, 'v');
                }
            }
            self.buf.push(')');
        }
    }

    /// print.go, argNumber: `[n]` before a verb, width or precision.
    fn arg_number(
        &mut self,
        arg_num: usize,
        s: &[u8],
        i: usize,
        num_args: usize,
        good: &mut bool,
        reordered: &mut bool,
    ) -> (usize, usize, bool) {
        if s.len() <= i || s[i] != b'[' {
            return (arg_num, i, false);
        }
        *reordered = true;
        let rest = &s[i..];
        let (index, wid, ok) = match rest.iter().position(|&b| b == b']') {
            Some(close) if rest.len() >= 3 => match parsenum(rest, 1, close) {
                (Some(n), ni) if ni == close => (n as i64 - 1, close + 1, true),
                _ => (0, close + 1, false),
            },
            _ => (0, 1, false),
        };
        if ok && 0 <= index && (index as usize) < num_args {
            return (index as usize, i + wid, true);
        }
        *good = false;
        (arg_num, i + wid, ok)
    }

    fn write_padding(&mut self, n: usize) {
        let pad = if self.f.zero { '0' } else { ' ' };
        self.buf.extend(std::iter::repeat_n(pad, n));
    }

    /// format.go, pad: width counts runes.
    fn pad(&mut self, s: &str) {
        let Some(wid) = self.f.wid.filter(|&w| w > 0) else {
            self.buf.push_str(s);
            return;
        };
        let n = wid.saturating_sub(s.chars().count());
        if !self.f.minus {
            self.write_padding(n);
            self.buf.push_str(s);
        } else {
            self.buf.push_str(s);
            self.write_padding(n);
        }
    }

    /// print.go, printArg, for the values a template can hold.
    pub(super) fn print_arg(&mut self, v: &Value, verb: char) {
        if *v == Value::Nil {
            match verb {
                'T' | 'v' => self.pad("<nil>"),
                _ => self.bad_verb(verb, v),
            }
            return;
        }
        match verb {
            'T' => {
                let t = v.type_name().to_string();
                self.fmt_s(&t);
                return;
            }
            'p' => {
                self.bad_verb(verb, v);
                return;
            }
            _ => {}
        }
        self.print_value(v, verb, 0);
    }

    fn print_value(&mut self, v: &Value, verb: char, depth: usize) {
        // handleMethods: Stringers print as their String() for these verbs.
        if !self.erroring && !self.f.sharp_v && matches!(verb, 'v' | 's' | 'x' | 'X' | 'q') {
            match v {
                Value::Time(t) => return self.fmt_string(&time_string(*t), verb),
                Value::Duration(d) => return self.fmt_string(&duration_string(*d), verb),
                _ => {}
            }
        }
        match v {
            Value::Nil => {
                if depth == 0 {
                    self.bad_verb(verb, v);
                } else {
                    self.buf.push_str("<nil>");
                }
            }
            Value::Bool(b) => match verb {
                't' | 'v' => self.pad(if *b { "true" } else { "false" }),
                _ => self.bad_verb(verb, v),
            },
            Value::Int(i) => self.fmt_integer(*i as u64, true, verb, v),
            Value::Duration(d) => self.fmt_integer(d.as_nanos() as u64, true, verb, v),
            Value::Float(f) => self.fmt_float_verb(*f, verb, v),
            Value::Str(s) => self.fmt_string(s, verb),
            Value::Time(t) => self.print_time_fields(*t, verb),
            Value::Map(m) => {
                self.buf.push_str("map[");
                for (k, (key, val)) in m.iter().enumerate() {
                    if k > 0 {
                        self.buf.push(' ');
                    }
                    self.print_value(&Value::Str(key.clone()), verb, depth + 1);
                    self.buf.push(':');
                    self.print_value(val, verb, depth + 1);
                }
                self.buf.push(']');
            }
            Value::StrMap(m) => {
                self.buf.push_str("map[");
                for (k, (key, val)) in m.iter().enumerate() {
                    if k > 0 {
                        self.buf.push(' ');
                    }
                    self.fmt_string(key, verb);
                    self.buf.push(':');
                    self.fmt_string(val, verb);
                }
                self.buf.push(']');
            }
            Value::Struct(_, fields) => {
                self.buf.push('{');
                for (k, (name, val)) in fields.iter().enumerate() {
                    if k > 0 {
                        self.buf.push(' ');
                    }
                    if self.f.plus_v {
                        // An embedded field is named after its type.
                        let name = match (name.as_str(), val) {
                            ("", Value::Struct(t, _)) => t.rsplit('.').next().unwrap_or(t),
                            _ => name,
                        };
                        self.buf.push_str(name);
                        self.buf.push(':');
                    }
                    self.print_value(val, verb, depth + 1);
                }
                self.buf.push('}');
            }
        }
    }

    /// print.go's printValue on a time.Time for the verbs its String() does
    /// not serve (`%d`, `%#v`...): the struct's unexported fields
    /// `{wall ext loc}`, which reflection reaches without their methods.
    /// Kapacitor's point times come from `time.Unix(0, ns).UTC()`
    /// (influxdb's models.SafeCalcTime) and keep that form: `UTC()` strips
    /// the monotonic reading and stores the UTC location as a nil pointer,
    /// so `wall` is the nanosecond, `ext` the seconds since January 1 of
    /// year 1 (time.go, `unixToInternal`), and `loc` prints as 0 or nil.
    fn print_time_fields(&mut self, t: SystemTime, verb: char) {
        const UNIX_TO_INTERNAL: i128 = 62_135_596_800;
        let ns = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        let wall = ns.rem_euclid(1_000_000_000) as u64;
        let ext = (ns.div_euclid(1_000_000_000) + UNIX_TO_INTERNAL) as i64;
        if self.f.sharp_v {
            // fmt0x64 for the uint64, decimal for the int64, and the nil
            // pointer as `(*time.Location)(nil)`.
            self.buf.push_str("time.Time{wall:");
            let old = self.f.sharp;
            self.f.sharp = true;
            self.fmt_integer(wall, false, 'x', &Value::Nil);
            self.f.sharp = old;
            self.buf.push_str(", ext:");
            self.fmt_integer(ext as u64, true, 'd', &Value::Nil);
            self.buf.push_str(", loc:(*time.Location)(nil)}");
            return;
        }
        self.buf.push('{');
        self.time_field(wall, false, "uint64", verb);
        self.buf.push(' ');
        self.time_field(ext as u64, true, "int64", verb);
        self.buf.push(' ');
        // fmtPointer: integer verbs print the address, 0 for nil.
        if matches!(verb, 'b' | 'o' | 'd' | 'x' | 'X') {
            self.fmt_integer(0, false, verb, &Value::Nil);
        } else {
            let _ = write!(self.buf, "%!{verb}(*time.Location=");
            self.pad("<nil>");
            self.buf.push(')');
        }
        self.buf.push('}');
    }

    /// print.go's fmtInteger on one of time.Time's integer fields, whose
    /// type its bad-verb form names.
    fn time_field(&mut self, u: u64, signed: bool, type_name: &str, verb: char) {
        let good = match verb {
            'd' | 'b' | 'o' | 'O' | 'x' | 'X' | 'c' | 'U' => true,
            'q' => u <= 0x10FFFF,
            _ => false,
        };
        if good {
            self.fmt_integer(u, signed, verb, &Value::Nil);
        } else {
            self.erroring = true;
            let _ = write!(self.buf, "%!{verb}({type_name}=");
            self.fmt_integer(u, signed, 'd', &Value::Nil);
            self.buf.push(')');
            self.erroring = false;
        }
    }

    /// print.go, badVerb: `%!d(string=hi)`.
    fn bad_verb(&mut self, verb: char, v: &Value) {
        self.erroring = true;
        let _ = write!(self.buf, "%!{verb}(");
        if *v == Value::Nil {
            self.buf.push_str("<nil>");
        } else {
            self.buf.push_str(v.type_name());
            self.buf.push('=');
            match v {
                Value::Time(t) => {
                    let s = time_string(*t);
                    self.pad(&s)
                }
                _ => self.print_arg(v, 'v'),
            }
        }
        self.buf.push(')');
        self.erroring = false;
    }

    fn fmt_string(&mut self, s: &str, verb: char) {
        match verb {
            'v' if self.f.sharp_v => self.fmt_q(s),
            'v' | 's' => self.fmt_s(s),
            'x' => self.fmt_sx(s, LDIGITS),
            'X' => self.fmt_sx(s, UDIGITS),
            'q' => self.fmt_q(s),
            _ => self.bad_verb(verb, &Value::Str(s.to_string())),
        }
    }

    fn truncate<'s>(&self, s: &'s str) -> &'s str {
        match self.f.prec {
            Some(n) => match s.char_indices().nth(n) {
                Some((i, _)) => &s[..i],
                None => s,
            },
            None => s,
        }
    }

    fn fmt_s(&mut self, s: &str) {
        let s = self.truncate(s);
        self.pad(s)
    }

    fn fmt_q(&mut self, s: &str) {
        let s = self.truncate(s);
        if self.f.sharp && can_backquote(s) {
            let q = format!("`{s}`");
            return self.pad(&q);
        }
        let q = go_quote(s, self.f.plus);
        self.pad(&q)
    }

    /// format.go, fmtSbx: hex of a string's bytes.
    fn fmt_sx(&mut self, s: &str, digits: &[u8]) {
        let b = s.as_bytes();
        let length = self.f.prec.map_or(b.len(), |p| p.min(b.len()));
        let mut width = 2 * length;
        if width > 0 {
            if self.f.space {
                if self.f.sharp {
                    width *= 2;
                }
                width += length - 1;
            } else if self.f.sharp {
                width += 2;
            }
        } else {
            if let Some(w) = self.f.wid {
                self.write_padding(w);
            }
            return;
        }
        let wid = self.f.wid.unwrap_or(0);
        if wid > width && !self.f.minus {
            self.write_padding(wid - width);
        }
        if self.f.sharp {
            self.buf.push('0');
            self.buf.push(digits[16] as char);
        }
        for (i, &c) in b[..length].iter().enumerate() {
            if self.f.space && i > 0 {
                self.buf.push(' ');
                if self.f.sharp {
                    self.buf.push('0');
                    self.buf.push(digits[16] as char);
                }
            }
            self.buf.push(digits[(c >> 4) as usize] as char);
            self.buf.push(digits[(c & 0xf) as usize] as char);
        }
        if wid > width && self.f.minus {
            self.write_padding(wid - width);
        }
    }

    /// print.go fmtInteger and format.go fmtInteger.
    fn fmt_integer(&mut self, u: u64, signed: bool, verb: char, v: &Value) {
        let (base, digits) = match verb {
            'v' | 'd' => (10, LDIGITS),
            'b' => (2, LDIGITS),
            'o' | 'O' => (8, LDIGITS),
            'x' => (16, LDIGITS),
            'X' => (16, UDIGITS),
            'c' => {
                let c = char::from_u32(u as u32)
                    .filter(|_| u <= 0x10FFFF)
                    .unwrap_or('\u{FFFD}');
                return self.pad(&c.to_string());
            }
            'q' => {
                if u > 0x10FFFF {
                    return self.bad_verb(verb, v);
                }
                let c = char::from_u32(u as u32).unwrap_or('\u{FFFD}');
                let q = go_quote_rune(c, self.f.plus);
                return self.pad(&q);
            }
            'U' => return self.fmt_unicode(u),
            _ => return self.bad_verb(verb, v),
        };
        let negative = signed && (u as i64) < 0;
        let mut u = if negative {
            (u as i64).unsigned_abs()
        } else {
            u
        };
        let mut prec = 0;
        if let Some(p) = self.f.prec {
            prec = p;
            if p == 0 && u == 0 {
                let old = self.f.zero;
                self.f.zero = false;
                self.write_padding(self.f.wid.unwrap_or(0));
                self.f.zero = old;
                return;
            }
        } else if self.f.zero && self.f.wid.is_some() {
            prec = self.f.wid.unwrap_or(0);
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1);
            }
        }
        let mut buf: Vec<u8> = Vec::with_capacity(24);
        loop {
            buf.push(digits[(u % base) as usize]);
            u /= base;
            if u == 0 {
                break;
            }
        }
        while buf.len() < prec {
            buf.push(b'0');
        }
        if self.f.sharp {
            match base {
                2 => buf.extend_from_slice(b"b0"),
                8 if buf.last() != Some(&b'0') => buf.push(b'0'),
                16 => {
                    buf.push(digits[16]);
                    buf.push(b'0');
                }
                _ => {}
            }
        }
        if verb == 'O' {
            buf.extend_from_slice(b"o0");
        }
        if negative {
            buf.push(b'-');
        } else if self.f.plus {
            buf.push(b'+');
        } else if self.f.space {
            buf.push(b' ');
        }
        buf.reverse();
        let s = String::from_utf8(buf).unwrap_or_default();
        let old = self.f.zero;
        self.f.zero = false;
        self.pad(&s);
        self.f.zero = old;
    }

    fn fmt_unicode(&mut self, u: u64) {
        let mut prec = 4;
        if let Some(p) = self.f.prec.filter(|&p| p > 4) {
            prec = p;
        }
        let mut s = format!("U+{u:0prec$X}");
        if self.f.sharp {
            if let Some(c) = char::from_u32(u as u32).filter(|&c| u <= 0x10FFFF && go_is_print(c)) {
                let _ = write!(s, " '{c}'");
            }
        }
        let old = self.f.zero;
        self.f.zero = false;
        self.pad(&s);
        self.f.zero = old;
    }

    /// print.go fmtFloat: the verb's default precision.
    fn fmt_float_verb(&mut self, v: f64, verb: char, val: &Value) {
        match verb {
            'v' => self.fmt_float(v, 'g', -1),
            'g' | 'G' => self.fmt_float(v, verb, -1),
            'f' | 'F' => self.fmt_float(v, 'f', 6),
            'e' | 'E' => self.fmt_float(v, verb, 6),
            'b' | 'x' | 'X' => self.fmt_float(v, verb, -1),
            _ => self.bad_verb(verb, val),
        }
    }

    /// format.go, fmtFloat.
    fn fmt_float(&mut self, v: f64, verb: char, prec: i32) {
        let prec = self.f.prec.map_or(prec, |p| p as i32);
        let mut num = format_float(v, verb as u8, prec).into_bytes();
        if num[0] != b'-' && num[0] != b'+' {
            num.insert(0, b'+');
        }
        if self.f.space && num[0] == b'+' && !self.f.plus {
            num[0] = b' ';
        }
        // Infinities and NaN are not padded with zeros.
        if num[1] == b'I' || num[1] == b'N' {
            let old = self.f.zero;
            self.f.zero = false;
            if num[1] == b'N' && !self.f.space && !self.f.plus {
                num.remove(0);
            }
            let s = String::from_utf8(num).unwrap_or_default();
            self.pad(&s);
            self.f.zero = old;
            return;
        }
        // '#' keeps the decimal point and, for %g, trailing zeros.
        if self.f.sharp && verb != 'b' {
            let mut digits = 0i32;
            if matches!(verb, 'v' | 'g' | 'G' | 'x') {
                digits = if prec == -1 { 6 } else { prec };
            }
            let mut tail = Vec::new();
            let mut has_point = false;
            let mut saw_nonzero = false;
            let mut i = 1;
            while i < num.len() {
                match num[i] {
                    b'.' => has_point = true,
                    b'p' | b'P' | b'e' | b'E' => {
                        tail = num.split_off(i);
                        break;
                    }
                    c => {
                        if c != b'0' {
                            saw_nonzero = true;
                        }
                        if saw_nonzero {
                            digits -= 1;
                        }
                    }
                }
                i += 1;
            }
            if !has_point {
                if num.len() == 2 && num[1] == b'0' {
                    digits -= 1;
                }
                num.push(b'.');
            }
            while digits > 0 {
                num.push(b'0');
                digits -= 1;
            }
            num.extend(tail);
        }
        let s = String::from_utf8(num).unwrap_or_default();
        if self.f.plus || !s.starts_with('+') {
            if self.f.zero && self.f.wid.is_some_and(|w| w > s.len()) {
                self.buf.push_str(&s[..1]);
                self.write_padding(self.f.wid.unwrap_or(0) - s.len());
                self.buf.push_str(&s[1..]);
                return;
            }
            return self.pad(&s);
        }
        self.pad(&s[1..]);
    }
}

/// print.go, intFromArg: a `*` width or precision.
fn int_from_arg(a: &[Value], arg_num: usize) -> (i64, bool, usize) {
    if arg_num >= a.len() {
        return (0, false, arg_num);
    }
    let (n, ok) = match &a[arg_num] {
        Value::Int(i) => (*i, true),
        Value::Duration(d) => (d.as_nanos() as i64, true),
        _ => (0, false),
    };
    if n.unsigned_abs() > 1_000_000 {
        return (0, false, arg_num + 1);
    }
    (n, ok, arg_num + 1)
}
