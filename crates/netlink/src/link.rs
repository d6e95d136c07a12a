//! Links: listing, creating (veth, vxlan, bridge), changing and deleting network interfaces.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};

use crate::socket::Failure;
use crate::{Netlink, NetlinkError, Netns, check_ifname, format_mac};

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// The largest IPv4 GSO packet the stack builds for this link (65,536 unless BIG TCP is on; 0 when
    /// the kernel does not report it).
    pub gso_ipv4_max_size: u32,
    /// IFF_UP: administratively up.
    pub up: bool,
    /// "veth", "vxlan", "bridge", ... (None for plain devices such as loopback).
    pub kind: Option<String>,
    /// Index of the bridge (or other controller) this link is attached to.
    pub master: Option<u32>,
    /// IFLA_LINK, e.g. a veth's peer index (in the namespace `link_netnsid` names, when that is set).
    /// A vxlan's underlay device is part of its vxlan settings instead and not reported here.
    pub parent: Option<u32>,
    /// Set when the peer/underlay lives in another namespace (the id is local to this namespace).
    pub link_netnsid: Option<i32>,
    /// A VXLAN device's settings (None for other kinds).
    pub vxlan: Option<VxlanInfo>,
}

/// The settings of an existing VXLAN device, as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VxlanInfo {
    pub vni: Option<u32>,
    pub dst_port: Option<u16>,
    pub local: Option<Ipv4Addr>,
    /// Index of the underlay device, if one is bound.
    pub underlay_index: Option<u32>,
    pub learning: Option<bool>,
}

impl VxlanInfo {
    fn from_attributes(data: Vec<InfoVxlan>) -> VxlanInfo {
        let mut info = VxlanInfo::default();
        for attribute in data {
            match attribute {
                InfoVxlan::Id(vni) => info.vni = Some(vni),
                InfoVxlan::Port(port) => info.dst_port = Some(port),
                InfoVxlan::Local(local) => info.local = Some(local),
                InfoVxlan::Link(index) if index != 0 => info.underlay_index = Some(index),
                InfoVxlan::Learning(learning) => info.learning = Some(learning),
                _ => {}
            }
        }
        info
    }
}

/// A VXLAN device to create (Calico style: unicast only, FDB entries programmed explicitly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// UDP destination port, 4789 by convention.
    pub dst_port: u16,
    /// Source address for encapsulated packets.
    pub local: Ipv4Addr,
    /// Index of the device that carries the encapsulated traffic.
    pub underlay_index: Option<u32>,
    /// Learn remote MACs from received packets (Calico turns this off).
    pub learning: bool,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

