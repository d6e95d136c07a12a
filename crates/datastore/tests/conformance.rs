//! One conformance suite for every `Store` backend.
//!
//! Each check is written once, against `&dyn Store`, and instantiated per backend by `conformance!`:
//! the etcd backend against a real etcd (one server per test) and the embedded backend on its own
//! temporary file. Tests that need several OS processes re-run this test binary in "child mode"
//! (`child_entry`, ignored in normal runs) with environment variables naming the backend and what to do.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use calico_datastore::embedded::EmbeddedStore;
use calico_datastore::etcd::{EtcdConfig, EtcdStore};
use calico_datastore::{
    EventKind, KeyValue, Revision, Store, StoreError, WatchEvent, WatchStream, WriteOp,
};
use calico_testutil::EtcdServer;
use futures::StreamExt;
use tempfile::TempDir;

/// Longest a test waits for one watch event before failing instead of hanging.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

// Child-mode environment.
const CHILD_ROLE: &str = "CONFORMANCE_CHILD_ROLE";
const CHILD_BACKEND: &str = "CONFORMANCE_CHILD_BACKEND";
const CHILD_TARGET: &str = "CONFORMANCE_CHILD_TARGET";
const CHILD_KEY: &str = "CONFORMANCE_CHILD_KEY";
const CHILD_COUNT: &str = "CONFORMANCE_CHILD_COUNT";
const CHILD_GO_KEY: &str = "CONFORMANCE_CHILD_GO_KEY";

/// Which backend a test runs against, and how another process reaches the same data.
#[derive(Clone, Debug)]
enum Target {
    Etcd { endpoint: String },
    Embedded { path: PathBuf },
}

impl Target {
    fn from_env() -> Target {
        let backend = std::env::var(CHILD_BACKEND).expect("child backend");
        let target = std::env::var(CHILD_TARGET).expect("child target");
        match backend.as_str() {
            "etcd" => Target::Etcd { endpoint: target },
            "embedded" => Target::Embedded {
                path: PathBuf::from(target),
            },
            other => panic!("unknown backend {other}"),
        }
    }

    fn env(&self) -> [(&'static str, String); 2] {
        match self {
            Target::Etcd { endpoint } => [
                (CHILD_BACKEND, "etcd".into()),
                (CHILD_TARGET, endpoint.clone()),
            ],
            Target::Embedded { path } => [
                (CHILD_BACKEND, "embedded".into()),
                (CHILD_TARGET, path.display().to_string()),
            ],
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Target::Etcd { endpoint } => {
                let config = EtcdConfig {
                    endpoints: vec![endpoint.clone()],
                    ..EtcdConfig::default()
                };
                Arc::new(EtcdStore::connect(&config).await.expect("connect to etcd"))
            }
            Target::Embedded { path } => {
                Arc::new(EmbeddedStore::open(path).expect("open embedded store"))
            }
        }
    }
}

/// One test's backend: the store plus whatever must live as long as it (the etcd server, the temp dir).
struct Fixture {
    store: Arc<dyn Store>,
    target: Target,
    _etcd: Option<EtcdServer>,
    _dir: Option<TempDir>,
}

impl Fixture {
    async fn etcd() -> Fixture {
        let server = EtcdServer::start();
        let target = Target::Etcd {
            endpoint: server.endpoint(),
        };
        Fixture {
            store: target.open().await,
            target,
            _etcd: Some(server),
            _dir: None,
        }
    }

    async fn embedded() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = Target::Embedded {
            path: dir.path().join("calico.db"),
        };
        Fixture {
            store: target.open().await,
            target,
            _etcd: None,
            _dir: Some(dir),
        }
    }

    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// Instantiates every listed check for both backends.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let fixture = super::Fixture::etcd().await;
                    super::$check(&fixture).await;
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let fixture = super::Fixture::embedded().await;
                    super::$check(&fixture).await;
                }
            )*
        }
    };
}

conformance!(
    get_of_missing_key_is_none,
    create_sets_revisions_and_version,
    create_of_existing_key_fails_without_writing,
    update_is_compare_and_swap,
    put_creates_and_overwrites,
    a_key_written_with_a_ttl_expires_unless_rewritten_without_one,
    delete_with_and_without_cas,
    revisions_advance_by_one_per_write_and_batch,
    list_is_by_prefix_in_key_order,
    list_at_past_revision_sees_old_state,
    batch_is_all_or_nothing,
    batch_respects_its_size_cap,
    watch_delivers_every_change_in_order,
    watch_resumes_from_a_revision_without_gap_or_duplicate,
    watch_reports_deletes,
    compaction_forces_resync_and_resync_sees_everything,
    separate_processes_racing_on_one_key_lose_no_update,
    watch_sees_writes_from_another_process,
);

// ---------------------------------------------------------------------------------------------------
// Helpers

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

