//! The BGP finite state machine for one peer (RFC 4271 §8), free of I/O.
//!
//! The driver feeds [`Event`]s with the current time into [`Session::handle`] and carries out
//! the [`Action`]s it returns: open or abort the outbound connection, send a message on a
//! connection, close one, arm or cancel a timer (as an absolute deadline), and pass session
//! and route changes to the RIB. Up to two connections may exist at once (one each way) until
//! connection collision detection (RFC 4271 §6.8) picks one.

mod config;
mod negotiate;

use std::time::{Duration, Instant};

pub use config::{ConfigError, GracefulRestartConfig, PeerConfig};
pub use negotiate::{Negotiated, negotiate};

use crate::wire::{DecodeError, Family, Message, Nlri, Notification, Update, code};

/// Names one TCP connection; the driver chooses the numbers.
pub type ConnId = u64;

/// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    IdleHold,
    Hold(ConnId),
    Keepalive(ConnId),
    /// Graceful restart helper: how long a restarting peer's stale routes are kept.
    Stale,
}

// Carries UPDATEs unboxed, as `Message` does (see there).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Administrative start (or automatic start of a configured peer).
    Start,
    /// Administrative stop: NOTIFICATION Cease, no automatic restart.
    Stop,
    /// End the session now with this NOTIFICATION (say Cease/administrative reset after a
    /// configuration change); it starts again after the idle hold.
    Reset(Notification),
    /// How many prefixes of `family` the peer has in our Adj-RIB-In now; above the
    /// configured maximum the session is reset with Cease 6/1 (RFC 4486).
    PrefixCount {
        family: Family,
        count: usize,
    },
    /// A TCP connection is up: our outbound attempt succeeded, or the peer connected to us.
    Connected {
        conn: ConnId,
        inbound: bool,
    },
    /// Our outbound attempt failed.
    ConnectFailed,
    /// The peer closed or reset the connection.
    Closed {
        conn: ConnId,
    },
    Message {
        conn: ConnId,
        message: Message,
    },
    /// A message on this connection could not be decoded as it was.
    Malformed {
        conn: ConnId,
        error: DecodeError,
    },
    TimerExpired(Timer),
}

/// Why a connection or session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Stopped,
    ConnectionClosed,
    ConnectFailed,
    HoldTimerExpired,
    /// The peer opened a new connection while we held an established one with graceful
    /// restart: it restarted (RFC 4724 §4.2).
    PeerRestarted,
    /// Refused: the peer is stopped, in idle hold, or already connected.
    Refused,
    /// Lost connection collision detection.
    Collision,
    Sent(Notification),
    Received(Notification),
}

/// Graceful restart helper mode: keep the peer's routes of these families as stale for up to
/// `restart_time` seconds, or until its End-of-RIB after it comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    pub restart_time: u16,
    pub families: Vec<Family>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open an outbound TCP connection (replacing any attempt still in progress).
    Connect,
    /// Give up the outbound attempt in progress.
    AbortConnect,
    Send {
        conn: ConnId,
        message: Message,
    },
    Close {
        conn: ConnId,
        reason: Reason,
    },
    ArmTimer {
        timer: Timer,
        at: Instant,
    },
    CancelTimer(Timer),
    /// The session is Established; decode and encode with the negotiated contexts from now on.
    Up {
        conn: ConnId,
        negotiated: Negotiated,
    },
    /// The session left Established. With `stale`, keep its routes as stale (RFC 4724);
    /// otherwise withdraw them all.
    Down {
        reason: Reason,
        stale: Option<Stale>,
    },
    /// An UPDATE received in Established, for the RIB.
    Received(Update),
    /// RFC 7606 treat-as-withdraw: withdraw these prefixes.
    Withdraw(Vec<Nlri>),
    /// The peer asks us to re-send our routes of this family (RFC 2918).
    RouteRefresh(Family),
    /// The peer's End-of-RIB for this family: its initial routes are complete, and its stale
    /// routes of the family that were not refreshed go (RFC 4724 §4.2).
    EndOfRib(Family),
    /// Drop the peer's remaining stale routes of these families: the restart or stale time
    /// ran out, or the restarted peer did not keep their forwarding state.
    StaleExpired(Vec<Family>),
}

#[derive(Clone, Debug)]
struct Conn {
    id: ConnId,
    inbound: bool,
    state: State,
    negotiated: Option<Negotiated>,
}

