//! Section 3: selector evaluations per second, beside the same logic hand-coded in Rust.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result};
use calico_api::Selector;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::report::{Goal, Table, ratio, seconds, thousands};

/// Ten terms: ==, in, !=, not in, has, starts with, !has, contains, ==, starts with; joined by && and ||.
pub const SELECTOR: &str = r#"(app == "web" || app in {"api", "db"}) && tier != "frontend" && env not in {"dev", "test"} && has(team) && version starts with "v1" && !has(deprecated) && owner contains "ops" || (zone == "zone-a" && role starts with "work")"#;

const LABEL_SETS: usize = 100_000;
const PASSES: usize = 10;
const LABEL_SEED: u64 = 0x5e1e_c70f;

pub type LabelSet = BTreeMap<String, String>;

/// The selector above, written by hand.
pub fn hand_coded(labels: &LabelSet) -> bool {
    let get = |key: &str| labels.get(key).map(String::as_str);
    let first = matches!(get("app"), Some("web" | "api" | "db"))
        && get("tier") != Some("frontend")
        && !matches!(get("env"), Some("dev" | "test"))
        && get("team").is_some()
        && get("version").is_some_and(|v| v.starts_with("v1"))
        && get("deprecated").is_none()
        && get("owner").is_some_and(|v| v.contains("ops"));
    first || (get("zone") == Some("zone-a") && get("role").is_some_and(|v| v.starts_with("work")))
}

/// Labels the selector looks at, each present with some probability and drawn from a small value pool.
const SELECTED_KEYS: &[(&str, f64, &[&str])] = &[
    ("app", 0.8, &["web", "api", "db", "cache", "worker"]),
    ("tier", 0.8, &["frontend", "backend", "data"]),
    ("env", 0.8, &["prod", "staging", "dev", "test"]),
    ("team", 0.7, &["payments", "search", "identity"]),
    ("version", 0.8, &["v1.0", "v1.2", "v2.0", "v0.9"]),
    ("deprecated", 0.1, &["true"]),
    ("owner", 0.8, &["netops", "devops", "sre", "platform"]),
    ("zone", 0.8, &["zone-a", "zone-b", "zone-c", "zone-d"]),
    ("role", 0.8, &["worker", "workload", "web", "master"]),
];

/// `count` random label sets of about 8–15 labels each (the selected keys plus unrelated ones).
pub fn label_sets(count: usize, seed: u64) -> Vec<LabelSet> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut labels = LabelSet::new();
            for (key, probability, values) in SELECTED_KEYS {
                if rng.random_bool(*probability) {
                    let value = values[rng.random_range(0..values.len())];
                    labels.insert((*key).to_string(), value.to_string());
                }
            }
            let target = rng.random_range(8..=15_usize);
            while labels.len() < target {
                let key = format!("example.com/key-{}", rng.random_range(0..40));
                let value = format!("value-{}", rng.random_range(0..20));
                labels.insert(key, value);
            }
            labels
        })
        .collect()
}

/// Evaluate `predicate` over every label set `passes` times; returns (seconds, matches in one pass).
fn time_passes(
    sets: &[LabelSet],
    passes: usize,
    predicate: impl Fn(&LabelSet) -> bool,
) -> (f64, usize) {
    let mut matches_per_pass = 0;
    let started = Instant::now();
    for _ in 0..passes {
        let mut matches = 0;
        for labels in black_box(sets) {
            if predicate(black_box(labels)) {
                matches += 1;
            }
        }
        matches_per_pass = black_box(matches);
    }
    (started.elapsed().as_secs_f64(), matches_per_pass)
}

pub fn run() -> Result<(Table, Vec<Goal>)> {
    let selector = Selector::parse(SELECTOR).context("parsing the benchmark selector")?;
    let sets = label_sets(LABEL_SETS, LABEL_SEED);
    let evaluations = (LABEL_SETS * PASSES) as f64;
    // One untimed pass of each warms caches and the allocator.
    let _ = time_passes(&sets, 1, |labels| selector.matches(labels));
    let _ = time_passes(&sets, 1, hand_coded);
    let (selector_seconds, selector_matches) =
        time_passes(&sets, PASSES, |labels| selector.matches(labels));
    let (closure_seconds, closure_matches) = time_passes(&sets, PASSES, hand_coded);
    let selector_rate = evaluations / selector_seconds;
    let closure_rate = evaluations / closure_seconds;
    let agree = selector_matches == closure_matches;
    let mut table = Table::new(
        &format!("3. selector evaluation, 10 terms over {LABEL_SETS} label sets x {PASSES} passes"),
        &[
            "case",
            "label sets",
            "evaluations",
            "seconds",
            "evals/s",
            "matches/pass",
            "ratio",
            "note",
        ],
    );
    table.push(vec![
        "Selector::matches".into(),
        LABEL_SETS.to_string(),
        thousands(evaluations),
        seconds(selector_seconds),
        thousands(selector_rate),
        selector_matches.to_string(),
        ratio(selector_rate / closure_rate),
        if agree {
            "ratio = selector rate / hand-coded rate".into()
        } else {
            format!("ERROR: match count differs from the hand-coded closure ({closure_matches})")
        },
    ]);
    table.push(vec![
        "hand-coded closure (reference)".into(),
        LABEL_SETS.to_string(),
        thousands(evaluations),
        seconds(closure_seconds),
        thousands(closure_rate),
        closure_matches.to_string(),
        ratio(1.0),
        String::new(),
    ]);
    let goals = vec![Goal {
        informational: true,
        name: "selector evaluations/s".into(),
        met: None,
        detail: format!(
            "{} evals/s, {} of hand-coded Rust{} (informational, no target set)",
            thousands(selector_rate),
            ratio(selector_rate / closure_rate),
            if agree { "" } else { "; MATCH COUNTS DIFFER" }
        ),
    }];
    Ok((table, goals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_has_ten_terms_and_agrees_with_the_hand_coded_closure() {
        let selector = Selector::parse(SELECTOR).unwrap();
        let terms = [
            "==",
            "!=",
            " in ",
            "not in",
            "has(",
            "starts with",
            "contains",
        ]
        .iter()
        .map(|op| SELECTOR.matches(op).count())
        .sum::<usize>();
        // " in " also occurs inside "not in": subtract that overlap.
        assert_eq!(terms - SELECTOR.matches("not in").count(), 10);
        let sets = label_sets(20_000, 11);
        let mut matched = 0;
        for labels in &sets {
            assert_eq!(selector.matches(labels), hand_coded(labels), "{labels:?}");
            matched += usize::from(hand_coded(labels));
        }
        // Neither trivially true nor false, so the benchmark exercises both outcomes.
        assert!(matched > 200 && matched < 19_800, "{matched}");
    }

    #[test]
    fn label_sets_are_seeded_and_sized() {
        let sets = label_sets(1_000, 5);
        assert_eq!(sets, label_sets(1_000, 5));
        assert!(sets.iter().all(|s| (8..=15).contains(&s.len())));
        assert!(sets.iter().any(|s| s.len() == 8) && sets.iter().any(|s| s.len() == 15));
    }
}
