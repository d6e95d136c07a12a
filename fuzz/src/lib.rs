//! The fuzz harness: one input drives either the message codec or a session in Established.
//!
//! Input layout: the first byte selects the mode and the negotiated context, the rest is a
//! byte stream as it would arrive from a peer.
//!
//! - bit 7 clear: **codec**. The stream is cut with `frame` and every message decoded under
//!   the context; a framing error must be a Message Header Error, a decoded message must
//!   encode again and decode to the same value after one normalising round (the partial bit
//!   of unknown attributes, attribute order), and every reset carries a real error code.
//! - bit 7 set: **session**. A session is brought to Established with a peer whose OPEN
//!   matches the flags, then each framed message is decoded with the negotiated context and
//!   fed in. Every malformed message that RFC 4271/7606 says ends the session must yield the
//!   NOTIFICATION the decoder chose, sent on the connection, and the session must go down.
//!
//! Flag bits 0..=3: 4-octet AS, extended messages, ADD-PATH IPv4, ADD-PATH IPv6.
//! Bits 4..=6 (session mode): the byte pattern that interleaves timer and control events.
//!
//! Everything here panics on a broken rule, which AFL records as a crash.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use calico_bgp::session::{
    Action, Event, GracefulRestartConfig, PeerConfig, Reason, Session, State, Timer,
};
use calico_bgp::wire::{
    AddPathFamily, AddPathMode, Capability, Context, DecodeError, Family, GrFamily,
    GracefulRestart, Message, Open, code, decode, frame,
};

pub const SESSION: u8 = 0x80;
pub const FOUR_OCTET_AS: u8 = 0x01;
pub const EXTENDED_MESSAGE: u8 = 0x02;
pub const ADD_PATH_V4: u8 = 0x04;
pub const ADD_PATH_V6: u8 = 0x08;

