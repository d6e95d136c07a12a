//! The API's own logic, and speakers of ours peering over loopback (127.0.0.x, ports chosen
//! by the kernel), so no namespace or root is needed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::core::{restart_needed, session_config};
use super::*;
use crate::policy::{FilterRule, MatchOperator, RuleAction};
use crate::wire::Family;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

#[test]
fn only_session_parameters_need_a_restart() {
    let old = PeerSettings::new(IpAddr::V4(v4("198.18.0.2")), 64512);
    let mut new = old.clone();
    new.rr_client = true;
    new.next_hop = NextHopMode::OurAddress;
    new.export.rules.push(FilterRule::new(
        net("198.19.0.0/16"),
        MatchOperator::In,
        RuleAction::Reject,
    ));
    new.import = new.export.clone();
    assert!(!restart_needed(&old, &new));
    for change in [
        |p: &mut PeerSettings| p.hold_time = 3,
        |p: &mut PeerSettings| p.keepalive = Some(1),
        |p: &mut PeerSettings| p.password = Some("secret".into()),
        |p: &mut PeerSettings| p.passive = true,
        |p: &mut PeerSettings| p.graceful_restart_time = None,
        |p: &mut PeerSettings| p.port = 1179,
        |p: &mut PeerSettings| p.remote_as = 64513,
    ] {
        let mut changed = old.clone();
        change(&mut changed);
        assert!(restart_needed(&old, &changed), "{changed:?}");
    }
}

#[test]
fn session_config_follows_the_settings() {
    let mut speaker = SpeakerConfig::new(64512, v4("198.18.0.1"));
    let mut peer = PeerSettings::new(IpAddr::V4(v4("198.18.0.2")), 64513);
    peer.password = Some("pw".into());
    peer.graceful_restart_time = Some(30);
    peer.hold_time = 3;
    let (cfg, tcp) = session_config(&speaker, &peer);
    assert_eq!(cfg.families, vec![Family::IPV4_UNICAST]);
    assert_eq!(tcp.md5_key.as_deref(), Some(&b"pw"[..]));
    assert_eq!(cfg.hold_time, 3);
    let gr = cfg.graceful_restart.expect("graceful restart");
    assert_eq!(gr.restart_time, 30);
    assert!(!gr.restarting && !gr.forwarding_preserved);

    speaker.restarting = true;
    let (cfg, _) = session_config(&speaker, &peer);
    let gr = cfg.graceful_restart.expect("graceful restart");
    assert!(gr.restarting && gr.forwarding_preserved);

    peer.address = "2001:2::2".parse().expect("address");
    peer.graceful_restart_time = None;
    let (cfg, tcp) = session_config(&speaker, &peer);
    assert_eq!(cfg.families, vec![Family::IPV6_UNICAST]);
    assert_eq!(cfg.graceful_restart, None);
    assert!(tcp.md5_key.is_some());
}

#[test]
fn ttl_is_one_toward_ebgp_peers_unless_multihop() {
    let speaker = SpeakerConfig::new(64512, v4("198.18.0.1"));
    let mut ebgp = PeerSettings::new(IpAddr::V4(v4("198.18.0.2")), 64513);
    assert_eq!(session_config(&speaker, &ebgp).1.ttl, Some(1));
    ebgp.multihop = Some(2);
    assert_eq!(session_config(&speaker, &ebgp).1.ttl, Some(2));
    let mut ibgp = PeerSettings::new(IpAddr::V4(v4("198.18.0.3")), 64512);
    assert_eq!(session_config(&speaker, &ibgp).1.ttl, Some(64));
    ibgp.multihop = Some(5);
    assert_eq!(session_config(&speaker, &ibgp).1.ttl, Some(5));
    // A TTL change is a change of the TCP connection: the session restarts.
    let before = PeerSettings::new(IpAddr::V4(v4("198.18.0.2")), 64513);
    assert!(restart_needed(&before, &ebgp));
    assert!(!restart_needed(&before, &before.clone()));
}

const WAIT: Duration = Duration::from_secs(15);

