//! The template parser: text/template/parse/parse.go (Go 1.13), with its
//! literals (parse.go newNumber, strconv.ParseInt, strconv.Unquote).

use super::error::{template_error, TemplateError};
use super::lexer::{lex, Tk, Token};
use super::node::{Arg, Branch, Cmd, Func, Node, Pipe, MAX_DEPTH};
use super::strconv::go_quote;
use super::value::Value;

/// The root list and the named templates.
pub(super) type Parsed = (Vec<Node>, Vec<(String, Vec<Node>)>);

pub(super) fn parse_tree(src: &str, html: bool) -> Result<Parsed, TemplateError> {
    let toks = lex(src);
    let mut defs = Vec::new();
    let mut p = Parser {
        toks: &toks,
        i: 0,
        html,
        vars: vec!["$".into()],
        defs: &mut defs,
        depth: 0,
    };
    let root = p
        .parse_root()
        .map_err(|PErr(pos, msg)| template_error(src, pos, msg))?;
    Ok((root, defs))
}

/// A parse error, located at a byte offset.
struct PErr(usize, String);

type PResult<T> = Result<T, PErr>;

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
    html: bool,
    vars: Vec<String>,
    /// Templates named by `define` and `block`.
    defs: &'a mut Vec<(String, Vec<Node>)>,
    /// Nesting of blocks and parentheses, bounded by MAX_DEPTH.
    depth: usize,
}

enum Item {
    Node(Node),
    End(usize),
    Else(usize),
}

