//! Property tests: canonical round trips, agreement with an independent reference evaluator,
//! and parsing arbitrary input without panicking.

use std::collections::HashMap;

use proptest::prelude::*;

use super::{Expr, Selector};

// ------------------------------------------------------------ (1) canonical round trip

fn key_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_./-]{1,8}"
}

/// Values hold any characters but never both quote kinds (there are no escapes).
fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z\"' ]{0,4}", "\\PC{0,6}", Just(String::new()),]
        .prop_filter("a value cannot contain both quote kinds", |value| {
            !(value.contains('"') && value.contains('\''))
        })
}

fn sorted_values() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(value_strategy(), 0..4).prop_map(|set| set.into_iter().collect())
}

/// Expressions in the shape the parser produces (groups of two or more, sorted sets).
fn expr_strategy() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        key_strategy().prop_map(Expr::Has),
        (key_strategy(), value_strategy()).prop_map(|(key, value)| Expr::Equals { key, value }),
        (key_strategy(), value_strategy()).prop_map(|(key, value)| Expr::NotEquals { key, value }),
        (key_strategy(), value_strategy()).prop_map(|(key, value)| Expr::Contains { key, value }),
        (key_strategy(), value_strategy()).prop_map(|(key, value)| Expr::StartsWith { key, value }),
        (key_strategy(), value_strategy()).prop_map(|(key, value)| Expr::EndsWith { key, value }),
        (key_strategy(), sorted_values()).prop_map(|(key, values)| Expr::In { key, values }),
        (key_strategy(), sorted_values()).prop_map(|(key, values)| Expr::NotIn { key, values }),
    ];
    leaf.prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
}

// ------------------------------------------------------------ (2) reference evaluator

const KEYS: [&str; 3] = ["a", "b", "x/y.z"];
const VALUES: [&str; 4] = ["", "p", "pq", "q'"];

/// A second, independent representation of selectors with its own surface-syntax renderer
/// (random quoting, spacing, operator spellings and redundant parentheses).
#[derive(Debug, Clone)]
enum Ref {
    True,
    Global,
    Has(usize),
    Compare {
        op: Compare,
        key: usize,
        value: usize,
    },
    Set {
        negated: bool,
        key: usize,
        values: Vec<usize>,
    },
    Not(Box<Ref>),
    And(Box<Ref>, Box<Ref>),
    Or(Box<Ref>, Box<Ref>),
    /// Extra parentheses around an expression.
    Paren(Box<Ref>),
}

#[derive(Debug, Clone, Copy)]
enum Compare {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

/// Rendering choices drawn alongside each selector.
#[derive(Debug, Clone)]
struct Style {
    single_quotes: bool,
    tight: bool,
    notin_one_word: bool,
}

fn ref_strategy() -> impl Strategy<Value = Ref> {
    let key = 0..KEYS.len();
    let value = 0..VALUES.len();
    let compare = prop_oneof![
        Just(Compare::Eq),
        Just(Compare::Ne),
        Just(Compare::Contains),
        Just(Compare::StartsWith),
        Just(Compare::EndsWith),
    ];
    let leaf = prop_oneof![
        1 => Just(Ref::True),
        1 => Just(Ref::Global),
        2 => key.clone().prop_map(Ref::Has),
        6 => (compare, key.clone(), value.clone())
            .prop_map(|(op, key, value)| Ref::Compare { op, key, value }),
        3 => (any::<bool>(), key, prop::collection::vec(value, 0..4))
            .prop_map(|(negated, key, values)| Ref::Set { negated, key, values }),
    ];
    leaf.prop_recursive(6, 48, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Ref::Not(Box::new(e))),
            inner.clone().prop_map(|e| Ref::Paren(Box::new(e))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Ref::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner).prop_map(|(l, r)| Ref::Or(Box::new(l), Box::new(r))),
        ]
    })
}

fn style_strategy() -> impl Strategy<Value = Style> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(single_quotes, tight, notin_one_word)| Style {
            single_quotes,
            tight,
            notin_one_word,
        },
    )
}

fn labels_strategy() -> impl Strategy<Value = HashMap<String, String>> {
    prop::collection::hash_map(
        (0..KEYS.len()).prop_map(|k| KEYS[k].to_string()),
        (0..VALUES.len()).prop_map(|v| VALUES[v].to_string()),
        0..=KEYS.len(),
    )
}

/// Binding strength used to decide where the renderer must add parentheses.
fn strength(expr: &Ref) -> u8 {
    match expr {
        Ref::Or(..) => 1,
        Ref::And(..) => 2,
        _ => 3,
    }
}

fn quote(value: &str, style: &Style) -> String {
    if value.contains('\'') || !style.single_quotes {
        format!("\"{value}\"")
    } else {
        format!("'{value}'")
    }
}

