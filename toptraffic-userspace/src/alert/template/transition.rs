//! How the HTML context moves through template text:
//! html/template/transition.go, attr.go (attrType) and escape.go
//! (contextAfterText).

use super::context::{AttrKind, Ctx, Delim, Element, JsCtx, St, UrlPart};
use super::strconv::go_quote;

pub(super) type EResult<T> = Result<T, (usize, String)>;

pub(super) fn is_html_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0c | b'\r')
}

fn eat_white_space(s: &[u8], i: usize) -> usize {
    s[i..]
        .iter()
        .position(|&b| !is_html_space(b))
        .map_or(s.len(), |j| i + j)
}

/// transition.go, eatTagName.
fn eat_tag_name(s: &[u8], i: usize) -> (usize, Element) {
    if i == s.len() || !s[i].is_ascii_alphabetic() {
        return (i, Element::None);
    }
    let mut j = i + 1;
    while j < s.len() {
        let x = s[j];
        if x.is_ascii_alphanumeric() {
            j += 1;
            continue;
        }
        // Allow "x-y" or "x:y" but not "x-", "-y", or "x--y".
        if (x == b':' || x == b'-') && j + 1 < s.len() && s[j + 1].is_ascii_alphanumeric() {
            j += 2;
            continue;
        }
        break;
    }
    let e = match s[i..j].to_ascii_lowercase().as_slice() {
        b"script" => Element::Script,
        b"style" => Element::Style,
        b"textarea" => Element::Textarea,
        b"title" => Element::Title,
        _ => Element::None,
    };
    (j, e)
}

