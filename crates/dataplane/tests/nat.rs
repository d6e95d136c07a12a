//! The `calico` nftables table in a router namespace: pool traffic leaving the pools is masqueraded,
//! traffic between pools is not. Needs root, iproute2 and nftables.

mod dataplane_support;

use std::collections::BTreeSet;
use std::time::Duration;

use calico_felix::desired::{FloatingIp, Nat};
use calico_felix::nat;
use calico_testutil::netns::veth_pair;
use dataplane_support::{Ns, accepted_peer};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn pools(list: &[&str]) -> BTreeSet<ipnet::Ipv4Net> {
    list.iter().map(|s| s.parse().expect("prefix")).collect()
}

/// pod (198.19.9.2) and pod2 (198.19.8.2) behind a router, which also reaches `external`
/// (198.18.1.2), and external has no route back to the pool.
struct Lab {
    pod: Ns,
    pod2: Ns,
    router: Ns,
    external: Ns,
}

fn lab() -> Lab {
    let lab = Lab {
        pod: Ns::new("fx-nat-pod"),
        pod2: Ns::new("fx-nat-pod2"),
        router: Ns::new("fx-nat-rtr"),
        external: Ns::new("fx-nat-ext"),
    };
    let wire = |a: &Ns, a_if, a_cidr, b: &Ns, b_if, b_cidr| {
        veth_pair(&a.netns, a_if, a_cidr, &b.netns, b_if, b_cidr)
            .unwrap_or_else(|e| panic!("veth: {e}"))
    };
    wire(
        &lab.router,
        "r-pod",
        "198.19.9.1/24",
        &lab.pod,
        "eth0",
        "198.19.9.2/24",
    );
    wire(
        &lab.router,
        "r-pod2",
        "198.19.8.1/24",
        &lab.pod2,
        "eth0",
        "198.19.8.2/24",
    );
    wire(
        &lab.router,
        "r-ext",
        "198.18.1.1/24",
        &lab.external,
        "eth0",
        "198.18.1.2/24",
    );
    lab.pod
        .ip(&["route", "add", "default", "via", "198.19.9.1"]);
    lab.pod2
        .ip(&["route", "add", "default", "via", "198.19.8.1"]);
    lab.router
        .run(|| calico_netlink::sysctl::set("net/ipv4/ip_forward", "1"))
        .expect("enable forwarding in the router");
    lab
}

impl Lab {
    /// Connects from pod to `target` (listening in `server`); the peer address the server saw.
    fn peer_seen(&self, server: &Ns, target: &str) -> Option<String> {
        let listener = server.listen(target);
        if !self.pod.connect(target, CONNECT_TIMEOUT) {
            return None;
        }
        accepted_peer(&listener, CONNECT_TIMEOUT).map(|peer| peer.ip().to_string())
    }
}

#[test]
fn pool_traffic_to_the_outside_is_masqueraded_and_traffic_between_pools_is_not() {
    let lab = lab();
    // Without the table, external cannot answer a pool address: the connection never completes.
    assert!(!lab.router.run(nat::table_exists));
    assert_eq!(lab.peer_seen(&lab.external, "198.18.1.2:8080"), None);

    let text = nat::render_table(&Nat {
        masquerade_from: pools(&["198.19.0.0/16"]),
        all_pools: pools(&["198.19.0.0/16"]),
        ..Nat::default()
    });
    lab.router
        .run(|| nat::apply_table(&text))
        .expect("apply the table where it does not exist yet");
    assert!(lab.router.run(nat::table_exists));
    assert_eq!(
        lab.peer_seen(&lab.external, "198.18.1.2:8081").as_deref(),
        Some("198.18.1.1"),
        "external sees the router's address as the source"
    );
    assert_eq!(
        lab.peer_seen(&lab.pod2, "198.19.8.2:8082").as_deref(),
        Some("198.19.9.2"),
        "traffic between pool addresses keeps its source"
    );

    // Applying again replaces the table (it exists now); sets emptied stop masquerading.
    let empty = nat::render_table(&Nat::default());
    lab.router
        .run(|| nat::apply_table(&empty))
        .expect("replace the table");
    let listed = lab
        .router
        .exec_ok(&["nft", "list", "table", "ip", "calico"]);
    assert!(
        listed.contains("ip saddr @masq-ipam-pools ip daddr != @all-ipam-pools masquerade")
            && !listed.contains("elements"),
        "{listed}"
    );
    assert_eq!(lab.peer_seen(&lab.external, "198.18.1.2:8083"), None);

    lab.router.run(nat::delete_table).expect("delete the table");
    assert!(!lab.router.run(nat::table_exists));
    lab.router
        .run(nat::delete_table)
        .expect("deleting a missing table succeeds");
}

#[test]
fn nft_errors_name_nft_and_its_complaint() {
    let ns = Ns::new("fx-nat-err");
    let error = ns
        .run(|| nat::apply_table("table ip calico {\n\tchain c {\n\t\tbogus rule\n\t}\n}\n"))
        .expect_err("nft refuses a bad rule");
    let message = error.to_string();
    assert!(
        message.starts_with("nft -f - failed (exit status: 1): ") && message.contains("bogus"),
        "{message}"
    );
    assert!(
        !ns.run(nat::table_exists),
        "a failed transaction leaves nothing"
    );
}

#[test]
fn sync_writes_the_table_once_then_only_what_changed() {
    let ns = Ns::new("fx-nat-sync");
    let one = Nat {
        masquerade_from: pools(&["198.19.0.0/16"]),
        all_pools: pools(&["198.19.0.0/16"]),
        ..Nat::default()
    };
    assert!(
        ns.run(|| nat::sync_table(&one)).expect("first sync"),
        "written"
    );
    assert!(
        !ns.run(|| nat::sync_table(&one)).expect("second sync"),
        "nothing written"
    );
    let read = ns.run(nat::read_table).expect("read back");
    assert_eq!(read, Some(nat::nat_table(&one)));

    // A new pool is one element added; the rule and the other set are left alone.
    let two = Nat {
        masquerade_from: pools(&["198.19.0.0/16"]),
        all_pools: pools(&["198.19.0.0/16", "198.18.128.0/20"]),
        ..Nat::default()
    };
    assert!(
        ns.run(|| nat::sync_table(&two)).expect("pool added"),
        "written"
    );
    let listed = ns.exec_ok(&["nft", "list", "set", "ip", "calico", "all-ipam-pools"]);
    assert!(
        listed.contains("198.18.128.0/20, 198.19.0.0/16"),
        "{listed}"
    );
    assert!(
        !ns.run(|| nat::sync_table(&two)).expect("again"),
        "nothing written"
    );

    // A floating IP: its DNAT and hairpin SNAT rules go in, read back as written (comments too).
    let three = Nat {
        floating_ips: [FloatingIp {
            external: "198.18.200.10".parse().expect("address"),
            internal: "198.19.0.5".parse().expect("address"),
        }]
        .into(),
        ..two.clone()
    };
    assert!(
        ns.run(|| nat::sync_table(&three))
            .expect("floating IP added"),
        "written"
    );
    let listed = ns.exec_ok(&["nft", "list", "chain", "ip", "calico", "cali-fip-dnat"]);
    assert!(
        listed.contains("ip daddr 198.18.200.10 dnat to 198.19.0.5"),
        "{listed}"
    );
    assert_eq!(
        ns.run(nat::read_table).expect("read back"),
        Some(nat::nat_table(&three))
    );
    assert!(
        !ns.run(|| nat::sync_table(&three)).expect("again"),
        "nothing written"
    );
}
