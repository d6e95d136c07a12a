//! Routes in the main table: /32 routes to local workloads and Felix's own (protocol 80) routes.
//!
//! Felix owns a route when it has protocol 80, or when its device is a workload interface (`cali…`)
//! and the kernel did not make it itself (protocol `kernel`: link routes of addresses). Owned routes that
//! are not desired are deleted; routes Felix does not own are never changed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use calico_netlink::{Family, Link, RTPROT_KERNEL, Route, RouteScope, TABLE_MAIN};
use ipnet::IpNet;

use super::{ApplyReport, Dataplane, DataplaneError, note_failure};
use crate::desired::{
    Desired, FELIX_ROUTE_PROTOCOL, RouteTarget, VXLAN_IFACE, WORKLOAD_IFACE_PREFIX,
    WORKLOAD_ROUTE_PROTOCOL,
};

/// The metric the kernel gives a route added without one (IPv6 routes default to 1024).
fn effective_metric(route: &Route) -> u32 {
    route.metric.unwrap_or(match route.dst {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    })
}

/// Whether the kernel keeps `a` and `b` as one route (replacing one replaces the other): same table,
/// destination and metric.
fn same_slot(a: &Route, b: &Route) -> bool {
    a.dst == b.dst && a.table == b.table && effective_metric(a) == effective_metric(b)
}

/// Whether the kernel's `existing` route is what `want` asks for.
fn satisfies(existing: &Route, want: &Route) -> bool {
    same_slot(existing, want)
        && existing.kind == want.kind
        && existing.gateway == want.gateway
        && existing.protocol == want.protocol
        && existing.scope == want.scope
        && existing.onlink == want.onlink
        && (want.oif.is_none() || existing.oif == want.oif)
}

impl Dataplane {
    pub(super) fn reconcile_routes(
        &mut self,
        desired: &Desired,
        links: &HashMap<String, Link>,
        vxlan_index: Option<u32>,
        report: &mut ApplyReport,
    ) -> Result<(), DataplaneError> {
        let wanted = wanted_routes(desired, links, vxlan_index, report);
        let workload_indexes: Vec<u32> = links
            .values()
            .filter(|link| link.name.starts_with(WORKLOAD_IFACE_PREFIX))
            .map(|link| link.index)
            .collect();
        let owned = |route: &Route| {
            route.protocol == FELIX_ROUTE_PROTOCOL
                || (route.protocol != RTPROT_KERNEL
                    && route.oif.is_some_and(|oif| workload_indexes.contains(&oif)))
        };
        let existing = self.netlink.routes(Family::All, Some(TABLE_MAIN))?;

        // Routes left alone for now, on two kinds of workload interface the CNI plugin is most likely
        // still wiring: one no endpoint names yet, within its grace period (the endpoint has not reached
        // us), and one an endpoint names that was still down when the links were read (its route may have
        // been added since).
        let now = Instant::now();
        self.first_seen
            .retain(|index, _| workload_indexes.contains(index));
        for index in &workload_indexes {
            self.first_seen.entry(*index).or_insert(now);
        }
        let being_wired: Vec<u32> = links
            .values()
            .filter(|link| {
                if !link.name.starts_with(WORKLOAD_IFACE_PREFIX) {
                    return false;
                }
                if desired.workloads.contains_key(&link.name) {
                    return !link.up;
                }
                self.first_seen
                    .get(&link.index)
                    .is_some_and(|seen| now.duration_since(*seen) < self.route_grace)
            })
            .map(|link| link.index)
            .collect();

        // Deletions first: stale routes go before anything new could depend on their absence, and an
        // owned route in the slot of a wanted one is left to be replaced in one step below.
        for route in existing.iter().filter(|route| owned(route)) {
            let taken_over = wanted
                .get(&route.dst)
                .is_some_and(|want| same_slot(route, want));
            if taken_over {
                continue;
            }
            if route.protocol != FELIX_ROUTE_PROTOCOL
                && route.oif.is_some_and(|oif| being_wired.contains(&oif))
            {
                report.routes_deferred += 1;
                continue;
            }
            if note_failure(report, self.netlink.del_route(route)) {
                report.routes_removed += 1;
            }
        }

        for (dst, want) in &wanted {
            let occupant = existing.iter().find(|route| same_slot(route, want));
            match occupant {
                Some(route) if satisfies(route, want) => {}
                Some(route) if !owned(route) => report.failures.push(format!(
                    "route {dst}: the kernel already has a route to {dst} with protocol {} that \
                     Felix does not own; left alone",
                    route.protocol
                )),
                _ => {
                    if note_failure(report, self.netlink.replace_route(want)) {
                        report.routes_added += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The kernel routes `desired` asks for, by destination. Workload routes whose interface is missing
/// are counted in the report and skipped.
fn wanted_routes(
    desired: &Desired,
    links: &HashMap<String, Link>,
    vxlan_index: Option<u32>,
    report: &mut ApplyReport,
) -> BTreeMap<IpNet, Route> {
    let mut wanted = BTreeMap::new();
    for route in &desired.routes {
        let dst = route.dst;
        let kernel = match &route.target {
            RouteTarget::Blackhole => Route::blackhole(dst),
            RouteTarget::Vxlan { gateway } => match vxlan_index {
                Some(index) => Route::via(dst, IpAddr::V4(*gateway), index).onlink(),
                None => {
                    report.failures.push(format!(
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
            report.problems.push(format!(
                "more than one route to {dst} is desired; only one is programmed"
            ));
        }
    }
    for (iface, workload) in &desired.workloads {
        // A missing or still-down interface is being wired by the CNI plugin: not ready yet.
        let Some(link) = links.get(iface).filter(|link| link.up) else {
            report.workloads_missing += 1;
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
                report.problems.push(format!(
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
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
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
        let gateway: IpAddr = "198.19.0.65".parse().expect("ip");
        let want = Route::via(net("198.19.0.64/26"), gateway, 7)
            .onlink()
            .with_protocol(FELIX_ROUTE_PROTOCOL);
        assert!(satisfies(&want, &want));
        let other_gateway: IpAddr = "198.19.0.129".parse().expect("ip");
        let moved = Route {
            gateway: Some(other_gateway),
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
    }
}