/// transition.go, eatAttrName.
fn eat_attr_name(s: &[u8], i: usize) -> EResult<usize> {
    for j in i..s.len() {
        match s[j] {
            b' ' | b'\t' | b'\n' | 0x0c | b'\r' | b'=' | b'>' => return Ok(j),
            b'\'' | b'"' | b'<' => {
                let what = String::from_utf8_lossy(&s[j..j + 1]).into_owned();
                let all: String = String::from_utf8_lossy(s).chars().take(32).collect();
                return Err((
                    0,
                    format!(
                        "{} in attribute name: {}",
                        go_quote(&what, false),
                        go_quote(&all, false)
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(s.len())
}

/// The content type of an attribute's value (attr.go, attrType), reduced to
/// what the escaper distinguishes.
#[derive(PartialEq, Eq)]
pub(super) enum AttrType {
    Plain,
    Unsafe,
    Url,
    Css,
    Js,
    Srcset,
    Html,
}

pub(super) fn attr_type(name: &str) -> AttrType {
    let name = if let Some(rest) = name.strip_prefix("data-") {
        rest
    } else if let Some((prefix, short)) = name.split_once(':') {
        if prefix == "xmlns" {
            return AttrType::Url;
        }
        short
    } else {
        name
    };
    use AttrType::*;
    match name {
        "accept" | "alt" | "autocomplete" | "autofocus" | "autoplay" | "border" | "checked"
        | "class" | "cols" | "colspan" | "contenteditable" | "contextmenu" | "controls"
        | "coords" | "datetime" | "default" | "dir" | "dirname" | "disabled" | "draggable"
        | "dropzone" | "for" | "formtarget" | "headers" | "height" | "hidden" | "high"
        | "hreflang" | "id" | "ismap" | "kind" | "label" | "lang" | "list" | "loop" | "low"
        | "max" | "maxlength" | "media" | "mediagroup" | "min" | "multiple" | "name" | "open"
        | "optimum" | "placeholder" | "preload" | "pubdate" | "radiogroup" | "readonly"
        | "required" | "reversed" | "rows" | "rowspan" | "spellcheck" | "scope" | "scoped"
        | "seamless" | "selected" | "shape" | "size" | "sizes" | "span" | "srclang" | "start"
        | "step" | "tabindex" | "target" | "title" | "width" | "wrap" => Plain,
        "accept-charset" | "async" | "challenge" | "charset" | "content" | "crossorigin"
        | "defer" | "enctype" | "form" | "formenctype" | "formmethod" | "formnovalidate"
        | "http-equiv" | "keytype" | "language" | "method" | "novalidate" | "pattern" | "rel"
        | "sandbox" | "type" | "value" => Unsafe,
        "action" | "archive" | "background" | "cite" | "classid" | "codebase" | "data"
        | "formaction" | "href" | "icon" | "longdesc" | "manifest" | "poster" | "profile"
        | "src" | "usemap" | "xmlns" => Url,
        "srcdoc" => Html,
        "srcset" => Srcset,
        "style" => Css,
        _ if name.starts_with("on") => Js,
        _ if name.contains("src") || name.contains("uri") || name.contains("url") => Url,
        _ => Plain,
    }
}

fn t_text(c: Ctx, s: &[u8]) -> (Ctx, usize) {
    let mut k = 0;
    loop {
        let Some(off) = s[k..].iter().position(|&b| b == b'<') else {
            return (c, s.len());
        };
        let mut i = k + off;
        if i + 1 == s.len() {
            return (c, s.len());
        }
        if s[i..].starts_with(b"<!--") {
            return (Ctx::with_state(St::HtmlCmt, Element::None), i + 4);
        }
        i += 1;
        let mut end = false;
        if s[i] == b'/' {
            if i + 1 == s.len() {
                return (c, s.len());
            }
            end = true;
            i += 1;
        }
        let (j, e) = eat_tag_name(s, i);
        if j != i {
            let e = if end { Element::None } else { e };
            return (Ctx::with_state(St::Tag, e), j);
        }
        k = j;
    }
}

fn t_tag(c: Ctx, s: &[u8]) -> EResult<(Ctx, usize)> {
    let i = eat_white_space(s, 0);
    if i == s.len() {
        return Ok((c, s.len()));
    }
    if s[i] == b'>' {
        let state = match c.element {
            Element::None => St::Text,
            Element::Script => St::Js,
            Element::Style => St::Css,
            Element::Textarea | Element::Title => St::Rcdata,
        };
        return Ok((Ctx::with_state(state, c.element), i + 1));
    }
    let j = eat_attr_name(s, i)?;
    if i == j {
        let rest = String::from_utf8_lossy(&s[i..]).into_owned();
        return Err((
            0,
            format!(
                "expected space, attr name, or end of tag, but got {}",
                go_quote(&rest, false)
            ),
        ));
    }
    let name = String::from_utf8_lossy(&s[i..j]).to_lowercase();
    let attr = if c.element == Element::Script && name == "type" {
        AttrKind::ScriptType
    } else {
        match attr_type(&name) {
            AttrType::Url => AttrKind::Url,
            AttrType::Css => AttrKind::Style,
            AttrType::Js => AttrKind::Script,
            AttrType::Srcset => AttrKind::Srcset,
            _ => AttrKind::None,
        }
    };
    let state = if j == s.len() {
        St::AttrName
    } else {
        St::AfterName
    };
    Ok((
        Ctx {
            state,
            element: c.element,
            attr,
            ..Ctx::TEXT
        },
        j,
    ))
}

pub(super) fn attr_start_state(a: AttrKind) -> St {
    match a {
        AttrKind::None | AttrKind::ScriptType => St::Attr,
        AttrKind::Script => St::Js,
        AttrKind::Style => St::Css,
        AttrKind::Url => St::Url,
        AttrKind::Srcset => St::Srcset,
    }
}

/// transitionFunc: one step of the context through template text.
fn transition(mut c: Ctx, s: &[u8], pos: usize) -> EResult<(Ctx, usize)> {
    Ok(match c.state {
        St::Text => t_text(c, s),
        St::Tag => t_tag(c, s).map_err(|(_, m)| (pos, m))?,
        St::AttrName => {
            let i = eat_attr_name(s, 0).map_err(|(_, m)| (pos, m))?;
            if i != s.len() {
                c.state = St::AfterName;
            }
            (c, i)
        }
        St::AfterName => {
            let i = eat_white_space(s, 0);
            if i == s.len() {
                (c, s.len())
            } else if s[i] != b'=' {
                // A tag end or a valueless attribute.
                c.state = St::Tag;
                (c, i)
            } else {
                c.state = St::BeforeValue;
                (c, i + 1)
            }
        }
        St::BeforeValue => {
            let mut i = eat_white_space(s, 0);
            if i == s.len() {
                return Ok((c, s.len()));
            }
            let mut delim = Delim::SpaceOrTagEnd;
            match s[i] {
                b'\'' => (delim, i) = (Delim::SingleQuote, i + 1),
                b'"' => (delim, i) = (Delim::DoubleQuote, i + 1),
                _ => {}
            }
            c.state = attr_start_state(c.attr);
            c.delim = delim;
            (c, i)
        }
        St::HtmlCmt => match find(s, b"-->") {
            Some(i) => (Ctx::TEXT, i + 3),
            None => (c, s.len()),
        },
        // tSpecialTagEnd already cut the text at the end tag.
        St::Rcdata => (c, s.len()),
        St::Attr => (c, s.len()),
        St::Url | St::Srcset => (t_url(c, s), s.len()),
        St::Js => t_js(c, s, pos)?,
        St::JsDqStr | St::JsSqStr | St::JsRegexp => {
            t_js_delimited(c, s).map_err(|(_, m)| (pos, m))?
        }
        // tBlockCmt: up to and past `*/`.
        St::JsBlockCmt | St::CssBlockCmt => match find(s, b"*/") {
            Some(i) => {
                c.state = if c.state == St::JsBlockCmt {
                    St::Js
                } else {
                    St::Css
                };
                (c, i + 2)
            }
            None => (c, s.len()),
        },
        // tLineCmt: up to the line terminator, which is code again.
        St::JsLineCmt | St::CssLineCmt => {
            let text = String::from_utf8_lossy(s);
            let (ends, state): (&[char], St) = if c.state == St::JsLineCmt {
                (&['\n', '\r', '\u{2028}', '\u{2029}'], St::Js)
            } else {
                (&['\n', '\x0c', '\r'], St::Css)
            };
            match text.find(ends) {
                Some(i) => (Ctx { state, ..c }, i),
                None => (c, s.len()),
            }
        }
        St::Css => t_css(c, s),
        St::CssDqStr | St::CssSqStr | St::CssDqUrl | St::CssSqUrl | St::CssUrl => {
            t_css_str(c, s).map_err(|(_, m)| (pos, m))?
        }
    })
}

/// transition.go, tURL: a `#` or `?` starts the query or fragment,
/// anything else not space the part before.
fn t_url(mut c: Ctx, s: &[u8]) -> Ctx {
    if s.iter().any(|&b| b == b'#' || b == b'?') {
        c.url_part = UrlPart::QueryOrFrag;
    } else if s.len() != eat_white_space(s, 0) && c.url_part == UrlPart::None {
        c.url_part = UrlPart::PreQuery;
    }
    c
}

/// transition.go, tCSS: CSS up to a string, a `url(` or a comment.
fn t_css(mut c: Ctx, s: &[u8]) -> (Ctx, usize) {
    const WS: &[u8] = b"\t\n\x0c\r ";
    let mut k = 0;
    while let Some(j) = s[k..].iter().position(|b| b"(\"'/".contains(b)) {
        let i = k + j;
        match s[i] {
            b'(' => {
                let p = &s[..s[..i]
                    .iter()
                    .rposition(|b| !WS.contains(b))
                    .map_or(0, |p| p + 1)];
                if ends_with_css_keyword(p, b"url") {
                    let mut j = i + 1 + s[i + 1..].iter().take_while(|b| WS.contains(b)).count();
                    c.state = match s.get(j) {
                        Some(b'"') => {
                            j += 1;
                            St::CssDqUrl
                        }
                        Some(b'\'') => {
                            j += 1;
                            St::CssSqUrl
                        }
                        _ => St::CssUrl,
                    };
                    return (c, j);
                }
            }
            b'/' => match s.get(i + 1) {
                Some(b'/') => {
                    c.state = St::CssLineCmt;
                    return (c, i + 2);
                }
                Some(b'*') => {
                    c.state = St::CssBlockCmt;
                    return (c, i + 2);
                }
                _ => {}
            },
            b'"' => {
                c.state = St::CssDqStr;
                return (c, i + 1);
            }
            _ => {
                c.state = St::CssSqStr;
                return (c, i + 1);
            }
        }
        k = i + 1;
    }
    (c, s.len())
}

/// css.go, endsWithCSSKeyword: `b` ends with the identifier `kw`, any case.
fn ends_with_css_keyword(b: &[u8], kw: &[u8]) -> bool {
    let Some(i) = b.len().checked_sub(kw.len()) else {
        return false;
    };
    if i != 0 {
        let before = String::from_utf8_lossy(&b[..i]);
        if before.chars().next_back().is_some_and(is_css_nmchar) {
            return false;
        }
    }
    b[i..].eq_ignore_ascii_case(kw)
}

/// css.go, isCSSNmchar.
pub(super) fn is_css_nmchar(r: char) -> bool {
    let r = r as u32;
    matches!(r, 0x61..=0x7a | 0x41..=0x5a | 0x30..=0x39 | 0x2d | 0x5f | 0x80..=0xd7ff | 0xe000..=0xfffd | 0x10000..=0x10ffff)
}

/// transition.go, tCSSStr: inside a CSS string or `url(...)`, tracking the
/// URL part through its decoded text up to the closing delimiter.
fn t_css_str(mut c: Ctx, s: &[u8]) -> EResult<(Ctx, usize)> {
    let ends: &[u8] = match c.state {
        St::CssDqStr | St::CssDqUrl => b"\\\"",
        St::CssSqStr | St::CssSqUrl => b"\\'",
        _ => b"\\\t\n\x0c\r )",
    };
    let mut k = 0;
    loop {
        let Some(j) = s[k..].iter().position(|b| ends.contains(b)) else {
            let c = t_url(c, &decode_css(&s[k..]));
            return Ok((c, s.len()));
        };
        let mut i = k + j;
        if s[i] == b'\\' {
            i += 1;
            if i == s.len() {
                let q = go_quote(&String::from_utf8_lossy(s), false);
                return Err((0, format!("unfinished escape sequence in CSS string: {q}")));
            }
        } else {
            c.state = St::Css;
            return Ok((c, i + 1));
        }
        c = t_url(c, &decode_css(&s[..=i]));
        k = i + 1;
    }
}

/// css.go, decodeCSS: CSS escapes (`\\` and a character, or one to six hex
/// digits and an optional space) decoded.
pub(super) fn decode_css(s: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(s.len());
    let mut s = s;
    while !s.is_empty() {
        let i = s.iter().position(|&x| x == b'\\').unwrap_or(s.len());
        b.extend_from_slice(&s[..i]);
        s = &s[i..];
        if s.len() < 2 {
            break;
        }
        if s[1].is_ascii_hexdigit() {
            let mut j = 2;
            while j < s.len() && j < 7 && s[j].is_ascii_hexdigit() {
                j += 1;
            }
            let mut r = s[1..j].iter().fold(0u32, |n, &d| {
                n << 4 | char::from(d).to_digit(16).unwrap_or(0)
            });
            if r > 0x10FFFF {
                r /= 16;
                j -= 1;
            }
            // utf8.EncodeRune writes U+FFFD for a surrogate.
            let ch = char::from_u32(r).unwrap_or('\u{FFFD}');
            b.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            s = skip_css_space(&s[j..]);
        } else {
            // The escaped rune, by its UTF-8 lead byte.
            let n = match s[1] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            }
            .min(s.len() - 1);
            b.extend_from_slice(&s[1..1 + n]);
            s = &s[1 + n..];
        }
    }
    b
}

/// css.go, skipCSSSpace: one CSS whitespace, CRLF counting as one.
fn skip_css_space(c: &[u8]) -> &[u8] {
    match c {
        [b'\r', b'\n', rest @ ..] => rest,
        [b'\t' | b'\n' | b'\x0c' | b' ' | b'\r', rest @ ..] => rest,
        _ => c,
    }
}

/// transition.go, tJS: JavaScript outside strings, up to the next quote
/// or slash, keeping track of what a slash would mean.
fn t_js(mut c: Ctx, s: &[u8], pos: usize) -> EResult<(Ctx, usize)> {
    let Some(i) = s.iter().position(|b| b"\"'/".contains(b)) else {
        c.js_ctx = next_js_ctx(s, c.js_ctx);
        return Ok((c, s.len()));
    };
    c.js_ctx = next_js_ctx(&s[..i], c.js_ctx);
    match s[i] {
        b'"' => (c.state, c.js_ctx) = (St::JsDqStr, JsCtx::Regexp),
        b'\'' => (c.state, c.js_ctx) = (St::JsSqStr, JsCtx::Regexp),
        _ => match (s.get(i + 1), c.js_ctx) {
            (Some(b'/'), _) => {
                c.state = St::JsLineCmt;
                return Ok((c, i + 2));
            }
            (Some(b'*'), _) => {
                c.state = St::JsBlockCmt;
                return Ok((c, i + 2));
            }
            (_, JsCtx::Regexp) => c.state = St::JsRegexp,
            (_, JsCtx::DivOp) => c.js_ctx = JsCtx::Regexp,
            (_, JsCtx::Unknown) => {
                let rest = String::from_utf8_lossy(&s[i..]);
                return Err((
                    pos,
                    format!(
                        "'/' could start a division or regexp: {}",
                        go_quote_prec(&rest, 32)
                    ),
                ));
            }
        },
    }
    Ok((c, i + 1))
}

/// transition.go, tJSDelimited: inside a JS string or regexp literal, up to
/// its unescaped end (a regexp's `/` does not end it inside `[...]`).
fn t_js_delimited(mut c: Ctx, s: &[u8]) -> EResult<(Ctx, usize)> {
    let specials: &[u8] = match c.state {
        St::JsSqStr => b"\\'",
        St::JsRegexp => b"\\/[]",
        _ => b"\\\"",
    };
    let (mut k, mut in_charset) = (0, false);
    while let Some(j) = s[k..].iter().position(|b| specials.contains(b)) {
        let mut i = k + j;
        match s[i] {
            b'\\' => {
                i += 1;
                if i == s.len() {
                    let q = go_quote(&String::from_utf8_lossy(s), false);
                    return Err((0, format!("unfinished escape sequence in JS string: {q}")));
                }
            }
            b'[' => in_charset = true,
            b']' => in_charset = false,
            _ if !in_charset => {
                c.state = St::Js;
                c.js_ctx = JsCtx::DivOp;
                return Ok((c, i + 1));
            }
            _ => {}
        }
        k = i + 1;
    }
    if in_charset {
        let q = go_quote(&String::from_utf8_lossy(s), false);
        return Err((0, format!("unfinished JS regexp charset: {q}")));
    }
    Ok((c, s.len()))
}

/// js.go, nextJSCtx: whether a `/` after `s` would start a regexp or a
/// division, by the last token of `s`.
fn next_js_ctx(s: &[u8], preceding: JsCtx) -> JsCtx {
    // bytes.TrimRight with "\t\n\f\r \u2028\u2029".
    let mut s = s;
    loop {
        if let Some((&last, rest)) = s.split_last() {
            if b"\t\n\x0c\r ".contains(&last) {
                s = rest;
                continue;
            }
        }
        if s.ends_with("\u{2028}".as_bytes()) || s.ends_with("\u{2029}".as_bytes()) {
            s = &s[..s.len() - 3];
            continue;
        }
        break;
    }
    let Some(&c) = s.last() else {
        return preceding;
    };
    let n = s.len();
    match c {
        b'+' | b'-' => {
            // "++" and "--" end operands; an odd run ends with a + or -.
            let run = s.iter().rev().take_while(|&&b| b == c).count();
            if run % 2 == 1 {
                JsCtx::Regexp
            } else {
                JsCtx::DivOp
            }
        }
        // "42." is a number.
        b'.' if n != 1 && s[n - 2].is_ascii_digit() => JsCtx::DivOp,
        b'.' => JsCtx::Regexp,
        b',' | b'<' | b'>' | b'=' | b'*' | b'%' | b'&' | b'|' | b'^' | b'?' | b'!' | b'~'
        | b'(' | b'[' | b':' | b';' | b'{' | b'}' => JsCtx::Regexp,
        _ => {
            let j = s
                .iter()
                .rposition(|&b| !is_js_ident_part(b))
                .map_or(0, |j| j + 1);
            match &s[j..] {
                b"break" | b"case" | b"continue" | b"delete" | b"do" | b"else" | b"finally"
                | b"in" | b"instanceof" | b"return" | b"throw" | b"try" | b"typeof" | b"void" => {
                    JsCtx::Regexp
                }
                _ => JsCtx::DivOp,
            }
        }
    }
}

/// js.go, isJSIdentPart: ASCII letters, digits, `$` and `_`.
pub(super) fn is_js_ident_part(b: u8) -> bool {
    b == b'$' || b == b'_' || b.is_ascii_alphanumeric()
}

/// fmt's `%.32q`: the string cut to 32 runes, then quoted.
fn go_quote_prec(s: &str, n: usize) -> String {
    let cut = s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i]);
    go_quote(cut, false)
}

fn find(s: &[u8], pat: &[u8]) -> Option<usize> {
    s.windows(pat.len()).position(|w| w == pat)
}

/// transition.go, indexTagEnd: `</tag` followed by a separator, any case.
fn index_tag_end(s: &[u8], tag: &[u8]) -> Option<usize> {
    let mut res = 0;
    let mut s = s;
    while !s.is_empty() {
        let i = find(s, b"</")?;
        s = &s[i + 2..];
        if tag.len() <= s.len() && s[..tag.len()].eq_ignore_ascii_case(tag) {
            s = &s[tag.len()..];
            if !s.is_empty() && b"> \t\n\x0c/".contains(&s[0]) {
                return Some(res + i);
            }
            res += tag.len();
        }
        res += i + 2;
    }
    None
}

/// js.go, isJSType: a <script type> whose content is not JavaScript.
fn is_js_type(mime: &str) -> bool {
    let mime = mime.to_lowercase();
    let mime = mime.split(';').next().unwrap_or_default().trim();
    matches!(
        mime,
        "application/ecmascript"
            | "application/javascript"
            | "application/json"
            | "application/ld+json"
            | "application/x-ecmascript"
            | "application/x-javascript"
            | "module"
            | "text/ecmascript"
            | "text/javascript"
            | "text/javascript1.0"
            | "text/javascript1.1"
            | "text/javascript1.2"
            | "text/javascript1.3"
            | "text/javascript1.4"
            | "text/javascript1.5"
            | "text/jscript"
            | "text/livescript"
            | "text/x-ecmascript"
            | "text/x-javascript"
    )
}

/// escape.go, contextAfterText.
pub(super) fn context_after_text(c: Ctx, s: &[u8], pos: usize) -> EResult<(Ctx, usize)> {
    if c.delim == Delim::None {
        let tag: &[u8] = match c.element {
            Element::None => b"",
            Element::Script => b"script",
            Element::Style => b"style",
            Element::Textarea => b"textarea",
            Element::Title => b"title",
        };
        let mut i = s.len();
        if c.element != Element::None {
            if let Some(j) = index_tag_end(s, tag) {
                if j == 0 {
                    return Ok((Ctx::TEXT, 0));
                }
                i = j;
            }
        }
        return transition(c, &s[..i], pos);
    }
    let ends: &[u8] = match c.delim {
        Delim::DoubleQuote => b"\"",
        Delim::SingleQuote => b"'",
        _ => b" \t\n\x0c\r>",
    };
    let i = s.iter().position(|b| ends.contains(b)).unwrap_or(s.len());
    if c.delim == Delim::SpaceOrTagEnd {
        if let Some(j) = s[..i].iter().position(|b| b"\"'<=`".contains(b)) {
            let what = String::from_utf8_lossy(&s[j..j + 1]).into_owned();
            let val = String::from_utf8_lossy(&s[..i]).into_owned();
            return Err((
                pos,
                format!(
                    "{} in unquoted attr: {}",
                    go_quote(&what, false),
                    go_quote(&val, false)
                ),
            ));
        }
    }
    if i == s.len() {
        // The value goes on past this text: track its content, decoded.
        let u = html_unescape(&String::from_utf8_lossy(s));
        let mut u = u.as_bytes();
        let mut c = c;
        while !u.is_empty() {
            let (c1, n) = transition(c, u, pos)?;
            c = c1;
            u = &u[n..];
        }
        return Ok((c, s.len()));
    }
    let mut element = c.element;
    if c.state == St::Attr
        && c.element == Element::Script
        && c.attr == AttrKind::ScriptType
        && !is_js_type(&String::from_utf8_lossy(&s[..i]))
    {
        element = Element::None;
    }
    let consumed = if c.delim != Delim::SpaceOrTagEnd {
        i + 1
    } else {
        i
    };
    // Leaving the attribute keeps only the element.
    Ok((Ctx::with_state(St::Tag, element), consumed))
}

/// html.UnescapeString for what can change a URL's context: numeric
/// references and the common named ones.
fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = if let Some(num) = name.strip_prefix('#') {
                let v = match num.strip_prefix(['x', 'X']) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => num.parse().ok(),
                };
                v.and_then(char::from_u32)
            } else {
                match name {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "nbsp" => Some('\u{a0}'),
                    _ => None,
                }
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, n)) => {
                out.push(c);
                rest = &rest[n..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
