//! IPv4 autodetection of the node's address, following calico-node's `IP_AUTODETECTION_METHOD`.
//!
//! The choice itself is pure ([`choose`] over a list of [`HostInterface`]s); [`interfaces`] reads that
//! list from the kernel and [`detect`] ties both together. Calico's rules, kept here:
//! - interfaces are tried newest first (highest interface index first), and on each interface the
//!   addresses in the order the kernel lists them (primary first);
//! - only global unicast addresses count: loopback (127/8), link-local (169.254/16), multicast,
//!   0.0.0.0 and 255.255.255.255 are skipped;
//! - `first-found` and `skip-interface=` skip [`DEFAULT_INTERFACES_TO_EXCLUDE`]; `interface=` and
//!   `cidr=` do not;
//! - interface regexes are searched anywhere in the name, as Calico does (`interface=eth0` also matches
//!   `veth0`; write `^eth0$` to be exact).
//!
//! One deliberate difference: interfaces that are administratively down are skipped by every method
//! (Calico would pick an address on a down interface, which then carries no traffic).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::LazyLock;

use calico_netlink::{Netlink, NetlinkError};
use ipnet::{IpNet, Ipv4Net};
use regex::Regex;

/// Calico's default list of interfaces that `first-found` and `skip-interface=` never use: container
/// bridges, veths, tunnels and Calico's own devices.
pub const DEFAULT_INTERFACES_TO_EXCLUDE: &[&str] = &[
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    r"^vxlan\.calico.*",
    r"^vxlan-v6\.calico.*",
    r"^wireguard\.cali.*",
    r"^wg-v6\.cali.*",
    "^nodelocaldns.*",
];

static DEFAULT_EXCLUDES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    DEFAULT_INTERFACES_TO_EXCLUDE
        .iter()
        .map(|pattern| Regex::new(pattern).expect("built-in exclude patterns are valid regexes"))
        .collect()
});

const VALID_FORMS: &str = "first-found, can-reach=<ip or hostname>, interface=<regex>[,<regex>...], \
                           skip-interface=<regex>[,<regex>...], cidr=<cidr>[,<cidr>...]";

/// The port `can-reach=` pretends to connect to (as Calico; a UDP connect sends nothing).
const REACH_PORT: u16 = 80;

/// An `IP_AUTODETECTION_METHOD`.
#[derive(Debug, Clone)]
pub enum Method {
    /// The first usable address on an interface not in [`DEFAULT_INTERFACES_TO_EXCLUDE`].
    FirstFound,
    /// The address the kernel would use as source towards this IP address or host name.
    CanReach(String),
    /// The first usable address on the first interface whose name matches one of the regexes.
    Interface(Vec<Regex>),
    /// Like first-found, also skipping interfaces whose name matches one of the regexes.
    SkipInterface(Vec<Regex>),
    /// The first usable address inside one of the CIDRs, on any interface.
    Cidr(Vec<Ipv4Net>),
}

impl Method {
    /// Same as [`parse`].
    pub fn parse(value: &str) -> Result<Method, AutodetectError> {
        parse(value)
    }
}

impl std::str::FromStr for Method {
    type Err = AutodetectError;

    fn from_str(value: &str) -> Result<Method, AutodetectError> {
        parse(value)
    }
}

