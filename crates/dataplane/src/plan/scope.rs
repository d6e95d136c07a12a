//! How much of the kernel an apply has to look at: the difference between the desired state the last
//! clean apply made true and the new one.
//!
//! A pod added on this host changes one workload interface; reading and planning every link, route and
//! neighbour of the host for it (and running `nft` to read the NAT table back) made the time from a
//! WorkloadEndpoint write to its route grow with the number of pods. The driver uses this to touch only
//! what changed, and falls back to a full reconciliation whenever the difference is anything else.

use std::collections::BTreeSet;

use calico_felix::desired::Desired;

/// What changed in the kernel-facing part of the desired state since the last clean apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Nothing the kernel holds changed.
    Unchanged,
    /// Only these local workload interfaces were added or changed (addresses, MAC); nothing was removed
    /// and every host-wide object (Felix routes, the VXLAN device, VTEPs, IPIP pools) is as before.
    Workloads(BTreeSet<String>),
    /// Anything else, or no clean apply to compare with: reconcile everything.
    Everything,
}

/// The scope of the change from `applied` (the last desired state applied cleanly, if any) to `desired`.
/// NAT is judged apart, by [`nat_changed`], since it lives in nftables rather than netlink.
pub fn scope_of_change(applied: Option<&Desired>, desired: &Desired) -> Scope {
    let Some(applied) = applied else {
        return Scope::Everything;
    };
    let host_wide_same = applied.routes == desired.routes
        && applied.vxlan == desired.vxlan
        && applied.vteps == desired.vteps
        && applied.ipip_pools == desired.ipip_pools;
    let removed = applied
        .workloads
        .keys()
        .any(|iface| !desired.workloads.contains_key(iface));
    if !host_wide_same || removed {
        return Scope::Everything;
    }
    let changed: BTreeSet<String> = desired
        .workloads
        .iter()
        .filter(|(iface, workload)| applied.workloads.get(*iface) != Some(*workload))
        .map(|(iface, _)| iface.clone())
        .collect();
    if changed.is_empty() {
        Scope::Unchanged
    } else {
        Scope::Workloads(changed)
    }
}

/// Whether the NAT table has to be synced: always without a clean apply to compare with.
pub fn nat_changed(applied: Option<&Desired>, desired: &Desired) -> bool {
    applied.is_none_or(|applied| applied.nat != desired.nat)
}

