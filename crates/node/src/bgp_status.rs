//! The BGP status of this node, in BIRD's terms: the rows `calicoctl node status` prints, the text of
//! the readiness check Calico runs on BIRD, peer counts for metrics, and the Unix socket calicoctl asks.
//!
//! The wire types and the socket's path convention are in [`calico_contracts::node_status`], shared
//! with calicoctl; this module turns the speaker's [`PeerStatus`] into them and serves them.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use calico_bgp::session::State;
use calico_bgp::speaker::PeerStatus;
pub use calico_contracts::node_status::{
    Family, IO_TIMEOUT, MAX_REQUEST_BYTES, NodeBgpStatus, PeerKind, PeerRow, ProtocolState, Reply,
    Request, SessionState, node_status_socket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// Connections answered at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// The rows for the speaker's peers, each with the kind the caller knows it by, ordered by address.
pub fn peer_rows(peers: impl IntoIterator<Item = (PeerKind, PeerStatus)>) -> Vec<PeerRow> {
    let mut rows: Vec<PeerRow> = peers
        .into_iter()
        .map(|(kind, peer)| {
            let session = session_state(peer.state);
            PeerRow {
                address: peer.address,
                port: peer.port,
                kind,
                family: Family::of(peer.address),
                state: if session == SessionState::Established {
                    ProtocolState::Up
                } else {
                    ProtocolState::Start
                },
                since: whole_seconds(peer.since),
                session,
                // BIRD forgets the last error once a session is established; until then it shows
                // the one that took the session down or kept it from coming up.
                last_error: match session {
                    SessionState::Established => None,
                    _ => peer.last_error.as_deref().and_then(bird_error),
                },
            }
        })
        .collect();
    rows.sort_by_key(|r| (r.address, r.port));
    rows
}

/// confd's name for where a peering comes from, in the status socket's terms.
pub fn peer_kind(kind: calico_confd::PeerKind) -> PeerKind {
    match kind {
        calico_confd::PeerKind::Mesh => PeerKind::Mesh,
        calico_confd::PeerKind::NodeSpecific => PeerKind::Node,
        calico_confd::PeerKind::Global => PeerKind::Global,
    }
}

/// Rows carry whole seconds, as they travel (and as BIRD shows them), so a row read back from the
/// socket equals the one served.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

pub fn session_state(state: State) -> SessionState {
    match state {
        State::Idle => SessionState::Idle,
        State::Connect => SessionState::Connect,
        State::Active => SessionState::Active,
        State::OpenSent => SessionState::OpenSent,
        State::OpenConfirm => SessionState::OpenConfirm,
        State::Established => SessionState::Established,
    }
}

/// The speaker's last error as BIRD words it: its class (`Socket: `, `Received: `, `BGP Error: `,
/// `Error: `) and text. `None` for an administrative stop, which BIRD does not show.
///
/// The speaker reports errors as text (`calico_bgp`'s `describe`); the forms it writes are matched
/// here, and anything else is shown as a miscellaneous error with its own words.
pub fn bird_error(error: &str) -> Option<String> {
    let error = error.trim();
    if error.is_empty() || error == "administratively stopped" {
        return None;
    }
    if let Some(rest) = error.strip_prefix("received NOTIFICATION ")
        && let Some((code, subcode)) = notification_code(rest)
    {
        return Some(format!("Received: {}", notification_text(code, subcode)));
    }
    if let Some(rest) = error.strip_prefix("sent NOTIFICATION ")
        && let Some((code, subcode)) = notification_code(rest)
    {
        return Some(format!("BGP Error: {}", notification_text(code, subcode)));
    }
    let text = match error {
        "connection closed" => "Socket: Connection closed".to_string(),
        // BIRD sends Hold Timer Expired itself, so it shows it as its own BGP error.
        "hold timer expired" => "BGP Error: Hold timer expired".to_string(),
        "peer restarted" => "Error: Graceful restart".to_string(),
        // The speaker refused the peer's connection (stopped, waiting, or already connected).
        "connection refused" => "BGP Error: Connection rejected".to_string(),
        "connect failed" => "Socket: Connection failed".to_string(),
        "connection collision" => "BGP Error: Connection collision resolution".to_string(),
        _ if error.starts_with("TCP-MD5") => "Error: Kernel MD5 auth failed".to_string(),
        // Socket set-up failures read `<step> for <peer>: <OS error>`: BIRD shows the OS error.
        _ if [
            "socket for ",
            "source address for ",
            "TTL for ",
            "connect failed: ",
        ]
        .iter()
        .any(|p| error.starts_with(p)) =>
        {
            let os_error = error.rsplit_once(": ").map_or(error, |(_, e)| e);
            format!("Socket: {}", without_os_error_number(os_error))
        }
        _ => format!("Error: {}", capitalised(error)),
    };
    Some(text)
}

/// `6/2 (administrative shutdown)` → (6, 2).
fn notification_code(text: &str) -> Option<(u8, u8)> {
    let codes = text.split_whitespace().next()?;
    let (code, subcode) = codes.split_once('/')?;
    Some((code.parse().ok()?, subcode.parse().ok()?))
}

/// BIRD's description of a NOTIFICATION's code and subcode (the RFC 4271, 4486, 6608 and 7313 names as
/// BIRD capitalises them).
fn notification_text(code: u8, subcode: u8) -> String {
    let text = match (code, subcode) {
        (1, 0) => "Invalid message header",
        (1, 1) => "Connection not synchronized",
        (1, 2) => "Bad message length",
        (1, 3) => "Bad message type",
        (2, 0) => "Invalid OPEN message",
        (2, 1) => "Unsupported version number",
        (2, 2) => "Bad peer AS",
        (2, 3) => "Bad BGP identifier",
        (2, 4) => "Unsupported optional parameter",
        (2, 5) => "Authentication failure",
        (2, 6) => "Unacceptable hold time",
        (2, 7) => "Required capability missing",
        (2, 8) => "No supported AFI/SAFI",
        (3, 0) => "Invalid UPDATE message",
        (3, 1) => "Malformed attribute list",
        (3, 2) => "Unrecognized well-known attribute",
        (3, 3) => "Missing mandatory attribute",
        (3, 4) => "Invalid attribute flags",
        (3, 5) => "Invalid attribute length",
        (3, 6) => "Invalid ORIGIN attribute",
        (3, 7) => "AS routing loop",
        (3, 8) => "Invalid NEXT_HOP attribute",
        (3, 9) => "Optional attribute error",
        (3, 10) => "Invalid network field",
        (3, 11) => "Malformed AS_PATH",
        (4, 0) => "Hold timer expired",
        (5, 0) => "Finite state machine error",
        (5, 1) => "Unexpected message in OpenSent state",
        (5, 2) => "Unexpected message in OpenConfirm state",
        (5, 3) => "Unexpected message in Established state",
        (6, 0) => "Cease",
        (6, 1) => "Maximum number of prefixes reached",
        (6, 2) => "Administrative shutdown",
        (6, 3) => "Peer de-configured",
        (6, 4) => "Administrative reset",
        (6, 5) => "Connection rejected",
        (6, 6) => "Other configuration change",
        (6, 7) => "Connection collision resolution",
        (6, 8) => "Out of Resources",
        (7, 0) => "Invalid ROUTE-REFRESH message",
        (7, 1) => "Invalid ROUTE-REFRESH message length",
        _ => return format!("Unknown error {code}.{subcode}"),
    };
    text.to_string()
}

/// `Connection refused (os error 111)` → `Connection refused`, as strerror says it.
fn without_os_error_number(text: &str) -> &str {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How long after start every peering must be up for readiness (calico-node's `-threshold-time`,
/// measured there from the nodename file's modification, i.e. from start-up).
pub const READINESS_THRESHOLD: Duration = Duration::from_secs(30);

/// Why BGP keeps this node from being ready, one line per family with a problem, worded as Calico's
/// readiness check words it (`BIRD is not ready: BGP not established with 10.0.0.2,10.0.0.3`; `BIRD6`
/// for IPv6). Empty when ready.
///
/// As Calico's check: a family without peers is ready; right after start (`all_required`: within
/// [`READINESS_THRESHOLD`] of calico-node's start) every peering must be established, so a rolling update
/// waits for BGP; later one established peering is enough, so a node is not unready because some
/// other nodes are down. The list names every peering not established, in row order.
pub fn not_ready_reasons(rows: &[PeerRow], all_required: bool) -> Vec<String> {
    [(Family::IPv4, "BIRD"), (Family::IPv6, "BIRD6")]
        .into_iter()
        .filter_map(|(family, daemon)| {
            let peers: Vec<&PeerRow> = rows.iter().filter(|r| r.family == family).collect();
            let down: Vec<String> = peers
                .iter()
                .filter(|r| r.session != SessionState::Established)
                .map(|r| r.address.to_string())
                .collect();
            let ready = down.is_empty() || (!all_required && down.len() < peers.len());
            (!ready).then(|| {
                format!(
                    "{daemon} is not ready: BGP not established with {}",
                    down.join(",")
                )
            })
        })
        .collect()
}

/// How many peerings are in each session state, every state present (zero included) so a metric
/// for a state that empties goes to zero rather than keeping its last value.
pub fn peer_counts(rows: &[PeerRow]) -> BTreeMap<SessionState, usize> {
    let mut counts: BTreeMap<SessionState, usize> =
        SessionState::ALL.iter().map(|s| (*s, 0)).collect();
    for row in rows {
        *counts.entry(row.session).or_default() += 1;
    }
    counts
}

#[derive(Debug, thiserror::Error)]
pub enum StatusSocketError {
    #[error("the node status socket must be started inside a tokio runtime")]
    NoRuntime,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0} exists and is not a socket; not replacing it")]
    NotASocket(PathBuf),
    #[error("another process answers on {0}")]
    InUse(PathBuf),
}

/// The running server. Dropping it stops the server and removes its socket file.
pub struct StatusSocket {
    path: PathBuf,
    /// The socket file's (device, inode), so a drop removes only the file this server made.
    file: (u64, u64),
    task: tokio::task::JoinHandle<()>,
}

impl StatusSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        self.task.abort();
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.file && m.file_type().is_socket());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves `source()`'s status on a Unix socket at `path` (see [`calico_contracts::node_status`] for
/// the protocol), created with mode 0600 since it is for root's calicoctl. A socket file left by a
/// process that is gone is replaced; one another process still answers on is not.
///
/// Must be called inside a tokio runtime, whose tasks then answer. `source` is called once per
/// request on that runtime, so it must be quick and must not block: read the latest snapshot (a
/// `tokio::sync::watch` the owner of the speaker refreshes, say), do not query the speaker.
pub fn serve(
    path: impl Into<PathBuf>,
    source: impl Fn() -> NodeBgpStatus + Send + Sync + 'static,
) -> Result<StatusSocket, StatusSocketError> {
    let path = path.into();
    let runtime =
        tokio::runtime::Handle::try_current().map_err(|_| StatusSocketError::NoRuntime)?;
    let io_error = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StatusSocketError::Io { what, path, source }
    };
    remove_stale(&path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    }
    let listener = {
        let _guard = runtime.enter();
        UnixListener::bind(&path).map_err(io_error("binding", &path))?
    };
    // connect(2) on a Unix socket needs write permission: 0600 leaves it to root (and the owner).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error("setting the mode of", &path))?;
    let meta = std::fs::symlink_metadata(&path).map_err(io_error("reading", &path))?;
    let task = runtime.spawn(accept_loop(listener, Arc::new(source)));
    tracing::info!(path = %path.display(), "node status socket listening");
    Ok(StatusSocket {
        path,
        file: (meta.dev(), meta.ino()),
        task,
    })
}

