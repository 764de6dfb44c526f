//! The parse tree: text/template/parse/node.go (Go 1.13) with the String
//! forms exec errors show, and the functions a template may call.

use std::fmt;

use super::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text {
        pos: usize,
        text: String,
    },
    Action {
        pos: usize,
        pipe: Pipe,
    },
    If(Branch),
    Range(Branch),
    With(Branch),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Branch {
    pub(super) pos: usize,
    pub(super) pipe: Pipe,
    pub(super) list: Vec<Node>,
    pub(super) else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pipe {
    pub(super) pos: usize,
    pub(super) is_assign: bool,
    pub(super) decl: Vec<String>,
    pub(super) cmds: Vec<Cmd>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cmd {
    pub(super) pos: usize,
    pub(super) args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
    Dot(usize),
    Nil(usize),
    Bool(usize, bool),
    /// The literal's text and its value as exec.go's idealConstant types it.
    Number(usize, String, Value),
    /// The quoted text and the unquoted string.
    Str(usize, String, String),
    /// `.A.B`.
    Field(usize, Vec<String>),
    /// `$x.A.B`: the variable name (with `$`) then the fields.
    Variable(usize, Vec<String>),
    Ident(usize, Func),
    Pipe(Box<Pipe>),
    /// `(pipeline).A.B`.
    Chain(usize, Box<Arg>, Vec<String>),
}

impl Arg {
    pub(super) fn pos(&self) -> usize {
        match self {
            Arg::Dot(p)
            | Arg::Nil(p)
            | Arg::Bool(p, _)
            | Arg::Number(p, ..)
            | Arg::Str(p, ..)
            | Arg::Field(p, _)
            | Arg::Variable(p, _)
            | Arg::Ident(p, _)
            | Arg::Chain(p, ..) => *p,
            Arg::Pipe(pipe) => pipe.pos,
        }
    }
}

/// node.go's String methods: how exec errors show the node they were at.
impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Dot(_) => f.write_str("."),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Bool(_, b) => write!(f, "{b}"),
            Arg::Number(_, text, _) | Arg::Str(_, text, _) => f.write_str(text),
            Arg::Field(_, idents) => idents.iter().try_for_each(|i| write!(f, ".{i}")),
            Arg::Variable(_, idents) => f.write_str(&idents.join(".")),
            Arg::Ident(_, func) => f.write_str(func.name()),
            Arg::Pipe(p) => write!(f, "({p})"),
            Arg::Chain(_, node, fields) => {
                match **node {
                    Arg::Pipe(_) => write!(f, "{node}")?,
                    _ => write!(f, "({node})")?,
                }
                fields.iter().try_for_each(|i| write!(f, ".{i}"))
            }
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The functions a template may call: text/template's builtins (funcs.go),
/// Kapacitor's `json`, and html/template's escapers, which only the escaper
/// inserts (escape.go, funcMap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    And,
    Call,
    Html,
    Index,
    Slice,
    Js,
    Len,
    Not,
    Or,
    Print,
    Printf,
    Println,
    Urlquery,
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
    Ne,
    Json,
    EvalArgs,
    AttrEscaper,
    CommentEscaper,
    CssEscaper,
    CssValueFilter,
    HtmlEscaper,
    HtmlNameFilter,
    JsRegexpEscaper,
    JsStrEscaper,
    JsValEscaper,
    NospaceEscaper,
    RcdataEscaper,
    SrcsetEscaper,
    UrlEscaper,
    UrlFilter,
    UrlNormalizer,
}

impl Func {
    pub(super) fn lookup(name: &str, html: bool) -> Option<Func> {
        Some(match name {
            "and" => Func::And,
            "call" => Func::Call,
            "html" => Func::Html,
            "index" => Func::Index,
            "slice" => Func::Slice,
            "js" => Func::Js,
            "len" => Func::Len,
            "not" => Func::Not,
            "or" => Func::Or,
            "print" => Func::Print,
            "printf" => Func::Printf,
            "println" => Func::Println,
            "urlquery" => Func::Urlquery,
            "eq" => Func::Eq,
            "ge" => Func::Ge,
            "gt" => Func::Gt,
            "le" => Func::Le,
            "lt" => Func::Lt,
            "ne" => Func::Ne,
            // Kapacitor gives `json` to the details template only (alert.go).
            "json" if html => Func::Json,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Func::And => "and",
            Func::Call => "call",
            Func::Html => "html",
            Func::Index => "index",
            Func::Slice => "slice",
            Func::Js => "js",
            Func::Len => "len",
            Func::Not => "not",
            Func::Or => "or",
            Func::Print => "print",
            Func::Printf => "printf",
            Func::Println => "println",
            Func::Urlquery => "urlquery",
            Func::Eq => "eq",
            Func::Ge => "ge",
            Func::Gt => "gt",
            Func::Le => "le",
            Func::Lt => "lt",
            Func::Ne => "ne",
            Func::Json => "json",
            Func::EvalArgs => "_eval_args_",
            Func::AttrEscaper => "_html_template_attrescaper",
            Func::CommentEscaper => "_html_template_commentescaper",
            Func::CssEscaper => "_html_template_cssescaper",
            Func::CssValueFilter => "_html_template_cssvaluefilter",
            Func::HtmlEscaper => "_html_template_htmlescaper",
            Func::HtmlNameFilter => "_html_template_htmlnamefilter",
            Func::JsRegexpEscaper => "_html_template_jsregexpescaper",
            Func::JsStrEscaper => "_html_template_jsstrescaper",
            Func::JsValEscaper => "_html_template_jsvalescaper",
            Func::NospaceEscaper => "_html_template_nospaceescaper",
            Func::RcdataEscaper => "_html_template_rcdataescaper",
            Func::SrcsetEscaper => "_html_template_srcsetescaper",
            Func::UrlEscaper => "_html_template_urlescaper",
            Func::UrlFilter => "_html_template_urlfilter",
            Func::UrlNormalizer => "_html_template_urlnormalizer",
        }
    }
}

/// How deep templates may call templates, and blocks and parentheses nest.
/// Go's maxExecDepth is 100000 on a growing stack; a fixed Rust stack (a
/// tokio worker's 2 MiB) holds far fewer frames, and alert templates need few.
pub(super) const MAX_DEPTH: usize = 100;
