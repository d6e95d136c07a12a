//! State machine tests: events in, actions out, no sockets and no sleeping. Time is an
//! `Instant` chosen by the test.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::wire::{
    AddPathFamily, AddPathMode, Capability, Context, GrFamily, GracefulRestart, Open, RouteRefresh,
    Update,
};

const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);

fn ibgp() -> PeerConfig {
    PeerConfig::new(64512, LOCAL_ID, 64512)
}

fn secs(base: Instant, s: u64) -> Instant {
    base + Duration::from_secs(s)
}

/// The peer's OPEN: AS 64512, the given identifier and hold time, MP IPv4 unicast, 4-octet AS,
/// route refresh.
fn peer_open(id: [u8; 4], hold: u16) -> Open {
    Open::new(
        64512,
        hold,
        Ipv4Addr::from(id),
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::FourOctetAs(64512),
        ],
    )
}

fn notification(actions: &[Action], conn: ConnId) -> Option<Notification> {
    actions.iter().find_map(|a| match a {
        Action::Send {
            conn: c,
            message: Message::Notification(n),
        } if *c == conn => Some(n.clone()),
        _ => None,
    })
}

fn closed(actions: &[Action], conn: ConnId) -> Option<Reason> {
    actions.iter().find_map(|a| match a {
        Action::Close { conn: c, reason } if *c == conn => Some(reason.clone()),
        _ => None,
    })
}

fn down(actions: &[Action]) -> Option<(Reason, Option<Stale>)> {
    actions.iter().find_map(|a| match a {
        Action::Down { reason, stale } => Some((reason.clone(), stale.clone())),
        _ => None,
    })
}

fn armed(actions: &[Action], timer: Timer) -> Option<Instant> {
    actions.iter().find_map(|a| match a {
        Action::ArmTimer { timer: t, at } if *t == timer => Some(*at),
        _ => None,
    })
}

/// Where `timer` was armed in `actions`, checked to be `secs` after `from` less RFC 4271's jitter
/// (at most a quarter off); panics otherwise.
fn armed_jittered(actions: &[Action], timer: Timer, from: Instant, secs: u64) -> Instant {
    let at = armed(actions, timer).unwrap_or_else(|| panic!("{timer:?} armed in {actions:?}"));
    let wait = at.saturating_duration_since(from);
    let full = Duration::from_secs(secs);
    assert!(
        wait <= full && wait >= full * 3 / 4,
        "{timer:?} armed {wait:?} after, not within the jitter of {full:?}"
    );
    at
}

/// Drives a session to Established on connection 1 (outbound) at time `t`.
fn established(cfg: PeerConfig, open: Open, t: Instant) -> (Session, Vec<Action>) {
    let mut s = Session::new(cfg).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(open),
        },
        t,
    );
    let actions = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Keepalive,
        },
        t,
    );
    assert_eq!(s.state(), State::Established);
    (s, actions)
}

#[test]
fn start_connects_and_arms_connect_retry() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    assert_eq!(s.state(), State::Idle);
    let a = s.handle(Event::Start, t);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0], Action::Connect);
    armed_jittered(&a, Timer::ConnectRetry, t, 5);
    assert_eq!(s.state(), State::Connect);
    // A second start changes nothing.
    assert!(s.handle(Event::Start, t).is_empty());
}

#[test]
fn passive_peer_waits_in_active_and_never_connects() {
    let t = Instant::now();
    let mut s = Session::new(PeerConfig {
        passive: true,
        ..ibgp()
    })
    .unwrap();
    assert!(s.handle(Event::Start, t).is_empty());
    assert_eq!(s.state(), State::Active);
    assert!(
        s.handle(Event::TimerExpired(Timer::ConnectRetry), secs(t, 5))
            .is_empty()
    );
    // The peer connects to us.
    let a = s.handle(
        Event::Connected {
            conn: 7,
            inbound: true,
        },
        t,
    );
    assert!(matches!(
        &a[0],
        Action::Send {
            conn: 7,
            message: Message::Open(_)
        }
    ));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn failed_connect_goes_active_and_retries_with_growing_capped_waits() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    assert!(s.handle(Event::ConnectFailed, secs(t, 1)).is_empty());
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.last_error(), Some(&Reason::ConnectFailed));
    // Waits of 10, 20, 40, then 60 (the cap), 60, each less up to a quarter of jitter.
    let mut now = secs(t, 5);
    for wait in [10, 20, 40, 60, 60] {
        let a = s.handle(Event::TimerExpired(Timer::ConnectRetry), now);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[0], Action::Connect);
        let at = armed_jittered(&a, Timer::ConnectRetry, now, wait);
        assert_eq!(s.state(), State::Connect);
        s.handle(Event::ConnectFailed, now);
        now = at;
    }
}

