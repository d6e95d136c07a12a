//! calico-dataplane: reconcile this namespace's kernel to a [`Desired`] dataplane: observe, plan, execute.
//!
//! Every apply reads the kernel's actual state (links, routes, neighbours, FDB, sysctls) into typed
//! values, hands them with the desired state and the time to the pure planners in [`plan`], and executes
//! the ops they return. Applying the same `Desired` twice writes nothing, and a restarted process neither
//! flushes nor rewrites working state. A failure on one object (a route the kernel refuses, a sysctl that
//! cannot be written) is recorded in [`ApplyReport::failures`] and the rest is still applied.
//!
//! Order matters for traffic in flight: the VXLAN device first, then remote VTEPs (neighbour + FDB)
//! before the routes that use them, then routes, then stale VTEPs after the routes that used them are
//! gone, and the VXLAN device is deleted last.

pub mod activity;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_netlink::{Family, Netlink, NetlinkError, TABLE_MAIN, sysctl};

use self::plan::scope::Scope;
use self::plan::{Links, Op, Plan};
use crate::activity::Activity;
use calico_felix::desired::Desired;
use calico_felix::nat;

/// The throw-away link the IPIP probe creates (and deletes at once).
const IPIP_PROBE_IFACE: &str = "cali-ipipprobe";

/// How many times one apply plans the VXLAN device again after changing it (delete, create, then the
/// address and up on the new device).
const DEVICE_PASSES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// Talking to the kernel failed as a whole (the socket, or a dump of its state).
    #[error("cannot read or change the kernel's network state: {0}")]
    Netlink(#[from] NetlinkError),
}

/// What one [`Dataplane::apply`] changed, and what it could not do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Routes added or replaced (workload and Felix routes).
    pub routes_added: usize,
    pub routes_removed: usize,
    pub neighbours_written: usize,
    pub neighbours_removed: usize,
    pub fdb_written: usize,
    pub fdb_removed: usize,
    pub sysctls_written: usize,
    /// VXLAN device writes: create, delete, MAC, MTU, up, address changes.
    pub device_changes: usize,
    /// The nftables table was (re)written.
    pub nft_applied: bool,
    /// Desired workload interfaces that do not exist (yet); their routes and sysctls were skipped.
    pub workloads_missing: usize,
    /// Routes on workload interfaces the CNI plugin is most likely still wiring, kept for now: an
    /// interface no endpoint names yet (the plugin writes its pod's route before the endpoint reaches
    /// us; removed once the interface has existed for [`Dataplane::route_grace`] without an endpoint),
    /// or one an endpoint names that is still down. The caller should apply again later.
    pub routes_deferred: usize,
    /// One line per object that could not be written, naming it and the kernel's error.
    pub failures: Vec<String>,
    /// Things the kernel cannot do for this `Desired` (no error; the rest is applied).
    pub problems: Vec<String>,
}

impl ApplyReport {
    /// How many writes this apply made to the kernel (0 when it already matched).
    pub fn writes(&self) -> usize {
        self.routes_added
            + self.routes_removed
            + self.neighbours_written
            + self.neighbours_removed
            + self.fdb_written
            + self.fdb_removed
            + self.sysctls_written
            + self.device_changes
            + usize::from(self.nft_applied)
    }
}

/// The dataplane driver for the network namespace it was created in.
///
/// The netlink socket stays bound to that namespace; sysctls and `nft` act on the namespace of the thread
/// that calls [`Dataplane::apply`], so call it from the same namespace.
pub struct Dataplane {
    netlink: Netlink,
    ip_forward_ensured: bool,
    ipip_supported: Option<bool>,
    /// When each workload interface (by index) was first seen, for the route grace period.
    first_seen: HashMap<u32, Instant>,
    route_grace: Duration,
    /// Workload interfaces (by index) whose sysctls were verified; checked again only after
    /// [`Dataplane::recheck_all`], so an apply per datastore event does not re-read them all.
    sysctls_verified: HashSet<u32>,
    /// What this driver is doing right now, for health reports from other threads.
    activity: Arc<Activity>,
    /// The desired state the last apply made true without failures, missing interfaces or deferred
    /// routes, and the problems it reported: what the next apply compares with.
    applied: Option<(Desired, Vec<String>)>,
}

