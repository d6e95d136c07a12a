//! Kubernetes objects as Calico's kube-controllers sync them into the datastore: a
//! `networking.k8s.io/v1` NetworkPolicy becomes the Calico NetworkPolicy `knp.default.<name>` in
//! the same namespace, and a `v1` Namespace becomes the Profile `kns.<name>` that every pod of the
//! namespace lists (its labels reach the pods as `pcns.<key>`, which is how a rule's
//! `namespaceSelector` finds them).
//!
//! Pure: the caller reads and writes.

use std::collections::BTreeMap;

use crate::error::FieldErrors;
use crate::kind::Kind;
use crate::meta::ObjectMeta;
use crate::resource::{Resource, Spec};
use crate::spec::k8s_networkpolicy::{
    IntOrString, KubernetesNetworkPolicySpec, LabelSelector, NetworkPolicyPeer, NetworkPolicyPort,
};
use crate::spec::policy::{DEFAULT_TIER, NetworkPolicySpec, PolicyType};
use crate::spec::profile::ProfileSpec;
use crate::spec::rule::{Action, EntityRule, Port, Protocol, Rule};

/// Prefix of the Calico policy a Kubernetes NetworkPolicy becomes.
pub const POLICY_NAME_PREFIX: &str = "knp.default.";
/// Prefix of the profile a Kubernetes Namespace becomes.
pub const PROFILE_NAME_PREFIX: &str = "kns.";
/// Prefix of a namespace's labels as its pods inherit them through the profile.
pub const NAMESPACE_LABEL_PREFIX: &str = "pcns.";
/// Calico's own label holding the namespace name (so `namespaceSelector` can match by name).
pub const NAMESPACE_NAME_LABEL: &str = "projectcalico.org/name";
/// The label the Kubernetes API server puts on every namespace, holding its name.
pub const KUBERNETES_NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Where Kubernetes policies sit in the default tier.
pub const KUBERNETES_POLICY_ORDER: f64 = 1000.0;
/// Kubernetes pod selectors only ever select Kubernetes pods, never other Calico endpoints.
const KUBERNETES_PODS: &str = "projectcalico.org/orchestrator == 'k8s'";

/// The kind and name a Kubernetes object is stored under once converted, or `None` when `kind`
/// is not a Kubernetes kind. Needs no valid spec, so `delete -f` works on any decodable file.
pub fn stored_identity(kind: Kind, name: &str) -> Option<(Kind, String)> {
    match kind {
        Kind::KubernetesNetworkPolicy => {
            Some((Kind::NetworkPolicy, format!("{POLICY_NAME_PREFIX}{name}")))
        }
        Kind::KubernetesNamespace => Some((Kind::Profile, format!("{PROFILE_NAME_PREFIX}{name}"))),
        _ => None,
    }
}

/// The Calico resource kube-controllers would write for `resource`, which must have had its
/// defaults applied. A Kubernetes object is first checked against Kubernetes' own rules, so errors
/// name its fields (`spec.ingress[0].from[1].ipBlock.cidr`), not the converted ones. Any other
/// resource comes back unchanged and unchecked.
pub fn to_calico(resource: Resource) -> Result<Resource, FieldErrors> {
    match &resource.spec {
        Spec::KubernetesNetworkPolicy(spec) => {
            resource.validate()?;
            Ok(network_policy(&resource.metadata, spec))
        }
        Spec::KubernetesNamespace(_) => {
            resource.validate()?;
            Ok(namespace_profile(&resource.metadata))
        }
        _ => Ok(resource),
    }
}

/// Metadata of a converted object: the new name, the namespace, and when the original was made.
fn converted_meta(original: &ObjectMeta, name: String, namespace: Option<String>) -> ObjectMeta {
    ObjectMeta {
        name,
        namespace,
        creation_timestamp: original.creation_timestamp.clone(),
        ..ObjectMeta::default()
    }
}

/// A validated Kubernetes NetworkPolicy as a Calico one.
fn network_policy(meta: &ObjectMeta, spec: &KubernetesNetworkPolicySpec) -> Resource {
    let effective = spec.effective_types();
    // Calico lists Ingress before Egress whatever order policyTypes gave.
    let types: Vec<PolicyType> = [PolicyType::Ingress, PolicyType::Egress]
        .into_iter()
        .filter(|t| effective.contains(t))
        .collect();
    let ingress = spec
        .ingress
        .iter()
        .flat_map(|rule| allow_rules(&rule.from, &rule.ports, Side::Source))
        .collect();
    // Egress rules are kept even when policyTypes leaves Egress out (as kube-controllers does);
    // without the type they are never enforced.
    let egress = spec
        .egress
        .iter()
        .flat_map(|rule| allow_rules(&rule.to, &rule.ports, Side::Destination))
        .collect();
    let calico = NetworkPolicySpec {
        tier: Some(DEFAULT_TIER.into()),
        order: Some(KUBERNETES_POLICY_ORDER),
        selector: Some(pod_selector(Some(&spec.pod_selector))),
        types,
        ingress,
        egress,
        ..NetworkPolicySpec::default()
    };
    let name = format!("{POLICY_NAME_PREFIX}{}", meta.name);
    Resource::new(
        converted_meta(meta, name, meta.namespace.clone()),
        Spec::NetworkPolicy(calico),
    )
}

