//! Regexes as Go 1.13's `regexp.Compile` reads them, run by the regex crate.
//!
//! Kapacitor compiles a lambda's `/.../` with Go's `regexp` (RE2 syntax,
//! `regexp/syntax/parse.go`). The regex crate reads nearly the same syntax
//! but accepts patterns Go refuses (`a**`, `x{1001}`, `(?<n>x)`, `\u0041`,
//! `(?x)`, `\p{Letter}`), refuses some Go accepts (`a{,5}` and `a{` are
//! literal braces in Go, `(?)` is an empty flag group, `\p{^Greek}` a
//! negation) and gives other meanings to a few (`\<` is a literal `<` in
//! Go, `\d`, `\s`, `\w` and `\b` are ASCII-only there). So this walks the
//! pattern with parse.go's rules, in its order, returning Go's error for
//! the first construct Go refuses, and otherwise writes the pattern out in
//! the crate's syntax with Go's meaning.

use regex::{Regex, RegexBuilder};

/// `maxRepeat` in parse.go: the largest count in `{n,m}`.
const MAX_REPEAT: i64 = 1000;

/// Compiles a regex written for Go, with Go's error message
/// (`error parsing regexp: <code>: `<expr>``) when Go refuses it.
pub(super) fn compile_go_regex(pattern: &str) -> Result<Regex, String> {
    let rust = go_regex_to_rust(pattern)?;
    RegexBuilder::new(&rust).build().map_err(|e| {
        // Left for what Go accepts but the crate cannot run (a capture
        // name starting with a digit, a pattern over the size limit). The
        // crate's message draws the pattern over several lines; its last
        // line says what is wrong.
        let s = e.to_string();
        let last = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        format!(
            "error parsing regexp: {}",
            last.trim_start_matches("error: ")
        )
    })
}

/// Go's `syntax.Error`: its code's text and the offending part.
fn go_error(code: &str, expr: &str) -> String {
    format!("error parsing regexp: {code}: `{expr}`")
}

const MISSING_ARGUMENT: &str = "missing argument to repetition operator";
const INVALID_REPEAT_OP: &str = "invalid nested repetition operator";
const INVALID_REPEAT_SIZE: &str = "invalid repeat count";
const INVALID_ESCAPE: &str = "invalid escape sequence";
const INVALID_CHAR_RANGE: &str = "invalid character class range";
const INVALID_NAMED_CAPTURE: &str = "invalid named capture";
const INVALID_PERL_OP: &str = "invalid or unsupported Perl syntax";
const MISSING_BRACKET: &str = "missing closing ]";
const MISSING_PAREN: &str = "missing closing )";
const UNEXPECTED_PAREN: &str = "unexpected )";
const TRAILING_BACKSLASH: &str = "trailing backslash at end of expression";

/// What repetition nesting parse.go's `repeatIsValid` looks at.
enum Tree {
    Leaf,
    Repeat(i64, i64, Box<Tree>),
    Group(Vec<Tree>),
}

/// parse.go's stack: open parentheses and `|` are its pseudo-operators,
/// which a repetition cannot apply to.
enum Frame {
    Paren,
    Bar,
    Re(Tree),
}

/// `repeatIsValid` (parse.go): nested `{n,m}` may not multiply beyond
/// 1000 copies of the innermost thing.
fn repeat_is_valid(re: &Tree, mut n: i64) -> bool {
    match re {
        Tree::Leaf => true,
        Tree::Group(subs) => subs.iter().all(|s| repeat_is_valid(s, n)),
        Tree::Repeat(min, max, sub) => {
            let mut m = *max;
            if m == 0 {
                return true;
            }
            if m < 0 {
                m = *min;
            }
            if m > n {
                return false;
            }
            if m > 0 {
                n /= m;
            }
            repeat_is_valid(sub, n)
        }
    }
}

