//! Expected values come from Calico's documented behaviour (calico-behaviour.md §6 and confd's
//! BIRD templates), written out by hand.

use std::net::{IpAddr, Ipv4Addr};

use calico_api::spec::bgpconfig::{
    BGPConfigurationSpec, Community, PrefixAdvertisement, ServiceIPBlock,
};
use calico_api::spec::bgpfilter::{
    ASNumber, BGPFilterRule, BGPFilterSpec, FilterAction, MatchOperator as ApiOp, PeerType,
    PrefixLength,
};
use calico_api::spec::bgppeer::{
    BGPPassword, BGPPeerSpec, NextHopMode, SecretKeySelector, SourceAddress,
};
use calico_api::spec::ippool::IPPoolSpec;
use calico_api::spec::node::{NodeBGPSpec, NodeSpec};
use calico_bgp::rib::NextHopMode as SpeakerNextHop;
use calico_bgp::wire::LargeCommunity;
use calico_model::ipam::block::{BlockInfo, BlockRouting};
use ipnet::IpNet;

use super::*;

#[derive(Default)]
struct World {
    nodes: Vec<Named<NodeSpec>>,
    configs: Vec<Named<BGPConfigurationSpec>>,
    peers: Vec<Named<BGPPeerSpec>>,
    filters: Vec<Named<BGPFilterSpec>>,
    pools: Vec<Named<IPPoolSpec>>,
    blocks: Vec<BlockInfo>,
    router_id: Option<Ipv4Addr>,
}

/// The only Secret: `bgp-secrets` with key `rr-password`.
fn secrets(sel: &SecretKeySelector) -> Result<String, String> {
    if sel.name == "bgp-secrets" && sel.key == "rr-password" {
        Ok("very-secret".into())
    } else {
        Err(format!("secret {:?} has no key {:?}", sel.name, sel.key))
    }
}

impl World {
    fn run(&self, node: &str) -> Confd {
        let input = ConfdInput {
            node_name: node,
            nodes: &self.nodes,
            bgp_configurations: &self.configs,
            bgp_peers: &self.peers,
            bgp_filters: &self.filters,
            ip_pools: &self.pools,
            blocks: &self.blocks,
            router_id: self.router_id,
        };
        compute(&input, &secrets)
    }

    fn node(mut self, n: Named<NodeSpec>) -> Self {
        self.nodes.push(n);
        self
    }

    fn peer(mut self, name: &str, spec: BGPPeerSpec) -> Self {
        self.peers.push(Named::new(name, spec));
        self
    }

    fn config(mut self, name: &str, spec: BGPConfigurationSpec) -> Self {
        self.configs.push(Named::new(name, spec));
        self
    }

    fn no_mesh(self) -> Self {
        self.config(
            "default",
            BGPConfigurationSpec {
                node_to_node_mesh_enabled: Some(false),
                ..Default::default()
            },
        )
    }
}

