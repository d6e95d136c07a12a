//! `calico-lab probe`: who reaches whom. From inside each source pod, a real connection to every target
//! pod's probe server ([`crate::serve`]) on one port and protocol, all pairs at once (SCTP, which the
//! kernel may lack, as an INIT from a raw socket that the server must answer with an INIT-ACK naming
//! itself, see [`crate::sctp`]); the outcome of each
//! pair goes into a matrix (rows senders, columns receivers). A pair counts as allowed only when the
//! target's server answers with the target's own name, so a misrouted packet is not taken for a pass.

use std::fmt::Write as _;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrIn, recvfrom, recvmsg, sendto, setsockopt, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, UdpSocket};

use crate::netns;
use crate::parallel;
use crate::sctp;
use crate::serve;
use crate::state::{PodState, Transport};

/// A target pod: its name (what its server answers) and address.
type Target = (String, IpAddr);

/// Connects in flight per source pod.
const IN_FLIGHT: usize = 64;
/// Source pods probed at the same time.
const WORKERS: usize = 16;
/// UDP datagrams (or SCTP INITs) sent per pair (a lost datagram is not a denial).
const UDP_TRIES: u32 = 3;
/// How long the SCTP prober waits for a packet before it looks at its retries and error queue.
const SCTP_POLL_MS: i64 = 10;

/// What happened to one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The target's server answered with its name.
    Allowed,
    /// No answer within the limit: dropped on the way (as policy drops).
    Denied,
    /// The target answered with a reset or port unreachable: it got there, nothing listens.
    Refused,
    /// An ICMP error (no route, host or network unreachable) came back.
    Unreachable,
    /// Something answered, but not the target's server.
    WrongAnswer(String),
}

impl Outcome {
    pub fn symbol(&self) -> char {
        match self {
            Outcome::Allowed => '.',
            Outcome::Denied => 'X',
            Outcome::Refused => 'R',
            Outcome::Unreachable => 'U',
            Outcome::WrongAnswer(_) => '?',
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PairResult {
    pub from: String,
    pub to: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Serialize)]
pub struct Matrix {
    pub protocol: Transport,
    pub port: u16,
    pub from: Vec<String>,
    pub to: Vec<String>,
    /// Every pair of a sender and a different receiver, senders in order, then receivers.
    pub results: Vec<PairResult>,
}

impl Matrix {
    /// The matrix as text: a legend, receivers numbered across the top, one row per sender.
    pub fn render(&self) -> String {
        let mut out = format!(
            "probe {}/{}: . allowed, X no answer (dropped), R refused (nothing listens), U unreachable, ? wrong answer, - itself\n",
            self.protocol.name(),
            self.port
        );
        // Looked up once per cell: a matrix of a few hundred pods has tens of thousands of pairs.
        let by_pair: std::collections::HashMap<(&str, &str), &Outcome> = self
            .results
            .iter()
            .map(|r| ((r.from.as_str(), r.to.as_str()), &r.outcome))
            .collect();
        let width = self.from.iter().map(String::len).max().unwrap_or(0);
        let number_width = self.to.len().to_string().len();
        for (i, to) in self.to.iter().enumerate() {
            let _ = writeln!(out, "  {:>number_width$} = {to}", i + 1);
        }
        let header: Vec<String> = (1..=self.to.len())
            .map(|i| format!("{i:>number_width$}"))
            .collect();
        let _ = writeln!(out, "{:width$}  {}", "", header.join(" "));
        for from in &self.from {
            let cells: Vec<String> = self
                .to
                .iter()
                .map(|to| {
                    let symbol = if from == to {
                        '-'
                    } else {
                        by_pair
                            .get(&(from.as_str(), to.as_str()))
                            .map_or(' ', |o| o.symbol())
                    };
                    format!("{symbol:>number_width$}")
                })
                .collect();
            let _ = writeln!(out, "{from:width$}  {}", cells.join(" "));
        }
        out
    }
}

/// Probes every pair of a pod in `from` and a different pod in `to`.
pub fn probe(
    from: &[PodState],
    to: &[PodState],
    protocol: Transport,
    port: u16,
    limit: Duration,
) -> Result<Matrix> {
    let targets: Vec<Target> = to.iter().map(|p| (p.name.clone(), p.ip)).collect();
    let jobs: Vec<(String, String, Vec<Target>)> = from
        .iter()
        .map(|source| {
            let mine: Vec<Target> = targets
                .iter()
                .filter(|(name, _)| *name != source.name)
                .cloned()
                .collect();
            (source.name.clone(), source.namespace.clone(), mine)
        })
        .collect();
    let per_source = parallel::map(jobs, WORKERS, |(name, namespace, mine)| {
        probe_from(&namespace, mine, protocol, port, limit)
            .map(|outcomes| (name, outcomes))
            .with_context(|| format!("probing from {namespace}"))
    })?;
    let mut results = Vec::new();
    for source in per_source {
        let (name, outcomes) = source?;
        for (to, outcome) in outcomes {
            results.push(PairResult {
                from: name.clone(),
                to,
                outcome,
            });
        }
    }
    Ok(Matrix {
        protocol,
        port,
        from: from.iter().map(|p| p.name.clone()).collect(),
        to: to.iter().map(|p| p.name.clone()).collect(),
        results,
    })
}

/// The outcome for each of `targets`, probed from inside namespace `ns_name`, in `targets`' order.
fn probe_from(
    ns_name: &str,
    targets: Vec<Target>,
    protocol: Transport,
    port: u16,
    limit: Duration,
) -> Result<Vec<(String, Outcome)>> {
    if protocol == Transport::Sctp {
        return netns::open(ns_name)?.run(move || sctp_probe(targets, port, limit))?;
    }
    netns::run_concurrently(ns_name, targets, IN_FLIGHT, move |(name, ip)| async move {
        let addr = SocketAddr::new(ip, port);
        let outcome = match protocol {
            Transport::Tcp => tcp(addr, &name, limit).await,
            Transport::Udp => udp(addr, &name, limit).await,
            // Probed above, from one raw socket.
            Transport::Sctp => Outcome::Unreachable,
        };
        (name, outcome)
    })
}

fn from_error(e: &std::io::Error) -> Outcome {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => Outcome::Refused,
        ErrorKind::TimedOut => Outcome::Denied,
        _ => Outcome::Unreachable,
    }
}

fn judge(answer: &[u8], expected: &str) -> Outcome {
    let text = String::from_utf8_lossy(answer).trim().to_string();
    if text == expected {
        Outcome::Allowed
    } else {
        Outcome::WrongAnswer(text)
    }
}

async fn tcp(addr: SocketAddr, expected: &str, limit: Duration) -> Outcome {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => return from_error(&e),
    };
    let work = async {
        let mut stream = socket.connect(addr).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(answer)) => judge(&answer, expected),
        Ok(Err(e)) => from_error(&e),
        Err(_) => Outcome::Denied,
    }
}