/// Translates a Go regex to the regex crate's syntax, or gives Go's error.
pub(super) fn go_regex_to_rust(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len() + 16);
    let mut stack: Vec<Frame> = Vec::new();
    // Where the previous item began, if it was a repetition operator.
    let mut last_repeat: Option<usize> = None;
    // Where flags alone, such as `(?i)`, were written just before: Go
    // applies a repetition that follows them to the item before them, the
    // crate would refuse it there, so it is written before the flags.
    let mut flags_at: Option<usize> = None;
    let mut i = 0;
    while i < s.len() {
        let t = &s[i..];
        let mut repeat = None;
        let pending = flags_at.take();
        let push_op = |out: &mut String, op: &str| match pending {
            Some(at) => out.insert_str(at, op),
            None => out.push_str(op),
        };
        match t.as_bytes()[0] {
            b'(' if t.as_bytes().get(1) == Some(&b'?') => {
                let before = out.len();
                let (n, flags_only) = perl_flags(t, &mut stack, &mut out)?;
                if flags_only {
                    flags_at = Some(pending.unwrap_or(before));
                }
                i += n;
            }
            b'(' => {
                stack.push(Frame::Paren);
                out.push('(');
                i += 1;
            }
            b'|' => {
                stack.push(Frame::Bar);
                out.push('|');
                i += 1;
            }
            b')' => {
                let mut subs = Vec::new();
                loop {
                    match stack.pop() {
                        None => return Err(go_error(UNEXPECTED_PAREN, s)),
                        Some(Frame::Paren) => break,
                        Some(Frame::Bar) => {}
                        Some(Frame::Re(t)) => subs.push(t),
                    }
                }
                stack.push(Frame::Re(Tree::Group(subs)));
                out.push(')');
                i += 1;
            }
            c @ (b'^' | b'$' | b'.') => {
                stack.push(Frame::Re(Tree::Leaf));
                out.push(char::from(c));
                i += 1;
            }
            b'[' => {
                i += class(t, &mut out)?;
                stack.push(Frame::Re(Tree::Leaf));
            }
            b'*' | b'+' | b'?' => {
                let after = repetition(s, i, 1, None, last_repeat, &mut stack)?;
                push_op(&mut out, &s[i..after]);
                repeat = Some(i);
                i = after;
            }
            b'{' => match parse_repeat(t) {
                None => {
                    // Not a well-formed repeat: the brace is a literal.
                    stack.push(Frame::Re(Tree::Leaf));
                    out.push_str(r"\{");
                    i += 1;
                }
                Some((min, max, len)) => {
                    if !(0..=MAX_REPEAT).contains(&min) || max > MAX_REPEAT || max >= 0 && min > max
                    {
                        return Err(go_error(INVALID_REPEAT_SIZE, &t[..len]));
                    }
                    let after = repetition(s, i, len, Some((min, max)), last_repeat, &mut stack)?;
                    push_op(&mut out, &s[i..after]);
                    repeat = Some(i);
                    i = after;
                }
            },
            b'\\' => {
                i += top_escape(t, &mut out)?;
                stack.push(Frame::Re(Tree::Leaf));
            }
            _ => {
                let c = t.chars().next().unwrap_or_default();
                push_literal(&mut out, c);
                stack.push(Frame::Re(Tree::Leaf));
                i += c.len_utf8();
            }
        }
        last_repeat = repeat;
    }
    if stack.iter().any(|f| matches!(f, Frame::Paren)) {
        return Err(go_error(MISSING_PAREN, s));
    }
    Ok(out)
}