/// A Kubernetes Namespace as the profile its pods list: allow everything both ways (a pod no policy
/// selects is open), and hand the namespace's labels to its pods under `pcns.`.
fn namespace_profile(meta: &ObjectMeta) -> Resource {
    let mut labels: BTreeMap<String, String> = meta
        .labels()
        .iter()
        .map(|(k, v)| (format!("{NAMESPACE_LABEL_PREFIX}{k}"), v.clone()))
        .collect();
    // The API server sets this label on every namespace; a file applied here never went through it.
    labels.insert(
        format!("{NAMESPACE_LABEL_PREFIX}{KUBERNETES_NAMESPACE_NAME_LABEL}"),
        meta.name.clone(),
    );
    labels.insert(
        format!("{NAMESPACE_LABEL_PREFIX}{NAMESPACE_NAME_LABEL}"),
        meta.name.clone(),
    );
    let profile = ProfileSpec {
        ingress: vec![Rule::new(Action::Allow)],
        egress: vec![Rule::new(Action::Allow)],
        labels_to_apply: Some(labels),
    };
    let name = format!("{PROFILE_NAME_PREFIX}{}", meta.name);
    Resource::new(converted_meta(meta, name, None), Spec::Profile(profile))
}

/// Which end of the connection a rule's peers describe.
#[derive(Clone, Copy)]
enum Side {
    /// Ingress: the peers are the source.
    Source,
    /// Egress: the peers are the destination.
    Destination,
}

/// A peer as Calico entity fields; all empty for "anything".
#[derive(Default)]
struct PeerMatch {
    selector: Option<String>,
    namespace_selector: Option<String>,
    nets: Vec<String>,
    not_nets: Vec<String>,
}

/// One Kubernetes rule as Calico Allow rules. Peers are alternatives, so each gets its own rule;
/// ports are grouped by protocol, one rule per protocol and peer, since a Calico rule has one
/// protocol. No peers means any peer, no ports any port.
fn allow_rules(peers: &[NetworkPolicyPeer], ports: &[NetworkPolicyPort], side: Side) -> Vec<Rule> {
    let peer_matches: Vec<PeerMatch> = if peers.is_empty() {
        vec![PeerMatch::default()]
    } else {
        peers.iter().map(peer_match).collect()
    };
    let mut rules = Vec::new();
    for (protocol, ports) in ports_by_protocol(ports) {
        for peer in &peer_matches {
            let mut rule = Rule::new(Action::Allow);
            rule.protocol = protocol.clone();
            let entity = EntityRule {
                selector: peer.selector.clone(),
                namespace_selector: peer.namespace_selector.clone(),
                nets: peer.nets.clone(),
                not_nets: peer.not_nets.clone(),
                ..EntityRule::default()
            };
            match side {
                Side::Source => {
                    rule.source = entity;
                    rule.destination.ports = ports.clone();
                }
                Side::Destination => {
                    rule.destination = EntityRule {
                        ports: ports.clone(),
                        ..entity
                    };
                }
            }
            rules.push(rule);
        }
    }
    rules
}

/// The rule's ports as (protocol, destination ports) pairs, protocols sorted by name. A rule that
/// lists no ports gives one pair with no protocol and no ports (anything); a protocol listed without
/// a port gives an empty port list (every port of it), which wins over numbers listed for it.
fn ports_by_protocol(ports: &[NetworkPolicyPort]) -> Vec<(Option<Protocol>, Vec<Port>)> {
    if ports.is_empty() {
        return vec![(None, Vec::new())];
    }
    // None = every port of the protocol.
    let mut by_protocol: BTreeMap<String, Option<Vec<Port>>> = BTreeMap::new();
    for port in ports {
        // Kubernetes defaults the protocol to TCP; defaults were applied, this is belt and braces.
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
        let entry = by_protocol
            .entry(protocol)
            .or_insert_with(|| Some(Vec::new()));
        match (calico_port(port), entry.as_mut()) {
            (None, _) => *entry = None,
            (Some(p), Some(listed)) => listed.push(p),
            (Some(_), None) => {}
        }
    }
    by_protocol
        .into_iter()
        .map(|(protocol, ports)| {
            (
                Some(Protocol::Name(protocol)),
                simplify_ports(ports.unwrap_or_default()),
            )
        })
        .collect()
}

