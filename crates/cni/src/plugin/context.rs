//! What every verb needs: the parsed invocation, the node's name, the MTU, the datastore and the IPAM lock.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use calico_datastore::config::{DEFAULT_EMBEDDED_PATH, DatastoreConfig, OpenMode};
use calico_datastore::etcd::EtcdConfig;
use calico_datastore::{Store, StoreError};

use crate::spec::{CniEnv, CniError, CniVersion, DatastoreType, NetConf};

use super::names::{Workload, handle_id, host_iface_name, workload_endpoint_name};

pub const DEFAULT_NODENAME_FILE: &str = calico_contracts::state::DEFAULT_NODENAME_PATH;
pub const DEFAULT_MTU_FILE: &str = calico_contracts::state::DEFAULT_MTU_PATH;
pub const DEFAULT_IPAM_LOCK_FILE: &str = "/var/run/calico/ipam.lock";
pub const DEFAULT_MTU: u32 = 1500;
/// How long an invocation waits for the host's IPAM lock before going ahead without it.
const IPAM_LOCK_WAIT: Duration = Duration::from_secs(90);

/// One plugin invocation.
pub struct Invocation {
    pub env: CniEnv,
    pub conf: NetConf,
    pub version: CniVersion,
    /// The network config exactly as received (handed on to a delegated IPAM plugin).
    pub stdin: Vec<u8>,
}

/// Plugin error with a CNI code; `Other` for failures with no code of their own in the spec.
pub const CODE_PLUGIN_FAILURE: u32 = 100;

pub fn failure(msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError::new(CODE_PLUGIN_FAILURE, msg, details)
}

/// A datastore error as the runtime should see it: unreachable means "try again later" (11).
pub fn store_error(what: &str, e: &StoreError) -> CniError {
    match e {
        StoreError::Unavailable(_) => CniError::new(
            CniError::TRY_AGAIN_LATER,
            format!("datastore unavailable while {what}"),
            e.to_string(),
        ),
        _ => CniError::new(
            CniError::IO_FAILURE,
            format!("datastore error while {what}"),
            e.to_string(),
        ),
    }
}

