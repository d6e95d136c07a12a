//! Routes the BGP speaker learned: `<prefix> via <next hop> proto bird` in the main table, as Calico's
//! BIRD writes them.
//!
//! These routes belong to the speaker ([`Manager::Bgp`] in the ownership table): only they are deleted
//! or replaced here. A wanted route whose slot holds a route of another owner (Felix's, the CNI
//! plugin's, an administrator's) is reported and left alone.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use calico_contracts::route::{Manager, PROTO_BGP};
use calico_netlink::{NextHop, Route, RouteKind, TABLE_MAIN};
use ipnet::IpNet;

use super::Plan;
use super::routes::{effective_metric, reconcile_owned};

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
pub fn resolve_next_hop<'a>(
    next_hop: IpAddr,
    observed: impl IntoIterator<Item = &'a Route>,
) -> Option<IpAddr> {
    let covering = observed
        .into_iter()
        .filter(|r| r.table == TABLE_MAIN && r.protocol != PROTO_BGP)
        .filter(|r| r.kind == RouteKind::Unicast && r.dst.contains(&next_hop))
        .max_by_key(|r| (r.dst.prefix_len(), std::cmp::Reverse(effective_metric(r))))?;
    match covering.gateway {
        None if covering.multipath.is_empty() => Some(next_hop),
        Some(gateway) => Some(gateway),
        // A multipath route toward the next hop: its first gateway.
        None => covering.multipath.first().map(|hop| hop.gateway),
    }
}

/// The ops that make the main table's `proto bird` routes exactly `desired`'s. `observed` is the main
/// table's routes (any owner). `proto bird` routes are the speaker's on any interface, so no link needs
/// to be looked at.
pub fn plan_bgp_routes(desired: &BgpRoutes, observed: &[Route]) -> Plan {
    let mut plan = Plan::default();
    // Next hops are few (one per peer host) and shared by many prefixes: each is resolved once,
    // against the routes that may resolve one.
    let resolvers: Vec<&Route> = observed
        .iter()
        .filter(|r| {
            r.table == TABLE_MAIN && r.protocol != PROTO_BGP && r.kind == RouteKind::Unicast
        })
        .collect();
    let mut resolved_hops: HashMap<IpAddr, Option<IpAddr>> = HashMap::new();
    let mut wanted: BTreeMap<IpNet, Route> = BTreeMap::new();
    for (prefix, hops) in &desired.routes {
        let mut resolved: Vec<IpAddr> = Vec::with_capacity(hops.len());
        for hop in hops {
            let via = *resolved_hops
                .entry(*hop)
                .or_insert_with(|| resolve_next_hop(*hop, resolvers.iter().copied()));
            match via {
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
    reconcile_owned(
        &wanted,
        observed,
        Manager::Bgp,
        // Ownership of `proto bird` does not depend on the interface.
        |_| false,
        // Until the peers are complete, an unwanted route may be the previous run's, not yet
        // announced again by its peer.
        |_| !desired.complete,
        &mut plan,
    );
    plan
}

#[cfg(test)]
mod tests {
    use calico_contracts::route::{PROTO_CNI, PROTO_FELIX, PROTO_KERNEL, PROTO_STATIC};
    use calico_netlink::RouteScope;

    use super::*;
    use crate::plan::Op;

    const ETH0: u32 = 2;
    const POD: u32 = 10;

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
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
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_changed_next_hop_replaces_the_route_in_place() {
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.13"])], true),
            &with_uplink(&[installed("198.19.1.0/26", "198.18.0.12")]),
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
        let plan = plan_bgp_routes(&desired(&[], true), &with_uplink(&observed));
        assert_eq!(plan.ops, vec![Op::DelRoute(observed[0].clone())]);
    }

    #[test]
    fn after_a_restart_routes_of_the_previous_run_stay_until_the_peers_are_complete() {
        let observed = [installed("198.19.1.0/26", "198.18.0.12")];
        let plan = plan_bgp_routes(&desired(&[], false), &with_uplink(&observed));
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
        let plan = plan_bgp_routes(&desired(&[], true), &with_uplink(&observed));
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
    use crate::plan::Op;

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
        let plan = plan_bgp_routes(&one("198.19.1.0/26", &["198.18.1.12"]), &uplink());
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
        let plan = plan_bgp_routes(&one("198.19.1.0/26", &["198.18.5.5"]), &observed);
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
        );
        let [Op::ReplaceRoute(route)] = plan.ops.as_slice() else {
            panic!("one route expected: {plan:?}");
        };
        assert_eq!(route.gateway, Some(ip("198.18.0.1")));
        assert!(route.multipath.is_empty());
    }
}
