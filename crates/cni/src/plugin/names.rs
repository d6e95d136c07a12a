//! Names Calico derives for a container attachment: the host-side interface, the IPAM handle and the
//! WorkloadEndpoint.

use sha1::{Digest, Sha1};

/// Interface name prefix of host-side workload interfaces.
pub const HOST_IFACE_PREFIX: &str = calico_contracts::iface::WORKLOAD_PREFIX;

/// Calico's default network name, used when the config has none.
pub const DEFAULT_NETWORK: &str = "k8s-pod-network";

/// Who created the container: Kubernetes (pod arguments present) or a plain CNI runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    Kubernetes { namespace: String, pod: String },
    Cni { container_id: String },
}

impl Workload {
    pub fn orchestrator(&self) -> &'static str {
        match self {
            Workload::Kubernetes { .. } => "k8s",
            Workload::Cni { .. } => "cni",
        }
    }

    /// The WorkloadEndpoint's namespace.
    pub fn namespace(&self) -> &str {
        match self {
            Workload::Kubernetes { namespace, .. } => namespace,
            Workload::Cni { .. } => "default",
        }
    }
}

fn sha1_hex(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The host end of the veth: `cali` + 11 hex characters, 15 in all (the kernel's limit).
///
/// For a pod: the first 11 hex characters of SHA-1 of `<namespace>.<pod>`, as Calico names it, so the
/// name survives a sandbox restart. For a plain CNI container: the container ID's first 11 characters
/// when it is hex (runtime-generated IDs are), as Calico does; otherwise SHA-1 of the ID, so any ID gives a
/// valid, stable name.
pub fn host_iface_name(workload: &Workload) -> String {
    let suffix = match workload {
        Workload::Kubernetes { namespace, pod } => sha1_hex(&format!("{namespace}.{pod}")),
        Workload::Cni { container_id } => {
            if container_id.len() >= 11 && container_id[..11].bytes().all(|b| b.is_ascii_hexdigit())
            {
                container_id[..11].to_ascii_lowercase()
            } else {
                sha1_hex(container_id)
            }
        }
    };
    format!("{HOST_IFACE_PREFIX}{}", &suffix[..11])
}

/// The IPAM handle of an attachment: `<network>.<containerID>`.
pub fn handle_id(network: &str, container_id: &str) -> String {
    let network = if network.is_empty() {
        DEFAULT_NETWORK
    } else {
        network
    };
    format!("{network}.{container_id}")
}

/// One segment of a WorkloadEndpoint name: dashes doubled so the segments can be told apart.
fn segment(s: &str) -> String {
    s.replace('-', "--")
}

/// `<node>-<orchestrator>-<pod or containerID>-<endpoint>`, each segment's dashes doubled.
pub fn workload_endpoint_name(node: &str, workload: &Workload, endpoint: &str) -> String {
    let id = match workload {
        Workload::Kubernetes { pod, .. } => pod.as_str(),
        Workload::Cni { container_id } => container_id.as_str(),
    };
    format!(
        "{}-{}-{}-{}",
        segment(node),
        workload.orchestrator(),
        segment(id),
        segment(endpoint)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(namespace: &str, pod: &str) -> Workload {
        Workload::Kubernetes {
            namespace: namespace.into(),
            pod: pod.into(),
        }
    }

    /// Names Calico itself gave, so a host upgraded from Calico keeps its pods' interfaces:
    /// - `default`/`podA` → `cali7f94ce7c295`: the value projectcalico/calico pins in its k8s conversion
    ///   tests (libcalico-go/lib/backend/k8s/conversion, "the calculation of this name should be consistent
    ///   between releases").
    /// - `calico-apiserver`/`calico-apiserver-57589b6747-bqcdn` → `cali470c2d79457`: `calicoctl get weps`
    ///   output from a live cluster quoted by a maintainer in projectcalico/calico issue #8598.
    #[test]
    fn host_interface_names_match_calicos_for_pods() {
        assert_eq!(host_iface_name(&pod("default", "podA")), "cali7f94ce7c295");
        assert_eq!(
            host_iface_name(&pod(
                "calico-apiserver",
                "calico-apiserver-57589b6747-bqcdn"
            )),
            "cali470c2d79457"
        );
    }

    #[test]
    fn host_interface_names_of_plain_cni_containers() {
        // Calico's CNI plugin outside Kubernetes: `cali` + the container ID's first 11 characters
        // (projectcalico/calico cni-plugin, the non-k8s ADD path).
        let hex_id = Workload::Cni {
            container_id: "0123456789abcdef0123".into(),
        };
        assert_eq!(host_iface_name(&hex_id), "cali0123456789a");
        // IDs that are not hex (ours, not Calico's, rule): still 15 characters, distinct, stable.
        let short = Workload::Cni {
            container_id: "c1".into(),
        };
        assert_eq!(host_iface_name(&short).len(), 15);
        assert_ne!(
            host_iface_name(&short),
            host_iface_name(&Workload::Cni {
                container_id: "c2".into()
            })
        );
    }

    #[test]
    fn endpoint_names_and_handles() {
        let pod = Workload::Kubernetes {
            namespace: "ns".into(),
            pod: "web-0".into(),
        };
        assert_eq!(
            workload_endpoint_name("node-1", &pod, "eth0"),
            "node--1-k8s-web--0-eth0"
        );
        let cni = Workload::Cni {
            container_id: "abc".into(),
        };
        assert_eq!(workload_endpoint_name("n", &cni, "eth0"), "n-cni-abc-eth0");
        assert_eq!(handle_id("net", "abc"), "net.abc");
        assert_eq!(handle_id("", "abc"), "k8s-pod-network.abc");
    }
}
