//! Results rendered in, and parsed from, every supported spec version.

use calico_cni::spec::{CniError, CniResult, CniVersion, Dns, Interface, IpConfig, RouteConf};
use serde_json::{Value, json};

/// A dual-stack result with a host and a container interface, as a plugin would return it.
fn sample() -> CniResult {
    CniResult {
        cni_version: CniVersion::V1_1_0,
        interfaces: vec![
            Interface {
                name: "cali12345678901".into(),
                mac: Some("ee:ee:ee:ee:ee:ee".into()),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: Some("12:34:56:78:9a:bc".into()),
                mtu: Some(1450),
                sandbox: Some("/var/run/netns/blue".into()),
                socket_path: Some("/run/vhost/eth0.sock".into()),
                pci_id: None,
            },
        ],
        ips: vec![
            IpConfig {
                address: "198.18.1.5/32".parse().unwrap(),
                gateway: None,
                interface: Some(1),
            },
            IpConfig {
                address: "fd00:198:18::5/128".parse().unwrap(),
                gateway: Some("fd00:198:18::1".parse().unwrap()),
                interface: Some(1),
            },
        ],
        routes: vec![
            RouteConf::new(
                "0.0.0.0/0".parse().unwrap(),
                Some("169.254.1.1".parse().unwrap()),
            ),
            RouteConf {
                mtu: Some(1400),
                advmss: Some(1360),
                priority: Some(10),
                table: Some(100),
                scope: Some(0),
                ..RouteConf::new("198.18.200.0/24".parse().unwrap(), None)
            },
        ],
        dns: Dns {
            nameservers: vec!["198.18.0.10".into()],
            domain: Some("cluster.local".into()),
            search: vec!["default.svc.cluster.local".into()],
            options: vec![],
        },
    }
}

/// The 0.x shape: ips tagged with their family, interfaces without mtu/socketPath, routes
/// with only dst/gw.
fn expected_0x(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": "cali12345678901", "mac": "ee:ee:ee:ee:ee:ee"},
            {"name": "eth0", "mac": "12:34:56:78:9a:bc", "sandbox": "/var/run/netns/blue"}
        ],
        "ips": [
            {"version": "4", "address": "198.18.1.5/32", "interface": 1},
            {"version": "6", "address": "fd00:198:18::5/128", "gateway": "fd00:198:18::1", "interface": 1}
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
            {"dst": "198.18.200.0/24"}
        ],
        "dns": {
            "nameservers": ["198.18.0.10"],
            "domain": "cluster.local",
            "search": ["default.svc.cluster.local"]
        }
    })
}

#[test]
fn renders_the_0x_shapes_with_ip_version_tags() {
    for (version, text) in [
        (CniVersion::V0_3_0, "0.3.0"),
        (CniVersion::V0_3_1, "0.3.1"),
        (CniVersion::V0_4_0, "0.4.0"),
    ] {
        assert_eq!(
            sample().to_json(version),
            expected_0x(text),
            "version {text}"
        );
    }
}

#[test]
fn renders_the_1_0_0_shape_without_ip_version_tags() {
    let expected = json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cali12345678901", "mac": "ee:ee:ee:ee:ee:ee"},
            {"name": "eth0", "mac": "12:34:56:78:9a:bc", "mtu": 1450, "sandbox": "/var/run/netns/blue"}
        ],
        "ips": [
            {"address": "198.18.1.5/32", "interface": 1},
            {"address": "fd00:198:18::5/128", "gateway": "fd00:198:18::1", "interface": 1}
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
            {"dst": "198.18.200.0/24"}
        ],
        "dns": {
            "nameservers": ["198.18.0.10"],
            "domain": "cluster.local",
            "search": ["default.svc.cluster.local"]
        }
    });
    assert_eq!(sample().to_json(CniVersion::V1_0_0), expected);
}

#[test]
fn renders_the_1_1_0_shape_with_route_and_interface_extras() {
    let expected = json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "cali12345678901", "mac": "ee:ee:ee:ee:ee:ee"},
            {
                "name": "eth0", "mac": "12:34:56:78:9a:bc", "mtu": 1450,
                "sandbox": "/var/run/netns/blue", "socketPath": "/run/vhost/eth0.sock"
            }
        ],
        "ips": [
            {"address": "198.18.1.5/32", "interface": 1},
            {"address": "fd00:198:18::5/128", "gateway": "fd00:198:18::1", "interface": 1}
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
            {"dst": "198.18.200.0/24", "mtu": 1400, "advmss": 1360, "priority": 10, "table": 100, "scope": 0}
        ],
        "dns": {
            "nameservers": ["198.18.0.10"],
            "domain": "cluster.local",
            "search": ["default.svc.cluster.local"]
        }
    });
    assert_eq!(sample().to_json(CniVersion::V1_1_0), expected);
}

