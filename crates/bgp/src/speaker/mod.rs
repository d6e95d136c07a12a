//! The speaker calico-node runs: a local AS and router id, a set of peers that can be added,
//! changed and removed while it runs, prefixes to originate, a stream of best-path changes for
//! the kernel, and per-peer status for `calicoctl node status` and `/readiness`.
//!
//! Tasks and channels:
//!
//! - One RIB task owns the [`Rib`](crate::rib::Rib) (Adj-RIBs-In, Loc-RIB) and every peer's
//!   Adj-RIB-Out. API calls reach it through a bounded request channel.
//! - One task per session ([`crate::net`]), started by the RIB task, and the shared
//!   [`listener`](crate::net::listener) that hands each peer's inbound connection to its task.
//! - Session events reach the RIB task through one bounded channel (a forwarding task per
//!   session waits for room, so a flooding peer waits in TCP and the others take turns with it).
//!   The RIB task takes them in rounds: one event and what is already queued behind it (at
//!   most 256 events or a batch's worth of best-path changes), applied to the RIB, then sent
//!   on once, so a burst of many peers' small UPDATEs costs one sync per peer per round.
//! - Every peer's Adj-RIB-Out holds what it was sent as shared, interned values: a route
//!   reflected to thousands of clients is one allocation, not one per client. The changes for
//!   a peer are packed into UPDATEs and encoded on its session task.
//! - Toward a session the RIB task never waits: a peer has at most [`MAX_BATCHES_IN_FLIGHT`]
//!   batches of UPDATEs outstanding; beyond that its changed prefixes are only noted, and sent
//!   (as their state is then) once it has read what it was sent. A slow peer thus costs a set
//!   of prefixes, bounded by the Loc-RIB, and delays nobody else.
//! - Best-path changes go out on a bounded channel ([`RouteStream`]), a round's changes as one
//!   batch; when the reader falls behind they are coalesced per prefix (only the latest state
//!   of each is kept) and handed over as one batch when it has room again.
//!
//! Graceful restart (RFC 4724): as helper, a peer that restarts keeps its routes, marked
//! stale, until its End-of-RIB or the restart time (the session and RIB already do this). As
//! the restarting speaker, [`SpeakerConfig::restarting`] sets the R and F bits in our OPENs
//! (R only until each session's first establishment: a later reconnect is no restart),
//! and the initial routes and End-of-RIB are held back until [`Speaker::initial_routes_done`]
//! (or [`SpeakerConfig::restart_deferral`] runs out), so that a peer keeping our routes does
//! not flush them because we said End-of-RIB before re-originating them.

mod core;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::policy::Filter;
use crate::rib::NextHopMode;
pub use crate::rib::NextHops;
use crate::session::{ConfigError, State};
use crate::wire::LargeCommunity;

/// Most UPDATE batches a session may have queued and not yet written.
pub const MAX_BATCHES_IN_FLIGHT: usize = 8;
/// Most prefixes the RIB task packs into one batch toward a peer.
pub const BATCH_PREFIXES: usize = 2048;

/// The speaker as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Where the shared listener binds (port 179 in production); `None`: no listener, every
    /// peer is reached by connecting out. [`Speaker::set_listen`] moves it later.
    pub listen: Option<SocketAddr>,
    /// Our cluster id when we reflect routes to clients (defaults to the router id).
    pub cluster_id: Option<Ipv4Addr>,
    /// This process has just restarted with its forwarding state kept (RFC 4724).
    pub restarting: bool,
    /// How long a restarting speaker waits for [`Speaker::initial_routes_done`] before sending
    /// its routes and End-of-RIB anyway.
    pub restart_deferral: Duration,
    /// Room in the best-path change channel, in batches (a round's changes each).
    pub route_queue: usize,
}

impl SpeakerConfig {
    /// Listening on 0.0.0.0:179, not restarting.
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        SpeakerConfig {
            local_as,
            router_id,
            listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 179))),
            cluster_id: None,
            restarting: false,
            restart_deferral: Duration::from_secs(60),
            route_queue: 16,
        }
    }
}

