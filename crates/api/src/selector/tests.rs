//! Unit tests: every operator, quoting, precedence, whitespace, canonical form and errors.

use std::collections::{BTreeMap, HashMap};

use super::{Expr, Labels, MAX_NESTING, Selector, SelectorError};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(input: &str) -> Selector {
    match Selector::parse(input) {
        Ok(selector) => selector,
        Err(err) => panic!("{input:?} should parse: {err}"),
    }
}

fn err(input: &str) -> SelectorError {
    match Selector::parse(input) {
        Ok(selector) => panic!("{input:?} should not parse, got {selector}"),
        Err(err) => err,
    }
}

/// Asserts the error's position and that its message contains `fragment`.
fn assert_error(input: &str, position: usize, fragment: &str) {
    let error = err(input);
    assert_eq!(error.position, position, "position for {input:?}: {error}");
    assert!(
        error.message.contains(fragment),
        "message for {input:?} was {:?}, expected it to contain {fragment:?}",
        error.message
    );
}

fn matches(input: &str, pairs: &[(&str, &str)]) -> bool {
    sel(input).matches(&labels(pairs))
}

// ---------------------------------------------------------------- operators

#[test]
fn equals_needs_present_label_with_exact_value() {
    assert!(matches(r#"app == "web""#, &[("app", "web")]));
    assert!(!matches(r#"app == "web""#, &[("app", "webx")]));
    assert!(!matches(r#"app == "web""#, &[]));
    assert!(!matches(r#"app == "web""#, &[("other", "web")]));
    assert!(matches(r#"app == """#, &[("app", "")]));
    assert!(!matches(r#"app == """#, &[]));
}

#[test]
fn not_equals_is_true_when_label_absent() {
    assert!(matches(r#"app != "web""#, &[]));
    assert!(matches(r#"app != "web""#, &[("app", "db")]));
    assert!(!matches(r#"app != "web""#, &[("app", "web")]));
}

#[test]
fn in_and_not_in() {
    let in_set = r#"tier in {"a", "b"}"#;
    assert!(matches(in_set, &[("tier", "a")]));
    assert!(matches(in_set, &[("tier", "b")]));
    assert!(!matches(in_set, &[("tier", "c")]));
    assert!(!matches(in_set, &[]));

    let not_in = r#"tier not in {"a", "b"}"#;
    assert!(!matches(not_in, &[("tier", "a")]));
    assert!(matches(not_in, &[("tier", "c")]));
    assert!(
        matches(not_in, &[]),
        "not in is true when the label is absent"
    );

    assert_eq!(sel(r#"tier notin {"a","b"}"#), sel(not_in));
    assert_eq!(sel("tier not\t  in {'b','a'}"), sel(not_in));
}

#[test]
fn empty_sets_are_allowed() {
    assert!(!matches("a in {}", &[("a", "")]));
    assert!(!matches("a in {}", &[]));
    assert!(matches("a not in {}", &[("a", "x")]));
    assert!(matches("a not in {}", &[]));
    assert_eq!(sel("a in { }").canonical(), "a in {}");
}

#[test]
fn set_allows_a_trailing_comma_like_calico() {
    assert_eq!(sel(r#"a in {"x",}"#), sel(r#"a in {"x"}"#));
}

#[test]
fn has_checks_presence_only() {
    assert!(matches("has(app)", &[("app", "")]));
    assert!(matches("has(app)", &[("app", "x")]));
    assert!(!matches("has(app)", &[("application", "x")]));
    assert!(matches("!has(app)", &[]));
    assert!(matches("has( app\t)", &[("app", "x")]));
}

#[test]
fn contains_starts_with_ends_with() {
    assert!(matches(r#"n contains "ell""#, &[("n", "hello")]));
    assert!(!matches(r#"n contains "xyz""#, &[("n", "hello")]));
    assert!(matches(r#"n contains """#, &[("n", "")]));
    assert!(!matches(r#"n contains "e""#, &[]));

    assert!(matches(r#"n starts with "he""#, &[("n", "hello")]));
    assert!(!matches(r#"n starts with "lo""#, &[("n", "hello")]));
    assert!(!matches(r#"n starts with "h""#, &[]));

    assert!(matches(r#"n ends with "lo""#, &[("n", "hello")]));
    assert!(!matches(r#"n ends with "he""#, &[("n", "hello")]));
    assert!(!matches(r#"n ends with "o""#, &[]));

    // Calico also accepts the two-word operators without a space.
    assert_eq!(sel(r#"n startswith "a""#), sel(r#"n starts with "a""#));
    assert_eq!(sel(r#"n endswith "a""#), sel(r#"n ends  with "a""#));
}

#[test]
fn all_and_empty_selector_match_everything() {
    for input in ["all()", "", "   ", "\t", "all( )", " all() "] {
        let selector = sel(input);
        assert!(selector.is_all(), "{input:?}");
        assert_eq!(selector, Selector::all());
        assert!(selector.matches(&labels(&[])));
        assert!(selector.matches(&labels(&[("a", "b")])));
        assert_eq!(selector.canonical(), "all()");
    }
    assert!(!sel("!all()").matches(&labels(&[])));
    assert!(!sel("has(a)").is_all());
    assert_eq!(Selector::default(), Selector::all());
}

#[test]
fn global_matches_plain_label_sets_like_calico() {
    let global = sel("global()");
    assert!(global.is_global());
    assert!(!global.is_all());
    assert_eq!(global.expr(), &Expr::Global);
    assert!(global.matches(&labels(&[])));
    assert!(global.matches(&labels(&[("a", "b")])));
    assert_eq!(global.canonical(), "global()");
    assert_eq!(sel("global( )").canonical(), "global()");
    assert!(!sel("!global()").matches(&labels(&[])));
    assert!(!sel("has(a) && global()").is_global());
}

#[test]
fn not_and_or() {
    let pairs = [("a", "1"), ("b", "2")];
    assert!(matches(r#"a == "1" && b == "2""#, &pairs));
    assert!(!matches(r#"a == "1" && b == "3""#, &pairs));
    assert!(matches(r#"a == "9" || b == "2""#, &pairs));
    assert!(!matches(r#"a == "9" || b == "9""#, &pairs));
    assert!(matches(r#"!a == "9""#, &pairs));
    assert!(!matches(r#"!(a == "1")"#, &pairs));
    assert!(matches(r#"!!a == "1""#, &pairs));
    assert!(matches(r#"!!!a == "9""#, &pairs));
}

// ---------------------------------------------------------------- quoting, keys, whitespace

#[test]
fn both_quote_styles() {
    assert_eq!(sel("a == 'x'"), sel(r#"a == "x""#));
    assert!(matches(r#"a == 'say "hi"'"#, &[("a", r#"say "hi""#)]));
    assert!(matches(r#"a == "it's""#, &[("a", "it's")]));
    // No escapes: a backslash is an ordinary character.
    assert!(matches(r#"a == "x\y""#, &[("a", r"x\y")]));
    // Any characters, including non-ASCII and characters meaningful outside strings.
    assert!(matches(
        r#"a == "é && || ( ) {}""#,
        &[("a", "é && || ( ) {}")]
    ));
}

#[test]
fn label_keys_use_calico_charset() {
    let input = "projectcalico.org/orchestrator == 'k8s' && a/b/c_d-e.f == 'x' && 9 == 'y'";
    let pairs = [
        ("projectcalico.org/orchestrator", "k8s"),
        ("a/b/c_d-e.f", "x"),
        ("9", "y"),
    ];
    assert!(matches(input, &pairs));
    // Names that look like keywords are ordinary keys unless followed directly by '('.
    assert!(matches(
        r#"has == "1" && all == "2""#,
        &[("has", "1"), ("all", "2")]
    ));
}

#[test]
fn whitespace_variations_parse_identically() {
    let reference = sel(r#"(a == "1" && b != "2") || c in {"x"}"#);
    for input in [
        r#"(a=="1"&&b!="2")||c in{"x"}"#,
        "(a\t==\t'1' && b != '2')   ||   c in { 'x' }",
        r#"  ( a == "1"&&b!= "2" )||c in {"x" , } "#,
    ] {
        assert_eq!(sel(input), reference, "{input:?}");
    }
}

// ---------------------------------------------------------------- precedence

#[test]
fn and_binds_tighter_than_or() {
    let selector = sel(r#"a == "1" || b == "1" && c == "1""#);
    assert_eq!(
        selector.canonical(),
        r#"(a == "1" || (b == "1" && c == "1"))"#
    );
    assert!(selector.matches(&labels(&[("a", "1")])));
    assert!(!selector.matches(&labels(&[("b", "1")])));

    let selector = sel(r#"a == "1" && b == "1" || c == "1""#);
    assert_eq!(
        selector.canonical(),
        r#"((a == "1" && b == "1") || c == "1")"#
    );
    assert!(selector.matches(&labels(&[("c", "1")])));
}

#[test]
fn not_binds_tightest() {
    let selector = sel(r#"!a == "1" && b == "1""#);
    assert_eq!(selector.canonical(), r#"(!a == "1" && b == "1")"#);
    assert!(selector.matches(&labels(&[("b", "1")])));
    assert!(!selector.matches(&labels(&[("a", "1"), ("b", "1")])));

    let grouped = sel(r#"!(a == "1" && b == "1")"#);
    assert_eq!(grouped.canonical(), r#"!(a == "1" && b == "1")"#);
    assert!(grouped.matches(&labels(&[("a", "1")])));
    assert!(!grouped.matches(&labels(&[("a", "1"), ("b", "1")])));
}

#[test]
fn parentheses_override_precedence() {
    let selector = sel(r#"(a == "1" || b == "1") && c == "1""#);
    assert!(!selector.matches(&labels(&[("a", "1")])));
    assert!(selector.matches(&labels(&[("a", "1"), ("c", "1")])));
    assert_eq!(sel(r#"((((a == "1"))))"#), sel(r#"a == "1""#));
}

// ---------------------------------------------------------------- canonical form

#[test]
fn canonical_matches_calico_rendering() {
    let cases = [
        ("a=='b'", r#"a == "b""#),
        ("a!='b'", r#"a != "b""#),
        (r#"a == 'x"y'"#, r#"a == 'x"y'"#),
        ("has( a )", "has(a)"),
        ("!has(a)", "!has(a)"),
        (r#"a in {"y","x","y"}"#, r#"a in {"x", "y"}"#),
        (r#"a notin {'q"', "p"}"#, r#"a not in {"p", 'q"'}"#),
        ("a contains 'x'", r#"a contains "x""#),
        ("a startswith 'x'", r#"a starts with "x""#),
        ("a ends with 'x'", r#"a ends with "x""#),
        (
            "a == 'b' && c == 'd' && e == 'f'",
            r#"(a == "b" && c == "d" && e == "f")"#,
        ),
        (
            "(has(a) && has(b)) && has(c)",
            "((has(a) && has(b)) && has(c))",
        ),
        ("!(has(a) || has(b))", "!(has(a) || has(b))"),
        ("!!has(a)", "has(a)"),
        ("!(!has(a))", "!(!has(a))"),
        ("!(all())", "!all()"),
    ];
    for (input, canonical) in cases {
        let selector = sel(input);
        assert_eq!(selector.canonical(), canonical, "canonical of {input:?}");
        assert_eq!(selector.to_string(), canonical);
        let reparsed = sel(canonical);
        assert_eq!(reparsed, selector, "re-parsing {canonical:?}");
        assert_eq!(reparsed.canonical(), canonical);
    }
}

#[test]
fn set_values_sort_bytewise() {
    assert_eq!(
        sel(r#"a in {"b", "B", "a", "", "é"}"#).canonical(),
        r#"a in {"", "B", "a", "b", "é"}"#
    );
}

#[test]
fn equal_selectors_hash_equally() {
    use std::collections::HashSet;
    let set: HashSet<Selector> = [
        sel("a == 'x' && b in {'2','1'}"),
        sel(r#"(a=="x"&&b in{"1","2","1"})"#),
        sel("a == 'y'"),
    ]
    .into_iter()
    .collect();
    assert_eq!(set.len(), 2);
}

// ---------------------------------------------------------------- labels sources

#[test]
fn works_with_hashmap_btreemap_and_trait_objects() {
    let selector = sel("a == 'x' && !has(b)");
    let hash: HashMap<String, String> = [("a".to_string(), "x".to_string())].into();
    assert!(selector.matches(&hash));
    let btree = labels(&[("a", "x"), ("b", "")]);
    assert!(!selector.matches(&btree));
    let dynamic: &dyn Labels = &hash;
    assert!(selector.matches(dynamic));
    assert!(selector.matches(&&hash));

    struct OnlyApp;
    impl Labels for OnlyApp {
        fn get_label(&self, key: &str) -> Option<&str> {
            (key == "a").then_some("x")
        }
    }
    assert!(selector.matches(&OnlyApp));
}

#[test]
fn serde_uses_canonical_string() {
    let selector = sel("b == 'x' || a in {'2','1'}");
    let json = serde_json::to_string(&selector).unwrap();
    assert_eq!(json, r#""(b == \"x\" || a in {\"1\", \"2\"})""#);
    let back: Selector = serde_json::from_str(&json).unwrap();
    assert_eq!(back, selector);
    let from_raw: Selector = serde_json::from_str(r#""has(x)""#).unwrap();
    assert_eq!(from_raw, sel("has(x)"));
    let bad = serde_json::from_str::<Selector>(r#""a ==""#).unwrap_err();
    assert!(
        bad.to_string().contains("expected a string after '=='"),
        "{bad}"
    );
    let parsed: Selector = "has(a)".parse().unwrap();
    assert_eq!(parsed, sel("has(a)"));
}

#[test]
fn ten_term_selector_over_many_label_sets() {
    let selector = sel(
        "app == 'web' && tier in {'front', 'back'} && !has(deprecated) && env != 'prod' \
         && name starts with 'web-' && name ends with '1' && name contains 'b' \
         && (zone == 'a' || zone == 'b') && region not in {'eu'}",
    );
    let mut matched = 0usize;
    for index in 0..100_000usize {
        let mut set = BTreeMap::new();
        let app = if index % 2 == 0 { "web" } else { "db" };
        set.insert("app".to_string(), app.to_string());
        set.insert(
            "tier".to_string(),
            ["front", "back", "mid"][index % 3].to_string(),
        );
        set.insert("name".to_string(), format!("web-{}", index % 7));
        set.insert(
            "zone".to_string(),
            ["a", "b", "c", "d"][index % 4].to_string(),
        );
        if index % 5 == 0 {
            set.insert("deprecated".to_string(), String::new());
        }
        if index % 11 == 0 {
            set.insert("env".to_string(), "prod".to_string());
        }
        if index % 13 == 0 {
            set.insert("region".to_string(), "eu".to_string());
        }
        let expected = index % 2 == 0
            && index % 3 != 2
            && index % 5 != 0
            && index % 11 != 0
            && index % 7 == 1
            && index % 4 < 2
            && index % 13 != 0;
        assert_eq!(selector.matches(&set), expected, "label set {set:?}");
        matched += usize::from(expected);
    }
    assert!(matched > 1_000, "only {matched} matches");
}

// ---------------------------------------------------------------- errors

#[test]
fn error_missing_string_after_operator() {
    assert_error("app == x", 7, "expected a string after '=='");
    assert_error("app != {", 7, "expected a string after '!='");
    assert_error(
        "app contains has(x)",
        13,
        "expected a string after 'contains'",
    );
    assert_error(
        "app starts with",
        15,
        "expected a string after 'starts with'",
    );
    assert_error("app ends with (", 14, "expected a string after 'ends with'");
    let error = err("app == x");
    assert_eq!(
        error.to_string(),
        "expected a string after '==' but found label 'x' at position 7"
    );
}

#[test]
fn error_unterminated_string() {
    assert_error(r#"a == "abc"#, 5, "unterminated string");
    assert_error("a == 'abc\"", 5, "unterminated string");
    assert_error(r#"a in {"x", "y}"#, 11, "unterminated string");
}

#[test]
fn error_unknown_operator() {
    assert_error("a = 'b'", 2, "unknown operator '=', expected '=='");
    assert_error("has(a) & has(b)", 7, "unknown operator '&', expected '&&'");
    assert_error("has(a) | has(b)", 7, "unknown operator '|', expected '||'");
    assert_error("a foo 'b'", 2, "unknown operator after label 'a'");
    assert_error("a starts 'b'", 2, "unknown operator after label 'a'");
    assert_error("a ends witch 'b'", 2, "unknown operator after label 'a'");
    assert_error("a not 'b'", 2, "unknown operator after label 'a'");
    assert_error("a", 1, "expected an operator after label 'a'");
    assert_error("a && b", 2, "expected an operator after label 'a'");
    assert_error("a (", 2, "expected an operator after label 'a'");
}

#[test]
fn error_sets() {
    assert_error("a in 'x'", 5, "expected '{' after 'in'");
    assert_error("a not in 'x'", 9, "expected '{' after 'not in'");
    assert_error(r#"a in {"x" "y"}"#, 10, "expected ',' or '}'");
    assert_error("a in {,}", 6, "expected a string or '}'");
    assert_error(r#"a in {"x",,}"#, 10, "expected a string or '}'");
    assert_error(
        r#"a in {"x""#,
        9,
        "expected ',' or '}' in the set opened at byte 5",
    );
}

#[test]
fn error_trailing_input() {
    assert_error(
        r#"a == "b" c == "d""#,
        9,
        "unexpected label 'c' after a complete expression",
    );
    assert_error(
        "all() all()",
        6,
        "unexpected 'all()' after a complete expression",
    );
    assert_error("has(a) 'x'", 7, "unexpected string 'x'");
}

#[test]
fn error_unbalanced_parentheses() {
    assert_error(
        r#"(a == "b""#,
        9,
        "unbalanced parentheses: expected ')' to close the '(' at byte 0",
    );
    assert_error(r#"((a == "b") && has(c)"#, 21, "unbalanced parentheses");
    assert_error(
        r#"a == "b")"#,
        8,
        "unbalanced parentheses: ')' without a matching '('",
    );
    assert_error("()", 1, "expected a label");
}

#[test]
fn error_function_forms() {
    assert_error("has()", 4, "expected a label name after 'has('");
    assert_error("has( )", 5, "expected a label name after 'has('");
    assert_error("has(a", 5, "expected ')' to close 'has('");
    assert_error("has(a b)", 6, "expected ')' to close 'has('");
    assert_error("all(x)", 4, "expected ')' to close 'all('");
    assert_error("global(", 7, "expected ')' to close 'global('");
}

#[test]
fn error_incomplete_expressions() {
    assert_error(r#"a == "b" &&"#, 11, "unexpected end of selector");
    assert_error(r#"a == "b" || "#, 12, "unexpected end of selector");
    assert_error("!", 1, "unexpected end of selector");
    assert_error(
        r#"&& a == "b""#,
        0,
        "expected a label, has(), all(), global(), '!' or '('",
    );
    assert_error("has(a) && || has(b)", 10, "but found '||'");
}

#[test]
fn error_unexpected_characters() {
    assert_error("has(a)\n", 6, "unexpected character '\\n'");
    assert_error("a == 'b' && é == 'c'", 12, "unexpected character 'é'");
    assert_error("@", 0, "unexpected character '@'");
    assert_error("a == 'b';", 8, "unexpected character ';'");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = MAX_NESTING;
    let ok = format!("{}has(a){}", "(".repeat(depth), ")".repeat(depth));
    assert_eq!(sel(&ok), sel("has(a)"));

    let too_deep = format!("{}has(a){}", "(".repeat(depth + 1), ")".repeat(depth + 1));
    assert_error(&too_deep, depth, "nested more than");

    let hostile = "(".repeat(100_000);
    assert!(Selector::parse(&hostile).is_err());
    let negations = format!("{}has(a)", "!".repeat(100_001));
    assert_eq!(sel(&negations), sel("!has(a)"));
    let nested_not = format!("{}has(a){}", "!(".repeat(depth), ")".repeat(depth));
    let selector = sel(&nested_not);
    assert_eq!(sel(&selector.canonical()), selector);
    assert!(selector.matches(&labels(&[("a", "")])));
}
