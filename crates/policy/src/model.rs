//! The policy model: every resource policy depends on, updated one event at a time, with the
//! label index and the endpoint ↔ policy matches kept current incrementally.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use calico_api::spec::hostendpoint::HostEndpointSpec;
use calico_api::spec::profile::ProfileSpec;
use calico_api::spec::rule::{Action, Direction, Rule};
use calico_api::spec::tier::TierSpec;
use calico_api::spec::workloadendpoint::WorkloadEndpointSpec;
use calico_api::{Kind, ObjectMeta, Resource, Spec};
use ipnet::IpNet;

use crate::compile::{
    CompileError, CompiledPolicy, CompiledRules, compile_policy, compile_profile, parse_net,
};
use crate::index::{
    DeltaCollector, LabelIndex, MemberInput, MemberKey, SetDelta, SetElement, SetId, SetSpec,
    changed_keys, selector_keys,
};
use crate::selectors::{
    MAX_SERVICE_ACCOUNT_LABEL_LEN, NAMESPACE_LABEL, NAMESPACE_LABEL_PREFIX, NAMESPACE_NAME_LABEL,
    ORCHESTRATOR_LABEL, SERVICE_ACCOUNT_LABEL,
};

type Labels = BTreeMap<String, String>;

/// Name of the profile Calico derives from a namespace.
fn namespace_profile(namespace: &str) -> String {
    format!("kns.{namespace}")
}

/// The label Kubernetes itself puts on every namespace.
const K8S_NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The tier policies belong to when they name none, and its built-in order.
const DEFAULT_TIER: &str = "default";
const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// A workload or host endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointKey {
    Workload { namespace: String, name: String },
    Host { name: String },
}

impl fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointKey::Workload { namespace, name } => {
                write!(f, "WorkloadEndpoint {namespace}/{name}")
            }
            EndpointKey::Host { name } => write!(f, "HostEndpoint {name}"),
        }
    }
}

/// A named port of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub name: String,
    pub protocol: u8,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    NetworkPolicy,
    GlobalNetworkPolicy,
    StagedNetworkPolicy,
}

/// Identity of a policy: kind, namespace (namespaced kinds only) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} {ns}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

/// A tier in effect for an endpoint and direction, with its applicable policies in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveTier {
    pub name: String,
    pub default_action: Action,
    pub policies: Vec<PolicyKey>,
}

/// What governs one endpoint in one direction: tiers in order, then its profiles in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivePolicies {
    pub tiers: Vec<ActiveTier>,
    pub profiles: Vec<String>,
}

/// What one event changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelUpdate {
    /// Sets that now exist and did not (create them, even empty, before rules use them).
    pub sets_created: Vec<SetId>,
    /// Sets no rule uses any more (remove them after the rules that used them).
    pub sets_dropped: Vec<SetId>,
    /// Set element changes, one entry per changed set; a dropped set's elements are listed
    /// as removed.
    pub set_deltas: Vec<SetDelta>,
    /// Local endpoints whose active policies, profiles or labels may have changed.
    pub endpoints_touched: BTreeSet<EndpointKey>,
    /// The enforced policy whose rules were added, replaced or removed, if any.
    pub policy_changed: Option<PolicyKey>,
    /// The profile whose rules or labels were added, replaced or removed, if any.
    pub profile_changed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("{kind} {name}: {field}: {why}")]
    Invalid {
        kind: &'static str,
        name: String,
        field: String,
        why: String,
    },
    #[error("unknown endpoint {0}")]
    UnknownEndpoint(EndpointKey),
}

/// What the model keeps about an endpoint besides its labels and addresses (those live in the
/// label index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub node: Option<String>,
    /// The host-side interface of a workload; for a host endpoint its interface, `*` for all.
    pub interface_name: Option<String>,
    /// Profiles in the order they are evaluated.
    pub profiles: Vec<String>,
    pub addresses: Vec<IpNet>,
    pub named_ports: Vec<NamedPort>,
}

