//! Evaluation of a parsed lambda against one key's fields and tags.
//!
//! Follows `tick/stateful`: `eval_binary_node.go` and `eval_unary_node.go`
//! (types found per key, runtime type errors and their messages, the
//! short-circuit of `AND`/`OR`), `evaluation_funcs.go` (what each operator
//! computes) and `eval_function_node.go` (calls and their argument errors);
//! and Kapacitor's top-level `expr.go` (`fillScope`: how a point's fields and
//! tags become references).

use std::borrow::Cow;

use super::error::{missing_value, type_guard, EvalError};
use super::functions::{call_function, find_signature, wrong_signature, FuncDef};
use super::gocompat::go_f64_to_i64;
use super::parser::{missing_name, Kind, Node};
use super::types::{binary_rule, mismatch_message, BinOp, Ty, UnOp, Val};

/// The data of one key, as a point's fields and tags are to Kapacitor.
pub trait Env {
    /// A field: here the window value under the rule's `as` name.
    fn field(&self, name: &str) -> Option<f64>;
    /// A tag: here the key's group-by values.
    fn tag(&self, name: &str) -> Option<&str>;
}

pub(super) struct Ctx<'a> {
    /// The expression's references, each once, in order of first appearance.
    refs: &'a [String],
    env: &'a dyn Env,
}

impl<'a> Ctx<'a> {
    /// kapacitor's `fillScope` refuses a name that is both a field and a tag,
    /// for every reference, before anything is evaluated.
    pub(super) fn new(refs: &'a [String], env: &'a dyn Env) -> Result<Self, EvalError> {
        for name in refs {
            if env.field(name).is_some() && env.tag(name).is_some() {
                return Err(EvalError::new(format!(
                    "cannot have field and tags with same name {name:?}"
                )));
            }
        }
        Ok(Ctx { refs, env })
    }

    fn lookup(&self, name: &'a str) -> Val<'a> {
        if let Some(v) = self.env.field(name) {
            Val::Float(v)
        } else if let Some(v) = self.env.tag(name) {
            Val::Str(Cow::Borrowed(v))
        } else {
            Val::Missing(name)
        }
    }

    pub(super) fn eval(&self, n: &'a Node) -> Result<Val<'a>, EvalError> {
        Ok(match &n.kind {
            Kind::Bool(b) => Val::Bool(*b),
            Kind::Int(i) => Val::Int(*i),
            Kind::Float(f) => Val::Float(*f),
            Kind::Str(s) => Val::Str(Cow::Borrowed(s)),
            Kind::Regex(r) => Val::Regex(r),
            Kind::Duration(d) => Val::Duration(*d),
            Kind::Ref(name) => self.lookup(name),
            Kind::Unary(op, operand) => match (op, self.eval(operand)?) {
                (_, Val::Missing(name)) => return Err(missing_value(name)),
                (_, Val::Bool(b)) => Val::Bool(!b),
                (UnOp::Neg, Val::Int(i)) => Val::Int(i.wrapping_neg()),
                (UnOp::Neg, Val::Float(f)) => Val::Float(-f),
                (UnOp::Neg, Val::Duration(d)) => Val::Duration(d.wrapping_neg()),
                (op, v) => {
                    return Err(EvalError::new(format!(
                        "invalid unary operator {} for type {}",
                        op.symbol(),
                        v.ty().name()
                    )))
                }
            },
            Kind::Binary(op, l, r) => self.binary(*op, l, r)?,
            Kind::Call(def, args, srcs) => self.call(def, args, srcs)?,
        })
    }

    fn binary(&self, op: BinOp, l: &'a Node, r: &'a Node) -> Result<Val<'a>, EvalError> {
        if op.is_logical() {
            // Kapacitor types both operands before it short-circuits.
            let (lt, rt) = (self.ty(l)?, self.ty(r)?);
            if binary_rule(op, lt, rt).is_none() {
                return Err(binary_error(op, lt, rt, l, r));
            }
            let left = self.eval_bool_operand(l)?;
            if left == (op == BinOp::Or) {
                return Ok(Val::Bool(left));
            }
            return self.eval_bool_operand(r).map(Val::Bool);
        }
        let (lv, rv) = (self.eval(l)?, self.eval(r)?);
        let (lt, rt) = (lv.ty(), rv.ty());
        apply(op, lv, rv)?.ok_or_else(|| binary_error(op, lt, rt, l, r))
    }

    fn eval_bool_operand(&self, n: &'a Node) -> Result<bool, EvalError> {
        match self.eval(n)? {
            Val::Bool(b) => Ok(b),
            Val::Missing(name) => Err(missing_value(name)),
            v => Err(type_guard(v.ty(), Ty::Bool)),
        }
    }

    /// Kapacitor's `Type()`: a node's type for this key without evaluating
    /// it, with the errors that finding it raises.
    fn ty(&self, n: &'a Node) -> Result<Ty, EvalError> {
        if let Some(t) = n.cty {
            return Ok(t);
        }
        match &n.kind {
            Kind::Ref(name) => Ok(self.lookup(name).ty()),
            Kind::Unary(_, operand) => self.ty(operand),
            Kind::Binary(op, l, r) => {
                let (lt, rt) = (self.ty(l)?, self.ty(r)?);
                binary_rule(*op, lt, rt).ok_or_else(|| binary_error(*op, lt, rt, l, r))
            }
            Kind::Call(def, args, srcs) => {
                let mut tys = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    tys.push(self.ty(a).map_err(|e| arg_context(e, i))?);
                }
                find_signature(def, &tys).ok_or_else(|| self.signature_error(def, &tys, args, srcs))
            }
            // Literals always have a constant type.
            _ => Err(EvalError::new("expression has no type")),
        }
    }

