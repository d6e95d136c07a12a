//! `calicoctl node status`, the real binary against calico-node's real status socket server.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use calico_bgp::session::State;
use calico_bgp::speaker::PeerStatus;
use calico_node::bgp_status::{NodeBgpStatus, PeerKind, node_status_socket, peer_rows, serve};

/// calicoctl with no status socket settings of the caller's, and times in UTC.
fn calicoctl(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calicoctl"));
    cmd.args(args)
        .env_remove("CALICO_NODE_STATUS_SOCKET")
        .env_remove("CALICO_STATE_DIR")
        .env("TZ", "UTC");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_not_running(out: &Output) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), "Calico process is not running.\n");
}

#[test]
fn nothing_listening_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    // No socket at all.
    let out = calicoctl(&["node", "status"])
        .env("CALICO_STATE_DIR", dir.path())
        .output()
        .unwrap();
    assert_not_running(&out);

    // A socket left by a calico-node that was killed.
    let path = node_status_socket(dir.path());
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let out = calicoctl(&["node", "status", "--socket"])
        .arg(&path)
        .output()
        .unwrap();
    assert_not_running(&out);
}

fn peer(address: &str, state: State, since: u64, last_error: Option<&str>) -> PeerStatus {
    PeerStatus {
        address: address.parse().unwrap(),
        port: 179,
        remote_as: 64512,
        state,
        since: UNIX_EPOCH + Duration::from_secs(since),
        last_error: last_error.map(str::to_string),
        router_id: None,
        received: 0,
        accepted: 0,
        advertised: 0,
        initial_routes_received: false,
    }
}

/// Runs `serve` on its own runtime thread for the test's length.
struct Server {
    runtime: tokio::runtime::Runtime,
    socket: Option<calico_node::bgp_status::StatusSocket>,
}

impl Server {
    fn start(path: &Path, status: NodeBgpStatus) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let socket = {
            let _guard = runtime.enter();
            serve(path, move || status.clone()).expect("serve")
        };
        Server {
            runtime,
            socket: Some(socket),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _guard = self.runtime.enter();
        self.socket.take();
    }
}

#[test]
fn round_trip_through_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = node_status_socket(dir.path());
    // 2021-08-07 09:43:25 and 09:50:00 UTC: over 20 hours ago, so shown as dates.
    let rows = peer_rows([
        (
            PeerKind::Mesh,
            peer(
                "198.18.0.13",
                State::Active,
                1_628_329_405,
                Some("received NOTIFICATION 6/2 (administrative shutdown)"),
            ),
        ),
        (
            PeerKind::Mesh,
            peer("198.18.0.12", State::Established, 1_628_329_800, None),
        ),
        (
            PeerKind::Global,
            peer("fd00::1", State::Idle, 1_628_329_800, None),
        ),
    ]);
    let _server = Server::start(
        &path,
        NodeBgpStatus {
            speaker_running: true,
            peers: rows,
        },
    );

    let expected = "\
Calico process is running.

IPv4 BGP status
+--------------+-------------------+-------+------------+--------------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |              INFO              |
+--------------+-------------------+-------+------------+--------------------------------+
| 198.18.0.12  | node-to-node mesh | up    | 2021-08-07 | Established                    |
| 198.18.0.13  | node-to-node mesh | start | 2021-08-07 | Active Received:               |
|              |                   |       |            | Administrative shutdown        |
+--------------+-------------------+-------+------------+--------------------------------+

IPv6 BGP status
+--------------+-----------+-------+------------+------+
| PEER ADDRESS | PEER TYPE | STATE |   SINCE    | INFO |
+--------------+-----------+-------+------------+------+
| fd00::1      | global    | start | 2021-08-07 | Idle |
+--------------+-----------+-------+------------+------+

";
    // Found through the state directory, as on a host (and in `calico-lab exec`).
    let out = calicoctl(&["node", "status"])
        .env("CALICO_STATE_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(text(&out.stderr), "");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), expected);

    // Named directly, which wins over the state directory.
    let out = calicoctl(&["node", "status"])
        .env("CALICO_NODE_STATUS_SOCKET", &path)
        .env("CALICO_STATE_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), expected);
}

#[test]
fn a_node_without_bgp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let _server = Server::start(
        &path,
        NodeBgpStatus {
            speaker_running: false,
            peers: Vec::new(),
        },
    );
    let out = calicoctl(&["node", "status", "--socket"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "Calico process is running.\n\nThe BGP backend process (BIRD) is not running.\n\n"
    );
}

#[test]
fn a_garbled_reply_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 64];
        let _ = stream.read(&mut request);
        stream.write_all(b"0001 BIRD 1.6.8 ready.\n").unwrap();
    });
    let out = calicoctl(&["node", "status", "--socket"])
        .arg(&path)
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("Error querying calico-node on ")
            && stderr.contains("not a status reply"),
        "{stderr}"
    );
}

#[test]
fn times_of_day_are_local() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let rows = peer_rows([(
        PeerKind::Mesh,
        peer("198.18.0.12", State::Established, hour_ago, None),
    )]);
    let _server = Server::start(
        &path,
        NodeBgpStatus {
            speaker_running: true,
            peers: rows,
        },
    );
    // POSIX TZ: "XXX-8" is eight hours east of UTC.
    let local = (hour_ago + 8 * 3600) % 86_400;
    let shown = format!(
        "{:02}:{:02}:{:02}",
        local / 3600,
        local % 3600 / 60,
        local % 60
    );
    let out = calicoctl(&["node", "status", "--socket"])
        .arg(&path)
        .env("TZ", "XXX-8")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "| 198.18.0.12  | node-to-node mesh | up    | {shown} |"
        )),
        "{stdout}"
    );
}
