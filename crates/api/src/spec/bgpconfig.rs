//! BGPConfiguration: cluster-wide (`default`) or per-node (`node.<name>`) BGP settings.

use serde::{Deserialize, Serialize};

pub use super::infra_common::{BGPPassword, SecretKeySelector};
use super::infra_common::{
    LOG_LEVELS, check_community_value, check_one_of_ignore_case, check_range, opt_as_number,
};
use crate::error::{index, join};
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// Calico's default AS number when none is configured anywhere.
pub const DEFAULT_AS_NUMBER: u32 = 64512;
/// Default BGP listen port.
pub const DEFAULT_LISTEN_PORT: u16 = 179;

/// A CIDR entry of `serviceClusterIPs`, `serviceExternalIPs` or `serviceLoadBalancerIPs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceIPBlock {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
}

/// A named BGP community value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Community {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `aa:nn` (standard) or `aa:nn:mm` (large).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Communities to attach when advertising a CIDR.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixAdvertisement {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
    /// Names from `communities`, or literal `aa:nn` / `aa:nn:mm` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceLoadBalancerAggregation {
    Enabled,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BindMode {
    None,
    #[serde(rename = "NodeIP")]
    NodeIP,
}

/// Which cluster routes BIRD programs (the rest are Felix's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProgramClusterRoutes {
    Enabled,
    Disabled,
    #[serde(rename = "EnabledIPIPOnly")]
    EnabledIPIPOnly,
    EnabledNoEncapOnly,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    /// Trace|Debug|Info|Warning|Error|Fatal (any case); Calico's default is Info.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_severity_screen: String,
    /// Full node-to-node mesh; unset means enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Default AS number of nodes without their own; unset means 64512.
    #[serde(
        default,
        with = "opt_as_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub as_number: Option<u32>,
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceIPBlock>,
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceIPBlock>,
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceIPBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<ServiceLoadBalancerAggregation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BGPPassword>,
    /// Go duration string, e.g. `120s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV4",
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_peering_ipv4: String,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_peering_ipv6: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<ProgramClusterRoutes>,
    #[serde(
        default,
        rename = "ipv4NormalRoutePriority",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_normal_route_priority: Option<i64>,
    #[serde(
        default,
        rename = "ipv6NormalRoutePriority",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_normal_route_priority: Option<i64>,
}

impl BGPConfigurationSpec {
    pub fn mesh_enabled(&self) -> bool {
        self.node_to_node_mesh_enabled.unwrap_or(true)
    }

    pub fn effective_as_number(&self) -> u32 {
        self.as_number.unwrap_or(DEFAULT_AS_NUMBER)
    }

    /// The value of a community given by name (from `communities`) or literally.
    pub fn resolve_community<'a>(&'a self, name_or_value: &'a str) -> Option<&'a str> {
        if check_community_value(name_or_value).is_ok() {
            return Some(name_or_value);
        }
        self.communities
            .iter()
            .find(|c| c.name == name_or_value)
            .map(|c| c.value.as_str())
    }
}

fn check_service_blocks(errs: &mut FieldErrors, field: &str, blocks: &[ServiceIPBlock]) {
    for (i, block) in blocks.iter().enumerate() {
        if !block.cidr.is_empty() {
            validate::masked_cidr(
                errs,
                &join(&index(&join("spec", field), i), "cidr"),
                &block.cidr,
            );
        }
    }
}

