//! Go text/template (and html/template escaping) for alert ids, messages and details.
//!
//! Kapacitor 1.5.7 parses `id` and `message` with text/template and `details`
//! with html/template plus one function, `json` (alert.go, newAlertNode), and
//! was built with Go 1.13 (Dockerfile_build_ubuntu64). Users' templates must
//! render byte for byte as they did there, so this module reproduces Go 1.13's
//! behaviour: the lexer and parser of text/template/parse (lex.go, parse.go),
//! the evaluation rules of text/template (exec.go, funcs.go), fmt's `%v` and
//! printf verbs (fmt/print.go, fmt/format.go, strconv/ftoa.go), encoding/json
//! (encode.go) and html/template's contextual escaping of HTML text,
//! attributes, JavaScript and CSS (escape.go, transition.go, html.go, url.go,
//! attr.go, js.go, css.go). Comments name the Go file each rule comes from.
//!
//! Usage: parse once at configuration load ([`Template::parse`],
//! [`Template::parse_html`]); render per event with the data that
//! [`AlertInfo`] builds, which mirrors Kapacitor's `idInfo`, `messageInfo` and
//! `detailsInfo`.

mod compile;
mod context;
mod error;
mod escape;
mod escapers;
mod exec;
mod funcs;
mod gofmt;
mod js;
mod json;
mod lexer;
mod methods;
mod node;
mod parser;
mod signature;
mod strconv;
#[cfg(test)]
mod tests;
mod time;
mod transition;
mod value;

pub(crate) use compile::Template;
pub(crate) use error::RenderError;
pub(crate) use value::{group_of, AlertInfo, ServerInfo};
