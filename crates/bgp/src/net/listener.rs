//! The shared listener: accepts BGP connections on one socket and hands each to the session of
//! the peer it comes from. A connection from an address that is no configured peer is closed
//! at once, before anything is read from it or kept for it, so a flood of strangers costs an
//! accept and a close each and nothing that grows.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Where inbound connections go: each configured peer's address and its session's inbound
/// channel ([`super::SessionHandle::inbound`]). Cloned handles share one table, so peers can be
/// added and removed while the listener runs.
#[derive(Clone, Debug, Default)]
pub struct PeerTable {
    inner: Arc<RwLock<HashMap<IpAddr, mpsc::UnboundedSender<TcpStream>>>>,
}

impl PeerTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections from `addr` go to `inbound` from now on (replacing any earlier session).
    pub fn insert(&self, addr: IpAddr, inbound: mpsc::UnboundedSender<TcpStream>) {
        self.write().insert(canonical(addr), inbound);
    }

    /// Connections from `addr` are refused from now on.
    pub fn remove(&self, addr: IpAddr) {
        self.write().remove(&canonical(addr));
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.read().contains_key(&canonical(addr))
    }

    /// The session channel for a connection from `addr`, if that is a configured peer whose
    /// session still runs.
    fn route(&self, addr: IpAddr) -> Option<mpsc::UnboundedSender<TcpStream>> {
        self.read()
            .get(&canonical(addr))
            .filter(|tx| !tx.is_closed())
            .cloned()
    }

    // A panic while holding the lock cannot leave the map half-changed (each operation is a
    // single insert, remove or lookup), so a poisoned lock is still usable.
    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<IpAddr, mpsc::UnboundedSender<TcpStream>>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<IpAddr, mpsc::UnboundedSender<TcpStream>>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A peer reaching a dual-stack (`[::]`) socket over IPv4 shows as `::ffff:a.b.c.d`; peers are
/// configured with the plain IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// Counters of what the listener did.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections handed to a session.
    pub accepted: AtomicU64,
    /// Connections closed because they came from no configured peer.
    pub refused: AtomicU64,
    /// `accept` errors (for example out of file descriptors); the listener goes on.
    pub errors: AtomicU64,
}

pub struct ListenerHandle {
    pub local_addr: SocketAddr,
    pub stats: Arc<ListenerStats>,
    pub task: JoinHandle<()>,
}

/// Binds `addr` (port 179 in production) and starts accepting.
pub async fn listen(addr: SocketAddr, peers: PeerTable) -> io::Result<ListenerHandle> {
    let listener = TcpListener::bind(addr).await?;
    Ok(serve(listener, peers))
}

/// Starts accepting on an already bound `listener`.
pub fn serve(listener: TcpListener, peers: PeerTable) -> ListenerHandle {
    let stats = Arc::new(ListenerStats::default());
    // A bound listener knows its address; the fallback only feeds the handle's field.
    let local_addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let counters = Arc::clone(&stats);
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, from)) => {
                    let handed = peers
                        .route(from.ip())
                        .is_some_and(|tx| tx.send(stream).is_ok());
                    // On refusal the stream was dropped above (closed unread) or came back
                    // in the send error and was dropped there.
                    let counter = if handed {
                        &counters.accepted
                    } else {
                        &counters.refused
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    // Errors such as EMFILE repeat at once; do not spin on them.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
    ListenerHandle {
        local_addr,
        stats,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn routes_only_configured_and_live_peers() {
        let table = PeerTable::new();
        let (tx, rx) = mpsc::unbounded_channel::<TcpStream>();
        let peer = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        table.insert(peer, tx);
        assert!(table.route(peer).is_some());
        assert!(
            table
                .route(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)))
                .is_none()
        );
        // The same peer over a dual-stack socket.
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 18, 0, 2).to_ipv6_mapped());
        assert!(table.route(mapped).is_some());
        // A session that ended takes no connections.
        drop(rx);
        assert!(table.route(peer).is_none());
        table.remove(peer);
        assert!(!table.contains(peer));
    }

    #[test]
    fn ipv6_peers_are_kept_apart_from_ipv4_ones() {
        let table = PeerTable::new();
        let (tx, _rx) = mpsc::unbounded_channel::<TcpStream>();
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));
        table.insert(v6, tx);
        assert!(table.route(v6).is_some());
        assert!(table.route(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 2))).is_none());
    }
}
