//! calico-node's status socket, which `calicoctl node status` asks: where it is and what is said on it.
//!
//! Calico's calicoctl asks BIRD's control socket (`show protocols`) and reformats the rows; calico-node
//! runs its own BGP speaker, so it answers on its own socket with the rows already in BIRD's terms.
//!
//! The protocol: one connection, one request, one reply. The client writes one line of JSON,
//! [`Request`] (`{"request":"bgp-status"}`), at most [`MAX_REQUEST_BYTES`] bytes with the newline, or
//! shuts down its writing side after it; the server writes one JSON [`Reply`] and closes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state::DEFAULT_STATE_DIR;

/// The socket's file name in calico-node's state directory.
pub const NODE_STATUS_SOCKET: &str = "node-status.sock";

/// `<DEFAULT_STATE_DIR>/<NODE_STATUS_SOCKET>`.
pub const DEFAULT_NODE_STATUS_SOCKET_PATH: &str = "/var/lib/calico/node-status.sock";

/// Names the socket itself, before any state directory: for tests, and for several nodes on one
/// machine.
pub const NODE_STATUS_SOCKET_ENV: &str = "CALICO_NODE_STATUS_SOCKET";

/// calico-node's state directory setting, which calicoctl reads too to find the socket.
pub const STATE_DIR_ENV: &str = "CALICO_STATE_DIR";

/// A request longer than this (newline included) is refused.
pub const MAX_REQUEST_BYTES: usize = 1024;

/// How long either side waits for the other's bytes, as calicoctl waits for BIRD.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The status socket in a state directory.
pub fn node_status_socket(state_dir: &Path) -> PathBuf {
    state_dir.join(NODE_STATUS_SOCKET)
}

/// Where calicoctl looks: [`NODE_STATUS_SOCKET_ENV`] if set, else the socket in [`STATE_DIR_ENV`]'s
/// directory if set, else the default. Takes the lookup as an argument so it is testable.
pub fn node_status_socket_from(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(path) = set(NODE_STATUS_SOCKET_ENV) {
        return PathBuf::from(path);
    }
    match set(STATE_DIR_ENV) {
        Some(dir) => node_status_socket(Path::new(&dir)),
        None => node_status_socket(Path::new(DEFAULT_STATE_DIR)),
    }
}

/// The most of a reply read: far more than any node's peers take, and a bound on a broken server.
pub const MAX_REPLY_BYTES: u64 = 16 << 20;

/// Why the status socket gave no status.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Nothing listens: calico-node is not running (or left its socket behind when killed).
    #[error("Calico process is not running.")]
    NotRunning,
    /// The socket is root's (mode 0600), as BIRD's is.
    #[error("Need super user privileges: Operation not permitted")]
    PermissionDenied,
    #[error("Error querying calico-node on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Error querying calico-node on {path}: not a status reply")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("Error querying calico-node on {path}: {message}")]
    Refused { path: PathBuf, message: String },
}

/// Asks the calico-node serving `path` for its BGP status, as `calicoctl node status` does.
pub fn query(path: &Path) -> Result<NodeBgpStatus, QueryError> {
    use std::io::{ErrorKind, Read, Write};
    let io = |source: std::io::Error| QueryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => QueryError::NotRunning,
        ErrorKind::PermissionDenied => QueryError::PermissionDenied,
        _ => io(e),
    })?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let mut request =
        serde_json::to_vec(&Request::BgpStatus).map_err(|source| QueryError::Malformed {
            path: path.to_path_buf(),
            source,
        })?;
    request.push(b'\n');
    stream.write_all(&request).map_err(io)?;
    let mut reply = Vec::new();
    stream
        .take(MAX_REPLY_BYTES)
        .read_to_end(&mut reply)
        .map_err(io)?;
    match serde_json::from_slice(&reply).map_err(|source| QueryError::Malformed {
        path: path.to_path_buf(),
        source,
    })? {
        Reply::BgpStatus(status) => Ok(status),
        Reply::Error(message) => Err(QueryError::Refused {
            path: path.to_path_buf(),
            message,
        }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    BgpStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    BgpStatus(NodeBgpStatus),
    /// The request was not understood (too long, not JSON, unknown) or could not be answered.
    Error(String),
}

/// This node's BGP peerings, as `calicoctl node status` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBgpStatus {
    /// False when calico-node runs no BGP speaker (VXLAN-only networking): calicoctl then says so, as
    /// Calico's does when BIRD is not running.
    #[serde(default = "yes")]
    pub speaker_running: bool,
    pub peers: Vec<PeerRow>,
}

fn yes() -> bool {
    true
}

/// One peering, in the terms of BIRD's `show protocols`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    pub address: IpAddr,
    pub port: u16,
    pub kind: PeerKind,
    /// The table it is listed in: the family of the peer's address.
    pub family: Family,
    pub state: ProtocolState,
    /// When the session entered its current state.
    #[serde(with = "unix_seconds")]
    pub since: SystemTime,
    pub session: SessionState,
    /// The last error as BIRD words it (`Socket: Connection refused`, `Received: Administrative
    /// shutdown`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl PeerRow {
    /// The INFO column: the session state and the last error, single-spaced as calicoctl joins BIRD's
    /// words.
    pub fn info(&self) -> String {
        let mut words = vec![self.session.to_string()];
        if let Some(error) = &self.last_error {
            words.extend(error.split_whitespace().map(str::to_string));
        }
        words.join(" ")
    }
}

