//! Evaluation of the parse tree: text/template/exec.go (Go 1.13), from walking
//! the nodes to evaluating pipelines, fields and calls with their type checks.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::error::{line_col, RenderError};
use super::funcs::call_builtin;
use super::gofmt::sprint_into;
use super::methods::{call_method, method, struct_field, Method};
use super::node::{Arg, Branch, Cmd, Func, Node, Pipe, MAX_DEPTH};
use super::signature::{signature, Param};
use super::strconv::go_quote;
use super::value::Value;

/// A value during evaluation; `None` is Go's invalid reflect.Value, what a
/// missing map key yields and what prints as `<no value>`.
type Ev = Option<Value>;

/// exec.go, execute: the output of the root list run on `data`, which is
/// also `$`.
pub(super) fn execute(
    src: &str,
    defs: &HashMap<String, Vec<Node>>,
    root: &[Node],
    data: &Value,
) -> Result<String, RenderError> {
    let mut st = Exec {
        src,
        defs,
        vars: vec![("$".into(), Some(data.clone()))],
        depth: 0,
        out: String::new(),
    };
    st.walk(&Some(data.clone()), root)?;
    Ok(st.out)
}

struct Exec<'a> {
    src: &'a str,
    defs: &'a HashMap<String, Vec<Node>>,
    vars: Vec<(String, Ev)>,
    depth: usize,
    out: String,
}

type XResult<T> = Result<T, RenderError>;

