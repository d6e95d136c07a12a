//! Files calico-node writes in its state directory for the CNI plugin to read.

/// Where calico-node keeps its state files unless `CALICO_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/calico";

/// The node's name, one line: the CNI plugin's `nodename_file`.
pub const NODENAME_FILE: &str = "nodename";

/// The MTU pods on this host should use, one line: read by the CNI plugin when its `mtu` is 0.
pub const MTU_FILE: &str = "mtu";
/// The largest IPv4 GSO/GRO packet pods on this host should use, one line, in the MTU file's directory:
/// the uplink's when it has BIG TCP (above 65,536) and pod traffic is not encapsulated, else 0 (leave
/// the kernel's default). Read by the CNI plugin when it creates a pod's interfaces.
pub const GSO_IPV4_MAX_FILE: &str = "gso-ipv4-max";

/// `<DEFAULT_STATE_DIR>/<NODENAME_FILE>`.
pub const DEFAULT_NODENAME_PATH: &str = "/var/lib/calico/nodename";

/// `<DEFAULT_STATE_DIR>/<MTU_FILE>`.
pub const DEFAULT_MTU_PATH: &str = "/var/lib/calico/mtu";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths_are_the_state_dir_and_file_names() {
        assert_eq!(
            DEFAULT_NODENAME_PATH,
            format!("{DEFAULT_STATE_DIR}/{NODENAME_FILE}")
        );
        assert_eq!(DEFAULT_MTU_PATH, format!("{DEFAULT_STATE_DIR}/{MTU_FILE}"));
    }
}
