//! The syncer over both real backends: snapshot then "in sync", live updates in order, and a resync
//! after the watch breaks that reports exactly what changed meanwhile (including keys deleted while
//! the watch was down, after the history was compacted).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use calico_datastore::embedded::EmbeddedStore;
use calico_datastore::etcd::{EtcdConfig, EtcdStore};
use calico_datastore::syncer::{SyncEvent, Syncer};
use calico_datastore::{KeyValue, ListResult, Revision, Store, StoreError, WatchStream, WriteOp};
use calico_testutil::EtcdServer;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

const PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
const IPAM: &str = "/calico/ipam/v2/";

/// State of the injected link between the syncer and the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Up,
    /// Events are lost (a client that fell behind or lost its server).
    Down,
    /// The watch ends with `Compacted`.
    Broken,
}

/// Delegates to a real store; the test can take the current watch down (events are lost) and then
/// break it with `Compacted` — what a client sees when it falls behind a compaction or loses its
/// server. This wrapper is the only stand-in here: it injects the failure; data and revisions are real.
struct CuttableStore {
    inner: Arc<dyn Store>,
    cut: watch::Sender<Link>,
    watches: Mutex<u32>,
    /// The prefixes each watch said it wanted.
    wanted: Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl Store for CuttableStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError> {
        self.inner.list(prefix, at).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        rev: Revision,
    ) -> Result<Revision, StoreError> {
        self.inner.update(key, value, rev).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        self.inner.put(key, value).await
    }
    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<Revision, StoreError> {
        self.inner.put_with_ttl(key, value, ttl).await
    }
    async fn delete(&self, key: &str, rev: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.inner.delete(key, rev).await
    }
    async fn batch(&self, ops: Vec<WriteOp>) -> Result<Revision, StoreError> {
        self.inner.batch(ops).await
    }
    fn max_batch_ops(&self) -> usize {
        self.inner.max_batch_ops()
    }
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        *self.watches.lock().expect("lock") += 1;
        self.cut.send_replace(Link::Up);
        let inner = self.inner.watch(prefix, from).await?;
        let paused = self.cut.subscribe();
        let mut broken = self.cut.subscribe();
        let events = inner
            .filter(move |_| futures::future::ready(*paused.borrow() == Link::Up))
            .take_until(async move {
                let _ = broken.wait_for(|l| *l == Link::Broken).await;
            });
        let ending = futures::stream::once(async move {
            Err(StoreError::Compacted {
                requested: from,
                compacted: from,
            })
        });
        Ok(Box::pin(events.chain(ending)))
    }
    async fn watch_wanting(
        &self,
        prefix: &str,
        wanted: &[String],
        from: Revision,
    ) -> Result<WatchStream, StoreError> {
        self.wanted.lock().expect("lock").push(wanted.to_vec());
        self.watch(prefix, from).await
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }
}

async fn next(rx: &mut mpsc::Receiver<SyncEvent>) -> SyncEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("syncer event within 10 s")
        .expect("syncer running")
}

/// Collect events up to and including the next InSync.
async fn until_in_sync(rx: &mut mpsc::Receiver<SyncEvent>) -> (Vec<SyncEvent>, Revision) {
    let mut out = Vec::new();
    loop {
        match next(rx).await {
            SyncEvent::InSync { revision } => return (out, revision),
            e => out.push(e),
        }
    }
}

