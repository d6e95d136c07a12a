//! NetworkSet (namespaced) and GlobalNetworkSet specs: named lists of CIDRs that policy selectors
//! can match by label.

use serde::{Deserialize, Serialize};

use crate::error::{index, join};
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// `spec` of a namespaced NetworkSet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

/// `spec` of a cluster-wide GlobalNetworkSet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

/// The label Calico reserves for mapping namespaces; it may not be set by users on network sets.
const RESERVED_NAMESPACE_LABEL: &str = "projectcalico.org/namespace";

fn validate_network_set(nets: &[String], meta: &ObjectMeta, errs: &mut FieldErrors) {
    for (i, net) in nets.iter().enumerate() {
        // Calico accepts unmasked CIDRs here (host bits are ignored).
        if validate::parse_cidr(net).is_none() {
            errs.push(index("spec.nets", i), format!("invalid CIDR {net:?}"));
        }
    }
    if meta.labels().contains_key(RESERVED_NAMESPACE_LABEL) {
        errs.push(
            join("metadata.labels", RESERVED_NAMESPACE_LABEL),
            format!("{RESERVED_NAMESPACE_LABEL} is not a valid label name"),
        );
    }
}

impl SpecType for NetworkSetSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate_network_set(&self.nets, meta, errs);
    }
}

impl SpecType for GlobalNetworkSetSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate_network_set(&self.nets, meta, errs);
    }
}