/// One peer's session.
#[derive(Debug)]
pub struct Session {
    cfg: PeerConfig,
    enabled: bool,
    in_idle_hold: bool,
    connecting: bool,
    conns: Vec<Conn>,
    connect_retries: u32,
    failures: u32,
    established_at: Option<Instant>,
    last_error: Option<Reason>,
    /// Families whose routes from the peer are held as stale (graceful restart helper).
    stale: Vec<Family>,
    /// Capability codes the peer refused (NOTIFICATION 2/7), left out of later OPENs.
    refused_capabilities: Vec<u8>,
    /// The peer refused optional parameters altogether (2/4): send OPENs without any.
    no_optional_parameters: bool,
}

/// Drops the parts of an UPDATE for families the session did not negotiate: the peer should
/// not send them, and the RIB must not see them (RFC 4760 §6 leaves them to be ignored).
fn keep_negotiated_families(update: &mut Update, families: &[Family]) {
    if !families.contains(&Family::IPV4_UNICAST) {
        update.withdrawn.clear();
        update.nlri.clear();
    }
    if update
        .mp_reach
        .as_ref()
        .is_some_and(|mp| !families.contains(&mp.family))
    {
        update.mp_reach = None;
    }
    if update
        .mp_unreach
        .as_ref()
        .is_some_and(|mp| !families.contains(&mp.family))
    {
        update.mp_unreach = None;
    }
}

/// `base` doubled `n` times, at most `max`.
fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32 << n.min(16)).min(max)
}

fn cease(subcode: u8) -> Notification {
    Notification::new(code::CEASE, subcode, [])
}