/// The part of `desired` that concerns `ifaces`: their workload entries, and any Felix route to one of
/// their addresses (so that a conflict between the two is still seen and reported).
pub fn workloads_only(desired: &Desired, ifaces: &BTreeSet<String>) -> Desired {
    let workloads: std::collections::BTreeMap<_, _> = desired
        .workloads
        .iter()
        .filter(|(iface, _)| ifaces.contains(*iface))
        .map(|(iface, workload)| (iface.clone(), workload.clone()))
        .collect();
    let addresses: BTreeSet<_> = workloads
        .values()
        .flat_map(|workload| workload.addresses.iter().copied())
        .collect();
    Desired {
        routes: desired
            .routes
            .iter()
            .filter(|route| addresses.contains(&route.dst))
            .cloned()
            .collect(),
        workloads,
        ..Desired::default()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use calico_felix::desired::{DesiredRoute, RouteTarget, Vtep, WorkloadIface};
    use ipnet::{IpNet, Ipv4Net};

    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
    }

    fn pod(address: &str) -> WorkloadIface {
        WorkloadIface {
            addresses: [net(address)].into(),
            mac: Some([0xee, 0xee, 0xee, 0xee, 0xee, 0xee]),
        }
    }

    fn host() -> Desired {
        let mut desired = Desired::default();
        desired
            .workloads
            .insert("cali1111111111a".into(), pod("198.19.0.1/32"));
        desired.routes.insert(DesiredRoute {
            dst: net("198.19.0.0/26"),
            target: RouteTarget::Blackhole,
        });
        desired.vteps.insert(Vtep {
            node: "node2".into(),
            tunnel_address: Ipv4Addr::new(198, 19, 0, 64),
            mac: [0x66, 1, 2, 3, 4, 5],
            host_address: Ipv4Addr::new(198, 18, 0, 12),
        });
        desired
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn without_a_clean_apply_everything_is_reconciled() {
        assert_eq!(scope_of_change(None, &host()), Scope::Everything);
        assert!(nat_changed(None, &host()));
    }

    #[test]
    fn the_same_desired_state_is_unchanged() {
        assert_eq!(scope_of_change(Some(&host()), &host()), Scope::Unchanged);
        assert!(!nat_changed(Some(&host()), &host()));
    }

    #[test]
    fn problems_and_the_pod_mtu_are_not_kernel_objects() {
        let mut desired = host();
        desired.problems.push("a pool overlaps the underlay".into());
        desired.pod_mtu = 1400;
        assert_eq!(scope_of_change(Some(&host()), &desired), Scope::Unchanged);
    }

    #[test]
    fn a_new_pod_is_a_workload_change_of_its_interface_alone() {
        let mut desired = host();
        desired
            .workloads
            .insert("cali2222222222b".into(), pod("198.19.0.2/32"));
        assert_eq!(
            scope_of_change(Some(&host()), &desired),
            Scope::Workloads(set(&["cali2222222222b"]))
        );
    }

    #[test]
    fn a_pod_whose_address_or_mac_changed_is_a_workload_change() {
        let mut moved = host();
        moved
            .workloads
            .insert("cali1111111111a".into(), pod("198.19.0.9/32"));
        assert_eq!(
            scope_of_change(Some(&host()), &moved),
            Scope::Workloads(set(&["cali1111111111a"]))
        );
        let mut new_mac = host();
        if let Some(workload) = new_mac.workloads.get_mut("cali1111111111a") {
            workload.mac = None;
        }
        assert_eq!(
            scope_of_change(Some(&host()), &new_mac),
            Scope::Workloads(set(&["cali1111111111a"]))
        );
    }

    #[test]
    fn a_removed_pod_reconciles_everything() {
        // Its routes and ARP entries may outlive it on an interface the CNI plugin is still removing:
        // the full planner's grace period decides that.
        let mut desired = host();
        desired.workloads.clear();
        assert_eq!(scope_of_change(Some(&host()), &desired), Scope::Everything);
    }

    #[test]
    fn any_host_wide_change_reconciles_everything() {
        let mut route = host();
        route.routes.insert(DesiredRoute {
            dst: net("198.19.1.0/26"),
            target: RouteTarget::Vxlan {
                gateway: Ipv4Addr::new(198, 19, 1, 0),
            },
        });
        let mut vtep = host();
        vtep.vteps.clear();
        let mut ipip = host();
        ipip.ipip_pools.push("ipip-pool".into());
        for desired in [route, vtep, ipip] {
            assert_eq!(scope_of_change(Some(&host()), &desired), Scope::Everything);
        }
    }

    #[test]
    fn nat_is_judged_apart_from_the_kernel_objects() {
        let mut desired = host();
        desired
            .nat
            .masquerade_from
            .insert(Ipv4Net::new(Ipv4Addr::new(198, 19, 0, 0), 16).expect("net"));
        assert!(nat_changed(Some(&host()), &desired));
        assert_eq!(scope_of_change(Some(&host()), &desired), Scope::Unchanged);
    }

    #[test]
    fn workloads_only_keeps_the_named_interfaces_and_routes_to_their_addresses() {
        let mut desired = host();
        desired
            .workloads
            .insert("cali2222222222b".into(), pod("198.19.0.2/32"));
        let borrowed = DesiredRoute {
            dst: net("198.19.0.2/32"),
            target: RouteTarget::Vxlan {
                gateway: Ipv4Addr::new(198, 19, 0, 64),
            },
        };
        desired.routes.insert(borrowed.clone());
        let scoped = workloads_only(&desired, &set(&["cali2222222222b"]));
        assert_eq!(
            scoped.workloads.keys().collect::<Vec<_>>(),
            vec!["cali2222222222b"]
        );
        assert_eq!(scoped.routes, [borrowed].into());
        assert!(scoped.vteps.is_empty() && scoped.vxlan.is_none());
    }
}
