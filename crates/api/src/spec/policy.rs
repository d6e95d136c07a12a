//! NetworkPolicy, GlobalNetworkPolicy and StagedNetworkPolicy specs.

use serde::{Deserialize, Serialize};

use crate::error::{FieldErrors, index};
use crate::spec::rule::{Direction, Rule, RuleScope, validate_rules};
use crate::{ObjectMeta, SpecType, validate};

/// The tier a policy without `tier` belongs to.
pub const DEFAULT_TIER: &str = "default";

/// Which directions of traffic a policy applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

/// Hints to the policy engine that never change enforcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PerformanceHint {
    /// Treat the policy as if it matched a local endpoint on every node (preload it).
    AssumeNeededOnEveryNode,
}

/// What a staged policy would do if it were enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StagedAction {
    /// Create or replace the enforced policy of the same name.
    #[default]
    Set,
    /// Delete the enforced policy of the same name.
    Delete,
    Learn,
    Ignore,
}

/// `spec` of a namespaced NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Lower orders apply first; `None` applies last.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::serialize_go_float"
    )]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<PerformanceHint>,
}

/// `spec` of a cluster-wide GlobalNetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::serialize_go_float"
    )]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    /// Stateless: applied in the raw table before connection tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_not_track: Option<bool>,
    /// Applied before DNAT (ingress only).
    #[serde(rename = "preDNAT", default, skip_serializing_if = "Option::is_none")]
    pub pre_dnat: Option<bool>,
    /// Also applied to traffic forwarded through a host endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_on_forward: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<PerformanceHint>,
}

/// `spec` of a StagedNetworkPolicy: a NetworkPolicy that is reported on but never enforced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedNetworkPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<StagedAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::serialize_go_float"
    )]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<PerformanceHint>,
}

impl NetworkPolicySpec {
    /// The tier, `default` when unset.
    pub fn tier_name(&self) -> &str {
        tier_or_default(&self.tier)
    }
}

impl GlobalNetworkPolicySpec {
    pub fn tier_name(&self) -> &str {
        tier_or_default(&self.tier)
    }
    pub fn do_not_track(&self) -> bool {
        self.do_not_track.unwrap_or(false)
    }
    pub fn pre_dnat(&self) -> bool {
        self.pre_dnat.unwrap_or(false)
    }
    pub fn apply_on_forward(&self) -> bool {
        self.apply_on_forward.unwrap_or(false)
    }
}

impl StagedNetworkPolicySpec {
    pub fn tier_name(&self) -> &str {
        tier_or_default(&self.tier)
    }
    /// The staged action, `Set` when unset.
    pub fn action(&self) -> StagedAction {
        self.staged_action.unwrap_or_default()
    }
}

fn tier_or_default(tier: &Option<String>) -> &str {
    match tier.as_deref() {
        None | Some("") => DEFAULT_TIER,
        Some(t) => t,
    }
}

/// Calico's `types` default: ingress unless there are only egress rules; both if both are present.
pub fn default_types(ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    match (ingress.is_empty(), egress.is_empty()) {
        (_, true) => vec![PolicyType::Ingress],
        (true, false) => vec![PolicyType::Egress],
        (false, false) => vec![PolicyType::Ingress, PolicyType::Egress],
    }
}

fn default_tier_and_types(
    tier: &mut Option<String>,
    types: &mut Vec<PolicyType>,
    ingress: &[Rule],
    egress: &[Rule],
) {
    if tier.as_deref().unwrap_or("").is_empty() {
        *tier = Some(DEFAULT_TIER.into());
    }
    if types.is_empty() {
        *types = default_types(ingress, egress);
    }
}

/// The fields every policy kind shares, borrowed for validation.
struct CommonFields<'a> {
    tier: &'a Option<String>,
    order: Option<f64>,
    ingress: &'a [Rule],
    egress: &'a [Rule],
    selector: &'a Option<String>,
    types: &'a [PolicyType],
    service_account_selector: &'a Option<String>,
    performance_hints: &'a [PerformanceHint],
    scope: RuleScope,
}

/// A policy-level selector: must parse, and `global()` is only meaningful in rule namespaceSelectors.
fn policy_selector(errs: &mut FieldErrors, path: &str, value: &Option<String>) {
    let Some(value) = value else { return };
    if value.contains("global(") {
        errs.push(
            path,
            "global() can only be used in an EntityRule namespaceSelector",
        );
    } else {
        validate::selector(errs, path, value);
    }
}

