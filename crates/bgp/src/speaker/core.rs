//! The RIB task: owns the RIB and every peer's Adj-RIB-Out, starts and stops session tasks,
//! and turns what sessions report and what the API asks into UPDATEs and best-path changes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    BATCH_PREFIXES, MAX_BATCHES_IN_FLIGHT, PeerSettings, PeerStatus, Request, RouteChange,
    SpeakerConfig, SpeakerError,
};
use crate::net::listener::{ListenerHandle, PeerTable, serve};
use crate::net::{self, Command, SessionEvent, SessionHandle, TcpOptions};
use crate::rib::out::ExportInterner;
use crate::rib::{
    AdjRibOut, BestChange, ExportCache, PeerId, PeerInfo, Rib, RibConfig, Source, pack,
};
use crate::session::{GracefulRestartConfig, PeerConfig, Reason};
use crate::wire::{Context, Family, PathAttributes, Update};

/// Room for session events on their way to the RIB task (shared by all sessions).
const EVENT_QUEUE: usize = MAX_EVENTS_PER_ROUND;
/// Most session events taken in one round before their changes go out: enough that a burst
/// (a reflector's clients each announcing a route) costs one sync per peer per round instead
/// of one per event, few enough that a round's work and memory stay small.
const MAX_EVENTS_PER_ROUND: usize = 256;
/// A round also ends once its events have changed this many best paths.
const MAX_CHANGES_PER_ROUND: usize = BATCH_PREFIXES;
/// Events of one session queued for the RIB task at most. A flooding peer's UPDATEs then wait
/// in its TCP socket, not decoded in our memory, while other sessions keep their turns.
const EVENTS_IN_FLIGHT_PER_PEER: usize = 8;
/// How soon a slow peer's backlog is looked at again.
const BACKLOG_RETRY: Duration = Duration::from_millis(10);
/// Connections the kernel queues for the listener before it accepts them (a reflector's many
/// clients connect at once after a restart).
const LISTEN_BACKLOG: u32 = 1024;
/// How long shutdown waits for each session to send its Cease.
const SESSION_STOP_WAIT: Duration = Duration::from_secs(1);

/// The session parameters of `peer` as the state machine and TCP layer take them.
pub(super) fn session_config(
    speaker: &SpeakerConfig,
    peer: &PeerSettings,
) -> (PeerConfig, TcpOptions) {
    let mut cfg = PeerConfig::new(speaker.local_as, speaker.router_id, peer.remote_as);
    cfg.passive = peer.passive;
    cfg.hold_time = peer.hold_time;
    cfg.keepalive = peer.keepalive;
    // BIRD retries at a fixed interval and backs off after errors up to six times the first
    // wait (`error wait time 5,30`).
    cfg.connect_retry = peer.connect_retry;
    cfg.connect_retry_max = peer.connect_retry;
    cfg.idle_hold = peer.error_wait;
    cfg.idle_hold_max = peer.error_wait.saturating_mul(6);
    // As Calico's BIRD does: an IPv4 session carries IPv4 routes, an IPv6 session IPv6 ones.
    cfg.families = vec![family_of(peer.address)];
    cfg.max_prefixes = peer.max_prefixes;
    cfg.graceful_restart = peer
        .graceful_restart_time
        .map(|restart_time| GracefulRestartConfig {
            restart_time,
            restarting: speaker.restarting,
            forwarding_preserved: speaker.restarting,
        });
    let tcp = TcpOptions {
        md5_key: peer.password.as_ref().map(|p| p.as_bytes().to_vec()),
        local_addr: peer.local_address,
        ttl: Some(session_ttl(speaker, peer)),
    };
    (cfg, tcp)
}

/// TTL 1 toward a directly connected eBGP peer unless multihop is set, as BIRD does; 64 (a
/// usual system default, and BIRD's iBGP one) toward an iBGP peer.
pub(super) fn session_ttl(speaker: &SpeakerConfig, peer: &PeerSettings) -> u8 {
    match peer.multihop {
        Some(ttl) => ttl,
        None if peer.remote_as == speaker.local_as => 64,
        None => 1,
    }
}

/// Whether going from `old` to `new` needs the session restarted: anything carried in the
/// OPEN or the TCP connection does; route reflection, next hop and filters do not.
pub(super) fn restart_needed(old: &PeerSettings, new: &PeerSettings) -> bool {
    old.address != new.address
        || old.port != new.port
        || old.remote_as != new.remote_as
        || old.password != new.password
        || old.passive != new.passive
        || old.graceful_restart_time != new.graceful_restart_time
        || old.hold_time != new.hold_time
        || old.keepalive != new.keepalive
        || old.local_address != new.local_address
        || old.multihop != new.multihop
        || old.connect_retry != new.connect_retry
        || old.error_wait != new.error_wait
        || old.max_prefixes != new.max_prefixes
}

/// Whether what the peer should be sent may differ.
fn export_changed(old: &PeerSettings, new: &PeerSettings) -> bool {
    old.rr_client != new.rr_client || old.next_hop != new.next_hop || old.export != new.export
}

fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::IPV4_UNICAST,
        IpAddr::V6(_) => Family::IPV6_UNICAST,
    }
}

fn family_of_prefix(prefix: &IpNet) -> Family {
    family_of(prefix.addr())
}

pub(super) fn describe(reason: &Reason) -> String {
    match reason {
        Reason::Stopped => "administratively stopped".into(),
        Reason::ConnectionClosed => "connection closed".into(),
        Reason::ConnectFailed => "connect failed".into(),
        Reason::HoldTimerExpired => "hold timer expired".into(),
        Reason::PeerRestarted => "peer restarted".into(),
        Reason::Refused => "connection refused".into(),
        Reason::Collision => "connection collision".into(),
        Reason::Sent(n) => format!("sent NOTIFICATION {n}"),
        Reason::Received(n) => format!("received NOTIFICATION {n}"),
    }
}

/// What an established session agreed on.
struct Up {
    families: Vec<Family>,
    encode: Context,
    router_id: Ipv4Addr,
    route_refresh: bool,
    /// Families whose End-of-RIB the peer has sent on this session.
    end_of_rib: Vec<Family>,
}

