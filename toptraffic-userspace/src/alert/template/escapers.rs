//! The escaping functions: text/template's html, js and urlquery (funcs.go,
//! url.QueryEscape) and html/template's escapers (html/template/html.go,
//! url.go).

use std::fmt::Write as _;

use super::strconv::go_is_print;
use super::transition::{attr_type, decode_css, is_css_nmchar, is_html_space, AttrType};

/// template.HTMLEscapeString (text/template/funcs.go).
pub(super) fn html_escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// template.JSEscapeString as of Go 1.13 (`<` and `>` as \x3C and \x3E).
pub(super) fn js_escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\x3C"),
            '>' => out.push_str("\\x3E"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u00{:02X}", c as u32);
            }
            c if c.is_ascii() || go_is_print(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out
}

/// url.QueryEscape.
pub(super) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

pub(super) const FILTER_FAILSAFE: &str = "ZgotmplZ";

/// html.go, htmlReplacementTable: what html/template escapes in text and
/// quoted attributes.
pub(super) const HTML_TABLE: &[(char, &str)] = &[
    ('\0', "\u{FFFD}"),
    ('"', "&#34;"),
    ('&', "&amp;"),
    ('\'', "&#39;"),
    ('+', "&#43;"),
    ('<', "&lt;"),
    ('>', "&gt;"),
];

/// html.go, htmlNospaceReplacementTable: unquoted attribute values.
pub(super) const NOSPACE_TABLE: &[(char, &str)] = &[
    ('\0', "&#xfffd;"),
    ('\t', "&#9;"),
    ('\n', "&#10;"),
    ('\x0b', "&#11;"),
    ('\x0c', "&#12;"),
    ('\r', "&#13;"),
    (' ', "&#32;"),
    ('"', "&#34;"),
    ('&', "&amp;"),
    ('\'', "&#39;"),
    ('+', "&#43;"),
    ('<', "&lt;"),
    ('=', "&#61;"),
    ('>', "&gt;"),
    ('`', "&#96;"),
];

/// html.go, htmlReplacer.
pub(super) fn html_replace(s: &str, table: &[(char, &str)], bad_runes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if let Some((_, r)) = table.iter().find(|(k, _)| *k == c) {
            out.push_str(r);
        } else if !bad_runes
            && (('\u{fdd0}'..='\u{fdef}').contains(&c) || ('\u{fff0}'..='\u{ffff}').contains(&c))
        {
            let _ = write!(out, "&#x{:x};", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// html.go, htmlNameFilter: an action that writes an attribute name.
pub(super) fn html_name_filter(s: &str) -> String {
    if s.is_empty() {
        return FILTER_FAILSAFE.into();
    }
    let s = s.to_lowercase();
    if attr_type(&s) != AttrType::Plain
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    {
        return FILTER_FAILSAFE.into();
    }
    s
}

/// url.go, isSafeURL: only http, https and mailto, or no scheme.
pub(super) fn is_safe_url(s: &str) -> bool {
    match s.split_once(':') {
        Some((proto, _)) if !proto.contains('/') => {
            proto.eq_ignore_ascii_case("http")
                || proto.eq_ignore_ascii_case("https")
                || proto.eq_ignore_ascii_case("mailto")
        }
        _ => true,
    }
}

/// url.go, processURLOnto: percent-encodes what may not stand in a URL
/// (lowercase hex, as Go writes it); when normalizing, reserved characters
/// and existing escapes stay.
pub(super) fn process_url(s: &str, norm: bool) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len() + 16);
    for (i, &c) in b.iter().enumerate() {
        let keep = match c {
            b'!' | b'#' | b'$' | b'&' | b'*' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?'
            | b'@' | b'[' | b']' => norm,
            b'-' | b'.' | b'_' | b'~' => true,
            b'%' => {
                norm && i + 2 < b.len()
                    && b[i + 1].is_ascii_hexdigit()
                    && b[i + 2].is_ascii_hexdigit()
            }
            c => c.is_ascii_alphanumeric(),
        };
        if keep {
            out.push(c as char);
        } else {
            let _ = write!(out, "%{c:02x}");
        }
    }
    out
}

/// url.go, srcsetFilterAndEscaper for plain strings.
pub(super) fn srcset_escape(s: &str) -> String {
    let mut out = String::new();
    let mut written = 0;
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b',' {
            filter_srcset_element(s, written, i, &mut out);
            out.push(',');
            written = i + 1;
        }
    }
    filter_srcset_element(s, written, b.len(), &mut out);
    out
}

