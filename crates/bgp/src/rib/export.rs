//! What one peer is sent for a best path: iBGP split horizon, route reflection (RFC 4456),
//! eBGP AS prepend and next-hop rules, and the per-peer export filter.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{DEFAULT_LOCAL_PREF, Path, PeerId, PeerInfo, RibConfig, Source};
use crate::policy::RouteView;
use crate::wire::PathAttributes;

/// RFC 1997 well-known communities.
pub const NO_EXPORT: u32 = 0xFFFF_FF01;
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;
pub const NO_EXPORT_SUBCONFED: u32 = 0xFFFF_FF03;

/// How a peer's next hop is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NextHopMode {
    /// Our address toward eBGP peers and for our own routes; unchanged toward iBGP peers.
    #[default]
    Auto,
    /// Always our address (BIRD's `next hop self`).
    OurAddress,
    /// Never changed, also toward eBGP peers (BIRD's `next hop keep`).
    Keep,
}

/// Attributes and next hop to advertise. `attrs.next_hop` is left empty: the next hop goes in
/// NEXT_HOP or MP_REACH_NLRI according to the prefix's family.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Exported {
    pub attrs: PathAttributes,
    pub next_hop: IpAddr,
}

/// iBGP split horizon, relaxed for route reflection: a client's routes go to everyone, a
/// non-client's only to clients (RFC 4456 §6). A path from `from` (`None`: our own) is kept
/// from `to` when this holds, whatever its attributes.
pub(super) fn split_horizon(from: Option<&PeerInfo>, to: &PeerInfo) -> bool {
    from.is_some_and(|from| to.ibgp && from.ibgp && !from.rr_client && !to.rr_client)
}

/// What `to` (peer `to_id`) is sent for `best`, the chosen path to `prefix`, or `None` when it
/// gets nothing (and so must be sent a withdrawal if it had something). `peers` resolves the
/// path's source.
pub fn export(
    cfg: &RibConfig,
    prefix: &IpNet,
    best: &Path,
    peers: &std::collections::BTreeMap<PeerId, PeerInfo>,
    to_id: PeerId,
    to: &PeerInfo,
) -> Option<Exported> {
    let from = match best.source {
        Source::Local => None,
        // Never back to where it came from.
        Source::Peer(id) if id == to_id => return None,
        Source::Peer(id) => Some(peers.get(&id)?),
    };
    if split_horizon(from, to) {
        return None;
    }
    let filtered = to.export.filter(&RouteView {
        prefix,
        from_peer: from.is_some(),
        attrs: &best.attrs,
    })?;
    // RFC 1997 well-known communities: NO_ADVERTISE goes to nobody, NO_EXPORT and
    // NO_EXPORT_SUBCONFED stay inside the AS (we run no confederation).
    let communities = &best.attrs.communities;
    if communities.contains(&NO_ADVERTISE)
        || (!to.ibgp
            && (communities.contains(&NO_EXPORT) || communities.contains(&NO_EXPORT_SUBCONFED)))
    {
        return None;
    }
    let reflected = match from {
        Some(from) if to.ibgp && from.ibgp => {
            // The receiver would drop it anyway (RFC 4456 §8).
            if best.attrs.originator_id == Some(to.router_id) {
                return None;
            }
            Some(from)
        }
        _ => None,
    };
    // As BIRD does, the export filter's changes come before the protocol's own (our AS
    // prepended toward an eBGP peer, next hop).
    let mut attrs = filtered.into_owned();
    let mut next_hop = best.next_hop;
    let ours = |to: &PeerInfo| -> Option<IpAddr> {
        match prefix {
            IpNet::V4(_) => to.self_v4.map(IpAddr::V4),
            IpNet::V6(_) => to.self_v6.map(IpAddr::V6),
        }
    };
    if to.ibgp {
        if let Some(from) = reflected {
            attrs.originator_id.get_or_insert(from.router_id);
            attrs.cluster_list.insert(0, cfg.cluster_id());
        }
        attrs.local_pref = Some(attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
        let set_self = match to.next_hop {
            NextHopMode::OurAddress => true,
            NextHopMode::Keep => false,
            // Our own routes carry our address unless they name another.
            NextHopMode::Auto => from.is_none() && next_hop.is_unspecified(),
        };
        if set_self {
            next_hop = ours(to)?;
        }
    } else {
        let path = attrs.as_path.get_or_insert_with(Default::default);
        path.prepend(cfg.local_as);
        attrs.local_pref = None;
        attrs.originator_id = None;
        attrs.cluster_list.clear();
        // A MED learned from one AS is not passed to another (RFC 4271 §5.1.4).
        if from.is_some() {
            attrs.med = None;
        }
        if to.next_hop != NextHopMode::Keep || next_hop.is_unspecified() {
            next_hop = ours(to)?;
        }
    }
    attrs.next_hop = None;
    Some(Exported { attrs, next_hop })
}
