//! html/template's contextual escaping (html/template/escape.go): which
//! escaping functions each action's output goes through, by its HTML context.
//!
//! Like Go, the escaper walks the parse tree once, tracking the HTML context
//! through text, and appends escaping functions to each action's pipeline.
//! Supported: HTML text, tags and attribute names, quoted and unquoted
//! attribute values (plain, URL, srcset), HTML comments, RCDATA (<title>,
//! <textarea>), and JavaScript in <script> and on* attributes: values,
//! strings and regexp literals (js.go, transition.go's tJS and
//! tJSDelimited), and CSS in <style> and style attributes: values,
//! strings and `url(...)` (css.go, tCSS and tCSSStr). Comments in
//! <script> and <style> text are stripped as Go strips them.

use std::collections::HashMap;

use super::context::{AttrKind, Ctx, Delim, JsCtx, St, UrlPart};
use super::error::{template_error, TemplateError};
use super::node::{Arg, Branch, Cmd, Func, Node, Pipe, MAX_DEPTH};
use super::strconv::go_quote;
use super::transition::{attr_start_state, context_after_text, EResult};

/// escape.go, nudge: the context an action in a tag really is in.
fn nudge(mut c: Ctx) -> Ctx {
    match c.state {
        St::Tag => c.state = St::AttrName,
        St::BeforeValue => {
            c.state = attr_start_state(c.attr);
            c.delim = Delim::SpaceOrTagEnd;
            c.attr = AttrKind::None;
        }
        St::AfterName => {
            c.state = St::AttrName;
            c.attr = AttrKind::None;
        }
        _ => {}
    }
    c
}

/// escape.go, join: the context after a branch.
fn join(a: Ctx, b: Ctx, pos: usize, node: &str) -> EResult<Ctx> {
    if a == b {
        return Ok(a);
    }
    let mut c = a;
    c.url_part = b.url_part;
    if c == b {
        c.url_part = UrlPart::Unknown;
        return Ok(c);
    }
    let mut c = a;
    c.js_ctx = b.js_ctx;
    if c == b {
        // Only what a `/` would mean differs: a later `/` is an error.
        c.js_ctx = JsCtx::Unknown;
        return Ok(c);
    }
    let (na, nb) = (nudge(a), nudge(b));
    if !(na == a && nb == b) {
        if let Ok(e) = join(na, nb, pos, node) {
            return Ok(e);
        }
    }
    Err((
        pos,
        format!("{{{{{node}}}}} branches end in different contexts: {a}, {b}"),
    ))
}

/// html.go/url.go: which escapers html/template's funcMap names are the
/// same as text/template's predefined ones (escape.go, equivEscapers).
fn normalize_esc(f: Func) -> Func {
    match f {
        Func::AttrEscaper | Func::HtmlEscaper | Func::RcdataEscaper => Func::Html,
        Func::UrlEscaper | Func::UrlNormalizer => Func::Urlquery,
        f => f,
    }
}

/// The escaped root list and the escaped templates, by mangled name.
pub(super) type Escaped = (Vec<Node>, HashMap<String, Vec<Node>>);

/// escape.go, escapeTemplate: the root list escaped for its HTML contexts,
/// starting in text, and the escaped copies of the templates it calls.
pub(super) fn escape_template(
    src: &str,
    root: &[Node],
    defs: &HashMap<String, Vec<Node>>,
) -> Result<Escaped, TemplateError> {
    let mut esc = Escaper {
        defs,
        output: HashMap::new(),
        derived: HashMap::new(),
        called: Vec::new(),
        depth: 0,
    };
    let err = |(pos, msg): (usize, String)| template_error(src, pos, msg);
    let (c, root) = esc.escape_list(Ctx::TEXT, root).map_err(err)?;
    if c.state != St::Text {
        return Err(template_error(
            src,
            src.len(),
            format!("ends in a non-text context: {c}"),
        ));
    }
    Ok((root, esc.derived))
}

struct Escaper<'a> {
    defs: &'a HashMap<String, Vec<Node>>,
    /// Output context of each (template, input context) escaped so far.
    output: HashMap<String, Ctx>,
    /// The escaped copies, by mangled name.
    derived: HashMap<String, Vec<Node>>,
    /// Mangled names entered, to tell recursion (escape.go, called).
    called: Vec<String>,
    /// Nesting of template calls being escaped, bounded by MAX_DEPTH.
    depth: usize,
}

