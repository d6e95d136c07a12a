//! Our speaker against FRR 8 (Debian `frr`) over iBGP, in network namespaces (root).
//!
//! FRR's bgpd runs as user frr without zebra (`-Z`: BGP only, nothing for the kernel), with its
//! own vty socket directory. Asserts what `vtysh -c 'show bgp ipv4 unicast json'` shows for
//! prefixes we originate and withdraw, and that FRR's `network` route reaches our RIB.

mod support;

use std::net::IpAddr;
use std::path::Path;

use calico_bgp::wire::{AsPath, Origin};
use serde_json::Value;
use support::{Pair, Speaker, eventually, fast_peer, frr};

/// FRR's view of the IPv4 unicast table: prefix to its paths.
fn frr_routes(vty_dir: &Path) -> Result<serde_json::Map<String, Value>, String> {
    let text = frr::vtysh(vty_dir, "show bgp ipv4 unicast json")?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    match v.get("routes") {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(format!("no routes object: {text}")),
    }
}

#[test]
fn ibgp_with_frr_exchanges_and_withdraws_routes() {
    let pair = Pair::new("frr", 2);
    let (us, them) = (pair.our_addr, pair.their_addr);

    let (mut daemon, vty_dir) = frr::start_bgpd(
        &pair.theirs,
        &format!(
            "frr defaults traditional
hostname calico-bgp-test
router bgp 64512
 bgp router-id {them}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {us} remote-as 64512
 neighbor {us} passive
 address-family ipv4 unicast
  network 198.19.102.0/24
 exit-address-family
"
        ),
    );

    let speaker = Speaker::start(&pair.ours, fast_peer(64512, us, 64512), them, us);
    speaker.originate("198.19.1.0/24");
    let negotiated = speaker.wait_established(&mut daemon);
    assert!(negotiated.ibgp);
    assert_eq!(negotiated.peer_id, them);
    speaker.originate("198.19.2.0/24");

    for prefix in ["198.19.1.0/24", "198.19.2.0/24"] {
        let path = eventually(&format!("FRR shows {prefix} from us"), || {
            let routes = frr_routes(&vty_dir)?;
            routes
                .get(prefix)
                .and_then(|paths| paths.get(0))
                .cloned()
                .ok_or_else(|| format!("{routes:?}"))
        });
        assert_eq!(path["peerId"], us.to_string(), "{path}");
        assert_eq!(path["nexthops"][0]["ip"], us.to_string(), "{path}");
        assert_eq!(path["pathFrom"], "internal", "{path}");
        assert_eq!(path["valid"], true, "{path}");
        assert_eq!(path["origin"], "IGP", "{path}");
        assert_eq!(path["path"], "", "{path}");
        assert_eq!(path["locPrf"], 100, "{path}");
    }

    let (next_hop, attrs) = speaker.wait_for("FRR's 198.19.102.0/24 in our RIB", |s| {
        s.learnt
            .get(&"198.19.102.0/24".parse().expect("prefix"))
            .cloned()
    });
    assert_eq!(next_hop, IpAddr::V4(them));
    assert_eq!(attrs.origin, Some(Origin::Igp));
    assert_eq!(attrs.as_path, Some(AsPath::default()));
    assert_eq!(attrs.local_pref, Some(100));

    speaker.withdraw("198.19.1.0/24");
    eventually("FRR drops the withdrawn 198.19.1.0/24", || {
        let routes = frr_routes(&vty_dir)?;
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
