//! Adj-RIB-Out: what each peer was last sent, so that only changes go out, and the packing of
//! those changes into UPDATE messages that fit the session's maximum message size.

use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use super::Exported;
use crate::wire::{Context, Family, MpReach, MpUnreach, NextHop, Nlri, PathAttributes, Update};

/// One prefix's change toward a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutChange {
    /// The shared (interned) export: equal exports are the same allocation.
    Announce(IpNet, Arc<Exported>),
    Withdraw(IpNet),
}

/// Equal exports held once across every Adj-RIB-Out that shares this: a reflector sends the
/// same attributes for a prefix to each of its clients, so without it each client's table
/// would hold its own copy of every route's attribute vectors.
#[derive(Clone, Debug, Default)]
pub struct ExportInterner {
    inner: Arc<Mutex<Interned>>,
}

#[derive(Debug, Default)]
struct Interned {
    set: FxHashSet<Arc<Exported>>,
    /// Entries after the last sweep: the next one comes when the set has doubled since, so
    /// sweeping costs O(1) per insert and the set holds at most twice what is in use.
    after_sweep: usize,
}

/// Below this many entries the interner is not swept.
const SWEEP_FLOOR: usize = 1024;

impl ExportInterner {
    /// The shared copy of `e`.
    pub fn intern(&self, e: &Exported) -> Arc<Exported> {
        // Only held for a lookup or an insert (a panic cannot leave the set half-changed).
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = inner.set.get(e) {
            return Arc::clone(shared);
        }
        if inner.set.len() >= (2 * inner.after_sweep).max(SWEEP_FLOOR) {
            // Held by the set alone: no Adj-RIB-Out has it any more. Nobody can take a new
            // reference meanwhile, since new ones only come from here, under the lock.
            inner.set.retain(|a| Arc::strong_count(a) > 1);
            inner.after_sweep = inner.set.len();
        }
        let shared = Arc::new(e.clone());
        inner.set.insert(Arc::clone(&shared));
        shared
    }

    /// Distinct exports held (including ones not swept yet).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one peer was last sent.
#[derive(Clone, Debug, Default)]
pub struct AdjRibOut {
    sent: FxHashMap<IpNet, Arc<Exported>>,
    interner: ExportInterner,
}

impl AdjRibOut {
    /// An Adj-RIB-Out whose exports are shared with every other one made with `interner`.
    pub fn sharing(interner: &ExportInterner) -> Self {
        AdjRibOut {
            sent: FxHashMap::default(),
            interner: interner.clone(),
        }
    }

    /// Records what the peer should now have for `prefix`; the change to send, if any.
    pub fn set(&mut self, prefix: IpNet, new: Option<Exported>) -> Option<OutChange> {
        let shared = new.map(|e| self.interner.intern(&e));
        self.set_shared(prefix, shared)
    }

    /// `set` for an export already shared (interned with this Adj-RIB-Out's interner): the
    /// same allocation as what was sent means nothing changed, without comparing values.
    pub fn set_shared(&mut self, prefix: IpNet, new: Option<Arc<Exported>>) -> Option<OutChange> {
        match new {
            Some(e) => {
                if self
                    .sent
                    .get(&prefix)
                    .is_some_and(|old| Arc::ptr_eq(old, &e) || **old == *e)
                {
                    return None;
                }
                self.sent.insert(prefix, Arc::clone(&e));
                Some(OutChange::Announce(prefix, e))
            }
            None => self
                .sent
                .remove(&prefix)
                .map(|_| OutChange::Withdraw(prefix)),
        }
    }

    /// The shared copy of `e`, from the interner this Adj-RIB-Out shares.
    pub fn intern(&self, e: &Exported) -> Arc<Exported> {
        self.interner.intern(e)
    }

    /// What the peer was last sent for `prefix`.
    pub fn get(&self, prefix: &IpNet) -> Option<&Exported> {
        self.sent.get(prefix).map(|e| &**e)
    }