/// The RIB task's side of a session task (its events go through the forwarder).
struct SessionLink {
    commands: mpsc::UnboundedSender<Command>,
    info: tokio::sync::watch::Receiver<net::SessionInfo>,
    batches_queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Prefixes, each once, in the order first noted; O(1) to add and to take.
type PrefixSet = indexmap::IndexSet<IpNet, rustc_hash::FxBuildHasher>;

struct Peer {
    settings: PeerSettings,
    id: PeerId,
    session: SessionLink,
    forwarder: tokio::task::JoinHandle<()>,
    /// The forwarder's room for this session's events in the RIB task's queue: it takes a
    /// permit per event, the RIB task gives it back once the event is applied.
    credit: std::sync::Arc<tokio::sync::Semaphore>,
    out: AdjRibOut,
    up: Option<Up>,
    /// The initial table and End-of-RIB went out on this session.
    initial_sent: bool,
    /// Prefixes whose state toward this peer may have changed and is not sent yet.
    pending: PrefixSet,
    last_error: Option<String>,
}

pub(super) struct Core {
    cfg: SpeakerConfig,
    rib: Rib,
    peers: BTreeMap<IpAddr, Peer>,
    by_id: HashMap<PeerId, IpAddr>,
    next_id: PeerId,
    table: PeerTable,
    listener: Option<ListenerHandle>,
    /// The listening socket, kept to set and clear peers' TCP-MD5 keys on it.
    listen_socket: Option<(OwnedFd, bool)>,
    events_tx: mpsc::Sender<(PeerId, SessionEvent)>,
    events_rx: Option<mpsc::Receiver<(PeerId, SessionEvent)>>,
    routes: mpsc::Sender<Vec<RouteChange>>,
    /// Shared by every peer's Adj-RIB-Out, so that a route sent to many peers is held once.
    exports: ExportInterner,
    /// Best-path changes the stream had no room for, the latest per prefix: handed over as
    /// one batch when it has.
    routes_pending: FxHashMap<IpNet, RouteChange>,
    /// A restarting speaker may send its initial routes (always true when not restarting).
    initial_routes_done: bool,
    deferral_deadline: Option<Instant>,
    /// Session tasks told to stop, so that shutdown can wait for their Cease to go out.
    ending: Vec<tokio::task::JoinHandle<()>>,
}

impl Core {
    pub(super) async fn new(
        cfg: SpeakerConfig,
        routes: mpsc::Sender<Vec<RouteChange>>,
    ) -> Result<(Core, Option<SocketAddr>), SpeakerError> {
        let table = PeerTable::new();
        let (listener, listen_socket, local_addr) = match cfg.listen {
            Some(addr) => {
                let (handle, fd) = bind_listener(addr, &table)?;
                let bound = handle.local_addr;
                (Some(handle), Some((fd, addr.is_ipv6())), Some(bound))
            }
            None => (None, None, None),
        };
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let deferral_deadline = cfg
            .restarting
            .then(|| Instant::now() + cfg.restart_deferral);
        let core = Core {
            rib: Rib::new(RibConfig {
                local_as: cfg.local_as,
                router_id: cfg.router_id,
                cluster_id: cfg.cluster_id,
            }),
            initial_routes_done: !cfg.restarting,
            cfg,
            peers: BTreeMap::new(),
            by_id: HashMap::new(),
            next_id: 1,
            table,
            listener,
            listen_socket,
            events_tx,
            events_rx: Some(events_rx),
            routes,
            exports: ExportInterner::default(),
            routes_pending: FxHashMap::default(),
            deferral_deadline,
            ending: Vec::new(),
        };
        Ok((core, local_addr))
    }

    pub(super) async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let Some(mut events) = self.events_rx.take() else {
            return;
        };
        // When a backlog is next looked at: a deadline kept across iterations, since a new
        // sleep each time would be pushed back by every request and event (a status poll every
        // few ms would then hold a slow peer's backlog back forever).
        let mut retry_at: Option<Instant> = None;
        // Woken as soon as the route reader makes room, not only at the next retry: the
        // stream's backlog would otherwise move one channel's worth per retry interval. (A
        // handle of its own, so that waiting for room does not borrow `self`.)
        let routes = self.routes.clone();
        loop {
            let backlog = self.has_backlog();
            if !backlog {
                retry_at = None;
            } else if retry_at.is_none() {
                retry_at = Some(Instant::now() + BACKLOG_RETRY);
            }
            let deferral = self.deferral_deadline.filter(|_| !self.initial_routes_done);
            let stream_waiting = !self.routes_pending.is_empty();
            tokio::select! {
                request = requests.recv() => match request {
                    Some(Request::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(r) => self.on_request(r),
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                Some((id, event)) = events.recv() => self.on_events(id, event, &mut events),
                _ = sleep_until(retry_at), if retry_at.is_some() => {
                    retry_at = None;
                    self.flush_all();
                }
                permit = routes.reserve(), if stream_waiting => match permit {
                    Ok(permit) => permit.send(take_held(&mut self.routes_pending)),
                    // Nobody reads the stream: nothing to keep for it.
                    Err(_) => self.routes_pending = FxHashMap::default(),
                },
                _ = sleep_until(deferral), if deferral.is_some() => self.finish_initial_routes(),
            }
        }
    }

    /// Peers with changes held back until they read what they were sent. (The route stream's
    /// backlog needs no retry: `run` waits for room in the stream itself.)
    fn has_backlog(&self) -> bool {
        self.peers
            .values()
            .any(|p| p.initial_sent && !p.pending.is_empty())
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::SetPeer(settings, done) => {
                let _ = done.send(self.set_peer(settings));
            }
            Request::RemovePeer(address, done) => {
                let result = match self.peers.remove(&address) {
                    Some(peer) => {
                        self.stop_session(peer);
                        Ok(())
                    }
                    None => Err(SpeakerError::NoSuchPeer(address)),
                };
                let _ = done.send(result);
            }
            Request::SetIdentity {
                local_as,
                router_id,
                cluster_id,
                done,
            } => {
                let _ = done.send(self.set_identity(local_as, router_id, cluster_id));
            }
            Request::Originate(prefix, next_hop, communities) => {
                let next_hop = next_hop.unwrap_or(match prefix {
                    IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                });
                let attrs = PathAttributes {
                    communities: communities.standard,
                    large_communities: communities.large,
                    ..PathAttributes::default()
                };
                let changes = self.rib.originate(prefix, attrs, next_hop);
                self.propagate(changes);
            }
            Request::Withdraw(prefix) => {
                let changes = self.rib.withdraw_local(prefix);
                self.propagate(changes);
            }
            Request::SetListen(listen, done) => {
                let _ = done.send(self.set_listen(listen));
            }
            Request::InitialRoutesDone => self.finish_initial_routes(),
            Request::Status(done) => {
                let _ = done.send(self.status());
            }
            // Handled in `run`.
            Request::Shutdown(_) => {}
        }
    }

    fn set_peer(&mut self, settings: PeerSettings) -> Result<(), SpeakerError> {
        let address = settings.address;
        let (cfg, _) = session_config(&self.cfg, &settings);
        cfg.validate()
            .map_err(|source| SpeakerError::PeerConfig { address, source })?;
        if settings.passive && self.listener.is_none() {
            return Err(SpeakerError::PassiveWithoutListener(address));
        }
        let Some(old) = self.peers.get(&address) else {
            return self.start_session(settings);
        };
        if restart_needed(&old.settings, &settings) {
            if let Some(old) = self.peers.remove(&address) {
                self.stop_session(old);
            }
            return self.start_session(settings);
        }
        let import_changed = old.settings.import != settings.import
            || old.settings.allow_local_as != settings.allow_local_as;
        let exports_changed = export_changed(&old.settings, &settings);
        // Whether its routes may be reflected changes what every other peer is sent.
        let reflection_changed = old.settings.rr_client != settings.rr_client;
        let Some(peer) = self.peers.get_mut(&address) else {
            return Ok(());
        };
        peer.settings = settings;
        let id = peer.id;
        if let Some(mut info) = self.rib.peer(id).cloned() {
            info.rr_client = peer.settings.rr_client;
            info.next_hop = peer.settings.next_hop;
            info.import = peer.settings.import.clone();
            info.export = peer.settings.export.clone();
            info.allow_local_as = peer.settings.allow_local_as;
            self.rib.set_peer(id, info);
        }
        if reflection_changed {
            let all: Vec<IpAddr> = self.peers.keys().copied().collect();
            for a in all {
                self.resync(a);
            }
        } else if exports_changed {
            self.resync(address);
        }
        let refreshed = if import_changed {
            let changes = self.rib.refilter(id);
            self.propagate(changes);
            self.refresh_from(address)
        } else {
            Ok(())
        };
        self.flush_all();
        refreshed
    }

