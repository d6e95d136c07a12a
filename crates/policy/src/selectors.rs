//! Selector rewriting as Calico does it before selectors reach the label index: namespace and
//! service-account selectors become selectors over `pcns.`/`pcsa.` labels inherited from the
//! `kns.<namespace>`/`ksa.<namespace>.<sa>` profiles, and namespaced selectors are scoped to
//! their namespace.

use std::fmt::Write;

use calico_api::selector::Expr;
use calico_api::{Selector, SelectorError};

/// Label Calico puts on every namespaced endpoint and network set: its namespace.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// Label Calico puts on workload endpoints: the orchestrator (`k8s`, `cni`, ...).
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// Label Calico puts on workload endpoints that run as a service account.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// Prefix of the namespace labels a `kns.<namespace>` profile hands to its endpoints.
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";
/// Prefix of the service-account labels a `ksa.<namespace>.<sa>` profile hands to its endpoints.
pub const SERVICE_ACCOUNT_LABEL_PREFIX: &str = "pcsa.";
/// The label (after its prefix) carrying the namespace's or service account's own name.
pub const NAMESPACE_NAME_LABEL: &str = "projectcalico.org/name";

/// Calico only adds the service-account label when the name fits a label value.
pub(crate) const MAX_SERVICE_ACCOUNT_LABEL_LEN: usize = 63;

/// Parses a selector field: absent or blank means `None` (no constraint).
pub(crate) fn parse_optional(text: Option<&str>) -> Result<Option<Selector>, SelectorError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Selector::parse(text).map(Some),
    }
}

/// How `all()` and `global()` are read while prefixing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrefixMode {
    /// A namespace selector: `all()` means "any namespace" and `global()` "no namespace", so both
    /// are rewritten in terms of the namespace label (`all()` alone would also select global objects).
    Namespace,
    /// Any other selector: `all()` stays `all()`.
    Plain,
}

/// `selector` with every label key prefixed, e.g. `env == "x"` → `pcns.env == "x"`.
pub(crate) fn prefixed(
    selector: &Selector,
    prefix: &str,
    mode: PrefixMode,
) -> Result<Selector, SelectorError> {
    let mut text = String::new();
    render(selector.expr(), prefix, mode, &mut text);
    Selector::parse(&text)
}

/// The conjunction of `parts`; `None` when there are none.
pub(crate) fn and_all(parts: &[Selector]) -> Result<Option<Selector>, SelectorError> {
    match parts {
        [] => Ok(None),
        [only] => Ok(Some(only.clone())),
        _ => {
            let text = parts
                .iter()
                .map(|part| format!("({part})"))
                .collect::<Vec<_>>()
                .join(" && ");
            Selector::parse(&text).map(Some)
        }
    }
}

/// `projectcalico.org/namespace == "<namespace>"`.
pub(crate) fn in_namespace(namespace: &str) -> Result<Selector, SelectorError> {
    let mut text = String::new();
    write_comparison(&mut text, "", NAMESPACE_LABEL, "==", namespace);
    Selector::parse(&text)
}

/// `projectcalico.org/serviceaccount in {names...}`.
pub(crate) fn service_account_named(names: &[String]) -> Result<Selector, SelectorError> {
    let mut text = String::new();
    write_set(&mut text, "", SERVICE_ACCOUNT_LABEL, "in", names);
    Selector::parse(&text)
}

fn render(expr: &Expr, prefix: &str, mode: PrefixMode, out: &mut String) {
    match expr {
        Expr::All if mode == PrefixMode::Namespace => {
            let _ = write!(out, "has({NAMESPACE_LABEL})");
        }
        Expr::Global if mode == PrefixMode::Namespace => {
            let _ = write!(out, "!has({NAMESPACE_LABEL})");
        }
        Expr::All => out.push_str("all()"),
        Expr::Global => out.push_str("global()"),
        Expr::Has(key) => {
            let _ = write!(out, "has({prefix}{key})");
        }
        Expr::Equals { key, value } => write_comparison(out, prefix, key, "==", value),
        Expr::NotEquals { key, value } => write_comparison(out, prefix, key, "!=", value),
        Expr::Contains { key, value } => write_comparison(out, prefix, key, "contains", value),
        Expr::StartsWith { key, value } => write_comparison(out, prefix, key, "starts with", value),
        Expr::EndsWith { key, value } => write_comparison(out, prefix, key, "ends with", value),
        Expr::In { key, values } => write_set(out, prefix, key, "in", values),
        Expr::NotIn { key, values } => write_set(out, prefix, key, "not in", values),
        Expr::Not(inner) => {
            out.push_str("!(");
            render(inner, prefix, mode, out);
            out.push(')');
        }
        Expr::And(items) => render_group(items, " && ", prefix, mode, out),
        Expr::Or(items) => render_group(items, " || ", prefix, mode, out),
    }
}

fn render_group(items: &[Expr], separator: &str, prefix: &str, mode: PrefixMode, out: &mut String) {
    out.push('(');
    for (position, item) in items.iter().enumerate() {
        if position > 0 {
            out.push_str(separator);
        }
        render(item, prefix, mode, out);
    }
    out.push(')');
}

/// The selector language has no escapes: a value is quoted with the quote it does not contain.
fn quoted(value: &str) -> String {
    if value.contains('"') {
        format!("'{value}'")
    } else {
        format!("\"{value}\"")
    }
}

fn write_comparison(out: &mut String, prefix: &str, key: &str, operator: &str, value: &str) {
    let _ = write!(out, "{prefix}{key} {operator} {}", quoted(value));
}

fn write_set(out: &mut String, prefix: &str, key: &str, operator: &str, values: &[String]) {
    let items = values.iter().map(|v| quoted(v)).collect::<Vec<_>>();
    let _ = write!(out, "{prefix}{key} {operator} {{{}}}", items.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Selector {
        Selector::parse(text).expect("test selector parses")
    }

    #[test]
    fn prefixing_rewrites_every_key() {
        let selector = parse("a == 'x' && (has(b) || c not in {'1', '2'}) && !d starts with 'p'");
        let got = prefixed(&selector, "pcns.", PrefixMode::Plain).expect("prefixed parses");
        let want = parse(
            "pcns.a == 'x' && (has(pcns.b) || pcns.c not in {'1', '2'}) && !pcns.d starts with 'p'",
        );
        assert_eq!(got, want);
    }

    #[test]
    fn namespace_all_and_global_are_about_the_namespace_label() {
        let all = prefixed(&Selector::all(), "pcns.", PrefixMode::Namespace).expect("parses");
        assert_eq!(all, parse("has(projectcalico.org/namespace)"));
        let global = prefixed(&parse("global()"), "pcns.", PrefixMode::Namespace).expect("parses");
        assert_eq!(global, parse("!has(projectcalico.org/namespace)"));
    }

    #[test]
    fn values_with_double_quotes_survive() {
        let selector = parse("a == 'say \"hi\"'");
        let got = prefixed(&selector, "p.", PrefixMode::Plain).expect("parses");
        assert_eq!(got, parse("p.a == 'say \"hi\"'"));
    }
}
