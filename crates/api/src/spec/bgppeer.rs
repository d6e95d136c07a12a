//! (being written)
use crate::{FieldErrors, ObjectMeta, SpecType};
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {}
impl SpecType for BGPPeerSpec {
    fn validate(&self, _meta: &ObjectMeta, _errs: &mut FieldErrors) {}
}
