//! The syntax tree of a lambda, and the parser that builds it and types
//! its constants.
//!
//! Follows `tick/ast/parser.go` (`ParseLambda`, `primary`, the
//! operator-precedence loop, function arguments in `lfunction`),
//! `tick/ast/node.go` (literals: octal integers, `\'`, `\"` and `\/` as the
//! only escapes; durations) and `tick/stateful/node_evaluator.go`
//! (`getConstantNodeType`: the types known without data, whose errors
//! Kapacitor reports when it compiles the task).

use regex::Regex;

use super::error::ExprError;
use super::functions::{find_signature, lookup_func, signatures, wrong_signature, FuncDef, Lookup};
use super::gocompat::parse_influx_duration;
use super::goregex::compile_go_regex;
use super::lexer::{Tok, TokKind};
use super::types::{binary_rule, mismatch_message, BinOp, Ty, UnOp};

/// How deeply an expression may nest. Deeper input is refused so that the
/// recursive parser and evaluator cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) kind: Kind,
    /// The type Kapacitor knows without data (`getConstantNodeType`); `None`
    /// for nodes it evaluates dynamically.
    pub(super) cty: Option<Ty>,
    depth: usize,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Regex(Regex),
    Duration(i64),
    Ref(String),
    Unary(UnOp, Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    /// The function, its arguments and their source text (for messages).
    Call(&'static FuncDef, Vec<Node>, Vec<String>),
}

impl Node {
    fn literal(kind: Kind, ty: Ty) -> Node {
        Node {
            kind,
            cty: Some(ty),
            depth: 1,
        }
    }
}

/// The reference behind a value of type missing, for messages.
pub(super) fn missing_name(n: &Node) -> &str {
    match &n.kind {
        Kind::Ref(name) => name,
        Kind::Unary(_, c) => missing_name(c),
        _ => "?",
    }
}

pub(super) struct Parser<'s> {
    pub(super) src: &'s str,
    pub(super) toks: Vec<Tok>,
    pub(super) i: usize,
    pub(super) refs: Vec<String>,
    pub(super) nesting: usize,
}

fn err(pos: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        pos,
        message: message.into(),
    }
}

