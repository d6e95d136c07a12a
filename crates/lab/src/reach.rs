//! Pod-to-pod reachability, probed in-process: from inside the source pod's namespace, a TCP connect to a
//! closed port of the destination. "Connection refused" means the SYN got there and the RST came back.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Result;
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::net::TcpSocket;

use crate::netns;
use crate::parallel;
use crate::state::PodState;

/// Nothing listens on it in a pod.
const PROBE_PORT: u16 = 9;
/// A connect inside one machine answers in well under a millisecond once routes exist; while they are being
/// programmed, short waits that grow per round keep the first rounds from stalling on unready pairs.
const FIRST_CONNECT_LIMIT: Duration = Duration::from_millis(100);
const MAX_CONNECT_LIMIT: Duration = Duration::from_secs(1);
/// Connects in flight per source pod (file descriptors stay well under the usual limits).
const IN_FLIGHT: usize = 64;
/// Source pods probed at the same time.
const WORKERS: usize = 16;

/// Whether a connect to `ip` from the current namespace gets an answer.
async fn answers(ip: IpAddr, limit: Duration) -> bool {
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    };
    let Ok(socket) = socket else { return false };
    match tokio::time::timeout(limit, socket.connect(SocketAddr::new(ip, PROBE_PORT))).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Err(_) => false,
    }
}

/// Of `targets`, the ones that answer from inside namespace `ns_name`.
pub fn probe_from(ns_name: &str, targets: Vec<IpAddr>, limit: Duration) -> Result<Vec<IpAddr>> {
    let answered = netns::run_concurrently(ns_name, targets, IN_FLIGHT, move |ip| async move {
        answers(ip, limit).await.then_some(ip)
    })?;
    Ok(answered.into_iter().flatten().collect())
}

/// Probes every ordered pair of distinct pods until all answer or `limit` passes; returns the pairs
/// (source name, destination name) that never answered.
pub fn full_mesh(pods: &[PodState], limit: Duration) -> Result<Vec<(String, String)>> {
    let deadline = Instant::now() + limit;
    let ips: Vec<IpAddr> = pods.iter().map(|p| p.ip).collect();
    // pending[i] = destinations source i has not reached yet.
    let mut pending: Vec<BTreeSet<usize>> = (0..pods.len())
        .map(|i| (0..pods.len()).filter(|j| *j != i).collect())
        .collect();
    // Each round's connect limit: FIRST_CONNECT_LIMIT doubling up to MAX_CONNECT_LIMIT.
    let mut limits = ExponentialBuilder::new()
        .with_min_delay(FIRST_CONNECT_LIMIT)
        .with_max_delay(MAX_CONNECT_LIMIT)
        .with_factor(2.0)
        .without_max_times()
        .build();
    loop {
        let limit = limits.next().unwrap_or(MAX_CONNECT_LIMIT);
        let sources: Vec<usize> = (0..pods.len())
            .filter(|i| !pending[*i].is_empty())
            .collect();
        let probed = parallel::map(sources, WORKERS, |source| {
            let targets: Vec<IpAddr> = pending[source].iter().map(|j| ips[*j]).collect();
            probe_from(&pods[source].namespace, targets, limit).map(|reached| (source, reached))
        })?;
        for result in probed {
            let (source, reached) = result?;
            pending[source].retain(|j| !reached.contains(&ips[*j]));
        }
        let left: usize = pending.iter().map(BTreeSet::len).sum();
        if left == 0 {
            return Ok(Vec::new());
        }
        if Instant::now() >= deadline {
            return Ok(pending
                .iter()
                .enumerate()
                .flat_map(|(i, dests)| {
                    dests
                        .iter()
                        .map(move |j| (pods[i].name.clone(), pods[*j].name.clone()))
                })
                .collect());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
