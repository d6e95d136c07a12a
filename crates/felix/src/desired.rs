//! The dataplane one host should have: a pure function of the model and a few facts about the host.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

use calico_api::spec::ippool::EncapMode;

use crate::model::{Model, NodeInfo, PoolInfo};

/// Calico's VXLAN device name, VNI and UDP port.
pub const VXLAN_IFACE: &str = calico_contracts::iface::VXLAN;
pub const VXLAN_VNI: u32 = 4096;
pub const VXLAN_PORT: u16 = 4789;
/// Outer IPv4 + UDP + VXLAN + inner Ethernet headers.
pub const VXLAN_OVERHEAD: u32 = 50;
/// Route protocol Felix marks its non-workload routes with (blackholes, tunnel routes), as Calico does.
pub const FELIX_ROUTE_PROTOCOL: u8 = calico_contracts::route::PROTO_FELIX;
/// Route protocol of the /32 routes to local workloads (`proto boot`), as the CNI plugin writes them.
pub const WORKLOAD_ROUTE_PROTOCOL: u8 = calico_contracts::route::PROTO_CNI;
/// Host-side workload interfaces start with this.
pub const WORKLOAD_IFACE_PREFIX: &str = calico_contracts::iface::WORKLOAD_PREFIX;
/// The nftables table (family `ip`) Felix owns; policy will live here too.
pub const NFT_TABLE: &str = "calico";

/// The kernel's GSO/GRO size limit without BIG TCP.
pub const DEFAULT_GSO_MAX_SIZE: u32 = 65_536;

/// Facts about this host that are not in the datastore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostContext {
    pub nodename: String,
    /// The node's underlay address and subnet (Node `spec.bgp.ipv4Address`).
    pub address: Option<Ipv4Net>,
    /// The interface that carries `address` (the VXLAN device's parent).
    pub uplink: Option<String>,
    /// That interface's MTU.
    pub uplink_mtu: u32,
    /// That interface's largest IPv4 GSO packet (above 65,536 with BIG TCP; 0 when unknown).
    pub uplink_gso_ipv4_max: u32,
    /// calico-node's BGP speaker routes this host's traffic to other hosts' blocks in pools without
    /// encapsulation (`proto bird` routes, as Calico's BIRD does); Felix then programs no direct
    /// routes for them. Without it (Calico's `vxlan` or `none` networking backend) Felix routes
    /// same-subnet hosts directly itself.
    pub bgp: bool,
}

/// Everything this host's kernel should hold that Felix owns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// Local workload interfaces (host ends, `cali…`) and the addresses routed to each
    /// (`<ip>/32 dev <iface> scope link proto boot`), plus the sysctls a workload interface needs.
    pub workloads: BTreeMap<String, WorkloadIface>,
    /// Felix-owned routes other than workload routes, all in the main table with protocol 80.
    pub routes: BTreeSet<DesiredRoute>,
    /// The VXLAN device, when any enabled pool asks for VXLAN and this host has an address and a
    /// tunnel address.
    pub vxlan: Option<VxlanDevice>,
    /// Remote tunnel endpoints: a permanent neighbour (tunnel IP → MAC) and an FDB entry
    /// (MAC → host IP) on the VXLAN device for each.
    pub vteps: BTreeSet<Vtep>,
    /// NAT-outgoing, rendered into the `calico` nftables table.
    pub nat: Nat,
    /// The MTU pods on this host should use (uplink MTU minus the largest encapsulation overhead in
    /// use); written where the CNI plugin reads it when its `mtu` is 0.
    pub pod_mtu: u32,
    /// The IPv4 GSO/GRO maximum for pods' interfaces, written where the CNI plugin reads it; 0 leaves
    /// the kernel's default (65,536).
    pub pod_gso_ipv4_max: u32,
    /// Problems the dataplane cannot act on (e.g. a pool that overlaps the underlay), for status/logs.
    pub problems: Vec<String>,
    /// Pools that ask for IPIP; the driver reports when the kernel cannot make `tunl0`.
    pub ipip_pools: Vec<String>,
}

