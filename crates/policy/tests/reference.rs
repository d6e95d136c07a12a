//! The compiled, indexed evaluation against a deliberately plain interpreter of Calico's
//! semantics that reads the raw specs and selectors directly: for a packet it looks up which
//! endpoints and network sets own each address and checks selectors, namespaces and ports on them,
//! with no sets, no compilation and no incremental state.

mod common;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_api::spec::rule::{Action, EntityRule, Port, Rule};
use calico_api::{Kind, Selector};
use calico_policy::{
    Decision, Direction, EndpointKey, ModelUpdate, Packet, PolicyModel, SetElement, SetId,
};
use common::*;
use ipnet::IpNet;
use proptest::prelude::*;
use serde_json::json;

type Labels = BTreeMap<String, String>;

const NAMESPACES: [&str; 2] = ["ns-a", "ns-b"];
const SELECTORS: [&str; 8] = [
    "all()",
    "app == 'a'",
    "app != 'a'",
    "has(role)",
    "!has(role)",
    "role in {'a', 'b'}",
    "app == 'a' && role == 'b'",
    "projectcalico.org/namespace == 'ns-a'",
];
const RULE_NAMESPACE_SELECTORS: [&str; 5] = [
    "env == 'x'",
    "all()",
    "global()",
    "projectcalico.org/name == 'ns-b'",
    "!has(env)",
];
const POLICY_NAMESPACE_SELECTORS: [&str; 3] =
    ["env == 'x'", "all()", "projectcalico.org/name == 'ns-b'"];
const NETS: [&str; 5] = [
    "10.0.0.0/30",
    "10.0.0.0/24",
    "198.51.100.0/24",
    "198.51.100.0/25",
    "203.0.113.0/24",
];
const PORTS: [u16; 4] = [80, 8080, 8050, 443];
const OUTSIDE: [&str; 4] = [
    "198.51.100.5",
    "198.51.100.200",
    "203.0.113.7",
    "192.0.2.50",
];

#[derive(Clone, Debug)]
struct Pod {
    namespace: &'static str,
    labels: Labels,
    earlier_labels: Labels,
    local: bool,
    http_port: Option<u16>,
    has_profile: bool,
}

#[derive(Clone, Debug)]
struct NetSet {
    namespace: Option<&'static str>,
    labels: Labels,
    net: &'static str,
}

#[derive(Clone, Debug)]
struct Tier {
    name: &'static str,
    order: Option<f64>,
    pass_by_default: bool,
}

#[derive(Clone, Debug)]
struct Policy {
    name: String,
    /// `None`: a GlobalNetworkPolicy.
    namespace: Option<&'static str>,
    tier: &'static str,
    order: Option<f64>,
    selector: Option<&'static str>,
    namespace_selector: Option<&'static str>,
    types: Vec<&'static str>,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct World {
    namespace_labels: Vec<Labels>,
    pods: Vec<Pod>,
    net_sets: Vec<NetSet>,
    tiers: Vec<Tier>,
    policies: Vec<Policy>,
}

// ---------------------------------------------------------------- generation

fn labels() -> impl Strategy<Value = Labels> {
    let value = prop::sample::select(vec!["a", "b"]);
    (
        prop::option::of(value.clone()),
        prop::option::of(value.clone()),
        prop::option::of(prop::sample::select(vec!["x", "y"])),
    )
        .prop_map(|(app, role, env)| {
            let mut labels = Labels::new();
            for (key, value) in [("app", app), ("role", role), ("env", env)] {
                if let Some(value) = value {
                    labels.insert(key.into(), value.into());
                }
            }
            labels
        })
}

fn pod() -> impl Strategy<Value = Pod> {
    (
        prop::sample::select(NAMESPACES.to_vec()),
        labels(),
        labels(),
        prop::bool::weighted(0.7),
        prop::option::of(prop::sample::select(PORTS.to_vec())),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(namespace, labels, earlier_labels, local, http_port, has_profile)| Pod {
                namespace,
                labels,
                earlier_labels,
                local,
                http_port,
                has_profile,
            },
        )
}

