//! A TICKscript as Kapacitor builds it: statements (`var`, `dbrp`, chains)
//! parsed into a graph of nodes (`|from()`, `|window()`, ...) each with its
//! property calls (`.period(1m)`), numbered in creation order as Kapacitor
//! names them (`stream0`, `from1`, ...).
//!
//! Follows the grammar of `tick/ast/parser.go` (Kapacitor 1.5.7): a chain
//! starts at `stream`, `batch` or a variable, and goes on with `|node()`
//! (a new node), `.property()` (on the last node) and `@udf()`.

use crate::alert::tick::script::{self, ScriptTok, Spanned};

/// A position in the script: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// An argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(String),
    Number(String),
    Duration(String),
    Bool(bool),
    /// `lambda: ...`: the expression's source and its tokens.
    Lambda(String, Vec<ScriptTok>),
    /// A name: a variable, or `stream`/`batch`.
    Ident(String),
    Reference(String),
    Regex(String),
    Star,
    List(Vec<Arg>),
}

/// `.name(args)` or `|name(args)`.
#[derive(Debug, Clone)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
    pub pos: Pos,
}

/// One node of the pipeline.
#[derive(Debug, Clone)]
pub struct Node {
    /// Kapacitor's node kind: `stream`, `from`, `window`, `sum`, `alert`...
    pub kind: String,
    /// Kapacitor's name for it: kind and creation index (`alert5`).
    pub name: String,
    pub pos: Pos,
    pub parent: Option<usize>,
    /// `@udf()` nodes are user functions.
    pub udf: bool,
    /// The node's own arguments (`|sum('count')`).
    pub args: Vec<Arg>,
    /// Property calls, in order.
    pub props: Vec<Call>,
}

/// What a script holds: its nodes, in creation order, and where its
/// `dbrp` statements are.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub nodes: Vec<Node>,
    pub dbrp: Vec<Pos>,
}

impl Pipeline {
    pub fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.parent == Some(i))
            .map(|(c, _)| c)
    }
}

/// A syntax error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Line and column of byte offset `at` in `src`.
pub fn pos_of(src: &str, at: usize) -> Pos {
    let before = &src[..at.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line,
        col: before[line_start..].chars().count() + 1,
    }
}

/// A variable's value: a node, or a literal.
#[derive(Clone)]
enum Bound {
    Node(usize),
    Value(Arg),
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Spanned>,
    i: usize,
    vars: Vec<(String, Bound)>,
    out: Pipeline,
}

