use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn peer(address: &str, state: State, last_error: Option<&str>) -> PeerStatus {
    PeerStatus {
        address: address.parse().unwrap(),
        port: 179,
        remote_as: 64512,
        state,
        since: at(1_700_000_000),
        last_error: last_error.map(str::to_string),
        router_id: None,
        received: 0,
        accepted: 0,
        advertised: 0,
        initial_routes_received: false,
    }
}

fn row(address: &str, session: SessionState) -> PeerRow {
    let address: IpAddr = address.parse().unwrap();
    PeerRow {
        address,
        port: 179,
        kind: PeerKind::Mesh,
        family: Family::of(address),
        state: if session == SessionState::Established {
            ProtocolState::Up
        } else {
            ProtocolState::Start
        },
        since: at(1_700_000_000),
        session,
        last_error: None,
    }
}

#[test]
fn rows_are_in_birds_terms_and_ordered_by_address() {
    let rows = peer_rows([
        (
            PeerKind::Node,
            peer(
                "192.168.179.104",
                State::Active,
                Some("received NOTIFICATION 6/2 (administrative shutdown)"),
            ),
        ),
        (
            PeerKind::Mesh,
            peer(
                "192.168.179.103",
                State::Established,
                Some("hold timer expired"),
            ),
        ),
        (PeerKind::Global, peer("fd00::1", State::Connect, None)),
    ]);
    let addresses: Vec<String> = rows.iter().map(|r| r.address.to_string()).collect();
    assert_eq!(addresses, ["192.168.179.103", "192.168.179.104", "fd00::1"]);

    assert_eq!(rows[0].kind, PeerKind::Mesh);
    assert_eq!(rows[0].state, ProtocolState::Up);
    assert_eq!(rows[0].family, Family::IPv4);
    // An error from before the session came back up is not shown, as BIRD clears it.
    assert_eq!(rows[0].info(), "Established");
    assert_eq!(rows[0].since, at(1_700_000_000));
    let mut fractional = peer("10.0.0.9", State::Idle, None);
    fractional.since = at(1_700_000_000) + Duration::from_millis(999);
    assert_eq!(
        peer_rows([(PeerKind::Mesh, fractional)])[0].since,
        at(1_700_000_000),
        "whole seconds, as on the wire"
    );

    assert_eq!(rows[1].kind, PeerKind::Node);
    assert_eq!(rows[1].state, ProtocolState::Start);
    assert_eq!(rows[1].info(), "Active Received: Administrative shutdown");

    assert_eq!(rows[2].family, Family::IPv6);
    assert_eq!(rows[2].state, ProtocolState::Start);
    assert_eq!(rows[2].info(), "Connect");
}

#[test]
fn rows_carry_confds_peer_kinds_in_address_order() {
    let rows = peer_rows([
        (
            peer_kind(calico_confd::PeerKind::NodeSpecific),
            peer("10.0.0.3", State::Active, None),
        ),
        (
            peer_kind(calico_confd::PeerKind::Mesh),
            peer("10.0.0.2", State::Established, None),
        ),
    ]);
    let kinds: Vec<(String, PeerKind)> = rows
        .iter()
        .map(|r| (r.address.to_string(), r.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("10.0.0.2".to_string(), PeerKind::Mesh),
            ("10.0.0.3".to_string(), PeerKind::Node)
        ]
    );
    assert_eq!(peer_kind(calico_confd::PeerKind::Global), PeerKind::Global);
}

#[test]
fn every_session_state_has_birds_name() {
    let names: Vec<String> = [
        State::Idle,
        State::Connect,
        State::Active,
        State::OpenSent,
        State::OpenConfirm,
        State::Established,
    ]
    .into_iter()
    .map(|s| session_state(s).to_string())
    .collect();
    assert_eq!(
        names,
        [
            "Idle",
            "Connect",
            "Active",
            "OpenSent",
            "OpenConfirm",
            "Established"
        ]
    );
}

#[test]
fn errors_are_worded_as_bird_words_them() {
    let cases = [
        ("connection closed", Some("Socket: Connection closed")),
        ("hold timer expired", Some("BGP Error: Hold timer expired")),
        ("peer restarted", Some("Error: Graceful restart")),
        (
            "received NOTIFICATION 2/2 (bad peer AS)",
            Some("Received: Bad peer AS"),
        ),
        (
            "sent NOTIFICATION 4/0 (hold timer expired)",
            Some("BGP Error: Hold timer expired"),
        ),
        (
            "received NOTIFICATION 6/9 (cease)",
            Some("Received: Unknown error 6.9"),
        ),
        (
            "source address for 10.0.0.2:179: Cannot assign requested address (os error 99)",
            Some("Socket: Cannot assign requested address"),
        ),
        (
            "connect failed: Connection refused (os error 111)",
            Some("Socket: Connection refused"),
        ),
        (
            "TCP-MD5 for 10.0.0.2:179: Operation not permitted (os error 1)",
            Some("Error: Kernel MD5 auth failed"),
        ),
        (
            "UPDATE not sent: too big",
            Some("Error: UPDATE not sent: too big"),
        ),
        ("administratively stopped", None),
        ("", None),
    ];
    for (ours, bird) in cases {
        assert_eq!(bird_error(ours).as_deref(), bird, "{ours:?}");
    }
}