impl PartialEq for Method {
    fn eq(&self, other: &Method) -> bool {
        let same_patterns =
            |a: &[Regex], b: &[Regex]| a.iter().map(Regex::as_str).eq(b.iter().map(Regex::as_str));
        match (self, other) {
            (Method::FirstFound, Method::FirstFound) => true,
            (Method::CanReach(a), Method::CanReach(b)) => a == b,
            (Method::Interface(a), Method::Interface(b)) => same_patterns(a, b),
            (Method::SkipInterface(a), Method::SkipInterface(b)) => same_patterns(a, b),
            (Method::Cidr(a), Method::Cidr(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Method {}

/// Written back in the syntax [`parse`] accepts.
impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::FirstFound => f.write_str("first-found"),
            Method::CanReach(destination) => write!(f, "can-reach={destination}"),
            Method::Interface(regexes) => write!(f, "interface={}", join_patterns(regexes)),
            Method::SkipInterface(regexes) => {
                write!(f, "skip-interface={}", join_patterns(regexes))
            }
            Method::Cidr(cidrs) => write!(f, "cidr={}", join_display(cidrs, ",")),
        }
    }
}

/// A network interface with its IPv4 addresses (host bits kept: 198.18.0.11/24).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub index: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    pub mtu: u32,
    /// The largest IPv4 GSO packet the link takes (above 65,536 with BIG TCP).
    pub gso_ipv4_max_size: u32,
    pub addresses: Vec<Ipv4Net>,
}

/// The autodetected node address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The address with its subnet prefix, host bits kept (198.18.0.11/24).
    pub address: Ipv4Net,
    /// The interface holding it.
    pub interface: String,
    /// That interface's MTU.
    pub mtu: u32,
    /// That interface's largest IPv4 GSO packet.
    pub gso_ipv4_max_size: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AutodetectError {
    #[error("invalid IP autodetection method {value:?}: {reason}; valid forms: {VALID_FORMS}")]
    InvalidMethod { value: String, reason: String },
    #[error(
        "IP autodetection ({method}) found no usable IPv4 address; interfaces checked: {checked}"
    )]
    NoAddress { method: String, checked: String },
    #[error(
        "IP autodetection ({method}): no interface matches {patterns}; interfaces here: {available}"
    )]
    NoMatchingInterface {
        method: String,
        patterns: String,
        available: String,
    },
    #[error("IP autodetection ({method}): {reason}")]
    CanReach { method: String, reason: String },
    #[error("IP autodetection: cannot list the host's interfaces: {0}")]
    Netlink(#[from] NetlinkError),
}

/// Parses an `IP_AUTODETECTION_METHOD` value; an empty value means `first-found`.
pub fn parse(value: &str) -> Result<Method, AutodetectError> {
    let trimmed = value.trim();
    let invalid = |reason: String| AutodetectError::InvalidMethod {
        value: value.to_string(),
        reason,
    };
    if trimmed.is_empty() || trimmed == "first-found" {
        return Ok(Method::FirstFound);
    }
    if let Some(destination) = trimmed.strip_prefix("can-reach=") {
        let destination = destination.trim();
        if destination.is_empty() {
            return Err(invalid(
                "can-reach= needs an IP address or host name".into(),
            ));
        }
        return Ok(Method::CanReach(destination.to_string()));
    }
    if let Some(list) = trimmed.strip_prefix("interface=") {
        return parse_regexes("interface=", list)
            .map(Method::Interface)
            .map_err(invalid);
    }
    if let Some(list) = trimmed.strip_prefix("skip-interface=") {
        return parse_regexes("skip-interface=", list)
            .map(Method::SkipInterface)
            .map_err(invalid);
    }
    if let Some(list) = trimmed.strip_prefix("cidr=") {
        return parse_cidrs(list).map(Method::Cidr).map_err(invalid);
    }
    if trimmed == "kubernetes-internal-ip" {
        return Err(invalid(
            "kubernetes-internal-ip needs a Kubernetes node object, which calico-node here does not have"
                .into(),
        ));
    }
    Err(invalid("unknown method".into()))
}

/// Splits a comma-separated list, trimming blanks around each item as Calico does.
fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim)
}

fn parse_regexes(prefix: &str, list: &str) -> Result<Vec<Regex>, String> {
    split_list(list)
        .map(|pattern| {
            if pattern.is_empty() {
                return Err(format!("{prefix} has an empty regex in {list:?}"));
            }
            Regex::new(pattern).map_err(|err| format!("bad regex {pattern:?}: {err}"))
        })
        .collect()
}

fn parse_cidrs(list: &str) -> Result<Vec<Ipv4Net>, String> {
    split_list(list)
        .map(|cidr| {
            cidr.parse::<Ipv4Net>()
                // Calico accepts host bits (10.1.2.3/8) and uses the network.
                .map(|net| net.trunc())
                .map_err(|_| format!("{cidr:?} is not an IPv4 CIDR such as 198.18.0.0/24"))
        })
        .collect()
}

