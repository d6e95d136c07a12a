//! Wiring a container into the host as Calico does: a veth pair whose host end answers ARP for the pod's
//! gateway (`169.254.1.1`) by proxy ARP, a /32 route to the pod on the host, and a default route in the pod.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use calico_netlink::{
    Family, Netlink, NetlinkError, Netns, Route, RouteScope, TABLE_MAIN, format_mac, sysctl,
};
use ipnet::IpNet;

/// The MAC every host-side workload interface gets, as in Calico.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The pod's IPv4 gateway: never a real address, answered by proxy ARP on the host end.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pod's IPv6 gateway: the host end's link-local address (from `ee:ee:ee:ee:ee:ee`).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// What to build for one attachment.
#[derive(Clone, Debug)]
pub struct WireSpec<'a> {
    pub host_iface: &'a str,
    pub ifname: &'a str,
    pub netns: &'a Path,
    /// The pod's addresses, as host prefixes (/32, /128).
    pub ips: &'a [IpNet],
    pub mtu: u32,
    /// BIG TCP: the IPv4 GSO/GRO maximum for both ends, when above the kernel's 65,536 (0: leave it).
    pub gso_ipv4_max: u32,
    /// The pod end's MAC (chosen by the caller, who records it before the link exists).
    pub pod_mac: [u8; 6],
    pub allow_ip_forwarding: bool,
}

/// A random locally administered unicast MAC (never the host end's `ee:ee:ee:ee:ee:ee`).
pub fn random_mac() -> [u8; 6] {
    loop {
        let mut mac: [u8; 6] = rand::random();
        mac[0] = (mac[0] & 0xfe) | 0x02;
        if mac != HOST_MAC {
            return mac;
        }
    }
}

fn err(e: NetlinkError) -> String {
    e.to_string()
}

/// Build the veth pair and routes. On failure, whatever was created is removed again.
pub fn wire(spec: &WireSpec) -> Result<(), String> {
    let ns = Netns::open(spec.netns).map_err(err)?;
    let mut host = Netlink::new().map_err(err)?;
    // A host end left by an earlier attempt for the same workload is in the way: remove it.
    host.delete_link_by_name(spec.host_iface).map_err(err)?;
    host.add_veth(spec.host_iface, spec.ifname, Some(&ns), Some(spec.mtu))
        .map_err(err)?;
    match configure(spec, &ns, &mut host) {
        Ok(()) => Ok(()),
        Err(e) => {
            // Deleting the host end deletes the pod end and every route through them.
            let _ = host.delete_link_by_name(spec.host_iface);
            Err(e)
        }
    }
}

