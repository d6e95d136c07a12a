//! Routes: Adj-RIB-In per peer, the Loc-RIB with the decision process, and per-peer export.
//!
//! [`Rib`] takes what sessions received (UPDATEs, treat-as-withdraw lists, session down, End-of-
//! RIB) and local originations, keeps every usable path per prefix, and reports each change of
//! a prefix's best path or equal-cost next-hop set as a [`BestChange`]. [`export()`] decides
//! what one peer is sent for a best path (split horizon, route reflection, next hop, AS path).

pub mod decision;
pub mod export;
pub mod out;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

pub use decision::{DEFAULT_LOCAL_PREF, Placement, Selection, place_new, select};
pub use export::{Exported, NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED, NextHopMode, export};
pub use out::{AdjRibOut, OutChange, Packed, pack};

use crate::policy::{self, Filter, RouteView, Verdict};
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
    /// How many times our AS may appear in the AS_PATH of a route from this peer (BIRD's
    /// `allow local as`); 0 refuses any route with our AS in its path.
    pub allow_local_as: u32,
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

/// One path to a prefix, as the RIB reports it.
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

/// What the decision process reads of a path; both [`Path`] and the RIB's own compact form
/// provide it.
pub trait PathView {
    fn source(&self) -> Source;
    fn path_id(&self) -> u32;
    fn attrs(&self) -> &PathAttributes;
    fn stale(&self) -> bool;
}

impl PathView for Path {
    fn source(&self) -> Source {
        self.source
    }
    fn path_id(&self) -> u32 {
        self.path_id
    }
    fn attrs(&self) -> &PathAttributes {
        &self.attrs
    }
    fn stale(&self) -> bool {
        self.stale
    }
}

/// Exports already computed during one pass over the peers (the RIB unchanged meanwhile),
/// by prefix and export class: peers whose export settings are equal get the same export.
#[derive(Debug, Default)]
pub struct ExportCache {
    classes: Vec<ExportClass>,
    entries: FxHashMap<(IpNet, u32), Option<Arc<Exported>>>,
}

/// What, of a receiving peer, `export` looks at (besides its identity: see `shared_export`).
#[derive(Debug, PartialEq)]
struct ExportClass {
    ibgp: bool,
    rr_client: bool,
    next_hop: NextHopMode,
    self_v4: Option<Ipv4Addr>,
    self_v6: Option<Ipv6Addr>,
    export: Filter,
}

impl ExportCache {
    fn class_of(&mut self, to: &PeerInfo) -> u32 {
        let class = ExportClass {
            ibgp: to.ibgp,
            rr_client: to.rr_client,
            next_hop: to.next_hop,
            self_v4: to.self_v4,
            self_v6: to.self_v6,
            export: to.export.clone(),
        };
        // Few classes (most peers share one): a list beats a map.
        match self.classes.iter().position(|c| *c == class) {
            Some(i) => i as u32,
            None => {
                self.classes.push(class);
                (self.classes.len() - 1) as u32
            }
        }
    }
}

/// Equal-cost next hops, held inline for the usual one or two (no allocation per change).
pub type NextHops = SmallVec<[IpAddr; 2]>;

/// A prefix whose best path or equal-cost next hops changed; `best: None` means it is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: IpNet,
    pub best: Option<Path>,
    /// Distinct next hops of the equal-cost paths, best first.
    pub next_hops: NextHops,
    /// Where the best path before this change came from (`None`: there was none), so that a
    /// consumer can tell a new prefix from a changed one without keeping its own index.
    pub previous: Option<Source>,
}

/// What the paths of one UPDATE (one family's NLRI) have in common, its sender included.
/// Paths share it, so a path costs the RIB a pointer and its path id (16 bytes).
#[derive(Debug, PartialEq, Eq)]
struct Route {
    source: Source,
    attrs: Arc<PathAttributes>,
    next_hop: IpAddr,
    /// Kept through a peer's graceful restart, awaiting its End-of-RIB.
    stale: bool,
}

