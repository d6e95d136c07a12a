//! A [`Store`] that records every request while it is under way, so `/readiness` can say which
//! datastore request is stuck (a write waiting for a file another process has locked, an etcd that does
//! not answer) while the request itself is still waiting.

use std::sync::Arc;

use async_trait::async_trait;
use calico_datastore::{KeyValue, ListResult, Revision, Store, StoreError, WatchStream, WriteOp};

use crate::status::Status;

pub struct TrackedStore {
    inner: Arc<dyn Store>,
    status: Arc<Status>,
}

impl TrackedStore {
    pub fn wrap(inner: Arc<dyn Store>, status: Arc<Status>) -> Arc<dyn Store> {
        Arc::new(TrackedStore { inner, status })
    }
}

#[async_trait]
impl Store for TrackedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let _request = self.status.datastore_requests.begin(format!("get {key}"));
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError> {
        let _request = self
            .status
            .datastore_requests
            .begin(format!("list {prefix}"));
        self.inner.list(prefix, at).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let _request = self
            .status
            .datastore_requests
            .begin(format!("create {key}"));
        self.inner.create(key, value).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, StoreError> {
        let _request = self
            .status
            .datastore_requests
            .begin(format!("update {key}"));
        self.inner.update(key, value, expected_mod_revision).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let _request = self.status.datastore_requests.begin(format!("put {key}"));
        self.inner.put(key, value).await
    }

    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<Revision, StoreError> {
        let _request = self.status.datastore_requests.begin(format!("put {key}"));
        self.inner.put_with_ttl(key, value, ttl).await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let _request = self
            .status
            .datastore_requests
            .begin(format!("delete {key}"));
        self.inner.delete(key, expected_mod_revision).await
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<Revision, StoreError> {
        let what = match ops.first() {
            Some(first) => format!("a batch of {} writes from {}", ops.len(), first.key()),
            None => "an empty batch".to_string(),
        };
        let _request = self.status.datastore_requests.begin(what);
        self.inner.batch(ops).await
    }

    fn max_batch_ops(&self) -> usize {
        self.inner.max_batch_ops()
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        // Only starting the watch is a request; the stream itself lives as long as the syncer.
        let _request = self
            .status
            .datastore_requests
            .begin(format!("watch {prefix}"));
        self.inner.watch(prefix, from_revision).await
    }

    async fn watch_wanting(
        &self,
        prefix: &str,
        wanted: &[String],
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        let _request = self
            .status
            .datastore_requests
            .begin(format!("watch {prefix}"));
        self.inner
            .watch_wanting(prefix, wanted, from_revision)
            .await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let _request = self
            .status
            .datastore_requests
            .begin(format!("compact to {revision}"));
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let _request = self
            .status
            .datastore_requests
            .begin("read the current revision".to_string());
        self.inner.current_revision().await
    }
}