async fn next_event(stream: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("watch stream ended unexpectedly"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

async fn collect_events(stream: &mut WatchStream, count: usize) -> Vec<WatchEvent> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next_event(stream).await.expect("watch event"));
    }
    events
}

/// Asserts nothing more arrives on the watch for a short while.
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

fn put_event(kv: &KeyValue) -> (EventKind, String, Vec<u8>, Revision) {
    (
        EventKind::Put,
        kv.key.clone(),
        kv.value.clone(),
        kv.mod_revision,
    )
}

fn summary(event: &WatchEvent) -> (EventKind, String, Vec<u8>, Revision) {
    (
        event.kind,
        event.kv.key.clone(),
        event.kv.value.clone(),
        event.kv.mod_revision,
    )
}

// ---------------------------------------------------------------------------------------------------
// Single-key operations

async fn get_of_missing_key_is_none(fixture: &Fixture) {
    let store = fixture.store();
    assert_eq!(store.get("/t/missing").await.unwrap(), None);
    store.put("/t/missing-not", bytes("x")).await.unwrap();
    assert_eq!(
        store.get("/t/missing").await.unwrap(),
        None,
        "a longer key is not a match"
    );
}

async fn create_sets_revisions_and_version(fixture: &Fixture) {
    let store = fixture.store();
    let before = store.current_revision().await.unwrap();
    let revision = store.create("/t/a", bytes("one")).await.unwrap();
    assert_eq!(revision, before + 1);
    let kv = store.get("/t/a").await.unwrap().expect("created key");
    assert_eq!(
        kv,
        KeyValue {
            key: "/t/a".into(),
            value: bytes("one"),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
        }
    );
    assert_eq!(store.current_revision().await.unwrap(), revision);
}

async fn create_of_existing_key_fails_without_writing(fixture: &Fixture) {
    let store = fixture.store();
    let revision = store.create("/t/a", bytes("one")).await.unwrap();
    let err = store.create("/t/a", bytes("two")).await.unwrap_err();
    assert_eq!(err, StoreError::AlreadyExists { key: "/t/a".into() });
    let kv = store.get("/t/a").await.unwrap().unwrap();
    assert_eq!(kv.value, bytes("one"));
    assert_eq!(kv.mod_revision, revision);
    assert_eq!(store.current_revision().await.unwrap(), revision);
}

async fn update_is_compare_and_swap(fixture: &Fixture) {
    let store = fixture.store();
    let created = store.create("/t/a", bytes("v1")).await.unwrap();
    let updated = store.update("/t/a", bytes("v2"), created).await.unwrap();
    assert_eq!(updated, created + 1);
    let kv = store.get("/t/a").await.unwrap().unwrap();
    assert_eq!(kv.value, bytes("v2"));
    assert_eq!(kv.create_revision, created);
    assert_eq!(kv.mod_revision, updated);
    assert_eq!(kv.version, 2);

    // A stale token fails and reports the revision that won.
    let err = store
        .update("/t/a", bytes("stale"), created)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            key: "/t/a".into(),
            expected: created,
            actual: updated,
        }
    );
    assert_eq!(store.get("/t/a").await.unwrap().unwrap().value, bytes("v2"));
    assert_eq!(store.current_revision().await.unwrap(), updated);

    // Updating a missing key is NotFound, whatever the token.
    for token in [updated, 0] {
        let err = store
            .update("/t/missing", bytes("x"), token)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::NotFound {
                key: "/t/missing".into()
            }
        );
    }
    assert_eq!(store.get("/t/missing").await.unwrap(), None);
    // A token that can never match an existing key is a conflict, not a write.
    let err = store.update("/t/a", bytes("x"), 0).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual, .. } if actual == updated),
        "{err:?}"
    );
}

async fn put_creates_and_overwrites(fixture: &Fixture) {
    let store = fixture.store();
    let first = store.put("/t/p", bytes("a")).await.unwrap();
    let second = store.put("/t/p", bytes("b")).await.unwrap();
    let third = store.put("/t/p", bytes("b")).await.unwrap();
    assert_eq!((second, third), (first + 1, first + 2));
    let kv = store.get("/t/p").await.unwrap().unwrap();
    assert_eq!(kv.create_revision, first);
    assert_eq!(kv.mod_revision, third);
    assert_eq!(kv.version, 3);
    assert_eq!(kv.value, bytes("b"));
}