fn puts(events: &[SyncEvent]) -> BTreeMap<String, String> {
    events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Put(kv) => Some((
                kv.key.clone(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

async fn syncer_scenario(store: Arc<dyn Store>) {
    // Keys inside and outside the synced prefixes.
    store
        .put(&format!("{PREFIX}ippools/a"), b"a1".to_vec())
        .await
        .unwrap();
    store
        .put(&format!("{PREFIX}ippools/b"), b"b1".to_vec())
        .await
        .unwrap();
    store
        .put(&format!("{IPAM}config"), b"c1".to_vec())
        .await
        .unwrap();
    store
        .put("/calico/felix/v2/other", b"x".to_vec())
        .await
        .unwrap();

    let (cut, _) = watch::channel(Link::Up);
    let cuttable = Arc::new(CuttableStore {
        inner: store.clone(),
        cut,
        watches: Mutex::new(0),
        wanted: Mutex::new(Vec::new()),
    });
    let (tx, mut rx) = mpsc::channel(64);
    let handle = Syncer::new(cuttable.clone(), vec![PREFIX.into(), IPAM.into()])
        .with_retry_delay(Duration::from_millis(20))
        .spawn(tx);

    // 1. Snapshot, then in sync at the store's revision.
    let (snapshot, rev) = until_in_sync(&mut rx).await;
    assert_eq!(rev, store.current_revision().await.unwrap());
    assert_eq!(
        puts(&snapshot),
        BTreeMap::from([
            (format!("{IPAM}config"), "c1".to_string()),
            (format!("{PREFIX}ippools/a"), "a1".to_string()),
            (format!("{PREFIX}ippools/b"), "b1".to_string()),
        ])
    );
    assert_eq!(snapshot.len(), 3, "only the synced prefixes: {snapshot:?}");

    // 2. Live updates in order, other prefixes ignored.
    store
        .put(&format!("{PREFIX}ippools/a"), b"a2".to_vec())
        .await
        .unwrap();
    store
        .put("/calico/felix/v2/other", b"y".to_vec())
        .await
        .unwrap();
    let deleted = store
        .delete(&format!("{PREFIX}ippools/b"), None)
        .await
        .unwrap();
    match next(&mut rx).await {
        SyncEvent::Put(kv) => assert_eq!(
            (kv.key.as_str(), kv.value.as_slice()),
            (&*format!("{PREFIX}ippools/a"), &b"a2"[..])
        ),
        other => panic!("want put of a, got {other:?}"),
    }
    match next(&mut rx).await {
        SyncEvent::Delete { key, revision } => {
            assert_eq!(key, format!("{PREFIX}ippools/b"));
            assert!(revision > deleted.mod_revision);
        }
        other => panic!("want delete of b, got {other:?}"),
    }

    // 3. The watch goes down; meanwhile keys change, one is deleted, one is created, and history is
    //    compacted. The resync reports exactly those differences and nothing else.
    cuttable.cut.send_replace(Link::Down);
    store
        .put(&format!("{PREFIX}ippools/c"), b"c-new".to_vec())
        .await
        .unwrap();
    store.delete(&format!("{IPAM}config"), None).await.unwrap();
    store
        .put(&format!("{PREFIX}ippools/a"), b"a3".to_vec())
        .await
        .unwrap();
    let now = store.current_revision().await.unwrap();
    store.compact(now).await.unwrap();
    cuttable.cut.send_replace(Link::Broken);

    let mut resync = Vec::new();
    loop {
        match next(&mut rx).await {
            SyncEvent::Resyncing { reason } => {
                assert!(reason.contains("compacted"), "{reason}");
                break;
            }
            e => resync.push(e),
        }
    }
    assert!(
        resync.is_empty(),
        "nothing delivered from a cut watch: {resync:?}"
    );
    let (diff, rev) = until_in_sync(&mut rx).await;
    assert!(rev >= now);
    assert_eq!(
        puts(&diff),
        BTreeMap::from([
            (format!("{PREFIX}ippools/a"), "a3".to_string()),
            (format!("{PREFIX}ippools/c"), "c-new".to_string()),
        ])
    );
    let deletes: Vec<&str> = diff
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Delete { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deletes, vec![format!("{IPAM}config").as_str()]);
    assert_eq!(diff.len(), 3, "only differences are reported: {diff:?}");

    // 4. And it follows the new watch.
    store
        .put(&format!("{PREFIX}ippools/d"), b"d1".to_vec())
        .await
        .unwrap();
    match next(&mut rx).await {
        SyncEvent::Put(kv) => assert_eq!(kv.key, format!("{PREFIX}ippools/d")),
        other => panic!("want put of d, got {other:?}"),
    }
    assert_eq!(*cuttable.watches.lock().unwrap(), 2);
    // Each watch named the prefixes the syncer wants, so the store can skip waking it for commits
    // under their common prefix (`/calico/`) that concern neither.
    let wanted = vec![PREFIX.to_string(), IPAM.to_string()];
    assert_eq!(
        *cuttable.wanted.lock().unwrap(),
        vec![wanted.clone(), wanted]
    );
    drop(rx);
    // The syncer stops once its consumer is gone (it notices at its next event).
    store
        .put(&format!("{PREFIX}ippools/e"), b"e1".to_vec())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("syncer stops")
        .expect("no panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("calico.db")).unwrap());
    syncer_scenario(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_etcd() {
    let server = EtcdServer::start();
    let cfg = EtcdConfig {
        endpoints: vec![server.endpoint()],
        ..EtcdConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&cfg).await.unwrap());
    syncer_scenario(store).await;
}

/// With the real etcd going away, the syncer keeps retrying (no crash) and resyncs when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_reports_lost_connection() {
    let mut server = EtcdServer::start();
    let cfg = EtcdConfig {
        endpoints: vec![server.endpoint()],
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..EtcdConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&cfg).await.unwrap());
    store
        .put(&format!("{PREFIX}ippools/a"), b"a1".to_vec())
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let _handle = Syncer::new(store, vec![PREFIX.into()])
        .with_retry_delay(Duration::from_millis(50))
        .spawn(tx);
    let (snapshot, _) = until_in_sync(&mut rx).await;
    assert_eq!(snapshot.len(), 1);
    server.kill();
    match next(&mut rx).await {
        SyncEvent::Resyncing { .. } => {}
        other => panic!("want Resyncing after etcd died, got {other:?}"),
    }
}

/// The syncer on a thread of its own needs no runtime from its caller: it lists, reports in sync,
/// follows a write made from another thread, and stops when aborted.
#[test]
fn syncer_on_its_own_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path().join("calico.db")).unwrap());
    let writer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    writer
        .block_on(store.put(&format!("{PREFIX}ippools/a"), b"a1".to_vec()))
        .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let abort = Syncer::new(store.clone(), vec![PREFIX.into(), IPAM.into()])
        .spawn_on_own_thread("syncer-test", tx)
        .unwrap();
    let mut seen = Vec::new();
    loop {
        match rx.blocking_recv().expect("syncer running") {
            SyncEvent::InSync { .. } => break,
            event => seen.push(event),
        }
    }
    assert!(
        matches!(seen.as_slice(), [SyncEvent::Put(kv)] if kv.key == format!("{PREFIX}ippools/a")),
        "{seen:?}"
    );
    writer
        .block_on(store.put(&format!("{IPAM}config"), b"c1".to_vec()))
        .unwrap();
    match rx.blocking_recv().expect("syncer running") {
        SyncEvent::Put(kv) => assert_eq!(kv.key, format!("{IPAM}config")),
        other => panic!("want the put of the IPAM config, got {other:?}"),
    }
    abort.abort();
    // Aborted, the syncer drops its sender: the channel ends.
    while rx.blocking_recv().is_some() {}
}