#[test]
fn connected_sends_our_open_and_waits_four_minutes_for_theirs() {
    let t = Instant::now();
    let cfg = PeerConfig {
        add_path: vec![AddPathFamily {
            family: Family::IPV4_UNICAST,
            mode: AddPathMode::Both,
        }],
        graceful_restart: Some(GracefulRestartConfig {
            restart_time: 120,
            restarting: false,
            forwarding_preserved: true,
        }),
        ..PeerConfig::new(4_200_000_001, LOCAL_ID, 64512)
    };
    let mut s = Session::new(cfg).unwrap();
    s.handle(Event::Start, t);
    let a = s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    let expected_open = Open {
        my_as: 23456,
        hold_time: 90,
        bgp_id: LOCAL_ID,
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::ExtendedMessage,
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: false,
                restart_time: 120,
                families: vec![GrFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
            Capability::FourOctetAs(4_200_000_001),
            Capability::AddPath(vec![AddPathFamily {
                family: Family::IPV4_UNICAST,
                mode: AddPathMode::Both,
            }]),
        ],
    };
    assert_eq!(
        a,
        vec![
            Action::CancelTimer(Timer::ConnectRetry),
            Action::Send {
                conn: 1,
                message: Message::Open(expected_open)
            },
            Action::ArmTimer {
                timer: Timer::Hold(1),
                at: secs(t, 240)
            },
        ]
    );
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn handshake_reaches_established_with_the_smaller_hold_time() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(peer_open([198, 18, 0, 9], 30)),
        },
        t,
    );
    assert_eq!(
        a,
        vec![
            Action::Send {
                conn: 1,
                message: Message::Keepalive
            },
            Action::ArmTimer {
                timer: Timer::Hold(1),
                at: secs(t, 30)
            },
            Action::ArmTimer {
                timer: Timer::Keepalive(1),
                at: secs(t, 10)
            },
        ]
    );
    assert_eq!(s.state(), State::OpenConfirm);
    let later = secs(t, 2);
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Keepalive,
        },
        later,
    );
    let Some(Action::Up {
        conn: 1,
        negotiated,
    }) = a.iter().find(|a| matches!(a, Action::Up { .. }))
    else {
        panic!("no Up in {a:?}")
    };
    assert_eq!(negotiated.hold_time, 30);
    assert_eq!(negotiated.keepalive, 10);
    assert_eq!(negotiated.peer_id, Ipv4Addr::new(198, 18, 0, 9));
    assert!(negotiated.ibgp);
    assert_eq!(negotiated.families, vec![Family::IPV4_UNICAST]);
    // The peer did not advertise extended messages.
    assert_eq!(
        negotiated.decode,
        Context {
            four_octet_as: true,
            extended_message: false,
            add_path: vec![]
        }
    );
    assert_eq!(armed(&a, Timer::Hold(1)), Some(secs(later, 30)));
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.established_since(), Some(later));
}

#[test]
fn hold_time_zero_means_no_hold_timer_and_no_keepalives() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(peer_open([198, 18, 0, 9], 0)),
        },
        t,
    );
    assert_eq!(
        a,
        vec![
            Action::Send {
                conn: 1,
                message: Message::Keepalive
            },
            Action::CancelTimer(Timer::Hold(1))
        ]
    );
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Keepalive,
        },
        t,
    );
    assert_eq!(armed(&a, Timer::Hold(1)), None);
    assert_eq!(
        s.negotiated().map(|n| (n.hold_time, n.keepalive)),
        Some((0, 0))
    );
    assert!(
        s.handle(Event::TimerExpired(Timer::Keepalive(1)), secs(t, 100))
            .is_empty()
    );
}

#[test]
fn keepalive_timer_sends_and_rearms() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let a = s.handle(Event::TimerExpired(Timer::Keepalive(1)), secs(t, 30));
    assert_eq!(
        a,
        vec![
            Action::Send {
                conn: 1,
                message: Message::Keepalive
            },
            Action::ArmTimer {
                timer: Timer::Keepalive(1),
                at: secs(t, 60)
            },
        ]
    );
}

#[test]
fn keepalives_and_updates_restart_the_hold_timer_and_updates_reach_the_rib() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Keepalive,
        },
        secs(t, 50),
    );
    assert_eq!(
        a,
        vec![Action::ArmTimer {
            timer: Timer::Hold(1),
            at: secs(t, 140)
        }]
    );
    let u = Update {
        withdrawn: vec![Nlri::new("198.19.0.0/26".parse().unwrap())],
        ..Update::default()
    };
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Update(u.clone()),
        },
        secs(t, 60),
    );
    assert_eq!(
        a,
        vec![
            Action::ArmTimer {
                timer: Timer::Hold(1),
                at: secs(t, 150)
            },
            Action::Received(u)
        ]
    );
}

#[test]
fn hold_timer_expiry_sends_4_0_goes_down_and_restarts_after_idle_hold() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let now = secs(t, 90);
    let a = s.handle(Event::TimerExpired(Timer::Hold(1)), now);
    assert_eq!(notification(&a, 1), Some(Notification::new(4, 0, [])));
    assert_eq!(closed(&a, 1), Some(Reason::HoldTimerExpired));
    assert_eq!(down(&a), Some((Reason::HoldTimerExpired, None)));
    let at = armed_jittered(&a, Timer::IdleHold, now, 5);
    assert_eq!(s.state(), State::Idle);
    let a = s.handle(Event::TimerExpired(Timer::IdleHold), at);
    assert_eq!(a[0], Action::Connect);
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn while_holding_after_an_error_the_peers_own_retry_is_taken() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let now = secs(t, 90);
    s.handle(Event::TimerExpired(Timer::Hold(1)), now);
    assert_eq!(s.state(), State::Idle);
    // Our own outbound attempts wait for the idle hold; the peer's connection does not.
    let a = s.handle(
        Event::Connected {
            conn: 3,
            inbound: false,
        },
        secs(now, 1),
    );
    assert_eq!(closed(&a, 3), Some(Reason::Refused));
    let a = s.handle(
        Event::Connected {
            conn: 2,
            inbound: true,
        },
        secs(now, 1),
    );
    assert!(a.contains(&Action::CancelTimer(Timer::IdleHold)), "{a:?}");
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::Send {
                conn: 2,
                message: Message::Open(_)
            }
        )),
        "{a:?}"
    );
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn a_connection_closed_before_the_peers_open_retries_at_the_connect_interval() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    // The peer does not know us yet and closes the connection without a word.
    let a = s.handle(Event::Closed { conn: 1 }, secs(t, 1));
    assert_eq!(armed(&a, Timer::IdleHold), None, "no error backoff: {a:?}");
    armed_jittered(&a, Timer::ConnectRetry, secs(t, 1), 5);
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.last_error(), Some(&Reason::ConnectionClosed));
    let a = s.handle(Event::TimerExpired(Timer::ConnectRetry), secs(t, 6));
    assert_eq!(a[0], Action::Connect);
}

#[test]
fn the_two_ends_jitter_differently() {
    let t = Instant::now();
    let retry = |id: [u8; 4]| {
        let mut s = Session::new(PeerConfig::new(64512, Ipv4Addr::from(id), 64512)).unwrap();
        armed(&s.handle(Event::Start, t), Timer::ConnectRetry)
    };
    assert_ne!(retry([198, 18, 0, 1]), retry([198, 18, 0, 2]));
}

