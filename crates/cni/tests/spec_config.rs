//! Parsing Calico network configurations.

use calico_cni::spec::{CniError, CniVersion, DatastoreType, GcAttachment, NetConf};
use serde_json::json;

fn parse(value: serde_json::Value) -> Result<NetConf, CniError> {
    NetConf::parse(value.to_string().as_bytes())
}

#[test]
fn parses_a_full_calico_config() {
    let value = json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "calico",
        "mode": "vxlan",
        "vxlan_mac_prefix": "0E-2E",
        "vxlan_vni": 4096,
        "log_level": "info",
        "log_file_path": "/var/log/calico/cni/cni.log",
        "datastore_type": "etcdv3",
        "etcd_endpoints": "https://198.18.0.2:2379,https://198.18.0.3:2379",
        "etcd_key_file": "/etc/calico/key.pem",
        "etcd_cert_file": "/etc/calico/cert.pem",
        "etcd_ca_cert_file": "/etc/calico/ca.pem",
        "nodename": "node-1",
        "nodename_file": "/var/lib/calico/nodename",
        "nodename_file_optional": true,
        "ipam_lock_file": "/tmp/ipam.lock",
        "mtu": 1450,
        "num_queues": 2,
        "ipam": {
            "type": "calico-ipam",
            "assign_ipv4": "true",
            "assign_ipv6": "true",
            "ipv4_pools": ["198.18.0.0/16", "default-ipv4-ippool"],
            "ipv6_pools": ["fd00:198:18::/48"],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.19.0.0/16", "gw": "198.18.0.1"}],
            "someIpamExtension": {"kept": true}
        },
        "policy": {"type": "k8s", "k8s_api_root": "https://198.18.0.1:6443"},
        "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig", "node_name": "node-1"},
        "feature_control": {"ip_addrs_no_ipam": true, "floating_ips": true},
        "container_settings": {"allow_ip_forwarding": true},
        "include_default_routes": true,
        "device_type": "veth",
        "dns": {"nameservers": ["198.18.0.10"]},
        "runtimeConfig": {"portMappings": []},
        "args": {"cni": {"ips": ["198.18.5.5"]}},
        "someFieldWeDoNotKnow": [1, 2, 3]
    });
    let conf = parse(value.clone()).unwrap();
    assert_eq!(conf.version().unwrap(), CniVersion::V1_0_0);
    assert_eq!(conf.name, "k8s-pod-network");
    assert_eq!(conf.plugin_type, "calico");
    assert_eq!(conf.mode.as_deref(), Some("vxlan"));
    assert_eq!(conf.vxlan_mac_prefix.as_deref(), Some("0E-2E"));
    assert_eq!(conf.vxlan_vni, Some(4096));
    assert_eq!(conf.datastore_type, DatastoreType::Etcdv3);
    assert_eq!(
        conf.etcd_endpoints.as_deref(),
        Some("https://198.18.0.2:2379,https://198.18.0.3:2379")
    );
    assert_eq!(
        conf.etcd_ca_cert_file.as_deref(),
        Some("/etc/calico/ca.pem")
    );
    assert_eq!(conf.nodename.as_deref(), Some("node-1"));
    assert!(conf.nodename_file_optional);
    assert_eq!(conf.ipam_lock_file.as_deref(), Some("/tmp/ipam.lock"));
    assert_eq!((conf.mtu, conf.num_queues), (1450, 2));
    assert_eq!(conf.ipam.ipam_type, "calico-ipam");
    assert!(conf.ipam.assign_ipv4() && conf.ipam.assign_ipv6());
    assert_eq!(
        conf.ipam.ipv4_pools,
        ["198.18.0.0/16", "default-ipv4-ippool"]
    );
    assert_eq!(conf.ipam.ipv6_pools, ["fd00:198:18::/48"]);
    assert_eq!(conf.ipam.routes.len(), 2);
    assert_eq!(conf.ipam.routes[1].gw, Some("198.18.0.1".parse().unwrap()));
    assert_eq!(conf.policy.as_ref().unwrap().policy_type, "k8s");
    assert_eq!(
        conf.kubernetes.as_ref().unwrap().kubeconfig.as_deref(),
        Some("/etc/cni/net.d/calico-kubeconfig")
    );
    assert!(conf.feature_control.ip_addrs_no_ipam && conf.feature_control.floating_ips);
    assert!(conf.container_settings.allow_ip_forwarding);
    assert!(conf.include_default_routes);
    assert_eq!(conf.dns.as_ref().unwrap().nameservers, ["198.18.0.10"]);
    assert_eq!(conf.runtime_config, Some(json!({"portMappings": []})));
    assert_eq!(conf.args, Some(json!({"cni": {"ips": ["198.18.5.5"]}})));
    // Raw JSON is kept whole, including fields we do not model.
    assert_eq!(conf.raw, value);
    assert_eq!(conf.ipam.raw, value["ipam"]);
    assert_eq!(conf.ipam.raw["someIpamExtension"], json!({"kept": true}));
}