async fn a_key_written_with_a_ttl_expires_unless_rewritten_without_one(fixture: &Fixture) {
    let store = fixture.store();
    let ttl = Duration::from_secs(1);
    let first = store
        .put_with_ttl("/t/ttl/gone", bytes("a"), ttl)
        .await
        .unwrap();
    let mut watch = store.watch("/t/ttl/", first).await.unwrap();
    store
        .put_with_ttl("/t/ttl/kept", bytes("b"), ttl)
        .await
        .unwrap();
    // A plain write detaches the lease: this key stays.
    store.put("/t/ttl/kept", bytes("c")).await.unwrap();
    assert!(store.get("/t/ttl/gone").await.unwrap().is_some());

    // Past the TTL the key goes. The embedded store deletes expired keys in the next write to the file,
    // so keep writing another key while waiting (etcd expires it by itself).
    tokio::time::sleep(ttl).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.get("/t/ttl/gone").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a key with a 1 s TTL still exists after 11 s"
        );
        store.put("/t/other", bytes("tick")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store.get("/t/ttl/kept").await.unwrap().map(|kv| kv.value),
        Some(bytes("c"))
    );
    // Watchers see the expiry as a delete, after the three writes.
    let events = collect_events(&mut watch, 4).await;
    assert_eq!(events[3].kind, EventKind::Delete, "{events:?}");
    assert_eq!(events[3].kv.key, "/t/ttl/gone");
}

async fn delete_with_and_without_cas(fixture: &Fixture) {
    let store = fixture.store();
    assert_eq!(
        store.delete("/t/d", None).await.unwrap_err(),
        StoreError::NotFound { key: "/t/d".into() }
    );
    assert_eq!(
        store.delete("/t/d", Some(5)).await.unwrap_err(),
        StoreError::NotFound { key: "/t/d".into() }
    );

    let created = store.create("/t/d", bytes("one")).await.unwrap();
    let updated = store.update("/t/d", bytes("two"), created).await.unwrap();
    let err = store.delete("/t/d", Some(created)).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            key: "/t/d".into(),
            expected: created,
            actual: updated
        }
    );
    assert!(
        store.get("/t/d").await.unwrap().is_some(),
        "failed CAS kept the key"
    );

    let deleted = store.delete("/t/d", Some(updated)).await.unwrap();
    assert_eq!(
        deleted,
        KeyValue {
            key: "/t/d".into(),
            value: bytes("two"),
            create_revision: created,
            mod_revision: updated,
            version: 2,
        }
    );
    assert_eq!(store.get("/t/d").await.unwrap(), None);
    assert_eq!(store.current_revision().await.unwrap(), updated + 1);

    // Unconditional delete; re-creating starts a new life (version 1, new create revision).
    let recreated = store.create("/t/d", bytes("three")).await.unwrap();
    assert_eq!(recreated, updated + 2);
    let deleted = store.delete("/t/d", None).await.unwrap();
    assert_eq!(deleted.value, bytes("three"));
    assert_eq!(deleted.version, 1);
    assert_eq!(deleted.create_revision, recreated);
    assert_eq!(store.get("/t/d").await.unwrap(), None);
}

async fn revisions_advance_by_one_per_write_and_batch(fixture: &Fixture) {
    let store = fixture.store();
    let start = store.current_revision().await.unwrap();
    let mut expected = start;
    for i in 0..5 {
        expected += 1;
        assert_eq!(
            store.put(&format!("/t/r/{i}"), bytes("x")).await.unwrap(),
            expected
        );
    }
    let batch = vec![
        WriteOp::Put {
            key: "/t/r/b1".into(),
            value: bytes("1"),
        },
        WriteOp::Create {
            key: "/t/r/b2".into(),
            value: bytes("2"),
        },
        WriteOp::Delete {
            key: "/t/r/0".into(),
            expected_mod_revision: None,
        },
    ];
    expected += 1;
    assert_eq!(store.batch(batch).await.unwrap(), expected);
    for key in ["/t/r/b1", "/t/r/b2"] {
        let kv = store.get(key).await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision), (expected, expected));
    }
    // Failed writes do not advance the revision.
    store.create("/t/r/1", bytes("again")).await.unwrap_err();
    store.update("/t/r/1", bytes("x"), start).await.unwrap_err();
    store.delete("/t/r/0", None).await.unwrap_err();
    assert_eq!(store.current_revision().await.unwrap(), expected);
    expected += 1;
    assert_eq!(store.delete("/t/r/1", None).await.unwrap().key, "/t/r/1");
    assert_eq!(store.current_revision().await.unwrap(), expected);
}

// ---------------------------------------------------------------------------------------------------
// Listing

