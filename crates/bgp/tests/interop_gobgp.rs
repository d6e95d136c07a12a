//! Our speaker against GoBGP 3 (Debian `gobgpd`) over iBGP, in network namespaces (root).
//!
//! gobgpd's API listens on the daemon namespace's loopback. Asserts what `gobgp global rib -j`
//! shows for prefixes we originate and withdraw, and that a route added with `gobgp global rib
//! add` reaches our RIB.

mod support;

use std::net::IpAddr;

use calico_bgp::wire::{AsPath, Origin};
use serde_json::Value;
use support::{Pair, Speaker, eventually, fast_peer, gobgp};

#[test]
fn ibgp_with_gobgp_exchanges_and_withdraws_routes() {
    let pair = Pair::new("gobgp", 3);
    let (us, them) = (pair.our_addr, pair.their_addr);

    let mut daemon = gobgp::start(
        &pair.theirs,
        &format!(
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
    );
    gobgp::add(&pair.theirs, "198.19.103.0/24");

    let speaker = Speaker::start(&pair.ours, fast_peer(64512, us, 64512), them, us);
    speaker.originate("198.19.1.0/24");
    let negotiated = speaker.wait_established(&mut daemon);
    assert!(negotiated.ibgp);
    assert_eq!(negotiated.peer_id, them);
    speaker.originate("198.19.2.0/24");

    for prefix in ["198.19.1.0/24", "198.19.2.0/24"] {
        let path = eventually(&format!("GoBGP shows {prefix} from us"), || {
            let routes = gobgp::rib(&pair.theirs)?;
            routes
                .get(prefix)
                .and_then(|paths| paths.get(0))
                .cloned()
                .ok_or_else(|| format!("{routes:?}"))
        });
        assert_eq!(path["neighbor-ip"], us.to_string(), "{path}");
        assert_eq!(path["best"], true, "{path}");
        assert_eq!(
            gobgp::attr(&path, 3).map(|a| &a["nexthop"]),
            Some(&Value::from(us.to_string())),
            "{path}"
        );
        // ORIGIN IGP (0), LOCAL_PREF 100.
        assert_eq!(
            gobgp::attr(&path, 1).map(|a| &a["value"]),
            Some(&Value::from(0)),
            "{path}"
        );
        assert_eq!(
            gobgp::attr(&path, 5).map(|a| &a["value"]),
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
        let routes = gobgp::rib(&pair.theirs)?;
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