impl Session {
    pub fn new(cfg: PeerConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Session {
            cfg,
            enabled: false,
            in_idle_hold: false,
            connecting: false,
            conns: Vec::new(),
            connect_retries: 0,
            failures: 0,
            established_at: None,
            last_error: None,
            stale: Vec::new(),
            refused_capabilities: Vec::new(),
            no_optional_parameters: false,
        })
    }

    pub fn config(&self) -> &PeerConfig {
        &self.cfg
    }

    /// The RFC 4271 state: the most advanced connection's, else Connect while an outbound
    /// attempt runs, Active while waiting for one, Idle when stopped or holding after an error.
    pub fn state(&self) -> State {
        if let Some(best) = self.conns.iter().map(|c| c.state).max() {
            return best;
        }
        if !self.enabled || self.in_idle_hold {
            State::Idle
        } else if self.connecting {
            State::Connect
        } else {
            State::Active
        }
    }

    /// The parameters of the established session.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.conns
            .iter()
            .find(|c| c.state == State::Established)
            .and_then(|c| c.negotiated.as_ref())
    }

    pub fn established_since(&self) -> Option<Instant> {
        self.established_at
    }

    pub fn last_error(&self) -> Option<&Reason> {
        self.last_error.as_ref()
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                if !self.enabled {
                    self.enabled = true;
                    self.begin(now, &mut out);
                }
            }
            Event::Stop => {
                if self.enabled {
                    self.enabled = false;
                    self.stop_all(now, &mut out);
                }
            }
            Event::Reset(n) => self.reset(n, now, &mut out),
            Event::PrefixCount { family, count } => {
                if let Some(limit) = self.cfg.max_prefixes
                    && count > limit as usize
                {
                    // Data: AFI, SAFI and the limit (RFC 4486 §4).
                    let mut data = family.afi.to_be_bytes().to_vec();
                    data.push(family.safi);
                    data.extend_from_slice(&limit.to_be_bytes());
                    self.reset(
                        Notification::new(code::CEASE, code::CEASE_MAX_PREFIXES, data),
                        now,
                        &mut out,
                    );
                }
            }
            Event::Connected { conn, inbound } => self.on_connected(conn, inbound, now, &mut out),
            Event::ConnectFailed => {
                if self.connecting {
                    // Connect -> Active; the connect-retry timer still runs.
                    self.connecting = false;
                    self.last_error = Some(Reason::ConnectFailed);
                }
            }
            Event::Closed { conn } => {
                if let Some(i) = self.index(conn) {
                    self.drop_conn(i, Reason::ConnectionClosed, None, now, &mut out);
                    self.after_drop(now, &mut out);
                }
            }
            Event::Message { conn, message } => {
                if let Some(i) = self.index(conn) {
                    self.on_message(i, message, now, &mut out);
                }
            }
            Event::Malformed { conn, error } => {
                if let Some(i) = self.index(conn) {
                    self.on_malformed(i, error, now, &mut out);
                }
            }
            Event::TimerExpired(timer) => self.on_timer(timer, now, &mut out),
        }
        out
    }

    /// The OPEN we send now: the configured one, less what the peer refused before
    /// (RFC 5492 §3: a speaker may retry without the capabilities a peer does not support).
    pub fn open(&self) -> crate::wire::Open {
        let mut open = self.cfg.open();
        if self.no_optional_parameters {
            open.capabilities.clear();
        } else {
            open.capabilities
                .retain(|c| !self.refused_capabilities.contains(&c.code()));
        }
        open
    }

    fn learn_refusal(&mut self, n: &Notification) {
        match (n.code, n.subcode) {
            (code::OPEN_MESSAGE, code::UNSUPPORTED_CAPABILITY) => {
                // The data lists the refused capabilities as code, length, value.
                let mut rest = n.data.as_slice();
                while let [cap, len, tail @ ..] = rest {
                    if !self.refused_capabilities.contains(cap) {
                        self.refused_capabilities.push(*cap);
                    }
                    rest = tail.get(usize::from(*len)..).unwrap_or_default();
                }
            }
            (code::OPEN_MESSAGE, code::UNSUPPORTED_OPTIONAL_PARAMETER) => {
                self.no_optional_parameters = true
            }
            _ => {}
        }
    }

    fn index(&self, conn: ConnId) -> Option<usize> {
        self.conns.iter().position(|c| c.id == conn)
    }

    /// Idle -> Connect (or Active for a passive peer).
    fn begin(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.in_idle_hold = false;
        if self.cfg.passive {
            return;
        }
        self.connecting = true;
        out.push(Action::Connect);
        let wait = backoff(
            self.cfg.connect_retry,
            self.cfg.connect_retry_max,
            self.connect_retries,
        );
        out.push(Action::ArmTimer {
            timer: Timer::ConnectRetry,
            at: now + wait,
        });
    }

    fn stop_all(&mut self, now: Instant, out: &mut Vec<Action>) {
        while !self.conns.is_empty() {
            self.drop_conn(
                0,
                Reason::Stopped,
                Some(cease(code::CEASE_ADMINISTRATIVE_SHUTDOWN)),
                now,
                out,
            );
        }
        if self.connecting {
            self.connecting = false;
            out.push(Action::AbortConnect);
        }
        out.push(Action::CancelTimer(Timer::ConnectRetry));
        out.push(Action::CancelTimer(Timer::IdleHold));
        if !self.stale.is_empty() {
            out.push(Action::StaleExpired(std::mem::take(&mut self.stale)));
            out.push(Action::CancelTimer(Timer::Stale));
        }
        self.in_idle_hold = false;
        self.connect_retries = 0;
        self.last_error = Some(Reason::Stopped);
    }

    /// Removes connection `i`, sending `notify` first. Reports the session down if it was the
    /// established one.
    fn drop_conn(
        &mut self,
        i: usize,
        reason: Reason,
        notify: Option<Notification>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let conn = self.conns.remove(i);
        if let Some(n) = notify {
            out.push(Action::Send {
                conn: conn.id,
                message: Message::Notification(n),
            });
        }
        out.push(Action::Close {
            conn: conn.id,
            reason: reason.clone(),
        });
        out.push(Action::CancelTimer(Timer::Hold(conn.id)));
        out.push(Action::CancelTimer(Timer::Keepalive(conn.id)));
        if conn.state == State::Established {
            if let Some(since) = self.established_at.take()
                && now.saturating_duration_since(since) >= self.cfg.error_forget
            {
                self.failures = 0;
            }
            // RFC 4724: only a transport failure (no NOTIFICATION) keeps routes as stale.
            let transport = matches!(reason, Reason::ConnectionClosed | Reason::PeerRestarted);
            let stale = conn.negotiated.as_ref().and_then(|n| {
                let gr = n.peer_graceful_restart.as_ref().filter(|_| transport)?;
                let families: Vec<Family> = gr
                    .families
                    .iter()
                    .map(|f| f.family)
                    .filter(|f| n.families.contains(f))
                    .collect();
                (!families.is_empty()).then_some(Stale {
                    restart_time: gr.restart_time,
                    families,
                })
            });
            match &stale {
                Some(st) => {
                    self.stale = st.families.clone();
                    let at = now + Duration::from_secs(st.restart_time.into());
                    out.push(Action::ArmTimer {
                        timer: Timer::Stale,
                        at,
                    });
                }
                None => {
                    // Everything from the peer goes now; nothing stays stale.
                    self.stale.clear();
                    out.push(Action::CancelTimer(Timer::Stale));
                }
            }
            out.push(Action::Down {
                reason: reason.clone(),
                stale,
            });
        }
        if reason != Reason::Collision {
            self.last_error = Some(reason);
        }
    }

    fn reset(&mut self, n: Notification, now: Instant, out: &mut Vec<Action>) {
        if self.conns.is_empty() {
            return;
        }
        while !self.conns.is_empty() {
            self.drop_conn(0, Reason::Sent(n.clone()), Some(n.clone()), now, out);
        }
        self.after_drop(now, out);
    }

    /// After a failure: with no connection left, wait in Idle (growing backoff), then start
    /// again.
    fn after_drop(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.conns.is_empty() || !self.enabled {
            return;
        }
        if self.connecting {
            self.connecting = false;
            out.push(Action::AbortConnect);
        }
        out.push(Action::CancelTimer(Timer::ConnectRetry));
        self.in_idle_hold = true;
        let wait = backoff(self.cfg.idle_hold, self.cfg.idle_hold_max, self.failures);
        self.failures = self.failures.saturating_add(1);
        out.push(Action::ArmTimer {
            timer: Timer::IdleHold,
            at: now + wait,
        });
    }

    fn on_connected(&mut self, id: ConnId, inbound: bool, now: Instant, out: &mut Vec<Action>) {
        if self.index(id).is_some() {
            // The driver reused a live connection's id; nothing sensible can be done with it.
            return;
        }
        if !self.enabled || self.in_idle_hold || (!inbound && !self.connecting) {
            out.push(Action::Close {
                conn: id,
                reason: Reason::Refused,
            });
            return;
        }
        if !inbound {
            self.connecting = false;
            out.push(Action::CancelTimer(Timer::ConnectRetry));
        }
        let established = self
            .conns
            .iter()
            .position(|c| c.state == State::Established);
        if let Some(e) = established {
            let restart = inbound
                && self.conns[e]
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.peer_graceful_restart.is_some());
            if !restart {
                // RFC 4271 §6.8: a collision with an established session closes the new one.
                out.push(Action::Send {
                    conn: id,
                    message: Message::Notification(cease(
                        code::CEASE_CONNECTION_COLLISION_RESOLUTION,
                    )),
                });
                out.push(Action::Close {
                    conn: id,
                    reason: Reason::Collision,
                });
                return;
            }
            // RFC 4724 §4.2: the peer restarted; the old session is gone.
            self.drop_conn(e, Reason::PeerRestarted, None, now, out);
        }
        if self.conns.len() >= 2 || self.conns.iter().any(|c| c.inbound == inbound) {
            out.push(Action::Close {
                conn: id,
                reason: Reason::Refused,
            });
            return;
        }
        self.conns.push(Conn {
            id,
            inbound,
            state: State::OpenSent,
            negotiated: None,
        });
        out.push(Action::Send {
            conn: id,
            message: Message::Open(self.open()),
        });
        out.push(Action::ArmTimer {
            timer: Timer::Hold(id),
            at: now + OPEN_HOLD_TIME,
        });
    }

    fn fsm_error(&mut self, i: usize, now: Instant, out: &mut Vec<Action>) {
        let subcode = match self.conns[i].state {
            State::OpenSent => code::FSM_UNEXPECTED_IN_OPEN_SENT,
            State::OpenConfirm => code::FSM_UNEXPECTED_IN_OPEN_CONFIRM,
            _ => code::FSM_UNEXPECTED_IN_ESTABLISHED,
        };
        let n = Notification::new(code::FSM, subcode, []);
        self.drop_conn(i, Reason::Sent(n.clone()), Some(n), now, out);
        self.after_drop(now, out);
    }

    fn rearm_hold(&self, i: usize, now: Instant, out: &mut Vec<Action>) {
        let c = &self.conns[i];
        if let Some(n) = c.negotiated.as_ref().filter(|n| n.hold_time > 0) {
            out.push(Action::ArmTimer {
                timer: Timer::Hold(c.id),
                at: now + Duration::from_secs(n.hold_time.into()),
            });
        }
    }

    fn on_message(&mut self, i: usize, message: Message, now: Instant, out: &mut Vec<Action>) {
        let state = self.conns[i].state;
        match (state, message) {
            (_, Message::Notification(n)) => {
                if state == State::OpenSent {
                    self.learn_refusal(&n);
                }
                self.drop_conn(i, Reason::Received(n), None, now, out);
                self.after_drop(now, out);
            }
            (State::OpenSent, Message::Open(open)) => self.on_open(i, &open, now, out),
            (State::OpenConfirm, Message::Keepalive) => self.establish(i, now, out),
            (State::Established, Message::Keepalive) => self.rearm_hold(i, now, out),
            (State::Established, Message::Update(mut update)) => {
                self.rearm_hold(i, now, out);
                let eor = update.end_of_rib_family();
                if let Some(n) = &self.conns[i].negotiated {
                    if eor.is_some_and(|f| !n.families.contains(&f)) {
                        return;
                    }
                    keep_negotiated_families(&mut update, &n.families);
                    // Nothing left that the RIB could use (and it must not look like End-of-RIB).
                    if eor.is_none() && update.all_prefixes().is_empty() {
                        return;
                    }
                }
                out.push(Action::Received(update));
                if let Some(family) = eor {
                    out.push(Action::EndOfRib(family));
                    let was_stale = !self.stale.is_empty();
                    self.stale.retain(|f| *f != family);
                    if was_stale && self.stale.is_empty() {
                        out.push(Action::CancelTimer(Timer::Stale));
                    }
                }
            }
            (State::Established, Message::RouteRefresh(rr)) => {
                self.rearm_hold(i, now, out);
                let negotiated = self.conns[i]
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.families.contains(&rr.family));
                // RFC 2918 §4: a family not negotiated is ignored; other subtypes belong to
                // enhanced route refresh, which we do not advertise.
                if negotiated && rr.subtype == 0 {
                    out.push(Action::RouteRefresh(rr.family));
                }
            }
            _ => self.fsm_error(i, now, out),
        }
    }

    fn on_open(&mut self, i: usize, open: &crate::wire::Open, now: Instant, out: &mut Vec<Action>) {
        let negotiated = match negotiate(&self.cfg, open) {
            Ok(n) => n,
            Err(n) => {
                self.drop_conn(i, Reason::Sent(n.clone()), Some(n), now, out);
                self.after_drop(now, out);
                return;
            }
        };
        let id = self.conns[i].id;
        // RFC 4271 §6.8: with another connection opening, the connection opened by the side
        // with the higher BGP identifier survives (keep the peer's if its identifier is higher,
        // else ours), so both ends keep the same one whichever OPEN arrives last. The rule is
        // applied to a connection still waiting for its OPEN too (OpenSent): this OPEN tells the
        // peer's identifier, which the RFC allows using there. Deciding only among connections
        // in OpenConfirm let one end establish a connection (the peer's KEEPALIVE arriving
        // before its OPEN on the other connection) that the other end then closed as the loser:
        // both connections died, and simultaneous retries collided again.
        if let Some(j) = self
            .conns
            .iter()
            .position(|c| c.id != id && matches!(c.state, State::OpenSent | State::OpenConfirm))
        {
            let keep_inbound = u32::from(self.cfg.local_id) < u32::from(open.bgp_id);
            let loser = if self.conns[i].inbound == keep_inbound {
                j
            } else {
                i
            };
            let loser_id = self.conns[loser].id;
            self.drop_conn(
                loser,
                Reason::Collision,
                Some(cease(code::CEASE_CONNECTION_COLLISION_RESOLUTION)),
                now,
                out,
            );
            if loser_id == id {
                return;
            }
        }
        let Some(i) = self.index(id) else { return };
        let conn = &mut self.conns[i];
        conn.state = State::OpenConfirm;
        out.push(Action::Send {
            conn: id,
            message: Message::Keepalive,
        });
        if negotiated.hold_time > 0 {
            out.push(Action::ArmTimer {
                timer: Timer::Hold(id),
                at: now + Duration::from_secs(negotiated.hold_time.into()),
            });
            out.push(Action::ArmTimer {
                timer: Timer::Keepalive(id),
                at: now + Duration::from_secs(negotiated.keepalive.into()),
            });
        } else {
            out.push(Action::CancelTimer(Timer::Hold(id)));
        }
        conn.negotiated = Some(negotiated);
    }

    fn establish(&mut self, i: usize, now: Instant, out: &mut Vec<Action>) {
        let id = self.conns[i].id;
        self.conns[i].state = State::Established;
        self.established_at = Some(now);
        self.connect_retries = 0;
        if self.connecting {
            self.connecting = false;
            out.push(Action::AbortConnect);
        }
        out.push(Action::CancelTimer(Timer::ConnectRetry));
        // RFC 4724 §3: the Restart State bit announces the restart just done; a later
        // reconnect of this session is no restart of ours.
        if let Some(gr) = self.cfg.graceful_restart.as_mut() {
            gr.restarting = false;
        }
        if let Some(negotiated) = self.conns[i].negotiated.clone() {
            out.push(Action::Up {
                conn: id,
                negotiated,
            });
        }
        self.rearm_hold(i, now, out);
        if !self.stale.is_empty() {
            // RFC 4724 §4.2: stale routes survive only for families the restarted peer lists
            // again with its forwarding state preserved; the rest wait for End-of-RIB.
            let kept: Vec<Family> = self.conns[i]
                .negotiated
                .as_ref()
                .and_then(|n| n.peer_graceful_restart.as_ref())
                .map(|gr| {
                    gr.families
                        .iter()
                        .filter(|f| f.forwarding_preserved && self.stale.contains(&f.family))
                        .map(|f| f.family)
                        .collect()
                })
                .unwrap_or_default();
            let expired: Vec<Family> = self
                .stale
                .iter()
                .copied()
                .filter(|f| !kept.contains(f))
                .collect();
            if !expired.is_empty() {
                out.push(Action::StaleExpired(expired));
            }
            self.stale = kept;
            if self.stale.is_empty() {
                out.push(Action::CancelTimer(Timer::Stale));
            } else {
                out.push(Action::ArmTimer {
                    timer: Timer::Stale,
                    at: now + self.cfg.stale_time,
                });
            }
        }
        // Any other connection still opening collides with this established one.
        while let Some(j) = self.conns.iter().position(|c| c.id != id) {
            self.drop_conn(
                j,
                Reason::Collision,
                Some(cease(code::CEASE_CONNECTION_COLLISION_RESOLUTION)),
                now,
                out,
            );
        }
    }

    fn on_malformed(&mut self, i: usize, error: DecodeError, now: Instant, out: &mut Vec<Action>) {
        match error {
            DecodeError::Reset(n) => {
                self.drop_conn(i, Reason::Sent(n.clone()), Some(n), now, out);
                self.after_drop(now, out);
            }
            DecodeError::TreatAsWithdraw { withdrawn, .. } => {
                if self.conns[i].state == State::Established {
                    self.rearm_hold(i, now, out);
                    out.push(Action::Withdraw(withdrawn));
                } else {
                    // An UPDATE before Established.
                    self.fsm_error(i, now, out);
                }
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Action>) {
        match timer {
            Timer::ConnectRetry => {
                let opened = self.conns.iter().any(|c| c.state >= State::OpenConfirm);
                if self.enabled && !self.in_idle_hold && !self.cfg.passive && !opened {
                    self.connect_retries = self.connect_retries.saturating_add(1);
                    self.begin(now, out);
                }
            }
            Timer::IdleHold => {
                if self.enabled && self.in_idle_hold {
                    self.begin(now, out);
                }
            }
            Timer::Hold(id) => {
                if let Some(i) = self.index(id) {
                    let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0, []);
                    self.drop_conn(i, Reason::HoldTimerExpired, Some(n), now, out);
                    self.after_drop(now, out);
                }
            }
            Timer::Stale => {
                if !self.stale.is_empty() {
                    out.push(Action::StaleExpired(std::mem::take(&mut self.stale)));
                }
            }
            Timer::Keepalive(id) => {
                if let Some(i) = self.index(id) {
                    let keepalive = self.conns[i].negotiated.as_ref().map_or(0, |n| n.keepalive);
                    if keepalive > 0 {
                        out.push(Action::Send {
                            conn: id,
                            message: Message::Keepalive,
                        });
                        out.push(Action::ArmTimer {
                            timer: Timer::Keepalive(id),
                            at: now + Duration::from_secs(keepalive.into()),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