/// One peer, as Calico's BIRD template and BGPPeer resources describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSettings {
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    /// TCP-MD5 password (RFC 2385).
    pub password: Option<String>,
    /// Never connect out; wait for the peer.
    pub passive: bool,
    /// A route-reflection client of ours (our cluster id is [`SpeakerConfig::cluster_id`]).
    pub rr_client: bool,
    pub next_hop: NextHopMode,
    /// Seconds the peer should keep our routes while we restart; `None`: no graceful restart
    /// with this peer in either role.
    pub graceful_restart_time: Option<u16>,
    /// Hold time we offer (0, or at least 3 s).
    pub hold_time: u16,
    /// Seconds between KEEPALIVEs; by default a third of the hold time.
    pub keepalive: Option<u16>,
    /// Source address of our connections, and our next hop toward this peer.
    pub local_address: Option<IpAddr>,
    /// The TTL (hop limit) of the session's packets, for a peer that is not directly
    /// connected (BIRD's `multihop`). `None`: 1 toward an eBGP peer, which must then share a
    /// link with us (BIRD's `direct`, the eBGP default), and 64 toward an iBGP peer.
    pub multihop: Option<u8>,
    /// First wait between connection attempts, and first wait after an error (BIRD's
    /// `connect retry time` and `error wait time`).
    pub connect_retry: Duration,
    pub error_wait: Duration,
    /// Routes from the peer; a prefix no rule matches is accepted.
    pub import: Filter,
    /// Routes to the peer; a prefix no rule matches is sent.
    pub export: Filter,
    /// Most prefixes of a family accepted from the peer; one more and the session is reset
    /// with Cease 6/1 (RFC 4486) and its routes dropped (BIRD's `import limit ... action
    /// restart`). `None`: no limit, as in Calico's BIRD configuration.
    pub max_prefixes: Option<u32>,
    /// How many times our own AS may appear in the AS_PATH of a route the peer sends for it to
    /// be accepted (Calico's `numAllowedLocalASNumbers`, BIRD's `allow local as N`); 0, the
    /// default, refuses every route with our AS in its path.
    pub allow_local_as: u32,
}

impl PeerSettings {
    /// Calico's defaults: port 179, hold 90 s, graceful restart 120 s, connect retry 5 s.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        PeerSettings {
            address,
            port: 179,
            remote_as,
            password: None,
            passive: false,
            rr_client: false,
            next_hop: NextHopMode::Auto,
            graceful_restart_time: Some(120),
            hold_time: 90,
            keepalive: None,
            local_address: None,
            multihop: None,
            connect_retry: Duration::from_secs(5),
            error_wait: Duration::from_secs(5),
            import: Filter::default(),
            export: Filter::default(),
            max_prefixes: None,
            allow_local_as: 0,
        }
    }
}

/// The communities an originated prefix carries (BGPConfiguration `communities` and
/// `prefixAdvertisements`). Order and repetition do not matter: they are sent sorted, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Communities {
    /// RFC 1997 communities, `aa:nn` as `aa << 16 | nn`.
    pub standard: Vec<u32>,
    /// RFC 8092 large communities.
    pub large: Vec<LargeCommunity>,
}

impl Communities {
    /// Sorted, each value once.
    fn normalized(mut self) -> Communities {
        self.standard.sort_unstable();
        self.standard.dedup();
        self.large.sort_unstable();
        self.large.dedup();
        self
    }
}

/// A change of what the kernel should hold for a prefix learnt by BGP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteChange {
    /// The best path is from a peer; these are the equal-cost next hops, best first.
    Best { prefix: IpNet, next_hops: NextHops },
    /// No path from a peer any more (none at all, or our own origination won).
    Withdrawn { prefix: IpNet },
}

impl RouteChange {
    pub fn prefix(&self) -> IpNet {
        match self {
            RouteChange::Best { prefix, .. } | RouteChange::Withdrawn { prefix } => *prefix,
        }
    }
}

/// The best-path changes, in the order they were made for each prefix. They travel in
/// batches (a channel operation per batch, not per prefix); `recv` hands them out one at a
/// time, `recv_batch` as they came.
pub struct RouteStream {
    batches: mpsc::Receiver<Vec<RouteChange>>,
    /// The rest of the batch `recv` is handing out.
    current: std::vec::IntoIter<RouteChange>,
}

