//! The decision process (RFC 4271 §9.1.2, RFC 4456 §9): which of a prefix's paths is best,
//! and which are equal enough to share traffic (ECMP).
//!
//! MED is only comparable between paths from the same neighbouring AS, which makes a pairwise
//! comparison non-transitive; so, as RFC 4271 §9.1.2.2 describes, the rules are applied as
//! successive eliminations over the whole candidate set.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use super::{PathView, PeerId, PeerInfo, Source};
use crate::wire::Origin;

/// LOCAL_PREF assumed when a path has none (the usual default; RFC 4271 leaves it to policy).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The outcome for one prefix: the best path and the equal-cost set it belongs to (indices into
/// the candidates, best first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub best: usize,
    pub multipath: Multipath,
}

/// Indices of the equal-cost set, best first (inline for the usual few).
pub type Multipath = SmallVec<[usize; 4]>;

struct Candidate<'a, P> {
    index: usize,
    path: &'a P,
    peer: Option<&'a PeerInfo>,
    /// The rules before MED, in order, computed once: lowest wins.
    rank: Rank,
}

/// Our own originations first, then fresh over stale (graceful restart), higher LOCAL_PREF,
/// shorter AS_PATH, lower ORIGIN. Comparing these tuples is the same as eliminating by each
/// rule in turn, since each later rule only decides among the survivors of the earlier ones.
type Rank = (bool, bool, std::cmp::Reverse<u32>, usize, Origin);

impl<P: PathView> Candidate<'_, P> {
    /// A missing MED counts as the lowest value (RFC 4271 §9.1.2.2 c).
    fn med(&self) -> u32 {
        self.path.attrs().med.unwrap_or(0)
    }
    fn neighbour_as(&self) -> Option<u32> {
        self.path
            .attrs()
            .as_path
            .as_ref()
            .and_then(|p| p.first_asn())
    }
    fn ebgp(&self) -> bool {
        self.peer.is_some_and(|p| !p.ibgp)
    }
    /// ORIGINATOR_ID stands in for the peer's identifier when present (RFC 4456 §9).
    fn router_id(&self) -> u32 {
        match (self.path.attrs().originator_id, self.peer) {
            (Some(id), _) => u32::from(id),
            (None, Some(p)) => u32::from(p.router_id),
            (None, None) => 0,
        }
    }
    fn cluster_len(&self) -> usize {
        self.path.attrs().cluster_list.len()
    }
    /// The tie-breakers among the equal-cost set (the paths' order there), the path's position
    /// among the prefix's paths aside: lower router id (or ORIGINATOR_ID), shorter
    /// CLUSTER_LIST, lower peer address, lower path id.
    fn tie_break(&self) -> (u32, usize, Option<std::net::IpAddr>, u32) {
        (
            self.router_id(),
            self.cluster_len(),
            self.peer.map(|p| p.address),
            self.path.path_id(),
        )
    }
}

/// The candidates still in the running. (A `SmallVec` here measured twice as slow: its
/// inline-or-heap check on every access costs more than the one allocation.)
type Candidates<'a, P> = Vec<Candidate<'a, P>>;

/// `path` (at `index` among the prefix's paths) as a candidate; `None` when it is from a peer
/// unknown to `peers`, which is never one.
fn candidate<'a, P: PathView>(
    index: usize,
    path: &'a P,
    peers: &'a BTreeMap<PeerId, PeerInfo>,
) -> Option<Candidate<'a, P>> {
    let peer = match path.source() {
        Source::Local => None,
        Source::Peer(id) => Some(peers.get(&id)?),
    };
    let attrs = path.attrs();
    let rank = (
        peer.is_some(),
        path.stale(),
        std::cmp::Reverse(attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)),
        attrs.as_path.as_ref().map_or(0, |p| p.decision_len()),
        attrs.origin.unwrap_or(Origin::Incomplete),
    );
    Some(Candidate {
        index,
        path,
        peer,
        rank,
    })
}