/// parse.go's `repeat`: applies a repetition operator `len` bytes long at
/// `at`, with an optional non-greedy `?`; returns where parsing goes on.
fn repetition(
    s: &str,
    at: usize,
    len: usize,
    counts: Option<(i64, i64)>,
    last_repeat: Option<usize>,
    stack: &mut Vec<Frame>,
) -> Result<usize, String> {
    let mut after = at + len;
    if s.as_bytes().get(after) == Some(&b'?') {
        after += 1;
    }
    if let Some(prev) = last_repeat {
        // Perl forbids stacking repetitions: a** is not a doubled star.
        return Err(go_error(INVALID_REPEAT_OP, &s[prev..after]));
    }
    let sub = match stack.pop() {
        Some(Frame::Re(t)) => t,
        other => {
            stack.extend(other);
            return Err(go_error(MISSING_ARGUMENT, &s[at..after]));
        }
    };
    let re = match counts {
        Some((min, max)) => Tree::Repeat(min, max, Box::new(sub)),
        None => Tree::Group(vec![sub]),
    };
    if let Some((min, max)) = counts {
        if (min >= 2 || max >= 2) && !repeat_is_valid(&re, MAX_REPEAT) {
            return Err(go_error(INVALID_REPEAT_SIZE, &s[at..after]));
        }
    }
    stack.push(Frame::Re(re));
    Ok(after)
}

/// parse.go's `parseRepeat`: `{n}`, `{n,}` or `{n,m}` (max -1 for none),
/// and its length; `None` if `t` is not of that form. A number too big
/// gives min -1.
fn parse_repeat(t: &str) -> Option<(i64, i64, usize)> {
    let b = t.as_bytes();
    let mut i = 1;
    let (mut min, n) = parse_int(&b[i..])?;
    i += n;
    let max;
    match b.get(i)? {
        b',' => {
            i += 1;
            if *b.get(i)? == b'}' {
                max = -1;
            } else {
                let (m, n) = parse_int(&b[i..])?;
                i += n;
                max = m;
                if m < 0 {
                    min = -1;
                }
            }
        }
        _ => max = min,
    }
    (*b.get(i)? == b'}').then_some((min, max, i + 1))
}

/// parse.go's `parseInt`: decimal without leading zeros; -1 when at least
/// 1e8.
fn parse_int(b: &[u8]) -> Option<(i64, usize)> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || (n >= 2 && b[0] == b'0') {
        return None;
    }
    let mut v: i64 = 0;
    for &d in &b[..n] {
        if v >= 100_000_000 {
            v = -1;
            break;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Some((v, n))
}

/// parse.go's `parsePerlFlags` for `t` starting with `(?`: a named capture
/// `(?P<name>`, a group `(?flags:`, or flags alone `(?flags)`. Returns the
/// bytes read and whether it was flags alone.
fn perl_flags(t: &str, stack: &mut Vec<Frame>, out: &mut String) -> Result<(usize, bool), String> {
    if t.len() > 4 && t.starts_with("(?P<") {
        let Some(end) = t.find('>') else {
            return Err(go_error(INVALID_NAMED_CAPTURE, t));
        };
        let name = &t[4..end];
        if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
            return Err(go_error(INVALID_NAMED_CAPTURE, &t[..=end]));
        }
        stack.push(Frame::Paren);
        out.push_str(&t[..=end]);
        return Ok((end + 1, false));
    }
    // Go 1.13 knows no `(?<name>`: `<` is not a flag, so it falls here.
    let mut negated = false;
    let mut saw_flag = false;
    let mut flags = String::new();
    for (i, c) in t.char_indices().skip(2) {
        match c {
            'i' | 'm' | 's' | 'U' => {
                flags.push(c);
                saw_flag = true;
            }
            '-' if !negated => {
                negated = true;
                flags.push(c);
                saw_flag = false;
            }
            ':' | ')' if !negated || saw_flag => {
                if c == ':' {
                    stack.push(Frame::Paren);
                    out.push_str("(?");
                    out.push_str(&flags);
                    out.push(':');
                } else if !flags.is_empty() {
                    out.push_str("(?");
                    out.push_str(&flags);
                    out.push(')');
                }
                return Ok((i + 1, c == ')'));
            }
            _ => return Err(go_error(INVALID_PERL_OP, &t[..i + c.len_utf8()])),
        }
    }
    Err(go_error(INVALID_PERL_OP, t))
}

