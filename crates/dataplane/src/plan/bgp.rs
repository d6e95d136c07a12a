//! Routes the BGP speaker learned: `<prefix> via <next hop> proto bird` in the main table, as Calico's
//! BIRD writes them.
//!
//! These routes belong to the speaker ([`Manager::Bgp`] in the ownership table): only they are deleted
//! or replaced here. A wanted route whose slot holds a route of another owner (Felix's, the CNI
//! plugin's, an administrator's) is reported and left alone.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use calico_contracts::route::{Manager, PROTO_BGP, owner};
use calico_netlink::{NextHop, Route, TABLE_MAIN};
use ipnet::IpNet;

use super::routes::{effective_metric, same_slot, satisfies};
use super::{Links, Op, Plan};

/// What the speaker's best paths ask of the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpRoutes {
    /// Each prefix with its next hops (equal-cost paths: several), best first.
    pub routes: BTreeMap<IpNet, Vec<IpAddr>>,
    /// Every peer has sent its initial routes (End-of-RIB) since this process started, so a
    /// `proto bird` route missing from `routes` is stale. Until then such routes are kept: a
    /// restarted calico-node must not remove the routes the previous run installed before the peers
    /// have told it again (graceful restart, RFC 4724).
    pub complete: bool,
}

impl BgpRoutes {
    /// Applies one best-path change: `Some(next hops)` sets the prefix's route, `None` removes it.
    pub fn set(&mut self, prefix: IpNet, next_hops: Option<Vec<IpAddr>>) {
        match next_hops.filter(|hops| !hops.is_empty()) {
            Some(hops) => {
                self.routes.insert(prefix, hops);
            }
            None => {
                self.routes.remove(&prefix);
            }
        }
    }
}

/// The kernel route for `prefix` over `next_hops`: a plain route via the one next hop, or a
/// multipath route over several (the kernel picks the device from each gateway).
pub fn bgp_route(prefix: IpNet, next_hops: &[IpAddr]) -> Route {
    let mut route = Route::new(prefix).with_protocol(PROTO_BGP);
    match next_hops {
        [one] => route.gateway = Some(*one),
        several => {
            route.multipath = several
                .iter()
                .map(|&gateway| NextHop { gateway, oif: None })
                .collect();
        }
    }
    route
}

/// The gateway the kernel route toward `next_hop` should use, as BIRD's `gateway recursive` finds
/// it: the next hop itself when a link route (a connected subnet) covers it, else the gateway of
/// the most specific route that does (a peer on another subnet, reached through a router). `None`
/// when no usable route covers it. The speaker's own routes are not used, so a next hop never
/// resolves through a route it is itself the next hop of.
pub fn resolve_next_hop(next_hop: IpAddr, observed: &[Route]) -> Option<IpAddr> {
    let covering = observed
        .iter()
        .filter(|r| r.table == TABLE_MAIN && r.protocol != PROTO_BGP)
        .filter(|r| r.kind == calico_netlink::RouteKind::Unicast && r.dst.contains(&next_hop))
        .max_by_key(|r| (r.dst.prefix_len(), std::cmp::Reverse(effective_metric(r))))?;
    match covering.gateway {
        None if covering.multipath.is_empty() => Some(next_hop),
        Some(gateway) => Some(gateway),
        // A multipath route toward the next hop: its first gateway.
        None => covering.multipath.first().map(|hop| hop.gateway),
    }
}

/// Whether two routes' multipath next hops name the same gateways in the same order (the kernel
/// reports the device it chose for each; a wanted route leaves that to the kernel).
fn same_gateways(a: &Route, b: &Route) -> bool {
    a.multipath.len() == b.multipath.len()
        && a.multipath
            .iter()
            .zip(&b.multipath)
            .all(|(x, y)| x.gateway == y.gateway)
}

