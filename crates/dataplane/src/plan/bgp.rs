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
    let wanted: BTreeMap<IpNet, Route> = desired
        .routes
        .iter()
        .map(|(prefix, hops)| (*prefix, bgp_route(*prefix, hops)))
        .collect();

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
            &[],
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
            &[installed("198.19.1.0/26", "198.18.0.12")],
            &links(),
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_changed_next_hop_replaces_the_route_in_place() {
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.13"])], true),
            &[installed("198.19.1.0/26", "198.18.0.12")],
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
            &[installed("198.19.1.0/26", "198.18.0.12")],
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
        let plan = plan_bgp_routes(&desired(&[], true), &observed, &links());
        assert_eq!(plan.ops, vec![Op::DelRoute(observed[0].clone())]);
    }

    #[test]
    fn after_a_restart_routes_of_the_previous_run_stay_until_the_peers_are_complete() {
        let observed = [installed("198.19.1.0/26", "198.18.0.12")];
        let plan = plan_bgp_routes(&desired(&[], false), &observed, &links());
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
        let plan = plan_bgp_routes(&desired(&[], true), &observed, &links());
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_slot_held_by_another_owner_is_reported_and_left_alone() {
        let observed = [
            Route::via(net("198.19.1.0/26"), ip("198.18.0.1"), ETH0).with_protocol(PROTO_STATIC)
        ];
        let plan = plan_bgp_routes(
            &desired(&[("198.19.1.0/26", &["198.18.0.12"])], true),
            &observed,
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
            &[other],
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
