//! IPAM over both real backends: the allocation algorithm, release, and racing writers that must never hand
//! out an address twice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use calico_api::Resource;
use calico_datastore::Store;
use calico_datastore::client::Client;
use calico_datastore::embedded::EmbeddedStore;
use calico_datastore::etcd::{EtcdConfig, EtcdStore};
use calico_ipam::model::{affinity_key, block_key, handle_key};
use calico_ipam::{AffinityState, AssignRequest, Ipam, IpamError};
use calico_testutil::EtcdServer;
use ipnet::IpNet;
use serde_json::json;

fn res(v: serde_json::Value) -> Resource {
    Resource::from_value(v).expect("test object decodes")
}

async fn add_pool(store: &Arc<dyn Store>, name: &str, spec: serde_json::Value) {
    Client::new(store.clone())
        .create(res(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": name}, "spec": spec}),
        ))
        .await
        .expect("pool created");
}

fn embedded() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("calico.db")).unwrap();
    (dir, Arc::new(store))
}

async fn etcd() -> (EtcdServer, Arc<dyn Store>) {
    let server = EtcdServer::start();
    let cfg = EtcdConfig {
        endpoints: vec![server.endpoint()],
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect(&cfg).await.unwrap();
    (server, Arc::new(store))
}

fn addrs(nets: &[IpNet]) -> Vec<IpAddr> {
    nets.iter().map(IpNet::addr).collect()
}

/// Affine blocks first, a new block in the host's order when full, block masks in results, handles and
/// affinities at Calico's keys, release by handle and by address, FIFO reuse.
async fn basic_flow(store: Arc<dyn Store>) {
    add_pool(
        &store,
        "p",
        json!({"cidr": "198.18.0.0/24", "blockSize": 28}),
    )
    .await;
    let ipam = Ipam::new(store.clone());

    let first = ipam
        .auto_assign(&AssignRequest::workload(1, "net.c1", "node-a"))
        .await
        .unwrap();
    assert_eq!(first.v4.len(), 1);
    let ip = first.v4[0];
    assert_eq!(ip.prefix_len(), 28, "IPAM returns the block's mask");
    let block = IpNet::new(ip.network(), 28).unwrap();
    assert_eq!(
        ip.addr(),
        block.network(),
        "a new block hands out its first address first"
    );
    assert!(store.get(&block_key(block)).await.unwrap().is_some());
    let aff = store
        .get(&affinity_key("node-a", block))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8(aff.value).unwrap(),
        r#"{"state":"confirmed","deleted":false}"#
    );
    let handle = store.get(&handle_key("net.c1")).await.unwrap().unwrap();
    let handle: serde_json::Value = serde_json::from_slice(&handle.value).unwrap();
    assert_eq!(handle["block"][block.to_string()], 1);

    // Fill the block (16 addresses) and spill into a second one.
    let more = ipam
        .auto_assign(&AssignRequest::workload(20, "net.c2", "node-a"))
        .await
        .unwrap();
    let mut all: BTreeSet<IpAddr> = addrs(&more.v4).into_iter().collect();
    all.insert(ip.addr());
    assert_eq!(all.len(), 21, "no address twice");
    let blocks: BTreeSet<IpNet> = more.v4.iter().map(|n| n.trunc()).collect();
    assert_eq!(blocks.len(), 2);
    let affs = ipam.affinities(Some("node-a")).await.unwrap();
    assert_eq!(affs.len(), 2);
    assert!(
        affs.iter()
            .all(|a| a.affinity.state == AffinityState::Confirmed)
    );

    // Another host gets a block of its own.
    let b = ipam
        .auto_assign(&AssignRequest::workload(1, "net.c3", "node-b"))
        .await
        .unwrap();
    assert!(!blocks.contains(&b.v4[0].trunc()) && b.v4[0].trunc() != block);
    assert_eq!(ipam.ips_by_handle("net.c3").await.unwrap(), addrs(&b.v4));

    // Release by handle frees every address the handle holds and removes the handle.
    let released = ipam.release_by_handle("net.c2").await.unwrap();
    assert_eq!(released.len(), 20);
    assert!(store.get(&handle_key("net.c2")).await.unwrap().is_none());
    assert!(
        ipam.release_by_handle("net.c2").await.unwrap().is_empty(),
        "idempotent"
    );
    // Release by address.
    assert_eq!(
        ipam.release_ips(&[ip.addr()]).await.unwrap(),
        vec![ip.addr()]
    );
    assert!(ipam.release_ips(&[ip.addr()]).await.unwrap().is_empty());
    assert!(store.get(&handle_key("net.c1")).await.unwrap().is_none());
    assert!(ipam.assignment_of(ip.addr()).await.unwrap().is_none());

    // The longest-free address is reused last: the next allocation in the first block is not `ip`.
    let again = ipam
        .auto_assign(&AssignRequest::workload(1, "net.c4", "node-a"))
        .await
        .unwrap();
    assert_ne!(again.v4[0].addr(), ip.addr());
    let (blk, attr) = ipam
        .assignment_of(again.v4[0].addr())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attr.handle_id.as_deref(), Some("net.c4"));
    assert_eq!(
        attr.secondary.get("node").map(String::as_str),
        Some("node-a")
    );
    assert!(attr.secondary.contains_key("timestamp"));
    assert_eq!(blk.host(), Some("node-a"));

    // Explicit address: taken once, refused the second time.
    let wanted: IpAddr = "198.18.0.200".parse().unwrap();
    let attrs = BTreeMap::from([("node".to_string(), "node-b".to_string())]);
    let got = ipam
        .assign_ip(wanted, "net.c5", &attrs, "node-b", None)
        .await
        .unwrap();
    assert_eq!(got.addr(), wanted);
    assert!(matches!(
        ipam.assign_ip(wanted, "net.c6", &attrs, "node-b", None)
            .await,
        Err(IpamError::InUse(_))
    ));
    assert!(matches!(
        ipam.assign_ip(
            "198.19.0.1".parse().unwrap(),
            "net.c6",
            &attrs,
            "node-b",
            None
        )
        .await,
        Err(IpamError::NotInPool(_))
    ));
}

