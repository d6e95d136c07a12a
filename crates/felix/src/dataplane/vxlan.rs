//! `vxlan.calico` and the remote tunnel endpoints (a permanent neighbour and an FDB entry each) on it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use calico_netlink::{FdbEntry, Link, Neighbour, VxlanSpec};
use ipnet::{IpNet, Ipv4Net};

use super::{ApplyReport, Dataplane, DataplaneError, note_failure};
use crate::desired::{VXLAN_IFACE, Vtep, VxlanDevice};

/// Why an existing `vxlan.calico` must be recreated (settings the kernel cannot change in place), or
/// None when it can be kept.
fn recreate_reason(link: &Link, want: &VxlanDevice, parent_index: u32) -> Option<String> {
    if link.kind.as_deref() != Some("vxlan") {
        return Some(format!(
            "it is of kind {}",
            link.kind.as_deref().unwrap_or("none")
        ));
    }
    let info = link.vxlan.clone().unwrap_or_default();
    let checks = [
        ("VNI", info.vni != Some(want.vni)),
        ("port", info.dst_port != Some(want.port)),
        ("local address", info.local != Some(want.local)),
        ("parent", info.underlay_index != Some(parent_index)),
        ("learning", info.learning != Some(false)),
    ];
    let wrong: Vec<&str> = checks
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(what, _)| *what)
        .collect();
    (!wrong.is_empty()).then(|| format!("its {} differ", wrong.join(", ")))
}

impl Dataplane {
    /// Makes `vxlan.calico` match `want`; returns its index, or None when it could not be made (the
    /// reason is in the report).
    pub(super) fn ensure_vxlan(
        &mut self,
        want: &VxlanDevice,
        links: &HashMap<String, Link>,
        report: &mut ApplyReport,
    ) -> Result<Option<u32>, DataplaneError> {
        let Some(parent) = links.get(&want.parent) else {
            report.failures.push(format!(
                "VXLAN device {VXLAN_IFACE}: its parent interface {} does not exist",
                want.parent
            ));
            return Ok(None);
        };
        let mut existing = links.get(VXLAN_IFACE).cloned();
        if let Some(link) = &existing
            && let Some(reason) = recreate_reason(link, want, parent.index)
        {
            tracing::info!(device = VXLAN_IFACE, %reason, "recreating the VXLAN device");
            if !note_failure(report, self.netlink.delete_link(link.index)) {
                return Ok(None);
            }
            report.device_changes += 1;
            existing = None;
        }
        let link = match existing {
            Some(link) => {
                if link.mac != Some(want.mac) {
                    let result = self.netlink.set_link_mac(link.index, want.mac);
                    if note_failure(report, result) {
                        report.device_changes += 1;
                    }
                }
                if link.mtu != want.mtu {
                    let result = self.netlink.set_link_mtu(link.index, want.mtu);
                    if note_failure(report, result) {
                        report.device_changes += 1;
                    }
                }
                link
            }
            None => {
                let spec = VxlanSpec {
                    name: VXLAN_IFACE.to_string(),
                    vni: want.vni,
                    dst_port: want.port,
                    local: want.local,
                    underlay_index: Some(parent.index),
                    learning: false,
                    mtu: Some(want.mtu),
                    mac: Some(want.mac),
                };
                if !note_failure(report, self.netlink.add_vxlan(&spec)) {
                    return Ok(None);
                }
                report.device_changes += 1;
                match self.netlink.link_by_name(VXLAN_IFACE)? {
                    Some(link) => link,
                    None => {
                        report.failures.push(format!(
                            "VXLAN device {VXLAN_IFACE}: gone right after it was created"
                        ));
                        return Ok(None);
                    }
                }
            }
        };
        if !link.up && note_failure(report, self.netlink.set_link_up(link.index)) {
            report.device_changes += 1;
        }
        self.ensure_tunnel_address(link.index, want, report)?;
        Ok(Some(link.index))
    }

