//! Moving the listener of a running `calico-bgp-speaker` process (what calico-node does when
//! BGPConfiguration `listenPort` changes), on a LAN of network namespaces (root): peers reach
//! it at the new port and no longer at the old one, a session already established stays up,
//! and a failed move keeps the old listener.

mod support;

use std::net::Ipv4Addr;

use calico_testutil::netns::TestNetns;
use support::exec;
use support::lan::Lan;
use support::ours::{self, Ours};

/// Opens a TCP connection from `ns` to `to`:`port` and closes it; the error if it could not.
fn connect(ns: &TestNetns, to: Ipv4Addr, port: u16) -> Result<String, String> {
    exec(
        ns,
        &[
            "timeout",
            "10",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{to}/{port}"),
        ],
    )
}

#[test]
fn the_listener_moves_without_dropping_sessions() {
    let lan = Lan::new("lmove", 53);
    let (n1, n2, n3, n4) = (lan.node(1), lan.node(2), lan.node(3), lan.node(4));
    let passive = |address| {
        let mut p = ours::peer(address, 64512);
        p["passive"] = serde_json::json!(true);
        p
    };
    let mut a = Ours::start(
        "ours1",
        &n1.ns,
        &ours::config(
            64512,
            n1.addr,
            vec![passive(n2.addr), passive(n3.addr)],
            &[],
        ),
    );
    let b = Ours::start(
        "ours2",
        &n2.ns,
        &ours::config(64512, n2.addr, vec![ours::peer(n1.addr, 64512)], &[]),
    );
    let before = a.wait_established(n2.addr);

    assert_eq!(a.listen("0.0.0.0:1179"), Ok(Some("0.0.0.0:1179".into())));
    // Port 179 is closed now; 1179 takes connections (this one from no peer: closed unread).
    let refused = connect(&n4.ns, n1.addr, 179).expect_err("port 179 still open");
    assert!(refused.contains("refused"), "{refused}");
    connect(&n4.ns, n1.addr, 1179).expect("port 1179 open");

    // A peer dialling the new port gets its session.
    let mut to_a = ours::peer(n1.addr, 64512);
    to_a["port"] = serde_json::json!(1179);
    let mut c = Ours::start(
        "ours3",
        &n3.ns,
        &ours::config(64512, n3.addr, vec![to_a], &[]),
    );
    a.wait_established(n3.addr);
    c.wait_established(n1.addr);

    // A move that cannot be made (an address the node does not have) keeps the listener.
    let failed = a
        .listen("198.18.53.99:1180")
        .expect_err("bound an address not ours");
    assert!(failed.contains("198.18.53.99:1180"), "{failed}");
    connect(&n4.ns, n1.addr, 1179).expect("port 1179 still open");
    // No listener at all is refused while peers wait to be connected to.
    let failed = a
        .listen("none")
        .expect_err("no listener with passive peers");
    assert!(failed.contains("passive"), "{failed}");
    connect(&n4.ns, n1.addr, 1179).expect("port 1179 still open");

    // The session from before every move is the same one, still up.
    let after = a.peer_status(n2.addr);
    assert_eq!(after["state"], "Established", "{after}");
    assert_eq!(after["since_unix_ms"], before["since_unix_ms"], "{after}");
    drop(b);
}
