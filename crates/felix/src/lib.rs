//! Felix's calculation: turn the datastore's view of the cluster into the kernel state this host should
//! have. Pure: the drivers that apply it are in calico-dataplane.
//!
//! - [`model::Model`] folds syncer events into what matters to a host: nodes, pools, IPAM blocks and
//!   workload endpoints.
//! - [`desired::compute`] is a pure function from the model (plus facts about this host) to the
//!   [`desired::Desired`] dataplane: routes, the VXLAN device and its remote tunnel endpoints, NAT-outgoing.
//! - [`nat`] builds the `calico` nftables table for NAT outgoing (and syncs it with `nft`).
//! - [`policy_nft`] renders network policy (from `calico-policy`'s model) as nftables objects of that
//!   table, with Calico's chain names and marks.

pub mod desired;
pub mod model;
pub mod nat;
pub mod policy_nft;
