//! The lambda's tokens, lexed as Kapacitor does.
//!
//! Follows `tick/ast/lex.go`: the tokens and the lexer's two states.
//! Operators are only recognised right after an operand
//! (`tryLexBinaryOperator`), which is how `/` is division after an operand
//! and a regex elsewhere.

use super::types::BinOp;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokKind {
    Eof,
    /// A lexing error; lexing stops there, and the parser reports it when it
    /// reaches it, as Kapacitor's concurrent lexer does.
    Error(String),
    Ident,
    Reference,
    Number,
    Duration,
    Str,
    Regex,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Pipe,
    At,
    Dot,
    /// `*` where a value is expected; `*` after an operand is `Op(Mul)`.
    Star,
    Not,
    Asgn,
    True,
    False,
    Lambda,
    Var,
    Dbrp,
    /// A binary operator; `Op(Sub)` is also unary minus.
    Op(BinOp),
}

#[derive(Debug, Clone)]
pub(super) struct Tok {
    pub(super) kind: TokKind,
    pub(super) pos: usize,
    pub(super) end: usize,
}

/// `Ok(Some(after_operand))` tells which state lexes next, `Ok(None)` that
/// the end was reached.
type Step = Result<Option<bool>, (usize, String)>;

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    toks: Vec<Tok>,
}

