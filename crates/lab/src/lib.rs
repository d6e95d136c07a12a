//! calico-lab as a library: the `calico-lab` binary's commands, and the pieces the lab benchmark shares
//! with it (the lab's state file, pods added through the CNI plugin).

pub mod cni;
pub mod datastore;
pub mod http;
pub mod lab;
pub mod netns;
pub mod node;
pub mod parallel;
pub mod paths;
pub mod procs;
pub mod reach;
pub mod relay;
pub mod state;
pub mod underlay;

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatastoreChoice {
    Embedded,
    Etcd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Encap {
    Vxlan,
}