fn net_set() -> impl Strategy<Value = NetSet> {
    (
        prop::option::of(prop::sample::select(NAMESPACES.to_vec())),
        labels(),
        prop::sample::select(NETS.to_vec()),
    )
        .prop_map(|(namespace, labels, net)| NetSet {
            namespace,
            labels,
            net,
        })
}

fn order() -> impl Strategy<Value = Option<f64>> {
    prop::option::of(prop::sample::select(vec![1.0, 2.0, 5.0]))
}

fn ports(has_named: bool) -> impl Strategy<Value = Vec<Port>> {
    let mut choices = vec![
        Port::Number(80),
        Port::Range {
            min: 8000,
            max: 8100,
        },
        Port::Number(443),
    ];
    if has_named {
        choices.push(Port::Named("http".into()));
    }
    prop::option::weighted(
        0.3,
        prop::collection::vec(prop::sample::select(choices), 1..3),
    )
    .prop_map(Option::unwrap_or_default)
}

fn entity(with_ports: bool) -> impl Strategy<Value = EntityRule> {
    (
        prop::option::weighted(0.35, prop::sample::select(SELECTORS.to_vec())),
        prop::option::weighted(0.15, prop::sample::select(SELECTORS.to_vec())),
        prop::option::weighted(0.2, prop::sample::select(RULE_NAMESPACE_SELECTORS.to_vec())),
        prop::option::weighted(0.2, prop::sample::select(NETS.to_vec())),
        prop::option::weighted(0.1, prop::sample::select(NETS.to_vec())),
        ports(true),
        ports(false),
    )
        .prop_map(
            move |(selector, not_selector, namespace_selector, net, not_net, ports, not_ports)| {
                let (ports, not_ports) = if with_ports {
                    (ports, not_ports)
                } else {
                    (vec![], vec![])
                };
                EntityRule {
                    // global() may not be combined with an endpoint selector in Calico.
                    selector: selector
                        .filter(|_| namespace_selector != Some("global()"))
                        .map(String::from),
                    not_selector: not_selector.map(String::from),
                    namespace_selector: namespace_selector.map(String::from),
                    nets: net.into_iter().map(String::from).collect(),
                    not_nets: not_net.into_iter().map(String::from).collect(),
                    ports,
                    not_ports,
                    ..EntityRule::default()
                }
            },
        )
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(vec![Action::Allow, Action::Deny, Action::Pass, Action::Log]),
        prop::sample::select(vec![None, None, Some(TCP), Some(UDP), Some(ICMP)]),
        prop::option::weighted(0.3, prop::sample::select(vec![0i64, 8])),
        entity(false),
        entity(true),
        prop::bool::ANY,
    )
        .prop_map(
            |(action, protocol, icmp_type, source, destination, source_ports)| {
                let mut rule = Rule::new(action);
                let has_ports = matches!(protocol, Some(TCP | UDP));
                rule.protocol = protocol.map(calico_api::spec::rule::Protocol::Number);
                if protocol == Some(ICMP)
                    && let Some(t) = icmp_type
                {
                    rule.icmp = Some(calico_api::spec::rule::ICMPFields {
                        icmp_type: Some(t),
                        code: None,
                    });
                }
                rule.source = source;
                rule.destination = destination;
                if !has_ports {
                    rule.destination.ports.clear();
                    rule.destination.not_ports.clear();
                } else if source_ports {
                    // Exercise source ports too: move the destination's to the source.
                    std::mem::swap(&mut rule.source.ports, &mut rule.destination.ports);
                }
                rule
            },
        )
}