fn bgp_node(name: &str, v4: Option<&str>, v6: Option<&str>) -> Named<NodeSpec> {
    Named::new(
        name,
        NodeSpec {
            bgp: Some(NodeBGPSpec {
                ipv4_address: v4.map(str::to_string),
                ipv6_address: v6.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn node(name: &str, v4: &str) -> Named<NodeSpec> {
    bgp_node(name, Some(v4), None)
}

fn with_as(mut n: Named<NodeSpec>, asn: u32) -> Named<NodeSpec> {
    if let Some(b) = n.spec.bgp.as_mut() {
        b.as_number = Some(asn);
    }
    n
}

fn reflector(mut n: Named<NodeSpec>, cluster: &str) -> Named<NodeSpec> {
    if let Some(b) = n.spec.bgp.as_mut() {
        b.route_reflector_cluster_id = Some(cluster.into());
    }
    n.with_labels([("route-reflector", "true")])
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

fn names(c: &Confd) -> Vec<&str> {
    c.peers.iter().map(|p| p.name.as_str()).collect()
}

fn peer<'a>(c: &'a Confd, name: &str) -> &'a DesiredPeer {
    c.peers
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no peer {name} among {:?}", names(c)))
}

fn peer_ip(peer_ip: &str, asn: u32) -> BGPPeerSpec {
    BGPPeerSpec {
        peer_ip: peer_ip.into(),
        as_number: Some(asn),
        ..Default::default()
    }
}

fn has_problem(c: &Confd, kind: &str, resource: &str, field: &str) -> bool {
    c.problems
        .iter()
        .any(|p| p.kind == kind && p.resource == resource && p.field == field)
}

fn three_nodes() -> World {
    World::default()
        .node(node("node1", "10.0.0.1/24"))
        .node(node("node2", "10.0.0.2/24"))
        .node(node("node3", "10.0.0.3/24"))
}

// ---------------------------------------------------------------- identity

#[test]
fn identity_defaults_follow_calico() {
    let c = three_nodes().run("node2");
    assert_eq!(
        c.identity,
        BgpIdentity {
            enabled: true,
            local_as: 64512,
            router_id: Some(Ipv4Addr::new(10, 0, 0, 2)),
            cluster_id: None,
            listen_port: 179,
            listen_address: None,
            ipv4: Some(Ipv4Addr::new(10, 0, 0, 2)),
            ipv6: None,
        }
    );
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let speaker = c.identity.speaker_config().expect("runs BGP");
    assert_eq!(speaker.local_as, 64512);
    assert_eq!(speaker.router_id, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(speaker.listen.map(|a| a.port()), Some(179));
}

#[test]
fn identity_as_port_cluster_and_router_id_overrides() {
    let mut w = World::default()
        .node(reflector(
            with_as(node("rr", "10.0.0.9/24"), 65009),
            "224.0.0.1",
        ))
        .node(node("plain", "10.0.0.1/24"))
        .config(
            "default",
            BGPConfigurationSpec {
                as_number: Some(65000),
                listen_port: Some(1179),
                ..Default::default()
            },
        )
        .config(
            "node.rr",
            BGPConfigurationSpec {
                listen_port: Some(2179),
                ..Default::default()
            },
        );
    let rr = w.run("rr").identity;
    assert_eq!(rr.local_as, 65009, "the node's own AS wins");
    assert_eq!(rr.listen_port, 2179, "node.<name> listenPort wins");
    assert_eq!(rr.cluster_id, Some(Ipv4Addr::new(224, 0, 0, 1)));
    let plain = w.run("plain").identity;
    assert_eq!(plain.local_as, 65000, "BGPConfiguration default asNumber");
    assert_eq!(plain.listen_port, 1179);
    w.router_id = Some(Ipv4Addr::new(1, 2, 3, 4));
    assert_eq!(
        w.run("plain").identity.router_id,
        Some(Ipv4Addr::new(1, 2, 3, 4))
    );
}

/// A node's own listenPort that cannot be used falls back to the cluster's, for the port it listens
/// on and the port the other nodes dial alike.
#[test]
fn an_unusable_node_listen_port_falls_back_to_the_clusters_on_both_ends() {
    let w = World::default()
        .node(node("a", "10.0.0.1/24"))
        .node(node("b", "10.0.0.2/24"))
        .config(
            "default",
            BGPConfigurationSpec {
                listen_port: Some(1179),
                ..Default::default()
            },
        )
        .config(
            "node.a",
            BGPConfigurationSpec {
                listen_port: Some(0),
                ..Default::default()
            },
        );
    assert_eq!(w.run("a").identity.listen_port, 1179);
    let b = w.run("b");
    assert_eq!(peer(&b, "Mesh_10_0_0_1").settings.port, 1179);
}

#[test]
fn bind_mode_node_ip_listens_on_the_node_address() {
    let c = three_nodes()
        .config(
            "default",
            BGPConfigurationSpec {
                bind_mode: Some(calico_api::spec::bgpconfig::BindMode::NodeIP),
                listen_port: Some(1179),
                ..Default::default()
            },
        )
        .run("node3");
    assert_eq!(c.identity.listen_address, Some(ip("10.0.0.3")));
    let listen = c.identity.speaker_config().and_then(|s| s.listen);
    assert_eq!(
        listen,
        Some("10.0.0.3:1179".parse().expect("socket address"))
    );
}

#[test]
fn bad_identity_input_is_reported() {
    let w = World::default()
        .node(with_as(node("zero", "10.0.0.1/24"), 0))
        .node(reflector(node("rr", "10.0.0.2/24"), "not-an-ip"));
    let zero = w.run("zero");
    assert!(!zero.identity.enabled);
    assert!(has_problem(&zero, "Node", "zero", "spec.bgp.asNumber"));
    let rr = w.run("rr");
    assert!(rr.identity.enabled);
    assert_eq!(rr.identity.cluster_id, None);
    assert!(rr.peers.is_empty(), "still a reflector: no mesh");
    assert!(has_problem(
        &rr,
        "Node",
        "rr",
        "spec.bgp.routeReflectorClusterID"
    ));
}

#[test]
fn resources_from_their_metadata() {
    let meta = ObjectMeta {
        name: "node9".into(),
        labels: Some([("rack".to_string(), "b".to_string())].into()),
        ..Default::default()
    };
    let n = Named::from_meta(&meta, NodeSpec::default());
    assert_eq!(n.name, "node9");
    assert_eq!(n.labels.get("rack").map(String::as_str), Some("b"));
}

#[test]
fn node_without_ipv4_runs_no_bgp() {
    let w = World::default()
        .node(Named::new("nobgp", NodeSpec::default()))
        .node(bgp_node("v6only", None, Some("fd00::1/64")))
        .node(node("other", "10.0.0.2/24"));
    for name in ["nobgp", "v6only"] {
        let c = w.run(name);
        assert!(!c.identity.enabled, "{name}");
        assert!(c.identity.speaker_config().is_none());
        assert!(c.peers.is_empty() && c.originations.is_empty(), "{name}");
    }
    // And they are no mesh peer of anybody over IPv4.
    assert!(w.run("other").peers.is_empty());
    let missing = w.run("ghost");
    assert!(!missing.identity.enabled);
    assert!(has_problem(&missing, "Node", "ghost", "metadata.name"));
}

// ---------------------------------------------------------------- mesh

#[test]
fn mesh_peers_every_other_node_and_the_lower_address_waits() {
    let w = three_nodes().node(node("node10", "10.0.0.10/24"));
    let c = w.run("node2");
    assert_eq!(
        names(&c),
        ["Mesh_10_0_0_1", "Mesh_10_0_0_10", "Mesh_10_0_0_3"]
    );
    let m = peer(&c, "Mesh_10_0_0_3");
    assert_eq!(m.kind, PeerKind::Mesh);
    assert_eq!(m.kind.as_str(), "node-to-node mesh");
    assert_eq!(m.source, None);
    let s = &m.settings;
    assert_eq!(s.address, ip("10.0.0.3"));
    assert_eq!((s.port, s.remote_as), (179, 64512));
    assert_eq!(
        s.local_address,
        Some(ip("10.0.0.2")),
        "source address <node IP>"
    );
    assert_eq!(s.multihop, Some(64), "Calico's template says multihop");
    assert_eq!(
        s.graceful_restart_time,
        Some(120),
        "BIRD's default restart time"
    );
    assert_eq!(s.password, None);
    assert!(!s.rr_client);
    // "10.0.0.3" > "10.0.0.2": node2 waits for node3.
    assert!(s.passive);
    assert!(!peer(&c, "Mesh_10_0_0_1").settings.passive);
    // Compared as strings, as confd does: "10.0.0.10" > "10.0.0.2" is false.
    assert!(!peer(&c, "Mesh_10_0_0_10").settings.passive);
    // Whatever the pair, exactly one side waits.
    let all = ["node1", "node2", "node3", "node10"];
    for a in all {
        for b in all.iter().filter(|b| **b != a) {
            let (ca, cb) = (w.run(a), w.run(b));
            let toward = |c: &Confd, other: &Confd| {
                let addr = other.identity.ipv4.map(IpAddr::V4);
                let p = c.peers.iter().find(|p| Some(p.settings.address) == addr);
                p.map(|p| p.settings.passive)
            };
            let (pa, pb) = (toward(&ca, &cb), toward(&cb, &ca));
            assert_eq!(pa.zip(pb).map(|(x, y)| x != y), Some(true), "{a} / {b}");
        }
    }
}

#[test]
fn mesh_uses_peer_as_listen_port_password_and_restart_time() {
    let c = World::default()
        .node(node("node1", "10.0.0.1/24"))
        .node(with_as(node("node2", "10.0.0.2/24"), 65002))
        .config(
            "default",
            BGPConfigurationSpec {
                node_mesh_password: Some(BGPPassword {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "bgp-secrets".into(),
                        key: "rr-password".into(),
                        optional: None,
                    }),
                }),
                node_mesh_max_restart_time: Some("5m".into()),
                ..Default::default()
            },
        )
        .config(
            "node.node2",
            BGPConfigurationSpec {
                listen_port: Some(1790),
                ..Default::default()
            },
        )
        .run("node1");
    let m = peer(&c, "Mesh_10_0_0_2");
    assert_eq!(m.settings.remote_as, 65002);
    assert_eq!(
        m.settings.port, 1790,
        "the peer node's listen port; no _port_ in mesh names"
    );
    assert_eq!(m.settings.password.as_deref(), Some("very-secret"));
    assert_eq!(m.settings.graceful_restart_time, Some(300));
}

#[test]
fn mesh_password_missing_leaves_the_mesh_out_with_a_problem() {
    let c = three_nodes()
        .config(
            "default",
            BGPConfigurationSpec {
                node_mesh_password: Some(BGPPassword {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "bgp-secrets".into(),
                        key: "nope".into(),
                        optional: None,
                    }),
                }),
                ..Default::default()
            },
        )
        .peer("tor", peer_ip("192.0.2.1", 65001))
        .run("node1");
    assert_eq!(names(&c), ["Global_192_0_2_1"], "the other peers stay");
    assert!(has_problem(
        &c,
        "BGPConfiguration",
        "default",
        "spec.nodeMeshPassword"
    ));
}

#[test]
fn mesh_off() {
    let c = three_nodes().no_mesh().run("node1");
    assert!(c.peers.is_empty());
    assert!(c.problems.is_empty());
}

#[test]
fn route_reflectors_skip_the_mesh_and_are_skipped_by_it() {
    let w = three_nodes().node(reflector(node("rr", "10.0.0.9/24"), "224.0.0.1"));
    assert!(
        w.run("rr").peers.is_empty(),
        "a reflector ignores the mesh setting"
    );
    assert_eq!(names(&w.run("node1")), ["Mesh_10_0_0_2", "Mesh_10_0_0_3"]);
}

#[test]
fn ipv6_mesh_between_dual_stack_nodes() {
    let c = World::default()
        .node(bgp_node("a", Some("10.0.0.1/24"), Some("fd00::1/64")))
        .node(bgp_node("b", Some("10.0.0.2/24"), Some("fd00::2/64")))
        .node(node("c", "10.0.0.3/24"))
        .run("a");
    assert_eq!(
        names(&c),
        ["Mesh_10_0_0_2", "Mesh_10_0_0_3", "Mesh_fd00__2"]
    );
    let v6 = peer(&c, "Mesh_fd00__2");
    assert_eq!(v6.settings.local_address, Some(ip("fd00::1")));
    assert!(v6.settings.passive, "\"fd00::2\" > \"fd00::1\"");
}

// ---------------------------------------------------------------- BGPPeer forms

#[test]
fn global_peer_applies_to_every_node() {
    let w = three_nodes()
        .no_mesh()
        .peer("tor", peer_ip("192.0.2.1", 65001));
    for n in ["node1", "node2", "node3"] {
        let c = w.run(n);
        assert_eq!(names(&c), ["Global_192_0_2_1"], "{n}");
        let p = &c.peers[0];
        assert_eq!(p.kind, PeerKind::Global);
        assert_eq!(p.kind.to_string(), "global");
        assert_eq!(p.source.as_deref(), Some("tor"));
        assert_eq!(p.settings.remote_as, 65001);
        assert_eq!(p.settings.port, 179);
        assert!(!p.settings.passive, "not a Calico node");
        assert!(!p.settings.rr_client);
        assert_eq!(p.settings.next_hop, SpeakerNextHop::Auto);
        assert_eq!(
            p.settings.local_address,
            c.identity.ipv4.map(IpAddr::V4),
            "UseNodeIP is the default"
        );
    }
}

#[test]
fn node_and_node_selector_peers_apply_to_their_nodes_only() {
    let w = three_nodes()
        .no_mesh()
        .peer(
            "node2-tor",
            BGPPeerSpec {
                node: "node2".into(),
                ..peer_ip("192.0.2.2", 65002)
            },
        )
        .peer(
            "rack-a",
            BGPPeerSpec {
                node_selector: "rack == 'a'".into(),
                ..peer_ip("192.0.2.10", 65010)
            },
        );
    let w = World {
        nodes: w
            .nodes
            .into_iter()
            .map(|n| {
                if n.name == "node3" {
                    n.with_labels([("rack", "a")])
                } else {
                    n
                }
            })
            .collect(),
        ..w
    };
    assert!(w.run("node1").peers.is_empty());
    let c2 = w.run("node2");
    assert_eq!(names(&c2), ["Node_192_0_2_2"]);
    assert_eq!(c2.peers[0].kind.as_str(), "node specific");
    assert_eq!(names(&w.run("node3")), ["Node_192_0_2_10"]);
}

#[test]
fn peer_selector_peers_with_matching_nodes_at_their_address_and_as() {
    let w = World::default()
        .no_mesh()
        .node(node("node1", "10.0.0.1/24").with_labels([("edge", "yes")]))
        .node(with_as(node("node2", "10.0.0.2/24"), 65002).with_labels([("edge", "yes")]))
        .node(node("node3", "10.0.0.3/24"))
        .config(
            "node.node2",
            BGPConfigurationSpec {
                listen_port: Some(1179),
                ..Default::default()
            },
        )
        .peer(
            "edges",
            BGPPeerSpec {
                peer_selector: "edge == 'yes'".into(),
                ..Default::default()
            },
        );
    let c = w.run("node3");
    assert_eq!(names(&c), ["Global_10_0_0_1", "Global_10_0_0_2_port_1179"]);
    let p2 = peer(&c, "Global_10_0_0_2_port_1179");
    assert_eq!((p2.settings.remote_as, p2.settings.port), (65002, 1179));
    // confd only makes peerings written by peerIP passive (the lower address waits), not those
    // found by selector: both sides connect, and BGP's collision handling keeps one session.
    assert!(!p2.settings.passive);
    // node1 matches its own peerSelector: it never peers with itself. Being picked, it also
    // peers back with every node (the BGPPeer is global): node3 as a node-specific peering,
    // node2 not again (the global peering to that address and port wins).
    let c1 = w.run("node1");
    assert_eq!(names(&c1), ["Global_10_0_0_2_port_1179", "Node_10_0_0_3"]);
    assert!(!peer(&c1, "Node_10_0_0_3").settings.passive);
    assert!(!peer(&c1, "Global_10_0_0_2_port_1179").settings.passive);
}

#[test]
fn peer_ip_with_port() {
    let c = World::default()
        .no_mesh()
        .node(bgp_node("node1", Some("10.0.0.1/24"), Some("fd00::1/64")))
        .peer("v4", peer_ip("192.0.2.1:1179", 65001))
        .peer("v6", peer_ip("[fd00::99]:1790", 65001))
        .peer("v6-bare", peer_ip("fd00::98", 65001))
        .run("node1");
    assert_eq!(
        names(&c),
        [
            "Global_192_0_2_1_port_1179",
            "Global_fd00__98",
            "Global_fd00__99_port_1790"
        ]
    );
    assert_eq!(peer(&c, "Global_192_0_2_1_port_1179").settings.port, 1179);
    let v6 = peer(&c, "Global_fd00__99_port_1790");
    assert_eq!(v6.settings.port, 1790);
    assert_eq!(v6.settings.local_address, Some(ip("fd00::1")));
}

#[test]
fn ipv6_peer_on_a_node_without_ipv6_is_reported() {
    let c = three_nodes()
        .no_mesh()
        .peer("v6", peer_ip("fd00::99", 65001))
        .run("node1");
    assert!(c.peers.is_empty());
    assert!(has_problem(&c, "BGPPeer", "v6", "spec.peerIP"));
}

#[test]
fn peer_ip_of_a_calico_node_uses_its_listen_port_and_is_passive_by_address() {
    let c = three_nodes()
        .no_mesh()
        .config(
            "node.node3",
            BGPConfigurationSpec {
                listen_port: Some(1179),
                ..Default::default()
            },
        )
        .peer("to-node3", peer_ip("10.0.0.3", 64512))
        .run("node1");
    let p = peer(&c, "Global_10_0_0_3_port_1179");
    assert_eq!(p.settings.port, 1179);
    assert!(p.settings.passive, "\"10.0.0.3\" > \"10.0.0.1\"");
}

#[test]
fn password_from_secret_and_missing_secret() {
    let secret = |key: &str| {
        Some(BGPPassword {
            secret_key_ref: Some(SecretKeySelector {
                name: "bgp-secrets".into(),
                key: key.into(),
                optional: None,
            }),
        })
    };
    let c = three_nodes()
        .no_mesh()
        .peer(
            "good",
            BGPPeerSpec {
                password: secret("rr-password"),
                ..peer_ip("192.0.2.1", 65001)
            },
        )
        .peer(
            "bad",
            BGPPeerSpec {
                password: secret("missing"),
                ..peer_ip("192.0.2.2", 65001)
            },
        )
        .run("node1");
    assert_eq!(names(&c), ["Global_192_0_2_1"]);
    assert_eq!(c.peers[0].settings.password.as_deref(), Some("very-secret"));
    assert!(has_problem(
        &c,
        "BGPPeer",
        "bad",
        "spec.password.secretKeyRef"
    ));
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
}

#[test]
fn optional_secret_may_be_missing() {
    let c = three_nodes()
        .no_mesh()
        .peer(
            "optional",
            BGPPeerSpec {
                password: Some(BGPPassword {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "bgp-secrets".into(),
                        key: "absent".into(),
                        optional: Some(true),
                    }),
                }),
                ..peer_ip("192.0.2.1", 65001)
            },
        )
        .run("node1");
    assert_eq!(names(&c), ["Global_192_0_2_1"]);
    assert_eq!(c.peers[0].settings.password, None);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
}