impl Exec<'_> {
    fn error(&self, pos: usize, node: &dyn fmt::Display, msg: impl Into<String>) -> RenderError {
        let (line, col) = line_col(self.src, pos);
        RenderError {
            pos,
            line,
            col,
            node: node.to_string(),
            msg: msg.into(),
        }
    }

    fn walk(&mut self, dot: &Ev, list: &[Node]) -> XResult<()> {
        // Blocks and template calls nest; parsing bounds the first alone.
        if self.depth >= 2 * MAX_DEPTH {
            let pos = list.first().map_or(0, node_pos);
            return Err(self.error(
                pos,
                &"template",
                format!("exceeded maximum template depth ({})", 2 * MAX_DEPTH),
            ));
        }
        self.depth += 1;
        let r = list.iter().try_for_each(|n| self.walk_node(dot, n));
        self.depth -= 1;
        r
    }

    fn walk_node(&mut self, dot: &Ev, n: &Node) -> XResult<()> {
        match n {
            Node::Text { text, .. } => self.out.push_str(text),
            Node::Action { pipe, .. } => {
                // Variables declared here live until the enclosing {{end}}.
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    match v {
                        None => self.out.push_str("<no value>"),
                        Some(v) => sprint_into(&mut self.out, &[v]),
                    }
                }
            }
            Node::If(b) | Node::With(b) => {
                let mark = self.vars.len();
                let v = self.eval_pipeline(dot, &b.pipe)?;
                let truth = v.as_ref().is_some_and(Value::truth);
                if truth {
                    if matches!(n, Node::With(_)) {
                        self.walk(&v, &b.list)?;
                    } else {
                        self.walk(dot, &b.list)?;
                    }
                } else if let Some(l) = &b.else_list {
                    self.walk(dot, l)?;
                }
                self.vars.truncate(mark);
            }
            Node::Range(b) => self.walk_range(dot, b)?,
            Node::Template { pos, name, pipe } => {
                let Some(body) = self.defs.get(name) else {
                    let shown = name.split('$').next().unwrap_or(name);
                    return Err(self.error(
                        *pos,
                        &format!("template {shown}"),
                        format!("template {} not defined", go_quote(shown, false)),
                    ));
                };
                let v = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => None,
                };
                // No dynamic scoping: the called template sees only `$`.
                let saved = std::mem::replace(&mut self.vars, vec![("$".into(), v.clone())]);
                let r = self.walk(&v, body);
                self.vars = saved;
                r?;
            }
        }
        Ok(())
    }

    fn walk_range(&mut self, dot: &Ev, b: &Branch) -> XResult<()> {
        let outer = self.vars.len();
        let v = self.eval_pipeline(dot, &b.pipe)?;
        let mark = self.vars.len();
        let mut items: Vec<(Value, Value)> = Vec::new();
        match &v {
            Some(Value::Map(m)) => {
                items.extend(m.iter().map(|(k, v)| (Value::Str(k.clone()), v.clone())))
            }
            Some(Value::StrMap(m)) => items.extend(
                m.iter()
                    .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone()))),
            ),
            // A nil or missing value is no error: the else branch runs.
            None | Some(Value::Nil) => {}
            Some(other) => {
                let mut shown = String::new();
                sprint_into(&mut shown, std::slice::from_ref(other));
                return Err(self.error(
                    b.pos,
                    &b.pipe,
                    format!("range can't iterate over {shown}"),
                ));
            }
        }
        let ran = !items.is_empty();
        for (k, elem) in items {
            // The last declared variable gets the element, the one before it the key.
            let n = b.pipe.decl.len();
            if n > 0 {
                self.vars[mark - 1].1 = Some(elem.clone());
            }
            if n > 1 {
                self.vars[mark - 2].1 = Some(k);
            }
            self.walk(&Some(elem), &b.list)?;
            self.vars.truncate(mark);
        }
        if !ran {
            if let Some(l) = &b.else_list {
                self.walk(dot, l)?;
            }
        }
        self.vars.truncate(outer);
        Ok(())
    }

    fn eval_pipeline(&mut self, dot: &Ev, pipe: &Pipe) -> XResult<Ev> {
        let mut value: Option<Ev> = None;
        for cmd in &pipe.cmds {
            let mut v = self.eval_command(dot, cmd, value)?;
            // An interface{} holding nil is dug out to an invalid value.
            if v == Some(Value::Nil) {
                v = None;
            }
            value = Some(v);
        }
        let value = value.unwrap_or(None);
        for name in &pipe.decl {
            if pipe.is_assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => {
                        return Err(self.error(
                            pipe.pos,
                            pipe,
                            format!("undefined variable: {name}"),
                        ))
                    }
                }
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn eval_command(&mut self, dot: &Ev, cmd: &Cmd, fin: Option<Ev>) -> XResult<Ev> {
        let first = &cmd.args[0];
        match first {
            Arg::Field(pos, idents) => {
                return self.eval_field_chain(dot, dot.clone(), *pos, first, idents, &cmd.args, fin)
            }
            Arg::Chain(pos, node, fields) => {
                if matches!(**node, Arg::Nil(_)) {
                    return Err(self.error(
                        *pos,
                        first,
                        format!("indirection through explicit nil in {first}"),
                    ));
                }
                let recv = self.eval_arg_raw(dot, node)?;
                return self.eval_field_chain(dot, recv, *pos, first, fields, &cmd.args, fin);
            }
            Arg::Ident(pos, f) => return self.eval_function(dot, *pos, *f, &cmd.args, fin),
            // Go 1.13 ignores any arguments after a parenthesized first
            // command ("{{(len .X) gt 0}}" prints the length); Go 1.14 made
            // that an error (golang/go#35974).
            Arg::Pipe(p) => return self.eval_pipeline(dot, p),
            Arg::Variable(pos, idents) => {
                let v = self.var_value(*pos, &idents[0])?;
                if idents.len() == 1 {
                    self.not_a_function(&cmd.args, &fin)?;
                    return Ok(v);
                }
                return self.eval_field_chain(dot, v, *pos, first, &idents[1..], &cmd.args, fin);
            }
            _ => {}
        }
        self.not_a_function(&cmd.args, &fin)?;
        Ok(match first {
            Arg::Bool(_, b) => Some(Value::Bool(*b)),
            Arg::Dot(_) => dot.clone(),
            Arg::Nil(pos) => return Err(self.error(*pos, first, "nil is not a command")),
            Arg::Number(_, _, v) => Some(v.clone()),
            Arg::Str(_, _, s) => Some(Value::Str(s.clone())),
            _ => unreachable!("handled above"),
        })
    }

    fn not_a_function(&self, args: &[Arg], fin: &Option<Ev>) -> XResult<()> {
        if args.len() > 1 || fin.is_some() {
            return Err(self.error(
                args[0].pos(),
                &args[0],
                format!("can't give argument to non-function {}", args[0]),
            ));
        }
        Ok(())
    }

    fn var_value(&self, pos: usize, name: &str) -> XResult<Ev> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.error(pos, &name, format!("undefined variable: {name}"))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_field_chain(
        &mut self,
        dot: &Ev,
        mut recv: Ev,
        pos: usize,
        node: &Arg,
        idents: &[String],
        args: &[Arg],
        fin: Option<Ev>,
    ) -> XResult<Ev> {
        let n = idents.len();
        for name in &idents[..n - 1] {
            recv = self.eval_field(dot, pos, node, name, &[], None, recv)?;
        }
        self.eval_field(dot, pos, node, &idents[n - 1], args, fin, recv)
    }

    /// exec.go, evalField: a method, a struct field or a map key.
    #[allow(clippy::too_many_arguments)]
    fn eval_field(
        &mut self,
        dot: &Ev,
        pos: usize,
        node: &Arg,
        name: &str,
        args: &[Arg],
        fin: Option<Ev>,
        recv: Ev,
    ) -> XResult<Ev> {
        let Some(recv) = recv else {
            return Ok(None);
        };
        if let Some(m) = method(&recv, name) {
            return self.eval_method(dot, pos, node, &recv, m, args, fin);
        }
        let has_args = args.len() > 1 || fin.is_some();
        match &recv {
            Value::Struct(..) => {
                if let Some(v) = struct_field(&recv, name) {
                    if has_args {
                        return Err(self.error(
                            pos,
                            node,
                            format!("{name} has arguments but cannot be invoked as function"),
                        ));
                    }
                    return Ok(Some(v.clone()));
                }
            }
            Value::Map(m) => {
                if has_args {
                    return Err(self.error(
                        pos,
                        node,
                        format!("{name} is not a method but has arguments"),
                    ));
                }
                return Ok(m.get(name).cloned());
            }
            Value::StrMap(m) => {
                if has_args {
                    return Err(self.error(
                        pos,
                        node,
                        format!("{name} is not a method but has arguments"),
                    ));
                }
                return Ok(m.get(name).map(|s| Value::Str(s.clone())));
            }
            Value::Nil => {
                return Err(self.error(
                    pos,
                    node,
                    format!("nil pointer evaluating interface {{}}.{name}"),
                ))
            }
            _ => {}
        }
        Err(self.error(
            pos,
            node,
            format!("can't evaluate field {name} in type {}", recv.type_name()),
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_method(
        &mut self,
        dot: &Ev,
        pos: usize,
        node: &Arg,
        recv: &Value,
        m: Method,
        args: &[Arg],
        fin: Option<Ev>,
    ) -> XResult<Ev> {
        let params = m.params();
        let given = args.len().saturating_sub(1) + usize::from(fin.is_some());
        if given != params.len() {
            return Err(self.error(
                pos,
                node,
                format!(
                    "wrong number of args for {}: want {} got {given}",
                    m.name(),
                    params.len()
                ),
            ));
        }
        let mut argv = Vec::with_capacity(given);
        for (a, p) in args.iter().skip(1).zip(params) {
            argv.push(self.eval_arg(dot, *p, a)?);
        }
        if let Some(f) = fin {
            argv.push(self.validate(pos, node, f, params[given - 1])?);
        }
        Ok(Some(call_method(recv, m, &argv)))
    }

    /// An argument evaluated with no type to meet (evalArg with a nil type).
    fn eval_arg_raw(&mut self, dot: &Ev, n: &Arg) -> XResult<Ev> {
        Ok(match n {
            Arg::Pipe(p) => self.eval_pipeline(dot, p)?,
            other => {
                let v = self.eval_arg(dot, Param::Iface, other)?;
                if v == Value::Nil {
                    None
                } else {
                    Some(v)
                }
            }
        })
    }

    /// exec.go, evalArg: evaluates an argument for a parameter.
    fn eval_arg(&mut self, dot: &Ev, p: Param, n: &Arg) -> XResult<Value> {
        let pos = n.pos();
        let ev = match n {
            Arg::Dot(_) => dot.clone(),
            Arg::Nil(_) => {
                if matches!(p, Param::Iface | Param::Val) {
                    return Ok(Value::Nil);
                }
                return Err(self.error(pos, n, format!("cannot assign nil to {}", p.go_type())));
            }
            Arg::Field(_, idents) => self.eval_field_chain(
                dot,
                dot.clone(),
                pos,
                n,
                idents,
                std::slice::from_ref(n),
                None,
            )?,
            Arg::Variable(_, idents) => {
                let v = self.var_value(pos, &idents[0])?;
                if idents.len() == 1 {
                    v
                } else {
                    self.eval_field_chain(dot, v, pos, n, &idents[1..], &[], None)?
                }
            }
            Arg::Pipe(pipe) => self.eval_pipeline(dot, pipe)?,
            Arg::Ident(_, f) => self.eval_function(dot, pos, *f, std::slice::from_ref(n), None)?,
            Arg::Chain(..) => {
                let cmd = Cmd {
                    pos,
                    args: vec![n.clone()],
                };
                self.eval_command(dot, &cmd, None)?
            }
            Arg::Bool(_, b) => match p {
                Param::Str | Param::Dur => {
                    return Err(self.error(pos, n, format!("expected {}; found {n}", kind_word(p))))
                }
                _ => return Ok(Value::Bool(*b)),
            },
            Arg::Number(_, _, v) => match (p, v) {
                (Param::Str, _) => {
                    return Err(self.error(pos, n, format!("expected string; found {n}")))
                }
                (Param::Dur, Value::Int(i)) => {
                    return Ok(Value::Duration(Duration::from_nanos((*i).max(0) as u64)))
                }
                (Param::Dur, _) => {
                    return Err(self.error(pos, n, format!("expected integer; found {n}")))
                }
                _ => return Ok(v.clone()),
            },
            Arg::Str(_, _, s) => match p {
                Param::Dur => {
                    return Err(self.error(pos, n, format!("expected integer; found {n}")))
                }
                _ => return Ok(Value::Str(s.clone())),
            },
        };
        self.validate(pos, n, ev, p)
    }

    /// exec.go, validateType.
    fn validate(&self, pos: usize, node: &dyn fmt::Display, v: Ev, p: Param) -> XResult<Value> {
        match (v, p) {
            // A reflect.Value parameter can be nil too (exec.go, canBeNil).
            (None, Param::Iface | Param::Val) => Ok(Value::Nil),
            (None, _) => Err(self.error(
                pos,
                node,
                format!("invalid value; expected {}", p.go_type()),
            )),
            (Some(v), Param::Iface | Param::Val) => Ok(v),
            (Some(v @ Value::Str(_)), Param::Str) => Ok(v),
            (Some(v @ Value::Duration(_)), Param::Dur) => Ok(v),
            (Some(v), _) => {
                let got = if v == Value::Nil {
                    "interface {}"
                } else {
                    v.type_name()
                };
                Err(self.error(
                    pos,
                    node,
                    format!("wrong type for value; expected {}; got {got}", p.go_type()),
                ))
            }
        }
    }

    /// exec.go, evalFunction and evalCall.
    fn eval_function(
        &mut self,
        dot: &Ev,
        pos: usize,
        f: Func,
        args: &[Arg],
        fin: Option<Ev>,
    ) -> XResult<Ev> {
        let node = &args[0];
        let (fixed, variadic) = signature(f);
        let nargs = args.len() - 1;
        let num_in = nargs + usize::from(fin.is_some());
        if variadic.is_some() {
            if num_in < fixed.len() {
                return Err(self.error(
                    pos,
                    node,
                    format!(
                        "wrong number of args for {}: want at least {} got {nargs}",
                        f.name(),
                        fixed.len()
                    ),
                ));
            }
        } else if num_in != fixed.len() {
            return Err(self.error(
                pos,
                node,
                format!(
                    "wrong number of args for {}: want {} got {num_in}",
                    f.name(),
                    fixed.len()
                ),
            ));
        }
        let param = |i: usize| fixed.get(i).copied().or(variadic).unwrap_or(Param::Iface);
        let mut argv = Vec::with_capacity(num_in);
        for (i, a) in args[1..].iter().enumerate() {
            argv.push(self.eval_arg(dot, param(i), a)?);
        }
        if let Some(v) = fin {
            argv.push(self.validate(pos, node, v, param(nargs))?);
        }
        call_builtin(f, argv)
            .map(Some)
            .map_err(|e| self.error(pos, node, format!("error calling {}: {e}", f.name())))
    }
}

fn node_pos(n: &Node) -> usize {
    match n {
        Node::Text { pos, .. } | Node::Action { pos, .. } | Node::Template { pos, .. } => *pos,
        Node::If(b) | Node::Range(b) | Node::With(b) => b.pos,
    }
}

fn kind_word(p: Param) -> &'static str {
    match p {
        Param::Dur => "integer",
        _ => "string",
    }
}
