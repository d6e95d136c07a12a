//! Felix's role in calico-rs: turn the datastore's view of the cluster into this host's kernel state.
//!
//! Compute, then apply:
//! - [`model::Model`] folds syncer events into what matters to a host: nodes, pools, IPAM blocks and
//!   workload endpoints.
//! - [`desired::compute`] is a pure function from the model (plus facts about this host) to the
//!   [`desired::Desired`] dataplane: routes, the VXLAN device and its remote tunnel endpoints, NAT-outgoing.
//! - [`dataplane`] reconciles the kernel to a `Desired` through netlink and one nft transaction,
//!   touching only what differs, so a restart never flushes working state.

pub mod activity;
pub mod dataplane;
pub mod desired;
pub mod model;
pub mod nat;
