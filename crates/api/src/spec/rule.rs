//! Policy rules shared by NetworkPolicy, GlobalNetworkPolicy, StagedNetworkPolicy and Profile:
//! match criteria, actions, protocols and ports, with Calico's rule validation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{FieldErrors, index, join};
use crate::validate;

/// At most this many rules per direction in one policy or profile.
pub const MAX_RULES_PER_DIRECTION: usize = 1024;

/// What a rule does with the packets it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
    Log,
    Pass,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Log => "Log",
            Action::Pass => "Pass",
        })
    }
}

/// An IP protocol as written: a name (`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite`) or a number.
/// A numeric string (`"6"`) means the number but is kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Name(String),
    Number(u8),
}

/// Protocol names Calico accepts, with their IP protocol numbers.
const PROTOCOL_NAMES: [(&str, u8); 6] = [
    ("TCP", 6),
    ("UDP", 17),
    ("ICMP", 1),
    ("ICMPv6", 58),
    ("SCTP", 132),
    ("UDPLite", 136),
];

impl Protocol {
    pub fn tcp() -> Protocol {
        Protocol::Name("TCP".into())
    }

    /// The IP protocol number, if this is a known name or a number (or numeric string).
    pub fn number(&self) -> Option<u8> {
        match self {
            Protocol::Number(n) => Some(*n),
            Protocol::Name(s) => PROTOCOL_NAMES
                .iter()
                .find(|(name, _)| name == s)
                .map(|(_, n)| *n)
                .or_else(|| s.parse::<u8>().ok()),
        }
    }

    /// Only TCP, UDP and SCTP have ports Calico can match.
    pub fn supports_ports(&self) -> bool {
        matches!(self.number(), Some(6 | 17 | 132))
    }

    pub fn is_icmp(&self) -> bool {
        self.number() == Some(1)
    }

    pub fn is_icmpv6(&self) -> bool {
        self.number() == Some(58)
    }