/// Chooses among `paths` (all for one prefix). Paths from peers unknown to `peers` are not
/// candidates. `None` when nothing is usable.
pub fn select<P: PathView>(paths: &[P], peers: &BTreeMap<PeerId, PeerInfo>) -> Option<Selection> {
    // The rules before MED in one pass: only the candidates of the best rank are kept.
    let mut c: Candidates<'_, P> = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let Some(x) = candidate(index, path, peers) else {
            continue;
        };
        match c.first().map(|first| x.rank.cmp(&first.rank)) {
            Some(std::cmp::Ordering::Greater) => {}
            Some(std::cmp::Ordering::Equal) => c.push(x),
            _ => {
                c.clear();
                c.push(x);
            }
        }
    }
    if let [only] = c.as_slice() {
        return Some(Selection {
            best: only.index,
            multipath: smallvec::smallvec![only.index],
        });
    }
    if c.is_empty() {
        return None;
    }
    // MED: within each neighbouring AS, only the lowest survives.
    // (Few neighbour ASes per prefix: a small list beats a map.)
    let mut lowest: SmallVec<[(Option<u32>, u32); 4]> = SmallVec::new();
    for x in &c {
        let asn = x.neighbour_as();
        match lowest.iter_mut().find(|(a, _)| *a == asn) {
            Some((_, m)) => *m = (*m).min(x.med()),
            None => lowest.push((asn, x.med())),
        }
    }
    c.retain(|x| {
        lowest
            .iter()
            .any(|&(a, m)| a == x.neighbour_as() && m == x.med())
    });
    // eBGP-learned over iBGP-learned.
    if c.iter().any(|x| x.ebgp()) {
        c.retain(|x| x.ebgp() || x.peer.is_none());
    }
    // (No IGP metric to compare: next hops are directly connected or equal.) What is left is
    // the equal-cost set; the tie-breakers below only choose the best among it.
    // Each key computed once; no two are equal (the index is last).
    let mut ordered: SmallVec<[_; 16]> = c.iter().map(|x| (x.tie_break(), x.index)).collect();
    ordered.sort_unstable();
    let multipath: Multipath = ordered.iter().map(|key| key.1).collect();
    Some(Selection {
        best: multipath[0],
        multipath,
    })
}

/// Where a path just added to a prefix goes, when that follows from the current equal-cost
/// set alone (the common cases of a route arriving from one more peer), so that the full
/// decision over every path is not needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// It is not chosen; the chosen paths stay.
    NotChosen,
    /// It alone is chosen: it beats every path before MED is looked at.
    SoleBest,
    /// It joins the equal-cost set at this position.
    JoinsAt(usize),
}

/// Places `new`, a path added (not replacing one) to a prefix whose chosen paths are
/// `chosen` (non-empty, in order, as [`select`] chose them over all the prefix's paths).
/// `None`: only a full decision can tell.
///
/// Why this agrees with [`select`] over all paths: a path ranked worse before MED is
/// eliminated first and changes nothing; one ranked better survives alone. One ranked the
/// same, from the same neighbouring AS with the same MED and of the same eBGP/iBGP kind as
/// the best, survives every elimination without changing what the others are compared
/// against (the lowest rank, each AS's lowest MED, whether an eBGP path is left), so the
/// other paths keep their fate and it only takes its place by the tie-breakers.
pub fn place_new<P: PathView>(
    new: &P,
    chosen: &[P],
    peers: &BTreeMap<PeerId, PeerInfo>,
) -> Option<Placement> {
    let as_candidate = |path| candidate(0, path, peers);
    let Some(new) = as_candidate(new) else {
        // From an unknown peer: never a candidate.
        return Some(Placement::NotChosen);
    };
    let best = as_candidate(chosen.first()?)?;
    match new.rank.cmp(&best.rank) {
        std::cmp::Ordering::Greater => Some(Placement::NotChosen),
        std::cmp::Ordering::Less => Some(Placement::SoleBest),
        std::cmp::Ordering::Equal => {
            if new.neighbour_as() != best.neighbour_as()
                || new.med() != best.med()
                || new.ebgp() != best.ebgp()
            {
                return None;
            }
            // The new path comes last in the paths, so it loses an exact tie.
            let key = new.tie_break();
            let mut at = 0;
            for path in chosen {
                if as_candidate(path)?.tie_break() > key {
                    break;
                }
                at += 1;
            }
            Some(Placement::JoinsAt(at))
        }
    }
}
