//! The template lexer: text/template/parse/lex.go (Go 1.13), run in one
//! pass into a list of tokens.

use std::fmt;

use super::strconv::go_quote;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tk {
    Text,
    LeftDelim,
    RightDelim,
    Space,
    Assign,
    Declare,
    Pipe,
    LeftParen,
    RightParen,
    Char,
    String,
    RawString,
    CharConst,
    Number,
    Complex,
    Bool,
    Dot,
    Nil,
    Field,
    Variable,
    Identifier,
    // Keywords.
    Block,
    Define,
    Else,
    End,
    If,
    Range,
    Template,
    With,
    Error,
    Eof,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: Tk,
    pub(super) pos: usize,
    pub(super) val: String,
}

impl Token {
    fn is_keyword(&self) -> bool {
        matches!(
            self.kind,
            Tk::Block
                | Tk::Define
                | Tk::Else
                | Tk::End
                | Tk::If
                | Tk::Range
                | Tk::Template
                | Tk::With
        ) || (self.kind == Tk::Dot && self.val == ".")
            || self.kind == Tk::Nil
    }
}

/// lex.go, item.String: how parse errors quote a token.
impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Tk::Eof => f.write_str("EOF"),
            Tk::Error => f.write_str(&self.val),
            _ if self.is_keyword() => write!(f, "<{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                write!(f, "{}...", go_quote(&head, false))
            }
            _ => f.write_str(&go_quote(&self.val, false)),
        }
    }
}

const LEFT_DELIM: &str = "{{";
const RIGHT_DELIM: &str = "}}";
// Go 1.13 requires exactly one ASCII space between the marker and the delimiter.
const LEFT_TRIM: &str = "- ";
const RIGHT_TRIM: &str = " -";
const SPACE_CHARS: &[char] = &[' ', '\t', '\r', '\n'];

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_end_of_line(c: char) -> bool {
    c == '\r' || c == '\n'
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    start: usize,
    paren_depth: i32,
    toks: Vec<Token>,
}

enum LexState {
    Text,
    InsideAction,
    Done,
}