    /// Why this protocol is invalid, if it is: numbers must be 1–255, names one of Calico's.
    pub fn problem(&self) -> Option<String> {
        match self.number() {
            Some(0) => Some("protocol number invalid: must be between 1 and 255".into()),
            Some(_) => None,
            None => Some(format!(
                "invalid protocol {self}: must be one of TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255"
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Name(s) => write!(f, "{s:?}"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Name(s) => serializer.serialize_str(s),
            Protocol::Number(n) => serializer.serialize_u8(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProtocolVisitor;
        impl Visitor<'_> for ProtocolVisitor {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol name or a number between 1 and 255")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                u8::try_from(v)
                    .map(Protocol::Number)
                    .map_err(|_| E::custom(format!("protocol number {v} is out of range 1-255")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("protocol number {v} is out of range 1-255")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                Ok(Protocol::Name(v.to_string()))
            }
        }
        deserializer.deserialize_any(ProtocolVisitor)
    }
}

/// A port match as written: a number (`80`), a range or numeric string (`"8080:8090"`, `"80"`), or the
/// name of a named port (`"http"`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    Number(u16),
    Range { min: u16, max: u16 },
    Named(String),
}

impl Port {
    /// The numeric range matched, or `None` for a named port.
    pub fn bounds(&self) -> Option<(u16, u16)> {
        match self {
            Port::Number(n) => Some((*n, *n)),
            Port::Range { min, max } => Some((*min, *max)),
            Port::Named(_) => None,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Port::Named(n) => Some(n),
            _ => None,
        }
    }

    /// Parse the string form: `"80"`, `"80:90"` or a port name (`[a-zA-Z0-9_.-]{1,128}`).
    pub fn parse(s: &str) -> Result<Port, String> {
        let number = |part: &str| {
            part.parse::<u16>().map_err(|_| {
                format!("invalid port {s:?}: port numbers must be between 1 and 65535")
            })
        };
        let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|c| c.is_ascii_digit());
        if all_digits(s) {
            let n = number(s)?;
            return Ok(Port::Range { min: n, max: n });
        }
        if let Some((lo, hi)) = s.split_once(':')
            && all_digits(lo)
            && all_digits(hi)
        {
            return Ok(Port::Range {
                min: number(lo)?,
                max: number(hi)?,
            });
        }
        let name_ok = (1..=128).contains(&s.len())
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if name_ok {
            Ok(Port::Named(s.to_string()))
        } else {
            Err(format!(
                "invalid port {s:?}: must be a number, a range \"min:max\" or a port name"
            ))
        }
    }

    /// Why this port is invalid, if it is (number 0, or a reversed range).
    pub fn problem(&self) -> Option<String> {
        let (min, max) = self.bounds()?;
        if min == 0 || max == 0 {
            Some("port number must be between 1 and 65535".into())
        } else if min > max {
            Some(format!(
                "port range invalid: minimum {min} is greater than maximum {max}"
            ))
        } else {
            None
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Number(n) => write!(f, "{n}"),
            Port::Range { min, max } if min == max => write!(f, "{min}"),
            Port::Range { min, max } => write!(f, "{min}:{max}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Number(n) => serializer.serialize_u16(*n),
            other => serializer.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number, a \"min:max\" range or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::Number)
                    .map_err(|_| E::custom(format!("port number {v} is out of range 1-65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("port number {v} is out of range 1-65535")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Port::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// ICMP type and code to match (`icmp` / `notICMP`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ICMPFields {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

impl ICMPFields {
    fn validate(&self, path: &str, errs: &mut FieldErrors) {
        if let Some(t) = self.icmp_type
            && !(0..=254).contains(&t)
        {
            errs.push(join(path, "type"), "ICMP type must be between 0 and 254");
        }
        if let Some(c) = self.code {
            if !(0..=255).contains(&c) {
                errs.push(join(path, "code"), "ICMP code must be between 0 and 255");
            }
            if self.icmp_type.is_none() {
                errs.push(
                    join(path, "code"),
                    "ICMP code specified without an ICMP type",
                );
            }
        }
    }
}

/// Match on the service account a pod runs as (names and/or a selector over its labels, AND-ed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Match on the endpoints of a Kubernetes Service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One HTTP path match: exactly one of `exact` or `prefix`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HTTPPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// HTTP request match (application layer policy): methods and paths, AND-ed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HTTPMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HTTPPath>,
}

impl HTTPMatch {
    fn validate(&self, path: &str, errs: &mut FieldErrors) {
        let distinct: BTreeSet<&String> = self.methods.iter().collect();
        if distinct.len() != self.methods.len() {
            errs.push(
                join(path, "methods"),
                format!("invalid methods (duplicates): {:?}", self.methods),
            );
        }
        for (i, p) in self.paths.iter().enumerate() {
            let item = index(&join(path, "paths"), i);
            let value = match (&p.exact, &p.prefix) {
                (Some(_), Some(_)) => {
                    errs.push(
                        item,
                        "invalid path match: both 'exact' and 'prefix' are set",
                    );
                    continue;
                }
                (Some(v), None) | (None, Some(v)) if !v.is_empty() => v,
                _ => {
                    errs.push(
                        item,
                        "invalid path match: either 'exact' or 'prefix' must be set",
                    );
                    continue;
                }
            };
            if !value.starts_with('/') || value.contains(['?', ' ', '#']) {
                errs.push(
                    item,
                    format!("invalid path {value:?}: must start with '/' and not contain '?', '#' or spaces"),
                );
            }
        }
    }
}

/// Extra information attached to a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Match criteria for the source or the destination of a packet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

fn non_empty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.trim().is_empty())
}

impl EntityRule {
    /// True when nothing is set (serialised as absent).
    pub fn is_empty(&self) -> bool {
        self == &EntityRule::default()
    }

    fn validate(&self, path: &str, errs: &mut FieldErrors) {
        if let Some(sel) = &self.selector {
            let p = join(path, "selector");
            if sel.contains("global(") {
                errs.push(
                    p,
                    "global() can only be used in an EntityRule namespaceSelector",
                );
            } else {
                validate::selector(errs, &p, sel);
            }
        }
        if let Some(sel) = &self.not_selector {
            validate::selector(errs, &join(path, "notSelector"), sel);
        }
        if let Some(sel) = &self.namespace_selector {
            let p = join(path, "namespaceSelector");
            let compact: String = sel.chars().filter(|c| !c.is_whitespace()).collect();
            if sel.contains("global(") && compact != "global()" {
                errs.push(p, "global() cannot be combined with other selectors");
            } else {
                validate::selector(errs, &p, sel);
            }
        }
        if let Some(sa) = &self.service_accounts
            && let Some(sel) = &sa.selector
        {
            validate::selector(errs, &join(path, "serviceAccounts.selector"), sel);
        }
        for (field, ports) in [("ports", &self.ports), ("notPorts", &self.not_ports)] {
            for (i, port) in ports.iter().enumerate() {
                if let Some(problem) = port.problem() {
                    errs.push(index(&join(path, field), i), problem);
                }
            }
        }
        if let Some(svc) = &self.services {
            let p = join(path, "services");
            match svc.name.as_deref() {
                None | Some("") => {
                    errs.push(join(&p, "name"), "services must specify a service name")
                }
                Some(name) => validate::reference_name(errs, &join(&p, "name"), name),
            }
            if let Some(ns) = svc.namespace.as_deref().filter(|n| !n.is_empty()) {
                validate::reference_name(errs, &join(&p, "namespace"), ns);
            }
            if non_empty(&self.namespace_selector) {
                errs.push(
                    &p,
                    "cannot specify namespaceSelector and services on the same rule",
                );
            }
            if self.service_accounts.is_some() {
                errs.push(
                    &p,
                    "cannot specify serviceAccounts and services on the same rule",
                );
            }
            if non_empty(&self.selector) || non_empty(&self.not_selector) {
                errs.push(
                    &p,
                    "cannot specify selector/notSelector and services on the same rule",
                );
            }
            if !self.nets.is_empty() || !self.not_nets.is_empty() {
                errs.push(
                    &p,
                    "cannot specify nets/notNets and services on the same rule",
                );
            }
        }
    }
}

/// One policy rule: match criteria and an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<ICMPFields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    #[serde(rename = "notICMP", default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<ICMPFields>,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HTTPMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

impl Rule {
    /// A rule with just an action (matches everything).
    pub fn new(action: Action) -> Rule {
        Rule {
            action,
            ip_version: None,
            protocol: None,
            icmp: None,
            not_protocol: None,
            not_icmp: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
            http: None,
            metadata: None,
        }
    }
}

/// Which list a rule is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

/// What owns the rules: namespaced policy, global policy or a profile. Global policies need a
/// namespace on service matches, since service names are namespaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleScope {
    Namespaced,
    Global,
    Profile,
}

/// Validate a list of rules at `path` (e.g. `spec.ingress`).
pub fn validate_rules(
    rules: &[Rule],
    path: &str,
    direction: Direction,
    scope: RuleScope,
    errs: &mut FieldErrors,
) {
    if rules.len() > MAX_RULES_PER_DIRECTION {
        errs.push(
            path,
            format!(
                "too many rules: {} (at most {MAX_RULES_PER_DIRECTION} are allowed)",
                rules.len()
            ),
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        validate_rule(rule, &index(path, i), direction, scope, errs);
    }
}

const PORTS_NEED_PROTOCOL: &str = "ports are only valid with protocol TCP, UDP or SCTP";
const NUMERIC_PORTS_NEED_PROTOCOL: &str =
    "numeric ports and port ranges are only valid with protocol TCP, UDP or SCTP";

/// Validate one rule at `path` (e.g. `spec.ingress[0]`).
pub fn validate_rule(
    rule: &Rule,
    path: &str,
    direction: Direction,
    scope: RuleScope,
    errs: &mut FieldErrors,
) {
    if let Some(v) = rule.ip_version
        && v != 4
        && v != 6
    {
        errs.push(join(path, "ipVersion"), "ipVersion must be 4 or 6");
    }
    for (field, proto) in [
        ("protocol", &rule.protocol),
        ("notProtocol", &rule.not_protocol),
    ] {
        let Some(proto) = proto else { continue };
        let p = join(path, field);
        if let Some(problem) = proto.problem() {
            errs.push(&p, problem);
        } else if proto.is_icmp() && rule.ip_version.is_some_and(|v| v != 4) {
            errs.push(&p, "protocol ICMP requires ipVersion 4");
        } else if proto.is_icmpv6() && rule.ip_version.is_some_and(|v| v != 6) {
            errs.push(&p, "protocol ICMPv6 requires ipVersion 6");
        }
    }
    let protocol_is_icmp = rule
        .protocol
        .as_ref()
        .is_some_and(|p| p.is_icmp() || p.is_icmpv6());
    for (field, icmp) in [("icmp", &rule.icmp), ("notICMP", &rule.not_icmp)] {
        let Some(icmp) = icmp else { continue };
        let p = join(path, field);
        if !protocol_is_icmp {
            errs.push(
                &p,
                format!("{field} requires protocol to be ICMP or ICMPv6"),
            );
        }
        icmp.validate(&p, errs);
    }

    for (side, entity) in [("source", &rule.source), ("destination", &rule.destination)] {
        let side_path = join(path, side);
        entity.validate(&side_path, errs);
        for (field, ports) in [("ports", &entity.ports), ("notPorts", &entity.not_ports)] {
            for (i, port) in ports.iter().enumerate() {
                let message = match &rule.protocol {
                    None if port.name().is_none() => NUMERIC_PORTS_NEED_PROTOCOL,
                    Some(proto) if !proto.supports_ports() => PORTS_NEED_PROTOCOL,
                    _ => continue,
                };
                errs.push(index(&join(&side_path, field), i), message);
            }
        }
    }
    validate_rule_nets(rule, path, errs);

    if rule.destination.services.is_some()
        && (!rule.destination.ports.is_empty() || !rule.destination.not_ports.is_empty())
    {
        errs.push(
            join(path, "destination.services"),
            "ports and notPorts cannot be specified with services",
        );
    }
    if scope != RuleScope::Profile {
        match direction {
            Direction::Egress if rule.source.services.is_some() => errs.push(
                join(path, "source.services"),
                "services are not allowed in egress rule source",
            ),
            Direction::Ingress if rule.destination.services.is_some() => errs.push(
                join(path, "destination.services"),
                "services are not allowed in ingress rule destination",
            ),
            _ => {}
        }
    }
    if scope == RuleScope::Global {
        let (side, services) = match direction {
            Direction::Ingress => ("source", &rule.source.services),
            Direction::Egress => ("destination", &rule.destination.services),
        };
        if services
            .as_ref()
            .is_some_and(|s| s.namespace.as_deref().unwrap_or("").is_empty())
        {
            errs.push(
                join(path, &format!("{side}.services.namespace")),
                "must specify a namespace (service names are namespaced)",
            );
        }
    }

    if let Some(http) = &rule.http {
        let p = join(path, "http");
        if rule.action != Action::Allow {
            errs.push(&p, "HTTP match is only valid on Allow rules");
        }
        if rule
            .protocol
            .as_ref()
            .is_some_and(|proto| proto.number() != Some(6))
        {
            errs.push(&p, "rules with HTTP match must have protocol TCP or unset");
        }
        if direction == Direction::Egress {
            errs.push(&p, "HTTP match is not allowed in egress rules");
        }
        http.validate(&p, errs);
    }
}

/// CIDR checks across a rule's four net lists: each must parse (masked), the family must agree with
/// `ipVersion`, one rule may not mix IPv4 and IPv6, and a negated catch-all matches nothing.
fn validate_rule_nets(rule: &Rule, path: &str, errs: &mut FieldErrors) {
    let (mut seen_v4, mut seen_v6) = (false, false);
    let fields = [
        ("source.nets", &rule.source.nets, false),
        ("source.notNets", &rule.source.not_nets, true),
        ("destination.nets", &rule.destination.nets, false),
        ("destination.notNets", &rule.destination.not_nets, true),
    ];
    for (field, nets, negated) in fields {
        let field_path = join(path, field);
        let (mut v4, mut v6) = (false, false);
        for (i, n) in nets.iter().enumerate() {
            let item = index(&field_path, i);
            let Some(net) = validate::masked_cidr(errs, &item, n) else {
                continue;
            };
            match net {
                ipnet::IpNet::V4(_) => v4 = true,
                ipnet::IpNet::V6(_) => v6 = true,
            }
            if negated && net.prefix_len() == 0 {
                errs.push(
                    item,
                    "catch-all CIDR in negation creates a logical contradiction (matches no traffic)",
                );
            }
        }
        if let Some(version) = rule.ip_version
            && ((v4 && version != 4) || (v6 && version != 6))
        {
            errs.push(&field_path, "rule IP version doesn't match CIDR version");
        }
        // Mixing families within this field, or with an earlier field.
        if (v4 || seen_v4) && (v6 || seen_v6) && (v4 || v6) {
            errs.push(&field_path, "rule contains both IPv4 and IPv6 CIDRs");
        }
        seen_v4 |= v4;
        seen_v6 |= v6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_forms() {
        let p: Protocol = serde_json::from_value(serde_json::json!("TCP")).unwrap();
        assert!(p.supports_ports());
        let p: Protocol = serde_json::from_value(serde_json::json!(17)).unwrap();
        assert!(p.supports_ports());
        assert_eq!(serde_json::to_value(&p).unwrap(), serde_json::json!(17));
        let p: Protocol = serde_json::from_value(serde_json::json!("58")).unwrap();
        assert!(p.is_icmpv6());
        assert_eq!(serde_json::to_value(&p).unwrap(), serde_json::json!("58"));
        assert!(
            serde_json::from_value::<Protocol>(serde_json::json!(256)).is_err(),
            "protocol numbers are 8 bit"
        );
        assert!(Protocol::Name("tcp".into()).problem().is_some());
        assert!(Protocol::Number(0).problem().is_some());
        assert!(Protocol::Name("UDPLite".into()).problem().is_none());
    }

    #[test]
    fn port_forms() {
        let ports: Vec<Port> =
            serde_json::from_value(serde_json::json!([80, "8080:8090", "http", "443"])).unwrap();
        assert_eq!(ports[0], Port::Number(80));
        assert_eq!(
            ports[1],
            Port::Range {
                min: 8080,
                max: 8090
            }
        );
        assert_eq!(ports[2].name(), Some("http"));
        assert_eq!(ports[3].bounds(), Some((443, 443)));
        assert_eq!(
            serde_json::to_value(&ports).unwrap(),
            serde_json::json!([80, "8080:8090", "http", "443"])
        );
        assert!(serde_json::from_value::<Port>(serde_json::json!(70000)).is_err());
        assert!(serde_json::from_value::<Port>(serde_json::json!("1:70000")).is_err());
        assert!(serde_json::from_value::<Port>(serde_json::json!("bad name!")).is_err());
        assert!(Port::Number(0).problem().is_some());
        assert!(Port::Range { min: 90, max: 80 }.problem().is_some());
    }
}
