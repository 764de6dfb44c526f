//! Kapacitor's value types and operators: which operator takes which
//! operand types, and what it gives.
//!
//! Follows `tick/ast/types.go` (`ValueType`), `tick/ast/parser.go` (the
//! precedence table), `tick/stateful/evaluation_funcs.go` (the (operator,
//! left type, right type) table), `tick/stateful/eval_binary_node.go`
//! (`typeToBinaryOperators`, `determineError`) and
//! `tick/stateful/eval_unary_node.go`.

use std::borrow::Cow;

use regex::Regex;

/// Kapacitor's `ast.ValueType`, less the kinds a lambda here cannot produce
/// (time, lambda, list, star).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Float,
    Int,
    Str,
    Bool,
    Regex,
    Duration,
    /// A reference absent from the key (Kapacitor's `ast.MissingValue`).
    Missing,
}

const ALL_TYS: [Ty; 7] = [
    Ty::Float,
    Ty::Int,
    Ty::Str,
    Ty::Bool,
    Ty::Regex,
    Ty::Duration,
    Ty::Missing,
];

impl Ty {
    /// Names as in Kapacitor's messages (`ValueType.String`).
    pub(super) fn name(self) -> &'static str {
        match self {
            Ty::Float => "float",
            Ty::Int => "int",
            Ty::Str => "string",
            Ty::Bool => "boolean",
            Ty::Regex => "regex",
            Ty::Duration => "duration",
            Ty::Missing => "missing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    RegexEq,
    RegexNe,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinOp {
    /// parser.go's precedence table: higher binds tighter.
    pub(super) fn prec(self) -> u8 {
        match self {
            BinOp::Or => 0,
            BinOp::And => 1,
            BinOp::Eq | BinOp::Ne | BinOp::RegexEq | BinOp::RegexNe => 2,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
        }
    }

    pub(super) fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "OR",
            BinOp::And => "AND",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::RegexEq => "=~",
            BinOp::RegexNe => "!~",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
        }
    }

    pub(super) fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }

    pub(super) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq
                | BinOp::Ne
                | BinOp::RegexEq
                | BinOp::RegexNe
                | BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge
        )
    }

    fn kind(self) -> &'static str {
        if self.is_logical() {
            "logical"
        } else if self.is_comparison() {
            "comparison"
        } else {
            "math"
        }
    }
}

/// The result type of `l op r`, or `None` when Kapacitor has no evaluation
/// function for the combination (evaluation_funcs.go, entry by entry).
pub(super) fn binary_rule(op: BinOp, l: Ty, r: Ty) -> Option<Ty> {
    use Ty::{Bool, Duration as Dur, Float, Int, Regex, Str};
    let ok = |b: bool| b.then_some(Bool);
    match op {
        BinOp::And | BinOp::Or => ok((l, r) == (Bool, Bool)),
        BinOp::Eq | BinOp::Ne => ok(matches!(
            (l, r),
            (Bool, Bool) | (Int | Float, Int | Float) | (Str, Str) | (Dur, Dur)
        )),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => ok(matches!(
            (l, r),
            (Int | Float, Int | Float) | (Str, Str) | (Dur, Dur)
        )),
        BinOp::RegexEq | BinOp::RegexNe => ok((l, r) == (Str, Regex)),
        BinOp::Add => match (l, r) {
            (Float, Float) | (Int, Int) | (Dur, Dur) | (Str, Str) => Some(l),
            _ => None,
        },
        BinOp::Sub => match (l, r) {
            (Float, Float) | (Int, Int) | (Dur, Dur) => Some(l),
            _ => None,
        },
        BinOp::Mul => match (l, r) {
            (Float, Float) | (Int, Int) => Some(l),
            (Dur, Int | Float) | (Int | Float, Dur) => Some(Dur),
            _ => None,
        },
        BinOp::Div => match (l, r) {
            (Float, Float) | (Int, Int) => Some(l),
            (Dur, Int | Float) => Some(Dur),
            (Dur, Dur) => Some(Int),
            _ => None,
        },
        BinOp::Mod => ((l, r) == (Int, Int)).then_some(Int),
    }
}

/// Whether any evaluation function takes `t` on either side of `op`
/// (eval_binary_node.go's `typeToBinaryOperators`).
fn ty_supports(t: Ty, op: BinOp) -> bool {
    ALL_TYS
        .iter()
        .any(|&o| binary_rule(op, t, o).is_some() || binary_rule(op, o, t).is_some())
}

/// eval_binary_node.go's `determineError`, which only looks at the left
/// type when deciding between its two messages.
pub(super) fn mismatch_message(op: BinOp, l: Ty, r: Ty) -> String {
    if ty_supports(l, op) {
        format!(
            "mismatched type to binary operator. got {} {} {}. see bool(), int(), float(), string(), duration()",
            l.name(),
            op.symbol(),
            r.name()
        )
    } else {
        format!(
            "invalid {} operator {} for type {}",
            op.kind(),
            op.symbol(),
            l.name()
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnOp {
    Neg,
    Not,
}

impl UnOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            UnOp::Neg => "-",
            UnOp::Not => "!",
        }
    }

    /// Operand types the evaluator accepts; `-` on a boolean negates it
    /// because `EvalUnaryNode.EvalBool` ignores the operator.
    pub(super) fn accepts(self, t: Ty) -> bool {
        match self {
            UnOp::Not => t == Ty::Bool,
            UnOp::Neg => matches!(t, Ty::Int | Ty::Float | Ty::Duration | Ty::Bool),
        }
    }
}

/// A value during evaluation; strings borrow from the key or the
/// expression where they can, since this runs for every key.
#[derive(Debug, Clone)]
pub(super) enum Val<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Regex(&'a Regex),
    Duration(i64),
    Missing(&'a str),
}

impl Val<'_> {
    pub(super) fn ty(&self) -> Ty {
        match self {
            Val::Bool(_) => Ty::Bool,
            Val::Int(_) => Ty::Int,
            Val::Float(_) => Ty::Float,
            Val::Str(_) => Ty::Str,
            Val::Regex(_) => Ty::Regex,
            Val::Duration(_) => Ty::Duration,
            Val::Missing(_) => Ty::Missing,
        }
    }
}