/// The host's interfaces and their IPv4 addresses, in the calling thread's network namespace, in
/// interface index order.
pub fn interfaces() -> Result<Vec<HostInterface>, AutodetectError> {
    let mut netlink = Netlink::new()?;
    let links = netlink.links()?;
    let addresses = netlink.addresses(None)?;
    let mut interfaces: Vec<HostInterface> = links
        .into_iter()
        .map(|link| HostInterface {
            addresses: addresses
                .iter()
                .filter(|address| address.index == link.index)
                .filter_map(|address| match address.net {
                    IpNet::V4(net) => Some(net),
                    IpNet::V6(_) => None,
                })
                .collect(),
            name: link.name,
            index: link.index,
            up: link.up,
            mtu: link.mtu,
            gso_ipv4_max_size: link.gso_ipv4_max_size,
        })
        .collect();
    interfaces.sort_by_key(|iface| iface.index);
    Ok(interfaces)
}

/// Autodetects the node address with `method` in the calling thread's network namespace.
pub fn detect(method: &Method) -> Result<Detected, AutodetectError> {
    match method {
        Method::CanReach(destination) => can_reach(destination),
        _ => choose(method, &interfaces()?),
    }
}

/// Applies `method` to `ifaces` (pure). `can-reach=` needs the kernel's routing decision, so it is an
/// error here; use [`detect`] or [`can_reach`] for it.
pub fn choose(method: &Method, ifaces: &[HostInterface]) -> Result<Detected, AutodetectError> {
    // Calico walks the kernel's interface list backwards, i.e. the newest interface first.
    let mut newest_first: Vec<&HostInterface> = ifaces.iter().collect();
    newest_first.sort_by_key(|iface| std::cmp::Reverse(iface.index));
    let any_address = |_: &Ipv4Net| true;
    match method {
        Method::FirstFound => scan(
            method,
            &newest_first,
            |iface| default_excluded(iface).then_some("excluded by default"),
            any_address,
        ),
        Method::SkipInterface(regexes) => scan(
            method,
            &newest_first,
            |iface| {
                if default_excluded(iface) {
                    Some("excluded by default")
                } else if matches_any(regexes, &iface.name) {
                    Some("skipped")
                } else {
                    None
                }
            },
            any_address,
        ),
        Method::Interface(regexes) => {
            let matching: Vec<&HostInterface> = newest_first
                .iter()
                .copied()
                .filter(|iface| matches_any(regexes, &iface.name))
                .collect();
            if matching.is_empty() {
                return Err(AutodetectError::NoMatchingInterface {
                    method: method.to_string(),
                    patterns: join_patterns(regexes),
                    available: or_none(ifaces.iter().map(|iface| iface.name.clone()).collect()),
                });
            }
            scan(method, &matching, |_| None, any_address)
        }
        Method::Cidr(cidrs) => scan(
            method,
            &newest_first,
            |_| None,
            |address: &Ipv4Net| cidrs.iter().any(|cidr| cidr.contains(&address.addr())),
        ),
        Method::CanReach(_) => Err(AutodetectError::CanReach {
            method: method.to_string(),
            reason: "needs the kernel's routing decision: use detect() or can_reach()".into(),
        }),
    }
}

/// The first interface (in the given order) that is not skipped, is up and holds a usable address
/// accepted by `wanted`; otherwise an error listing why each interface was passed over.
fn scan(
    method: &Method,
    candidates: &[&HostInterface],
    skip_reason: impl Fn(&HostInterface) -> Option<&'static str>,
    wanted: impl Fn(&Ipv4Net) -> bool,
) -> Result<Detected, AutodetectError> {
    let mut checked = Vec::new();
    for iface in candidates {
        if let Some(reason) = skip_reason(iface) {
            checked.push(format!("{} ({reason})", iface.name));
            continue;
        }
        if !iface.up {
            checked.push(format!("{} (down)", iface.name));
            continue;
        }
        let found = iface
            .addresses
            .iter()
            .find(|address| is_usable(address.addr()) && wanted(address));
        match found {
            Some(address) => {
                return Ok(Detected {
                    address: *address,
                    interface: iface.name.clone(),
                    mtu: iface.mtu,
                    gso_ipv4_max_size: iface.gso_ipv4_max_size,
                });
            }
            None if iface.addresses.is_empty() => {
                checked.push(format!("{} (no IPv4 address)", iface.name));
            }
            None => checked.push(format!(
                "{} (no usable address among {})",
                iface.name,
                join_display(&iface.addresses, ", ")
            )),
        }
    }
    Err(AutodetectError::NoAddress {
        method: method.to_string(),
        checked: or_none(checked),
    })
}