    /// Exactly the tunnel address (/32) among the device's IPv4 addresses. IPv6 addresses (the kernel's
    /// link-local one) are left alone.
    fn ensure_tunnel_address(
        &mut self,
        index: u32,
        want: &VxlanDevice,
        report: &mut ApplyReport,
    ) -> Result<(), DataplaneError> {
        let wanted = IpNet::V4(Ipv4Net::from(want.address));
        let mut present = false;
        for address in self.netlink.addresses(Some(index))? {
            if address.net == wanted {
                present = true;
            } else if address.net.addr().is_ipv4() {
                let result = self.netlink.del_address(index, address.net);
                if note_failure(report, result) {
                    report.device_changes += 1;
                }
            }
        }
        if !present && note_failure(report, self.netlink.add_address(index, wanted)) {
            report.device_changes += 1;
        }
        Ok(())
    }

    pub(super) fn remove_vxlan(&mut self, links: &HashMap<String, Link>, report: &mut ApplyReport) {
        if let Some(link) = links.get(VXLAN_IFACE)
            && note_failure(report, self.netlink.delete_link(link.index))
        {
            report.device_changes += 1;
        }
    }

    /// Writes the neighbour and FDB entries of every desired VTEP that the kernel lacks or has wrong.
    pub(super) fn write_vteps(
        &mut self,
        index: u32,
        vteps: &BTreeSet<Vtep>,
        report: &mut ApplyReport,
    ) -> Result<(), DataplaneError> {
        let neighbours: HashMap<IpAddr, Neighbour> = self
            .netlink
            .neighbours(Some(index))?
            .into_iter()
            .map(|n| (n.ip, n))
            .collect();
        let fdb: BTreeSet<([u8; 6], IpAddr)> = self
            .netlink
            .fdb(index)?
            .into_iter()
            .map(|e| (e.mac, e.dst))
            .collect();
        for (ip, mac) in wanted_neighbours(vteps) {
            let want = Neighbour {
                index,
                ip,
                mac,
                permanent: true,
            };
            if neighbours.get(&ip) != Some(&want)
                && note_failure(report, self.netlink.replace_neighbour(&want))
            {
                report.neighbours_written += 1;
            }
        }
        for (mac, dst) in wanted_fdb(vteps) {
            if !fdb.contains(&(mac, dst)) {
                let entry = FdbEntry { index, mac, dst };
                if note_failure(report, self.netlink.replace_fdb(&entry)) {
                    report.fdb_written += 1;
                }
            }
        }
        Ok(())
    }

    /// Deletes neighbour and FDB entries on the device that no desired VTEP accounts for.
    pub(super) fn remove_stale_vteps(
        &mut self,
        index: u32,
        vteps: &BTreeSet<Vtep>,
        report: &mut ApplyReport,
    ) -> Result<(), DataplaneError> {
        let neighbours = wanted_neighbours(vteps);
        for stale in self.netlink.neighbours(Some(index))? {
            if neighbours.get(&stale.ip) != Some(&stale.mac)
                && note_failure(report, self.netlink.del_neighbour(&stale))
            {
                report.neighbours_removed += 1;
            }
        }
        let fdb = wanted_fdb(vteps);
        for stale in self.netlink.fdb(index)? {
            if fdb.get(&stale.mac) != Some(&stale.dst)
                && note_failure(report, self.netlink.del_fdb(&stale))
            {
                report.fdb_removed += 1;
            }
        }
        Ok(())
    }
}

/// Tunnel address → VTEP MAC.
fn wanted_neighbours(vteps: &BTreeSet<Vtep>) -> BTreeMap<IpAddr, [u8; 6]> {
    vteps
        .iter()
        .map(|v| (IpAddr::V4(v.tunnel_address), v.mac))
        .collect()
}

/// VTEP MAC → host address.
fn wanted_fdb(vteps: &BTreeSet<Vtep>) -> BTreeMap<[u8; 6], IpAddr> {
    vteps
        .iter()
        .map(|v| (v.mac, IpAddr::V4(v.host_address)))
        .collect()
}
