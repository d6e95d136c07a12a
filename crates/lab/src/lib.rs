//! calico-lab as a library: the `calico-lab` binary's commands, and the pieces the lab benchmark shares
//! with it (the lab's state file, pods added through the CNI plugin).

pub mod cni;
pub mod datastore;
pub mod http;
pub mod lab;
pub mod namespaces;
pub mod netns;
pub mod node;
pub mod parallel;
pub mod paths;
pub mod probe;
pub mod procs;
pub mod reach;
pub mod reflectors;
pub mod relay;
pub mod sctp;
pub mod serve;
pub mod state;
pub mod tor;
pub mod underlay;

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatastoreChoice {
    Embedded,
    Etcd,
}

/// How pods on different hosts reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Encap {
    /// Plain routing (Calico's BGP mode): calico-node's BGP speakers exchange every host's blocks
    /// and write `proto bird` routes.
    None,
    /// VXLAN between every pair of hosts, routes written by Felix; no BGP (Calico's `vxlan`
    /// networking backend).
    Vxlan,
    /// VXLAN only between hosts on different subnets, plain routes (from BGP) between the others.
    VxlanCrosssubnet,
}

impl Encap {
    /// The name `--encap` takes (and the lab's state records).
    pub fn name(self) -> &'static str {
        match self {
            Encap::None => "none",
            Encap::Vxlan => "vxlan",
            Encap::VxlanCrosssubnet => "vxlan-crosssubnet",
        }
    }

    pub fn from_name(name: &str) -> Option<Encap> {
        [Encap::None, Encap::Vxlan, Encap::VxlanCrosssubnet]
            .into_iter()
            .find(|e| e.name() == name)
    }

    /// The default pool's `vxlanMode` (`CALICO_IPV4POOL_VXLAN`).
    pub fn pool_vxlan_mode(self) -> &'static str {
        match self {
            Encap::None => "Never",
            Encap::Vxlan => "Always",
            Encap::VxlanCrosssubnet => "CrossSubnet",
        }
    }

    /// The backend a Calico install picks for this encapsulation when none is asked for: VXLAN
    /// everywhere needs no BGP; the other modes need BGP to carry routes.
    pub fn default_backend(self) -> Backend {
        match self {
            Encap::Vxlan => Backend::Vxlan,
            Encap::None | Encap::VxlanCrosssubnet => Backend::Bird,
        }
    }
}

/// calico-node's networking backend (`CALICO_NETWORKING_BACKEND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The BGP speaker runs (Calico's BIRD and confd).
    Bird,
    /// No BGP: routes only from Felix.
    Vxlan,
}

impl Backend {
    /// The value of `CALICO_NETWORKING_BACKEND` (also what `--backend` takes and the state records).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Bird => "bird",
            Backend::Vxlan => "vxlan",
        }
    }

    pub fn from_name(name: &str) -> Option<Backend> {
        [Backend::Bird, Backend::Vxlan]
            .into_iter()
            .find(|b| b.name() == name)
    }
}
