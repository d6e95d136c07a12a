//! Node: a Calico node's BGP identity, tunnel addresses and interfaces (written mostly by calico-node).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::infra_common::opt_as_number;
use crate::error::{index, join};
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBGPSpec {
    /// The node's own AS number; unset means the cluster default from BGPConfiguration.
    #[serde(
        default,
        with = "opt_as_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub as_number: Option<u32>,
    /// Address with its subnet's prefix length, e.g. `10.0.0.5/24` (host bits are expected).
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<String>,
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    /// Set on route reflectors: an IPv4 address used as the cluster ID.
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

impl NodeBGPSpec {
    /// The IPv4 address without its prefix length.
    pub fn ipv4(&self) -> Option<std::net::Ipv4Addr> {
        match self.ipv4_address.as_deref().and_then(validate::parse_cidr) {
            Some(IpNet::V4(net)) => Some(net.addr()),
            _ => None,
        }
    }

    /// The IPv6 address without its prefix length.
    pub fn ipv6(&self) -> Option<std::net::Ipv6Addr> {
        match self.ipv6_address.as_deref().and_then(validate::parse_cidr) {
            Some(IpNet::V6(net)) => Some(net.addr()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default)]
    pub orchestrator: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeWireguardSpec {
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv4_address: String,
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv6_address: String,
}

/// Kind of a node address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeAddressType {
    #[serde(rename = "CalicoNodeIP")]
    CalicoNodeIP,
    #[serde(rename = "InternalIP")]
    InternalIP,
    #[serde(rename = "ExternalIP")]
    ExternalIP,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    /// An address, optionally with a prefix length.
    #[serde(default)]
    pub address: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub address_type: Option<NodeAddressType>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeInterface {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPSpec>,
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_vxlan_tunnel_addr: String,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr: String,
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_vxlan_tunnel_addr: String,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr_v6: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<NodeInterface>,
}

/// Check an address-with-prefix of one family (`10.0.0.5/24`; a bare address counts as /32 or /128).
fn check_host_cidr(errs: &mut FieldErrors, path: &str, value: &str, v6: bool) {
    let family = if v6 { "IPv6" } else { "IPv4" };
    match validate::parse_cidr(value) {
        Some(net) if net.addr().is_ipv6() == v6 => {}
        Some(_) => errs.push(path, format!("{value:?} is not an {family} address")),
        None => errs.push(
            path,
            format!("invalid {family} address {value:?}: expected an address with prefix length, e.g. {}", if v6 { "fd00::5/64" } else { "10.0.0.5/24" }),
        ),
    }
}

impl SpecType for NodeSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if let Some(bgp) = &self.bgp {
            if *bgp == NodeBGPSpec::default() {
                errs.push("spec.bgp", "spec.bgp should not be empty (omit it instead)");
            }
            if let Some(v4) = &bgp.ipv4_address {
                check_host_cidr(errs, "spec.bgp.ipv4Address", v4, false);
            }
            if let Some(v6) = &bgp.ipv6_address {
                check_host_cidr(errs, "spec.bgp.ipv6Address", v6, true);
            }
            if let Some(tunnel) = &bgp.ipv4_ipip_tunnel_addr {
                validate::ipv4_address(errs, "spec.bgp.ipv4IPIPTunnelAddr", tunnel);
            }
            if let Some(cluster_id) = &bgp.route_reflector_cluster_id {
                validate::ipv4_address(errs, "spec.bgp.routeReflectorClusterID", cluster_id);
            }
        }
        if !self.ipv4_vxlan_tunnel_addr.is_empty() {
            validate::ipv4_address(
                errs,
                "spec.ipv4VXLANTunnelAddr",
                &self.ipv4_vxlan_tunnel_addr,
            );
        }
        if !self.ipv6_vxlan_tunnel_addr.is_empty() {
            validate::ipv6_address(
                errs,
                "spec.ipv6VXLANTunnelAddr",
                &self.ipv6_vxlan_tunnel_addr,
            );
        }
        if !self.vxlan_tunnel_mac_addr.is_empty() {
            validate::mac_address(errs, "spec.vxlanTunnelMACAddr", &self.vxlan_tunnel_mac_addr);
        }
        if !self.vxlan_tunnel_mac_addr_v6.is_empty() {
            validate::mac_address(
                errs,
                "spec.vxlanTunnelMACAddrV6",
                &self.vxlan_tunnel_mac_addr_v6,
            );
        }
        if let Some(wg) = &self.wireguard {
            if !wg.interface_ipv4_address.is_empty() {
                validate::ipv4_address(
                    errs,
                    "spec.wireguard.interfaceIPv4Address",
                    &wg.interface_ipv4_address,
                );
            }
            if !wg.interface_ipv6_address.is_empty() {
                validate::ipv6_address(
                    errs,
                    "spec.wireguard.interfaceIPv6Address",
                    &wg.interface_ipv6_address,
                );
            }
        }
        for (i, orch) in self.orch_refs.iter().enumerate() {
            if orch.orchestrator.is_empty() {
                errs.push(
                    join(&index("spec.orchRefs", i), "orchestrator"),
                    "required field is missing",
                );
            }
        }
        for (i, addr) in self.addresses.iter().enumerate() {
            let path = join(&index("spec.addresses", i), "address");
            if addr.address.is_empty() {
                errs.push(path, "required field is missing");
            } else if validate::parse_cidr(&addr.address).is_none() {
                errs.push(path, format!("invalid address {:?}", addr.address));
            }
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            for (j, addr) in iface.addresses.iter().enumerate() {
                if validate::parse_cidr(addr).is_none() {
                    errs.push(
                        index(&join(&index("spec.interfaces", i), "addresses"), j),
                        format!("invalid address {addr:?}"),
                    );
                }
            }
        }
    }
}
