//! Calico's IP address management.
//!
//! Pools are cut into blocks (a /26 by default); a host claims blocks (an *affinity*) and hands out their
//! addresses to its workloads, so routing needs one route per block rather than per pod. Addresses are
//! recorded per *handle* (one per container attachment or tunnel) with attributes naming their owner.
//!
//! - [`block`], [`addr`] and [`model`] are pure and live in calico-model (re-exported here), so readers
//!   of IPAM data need not link the allocator: the block document and its operations, address
//!   arithmetic, and the stored forms and keys (Calico's `/calico/ipam/v2/...` layout).
//! - [`order`] and [`pools`] are pure too: the host-seeded order of candidate blocks and pool selection.
//! - [`allocator::Ipam`] applies them to the datastore with compare-and-swap.
//! - [`check`] finds inconsistencies between allocations, handles, affinities and endpoints.

use std::net::IpAddr;

use calico_datastore::StoreError;

pub mod allocator;
pub mod check;
pub mod cleanup;
pub mod order;
pub mod pools;

pub use calico_model::ipam::{addr, block, model};

pub use allocator::{AssignRequest, Assigned, Ipam, StoredAffinity, StoredBlock};
pub use block::{AllocationAttribute, Block};
pub use model::{Affinity, AffinityState, EncodeError, Handle, IpamConfig};
pub use pools::Pool;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no configured Calico pools for node {host} ({family})")]
    NoPools { host: String, family: &'static str },
    #[error(
        "failed to request {requested} {family} addresses. IPAM allocated only {assigned}: the pools are likely exhausted or the host has reached its block limit"
    )]
    Exhausted {
        requested: usize,
        assigned: usize,
        family: &'static str,
    },
    #[error("IP pool {pool} has an invalid nodeSelector {selector:?}: {reason}")]
    BadNodeSelector {
        pool: String,
        selector: String,
        reason: String,
    },
    #[error("the given pool ({0}) does not exist")]
    PoolNotFound(String),
    #[error("the given pool ({0}) is disabled")]
    PoolDisabled(String),
    #[error("the given pool ({0}) is of the other address family")]
    PoolWrongFamily(String),
    #[error("{0} is not in any configured pool")]
    NotInPool(IpAddr),
    #[error("{ip} is in pool {pool}, which does not allow this use")]
    UseNotAllowed { ip: IpAddr, pool: String },
    #[error("{0} is already assigned")]
    InUse(IpAddr),
    #[error("{0} is reserved by an IPReservation")]
    Reserved(IpAddr),
    #[error("{0} was released recently and is cooling down")]
    CoolingDown(IpAddr),
    #[error("{ip} is in a block affine to another host ({owner}) and strict affinity is on")]
    StrictAffinity { ip: IpAddr, owner: String },
    #[error("gave up after repeated write conflicts: {0}")]
    TooManyRetries(String),
    #[error("stored IPAM data at {key} is damaged: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Encode(#[from] model::EncodeError),
    #[error("cannot format the current time: {0}")]
    Time(#[from] time::error::Format),
    #[error(transparent)]
    Store(StoreError),
    #[error("datastore: {0}")]
    Datastore(String),
}

impl IpamError {
    /// The datastore could not be reached: the caller may try again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, IpamError::Store(StoreError::Unavailable(_)))
    }
}
