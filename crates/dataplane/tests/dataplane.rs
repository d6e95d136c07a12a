//! `Dataplane::apply` on two "hosts" (namespaces joined by a veth on 198.18.0.0/24), each with a "pod"
//! namespace wired the way the CNI plugin wires one. Needs root, iproute2, nftables and busybox.

mod dataplane_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use calico_dataplane::plan::bgp::BgpRoutes;
use calico_dataplane::{ApplyReport, Dataplane};
use calico_felix::desired::{
    Desired, DesiredRoute, Nat, RouteTarget, VXLAN_IFACE, Vtep, VxlanDevice, WorkloadIface,
};
use calico_testutil::netns::veth_pair;
use dataplane_support::{Ns, lines};
use ipnet::{IpNet, Ipv4Net};

/// One host: its namespace and its pod's, and the addresses Calico would have given them.
struct Host {
    name: &'static str,
    ns: Ns,
    pod: Ns,
    /// Host end of the pod's veth.
    cali: &'static str,
    underlay: Ipv4Addr,
    block: Ipv4Net,
    tunnel: Ipv4Addr,
    vtep_mac: [u8; 6],
    pod_ip: Ipv4Addr,
}

fn ip4(text: &str) -> Ipv4Addr {
    text.parse().expect("IPv4 address")
}

fn net(text: &str) -> IpNet {
    text.parse().expect("prefix")
}

#[allow(clippy::too_many_arguments)]
fn host(
    name: &'static str,
    cali: &'static str,
    underlay: &str,
    block: &str,
    tunnel: &str,
    vtep_mac: [u8; 6],
    pod_ip: &str,
) -> Host {
    Host {
        name,
        ns: Ns::new(&format!("fx-dp-{name}")),
        pod: Ns::new(&format!("fx-dp-{name}-pod")),
        cali,
        underlay: ip4(underlay),
        block: block.parse().expect("block"),
        tunnel: ip4(tunnel),
        vtep_mac,
        pod_ip: ip4(pod_ip),
    }
}

