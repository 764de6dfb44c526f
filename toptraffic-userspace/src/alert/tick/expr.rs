//! The face of the lambda language: [`Expr`], parsed once from a lambda's
//! source and evaluated per key into a [`Value`].
//!
//! Follows `tick/ast/parser.go` (`ParseLambda`) and Kapacitor's top-level
//! `expr.go` (`EvalPredicate`: a condition that is not a boolean is an error).

use std::fmt;

use regex::Regex;

use super::error::{missing_value, type_guard, EvalError, ExprError};
use super::eval::{Ctx, Env};
use super::lexer::{lex, TokKind};
use super::parser::{Node, Parser};
use super::types::{Ty, Val};

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
        let cx = Ctx::new(&self.refs, env)?;
        match cx.eval(&self.root)? {
            Val::Bool(b) => Ok(b),
            Val::Missing(name) => Err(missing_value(name)),
            v => Err(type_guard(v.ty(), Ty::Bool)),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.src)
    }
}
