//! Per-host and per-workload-interface settings: sysctls and the static ARP entries for local pods.

use std::collections::{BTreeMap, HashSet};

use calico_netlink::Neighbour;

use super::{Links, Op, Plan};
use calico_felix::desired::Desired;

/// Routing between interfaces: the host forwards pod traffic.
pub const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// The sysctls a host-side workload interface needs, as Calico sets them: proxy ARP (the pod's gateway
/// 169.254.1.1 is answered by the host) without delay, forwarding, and route_localnet.
pub fn workload_sysctls(iface: &str) -> [(String, &'static str); 4] {
    [
        (format!("net/ipv4/conf/{iface}/proxy_arp"), "1"),
        (format!("net/ipv4/neigh/{iface}/proxy_delay"), "0"),
        (format!("net/ipv4/conf/{iface}/forwarding"), "1"),
        (format!("net/ipv4/conf/{iface}/route_localnet"), "1"),
    ]
}

/// The sysctls to write: every wanted key whose observed value differs (None: could not be read).
/// Keys that were not observed are taken as verified already and left alone.
pub fn plan_sysctls(
    wanted: &[(String, &str)],
    observed: &BTreeMap<String, Option<String>>,
) -> Plan {
    let mut plan = Plan::default();
    for (key, value) in wanted {
        if let Some(current) = observed.get(key)
            && current.as_deref() != Some(*value)
        {
            plan.ops.push(Op::SetSysctl {
                key: key.clone(),
                value: (*value).to_string(),
            });
        }
    }
    plan
}

/// The neighbours a static ARP entry is wanted for: every IPv4 address of a local workload whose MAC is
/// known, on its interface when that is up.
pub fn wanted_workload_neighbours(desired: &Desired, links: &Links) -> Vec<Neighbour> {
    let mut wanted = Vec::new();
    for (iface, workload) in &desired.workloads {
        let (Some(link), Some(mac)) = (links.get(iface).filter(|l| l.up), workload.mac) else {
            continue;
        };
        wanted.extend(
            workload
                .addresses
                .iter()
                .filter(|a| a.addr().is_ipv4())
                .map(|a| Neighbour {
                    index: link.index,
                    ip: a.addr(),
                    mac,
                    permanent: true,
                }),
        );
    }
    wanted
}

/// A permanent neighbour (IPv4 address → MAC) for every local workload address whose MAC is known, and
/// no other permanent IPv4 entries on those interfaces. Dynamic entries the kernel learned are left to it.
pub fn plan_workload_neighbours(wanted: &[Neighbour], observed: &[Neighbour]) -> Plan {
    let mut plan = Plan::default();
    let managed: HashSet<u32> = wanted.iter().map(|n| n.index).collect();
    let existing: Vec<&Neighbour> = observed
        .iter()
        .filter(|n| managed.contains(&n.index) && n.ip.is_ipv4())
        .collect();
    for neighbour in &existing {
        let stale = neighbour.permanent
            && !wanted
                .iter()
                .any(|w| w.index == neighbour.index && w.ip == neighbour.ip);
        if stale {
            plan.ops.push(Op::DelNeighbour(**neighbour));
        }
    }
    for want in wanted {
        if !existing.contains(&want) {
            plan.ops.push(Op::ReplaceNeighbour(*want));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::plan::fixtures::{down, link};
    use calico_felix::desired::WorkloadIface;

    #[test]
    fn only_sysctls_observed_with_another_value_are_written() {
        let wanted = [
            ("net/ipv4/conf/calia/proxy_arp".to_string(), "1"),
            ("net/ipv4/neigh/calia/proxy_delay".to_string(), "0"),
            ("net/ipv4/conf/calia/forwarding".to_string(), "1"),
        ];
        let observed: BTreeMap<String, Option<String>> = [
            (
                "net/ipv4/conf/calia/proxy_arp".to_string(),
                Some("0".to_string()),
            ),
            (
                "net/ipv4/neigh/calia/proxy_delay".to_string(),
                Some("0".to_string()),
            ),
            // Not readable: written (and the write's result reported by the driver).
            ("net/ipv4/conf/calia/forwarding".to_string(), None),
        ]
        .into();
        let plan = plan_sysctls(&wanted, &observed);
        assert_eq!(
            plan.ops,
            vec![
                Op::SetSysctl {
                    key: "net/ipv4/conf/calia/proxy_arp".into(),
                    value: "1".into()
                },
                Op::SetSysctl {
                    key: "net/ipv4/conf/calia/forwarding".into(),
                    value: "1".into()
                },
            ]
        );
        // Not observed at all (verified on an earlier pass): nothing.
        assert_eq!(plan_sysctls(&wanted, &BTreeMap::new()), Plan::default());
    }

    #[test]
    fn workload_sysctls_are_calicos_four() {
        let keys: Vec<String> = workload_sysctls("cali0")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            keys,
            [
                "net/ipv4/conf/cali0/proxy_arp=1",
                "net/ipv4/neigh/cali0/proxy_delay=0",
                "net/ipv4/conf/cali0/forwarding=1",
                "net/ipv4/conf/cali0/route_localnet=1",
            ]
        );
    }

    fn neighbour(index: u32, ip: &str, mac: u8, permanent: bool) -> Neighbour {
        Neighbour {
            index,
            ip: ip.parse::<IpAddr>().expect("ip"),
            mac: [0x0a, 0, 0, 0, 0, mac],
            permanent,
        }
    }

    #[test]
    fn static_arp_entries_follow_the_endpoints() {
        let links = Links::new([
            link(10, "calia"),
            down(link(11, "calib")),
            link(12, "calic"),
        ]);
        let mut desired = Desired::default();
        for (iface, address, mac) in [
            ("calia", "198.19.0.1/32", Some([0x0a, 0, 0, 0, 0, 1])),
            ("calib", "198.19.0.2/32", Some([0x0a, 0, 0, 0, 0, 2])),
            ("calic", "198.19.0.3/32", None),
        ] {
            desired.workloads.insert(
                iface.into(),
                WorkloadIface {
                    addresses: [
                        address.parse().expect("net"),
                        "2001:db8::1/128".parse().expect("net"),
                    ]
                    .into(),
                    mac,
                },
            );
        }
        // Only the up interface with a known MAC, and only IPv4.
        let wanted = wanted_workload_neighbours(&desired, &links);
        assert_eq!(wanted, vec![neighbour(10, "198.19.0.1", 1, true)]);

        let observed = [
            // A permanent entry for an address the pod no longer has: removed.
            neighbour(10, "198.19.0.9", 9, true),
            // A dynamic entry the kernel learned: left alone.
            neighbour(10, "198.19.0.8", 8, false),
            // Wrong MAC for the pod's address: rewritten.
            neighbour(10, "198.19.0.1", 7, true),
            // On an interface without wanted entries: not ours to judge.
            neighbour(12, "198.19.0.5", 5, true),
        ];
        let plan = plan_workload_neighbours(&wanted, &observed);
        assert_eq!(
            plan.ops,
            vec![
                Op::DelNeighbour(neighbour(10, "198.19.0.9", 9, true)),
                Op::ReplaceNeighbour(neighbour(10, "198.19.0.1", 1, true)),
            ]
        );
        assert_eq!(
            plan_workload_neighbours(&wanted, &[neighbour(10, "198.19.0.1", 1, true)]),
            Plan::default()
        );
    }
}