async fn udp(addr: SocketAddr, expected: &str, limit: Duration) -> Outcome {
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => return from_error(&e),
    };
    // Connected, so an ICMP port unreachable comes back as an error on the socket.
    if let Err(e) = socket.connect(addr).await {
        return from_error(&e);
    }
    let wait = limit / UDP_TRIES;
    let mut buf = [0u8; 512];
    for _ in 0..UDP_TRIES {
        if let Err(e) = socket.send(b"probe").await {
            return from_error(&e);
        }
        match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => return judge(&buf[..n], expected),
            Ok(Err(e)) => return from_error(&e),
            Err(_) => continue,
        }
    }
    Outcome::Denied
}

/// One SCTP probe in flight.
struct SctpProbe {
    name: String,
    ip: Option<Ipv4Addr>,
    source_port: u16,
    tag: u32,
    sent: u32,
    outcome: Option<Outcome>,
}

/// The outcome for each of `targets` over SCTP, from this thread's namespace: one raw socket sends
/// every target an INIT (again after a third of `limit` without an answer, three times in all) and
/// takes the answers, matched on the target's address and port, our port and our tag: an INIT-ACK
/// whose State Cookie is the target's name is allowed, an ABORT refused, an ICMP error (read from
/// the socket's error queue) unreachable, nothing denied.
fn sctp_probe(targets: Vec<Target>, port: u16, limit: Duration) -> Result<Vec<(String, Outcome)>> {
    let socket = serve::sctp_socket()?;
    setsockopt(&socket, sockopt::Ipv4RecvErr, &true).context("setting IP_RECVERR")?;
    setsockopt(
        &socket,
        sockopt::ReceiveTimeout,
        &TimeVal::milliseconds(SCTP_POLL_MS),
    )
    .context("setting SO_RCVTIMEO")?;
    let fd = socket.as_raw_fd();
    let mut probes: Vec<SctpProbe> = targets
        .into_iter()
        .map(|(name, ip)| {
            let ip = match ip {
                IpAddr::V4(ip) => Some(ip),
                IpAddr::V6(_) => None,
            };
            SctpProbe {
                name,
                ip,
                source_port: rand::random_range(1024..=u16::MAX),
                // An initiate tag is never 0.
                tag: rand::random::<u32>().max(1),
                sent: 0,
                // The probe speaks SCTP over IPv4 only.
                outcome: if ip.is_none() {
                    Some(Outcome::Unreachable)
                } else {
                    None
                },
            }
        })
        .collect();
    let start = Instant::now();
    let wait = limit / UDP_TRIES;
    let mut buf = [0u8; 2048];
    loop {
        let now = start.elapsed();
        for probe in probes.iter_mut().filter(|p| p.outcome.is_none()) {
            let Some(ip) = probe.ip else { continue };
            if probe.sent < UDP_TRIES && now >= wait * probe.sent {
                probe.sent += 1;
                let init = sctp::init(probe.source_port, port, probe.tag);
                let to = SockaddrIn::from(SocketAddrV4::new(ip, 0));
                if sendto(fd, &init, &to, MsgFlags::empty()).is_err() {
                    probe.outcome = Some(Outcome::Unreachable);
                }
            }
        }
        if now >= limit || probes.iter().all(|p| p.outcome.is_some()) {
            break;
        }
        // An error is a timeout, or an ICMP error pending: the error queue below says which.
        if let Ok((n, _)) = recvfrom::<SockaddrIn>(fd, &mut buf)
            && let Some(packet) = buf.get(..n).and_then(sctp::parse_ipv4)
            && let Some(probe) = probes.iter_mut().find(|p| {
                p.outcome.is_none()
                    && p.ip == Some(packet.source)
                    && packet.source_port == port
                    && packet.destination_port == p.source_port
                    && packet.verification_tag == p.tag
            })
        {
            probe.outcome = match packet.chunk {
                sctp::Chunk::InitAck { cookie, .. } => Some(judge(&cookie, &probe.name)),
                sctp::Chunk::Abort { .. } => Some(Outcome::Refused),
                _ => None,
            };
        }
        for (destination, quoted) in icmp_errors(&socket) {
            if let Some(probe) = probes.iter_mut().find(|p| {
                p.outcome.is_none()
                    && p.ip == Some(destination)
                    && quoted == (p.source_port, port, 0)
            }) {
                probe.outcome = Some(Outcome::Unreachable);
            }
        }
    }
    Ok(probes
        .into_iter()
        .map(|p| (p.name, p.outcome.unwrap_or(Outcome::Denied)))
        .collect())
}

