//! Neighbour (ARP/NDP) entries and bridge FDB entries (the latter used for VXLAN remote VTEPs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::addr::family_of;
use crate::{Netlink, NetlinkError, format_mac};

/// An IP-to-MAC entry on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Neighbour {
    pub index: u32,
    pub ip: IpAddr,
    pub mac: [u8; 6],
    /// NUD_PERMANENT (never expires or gets re-probed); otherwise the entry is written as REACHABLE.
    pub permanent: bool,
}

/// A bridge forwarding entry on a device (for VXLAN: send frames for `mac` to the VTEP `dst`).
/// Written as AF_BRIDGE, NTF_SELF (the device's own table), permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FdbEntry {
    pub index: u32,
    pub mac: [u8; 6],
    pub dst: IpAddr,
}

fn neighbour_message(index: u32, family: AddressFamily, dst: IpAddr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = index;
    message.attributes = vec![NeighbourAttribute::Destination(NeighbourAddress::from(dst))];
    message
}

fn fdb_message(entry: &FdbEntry) -> NeighbourMessage {
    let mut message = neighbour_message(entry.index, AddressFamily::Bridge, entry.dst);
    message.header.flags = NeighbourFlags::Own;
    message.header.state = NeighbourState::Permanent;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(entry.mac.to_vec()));
    message
}

/// Bridge-family dumps carry the destination as raw bytes.
fn ip_of(address: NeighbourAddress) -> Option<IpAddr> {
    match address {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(v6)),
        NeighbourAddress::Other(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice())
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            16 => <[u8; 16]>::try_from(bytes.as_slice())
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        },
        _ => None,
    }
}

/// Destination and MAC of a dumped entry.
fn ip_and_mac(message: NeighbourMessage) -> (Option<IpAddr>, Option<[u8; 6]>) {
    let (mut ip, mut mac) = (None, None);
    for attribute in message.attributes {
        match attribute {
            NeighbourAttribute::Destination(address) => ip = ip_of(address),
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
            }
            _ => {}
        }
    }
    (ip, mac)
}

impl Netlink {
    /// Adds or overwrites the neighbour entry for `n.ip` on link `n.index`.
    pub fn replace_neighbour(&mut self, n: &Neighbour) -> Result<(), NetlinkError> {
        let mut message = neighbour_message(n.index, family_of(n.ip), n.ip);
        message.header.state = if n.permanent {
            NeighbourState::Permanent
        } else {
            NeighbourState::Reachable
        };
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(n.mac.to_vec()));
        let result = self.request(
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        );
        self.named(result, |s| {
            format!(
                "replace neighbour {} lladdr {} dev {}",
                n.ip,
                format_mac(n.mac),
                s.link_label(n.index)
            )
        })
        .map(drop)
    }

    /// Deletes the neighbour entry for `n.ip` on link `n.index` (the MAC is not compared).
    pub fn del_neighbour(&mut self, n: &Neighbour) -> Result<(), NetlinkError> {
        let message = neighbour_message(n.index, family_of(n.ip), n.ip);
        let result = self.request(RouteNetlinkMessage::DelNeighbour(message), 0);
        self.named(result, |s| {
            format!("delete neighbour {} dev {}", n.ip, s.link_label(n.index))
        })
        .map(drop)
    }

    /// IPv4 and IPv6 neighbour entries that have a MAC address (leaving out the kernel's NOARP multicast
    /// mappings), of link `index` or of all links.
    pub fn neighbours(&mut self, index: Option<u32>) -> Result<Vec<Neighbour>, NetlinkError> {
        let replies = match index {
            // The kernel sends only that link's entries (the socket checks dumps strictly).
            Some(index) => {
                let mut request = NeighbourMessage::default();
                request.attributes.push(NeighbourAttribute::IfIndex(index));
                self.dump(RouteNetlinkMessage::GetNeighbour(request))
            }
            None => self.dump(RouteNetlinkMessage::GetNeighbour(
                NeighbourMessage::default(),
            )),
        };
        let replies = self.named(replies, |s| match index {
            Some(index) => format!("list neighbours of link {}", s.link_label(index)),
            None => "list neighbours".to_string(),
        })?;
        let mut neighbours = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewNeighbour(message) = reply else {
                continue;
            };
            let header = message.header.clone();
            let ip_family = matches!(header.family, AddressFamily::Inet | AddressFamily::Inet6);
            // NOARP entries are the kernel's own multicast/broadcast mappings (e.g. ff02::16), not configuration.
            let kernel_mapping = header.state == NeighbourState::Noarp;
            if !ip_family || kernel_mapping || index.is_some_and(|wanted| wanted != header.ifindex)
            {
                continue;
            }
            // Entries still being resolved (or failed) have no MAC; they are not configuration.
            if let (Some(ip), Some(mac)) = ip_and_mac(message) {
                let permanent = header.state == NeighbourState::Permanent;
                neighbours.push(Neighbour {
                    index: header.ifindex,
                    ip,
                    mac,
                    permanent,
                });
            }
        }
        Ok(neighbours)
    }

    /// Adds or overwrites the FDB entry for `e.mac` on device `e.index`.
    pub fn replace_fdb(&mut self, e: &FdbEntry) -> Result<(), NetlinkError> {
        let result = self.request(
            RouteNetlinkMessage::NewNeighbour(fdb_message(e)),
            NLM_F_CREATE | NLM_F_REPLACE,
        );
        self.named(result, |s| {
            format!(
                "replace fdb {} dst {} dev {}",
                format_mac(e.mac),
                e.dst,
                s.link_label(e.index)
            )
        })
        .map(drop)
    }

    pub fn del_fdb(&mut self, e: &FdbEntry) -> Result<(), NetlinkError> {
        let result = self.request(RouteNetlinkMessage::DelNeighbour(fdb_message(e)), 0);
        self.named(result, |s| {
            format!(
                "delete fdb {} dst {} dev {}",
                format_mac(e.mac),
                e.dst,
                s.link_label(e.index)
            )
        })
        .map(drop)
    }

    /// FDB entries of device `index` that point at a remote IP (VXLAN style); purely local ones are omitted.
    pub fn fdb(&mut self, index: u32) -> Result<Vec<FdbEntry>, NetlinkError> {
        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Bridge;
        let replies = self.dump(RouteNetlinkMessage::GetNeighbour(request));
        let replies = self.named(replies, |s| {
            format!("list fdb of link {}", s.link_label(index))
        })?;
        let mut entries = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewNeighbour(message) = reply else {
                continue;
            };
            if message.header.family != AddressFamily::Bridge || message.header.ifindex != index {
                continue;
            }
            if let (Some(dst), Some(mac)) = ip_and_mac(message) {
                entries.push(FdbEntry { index, mac, dst });
            }
        }
        Ok(entries)
    }
}