/// Removes a socket file nobody answers on (left by a calico-node that was killed).
fn remove_stale(path: &Path) -> Result<(), StatusSocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StatusSocketError::Io {
                what: "reading",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(StatusSocketError::NotASocket(path.to_path_buf()));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(StatusSocketError::InUse(path.to_path_buf()));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed a stale node status socket");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StatusSocketError::Io {
            what: "removing",
            path: path.to_path_buf(),
            source,
        }),
    }
}

type Source = Arc<dyn Fn() -> NodeBgpStatus + Send + Sync>;

async fn accept_loop(listener: UnixListener, source: Source) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin, and keep serving.
                tracing::warn!(error = %e, "node status socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = source.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &source).await {
                tracing::debug!(error = %e, "node status socket: client went away");
            }
            drop(slot);
        });
    }
}

async fn answer(mut stream: UnixStream, source: &Source) -> io::Result<()> {
    let reply = match tokio::time::timeout(IO_TIMEOUT, read_request(&mut stream)).await {
        Ok(request) => reply_to(&request?, source.as_ref()),
        Err(_) => Reply::Error("timed out waiting for the request".into()),
    };
    let mut text = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    text.push(b'\n');
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&text).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the reply"))?
}

/// Reads up to a newline or the end, but never more than one byte past the limit.
async fn read_request(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 256];
    while request.len() <= MAX_REQUEST_BYTES {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
        if let Some(end) = request.iter().position(|b| *b == b'\n') {
            request.truncate(end + 1);
            break;
        }
    }
    Ok(request)
}

/// The reply to one request's bytes.
fn reply_to(request: &[u8], source: &(dyn Fn() -> NodeBgpStatus + Send + Sync)) -> Reply {
    if request.len() > MAX_REQUEST_BYTES {
        return Reply::Error(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
    }
    match serde_json::from_slice::<Request>(request) {
        Ok(Request::BgpStatus) => Reply::BgpStatus(source()),
        Err(e) => Reply::Error(format!("malformed request: {e}")),
    }
}

#[cfg(test)]
mod tests;
