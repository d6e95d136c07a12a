//! The label index: which endpoints and network sets each selector selects, kept up to date one
//! member (or one profile's labels) at a time, reporting the set elements that appear or vanish.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use calico_api::Selector;
use calico_api::selector::Expr;
use ipnet::IpNet;
use sha1::{Digest, Sha1};

use crate::model::{EndpointKey, NamedPort};

/// A set's stable name, derived from what it selects (Calico-style `s:<hash>` / `n:<hash>`), so the
/// same selector in two policies is one set, and the name survives restarts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetId(String);

impl SetId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a set holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetSpec {
    /// The addresses of every endpoint and the nets of every network set the selector matches.
    Selector(Selector),
    /// `ip,protocol:port` of every endpoint the selector matches that has a port named `port_name`
    /// with that protocol (a rule's named port, resolved per endpoint).
    NamedPort {
        selector: Selector,
        protocol: u8,
        port_name: String,
    },
}

/// Hash characters kept in an id: `s:` plus 23 keeps `cali40<id>` within the kernel's 31 characters.
const SET_ID_HASH_CHARS: usize = 23;

impl SetSpec {
    /// The set's id: a hash of the canonical selector text (and, for named ports, the port).
    pub fn id(&self) -> SetId {
        let (tag, text) = match self {
            SetSpec::Selector(selector) => ("s", selector.canonical()),
            SetSpec::NamedPort {
                selector,
                protocol,
                port_name,
            } => (
                "n",
                format!("{}\u{0}{protocol}\u{0}{port_name}", selector.canonical()),
            ),
        };
        let digest = Sha1::digest(format!("{tag}:{text}").as_bytes());
        let mut encoded = base64_url(&digest);
        encoded.truncate(SET_ID_HASH_CHARS);
        SetId(format!("{tag}:{encoded}"))
    }

    pub fn selector(&self) -> &Selector {
        match self {
            SetSpec::Selector(selector) | SetSpec::NamedPort { selector, .. } => selector,
        }
    }
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((word >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// One element of a set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetElement {
    /// An endpoint address (as a host net) or a network set's net.
    Net(IpNet),
    /// A named port resolved on one endpoint address.
    IpPort { ip: IpAddr, protocol: u8, port: u16 },
}

/// The element changes of one set, as a dataplane applies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDelta {
    pub set_id: SetId,
    pub added: Vec<SetElement>,
    pub removed: Vec<SetElement>,
}

/// One event's effect on the sets.
#[derive(Debug, Default)]
pub(crate) struct SetChanges {
    pub created: Vec<SetId>,
    pub dropped: Vec<SetId>,
    pub deltas: Vec<SetDelta>,
}

/// What the index holds labels for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum MemberKey {
    Endpoint(EndpointKey),
    NetworkSet {
        namespace: Option<String>,
        name: String,
    },
}

/// A member's inputs; its effective labels are computed from them and its parents' labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemberInput {
    pub own_labels: BTreeMap<String, String>,
    /// Profiles whose `labelsToApply` it inherits, in precedence order.
    pub parents: Vec<String>,
    pub nets: Vec<IpNet>,
    pub named_ports: Vec<NamedPort>,
}

#[derive(Debug)]
struct Member {
    input: MemberInput,
    labels: BTreeMap<String, String>,
}

#[derive(Debug)]
struct SetState {
    spec: SetSpec,
    users: usize,
    matching: BTreeSet<MemberKey>,
    /// Element → how many matching members contribute it (two endpoints may share a net).
    elements: BTreeMap<SetElement, usize>,
}

/// Records each touched element's presence before the event, so that one event's changes are
/// reported once, net of changes that cancel out.
#[derive(Debug, Default)]
pub(crate) struct DeltaCollector {
    present_before: BTreeMap<(SetId, SetElement), bool>,
    /// Whether each set created or dropped during the event existed before it.
    existed_before: BTreeMap<SetId, bool>,
}

#[derive(Debug, Default)]
pub(crate) struct LabelIndex {
    members: BTreeMap<MemberKey, Member>,
    parent_labels: BTreeMap<String, BTreeMap<String, String>>,
    children: BTreeMap<String, BTreeSet<MemberKey>>,
    sets: BTreeMap<SetId, SetState>,
    /// Label key → the sets whose selector mentions it: a label change re-checks only these.
    sets_by_key: BTreeMap<String, BTreeSet<SetId>>,
    /// Member → the sets it is in: an address change or removal touches only these.
    member_sets: BTreeMap<MemberKey, BTreeSet<SetId>>,
}

