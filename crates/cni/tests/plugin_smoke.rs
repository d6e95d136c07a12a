//! The plugin wires two pods on one host that then reach each other, and DEL removes everything.

mod common;

use common::{Datastore, Host, Pod, assert_ok, calicoctl, create_pool, json_of};
use serde_json::json;

#[test]
fn two_pods_on_one_host_reach_each_other_and_del_leaves_nothing() {
    let host = Host::new("cni-smoke-h", "smoke-node");
    let ds = Datastore::created_embedded(host.dir.path().join("calico.db"));
    create_pool(&ds, "smoke", "198.18.160.0/22", 26);
    let conf = host.conf("1.0.0", "smokenet", &ds, json!({}));
    let pods = [Pod::new("cni-smoke-p"), Pod::new("cni-smoke-p")];
    for (i, pod) in pods.iter().enumerate() {
        let out = host.add(&format!("smoke{i}"), pod, &conf);
        assert_ok(&out, &host, "ADD");
        let result = json_of(&out);
        assert_eq!(result["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
        assert_eq!(result["ips"][0]["interface"], 1);
    }
    let ip1 = pods[1].ipv4().expect("pod 1 has an address");
    assert!(ip1.starts_with("198.18.16"), "{ip1}");
    assert!(pods[0].ping(&ip1), "pod 0 cannot reach pod 1 at {ip1}");
    let weps = calicoctl(&ds, &["get", "workloadendpoints"]);
    assert_eq!(String::from_utf8_lossy(&weps.stdout).lines().count(), 3);

    for (i, pod) in pods.iter().enumerate() {
        assert_ok(
            &host.del(&format!("smoke{i}"), Some(pod), &conf),
            &host,
            "DEL",
        );
    }
    assert_eq!(host.links(), vec!["lo".to_string()]);
    assert!(!host.routes().contains("198.18.16"), "{}", host.routes());
    let weps = calicoctl(&ds, &["get", "workloadendpoints"]);
    assert_eq!(String::from_utf8_lossy(&weps.stdout).lines().count(), 1);
}