/// The ops that make the main table's `proto bird` routes exactly `desired`'s. `observed` is the main
/// table's routes (any owner), `links` the namespace's links (to tell workload interfaces).
pub fn plan_bgp_routes(desired: &BgpRoutes, observed: &[Route], links: &Links) -> Plan {
    let mut plan = Plan::default();
    let managed = |route: &Route| {
        let on_workload = route.oif.is_some_and(|oif| links.is_workload(oif));
        route.table == TABLE_MAIN && owner(route.protocol, on_workload).managed_by(Manager::Bgp)
    };
    let mut wanted: BTreeMap<IpNet, Route> = BTreeMap::new();
    for (prefix, hops) in &desired.routes {
        let mut resolved: Vec<IpAddr> = Vec::with_capacity(hops.len());
        for hop in hops {
            match resolve_next_hop(*hop, observed) {
                Some(via) if !resolved.contains(&via) => resolved.push(via),
                Some(_) => {}
                None => plan.problems.push(format!(
                    "BGP route {prefix}: next hop {hop} is not reachable through any route; \
                     not programmed"
                )),
            }
        }
        if !resolved.is_empty() {
            wanted.insert(*prefix, bgp_route(*prefix, &resolved));
        }
    }

    for route in observed.iter().filter(|route| managed(route)) {
        let taken_over = wanted
            .get(&route.dst)
            .is_some_and(|want| same_slot(route, want));
        if taken_over {
            continue;
        }
        if !desired.complete {
            // Possibly the previous run's route, not yet announced again by its peer.
            plan.routes_deferred += 1;
            continue;
        }
        plan.ops.push(Op::DelRoute(route.clone()));
    }

    let mut by_slot: HashMap<(IpNet, u32, u32), &Route> = HashMap::with_capacity(observed.len());
    for route in observed {
        by_slot
            .entry((route.dst, route.table, effective_metric(route)))
            .or_insert(route);
    }
    for (dst, want) in &wanted {
        match by_slot.get(&(want.dst, want.table, effective_metric(want))) {
            Some(route) if satisfies(route, want) && same_gateways(route, want) => {}
            Some(route) if !managed(route) => plan.failures.push(format!(
                "BGP route {dst}: the kernel already has a route to {dst} with protocol {} that \
                 the BGP speaker does not own; left alone",
                route.protocol
            )),
            _ => plan.ops.push(Op::ReplaceRoute(want.clone())),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use calico_contracts::route::{PROTO_CNI, PROTO_FELIX, PROTO_KERNEL, PROTO_STATIC};
    use calico_netlink::RouteScope;

    use super::*;
    use crate::plan::fixtures::link;

    const ETH0: u32 = 2;
    const POD: u32 = 10;

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn links() -> Links {
        Links::new([link(ETH0, "eth0"), link(POD, "calia0000000001")])
    }

    /// A route as the kernel reports one the speaker wrote: the device filled in.
    fn installed(prefix: &str, via: &str) -> Route {
        Route::via(net(prefix), ip(via), ETH0).with_protocol(PROTO_BGP)
    }

    /// The kernel's route for the uplink's subnet (what makes 198.18.0.x next hops direct).
    fn connected() -> Route {
        Route::link(net("198.18.0.0/24"), ETH0)
            .with_scope(RouteScope::Link)
            .with_protocol(PROTO_KERNEL)
    }

    /// `observed` with the uplink's subnet route and a default route via 198.18.0.1 added.
    fn with_uplink(observed: &[Route]) -> Vec<Route> {
        let mut all = vec![
            connected(),
            Route::via(net("0.0.0.0/0"), ip("198.18.0.1"), ETH0).with_protocol(PROTO_CNI),
        ];
        all.extend_from_slice(observed);
        all
    }

    fn desired(routes: &[(&str, &[&str])], complete: bool) -> BgpRoutes {
        BgpRoutes {
            routes: routes
                .iter()
                .map(|(p, hops)| (net(p), hops.iter().map(|h| ip(h)).collect()))
                .collect(),
            complete,
        }
    }

    #[test]
    fn a_new_prefix_becomes_a_proto_bird_route_via_its_next_hop() {
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.12"])], true),
            &with_uplink(&[]),
            &links(),
        );
        let want = Route {
            gateway: Some(ip("198.18.0.12")),
            protocol: 12,
            ..Route::new(net("198.19.1.0/26"))
        };
        assert_eq!(plan.ops, vec![Op::ReplaceRoute(want)]);
        assert!(plan.failures.is_empty());
    }

    #[test]
    fn a_route_already_as_wanted_is_not_written_again() {
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.12"])], true),
            &with_uplink(&[installed("198.19.1.0/26", "198.18.0.12")]),
            &links(),
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_changed_next_hop_replaces_the_route_in_place() {
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.13"])], true),
            &with_uplink(&[installed("198.19.1.0/26", "198.18.0.12")]),
            &links(),
        );
        assert_eq!(plan.ops.len(), 1);
        assert!(
            matches!(&plan.ops[0], Op::ReplaceRoute(r) if r.gateway == Some(ip("198.18.0.13")))
        );
    }

    #[test]
    fn equal_cost_next_hops_make_one_multipath_route() {
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.12", "198.18.0.13"])], true),
            &with_uplink(&[installed("198.19.1.0/26", "198.18.0.12")]),
            &links(),
        );
        let [Op::ReplaceRoute(route)] = plan.ops.as_slice() else {
            panic!("one replacement expected, got {:?}", plan.ops);
        };
        assert_eq!(route.gateway, None);
        let gateways: Vec<IpAddr> = route.multipath.iter().map(|h| h.gateway).collect();
        assert_eq!(gateways, vec![ip("198.18.0.12"), ip("198.18.0.13")]);
    }

    #[test]
    fn a_withdrawn_prefix_loses_its_route_once_the_peers_are_complete() {
        let observed = [installed("198.19.1.0/26", "198.18.0.12")];
        let plan = plan_bgp_routes(&desired(&[], true), &with_uplink(&observed), &links());
        assert_eq!(plan.ops, vec![Op::DelRoute(observed[0].clone())]);
    }

    #[test]
    fn after_a_restart_routes_of_the_previous_run_stay_until_the_peers_are_complete() {
        let observed = [installed("198.19.1.0/26", "198.18.0.12")];
        let plan = plan_bgp_routes(&desired(&[], false), &with_uplink(&observed), &links());
        assert!(plan.ops.is_empty(), "{:?}", plan.ops);
        assert_eq!(plan.routes_deferred, 1);
    }

    #[test]
    fn routes_of_every_other_owner_are_never_deleted() {
        let observed = [
            // Felix's blackhole for a local block and its VXLAN route to another host's block.
            Route::blackhole(net("198.19.0.0/26")).with_protocol(PROTO_FELIX),
            Route::via(net("198.19.2.0/26"), ip("198.19.255.2"), 3).with_protocol(PROTO_FELIX),
            // The CNI plugin's route to a local pod.
            Route::link(net("198.19.0.5/32"), POD)
                .with_scope(RouteScope::Link)
                .with_protocol(PROTO_CNI),
            // The kernel's subnet route and an administrator's static route.
            Route::link(net("198.18.0.0/24"), ETH0)
                .with_scope(RouteScope::Link)
                .with_protocol(PROTO_KERNEL),
            Route::via(net("198.19.200.0/24"), ip("198.18.0.1"), ETH0).with_protocol(PROTO_STATIC),
        ];
        let plan = plan_bgp_routes(&desired(&[], true), &with_uplink(&observed), &links());
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_slot_held_by_another_owner_is_reported_and_left_alone() {
        let observed = [
            Route::via(net("198.19.1.0/26"), ip("198.18.0.1"), ETH0).with_protocol(PROTO_STATIC)
        ];
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.12"])], true),
            &with_uplink(&observed),
            &links(),
        );
        assert!(plan.ops.is_empty(), "{:?}", plan.ops);
        assert_eq!(plan.failures.len(), 1);
        assert!(
            plan.failures[0].contains("protocol 4"),
            "{}",
            plan.failures[0]
        );
    }

    #[test]
    fn a_route_with_another_metric_does_not_take_the_slot() {
        let mut other =
            Route::via(net("198.19.1.0/26"), ip("198.18.0.1"), ETH0).with_protocol(PROTO_STATIC);
        other.metric = Some(100);
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.12"])], true),
            &with_uplink(&[other]),
            &links(),
        );
        assert_eq!(plan.ops.len(), 1);
        assert!(plan.failures.is_empty());
    }

    #[test]
    fn setting_no_next_hops_removes_the_prefix() {
        let mut routes = desired(&[("198.19.1.0/26", &["198.18.0.12"])], true);
        routes.set(net("198.19.1.0/26"), Some(Vec::new()));
        assert!(routes.routes.is_empty());
        routes.set(net("198.19.2.0/26"), Some(vec![ip("198.18.0.12")]));
        routes.set(net("198.19.2.0/26"), None);
        assert!(routes.routes.is_empty());
    }
}

