//! Routes in the main table: /32 routes to local workloads and Felix's own (protocol 80) routes.
//!
//! Which routes the dataplane may change is decided by the ownership table in
//! [`calico_contracts::route`]: workload routes (the CNI plugin's, on `cali…` interfaces) and Felix's
//! routes. Routes of the BGP speaker (`proto bird`), the kernel's and everyone else's are never deleted or
//! replaced; a desired route whose slot is taken by one of them is reported instead.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use calico_contracts::route::{Manager, owner};
use calico_netlink::{Route, RouteScope};
use ipnet::IpNet;

use super::{Links, Op, Plan};
use calico_felix::desired::{
    Desired, FELIX_ROUTE_PROTOCOL, RouteTarget, VXLAN_IFACE, WORKLOAD_ROUTE_PROTOCOL,
};

/// What the route planner needs besides the desired state.
#[derive(Clone, Copy, Debug)]
pub struct RouteContext<'a> {
    pub links: &'a Links,
    /// The VXLAN device's index, when it exists.
    pub vxlan_index: Option<u32>,
    /// When the driver first saw each workload interface (by index).
    pub first_seen: &'a HashMap<u32, Instant>,
    pub now: Instant,
    /// How long routes on a workload interface that no endpoint names yet are kept.
    pub grace: Duration,
}

/// The metric the kernel gives a route added without one (IPv6 routes default to 1024).
pub(crate) fn effective_metric(route: &Route) -> u32 {
    route.metric.unwrap_or(match route.dst {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    })
}

/// Whether the kernel keeps `a` and `b` as one route (replacing one replaces the other): same table,
/// destination and metric.
pub fn same_slot(a: &Route, b: &Route) -> bool {
    a.dst == b.dst && a.table == b.table && effective_metric(a) == effective_metric(b)
}

/// Whether the kernel's `existing` route is what `want` asks for. A multipath route's next hops are
/// compared by gateway: the kernel reports the device it chose for each, which a wanted route may
/// leave to it.
pub fn satisfies(existing: &Route, want: &Route) -> bool {
    same_slot(existing, want)
        && existing.kind == want.kind
        && existing.gateway == want.gateway
        && existing.protocol == want.protocol
        && existing.scope == want.scope
        && existing.onlink == want.onlink
        && (want.oif.is_none() || existing.oif == want.oif)
        && existing.multipath.len() == want.multipath.len()
        && existing
            .multipath
            .iter()
            .zip(&want.multipath)
            .all(|(e, w)| e.gateway == w.gateway && (w.oif.is_none() || e.oif == w.oif))
}

/// Makes the routes `manager` owns in the main table exactly `wanted`: deletions of its stale routes
/// first (stale routes go before anything new could depend on their absence), except those `defer`
/// keeps for now (counted in [`Plan::routes_deferred`]); then adds and replacements. An owned route in
/// the slot of a wanted one is replaced in one step; a wanted route whose slot holds a route of another
/// owner is reported in [`Plan::failures`] and left alone. `observed` is the main table; `on_workload`
/// tells whether an interface index is a workload interface (for the ownership table).
pub(crate) fn reconcile_owned(
    wanted: &BTreeMap<IpNet, Route>,
    observed: &[Route],
    manager: Manager,
    on_workload: impl Fn(u32) -> bool,
    defer: impl Fn(&Route) -> bool,
    plan: &mut Plan,
) {
    let managed = |route: &Route| {
        owner(route.protocol, route.oif.is_some_and(&on_workload)).managed_by(manager)
    };
    for route in observed.iter().filter(|route| managed(route)) {
        let taken_over = wanted
            .get(&route.dst)
            .is_some_and(|want| same_slot(route, want));
        if taken_over {
            continue;
        }
        if defer(route) {
            plan.routes_deferred += 1;
            continue;
        }
        plan.ops.push(Op::DelRoute(route.clone()));
    }

    // Indexed by slot: a host with thousands of remote blocks would otherwise search every observed
    // route for every wanted one.
    let mut by_slot: HashMap<(IpNet, u32, u32), &Route> = HashMap::with_capacity(observed.len());
    for route in observed {
        by_slot
            .entry((route.dst, route.table, effective_metric(route)))
            .or_insert(route);
    }
    let who = match manager {
        Manager::Dataplane => "Felix",
        Manager::Bgp => "the BGP speaker",
    };
    for (dst, want) in wanted {
        match by_slot.get(&(want.dst, want.table, effective_metric(want))) {
            Some(route) if satisfies(route, want) => {}
            Some(route) if !managed(route) => plan.failures.push(format!(
                "route {dst}: the kernel already has a route to {dst} with protocol {} that \
                 {who} does not own; left alone",
                route.protocol
            )),
            _ => plan.ops.push(Op::ReplaceRoute(want.clone())),
        }
    }
}