impl Host {
    /// Wires the pod like the CNI plugin: a veth whose host end is `caliX` with MAC ee:ee:ee:ee:ee:ee,
    /// the pod's /32 on eth0 and a default route via 169.254.1.1 (answered by proxy ARP).
    fn wire_pod(&self) {
        self.ns.ip(&[
            "link",
            "add",
            self.cali,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            self.pod.name(),
        ]);
        self.ns
            .ip(&["link", "set", self.cali, "address", "ee:ee:ee:ee:ee:ee"]);
        self.ns.ip(&["link", "set", self.cali, "up"]);
        let pod_cidr = format!("{}/32", self.pod_ip);
        let pod_mac = calico_netlink::format_mac(self.pod_mac());
        self.pod.ip(&["link", "set", "eth0", "address", &pod_mac]);
        self.pod.ip(&["addr", "add", &pod_cidr, "dev", "eth0"]);
        self.pod.ip(&["link", "set", "eth0", "up"]);
        self.pod.ip(&[
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        self.pod.ip(&[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        // Proxy ARP answers for 169.254.1.1 only if the host routes it out of another interface. A
        // host route (rather than a default route via the peer) keeps pod traffic off the underlay
        // whenever the VXLAN route is missing.
        self.ns
            .ip(&["route", "add", "169.254.1.1/32", "dev", "eth0"]);
    }

    fn vxlan(&self) -> VxlanDevice {
        VxlanDevice {
            vni: 4096,
            port: 4789,
            local: self.underlay,
            parent: "eth0".to_string(),
            mac: self.vtep_mac,
            mtu: 1450,
            address: self.tunnel,
        }
    }

    fn vtep(&self) -> Vtep {
        Vtep {
            node: self.name.to_string(),
            tunnel_address: self.tunnel,
            mac: self.vtep_mac,
            host_address: self.underlay,
        }
    }

    /// The pod's eth0 MAC: 0a:58 and the pod's address, as the endpoint would record it.
    fn pod_mac(&self) -> [u8; 6] {
        let [a, b, c, d] = self.pod_ip.octets();
        [0x0a, 0x58, a, b, c, d]
    }

    /// What compute() would give this host with `peer` as the only other node.
    fn desired(&self, peer: &Host) -> Desired {
        let pool: Ipv4Net = "198.19.0.0/16".parse().expect("pool");
        Desired {
            workloads: BTreeMap::from([(
                self.cali.to_string(),
                WorkloadIface {
                    addresses: BTreeSet::from([IpNet::V4(Ipv4Net::from(self.pod_ip))]),
                    mac: Some(self.pod_mac()),
                },
            )]),
            routes: BTreeSet::from([
                DesiredRoute {
                    dst: IpNet::V4(self.block),
                    target: RouteTarget::Blackhole,
                },
                DesiredRoute {
                    dst: IpNet::V4(peer.block),
                    target: RouteTarget::Vxlan {
                        gateway: peer.tunnel,
                    },
                },
            ]),
            vxlan: Some(self.vxlan()),
            vteps: BTreeSet::from([peer.vtep()]),
            nat: Nat {
                masquerade_from: BTreeSet::from([pool]),
                all_pools: BTreeSet::from([pool]),
                ..Nat::default()
            },
            pod_mtu: 1450,
            pod_gso_ipv4_max: 0,
            problems: Vec::new(),
            ipip_pools: Vec::new(),
        }
    }

    fn dataplane(&self) -> Dataplane {
        self.ns
            .run(Dataplane::new)
            .expect("open the dataplane in the host netns")
    }

    fn apply(&self, dataplane: &mut Dataplane, desired: &Desired) -> ApplyReport {
        self.ns
            .run(|| dataplane.apply(desired))
            .expect("apply reaches the kernel")
    }

    /// A veth with both ends in this host and up, as a workload interface before its endpoint exists.
    fn up_veth(&self, host_end: &str, other_end: &str) {
        self.ns.ip(&[
            "link", "add", host_end, "type", "veth", "peer", "name", other_end,
        ]);
        self.ns.ip(&["link", "set", host_end, "up"]);
        self.ns.ip(&["link", "set", other_end, "up"]);
    }

    fn apply_change(&self, dataplane: &mut Dataplane, desired: &Desired) -> ApplyReport {
        self.ns
            .run(|| dataplane.apply_change(desired))
            .expect("apply reaches the kernel")
    }

    fn vxlan_index(&self) -> u32 {
        let shown = self.ns.ip(&["-o", "link", "show", VXLAN_IFACE]);
        shown
            .split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex in {shown}"))
    }

    fn felix_routes(&self) -> Vec<String> {
        lines(&self.ns.ip(&["-4", "route", "show", "proto", "80"]))
    }
}

/// Host A (198.18.0.1, block 198.19.0.0/26) and host B (198.18.0.2, block 198.19.0.64/26), each with
/// one pod, underlay veth between them; no dataplane applied yet.
fn two_hosts() -> (Host, Host) {
    let a = host(
        "a",
        "cali0a",
        "198.18.0.1",
        "198.19.0.0/26",
        "198.19.0.1",
        [0x66, 0x00, 0xc6, 0x13, 0x00, 0x01],
        "198.19.0.2",
    );
    let b = host(
        "b",
        "cali0b",
        "198.18.0.2",
        "198.19.0.64/26",
        "198.19.0.65",
        [0x66, 0x00, 0xc6, 0x13, 0x00, 0x41],
        "198.19.0.66",
    );
    veth_pair(
        &a.ns.netns,
        "eth0",
        "198.18.0.1/24",
        &b.ns.netns,
        "eth0",
        "198.18.0.2/24",
    )
    .unwrap_or_else(|e| panic!("underlay veth: {e}"));
    a.wire_pod();
    b.wire_pod();
    (a, b)
}

fn assert_clean(report: &ApplyReport) {
    assert!(
        report.failures.is_empty() && report.problems.is_empty(),
        "{report:?}"
    );
}

/// Counts VXLAN packets arriving on the underlay of `host` (a test-owned nft table).
fn count_vxlan_arrivals(host: &Host) {
    host.ns.exec_ok(&[
        "nft",
        "add table ip fxtest; \
         add chain ip fxtest pre { type filter hook prerouting priority 0; policy accept; }; \
         add rule ip fxtest pre iifname eth0 udp dport 4789 counter",
    ]);
}

fn vxlan_arrivals(host: &Host) -> u64 {
    let listed = host
        .ns
        .exec_ok(&["nft", "list", "chain", "ip", "fxtest", "pre"]);
    listed
        .split("packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {listed}"))
}

#[test]
fn pods_on_two_hosts_talk_over_vxlan_and_a_second_apply_writes_nothing() {
    let (a, b) = two_hosts();
    let (mut dp_a, mut dp_b) = (a.dataplane(), b.dataplane());
    let (want_a, want_b) = (a.desired(&b), b.desired(&a));
    let report_a = a.apply(&mut dp_a, &want_a);
    let report_b = b.apply(&mut dp_b, &want_b);
    assert_clean(&report_a);
    assert_clean(&report_b);
    assert!(
        report_a.nft_applied && report_a.writes() > 0,
        "{report_a:?}"
    );
    assert_eq!(
        (
            report_a.routes_added,
            report_a.neighbours_written,
            report_a.fdb_written
        ),
        // Neighbours: the remote VTEP's, and the static ARP entry for the local pod.
        (3, 2, 1),
        "{report_a:?}"
    );
    assert_eq!(
        lines(&a.ns.ip(&["-4", "neigh", "show", "dev", "cali0a"])),
        vec!["198.19.0.2 lladdr 0a:58:c6:13:00:02 PERMANENT".to_string()]
    );

    // The kernel holds what was asked for.
    assert_eq!(
        a.felix_routes(),
        vec![
            "blackhole 198.19.0.0/26".to_string(),
            "198.19.0.64/26 via 198.19.0.65 dev vxlan.calico onlink".to_string(),
        ]
    );
    assert_eq!(
        // iproute2 does not print protocol boot; filtering by it checks it.
        lines(&a.ns.ip(&["route", "show", "proto", "boot", "198.19.0.2"])),
        vec!["198.19.0.2 dev cali0a scope link".to_string()]
    );
    let details = a.ns.ip(&["-d", "link", "show", VXLAN_IFACE]);
    for expected in [
        "vxlan id 4096",
        "local 198.18.0.1",
        "dev eth0",
        "dstport 4789",
        "nolearning",
        "mtu 1450",
        "link/ether 66:00:c6:13:00:01",
        "state UNKNOWN",
    ] {
        assert!(details.contains(expected), "{expected:?} in {details}");
    }
    assert!(
        a.ns.ip(&["-4", "addr", "show", "dev", VXLAN_IFACE])
            .contains("inet 198.19.0.1/32")
    );
    assert_eq!(
        lines(&a.ns.ip(&["-4", "neigh", "show", "dev", VXLAN_IFACE])),
        vec!["198.19.0.65 lladdr 66:00:c6:13:00:41 PERMANENT".to_string()]
    );
    let fdb = a.ns.exec_ok(&["bridge", "fdb", "show", "dev", VXLAN_IFACE]);
    assert!(
        lines(&fdb).contains(&"66:00:c6:13:00:41 dst 198.18.0.2 self permanent".to_string()),
        "{fdb}"
    );
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/cali0a/proxy_arp", "1"),
        ("net/ipv4/neigh/cali0a/proxy_delay", "0"),
        ("net/ipv4/conf/cali0a/forwarding", "1"),
        ("net/ipv4/conf/cali0a/route_localnet", "1"),
    ] {
        assert_eq!(a.ns.sysctl(key), value, "{key}");
    }
    let table = a.ns.exec_ok(&["nft", "list", "table", "ip", "calico"]);
    assert!(
        table.contains("ip saddr @masq-ipam-pools ip daddr != @all-ipam-pools masquerade"),
        "{table}"
    );

    // Pod to pod across hosts, carried as VXLAN (UDP 4789) over the underlay.
    count_vxlan_arrivals(&b);
    assert!(
        a.pod.ping_eventually("198.19.0.66", 5),
        "pod A cannot reach pod B"
    );
    assert!(b.pod.ping("198.19.0.2", 2), "pod B cannot reach pod A");
    assert!(
        vxlan_arrivals(&b) >= 2,
        "no VXLAN packets arrived on B's underlay"
    );

    // Nothing changed: nothing is written.
    for (host, dataplane, desired) in [(&a, &mut dp_a, &want_a), (&b, &mut dp_b, &want_b)] {
        let again = host.apply(dataplane, desired);
        assert_clean(&again);
        assert_eq!(
            again.writes(),
            0,
            "second apply on {}: {again:?}",
            host.name
        );
    }

    // A restarted process (new Dataplane) reads the nftables table back and writes nothing.
    let mut restarted = a.dataplane();
    let first = a.apply(&mut restarted, &want_a);
    assert_eq!(first.writes(), 0, "{first:?}");
    // A table someone deleted comes back.
    a.ns.exec_ok(&["nft", "delete", "table", "ip", "calico"]);
    let healed = a.apply(&mut restarted, &want_a);
    assert!(healed.nft_applied && healed.writes() == 1, "{healed:?}");
    assert!(
        a.pod.ping("198.19.0.66", 2),
        "still connected after all that"
    );
}

#[test]
fn a_removed_remote_vtep_and_route_leave_the_kernel_and_the_path_breaks() {
    let (a, b) = two_hosts();
    let (mut dp_a, mut dp_b) = (a.dataplane(), b.dataplane());
    assert_clean(&a.apply(&mut dp_a, &a.desired(&b)));
    assert_clean(&b.apply(&mut dp_b, &b.desired(&a)));
    assert!(
        a.pod.ping_eventually("198.19.0.66", 5),
        "pod A cannot reach pod B"
    );

    let mut without_b = a.desired(&b);
    without_b.vteps.clear();
    without_b
        .routes
        .retain(|route| route.dst != net("198.19.0.64/26"));
    let report = a.apply(&mut dp_a, &without_b);
    assert_clean(&report);
    assert_eq!(
        (
            report.routes_removed,
            report.neighbours_removed,
            report.fdb_removed,
            report.writes()
        ),
        (1, 1, 1, 3),
        "{report:?}"
    );
    assert_eq!(
        a.felix_routes(),
        vec!["blackhole 198.19.0.0/26".to_string()]
    );
    assert!(lines(&a.ns.ip(&["-4", "neigh", "show", "dev", VXLAN_IFACE])).is_empty());
    let fdb = a.ns.exec_ok(&["bridge", "fdb", "show", "dev", VXLAN_IFACE]);
    assert!(!fdb.contains("66:00:c6:13:00:41"), "{fdb}");
    assert!(!a.pod.ping("198.19.0.66", 1), "pod B still reachable");

    // Only the route back (no VTEP): the tunnel has nowhere to send to, still broken.
    let mut route_only = a.desired(&b);
    route_only.vteps.clear();
    let report = a.apply(&mut dp_a, &route_only);
    assert_eq!((report.routes_added, report.writes()), (1, 1), "{report:?}");
    assert!(!a.pod.ping("198.19.0.66", 1), "reachable without a VTEP");

    // Only the VTEP back (no route): still broken. Then the route too: working again.
    let mut vtep_only = without_b.clone();
    vtep_only.vteps.insert(b.vtep());
    let report = a.apply(&mut dp_a, &vtep_only);
    assert_eq!(
        (
            report.routes_removed,
            report.neighbours_written,
            report.fdb_written,
            report.writes()
        ),
        (1, 1, 1, 3),
        "{report:?}"
    );
    assert!(!a.pod.ping("198.19.0.66", 1), "reachable without a route");
    let report = a.apply(&mut dp_a, &a.desired(&b));
    assert_eq!((report.routes_added, report.writes()), (1, 1), "{report:?}");
    assert!(
        a.pod.ping_eventually("198.19.0.66", 3),
        "route back, path back"
    );
}

#[test]
fn stale_and_stray_routes_go_foreign_routes_stay() {
    let (a, b) = two_hosts();
    let mut dp = a.dataplane();
    let mut desired = a.desired(&b);
    // A direct route over the underlay, and a workload whose interface the CNI plugin has not made yet.
    desired.routes.insert(DesiredRoute {
        dst: net("198.19.1.0/26"),
        target: RouteTarget::Direct {
            gateway: IpAddr::V4(b.underlay),
        },
    });
    desired.workloads.insert(
        "cali0missing".to_string(),
        WorkloadIface {
            addresses: BTreeSet::from([net("198.19.0.3/32")]),
            mac: None,
        },
    );
    let report = a.apply(&mut dp, &desired);
    assert_clean(&report);
    assert_eq!(report.workloads_missing, 1);
    assert!(
        a.felix_routes()
            .contains(&"198.19.1.0/26 via 198.18.0.2 dev eth0".to_string())
    );

    // Someone else's changes: a stale Felix route, a Felix route with the wrong gateway, stray routes on
    // a workload interface (any protocol), a foreign route, and the kernel's route for an address on the
    // workload interface.
    for route in [
        "198.19.5.0/26 via 198.18.0.2 proto 80",
        "198.19.0.9/32 dev cali0a",
        "198.19.7.0/24 dev cali0a proto static",
        "198.19.6.0/24 via 198.18.0.2 proto static",
    ] {
        let mut args = vec!["route", "add"];
        args.extend(route.split(' '));
        a.ns.ip(&args);
    }
    a.ns.ip(&[
        "route",
        "replace",
        "198.19.0.64/26",
        "via",
        "198.19.0.99",
        "dev",
        VXLAN_IFACE,
        "onlink",
        "proto",
        "80",
    ]);
    a.ns.ip(&["addr", "add", "198.18.9.1/30", "dev", "cali0a"]);

    let report = a.apply(&mut dp, &desired);
    assert_clean(&report);
    assert_eq!(
        (report.routes_removed, report.routes_added, report.writes()),
        (3, 1, 4),
        "{report:?}"
    );
    assert_eq!(
        a.felix_routes(),
        vec![
            "blackhole 198.19.0.0/26".to_string(),
            "198.19.0.64/26 via 198.19.0.65 dev vxlan.calico onlink".to_string(),
            "198.19.1.0/26 via 198.18.0.2 dev eth0".to_string(),
        ]
    );
    let cali_routes = lines(&a.ns.ip(&["-4", "route", "show", "dev", "cali0a"]));
    assert_eq!(
        cali_routes,
        vec![
            "198.18.9.0/30 proto kernel scope link src 198.18.9.1".to_string(),
            "198.19.0.2 scope link".to_string(),
        ]
    );
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "198.19.6.0/24"])),
        vec!["198.19.6.0/24 via 198.18.0.2 dev eth0 proto static".to_string()]
    );

    // A desired route whose slot a foreign route holds is refused, by name; the rest is applied.
    desired.routes.insert(DesiredRoute {
        dst: net("198.19.6.0/24"),
        target: RouteTarget::Blackhole,
    });
    // And one the kernel refuses (its gateway is on no subnet).
    desired.routes.insert(DesiredRoute {
        dst: net("198.19.2.0/26"),
        target: RouteTarget::Direct {
            gateway: "198.18.99.1".parse().expect("ip"),
        },
    });
    desired.routes.insert(DesiredRoute {
        dst: net("198.19.3.0/26"),
        target: RouteTarget::Blackhole,
    });
    let report = a.apply(&mut dp, &desired);
    assert_eq!(report.routes_added, 1, "{report:?}");
    assert_eq!(report.failures.len(), 2, "{report:?}");
    assert!(
        report.failures.iter().any(|f| f.contains("198.19.6.0/24")
            && f.contains("protocol 4")
            && f.contains("left alone")),
        "{report:?}"
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("replace route 198.19.2.0/26 via 198.18.99.1:")),
        "{report:?}"
    );
    assert!(
        a.felix_routes()
            .contains(&"blackhole 198.19.3.0/26".to_string())
    );
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "198.19.6.0/24"])),
        vec!["198.19.6.0/24 via 198.18.0.2 dev eth0 proto static".to_string()]
    );
}

