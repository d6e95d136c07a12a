//! IPReservation: addresses Calico IPAM must not hand out.

use serde::{Deserialize, Serialize};

use crate::error::index;
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPReservationSpec {
    /// CIDRs or single addresses; host bits may be set (Calico does not require them masked).
    #[serde(
        default,
        rename = "reservedCIDRs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub reserved_cidrs: Vec<String>,
}

impl SpecType for IPReservationSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        for (i, cidr) in self.reserved_cidrs.iter().enumerate() {
            if validate::parse_cidr(cidr).is_none() {
                errs.push(
                    index("spec.reservedCIDRs", i),
                    format!("invalid CIDR {cidr:?}"),
                );
            }
        }
    }
}
