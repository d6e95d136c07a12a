//! Routes (IPv4 and IPv6) in any routing table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteProtocol, RouteScope as WireScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::addr::family_of;
use crate::{Family, Netlink, NetlinkError};

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;
/// Route installed by the kernel itself (e.g. for a configured address).
pub const RTPROT_KERNEL: u8 = 2;
/// Route installed "during boot": what `ip route add` uses by default.
pub const RTPROT_BOOT: u8 = 3;
/// Route installed by an administrator.
pub const RTPROT_STATIC: u8 = 4;

/// How far a route's destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteScope {
    /// Anywhere (gateway routes, blackholes).
    Universe,
    /// Directly attached to the output device.
    Link,
    /// This host.
    Host,
    Other(u8),
}

/// What the kernel does with matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Local,
    Other(u8),
}

/// A route. Build one with [`Route::link`], [`Route::via`], [`Route::blackhole`] or [`Route::new`], then
/// adjust it with the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub scope: RouteScope,
    pub kind: RouteKind,
    pub table: u32,
    /// RTPROT_*: who owns the route; a Calico-style owner tag such as 80 marks routes a program manages.
    pub protocol: u8,
    /// Use the gateway even if no local subnet contains it.
    pub onlink: bool,
    pub metric: Option<u32>,
    /// Preferred source address.
    pub src: Option<IpAddr>,
    /// Equal-cost next hops (`nexthop via … nexthop via …`), instead of `gateway`/`oif`.
    pub multipath: Vec<NextHop>,
}

/// One of a multipath route's next hops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub gateway: IpAddr,
    /// The device; `None` when writing lets the kernel find it from the gateway.
    pub oif: Option<u32>,
}

impl Route {
    /// A unicast, universe-scope route in the main table with protocol "boot", and nothing else set.
    pub fn new(dst: IpNet) -> Route {
        Route {
            dst,
            gateway: None,
            oif: None,
            scope: RouteScope::Universe,
            kind: RouteKind::Unicast,
            table: TABLE_MAIN,
            protocol: RTPROT_BOOT,
            onlink: false,
            metric: None,
            src: None,
            multipath: Vec::new(),
        }
    }

    /// `dst dev OIF scope link`: the destination is directly reachable through the device.
    pub fn link(dst: IpNet, oif: u32) -> Route {
        Route {
            oif: Some(oif),
            scope: RouteScope::Link,
            ..Route::new(dst)
        }
    }

    /// `dst via GATEWAY dev OIF`.
    pub fn via(dst: IpNet, gateway: IpAddr, oif: u32) -> Route {
        Route {
            gateway: Some(gateway),
            oif: Some(oif),
            ..Route::new(dst)
        }
    }

    /// `blackhole dst`: matching packets are silently dropped.
    pub fn blackhole(dst: IpNet) -> Route {
        Route {
            kind: RouteKind::Blackhole,
            ..Route::new(dst)
        }
    }

    pub fn with_table(self, table: u32) -> Route {
        Route { table, ..self }
    }

    pub fn with_protocol(self, protocol: u8) -> Route {
        Route { protocol, ..self }
    }

    pub fn with_metric(self, metric: u32) -> Route {
        Route {
            metric: Some(metric),
            ..self
        }
    }

    pub fn with_src(self, src: IpAddr) -> Route {
        Route {
            src: Some(src),
            ..self
        }
    }

    pub fn with_scope(self, scope: RouteScope) -> Route {
        Route { scope, ..self }
    }

    /// Marks the gateway as directly reachable on the output device (`onlink`).
    pub fn onlink(self) -> Route {
        Route {
            onlink: true,
            ..self
        }
    }

