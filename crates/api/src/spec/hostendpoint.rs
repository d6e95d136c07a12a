//! HostEndpoint spec: policy enforcement on a host's own interfaces.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{index, join};
use crate::spec::rule::Protocol;
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// A named port on an endpoint, referable from policy rules by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

impl EndpointPort {
    pub(crate) fn validate(&self, path: &str, errs: &mut FieldErrors) {
        if !validate::is_port_name(&self.name) {
            errs.push(
                join(path, "name"),
                format!(
                    "invalid port name {:?}: at most 15 lower case alphanumeric characters or '-', \
                     with at least one letter",
                    self.name
                ),
            );
        }
        check_port_protocol(&self.protocol, &join(path, "protocol"), errs);
        if self.port == 0 {
            errs.push(join(path, "port"), "port must be between 1 and 65535");
        }
    }
}

/// Endpoint ports only make sense for protocols with ports.
pub(crate) fn check_port_protocol(protocol: &Protocol, path: &str, errs: &mut FieldErrors) {
    if let Some(problem) = protocol.problem() {
        errs.push(path, problem);
    } else if !protocol.supports_ports() {
        errs.push(path, "protocol must be TCP, UDP or SCTP");
    }
}

/// `spec` of a HostEndpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A Linux interface name, or `*` for all traffic of the host's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    #[serde(rename = "expectedIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

impl HostEndpointSpec {
    /// True for the `*` endpoint that covers every interface of the host.
    pub fn is_all_interfaces(&self) -> bool {
        self.interface_name.as_deref() == Some("*")
    }
}

impl SpecType for HostEndpointSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        match self.node.as_deref() {
            None | Some("") => errs.push("spec.node", "node must be specified"),
            Some(node) => validate::reference_name(errs, "spec.node", node),
        }
        match self.interface_name.as_deref() {
            None | Some("") => {
                if self.expected_ips.is_empty() {
                    errs.push(
                        "spec.interfaceName",
                        "at least one of interfaceName or expectedIPs must be specified",
                    );
                }
            }
            Some("*") => {}
            Some(iface) if !validate::is_interface_name(iface) => errs.push(
                "spec.interfaceName",
                format!(
                    "invalid interface name {iface:?}: must be \"*\" or 1-15 characters of [a-zA-Z0-9_.-]"
                ),
            ),
            Some(_) => {}
        }
        for (i, ip) in self.expected_ips.iter().enumerate() {
            if ip.parse::<IpAddr>().is_err() {
                errs.push(
                    index("spec.expectedIPs", i),
                    format!("invalid IP address {ip:?}"),
                );
            }
        }
        for (i, profile) in self.profiles.iter().enumerate() {
            validate::reference_name(errs, &index("spec.profiles", i), profile);
        }
        for (i, port) in self.ports.iter().enumerate() {
            port.validate(&index("spec.ports", i), errs);
        }
    }
}
