//! The `calico-bgp-speaker` process (our [`Speaker`](calico_bgp::speaker::Speaker)) with BIRD
//! and FRR on a LAN of network namespaces (root): a mesh, route reflection both ways, graceful
//! restart both ways (our process SIGKILLed; BIRD and FRR's bgpd SIGKILLed), hold timer expiry,
//! withdrawal time, route refresh, TCP-MD5 on our listener. Each scenario asserts
//! what the other daemon shows, what reaches its kernel table, and what our route stream and
//! status say. Timers are short (hold 3 s, retries 1 s).

mod support;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use calico_testutil::netns::TestNetns;
use nix::sys::signal::{Signal, kill};
use serde_json::{Value, json};
use support::bird::{self, Bird};
use support::lan::Lan;
use support::ours::{self, Ours};
use support::{eventually, frr, kernel_route, wait_kernel_route_gone, wait_kernel_route_via};

fn wait_bird_route(bird: &Bird, prefix: &str, needles: &[String]) -> String {
    eventually(&format!("BIRD shows {prefix} with {needles:?}"), || {
        let out = bird.route(prefix)?;
        if needles.iter().all(|n| out.contains(n.as_str())) {
            Ok(out)
        } else {
            Err(out)
        }
    })
}

fn wait_bird_route_gone(bird: &Bird, prefix: &str) {
    eventually(&format!("BIRD drops {prefix}"), || {
        match bird.route(prefix) {
            Err(e) if e.contains("Network not found") => Ok(()),
            Err(e) => Err(e),
            Ok(out) => Err(out),
        }
    });
}

fn hops(addrs: &[Ipv4Addr]) -> Vec<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