#[cfg(test)]
mod recursive_tests {
    use calico_contracts::route::{PROTO_CNI, PROTO_KERNEL};
    use calico_netlink::RouteScope;

    use super::*;
    use crate::plan::fixtures::link;

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn uplink() -> Vec<Route> {
        vec![
            Route::link(net("198.18.0.0/24"), 2)
                .with_scope(RouteScope::Link)
                .with_protocol(PROTO_KERNEL),
            Route::via(net("0.0.0.0/0"), ip("198.18.0.1"), 2).with_protocol(PROTO_CNI),
        ]
    }

    fn one(prefix: &str, hops: &[&str]) -> BgpRoutes {
        BgpRoutes {
            routes: [(net(prefix), hops.iter().map(|h| ip(h)).collect())].into(),
            complete: true,
        }
    }

    #[test]
    fn a_next_hop_on_another_subnet_is_reached_through_the_router_toward_it() {
        let plan = plan_bgp_routes(
            &one("198.19.1.0/26", &["198.18.1.12"]),
            &uplink(),
            &Links::new([link(2, "eth0")]),
        );
        let [Op::ReplaceRoute(route)] = plan.ops.as_slice() else {
            panic!("one route expected: {plan:?}");
        };
        assert_eq!(route.gateway, Some(ip("198.18.0.1")));
        assert_eq!(route.protocol, PROTO_BGP);
    }

