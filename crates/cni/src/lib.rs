//! Calico's CNI plugin.
//!
//! [`spec`] is the pure CNI protocol layer: versions and verbs, the environment the runtime sets,
//! the network configuration on stdin, results and errors in every supported spec version.
//! [`delegate`] runs another CNI plugin (normally an IPAM plugin) the way libcni does.

pub mod delegate;
pub mod plugin;
pub mod spec;
