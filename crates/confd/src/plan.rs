//! From the peers the speaker has to the peers it should have, touching only what changed.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::DesiredPeer;

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
