//! Policies and profiles compiled to a rule form independent of the kernel: numbers instead of
//! names, parsed nets, and selectors turned into references to label-index sets.

use std::net::IpAddr;

use calico_api::spec::policy::{PolicyType, default_types};
use calico_api::spec::profile::ProfileSpec;
use calico_api::spec::rule::{Action, EntityRule, ICMPFields, Port, Protocol, Rule};
use calico_api::{Resource, Selector, Spec};
use ipnet::IpNet;

use crate::index::{SetId, SetSpec};
use crate::selectors::{
    NAMESPACE_LABEL_PREFIX, PrefixMode, SERVICE_ACCOUNT_LABEL_PREFIX, and_all, in_namespace,
    parse_optional, prefixed, service_account_named,
};

/// Why a policy or profile cannot be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// Calico accepts this, but enforcing it needs something calico-rs does not have. Refused
    /// rather than ignored, so a rule never silently matches more than it says.
    #[error("{owner}: rule {rule_index} ({field}) is not supported: {why}")]
    Unsupported {
        owner: String,
        rule_index: usize,
        field: String,
        why: String,
    },
    /// The resource is malformed in a way validation should have refused.
    #[error("{owner}: {field}: {why}")]
    Invalid {
        owner: String,
        field: String,
        why: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn of(ip: IpAddr) -> IpVersion {
        match ip {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }
}

/// An inclusive port range; a single port has `min == max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }
}

/// ICMP type, and optionally code, to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

/// One side (source or destination) of a compiled rule. Empty lists and `None` match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledEntity {
    /// The address is in one of these.
    pub nets: Vec<IpNet>,
    /// The address is in none of these.
    pub not_nets: Vec<IpNet>,
    /// The address belongs to a member of this set (so addresses that are not Calico endpoints or
    /// network sets never match: `selector: "!has(x)"` is about Calico endpoints only).
    pub selector: Option<SetId>,
    /// The address belongs to no member of this set (so addresses unknown to Calico match).
    pub not_selector: Option<SetId>,
    /// The port is in one of `ports`, or `(address, protocol, port)` is in one of `named_ports`.
    pub ports: Vec<PortRange>,
    pub named_ports: Vec<SetId>,
    /// The port is in none of `not_ports` and in none of `not_named_ports`.
    pub not_ports: Vec<PortRange>,
    pub not_named_ports: Vec<SetId>,
}

/// A rule ready for a dataplane or for evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledRule {
    pub action: Action,
    pub ip_version: Option<IpVersion>,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub source: CompiledEntity,
    pub destination: CompiledEntity,
}

/// Compiled ingress and egress rules of a policy or profile, with every set they reference (one
/// entry per reference, so adding and removing them is symmetric).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledRules {
    pub ingress: Vec<CompiledRule>,
    pub egress: Vec<CompiledRule>,
    pub sets: Vec<SetSpec>,
}

/// A compiled policy: where it sits, what it selects, which directions it governs, its rules.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    pub tier: String,
    pub order: Option<f64>,
    /// The endpoints it applies to, namespace and service-account scoping included.
    pub selector: Selector,
    pub applies_to_ingress: bool,
    pub applies_to_egress: bool,
    /// `doNotTrack` or `preDNAT`: enforced outside the endpoint's normal (filter) chains.
    pub outside_filter_chains: bool,
    pub rules: CompiledRules,
}