fn policy(index: usize) -> impl Strategy<Value = Policy> {
    (
        prop::option::of(prop::sample::select(NAMESPACES.to_vec())),
        prop::sample::select(vec!["default", "t1", "t2"]),
        order(),
        prop::option::of(prop::sample::select(SELECTORS.to_vec())),
        prop::option::weighted(
            0.3,
            prop::sample::select(POLICY_NAMESPACE_SELECTORS.to_vec()),
        ),
        prop::sample::select(vec![
            vec![],
            vec!["Ingress"],
            vec!["Egress"],
            vec!["Ingress", "Egress"],
        ]),
        prop::collection::vec(rule(), 0..4),
        prop::collection::vec(rule(), 0..4),
    )
        .prop_map(
            move |(
                namespace,
                tier,
                order,
                selector,
                namespace_selector,
                types,
                ingress,
                egress,
            )| Policy {
                name: format!("p{index}"),
                namespace,
                tier,
                order,
                selector,
                namespace_selector: namespace_selector.filter(|_| namespace.is_none()),
                types,
                ingress,
                egress,
            },
        )
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(labels(), 2),
        prop::collection::vec(pod(), 1..6),
        prop::collection::vec(net_set(), 0..3),
        (order(), prop::bool::ANY, order(), prop::bool::ANY),
        (1usize..7).prop_flat_map(|count| (0..count).map(policy).collect::<Vec<_>>()),
    )
        .prop_map(
            |(namespace_labels, pods, net_sets, (o1, p1, o2, p2), policies)| World {
                namespace_labels,
                pods,
                net_sets,
                tiers: vec![
                    Tier {
                        name: "t1",
                        order: o1.map(|o| o * 10.0),
                        pass_by_default: p1,
                    },
                    Tier {
                        name: "t2",
                        order: o2.map(|o| o * 10.0),
                        pass_by_default: p2,
                    },
                ],
                policies,
            },
        )
}

#[derive(Clone, Debug)]
struct Probe {
    pod: usize,
    direction: Direction,
    peer: usize,
    protocol: u8,
    source_port: u16,
    destination_port: u16,
    icmp_type: u8,
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        0usize..16,
        prop::bool::ANY,
        0usize..16,
        prop::sample::select(vec![TCP, UDP, ICMP]),
        prop::sample::select(PORTS.to_vec()),
        prop::sample::select(PORTS.to_vec()),
        prop::sample::select(vec![0u8, 8]),
    )
        .prop_map(
            |(pod, ingress, peer, protocol, source_port, destination_port, icmp_type)| Probe {
                pod,
                direction: if ingress {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
                peer,
                protocol,
                source_port,
                destination_port,
                icmp_type,
            },
        )
}

// ---------------------------------------------------------------- the world as resources

fn pod_ip(index: usize) -> IpAddr {
    ip(&format!("10.0.0.{}", index + 1))
}

fn pod_resource(world: &World, index: usize, labels: &Labels, local: bool) -> calico_api::Resource {
    let pod = &world.pods[index];
    let mut spec = json!({
        "orchestrator": "k8s",
        "node": if local { "local" } else { "remote" },
        "ipNetworks": [format!("{}/32", pod_ip(index))],
        "profiles": if pod.has_profile { vec![format!("kns.{}", pod.namespace)] } else { vec![] },
    });
    if let Some(port) = pod.http_port {
        spec["ports"] = json!([{"name": "http", "protocol": "TCP", "port": port}]);
    }
    resource(
        "WorkloadEndpoint",
        Some(pod.namespace),
        &format!("pod{index}"),
        json!(labels),
        spec,
    )
}

fn policy_resource(policy: &Policy) -> calico_api::Resource {
    let mut spec = json!({
        "tier": policy.tier,
        "types": policy.types,
        "ingress": policy.ingress,
        "egress": policy.egress,
    });
    if let Some(order) = policy.order {
        spec["order"] = json!(order);
    }
    if let Some(selector) = policy.selector {
        spec["selector"] = json!(selector);
    }
    if let Some(namespace_selector) = policy.namespace_selector {
        spec["namespaceSelector"] = json!(namespace_selector);
    }
    let kind = if policy.namespace.is_some() {
        "NetworkPolicy"
    } else {
        "GlobalNetworkPolicy"
    };
    resource(kind, policy.namespace, &policy.name, json!({}), spec)
}

