//! IP autodetection against real interfaces, inside throw-away network namespaces.

use calico_netlink::Netns;
use calico_node::autodetect::{self, AutodetectError, Detected, HostInterface};
use calico_testutil::netns::TestNetns;

/// A namespace laid out like a small host, interfaces created in this order (so with rising indexes):
/// - `eth0` 198.18.1.2/24 (up, MTU 1500) <-> `veth0` 198.18.1.3/24 (up; excluded by default)
/// - `eth1` 198.18.4.2/24 (up, MTU 1400) <-> `cali0` 198.18.5.1/24 (up; excluded by default)
/// - `eth2` 198.18.6.2/24 (down) <-> `eth3` (down, no address)
fn host_namespace() -> TestNetns {
    let ns = TestNetns::new("node-autodetect").expect("create a test namespace");
    let ip = |args: &[&str]| {
        ns.ip(args)
            .unwrap_or_else(|err| panic!("ip {}: {err}", args.join(" ")))
    };
    ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "veth0",
    ]);
    ip(&[
        "link", "add", "eth1", "mtu", "1400", "type", "veth", "peer", "name", "cali0",
    ]);
    ip(&[
        "link", "add", "eth2", "type", "veth", "peer", "name", "eth3",
    ]);
    for (link, address) in [
        ("eth0", "198.18.1.2/24"),
        ("veth0", "198.18.1.3/24"),
        ("eth1", "198.18.4.2/24"),
        ("cali0", "198.18.5.1/24"),
        ("eth2", "198.18.6.2/24"),
    ] {
        ip(&["address", "add", address, "dev", link]);
    }
    for link in ["eth0", "veth0", "eth1", "cali0"] {
        ip(&["link", "set", link, "up"]);
    }
    ns
}

/// Runs `detect(method)` inside `ns`.
fn detect_in(ns: &TestNetns, method: &str) -> Result<Detected, AutodetectError> {
    let method = autodetect::parse(method).expect("valid method");
    Netns::open(&ns.path())
        .expect("open the namespace")
        .run(|| autodetect::detect(&method))
        .expect("run inside the namespace")
}

fn expect_detected(ns: &TestNetns, method: &str, address: &str, interface: &str, mtu: u32) {
    let detected = detect_in(ns, method).unwrap_or_else(|err| panic!("{method}: {err}"));
    assert_eq!(
        detected,
        Detected {
            address: address.parse().unwrap(),
            interface: interface.to_string(),
            mtu,
            // The kernel's default for a new link (no BIG TCP).
            gso_ipv4_max_size: 65_536,
        },
        "{method}"
    );
}

#[test]
fn interfaces_reports_names_state_mtu_and_ipv4_addresses() {
    let ns = host_namespace();
    let ifaces: Vec<HostInterface> = Netns::open(&ns.path())
        .unwrap()
        .run(autodetect::interfaces)
        .unwrap()
        .unwrap();
    let find = |name: &str| {
        ifaces
            .iter()
            .find(|iface| iface.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {ifaces:?}"))
    };
    assert_eq!(find("lo").addresses, vec!["127.0.0.1/8".parse().unwrap()]);
    let eth1 = find("eth1");
    assert!(eth1.up);
    assert_eq!(eth1.mtu, 1400);
    assert_eq!(eth1.addresses, vec!["198.18.4.2/24".parse().unwrap()]);
    let eth2 = find("eth2");
    assert!(!eth2.up);
    assert_eq!(eth2.addresses, vec!["198.18.6.2/24".parse().unwrap()]);
    assert!(find("eth3").addresses.is_empty());
    assert!(ifaces.windows(2).all(|pair| pair[0].index < pair[1].index));
}

#[test]
fn first_found_takes_the_newest_usable_interface() {
    let ns = host_namespace();
    // eth3/eth2 are down and cali0 is excluded, so eth1 is the newest usable interface.
    expect_detected(&ns, "first-found", "198.18.4.2/24", "eth1", 1400);
    expect_detected(&ns, "", "198.18.4.2/24", "eth1", 1400);
}

#[test]
fn skip_interface_passes_over_the_matching_interfaces() {
    let ns = host_namespace();
    expect_detected(&ns, "skip-interface=eth1", "198.18.1.2/24", "eth0", 1500);
}

#[test]
fn interface_picks_the_matching_interface_even_if_excluded_by_default() {
    let ns = host_namespace();
    expect_detected(&ns, "interface=^eth0$", "198.18.1.2/24", "eth0", 1500);
    expect_detected(
        &ns,
        "interface=nothing,cali.*",
        "198.18.5.1/24",
        "cali0",
        1500,
    );
}

#[test]
fn cidr_picks_the_address_inside_the_cidr() {
    let ns = host_namespace();
    expect_detected(
        &ns,
        "cidr=10.0.0.0/8,198.18.5.0/24",
        "198.18.5.1/24",
        "cali0",
        1500,
    );
    expect_detected(&ns, "cidr=198.18.1.2/32", "198.18.1.2/24", "eth0", 1500);
}

#[test]
fn can_reach_uses_the_source_address_towards_the_destination() {
    let ns = host_namespace();
    // 198.18.4.9 is on eth1's connected subnet; nothing is sent.
    expect_detected(&ns, "can-reach=198.18.4.9", "198.18.4.2/24", "eth1", 1400);
    expect_detected(&ns, "can-reach=198.18.1.77", "198.18.1.2/24", "eth0", 1500);
    // A host name is resolved first (from /etc/hosts).
    expect_detected(&ns, "can-reach=localhost", "127.0.0.1/8", "lo", 65536);
}

#[test]
fn can_reach_without_a_route_fails_clearly() {
    let ns = host_namespace();
    let message = detect_in(&ns, "can-reach=198.19.200.1")
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("IP autodetection (can-reach=198.19.200.1): no route to 198.19.200.1"),
        "{message}"
    );
}

#[test]
fn no_usable_address_fails_naming_the_interfaces() {
    let ns = TestNetns::new("node-autodetect-empty").expect("create a test namespace");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])
    .unwrap();
    ns.ip(&["link", "set", "eth0", "up"]).unwrap();
    let message = detect_in(&ns, "first-found").unwrap_err().to_string();
    assert_eq!(
        message,
        "IP autodetection (first-found) found no usable IPv4 address; interfaces checked: \
         eth0 (no IPv4 address), eth1 (down), lo (excluded by default)"
    );
}

#[test]
fn unknown_interface_fails_naming_the_interfaces_here() {
    let ns = host_namespace();
    let message = detect_in(&ns, "interface=eth9").unwrap_err().to_string();
    assert_eq!(
        message,
        "IP autodetection (interface=eth9): no interface matches eth9; interfaces here: \
         lo, veth0, eth0, cali0, eth1, eth3, eth2"
    );
}

#[test]
fn matching_interface_that_is_down_is_reported() {
    let ns = host_namespace();
    let message = detect_in(&ns, "interface=^eth2$").unwrap_err().to_string();
    assert_eq!(
        message,
        "IP autodetection (interface=^eth2$) found no usable IPv4 address; interfaces checked: \
         eth2 (down)"
    );
}
