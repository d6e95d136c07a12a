//! Routes: Adj-RIB-In per peer, the Loc-RIB with the decision process, and per-peer export.
//!
//! [`Rib`] takes what sessions received (UPDATEs, treat-as-withdraw lists, session down, End-of-
//! RIB) and local originations, keeps every usable path per prefix, and reports each change of
//! a prefix's best path or equal-cost next-hop set as a [`BestChange`]. [`export()`] decides
//! what one peer is sent for a best path (split horizon, route reflection, next hop, AS path).

pub mod decision;
pub mod export;
pub mod out;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

pub use decision::{DEFAULT_LOCAL_PREF, Selection, select};
pub use export::{Exported, NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED, NextHopMode, export};
pub use out::{AdjRibOut, OutChange, Packed, pack};

use crate::policy::Filter;
use crate::wire::{Family, NextHop, Nlri, PathAttributes, Update};

pub type PeerId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Originated by this speaker.
    Local,
    Peer(PeerId),
}

/// What the RIB needs to know about a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: IpAddr,
    pub router_id: Ipv4Addr,
    pub asn: u32,
    pub ibgp: bool,
    /// A route reflection client of ours (RFC 4456).
    pub rr_client: bool,
    pub next_hop: NextHopMode,
    /// Our addresses on this session, for next-hop-self.
    pub self_v4: Option<Ipv4Addr>,
    pub self_v6: Option<Ipv6Addr>,
    /// Applied to what the peer sends us (no rule matching: accept).
    pub import: Filter,
    /// Applied to what we send the peer (no rule matching: accept).
    pub export: Filter,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RibConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Set when this speaker is a route reflector; defaults to the router id where a cluster
    /// id is needed.
    pub cluster_id: Option<Ipv4Addr>,
}

impl RibConfig {
    pub fn cluster_id(&self) -> Ipv4Addr {
        self.cluster_id.unwrap_or(self.router_id)
    }
}

/// One path to a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub source: Source,
    /// The ADD-PATH identifier it was received with (0 without ADD-PATH).
    pub path_id: u32,
    pub attrs: Arc<PathAttributes>,
    pub next_hop: IpAddr,
    /// Kept through a peer's graceful restart, awaiting its End-of-RIB.
    pub stale: bool,
}

/// A prefix whose best path or equal-cost next hops changed; `best: None` means it is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: IpNet,
    pub best: Option<Path>,
    /// Distinct next hops of the equal-cost paths, best first.
    pub next_hops: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default)]
struct Dest {
    paths: Vec<Path>,
    /// The current choice: the best path and the ECMP next hops.
    chosen: Option<(Path, Vec<IpAddr>)>,
}

/// Why an announcement was not accepted (it then withdraws any earlier path with its key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Our AS is in the AS_PATH.
    AsPathLoop,
    /// An eBGP peer's path does not start with its AS (RFC 4271 §6.3).
    FirstAsNotPeer,
    /// ORIGINATOR_ID is our router id (RFC 4456 §8).
    OriginatorIsUs,
    /// CLUSTER_LIST holds our cluster id (RFC 4456 §8).
    ClusterLoop,
    /// The import filter rejected the prefix.
    Filtered,
    /// No usable next hop.
    NoNextHop,
}

#[derive(Debug)]
pub struct Rib {
    cfg: RibConfig,
    peers: BTreeMap<PeerId, PeerInfo>,
    dests: HashMap<IpNet, Dest>,
    /// Adj-RIB-In index: the keys each peer has paths under.
    adj_in: HashMap<PeerId, HashSet<(IpNet, u32)>>,
    /// Paths per peer and family (IPv4, IPv6), for prefix limits and status.
    counts: HashMap<PeerId, [usize; 2]>,
    /// Announcements each peer made that were not accepted (loop, filter, next hop), so
    /// status can tell received from accepted.
    refused: HashMap<PeerId, HashSet<(IpNet, u32)>>,
}