impl Invocation {
    /// The node name: `nodename` in the config, else the node-name file (written by calico-node), else the
    /// host name.
    pub fn node_name(&self) -> Result<String, CniError> {
        if let Some(n) = self.conf.nodename.as_deref().filter(|n| !n.is_empty()) {
            return Ok(n.to_string());
        }
        let file = self
            .conf
            .nodename_file
            .clone()
            .unwrap_or_else(|| DEFAULT_NODENAME_FILE.to_string());
        match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
            _ => {}
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_lowercase())
            .unwrap_or_default();
        if host.is_empty() {
            return Err(CniError::invalid_config(
                "cannot determine the node name",
                format!("set \"nodename\" in the network config or write it to {file}"),
            ));
        }
        Ok(host)
    }

    /// Where calico-node writes the pod MTU (`mtu_file`); its other files for the plugin sit beside it.
    fn mtu_file(&self) -> &str {
        self.conf
            .raw
            .get("mtu_file")
            .and_then(|v| v.as_str())
            .unwrap_or(DEFAULT_MTU_FILE)
    }

    /// The pod's MTU: the config's `mtu`, or (0/absent) the value calico-node writes, else 1500.
    pub fn mtu(&self) -> Result<u32, CniError> {
        if self.conf.mtu > 0 {
            return Ok(self.conf.mtu);
        }
        let file = self.mtu_file().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse::<u32>().map_err(|_| {
                CniError::invalid_config(
                    format!("{file} does not hold an MTU"),
                    text.trim().to_string(),
                )
            }),
            Err(e) if self.conf.require_mtu_file => Err(CniError::io_failure(
                format!("cannot read the MTU file {file}"),
                e.to_string(),
            )),
            Err(_) => Ok(DEFAULT_MTU),
        }
    }

    /// The IPv4 GSO/GRO maximum for the pod's interfaces that calico-node writes beside the MTU file
    /// (the uplink's BIG TCP size); 0 (leave the kernel's default) when it is absent or says 0.
    pub fn gso_ipv4_max(&self) -> Result<u32, CniError> {
        let file = Path::new(self.mtu_file())
            .parent()
            .unwrap_or(Path::new("."))
            .join(calico_contracts::state::GSO_IPV4_MAX_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse::<u32>().map_err(|_| {
                CniError::invalid_config(
                    format!("{} does not hold a size in bytes", file.display()),
                    text.trim().to_string(),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(CniError::io_failure(
                format!("cannot read {}", file.display()),
                e.to_string(),
            )),
        }
    }

    /// Kubernetes pod (pod arguments present) or plain CNI container.
    pub fn workload(&self) -> Workload {
        match (
            &self.env.args.k8s_pod_namespace,
            &self.env.args.k8s_pod_name,
        ) {
            (Some(ns), Some(pod)) if !ns.is_empty() && !pod.is_empty() => Workload::Kubernetes {
                namespace: ns.clone(),
                pod: pod.clone(),
            },
            _ => Workload::Cni {
                container_id: self.env.container_id.clone(),
            },
        }
    }

    pub fn handle(&self) -> String {
        handle_id(&self.conf.name, &self.env.container_id)
    }

    pub fn host_iface(&self) -> String {
        host_iface_name(&self.workload())
    }

    pub fn endpoint_name(&self, node: &str) -> String {
        workload_endpoint_name(node, &self.workload(), &self.env.ifname)
    }

    /// Which datastore the config points at. Fields in the config win; without `datastore_type` the
    /// environment (`DATASTORE_TYPE`, `ETCD_ENDPOINTS`, ...) decides, as for calicoctl.
    pub fn datastore(&self) -> Result<DatastoreConfig, CniError> {
        let configured = self.conf.raw.get("datastore_type").is_some();
        if !configured && std::env::var_os("DATASTORE_TYPE").is_some() {
            let vars: BTreeMap<String, String> = std::env::vars().collect();
            return DatastoreConfig::from_env(vars).map_err(|e| {
                CniError::invalid_config("invalid datastore environment", e.to_string())
            });
        }
        match self.conf.datastore_type {
            DatastoreType::Etcdv3 => {
                let endpoints: Vec<String> = self
                    .conf
                    .etcd_endpoints
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if endpoints.is_empty() {
                    return Err(CniError::invalid_config(
                        "invalid network config: etcd_endpoints: required when datastore_type is etcdv3",
                        "",
                    ));
                }
                Ok(DatastoreConfig::Etcd(EtcdConfig {
                    endpoints,
                    ca_cert_file: self.conf.etcd_ca_cert_file.as_ref().map(PathBuf::from),
                    cert_file: self.conf.etcd_cert_file.as_ref().map(PathBuf::from),
                    key_file: self.conf.etcd_key_file.as_ref().map(PathBuf::from),
                    ..EtcdConfig::default()
                }))
            }
            DatastoreType::Embedded => {
                let path = self
                    .conf
                    .datastore_path
                    .clone()
                    .or_else(|| std::env::var("CALICO_DATASTORE_PATH").ok())
                    .unwrap_or_else(|| DEFAULT_EMBEDDED_PATH.to_string());
                Ok(DatastoreConfig::Embedded {
                    path: PathBuf::from(path),
                })
            }
        }
    }

    /// Open the datastore. The plugin is a client: it never creates an embedded store (calico-node does),
    /// so a missing or empty file is an error naming the path, and STATUS writes nothing.
    pub async fn connect(&self) -> Result<Arc<dyn Store>, CniError> {
        let cfg = self.datastore()?;
        // No probe round trip: the first real request reports an unreachable datastore just as well.
        cfg.connect_unverified(OpenMode::MustExist)
            .await
            .map_err(|e| store_error(&format!("connecting to {}", cfg.describe()), &e))
    }

    pub fn ipam_lock_path(&self) -> PathBuf {
        PathBuf::from(
            self.conf
                .ipam_lock_file
                .clone()
                .unwrap_or_else(|| DEFAULT_IPAM_LOCK_FILE.to_string()),
        )
    }
}

/// The host-wide IPAM lock (as Calico takes it). It only makes concurrent invocations on one host take
/// turns instead of racing on the same block; correctness never depends on it, so failing to take it is
/// logged and ignored.
pub struct IpamLock {
    _file: Option<File>,
}

impl IpamLock {
    pub fn acquire(path: &Path) -> IpamLock {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the IPAM lock file; going on without it");
                return IpamLock { _file: None };
            }
        };
        // A blocking flock wakes as soon as the holder lets go (polling would burn the CPU the holder and
        // the datastore need when hundreds of invocations queue up); a helper thread bounds the wait.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let locked = file.lock();
            // If the waiter gave up, the file (and any lock) is dropped here.
            let _ = tx.send((file, locked));
        });
        match rx.recv_timeout(IPAM_LOCK_WAIT) {
            Ok((file, Ok(()))) => IpamLock { _file: Some(file) },
            Ok((_, Err(e))) => {
                tracing::warn!(path = %path.display(), error = %e, "IPAM lock not taken; going on without it");
                IpamLock { _file: None }
            }
            Err(_) => {
                tracing::warn!(path = %path.display(), "IPAM lock still busy after {IPAM_LOCK_WAIT:?}; going on without it");
                IpamLock { _file: None }
            }
        }
    }
}
