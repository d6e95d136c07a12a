//! Recursive-descent parser: `||` binds loosest, then `&&`, then prefix `!`.
//!
//! Mirrors Calico's parser: runs of `!` collapse (an even number cancels out), chains of `&&`
//! and `||` become one n-ary node, and redundant parentheses leave no trace in the tree.

use super::SelectorError;
use super::ast::Expr;
use super::lexer::{Token, TokenKind, tokenize};

/// Deepest parenthesis nesting accepted; keeps the recursive parser, evaluator and renderer
/// far away from stack exhaustion on hostile input.
pub const MAX_NESTING: usize = 128;

pub(crate) fn parse(input: &str) -> Result<Expr, SelectorError> {
    let tokens = tokenize(input)?;
    let mut parser = Parser {
        tokens: &tokens,
        next: 0,
        depth: 0,
    };
    if parser.peek().kind == TokenKind::Eof {
        return Ok(Expr::All);
    }
    let expr = parser.or_expression()?;
    let trailing = parser.peek();
    match trailing.kind {
        TokenKind::Eof => Ok(expr),
        TokenKind::RParen => Err(error(
            trailing,
            "unbalanced parentheses: ')' without a matching '('".to_string(),
        )),
        other => Err(error(
            trailing,
            format!(
                "unexpected {} after a complete expression (expected '&&', '||' or the end)",
                other.describe()
            ),
        )),
    }
}

fn error(token: Token<'_>, message: String) -> SelectorError {
    SelectorError {
        position: token.position,
        message,
    }
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    next: usize,
    depth: usize,
}

impl<'a> Parser<'_, 'a> {
    /// The current token; the tokenizer guarantees the list ends with `Eof`, which is never
    /// consumed, so this stays in bounds.
    fn peek(&self) -> Token<'a> {
        let last = self.tokens.len().saturating_sub(1);
        self.tokens
            .get(self.next.min(last))
            .copied()
            .unwrap_or(Token {
                kind: TokenKind::Eof,
                position: 0,
            })
    }

    fn advance(&mut self) -> Token<'a> {
        let token = self.peek();
        if token.kind != TokenKind::Eof {
            self.next += 1;
        }
        token
    }

    fn or_expression(&mut self) -> Result<Expr, SelectorError> {
        let mut operands = vec![self.and_expression()?];
        while self.peek().kind == TokenKind::Or {
            self.advance();
            operands.push(self.and_expression()?);
        }
        Ok(single_or(operands, Expr::Or))
    }

    fn and_expression(&mut self) -> Result<Expr, SelectorError> {
        let mut operands = vec![self.operation()?];
        while self.peek().kind == TokenKind::And {
            self.advance();
            operands.push(self.operation()?);
        }
        Ok(single_or(operands, Expr::And))
    }

    /// One possibly negated term: a label comparison, `has()`, `all()`, `global()` or a
    /// parenthesised expression.
    fn operation(&mut self) -> Result<Expr, SelectorError> {
        let mut negated = false;
        while self.peek().kind == TokenKind::Not {
            self.advance();
            negated = !negated;
        }
        let token = self.advance();
        let expr = match token.kind {
            TokenKind::Has(key) => Expr::Has(key.to_string()),
            TokenKind::All => Expr::All,
            TokenKind::Global => Expr::Global,
            TokenKind::Label(key) => self.label_operation(key)?,
            TokenKind::LParen => self.parenthesised(token)?,
            TokenKind::Eof => {
                return Err(error(
                    token,
                    "unexpected end of selector, expected an expression".to_string(),
                ));
            }
            other => {
                return Err(error(
                    token,
                    format!(
                        "expected a label, has(), all(), global(), '!' or '(' but found {}",
                        other.describe()
                    ),
                ));
            }
        };
        Ok(if negated {
            Expr::Not(Box::new(expr))
        } else {
            expr
        })
    }

    fn parenthesised(&mut self, open: Token<'a>) -> Result<Expr, SelectorError> {
        if self.depth >= MAX_NESTING {
            return Err(error(
                open,
                format!("parentheses nested more than {MAX_NESTING} deep"),
            ));
        }
        self.depth += 1;
        let inner = self.or_expression()?;
        self.depth -= 1;
        let close = self.advance();
        if close.kind != TokenKind::RParen {
            return Err(error(
                close,
                format!(
                    "unbalanced parentheses: expected ')' to close the '(' at byte {} but found {}",
                    open.position,
                    close.kind.describe()
                ),
            ));
        }
        Ok(inner)
    }

    fn label_operation(&mut self, key: &str) -> Result<Expr, SelectorError> {
        let operator = self.advance();
        let key = key.to_string();
        let expr = match operator.kind {
            TokenKind::Eq => Expr::Equals {
                key,
                value: self.string_after(operator)?,
            },
            TokenKind::Ne => Expr::NotEquals {
                key,
                value: self.string_after(operator)?,
            },
            TokenKind::Contains => Expr::Contains {
                key,
                value: self.string_after(operator)?,
            },
            TokenKind::StartsWith => Expr::StartsWith {
                key,
                value: self.string_after(operator)?,
            },
            TokenKind::EndsWith => Expr::EndsWith {
                key,
                value: self.string_after(operator)?,
            },
            TokenKind::In => Expr::In {
                key,
                values: self.set_after(operator)?,
            },
            TokenKind::NotIn => Expr::NotIn {
                key,
                values: self.set_after(operator)?,
            },
            other => {
                return Err(error(
                    operator,
                    format!(
                        "expected an operator after label '{key}' (==, !=, in, not in, contains, \
                         starts with or ends with) but found {}",
                        other.describe()
                    ),
                ));
            }
        };
        Ok(expr)
    }

    fn string_after(&mut self, operator: Token<'a>) -> Result<String, SelectorError> {
        let token = self.advance();
        match token.kind {
            TokenKind::Str(value) => Ok(value.to_string()),
            other => Err(error(
                token,
                format!(
                    "expected a string after '{}' but found {}",
                    operator.kind.operator_text(),
                    other.describe()
                ),
            )),
        }
    }

    /// Parses `{"a", "b"}`; like Calico, a trailing comma and the empty set are allowed.
    /// Returns the values sorted and de-duplicated.
    fn set_after(&mut self, operator: Token<'a>) -> Result<Vec<String>, SelectorError> {
        let open = self.advance();
        if open.kind != TokenKind::LBrace {
            return Err(error(
                open,
                format!(
                    "expected '{{' after '{}' but found {}",
                    operator.kind.operator_text(),
                    open.kind.describe()
                ),
            ));
        }
        let mut values = Vec::new();
        let mut expecting_value = true;
        loop {
            match self.peek().kind {
                TokenKind::Str(value) if expecting_value => {
                    values.push(value.to_string());
                    expecting_value = false;
                }
                TokenKind::Comma if !expecting_value => expecting_value = true,
                _ => break,
            }
            self.advance();
        }
        let close = self.advance();
        if close.kind != TokenKind::RBrace {
            let expected = if expecting_value {
                "a string or '}'"
            } else {
                "',' or '}'"
            };
            return Err(error(
                close,
                format!(
                    "expected {expected} in the set opened at byte {} but found {}",
                    open.position,
                    close.kind.describe()
                ),
            ));
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }
}

fn single_or(operands: Vec<Expr>, group: fn(Vec<Expr>) -> Expr) -> Expr {
    match <[Expr; 1]>::try_from(operands) {
        Ok([only]) => only,
        Err(operands) => group(operands),
    }
}