impl Link {
    fn from_message(message: LinkMessage) -> Link {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            gso_ipv4_max_size: 0,
            up: message.header.flags.contains(LinkFlags::Up),
            kind: None,
            master: None,
            parent: None,
            link_netnsid: None,
            vxlan: None,
        };
        for attribute in message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
                }
                LinkAttribute::Mtu(mtu) => link.mtu = mtu,
                LinkAttribute::GsoIpv4MaxSize(size) => link.gso_ipv4_max_size = size,
                LinkAttribute::Controller(master) if master != 0 => link.master = Some(master),
                LinkAttribute::Link(parent) if parent != 0 => link.parent = Some(parent),
                LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                            LinkInfo::Data(InfoData::Vxlan(data)) => {
                                link.vxlan = Some(VxlanInfo::from_attributes(data))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

fn link_message(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes = attributes;
    message
}

impl Netlink {
    /// All links of this socket's namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()));
        let replies = self.named(replies, |_| "list links".to_string())?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(message) => Some(Link::from_message(message)),
                _ => None,
            })
            .collect())
    }

    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let op = format!("get link {name}");
        check_ifname(&op, name)?;
        let request = link_message(0, vec![LinkAttribute::IfName(name.to_string())]);
        self.get_link(request, op)
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, NetlinkError> {
        if index == 0 {
            return Ok(None);
        }
        self.get_link(
            link_message(index, vec![]),
            format!("get link ifindex {index}"),
        )
    }

    fn get_link(&mut self, request: LinkMessage, op: String) -> Result<Option<Link>, NetlinkError> {
        match self.request(RouteNetlinkMessage::GetLink(request), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(message) => Some(Link::from_message(message)),
                _ => None,
            })),
            Err(failure) if failure.errno() == Some(nix::libc::ENODEV) => Ok(None),
            Err(failure) => Err(failure.into_error(op)),
        }
    }

    /// A link's name for error messages ("ifindex N" when it cannot be looked up).
    pub(crate) fn link_label(&mut self, index: u32) -> String {
        match self.link_by_index(index) {
            Ok(Some(link)) => link.name,
            _ => format!("ifindex {index}"),
        }
    }

    /// Creates a veth pair: `name` in this socket's namespace and `peer_name` directly in `peer_netns`
    /// (or here too when None), both with `mtu` if given.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_netns: Option<&Netns>,
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let mut op = format!("add veth {name} peer {peer_name}");
        if let Some(ns) = peer_netns {
            op = format!("{op} in netns {}", ns.path().display());
        }
        check_ifname(&op, name)?;
        check_ifname(&op, peer_name)?;
        let mut peer = vec![LinkAttribute::IfName(peer_name.to_string())];
        let mut attributes = vec![LinkAttribute::IfName(name.to_string())];
        if let Some(ns) = peer_netns {
            peer.push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        }
        if let Some(mtu) = mtu {
            peer.push(LinkAttribute::Mtu(mtu));
            attributes.push(LinkAttribute::Mtu(mtu));
        }
        attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(link_message(0, peer)))),
        ]));
        let result = self.request(
            RouteNetlinkMessage::NewLink(link_message(0, attributes)),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        self.named(result, |_| op).map(drop)
    }

    pub fn add_vxlan(&mut self, spec: &VxlanSpec) -> Result<(), NetlinkError> {
        let op = format!("add vxlan {} id {}", spec.name, spec.vni);
        check_ifname(&op, &spec.name)?;
        if spec.vni >= 1 << 24 {
            return Err(NetlinkError::Invalid(format!(
                "{op}: VNI must be below 2^24"
            )));
        }
        let mut data = vec![
            InfoVxlan::Id(spec.vni),
            InfoVxlan::Local(spec.local),
            InfoVxlan::Port(spec.dst_port),
            InfoVxlan::Learning(spec.learning),
        ];
        if let Some(underlay) = spec.underlay_index {
            data.push(InfoVxlan::Link(underlay));
        }
        let mut attributes = vec![
            LinkAttribute::IfName(spec.name.clone()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(data)),
            ]),
        ];
        if let Some(mtu) = spec.mtu {
            attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = spec.mac {
            attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let result = self.request(
            RouteNetlinkMessage::NewLink(link_message(0, attributes)),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        self.named(result, |_| op).map(drop)
    }

    /// Creates a link of `kind` (e.g. "ipip", "dummy") with no further settings; the kernel refuses kinds
    /// it does not support, which makes this a probe for them.
    pub fn add_link_of_kind(&mut self, name: &str, kind: &str) -> Result<(), NetlinkError> {
        let op = format!("add link {name} type {kind}");
        check_ifname(&op, name)?;
        let attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::from(kind))]),
        ];
        let result = self.request(
            RouteNetlinkMessage::NewLink(link_message(0, attributes)),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        self.named(result, |_| op).map(drop)
    }

    pub fn add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        let op = format!("add bridge {name}");
        check_ifname(&op, name)?;
        let attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        let result = self.request(
            RouteNetlinkMessage::NewLink(link_message(0, attributes)),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        self.named(result, |_| op).map(drop)
    }

    /// Attaches link `index` to bridge `master`; `master` 0 detaches it.
    pub fn set_link_master(&mut self, index: u32, master: u32) -> Result<(), NetlinkError> {
        let result = self.set_link(link_message(index, vec![LinkAttribute::Controller(master)]));
        self.named(result, |s| {
            let link = s.link_label(index);
            match master {
                0 => format!("detach link {link} from its master"),
                _ => format!("set master of link {link} to {}", s.link_label(master)),
            }
        })
    }

    pub fn delete_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let result = self.request(RouteNetlinkMessage::DelLink(link_message(index, vec![])), 0);
        self.named(result, |_| format!("delete link ifindex {index}"))
            .map(drop)
    }

    /// Deletes the link called `name`; Ok(false) if there was none.
    pub fn delete_link_by_name(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let op = format!("delete link {name}");
        check_ifname(&op, name)?;
        let request = link_message(0, vec![LinkAttribute::IfName(name.to_string())]);
        match self.request(RouteNetlinkMessage::DelLink(request), 0) {
            Ok(_) => Ok(true),
            Err(failure) if failure.errno() == Some(nix::libc::ENODEV) => Ok(false),
            Err(failure) => Err(failure.into_error(op)),
        }
    }

    pub fn set_link_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut message = link_message(index, vec![]);
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        let result = self.set_link(message);
        self.named(result, |s| format!("set link {} up", s.link_label(index)))
    }

    pub fn set_link_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut message = link_message(index, vec![]);
        message.header.change_mask = LinkFlags::Up;
        let result = self.set_link(message);
        self.named(result, |s| format!("set link {} down", s.link_label(index)))
    }

    pub fn set_link_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let result = self.set_link(link_message(
            index,
            vec![LinkAttribute::Address(mac.to_vec())],
        ));
        self.named(result, |s| {
            format!(
                "set MAC of link {} to {}",
                s.link_label(index),
                format_mac(mac)
            )
        })
    }

    pub fn set_link_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let result = self.set_link(link_message(index, vec![LinkAttribute::Mtu(mtu)]));
        self.named(result, |s| {
            format!("set MTU of link {} to {mtu}", s.link_label(index))
        })
    }

    /// Sets the largest IPv4 GSO packet the stack builds for link `index` and the largest GRO packet it
    /// merges to (BIG TCP above 65,536 bytes).
    pub fn set_link_ipv4_gso_gro_max(
        &mut self,
        index: u32,
        bytes: u32,
    ) -> Result<(), NetlinkError> {
        let result = self.set_link(link_message(
            index,
            vec![
                LinkAttribute::GsoIpv4MaxSize(bytes),
                LinkAttribute::GroIpv4MaxSize(bytes),
            ],
        ));
        self.named(result, |s| {
            format!(
                "set the IPv4 GSO/GRO maximum of link {} to {bytes}",
                s.link_label(index)
            )
        })
    }

    /// Moves link `index` into namespace `ns` (its index there may differ).
    pub fn set_link_netns(&mut self, index: u32, ns: &Netns) -> Result<(), NetlinkError> {
        let result = self.set_link(link_message(
            index,
            vec![LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd())],
        ));
        self.named(result, |s| {
            format!(
                "move link {} to netns {}",
                s.link_label(index),
                ns.path().display()
            )
        })
    }

    pub fn set_link_name(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        check_ifname(&format!("rename link ifindex {index}"), name)?;
        let result = self.set_link(link_message(
            index,
            vec![LinkAttribute::IfName(name.to_string())],
        ));
        self.named(result, |s| {
            format!("rename link {} to {name}", s.link_label(index))
        })
    }

    fn set_link(&mut self, message: LinkMessage) -> Result<(), Failure> {
        self.request(RouteNetlinkMessage::SetLink(message), 0)
            .map(drop)
    }
}