impl Parser<'_> {
    fn next(&mut self) -> Token {
        let t = self.toks[self.i.min(self.toks.len() - 1)].clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn backup(&mut self) {
        self.i -= 1;
    }

    fn peek(&mut self) -> Token {
        let t = self.next();
        self.backup();
        t
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let t = self.next();
            if t.kind != Tk::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> PResult<T> {
        Err(PErr(pos, msg.into()))
    }

    fn unexpected<T>(&self, t: &Token, context: &str) -> PResult<T> {
        if t.kind == Tk::Error {
            return self.err(t.pos, t.val.clone());
        }
        self.err(t.pos, format!("unexpected {t} in {context}"))
    }

    fn expect(&mut self, kind: Tk, context: &str) -> PResult<Token> {
        let t = self.next_non_space();
        if t.kind != kind {
            return self.unexpected(&t, context);
        }
        Ok(t)
    }

    /// parse.go, parse: the top level, where `define` may appear.
    fn parse_root(&mut self) -> PResult<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek().kind != Tk::Eof {
            if self.peek().kind == Tk::LeftDelim {
                let mark = self.i;
                self.next();
                if self.next_non_space().kind == Tk::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.i = mark;
            }
            match self.text_or_action()? {
                Item::Node(n) => root.push(n),
                Item::End(pos) => return self.err(pos, "unexpected {{end}}"),
                Item::Else(pos) => return self.err(pos, "unexpected {{else}}"),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> PResult<()> {
        const CONTEXT: &str = "define clause";
        let t = self.next_non_space();
        if t.kind != Tk::String && t.kind != Tk::RawString {
            return self.unexpected(&t, CONTEXT);
        }
        let name = unquote(&t.val).map_err(|e| PErr(t.pos, e))?;
        self.expect(Tk::RightDelim, CONTEXT)?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let (list, end) = self.item_list()?;
        self.vars = saved;
        if let Item::Else(pos) = end {
            return self.err(pos, format!("unexpected {{{{else}}}} in {CONTEXT}"));
        }
        self.add_def(t.pos, name, list)
    }

    /// parse.go, Tree.add: a redefinition is an error unless one is empty.
    fn add_def(&mut self, pos: usize, name: String, list: Vec<Node>) -> PResult<()> {
        let empty = |l: &[Node]| {
            l.iter()
                .all(|n| matches!(n, Node::Text { text, .. } if text.trim().is_empty()))
        };
        match self.defs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, old)) if empty(old) => *old = list,
            Some(_) if !empty(&list) => {
                return self.err(
                    pos,
                    format!(
                        "template: multiple definition of template {}",
                        go_quote(&name, false)
                    ),
                )
            }
            Some(_) => {}
            None => self.defs.push((name, list)),
        }
        Ok(())
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Item)> {
        let mut list = Vec::new();
        while self.peek_non_space().kind != Tk::Eof {
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                end => return Ok((list, end)),
            }
        }
        let t = self.peek_non_space();
        self.err(t.pos, "unexpected EOF")
    }

    fn text_or_action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.kind {
            Tk::Text => Ok(Item::Node(Node::Text {
                pos: t.pos,
                text: t.val,
            })),
            Tk::LeftDelim => self.action(),
            _ => self.unexpected(&t, "input"),
        }
    }

    fn action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.kind {
            Tk::Block => return self.block_control(),
            Tk::Else => return self.else_control(t.pos),
            Tk::End => {
                self.expect(Tk::RightDelim, "end")?;
                return Ok(Item::End(t.pos));
            }
            Tk::If => return self.branch(true, "if").map(|b| Item::Node(Node::If(b))),
            Tk::Range => {
                return self
                    .branch(false, "range")
                    .map(|b| Item::Node(Node::Range(b)))
            }
            Tk::Template => return self.template_control(),
            Tk::With => {
                return self
                    .branch(false, "with")
                    .map(|b| Item::Node(Node::With(b)))
            }
            _ => {}
        }
        self.backup();
        let pos = self.peek().pos;
        // Variables declared here persist until the enclosing {{end}}.
        let pipe = self.pipeline("command")?;
        Ok(Item::Node(Node::Action { pos, pipe }))
    }

    fn enter(&mut self, pos: usize) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(
                pos,
                format!("template nested too deeply (more than {MAX_DEPTH} levels)"),
            );
        }
        Ok(())
    }

    /// parse.go, parseControl.
    fn branch(&mut self, allow_else_if: bool, context: &str) -> PResult<Branch> {
        let pos = self.peek().pos;
        self.enter(pos)?;
        let b = self.branch_inner(allow_else_if, context);
        self.depth -= 1;
        b
    }

    fn branch_inner(&mut self, allow_else_if: bool, context: &str) -> PResult<Branch> {
        let nvars = self.vars.len();
        let pipe = self.pipeline(context)?;
        let (list, next) = self.item_list()?;
        let mut else_list = None;
        if let Item::Else(_) = next {
            if allow_else_if && self.peek().kind == Tk::If {
                // {{else if b}} is {{else}}{{if b}}...{{end}}{{end}} with one {{end}}.
                self.next();
                else_list = Some(vec![Node::If(self.branch(true, "if")?)]);
            } else {
                let (list, next) = self.item_list()?;
                match next {
                    Item::End(_) => {}
                    Item::Else(p) => return self.err(p, "expected end; found {{else}}"),
                    Item::Node(_) => unreachable!("item_list returns at an end or else"),
                }
                else_list = Some(list);
            }
        }
        self.vars.truncate(nvars);
        Ok(Branch {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    fn else_control(&mut self, pos: usize) -> PResult<Item> {
        if self.peek_non_space().kind == Tk::If {
            // {{else if ...: leave the "if" for the enclosing branch.
            return Ok(Item::Else(pos));
        }
        self.expect(Tk::RightDelim, "else")?;
        Ok(Item::Else(pos))
    }

    fn template_name(&mut self, t: &Token, context: &str) -> PResult<String> {
        match t.kind {
            Tk::String | Tk::RawString => unquote(&t.val).map_err(|e| PErr(t.pos, e)),
            _ => self.unexpected(t, context),
        }
    }

    fn template_control(&mut self) -> PResult<Item> {
        const CONTEXT: &str = "template clause";
        let t = self.next_non_space();
        let name = self.template_name(&t, CONTEXT)?;
        let mut pipe = None;
        if self.next_non_space().kind != Tk::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(CONTEXT)?);
        }
        Ok(Item::Node(Node::Template {
            pos: t.pos,
            name,
            pipe,
        }))
    }

    fn block_control(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        self.enter(t.pos)?;
        let r = self.block_inner(t);
        self.depth -= 1;
        r
    }

    fn block_inner(&mut self, t: Token) -> PResult<Item> {
        const CONTEXT: &str = "block clause";
        let name = self.template_name(&t, CONTEXT)?;
        let pipe = self.pipeline(CONTEXT)?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let (list, end) = self.item_list()?;
        self.vars = saved;
        if let Item::Else(pos) = end {
            return self.err(pos, format!("unexpected {{{{else}}}} in {CONTEXT}"));
        }
        self.add_def(t.pos, name.clone(), list)?;
        Ok(Item::Node(Node::Template {
            pos: t.pos,
            name,
            pipe: Some(pipe),
        }))
    }

    fn pipeline(&mut self, context: &str) -> PResult<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations or an assignment?
        loop {
            let v = self.peek_non_space();
            if v.kind != Tk::Variable {
                break;
            }
            let mark = self.i;
            self.next();
            let next = self.peek_non_space();
            match next.kind {
                Tk::Assign | Tk::Declare => {
                    pipe.is_assign = next.kind == Tk::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                }
                Tk::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        let p = self.peek_non_space();
                        if matches!(p.kind, Tk::Variable | Tk::RightDelim | Tk::RightParen) {
                            continue;
                        }
                        return self.err(p.pos, "range can only initialize variables");
                    }
                    return self.err(next.pos, format!("too many declarations in {context}"));
                }
                _ => self.i = mark,
            }
            break;
        }
        loop {
            let t = self.next_non_space();
            match t.kind {
                Tk::RightDelim | Tk::RightParen => {
                    self.check_pipeline(&pipe, context, t.pos)?;
                    if t.kind == Tk::RightParen {
                        self.backup();
                    }
                    return Ok(pipe);
                }
                Tk::Bool
                | Tk::CharConst
                | Tk::Complex
                | Tk::Dot
                | Tk::Field
                | Tk::Identifier
                | Tk::Number
                | Tk::Nil
                | Tk::RawString
                | Tk::String
                | Tk::Variable
                | Tk::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return self.unexpected(&t, context),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str, pos: usize) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return self.err(pos, format!("missing value for {context}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool(..) | Arg::Dot(_) | Arg::Nil(_) | Arg::Number(..) | Arg::Str(..)
            ) {
                return self.err(
                    c.pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                );
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Cmd> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Cmd {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(a) = self.operand()? {
                cmd.args.push(a);
            }
            let t = self.next();
            match t.kind {
                Tk::Space => continue,
                Tk::Error => return self.err(t.pos, t.val),
                Tk::RightDelim | Tk::RightParen => self.backup(),
                Tk::Pipe => {}
                _ => return self.err(t.pos, format!("unexpected {t} in operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return self.err(pos, "empty command");
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Tk::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().kind == Tk::Field {
            fields.push(self.next().val[1..].to_string());
        }
        // As Go does: more fields on a field or variable extend it, a literal
        // cannot have fields, anything else becomes a chain.
        Ok(Some(match node {
            Arg::Field(p, mut idents) => {
                idents.extend(fields);
                Arg::Field(p, idents)
            }
            Arg::Variable(p, mut idents) => {
                idents.extend(fields);
                Arg::Variable(p, idents)
            }
            Arg::Bool(..) | Arg::Str(..) | Arg::Number(..) | Arg::Nil(_) | Arg::Dot(_) => {
                return self.err(
                    pos,
                    format!(
                        "unexpected . after term {}",
                        go_quote(&node.to_string(), false)
                    ),
                )
            }
            node => Arg::Chain(pos, Box::new(node), fields),
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        Ok(Some(match t.kind {
            Tk::Error => return self.err(t.pos, t.val),
            Tk::Identifier => match Func::lookup(&t.val, self.html) {
                Some(f) => Arg::Ident(t.pos, f),
                None => {
                    return self.err(
                        t.pos,
                        format!("function {} not defined", go_quote(&t.val, false)),
                    )
                }
            },
            Tk::Dot => Arg::Dot(t.pos),
            Tk::Nil => Arg::Nil(t.pos),
            Tk::Variable => {
                let name = t.val.split('.').next().unwrap_or_default();
                if !self.vars.iter().any(|v| v == name) {
                    return self.err(
                        t.pos,
                        format!("undefined variable {}", go_quote(name, false)),
                    );
                }
                Arg::Variable(t.pos, vec![t.val])
            }
            Tk::Field => Arg::Field(t.pos, vec![t.val[1..].to_string()]),
            Tk::Bool => Arg::Bool(t.pos, t.val == "true"),
            Tk::CharConst | Tk::Number | Tk::Complex => {
                let v = number(&t).map_err(|e| PErr(t.pos, e))?;
                Arg::Number(t.pos, t.val, v)
            }
            Tk::LeftParen => {
                self.enter(t.pos)?;
                let pipe = self.pipeline("parenthesized pipeline")?;
                self.depth -= 1;
                let close = self.next();
                if close.kind != Tk::RightParen {
                    return self.err(
                        close.pos,
                        format!("unclosed right paren: unexpected {close}"),
                    );
                }
                Arg::Pipe(Box::new(pipe))
            }
            Tk::String | Tk::RawString => {
                let s = unquote(&t.val).map_err(|e| PErr(t.pos, e))?;
                Arg::Str(t.pos, t.val, s)
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// parse.go newNumber plus exec.go idealConstant: an integer literal is an
/// `int`, one with `.`, `e` or `E` a `float64`, a character constant its rune.
fn number(t: &Token) -> Result<Value, String> {
    let text = t.val.as_str();
    let bad = || format!("bad number syntax: {}", go_quote(text, false));
    match t.kind {
        Tk::CharConst => {
            let s = unquote(text)?;
            let mut cs = s.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => Ok(Value::Int(c as i64)),
                _ => Err(format!("malformed character constant: {text}")),
            }
        }
        Tk::Complex => Err(format!("complex constants are not supported: {text}")),
        _ if text.ends_with('i') => Err(format!("complex constants are not supported: {text}")),
        _ => {
            if let Some(i) = parse_go_int(text) {
                return Ok(Value::Int(i));
            }
            let hex = {
                let t = text.trim_start_matches(['+', '-']);
                t.starts_with("0x") || t.starts_with("0X")
            };
            if hex {
                return Err(format!(
                    "hexadecimal floating-point constants are not supported: {text}"
                ));
            }
            let clean: String = text.chars().filter(|&c| c != '_').collect();
            match clean.parse::<f64>() {
                Ok(f) if text.contains(['.', 'e', 'E']) && f.is_finite() => Ok(Value::Float(f)),
                Ok(_) if !text.contains(['.', 'e', 'E']) => Err(format!("{text} overflows int")),
                _ => Err(bad()),
            }
        }
    }
}

/// strconv.ParseInt(s, 0, 64): sign, base prefix (0x, 0o, 0b, or a leading 0
/// for octal) and underscores between digits.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty()
        || digits.starts_with('_') && radix == 10
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    let mag = u64::from_str_radix(&clean, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some((mag as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(mag).ok()
    }
}

/// strconv.Unquote for the three literal forms a template can hold.
fn unquote(s: &str) -> Result<String, String> {
    let bad = || "invalid syntax".to_string();
    let (q, body) = match (s.chars().next(), s.chars().last()) {
        (Some(a), Some(b)) if a == b && s.len() >= 2 => (a, &s[1..s.len() - 1]),
        _ => return Err(bad()),
    };
    match q {
        '`' => {
            if body.contains('`') {
                return Err(bad());
            }
            Ok(body.replace('\r', ""))
        }
        '"' | '\'' => {
            let mut out: Vec<u8> = Vec::new();
            let mut cs = body.chars().peekable();
            let mut n = 0;
            while let Some(c) = cs.next() {
                n += 1;
                if c == q && q == '"' || c == '\n' {
                    return Err(bad());
                }
                if c != '\\' {
                    let mut b = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                    continue;
                }
                let e = cs.next().ok_or_else(bad)?;
                let mut hex = |k: usize| -> Result<u32, String> {
                    let mut v = 0;
                    for _ in 0..k {
                        let d = cs.next().and_then(|c| c.to_digit(16)).ok_or_else(bad)?;
                        v = v * 16 + d;
                    }
                    Ok(v)
                };
                let ch = |v: u32| char::from_u32(v).ok_or_else(bad);
                let simple = match e {
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\x0b'),
                    '\\' => Some('\\'),
                    '\'' if q == '\'' => Some('\''),
                    '"' if q == '"' => Some('"'),
                    'u' => Some(ch(hex(4)?)?),
                    'U' => Some(ch(hex(8)?)?),
                    _ => None,
                };
                if let Some(c) = simple {
                    let mut b = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                    continue;
                }
                match e {
                    // \x and octal escapes are bytes in Go strings, runes in character constants.
                    'x' => {
                        let v = hex(2)?;
                        if q == '\'' {
                            let mut b = [0; 4];
                            out.extend_from_slice(ch(v)?.encode_utf8(&mut b).as_bytes());
                        } else {
                            out.push(v as u8);
                        }
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            v = v * 8 + cs.next().and_then(|c| c.to_digit(8)).ok_or_else(bad)?;
                        }
                        if v > 255 {
                            return Err(bad());
                        }
                        if q == '\'' {
                            let mut b = [0; 4];
                            out.extend_from_slice(ch(v)?.encode_utf8(&mut b).as_bytes());
                        } else {
                            out.push(v as u8);
                        }
                    }
                    _ => return Err(bad()),
                }
            }
            if q == '\'' && n == 0 {
                return Err(bad());
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        _ => Err(bad()),
    }
}