/// A path as the RIB holds it.
#[derive(Clone, Debug)]
struct Stored {
    route: Arc<Route>,
    path_id: u32,
}

// The room one path takes; the memory figures depend on it.
const _: () = assert!(std::mem::size_of::<Stored>() == 16);

impl Stored {
    fn is(&self, source: Source, path_id: u32) -> bool {
        self.route.source == source && self.path_id == path_id
    }

    /// The same path: same key, same attributes, next hop and staleness.
    fn same(&self, other: &Stored) -> bool {
        self.is(other.route.source, other.path_id)
            && (Arc::ptr_eq(&self.route, &other.route) || self.route == other.route)
    }

    fn to_path(&self) -> Path {
        Path {
            source: self.route.source,
            path_id: self.path_id,
            attrs: Arc::clone(&self.route.attrs),
            next_hop: self.route.next_hop,
            stale: self.route.stale,
        }
    }
}

impl PathView for Stored {
    fn source(&self) -> Source {
        self.route.source
    }
    fn path_id(&self) -> u32 {
        self.path_id
    }
    fn attrs(&self) -> &PathAttributes {
        &self.route.attrs
    }
    fn stale(&self) -> bool {
        self.route.stale
    }
}

type Paths = SmallVec<[Stored; 1]>;

/// One prefix's paths. Most prefixes have one path, held inline: a table entry is then the
/// key and 24 bytes.
#[derive(Clone, Debug, Default)]
enum Dest {
    /// No path (only while being filled or emptied: empty prefixes leave the table).
    #[default]
    Empty,
    /// The only path, and chosen (a lone path that is not usable is held as `Many`).
    One(Stored),
    Many(Box<Many>),
}

// The room one prefix takes in the table beside its key; the memory figures depend on it.
const _: () = assert!(std::mem::size_of::<Dest>() == 24);

#[derive(Clone, Debug)]
struct Many {
    /// The chosen paths come first, in order: the best, then the rest of its equal-cost set.
    paths: Paths,
    /// How many of `paths` are chosen (0: none is usable).
    chosen: u32,
}

/// Distinct next hops of `paths`, in order.
fn next_hops(paths: &[Stored]) -> NextHops {
    let mut hops = NextHops::new();
    for p in paths {
        if !hops.contains(&p.route.next_hop) {
            hops.push(p.route.next_hop);
        }
    }
    hops
}

impl Dest {
    fn paths(&self) -> &[Stored] {
        match self {
            Dest::Empty => &[],
            Dest::One(p) => std::slice::from_ref(p),
            Dest::Many(m) => &m.paths,
        }
    }

    fn chosen(&self) -> &[Stored] {
        match self {
            Dest::Empty => &[],
            Dest::One(p) => std::slice::from_ref(p),
            Dest::Many(m) => &m.paths[..m.chosen as usize],
        }
    }

    fn is_empty(&self) -> bool {
        self.paths().is_empty()
    }

    /// Changes the paths with `f`, in place when there are several (no allocation), and
    /// keeps the variant matching their number. `f` may replace or remove paths in place, or
    /// add one at the end; the decision is left to `choose` or `choose_added`.
    fn modify(&mut self, f: impl FnOnce(&mut Paths) -> Outcome) -> Outcome {
        if let Dest::Many(m) = self {
            return f(&mut m.paths);
        }
        let (mut paths, chosen): (Paths, u32) = match std::mem::take(self) {
            Dest::One(p) => (smallvec::smallvec![p], 1),
            _ => (Paths::new(), 0),
        };
        let outcome = f(&mut paths);
        *self = match paths.len() {
            0 => Dest::Empty,
            1 => Dest::One(paths.remove(0)),
            // The lone path (chosen) stays first; one was added after it.
            _ => Dest::Many(Box::new(Many { paths, chosen })),
        };
        outcome
    }