/// A backslash outside a class (parse.go's main loop): `\A`, `\b`, `\B`,
/// `\z`, `\Q...\E`, `\C` (refused), Unicode and Perl classes, then the
/// single-character escapes. Returns the bytes read.
fn top_escape(t: &str, out: &mut String) -> Result<usize, String> {
    match t.as_bytes().get(1) {
        Some(b'A') => out.push_str(r"\A"),
        Some(b'z') => out.push_str(r"\z"),
        // ASCII word boundaries, as Go's.
        Some(b'b') => out.push_str(r"(?-u:\b)"),
        Some(b'B') => out.push_str(r"(?-u:\B)"),
        Some(b'C') => return Err(go_error(INVALID_ESCAPE, &t[..2])),
        Some(b'Q') => {
            let body = &t[2..];
            let (lit, used) = match body.find(r"\E") {
                Some(end) => (&body[..end], 2 + end + 2),
                None => (body, t.len()),
            };
            for c in lit.chars() {
                push_literal(out, c);
            }
            return Ok(used);
        }
        _ => {
            if let Some(n) = unicode_class(t, out)? {
                return Ok(n);
            }
            if let Some(n) = perl_class(t, out, false) {
                return Ok(n);
            }
            let (c, n) = escape(t)?;
            push_literal(out, c);
            return Ok(n);
        }
    }
    Ok(2)
}

/// Go's Perl classes `\d \s \w` and negations: ASCII only. Returns the
/// bytes read.
fn perl_class(t: &str, out: &mut String, in_class: bool) -> Option<usize> {
    let (set, negated) = match t.as_bytes().get(..2)? {
        br"\d" => ("0-9", false),
        br"\D" => ("0-9", true),
        br"\s" => (r"\t\n\f\r\x20", false),
        br"\S" => (r"\t\n\f\r\x20", true),
        br"\w" => ("0-9A-Za-z_", false),
        br"\W" => ("0-9A-Za-z_", true),
        _ => return None,
    };
    if in_class && !negated {
        out.push_str(set);
    } else {
        out.push_str(if negated { "[^" } else { "[" });
        out.push_str(set);
        out.push(']');
    }
    Some(2)
}

/// Go 1.13's Unicode 11 general categories. Its `C` lacks the unassigned
/// `Cn`, which the crate's `C` includes.
const CATEGORIES: &[&str] = &[
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs",
];

/// Go 1.13's `unicode.Scripts` (Unicode 11.0), spelled as Go's map keys.
const SCRIPTS: &[&str] = &[
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Cherokee",
    "Common",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kayah_Li",
    "Kharoshthi",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "Nabataean",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nushu",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Oriya",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Ugaritic",
    "Vai",
    "Warang_Citi",
    "Yi",
    "Zanabazar_Square",
];

/// parse.go's `parseUnicodeClass`: `\pL`, `\p{Greek}`, `\P{...}`, `\p{^...}`,
/// with Go's exact, case-sensitive names. Returns the bytes read, or
/// `None` if `t` is not `\p` or `\P`.
fn unicode_class(t: &str, out: &mut String) -> Result<Option<usize>, String> {
    let mut negated = match t.as_bytes().get(1) {
        Some(b'p') => false,
        Some(b'P') => true,
        _ => return Ok(None),
    };
    let (seq, name) = if t[2..].starts_with('{') {
        let Some(end) = t.find('}') else {
            return Err(go_error(INVALID_CHAR_RANGE, t));
        };
        (&t[..=end], &t[3..end])
    } else {
        let n = t[2..].chars().next().map_or(0, char::len_utf8);
        (&t[..2 + n], &t[2..2 + n])
    };
    let name = match name.strip_prefix('^') {
        Some(rest) => {
            negated = !negated;
            rest
        }
        None => name,
    };
    let set = match name {
        "Any" => r"\x{0}-\x{10FFFF}".to_string(),
        // Surrogates never occur in a str: Cs matches nothing.
        "Cs" => {
            negated = !negated;
            r"\x{0}-\x{10FFFF}".to_string()
        }
        "C" => r"\p{Cc}\p{Cf}\p{Co}".to_string(),
        _ if CATEGORIES.contains(&name) || SCRIPTS.contains(&name) => format!(r"\p{{{name}}}"),
        _ => return Err(go_error(INVALID_CHAR_RANGE, seq)),
    };
    out.push_str(if negated { "[^" } else { "[" });
    out.push_str(&set);
    out.push(']');
    Ok(Some(seq.len()))
}