/// A speaker of ours listening on `addr`:0 (iBGP AS 64512, router id `addr`).
async fn loopback_speaker(addr: &str) -> (Speaker, RouteStream, u16) {
    let ip = v4(addr);
    let cfg = SpeakerConfig {
        listen: Some(SocketAddr::from((ip, 0))),
        ..SpeakerConfig::new(64512, ip)
    };
    let (speaker, routes) = Speaker::start(cfg).await.expect("speaker starts");
    let port = speaker.local_addr().expect("listening").port();
    (speaker, routes, port)
}

/// Peer settings toward the speaker at `to`:`port`, connecting from `from`, test-fast.
fn peer(to: &str, port: u16, from: &str, passive: bool) -> PeerSettings {
    PeerSettings {
        port,
        passive,
        hold_time: 3,
        local_address: Some(IpAddr::V4(v4(from))),
        connect_retry: Duration::from_millis(300),
        error_wait: Duration::from_millis(300),
        ..PeerSettings::new(IpAddr::V4(v4(to)), 64512)
    }
}

async fn status_of(speaker: &Speaker, addr: &str) -> PeerStatus {
    let addr: IpAddr = addr.parse().expect("address");
    speaker
        .status()
        .await
        .expect("status")
        .into_iter()
        .find(|p| p.address == addr)
        .expect("peer in status")
}

async fn until_status(
    speaker: &Speaker,
    addr: &str,
    what: &str,
    ok: impl Fn(&PeerStatus) -> bool,
) -> PeerStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let st = status_of(speaker, addr).await;
        if ok(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{what}: last status {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next change on `routes` for `prefix` (others are skipped).
async fn next_change(routes: &mut RouteStream, prefix: &str) -> RouteChange {
    let prefix = net(prefix);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, routes.recv()).await {
            Ok(Some(c)) if c.prefix() == prefix => return c,
            Ok(Some(_)) => {}
            Ok(None) => panic!("route stream closed"),
            Err(_) => panic!("no change for {prefix} within {WAIT:?}"),
        }
    }
}

fn established(s: &PeerStatus) -> bool {
    s.state == State::Established
}