fn validate_common(f: &CommonFields<'_>, errs: &mut FieldErrors) {
    if let Some(tier) = f.tier.as_deref().filter(|t| !t.is_empty()) {
        validate::reference_name(errs, "spec.tier", tier);
    }
    if let Some(order) = f.order
        && !order.is_finite()
    {
        errs.push("spec.order", "order must be a finite number");
    }
    policy_selector(errs, "spec.selector", f.selector);
    policy_selector(
        errs,
        "spec.serviceAccountSelector",
        f.service_account_selector,
    );
    for (i, t) in f.types.iter().enumerate() {
        if f.types[..i].contains(t) {
            errs.push(
                index("spec.types", i),
                format!("'{t:?}' type specified more than once"),
            );
        }
    }
    for (i, h) in f.performance_hints.iter().enumerate() {
        if f.performance_hints[..i].contains(h) {
            errs.push(
                index("spec.performanceHints", i),
                format!("'{h:?}' hint specified more than once"),
            );
        }
    }
    validate_rules(f.ingress, "spec.ingress", Direction::Ingress, f.scope, errs);
    validate_rules(f.egress, "spec.egress", Direction::Egress, f.scope, errs);
}

impl SpecType for NetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        default_tier_and_types(&mut self.tier, &mut self.types, &self.ingress, &self.egress);
    }

    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate::policy_name(errs, "metadata.name", &meta.name, false);
        validate_common(
            &CommonFields {
                tier: &self.tier,
                order: self.order,
                ingress: &self.ingress,
                egress: &self.egress,
                selector: &self.selector,
                types: &self.types,
                service_account_selector: &self.service_account_selector,
                performance_hints: &self.performance_hints,
                scope: RuleScope::Namespaced,
            },
            errs,
        );
    }
}

impl SpecType for GlobalNetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        default_tier_and_types(&mut self.tier, &mut self.types, &self.ingress, &self.egress);
    }

    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate::policy_name(errs, "metadata.name", &meta.name, true);
        validate_common(
            &CommonFields {
                tier: &self.tier,
                order: self.order,
                ingress: &self.ingress,
                egress: &self.egress,
                selector: &self.selector,
                types: &self.types,
                service_account_selector: &self.service_account_selector,
                performance_hints: &self.performance_hints,
                scope: RuleScope::Global,
            },
            errs,
        );
        policy_selector(errs, "spec.namespaceSelector", &self.namespace_selector);
        if self.pre_dnat() && self.do_not_track() {
            errs.push("spec.preDNAT", "preDNAT and doNotTrack cannot both be true");
        }
        if self.pre_dnat() && !self.egress.is_empty() {
            errs.push("spec.egress", "preDNAT policy cannot have any egress rules");
        }
        if self.pre_dnat()
            && let Some(i) = self.types.iter().position(|t| *t == PolicyType::Egress)
        {
            errs.push(
                index("spec.types", i),
                "preDNAT policy cannot have 'Egress' type",
            );
        }
        if (self.pre_dnat() || self.do_not_track()) && !self.apply_on_forward() {
            errs.push(
                "spec.applyOnForward",
                "applyOnForward must be true if either preDNAT or doNotTrack is true",
            );
        }
    }
}

impl SpecType for StagedNetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        if self.staged_action.is_none() {
            self.staged_action = Some(StagedAction::Set);
        }
        default_tier_and_types(&mut self.tier, &mut self.types, &self.ingress, &self.egress);
        // A staged deletion carries no policy body; Calico clears the defaulted types.
        if self.action() == StagedAction::Delete {
            self.types.clear();
        }
    }

    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate::policy_name(errs, "metadata.name", &meta.name, false);
        if self.action() == StagedAction::Delete {
            let body_only = StagedNetworkPolicySpec {
                staged_action: self.staged_action,
                tier: self.tier.clone(),
                ..StagedNetworkPolicySpec::default()
            };
            if *self != body_only {
                errs.push(
                    "spec",
                    "spec fields, except tier, must all be empty when stagedAction is Delete",
                );
            }
            if let Some(tier) = self.tier.as_deref().filter(|t| !t.is_empty()) {
                validate::reference_name(errs, "spec.tier", tier);
            }
            return;
        }
        validate_common(
            &CommonFields {
                tier: &self.tier,
                order: self.order,
                ingress: &self.ingress,
                egress: &self.egress,
                selector: &self.selector,
                types: &self.types,
                service_account_selector: &self.service_account_selector,
                performance_hints: &self.performance_hints,
                scope: RuleScope::Namespaced,
            },
            errs,
        );
    }
}
