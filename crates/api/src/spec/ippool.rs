//! IPPool: a range of addresses Calico IPAM hands out, with its encapsulation and NAT settings.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::join;
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// IPIP / VXLAN encapsulation mode of a pool. An empty string in input means `Never`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EncapMode {
    #[default]
    #[serde(alias = "")]
    Never,
    Always,
    CrossSubnet,
}

impl EncapMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EncapMode::Never => "Never",
            EncapMode::Always => "Always",
            EncapMode::CrossSubnet => "CrossSubnet",
        }
    }

    pub fn enabled(self) -> bool {
        self != EncapMode::Never
    }
}

impl fmt::Display for EncapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What addresses from a pool may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

/// Whether IPAM picks from the pool automatically or only when the pool is asked for by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssignmentMode {
    #[default]
    Automatic,
    Manual,
}

impl AssignmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentMode::Automatic => "Automatic",
            AssignmentMode::Manual => "Manual",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    /// The pool's CIDR (required, masked, never changes).
    #[serde(default)]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    #[serde(default, rename = "disableBGPExport", skip_serializing_if = "is_false")]
    pub disable_bgp_export: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

const IPV4_LINK_LOCAL: &str = "169.254.0.0/16";
const IPV6_LINK_LOCAL: &str = "fe80::/10";

impl IPPoolSpec {
    /// The parsed CIDR, if it parses (with or without host bits).
    pub fn net(&self) -> Option<IpNet> {
        self.cidr.parse::<IpNet>().ok()
    }

    pub fn ipip(&self) -> EncapMode {
        self.ipip_mode.unwrap_or_default()
    }

    pub fn vxlan(&self) -> EncapMode {
        self.vxlan_mode.unwrap_or_default()
    }

    /// The block size, or Calico's default for the pool's family (26 for IPv4, 122 for IPv6).
    pub fn effective_block_size(&self) -> u32 {
        match (self.block_size, self.net()) {
            (Some(b), _) if b != 0 => b,
            (_, Some(IpNet::V6(_))) => 122,
            _ => 26,
        }
    }

    /// Allowed uses, with the default (Workload and Tunnel) when none are listed.
    pub fn effective_allowed_uses(&self) -> Vec<AllowedUse> {
        if self.allowed_uses.is_empty() {
            vec![AllowedUse::Workload, AllowedUse::Tunnel]
        } else {
            self.allowed_uses.clone()
        }
    }

    /// The node selector (empty means `all()`).
    pub fn effective_node_selector(&self) -> &str {
        if self.node_selector.is_empty() {
            "all()"
        } else {
            &self.node_selector
        }
    }
}

impl SpecType for IPPoolSpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        // Calico stores the CIDR in canonical form (e.g. `fd00:0::/48` becomes `fd00::/48`).
        if let Some(net) = self.net()
            && net.trunc() == net
        {
            self.cidr = net.to_string();
        }
        if self.block_size.unwrap_or(0) == 0 && self.net().is_some() {
            self.block_size = Some(self.effective_block_size());
        }
        if self.ipip_mode.is_none() {
            self.ipip_mode = Some(EncapMode::Never);
        }
        if self.vxlan_mode.is_none() {
            self.vxlan_mode = Some(EncapMode::Never);
        }
        if self.node_selector.is_empty() {
            self.node_selector = "all()".into();
        }
        if self.allowed_uses.is_empty() {
            self.allowed_uses = self.effective_allowed_uses();
        }
        if self.assignment_mode.is_none() {
            self.assignment_mode = Some(AssignmentMode::Automatic);
        }
    }

    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        let cidr_path = "spec.cidr";
        let net = if self.cidr.is_empty() {
            errs.push(cidr_path, "required field is missing");
            None
        } else if !self.cidr.contains('/') {
            errs.push(
                cidr_path,
                format!(
                    "invalid CIDR {:?}: IPPool CIDR must be a subnet such as 10.244.0.0/16",
                    self.cidr
                ),
            );
            None
        } else {
            validate::masked_cidr(errs, cidr_path, &self.cidr)
        };

        if let Some(net) = net {
            let (link_local, family) = match net {
                IpNet::V4(_) => (IPV4_LINK_LOCAL, "IPv4"),
                IpNet::V6(_) => (IPV6_LINK_LOCAL, "IPv6"),
            };
            if let Ok(link_local) = link_local.parse::<IpNet>()
                && (link_local.contains(&net.network()) || net.contains(&link_local.network()))
            {
                errs.push(
                    cidr_path,
                    format!("IPPool CIDR overlaps with {family} link local range {link_local}"),
                );
            }

            let (min, max) = match net {
                IpNet::V4(_) => (20, 32),
                IpNet::V6(_) => (116, 128),
            };
            let block_size = self.effective_block_size();
            let block_size_ok = (min..=max).contains(&block_size);
            if !block_size_ok {
                errs.push("spec.blockSize", format!("must be between {min} and {max}"));
            }
            if block_size_ok && !self.disabled && u32::from(net.prefix_len()) > block_size {
                errs.push(
                    cidr_path,
                    format!(
                        "IP pool size is too small for use with Calico IPAM: the prefix length \
                         /{} must be equal to or less than the block size {block_size}",
                        net.prefix_len()
                    ),
                );
            }
            if net.addr().is_ipv6() && self.ipip().enabled() {
                errs.push("spec.ipipMode", "IPIP is not supported on IPv6 pools");
            }
        }

        if self.ipip().enabled() && self.vxlan().enabled() {
            errs.push(
                "spec.ipipMode",
                "ipipMode and vxlanMode cannot both be enabled (set one of them to Never)",
            );
        }

        for (field, value) in [
            ("nodeSelector", &self.node_selector),
            ("namespaceSelector", &self.namespace_selector),
        ] {
            if value.is_empty() {
                continue;
            }
            let path = join("spec", field);
            if validate::selector(errs, &path, value).is_some_and(|s| s.uses_global()) {
                errs.push(
                    &path,
                    format!("global() selector is not valid for IPPool {field}"),
                );
            }
        }

        let uses = self.effective_allowed_uses();
        if uses.contains(&AllowedUse::LoadBalancer) {
            if uses.iter().any(|u| *u != AllowedUse::LoadBalancer) {
                errs.push(
                    "spec.allowedUses",
                    "LoadBalancer cannot be combined with Workload or Tunnel allowed uses",
                );
            }
            if self.ipip().enabled() || self.vxlan().enabled() {
                errs.push(
                    "spec.allowedUses",
                    "LoadBalancer IP pool cannot have IPIP or VXLAN enabled",
                );
            }
            if self.disable_bgp_export {
                errs.push(
                    "spec.disableBGPExport",
                    "LoadBalancer IP pools cannot disable BGP export",
                );
            }
            if self.effective_node_selector().trim() != "all()" {
                errs.push(
                    "spec.nodeSelector",
                    "IP Pool with AllowedUse LoadBalancer must have nodeSelector set to all()",
                );
            }
        }
        if uses.contains(&AllowedUse::Tunnel) && !self.namespace_selector.is_empty() {
            errs.push(
                "spec.namespaceSelector",
                "IP Pool with AllowedUse Tunnel cannot have namespaceSelector",
            );
        }
    }
}