/// Builds the model the way a syncer would feed it: pods first with other labels on the other
/// node, policies in an
/// earlier shape and then their own, everything else, a decoy policy added and removed, and the
/// pods' final labels last.
fn build_model(world: &World) -> (PolicyModel, SetMirror) {
    let mut model = PolicyModel::new(Some("local".into()));
    let mut mirror = SetMirror::default();
    for index in 0..world.pods.len() {
        mirror.upsert(
            &mut model,
            &pod_resource(
                world,
                index,
                &world.pods[index].earlier_labels,
                !world.pods[index].local,
            ),
        );
    }
    // Every policy first in another shape (rules swapped, fewer of them), then replaced, so
    // replacing a policy drops and creates sets.
    for policy in &world.policies {
        // A selector no final rule uses, matching every member, so its set is filled and dropped.
        let mut only_earlier = Rule::new(Action::Allow);
        only_earlier.source.selector = Some("!has(never)".into());
        let earlier = Policy {
            ingress: policy.egress.iter().skip(1).cloned().collect(),
            egress: std::iter::once(only_earlier)
                .chain(policy.ingress.iter().cloned())
                .collect(),
            ..policy.clone()
        };
        mirror.upsert(&mut model, &policy_resource(&earlier));
    }
    for policy in &world.policies {
        mirror.upsert(&mut model, &policy_resource(policy));
    }
    let decoy = Policy {
        name: "decoy".into(),
        namespace: None,
        tier: "default",
        order: Some(0.0),
        selector: Some("all()"),
        namespace_selector: None,
        types: vec!["Ingress", "Egress"],
        ingress: vec![Rule::new(Action::Deny)],
        egress: vec![Rule::new(Action::Deny)],
    };
    mirror.upsert(&mut model, &policy_resource(&decoy));
    for (index, name) in NAMESPACES.iter().enumerate() {
        let labels =
            serde_json::from_value(json!(world.namespace_labels[index])).unwrap_or_default();
        mirror.record(
            model
                .upsert_namespace(name, &labels)
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    for (index, set) in world.net_sets.iter().enumerate() {
        let kind = if set.namespace.is_some() {
            "NetworkSet"
        } else {
            "GlobalNetworkSet"
        };
        mirror.upsert(
            &mut model,
            &resource(
                kind,
                set.namespace,
                &format!("set{index}"),
                json!(set.labels),
                json!({"nets": [set.net]}),
            ),
        );
    }
    for tier in &world.tiers {
        let mut spec = json!({"defaultAction": if tier.pass_by_default { "Pass" } else { "Deny" }});
        if let Some(order) = tier.order {
            spec["order"] = json!(order);
        }
        mirror.upsert(
            &mut model,
            &resource("Tier", None, tier.name, json!({}), spec),
        );
    }
    mirror.record(model.delete(Kind::GlobalNetworkPolicy, None, "decoy"));
    for index in 0..world.pods.len() {
        mirror.upsert(
            &mut model,
            &pod_resource(
                world,
                index,
                &world.pods[index].labels,
                world.pods[index].local,
            ),
        );
    }
    (model, mirror)
}

/// The sets as a dataplane would hold them after applying every reported delta in order.
#[derive(Default)]
struct SetMirror {
    sets: BTreeMap<SetId, BTreeSet<SetElement>>,
}

impl SetMirror {
    fn upsert(&mut self, model: &mut PolicyModel, resource: &calico_api::Resource) {
        let update = model
            .upsert(resource)
            .unwrap_or_else(|e| panic!("upsert {}: {e}", resource.name()));
        self.record(update);
    }

    /// Applies one update as a dataplane would (create sets, change elements, drop sets),
    /// checking each step is a real change.
    fn record(&mut self, update: ModelUpdate) {
        for id in update.sets_created {
            assert!(
                self.sets.insert(id.clone(), BTreeSet::new()).is_none(),
                "{id} created twice"
            );
        }
        for delta in update.set_deltas {
            let Some(set) = self.sets.get_mut(&delta.set_id) else {
                panic!("delta for a set never created: {delta:?}");
            };
            for element in delta.removed {
                assert!(
                    set.remove(&element),
                    "{} removes absent {element:?}",
                    delta.set_id
                );
            }
            for element in delta.added {
                assert!(
                    set.insert(element.clone()),
                    "{} adds present {element:?}",
                    delta.set_id
                );
            }
        }
        for id in update.sets_dropped {
            match self.sets.remove(&id) {
                Some(elements) => assert!(elements.is_empty(), "{id} dropped with {elements:?}"),
                None => panic!("{id} dropped but never created"),
            }
        }
    }

    /// The model's current sets.
    fn model_sets(model: &PolicyModel) -> BTreeMap<SetId, BTreeSet<SetElement>> {
        model
            .set_ids()
            .map(|id| {
                (
                    id.clone(),
                    model
                        .set_elements(id)
                        .unwrap_or_default()
                        .into_iter()
                        .collect::<BTreeSet<_>>(),
                )
            })
            .collect()
    }
}

// ---------------------------------------------------------------- the plain interpreter

fn selector(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Something owning an address: a pod or a network set.
struct Peer {
    namespace: Option<&'static str>,
    labels: Labels,
    http_port: Option<u16>,
}

impl World {
    fn namespace_index(&self, name: &str) -> usize {
        NAMESPACES.iter().position(|n| *n == name).unwrap_or(0)
    }

    /// A namespace's labels as namespace selectors see them: its own plus its name.
    fn namespace_view(&self, name: &str) -> Labels {
        let mut labels = self.namespace_labels[self.namespace_index(name)].clone();
        labels.insert("projectcalico.org/name".into(), name.into());
        labels
            .entry("kubernetes.io/metadata.name".into())
            .or_insert_with(|| name.into());
        labels
    }

    /// A pod's labels as selectors see them: its own plus the ones Calico adds.
    fn pod_view(&self, index: usize) -> Labels {
        let pod = &self.pods[index];
        let mut labels = pod.labels.clone();
        labels.insert("projectcalico.org/namespace".into(), pod.namespace.into());
        labels.insert("projectcalico.org/orchestrator".into(), "k8s".into());
        labels
    }

    fn peers_at(&self, address: IpAddr) -> Vec<Peer> {
        let mut peers = Vec::new();
        for index in 0..self.pods.len() {
            if pod_ip(index) == address {
                peers.push(Peer {
                    namespace: Some(self.pods[index].namespace),
                    labels: self.pod_view(index),
                    http_port: self.pods[index].http_port,
                });
            }
        }
        for set in &self.net_sets {
            let net: IpNet = set.net.parse().unwrap_or_else(|e| panic!("{e}"));
            if net.contains(&address) {
                let mut labels = set.labels.clone();
                if let Some(ns) = set.namespace {
                    labels.insert("projectcalico.org/namespace".into(), ns.into());
                }
                peers.push(Peer {
                    namespace: set.namespace,
                    labels,
                    http_port: None,
                });
            }
        }
        peers
    }

    fn policy_applies(&self, policy: &Policy, pod: usize, direction: Direction) -> bool {
        let view = self.pod_view(pod);
        let namespace = self.pods[pod].namespace;
        let selected = policy.selector.is_none_or(|s| selector(s).matches(&view));
        let in_scope = match (policy.namespace, policy.namespace_selector) {
            (Some(ns), _) => ns == namespace,
            (None, Some("all()")) => true,
            (None, Some(ns_selector)) => {
                selector(ns_selector).matches(&self.namespace_view(namespace))
            }
            (None, None) => true,
        };
        // Calico's default types: Ingress unless there are only egress rules; Egress with egress rules.
        let (ingress, egress) = if policy.types.is_empty() {
            (
                !policy.ingress.is_empty() || policy.egress.is_empty(),
                !policy.egress.is_empty(),
            )
        } else {
            (
                policy.types.contains(&"Ingress"),
                policy.types.contains(&"Egress"),
            )
        };
        let governs = match direction {
            Direction::Ingress => ingress,
            Direction::Egress => egress,
        };
        selected && in_scope && governs
    }

    /// Whether `peer` is within the namespaces a rule side covers (its namespaceSelector, or the
    /// namespaced policy's own namespace).
    fn peer_in_rule_scope(
        &self,
        entity: &EntityRule,
        policy_namespace: Option<&str>,
        peer: &Peer,
    ) -> bool {
        match (entity.namespace_selector.as_deref(), policy_namespace) {
            (Some("all()"), _) => peer.namespace.is_some(),
            (Some("global()"), _) => peer.namespace.is_none(),
            // A non-namespaced peer has no namespace labels: the selector sees none.
            (Some(ns_selector), _) => {
                let view = peer
                    .namespace
                    .map(|ns| self.namespace_view(ns))
                    .unwrap_or_default();
                selector(ns_selector).matches(&view)
            }
            (None, Some(ns)) => peer.namespace == Some(ns),
            (None, None) => true,
        }
    }

    fn side_matches(
        &self,
        entity: &EntityRule,
        policy_namespace: Option<&str>,
        address: IpAddr,
        port: Option<u16>,
        protocol: u8,
    ) -> bool {
        let nets = |list: &[String]| {
            list.iter()
                .any(|n| n.parse::<IpNet>().is_ok_and(|n| n.contains(&address)))
        };
        if !entity.nets.is_empty() && !nets(&entity.nets) {
            return false;
        }
        if nets(&entity.not_nets) {
            return false;
        }
        let peers = self.peers_at(address);
        // A side that selects by label or namespace is scoped to namespaces (its namespaceSelector,
        // else a namespaced policy's own namespace).
        let selects = entity.selector.is_some()
            || entity.not_selector.is_some()
            || entity.namespace_selector.is_some();
        let selected = |peer: &Peer| {
            (!selects || self.peer_in_rule_scope(entity, policy_namespace, peer))
                && entity
                    .selector
                    .as_deref()
                    .is_none_or(|s| selector(s).matches(&peer.labels))
        };
        // The address must then belong to a selected owner, unless nothing limits the owners: a
        // bare notSelector in a global policy says nothing about who the address belongs to.
        let owner_required = entity.selector.is_some()
            || entity.namespace_selector.is_some()
            || (entity.not_selector.is_some() && policy_namespace.is_some());
        if owner_required && !peers.iter().any(&selected) {
            return false;
        }
        if let Some(not) = entity.not_selector.as_deref()
            && peers.iter().any(|peer| selector(not).matches(&peer.labels))
        {
            return false;
        }
        let port_listed = |list: &[Port], port: u16| {
            list.iter().any(|p| match p {
                Port::Named(_) => {
                    protocol == TCP
                        && peers
                            .iter()
                            .any(|peer| selected(peer) && peer.http_port == Some(port))
                }
                other => other
                    .bounds()
                    .is_some_and(|(min, max)| (min..=max).contains(&port)),
            })
        };
        match port {
            None => entity.ports.is_empty(),
            Some(port) => {
                (entity.ports.is_empty() || port_listed(&entity.ports, port))
                    && !port_listed(&entity.not_ports, port)
            }
        }
    }

    fn rule_matches(&self, rule: &Rule, policy_namespace: Option<&str>, packet: &Packet) -> bool {
        if rule
            .protocol
            .as_ref()
            .is_some_and(|p| p.number() != Some(packet.protocol))
        {
            return false;
        }
        if let Some(icmp) = &rule.icmp
            && icmp
                .icmp_type
                .is_some_and(|t| Some(t) != packet.icmp_type.map(i64::from))
        {
            return false;
        }
        self.side_matches(
            &rule.source,
            policy_namespace,
            packet.source,
            packet.source_port,
            packet.protocol,
        ) && self.side_matches(
            &rule.destination,
            policy_namespace,
            packet.destination,
            packet.destination_port,
            packet.protocol,
        )
    }

    fn tier(&self, name: &str) -> (Option<f64>, bool) {
        match self.tiers.iter().find(|t| t.name == name) {
            Some(tier) => (tier.order, tier.pass_by_default),
            None => (Some(1_000_000.0), false),
        }
    }

    /// The ordered policy names that apply, and what decides.
    fn verdict(&self, pod: usize, direction: Direction, packet: &Packet) -> (Vec<String>, Outcome) {
        let by_order = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let mut applicable: Vec<&Policy> = self
            .policies
            .iter()
            .filter(|p| self.policy_applies(p, pod, direction))
            .collect();
        applicable.sort_by(|a, b| {
            by_order(self.tier(a.tier).0, self.tier(b.tier).0)
                .then(a.tier.cmp(b.tier))
                .then(by_order(a.order, b.order))
                .then(a.name.cmp(&b.name))
        });
        let names = applicable.iter().map(|p| p.name.clone()).collect();
        let mut position = 0;
        while position < applicable.len() {
            let tier = applicable[position].tier;
            let mut passed = false;
            while position < applicable.len() && applicable[position].tier == tier {
                let policy = applicable[position];
                position += 1;
                if passed {
                    continue;
                }
                let rules = if direction == Direction::Ingress {
                    &policy.ingress
                } else {
                    &policy.egress
                };
                for (index, rule) in rules.iter().enumerate() {
                    if !self.rule_matches(rule, policy.namespace, packet) {
                        continue;
                    }
                    match rule.action {
                        Action::Allow => {
                            return (names, Outcome::Rule(policy.name.clone(), index, true));
                        }
                        Action::Deny => {
                            return (names, Outcome::Rule(policy.name.clone(), index, false));
                        }
                        Action::Pass => {
                            passed = true;
                            break;
                        }
                        Action::Log => {}
                    }
                }
            }
            if !passed && !self.tier(tier).1 {
                return (names, Outcome::TierDefault(tier.to_string()));
            }
        }
        // The namespace profile allows everything; without it, nothing does.
        if self.pods[pod].has_profile {
            (names, Outcome::Profile)
        } else {
            (names, Outcome::DefaultDeny)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Rule(String, usize, bool),
    TierDefault(String),
    Profile,
    DefaultDeny,
}

fn model_outcome(
    model: &PolicyModel,
    endpoint: &EndpointKey,
    direction: Direction,
    packet: &Packet,
) -> (Vec<String>, Outcome) {
    let active = model
        .active_policies(endpoint, direction)
        .unwrap_or_else(|| panic!("{endpoint} is local"));
    let names = active
        .tiers
        .iter()
        .flat_map(|t| t.policies.iter().map(|p| p.name.clone()))
        .collect();
    let verdict = model
        .evaluate(endpoint, direction, packet)
        .unwrap_or_else(|e| panic!("evaluate: {e}"));
    let allowed = verdict.action == calico_policy::VerdictAction::Allow;
    let outcome = match verdict.decision {
        Decision::PolicyRule { policy, index, .. } => Outcome::Rule(policy.name, index, allowed),
        Decision::TierDefault { tier } => Outcome::TierDefault(tier),
        Decision::ProfileRule { .. } => Outcome::Profile,
        Decision::DefaultDeny => Outcome::DefaultDeny,
    };
    (names, outcome)
}

fn packet_for(world: &World, probe: &Probe, pod: usize) -> Packet {
    let candidates: Vec<IpAddr> = (0..world.pods.len())
        .map(pod_ip)
        .chain(OUTSIDE.iter().map(|a| ip(a)))
        .collect();
    let peer = candidates[probe.peer % candidates.len()];
    let (source, destination) = match probe.direction {
        Direction::Ingress => (peer, pod_ip(pod)),
        Direction::Egress => (pod_ip(pod), peer),
    };
    let ported = probe.protocol != ICMP;
    Packet {
        source,
        destination,
        protocol: probe.protocol,
        source_port: ported.then_some(probe.source_port),
        destination_port: ported.then_some(probe.destination_port),
        icmp_type: (!ported).then_some(probe.icmp_type),
        icmp_code: (!ported).then_some(0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 800, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn compiled_evaluation_agrees_with_the_plain_interpreter(
        world in world(),
        probes in prop::collection::vec(probe(), 1..10),
    ) {
        let (model, mirror) = build_model(&world);
        prop_assert_eq!(&mirror.sets, &SetMirror::model_sets(&model), "set deltas replay to the sets");
        let local: Vec<usize> = (0..world.pods.len()).filter(|i| world.pods[*i].local).collect();
        prop_assume!(!local.is_empty());
        for probe in &probes {
            let pod = local[probe.pod % local.len()];
            let packet = packet_for(&world, probe, pod);
            let endpoint = pod_key(world.pods[pod].namespace, &format!("pod{pod}"));
            let expected = world.verdict(pod, probe.direction, &packet);
            let got = model_outcome(&model, &endpoint, probe.direction, &packet);
            prop_assert_eq!(got, expected, "pod{} {:?} {:?}", pod, probe.direction, packet);
        }
    }
}