/// What happened to a member since its memberships were last computed.
enum Change<'a> {
    New,
    /// Its input was replaced (labels, addresses or ports may differ).
    Replaced {
        input: &'a MemberInput,
        labels: &'a BTreeMap<String, String>,
    },
    /// Only inherited labels changed.
    Relabelled {
        labels: &'a BTreeMap<String, String>,
    },
}

impl LabelIndex {
    /// Effective labels of a member, if it is known.
    pub(crate) fn labels(&self, key: &MemberKey) -> Option<&BTreeMap<String, String>> {
        self.members.get(key).map(|member| &member.labels)
    }

    pub(crate) fn upsert_member(
        &mut self,
        key: MemberKey,
        input: MemberInput,
        out: &mut DeltaCollector,
    ) {
        let previous = self
            .members
            .get(&key)
            .map(|old| (old.input.clone(), old.labels.clone()));
        if let Some((old, _)) = &previous {
            if *old == input {
                return;
            }
            for parent in &old.parents {
                if let Some(children) = self.children.get_mut(parent) {
                    children.remove(&key);
                }
            }
        }
        for parent in &input.parents {
            self.children
                .entry(parent.clone())
                .or_default()
                .insert(key.clone());
        }
        let labels = effective_labels(&input, &self.parent_labels);
        self.members.insert(key.clone(), Member { input, labels });
        let change = match &previous {
            Some((input, labels)) => Change::Replaced { input, labels },
            None => Change::New,
        };
        self.reevaluate(&key, change, out);
    }