/// Lexes the whole input; the token list ends with Eof or Error.
pub(super) fn lex(src: &str) -> Vec<Token> {
    let mut l = Lexer {
        src,
        pos: 0,
        start: 0,
        paren_depth: 0,
        toks: Vec::new(),
    };
    let mut state = LexState::Text;
    loop {
        state = match state {
            LexState::Text => l.lex_text(),
            LexState::InsideAction => l.lex_inside_action(),
            LexState::Done => return l.toks,
        }
    }
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn emit(&mut self, kind: Tk) {
        self.toks.push(Token {
            kind,
            pos: self.start,
            val: self.src[self.start..self.pos].to_string(),
        });
        self.start = self.pos;
    }

    fn error(&mut self, msg: String) -> LexState {
        self.toks.push(Token {
            kind: Tk::Error,
            pos: self.start,
            val: msg,
        });
        LexState::Done
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn lex_text(&mut self) -> LexState {
        if let Some(x) = self.rest().find(LEFT_DELIM) {
            let delim = self.pos + x;
            let after = &self.src[delim + LEFT_DELIM.len()..];
            let mut end = delim;
            if after.starts_with(LEFT_TRIM) {
                end = self.src[self.start..delim]
                    .trim_end_matches(SPACE_CHARS)
                    .len()
                    + self.start;
            }
            if end > self.start {
                self.pos = end;
                self.emit(Tk::Text);
            }
            self.pos = delim;
            self.start = delim;
            return self.lex_left_delim();
        }
        self.pos = self.src.len();
        if self.pos > self.start {
            self.emit(Tk::Text);
        }
        self.emit(Tk::Eof);
        LexState::Done
    }

    /// (delim, trim): whether a right delimiter, possibly trim-marked, is next.
    fn at_right_delim(&self) -> (bool, bool) {
        let r = self.rest();
        if r.starts_with(RIGHT_TRIM) && r[RIGHT_TRIM.len()..].starts_with(RIGHT_DELIM) {
            (true, true)
        } else {
            (r.starts_with(RIGHT_DELIM), false)
        }
    }

    fn lex_left_delim(&mut self) -> LexState {
        self.pos += LEFT_DELIM.len();
        let trim = self.rest().starts_with(LEFT_TRIM);
        let after = if trim { LEFT_TRIM.len() } else { 0 };
        if self.rest()[after..].starts_with("/*") {
            self.pos += after;
            self.start = self.pos;
            return self.lex_comment();
        }
        self.emit(Tk::LeftDelim);
        self.pos += after;
        self.start = self.pos;
        self.paren_depth = 0;
        LexState::InsideAction
    }

    fn lex_comment(&mut self) -> LexState {
        self.pos += 2;
        let Some(i) = self.rest().find("*/") else {
            return self.error("unclosed comment".into());
        };
        self.pos += i + 2;
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.error("comment ends before closing delimiter".into());
        }
        if trim {
            self.pos += RIGHT_TRIM.len();
        }
        self.pos += RIGHT_DELIM.len();
        if trim {
            self.pos += self.rest().len() - self.rest().trim_start_matches(SPACE_CHARS).len();
        }
        self.start = self.pos;
        LexState::Text
    }

    fn lex_right_delim(&mut self) -> LexState {
        let trim = self.rest().starts_with(RIGHT_TRIM);
        if trim {
            self.pos += RIGHT_TRIM.len();
            self.start = self.pos;
        }
        self.pos += RIGHT_DELIM.len();
        self.emit(Tk::RightDelim);
        if trim {
            self.pos += self.rest().len() - self.rest().trim_start_matches(SPACE_CHARS).len();
            self.start = self.pos;
        }
        LexState::Text
    }

    fn lex_inside_action(&mut self) -> LexState {
        if self.at_right_delim().0 {
            if self.paren_depth == 0 {
                return self.lex_right_delim();
            }
            return self.error("unclosed left paren".into());
        }
        let Some(r) = self.next() else {
            return self.error("unclosed action".into());
        };
        match r {
            _ if is_end_of_line(r) => return self.error("unclosed action".into()),
            _ if is_space(r) => {
                self.pos -= 1;
                return self.lex_space();
            }
            '=' => self.emit(Tk::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.error("expected :=".into());
                }
                self.emit(Tk::Declare);
            }
            '|' => self.emit(Tk::Pipe),
            '"' => return self.lex_quote(),
            '`' => return self.lex_raw_quote(),
            '$' => return self.lex_field_or_variable(Tk::Variable),
            '\'' => return self.lex_char(),
            '.' if !matches!(self.peek(), Some('0'..='9')) => {
                return self.lex_field_or_variable(Tk::Field)
            }
            '.' | '+' | '-' | '0'..='9' => {
                self.pos -= 1;
                return self.lex_number();
            }
            _ if is_alphanumeric(r) => {
                self.pos -= r.len_utf8();
                return self.lex_identifier();
            }
            '(' => {
                self.emit(Tk::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.error(format!("unexpected right paren {}", sharp_u(r)));
                }
                self.emit(Tk::RightParen);
            }
            _ if r.is_ascii() && !r.is_ascii_control() => self.emit(Tk::Char),
            _ => return self.error(format!("unrecognized character in action: {}", sharp_u(r))),
        }
        LexState::InsideAction
    }

    fn lex_space(&mut self) -> LexState {
        let mut n = 0;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
            n += 1;
        }
        // A trim-marked right delimiter starts with a space: leave it whole.
        let before = &self.src[self.pos - 1..];
        if before.starts_with(RIGHT_TRIM) && before[RIGHT_TRIM.len()..].starts_with(RIGHT_DELIM) {
            self.pos -= 1;
            if n == 1 {
                return self.lex_right_delim();
            }
        }
        self.emit(Tk::Space);
        LexState::InsideAction
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(r) => {
                is_space(r)
                    || is_end_of_line(r)
                    || matches!(r, '.' | ',' | '|' | ':' | ')' | '(')
                    || RIGHT_DELIM.starts_with(r)
            }
        }
    }

    fn lex_field_or_variable(&mut self, kind: Tk) -> LexState {
        if self.at_terminator() {
            self.emit(if kind == Tk::Variable {
                Tk::Variable
            } else {
                Tk::Dot
            });
            return LexState::InsideAction;
        }
        while self.peek().is_some_and(is_alphanumeric) {
            self.next();
        }
        if !self.at_terminator() {
            let r = self.peek().unwrap_or('\u{0}');
            return self.error(format!("bad character {}", sharp_u(r)));
        }
        self.emit(kind);
        LexState::InsideAction
    }

    fn lex_identifier(&mut self) -> LexState {
        while self.peek().is_some_and(is_alphanumeric) {
            self.next();
        }
        if !self.at_terminator() {
            let r = self.peek().unwrap_or('\u{0}');
            return self.error(format!("bad character {}", sharp_u(r)));
        }
        let kind = match &self.src[self.start..self.pos] {
            "block" => Tk::Block,
            "define" => Tk::Define,
            "else" => Tk::Else,
            "end" => Tk::End,
            "if" => Tk::If,
            "range" => Tk::Range,
            "nil" => Tk::Nil,
            "template" => Tk::Template,
            "with" => Tk::With,
            "true" | "false" => Tk::Bool,
            _ => Tk::Identifier,
        };
        self.emit(kind);
        LexState::InsideAction
    }

    fn lex_char(&mut self) -> LexState {
        loop {
            match self.next() {
                Some('\\') => {
                    if matches!(self.next(), None | Some('\n')) {
                        return self.error("unterminated character constant".into());
                    }
                }
                None | Some('\n') => return self.error("unterminated character constant".into()),
                Some('\'') => break,
                _ => {}
            }
        }
        self.emit(Tk::CharConst);
        LexState::InsideAction
    }

    fn lex_quote(&mut self) -> LexState {
        loop {
            match self.next() {
                Some('\\') => {
                    if matches!(self.next(), None | Some('\n')) {
                        return self.error("unterminated quoted string".into());
                    }
                }
                None | Some('\n') => return self.error("unterminated quoted string".into()),
                Some('"') => break,
                _ => {}
            }
        }
        self.emit(Tk::String);
        LexState::InsideAction
    }

    fn lex_raw_quote(&mut self) -> LexState {
        match self.rest().find('`') {
            Some(i) => self.pos += i + 1,
            None => return self.error("unterminated raw quoted string".into()),
        }
        self.emit(Tk::RawString);
        LexState::InsideAction
    }

    fn lex_number(&mut self) -> LexState {
        if !self.scan_number() {
            let text = self.src[self.start..self.pos].to_string();
            return self.error(format!("bad number syntax: {}", go_quote(&text, false)));
        }
        if matches!(self.peek(), Some('+' | '-')) {
            // Complex: 1+2i.
            if !self.scan_number() || !self.src[..self.pos].ends_with('i') {
                let text = self.src[self.start..self.pos].to_string();
                return self.error(format!("bad number syntax: {}", go_quote(&text, false)));
            }
            self.emit(Tk::Complex);
        } else {
            self.emit(Tk::Number);
        }
        LexState::InsideAction
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alphanumeric) {
            self.next();
            return false;
        }
        true
    }
}

/// fmt's `%#U`: `U+0029 ')'`.
fn sharp_u(r: char) -> String {
    format!("U+{:04X} '{}'", r as u32, r)
}