#[test]
fn with_routes_of_every_owner_present_only_the_dataplane_s_own_are_changed() {
    let (a, b) = two_hosts();
    let mut dp = a.dataplane();
    let mut desired = a.desired(&b);
    assert_clean(&a.apply(&mut dp, &desired));

    // Every owner of the ownership table at once: the BGP speaker (proto bird, 12) on the uplink and on a
    // workload interface, an administrator (proto static), the kernel (an address's link route), a
    // stale Felix route (proto 80) and a stray CNI route (proto boot) on a workload interface.
    for route in [
        "198.19.8.0/26 via 198.18.0.2 proto bird",
        "198.19.9.0/26 dev cali0a proto bird",
        "198.19.6.0/24 via 198.18.0.2 proto static",
        "198.19.5.0/26 via 198.18.0.2 proto 80",
        "198.19.0.9/32 dev cali0a proto boot",
    ] {
        let mut args = vec!["route", "add"];
        args.extend(route.split(' '));
        a.ns.ip(&args);
    }
    a.ns.ip(&["addr", "add", "198.18.9.1/30", "dev", "cali0a"]);
    let others = || {
        let mut routes = lines(&a.ns.ip(&["-4", "route", "show", "proto", "bird"]));
        routes.extend(lines(&a.ns.ip(&["-4", "route", "show", "proto", "static"])));
        routes
            .extend(lines(&a.ns.ip(&[
                "-4", "route", "show", "proto", "kernel", "dev", "cali0a",
            ])));
        routes
    };
    let before = others();
    assert_eq!(before.len(), 4, "{before:?}");

    let report = a.apply(&mut dp, &desired);
    assert_clean(&report);
    assert_eq!(
        (report.routes_removed, report.writes()),
        (2, 2),
        "only the stale Felix route and the stray CNI route go: {report:?}"
    );
    assert_eq!(others(), before, "routes of other owners are untouched");
    assert!(
        lines(&a.ns.ip(&["route", "show", "198.19.5.0/26"])).is_empty()
            && lines(&a.ns.ip(&["route", "show", "198.19.0.9"])).is_empty()
    );

    // A desired route whose slot a BGP route holds is reported, and the BGP route stays as it was.
    desired.routes.insert(DesiredRoute {
        dst: net("198.19.8.0/26"),
        target: RouteTarget::Blackhole,
    });
    let report = a.apply(&mut dp, &desired);
    assert_eq!(report.writes(), 0, "{report:?}");
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.contains("198.19.8.0/26") && f.contains("protocol 12")),
        "{report:?}"
    );
    assert_eq!(others(), before);
}