    pub(crate) fn remove_member(&mut self, key: &MemberKey, out: &mut DeltaCollector) {
        let Some(old) = self.members.remove(key) else {
            return;
        };
        for parent in &old.input.parents {
            if let Some(children) = self.children.get_mut(parent) {
                children.remove(key);
                if children.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
        for id in self.member_sets.remove(key).unwrap_or_default() {
            if let Some(set) = self.sets.get_mut(&id)
                && set.matching.remove(key)
            {
                for element in elements_of(&set.spec, &old.input) {
                    decrement(&id, set, element, out);
                }
            }
        }
    }

    /// A profile's `labelsToApply` changed (`None`: the profile went away): only the members that
    /// inherit from it are re-evaluated.
    pub(crate) fn set_parent_labels(
        &mut self,
        parent: &str,
        labels: Option<BTreeMap<String, String>>,
        out: &mut DeltaCollector,
    ) {
        let unchanged = self.parent_labels.get(parent) == labels.as_ref();
        if unchanged {
            return;
        }
        match labels {
            Some(labels) => self.parent_labels.insert(parent.to_string(), labels),
            None => self.parent_labels.remove(parent),
        };
        let children: Vec<MemberKey> = self
            .children
            .get(parent)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        for key in children {
            let Some(member) = self.members.get_mut(&key) else {
                continue;
            };
            let labels = effective_labels(&member.input, &self.parent_labels);
            let previous = std::mem::replace(&mut member.labels, labels);
            self.reevaluate(&key, Change::Relabelled { labels: &previous }, out);
        }
    }

    /// One more user (a compiled rule) of the set `spec`; creates and fills it on first use.
    pub(crate) fn add_set_user(&mut self, spec: &SetSpec, out: &mut DeltaCollector) -> SetId {
        let id = spec.id();
        if let Some(set) = self.sets.get_mut(&id) {
            set.users += 1;
            return id;
        }
        let mut set = SetState {
            spec: spec.clone(),
            users: 1,
            matching: BTreeSet::new(),
            elements: BTreeMap::new(),
        };
        for (key, member) in &self.members {
            if spec.selector().matches(&member.labels) {
                set.matching.insert(key.clone());
                self.member_sets
                    .entry(key.clone())
                    .or_default()
                    .insert(id.clone());
                for element in elements_of(spec, &member.input) {
                    increment(&id, &mut set, element, out);
                }
            }
        }
        for label_key in selector_keys(spec.selector()) {
            self.sets_by_key
                .entry(label_key)
                .or_default()
                .insert(id.clone());
        }
        out.existed_before.entry(id.clone()).or_insert(false);
        self.sets.insert(id.clone(), set);
        id
    }

    /// One user fewer; the set is dropped (all its elements reported removed) with the last one.
    pub(crate) fn remove_set_user(&mut self, id: &SetId, out: &mut DeltaCollector) {
        let Some(set) = self.sets.get_mut(id) else {
            return;
        };
        set.users = set.users.saturating_sub(1);
        if set.users > 0 {
            return;
        }
        if let Some(set) = self.sets.remove(id) {
            out.existed_before.entry(id.clone()).or_insert(true);
            for label_key in selector_keys(set.spec.selector()) {
                if let Some(ids) = self.sets_by_key.get_mut(&label_key) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.sets_by_key.remove(&label_key);
                    }
                }
            }
            for member in &set.matching {
                if let Some(ids) = self.member_sets.get_mut(member) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.member_sets.remove(member);
                    }
                }
            }
            for element in set.elements.into_keys() {
                out.present_before
                    .entry((id.clone(), element))
                    .or_insert(true);
            }
        }
    }

    /// The members that inherit labels from `parent`.
    pub(crate) fn children_of(&self, parent: &str) -> impl Iterator<Item = &MemberKey> {
        self.children.get(parent).into_iter().flatten()
    }

    pub(crate) fn set_ids(&self) -> impl Iterator<Item = &SetId> {
        self.sets.keys()
    }

    pub(crate) fn set_elements(&self, id: &SetId) -> Option<impl Iterator<Item = &SetElement>> {
        self.sets.get(id).map(|set| set.elements.keys())
    }

    pub(crate) fn set_spec(&self, id: &SetId) -> Option<&SetSpec> {
        self.sets.get(id).map(|set| &set.spec)
    }

    /// Whether `ip` falls in any net of set `id`.
    pub(crate) fn contains_ip(&self, id: &SetId, ip: IpAddr) -> bool {
        self.sets.get(id).is_some_and(|set| {
            set.elements.keys().any(|element| match element {
                SetElement::Net(net) => net.contains(&ip),
                SetElement::IpPort { .. } => false,
            })
        })
    }

    pub(crate) fn contains_ip_port(&self, id: &SetId, ip: IpAddr, protocol: u8, port: u16) -> bool {
        self.sets.get(id).is_some_and(|set| {
            set.elements
                .contains_key(&SetElement::IpPort { ip, protocol, port })
        })
    }

    /// Re-checks one member against the sets its change can affect, moving its elements in or
    /// out: a new member against every set; a label change against the sets whose selectors
    /// mention a changed key; an address or port change against the sets it is in.
    fn reevaluate(&mut self, key: &MemberKey, change: Change<'_>, out: &mut DeltaCollector) {
        let Some(member) = self.members.get(key) else {
            return;
        };
        let (previous_input, candidates): (&MemberInput, BTreeSet<SetId>) = match change {
            Change::New => (&member.input, self.sets.keys().cloned().collect()),
            Change::Replaced { input, labels } => {
                let mut candidates = self.sets_mentioning(changed_keys(labels, &member.labels));
                if input.nets != member.input.nets || input.named_ports != member.input.named_ports
                {
                    candidates.extend(self.member_sets.get(key).into_iter().flatten().cloned());
                }
                (input, candidates)
            }
            Change::Relabelled { labels } => (
                &member.input,
                self.sets_mentioning(changed_keys(labels, &member.labels)),
            ),
        };
        for id in candidates {
            let Some(set) = self.sets.get_mut(&id) else {
                continue;
            };
            let was_matching = set.matching.contains(key);
            let now_matching = set.spec.selector().matches(&member.labels);
            let old_elements = if was_matching {
                elements_of(&set.spec, previous_input)
            } else {
                Vec::new()
            };
            let new_elements = if now_matching {
                elements_of(&set.spec, &member.input)
            } else {
                Vec::new()
            };
            if now_matching {
                set.matching.insert(key.clone());
                self.member_sets
                    .entry(key.clone())
                    .or_default()
                    .insert(id.clone());
            } else if was_matching {
                set.matching.remove(key);
                if let Some(ids) = self.member_sets.get_mut(key) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.member_sets.remove(key);
                    }
                }
            }
            if old_elements == new_elements {
                continue;
            }
            for element in new_elements {
                increment(&id, set, element, out);
            }
            for element in old_elements {
                decrement(&id, set, element, out);
            }
        }
    }

    fn sets_mentioning(&self, keys: BTreeSet<&String>) -> BTreeSet<SetId> {
        keys.into_iter()
            .filter_map(|key| self.sets_by_key.get(key.as_str()))
            .flatten()
            .cloned()
            .collect()
    }
}

