//! calico-node with the BGP backend, as a process inside a test-made host namespace, peering with
//! BIRD 2 in the namespace at the other end of its link: the block it originates carries the
//! communities BGPConfiguration `prefixAdvertisements` give it, and a change of them reaches BIRD.

use std::process::Command;
use std::time::{Duration, Instant};

use calico_api::spec::bgpconfig::{BGPConfigurationSpec, Community, PrefixAdvertisement};
use calico_api::spec::bgppeer::BGPPeerSpec;
use calico_api::{ObjectMeta, Resource, Spec};
use calico_datastore::client::Client;
use calico_testutil::netns::require_binary;

mod support;

use support::{Host, Running, host, open_store, runtime};

/// `prefixAdvertisements` for the pool with these communities (names or values); `gold` is
/// defined as 65001:100.
fn configuration(communities: &[&str]) -> Resource {
    let spec = BGPConfigurationSpec {
        communities: vec![Community {
            name: "gold".into(),
            value: "65001:100".into(),
        }],
        prefix_advertisements: vec![PrefixAdvertisement {
            cidr: "198.19.0.0/16".into(),
            communities: communities.iter().map(|c| c.to_string()).collect(),
        }],
        ..Default::default()
    };
    let meta = ObjectMeta {
        name: "default".into(),
        ..Default::default()
    };
    Resource::new(meta, Spec::BGPConfiguration(spec))
}

/// BIRD in the peer namespace, iBGP (AS 64512) with the host, waiting for it to connect.
fn start_bird(h: &Host, dir: &tempfile::TempDir) -> (Running, String) {
    let bird = require_binary("bird", "bird2").unwrap_or_else(|e| panic!("{e}"));
    let conf = dir.path().join("bird.conf");
    let socket = dir.path().join("bird.ctl").to_string_lossy().into_owned();
    std::fs::write(
        &conf,
        "log stderr all;
router id 198.18.66.1;
protocol device { scan time 1; }
protocol bgp node {
  local 198.18.66.1 as 64512;
  neighbor 198.18.66.2 as 64512;
  direct;
  passive on;
  hold time 3;
  ipv4 { import all; export none; };
}
",
    )
    .expect("bird.conf");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", h.peer.name()])
        .arg(bird)
        .args(["-f", "-c"])
        .arg(&conf)
        .args(["-s", &socket, "-P"])
        .arg(dir.path().join("bird.pid"));
    (Running::spawn(cmd), socket)
}

/// `birdc show route all` for the routes inside the pool (this host's block), once `ok`
/// accepts it (20 s at most).
fn wait_bird(socket: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let birdc = require_binary("birdc", "bird2").unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(&birdc)
            .args([
                "-s",
                socket,
                "show",
                "route",
                "where",
                "net ~ 198.19.0.0/16",
                "all",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if ok(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "{what}: BIRD shows\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `BGP.community` and `BGP.large_community` lines, spaces removed.
fn communities(shown: &str) -> (Option<String>, Option<String>) {
    let attribute = |name: &str| {
        shown.lines().find_map(|l| {
            l.trim()
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|v| v.split_whitespace().collect::<String>())
        })
    };
    (attribute("BGP.community"), attribute("BGP.large_community"))
}

#[test]
fn originated_blocks_carry_the_configured_communities() {
    let h = host(66);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_bird, socket) = start_bird(&h, &dir);
    let client = Client::new(open_store(&h.datastore()));
    let rt = runtime();
    rt.block_on(async {
        let peer = BGPPeerSpec {
            peer_ip: "198.18.66.1".into(),
            as_number: Some(64512),
            ..Default::default()
        };
        let meta = ObjectMeta {
            name: "bird".into(),
            ..Default::default()
        };
        client
            .create(Resource::new(meta, Spec::BGPPeer(peer)))
            .await
            .expect("create BGPPeer");
        client
            .create(configuration(&["gold", "65001:7:9"]))
            .await
            .expect("create BGPConfiguration");
    });
    let _node = Running::spawn(h.command(&[("CALICO_NETWORKING_BACKEND", "bird")]));

    let shown = wait_bird(&socket, "the block with communities", |out| {
        communities(out).0.is_some()
    });
    assert_eq!(
        communities(&shown),
        (Some("(65001,100)".into()), Some("(65001,7,9)".into())),
        "{shown}"
    );

    rt.block_on(async {
        client
            .apply(configuration(&["65001:200"]))
            .await
            .expect("update BGPConfiguration");
    });
    let shown = wait_bird(&socket, "the block with the new community", |out| {
        communities(out).0.as_deref() == Some("(65001,200)")
    });
    assert_eq!(communities(&shown).1, None, "{shown}");
}