#[test]
fn never_peers_with_itself() {
    let c = three_nodes()
        .no_mesh()
        .peer("me", peer_ip("10.0.0.1", 64512))
        .peer(
            "all-nodes",
            BGPPeerSpec {
                peer_selector: "all()".into(),
                ..Default::default()
            },
        )
        .run("node1");
    assert_eq!(names(&c), ["Global_10_0_0_2", "Global_10_0_0_3"]);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
}

#[test]
fn global_peers_come_first_and_node_duplicates_are_suppressed() {
    let c = three_nodes()
        .no_mesh()
        .peer(
            "a-node-specific",
            BGPPeerSpec {
                node: "node1".into(),
                ..peer_ip("192.0.2.1", 65009)
            },
        )
        .peer("z-global", peer_ip("192.0.2.1", 65001))
        .run("node1");
    assert_eq!(names(&c), ["Global_192_0_2_1"]);
    assert_eq!(
        c.peers[0].settings.remote_as, 65001,
        "the global peering wins"
    );
    assert!(c.problems.is_empty(), "confd drops the duplicate silently");

    // A different port is another peering for BIRD, but the speaker has one per address.
    let c = three_nodes()
        .no_mesh()
        .peer(
            "other-port",
            BGPPeerSpec {
                node: "node1".into(),
                ..peer_ip("192.0.2.1:1179", 65001)
            },
        )
        .peer("tor", peer_ip("192.0.2.1", 65001))
        .run("node1");
    assert_eq!(names(&c), ["Global_192_0_2_1"]);
    assert!(has_problem(&c, "BGPPeer", "other-port", "spec"));
}

