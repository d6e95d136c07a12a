//! The lab's datastore: an embedded store file, or an etcd server in the root namespace plus a relay that
//! makes it reachable at the same loopback address from inside every host namespace.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calico_datastore::config::{DatastoreConfig, OpenMode};
use calico_datastore::etcd::EtcdConfig;

use crate::http;
use crate::paths::{Lab, system_binary};
use crate::procs;
use crate::state::{DatastoreKind, DatastoreState};

/// How long etcd and the relay may take to come up.
const START_LIMIT: Duration = Duration::from_secs(15);

/// The `calico_datastore` connection for a lab's store (as seen from the root namespace).
pub fn config(ds: &DatastoreState) -> DatastoreConfig {
    match ds.kind {
        DatastoreKind::Embedded => DatastoreConfig::Embedded {
            path: ds.path.clone().unwrap_or_default().into(),
        },
        DatastoreKind::Etcd => DatastoreConfig::Etcd(EtcdConfig {
            endpoints: vec![ds.endpoint.clone().unwrap_or_default()],
            ..EtcdConfig::default()
        }),
    }
}

/// Creates the embedded store file (so its schema exists before several calico-nodes open it at once).
pub fn init_embedded(lab: &Lab) -> Result<DatastoreState> {
    let path = lab.datastore_file();
    let ds = DatastoreState {
        kind: DatastoreKind::Embedded,
        path: Some(path.display().to_string()),
        endpoint: None,
    };
    create_embedded(&path)?;
    Ok(ds)
}

/// Creates the embedded store at `path` (with its directory) unless a store is already there; a file that
/// is not a store is refused and left alone.
pub fn create_embedded(path: &Path) -> Result<()> {
    let cfg = DatastoreConfig::Embedded {
        path: path.to_path_buf(),
    };
    runtime()?
        .block_on(cfg.connect(OpenMode::Create))
        .with_context(|| format!("creating the embedded datastore {}", path.display()))?;
    Ok(())
}

/// Runs `work` with a client of the lab's datastore, on a runtime of its own.
pub fn with_client<F, Fut, T>(ds: &DatastoreState, work: F) -> Result<T>
where
    F: FnOnce(calico_datastore::client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    runtime()?.block_on(async {
        let store = config(ds)
            .connect(calico_datastore::config::OpenMode::MustExist)
            .await
            .context("connecting to the datastore")?;
        work(calico_datastore::client::Client::new(store)).await
    })
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A loopback port free in the root namespace right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("picking a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A running etcd: its pid and client URL.
pub struct Etcd {
    pub pid: u32,
    pub port: u16,
}

/// Starts etcd on 127.0.0.1 (root namespace) with its data and log under the lab's directory.
pub fn start_etcd(lab: &Lab) -> Result<Etcd> {
    let binary = if Path::new("/usr/bin/etcd").is_file() {
        "/usr/bin/etcd".into()
    } else {
        system_binary("etcd", "etcd-server")?
    };
    let dir = lab.etcd_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("etcd.log");
    let mut last_error = None;
    // Another process may grab a port between our pick and etcd's bind: then etcd exits and we retry.
    for _attempt in 0..3 {
        let client = free_port()?;
        let peer = free_port()?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut command = Command::new(&binary);
        command
            .arg(format!("--name={}", lab.name))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}={peer_url}", lab.name))
            .arg("--initial-cluster-state=new");
        let mut child = procs::spawn_detached(command, &lab.name, &log)?;
        let pid = child.id();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, client));
        let deadline = Instant::now() + START_LIMIT;
        let outcome = loop {
            if let Some(status) = child.try_wait()? {
                break Err(anyhow::anyhow!("etcd exited with {status}"));
            }
            if http::get_status(None, addr, "/health", Duration::from_millis(500))
                .is_ok_and(|code| code == 200)
            {
                break Ok(());
            }
            if Instant::now() >= deadline {
                procs::stop(&[pid], Duration::from_secs(2));
                break Err(anyhow::anyhow!("etcd not healthy after {START_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match outcome {
            Ok(()) => return Ok(Etcd { pid, port: client }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(dir.join("data"));
                last_error = Some(e);
            }
        }
    }
    let e = last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start"));
    bail!("{e}; see {}", log.display())
}

/// Starts the relay (`calico-lab relay`) for `host_namespaces` and waits until it listens in all of them.
pub fn start_relay(lab: &Lab, port: u16, host_namespaces: &[String]) -> Result<u32> {
    let exe = std::env::current_exe().context("locating calico-lab")?;
    let mut command = Command::new(exe);
    command
        .args(["relay", "--name", &lab.name, "--port", &port.to_string()])
        .args(host_namespaces);
    procs::spawn_until_ready(
        command,
        &lab.name,
        &lab.dir().join("relay.log"),
        &lab.dir().join("relay.ready"),
        START_LIMIT,
        "the etcd relay",
    )
}
