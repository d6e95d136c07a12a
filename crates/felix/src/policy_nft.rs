//! Network policy as nftables objects in the `calico` table, with Calico's chain names and marks.
//!
//! From [`calico_policy::PolicyModel`] (what applies to each local workload, in order, and every
//! policy and profile compiled to a kernel-independent form) this builds:
//!
//! - `filter-FORWARD` (base chain, hook forward) → `cali-FORWARD`: traffic from a workload goes through
//!   `cali-from-wl-dispatch`, traffic to one through `cali-to-wl-dispatch`; both dispatch through a verdict
//!   map keyed by interface name to the endpoint's chain (`cali-fw-<iface>` for what it sends,
//!   `cali-tw-<iface>` for what it receives), an unknown `cali*` interface is dropped.
//! - Endpoint chains: established and related flows accepted, invalid ones dropped; then tier by tier each
//!   applicable policy's chain (`cali-po-…` egress, `cali-pi-…` ingress), the packet returning as soon as
//!   one allowed it, skipping the rest of the tier once one passed it, dropped at the end of a tier in
//!   which no policy passed it (unless the tier's default action is Pass); then the profiles
//!   (`cali-pro-…` / `cali-pri-…`), and a final drop.
//! - Policy and profile chains: one rule per compiled rule. Allow sets the accept mark and returns, Pass
//!   the pass mark; Deny drops; Log logs with Calico's `calico-packet` prefix and goes on.
//! - Selector and network-set memberships as named sets (`cali40s-…`), so a label change is a set element
//!   change, not a rule change.
//!
//! The marks are Calico's defaults: accept 0x10000, pass 0x20000; other bits of the mark are kept.
//! This table is IPv4 (`ip`): IPv6 rules and addresses are left out, and said so in the problems.

use std::collections::BTreeSet;

use calico_api::spec::rule::{Action, Direction};
use calico_nft::{
    BaseChain, Chain, ChainType, Comment, CtState, DataType, Field, Hook, IcmpType, Key, L4Proto,
    LogPrefix, Map, MapData, MapValue, Match, Name, Operand, Policy, PortEnd, PortProto, Priority,
    PriorityName, Rule, Set, SetFlags, Statement, Value, Verdict,
};
use calico_policy::{
    ActivePolicies, CompiledEntity, CompiledRule, EndpointKey, IpVersion, PolicyKey, PolicyKind,
    PolicyModel, SetElement, SetId,
};
use ipnet::IpNet;

/// Calico's accept mark bit.
pub const ACCEPT_MARK: u32 = 0x0001_0000;
/// Calico's pass mark bit.
pub const PASS_MARK: u32 = 0x0002_0000;
/// The prefix Calico's Log action writes.
pub const LOG_PREFIX: &str = "calico-packet: ";

pub const FORWARD_BASE_CHAIN: &str = "filter-FORWARD";
pub const FORWARD_CHAIN: &str = "cali-FORWARD";
pub const FROM_WL_DISPATCH: &str = "cali-from-wl-dispatch";
pub const TO_WL_DISPATCH: &str = "cali-to-wl-dispatch";

/// The policy part of the `calico` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyNft {
    pub sets: Vec<Set>,
    pub maps: Vec<Map>,
    pub chains: Vec<Chain>,
    /// What could not be rendered as written, and what was done instead.
    pub problems: Vec<String>,
}

fn name(text: &str) -> Name {
    Name::new(text).expect("policy chain and set names are built from valid parts")
}