#[test]
fn explicit_peering_with_a_mesh_node_replaces_the_mesh_session() {
    let c = three_nodes()
        .peer(
            "n1-n2",
            BGPPeerSpec {
                node: "node1".into(),
                ..peer_ip("10.0.0.2", 64512)
            },
        )
        .run("node1");
    assert_eq!(names(&c), ["Mesh_10_0_0_3", "Node_10_0_0_2"]);
    assert!(has_problem(&c, "Node", "node1", "spec"));
}

// ---------------------------------------------------------------- route reflection

/// Calico's documented route reflector setup: mesh off, every node peers with the nodes
/// labelled `route-reflector: true`.
fn rr_world() -> World {
    World::default()
        .no_mesh()
        .node(node("a", "10.0.0.1/24"))
        .node(node("b", "10.0.0.2/24"))
        .node(with_as(node("ext", "10.0.0.3/24"), 65003))
        .node(reflector(node("rr1", "10.0.0.8/24"), "224.0.0.1"))
        .node(reflector(node("rr2", "10.0.0.9/24"), "224.0.0.1"))
        .peer(
            "peer-with-route-reflectors",
            BGPPeerSpec {
                node_selector: "all()".into(),
                peer_selector: "route-reflector == 'true'".into(),
                ..Default::default()
            },
        )
}

#[test]
fn clients_peer_with_the_reflectors() {
    let c = rr_world().run("a");
    assert_eq!(names(&c), ["Node_10_0_0_8", "Node_10_0_0_9"]);
    for p in &c.peers {
        assert!(!p.settings.rr_client, "a client does not reflect");
        assert!(!p.settings.passive, "node-specific peers always connect");
        assert_eq!(p.source.as_deref(), Some("peer-with-route-reflectors"));
    }
}

#[test]
fn reflector_marks_same_as_peers_outside_its_cluster_as_clients() {
    let c = rr_world().run("rr1");
    // Reverse peerings to every node the BGPPeer's nodeSelector picks, and rr2 directly.
    assert_eq!(
        names(&c),
        [
            "Node_10_0_0_1",
            "Node_10_0_0_2",
            "Node_10_0_0_3",
            "Node_10_0_0_9"
        ]
    );
    assert!(peer(&c, "Node_10_0_0_1").settings.rr_client);
    assert!(peer(&c, "Node_10_0_0_2").settings.rr_client);
    let ext = peer(&c, "Node_10_0_0_3");
    assert_eq!(ext.settings.remote_as, 65003);
    assert!(!ext.settings.rr_client, "another AS is never a client");
    assert!(
        !peer(&c, "Node_10_0_0_9").settings.rr_client,
        "same cluster id: not a client"
    );
    assert_eq!(c.identity.cluster_id, Some(Ipv4Addr::new(224, 0, 0, 1)));
}

#[test]
fn reflector_with_another_cluster_id_is_a_client() {
    let mut w = rr_world();
    w.nodes
        .push(reflector(node("rr3", "10.0.0.7/24"), "224.0.0.2"));
    let c = w.run("rr1");
    assert!(peer(&c, "Node_10_0_0_7").settings.rr_client);
}

#[test]
fn peering_to_a_calico_node_by_address_is_reversed() {
    let w = three_nodes().no_mesh().peer(
        "n1-to-n3",
        BGPPeerSpec {
            node: "node1".into(),
            ..peer_ip("10.0.0.3", 64512)
        },
    );
    assert_eq!(names(&w.run("node1")), ["Node_10_0_0_3"]);
    assert_eq!(
        names(&w.run("node3")),
        ["Node_10_0_0_1"],
        "node3 peers back"
    );
    assert!(w.run("node2").peers.is_empty());
    // Another AS than node3's: not node3, so no reverse peering.
    let w = three_nodes().no_mesh().peer(
        "n1-to-x",
        BGPPeerSpec {
            node: "node1".into(),
            ..peer_ip("10.0.0.3", 65099)
        },
    );
    assert!(w.run("node3").peers.is_empty());
}

// ---------------------------------------------------------------- per-peer settings

#[test]
fn session_settings_from_the_bgppeer() {
    let w = three_nodes()
        .no_mesh()
        .peer(
            "tuned",
            BGPPeerSpec {
                source_address: Some(SourceAddress::None),
                max_restart_time: Some("90s".into()),
                keepalive_time: Some("10s".into()),
                next_hop_mode: Some(NextHopMode::SelfMode),
                reachable_by: "10.0.0.254".into(),
                ..peer_ip("192.0.2.1", 65001)
            },
        )
        .peer(
            "keep",
            BGPPeerSpec {
                next_hop_mode: Some(NextHopMode::Keep),
                ..peer_ip("192.0.2.2", 65001)
            },
        )
        .peer(
            "legacy-ebgp",
            BGPPeerSpec {
                keep_original_next_hop: true,
                ..peer_ip("192.0.2.3", 65001)
            },
        )
        .peer(
            "legacy-ibgp",
            BGPPeerSpec {
                keep_original_next_hop: true,
                ..peer_ip("192.0.2.4", 64512)
            },
        );
    let c = w.run("node1");
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let t = peer(&c, "Global_192_0_2_1");
    assert_eq!(t.settings.local_address, None, "sourceAddress: None");
    assert_eq!(t.settings.graceful_restart_time, Some(90));
    assert_eq!(t.settings.keepalive, Some(10));
    assert_eq!(t.settings.next_hop, SpeakerNextHop::OurAddress);
    assert_eq!(t.reachable_by, Some(ip("10.0.0.254")));
    assert_eq!(
        peer(&c, "Global_192_0_2_2").settings.next_hop,
        SpeakerNextHop::Keep
    );
    assert_eq!(
        peer(&c, "Global_192_0_2_3").settings.next_hop,
        SpeakerNextHop::Keep
    );
    assert_eq!(
        peer(&c, "Global_192_0_2_4").settings.next_hop,
        SpeakerNextHop::Auto,
        "keepOriginalNextHop only applies to eBGP"
    );
}

#[test]
fn durations_round_to_seconds_and_bad_gateways_are_reported() {
    let c = three_nodes()
        .no_mesh()
        .peer(
            "round",
            BGPPeerSpec {
                max_restart_time: Some("1m30.6s".into()),
                keepalive_time: Some("1.4s".into()),
                ..peer_ip("192.0.2.1", 65001)
            },
        )
        .peer(
            "zero-keepalive",
            BGPPeerSpec {
                keepalive_time: Some("300ms".into()),
                ..peer_ip("192.0.2.2", 65001)
            },
        )
        .peer(
            "v6-gateway",
            BGPPeerSpec {
                reachable_by: "fd00::1".into(),
                ..peer_ip("192.0.2.3", 65001)
            },
        )
        .run("node1");
    assert_eq!(names(&c), ["Global_192_0_2_1"]);
    let s = &c.peers[0].settings;
    assert_eq!((s.graceful_restart_time, s.keepalive), (Some(91), Some(1)));
    assert!(has_problem(
        &c,
        "BGPPeer",
        "zero-keepalive",
        "spec.keepaliveTime"
    ));
    assert!(has_problem(&c, "BGPPeer", "v6-gateway", "spec.reachableBy"));
}

#[test]
fn input_order_does_not_matter() {
    let mut w = rr_world();
    w.peers.push(Named::new("tor", peer_ip("192.0.2.1", 65001)));
    w.pools = vec![pool("pods", "192.168.0.0/16", false)];
    w.blocks = vec![
        block("192.168.0.0/30", Some("rr1"), &[(1, "a")]),
        block("192.168.0.4/30", Some("a"), &[(1, "rr1")]),
    ];
    let before = w.run("rr1");
    w.nodes.reverse();
    w.peers.reverse();
    w.blocks.reverse();
    assert_eq!(w.run("rr1"), before);
}

