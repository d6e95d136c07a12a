//! Calico's documented policy semantics, one point per test. Expected values are written by hand
//! from the documentation, never computed with the crate.

mod common;

use calico_api::Kind;
use calico_policy::{
    Action, CompileError, Decision, Direction, ModelError, PolicyKey, PolicyKind, PolicyModel,
    SetElement, TraceStep, VerdictAction,
};
use common::*;
use serde_json::json;

const WEB_IP: &str = "10.0.0.1";
const DB_IP: &str = "10.0.0.2";
const OTHER_NS_IP: &str = "10.0.1.1";
const OUTSIDE_IP: &str = "203.0.113.9";

/// Namespaces `prod` (web, db) and `dev` (tool), each with Calico's allow-all namespace profile.
fn cluster() -> PolicyModel {
    let mut model = PolicyModel::new(Some("node-a".into()));
    namespace(&mut model, "prod", json!({"env": "prod"}));
    namespace(&mut model, "dev", json!({"env": "dev"}));
    upsert(
        &mut model,
        &pod("prod", "web", WEB_IP, json!({"app": "web"})),
    );
    upsert(
        &mut model,
        &pod("prod", "db", DB_IP, json!({"app": "db", "role": "db"})),
    );
    upsert(
        &mut model,
        &pod("dev", "tool", OTHER_NS_IP, json!({"app": "tool"})),
    );
    model
}

fn web() -> calico_policy::EndpointKey {
    pod_key("prod", "web")
}

fn gnp(name: &str, spec: serde_json::Value) -> calico_api::Resource {
    resource("GlobalNetworkPolicy", None, name, json!({}), spec)
}

fn np(namespace: &str, name: &str, spec: serde_json::Value) -> calico_api::Resource {
    resource("NetworkPolicy", Some(namespace), name, json!({}), spec)
}

fn verdict(
    model: &PolicyModel,
    direction: Direction,
    packet: &calico_policy::Packet,
) -> VerdictAction {
    match model.evaluate(&web(), direction, packet) {
        Ok(verdict) => verdict.action,
        Err(e) => panic!("evaluate: {e}"),
    }
}

fn decision(model: &PolicyModel, direction: Direction, packet: &calico_policy::Packet) -> Decision {
    match model.evaluate(&web(), direction, packet) {
        Ok(verdict) => verdict.decision,
        Err(e) => panic!("evaluate: {e}"),
    }
}

fn gnp_key(name: &str) -> PolicyKey {
    PolicyKey {
        kind: PolicyKind::GlobalNetworkPolicy,
        namespace: None,
        name: name.into(),
    }
}

fn to_web(source: &str) -> calico_policy::Packet {
    tcp(source, WEB_IP, 80)
}

// ---- profiles and default deny ----

#[test]
fn endpoint_without_policies_or_profiles_is_denied() {
    let mut model = PolicyModel::new(None);
    upsert(&mut model, &pod("prod", "web", WEB_IP, json!({})));
    let verdict = model
        .evaluate(&web(), Direction::Ingress, &to_web(DB_IP))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verdict.action, VerdictAction::Deny);
    assert_eq!(verdict.decision, Decision::DefaultDeny);
}

#[test]
fn unselected_pod_is_open_through_its_namespace_profile() {
    let model = cluster();
    assert_eq!(
        decision(&model, Direction::Ingress, &to_web(OUTSIDE_IP)),
        Decision::ProfileRule {
            profile: "kns.prod".into(),
            index: 0
        }
    );
    assert_eq!(
        verdict(&model, Direction::Egress, &tcp(WEB_IP, OUTSIDE_IP, 443)),
        VerdictAction::Allow
    );
}

#[test]
fn selecting_a_pod_makes_it_default_deny_for_that_direction_only() {
    let mut model = cluster();
    upsert(
        &mut model,
        &np(
            "prod",
            "isolate",
            json!({"selector": "app == 'web'", "types": ["Ingress"]}),
        ),
    );
    assert_eq!(
        decision(&model, Direction::Ingress, &to_web(DB_IP)),
        Decision::TierDefault {
            tier: "default".into()
        }
    );
    // Egress is not governed by the policy: the profile still allows it.
    assert_eq!(
        verdict(&model, Direction::Egress, &tcp(WEB_IP, DB_IP, 80)),
        VerdictAction::Allow
    );
}

#[test]
fn profile_pass_moves_on_to_the_next_profile() {
    let mut model = PolicyModel::new(None);
    upsert(
        &mut model,
        &resource(
            "Profile",
            None,
            "first",
            json!({}),
            json!({"ingress": [{"action": "Pass"}]}),
        ),
    );
    upsert(
        &mut model,
        &resource(
            "Profile",
            None,
            "second",
            json!({}),
            json!({"ingress": [{"action": "Allow"}]}),
        ),
    );
    let endpoint = resource(
        "WorkloadEndpoint",
        Some("prod"),
        "web",
        json!({}),
        json!({"node": "n", "ipNetworks": ["10.0.0.1/32"], "profiles": ["first", "second"]}),
    );
    upsert(&mut model, &endpoint);
    let verdict = model
        .evaluate(&web(), Direction::Ingress, &to_web(DB_IP))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        verdict.decision,
        Decision::ProfileRule {
            profile: "second".into(),
            index: 0
        }
    );
}

