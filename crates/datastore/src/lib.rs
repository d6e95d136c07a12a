//! The datastore every calico-rs process shares.
//!
//! [`Store`] is a small key-value contract with etcd v3's semantics: one global revision counter, reads at a
//! revision, create-if-absent, compare-and-swap on a key's modification revision, and watches that resume
//! from a revision and say plainly when history has been compacted so the caller must resync.
//! Two backends implement it: [`etcd::EtcdStore`] for clusters and [`embedded::EmbeddedStore`], one SQLite
//! file shared by every process on a machine.

pub mod client;
pub mod config;
pub mod embedded;
pub mod etcd;
pub mod syncer;

/// Calico's key layout lives in the I/O-free model crate; it is part of this crate's API too.
pub use calico_model::keys;
/// The store's key-values are the model's, so a syncer's output feeds pure consumers directly.
pub use calico_model::{KeyValue, Revision};

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

/// A consistent listing of a prefix and the store revision it reflects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// The store revision the listing was taken at; watch from `revision + 1` to continue without a gap.
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For `Put`: the new key-value. For `Delete`: the key, an empty value, `mod_revision` = the revision of
    /// the delete, `create_revision` = 0 and `version` = 0.
    pub kv: KeyValue,
}

/// A watch: events in revision order (and, within one revision, in the order the batch wrote them).
/// An `Err` item ends the stream: `Compacted` means the caller must list again and resync;
/// `Unavailable` means the connection was lost.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// One write inside an atomic [`Store::batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Fails the batch with `AlreadyExists` if the key exists.
    Create { key: String, value: Vec<u8> },
    /// Fails the batch with `Conflict` unless the key's mod revision equals `expected_mod_revision`
    /// (`NotFound` if the key is absent).
    Update {
        key: String,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    },
    /// Unconditional write.
    Put { key: String, value: Vec<u8> },
    /// Fails the batch with `NotFound` if absent, or `Conflict` if `expected_mod_revision` is given and differs.
    Delete {
        key: String,
        expected_mod_revision: Option<Revision>,
    },
}

impl WriteOp {
    pub fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Put { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("resource already exists: {key}")]
    AlreadyExists { key: String },
    #[error("resource does not exist: {key}")]
    NotFound { key: String },
    #[error("update conflict on {key}: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error(
        "revision {requested} has been compacted (oldest available is {compacted}): resync required"
    )]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    #[error("datastore file {path} is damaged: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("datastore error: {0}")]
    Other(String),
}

/// The datastore contract. Both backends pass the same conformance suite (`tests/conformance.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, in key order, as of `at` (`None` = now).
    /// Reading at a compacted revision fails with `Compacted`; at a future revision with `Invalid`.
    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError>;

    /// Create `key`; fails with `AlreadyExists` if present. Returns the new mod revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError>;

    /// Compare-and-swap: write only if the key's mod revision is `expected_mod_revision`.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, StoreError>;

    /// Unconditional write (create or overwrite). Returns the new mod revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError>;

    /// Unconditional write that expires: unless written again, the key is deleted (and watchers see the
    /// delete) once `ttl` has passed, as with an etcd lease. A later write without a TTL keeps the key.
    /// Status reports use it, so a dead host's report disappears. The embedded store deletes expired
    /// keys in the next write any process makes to the file.
    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<Revision, StoreError>;

    /// Delete `key`, optionally only if its mod revision matches. Returns the deleted key-value
    /// (as it was just before the delete).
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Apply all `ops` atomically at one new revision, or none of them. On failure the error names the
    /// first failing op's key. Backends may cap the number of ops per batch (`max_batch_ops`).
    async fn batch(&self, ops: Vec<WriteOp>) -> Result<Revision, StoreError>;

    /// Largest batch the backend accepts.
    fn max_batch_ops(&self) -> usize;

    /// Events for keys under `prefix` with revision >= `from_revision`, in order. If `from_revision` is
    /// older than the compacted history, the stream yields `Compacted` (immediately, or as its first item).
    /// A `from_revision` of 0 or less means 1: all retained history.
    async fn watch(&self, prefix: &str, from_revision: Revision)
    -> Result<WatchStream, StoreError>;

    /// [`Store::watch`] of `prefix` for a consumer that wants only keys under the prefixes in `wanted`
    /// (each under `prefix`; empty means all of it). The stream may still carry other keys under
    /// `prefix`; a backend may use `wanted` to skip waking for commits that concern none of them.
    async fn watch_wanting(
        &self,
        prefix: &str,
        wanted: &[String],
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        let _ = wanted;
        self.watch(prefix, from_revision).await
    }

    /// Forget history before `revision` (reads and watches below it fail with `Compacted`).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;
}
