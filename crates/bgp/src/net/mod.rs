//! The first, thin I/O layer: one task drives one [`Session`] over TCP with tokio.
//!
//! Reader tasks only cut the byte stream into messages; the session task decodes each with the
//! context negotiated so far (so an UPDATE right behind the KEEPALIVE that completes the OPEN
//! exchange is already read with the session's 4-octet AS and ADD-PATH settings), feeds the
//! state machine, and carries out its actions. [`listener`] accepts connections for every peer
//! on one socket and hands each to its session. Outbound connections can be signed with
//! TCP-MD5, bound to a source address and with the TTL of its packets set ([`TcpOptions`]; a
//! listener's keys are set on its socket with [`calico_tcpmd5::set_key`]). Events go to the
//! owner on a bounded queue ([`EVENT_QUEUE`]): an owner that falls behind makes this session
//! wait, and its peer's UPDATEs wait in TCP. A peer that stops reading blocks this session's
//! writes, and with them its timers; a write therefore ends at the hold timer's expiry, which
//! then counts as the hold timer running out (the peer has not been heard from meanwhile, as
//! far as this session could tell), so such a peer is dropped within its hold time
//! ([`crate::speaker`] never queues more than a few batches for it).

pub mod listener;

use std::collections::HashMap;
use std::net::SocketAddr;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::session::{
    Action, ConfigError, ConnId, Event, Negotiated, PeerConfig, Reason, Session, Stale, State,
    Timer,
};
use crate::wire::{self, Context, DecodeError, Family, Message, Nlri, Notification, Update};

/// What the session reports to its owner.
// UPDATEs unboxed, as in `wire::Message`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    Up(Negotiated),
    Down {
        reason: Reason,
        stale: Option<Stale>,
    },
    Update(Update),
    Withdraw(Vec<Nlri>),
    EndOfRib(Family),
    StaleExpired(Vec<Family>),
    RouteRefresh(Family),
    /// A message could not be encoded for this session (an UPDATE larger than the peer
    /// takes); it was not sent.
    NotSent(wire::EncodeError),
    /// An outbound socket could not be set up as configured (TCP-MD5 key, source address,
    /// TTL): the attempt counts as a failed connect; or an accepted connection could not be
    /// given the TTL: it is dropped.
    SocketSetup(String),
}

/// How outbound connections are made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// TCP-MD5 key (RFC 2385, 1 to 80 bytes) for the peer's address.
    pub md5_key: Option<Vec<u8>>,
    /// Source address of our connections (port chosen by the kernel).
    pub local_addr: Option<std::net::IpAddr>,
    /// TTL (IPv4) or hop limit (IPv6) of every packet of the session, set before an outbound
    /// SYN and on an accepted connection before anything is written; `None`: the system
    /// default. 1 keeps a session to directly connected peers (BIRD's eBGP default).
    pub ttl: Option<u8>,
}

/// Sets the TTL (IPv4) or unicast hop limit (IPv6) of `socket`.
fn set_ttl(socket: &impl std::os::fd::AsFd, ipv6: bool, ttl: u8) -> nix::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let ttl = i32::from(ttl);
    if ipv6 {
        setsockopt(socket, sockopt::Ipv6Ttl, &ttl)
    } else {
        setsockopt(socket, sockopt::Ipv4Ttl, &ttl)
    }
}

async fn connect(remote: SocketAddr, tcp: &TcpOptions) -> Result<TcpStream, NetIn> {
    let setup = |what: &str, e: &dyn std::fmt::Display| {
        NetIn::ConnectFailed(Some(format!("{what} for {remote}: {e}")))
    };
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| setup("socket", &e))?;
    if let Some(key) = &tcp.md5_key {
        calico_tcpmd5::set_key(&socket, remote.ip(), key).map_err(|e| setup("TCP-MD5", &e))?;
    }
    if let Some(local) = tcp.local_addr {
        socket
            .bind(SocketAddr::new(local, 0))
            .map_err(|e| setup("source address", &e))?;
    }
    if let Some(ttl) = tcp.ttl {
        set_ttl(&socket, remote.is_ipv6(), ttl).map_err(|e| setup("TTL", &e))?;
    }
    socket
        .connect(remote)
        .await
        .map_err(|e| NetIn::ConnectFailed(Some(format!("connect failed: {e}"))))
}

