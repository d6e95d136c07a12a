//! Validated names and text, and the typed values that appear in matches, set elements and map data.
//!
//! Constructors put values into the canonical form nft lists them in (a full-length prefix is an
//! address, a one-port range is a port, protocol 6 is `tcp`), so what we render and what we read back
//! compare equal.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// Why a name, text or value was refused at construction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidError {
    #[error("{what} {value:?}: {reason}")]
    Name {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{what} {value:?} is {len} bytes; at most {max} allowed")]
    TooLong {
        what: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    #[error("port range {low}-{high} is empty")]
    PortRange { low: u16, high: u16 },
    #[error("{0}")]
    Type(String),
    #[error("rule: {0}")]
    Rule(String),
    #[error("table: {0}")]
    Table(String),
}

/// Longest table, chain, set or map name the kernel stores (NFT_NAME_MAXLEN less the NUL).
pub const MAX_NAME_LEN: usize = 255;
/// Longest rule comment nft accepts.
pub const MAX_COMMENT_LEN: usize = 128;
/// Longest log prefix the kernel keeps (NF_LOG_PREFIXLEN less the NUL).
pub const MAX_LOG_PREFIX_LEN: usize = 127;
/// Longest interface name (IFNAMSIZ less the NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// Words nft 1.0 reads as keywords where a table, chain, set or map name stands, so it refuses them
/// as names (nft has no quoting for names). Checked against nft by a test; not every keyword of every
/// nft version, so names with a `-` (as Calico's `cali-…`) are the safe choice.
pub const RESERVED_WORDS: &[&str] = &[
    "accept",
    "add",
    "ah",
    "all",
    "and",
    "arp",
    "auto-merge",
    "bridge",
    "cgroup",
    "chain",
    "comment",
    "comp",
    "constant",
    "continue",
    "counter",
    "cpu",
    "create",
    "ct",
    "day",
    "dccp",
    "define",
    "delete",
    "describe",
    "device",
    "devices",
    "dnat",
    "drop",
    "dst",
    "dup",
    "dynamic",
    "ecn",
    "element",
    "elements",
    "esp",
    "ether",
    "expires",
    "export",
    "exthdr",
    "fib",
    "flags",
    "flow",
    "flowtable",
    "flush",
    "frag",
    "fwd",
    "gc-interval",
    "get",
    "goto",
    "handle",
    "hbh",
    "hook",
    "hour",
    "ibriport",
    "ibrname",
    "icmp",
    "icmpv6",
    "igmp",
    "iif",
    "iifgroup",
    "iifname",
    "iiftype",
    "import",
    "include",
    "index",
    "inet",
    "insert",
    "interval",
    "ip",
    "ip6",
    "ipsec",
    "jhash",
    "jump",
    "limit",
    "list",
    "log",
    "map",
    "mark",
    "masquerade",
    "meta",
    "meter",
    "mh",
    "monitor",
    "netdev",
    "nftrace",
    "not",
    "notrack",
    "numgen",
    "obriport",
    "obrname",
    "offload",
    "oif",
    "oifgroup",
    "oifname",
    "oiftype",
    "or",
    "osf",
    "pkttype",
    "policy",
    "position",
    "priority",
    "queue",
    "quota",
    "random",
    "redefine",
    "redirect",
    "reject",
    "rename",
    "replace",
    "reset",
    "return",
    "rt",
    "rt0",
    "rt2",
    "rtclassid",
    "rule",
    "ruleset",
    "sctp",
    "secmark",
    "set",
    "size",
    "skgid",
    "skuid",
    "snat",
    "srh",
    "symhash",
    "synproxy",
    "table",
    "tcp",
    "th",
    "time",
    "timeout",
    "tproxy",
    "type",
    "typeof",
    "udp",
    "udplite",
    "undefine",
    "update",
    "vlan",
    "xor",
    "xt",
];

/// A table, chain, set or map name: an ASCII letter, then letters, digits, `_`, `-`, `.` or `/`, as
/// nft's scanner reads an unquoted identifier.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn new(name: &str) -> Result<Name, InvalidError> {
        let bad = |reason| InvalidError::Name {
            what: "name",
            value: name.to_string(),
            reason,
        };
        if name.len() > MAX_NAME_LEN {
            return Err(InvalidError::TooLong {
                what: "name",
                value: name.to_string(),
                len: name.len(),
                max: MAX_NAME_LEN,
            });
        }
        let mut chars = name.chars();
        match chars.next() {
            None => return Err(bad("empty")),
            Some(first) if !first.is_ascii_alphabetic() => {
                return Err(bad("must start with an ASCII letter"));
            }
            Some(_) => {}
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')) {
            return Err(bad(
                "only ASCII letters, digits, '_', '-', '.' and '/' are allowed",
            ));
        }
        if RESERVED_WORDS.contains(&name) {
            return Err(bad("an nft keyword, which nft cannot read as a name"));
        }
        Ok(Name(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text rendered inside double quotes (a comment or a log prefix): nft has no escape for `"`, and
/// control characters and `\` do not survive its scanner, so they are refused.
fn quoted_text(what: &'static str, text: &str, max: usize) -> Result<String, InvalidError> {
    if text.len() > max {
        return Err(InvalidError::TooLong {
            what,
            value: text.to_string(),
            len: text.len(),
            max,
        });
    }
    if let Some(reason) = text.chars().find_map(|c| match c {
        '"' => Some("'\"' cannot be quoted for nft"),
        '\\' => Some("'\\' is not allowed"),
        c if c.is_control() => Some("control characters are not allowed"),
        _ => None,
    }) {
        return Err(InvalidError::Name {
            what,
            value: text.to_string(),
            reason,
        });
    }
    Ok(text.to_string())
}

/// A rule comment (at most 128 bytes, no `"`, `\` or control characters).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Comment(String);

impl Comment {
    pub fn new(text: &str) -> Result<Comment, InvalidError> {
        quoted_text("comment", text, MAX_COMMENT_LEN).map(Comment)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `log prefix` (at most 127 bytes, no `"`, `\` or control characters).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPrefix(String);

impl LogPrefix {
    pub fn new(text: &str) -> Result<LogPrefix, InvalidError> {
        quoted_text("log prefix", text, MAX_LOG_PREFIX_LEN).map(LogPrefix)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An interface name as the kernel allows it (1–15 bytes, no `/`, `:`, whitespace, quotes or `*`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ifname(String);

impl Ifname {
    pub fn new(name: &str) -> Result<Ifname, InvalidError> {
        let bad = |reason| InvalidError::Name {
            what: "interface name",
            value: name.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.len() > MAX_IFNAME_LEN {
            return Err(InvalidError::TooLong {
                what: "interface name",
                value: name.to_string(),
                len: name.len(),
                max: MAX_IFNAME_LEN,
            });
        }
        if name == "." || name == ".." {
            return Err(bad("not a valid interface name"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | ':' | '"' | '\\' | '*'))
        {
            return Err(bad(
                "only printable ASCII without '/', ':', '\"', '\\' or '*' is allowed",
            ));
        }
        Ok(Ifname(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The type of a set key, a map key or map data (nft's data type names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataType {
    Ipv4Addr,
    Ipv6Addr,
    Ifname,
    /// A transport port (`inet_service`).
    InetService,
    /// A transport protocol (`inet_proto`).
    InetProto,
    Mark,
    IcmpType,
    CtState,
}

impl DataType {
    pub fn nft_name(self) -> &'static str {
        match self {
            DataType::Ipv4Addr => "ipv4_addr",
            DataType::Ipv6Addr => "ipv6_addr",
            DataType::Ifname => "ifname",
            DataType::InetService => "inet_service",
            DataType::InetProto => "inet_proto",
            DataType::Mark => "mark",
            DataType::IcmpType => "icmp_type",
            DataType::CtState => "ct_state",
        }
    }

    pub fn from_nft_name(name: &str) -> Option<DataType> {
        [
            DataType::Ipv4Addr,
            DataType::Ipv6Addr,
            DataType::Ifname,
            DataType::InetService,
            DataType::InetProto,
            DataType::Mark,
            DataType::IcmpType,
            DataType::CtState,
        ]
        .into_iter()
        .find(|t| t.nft_name() == name)
    }
}

/// A transport protocol; the named ones are how nft lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Proto {
    Icmp,
    Tcp,
    Udp,
    Sctp,
    Icmpv6,
    /// Any other protocol number.
    Other(u8),
}

impl L4Proto {
    const NAMED: [(L4Proto, u8, &'static str); 5] = [
        (L4Proto::Icmp, 1, "icmp"),
        (L4Proto::Tcp, 6, "tcp"),
        (L4Proto::Udp, 17, "udp"),
        (L4Proto::Sctp, 132, "sctp"),
        (L4Proto::Icmpv6, 58, "ipv6-icmp"),
    ];

    /// The canonical value for a protocol number (6 is [`L4Proto::Tcp`]).
    pub fn from_number(number: u8) -> L4Proto {
        Self::NAMED
            .iter()
            .find(|(_, n, _)| *n == number)
            .map_or(L4Proto::Other(number), |(proto, _, _)| *proto)
    }

    pub fn number(self) -> u8 {
        match self {
            L4Proto::Other(n) => n,
            named => Self::NAMED
                .iter()
                .find(|(p, _, _)| *p == named)
                .map_or(0, |(_, n, _)| *n),
        }
    }

    pub(crate) fn from_nft_name(name: &str) -> Option<L4Proto> {
        Self::NAMED
            .iter()
            .find(|(_, _, n)| *n == name)
            .map(|(proto, _, _)| *proto)
    }

    fn render(self, out: &mut String) {
        match self {
            L4Proto::Other(n) => out.push_str(&n.to_string()),
            named => out.push_str(
                Self::NAMED
                    .iter()
                    .find(|(p, _, _)| *p == named)
                    .map_or("", |(_, _, n)| n),
            ),
        }
    }
}

/// ICMP (v4) message types, by nft's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IcmpType {
    EchoReply,
    DestinationUnreachable,
    SourceQuench,
    Redirect,
    EchoRequest,
    RouterAdvertisement,
    RouterSolicitation,
    TimeExceeded,
    ParameterProblem,
    TimestampRequest,
    TimestampReply,
}

impl IcmpType {
    const ALL: [(IcmpType, &'static str); 11] = [
        (IcmpType::EchoReply, "echo-reply"),
        (IcmpType::DestinationUnreachable, "destination-unreachable"),
        (IcmpType::SourceQuench, "source-quench"),
        (IcmpType::Redirect, "redirect"),
        (IcmpType::EchoRequest, "echo-request"),
        (IcmpType::RouterAdvertisement, "router-advertisement"),
        (IcmpType::RouterSolicitation, "router-solicitation"),
        (IcmpType::TimeExceeded, "time-exceeded"),
        (IcmpType::ParameterProblem, "parameter-problem"),
        (IcmpType::TimestampRequest, "timestamp-request"),
        (IcmpType::TimestampReply, "timestamp-reply"),
    ];

    pub fn nft_name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("", |(_, n)| n)
    }

    pub(crate) fn from_nft_name(name: &str) -> Option<IcmpType> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }
}

/// Connection tracking states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
    Untracked,
}

impl CtState {
    const ALL: [(CtState, &'static str); 5] = [
        (CtState::Invalid, "invalid"),
        (CtState::Established, "established"),
        (CtState::Related, "related"),
        (CtState::New, "new"),
        (CtState::Untracked, "untracked"),
    ];

    pub fn nft_name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("", |(_, n)| n)
    }

    pub(crate) fn from_nft_name(name: &str) -> Option<CtState> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }
}

/// One typed value: a match operand, or one part of a set element, map key or map data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Addr(IpAddr),
    /// A prefix shorter than the address (a full-length one is an [`Value::Addr`]).
    Net(IpNet),
    Ifname(Ifname),
    /// `"<prefix>*"`: any interface whose name starts with the prefix (matches only).
    IfnamePrefix(Ifname),
    Port(u16),
    /// `low-high` with `low < high`.
    PortRange(u16, u16),
    Proto(L4Proto),
    Mark(u32),
    Icmp(IcmpType),
    /// One or more states, matched as flags (`established,related`).
    CtStates(BTreeSet<CtState>),
}

impl Value {
    pub fn addr(addr: IpAddr) -> Value {
        Value::Addr(addr)
    }

    /// A prefix, host bits dropped; a full-length prefix is an address.
    pub fn net(net: IpNet) -> Value {
        if net.prefix_len() == net.max_prefix_len() {
            Value::Addr(net.addr())
        } else {
            Value::Net(net.trunc())
        }
    }

    pub fn ifname(name: &str) -> Result<Value, InvalidError> {
        Ifname::new(name).map(Value::Ifname)
    }

    /// Interfaces whose name starts with `prefix` (rendered `"prefix*"`).
    pub fn ifname_prefix(prefix: &str) -> Result<Value, InvalidError> {
        Ifname::new(prefix).map(Value::IfnamePrefix)
    }

    pub fn port(port: u16) -> Value {
        Value::Port(port)
    }

    /// Ports `low..=high`; a one-port range is that port.
    pub fn port_range(low: u16, high: u16) -> Result<Value, InvalidError> {
        match low.cmp(&high) {
            std::cmp::Ordering::Less => Ok(Value::PortRange(low, high)),
            std::cmp::Ordering::Equal => Ok(Value::Port(low)),
            std::cmp::Ordering::Greater => Err(InvalidError::PortRange { low, high }),
        }
    }

    pub fn ct_states(states: &[CtState]) -> Result<Value, InvalidError> {
        if states.is_empty() {
            return Err(InvalidError::Type("no ct state given".into()));
        }
        Ok(Value::CtStates(states.iter().copied().collect()))
    }

    /// The data type this value belongs to.
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Addr(IpAddr::V4(_)) => DataType::Ipv4Addr,
            Value::Addr(IpAddr::V6(_)) => DataType::Ipv6Addr,
            Value::Net(IpNet::V4(_)) => DataType::Ipv4Addr,
            Value::Net(IpNet::V6(_)) => DataType::Ipv6Addr,
            Value::Ifname(_) | Value::IfnamePrefix(_) => DataType::Ifname,
            Value::Port(_) | Value::PortRange(..) => DataType::InetService,
            Value::Proto(_) => DataType::InetProto,
            Value::Mark(_) => DataType::Mark,
            Value::Icmp(_) => DataType::IcmpType,
            Value::CtStates(_) => DataType::CtState,
        }
    }

    /// Whether this value stands for more than one key (needs an interval set or map).
    pub fn is_interval(&self) -> bool {
        matches!(self, Value::Net(_) | Value::PortRange(..))
    }

    pub(crate) fn render(&self, out: &mut String) {
        match self {
            Value::Addr(addr) => out.push_str(&addr.to_string()),
            Value::Net(net) => out.push_str(&net.to_string()),
            Value::Ifname(name) => {
                out.push('"');
                out.push_str(name.as_str());
                out.push('"');
            }
            Value::IfnamePrefix(name) => {
                out.push('"');
                out.push_str(name.as_str());
                out.push_str("*\"");
            }
            Value::Port(port) => out.push_str(&port.to_string()),
            Value::PortRange(low, high) => out.push_str(&format!("{low}-{high}")),
            Value::Proto(proto) => proto.render(out),
            Value::Mark(mark) => out.push_str(&format!("{mark:#010x}")),
            Value::Icmp(icmp) => out.push_str(icmp.nft_name()),
            Value::CtStates(states) => {
                let names: Vec<&str> = states.iter().map(|s| s.nft_name()).collect();
                out.push_str(&names.join(","));
            }
        }
    }
}

/// A set element or map key: one value, or several for a concatenated type (`addr . port`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<Value>);

impl Key {
    /// A key of one value.
    pub fn one(value: Value) -> Key {
        Key(vec![value])
    }

    /// A concatenated key; at least one value.
    pub fn concat(values: Vec<Value>) -> Result<Key, InvalidError> {
        if values.is_empty() {
            return Err(InvalidError::Type("a key needs at least one value".into()));
        }
        Ok(Key(values))
    }

    pub fn values(&self) -> &[Value] {
        &self.0
    }

    pub(crate) fn render(&self, out: &mut String) {
        for (i, value) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(" . ");
            }
            value.render(out);
        }
    }

    /// Whether the key fits a set or map keyed by `types`.
    pub(crate) fn check(&self, types: &[DataType], interval: bool) -> Result<(), InvalidError> {
        if self.0.len() != types.len() {
            return Err(InvalidError::Type(format!(
                "key with {} parts for a type with {}",
                self.0.len(),
                types.len()
            )));
        }
        for (value, want) in self.0.iter().zip(types) {
            if value.data_type() != *want {
                return Err(InvalidError::Type(format!(
                    "{value:?} is not a {}",
                    want.nft_name()
                )));
            }
            if matches!(value, Value::IfnamePrefix(_) | Value::CtStates(_)) {
                return Err(InvalidError::Type(format!(
                    "{value:?} cannot be a set element"
                )));
            }
            if value.is_interval() && !interval {
                return Err(InvalidError::Type(format!(
                    "{value:?} needs a set with flags interval"
                )));
            }
        }
        Ok(())
    }
}

impl From<Value> for Key {
    fn from(value: Value) -> Key {
        Key::one(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nfts_identifier_rules() {
        for good in ["calico", "nat-POSTROUTING", "a", "cali.fw/x_1"] {
            assert!(Name::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "1abc", "-x", "a b", "a\"b", "a;b", "a{", "ä", "counter", "fwd", "ip6",
        ] {
            assert!(Name::new(bad).is_err(), "{bad:?}");
        }
        assert!(Name::new(&"a".repeat(255)).is_ok());
        assert!(matches!(
            Name::new(&"a".repeat(256)),
            Err(InvalidError::TooLong { max: 255, .. })
        ));
    }

    #[test]
    fn comments_and_prefixes_refuse_what_nft_cannot_quote() {
        assert!(Comment::new("policy default-deny: ingress, tier 1").is_ok());
        assert!(Comment::new("quote \" inside").is_err());
        assert!(Comment::new("back\\slash").is_err());
        assert!(Comment::new("new\nline").is_err());
        assert!(Comment::new(&"c".repeat(128)).is_ok());
        assert!(Comment::new(&"c".repeat(129)).is_err());
        assert!(LogPrefix::new(&"p".repeat(127)).is_ok());
        assert!(LogPrefix::new(&"p".repeat(128)).is_err());
    }

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        assert!(Ifname::new("cali12345678901").is_ok());
        assert!(Ifname::new("cali123456789012").is_err());
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a*"] {
            assert!(Ifname::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_take_the_form_nft_lists() {
        let net = |s: &str| Value::net(s.parse().expect("prefix"));
        assert_eq!(
            net("198.18.0.7/32"),
            Value::Addr("198.18.0.7".parse().unwrap())
        );
        assert_eq!(
            net("198.18.3.7/16"),
            Value::Net("198.18.0.0/16".parse().unwrap())
        );
        assert_eq!(Value::port_range(80, 80), Ok(Value::Port(80)));
        assert!(Value::port_range(81, 80).is_err());
        assert_eq!(L4Proto::from_number(6), L4Proto::Tcp);
        assert_eq!(L4Proto::from_number(47), L4Proto::Other(47));
        assert_eq!(L4Proto::Sctp.number(), 132);
    }

    #[test]
    fn keys_are_checked_against_their_types() {
        let key = Key::concat(vec![
            Value::addr("198.18.0.1".parse().unwrap()),
            Value::port(80),
        ])
        .unwrap();
        assert!(
            key.check(&[DataType::Ipv4Addr, DataType::InetService], false)
                .is_ok()
        );
        assert!(key.check(&[DataType::Ipv4Addr], false).is_err());
        assert!(
            key.check(&[DataType::Ipv6Addr, DataType::InetService], false)
                .is_err()
        );
        let range = Key::one(Value::port_range(1, 9).unwrap());
        assert!(range.check(&[DataType::InetService], false).is_err());
        assert!(range.check(&[DataType::InetService], true).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Name::new accepts exactly nft's unquoted identifiers up to the kernel's length.
        #[test]
        fn names_are_accepted_exactly_when_they_are_identifiers(name in "[a-zA-Z0-9_./ \"{};@*-]{0,8}") {
            let identifier = regex::Regex::new(r"^[A-Za-z][A-Za-z0-9_./-]*$").expect("regex");
            let expected = identifier.is_match(&name) && !RESERVED_WORDS.contains(&name.as_str());
            prop_assert_eq!(Name::new(&name).is_ok(), expected);
        }

        /// A prefix is canonical: an address when full length, otherwise the network without host bits.
        #[test]
        fn prefixes_are_canonical(octets in any::<[u8; 4]>(), len in 0u8..=32) {
            let net = IpNet::new(IpAddr::from(octets), len).expect("valid length");
            let value = Value::net(net);
            let mut rendered = String::new();
            value.render(&mut rendered);
            if len == 32 {
                prop_assert_eq!(rendered, format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3]));
            } else {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                let network = std::net::Ipv4Addr::from(u32::from_be_bytes(octets) & mask);
                prop_assert_eq!(rendered, format!("{network}/{len}"));
            }
        }
    }
}
