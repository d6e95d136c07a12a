//! The `calico-bgp-speaker` process with FRR and GoBGP beside BIRD (root, network namespaces):
//! an iBGP full mesh of two of ours with BIRD, FRR (bgpd with zebra, so its routes reach the
//! kernel) and GoBGP, one withdrawal timed to every peer and kernel at once, and ours as route
//! reflector with GoBGP and BIRD as clients, dropping routes that carry our own cluster id or
//! router id as ORIGINATOR_ID.

mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use calico_testutil::netns::{TestNetns, run_with_timeout};
use serde_json::{Value, json};
use support::bird::{self, Bird};
use support::lan::Lan;
use support::ours::{self, Ours};
use support::{eventually, frr, gobgp, kernel_route, need, wait_kernel_route_via};

const AS: u32 = 64512;

/// FRR's best path for `prefix` (vtysh JSON), if it has one.
fn frr_best(vty: &Path, prefix: &str) -> Result<Option<Value>, String> {
    let out = frr::vtysh(vty, &format!("show bgp ipv4 unicast {prefix} json"))?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    Ok(v["paths"].as_array().and_then(|paths| {
        paths
            .iter()
            .find(|p| p["bestpath"]["overall"] == true)
            .cloned()
    }))
}

/// GoBGP's best path for `prefix`.
fn gobgp_best(ns: &TestNetns, prefix: &str) -> Result<Option<Value>, String> {
    let rib = gobgp::rib(ns)?;
    Ok(rib
        .get(prefix)
        .and_then(|paths| paths.as_array())
        .and_then(|paths| paths.iter().find(|p| p["best"] == true).cloned()))
}

/// A gobgpd.toml: `router_id`, iBGP neighbors with test timers.
fn gobgp_conf(router_id: Ipv4Addr, neighbors: &[Ipv4Addr]) -> String {
    let mut conf = format!(
        r#"[global.config]
  as = {AS}
  router-id = "{router_id}"
  local-address-list = ["{router_id}"]
"#
    );
    for n in neighbors {
        conf.push_str(&format!(
            r#"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{n}"
    peer-as = {AS}
  [neighbors.timers.config]
    hold-time = 3
    keepalive-interval = 1
    connect-retry = 1
"#
        ));
    }
    conf
}

fn hops(addrs: &[Ipv4Addr]) -> Vec<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

fn block(host: u8) -> String {
    format!("198.19.{host}.0/24")
}

