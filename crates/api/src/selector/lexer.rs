//! Tokenizer for the selector language.
//!
//! Like Calico's tokenizer it is context sensitive: directly after a label it looks for an
//! operator keyword (`in`, `not in`/`notin`, `contains`, `starts with`, `ends with`) instead of
//! another label, and `has(`, `all(` and `global(` are recognised as single tokens.

use super::SelectorError;

/// Calico treats only spaces and tabs as whitespace (a newline is an unexpected character).
fn is_whitespace(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// Characters allowed in a label key: `[A-Za-z0-9_./-]`.
pub(crate) fn is_label_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'/' | b'-')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind<'a> {
    Label(&'a str),
    Str(&'a str),
    Has(&'a str),
    All,
    Global,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Not,
    And,
    Or,
    Eof,
}

impl TokenKind<'_> {
    /// How the token is named in error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            TokenKind::Label(key) => format!("label '{key}'"),
            TokenKind::Str(value) => format!("string '{value}'"),
            TokenKind::Has(key) => format!("'has({key})'"),
            TokenKind::All => "'all()'".to_string(),
            TokenKind::Global => "'global()'".to_string(),
            TokenKind::Eof => "end of selector".to_string(),
            other => format!("'{}'", other.operator_text()),
        }
    }

    /// The source spelling of punctuation and operator tokens.
    pub(crate) fn operator_text(&self) -> &'static str {
        match self {
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::LBrace => "{",
            TokenKind::RBrace => "}",
            TokenKind::Comma => ",",
            TokenKind::Eq => "==",
            TokenKind::Ne => "!=",
            TokenKind::In => "in",
            TokenKind::NotIn => "not in",
            TokenKind::Contains => "contains",
            TokenKind::StartsWith => "starts with",
            TokenKind::EndsWith => "ends with",
            TokenKind::Not => "!",
            TokenKind::And => "&&",
            TokenKind::Or => "||",
            TokenKind::Label(_)
            | TokenKind::Str(_)
            | TokenKind::Has(_)
            | TokenKind::All
            | TokenKind::Global
            | TokenKind::Eof => "",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub kind: TokenKind<'a>,
    /// Byte offset of the token's first character in the selector.
    pub position: usize,
}

fn error(position: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        position,
        message: message.into(),
    }
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.input.as_bytes();
        while self.pos < bytes.len() && is_whitespace(bytes[self.pos]) {
            self.pos += 1;
        }
    }

    /// Consumes `keyword` if the remaining input starts with it.
    fn eat(&mut self, keyword: &str) -> bool {
        if self.rest().starts_with(keyword) {
            self.pos += keyword.len();
            true
        } else {
            false
        }
    }

    /// Consumes a (possibly empty) run of label characters.
    fn label(&mut self) -> &'a str {
        let start = self.pos;
        let bytes = self.input.as_bytes();
        while self.pos < bytes.len() && is_label_char(bytes[self.pos]) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    fn string(&mut self, quote: char) -> Result<&'a str, SelectorError> {
        let start = self.pos;
        self.pos += 1;
        match self.rest().find(quote) {
            Some(len) => {
                let value = &self.input[self.pos..self.pos + len];
                self.pos += len + 1;
                Ok(value)
            }
            None => Err(error(start, "unterminated string")),
        }
    }

    /// Reads the closing `)` of `all(`, `global(` or `has(<label>`.
    fn close_paren(&mut self, opener: &str) -> Result<(), SelectorError> {
        self.skip_whitespace();
        if self.eat(")") {
            Ok(())
        } else {
            Err(error(self.pos, format!("expected ')' to close '{opener}'")))
        }
    }

    /// Reads the operator keyword that must follow a label.
    fn operator_after_label(
        &mut self,
        label: &str,
        start: usize,
    ) -> Result<TokenKind<'a>, SelectorError> {
        let unknown = |position| {
            error(
                position,
                format!(
                    "unknown operator after label '{label}' (expected ==, !=, in, not in, \
                     contains, starts with or ends with)"
                ),
            )
        };
        // Two-word operators may have any amount of whitespace (even none) between the words.
        let second_word = |lexer: &mut Self, word: &str, kind| {
            lexer.skip_whitespace();
            if lexer.eat(word) {
                Ok(kind)
            } else {
                Err(unknown(start))
            }
        };
        if self.eat("contains") {
            Ok(TokenKind::Contains)
        } else if self.eat("starts") {
            second_word(self, "with", TokenKind::StartsWith)
        } else if self.eat("ends") {
            second_word(self, "with", TokenKind::EndsWith)
        } else if self.eat("not") {
            second_word(self, "in", TokenKind::NotIn)
        } else if self.eat("in") {
            Ok(TokenKind::In)
        } else {
            Err(unknown(start))
        }
    }

    fn next_token(&mut self, previous: Option<TokenKind<'a>>) -> Result<Token<'a>, SelectorError> {
        self.skip_whitespace();
        let start = self.pos;
        let token = |kind| {
            Ok(Token {
                kind,
                position: start,
            })
        };
        let Some(&first) = self.input.as_bytes().get(start) else {
            return token(TokenKind::Eof);
        };
        let two_char = |lexer: &mut Self, full: &str, kind| {
            if lexer.eat(full) {
                Ok(kind)
            } else {
                Err(error(
                    start,
                    format!("unknown operator '{}', expected '{full}'", &full[..1]),
                ))
            }
        };
        let kind = match first {
            b'(' => {
                self.pos += 1;
                TokenKind::LParen
            }
            b')' => {
                self.pos += 1;
                TokenKind::RParen
            }
            b'{' => {
                self.pos += 1;
                TokenKind::LBrace
            }
            b'}' => {
                self.pos += 1;
                TokenKind::RBrace
            }
            b',' => {
                self.pos += 1;
                TokenKind::Comma
            }
            b'"' => TokenKind::Str(self.string('"')?),
            b'\'' => TokenKind::Str(self.string('\'')?),
            b'=' => two_char(self, "==", TokenKind::Eq)?,
            b'&' => two_char(self, "&&", TokenKind::And)?,
            b'|' => two_char(self, "||", TokenKind::Or)?,
            b'!' => {
                if self.eat("!=") {
                    TokenKind::Ne
                } else {
                    self.pos += 1;
                    TokenKind::Not
                }
            }
            _ => {
                if let Some(TokenKind::Label(label)) = previous {
                    self.operator_after_label(label, start)?
                } else if self.eat("has(") {
                    self.skip_whitespace();
                    let key = self.label();
                    if key.is_empty() {
                        return Err(error(self.pos, "expected a label name after 'has('"));
                    }
                    self.close_paren("has(")?;
                    TokenKind::Has(key)
                } else if self.eat("all(") {
                    self.close_paren("all(")?;
                    TokenKind::All
                } else if self.eat("global(") {
                    self.close_paren("global(")?;
                    TokenKind::Global
                } else {
                    let label = self.label();
                    if label.is_empty() {
                        let found = self.rest().chars().next().unwrap_or(' ');
                        return Err(error(start, format!("unexpected character {found:?}")));
                    }
                    TokenKind::Label(label)
                }
            }
        };
        token(kind)
    }
}

/// Splits a selector into tokens; the last token is always [`TokenKind::Eof`].
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token<'_>>, SelectorError> {
    let mut lexer = Lexer { input, pos: 0 };
    let mut tokens: Vec<Token<'_>> = Vec::new();
    loop {
        let token = lexer.next_token(tokens.last().map(|t| t.kind))?;
        tokens.push(token);
        if token.kind == TokenKind::Eof {
            return Ok(tokens);
        }
    }
}
