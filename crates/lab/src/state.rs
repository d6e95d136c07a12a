//! The lab's state file (`/run/calico-lab/<name>/state.json`), written atomically, and the per-lab lock that
//! serialises commands changing it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::paths::{Lab, STATE_ROOT};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DatastoreKind {
    Embedded,
    Etcd,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatastoreState {
    pub kind: DatastoreKind,
    /// The embedded store's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// etcd's client URL (the same inside host namespaces, through the relay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl DatastoreState {
    /// The environment calico-node, calicoctl and friends need to reach this store.
    pub fn env(&self) -> Vec<(String, String)> {
        match self.kind {
            DatastoreKind::Embedded => vec![
                ("DATASTORE_TYPE".into(), "embedded".into()),
                (
                    "CALICO_DATASTORE_PATH".into(),
                    self.path.clone().unwrap_or_default(),
                ),
            ],
            DatastoreKind::Etcd => vec![
                ("DATASTORE_TYPE".into(), "etcdv3".into()),
                (
                    "ETCD_ENDPOINTS".into(),
                    self.endpoint.clone().unwrap_or_default(),
                ),
            ],
        }
    }

    /// `export ...` line for a shell.
    pub fn export_line(&self) -> String {
        let pairs: Vec<String> = self.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("export {}", pairs.join(" "))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostState {
    pub name: String,
    pub namespace: String,
    /// Underlay address without prefix length.
    pub address: String,
    /// calico-node's state dir (nodename, mtu files), also holding its log and the CNI config.
    pub state_dir: String,
    pub log: String,
    pub cni_conf: String,
    #[serde(default)]
    pub calico_node_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub host: String,
    pub namespace: String,
    pub netns: String,
    pub ip: IpAddr,
    pub container_id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The pod's Kubernetes namespace (its WorkloadEndpoint's namespace, profile `kns.<namespace>`).
    #[serde(default = "default_pod_namespace")]
    pub k8s_namespace: String,
    /// Named ports in its WorkloadEndpoint (served by its probe server besides [`SERVED_PORT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PodPort>,
    /// The pod's probe server (`calico-lab serve-pod`), answering on its ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_pid: Option<u32>,
}

/// The port every pod's probe server answers on (TCP and UDP), besides the pod's named ports.
pub const SERVED_PORT: u16 = 80;

fn default_pod_namespace() -> String {
    crate::cni::POD_NAMESPACE.to_string()
}

/// A transport protocol the probe server answers and `calico-lab probe` tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
    /// SCTP, which this kernel may not have: the probe speaks it over raw IP sockets
    /// ([`crate::sctp`]).
    Sctp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Sctp => "sctp",
        }
    }

    /// Calico's protocol name (`TCP`, `UDP`, `SCTP`), as in a WorkloadEndpoint's ports.
    pub fn calico_name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
            Transport::Sctp => "SCTP",
        }
    }

    pub fn parse(text: &str) -> Option<Transport> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Some(Transport::Tcp),
            "udp" => Some(Transport::Udp),
            "sctp" => Some(Transport::Sctp),
            _ => None,
        }
    }
}

/// A named port of a pod: `http=8080/tcp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPort {
    pub name: String,
    pub port: u16,
    pub protocol: Transport,
}

impl PodPort {
    /// `name=port/proto[,name=port/proto...]` (the protocol defaults to tcp).
    pub fn parse_list(text: &str) -> anyhow::Result<Vec<PodPort>> {
        let mut ports = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, rest) = item
                .split_once('=')
                .with_context(|| format!("port {item:?}: expected name=port/protocol"))?;
            let (number, protocol) = rest.split_once('/').unwrap_or((rest, "tcp"));
            let port: u16 =
                number.parse().ok().filter(|p| *p > 0).with_context(|| {
                    format!("port {item:?}: {number:?} is not a port (1-65535)")
                })?;
            let protocol = Transport::parse(protocol).with_context(|| {
                format!("port {item:?}: protocol {protocol:?} is not tcp, udp or sctp")
            })?;
            if name.is_empty()
                || name.len() > 15
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                anyhow::bail!(
                    "port {item:?}: a port name is 1-15 lower-case letters, digits or '-'"
                );
            }
            if ports.iter().any(|p: &PodPort| p.name == name) {
                anyhow::bail!("port {item:?}: the name {name:?} is given twice");
            }
            ports.push(PodPort {
                name: name.to_string(),
                port,
                protocol,
            });
        }
        Ok(ports)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pids {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<u32>,
}

