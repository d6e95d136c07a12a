//! A peer flooding routes past its prefix limit, on loopback: our session (the real tokio
//! driver) resets it with NOTIFICATION Cease/1 (Maximum Number of Prefixes Reached, RFC 4486)
//! carrying AFI, SAFI and the limit, reports the session down without graceful-restart
//! staleness so the RIB drops every route it learnt from it, and a second peer's session and
//! routes stay as they were.
//!
//! The peers are the test's own: a plain TCP listener speaking our codec, one per peer. The
//! flooder writes 100,000 prefixes as fast as TCP takes them against a limit of 1,000.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use calico_bgp::net::{Command, SessionEvent, SessionHandle, spawn};
use calico_bgp::policy::Filter;
use calico_bgp::rib::{NextHopMode, PeerId, PeerInfo, Rib, RibConfig};
use calico_bgp::session::{PeerConfig, Reason};
use calico_bgp::wire::{
    AsPath, Capability, Context, Family, Message, Nlri, Notification, Open, Origin, PathAttributes,
    Update, code, decode, frame,
};
use ipnet::{IpNet, Ipv4Net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const AS: u32 = 64512;
const LIMIT: u32 = 1000;
const FLOOD: u32 = 100_000;
const PER_UPDATE: u32 = 500;
const WAIT: Duration = Duration::from_secs(30);

/// The negotiated context: both sides advertise 4-octet AS and extended messages.
fn ctx() -> Context {
    Context {
        four_octet_as: true,
        extended_message: true,
        add_path: Vec::new(),
    }
}

/// Reads one message from the peer's side of the connection; `None` at EOF.
async fn read_message(r: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Option<Message> {
    loop {
        match frame(buf, &ctx()) {
            Ok(Some(len)) => {
                let msg: Vec<u8> = buf.drain(..len).collect();
                return Some(
                    decode(&msg, &ctx())
                        .expect("our speaker sends valid messages")
                        .message,
                );
            }
            Ok(None) => {}
            Err(n) => panic!("our speaker's framing is wrong: {n:?}"),
        }
        let mut chunk = [0u8; 4096];
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn write(w: &mut OwnedWriteHalf, m: &Message) -> std::io::Result<()> {
    w.write_all(&m.to_bytes(&ctx()).expect("encode")).await
}

/// A test peer: accepts our session's connection and completes the OPEN exchange.
async fn test_peer(
    listener: TcpListener,
    id: Ipv4Addr,
) -> (OwnedReadHalf, OwnedWriteHalf, Vec<u8>) {
    test_peer_holding(listener, id, 90).await
}

/// `test_peer` offering `hold_time`.
async fn test_peer_holding(
    listener: TcpListener,
    id: Ipv4Addr,
    hold_time: u16,
) -> (OwnedReadHalf, OwnedWriteHalf, Vec<u8>) {
    let (stream, _) = listener.accept().await.expect("our session connects");
    let (mut r, mut w) = stream.into_split();
    let mut buf = Vec::new();
    assert!(matches!(
        read_message(&mut r, &mut buf).await,
        Some(Message::Open(_))
    ));
    let open = Open::new(
        AS,
        hold_time,
        id,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::ExtendedMessage,
            Capability::FourOctetAs(AS),
        ],
    );
    write(&mut w, &Message::Open(open))
        .await
        .expect("send OPEN");
    write(&mut w, &Message::Keepalive)
        .await
        .expect("send KEEPALIVE");
    assert_eq!(
        read_message(&mut r, &mut buf).await,
        Some(Message::Keepalive)
    );
    (r, w, buf)
}

fn update(next_hop: Ipv4Addr, prefixes: impl Iterator<Item = u32>) -> Message {
    Message::Update(Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(next_hop),
            local_pref: Some(100),
            ..PathAttributes::default()
        },
        // /32s in 198.18.0.0/15.
        nlri: prefixes
            .map(|i| {
                let addr = Ipv4Addr::from(0xc612_0000 + i);
                Nlri::new(IpNet::V4(Ipv4Net::new(addr, 32).expect("/32")))
            })
            .collect(),
        ..Update::default()
    })
}

fn peer_info(id: Ipv4Addr) -> PeerInfo {
    PeerInfo {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        router_id: id,
        asn: AS,
        ibgp: true,
        rr_client: false,
        next_hop: NextHopMode::Auto,
        self_v4: None,
        self_v6: None,
        import: Filter::default(),
        export: Filter::default(),
        allow_local_as: 0,
    }
}

async fn next(h: &mut SessionHandle) -> SessionEvent {
    match tokio::time::timeout(WAIT, h.events.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("session task ended"),
        Err(_) => panic!("no session event within {WAIT:?}"),
    }
}

/// Our session with the test peer at `addr`, limited to `LIMIT` prefixes; up once this returns.
async fn our_session(addr: SocketAddr) -> SessionHandle {
    let cfg = PeerConfig {
        max_prefixes: Some(LIMIT),
        connect_retry: Duration::from_millis(200),
        // Long enough that the reset session does not come back during the test.
        idle_hold: Duration::from_secs(600),
        idle_hold_max: Duration::from_secs(600),
        ..PeerConfig::new(AS, Ipv4Addr::new(198, 18, 0, 1), AS)
    };
    spawn(cfg, addr).expect("session")
}

/// Feeds a session's routes into the RIB and its prefix count back to the session, as the
/// speaker does; returns the reason once the session goes down (with the RIB updated).
fn apply(rib: &mut Rib, peer: PeerId, h: &SessionHandle, event: SessionEvent) -> Option<Reason> {
    match event {
        SessionEvent::Update(u) => {
            rib.apply_update(peer, &u);
            let count = rib.received_count_of(peer, Family::IPV4_UNICAST);
            let _ = h.commands.send(Command::PrefixCount {
                family: Family::IPV4_UNICAST,
                count,
            });
            None
        }
        SessionEvent::Down { reason, stale } => {
            assert_eq!(stale, None, "a prefix-limit reset keeps no stale routes");
            rib.peer_down(peer);
            Some(reason)
        }
        other => panic!("unexpected event {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_prefix_limit_is_reset_and_its_routes_go() {
    let good_id = Ipv4Addr::new(198, 18, 0, 2);
    let flood_id = Ipv4Addr::new(198, 18, 0, 3);
    let (good, flooder) = (1, 2);
    let mut rib = Rib::new(RibConfig {
        local_as: AS,
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        cluster_id: None,
    });
    rib.set_peer(good, peer_info(good_id));
    rib.set_peer(flooder, peer_info(flood_id));

    // The well-behaved peer: up, 100 routes (under the limit), kept throughout.
    let good_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut g = our_session(good_listener.local_addr().expect("addr")).await;
    let (_good_r, mut good_w, _) = test_peer(good_listener, good_id).await;
    assert!(matches!(next(&mut g).await, SessionEvent::Up(_)));
    write(&mut good_w, &update(good_id, 100_000..100_100))
        .await
        .expect("good routes");
    let event = next(&mut g).await;
    assert_eq!(apply(&mut rib, good, &g, event), None);
    assert_eq!(rib.received_count(good), 100);

    // The flooder.
    let flood_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut f = our_session(flood_listener.local_addr().expect("addr")).await;
    let (mut flood_r, mut flood_w, mut buf) = test_peer(flood_listener, flood_id).await;
    assert!(matches!(next(&mut f).await, SessionEvent::Up(_)));
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        for start in (0..FLOOD).step_by(PER_UPDATE as usize) {
            if write(&mut flood_w, &update(flood_id, start..start + PER_UPDATE))
                .await
                .is_err()
            {
                break;
            }
            sent += PER_UPDATE;
        }
        sent
    });
    // What the flooder receives: a NOTIFICATION, then the end of the connection.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(m) = read_message(&mut flood_r, &mut buf).await {
            got.push(m);
        }
        got
    });

    let mut peak = 0;
    let reason = loop {
        let event = next(&mut f).await;
        peak = peak.max(rib.received_count(flooder));
        if let Some(reason) = apply(&mut rib, flooder, &f, event) {
            break reason;
        }
    };
    // RFC 4486 §4: AFI 1, SAFI 1, the limit as 4 octets.
    let mut data = vec![0, 1, 1];
    data.extend_from_slice(&LIMIT.to_be_bytes());
    let cease = Notification::new(code::CEASE, code::CEASE_MAX_PREFIXES, data);
    assert_eq!(reason, Reason::Sent(cease.clone()));
    let got = tokio::time::timeout(WAIT, reader)
        .await
        .expect("our side closes the flooder's connection")
        .expect("reader");
    let notifications: Vec<&Message> = got
        .iter()
        .filter(|m| matches!(m, Message::Notification(_)))
        .collect();
    assert_eq!(notifications, vec![&Message::Notification(cease)]);
    assert!(
        matches!(got.last(), Some(Message::Notification(_))),
        "nothing after the NOTIFICATION: {got:?}"
    );
    let sent = tokio::time::timeout(WAIT, writer)
        .await
        .expect("the flooder's writes end")
        .expect("writer");
    assert!(
        peak > LIMIT as usize,
        "the limit was passed ({peak} routes)"
    );
    eprintln!("flooder wrote {sent} prefixes; the RIB held at most {peak} of them");

    // Its routes are gone; the good peer's stay, and its session still carries routes.
    assert_eq!(rib.received_count(flooder), 0);
    assert_eq!(rib.received_count(good), 100);
    assert_eq!(rib.best_paths().count(), 100);
    write(&mut good_w, &update(good_id, 100_100..100_101))
        .await
        .expect("good session still up");
    let event = next(&mut g).await;
    assert_eq!(apply(&mut rib, good, &g, event), None);
    assert_eq!(rib.received_count(good), 101);
    assert!(
        g.events.try_recv().is_err(),
        "the good session saw nothing else"
    );

    for h in [f, g] {
        h.commands.send(Command::Shutdown).expect("shutdown");
        let _ = h.task.await;
    }
}