/// parse.go's `parseEscape`: one escaped character. Returns it and the
/// bytes read.
fn escape(t: &str) -> Result<(char, usize), String> {
    let mut chars = t[1..].char_indices().map(|(i, c)| (i + 1, c)).peekable();
    let Some((_, c)) = chars.next() else {
        return Err(go_error(TRAILING_BACKSLASH, ""));
    };
    let octal = |b: Option<&u8>| b.is_some_and(|d| (b'0'..=b'7').contains(d));
    let invalid = |end: usize| Err(go_error(INVALID_ESCAPE, &t[..end]));
    let bytes = t.as_bytes();
    match c {
        // A lone \1 to \7 would be a backreference, which RE2 refuses.
        '1'..='7' if !octal(bytes.get(2)) => invalid(2),
        '0'..='7' => {
            let mut r = u32::from(bytes[1] - b'0');
            let mut n = 2;
            while n < 4 && octal(bytes.get(n)) {
                r = r * 8 + u32::from(bytes[n] - b'0');
                n += 1;
            }
            Ok((char::from_u32(r).unwrap_or_default(), n))
        }
        'x' => {
            let Some((_, c)) = chars.next() else {
                return invalid(2);
            };
            if c == '{' {
                let mut r: u32 = 0;
                for (digits, (i, c)) in chars.enumerate() {
                    if c == '}' {
                        if digits == 0 {
                            return invalid(i + 1);
                        }
                        return match char::from_u32(r) {
                            Some(ch) => Ok((ch, i + 1)),
                            // Surrogates: Go takes them, no &str can.
                            None => invalid(i + 1),
                        };
                    }
                    let Some(v) = c.to_digit(16) else {
                        return invalid(i + c.len_utf8());
                    };
                    r = r * 16 + v;
                    if r > 0x10FFFF {
                        return invalid(i + c.len_utf8());
                    }
                }
                return invalid(t.len());
            }
            let x = c.to_digit(16);
            let Some((i, d)) = chars.next() else {
                return invalid(t.len());
            };
            match (x, d.to_digit(16)) {
                (Some(x), Some(y)) => Ok((char::from_u32(x * 16 + y).unwrap_or_default(), i + 1)),
                _ => invalid(i + d.len_utf8()),
            }
        }
        'a' => Ok(('\x07', 2)),
        'f' => Ok(('\x0c', 2)),
        'n' => Ok(('\n', 2)),
        'r' => Ok(('\r', 2)),
        't' => Ok(('\t', 2)),
        'v' => Ok(('\x0b', 2)),
        // Escaped ASCII punctuation is always itself.
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c, 2)),
        c => invalid(1 + c.len_utf8()),
    }
}

/// A literal character in the crate's syntax, inside or outside a class:
/// meta characters escaped (not `<` or `>`, which escaped are word
/// boundaries there), controls in hex.
fn push_literal(out: &mut String, c: char) {
    if c.is_control() {
        out.push_str(&format!(r"\x{{{:X}}}", u32::from(c)));
    } else {
        out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
    }
}