/// The stages `up` times, in the order they run; the keys of [`State::timings_ms`].
pub const STAGES: [&str; 6] = [
    "underlay",
    "datastore",
    "calico_node",
    "pods",
    "reachability",
    "total",
];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub encap: String,
    /// calico-node's networking backend; absent in state files written before `--backend` existed
    /// (then the encapsulation's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// How many hosts (the first ones) are route reflectors.
    #[serde(default)]
    pub route_reflectors: usize,
    pub underlay: UnderlayState,
    pub datastore: DatastoreState,
    pub hosts: Vec<HostState>,
    pub pods: Vec<PodState>,
    pub pids: Pids,
    /// Stage name ([`STAGES`]) → milliseconds.
    #[serde(default)]
    pub timings_ms: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnderlayState {
    pub namespace: String,
    pub bridge: String,
    pub address: String,
}

impl State {
    pub fn host(&self, name: &str) -> Option<&HostState> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn pod(&self, name: &str) -> Option<&PodState> {
        self.pods.iter().find(|p| p.name == name)
    }

    /// Reads the state file; Ok(None) when there is none.
    pub fn load(lab: &Lab) -> Result<Option<State>> {
        let path = lab.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let state = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        Ok(Some(state))
    }

    /// Reads the state file, which must exist.
    pub fn load_required(lab: &Lab) -> Result<State> {
        State::load(lab)?.with_context(|| {
            format!(
                "lab {:?} is not up (no {}): start it with `calico-lab up --name {}`",
                lab.name,
                lab.state_file().display(),
                lab.name
            )
        })
    }

    /// Writes the state file atomically (a temporary file renamed over it).
    pub fn save(&self, lab: &Lab) -> Result<()> {
        let path = lab.state_file();
        let temp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)?;
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temp)?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

/// How long a command waits for another one on the same lab.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// An exclusive lock on one lab, held until dropped, so two commands never edit its state at once.
pub struct LabLock {
    _file: File,
}

impl LabLock {
    pub fn acquire(lab: &Lab) -> Result<LabLock> {
        std::fs::create_dir_all(STATE_ROOT).with_context(|| format!("creating {STATE_ROOT}"))?;
        let path = lab.lock_file();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Bounded: a command stuck on this lab must not make every later one hang silently.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(LabLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !told {
                        eprintln!(
                            "waiting for another calico-lab command working on lab {:?}...",
                            lab.name
                        );
                        told = true;
                    }
                    if std::time::Instant::now() >= deadline {
                        anyhow::bail!(
                            "another calico-lab command has been working on lab {:?} for over {LOCK_WAIT:?} (lock {})",
                            lab.name,
                            path.display()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
    }
}

/// Whether a path exists (errors count as "no").
pub fn exists(path: &Path) -> bool {
    path.try_exists().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_take_tcp_udp_and_sctp() {
        let ports = PodPort::parse_list("http=8080,dns=53/udp,assoc=9000/SCTP").unwrap();
        let protocols: Vec<(&str, u16, &str)> = ports
            .iter()
            .map(|p| (p.name.as_str(), p.port, p.protocol.calico_name()))
            .collect();
        assert_eq!(
            protocols,
            [
                ("http", 8080, "TCP"),
                ("dns", 53, "UDP"),
                ("assoc", 9000, "SCTP")
            ]
        );
        let error = PodPort::parse_list("x=1/icmp").unwrap_err().to_string();
        assert!(error.contains("is not tcp, udp or sctp"), "{error}");
    }
}