/// A local workload's host-side interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkloadIface {
    /// Host routes (/32 or /128) to the workload.
    pub addresses: BTreeSet<IpNet>,
    /// The workload's MAC: each IPv4 address gets a permanent neighbour entry on the interface, so no
    /// ARP exchange is needed to reach the pod.
    pub mac: Option<[u8; 6]>,
}

/// How a Felix-owned route forwards.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RouteTarget {
    /// `blackhole <block>`: a block affine to this host; more specific workload routes win.
    Blackhole,
    /// `<dst> via <remote tunnel IP> dev vxlan.calico onlink`.
    Vxlan { gateway: Ipv4Addr },
    /// `<dst> via <remote host IP>` straight over the underlay (no encapsulation, same subnet).
    Direct { gateway: IpAddr },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DesiredRoute {
    pub dst: IpNet,
    pub target: RouteTarget,
}

/// `vxlan.calico` as it should be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VxlanDevice {
    pub vni: u32,
    pub port: u16,
    /// Outer source address: the node's underlay address.
    pub local: Ipv4Addr,
    /// The underlay interface.
    pub parent: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// The node's tunnel address, assigned as a /32.
    pub address: Ipv4Addr,
}

/// One remote host's VXLAN tunnel endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Vtep {
    pub node: String,
    pub tunnel_address: Ipv4Addr,
    pub mac: [u8; 6],
    pub host_address: Ipv4Addr,
}

/// Masquerade traffic from `masquerade_from` pools to destinations outside `all_pools`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Nat {
    /// IPv4 pools (disabled ones too: their pods still run) with `natOutgoing: true`.
    pub masquerade_from: BTreeSet<Ipv4Net>,
    /// Every IPv4 pool (traffic between pools is never masqueraded).
    pub all_pools: BTreeSet<Ipv4Net>,
    /// Floating IPs of local workloads: traffic to `external` is DNATed to `internal`.
    pub floating_ips: BTreeSet<FloatingIp>,
}

/// A local workload's floating IP (`spec.ipNATs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FloatingIp {
    pub external: Ipv4Addr,
    pub internal: Ipv4Addr,
}

/// Calico's VXLAN MAC for a node that has not set one: `66` (`'f'`) then the first five bytes of
/// SHA-1(nodename), so every host derives the same MAC for a node without asking it.
pub fn derived_vxlan_mac(nodename: &str) -> [u8; 6] {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(nodename.as_bytes());
    [b'f', digest[0], digest[1], digest[2], digest[3], digest[4]]
}