#[test]
fn minimal_config_gets_calico_defaults() {
    let conf = parse(json!({"cniVersion": "0.3.1", "name": "net1", "type": "calico"})).unwrap();
    assert_eq!(conf.datastore_type, DatastoreType::Embedded);
    assert!(conf.ipam.assign_ipv4());
    assert!(!conf.ipam.assign_ipv6());
    assert_eq!(conf.mtu, 0);
    assert_eq!(conf.ipam.raw, serde_json::Value::Null);
    assert_eq!(conf.prev_result().unwrap(), None);
    assert_eq!(conf.gc_valid_attachments(), None);
}

#[test]
fn assign_flags_accept_calico_strings_and_json_booleans() {
    let conf = parse(json!({
        "cniVersion": "1.0.0", "name": "n", "type": "calico",
        "ipam": {"type": "calico-ipam", "assign_ipv4": "false", "assign_ipv6": true}
    }))
    .unwrap();
    assert!(!conf.ipam.assign_ipv4());
    assert!(conf.ipam.assign_ipv6());

    let error = parse(json!({
        "cniVersion": "1.0.0", "name": "n", "type": "calico",
        "ipam": {"type": "calico-ipam", "assign_ipv6": "yes"}
    }))
    .unwrap_err();
    assert_eq!(error.code, CniError::INVALID_NETWORK_CONFIG);
    assert!(error.msg.contains("ipam.assign_ipv6"), "{error:?}");
    assert!(error.msg.contains("\"yes\""), "{error:?}");
}

#[test]
fn wrong_field_types_name_the_field_path() {
    for (value, path) in [
        (
            json!({"cniVersion": "1.0.0", "name": "n", "type": "calico", "mtu": "1500"}),
            "mtu",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "type": "calico", "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "nonsense"}]}}),
            "ipam.routes[1].dst",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "type": "calico", "feature_control": {"floating_ips": "yes"}}),
            "feature_control.floating_ips",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "n", "type": "calico", "datastore_type": "kubernetes"}),
            "datastore_type",
        ),
        (
            json!({"cniVersion": "1.1.0", "name": "n", "type": "calico", "cni.dev/valid-attachments": [{"containerID": 5, "ifname": "eth0"}]}),
            "cni.dev/valid-attachments[0].containerID",
        ),
    ] {
        let error = parse(value).unwrap_err();
        assert_eq!(error.code, CniError::INVALID_NETWORK_CONFIG, "{path}");
        assert!(
            error
                .msg
                .starts_with(&format!("invalid network config: {path}: ")),
            "{path}: {error:?}"
        );
    }
}

#[test]
fn malformed_json_is_a_decoding_failure() {
    let error = NetConf::parse(b"{\"cniVersion\": \"1.0.0\",").unwrap_err();
    assert_eq!(error.code, CniError::DECODING_FAILURE);
}

#[test]
fn unsupported_or_missing_versions_are_incompatible() {
    for value in [
        json!({"cniVersion": "0.2.0", "name": "n", "type": "calico"}),
        json!({"cniVersion": "2.0.0", "name": "n", "type": "calico"}),
        json!({"name": "n", "type": "calico"}),
    ] {
        let error = parse(value.clone()).unwrap_err();
        assert_eq!(error.code, CniError::INCOMPATIBLE_CNI_VERSION, "{value}");
    }
}