/// Our AS and the peer's (iBGP: the route-reflection and ORIGINATOR_ID paths are live).
pub const LOCAL_AS: u32 = 64512;
pub const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// The context that `flags` stand for (the same for both directions).
pub fn context(flags: u8) -> Context {
    let mut add_path = Vec::new();
    if flags & ADD_PATH_V4 != 0 {
        add_path.push(Family::IPV4_UNICAST);
    }
    if flags & ADD_PATH_V6 != 0 {
        add_path.push(Family::IPV6_UNICAST);
    }
    Context {
        four_octet_as: flags & FOUR_OCTET_AS != 0,
        extended_message: flags & EXTENDED_MESSAGE != 0,
        add_path,
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    if flags & SESSION == 0 {
        codec(&context(flags), stream);
    } else {
        session(flags, stream);
    }
}

fn codec(ctx: &Context, mut stream: &[u8]) {
    loop {
        match frame(stream, ctx) {
            Ok(Some(len)) => {
                let (msg, rest) = stream.split_at(len);
                check_message(msg, ctx);
                stream = rest;
            }
            Ok(None) => {
                // An incomplete message: the decoder must still refuse it without panicking.
                if !stream.is_empty() {
                    assert!(decode(stream, ctx).is_err(), "a partial message decoded");
                }
                return;
            }
            Err(n) => {
                assert_eq!(n.code, code::MESSAGE_HEADER, "framing error {n:?}");
                // The decoder sees the same header and must agree.
                if stream.len() >= calico_bgp::wire::HEADER_LEN {
                    assert!(decode(stream, ctx).is_err());
                }
                return;
            }
        }
    }
}

fn check_message(msg: &[u8], ctx: &Context) {
    match decode(msg, ctx) {
        Ok(decoded) => {
            let Ok(bytes) = decoded.message.to_bytes(ctx) else {
                // Encoding may refuse (too long once normalised); it must not panic.
                return;
            };
            let once = decode(&bytes, ctx)
                .unwrap_or_else(|e| panic!("our own encoding does not decode: {e:?}"))
                .message;
            let bytes2 = once
                .to_bytes(ctx)
                .unwrap_or_else(|e| panic!("a normalised message no longer encodes: {e:?}"));
            let twice = decode(&bytes2, ctx)
                .unwrap_or_else(|e| panic!("our own encoding does not decode: {e:?}"))
                .message;
            assert_eq!(once, twice, "decode/encode is not stable");
        }
        Err(DecodeError::Reset(n)) => {
            assert!(
                (code::MESSAGE_HEADER..=code::CEASE).contains(&n.code),
                "reset with code {}",
                n.code
            );
        }
        Err(DecodeError::TreatAsWithdraw { .. }) => {}
    }
}

/// Our configuration for the session mode: IPv4 and IPv6, graceful restart, ADD-PATH both
/// ways for the families the flags name, a prefix limit.
pub fn peer_config(flags: u8) -> PeerConfig {
    let mut add_path = Vec::new();
    for (bit, family) in [
        (ADD_PATH_V4, Family::IPV4_UNICAST),
        (ADD_PATH_V6, Family::IPV6_UNICAST),
    ] {
        if flags & bit != 0 {
            add_path.push(AddPathFamily {
                family,
                mode: AddPathMode::Both,
            });
        }
    }
    PeerConfig {
        passive: true,
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        add_path,
        graceful_restart: Some(GracefulRestartConfig {
            restart_time: 120,
            restarting: false,
            forwarding_preserved: true,
        }),
        extended_message: true,
        max_prefixes: Some(1000),
        ..PeerConfig::new(LOCAL_AS, LOCAL_ID, LOCAL_AS)
    }
}

/// The peer's OPEN for the session mode, advertising what the flags name.
pub fn peer_open(flags: u8) -> Open {
    let mut caps = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::Multiprotocol(Family::IPV6_UNICAST),
        Capability::RouteRefresh,
        Capability::GracefulRestart(GracefulRestart {
            restarting: false,
            notification: false,
            restart_time: 120,
            families: vec![
                GrFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                },
                GrFamily {
                    family: Family::IPV6_UNICAST,
                    forwarding_preserved: true,
                },
            ],
        }),
    ];
    if flags & FOUR_OCTET_AS != 0 {
        caps.push(Capability::FourOctetAs(LOCAL_AS));
    }
    if flags & EXTENDED_MESSAGE != 0 {
        caps.push(Capability::ExtendedMessage);
    }
    let add_path: Vec<AddPathFamily> = [
        (ADD_PATH_V4, Family::IPV4_UNICAST),
        (ADD_PATH_V6, Family::IPV6_UNICAST),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, family)| AddPathFamily {
        family,
        mode: AddPathMode::Both,
    })
    .collect();
    if !add_path.is_empty() {
        caps.push(Capability::AddPath(add_path));
    }
    Open::new(LOCAL_AS, 90, PEER_ID, caps)
}

fn sent_notification(actions: &[Action]) -> Option<&calico_bgp::wire::Notification> {
    actions.iter().find_map(|a| match a {
        Action::Send {
            message: Message::Notification(n),
            ..
        } => Some(n),
        _ => None,
    })
}

fn went_down(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Down { .. }))
}

const CONN: u64 = 1;