#[test]
fn num_allowed_local_as_numbers_reaches_the_speaker() {
    let allowing = |n: Option<i32>| BGPPeerSpec {
        num_allowed_local_as_numbers: n,
        ..peer_ip("192.0.2.1", 65001)
    };
    for (n, allowed) in [(Some(2), 2), (Some(1), 1), (Some(0), 0), (None, 0)] {
        let c = three_nodes()
            .no_mesh()
            .peer("allow", allowing(n))
            .run("node1");
        assert_eq!(c.peers[0].settings.allow_local_as, allowed, "{n:?}");
        assert!(
            !has_problem(&c, "BGPPeer", "allow", "spec.numAllowedLocalASNumbers"),
            "{:?}",
            c.problems
        );
    }
    // A change of it is a change of the peer's settings: applied to the speaker.
    let before = three_nodes()
        .no_mesh()
        .peer("allow", allowing(None))
        .run("node1");
    let after = three_nodes()
        .no_mesh()
        .peer("allow", allowing(Some(1)))
        .run("node1");
    let ops = plan_peers(&before.peers, &after.peers);
    assert_eq!(ops.add_or_change.len(), 1);
    assert_eq!(ops.add_or_change[0].settings.allow_local_as, 1);
}

#[test]
fn unsupported_settings_are_reported() {
    let c = three_nodes()
        .no_mesh()
        .peer(
            "allow",
            BGPPeerSpec {
                ttl_security: Some(1),
                ..peer_ip("192.0.2.1", 65001)
            },
        )
        .peer(
            "local-as",
            BGPPeerSpec {
                local_as_number: Some(65100),
                ..peer_ip("192.0.2.2", 65001)
            },
        )
        .run("node1");
    assert_eq!(names(&c), ["Global_192_0_2_1"]);
    let p = &c.peers[0];
    assert_eq!(p.settings.multihop, Some(255), "GTSM sends with TTL 255");
    assert!(has_problem(&c, "BGPPeer", "allow", "spec.ttlSecurity"));
    assert!(has_problem(&c, "BGPPeer", "local-as", "spec.localASNumber"));
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_peers_are_reported_and_the_others_kept() {
    let c = three_nodes()
        .no_mesh()
        .peer("good", peer_ip("192.0.2.1", 65001))
        .peer(
            "bad-node-selector",
            BGPPeerSpec {
                node_selector: "rack == ".into(),
                ..peer_ip("192.0.2.2", 65001)
            },
        )
        .peer(
            "bad-peer-selector",
            BGPPeerSpec {
                peer_selector: "has(".into(),
                ..Default::default()
            },
        )
        .peer("as-zero", peer_ip("192.0.2.3", 0))
        .peer(
            "no-as",
            BGPPeerSpec {
                peer_ip: "192.0.2.4".into(),
                ..Default::default()
            },
        )
        .peer("bad-ip", peer_ip("192.0.2.300", 65001))
        .peer("nothing", BGPPeerSpec::default())
        .peer(
            "bad-restart",
            BGPPeerSpec {
                max_restart_time: Some("forever".into()),
                ..peer_ip("192.0.2.5", 65001)
            },
        )
        .peer(
            "restart-too-long",
            BGPPeerSpec {
                max_restart_time: Some("2h".into()),
                ..peer_ip("192.0.2.6", 65001)
            },
        )
        .run("node1");
    assert_eq!(names(&c), ["Global_192_0_2_1"]);
    for (resource, field) in [
        ("bad-node-selector", "spec.nodeSelector"),
        ("bad-peer-selector", "spec.peerSelector"),
        ("as-zero", "spec.asNumber"),
        ("no-as", "spec.asNumber"),
        ("bad-ip", "spec.peerIP"),
        ("nothing", "spec.peerIP"),
        ("bad-restart", "spec.maxRestartTime"),
        ("restart-too-long", "spec.maxRestartTime"),
    ] {
        assert!(
            has_problem(&c, "BGPPeer", resource, field),
            "{resource} {field}: {:?}",
            c.problems
        );
    }
    assert_eq!(c.problems.len(), 8, "each problem once: {:?}", c.problems);
    let shown = c.problems[0].to_string();
    assert!(shown.starts_with("BGPPeer \""), "{shown}");
}

#[test]
fn bad_node_address_is_reported() {
    let c = World::default()
        .node(node("node1", "10.0.0.1/24"))
        .node(node("broken", "10.0.0.300/24"))
        .node(bgp_node("bad-v6", Some("10.0.0.3/24"), Some("10.0.0.3/24")))
        .run("node1");
    assert_eq!(names(&c), ["Mesh_10_0_0_3"]);
    assert!(has_problem(&c, "Node", "broken", "spec.bgp.ipv4Address"));
    assert!(has_problem(&c, "Node", "bad-v6", "spec.bgp.ipv6Address"));
}

// ---------------------------------------------------------------- filters

fn rule(cidr: &str, op: Option<ApiOp>, action: FilterAction) -> BGPFilterRule {
    BGPFilterRule {
        cidr: cidr.into(),
        prefix_length: None,
        source: None,
        interface: String::new(),
        match_operator: op,
        peer_type: None,
        communities: None,
        as_path_prefix: Vec::new(),
        priority: None,
        action,
        operations: Vec::new(),
    }
}

fn filtered_peer(filters: Vec<Named<BGPFilterSpec>>, names: &[&str], asn: u32) -> Confd {
    let mut w = three_nodes().no_mesh().peer(
        "tor",
        BGPPeerSpec {
            filters: names.iter().map(|s| s.to_string()).collect(),
            ..peer_ip("192.0.2.1", asn)
        },
    );
    w.filters = filters;
    w.run("node1")
}

#[test]
fn filters_become_ordered_rules_across_filters_and_families() {
    use FilterAction::{Accept, Reject};
    let first = BGPFilterSpec {
        export_v4: vec![
            rule("10.10.0.0/16", Some(ApiOp::Equal), Accept),
            rule("10.0.0.0/8", Some(ApiOp::In), Reject),
        ],
        import_v6: vec![rule("fd00::/8", Some(ApiOp::NotIn), Reject)],
        ..Default::default()
    };
    let second = BGPFilterSpec {
        export_v4: vec![rule("", None, Reject)],
        ..Default::default()
    };
    let c = filtered_peer(
        vec![Named::new("first", first), Named::new("second", second)],
        &["first", "second"],
        65001,
    );
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let s = &c.peers[0].settings;
    let export = |p: &str| s.export.accepts(&net(p), true);
    assert!(export("10.10.0.0/16"), "first rule: Equal accept");
    assert!(!export("10.10.1.0/24"), "In 10/8 reject");
    assert!(
        !export("192.168.0.0/24"),
        "second filter: no cidr rejects all of IPv4"
    );
    assert!(export("2001:db8::/64"), "no IPv6 export rule");
    let import = |p: &str| s.import.accepts(&net(p), true);
    assert!(!import("2001:db8::/64"), "NotIn fd00::/8 rejects");
    assert!(import("fd00:1::/64"));
    assert!(import("10.0.0.0/8"), "import default is accept");
}

#[test]
fn not_equal_rules_keep_their_meaning() {
    use FilterAction::{Accept, Reject};
    // Accept everything but 10.1.0.0/16 exactly; that one goes on: rejected by the next rule.
    let spec = BGPFilterSpec {
        import_v4: vec![
            rule("10.1.0.0/16", Some(ApiOp::NotEqual), Accept),
            rule("10.0.0.0/8", Some(ApiOp::In), Reject),
        ],
        export_v4: vec![rule("10.2.0.0/16", Some(ApiOp::NotEqual), Reject)],
        ..Default::default()
    };
    let c = filtered_peer(vec![Named::new("ne", spec)], &["ne"], 65001);
    let s = &c.peers[0].settings;
    assert!(s.import.accepts(&net("10.1.1.0/24"), false));
    assert!(s.import.accepts(&net("192.0.2.0/24"), false));
    assert!(!s.import.accepts(&net("10.1.0.0/16"), true));
    assert!(!s.export.accepts(&net("10.1.0.0/16"), true));
    assert!(
        s.export.accepts(&net("10.2.0.0/16"), true),
        "no later rule: it passes"
    );
    assert!(!s.export.accepts(&net("10.3.0.0/16"), true));
    assert!(
        s.export.accepts(&net("2001:db8::/32"), true),
        "IPv6 untouched"
    );
}

#[test]
fn peer_type_rules_are_decided_per_peer() {
    use FilterAction::Reject;
    let spec = BGPFilterSpec {
        export_v4: vec![BGPFilterRule {
            peer_type: Some(PeerType::EBGP),
            ..rule("10.0.0.0/8", Some(ApiOp::In), Reject)
        }],
        ..Default::default()
    };
    let ebgp = filtered_peer(vec![Named::new("f", spec.clone())], &["f"], 65001);
    assert!(
        !ebgp.peers[0]
            .settings
            .export
            .accepts(&net("10.1.0.0/16"), true)
    );
    let ibgp = filtered_peer(vec![Named::new("f", spec)], &["f"], 64512);
    assert!(ibgp.peers[0].settings.export.rules.is_empty());
}

/// Whether `filter` lets a route to `prefix` through (no rule matching: it passes), and with
/// what attributes.
fn through(
    filter: &calico_bgp::policy::Filter,
    prefix: &str,
    from_peer: bool,
    attrs: &calico_bgp::wire::PathAttributes,
) -> Option<calico_bgp::wire::PathAttributes> {
    let prefix = net(prefix);
    filter
        .filter(&calico_bgp::policy::RouteView {
            prefix: &prefix,
            from_peer,
            attrs,
        })
        .map(|a| a.into_owned())
}

fn no_attrs() -> calico_bgp::wire::PathAttributes {
    calico_bgp::wire::PathAttributes::default()
}

#[test]
fn prefix_length_ranges_are_tested_as_calico_renders_them() {
    use FilterAction::{Accept, Reject};
    let length = |min, max| Some(PrefixLength { min, max });
    let spec = BGPFilterSpec {
        export_v4: vec![
            // 10/8{24,32}: /24s and longer in 10/8.
            BGPFilterRule {
                prefix_length: length(Some(24), None),
                ..rule("10.0.0.0/8", Some(ApiOp::In), Reject)
            },
            // A min below the CIDR's own length counts as the CIDR's: 172.16/12{12,16}.
            BGPFilterRule {
                prefix_length: length(Some(4), Some(16)),
                ..rule("172.16.0.0/12", Some(ApiOp::In), Reject)
            },
            // Not in 192.168/16{24,24}.
            BGPFilterRule {
                prefix_length: length(Some(24), Some(24)),
                ..rule("192.168.0.0/16", Some(ApiOp::NotIn), Accept)
            },
            rule("", None, Reject),
        ],
        ..Default::default()
    };
    let c = filtered_peer(vec![Named::new("f", spec)], &["f"], 65001);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let export = &c.peers[0].settings.export;
    let passes = |p: &str| through(export, p, false, &no_attrs()).is_some();
    assert!(!passes("10.1.2.0/24"));
    assert!(!passes("10.1.2.3/32"));
    assert!(passes("10.1.0.0/16"), "shorter than 24: not in the range");
    assert!(!passes("172.16.0.0/12"));
    assert!(!passes("172.17.0.0/16"));
    assert!(passes("172.17.1.0/24"), "longer than 16");
    assert!(
        !passes("192.168.1.0/24"),
        "in 192.168/16{{24,24}}: the last rule"
    );
    assert!(passes("192.168.1.0/25"), "not a /24");
    let rules = &export.rules;
    assert_eq!(
        rules.iter().map(|r| r.prefix_length).collect::<Vec<_>>(),
        [Some((24, 32)), Some((12, 16)), Some((24, 24)), None]
    );
}

#[test]
fn prefix_length_with_equal_or_not_equal_does_what_birds_set_comparison_does() {
    use FilterAction::Reject;
    let length = Some(PrefixLength {
        min: Some(16),
        max: Some(24),
    });
    let spec = BGPFilterSpec {
        export_v4: vec![
            // `net = [ 10.0.0.0/16{16,24} ]` is never true in BIRD: never matches.
            BGPFilterRule {
                prefix_length: length.clone(),
                ..rule("10.0.0.0/16", Some(ApiOp::Equal), Reject)
            },
            rule("192.0.2.0/24", Some(ApiOp::Equal), FilterAction::Accept),
            // `net != [ 172.16.0.0/16{16,24} ]` is always true: every IPv4 route.
            BGPFilterRule {
                prefix_length: length,
                ..rule("172.16.0.0/16", Some(ApiOp::NotEqual), Reject)
            },
        ],
        ..Default::default()
    };
    let c = filtered_peer(vec![Named::new("f", spec)], &["f"], 65001);
    let export = &c.peers[0].settings.export;
    assert_eq!(export.rules.len(), 2, "the Equal rule is left out");
    assert!(export.accepts(&net("192.0.2.0/24"), false));
    for p in ["10.0.0.0/16", "172.16.0.0/16", "198.51.100.0/24"] {
        assert!(!export.accepts(&net(p), true), "{p}: the NotEqual rule");
    }
    assert!(
        export.accepts(&net("2001:db8::/32"), true),
        "IPv6 untouched"
    );
    assert!(has_problem(
        &c,
        "BGPFilter",
        "f",
        "spec.exportV4[0].prefixLength"
    ));
    assert!(has_problem(
        &c,
        "BGPFilter",
        "f",
        "spec.exportV4[2].prefixLength"
    ));
}

#[test]
fn source_communities_and_as_path_prefix_are_tested_exactly() {
    use FilterAction::{Accept, Reject};
    use calico_api::spec::bgpfilter::{CommunityMatch, MatchSource};
    use calico_bgp::wire::{AsPath, LargeCommunity};
    let spec = BGPFilterSpec {
        export_v4: vec![
            // Routes learnt from peers in 10/8 are not passed on; our own are.
            BGPFilterRule {
                source: Some(MatchSource::RemotePeers),
                ..rule("10.0.0.0/8", Some(ApiOp::In), Reject)
            },
        ],
        import_v4: vec![
            BGPFilterRule {
                communities: Some(CommunityMatch {
                    values: vec!["65000:1".into()],
                }),
                ..rule("", None, Reject)
            },
            BGPFilterRule {
                communities: Some(CommunityMatch {
                    values: vec!["65000:7:9".into()],
                }),
                ..rule("", None, Reject)
            },
            BGPFilterRule {
                as_path_prefix: vec![ASNumber(65001), ASNumber(65002)],
                ..rule("", None, Reject)
            },
            rule("", None, Accept),
        ],
        ..Default::default()
    };
    let c = filtered_peer(vec![Named::new("f", spec)], &["f"], 65001);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let s = &c.peers[0].settings;
    assert!(through(&s.export, "10.1.0.0/16", false, &no_attrs()).is_some());
    assert!(through(&s.export, "10.1.0.0/16", true, &no_attrs()).is_none());
    assert!(through(&s.export, "192.0.2.0/24", true, &no_attrs()).is_some());

    let with = |communities: Vec<u32>, large: Vec<LargeCommunity>, path: &[u32]| {
        calico_bgp::wire::PathAttributes {
            communities,
            large_communities: large,
            as_path: Some(AsPath::sequence(path.to_vec())),
            ..no_attrs()
        }
    };
    let large = LargeCommunity {
        global_admin: 65000,
        local_data_1: 7,
        local_data_2: 9,
    };
    let import = |a: &calico_bgp::wire::PathAttributes| {
        through(&s.import, "192.0.2.0/24", true, a).is_some()
    };
    assert!(import(&with(vec![65000 << 16 | 2], vec![], &[65001])));
    assert!(!import(&with(vec![65000 << 16 | 1], vec![], &[65001])));
    assert!(!import(&with(vec![], vec![large], &[65001])));
    assert!(!import(&with(vec![], vec![], &[65001, 65002, 65003])));
    assert!(import(&with(vec![], vec![], &[65001, 65003, 65002])));
}

#[test]
fn operations_change_what_the_rule_accepts() {
    use FilterAction::Accept;
    use calico_api::spec::bgpfilter::{AddCommunity, FilterOperation, PrependASPath, SetPriority};
    use calico_bgp::wire::{AsPath, LargeCommunity};
    let spec = BGPFilterSpec {
        export_v4: vec![BGPFilterRule {
            operations: vec![
                FilterOperation {
                    add_community: Some(AddCommunity {
                        value: "65001:100".into(),
                    }),
                    ..Default::default()
                },
                FilterOperation {
                    add_community: Some(AddCommunity {
                        value: "65001:7:9".into(),
                    }),
                    ..Default::default()
                },
                FilterOperation {
                    prepend_as_path: Some(PrependASPath {
                        prefix: vec![ASNumber(65010), ASNumber(65011)],
                    }),
                    ..Default::default()
                },
                FilterOperation {
                    set_priority: Some(SetPriority { value: 512 }),
                    ..Default::default()
                },
            ],
            ..rule("10.0.0.0/8", Some(ApiOp::In), Accept)
        }],
        ..Default::default()
    };
    let c = filtered_peer(vec![Named::new("f", spec)], &["f"], 65001);
    let export = &c.peers[0].settings.export;
    let out = through(export, "10.1.0.0/16", false, &no_attrs()).expect("accepted");
    assert_eq!(out.communities, [65001 << 16 | 100]);
    assert_eq!(
        out.large_communities,
        [LargeCommunity {
            global_admin: 65001,
            local_data_1: 7,
            local_data_2: 9,
        }]
    );
    assert_eq!(out.as_path, Some(AsPath::sequence([65010, 65011])));
    let other = through(export, "192.0.2.0/24", false, &no_attrs()).expect("passes");
    assert_eq!(other, no_attrs(), "outside the rule: unchanged");
    // Only the kernel metric cannot be set.
    assert_eq!(
        c.problems
            .iter()
            .map(|p| p.field.as_str())
            .collect::<Vec<_>>(),
        ["spec.exportV4[0].operations[3].setPriority"]
    );
}

#[test]
fn interface_errs_towards_fewer_routes_and_priority_never_matches() {
    use FilterAction::{Accept, Reject};
    let spec = BGPFilterSpec {
        export_v4: vec![
            // Accept 172.16/12 routes out of eth0: left out.
            BGPFilterRule {
                interface: "eth0".into(),
                ..rule("172.16.0.0/12", Some(ApiOp::In), Accept)
            },
            rule("172.16.0.0/12", Some(ApiOp::In), Reject),
            // Reject 10/8 routes out of eth*: every learnt 10/8 route; our own have no
            // interface.
            BGPFilterRule {
                interface: "eth*".into(),
                ..rule("10.0.0.0/8", Some(ApiOp::In), Reject)
            },
            // Routes of priority 512: none has a kernel metric.
            BGPFilterRule {
                priority: Some(512),
                ..rule("192.0.2.0/24", Some(ApiOp::In), Reject)
            },
        ],
        ..Default::default()
    };
    let c = filtered_peer(vec![Named::new("f", spec)], &["f"], 65001);
    let export = &c.peers[0].settings.export;
    assert_eq!(export.rules.len(), 2);
    let passes = |p: &str, from_peer| through(export, p, from_peer, &no_attrs()).is_some();
    assert!(!passes("172.16.1.0/24", false), "the next rule rejects");
    assert!(!passes("10.1.0.0/16", true), "learnt: widened reject");
    assert!(
        passes("10.1.0.0/16", false),
        "ours: no interface, as in BIRD"
    );
    assert!(passes("192.0.2.0/24", true), "no kernel metric");
    assert!(has_problem(
        &c,
        "BGPFilter",
        "f",
        "spec.exportV4[0].interface"
    ));
    assert!(has_problem(
        &c,
        "BGPFilter",
        "f",
        "spec.exportV4[2].interface"
    ));
    assert!(has_problem(
        &c,
        "BGPFilter",
        "f",
        "spec.exportV4[3].priority"
    ));
    assert_eq!(c.problems.len(), 3, "{:?}", c.problems);
}

#[test]
fn bad_rules_are_left_out() {
    use FilterAction::{Accept, Reject};
    use calico_api::spec::bgpfilter::CommunityMatch;
    let spec = BGPFilterSpec {
        import_v4: vec![BGPFilterRule {
            communities: Some(CommunityMatch {
                values: vec!["65000:99999".into()],
            }),
            ..rule("10.0.0.0/8", Some(ApiOp::In), Reject)
        }],
        import_v6: vec![
            rule("not-a-cidr", Some(ApiOp::In), Reject),
            rule("10.0.0.0/8", Some(ApiOp::In), Reject),
            rule("fd00::/8", None, Reject),
            rule("", Some(ApiOp::In), Reject),
            rule("fd00::/8", Some(ApiOp::In), Accept),
        ],
        ..Default::default()
    };
    let c = filtered_peer(vec![Named::new("f", spec)], &["f"], 65001);
    let import = &c.peers[0].settings.import;
    assert!(import.accepts(&net("10.1.0.0/16"), true));
    assert!(
        import.accepts(&net("fd00:1::/64"), false),
        "only the valid IPv6 rule is left"
    );
    assert_eq!(import.rules.len(), 1);
    for field in [
        "spec.importV4[0].communities.values[0]",
        "spec.importV6[0].cidr",
        "spec.importV6[1].cidr",
        "spec.importV6[2].matchOperator",
        "spec.importV6[3].cidr",
    ] {
        assert!(
            has_problem(&c, "BGPFilter", "f", field),
            "{field}: {:?}",
            c.problems
        );
    }
}

#[test]
fn missing_filter_is_reported_and_the_peer_kept() {
    let c = filtered_peer(Vec::new(), &["nope"], 65001);
    assert_eq!(names(&c), ["Global_192_0_2_1"]);
    assert!(has_problem(&c, "BGPPeer", "tor", "spec.filters[0]"));
}

// ---------------------------------------------------------------- originations

/// A block of `cidr` (a /30 here) with affinity `host:<affinity>` and allocations by ordinal
/// naming their node.
fn block(cidr: &str, affinity: Option<&str>, allocations: &[(usize, &str)]) -> BlockInfo {
    let n = net(cidr);
    let size = 1usize << (u32::from(n.max_prefix_len()) - u32::from(n.prefix_len()));
    let mut slots = vec!["null".to_string(); size];
    let mut attributes = Vec::new();
    for (i, (ord, node)) in allocations.iter().enumerate() {
        slots[*ord] = i.to_string();
        attributes.push(format!(
            r#"{{"handle_id":"h{i}","secondary":{{"node":"{node}"}}}}"#
        ));
    }
    let free: Vec<String> = (0..size)
        .filter(|o| !allocations.iter().any(|(a, _)| a == o))
        .map(|o| o.to_string())
        .collect();
    let affinity = affinity.map_or("null".to_string(), |a| format!("\"host:{a}\""));
    let json = format!(
        r#"{{"cidr":"{cidr}","affinity":{affinity},"allocations":[{}],"unallocated":[{}],"attributes":[{}]}}"#,
        slots.join(","),
        free.join(","),
        attributes.join(",")
    );
    BlockRouting::from_json(json.as_bytes())
        .expect("test block")
        .info()
}

fn pool(name: &str, cidr: &str, disable_export: bool) -> Named<IPPoolSpec> {
    Named::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            disable_bgp_export: disable_export,
            ..Default::default()
        },
    )
}