/// How calico-node came to peer with this address (Calico's `Mesh_`, `Node_` and `Global_` protocol
/// names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// Another Calico node of the full mesh.
    Mesh,
    /// A BGPPeer that selects this node (by `node` or `nodeSelector`).
    Node,
    /// A BGPPeer for every node.
    Global,
}

impl PeerKind {
    /// The PEER TYPE column.
    pub fn display_name(self) -> &'static str {
        match self {
            PeerKind::Mesh => "node-to-node mesh",
            PeerKind::Node => "node specific",
            PeerKind::Global => "global",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    IPv4,
    IPv6,
}

impl Family {
    pub fn of(address: IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::IPv4,
            IpAddr::V6(_) => Family::IPv6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::IPv4 => "IPv4",
            Family::IPv6 => "IPv6",
        })
    }
}

/// BIRD's protocol state (the STATE column): `up` once the session is established, `start` while it is
/// being brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolState {
    Up,
    Start,
}

impl std::fmt::Display for ProtocolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProtocolState::Up => "up",
            ProtocolState::Start => "start",
        })
    }
}

/// The BGP session state (RFC 4271 §8), named as BIRD names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SessionState {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl SessionState {
    pub const ALL: [SessionState; 6] = [
        SessionState::Idle,
        SessionState::Connect,
        SessionState::Active,
        SessionState::OpenSent,
        SessionState::OpenConfirm,
        SessionState::Established,
    ];
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionState::Idle => "Idle",
            SessionState::Connect => "Connect",
            SessionState::Active => "Active",
            SessionState::OpenSent => "OpenSent",
            SessionState::OpenConfirm => "OpenConfirm",
            SessionState::Established => "Established",
        })
    }
}

/// A time as whole seconds since the Unix epoch: what BIRD shows has no finer grain, and any client
/// reads a plain number.
mod unix_seconds {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        // A clock before 1970 is shown as the epoch rather than failing the whole reply.
        let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        s.serialize_u64(secs)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let secs = u64::deserialize(d)?;
        UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| serde::de::Error::custom("time out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_is_the_state_dir_and_file_name() {
        assert_eq!(
            DEFAULT_NODE_STATUS_SOCKET_PATH,
            format!("{DEFAULT_STATE_DIR}/{NODE_STATUS_SOCKET}")
        );
        assert_eq!(
            node_status_socket_from(|_| None),
            PathBuf::from(DEFAULT_NODE_STATUS_SOCKET_PATH)
        );
    }

    #[test]
    fn the_socket_setting_wins_over_the_state_dir() {
        let env = |name: &str| match name {
            NODE_STATUS_SOCKET_ENV => Some("/tmp/x.sock".to_string()),
            STATE_DIR_ENV => Some("/run/lab/node1".to_string()),
            _ => None,
        };
        assert_eq!(node_status_socket_from(env), PathBuf::from("/tmp/x.sock"));
        let env = |name: &str| (name == STATE_DIR_ENV).then(|| "/run/lab/node1".to_string());
        assert_eq!(
            node_status_socket_from(env),
            PathBuf::from("/run/lab/node1/node-status.sock")
        );
        // Set but empty counts as unset, as a shell's `X= calicoctl …` means.
        let env = |_: &str| Some(String::new());
        assert_eq!(
            node_status_socket_from(env),
            PathBuf::from(DEFAULT_NODE_STATUS_SOCKET_PATH)
        );
    }

    #[test]
    fn wire_format() {
        let request: Request = serde_json::from_str(r#"{"request":"bgp-status"}"#).unwrap();
        assert_eq!(request, Request::BgpStatus);
        assert!(serde_json::from_str::<Request>(r#"{"request":"show-protocols"}"#).is_err());

        let row = PeerRow {
            address: "10.0.0.2".parse().unwrap(),
            port: 179,
            kind: PeerKind::Mesh,
            family: Family::IPv4,
            state: ProtocolState::Start,
            since: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            session: SessionState::Active,
            last_error: Some("Socket: Connection refused".into()),
        };
        let reply = Reply::BgpStatus(NodeBgpStatus {
            speaker_running: true,
            peers: vec![row.clone()],
        });
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            text,
            r#"{"bgpStatus":{"speakerRunning":true,"peers":[{"address":"10.0.0.2","port":179,"kind":"mesh","family":"IPv4","state":"start","since":1700000000,"session":"Active","lastError":"Socket: Connection refused"}]}}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        assert_eq!(row.info(), "Active Socket: Connection refused");
        assert_eq!(
            serde_json::to_string(&Reply::Error("bad".into())).unwrap(),
            r#"{"error":"bad"}"#
        );
    }
}