    /// Re-checks everything `address` is or should be sent (after its export settings
    /// changed): every best path of its families and everything it was sent.
    fn resync(&mut self, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(up) = peer.up.as_ref().filter(|_| peer.initial_sent) else {
            return;
        };
        let families = &up.families;
        let best = self
            .rib
            .best_prefixes()
            .filter(|p| families.contains(&family_of_prefix(p)));
        peer.pending.extend(best);
        // Prefixes it should no longer have are only in its Adj-RIB-Out.
        peer.pending.extend(peer.out.prefixes());
    }

    /// Asks `address` for its routes again after its import filter changed; a peer that
    /// cannot refresh is restarted.
    fn refresh_from(&mut self, address: IpAddr) -> Result<(), SpeakerError> {
        let Some(peer) = self.peers.get(&address) else {
            return Ok(());
        };
        match &peer.up {
            Some(up) if up.route_refresh => {
                for &family in &up.families {
                    let _ = peer.session.commands.send(Command::RouteRefresh(family));
                }
            }
            Some(_) => {
                let settings = peer.settings.clone();
                if let Some(old) = self.peers.remove(&address) {
                    self.stop_session(old);
                }
                return self.start_session(settings);
            }
            // Not established: the next session sends everything anyway.
            None => {}
        }
        Ok(())
    }

    /// Listens on `listen` instead (`None`: no listener). The new socket is bound, and given
    /// the peers' TCP-MD5 keys, before the old one is closed; on any failure the old one is
    /// kept. Sessions already established have their own connections and stay up. Returns
    /// where the listener is bound.
    fn set_listen(
        &mut self,
        listen: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>, SpeakerError> {
        if listen == self.cfg.listen {
            return Ok(self.listener.as_ref().map(|l| l.local_addr));
        }
        let Some(addr) = listen else {
            if let Some(peer) = self.peers.values().find(|p| p.settings.passive) {
                return Err(SpeakerError::PassiveWithoutListener(peer.settings.address));
            }
            if let Some(old) = self.listener.take() {
                old.task.abort();
            }
            close_listener(self.listen_socket.take());
            self.cfg.listen = None;
            return Ok(None);
        };
        let (handle, fd) = bind_listener(addr, &self.table)?;
        for peer in self.peers.values() {
            let Some(password) = &peer.settings.password else {
                continue;
            };
            let address = peer.settings.address;
            let keyed = calico_tcpmd5::set_key(
                &fd,
                calico_tcpmd5::peer_for_socket(address, addr.is_ipv6()),
                password.as_bytes(),
            );
            if let Err(e) = keyed {
                handle.task.abort();
                return Err(SpeakerError::Password {
                    address,
                    reason: e.to_string(),
                });
            }
        }
        let bound = handle.local_addr;
        if let Some(old) = self.listener.replace(handle) {
            old.task.abort();
        }
        close_listener(self.listen_socket.replace((fd, addr.is_ipv6())));
        self.cfg.listen = Some(addr);
        Ok(Some(bound))
    }

    fn set_identity(
        &mut self,
        local_as: u32,
        router_id: Ipv4Addr,
        cluster_id: Option<Ipv4Addr>,
    ) -> Result<(), SpeakerError> {
        let mut cfg = self.cfg.clone();
        cfg.local_as = local_as;
        cfg.router_id = router_id;
        cfg.cluster_id = cluster_id;
        if cfg == self.cfg {
            // Nothing changed: no session restarts.
            return Ok(());
        }
        // Check every peer against the new identity before changing anything.
        for peer in self.peers.values() {
            let (pc, _) = session_config(&cfg, &peer.settings);
            pc.validate().map_err(|source| SpeakerError::PeerConfig {
                address: peer.settings.address,
                source,
            })?;
        }
        self.cfg = cfg;
        self.rib.set_config(RibConfig {
            local_as,
            router_id,
            cluster_id,
        });
        let all: Vec<PeerSettings> = self.peers.values().map(|p| p.settings.clone()).collect();
        for settings in all {
            if let Some(old) = self.peers.remove(&settings.address) {
                self.stop_session(old);
            }
            self.start_session(settings)?;
        }
        Ok(())
    }

    fn start_session(&mut self, settings: PeerSettings) -> Result<(), SpeakerError> {
        let address = settings.address;
        let (cfg, tcp) = session_config(&self.cfg, &settings);
        if let (Some(password), Some((socket, v6))) = (&settings.password, &self.listen_socket) {
            calico_tcpmd5::set_key(
                socket,
                calico_tcpmd5::peer_for_socket(address, *v6),
                password.as_bytes(),
            )
            .map_err(|e| SpeakerError::Password {
                address,
                reason: e.to_string(),
            })?;
        }
        let ibgp = cfg.is_ibgp();
        let SessionHandle {
            events,
            commands,
            inbound,
            task,
            info,
            batches_queued,
        } = net::spawn_with(cfg, SocketAddr::new(address, settings.port), tcp)
            .map_err(|source| SpeakerError::PeerConfig { address, source })?;
        let session = SessionLink {
            commands,
            info,
            batches_queued,
            task,
        };
        let id = self.next_id;
        self.next_id += 1;
        // Also without a listener: one started later finds the peer.
        self.table.insert(address, inbound);
        let credit = std::sync::Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT_PER_PEER));
        let forwarder = tokio::spawn(forward(
            id,
            events,
            self.events_tx.clone(),
            std::sync::Arc::clone(&credit),
        ));
        let (self_v4, self_v6) = match settings.local_address {
            Some(IpAddr::V4(a)) => (Some(a), None),
            Some(IpAddr::V6(a)) => (None, Some(a)),
            None => (None, None),
        };
        self.rib.set_peer(
            id,
            PeerInfo {
                address,
                // Replaced by the identifier in its OPEN once the session is up.
                router_id: self.cfg.router_id,
                asn: settings.remote_as,
                ibgp,
                rr_client: settings.rr_client,
                next_hop: settings.next_hop,
                self_v4,
                self_v6,
                import: settings.import.clone(),
                export: settings.export.clone(),
                allow_local_as: settings.allow_local_as,
            },
        );
        self.by_id.insert(id, address);
        self.peers.insert(
            address,
            Peer {
                settings,
                id,
                session,
                forwarder,
                credit,
                out: AdjRibOut::sharing(&self.exports),
                up: None,
                initial_sent: false,
                pending: PrefixSet::default(),
                last_error: None,
            },
        );
        Ok(())
    }