/// The ops that make the main table's owned routes exactly `desired`'s: deletions of stale owned
/// routes first, then adds and replacements.
///
/// Two kinds of owned route are kept although nothing desires them, because the CNI plugin is most likely
/// still wiring their pod: routes on a workload interface no endpoint names yet, until the interface has
/// been seen for `grace` (the plugin writes its route before the endpoint reaches us), and routes on an
/// interface an endpoint names that is still down (its route may be being written right now). Both are
/// counted in [`Plan::routes_deferred`].
pub fn plan_routes(desired: &Desired, observed: &[Route], cx: &RouteContext<'_>) -> Plan {
    let mut plan = Plan::default();
    let wanted = wanted_routes(desired, cx, &mut plan);
    let being_wired = |oif: u32| -> bool {
        let Some(name) = cx.links.name_of(oif) else {
            return false;
        };
        if !calico_contracts::iface::is_workload(name) {
            return false;
        }
        if desired.workloads.contains_key(name) {
            return cx.links.get(name).is_some_and(|link| !link.up);
        }
        cx.first_seen
            .get(&oif)
            .is_some_and(|seen| cx.now.saturating_duration_since(*seen) < cx.grace)
    };

    reconcile_owned(
        &wanted,
        observed,
        Manager::Dataplane,
        |oif| cx.links.is_workload(oif),
        |route| route.protocol != FELIX_ROUTE_PROTOCOL && route.oif.is_some_and(being_wired),
        &mut plan,
    );
    plan
}

/// [`plan_routes`] for a change confined to some workload interfaces, when only the routes through
/// those interfaces were observed (`observed_on_links`): a wanted route whose slot holds none of them
/// is added with [`Op::AddRoute`] rather than replaced, so a route in that slot on another link (which
/// was not looked at, and may not be ours) makes the kernel refuse instead of being overwritten.
pub fn plan_workload_routes(
    desired: &Desired,
    observed_on_links: &[Route],
    cx: &RouteContext<'_>,
) -> Plan {
    let mut plan = plan_routes(desired, observed_on_links, cx);
    for op in &mut plan.ops {
        if let Op::ReplaceRoute(want) = op
            && !observed_on_links.iter().any(|route| same_slot(route, want))
        {
            *op = Op::AddRoute(want.clone());
        }
    }
    plan
}