    fn call(&self, def: &FuncDef, args: &'a [Node], srcs: &[String]) -> Result<Val<'a>, EvalError> {
        let mut vals = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            vals.push(self.eval(a).map_err(|e| arg_context(e, i))?);
        }
        let fits = def.sigs.iter().any(|(params, _)| {
            params.len() == vals.len() && params.iter().zip(&vals).all(|(p, v)| *p == v.ty())
        });
        if !fits {
            let tys: Vec<Ty> = vals.iter().map(Val::ty).collect();
            return Err(self.signature_error(def, &tys, args, srcs));
        }
        call_function(def.imp, vals)
            .map_err(|m| EvalError::new(format!("error calling \"{}\": {m}", def.name)))
    }

    /// `ErrMissingType` when an argument is missing, else
    /// `ErrWrongFuncSignature`.
    fn signature_error(
        &self,
        def: &FuncDef,
        tys: &[Ty],
        args: &[Node],
        srcs: &[String],
    ) -> EvalError {
        let missing: Vec<&str> = args
            .iter()
            .zip(tys)
            .filter(|&(_, t)| *t == Ty::Missing)
            .map(|(a, _)| missing_name(a))
            .collect();
        let Some(first) = missing.first() else {
            return EvalError::new(wrong_signature(def, tys, srcs));
        };
        let quoted: Vec<String> = missing.iter().map(|m| format!("\"{m}\"")).collect();
        let scope: Vec<String> = self
            .refs
            .iter()
            .map(|r| format!("\"{r}\""))
            .filter(|r| !quoted.contains(r))
            .collect();
        let (noun, verb) = if quoted.len() > 1 {
            ("arguments", "are")
        } else {
            ("argument", "is")
        };
        EvalError::missing(
            format!(
                "Cannot call function \"{}\" {noun} {} {verb} missing, values in scope are [{}]",
                def.name,
                quoted.join(", "),
                scope.join(", ")
            ),
            first,
        )
    }
}

fn arg_context(e: EvalError, i: usize) -> EvalError {
    e.context(&format!("Failed to handle {} argument: ", i + 1))
}

/// The error for a binary operator without evaluation function for its
/// operand types; a missing reference is named first, as `determineError`.
fn binary_error(op: BinOp, lt: Ty, rt: Ty, l: &Node, r: &Node) -> EvalError {
    if lt == Ty::Missing {
        let name = missing_name(l);
        EvalError::missing(
            format!("left reference value \"{name}\" is missing value"),
            name,
        )
    } else if rt == Ty::Missing {
        let name = missing_name(r);
        EvalError::missing(
            format!("right reference value \"{name}\" is missing value"),
            name,
        )
    } else {
        EvalError::new(mismatch_message(op, lt, rt))
    }
}