    /// Ends `peer`'s session (Cease) and drops its routes.
    fn stop_session(&mut self, peer: Peer) {
        let address = peer.settings.address;
        let _ = peer.session.commands.send(Command::Shutdown);
        // Its remaining events are of no interest; with the receiver gone the session task
        // does not wait to report them.
        peer.forwarder.abort();
        self.table.remove(address);
        if peer.settings.password.is_some()
            && let Some((socket, v6)) = &self.listen_socket
        {
            let _ = calico_tcpmd5::remove_key(socket, calico_tcpmd5::peer_for_socket(address, *v6));
        }
        self.by_id.remove(&peer.id);
        self.drop_peer_routes(peer.id);
        let changes = self.rib.remove_peer(peer.id);
        self.propagate(changes);
        self.ending.retain(|t| !t.is_finished());
        self.ending.push(peer.session.task);
    }

    /// Takes `first` and whatever events are already queued behind it (bounded), applies them
    /// all, then sends the peers and the route stream what changed, once.
    fn on_events(
        &mut self,
        id: PeerId,
        first: SessionEvent,
        events: &mut mpsc::Receiver<(PeerId, SessionEvent)>,
    ) {
        let mut changes = Vec::new();
        let (mut id, mut event) = (id, first);
        let mut taken = 1;
        loop {
            if matches!(event, SessionEvent::Down { stale: None, .. }) {
                // What came before goes out first: the peer's withdrawals, sent as they are
                // made, must follow it.
                self.propagate(std::mem::take(&mut changes));
            }
            changes.extend(self.apply_event(id, event));
            if taken >= MAX_EVENTS_PER_ROUND || changes.len() >= MAX_CHANGES_PER_ROUND {
                break;
            }
            match events.try_recv() {
                Ok(next) => (id, event) = next,
                Err(_) => break,
            }
            taken += 1;
        }
        self.propagate(changes);
    }

    /// A peer's routes go a part at a time, each part passed on before the next is taken:
    /// a peer that had a million routes costs a part's changes in memory, not a million.
    fn drop_peer_routes(&mut self, id: PeerId) {
        let keys = self.rib.paths_of(id);
        for part in keys.chunks(MAX_CHANGES_PER_ROUND) {
            let nlri: Vec<crate::wire::Nlri> = part
                .iter()
                .map(|&(prefix, path_id)| crate::wire::Nlri {
                    prefix,
                    path_id: Some(path_id),
                })
                .collect();
            let changes = self.rib.withdraw(id, &nlri);
            self.propagate(changes);
        }
        // Its refused routes and counts (its paths are gone already).
        let rest = self.rib.peer_down(id);
        self.propagate(rest);
    }

    #[cfg(test)]
    fn on_event(&mut self, id: PeerId, event: SessionEvent) {
        let changes = self.apply_event(id, event);
        self.propagate(changes);
    }

    /// Applies one session event to the RIB and the peer's state; the best-path changes it
    /// made, not yet sent anywhere. Sessions that come up or refresh meanwhile are sent the
    /// RIB as it is then, so sending the changes later gives every peer the same end state.
    fn apply_event(&mut self, id: PeerId, event: SessionEvent) -> Vec<BestChange> {
        let Some(&address) = self.by_id.get(&id) else {
            // From a session stopped since.
            return Vec::new();
        };
        if let Some(peer) = self.peers.get(&address).filter(|p| p.id == id) {
            peer.credit.add_permits(1);
        }
        match event {
            SessionEvent::Up(n) => {
                self.on_up(address, id, n);
                Vec::new()
            }
            SessionEvent::Down { reason, stale } => {
                if let Some(peer) = self.peers.get_mut(&address) {
                    peer.up = None;
                    peer.initial_sent = false;
                    peer.out.clear();
                    peer.pending.clear();
                    if reason != Reason::Stopped {
                        peer.last_error = Some(describe(&reason));
                    }
                }
                match stale {
                    Some(stale) => self.rib.mark_stale(id, &stale.families),
                    // Passed on as it goes (see `on_events`, which sends what came before).
                    None => {
                        self.drop_peer_routes(id);
                        Vec::new()
                    }
                }
            }
            SessionEvent::Update(update) => {
                let changes = self.rib.apply_update(id, &update);
                self.report_prefix_count(address);
                changes
            }
            SessionEvent::Withdraw(nlri) => self.rib.withdraw(id, &nlri),
            SessionEvent::EndOfRib(family) => {
                if let Some(up) = self.peers.get_mut(&address).and_then(|p| p.up.as_mut())
                    && !up.end_of_rib.contains(&family)
                {
                    up.end_of_rib.push(family);
                }
                self.rib.sweep_stale(id, family)
            }
            SessionEvent::StaleExpired(families) => families
                .into_iter()
                .flat_map(|f| self.rib.sweep_stale(id, f))
                .collect(),
            SessionEvent::RouteRefresh(family) => {
                self.resend(address, family);
                Vec::new()
            }
            SessionEvent::NotSent(e) => {
                self.note_error(address, format!("UPDATE not sent: {e}"));
                Vec::new()
            }
            SessionEvent::SocketSetup(e) => {
                self.note_error(address, e);
                Vec::new()
            }
        }
    }

