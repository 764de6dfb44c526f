//! The tokens of a whole TICKscript, for `toptraffic import`: the lambda
//! lexer (`tick/ast/lex.go` covers whole scripts: `var`, `dbrp`, `|`, `.`,
//! `@`, `=`) with its literals decoded as `tick/ast/node.go` does.

use super::lexer::{lex, TokKind};
use super::parser::string_literal;

/// One token of a TICKscript, its literal decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ScriptTok {
    Ident(String),
    /// A double-quoted name (`"totalCount"`, and dbrp's names).
    Reference(String),
    /// A string literal, unquoted (`'a'`, `'''raw'''`).
    Str(String),
    /// A number as written.
    Number(String),
    /// A duration as written (`5m`, `10s`, `500ms`).
    Duration(String),
    Regex(String),
    Bool(bool),
    /// `lambda:`; the expression follows as ordinary tokens.
    Lambda,
    Var,
    Dbrp,
    Pipe,
    Dot,
    At,
    Asgn,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Star,
    /// Any operator (`AND`, `==`, `>`, `!`, ...), as written.
    Op(String),
}

/// A token and its byte range in the script.
#[derive(Debug, Clone)]
pub(crate) struct Spanned {
    pub(crate) tok: ScriptTok,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A lexing error: its byte offset and Kapacitor's message.
#[derive(Debug, Clone)]
pub(crate) struct LexError {
    pub(crate) pos: usize,
    pub(crate) message: String,
}

/// Lexes a whole TICKscript.
pub(crate) fn tokens(src: &str) -> Result<Vec<Spanned>, LexError> {
    let mut out = Vec::new();
    for t in lex(src) {
        let text = &src[t.pos..t.end];
        let tok = match t.kind {
            TokKind::Eof => break,
            TokKind::Error(message) => {
                return Err(LexError {
                    pos: t.pos,
                    message,
                })
            }
            TokKind::Ident => ScriptTok::Ident(text.to_string()),
            TokKind::Reference => {
                ScriptTok::Reference(text[1..text.len() - 1].replace("\\\"", "\""))
            }
            TokKind::Number => ScriptTok::Number(text.to_string()),
            TokKind::Duration => ScriptTok::Duration(text.to_string()),
            TokKind::Str => ScriptTok::Str(string_literal(text)),
            TokKind::Regex => ScriptTok::Regex(text.to_string()),
            TokKind::LParen => ScriptTok::LParen,
            TokKind::RParen => ScriptTok::RParen,
            TokKind::LBracket => ScriptTok::LBracket,
            TokKind::RBracket => ScriptTok::RBracket,
            TokKind::Comma => ScriptTok::Comma,
            TokKind::Pipe => ScriptTok::Pipe,
            TokKind::At => ScriptTok::At,
            TokKind::Dot => ScriptTok::Dot,
            TokKind::Star => ScriptTok::Star,
            TokKind::Not | TokKind::Op(_) => ScriptTok::Op(text.to_string()),
            TokKind::Asgn => ScriptTok::Asgn,
            TokKind::True => ScriptTok::Bool(true),
            TokKind::False => ScriptTok::Bool(false),
            TokKind::Lambda => ScriptTok::Lambda,
            TokKind::Var => ScriptTok::Var,
            TokKind::Dbrp => ScriptTok::Dbrp,
        };
        out.push(Spanned {
            tok,
            start: t.pos,
            end: t.end,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_lexes_with_its_literals_decoded() {
        let src = "var s = stream\n|from().measurement('combined')\n|window().period(1m)\n|alert().warn(lambda: \"totalCount\" > 17500).message('''a 'b' {{ .ID }}''')";
        let toks: Vec<ScriptTok> = tokens(src).unwrap().into_iter().map(|t| t.tok).collect();
        use ScriptTok::*;
        assert_eq!(
            toks,
            vec![
                Var,
                Ident("s".into()),
                Asgn,
                Ident("stream".into()),
                Pipe,
                Ident("from".into()),
                LParen,
                RParen,
                Dot,
                Ident("measurement".into()),
                LParen,
                Str("combined".into()),
                RParen,
                Pipe,
                Ident("window".into()),
                LParen,
                RParen,
                Dot,
                Ident("period".into()),
                LParen,
                Duration("1m".into()),
                RParen,
                Pipe,
                Ident("alert".into()),
                LParen,
                RParen,
                Dot,
                Ident("warn".into()),
                LParen,
                Lambda,
                Reference("totalCount".into()),
                Op(">".into()),
                Number("17500".into()),
                RParen,
                Dot,
                Ident("message".into()),
                LParen,
                Str("a 'b' {{ .ID }}".into()),
                RParen,
            ]
        );
    }

    #[test]
    fn an_unterminated_string_is_an_error_at_its_start() {
        let e = tokens("stream|from().measurement('x)").unwrap_err();
        assert_eq!(e.pos, 26);
    }
}