/// Compiles a NetworkPolicy or GlobalNetworkPolicy. Other kinds are `Invalid`.
pub fn compile_policy(resource: &Resource) -> Result<CompiledPolicy, CompileError> {
    let owner = format!("{} {}", resource.kind().name(), display_name(resource));
    let namespace = resource.namespace().unwrap_or("default");
    let invalid = |field: &str, why: String| CompileError::Invalid {
        owner: owner.clone(),
        field: field.to_string(),
        why,
    };
    let selector_field = |field: &str, text: Option<&str>| {
        parse_optional(text).map_err(|e| invalid(field, format!("invalid selector: {e}")))
    };
    let mut parts: Vec<Selector> = Vec::new();
    match &resource.spec {
        Spec::NetworkPolicy(spec) => {
            parts.push(
                in_namespace(namespace)
                    .map_err(|e| invalid("metadata.namespace", e.to_string()))?,
            );
            parts.extend(selector_field("spec.selector", spec.selector.as_deref())?);
            if let Some(sa) = selector_field(
                "spec.serviceAccountSelector",
                spec.service_account_selector.as_deref(),
            )? {
                parts.push(
                    prefixed(&sa, SERVICE_ACCOUNT_LABEL_PREFIX, PrefixMode::Plain)
                        .map_err(|e| invalid("spec.serviceAccountSelector", e.to_string()))?,
                );
            }
            let rules = compile_rule_lists(&owner, Some(namespace), &spec.ingress, &spec.egress)?;
            let types = effective_types(&spec.types, &spec.ingress, &spec.egress);
            Ok(CompiledPolicy {
                tier: spec.tier_name().to_string(),
                order: spec.order,
                selector: conjunction(&parts).map_err(|e| invalid("spec.selector", e))?,
                applies_to_ingress: types.contains(&PolicyType::Ingress),
                applies_to_egress: types.contains(&PolicyType::Egress),
                outside_filter_chains: false,
                rules,
            })
        }
        Spec::GlobalNetworkPolicy(spec) => {
            parts.extend(selector_field("spec.selector", spec.selector.as_deref())?);
            if let Some(ns) =
                selector_field("spec.namespaceSelector", spec.namespace_selector.as_deref())?
            {
                parts.push(
                    prefixed(&ns, NAMESPACE_LABEL_PREFIX, PrefixMode::Namespace)
                        .map_err(|e| invalid("spec.namespaceSelector", e.to_string()))?,
                );
            }
            if let Some(sa) = selector_field(
                "spec.serviceAccountSelector",
                spec.service_account_selector.as_deref(),
            )? {
                parts.push(
                    prefixed(&sa, SERVICE_ACCOUNT_LABEL_PREFIX, PrefixMode::Plain)
                        .map_err(|e| invalid("spec.serviceAccountSelector", e.to_string()))?,
                );
            }
            let rules = compile_rule_lists(&owner, None, &spec.ingress, &spec.egress)?;
            let types = effective_types(&spec.types, &spec.ingress, &spec.egress);
            Ok(CompiledPolicy {
                tier: spec.tier_name().to_string(),
                order: spec.order,
                selector: conjunction(&parts).map_err(|e| invalid("spec.selector", e))?,
                applies_to_ingress: types.contains(&PolicyType::Ingress),
                applies_to_egress: types.contains(&PolicyType::Egress),
                outside_filter_chains: spec.do_not_track() || spec.pre_dnat(),
                rules,
            })
        }
        other => Err(invalid(
            "kind",
            format!("{} is not an enforced policy kind", other.kind().name()),
        )),
    }
}

/// Compiles a profile's rules (profiles are not namespaced: their selectors span everything).
pub fn compile_profile(name: &str, spec: &ProfileSpec) -> Result<CompiledRules, CompileError> {
    compile_rule_lists(
        &format!("Profile {name}"),
        None,
        &spec.ingress,
        &spec.egress,
    )
}

fn display_name(resource: &Resource) -> String {
    match resource.namespace() {
        Some(ns) => format!("{ns}/{}", resource.name()),
        None => resource.name().to_string(),
    }
}

/// Calico's default when `types` is empty: see [`default_types`].
fn effective_types(types: &[PolicyType], ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    if types.is_empty() {
        default_types(ingress, egress)
    } else {
        types.to_vec()
    }
}

fn conjunction(parts: &[Selector]) -> Result<Selector, String> {
    and_all(parts)
        .map(Option::unwrap_or_default)
        .map_err(|e| e.to_string())
}

fn compile_rule_lists(
    owner: &str,
    namespace: Option<&str>,
    ingress: &[Rule],
    egress: &[Rule],
) -> Result<CompiledRules, CompileError> {
    let mut sets = Vec::new();
    let mut compile_list =
        |rules: &[Rule], path: &str| -> Result<Vec<CompiledRule>, CompileError> {
            rules
                .iter()
                .enumerate()
                .map(|(index, rule)| {
                    RuleCompiler {
                        owner,
                        namespace,
                        rule_index: index,
                        path: format!("{path}[{index}]"),
                        sets: &mut sets,
                    }
                    .compile(rule)
                })
                .collect()
        };
    let ingress = compile_list(ingress, "spec.ingress")?;
    let egress = compile_list(egress, "spec.egress")?;
    Ok(CompiledRules {
        ingress,
        egress,
        sets,
    })
}