/// Global unicast, as Go's `IsGlobalUnicast` (which Calico uses) defines it for IPv4.
fn is_usable(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast())
}

fn default_excluded(iface: &HostInterface) -> bool {
    matches_any(&DEFAULT_EXCLUDES, &iface.name)
}

fn matches_any(regexes: &[Regex], name: &str) -> bool {
    regexes.iter().any(|regex| regex.is_match(name))
}

/// `can-reach=`: the address the kernel would use as source towards `destination` (an IPv4 address or a
/// host name), found by connecting a UDP socket (which sends nothing), with the prefix of the
/// interface that holds it.
pub fn can_reach(destination: &str) -> Result<Detected, AutodetectError> {
    let method = Method::CanReach(destination.to_string());
    let failed = |reason: String| AutodetectError::CanReach {
        method: method.to_string(),
        reason,
    };
    let target = resolve_ipv4(destination).map_err(failed)?;
    let source = source_address_towards(target).map_err(failed)?;
    owner_of(source, &interfaces()?).ok_or_else(|| {
        failed(format!(
            "the source address {source} used towards {target} is on no local interface"
        ))
    })
}

/// The interface holding `address`, with that address's prefix (pure).
pub fn owner_of(address: Ipv4Addr, ifaces: &[HostInterface]) -> Option<Detected> {
    ifaces.iter().find_map(|iface| {
        iface
            .addresses
            .iter()
            .find(|net| net.addr() == address)
            .map(|net| Detected {
                address: *net,
                interface: iface.name.clone(),
                mtu: iface.mtu,
                gso_ipv4_max_size: iface.gso_ipv4_max_size,
            })
    })
}

fn resolve_ipv4(destination: &str) -> Result<Ipv4Addr, String> {
    match destination.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => return Ok(ip),
        Ok(IpAddr::V6(_)) => {
            return Err(format!(
                "{destination} is an IPv6 address; only IPv4 autodetection is supported"
            ));
        }
        Err(_) => {}
    }
    let resolved = (destination, REACH_PORT)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {destination:?}: {err}"))?;
    resolved
        .filter_map(|address| match address {
            SocketAddr::V4(v4) => Some(*v4.ip()),
            SocketAddr::V6(_) => None,
        })
        .next()
        .ok_or_else(|| format!("{destination:?} resolves to no IPv4 address"))
}

fn source_address_towards(target: Ipv4Addr) -> Result<Ipv4Addr, String> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .map_err(|err| format!("cannot open a UDP socket: {err}"))?;
    socket
        .connect((target, REACH_PORT))
        .map_err(|err| format!("no route to {target}: {err}"))?;
    match socket.local_addr() {
        Ok(SocketAddr::V4(local)) => Ok(*local.ip()),
        Ok(other) => Err(format!("unexpected local address {other} towards {target}")),
        Err(err) => Err(format!(
            "cannot read the local address towards {target}: {err}"
        )),
    }
}