#[test]
fn network_name_is_required_and_checked() {
    let error = parse(json!({"cniVersion": "1.0.0", "type": "calico"})).unwrap_err();
    assert_eq!(error.code, CniError::INVALID_NETWORK_CONFIG);
    assert!(error.msg.contains("name"), "{error:?}");
    let error =
        parse(json!({"cniVersion": "1.0.0", "name": "../etc", "type": "calico"})).unwrap_err();
    assert_eq!(error.code, CniError::INVALID_NETWORK_CONFIG);
    assert_eq!(error.details, "../etc");
}

#[test]
fn prev_result_is_decoded_from_an_older_version() {
    let conf = parse(json!({
        "cniVersion": "0.3.1", "name": "n", "type": "calico",
        "prevResult": {
            "cniVersion": "0.3.1",
            "ips": [{"version": "4", "address": "198.18.1.5/32", "interface": 0}],
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}]
        }
    }))
    .unwrap();
    let prev = conf.prev_result().unwrap().unwrap();
    assert_eq!(prev.cni_version, CniVersion::V0_3_1);
    assert_eq!(prev.ips[0].address.to_string(), "198.18.1.5/32");
    assert_eq!(prev.ips[0].interface, Some(0));
    assert_eq!(
        prev.to_json(CniVersion::V1_1_0)["ips"],
        json!([{"address": "198.18.1.5/32", "interface": 0}])
    );
}

#[test]
fn unversioned_prev_result_takes_the_config_version() {
    let conf = parse(json!({
        "cniVersion": "1.0.0", "name": "n", "type": "calico",
        "prevResult": {"ips": [{"address": "198.18.1.5/32"}]}
    }))
    .unwrap();
    assert_eq!(
        conf.prev_result().unwrap().unwrap().cni_version,
        CniVersion::V1_0_0
    );

    let broken = parse(json!({
        "cniVersion": "1.0.0", "name": "n", "type": "calico",
        "prevResult": {"ips": [{"address": "not-an-ip"}]}
    }))
    .unwrap();
    let error = broken.prev_result().unwrap_err();
    assert_eq!(error.code, CniError::DECODING_FAILURE);
    assert!(error.msg.contains("ips[0].address"), "{error:?}");
}

fn attachment(container_id: &str, ifname: &str) -> GcAttachment {
    GcAttachment {
        container_id: container_id.into(),
        ifname: ifname.into(),
    }
}

#[test]
fn gc_attachments_are_read_from_either_key() {
    let current = parse(json!({
        "cniVersion": "1.1.0", "name": "n", "type": "calico",
        "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
    }))
    .unwrap();
    assert_eq!(
        current.gc_valid_attachments(),
        Some(vec![attachment("c1", "eth0")])
    );

    let released = parse(json!({
        "cniVersion": "1.1.0", "name": "n", "type": "calico",
        "cni.dev/attachments": [{"containerID": "c2", "ifname": "net1"}]
    }))
    .unwrap();
    assert_eq!(
        released.gc_valid_attachments(),
        Some(vec![attachment("c2", "net1")])
    );

    // libcni sends both keys with the same list: no duplicates; differing lists are merged.
    let both = parse(json!({
        "cniVersion": "1.1.0", "name": "n", "type": "calico",
        "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
        "cni.dev/attachments": [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c3", "ifname": "eth0"}]
    }))
    .unwrap();
    assert_eq!(
        both.gc_valid_attachments(),
        Some(vec![attachment("c1", "eth0"), attachment("c3", "eth0")])
    );

    // An explicitly empty list means "nothing is valid any more", unlike an absent key.
    let empty = parse(json!({
        "cniVersion": "1.1.0", "name": "n", "type": "calico",
        "cni.dev/valid-attachments": []
    }))
    .unwrap();
    assert_eq!(empty.gc_valid_attachments(), Some(vec![]));
}

#[test]
fn raw_with_version_changes_only_the_version() {
    let conf = parse(json!({
        "cniVersion": "1.1.0", "name": "n", "type": "calico",
        "ipam": {"type": "host-local", "subnet": "198.18.100.0/24"}
    }))
    .unwrap();
    let raw = conf.raw_with_version(CniVersion::V1_0_0);
    assert_eq!(raw["cniVersion"], json!("1.0.0"));
    assert_eq!(raw["ipam"], conf.raw["ipam"]);
    assert_eq!(raw["name"], json!("n"));
}