impl SpecType for BGPConfigurationSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        check_one_of_ignore_case(
            errs,
            "spec.logSeverityScreen",
            &self.log_severity_screen,
            LOG_LEVELS,
        );

        check_service_blocks(
            errs,
            "serviceLoadBalancerIPs",
            &self.service_load_balancer_ips,
        );
        check_service_blocks(errs, "serviceExternalIPs", &self.service_external_ips);
        check_service_blocks(errs, "serviceClusterIPs", &self.service_cluster_ips);

        for (i, community) in self.communities.iter().enumerate() {
            let path = index("spec.communities", i);
            if community.name.is_empty() {
                errs.push(join(&path, "name"), "required field is missing");
            } else {
                validate::name(errs, &join(&path, "name"), &community.name);
            }
            if community.value.is_empty() {
                errs.push(join(&path, "value"), "required field is missing");
            } else if let Err(msg) = check_community_value(&community.value) {
                errs.push(join(&path, "value"), msg);
            }
        }
        if !self.communities.is_empty() && self.prefix_advertisements.is_empty() {
            errs.push(
                "spec.communities",
                "communities are defined but not used in prefixAdvertisements",
            );
        }

        for (i, adv) in self.prefix_advertisements.iter().enumerate() {
            let path = index("spec.prefixAdvertisements", i);
            if adv.cidr.is_empty() {
                errs.push(join(&path, "cidr"), "required field is missing");
            } else {
                validate::masked_cidr(errs, &join(&path, "cidr"), &adv.cidr);
            }
            if adv.communities.is_empty() {
                errs.push(join(&path, "communities"), "required field is missing");
            }
            for (j, community) in adv.communities.iter().enumerate() {
                let literal_shape = community.contains(':');
                let known = self.communities.iter().any(|c| &c.name == community);
                let problem = if literal_shape {
                    check_community_value(community).err()
                } else if known {
                    None
                } else {
                    Some(format!(
                        "community {community:?} is neither defined in spec.communities nor a value of the form aa:nn or aa:nn:mm"
                    ))
                };
                if let Some(msg) = problem {
                    errs.push(index(&join(&path, "communities"), j), msg);
                }
            }
        }

        if let Some(port) = self.listen_port {
            check_range(errs, "spec.listenPort", i64::from(port), 1, 65535);
        }
        if let Some(d) = &self.node_mesh_max_restart_time {
            validate::go_duration(errs, "spec.nodeMeshMaxRestartTime", d);
        }
        if self.node_to_node_mesh_enabled == Some(false) {
            if self.node_mesh_password.is_some() {
                errs.push(
                    "spec.nodeMeshPassword",
                    "nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false",
                );
            }
            if self.node_mesh_max_restart_time.is_some() {
                errs.push(
                    "spec.nodeMeshMaxRestartTime",
                    "nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false",
                );
            }
        }
        if let Some(password) = &self.node_mesh_password {
            password.validate(errs, "spec.nodeMeshPassword");
        }

        for (i, iface) in self.ignored_interfaces.iter().enumerate() {
            if iface == "*" || !crate::validate::is_interface_pattern(iface, true) {
                errs.push(
                    index("spec.ignoredInterfaces", i),
                    format!(
                        "invalid interface name {iface:?}: 1-15 characters of a-z, A-Z, 0-9, '_', '.', '-' or '*' glob (not \"*\" alone)"
                    ),
                );
            }
        }
        if !self.local_workload_peering_ipv4.is_empty() {
            validate::ipv4_address(
                errs,
                "spec.localWorkloadPeeringIPV4",
                &self.local_workload_peering_ipv4,
            );
        }
        if !self.local_workload_peering_ipv6.is_empty() {
            validate::ipv6_address(
                errs,
                "spec.localWorkloadPeeringIPV6",
                &self.local_workload_peering_ipv6,
            );
        }
        for (field, value) in [
            ("ipv4NormalRoutePriority", self.ipv4_normal_route_priority),
            ("ipv6NormalRoutePriority", self.ipv6_normal_route_priority),
        ] {
            if let Some(v) = value {
                check_range(errs, &join("spec", field), v, 1, 2_147_483_646);
            }
        }

        // Some settings only make sense cluster-wide; Calico refuses them on `node.<name>` objects.
        if meta.name != "default" {
            let global_only = [
                (
                    "nodeToNodeMeshEnabled",
                    self.node_to_node_mesh_enabled.is_some(),
                ),
                ("asNumber", self.as_number.is_some()),
                (
                    "serviceLoadBalancerIPs",
                    !self.service_load_balancer_ips.is_empty(),
                ),
                ("serviceExternalIPs", !self.service_external_ips.is_empty()),
                ("serviceClusterIPs", !self.service_cluster_ips.is_empty()),
                ("nodeMeshPassword", self.node_mesh_password.is_some()),
                (
                    "nodeMeshMaxRestartTime",
                    self.node_mesh_max_restart_time.is_some(),
                ),
            ];
            for (field, set) in global_only {
                if set {
                    errs.push(
                        join("spec", field),
                        format!("cannot set {field} on a non default BGP Configuration"),
                    );
                }
            }
        }
    }
}