async fn list_is_by_prefix_in_key_order(fixture: &Fixture) {
    let store = fixture.store();
    for key in [
        "/a/bc", "/a/b/y", "/a/b", "/a/a", "/a/b/x", "/b/b", "/a/b/", "/a/c",
    ] {
        store.put(key, bytes(key)).await.unwrap();
    }
    let keys = |listing: &calico_datastore::ListResult| {
        listing
            .kvs
            .iter()
            .map(|kv| kv.key.clone())
            .collect::<Vec<_>>()
    };

    let under_b = store.list("/a/b/", None).await.unwrap();
    assert_eq!(keys(&under_b), ["/a/b/", "/a/b/x", "/a/b/y"]);
    assert_eq!(under_b.revision, store.current_revision().await.unwrap());
    // A prefix is a byte prefix: "/a/b" also matches "/a/bc", but "/a/b/" does not.
    let byte_prefix = store.list("/a/b", None).await.unwrap();
    assert_eq!(
        keys(&byte_prefix),
        ["/a/b", "/a/b/", "/a/b/x", "/a/b/y", "/a/bc"]
    );
    let everything_a = store.list("/a/", None).await.unwrap();
    assert_eq!(
        keys(&everything_a),
        ["/a/a", "/a/b", "/a/b/", "/a/b/x", "/a/b/y", "/a/bc", "/a/c"]
    );
    for kv in &everything_a.kvs {
        assert_eq!(kv.value, bytes(&kv.key));
    }
    assert!(store.list("/nothing/", None).await.unwrap().kvs.is_empty());
    let all = store.list("", None).await.unwrap();
    assert_eq!(all.kvs.len(), 8);
    assert!(all.kvs.windows(2).all(|pair| pair[0].key < pair[1].key));

    // Enough keys to need several pages on backends that page (etcd lists 500 keys per request).
    let per_batch = store.max_batch_ops().min(100);
    for batch in 0..8 {
        let ops: Vec<WriteOp> = (0..per_batch)
            .map(|i| WriteOp::Put {
                key: format!("/m/{:05}", batch * per_batch + i),
                value: bytes("v"),
            })
            .collect();
        store.batch(ops).await.unwrap();
    }
    let listed = store.list("/m/", None).await.unwrap();
    let expected_keys: Vec<String> = (0..8 * per_batch).map(|i| format!("/m/{i:05}")).collect();
    assert_eq!(keys(&listed), expected_keys);
    assert_eq!(listed.revision, store.current_revision().await.unwrap());
}

async fn list_at_past_revision_sees_old_state(fixture: &Fixture) {
    let store = fixture.store();
    store.put("/h/a", bytes("a1")).await.unwrap();
    let b = store.put("/h/b", bytes("b1")).await.unwrap();
    let past = store.current_revision().await.unwrap();
    assert_eq!(past, b);

    store.put("/h/a", bytes("a2")).await.unwrap();
    store.delete("/h/b", None).await.unwrap();
    store.put("/h/c", bytes("c1")).await.unwrap();

    let old = store.list("/h/", Some(past)).await.unwrap();
    assert_eq!(old.revision, past);
    let old_view: Vec<(String, Vec<u8>)> =
        old.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(
        old_view,
        [
            ("/h/a".to_string(), bytes("a1")),
            ("/h/b".to_string(), bytes("b1"))
        ]
    );
    let now = store.list("/h/", None).await.unwrap();
    let now_view: Vec<(String, Vec<u8>)> =
        now.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(
        now_view,
        [
            ("/h/a".to_string(), bytes("a2")),
            ("/h/c".to_string(), bytes("c1"))
        ]
    );
    assert_eq!(now.revision, past + 3);

    let future = now.revision + 10;
    let err = store.list("/h/", Some(future)).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------------
// Batches

async fn batch_is_all_or_nothing(fixture: &Fixture) {
    let store = fixture.store();
    let existing = store.create("/bt/existing", bytes("e")).await.unwrap();
    let other = store.create("/bt/other", bytes("o")).await.unwrap();
    let before = store.current_revision().await.unwrap();

    let failing = [
        (
            vec![
                WriteOp::Create {
                    key: "/bt/new".into(),
                    value: bytes("n"),
                },
                WriteOp::Update {
                    key: "/bt/existing".into(),
                    value: bytes("changed"),
                    expected_mod_revision: existing + 100,
                },
                WriteOp::Put {
                    key: "/bt/put".into(),
                    value: bytes("p"),
                },
            ],
            StoreError::Conflict {
                key: "/bt/existing".into(),
                expected: existing + 100,
                actual: existing,
            },
        ),
        (
            vec![
                WriteOp::Put {
                    key: "/bt/put".into(),
                    value: bytes("p"),
                },
                WriteOp::Create {
                    key: "/bt/existing".into(),
                    value: bytes("again"),
                },
            ],
            StoreError::AlreadyExists {
                key: "/bt/existing".into(),
            },
        ),
        (
            vec![
                WriteOp::Delete {
                    key: "/bt/other".into(),
                    expected_mod_revision: Some(other),
                },
                WriteOp::Delete {
                    key: "/bt/missing".into(),
                    expected_mod_revision: None,
                },
            ],
            StoreError::NotFound {
                key: "/bt/missing".into(),
            },
        ),
        (
            vec![WriteOp::Update {
                key: "/bt/missing".into(),
                value: bytes("x"),
                expected_mod_revision: 1,
            }],
            StoreError::NotFound {
                key: "/bt/missing".into(),
            },
        ),
        // Two failing ops: the error names the first.
        (
            vec![
                WriteOp::Delete {
                    key: "/bt/other".into(),
                    expected_mod_revision: Some(existing),
                },
                WriteOp::Create {
                    key: "/bt/existing".into(),
                    value: bytes("again"),
                },
            ],
            StoreError::Conflict {
                key: "/bt/other".into(),
                expected: existing,
                actual: other,
            },
        ),
    ];
    for (ops, expected_error) in failing {
        let err = store.batch(ops.clone()).await.unwrap_err();
        assert_eq!(err, expected_error, "batch {ops:?}");
        assert_eq!(
            store.current_revision().await.unwrap(),
            before,
            "failed batch wrote nothing"
        );
        assert_eq!(store.get("/bt/new").await.unwrap(), None);
        assert_eq!(store.get("/bt/put").await.unwrap(), None);
        assert_eq!(
            store.get("/bt/existing").await.unwrap().unwrap().value,
            bytes("e")
        );
        assert!(store.get("/bt/other").await.unwrap().is_some());
    }

    let revision = store
        .batch(vec![
            WriteOp::Create {
                key: "/bt/new".into(),
                value: bytes("n"),
            },
            WriteOp::Update {
                key: "/bt/existing".into(),
                value: bytes("changed"),
                expected_mod_revision: existing,
            },
            WriteOp::Put {
                key: "/bt/put".into(),
                value: bytes("p"),
            },
            WriteOp::Delete {
                key: "/bt/other".into(),
                expected_mod_revision: Some(other),
            },
        ])
        .await
        .unwrap();
    assert_eq!(revision, before + 1);
    let listed = store.list("/bt/", None).await.unwrap();
    let view: Vec<(String, Vec<u8>, Revision)> = listed
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.mod_revision))
        .collect();
    assert_eq!(
        view,
        [
            ("/bt/existing".to_string(), bytes("changed"), revision),
            ("/bt/new".to_string(), bytes("n"), revision),
            ("/bt/put".to_string(), bytes("p"), revision),
        ]
    );
}