// ---- types ----

#[test]
fn default_types_ingress_when_no_rules_or_only_ingress_rules() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp("no-rules", json!({"selector": "app == 'web'"})),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
    assert_eq!(
        verdict(&model, Direction::Egress, &tcp(WEB_IP, DB_IP, 80)),
        VerdictAction::Allow
    );
}

#[test]
fn default_types_egress_only_when_only_egress_rules() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "egress-only",
            json!({"selector": "app == 'web'", "egress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Egress, &tcp(WEB_IP, DB_IP, 80)),
        VerdictAction::Deny
    );
}

#[test]
fn default_types_both_when_both_rule_lists() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "both",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Log"}], "egress": [{"action": "Log"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
    assert_eq!(
        verdict(&model, Direction::Egress, &tcp(WEB_IP, DB_IP, 80)),
        VerdictAction::Deny
    );
}

#[test]
fn explicit_types_win_over_rules_present() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "egress-typed",
            json!({"selector": "app == 'web'", "types": ["Egress"], "ingress": [{"action": "Deny"}]}),
        ),
    );
    // The ingress rules are ignored: the policy does not govern ingress.
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Egress, &tcp(WEB_IP, DB_IP, 80)),
        VerdictAction::Deny
    );
}

// ---- rule actions ----

#[test]
fn first_matching_rule_decides_and_deny_is_final() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "p",
            json!({"order": 100, "selector": "app == 'web'", "ingress": [{"action": "Deny", "source": {"nets": ["10.0.0.2/32"]}}, {"action": "Allow", "source": {"nets": ["10.0.0.0/24"]}}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "later",
            json!({"order": 500, "selector": "all()", "ingress": [{"action": "Allow"}]}),
        ),
    );
    assert_eq!(
        decision(&model, Direction::Ingress, &to_web(DB_IP)),
        Decision::PolicyRule {
            tier: "default".into(),
            policy: gnp_key("p"),
            index: 0
        }
    );
    assert_eq!(
        decision(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        Decision::PolicyRule {
            tier: "default".into(),
            policy: gnp_key("later"),
            index: 0
        }
    );
}

#[test]
fn log_continues_and_a_log_only_policy_leaves_default_deny() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "log",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Log"}]}),
        ),
    );
    let verdict = model
        .evaluate(&web(), Direction::Ingress, &to_web(DB_IP))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verdict.action, VerdictAction::Deny);
    assert_eq!(
        verdict.trace,
        vec![
            TraceStep::Policy {
                tier: "default".into(),
                policy: gnp_key("log"),
                logged: vec![0],
                matched: None
            },
            TraceStep::TierEnd {
                tier: "default".into(),
                default_action: Action::Deny
            },
        ]
    );
}

#[test]
fn falling_off_a_policy_continues_with_the_next_policy_of_the_tier() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "a",
            json!({"order": 1, "selector": "app == 'web'", "ingress": [{"action": "Deny", "source": {"nets": ["192.0.2.0/24"]}}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "b",
            json!({"order": 2, "selector": "app == 'web'", "ingress": [{"action": "Allow"}]}),
        ),
    );
    assert_eq!(
        decision(&model, Direction::Ingress, &to_web(DB_IP)),
        Decision::PolicyRule {
            tier: "default".into(),
            policy: gnp_key("b"),
            index: 0
        }
    );
}

// ---- ordering ----