#[test]
fn full_mesh_of_two_speakers_with_bird_frr_and_gobgp_and_a_withdrawal_to_all() {
    let lan = Lan::new("mesh5", 40);
    let nodes: Vec<_> = (1..=5).map(|h| lan.node(h)).collect();
    let addr = |h: usize| nodes[h - 1].addr;
    let others =
        |h: usize| -> Vec<Ipv4Addr> { (1..=5).filter(|o| *o != h).map(addr).collect::<Vec<_>>() };

    // BIRD at n3, FRR at n4, GoBGP at n5, each peering with every other node.
    let protocols: String = others(3)
        .iter()
        .enumerate()
        .map(|(i, peer)| bird::ibgp_peer(&format!("p{i}"), addr(3), *peer, ""))
        .collect();
    let mut bird = Bird::start(
        &nodes[2].ns,
        &bird::config(addr(3), &[&block(3)], &protocols),
        &[],
    );
    let frr_neighbors: String = others(4)
        .iter()
        .map(|n| {
            format!(
                " neighbor {n} remote-as {AS}\n neighbor {n} timers 1 3\n neighbor {n} timers connect 1\n"
            )
        })
        .collect();
    let (mut bgpd, mut zebra, vty) = frr::start_with_zebra(
        &nodes[3].ns,
        &format!(
            "frr defaults traditional
hostname calico-bgp-mesh
router bgp {AS}
 bgp router-id {}
 no bgp ebgp-requires-policy
 no bgp network import-check
{frr_neighbors} address-family ipv4 unicast
  network {}
 exit-address-family
",
            addr(4),
            block(4)
        ),
    );
    let mut gobgpd = gobgp::start(&nodes[4].ns, &gobgp_conf(addr(5), &others(5)));
    gobgp::add(&nodes[4].ns, &block(5));

    let start_ours = |name: &'static str, h: usize| {
        Ours::start(
            name,
            &nodes[h - 1].ns,
            &ours::config(
                AS,
                addr(h),
                others(h).iter().map(|a| ours::peer(*a, AS)).collect(),
                &[&block(h as u8)],
            ),
        )
    };
    let mut a = start_ours("ours1", 1);
    let mut b = start_ours("ours2", 2);
    for (us, h) in [(&mut a, 1), (&mut b, 2)] {
        for peer in others(h) {
            eventually(&format!("{} Established with {peer}", us.name), || {
                bird.daemon.check_running();
                bgpd.check_running();
                zebra.check_running();
                gobgpd.check_running();
                let st = us.peer_status(peer);
                if st["state"] == "Established" {
                    Ok(())
                } else {
                    Err(st.to_string())
                }
            });
        }
    }

    // Every node holds every block with the originator's next hop.
    for (us, h) in [(&a, 1), (&b, 2)] {
        for o in others(h) {
            let prefix = block(o.octets()[3]);
            us.wait(&format!("{} has {prefix} via {o}", us.name), |s| {
                (s.routes.get(&prefix) == Some(&hops(&[o]))).then_some(())
            });
        }
    }
    for o in others(3) {
        let prefix = block(o.octets()[3]);
        eventually(&format!("BIRD has {prefix} via {o}"), || {
            let out = bird.route(&prefix)?;
            if out.contains(&format!("BGP.next_hop: {o}")) {
                Ok(())
            } else {
                Err(out)
            }
        });
        wait_kernel_route_via(&nodes[2].ns, &prefix, o, "bird");
    }
    for o in others(4) {
        let prefix = block(o.octets()[3]);
        let best = eventually(&format!("FRR has {prefix} via {o}"), || {
            match frr_best(&vty, &prefix)? {
                Some(p) if p["nexthops"][0]["ip"] == o.to_string() => Ok(p),
                other => Err(format!("{other:?}")),
            }
        });
        assert_eq!(best["peer"]["peerId"], o.to_string(), "{best}");
        assert_eq!(best["locPrf"], 100, "{best}");
        // zebra installs FRR's best paths: proto bgp.
        wait_kernel_route_via(&nodes[3].ns, &prefix, o, "bgp");
    }
    for o in others(5) {
        let prefix = block(o.octets()[3]);
        let best = eventually(&format!("GoBGP has {prefix} via {o}"), || match gobgp_best(
            &nodes[4].ns,
            &prefix,
        )? {
            Some(p) if gobgp::attr(&p, 3).map(|a| &a["nexthop"]) == Some(&json!(o.to_string())) => {
                Ok(p)
            }
            other => Err(format!("{other:?}")),
        });
        assert_eq!(best["neighbor-ip"], o.to_string(), "{best}");
    }
    // GoBGP writes no kernel routes (its zebra integration is off): its RIB is what counts.

    // One withdrawal, watched at every peer and kernel at once.
    let withdrawn = block(1);
    let w = withdrawn.as_str();
    let (birdc, socket) = (need("birdc", "bird2"), bird.socket.clone());
    let (ns3, ns4, ns5) = (&nodes[2].ns, &nodes[3].ns, &nodes[4].ns);
    let (vty, other) = (&vty, &b);
    type Gone<'a> = Box<dyn Fn() -> bool + Send + Sync + 'a>;
    let watchers: Vec<(&str, Gone)> = vec![
        (
            "BIRD's RIB",
            Box::new(move || {
                run_with_timeout(
                    Command::new(&birdc).args(["-s", &socket, "show", "route", "for", w]),
                    Duration::from_secs(10),
                )
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Network not found"))
            }),
        ),
        (
            "BIRD's kernel",
            Box::new(move || kernel_route(ns3, w).trim().is_empty()),
        ),
        (
            "FRR's RIB",
            Box::new(move || frr_best(vty, w).is_ok_and(|p| p.is_none())),
        ),
        (
            "FRR's kernel (zebra)",
            Box::new(move || kernel_route(ns4, w).trim().is_empty()),
        ),
        (
            "GoBGP's RIB",
            Box::new(move || gobgp::rib(ns5).is_ok_and(|r| !r.contains_key(w))),
        ),
        (
            "ours2's route stream",
            Box::new(move || other.route(w).is_none()),
        ),
    ];
    let start = Instant::now();
    a.send(&format!("withdraw {withdrawn}"));
    let times: Vec<(&str, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = watchers
            .iter()
            .map(|(what, gone)| {
                s.spawn(move || {
                    while !gone() {
                        assert!(
                            start.elapsed() < support::WAIT,
                            "the withdrawal never reached {what}"
                        );
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    (*what, start.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("watcher"))
            .collect()
    });
    for (what, after) in &times {
        eprintln!("withdrawal of {withdrawn}: gone from {what} after {after:?}");
    }
    let slowest = times.iter().map(|(_, t)| *t).max().unwrap_or_default();
    eprintln!("withdrawal of {withdrawn}: every peer and kernel within {slowest:?}");
    // The other blocks stay everywhere.
    for o in [addr(2), addr(3), addr(4), addr(5)] {
        let prefix = block(o.octets()[3]);
        if o != addr(3) {
            assert!(bird.route(&prefix).is_ok(), "BIRD lost {prefix}");
        }
        if o != addr(5) {
            assert!(
                gobgp_best(&nodes[4].ns, &prefix).is_ok_and(|p| p.is_some()),
                "GoBGP lost {prefix}"
            );
        }
    }
    bird.daemon.check_running();
    bgpd.check_running();
    zebra.check_running();
    gobgpd.check_running();
}

#[test]
fn we_reflect_to_gobgp_and_drop_routes_carrying_our_cluster_id_or_router_id() {
    let lan = Lan::new("rrgobgp", 41);
    let (n1, n2, n3) = (lan.node(1), lan.node(2), lan.node(3));
    let us = n1.addr;
    let cluster_id = Ipv4Addr::new(198, 18, 41, 100);
    let mut gobgpd = gobgp::start(&n2.ns, &gobgp_conf(n2.addr, &[us]));
    gobgp::add(&n2.ns, "198.19.2.0/24");
    // BIRD sends three blocks: one clean, one whose CLUSTER_LIST already holds our cluster
    // id, one whose ORIGINATOR_ID is our router id. The last two are loops (RFC 4456 §8).
    let looped = format!(
        r#"filter to_reflector {{
  if net = 198.19.31.0/24 then bgp_cluster_list.add({cluster_id});
  if net = 198.19.32.0/24 then bgp_originator_id = {us};
  accept;
}}
"#
    );
    let protocols = looped
        + &bird::ibgp_peer("reflector", n3.addr, us, "")
            .replace("export all;", "export filter to_reflector;");
    let mut bird = Bird::start(
        &n3.ns,
        &bird::config(
            n3.addr,
            &["198.19.3.0/24", "198.19.31.0/24", "198.19.32.0/24"],
            &protocols,
        ),
        &[],
    );
    let mut clients = Vec::new();
    for addr in [n2.addr, n3.addr] {
        let mut p = ours::peer(addr, AS);
        p["rr_client"] = json!(true);
        clients.push(p);
    }
    let mut cfg = ours::config(AS, us, clients, &["198.19.1.0/24"]);
    cfg["cluster_id"] = json!(cluster_id.to_string());
    let mut rr = Ours::start("rr", &n1.ns, &cfg);
    bird.wait_established("reflector");
    eventually("GoBGP's session Established", || {
        gobgpd.check_running();
        let st = rr.peer_status(n2.addr);
        if st["state"] == "Established" {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });

    // BIRD's block at GoBGP: reflected with BIRD as originator and our cluster id.
    let path = eventually("GoBGP shows BIRD's block reflected", || {
        gobgp_best(&n2.ns, "198.19.3.0/24")?.ok_or_else(|| "not yet".to_string())
    });
    eprintln!("GoBGP's reflected path: {path}");
    assert_eq!(
        gobgp::attr(&path, 3).map(|a| &a["nexthop"]),
        Some(&json!(n3.addr.to_string())),
        "next hop unchanged: {path}"
    );
    assert_eq!(
        gobgp::attr(&path, 9).map(|a| &a["value"]),
        Some(&json!(n3.addr.to_string())),
        "ORIGINATOR_ID: {path}"
    );
    assert_eq!(
        gobgp::attr(&path, 10).map(|a| &a["value"]),
        Some(&json!([cluster_id.to_string()])),
        "CLUSTER_LIST: {path}"
    );
    assert_eq!(path["neighbor-ip"], us.to_string(), "{path}");
    // Our own block reaches GoBGP without reflection attributes.
    let own = eventually("GoBGP has our block", || {
        gobgp_best(&n2.ns, "198.19.1.0/24")?.ok_or_else(|| "not yet".to_string())
    });
    assert!(gobgp::attr(&own, 9).is_none(), "{own}");
    assert!(gobgp::attr(&own, 10).is_none(), "{own}");
    // GoBGP's block at BIRD, reflected likewise.
    eventually("BIRD shows GoBGP's block reflected", || {
        let out = bird.route("198.19.2.0/24")?;
        let want = [
            format!("BGP.originator_id: {}", n2.addr),
            format!("BGP.cluster_list: {cluster_id}"),
            format!("BGP.next_hop: {}", n2.addr),
        ];
        if want.iter().all(|w| out.contains(w.as_str())) {
            Ok(())
        } else {
            Err(out)
        }
    });

    // The two looped blocks: received from BIRD, not accepted, not in our stream, not
    // reflected to GoBGP.
    let st = rr.wait_peer(n3.addr, "BIRD's three blocks received", |s| {
        s["received"] == 3
    });
    assert_eq!(st["accepted"], 1, "only the clean block: {st}");
    rr.wait("our stream has the clean blocks", |s| {
        (s.routes.contains_key("198.19.2.0/24") && s.routes.contains_key("198.19.3.0/24"))
            .then_some(())
    });
    for looped in ["198.19.31.0/24", "198.19.32.0/24"] {
        assert_eq!(rr.route(looped), None, "{looped} accepted");
        assert!(
            gobgp_best(&n2.ns, looped).expect("gobgp rib").is_none(),
            "{looped} reflected to GoBGP"
        );
    }
    bird.daemon.check_running();
    gobgpd.check_running();
}