/// The kernel routes `desired` asks for, by destination. Workload routes whose interface is missing or
/// down are counted as missing and skipped.
fn wanted_routes(
    desired: &Desired,
    cx: &RouteContext<'_>,
    plan: &mut Plan,
) -> BTreeMap<IpNet, Route> {
    let mut wanted = BTreeMap::new();
    for route in &desired.routes {
        let dst = route.dst;
        let kernel = match &route.target {
            RouteTarget::Blackhole => Route::blackhole(dst),
            RouteTarget::Vxlan { gateway } => match cx.vxlan_index {
                Some(index) => Route::via(dst, IpAddr::V4(*gateway), index).onlink(),
                None => {
                    plan.failures.push(format!(
                        "route {dst} via {gateway} dev {VXLAN_IFACE}: the VXLAN device is missing"
                    ));
                    continue;
                }
            },
            RouteTarget::Direct { gateway } => Route {
                gateway: Some(*gateway),
                ..Route::new(dst)
            },
        };
        if wanted
            .insert(dst, kernel.with_protocol(FELIX_ROUTE_PROTOCOL))
            .is_some()
        {
            plan.problems.push(format!(
                "more than one route to {dst} is desired; only one is programmed"
            ));
        }
    }
    for (iface, workload) in &desired.workloads {
        // A missing or still-down interface is being wired by the CNI plugin: not ready yet.
        let Some(link) = cx.links.get(iface).filter(|link| link.up) else {
            plan.workloads_missing += 1;
            continue;
        };
        for &dst in &workload.addresses {
            // IPv6 routes have no scopes: the kernel reports them all as universe.
            let scope = match dst {
                IpNet::V4(_) => RouteScope::Link,
                IpNet::V6(_) => RouteScope::Universe,
            };
            let route = Route::link(dst, link.index)
                .with_scope(scope)
                .with_protocol(WORKLOAD_ROUTE_PROTOCOL);
            if wanted.insert(dst, route).is_some() {
                plan.problems.push(format!(
                    "{dst} is routed both to workload interface {iface} and by another desired \
                     route; the workload route wins"
                ));
            }
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use calico_contracts::route::{PROTO_BGP, PROTO_CNI, PROTO_KERNEL, PROTO_STATIC};

    use super::*;
    use crate::plan::fixtures::{down, link};
    use calico_felix::desired::DesiredRoute;

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    const ETH0: u32 = 2;
    const VXLAN: u32 = 3;
    const POD_A: u32 = 10;
    const POD_B: u32 = 11;

    fn links() -> Links {
        Links::new([
            link(ETH0, "eth0"),
            link(VXLAN, VXLAN_IFACE),
            link(POD_A, "calia0000000001"),
            link(POD_B, "calib0000000002"),
        ])
    }

    struct Case {
        links: Links,
        first_seen: HashMap<u32, Instant>,
        now: Instant,
    }

    impl Case {
        fn new() -> Case {
            let now = Instant::now();
            Case {
                links: links(),
                // Every interface has been there for a minute unless a test says otherwise.
                first_seen: [POD_A, POD_B]
                    .into_iter()
                    .map(|i| (i, now - Duration::from_secs(60)))
                    .collect(),
                now,
            }
        }

        fn cx(&self) -> RouteContext<'_> {
            RouteContext {
                links: &self.links,
                vxlan_index: Some(VXLAN),
                first_seen: &self.first_seen,
                now: self.now,
                grace: Duration::from_secs(10),
            }
        }

        fn plan(&self, desired: &Desired, observed: &[Route]) -> Plan {
            plan_routes(desired, observed, &self.cx())
        }
    }

    fn workload(desired: &mut Desired, iface: &str, address: &str) {
        desired
            .workloads
            .entry(iface.to_string())
            .or_default()
            .addresses
            .insert(net(address));
    }

    /// The route the CNI plugin writes for a pod.
    fn cni_route(dst: &str, oif: u32) -> Route {
        Route::link(net(dst), oif)
            .with_scope(RouteScope::Link)
            .with_protocol(PROTO_CNI)
    }

    fn felix_blackhole(dst: &str) -> Route {
        Route::blackhole(net(dst)).with_protocol(80)
    }

    fn felix_vxlan(dst: &str, gateway: &str) -> Route {
        Route::via(net(dst), ip(gateway), VXLAN)
            .onlink()
            .with_protocol(80)
    }

    fn sample_desired() -> Desired {
        let mut desired = Desired::default();
        workload(&mut desired, "calia0000000001", "198.19.0.1/32");
        desired.routes.insert(DesiredRoute {
            dst: net("198.19.0.0/26"),
            target: RouteTarget::Blackhole,
        });
        desired.routes.insert(DesiredRoute {
            dst: net("198.19.0.64/26"),
            target: RouteTarget::Vxlan {
                gateway: Ipv4Addr::new(198, 19, 0, 64),
            },
        });
        desired
    }

    #[test]
    fn from_empty_every_route_is_added() {
        let case = Case::new();
        let plan = case.plan(&sample_desired(), &[]);
        assert_eq!(
            plan.ops,
            vec![
                Op::ReplaceRoute(felix_blackhole("198.19.0.0/26")),
                Op::ReplaceRoute(cni_route("198.19.0.1/32", POD_A)),
                Op::ReplaceRoute(felix_vxlan("198.19.0.64/26", "198.19.0.64")),
            ]
        );
        assert!(plan.failures.is_empty() && plan.problems.is_empty());
    }

    #[test]
    fn a_kernel_that_matches_gets_no_ops() {
        let case = Case::new();
        let observed = [
            felix_blackhole("198.19.0.0/26"),
            cni_route("198.19.0.1/32", POD_A),
            felix_vxlan("198.19.0.64/26", "198.19.0.64"),
        ];
        assert_eq!(case.plan(&sample_desired(), &observed), Plan::default());
    }

    #[test]
    fn stale_owned_routes_are_deleted_before_anything_is_added() {
        let case = Case::new();
        let observed = [
            felix_blackhole("198.19.5.0/26"),
            felix_vxlan("198.19.9.0/26", "198.19.9.0"),
        ];
        let plan = case.plan(&sample_desired(), &observed);
        assert_eq!(plan.ops[0], Op::DelRoute(felix_blackhole("198.19.5.0/26")));
        assert_eq!(
            plan.ops[1],
            Op::DelRoute(felix_vxlan("198.19.9.0/26", "198.19.9.0"))
        );
        assert_eq!(plan.ops.len(), 5);
    }

    #[test]
    fn a_wrong_owned_route_is_replaced_in_place_not_deleted_first() {
        let case = Case::new();
        // The block moved to another host: same slot, other gateway.
        let observed = [felix_vxlan("198.19.0.64/26", "198.19.0.128")];
        let mut desired = Desired::default();
        desired.routes.insert(DesiredRoute {
            dst: net("198.19.0.64/26"),
            target: RouteTarget::Vxlan {
                gateway: Ipv4Addr::new(198, 19, 0, 64),
            },
        });
        let plan = case.plan(&desired, &observed);
        assert_eq!(
            plan.ops,
            vec![Op::ReplaceRoute(felix_vxlan(
                "198.19.0.64/26",
                "198.19.0.64"
            ))]
        );
    }

    #[test]
    fn routes_of_other_owners_are_never_touched() {
        let case = Case::new();
        let observed = [
            // The BGP speaker's route to another host's block, on the uplink and on a workload
            // interface (a pod acting as a router): proto bird.
            Route::via(net("198.19.7.0/26"), ip("198.18.0.12"), ETH0).with_protocol(PROTO_BGP),
            Route::link(net("198.19.8.0/26"), POD_A).with_protocol(PROTO_BGP),
            // The kernel's link route and an administrator's static route.
            Route::link(net("198.18.0.0/24"), ETH0)
                .with_scope(RouteScope::Link)
                .with_protocol(PROTO_KERNEL),
            Route::via(net("203.0.113.0/24"), ip("198.18.0.1"), ETH0).with_protocol(PROTO_STATIC),
            // The kernel's own route on a workload interface.
            Route::link(net("fe80::/64"), POD_B).with_protocol(PROTO_KERNEL),
        ];
        let plan = case.plan(&Desired::default(), &observed);
        assert_eq!(plan, Plan::default(), "nothing owned, nothing to do");
    }

    #[test]
    fn a_desired_route_whose_slot_another_owner_holds_is_reported_not_taken() {
        let case = Case::new();
        let bgp =
            Route::via(net("198.19.0.64/26"), ip("198.18.0.12"), ETH0).with_protocol(PROTO_BGP);
        let mut desired = Desired::default();
        desired.routes.insert(DesiredRoute {
            dst: net("198.19.0.64/26"),
            target: RouteTarget::Vxlan {
                gateway: Ipv4Addr::new(198, 19, 0, 64),
            },
        });
        let plan = case.plan(&desired, &[bgp]);
        assert!(plan.ops.is_empty());
        assert_eq!(plan.failures.len(), 1);
        assert!(
            plan.failures[0].contains("protocol 12"),
            "{:?}",
            plan.failures
        );
    }

    #[test]
    fn a_cni_route_without_an_endpoint_is_kept_through_the_grace_period_then_removed() {
        let mut case = Case::new();
        let route = cni_route("198.19.0.9/32", POD_B);
        // Seen 3 s ago: the endpoint has not reached us yet.
        case.first_seen
            .insert(POD_B, case.now - Duration::from_secs(3));
        let plan = case.plan(&Desired::default(), std::slice::from_ref(&route));
        assert!(plan.ops.is_empty());
        assert_eq!(plan.routes_deferred, 1);
        // 9.9 s: still within the grace.
        case.first_seen
            .insert(POD_B, case.now - Duration::from_millis(9_900));
        assert_eq!(
            case.plan(&Desired::default(), std::slice::from_ref(&route))
                .routes_deferred,
            1
        );
        // 10 s: over; the route goes.
        case.first_seen
            .insert(POD_B, case.now - Duration::from_secs(10));
        let plan = case.plan(&Desired::default(), std::slice::from_ref(&route));
        assert_eq!(plan.ops, vec![Op::DelRoute(route)]);
        assert_eq!(plan.routes_deferred, 0);
    }

    #[test]
    fn a_felix_route_on_a_new_interface_gets_no_grace() {
        let mut case = Case::new();
        case.first_seen.insert(POD_B, case.now);
        let route = Route::link(net("198.19.0.9/32"), POD_B).with_protocol(80);
        let plan = case.plan(&Desired::default(), std::slice::from_ref(&route));
        assert_eq!(plan.ops, vec![Op::DelRoute(route)]);
    }

    #[test]
    fn a_down_interface_that_an_endpoint_names_is_missing_and_its_routes_are_kept() {
        let mut case = Case::new();
        case.links = Links::new([
            link(ETH0, "eth0"),
            link(VXLAN, VXLAN_IFACE),
            down(link(POD_A, "calia0000000001")),
        ]);
        let mut desired = Desired::default();
        workload(&mut desired, "calia0000000001", "198.19.0.1/32");
        // A route the plugin wrote for an address the endpoint does not list (yet).
        let other = cni_route("198.19.0.2/32", POD_A);
        let plan = case.plan(&desired, &[other]);
        assert!(plan.ops.is_empty());
        assert_eq!(plan.workloads_missing, 1);
        assert_eq!(plan.routes_deferred, 1);
    }

    #[test]
    fn a_workload_that_does_not_exist_yet_is_missing_not_a_failure() {
        let case = Case::new();
        let mut desired = Desired::default();
        workload(&mut desired, "calic0000000003", "198.19.0.3/32");
        let plan = case.plan(&desired, &[]);
        assert!(plan.ops.is_empty() && plan.failures.is_empty());
        assert_eq!(plan.workloads_missing, 1);
    }

    #[test]
    fn vxlan_routes_without_the_device_are_failures() {
        let case = Case::new();
        let plan = plan_routes(
            &sample_desired(),
            &[],
            &RouteContext {
                links: &case.links,
                vxlan_index: None,
                first_seen: &case.first_seen,
                now: case.now,
                grace: Duration::from_secs(10),
            },
        );
        assert_eq!(plan.failures.len(), 1);
        assert!(plan.failures[0].contains("VXLAN device is missing"));
        assert_eq!(
            plan.ops.len(),
            2,
            "the blackhole and the workload route still go in"
        );
    }

    #[test]
    fn a_workload_address_that_collides_with_a_felix_route_is_a_problem_and_the_workload_wins() {
        let case = Case::new();
        let mut desired = Desired::default();
        workload(&mut desired, "calia0000000001", "198.19.0.1/32");
        desired.routes.insert(DesiredRoute {
            dst: net("198.19.0.1/32"),
            target: RouteTarget::Blackhole,
        });
        let plan = case.plan(&desired, &[]);
        assert_eq!(plan.problems.len(), 1);
        assert_eq!(
            plan.ops,
            vec![Op::ReplaceRoute(cni_route("198.19.0.1/32", POD_A))]
        );
    }

    #[test]
    fn metric_defaults_follow_the_kernel() {
        let v4 = Route::blackhole(net("198.19.0.0/26"));
        let v6 = Route::blackhole(net("2001:db8::/122"));
        assert_eq!(effective_metric(&v4), 0);
        assert_eq!(effective_metric(&v6), 1024);
        assert!(same_slot(&v4, &v4.clone().with_metric(0)));
        assert!(!same_slot(&v4, &v4.clone().with_metric(5)));
        assert!(same_slot(&v6, &v6.clone().with_metric(1024)));
    }

    #[test]
    fn a_route_satisfies_only_an_equal_wish() {
        let gateway = ip("198.19.0.65");
        let want = Route::via(net("198.19.0.64/26"), gateway, 7)
            .onlink()
            .with_protocol(FELIX_ROUTE_PROTOCOL);
        assert!(satisfies(&want, &want));
        let moved = Route {
            gateway: Some(ip("198.19.0.129")),
            ..want.clone()
        };
        assert!(!satisfies(&moved, &want));
        assert!(!satisfies(&want.clone().with_protocol(4), &want));
        assert!(!satisfies(
            &Route {
                onlink: false,
                ..want.clone()
            },
            &want
        ));
        // A wish without a device (resolved by the kernel) accepts whichever device the kernel chose.
        let direct = Route {
            gateway: Some(gateway),
            ..Route::new(net("198.19.1.0/26"))
        };
        assert!(satisfies(
            &Route {
                oif: Some(3),
                ..direct.clone()
            },
            &direct
        ));
        // Multipath: the same gateways in order, whichever devices the kernel chose.
        let hop = |gateway: &str, oif: Option<u32>| calico_netlink::NextHop {
            gateway: ip(gateway),
            oif,
        };
        let ecmp = Route {
            multipath: vec![hop("198.18.0.12", None), hop("198.18.0.13", None)],
            ..Route::new(net("198.19.2.0/26"))
        };
        let installed = Route {
            multipath: vec![hop("198.18.0.12", Some(2)), hop("198.18.0.13", Some(2))],
            ..ecmp.clone()
        };
        assert!(satisfies(&installed, &ecmp));
        let other_hop = Route {
            multipath: vec![hop("198.18.0.12", Some(2)), hop("198.18.0.14", Some(2))],
            ..ecmp.clone()
        };
        assert!(!satisfies(&other_hop, &ecmp));
        assert!(!satisfies(
            &direct,
            &Route {
                multipath: ecmp.multipath.clone(),
                ..direct.clone()
            }
        ));
    }

    #[test]
    fn a_scoped_plan_adds_into_slots_it_did_not_see_and_replaces_those_it_did() {
        let case = Case::new();
        let mut desired = Desired::default();
        workload(&mut desired, "calia0000000001", "198.19.0.1/32");
        workload(&mut desired, "calia0000000001", "198.19.0.3/32");
        // The CNI plugin's route for .1 is there but scoped wrongly; .3 has none on this link.
        let wrong_scope = cni_route("198.19.0.1/32", POD_A).with_scope(RouteScope::Universe);
        let plan = plan_workload_routes(&desired, &[wrong_scope], &case.cx());
        assert_eq!(
            plan.ops,
            vec![
                Op::ReplaceRoute(cni_route("198.19.0.1/32", POD_A)),
                Op::AddRoute(cni_route("198.19.0.3/32", POD_A)),
            ]
        );
    }

    #[test]
    fn a_scoped_plan_removes_a_stale_route_on_its_link_and_leaves_a_matching_one() {
        let case = Case::new();
        let mut desired = Desired::default();
        workload(&mut desired, "calia0000000001", "198.19.0.1/32");
        let observed = [
            cni_route("198.19.0.1/32", POD_A),
            cni_route("198.19.0.9/32", POD_A),
        ];
        let plan = plan_workload_routes(&desired, &observed, &case.cx());
        assert_eq!(
            plan.ops,
            vec![Op::DelRoute(cni_route("198.19.0.9/32", POD_A))]
        );
    }
}