    #[test]
    fn the_most_specific_route_toward_the_next_hop_decides() {
        let mut observed = uplink();
        observed.push(Route::via(net("198.18.1.0/24"), ip("198.18.0.254"), 2).with_protocol(4));
        assert_eq!(
            resolve_next_hop(ip("198.18.1.12"), &observed),
            Some(ip("198.18.0.254"))
        );
        assert_eq!(
            resolve_next_hop(ip("198.18.0.12"), &observed),
            Some(ip("198.18.0.12")),
            "on the connected subnet: itself"
        );
    }

    #[test]
    fn the_speaker_s_own_routes_never_resolve_a_next_hop() {
        let observed = vec![
            Route::link(net("198.18.0.0/24"), 2).with_scope(RouteScope::Link),
            Route::via(net("198.18.1.0/24"), ip("198.18.0.9"), 2).with_protocol(PROTO_BGP),
        ];
        assert_eq!(resolve_next_hop(ip("198.18.1.12"), &observed), None);
    }

    #[test]
    fn an_unreachable_next_hop_is_reported_and_not_programmed() {
        let observed = vec![Route::link(net("198.18.0.0/24"), 2).with_scope(RouteScope::Link)];
        let plan = plan_bgp_routes(
            &one("198.19.1.0/26", &["198.18.5.5"]),
            &observed,
            &Links::new([link(2, "eth0")]),
        );
        assert!(plan.ops.is_empty(), "{plan:?}");
        assert!(
            plan.problems.iter().any(|p| p.contains("198.18.5.5")),
            "{plan:?}"
        );
    }

    #[test]
    fn next_hops_behind_the_same_router_make_one_plain_route() {
        let plan = plan_bgp_routes(
            &one("198.19.1.0/26", &["198.18.1.12", "198.18.2.12"]),
            &uplink(),
            &Links::new([link(2, "eth0")]),
        );
        let [Op::ReplaceRoute(route)] = plan.ops.as_slice() else {
            panic!("one route expected: {plan:?}");
        };
        assert_eq!(route.gateway, Some(ip("198.18.0.1")));
        assert!(route.multipath.is_empty());
    }
}
