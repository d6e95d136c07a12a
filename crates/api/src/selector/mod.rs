//! Calico's label selector language: parser, canonical form and evaluator.
//!
//! ```text
//! expr      := and ( "||" and )*
//! and       := operation ( "&&" operation )*
//! operation := "!"* ( "(" expr ")" | "all()" | "global()" | "has(" key ")"
//!                   | key ("==" | "!=" | "contains" | "starts with" | "ends with") string
//!                   | key ("in" | "not in" | "notin") "{" [ string ("," string)* [","] ] "}" )
//! key       := [A-Za-z0-9_./-]+
//! string    := '"' [^"]* '"' | "'" [^']* "'"
//! ```
//!
//! An empty (or blank) selector means `all()`. Whitespace is spaces and tabs, as in Calico.
//! A parsed [`Selector`] is evaluated against any [`Labels`] without allocating.

mod ast;
mod lexer;
mod parser;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

pub use ast::Expr;
pub use parser::MAX_NESTING;

/// Something with labels a selector can be evaluated against.
pub trait Labels {
    fn get_label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn get_label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<T: Labels + ?Sized> Labels for &T {
    fn get_label(&self, key: &str) -> Option<&str> {
        (**self).get_label(key)
    }
}

/// A selector that failed to parse; `position` is the byte offset of the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

/// A parsed selector. Equality and hashing are structural, which is the same as comparing
/// canonical strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    expr: Expr,
}

impl Selector {
    /// Parses a selector; an empty or blank string is `all()`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        parser::parse(input).map(|expr| Selector { expr })
    }

    /// The selector that matches everything.
    pub fn all() -> Selector {
        Selector { expr: Expr::All }
    }

    /// True if this is exactly `all()` (or was written as an empty selector).
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    /// True if this is exactly `global()`, Calico's marker for "non-namespaced objects".
    pub fn is_global(&self) -> bool {
        self.expr.is_global()
    }

    /// True if `global()` appears anywhere in the selector.
    pub fn uses_global(&self) -> bool {
        self.expr.uses_global()
    }

    /// The parsed expression tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Evaluates the selector against a set of labels. Does not allocate.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.expr.matches(labels)
    }

    /// Calico's canonical rendering, e.g. `(app == "web" && tier in {"a", "b"})`.
    /// `Selector::parse(&s.canonical())` yields a selector equal to `s`.
    pub fn canonical(&self) -> String {
        self.to_string()
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::all()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.write_canonical(f)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Selector::parse(input)
    }
}

/// Serialised as its canonical string.
impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Deserialised from a selector string; parse errors become deserialisation errors.
impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        Selector::parse(&text).map_err(serde::de::Error::custom)
    }
}
