//! Our speaker against BIRD 2 (Debian `bird2`) over iBGP, in network namespaces (root).
//!
//! Asserts what `birdc show route all` shows for prefixes we originate (next hop ours) and
//! withdraw, and that BIRD's own static route reaches our RIB with BIRD's next hop.

mod support;

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use calico_bgp::net::TcpOptions;
use calico_bgp::session::PeerConfig;
use calico_bgp::wire::{AddPathFamily, AddPathMode, AsPath, Family, Origin};
use calico_testutil::netns::{TestNetns, veth_pair};
use calico_testutil::netns::{checked_stdout, run_with_timeout};
use std::sync::atomic::Ordering;
use support::{Daemon, Pair, Speaker, daemon_dir, eventually, exec, fast_peer, need};

fn birdc(birdc: &str, socket: &str, args: &[&str]) -> Result<String, String> {
    let out = run_with_timeout(
        Command::new(birdc).args(["-s", socket]).args(args),
        Duration::from_secs(10),
    )?;
    checked_stdout(out, "birdc")
}

/// BIRD in `pair.theirs` with AS `their_as`, passive toward us (AS `our_as`), originating
/// 198.19.101.0/24 from a static blackhole route. Returns it and its control socket.
fn start_bird(pair: &Pair, their_as: u32, our_as: u32) -> (Daemon, String) {
    start_bird_with(pair, their_as, our_as, "passive on;")
}

/// Like [`start_bird`] with `extra` lines in the BGP protocol block instead of `passive on;`.
fn start_bird_with(pair: &Pair, their_as: u32, our_as: u32, extra: &str) -> (Daemon, String) {
    let (us, them) = (pair.our_addr, pair.their_addr);
    // `direct`: BIRD takes iBGP sessions as multihop unless told otherwise.
    start_bird_config(
        pair,
        &format!(
            r#"log stderr all;
router id {them};
protocol device {{ scan time 1; }}
# Routes learnt by BGP go into the namespace's kernel table (the static blackhole stays out).
protocol kernel {{
  scan time 1;
  ipv4 {{ export where source = RTS_BGP; }};
}}
protocol static {{
  ipv4;
  route 198.19.101.0/24 blackhole;
}}
protocol bgp ours {{
  local {them} as {their_as};
  neighbor {us} as {our_as};
  direct;
  {extra}
  ipv4 {{ import all; export all; }};
}}
"#
        ),
    )
}

/// BIRD in `pair.theirs` with the configuration `config`, once its control socket answers.
fn start_bird_config(pair: &Pair, config: &str) -> (Daemon, String) {
    let bird = need("bird", "bird2");
    let dir = daemon_dir("bird");
    let conf = dir.path().join("bird.conf");
    let socket = dir.path().join("bird.ctl").to_string_lossy().into_owned();
    let pid = dir.path().join("bird.pid").to_string_lossy().into_owned();
    std::fs::write(&conf, config).expect("bird.conf");
    let conf = conf.to_string_lossy().into_owned();
    let daemon = Daemon::spawn(
        "bird",
        &pair.theirs,
        dir,
        &[&bird, "-f", "-c", &conf, "-s", &socket, "-P", &pid],
    );
    // Ready once its control socket answers.
    let birdc_bin = need("birdc", "bird2");
    eventually("BIRD's control socket", || {
        birdc(&birdc_bin, &socket, &["show", "status"])
    });
    (daemon, socket)
}

/// `birdc show route for PREFIX all` once it shows a route from us with our next hop.
fn bird_route_from_us(
    birdc_bin: &str,
    socket: &str,
    prefix: &str,
    us: std::net::Ipv4Addr,
) -> String {
    eventually(&format!("BIRD shows {prefix} from us"), || {
        let out = birdc(birdc_bin, socket, &["show", "route", "for", prefix, "all"])?;
        if out.contains(&format!("BGP.next_hop: {us}")) && out.contains("[ours ") {
            Ok(out)
        } else {
            Err(out)
        }
    })
}