/// The dataplane this host should have, given the model. Pure: no I/O, same input, same output.
pub fn compute(model: &Model, host: &HostContext) -> Desired {
    let mut desired = Desired::default();
    let nodes: BTreeMap<&str, &NodeInfo> =
        model.nodes.values().map(|n| (n.name.as_str(), n)).collect();
    let me = nodes.get(host.nodename.as_str()).copied();
    let underlay = host.address.map(|a| a.trunc());

    // Pools the dataplane acts on: IPv4 pools that do not overlap the underlay (routing a pool
    // over the host's own subnet would cut the host off, so such a pool is reported, not programmed).
    let mut pools: Vec<&PoolInfo> = Vec::new();
    for pool in model.pools.values() {
        let IpNet::V4(cidr) = pool.cidr else { continue };
        if let Some(subnet) = underlay
            && (subnet.contains(&cidr.network()) || cidr.contains(&subnet.network()))
        {
            desired.problems.push(format!(
                "IP pool {} ({cidr}) overlaps this host's underlay subnet {subnet}: \
                 no routes or NAT are programmed for it",
                pool.name
            ));
            continue;
        }
        // A disabled pool hands out no new addresses, but its existing pods keep their routes and NAT.
        desired.nat.all_pools.insert(cidr);
        if pool.nat_outgoing {
            desired.nat.masquerade_from.insert(cidr);
        }
        if pool.ipip != EncapMode::Never {
            desired.ipip_pools.push(pool.name.clone());
            // Whatever the kernel can do: without this, such a pool's remote blocks would silently
            // have no route.
            desired.problems.push(format!(
                "IP pool {} ({cidr}) asks for IPIP ({:?}): calico-rs programs no IPIP tunnel routes, so its blocks on other hosts get {} from this host; use vxlanMode instead",
                pool.name,
                pool.ipip,
                if pool.ipip == EncapMode::CrossSubnet {
                    "plain routes only within this host's subnet"
                } else {
                    "no route"
                }
            ));
        }
        pools.push(pool);
    }
    let pool_of = |net: IpNet| -> Option<&PoolInfo> {
        pools
            .iter()
            .copied()
            .find(|p| p.cidr.contains(&net.network()) && p.cidr.prefix_len() <= net.prefix_len())
    };

    // The VXLAN device, when a pool asks for VXLAN and this host has everything it needs.
    let wants_vxlan = pools.iter().any(|p| p.vxlan != EncapMode::Never);
    let uplink_mtu = if host.uplink_mtu == 0 {
        1500
    } else {
        host.uplink_mtu
    };
    if wants_vxlan {
        match (
            host.address,
            &host.uplink,
            me.and_then(|n| n.vxlan_tunnel_address),
        ) {
            (Some(address), Some(uplink), Some(tunnel)) => {
                desired.vxlan = Some(VxlanDevice {
                    vni: VXLAN_VNI,
                    port: VXLAN_PORT,
                    local: address.addr(),
                    parent: uplink.clone(),
                    mac: me
                        .and_then(|n| n.vxlan_mac)
                        .unwrap_or_else(|| derived_vxlan_mac(&host.nodename)),
                    mtu: uplink_mtu.saturating_sub(VXLAN_OVERHEAD),
                    address: tunnel,
                });
            }
            _ => desired.problems.push(format!(
                "a pool asks for VXLAN but node {} has no {}: vxlan.calico is not created yet",
                host.nodename,
                if host.address.is_none() || host.uplink.is_none() {
                    "IPv4 address"
                } else {
                    "VXLAN tunnel address"
                }
            )),
        }
    }
    desired.pod_mtu = if wants_vxlan {
        uplink_mtu.saturating_sub(VXLAN_OVERHEAD)
    } else {
        uplink_mtu
    };
    // Pods get BIG TCP when the uplink has it and their traffic leaves unencapsulated, so routed pod
    // traffic travels in packets as large as the host's own instead of three times as many.
    desired.pod_gso_ipv4_max = if !wants_vxlan && host.uplink_gso_ipv4_max > DEFAULT_GSO_MAX_SIZE {
        host.uplink_gso_ipv4_max
    } else {
        0
    };
    if desired.vxlan.is_some() {
        for node in nodes.values() {
            if node.name == host.nodename {
                continue;
            }
            if let (Some(address), Some(tunnel)) = (node.address, node.vxlan_tunnel_address) {
                desired.vteps.insert(Vtep {
                    node: node.name.clone(),
                    tunnel_address: tunnel,
                    mac: node
                        .vxlan_mac
                        .unwrap_or_else(|| derived_vxlan_mac(&node.name)),
                    host_address: address.addr(),
                });
            }
        }
    }

    // How to reach addresses that live on another node, for a pool's encapsulation.
    let has_vtep = desired.vxlan.is_some();
    let route_to = |node: &str, pool: &PoolInfo| -> Option<RouteTarget> {
        let remote = nodes.get(node)?;
        let remote_address = remote.address?;
        let same_subnet = underlay.is_some_and(|s| s.contains(&remote_address.addr()));
        let vxlan = match pool.vxlan {
            EncapMode::Always => true,
            EncapMode::CrossSubnet => !same_subnet,
            EncapMode::Never => false,
        };
        if vxlan {
            return has_vtep
                .then_some(remote.vxlan_tunnel_address)
                .flatten()
                .map(|gateway| RouteTarget::Vxlan { gateway });
        }
        // IPIP needs tunl0, which this dataplane cannot make; plain routing needs a shared subnet.
        let ipip = match pool.ipip {
            EncapMode::Always => true,
            EncapMode::CrossSubnet => !same_subnet,
            EncapMode::Never => false,
        };
        if host.bgp && pool.vxlan == EncapMode::Never {
            // Learned over BGP and written by the speaker.
            return None;
        }
        (!ipip && same_subnet).then_some(RouteTarget::Direct {
            gateway: IpAddr::V4(remote_address.addr()),
        })
    };

    for block in model.blocks.values() {
        let Some(pool) = pool_of(block.cidr) else {
            continue;
        };
        match block.affinity.as_deref() {
            Some(owner) if owner == host.nodename => {
                desired.routes.insert(DesiredRoute {
                    dst: block.cidr,
                    target: RouteTarget::Blackhole,
                });
            }
            Some(owner) => {
                if let Some(target) = route_to(owner, pool) {
                    desired.routes.insert(DesiredRoute {
                        dst: block.cidr,
                        target,
                    });
                }
            }
            None => {}
        }
        // Borrowed addresses: an address used by a node other than the block's owner gets its own
        // host route to that node (more specific than the block's route or blackhole).
        for (ip, user) in &block.borrowed {
            if *user == host.nodename {
                continue;
            }
            if let Some(target) = route_to(user, pool) {
                desired.routes.insert(DesiredRoute {
                    dst: IpNet::from(*ip),
                    target,
                });
            }
        }
    }

    for (key, reason) in &model.decode_errors {
        desired
            .problems
            .push(format!("datastore object {key}: {reason}"));
    }

    for endpoint in model.endpoints.values() {
        if endpoint.node != host.nodename || endpoint.interface.is_empty() {
            continue;
        }
        let entry = desired
            .workloads
            .entry(endpoint.interface.clone())
            .or_default();
        if endpoint.mac.is_some() {
            entry.mac = endpoint.mac;
        }
        for address in &endpoint.addresses {
            // Workload routes are host routes, whatever prefix the endpoint recorded.
            entry.addresses.insert(IpNet::from(address.addr()));
        }
        for &(internal, external) in &endpoint.ip_nats {
            desired
                .nat
                .floating_ips
                .insert(FloatingIp { external, internal });
        }
    }
    desired
}