#[test]
fn mesh_of_two_speakers_and_bird() {
    let lan = Lan::new("mesh", 20);
    let (n1, n2, n3) = (lan.node(1), lan.node(2), lan.node(3));
    let protocols =
        bird::ibgp_peer("n1", n3.addr, n1.addr, "") + &bird::ibgp_peer("n2", n3.addr, n2.addr, "");
    let mut bird = Bird::start(
        &n3.ns,
        &bird::config(n3.addr, &["198.19.3.0/24"], &protocols),
        &[],
    );
    let mut a = Ours::start(
        "ours1",
        &n1.ns,
        &ours::config(
            64512,
            n1.addr,
            vec![ours::peer(n2.addr, 64512), ours::peer(n3.addr, 64512)],
            &["198.19.1.0/24"],
        ),
    );
    let mut b = Ours::start(
        "ours2",
        &n2.ns,
        &ours::config(
            64512,
            n2.addr,
            vec![ours::peer(n1.addr, 64512), ours::peer(n3.addr, 64512)],
            &["198.19.2.0/24"],
        ),
    );
    a.wait_established(n2.addr);
    a.wait_established(n3.addr);
    b.wait_established(n1.addr);
    b.wait_established(n3.addr);
    bird.wait_established("n1");
    bird.wait_established("n2");

    // Every node holds every block with its originator's next hop.
    for (who, prefix, via) in [
        (&a, "198.19.2.0/24", n2.addr),
        (&a, "198.19.3.0/24", n3.addr),
        (&b, "198.19.1.0/24", n1.addr),
        (&b, "198.19.3.0/24", n3.addr),
    ] {
        who.wait(&format!("{} has {prefix} via {via}", who.name), |s| {
            (s.routes.get(prefix) == Some(&hops(&[via]))).then_some(())
        });
    }
    for (prefix, via) in [("198.19.1.0/24", n1.addr), ("198.19.2.0/24", n2.addr)] {
        let shown = wait_bird_route(&bird, prefix, &[format!("BGP.next_hop: {via}")]);
        assert!(shown.contains("BGP.local_pref: 100"), "{shown}");
        wait_kernel_route_via(&n3.ns, prefix, via, "bird");
    }

    // Status: iBGP split horizon means each peer is sent only our own block.
    let st = a.peer_status(n3.addr);
    assert_eq!(st["state"], "Established", "{st}");
    assert_eq!(st["router_id"], n3.addr.to_string(), "{st}");
    assert_eq!(
        (st["received"].clone(), st["accepted"].clone()),
        (json!(1), json!(1)),
        "{st}"
    );
    // BIRD and the other speaker both ended their initial routes with End-of-RIB.
    a.wait_peer(n3.addr, "BIRD's End-of-RIB", |s| {
        s["initial_routes_received"] == true
    });
    a.wait_peer(n2.addr, "ours2's End-of-RIB", |s| {
        s["initial_routes_received"] == true
    });
    let st = a.wait_peer(n2.addr, "one route advertised", |s| s["advertised"] == 1);
    assert_eq!(st["last_error"], Value::Null, "{st}");

    // A withdrawal: measured to BIRD's kernel table and to the other speaker's route stream.
    let start = Instant::now();
    a.send("withdraw 198.19.1.0/24");
    loop {
        if kernel_route(&n3.ns, "198.19.1.0/24").trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < support::WAIT,
            "withdrawal never reached BIRD's kernel"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let to_kernel = start.elapsed();
    let gone = b.wait("ours2 sees the withdrawal", |s| {
        s.changes
            .iter()
            .rev()
            .find(|(_, p, h)| p == "198.19.1.0/24" && h.is_empty())
            .map(|(t, _, _)| *t)
    });
    eprintln!(
        "withdrawal of 198.19.1.0/24: BIRD's kernel table after {to_kernel:?}, the other \
         speaker's route stream after {:?}",
        gone.saturating_duration_since(start)
    );
    wait_bird_route_gone(&bird, "198.19.1.0/24");
    assert_eq!(
        b.route("198.19.3.0/24"),
        Some(hops(&[n3.addr])),
        "the rest stays"
    );
    bird.daemon.check_running();
}

#[test]
fn bird_reflects_between_our_speakers() {
    let lan = Lan::new("rrbird", 21);
    let (n1, n2, n3) = (lan.node(1), lan.node(2), lan.node(3));
    let cluster = "rr client; rr cluster id 198.18.21.100;";
    let protocols = bird::ibgp_peer("n1", n3.addr, n1.addr, cluster)
        + &bird::ibgp_peer("n2", n3.addr, n2.addr, cluster);
    let mut bird = Bird::start(&n3.ns, &bird::config(n3.addr, &[], &protocols), &[]);
    // The clients peer only with the reflector.
    let mut a = Ours::start(
        "ours1",
        &n1.ns,
        &ours::config(
            64512,
            n1.addr,
            vec![ours::peer(n3.addr, 64512)],
            &["198.19.1.0/24"],
        ),
    );
    let mut b = Ours::start(
        "ours2",
        &n2.ns,
        &ours::config(
            64512,
            n2.addr,
            vec![ours::peer(n3.addr, 64512)],
            &["198.19.2.0/24"],
        ),
    );
    a.wait_established(n3.addr);
    b.wait_established(n3.addr);
    bird.wait_established("n1");
    // Reflected with the next hop unchanged: the originating client's address.
    a.wait("ours1 has ours2's block via ours2", |s| {
        (s.routes.get("198.19.2.0/24") == Some(&hops(&[n2.addr]))).then_some(())
    });
    b.wait("ours2 has ours1's block via ours1", |s| {
        (s.routes.get("198.19.1.0/24") == Some(&hops(&[n1.addr]))).then_some(())
    });
    let st = a.wait_peer(n3.addr, "one route from the reflector", |s| {
        s["accepted"] == 1
    });
    assert_eq!(st["advertised"], 1, "{st}");
    wait_kernel_route_via(&n3.ns, "198.19.1.0/24", n1.addr, "bird");
    wait_kernel_route_via(&n3.ns, "198.19.2.0/24", n2.addr, "bird");
}

#[test]
fn we_reflect_between_bird_and_frr() {
    let lan = Lan::new("rrours", 22);
    let (n1, n2, n3) = (lan.node(1), lan.node(2), lan.node(3));
    let cluster_id = Ipv4Addr::new(198, 18, 22, 100);
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(
            n2.addr,
            &["198.19.2.0/24"],
            &bird::ibgp_peer("reflector", n2.addr, n1.addr, ""),
        ),
        &[],
    );
    let us = n1.addr;
    let (mut frr, vty) = frr::start_bgpd(
        &n3.ns,
        &format!(
            "frr defaults traditional
hostname calico-bgp-rr-client
router bgp 64512
 bgp router-id {}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {us} remote-as 64512
 neighbor {us} timers 1 3
 neighbor {us} timers connect 1
 address-family ipv4 unicast
  network 198.19.3.0/24
 exit-address-family
",
            n3.addr
        ),
    );
    let mut clients = Vec::new();
    for addr in [n2.addr, n3.addr] {
        let mut p = ours::peer(addr, 64512);
        p["rr_client"] = json!(true);
        clients.push(p);
    }
    let mut cfg = ours::config(64512, us, clients, &["198.19.1.0/24"]);
    cfg["cluster_id"] = json!(cluster_id.to_string());
    let mut rr = Ours::start("rr", &n1.ns, &cfg);
    rr.wait_established(n2.addr);
    eventually("FRR's session Established", || {
        frr.check_running();
        rr.peer_status(n3.addr)["state"]
            .as_str()
            .filter(|s| *s == "Established")
            .map(|_| ())
            .ok_or_else(|| "not yet".to_string())
    });

    // BIRD's block at FRR: reflected with BIRD as originator and our cluster id.
    let shown = eventually("FRR shows BIRD's block reflected", || {
        let out = frr::vtysh(&vty, "show bgp ipv4 unicast 198.19.2.0/24 json")?;
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let path = v["paths"].get(0).cloned().ok_or_else(|| out.clone())?;
        if path["originatorId"] == n2.addr.to_string() {
            Ok(path)
        } else {
            Err(out)
        }
    });
    assert_eq!(shown["nexthops"][0]["ip"], n2.addr.to_string(), "{shown}");
    assert_eq!(
        shown["clusterList"]["list"],
        json!([cluster_id.to_string()]),
        "{shown}"
    );
    assert_eq!(shown["peer"]["peerId"], us.to_string(), "{shown}");

    // FRR's block at BIRD, likewise, and in BIRD's kernel via FRR's address.
    let shown = wait_bird_route(
        &bird,
        "198.19.3.0/24",
        &[
            format!("BGP.originator_id: {}", n3.addr),
            format!("BGP.cluster_list: {cluster_id}"),
            format!("BGP.next_hop: {}", n3.addr),
        ],
    );
    assert!(shown.contains("[reflector "), "{shown}");
    wait_kernel_route_via(&n2.ns, "198.19.3.0/24", n3.addr, "bird");
    // Our own block reaches both clients without reflection attributes.
    let shown = wait_bird_route(&bird, "198.19.1.0/24", &[format!("BGP.next_hop: {us}")]);
    assert!(!shown.contains("BGP.originator_id"), "{shown}");
    rr.wait("our stream has both clients' blocks", |s| {
        (s.routes.get("198.19.2.0/24") == Some(&hops(&[n2.addr]))
            && s.routes.get("198.19.3.0/24") == Some(&hops(&[n3.addr])))
        .then_some(())
    });
    bird.daemon.check_running();
    frr.check_running();
}