#[test]
fn idle_hold_grows_caps_and_resets_after_a_long_stable_session() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    let mut now = t;
    let mut conn = 1;
    // Each attempt is refused by the peer with a NOTIFICATION in OpenSent.
    for wait in [5, 10, 20, 30, 30] {
        s.handle(
            Event::Connected {
                conn,
                inbound: false,
            },
            now,
        );
        let a = s.handle(
            Event::Message {
                conn,
                message: Message::Notification(Notification::new(6, 5, [])),
            },
            now,
        );
        let at = armed_jittered(&a, Timer::IdleHold, now, wait);
        assert_eq!(
            notification(&a, conn),
            None,
            "no NOTIFICATION answers a NOTIFICATION"
        );
        now = at;
        s.handle(Event::TimerExpired(Timer::IdleHold), now);
        conn += 1;
    }
    // Up for 300 s (the error forget time), then down: back to the first wait.
    s.handle(
        Event::Connected {
            conn,
            inbound: false,
        },
        now,
    );
    s.handle(
        Event::Message {
            conn,
            message: Message::Open(peer_open([198, 18, 0, 9], 90)),
        },
        now,
    );
    s.handle(
        Event::Message {
            conn,
            message: Message::Keepalive,
        },
        now,
    );
    let later = secs(now, 300);
    let a = s.handle(Event::Closed { conn }, later);
    armed_jittered(&a, Timer::IdleHold, later, 5);
}

#[test]
fn wrong_peer_as_is_2_2() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    let mut open = peer_open([198, 18, 0, 9], 90);
    open.capabilities
        .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
    open.capabilities.push(Capability::FourOctetAs(64513));
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(open),
        },
        t,
    );
    let n = notification(&a, 1).unwrap();
    assert_eq!((n.code, n.subcode), (2, 2));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.last_error(), Some(&Reason::Sent(n)));
}

#[test]
fn peer_as_from_the_header_without_four_octet_capability() {
    let t = Instant::now();
    let open = Open::new(64512, 90, Ipv4Addr::new(198, 18, 0, 9), vec![]);
    let (s, _) = established(ibgp(), open, t);
    let n = s.negotiated().unwrap();
    assert_eq!(n.peer_as, 64512);
    assert!(!n.decode.four_octet_as && !n.encode.four_octet_as);
    // No MP capability: IPv4 unicast only (RFC 4760 §8).
    assert_eq!(n.families, vec![Family::IPV4_UNICAST]);
}

#[test]
fn same_router_id_is_2_3_for_ibgp_but_allowed_for_ebgp() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(peer_open(LOCAL_ID.octets(), 90)),
        },
        t,
    );
    let n = notification(&a, 1).unwrap();
    assert_eq!((n.code, n.subcode), (2, 3));

    let ebgp = PeerConfig::new(64513, LOCAL_ID, 64512);
    let (s, _) = established(ebgp, peer_open(LOCAL_ID.octets(), 90), t);
    assert!(!s.negotiated().unwrap().ibgp);
}

#[test]
fn no_common_family_is_2_7_naming_ours() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    let mut open = peer_open([198, 18, 0, 9], 90);
    open.capabilities[0] = Capability::Multiprotocol(Family::IPV6_UNICAST);
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(open),
        },
        t,
    );
    // MP capability: code 1, length 4, AFI 1, reserved, SAFI 1.
    assert_eq!(
        notification(&a, 1),
        Some(Notification::new(2, 7, [1, 4, 0, 1, 0, 1]))
    );
}

#[test]
fn a_peer_offering_hold_time_1_is_refused_2_6() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(peer_open([198, 18, 0, 9], 1)),
        },
        t,
    );
    assert_eq!(notification(&a, 1), Some(Notification::new(2, 6, [])));
}

#[test]
fn capabilities_the_peer_refused_are_left_out_next_time() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    // 2/7 naming the 4-octet AS capability (65, length 4) and extended messages (6, length 0).
    let refusal = Notification::new(2, 7, [65, 4, 0, 0, 0xfc, 0, 6, 0]);
    s.handle(
        Event::Message {
            conn: 1,
            message: Message::Notification(refusal),
        },
        t,
    );
    s.handle(Event::TimerExpired(Timer::IdleHold), secs(t, 5));
    let a = s.handle(
        Event::Connected {
            conn: 2,
            inbound: false,
        },
        secs(t, 5),
    );
    let Some(Action::Send {
        message: Message::Open(open),
        ..
    }) = a.iter().find(|a| matches!(a, Action::Send { .. }))
    else {
        panic!("no OPEN in {a:?}")
    };
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh
        ]
    );
    // 2/4: no optional parameters at all.
    s.handle(
        Event::Message {
            conn: 2,
            message: Message::Notification(Notification::new(2, 4, [])),
        },
        t,
    );
    assert!(s.open().capabilities.is_empty());
    // A truncated 2/7 list does no harm.
    s.learn_refusal(&Notification::new(2, 7, [64, 9, 1]));
}

#[test]
fn too_many_prefixes_reset_the_session_with_cease_6_1() {
    let t = Instant::now();
    let cfg = PeerConfig {
        max_prefixes: Some(1000),
        ..ibgp()
    };
    let (mut s, _) = established(cfg, peer_open([198, 18, 0, 9], 90), t);
    let at_limit = Event::PrefixCount {
        family: Family::IPV4_UNICAST,
        count: 1000,
    };
    assert!(s.handle(at_limit, t).is_empty());
    let a = s.handle(
        Event::PrefixCount {
            family: Family::IPV4_UNICAST,
            count: 1001,
        },
        t,
    );
    // AFI 1, SAFI 1, limit 1000.
    let n = Notification::new(6, 1, [0, 1, 1, 0, 0, 0x03, 0xe8]);
    assert_eq!(notification(&a, 1), Some(n.clone()));
    assert_eq!(down(&a), Some((Reason::Sent(n), None)));
    // It comes back after the idle hold.
    armed_jittered(&a, Timer::IdleHold, t, 5);
    // Without a limit, any count is fine.
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    assert!(
        s.handle(
            Event::PrefixCount {
                family: Family::IPV4_UNICAST,
                count: 10_000_000
            },
            t
        )
        .is_empty()
    );
}

