//! Our speaker against GoBGP 3 (Debian `gobgpd`) over iBGP, in network namespaces (root).
//!
//! gobgpd's API listens on the daemon namespace's loopback. Asserts what `gobgp global rib -j`
//! shows for prefixes we originate and withdraw, and that a route added with `gobgp global rib
//! add` reaches our RIB.

mod support;

use std::net::IpAddr;

use calico_bgp::wire::{AsPath, Origin};
use calico_testutil::netns::TestNetns;
use serde_json::Value;
use support::{Daemon, Pair, Speaker, daemon_dir, eventually, exec, fast_peer, need};

const API: &str = "50051";

fn gobgp(gobgp: &str, ns: &TestNetns, args: &[&str]) -> Result<String, String> {
    let mut argv = vec![gobgp, "-u", "127.0.0.1", "-p", API];
    argv.extend_from_slice(args);
    exec(ns, &argv)
}

/// GoBGP's IPv4 global RIB: prefix to its paths.
fn rib(bin: &str, ns: &TestNetns) -> Result<serde_json::Map<String, Value>, String> {
    let text = gobgp(bin, ns, &["global", "rib", "-a", "ipv4", "-j"])?;
    // An empty RIB prints nothing or `{}`.
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        other => Err(format!("{other:?}: {text}")),
    }
}

/// The attribute of `type_code` in one path's `attrs` list.
fn attr(path: &Value, type_code: u64) -> Option<&Value> {
    path["attrs"]
        .as_array()?
        .iter()
        .find(|a| a["type"].as_u64() == Some(type_code))
}

#[test]
fn ibgp_with_gobgp_exchanges_and_withdraws_routes() {
    let gobgpd = need("gobgpd", "gobgpd");
    let gobgp_bin = need("gobgp", "gobgpd");
    let pair = Pair::new("gobgp", 3);
    let (us, them) = (pair.our_addr, pair.their_addr);

    let dir = daemon_dir("gobgp");
    let conf = dir.path().join("gobgpd.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[global.config]
  as = 64512
  router-id = "{them}"
  local-address-list = ["{them}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{us}"
    peer-as = 64512
  [neighbors.transport.config]
    passive-mode = true
"#
        ),
    )
    .expect("gobgpd.toml");
    let conf = conf.to_string_lossy().into_owned();
    let api = format!("127.0.0.1:{API}");
    let mut daemon = Daemon::spawn(
        "gobgpd",
        &pair.theirs,
        dir,
        &[
            &gobgpd,
            "-f",
            &conf,
            "-t",
            "toml",
            "--api-hosts",
            &api,
            "--pprof-disable",
        ],
    );
    eventually("GoBGP takes a route of its own", || {
        gobgp(
            &gobgp_bin,
            &pair.theirs,
            &[
                "global",
                "rib",
                "add",
                "-a",
                "ipv4",
                "198.19.103.0/24",
                "origin",
                "igp",
            ],
        )
    });

    let speaker = Speaker::start(&pair.ours, fast_peer(64512, us, 64512), them, us);
    speaker.originate("198.19.1.0/24");
    let negotiated = speaker.wait_established(&mut daemon);
    assert!(negotiated.ibgp);
    assert_eq!(negotiated.peer_id, them);
    speaker.originate("198.19.2.0/24");

    for prefix in ["198.19.1.0/24", "198.19.2.0/24"] {
        let path = eventually(&format!("GoBGP shows {prefix} from us"), || {
            let routes = rib(&gobgp_bin, &pair.theirs)?;
            routes
                .get(prefix)
                .and_then(|paths| paths.get(0))
                .cloned()
                .ok_or_else(|| format!("{routes:?}"))
        });
        assert_eq!(path["neighbor-ip"], us.to_string(), "{path}");
        assert_eq!(path["best"], true, "{path}");
        assert_eq!(
            attr(&path, 3).map(|a| &a["nexthop"]),
            Some(&Value::from(us.to_string())),
            "{path}"
        );
        // ORIGIN IGP (0), LOCAL_PREF 100.
        assert_eq!(
            attr(&path, 1).map(|a| &a["value"]),
            Some(&Value::from(0)),
            "{path}"
        );
        assert_eq!(
            attr(&path, 5).map(|a| &a["value"]),
            Some(&Value::from(100)),
            "{path}"
        );
    }

    let (next_hop, attrs) = speaker.wait_for("GoBGP's 198.19.103.0/24 in our RIB", |s| {
        s.learnt
            .get(&"198.19.103.0/24".parse().expect("prefix"))
            .cloned()
    });
    assert_eq!(next_hop, IpAddr::V4(them));
    assert_eq!(attrs.origin, Some(Origin::Igp));
    assert_eq!(attrs.as_path, Some(AsPath::default()));
    assert_eq!(attrs.local_pref, Some(100));

    speaker.withdraw("198.19.1.0/24");
    eventually("GoBGP drops the withdrawn 198.19.1.0/24", || {
        let routes = rib(&gobgp_bin, &pair.theirs)?;
        if routes.contains_key("198.19.1.0/24") {
            Err(format!("{routes:?}"))
        } else if !routes.contains_key("198.19.2.0/24") {
            Err(format!("the other route went too: {routes:?}"))
        } else {
            Ok(())
        }
    });
    daemon.check_running();
}
