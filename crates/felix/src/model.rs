//! The model: the part of the datastore one host's dataplane depends on, folded from syncer events.
//!
//! Objects are kept by datastore key so a delete needs no decoding. Values that fail to decode are
//! dropped from the model (with the reason kept in [`Model::decode_errors`]) rather than stopping the
//! host: one bad object must not take the dataplane down.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use calico_api::spec::ippool::EncapMode;
use calico_api::{Kind, Spec};
pub use calico_model::ipam::block::BlockInfo;
use calico_model::ipam::block::BlockRouting;
use calico_model::ipam::model::{BLOCK_PREFIX, parse_block_key};
use calico_model::keys::{RESOURCES_PREFIX, parse_resource_key};
use calico_model::resource::decode_kv;
use calico_model::{KeyValue, SyncEvent};
use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

/// The key prefixes a host's Felix needs: every v3 resource and the IPAM blocks.
pub fn sync_prefixes() -> Vec<String> {
    vec![RESOURCES_PREFIX.to_string(), BLOCK_PREFIX.to_string()]
}

/// A Calico node as the dataplane sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    /// `spec.bgp.ipv4Address`: address and subnet.
    pub address: Option<Ipv4Net>,
    pub vxlan_tunnel_address: Option<Ipv4Addr>,
    /// `spec.vxlanTunnelMACAddr`, when the node set one.
    pub vxlan_mac: Option<[u8; 6]>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolInfo {
    pub name: String,
    pub cidr: IpNet,
    pub vxlan: EncapMode,
    pub ipip: EncapMode,
    pub nat_outgoing: bool,
    pub disabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndpointInfo {
    pub node: String,
    pub interface: String,
    pub addresses: Vec<IpNet>,
    /// The pod-side MAC (`spec.mac`), for a static ARP entry on the host side.
    pub mac: Option<[u8; 6]>,
    /// Floating IPs (`spec.ipNATs`), IPv4: (internal, external).
    pub ip_nats: Vec<(Ipv4Addr, Ipv4Addr)>,
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub nodes: BTreeMap<String, NodeInfo>,
    pub pools: BTreeMap<String, PoolInfo>,
    pub blocks: BTreeMap<String, BlockInfo>,
    /// Workload endpoints this model keeps: all of them, or with [`Model::for_host`] only the host's own.
    pub endpoints: BTreeMap<String, EndpointInfo>,
    /// Keys whose values could not be decoded, with the reason.
    pub decode_errors: BTreeMap<String, String>,
    /// The host whose dataplane this model serves (None: every endpoint is kept).
    host: Option<String>,
    /// Keys of other hosts' endpoints: counted, not kept, since they change nothing on this host.
    remote_endpoints: BTreeSet<String>,
}

impl Model {
    /// A model for `host`'s dataplane: other hosts' workload endpoints are counted but not kept, and
    /// their events report no change.
    pub fn for_host(host: &str) -> Model {
        Model {
            host: Some(host.to_string()),
            ..Model::default()
        }
    }

    /// Workload endpoints in the cluster, this host's and others'.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len() + self.remote_endpoints.len()
    }

    /// Fold one syncer event in. Returns whether anything the dataplane depends on changed.
    pub fn apply(&mut self, event: &SyncEvent) -> bool {
        match event {
            SyncEvent::Put(kv) => self.put(kv),
            SyncEvent::Delete { key, .. } => self.delete(key),
            SyncEvent::InSync { .. } | SyncEvent::Resyncing { .. } => false,
        }
    }

    /// Nodes keyed by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.values().find(|n| n.name == name)
    }

    pub fn put(&mut self, kv: &KeyValue) -> bool {
        self.decode_errors.remove(&kv.key);
        if let Some(cidr) = parse_block_key(&kv.key) {
            return match BlockRouting::from_json(&kv.value) {
                Ok(block) => {
                    // The key names the block; its document's own cidr is not trusted over it.
                    let info = BlockInfo {
                        cidr,
                        ..block.info()
                    };
                    replace(&mut self.blocks, &kv.key, Some(info))
                }
                Err(e) => self.reject(kv, e),
            };
        }
        let Some(id) = parse_resource_key(&kv.key) else {
            return false;
        };
        if !matches!(id.kind, Kind::Node | Kind::IPPool | Kind::WorkloadEndpoint) {
            return false;
        }
        let resource = match decode_kv(kv) {
            Ok(r) => r,
            Err(e) => return self.reject(kv, e.to_string()),
        };
        let name = resource.metadata.name.clone();
        match resource.spec {
            Spec::Node(spec) => {
                let bgp = spec.bgp.unwrap_or_default();
                // Empty means unset; anything else must parse, or the node is reported, not guessed at.
                let address = match bgp.ipv4_address.as_deref().filter(|a| !a.is_empty()) {
                    None => None,
                    Some(text) => match parse_v4_net_keeping_host(text) {
                        Some(net) => Some(net),
                        None => {
                            return self.reject(
                                kv,
                                format!("spec.bgp.ipv4Address {text:?} is not an IPv4 address"),
                            );
                        }
                    },
                };
                let tunnel = spec.ipv4_vxlan_tunnel_addr.as_str();
                let vxlan_tunnel_address = match tunnel {
                    "" => None,
                    text => match text.parse() {
                        Ok(ip) => Some(ip),
                        Err(_) => {
                            return self.reject(
                                kv,
                                format!("spec.ipv4VXLANTunnelAddr {text:?} is not an IPv4 address"),
                            );
                        }
                    },
                };
                let vxlan_mac = match spec.vxlan_tunnel_mac_addr.as_str() {
                    "" => None,
                    text => match calico_contracts::mac::parse(text) {
                        Ok(mac) => Some(mac),
                        Err(e) => return self.reject(kv, format!("spec.vxlanTunnelMACAddr: {e}")),
                    },
                };
                let info = NodeInfo {
                    name,
                    address,
                    vxlan_tunnel_address,
                    vxlan_mac,
                };
                replace(&mut self.nodes, &kv.key, Some(info))
            }
            Spec::IPPool(spec) => {
                let Some(cidr) = spec.net() else {
                    return self.reject(kv, format!("spec.cidr {:?} is not a CIDR", spec.cidr));
                };
                let info = PoolInfo {
                    name,
                    cidr,
                    vxlan: spec.vxlan(),
                    ipip: spec.ipip(),
                    nat_outgoing: spec.nat_outgoing,
                    disabled: spec.disabled,
                };
                replace(&mut self.pools, &kv.key, Some(info))
            }
            Spec::WorkloadEndpoint(spec) => {
                let node = spec.node.clone().unwrap_or_default();
                if self.host.as_ref().is_some_and(|host| *host != node) {
                    self.remote_endpoints.insert(kv.key.clone());
                    // An endpoint that moved away from this host takes its routes with it.
                    return self.endpoints.remove(&kv.key).is_some();
                }
                self.remote_endpoints.remove(&kv.key);
                let mut addresses = Vec::with_capacity(spec.ip_networks.len());
                for (i, text) in spec.ip_networks.iter().enumerate() {
                    match text.parse::<IpNet>() {
                        Ok(net) => addresses.push(net),
                        Err(_) => {
                            return self.reject(
                                kv,
                                format!("spec.ipNetworks[{i}] {text:?} is not a CIDR"),
                            );
                        }
                    }
                }
                // A bad MAC costs the pod only its static ARP entry: keep the endpoint, report it.
                let mac = match spec.mac.as_deref().filter(|m| !m.is_empty()) {
                    None => None,
                    Some(text) => match calico_contracts::mac::parse(text) {
                        Ok(mac) => Some(mac),
                        Err(e) => {
                            self.decode_errors.insert(
                                kv.key.clone(),
                                format!("spec.mac: {e}; the pod gets no static ARP entry"),
                            );
                            None
                        }
                    },
                };
                // A floating IP the `ip` table cannot carry (IPv6) or that does not parse costs the pod
                // only that mapping: keep the endpoint, report it.
                let mut ip_nats = Vec::new();
                for (i, nat) in spec.ip_nats.iter().enumerate() {
                    match (
                        nat.internal_ip.parse::<Ipv4Addr>(),
                        nat.external_ip.parse::<Ipv4Addr>(),
                    ) {
                        (Ok(internal), Ok(external)) => ip_nats.push((internal, external)),
                        _ => {
                            self.decode_errors.insert(
                                kv.key.clone(),
                                format!(
                                    "spec.ipNATs[{i}] ({} -> {}) is not a pair of IPv4 addresses; that floating IP is not programmed",
                                    nat.external_ip, nat.internal_ip
                                ),
                            );
                        }
                    }
                }
                let info = EndpointInfo {
                    node,
                    interface: spec.interface_name.clone().unwrap_or_default(),
                    addresses,
                    mac,
                    ip_nats,
                };
                replace(&mut self.endpoints, &kv.key, Some(info))
            }
            _ => false,
        }
    }

    pub fn delete(&mut self, key: &str) -> bool {
        self.decode_errors.remove(key);
        self.remote_endpoints.remove(key);
        replace(&mut self.blocks, key, None)
            | replace(&mut self.nodes, key, None)
            | replace(&mut self.pools, key, None)
            | replace(&mut self.endpoints, key, None)
    }

    fn reject(&mut self, kv: &KeyValue, reason: String) -> bool {
        tracing::warn!(key = %kv.key, %reason, "ignoring an object that does not decode");
        self.decode_errors.insert(kv.key.clone(), reason);
        self.delete_quietly(&kv.key)
    }

    fn delete_quietly(&mut self, key: &str) -> bool {
        replace(&mut self.blocks, key, None)
            | replace(&mut self.nodes, key, None)
            | replace(&mut self.pools, key, None)
            | replace(&mut self.endpoints, key, None)
    }
}