async fn batch_respects_its_size_cap(fixture: &Fixture) {
    let store = fixture.store();
    let cap = store.max_batch_ops();
    assert!(
        cap >= 100,
        "a batch of at least 100 ops is supported (cap {cap})"
    );
    let cap_for_test = cap.min(1000);
    let full: Vec<WriteOp> = (0..cap_for_test)
        .map(|i| WriteOp::Create {
            key: format!("/cap/{i:05}"),
            value: bytes("v"),
        })
        .collect();
    let before = store.current_revision().await.unwrap();
    assert_eq!(store.batch(full).await.unwrap(), before + 1);
    assert_eq!(
        store.list("/cap/", None).await.unwrap().kvs.len(),
        cap_for_test
    );
    if cap <= 1000 {
        let too_many: Vec<WriteOp> = (0..=cap)
            .map(|i| WriteOp::Put {
                key: format!("/over/{i:05}"),
                value: bytes("v"),
            })
            .collect();
        let err = store.batch(too_many).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        assert!(store.list("/over/", None).await.unwrap().kvs.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------------
// Watches

async fn watch_delivers_every_change_in_order(fixture: &Fixture) {
    let store = fixture.store();
    let start = store.current_revision().await.unwrap() + 1;
    let mut watch = store.watch("/w/a/", start).await.unwrap();
    // Writes outside the prefix (including the look-alike "/w/ab") must not show up.
    let mut expected = Vec::new();
    for i in 0..60 {
        let key = format!("/w/a/{}", i % 7);
        let revision = store.put(&key, bytes(&format!("v{i}"))).await.unwrap();
        expected.push((EventKind::Put, key, bytes(&format!("v{i}")), revision));
        store
            .put(&format!("/w/ab/{i}"), bytes("noise"))
            .await
            .unwrap();
        if i % 10 == 9 {
            let key = format!("/w/a/{}", i % 7);
            let deleted = store.delete(&key, None).await.unwrap();
            let revision = store.current_revision().await.unwrap();
            assert_eq!(deleted.key, key);
            expected.push((EventKind::Delete, key, Vec::new(), revision));
        }
    }
    // Within one batch, events come in the order the batch wrote them.
    let batch_revision = store
        .batch(vec![
            WriteOp::Put {
                key: "/w/a/z".into(),
                value: bytes("z"),
            },
            WriteOp::Put {
                key: "/w/ab/q".into(),
                value: bytes("noise"),
            },
            WriteOp::Put {
                key: "/w/a/b".into(),
                value: bytes("b"),
            },
            WriteOp::Put {
                key: "/w/a/m".into(),
                value: bytes("m"),
            },
        ])
        .await
        .unwrap();
    for key in ["/w/a/z", "/w/a/b", "/w/a/m"] {
        let value = bytes(&key[key.len() - 1..]);
        expected.push((EventKind::Put, key.to_string(), value, batch_revision));
    }

    let events = collect_events(&mut watch, expected.len()).await;
    let seen: Vec<_> = events.iter().map(summary).collect();
    assert_eq!(seen, expected);
    for event in events.iter().filter(|event| event.kind == EventKind::Put) {
        let current_or_later =
            event.kv.version >= 1 && event.kv.create_revision <= event.kv.mod_revision;
        assert!(current_or_later, "{event:?}");
    }
    assert_quiet(&mut watch).await;
}

async fn watch_resumes_from_a_revision_without_gap_or_duplicate(fixture: &Fixture) {
    let store = fixture.store();
    let mut writes = Vec::new();
    for i in 0..10 {
        let key = format!("/res/{i}");
        store.put(&key, bytes(&i.to_string())).await.unwrap();
        writes.push(store.get(&key).await.unwrap().unwrap());
    }
    // Start in the middle of history.
    let from = writes[4].mod_revision;
    let mut watch = store.watch("/res/", from).await.unwrap();
    let first_half = collect_events(&mut watch, 3).await;
    assert_eq!(
        first_half.iter().map(summary).collect::<Vec<_>>(),
        writes[4..7].iter().map(put_event).collect::<Vec<_>>()
    );
    drop(watch);

    // More writes while nobody watches.
    for i in 10..15 {
        let key = format!("/res/{i}");
        store.put(&key, bytes(&i.to_string())).await.unwrap();
        writes.push(store.get(&key).await.unwrap().unwrap());
    }
    let resume_from = first_half.last().unwrap().kv.mod_revision + 1;
    let mut resumed = store.watch("/res/", resume_from).await.unwrap();
    let rest = collect_events(&mut resumed, 8).await;
    assert_eq!(
        rest.iter().map(summary).collect::<Vec<_>>(),
        writes[7..15].iter().map(put_event).collect::<Vec<_>>()
    );
    // And it keeps going live.
    let live = store.put("/res/live", bytes("live")).await.unwrap();
    let event = next_event(&mut resumed).await.unwrap();
    assert_eq!(
        summary(&event),
        (EventKind::Put, "/res/live".into(), bytes("live"), live)
    );
    assert_quiet(&mut resumed).await;
}

async fn watch_reports_deletes(fixture: &Fixture) {
    let store = fixture.store();
    let created = store.create("/del/k", bytes("v")).await.unwrap();
    let mut watch = store.watch("/del/", created + 1).await.unwrap();
    let deleted = store.delete("/del/k", Some(created)).await.unwrap();
    assert_eq!(deleted.value, bytes("v"));
    let delete_revision = store.current_revision().await.unwrap();
    let event = next_event(&mut watch).await.unwrap();
    assert_eq!(
        event,
        WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: "/del/k".into(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: delete_revision,
                version: 0,
            },
        }
    );
    // Deletes inside a batch are reported too.
    store.put("/del/x", bytes("x")).await.unwrap();
    let batch_revision = store
        .batch(vec![WriteOp::Delete {
            key: "/del/x".into(),
            expected_mod_revision: None,
        }])
        .await
        .unwrap();
    let put = next_event(&mut watch).await.unwrap();
    assert_eq!(put.kind, EventKind::Put);
    let delete = next_event(&mut watch).await.unwrap();
    assert_eq!(
        summary(&delete),
        (
            EventKind::Delete,
            "/del/x".into(),
            Vec::new(),
            batch_revision
        )
    );
}

async fn compaction_forces_resync_and_resync_sees_everything(fixture: &Fixture) {
    let store = fixture.store();
    for i in 0..5 {
        store.put(&format!("/cmp/{i}"), bytes("old")).await.unwrap();
    }
    let old = store.current_revision().await.unwrap();
    store.put("/cmp/0", bytes("new")).await.unwrap();
    store.delete("/cmp/1", None).await.unwrap();
    let compact_at = store.put("/cmp/5", bytes("new")).await.unwrap();
    store.compact(compact_at).await.unwrap();

    // History below the compaction is gone for reads and watches.
    let err = store.list("/cmp/", Some(old)).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Compacted {
            requested: old,
            compacted: compact_at
        }
    );
    let mut stale = store.watch("/cmp/", old).await.unwrap();
    let first = tokio::time::timeout(EVENT_TIMEOUT, stale.next())
        .await
        .expect("compacted watch answers")
        .expect("compacted watch yields an error before ending");
    assert_eq!(
        first,
        Err(StoreError::Compacted {
            requested: old,
            compacted: compact_at
        })
    );
    let after = tokio::time::timeout(EVENT_TIMEOUT, stale.next())
        .await
        .expect("stream ends");
    assert!(
        after.is_none(),
        "nothing after the compaction error: {after:?}"
    );

    // Compacting again at or below the compaction point is refused; compacting the future is invalid.
    for again in [old, compact_at] {
        assert_eq!(
            store.compact(again).await.unwrap_err(),
            StoreError::Compacted {
                requested: again,
                compacted: compact_at
            }
        );
    }
    let future = store.current_revision().await.unwrap() + 5;
    let err = store.compact(future).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // The compaction revision itself is still readable.
    let at_compaction = store.list("/cmp/", Some(compact_at)).await.unwrap();
    assert_eq!(at_compaction.kvs.len(), 5);

    // Resync: list now, watch from the listing's revision + 1, and see every later change.
    let listing = store.list("/cmp/", None).await.unwrap();
    let view: BTreeMap<String, Vec<u8>> = listing
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let expected_view: BTreeMap<String, Vec<u8>> = [
        ("/cmp/0", "new"),
        ("/cmp/2", "old"),
        ("/cmp/3", "old"),
        ("/cmp/4", "old"),
        ("/cmp/5", "new"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), bytes(value)))
    .collect();
    assert_eq!(view, expected_view);
    let mut watch = store.watch("/cmp/", listing.revision + 1).await.unwrap();
    let later_put = store.put("/cmp/6", bytes("later")).await.unwrap();
    store.delete("/cmp/2", None).await.unwrap();
    let events = collect_events(&mut watch, 2).await;
    assert_eq!(
        summary(&events[0]),
        (EventKind::Put, "/cmp/6".into(), bytes("later"), later_put)
    );
    assert_eq!(
        summary(&events[1]),
        (
            EventKind::Delete,
            "/cmp/2".into(),
            Vec::new(),
            later_put + 1
        )
    );
}

