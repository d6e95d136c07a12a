//! Our speaker against BIRD 2 (Debian `bird2`) over iBGP, in network namespaces (root).
//!
//! Asserts what `birdc show route all` shows for prefixes we originate (next hop ours) and
//! withdraw, and that BIRD's own static route reaches our RIB with BIRD's next hop.

mod support;

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use calico_bgp::wire::{AsPath, Origin};
use calico_testutil::netns::{checked_stdout, run_with_timeout};
use support::{Daemon, Pair, Speaker, daemon_dir, eventually, fast_peer, need};

fn birdc(birdc: &str, socket: &str, args: &[&str]) -> Result<String, String> {
    let out = run_with_timeout(
        Command::new(birdc).args(["-s", socket]).args(args),
        Duration::from_secs(10),
    )?;
    checked_stdout(out, "birdc")
}

#[test]
fn ibgp_with_bird_exchanges_and_withdraws_routes() {
    let bird = need("bird", "bird2");
    let birdc_bin = need("birdc", "bird2");
    let pair = Pair::new("bird", 1);
    let (us, them) = (pair.our_addr, pair.their_addr);

    let dir = daemon_dir("bird");
    let conf = dir.path().join("bird.conf");
    let socket = dir.path().join("bird.ctl").to_string_lossy().into_owned();
    let pid = dir.path().join("bird.pid").to_string_lossy().into_owned();
    std::fs::write(
        &conf,
        format!(
            r#"log stderr all;
router id {them};
protocol device {{ scan time 1; }}
protocol static {{
  ipv4;
  route 198.19.101.0/24 blackhole;
}}
protocol bgp ours {{
  local {them} as 64512;
  neighbor {us} as 64512;
  passive on;
  direct;
  ipv4 {{ import all; export all; }};
}}
"#
        ),
    )
    .expect("bird.conf");
    let conf = conf.to_string_lossy().into_owned();
    let mut daemon = Daemon::spawn(
        "bird",
        &pair.theirs,
        dir,
        &[&bird, "-f", "-c", &conf, "-s", &socket, "-P", &pid],
    );

    // One route before the session is up (sent in the initial table), one after.
    let speaker = Speaker::start(&pair.ours, fast_peer(64512, us, 64512), them, us);
    speaker.originate("198.19.1.0/24");
    let negotiated = speaker.wait_established(&mut daemon);
    assert!(negotiated.ibgp);
    assert_eq!(negotiated.peer_id, them);
    speaker.originate("198.19.2.0/24");

    for prefix in ["198.19.1.0/24", "198.19.2.0/24"] {
        let shown = eventually(&format!("BIRD shows {prefix} from us"), || {
            let out = birdc(
                &birdc_bin,
                &socket,
                &["show", "route", "for", prefix, "all"],
            )?;
            if out.contains(&format!("BGP.next_hop: {us}")) && out.contains("[ours ") {
                Ok(out)
            } else {
                Err(out)
            }
        });
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

    speaker.withdraw("198.19.1.0/24");
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