    /// Everything currently advertised (for a route refresh or a new session), one family.
    pub fn announcements(&self, family: Family) -> Vec<OutChange> {
        let mut v: Vec<OutChange> = self
            .sent
            .iter()
            .filter(|(p, _)| Nlri::new(**p).family() == family)
            .map(|(p, e)| OutChange::Announce(*p, Arc::clone(e)))
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
    // Equal exports are one interned allocation: grouped by address, without hashing the
    // attributes. (Equal values in distinct allocations, as only tests make, go in separate
    // UPDATEs.)
    let mut index: FxHashMap<*const Exported, usize> = FxHashMap::default();
    for c in changes {
        match c {
            OutChange::Withdraw(p @ IpNet::V4(_)) => w4.push(*p),
            OutChange::Withdraw(p @ IpNet::V6(_)) => w6.push(*p),
            OutChange::Announce(p, e) => {
                let i = *index.entry(Arc::as_ptr(e)).or_insert_with(|| {
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
    let mut scratch = Vec::new();
    for (e, prefixes) in groups {
        let (v4, v6): (Vec<IpNet>, Vec<IpNet>) =
            prefixes.iter().partition(|p| matches!(p, IpNet::V4(_)));
        match (v4.is_empty(), e.next_hop) {
            (true, _) => {}
            (false, IpAddr::V4(nh)) => {
                // Measured as the UPDATE without prefixes, which is then reused.
                let mut probe = Update {
                    attributes: PathAttributes {
                        next_hop: Some(nh),
                        ..e.attrs.clone()
                    },
                    ..Update::default()
                };
                let base = crate::wire::update_len(&probe, ctx, &mut scratch);
                match base.filter(|&b| b + MAX_NLRI_LEN <= max) {
                    Some(base) => {
                        let mut runs = chunks(&v4, max - base, ap4).into_iter().peekable();
                        while let Some(chunk) = runs.next() {
                            let nlri = to_nlri(chunk);
                            // The last run takes the attributes, the others a copy.
                            let attributes = if runs.peek().is_some() {
                                probe.attributes.clone()
                            } else {
                                std::mem::take(&mut probe.attributes)
                            };
                            out.push(Update {
                                attributes,
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
            let base = crate::wire::update_len(&probe, ctx, &mut scratch).map(|b| b + 1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AsPath, Origin};

    fn exported(i: u32) -> Exported {
        Exported {
            attrs: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                local_pref: Some(100),
                originator_id: Some(std::net::Ipv4Addr::from(0xc613_0000 + i)),
                cluster_list: vec![std::net::Ipv4Addr::new(198, 18, 0, 1)],
                ..PathAttributes::default()
            },
            next_hop: IpAddr::V4(std::net::Ipv4Addr::from(0xc613_0000 + i)),
        }
    }

    fn prefix(i: u32) -> IpNet {
        IpNet::V4(
            ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 6)), 26).unwrap(),
        )
    }

    #[test]
    fn shared_tables_send_what_a_table_of_its_own_sends_and_hold_one_copy() {
        let interner = ExportInterner::default();
        let mut a = AdjRibOut::sharing(&interner);
        let mut b = AdjRibOut::sharing(&interner);
        let mut own = AdjRibOut::default();
        let steps: Vec<(u32, Option<u32>)> = vec![
            (1, Some(1)),
            (2, Some(2)),
            (1, Some(1)),
            (1, Some(3)),
            (2, None),
            (2, None),
            (3, Some(3)),
        ];
        for (p, e) in steps {
            let want = own.set(prefix(p), e.map(exported));
            assert_eq!(a.set(prefix(p), e.map(exported)), want);
            assert_eq!(b.set(prefix(p), e.map(exported)), want);
        }
        for t in [&a, &b] {
            assert_eq!(
                t.announcements(Family::IPV4_UNICAST),
                own.announcements(Family::IPV4_UNICAST)
            );
        }
        for p in [1, 3] {
            assert!(Arc::ptr_eq(&a.sent[&prefix(p)], &b.sent[&prefix(p)]));
        }
        // exported(3) twice across both tables and both prefixes: one allocation.
        assert!(Arc::ptr_eq(&a.sent[&prefix(1)], &b.sent[&prefix(3)]));
    }

    #[test]
    fn exports_nobody_holds_are_dropped_from_the_interner() {
        let interner = ExportInterner::default();
        let mut t = AdjRibOut::sharing(&interner);
        for round in 0..10u32 {
            for i in 0..1000 {
                t.set(prefix(i), Some(exported(round * 1000 + i)));
            }
            // 1,000 in use; the set never grows past twice that plus the floor.
            assert!(
                interner.len() <= 2 * 1000 + SWEEP_FLOOR,
                "{}",
                interner.len()
            );
        }
        t.clear();
        for i in 0..3 * SWEEP_FLOOR as u32 {
            t.set(prefix(0), Some(exported(100_000 + i)));
        }
        assert!(interner.len() <= 2 * SWEEP_FLOOR + 1, "{}", interner.len());
    }
}