#[test]
fn vxlan_mac_and_mtu_change_in_place_a_wrong_vni_recreates_and_none_deletes() {
    let (a, b) = two_hosts();
    let mut dp = a.dataplane();
    let mut desired = a.desired(&b);
    assert_clean(&a.apply(&mut dp, &desired));
    let index = a.vxlan_index();
    // A stray address on the device goes; the tunnel address stays.
    a.ns.ip(&["addr", "add", "198.18.77.1/24", "dev", VXLAN_IFACE]);

    let device = desired.vxlan.as_mut().expect("vxlan");
    device.mac = [0x66, 0x00, 0xc6, 0x13, 0x00, 0x99];
    device.mtu = 1400;
    let report = a.apply(&mut dp, &desired);
    assert_clean(&report);
    // MAC, MTU, stray address; the kernel flushes a device's neighbours when its MAC changes, so the
    // VTEP's neighbour is written again in the same apply.
    assert_eq!(
        (
            report.device_changes,
            report.neighbours_written,
            report.writes()
        ),
        (3, 1, 4),
        "{report:?}"
    );
    assert_eq!(
        lines(&a.ns.ip(&["-4", "neigh", "show", "dev", VXLAN_IFACE])),
        vec!["198.19.0.65 lladdr 66:00:c6:13:00:41 PERMANENT".to_string()]
    );
    assert_eq!(a.vxlan_index(), index, "changed in place, not recreated");
    let details = a.ns.ip(&["-d", "link", "show", VXLAN_IFACE]);
    assert!(
        details.contains("mtu 1400") && details.contains("link/ether 66:00:c6:13:00:99"),
        "{details}"
    );
    let addresses = a.ns.ip(&["-4", "addr", "show", "dev", VXLAN_IFACE]);
    assert!(
        addresses.contains("198.19.0.1/32") && !addresses.contains("198.18.77.1"),
        "{addresses}"
    );
    assert_eq!(a.apply(&mut dp, &desired).writes(), 0);

    desired.vxlan.as_mut().expect("vxlan").vni = 4097;
    let report = a.apply(&mut dp, &desired);
    assert_clean(&report);
    assert_ne!(a.vxlan_index(), index, "a new VNI needs a new device");
    let details = a.ns.ip(&["-d", "link", "show", VXLAN_IFACE]);
    assert!(
        details.contains("vxlan id 4097") && details.contains("mtu 1400"),
        "{details}"
    );
    // Deleting the device took its address, neighbour, FDB entry and route; all are back.
    assert_eq!(
        (
            report.neighbours_written,
            report.fdb_written,
            report.routes_added
        ),
        (1, 1, 1),
        "{report:?}"
    );
    assert!(
        a.felix_routes()
            .contains(&"198.19.0.64/26 via 198.19.0.65 dev vxlan.calico onlink".to_string())
    );
    assert!(
        a.ns.ip(&["-4", "addr", "show", "dev", VXLAN_IFACE])
            .contains("198.19.0.1/32")
    );
    assert_eq!(a.apply(&mut dp, &desired).writes(), 0);

    // No VXLAN wanted: its routes and the device go.
    desired.vxlan = None;
    desired.vteps.clear();
    desired
        .routes
        .retain(|route| !matches!(route.target, RouteTarget::Vxlan { .. }));
    let report = a.apply(&mut dp, &desired);
    assert_clean(&report);
    assert_eq!(
        (report.routes_removed, report.device_changes),
        (1, 1),
        "{report:?}"
    );
    assert!(
        !a.ns
            .netns
            .link_names()
            .expect("links")
            .contains(&VXLAN_IFACE.to_string())
    );
    assert_eq!(a.apply(&mut dp, &desired).writes(), 0);
}