impl Escaper<'_> {
    fn escape_list(&mut self, mut c: Ctx, list: &[Node]) -> EResult<(Ctx, Vec<Node>)> {
        let mut out = Vec::with_capacity(list.len());
        for n in list {
            let (c1, n1) = self.escape(c, n)?;
            c = c1;
            out.push(n1);
        }
        Ok((c, out))
    }

    fn escape(&mut self, c: Ctx, n: &Node) -> EResult<(Ctx, Node)> {
        Ok(match n {
            Node::Text { pos, text } => {
                let (c, text) = escape_text(c, *pos, text)?;
                (c, Node::Text { pos: *pos, text })
            }
            Node::Action { pos, pipe } => {
                let (c, pipe) = escape_action(c, *pos, pipe)?;
                (c, Node::Action { pos: *pos, pipe })
            }
            Node::If(b) => {
                let (c, b) = self.escape_branch(c, b, "if")?;
                (c, Node::If(b))
            }
            Node::Range(b) => {
                let (c, b) = self.escape_branch(c, b, "range")?;
                (c, Node::Range(b))
            }
            Node::With(b) => {
                let (c, b) = self.escape_branch(c, b, "with")?;
                (c, Node::With(b))
            }
            Node::Template { pos, name, pipe } => {
                let (c, dname) = self.escape_tree(c, *pos, name)?;
                (
                    c,
                    Node::Template {
                        pos: *pos,
                        name: dname,
                        pipe: pipe.clone(),
                    },
                )
            }
        })
    }

    fn escape_branch(&mut self, c: Ctx, b: &Branch, kind: &str) -> EResult<(Ctx, Branch)> {
        let (mut c0, list) = self.escape_list(c, &b.list)?;
        if kind == "range" {
            // The body can run several times: it must end where it started.
            let (c1, _) = self
                .escape_list(c0, &b.list)
                .map_err(|(p, m)| (p, format!("on range loop re-entry: {m}")))?;
            c0 = join(c0, c1, b.pos, kind)
                .map_err(|(p, m)| (p, format!("on range loop re-entry: {m}")))?;
        }
        let (c1, else_list) = match &b.else_list {
            Some(l) => {
                let (c1, l) = self.escape_list(c, l)?;
                (c1, Some(l))
            }
            None => (c, None),
        };
        let c = join(c0, c1, b.pos, kind)?;
        Ok((
            c,
            Branch {
                pos: b.pos,
                pipe: b.pipe.clone(),
                list,
                else_list,
            },
        ))
    }

    /// escape.go, escapeTree and computeOutCtx: a called template is escaped
    /// once per input context, as a copy under a mangled name.
    fn escape_tree(&mut self, c: Ctx, pos: usize, name: &str) -> EResult<(Ctx, String)> {
        // Go names the copy after the context unless that is plain text.
        let dname = if c.state == St::Text {
            name.to_string()
        } else {
            format!("{name}$htmltemplate_{c}")
        };
        self.called.push(dname.clone());
        if let Some(out) = self.output.get(&dname) {
            return Ok((*out, dname));
        }
        let Some(body) = self.defs.get(name) else {
            return Err((pos, format!("no such template {}", go_quote(name, false))));
        };
        if self.depth >= MAX_DEPTH {
            return Err((
                pos,
                format!("templates call templates more than {MAX_DEPTH} deep"),
            ));
        }
        self.depth += 1;
        let r = self.escape_body(c, pos, body, dname);
        self.depth -= 1;
        r
    }

    fn escape_body(
        &mut self,
        c: Ctx,
        pos: usize,
        body: &[Node],
        dname: String,
    ) -> EResult<(Ctx, String)> {
        // Assume the output context is the input one, so that recursive calls
        // end; if the body says otherwise, try once more with what it said.
        let mut assumed = c;
        for _ in 0..2 {
            self.output.insert(dname.clone(), assumed);
            let mark = self.called.len();
            let (c1, list) = self.escape_list(c, body)?;
            let recursive = self.called[mark..].contains(&dname);
            self.called.truncate(mark);
            if !recursive || c1 == assumed {
                self.output.insert(dname.clone(), c1);
                self.derived.insert(dname.clone(), list);
                return Ok((c1, dname));
            }
            assumed = c1;
        }
        Err((
            pos,
            format!("cannot compute output context for template {dname}"),
        ))
    }
}

/// escape.go, escapeText: rewrites text where Go does (a stray `<` in text
/// becomes `&lt;`, HTML comments go) and tracks the context through it.
fn escape_text(mut c: Ctx, pos: usize, text: &str) -> EResult<(Ctx, String)> {
    let s = text.as_bytes();
    let (mut written, mut i) = (0, 0);
    let mut b = String::new();
    while i != s.len() {
        let (c1, nread) =
            context_after_text(c, &s[i..], pos + i).map_err(|(p, m)| (p.max(pos), m))?;
        let i1 = i + nread;
        if c.state == St::Text || c.state == St::Rcdata {
            let mut end = i1;
            if c1.state != c.state {
                if let Some(j) = s[i..end].iter().rposition(|&x| x == b'<') {
                    end = i + j;
                }
            }
            for j in i..end {
                if s[j] == b'<' && !s[j..].to_ascii_uppercase().starts_with(b"<!DOCTYPE") {
                    b.push_str(&text[written..j]);
                    b.push_str("&lt;");
                    written = j + 1;
                }
            }
        } else if c.state.is_comment() && c.delim == Delim::None {
            // A block comment is whitespace, a line break if it holds one
            // (ES5 7.4).
            if c.state == St::JsBlockCmt {
                let body = &text[written..i1];
                b.push(if body.contains(['\n', '\r', '\u{2028}', '\u{2029}']) {
                    '\n'
                } else {
                    ' '
                });
            } else if c.state == St::CssBlockCmt {
                b.push(' ');
            }
            written = i1;
        }
        if c.state != c1.state && c1.state.is_comment() && c1.delim == Delim::None {
            // Keep what precedes "<!--", "/*" or "//".
            let opener = if c1.state == St::HtmlCmt { 4 } else { 2 };
            b.push_str(&text[written..i1 - opener]);
            written = i1;
        }
        c = c1;
        i = i1;
    }
    if written == 0 {
        return Ok((c, text.to_string()));
    }
    if !c.state.is_comment() || c.delim != Delim::None {
        b.push_str(&text[written..]);
    }
    Ok((c, b))
}