/// Keys whose value differs (or that appear or vanish) between two label maps.
pub(crate) fn changed_keys<'a>(
    before: &'a BTreeMap<String, String>,
    after: &'a BTreeMap<String, String>,
) -> BTreeSet<&'a String> {
    let mut keys: BTreeSet<&String> = BTreeSet::new();
    for (key, value) in before {
        if after.get(key) != Some(value) {
            keys.insert(key);
        }
    }
    for (key, value) in after {
        if before.get(key) != Some(value) {
            keys.insert(key);
        }
    }
    keys
}

/// The label keys a selector reads; a selector without any (`all()`) never changes its mind.
pub(crate) fn selector_keys(selector: &Selector) -> BTreeSet<String> {
    fn walk(expr: &Expr, keys: &mut BTreeSet<String>) {
        match expr {
            Expr::All | Expr::Global => {}
            Expr::Has(key)
            | Expr::Equals { key, .. }
            | Expr::NotEquals { key, .. }
            | Expr::Contains { key, .. }
            | Expr::StartsWith { key, .. }
            | Expr::EndsWith { key, .. }
            | Expr::In { key, .. }
            | Expr::NotIn { key, .. } => {
                keys.insert(key.clone());
            }
            Expr::Not(inner) => walk(inner, keys),
            Expr::And(items) | Expr::Or(items) => items.iter().for_each(|item| walk(item, keys)),
        }
    }
    let mut keys = BTreeSet::new();
    walk(selector.expr(), &mut keys);
    keys
}

fn effective_labels(
    input: &MemberInput,
    parent_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    // Own labels win over inherited ones, and an earlier profile over a later one.
    for parent in input.parents.iter().rev() {
        if let Some(inherited) = parent_labels.get(parent) {
            labels.extend(inherited.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    labels.extend(input.own_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

fn elements_of(spec: &SetSpec, input: &MemberInput) -> Vec<SetElement> {
    match spec {
        SetSpec::Selector(_) => input
            .nets
            .iter()
            .map(|net| SetElement::Net(net.trunc()))
            .collect(),
        SetSpec::NamedPort {
            protocol,
            port_name,
            ..
        } => input
            .named_ports
            .iter()
            .filter(|named| named.protocol == *protocol && named.name == *port_name)
            .flat_map(|named| {
                input.nets.iter().map(move |net| SetElement::IpPort {
                    ip: net.addr(),
                    protocol: named.protocol,
                    port: named.port,
                })
            })
            .collect(),
    }
}

fn increment(id: &SetId, set: &mut SetState, element: SetElement, out: &mut DeltaCollector) {
    let count = set.elements.entry(element.clone()).or_insert(0);
    out.present_before
        .entry((id.clone(), element))
        .or_insert(*count > 0);
    *count += 1;
}

fn decrement(id: &SetId, set: &mut SetState, element: SetElement, out: &mut DeltaCollector) {
    let Some(count) = set.elements.get_mut(&element) else {
        return;
    };
    out.present_before
        .entry((id.clone(), element.clone()))
        .or_insert(true);
    *count -= 1;
    if *count == 0 {
        set.elements.remove(&element);
    }
}

impl DeltaCollector {
    /// The net changes: sets created and dropped, and one delta per set whose elements changed,
    /// in set-id order.
    pub(crate) fn finish(self, index: &LabelIndex) -> SetChanges {
        let mut created = Vec::new();
        let mut dropped = Vec::new();
        for (id, existed) in self.existed_before {
            match (existed, index.sets.contains_key(&id)) {
                (false, true) => created.push(id),
                (true, false) => dropped.push(id),
                _ => {}
            }
        }
        let mut deltas: BTreeMap<SetId, SetDelta> = BTreeMap::new();
        for ((id, element), before) in self.present_before {
            let now = index
                .sets
                .get(&id)
                .is_some_and(|set| set.elements.contains_key(&element));
            if before == now {
                continue;
            }
            let delta = deltas.entry(id.clone()).or_insert_with(|| SetDelta {
                set_id: id,
                added: Vec::new(),
                removed: Vec::new(),
            });
            if now {
                delta.added.push(element);
            } else {
                delta.removed.push(element);
            }
        }
        SetChanges {
            created,
            dropped,
            deltas: deltas.into_values().collect(),
        }
    }
}
