//! From the peers the speaker has to the peers it should have, touching only what changed.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::{DesiredPeer, Origination};

/// What to do to the speaker's peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerOps {
    /// New peers, and peers whose settings (or name or kind) changed: `Speaker::set_peer` each.
    pub add_or_change: Vec<DesiredPeer>,
    /// Peers whose address is no longer wanted: `Speaker::remove_peer` each.
    pub remove: Vec<DesiredPeer>,
}

impl PeerOps {
    pub fn is_empty(&self) -> bool {
        self.add_or_change.is_empty() && self.remove.is_empty()
    }
}

/// The speaker knows a peer by its address, so peers are matched by address: one whose
/// settings are unchanged is left alone, whatever else changes.
pub fn plan_peers(current: &[DesiredPeer], desired: &[DesiredPeer]) -> PeerOps {
    let now: HashMap<IpAddr, &DesiredPeer> =
        current.iter().map(|p| (p.settings.address, p)).collect();
    let wanted: HashMap<IpAddr, &DesiredPeer> =
        desired.iter().map(|p| (p.settings.address, p)).collect();
    let add_or_change = desired
        .iter()
        .filter(|p| now.get(&p.settings.address).is_none_or(|c| *c != *p))
        .cloned()
        .collect();
    let remove = current
        .iter()
        .filter(|p| !wanted.contains_key(&p.settings.address))
        .cloned()
        .collect();
    PeerOps {
        add_or_change,
        remove,
    }
}

/// What to change in the speaker's originations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginationOps {
    /// New prefixes, and prefixes whose communities changed: `Speaker::originate` each.
    pub originate: Vec<Origination>,
    /// Prefixes no longer wanted: `Speaker::withdraw` each.
    pub withdraw: Vec<IpNet>,
}

/// Originations are matched by prefix; an unchanged one is left alone.
pub fn plan_originations(current: &[Origination], desired: &[Origination]) -> OriginationOps {
    let now: HashMap<IpNet, &Origination> = current.iter().map(|o| (o.prefix, o)).collect();
    let wanted: HashMap<IpNet, &Origination> = desired.iter().map(|o| (o.prefix, o)).collect();
    OriginationOps {
        originate: desired
            .iter()
            .filter(|o| now.get(&o.prefix).is_none_or(|c| *c != *o))
            .cloned()
            .collect(),
        withdraw: current
            .iter()
            .filter(|o| !wanted.contains_key(&o.prefix))
            .map(|o| o.prefix)
            .collect(),
    }
}
