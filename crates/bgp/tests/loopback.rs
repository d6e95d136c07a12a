//! Two of our speakers over TCP on loopback: the OPEN exchange, an UPDATE each way with the
//! negotiated 4-octet AS, and a clean stop.

use std::net::Ipv4Addr;
use std::time::Duration;

use calico_bgp::net::{Command, SessionEvent, SessionHandle, spawn};
use calico_bgp::session::{PeerConfig, Reason};
use calico_bgp::wire::{AsPath, Nlri, Notification, Origin, PathAttributes, Update};
use tokio::net::TcpListener;

/// Waits for the next event; a session that goes quiet for 20 s fails the test.
async fn next(h: &mut SessionHandle) -> SessionEvent {
    match tokio::time::timeout(Duration::from_secs(20), h.events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("session task ended"),
        Err(_) => panic!("no session event within 20 s"),
    }
}

fn announcement(prefix: &str, asn: u32) -> Update {
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence([asn])),
            next_hop: Some(Ipv4Addr::new(127, 0, 0, 1)),
            ..PathAttributes::default()
        },
        nlri: vec![Nlri::new(prefix.parse().unwrap())],
        ..Update::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_establish_exchange_routes_and_stop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // A: passive, AS 4200000001 (4-octet), waits for B. B: connects to A.
    let a_cfg = PeerConfig {
        passive: true,
        ..PeerConfig::new(4_200_000_001, Ipv4Addr::new(198, 18, 0, 1), 4_200_000_002)
    };
    let b_cfg = PeerConfig::new(4_200_000_002, Ipv4Addr::new(198, 18, 0, 2), 4_200_000_001);
    // B's remote is A's listener; A is passive, so its remote address is never dialled.
    let mut a = spawn(a_cfg, addr).unwrap();
    let mut b = spawn(b_cfg, addr).unwrap();
    let a_inbound = a.inbound.clone();
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if a_inbound.send(stream).is_err() {
                return;
            }
        }
    });

    let SessionEvent::Up(na) = next(&mut a).await else {
        panic!("A not up")
    };
    let SessionEvent::Up(nb) = next(&mut b).await else {
        panic!("B not up")
    };
    assert_eq!(na.peer_as, 4_200_000_002);
    assert_eq!(nb.peer_as, 4_200_000_001);
    assert!(na.decode.four_octet_as && nb.encode.four_octet_as);
    assert!(!na.ibgp);

    b.commands
        .send(Command::Send(announcement("198.19.0.0/26", 4_200_000_002)))
        .unwrap();
    let SessionEvent::Update(u) = next(&mut a).await else {
        panic!("no UPDATE at A")
    };
    assert_eq!(u, announcement("198.19.0.0/26", 4_200_000_002));
    a.commands
        .send(Command::Send(announcement("198.19.1.0/26", 4_200_000_001)))
        .unwrap();
    let SessionEvent::Update(u) = next(&mut b).await else {
        panic!("no UPDATE at B")
    };
    assert_eq!(
        u.attributes.as_path,
        Some(AsPath::sequence([4_200_000_001]))
    );

    b.commands.send(Command::Shutdown).unwrap();
    let SessionEvent::Down { reason, stale } = next(&mut a).await else {
        panic!("A not down")
    };
    assert_eq!(reason, Reason::Received(Notification::new(6, 2, [])));
    assert_eq!(stale, None);
    let SessionEvent::Down { reason, .. } = next(&mut b).await else {
        panic!("B not down")
    };
    assert_eq!(reason, Reason::Stopped);

    a.commands.send(Command::Shutdown).unwrap();
    a.task.await.unwrap();
    b.task.await.unwrap();
    accept.abort();
}
