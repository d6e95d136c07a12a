//! calico-node per host: started detached inside the host's namespace, then polled until its readiness
//! endpoint (127.0.0.1:9099 inside that namespace) answers 200.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::http;
use crate::netns;
use crate::procs;
use crate::state::{DatastoreState, HostState};
use crate::{Backend, Encap};

pub const HEALTH_PORT: u16 = 9099;
pub const POOL_CIDR: &str = "198.19.0.0/16";

/// Starts calico-node for `host`; returns its pid.
pub fn start(
    lab: &str,
    binary: &Path,
    host: &HostState,
    ds: &DatastoreState,
    encap: Encap,
    backend: Backend,
) -> Result<u32> {
    let mut command = netns::exec_command(&host.namespace, binary)?;
    command
        .env("NODENAME", &host.name)
        .env(
            calico_contracts::node_status::STATE_DIR_ENV,
            &host.state_dir,
        )
        .env("IP", "autodetect")
        .env("IP_AUTODETECTION_METHOD", "interface=eth0")
        .env("CALICO_IPV4POOL_CIDR", POOL_CIDR)
        .env("CALICO_IPV4POOL_BLOCK_SIZE", "26")
        .env("CALICO_IPV4POOL_VXLAN", encap.pool_vxlan_mode())
        .env("CALICO_NETWORKING_BACKEND", backend.name())
        .env("CALICO_IPV4POOL_NAT_OUTGOING", "true")
        .env("FELIX_PROMETHEUSMETRICSENABLED", "true")
        .env("FELIX_LOGSEVERITYSCREEN", "info")
        .env_remove("ETCD_ENDPOINTS")
        .env_remove("CALICO_DATASTORE_PATH");
    for (key, value) in ds.env() {
        command.env(key, value);
    }
    let child = procs::spawn_detached(command, lab, Path::new(&host.log))?;
    Ok(child.id())
}

/// Whether calico-node in `host` answers /readiness with 200.
pub fn ready(host: &HostState) -> bool {
    let Ok(ns) = netns::open(&host.namespace) else {
        return false;
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, HEALTH_PORT));
    http::get_status(Some(&ns), addr, "/readiness", Duration::from_millis(500))
        .is_ok_and(|code| code == 200)
}

/// Waits until every host's calico-node is ready, failing early when one exits.
pub fn wait_ready(hosts: &[HostState], limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut pending: Vec<&HostState> = hosts.iter().collect();
    loop {
        let checks: Vec<(bool, bool)> = std::thread::scope(|scope| {
            let handles: Vec<_> = pending
                .iter()
                .map(|host| {
                    scope.spawn(move || {
                        let alive = host.calico_node_pid.is_some_and(procs::alive);
                        (alive, alive && ready(host))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or((false, false)))
                .collect()
        });
        let mut still = Vec::new();
        for (host, (alive, ready)) in pending.into_iter().zip(checks) {
            if !alive {
                bail!(
                    "calico-node on {} exited; its log is {}:\n{}",
                    host.name,
                    host.log,
                    log_tail(Path::new(&host.log), 20)
                );
            }
            if !ready {
                still.push(host);
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = still
                .iter()
                .map(|h| format!("{} (log: {})", h.name, h.log))
                .collect();
            let first = still.first().map(|h| PathBuf::from(&h.log));
            bail!(
                "calico-node not ready within {limit:?} on: {}{}",
                names.join(", "),
                first
                    .map(|p| format!("\nlast lines of {}:\n{}", p.display(), log_tail(&p, 20)))
                    .unwrap_or_default()
            );
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
