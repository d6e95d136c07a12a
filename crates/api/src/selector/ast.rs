//! The parsed form of a selector: rendering to Calico's canonical string and evaluation.

use std::fmt::{self, Write};

use super::Labels;

/// A parsed selector expression.
///
/// Expressions inside a [`super::Selector`] come from the parser, so `And`/`Or` always have at
/// least two operands and `In`/`NotIn` value lists are sorted and free of duplicates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `all()` (and the empty selector): matches everything.
    All,
    /// `global()`: matches objects that are not namespaced. A plain label set carries no
    /// namespace, so — as in Calico — it evaluates to true; callers that scope selectors by
    /// namespace (e.g. `namespaceSelector`) check for it with [`Expr::is_global`].
    Global,
    /// `has(key)`
    Has(String),
    /// `key == "value"`
    Equals { key: String, value: String },
    /// `key != "value"` (true when the label is absent)
    NotEquals { key: String, value: String },
    /// `key contains "value"`
    Contains { key: String, value: String },
    /// `key starts with "value"`
    StartsWith { key: String, value: String },
    /// `key ends with "value"`
    EndsWith { key: String, value: String },
    /// `key in {"a", "b"}`
    In { key: String, values: Vec<String> },
    /// `key not in {"a", "b"}` (true when the label is absent)
    NotIn { key: String, values: Vec<String> },
    /// `!expr`
    Not(Box<Expr>),
    /// `a && b && ...`
    And(Vec<Expr>),
    /// `a || b || ...`
    Or(Vec<Expr>),
}

impl Expr {
    /// True for the bare `global()` expression.
    pub fn is_global(&self) -> bool {
        matches!(self, Expr::Global)
    }

    /// True if `global()` appears anywhere in the expression.
    pub fn uses_global(&self) -> bool {
        match self {
            Expr::Global => true,
            Expr::Not(inner) => inner.uses_global(),
            Expr::And(items) | Expr::Or(items) => items.iter().any(Expr::uses_global),
            _ => false,
        }
    }

    /// Evaluates the expression; never allocates.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(key) => labels.get_label(key).is_some(),
            Expr::Equals { key, value } => labels.get_label(key) == Some(value.as_str()),
            Expr::NotEquals { key, value } => labels.get_label(key) != Some(value.as_str()),
            Expr::Contains { key, value } => labels
                .get_label(key)
                .is_some_and(|v| v.contains(value.as_str())),
            Expr::StartsWith { key, value } => labels
                .get_label(key)
                .is_some_and(|v| v.starts_with(value.as_str())),
            Expr::EndsWith { key, value } => labels
                .get_label(key)
                .is_some_and(|v| v.ends_with(value.as_str())),
            Expr::In { key, values } => labels
                .get_label(key)
                .is_some_and(|v| sorted_contains(values, v)),
            Expr::NotIn { key, values } => !labels
                .get_label(key)
                .is_some_and(|v| sorted_contains(values, v)),
            Expr::Not(operand) => !operand.matches(labels),
            Expr::And(operands) => operands.iter().all(|operand| operand.matches(labels)),
            Expr::Or(operands) => operands.iter().any(|operand| operand.matches(labels)),
        }
    }

    /// Writes Calico's canonical rendering: `&&`/`||` groups are always parenthesised, values
    /// use double quotes unless they contain one, sets are sorted and comma-space separated.
    pub(crate) fn write_canonical<W: Write>(&self, out: &mut W) -> fmt::Result {
        match self {
            Expr::All => out.write_str("all()"),
            Expr::Global => out.write_str("global()"),
            Expr::Has(key) => write!(out, "has({key})"),
            Expr::Equals { key, value } => write_comparison(out, key, "==", value),
            Expr::NotEquals { key, value } => write_comparison(out, key, "!=", value),
            Expr::Contains { key, value } => write_comparison(out, key, "contains", value),
            Expr::StartsWith { key, value } => write_comparison(out, key, "starts with", value),
            Expr::EndsWith { key, value } => write_comparison(out, key, "ends with", value),
            Expr::In { key, values } => write_set(out, key, "in", values),
            Expr::NotIn { key, values } => write_set(out, key, "not in", values),
            Expr::Not(operand) => {
                out.write_char('!')?;
                if let Expr::Not(_) = operand.as_ref() {
                    // The parser folds `!!x` into `x`, so a double negation needs parentheses
                    // to survive a round trip.
                    out.write_char('(')?;
                    operand.write_canonical(out)?;
                    out.write_char(')')
                } else {
                    operand.write_canonical(out)
                }
            }
            Expr::And(operands) => write_group(out, operands, " && "),
            Expr::Or(operands) => write_group(out, operands, " || "),
        }
    }
}

/// Binary search over a sorted list of `String`s by `&str`, without allocating.
fn sorted_contains(values: &[String], wanted: &str) -> bool {
    values
        .binary_search_by(|probe| probe.as_str().cmp(wanted))
        .is_ok()
}

fn write_quoted<W: Write>(out: &mut W, value: &str) -> fmt::Result {
    // There are no escapes; a value can hold one kind of quote, so pick the other one.
    let quote = if value.contains('"') { '\'' } else { '"' };
    out.write_char(quote)?;
    out.write_str(value)?;
    out.write_char(quote)
}

fn write_comparison<W: Write>(out: &mut W, key: &str, operator: &str, value: &str) -> fmt::Result {
    write!(out, "{key} {operator} ")?;
    write_quoted(out, value)
}

fn write_set<W: Write>(out: &mut W, key: &str, operator: &str, values: &[String]) -> fmt::Result {
    write!(out, "{key} {operator} {{")?;
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            out.write_str(", ")?;
        }
        write_quoted(out, value)?;
    }
    out.write_char('}')
}

fn write_group<W: Write>(out: &mut W, operands: &[Expr], separator: &str) -> fmt::Result {
    out.write_char('(')?;
    for (index, operand) in operands.iter().enumerate() {
        if index > 0 {
            out.write_str(separator)?;
        }
        operand.write_canonical(out)?;
    }
    out.write_char(')')
}