    /// After `modify` added one path (the last): places it by the current equal-cost set
    /// where that tells (see [`place_new`]), else runs the whole decision.
    fn choose_added(&mut self, peers: &BTreeMap<PeerId, PeerInfo>) {
        let placement = match self {
            Dest::Many(m) if m.chosen > 0 && m.paths.len() >= 2 => {
                let (before, added) = m.paths.split_at(m.paths.len() - 1);
                place_new(&added[0], &before[..m.chosen as usize], peers)
            }
            _ => None,
        };
        match (placement, self) {
            (Some(Placement::NotChosen), _) => {}
            (Some(Placement::SoleBest), Dest::Many(m)) => {
                m.paths.rotate_right(1);
                m.chosen = 1;
            }
            (Some(Placement::JoinsAt(at)), Dest::Many(m)) => {
                m.paths[at..].rotate_right(1);
                m.chosen += 1;
            }
            (_, dest) => dest.choose(peers),
        }
    }

    /// Runs the decision process and puts the chosen paths first.
    fn choose(&mut self, peers: &BTreeMap<PeerId, PeerInfo>) {
        let usable = |p: &Stored| match p.route.source {
            Source::Local => true,
            Source::Peer(id) => peers.contains_key(&id),
        };
        match self {
            Dest::Empty => {}
            // One path (the common case) needs no comparison.
            Dest::One(p) => {
                if !usable(p) {
                    let p = p.clone();
                    *self = Dest::Many(Box::new(Many {
                        paths: smallvec::smallvec![p],
                        chosen: 0,
                    }));
                }
            }
            Dest::Many(m) if m.paths.len() <= 1 => {
                m.chosen = 0;
                if let Some(p) = m.paths.first().filter(|p| usable(p)) {
                    *self = Dest::One(p.clone());
                }
            }
            Dest::Many(m) => {
                let Some(selection) = select(&m.paths, peers) else {
                    m.chosen = 0;
                    return;
                };
                // The new order: the chosen paths, then the others as they were.
                let mut order: SmallVec<[usize; 16]> = SmallVec::with_capacity(m.paths.len());
                order.extend_from_slice(&selection.multipath);
                order.extend((0..m.paths.len()).filter(|i| !selection.multipath.contains(i)));
                reorder(&mut m.paths, &mut order);
                m.chosen = selection.multipath.len() as u32;
            }
        }
    }
}

