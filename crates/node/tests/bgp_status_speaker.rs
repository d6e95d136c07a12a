//! The status path from the real BGP speaker: its peer status turned into rows, readiness and counts,
//! served on the status socket. Two speakers peer over loopback; a third peer never answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use calico_bgp::speaker::{PeerSettings, PeerStatus, Speaker, SpeakerConfig};
use calico_node::bgp_status::{
    NodeBgpStatus, PeerKind, ProtocolState, Reply, SessionState, not_ready_reasons, peer_counts,
    peer_rows, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

fn v4(addr: &str) -> Ipv4Addr {
    addr.parse().unwrap()
}

async fn speaker(addr: &str) -> (Speaker, u16) {
    let ip = v4(addr);
    let config = SpeakerConfig {
        listen: Some(SocketAddr::from((ip, 0))),
        ..SpeakerConfig::new(64512, ip)
    };
    let (speaker, _routes) = Speaker::start(config).await.expect("speaker starts");
    let port = speaker.local_addr().expect("listening").port();
    (speaker, port)
}

fn peer(to: &str, port: u16, from: &str, passive: bool) -> PeerSettings {
    PeerSettings {
        port,
        passive,
        hold_time: 3,
        local_address: Some(IpAddr::V4(v4(from))),
        connect_retry: Duration::from_millis(300),
        error_wait: Duration::from_millis(300),
        ..PeerSettings::new(IpAddr::V4(v4(to)), 64512)
    }
}

/// The node's snapshot, each peer with the kind calico-node's peer set gives it.
async fn snapshot(speaker: &Speaker) -> NodeBgpStatus {
    let peers = speaker.status().await.expect("status");
    let kind = |p: &PeerStatus| {
        if p.address == IpAddr::V4(v4("127.0.0.73")) {
            PeerKind::Global
        } else {
            PeerKind::Mesh
        }
    };
    NodeBgpStatus {
        speaker_running: true,
        peers: peer_rows(peers.into_iter().map(|p| (kind(&p), p))),
    }
}

async fn until(
    speaker: &Speaker,
    what: &str,
    ok: impl Fn(&NodeBgpStatus) -> bool,
) -> NodeBgpStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = snapshot(speaker).await;
        if ok(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: last {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaker_status_to_rows_readiness_and_socket() {
    let (a, a_port) = speaker("127.0.0.71").await;
    let (b, b_port) = speaker("127.0.0.72").await;
    // A port nothing listens on.
    let silent_port = std::net::TcpListener::bind("127.0.0.73:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    a.set_peer(peer("127.0.0.72", b_port, "127.0.0.71", false))
        .await
        .unwrap();
    a.set_peer(peer("127.0.0.73", silent_port, "127.0.0.71", false))
        .await
        .unwrap();
    b.set_peer(peer("127.0.0.71", a_port, "127.0.0.72", true))
        .await
        .unwrap();

    let status = until(&a, "b established", |s| {
        s.peers
            .iter()
            .any(|r| r.session == SessionState::Established)
    })
    .await;
    let [up, down] = status.peers.as_slice() else {
        panic!("two rows: {status:?}");
    };
    assert_eq!(up.address.to_string(), "127.0.0.72");
    assert_eq!((up.kind, up.state), (PeerKind::Mesh, ProtocolState::Up));
    assert_eq!(up.info(), "Established");
    assert_eq!(up.port, b_port);
    assert_eq!(down.address.to_string(), "127.0.0.73");
    assert_eq!(
        (down.kind, down.state),
        (PeerKind::Global, ProtocolState::Start)
    );
    assert!(
        [
            SessionState::Idle,
            SessionState::Connect,
            SessionState::Active
        ]
        .contains(&down.session),
        "{down:?}"
    );

    assert_eq!(
        not_ready_reasons(&status.peers, true),
        ["BIRD is not ready: BGP not established with 127.0.0.73"]
    );
    assert!(not_ready_reasons(&status.peers, false).is_empty());
    let counts = peer_counts(&status.peers);
    assert_eq!(counts[&SessionState::Established], 1);
    assert_eq!(counts.values().sum::<usize>(), 2);

    // Served as the owner of the speaker would: the latest snapshot in a watch channel.
    let (publish, latest) = tokio::sync::watch::channel(status.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-status.sock");
    let _socket = serve(&path, move || latest.borrow().clone()).expect("serve");
    let ask = || async {
        let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        stream
            .write_all(b"{\"request\":\"bgp-status\"}\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        serde_json::from_slice::<Reply>(&reply).unwrap()
    };
    assert_eq!(ask().await, Reply::BgpStatus(status));

    // b goes away: a's session to it drops, and the error that took it down is shown.
    b.shutdown().await;
    // The state and the error that took the session down are reported separately (the session's
    // task and the RIB's), so wait for both.
    let status = until(&a, "b down", |s| {
        s.peers
            .iter()
            .all(|r| r.session != SessionState::Established)
            && s.peers[0].last_error.is_some()
    })
    .await;
    let gone = &status.peers[0];
    assert_eq!(gone.state, ProtocolState::Start);
    let error = gone.last_error.clone().unwrap_or_default();
    assert!(
        ["Socket: ", "Received: ", "BGP Error: ", "Error: "]
            .iter()
            .any(|class| error.starts_with(class)),
        "{error}"
    );
    assert_eq!(
        not_ready_reasons(&status.peers, false),
        ["BIRD is not ready: BGP not established with 127.0.0.72,127.0.0.73"]
    );
    publish.send_replace(status.clone());
    assert_eq!(ask().await, Reply::BgpStatus(status));
    a.shutdown().await;
}
