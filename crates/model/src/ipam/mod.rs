//! IPAM's stored documents, pure: the block document and its operations ([`block`]), affinities, handles,
//! configuration and their keys in Calico's `/calico/ipam/v2/...` layout ([`model`]), and the address
//! arithmetic both rely on ([`addr`]). The allocator that writes them is in calico-ipam.

pub mod addr;
pub mod block;
pub mod model;
