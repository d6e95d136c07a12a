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

/// Session A passive on a loopback listener, session B connecting to it; the task handing A
/// its inbound connections (abort it at the end).
async fn pair(
    a_cfg: PeerConfig,
    b_cfg: PeerConfig,
) -> (SessionHandle, SessionHandle, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // B's remote is A's listener; A is passive, so its remote address is never dialled.
    let a = spawn(a_cfg, addr).unwrap();
    let b = spawn(b_cfg, addr).unwrap();
    let a_inbound = a.inbound.clone();
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if a_inbound.send(stream).is_err() {
                return;
            }
        }
    });
    (a, b, accept)
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
    // A: passive, AS 4200000001 (4-octet), waits for B. B: connects to A.
    let a_cfg = PeerConfig {
        passive: true,
        ..PeerConfig::new(4_200_000_001, Ipv4Addr::new(198, 18, 0, 1), 4_200_000_002)
    };
    let b_cfg = PeerConfig::new(4_200_000_002, Ipv4Addr::new(198, 18, 0, 2), 4_200_000_001);
    let (mut a, mut b, accept) = pair(a_cfg, b_cfg).await;

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

/// The UPDATE for 10.x.y.0/24 number `i`, each with its own next hop (as a reflector's
/// clients' routes are), so none share a message.
fn numbered(i: u32) -> Update {
    let prefix = ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap();
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(Ipv4Addr::from(0xc613_0000 + i)),
            local_pref: Some(100),
            ..PathAttributes::default()
        },
        nlri: vec![Nlri::new(ipnet::IpNet::V4(prefix))],
        ..Update::default()
    }
}

/// Batches are written in buffers of many messages; a batch of changes is packed by the
/// session. Either way the peer gets every UPDATE, whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_whole_and_in_order() {
    use calico_bgp::rib::{Exported, OutChange, pack};

    let a_cfg = PeerConfig {
        passive: true,
        ..PeerConfig::new(64512, Ipv4Addr::new(198, 18, 0, 1), 64512)
    };
    let b_cfg = PeerConfig::new(64512, Ipv4Addr::new(198, 18, 0, 2), 64512);
    let (mut a, mut b, accept) = pair(a_cfg, b_cfg).await;
    assert!(matches!(next(&mut a).await, SessionEvent::Up(_)));
    let SessionEvent::Up(nb) = next(&mut b).await else {
        panic!("B not up")
    };

    // Several buffers' worth (each message is about 60 octets).
    let batch: Vec<Update> = (0..3000).map(numbered).collect();
    b.batches_queued
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    b.commands.send(Command::SendBatch(batch.clone())).unwrap();
    for want in &batch {
        let SessionEvent::Update(u) = next(&mut a).await else {
            panic!("not an UPDATE")
        };
        assert_eq!(&u, want);
    }

    let mut changes: Vec<OutChange> = (3000..3010)
        .map(|i| {
            let u = numbered(i);
            let nh = u.attributes.next_hop.unwrap();
            let exported = Exported {
                attrs: PathAttributes {
                    next_hop: None,
                    ..u.attributes
                },
                next_hop: std::net::IpAddr::V4(nh),
            };
            OutChange::Announce(u.nlri[0].prefix, std::sync::Arc::new(exported))
        })
        .collect();
    changes.push(OutChange::Withdraw(batch[0].nlri[0].prefix));
    let want = pack(&changes, &nb.encode).updates;
    assert!(want.len() >= 2);
    b.batches_queued
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    b.commands.send(Command::SendChanges(changes)).unwrap();
    for want in &want {
        let SessionEvent::Update(u) = next(&mut a).await else {
            panic!("not an UPDATE")
        };
        assert_eq!(&u, want);
    }

    b.commands.send(Command::Shutdown).unwrap();
    a.commands.send(Command::Shutdown).unwrap();
    a.task.await.unwrap();
    b.task.await.unwrap();
    accept.abort();
}