/// Strict affinity, the block cap, borrowing, reservations, disabled pools and exhaustion.
async fn limits_and_borrowing(store: Arc<dyn Store>) {
    add_pool(
        &store,
        "small",
        json!({"cidr": "198.18.1.0/27", "blockSize": 28}),
    )
    .await;
    let ipam = Ipam::new(store.clone());
    // Reserve the first four addresses of the pool.
    Client::new(store.clone())
        .create(res(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPReservation",
            "metadata": {"name": "r"}, "spec": {"reservedCIDRs": ["198.18.1.0/30"]}}),
        ))
        .await
        .unwrap();
    ipam.configure(None, Some(1)).await.unwrap();

    let a = ipam
        .auto_assign(&AssignRequest::workload(16, "h.a", "node-a"))
        .await
        .unwrap();
    let a_addrs = addrs(&a.v4);
    assert!(
        a_addrs
            .iter()
            .all(|ip| !"198.18.1.0/30".parse::<IpNet>().unwrap().contains(ip)),
        "reserved addresses are never handed out: {a_addrs:?}"
    );
    assert_eq!(
        ipam.affinities(Some("node-a")).await.unwrap().len(),
        1,
        "cap of one block"
    );
    assert!(ipam.blocks().await.unwrap().len() <= 2);

    ipam.configure(Some(true), None).await.unwrap();
    let err = ipam
        .auto_assign(&AssignRequest::workload(40, "h.x", "node-c"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("failed to request 40 IPv4 addresses"),
        "{err}"
    );
    assert!(
        ipam.ips_by_handle("h.x").await.unwrap().is_empty(),
        "all or nothing"
    );

    // Exhaustion: 28 usable addresses in the pool in all.
    ipam.configure(Some(false), Some(20)).await.unwrap();
    let rest = ipam
        .auto_assign(&AssignRequest::workload(12, "h.b", "node-b"))
        .await
        .unwrap();
    let mut seen: BTreeSet<IpAddr> = a_addrs.into_iter().collect();
    for ip in addrs(&rest.v4) {
        assert!(seen.insert(ip), "{ip} handed out twice");
    }
    assert_eq!(seen.len(), 28);
    let err = ipam
        .auto_assign(&AssignRequest::workload(1, "h.c", "node-c"))
        .await
        .unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");

    // Disabled pools are not used.
    Client::new(store.clone())
        .create(res(
            json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "off"}, "spec": {"cidr": "198.18.2.0/24", "disabled": true}}),
        ))
        .await
        .unwrap();
    assert!(matches!(
        ipam.auto_assign(&AssignRequest::workload(1, "h.d", "node-d"))
            .await,
        Err(IpamError::Exhausted { .. })
    ));
    let mut req = AssignRequest::workload(1, "h.d", "node-d");
    req.v4_pools = vec!["off".into()];
    assert!(matches!(
        ipam.auto_assign(&req).await,
        Err(IpamError::PoolDisabled(_))
    ));
}

