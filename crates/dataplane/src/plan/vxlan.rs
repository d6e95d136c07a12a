//! `vxlan.calico` (the device and its tunnel address) and the remote tunnel endpoints on it (a permanent
//! neighbour and an FDB entry each).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use calico_netlink::{Address, FdbEntry, Link, Neighbour, VxlanSpec};
use ipnet::{IpNet, Ipv4Net};

use super::{Links, Op, Plan};
use calico_felix::desired::{VXLAN_IFACE, Vtep, VxlanDevice};

/// Why an existing `vxlan.calico` must be recreated (settings the kernel cannot change in place), or
/// None when it can be kept and modified.
pub fn recreate_reason(link: &Link, want: &VxlanDevice, parent_index: u32) -> Option<String> {
    if link.kind.as_deref() != Some("vxlan") {
        return Some(format!(
            "it is of kind {}",
            link.kind.as_deref().unwrap_or("none")
        ));
    }
    let info = link.vxlan.clone().unwrap_or_default();
    let checks = [
        ("VNI", info.vni != Some(want.vni)),
        ("port", info.dst_port != Some(want.port)),
        ("local address", info.local != Some(want.local)),
        ("parent", info.underlay_index != Some(parent_index)),
        ("learning", info.learning != Some(false)),
    ];
    let wrong: Vec<&str> = checks
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(what, _)| *what)
        .collect();
    (!wrong.is_empty()).then(|| format!("its {} differ", wrong.join(", ")))
}

/// The ops that make `vxlan.calico` what `want` says (None: no device). `addresses` are the device's
/// current addresses (empty when it does not exist).
///
/// A device that is missing, or whose VNI, port, local address, parent or learning differ (the kernel
/// cannot change those in place), is created (after deleting the old one); MAC, MTU and up are changed
/// in place. Addresses are planned only for a device that exists and is kept: after a create, plan again
/// with the new device observed.
pub fn plan_device(want: Option<&VxlanDevice>, links: &Links, addresses: &[Address]) -> Plan {
    let mut plan = Plan::default();
    let existing = links.get(VXLAN_IFACE);
    let Some(want) = want else {
        if let Some(link) = existing {
            plan.ops.push(Op::DeleteLink {
                index: link.index,
                name: VXLAN_IFACE.to_string(),
                reason: "no pool asks for VXLAN".to_string(),
            });
        }
        return plan;
    };
    let Some(parent) = links.get(&want.parent) else {
        plan.failures.push(format!(
            "VXLAN device {VXLAN_IFACE}: its parent interface {} does not exist",
            want.parent
        ));
        return plan;
    };
    let create = Op::CreateVxlan(VxlanSpec {
        name: VXLAN_IFACE.to_string(),
        vni: want.vni,
        dst_port: want.port,
        local: want.local,
        underlay_index: Some(parent.index),
        learning: false,
        mtu: Some(want.mtu),
        mac: Some(want.mac),
    });
    let Some(link) = existing else {
        plan.ops.push(create);
        return plan;
    };
    if let Some(reason) = recreate_reason(link, want, parent.index) {
        plan.ops.push(Op::DeleteLink {
            index: link.index,
            name: VXLAN_IFACE.to_string(),
            reason,
        });
        plan.ops.push(create);
        return plan;
    }
    if link.mac != Some(want.mac) {
        plan.ops.push(Op::SetLinkMac {
            index: link.index,
            mac: want.mac,
        });
    }
    if link.mtu != want.mtu {
        plan.ops.push(Op::SetLinkMtu {
            index: link.index,
            mtu: want.mtu,
        });
    }
    if !link.up {
        plan.ops.push(Op::SetLinkUp { index: link.index });
    }
    // Exactly the tunnel address (/32) among the device's IPv4 addresses; IPv6 ones (the kernel's
    // link-local address) are left alone.
    let wanted = IpNet::V4(Ipv4Net::from(want.address));
    let mut present = false;
    for address in addresses.iter().filter(|a| a.index == link.index) {
        if address.net == wanted {
            present = true;
        } else if address.net.addr().is_ipv4() {
            plan.ops.push(Op::DelAddress {
                index: link.index,
                net: address.net,
            });
        }
    }
    if !present {
        plan.ops.push(Op::AddAddress {
            index: link.index,
            net: wanted,
        });
    }
    plan
}

