//! Route protocols and route ownership: the one table of who may change which route.
//!
//! Every route in the kernel carries a protocol number (`ip route` shows it as `proto …`). Together with
//! the interface a route uses, it decides the route's owner, and only a route's owner deletes or
//! replaces it:
//!
//! | protocol | interface | owner | who manages it |
//! |---|---|---|---|
//! | 80 (Felix's tag, as Calico) | any | [`Owner::Felix`] | calico-node's dataplane |
//! | 12 (`bird`, as Calico's BIRD) | any | [`Owner::Bgp`] | calico-node's BGP speaker |
//! | 2 (`kernel`) | any | [`Owner::Kernel`] | nobody: the kernel's own (link routes of addresses) |
//! | any other | a workload interface (`cali…`) | [`Owner::Cni`] | written by the CNI plugin (`proto boot`), adopted by the dataplane, which removes it once no endpoint names the interface |
//! | any other | any other | [`Owner::Foreign`] | nobody: an administrator's or another program's |

/// `proto kernel`: routes the kernel made for an address.
pub const PROTO_KERNEL: u8 = 2;
/// `proto boot`: the CNI plugin's routes to its pods (the kernel's default for a route added without
/// a protocol).
pub const PROTO_CNI: u8 = 3;
/// `proto static`: routes an administrator added.
pub const PROTO_STATIC: u8 = 4;
/// `proto bird`: routes learned over BGP. Calico's BIRD writes them with this number, and users look for
/// `proto bird` in `ip route`, so calico-node's own speaker uses it too.
pub const PROTO_BGP: u8 = 12;
/// Felix's tag for the routes it manages that are not workload routes (blackholes for local blocks,
/// routes to other hosts' blocks over VXLAN or the underlay), as Calico's Felix does.
pub const PROTO_FELIX: u8 = 80;

/// Who owns a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A route to a pod on a workload interface: written by the CNI plugin, kept by the dataplane.
    Cni,
    /// The dataplane's own routes (protocol 80).
    Felix,
    /// Routes the BGP speaker learned (protocol 12).
    Bgp,
    /// The kernel's routes for local addresses.
    Kernel,
    /// Anything else: never changed by calico-rs.
    Foreign,
}

/// The components that change routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Manager {
    /// calico-node's dataplane: workload routes and Felix's routes.
    Dataplane,
    /// calico-node's BGP speaker: the routes it learned.
    Bgp,
}

/// The owner of a route with `protocol` whose device is `on_workload_iface` (a `cali…` interface).
pub fn owner(protocol: u8, on_workload_iface: bool) -> Owner {
    match protocol {
        PROTO_FELIX => Owner::Felix,
        PROTO_BGP => Owner::Bgp,
        PROTO_KERNEL => Owner::Kernel,
        _ if on_workload_iface => Owner::Cni,
        _ => Owner::Foreign,
    }
}

impl Owner {
    /// The component that may delete or replace routes of this owner, if any.
    pub fn manager(self) -> Option<Manager> {
        match self {
            Owner::Cni | Owner::Felix => Some(Manager::Dataplane),
            Owner::Bgp => Some(Manager::Bgp),
            Owner::Kernel | Owner::Foreign => None,
        }
    }

    /// Whether `manager` may delete or replace a route of this owner.
    pub fn managed_by(self, manager: Manager) -> bool {
        self.manager() == Some(manager)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ownership_table() {
        // (protocol, on a workload interface) -> owner, written out from the table in the docs.
        let cases = [
            (80, false, Owner::Felix),
            (80, true, Owner::Felix),
            (12, false, Owner::Bgp),
            (12, true, Owner::Bgp),
            (2, false, Owner::Kernel),
            (2, true, Owner::Kernel),
            (3, true, Owner::Cni),
            (4, true, Owner::Cni),
            (3, false, Owner::Foreign),
            (4, false, Owner::Foreign),
            (16, false, Owner::Foreign),
            (186, false, Owner::Foreign),
        ];
        for (protocol, workload, want) in cases {
            assert_eq!(
                owner(protocol, workload),
                want,
                "proto {protocol} workload {workload}"
            );
        }
    }

    #[test]
    fn only_the_owner_s_manager_may_change_a_route() {
        assert!(Owner::Felix.managed_by(Manager::Dataplane));
        assert!(Owner::Cni.managed_by(Manager::Dataplane));
        assert!(!Owner::Bgp.managed_by(Manager::Dataplane));
        assert!(Owner::Bgp.managed_by(Manager::Bgp));
        assert!(!Owner::Felix.managed_by(Manager::Bgp));
        assert!(!Owner::Cni.managed_by(Manager::Bgp));
        for nobody in [Owner::Kernel, Owner::Foreign] {
            assert!(!nobody.managed_by(Manager::Dataplane));
            assert!(!nobody.managed_by(Manager::Bgp));
        }
    }
}
