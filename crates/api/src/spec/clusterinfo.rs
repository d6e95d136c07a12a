//! ClusterInformation: cluster-wide facts written by Calico itself (`default` only).

use serde::{Deserialize, Serialize};

use crate::{FieldErrors, ObjectMeta, SpecType};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterInformationSpec {
    #[serde(
        default,
        rename = "clusterGUID",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_guid: String,
    /// Comma-separated list, e.g. `k8s,bgp,kubeadm,kdd`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub calico_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_ready: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl SpecType for ClusterInformationSpec {
    /// Every field is free-form; the name rule (`default`) is checked generically.
    fn validate(&self, _meta: &ObjectMeta, _errs: &mut FieldErrors) {}
}
