//! A Calico-style VXLAN device with neighbour and FDB entries, inside a namespace. Needs root.

mod common;

use std::net::Ipv4Addr;

use calico_netlink::{FdbEntry, Neighbour, VxlanInfo, VxlanSpec, format_mac};
use common::{TestNs, ip, lines, net};

#[test]
fn vxlan_device_with_neighbour_and_fdb_entries() {
    let ns = TestNs::new("vxlan");
    let mut nl = ns.netlink();
    nl.add_veth("u0", "u1", None, None)
        .expect("add underlay veth");
    let underlay = ns.index(&mut nl, "u0");
    nl.set_link_up(underlay).expect("underlay up");
    nl.add_address(underlay, net("198.18.40.1/24"))
        .expect("underlay address");

    let vtep_mac = [0x66, 0x00, 0xc6, 0x12, 0x28, 0x01];
    let spec = VxlanSpec {
        name: "vxlan.calico".into(),
        vni: 4096,
        dst_port: 4789,
        local: Ipv4Addr::new(198, 18, 40, 1),
        underlay_index: Some(underlay),
        learning: false,
        mtu: Some(1410),
        mac: Some(vtep_mac),
    };
    nl.add_vxlan(&spec).expect("add vxlan");
    let vxlan = nl
        .link_by_name("vxlan.calico")
        .expect("get")
        .expect("vxlan exists");
    assert_eq!(
        (vxlan.kind.as_deref(), vxlan.mtu, vxlan.mac),
        (Some("vxlan"), 1410, Some(vtep_mac))
    );
    assert_eq!(
        vxlan.vxlan,
        Some(VxlanInfo {
            vni: Some(4096),
            dst_port: Some(4789),
            local: Some(Ipv4Addr::new(198, 18, 40, 1)),
            underlay_index: Some(underlay),
            learning: Some(false),
        }),
        "the dump reports the device's VXLAN settings"
    );
    let underlay_link = nl.link_by_index(underlay).expect("get").expect("u0");
    assert_eq!(underlay_link.vxlan, None, "a veth has no VXLAN settings");
    let details = ns.ip(&["-d", "link", "show", "vxlan.calico"]);
    for expected in [
        "vxlan id 4096",
        "local 198.18.40.1",
        "dev u0",
        "dstport 4789",
        "nolearning",
        "mtu 1410",
    ] {
        assert!(
            details.contains(expected),
            "missing {expected:?} in {details}"
        );
    }
    assert!(
        details.contains(&format!("link/ether {}", format_mac(vtep_mac))),
        "{details}"
    );
    assert!(nl.add_vxlan(&spec).expect_err("exists").is_exists());
    let mut bad = spec.clone();
    bad.vni = 1 << 24;
    assert!(
        nl.add_vxlan(&bad)
            .expect_err("VNI too big")
            .to_string()
            .contains("VNI")
    );

    nl.set_link_up(vxlan.index).expect("vxlan up");
    nl.add_address(vxlan.index, net("198.18.41.1/32"))
        .expect("tunnel address");

    // Remote VTEP: its tunnel address resolves to its VTEP MAC, which lives behind 198.18.40.2.
    let remote_mac = [0x66, 0x00, 0xc6, 0x12, 0x29, 0x01];
    let neighbour = Neighbour {
        index: vxlan.index,
        ip: ip("198.18.41.2"),
        mac: remote_mac,
        permanent: true,
    };
    nl.replace_neighbour(&neighbour).expect("add neighbour");
    nl.replace_neighbour(&neighbour)
        .expect("replace is idempotent");
    assert_eq!(
        nl.neighbours(Some(vxlan.index)).expect("list neighbours"),
        vec![neighbour]
    );
    assert_eq!(
        lines(&ns.ip(&["-4", "neigh", "show", "dev", "vxlan.calico"])),
        vec!["198.18.41.2 lladdr 66:00:c6:12:29:01 PERMANENT".to_string()]
    );

    let fdb = FdbEntry {
        index: vxlan.index,
        mac: remote_mac,
        dst: ip("198.18.40.2"),
    };
    nl.replace_fdb(&fdb).expect("add fdb");
    assert_eq!(nl.fdb(vxlan.index).expect("list fdb"), vec![fdb]);
    let shown = ns.bridge(&["fdb", "show", "dev", "vxlan.calico"]);
    assert!(
        lines(&shown).contains(&"66:00:c6:12:29:01 dst 198.18.40.2 self permanent".to_string()),
        "{shown}"
    );

    // The remote VTEP moved: replacing rewrites the one entry instead of adding a second.
    let moved = FdbEntry {
        dst: ip("198.18.40.3"),
        ..fdb
    };
    nl.replace_fdb(&moved).expect("replace fdb");
    assert_eq!(nl.fdb(vxlan.index).expect("list fdb"), vec![moved]);
    let shown = ns.bridge(&["fdb", "show", "dev", "vxlan.calico"]);
    assert!(
        shown.contains("dst 198.18.40.3") && !shown.contains("dst 198.18.40.2"),
        "{shown}"
    );

    // A non-permanent IPv6 neighbour on the underlay is listed separately and is not PERMANENT.
    let v6 = Neighbour {
        index: underlay,
        ip: ip("2001:db8:40::2"),
        mac: [0x02, 0, 0, 0, 0, 0x02],
        permanent: false,
    };
    nl.replace_neighbour(&v6).expect("add v6 neighbour");
    assert!(nl.neighbours(Some(underlay)).expect("list").contains(&v6));
    let all = nl.neighbours(None).expect("list all");
    assert!(all.contains(&v6) && all.contains(&neighbour), "{all:?}");
    let shown = ns.ip(&["-6", "neigh", "show", "dev", "u0"]);
    assert!(
        shown.contains("2001:db8:40::2 lladdr 02:00:00:00:00:02") && !shown.contains("PERMANENT"),
        "{shown}"
    );

    nl.del_fdb(&moved).expect("delete fdb");
    assert!(nl.fdb(vxlan.index).expect("list fdb").is_empty());
    assert!(
        !ns.bridge(&["fdb", "show", "dev", "vxlan.calico"])
            .contains("66:00:c6:12:29:01")
    );
    let error = nl.del_fdb(&moved).expect_err("already gone");
    assert!(error.is_not_found(), "{error}");
    assert_eq!(
        error.to_string(),
        "delete fdb 66:00:c6:12:29:01 dst 198.18.40.3 dev vxlan.calico: not found"
    );

    nl.del_neighbour(&neighbour).expect("delete neighbour");
    nl.del_neighbour(&v6).expect("delete v6 neighbour");
    let left = nl.neighbours(Some(vxlan.index)).expect("list");
    assert!(left.is_empty(), "{left:?}");
    let shown = ns.ip(&["-4", "neigh", "show", "dev", "vxlan.calico"]);
    assert!(lines(&shown).is_empty(), "{shown}");
    let error = nl.del_neighbour(&neighbour).expect_err("already gone");
    assert_eq!(
        error.to_string(),
        "delete neighbour 198.18.41.2 dev vxlan.calico: not found"
    );
}
