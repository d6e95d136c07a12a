//! The underlay: a namespace with bridge `br0` (198.18.0.1/22) and, per host, a namespace whose `eth0`
//! (198.18.0.0 + 10 + i, /22: 198.18.0.11 ... 198.18.0.250, then 198.18.1.0 ...; default route via the
//! bridge) is a veth whose peer `nodeI` is a bridge port.
//! Everything is created from inside the lab's namespaces; the root namespace is never touched.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result, bail};
use calico_netlink::{Netlink, Route};
use ipnet::{IpNet, Ipv4Net};

use crate::netns;
use crate::paths::Lab;

pub const BRIDGE: &str = "br0";
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const PREFIX_LEN: u8 = 22;
/// Hosts get 198.18.0.11, .12, ... on; the /22 (198.18.0.0-198.18.3.255, inside the lab's
/// 198.18.0.0/15 and clear of the pods' 198.19.0.0/16) leaves room for this many. The Linux bridge
/// takes at most 1,024 ports.
pub const MAX_HOSTS: usize = 1000;

/// Host `index`'s (1-based) underlay address.
pub fn host_address(index: usize) -> Result<Ipv4Addr> {
    if index == 0 || index > MAX_HOSTS {
        bail!("host index {index} out of range 1..={MAX_HOSTS}");
    }
    // In range by the check above: at most 198.18.3.250.
    let offset = u32::try_from(10 + index).context("host index")?;
    Ok(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 18, 0, 0)) + offset,
    ))
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
    let underlay = lab.underlay_ns();
    let mut names = vec![underlay.clone()];
    names.extend(hosts.iter().map(|h| lab.ns(h)));
    netns::add(&names)?;

    let ul_ns = netns::open(&underlay)?;
    let mut ul = Netlink::in_netns(&ul_ns)?;
    loopback_up(&mut ul)?;
    ul.add_bridge(BRIDGE)?;
    let bridge = ul.link_by_name(BRIDGE)?.context("bridge vanished")?;
    ul.add_address(bridge.index, net(GATEWAY, PREFIX_LEN)?)?;
    ul.set_link_up(bridge.index)?;

    for (i, host) in hosts.iter().enumerate() {
        let address = host_address(i + 1)?;
        let host_ns = netns::open(&lab.ns(host))?;
        // The host's eth0 is created directly inside its namespace.
        ul.add_veth(host, "eth0", Some(&host_ns), None)?;
        let port = ul.link_by_name(host)?.context("veth vanished")?;
        ul.set_link_master(port.index, bridge.index)?;
        ul.set_link_up(port.index)?;

        let mut nl = Netlink::in_netns(&host_ns)?;
        loopback_up(&mut nl)?;
        let eth0 = nl.link_by_name("eth0")?.context("eth0 vanished")?;
        nl.add_address(eth0.index, net(address, PREFIX_LEN)?)?;
        nl.set_link_up(eth0.index)?;
        nl.add_route(&Route::via(
            net(Ipv4Addr::UNSPECIFIED, 0)?,
            IpAddr::V4(GATEWAY),
            eth0.index,
        ))?;
        host_ns
            .run(|| calico_netlink::sysctl::set("net/ipv4/ip_forward", "1"))?
            .with_context(|| format!("enabling forwarding in {host}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_stay_in_the_underlay_subnet() {
        assert_eq!(host_address(1).unwrap(), Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(host_address(240).unwrap(), Ipv4Addr::new(198, 18, 0, 250));
        assert_eq!(host_address(250).unwrap(), Ipv4Addr::new(198, 18, 1, 4));
        let subnet = Ipv4Net::new(GATEWAY, PREFIX_LEN).unwrap().trunc();
        let last = host_address(MAX_HOSTS).unwrap();
        assert!(subnet.contains(&last) && last != subnet.broadcast());
        assert!(host_address(0).is_err() && host_address(MAX_HOSTS + 1).is_err());
    }
}