#[test]
fn round_trips_through_every_version() {
    for version in CniVersion::ALL {
        let rendered = sample().to_json(version);
        let parsed = CniResult::from_json(&rendered).unwrap();
        assert_eq!(parsed.cni_version, version);
        // What a version can carry survives; rendering again is stable.
        assert_eq!(parsed.to_json(version), rendered, "version {version}");
        assert_eq!(parsed.ips, sample().ips);
        assert_eq!(parsed.dns, sample().dns);
    }
    // 1.1.0 carries everything, so the model itself survives.
    let full = CniResult::from_json(&sample().to_json(CniVersion::V1_1_0)).unwrap();
    assert_eq!(full, sample());
}

#[test]
fn ipam_shaped_result_omits_interfaces_interface_indexes_and_empty_dns() {
    let result = CniResult {
        ips: vec![IpConfig {
            address: "198.18.100.2/24".parse().unwrap(),
            gateway: Some("198.18.100.1".parse().unwrap()),
            interface: None,
        }],
        ..CniResult::new(CniVersion::V1_0_0)
    };
    assert_eq!(
        result.to_json(CniVersion::V1_0_0),
        json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "198.18.100.2/24", "gateway": "198.18.100.1"}]
        })
    );
}

#[test]
fn converts_a_0_3_1_prev_result_to_1_1_0() {
    let prev = json!({
        "cniVersion": "0.3.1",
        "interfaces": [
            {"name": "cali0123456789a"},
            {"name": "eth0", "mac": "0a:58:c6:12:01:05", "sandbox": "/var/run/netns/pod"}
        ],
        "ips": [
            {"version": "4", "address": "198.18.1.5/26", "gateway": "198.18.1.1", "interface": 1}
        ],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    });
    let parsed = CniResult::from_json(&prev).unwrap();
    assert_eq!(parsed.cni_version, CniVersion::V0_3_1);
    assert_eq!(
        parsed.to_json(CniVersion::V1_1_0),
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "cali0123456789a"},
                {"name": "eth0", "mac": "0a:58:c6:12:01:05", "sandbox": "/var/run/netns/pod"}
            ],
            "ips": [{"address": "198.18.1.5/26", "gateway": "198.18.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0"}]
        })
    );
}

#[test]
fn converts_1_0_0_down_to_0_4_0_adding_ip_families() {
    let prev = json!({
        "cniVersion": "1.0.0",
        "ips": [{"address": "198.18.1.5/32"}, {"address": "fd00::5/128"}]
    });
    let rendered = CniResult::from_json(&prev)
        .unwrap()
        .to_json(CniVersion::V0_4_0);
    assert_eq!(
        rendered,
        json!({
            "cniVersion": "0.4.0",
            "ips": [
                {"version": "4", "address": "198.18.1.5/32"},
                {"version": "6", "address": "fd00::5/128"}
            ]
        })
    );
}

#[test]
fn infers_the_version_of_an_unversioned_result() {
    let tagged = json!({"ips": [{"version": "4", "address": "198.18.1.5/24"}]});
    assert_eq!(
        CniResult::from_json(&tagged).unwrap().cni_version,
        CniVersion::V0_4_0
    );
    let untagged = json!({"ips": [{"address": "198.18.1.5/24"}]});
    assert_eq!(
        CniResult::from_json(&untagged).unwrap().cni_version,
        CniVersion::V1_1_0
    );
}

#[test]
fn go_style_nulls_and_empty_strings_are_treated_as_absent() {
    let value = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "", "sandbox": ""}],
        "ips": null,
        "routes": null,
        "dns": null
    });
    let parsed = CniResult::from_json(&value).unwrap();
    assert_eq!(parsed.interfaces[0].mac, None);
    assert_eq!(parsed.interfaces[0].sandbox, None);
    assert!(parsed.ips.is_empty() && parsed.routes.is_empty() && parsed.dns.is_empty());
    assert_eq!(
        parsed.to_json(CniVersion::V1_0_0),
        json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]})
    );
}

#[test]
fn a_bad_address_is_a_decoding_error_naming_its_path() {
    let value = json!({
        "cniVersion": "1.0.0",
        "ips": [{"address": "198.18.1.5/24"}, {"address": "198.18.1.300/24"}]
    });
    let error = CniResult::from_json(&value).unwrap_err();
    assert_eq!(error.code, CniError::DECODING_FAILURE);
    assert!(error.msg.contains("ips[1].address"), "{error:?}");
}

#[test]
fn an_unsupported_result_version_is_incompatible() {
    let error = CniResult::from_json(&json!({"cniVersion": "0.2.0", "ip4": {}})).unwrap_err();
    assert_eq!(error.code, CniError::INCOMPATIBLE_CNI_VERSION);
    assert!(error.msg.contains("0.2.0"), "{error:?}");
}