#[test]
fn reset_ends_every_connection_and_restarts_later() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    // Nothing to reset yet.
    assert!(
        s.handle(Event::Reset(Notification::new(6, 4, [])), t)
            .is_empty()
    );
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    s.handle(
        Event::Connected {
            conn: 2,
            inbound: true,
        },
        t,
    );
    let a = s.handle(Event::Reset(Notification::new(6, 4, [])), t);
    assert_eq!(notification(&a, 1), Some(Notification::new(6, 4, [])));
    assert_eq!(notification(&a, 2), Some(Notification::new(6, 4, [])));
    assert_eq!(s.state(), State::Idle);
    let a = s.handle(Event::TimerExpired(Timer::IdleHold), secs(t, 5));
    assert_eq!(a[0], Action::Connect);
}

#[test]
fn config_refuses_hold_time_1_and_2() {
    assert_eq!(
        Session::new(PeerConfig {
            hold_time: 2,
            ..ibgp()
        })
        .err(),
        Some(ConfigError::HoldTime(2))
    );
    assert_eq!(
        Session::new(PeerConfig {
            hold_time: 1,
            ..ibgp()
        })
        .err(),
        Some(ConfigError::HoldTime(1))
    );
    assert!(
        Session::new(PeerConfig {
            hold_time: 0,
            ..ibgp()
        })
        .is_ok()
    );
    assert!(
        Session::new(PeerConfig {
            hold_time: 3,
            ..ibgp()
        })
        .is_ok()
    );
}

#[test]
fn unexpected_messages_are_fsm_errors_with_the_state_subcode() {
    let t = Instant::now();
    let update = Message::Update(Update::default());
    // OpenSent: 5/1.
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: update.clone(),
        },
        t,
    );
    assert_eq!(notification(&a, 1), Some(Notification::new(5, 1, [])));
    // OpenConfirm: 5/2.
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(peer_open([198, 18, 0, 9], 90)),
        },
        t,
    );
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: update,
        },
        t,
    );
    assert_eq!(notification(&a, 1), Some(Notification::new(5, 2, [])));
    // Established: 5/3.
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(peer_open([198, 18, 0, 9], 90)),
        },
        t,
    );
    assert_eq!(notification(&a, 1), Some(Notification::new(5, 3, [])));
    assert_eq!(
        down(&a).map(|d| d.0),
        Some(Reason::Sent(Notification::new(5, 3, [])))
    );
}

#[test]
fn a_malformed_message_sends_its_notification() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let n = Notification::new(3, 1, []);
    let a = s.handle(
        Event::Malformed {
            conn: 1,
            error: DecodeError::Reset(n.clone()),
        },
        t,
    );
    assert_eq!(notification(&a, 1), Some(n.clone()));
    assert_eq!(down(&a), Some((Reason::Sent(n), None)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn treat_as_withdraw_keeps_the_session_and_withdraws() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let withdrawn = vec![Nlri::new("198.18.1.0/24".parse().unwrap())];
    let error = DecodeError::TreatAsWithdraw {
        withdrawn: withdrawn.clone(),
        reason: Notification::new(3, 6, []),
    };
    let a = s.handle(Event::Malformed { conn: 1, error }, secs(t, 1));
    assert_eq!(
        a,
        vec![
            Action::ArmTimer {
                timer: Timer::Hold(1),
                at: secs(t, 91)
            },
            Action::Withdraw(withdrawn)
        ]
    );
    assert_eq!(s.state(), State::Established);
}

#[test]
fn stop_sends_cease_and_stays_idle() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let a = s.handle(Event::Stop, t);
    assert_eq!(notification(&a, 1), Some(Notification::new(6, 2, [])));
    assert_eq!(down(&a), Some((Reason::Stopped, None)));
    assert_eq!(armed(&a, Timer::IdleHold), None);
    assert_eq!(s.state(), State::Idle);
    assert!(
        s.handle(Event::TimerExpired(Timer::IdleHold), secs(t, 30))
            .is_empty()
    );
    assert!(
        s.handle(Event::TimerExpired(Timer::ConnectRetry), secs(t, 30))
            .is_empty()
    );
    assert_eq!(
        s.handle(
            Event::Connected {
                conn: 9,
                inbound: true
            },
            t
        ),
        vec![Action::Close {
            conn: 9,
            reason: Reason::Refused
        }]
    );
}

#[test]
fn stop_while_connecting_aborts_the_attempt() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    let a = s.handle(Event::Stop, t);
    assert!(a.contains(&Action::AbortConnect));
    assert!(a.contains(&Action::CancelTimer(Timer::ConnectRetry)));
    // A connection that completes anyway is closed.
    assert_eq!(
        s.handle(
            Event::Connected {
                conn: 1,
                inbound: false
            },
            t
        ),
        vec![Action::Close {
            conn: 1,
            reason: Reason::Refused
        }]
    );
}

/// Outbound connection 1 in OpenConfirm, then inbound connection 2 gets the peer's OPEN.
fn collide(local_id: Ipv4Addr, remote_id: [u8; 4]) -> (Session, Vec<Action>) {
    let t = Instant::now();
    let mut s = Session::new(PeerConfig::new(64512, local_id, 64512)).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(peer_open(remote_id, 90)),
        },
        t,
    );
    let a = s.handle(
        Event::Connected {
            conn: 2,
            inbound: true,
        },
        t,
    );
    assert!(matches!(
        &a[0],
        Action::Send {
            conn: 2,
            message: Message::Open(_)
        }
    ));
    let a = s.handle(
        Event::Message {
            conn: 2,
            message: Message::Open(peer_open(remote_id, 90)),
        },
        t,
    );
    (s, a)
}