pub(super) fn lex(src: &str) -> Vec<Tok> {
    let mut lx = Lexer {
        src,
        pos: 0,
        toks: Vec::new(),
    };
    let mut after_operand = false;
    loop {
        let step = if after_operand {
            lx.operator()
        } else {
            lx.token()
        };
        match step {
            Ok(Some(next)) => after_operand = next,
            Ok(None) => break,
            Err((pos, message)) => {
                lx.toks.push(Tok {
                    kind: TokKind::Error(message),
                    pos,
                    end: pos,
                });
                break;
            }
        }
    }
    lx.toks
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.bump();
        }
        hit
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn emit(&mut self, kind: TokKind, start: usize) {
        self.toks.push(Tok {
            kind,
            pos: start,
            end: self.pos,
        });
    }

    /// `tryLexBinaryOperator`: after an operand, an operator or else a token.
    fn operator(&mut self) -> Step {
        self.skip_space();
        let start = self.pos;
        let op = match self.peek() {
            Some('+') => BinOp::Add,
            Some('-') => BinOp::Sub,
            Some('*') => BinOp::Mul,
            Some('%') => BinOp::Mod,
            Some('/') if self.peek2() == Some('/') => {
                self.comment();
                return Ok(Some(false));
            }
            Some('/') => BinOp::Div,
            Some('!') => {
                self.bump();
                if self.eat('=') {
                    self.emit(TokKind::Op(BinOp::Ne), start);
                } else if self.eat('~') {
                    self.emit(TokKind::Op(BinOp::RegexNe), start);
                    return self.regex_after_match();
                } else {
                    self.emit(TokKind::Not, start);
                }
                return Ok(Some(false));
            }
            Some(c @ ('<' | '>')) => {
                self.bump();
                let op = match (c, self.eat('=')) {
                    ('<', false) => BinOp::Lt,
                    ('<', true) => BinOp::Le,
                    (_, false) => BinOp::Gt,
                    (_, true) => BinOp::Ge,
                };
                self.emit(TokKind::Op(op), start);
                return Ok(Some(false));
            }
            Some('=') => {
                self.bump();
                if self.eat('~') {
                    self.emit(TokKind::Op(BinOp::RegexEq), start);
                } else if self.eat('=') {
                    self.emit(TokKind::Op(BinOp::Eq), start);
                    return Ok(Some(false));
                } else {
                    self.emit(TokKind::Asgn, start);
                }
                return self.regex_after_match();
            }
            // Not an operator: Kapacitor backs up and lexes a token.
            _ => return Ok(Some(false)),
        };
        self.bump();
        self.emit(TokKind::Op(op), start);
        Ok(Some(false))
    }

    fn regex_after_match(&mut self) -> Step {
        self.skip_space();
        if self.peek() == Some('/') {
            return self.regex();
        }
        Ok(Some(false))
    }

    /// `lexToken`: where a value is expected.
    fn token(&mut self) -> Step {
        loop {
            let start = self.pos;
            let Some(c) = self.bump() else {
                self.emit(TokKind::Eof, start);
                return Ok(None);
            };
            let (kind, after_operand) = match c {
                '-' => (TokKind::Op(BinOp::Sub), false),
                '!' => (TokKind::Not, false),
                '.' | '0'..='9' => return self.number(start),
                '"' => return self.reference(start),
                '\'' => return self.string(start),
                '(' => (TokKind::LParen, false),
                ')' => (TokKind::RParen, true),
                '[' => (TokKind::LBracket, false),
                ']' => (TokKind::RBracket, false),
                '|' => (TokKind::Pipe, false),
                '@' => (TokKind::At, false),
                ',' => (TokKind::Comma, false),
                '*' => (TokKind::Star, false),
                '/' => {
                    self.pos = start;
                    if self.peek2() == Some('/') {
                        self.comment();
                        continue;
                    }
                    return self.regex();
                }
                c if c.is_whitespace() => continue,
                c if c.is_alphabetic() => return self.ident(start),
                c => return Err((start, self.unexpected_char(c))),
            };
            self.emit(kind, start);
            return Ok(Some(after_operand));
        }
    }

    fn unexpected_char(&self, c: char) -> String {
        if matches!(self.toks.last(), Some(t) if t.kind == TokKind::Regex) {
            return format!(
                "unexpected {c:?} after a regex: Kapacitor reads no operator right after a regex literal, put the match in parentheses"
            );
        }
        match c {
            '&' => "unexpected '&': the logical operators are AND and OR".to_string(),
            '=' | '<' | '>' | '+' | '%' | '~' => format!("unexpected {c:?}, expected a value"),
            _ => format!("unexpected character {c:?}"),
        }
    }

    /// `lexNumberOrDurationOrDot`: a duration is digits then a unit, with
    /// no decimal point.
    fn number(&mut self, start: usize) -> Step {
        self.pos = start;
        let mut found_decimal = false;
        let mut first = true;
        loop {
            match self.peek() {
                Some('.') => {
                    self.bump();
                    if first && !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.emit(TokKind::Dot, start);
                        return Ok(Some(false));
                    }
                    if found_decimal {
                        return Err((start, "multiple decimals in number".to_string()));
                    }
                    found_decimal = true;
                }
                Some(c) if c.is_ascii_digit() => {
                    self.bump();
                }
                Some(c) if !found_decimal && "uµsmhdw".contains(c) => {
                    self.bump();
                    if c == 'm' {
                        self.eat('s');
                    }
                    self.emit(TokKind::Duration, start);
                    return Ok(Some(true));
                }
                _ => {
                    self.emit(TokKind::Number, start);
                    return Ok(Some(true));
                }
            }
            first = false;
        }
    }

    fn ident(&mut self, start: usize) -> Step {
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.bump();
        }
        let kind = match &self.src[start..self.pos] {
            "AND" => TokKind::Op(BinOp::And),
            "OR" => TokKind::Op(BinOp::Or),
            "TRUE" => TokKind::True,
            "FALSE" => TokKind::False,
            "var" => TokKind::Var,
            "dbrp" => TokKind::Dbrp,
            // `lambda` is an identifier unless a colon follows.
            "lambda" if self.eat(':') => TokKind::Lambda,
            _ => TokKind::Ident,
        };
        self.emit(kind, start);
        Ok(Some(true))
    }

    fn reference(&mut self, start: usize) -> Step {
        loop {
            match self.bump() {
                Some('\\') => {
                    self.eat('"');
                }
                Some('"') => {
                    self.emit(TokKind::Reference, start);
                    return Ok(Some(true));
                }
                Some(_) => {}
                None => return Err((start, "unterminated field reference".to_string())),
            }
        }
    }

    /// `lexSingleOrTripleString`, quirks included: inside `'''...'''` the
    /// count of closing quotes seen so far decides what a backslash does.
    fn string(&mut self, start: usize) -> Step {
        let mut count = 1;
        if self.eat('\'') {
            if self.eat('\'') {
                count = 3;
            } else {
                self.emit(TokKind::Str, start);
                return Ok(Some(true));
            }
        }
        let total = count;
        loop {
            match self.bump() {
                Some('\\') if count == 1 => {
                    self.eat('\'');
                }
                Some('\'') => {
                    count -= 1;
                    if count == 0 {
                        self.emit(TokKind::Str, start);
                        return Ok(Some(true));
                    }
                }
                Some(_) => count = total,
                None => return Err((start, "unterminated string".to_string())),
            }
        }
    }

    /// `lexRegex`, at the opening slash. The lexer goes back to expecting a
    /// value afterwards, hence no operator right after a regex.
    fn regex(&mut self) -> Step {
        let start = self.pos;
        self.bump();
        loop {
            match self.bump() {
                Some('\\') => {
                    self.eat('/');
                }
                Some('/') => {
                    self.emit(TokKind::Regex, start);
                    return Ok(Some(false));
                }
                Some(_) => {}
                None => return Err((start, "unterminated regex".to_string())),
            }
        }
    }

    /// `lexComment`: to the end of the line, and on through following lines
    /// that start with a slash.
    fn comment(&mut self) {
        self.bump();
        self.bump();
        while let Some(c) = self.bump() {
            if c == '\n' {
                while self.peek().is_some_and(|c| c != '\n' && c.is_whitespace()) {
                    self.bump();
                }
                if self.peek() != Some('/') {
                    break;
                }
            }
        }
    }
}