/// A Kubernetes port as a Calico one: a number, a range (`port`..`endPort`) or a named port; `None`
/// when no port is given. Out-of-range numbers (only possible unvalidated) become port 0, which
/// Calico's validation refuses, rather than silently matching more.
fn calico_port(port: &NetworkPolicyPort) -> Option<Port> {
    let number = |n: i64| u16::try_from(n).unwrap_or(0);
    match port.port.as_ref()? {
        IntOrString::String(name) => Some(Port::Named(name.clone())),
        IntOrString::Int(start) => match port.end_port {
            Some(end) if end != *start => Some(Port::Range {
                min: number(*start),
                max: number(end),
            }),
            _ => Some(Port::Number(number(*start))),
        },
    }
}

/// The fewest port entries covering the same ports, as kube-controllers writes them: named ports
/// first in their order, then numbers merged into ranges where they touch or overlap, ascending.
/// A list with at most one numeric port is left as it is.
fn simplify_ports(ports: Vec<Port>) -> Vec<Port> {
    let mut numeric: Vec<(u16, u16)> = ports.iter().filter_map(Port::bounds).collect();
    let numeric_count: u32 = numeric
        .iter()
        .map(|&(min, max)| u32::from(max.saturating_sub(min)) + 1)
        .sum();
    if numeric_count <= 1 {
        return ports;
    }
    numeric.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (min, max) in numeric {
        match merged.last_mut() {
            Some(last) if u32::from(min) <= u32::from(last.1) + 1 => last.1 = last.1.max(max),
            _ => merged.push((min, max)),
        }
    }
    let named = ports.into_iter().filter(|p| p.name().is_some());
    named
        .chain(merged.into_iter().map(|(min, max)| {
            if min == max {
                Port::Number(min)
            } else {
                Port::Range { min, max }
            }
        }))
        .collect()
}

/// One peer as Calico entity fields. An ipBlock is CIDRs only; otherwise the pod selector (any
/// Kubernetes pod if absent) and the namespace selector (the policy's own namespace if absent, every
/// namespace if empty) must both match.
fn peer_match(peer: &NetworkPolicyPeer) -> PeerMatch {
    if let Some(block) = &peer.ip_block {
        return PeerMatch {
            nets: vec![masked(&block.cidr)],
            not_nets: block.except.iter().map(|e| masked(e)).collect(),
            ..PeerMatch::default()
        };
    }
    let namespace_selector = peer.namespace_selector.as_ref().map(|sel| {
        if sel.is_empty() {
            "all()".to_string()
        } else {
            selector_terms(sel).join(" && ")
        }
    });
    PeerMatch {
        selector: Some(pod_selector(peer.pod_selector.as_ref())),
        namespace_selector,
        ..PeerMatch::default()
    }
}

/// A pod selector as a Calico selector over Kubernetes pods.
fn pod_selector(sel: Option<&LabelSelector>) -> String {
    let mut terms = vec![KUBERNETES_PODS.to_string()];
    terms.extend(sel.map(selector_terms).unwrap_or_default());
    terms.join(" && ")
}

/// A Kubernetes label selector as Calico selector terms to AND: `matchLabels` by key, then
/// `matchExpressions` in order.
fn selector_terms(sel: &LabelSelector) -> Vec<String> {
    let labels = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| format!("{key} == '{value}'"));
    let expressions = sel.match_expressions.iter().map(|req| {
        let values = || {
            req.values
                .iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match req.operator.as_str() {
            "In" => format!("{} in {{ {} }}", req.key, values()),
            "NotIn" => format!("{} not in {{ {} }}", req.key, values()),
            "Exists" => format!("has({})", req.key),
            "DoesNotExist" => format!("! has({})", req.key),
            // Validation refuses other operators; should one get here, the term does not parse, so
            // Calico's validation refuses the policy rather than it matching more than meant.
            other => format!("{} {other}", req.key),
        }
    });
    labels.chain(expressions).collect()
}

/// A CIDR with its host bits cleared, as Calico stores it; left as written if it does not parse
/// (only possible unvalidated, and Calico's validation then refuses it).
fn masked(cidr: &str) -> String {
    cidr.parse::<ipnet::IpNet>()
        .map(|net| net.trunc().to_string())
        .unwrap_or_else(|_| cidr.to_string())
}

#[cfg(test)]
mod tests;
