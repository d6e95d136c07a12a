//! The contracts between the components on one host: the CNI plugin, calico-node's dataplane (Felix's
//! role) and its BGP speaker (BIRD's role). Each is defined once here and used by all of them, so a name,
//! a protocol number or a file cannot drift between the side that writes it and the side that reads it.
//!
//! No dependencies and no I/O.

pub mod iface;
pub mod mac;
pub mod route;
pub mod state;