fn configure(spec: &WireSpec, ns: &Netns, host: &mut Netlink) -> Result<(), String> {
    let host_link = host
        .link_by_name(spec.host_iface)
        .map_err(err)?
        .ok_or_else(|| format!("host interface {} vanished", spec.host_iface))?;
    host.set_link_mac(host_link.index, HOST_MAC).map_err(err)?;
    let has_v4 = spec.ips.iter().any(|n| n.addr().is_ipv4());
    let has_v6 = spec.ips.iter().any(|n| n.addr().is_ipv6());
    let iface = spec.host_iface;
    let mut host_sysctls = vec![(format!("net/ipv6/conf/{iface}/accept_ra"), "0")];
    if has_v4 {
        host_sysctls.extend([
            (format!("net/ipv4/conf/{iface}/route_localnet"), "1"),
            (format!("net/ipv4/neigh/{iface}/proxy_delay"), "0"),
            (format!("net/ipv4/conf/{iface}/proxy_arp"), "1"),
            (format!("net/ipv4/conf/{iface}/forwarding"), "1"),
        ]);
    }
    if has_v6 {
        host_sysctls.extend([
            (format!("net/ipv6/conf/{iface}/disable_ipv6"), "0"),
            (format!("net/ipv6/conf/{iface}/accept_dad"), "0"),
            (format!("net/ipv6/conf/{iface}/proxy_ndp"), "1"),
            (format!("net/ipv6/conf/{iface}/forwarding"), "1"),
        ]);
    }
    for (key, value) in &host_sysctls {
        // IPv6 may be disabled on the host; only the IPv4 settings are essential for an IPv4 pod.
        if let Err(e) = sysctl::set(key, value)
            && (key.starts_with("net/ipv4") || has_v6)
        {
            return Err(e.to_string());
        }
    }
    let gso = (spec.gso_ipv4_max > 65_536).then_some(spec.gso_ipv4_max);
    if let Some(bytes) = gso {
        host.set_link_ipv4_gso_gro_max(host_link.index, bytes)
            .map_err(err)?;
    }
    host.set_link_up(host_link.index).map_err(err)?;

    let ips = spec.ips.to_vec();
    let ifname = spec.ifname.to_string();
    let mtu = spec.mtu;
    let forwarding = spec.allow_ip_forwarding;
    let wanted_mac = spec.pod_mac;
    ns.run(move || configure_pod(&ifname, &ips, mtu, gso, wanted_mac, forwarding))
        .map_err(err)??;

    for ip in spec.ips {
        let route =
            Route::link(*ip, host_link.index).with_protocol(calico_contracts::route::PROTO_CNI);
        match host.add_route(&route) {
            Ok(()) => {}
            Err(e) if e.is_exists() => {
                let existing = host
                    .routes(family_of(ip.addr()), Some(TABLE_MAIN))
                    .map_err(err)?
                    .into_iter()
                    .find(|r| r.dst == *ip);
                match existing.and_then(|r| r.oif) {
                    Some(oif) if oif == host_link.index => {}
                    other => {
                        let holder = other
                            .and_then(|i| host.link_by_index(i).ok().flatten())
                            .map_or_else(|| "another route".to_string(), |l| l.name);
                        return Err(format!(
                            "route to {ip} already exists via {holder}: another workload holds this address"
                        ));
                    }
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn family_of(ip: IpAddr) -> Family {
    if ip.is_ipv4() { Family::V4 } else { Family::V6 }
}

/// Runs inside the pod's namespace.
fn configure_pod(
    ifname: &str,
    ips: &[IpNet],
    mtu: u32,
    gso_ipv4_max: Option<u32>,
    mac: [u8; 6],
    allow_ip_forwarding: bool,
) -> Result<(), String> {
    let mut nl = Netlink::new().map_err(err)?;
    let link = nl
        .link_by_name(ifname)
        .map_err(err)?
        .ok_or_else(|| format!("{ifname} is missing in the container namespace"))?;
    if link.mtu != mtu {
        nl.set_link_mtu(link.index, mtu).map_err(err)?;
    }
    nl.set_link_mac(link.index, mac).map_err(err)?;
    if let Some(bytes) = gso_ipv4_max {
        nl.set_link_ipv4_gso_gro_max(link.index, bytes)
            .map_err(err)?;
    }
    let has_v6 = ips.iter().any(|n| n.addr().is_ipv6());
    if has_v6 {
        for (key, value) in [
            ("net/ipv6/conf/all/disable_ipv6", "0"),
            (&*format!("net/ipv6/conf/{ifname}/disable_ipv6"), "0"),
            (&*format!("net/ipv6/conf/{ifname}/accept_dad"), "0"),
        ] {
            sysctl::set(key, value).map_err(err)?;
        }
    }
    let forward = if allow_ip_forwarding { "1" } else { "0" };
    sysctl::set("net/ipv4/ip_forward", forward).map_err(err)?;
    nl.set_link_up(link.index).map_err(err)?;
    for ip in ips {
        nl.add_address(link.index, *ip).map_err(err)?;
    }
    if ips.iter().any(|n| n.addr().is_ipv4()) {
        let gw = IpNet::from(IpAddr::V4(GATEWAY_V4));
        nl.add_route(&Route::link(gw, link.index).with_scope(RouteScope::Link))
            .map_err(err)?;
        nl.add_route(&Route::via(
            "0.0.0.0/0".parse().map_err(|_| "bad default route")?,
            IpAddr::V4(GATEWAY_V4),
            link.index,
        ))
        .map_err(err)?;
    }
    if has_v6 {
        nl.add_route(
            &Route::via(
                "::/0".parse().map_err(|_| "bad default route")?,
                IpAddr::V6(GATEWAY_V6),
                link.index,
            )
            .onlink(),
        )
        .map_err(err)?;
    }
    Ok(())
}

/// Whether the container's namespace already has an interface called `ifname` (a repeated ADD, or a
/// misconfigured second network): then ADD must change nothing.
pub fn pod_has_interface(netns: &Path, ifname: &str) -> Result<bool, String> {
    let ns = Netns::open(netns).map_err(err)?;
    let ifname = ifname.to_string();
    ns.run(move || -> Result<bool, NetlinkError> {
        Ok(Netlink::new()?.link_by_name(&ifname)?.is_some())
    })
    .map_err(err)?
    .map_err(err)
}

/// Remove an attachment: the pod end (when the namespace still exists) and the host end, with the routes
/// through them. Missing pieces are not an error.
pub fn unwire(host_iface: &str, ifname: &str, netns: Option<&Path>) -> Result<(), String> {
    if let Some(path) = netns
        && path.exists()
        && let Ok(ns) = Netns::open(path)
    {
        let ifname = ifname.to_string();
        ns.run(move || -> Result<(), NetlinkError> {
            let mut nl = Netlink::new()?;
            nl.delete_link_by_name(&ifname).map(drop)
        })
        .map_err(err)?
        .map_err(err)?;
    }
    let mut host = Netlink::new().map_err(err)?;
    host.delete_link_by_name(host_iface).map_err(err)?;
    Ok(())
}

/// Compare the live state with what ADD made (the host end `host_iface`, the pod end `ifname` in `netns`
/// with `ips`); the error names the first difference.
pub fn check(host_iface: &str, ifname: &str, netns: &Path, ips: &[IpNet]) -> Result<(), String> {
    let mut host = Netlink::new().map_err(err)?;
    let link = host
        .link_by_name(host_iface)
        .map_err(err)?
        .ok_or_else(|| format!("host interface {} does not exist", host_iface))?;
    if link.mac != Some(HOST_MAC) {
        return Err(format!(
            "host interface {} has MAC {} instead of {}",
            host_iface,
            link.mac.map_or_else(|| "none".into(), format_mac),
            format_mac(HOST_MAC)
        ));
    }
    if !link.up {
        return Err(format!("host interface {} is down", host_iface));
    }
    // One dump per address family, not one per address.
    let mut routes = Vec::new();
    for family in [Family::V4, Family::V6] {
        if ips
            .iter()
            .any(|ip| (family == Family::V4) == ip.addr().is_ipv4())
        {
            routes.extend(host.routes(family, Some(TABLE_MAIN)).map_err(err)?);
        }
    }
    for ip in ips {
        if !routes
            .iter()
            .any(|r| r.dst == *ip && r.oif == Some(link.index))
        {
            return Err(format!("host route {ip} dev {host_iface} is missing"));
        }
    }
    let ns = Netns::open(netns).map_err(err)?;
    let ips = ips.to_vec();
    let ifname = ifname.to_string();
    ns.run(move || check_pod(&ifname, &ips)).map_err(err)?
}

fn check_pod(ifname: &str, ips: &[IpNet]) -> Result<(), String> {
    let mut nl = Netlink::new().map_err(err)?;
    let link = nl
        .link_by_name(ifname)
        .map_err(err)?
        .ok_or_else(|| format!("{ifname} does not exist in the container"))?;
    if !link.up {
        return Err(format!("{ifname} is down in the container"));
    }
    let addrs: Vec<IpNet> = nl
        .addresses(Some(link.index))
        .map_err(err)?
        .into_iter()
        .map(|a| a.net)
        .collect();
    for ip in ips {
        if !addrs.contains(ip) {
            return Err(format!("{ifname} does not have address {ip}"));
        }
    }
    if ips.iter().any(|n| n.addr().is_ipv4()) {
        let routes = nl.routes(Family::V4, Some(TABLE_MAIN)).map_err(err)?;
        let gw_net = IpNet::from(IpAddr::V4(GATEWAY_V4));
        if !routes
            .iter()
            .any(|r| r.dst == gw_net && r.oif == Some(link.index))
        {
            return Err(format!(
                "route {GATEWAY_V4} dev {ifname} is missing in the container"
            ));
        }
        if !routes.iter().any(|r| {
            r.dst.prefix_len() == 0
                && r.gateway == Some(IpAddr::V4(GATEWAY_V4))
                && r.oif == Some(link.index)
        }) {
            return Err(format!(
                "default route via {GATEWAY_V4} dev {ifname} is missing in the container"
            ));
        }
    }
    Ok(())
}