#[test]
fn ibgp_with_bird_exchanges_and_withdraws_routes() {
    let birdc_bin = need("birdc", "bird2");
    let pair = Pair::new("bird", 1);
    let (us, them) = (pair.our_addr, pair.their_addr);
    let (mut daemon, socket) = start_bird(&pair, 64512, 64512);

    // One route before the session is up (sent in the initial table), one after.
    let speaker = Speaker::start(&pair.ours, fast_peer(64512, us, 64512), them, us);
    speaker.originate("198.19.1.0/24");
    let negotiated = speaker.wait_established(&mut daemon);
    assert!(negotiated.ibgp);
    assert_eq!(negotiated.peer_id, them);
    speaker.originate("198.19.2.0/24");

    for prefix in ["198.19.1.0/24", "198.19.2.0/24"] {
        let shown = bird_route_from_us(&birdc_bin, &socket, prefix, us);
        assert!(shown.contains("BGP.origin: IGP"), "{shown}");
        // iBGP: nothing prepended, and the route is usable (unicast via our address).
        assert!(shown.lines().any(|l| l.trim() == "BGP.as_path:"), "{shown}");
        assert!(shown.contains(&format!("via {us} on bgp-them")), "{shown}");
    }

    let (next_hop, attrs) = speaker.wait_for("BIRD's 198.19.101.0/24 in our RIB", |s| {
        s.learnt
            .get(&"198.19.101.0/24".parse().expect("prefix"))
            .cloned()
    });
    assert_eq!(next_hop, IpAddr::V4(them));
    assert_eq!(attrs.origin, Some(Origin::Igp));
    assert_eq!(attrs.as_path, Some(AsPath::default()));
    assert_eq!(attrs.local_pref, Some(100));

    // BIRD installed both in its namespace's kernel, via our address.
    for prefix in ["198.19.1.0/24", "198.19.2.0/24"] {
        eventually(&format!("{prefix} via {us} in BIRD's kernel table"), || {
            let out = pair.theirs.ip(&["-4", "route", "show", prefix])?;
            if out.contains(&format!("via {us} dev bgp-them")) && out.contains("proto bird") {
                Ok(())
            } else {
                Err(out)
            }
        });
    }

    speaker.withdraw("198.19.1.0/24");
    eventually(
        "the withdrawn 198.19.1.0/24 leaves BIRD's kernel table",
        || {
            let out = pair.theirs.ip(&["-4", "route", "show", "198.19.1.0/24"])?;
            if out.trim().is_empty() {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    eventually("BIRD drops the withdrawn 198.19.1.0/24", || {
        // birdc exits 1 with "Network not found" when no table holds the prefix.
        match birdc(
            &birdc_bin,
            &socket,
            &["show", "route", "for", "198.19.1.0/24", "all"],
        ) {
            Err(e) if e.contains("Network not found") => Ok(()),
            Err(e) => Err(e),
            Ok(out) => Err(out),
        }
    });
    // The other one stays.
    let out = birdc(
        &birdc_bin,
        &socket,
        &["show", "route", "for", "198.19.2.0/24"],
    )
    .expect("birdc");
    assert!(out.contains("198.19.2.0/24"), "{out}");
    daemon.check_running();
}

#[test]
fn ebgp_with_bird_and_four_octet_ases() {
    let birdc_bin = need("birdc", "bird2");
    let pair = Pair::new("bird4", 4);
    let (us, them) = (pair.our_addr, pair.their_addr);
    // Both above 65535: only the 4-octet AS capability can carry them.
    let (ours, theirs) = (4_200_000_001, 4_200_000_002);
    let (mut daemon, socket) = start_bird(&pair, theirs, ours);

    let speaker = Speaker::start(&pair.ours, fast_peer(ours, us, theirs), them, us);
    speaker.originate("198.19.4.0/24");
    let negotiated = speaker.wait_established(&mut daemon);
    assert!(!negotiated.ibgp);
    assert_eq!(negotiated.peer_as, theirs);
    assert!(negotiated.encode.four_octet_as && negotiated.decode.four_octet_as);

    let shown = bird_route_from_us(&birdc_bin, &socket, "198.19.4.0/24", us);
    assert!(
        shown.lines().any(|l| l.trim() == "BGP.as_path: 4200000001"),
        "{shown}"
    );
    assert!(shown.contains("BGP.origin: IGP"), "{shown}");
    // (BIRD shows BGP.local_pref 100 here too: it sets its default on import from eBGP.)

    let (next_hop, attrs) = speaker.wait_for("BIRD's 198.19.101.0/24 in our RIB", |s| {
        s.learnt
            .get(&"198.19.101.0/24".parse().expect("prefix"))
            .cloned()
    });
    assert_eq!(next_hop, IpAddr::V4(them));
    assert_eq!(attrs.as_path, Some(AsPath::sequence([theirs])));
    assert_eq!(attrs.local_pref, None);

    speaker.withdraw("198.19.4.0/24");
    eventually("BIRD drops the withdrawn 198.19.4.0/24", || {
        match birdc(
            &birdc_bin,
            &socket,
            &["show", "route", "for", "198.19.4.0/24"],
        ) {
            Err(e) if e.contains("Network not found") => Ok(()),
            Err(e) => Err(e),
            Ok(out) => Err(out),
        }
    });
    daemon.check_running();
}

/// The state BIRD shows for its session with us (`show protocols`).
fn bird_session_state(birdc_bin: &str, socket: &str) -> Result<String, String> {
    let out = birdc(birdc_bin, socket, &["show", "protocols", "ours"])?;
    out.lines()
        .find(|l| l.starts_with("ours "))
        .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
        .ok_or(out)
}

#[test]
fn tcp_md5_with_the_right_password_establishes() {
    let birdc_bin = need("birdc", "bird2");
    let pair = Pair::new("birdmd5", 6);
    let (us, them) = (pair.our_addr, pair.their_addr);
    let (mut daemon, socket) = start_bird_with(
        &pair,
        64512,
        64512,
        "passive on;\n  password \"calico-s3cret\";",
    );
    let tcp = TcpOptions {
        md5_key: Some(b"calico-s3cret".to_vec()),
        local_addr: None,
        ttl: None,
    };
    let speaker = Speaker::start_with(&pair.ours, fast_peer(64512, us, 64512), them, us, tcp);
    speaker.originate("198.19.6.0/24");
    speaker.wait_established(&mut daemon);
    bird_route_from_us(&birdc_bin, &socket, "198.19.6.0/24", us);
    let state = bird_session_state(&birdc_bin, &socket).expect("birdc");
    assert!(state.starts_with("Established"), "{state}");
}

#[test]
fn tcp_md5_with_a_wrong_password_never_establishes() {
    let birdc_bin = need("birdc", "bird2");
    let pair = Pair::new("birdmd5x", 7);
    let (us, them) = (pair.our_addr, pair.their_addr);
    let (mut daemon, socket) = start_bird_with(
        &pair,
        64512,
        64512,
        "passive on;\n  password \"calico-s3cret\";",
    );
    let tcp = TcpOptions {
        md5_key: Some(b"not-the-password".to_vec()),
        local_addr: None,
        ttl: None,
    };
    let speaker = Speaker::start_with(&pair.ours, fast_peer(64512, us, 64512), them, us, tcp);
    // Several connect attempts (retry 1-2 s) in this time; BIRD's kernel drops every SYN.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        speaker.wait_for("speaker state", |s| {
            assert_eq!(s.ups, 0, "came up with a wrong TCP-MD5 key: {s:?}");
            assert!(s.socket_errors.is_empty(), "{s:?}");
            Some(())
        });
        let state = bird_session_state(&birdc_bin, &socket).expect("birdc");
        assert!(!state.contains("Established"), "{state}");
        daemon.check_running();
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn bird_connects_to_our_listener_and_strangers_are_refused() {
    let birdc_bin = need("birdc", "bird2");
    let busybox = need("busybox", "busybox-static");
    let pair = Pair::new("birdact", 8);
    let (us, them) = (pair.our_addr, pair.their_addr);
    // A third namespace, linked to ours, from which an unconfigured address connects.
    let stranger_ns = TestNetns::new("bgp-birdact-x").expect("stranger namespace");
    veth_pair(
        &pair.ours,
        "bgp-x",
        "198.18.9.1/30",
        &stranger_ns,
        "bgp-x-peer",
        "198.18.9.2/30",
    )
    .expect("veth to the stranger");

    // BIRD dials us; we only listen.
    let (mut daemon, socket) = start_bird_with(
        &pair,
        64512,
        64512,
        "passive off;\n  connect delay time 1;\n  connect retry time 1;",
    );
    let cfg = PeerConfig {
        passive: true,
        ..fast_peer(64512, us, 64512)
    };
    let speaker = Speaker::start(&pair.ours, cfg, them, us);
    speaker.originate("198.19.8.0/24");
    speaker.wait_established(&mut daemon);
    bird_route_from_us(&birdc_bin, &socket, "198.19.8.0/24", us);
    let stats = speaker.wait_for("our listener", |s| s.listener.clone());
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 1);

    // The stranger reaches our port 179 and is closed at once without a byte (no OPEN).
    for _ in 0..3 {
        let out = exec(
            &stranger_ns,
            &[&busybox, "nc", "-w", "5", "198.18.9.1", "179"],
        )
        .expect("nc from the stranger");
        assert_eq!(out, "", "the stranger was sent something");
    }
    assert_eq!(stats.refused.load(Ordering::Relaxed), 3);
    // BIRD's session is untouched.
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 1);
    let state = bird_session_state(&birdc_bin, &socket).expect("birdc");
    assert!(state.starts_with("Established"), "{state}");
    speaker.wait_for("one session, never reset", |s| {
        (s.ups == 1 && s.downs.is_empty()).then_some(())
    });
}

