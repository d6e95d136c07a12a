//! Links: veth pairs across namespaces, attribute changes, bridges, deletion. Needs root.

mod common;

use calico_netlink::NetlinkError;
use common::TestNs;

#[test]
fn veth_peer_is_created_straight_in_a_second_namespace() {
    let a = TestNs::new("veth-a");
    let b = TestNs::new("veth-b");
    let mut nl_a = a.netlink();
    let mut nl_b = b.netlink();

    nl_a.add_veth("va0", "vb0", Some(&b.ns), Some(1400))
        .expect("add veth with peer in b");

    let local = nl_a
        .link_by_name("va0")
        .expect("get va0")
        .expect("va0 exists in a");
    assert_eq!(local.kind.as_deref(), Some("veth"));
    assert_eq!(local.mtu, 1400);
    assert!(
        local.link_netnsid.is_some(),
        "the peer lives in another namespace: {local:?}"
    );
    assert!(
        nl_a.link_by_name("vb0").expect("get vb0 in a").is_none(),
        "the peer must not appear in a"
    );

    let peer = nl_b
        .link_by_name("vb0")
        .expect("get vb0")
        .expect("vb0 exists in b");
    assert_eq!(peer.kind.as_deref(), Some("veth"));
    assert_eq!(peer.mtu, 1400);
    assert_eq!(
        local.parent,
        Some(peer.index),
        "va0's IFLA_LINK is the peer's index in b"
    );
    assert_eq!(
        nl_b.link_by_index(peer.index).expect("get by index"),
        Some(peer.clone())
    );

    let names: Vec<String> = nl_a
        .links()
        .expect("list links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["lo".to_string(), "va0".to_string()]);

    let shown = b.ip(&["-d", "link", "show", "vb0"]);
    assert!(
        shown.contains("mtu 1400") && shown.contains("veth"),
        "{shown}"
    );
    assert!(
        !a.ip_succeeds(&["link", "show", "vb0"]),
        "vb0 must not exist in {}",
        a.name
    );
    assert!(
        a.ip(&["link", "show", "va0"]).contains("va0@if"),
        "a sees va0 with a peer elsewhere"
    );
}

#[test]
fn mac_mtu_state_name_and_namespace_can_be_changed() {
    let a = TestNs::new("attr-a");
    let b = TestNs::new("attr-b");
    let mut nl = a.netlink();
    nl.add_veth("c0", "c1", None, None).expect("add veth");
    let index = a.index(&mut nl, "c0");
    let mac = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x01];

    nl.set_link_mac(index, mac).expect("set mac");
    nl.set_link_mtu(index, 1280).expect("set mtu");
    nl.set_link_up(index).expect("set up");
    let link = nl.link_by_index(index).expect("get").expect("exists");
    assert_eq!((link.mac, link.mtu, link.up), (Some(mac), 1280, true));
    let shown = a.ip(&["link", "show", "c0"]);
    assert!(shown.contains("link/ether 02:00:c6:12:00:01"), "{shown}");
    assert!(shown.contains("mtu 1280"), "{shown}");
    assert!(shown.contains(",UP") || shown.contains("<UP"), "{shown}");

    nl.set_link_down(index).expect("set down");
    assert!(!nl.link_by_index(index).expect("get").expect("exists").up);
    let shown = a.ip(&["link", "show", "c0"]);
    assert!(!shown.contains(",UP") && !shown.contains("<UP"), "{shown}");

    nl.set_link_name(index, "renamed0").expect("rename");
    assert!(nl.link_by_name("c0").expect("get old name").is_none());
    assert_eq!(
        nl.link_by_name("renamed0")
            .expect("get new name")
            .map(|l| l.index),
        Some(index)
    );
    assert!(a.ip(&["link", "show", "renamed0"]).contains("renamed0"));

    nl.set_link_netns(index, &b.ns).expect("move to b");
    assert!(nl.link_by_name("renamed0").expect("get in a").is_none());
    let moved = b
        .netlink()
        .link_by_name("renamed0")
        .expect("get in b")
        .expect("renamed0 is in b now");
    assert_eq!(moved.mac, Some(mac));
    assert!(
        b.ip(&["link", "show", "renamed0"])
            .contains("link/ether 02:00:c6:12:00:01")
    );
    assert!(!a.ip_succeeds(&["link", "show", "renamed0"]));

    let error = nl.set_link_mtu(99_999, 1500).expect_err("no such link");
    assert_eq!(
        error,
        NetlinkError::NotFound("set MTU of link ifindex 99999 to 1500".into())
    );
    assert_eq!(
        error.to_string(),
        "set MTU of link ifindex 99999 to 1500: not found"
    );
    let error = nl
        .set_link_name(index, "much-too-long-name")
        .expect_err("name too long");
    assert!(matches!(error, NetlinkError::Invalid(_)), "{error}");
}

