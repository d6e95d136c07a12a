//! Reconcile this namespace's kernel to a [`Desired`] dataplane.
//!
//! Every apply reads the kernel's actual state (links, routes, neighbours, FDB, sysctls) and writes only
//! what differs, so applying the same `Desired` twice writes nothing, and a restarted process neither
//! flushes nor rewrites working state. A failure on one object (a route the kernel refuses, a sysctl that
//! cannot be written) is recorded in [`ApplyReport::failures`] and the rest is still applied.
//!
//! Order matters for traffic in flight: the VXLAN device first, then remote VTEPs (neighbour + FDB)
//! before the routes that use them, then routes, then stale VTEPs after the routes that used them are
//! gone, and the VXLAN device is deleted last.

mod routes;
mod vxlan;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use calico_netlink::{Link, Neighbour, Netlink, NetlinkError, sysctl};

use crate::desired::Desired;
use crate::nat;

/// The throw-away link the IPIP probe creates (and deletes at once).
const IPIP_PROBE_IFACE: &str = "cali-ipipprobe";

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

    /// Forget what was verified once (workload sysctls), so the next apply reads it all again: for the
    /// periodic full resync, which also catches changes made behind our back.
    pub fn recheck_all(&mut self) {
        self.sysctls_verified.clear();
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

    /// Reconciles the kernel to `desired`; see the module documentation.
    pub fn apply(&mut self, desired: &Desired) -> Result<ApplyReport, DataplaneError> {
        let mut report = ApplyReport::default();
        self.ensure_ip_forward(&mut report);
        if !desired.ipip_pools.is_empty() && !self.ipip_supported() {
            for pool in &desired.ipip_pools {
                report.problems.push(format!(
                    "IP pool {pool} asks for IPIP but this kernel has no ipip support (tunl0 cannot \
                     be created); its traffic is not encapsulated"
                ));
            }
        }

        let links = self.links_by_name()?;
        let vxlan_index = match &desired.vxlan {
            Some(device) => self.ensure_vxlan(device, &links, &mut report)?,
            None => None,
        };
        if let Some(index) = vxlan_index {
            self.write_vteps(index, &desired.vteps, &mut report)?;
        }
        self.reconcile_routes(desired, &links, vxlan_index, &mut report)?;
        if let Some(index) = vxlan_index {
            self.remove_stale_vteps(index, &desired.vteps, &mut report)?;
        }
        if desired.vxlan.is_none() {
            self.remove_vxlan(&links, &mut report);
        }
        self.ensure_workload_sysctls(desired, &links, &mut report);
        self.ensure_workload_neighbours(desired, &links, &mut report)?;
        self.ensure_nat(desired, &mut report);
        Ok(report)
    }

    fn links_by_name(&mut self) -> Result<HashMap<String, Link>, DataplaneError> {
        Ok(self
            .netlink
            .links()?
            .into_iter()
            .map(|link| (link.name.clone(), link))
            .collect())
    }

    fn ensure_ip_forward(&mut self, report: &mut ApplyReport) {
        if self.ip_forward_ensured {
            return;
        }
        if ensure_sysctl("net/ipv4/ip_forward", "1", report) {
            self.ip_forward_ensured = true;
        }
    }

    fn ensure_workload_sysctls(
        &mut self,
        desired: &Desired,
        links: &HashMap<String, Link>,
        report: &mut ApplyReport,
    ) {
        let present: HashSet<u32> = links.values().map(|link| link.index).collect();
        self.sysctls_verified
            .retain(|index| present.contains(index));
        for iface in desired.workloads.keys() {
            let Some(link) = links.get(iface) else {
                continue;
            };
            if self.sysctls_verified.contains(&link.index) {
                continue;
            }
            let mut all_set = true;
            for (key, value) in [
                (format!("net/ipv4/conf/{iface}/proxy_arp"), "1"),
                (format!("net/ipv4/neigh/{iface}/proxy_delay"), "0"),
                (format!("net/ipv4/conf/{iface}/forwarding"), "1"),
                (format!("net/ipv4/conf/{iface}/route_localnet"), "1"),
            ] {
                all_set &= ensure_sysctl(&key, value, report);
            }
            if all_set {
                self.sysctls_verified.insert(link.index);
            }
        }
    }

    /// A permanent neighbour (IPv4 address → MAC) for every local workload address whose MAC is known,
    /// and no other permanent entries on those interfaces.
    fn ensure_workload_neighbours(
        &mut self,
        desired: &Desired,
        links: &HashMap<String, Link>,
        report: &mut ApplyReport,
    ) -> Result<(), DataplaneError> {
        let mut wanted: Vec<Neighbour> = Vec::new();
        for (iface, workload) in &desired.workloads {
            let (Some(link), Some(mac)) = (links.get(iface).filter(|l| l.up), workload.mac) else {
                continue;
            };
            wanted.extend(
                workload
                    .addresses
                    .iter()
                    .filter(|a| a.addr().is_ipv4())
                    .map(|a| Neighbour {
                        index: link.index,
                        ip: a.addr(),
                        mac,
                        permanent: true,
                    }),
            );
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let managed: Vec<u32> = wanted.iter().map(|n| n.index).collect();
        let existing: Vec<Neighbour> = self
            .netlink
            .neighbours(None)?
            .into_iter()
            .filter(|n| managed.contains(&n.index) && n.ip.is_ipv4())
            .collect();
        for neighbour in &existing {
            let stale = neighbour.permanent
                && !wanted
                    .iter()
                    .any(|w| w.index == neighbour.index && w.ip == neighbour.ip);
            if stale && note_failure(report, self.netlink.del_neighbour(neighbour)) {
                report.neighbours_removed += 1;
            }
        }
        for want in &wanted {
            if !existing.contains(want)
                && note_failure(report, self.netlink.replace_neighbour(want))
            {
                report.neighbours_written += 1;
            }
        }
        Ok(())
    }

    /// Reads the nftables table back and applies only what differs from the desired one (nothing
    /// when it matches, also after a restart; the whole table when someone deleted it).
    fn ensure_nat(&mut self, desired: &Desired, report: &mut ApplyReport) {
        match nat::sync_table(&desired.nat) {
            Ok(written) => report.nft_applied = written,
            Err(error) => report.failures.push(format!(
                "nftables table {} {}: {error}",
                nat::NFT_FAMILY.nft_name(),
                crate::desired::NFT_TABLE
            )),
        }
    }
}

/// Writes `value` to sysctl `key` unless it already has it; false when it could not be read or written
/// (the failure is in the report).
fn ensure_sysctl(key: &str, value: &str, report: &mut ApplyReport) -> bool {
    if sysctl::get(key).is_ok_and(|current| current == value) {
        return true;
    }
    match sysctl::set(key, value) {
        Ok(()) => {
            report.sysctls_written += 1;
            true
        }
        Err(error) => {
            report.failures.push(error.to_string());
            false
        }
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
