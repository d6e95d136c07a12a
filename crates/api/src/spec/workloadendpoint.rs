//! WorkloadEndpoint spec: a pod's (or container's) interface, its addresses and profiles.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{index, join};
use crate::spec::hostendpoint::check_port_protocol;
use crate::spec::rule::Protocol;
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// A 1:1 NAT mapping (floating IP) for an endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPNAT {
    /// Must be one of the endpoint's own `ipNetworks`.
    #[serde(rename = "internalIP", default)]
    pub internal_ip: String,
    #[serde(rename = "externalIP", default)]
    pub external_ip: String,
}

/// A named and/or host-mapped port of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// A DSCP value: a number 0–63 or a name such as `AF11` or `EF`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dscp {
    Number(u8),
    Name(String),
}

impl Dscp {
    fn is_valid(&self) -> bool {
        match self {
            Dscp::Number(n) => *n <= 63,
            Dscp::Name(s) => {
                matches!(s.as_str(), "DF" | "EF")
                    || s.strip_prefix("CS")
                        .is_some_and(|d| d.len() == 1 && matches!(d.as_bytes()[0], b'0'..=b'7'))
                    || s.strip_prefix("AF").is_some_and(|d| {
                        let b = d.as_bytes();
                        b.len() == 2 && matches!(b[0], b'1'..=b'4') && matches!(b[1], b'1'..=b'3')
                    })
            }
        }
    }
}

/// Bandwidth, packet-rate and connection limits for a workload (0 or unset = no limit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QoSControls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_bandwidth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_peakrate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_minburst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_bandwidth: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_peakrate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_minburst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_packet_rate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_packet_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_packet_rate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_packet_burst: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_max_connections: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_max_connections: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp: Option<Dscp>,
}

impl QoSControls {
    fn validate(&self, path: &str, errs: &mut FieldErrors) {
        // (field, value, allowed range when non-zero), following the limits in Calico's API docs.
        let limits: [(&str, Option<i64>, i64, i64); 14] = [
            (
                "ingressBandwidth",
                self.ingress_bandwidth,
                1_000,
                1_000_000_000_000_000,
            ),
            ("ingressBurst", self.ingress_burst, 1_000, 34_359_738_360),
            (
                "ingressPeakrate",
                self.ingress_peakrate,
                1_010,
                1_010_000_000_000_000,
            ),
            ("ingressMinburst", self.ingress_minburst, 1_000, 100_000_000),
            (
                "egressBandwidth",
                self.egress_bandwidth,
                1_000,
                1_000_000_000_000_000,
            ),
            ("egressBurst", self.egress_burst, 1_000, 34_359_738_360),
            (
                "egressPeakrate",
                self.egress_peakrate,
                1_010,
                1_010_000_000_000_000,
            ),
            ("egressMinburst", self.egress_minburst, 1_000, 100_000_000),
            ("ingressPacketRate", self.ingress_packet_rate, 1, 10_000),
            ("ingressPacketBurst", self.ingress_packet_burst, 1, 10_000),
            ("egressPacketRate", self.egress_packet_rate, 1, 10_000),
            ("egressPacketBurst", self.egress_packet_burst, 1, 10_000),
            (
                "ingressMaxConnections",
                self.ingress_max_connections,
                1,
                4_294_967_295,
            ),
            (
                "egressMaxConnections",
                self.egress_max_connections,
                1,
                4_294_967_295,
            ),
        ];
        for (field, value, min, max) in limits {
            if let Some(v) = value
                && v != 0
                && !(min..=max).contains(&v)
            {
                errs.push(
                    join(path, field),
                    format!("must be 0 (no limit) or between {min} and {max}"),
                );
            }
        }
        if let Some(dscp) = &self.dscp
            && !dscp.is_valid()
        {
            errs.push(
                join(path, "dscp"),
                "invalid DSCP: must be 0-63 or one of DF, EF, CS0-CS7, AF11-AF43",
            );
        }
    }
}

/// `spec` of a WorkloadEndpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(
        rename = "containerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The endpoint's addresses, each a /32 or /128.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    #[serde(rename = "ipNATs", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IPNAT>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<Box<QoSControls>>,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Escape one segment of a WorkloadEndpoint name: `-` doubled. Segments may not start or end with `-`.
fn name_segment(value: &str) -> Option<String> {
    if value.is_empty() || value.starts_with('-') || value.ends_with('-') {
        return None;
    }
    Some(value.replace('-', "--"))
}

impl WorkloadEndpointSpec {
    /// The name Calico gives this endpoint: `<node>-<orchestrator>-<id>-<endpoint>` with each
    /// segment's `-` doubled, where `<id>` is the pod (k8s), container ID (cni), orchestrator
    /// (libnetwork) or workload. `None` when a needed identifier is missing.
    pub fn expected_name(&self) -> Option<String> {
        let node = non_empty(&self.node)?;
        let orchestrator = non_empty(&self.orchestrator)?;
        let id = match orchestrator {
            "k8s" => non_empty(&self.pod)?,
            "cni" => non_empty(&self.container_id)?,
            "libnetwork" => orchestrator,
            _ => non_empty(&self.workload)?,
        };
        let endpoint = non_empty(&self.endpoint)?;
        let segments = [node, orchestrator, id, endpoint]
            .into_iter()
            .map(name_segment)
            .collect::<Option<Vec<_>>>()?;
        Some(segments.join("-"))
    }
}

