//! IPAMConfiguration (`default` only): cluster-wide IPAM behaviour.

use serde::{Deserialize, Serialize};

use super::infra_common::check_range;
use crate::{FieldErrors, ObjectMeta, SpecType};

/// Whether KubeVirt VMs keep their addresses across restarts and migrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VMAddressPersistence {
    Enabled,
    Disabled,
}

/// Effective cap on blocks per host when `maxBlocksPerHost` is 0 (unset).
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMConfigurationSpec {
    /// Never borrow addresses from blocks affine to other hosts. Always written (Calico has no omitempty).
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<i64>,
    /// Defaults to true; always written once defaulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
    #[serde(
        default,
        rename = "kubeVirtVMAddressPersistence",
        skip_serializing_if = "Option::is_none"
    )]
    pub kube_virt_vm_address_persistence: Option<VMAddressPersistence>,
    #[serde(
        default,
        rename = "ipCooldownSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_cooldown_seconds: Option<i64>,
}

impl IPAMConfigurationSpec {
    pub fn auto_allocate(&self) -> bool {
        self.auto_allocate_blocks.unwrap_or(true)
    }

    /// The configured cap, or `None` when unset/0.
    pub fn max_blocks(&self) -> Option<u32> {
        self.max_blocks_per_host
            .filter(|m| *m > 0)
            .and_then(|m| u32::try_from(m).ok())
    }
}

impl SpecType for IPAMConfigurationSpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        if self.auto_allocate_blocks.is_none() {
            self.auto_allocate_blocks = Some(true);
        }
    }

    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if let Some(max) = self.max_blocks_per_host {
            check_range(errs, "spec.maxBlocksPerHost", max, 0, 1_000_000);
            if max > 0 && !self.strict_affinity {
                errs.push(
                    "spec.maxBlocksPerHost",
                    "maxBlocksPerHost requires strictAffinity to be true",
                );
            }
        }
        if let Some(secs) = self.ip_cooldown_seconds {
            check_range(errs, "spec.ipCooldownSeconds", secs, 0, 1200);
        }
        if !self.strict_affinity && !self.auto_allocate() {
            errs.push(
                "spec.autoAllocateBlocks",
                "cannot disable both strictAffinity and autoAllocateBlocks",
            );
        }
    }
}
