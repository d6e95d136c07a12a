//! BGPPeer: a BGP session between Calico nodes and a router or other nodes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use super::infra_common::{BGPPassword, SecretKeySelector};
use super::infra_common::{check_range, opt_as_number, parse_ip_port};
use crate::error::{index, join};
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NextHopMode {
    Auto,
    #[serde(rename = "Self")]
    SelfMode,
    Keep,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceAddress {
    #[default]
    #[serde(rename = "UseNodeIP")]
    UseNodeIP,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReversePeering {
    Auto,
    Manual,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {
    /// Only this node peers (neither `node` nor `nodeSelector`: every node peers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    /// `a.b.c.d`, `a.b.c.d:port`, `v6` or `[v6]:port`.
    #[serde(default, rename = "peerIP", skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
    #[serde(
        default,
        with = "opt_as_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub as_number: Option<u32>,
    #[serde(
        default,
        rename = "localASNumber",
        with = "opt_as_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<u32>,
    /// Peer with every Calico node this selects (instead of `peerIP`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_selector: String,
    /// Deprecated: use `nextHopMode: Keep`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_original_next_hop: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BGPPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    /// Go duration strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<String>,
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_allowed_local_as_numbers: Option<i32>,
    #[serde(
        default,
        rename = "ttlSecurity",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_security: Option<u8>,
    /// Gateway through which the peer is reachable (adds a static /32 route to the peer).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reachable_by: String,
    /// BGPFilter names, applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_workload_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl BGPPeerSpec {
    /// The peer's address and port, when `peerIP` is set and valid.
    pub fn peer_address(&self) -> Option<(IpAddr, Option<u16>)> {
        parse_ip_port(&self.peer_ip)
    }

    /// A peer with neither `node` nor `nodeSelector` applies to every node.
    pub fn is_global(&self) -> bool {
        self.node.is_empty() && self.node_selector.is_empty()
    }
}

impl SpecType for BGPPeerSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if !self.node.is_empty() {
            validate::name(errs, "spec.node", &self.node);
        }
        for (field, value) in [
            ("nodeSelector", &self.node_selector),
            ("peerSelector", &self.peer_selector),
            ("localWorkloadSelector", &self.local_workload_selector),
        ] {
            if !value.is_empty() {
                validate::selector(errs, &join("spec", field), value);
            }
        }
        if !self.node.is_empty() && !self.node_selector.is_empty() {
            errs.push(
                "spec.nodeSelector",
                "node and nodeSelector cannot both be set",
            );
        }

        let peer = if self.peer_ip.is_empty() {
            None
        } else {
            let parsed = self.peer_address();
            if parsed.is_none() {
                errs.push(
                    "spec.peerIP",
                    format!(
                        "invalid peerIP {:?}: must be \"<IP>\", \"<IPv4>:<port>\" or \"[<IPv6>]:<port>\"",
                        self.peer_ip
                    ),
                );
            }
            parsed
        };
        if !self.peer_ip.is_empty() && !self.peer_selector.is_empty() {
            errs.push(
                "spec.peerSelector",
                "peerIP and peerSelector cannot both be set",
            );
        }
        if !self.peer_selector.is_empty() && self.as_number.unwrap_or(0) != 0 {
            errs.push(
                "spec.asNumber",
                "asNumber must be empty when peerSelector is set",
            );
        }
        if !self.local_workload_selector.is_empty() {
            if !self.peer_ip.is_empty() {
                errs.push(
                    "spec.peerIP",
                    "peerIP must be empty when localWorkloadSelector is set",
                );
            }
            if !self.peer_selector.is_empty() {
                errs.push(
                    "spec.peerSelector",
                    "peerSelector must be empty when localWorkloadSelector is set",
                );
            }
            if self.as_number.unwrap_or(0) == 0 {
                errs.push(
                    "spec.asNumber",
                    "asNumber is required when localWorkloadSelector is set",
                );
            }
        }

        if !self.reachable_by.is_empty() {
            if self.peer_ip.is_empty() {
                errs.push(
                    "spec.reachableBy",
                    "reachableBy must be empty when peerIP is empty",
                );
            }
            if let Some(gateway) =
                validate::ip_address(errs, "spec.reachableBy", &self.reachable_by)
                && let Some((peer_ip, _)) = peer
                && gateway.is_ipv4() != peer_ip.is_ipv4()
            {
                errs.push(
                    "spec.reachableBy",
                    "reachableBy and peerIP address family mismatched",
                );
            }
        }

        if self.keep_original_next_hop && self.next_hop_mode.is_some() {
            errs.push(
                "spec.keepOriginalNextHop",
                "keepOriginalNextHop and nextHopMode cannot both be set; keepOriginalNextHop is deprecated, use nextHopMode instead",
            );
        }
        if let Some(password) = &self.password {
            password.validate(errs, "spec.password");
        }
        for (field, value) in [
            ("maxRestartTime", &self.max_restart_time),
            ("keepaliveTime", &self.keepalive_time),
        ] {
            if let Some(d) = value {
                validate::go_duration(errs, &join("spec", field), d);
            }
        }
        if let Some(n) = self.num_allowed_local_as_numbers {
            check_range(
                errs,
                "spec.numAllowedLocalASNumbers",
                i64::from(n),
                0,
                i64::from(i32::MAX),
            );
        }
        for (i, filter) in self.filters.iter().enumerate() {
            validate::name(errs, &index("spec.filters", i), filter);
        }
    }
}