impl Desired {
    /// A line-per-object text form, stable and diffable (golden tests, debug logs).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (iface, w) in &self.workloads {
            for a in &w.addresses {
                let _ = writeln!(out, "route {a} dev {iface} scope link proto boot");
                if let (Some(mac), IpNet::V4(_)) = (w.mac, a) {
                    let mac = calico_contracts::mac::format(mac);
                    let _ = writeln!(out, "neigh {} lladdr {mac} dev {iface} permanent", a.addr());
                }
            }
            if w.addresses.is_empty() {
                let _ = writeln!(out, "workload {iface} (no addresses)");
            }
        }
        for r in &self.routes {
            let _ = match &r.target {
                RouteTarget::Blackhole => writeln!(out, "route blackhole {} proto 80", r.dst),
                RouteTarget::Vxlan { gateway } => writeln!(
                    out,
                    "route {} via {gateway} dev {VXLAN_IFACE} onlink proto 80",
                    r.dst
                ),
                RouteTarget::Direct { gateway } => {
                    writeln!(out, "route {} via {gateway} proto 80", r.dst)
                }
            };
        }
        if let Some(v) = &self.vxlan {
            let _ = writeln!(
                out,
                "device {VXLAN_IFACE} vni {} port {} local {} dev {} mac {} mtu {} address {}/32",
                v.vni,
                v.port,
                v.local,
                v.parent,
                calico_contracts::mac::format(v.mac),
                v.mtu,
                v.address
            );
        }
        for t in &self.vteps {
            let mac = calico_contracts::mac::format(t.mac);
            let _ = writeln!(
                out,
                "vtep {}: neigh {} lladdr {mac}; fdb {mac} dst {}",
                t.node, t.tunnel_address, t.host_address
            );
        }
        let list = |s: &BTreeSet<Ipv4Net>| {
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "nat masquerade from {{{}}} to outside {{{}}}",
            list(&self.nat.masquerade_from),
            list(&self.nat.all_pools)
        );
        for fip in &self.nat.floating_ips {
            let _ = writeln!(out, "floating ip {} -> {}", fip.external, fip.internal);
        }
        let _ = writeln!(out, "pod mtu {}", self.pod_mtu);
        if self.pod_gso_ipv4_max != 0 {
            let _ = writeln!(out, "pod gso ipv4 max {}", self.pod_gso_ipv4_max);
        }
        for p in &self.ipip_pools {
            let _ = writeln!(out, "ipip pool {p}");
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        out
    }
}
