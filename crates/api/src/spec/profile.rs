//! Profile spec: rules and labels applied to every endpoint that lists the profile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::join;
use crate::spec::rule::{Direction, Rule, RuleScope, validate_rules};
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// `spec` of a Profile. In Kubernetes, Calico synthesizes `kns.<namespace>` (allow all, namespace
/// labels as `pcns.*`) and `ksa.<namespace>.<serviceaccount>` (service account labels as `pcsa.*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    /// Labels every endpoint using this profile inherits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_to_apply: Option<BTreeMap<String, String>>,
}

impl SpecType for ProfileSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        // Profile names (`kns.default`, `ksa.default.default`, CNI network names) follow the generic
        // DNS-1123 subdomain rule.
        validate::name(errs, "metadata.name", &meta.name);
        validate_rules(
            &self.ingress,
            "spec.ingress",
            Direction::Ingress,
            RuleScope::Profile,
            errs,
        );
        validate_rules(
            &self.egress,
            "spec.egress",
            Direction::Egress,
            RuleScope::Profile,
            errs,
        );
        for (key, value) in self.labels_to_apply.iter().flatten() {
            let path = join("spec.labelsToApply", key);
            if !validate::is_qualified_name(key) {
                errs.push(&path, format!("invalid label key {key:?}"));
            }
            if !validate::is_label_value(value) {
                errs.push(&path, format!("invalid label value {value:?}"));
            }
        }
    }
}