#[test]
fn collision_keeps_the_peers_connection_when_its_identifier_is_higher() {
    let (mut s, a) = collide(Ipv4Addr::new(198, 18, 0, 1), [198, 18, 0, 2]);
    assert_eq!(notification(&a, 1), Some(Notification::new(6, 7, [])));
    assert_eq!(closed(&a, 1), Some(Reason::Collision));
    assert!(a.contains(&Action::Send {
        conn: 2,
        message: Message::Keepalive
    }));
    assert_eq!(s.state(), State::OpenConfirm);
    let a = s.handle(
        Event::Message {
            conn: 2,
            message: Message::Keepalive,
        },
        Instant::now(),
    );
    assert!(a.iter().any(|a| matches!(a, Action::Up { conn: 2, .. })));
}

#[test]
fn collision_keeps_our_connection_when_our_identifier_is_higher() {
    let (s, a) = collide(Ipv4Addr::new(198, 18, 0, 9), [198, 18, 0, 2]);
    assert_eq!(notification(&a, 2), Some(Notification::new(6, 7, [])));
    assert_eq!(closed(&a, 2), Some(Reason::Collision));
    assert_eq!(closed(&a, 1), None);
    assert_eq!(s.state(), State::OpenConfirm);
    assert_eq!(s.last_error(), None, "losing a collision is not an error");
}

/// Outbound connection 1 and inbound connection 2 both in OpenSent; the peer's OPEN arrives on
/// connection 2 first (the OPEN on connection 1 still on its way).
fn collide_early(local_id: Ipv4Addr, remote_id: [u8; 4]) -> (Session, Vec<Action>) {
    let t = Instant::now();
    let mut s = Session::new(PeerConfig::new(64512, local_id, 64512)).unwrap();
    s.handle(Event::Start, t);
    for (conn, inbound) in [(1, false), (2, true)] {
        s.handle(Event::Connected { conn, inbound }, t);
    }
    let a = s.handle(
        Event::Message {
            conn: 2,
            message: Message::Open(peer_open(remote_id, 90)),
        },
        t,
    );
    (s, a)
}

#[test]
fn collision_is_settled_on_the_first_open_keeping_ours_when_our_identifier_is_higher() {
    let (s, a) = collide_early(Ipv4Addr::new(198, 18, 0, 9), [198, 18, 0, 2]);
    assert_eq!(notification(&a, 2), Some(Notification::new(6, 7, [])));
    assert_eq!(closed(&a, 2), Some(Reason::Collision));
    assert!(
        !a.contains(&Action::Send {
            conn: 2,
            message: Message::Keepalive
        }),
        "the losing connection is never confirmed (the peer could establish it): {a:?}"
    );
    assert_eq!(closed(&a, 1), None, "ours waits for the peer's OPEN");
    assert_eq!(s.state(), State::OpenSent);
    assert_eq!(s.last_error(), None);
}

#[test]
fn collision_is_settled_on_the_first_open_keeping_the_peers_when_its_identifier_is_higher() {
    let (s, a) = collide_early(Ipv4Addr::new(198, 18, 0, 1), [198, 18, 0, 2]);
    assert_eq!(notification(&a, 1), Some(Notification::new(6, 7, [])));
    assert_eq!(closed(&a, 1), Some(Reason::Collision));
    assert!(a.contains(&Action::Send {
        conn: 2,
        message: Message::Keepalive
    }));
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn established_session_wins_over_a_new_connection() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let a = s.handle(
        Event::Connected {
            conn: 2,
            inbound: true,
        },
        t,
    );
    assert_eq!(
        a,
        vec![
            Action::Send {
                conn: 2,
                message: Message::Notification(Notification::new(6, 7, []))
            },
            Action::Close {
                conn: 2,
                reason: Reason::Collision
            },
        ]
    );
    assert_eq!(s.state(), State::Established);
}

/// The other connection arrives after the peer's OPEN on the first (so no identifier comparison
/// placed it), then the first is established: the late one is closed.
#[test]
fn a_connection_still_opening_loses_to_the_one_that_establishes() {
    let t = Instant::now();
    let mut s = Session::new(ibgp()).unwrap();
    s.handle(Event::Start, t);
    s.handle(
        Event::Connected {
            conn: 1,
            inbound: false,
        },
        t,
    );
    s.handle(
        Event::Message {
            conn: 1,
            message: Message::Open(peer_open([198, 18, 0, 9], 90)),
        },
        t,
    );
    s.handle(
        Event::Connected {
            conn: 2,
            inbound: true,
        },
        t,
    );
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Keepalive,
        },
        t,
    );
    assert_eq!(notification(&a, 2), Some(Notification::new(6, 7, [])));
    assert_eq!(closed(&a, 2), Some(Reason::Collision));
    assert_eq!(s.state(), State::Established);
}

fn gr_config() -> PeerConfig {
    PeerConfig {
        graceful_restart: Some(GracefulRestartConfig {
            restart_time: 120,
            restarting: false,
            forwarding_preserved: true,
        }),
        ..ibgp()
    }
}

fn gr_open(restarting: bool) -> Open {
    let mut open = peer_open([198, 18, 0, 9], 90);
    open.capabilities
        .push(Capability::GracefulRestart(GracefulRestart {
            restarting,
            notification: false,
            restart_time: 60,
            families: vec![GrFamily {
                family: Family::IPV4_UNICAST,
                forwarding_preserved: true,
            }],
        }));
    open
}