/// The model. Every update is O(what it touches): an endpoint event re-checks that endpoint
/// against the selectors and policies; a policy event re-checks that policy against the local
/// endpoints; a profile's labels re-check only the members that inherit them.
#[derive(Debug, Default)]
pub struct PolicyModel {
    /// Endpoints on this node are "local"; `None` treats every endpoint as local.
    local_node: Option<String>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
    tiers: BTreeMap<String, TierSpec>,
    policies: BTreeMap<PolicyKey, CompiledPolicy>,
    staged: BTreeMap<PolicyKey, Resource>,
    profiles: BTreeMap<String, CompiledRules>,
    pub(crate) index: LabelIndex,
    policy_endpoints: BTreeMap<PolicyKey, BTreeSet<EndpointKey>>,
    endpoint_policies: BTreeMap<EndpointKey, BTreeSet<PolicyKey>>,
    /// Label key → the policies whose selector reads it: a label change re-checks only these.
    policies_by_key: BTreeMap<String, BTreeSet<PolicyKey>>,
}

fn invalid(kind: &'static str, name: &str, field: &str, why: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        kind,
        name: name.to_string(),
        field: field.to_string(),
        why: why.into(),
    }
}

fn parse_protocol(
    kind: &'static str,
    name: &str,
    field: &str,
    protocol: &calico_api::spec::rule::Protocol,
) -> Result<u8, ModelError> {
    protocol
        .number()
        .ok_or_else(|| invalid(kind, name, field, format!("unknown protocol {protocol}")))
}

impl PolicyModel {
    /// A model for the node `local_node` (`None`: every endpoint is local).
    pub fn new(local_node: Option<String>) -> PolicyModel {
        PolicyModel {
            local_node,
            ..PolicyModel::default()
        }
    }

    /// Adds or replaces one resource. Kinds policy does not use are ignored. A policy or profile
    /// that cannot be compiled is refused and the model keeps its previous version.
    pub fn upsert(&mut self, resource: &Resource) -> Result<ModelUpdate, ModelError> {
        let mut deltas = DeltaCollector::default();
        let mut touched = BTreeSet::new();
        let name = resource.name();
        match &resource.spec {
            Spec::WorkloadEndpoint(spec) => {
                let (key, endpoint, input) = workload_endpoint(resource, spec)?;
                self.upsert_endpoint(key, endpoint, input, &mut deltas, &mut touched);
            }
            Spec::HostEndpoint(spec) => {
                let (key, endpoint, input) = host_endpoint(resource, spec)?;
                self.upsert_endpoint(key, endpoint, input, &mut deltas, &mut touched);
            }
            Spec::NetworkSet(spec) => {
                let namespace = resource.namespace().unwrap_or("default").to_string();
                let mut labels = resource.metadata.labels().clone();
                labels.insert(NAMESPACE_LABEL.into(), namespace.clone());
                let input = MemberInput {
                    own_labels: labels,
                    // Its namespace's labels, so namespaceSelectors select it as they do pods.
                    parents: vec![namespace_profile(&namespace)],
                    nets: network_set_nets("NetworkSet", name, &spec.nets)?,
                    named_ports: Vec::new(),
                };
                let key = MemberKey::NetworkSet {
                    namespace: Some(namespace),
                    name: name.to_string(),
                };
                self.index.upsert_member(key, input, &mut deltas);
            }
            Spec::GlobalNetworkSet(spec) => {
                let input = MemberInput {
                    own_labels: resource.metadata.labels().clone(),
                    parents: Vec::new(),
                    nets: network_set_nets("GlobalNetworkSet", name, &spec.nets)?,
                    named_ports: Vec::new(),
                };
                let key = MemberKey::NetworkSet {
                    namespace: None,
                    name: name.to_string(),
                };
                self.index.upsert_member(key, input, &mut deltas);
            }
            Spec::Tier(spec) => {
                self.tiers.insert(name.to_string(), spec.clone());
                self.touch_tier(name, &mut touched);
            }
            Spec::NetworkPolicy(_) | Spec::GlobalNetworkPolicy(_) => {
                let compiled = compile_policy(resource)?;
                let key = policy_key(resource);
                self.upsert_policy(key.clone(), compiled, &mut deltas, &mut touched);
                return Ok(ModelUpdate {
                    policy_changed: Some(key),
                    ..self.finish(deltas, touched)
                });
            }
            Spec::StagedNetworkPolicy(_) => {
                // Stored for reporting; never enforced.
                self.staged.insert(policy_key(resource), resource.clone());
            }
            Spec::KubernetesNetworkPolicy(_) => {
                // Refused rather than ignored: a stored policy that silently allows is worse.
                return Err(invalid(
                    "KubernetesNetworkPolicy",
                    name,
                    "kind",
                    "Kubernetes NetworkPolicy is not translated to a Calico policy yet",
                ));
            }
            Spec::Profile(spec) => {
                let compiled = compile_profile(name, spec)?;
                self.upsert_profile(
                    name,
                    compiled,
                    spec.labels_to_apply.clone(),
                    &mut deltas,
                    &mut touched,
                );
                return Ok(ModelUpdate {
                    profile_changed: Some(name.to_string()),
                    ..self.finish(deltas, touched)
                });
            }
            _ => {}
        }
        Ok(self.finish(deltas, touched))
    }