impl SpecType for WorkloadEndpointSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate::name(errs, "metadata.name", &meta.name);
        if !meta.name.is_empty()
            && let Some(expected) = self.expected_name()
            && expected != meta.name
        {
            errs.push(
                "metadata.name",
                format!(
                    "the WorkloadEndpoint name does not match the primary identifiers assigned in the spec: \
                     expected name {expected}"
                ),
            );
        }
        let names = [
            ("orchestrator", &self.orchestrator),
            ("workload", &self.workload),
            ("node", &self.node),
            ("pod", &self.pod),
            ("endpoint", &self.endpoint),
            ("serviceAccountName", &self.service_account_name),
        ];
        for (field, value) in names {
            if let Some(v) = non_empty(value) {
                validate::reference_name(errs, &join("spec", field), v);
            }
        }
        if let Some(id) = non_empty(&self.container_id)
            && !validate::is_container_id(id)
        {
            errs.push(
                "spec.containerID",
                format!("invalid container ID {id:?}: must be alphanumeric characters or '-', starting and ending alphanumeric"),
            );
        }

        let mut networks: Vec<IpNet> = Vec::new();
        for (i, n) in self.ip_networks.iter().enumerate() {
            let path = index("spec.ipNetworks", i);
            if let Some(net) = validate::masked_cidr(errs, &path, n) {
                if net.prefix_len() != net.max_prefix_len() {
                    errs.push(
                        path,
                        format!(
                            "IP network {n:?} contains multiple addresses: must be a /32 or /128"
                        ),
                    );
                }
                networks.push(net);
            }
        }
        for (i, nat) in self.ip_nats.iter().enumerate() {
            let path = index("spec.ipNATs", i);
            let internal = parse_ip(errs, &join(&path, "internalIP"), &nat.internal_ip);
            let external = parse_ip(errs, &join(&path, "externalIP"), &nat.external_ip);
            if let (Some(int), Some(ext)) = (internal, external)
                && int.is_ipv4() != ext.is_ipv4()
            {
                errs.push(join(&path, "externalIP"), "mismatched IP versions");
            }
            if let Some(int) = internal
                && !networks.iter().any(|n| n.contains(&int))
            {
                errs.push(
                    join(&path, "internalIP"),
                    "NAT is not in the endpoint networks",
                );
            }
        }
        if let Some(gw) = non_empty(&self.ipv4_gateway)
            && !gw.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4())
        {
            errs.push(
                "spec.ipv4Gateway",
                format!("invalid IPv4 gateway address {gw:?}"),
            );
        }
        if let Some(gw) = non_empty(&self.ipv6_gateway)
            && !gw.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6())
        {
            errs.push(
                "spec.ipv6Gateway",
                format!("invalid IPv6 gateway address {gw:?}"),
            );
        }
        for (i, profile) in self.profiles.iter().enumerate() {
            validate::reference_name(errs, &index("spec.profiles", i), profile);
        }
        match non_empty(&self.interface_name) {
            None => errs.push("spec.interfaceName", "interfaceName is required"),
            Some(iface) if !validate::is_interface_name(iface) => errs.push(
                "spec.interfaceName",
                format!(
                    "invalid interface name {iface:?}: must be 1-15 characters of [a-zA-Z0-9_.-]"
                ),
            ),
            Some(_) => {}
        }
        if let Some(mac) = non_empty(&self.mac)
            && !validate::is_mac(mac)
        {
            errs.push("spec.mac", format!("invalid MAC address {mac:?}"));
        }
        for (i, port) in self.ports.iter().enumerate() {
            validate_port(port, &index("spec.ports", i), errs);
        }
        for (i, prefix) in self.allow_spoofed_source_prefixes.iter().enumerate() {
            if validate::parse_cidr(prefix).is_none() {
                errs.push(
                    index("spec.allowSpoofedSourcePrefixes", i),
                    format!("invalid CIDR {prefix:?}"),
                );
            }
        }
        if let Some(qos) = &self.qos_controls {
            qos.validate("spec.qosControls", errs);
        }
    }
}

fn parse_ip(errs: &mut FieldErrors, path: &str, value: &str) -> Option<IpAddr> {
    let ip = validate::parse_cidr(value).map(|net| net.addr());
    if ip.is_none() {
        errs.push(path, format!("invalid IP address {value:?}"));
    }
    ip
}

fn validate_port(port: &WorkloadEndpointPort, path: &str, errs: &mut FieldErrors) {
    match non_empty(&port.name) {
        Some(name) if !validate::is_port_name(name) => errs.push(
            join(path, "name"),
            format!(
                "invalid port name {name:?}: at most 15 lower case alphanumeric characters or '-', \
                 with at least one letter"
            ),
        ),
        None if port.host_port.unwrap_or(0) == 0 => errs.push(
            join(path, "name"),
            "port name must not be empty if no hostPort is specified",
        ),
        _ => {}
    }
    check_port_protocol(&port.protocol, &join(path, "protocol"), errs);
    if port.port == 0 {
        errs.push(join(path, "port"), "port must be between 1 and 65535");
    }
    if let Some(host_ip) = port.host_ip.as_deref().filter(|h| !h.is_empty()) {
        validate::masked_cidr(errs, &join(path, "hostIP"), host_ip);
    }
}
