//! What one peering is configured with, and the OPEN that follows from it.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::{AddPathFamily, Capability, Family, GrFamily, GracefulRestart, Open};

/// One peer's parameters (the kind of settings Calico's BIRD template sets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub local_as: u32,
    pub local_id: Ipv4Addr,
    pub peer_as: u32,
    /// Never connect out; wait for the peer (BIRD's `passive on`).
    pub passive: bool,
    /// Hold time we offer: 0 (no keepalives) or at least 3 seconds.
    pub hold_time: u16,
    /// Seconds between our KEEPALIVEs; `None` (or anything longer) means a third of the
    /// negotiated hold time (BIRD's `keepalive time`).
    pub keepalive: Option<u16>,
    /// First wait between outbound connection attempts; doubles per attempt up to the max.
    pub connect_retry: Duration,
    pub connect_retry_max: Duration,
    /// First wait in Idle after a failure before starting again; doubles per failure up to
    /// the max (BIRD's `error wait time 5,30`).
    pub idle_hold: Duration,
    pub idle_hold_max: Duration,
    /// A session that stayed up this long resets the idle-hold backoff when it goes down
    /// (BIRD's `error forget time`).
    pub error_forget: Duration,
    /// Graceful restart helper: after a restarted peer is back, how long its stale routes
    /// wait for its End-of-RIB.
    pub stale_time: Duration,
    pub families: Vec<Family>,
    pub add_path: Vec<AddPathFamily>,
    pub graceful_restart: Option<GracefulRestartConfig>,
    pub route_refresh: bool,
    pub extended_message: bool,
    /// Most prefixes (per family) accepted from the peer before the session is reset.
    pub max_prefixes: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Seconds the peer should keep our routes while we restart (at most 4095).
    pub restart_time: u16,
    /// We are restarting now: set the R bit in our first OPEN.
    pub restarting: bool,
    /// Our forwarding state survived the restart (the F bit for every family).
    pub forwarding_preserved: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("hold time {0} s: must be 0 or at least 3")]
    HoldTime(u16),
    #[error("graceful restart time {0} s exceeds 4095")]
    RestartTime(u16),
    #[error("keepalive time must be at least 1 s")]
    Keepalive,
    #[error("no address family configured")]
    NoFamily,
    #[error("router id 0.0.0.0 is not valid")]
    RouterId,
    #[error("{0} must be between 1 ms and 1 day")]
    Timer(&'static str),
}

impl PeerConfig {
    /// A peer with Calico's usual timers: hold 90 s (keepalive 30 s), connect retry 5 s
    /// (capped at 60 s), idle hold 5 s growing to 30 s, error forget 300 s, stale time
    /// 360 s; IPv4 unicast,
    /// route refresh and extended messages on.
    pub fn new(local_as: u32, local_id: Ipv4Addr, peer_as: u32) -> Self {
        PeerConfig {
            local_as,
            local_id,
            peer_as,
            passive: false,
            hold_time: 90,
            keepalive: None,
            connect_retry: Duration::from_secs(5),
            connect_retry_max: Duration::from_secs(60),
            idle_hold: Duration::from_secs(5),
            idle_hold_max: Duration::from_secs(30),
            error_forget: Duration::from_secs(300),
            stale_time: Duration::from_secs(360),
            families: vec![Family::IPV4_UNICAST],
            add_path: Vec::new(),
            graceful_restart: None,
            route_refresh: true,
            extended_message: true,
            max_prefixes: None,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(ConfigError::HoldTime(self.hold_time));
        }
        if let Some(gr) = self.graceful_restart
            && gr.restart_time > 4095
        {
            return Err(ConfigError::RestartTime(gr.restart_time));
        }
        if self.keepalive == Some(0) {
            return Err(ConfigError::Keepalive);
        }
        if self.families.is_empty() {
            return Err(ConfigError::NoFamily);
        }
        if self.local_id.is_unspecified() {
            return Err(ConfigError::RouterId);
        }
        // Zero would spin; very long ones could overflow a deadline.
        for (name, d) in [
            ("connect_retry", self.connect_retry),
            ("connect_retry_max", self.connect_retry_max),
            ("idle_hold", self.idle_hold),
            ("idle_hold_max", self.idle_hold_max),
            ("error_forget", self.error_forget),
            ("stale_time", self.stale_time),
        ] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(86400) {
                return Err(ConfigError::Timer(name));
            }
        }
        Ok(())
    }

    pub fn is_ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }

    /// The OPEN this configuration sends.
    pub fn open(&self) -> Open {
        let mut caps: Vec<Capability> = self
            .families
            .iter()
            .map(|&f| Capability::Multiprotocol(f))
            .collect();
        if self.route_refresh {
            caps.push(Capability::RouteRefresh);
        }
        if self.extended_message {
            caps.push(Capability::ExtendedMessage);
        }
        if let Some(gr) = self.graceful_restart {
            caps.push(Capability::GracefulRestart(GracefulRestart {
                restarting: gr.restarting,
                notification: false,
                restart_time: gr.restart_time,
                families: self
                    .families
                    .iter()
                    .map(|&family| GrFamily {
                        family,
                        forwarding_preserved: gr.forwarding_preserved,
                    })
                    .collect(),
            }));
        }
        caps.push(Capability::FourOctetAs(self.local_as));
        if !self.add_path.is_empty() {
            caps.push(Capability::AddPath(self.add_path.clone()));
        }
        Open::new(self.local_as, self.hold_time, self.local_id, caps)
    }
}