impl RouteStream {
    pub(crate) fn new(batches: mpsc::Receiver<Vec<RouteChange>>) -> RouteStream {
        RouteStream {
            batches,
            current: Vec::new().into_iter(),
        }
    }

    /// The next change; `None` once the speaker has stopped. Cancel-safe (for `select!`).
    pub async fn recv(&mut self) -> Option<RouteChange> {
        loop {
            if let Some(change) = self.current.next() {
                return Some(change);
            }
            self.current = self.batches.recv().await?.into_iter();
        }
    }

    /// The next change if one is waiting.
    pub fn try_recv(&mut self) -> Result<RouteChange, mpsc::error::TryRecvError> {
        loop {
            if let Some(change) = self.current.next() {
                return Ok(change);
            }
            self.current = self.batches.try_recv()?.into_iter();
        }
    }

    /// The changes not handed out yet of the current batch, or the next batch (never empty);
    /// `None` once the speaker has stopped. Cancel-safe.
    pub async fn recv_batch(&mut self) -> Option<Vec<RouteChange>> {
        let rest: Vec<RouteChange> = std::mem::take(&mut self.current).collect();
        if !rest.is_empty() {
            return Some(rest);
        }
        loop {
            let batch = self.batches.recv().await?;
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }
}

/// One peer's state, for `calicoctl node status` and readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    pub state: State,
    /// When the session entered `state`.
    pub since: SystemTime,
    /// Why the session last went down or failed to come up (a failed connect names the OS
    /// error); cleared when it is Established.
    pub last_error: Option<String>,
    /// The peer's router id while established.
    pub router_id: Option<Ipv4Addr>,
    /// Paths the peer has announced and not withdrawn.
    pub received: usize,
    /// Of those, the ones accepted into the Loc-RIB (import filter and loop checks passed).
    pub accepted: usize,
    /// Prefixes we currently advertise to the peer.
    pub advertised: usize,
    /// The peer sent End-of-RIB for every family of the established session: its initial
    /// routes are all in (a restarted calico-node can then drop kernel routes it did not get
    /// again).
    pub initial_routes_received: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("peer {address}: {source}")]
    PeerConfig {
        address: IpAddr,
        source: ConfigError,
    },
    #[error("peer {address}: TCP-MD5 password: {reason}")]
    Password { address: IpAddr, reason: String },
    #[error("peer {0} is passive but the speaker has no listener")]
    PassiveWithoutListener(IpAddr),
    #[error("no peer {0}")]
    NoSuchPeer(IpAddr),
    #[error("next hop {next_hop} is not of the family of {prefix}")]
    NextHopFamily { prefix: IpNet, next_hop: IpAddr },
    #[error("the speaker has stopped")]
    Stopped,
}

/// Requests to the RIB task.
enum Request {
    SetPeer(PeerSettings, oneshot::Sender<Result<(), SpeakerError>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), SpeakerError>>),
    SetIdentity {
        local_as: u32,
        router_id: Ipv4Addr,
        cluster_id: Option<Ipv4Addr>,
        done: oneshot::Sender<Result<(), SpeakerError>>,
    },
    Originate(IpNet, Option<IpAddr>, Communities),
    Withdraw(IpNet),
    SetListen(
        Option<SocketAddr>,
        oneshot::Sender<Result<Option<SocketAddr>, SpeakerError>>,
    ),
    InitialRoutesDone,
    Status(oneshot::Sender<Vec<PeerStatus>>),
    Shutdown(oneshot::Sender<()>),
}