fn join_patterns(regexes: &[Regex]) -> String {
    regexes
        .iter()
        .map(Regex::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn join_display<T: fmt::Display>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

fn or_none(items: Vec<String>) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn iface(index: u32, name: &str, up: bool, addresses: &[&str]) -> HostInterface {
        HostInterface {
            name: name.to_string(),
            index,
            up,
            mtu: 1500 - index,
            gso_ipv4_max_size: 65536,
            addresses: addresses.iter().map(|a| net(a)).collect(),
        }
    }

    fn regexes(patterns: &[&str]) -> Vec<Regex> {
        patterns.iter().map(|p| Regex::new(p).unwrap()).collect()
    }

    fn detected(address: &str, interface: &str, index: u32) -> Detected {
        Detected {
            address: net(address),
            interface: interface.to_string(),
            mtu: 1500 - index,
            gso_ipv4_max_size: 65536,
        }
    }

    /// A typical Calico host: loopback, the uplink, docker, a workload veth and the VXLAN device.
    fn typical_host() -> Vec<HostInterface> {
        vec![
            iface(1, "lo", true, &["127.0.0.1/8"]),
            iface(2, "eth0", true, &["198.18.0.11/24", "198.18.1.11/24"]),
            iface(3, "docker0", true, &["198.18.100.1/24"]),
            iface(4, "vxlan.calico", true, &["198.19.0.0/32"]),
            iface(5, "cali12345", true, &["169.254.1.1/32"]),
        ]
    }

    #[test]
    fn parse_accepts_calico_syntax() {
        let cases: Vec<(&str, Method)> = vec![
            ("", Method::FirstFound),
            ("  ", Method::FirstFound),
            ("first-found", Method::FirstFound),
            ("can-reach=8.8.8.8", Method::CanReach("8.8.8.8".into())),
            (
                "can-reach= example.org ",
                Method::CanReach("example.org".into()),
            ),
            ("interface=eth0", Method::Interface(regexes(&["eth0"]))),
            (
                "interface=eth.*, bond[0-9]",
                Method::Interface(regexes(&["eth.*", "bond[0-9]"])),
            ),
            (
                "skip-interface=eth1",
                Method::SkipInterface(regexes(&["eth1"])),
            ),
            (
                "skip-interface=a,b ,c",
                Method::SkipInterface(regexes(&["a", "b", "c"])),
            ),
            (
                "cidr=198.18.0.0/24",
                Method::Cidr(vec![net("198.18.0.0/24")]),
            ),
            (
                "cidr=198.18.0.0/24,10.1.2.3/8",
                Method::Cidr(vec![net("198.18.0.0/24"), net("10.0.0.0/8")]),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap(), expected, "parse({text:?})");
        }
    }

    #[test]
    fn display_round_trips_through_parse() {
        for text in [
            "first-found",
            "can-reach=198.18.0.1",
            "interface=eth.*,bond0",
            "skip-interface=eth1",
            "cidr=198.18.0.0/24,10.0.0.0/8",
        ] {
            let method = parse(text).unwrap();
            assert_eq!(method.to_string(), text);
            assert_eq!(parse(&method.to_string()).unwrap(), method);
        }
    }

    #[test]
    fn parse_rejects_bad_values_naming_them_and_the_valid_forms() {
        let cases = [
            ("first", "unknown method"),
            ("can-reach=", "needs an IP address or host name"),
            ("interface=eth(", "bad regex \"eth(\""),
            ("interface=", "empty regex"),
            ("skip-interface=eth0,,eth1", "empty regex"),
            ("cidr=198.18.0.0", "\"198.18.0.0\" is not an IPv4 CIDR"),
            ("cidr=2001:db8::/32", "is not an IPv4 CIDR"),
            ("cidr=198.18.0.0/33", "is not an IPv4 CIDR"),
            ("kubernetes-internal-ip", "Kubernetes node"),
            ("Interface=eth0", "unknown method"),
        ];
        for (text, reason) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(&format!("{text:?}")), "{message}");
            assert!(message.contains(reason), "{text}: {message}");
            assert!(
                message.contains("valid forms: first-found, can-reach="),
                "{message}"
            );
        }
    }

    #[test]
    fn first_found_skips_default_excluded_interfaces() {
        let chosen = choose(&Method::FirstFound, &typical_host()).unwrap();
        assert_eq!(chosen, detected("198.18.0.11/24", "eth0", 2));
    }

    #[test]
    fn default_exclude_list_is_prefix_anchored() {
        let names = [
            "docker0",
            "cbr0",
            "dummy0",
            "virbr0",
            "lxcbr0",
            "veth1234",
            "lo",
            "lo0",
            "cali1",
            "tunl0",
            "flannel.1",
            "kube-ipvs0",
            "cni0",
            "vxlan.calico",
            "vxlan-v6.calico",
            "wireguard.cali",
            "wg-v6.cali",
            "nodelocaldns",
        ];
        for name in names {
            assert!(default_excluded(&iface(1, name, true, &[])), "{name}");
        }
        for name in ["eth0", "ens3", "bond0", "br0", "myveth0", "vxlan0", "wg0"] {
            assert!(!default_excluded(&iface(1, name, true, &[])), "{name}");
        }
    }

    #[test]
    fn first_found_prefers_the_newest_interface_whatever_the_input_order() {
        let mut ifaces = vec![
            iface(2, "eth0", true, &["198.18.0.11/24"]),
            iface(7, "eth1", true, &["198.18.5.11/24"]),
            iface(3, "ens3", true, &["198.18.3.11/24"]),
        ];
        assert_eq!(
            choose(&Method::FirstFound, &ifaces).unwrap(),
            detected("198.18.5.11/24", "eth1", 7)
        );
        ifaces.reverse();
        assert_eq!(
            choose(&Method::FirstFound, &ifaces).unwrap(),
            detected("198.18.5.11/24", "eth1", 7)
        );
    }

    #[test]
    fn first_found_skips_down_interfaces_and_unusable_addresses() {
        let ifaces = vec![
            iface(2, "eth0", true, &["198.18.0.11/24"]),
            iface(3, "eth1", false, &["198.18.1.11/24"]),
            iface(
                4,
                "eth2",
                true,
                &["169.254.3.3/16", "127.0.0.2/8", "224.0.0.9/32"],
            ),
            iface(5, "eth3", true, &[]),
        ];
        assert_eq!(
            choose(&Method::FirstFound, &ifaces).unwrap(),
            detected("198.18.0.11/24", "eth0", 2)
        );
    }

    #[test]
    fn first_found_takes_the_first_usable_address_of_an_interface() {
        let ifaces = vec![iface(
            2,
            "eth0",
            true,
            &["169.254.0.5/16", "198.18.0.12/24", "198.18.0.11/24"],
        )];
        assert_eq!(
            choose(&Method::FirstFound, &ifaces).unwrap(),
            detected("198.18.0.12/24", "eth0", 2)
        );
    }

    #[test]
    fn first_found_failure_lists_every_interface_and_why() {
        let ifaces = vec![
            iface(1, "lo", true, &["127.0.0.1/8"]),
            iface(2, "eth0", false, &["198.18.0.11/24"]),
            iface(3, "eth1", true, &[]),
            iface(4, "eth2", true, &["169.254.0.5/16"]),
        ];
        let message = choose(&Method::FirstFound, &ifaces)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "IP autodetection (first-found) found no usable IPv4 address; interfaces checked: \
             eth2 (no usable address among 169.254.0.5/16), eth1 (no IPv4 address), eth0 (down), \
             lo (excluded by default)"
        );
        let message = choose(&Method::FirstFound, &[]).unwrap_err().to_string();
        assert!(message.ends_with("interfaces checked: none"), "{message}");
    }

    #[test]
    fn interface_picks_the_first_matching_interface_ignoring_default_excludes() {
        let host = typical_host();
        let cases = [
            (vec!["eth0"], detected("198.18.0.11/24", "eth0", 2)),
            (vec!["^docker"], detected("198.18.100.1/24", "docker0", 3)),
            (
                vec!["nomatch", "vxlan"],
                detected("198.19.0.0/32", "vxlan.calico", 4),
            ),
            // Newest first: docker0 (3) before eth0 (2).
            (
                vec!["eth0", "docker0"],
                detected("198.18.100.1/24", "docker0", 3),
            ),
        ];
        for (patterns, expected) in cases {
            let method = Method::Interface(regexes(&patterns));
            assert_eq!(choose(&method, &host).unwrap(), expected, "{method}");
        }
    }

    #[test]
    fn interface_regexes_are_unanchored_like_calico() {
        let ifaces = vec![
            iface(2, "eth0", true, &["198.18.0.11/24"]),
            iface(3, "veth0", true, &["198.18.9.1/24"]),
        ];
        let loose = Method::Interface(regexes(&["eth0"]));
        assert_eq!(choose(&loose, &ifaces).unwrap().interface, "veth0");
        let exact = Method::Interface(regexes(&["^eth0$"]));
        assert_eq!(choose(&exact, &ifaces).unwrap().interface, "eth0");
    }

    #[test]
    fn interface_without_match_names_the_patterns_and_the_interfaces() {
        let ifaces = vec![
            iface(1, "lo", true, &["127.0.0.1/8"]),
            iface(2, "eth0", true, &[]),
        ];
        let message = choose(&parse("interface=eth9").unwrap(), &ifaces)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "IP autodetection (interface=eth9): no interface matches eth9; interfaces here: lo, eth0"
        );
    }

    #[test]
    fn interface_matching_but_unusable_reports_why() {
        let ifaces = vec![
            iface(2, "eth0", false, &["198.18.0.11/24"]),
            iface(3, "eth1", true, &[]),
            iface(4, "ens1", true, &["198.18.1.1/24"]),
        ];
        let message = choose(&parse("interface=^eth").unwrap(), &ifaces)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "IP autodetection (interface=^eth) found no usable IPv4 address; interfaces checked: \
             eth1 (no IPv4 address), eth0 (down)"
        );
    }

    #[test]
    fn skip_interface_is_first_found_minus_the_matches() {
        let ifaces = vec![
            iface(1, "lo", true, &["127.0.0.1/8"]),
            iface(2, "eth0", true, &["198.18.0.11/24"]),
            iface(3, "eth1", true, &["198.18.1.11/24"]),
            iface(4, "docker0", true, &["198.18.100.1/24"]),
        ];
        let cases = [
            ("skip-interface=eth1", detected("198.18.0.11/24", "eth0", 2)),
            (
                "skip-interface=nothing",
                detected("198.18.1.11/24", "eth1", 3),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                choose(&parse(text).unwrap(), &ifaces).unwrap(),
                expected,
                "{text}"
            );
        }
        let message = choose(&parse("skip-interface=eth").unwrap(), &ifaces)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "IP autodetection (skip-interface=eth) found no usable IPv4 address; interfaces checked: \
             docker0 (excluded by default), eth1 (skipped), eth0 (skipped), lo (excluded by default)"
        );
    }

    #[test]
    fn cidr_picks_the_first_address_inside_any_cidr_on_any_interface() {
        let host = typical_host();
        let cases = [
            ("cidr=198.18.1.0/24", detected("198.18.1.11/24", "eth0", 2)),
            (
                "cidr=198.18.0.0/16",
                detected("198.18.100.1/24", "docker0", 3),
            ),
            (
                "cidr=10.0.0.0/8,198.19.0.0/16",
                detected("198.19.0.0/32", "vxlan.calico", 4),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                choose(&parse(text).unwrap(), &host).unwrap(),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn cidr_never_picks_loopback_or_link_local_and_reports_failures() {
        let host = typical_host();
        let message = choose(&parse("cidr=127.0.0.0/8,169.254.0.0/16").unwrap(), &host)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "IP autodetection (cidr=127.0.0.0/8,169.254.0.0/16) found no usable IPv4 address; \
             interfaces checked: cali12345 (no usable address among 169.254.1.1/32), \
             vxlan.calico (no usable address among 198.19.0.0/32), \
             docker0 (no usable address among 198.18.100.1/24), \
             eth0 (no usable address among 198.18.0.11/24, 198.18.1.11/24), \
             lo (no usable address among 127.0.0.1/8)"
        );
    }

    #[test]
    fn can_reach_cannot_be_chosen_from_a_list() {
        let message = choose(&parse("can-reach=198.18.0.1").unwrap(), &typical_host())
            .unwrap_err()
            .to_string();
        assert!(message.contains("(can-reach=198.18.0.1)"), "{message}");
        assert!(message.contains("detect()"), "{message}");
    }

    #[test]
    fn owner_of_finds_the_interface_and_prefix() {
        let host = typical_host();
        assert_eq!(
            owner_of("198.18.1.11".parse().unwrap(), &host),
            Some(detected("198.18.1.11/24", "eth0", 2))
        );
        assert_eq!(
            owner_of("127.0.0.1".parse().unwrap(), &host),
            Some(detected("127.0.0.1/8", "lo", 1))
        );
        assert_eq!(owner_of("198.18.0.12".parse().unwrap(), &host), None);
    }

    #[test]
    fn resolve_accepts_literals_and_rejects_ipv6() {
        assert_eq!(
            resolve_ipv4("198.18.0.1").unwrap(),
            Ipv4Addr::new(198, 18, 0, 1)
        );
        assert!(resolve_ipv4("2001:db8::1").unwrap_err().contains("IPv6"));
    }
}
