//! Plan: pure functions from the desired dataplane and the observed kernel state to the operations that
//! turn one into the other. No I/O and no clock: the time is an argument, so every decision (the grace
//! period for routes the CNI plugin wrote, stale-route removal, routes other owners keep, VXLAN
//! recreate-vs-modify) is unit-tested without root and without sleeping.
//!
//! Each kind of kernel object has its own planner: [`vxlan::plan_device`] (the VXLAN device and its
//! address), [`vxlan::plan_vteps`] (remote tunnel endpoints: neighbours and FDB), [`routes::plan_routes`],
//! [`host::plan_sysctls`] and [`host::plan_workload_neighbours`]. The driver observes, plans and executes
//! them in the order traffic in flight needs; [`scope::scope_of_change`] tells it how much of the kernel
//! a new desired state concerns.

pub mod bgp;
pub mod host;
pub mod routes;
pub mod scope;
pub mod vxlan;

use std::collections::HashMap;

use calico_netlink::{FdbEntry, Link, Neighbour, Route, VxlanSpec};
use ipnet::IpNet;

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Delete a link, saying why (a VXLAN device with settings the kernel cannot change in place, or
    /// one no longer wanted).
    DeleteLink {
        index: u32,
        name: String,
        reason: String,
    },
    CreateVxlan(VxlanSpec),
    SetLinkMac {
        index: u32,
        mac: [u8; 6],
    },
    SetLinkMtu {
        index: u32,
        mtu: u32,
    },
    SetLinkUp {
        index: u32,
    },
    AddAddress {
        index: u32,
        net: IpNet,
    },
    DelAddress {
        index: u32,
        net: IpNet,
    },
    ReplaceNeighbour(Neighbour),
    DelNeighbour(Neighbour),
    ReplaceFdb(FdbEntry),
    DelFdb(FdbEntry),
    /// Add or replace the route in its slot (table, destination, metric).
    ReplaceRoute(Route),
    /// Add the route into a slot believed empty; the kernel refuses (exists) if it is not, so a route
    /// that was not looked at is never replaced.
    AddRoute(Route),
    DelRoute(Route),
    SetSysctl {
        key: String,
        value: String,
    },
}

/// What a planner decided: the ops, in order, and what it noticed without writing anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Desired workload interfaces that are missing or still down: being wired by the CNI plugin.
    pub workloads_missing: usize,
    /// Owned routes deliberately kept for now (see [`routes::plan_routes`]); plan again later.
    pub routes_deferred: usize,
    /// Objects that cannot be made as desired (a foreign route in the slot, a missing parent device).
    pub failures: Vec<String>,
    /// Conflicts in the desired state itself (two routes to one destination).
    pub problems: Vec<String>,
}

impl Plan {
    /// Appends `other` after this plan.
    pub fn extend(&mut self, other: Plan) {
        self.ops.extend(other.ops);
        self.workloads_missing += other.workloads_missing;
        self.routes_deferred += other.routes_deferred;
        self.failures.extend(other.failures);
        self.problems.extend(other.problems);
    }
}

/// The links of a namespace, by name and by index.
#[derive(Clone, Debug, Default)]
pub struct Links {
    by_name: HashMap<String, Link>,
    name_of: HashMap<u32, String>,
}

impl Links {
    pub fn new(links: impl IntoIterator<Item = Link>) -> Links {
        let mut by_name = HashMap::new();
        let mut name_of = HashMap::new();
        for link in links {
            name_of.insert(link.index, link.name.clone());
            by_name.insert(link.name.clone(), link);
        }
        Links { by_name, name_of }
    }

    pub fn get(&self, name: &str) -> Option<&Link> {
        self.by_name.get(name)
    }

    pub fn name_of(&self, index: u32) -> Option<&str> {
        self.name_of.get(&index).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        self.by_name.values()
    }

    /// Whether the link with `index` is a host-side workload interface.
    pub fn is_workload(&self, index: u32) -> bool {
        self.name_of(index)
            .is_some_and(calico_contracts::iface::is_workload)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Kernel objects for planner tests.
    use calico_netlink::{Link, VxlanInfo};

    pub fn link(index: u32, name: &str) -> Link {
        Link {
            index,
            name: name.to_string(),
            mac: Some([0xee; 6]),
            mtu: 1500,
            gso_ipv4_max_size: 65_536,
            up: true,
            kind: Some("veth".into()),
            master: None,
            parent: None,
            link_netnsid: None,
            vxlan: None,
        }
    }

    pub fn down(mut link: Link) -> Link {
        link.up = false;
        link
    }

    pub fn vxlan_link(index: u32, info: VxlanInfo, mac: [u8; 6], mtu: u32) -> Link {
        Link {
            kind: Some("vxlan".into()),
            mac: Some(mac),
            mtu,
            vxlan: Some(info),
            ..link(index, calico_contracts::iface::VXLAN)
        }
    }
}