#[test]
fn graceful_restart_helper_keeps_routes_stale_when_the_connection_drops() {
    let t = Instant::now();
    let (mut s, _) = established(gr_config(), gr_open(false), t);
    let a = s.handle(Event::Closed { conn: 1 }, t);
    assert_eq!(
        down(&a),
        Some((
            Reason::ConnectionClosed,
            Some(Stale {
                restart_time: 60,
                families: vec![Family::IPV4_UNICAST]
            })
        ))
    );
    // A NOTIFICATION-driven end (here hold timer expiry) is not graceful (RFC 4724).
    let (mut s, _) = established(gr_config(), gr_open(false), t);
    let a = s.handle(Event::TimerExpired(Timer::Hold(1)), secs(t, 90));
    assert_eq!(down(&a), Some((Reason::HoldTimerExpired, None)));
    // Without our own GR capability there is no helper mode.
    let (mut s, _) = established(ibgp(), gr_open(false), t);
    let a = s.handle(Event::Closed { conn: 1 }, t);
    assert_eq!(down(&a), Some((Reason::ConnectionClosed, None)));
}

/// Peer GR-established on connection `conn` at `t` after a graceful drop of connection 1.
fn reestablish(s: &mut Session, conn: ConnId, open: Open, t: Instant) -> Vec<Action> {
    s.handle(Event::TimerExpired(Timer::IdleHold), t);
    s.handle(
        Event::Connected {
            conn,
            inbound: false,
        },
        t,
    );
    s.handle(
        Event::Message {
            conn,
            message: Message::Open(open),
        },
        t,
    );
    s.handle(
        Event::Message {
            conn,
            message: Message::Keepalive,
        },
        t,
    )
}

#[test]
fn stale_routes_expire_after_the_peers_restart_time() {
    let t = Instant::now();
    let (mut s, _) = established(gr_config(), gr_open(false), t);
    let a = s.handle(Event::Closed { conn: 1 }, t);
    assert_eq!(armed(&a, Timer::Stale), Some(secs(t, 60)));
    let a = s.handle(Event::TimerExpired(Timer::Stale), secs(t, 60));
    assert_eq!(a, vec![Action::StaleExpired(vec![Family::IPV4_UNICAST])]);
    // Once only.
    assert!(
        s.handle(Event::TimerExpired(Timer::Stale), secs(t, 61))
            .is_empty()
    );
}

#[test]
fn a_restarted_peer_keeping_forwarding_state_has_until_end_of_rib() {
    let t = Instant::now();
    let (mut s, _) = established(gr_config(), gr_open(false), t);
    s.handle(Event::Closed { conn: 1 }, t);
    let back = secs(t, 20);
    let a = reestablish(&mut s, 2, gr_open(true), back);
    assert!(a.iter().any(|a| matches!(a, Action::Up { .. })));
    assert!(!a.iter().any(|a| matches!(a, Action::StaleExpired(_))));
    // The stale timer now runs for the stale time (360 s).
    assert_eq!(armed(&a, Timer::Stale), Some(secs(back, 360)));
    let eor = Update::end_of_rib(Family::IPV4_UNICAST);
    let a = s.handle(
        Event::Message {
            conn: 2,
            message: Message::Update(eor.clone()),
        },
        back,
    );
    assert_eq!(
        a,
        vec![
            Action::ArmTimer {
                timer: Timer::Hold(2),
                at: secs(back, 90)
            },
            Action::Received(eor),
            Action::EndOfRib(Family::IPV4_UNICAST),
            Action::CancelTimer(Timer::Stale),
        ]
    );
    assert!(
        s.handle(Event::TimerExpired(Timer::Stale), secs(back, 360))
            .is_empty()
    );
}

#[test]
fn a_restarted_peer_without_forwarding_state_loses_its_stale_routes_at_once() {
    let t = Instant::now();
    let (mut s, _) = established(gr_config(), gr_open(false), t);
    s.handle(Event::Closed { conn: 1 }, t);
    let mut no_forwarding = gr_open(true);
    for c in &mut no_forwarding.capabilities {
        if let Capability::GracefulRestart(gr) = c {
            gr.families[0].forwarding_preserved = false;
        }
    }
    let a = reestablish(&mut s, 2, no_forwarding, secs(t, 20));
    let up = a
        .iter()
        .position(|a| matches!(a, Action::Up { .. }))
        .unwrap();
    let expired = a
        .iter()
        .position(|a| *a == Action::StaleExpired(vec![Family::IPV4_UNICAST]))
        .unwrap();
    assert!(up < expired, "the RIB hears of the new session first");
    assert!(a.contains(&Action::CancelTimer(Timer::Stale)));
    // Without graceful restart at all: the same.
    let (mut s, _) = established(gr_config(), gr_open(false), t);
    s.handle(Event::Closed { conn: 1 }, t);
    let a = reestablish(&mut s, 2, peer_open([198, 18, 0, 9], 90), secs(t, 20));
    assert!(a.contains(&Action::StaleExpired(vec![Family::IPV4_UNICAST])));
}

#[test]
fn a_restarted_peer_reconnecting_replaces_the_old_session() {
    let t = Instant::now();
    let (mut s, _) = established(gr_config(), gr_open(false), t);
    let a = s.handle(
        Event::Connected {
            conn: 2,
            inbound: true,
        },
        secs(t, 10),
    );
    // Only a connection so far: the established session carries on until its OPEN.
    assert_eq!(closed(&a, 1), None, "{a:?}");
    assert_eq!(s.state(), State::Established);
    assert!(a.iter().any(|a| matches!(
        a,
        Action::Send {
            conn: 2,
            message: Message::Open(_)
        }
    )));
    let a = s.handle(
        Event::Message {
            conn: 2,
            message: Message::Open(gr_open(true)),
        },
        secs(t, 10),
    );
    assert_eq!(closed(&a, 1), Some(Reason::PeerRestarted));
    assert_eq!(
        down(&a),
        Some((
            Reason::PeerRestarted,
            Some(Stale {
                restart_time: 60,
                families: vec![Family::IPV4_UNICAST]
            })
        ))
    );
    assert_eq!(
        armed(&a, Timer::IdleHold),
        None,
        "no idle hold: the new connection goes on"
    );
    let a = s.handle(
        Event::Message {
            conn: 2,
            message: Message::Keepalive,
        },
        secs(t, 10),
    );
    let Some(Action::Up { negotiated, .. }) = a.iter().find(|a| matches!(a, Action::Up { .. }))
    else {
        panic!("no Up")
    };
    assert!(
        negotiated
            .peer_graceful_restart
            .as_ref()
            .is_some_and(|g| g.restarting)
    );
}