fn session(flags: u8, mut stream: &[u8]) {
    let mut now = Instant::now();
    let mut s = Session::new(peer_config(flags)).expect("valid configuration");
    s.handle(Event::Start, now);
    s.handle(
        Event::Connected {
            conn: CONN,
            inbound: true,
        },
        now,
    );
    s.handle(
        Event::Message {
            conn: CONN,
            message: Message::Open(peer_open(flags)),
        },
        now,
    );
    s.handle(
        Event::Message {
            conn: CONN,
            message: Message::Keepalive,
        },
        now,
    );
    assert_eq!(s.state(), State::Established);
    let ctx = s.negotiated().expect("negotiated").decode.clone();
    assert_eq!(ctx, context(flags));
    // Which side events to interleave between messages (bits 4..=6), cycling.
    let pattern = (flags >> 4) & 0x07;
    let mut n: u32 = 0;
    loop {
        let event = match frame(stream, &ctx) {
            Ok(Some(len)) => {
                let (msg, rest) = stream.split_at(len);
                stream = rest;
                match decode(msg, &ctx) {
                    Ok(d) => Event::Message {
                        conn: CONN,
                        message: d.message,
                    },
                    Err(error) => Event::Malformed { conn: CONN, error },
                }
            }
            Ok(None) => return,
            Err(n) => Event::Malformed {
                conn: CONN,
                error: DecodeError::Reset(n),
            },
        };
        let expect_reset = match &event {
            Event::Malformed {
                error: DecodeError::Reset(n),
                ..
            } => Some(n.clone()),
            _ => None,
        };
        let got_notification = matches!(
            &event,
            Event::Message {
                message: Message::Notification(_),
                ..
            }
        );
        now += Duration::from_millis(10);
        let actions = s.handle(event, now);
        if let Some(expected) = expect_reset {
            assert_eq!(
                sent_notification(&actions),
                Some(&expected),
                "a malformed message must be answered with its NOTIFICATION: {actions:?}"
            );
            assert!(went_down(&actions), "the session must go down: {actions:?}");
            assert_ne!(s.state(), State::Established);
            return;
        }
        if s.state() != State::Established {
            // Left Established otherwise (a NOTIFICATION received, an FSM error such as an
            // OPEN now): it must say so.
            assert!(
                went_down(&actions),
                "left Established silently: {actions:?}"
            );
            if !got_notification {
                assert!(
                    sent_notification(&actions).is_some()
                        || actions.iter().any(|a| matches!(
                            a,
                            Action::Close {
                                reason: Reason::Sent(_),
                                ..
                            }
                        )),
                    "closed without a NOTIFICATION: {actions:?}"
                );
            }
            return;
        }
        // Side events between messages, chosen by the flags: a keepalive timer, a prefix
        // count under the limit, a route-refresh-worthy lapse of time.
        n = n.wrapping_add(1);
        if pattern & 1 != 0 && n.is_multiple_of(2) {
            let actions = s.handle(Event::TimerExpired(Timer::Keepalive(CONN)), now);
            assert!(
                actions.iter().any(|a| matches!(
                    a,
                    Action::Send {
                        message: Message::Keepalive,
                        ..
                    }
                )),
                "keepalive timer sent nothing: {actions:?}"
            );
        }
        if pattern & 2 != 0 {
            let actions = s.handle(
                Event::PrefixCount {
                    family: Family::IPV4_UNICAST,
                    count: (n as usize) % 1000,
                },
                now,
            );
            assert!(actions.is_empty(), "under the limit: {actions:?}");
        }
        if pattern & 4 != 0 {
            // A stale timer that is not running changes nothing.
            s.handle(Event::TimerExpired(Timer::Stale), now);
            assert_eq!(s.state(), State::Established);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every committed seed and every crash regression file runs through the harness without
    /// a broken rule (`cargo test --lib` here; no AFL needed).
    #[test]
    fn seeds_pass_the_harness() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut ran = 0;
        for dir in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("entry").path();
                let data = std::fs::read(&path).expect("read seed");
                eprintln!("{}", path.display());
                super::run(&data);
                ran += 1;
            }
        }
        assert!(ran >= 10, "only {ran} seeds found");
    }
}

#[cfg(test)]
mod seed_checks {
    use super::*;

    /// The second message of a two-message session seed, decoded under the seed's context.
    fn second_message(name: &str) -> Result<calico_bgp::wire::Decoded, DecodeError> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let data = std::fs::read(root.join("seeds").join(name)).expect("seed");
        let ctx = context(data[0]);
        let stream = &data[1..];
        let first = frame(stream, &ctx).expect("frame").expect("whole");
        let rest = &stream[first..];
        let len = match frame(rest, &ctx) {
            Ok(Some(len)) => len,
            // The header does not say where the message ends: decode what there is.
            _ => rest.len(),
        };
        decode(&rest[..len], &ctx)
    }

    /// The bad-UPDATE seeds reach both error paths of the session mode.
    #[test]
    fn the_bad_update_seeds_reach_both_error_paths() {
        match second_message("19-session-treat-as-withdraw") {
            Err(DecodeError::TreatAsWithdraw { reason, .. }) => {
                assert_eq!(reason.code, code::UPDATE_MESSAGE)
            }
            other => panic!("expected treat-as-withdraw: {other:?}"),
        }
        match second_message("20-session-reset") {
            Err(DecodeError::Reset(n)) => assert_eq!(n.code, code::UPDATE_MESSAGE),
            other => panic!("expected a reset: {other:?}"),
        }
    }
}