/// A comparison operator's result (any but the regex ones).
pub(super) fn compare<T: PartialOrd>(op: BinOp, a: T, b: T) -> bool {
    match op {
        BinOp::Eq => a == b,
        BinOp::Ne => a != b,
        BinOp::Lt => a < b,
        BinOp::Le => a <= b,
        BinOp::Gt => a > b,
        _ => a >= b,
    }
}

fn divide_by_zero() -> EvalError {
    // Go panics here; Kapacitor would not survive it.
    EvalError::new("integer divide by zero")
}

/// The evaluation functions of evaluation_funcs.go; `None` when there is
/// none for the operand types. Integer arithmetic wraps as Go's does.
fn apply<'a>(op: BinOp, l: Val<'a>, r: Val<'a>) -> Result<Option<Val<'a>>, EvalError> {
    use BinOp::{Add, Div, Eq, Mod, Mul, Ne, RegexEq, RegexNe, Sub};
    use Val::{Bool, Duration as Dur, Float, Int, Regex, Str};
    let cmp = op.is_comparison() && !matches!(op, RegexEq | RegexNe);
    Ok(Some(match (op, l, r) {
        (Eq | Ne, Bool(a), Bool(b)) => Bool(compare(op, a, b)),
        (_, Int(a), Int(b)) if cmp => Bool(compare(op, a, b)),
        (_, Int(a), Float(b)) if cmp => Bool(compare(op, a as f64, b)),
        (_, Float(a), Int(b)) if cmp => Bool(compare(op, a, b as f64)),
        (_, Float(a), Float(b)) if cmp => Bool(compare(op, a, b)),
        (_, Str(a), Str(b)) if cmp => Bool(compare(op, a.as_bytes(), b.as_bytes())),
        (_, Dur(a), Dur(b)) if cmp => Bool(compare(op, a, b)),
        (RegexEq, Str(s), Regex(re)) => Bool(re.is_match(&s)),
        (RegexNe, Str(s), Regex(re)) => Bool(!re.is_match(&s)),
        (Add, Float(a), Float(b)) => Float(a + b),
        (Sub, Float(a), Float(b)) => Float(a - b),
        (Mul, Float(a), Float(b)) => Float(a * b),
        (Div, Float(a), Float(b)) => Float(a / b),
        (Add, Int(a), Int(b)) => Int(a.wrapping_add(b)),
        (Sub, Int(a), Int(b)) => Int(a.wrapping_sub(b)),
        (Mul, Int(a), Int(b)) => Int(a.wrapping_mul(b)),
        (Div | Mod, Int(_), Int(0)) => return Err(divide_by_zero()),
        (Div, Int(a), Int(b)) => Int(a.wrapping_div(b)),
        (Mod, Int(a), Int(b)) => Int(a.wrapping_rem(b)),
        (Add, Dur(a), Dur(b)) => Dur(a.wrapping_add(b)),
        (Sub, Dur(a), Dur(b)) => Dur(a.wrapping_sub(b)),
        (Mul, Dur(a), Int(b)) | (Mul, Int(b), Dur(a)) => Dur(a.wrapping_mul(b)),
        (Mul, Dur(a), Float(b)) | (Mul, Float(b), Dur(a)) => Dur(go_f64_to_i64(a as f64 * b)),
        (Div, Dur(_), Int(0) | Dur(0)) => return Err(divide_by_zero()),
        (Div, Dur(a), Int(b)) => Dur(a.wrapping_div(b)),
        (Div, Dur(a), Float(b)) => Dur(go_f64_to_i64(a as f64 / b)),
        (Div, Dur(a), Dur(b)) => Int(a.wrapping_div(b)),
        (Add, Str(a), Str(b)) => Str(Cow::Owned(a.into_owned() + &b)),
        _ => return Ok(None),
    }))
}