    /// Removes one resource; removing something absent is not an error.
    pub fn delete(&mut self, kind: Kind, namespace: Option<&str>, name: &str) -> ModelUpdate {
        let mut deltas = DeltaCollector::default();
        let mut touched = BTreeSet::new();
        let namespace = || namespace.unwrap_or("default").to_string();
        match kind {
            Kind::WorkloadEndpoint => {
                let key = EndpointKey::Workload {
                    namespace: namespace(),
                    name: name.to_string(),
                };
                self.delete_endpoint(&key, &mut deltas, &mut touched);
            }
            Kind::HostEndpoint => {
                let key = EndpointKey::Host {
                    name: name.to_string(),
                };
                self.delete_endpoint(&key, &mut deltas, &mut touched);
            }
            Kind::NetworkSet => {
                let key = MemberKey::NetworkSet {
                    namespace: Some(namespace()),
                    name: name.to_string(),
                };
                self.index.remove_member(&key, &mut deltas);
            }
            Kind::GlobalNetworkSet => {
                let key = MemberKey::NetworkSet {
                    namespace: None,
                    name: name.to_string(),
                };
                self.index.remove_member(&key, &mut deltas);
            }
            Kind::Tier => {
                self.tiers.remove(name);
                self.touch_tier(name, &mut touched);
            }
            Kind::NetworkPolicy | Kind::GlobalNetworkPolicy => {
                let key = PolicyKey {
                    kind: if kind == Kind::NetworkPolicy {
                        PolicyKind::NetworkPolicy
                    } else {
                        PolicyKind::GlobalNetworkPolicy
                    },
                    namespace: (kind == Kind::NetworkPolicy).then(namespace),
                    name: name.to_string(),
                };
                let existed = self.policies.contains_key(&key);
                self.delete_policy(&key, &mut deltas, &mut touched);
                return ModelUpdate {
                    policy_changed: existed.then_some(key),
                    ..self.finish(deltas, touched)
                };
            }
            Kind::StagedNetworkPolicy => {
                self.staged.remove(&PolicyKey {
                    kind: PolicyKind::StagedNetworkPolicy,
                    namespace: Some(namespace()),
                    name: name.to_string(),
                });
            }
            Kind::Profile => {
                let existed = self.profiles.contains_key(name);
                self.delete_profile(name, &mut deltas, &mut touched);
                return ModelUpdate {
                    profile_changed: existed.then(|| name.to_string()),
                    ..self.finish(deltas, touched)
                };
            }
            _ => {}
        }
        self.finish(deltas, touched)
    }