/// POSIX classes Go knows, as `[:name:]` and `[:^name:]`.
const POSIX: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// parse.go's `parseClass` for `t` starting with `[`. Returns the bytes
/// read.
fn class(t: &str, out: &mut String) -> Result<usize, String> {
    let whole = t;
    let mut i = 1;
    out.push('[');
    if t[i..].starts_with('^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let rest = &t[i..];
        if rest.starts_with(']') && !first {
            break;
        }
        first = false;
        if rest.len() > 2 && rest.starts_with("[:") {
            if let Some(end) = rest[2..].find(":]") {
                let name = &rest[..end + 4];
                let bare = &name[2..name.len() - 2];
                if !POSIX.contains(&bare.strip_prefix('^').unwrap_or(bare)) {
                    return Err(go_error(INVALID_CHAR_RANGE, name));
                }
                out.push_str(name);
                i += name.len();
                continue;
            }
        }
        if rest.starts_with('\\') {
            if let Some(n) = unicode_class(rest, out)? {
                i += n;
                continue;
            }
            if let Some(n) = perl_class(rest, out, true) {
                i += n;
                continue;
            }
        }
        let (lo, n) = class_char(rest, whole)?;
        i += n;
        let mut hi = lo;
        let after = &t[i..];
        if after.len() >= 2 && after.starts_with('-') && !after[1..].starts_with(']') {
            let (h, m) = class_char(&after[1..], whole)?;
            hi = h;
            if hi < lo {
                return Err(go_error(INVALID_CHAR_RANGE, &rest[..n + 1 + m]));
            }
            i += 1 + m;
        }
        push_literal(out, lo);
        if hi != lo {
            out.push('-');
            push_literal(out, hi);
        }
    }
    out.push(']');
    Ok(i + 1)
}