impl Parser<'_> {
    pub(super) fn peek(&self) -> &Tok {
        &self.toks[self.i]
    }

    /// Consumes a token; the final end or error token is never passed.
    pub(super) fn next(&mut self) -> Tok {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn peek_op(&self) -> Option<BinOp> {
        match self.peek().kind {
            TokKind::Op(op) => Some(op),
            _ => None,
        }
    }

    fn text(&self, t: &Tok) -> &str {
        &self.src[t.pos..t.end]
    }

    pub(super) fn unexpected(&self, t: &Tok, expected: &str) -> ExprError {
        let found = match &t.kind {
            TokKind::Error(message) => return err(t.pos, message.clone()),
            TokKind::Eof => "end of expression".to_string(),
            TokKind::Ident => format!("identifier {}", self.text(t)),
            TokKind::Reference => format!("reference {}", self.text(t)),
            TokKind::Number => format!("number {}", self.text(t)),
            TokKind::Duration => format!("duration {}", self.text(t)),
            TokKind::Str => format!("string {}", self.text(t)),
            TokKind::Regex => format!("regex {}", self.text(t)),
            TokKind::Pipe => "'|' (the logical operators are AND and OR)".to_string(),
            TokKind::Op(BinOp::And | BinOp::Or)
            | TokKind::True
            | TokKind::False
            | TokKind::Lambda
            | TokKind::Var
            | TokKind::Dbrp => self.text(t).to_string(),
            _ => format!("'{}'", self.text(t)),
        };
        err(t.pos, format!("unexpected {found}, expected {expected}"))
    }

    /// `primaryExpr`.
    pub(super) fn expr(&mut self) -> Result<Node, ExprError> {
        let lhs = self.primary()?;
        self.precedence(lhs, 0)
    }

    /// parser.go's operator-precedence loop; left-associative.
    fn precedence(&mut self, mut lhs: Node, min: u8) -> Result<Node, ExprError> {
        while let Some(op) = self.peek_op().filter(|op| op.prec() >= min) {
            let op_pos = self.next().pos;
            let mut rhs = self.primary()?;
            while let Some(look) = self.peek_op().filter(|l| l.prec() > op.prec()) {
                rhs = self.precedence(rhs, look.prec())?;
            }
            lhs = binary(op, op_pos, lhs, rhs)?;
        }
        Ok(lhs)
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        self.nesting += 1;
        let r = if self.nesting > MAX_DEPTH {
            Err(err(self.peek().pos, "expression nested too deeply"))
        } else {
            self.primary_inner()
        };
        self.nesting -= 1;
        r
    }

    fn primary_inner(&mut self) -> Result<Node, ExprError> {
        let tok = self.next();
        let src = self.src;
        let text = &src[tok.pos..tok.end];
        match tok.kind {
            TokKind::LParen => {
                let n = self.expr()?;
                let close = self.next();
                if close.kind != TokKind::RParen {
                    return Err(self.unexpected(&close, "')'"));
                }
                Ok(n)
            }
            TokKind::Number => number_literal(text).map_err(|m| err(tok.pos, m)),
            TokKind::Duration => parse_influx_duration(text)
                .map(|d| Node::literal(Kind::Duration(d), Ty::Duration))
                .map_err(|m| err(tok.pos, m)),
            TokKind::Str => Ok(Node::literal(Kind::Str(string_literal(text)), Ty::Str)),
            TokKind::True => Ok(Node::literal(Kind::Bool(true), Ty::Bool)),
            TokKind::False => Ok(Node::literal(Kind::Bool(false), Ty::Bool)),
            TokKind::Regex => {
                let pattern = text[1..text.len() - 1].replace("\\/", "/");
                compile_go_regex(&pattern)
                    .map(|r| Node::literal(Kind::Regex(r), Ty::Regex))
                    .map_err(|m| err(tok.pos, m))
            }
            TokKind::Reference => {
                let name = text[1..text.len() - 1].replace("\\\"", "\"");
                if name == "time" {
                    return Err(err(
                        tok.pos,
                        "\"time\" is not supported: alerts here evaluate a key's window value, which has no point time",
                    ));
                }
                if !self.refs.contains(&name) {
                    self.refs.push(name.clone());
                }
                Ok(Node {
                    kind: Kind::Ref(name),
                    cty: None,
                    depth: 1,
                })
            }
            TokKind::Ident if self.peek().kind == TokKind::LParen => self.call(&tok),
            TokKind::Ident => Err(err(tok.pos, bare_identifier(text))),
            TokKind::Op(BinOp::Sub) => {
                let operand = self.primary()?;
                unary(UnOp::Neg, tok.pos, operand)
            }
            TokKind::Not => {
                let operand = self.primary()?;
                unary(UnOp::Not, tok.pos, operand)
            }
            TokKind::Star => Err(err(tok.pos, "'*' is not valid in a lambda expression")),
            _ => Err(self.unexpected(&tok, "a value")),
        }
    }

    /// `lfunction`, at the name; a trailing comma is accepted as there.
    fn call(&mut self, name_tok: &Tok) -> Result<Node, ExprError> {
        let name = self.text(name_tok).to_string();
        let def = match lookup_func(&name) {
            Lookup::Found(def) => def,
            Lookup::Unsupported(why) => {
                return Err(err(
                    name_tok.pos,
                    format!("function {name:?} is not supported: {why}"),
                ))
            }
            Lookup::Undefined if name.eq_ignore_ascii_case("not") => {
                return Err(err(
                    name_tok.pos,
                    format!(
                    "undefined function: {name:?} (TICKscript has no NOT keyword: write !(...))"
                ),
                ))
            }
            Lookup::Undefined => {
                return Err(err(name_tok.pos, format!("undefined function: {name:?}")))
            }
        };
        self.next(); // '('
        let mut args = Vec::new();
        let mut srcs = Vec::new();
        while self.peek().kind != TokKind::RParen {
            let start = self.peek().pos;
            args.push(self.expr()?);
            srcs.push(self.src[start..self.toks[self.i - 1].end].to_string());
            if self.peek().kind != TokKind::Comma {
                break;
            }
            self.next();
        }
        let close = self.next();
        if close.kind != TokKind::RParen {
            return Err(self.unexpected(&close, "',' or ')'"));
        }
        if !def
            .sigs
            .iter()
            .any(|(params, _)| params.len() == args.len())
        {
            return Err(err(
                name_tok.pos,
                format!(
                    "Cannot call function \"{}\" with {} argument(s), available signatures are {}.",
                    def.name,
                    args.len(),
                    signatures(def)
                ),
            ));
        }
        // Constant arguments that fit no signature would fail at every
        // evaluation: say so now.
        let tys: Vec<Ty> = args.iter().filter_map(|a| a.cty).collect();
        if tys.len() == args.len() && find_signature(def, &tys).is_none() {
            return Err(err(name_tok.pos, wrong_signature(def, &tys, &srcs)));
        }
        let depth = 1 + args.iter().map(|a| a.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(err(name_tok.pos, "expression nested too deeply"));
        }
        Ok(Node {
            kind: Kind::Call(def, args, srcs),
            cty: None,
            depth,
        })
    }
}