    /// A Kubernetes namespace with its labels: Calico represents it as the profile `kns.<name>`,
    /// which allows everything and hands its endpoints the labels `pcns.<key>`, plus
    /// `pcns.projectcalico.org/name` (and Kubernetes' own `kubernetes.io/metadata.name`).
    pub fn upsert_namespace(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<ModelUpdate, ModelError> {
        let mut to_apply: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (format!("{NAMESPACE_LABEL_PREFIX}{k}"), v.clone()))
            .collect();
        to_apply
            .entry(format!(
                "{NAMESPACE_LABEL_PREFIX}{K8S_NAMESPACE_NAME_LABEL}"
            ))
            .or_insert_with(|| name.to_string());
        to_apply.insert(
            format!("{NAMESPACE_LABEL_PREFIX}{NAMESPACE_NAME_LABEL}"),
            name.to_string(),
        );
        let spec = ProfileSpec {
            ingress: vec![Rule::new(Action::Allow)],
            egress: vec![Rule::new(Action::Allow)],
            labels_to_apply: Some(to_apply),
        };
        self.upsert(&Resource::new(
            ObjectMeta::named(namespace_profile(name)),
            Spec::Profile(spec),
        ))
    }

    pub fn delete_namespace(&mut self, name: &str) -> ModelUpdate {
        self.delete(Kind::Profile, None, &namespace_profile(name))
    }

    /// The tiers, policies and profiles governing a local endpoint in one direction, in the order
    /// they are evaluated; `None` if the endpoint is unknown or not local.
    pub fn active_policies(
        &self,
        endpoint: &EndpointKey,
        direction: Direction,
    ) -> Option<ActivePolicies> {
        let info = self.endpoints.get(endpoint)?;
        if !self.is_local(info) {
            return None;
        }
        let mut applicable: Vec<(&PolicyKey, &CompiledPolicy)> = self
            .endpoint_policies
            .get(endpoint)
            .into_iter()
            .flatten()
            .filter_map(|key| self.policies.get(key).map(|policy| (key, policy)))
            .filter(|(_, policy)| !policy.outside_filter_chains)
            .filter(|(_, policy)| match direction {
                Direction::Ingress => policy.applies_to_ingress,
                Direction::Egress => policy.applies_to_egress,
            })
            .collect();
        applicable.sort_by(|(key_a, a), (key_b, b)| {
            let (tier_a, tier_b) = (self.tier_order(&a.tier), self.tier_order(&b.tier));
            compare_order(tier_a, tier_b)
                .then_with(|| a.tier.cmp(&b.tier))
                .then_with(|| compare_order(a.order, b.order))
                .then_with(|| key_a.name.cmp(&key_b.name))
                .then_with(|| key_a.namespace.cmp(&key_b.namespace))
                .then_with(|| key_a.kind.cmp(&key_b.kind))
        });
        let mut tiers: Vec<ActiveTier> = Vec::new();
        for (key, policy) in applicable {
            match tiers.last_mut() {
                Some(tier) if tier.name == policy.tier => tier.policies.push(key.clone()),
                _ => tiers.push(ActiveTier {
                    name: policy.tier.clone(),
                    default_action: self.tier_default_action(&policy.tier),
                    policies: vec![key.clone()],
                }),
            }
        }
        Some(ActivePolicies {
            tiers,
            profiles: info.profiles.clone(),
        })
    }

    pub fn endpoint(&self, key: &EndpointKey) -> Option<&Endpoint> {
        self.endpoints.get(key)
    }

    pub fn policy(&self, key: &PolicyKey) -> Option<&CompiledPolicy> {
        self.policies.get(key)
    }

    pub fn profile(&self, name: &str) -> Option<&CompiledRules> {
        self.profiles.get(name)
    }

    /// Staged policies, stored as given; they never affect traffic.
    pub fn staged_policies(&self) -> impl Iterator<Item = (&PolicyKey, &Resource)> {
        self.staged.iter()
    }