/// A peer that stops reading (as a stopped process does, its socket buffers full) while we
/// have much to send is dropped when its hold time runs out, although our session's writes
/// to it cannot finish: they end at the hold timer's expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_dropped_within_its_hold_time() {
    const HOLD: u16 = 3;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let cfg = PeerConfig {
        hold_time: HOLD,
        idle_hold: Duration::from_secs(600),
        idle_hold_max: Duration::from_secs(600),
        ..PeerConfig::new(AS, Ipv4Addr::new(198, 18, 0, 1), AS)
    };
    let mut h = spawn(cfg, addr).expect("session");
    // It neither reads nor writes from here on.
    let (_r, _w, _) = test_peer_holding(listener, Ipv4Addr::new(198, 18, 0, 9), HOLD).await;
    assert!(matches!(next(&mut h).await, SessionEvent::Up(_)));

    // Some 10 MB of UPDATEs: more than the socket buffers of both ends take.
    let updates: Vec<Update> = (0..4000u32)
        .map(
            |k| match update(Ipv4Addr::new(198, 18, 0, 9), k * 500..(k + 1) * 500) {
                Message::Update(u) => u,
                _ => unreachable!("update() builds an UPDATE"),
            },
        )
        .collect();
    let started = std::time::Instant::now();
    h.batches_queued
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    h.commands
        .send(Command::SendBatch(updates))
        .expect("session running");
    let reason = loop {
        match next(&mut h).await {
            SessionEvent::Down { reason, .. } => break reason,
            _ => continue,
        }
    };
    assert_eq!(reason, Reason::HoldTimerExpired);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(u64::from(HOLD) + 5),
        "dropped after {took:?}"
    );
}