/// Rearranges `items` in place so that `items[i]` becomes what was at `order[i]` (`order` a
/// permutation, used up as a scratch mark), following each cycle with swaps: no copy of the
/// paths and no allocation for the common few.
fn reorder<T>(items: &mut [T], order: &mut [usize]) {
    const DONE: usize = usize::MAX;
    for start in 0..items.len() {
        let mut at = start;
        while order[at] != DONE {
            let from = order[at];
            order[at] = DONE;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// The prefixes and their paths, IPv4 keyed by a packed integer (a fifth of an `IpNet`'s
/// hashing and room).
#[derive(Debug, Default)]
struct Table {
    v4: FxHashMap<u64, Dest>,
    v6: FxHashMap<Ipv6Net, Dest>,
}

fn v4_key(net: &Ipv4Net) -> u64 {
    (u64::from(u32::from(net.addr())) << 8) | u64::from(net.prefix_len())
}

fn v4_net(key: u64) -> IpNet {
    // Keys are only ever made by `v4_key`, from valid prefixes.
    let addr = Ipv4Addr::from((key >> 8) as u32);
    IpNet::V4(Ipv4Net::new_assert(addr, (key & 0xff) as u8))
}

impl Table {
    fn get(&self, prefix: &IpNet) -> Option<&Dest> {
        match prefix {
            IpNet::V4(n) => self.v4.get(&v4_key(n)),
            IpNet::V6(n) => self.v6.get(n),
        }
    }

    fn get_mut(&mut self, prefix: &IpNet) -> Option<&mut Dest> {
        match prefix {
            IpNet::V4(n) => self.v4.get_mut(&v4_key(n)),
            IpNet::V6(n) => self.v6.get_mut(n),
        }
    }

    fn get_or_default(&mut self, prefix: &IpNet) -> &mut Dest {
        match prefix {
            IpNet::V4(n) => self.v4.entry(v4_key(n)).or_default(),
            IpNet::V6(n) => self.v6.entry(*n).or_default(),
        }
    }

    fn remove(&mut self, prefix: &IpNet) {
        match prefix {
            IpNet::V4(n) => self.v4.remove(&v4_key(n)),
            IpNet::V6(n) => self.v6.remove(n),
        };
    }

    fn iter(&self) -> impl Iterator<Item = (IpNet, &Dest)> {
        self.v4
            .iter()
            .map(|(k, d)| (v4_net(*k), d))
            .chain(self.v6.iter().map(|(n, d)| (IpNet::V6(*n), d)))
    }

    /// The keys of the paths `source` has, as (prefix, path id).
    fn keys_of(&self, source: Source) -> Vec<(IpNet, u32)> {
        self.keys_where(source, |_, _| true)
    }

    /// The keys of the paths `source` has for which `keep` holds.
    fn keys_where(
        &self,
        source: Source,
        keep: impl Fn(&IpNet, &Stored) -> bool,
    ) -> Vec<(IpNet, u32)> {
        let keep = &keep;
        self.iter()
            .flat_map(|(prefix, d)| {
                d.paths()
                    .iter()
                    .filter(move |p| p.route.source == source && keep(&prefix, p))
                    .map(move |p| (prefix, p.path_id))
            })
            .collect()
    }
}

/// How one change to a prefix's paths went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing was changed.
    Same,
    Added,
    Replaced,
    Removed,
}

/// Why an announcement was not accepted (it then withdraws any earlier path with its key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Our AS is in the AS_PATH more often than the peer's `allow_local_as`.
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
    /// The Loc-RIB and, through each path's source, the Adj-RIBs-In (paths are stored once).
    table: Table,
    /// Paths per peer and family (IPv4, IPv6), for prefix limits and status.
    counts: FxHashMap<PeerId, [usize; 2]>,
    /// Announcements each peer made that were not accepted (loop, filter, next hop), so
    /// status can tell received from accepted.
    refused: FxHashMap<PeerId, FxHashSet<(IpNet, u32)>>,
}

impl Rib {
    pub fn new(cfg: RibConfig) -> Self {
        Rib {
            cfg,
            peers: BTreeMap::new(),
            table: Table::default(),
            counts: FxHashMap::default(),
            refused: FxHashMap::default(),
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

    /// Drops the paths of `peer` that its (changed) import filter or loop check now rejects.
    /// Paths it used to reject come back only when the peer sends them again (route refresh).
    /// A filter whose rules change routes is left to the refresh: what is held was changed by
    /// the filter (its AS_PATH too), so testing it again, or checking it for loops, could give
    /// another answer than the route as received.
    pub fn refilter(&mut self, peer: PeerId) -> Vec<BestChange> {
        let Some(info) = self.peers.get(&peer).cloned() else {
            return Vec::new();
        };
        if info.import.has_operations() {
            return Vec::new();
        }
        let mut changes = Vec::new();
        let refused: Vec<(IpNet, u32)> = self.table.keys_where(Source::Peer(peer), |prefix, p| {
            let view = RouteView {
                prefix,
                from_peer: true,
                attrs: &p.route.attrs,
            };
            info.import.decide(&view) == Verdict::Reject
                || self.check_import(&info, &p.route.attrs).is_some()
        });
        for (prefix, path_id) in refused {
            changes.extend(self.remove(Source::Peer(peer), prefix, path_id).1);
            self.refused
                .entry(peer)
                .or_default()
                .insert((prefix, path_id));
        }
        changes
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
    pub fn best(&self, prefix: &IpNet) -> Option<Path> {
        self.table
            .get(prefix)
            .and_then(|d| d.chosen().first())
            .map(Stored::to_path)
    }

    /// Every prefix with a chosen path, with it.
    pub fn best_paths(&self) -> impl Iterator<Item = (IpNet, Path)> + '_ {
        self.table
            .iter()
            .filter_map(|(k, d)| d.chosen().first().map(|p| (k, p.to_path())))
    }

    /// Every prefix with a chosen path.
    pub fn best_prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.table
            .iter()
            .filter(|(_, d)| !d.chosen().is_empty())
            .map(|(k, _)| k)
    }

    /// Paths (all sources) for `prefix`.
    pub fn paths(&self, prefix: &IpNet) -> Vec<Path> {
        self.table.get(prefix).map_or_else(Vec::new, |d| {
            d.paths().iter().map(Stored::to_path).collect()
        })
    }

    /// Number of paths of `family` `peer` has in the Adj-RIB-In.
    pub fn received_count_of(&self, peer: PeerId, family: Family) -> usize {
        let i = usize::from(family == Family::IPV6_UNICAST);
        self.counts.get(&peer).map_or(0, |c| c[i])
    }

    /// Number of paths `peer` has in the Adj-RIB-In.
    pub fn received_count(&self, peer: PeerId) -> usize {
        self.counts.get(&peer).map_or(0, |c| c[0] + c[1])
    }

    /// Why `peer` may not give us a path with these attributes, if it may not.
    pub fn check_import(&self, peer: &PeerInfo, attrs: &PathAttributes) -> Option<Rejected> {
        let path = attrs.as_path.as_ref();
        if path.is_some_and(|p| p.count(self.cfg.local_as) > peer.allow_local_as as usize) {
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
        let mut attrs = update.attributes.clone();
        if !info.ibgp {
            // Meaningful only inside an AS (RFC 4271 §5.1.5, RFC 4456).
            attrs.local_pref = None;
            attrs.originator_id = None;
            attrs.cluster_list.clear();
        }
        let announces = !update.nlri.is_empty()
            || update
                .mp_reach
                .as_ref()
                .is_some_and(|mp| !mp.nlri.is_empty());
        let rejected = if announces {
            self.check_import(info, &attrs)
        } else {
            None
        };
        let import = info.import.clone();
        let attrs = Arc::new(attrs);
        let route = |next_hop: IpAddr| {
            Arc::new(Route {
                source: Source::Peer(peer),
                attrs: Arc::clone(&attrs),
                next_hop,
                stale: false,
            })
        };
        // Nearly every announcement of a first fill changes a best path.
        let mut changes = Vec::with_capacity(
            update.nlri.len() + update.mp_reach.as_ref().map_or(0, |mp| mp.nlri.len()),
        );
        match update.attributes.next_hop {
            Some(nh) => {
                let route = route(IpAddr::V4(nh));
                for nlri in &update.nlri {
                    changes.extend(self.announce(peer, nlri, &route, rejected, &import));
                }
            }
            // Without NEXT_HOP these announcements are unusable (the codec already treats a
            // missing one as withdraw; this guards direct callers).
            None => changes.extend(self.withdraw(peer, &update.nlri)),
        }
        if let Some(mp) = &update.mp_reach {
            let route = route(match mp.next_hop {
                NextHop::V4(a) => IpAddr::V4(a),
                NextHop::V6 { global, .. } => IpAddr::V6(global),
            });
            for nlri in &mp.nlri {
                changes.extend(self.announce(peer, nlri, &route, rejected, &import));
            }
        }
        changes.extend(self.withdraw(peer, &update.withdrawn));
        if let Some(mp) = &update.mp_unreach {
            changes.extend(self.withdraw(peer, &mp.nlri));
        }
        changes
    }

    /// One announcement from `peer`: held, or noted as refused (withdrawing any earlier path
    /// with its key).
    fn announce(
        &mut self,
        peer: PeerId,
        nlri: &Nlri,
        route: &Arc<Route>,
        rejected: Option<Rejected>,
        import: &Filter,
    ) -> Option<BestChange> {
        let path_id = nlri.path_id.unwrap_or(0);
        let verdict = if rejected.is_some() || route.next_hop.is_unspecified() {
            Verdict::Reject
        } else {
            import.decide(&RouteView {
                prefix: &nlri.prefix,
                from_peer: true,
                attrs: &route.attrs,
            })
        };
        let route = match verdict {
            Verdict::Reject => {
                self.refused
                    .entry(peer)
                    .or_default()
                    .insert((nlri.prefix, path_id));
                return self.remove(Source::Peer(peer), nlri.prefix, path_id).1;
            }
            // The rule changes the route: this prefix's path gets attributes of its own.
            Verdict::Accept(operations) if !operations.is_empty() => {
                let mut attrs = (*route.attrs).clone();
                policy::apply(operations, &mut attrs);
                Arc::new(Route {
                    source: route.source,
                    attrs: Arc::new(attrs),
                    next_hop: route.next_hop,
                    stale: route.stale,
                })
            }
            Verdict::Accept(_) | Verdict::NoMatch => Arc::clone(route),
        };
        if let Some(r) = self.refused.get_mut(&peer) {
            r.remove(&(nlri.prefix, path_id));
        }
        self.insert(nlri.prefix, Stored { route, path_id })
    }

    /// RFC 7606 treat-as-withdraw, or any list of withdrawals from `peer`.
    pub fn withdraw(&mut self, peer: PeerId, prefixes: &[Nlri]) -> Vec<BestChange> {
        let mut changes = Vec::new();
        for n in prefixes {
            let path_id = n.path_id.unwrap_or(0);
            if let Some(r) = self.refused.get_mut(&peer) {
                r.remove(&(n.prefix, path_id));
            }
            changes.extend(self.remove(Source::Peer(peer), n.prefix, path_id).1);
        }
        changes
    }

    /// The keys (prefix, path id) of every path `peer` has here, so that a caller can
    /// withdraw them a part at a time (each part's changes passed on before the next).
    pub fn paths_of(&self, peer: PeerId) -> Vec<(IpNet, u32)> {
        // There is no index by peer: the table is scanned, unless the counts say there is
        // nothing to find (a peer whose paths were just withdrawn, or that never sent any).
        if self
            .counts
            .get(&peer)
            .is_none_or(|c| c.iter().all(|&n| n == 0))
        {
            return Vec::new();
        }
        self.table.keys_of(Source::Peer(peer))
    }

    /// The session with `peer` ended without graceful restart: all its paths go.
    pub fn peer_down(&mut self, peer: PeerId) -> Vec<BestChange> {
        self.refused.remove(&peer);
        let mut changes = Vec::new();
        for (prefix, path_id) in self.paths_of(peer) {
            changes.extend(self.remove(Source::Peer(peer), prefix, path_id).1);
        }
        self.counts.remove(&peer);
        changes
    }

    /// Graceful restart helper: `peer`'s paths of `families` become stale (kept, but losing to
    /// any fresh path); the others go.
    pub fn mark_stale(&mut self, peer: PeerId, families: &[Family]) -> Vec<BestChange> {
        let source = Source::Peer(peer);
        // Paths that shared attributes keep sharing them once stale.
        let mut stale_of: HashMap<*const Route, Arc<Route>> = HashMap::new();
        let mut changes = Vec::new();
        for (prefix, path_id) in self.table.keys_of(source) {
            if !families.contains(&Nlri::new(prefix).family()) {
                changes.extend(self.remove(source, prefix, path_id).1);
                continue;
            }
            let (_, change) = self.modify_or_create(prefix, false, |paths| {
                let Some(p) = paths.iter_mut().find(|p| p.is(source, path_id)) else {
                    return Outcome::Same;
                };
                if p.route.stale {
                    return Outcome::Same;
                }
                let stale = stale_of.entry(Arc::as_ptr(&p.route)).or_insert_with(|| {
                    Arc::new(Route {
                        source,
                        attrs: Arc::clone(&p.route.attrs),
                        next_hop: p.route.next_hop,
                        stale: true,
                    })
                });
                p.route = Arc::clone(stale);
                Outcome::Replaced
            });
            changes.extend(change);
        }
        changes
    }

    /// End-of-RIB from `peer` for `family`, or its restart time ran out: its stale paths of
    /// that family go.
    pub fn sweep_stale(&mut self, peer: PeerId, family: Family) -> Vec<BestChange> {
        let source = Source::Peer(peer);
        let stale = self.table.keys_where(source, |prefix, p| {
            p.route.stale && Nlri::new(*prefix).family() == family
        });
        let mut changes = Vec::new();
        for (prefix, path_id) in stale {
            changes.extend(self.remove(source, prefix, path_id).1);
        }
        changes
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
        let path = Stored {
            route: Arc::new(Route {
                source: Source::Local,
                attrs: Arc::new(attrs),
                next_hop,
                stale: false,
            }),
            path_id: 0,
        };
        self.insert(prefix, path).into_iter().collect()
    }

    pub fn withdraw_local(&mut self, prefix: IpNet) -> Vec<BestChange> {
        self.remove(Source::Local, prefix, 0)
            .1
            .into_iter()
            .collect()
    }

    /// Whether a best path from `source` (`None`: no best path) might be sent to peer `to_id`:
    /// `false` only when `export` would certainly send nothing (no path, or the peer's own,
    /// or held back by iBGP split horizon), decided without looking the prefix up. A peer that
    /// holds nothing for a prefix needs no sync for changes this rules out.
    pub fn may_export(&self, to_id: PeerId, source: Option<Source>) -> bool {
        let Some(to) = self.peers.get(&to_id) else {
            return false;
        };
        match source {
            None => false,
            Some(Source::Local) => true,
            Some(Source::Peer(id)) if id == to_id => false,
            Some(Source::Peer(id)) => !export::split_horizon(self.peers.get(&id), to),
        }
    }

    /// What peer `to_id` should have for `prefix` now.
    pub fn exported(&self, to_id: PeerId, prefix: &IpNet) -> Option<Exported> {
        let to = self.peers.get(&to_id)?;
        let best = self.best(prefix)?;
        export(&self.cfg, prefix, &best, &self.peers, to_id, to)
    }

    /// Brings `out` (what peer `to_id` was sent) in line with the best paths of `prefixes`;
    /// the changes to send. Feed it the prefixes of each batch of [`BestChange`]s.
    pub fn sync_peer(
        &self,
        to_id: PeerId,
        prefixes: impl IntoIterator<Item = IpNet>,
        out: &mut AdjRibOut,
    ) -> Vec<OutChange> {
        self.sync_peer_shared(to_id, prefixes, out, &mut ExportCache::default())
    }

    /// `sync_peer` for many peers in a row, while the RIB does not change: what one peer is
    /// sent for a prefix is computed once and reused for every peer of the same export class
    /// (a reflector's clients alike), through `cache`.
    pub fn sync_peer_shared(
        &self,
        to_id: PeerId,
        prefixes: impl IntoIterator<Item = IpNet>,
        out: &mut AdjRibOut,
        cache: &mut ExportCache,
    ) -> Vec<OutChange> {
        let Some(to) = self.peers.get(&to_id) else {
            return prefixes
                .into_iter()
                .filter_map(|p| out.set_shared(p, None))
                .collect();
        };
        let class = cache.class_of(to);
        prefixes
            .into_iter()
            .filter_map(|p| {
                let e = self.shared_export(to_id, to, class, &p, out, cache);
                out.set_shared(p, e)
            })
            .collect()
    }

    fn shared_export(
        &self,
        to_id: PeerId,
        to: &PeerInfo,
        class: u32,
        prefix: &IpNet,
        out: &AdjRibOut,
        cache: &mut ExportCache,
    ) -> Option<Arc<Exported>> {
        let best = self.table.get(prefix)?.chosen().first()?;
        // The two rules that look at the receiver itself rather than its class: never back
        // to the source, and (reflecting) never to the router named as originator. A result
        // computed for one of those is not cached, and is not taken from the cache for them.
        if best.route.source == Source::Peer(to_id) {
            return None;
        }
        if best.route.attrs.originator_id == Some(to.router_id) {
            return self.exported(to_id, prefix).map(|e| out.intern(&e));
        }
        cache
            .entries
            .entry((*prefix, class))
            .or_insert_with(|| self.exported(to_id, prefix).map(|e| out.intern(&e)))
            .clone()
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
            .best_prefixes()
            .filter(|p| families.contains(&Nlri::new(*p).family()))
            .collect();
        prefixes.sort_unstable();
        let changes = self.sync_peer(to_id, prefixes, out);
        let mut packed = pack(&changes, ctx);
        packed
            .updates
            .extend(families.iter().map(|f| Update::end_of_rib(*f)));
        packed
    }

    /// Adds `path`, or replaces the one with its key.
    fn insert(&mut self, prefix: IpNet, path: Stored) -> Option<BestChange> {
        let source = path.route.source;
        let (outcome, change) = self.modify_or_create(prefix, true, |paths| {
            match paths.iter_mut().find(|p| p.is(source, path.path_id)) {
                Some(old) if old.same(&path) => Outcome::Same,
                Some(old) => {
                    *old = path;
                    Outcome::Replaced
                }
                None => {
                    paths.push(path);
                    Outcome::Added
                }
            }
        });
        if outcome == Outcome::Added
            && let Source::Peer(peer) = source
        {
            self.counts.entry(peer).or_default()[usize::from(prefix.addr().is_ipv6())] += 1;
        }
        change
    }

    /// Removes one path: whether there was one, and the change it made.
    fn remove(
        &mut self,
        source: Source,
        prefix: IpNet,
        path_id: u32,
    ) -> (bool, Option<BestChange>) {
        let (outcome, change) = self.modify_or_create(prefix, false, |paths| {
            match paths.iter().position(|p| p.is(source, path_id)) {
                Some(i) => {
                    paths.remove(i);
                    Outcome::Removed
                }
                None => Outcome::Same,
            }
        });
        let removed = outcome == Outcome::Removed;
        if removed
            && let Source::Peer(peer) = source
            && let Some(c) = self.counts.get_mut(&peer)
        {
            let i = usize::from(prefix.addr().is_ipv6());
            c[i] = c[i].saturating_sub(1);
        }
        (removed, change)
    }

    /// Changes `prefix`'s paths with `f`, runs the decision process if anything changed, and
    /// reports a change of the best path or of the equal-cost next hops.
    fn modify_or_create(
        &mut self,
        prefix: IpNet,
        create: bool,
        f: impl FnOnce(&mut Paths) -> Outcome,
    ) -> (Outcome, Option<BestChange>) {
        let dest = if create {
            Some(self.table.get_or_default(&prefix))
        } else {
            self.table.get_mut(&prefix)
        };
        let Some(dest) = dest else {
            return (Outcome::Same, None);
        };
        // What was chosen, kept before `f` may replace or drop it.
        let before: Option<(Stored, NextHops)> = dest
            .chosen()
            .first()
            .map(|best| (best.clone(), next_hops(dest.chosen())));
        let outcome = dest.modify(f);
        if outcome == Outcome::Same {
            if dest.is_empty() {
                self.table.remove(&prefix);
            }
            return (outcome, None);
        }
        if outcome == Outcome::Added {
            dest.choose_added(&self.peers);
        } else {
            dest.choose(&self.peers);
        }
        let after = dest.chosen().first();
        let after_hops = next_hops(dest.chosen());
        let changed = match (&before, after) {
            (None, None) => false,
            (Some((old, old_hops)), Some(new)) => !old.same(new) || *old_hops != after_hops,
            _ => true,
        };
        let change = changed.then(|| BestChange {
            prefix,
            best: after.map(Stored::to_path),
            next_hops: after_hops,
            previous: before.as_ref().map(|(old, _)| old.route.source),
        });
        if dest.is_empty() {
            self.table.remove(&prefix);
        }
        (outcome, change)
    }
}

#[cfg(test)]
mod tests;