    /// Tells a session with a prefix limit how many prefixes of each family it has in the
    /// RIB now; the session resets itself past the limit (the count is the RIB's, since the
    /// session keeps no table).
    fn report_prefix_count(&self, address: IpAddr) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let (Some(_), Some(up)) = (peer.settings.max_prefixes, &peer.up) else {
            return;
        };
        for family in &up.families {
            let count = self.rib.received_count_of(peer.id, *family);
            let _ = peer.session.commands.send(Command::PrefixCount {
                family: *family,
                count,
            });
        }
    }

    fn note_error(&mut self, address: IpAddr, error: String) {
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.last_error = Some(error);
        }
    }

    fn on_up(&mut self, address: IpAddr, id: PeerId, n: crate::session::Negotiated) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        // What kept the session down (a refused connect, say) no longer holds, as BIRD shows it.
        peer.last_error = None;
        let local = peer
            .session
            .info
            .borrow()
            .local
            .map(|a| a.ip().to_canonical());
        if let Some(mut info) = self.rib.peer(id).cloned() {
            info.router_id = n.peer_id;
            // Our end of this connection is our next hop toward the peer unless configured.
            match (peer.settings.local_address, local) {
                (None, Some(IpAddr::V4(a))) => info.self_v4 = Some(a),
                (None, Some(IpAddr::V6(a))) => info.self_v6 = Some(a),
                _ => {}
            }
            self.rib.set_peer(id, info);
        }
        peer.up = Some(Up {
            families: n.families,
            encode: n.encode,
            router_id: n.peer_id,
            route_refresh: n.peer_route_refresh,
            end_of_rib: Vec::new(),
        });
        if self.initial_routes_done {
            self.send_initial(address);
        }
    }

    fn finish_initial_routes(&mut self) {
        if self.initial_routes_done {
            return;
        }
        self.initial_routes_done = true;
        let waiting: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.up.is_some() && !p.initial_sent)
            .map(|(a, _)| *a)
            .collect();
        for address in waiting {
            self.send_initial(address);
        }
    }

    /// Every best path the peer should have, then End-of-RIB per family (RFC 4724 §4.1). One
    /// batch, whatever its size: the table is bounded by the Loc-RIB.
    fn send_initial(&mut self, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(up) = &peer.up else {
            return;
        };
        let packed = self
            .rib
            .initial_updates(peer.id, &up.families, &mut peer.out, &up.encode);
        peer.pending.clear();
        peer.initial_sent = true;
        send_batch(&peer.session, packed.updates);
    }

    /// The peer asked for our routes of `family` again (RFC 2918).
    fn resend(&mut self, address: IpAddr, family: Family) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(up) = &peer.up else {
            return;
        };
        if !peer.initial_sent || !up.families.contains(&family) {
            return;
        }
        let packed = pack(&peer.out.announcements(family), &up.encode);
        send_batch(&peer.session, packed.updates);
    }

    /// Passes best-path changes on: to the route stream and to every established peer.
    fn propagate(&mut self, mut changes: Vec<BestChange>) {
        if changes.is_empty() {
            return;
        }
        for peer in self.peers.values_mut() {
            if !peer.initial_sent {
                continue;
            }
            // A change the peer can get nothing from, for a prefix it holds nothing for, needs
            // no sync: with many iBGP peers (split horizon) that is most of them.
            let rib = &self.rib;
            let (out, id) = (&peer.out, peer.id);
            peer.pending.extend(
                changes
                    .iter()
                    .filter(|c| {
                        out.get(&c.prefix).is_some()
                            || rib.may_export(id, c.best.as_ref().map(|p| p.source))
                    })
                    .map(|c| c.prefix),
            );
        }
        let learnt = |source: Option<Source>| matches!(source, Some(Source::Peer(_)));
        // The stream tells the kernel about paths from peers only: our own originations are
        // routed by whoever asked for them.
        let round: Vec<RouteChange> = changes
            .iter_mut()
            .filter_map(|c| {
                if learnt(c.best.as_ref().map(|p| p.source)) {
                    Some(RouteChange::Best {
                        prefix: c.prefix,
                        next_hops: std::mem::take(&mut c.next_hops),
                    })
                } else if learnt(c.previous) {
                    Some(RouteChange::Withdrawn { prefix: c.prefix })
                } else {
                    None
                }
            })
            .collect();
        self.send_routes(round);
        self.flush_all();
    }

    /// Sends a round's route changes as one batch, or holds them (coalesced per prefix) while
    /// the stream is full. Changes already held go first, so a prefix's changes stay in order.
    fn send_routes(&mut self, round: Vec<RouteChange>) {
        if round.is_empty() {
            return;
        }
        if self.routes_pending.is_empty() {
            match self.routes.try_send(round) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(round)) => self.hold_routes(round),
                // Nobody reads the stream: nothing to keep for it.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        } else {
            self.hold_routes(round);
            self.flush_routes();
        }
    }

    fn hold_routes(&mut self, round: Vec<RouteChange>) {
        for change in round {
            self.routes_pending.insert(change.prefix(), change);
        }
    }

    fn flush_all(&mut self) {
        // One pass over the peers with the RIB unchanged: an export computed for one peer
        // serves every peer with the same export settings.
        let mut cache = ExportCache::default();
        for peer in self.peers.values_mut() {
            flush_peer(&self.rib, peer, &mut cache);
        }
        self.flush_routes();
    }

    /// Hands the route stream the held changes if it has room.
    fn flush_routes(&mut self) {
        if self.routes_pending.is_empty() {
            return;
        }
        match self.routes.try_reserve() {
            Ok(permit) => permit.send(take_held(&mut self.routes_pending)),
            Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => {
                self.routes_pending = FxHashMap::default();
            }
        }
    }

    fn status(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|p| {
                let info = *p.session.info.borrow();
                let accepted = self.rib.received_count(p.id);
                PeerStatus {
                    address: p.settings.address,
                    port: p.settings.port,
                    remote_as: p.settings.remote_as,
                    state: info.state,
                    since: info.since,
                    last_error: p.last_error.clone(),
                    router_id: p.up.as_ref().map(|u| u.router_id),
                    received: accepted + self.rib.refused_count(p.id),
                    accepted,
                    advertised: p.out.len(),
                    initial_routes_received: p
                        .up
                        .as_ref()
                        .is_some_and(|u| u.families.iter().all(|f| u.end_of_rib.contains(f))),
                }
            })
            .collect()
    }

    async fn shutdown(&mut self) {
        let peers = std::mem::take(&mut self.peers);
        for (_, peer) in peers {
            self.stop_session(peer);
        }
        for task in std::mem::take(&mut self.ending) {
            let _ = tokio::time::timeout(SESSION_STOP_WAIT, task).await;
        }
        if let Some(l) = self.listener.take() {
            l.task.abort();
        }
        self.flush_all();
    }
}

/// Stops a listening socket taking connections at once (its accepting task, aborted, lets go
/// of it only when next run): connections to it are refused from now on.
fn close_listener(socket: Option<(OwnedFd, bool)>) {
    if let Some((fd, _)) = socket {
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            nix::sys::socket::Shutdown::Both,
        );
    }
}

/// Binds a listening socket on `addr` and starts accepting on it; also returns a handle on
/// the socket for its TCP-MD5 keys.
fn bind_listener(
    addr: SocketAddr,
    table: &PeerTable,
) -> Result<(ListenerHandle, OwnedFd), SpeakerError> {
    let listen_error = |source| SpeakerError::Listen { addr, source };
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    }
    .map_err(listen_error)?;
    // As `TcpListener::bind` does: a restarted speaker can bind again at once.
    socket.set_reuseaddr(true).map_err(listen_error)?;
    socket.bind(addr).map_err(listen_error)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(listen_error)?;
    let fd = listener
        .as_fd()
        .try_clone_to_owned()
        .map_err(listen_error)?;
    Ok((serve(listener, table.clone()), fd))
}

