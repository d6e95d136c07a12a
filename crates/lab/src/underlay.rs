//! The underlay: a namespace with bridge `br0` (198.18.0.1/24) and, per host, a namespace whose `eth0`
//! (198.18.0.(10+i)/24, default route via the bridge) is a veth whose peer `nodeI` is a bridge port.
//! With several subnets, the underlay namespace is the router between L2 segments: bridge `br<s>` holds
//! 198.18.<s>.1/24, and host *i* sits on segment (*i*−1) mod *subnets* at 198.18.<s>.(10+*i*).
//! Everything is created from inside the lab's namespaces; the root namespace is never touched.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result, bail};
use calico_netlink::{Netlink, Route};
use ipnet::{IpNet, Ipv4Net};

use crate::netns;
use crate::paths::Lab;

pub const BRIDGE: &str = "br0";
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const PREFIX_LEN: u8 = 24;
/// Hosts get .11, .12, ... ; the /24 leaves room for this many.
pub const MAX_HOSTS: usize = 240;

/// Most L2 segments (198.18.0.0/24, 198.18.1.0/24, ...: inside the test range 198.18.0.0/15).
pub const MAX_SUBNETS: usize = 8;

/// Host `index`'s (1-based) underlay address with a single segment.
pub fn host_address(index: usize) -> Result<Ipv4Addr> {
    host_address_on(index, 1)
}

/// The segment host `index` (1-based) sits on among `subnets`.
pub fn segment_of(index: usize, subnets: usize) -> usize {
    (index.saturating_sub(1)) % subnets.max(1)
}

/// Segment `segment`'s router address (the bridge's).
pub fn gateway_of(segment: usize) -> Result<Ipv4Addr> {
    let third = u8::try_from(segment).context("segment")?;
    Ok(Ipv4Addr::new(198, 18, third, 1))
}

/// Host `index`'s (1-based) underlay address among `subnets` segments.
pub fn host_address_on(index: usize, subnets: usize) -> Result<Ipv4Addr> {
    if index == 0 || index > MAX_HOSTS {
        bail!("host index {index} out of range 1..={MAX_HOSTS}");
    }
    if subnets == 0 || subnets > MAX_SUBNETS {
        bail!("--subnets must be between 1 and {MAX_SUBNETS}");
    }
    // In range by the checks above.
    let last = u8::try_from(10 + index).context("host index")?;
    let third = u8::try_from(segment_of(index, subnets)).context("segment")?;
    Ok(Ipv4Addr::new(198, 18, third, last))
}

fn net(addr: Ipv4Addr, len: u8) -> Result<IpNet> {
    Ok(IpNet::V4(Ipv4Net::new(addr, len)?))
}

/// Brings up loopback in the namespace a socket belongs to.
fn loopback_up(nl: &mut Netlink) -> Result<()> {
    let lo = nl.link_by_name("lo")?.context("no loopback device")?;
    nl.set_link_up(lo.index)?;
    Ok(())
}

/// Creates the underlay and host namespaces and wires them. `hosts` are the host names, in order.
pub fn build(lab: &Lab, hosts: &[String]) -> Result<()> {
    build_segments(lab, hosts, 1, false)
}

/// [`build`] with hosts spread over `subnets` L2 segments that the underlay namespace routes between.
/// The IPv4 GSO/GRO maximum of the underlay's links with `--big-tcp` (192 KiB, a common BIG TCP size).
pub const BIG_TCP_SIZE: u32 = 196_608;