/// Free room a connection's reader keeps for each read (a full standard message is 4,096).
const READ_ROOM: usize = 16 * 1024;

/// How many session events may wait for the owner; beyond that the session task waits, and
/// with it reading from this peer (its UPDATEs then wait in TCP, not in our memory).
pub const EVENT_QUEUE: usize = 16;

enum Written {
    Done,
    /// The connection failed.
    Failed,
    /// Not all written by the deadline.
    Late,
}

/// Writes `bytes`, giving up at `deadline` (none: no limit).
async fn write_before(
    writer: &mut OwnedWriteHalf,
    bytes: &[u8],
    deadline: Option<Instant>,
) -> Written {
    let write = writer.write_all(bytes);
    let result = match deadline {
        Some(at) => match tokio::time::timeout_at(at, write).await {
            Ok(r) => r,
            Err(_) => return Written::Late,
        },
        None => write.await,
    };
    match result {
        Ok(()) => Written::Done,
        Err(_) => Written::Failed,
    }
}

/// How long a NOTIFICATION may take to write before the connection is closed anyway.
const NOTIFICATION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Most octets of a batch of UPDATEs written at once.
const BATCH_WRITE: usize = 64 * 1024;

/// The session's state as its owner can see it at any time, without an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub state: State,
    /// When the session entered `state`.
    pub since: std::time::SystemTime,
    /// Our end of the established connection (the address a peer is sent as next hop).
    pub local: Option<SocketAddr>,
}

/// What the owner asks of the session.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send an UPDATE on the established session (dropped when there is none).
    Send(Update),
    /// Send these UPDATEs in order on the established session (dropped when there is none);
    /// [`SessionHandle::batches_queued`] goes down by one once they are written or dropped.
    SendBatch(Vec<Update>),
    /// Pack these Adj-RIB-Out changes into UPDATEs for the established session
    /// ([`crate::rib::pack`] with its negotiated context) and send them as one batch, as
    /// [`Command::SendBatch`] does: packing and encoding then run on the session's task, beside
    /// the RIB task rather than on it.
    SendChanges(Vec<crate::rib::OutChange>),
    /// Ask the peer to send its routes of this family again (RFC 2918).
    RouteRefresh(Family),
    Start,
    Stop,
    /// How many prefixes of `family` the peer has in the owner's Adj-RIB-In now; above the
    /// configured `max_prefixes` the session is reset with Cease 6/1 ([`Event::PrefixCount`]).
    PrefixCount {
        family: Family,
        count: usize,
    },
    /// Stop and end the task.
    Shutdown,
}

pub struct SessionHandle {
    /// Bounded ([`EVENT_QUEUE`]): an owner that falls behind slows this peer only.
    pub events: mpsc::Receiver<SessionEvent>,
    pub commands: mpsc::UnboundedSender<Command>,
    /// Connections the peer opened to us, accepted by the caller's listener.
    pub inbound: mpsc::UnboundedSender<TcpStream>,
    pub task: JoinHandle<()>,
    pub info: watch::Receiver<SessionInfo>,
    /// [`Command::SendBatch`] batches not yet written: the owner adds one per batch it sends
    /// and can hold back further ones while a slow peer has many outstanding.
    pub batches_queued: Arc<AtomicUsize>,
}

enum NetIn {
    Frame(Vec<u8>),
    FrameError(Notification),
    Closed,
    Connected(TcpStream),
    /// With the reason (the socket could not be set up as configured, or the connect failed:
    /// refused, unreachable), for the peer's status.
    ConnectFailed(Option<String>),
}

