//! `networking.k8s.io/v1` NetworkPolicy spec, with Kubernetes' defaults and validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{index, join};
use crate::spec::policy::PolicyType;
use crate::{FieldErrors, ObjectMeta, SpecType, validate};

/// A Kubernetes label selector: `matchLabels` and `matchExpressions`, AND-ed. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry: `key` `operator` (`In`, `NotIn`, `Exists`, `DoesNotExist`) `values`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && self.match_expressions.is_empty()
    }

    fn validate(&self, path: &str, errs: &mut FieldErrors) {
        for (key, value) in self.match_labels.iter().flatten() {
            let p = join(&join(path, "matchLabels"), key);
            if !validate::is_qualified_name(key) {
                errs.push(&p, format!("invalid label key {key:?}"));
            }
            if !validate::is_label_value(value) {
                errs.push(&p, format!("invalid label value {value:?}"));
            }
        }
        for (i, req) in self.match_expressions.iter().enumerate() {
            let p = index(&join(path, "matchExpressions"), i);
            if !validate::is_qualified_name(&req.key) {
                errs.push(join(&p, "key"), format!("invalid label key {:?}", req.key));
            }
            match req.operator.as_str() {
                "In" | "NotIn" if req.values.is_empty() => errs.push(
                    join(&p, "values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ),
                "Exists" | "DoesNotExist" if !req.values.is_empty() => errs.push(
                    join(&p, "values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => errs.push(
                    join(&p, "operator"),
                    format!("{other:?} is not a valid label selector operator (In, NotIn, Exists, DoesNotExist)"),
                ),
            }
        }
    }
}

/// A CIDR and the CIDRs inside it to exclude.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPBlock {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// One peer of a rule: pods (optionally in selected namespaces), namespaces, or an IP block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IPBlock>,
}

/// A port number or a named port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

/// A port (or port range with `endPort`) and protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPort {
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

/// An ingress rule: traffic from any of `from` (empty = anywhere) to any of `ports` (empty = all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<NetworkPolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

/// An egress rule: traffic to any of `to` (empty = anywhere) on any of `ports` (empty = all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<NetworkPolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

/// `spec` of a Kubernetes NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesNetworkPolicySpec {
    /// The pods (in the policy's namespace) the policy applies to; empty selects all of them.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<NetworkPolicyIngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
}

impl KubernetesNetworkPolicySpec {
    /// The directions the policy applies to: `policyTypes`, or else Ingress plus Egress when there
    /// are egress rules (Kubernetes' rule).
    pub fn effective_types(&self) -> Vec<PolicyType> {
        if !self.policy_types.is_empty() {
            return self.policy_types.clone();
        }
        let mut types = vec![PolicyType::Ingress];
        if !self.egress.is_empty() {
            types.push(PolicyType::Egress);
        }
        types
    }
}

impl SpecType for KubernetesNetworkPolicySpec {
    /// Kubernetes defaults every port's protocol to TCP.
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        let ports = self
            .ingress
            .iter_mut()
            .flat_map(|r| r.ports.iter_mut())
            .chain(self.egress.iter_mut().flat_map(|r| r.ports.iter_mut()));
        for port in ports {
            if port.protocol.is_none() {
                port.protocol = Some("TCP".into());
            }
        }
    }

    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        self.pod_selector.validate("spec.podSelector", errs);
        for (i, t) in self.policy_types.iter().enumerate() {
            if self.policy_types[..i].contains(t) {
                errs.push(
                    index("spec.policyTypes", i),
                    format!("duplicate value {t:?}"),
                );
            }
        }
        for (i, rule) in self.ingress.iter().enumerate() {
            let path = index("spec.ingress", i);
            validate_peers(&rule.from, &join(&path, "from"), errs);
            validate_ports(&rule.ports, &join(&path, "ports"), errs);
        }
        for (i, rule) in self.egress.iter().enumerate() {
            let path = index("spec.egress", i);
            validate_peers(&rule.to, &join(&path, "to"), errs);
            validate_ports(&rule.ports, &join(&path, "ports"), errs);
        }
    }
}

fn validate_peers(peers: &[NetworkPolicyPeer], path: &str, errs: &mut FieldErrors) {
    for (i, peer) in peers.iter().enumerate() {
        let p = index(path, i);
        let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        match (selectors, &peer.ip_block) {
            (false, None) => errs.push(&p, "must specify a peer"),
            (true, Some(_)) => errs.push(
                &p,
                "may not specify both ipBlock and another peer (podSelector/namespaceSelector)",
            ),
            _ => {}
        }
        if let Some(sel) = &peer.pod_selector {
            sel.validate(&join(&p, "podSelector"), errs);
        }
        if let Some(sel) = &peer.namespace_selector {
            sel.validate(&join(&p, "namespaceSelector"), errs);
        }
        if let Some(block) = &peer.ip_block {
            validate_ip_block(block, &join(&p, "ipBlock"), errs);
        }
    }
}

fn validate_ip_block(block: &IPBlock, path: &str, errs: &mut FieldErrors) {
    let cidr_path = join(path, "cidr");
    if block.cidr.is_empty() {
        errs.push(cidr_path, "required value");
        return;
    }
    let Some(cidr) = block.cidr.parse::<ipnet::IpNet>().ok() else {
        errs.push(cidr_path, format!("invalid CIDR {:?}", block.cidr));
        return;
    };
    let cidr = cidr.trunc();
    for (i, except) in block.except.iter().enumerate() {
        let p = index(&join(path, "except"), i);
        match except.parse::<ipnet::IpNet>() {
            Err(_) => errs.push(p, format!("invalid CIDR {except:?}")),
            Ok(net) => {
                let net = net.trunc();
                if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
                    errs.push(
                        p,
                        format!(
                            "{except:?} must be a strict subset of `cidr` {:?}",
                            block.cidr
                        ),
                    );
                }
            }
        }
    }
}

fn validate_ports(ports: &[NetworkPolicyPort], path: &str, errs: &mut FieldErrors) {
    for (i, port) in ports.iter().enumerate() {
        let p = index(path, i);
        if let Some(proto) = &port.protocol
            && !matches!(proto.as_str(), "TCP" | "UDP" | "SCTP")
        {
            errs.push(
                join(&p, "protocol"),
                format!(
                    "unsupported value {proto:?}: supported values are \"TCP\", \"UDP\", \"SCTP\""
                ),
            );
        }
        let number = match &port.port {
            Some(IntOrString::Int(n)) => {
                if !(1..=65535).contains(n) {
                    errs.push(join(&p, "port"), "must be between 1 and 65535, inclusive");
                }
                Some(*n)
            }
            Some(IntOrString::String(name)) => {
                if !validate::is_port_name(name) {
                    errs.push(
                        join(&p, "port"),
                        format!("invalid port name {name:?}: at most 15 lower case alphanumeric characters or '-', with at least one letter"),
                    );
                }
                None
            }
            None => None,
        };
        if let Some(end) = port.end_port {
            let end_path = join(&p, "endPort");
            match (&port.port, number) {
                (None, _) => errs.push(
                    end_path,
                    "may not be specified when `port` is not specified",
                ),
                (Some(_), None) => {
                    errs.push(end_path, "may not be specified when `port` is non-numeric")
                }
                (Some(_), Some(start)) => {
                    if end < start {
                        errs.push(end_path, "must be greater than or equal to `port`");
                    } else if end > 65535 {
                        errs.push(end_path, "must be between 1 and 65535, inclusive");
                    }
                }
            }
        }
    }
}