/// A running speaker; clones are handles to the same one. Dropping the last stops the RIB
/// task, which ends every session.
#[derive(Clone)]
pub struct Speaker {
    requests: mpsc::Sender<Request>,
    /// Where the listener is bound, shared by the clones.
    local_addr: Arc<Mutex<Option<SocketAddr>>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Speaker {
    /// Starts the speaker on the current tokio runtime. Returns it and the stream of best-path
    /// changes (which must be read, or changes coalesce until it is).
    pub async fn start(config: SpeakerConfig) -> Result<(Speaker, RouteStream), SpeakerError> {
        let (requests, request_rx) = mpsc::channel(256);
        let (route_tx, routes) = mpsc::channel(config.route_queue.max(1));
        let routes = RouteStream::new(routes);
        let (core, local_addr) = core::Core::new(config, route_tx).await?;
        let task = tokio::spawn(core.run(request_rx));
        Ok((
            Speaker {
                requests,
                local_addr: Arc::new(Mutex::new(local_addr)),
                task: Arc::new(Mutex::new(Some(task))),
            },
            routes,
        ))
    }

    /// Where the listener is bound (its port when configured as 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        // Only ever held to copy the value in or out.
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the listener to `listen` (`None`: no listener, refused while a peer is passive)
    /// while the speaker runs: the new socket is bound before the old one is closed, sessions
    /// already established stay up, and peers connect at the new address from then on. When
    /// it cannot be bound the old listener is kept and the error returned. Returns where the
    /// listener is now bound.
    pub async fn set_listen(
        &self,
        listen: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>, SpeakerError> {
        let bound = self.ask(|done| Request::SetListen(listen, done)).await??;
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner()) = bound;
        Ok(bound)
    }

    /// Adds a peer, or changes the one with this address. Only a change of the session's own
    /// parameters (AS, port, password, passive, timers, graceful restart, source address,
    /// multihop)
    /// restarts its session; route reflection, next hop and export changes are sent as
    /// UPDATEs, and an import filter or `allow_local_as` change asks the peer for its routes
    /// again (ROUTE-REFRESH, or a restart when the peer cannot refresh).
    pub async fn set_peer(&self, peer: PeerSettings) -> Result<(), SpeakerError> {
        self.ask(|done| Request::SetPeer(peer, done)).await?
    }

    /// Removes a peer: its session ends with a Cease and its routes go.
    pub async fn remove_peer(&self, address: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|done| Request::RemovePeer(address, done)).await?
    }

    /// Changes the local AS, router id or cluster id; every session restarts.
    pub async fn set_identity(
        &self,
        local_as: u32,
        router_id: Ipv4Addr,
        cluster_id: Option<Ipv4Addr>,
    ) -> Result<(), SpeakerError> {
        self.ask(|done| Request::SetIdentity {
            local_as,
            router_id,
            cluster_id,
            done,
        })
        .await?
    }

    /// Originates `prefix` with `communities`; with `next_hop` `None` each peer is sent our
    /// address on its session. Originating a prefix again replaces what it was originated with:
    /// peers are sent the new communities (nothing when they are the same).
    pub async fn originate(
        &self,
        prefix: IpNet,
        next_hop: Option<IpAddr>,
        communities: Communities,
    ) -> Result<(), SpeakerError> {
        if let Some(nh) = next_hop
            && nh.is_ipv4() != matches!(prefix, IpNet::V4(_))
        {
            return Err(SpeakerError::NextHopFamily {
                prefix,
                next_hop: nh,
            });
        }
        self.request(Request::Originate(
            prefix.trunc(),
            next_hop,
            communities.normalized(),
        ))
        .await
    }

    pub async fn withdraw(&self, prefix: IpNet) -> Result<(), SpeakerError> {
        self.request(Request::Withdraw(prefix.trunc())).await
    }

    /// A restarting speaker has originated everything it had before: peers can now be sent
    /// our routes and End-of-RIB. Without effect when not restarting.
    pub async fn initial_routes_done(&self) -> Result<(), SpeakerError> {
        self.request(Request::InitialRoutesDone).await
    }

    /// Every peer's status, in address order.
    pub async fn status(&self) -> Result<Vec<PeerStatus>, SpeakerError> {
        self.ask(Request::Status).await
    }

    /// Stops every session (with a Cease) and the RIB task, for every clone.
    pub async fn shutdown(self) {
        let (done, wait) = oneshot::channel();
        if self.requests.send(Request::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
        // The lock is only held to take the handle (a panic cannot leave it half-taken).
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    async fn request(&self, r: Request) -> Result<(), SpeakerError> {
        self.requests
            .send(r)
            .await
            .map_err(|_| SpeakerError::Stopped)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, SpeakerError> {
        let (tx, rx) = oneshot::channel();
        self.request(make(tx)).await?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }
}