fn prefixes(c: &Confd) -> Vec<(String, OriginKind)> {
    c.originations
        .iter()
        .map(|o| (o.prefix.to_string(), o.kind))
        .collect()
}

#[test]
fn affine_blocks_and_borrowed_addresses() {
    let mut w = three_nodes();
    w.pools = vec![pool("pods", "192.168.0.0/16", false)];
    w.blocks = vec![
        // node1's block; node2 borrowed .2 from it.
        block(
            "192.168.0.0/30",
            Some("node1"),
            &[(1, "node1"), (2, "node2")],
        ),
        // node2's block; node1 borrowed .5.
        block(
            "192.168.0.4/30",
            Some("node2"),
            &[(1, "node1"), (2, "node2")],
        ),
        // No affinity left; node1 still uses .9.
        block("192.168.0.8/30", None, &[(1, "node1")]),
        // Outside every pool: BIRD's export filter only takes pool routes.
        block("10.99.0.0/30", Some("node1"), &[]),
    ];
    let c = w.run("node1");
    use OriginKind::{Block, Borrowed};
    assert_eq!(
        prefixes(&c),
        [
            ("192.168.0.0/30".to_string(), Block),
            ("192.168.0.5/32".to_string(), Borrowed),
            ("192.168.0.9/32".to_string(), Borrowed),
        ]
    );
    assert_eq!(
        prefixes(&w.run("node2")),
        [
            ("192.168.0.2/32".to_string(), Borrowed),
            ("192.168.0.4/30".to_string(), Block),
        ]
    );
}