/// The peer's own connection attempt from before the session came up arrives late and is closed
/// by the peer without an OPEN: the established session is untouched.
#[test]
fn a_late_connection_from_a_graceful_restart_peer_does_not_end_the_session() {
    let t = Instant::now();
    let (mut s, _) = established(gr_config(), gr_open(false), t);
    s.handle(
        Event::Connected {
            conn: 2,
            inbound: true,
        },
        secs(t, 1),
    );
    let a = s.handle(Event::Closed { conn: 2 }, secs(t, 1));
    assert_eq!(closed(&a, 1), None, "{a:?}");
    assert_eq!(down(&a), None, "{a:?}");
    assert_eq!(s.state(), State::Established);
    assert_eq!(armed(&a, Timer::ConnectRetry), None, "{a:?}");
}

#[test]
fn the_restart_bit_goes_only_in_opens_before_the_first_established_session() {
    let restarting = PeerConfig {
        graceful_restart: Some(GracefulRestartConfig {
            restart_time: 120,
            restarting: true,
            forwarding_preserved: true,
        }),
        ..ibgp()
    };
    let r_bit = |s: &Session| {
        s.open().capabilities.iter().any(|c| {
            matches!(c, Capability::GracefulRestart(g) if g.restarting
                && g.families.iter().all(|f| f.forwarding_preserved))
        })
    };
    assert!(r_bit(&Session::new(restarting.clone()).unwrap()));
    let t = Instant::now();
    let (mut s, _) = established(restarting, gr_open(false), t);
    assert!(!r_bit(&s));
    s.handle(Event::Closed { conn: 1 }, t);
    assert!(!r_bit(&s), "a reconnect is no restart");
}

#[test]
fn parts_of_updates_for_families_not_negotiated_are_ignored() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let v6 = crate::wire::MpReach {
        family: Family::IPV6_UNICAST,
        next_hop: crate::wire::NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        },
        nlri: vec![Nlri::new("2001:db8:1::/48".parse().unwrap())],
    };
    let v4 = vec![Nlri::new("198.19.0.0/26".parse().unwrap())];
    let u = Update {
        withdrawn: v4.clone(),
        mp_reach: Some(v6),
        ..Update::default()
    };
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Update(u),
        },
        t,
    );
    assert!(a.contains(&Action::Received(Update {
        withdrawn: v4,
        ..Update::default()
    })));
    // An IPv6-only session ignores the IPv4 fields.
    let cfg = PeerConfig {
        families: vec![Family::IPV6_UNICAST],
        ..ibgp()
    };
    let mut open = peer_open([198, 18, 0, 9], 90);
    open.capabilities[0] = Capability::Multiprotocol(Family::IPV6_UNICAST);
    let (mut s, _) = established(cfg, open, t);
    let u = Update {
        withdrawn: vec![Nlri::new("198.19.0.0/26".parse().unwrap())],
        ..Update::default()
    };
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: Message::Update(u),
        },
        t,
    );
    assert_eq!(
        a,
        vec![Action::ArmTimer {
            timer: Timer::Hold(1),
            at: secs(t, 90)
        }]
    );
    // Nor is an IPv4 End-of-RIB anything to it.
    let eor = Message::Update(Update::end_of_rib(Family::IPV4_UNICAST));
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: eor,
        },
        t,
    );
    assert_eq!(
        a,
        vec![Action::ArmTimer {
            timer: Timer::Hold(1),
            at: secs(t, 90)
        }]
    );
    let eor6 = Message::Update(Update::end_of_rib(Family::IPV6_UNICAST));
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: eor6,
        },
        t,
    );
    assert!(a.contains(&Action::EndOfRib(Family::IPV6_UNICAST)));
}

#[test]
fn route_refresh_only_for_negotiated_families() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    let rr = |family| Message::RouteRefresh(RouteRefresh { family, subtype: 0 });
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: rr(Family::IPV4_UNICAST),
        },
        t,
    );
    assert!(a.contains(&Action::RouteRefresh(Family::IPV4_UNICAST)));
    let a = s.handle(
        Event::Message {
            conn: 1,
            message: rr(Family::IPV6_UNICAST),
        },
        t,
    );
    assert!(!a.iter().any(|a| matches!(a, Action::RouteRefresh(_))));
}