/// The ICMP errors waiting in a raw SCTP socket's error queue: the destination of the packet each is
/// about, and that packet's ports and verification tag.
fn icmp_errors(socket: &OwnedFd) -> Vec<(Ipv4Addr, (u16, u16, u32))> {
    let mut found = Vec::new();
    let mut data = [0u8; 512];
    let mut control = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in);
    loop {
        let mut iov = [IoSliceMut::new(&mut data)];
        let (destination, bytes, is_icmp) = match recvmsg::<SockaddrIn>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => (
                msg.address.map(|a| a.ip()),
                msg.bytes,
                msg.cmsgs().is_ok_and(|mut c| {
                    c.any(|c| matches!(c, ControlMessageOwned::Ipv4RecvErr(..)))
                }),
            ),
            Err(_) => break,
        };
        if let (Some(destination), true) = (destination, is_icmp)
            && let Some(quoted) = data.get(..bytes).and_then(sctp::quoted_header)
        {
            found.push((destination, quoted));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(results: &[(&str, &str, Outcome)]) -> Matrix {
        Matrix {
            protocol: Transport::Tcp,
            port: 80,
            from: vec!["a".into(), "b".into()],
            to: vec!["a".into(), "b".into()],
            results: results
                .iter()
                .map(|(f, t, o)| PairResult {
                    from: f.to_string(),
                    to: t.to_string(),
                    outcome: o.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_matrix_puts_senders_in_rows_and_receivers_in_columns() {
        let m = matrix(&[("a", "b", Outcome::Allowed), ("b", "a", Outcome::Denied)]);
        let text = m.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "  1 = a");
        assert_eq!(lines[2], "  2 = b");
        assert_eq!(lines[3], "   1 2");
        assert_eq!(lines[4], "a  - .");
        assert_eq!(lines[5], "b  X -");
    }

    #[test]
    fn only_the_targets_own_name_counts_as_allowed() {
        assert_eq!(judge(b"node1-pod1\n", "node1-pod1"), Outcome::Allowed);
        assert_eq!(
            judge(b"node2-pod1\n", "node1-pod1"),
            Outcome::WrongAnswer("node2-pod1".into())
        );
        assert_eq!(
            judge(b"", "node1-pod1"),
            Outcome::WrongAnswer(String::new())
        );
    }
}