#[test]
fn readiness_text_is_calicos() {
    let rows = [
        row("10.0.0.2", SessionState::Active),
        row("10.0.0.3", SessionState::Connect),
    ];
    assert_eq!(
        not_ready_reasons(&rows, true),
        ["BIRD is not ready: BGP not established with 10.0.0.2,10.0.0.3"]
    );
    // Later on, none established is still not ready.
    assert_eq!(
        not_ready_reasons(&rows, false),
        ["BIRD is not ready: BGP not established with 10.0.0.2,10.0.0.3"]
    );

    let rows = [
        row("10.0.0.2", SessionState::Established),
        row("10.0.0.3", SessionState::OpenSent),
        row("fd00::2", SessionState::Idle),
    ];
    assert_eq!(
        not_ready_reasons(&rows, true),
        [
            "BIRD is not ready: BGP not established with 10.0.0.3",
            "BIRD6 is not ready: BGP not established with fd00::2",
        ]
    );
    // One established peering is enough once past start-up; IPv6 has none.
    assert_eq!(
        not_ready_reasons(&rows, false),
        ["BIRD6 is not ready: BGP not established with fd00::2"]
    );

    assert!(not_ready_reasons(&[], true).is_empty());
    assert!(not_ready_reasons(&[row("10.0.0.2", SessionState::Established)], true).is_empty());
}

#[test]
fn counts_cover_every_state() {
    let rows = [
        row("10.0.0.2", SessionState::Established),
        row("10.0.0.3", SessionState::Established),
        row("10.0.0.4", SessionState::Active),
    ];
    let counts = peer_counts(&rows);
    assert_eq!(counts.len(), 6);
    assert_eq!(counts[&SessionState::Established], 2);
    assert_eq!(counts[&SessionState::Active], 1);
    assert_eq!(counts[&SessionState::Idle], 0);
    assert_eq!(counts.values().sum::<usize>(), 3);
    assert!(peer_counts(&[]).values().all(|n| *n == 0));
}

fn status() -> NodeBgpStatus {
    NodeBgpStatus {
        speaker_running: true,
        peers: vec![row("10.0.0.2", SessionState::Established)],
    }
}

async fn ask(path: &Path, request: &[u8]) -> Reply {
    let mut stream = UnixStream::connect(path).await.expect("connect");
    // The server may stop reading and answer before an oversized request is all written.
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut reply = Vec::new();
    // Closing with part of an oversized request unread resets the connection after the reply.
    if let Err(e) = stream.read_to_end(&mut reply).await {
        assert!(
            e.kind() == io::ErrorKind::ConnectionReset && !reply.is_empty(),
            "read reply: {e}"
        );
    }
    serde_json::from_slice(&reply)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&reply)))
}

#[tokio::test]
async fn answers_a_request_on_a_0600_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = node_status_socket(dir.path());
    let server = serve(&path, status).expect("serve");
    assert_eq!(server.path(), path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let reply = ask(&path, b"{\"request\":\"bgp-status\"}\n").await;
    assert_eq!(reply, Reply::BgpStatus(status()));
    // Without a newline, ended by the client's shutdown, is the same request.
    let reply = ask(&path, b"{\"request\":\"bgp-status\"}").await;
    assert_eq!(reply, Reply::BgpStatus(status()));

    drop(server);
    assert!(!path.exists(), "dropping the server removes its socket");
}

#[tokio::test]
async fn bad_requests_get_an_error_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let _server = serve(&path, status).expect("serve");

    let Reply::Error(e) = ask(&path, b"show protocols\n").await else {
        panic!("malformed request answered");
    };
    assert!(e.starts_with("malformed request"), "{e}");

    let Reply::Error(e) = ask(&path, b"{\"request\":\"bgp-peers\"}\n").await else {
        panic!("unknown request answered");
    };
    assert!(e.starts_with("malformed request"), "{e}");

    let huge = vec![b'x'; 10 * MAX_REQUEST_BYTES];
    let Reply::Error(e) = ask(&path, &huge).await else {
        panic!("oversized request answered");
    };
    assert_eq!(e, "request longer than 1024 bytes");

    // A client that connects and goes away without a word.
    drop(UnixStream::connect(&path).await.unwrap());

    assert_eq!(
        ask(&path, b"{\"request\":\"bgp-status\"}\n").await,
        Reply::BgpStatus(status())
    );
}

#[tokio::test]
async fn a_silent_client_is_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let _server = serve(&path, status).expect("serve");
    let mut stream = UnixStream::connect(&path).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply: Reply = serde_json::from_slice(&reply).unwrap();
    assert_eq!(
        reply,
        Reply::Error("timed out waiting for the request".into())
    );
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    // Left behind by a process that died: bound, never removed.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let first = serve(&path, status).expect("stale socket replaced");

    match serve(&path, status) {
        Err(StatusSocketError::InUse(p)) => assert_eq!(p, path),
        other => panic!(
            "expected InUse, got {:?}",
            other.map(|s| s.path().to_path_buf())
        ),
    }
    // The refused second server left the first one's socket alone.
    assert_eq!(
        ask(&path, b"{\"request\":\"bgp-status\"}\n").await,
        Reply::BgpStatus(status())
    );
    drop(first);

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    assert!(matches!(
        serve(&file, status),
        Err(StatusSocketError::NotASocket(_))
    ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
}

#[test]
fn serving_needs_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        serve(dir.path().join("s.sock"), status),
        Err(StatusSocketError::NoRuntime)
    ));
}