#[test]
fn add_path_and_extended_messages_per_direction() {
    let t = Instant::now();
    let cfg = PeerConfig {
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        add_path: vec![
            AddPathFamily {
                family: Family::IPV4_UNICAST,
                mode: AddPathMode::Both,
            },
            AddPathFamily {
                family: Family::IPV6_UNICAST,
                mode: AddPathMode::Receive,
            },
        ],
        ..ibgp()
    };
    let mut open = peer_open([198, 18, 0, 9], 90);
    open.capabilities
        .push(Capability::Multiprotocol(Family::IPV6_UNICAST));
    open.capabilities.push(Capability::ExtendedMessage);
    open.capabilities.push(Capability::AddPath(vec![
        // The peer only receives IPv4 paths: we send them, it does not.
        AddPathFamily {
            family: Family::IPV4_UNICAST,
            mode: AddPathMode::Receive,
        },
        // The peer sends and receives IPv6 paths: it sends, we only receive.
        AddPathFamily {
            family: Family::IPV6_UNICAST,
            mode: AddPathMode::Both,
        },
    ]));
    let (s, _) = established(cfg, open, t);
    let n = s.negotiated().unwrap();
    assert_eq!(n.families, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert_eq!(
        n.encode,
        Context {
            four_octet_as: true,
            extended_message: true,
            add_path: vec![Family::IPV4_UNICAST]
        }
    );
    assert_eq!(
        n.decode,
        Context {
            four_octet_as: true,
            extended_message: true,
            add_path: vec![Family::IPV6_UNICAST]
        }
    );
}

#[test]
fn events_for_unknown_connections_are_ignored() {
    let t = Instant::now();
    let (mut s, _) = established(ibgp(), peer_open([198, 18, 0, 9], 90), t);
    assert!(s.handle(Event::Closed { conn: 42 }, t).is_empty());
    assert!(
        s.handle(
            Event::Message {
                conn: 42,
                message: Message::Keepalive
            },
            t
        )
        .is_empty()
    );
    assert!(s.handle(Event::TimerExpired(Timer::Hold(42)), t).is_empty());
    assert_eq!(s.state(), State::Established);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            // The peer's OPEN with one of a few identifiers (ours included), hold times and
            // ASes (one of them wrong).
            (
                prop::sample::select(vec![[198, 18, 0, 1], [198, 18, 0, 5], [198, 18, 0, 9]]),
                prop::sample::select(vec![0u16, 3, 90, 240]),
                prop::sample::select(vec![64512u32, 64513]),
                any::<bool>(),
            )
                .prop_map(|(id, hold, asn, gr)| {
                    let mut open = Open::new(
                        asn,
                        hold,
                        Ipv4Addr::from(id),
                        vec![
                            Capability::Multiprotocol(Family::IPV4_UNICAST),
                            Capability::FourOctetAs(asn),
                        ],
                    );
                    if gr {
                        open.capabilities
                            .push(Capability::GracefulRestart(GracefulRestart {
                                restarting: false,
                                notification: false,
                                restart_time: 30,
                                families: vec![GrFamily {
                                    family: Family::IPV4_UNICAST,
                                    forwarding_preserved: true,
                                }],
                            }));
                    }
                    Message::Open(open)
                }),
            Just(Message::Keepalive),
            Just(Message::Update(Update::end_of_rib(Family::IPV4_UNICAST))),
            Just(Message::Notification(Notification::new(6, 2, []))),
            Just(Message::RouteRefresh(RouteRefresh {
                family: Family::IPV4_UNICAST,
                subtype: 0
            })),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        let conn = 1u64..4;
        prop_oneof![
            1 => Just(Event::Start),
            1 => Just(Event::Stop),
            3 => (conn.clone(), any::<bool>()).prop_map(|(conn, inbound)| Event::Connected { conn, inbound }),
                        1 => Just(Event::ConnectFailed),
            1 => Just(Event::Reset(Notification::new(6, 4, []))),
            1 => (0usize..3).prop_map(|count| Event::PrefixCount { family: Family::IPV4_UNICAST, count }),
            2 => conn.clone().prop_map(|conn| Event::Closed { conn }),
            8 => (conn.clone(), message()).prop_map(|(conn, message)| Event::Message { conn, message }),
            1 => (conn.clone(), any::<bool>()).prop_map(|(conn, reset)| Event::Malformed {
                conn,
                error: if reset {
                    DecodeError::Reset(Notification::new(3, 1, []))
                } else {
                    DecodeError::TreatAsWithdraw { withdrawn: vec![], reason: Notification::new(3, 6, []) }
                },
            }),
            3 => prop_oneof![
                Just(Timer::ConnectRetry),
                Just(Timer::IdleHold),
                conn.clone().prop_map(Timer::Hold),
                conn.prop_map(Timer::Keepalive),
            ]
            .prop_map(Event::TimerExpired),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Any sequence of events keeps the machine consistent: at most one connection each
        /// way, Up and Down alternate and match the Established state, actions only name
        /// connections that exist, and deadlines are never in the past.
        #[test]
        fn random_event_sequences_keep_the_invariants(
            passive in any::<bool>(),
            gr in any::<bool>(),
            events in prop::collection::vec((event(), 0u64..100), 1..60),
        ) {
            let cfg = PeerConfig {
                passive,
                graceful_restart: gr.then_some(GracefulRestartConfig {
                    restart_time: 120,
                    restarting: false,
                    forwarding_preserved: true,
                }),
                                max_prefixes: Some(1),
                ..ibgp()
            };
            let mut s = Session::new(cfg).unwrap();
            let mut now = Instant::now();
            let mut up = false;
            for (event, step) in events {
                now += Duration::from_millis(step * 100);
                let mut live: Vec<ConnId> = s.conns.iter().map(|c| c.id).collect();
                if let Event::Connected { conn, .. } = &event {
                    live.push(*conn);
                }
                let actions = s.handle(event, now);
                for a in &actions {
                    match a {
                        Action::Up { .. } => {
                            prop_assert!(!up, "Up twice");
                            up = true;
                        }
                        Action::Down { .. } => {
                            prop_assert!(up, "Down without Up");
                            up = false;
                        }
                        Action::Send { conn, .. } | Action::Close { conn, .. } => {
                            prop_assert!(live.contains(conn), "action on unknown connection {conn}");
                        }
                        Action::ArmTimer { at, .. } => prop_assert!(*at >= now),
                        _ => {}
                    }
                }
                prop_assert!(s.conns.len() <= 2);
                prop_assert!(s.conns.len() < 2 || s.conns[0].id != s.conns[1].id);
                // Two connections of one direction only while a graceful-restart peer's new
                // connection waits for its OPEN beside the established session.
                let restart_candidate = s.conns.len() == 2
                    && s.conns.iter().any(|c| c.state == State::Established)
                    && s.conns.iter().any(|c| c.inbound && c.state == State::OpenSent);
                prop_assert!(
                    s.conns.iter().filter(|c| c.inbound).count() <= 1 || restart_candidate
                );
                prop_assert!(s.conns.iter().filter(|c| !c.inbound).count() <= 1);
                let established = s.conns.iter().filter(|c| c.state == State::Established).count();
                prop_assert!(established <= 1);
                prop_assert_eq!(up, s.state() == State::Established);
                prop_assert_eq!(established == 1, s.negotiated().is_some());
                if !s.enabled {
                    prop_assert!(s.conns.is_empty());
                    prop_assert_eq!(s.state(), State::Idle);
                }
                if s.cfg.passive {
                    prop_assert!(!actions.contains(&Action::Connect));
                }
            }
        }
    }
}
