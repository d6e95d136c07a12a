//! BGPFilter: ordered import/export rules for BGP routes, referenced by BGPPeers.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use super::infra_common::ASNumber;
use super::infra_common::{check_community_value, check_range};
use crate::error::{index, join};
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchOperator {
    Equal,
    NotEqual,
    In,
    NotIn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilterAction {
    Accept,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchSource {
    RemotePeers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerType {
    #[serde(rename = "eBGP")]
    EBGP,
    #[serde(rename = "iBGP")]
    IBGP,
}

/// Range of prefix lengths a route must have (bounds 0–32 for v4 rules, 0–128 for v6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

/// Match on a route's communities (exactly one value today).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommunityMatch {
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddCommunity {
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrependASPath {
    pub prefix: Vec<ASNumber>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPriority {
    pub value: i64,
}

/// One route modification; exactly one field must be set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterOperation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_community: Option<AddCommunity>,
    #[serde(
        default,
        rename = "prependASPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub prepend_as_path: Option<PrependASPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_priority: Option<SetPriority>,
}

/// A filter rule (the same shape for the v4 and v6 lists; the list decides the family).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterRule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<MatchSource>,
    /// Interface name or glob (`*`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<PeerType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    #[serde(
        default,
        rename = "asPathPrefix",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub as_path_prefix: Vec<ASNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    pub action: FilterAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<FilterOperation>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterSpec {
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

const MAX_PRIORITY: i64 = 2_147_483_646;

fn check_rule(errs: &mut FieldErrors, path: &str, rule: &BGPFilterRule, v6: bool) {
    let (family, max_len) = if v6 { ("IPv6", 128) } else { ("IPv4", 32) };
    if !rule.cidr.is_empty() {
        let cidr_path = join(path, "cidr");
        if let Some(net) = validate::masked_cidr(errs, &cidr_path, &rule.cidr)
            && matches!(net, IpNet::V6(_)) != v6
        {
            errs.push(
                &cidr_path,
                format!("{:?} is not an {family} CIDR", rule.cidr),
            );
        }
    }
    match (rule.cidr.is_empty(), rule.match_operator.is_some()) {
        (false, false) => errs.push(
            join(path, "matchOperator"),
            "cidr and matchOperator must both be set or both be empty",
        ),
        (true, true) => errs.push(
            join(path, "cidr"),
            "cidr and matchOperator must both be set or both be empty",
        ),
        _ => {}
    }
    if let Some(len) = &rule.prefix_length {
        let len_path = join(path, "prefixLength");
        if rule.cidr.is_empty() {
            errs.push(&len_path, "cidr is required when prefixLength is set");
        }
        for (field, value) in [("min", len.min), ("max", len.max)] {
            if let Some(v) = value {
                check_range(errs, &join(&len_path, field), i64::from(v), 0, max_len);
            }
        }
        if let (Some(min), Some(max)) = (len.min, len.max)
            && min > max
        {
            errs.push(&len_path, "min must not be greater than max");
        }
    }
    if !rule.interface.is_empty() && !crate::validate::is_interface_pattern(&rule.interface, true) {
        errs.push(
            join(path, "interface"),
            format!(
                "invalid interface {:?}: 1-15 characters of a-z, A-Z, 0-9, '_', '.', '-' or '*'",
                rule.interface
            ),
        );
    }
    if let Some(communities) = &rule.communities {
        let values_path = join(&join(path, "communities"), "values");
        if communities.values.len() != 1 {
            errs.push(&values_path, "must contain exactly one community value");
        }
        for (i, value) in communities.values.iter().enumerate() {
            if let Err(msg) = check_community_value(value) {
                errs.push(index(&values_path, i), msg);
            }
        }
    }
    if let Some(priority) = rule.priority {
        check_range(errs, &join(path, "priority"), priority, 1, MAX_PRIORITY);
    }
    if !rule.operations.is_empty() && rule.action != FilterAction::Accept {
        errs.push(
            join(path, "operations"),
            "operations may only be used with action Accept",
        );
    }
    if rule.operations.len() > 10 {
        errs.push(join(path, "operations"), "must have at most 10 items");
    }
    for (i, op) in rule.operations.iter().enumerate() {
        let op_path = index(&join(path, "operations"), i);
        let set = usize::from(op.add_community.is_some())
            + usize::from(op.prepend_as_path.is_some())
            + usize::from(op.set_priority.is_some());
        if set != 1 {
            errs.push(
                &op_path,
                "exactly one of addCommunity, prependASPath or setPriority must be set",
            );
        }
        if let Some(add) = &op.add_community
            && let Err(msg) = check_community_value(&add.value)
        {
            errs.push(join(&join(&op_path, "addCommunity"), "value"), msg);
        }
        if let Some(prepend) = &op.prepend_as_path
            && !(1..=10).contains(&prepend.prefix.len())
        {
            errs.push(
                join(&join(&op_path, "prependASPath"), "prefix"),
                "must have between 1 and 10 AS numbers",
            );
        }
        if let Some(set_priority) = &op.set_priority {
            check_range(
                errs,
                &join(&join(&op_path, "setPriority"), "value"),
                set_priority.value,
                1,
                MAX_PRIORITY,
            );
        }
    }
}

impl SpecType for BGPFilterSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        for (field, rules, v6) in [
            ("exportV4", &self.export_v4, false),
            ("importV4", &self.import_v4, false),
            ("exportV6", &self.export_v6, true),
            ("importV6", &self.import_v6, true),
        ] {
            for (i, rule) in rules.iter().enumerate() {
                check_rule(errs, &index(&join("spec", field), i), rule, v6);
            }
        }
    }
}
