//! The contracts between the components on one host: the CNI plugin, calico-node's dataplane (Felix's
//! role) and its BGP speaker (BIRD's role). Each is defined once here and used by all of them, so a name,
//! a protocol number or a file cannot drift between the side that writes it and the side that reads it.
//!
//! No I/O. Its one dependency, serde, is for the wire types of calico-node's status socket.

pub mod iface;
pub mod mac;
pub mod node_status;
pub mod route;
pub mod state;