    /// An endpoint's effective labels: its own, Calico's implicit ones, and its profiles'.
    pub fn endpoint_labels(&self, endpoint: &EndpointKey) -> Option<&BTreeMap<String, String>> {
        self.index.labels(&MemberKey::Endpoint(endpoint.clone()))
    }

    pub fn local_endpoints(&self) -> impl Iterator<Item = &EndpointKey> {
        self.endpoints
            .iter()
            .filter(|(_, info)| self.is_local(info))
            .map(|(key, _)| key)
    }

    pub fn set_ids(&self) -> impl Iterator<Item = &SetId> {
        self.index.set_ids()
    }

    pub fn set_spec(&self, id: &SetId) -> Option<&SetSpec> {
        self.index.set_spec(id)
    }

    /// A set's current elements, in order.
    pub fn set_elements(&self, id: &SetId) -> Option<Vec<SetElement>> {
        self.index
            .set_elements(id)
            .map(|elements| elements.cloned().collect())
    }

    pub(crate) fn set_contains_ip(&self, id: &SetId, ip: IpAddr) -> bool {
        self.index.contains_ip(id, ip)
    }

    pub(crate) fn set_contains_ip_port(
        &self,
        id: &SetId,
        ip: IpAddr,
        protocol: u8,
        port: u16,
    ) -> bool {
        self.index.contains_ip_port(id, ip, protocol, port)
    }

    fn finish(
        &self,
        deltas: DeltaCollector,
        endpoints_touched: BTreeSet<EndpointKey>,
    ) -> ModelUpdate {
        let changes = deltas.finish(&self.index);
        ModelUpdate {
            sets_created: changes.created,
            sets_dropped: changes.dropped,
            set_deltas: changes.deltas,
            endpoints_touched,
            policy_changed: None,
            profile_changed: None,
        }
    }

    fn is_local(&self, info: &Endpoint) -> bool {
        match &self.local_node {
            None => true,
            Some(node) => info.node.as_deref() == Some(node.as_str()),
        }
    }

    fn tier_order(&self, tier: &str) -> Option<f64> {
        match self.tiers.get(tier) {
            Some(spec) => spec.order,
            // The default tier exists even when nobody stored it.
            None if tier == DEFAULT_TIER => Some(DEFAULT_TIER_ORDER),
            None => None,
        }
    }

    fn tier_default_action(&self, tier: &str) -> Action {
        self.tiers.get(tier).map_or(Action::Deny, TierSpec::action)
    }

