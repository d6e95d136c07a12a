//! Golden tests of the Felix calculation: a model (v3 resources and IPAM blocks) in, this host's
//! desired dataplane out, as text (routes, devices, neighbours, then the nftables rules). Each `golden/<case>.yaml` holds the input documents; the expected
//! output is `golden/<case>.out`. Regenerate after an intended change with `UPDATE_GOLDEN=1`.
//!
//! Besides v3 objects, a case holds two test-only kinds: `TestHost` (the facts the host knows about
//! itself) and `TestBlock` (an IPAM block: cidr, affinity, and allocations as address → node).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use calico_api::Resource;
use calico_api::documents::parse_values;
use calico_felix::desired::{HostContext, compute};
use calico_felix::model::{Model, parse_v4_net_keeping_host};
use calico_model::ipam::block::{ATTR_NODE, AllocationAttribute, Block};
use calico_model::ipam::model::block_key;
use calico_model::resource::{encode, resource_key_of};
use calico_model::{KeyValue, SyncEvent};
use ipnet::IpNet;
use serde_json::Value;

fn kv(key: String, value: Vec<u8>) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: 1,
        mod_revision: 1,
        version: 1,
    }
}

fn load_case(path: &Path) -> (Model, HostContext) {
    let text = fs::read_to_string(path).expect("read case");
    let mut model = Model::default();
    let mut host = None;
    for value in parse_values(&text).expect("case parses") {
        match value.get("kind").and_then(Value::as_str) {
            Some("TestHost") => {
                let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
                host = Some(HostContext {
                    nodename: field("nodename").expect("TestHost.nodename"),
                    address: field("address").and_then(|a| parse_v4_net_keeping_host(&a)),
                    uplink: field("uplink"),
                    uplink_mtu: value
                        .get("uplinkMtu")
                        .and_then(Value::as_u64)
                        .unwrap_or(1500) as u32,
                    uplink_gso_ipv4_max: value
                        .get("uplinkGsoIpv4Max")
                        .and_then(Value::as_u64)
                        .unwrap_or(65536) as u32,
                    bgp: value.get("bgp").and_then(Value::as_bool).unwrap_or(false),
                });
            }
            Some("TestBlock") => {
                let cidr: IpNet = value["cidr"].as_str().expect("cidr").parse().expect("cidr");
                let affinity = value
                    .get("affinity")
                    .and_then(Value::as_str)
                    .map(|a| format!("host:{a}"));
                let mut block = Block::new(cidr, affinity, None);
                if let Some(allocs) = value.get("allocations").and_then(Value::as_object) {
                    for (ip, node) in allocs {
                        let ip: IpAddr = ip.parse().expect("allocation address");
                        let mut attr = AllocationAttribute {
                            handle_id: Some(format!("h-{ip}")),
                            ..Default::default()
                        };
                        if let Some(node) = node.as_str() {
                            attr.secondary.insert(ATTR_NODE.into(), node.into());
                        }
                        block.assign(ip, &attr).expect("assign");
                    }
                }
                model.apply(&SyncEvent::Put(kv(block_key(cidr), block.to_json())));
            }
            _ => {
                let res = Resource::from_value(value).expect("resource decodes");
                model.apply(&SyncEvent::Put(kv(resource_key_of(&res), encode(&res))));
            }
        }
    }
    (model, host.expect("a TestHost document"))
}

#[test]
fn golden_cases() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "golden cases missing from {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (model, host) = load_case(case);
        let desired = compute(&model, &host);
        // The dataplane as text, then the nftables transaction it implies.
        let actual = format!(
            "{}--- nft\n{}",
            desired.render(),
            calico_felix::nat::render_table(&desired.nat)
        );
        let expected_path = case.with_extension("out");
        if update {
            fs::write(&expected_path, &actual).expect("write golden");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
