//! calico-node as a process inside a test-made host namespace: bad local settings stop it with a clear
//! message before anything is written; an unreachable datastore is retried with backoff (no crash loop)
//! until it appears; a restart reconciles the kernel without deleting anything.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_api::{ObjectMeta, Resource, Spec};
use calico_datastore::Store;
use calico_datastore::client::Client;
use calico_ipam::block::{ATTR_NODE, AllocationAttribute, Block};
use calico_ipam::model::{Affinity, affinity_key, block_key};
use calico_testutil::free_port;

mod support;

use support::{Running, etcd_in, host, open_store, runtime};

#[test]
fn no_usable_address_stops_with_a_clear_message_and_writes_nothing() {
    let h = host(31);
    h.ns.ip(&["link", "set", "eth0", "down"])
        .expect("eth0 down");
    let (status, stderr) = h.run_to_exit(&[("IP_AUTODETECTION_METHOD", "first-found")]);
    assert!(
        !status.success(),
        "calico-node should fail; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("found no usable IPv4 address") && stderr.contains("eth0 (down)"),
        "the message should say what was searched; got:\n{stderr}"
    );
    assert!(
        !h.datastore().exists(),
        "nothing may be written to the datastore"
    );
    assert_eq!(h.links(), vec!["lo".to_string(), "eth0".to_string()]);
}

#[test]
fn unknown_interface_is_named_with_the_interfaces_that_exist() {
    let h = host(32);
    let (status, stderr) = h.run_to_exit(&[("IP_AUTODETECTION_METHOD", "interface=eth9")]);
    assert!(!status.success());
    assert!(
        stderr.contains("no interface matches eth9") && stderr.contains("eth0"),
        "got:\n{stderr}"
    );
    assert!(!h.datastore().exists());
}

#[test]
fn a_default_pool_overlapping_the_underlay_is_refused_before_anything_is_written() {
    let h = host(33);
    let (status, stderr) = h.run_to_exit(&[("CALICO_IPV4POOL_CIDR", "198.18.0.0/16")]);
    assert!(!status.success());
    assert!(
        stderr.contains(
            "CALICO_IPV4POOL_CIDR=198.18.0.0/16 overlaps this node's network 198.18.33.0/24"
        ),
        "got:\n{stderr}"
    );
    assert!(!h.datastore().exists());
    assert_eq!(h.links(), vec!["lo".to_string(), "eth0".to_string()]);
    let routes = h.ns.ip(&["route", "show"]).expect("routes");
    assert!(
        !routes.contains("198.19.") && !routes.contains("blackhole"),
        "{routes}"
    );
}

#[test]
fn bad_pool_settings_name_the_variable() {
    let h = host(34);
    let (status, stderr) = h.run_to_exit(&[("CALICO_IPV4POOL_BLOCK_SIZE", "big")]);
    assert!(!status.success());
    assert!(
        stderr.contains("CALICO_IPV4POOL_BLOCK_SIZE=\"big\""),
        "got:\n{stderr}"
    );
    let (status, stderr) = h.run_to_exit(&[("CALICO_IPV4POOL_VXLAN", "Sometimes")]);
    assert!(!status.success());
    assert!(
        stderr.contains("CALICO_IPV4POOL_VXLAN=\"Sometimes\" is not valid"),
        "got:\n{stderr}"
    );
    assert!(!h.datastore().exists());
}