/// Parses a TICKscript into its pipeline.
pub fn parse(src: &str) -> Result<Pipeline, SyntaxError> {
    let toks = script::tokens(src).map_err(|e| SyntaxError {
        pos: pos_of(src, e.pos),
        message: e.message,
    })?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        vars: Vec::new(),
        out: Pipeline::default(),
    };
    while p.i < p.toks.len() {
        p.statement()?;
    }
    Ok(p.out)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&ScriptTok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn here(&self) -> Pos {
        let at = self.toks.get(self.i).map_or(self.src.len(), |t| t.start);
        pos_of(self.src, at)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            pos: self.here(),
            message: message.into(),
        })
    }

    fn describe(&self) -> String {
        match self.toks.get(self.i) {
            Some(t) => format!("{:?}", &self.src[t.start..t.end]),
            None => "the end of the script".to_string(),
        }
    }

    fn expect(&mut self, want: ScriptTok, what: &str) -> Result<(), SyntaxError> {
        if self.peek() == Some(&want) {
            self.i += 1;
            Ok(())
        } else {
            self.error(format!("expected {what}, found {}", self.describe()))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, SyntaxError> {
        match self.peek() {
            Some(ScriptTok::Ident(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => self.error(format!("expected {what}, found {}", self.describe())),
        }
    }

    fn statement(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(ScriptTok::Dbrp) => {
                let pos = self.here();
                self.i += 1;
                self.dbrp_name()?;
                self.expect(ScriptTok::Dot, "'.' between database and retention policy")?;
                self.dbrp_name()?;
                self.out.dbrp.push(pos);
                Ok(())
            }
            Some(ScriptTok::Var) => {
                self.i += 1;
                let name = self.ident("a variable name")?;
                if self.peek() != Some(&ScriptTok::Asgn) {
                    return self.error(format!(
                        "variable {name:?} has no value: template variables (`var x type`) are not converted, give it a value"
                    ));
                }
                self.i += 1;
                let value = self.expression()?;
                self.vars.retain(|(n, _)| *n != name);
                self.vars.push((name, value));
                Ok(())
            }
            _ => self.expression().map(|_| ()),
        }
    }

    fn dbrp_name(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(ScriptTok::Reference(_)) => {
                self.i += 1;
                Ok(())
            }
            _ => self.error(format!(
                "expected a double-quoted name after dbrp, found {}",
                self.describe()
            )),
        }
    }

    fn var(&self, name: &str) -> Option<&Bound> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
    }

    fn new_node(&mut self, kind: &str, pos: Pos, parent: Option<usize>, udf: bool) -> usize {
        let id = self.out.nodes.len();
        self.out.nodes.push(Node {
            kind: kind.to_string(),
            name: format!("{kind}{id}"),
            pos,
            parent,
            udf,
            args: Vec::new(),
            props: Vec::new(),
        });
        id
    }

    /// A chain, or a literal (the value of a `var`).
    fn expression(&mut self) -> Result<Bound, SyntaxError> {
        let pos = self.here();
        let mut current = match self.peek().cloned() {
            Some(ScriptTok::Ident(name)) => {
                self.i += 1;
                match name.as_str() {
                    "stream" | "batch" => {
                        // One source node per script, as Kapacitor's.
                        match self.out.nodes.iter().position(|n| n.kind == name) {
                            Some(i) => i,
                            None => self.new_node(&name, pos, None, false),
                        }
                    }
                    _ => match self.var(&name) {
                        Some(Bound::Node(i)) => *i,
                        Some(Bound::Value(v)) if !self.chain_follows() => {
                            return Ok(Bound::Value(v.clone()))
                        }
                        Some(Bound::Value(_)) => {
                            return self.error(format!("variable {name:?} is not a node"))
                        }
                        None => {
                            let at = pos;
                            return Err(SyntaxError {
                                pos: at,
                                message: format!("undefined variable {name:?}"),
                            });
                        }
                    },
                }
            }
            _ => return self.arg().map(Bound::Value),
        };
        while let Some(t) = self.peek().cloned() {
            let chain = match t {
                ScriptTok::Pipe | ScriptTok::Dot | ScriptTok::At => t,
                _ => break,
            };
            let pos = self.here();
            self.i += 1;
            let name = self.ident("a node or property name")?;
            let args = self.args()?;
            match chain {
                ScriptTok::Pipe | ScriptTok::At => {
                    let id = self.new_node(&name, pos, Some(current), chain == ScriptTok::At);
                    self.out.nodes[id].args = args;
                    current = id;
                }
                _ => self.out.nodes[current].props.push(Call { name, args, pos }),
            }
        }
        Ok(Bound::Node(current))
    }

    fn chain_follows(&self) -> bool {
        matches!(
            self.peek(),
            Some(ScriptTok::Pipe | ScriptTok::Dot | ScriptTok::At)
        )
    }

    /// `(arg, arg, ...)`.
    fn args(&mut self) -> Result<Vec<Arg>, SyntaxError> {
        self.expect(ScriptTok::LParen, "'('")?;
        let mut args = Vec::new();
        if self.peek() == Some(&ScriptTok::RParen) {
            self.i += 1;
            return Ok(args);
        }
        loop {
            args.push(self.arg()?);
            match self.peek() {
                Some(ScriptTok::Comma) => self.i += 1,
                Some(ScriptTok::RParen) => {
                    self.i += 1;
                    return Ok(args);
                }
                _ => {
                    return self.error(format!(
                        "expected ',' or ')' after an argument, found {}",
                        self.describe()
                    ))
                }
            }
        }
    }

    fn arg(&mut self) -> Result<Arg, SyntaxError> {
        let Some(t) = self.toks.get(self.i).cloned() else {
            return self.error("expected a value, found the end of the script");
        };
        self.i += 1;
        Ok(match t.tok {
            ScriptTok::Str(s) => Arg::Str(s),
            ScriptTok::Number(s) => Arg::Number(s),
            ScriptTok::Op(op) if op == "-" => match self.arg()? {
                Arg::Number(n) => Arg::Number(format!("-{n}")),
                Arg::Duration(d) => Arg::Duration(format!("-{d}")),
                _ => {
                    self.i -= 1;
                    return self.error("expected a number after '-'");
                }
            },
            ScriptTok::Duration(s) => Arg::Duration(s),
            ScriptTok::Bool(b) => Arg::Bool(b),
            ScriptTok::Reference(s) => Arg::Reference(s),
            ScriptTok::Regex(s) => Arg::Regex(s),
            ScriptTok::Star => Arg::Star,
            ScriptTok::Ident(name) => match self.var(&name) {
                Some(Bound::Value(v)) => v.clone(),
                _ => Arg::Ident(name),
            },
            ScriptTok::Lambda => self.lambda(t.end)?,
            ScriptTok::LBracket => {
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(&ScriptTok::RBracket) {
                        self.i += 1;
                        break;
                    }
                    items.push(self.arg()?);
                    match self.peek() {
                        Some(ScriptTok::Comma) => self.i += 1,
                        Some(ScriptTok::RBracket) => {}
                        _ => return self.error("expected ',' or ']' in a list"),
                    }
                }
                Arg::List(items)
            }
            _ => {
                self.i -= 1;
                return self.error(format!("expected a value, found {}", self.describe()));
            }
        })
    }

    /// A lambda's expression: every token up to the `,` or `)` that ends
    /// the argument (parentheses nest).
    fn lambda(&mut self, body_start: usize) -> Result<Arg, SyntaxError> {
        let first = self.i;
        let mut depth = 0usize;
        while let Some(t) = self.toks.get(self.i) {
            match t.tok {
                ScriptTok::LParen => depth += 1,
                ScriptTok::RParen if depth == 0 => break,
                ScriptTok::RParen => depth -= 1,
                ScriptTok::Comma if depth == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        if self.i == first {
            return self.error("a lambda needs an expression");
        }
        let end = self.toks[self.i - 1].end;
        let text = self.src[body_start..end].trim().to_string();
        let toks = self.toks[first..self.i]
            .iter()
            .map(|t| t.tok.clone())
            .collect();
        Ok(Arg::Lambda(text, toks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_numbered_as_kapacitor_names_them() {
        let src = "dbrp \"toptraffic\".\"autogen\"\nvar s = stream\n|from()\n.measurement('combined')\n|window()\n.period(1m)\n|sum('count')\n.as('totalCount')\ns\n|alert()\n.warn(lambda: \"totalCount\" > 17500)\ns\n|alert()\n.crit(lambda: \"totalCount\" > 22500)\n";
        let p = parse(src).unwrap();
        let names: Vec<&str> = p.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            ["stream0", "from1", "window2", "sum3", "alert4", "alert5"]
        );
        assert_eq!(p.nodes[4].parent, Some(3));
        assert_eq!(p.nodes[5].parent, Some(3));
        assert_eq!(p.nodes[3].args, vec![Arg::Str("count".into())]);
        let warn = &p.nodes[4].props[0];
        assert_eq!(warn.name, "warn");
        assert_eq!(warn.pos, Pos { line: 11, col: 1 });
        match &warn.args[0] {
            Arg::Lambda(text, _) => assert_eq!(text, "\"totalCount\" > 17500"),
            a => panic!("{a:?}"),
        }
        assert_eq!(p.dbrp, vec![Pos { line: 1, col: 1 }]);
    }

    #[test]
    fn a_variable_holding_a_value_is_its_value_where_used() {
        let p = parse("var p = 2m\nstream|from().measurement('m')|window().period(p)").unwrap();
        assert_eq!(p.nodes[2].props[0].args, vec![Arg::Duration("2m".into())]);
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let e = parse("stream\n|from(\n.x()").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        let e = parse("nope|from()").unwrap_err();
        assert_eq!(e.message, "undefined variable \"nope\"");
    }
}