    fn touch_tier(&self, tier: &str, touched: &mut BTreeSet<EndpointKey>) {
        for (key, policy) in &self.policies {
            if policy.tier == tier {
                touched.extend(
                    self.policy_endpoints
                        .get(key)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
        }
    }

    fn upsert_endpoint(
        &mut self,
        key: EndpointKey,
        endpoint: Endpoint,
        input: MemberInput,
        deltas: &mut DeltaCollector,
        touched: &mut BTreeSet<EndpointKey>,
    ) {
        let member = MemberKey::Endpoint(key.clone());
        let previous_labels = self.index.labels(&member).cloned();
        self.index.upsert_member(member, input, deltas);
        let local = self.is_local(&endpoint);
        let was_local = self
            .endpoints
            .insert(key.clone(), endpoint)
            .is_some_and(|previous| self.is_local(&previous));
        if local {
            // Its matches are current for its previous labels only if it was local then.
            self.rematch_endpoint(&key, previous_labels.as_ref().filter(|_| was_local));
        } else {
            self.unmatch_endpoint(&key);
        }
        // An endpoint that moved off this node is touched too: its dataplane state must go.
        if local || was_local {
            touched.insert(key);
        }
    }

    fn delete_endpoint(
        &mut self,
        key: &EndpointKey,
        deltas: &mut DeltaCollector,
        touched: &mut BTreeSet<EndpointKey>,
    ) {
        self.index
            .remove_member(&MemberKey::Endpoint(key.clone()), deltas);
        if let Some(info) = self.endpoints.remove(key)
            && self.is_local(&info)
        {
            touched.insert(key.clone());
        }
        self.unmatch_endpoint(key);
    }

    /// Re-checks one local endpoint: against the policies reading a label that changed since
    /// `previous_labels` (when its matches are current for those), else against every policy.
    fn rematch_endpoint(&mut self, key: &EndpointKey, previous_labels: Option<&Labels>) {
        if previous_labels.is_none() {
            self.unmatch_endpoint(key);
        }
        let Some(labels) = self.index.labels(&MemberKey::Endpoint(key.clone())) else {
            self.unmatch_endpoint(key);
            return;
        };
        let candidates: Vec<PolicyKey> = match previous_labels {
            Some(previous) => changed_keys(previous, labels)
                .into_iter()
                .filter_map(|label_key| self.policies_by_key.get(label_key.as_str()))
                .flatten()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            None => self.policies.keys().cloned().collect(),
        };
        let verdicts: Vec<(PolicyKey, bool)> = candidates
            .into_iter()
            .filter_map(|policy_key| {
                let policy = self.policies.get(&policy_key)?;
                let matches = policy.selector.matches(labels);
                Some((policy_key, matches))
            })
            .collect();
        for (policy_key, matches) in verdicts {
            if matches {
                self.policy_endpoints
                    .entry(policy_key.clone())
                    .or_default()
                    .insert(key.clone());
                self.endpoint_policies
                    .entry(key.clone())
                    .or_default()
                    .insert(policy_key);
            } else {
                self.unmatch_pair(&policy_key, key);
            }
        }
    }

    fn unmatch_pair(&mut self, policy_key: &PolicyKey, key: &EndpointKey) {
        if let Some(endpoints) = self.policy_endpoints.get_mut(policy_key) {
            endpoints.remove(key);
            if endpoints.is_empty() {
                self.policy_endpoints.remove(policy_key);
            }
        }
        if let Some(policies) = self.endpoint_policies.get_mut(key) {
            policies.remove(policy_key);
            if policies.is_empty() {
                self.endpoint_policies.remove(key);
            }
        }
    }

    fn unmatch_endpoint(&mut self, key: &EndpointKey) {
        for policy_key in self.endpoint_policies.remove(key).unwrap_or_default() {
            if let Some(endpoints) = self.policy_endpoints.get_mut(&policy_key) {
                endpoints.remove(key);
                if endpoints.is_empty() {
                    self.policy_endpoints.remove(&policy_key);
                }
            }
        }
    }

    fn upsert_policy(
        &mut self,
        key: PolicyKey,
        compiled: CompiledPolicy,
        deltas: &mut DeltaCollector,
        touched: &mut BTreeSet<EndpointKey>,
    ) {
        // Take the new sets before dropping the old ones, so a set both use is never emptied.
        for spec in &compiled.rules.sets {
            self.index.add_set_user(spec, deltas);
        }
        self.delete_policy(&key, deltas, touched);
        let mut matching = BTreeSet::new();
        for (endpoint, info) in &self.endpoints {
            if !self.is_local(info) {
                continue;
            }
            let labels = self.index.labels(&MemberKey::Endpoint(endpoint.clone()));
            if labels.is_some_and(|labels| compiled.selector.matches(labels)) {
                matching.insert(endpoint.clone());
            }
        }
        for endpoint in &matching {
            self.endpoint_policies
                .entry(endpoint.clone())
                .or_default()
                .insert(key.clone());
        }
        touched.extend(matching.iter().cloned());
        if !matching.is_empty() {
            self.policy_endpoints.insert(key.clone(), matching);
        }
        for label_key in selector_keys(&compiled.selector) {
            self.policies_by_key
                .entry(label_key)
                .or_default()
                .insert(key.clone());
        }
        self.policies.insert(key, compiled);
    }

    fn delete_policy(
        &mut self,
        key: &PolicyKey,
        deltas: &mut DeltaCollector,
        touched: &mut BTreeSet<EndpointKey>,
    ) {
        let Some(old) = self.policies.remove(key) else {
            return;
        };
        for spec in &old.rules.sets {
            self.index.remove_set_user(&spec.id(), deltas);
        }
        for label_key in selector_keys(&old.selector) {
            if let Some(policies) = self.policies_by_key.get_mut(&label_key) {
                policies.remove(key);
                if policies.is_empty() {
                    self.policies_by_key.remove(&label_key);
                }
            }
        }
        for endpoint in self.policy_endpoints.remove(key).unwrap_or_default() {
            if let Some(policies) = self.endpoint_policies.get_mut(&endpoint) {
                policies.remove(key);
                if policies.is_empty() {
                    self.endpoint_policies.remove(&endpoint);
                }
            }
            touched.insert(endpoint);
        }
    }

    fn upsert_profile(
        &mut self,
        name: &str,
        compiled: CompiledRules,
        labels: Option<BTreeMap<String, String>>,
        deltas: &mut DeltaCollector,
        touched: &mut BTreeSet<EndpointKey>,
    ) {
        for spec in &compiled.sets {
            self.index.add_set_user(spec, deltas);
        }
        if let Some(old) = self.profiles.insert(name.to_string(), compiled) {
            for spec in &old.sets {
                self.index.remove_set_user(&spec.id(), deltas);
            }
        }
        let before = self.local_inheritors(name);
        self.index
            .set_parent_labels(name, Some(labels.unwrap_or_default()), deltas);
        self.after_profile_change(before, touched);
    }

    fn delete_profile(
        &mut self,
        name: &str,
        deltas: &mut DeltaCollector,
        touched: &mut BTreeSet<EndpointKey>,
    ) {
        if let Some(old) = self.profiles.remove(name) {
            for spec in &old.sets {
                self.index.remove_set_user(&spec.id(), deltas);
            }
        }
        let before = self.local_inheritors(name);
        self.index.set_parent_labels(name, None, deltas);
        self.after_profile_change(before, touched);
    }

    /// The local endpoints inheriting labels from `profile`, with their labels now.
    fn local_inheritors(&self, profile: &str) -> Vec<(EndpointKey, Labels)> {
        self.index
            .children_of(profile)
            .filter_map(|member| match member {
                MemberKey::Endpoint(key) => Some(key),
                MemberKey::NetworkSet { .. } => None,
            })
            .filter(|key| {
                self.endpoints
                    .get(*key)
                    .is_some_and(|info| self.is_local(info))
            })
            .filter_map(|key| {
                let labels = self.index.labels(&MemberKey::Endpoint(key.clone()))?;
                Some((key.clone(), labels.clone()))
            })
            .collect()
    }

    /// Inherited labels changed: those local endpoints may match other policies.
    fn after_profile_change(
        &mut self,
        inheritors: Vec<(EndpointKey, Labels)>,
        touched: &mut BTreeSet<EndpointKey>,
    ) {
        for (key, previous_labels) in inheritors {
            self.rematch_endpoint(&key, Some(&previous_labels));
            touched.insert(key);
        }
    }
}

/// A workload endpoint's identity, bookkeeping and label-index input, with the labels Calico adds.
fn workload_endpoint(
    resource: &Resource,
    spec: &WorkloadEndpointSpec,
) -> Result<(EndpointKey, Endpoint, MemberInput), ModelError> {
    let name = resource.name();
    let kind = "WorkloadEndpoint";
    let namespace = resource.namespace().unwrap_or("default").to_string();
    let mut labels = resource.metadata.labels().clone();
    // Calico's client stamps these on every workload endpoint it stores.
    labels.insert(NAMESPACE_LABEL.into(), namespace.clone());
    if let Some(orchestrator) = spec.orchestrator.as_deref().filter(|o| !o.is_empty()) {
        labels.insert(ORCHESTRATOR_LABEL.into(), orchestrator.into());
    }
    if let Some(account) = spec.service_account_name.as_deref()
        && !account.is_empty()
        && account.len() < MAX_SERVICE_ACCOUNT_LABEL_LEN
    {
        labels.insert(SERVICE_ACCOUNT_LABEL.into(), account.into());
    }
    let nets = spec
        .ip_networks
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse_net(text).ok_or_else(|| {
                invalid(
                    kind,
                    name,
                    &format!("spec.ipNetworks[{i}]"),
                    format!("{text:?} is not a CIDR"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut named_ports = Vec::new();
    for (i, port) in spec.ports.iter().enumerate() {
        if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            named_ports.push(NamedPort {
                name: port_name.into(),
                protocol: parse_protocol(
                    kind,
                    name,
                    &format!("spec.ports[{i}].protocol"),
                    &port.protocol,
                )?,
                port: port.port,
            });
        }
    }
    // Namespace selectors are about the endpoint's namespace whether or not it lists the
    // namespace's profile (in Kubernetes it always does).
    let mut parents = spec.profiles.clone();
    let own_namespace = namespace_profile(&namespace);
    if !parents.contains(&own_namespace) {
        parents.push(own_namespace);
    }
    let key = EndpointKey::Workload {
        namespace,
        name: name.to_string(),
    };
    let input = MemberInput {
        own_labels: labels,
        parents,
        nets,
        named_ports,
    };
    let endpoint = Endpoint {
        node: spec.node.clone(),
        interface_name: spec.interface_name.clone(),
        profiles: spec.profiles.clone(),
        addresses: input.nets.clone(),
        named_ports: input.named_ports.clone(),
    };
    Ok((key, endpoint, input))
}

/// A host endpoint's identity, bookkeeping and label-index input.
fn host_endpoint(
    resource: &Resource,
    spec: &HostEndpointSpec,
) -> Result<(EndpointKey, Endpoint, MemberInput), ModelError> {
    let name = resource.name();
    let kind = "HostEndpoint";
    let nets = spec
        .expected_ips
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.trim().parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                invalid(
                    kind,
                    name,
                    &format!("spec.expectedIPs[{i}]"),
                    format!("{text:?} is not an address"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let named_ports = spec
        .ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Ok(NamedPort {
                name: port.name.clone(),
                protocol: parse_protocol(
                    kind,
                    name,
                    &format!("spec.ports[{i}].protocol"),
                    &port.protocol,
                )?,
                port: port.port,
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let key = EndpointKey::Host {
        name: name.to_string(),
    };
    let input = MemberInput {
        own_labels: resource.metadata.labels().clone(),
        parents: spec.profiles.clone(),
        nets,
        named_ports,
    };
    let endpoint = Endpoint {
        node: spec.node.clone(),
        interface_name: spec.interface_name.clone(),
        profiles: spec.profiles.clone(),
        addresses: input.nets.clone(),
        named_ports: input.named_ports.clone(),
    };
    Ok((key, endpoint, input))
}

fn policy_key(resource: &Resource) -> PolicyKey {
    let kind = match resource.kind() {
        Kind::GlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
        Kind::StagedNetworkPolicy => PolicyKind::StagedNetworkPolicy,
        _ => PolicyKind::NetworkPolicy,
    };
    let namespace = (kind != PolicyKind::GlobalNetworkPolicy)
        .then(|| resource.namespace().unwrap_or("default").to_string());
    PolicyKey {
        kind,
        namespace,
        name: resource.name().to_string(),
    }
}

fn network_set_nets(
    kind: &'static str,
    name: &str,
    nets: &[String],
) -> Result<Vec<IpNet>, ModelError> {
    nets.iter()
        .enumerate()
        .map(|(i, text)| {
            parse_net(text).ok_or_else(|| {
                invalid(
                    kind,
                    name,
                    &format!("spec.nets[{i}]"),
                    format!("{text:?} is not a CIDR"),
                )
            })
        })
        .collect()
}

/// Calico's order comparison: lower first, unset last.
fn compare_order(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}
