//! calico-node with the BGP backend, as a process inside a test-made host namespace: a change of
//! BGPConfiguration `listenPort` moves the speaker's listener while calico-node runs.

use std::time::{Duration, Instant};

use calico_api::spec::bgpconfig::BGPConfigurationSpec;
use calico_api::{ObjectMeta, Resource, Spec};
use calico_datastore::client::Client;

mod support;

use support::{Host, Running, host, open_store, runtime};

/// The TCP ports listened on in the host namespace, from `ss`.
fn listening_ports(h: &Host) -> Vec<u16> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", h.ns.name(), "ss", "-ltnH"])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit(':').next()?.parse().ok())
        .collect()
}

/// Polls the listening ports until `ok` accepts them (20 s at most).
fn wait_ports(h: &Host, what: &str, ok: impl Fn(&[u16]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ports = listening_ports(h);
        if ok(&ports) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: listening on {ports:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_listen_port_change_moves_the_bgp_listener() {
    let h = host(64);
    let _node = Running::spawn(h.command(&[("CALICO_NETWORKING_BACKEND", "bird")]));
    wait_ports(&h, "BGP on port 179", |p| p.contains(&179));

    let store = open_store(&h.datastore());
    runtime().block_on(async {
        let spec = BGPConfigurationSpec {
            listen_port: Some(1179),
            ..Default::default()
        };
        let meta = ObjectMeta {
            name: "default".into(),
            ..Default::default()
        };
        Client::new(store)
            .create(Resource::new(meta, Spec::BGPConfiguration(spec)))
            .await
            .expect("create BGPConfiguration");
    });
    wait_ports(&h, "BGP moved to port 1179", |p| {
        p.contains(&1179) && !p.contains(&179)
    });
}