struct ConnIo {
    writer: OwnedWriteHalf,
    reader: JoinHandle<()>,
    decode: Context,
    encode: Context,
}

/// Starts a task running a session with the peer at `remote` (started at once).
pub fn spawn(cfg: PeerConfig, remote: SocketAddr) -> Result<SessionHandle, ConfigError> {
    spawn_with(cfg, remote, TcpOptions::default())
}

/// Like [`spawn`], with outbound connections made as `tcp` says.
pub fn spawn_with(
    cfg: PeerConfig,
    remote: SocketAddr,
    tcp: TcpOptions,
) -> Result<SessionHandle, ConfigError> {
    let session = Session::new(cfg)?;
    let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (inbound, inbound_rx) = mpsc::unbounded_channel();
    let (info_tx, info) = watch::channel(SessionInfo {
        state: session.state(),
        since: std::time::SystemTime::now(),
        local: None,
    });
    let batches_queued = Arc::new(AtomicUsize::new(0));
    let outputs = Outputs {
        events: event_tx,
        info: info_tx,
        batches_queued: Arc::clone(&batches_queued),
    };
    let task = tokio::spawn(run(session, remote, tcp, outputs, command_rx, inbound_rx));
    Ok(SessionHandle {
        events,
        commands,
        inbound,
        task,
        info,
        batches_queued,
    })
}

/// Where the session task reports to.
struct Outputs {
    events: mpsc::Sender<SessionEvent>,
    info: watch::Sender<SessionInfo>,
    batches_queued: Arc<AtomicUsize>,
}

struct Driver {
    session: Session,
    remote: SocketAddr,
    tcp: std::sync::Arc<TcpOptions>,
    events: mpsc::Sender<SessionEvent>,
    info: watch::Sender<SessionInfo>,
    batches_queued: Arc<AtomicUsize>,
    /// Bounded: a peer sending faster than its session task decodes waits in TCP, not in
    /// our memory.
    net_tx: mpsc::Sender<(ConnId, NetIn)>,
    conns: HashMap<ConnId, ConnIo>,
    timers: HashMap<Timer, Instant>,
    connect: Option<(ConnId, JoinHandle<()>)>,
    next_id: ConnId,
    established: Option<ConnId>,
}