#[test]
fn pools_with_bgp_export_disabled_originate_nothing() {
    let mut w = three_nodes();
    w.pools = vec![
        pool("exported", "192.168.0.0/24", false),
        pool("private", "192.168.1.0/24", true),
    ];
    w.blocks = vec![
        block("192.168.0.0/30", Some("node1"), &[]),
        block("192.168.1.0/30", Some("node1"), &[]),
        block("192.168.1.4/30", Some("node2"), &[(0, "node1")]),
    ];
    assert_eq!(
        prefixes(&w.run("node1")),
        [("192.168.0.0/30".to_string(), OriginKind::Block)]
    );
}

#[test]
fn ipv6_blocks_need_an_ipv6_address() {
    let mut w = World::default()
        .node(bgp_node("dual", Some("10.0.0.1/24"), Some("fd00::1/64")))
        .node(node("v4only", "10.0.0.2/24"));
    w.pools = vec![pool("v6", "fd00:10::/64", false)];
    w.blocks = vec![
        block("fd00:10::/126", Some("dual"), &[]),
        block("fd00:10::4/126", Some("v4only"), &[]),
    ];
    assert_eq!(
        prefixes(&w.run("dual")),
        [("fd00:10::/126".to_string(), OriginKind::Block)]
    );
    assert!(w.run("v4only").originations.is_empty());
}

