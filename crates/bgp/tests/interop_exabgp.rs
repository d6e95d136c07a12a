//! Our speaker (AS 4200000001) over eBGP with ExaBGP 4.2 (Debian `exabgp`) configured with
//! `asn4 disable`, i.e. a speaker without 4-octet AS support (RFC 6793), in network namespaces
//! (root). ExaBGP knows us as AS_TRANS (23456); what it receives is dumped as JSON by an API
//! helper into a file.

mod support;

use std::net::IpAddr;
use std::path::Path;

use calico_bgp::wire::AsPath;
use serde_json::Value;
use support::{Daemon, Pair, Speaker, daemon_dir, eventually, fast_peer, need};

const OUR_AS: u32 = 4_200_000_001;
const EXA_AS: u32 = 65002;
const AS_TRANS: u32 = 23456;

/// Every UPDATE ExaBGP's API helper has written so far, as JSON.
fn received_updates(file: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "update")
        .collect())
}

#[test]
fn ebgp_with_exabgp_without_four_octet_as() {
    let exabgp = need("exabgp", "exabgp");
    let pair = Pair::new("exa", 5);
    let (us, them) = (pair.our_addr, pair.their_addr);

    let dir = daemon_dir("exabgp");
    let received = dir.path().join("received.json");
    let helper = dir.path().join("dump.sh");
    // The helper must keep its stdout open: ExaBGP takes a hang-up on it for a dead helper.
    std::fs::write(
        &helper,
        format!("#!/bin/sh\ncat > '{}'\n", received.display()),
    )
    .expect("helper");
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod helper");
    let conf = dir.path().join("exabgp.conf");
    std::fs::write(
        &conf,
        format!(
            "process dump {{
  run {helper};
  encoder json;
}}
neighbor {us} {{
  router-id {them};
  local-address {them};
  local-as {EXA_AS};
  peer-as {AS_TRANS};
  passive true;
  hold-time 30;
  capability {{ asn4 disable; }}
  api {{ processes [ dump ]; receive {{ parsed; update; }} }}
  static {{ route 198.19.105.0/24 next-hop self; }}
}}
",
            helper = helper.display()
        ),
    )
    .expect("exabgp.conf");
    let conf = conf.to_string_lossy().into_owned();
    let pid = dir.path().join("exabgp.pid").to_string_lossy().into_owned();
    let bind = them.to_string();
    let mut daemon = Daemon::spawn_with_env(
        "exabgp",
        &pair.theirs,
        dir,
        &[&exabgp, &conf],
        &[
            ("exabgp.daemon.user", "root"),
            ("exabgp.daemon.daemonize", "false"),
            ("exabgp.daemon.pid", &pid),
            ("exabgp.log.destination", "stdout"),
            ("exabgp.api.cli", "false"),
            ("exabgp.tcp.bind", &bind),
            ("exabgp.tcp.port", "179"),
        ],
    );

    let speaker = Speaker::start(&pair.ours, fast_peer(OUR_AS, us, EXA_AS), them, us);
    speaker.originate("198.19.5.0/24");
    let negotiated = speaker.wait_established(&mut daemon);
    assert!(!negotiated.ibgp);
    assert_eq!(negotiated.peer_as, EXA_AS);
    // The peer sent no 4-octet AS capability: 2-octet AS_PATHs both ways.
    assert!(!negotiated.encode.four_octet_as && !negotiated.decode.four_octet_as);

    let update = eventually("ExaBGP receives 198.19.5.0/24", || {
        let updates = received_updates(&received)?;
        updates
            .iter()
            .find(|u| u.to_string().contains("198.19.5.0/24"))
            .cloned()
            .ok_or_else(|| format!("{updates:?}"))
    });
    let neighbor = &update["neighbor"];
    // ExaBGP saw our OPEN's 2-octet My AS: AS_TRANS.
    assert_eq!(neighbor["asn"]["peer"], AS_TRANS, "{update}");
    let u = &neighbor["message"]["update"];
    // Our next hop, as the key of the announcement.
    assert_eq!(
        u["announce"]["ipv4 unicast"][us.to_string()][0]["nlri"],
        "198.19.5.0/24",
        "{update}"
    );
    // A 2-octet AS_PATH cannot hold 4200000001: ExaBGP rebuilt it from the AS4_PATH we sent
    // beside AS_PATH [23456] (RFC 6793 §4.2.3).
    assert_eq!(
        u["attribute"]["as-path"],
        serde_json::json!([OUR_AS]),
        "{update}"
    );
    assert_eq!(u["attribute"]["origin"], "igp", "{update}");

    let (next_hop, attrs) = speaker.wait_for("ExaBGP's 198.19.105.0/24 in our RIB", |s| {
        s.learnt
            .get(&"198.19.105.0/24".parse().expect("prefix"))
            .cloned()
    });
    assert_eq!(next_hop, IpAddr::V4(them));
    assert_eq!(attrs.as_path, Some(AsPath::sequence([EXA_AS])));

    speaker.withdraw("198.19.5.0/24");
    eventually("ExaBGP receives the withdrawal of 198.19.5.0/24", || {
        let updates = received_updates(&received)?;
        updates
            .iter()
            .find(|u| {
                u["neighbor"]["message"]["update"]["withdraw"]["ipv4 unicast"][0]["nlri"]
                    == "198.19.5.0/24"
            })
            .map(|_| ())
            .ok_or_else(|| format!("{updates:?}"))
    });
    daemon.check_running();
}
