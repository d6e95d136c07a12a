//! Interface addresses (IPv4 and IPv6).

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::{Netlink, NetlinkError};

/// An address assigned to a link; `net` keeps the host address with its prefix length (198.18.0.1/24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    pub index: u32,
    pub net: IpNet,
}

pub(crate) fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family_of(addr.addr());
    message.header.prefix_len = addr.prefix_len();
    message.header.index = index;
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS equal to it means "not point-to-point".
    message.attributes = vec![
        AddressAttribute::Local(addr.addr()),
        AddressAttribute::Address(addr.addr()),
    ];
    message
}

impl Netlink {
    /// Adds `addr` (host address and prefix) to link `index`; [`NetlinkError::Exists`] if already there.
    pub fn add_address(&mut self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::NewAddress(address_message(index, addr));
        let result = self.request(request, NLM_F_CREATE | NLM_F_EXCL);
        self.named(result, |s| {
            format!("add address {addr} dev {}", s.link_label(index))
        })
        .map(drop)
    }

    /// Removes `addr` from link `index`; [`NetlinkError::NotFound`] if it is not there.
    pub fn del_address(&mut self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        let request = RouteNetlinkMessage::DelAddress(address_message(index, addr));
        let result = self.request(request, 0);
        self.named(result, |s| {
            format!("delete address {addr} dev {}", s.link_label(index))
        })
        .map(drop)
    }

    /// Addresses of link `index`, or of all links when None.
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<Address>, NetlinkError> {
        let replies = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()));
        let replies = self.named(replies, |s| match index {
            Some(index) => format!("list addresses of link {}", s.link_label(index)),
            None => "list addresses".to_string(),
        })?;
        let mut addresses = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewAddress(message) = reply else {
                continue;
            };
            if index.is_some_and(|wanted| wanted != message.header.index) {
                continue;
            }
            let (mut local, mut address) = (None, None);
            for attribute in message.attributes {
                match attribute {
                    AddressAttribute::Local(ip) => local = Some(ip),
                    AddressAttribute::Address(ip) => address = Some(ip),
                    _ => {}
                }
            }
            // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is always our own address.
            let Some(ip) = local.or(address) else {
                continue;
            };
            if let Ok(net) = IpNet::new(ip, message.header.prefix_len) {
                addresses.push(Address {
                    index: message.header.index,
                    net,
                });
            }
        }
        Ok(addresses)
    }
}