#[test]
fn ipip_pools_are_reported_when_the_kernel_cannot_make_ipip_links() {
    let ns = Ns::new("fx-dp-ipip");
    // What the kernel says to iproute2 is the reference for what the probe must find.
    let by_iproute = ns
        .exec(&["ip", "link", "add", "fxprobe", "type", "ipip"])
        .status
        .success();
    if by_iproute {
        ns.ip(&["link", "delete", "fxprobe"]);
    }
    let mut dp = ns.run(Dataplane::new).expect("dataplane");
    let supported = ns.run(|| dp.ipip_supported());
    assert_eq!(supported, by_iproute);
    assert!(
        !ns.netns
            .link_names()
            .expect("links")
            .contains(&"cali-ipipprobe".to_string()),
        "the probe link is removed"
    );

    let desired = Desired {
        ipip_pools: vec!["ipip-pool".to_string()],
        ..Desired::default()
    };
    let report = ns.run(|| dp.apply(&desired)).expect("apply");
    assert!(report.failures.is_empty(), "{report:?}");
    if supported {
        assert!(report.problems.is_empty(), "{report:?}");
    } else {
        assert_eq!(
            report.problems,
            vec![
                "IP pool ipip-pool asks for IPIP but this kernel has no ipip support (tunl0 \
                 cannot be created); its traffic is not encapsulated"
                    .to_string()
            ]
        );
    }
}

