//! `calico-lab probe`: who reaches whom. From inside each source pod, a real connection to every target
//! pod's probe server ([`crate::serve`]) on one port and protocol, all pairs at once; the outcome of each
//! pair goes into a matrix (rows senders, columns receivers). A pair counts as allowed only when the
//! target's server answers with the target's own name, so a misrouted packet is not taken for a pass.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, UdpSocket};
use tokio::task::JoinSet;

use crate::netns;
use crate::parallel;
use crate::state::{PodState, Transport};

/// A target pod: its name (what its server answers) and address.
type Target = (String, IpAddr);

/// Connects in flight per source pod.
const IN_FLIGHT: usize = 64;
/// Source pods probed at the same time.
const WORKERS: usize = 16;
/// UDP datagrams sent per pair (a lost datagram is not a denial).
const UDP_TRIES: u32 = 3;

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
    pub fn outcome(&self, from: &str, to: &str) -> Option<&Outcome> {
        self.results
            .iter()
            .find(|r| r.from == from && r.to == to)
            .map(|r| &r.outcome)
    }

    /// The matrix as text: a legend, receivers numbered across the top, one row per sender.
    pub fn render(&self) -> String {
        let mut out = format!(
            "probe {}/{}: . allowed, X no answer (dropped), R refused (nothing listens), U unreachable, ? wrong answer, - itself\n",
            self.protocol.name(),
            self.port
        );
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
                        self.outcome(from, to).map_or(' ', Outcome::symbol)
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
    let ns = netns::open(ns_name)?;
    ns.run(move || -> Result<Vec<(String, Outcome)>> {
        // Sockets are made on this thread, inside the pod's namespace.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(runtime.block_on(async move {
            let count = targets.len();
            let mut queue: VecDeque<(usize, Target)> = targets.into_iter().enumerate().collect();
            let mut running = JoinSet::new();
            let mut outcomes: Vec<Option<(String, Outcome)>> = vec![None; count];
            loop {
                while running.len() < IN_FLIGHT
                    && let Some((i, (name, ip))) = queue.pop_front()
                {
                    running.spawn(async move {
                        let addr = SocketAddr::new(ip, port);
                        let outcome = match protocol {
                            Transport::Tcp => tcp(addr, &name, limit).await,
                            Transport::Udp => udp(addr, &name, limit).await,
                        };
                        (i, name, outcome)
                    });
                }
                match running.join_next().await {
                    Some(Ok((i, name, outcome))) => outcomes[i] = Some((name, outcome)),
                    // A probe task cannot panic short of a bug; its pair stays unanswered.
                    Some(Err(_)) => {}
                    None => break,
                }
            }
            outcomes.into_iter().flatten().collect()
        }))
    })?
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
