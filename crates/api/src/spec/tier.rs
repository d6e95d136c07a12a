//! Tier spec: an ordered group of policies with a default action.

use serde::{Deserialize, Serialize};

use crate::spec::rule::Action;
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// Tiers Calico creates and whose order and default action are fixed: (name, order, default action).
pub const PROTECTED_TIERS: [(&str, f64, Action); 3] = [
    ("default", 1_000_000.0, Action::Deny),
    ("kube-admin", 1_000.0, Action::Pass),
    ("kube-baseline", 10_000_000.0, Action::Pass),
];

/// `spec` of a Tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// Lower orders are evaluated first; `None` is evaluated last.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::serialize_go_float"
    )]
    pub order: Option<f64>,
    /// What happens to traffic that policies in this tier selected but did not allow or pass:
    /// `Deny` (default) or `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}

impl TierSpec {
    /// The default action, `Deny` when unset.
    pub fn action(&self) -> Action {
        self.default_action.unwrap_or(Action::Deny)
    }
}

impl SpecType for TierSpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        if self.default_action.is_none() {
            self.default_action = Some(Action::Deny);
        }
    }

    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate::tier_name(errs, "metadata.name", &meta.name);
        if let Some(order) = self.order
            && !order.is_finite()
        {
            errs.push("spec.order", "order must be a finite number");
        }
        if let Some(action) = self.default_action
            && !matches!(action, Action::Deny | Action::Pass)
        {
            errs.push(
                "spec.defaultAction",
                format!("invalid defaultAction {action}: must be Deny or Pass"),
            );
        }
        if let Some((name, order, action)) = PROTECTED_TIERS
            .iter()
            .find(|(name, _, _)| *name == meta.name)
        {
            if self.order != Some(*order) {
                errs.push("spec.order", format!("{name} tier order must be {order}"));
            }
            if self.default_action != Some(*action) {
                errs.push(
                    "spec.defaultAction",
                    format!("the '{name}' tier must have default action '{action}'"),
                );
            }
        }
    }
}