/// How long routes on a workload interface without an endpoint are kept (Felix has a similar grace).
pub const DEFAULT_ROUTE_GRACE: Duration = Duration::from_secs(10);

impl Dataplane {
    /// Opens a netlink socket in the calling thread's network namespace.
    pub fn new() -> Result<Dataplane, DataplaneError> {
        Ok(Dataplane {
            netlink: Netlink::new()?,
            ip_forward_ensured: false,
            ipip_supported: None,
            first_seen: HashMap::new(),
            route_grace: DEFAULT_ROUTE_GRACE,
            sysctls_verified: HashSet::new(),
            activity: Arc::default(),
            applied: None,
        })
    }

    /// Change the grace period for routes on workload interfaces that no endpoint names yet.
    pub fn with_route_grace(mut self, grace: Duration) -> Dataplane {
        self.route_grace = grace;
        self
    }

    pub fn route_grace(&self) -> Duration {
        self.route_grace
    }

    /// Netlink requests this driver has sent (writes and dumps), for benchmarks and debugging.
    pub fn netlink_requests(&self) -> u64 {
        self.netlink.requests_sent()
    }

    /// What this driver is doing right now (netlink or nft), readable from any thread.
    pub fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }

    /// Forget what was verified once (workload sysctls), so the next apply reads it all again: for the
    /// periodic full resync, which also catches changes made behind our back.
    pub fn recheck_all(&mut self) {
        self.sysctls_verified.clear();
        self.applied = None;
    }

    /// Whether the kernel can create an `ipip` link: probed once by creating and deleting a throw-away
    /// one, then cached. (Where the kernel has ipip, loading it also makes its `tunl0` fallback device.)
    pub fn ipip_supported(&mut self) -> bool {
        if let Some(known) = self.ipip_supported {
            return known;
        }
        let mut created = self.netlink.add_link_of_kind(IPIP_PROBE_IFACE, "ipip");
        if created.as_ref().is_err_and(NetlinkError::is_exists) {
            // Left over from a probe that was interrupted: remove it and probe again.
            let _ = self.netlink.delete_link_by_name(IPIP_PROBE_IFACE);
            created = self.netlink.add_link_of_kind(IPIP_PROBE_IFACE, "ipip");
        }
        let supported = match created {
            Ok(()) => {
                if let Err(error) = self.netlink.delete_link_by_name(IPIP_PROBE_IFACE) {
                    tracing::warn!(%error, "could not delete the IPIP probe link");
                }
                true
            }
            Err(error) => {
                tracing::debug!(%error, "this kernel cannot create ipip links");
                false
            }
        };
        self.ipip_supported = Some(supported);
        supported
    }

    /// Reconciles the whole kernel to `desired`; see the module documentation.
    pub fn apply(&mut self, desired: &Desired) -> Result<ApplyReport, DataplaneError> {
        self.apply_at(desired, Instant::now())
    }

    /// [`Dataplane::apply`] with the time the planners see.
    pub fn apply_at(
        &mut self,
        desired: &Desired,
        now: Instant,
    ) -> Result<ApplyReport, DataplaneError> {
        self.applied = None;
        self.reconcile(desired, Scope::Everything, true, now)
    }

    /// Brings the kernel from the desired state of the last clean apply to `desired`, looking only at
    /// what differs between the two (see [`plan::scope`]); a full [`Dataplane::apply`] when there is no
    /// clean apply to compare with. For applies driven by datastore events: changes made to the kernel
    /// behind our back are left to the next full apply.
    pub fn apply_change(&mut self, desired: &Desired) -> Result<ApplyReport, DataplaneError> {
        self.apply_change_at(desired, Instant::now())
    }

    /// [`Dataplane::apply_change`] with the time the planners see.
    pub fn apply_change_at(
        &mut self,
        desired: &Desired,
        now: Instant,
    ) -> Result<ApplyReport, DataplaneError> {
        let applied = self.applied.take();
        let previous = applied.as_ref().map(|(desired, _)| desired);
        let scope = plan::scope::scope_of_change(previous, desired);
        let nat = plan::scope::nat_changed(previous, desired);
        // Problems only a full apply finds (a pool asking for IPIP the kernel lacks) still hold when
        // the host-wide objects did not change.
        let carried = match (&scope, applied) {
            (Scope::Everything, _) | (_, None) => Vec::new(),
            (_, Some((_, problems))) => problems,
        };
        let mut report = self.reconcile(desired, scope, nat, now)?;
        for problem in carried {
            if !report.problems.contains(&problem) {
                report.problems.push(problem);
            }
        }
        if let Some((_, kept)) = &mut self.applied {
            kept.clone_from(&report.problems);
        }
        Ok(report)
    }

    /// Applies `scope` of `desired`, and nftables when `nat`; remembers `desired` when all went well.
    fn reconcile(
        &mut self,
        desired: &Desired,
        scope: Scope,
        nat: bool,
        now: Instant,
    ) -> Result<ApplyReport, DataplaneError> {
        let mut report = ApplyReport::default();
        let activity = Arc::clone(&self.activity);
        {
            let _busy =
                activity.begin("reading and changing routes, links and neighbours (netlink)");
            match scope {
                Scope::Unchanged => {}
                Scope::Workloads(ifaces) => {
                    if !self.apply_workloads(desired, &ifaces, now, &mut report)? {
                        self.apply_kernel_objects(desired, now, &mut report)?;
                    }
                }
                Scope::Everything => self.apply_kernel_objects(desired, now, &mut report)?,
            }
        }
        if nat {
            let _busy = activity.begin(format!(
                "syncing the nftables table {} {} (nft)",
                nat::NFT_FAMILY.nft_name(),
                calico_felix::desired::NFT_TABLE
            ));
            self.ensure_nat(desired, &mut report);
        }
        let clean = report.failures.is_empty()
            && report.workloads_missing == 0
            && report.routes_deferred == 0;
        if clean {
            self.applied = Some((desired.clone(), report.problems.clone()));
        }
        Ok(report)
    }

    /// Applies a change confined to the local workload interfaces `ifaces` (new pods, or pods whose
    /// addresses or MAC changed) by reading those interfaces alone: their links, the routes through
    /// them and their neighbours, each filtered by the kernel. Returns false when the change needs the
    /// full reconciliation after all: an interface missing or still down (the full apply counts it and
    /// schedules a retry), a wanted route's slot taken by a route on another link (the kernel refuses
    /// the add), or anything the planner would report.
    fn apply_workloads(
        &mut self,
        desired: &Desired,
        ifaces: &BTreeSet<String>,
        now: Instant,
        report: &mut ApplyReport,
    ) -> Result<bool, DataplaneError> {
        let mut found = Vec::with_capacity(ifaces.len());
        for iface in ifaces {
            match self.netlink.link_by_name(iface)? {
                Some(link) if link.up => found.push(link),
                _ => return Ok(false),
            }
        }
        let links = Links::new(found);
        let mut observed = Vec::new();
        for link in links.iter() {
            observed.extend(self.netlink.routes_via(TABLE_MAIN, link.index)?);
            self.first_seen.entry(link.index).or_insert(now);
        }
        let scoped = plan::scope::workloads_only(desired, ifaces);
        let route_plan = plan::routes::plan_workload_routes(
            &scoped,
            &observed,
            &plan::routes::RouteContext {
                links: &links,
                vxlan_index: None,
                first_seen: &self.first_seen,
                now,
                grace: self.route_grace,
            },
        );
        let unusual = route_plan.workloads_missing > 0
            || route_plan.routes_deferred > 0
            || !route_plan.failures.is_empty()
            || !route_plan.problems.is_empty();
        if unusual {
            return Ok(false);
        }
        for op in &route_plan.ops {
            if let Op::AddRoute(route) = op {
                match self.netlink.add_route(route) {
                    Ok(()) => count(op, report),
                    // Taken by a route on another link: the full planner decides whose it is.
                    Err(e) if e.is_exists() => return Ok(false),
                    Err(e) => {
                        note_failure(report, Err(e));
                    }
                }
            } else {
                self.execute(std::slice::from_ref(op), report);
            }
        }
        for link in links.iter() {
            self.ensure_sysctls_of(&link.name, link.index, report);
        }
        let wanted_arp = plan::host::wanted_workload_neighbours(&scoped, &links);
        if !wanted_arp.is_empty() {
            let mut neighbours = Vec::new();
            for link in links.iter() {
                neighbours.extend(self.netlink.neighbours(Some(link.index))?);
            }
            let arp = plan::host::plan_workload_neighbours(&wanted_arp, &neighbours);
            self.execute_plan(arp, report);
        }
        Ok(true)
    }

    /// Everything but nftables: sysctls, the VXLAN device, VTEPs, routes, neighbours.
    fn apply_kernel_objects(
        &mut self,
        desired: &Desired,
        now: Instant,
        report: &mut ApplyReport,
    ) -> Result<(), DataplaneError> {
        self.ensure_ip_forward(report);
        if !desired.ipip_pools.is_empty() && !self.ipip_supported() {
            for pool in &desired.ipip_pools {
                report.problems.push(format!(
                    "IP pool {pool} asks for IPIP but this kernel has no ipip support (tunl0 cannot \
                     be created); its traffic is not encapsulated"
                ));
            }
        }

        // The device first, planned again after each change until it is as desired (its index, and so
        // its address, is only known once it exists).
        let mut links = self.observe_links()?;
        if desired.vxlan.is_some() {
            for _ in 0..DEVICE_PASSES {
                let addresses = match links.get(calico_felix::desired::VXLAN_IFACE) {
                    Some(link) => self.netlink.addresses(Some(link.index))?,
                    None => Vec::new(),
                };
                let device = plan::vxlan::plan_device(desired.vxlan.as_ref(), &links, &addresses);
                let done = device.ops.is_empty();
                let changed = self.execute_plan(device, report);
                if done || !changed {
                    break;
                }
                links = self.observe_links()?;
            }
        }
        let vxlan_index = desired
            .vxlan
            .as_ref()
            .and_then(|_| links.get(calico_felix::desired::VXLAN_IFACE))
            .map(|link| link.index);

        // Remote VTEPs, then routes, then stale VTEPs.
        // One neighbour dump serves both the VTEPs and the workloads' static ARP entries.
        let wanted_arp = plan::host::wanted_workload_neighbours(desired, &links);
        let neighbours = if vxlan_index.is_some() || !wanted_arp.is_empty() {
            self.netlink.neighbours(None)?
        } else {
            Vec::new()
        };
        let vteps = match vxlan_index {
            Some(index) => {
                let fdb = self.netlink.fdb(index)?;
                Some(plan::vxlan::plan_vteps(
                    index,
                    &desired.vteps,
                    &neighbours,
                    &fdb,
                ))
            }
            None => None,
        };
        if let Some(vteps) = &vteps {
            self.execute(&vteps.writes, report);
        }
        self.note_first_seen(&links, now);
        let routes = self.netlink.routes(Family::All, Some(TABLE_MAIN))?;
        let route_plan = plan::routes::plan_routes(
            desired,
            &routes,
            &plan::routes::RouteContext {
                links: &links,
                vxlan_index,
                first_seen: &self.first_seen,
                now,
                grace: self.route_grace,
            },
        );
        self.execute_plan(route_plan, report);
        if let Some(vteps) = &vteps {
            self.execute(&vteps.removals, report);
        }
        if desired.vxlan.is_none() {
            let device = plan::vxlan::plan_device(None, &links, &[]);
            self.execute_plan(device, report);
        }

        self.ensure_workload_sysctls(desired, &links, report);
        if !wanted_arp.is_empty() {
            let arp = plan::host::plan_workload_neighbours(&wanted_arp, &neighbours);
            self.execute_plan(arp, report);
        }
        Ok(())
    }

    /// Makes the main table's `proto bird` routes those the BGP speaker's best paths ask for (see
    /// [`plan::bgp`]); routes of every other owner are left as they are.
    pub fn apply_bgp_routes(
        &mut self,
        routes: &plan::bgp::BgpRoutes,
    ) -> Result<ApplyReport, DataplaneError> {
        let activity = Arc::clone(&self.activity);
        let _busy = activity.begin("writing the BGP speaker's routes (netlink)");
        let mut report = ApplyReport::default();
        let observed = self.netlink.routes(Family::All, Some(TABLE_MAIN))?;
        let plan = plan::bgp::plan_bgp_routes(routes, &observed);
        self.execute_plan(plan, &mut report);
        Ok(report)
    }

    fn observe_links(&mut self) -> Result<Links, DataplaneError> {
        Ok(Links::new(self.netlink.links()?))
    }

    /// Records when each workload interface was first seen (for the route grace period) and forgets
    /// interfaces that are gone.
    fn note_first_seen(&mut self, links: &Links, now: Instant) {
        let workloads: HashSet<u32> = links
            .iter()
            .filter(|link| calico_contracts::iface::is_workload(&link.name))
            .map(|link| link.index)
            .collect();
        self.first_seen.retain(|index, _| workloads.contains(index));
        for index in workloads {
            self.first_seen.entry(index).or_insert(now);
        }
    }

    fn ensure_ip_forward(&mut self, report: &mut ApplyReport) {
        if self.ip_forward_ensured {
            return;
        }
        let wanted = [(plan::host::IP_FORWARD.to_string(), "1")];
        let observed = observe_sysctls(&wanted);
        let failures_before = report.failures.len();
        self.execute_plan(plan::host::plan_sysctls(&wanted, &observed), report);
        self.ip_forward_ensured = report.failures.len() == failures_before;
    }

    /// Workload interfaces' sysctls, read and planned only for interfaces not verified since the last
    /// [`Dataplane::recheck_all`], so an apply per datastore event does not re-read them all.
    fn ensure_workload_sysctls(
        &mut self,
        desired: &Desired,
        links: &Links,
        report: &mut ApplyReport,
    ) {
        let present: HashSet<u32> = links.iter().map(|link| link.index).collect();
        self.sysctls_verified
            .retain(|index| present.contains(index));
        for iface in desired.workloads.keys() {
            if let Some(link) = links.get(iface) {
                self.ensure_sysctls_of(iface, link.index, report);
            }
        }
    }

    /// One workload interface's sysctls, unless verified already.
    fn ensure_sysctls_of(&mut self, iface: &str, index: u32, report: &mut ApplyReport) {
        if self.sysctls_verified.contains(&index) {
            return;
        }
        let wanted = plan::host::workload_sysctls(iface);
        let observed = observe_sysctls(&wanted);
        let failures_before = report.failures.len();
        self.execute_plan(plan::host::plan_sysctls(&wanted, &observed), report);
        if report.failures.len() == failures_before {
            self.sysctls_verified.insert(index);
        }
    }

    /// Executes `plan`'s ops and carries what it noticed into the report; true when any op was written.
    fn execute_plan(&mut self, plan: Plan, report: &mut ApplyReport) -> bool {
        report.workloads_missing += plan.workloads_missing;
        report.routes_deferred += plan.routes_deferred;
        report.failures.extend(plan.failures);
        report.problems.extend(plan.problems);
        self.execute(&plan.ops, report)
    }

    /// Executes `ops` in order. A failed op is reported and the rest still run; true when any op was
    /// written.
    fn execute(&mut self, ops: &[Op], report: &mut ApplyReport) -> bool {
        let mut wrote = false;
        for op in ops {
            let result = match op {
                Op::DeleteLink {
                    index,
                    name,
                    reason,
                } => {
                    tracing::info!(device = %name, %reason, "deleting a link");
                    self.netlink.delete_link(*index)
                }
                Op::CreateVxlan(spec) => self.netlink.add_vxlan(spec),
                Op::SetLinkMac { index, mac } => self.netlink.set_link_mac(*index, *mac),
                Op::SetLinkMtu { index, mtu } => self.netlink.set_link_mtu(*index, *mtu),
                Op::SetLinkUp { index } => self.netlink.set_link_up(*index),
                Op::AddAddress { index, net } => self.netlink.add_address(*index, *net),
                Op::DelAddress { index, net } => self.netlink.del_address(*index, *net),
                Op::ReplaceNeighbour(n) => self.netlink.replace_neighbour(n),
                Op::DelNeighbour(n) => self.netlink.del_neighbour(n),
                Op::ReplaceFdb(e) => self.netlink.replace_fdb(e),
                Op::DelFdb(e) => self.netlink.del_fdb(e),
                Op::ReplaceRoute(r) => self.netlink.replace_route(r),
                Op::AddRoute(r) => self.netlink.add_route(r),
                Op::DelRoute(r) => self.netlink.del_route(r),
                Op::SetSysctl { key, value } => sysctl::set(key, value),
            };
            if note_failure(report, result) {
                wrote = true;
                count(op, report);
            }
        }
        wrote
    }

    /// Reads the nftables table back and applies only what differs from the desired one (nothing
    /// when it matches, also after a restart; the whole table when someone deleted it).
    fn ensure_nat(&mut self, desired: &Desired, report: &mut ApplyReport) {
        match nat::sync_table(&desired.nat) {
            Ok(written) => report.nft_applied = written,
            Err(error) => report.failures.push(format!(
                "nftables table {} {}: {error}",
                nat::NFT_FAMILY.nft_name(),
                calico_felix::desired::NFT_TABLE
            )),
        }
    }
}