/// `big_tcp`: give every underlay link (bridges, ports, the hosts' eth0) [`BIG_TCP_SIZE`], as a NIC
/// with BIG TCP enabled would have.
pub fn build_segments(lab: &Lab, hosts: &[String], subnets: usize, big_tcp: bool) -> Result<()> {
    if subnets == 0 || subnets > MAX_SUBNETS {
        bail!("--subnets must be between 1 and {MAX_SUBNETS}");
    }
    let underlay = lab.underlay_ns();
    let mut names = vec![underlay.clone()];
    names.extend(hosts.iter().map(|h| lab.ns(h)));
    netns::add(&names)?;

    let ul_ns = netns::open(&underlay)?;
    let mut ul = Netlink::in_netns(&ul_ns)?;
    loopback_up(&mut ul)?;
    let mut bridges = Vec::with_capacity(subnets);
    for segment in 0..subnets {
        let name = if segment == 0 {
            BRIDGE.to_string()
        } else {
            format!("br{segment}")
        };
        ul.add_bridge(&name)?;
        let bridge = ul.link_by_name(&name)?.context("bridge vanished")?;
        ul.add_address(bridge.index, net(gateway_of(segment)?, PREFIX_LEN)?)?;
        ul.set_link_up(bridge.index)?;
        bridges.push(bridge.index);
    }
    if subnets > 1 {
        // The underlay namespace routes between the segments.
        ul_ns
            .run(|| calico_netlink::sysctl::set("net/ipv4/ip_forward", "1"))?
            .context("enabling forwarding in the underlay")?;
    }

    for (i, host) in hosts.iter().enumerate() {
        let address = host_address_on(i + 1, subnets)?;
        let segment = segment_of(i + 1, subnets);
        let gateway = gateway_of(segment)?;
        let bridge_index = bridges[segment];
        let host_ns = netns::open(&lab.ns(host))?;
        // The host's eth0 is created directly inside its namespace.
        ul.add_veth(host, "eth0", Some(&host_ns), None)?;
        let port = ul.link_by_name(host)?.context("veth vanished")?;
        ul.set_link_master(port.index, bridge_index)?;
        ul.set_link_up(port.index)?;

        let mut nl = Netlink::in_netns(&host_ns)?;
        loopback_up(&mut nl)?;
        let eth0 = nl.link_by_name("eth0")?.context("eth0 vanished")?;
        nl.add_address(eth0.index, net(address, PREFIX_LEN)?)?;
        nl.set_link_up(eth0.index)?;
        nl.add_route(&Route::via(
            net(Ipv4Addr::UNSPECIFIED, 0)?,
            IpAddr::V4(gateway),
            eth0.index,
        ))?;
        host_ns
            .run(|| calico_netlink::sysctl::set("net/ipv4/ip_forward", "1"))?
            .with_context(|| format!("enabling forwarding in {host}"))?;
        if big_tcp {
            nl.set_link_ipv4_gso_gro_max(eth0.index, BIG_TCP_SIZE)
                .with_context(|| format!("BIG TCP on {host}'s eth0 (needs Linux 6.3 or later)"))?;
        }
    }
    if big_tcp {
        for link in ul.links()? {
            if link.name != "lo" {
                ul.set_link_ipv4_gso_gro_max(link.index, BIG_TCP_SIZE)
                    .with_context(|| format!("BIG TCP on the underlay's {}", link.name))?;
            }
        }
    }
    Ok(())
}

/// From this many hosts on, `calico-lab up` gives each host permanent ARP entries for its peers
/// ([`static_neighbours`]); below it, hosts learn each other by ARP as real hosts do.
pub const STATIC_NEIGHBOURS_FROM: usize = 16;

/// Permanent ARP entries on every host's eth0 for the hosts on its own segment it will have BGP
/// sessions with (all of them in a mesh; with route reflectors, the reflectors, and every host on a
/// reflector); returns how many.
///
/// Why: the kernel's ARP table is one table for every network namespace, and its gc_thresh3 (1,024 by
/// default) counts the dynamic entries of all of them, so a large mesh on one machine (a 50-host mesh
/// has 2,450 sessions, each needing an entry on both ends) overflows it ("neighbour: arp_cache:
/// neighbor table overflow!") and sessions never connect; other labs on the machine suffer too. Real
/// hosts each have their own table. Permanent entries are exempt from that count, and they are what
/// each host would have learned by ARP anyway, so BGP's behaviour is unchanged.
pub fn static_neighbours(
    hosts: &[crate::state::HostState],
    subnets: usize,
    reflectors: usize,
) -> Result<usize> {
    let mut links = Vec::with_capacity(hosts.len());
    for host in hosts {
        let ns = netns::open(&host.namespace)?;
        let mut nl = Netlink::in_netns(&ns)?;
        let eth0 = nl
            .link_by_name("eth0")?
            .with_context(|| format!("{} has no eth0", host.name))?;
        let mac = eth0
            .mac
            .with_context(|| format!("{}'s eth0 has no MAC address", host.name))?;
        let ip: IpAddr = host
            .address
            .parse()
            .with_context(|| format!("{}'s address {:?}", host.name, host.address))?;
        links.push((nl, eth0.index, mac, ip));
    }
    let peers = |h: usize| -> Vec<usize> {
        (0..hosts.len())
            .filter(|p| *p != h && (reflectors == 0 || h < reflectors || *p < reflectors))
            .filter(|p| segment_of(h + 1, subnets) == segment_of(p + 1, subnets))
            .collect()
    };
    let mut written = 0;
    for h in 0..links.len() {
        for p in peers(h) {
            let (mac, ip) = (links[p].2, links[p].3);
            let (nl, index, _, _) = &mut links[h];
            nl.replace_neighbour(&calico_netlink::Neighbour {
                index: *index,
                ip,
                mac,
                permanent: true,
            })
            .with_context(|| format!("ARP entry for {ip} on {}", hosts[h].name))?;
            written += 1;
        }
    }
    Ok(written)
}
