//! The public `Template`: parsed as text/template, or as html/template and
//! escaped, then rendered.

use std::collections::HashMap;

use super::error::{RenderError, TemplateError};
use super::escape::escape_template;
use super::exec::execute;
use super::node::Node;
use super::parser::parse_tree;
use super::value::Value;

/// A parsed Go template, ready to render.
#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    root: Vec<Node>,
    /// Named templates (`define`, `block`); in html templates, their escaped
    /// copies under mangled names.
    defs: HashMap<String, Vec<Node>>,
}

impl Template {
    /// Parses a text/template, as Kapacitor parses `id` and `message`.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let (root, defs) = parse_tree(src, false)?;
        Ok(Template {
            src: src.to_string(),
            root,
            defs: defs.into_iter().collect(),
        })
    }

    /// Parses an html/template with Kapacitor's `json` function, as Kapacitor
    /// parses `details`, and escapes it for its HTML contexts.
    pub fn parse_html(src: &str) -> Result<Template, TemplateError> {
        let (root, defs) = parse_tree(src, true)?;
        let defs: HashMap<String, Vec<Node>> = defs.into_iter().collect();
        let (root, derived) = escape_template(src, &root, &defs)?;
        Ok(Template {
            src: src.to_string(),
            root,
            defs: derived,
        })
    }

    /// The source text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Executes the template on `data` (Go's `Execute`).
    pub fn render(&self, data: &Value) -> Result<String, RenderError> {
        execute(&self.src, &self.defs, &self.root, data)
    }
}