fn filter_srcset_element(s: &str, left: usize, right: usize, out: &mut String) {
    let b = s.as_bytes();
    let mut start = left;
    while start < right && is_html_space(b[start]) {
        start += 1;
    }
    let end = (start..right)
        .find(|&i| is_html_space(b[i]))
        .unwrap_or(right);
    let url = &s[start..end];
    if is_safe_url(url)
        && b[end..right]
            .iter()
            .all(|&c| is_html_space(c) || c.is_ascii_alphanumeric())
    {
        out.push_str(&s[left..start]);
        out.push_str(&process_url(url, true));
        out.push_str(&s[end..right]);
        return;
    }
    out.push('#');
    out.push_str(FILTER_FAILSAFE);
}

/// css.go, cssReplacementTable.
const CSS_TABLE: &[(char, &str)] = &[
    ('\0', r"\0"),
    ('\t', r"\9"),
    ('\n', r"\a"),
    ('\x0c', r"\c"),
    ('\r', r"\d"),
    ('"', r"\22"),
    ('&', r"\26"),
    ('\'', r"\27"),
    ('(', r"\28"),
    (')', r"\29"),
    ('+', r"\2b"),
    ('/', r"\2f"),
    (':', r"\3a"),
    (';', r"\3b"),
    ('<', r"\3c"),
    ('>', r"\3e"),
    ('\\', r"\\"),
    ('{', r"\7b"),
    ('}', r"\7d"),
];

/// css.go, cssEscaper: CSS and HTML specials as hex escapes, a space after
/// one where a hex digit, a space or the end follows.
pub(super) fn css_escaper(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        let Some((_, repl)) = CSS_TABLE.iter().find(|(t, _)| *t == c) else {
            out.push(c);
            continue;
        };
        out.push_str(repl);
        let next = chars.peek().map(|&(i, _)| s.as_bytes()[i]);
        if *repl != r"\\"
            && next.is_none_or(|b| b.is_ascii_hexdigit() || b"\t\n\x0c\r ".contains(&b))
        {
            out.push(' ');
        }
    }
    out
}

/// css.go, cssValueFilter: a CSS value (decoded) if it cannot break out of
/// the declaration or run script, else ZgotmplZ.
pub(super) fn css_value_filter(s: &str) -> String {
    let b = decode_css(s.as_bytes());
    let mut id = Vec::with_capacity(64);
    for (i, &c) in b.iter().enumerate() {
        match c {
            0 | b'"' | b'\'' | b'(' | b')' | b'/' | b';' | b'@' | b'[' | b'\\' | b']' | b'`'
            | b'{' | b'}' => return FILTER_FAILSAFE.to_string(),
            // No <!-- or -->: -- is in no valid identifier.
            b'-' if i != 0 && b[i - 1] == b'-' => return FILTER_FAILSAFE.to_string(),
            c if c.is_ascii() && is_css_nmchar(char::from(c)) => id.push(c.to_ascii_lowercase()),
            _ => {}
        }
    }
    let has = |kw: &[u8]| id.windows(kw.len()).any(|w| w == kw);
    if has(b"expression") || has(b"mozbinding") {
        return FILTER_FAILSAFE.to_string();
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaper_handles_control_and_special_characters() {
        assert_eq!(
            html_replace("a\0<b>&\"'+\u{fdd0}", HTML_TABLE, true),
            "a\u{FFFD}&lt;b&gt;&amp;&#34;&#39;&#43;\u{fdd0}"
        );
        assert_eq!(
            html_replace("a b=\u{fdd0}", NOSPACE_TABLE, false),
            "a&#32;b&#61;&#xfdd0;"
        );
        assert_eq!(process_url("/a b?c=d&é", true), "/a%20b?c=d&%c3%a9");
        assert_eq!(process_url("/a b?c=d", false), "%2fa%20b%3fc%3dd");
    }

    #[test]
    fn css_escapes_and_decodes_as_go() {
        assert_eq!(css_escaper("a<b>c;\\d"), r"a\3c b\3e c\3b\\d");
        assert_eq!(css_escaper("x:"), r"x\3a ");
        assert_eq!(
            String::from_utf8(decode_css(b"\\41\r\nB\\110000\\\\\\\"")).unwrap(),
            "AB\u{11000}0\\\""
        );
        assert_eq!(css_value_filter("10px"), "10px");
        assert_eq!(css_value_filter("a--b"), FILTER_FAILSAFE);
        assert_eq!(css_value_filter(r"\65 xpression"), FILTER_FAILSAFE);
    }
}