/// `ip monitor route` in `ns`, its output collected until stopped.
struct RouteMonitor {
    child: std::process::Child,
}

impl RouteMonitor {
    fn start(ns: &TestNetns) -> RouteMonitor {
        let child = Command::new("ip")
            .args(["-n", ns.name(), "monitor", "route"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip monitor route");
        RouteMonitor { child }
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let out = self.child.wait_with_output().expect("monitor output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn bird_keeps_our_routes_while_we_restart() {
    let lan = Lan::new("grours", 23);
    let (n1, n2) = (lan.node(1), lan.node(2));
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(
            n2.addr,
            &[],
            &bird::ibgp_peer("ours", n2.addr, n1.addr, "graceful restart on;"),
        ),
        &[],
    );
    let both = ours::config(
        64512,
        n1.addr,
        vec![ours::peer(n2.addr, 64512)],
        &["198.19.1.0/24", "198.19.9.0/24"],
    );
    let first = Ours::start("ours", &n1.ns, &both);
    bird.wait_established("ours");
    wait_kernel_route_via(&n2.ns, "198.19.1.0/24", n1.addr, "bird");
    wait_kernel_route_via(&n2.ns, "198.19.9.0/24", n1.addr, "bird");

    let monitor = RouteMonitor::start(&n2.ns);
    std::thread::sleep(Duration::from_millis(200));
    first.kill();
    // Down: BIRD notices the closed connection and keeps our routes (restart time 30 s).
    eventually("BIRD sees us gone", || {
        let out = bird.birdc(&["show", "protocols", "ours"])?;
        if out.contains("Established") {
            Err(out)
        } else {
            Ok(())
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(kernel_route(&n2.ns, "198.19.1.0/24").contains(&format!("via {}", n1.addr)));

    // Back, restarting with forwarding kept, without 198.19.9.0/24 this time.
    let one = ours::config(
        64512,
        n1.addr,
        vec![ours::peer(n2.addr, 64512)],
        &["198.19.1.0/24"],
    );
    let mut second = Ours::start_with("ours", &n1.ns, &one, true);
    second.wait_established(n2.addr);
    // Our End-of-RIB ends BIRD's wait: the stale 198.19.9.0/24 goes long before the 30 s.
    let down_at = Instant::now();
    wait_kernel_route_gone(&n2.ns, "198.19.9.0/24");
    assert!(down_at.elapsed() < Duration::from_secs(20));
    wait_bird_route_gone(&bird, "198.19.9.0/24");
    let shown = wait_bird_route(
        &bird,
        "198.19.1.0/24",
        &[format!("BGP.next_hop: {}", n1.addr)],
    );
    assert!(!shown.contains("stale"), "{shown}");
    let seen = monitor.stop();
    assert!(
        !seen
            .lines()
            .any(|l| l.starts_with("Deleted") && l.contains("198.19.1.0/24")),
        "BIRD deleted the kernel route during our restart:\n{seen}"
    );
    assert!(
        seen.lines()
            .any(|l| l.starts_with("Deleted") && l.contains("198.19.9.0/24")),
        "the monitor saw nothing:\n{seen}"
    );
}

#[test]
fn bird_drops_our_routes_when_we_stay_down_past_the_restart_time() {
    let lan = Lan::new("grlong", 24);
    let (n1, n2) = (lan.node(1), lan.node(2));
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(
            n2.addr,
            &[],
            &bird::ibgp_peer("ours", n2.addr, n1.addr, "graceful restart on;"),
        ),
        &[],
    );
    let mut p = ours::peer(n2.addr, 64512);
    p["graceful_restart_time"] = json!(3);
    let speaker = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, n1.addr, vec![p], &["198.19.1.0/24"]),
    );
    bird.wait_established("ours");
    wait_kernel_route_via(&n2.ns, "198.19.1.0/24", n1.addr, "bird");
    let killed = Instant::now();
    speaker.kill();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !kernel_route(&n2.ns, "198.19.1.0/24").is_empty(),
        "kept within the restart time"
    );
    wait_kernel_route_gone(&n2.ns, "198.19.1.0/24");
    let after = killed.elapsed();
    eprintln!("BIRD dropped our route {after:?} after we were killed (restart time 3 s)");
    assert!(after >= Duration::from_secs(3), "{after:?}");
}

#[test]
fn we_keep_birds_routes_while_it_restarts() {
    let lan = Lan::new("grbird", 25);
    let (n1, n2) = (lan.node(1), lan.node(2));
    let gr = "graceful restart on; graceful restart time 30;";
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(
            n2.addr,
            &["198.19.2.0/24", "198.19.8.0/24"],
            &bird::ibgp_peer("ours", n2.addr, n1.addr, gr),
        ),
        &[],
    );
    let mut us = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, n1.addr, vec![ours::peer(n2.addr, 64512)], &[]),
    );
    us.wait_established(n2.addr);
    us.wait("BIRD's routes in our stream", |s| {
        (s.routes.contains_key("198.19.2.0/24") && s.routes.contains_key("198.19.8.0/24"))
            .then_some(())
    });

    bird.daemon.kill_hard();
    us.wait_peer(n2.addr, "session down", |s| s["state"] != "Established");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        us.route("198.19.2.0/24"),
        Some(hops(&[n2.addr])),
        "kept as stale"
    );
    assert_eq!(
        us.route("198.19.8.0/24"),
        Some(hops(&[n2.addr])),
        "kept as stale"
    );

    // BIRD comes back in graceful restart recovery (-R), without 198.19.8.0/24.
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(
            n2.addr,
            &["198.19.2.0/24"],
            &bird::ibgp_peer("ours", n2.addr, n1.addr, gr),
        ),
        &["-R"],
    );
    us.wait_established(n2.addr);
    bird.wait_established("ours");
    // Its End-of-RIB sweeps what it did not announce again; the rest never left.
    us.wait("the stale 198.19.8.0/24 swept", |s| {
        (!s.routes.contains_key("198.19.8.0/24")).then_some(())
    });
    let changes = us.changes_of("198.19.2.0/24");
    assert!(
        changes.iter().all(|(_, h)| !h.is_empty()),
        "198.19.2.0/24 was withdrawn during BIRD's restart: {changes:?}"
    );
    assert_eq!(us.route("198.19.2.0/24"), Some(hops(&[n2.addr])));
}

