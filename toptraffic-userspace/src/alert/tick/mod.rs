//! Kapacitor lambda expressions (TICKscript `lambda:`): parse once, evaluate per key.
//!
//! Users paste alert conditions from their TICKscripts, so this is a port of
//! the lambda language of Kapacitor 1.5.7, not a look-alike. Files followed
//! (github.com/influxdata/kapacitor at tag v1.5.7):
//!
//! - `tick/ast/lex.go`: the tokens and the lexer's two states. Operators are
//!   only recognised right after an operand (`tryLexBinaryOperator`), which is
//!   how `/` is division after an operand and a regex elsewhere.
//! - `tick/ast/parser.go`: `ParseLambda`, `primary`, the precedence table and
//!   its operator-precedence loop, function arguments (`lfunction`).
//! - `tick/ast/node.go`: literals (octal integers, `\'`, `\"` and `\/` as the
//!   only escapes), durations via influxql's `ParseDuration` (vendored in
//!   `vendor/github.com/influxdata/influxdb/influxql/parser.go`).
//! - `tick/stateful/evaluation_funcs.go`: the (operator, left type, right
//!   type) table, the only source of the int/float mixing rules.
//! - `tick/stateful/eval_binary_node.go`, `eval_unary_node.go`,
//!   `node_evaluator.go`: constant typing, errors found when the task is
//!   compiled, runtime type errors and their messages.
//! - `tick/stateful/eval_function_node.go`, `functions.go`: the built-in
//!   functions, their signatures and messages.
//! - `expr.go` (`fillScope`): how a point's fields and tags become references.
//!
//! Kapacitor rules kept on purpose, some surprising:
//!
//! - Comparisons mix int and float freely, arithmetic does not:
//!   `"totalCount" / 60` is an error for a float field, write `/ 60.0`.
//!   Integer division truncates, `%` is for ints only.
//! - There is no `NOT` keyword: `NOT (...)` parses as a call of an undefined
//!   function. Logical not is `!`, which like `-` binds to the next operand
//!   only: `!"a" == 'x'` is `(!"a") == 'x'`.
//! - Unary `-` on a boolean negates it (`-TRUE` is `FALSE`).
//! - Keywords are upper case only (`AND`, `OR`, `TRUE`, `FALSE`).
//! - Single-quoted strings know one escape, `\'`; `'\n'` is a backslash and an n.
//! - An integer literal with a leading zero is octal (`010` is 8).
//! - Durations are `u`/`µ`, `ms`, `s`, `m`, `h`, `d`, `w` (no `us`, no `ns`).
//! - No operator may follow a regex literal directly: `"a" =~ /x/ == TRUE`
//!   is a syntax error, `("a" =~ /x/) == TRUE` is fine.
//! - A name that is both a field and a tag is an error, not a precedence.
//! - `AND`/`OR` short-circuit, but both operands are type-checked first.
//! - The math functions take floats only (`abs(-5)` is an error), `min` and
//!   `max` included; `log` is the natural logarithm.
//!
//! Type errors between constants are reported by [`Expr::parse`], as
//! Kapacitor does when it compiles the task; those that depend on a key's
//! values are reported by evaluation.
//!
//! The files, from the bottom up: `types` (value types, operators and the
//! table of which operator takes which types), `gocompat` (the Go and
//! influxql behaviours the port must match), `gomath` (Go's `math` as
//! Kapacitor's amd64 build computes it, to the last bit), `goregex` (Go's
//! regexp syntax, checked as Go parses it and run by the regex crate), `error`, `lexer`, `functions`,
//! `parser` (the syntax tree), `eval`, and `expr`, the face the crate uses;
//! `script` lexes whole TICKscripts for `toptraffic import`.

mod error;
mod eval;
mod expr;
mod functions;
mod gocompat;
mod gomath;
mod goregex;
mod lexer;
mod parser;
pub(crate) mod script;
mod types;

#[cfg(test)]
mod tests;

pub(crate) use eval::Env;
pub(crate) use expr::Expr;
