//! Interface names Calico uses on a host.

/// Host-side workload interfaces (the host end of each pod's veth) start with this.
pub const WORKLOAD_PREFIX: &str = "cali";

/// Calico's VXLAN device.
pub const VXLAN: &str = "vxlan.calico";

/// Whether `name` is a host-side workload interface.
pub fn is_workload(name: &str) -> bool {
    name.starts_with(WORKLOAD_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_interfaces_are_recognised_by_their_prefix() {
        assert!(is_workload("cali1a2b3c4d5e6"));
        assert!(!is_workload("eth0"));
        assert!(!is_workload(VXLAN));
        assert!(!is_workload("cal"));
    }
}
