//! Calico's stored data model, with no I/O: what the datastore holds and what its syncer delivers, so
//! pure consumers (Felix's calculation) can read it without linking a datastore client.
//!
//! - [`keys`]: the etcd key layout of v3 resources and Felix's status reports.
//! - [`resource`]: encoding and decoding of stored v3 resources.
//! - [`ipam`]: IPAM's documents (blocks, affinities, handles, configuration), their keys under
//!   `/calico/ipam/v2/`, and the address arithmetic they use.
//! - [`KeyValue`] and [`SyncEvent`]: one stored key, and the events a syncer emits.

pub mod ipam;
pub mod keys;
pub mod resource;

/// A store revision. Every successful write (or atomic batch) advances it by one.
pub type Revision = i64;

/// One key with its value and revision bookkeeping, as etcd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last write to the key: the token for compare-and-swap.
    pub mod_revision: Revision,
    /// Number of writes since the key was created (1 after create).
    pub version: i64,
}

/// What a syncer's consumer receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// A key was created or changed.
    Put(KeyValue),
    /// A key went away (deleted, or missing from a resync listing).
    Delete { key: String, revision: Revision },
    /// Everything up to `revision` has been delivered. Sent after the first snapshot and after every
    /// resync, so a consumer can act on a complete view.
    InSync { revision: Revision },
    /// The watch broke (`reason`); a fresh listing follows and only differences are reported.
    Resyncing { reason: String },
}