/// escape.go, escapeAction: the escapers an action's output goes through.
fn escape_action(c: Ctx, pos: usize, pipe: &Pipe) -> EResult<(Ctx, Pipe)> {
    if !pipe.decl.is_empty() {
        // An assignment prints nothing.
        return Ok((c, pipe.clone()));
    }
    let mut c = nudge(c);
    for (i, cmd) in pipe.cmds.iter().enumerate() {
        if let Arg::Ident(p, f @ (Func::Html | Func::Urlquery)) = cmd.args[0] {
            if i < pipe.cmds.len() - 1
                || c.state == St::Attr && c.delim == Delim::SpaceOrTagEnd && f == Func::Html
            {
                return Err((
                    p,
                    format!(
                        "predefined escaper {} disallowed in template",
                        go_quote(f.name(), false)
                    ),
                ));
            }
        }
    }
    let mut s = Vec::with_capacity(3);
    // In a CSS string the URL is escaped for CSS.
    let normalizer = if matches!(c.state, St::CssDqStr | St::CssSqStr) {
        Func::CssEscaper
    } else {
        Func::UrlNormalizer
    };
    match c.state {
        St::Url | St::CssDqStr | St::CssSqStr | St::CssDqUrl | St::CssSqUrl | St::CssUrl => {
            match c.url_part {
                UrlPart::None => s.extend([Func::UrlFilter, normalizer]),
                UrlPart::PreQuery => s.push(normalizer),
                UrlPart::QueryOrFrag => s.push(Func::UrlEscaper),
                UrlPart::Unknown => {
                    return Err((
                        pos,
                        format!("{{{{{pipe}}}}} appears in an ambiguous context within a URL"),
                    ))
                }
            }
        }
        St::Js => {
            s.push(Func::JsValEscaper);
            // A slash after a value divides.
            c.js_ctx = JsCtx::DivOp;
        }
        St::JsDqStr | St::JsSqStr => s.push(Func::JsStrEscaper),
        St::JsRegexp => s.push(Func::JsRegexpEscaper),
        St::Css => s.push(Func::CssValueFilter),
        St::Text => s.push(Func::HtmlEscaper),
        St::Rcdata => s.push(Func::RcdataEscaper),
        St::Attr => {}
        St::AttrName | St::Tag => {
            c.state = St::AttrName;
            s.push(Func::HtmlNameFilter);
        }
        St::Srcset => s.push(Func::SrcsetEscaper),
        St::HtmlCmt | St::JsBlockCmt | St::JsLineCmt | St::CssBlockCmt | St::CssLineCmt => {
            s.push(Func::CommentEscaper)
        }
        St::AfterName | St::BeforeValue => unreachable!("nudged"),
    }
    match c.delim {
        Delim::None => {}
        Delim::SpaceOrTagEnd => s.push(Func::NospaceEscaper),
        _ => s.push(Func::AttrEscaper),
    }
    Ok((c, ensure_pipeline_contains(pipe, s)))
}

/// escape.go, ensurePipelineContains: append the escapers, merging a final
/// `html` or `urlquery` the template already has with its equivalent.
fn ensure_pipeline_contains(p: &Pipe, mut s: Vec<Func>) -> Pipe {
    let mut p = p.clone();
    if s.is_empty() {
        return p;
    }
    let mut keep = p.cmds.len();
    if let Some(last) = p.cmds.last_mut() {
        if let Arg::Ident(ipos, esc @ (Func::Html | Func::Urlquery)) = last.args[0] {
            if keep == 1 && last.args.len() > 1 {
                // {{html a b}} becomes {{_eval_args_ a b | html}}.
                last.args[0] = Arg::Ident(ipos, Func::EvalArgs);
                p.cmds.push(Cmd {
                    pos: p.pos,
                    args: vec![Arg::Ident(p.pos, esc)],
                });
                keep += 1;
            }
            let mut dup = false;
            for f in s.iter_mut() {
                if normalize_esc(*f) == normalize_esc(esc) {
                    *f = esc;
                    dup = true;
                }
            }
            if dup {
                keep -= 1;
            }
        }
    }
    p.cmds.truncate(keep);
    let inserted: Vec<Func> = p
        .cmds
        .iter()
        .filter_map(|c| match c.args[0] {
            Arg::Ident(_, f) => Some(normalize_esc(f)),
            _ => None,
        })
        .collect();
    for f in s {
        if !inserted.contains(&normalize_esc(f)) {
            p.cmds.push(Cmd {
                pos: p.pos,
                args: vec![Arg::Ident(p.pos, f)],
            });
        }
    }
    p
}