/// Reads the current value of each wanted sysctl (None: unreadable).
fn observe_sysctls(wanted: &[(String, &str)]) -> BTreeMap<String, Option<String>> {
    wanted
        .iter()
        .map(|(key, _)| (key.clone(), sysctl::get(key).ok()))
        .collect()
}

/// Counts a written op in the report.
fn count(op: &Op, report: &mut ApplyReport) {
    match op {
        Op::DeleteLink { .. }
        | Op::CreateVxlan(_)
        | Op::SetLinkMac { .. }
        | Op::SetLinkMtu { .. }
        | Op::SetLinkUp { .. }
        | Op::AddAddress { .. }
        | Op::DelAddress { .. } => report.device_changes += 1,
        Op::ReplaceNeighbour(_) => report.neighbours_written += 1,
        Op::DelNeighbour(_) => report.neighbours_removed += 1,
        Op::ReplaceFdb(_) => report.fdb_written += 1,
        Op::DelFdb(_) => report.fdb_removed += 1,
        Op::ReplaceRoute(_) | Op::AddRoute(_) => report.routes_added += 1,
        Op::DelRoute(_) => report.routes_removed += 1,
        Op::SetSysctl { .. } => report.sysctls_written += 1,
    }
}

/// Records a failed write on one object and carries on.
fn note_failure(report: &mut ApplyReport, result: Result<(), NetlinkError>) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => {
            report.failures.push(error.to_string());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_sum_every_kind_of_write() {
        let report = ApplyReport {
            routes_added: 1,
            routes_removed: 2,
            neighbours_written: 3,
            neighbours_removed: 4,
            fdb_written: 5,
            fdb_removed: 6,
            sysctls_written: 7,
            device_changes: 8,
            nft_applied: true,
            workloads_missing: 100,
            routes_deferred: 50,
            failures: vec!["x".into()],
            problems: vec!["y".into()],
        };
        assert_eq!(report.writes(), 37);
        assert_eq!(ApplyReport::default().writes(), 0);
    }
}
