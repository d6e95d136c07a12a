//! The syncer: list, then watch; after a compaction or a lost connection it lists again and reports
//! only what changed, so consumers (calico-node) keep a correct model without restarting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{EventKind, KeyValue, Revision, Store, StoreError};

/// What a consumer receives; defined in the model crate so consumers need not link the datastore.
pub use calico_model::SyncEvent;

/// Longest pause between failed listings.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Syncs every key under a set of prefixes.
pub struct Syncer {
    store: Arc<dyn Store>,
    prefixes: Vec<String>,
    retry_delay: Duration,
}

impl Syncer {
    pub fn new(store: Arc<dyn Store>, prefixes: Vec<String>) -> Self {
        Self {
            store,
            prefixes,
            retry_delay: Duration::from_millis(200),
        }
    }

    /// First delay after a failure (doubles up to 5 s).
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Run until the receiver is dropped.
    pub fn spawn(self, tx: mpsc::Sender<SyncEvent>) -> JoinHandle<()> {
        tokio::spawn(self.run(tx))
    }

    /// Run until the receiver is dropped (or the returned handle aborts it), on a thread named `name`
    /// with a single-threaded runtime of its own. A watch event then costs one thread's wake-up: on a
    /// shared multi-thread runtime, the watch and syncer tasks also wake another worker per event, which
    /// with many calico-nodes on one machine (a lab) adds up to a CPU's worth of context switches.
    pub fn spawn_on_own_thread(
        self,
        name: &str,
        tx: mpsc::Sender<SyncEvent>,
    ) -> std::io::Result<tokio::task::AbortHandle> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let task = runtime.spawn(self.run(tx));
        let abort = task.abort_handle();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // Ends when the task ends or is aborted; either way there is nothing to report.
                let _ = runtime.block_on(task);
            })?;
        Ok(abort)
    }

    fn wanted(&self, key: &str) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// The longest prefix shared by all prefixes: one watch covers them all, in revision order.
    fn watch_prefix(&self) -> String {
        let mut prefixes = self.prefixes.iter();
        let mut common = prefixes.next().cloned().unwrap_or_default();
        for p in prefixes {
            let shared = common
                .bytes()
                .zip(p.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            // Stay on a character boundary (prefixes are ASCII in practice).
            let shared = (0..=shared)
                .rev()
                .find(|&i| common.is_char_boundary(i))
                .unwrap_or(0);
            common.truncate(shared);
        }
        common
    }

    /// Pauses between failed listings: the retry delay, doubling up to [`MAX_RETRY_DELAY`], without end.
    fn listing_backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(self.retry_delay)
            .with_max_delay(MAX_RETRY_DELAY)
            .with_factor(2.0)
            .without_max_times()
            .build()
    }

    async fn run(self, tx: mpsc::Sender<SyncEvent>) {
        // What the consumer has been told: key -> mod revision.
        let mut known: BTreeMap<String, Revision> = BTreeMap::new();
        let mut delays = self.listing_backoff();
        loop {
            let revision = match self.snapshot(&mut known, &tx).await {
                Ok(Some(rev)) => rev,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "datastore listing failed; retrying");
                    if tx
                        .send(SyncEvent::Resyncing {
                            reason: e.to_string(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(delays.next().unwrap_or(MAX_RETRY_DELAY)).await;
                    continue;
                }
            };
            delays = self.listing_backoff();
            let reason = match self.follow(revision, &mut known, &tx).await {
                Ok(()) => return,
                Err(e) => e.to_string(),
            };
            tracing::info!(%reason, "watch ended; resyncing");
            if tx.send(SyncEvent::Resyncing { reason }).await.is_err() {
                return;
            }
        }
    }

    /// List every prefix at one revision and report the differences from `known`.
    /// `Ok(None)` means the consumer has gone.
    async fn snapshot(
        &self,
        known: &mut BTreeMap<String, Revision>,
        tx: &mpsc::Sender<SyncEvent>,
    ) -> Result<Option<Revision>, StoreError> {
        let mut revision = None;
        let mut seen: BTreeMap<String, KeyValue> = BTreeMap::new();
        for prefix in &self.prefixes {
            let listed = self.store.list(prefix, revision).await?;
            revision = Some(listed.revision);
            for kv in listed.kvs {
                seen.insert(kv.key.clone(), kv);
            }
        }
        let revision = match revision {
            Some(r) => r,
            None => self.store.current_revision().await?,
        };
        let gone: Vec<String> = known
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            known.remove(&key);
            if tx.send(SyncEvent::Delete { key, revision }).await.is_err() {
                return Ok(None);
            }
        }
        for (key, kv) in seen {
            if known.get(&key) != Some(&kv.mod_revision) {
                known.insert(key, kv.mod_revision);
                if tx.send(SyncEvent::Put(kv)).await.is_err() {
                    return Ok(None);
                }
            }
        }
        if tx.send(SyncEvent::InSync { revision }).await.is_err() {
            return Ok(None);
        }
        Ok(Some(revision))
    }

    /// Watch from just after `revision` until the watch fails (`Err`) or the consumer goes (`Ok`).
    async fn follow(
        &self,
        revision: Revision,
        known: &mut BTreeMap<String, Revision>,
        tx: &mpsc::Sender<SyncEvent>,
    ) -> Result<(), StoreError> {
        // The watch covers the common prefix (one stream keeps revision order); naming the prefixes
        // wanted lets the store skip waking for commits under that prefix that concern none of them.
        let mut stream = self
            .store
            .watch_wanting(&self.watch_prefix(), &self.prefixes, revision + 1)
            .await?;
        while let Some(event) = stream.next().await {
            let event = event?;
            if !self.wanted(&event.kv.key) {
                continue;
            }
            let out = match event.kind {
                EventKind::Put => {
                    known.insert(event.kv.key.clone(), event.kv.mod_revision);
                    SyncEvent::Put(event.kv)
                }
                EventKind::Delete => {
                    known.remove(&event.kv.key);
                    SyncEvent::Delete {
                        key: event.kv.key,
                        revision: event.kv.mod_revision,
                    }
                }
            };
            if tx.send(out).await.is_err() {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable("watch stream ended".into()))
    }
}
