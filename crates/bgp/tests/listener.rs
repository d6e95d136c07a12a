//! The shared listener on loopback: a configured peer's connection reaches its session and
//! comes up; connections from other addresses (127.0.0.2 here) are closed unread, a thousand
//! of them leave the configured session up and working.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use calico_bgp::net::listener::{PeerTable, serve};
use calico_bgp::net::{Command, SessionEvent, SessionHandle, spawn};
use calico_bgp::session::PeerConfig;
use calico_bgp::wire::{AsPath, Nlri, Origin, PathAttributes, Update};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};

async fn next(h: &mut SessionHandle) -> SessionEvent {
    match tokio::time::timeout(Duration::from_secs(20), h.events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("session task ended"),
        Err(_) => panic!("no session event within 20 s"),
    }
}

/// Connects from `source` to `to` and reads until the listener's side closes; the bytes read.
async fn stranger(source: Ipv4Addr, to: SocketAddr) -> Vec<u8> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind 127.0.0.2");
    let mut stream = socket.connect(to).await.expect("connect");
    let mut got = Vec::new();
    // Closed without a byte: EOF, or a reset.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("the listener closes a stranger's connection");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_configured_peers_get_a_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let table = PeerTable::new();
    let handle = serve(listener, table.clone());
    let addr = handle.local_addr;

    let a_cfg = PeerConfig {
        passive: true,
        ..PeerConfig::new(64512, Ipv4Addr::new(198, 18, 0, 1), 64512)
    };
    let mut a = spawn(a_cfg, addr).expect("a");
    table.insert(IpAddr::V4(Ipv4Addr::LOCALHOST), a.inbound.clone());

    // A stranger before the peer: refused, and nothing reaches A's session.
    assert_eq!(stranger(Ipv4Addr::new(127, 0, 0, 2), addr).await, b"");
    assert_eq!(handle.stats.refused.load(Ordering::Relaxed), 1);
    assert_eq!(handle.stats.accepted.load(Ordering::Relaxed), 0);

    let mut b = spawn(
        PeerConfig::new(64512, Ipv4Addr::new(198, 18, 0, 2), 64512),
        addr,
    )
    .expect("b");
    assert!(matches!(next(&mut a).await, SessionEvent::Up(_)));
    assert!(matches!(next(&mut b).await, SessionEvent::Up(_)));
    assert_eq!(handle.stats.accepted.load(Ordering::Relaxed), 1);

    for _ in 0..1000 {
        assert_eq!(stranger(Ipv4Addr::new(127, 0, 0, 2), addr).await, b"");
    }
    assert_eq!(handle.stats.refused.load(Ordering::Relaxed), 1001);
    assert_eq!(handle.stats.accepted.load(Ordering::Relaxed), 1);

    // The configured session is still the same one and carries routes.
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(Ipv4Addr::new(198, 18, 0, 2)),
            local_pref: Some(100),
            ..PathAttributes::default()
        },
        nlri: vec![Nlri::new("198.19.0.0/26".parse().expect("prefix"))],
        ..Update::default()
    };
    b.commands
        .send(Command::Send(update.clone()))
        .expect("send");
    assert_eq!(next(&mut a).await, SessionEvent::Update(update));

    // A peer removed from the table is refused like a stranger.
    table.remove(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(stranger(Ipv4Addr::LOCALHOST, addr).await, b"");
    assert_eq!(handle.stats.refused.load(Ordering::Relaxed), 1002);

    b.commands.send(Command::Shutdown).expect("b stop");
    a.commands.send(Command::Shutdown).expect("a stop");
    let _ = a.task.await;
    let _ = b.task.await;
    handle.task.abort();
}
