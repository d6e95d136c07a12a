//! The resource kinds, their names as users type them, and where they live.

use std::fmt;

/// Every kind calicoctl manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    IPPool,
    IPReservation,
    IPAMConfiguration,
    BGPConfiguration,
    BGPPeer,
    BGPFilter,
    Node,
    FelixConfiguration,
    NetworkPolicy,
    GlobalNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
    NetworkSet,
    GlobalNetworkSet,
    HostEndpoint,
    WorkloadEndpoint,
    Profile,
    ClusterInformation,
    /// `networking.k8s.io/v1` NetworkPolicy. Never stored: calicoctl writes the Calico policy
    /// `knp.default.<name>` it becomes (see [`crate::k8s`]).
    KubernetesNetworkPolicy,
    /// `v1` Namespace. Never stored: calicoctl writes the profile `kns.<name>` it becomes.
    KubernetesNamespace,
}

pub const CALICO_API_VERSION: &str = "projectcalico.org/v3";
pub const K8S_NETWORKING_API_VERSION: &str = "networking.k8s.io/v1";
pub const K8S_CORE_API_VERSION: &str = "v1";

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::IPPool,
        Kind::IPReservation,
        Kind::IPAMConfiguration,
        Kind::BGPConfiguration,
        Kind::BGPPeer,
        Kind::BGPFilter,
        Kind::Node,
        Kind::FelixConfiguration,
        Kind::NetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::StagedNetworkPolicy,
        Kind::Tier,
        Kind::NetworkSet,
        Kind::GlobalNetworkSet,
        Kind::HostEndpoint,
        Kind::WorkloadEndpoint,
        Kind::Profile,
        Kind::ClusterInformation,
        Kind::KubernetesNetworkPolicy,
        Kind::KubernetesNamespace,
    ];

    /// The `kind:` field value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::IPPool => "IPPool",
            Kind::IPReservation => "IPReservation",
            Kind::IPAMConfiguration => "IPAMConfiguration",
            Kind::BGPConfiguration => "BGPConfiguration",
            Kind::BGPPeer => "BGPPeer",
            Kind::BGPFilter => "BGPFilter",
            Kind::Node => "Node",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            Kind::StagedNetworkPolicy => "StagedNetworkPolicy",
            Kind::Tier => "Tier",
            Kind::NetworkSet => "NetworkSet",
            Kind::GlobalNetworkSet => "GlobalNetworkSet",
            Kind::HostEndpoint => "HostEndpoint",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::Profile => "Profile",
            Kind::ClusterInformation => "ClusterInformation",
            Kind::KubernetesNetworkPolicy => "NetworkPolicy",
            Kind::KubernetesNamespace => "Namespace",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::KubernetesNetworkPolicy => K8S_NETWORKING_API_VERSION,
            Kind::KubernetesNamespace => K8S_CORE_API_VERSION,
            _ => CALICO_API_VERSION,
        }
    }

    /// API group, used in the etcd key.
    pub fn group(self) -> &'static str {
        match self {
            Kind::KubernetesNetworkPolicy => "networking.k8s.io",
            // Kubernetes' core group has the empty name.
            Kind::KubernetesNamespace => "",
            _ => "projectcalico.org",
        }
    }

    /// Lower-case plural, used in etcd keys.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::IPPool => "ippools",
            Kind::IPReservation => "ipreservations",
            Kind::IPAMConfiguration => "ipamconfigurations",
            Kind::BGPConfiguration => "bgpconfigurations",
            Kind::BGPPeer => "bgppeers",
            Kind::BGPFilter => "bgpfilters",
            Kind::Node => "nodes",
            Kind::FelixConfiguration => "felixconfigurations",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::GlobalNetworkPolicy => "globalnetworkpolicies",
            Kind::StagedNetworkPolicy => "stagednetworkpolicies",
            Kind::Tier => "tiers",
            Kind::NetworkSet => "networksets",
            Kind::GlobalNetworkSet => "globalnetworksets",
            Kind::HostEndpoint => "hostendpoints",
            Kind::WorkloadEndpoint => "workloadendpoints",
            Kind::Profile => "profiles",
            Kind::ClusterInformation => "clusterinformations",
            Kind::KubernetesNetworkPolicy => "networkpolicies",
            Kind::KubernetesNamespace => "namespaces",
        }
    }

    pub fn namespaced(self) -> bool {
        matches!(
            self,
            Kind::NetworkPolicy
                | Kind::StagedNetworkPolicy
                | Kind::NetworkSet
                | Kind::WorkloadEndpoint
                | Kind::KubernetesNetworkPolicy
        )
    }

    /// Singletons may only be named `default` (Felix and BGP config also take `node.<name>`).
    pub fn singleton(self) -> bool {
        matches!(
            self,
            Kind::ClusterInformation
                | Kind::IPAMConfiguration
                | Kind::FelixConfiguration
                | Kind::BGPConfiguration
        )
    }

    /// The kind a user means by `name` (as typed after `calicoctl get`), case-insensitively,
    /// including calicoctl's short names. Kubernetes kinds have no alias: nothing is stored under them.
    pub fn from_alias(name: &str) -> Option<Kind> {
        let n = name.to_ascii_lowercase();
        let kind = match n.as_str() {
            "ippool" | "ippools" | "ipp" | "ipps" | "pool" | "pools" => Kind::IPPool,
            "ipreservation" | "ipreservations" | "reservation" | "reservations" => {
                Kind::IPReservation
            }
            "ipamconfig" | "ipamconfigs" | "ipamconfiguration" | "ipamconfigurations" => {
                Kind::IPAMConfiguration
            }
            "bgpconfig" | "bgpconfigs" | "bgpconfiguration" | "bgpconfigurations" => {
                Kind::BGPConfiguration
            }
            "bgppeer" | "bgppeers" | "bgpp" | "bgpps" | "bp" | "bps" => Kind::BGPPeer,
            "bgpfilter" | "bgpfilters" | "bgpf" | "bgpfs" | "bf" | "bfs" => Kind::BGPFilter,
            "node" | "nodes" | "no" | "nos" => Kind::Node,
            "felixconfig" | "felixconfigs" | "felixconfiguration" | "felixconfigurations" => {
                Kind::FelixConfiguration
            }
            "networkpolicy" | "networkpolicies" | "policy" | "policies" | "np" | "nps" | "pol"
            | "pols" => Kind::NetworkPolicy,
            "globalnetworkpolicy" | "globalnetworkpolicies" | "gnp" | "gnps" => {
                Kind::GlobalNetworkPolicy
            }
            "stagednetworkpolicy" | "stagednetworkpolicies" | "snp" | "snps" => {
                Kind::StagedNetworkPolicy
            }
            "tier" | "tiers" => Kind::Tier,
            "networkset" | "networksets" | "netset" | "netsets" => Kind::NetworkSet,
            "globalnetworkset" | "globalnetworksets" | "gnetset" | "gnetsets" => {
                Kind::GlobalNetworkSet
            }
            "hostendpoint" | "hostendpoints" | "hep" | "heps" => Kind::HostEndpoint,
            "workloadendpoint" | "workloadendpoints" | "wep" | "weps" => Kind::WorkloadEndpoint,
            "profile" | "profiles" | "pro" | "pros" => Kind::Profile,
            "clusterinfo" | "clusterinfos" | "clusterinformation" | "clusterinformations" => {
                Kind::ClusterInformation
            }
            _ => return None,
        };
        Some(kind)
    }

    /// True for the Kubernetes kinds calicoctl converts to Calico resources before storing them.
    pub fn is_kubernetes(self) -> bool {
        matches!(
            self,
            Kind::KubernetesNetworkPolicy | Kind::KubernetesNamespace
        )
    }

    /// The kind a document declares with `apiVersion` and `kind`.
    pub fn from_document(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.api_version() == api_version && k.name() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve() {
        for (alias, kind) in [
            ("ippool", Kind::IPPool),
            ("IPPools", Kind::IPPool),
            ("ipp", Kind::IPPool),
            ("bgpconfig", Kind::BGPConfiguration),
            ("bgpconfiguration", Kind::BGPConfiguration),
            ("bgppeer", Kind::BGPPeer),
            ("bp", Kind::BGPPeer),
            ("node", Kind::Node),
            ("no", Kind::Node),
            ("wep", Kind::WorkloadEndpoint),
            ("gnp", Kind::GlobalNetworkPolicy),
            ("pol", Kind::NetworkPolicy),
            ("gnetsets", Kind::GlobalNetworkSet),
            ("clusterinfo", Kind::ClusterInformation),
            ("ipamconfig", Kind::IPAMConfiguration),
        ] {
            assert_eq!(Kind::from_alias(alias), Some(kind), "{alias}");
        }
        assert_eq!(Kind::from_alias("ippoolz"), None);
    }

    #[test]
    fn documents_resolve_by_group() {
        assert_eq!(
            Kind::from_document("projectcalico.org/v3", "NetworkPolicy"),
            Some(Kind::NetworkPolicy)
        );
        assert_eq!(
            Kind::from_document("networking.k8s.io/v1", "NetworkPolicy"),
            Some(Kind::KubernetesNetworkPolicy)
        );
        assert_eq!(
            Kind::from_document("v1", "Namespace"),
            Some(Kind::KubernetesNamespace)
        );
        assert_eq!(Kind::from_document("projectcalico.org/v2", "IPPool"), None);
    }
}
