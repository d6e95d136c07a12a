//! (being written)
use crate::{FieldErrors, ObjectMeta, SpecType};
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {}
impl SpecType for NetworkPolicySpec {
    fn validate(&self, _meta: &ObjectMeta, _errs: &mut FieldErrors) {}
}
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {}
impl SpecType for GlobalNetworkPolicySpec {
    fn validate(&self, _meta: &ObjectMeta, _errs: &mut FieldErrors) {}
}
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagedNetworkPolicySpec {}
impl SpecType for StagedNetworkPolicySpec {
    fn validate(&self, _meta: &ObjectMeta, _errs: &mut FieldErrors) {}
}