/// Insert, replace or remove `key`; true when the map changed.
fn replace<T: PartialEq>(map: &mut BTreeMap<String, T>, key: &str, value: Option<T>) -> bool {
    match value {
        Some(v) => {
            if map.get(key) == Some(&v) {
                return false;
            }
            map.insert(key.to_string(), v);
            true
        }
        None => map.remove(key).is_some(),
    }
}

/// `10.0.0.5/24` keeping the host bits (a bare address is a /32).
pub fn parse_v4_net_keeping_host(text: &str) -> Option<Ipv4Net> {
    match text.split_once('/') {
        Some((addr, len)) => Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok(),
        None => Some(Ipv4Net::from(text.parse::<Ipv4Addr>().ok()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        }
    }

    const NODE_KEY: &str = "/calico/resources/v3/projectcalico.org/nodes/node1";
    const NODE: &str = r#"{"apiVersion":"projectcalico.org/v3","kind":"Node","metadata":{"name":"node1"},
        "spec":{"bgp":{"ipv4Address":"198.18.0.11/24"},"ipv4VXLANTunnelAddr":"198.19.0.0"}}"#;

    #[test]
    fn put_then_delete_tracks_a_node_and_reports_changes() {
        let mut model = Model::default();
        assert!(model.apply(&SyncEvent::Put(kv(NODE_KEY, NODE))));
        let node = model.node("node1").expect("node");
        assert_eq!(node.address, "198.18.0.11/24".parse().ok());
        assert_eq!(node.vxlan_tunnel_address, "198.19.0.0".parse().ok());
        // The same value again changes nothing.
        assert!(!model.apply(&SyncEvent::Put(kv(NODE_KEY, NODE))));
        assert!(model.apply(&SyncEvent::Delete {
            key: NODE_KEY.into(),
            revision: 2
        }));
        assert!(model.node("node1").is_none());
        assert!(!model.apply(&SyncEvent::Delete {
            key: NODE_KEY.into(),
            revision: 3
        }));
    }

    #[test]
    fn a_value_that_does_not_decode_is_dropped_and_remembered() {
        let mut model = Model::default();
        model.apply(&SyncEvent::Put(kv(NODE_KEY, NODE)));
        assert!(model.apply(&SyncEvent::Put(kv(NODE_KEY, "{not json"))));
        assert!(model.node("node1").is_none());
        assert!(model.decode_errors.contains_key(NODE_KEY));
        model.apply(&SyncEvent::Put(kv(NODE_KEY, NODE)));
        assert!(model.decode_errors.is_empty());
        let block_key = "/calico/ipam/v2/assignment/ipv4/block/198.19.0.0-26";
        assert!(!model.apply(&SyncEvent::Put(kv(block_key, "[]"))));
        assert!(model.decode_errors.contains_key(block_key));
    }

    #[test]
    fn unrelated_kinds_and_markers_change_nothing() {
        let mut model = Model::default();
        let profile = r#"{"apiVersion":"projectcalico.org/v3","kind":"Profile","metadata":{"name":"p"},"spec":{}}"#;
        assert!(!model.apply(&SyncEvent::Put(kv(
            "/calico/resources/v3/projectcalico.org/profiles/p",
            profile
        ))));
        assert!(!model.apply(&SyncEvent::InSync { revision: 1 }));
        assert!(!model.apply(&SyncEvent::Resyncing {
            reason: "test".into()
        }));
    }

    #[test]
    fn host_bits_are_kept_when_parsing_node_addresses() {
        assert_eq!(
            parse_v4_net_keeping_host("198.18.0.11/24").map(|n| n.to_string()),
            Some("198.18.0.11/24".into())
        );
        assert_eq!(
            parse_v4_net_keeping_host("198.18.0.11").map(|n| n.to_string()),
            Some("198.18.0.11/32".into())
        );
        assert_eq!(parse_v4_net_keeping_host("198.18.0.11/33"), None);
        assert_eq!(parse_v4_net_keeping_host("nonsense"), None);
    }

    /// A /30 block affine to node1 with the given allocations, one attribute per allocated address
    /// (`Some(node)` names the node in the attribute), written as Calico stores it.
    fn block_json(allocated: &[Option<&str>]) -> String {
        let mut allocations = Vec::new();
        let mut unallocated = Vec::new();
        let mut attributes = Vec::new();
        for ordinal in 0..4 {
            match allocated.get(ordinal) {
                Some(node) => {
                    allocations.push(attributes.len().to_string());
                    attributes.push(match node {
                        Some(node) => format!(
                            r#"{{"handle_id":"h{ordinal}","secondary":{{"node":"{node}"}}}}"#
                        ),
                        None => format!(r#"{{"handle_id":"h{ordinal}"}}"#),
                    });
                }
                None => {
                    allocations.push("null".to_string());
                    unallocated.push(ordinal.to_string());
                }
            }
        }
        format!(
            r#"{{"cidr":"198.19.0.0/30","affinity":"host:node1","allocations":[{}],"unallocated":[{}],"attributes":[{}],"sequenceNumber":1}}"#,
            allocations.join(","),
            unallocated.join(","),
            attributes.join(",")
        )
    }

    const BLOCK_KEY: &str = "/calico/ipam/v2/assignment/ipv4/block/198.19.0.0-30";

    #[test]
    fn pods_coming_and_going_in_a_block_change_nothing_but_a_borrowed_address_does() {
        let mut model = Model::for_host("node3");
        assert!(model.apply(&SyncEvent::Put(kv(
            BLOCK_KEY,
            &block_json(&[Some("node1")])
        ))));
        // More of the owner's own pods, and an allocation without a node: no route changes.
        assert!(!model.apply(&SyncEvent::Put(kv(
            BLOCK_KEY,
            &block_json(&[Some("node1"), Some("node1"), None])
        ))));
        // node2 borrows an address: it needs its own route.
        assert!(model.apply(&SyncEvent::Put(kv(
            BLOCK_KEY,
            &block_json(&[Some("node1"), Some("node1"), Some("node2")])
        ))));
        let block = model.blocks.get(BLOCK_KEY).expect("block");
        assert_eq!(block.affinity.as_deref(), Some("node1"));
        assert_eq!(
            block.borrowed,
            vec![("198.19.0.2".parse().expect("ip"), "node2".to_string())]
        );
    }

    fn endpoint_json(node: &str) -> String {
        format!(
            r#"{{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","metadata":{{"name":"ep","namespace":"default"}},"spec":{{"node":"{node}","interfaceName":"cali0123456789a","ipNetworks":["198.19.0.5/32"]}}}}"#
        )
    }

    #[test]
    fn other_hosts_endpoints_are_counted_but_change_nothing_here() {
        const EP: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/ep";
        let mut model = Model::for_host("node1");
        assert!(!model.apply(&SyncEvent::Put(kv(EP, &endpoint_json("node2")))));
        assert_eq!((model.endpoints.len(), model.endpoint_count()), (0, 1));
        // It moves here: a change; and away again: a change (its route goes).
        assert!(model.apply(&SyncEvent::Put(kv(EP, &endpoint_json("node1")))));
        assert_eq!((model.endpoints.len(), model.endpoint_count()), (1, 1));
        assert!(model.apply(&SyncEvent::Put(kv(EP, &endpoint_json("node2")))));
        assert_eq!((model.endpoints.len(), model.endpoint_count()), (0, 1));
        assert!(!model.apply(&SyncEvent::Delete {
            key: EP.into(),
            revision: 9
        }));
        assert_eq!(model.endpoint_count(), 0);
        // Without a host, every endpoint is kept.
        let mut all = Model::default();
        assert!(all.apply(&SyncEvent::Put(kv(EP, &endpoint_json("node2")))));
        assert_eq!(all.endpoints.len(), 1);
    }

    #[test]
    fn malformed_fields_are_reported_with_their_path_not_guessed() {
        let mut model = Model::default();
        let node = |field: &str| {
            format!(
                r#"{{"apiVersion":"projectcalico.org/v3","kind":"Node","metadata":{{"name":"node1"}},"spec":{{{field}}}}}"#
            )
        };
        for (field, path) in [
            (
                r#""bgp":{"ipv4Address":"198.18.0.300/24"}"#,
                "spec.bgp.ipv4Address",
            ),
            (
                r#""ipv4VXLANTunnelAddr":"not-an-ip""#,
                "spec.ipv4VXLANTunnelAddr",
            ),
            (
                r#""vxlanTunnelMACAddr":"66:00:00""#,
                "spec.vxlanTunnelMACAddr",
            ),
        ] {
            model.apply(&SyncEvent::Put(kv(NODE_KEY, &node(field))));
            assert!(model.node("node1").is_none(), "{field}");
            let reason = model.decode_errors.get(NODE_KEY).expect("reason");
            assert!(reason.starts_with(path), "{reason}");
        }
        // Empty values mean unset.
        assert!(model.apply(&SyncEvent::Put(kv(
            NODE_KEY,
            &node(r#""ipv4VXLANTunnelAddr":"","vxlanTunnelMACAddr":"""#)
        ))));
        assert!(model.decode_errors.is_empty());

        // An endpoint with a bad address is dropped; one with a bad MAC is kept without it.
        const EP: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/ep";
        let endpoint = |extra: &str| {
            format!(
                r#"{{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint","metadata":{{"name":"ep","namespace":"default"}},"spec":{{"node":"node1","interfaceName":"cali0123456789a",{extra}}}}}"#
            )
        };
        model.apply(&SyncEvent::Put(kv(
            EP,
            &endpoint(r#""ipNetworks":["198.19.0.5/33"]"#),
        )));
        assert!(model.endpoints.is_empty());
        assert!(model.decode_errors[EP].starts_with("spec.ipNetworks[0]"));
        model.apply(&SyncEvent::Put(kv(
            EP,
            &endpoint(r#""ipNetworks":["198.19.0.5/32"],"mac":"zz:00:00:00:00:00""#),
        )));
        assert_eq!(model.endpoints[EP].addresses.len(), 1);
        assert_eq!(model.endpoints[EP].mac, None);
        assert!(model.decode_errors[EP].starts_with("spec.mac"));
    }
}
