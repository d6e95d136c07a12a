//! calico-node: start-up (node registration, default pool, tunnel addresses), the Felix loop, and status.

pub mod agent;
pub mod autodetect;
pub mod bgp;
pub mod bgp_status;
pub mod config;
pub mod handoff;
pub mod input;
pub mod startup;
pub mod status;
pub mod tracked_store;