#[test]
fn hold_timer_expires_when_the_peer_is_stopped() {
    let lan = Lan::new("hold", 26);
    let (n1, n2) = (lan.node(1), lan.node(2));
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(
            n2.addr,
            &["198.19.2.0/24"],
            &bird::ibgp_peer("ours", n2.addr, n1.addr, "graceful restart on;"),
        ),
        &[],
    );
    let mut us = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, n1.addr, vec![ours::peer(n2.addr, 64512)], &[]),
    );
    us.wait_established(n2.addr);
    bird.wait_established("ours");
    us.wait("BIRD's route in our stream", |s| {
        s.routes.contains_key("198.19.2.0/24").then_some(())
    });

    kill(bird.daemon.pid(), Signal::SIGSTOP).expect("SIGSTOP bird");
    let stopped = Instant::now();
    let st = us.wait_peer(n2.addr, "hold timer expiry", |s| {
        s["state"] != "Established"
    });
    let down_after = stopped.elapsed();
    // The NOTIFICATION we sent ends graceful restart: the routes go at once.
    let withdrawn = us.wait("BIRD's route withdrawn", |s| {
        s.changes
            .iter()
            .rev()
            .find(|(_, p, h)| p == "198.19.2.0/24" && h.is_empty())
            .map(|(t, _, _)| *t)
    });
    kill(bird.daemon.pid(), Signal::SIGCONT).expect("SIGCONT bird");
    eprintln!(
        "hold timer: session down {down_after:?} after SIGSTOP, route withdrawn after {:?}",
        withdrawn.saturating_duration_since(stopped)
    );
    assert!(
        st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("hold timer expired")),
        "{st}"
    );
    // Hold time 3 s, counted from the last KEEPALIVE (at most 1 s before the stop); the
    // stream's timestamp is taken as the line is read, status polling adds its own delay.
    let withdrawn_after = withdrawn.saturating_duration_since(stopped);
    assert!(
        withdrawn_after >= Duration::from_millis(1500),
        "{withdrawn_after:?}"
    );
    assert!(
        withdrawn_after <= Duration::from_secs(4),
        "{withdrawn_after:?}"
    );
}