impl Rib {
    pub fn new(cfg: RibConfig) -> Self {
        Rib {
            cfg,
            peers: BTreeMap::new(),
            dests: HashMap::new(),
            adj_in: HashMap::new(),
            counts: HashMap::new(),
            refused: HashMap::new(),
        }
    }

    pub fn config(&self) -> &RibConfig {
        &self.cfg
    }

    /// Changes the local AS, router id or cluster id. Paths already accepted stay; callers
    /// restart the sessions so that every path is checked again.
    pub fn set_config(&mut self, cfg: RibConfig) {
        self.cfg = cfg;
    }

    /// Announcements `peer` made that are held but were not accepted.
    pub fn refused_count(&self, peer: PeerId) -> usize {
        self.refused.get(&peer).map_or(0, |s| s.len())
    }

    /// Drops the paths of `peer` that its (changed) import filter now rejects. Paths it used
    /// to reject come back only when the peer sends them again (route refresh).
    pub fn refilter(&mut self, peer: PeerId) -> Vec<BestChange> {
        let Some(import) = self.peers.get(&peer).map(|p| p.import.clone()) else {
            return Vec::new();
        };
        let rejected: Vec<(IpNet, u32)> = self
            .adj_in
            .get(&peer)
            .map(|keys| {
                keys.iter()
                    .filter(|(prefix, _)| !import.accepts(prefix, true))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let mut touched = Vec::with_capacity(rejected.len());
        for (prefix, path_id) in rejected {
            self.remove(Source::Peer(peer), prefix, path_id);
            self.refused
                .entry(peer)
                .or_default()
                .insert((prefix, path_id));
            touched.push(prefix);
        }
        self.reselect(touched)
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(&id)
    }

    pub fn peers(&self) -> &BTreeMap<PeerId, PeerInfo> {
        &self.peers
    }

    /// Adds or replaces a peer. Replacing keeps its paths (call [`Rib::peer_down`] to drop them).
    pub fn set_peer(&mut self, id: PeerId, info: PeerInfo) {
        self.peers.insert(id, info);
    }

    /// Removes a peer and all its paths.
    pub fn remove_peer(&mut self, id: PeerId) -> Vec<BestChange> {
        let changes = self.peer_down(id);
        self.peers.remove(&id);
        changes
    }

    /// The chosen path for `prefix`.
    pub fn best(&self, prefix: &IpNet) -> Option<&Path> {
        self.dests
            .get(prefix)
            .and_then(|d| d.chosen.as_ref())
            .map(|(p, _)| p)
    }

    /// Every prefix with a chosen path, with it.
    pub fn best_paths(&self) -> impl Iterator<Item = (&IpNet, &Path)> {
        self.dests
            .iter()
            .filter_map(|(k, d)| d.chosen.as_ref().map(|(p, _)| (k, p)))
    }

    /// Paths (all sources) for `prefix`.
    pub fn paths(&self, prefix: &IpNet) -> &[Path] {
        self.dests.get(prefix).map_or(&[], |d| &d.paths)
    }

    /// Number of paths of `family` `peer` has in the Adj-RIB-In.
    pub fn received_count_of(&self, peer: PeerId, family: Family) -> usize {
        let i = usize::from(family == Family::IPV6_UNICAST);
        self.counts.get(&peer).map_or(0, |c| c[i])
    }

    /// Number of paths `peer` has in the Adj-RIB-In.
    pub fn received_count(&self, peer: PeerId) -> usize {
        self.adj_in.get(&peer).map_or(0, |s| s.len())
    }

    /// Why `peer` may not give us a path with these attributes, if it may not.
    pub fn check_import(&self, peer: &PeerInfo, attrs: &PathAttributes) -> Option<Rejected> {
        let path = attrs.as_path.as_ref();
        if path.is_some_and(|p| p.contains(self.cfg.local_as)) {
            return Some(Rejected::AsPathLoop);
        }
        if !peer.ibgp && path.and_then(|p| p.first_asn()) != Some(peer.asn) {
            return Some(Rejected::FirstAsNotPeer);
        }
        if attrs.originator_id == Some(self.cfg.router_id) {
            return Some(Rejected::OriginatorIsUs);
        }
        if attrs.cluster_list.contains(&self.cfg.cluster_id()) {
            return Some(Rejected::ClusterLoop);
        }
        None
    }

    /// Applies an UPDATE received from `peer`.
    pub fn apply_update(&mut self, peer: PeerId, update: &Update) -> Vec<BestChange> {
        let Some(info) = self.peers.get(&peer) else {
            return Vec::new();
        };
        let mut touched: Vec<IpNet> = Vec::new();
        let mut withdrawn: Vec<Nlri> = update.withdrawn.clone();
        if let Some(mp) = &update.mp_unreach {
            withdrawn.extend_from_slice(&mp.nlri);
        }
        let mut announced: Vec<(Nlri, IpAddr)> = Vec::new();
        if let Some(nh) = update.attributes.next_hop {
            announced.extend(update.nlri.iter().map(|n| (*n, IpAddr::V4(nh))));
        } else {
            // Without NEXT_HOP these announcements are unusable (the codec already treats a
            // missing one as withdraw; this guards direct callers).
            withdrawn.extend_from_slice(&update.nlri);
        }
        if let Some(mp) = &update.mp_reach {
            let nh = match mp.next_hop {
                NextHop::V4(a) => IpAddr::V4(a),
                NextHop::V6 { global, .. } => IpAddr::V6(global),
            };
            announced.extend(mp.nlri.iter().map(|n| (*n, nh)));
        }

        let mut attrs = update.attributes.clone();
        if !info.ibgp {
            // Meaningful only inside an AS (RFC 4271 §5.1.5, RFC 4456).
            attrs.local_pref = None;
            attrs.originator_id = None;
            attrs.cluster_list.clear();
        }
        let rejected = if announced.is_empty() {
            None
        } else {
            self.check_import(info, &attrs)
        };
        let attrs = Arc::new(attrs);
        let import = info.import.clone();
        for (nlri, next_hop) in announced {
            if rejected.is_some()
                || !import.accepts(&nlri.prefix, true)
                || next_hop.is_unspecified()
            {
                self.refused
                    .entry(peer)
                    .or_default()
                    .insert((nlri.prefix, nlri.path_id.unwrap_or(0)));
                // Withdraws any earlier path with this key.
                self.remove(Source::Peer(peer), nlri.prefix, nlri.path_id.unwrap_or(0));
                touched.push(nlri.prefix);
                continue;
            }
            if let Some(r) = self.refused.get_mut(&peer) {
                r.remove(&(nlri.prefix, nlri.path_id.unwrap_or(0)));
            }
            let path = Path {
                source: Source::Peer(peer),
                path_id: nlri.path_id.unwrap_or(0),
                attrs: Arc::clone(&attrs),
                next_hop,
                stale: false,
            };
            self.insert(nlri.prefix, path);
            touched.push(nlri.prefix);
        }
        for nlri in withdrawn {
            if let Some(r) = self.refused.get_mut(&peer) {
                r.remove(&(nlri.prefix, nlri.path_id.unwrap_or(0)));
            }
            if self.remove(Source::Peer(peer), nlri.prefix, nlri.path_id.unwrap_or(0)) {
                touched.push(nlri.prefix);
            }
        }
        self.reselect(touched)
    }

    /// RFC 7606 treat-as-withdraw, or any list of withdrawals from `peer`.
    pub fn withdraw(&mut self, peer: PeerId, prefixes: &[Nlri]) -> Vec<BestChange> {
        if let Some(r) = self.refused.get_mut(&peer) {
            for n in prefixes {
                r.remove(&(n.prefix, n.path_id.unwrap_or(0)));
            }
        }
        let touched: Vec<IpNet> = prefixes
            .iter()
            .filter(|n| self.remove(Source::Peer(peer), n.prefix, n.path_id.unwrap_or(0)))
            .map(|n| n.prefix)
            .collect();
        self.reselect(touched)
    }

    /// The session with `peer` ended without graceful restart: all its paths go.
    pub fn peer_down(&mut self, peer: PeerId) -> Vec<BestChange> {
        let keys = self.adj_in.remove(&peer).unwrap_or_default();
        self.counts.remove(&peer);
        self.refused.remove(&peer);
        let mut touched = Vec::with_capacity(keys.len());
        for (prefix, path_id) in keys {
            if let Some(d) = self.dests.get_mut(&prefix) {
                d.paths
                    .retain(|p| !(p.source == Source::Peer(peer) && p.path_id == path_id));
                touched.push(prefix);
            }
        }
        self.reselect(touched)
    }

    /// Graceful restart helper: `peer`'s paths of `families` become stale (kept, but losing to
    /// any fresh path); the others go.
    pub fn mark_stale(&mut self, peer: PeerId, families: &[Family]) -> Vec<BestChange> {
        let keys: Vec<(IpNet, u32)> = self
            .adj_in
            .get(&peer)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut touched = Vec::new();
        for (prefix, path_id) in keys {
            let keep = families.contains(&Nlri::new(prefix).family());
            if keep {
                if let Some(p) = self.path_mut(peer, prefix, path_id) {
                    p.stale = true;
                }
            } else {
                self.remove(Source::Peer(peer), prefix, path_id);
            }
            touched.push(prefix);
        }
        self.reselect(touched)
    }

    /// End-of-RIB from `peer` for `family`, or its restart time ran out: its stale paths of
    /// that family go.
    pub fn sweep_stale(&mut self, peer: PeerId, family: Family) -> Vec<BestChange> {
        let keys: Vec<(IpNet, u32)> = self
            .adj_in
            .get(&peer)
            .map(|s| {
                s.iter()
                    .copied()
                    .filter(|(p, _)| Nlri::new(*p).family() == family)
                    .collect()
            })
            .unwrap_or_default();
        let mut touched = Vec::new();
        for (prefix, path_id) in keys {
            if self
                .path_mut(peer, prefix, path_id)
                .is_some_and(|p| p.stale)
            {
                self.remove(Source::Peer(peer), prefix, path_id);
                touched.push(prefix);
            }
        }
        self.reselect(touched)
    }

    /// Originates `prefix` with `attrs` (ORIGIN and AS_PATH are filled in if absent). With an
    /// unspecified `next_hop` (0.0.0.0 or ::) each peer is sent our own address on its session.
    pub fn originate(
        &mut self,
        prefix: IpNet,
        mut attrs: PathAttributes,
        next_hop: IpAddr,
    ) -> Vec<BestChange> {
        attrs.origin.get_or_insert(crate::wire::Origin::Igp);
        attrs.as_path.get_or_insert_with(Default::default);
        let path = Path {
            source: Source::Local,
            path_id: 0,
            attrs: Arc::new(attrs),
            next_hop,
            stale: false,
        };
        self.insert(prefix, path);
        self.reselect(vec![prefix])
    }

    pub fn withdraw_local(&mut self, prefix: IpNet) -> Vec<BestChange> {
        if self.remove(Source::Local, prefix, 0) {
            self.reselect(vec![prefix])
        } else {
            Vec::new()
        }
    }

    /// What peer `to_id` should have for `prefix` now.
    pub fn exported(&self, to_id: PeerId, prefix: &IpNet) -> Option<Exported> {
        let to = self.peers.get(&to_id)?;
        let best = self.best(prefix)?;
        export(&self.cfg, prefix, best, &self.peers, to_id, to)
    }

    /// Brings `out` (what peer `to_id` was sent) in line with the best paths of `prefixes`;
    /// the changes to send. Feed it the prefixes of each batch of [`BestChange`]s.
    pub fn sync_peer(
        &self,
        to_id: PeerId,
        prefixes: impl IntoIterator<Item = IpNet>,
        out: &mut AdjRibOut,
    ) -> Vec<OutChange> {
        prefixes
            .into_iter()
            .filter_map(|p| out.set(p, self.exported(to_id, &p)))
            .collect()
    }

    /// The first UPDATEs of a new session with `to_id`: every best path it should have in
    /// `families`, then an End-of-RIB for each family (RFC 4724 §2).
    pub fn initial_updates(
        &self,
        to_id: PeerId,
        families: &[Family],
        out: &mut AdjRibOut,
        ctx: &crate::wire::Context,
    ) -> Packed {
        out.clear();
        let mut prefixes: Vec<IpNet> = self
            .dests
            .iter()
            .filter(|(p, d)| d.chosen.is_some() && families.contains(&Nlri::new(**p).family()))
            .map(|(p, _)| *p)
            .collect();
        prefixes.sort_unstable();
        let changes = self.sync_peer(to_id, prefixes, out);
        let mut packed = pack(&changes, ctx);
        packed
            .updates
            .extend(families.iter().map(|f| Update::end_of_rib(*f)));
        packed
    }

    fn path_mut(&mut self, peer: PeerId, prefix: IpNet, path_id: u32) -> Option<&mut Path> {
        self.dests
            .get_mut(&prefix)?
            .paths
            .iter_mut()
            .find(|p| p.source == Source::Peer(peer) && p.path_id == path_id)
    }

    fn insert(&mut self, prefix: IpNet, path: Path) {
        if let Source::Peer(peer) = path.source
            && self
                .adj_in
                .entry(peer)
                .or_default()
                .insert((prefix, path.path_id))
        {
            self.counts.entry(peer).or_default()[usize::from(prefix.addr().is_ipv6())] += 1;
        }
        let d = self.dests.entry(prefix).or_default();
        match d
            .paths
            .iter_mut()
            .find(|p| p.source == path.source && p.path_id == path.path_id)
        {
            Some(old) => *old = path,
            None => d.paths.push(path),
        }
    }

    /// Removes one path; whether there was one.
    fn remove(&mut self, source: Source, prefix: IpNet, path_id: u32) -> bool {
        if let Source::Peer(peer) = source
            && let Some(keys) = self.adj_in.get_mut(&peer)
            && keys.remove(&(prefix, path_id))
            && let Some(c) = self.counts.get_mut(&peer)
        {
            let i = usize::from(prefix.addr().is_ipv6());
            c[i] = c[i].saturating_sub(1);
        }
        let Some(d) = self.dests.get_mut(&prefix) else {
            return false;
        };
        let before = d.paths.len();
        d.paths
            .retain(|p| !(p.source == source && p.path_id == path_id));
        d.paths.len() != before
    }

    /// Runs the decision process for `prefixes` and reports what changed.
    fn reselect(&mut self, mut prefixes: Vec<IpNet>) -> Vec<BestChange> {
        prefixes.sort_unstable();
        prefixes.dedup();
        let mut changes = Vec::new();
        for prefix in prefixes {
            let Some(d) = self.dests.get_mut(&prefix) else {
                continue;
            };
            let chosen = select(&d.paths, &self.peers).map(|s| {
                let mut hops: Vec<IpAddr> = Vec::new();
                for &i in &s.multipath {
                    if !hops.contains(&d.paths[i].next_hop) {
                        hops.push(d.paths[i].next_hop);
                    }
                }
                (d.paths[s.best].clone(), hops)
            });
            if chosen != d.chosen {
                changes.push(BestChange {
                    prefix,
                    best: chosen.as_ref().map(|(p, _)| p.clone()),
                    next_hops: chosen.as_ref().map(|(_, h)| h.clone()).unwrap_or_default(),
                });
                d.chosen = chosen;
            }
            if d.paths.is_empty() {
                self.dests.remove(&prefix);
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests;