#[test]
fn bridge_ports_and_deletion() {
    let a = TestNs::new("bridge");
    let mut nl = a.netlink();
    nl.add_bridge("br0").expect("add bridge");
    let bridge = nl.link_by_name("br0").expect("get").expect("br0 exists");
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    let error = nl.add_bridge("br0").expect_err("br0 already exists");
    assert!(error.is_exists());
    assert_eq!(error.to_string(), "add bridge br0: File exists");

    nl.add_veth("p0", "p1", None, None).expect("add veth");
    let port = a.index(&mut nl, "p0");
    nl.set_link_master(port, bridge.index)
        .expect("attach to bridge");
    assert_eq!(
        nl.link_by_index(port).expect("get").expect("exists").master,
        Some(bridge.index)
    );
    assert!(a.ip(&["link", "show", "p0"]).contains("master br0"));
    nl.set_link_master(port, 0).expect("detach");
    assert_eq!(
        nl.link_by_index(port).expect("get").expect("exists").master,
        None
    );
    assert!(!a.ip(&["link", "show", "p0"]).contains("master"));

    assert!(nl.delete_link_by_name("p0").expect("delete p0"));
    assert!(
        !nl.delete_link_by_name("p0").expect("delete p0 again"),
        "second delete reports absence"
    );
    assert!(
        nl.link_by_name("p1").expect("get p1").is_none(),
        "deleting one end removes the pair"
    );
    nl.delete_link(bridge.index).expect("delete bridge");
    let error = nl.delete_link(bridge.index).expect_err("already deleted");
    assert!(error.is_not_found(), "{error}");
    assert!(!a.ip_succeeds(&["link", "show", "br0"]));
}

#[test]
fn run_enters_the_namespace_on_another_thread_only() {
    let a = TestNs::new("run");
    let before = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
    let inside =
        a.ns.run(|| std::fs::read_link("/proc/thread-self/ns/net").expect("netns inside"))
            .expect("run");
    // A namespace file's inode number is the namespace id that /proc/*/ns/net links show.
    let inode = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(a.ns.path()).expect("stat netns file"),
    );
    let target = std::path::PathBuf::from(format!("net:[{inode}]"));
    assert_eq!(inside, target, "the closure ran inside the namespace");
    assert_ne!(inside, before);
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").expect("own netns after"),
        before
    );

    // A socket opened on the namespace's thread keeps working from this thread.
    let names: Vec<String> = a
        .netlink()
        .links()
        .expect("links")
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, vec!["lo".to_string()]);
    let missing =
        calico_netlink::Netns::open(std::path::Path::new("/var/run/netns/cnl-does-not-exist"));
    let error = missing.expect_err("no such namespace");
    assert!(
        error
            .to_string()
            .starts_with("open netns /var/run/netns/cnl-does-not-exist:"),
        "{error}"
    );
}

#[test]
fn links_of_a_named_kind_can_be_created_and_unknown_kinds_are_refused() {
    let a = TestNs::new("kind");
    let mut nl = a.netlink();
    nl.add_link_of_kind("kb0", "bridge")
        .expect("bridges are always available");
    let bridge = nl.link_by_name("kb0").expect("get").expect("kb0 exists");
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    let error = nl
        .add_link_of_kind("kb0", "bridge")
        .expect_err("name taken");
    assert!(error.is_exists(), "{error}");

    let error = nl
        .add_link_of_kind("kx0", "no-such-kind")
        .expect_err("the kernel has no such link type");
    assert!(
        error
            .to_string()
            .starts_with("add link kx0 type no-such-kind:"),
        "{error}"
    );
    assert!(nl.link_by_name("kx0").expect("get").is_none());
}