fn render(expr: &Ref, style: &Style) -> String {
    let space = if style.tight { "" } else { " " };
    // Renders an operand, parenthesised only if it binds more loosely than its parent.
    let operand = |child: &Ref, parent_strength: u8| {
        let text = render(child, style);
        if strength(child) < parent_strength {
            format!("({text})")
        } else {
            text
        }
    };
    match expr {
        Ref::True => "all()".to_string(),
        Ref::Global => "global()".to_string(),
        Ref::Has(key) => format!("has({})", KEYS[*key]),
        Ref::Compare { op, key, value } => {
            let (op, needs_space) = match op {
                Compare::Eq => ("==", false),
                Compare::Ne => ("!=", false),
                Compare::Contains => ("contains", true),
                Compare::StartsWith => ("starts with", true),
                Compare::EndsWith => ("ends with", true),
            };
            let gap = if needs_space { " " } else { space };
            format!(
                "{}{gap}{op}{space}{}",
                KEYS[*key],
                quote(VALUES[*value], style)
            )
        }
        Ref::Set {
            negated,
            key,
            values,
        } => {
            let op = match (negated, style.notin_one_word) {
                (false, _) => "in",
                (true, true) => "notin",
                (true, false) => "not in",
            };
            let items: Vec<String> = values.iter().map(|v| quote(VALUES[*v], style)).collect();
            let separator = format!(",{space}");
            format!("{} {op}{space}{{{}}}", KEYS[*key], items.join(&separator))
        }
        Ref::Not(inner) => format!("!{}", operand(inner, 3)),
        Ref::And(left, right) => {
            format!("{}{space}&&{space}{}", operand(left, 2), operand(right, 2))
        }
        Ref::Or(left, right) => {
            format!("{}{space}||{space}{}", operand(left, 1), operand(right, 1))
        }
        Ref::Paren(inner) => format!("({})", render(inner, style)),
    }
}

/// Straightforward evaluation of the reference representation.
fn reference_eval(expr: &Ref, labels: &HashMap<String, String>) -> bool {
    let value_of = |key: &usize| labels.get(KEYS[*key]).map(String::as_str);
    match expr {
        Ref::True | Ref::Global => true,
        Ref::Has(key) => labels.contains_key(KEYS[*key]),
        Ref::Compare { op, key, value } => {
            let wanted = VALUES[*value];
            match (op, value_of(key)) {
                (Compare::Ne, None) => true,
                (_, None) => false,
                (Compare::Eq, Some(actual)) => actual == wanted,
                (Compare::Ne, Some(actual)) => actual != wanted,
                (Compare::Contains, Some(actual)) => actual.contains(wanted),
                (Compare::StartsWith, Some(actual)) => actual.starts_with(wanted),
                (Compare::EndsWith, Some(actual)) => actual.ends_with(wanted),
            }
        }
        Ref::Set {
            negated,
            key,
            values,
        } => {
            let member = match value_of(key) {
                Some(actual) => values.iter().any(|v| VALUES[*v] == actual),
                None => false,
            };
            member != *negated
        }
        Ref::Not(inner) => !reference_eval(inner, labels),
        Ref::And(left, right) => reference_eval(left, labels) && reference_eval(right, labels),
        Ref::Or(left, right) => reference_eval(left, labels) || reference_eval(right, labels),
        Ref::Paren(inner) => reference_eval(inner, labels),
    }
}

// ------------------------------------------------------------ (3) arbitrary input

/// Strings built from the language's own characters and keywords reach deep parser paths.
fn selectorish_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("a"),
        Just("b/c"),
        Just(" "),
        Just("\t"),
        Just("=="),
        Just("!="),
        Just("="),
        Just("!"),
        Just("&&"),
        Just("&"),
        Just("||"),
        Just("("),
        Just(")"),
        Just("{"),
        Just("}"),
        Just(","),
        Just("\""),
        Just("'"),
        Just("\"v\""),
        Just("'w'"),
        Just("in"),
        Just("not"),
        Just("notin"),
        Just("contains"),
        Just("starts"),
        Just("with"),
        Just("ends"),
        Just("has("),
        Just("all("),
        Just("global("),
        Just("é"),
        Just("\n"),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// Every successfully parsed selector must survive a canonical round trip; every failure must
/// point inside the input at a character boundary.
fn check_parse_outcome(input: &str) -> Result<(), TestCaseError> {
    match Selector::parse(input) {
        Ok(selector) => {
            let canonical = selector.canonical();
            let reparsed = Selector::parse(&canonical)
                .map_err(|e| TestCaseError::fail(format!("canonical {canonical:?}: {e}")))?;
            prop_assert_eq!(&reparsed, &selector);
            prop_assert_eq!(reparsed.canonical(), canonical);
        }
        Err(error) => {
            prop_assert!(error.position <= input.len(), "{:?}: {}", input, error);
            prop_assert!(input.is_char_boundary(error.position));
            prop_assert!(!error.message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    // No regression files: they would land outside this module's folder.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn canonical_round_trips_generated_trees(expr in expr_strategy()) {
        let mut canonical = String::new();
        expr.write_canonical(&mut canonical).unwrap();
        let parsed = Selector::parse(&canonical)
            .map_err(|e| TestCaseError::fail(format!("{canonical:?}: {e}")))?;
        prop_assert_eq!(parsed.expr(), &expr, "canonical {}", canonical);
        prop_assert_eq!(parsed.canonical(), canonical);
    }

    #[test]
    fn evaluation_agrees_with_reference(
        expr in ref_strategy(),
        style in style_strategy(),
        label_sets in prop::collection::vec(labels_strategy(), 1..8),
    ) {
        let text = render(&expr, &style);
        let selector = Selector::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let canonical = Selector::parse(&selector.canonical())
            .map_err(|e| TestCaseError::fail(format!("canonical of {text:?}: {e}")))?;
        prop_assert_eq!(&canonical, &selector);
        for labels in &label_sets {
            let expected = reference_eval(&expr, labels);
            prop_assert_eq!(selector.matches(labels), expected, "{} on {:?}", text, labels);
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(input in any::<String>()) {
        check_parse_outcome(&input)?;
    }

    #[test]
    fn parse_never_panics_on_selector_like_strings(input in selectorish_strategy()) {
        check_parse_outcome(&input)?;
    }
}
