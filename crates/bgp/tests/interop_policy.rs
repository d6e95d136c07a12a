//! Route policy of the `calico-bgp-speaker` process (our [`Speaker`](calico_bgp::speaker::Speaker))
//! with BIRD 2 on a LAN of network namespaces (root): communities on the prefixes we
//! originate, routes with our own AS in their path (`allow_local_as`), an export filter
//! testing prefix lengths and adding a community. Timers are short (hold 3 s, retries 1 s).

mod support;

use support::bird::{self, Bird};
use support::eventually;
use support::lan::Lan;
use support::ours::{self, Ours};

/// `birdc show route for PREFIX all` once `ok` accepts it.
fn bird_route_where(bird: &Bird, prefix: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    eventually(&format!("BIRD shows {prefix} {what}"), || {
        let out = bird.route(prefix)?;
        if ok(&out) { Ok(out) } else { Err(out) }
    })
}

/// The value of attribute `name` (`BGP.community`) in a `show route all` listing, spaces
/// removed; `None` when BIRD shows no such attribute.
fn attribute(shown: &str, name: &str) -> Option<String> {
    shown.lines().find_map(|l| {
        l.trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.split_whitespace().collect::<String>())
    })
}

#[test]
fn bird_sees_the_communities_of_what_we_originate() {
    let lan = Lan::new("comm", 50);
    let (n1, n2) = (lan.node(1), lan.node(2));
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(n2.addr, &[], &bird::ibgp_peer("n1", n2.addr, n1.addr, "")),
        &[],
    );
    let mut ours = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, n1.addr, vec![ours::peer(n2.addr, 64512)], &[]),
    );
    ours.wait_established(n2.addr);
    bird.wait_established("n1");

    let prefix = "198.19.50.0/24";
    ours.send(&format!("originate {prefix} 65001:100 65000:1 65001:7:9"));
    let shown = bird_route_where(&bird, prefix, "with communities", |out| {
        attribute(out, "BGP.community").is_some()
    });
    assert_eq!(
        attribute(&shown, "BGP.community").as_deref(),
        Some("(65000,1)(65001,100)"),
        "{shown}"
    );
    assert_eq!(
        attribute(&shown, "BGP.large_community").as_deref(),
        Some("(65001,7,9)"),
        "{shown}"
    );

    // Originated again with other communities: BIRD's route changes to them.
    ours.send(&format!("originate {prefix} 65001:200"));
    let shown = bird_route_where(&bird, prefix, "with the new community", |out| {
        attribute(out, "BGP.community").as_deref() == Some("(65001,200)")
    });
    assert_eq!(attribute(&shown, "BGP.large_community"), None, "{shown}");

    // And without any.
    ours.send(&format!("originate {prefix}"));
    let shown = bird_route_where(&bird, prefix, "without communities", |out| {
        out.contains("BGP.next_hop") && attribute(out, "BGP.community").is_none()
    });
    assert_eq!(attribute(&shown, "BGP.large_community"), None, "{shown}");
    bird.daemon.check_running();
}

#[test]
fn routes_with_our_as_in_the_path_are_accepted_as_often_as_allowed() {
    let lan = Lan::new("allowas", 51);
    let (n1, n2) = (lan.node(1), lan.node(2));
    // BIRD (AS 65001) sends 198.19.51.0/24 with our AS 64512 in its path, 198.19.52.0/24
    // without.
    let protocol = format!(
        r#"protocol bgp n1 {{
  local {bird} as 65001;
  neighbor {us} as 64512;
  direct;
  hold time 3;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 {{
    import all;
    export filter {{
      if net = 198.19.51.0/24 then bgp_path.prepend(64512);
      accept;
    }};
  }};
}}
"#,
        bird = n2.addr,
        us = n1.addr
    );
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(n2.addr, &["198.19.51.0/24", "198.19.52.0/24"], &protocol),
        &[],
    );
    let peer = |allow: u32| {
        let mut p = ours::peer(n2.addr, 65001);
        p["allow_local_as"] = serde_json::json!(allow);
        p
    };
    let mut ours = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, n1.addr, vec![peer(0)], &[]),
    );
    ours.wait_established(n2.addr);
    bird.wait_established("n1");

    // N = 0: both arrive, the one with our AS is refused.
    ours.wait("198.19.52.0/24 from BIRD", |s| {
        s.routes.contains_key("198.19.52.0/24").then_some(())
    });
    let st = ours.wait_peer(n2.addr, "both routes received", |s| s["received"] == 2);
    assert_eq!(st["accepted"], 1, "{st}");
    assert_eq!(ours.route("198.19.51.0/24"), None);

    // N = 1: asked for again, and accepted.
    ours.reload(&ours::config(64512, n1.addr, vec![peer(1)], &[]));
    ours.wait("198.19.51.0/24 accepted", |s| {
        s.routes.get("198.19.51.0/24").cloned()
    });
    let st = ours.wait_peer(n2.addr, "both routes accepted", |s| s["accepted"] == 2);
    assert_eq!(st["received"], 2, "{st}");
    assert_eq!(
        ours.route("198.19.52.0/24"),
        Some(vec![n2.addr.to_string()])
    );
    bird.daemon.check_running();
}

#[test]
fn export_filter_by_prefix_length_with_an_added_community() {
    let lan = Lan::new("expf", 52);
    let (n1, n2) = (lan.node(1), lan.node(2));
    let mut bird = Bird::start(
        &n2.ns,
        &bird::config(n2.addr, &[], &bird::ibgp_peer("n1", n2.addr, n1.addr, "")),
        &[],
    );
    // Nothing longer than /24 in 198.19.0.0/16; the rest with 65001:100 added.
    let mut peer = ours::peer(n2.addr, 64512);
    peer["export"] = serde_json::json!([
        {
            "cidr": "198.19.0.0/16",
            "matchOperator": "In",
            "prefixLength": {"min": 25, "max": 32},
            "action": "Reject",
        },
        {
            "cidr": "198.19.0.0/16",
            "matchOperator": "In",
            "action": "Accept",
            "addCommunity": ["65001:100"],
        },
    ]);
    let mut ours = Ours::start(
        "ours",
        &n1.ns,
        &ours::config(64512, n1.addr, vec![peer], &[]),
    );
    ours.wait_established(n2.addr);
    bird.wait_established("n1");

    ours.send("originate 198.19.52.0/24 65000:1");
    ours.send("originate 198.19.53.0/26");
    ours.send("originate 198.19.54.0/24");
    for prefix in ["198.19.52.0/24", "198.19.54.0/24"] {
        bird_route_where(&bird, prefix, "from us", |out| out.contains("BGP.next_hop"));
    }
    let st = ours.peer_status(n2.addr);
    assert_eq!(st["advertised"], 2, "the /26 is held back: {st}");
    match bird.route("198.19.53.0/26") {
        Err(e) if e.contains("Network not found") => {}
        other => panic!("BIRD has the /26: {other:?}"),
    }
    let shown = bird.route("198.19.52.0/24").expect("route");
    assert_eq!(
        attribute(&shown, "BGP.community").as_deref(),
        Some("(65000,1)(65001,100)"),
        "{shown}"
    );
    let shown = bird.route("198.19.54.0/24").expect("route");
    assert_eq!(
        attribute(&shown, "BGP.community").as_deref(),
        Some("(65001,100)"),
        "{shown}"
    );
    bird.daemon.check_running();
}