// ---------------------------------------------------------------------------------------------------
// Several processes

/// Runs this test binary as a child doing `role`; returns it still running.
fn spawn_child(target: &Target, role: &str, extra_env: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in target.env() {
        command.env(name, value);
    }
    for (name, value) in extra_env {
        command.env(name, value);
    }
    command.spawn().expect("spawn child process")
}

fn child_output(child: std::process::Child) -> (Output, String) {
    let output = child.wait_with_output().expect("child process output");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "child failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (output, stdout)
}

async fn separate_processes_racing_on_one_key_lose_no_update(fixture: &Fixture) {
    const PROCESSES: usize = 4;
    const INCREMENTS: u64 = 40;
    let store = fixture.store();
    let key = "/race/counter";
    let go_key = "/race/go";
    store.create(key, bytes("0")).await.unwrap();

    let env = [
        (CHILD_KEY, key.to_string()),
        (CHILD_COUNT, INCREMENTS.to_string()),
        (CHILD_GO_KEY, go_key.to_string()),
    ];
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_child(&fixture.target, "increment", &env))
        .collect();
    // Release every child at once (they wait for this key) so their increments overlap.
    wait_for_ready_children(store, PROCESSES).await;
    store.put(go_key, bytes("go")).await.unwrap();

    let mut total_conflicts = 0u64;
    for child in children {
        let (_, stdout) = tokio::task::spawn_blocking(move || child_output(child))
            .await
            .unwrap();
        let conflicts = stdout
            .lines()
            // The harness prints "test child_entry ... " on the same line as the report.
            .find_map(|line| line.split_once("CONFLICTS=").map(|(_, count)| count))
            .unwrap_or_else(|| panic!("child did not report conflicts:\n{stdout}"));
        let digits: String = conflicts.chars().take_while(char::is_ascii_digit).collect();
        total_conflicts += digits.parse::<u64>().expect("conflict count");
    }
    let final_value = store.get(key).await.unwrap().unwrap();
    let counter: u64 = String::from_utf8(final_value.value)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        counter,
        PROCESSES as u64 * INCREMENTS,
        "no increment was lost"
    );
    assert_eq!(
        final_value.version,
        1 + PROCESSES as i64 * INCREMENTS as i64
    );
    assert!(
        total_conflicts > 0,
        "racing writers saw at least one CAS conflict"
    );
}

