//! Namespaced sysctls, and an end-to-end ping over links configured only through this crate. Needs root.

mod common;

use calico_netlink::{Netlink, Route, sysctl};
use common::{TestNs, net};

#[test]
fn sysctls_written_inside_a_namespace_stay_there() {
    let ns = TestNs::new("sysctl");
    let mut nl = ns.netlink();
    nl.add_veth("s0", "s1", None, None).expect("add veth");

    // lo exists in every namespace, so it shows whether the root namespace's copy is touched.
    let root_lo_before = sysctl::get("net/ipv4/conf/lo/proxy_arp").expect("root value");
    let flipped = if root_lo_before == "1" { "0" } else { "1" };
    let read_back = ns
        .ns
        .run(|| {
            sysctl::set("net/ipv4/conf/s0/proxy_arp", "1")?;
            sysctl::set("net/ipv4/neigh/s0/proxy_delay", "0")?;
            sysctl::set("net/ipv4/conf/lo/proxy_arp", flipped)?;
            Ok::<_, calico_netlink::NetlinkError>((
                sysctl::get("net/ipv4/conf/s0/proxy_arp")?,
                sysctl::get("net/ipv4/neigh/s0/proxy_delay")?,
                sysctl::get("net/ipv4/conf/lo/proxy_arp")?,
            ))
        })
        .expect("enter namespace")
        .expect("sysctls inside the namespace");
    assert_eq!(
        read_back,
        ("1".to_string(), "0".to_string(), flipped.to_string())
    );

    for (key, expected) in [
        ("net.ipv4.conf.s0.proxy_arp", "1"),
        ("net.ipv4.neigh.s0.proxy_delay", "0"),
        ("net.ipv4.conf.lo.proxy_arp", flipped),
    ] {
        let out = ns.exec("cat", &[&format!("/proc/sys/{}", key.replace('.', "/"))]);
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "{key} as seen by ip netns exec"
        );
    }
    // The other end of the pair was left alone (the default is 0).
    let out = ns.exec("cat", &["/proc/sys/net/ipv4/conf/s1/proxy_arp"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");

    assert_eq!(
        sysctl::get("net/ipv4/conf/lo/proxy_arp").expect("root value after"),
        root_lo_before
    );
    let error = sysctl::get("net/ipv4/conf/s0/proxy_arp")
        .expect_err("s0 does not exist in this thread's namespace");
    assert!(
        error
            .to_string()
            .starts_with("get sysctl net/ipv4/conf/s0/proxy_arp:"),
        "{error}"
    );
}

/// `ip netns exec NS busybox ping`, bounded by a deadline (-w for the run, -W for the wait after the last send).
fn ping(from: &TestNs, target: &str, deadline_secs: u32) -> bool {
    let deadline = deadline_secs.to_string();
    let out = from.exec(
        "/bin/busybox",
        &["ping", "-c", "1", "-w", &deadline, "-W", &deadline, target],
    );
    out.status.success()
}

#[test]
fn ping_crosses_a_veth_pair_configured_only_through_this_crate() {
    assert!(
        std::path::Path::new("/bin/busybox").exists(),
        "this test pings with /bin/busybox (busybox-static)"
    );
    let host = TestNs::new("ping-host");
    let workload = TestNs::new("ping-wl");
    let mut nl_host = host.netlink();
    let mut nl_wl = workload.netlink();

    // Calico style: the workload end goes straight into its namespace; both ends get /32s and link routes.
    nl_host
        .add_veth("cali0ping", "eth0", Some(&workload.ns), Some(1450))
        .expect("add veth");
    let host_if = host.index(&mut nl_host, "cali0ping");
    let wl_if = workload.index(&mut nl_wl, "eth0");
    let wl_lo = workload.index(&mut nl_wl, "lo");
    nl_host.set_link_up(host_if).expect("host end up");
    nl_wl.set_link_up(wl_if).expect("workload end up");
    nl_wl.set_link_up(wl_lo).expect("workload lo up");
    nl_host
        .add_address(host_if, net("198.18.50.1/32"))
        .expect("host address");
    nl_wl
        .add_address(wl_if, net("198.18.50.2/32"))
        .expect("workload address");
    nl_host
        .add_route(&Route::link(net("198.18.50.2/32"), host_if).with_protocol(80))
        .expect("route to workload");

    let route_back = Route::link(net("198.18.50.1/32"), wl_if);
    nl_wl.add_route(&route_back).expect("route to host");
    assert!(
        ping(&host, "198.18.50.2", 10),
        "ping host -> workload over the veth pair"
    );
    assert!(
        ping(&workload, "198.18.50.1", 10),
        "ping workload -> host over the veth pair"
    );

    // Without the workload's route back, the replies have nowhere to go.
    nl_wl.del_route(&route_back).expect("delete route to host");
    assert!(
        !ping(&host, "198.18.50.2", 2),
        "ping must fail once the return route is gone"
    );

    // A socket opened on a thread inside the namespace sees the namespace's links only.
    let names = workload
        .ns
        .run(|| Netlink::new().and_then(|mut nl| nl.links()))
        .expect("enter namespace")
        .expect("list links");
    let names: Vec<String> = names.into_iter().map(|l| l.name).collect();
    assert_eq!(names, vec!["lo".to_string(), "eth0".to_string()]);
}