async fn run(
    session: Session,
    remote: SocketAddr,
    tcp: TcpOptions,
    outputs: Outputs,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut inbound: mpsc::UnboundedReceiver<TcpStream>,
) {
    let (net_tx, mut net_rx) = mpsc::channel(64);
    let mut d = Driver {
        session,
        remote,
        tcp: std::sync::Arc::new(tcp),
        events: outputs.events,
        info: outputs.info,
        batches_queued: outputs.batches_queued,
        net_tx,
        conns: HashMap::new(),
        timers: HashMap::new(),
        connect: None,
        next_id: 1,
        established: None,
    };
    d.feed(Event::Start).await;
    loop {
        let next_timer = d.timers.values().min().copied();
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Send(u)) => {
                    if let Some(id) = d.established {
                        d.send(id, Message::Update(u)).await;
                    }
                }
                Some(Command::SendBatch(updates)) => d.send_queued(|_| updates).await,
                Some(Command::SendChanges(changes)) => {
                    d.send_queued(|ctx| crate::rib::pack(&changes, ctx).updates)
                        .await
                }
                Some(Command::RouteRefresh(family)) => {
                    if let Some(id) = d.established {
                        let request = Message::RouteRefresh(wire::RouteRefresh { family, subtype: 0 });
                        if d.send(id, request).await.is_some() {
                            d.feed(Event::Closed { conn: id }).await;
                        }
                    }
                }
                Some(Command::Start) => d.feed(Event::Start).await,
                Some(Command::Stop) => d.feed(Event::Stop).await,
                Some(Command::PrefixCount { family, count }) => {
                    d.feed(Event::PrefixCount { family, count }).await
                }
                Some(Command::Shutdown) | None => {
                    d.feed(Event::Stop).await;
                    break;
                }
            },
            Some(stream) = inbound.recv() => {
                // An accepted connection carries the listener's TTL until set here, before
                // our OPEN. A socket that refuses it is dropped, as a failed connect would be.
                if let Some(ttl) = d.tcp.ttl
                    && let Err(e) = set_ttl(&stream, remote.is_ipv6(), ttl)
                {
                    d.report(SessionEvent::SocketSetup(format!("TTL for {remote}: {e}"))).await;
                    continue;
                }
                let id = d.attach(stream);
                d.feed(Event::Connected { conn: id, inbound: true }).await;
            }
            Some((id, input)) = net_rx.recv() => d.on_net(id, input).await,
            _ = sleep_until(next_timer), if next_timer.is_some() => {
                let now = Instant::now();
                let due: Vec<Timer> = d.timers.iter().filter(|(_, at)| **at <= now).map(|(t, _)| *t).collect();
                for t in due {
                    d.timers.remove(&t);
                    d.feed(Event::TimerExpired(t)).await;
                }
            }
        }
    }
    for (_, c) in d.conns.drain() {
        c.reader.abort();
    }
    if let Some((_, task)) = d.connect.take() {
        task.abort();
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// The session's state machine works with std time; tokio's `Instant` converts both ways.
fn std_now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    fn attach(&mut self, stream: TcpStream) -> ConnId {
        let id = self.next_id;
        self.next_id += 1;
        let (mut read, writer) = stream.into_split();
        let tx = self.net_tx.clone();
        let reader = tokio::spawn(async move {
            // Framing only; decoding happens in the session task with the current context.
            let framing = Context {
                extended_message: true,
                ..Context::default()
            };
            // Read straight into the framing buffer: a session costs its buffer alone (a
            // second, fixed read chunk per connection added up with a hundred peers), which
            // grows for a burst and is given back once drained.
            let mut buf: Vec<u8> = Vec::with_capacity(READ_ROOM);
            loop {
                if buf.is_empty() && buf.capacity() > 4 * READ_ROOM {
                    buf = Vec::with_capacity(READ_ROOM);
                }
                buf.reserve(READ_ROOM);
                match read.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send((id, NetIn::Closed)).await;
                        return;
                    }
                    Ok(_) => {}
                }
                loop {
                    match wire::frame(&buf, &framing) {
                        Ok(Some(len)) => {
                            let msg: Vec<u8> = buf.drain(..len).collect();
                            if tx.send((id, NetIn::Frame(msg))).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(n) => {
                            let _ = tx.send((id, NetIn::FrameError(n))).await;
                            return;
                        }
                    }
                }
            }
        });
        self.conns.insert(
            id,
            ConnIo {
                writer,
                reader,
                decode: Context::default(),
                encode: Context::default(),
            },
        );
        id
    }

    async fn on_net(&mut self, id: ConnId, input: NetIn) {
        match input {
            NetIn::Frame(bytes) => {
                let Some(ctx) = self.conns.get(&id).map(|c| c.decode.clone()) else {
                    return;
                };
                let event = match wire::decode(&bytes, &ctx) {
                    Ok(d) => Event::Message {
                        conn: id,
                        message: d.message,
                    },
                    Err(error) => Event::Malformed { conn: id, error },
                };
                self.feed(event).await;
            }
            NetIn::FrameError(n) => {
                self.feed(Event::Malformed {
                    conn: id,
                    error: DecodeError::Reset(n),
                })
                .await;
            }
            NetIn::Closed => {
                if self.conns.contains_key(&id) {
                    self.feed(Event::Closed { conn: id }).await;
                }
            }
            NetIn::Connected(stream) => {
                // Only the attempt still wanted counts.
                if self.connect.as_ref().is_some_and(|(c, _)| *c == id) {
                    self.connect = None;
                    let conn = self.attach(stream);
                    self.feed(Event::Connected {
                        conn,
                        inbound: false,
                    })
                    .await;
                }
            }
            NetIn::ConnectFailed(setup_error) => {
                if self.connect.as_ref().is_some_and(|(c, _)| *c == id) {
                    self.connect = None;
                    if let Some(e) = setup_error {
                        self.report(SessionEvent::SocketSetup(e)).await;
                    }
                    self.feed(Event::ConnectFailed).await;
                }
            }
        }
    }

    /// Feeds one event and carries out the actions, including those that follow from them
    /// (a failed write closes the connection).
    async fn feed(&mut self, event: Event) {
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            let actions = self.session.handle(event, std_now());
            for action in actions {
                if let Some(follow) = self.act(action).await {
                    pending.push(follow);
                }
            }
        }
        let state = self.session.state();
        self.info.send_if_modified(|info| {
            if info.state == state {
                return false;
            }
            info.state = state;
            info.since = std::time::SystemTime::now();
            if state != State::Established {
                info.local = None;
            }
            true
        });
    }

    /// Waits while the owner's queue is full; an owner that is gone is ignored.
    async fn report(&self, event: SessionEvent) {
        let _ = self.events.send(event).await;
    }

    async fn send(&mut self, id: ConnId, message: Message) -> Option<Event> {
        let c = self.conns.get(&id)?;
        let bytes = match message.to_bytes(&c.encode) {
            Ok(b) => b,
            Err(e) => {
                self.report(SessionEvent::NotSent(e)).await;
                return None;
            }
        };
        // A NOTIFICATION precedes a close: it gets a moment, never longer (the peer may be
        // the one that stopped reading).
        let notification = matches!(message, Message::Notification(_));
        let deadline = if notification {
            Some(Instant::now() + NOTIFICATION_WAIT)
        } else {
            self.hold_deadline(id)
        };
        let c = self.conns.get_mut(&id)?;
        match write_before(&mut c.writer, &bytes, deadline).await {
            Written::Done => None,
            Written::Late if !notification => self.hold_expired(id),
            Written::Failed | Written::Late => Some(Event::Closed { conn: id }),
        }
    }

    /// When a write to `id` must have finished: the hold timer's expiry, if it runs.
    fn hold_deadline(&self, id: ConnId) -> Option<Instant> {
        self.timers.get(&Timer::Hold(id)).copied()
    }

    /// A write did not finish before the hold timer's expiry: the timer runs out now.
    fn hold_expired(&mut self, id: ConnId) -> Option<Event> {
        self.timers.remove(&Timer::Hold(id));
        Some(Event::TimerExpired(Timer::Hold(id)))
    }

    /// One queued batch: the UPDATEs `make` builds for the established connection's encoding
    /// context are written (dropped when there is none), and the batch leaves the count.
    async fn send_queued(&mut self, make: impl FnOnce(&Context) -> Vec<Update>) {
        if let Some(id) = self.established
            && let Some(c) = self.conns.get(&id)
        {
            let updates = make(&c.encode);
            if let Some(closed) = self.send_batch(id, updates).await {
                // The write failed: the connection is gone.
                self.feed(closed).await;
            }
        }
        self.batches_queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// Writes `updates` in order, encoded into buffers of up to [`BATCH_WRITE`] octets: one
    /// write per buffer rather than per message (a reflector sends thousands of one-prefix
    /// UPDATEs to each client). One that cannot be encoded is reported and left out.
    async fn send_batch(&mut self, id: ConnId, updates: Vec<Update>) -> Option<Event> {
        let mut not_sent = Vec::new();
        let mut closed = None;
        let deadline = self.hold_deadline(id);
        let mut late = false;
        if let Some(c) = self.conns.get_mut(&id) {
            let mut buf = Vec::with_capacity(BATCH_WRITE.min(updates.len() * 64));
            let last = updates.len();
            for (i, u) in updates.into_iter().enumerate() {
                if let Err(e) = wire::encode(&Message::Update(u), &c.encode, &mut buf) {
                    not_sent.push(e);
                }
                if (buf.len() >= BATCH_WRITE || i + 1 == last) && !buf.is_empty() {
                    match write_before(&mut c.writer, &buf, deadline).await {
                        Written::Done => {}
                        Written::Failed => {
                            closed = Some(Event::Closed { conn: id });
                            break;
                        }
                        Written::Late => {
                            late = true;
                            break;
                        }
                    }
                    buf.clear();
                }
            }
        }
        if late {
            closed = self.hold_expired(id);
        }
        for e in not_sent {
            self.report(SessionEvent::NotSent(e)).await;
        }
        closed
    }

    async fn act(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Connect => {
                if let Some((_, task)) = self.connect.take() {
                    task.abort();
                }
                let attempt = self.next_id;
                self.next_id += 1;
                let tx = self.net_tx.clone();
                let remote = self.remote;
                let tcp = std::sync::Arc::clone(&self.tcp);
                let task = tokio::spawn(async move {
                    let input = match connect(remote, &tcp).await {
                        Ok(s) => NetIn::Connected(s),
                        Err(failed) => failed,
                    };
                    let _ = tx.send((attempt, input)).await;
                });
                self.connect = Some((attempt, task));
            }
            Action::AbortConnect => {
                if let Some((_, task)) = self.connect.take() {
                    task.abort();
                }
            }
            Action::Send { conn, message } => return self.send(conn, message).await,
            Action::Close { conn, .. } => {
                if let Some(mut c) = self.conns.remove(&conn) {
                    c.reader.abort();
                    let _ = c.writer.shutdown().await;
                }
                if self.established == Some(conn) {
                    self.established = None;
                }
            }
            Action::ArmTimer { timer, at } => {
                self.timers.insert(timer, Instant::from_std(at));
            }
            Action::CancelTimer(timer) => {
                self.timers.remove(&timer);
            }
            Action::Up { conn, negotiated } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.decode = negotiated.decode.clone();
                    c.encode = negotiated.encode.clone();
                }
                self.established = Some(conn);
                let local = self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.writer.local_addr().ok());
                self.info.send_modify(|info| info.local = local);
                self.report(SessionEvent::Up(negotiated)).await;
            }
            Action::Down { reason, stale } => {
                self.established = None;
                self.report(SessionEvent::Down { reason, stale }).await;
            }
            Action::Received(u) => {
                self.report(SessionEvent::Update(u)).await;
            }
            Action::Withdraw(w) => {
                self.report(SessionEvent::Withdraw(w)).await;
            }
            Action::RouteRefresh(f) => {
                self.report(SessionEvent::RouteRefresh(f)).await;
            }
            Action::EndOfRib(f) => {
                self.report(SessionEvent::EndOfRib(f)).await;
            }
            Action::StaleExpired(f) => {
                self.report(SessionEvent::StaleExpired(f)).await;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::socket::{getsockopt, sockopt};

    use super::set_ttl;

    #[test]
    fn ttl_and_hop_limit_are_set_on_the_socket() {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").expect("IPv4 socket");
        set_ttl(&v4, false, 1).expect("IP_TTL");
        assert_eq!(getsockopt(&v4, sockopt::Ipv4Ttl).expect("get IP_TTL"), 1);
        set_ttl(&v4, false, 255).expect("IP_TTL");
        assert_eq!(getsockopt(&v4, sockopt::Ipv4Ttl).expect("get IP_TTL"), 255);
        // Hosts without IPv6 (a disabled stack) skip the second half.
        if let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") {
            set_ttl(&v6, true, 2).expect("IPV6_UNICAST_HOPS");
            assert_eq!(
                getsockopt(&v6, sockopt::Ipv6Ttl).expect("get IPV6_UNICAST_HOPS"),
                2
            );
        }
    }
}