fn bare_identifier(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if matches!(upper.as_str(), "AND" | "OR" | "TRUE" | "FALSE") {
        format!("unexpected identifier {name}: keywords are upper case, {upper}")
    } else {
        format!(
            "unexpected identifier {name}: fields and tags are referenced in double quotes, \"{name}\", and strings in single quotes"
        )
    }
}

/// A binary node, refused when both operand types are known and Kapacitor
/// has no evaluation function for them (it refuses those when compiling).
fn binary(op: BinOp, pos: usize, l: Node, r: Node) -> Result<Node, ExprError> {
    if let (Some(lt), Some(rt)) = (l.cty, r.cty) {
        if binary_rule(op, lt, rt).is_none() {
            return Err(err(pos, mismatch_message(op, lt, rt)));
        }
    }
    let cty = if op.is_logical() || op.is_comparison() {
        Some(Ty::Bool)
    } else {
        match (l.cty, r.cty) {
            (Some(lt), Some(rt)) => binary_rule(op, lt, rt),
            _ => None,
        }
    };
    let depth = 1 + l.depth.max(r.depth);
    if depth > MAX_DEPTH {
        return Err(err(pos, "expression nested too deeply"));
    }
    Ok(Node {
        kind: Kind::Binary(op, Box::new(l), Box::new(r)),
        cty,
        depth,
    })
}

/// A unary node; an operand of known type that the operator cannot take
/// (`!5`, `-'a'`) would fail at every evaluation, so it is refused now.
fn unary(op: UnOp, pos: usize, operand: Node) -> Result<Node, ExprError> {
    if let Some(t) = operand.cty {
        if !op.accepts(t) {
            return Err(err(
                pos,
                format!(
                    "invalid unary operator {} for type {}",
                    op.symbol(),
                    t.name()
                ),
            ));
        }
    }
    let cty = match op {
        UnOp::Not => Some(Ty::Bool),
        UnOp::Neg => operand.cty,
    };
    let depth = 1 + operand.depth;
    Ok(Node {
        kind: Kind::Unary(op, Box::new(operand)),
        cty,
        depth,
    })
}

/// node.go's `newNumber`: a leading zero means octal.
fn number_literal(text: &str) -> Result<Node, String> {
    let illegal = || format!("illegal number syntax: {text:?}");
    if text.contains('.') {
        let f = text.parse::<f64>().map_err(|_| illegal())?;
        return Ok(Node::literal(Kind::Float(f), Ty::Float));
    }
    let radix = if text.len() > 1 && text.starts_with('0') {
        8
    } else {
        10
    };
    let i = i64::from_str_radix(text, radix).map_err(|_| illegal())?;
    Ok(Node::literal(Kind::Int(i), Ty::Int))
}

/// node.go's `newString`: triple quotes are raw, single quotes unescape `\'`.
pub(super) fn string_literal(text: &str) -> String {
    if text.len() >= 6 && text.starts_with("'''") {
        text[3..text.len() - 3].to_string()
    } else {
        text[1..text.len() - 1].replace("\\'", "'")
    }
}