/// BIRD's received-updates count for protocol `name` (`Import updates:` first column).
fn bird_import_updates(bird: &Bird, name: &str) -> Result<u64, String> {
    let out = bird.birdc(&["show", "protocols", "all", name])?;
    out.lines()
        .find(|l| l.trim_start().starts_with("Import updates:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .ok_or(out)
}

#[test]
fn route_refresh_both_ways() {
    let lan = Lan::new("refresh", 27);
    let (n1, n2) = (lan.node(1), lan.node(2));
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(
            n2.addr,
            &["198.19.2.0/24", "198.19.3.0/24"],
            &bird::ibgp_peer("ours", n2.addr, n1.addr, ""),
        ),
        &[],
    );
    let mut filtered = ours::peer(n2.addr, 64512);
    filtered["import"] = json!([
        { "cidr": "198.19.3.0/24", "matchOperator": "Equal", "action": "Reject" }
    ]);
    let mut us = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, n1.addr, vec![filtered], &["198.19.1.0/24"]),
    );
    let up = us.wait_established(n2.addr);
    bird.wait_established("ours");
    let st = us.wait_peer(n2.addr, "both received", |s| s["received"] == 2);
    assert_eq!(st["accepted"], 1, "{st}");
    assert_eq!(us.route("198.19.2.0/24"), Some(hops(&[n2.addr])));
    assert_eq!(us.route("198.19.3.0/24"), None, "filtered");

    // Lifting the filter: we ask BIRD for its routes again, and 198.19.3.0/24 arrives without
    // the session restarting.
    us.reload(&ours::config(
        64512,
        n1.addr,
        vec![ours::peer(n2.addr, 64512)],
        &["198.19.1.0/24"],
    ));
    us.wait("198.19.3.0/24 after the refresh", |s| {
        (s.routes.get("198.19.3.0/24") == Some(&hops(&[n2.addr]))).then_some(())
    });
    let st = us.peer_status(n2.addr);
    assert_eq!(st["since_unix_ms"], up["since_unix_ms"], "no restart: {st}");
    assert_eq!(st["accepted"], 2, "{st}");

    // BIRD asks us (`reload in`): we send our table again.
    wait_bird_route(
        &bird,
        "198.19.1.0/24",
        &[format!("BGP.next_hop: {}", n1.addr)],
    );
    let before = eventually("BIRD's import counters", || {
        bird_import_updates(&bird, "ours")
    });
    bird.birdc(&["reload", "in", "ours"])
        .expect("birdc reload in");
    eventually("BIRD received our routes again", || {
        let now = bird_import_updates(&bird, "ours")?;
        if now > before {
            Ok(())
        } else {
            Err(format!("import updates {now}, before {before}"))
        }
    });
    let st = us.peer_status(n2.addr);
    assert_eq!(st["since_unix_ms"], up["since_unix_ms"], "no restart: {st}");
    bird.daemon.check_running();
}