#[test]
fn policies_order_lower_first_unset_last_ties_by_name() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "z-unordered",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow"}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "b-ten",
            json!({"order": 10, "selector": "app == 'web'", "ingress": [{"action": "Log"}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "a-ten",
            json!({"order": 10, "selector": "app == 'web'", "ingress": [{"action": "Log"}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "c-one",
            json!({"order": 1.5, "selector": "app == 'web'", "ingress": [{"action": "Log"}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "a-unordered",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Log"}]}),
        ),
    );
    let active = model
        .active_policies(&web(), Direction::Ingress)
        .unwrap_or_else(|| panic!("web is local"));
    let names: Vec<&str> = active.tiers[0]
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["c-one", "a-ten", "b-ten", "a-unordered", "z-unordered"]
    );
    assert_eq!(active.profiles, ["kns.prod"]);
}

#[test]
fn tiers_order_by_order_then_name_default_tier_at_one_million() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource("Tier", None, "security", json!({}), json!({"order": 100})),
    );
    upsert(
        &mut model,
        &resource("Tier", None, "platform", json!({}), json!({"order": 100})),
    );
    upsert(
        &mut model,
        &resource("Tier", None, "late", json!({}), json!({"order": 2000000})),
    );
    upsert(
        &mut model,
        &resource("Tier", None, "unordered", json!({}), json!({})),
    );
    for tier in ["security", "platform", "late", "unordered", "default"] {
        upsert(
            &mut model,
            &gnp(
                &format!("in-{tier}"),
                json!({"tier": tier, "selector": "app == 'web'", "ingress": [{"action": "Pass"}]}),
            ),
        );
    }
    let active = model
        .active_policies(&web(), Direction::Ingress)
        .unwrap_or_else(|| panic!("web is local"));
    let tiers: Vec<&str> = active.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tiers,
        ["platform", "security", "default", "late", "unordered"]
    );
}

// ---- tiers, Pass and defaultAction ----

fn two_tiers(model: &mut PolicyModel, first_tier_default: &str) {
    upsert(
        model,
        &resource(
            "Tier",
            None,
            "first",
            json!({}),
            json!({"order": 10, "defaultAction": first_tier_default}),
        ),
    );
}

#[test]
fn pass_skips_the_rest_of_the_tier_and_continues_at_the_next() {
    let mut model = cluster();
    two_tiers(&mut model, "Deny");
    upsert(
        &mut model,
        &gnp(
            "pass",
            json!({"tier": "first", "order": 1, "selector": "app == 'web'", "ingress": [{"action": "Pass"}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "deny-in-first",
            json!({"tier": "first", "order": 2, "selector": "app == 'web'", "ingress": [{"action": "Deny"}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "allow-default",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow"}]}),
        ),
    );
    assert_eq!(
        decision(&model, Direction::Ingress, &to_web(DB_IP)),
        Decision::PolicyRule {
            tier: "default".into(),
            policy: gnp_key("allow-default"),
            index: 0
        }
    );
}

#[test]
fn pass_in_the_last_tier_reaches_the_profiles() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "pass",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Pass"}]}),
        ),
    );
    assert_eq!(
        decision(&model, Direction::Ingress, &to_web(DB_IP)),
        Decision::ProfileRule {
            profile: "kns.prod".into(),
            index: 0
        }
    );
}

#[test]
fn tier_that_applied_and_decided_nothing_ends_in_deny() {
    let mut model = cluster();
    two_tiers(&mut model, "Deny");
    upsert(
        &mut model,
        &gnp(
            "narrow",
            json!({"tier": "first", "selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"nets": ["192.0.2.1/32"]}}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "allow-default",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow"}]}),
        ),
    );
    assert_eq!(
        decision(&model, Direction::Ingress, &to_web(DB_IP)),
        Decision::TierDefault {
            tier: "first".into()
        }
    );
}

#[test]
fn tier_with_default_action_pass_continues_at_the_next_tier() {
    let mut model = cluster();
    two_tiers(&mut model, "Pass");
    upsert(
        &mut model,
        &gnp(
            "narrow",
            json!({"tier": "first", "selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"nets": ["192.0.2.1/32"]}}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "deny-default",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Deny"}]}),
        ),
    );
    let verdict = model
        .evaluate(&web(), Direction::Ingress, &to_web(DB_IP))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        verdict.decision,
        Decision::PolicyRule {
            tier: "default".into(),
            policy: gnp_key("deny-default"),
            index: 0
        }
    );
    assert!(verdict.trace.contains(&TraceStep::TierEnd {
        tier: "first".into(),
        default_action: Action::Pass
    }));
}

