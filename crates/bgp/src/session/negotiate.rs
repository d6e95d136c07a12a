//! OPEN checks (RFC 4271 §6.2, RFC 5492, RFC 6286) and what the two OPENs agree on.

use std::net::Ipv4Addr;

use super::config::PeerConfig;
use crate::wire::{Capability, Context, Family, GracefulRestart, Notification, Open, code};

/// What a session runs with once both OPENs are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    pub ibgp: bool,
    /// Seconds; 0 means no hold timer and no keepalives.
    pub hold_time: u16,
    pub keepalive: u16,
    /// Families both sides advertised.
    pub families: Vec<Family>,
    /// How to read the peer's messages and how to write ours.
    pub decode: Context,
    pub encode: Context,
    pub peer_route_refresh: bool,
    /// The peer's graceful restart capability, if both sides advertised one.
    pub peer_graceful_restart: Option<GracefulRestart>,
}

/// Checks the peer's OPEN against our configuration and derives the session parameters, or
/// returns the NOTIFICATION to send.
pub fn negotiate(cfg: &PeerConfig, peer: &Open) -> Result<Negotiated, Notification> {
    let peer_as = peer.asn();
    if peer_as != cfg.peer_as {
        let data = u16::try_from(peer_as)
            .unwrap_or(crate::wire::AS_TRANS)
            .to_be_bytes();
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            code::BAD_PEER_AS,
            data,
        ));
    }
    let ibgp = cfg.is_ibgp();
    // RFC 6286 §2.2: within an AS the identifiers must differ.
    if peer.bgp_id.is_unspecified() || (ibgp && peer.bgp_id == cfg.local_id) {
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            code::BAD_BGP_IDENTIFIER,
            peer.bgp_id.octets(),
        ));
    }
    if peer.hold_time == 1 || peer.hold_time == 2 {
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            code::UNACCEPTABLE_HOLD_TIME,
            [],
        ));
    }
    let peer_families = peer.families();
    let families: Vec<Family> = cfg
        .families
        .iter()
        .copied()
        .filter(|f| peer_families.contains(f))
        .collect();
    if families.is_empty() {
        // RFC 5492 §3: name the capabilities we need that the peer lacks.
        let mut data = Vec::new();
        for f in &cfg.families {
            // Encoding a 4-byte MP capability cannot fail.
            let _ = Capability::Multiprotocol(*f).encode(&mut data);
        }
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            code::UNSUPPORTED_CAPABILITY,
            data,
        ));
    }
    let hold_time = cfg.hold_time.min(peer.hold_time);
    let keepalive = match cfg.keepalive {
        // Never more often than asked, never less often than a third of the hold time.
        Some(k) if hold_time > 0 => k.min(hold_time / 3).max(1),
        _ => hold_time / 3,
    };
    let four_octet_as = peer.four_octet_as().is_some();
    let extended_message = cfg.extended_message && peer.has(crate::wire::CAP_EXTENDED_MESSAGE);
    let peer_add_path = peer.add_path();
    let mut rx = Vec::new();
    let mut tx = Vec::new();
    for ours in &cfg.add_path {
        if !families.contains(&ours.family) {
            continue;
        }
        let Some(theirs) = peer_add_path.iter().find(|p| p.family == ours.family) else {
            continue;
        };
        if ours.mode.can_receive() && theirs.mode.can_send() {
            rx.push(ours.family);
        }
        if ours.mode.can_send() && theirs.mode.can_receive() {
            tx.push(ours.family);
        }
    }
    let peer_graceful_restart = if cfg.graceful_restart.is_some() {
        peer.graceful_restart().cloned()
    } else {
        None
    };
    Ok(Negotiated {
        peer_as,
        peer_id: peer.bgp_id,
        ibgp,
        hold_time,
        keepalive,
        families,
        decode: Context {
            four_octet_as,
            extended_message,
            add_path: rx,
        },
        encode: Context {
            four_octet_as,
            extended_message,
            add_path: tx,
        },
        peer_route_refresh: peer.has(crate::wire::CAP_ROUTE_REFRESH),
        peer_graceful_restart,
    })
}
