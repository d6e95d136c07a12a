//! `v1` Namespace spec: Kubernetes' own fields, kept only so a Namespace document decodes; what
//! matters to Calico is the name and the labels.

use serde::{Deserialize, Serialize};

use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// `spec` of a Kubernetes Namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesNamespaceSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

impl SpecType for KubernetesNamespaceSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        // Kubernetes namespace names are single DNS labels (they end up inside other names).
        if meta.name.is_empty() {
            errs.push("metadata.name", "name is required");
        } else if !validate::is_dns1123_label(&meta.name) {
            errs.push(
                "metadata.name",
                format!(
                    "invalid namespace name {:?}: must be a DNS-1123 label (at most 63 lower case alphanumeric characters or '-', starting and ending alphanumeric)",
                    meta.name
                ),
            );
        }
    }
}