#[test]
fn tier_without_applicable_policies_is_skipped() {
    let mut model = cluster();
    two_tiers(&mut model, "Deny");
    upsert(
        &mut model,
        &gnp(
            "db-only",
            json!({"tier": "first", "selector": "app == 'db'", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    let active = model
        .active_policies(&web(), Direction::Ingress)
        .unwrap_or_else(|| panic!("local"));
    assert!(active.tiers.is_empty());
}

#[test]
fn staged_policies_are_stored_but_never_enforced() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource(
            "StagedNetworkPolicy",
            Some("prod"),
            "try",
            json!({}),
            json!({"selector": "all()", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(model.staged_policies().count(), 1);
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
}

// ---- policy scope ----

#[test]
fn network_policy_selects_only_in_its_own_namespace() {
    let mut model = cluster();
    upsert(
        &mut model,
        &np(
            "dev",
            "deny-all",
            json!({"selector": "all()", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    upsert(
        &mut model,
        &np(
            "prod",
            "deny-all",
            json!({"selector": "all()", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn global_policy_namespace_selector_uses_namespace_labels() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "dev-only",
            json!({"namespaceSelector": "env == 'dev'", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    upsert(
        &mut model,
        &gnp(
            "by-name",
            json!({"namespaceSelector": "projectcalico.org/name == 'prod'", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn namespace_label_change_moves_endpoints_in_and_out_of_policies() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "dev-only",
            json!({"namespaceSelector": "env == 'dev'", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    namespace(&mut model, "prod", json!({"env": "dev"}));
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn service_account_selector_on_the_policy() {
    let mut model = cluster();
    let web_with_account = resource(
        "WorkloadEndpoint",
        Some("prod"),
        "web",
        json!({"app": "web"}),
        json!({"orchestrator": "k8s", "node": "node-a", "ipNetworks": ["10.0.0.1/32"], "serviceAccountName": "frontend", "profiles": ["kns.prod", "ksa.prod.frontend"]}),
    );
    upsert(&mut model, &web_with_account);
    upsert(
        &mut model,
        &resource(
            "Profile",
            None,
            "ksa.prod.frontend",
            json!({}),
            json!({"labelsToApply": {"pcsa.team": "blue", "pcsa.projectcalico.org/name": "frontend"}}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "red-team",
            json!({"serviceAccountSelector": "team == 'red'", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    upsert(
        &mut model,
        &gnp(
            "blue-team",
            json!({"serviceAccountSelector": "team == 'blue'", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

// ---- rule selectors ----

/// Web admits only what the rule's source matches; everything else ends in the tier's Deny.
fn admit_from(model: &mut PolicyModel, policy: calico_api::Resource) {
    upsert(model, &policy);
}

#[test]
fn rule_selector_in_a_network_policy_is_scoped_to_the_policy_namespace() {
    let mut model = cluster();
    admit_from(
        &mut model,
        np(
            "prod",
            "from-apps",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"selector": "has(app)"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn rule_namespace_selector_picks_other_namespaces() {
    let mut model = cluster();
    admit_from(
        &mut model,
        np(
            "prod",
            "from-dev",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"namespaceSelector": "env == 'dev'"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn rule_namespace_selector_all_is_every_namespace_but_not_global_sets() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource(
            "GlobalNetworkSet",
            None,
            "partners",
            json!({"kind": "partner"}),
            json!({"nets": ["203.0.113.0/24"]}),
        ),
    );
    admit_from(
        &mut model,
        np(
            "prod",
            "from-all-ns",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"namespaceSelector": "all()"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OUTSIDE_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn rule_namespace_selector_global_is_non_namespaced_resources() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource(
            "GlobalNetworkSet",
            None,
            "partners",
            json!({"kind": "partner"}),
            json!({"nets": ["203.0.113.0/24"]}),
        ),
    );
    admit_from(
        &mut model,
        np(
            "prod",
            "from-partners",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"namespaceSelector": "global()", "selector": "kind == 'partner'"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OUTSIDE_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn global_policy_rule_selector_spans_namespaces_and_global_sets() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource(
            "GlobalNetworkSet",
            None,
            "partners",
            json!({"app": "partner"}),
            json!({"nets": ["203.0.113.0/24"]}),
        ),
    );
    admit_from(
        &mut model,
        gnp(
            "from-apps",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"selector": "has(app)"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OUTSIDE_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web("198.51.100.1")),
        VerdictAction::Deny
    );
}

#[test]
fn namespaced_network_set_is_selected_in_its_namespace() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource(
            "NetworkSet",
            Some("prod"),
            "office",
            json!({"site": "office"}),
            json!({"nets": ["198.51.100.0/24"]}),
        ),
    );
    admit_from(
        &mut model,
        np(
            "prod",
            "from-office",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"selector": "site == 'office'"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web("198.51.100.7")),
        VerdictAction::Allow
    );
    upsert(
        &mut model,
        &resource(
            "NetworkSet",
            Some("prod"),
            "office",
            json!({"site": "office"}),
            json!({"nets": ["198.51.101.0/24"]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web("198.51.100.7")),
        VerdictAction::Deny
    );
}

#[test]
fn not_selector_matches_addresses_that_are_not_calico_endpoints() {
    let mut model = cluster();
    admit_from(
        &mut model,
        gnp(
            "not-db",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"notSelector": "role == 'db'"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OUTSIDE_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn negated_selector_matches_only_calico_endpoints() {
    let mut model = cluster();
    admit_from(
        &mut model,
        gnp(
            "bang-db",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"selector": "role != 'db'"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OUTSIDE_IP)),
        VerdictAction::Deny
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn service_account_names_in_rules() {
    let mut model = cluster();
    let db_with_account = resource(
        "WorkloadEndpoint",
        Some("prod"),
        "db",
        json!({"app": "db"}),
        json!({"orchestrator": "k8s", "node": "node-a", "ipNetworks": ["10.0.0.2/32"], "serviceAccountName": "backend", "profiles": ["kns.prod"]}),
    );
    upsert(&mut model, &db_with_account);
    admit_from(
        &mut model,
        np(
            "prod",
            "from-backend",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"serviceAccounts": {"names": ["backend"]}}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Deny
    );
}

// ---- nets, protocols, ports, ICMP ----

#[test]
fn nets_and_not_nets() {
    let mut model = cluster();
    admit_from(
        &mut model,
        gnp(
            "nets",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"nets": ["10.0.0.0/16"], "notNets": ["10.0.1.0/24"]}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Deny
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OUTSIDE_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn protocol_and_not_protocol() {
    let mut model = cluster();
    admit_from(
        &mut model,
        gnp(
            "udp",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "protocol": "UDP"}, {"action": "Allow", "notProtocol": "TCP", "source": {"nets": ["10.0.1.0/24"]}}]}),
        ),
    );
    let mut udp = to_web(DB_IP);
    udp.protocol = UDP;
    assert_eq!(
        verdict(&model, Direction::Ingress, &udp),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &icmp(OTHER_NS_IP, WEB_IP, 8, 0)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(OTHER_NS_IP)),
        VerdictAction::Deny
    );
}

#[test]
fn ports_ranges_and_not_ports() {
    let mut model = cluster();
    admit_from(
        &mut model,
        gnp(
            "ports",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80, "8000:8100"], "notPorts": [8080]}}]}),
        ),
    );
    for (port, expected) in [
        (80, VerdictAction::Allow),
        (81, VerdictAction::Deny),
        (8000, VerdictAction::Allow),
        (8100, VerdictAction::Allow),
        (8101, VerdictAction::Deny),
        (8080, VerdictAction::Deny),
    ] {
        assert_eq!(
            verdict(&model, Direction::Ingress, &tcp(DB_IP, WEB_IP, port)),
            expected,
            "port {port}"
        );
    }
}

#[test]
fn source_ports_match_the_source_port() {
    let mut model = cluster();
    admit_from(
        &mut model,
        gnp(
            "sport",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"ports": ["40000:40010"]}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
    let mut other = to_web(DB_IP);
    other.source_port = Some(50000);
    assert_eq!(
        verdict(&model, Direction::Ingress, &other),
        VerdictAction::Deny
    );
}

#[test]
fn named_ports_resolve_per_endpoint() {
    let mut model = cluster();
    let with_port = |name: &str, ip: &str, port: u16| {
        resource(
            "WorkloadEndpoint",
            Some("prod"),
            name,
            json!({"app": name}),
            json!({"orchestrator": "k8s", "node": "node-a", "ipNetworks": [format!("{ip}/32")], "profiles": ["kns.prod"],
                   "ports": [{"name": "http", "protocol": "TCP", "port": port}]}),
        )
    };
    upsert(&mut model, &with_port("web", WEB_IP, 8080));
    upsert(&mut model, &with_port("db", DB_IP, 9090));
    admit_from(
        &mut model,
        np(
            "prod",
            "http",
            json!({"selector": "all()", "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &tcp(DB_IP, WEB_IP, 8080)),
        VerdictAction::Allow
    );
    // 9090 is db's http port, not web's.
    assert_eq!(
        verdict(&model, Direction::Ingress, &tcp(DB_IP, WEB_IP, 9090)),
        VerdictAction::Deny
    );
    let mut udp = tcp(DB_IP, WEB_IP, 8080);
    udp.protocol = UDP;
    assert_eq!(
        verdict(&model, Direction::Ingress, &udp),
        VerdictAction::Deny
    );
}

#[test]
fn icmp_type_code_and_not_icmp() {
    let mut model = cluster();
    admit_from(
        &mut model,
        gnp(
            "ping",
            json!({"selector": "app == 'web'", "ingress": [
        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}},
        {"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 3}, "source": {"nets": ["10.0.1.0/24"]}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &icmp(DB_IP, WEB_IP, 8, 0)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &icmp(DB_IP, WEB_IP, 8, 1)),
        VerdictAction::Deny
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &icmp(DB_IP, WEB_IP, 0, 0)),
        VerdictAction::Deny
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &icmp(OTHER_NS_IP, WEB_IP, 0, 0)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &icmp(OTHER_NS_IP, WEB_IP, 3, 1)),
        VerdictAction::Deny
    );
}

#[test]
fn ip_version_restricts_the_family() {
    let mut model = cluster();
    admit_from(
        &mut model,
        gnp(
            "v6-only",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "ipVersion": 6}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
}

// ---- refused rules ----

#[test]
fn http_matches_are_refused_with_the_field_path() {
    let mut model = cluster();
    let policy = gnp(
        "l7",
        json!({"selector": "all()", "ingress": [{"action": "Allow"}, {"action": "Allow", "http": {"methods": ["GET"]}}]}),
    );
    match model.upsert(&policy) {
        Err(ModelError::Compile(CompileError::Unsupported {
            owner,
            rule_index,
            field,
            ..
        })) => {
            assert_eq!(owner, "GlobalNetworkPolicy l7");
            assert_eq!(rule_index, 1);
            assert_eq!(field, "spec.ingress[1].http");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // Refused: the model is unchanged.
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
}

#[test]
fn service_matches_are_refused() {
    let mut model = cluster();
    let policy = np(
        "prod",
        "svc",
        json!({"selector": "all()", "egress": [{"action": "Allow", "destination": {"services": {"name": "kubernetes", "namespace": "default"}}}]}),
    );
    match model.upsert(&policy) {
        Err(ModelError::Compile(CompileError::Unsupported {
            rule_index: 0,
            field,
            ..
        })) => {
            assert_eq!(field, "spec.egress[0].destination.services");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

// ---- labels and the index ----

#[test]
fn endpoints_carry_calico_implicit_and_inherited_labels() {
    let model = cluster();
    let labels = model
        .endpoint_labels(&web())
        .unwrap_or_else(|| panic!("web known"));
    let get = |k: &str| labels.get(k).map(String::as_str);
    assert_eq!(get("app"), Some("web"));
    assert_eq!(get("projectcalico.org/namespace"), Some("prod"));
    assert_eq!(get("projectcalico.org/orchestrator"), Some("k8s"));
    assert_eq!(get("pcns.env"), Some("prod"));
    assert_eq!(get("pcns.projectcalico.org/name"), Some("prod"));
    assert_eq!(get("pcns.kubernetes.io/metadata.name"), Some("prod"));
}

#[test]
fn own_labels_win_over_profile_labels() {
    let mut model = PolicyModel::new(None);
    upsert(
        &mut model,
        &resource(
            "Profile",
            None,
            "p",
            json!({}),
            json!({"labelsToApply": {"app": "from-profile", "extra": "yes"}}),
        ),
    );
    upsert(
        &mut model,
        &resource(
            "WorkloadEndpoint",
            Some("prod"),
            "web",
            json!({"app": "web"}),
            json!({"ipNetworks": ["10.0.0.1/32"], "profiles": ["p"]}),
        ),
    );
    let labels = model
        .endpoint_labels(&web())
        .unwrap_or_else(|| panic!("web known"));
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(labels.get("extra").map(String::as_str), Some("yes"));
}

fn net(text: &str) -> SetElement {
    SetElement::Net(text.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
}

#[test]
fn label_change_reports_only_the_sets_the_endpoint_enters_or_leaves() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "p",
            json!({"selector": "all()", "ingress": [
        {"action": "Allow", "source": {"selector": "app == 'web'"}},
        {"action": "Allow", "source": {"selector": "app == 'api'"}},
        {"action": "Allow", "source": {"selector": "has(role)"}}]}),
        ),
    );
    let update = model
        .upsert(&pod("prod", "web", WEB_IP, json!({"app": "api"})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(update.set_deltas.len(), 2);
    let web_set = calico_policy::SetSpec::Selector(
        calico_api::Selector::parse("app == 'web'").unwrap_or_default(),
    )
    .id();
    let api_set = calico_policy::SetSpec::Selector(
        calico_api::Selector::parse("app == 'api'").unwrap_or_default(),
    )
    .id();
    for delta in &update.set_deltas {
        if delta.set_id == web_set {
            assert_eq!(
                (delta.added.clone(), delta.removed.clone()),
                (vec![], vec![net("10.0.0.1/32")])
            );
        } else if delta.set_id == api_set {
            assert_eq!(
                (delta.added.clone(), delta.removed.clone()),
                (vec![net("10.0.0.1/32")], vec![])
            );
        } else {
            panic!("unexpected delta {delta:?}");
        }
    }
    // Same labels again: nothing to do.
    let again = model
        .upsert(&pod("prod", "web", WEB_IP, json!({"app": "api"})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.set_deltas.is_empty());
}

#[test]
fn sets_are_shared_by_selector_text_and_dropped_with_their_last_user() {
    let mut model = cluster();
    let rule = json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {"selector": "app == 'db'"}}]});
    let first = model
        .upsert(&gnp("one", rule.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.set_deltas.len(), 1);
    assert_eq!(first.set_deltas[0].added, vec![net("10.0.0.2/32")]);
    let set_id = first.set_deltas[0].set_id.clone();
    assert!(set_id.as_str().starts_with("s:"));
    let second = model
        .upsert(&gnp("two", rule))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(second.set_deltas.is_empty(), "same selector, same set");
    assert!(
        model
            .delete(Kind::GlobalNetworkPolicy, None, "one")
            .set_deltas
            .is_empty()
    );
    let last = model.delete(Kind::GlobalNetworkPolicy, None, "two");
    assert_eq!(last.set_deltas.len(), 1);
    assert_eq!(last.set_deltas[0].set_id, set_id);
    assert_eq!(last.set_deltas[0].removed, vec![net("10.0.0.2/32")]);
    assert!(model.set_elements(&set_id).is_none());
}

#[test]
fn shared_nets_leave_a_set_only_with_their_last_member() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "p",
            json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {"selector": "has(kind)"}}]}),
        ),
    );
    upsert(
        &mut model,
        &resource(
            "GlobalNetworkSet",
            None,
            "a",
            json!({"kind": "x"}),
            json!({"nets": ["198.51.100.0/24"]}),
        ),
    );
    upsert(
        &mut model,
        &resource(
            "GlobalNetworkSet",
            None,
            "b",
            json!({"kind": "y"}),
            json!({"nets": ["198.51.100.0/24"]}),
        ),
    );
    assert!(
        model
            .delete(Kind::GlobalNetworkSet, None, "a")
            .set_deltas
            .is_empty()
    );
    let last = model.delete(Kind::GlobalNetworkSet, None, "b");
    assert_eq!(last.set_deltas.len(), 1);
    assert_eq!(last.set_deltas[0].removed, vec![net("198.51.100.0/24")]);
}

#[test]
fn named_port_sets_hold_ip_protocol_port() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource(
            "WorkloadEndpoint",
            Some("prod"),
            "db",
            json!({"app": "db"}),
            json!({"node": "node-a", "ipNetworks": ["10.0.0.2/32"], "ports": [{"name": "sql", "protocol": "TCP", "port": 5432}]}),
        ),
    );
    let update = model
        .upsert(&gnp("p", json!({"selector": "all()", "egress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["sql"]}}]})))
        .unwrap_or_else(|e| panic!("{e}"));
    let added: Vec<SetElement> = update
        .set_deltas
        .iter()
        .flat_map(|d| d.added.clone())
        .collect();
    assert_eq!(
        added,
        vec![SetElement::IpPort {
            ip: ip(DB_IP),
            protocol: TCP,
            port: 5432
        }]
    );
    assert!(update.set_deltas[0].set_id.as_str().starts_with("n:"));
}

#[test]
fn only_local_endpoints_have_active_policies() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource(
            "WorkloadEndpoint",
            Some("prod"),
            "remote",
            json!({"app": "web"}),
            json!({"node": "node-b", "ipNetworks": ["10.0.9.9/32"], "profiles": ["kns.prod"]}),
        ),
    );
    assert!(
        model
            .active_policies(&pod_key("prod", "remote"), Direction::Ingress)
            .is_none()
    );
    assert!(
        model
            .local_endpoints()
            .all(|key| *key != pod_key("prod", "remote"))
    );
    // A remote endpoint is still a member of selector sets.
    upsert(
        &mut model,
        &gnp(
            "p",
            json!({"selector": "app == 'db'", "ingress": [{"action": "Allow", "source": {"selector": "app == 'web'"}}]}),
        ),
    );
    let db = pod_key("prod", "db");
    let allowed = model
        .evaluate(&db, Direction::Ingress, &tcp("10.0.9.9", DB_IP, 80))
        .map(|v| v.action);
    assert_eq!(allowed, Ok(VerdictAction::Allow));
}

#[test]
fn deleting_a_policy_restores_the_profile_verdict() {
    let mut model = cluster();
    upsert(
        &mut model,
        &np(
            "prod",
            "deny",
            json!({"selector": "all()", "ingress": [{"action": "Deny"}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Deny
    );
    let update = model.delete(Kind::NetworkPolicy, Some("prod"), "deny");
    assert!(update.endpoints_touched.contains(&web()));
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
}

#[test]
fn earlier_profile_labels_win_over_later_ones() {
    let mut model = PolicyModel::new(None);
    upsert(
        &mut model,
        &resource(
            "Profile",
            None,
            "first",
            json!({}),
            json!({"labelsToApply": {"team": "first"}}),
        ),
    );
    upsert(
        &mut model,
        &resource(
            "Profile",
            None,
            "second",
            json!({}),
            json!({"labelsToApply": {"team": "second", "only-second": "x"}}),
        ),
    );
    upsert(
        &mut model,
        &resource(
            "WorkloadEndpoint",
            Some("prod"),
            "web",
            json!({}),
            json!({"ipNetworks": ["10.0.0.1/32"], "profiles": ["first", "second"]}),
        ),
    );
    let labels = model
        .endpoint_labels(&web())
        .unwrap_or_else(|| panic!("web known"));
    assert_eq!(labels.get("team").map(String::as_str), Some("first"));
    assert_eq!(labels.get("only-second").map(String::as_str), Some("x"));
}

#[test]
fn log_then_allow_in_one_policy_allows_and_records_the_log() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "log-allow",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Log"}, {"action": "Allow"}]}),
        ),
    );
    let verdict = model
        .evaluate(&web(), Direction::Ingress, &to_web(DB_IP))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verdict.action, VerdictAction::Allow);
    assert_eq!(
        verdict.trace,
        vec![TraceStep::Policy {
            tier: "default".into(),
            policy: gnp_key("log-allow"),
            logged: vec![0],
            matched: Some((1, Action::Allow))
        }]
    );
}

#[test]
fn named_ports_only_match_the_protocol_they_are_declared_with() {
    let mut model = cluster();
    upsert(
        &mut model,
        &resource(
            "WorkloadEndpoint",
            Some("prod"),
            "web",
            json!({"app": "web"}),
            json!({"node": "node-a", "ipNetworks": ["10.0.0.1/32"], "profiles": ["kns.prod"],
               "ports": [{"name": "dns", "protocol": "UDP", "port": 5353}]}),
        ),
    );
    admit_from(
        &mut model,
        gnp(
            "dns",
            json!({"selector": "app == 'web'", "ingress": [
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["dns"]}},
        {"action": "Allow", "protocol": "UDP", "destination": {"ports": ["dns"]}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &tcp(DB_IP, WEB_IP, 5353)),
        VerdictAction::Deny
    );
    let mut udp = tcp(DB_IP, WEB_IP, 5353);
    udp.protocol = UDP;
    assert_eq!(
        decision(&model, Direction::Ingress, &udp),
        Decision::PolicyRule {
            tier: "default".into(),
            policy: gnp_key("dns"),
            index: 1
        }
    );
}

#[test]
fn host_endpoints_are_selected_by_labels_and_fall_back_to_their_profiles() {
    let mut model = PolicyModel::new(Some("node-a".into()));
    upsert(
        &mut model,
        &resource(
            "Profile",
            None,
            "open",
            json!({}),
            json!({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}),
        ),
    );
    upsert(
        &mut model,
        &resource(
            "HostEndpoint",
            None,
            "node-a-eth0",
            json!({"role": "host"}),
            json!({"node": "node-a", "interfaceName": "eth0", "expectedIPs": ["198.18.0.1"], "profiles": ["open"]}),
        ),
    );
    let host = calico_policy::EndpointKey::Host {
        name: "node-a-eth0".into(),
    };
    let endpoint = model
        .endpoint(&host)
        .unwrap_or_else(|| panic!("host endpoint known"));
    assert_eq!(endpoint.interface_name.as_deref(), Some("eth0"));
    let ssh = tcp("198.18.0.2", "198.18.0.1", 22);
    assert_eq!(
        model
            .evaluate(&host, Direction::Ingress, &ssh)
            .map(|v| v.action),
        Ok(VerdictAction::Allow)
    );
    upsert(
        &mut model,
        &gnp(
            "hosts",
            json!({"selector": "role == 'host'", "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [443]}}]}),
        ),
    );
    assert_eq!(
        model
            .evaluate(&host, Direction::Ingress, &ssh)
            .map(|v| v.action),
        Ok(VerdictAction::Deny)
    );
    // Host endpoints are members of selector sets through their expected IPs.
    upsert(
        &mut model,
        &pod("prod", "web", WEB_IP, json!({"app": "web"})),
    );
    upsert(
        &mut model,
        &np(
            "prod",
            "from-hosts",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Allow", "source": {"namespaceSelector": "global()", "selector": "role == 'host'"}}]}),
        ),
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &tcp("198.18.0.1", WEB_IP, 80)),
        VerdictAction::Allow
    );
    assert_eq!(
        verdict(&model, Direction::Ingress, &tcp("198.18.0.2", WEB_IP, 80)),
        VerdictAction::Deny
    );
}

#[test]
fn kubernetes_network_policy_is_refused_until_it_is_translated() {
    let mut model = cluster();
    let knp = calico_api::Resource::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "prod"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }))
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(matches!(
        model.upsert(&knp),
        Err(ModelError::Invalid {
            kind: "KubernetesNetworkPolicy",
            ..
        })
    ));
}

#[test]
fn pre_dnat_and_untracked_policies_stay_out_of_the_endpoint_chains() {
    let mut model = cluster();
    upsert(
        &mut model,
        &gnp(
            "pre-dnat",
            json!({"selector": "all()", "preDNAT": true, "applyOnForward": true, "ingress": [{"action": "Deny"}]}),
        ),
    );
    upsert(
        &mut model,
        &gnp(
            "untracked",
            json!({"selector": "all()", "doNotTrack": true, "applyOnForward": true, "ingress": [{"action": "Deny"}]}),
        ),
    );
    let active = model
        .active_policies(&web(), Direction::Ingress)
        .unwrap_or_else(|| panic!("local"));
    assert!(active.tiers.is_empty());
    assert_eq!(
        verdict(&model, Direction::Ingress, &to_web(DB_IP)),
        VerdictAction::Allow
    );
}

#[test]
fn malformed_endpoint_addresses_are_refused_naming_the_field() {
    let mut model = cluster();
    let bad = resource(
        "WorkloadEndpoint",
        Some("prod"),
        "bad",
        json!({}),
        json!({"ipNetworks": ["10.0.0.300/32"]}),
    );
    match model.upsert(&bad) {
        Err(ModelError::Invalid {
            kind: "WorkloadEndpoint",
            field,
            ..
        }) => assert_eq!(field, "spec.ipNetworks[0]"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(model.endpoint(&pod_key("prod", "bad")).is_none());
}

#[test]
fn evaluating_an_unknown_endpoint_is_an_error() {
    let model = cluster();
    let missing = pod_key("prod", "missing");
    assert_eq!(
        model.evaluate(&missing, Direction::Ingress, &to_web(DB_IP)),
        Err(ModelError::UnknownEndpoint(missing))
    );
}

#[test]
fn an_endpoint_moving_off_this_node_is_reported_and_loses_its_policies() {
    let mut model = cluster();
    upsert(
        &mut model,
        &np(
            "prod",
            "deny",
            json!({"selector": "all()", "ingress": [{"action": "Deny"}]}),
        ),
    );
    let moved = resource(
        "WorkloadEndpoint",
        Some("prod"),
        "web",
        json!({"app": "web"}),
        json!({"node": "node-b", "ipNetworks": ["10.0.0.1/32"], "profiles": ["kns.prod"]}),
    );
    let update = model.upsert(&moved).unwrap_or_else(|e| panic!("{e}"));
    assert!(update.endpoints_touched.contains(&web()));
    assert!(model.active_policies(&web(), Direction::Ingress).is_none());
}

#[test]
fn sets_are_reported_created_even_when_empty_and_dropped_with_their_last_rule() {
    let mut model = cluster();
    let created = model
        .upsert(&gnp("p", json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {"selector": "app == 'nobody'"}}]})))
        .unwrap_or_else(|e| panic!("{e}"));
    let id = calico_policy::SetSpec::Selector(
        calico_api::Selector::parse("app == 'nobody'").unwrap_or_default(),
    )
    .id();
    assert_eq!(created.sets_created, vec![id.clone()]);
    assert!(created.set_deltas.is_empty());
    let replaced = model
        .upsert(&gnp("p", json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {"selector": "app == 'nobody'"}}, {"action": "Deny"}]})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(replaced.sets_created.is_empty() && replaced.sets_dropped.is_empty());
    let dropped = model.delete(Kind::GlobalNetworkPolicy, None, "p");
    assert_eq!(dropped.sets_dropped, vec![id]);
}

#[test]
fn updates_name_the_policy_or_profile_whose_rules_changed() {
    let mut model = cluster();
    let update = model
        .upsert(&np(
            "prod",
            "p",
            json!({"selector": "app == 'web'", "ingress": [{"action": "Deny"}]}),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let key = PolicyKey {
        kind: PolicyKind::NetworkPolicy,
        namespace: Some("prod".into()),
        name: "p".into(),
    };
    assert_eq!(update.policy_changed, Some(key.clone()));
    assert_eq!(
        update.endpoints_touched.iter().collect::<Vec<_>>(),
        vec![&web()]
    );
    assert_eq!(
        model
            .delete(Kind::NetworkPolicy, Some("prod"), "p")
            .policy_changed,
        Some(key)
    );
    assert_eq!(
        model
            .delete(Kind::NetworkPolicy, Some("prod"), "p")
            .policy_changed,
        None
    );
    let profile = model
        .upsert(&resource(
            "Profile",
            None,
            "extra",
            json!({}),
            json!({"ingress": [{"action": "Allow"}]}),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profile.profile_changed.as_deref(), Some("extra"));
}