#[tokio::test]
async fn routes_filters_and_refresh_between_two_speakers() {
    let (a, _a_routes, a_port) = loopback_speaker("127.0.0.11").await;
    let (b, mut b_routes, b_port) = loopback_speaker("127.0.0.12").await;
    a.set_peer(peer("127.0.0.12", b_port, "127.0.0.11", false))
        .await
        .expect("peer b");
    b.set_peer(peer("127.0.0.11", a_port, "127.0.0.12", true))
        .await
        .expect("peer a");
    a.originate(net("198.19.1.0/24"), None, Communities::default())
        .await
        .expect("originate");
    until_status(&a, "127.0.0.12", "a established", established).await;
    assert_eq!(
        next_change(&mut b_routes, "198.19.1.0/24").await,
        RouteChange::Best {
            prefix: net("198.19.1.0/24"),
            next_hops: smallvec::smallvec![IpAddr::V4(v4("127.0.0.11"))],
        }
    );
    let st = until_status(&b, "127.0.0.11", "b counts the route", |s| s.accepted == 1).await;
    assert_eq!((st.received, st.router_id), (1, Some(v4("127.0.0.11"))));
    until_status(&b, "127.0.0.11", "End-of-RIB from a", |s| {
        s.initial_routes_received
    })
    .await;
    let st = until_status(&a, "127.0.0.12", "a advertises it", |s| s.advertised == 1).await;
    assert_eq!(st.last_error, None);

    // An import filter that rejects it: withdrawn from the stream, still counted as received.
    let mut filtered = peer("127.0.0.11", a_port, "127.0.0.12", true);
    filtered.import.rules.push(FilterRule::new(
        net("198.19.0.0/16"),
        MatchOperator::In,
        RuleAction::Reject,
    ));
    let since = status_of(&b, "127.0.0.11").await.since;
    b.set_peer(filtered).await.expect("filter");
    assert_eq!(
        next_change(&mut b_routes, "198.19.1.0/24").await,
        RouteChange::Withdrawn {
            prefix: net("198.19.1.0/24")
        }
    );
    let st = until_status(&b, "127.0.0.11", "refused", |s| s.accepted == 0).await;
    assert_eq!(st.received, 1);
    // Lifting the filter asks the peer for its routes again (ROUTE-REFRESH), no restart.
    b.set_peer(peer("127.0.0.11", a_port, "127.0.0.12", true))
        .await
        .expect("unfilter");
    assert!(matches!(
        next_change(&mut b_routes, "198.19.1.0/24").await,
        RouteChange::Best { .. }
    ));
    let st = status_of(&b, "127.0.0.11").await;
    assert_eq!((st.state, st.since), (State::Established, since));

    // An export filter on a's side withdraws it toward b, also without a restart.
    let mut no_export = peer("127.0.0.12", b_port, "127.0.0.11", false);
    no_export.export.rules.push(FilterRule::new(
        net("198.19.1.0/24"),
        MatchOperator::Equal,
        RuleAction::Reject,
    ));
    a.set_peer(no_export).await.expect("export filter");
    assert!(matches!(
        next_change(&mut b_routes, "198.19.1.0/24").await,
        RouteChange::Withdrawn { .. }
    ));
    assert_eq!(status_of(&a, "127.0.0.12").await.advertised, 0);
    a.set_peer(peer("127.0.0.12", b_port, "127.0.0.11", false))
        .await
        .expect("no export filter");
    assert!(matches!(
        next_change(&mut b_routes, "198.19.1.0/24").await,
        RouteChange::Best { .. }
    ));
    a.withdraw(net("198.19.1.0/24")).await.expect("withdraw");
    assert!(matches!(
        next_change(&mut b_routes, "198.19.1.0/24").await,
        RouteChange::Withdrawn { .. }
    ));
    let st = status_of(&b, "127.0.0.11").await;
    assert_eq!((st.state, st.since), (State::Established, since));
    a.shutdown().await;
    let st = until_status(&b, "127.0.0.11", "b sees a go", |s| !established(s)).await;
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("received NOTIFICATION 6/")),
        "{st:?}"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn changing_one_peer_leaves_the_others_alone() {
    let (a, _ar, a_port) = loopback_speaker("127.0.0.21").await;
    let (b, _br, b_port) = loopback_speaker("127.0.0.22").await;
    let (c, mut c_routes, c_port) = loopback_speaker("127.0.0.23").await;
    a.set_peer(peer("127.0.0.22", b_port, "127.0.0.21", false))
        .await
        .expect("a-b");
    a.set_peer(peer("127.0.0.23", c_port, "127.0.0.21", false))
        .await
        .expect("a-c");
    b.set_peer(peer("127.0.0.21", a_port, "127.0.0.22", true))
        .await
        .expect("b-a");
    c.set_peer(peer("127.0.0.21", a_port, "127.0.0.23", true))
        .await
        .expect("c-a");
    a.originate(net("198.19.2.0/24"), None, Communities::default())
        .await
        .expect("originate");
    let b_up = until_status(&a, "127.0.0.22", "a-b up", established).await;
    let c_up = until_status(&a, "127.0.0.23", "a-c up", established).await;
    assert!(matches!(
        next_change(&mut c_routes, "198.19.2.0/24").await,
        RouteChange::Best { .. }
    ));

    // A new hold time is an OPEN parameter: that session restarts, the other does not.
    let mut slower = peer("127.0.0.22", b_port, "127.0.0.21", false);
    slower.hold_time = 6;
    a.set_peer(slower).await.expect("change b");
    until_status(&a, "127.0.0.22", "a-b back up", |s| {
        established(s) && s.since > b_up.since
    })
    .await;
    let c_now = status_of(&a, "127.0.0.23").await;
    assert_eq!((c_now.state, c_now.since), (State::Established, c_up.since));
    // c never lost the route.
    assert!(
        c_routes.try_recv().is_err(),
        "c saw a change while only b's session restarted"
    );

    // Removing b ends its session; c keeps its own.
    a.remove_peer(IpAddr::V4(v4("127.0.0.22")))
        .await
        .expect("remove b");
    until_status(&b, "127.0.0.21", "b sees the Cease", |s| !established(s)).await;
    assert_eq!(
        status_of(&a, "127.0.0.23").await.since,
        c_up.since,
        "c untouched"
    );
    assert!(matches!(
        a.remove_peer(IpAddr::V4(v4("127.0.0.22"))).await,
        Err(SpeakerError::NoSuchPeer(_))
    ));
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn an_unread_route_stream_coalesces_and_blocks_nothing() {
    let ip = v4("127.0.0.31");
    let (a, _ar, a_port) = loopback_speaker("127.0.0.32").await;
    let cfg = SpeakerConfig {
        listen: Some(SocketAddr::from((ip, 0))),
        route_queue: 1,
        ..SpeakerConfig::new(64512, ip)
    };
    let (b, mut b_routes) = Speaker::start(cfg).await.expect("speaker");
    let b_port = b.local_addr().expect("listening").port();
    a.set_peer(peer("127.0.0.31", b_port, "127.0.0.32", false))
        .await
        .expect("a-b");
    b.set_peer(peer("127.0.0.32", a_port, "127.0.0.31", true))
        .await
        .expect("b-a");
    until_status(&b, "127.0.0.32", "up", established).await;
    let prefixes: Vec<IpNet> = (0..50u8)
        .map(|i| net(&format!("198.19.{i}.0/24")))
        .collect();
    for p in &prefixes {
        a.originate(*p, None, Communities::default())
            .await
            .expect("originate");
    }
    // Nobody reads b's stream, yet b takes every route and answers.
    until_status(&b, "127.0.0.32", "all accepted", |s| s.accepted == 50).await;
    for p in &prefixes[..25] {
        a.withdraw(*p).await.expect("withdraw");
    }
    until_status(&b, "127.0.0.32", "half withdrawn", |s| s.accepted == 25).await;
    // Now read: every prefix's latest state arrives, the withdrawn ones at most as a
    // withdrawal, the kept ones ending as a best path.
    let mut last: std::collections::BTreeMap<IpNet, RouteChange> = Default::default();
    while last
        .iter()
        .filter(|(_, c)| matches!(c, RouteChange::Best { .. }))
        .count()
        < 25
        || prefixes[25..].iter().any(|p| !last.contains_key(p))
    {
        let c = tokio::time::timeout(WAIT, b_routes.recv())
            .await
            .expect("changes keep coming")
            .expect("stream open");
        last.insert(c.prefix(), c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(c) = b_routes.try_recv() {
        last.insert(c.prefix(), c);
    }
    for p in &prefixes[..25] {
        assert!(
            !matches!(last.get(p), Some(RouteChange::Best { .. })),
            "{p} withdrawn but last seen as best"
        );
    }
    for p in &prefixes[25..] {
        assert!(matches!(last.get(p), Some(RouteChange::Best { .. })), "{p}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn bad_settings_are_refused_before_anything_changes() {
    let (a, _r, _) = loopback_speaker("127.0.0.41").await;
    let mut bad = peer("127.0.0.42", 179, "127.0.0.41", true);
    bad.hold_time = 2;
    assert!(matches!(
        a.set_peer(bad).await,
        Err(SpeakerError::PeerConfig { .. })
    ));
    assert!(a.status().await.expect("status").is_empty());
    let (no_listener, _r) = Speaker::start(SpeakerConfig {
        listen: None,
        ..SpeakerConfig::new(64512, v4("127.0.0.43"))
    })
    .await
    .expect("speaker");
    assert!(matches!(
        no_listener
            .set_peer(peer("127.0.0.41", 179, "127.0.0.43", true))
            .await,
        Err(SpeakerError::PassiveWithoutListener(_))
    ));
    // Clones are handles to one speaker: shut down through one, all see it stopped.
    let other = no_listener.clone();
    no_listener.shutdown().await;
    assert!(matches!(other.status().await, Err(SpeakerError::Stopped)));
    assert!(matches!(
        a.originate(
            net("198.19.0.0/24"),
            Some("2001:2::1".parse().expect("v6")),
            Communities::default()
        )
        .await,
        Err(SpeakerError::NextHopFamily { .. })
    ));
    a.shutdown().await;
}

#[tokio::test]
async fn identity_changes_restart_sessions_and_unchanged_ones_do_not() {
    let (a, _ar, a_port) = loopback_speaker("127.0.0.51").await;
    let (b, _br, b_port) = loopback_speaker("127.0.0.52").await;
    a.set_peer(peer("127.0.0.52", b_port, "127.0.0.51", false))
        .await
        .expect("a-b");
    b.set_peer(peer("127.0.0.51", a_port, "127.0.0.52", true))
        .await
        .expect("b-a");
    let up = until_status(&b, "127.0.0.51", "up", established).await;
    a.set_identity(64512, v4("127.0.0.51"), None)
        .await
        .expect("same identity");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of(&b, "127.0.0.51").await.since, up.since);
    // A new router id is a new OPEN: the session restarts and b sees the new id.
    a.set_identity(64512, v4("198.18.0.51"), None)
        .await
        .expect("new router id");
    until_status(&b, "127.0.0.51", "back with the new id", |s| {
        s.router_id == Some(v4("198.18.0.51"))
    })
    .await;
    // An invalid router id is refused before anything changes.
    assert!(matches!(
        a.set_identity(64512, Ipv4Addr::UNSPECIFIED, None).await,
        Err(SpeakerError::PeerConfig { .. })
    ));
    assert_eq!(
        status_of(&b, "127.0.0.51").await.router_id,
        Some(v4("198.18.0.51"))
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_restarting_speaker_holds_its_routes_until_told() {
    let (b, mut b_routes, b_port) = loopback_speaker("127.0.0.62").await;
    let ip = v4("127.0.0.61");
    let cfg = SpeakerConfig {
        listen: Some(SocketAddr::from((ip, 0))),
        restarting: true,
        restart_deferral: Duration::from_secs(60),
        ..SpeakerConfig::new(64512, ip)
    };
    let (a, _ar) = Speaker::start(cfg).await.expect("speaker");
    let a_port = a.local_addr().expect("listening").port();
    a.set_peer(peer("127.0.0.62", b_port, "127.0.0.61", false))
        .await
        .expect("a-b");
    b.set_peer(peer("127.0.0.61", a_port, "127.0.0.62", true))
        .await
        .expect("b-a");
    until_status(&b, "127.0.0.61", "up", established).await;
    a.originate(net("198.19.6.0/24"), None, Communities::default())
        .await
        .expect("originate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        b_routes.try_recv().is_err(),
        "sent before initial_routes_done"
    );
    assert_eq!(status_of(&a, "127.0.0.62").await.advertised, 0);
    assert!(!status_of(&b, "127.0.0.61").await.initial_routes_received);
    a.initial_routes_done().await.expect("done");
    assert!(matches!(
        next_change(&mut b_routes, "198.19.6.0/24").await,
        RouteChange::Best { .. }
    ));
    until_status(&b, "127.0.0.61", "End-of-RIB after the routes", |s| {
        s.initial_routes_received
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn ipv6_sessions_carry_ipv6_routes() {
    // Both on ::1: each speaker has its one peer there, told apart by port.
    let lo = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    let start = |id: &str| {
        let cfg = SpeakerConfig {
            listen: Some(SocketAddr::new(lo, 0)),
            ..SpeakerConfig::new(64512, v4(id))
        };
        Speaker::start(cfg)
    };
    let (a, _ar) = start("198.18.0.71").await.expect("a");
    let (b, mut b_routes) = start("198.18.0.72").await.expect("b");
    let port = |s: &Speaker| s.local_addr().expect("listening").port();
    let v6_peer = |port: u16, passive: bool| PeerSettings {
        port,
        passive,
        hold_time: 3,
        connect_retry: Duration::from_millis(300),
        error_wait: Duration::from_millis(300),
        ..PeerSettings::new(lo, 64512)
    };
    a.set_peer(v6_peer(port(&b), false)).await.expect("a-b");
    b.set_peer(v6_peer(port(&a), true)).await.expect("b-a");
    a.originate(net("2001:2:0:71::/64"), None, Communities::default())
        .await
        .expect("originate");
    // An IPv4 prefix has no session to go on.
    a.originate(net("198.19.71.0/24"), None, Communities::default())
        .await
        .expect("originate");
    assert_eq!(
        next_change(&mut b_routes, "2001:2:0:71::/64").await,
        RouteChange::Best {
            prefix: net("2001:2:0:71::/64"),
            next_hops: smallvec::smallvec![lo],
        }
    );
    let st = status_of(&b, "::1").await;
    assert_eq!((st.state, st.accepted), (State::Established, 1));
    assert!(b_routes.try_recv().is_err(), "the IPv4 prefix went nowhere");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn routes_of_one_family_never_go_on_a_session_of_the_other() {
    let lo6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    let start = |listen: Option<SocketAddr>, id: &str| {
        Speaker::start(SpeakerConfig {
            listen,
            ..SpeakerConfig::new(64512, v4(id))
        })
    };
    let (a, _ar) = start(Some(SocketAddr::from((v4("127.0.0.81"), 0))), "198.18.0.81")
        .await
        .expect("a");
    let (b, _br) = start(None, "198.18.0.82").await.expect("b");
    let (c, mut c_routes) = start(Some(SocketAddr::new(lo6, 0)), "198.18.0.83")
        .await
        .expect("c");
    let port = |s: &Speaker| s.local_addr().expect("listening").port();
    // b, in the middle, reflects to c: a's IPv4 route would go to c if families were mixed.
    b.set_peer(peer("127.0.0.81", port(&a), "127.0.0.82", false))
        .await
        .expect("b-a");
    b.set_peer(PeerSettings {
        port: port(&c),
        rr_client: true,
        hold_time: 3,
        connect_retry: Duration::from_millis(300),
        error_wait: Duration::from_millis(300),
        ..PeerSettings::new(lo6, 64512)
    })
    .await
    .expect("b-c");
    a.set_peer(peer("127.0.0.82", 179, "127.0.0.81", true))
        .await
        .expect("a-b");
    c.set_peer(PeerSettings {
        passive: true,
        hold_time: 3,
        ..PeerSettings::new(lo6, 64512)
    })
    .await
    .expect("c-b");
    a.originate(
        net("198.19.81.0/24"),
        Some(IpAddr::V4(v4("127.0.0.81"))),
        Communities::default(),
    )
    .await
    .expect("originate v4");
    until_status(&b, "127.0.0.81", "b has a's route", |s| s.accepted == 1).await;
    b.originate(net("2001:2:0:82::/64"), None, Communities::default())
        .await
        .expect("originate v6");
    assert!(matches!(
        next_change(&mut c_routes, "2001:2:0:82::/64").await,
        RouteChange::Best { .. }
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c_routes.try_recv().is_err(), "c got an IPv4 route");
    let st = status_of(&c, "::1").await;
    assert_eq!((st.state, st.received), (State::Established, 1), "{st:?}");
    assert_eq!(status_of(&b, "::1").await.advertised, 1);
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn next_hop_self_toward_a_reflection_client() {
    let (a, _ar, a_port) = loopback_speaker("127.0.0.91").await;
    let (b, _br, b_port) = loopback_speaker("127.0.0.92").await;
    let (c, mut c_routes, c_port) = loopback_speaker("127.0.0.93").await;
    let mut b_to_c = peer("127.0.0.93", c_port, "127.0.0.92", false);
    b_to_c.rr_client = true;
    b.set_peer(peer("127.0.0.91", a_port, "127.0.0.92", false))
        .await
        .expect("b-a");
    b.set_peer(b_to_c.clone()).await.expect("b-c");
    a.set_peer(peer("127.0.0.92", b_port, "127.0.0.91", true))
        .await
        .expect("a-b");
    c.set_peer(peer("127.0.0.92", b_port, "127.0.0.93", true))
        .await
        .expect("c-b");
    a.originate(net("198.19.91.0/24"), None, Communities::default())
        .await
        .expect("originate");
    // Reflected: the next hop stays a's.
    assert_eq!(
        next_change(&mut c_routes, "198.19.91.0/24").await,
        RouteChange::Best {
            prefix: net("198.19.91.0/24"),
            next_hops: smallvec::smallvec![IpAddr::V4(v4("127.0.0.91"))],
        }
    );
    // Next hop self: b's own address, without a session restart.
    let since = status_of(&b, "127.0.0.93").await.since;
    b_to_c.next_hop = NextHopMode::OurAddress;
    b.set_peer(b_to_c).await.expect("next hop self");
    assert_eq!(
        next_change(&mut c_routes, "198.19.91.0/24").await,
        RouteChange::Best {
            prefix: net("198.19.91.0/24"),
            next_hops: smallvec::smallvec![IpAddr::V4(v4("127.0.0.92"))],
        }
    );
    assert_eq!(status_of(&b, "127.0.0.93").await.since, since);
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn making_a_peer_a_client_reflects_its_routes_to_the_others() {
    let (a, _ar, a_port) = loopback_speaker("127.0.0.101").await;
    let (b, _br, b_port) = loopback_speaker("127.0.0.102").await;
    let (c, mut c_routes, c_port) = loopback_speaker("127.0.0.103").await;
    let mut b_to_a = peer("127.0.0.101", a_port, "127.0.0.102", false);
    b.set_peer(b_to_a.clone()).await.expect("b-a");
    b.set_peer(peer("127.0.0.103", c_port, "127.0.0.102", false))
        .await
        .expect("b-c");
    a.set_peer(peer("127.0.0.102", b_port, "127.0.0.101", true))
        .await
        .expect("a-b");
    c.set_peer(peer("127.0.0.102", b_port, "127.0.0.103", true))
        .await
        .expect("c-b");
    a.originate(net("198.19.101.0/24"), None, Communities::default())
        .await
        .expect("originate");
    until_status(&b, "127.0.0.101", "b has a's route", |s| s.accepted == 1).await;
    until_status(&b, "127.0.0.103", "b-c up", established).await;
    // iBGP split horizon: nothing for c yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c_routes.try_recv().is_err());
    assert_eq!(status_of(&b, "127.0.0.103").await.advertised, 0);
    b_to_a.rr_client = true;
    b.set_peer(b_to_a).await.expect("a becomes a client");
    assert_eq!(
        next_change(&mut c_routes, "198.19.101.0/24").await,
        RouteChange::Best {
            prefix: net("198.19.101.0/24"),
            next_hops: smallvec::smallvec![IpAddr::V4(v4("127.0.0.101"))],
        }
    );
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

/// A peer that sends more prefixes than its limit is reset with Cease 6/1 (RFC 4486) and
/// its routes go; another peer's session and routes stay.
#[tokio::test]
async fn a_peer_past_its_prefix_limit_is_reset_and_others_keep_theirs() {
    let (a, _a_routes, a_port) = loopback_speaker("127.0.0.111").await;
    let (b, mut b_routes, b_port) = loopback_speaker("127.0.0.112").await;
    let (c, _c_routes, c_port) = loopback_speaker("127.0.0.113").await;
    for i in 0..30 {
        a.originate(
            net(&format!("198.19.{i}.0/24")),
            None,
            Communities::default(),
        )
        .await
        .expect("originate");
    }
    c.originate(net("198.18.200.0/24"), None, Communities::default())
        .await
        .expect("originate");
    a.set_peer(peer("127.0.0.112", b_port, "127.0.0.111", false))
        .await
        .expect("a peers b");
    c.set_peer(peer("127.0.0.112", b_port, "127.0.0.113", false))
        .await
        .expect("c peers b");
    b.set_peer(PeerSettings {
        max_prefixes: Some(10),
        ..peer("127.0.0.111", a_port, "127.0.0.112", true)
    })
    .await
    .expect("b peers a");
    b.set_peer(PeerSettings {
        max_prefixes: Some(10),
        ..peer("127.0.0.113", c_port, "127.0.0.112", true)
    })
    .await
    .expect("b peers c");

    let st = until_status(&a, "127.0.0.112", "b resets a", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("NOTIFICATION 6/1"))
    })
    .await;
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("received")),
        "{st:?}"
    );
    // a would come back and be reset again: it stops here, so b's end state can be read.
    a.remove_peer(IpAddr::V4(v4("127.0.0.112")))
        .await
        .expect("a drops b");
    let st = until_status(&b, "127.0.0.111", "b holds none of a's routes", |s| {
        s.accepted == 0 && !established(s)
    })
    .await;
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("sent NOTIFICATION 6/1")),
        "{st:?}"
    );
    // c's session never went down and its route is there.
    let st = until_status(&b, "127.0.0.113", "c's route", |s| {
        established(s) && s.accepted == 1
    })
    .await;
    assert_eq!(st.last_error, None);
    let mut best = std::collections::BTreeMap::new();
    while let Ok(change) = b_routes.try_recv() {
        best.insert(change.prefix(), matches!(change, RouteChange::Best { .. }));
    }
    assert_eq!(best.get(&net("198.18.200.0/24")), Some(&true));
    for i in 0..30 {
        assert_ne!(
            best.get(&net(&format!("198.19.{i}.0/24"))),
            Some(&true),
            "a's route {i} is not in the kernel stream's end state"
        );
    }
    for s in [a, b, c] {
        s.shutdown().await;
    }
}