#[test]
fn ipv6_unicast_over_an_ipv6_session_with_bird() {
    let birdc_bin = need("birdc", "bird2");
    let pair = Pair::new("bird6", 10);
    let (us6, them6) = pair.add_v6(10);
    let them = pair.their_addr;
    let (mut daemon, socket) = start_bird_config(
        &pair,
        &format!(
            r#"log stderr all;
router id {them};
protocol device {{ scan time 1; }}
protocol kernel {{
  scan time 1;
  ipv6 {{ export where source = RTS_BGP; }};
}}
protocol static {{
  ipv6;
  route 2001:2:0:110::/64 blackhole;
}}
protocol bgp ours {{
  local {them6} as 64512;
  neighbor {us6} as 64512;
  direct;
  passive on;
  ipv6 {{ import all; export all; }};
}}
"#
        ),
    );
    let cfg = PeerConfig {
        families: vec![Family::IPV6_UNICAST],
        ..fast_peer(64512, pair.our_addr, 64512)
    };
    let speaker = Speaker::start_v6(&pair.ours, cfg, them6, us6, pair.our_addr);
    speaker.originate("2001:2:0:10::/64");
    let negotiated = speaker.wait_established(&mut daemon);
    assert_eq!(negotiated.families, vec![Family::IPV6_UNICAST]);
    speaker.originate("2001:2:0:11::/64");

    for prefix in ["2001:2:0:10::/64", "2001:2:0:11::/64"] {
        let shown = eventually(&format!("BIRD shows {prefix} from us"), || {
            let out = birdc(
                &birdc_bin,
                &socket,
                &["show", "route", "for", prefix, "all"],
            )?;
            if out.contains("[ours ") && out.contains(&format!("via {us6} on bgp-them")) {
                Ok(out)
            } else {
                Err(out)
            }
        });
        assert!(shown.contains(&format!("BGP.next_hop: {us6}")), "{shown}");
        eventually(
            &format!("{prefix} via {us6} in BIRD's kernel table"),
            || {
                let out = pair.theirs.ip(&["-6", "route", "show", prefix])?;
                if out.contains(&format!("via {us6} dev bgp-them")) {
                    Ok(())
                } else {
                    Err(out)
                }
            },
        );
    }

    let (next_hop, _) = speaker.wait_for("BIRD's 2001:2:0:110::/64 in our RIB", |s| {
        s.learnt
            .get(&"2001:2:0:110::/64".parse().expect("prefix"))
            .cloned()
    });
    assert_eq!(next_hop, IpAddr::V6(them6));

    speaker.withdraw("2001:2:0:10::/64");
    eventually(
        "the withdrawn 2001:2:0:10::/64 leaves BIRD",
        || match birdc(
            &birdc_bin,
            &socket,
            &["show", "route", "for", "2001:2:0:10::/64"],
        ) {
            Err(e) if e.contains("Network not found") => Ok(()),
            Err(e) => Err(e),
            Ok(out) => Err(out),
        },
    );
    eventually(
        "the withdrawn 2001:2:0:10::/64 leaves BIRD's kernel table",
        || {
            let out = pair
                .theirs
                .ip(&["-6", "route", "show", "2001:2:0:10::/64"])?;
            if out.trim().is_empty() {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    daemon.check_running();
}

#[test]
fn add_path_with_bird_carries_both_paths_of_a_prefix() {
    let birdc_bin = need("birdc", "bird2");
    let pair = Pair::new("birdap", 11);
    let (us, them) = (pair.our_addr, pair.their_addr);
    // Two protocols originate the same prefix: BIRD holds two paths and, with ADD-PATH
    // (Calico's template turns it on), sends both.
    let (mut daemon, socket) = start_bird_config(
        &pair,
        &format!(
            r#"log stderr all;
router id {them};
protocol device {{ scan time 1; }}
protocol static one {{
  ipv4;
  route 198.19.111.0/24 blackhole;
}}
protocol static two {{
  ipv4;
  route 198.19.111.0/24 unreachable;
}}
protocol bgp ours {{
  local {them} as 64512;
  neighbor {us} as 64512;
  direct;
  passive on;
  ipv4 {{ add paths on; import all; export all; }};
}}
"#
        ),
    );
    let cfg = PeerConfig {
        add_path: vec![AddPathFamily {
            family: Family::IPV4_UNICAST,
            mode: AddPathMode::Both,
        }],
        ..fast_peer(64512, us, 64512)
    };
    let speaker = Speaker::start(&pair.ours, cfg, them, us);
    speaker.originate("198.19.11.0/24");
    let negotiated = speaker.wait_established(&mut daemon);
    assert_eq!(negotiated.decode.add_path, vec![Family::IPV4_UNICAST]);
    assert_eq!(negotiated.encode.add_path, vec![Family::IPV4_UNICAST]);

    let ids = speaker.wait_for("both of BIRD's paths to 198.19.111.0/24", |s| {
        s.path_ids
            .get(&"198.19.111.0/24".parse().expect("prefix"))
            .filter(|ids| ids.len() == 2)
            .cloned()
    });
    assert_ne!(ids[0], ids[1], "distinct path identifiers");

    // Our route, sent with a path identifier, reads back right in BIRD.
    let shown = bird_route_from_us(&birdc_bin, &socket, "198.19.11.0/24", us);
    assert!(shown.contains("BGP.origin: IGP"), "{shown}");
    speaker.withdraw("198.19.11.0/24");
    eventually("BIRD drops the withdrawn 198.19.11.0/24", || {
        match birdc(
            &birdc_bin,
            &socket,
            &["show", "route", "for", "198.19.11.0/24"],
        ) {
            Err(e) if e.contains("Network not found") => Ok(()),
            Err(e) => Err(e),
            Ok(out) => Err(out),
        }
    });
    daemon.check_running();
}
