//! The typed client over both real backends: defaulting and validation on every write, Kubernetes-style
//! metadata, compare-and-swap updates, Calico's key layout (checked with the real `etcdctl`).

use std::sync::Arc;

use calico_api::{Kind, Resource};
use calico_datastore::Store;
use calico_datastore::client::{Client, ClientError, WriteMode};
use calico_datastore::embedded::EmbeddedStore;
use calico_datastore::etcd::{EtcdConfig, EtcdStore};
use calico_testutil::EtcdServer;
use serde_json::json;

fn res(v: serde_json::Value) -> Resource {
    Resource::from_value(v).expect("test object decodes")
}

fn pool(name: &str, cidr: &str) -> Resource {
    res(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr}}),
    )
}

async fn scenario(store: Arc<dyn Store>) {
    let client = Client::new(store.clone());

    // Create: defaults stored, metadata stamped, resourceVersion = the key's mod revision.
    let created = client.create(pool("p1", "198.18.0.0/20")).await.unwrap();
    let kv = store
        .get("/calico/resources/v3/projectcalico.org/ippools/p1")
        .await
        .unwrap()
        .expect("stored at Calico's key");
    assert_eq!(
        created.metadata.resource_version,
        Some(kv.mod_revision.to_string())
    );
    let stored: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(stored["spec"]["blockSize"], 26);
    assert_eq!(stored["spec"]["nodeSelector"], "all()");
    assert_eq!(stored["kind"], "IPPool");
    assert!(
        stored["metadata"].get("resourceVersion").is_none(),
        "resourceVersion is not stored: {stored}"
    );
    let uid = created.metadata.uid.clone().expect("uid");

    // Invalid writes are refused with field paths and write nothing.
    let before = store.current_revision().await.unwrap();
    let err = client
        .create(pool("p2", "198.18.16.1/20"))
        .await
        .unwrap_err();
    match &err {
        ClientError::Invalid { errors, .. } => assert!(errors.has_path("spec.cidr"), "{err}"),
        other => panic!("want Invalid, got {other:?}"),
    }
    let err = client
        .create(pool("p3", "198.18.4.0/24"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("overlaps with IPPool p1"), "{err}");
    assert_eq!(
        store.current_revision().await.unwrap(),
        before,
        "nothing written"
    );

    // Updates are compare-and-swap: a stale resourceVersion loses.
    let mut stale = created.clone();
    let mut fresh = client.get(Kind::IPPool, None, "p1").await.unwrap();
    fresh.metadata.labels = Some([("a".to_string(), "1".to_string())].into());
    let updated = client.replace(fresh).await.unwrap();
    assert_eq!(updated.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(
        updated.metadata.creation_timestamp,
        created.metadata.creation_timestamp
    );
    stale.metadata.labels = Some([("b".to_string(), "2".to_string())].into());
    assert!(matches!(
        client.replace(stale).await,
        Err(ClientError::Conflict { .. })
    ));
    let got = client.get(Kind::IPPool, None, "p1").await.unwrap();
    assert_eq!(
        got.metadata.labels().get("a").map(String::as_str),
        Some("1"),
        "the first update was not lost"
    );

    // Namespaced kinds: keys per namespace, list in one or all namespaces.
    let np = |ns: &str, name: &str| {
        res(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                   "metadata": {"name": name, "namespace": ns}, "spec": {"selector": "all()"}}),
        )
    };
    let many: Vec<Resource> = (0..300)
        .map(|i| np(if i % 2 == 0 { "a" } else { "b" }, &format!("p{i:03}")))
        .collect();
    let results = client.write_many(many, WriteMode::Apply).await;
    assert!(results.iter().all(Result::is_ok));
    assert!(
        store
            .get("/calico/resources/v3/projectcalico.org/networkpolicies/a/p000")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        client
            .list(Kind::NetworkPolicy, Some("a"))
            .await
            .unwrap()
            .0
            .len(),
        150
    );
    assert_eq!(
        client
            .list(Kind::NetworkPolicy, None)
            .await
            .unwrap()
            .0
            .len(),
        300
    );
    let stored_np = client
        .get(Kind::NetworkPolicy, Some("b"), "p001")
        .await
        .unwrap();
    assert_eq!(
        stored_np.spec.to_value()["types"],
        json!(["Ingress"]),
        "types defaulted"
    );
    // Applying the same set again updates in place.
    let again: Vec<Resource> = (0..300)
        .map(|i| np(if i % 2 == 0 { "a" } else { "b" }, &format!("p{i:03}")))
        .collect();
    assert!(
        client
            .write_many(again, WriteMode::Apply)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(
        client
            .list(Kind::NetworkPolicy, None)
            .await
            .unwrap()
            .0
            .len(),
        300
    );

    // IPAMConfiguration lives at /calico/ipam/v2/config in IPAM's own JSON.
    let ipam = res(
        json!({"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration",
                          "metadata": {"name": "default"}, "spec": {"strictAffinity": true, "maxBlocksPerHost": 4}}),
    );
    client.apply(ipam).await.unwrap();
    let kv = store
        .get("/calico/ipam/v2/config")
        .await
        .unwrap()
        .expect("IPAM config key");
    let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(v["strict_affinity"], true);
    assert_eq!(v["maxBlocksPerHost"], 4);
    let back = client
        .get(Kind::IPAMConfiguration, None, "default")
        .await
        .unwrap();
    assert_eq!(back.spec.to_value()["strictAffinity"], true);

    // Delete with a stale resourceVersion is refused; without one it works; then it is gone.
    assert!(matches!(
        client.delete(Kind::IPPool, None, "p1", Some("1")).await,
        Err(ClientError::Conflict { .. })
    ));
    client.delete(Kind::IPPool, None, "p1", None).await.unwrap();
    assert!(matches!(
        client.get(Kind::IPPool, None, "p1").await,
        Err(ClientError::NotFound { .. })
    ));
}

#[tokio::test]
async fn typed_client_embedded() {
    let dir = tempfile::tempdir().unwrap();
    scenario(Arc::new(
        EmbeddedStore::open(dir.path().join("calico.db")).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn typed_client_etcd() {
    let server = EtcdServer::start();
    let cfg = EtcdConfig {
        endpoints: vec![server.endpoint()],
        ..EtcdConfig::default()
    };
    scenario(Arc::new(EtcdStore::connect(&cfg).await.unwrap())).await;
}

/// What an operator sees with `etcdctl get --prefix /calico/`: Calico's keys, the whole object as JSON.
#[tokio::test]
async fn etcdctl_shows_calico_layout() {
    let server = EtcdServer::start();
    let cfg = EtcdConfig {
        endpoints: vec![server.endpoint()],
        ..EtcdConfig::default()
    };
    let client = Client::new(Arc::new(EtcdStore::connect(&cfg).await.unwrap()));
    client
        .create(pool("default-ipv4-ippool", "198.18.0.0/16"))
        .await
        .unwrap();
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &server.endpoint(),
            "get",
            "--prefix",
            "/calico/",
        ])
        .output()
        .expect(
            "etcdctl (Debian package etcd-client) must be installed: scripts/setup.sh installs it",
        );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool")
    );
    let value: serde_json::Value = serde_json::from_str(lines.next().expect("value line")).unwrap();
    assert_eq!(value["apiVersion"], "projectcalico.org/v3");
    assert_eq!(value["spec"]["cidr"], "198.18.0.0/16");
}