/// A host at its block cap borrows from another host's block, which keeps its owner; strict affinity forbids it.
async fn borrowing(store: Arc<dyn Store>) {
    add_pool(
        &store,
        "p",
        json!({"cidr": "198.18.6.0/28", "blockSize": 29}),
    )
    .await;
    let ipam = Ipam::new(store.clone());
    ipam.configure(None, Some(1)).await.unwrap();
    let own = ipam
        .auto_assign(&AssignRequest::workload(8, "h.a", "node-a"))
        .await
        .unwrap();
    let b = ipam
        .auto_assign(&AssignRequest::workload(1, "h.b", "node-b"))
        .await
        .unwrap();
    let b_block = b.v4[0].trunc();
    assert_ne!(own.v4[0].trunc(), b_block);

    ipam.configure(Some(true), None).await.unwrap();
    assert!(matches!(
        ipam.auto_assign(&AssignRequest::workload(1, "h.a2", "node-a"))
            .await,
        Err(IpamError::Exhausted { .. })
    ));
    ipam.configure(Some(false), None).await.unwrap();
    let borrowed = ipam
        .auto_assign(&AssignRequest::workload(2, "h.a2", "node-a"))
        .await
        .unwrap();
    for ip in &borrowed.v4 {
        assert_eq!(ip.trunc(), b_block, "borrowed from node-b's block");
    }
    let block = ipam.get_block(b_block).await.unwrap().unwrap();
    assert_eq!(
        block.block.host(),
        Some("node-b"),
        "the block keeps its owner"
    );
    let (_, attr) = ipam
        .assignment_of(borrowed.v4[0].addr())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        attr.secondary.get("node").map(String::as_str),
        Some("node-a")
    );
    assert_eq!(ipam.affinities(Some("node-a")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn borrowing_embedded() {
    let (_dir, store) = embedded();
    borrowing(store).await;
}

#[tokio::test]
async fn borrowing_etcd() {
    let (_server, store) = etcd().await;
    borrowing(store).await;
}

/// Releasing affinities: empty blocks go, blocks with addresses stay without an owner.
async fn affinity_release(store: Arc<dyn Store>) {
    add_pool(
        &store,
        "p",
        json!({"cidr": "198.18.3.0/24", "blockSize": 29}),
    )
    .await;
    let ipam = Ipam::new(store.clone());
    let a = ipam
        .auto_assign(&AssignRequest::workload(10, "h.a", "node-a"))
        .await
        .unwrap();
    let blocks: BTreeSet<IpNet> = a.v4.iter().map(|n| n.trunc()).collect();
    assert_eq!(blocks.len(), 2);
    // Free the addresses of one block entirely.
    let (full, partial): (Vec<IpNet>, Vec<IpNet>) =
        a.v4.iter()
            .partition(|n| a.v4.iter().filter(|m| m.trunc() == n.trunc()).count() == 8);
    ipam.release_ips(&addrs(&full)).await.unwrap();
    let released = ipam.release_empty_affinities("node-a").await.unwrap();
    assert_eq!(released, vec![full[0].trunc()]);
    assert!(
        ipam.get_block(full[0].trunc()).await.unwrap().is_none(),
        "empty block deleted"
    );
    let remaining = partial[0].trunc();
    assert_eq!(
        ipam.release_host_affinities("node-a").await.unwrap(),
        vec![remaining]
    );
    let kept = ipam
        .get_block(remaining)
        .await
        .unwrap()
        .expect("block with addresses stays");
    assert_eq!(kept.block.affinity, None);
    assert_eq!(kept.block.in_use_count(), 2);
    assert!(ipam.affinities(Some("node-a")).await.unwrap().is_empty());
}

/// Many writers racing for addresses on one datastore: every one succeeds, no address twice, and after
/// releasing everything no allocation or handle is left.
async fn racing_writers(store: Arc<dyn Store>, hosts: usize, per_host: usize) {
    add_pool(&store, "race", json!({"cidr": "198.18.64.0/18"})).await;
    let ipam = Ipam::new(store.clone());
    let mut tasks = Vec::new();
    for h in 0..hosts {
        for i in 0..per_host {
            let ipam = ipam.clone();
            tasks.push(tokio::spawn(async move {
                let handle = format!("net.h{h}-c{i}");
                let got = ipam
                    .auto_assign(&AssignRequest::workload(1, &handle, &format!("node-{h}")))
                    .await;
                (handle, got)
            }));
        }
    }
    let mut seen = BTreeMap::new();
    for t in tasks {
        let (handle, got) = t.await.unwrap();
        let got = got.unwrap_or_else(|e| panic!("{handle}: {e}"));
        let ip = got.v4[0].addr();
        if let Some(other) = seen.insert(ip, handle.clone()) {
            panic!("{ip} handed to both {other} and {handle}");
        }
    }
    assert_eq!(seen.len(), hosts * per_host);
    let in_blocks: usize = ipam
        .blocks()
        .await
        .unwrap()
        .iter()
        .map(|b| b.block.in_use_count())
        .sum();
    assert_eq!(
        in_blocks,
        hosts * per_host,
        "blocks record exactly what was handed out"
    );
    for handle in seen.values() {
        assert_eq!(ipam.release_by_handle(handle).await.unwrap().len(), 1);
    }
    assert!(ipam.handles().await.unwrap().is_empty());
    assert!(
        ipam.blocks()
            .await
            .unwrap()
            .iter()
            .all(|b| b.block.is_empty())
    );
}

#[tokio::test]
async fn basic_flow_embedded() {
    let (_dir, store) = embedded();
    basic_flow(store).await;
}

#[tokio::test]
async fn basic_flow_etcd() {
    let (_server, store) = etcd().await;
    basic_flow(store).await;
}

#[tokio::test]
async fn limits_and_borrowing_embedded() {
    let (_dir, store) = embedded();
    limits_and_borrowing(store).await;
}

#[tokio::test]
async fn limits_and_borrowing_etcd() {
    let (_server, store) = etcd().await;
    limits_and_borrowing(store).await;
}

#[tokio::test]
async fn affinity_release_embedded() {
    let (_dir, store) = embedded();
    affinity_release(store).await;
}

#[tokio::test]
async fn affinity_release_etcd() {
    let (_server, store) = etcd().await;
    affinity_release(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_embedded() {
    let (_dir, store) = embedded();
    racing_writers(store, 3, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_etcd() {
    let (_server, store) = etcd().await;
    racing_writers(store, 3, 40).await;
}

/// Cooldown: a released address is not handed out again until its cooldown has passed.
#[tokio::test]
async fn cooldown_delays_reuse() {
    let (_dir, store) = embedded();
    add_pool(
        &store,
        "p",
        json!({"cidr": "198.18.5.0/30", "blockSize": 30}),
    )
    .await;
    store
        .put(
            calico_ipam::model::CONFIG_KEY,
            br#"{"strict_affinity":false,"auto_allocate_blocks":true,"ipCooldownSeconds":3600}"#
                .to_vec(),
        )
        .await
        .unwrap();
    let ipam = Ipam::new(store.clone());
    let got = ipam
        .auto_assign(&AssignRequest::workload(4, "h.a", "n"))
        .await
        .unwrap();
    assert_eq!(got.v4.len(), 4);
    ipam.release_by_handle("h.a").await.unwrap();
    assert!(matches!(
        ipam.auto_assign(&AssignRequest::workload(1, "h.b", "n"))
            .await,
        Err(IpamError::Exhausted { .. })
    ));
    assert!(matches!(
        ipam.assign_ip(got.v4[0].addr(), "h.b", &BTreeMap::new(), "n", None)
            .await,
        Err(IpamError::CoolingDown(_))
    ));
}

/// Once a host owns a block with room, each allocation is one write (block and handle in one transaction),
/// and a release by handle is one write per block the handle touches.
async fn one_write_per_allocation(store: Arc<dyn Store>) {
    add_pool(
        &store,
        "p",
        json!({"cidr": "198.18.7.0/24", "blockSize": 26}),
    )
    .await;
    let ipam = Ipam::new(store.clone());
    ipam.auto_assign(&AssignRequest::workload(1, "w.first", "n"))
        .await
        .unwrap();
    let before = store.current_revision().await.unwrap();
    for i in 0..20 {
        ipam.auto_assign(&AssignRequest::workload(1, &format!("w.{i}"), "n"))
            .await
            .unwrap();
    }
    let after = store.current_revision().await.unwrap();
    assert_eq!(after - before, 20, "one datastore write per allocation");
    ipam.release_by_handle("w.3").await.unwrap();
    assert_eq!(store.current_revision().await.unwrap() - after, 1);
}

#[tokio::test]
async fn one_write_per_allocation_embedded() {
    let (_dir, store) = embedded();
    one_write_per_allocation(store).await;
}

#[tokio::test]
async fn one_write_per_allocation_etcd() {
    let (_server, store) = etcd().await;
    one_write_per_allocation(store).await;
}

/// A pool whose stored `nodeSelector` does not parse (written past validation, e.g. by another tool) is
/// reported by name and selector to whoever asks for addresses, instead of silently not existing; a
/// request that names another pool is not affected.
#[tokio::test]
async fn a_pool_with_a_bad_node_selector_is_reported_not_dropped() {
    let (_dir, store) = embedded();
    add_pool(&store, "good", json!({"cidr": "198.18.0.0/24"})).await;
    let bad = json!({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "broken"},
        "spec": {"cidr": "198.18.1.0/24", "nodeSelector": "rack == "}});
    store
        .create(
            "/calico/resources/v3/projectcalico.org/ippools/broken",
            serde_json::to_vec(&bad).unwrap(),
        )
        .await
        .unwrap();
    let ipam = Ipam::new(store.clone());
    assert_eq!(
        ipam.pools().await.unwrap().len(),
        2,
        "both pools are listed"
    );

    let err = ipam
        .auto_assign(&AssignRequest::workload(1, "net.c1", "node-a"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IpamError::BadNodeSelector { pool, selector, .. }
            if pool == "broken" && selector == "rack == "),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("IP pool broken has an invalid nodeSelector \"rack == \": "),
        "{message}"
    );

    let mut req = AssignRequest::workload(1, "net.c2", "node-a");
    req.v4_pools = vec!["good".into()];
    let got = ipam.auto_assign(&req).await.unwrap();
    assert!(
        "198.18.0.0/24"
            .parse::<IpNet>()
            .unwrap()
            .contains(&got.v4[0].addr())
    );
}

/// Deleting a node takes its workload endpoints, its addresses and its block affinities with it, and
/// leaves every other node's alone.
#[tokio::test]
async fn release_node_removes_only_that_nodes_endpoints_addresses_and_affinities() {
    let (_dir, store) = embedded();
    add_pool(
        &store,
        "p",
        json!({"cidr": "198.18.0.0/24", "blockSize": 29}),
    )
    .await;
    let ipam = Ipam::new(store.clone());
    let client = Client::new(store.clone());
    let mut ips = BTreeMap::new();
    for (node, pod) in [("nodea", "a1"), ("nodea", "a2"), ("nodeb", "b1")] {
        let got = ipam
            .auto_assign(&AssignRequest::workload(1, &format!("net.{pod}"), node))
            .await
            .unwrap();
        let ip = got.v4[0].addr();
        ips.insert(pod, ip);
        client
            .create(res(
                json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": format!("{node}-k8s-{pod}-eth0"), "namespace": "ns1"},
                "spec": {"orchestrator": "k8s", "node": node, "pod": pod, "endpoint": "eth0",
                    "interfaceName": format!("cali{pod}"), "ipNetworks": [format!("{ip}/32")]}}),
            ))
            .await
            .unwrap();
    }

    let released = ipam.release_node("nodea").await.unwrap();
    assert_eq!(
        released.endpoints,
        ["ns1/nodea-k8s-a1-eth0", "ns1/nodea-k8s-a2-eth0"]
    );
    let mut addresses = released.addresses.clone();
    addresses.sort();
    assert_eq!(addresses, [ips["a1"], ips["a2"]]);
    assert_eq!(released.affinities.len(), 1);

    let (left, _) = client
        .list(calico_api::Kind::WorkloadEndpoint, None)
        .await
        .unwrap();
    let names: Vec<&str> = left.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["nodeb-k8s-b1-eth0"]);
    assert!(ipam.assignment_of(ips["a1"]).await.unwrap().is_none());
    assert!(ipam.assignment_of(ips["b1"]).await.unwrap().is_some());
    assert!(ipam.affinities(Some("nodea")).await.unwrap().is_empty());
    assert_eq!(ipam.affinities(Some("nodeb")).await.unwrap().len(), 1);
}
