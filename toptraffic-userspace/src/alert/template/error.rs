//! Parse and render errors, located by line and column in the template's
//! source.

/// A template that does not parse (or, for html templates, cannot be escaped).
/// `msg` is Go's message; `line` and `col` (1-based, col in bytes) locate
/// `pos`, a byte offset into the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {msg}")]
pub struct TemplateError {
    pub pos: usize,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// A template that failed while rendering, as Go's exec errors read:
/// the place, the node being evaluated and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: executing at <{node}>: {msg}")]
pub struct RenderError {
    pub pos: usize,
    pub line: usize,
    pub col: usize,
    pub node: String,
    pub msg: String,
}

pub(super) fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src.as_bytes()[..pos.min(src.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
    (line, col)
}

pub(super) fn template_error(src: &str, pos: usize, msg: impl Into<String>) -> TemplateError {
    let (line, col) = line_col(src, pos);
    TemplateError {
        pos,
        line,
        col,
        msg: msg.into(),
    }
}