/// Children announce themselves under `/race/ready/` once their store is open.
async fn wait_for_ready_children(store: &dyn Store, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = store.list("/race/ready/", None).await.unwrap().kvs.len();
        if ready >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {ready} of {count} children became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn watch_sees_writes_from_another_process(fixture: &Fixture) {
    const WRITES: usize = 20;
    let store = fixture.store();
    let from = store.current_revision().await.unwrap() + 1;
    let mut watch = store.watch("/xp/", from).await.unwrap();
    let child = spawn_child(
        &fixture.target,
        "write",
        &[
            (CHILD_KEY, "/xp/".to_string()),
            (CHILD_COUNT, WRITES.to_string()),
        ],
    );
    let events = collect_events(&mut watch, WRITES).await;
    tokio::task::spawn_blocking(move || child_output(child))
        .await
        .unwrap();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.kind, EventKind::Put);
        assert_eq!(event.kv.key, format!("/xp/{i:03}"));
        assert_eq!(event.kv.value, bytes(&format!("from child {i}")));
        assert_eq!(event.kv.mod_revision, from + i as i64);
    }
    assert_quiet(&mut watch).await;
}

/// Child mode: only does something when a conformance test started this binary as a child.
#[tokio::test(flavor = "current_thread")]
#[ignore = "run by the multi-process conformance tests as a child process"]
async fn child_entry() {
    let role = std::env::var(CHILD_ROLE)
        .expect("child_entry runs only as a child of the conformance tests");
    let target = Target::from_env();
    let store = target.open().await;
    let key = std::env::var(CHILD_KEY).expect("child key");
    let count: u64 = std::env::var(CHILD_COUNT)
        .expect("child count")
        .parse()
        .expect("count");
    match role.as_str() {
        "increment" => {
            let go_key = std::env::var(CHILD_GO_KEY).expect("go key");
            store
                .put(
                    &format!("/race/ready/{}", std::process::id()),
                    bytes("ready"),
                )
                .await
                .unwrap();
            while store.get(&go_key).await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut conflicts = 0u64;
            for _ in 0..count {
                loop {
                    let current = store.get(&key).await.unwrap().expect("counter exists");
                    let value: u64 = String::from_utf8(current.value).unwrap().parse().unwrap();
                    match store
                        .update(&key, bytes(&(value + 1).to_string()), current.mod_revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("increment failed: {other}"),
                    }
                }
            }
            println!("CONFLICTS={conflicts}");
        }
        "write" => {
            for i in 0..count {
                store
                    .put(&format!("{key}{i:03}"), bytes(&format!("from child {i}")))
                    .await
                    .unwrap();
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

// ---------------------------------------------------------------------------------------------------
// etcd-specific behaviour

/// An etcd nobody listens on fails with `Unavailable` within connect + request timeout.
#[tokio::test]
async fn etcd_unreachable_is_unavailable_quickly() {
    let port = calico_testutil::free_port();
    let config = EtcdConfig {
        endpoints: vec![format!("127.0.0.1:{port}")],
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        ..EtcdConfig::default()
    };
    let started = std::time::Instant::now();
    let err = EtcdStore::connect(&config).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string().contains(&port.to_string()),
        "message names the endpoint: {err}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "gave up after {elapsed:?}"
    );
}

/// A store whose etcd goes away reports `Unavailable` on requests, and a watch ends with `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_going_away_breaks_watches_and_requests() {
    let mut server = EtcdServer::start();
    // Short timeouts so the failure shows quickly.
    let config = EtcdConfig {
        endpoints: vec![server.endpoint()],
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(2),
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect(&config).await.unwrap();
    let revision = store.put("/gone/a", bytes("a")).await.unwrap();
    let mut watch = store.watch("/gone/", revision).await.unwrap();
    assert_eq!(next_event(&mut watch).await.unwrap().kv.key, "/gone/a");

    server.kill();
    let item = next_event(&mut watch).await;
    assert!(matches!(item, Err(StoreError::Unavailable(_))), "{item:?}");
    let after = tokio::time::timeout(EVENT_TIMEOUT, watch.next())
        .await
        .expect("stream ends");
    assert!(after.is_none(), "nothing after the error: {after:?}");

    let started = std::time::Instant::now();
    let err = store.get("/gone/a").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// TLS with a CA and a client certificate: the endpoint may be `https://` or bare `host:port`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_client_certificate() {
    let certificates = calico_testutil::TestCertificates::generate();
    let server = EtcdServer::start_tls(&certificates);
    let tls_config = |endpoint: String| EtcdConfig {
        endpoints: vec![endpoint],
        ca_cert_file: Some(certificates.ca_cert.clone()),
        cert_file: Some(certificates.client_cert.clone()),
        key_file: Some(certificates.client_key.clone()),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
    };

    let store = EtcdStore::connect(&tls_config(server.endpoint()))
        .await
        .unwrap();
    let revision = store.create("/tls/a", bytes("secret")).await.unwrap();
    let mut watch = store.watch("/tls/", revision).await.unwrap();
    assert_eq!(
        next_event(&mut watch).await.unwrap().kv.value,
        bytes("secret")
    );

    let bare = format!("127.0.0.1:{}", server.client_port());
    let store = EtcdStore::connect(&tls_config(bare)).await.unwrap();
    assert_eq!(
        store.get("/tls/a").await.unwrap().unwrap().value,
        bytes("secret")
    );

    // The server demands a client certificate: without one the connection fails, within the timeouts.
    let without_identity = EtcdConfig {
        cert_file: None,
        key_file: None,
        ..tls_config(server.endpoint())
    };
    let started = std::time::Instant::now();
    let err = EtcdStore::connect(&without_identity).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    eprintln!("without a client certificate: {err}");
    assert!(started.elapsed() < Duration::from_secs(8));

    // Plain HTTP to a TLS server is refused the same way.
    let plain = EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{}", server.client_port())],
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..EtcdConfig::default()
    };
    let err = EtcdStore::connect(&plain).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    eprintln!("plain HTTP to a TLS server: {err}");
}