    /// The request for this route; Err(reason) if the kernel could not make sense of it.
    fn to_message(&self, for_delete: bool) -> Result<RouteMessage, String> {
        let family = family_of(self.dst.addr());
        for (what, ip) in [("gateway", self.gateway), ("source", self.src)] {
            if ip.is_some_and(|ip| family_of(ip) != family) {
                return Err(format!(
                    "{what} and destination are of different IP families"
                ));
            }
        }
        // Deletes match regardless of scope and owner: the kernel treats NOWHERE / 0 as wildcards.
        let (scope, protocol) = if for_delete {
            (WireScope::NoWhere, RouteProtocol::Unspec)
        } else {
            (
                WireScope::from(u8::from(self.scope)),
                RouteProtocol::from(self.protocol),
            )
        };
        let header = RouteHeader {
            address_family: family,
            destination_prefix_length: self.dst.prefix_len(),
            // Tables above 255 only fit in RTA_TABLE; the header then says "unspecified".
            table: u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
            kind: RouteType::from(u8::from(self.kind)),
            scope,
            protocol,
            flags: if self.onlink {
                RouteFlags::Onlink
            } else {
                RouteFlags::empty()
            },
            ..RouteHeader::default()
        };
        let mut attributes = vec![RouteAttribute::Table(self.table)];
        if self.dst.prefix_len() > 0 {
            attributes.push(RouteAttribute::Destination(route_address(self.dst.addr())));
        }
        if let Some(gateway) = self.gateway {
            attributes.push(RouteAttribute::Gateway(route_address(gateway)));
        }
        if let Some(oif) = self.oif {
            attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(metric) = self.metric {
            attributes.push(RouteAttribute::Priority(metric));
        }
        if let Some(src) = self.src {
            attributes.push(RouteAttribute::PrefSource(route_address(src)));
        }
        if !self.multipath.is_empty() {
            let hops = self
                .multipath
                .iter()
                .map(|hop| {
                    let mut next = RouteNextHop::default();
                    next.interface_index = hop.oif.unwrap_or(0);
                    next.attributes = vec![RouteAttribute::Gateway(route_address(hop.gateway))];
                    next
                })
                .collect();
            attributes.push(RouteAttribute::MultiPath(hops));
        }
        let mut message = RouteMessage::default();
        message.header = header;
        message.attributes = attributes;
        Ok(message)
    }

    /// Parses a dumped route; None for entries that are not plain routes (cache clones, MPLS, ...).
    fn from_message(message: RouteMessage) -> Option<Route> {
        let header = &message.header;
        if header.flags.contains(RouteFlags::Cloned) {
            return None;
        }
        let mut dst_addr = match header.address_family {
            AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => return None,
        };
        let mut route = Route::new(IpNet::new(dst_addr, 0).ok()?);
        route.table = u32::from(header.table);
        route.protocol = u8::from(header.protocol);
        route.scope = RouteScope::from(u8::from(header.scope));
        route.kind = RouteKind::from(u8::from(header.kind));
        route.onlink = header.flags.contains(RouteFlags::Onlink);
        for attribute in message.attributes {
            match attribute {
                RouteAttribute::Destination(address) => dst_addr = ip_of(address)?,
                RouteAttribute::Gateway(address) => route.gateway = ip_of(address),
                RouteAttribute::PrefSource(address) => route.src = ip_of(address),
                RouteAttribute::Oif(oif) => route.oif = Some(oif),
                RouteAttribute::Priority(metric) => route.metric = Some(metric),
                RouteAttribute::Table(table) => route.table = table,
                RouteAttribute::MultiPath(hops) => {
                    route.multipath = hops
                        .into_iter()
                        .filter_map(|hop| {
                            let gateway = hop.attributes.into_iter().find_map(|a| match a {
                                RouteAttribute::Gateway(address) => ip_of(address),
                                _ => None,
                            })?;
                            let oif = (hop.interface_index != 0).then_some(hop.interface_index);
                            Some(NextHop { gateway, oif })
                        })
                        .collect();
                }
                _ => {}
            }
        }
        route.dst = IpNet::new(dst_addr, message.header.destination_prefix_length).ok()?;
        Some(route)
    }
}

impl From<RouteScope> for u8 {
    fn from(scope: RouteScope) -> u8 {
        match scope {
            RouteScope::Universe => 0,
            RouteScope::Link => 253,
            RouteScope::Host => 254,
            RouteScope::Other(value) => value,
        }
    }
}

impl From<u8> for RouteScope {
    fn from(value: u8) -> RouteScope {
        match value {
            0 => RouteScope::Universe,
            253 => RouteScope::Link,
            254 => RouteScope::Host,
            other => RouteScope::Other(other),
        }
    }
}

impl From<RouteKind> for u8 {
    fn from(kind: RouteKind) -> u8 {
        match kind {
            RouteKind::Unicast => 1,
            RouteKind::Local => 2,
            RouteKind::Blackhole => 6,
            RouteKind::Unreachable => 7,
            RouteKind::Prohibit => 8,
            RouteKind::Other(value) => value,
        }
    }
}

impl From<u8> for RouteKind {
    fn from(value: u8) -> RouteKind {
        match value {
            1 => RouteKind::Unicast,
            2 => RouteKind::Local,
            6 => RouteKind::Blackhole,
            7 => RouteKind::Unreachable,
            8 => RouteKind::Prohibit,
            other => RouteKind::Other(other),
        }
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn ip_of(address: RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

impl Netlink {
    /// Adds a route; [`NetlinkError::Exists`] if an equal one is already there.
    pub fn add_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        self.write_route(
            route,
            "add",
            RouteNetlinkMessage::NewRoute,
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds the route or replaces the one with the same destination, table and metric.
    pub fn replace_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        self.write_route(
            route,
            "replace",
            RouteNetlinkMessage::NewRoute,
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes the route with this destination, table and kind (and gateway, device and metric when set);
    /// scope and protocol are not compared. [`NetlinkError::NotFound`] if there is none.
    pub fn del_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        self.write_route(route, "delete", RouteNetlinkMessage::DelRoute, 0)
    }

    fn write_route(
        &mut self,
        route: &Route,
        verb: &str,
        wrap: fn(RouteMessage) -> RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let message = match route.to_message(verb == "delete") {
            Ok(message) => message,
            Err(reason) => {
                return Err(NetlinkError::Invalid(format!(
                    "{verb} route {}: {reason}",
                    self.route_label(route)
                )));
            }
        };
        let result = self.request(wrap(message), flags);
        self.named(result, |s| format!("{verb} route {}", s.route_label(route)))
            .map(drop)
    }

    /// `198.18.1.2/32 via 198.18.0.1 dev cali1234 table 100`, for messages.
    fn route_label(&mut self, route: &Route) -> String {
        let mut label = match route.kind {
            RouteKind::Unicast => route.dst.to_string(),
            RouteKind::Blackhole => format!("blackhole {}", route.dst),
            RouteKind::Unreachable => format!("unreachable {}", route.dst),
            RouteKind::Prohibit => format!("prohibit {}", route.dst),
            RouteKind::Local => format!("local {}", route.dst),
            RouteKind::Other(kind) => format!("type {kind} {}", route.dst),
        };
        if let Some(gateway) = route.gateway {
            label = format!("{label} via {gateway}");
        }
        if let Some(oif) = route.oif {
            label = format!("{label} dev {}", self.link_label(oif));
        }
        if route.table != TABLE_MAIN {
            label = format!("{label} table {}", route.table);
        }
        label
    }

    /// Routes of `table` whose output link is `oif`, both families. The kernel filters (the socket
    /// checks dumps strictly), so this costs what the matching routes cost, not the whole table.
    pub fn routes_via(&mut self, table: u32, oif: u32) -> Result<Vec<Route>, NetlinkError> {
        let mut request = RouteMessage::default();
        request.header.address_family = AddressFamily::Unspec;
        match u8::try_from(table) {
            Ok(small) => request.header.table = small,
            Err(_) => request.attributes.push(RouteAttribute::Table(table)),
        }
        request.attributes.push(RouteAttribute::Oif(oif));
        let replies = self.dump(RouteNetlinkMessage::GetRoute(request));
        let replies = self.named(replies, |s| {
            format!("list routes of table {table} via {}", s.link_label(oif))
        })?;
        Ok(routes_in(replies, |route| {
            route.table == table && route.oif == Some(oif)
        }))
    }

    /// Routes of `family`. With `Some(table)` only that table's routes are returned, which leaves out the
    /// kernel's local table (255: local and broadcast address routes) unless that is the one asked for;
    /// with None, routes of every table.
    pub fn routes(
        &mut self,
        family: Family,
        table: Option<u32>,
    ) -> Result<Vec<Route>, NetlinkError> {
        let mut request = RouteMessage::default();
        request.header.address_family = match family {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
            Family::All => AddressFamily::Unspec,
        };
        let replies = self.dump(RouteNetlinkMessage::GetRoute(request));
        let replies = self.named(replies, |_| match table {
            Some(table) => format!("list routes of table {table}"),
            None => "list routes".to_string(),
        })?;
        Ok(routes_in(replies, |route| {
            table.is_none_or(|table| route.table == table)
        }))
    }
}

/// The routes among a dump's replies that `keep` accepts.
fn routes_in(replies: Vec<RouteNetlinkMessage>, keep: impl Fn(&Route) -> bool) -> Vec<Route> {
    replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(message) => Route::from_message(message),
            _ => None,
        })
        .filter(|route| keep(route))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_describe_the_usual_routes() {
        let dst: IpNet = "198.18.1.2/32".parse().expect("prefix");
        let link = Route::link(dst, 7).with_protocol(80);
        assert_eq!(
            (link.oif, link.scope, link.kind, link.table, link.protocol),
            (Some(7), RouteScope::Link, RouteKind::Unicast, 254, 80)
        );
        let gateway: IpAddr = "198.18.0.1".parse().expect("ip");
        let via = Route::via(dst, gateway, 7).onlink().with_table(100);
        assert_eq!(
            (via.gateway, via.scope, via.onlink, via.table),
            (Some(gateway), RouteScope::Universe, true, 100)
        );
        assert_eq!(Route::blackhole(dst).kind, RouteKind::Blackhole);
    }

    #[test]
    fn mixed_families_are_refused_before_reaching_the_kernel() {
        let route = Route::via(
            "2001:db8::/64".parse().expect("prefix"),
            "198.18.0.1".parse().expect("ip"),
            3,
        );
        let reason = route.to_message(false).expect_err("mixed families");
        assert_eq!(
            reason,
            "gateway and destination are of different IP families"
        );
    }

    #[test]
    fn kinds_and_scopes_round_trip_through_wire_values() {
        for kind in [
            RouteKind::Unicast,
            RouteKind::Blackhole,
            RouteKind::Unreachable,
            RouteKind::Prohibit,
            RouteKind::Local,
            RouteKind::Other(9),
        ] {
            assert_eq!(RouteKind::from(u8::from(kind)), kind);
        }
        for scope in [
            RouteScope::Universe,
            RouteScope::Link,
            RouteScope::Host,
            RouteScope::Other(200),
        ] {
            assert_eq!(RouteScope::from(u8::from(scope)), scope);
        }
    }
}