#[test]
fn unreachable_datastore_is_retried_with_backoff_until_it_appears() {
    let h = host(35);
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut running =
        Running::spawn(h.command(&[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", &endpoint)]));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        running.is_running(),
        "calico-node must keep retrying, not exit"
    );
    let (code, body) = h.http_get("/readiness").expect("health endpoint answers");
    assert_eq!(code, 503);
    assert!(
        body.contains("unreachable"),
        "readiness should say why: {body}"
    );
    assert_eq!(h.http_get("/liveness").map(|r| r.0), Some(200));
    assert!(!h.links().iter().any(|l| l == "vxlan.calico"));

    // The datastore appears (inside the host namespace, where calico-node can reach it).
    let (etcd, _data) = etcd_in(&h, &endpoint);
    // Backoff doubles from 1 s; after 4 s the next attempt comes within 8 s more.
    assert!(
        h.wait_ready(Duration::from_secs(30)),
        "calico-node did not become ready after etcd appeared"
    );
    let stderr = running.stop();
    drop(etcd);
    let retries = stderr
        .matches("cannot reach the datastore; retrying")
        .count();
    assert!(
        retries >= 2,
        "expected logged retries, got {retries}:\n{stderr}"
    );
    assert!(
        stderr.contains("retry_in=1s") && stderr.contains("retry_in=2s"),
        "backoff should grow:\n{stderr}"
    );
}

#[test]
fn ipip_pool_is_reported_not_fatal() {
    let h = host(36);
    let mut running = Running::spawn(h.command(&[
        ("CALICO_IPV4POOL_VXLAN", "Never"),
        ("CALICO_IPV4POOL_IPIP", "Always"),
    ]));
    assert!(
        h.wait_ready(Duration::from_secs(20)),
        "calico-node should become ready"
    );
    assert!(running.is_running());
    let (code, body) = h.http_get("/readiness").expect("readiness");
    assert_eq!(code, 200);
    assert!(
        body.contains("warning: ") && body.contains("no ipip support"),
        "readiness should carry the IPIP warning: {body}"
    );
    let stderr = running.stop();
    assert!(
        stderr.contains("default-ipv4-ippool") && stderr.contains("no ipip support"),
        "the log should say the kernel cannot do IPIP:\n{stderr}"
    );
}

/// Add a remote node with a VXLAN tunnel address and a block affine to it.
fn add_remote_node(store: &Arc<dyn Store>) {
    let rt = runtime();
    rt.block_on(async {
        let client = Client::new(store.clone());
        let mut spec = calico_api::spec::node::NodeSpec::default();
        spec.bgp = Some(calico_api::spec::node::NodeBGPSpec {
            ipv4_address: Some("198.18.37.9/24".into()),
            ..Default::default()
        });
        spec.ipv4_vxlan_tunnel_addr = "198.19.200.0".into();
        let meta = ObjectMeta {
            name: "remote".into(),
            ..Default::default()
        };
        client
            .create(Resource::new(meta, Spec::Node(spec)))
            .await
            .expect("create remote node");
        let cidr = "198.19.200.0/26".parse().expect("cidr");
        let mut block = Block::new(cidr, Some("host:remote".into()), None);
        let mut attr = AllocationAttribute {
            handle_id: Some("vxlan-tunnel-addr-remote".into()),
            ..Default::default()
        };
        attr.secondary.insert(ATTR_NODE.into(), "remote".into());
        block
            .assign("198.19.200.0".parse().expect("ip"), &attr)
            .expect("assign");
        store
            .create(&block_key(cidr), block.to_json())
            .await
            .expect("block");
        store
            .create(
                &affinity_key("remote", cidr),
                Affinity::confirmed().to_json(),
            )
            .await
            .expect("affinity");
    });
}

#[test]
fn restart_reconciles_without_deleting_anything() {
    let h = host(37);
    let first = Running::spawn(h.command(&[]));
    assert!(
        h.wait_ready(Duration::from_secs(20)),
        "first start not ready"
    );
    add_remote_node(&open_store(&h.datastore()));
    let want = "198.19.200.0/26 via 198.19.200.0 dev vxlan.calico proto 80 onlink";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut routes = String::new();
    while Instant::now() < deadline {
        routes = h.ns.ip(&["route", "show"]).expect("routes");
        if routes.contains(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        routes.contains(want),
        "remote block route missing:\n{routes}"
    );
    let index_before =
        h.ns.ip(&["-o", "link", "show", "vxlan.calico"])
            .expect("vxlan");

    let mut monitor_cmd = Command::new("ip");
    monitor_cmd.args([
        "-n",
        h.ns.name(),
        "monitor",
        "route",
        "link",
        "neigh",
        "address",
    ]);
    let mut monitor = Running::spawn(monitor_cmd);
    std::thread::sleep(Duration::from_millis(200));

    drop(first); // SIGKILL: no chance to clean anything up
    let _second = Running::spawn(h.command(&[]));
    assert!(h.wait_ready(Duration::from_secs(20)), "restart not ready");
    std::thread::sleep(Duration::from_millis(500));

    // Positive control: the monitor does see changes in this namespace.
    h.ns.ip(&["route", "add", "198.18.37.128/25", "dev", "eth0"])
        .expect("control route");
    let mut events = Vec::new();
    while let Some(line) = monitor.next_line(Duration::from_millis(300)) {
        events.push(line);
    }
    assert!(
        events.iter().any(|l| l.starts_with("198.18.37.128/25")),
        "ip monitor saw nothing, so it proves nothing: {events:?}"
    );
    h.ns.ip(&["route", "del", "198.18.37.128/25", "dev", "eth0"])
        .expect("control route removed");
    let deletions: Vec<&String> = events.iter().filter(|l| l.starts_with("Deleted")).collect();
    assert!(
        deletions.is_empty(),
        "a restart must not delete kernel state: {deletions:?}"
    );
    let routes_after = h.ns.ip(&["route", "show"]).expect("routes");
    assert_eq!(routes_after, routes, "routes changed across the restart");
    assert_eq!(
        h.ns.ip(&["-o", "link", "show", "vxlan.calico"])
            .expect("vxlan"),
        index_before,
        "vxlan.calico was recreated or changed"
    );
}

#[test]
fn status_reports_are_renewed_and_disappear_when_the_host_dies() {
    let h = host(38);
    let store_path = h.datastore();
    let node = Running::spawn(h.command(&[
        ("FELIX_REPORTINGINTERVALSECS", "1"),
        ("FELIX_REPORTINGTTLSECS", "2"),
    ]));
    assert!(h.wait_ready(Duration::from_secs(20)), "not ready");
    let rt = runtime();
    let store = open_store(&store_path);
    let key = "/calico/felix/v2/no-region/host/testnode/status";
    let report = |store: &Arc<dyn Store>| -> Option<serde_json::Value> {
        let kv = rt.block_on(store.get(key)).expect("read the report")?;
        Some(serde_json::from_slice(&kv.value).expect("the report is JSON"))
    };
    // Renewed: a later report is no longer the first and has a larger uptime.
    let deadline = Instant::now() + Duration::from_secs(10);
    let renewed = loop {
        if let Some(r) = report(&store)
            && r["first_update"] == false
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no renewed report: {:?}",
            report(&store)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        renewed["uptime"].as_f64().is_some_and(|u| u > 0.5),
        "{renewed}"
    );
    assert!(
        renewed["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{renewed}"
    );

    // The host dies: its report outlives it by the TTL at most (expired keys go with the next write to
    // the file, so another writer keeps writing, as the other hosts' reports do in a cluster).
    drop(node);
    let deadline = Instant::now() + Duration::from_secs(15);
    while report(&store).is_some() {
        assert!(
            Instant::now() < deadline,
            "the dead host's report is still there"
        );
        rt.block_on(store.put("/calico/felix/v2/no-region/host/other/x", b"1".to_vec()))
            .expect("another write");
        std::thread::sleep(Duration::from_millis(300));
    }
}