/// The CNI plugin writes its pod's route before the pod's endpoint reaches Felix: a route on a new
/// workload interface that no endpoint names yet is kept for the grace period, then removed.
#[test]
fn routes_on_a_new_interface_without_an_endpoint_wait_out_the_grace_period() {
    let (a, b) = two_hosts();
    let mut dp = a.dataplane().with_route_grace(Duration::from_millis(600));
    let desired = a.desired(&b);
    assert_clean(&a.apply(&mut dp, &desired));

    a.up_veth("cali0new", "tmp0new");
    a.ns.ip(&["route", "add", "198.19.0.30/32", "dev", "cali0new"]);
    let report = a.apply(&mut dp, &desired);
    assert_eq!(
        (report.routes_deferred, report.routes_removed),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "dev", "cali0new"])),
        vec!["198.19.0.30 scope link".to_string()]
    );

    std::thread::sleep(Duration::from_millis(700));
    let report = a.apply(&mut dp, &desired);
    assert_eq!(
        (report.routes_deferred, report.routes_removed),
        (0, 1),
        "{report:?}"
    );
    assert!(lines(&a.ns.ip(&["route", "show", "dev", "cali0new"])).is_empty());
}

/// Each local pod has a static ARP entry on its host-side interface; a lost one comes back and a
/// permanent entry for an address the pod does not have goes.
#[test]
fn workload_static_arp_entries_are_kept_exact() {
    let (a, b) = two_hosts();
    let mut dp = a.dataplane();
    let desired = a.desired(&b);
    assert_clean(&a.apply(&mut dp, &desired));
    a.ns.ip(&["neigh", "del", "198.19.0.2", "dev", "cali0a"]);
    a.ns.ip(&[
        "neigh",
        "add",
        "198.19.0.77",
        "lladdr",
        "0a:58:c6:13:00:4d",
        "dev",
        "cali0a",
        "nud",
        "permanent",
    ]);
    let report = a.apply(&mut dp, &desired);
    assert_clean(&report);
    assert_eq!(
        (report.neighbours_written, report.neighbours_removed),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(
        lines(&a.ns.ip(&["-4", "neigh", "show", "dev", "cali0a"])),
        vec!["198.19.0.2 lladdr 0a:58:c6:13:00:02 PERMANENT".to_string()]
    );
    assert_eq!(a.apply(&mut dp, &desired).writes(), 0);
}

/// Workload sysctls are verified once per interface; the periodic full pass (`recheck_all`) reads
/// them again and restores one changed behind Felix's back.
#[test]
fn workload_sysctls_are_verified_once_and_restored_on_a_full_pass() {
    let (a, b) = two_hosts();
    let mut dp = a.dataplane();
    let desired = a.desired(&b);
    assert_clean(&a.apply(&mut dp, &desired));
    a.ns.exec_ok(&["sysctl", "-qw", "net.ipv4.conf.cali0a.proxy_arp=0"]);
    let report = a.apply(&mut dp, &desired);
    assert_eq!(report.sysctls_written, 0, "{report:?}");
    assert_eq!(a.ns.sysctl("net/ipv4/conf/cali0a/proxy_arp"), "0");
    dp.recheck_all();
    let report = a.apply(&mut dp, &desired);
    assert_eq!(report.sysctls_written, 1, "{report:?}");
    assert_eq!(a.ns.sysctl("net/ipv4/conf/cali0a/proxy_arp"), "1");
}

/// A datastore event that adds a pod is applied as a change: the new pod's route, sysctls and ARP entry
/// are written while nothing else is read or rewritten (a stray route added behind Felix's back stays
/// until the next full apply removes it), and a pod whose interface does not exist yet falls back to
/// the full reconciliation, which reports it missing.
#[test]
fn a_change_from_the_last_apply_touches_only_the_changed_pod() {
    let (a, b) = two_hosts();
    let mut dp = a.dataplane();
    let desired = a.desired(&b);
    assert_clean(&a.apply(&mut dp, &desired));
    a.ns.ip(&["route", "add", "blackhole", "198.19.9.0/26", "proto", "80"]);

    a.up_veth("cali0c", "tmp0c");
    let mut with_pod = desired.clone();
    with_pod.workloads.insert(
        "cali0c".to_string(),
        WorkloadIface {
            addresses: BTreeSet::from([net("198.19.0.3/32")]),
            mac: Some([0x0a, 0x58, 0xc6, 0x13, 0x00, 0x03]),
        },
    );
    let report = a.apply_change(&mut dp, &with_pod);
    assert_clean(&report);
    assert_eq!(
        (
            report.routes_added,
            report.routes_removed,
            report.neighbours_written,
            report.nft_applied
        ),
        (1, 0, 1, false),
        "{report:?}"
    );
    assert!(report.sysctls_written > 0, "{report:?}");
    assert_eq!(
        lines(&a.ns.ip(&["-4", "route", "show", "dev", "cali0c"])),
        vec!["198.19.0.3 scope link".to_string()]
    );
    assert_eq!(a.ns.sysctl("net/ipv4/conf/cali0c/proxy_arp"), "1");
    assert_eq!(
        lines(&a.ns.ip(&["-4", "neigh", "show", "dev", "cali0c"])),
        vec!["198.19.0.3 lladdr 0a:58:c6:13:00:03 PERMANENT".to_string()]
    );
    assert!(
        a.felix_routes()
            .iter()
            .any(|route| route.starts_with("blackhole 198.19.9.0/26")),
        "{:?}",
        a.felix_routes()
    );
    assert_eq!(a.apply_change(&mut dp, &with_pod).writes(), 0);

    let report = a.apply(&mut dp, &with_pod);
    assert_eq!(report.routes_removed, 1, "{report:?}");
    assert!(
        !a.felix_routes()
            .iter()
            .any(|route| route.starts_with("blackhole 198.19.9.0/26"))
    );

    let mut not_wired = with_pod.clone();
    not_wired.workloads.insert(
        "cali0d".to_string(),
        WorkloadIface {
            addresses: BTreeSet::from([net("198.19.0.4/32")]),
            mac: None,
        },
    );
    let report = a.apply_change(&mut dp, &not_wired);
    assert_eq!(report.workloads_missing, 1, "{report:?}");
    assert_eq!(report.writes(), 0, "{report:?}");

    // A pod whose address is already routed elsewhere by someone else: the change does not look at
    // other links, so the kernel refuses the add, and the full reconciliation reports the foreign route
    // and leaves it in place.
    a.ns.ip(&[
        "route",
        "add",
        "198.19.0.5/32",
        "dev",
        "eth0",
        "proto",
        "static",
    ]);
    a.up_veth("cali0e", "tmp0e");
    let mut taken = with_pod.clone();
    taken.workloads.insert(
        "cali0e".to_string(),
        WorkloadIface {
            addresses: BTreeSet::from([net("198.19.0.5/32")]),
            mac: None,
        },
    );
    let report = a.apply_change(&mut dp, &taken);
    assert_eq!(report.routes_added, 0, "{report:?}");
    assert!(
        report
            .failures
            .iter()
            .any(|failure| failure.contains("198.19.0.5/32") && failure.contains("left alone")),
        "{report:?}"
    );
    assert_eq!(
        lines(&a.ns.ip(&["-4", "route", "show", "198.19.0.5/32"])),
        vec!["198.19.0.5 dev eth0 proto static scope link".to_string()]
    );
}

/// Felix's desired state in BGP mode: the pod and the blackhole for the local block, and no route to
/// the other host's block (the BGP speaker's routes carry that).
fn bgp_mode_desired(host: &Host, peer: &Host) -> Desired {
    let mut desired = host.desired(peer);
    desired
        .routes
        .retain(|r| r.target == RouteTarget::Blackhole);
    desired.vxlan = None;
    desired.vteps.clear();
    desired
}

fn bgp_routes(routes: &[(&str, &[&str])], complete: bool) -> BgpRoutes {
    BgpRoutes {
        routes: routes
            .iter()
            .map(|(p, hops)| {
                let hops = hops.iter().map(|h| h.parse().expect("next hop")).collect();
                (net(p), hops)
            })
            .collect(),
        complete,
    }
}

#[test]
fn bgp_routes_carry_pod_traffic_as_proto_bird_and_leave_other_owners_alone() {
    let (a, b) = two_hosts();
    let (mut dp_a, mut dp_b) = (a.dataplane(), b.dataplane());
    assert_clean(&a.apply(&mut dp_a, &bgp_mode_desired(&a, &b)));
    assert_clean(&b.apply(&mut dp_b, &bgp_mode_desired(&b, &a)));
    assert!(!a.pod.ping(&b.pod_ip.to_string(), 1), "no route yet");

    // Routes of other owners, which the speaker must never touch.
    a.ns.ip(&[
        "route",
        "add",
        "198.19.6.0/24",
        "via",
        "198.18.0.2",
        "proto",
        "static",
    ]);
    let static_route = lines(&a.ns.ip(&["route", "show", "proto", "static"]));

    let a_block = a.block.to_string();
    let b_block = b.block.to_string();
    let apply_bgp = |host: &Host, dp: &mut Dataplane, routes: &BgpRoutes| {
        host.ns
            .run(|| dp.apply_bgp_routes(routes))
            .expect("apply reaches the kernel")
    };
    let on_a = bgp_routes(
        &[
            (&b_block, &["198.18.0.2"]),
            // Two equal-cost paths: one multipath route.
            ("198.19.7.0/26", &["198.18.0.2", "198.18.0.3"]),
        ],
        true,
    );
    assert_clean(&apply_bgp(&a, &mut dp_a, &on_a));
    assert_clean(&apply_bgp(
        &b,
        &mut dp_b,
        &bgp_routes(&[(&a_block, &["198.18.0.1"])], true),
    ));
    assert_eq!(
        lines(&a.ns.ip(&["-4", "route", "show", &b_block])),
        vec![format!("{b_block} via 198.18.0.2 dev eth0 proto bird")]
    );
    let multipath = a.ns.ip(&["-4", "route", "show", "198.19.7.0/26"]);
    assert!(
        multipath.contains("proto bird")
            && multipath.contains("nexthop via 198.18.0.2")
            && multipath.contains("nexthop via 198.18.0.3"),
        "{multipath}"
    );
    assert!(
        a.pod.ping_eventually(&b.pod_ip.to_string(), 5),
        "pod to pod over the BGP routes"
    );
    let again = apply_bgp(&a, &mut dp_a, &on_a);
    assert_eq!(again.writes(), 0, "a second pass writes nothing: {again:?}");

    // Felix's own apply leaves the speaker's routes alone, and the speaker leaves Felix's blackhole.
    assert_clean(&a.apply(&mut dp_a, &bgp_mode_desired(&a, &b)));
    let bird_routes = |host: &Host| {
        // A multipath route's `nexthop` lines belong to the route above them.
        lines(&host.ns.ip(&["-4", "route", "show", "proto", "bird"]))
            .into_iter()
            .filter(|line| !line.starts_with("nexthop"))
            .count()
    };
    assert_eq!(bird_routes(&a), 2);
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "proto", "static"])),
        static_route
    );

    // Withdrawn while the peers have not all sent their initial routes (a restart): kept.
    let report = apply_bgp(&a, &mut dp_a, &bgp_routes(&[], false));
    assert_eq!(
        (report.writes(), report.routes_deferred),
        (0, 2),
        "{report:?}"
    );
    assert!(
        a.pod.ping(&b.pod_ip.to_string(), 2),
        "traffic keeps flowing"
    );
    // Withdrawn for good: the routes go, the blackhole and the static route stay.
    let report = apply_bgp(&a, &mut dp_a, &bgp_routes(&[], true));
    assert_eq!(report.routes_removed, 2, "{report:?}");
    assert_eq!(bird_routes(&a), 0);
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "proto", "static"])),
        static_route
    );
    assert!(
        a.ns.ip(&["-4", "route", "show", &a_block])
            .contains("blackhole"),
        "Felix's blackhole for the local block stays"
    );
    assert!(
        !a.pod.ping(&b.pod_ip.to_string(), 1),
        "no route, no traffic"
    );
}