struct RuleCompiler<'a> {
    owner: &'a str,
    namespace: Option<&'a str>,
    rule_index: usize,
    path: String,
    sets: &'a mut Vec<SetSpec>,
}

impl RuleCompiler<'_> {
    fn invalid(&self, field: &str, why: impl Into<String>) -> CompileError {
        CompileError::Invalid {
            owner: self.owner.to_string(),
            field: format!("{}.{field}", self.path),
            why: why.into(),
        }
    }

    fn unsupported(&self, field: &str, why: &str) -> CompileError {
        CompileError::Unsupported {
            owner: self.owner.to_string(),
            rule_index: self.rule_index,
            field: format!("{}.{field}", self.path),
            why: why.to_string(),
        }
    }

    fn compile(mut self, rule: &Rule) -> Result<CompiledRule, CompileError> {
        if rule.http.is_some() {
            return Err(self.unsupported(
                "http",
                "HTTP matches need Calico's application layer policy (an L7 proxy), which calico-rs does not have",
            ));
        }
        for (side, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
            if entity.services.is_some() {
                return Err(self.unsupported(
                    &format!("{side}.services"),
                    "service matches need the Kubernetes API's Service endpoints, which calico-rs does not watch",
                ));
            }
        }
        let ip_version = match rule.ip_version {
            None => None,
            Some(4) => Some(IpVersion::V4),
            Some(6) => Some(IpVersion::V6),
            Some(other) => return Err(self.invalid("ipVersion", format!("{other} is not 4 or 6"))),
        };
        let protocol = self.protocol("protocol", rule.protocol.as_ref())?;
        let not_protocol = self.protocol("notProtocol", rule.not_protocol.as_ref())?;
        let icmp = self.icmp("icmp", rule.icmp.as_ref())?;
        let not_icmp = self.icmp("notICMP", rule.not_icmp.as_ref())?;
        let source = self.entity("source", &rule.source, protocol)?;
        let destination = self.entity("destination", &rule.destination, protocol)?;
        Ok(CompiledRule {
            action: rule.action,
            ip_version,
            protocol,
            not_protocol,
            icmp,
            not_icmp,
            source,
            destination,
        })
    }

    fn protocol(
        &self,
        field: &str,
        protocol: Option<&Protocol>,
    ) -> Result<Option<u8>, CompileError> {
        protocol
            .map(|p| {
                p.number()
                    .filter(|n| *n != 0)
                    .ok_or_else(|| self.invalid(field, format!("unknown protocol {p}")))
            })
            .transpose()
    }

    fn icmp(
        &self,
        field: &str,
        icmp: Option<&ICMPFields>,
    ) -> Result<Option<IcmpMatch>, CompileError> {
        let Some(icmp) = icmp else { return Ok(None) };
        let Some(icmp_type) = icmp.icmp_type else {
            // No type means no ICMP constraint at all (a code alone is refused by validation).
            return Ok(None);
        };
        let icmp_type = u8::try_from(icmp_type)
            .map_err(|_| self.invalid(field, format!("ICMP type {icmp_type} out of range")))?;
        let code = icmp
            .code
            .map(|code| {
                u8::try_from(code)
                    .map_err(|_| self.invalid(field, format!("ICMP code {code} out of range")))
            })
            .transpose()?;
        Ok(Some(IcmpMatch { icmp_type, code }))
    }

    fn entity(
        &mut self,
        side: &str,
        entity: &EntityRule,
        protocol: Option<u8>,
    ) -> Result<CompiledEntity, CompileError> {
        let nets = self.nets(&format!("{side}.nets"), &entity.nets)?;
        let not_nets = self.nets(&format!("{side}.notNets"), &entity.not_nets)?;
        let selector = self.entity_selector(side, entity)?;
        let not_selector = self
            .selector(
                &format!("{side}.notSelector"),
                entity.not_selector.as_deref(),
            )?
            .map(|s| self.use_set(SetSpec::Selector(s)));
        let positive_selector = selector.clone();
        let selector_set = selector.map(|s| self.use_set(SetSpec::Selector(s)));
        let (ports, named_ports) = self.ports(
            &format!("{side}.ports"),
            &entity.ports,
            protocol,
            &positive_selector,
        )?;
        let (not_ports, not_named_ports) = self.ports(
            &format!("{side}.notPorts"),
            &entity.not_ports,
            protocol,
            &positive_selector,
        )?;
        Ok(CompiledEntity {
            nets,
            not_nets,
            selector: selector_set,
            not_selector,
            ports,
            named_ports,
            not_ports,
            not_named_ports,
        })
    }

    fn use_set(&mut self, spec: SetSpec) -> SetId {
        let id = spec.id();
        self.sets.push(spec);
        id
    }

    fn selector(&self, field: &str, text: Option<&str>) -> Result<Option<Selector>, CompileError> {
        parse_optional(text).map_err(|e| self.invalid(field, format!("invalid selector: {e}")))
    }

    /// The selector of the addresses a side matches, as Calico scopes it: the namespace selector
    /// (or, in a namespaced policy, the policy's own namespace) AND the service-account match AND
    /// the selector. The namespace scope only applies when the side selects anything at all.
    fn entity_selector(
        &self,
        side: &str,
        entity: &EntityRule,
    ) -> Result<Option<Selector>, CompileError> {
        let ns_field = format!("{side}.namespaceSelector");
        let namespace_selector = self.selector(&ns_field, entity.namespace_selector.as_deref())?;
        let namespace_scope = match (&namespace_selector, self.namespace) {
            (Some(ns), _) => Some(
                prefixed(ns, NAMESPACE_LABEL_PREFIX, PrefixMode::Namespace)
                    .map_err(|e| self.invalid(&ns_field, e.to_string()))?,
            ),
            (None, Some(namespace)) => {
                Some(in_namespace(namespace).map_err(|e| self.invalid(&ns_field, e.to_string()))?)
            }
            (None, None) => None,
        };
        let mut parts = Vec::new();
        if let Some(accounts) = &entity.service_accounts {
            let sa_field = format!("{side}.serviceAccounts");
            if let Some(sa) = self.selector(&sa_field, accounts.selector.as_deref())? {
                parts.push(
                    prefixed(&sa, SERVICE_ACCOUNT_LABEL_PREFIX, PrefixMode::Plain)
                        .map_err(|e| self.invalid(&sa_field, e.to_string()))?,
                );
            }
            if !accounts.names.is_empty() {
                parts.push(
                    service_account_named(&accounts.names)
                        .map_err(|e| self.invalid(&sa_field, e.to_string()))?,
                );
            }
        }
        parts.extend(self.selector(&format!("{side}.selector"), entity.selector.as_deref())?);
        let selects_something = !parts.is_empty()
            || parse_optional(entity.not_selector.as_deref()).is_ok_and(|s| s.is_some())
            || namespace_selector.is_some();
        if selects_something && let Some(scope) = namespace_scope {
            parts.insert(0, scope);
        }
        and_all(&parts).map_err(|e| self.invalid(&format!("{side}.selector"), e.to_string()))
    }

    fn nets(&self, field: &str, nets: &[String]) -> Result<Vec<IpNet>, CompileError> {
        nets.iter()
            .map(|text| {
                parse_net(text).ok_or_else(|| {
                    self.invalid(field, format!("{text:?} is not an address or CIDR"))
                })
            })
            .collect()
    }

    fn ports(
        &mut self,
        field: &str,
        ports: &[Port],
        protocol: Option<u8>,
        selector: &Option<Selector>,
    ) -> Result<(Vec<PortRange>, Vec<SetId>), CompileError> {
        let mut ranges = Vec::new();
        let mut named = Vec::new();
        for port in ports {
            match port {
                Port::Named(name) => {
                    let Some(protocol) = protocol.filter(|p| matches!(p, 6 | 17 | 132)) else {
                        return Err(self.invalid(
                            field,
                            format!("named port {name:?} needs protocol TCP, UDP or SCTP"),
                        ));
                    };
                    // Resolved on the endpoints the same side selects (all of them if none).
                    named.push(self.use_set(SetSpec::NamedPort {
                        selector: selector.clone().unwrap_or_default(),
                        protocol,
                        port_name: name.clone(),
                    }));
                }
                _ => {
                    let (min, max) = port.bounds().unwrap_or((0, 0));
                    if let Some(problem) = port.problem() {
                        return Err(self.invalid(field, problem));
                    }
                    ranges.push(PortRange { min, max });
                }
            }
        }
        Ok((ranges, named))
    }
}

/// An address (as a host net) or a CIDR, masked to its network.
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}