/// Sends the peer what changed for its pending prefixes, a batch at a time while it has
/// fewer than [`MAX_BATCHES_IN_FLIGHT`] unwritten.
fn flush_peer(rib: &Rib, peer: &mut Peer, cache: &mut ExportCache) {
    let Some(up) = &peer.up else {
        return;
    };
    if !peer.initial_sent {
        return;
    }
    while !peer.pending.is_empty()
        && peer.session.batches_queued.load(Ordering::Relaxed) < MAX_BATCHES_IN_FLIGHT
    {
        let mut batch = Vec::with_capacity(BATCH_PREFIXES.min(peer.pending.len()));
        while batch.len() < BATCH_PREFIXES
            && let Some(p) = peer.pending.pop()
        {
            // Only the families the session negotiated go on it.
            if up.families.contains(&family_of_prefix(&p)) {
                batch.push(p);
            }
        }
        let changes = rib.sync_peer_shared(peer.id, batch, &mut peer.out, cache);
        if changes.is_empty() {
            continue;
        }
        // Packed and encoded by the session task: with many peers that work, once per peer,
        // would otherwise all fall on the RIB task.
        queue_batch(&peer.session, Command::SendChanges(changes));
    }
}

/// Moves a session's events into the RIB task's queue, each once `credit` has room for it (the
/// RIB task gives the permit back when it has applied the event).
async fn forward(
    id: PeerId,
    mut events: mpsc::Receiver<SessionEvent>,
    to_core: mpsc::Sender<(PeerId, SessionEvent)>,
    credit: std::sync::Arc<tokio::sync::Semaphore>,
) {
    while let Some(event) = events.recv().await {
        match credit.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        if to_core.send((id, event)).await.is_err() {
            return;
        }
    }
}

fn send_batch(session: &SessionLink, updates: Vec<Update>) {
    if updates.is_empty() {
        return;
    }
    queue_batch(session, Command::SendBatch(updates));
}

/// The held route changes as one batch, their memory released.
fn take_held(held: &mut FxHashMap<IpNet, RouteChange>) -> Vec<RouteChange> {
    std::mem::take(held).into_values().collect()
}