#[test]
fn tcp_md5_passwords_on_our_listener() {
    let lan = Lan::new("md5", 28);
    let (n1, n2, n3) = (lan.node(1), lan.node(2), lan.node(3));
    // Two BIRDs connect to us (we are passive, so their SYNs meet our listener's keys): one
    // with our password, one with another.
    let start_bird = |node: &support::lan::Node, password: &str| {
        Bird::start(
            &node.ns,
            &bird::config(
                node.addr,
                &[],
                &bird::ibgp_peer(
                    "ours",
                    node.addr,
                    n1.addr,
                    &format!("password \"{password}\";"),
                ),
            ),
            &[],
        )
    };
    let mut good = start_bird(&n2, "calico-secret");
    let mut bad = start_bird(&n3, "wrong-secret");
    let mut peers = Vec::new();
    for addr in [n2.addr, n3.addr] {
        let mut p = ours::peer(addr, 64512);
        p["passive"] = json!(true);
        p["password"] = json!("calico-secret");
        peers.push(p);
    }
    let mut us = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, n1.addr, peers, &["198.19.1.0/24"]),
    );
    us.wait_established(n2.addr);
    good.wait_established("ours");
    wait_kernel_route_via(&n2.ns, "198.19.1.0/24", n1.addr, "bird");
    // The mismatched one had the same time and never got a session.
    std::thread::sleep(Duration::from_secs(2));
    let st = us.peer_status(n3.addr);
    assert_ne!(st["state"], "Established", "{st}");
    let shown = bad.birdc(&["show", "protocols", "ours"]).expect("birdc");
    assert!(!shown.contains("Established"), "{shown}");
    bad.daemon.check_running();
    good.daemon.check_running();
}

#[test]
fn we_keep_frrs_routes_while_its_bgpd_restarts() {
    let lan = Lan::new("grfrr", 29);
    let (n1, n2) = (lan.node(1), lan.node(2));
    let us = n1.addr;
    let frr_conf = |networks: &[&str]| {
        let networks: String = networks
            .iter()
            .map(|n| format!("  network {n}\n"))
            .collect();
        format!(
            "frr defaults traditional
hostname calico-bgp-gr
router bgp 64512
 bgp router-id {}
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 bgp graceful-restart preserve-fw-state
 neighbor {us} remote-as 64512
 neighbor {us} timers 1 3
 neighbor {us} timers connect 1
 address-family ipv4 unicast
{networks} exit-address-family
",
            n2.addr
        )
    };
    let (mut frr, _vty) = frr::start_bgpd(&n2.ns, &frr_conf(&["198.19.2.0/24", "198.19.8.0/24"]));
    let mut ours = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, us, vec![ours::peer(n2.addr, 64512)], &[]),
    );
    ours.wait_established(n2.addr);
    ours.wait("FRR's routes in our stream", |s| {
        (s.routes.contains_key("198.19.2.0/24") && s.routes.contains_key("198.19.8.0/24"))
            .then_some(())
    });
    frr.check_running();
    frr.kill_hard();
    ours.wait_peer(n2.addr, "session down", |s| s["state"] != "Established");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ours.route("198.19.2.0/24"),
        Some(hops(&[n2.addr])),
        "kept as stale"
    );

    // bgpd back without 198.19.8.0/24: its End-of-RIB sweeps that one only.
    let (mut frr, _vty) = frr::start_bgpd(&n2.ns, &frr_conf(&["198.19.2.0/24"]));
    ours.wait_established(n2.addr);
    ours.wait("the stale 198.19.8.0/24 swept", |s| {
        (!s.routes.contains_key("198.19.8.0/24")).then_some(())
    });
    let changes = ours.changes_of("198.19.2.0/24");
    assert!(
        changes.iter().all(|(_, h)| !h.is_empty()),
        "198.19.2.0/24 was withdrawn during FRR's restart: {changes:?}"
    );
    assert_eq!(ours.route("198.19.2.0/24"), Some(hops(&[n2.addr])));
    frr.check_running();
}