/// parse.go's `parseClassChar`: one character of a class, escaped or not.
fn class_char(t: &str, whole: &str) -> Result<(char, usize), String> {
    match t.chars().next() {
        None => Err(go_error(MISSING_BRACKET, whole)),
        Some('\\') => escape(t),
        Some(c) => Ok((c, c.len_utf8())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(pattern: &str) -> String {
        match compile_go_regex(pattern) {
            Ok(_) => panic!("{pattern}: accepted"),
            Err(e) => e,
        }
    }

    fn matches(pattern: &str, text: &str) -> bool {
        compile_go_regex(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .is_match(text)
    }

    /// Patterns the regex crate takes but Go 1.13 refuses, with the
    /// messages parse.go gives (the codes are syntax.ErrorCode's texts, the
    /// expression the part its parser points at).
    #[test]
    fn refused_as_go_refuses() {
        for (pattern, message) in [
            // `repeat`: stacked repetition operators (lastRepeat).
            ("a**", "invalid nested repetition operator: `**`"),
            ("a*?+", "invalid nested repetition operator: `*?+`"),
            ("x{2}{3}", "invalid nested repetition operator: `{2}{3}`"),
            // The main loop: counts above maxRepeat (1000), or min > max.
            ("x{1001}", "invalid repeat count: `{1001}`"),
            ("x{2,1}", "invalid repeat count: `{2,1}`"),
            // `repeatIsValid`: nested counts multiply past 1000.
            ("(x{500}){3}", "invalid repeat count: `{3}`"),
            // `parsePerlFlags`: Go 1.13 has only (?P<name>.
            ("(?<n>x)", "invalid or unsupported Perl syntax: `(?<`"),
            ("(?x)a", "invalid or unsupported Perl syntax: `(?x`"),
            ("(?i-)a", "invalid or unsupported Perl syntax: `(?i-)`"),
            ("(?P<n-1>x)", "invalid named capture: `(?P<n-1>`"),
            ("(?P<n", "invalid named capture: `(?P<n`"),
            // `repeat`: nothing to repeat.
            ("*a", "missing argument to repetition operator: `*`"),
            ("(+)", "missing argument to repetition operator: `+`"),
            ("a|?", "missing argument to repetition operator: `?`"),
            // `parseEscape`.
            (r"\C", "invalid escape sequence: `\\C`"),
            (r"\u0041", "invalid escape sequence: `\\u`"),
            (r"\1", "invalid escape sequence: `\\1`"),
            (r"\8", "invalid escape sequence: `\\8`"),
            (r"\x4", "invalid escape sequence: `\\x4`"),
            (r"\x{110000}", "invalid escape sequence: `\\x{110000`"),
            ("a\\", "trailing backslash at end of expression: ``"),
            // `parseUnicodeClass` and `parseNamedClass`: Go's names only.
            (
                r"\p{Letter}",
                "invalid character class range: `\\p{Letter}`",
            ),
            (r"\p{greek}", "invalid character class range: `\\p{greek}`"),
            (
                r"\p{Wancho}",
                "invalid character class range: `\\p{Wancho}`",
            ),
            ("[[:foo:]]", "invalid character class range: `[:foo:]`"),
            ("[z-a]", "invalid character class range: `z-a`"),
            (r"[a-\d]", "invalid escape sequence: `\\d`"),
            ("[a", "missing closing ]: `[a`"),
            ("(a", "missing closing ): `(a`"),
            ("a)", "unexpected ): `a)`"),
        ] {
            assert_eq!(
                refused(pattern),
                format!("error parsing regexp: {message}"),
                "{pattern}"
            );
        }
    }

    /// Patterns Go accepts, with Go's meaning, that the crate would refuse
    /// or read otherwise.
    #[test]
    fn accepted_with_go_meaning() {
        // `{` that does not parse as a repeat is a literal (parseRepeat).
        assert!(matches("^a{,5}$", "a{,5}"));
        assert!(matches("^a{$", "a{"));
        assert!(matches("^a{1,2$", "a{1,2"));
        assert!(matches("^a{01}$", "a{01}"));
        // `(?)` sets no flags; `a(?i)*` repeats the `a`.
        assert!(matches("^(?)a$", "a"));
        assert!(matches("^a(?i)*$", "aaa"));
        // Escaped punctuation is itself: `\<` is not a word boundary.
        assert!(matches(r"^\<\>\ $", "<> "));
        assert!(!matches(r"\<", "a"));
        // Octal: up to three digits after \0, or two or more after \1-\7.
        assert!(matches(r"^\101\0\12$", "A\0\n"));
        assert!(matches(r"^\1234$", "S4"));
        // \Q...\E quotes, to the end if there is no \E.
        assert!(matches(r"^\Qa.b*\E+$", "a.b**"));
        assert!(matches(r"^\Q(x$", "(x$"));
        // \p{^X} negates; Go's C has no unassigned code points.
        assert!(matches(r"^\p{^Greek}$", "a"));
        assert!(!matches(r"^\P{^Greek}$", "a"));
        assert!(!matches(r"\p{C}", "\u{378}"));
        assert!(matches(r"\p{Any}", "\u{378}"));
        assert!(!matches(r"\p{Cs}", "a") && matches(r"\P{Cs}", "a"));
        // ASCII classes and boundaries.
        assert!(!matches(r"\d", "٣"));
        assert!(matches(r"^[\d\W]+$", "1-"));
        assert!(matches(r"^[]a]+$", "]a"));
        assert!(matches(r"^[a&&b~~]+$", "&~"));
        assert!(matches(r"^[[:^alpha:]]+$", "1-"));
        // Go's flags and non-greedy operators.
        assert!(matches("^(?i:AB)(?s).$", "ab\n"));
        assert!(matches("^x{2,}?$", "xxx"));
        assert!(matches("(?P<host>web)", "web1"));
        // A repeat within the 1000 copies limit.
        assert!(matches("^(x{10}){100}$", &"x".repeat(1000)));
    }

    #[test]
    fn translation_spells_go_meaning_for_the_crate() {
        assert_eq!(
            go_regex_to_rust(r"\d[\d\W]\b").unwrap(),
            r"[0-9][0-9[^0-9A-Za-z_]](?-u:\b)"
        );
        assert_eq!(go_regex_to_rust(r"[]a[&&~]").unwrap(), r"[\]a\[\&\&\~]");
        assert_eq!(
            go_regex_to_rust(r"[[:alpha:]\\d]").unwrap(),
            r"[[:alpha:]\\d]"
        );
        assert_eq!(go_regex_to_rust(r"\Q1.5\E.").unwrap(), r"1\.5.");
        assert_eq!(go_regex_to_rust("a{,5}").unwrap(), r"a\{,5\}");
        assert_eq!(go_regex_to_rust("a(?i)*b").unwrap(), "a*(?i)b");
    }
}