/// Hands the session a batch command, counted until the session has written it.
fn queue_batch(session: &SessionLink, batch: Command) {
    session.batches_queued.fetch_add(1, Ordering::Relaxed);
    if session.commands.send(batch).is_err() {
        session.batches_queued.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Filter;
    use crate::rib::NextHopMode;
    use crate::session::State;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("address")
    }

    /// An established peer whose session is a channel the test reads.
    fn fake_peer(core: &mut Core, addr: &str) -> mpsc::UnboundedReceiver<Command> {
        let address = IpAddr::V4(v4(addr));
        let (commands, rx) = mpsc::unbounded_channel();
        let (_info_tx, info) = tokio::sync::watch::channel(net::SessionInfo {
            state: State::Established,
            since: std::time::SystemTime::now(),
            local: None,
        });
        let id = core.next_id;
        core.next_id += 1;
        core.rib.set_peer(
            id,
            PeerInfo {
                address,
                router_id: v4(addr),
                asn: 64512,
                ibgp: true,
                rr_client: false,
                next_hop: NextHopMode::Auto,
                self_v4: Some(v4("198.18.0.1")),
                self_v6: None,
                import: Filter::default(),
                export: Filter::default(),
                allow_local_as: 0,
            },
        );
        core.by_id.insert(id, address);
        core.peers.insert(
            address,
            Peer {
                settings: PeerSettings::new(address, 64512),
                id,
                session: SessionLink {
                    commands,
                    info,
                    batches_queued: Default::default(),
                    task: tokio::spawn(async {}),
                },
                forwarder: tokio::spawn(async {}),
                credit: std::sync::Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT_PER_PEER)),
                out: AdjRibOut::sharing(&core.exports),
                up: Some(Up {
                    families: vec![Family::IPV4_UNICAST],
                    encode: Context::default(),
                    router_id: v4(addr),
                    route_refresh: true,
                    end_of_rib: Vec::new(),
                }),
                initial_sent: true,
                pending: PrefixSet::default(),
                last_error: None,
            },
        );
        rx
    }

    /// The UPDATEs a batch command puts on the wire (the test sessions use the default
    /// context).
    fn sent_updates(cmd: Command) -> Option<Vec<Update>> {
        match cmd {
            Command::SendBatch(updates) => Some(updates),
            Command::SendChanges(changes) => Some(pack(&changes, &Context::default()).updates),
            _ => None,
        }
    }

    /// The prefixes announced in the batches waiting on `rx`.
    fn announced(rx: &mut mpsc::UnboundedReceiver<Command>) -> Vec<IpNet> {
        let mut out = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            if let Some(updates) = sent_updates(cmd) {
                out.extend(updates.iter().flat_map(|u| u.nlri.iter().map(|n| n.prefix)));
            }
        }
        out.sort();
        out
    }

    /// A reflector's client: `fake_peer` whose routes are reflected.
    fn fake_client(core: &mut Core, addr: &str) -> mpsc::UnboundedReceiver<Command> {
        let rx = fake_peer(core, addr);
        let address = IpAddr::V4(v4(addr));
        let peer = core.peers.get_mut(&address).expect("peer");
        peer.settings.rr_client = true;
        let id = peer.id;
        let mut info = core.rib.peer(id).cloned().expect("rib peer");
        info.rr_client = true;
        core.rib.set_peer(id, info);
        rx
    }

    /// What a peer holds after reading every batch waiting on `rx`, in order.
    fn replay(
        rx: &mut mpsc::UnboundedReceiver<Command>,
        held: &mut BTreeMap<IpNet, PathAttributes>,
    ) {
        while let Ok(cmd) = rx.try_recv() {
            if let Some(updates) = sent_updates(cmd) {
                for u in updates {
                    for n in &u.withdrawn {
                        held.remove(&n.prefix);
                    }
                    for n in &u.nlri {
                        held.insert(n.prefix, u.attributes.clone());
                    }
                }
            }
        }
    }

    fn client_route(i: u32, next_hop: Ipv4Addr) -> Update {
        Update {
            attributes: PathAttributes {
                origin: Some(crate::wire::Origin::Igp),
                as_path: Some(crate::wire::AsPath::default()),
                next_hop: Some(next_hop),
                local_pref: Some(100),
                ..PathAttributes::default()
            },
            // 10.0.i.0/26 for i below 256.
            nlri: vec![crate::wire::Nlri::new(IpNet::V4(
                ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 26).expect("prefix"),
            ))],
            ..Update::default()
        }
    }

    /// Clients announce, replace and withdraw routes and one session goes down; returns what
    /// each client ends up holding, with the events taken one by one or in rounds.
    async fn reflect(coalesced: bool) -> (Vec<BTreeMap<IpNet, PathAttributes>>, Core) {
        let (routes, _routes) = mpsc::channel(1024);
        let cfg = SpeakerConfig {
            listen: None,
            cluster_id: Some(v4("198.18.0.1")),
            ..SpeakerConfig::new(64512, v4("198.18.0.1"))
        };
        let (mut core, _) = Core::new(cfg, routes).await.expect("core");
        let addrs: Vec<String> = (2..8).map(|i| format!("198.18.0.{i}")).collect();
        let mut rxs: Vec<_> = addrs.iter().map(|a| fake_client(&mut core, a)).collect();
        let ids: Vec<PeerId> = addrs
            .iter()
            .map(|a| core.peers[&IpAddr::V4(v4(a))].id)
            .collect();
        let mut events: Vec<(PeerId, SessionEvent)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let nh = v4(&addrs[i]);
            events.push((*id, SessionEvent::Update(client_route(i as u32, nh))));
            // The same prefix from two clients: one wins, then changes.
            events.push((*id, SessionEvent::Update(client_route(100, nh))));
        }
        events.push((
            ids[1],
            SessionEvent::Withdraw(vec![crate::wire::Nlri::new(
                "10.0.1.0/26".parse().expect("prefix"),
            )]),
        ));
        events.push((
            ids[0],
            SessionEvent::Down {
                reason: Reason::ConnectionClosed,
                stale: None,
            },
        ));
        if coalesced {
            let (tx, mut rx) = mpsc::channel(events.len());
            let mut it = events.into_iter();
            let (id, first) = it.next().expect("an event");
            for e in it {
                tx.try_send(e).expect("room");
            }
            core.on_events(id, first, &mut rx);
            assert!(rx.try_recv().is_err(), "every event taken in one round");
        } else {
            for (id, e) in events {
                core.on_event(id, e);
            }
        }
        let mut held = Vec::new();
        for rx in &mut rxs {
            let mut h = BTreeMap::new();
            replay(rx, &mut h);
            held.push(h);
        }
        (held, core)
    }

    #[tokio::test]
    async fn coalesced_events_leave_every_peer_as_one_by_one_does() {
        let (one_by_one, _) = reflect(false).await;
        let (coalesced, core) = reflect(true).await;
        // The client whose session went down is left out: what it was sent before is moot.
        assert_eq!(coalesced[1..], one_by_one[1..]);
        // A client still up holds the others' routes and the contested prefix, not its own.
        let held = &coalesced[2];
        assert!(held.contains_key(&"10.0.3.0/26".parse().expect("prefix")));
        assert!(held.contains_key(&"10.0.100.0/26".parse().expect("prefix")));
        assert!(!held.contains_key(&"10.0.2.0/26".parse().expect("prefix")));
        assert!(!held.contains_key(&"10.0.1.0/26".parse().expect("prefix")));
        // Every client's Adj-RIB-Out holds one shared copy of a reflected route.
        let p: IpNet = "10.0.5.0/26".parse().expect("prefix");
        let copies: Vec<&crate::rib::Exported> = core
            .peers
            .values()
            .filter_map(|peer| peer.out.get(&p))
            .collect();
        assert!(copies.len() >= 4);
        assert!(copies.iter().all(|e| std::ptr::eq(*e, copies[0])));
    }

    /// Frequent requests (a status poll) do not hold back a backlog of route changes.
    #[tokio::test]
    async fn the_route_stream_backlog_drains_while_status_is_polled() {
        let (routes, stream) = mpsc::channel(1);
        let mut stream = super::super::RouteStream::new(stream);
        let cfg = SpeakerConfig {
            listen: None,
            cluster_id: Some(v4("198.18.0.1")),
            ..SpeakerConfig::new(64512, v4("198.18.0.1"))
        };
        let (mut core, _) = Core::new(cfg, routes).await.expect("core");
        let _a = fake_client(&mut core, "198.18.0.2");
        let id = core.peers[&IpAddr::V4(v4("198.18.0.2"))].id;
        for i in 0..3 {
            core.on_event(id, SessionEvent::Update(client_route(i, v4("198.18.0.2"))));
        }
        let (requests, request_rx) = mpsc::channel(4);
        let task = tokio::spawn(core.run(request_rx));
        let mut got = 0;
        // A poll every 2 ms, a fifth of the retry wait; bounded by polls (at least 10 s).
        for _ in 0..5000 {
            while stream.try_recv().is_ok() {
                got += 1;
            }
            if got == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            let (done, status) = tokio::sync::oneshot::channel();
            requests
                .send(Request::Status(done))
                .await
                .expect("core running");
            status.await.expect("status");
        }
        assert_eq!(got, 3, "every change came out while the status was polled");
        drop(requests);
        task.await.expect("core task");
    }

    /// A flooding session gets no more than its share of the RIB task's queue: the rest of
    /// its UPDATEs wait (in TCP, for a real session) until the RIB task has applied some.
    #[tokio::test]
    async fn a_session_has_at_most_its_credit_of_events_queued() {
        let (session_tx, session_rx) = mpsc::channel(64);
        let (to_core, mut core_rx) = mpsc::channel(64);
        let credit = std::sync::Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT_PER_PEER));
        for i in 0..20 {
            session_tx
                .try_send(SessionEvent::Update(client_route(i, v4("198.18.0.2"))))
                .expect("room");
        }
        let task = tokio::spawn(forward(
            7,
            session_rx,
            to_core,
            std::sync::Arc::clone(&credit),
        ));
        let settle = || async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        };
        settle().await;
        assert_eq!(core_rx.len(), EVENTS_IN_FLIGHT_PER_PEER);
        // The RIB task applies two: two more come.
        for _ in 0..2 {
            let (id, _) = core_rx.try_recv().expect("an event");
            assert_eq!(id, 7);
            credit.add_permits(1);
        }
        settle().await;
        assert_eq!(core_rx.len(), EVENTS_IN_FLIGHT_PER_PEER);
        // Of the 20: 10 passed on, one in the forwarder's hand waiting for credit, the rest
        // still in the session's queue.
        assert_eq!(session_tx.capacity(), 64 - (20 - 10 - 1));
        task.abort();
    }

    /// A peer that goes down with many routes has them withdrawn a part at a time: the route
    /// stream gets them in batches of at most a round's changes, not one batch of all.
    #[tokio::test]
    async fn a_peer_going_down_is_withdrawn_a_part_at_a_time() {
        let (routes, stream) = mpsc::channel(64);
        let mut stream = super::super::RouteStream::new(stream);
        let cfg = SpeakerConfig {
            listen: None,
            ..SpeakerConfig::new(64512, v4("198.18.0.1"))
        };
        let (mut core, _) = Core::new(cfg, routes).await.expect("core");
        let _a = fake_peer(&mut core, "198.18.0.2");
        let id = core.peers[&IpAddr::V4(v4("198.18.0.2"))].id;
        let count = 3 * MAX_CHANGES_PER_ROUND as u32;
        let update = Update {
            nlri: (0..count)
                .map(|i| {
                    crate::wire::Nlri::new(IpNet::V4(
                        ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 6)), 26)
                            .expect("prefix"),
                    ))
                })
                .collect(),
            ..client_route(0, v4("198.18.0.2"))
        };
        core.on_event(id, SessionEvent::Update(update));
        let mut learnt = 0;
        while let Ok(Some(batch)) = tokio::time::timeout(Duration::ZERO, stream.recv_batch()).await
        {
            learnt += batch.len();
        }
        assert_eq!(learnt, count as usize);

        let (tx, mut rx) = mpsc::channel(1);
        core.on_events(
            id,
            SessionEvent::Down {
                reason: Reason::ConnectionClosed,
                stale: None,
            },
            &mut rx,
        );
        drop(tx);
        let mut batches = Vec::new();
        while let Ok(Some(batch)) = tokio::time::timeout(Duration::ZERO, stream.recv_batch()).await
        {
            assert!(
                batch
                    .iter()
                    .all(|c| matches!(c, RouteChange::Withdrawn { .. }))
            );
            batches.push(batch.len());
        }
        assert_eq!(batches.iter().sum::<usize>(), count as usize);
        assert!(
            batches.iter().all(|&n| n <= MAX_CHANGES_PER_ROUND),
            "{batches:?}"
        );
        assert_eq!(core.rib.received_count(id), 0);
    }

    #[tokio::test]
    async fn a_round_takes_at_most_its_share_of_queued_events() {
        let (routes, _routes) = mpsc::channel(16);
        let cfg = SpeakerConfig {
            listen: None,
            ..SpeakerConfig::new(64512, v4("198.18.0.1"))
        };
        let (mut core, _) = Core::new(cfg, routes).await.expect("core");
        let _a = fake_client(&mut core, "198.18.0.2");
        let id = core.peers[&IpAddr::V4(v4("198.18.0.2"))].id;
        let (tx, mut rx) = mpsc::channel(2 * MAX_EVENTS_PER_ROUND);
        for i in 0..2 * MAX_EVENTS_PER_ROUND as u32 {
            tx.try_send((id, SessionEvent::Update(client_route(i, v4("198.18.0.2")))))
                .expect("room");
        }
        let (id, first) = rx.try_recv().expect("event");
        core.on_events(id, first, &mut rx);
        assert_eq!(
            rx.len(),
            MAX_EVENTS_PER_ROUND,
            "the rest waits for the next round"
        );
    }

    #[tokio::test]
    async fn a_peer_that_does_not_keep_up_costs_a_prefix_set_and_delays_nobody() {
        let (routes, _routes) = mpsc::channel(16);
        let cfg = SpeakerConfig {
            listen: None,
            ..SpeakerConfig::new(64512, v4("198.18.0.1"))
        };
        let (mut core, _) = Core::new(cfg, routes).await.expect("core");
        let mut slow = fake_peer(&mut core, "198.18.0.2");
        let mut fast = fake_peer(&mut core, "198.18.0.3");
        let slow_addr = IpAddr::V4(v4("198.18.0.2"));
        core.peers[&slow_addr]
            .session
            .batches_queued
            .store(MAX_BATCHES_IN_FLIGHT, Ordering::Relaxed);

        let prefixes: Vec<IpNet> = (1..=3)
            .map(|i| format!("198.19.{i}.0/24").parse().expect("prefix"))
            .collect();
        for p in &prefixes {
            core.on_request(Request::Originate(*p, None, Default::default()));
        }
        assert_eq!(
            announced(&mut fast),
            prefixes,
            "the other peer is not held up"
        );
        assert!(
            announced(&mut slow).is_empty(),
            "nothing queued past the limit"
        );
        assert_eq!(core.peers[&slow_addr].pending.len(), 3);
        assert!(core.has_backlog());

        // More churn while it is stuck costs nothing more than the set of prefixes.
        core.on_request(Request::Withdraw(prefixes[0]));
        core.on_request(Request::Originate(prefixes[0], None, Default::default()));
        core.on_request(Request::Withdraw(prefixes[0]));
        assert_eq!(core.peers[&slow_addr].pending.len(), 3);

        // Once it has read its batches it gets the state as it is now, and nothing about the
        // prefix that came and went.
        core.peers[&slow_addr]
            .session
            .batches_queued
            .store(0, Ordering::Relaxed);
        core.flush_all();
        assert_eq!(announced(&mut slow), prefixes[1..].to_vec());
        assert_eq!(
            core.peers[&slow_addr]
                .session
                .batches_queued
                .load(Ordering::Relaxed),
            1
        );
        assert!(!core.has_backlog());
    }

    /// What a peer is sent for an originated prefix carries its communities, and originating
    /// it again with others sends the new ones (the same ones again send nothing).
    #[tokio::test]
    async fn originated_prefixes_carry_their_communities() {
        let (routes, _routes) = mpsc::channel(16);
        let cfg = SpeakerConfig {
            listen: None,
            ..SpeakerConfig::new(64512, v4("198.18.0.1"))
        };
        let (mut core, _) = Core::new(cfg, routes).await.expect("core");
        let mut rx = fake_peer(&mut core, "198.18.0.2");
        let prefix: IpNet = "198.19.30.0/24".parse().expect("prefix");
        let large = |a, b, c| crate::wire::LargeCommunity {
            global_admin: a,
            local_data_1: b,
            local_data_2: c,
        };
        let originate = |core: &mut Core, standard: Vec<u32>, large| {
            let communities = super::super::Communities { standard, large }.normalized();
            core.on_request(Request::Originate(prefix, None, communities));
        };
        let mut held = BTreeMap::new();

        originate(
            &mut core,
            vec![65001 << 16 | 100, 65000 << 16 | 1, 65001 << 16 | 100],
            vec![large(65001, 7, 9)],
        );
        replay(&mut rx, &mut held);
        let sent = held.get(&prefix).expect("announced");
        assert_eq!(sent.communities, [65000 << 16 | 1, 65001 << 16 | 100]);
        assert_eq!(sent.large_communities, [large(65001, 7, 9)]);

        // The same set in another order: nothing to send.
        originate(
            &mut core,
            vec![65001 << 16 | 100, 65000 << 16 | 1],
            vec![large(65001, 7, 9)],
        );
        assert!(announced(&mut rx).is_empty());

        originate(&mut core, vec![65001 << 16 | 200], vec![]);
        replay(&mut rx, &mut held);
        let sent = held.get(&prefix).expect("announced");
        assert_eq!(sent.communities, [65001 << 16 | 200]);
        assert!(sent.large_communities.is_empty());
    }

    /// A change of how often our AS may be in a peer's paths asks the peer for its routes
    /// again (they were refused or accepted under the old allowance), without a restart.
    #[tokio::test]
    async fn a_changed_local_as_allowance_refreshes_the_peers_routes() {
        let (routes, _routes) = mpsc::channel(16);
        let cfg = SpeakerConfig {
            listen: None,
            ..SpeakerConfig::new(64512, v4("198.18.0.1"))
        };
        let (mut core, _) = Core::new(cfg, routes).await.expect("core");
        let mut rx = fake_peer(&mut core, "198.18.0.2");
        let address = IpAddr::V4(v4("198.18.0.2"));
        let id = core.peers[&address].id;
        let mut settings = core.peers[&address].settings.clone();
        settings.allow_local_as = 1;
        core.set_peer(settings).expect("set peer");
        let mut refreshed = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::RouteRefresh(family) => refreshed.push(family),
                Command::Shutdown => panic!("the session was restarted"),
                _ => {}
            }
        }
        assert_eq!(refreshed, [Family::IPV4_UNICAST]);
        assert_eq!(core.peers[&address].id, id, "the same session");
        assert_eq!(core.rib.peer(id).map(|p| p.allow_local_as), Some(1));
    }
}