fn cidrs(list: &[&str]) -> Vec<ServiceIPBlock> {
    list.iter()
        .map(|c| ServiceIPBlock {
            cidr: c.to_string(),
        })
        .collect()
}

#[test]
fn service_cidrs_with_communities() {
    let global = BGPConfigurationSpec {
        service_cluster_ips: cidrs(&["10.96.0.0/12"]),
        service_external_ips: cidrs(&["203.0.113.0/24", "bogus"]),
        service_load_balancer_ips: cidrs(&["198.51.100.0/24"]),
        communities: vec![Community {
            name: "svc".into(),
            value: "65001:100".into(),
        }],
        prefix_advertisements: vec![
            PrefixAdvertisement {
                cidr: "10.96.0.0/12".into(),
                communities: vec!["svc".into(), "65001:7:9".into()],
            },
            PrefixAdvertisement {
                cidr: "0.0.0.0/0".into(),
                communities: vec!["65000:1".into(), "undefined".into()],
            },
        ],
        ..Default::default()
    };
    let w = three_nodes().config("default", global);
    let c = w.run("node1");
    use OriginKind::*;
    assert_eq!(
        prefixes(&c),
        [
            ("10.96.0.0/12".to_string(), ServiceClusterIP),
            ("198.51.100.0/24".to_string(), ServiceLoadBalancerIP),
            ("203.0.113.0/24".to_string(), ServiceExternalIP),
        ]
    );
    let cluster = &c.originations[0];
    assert_eq!(cluster.communities, [65000 << 16 | 1, 65001 << 16 | 100]);
    assert_eq!(
        cluster.large_communities,
        [LargeCommunity {
            global_admin: 65001,
            local_data_1: 7,
            local_data_2: 9
        }]
    );
    assert_eq!(c.originations[1].communities, [65000 << 16 | 1]);
    assert!(has_problem(
        &c,
        "BGPConfiguration",
        "default",
        "spec.serviceExternalIPs[1].cidr"
    ));
    assert!(has_problem(
        &c,
        "BGPConfiguration",
        "default",
        "spec.prefixAdvertisements[1].communities[1]"
    ));
}

#[test]
fn node_prefix_advertisements_replace_the_clusters_and_excluded_nodes_advertise_no_services() {
    let mut w = three_nodes()
        .config(
            "default",
            BGPConfigurationSpec {
                service_cluster_ips: cidrs(&["10.96.0.0/12"]),
                prefix_advertisements: vec![PrefixAdvertisement {
                    cidr: "10.96.0.0/12".into(),
                    communities: vec!["65000:1".into()],
                }],
                ..Default::default()
            },
        )
        .config(
            "node.node1",
            BGPConfigurationSpec {
                prefix_advertisements: vec![PrefixAdvertisement {
                    cidr: "10.0.0.0/8".into(),
                    communities: vec!["65000:2".into()],
                }],
                ..Default::default()
            },
        );
    assert_eq!(
        w.run("node1").originations[0].communities,
        [65000 << 16 | 2]
    );
    assert_eq!(
        w.run("node2").originations[0].communities,
        [65000 << 16 | 1]
    );
    w.nodes[1] = w.nodes[1].clone().with_labels([(
        "node.kubernetes.io/exclude-from-external-load-balancers",
        "true",
    )]);
    assert!(w.run("node2").originations.is_empty());
}

// ---------------------------------------------------------------- plan

#[test]
fn plan_touches_only_what_changed() {
    let before = three_nodes()
        .node(node("node4", "10.0.0.4/24"))
        .peer("tor", peer_ip("192.0.2.1", 65001))
        .run("node1")
        .peers;
    // node4 leaves, node5 joins, the ToR's AS changes; node2 and node3 are untouched.
    let after = three_nodes()
        .node(node("node5", "10.0.0.5/24"))
        .peer("tor", peer_ip("192.0.2.1", 65002))
        .run("node1")
        .peers;
    let ops = plan_peers(&before, &after);
    let changed: Vec<&str> = ops.add_or_change.iter().map(|p| p.name.as_str()).collect();
    let removed: Vec<&str> = ops.remove.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(changed, ["Global_192_0_2_1", "Mesh_10_0_0_5"]);
    assert_eq!(removed, ["Mesh_10_0_0_4"]);
    assert!(plan_peers(&after, &after).is_empty());
    let from_nothing = plan_peers(&[], &after);
    assert_eq!(from_nothing.add_or_change.len(), after.len());
    assert!(from_nothing.remove.is_empty());
}

#[test]
fn plan_originations_by_prefix() {
    let mut w = three_nodes().config(
        "default",
        BGPConfigurationSpec {
            service_cluster_ips: cidrs(&["10.96.0.0/12", "10.200.0.0/16"]),
            ..Default::default()
        },
    );
    let before = w.run("node1").originations;
    w.configs[0].spec = BGPConfigurationSpec {
        service_cluster_ips: cidrs(&["10.96.0.0/12", "10.201.0.0/16"]),
        prefix_advertisements: vec![PrefixAdvertisement {
            cidr: "10.96.0.0/12".into(),
            communities: vec!["65000:1".into()],
        }],
        ..Default::default()
    };
    let after = w.run("node1").originations;
    let ops = plan_originations(&before, &after);
    let originate: Vec<String> = ops.originate.iter().map(|o| o.prefix.to_string()).collect();
    assert_eq!(
        originate,
        ["10.96.0.0/12", "10.201.0.0/16"],
        "new communities, and new (in prefix order)"
    );
    assert_eq!(ops.withdraw, [net("10.200.0.0/16")]);
    assert_eq!(plan_originations(&after, &after), OriginationOps::default());
}
