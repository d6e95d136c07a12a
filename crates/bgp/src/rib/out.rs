//! Adj-RIB-Out: what each peer was last sent, so that only changes go out, and the packing of
//! those changes into UPDATE messages that fit the session's maximum message size.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::Exported;
use crate::wire::{Context, Family, MpReach, MpUnreach, NextHop, Nlri, PathAttributes, Update};

/// One prefix's change toward a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutChange {
    Announce(IpNet, Exported),
    Withdraw(IpNet),
}

/// What one peer was last sent.
#[derive(Clone, Debug, Default)]
pub struct AdjRibOut {
    sent: HashMap<IpNet, Exported>,
}

impl AdjRibOut {
    /// Records what the peer should now have for `prefix`; the change to send, if any.
    pub fn set(&mut self, prefix: IpNet, new: Option<Exported>) -> Option<OutChange> {
        match new {
            Some(e) => {
                if self.sent.get(&prefix) == Some(&e) {
                    return None;
                }
                self.sent.insert(prefix, e.clone());
                Some(OutChange::Announce(prefix, e))
            }
            None => self
                .sent
                .remove(&prefix)
                .map(|_| OutChange::Withdraw(prefix)),
        }
    }

    /// Everything currently advertised (for a route refresh or a new session), one family.
    pub fn announcements(&self, family: Family) -> Vec<OutChange> {
        let mut v: Vec<OutChange> = self
            .sent
            .iter()
            .filter(|(p, _)| Nlri::new(**p).family() == family)
            .map(|(p, e)| OutChange::Announce(*p, e.clone()))
            .collect();
        v.sort_by_key(|c| match c {
            OutChange::Announce(p, _) | OutChange::Withdraw(p) => *p,
        });
        v
    }

    /// The prefixes the peer was sent and has now.
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.sent.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// The session went down: the peer has nothing from us any more.
    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

fn nlri_len(prefix: &IpNet, add_path: bool) -> usize {
    usize::from(add_path) * 4 + 1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

/// Header, both section lengths.
const UPDATE_OVERHEAD: usize = 19 + 2 + 2;
/// An MP attribute's header with the extended length (assumed, to stay on the safe side), AFI
/// and SAFI.
const MP_OVERHEAD: usize = 4 + 3;

/// UPDATEs ready to send, and the prefixes that could not be put in any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packed {
    pub updates: Vec<Update>,
    /// Announcements left out: a next hop of the other family (RFC 8950 next hops are not
    /// negotiated) or attributes too large for one message.
    pub unsendable: Vec<IpNet>,
}

/// Longest NLRI entry: path identifier, length octet, 16 address octets.
const MAX_NLRI_LEN: usize = 4 + 1 + 16;

/// Packs `changes` into UPDATEs no larger than `ctx` allows. Announcements with the same
/// attributes and next hop share UPDATEs; IPv4 uses the RFC 4271 fields, IPv6 the MP
/// attributes.
pub fn pack(changes: &[OutChange], ctx: &Context) -> Packed {
    let max = ctx.max_message_len();
    let mut out = Vec::new();
    let mut unsendable = Vec::new();
    let (mut w4, mut w6) = (Vec::new(), Vec::new());
    let mut groups: Vec<(&Exported, Vec<IpNet>)> = Vec::new();
    let mut index: HashMap<&Exported, usize> = HashMap::new();
    for c in changes {
        match c {
            OutChange::Withdraw(p @ IpNet::V4(_)) => w4.push(*p),
            OutChange::Withdraw(p @ IpNet::V6(_)) => w6.push(*p),
            OutChange::Announce(p, e) => {
                let i = *index.entry(e).or_insert_with(|| {
                    groups.push((e, Vec::new()));
                    groups.len() - 1
                });
                groups[i].1.push(*p);
            }
        }
    }

    // Withdrawals.
    let ap4 = ctx.add_path(Family::IPV4_UNICAST);
    for chunk in chunks(&w4, max - UPDATE_OVERHEAD, ap4) {
        out.push(Update {
            withdrawn: to_nlri(chunk),
            ..Update::default()
        });
    }
    let ap6 = ctx.add_path(Family::IPV6_UNICAST);
    for chunk in chunks(&w6, max - UPDATE_OVERHEAD - MP_OVERHEAD, ap6) {
        let mp_unreach = Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            nlri: to_nlri(chunk),
        });
        out.push(Update {
            mp_unreach,
            ..Update::default()
        });
    }

    // Announcements, one attribute set at a time.
    for (e, prefixes) in groups {
        let (v4, v6): (Vec<IpNet>, Vec<IpNet>) =
            prefixes.iter().partition(|p| matches!(p, IpNet::V4(_)));
        match (v4.is_empty(), e.next_hop) {
            (true, _) => {}
            (false, IpAddr::V4(nh)) => {
                let attributes = PathAttributes {
                    next_hop: Some(nh),
                    ..e.attrs.clone()
                };
                let base = encoded_len(
                    &Update {
                        attributes: attributes.clone(),
                        ..Update::default()
                    },
                    ctx,
                );
                match base.filter(|&b| b + MAX_NLRI_LEN <= max) {
                    Some(base) => {
                        for chunk in chunks(&v4, max - base, ap4) {
                            let nlri = to_nlri(chunk);
                            out.push(Update {
                                attributes: attributes.clone(),
                                nlri,
                                ..Update::default()
                            });
                        }
                    }
                    None => unsendable.extend_from_slice(&v4),
                }
            }
            (false, IpAddr::V6(_)) => unsendable.extend_from_slice(&v4),
        }
        if let (false, IpAddr::V4(_)) = (v6.is_empty(), e.next_hop) {
            unsendable.extend_from_slice(&v6);
        }
        if let (false, IpAddr::V6(global)) = (v6.is_empty(), e.next_hop) {
            let attributes = PathAttributes {
                next_hop: None,
                ..e.attrs.clone()
            };
            let reach = |nlri| MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global,
                    link_local: None,
                },
                nlri,
            };
            let probe = Update {
                attributes: attributes.clone(),
                mp_reach: Some(reach(Vec::new())),
                ..Update::default()
            };
            // +1: the MP attribute may need the extended length once it holds prefixes.
            let base = encoded_len(&probe, ctx).map(|b| b + 1);
            match base.filter(|&b| b + MAX_NLRI_LEN <= max) {
                Some(base) => {
                    for chunk in chunks(&v6, max - base, ap6) {
                        out.push(Update {
                            attributes: attributes.clone(),
                            mp_reach: Some(reach(to_nlri(chunk))),
                            ..Update::default()
                        });
                    }
                }
                None => unsendable.extend_from_slice(&v6),
            }
        }
    }
    Packed {
        updates: out,
        unsendable,
    }
}

fn encoded_len(u: &Update, ctx: &Context) -> Option<usize> {
    crate::wire::Message::Update(u.clone())
        .to_bytes(ctx)
        .ok()
        .map(|b| b.len())
}

fn to_nlri(prefixes: &[IpNet]) -> Vec<Nlri> {
    prefixes.iter().map(|p| Nlri::new(*p)).collect()
}

/// Splits `prefixes` into runs whose encoding fits `budget` bytes.
fn chunks(prefixes: &[IpNet], budget: usize, add_path: bool) -> Vec<&[IpNet]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, p) in prefixes.iter().enumerate() {
        let n = nlri_len(p, add_path);
        if used + n > budget && i > start {
            out.push(&prefixes[start..i]);
            start = i;
            used = 0;
        }
        used += n;
    }
    if start < prefixes.len() {
        out.push(&prefixes[start..]);
    }
    out
}