/// A name of ours with a caller's text in it: the text when it makes a valid name, else a hash.
fn named(prefix: &str, text: &str) -> Name {
    Name::new(&format!("{prefix}{text}")).unwrap_or_else(|_| {
        use sha1::{Digest, Sha1};
        let digest = Sha1::digest(text.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        name(&format!("{prefix}{hex}"))
    })
}

/// `np/default/web`, `gnp/allow-dns`: the policy's part of its chain names.
fn policy_id(key: &PolicyKey) -> String {
    let kind = match key.kind {
        PolicyKind::NetworkPolicy => "np",
        PolicyKind::GlobalNetworkPolicy => "gnp",
        PolicyKind::StagedNetworkPolicy => "snp",
    };
    match &key.namespace {
        Some(ns) => format!("{kind}/{ns}/{}", key.name),
        None => format!("{kind}/{}", key.name),
    }
}

fn policy_chain(key: &PolicyKey, direction: Direction) -> Name {
    let prefix = match direction {
        Direction::Ingress => "cali-pi-",
        Direction::Egress => "cali-po-",
    };
    named(prefix, &policy_id(key))
}

fn profile_chain(profile: &str, direction: Direction) -> Name {
    let prefix = match direction {
        Direction::Ingress => "cali-pri-",
        Direction::Egress => "cali-pro-",
    };
    named(prefix, profile)
}

/// `cali40s-<id>`: a selector set's name, as Calico's `cali40s:<hash>` ipset.
fn set_name(id: &SetId) -> Name {
    named("cali40", &id.as_str().replace(':', "-"))
}

fn comment(text: &str) -> Option<Comment> {
    // Comments are at most 128 bytes; a long policy name is cut rather than losing the comment.
    let mut text = text.to_string();
    while text.len() > 120 {
        text.pop();
    }
    Comment::new(&text).ok()
}

fn rule(matches: Vec<Match>, statements: Vec<Statement>, note: Option<&str>) -> Rule {
    Rule::new(matches, statements, note.and_then(comment))
        .expect("policy rules end in at most one verdict")
}

fn mark_is(bits: u32, set: bool) -> Match {
    Match::eq(
        Field::MarkBits(bits),
        Value::Mark(if set { bits } else { 0 }),
    )
    .expect("a mark fits a masked mark")
}

fn verdict(v: Verdict) -> Statement {
    Statement::Verdict(v)
}

/// Builds the policy objects for every local workload endpoint with an interface.
pub fn render(model: &PolicyModel) -> PolicyNft {
    let mut out = PolicyNft::default();
    let mut used_policies: BTreeSet<(PolicyKey, Direction)> = BTreeSet::new();
    let mut used_profiles: BTreeSet<(String, Direction)> = BTreeSet::new();
    let mut from_wl: Vec<(Key, MapValue)> = Vec::new();
    let mut to_wl: Vec<(Key, MapValue)> = Vec::new();
    let mut endpoint_chains = Vec::new();

    let mut endpoints: Vec<(&EndpointKey, String)> = model
        .local_endpoints()
        .filter(|key| matches!(key, EndpointKey::Workload { .. }))
        .filter_map(|key| {
            let iface = model.endpoint(key)?.interface_name.clone()?;
            Some((key, iface))
        })
        .collect();
    endpoints.sort_by(|a, b| a.1.cmp(&b.1));
    for (key, iface) in endpoints {
        let Ok(ifname) = Value::ifname(&iface) else {
            out.problems.push(format!(
                "{key}: interface name {iface:?} is not a valid interface name; no policy chains"
            ));
            continue;
        };
        for (direction, dispatch) in [
            (Direction::Egress, &mut from_wl),
            (Direction::Ingress, &mut to_wl),
        ] {
            let active = model.active_policies(key, direction).unwrap_or_default();
            let chain_name = named(
                match direction {
                    Direction::Egress => "cali-fw-",
                    Direction::Ingress => "cali-tw-",
                },
                &iface,
            );
            for tier in &active.tiers {
                for policy in &tier.policies {
                    used_policies.insert((policy.clone(), direction));
                }
            }
            for profile in &active.profiles {
                used_profiles.insert((profile.clone(), direction));
            }
            endpoint_chains.push(endpoint_chain(
                chain_name.clone(),
                &active,
                direction,
                &key.to_string(),
            ));
            dispatch.push((
                Key::one(ifname.clone()),
                MapValue::Verdict(Verdict::Goto(chain_name)),
            ));
        }
    }

    // Sets first: every set a used policy or profile references, with its members.
    let mut set_ids: BTreeSet<SetId> = BTreeSet::new();
    let mut policy_chains = Vec::new();
    for (key, direction) in &used_policies {
        let Some(policy) = model.policy(key) else {
            continue;
        };
        let rules = match direction {
            Direction::Ingress => &policy.rules.ingress,
            Direction::Egress => &policy.rules.egress,
        };
        let owner = format!("{key} {}", direction_word(*direction));
        policy_chains.push(rules_chain(
            policy_chain(key, *direction),
            &owner,
            rules,
            &mut set_ids,
            &mut out.problems,
        ));
    }
    for (profile, direction) in &used_profiles {
        let owner = format!("Profile {profile} {}", direction_word(*direction));
        let rules: &[CompiledRule] = match model.profile(profile) {
            Some(compiled) => match direction {
                Direction::Ingress => &compiled.ingress,
                Direction::Egress => &compiled.egress,
            },
            // A profile that does not exist matches nothing: its chain is empty.
            None => &[],
        };
        policy_chains.push(rules_chain(
            profile_chain(profile, *direction),
            &owner,
            rules,
            &mut set_ids,
            &mut out.problems,
        ));
    }
    for id in &set_ids {
        out.sets.push(selector_set(model, id, &mut out.problems));
    }

    for (map_name, entries) in [(FROM_WL_DISPATCH, from_wl), (TO_WL_DISPATCH, to_wl)] {
        let map = Map::new(
            name(map_name),
            vec![DataType::Ifname],
            MapData::Verdict,
            false,
        )
        .and_then(|m| m.with_entries(entries))
        .expect("interface names key a verdict map");
        out.maps.push(map);
    }

    out.chains.push(Chain::base(
        name(FORWARD_BASE_CHAIN),
        BaseChain {
            chain_type: ChainType::Filter,
            hook: Hook::Forward,
            priority: Priority::Named(PriorityName::Filter, 0),
            policy: Policy::Accept,
        },
        vec![rule(
            Vec::new(),
            vec![verdict(Verdict::Jump(name(FORWARD_CHAIN)))],
            None,
        )],
    ));
    let workloads = Value::ifname_prefix("cali").expect("cali is a valid interface prefix");
    out.chains.push(Chain::regular(
        name(FORWARD_CHAIN),
        vec![
            rule(
                Vec::new(),
                vec![Statement::ClearMarkBits(ACCEPT_MARK | PASS_MARK)],
                Some("Clear Calico's marks"),
            ),
            rule(
                vec![Match::eq(Field::Iifname, workloads.clone()).expect("an interface prefix")],
                vec![verdict(Verdict::Jump(name(FROM_WL_DISPATCH)))],
                Some("From workloads"),
            ),
            rule(
                vec![Match::eq(Field::Oifname, workloads).expect("an interface prefix")],
                vec![verdict(Verdict::Jump(name(TO_WL_DISPATCH)))],
                Some("To workloads"),
            ),
        ],
    ));
    for (chain_name, field, map_name) in [
        (FROM_WL_DISPATCH, Field::Iifname, FROM_WL_DISPATCH),
        (TO_WL_DISPATCH, Field::Oifname, TO_WL_DISPATCH),
    ] {
        out.chains.push(Chain::regular(
            name(chain_name),
            vec![
                rule(
                    Vec::new(),
                    vec![Statement::Vmap {
                        key: field,
                        map: name(map_name),
                    }],
                    None,
                ),
                rule(
                    Vec::new(),
                    vec![verdict(Verdict::Drop)],
                    Some("Unknown interface"),
                ),
            ],
        ));
    }
    out.chains.extend(endpoint_chains);
    out.chains.extend(policy_chains);
    out
}

fn direction_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// `cali-fw-<iface>` / `cali-tw-<iface>`: conntrack, then the tiers, then the profiles.
fn endpoint_chain(
    chain_name: Name,
    active: &ActivePolicies,
    direction: Direction,
    endpoint: &str,
) -> Chain {
    let mut rules = vec![
        rule(
            vec![
                Match::eq(
                    Field::CtState,
                    Value::ct_states(&[CtState::Established, CtState::Related])
                        .expect("two states"),
                )
                .expect("ct states"),
            ],
            vec![verdict(Verdict::Accept)],
            Some(&format!("{endpoint}: established and related flows")),
        ),
        rule(
            vec![
                Match::eq(
                    Field::CtState,
                    Value::ct_states(&[CtState::Invalid]).expect("one state"),
                )
                .expect("ct states"),
            ],
            vec![verdict(Verdict::Drop)],
            None,
        ),
        rule(
            Vec::new(),
            vec![Statement::ClearMarkBits(ACCEPT_MARK | PASS_MARK)],
            None,
        ),
    ];
    for tier in &active.tiers {
        rules.push(rule(
            Vec::new(),
            vec![Statement::ClearMarkBits(PASS_MARK)],
            Some(&format!("Start of tier {}", tier.name)),
        ));
        for policy in &tier.policies {
            rules.push(rule(
                vec![mark_is(PASS_MARK, false)],
                vec![verdict(Verdict::Jump(policy_chain(policy, direction)))],
                None,
            ));
            rules.push(rule(
                vec![mark_is(ACCEPT_MARK, true)],
                vec![verdict(Verdict::Return)],
                Some("Return if policy accepted"),
            ));
        }
        if tier.default_action != Action::Pass {
            rules.push(rule(
                vec![mark_is(PASS_MARK, false)],
                vec![verdict(Verdict::Drop)],
                Some(&format!(
                    "End of tier {}. Drop if no policies passed packet",
                    tier.name
                )),
            ));
        }
    }
    for profile in &active.profiles {
        rules.push(rule(
            Vec::new(),
            vec![verdict(Verdict::Jump(profile_chain(profile, direction)))],
            None,
        ));
        rules.push(rule(
            vec![mark_is(ACCEPT_MARK, true)],
            vec![verdict(Verdict::Return)],
            Some("Return if profile accepted"),
        ));
    }
    rules.push(rule(
        Vec::new(),
        vec![verdict(Verdict::Drop)],
        Some("Drop if no profiles matched"),
    ));
    Chain::regular(chain_name, rules)
}

/// A policy's or profile's rules in one direction.
fn rules_chain(
    chain_name: Name,
    owner: &str,
    compiled: &[CompiledRule],
    set_ids: &mut BTreeSet<SetId>,
    problems: &mut Vec<String>,
) -> Chain {
    let mut rules = Vec::new();
    for (index, compiled_rule) in compiled.iter().enumerate() {
        let note = format!("{owner} rule {index}");
        match rule_matches(compiled_rule, set_ids) {
            Ok(Some(matches)) => {
                let statements = match compiled_rule.action {
                    Action::Allow => vec![
                        Statement::SetMarkBits(ACCEPT_MARK),
                        verdict(Verdict::Return),
                    ],
                    Action::Pass => {
                        vec![Statement::SetMarkBits(PASS_MARK), verdict(Verdict::Return)]
                    }
                    Action::Deny => vec![verdict(Verdict::Drop)],
                    Action::Log => vec![Statement::Log {
                        prefix: LogPrefix::new(LOG_PREFIX).ok(),
                        group: None,
                    }],
                };
                rules.push(rule(matches, statements, Some(&note)));
            }
            // Matches no IPv4 packet (an IPv6 rule, or only IPv6 nets): nothing to render.
            Ok(None) => {}
            Err(why) => {
                problems.push(format!("{note}: {why}"));
                // Never wider than written: an Allow (or Pass, Log) left out lets less through; a
                // Deny that cannot be rendered exactly drops everything the rest of it matches.
                if compiled_rule.action == Action::Deny {
                    rules.push(rule(
                        Vec::new(),
                        vec![verdict(Verdict::Drop)],
                        Some(&format!("{note} (not rendered exactly: drops all)")),
                    ));
                }
            }
        }
    }
    Chain::regular(chain_name, rules)
}

fn port_proto(protocol: Option<u8>) -> Option<PortProto> {
    match protocol {
        Some(6) => Some(PortProto::Tcp),
        Some(17) => Some(PortProto::Udp),
        Some(132) => Some(PortProto::Sctp),
        _ => None,
    }
}

fn l4(protocol: u8) -> L4Proto {
    match protocol {
        1 => L4Proto::Icmp,
        6 => L4Proto::Tcp,
        17 => L4Proto::Udp,
        132 => L4Proto::Sctp,
        other => L4Proto::Other(other),
    }
}

fn icmp_type(number: u8) -> Option<IcmpType> {
    Some(match number {
        0 => IcmpType::EchoReply,
        3 => IcmpType::DestinationUnreachable,
        4 => IcmpType::SourceQuench,
        5 => IcmpType::Redirect,
        8 => IcmpType::EchoRequest,
        9 => IcmpType::RouterAdvertisement,
        10 => IcmpType::RouterSolicitation,
        11 => IcmpType::TimeExceeded,
        12 => IcmpType::ParameterProblem,
        13 => IcmpType::TimestampRequest,
        14 => IcmpType::TimestampReply,
        _ => return None,
    })
}

/// The matches of one rule; `None` when it matches no IPv4 packet; an error for what cannot be
/// rendered exactly.
fn rule_matches(
    compiled: &CompiledRule,
    set_ids: &mut BTreeSet<SetId>,
) -> Result<Option<Vec<Match>>, String> {
    if compiled.ip_version == Some(IpVersion::V6) {
        return Ok(None);
    }
    let mut matches = Vec::new();
    if let Some(p) = compiled.protocol {
        matches.push(Match::eq(Field::L4Proto, Value::Proto(l4(p))).map_err(|e| e.to_string())?);
    }
    if let Some(p) = compiled.not_protocol {
        matches.push(Match::ne(Field::L4Proto, Value::Proto(l4(p))).map_err(|e| e.to_string())?);
    }
    for (icmp, negated) in [(compiled.icmp, false), (compiled.not_icmp, true)] {
        let Some(icmp) = icmp else { continue };
        if icmp.code.is_some() {
            return Err("ICMP codes are not rendered yet".into());
        }
        let Some(kind) = icmp_type(icmp.icmp_type) else {
            return Err(format!("ICMP type {} is not rendered yet", icmp.icmp_type));
        };
        matches.push(
            Match::new(
                vec![Field::IcmpType],
                negated,
                Operand::Value(Value::Icmp(kind)),
            )
            .map_err(|e| e.to_string())?,
        );
    }
    for (entity, addr_field, end) in [
        (&compiled.source, Field::IpSaddr, PortEnd::Sport),
        (&compiled.destination, Field::IpDaddr, PortEnd::Dport),
    ] {
        if !entity_matches(
            entity,
            addr_field,
            end,
            compiled.protocol,
            &mut matches,
            set_ids,
        )? {
            return Ok(None);
        }
    }
    Ok(Some(matches))
}

/// Adds one side's matches; false when the side can match no IPv4 address.
fn entity_matches(
    entity: &CompiledEntity,
    addr_field: Field,
    end: PortEnd,
    protocol: Option<u8>,
    matches: &mut Vec<Match>,
    set_ids: &mut BTreeSet<SetId>,
) -> Result<bool, String> {
    let v4 = |nets: &[IpNet]| -> Vec<Value> {
        nets.iter()
            .filter(|n| matches!(n, IpNet::V4(_)))
            .map(|n| Value::net(n.trunc()))
            .collect()
    };
    if !entity.nets.is_empty() {
        let nets = v4(&entity.nets);
        if nets.is_empty() {
            return Ok(false);
        }
        matches.push(Match::in_set(addr_field, false, nets).map_err(|e| e.to_string())?);
    }
    let not_nets = v4(&entity.not_nets);
    if !not_nets.is_empty() {
        matches.push(Match::in_set(addr_field, true, not_nets).map_err(|e| e.to_string())?);
    }
    if let Some(id) = &entity.selector {
        set_ids.insert(id.clone());
        matches.push(Match::in_named(addr_field, false, &set_name(id)).map_err(|e| e.to_string())?);
    }
    if let Some(id) = &entity.not_selector {
        set_ids.insert(id.clone());
        matches.push(Match::in_named(addr_field, true, &set_name(id)).map_err(|e| e.to_string())?);
    }
    if !entity.named_ports.is_empty() || !entity.not_named_ports.is_empty() {
        return Err("named ports are not rendered yet".into());
    }
    for (ranges, negated) in [(&entity.ports, false), (&entity.not_ports, true)] {
        if ranges.is_empty() {
            continue;
        }
        let proto = port_proto(protocol)
            .ok_or_else(|| "ports need protocol TCP, UDP or SCTP".to_string())?;
        let values = ranges
            .iter()
            .map(|r| Value::port_range(r.min, r.max))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        matches.push(
            Match::in_set(Field::Port(proto, end), negated, values).map_err(|e| e.to_string())?,
        );
    }
    Ok(true)
}

/// A selector set with its IPv4 members.
fn selector_set(model: &PolicyModel, id: &SetId, problems: &mut Vec<String>) -> Set {
    let mut nets: Vec<ipnet::Ipv4Net> = Vec::new();
    for element in model.set_elements(id).unwrap_or_default() {
        match element {
            SetElement::Net(IpNet::V4(net)) => nets.push(net.trunc()),
            SetElement::Net(IpNet::V6(_)) => {}
            SetElement::IpPort { .. } => problems.push(format!(
                "set {}: named-port members are not rendered yet",
                id.as_str()
            )),
        }
    }
    // Members may overlap (a network set holding a pod's address): merged, as an interval set needs.
    let elements: Vec<Key> = ipnet::Ipv4Net::aggregate(&nets)
        .into_iter()
        .map(|n| Key::one(Value::net(IpNet::V4(n))))
        .collect();
    Set::new(
        set_name(id),
        vec![DataType::Ipv4Addr],
        SetFlags {
            interval: true,
            ..SetFlags::default()
        },
    )
    .and_then(|set| set.with_elements(elements))
    .expect("IPv4 prefixes fit an interval set of ipv4_addr")
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_api::documents::decode_documents;

    fn model(yaml: &str) -> PolicyModel {
        let mut model = PolicyModel::new(Some("n1".to_string()));
        for doc in decode_documents(yaml).expect("parses") {
            let mut resource = doc.resource.expect("valid");
            resource.apply_defaults();
            model.upsert(&resource).expect("taken");
        }
        model
    }

    const WEB: &str = "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-web-eth0, namespace: default, labels: {app: web}}
spec: {node: n1, orchestrator: k8s, pod: web, endpoint: eth0, interfaceName: caliweb, ipNetworks: [198.19.9.2/32], ports: [{name: http, protocol: TCP, port: 8080}]}
";

    fn chain<'a>(nft: &'a PolicyNft, chain_name: &str) -> &'a Chain {
        nft.chains
            .iter()
            .find(|c| c.name.as_str() == chain_name)
            .unwrap_or_else(|| panic!("no chain {chain_name}"))
    }

    #[test]
    fn rules_that_cannot_be_rendered_exactly_never_let_more_through() {
        let nft = render(&model(&format!(
            "{WEB}---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: web, namespace: default}}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {{ports: [http]}}
  - action: Deny
    protocol: TCP
    destination: {{ports: [http]}}
  - action: Allow
    protocol: TCP
    destination: {{ports: [80]}}
"
        )));
        let rules = &chain(&nft, "cali-pi-np/default/web").rules;
        let rendered: Vec<String> = rules.iter().map(Rule::render).collect();
        assert_eq!(rendered.len(), 2, "{rendered:#?}");
        // The named-port Allow is left out; the named-port Deny drops everything.
        assert_eq!(
            rendered[0],
            "drop comment \"NetworkPolicy default/web ingress rule 1 (not rendered exactly: drops all)\""
        );
        assert!(rendered[1].contains("tcp dport 80"), "{}", rendered[1]);
        assert_eq!(nft.problems.len(), 2, "{:?}", nft.problems);
        assert!(
            nft.problems[0].contains("rule 0: named ports"),
            "{:?}",
            nft.problems
        );
    }

    #[test]
    fn a_tier_with_default_action_pass_does_not_drop_at_its_end() {
        let nft = render(&model(&format!(
            "{WEB}---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {{name: security}}
spec: {{order: 100, defaultAction: Pass}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: security.watch}}
spec:
  tier: security
  selector: all()
  ingress: [{{action: Log}}]
"
        )));
        let rendered: Vec<String> = chain(&nft, "cali-tw-caliweb")
            .rules
            .iter()
            .map(Rule::render)
            .collect();
        let text = rendered.join("\n");
        assert!(text.contains("Start of tier security"), "{text}");
        assert!(text.contains("jump cali-pi-gnp/security.watch"), "{text}");
        assert!(!text.contains("End of tier security"), "{text}");
        assert!(
            rendered
                .last()
                .is_some_and(|r| r.contains("Drop if no profiles matched")),
            "{text}"
        );
    }
}