/// The VTEP ops on the device with `index`, split by when they must run: `writes` (entries missing or
/// wrong) before the routes that use them, `removals` (entries no VTEP accounts for) after the routes
/// that used them are gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VtepPlan {
    pub writes: Vec<Op>,
    pub removals: Vec<Op>,
}

pub fn plan_vteps(
    index: u32,
    vteps: &BTreeSet<Vtep>,
    neighbours: &[Neighbour],
    fdb: &[FdbEntry],
) -> VtepPlan {
    let mut plan = VtepPlan::default();
    let wanted_neighbours: BTreeMap<IpAddr, [u8; 6]> = vteps
        .iter()
        .map(|v| (IpAddr::V4(v.tunnel_address), v.mac))
        .collect();
    let wanted_fdb: BTreeMap<[u8; 6], IpAddr> = vteps
        .iter()
        .map(|v| (v.mac, IpAddr::V4(v.host_address)))
        .collect();
    let neighbours: Vec<&Neighbour> = neighbours.iter().filter(|n| n.index == index).collect();
    let fdb: Vec<&FdbEntry> = fdb.iter().filter(|e| e.index == index).collect();
    let by_ip: HashMap<IpAddr, &Neighbour> = neighbours.iter().map(|n| (n.ip, *n)).collect();

    for (&ip, &mac) in &wanted_neighbours {
        let want = Neighbour {
            index,
            ip,
            mac,
            permanent: true,
        };
        if by_ip.get(&ip).copied() != Some(&want) {
            plan.writes.push(Op::ReplaceNeighbour(want));
        }
    }
    for (&mac, &dst) in &wanted_fdb {
        if !fdb.iter().any(|e| e.mac == mac && e.dst == dst) {
            plan.writes
                .push(Op::ReplaceFdb(FdbEntry { index, mac, dst }));
        }
    }
    // An entry whose key is wanted is rewritten in place by the writes above, so only entries whose key
    // no VTEP has are removed (deleting by key after the rewrite would delete the new entry). For FDB,
    // extra destinations of a MAC that already has the wanted one are stale too.
    for stale in neighbours {
        if !wanted_neighbours.contains_key(&stale.ip) {
            plan.removals.push(Op::DelNeighbour(*stale));
        }
    }
    for stale in &fdb {
        let extra = match wanted_fdb.get(&stale.mac) {
            None => true,
            Some(&dst) => {
                stale.dst != dst && fdb.iter().any(|e| e.mac == stale.mac && e.dst == dst)
            }
        };
        if extra {
            plan.removals.push(Op::DelFdb(**stale));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use calico_netlink::VxlanInfo;

    use super::*;
    use crate::plan::fixtures::{link, vxlan_link};

    const ETH0: u32 = 2;
    const DEV: u32 = 7;
    const MAC: [u8; 6] = [0x66, 1, 2, 3, 4, 5];

    fn want() -> VxlanDevice {
        VxlanDevice {
            vni: 4096,
            port: 4789,
            local: Ipv4Addr::new(198, 18, 0, 11),
            parent: "eth0".into(),
            mac: MAC,
            mtu: 1450,
            address: Ipv4Addr::new(198, 19, 0, 0),
        }
    }

    fn good_info() -> VxlanInfo {
        VxlanInfo {
            vni: Some(4096),
            dst_port: Some(4789),
            local: Some(Ipv4Addr::new(198, 18, 0, 11)),
            underlay_index: Some(ETH0),
            learning: Some(false),
        }
    }

    fn tunnel_address() -> Address {
        Address {
            index: DEV,
            net: "198.19.0.0/32".parse().expect("net"),
        }
    }

    fn links_with(device: Link) -> Links {
        Links::new([link(ETH0, "eth0"), device])
    }

    #[test]
    fn a_missing_device_is_created_with_every_setting() {
        let plan = plan_device(Some(&want()), &Links::new([link(ETH0, "eth0")]), &[]);
        assert_eq!(
            plan.ops,
            vec![Op::CreateVxlan(VxlanSpec {
                name: "vxlan.calico".into(),
                vni: 4096,
                dst_port: 4789,
                local: Ipv4Addr::new(198, 18, 0, 11),
                underlay_index: Some(ETH0),
                learning: false,
                mtu: Some(1450),
                mac: Some(MAC),
            })]
        );
    }

    #[test]
    fn a_device_as_desired_gets_no_ops() {
        let links = links_with(vxlan_link(DEV, good_info(), MAC, 1450));
        assert_eq!(
            plan_device(Some(&want()), &links, &[tunnel_address()]),
            Plan::default()
        );
    }

    #[test]
    fn settings_the_kernel_cannot_change_recreate_the_device() {
        let cases: [(&str, VxlanInfo); 5] = [
            (
                "VNI",
                VxlanInfo {
                    vni: Some(1),
                    ..good_info()
                },
            ),
            (
                "port",
                VxlanInfo {
                    dst_port: Some(8472),
                    ..good_info()
                },
            ),
            (
                "local address",
                VxlanInfo {
                    local: Some(Ipv4Addr::new(198, 18, 0, 99)),
                    ..good_info()
                },
            ),
            (
                "parent",
                VxlanInfo {
                    underlay_index: Some(99),
                    ..good_info()
                },
            ),
            (
                "learning",
                VxlanInfo {
                    learning: Some(true),
                    ..good_info()
                },
            ),
        ];
        for (what, info) in cases {
            let links = links_with(vxlan_link(DEV, info, MAC, 1450));
            let plan = plan_device(Some(&want()), &links, &[tunnel_address()]);
            assert_eq!(plan.ops.len(), 2, "{what}: {:?}", plan.ops);
            match &plan.ops[0] {
                Op::DeleteLink { index, reason, .. } => {
                    assert_eq!(*index, DEV);
                    assert_eq!(reason, &format!("its {what} differ"));
                }
                other => panic!("{what}: expected a delete first, got {other:?}"),
            }
            assert!(matches!(plan.ops[1], Op::CreateVxlan(_)), "{what}");
        }
    }

    #[test]
    fn a_link_of_another_kind_with_our_name_is_replaced() {
        let mut impostor = link(DEV, VXLAN_IFACE);
        impostor.kind = Some("bridge".into());
        let plan = plan_device(Some(&want()), &links_with(impostor), &[]);
        assert!(
            matches!(&plan.ops[0], Op::DeleteLink { reason, .. } if reason == "it is of kind bridge")
        );
    }

    #[test]
    fn mac_mtu_and_up_are_modified_in_place() {
        let mut device = vxlan_link(DEV, good_info(), [0x66, 9, 9, 9, 9, 9], 1400);
        device.up = false;
        let plan = plan_device(Some(&want()), &links_with(device), &[tunnel_address()]);
        assert_eq!(
            plan.ops,
            vec![
                Op::SetLinkMac {
                    index: DEV,
                    mac: MAC
                },
                Op::SetLinkMtu {
                    index: DEV,
                    mtu: 1450
                },
                Op::SetLinkUp { index: DEV },
            ]
        );
    }

    #[test]
    fn only_the_tunnel_address_stays_and_ipv6_is_left_alone() {
        let links = links_with(vxlan_link(DEV, good_info(), MAC, 1450));
        let stray: IpNet = "198.19.9.9/32".parse().expect("net");
        let link_local: IpNet = "fe80::1/64".parse().expect("net");
        let addresses = [
            Address {
                index: DEV,
                net: stray,
            },
            Address {
                index: DEV,
                net: link_local,
            },
        ];
        let plan = plan_device(Some(&want()), &links, &addresses);
        assert_eq!(
            plan.ops,
            vec![
                Op::DelAddress {
                    index: DEV,
                    net: stray
                },
                Op::AddAddress {
                    index: DEV,
                    net: tunnel_address().net
                },
            ]
        );
    }

    #[test]
    fn a_missing_parent_is_a_failure_and_nothing_is_done() {
        let plan = plan_device(Some(&want()), &Links::new([]), &[]);
        assert!(plan.ops.is_empty());
        assert_eq!(plan.failures.len(), 1);
        assert!(plan.failures[0].contains("parent interface eth0 does not exist"));
    }

    #[test]
    fn an_unwanted_device_is_deleted_and_no_device_no_ops() {
        let links = links_with(vxlan_link(DEV, good_info(), MAC, 1450));
        let plan = plan_device(None, &links, &[]);
        assert!(matches!(
            plan.ops.as_slice(),
            [Op::DeleteLink { index: DEV, .. }]
        ));
        assert_eq!(
            plan_device(None, &Links::new([link(ETH0, "eth0")]), &[]),
            Plan::default()
        );
    }

    fn vtep(n: u8) -> Vtep {
        Vtep {
            node: format!("node{n}"),
            tunnel_address: Ipv4Addr::new(198, 19, n, 0),
            mac: [0x66, 0, 0, 0, 0, n],
            host_address: Ipv4Addr::new(198, 18, 0, 10 + n),
        }
    }

    fn neighbour_of(v: &Vtep) -> Neighbour {
        Neighbour {
            index: DEV,
            ip: IpAddr::V4(v.tunnel_address),
            mac: v.mac,
            permanent: true,
        }
    }

    fn fdb_of(v: &Vtep) -> FdbEntry {
        FdbEntry {
            index: DEV,
            mac: v.mac,
            dst: IpAddr::V4(v.host_address),
        }
    }

    #[test]
    fn vteps_are_written_when_missing_and_nothing_when_present() {
        let vteps: BTreeSet<Vtep> = [vtep(2), vtep(3)].into();
        let plan = plan_vteps(DEV, &vteps, &[], &[]);
        assert_eq!(
            plan.writes,
            vec![
                Op::ReplaceNeighbour(neighbour_of(&vtep(2))),
                Op::ReplaceNeighbour(neighbour_of(&vtep(3))),
                Op::ReplaceFdb(fdb_of(&vtep(2))),
                Op::ReplaceFdb(fdb_of(&vtep(3))),
            ]
        );
        assert!(plan.removals.is_empty());
        let neighbours = [neighbour_of(&vtep(2)), neighbour_of(&vtep(3))];
        let fdb = [fdb_of(&vtep(2)), fdb_of(&vtep(3))];
        assert_eq!(
            plan_vteps(DEV, &vteps, &neighbours, &fdb),
            VtepPlan::default()
        );
    }

    #[test]
    fn a_moved_vtep_is_rewritten_and_a_gone_one_removed_after_the_routes() {
        // node2's host moved to a new address and MAC; node3 left the cluster.
        let moved = Vtep {
            mac: [0x66, 0, 0, 0, 0, 0x22],
            host_address: Ipv4Addr::new(198, 18, 0, 99),
            ..vtep(2)
        };
        let vteps: BTreeSet<Vtep> = [moved.clone()].into();
        let neighbours = [neighbour_of(&vtep(2)), neighbour_of(&vtep(3))];
        let fdb = [fdb_of(&vtep(2)), fdb_of(&vtep(3))];
        let plan = plan_vteps(DEV, &vteps, &neighbours, &fdb);
        assert_eq!(
            plan.writes,
            vec![
                Op::ReplaceNeighbour(neighbour_of(&moved)),
                Op::ReplaceFdb(fdb_of(&moved)),
            ]
        );
        // node2's neighbour is rewritten in place (same tunnel address); its old MAC's FDB entry goes.
        assert_eq!(
            plan.removals,
            vec![
                Op::DelNeighbour(neighbour_of(&vtep(3))),
                Op::DelFdb(fdb_of(&vtep(2))),
                Op::DelFdb(fdb_of(&vtep(3))),
            ]
        );
    }

    #[test]
    fn an_extra_destination_of_a_wanted_mac_is_removed() {
        let vteps: BTreeSet<Vtep> = [vtep(2)].into();
        let extra = FdbEntry {
            dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 77)),
            ..fdb_of(&vtep(2))
        };
        let plan = plan_vteps(
            DEV,
            &vteps,
            &[neighbour_of(&vtep(2))],
            &[fdb_of(&vtep(2)), extra],
        );
        assert!(plan.writes.is_empty());
        assert_eq!(plan.removals, vec![Op::DelFdb(extra)]);
    }

    #[test]
    fn entries_on_other_devices_are_ignored() {
        let mut elsewhere = neighbour_of(&vtep(2));
        elsewhere.index = 99;
        let plan = plan_vteps(DEV, &BTreeSet::new(), &[elsewhere], &[]);
        assert_eq!(plan, VtepPlan::default());
    }
}
