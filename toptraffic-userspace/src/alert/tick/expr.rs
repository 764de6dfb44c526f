//! The face of the lambda language: [`Expr`], parsed once from a lambda's
//! source and evaluated per key into a [`Value`].
//!
//! Follows `tick/ast/parser.go` (`ParseLambda`) and Kapacitor's top-level
//! `expr.go` (`EvalPredicate`: a condition that is not a boolean is an error).

use std::fmt;

use regex::Regex;

use super::error::{missing_value, type_guard, EvalError, ExprError};
use super::eval::{compare, Ctx, Env};
use super::lexer::{lex, TokKind};
use super::parser::{Kind, Node, Parser};
use super::types::{BinOp, Ty, UnOp, Val};

/// The result of an evaluation, with Kapacitor's value types.
#[derive(Debug, Clone)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Regex(Regex),
    /// Nanoseconds, signed like Go's `time.Duration`.
    Duration(i64),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Regex(a), Value::Regex(b)) => a.as_str() == b.as_str(),
            (Value::Duration(a), Value::Duration(b)) => a == b,
            _ => false,
        }
    }
}

/// A parsed lambda: immutable, shareable between threads.
#[derive(Debug, Clone)]
pub struct Expr {
    src: String,
    root: Node,
    /// Distinct references in order of first appearance.
    refs: Vec<String>,
    /// Set when the expression is one reference compared with a number.
    threshold: Option<Threshold>,
}

/// `"name" OP number` or `number OP "name"`: most alert conditions, decided
/// for a key without the interpreter, every key of every rule every
/// interval. The same result as the interpreter's wherever this gives one
/// (a property test holds them together); anything else (the reference a
/// tag, or missing) goes to the interpreter for its error.
#[derive(Debug, Clone, Copy)]
struct Threshold {
    op: BinOp,
    /// The number, as the interpreter compares a float field with it (an
    /// integer converted to f64).
    number: f64,
    /// Whether the reference is the left operand.
    name_left: bool,
}

impl Threshold {
    fn of(root: &Node) -> Option<Threshold> {
        let Kind::Binary(op, l, r) = &root.kind else {
            return None;
        };
        if !op.is_comparison() || matches!(op, BinOp::RegexEq | BinOp::RegexNe) {
            return None;
        }
        let number = |n: &Node| match n.kind {
            Kind::Int(i) => Some(i as f64),
            Kind::Float(f) => Some(f),
            _ => None,
        };
        let is_ref = |n: &Node| matches!(n.kind, Kind::Ref(_));
        let (name_left, number) = match (is_ref(l), is_ref(r)) {
            (true, false) => (true, number(r)?),
            (false, true) => (false, number(l)?),
            _ => return None,
        };
        Some(Threshold {
            op: *op,
            number,
            name_left,
        })
    }

    /// The comparison for a field `value`.
    fn holds(&self, value: f64) -> bool {
        if self.name_left {
            compare(self.op, value, self.number)
        } else {
            compare(self.op, self.number, value)
        }
    }
}

impl Expr {
    /// Parses a lambda expression; a leading `lambda:` is allowed so that
    /// conditions can be pasted whole from a TICKscript.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let mut p = Parser {
            src,
            toks: lex(src),
            i: 0,
            refs: Vec::new(),
            nesting: 0,
        };
        if p.peek().kind == TokKind::Lambda {
            p.next();
        }
        let root = p.expr()?;
        let end = p.next();
        if end.kind != TokKind::Eof {
            return Err(p.unexpected(&end, "an operator or the end of the expression"));
        }
        Ok(Expr {
            src: src.to_string(),
            threshold: Threshold::of(&root),
            root,
            refs: p.refs,
        })
    }

    /// The source text the expression was parsed from.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The double-quoted names the expression refers to, each once, in
    /// order of first appearance.
    pub fn references(&self) -> impl Iterator<Item = &str> + '_ {
        self.refs.iter().map(String::as_str)
    }

    /// The least value of the reference `name` for which the expression
    /// can be true, when the expression says so plainly: a comparison of
    /// `name` with a number (`"v" > 500`, `"v" >= 500`, `500 < "v"`: 500),
    /// the greatest such bound of an `AND`'s sides, the least of an `OR`'s
    /// when both have one. `None` for anything else: such an expression may
    /// hold for a small value.
    pub fn lower_bound(&self, name: &str) -> Option<f64> {
        lower_bound(&self.root, name)
    }

    /// Evaluates the expression for one key.
    pub fn eval(&self, env: &dyn Env) -> Result<Value, EvalError> {
        let cx = Ctx::new(&self.refs, env)?;
        Ok(match cx.eval(&self.root)? {
            Val::Bool(b) => Value::Bool(b),
            Val::Int(i) => Value::Int(i),
            Val::Float(f) => Value::Float(f),
            Val::Str(s) => Value::Str(s.into_owned()),
            Val::Regex(r) => Value::Regex(r.clone()),
            Val::Duration(d) => Value::Duration(d),
            Val::Missing(name) => return Err(missing_value(name)),
        })
    }

    /// Evaluates an alert condition: as Kapacitor's `EvalPredicate`, a
    /// result that is not a boolean is an error.
    pub fn eval_bool(&self, env: &dyn Env) -> Result<bool, EvalError> {
        if let (Some(t), [name]) = (&self.threshold, self.refs.as_slice()) {
            // A field that is not also a tag: the interpreter would compare
            // the same two floats (fillScope refuses a name that is both).
            if let Some(v) = env.field(name) {
                if env.tag(name).is_none() {
                    return Ok(t.holds(v));
                }
            }
        }
        self.interpret_bool(env)
    }

    /// [`Expr::eval_bool`] by the interpreter alone.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn eval_bool_interpreted(&self, env: &dyn Env) -> Result<bool, EvalError> {
        self.interpret_bool(env)
    }

    fn interpret_bool(&self, env: &dyn Env) -> Result<bool, EvalError> {
        let cx = Ctx::new(&self.refs, env)?;
        match cx.eval(&self.root)? {
            Val::Bool(b) => Ok(b),
            Val::Missing(name) => Err(missing_value(name)),
            v => Err(type_guard(v.ty(), Ty::Bool)),
        }
    }
}

fn lower_bound(n: &Node, name: &str) -> Option<f64> {
    let number = |n: &Node| match &n.kind {
        Kind::Int(i) => Some(*i as f64),
        Kind::Float(f) => Some(*f),
        Kind::Unary(UnOp::Neg, c) => match c.kind {
            Kind::Int(i) => Some(-(i as f64)),
            Kind::Float(f) => Some(-f),
            _ => None,
        },
        _ => None,
    };
    let is_ref = |n: &Node| matches!(&n.kind, Kind::Ref(r) if r == name);
    match &n.kind {
        Kind::Binary(op, l, r) => match op {
            BinOp::Gt | BinOp::Ge if is_ref(l) => number(r),
            BinOp::Lt | BinOp::Le if is_ref(r) => number(l),
            BinOp::And => match (lower_bound(l, name), lower_bound(r, name)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            BinOp::Or => Some(lower_bound(l, name)?.min(lower_bound(r, name)?)),
            _ => None,
        },
        _ => None,
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.src)
    }
}
