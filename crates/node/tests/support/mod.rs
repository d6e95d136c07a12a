//! The harness the calico-node process tests share: a host namespace cabled to a peer, calico-node run
//! inside it on an embedded store, and its health endpoint read from inside the namespace.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_datastore::Store;
use calico_datastore::embedded::EmbeddedStore;
use calico_netlink::Netns;
use calico_testutil::netns::{ReadChild, TestNetns, require_root, veth_pair};

pub const NODE: &str = env!("CARGO_BIN_EXE_calico-node");

/// A host namespace with `eth0` (198.18.<subnet>.2/24) cabled to a peer namespace, plus a state dir.
pub struct Host {
    pub ns: TestNetns,
    /// The namespace at the other end of `eth0` (198.18.<subnet>.1).
    pub peer: TestNetns,
    pub dir: tempfile::TempDir,
}

pub fn host(subnet: u8) -> Host {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let ns = TestNetns::new("cn-host").expect("host netns");
    let peer = TestNetns::new("cn-peer").expect("peer netns");
    veth_pair(
        &ns,
        "eth0",
        &format!("198.18.{subnet}.2/24"),
        &peer,
        "peer0",
        &format!("198.18.{subnet}.1/24"),
    )
    .expect("veth");
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        &format!("198.18.{subnet}.1"),
    ])
    .expect("default route");
    Host {
        ns,
        peer,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Host {
    pub fn datastore(&self) -> PathBuf {
        self.dir.path().join("datastore.db")
    }

    /// calico-node in this namespace on the embedded store, with `extra` env on top.
    pub fn command(&self, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns.name(), NODE])
            .env("NODENAME", "testnode")
            .env("CALICO_STATE_DIR", self.dir.path())
            .env("DATASTORE_TYPE", "embedded")
            .env("CALICO_DATASTORE_PATH", self.datastore())
            .env("IP_AUTODETECTION_METHOD", "interface=^eth0$")
            .env("CALICO_IPV4POOL_CIDR", "198.19.0.0/16")
            .env("CALICO_IPV4POOL_VXLAN", "Always")
            // A VXLAN cluster, as Calico's `vxlan` backend: these tests add nodes that do not exist,
            // which BGP would wait for. The BGP side has its own tests.
            .env("CALICO_NETWORKING_BACKEND", "vxlan")
            .env_remove("ETCD_ENDPOINTS");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run to completion (bounded); returns the exit status and stderr.
    pub fn run_to_exit(&self, extra: &[(&str, &str)]) -> (ExitStatus, String) {
        let mut child = ReadChild::spawn(&mut self.command(extra)).expect("spawn calico-node");
        let status = child
            .wait_timeout(Duration::from_secs(20))
            .unwrap_or_else(|| {
                child.kill();
                panic!("calico-node did not exit within 20 s");
            });
        let out = child.into_output(status);
        (status, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    pub fn links(&self) -> Vec<String> {
        self.ns.link_names().expect("links")
    }

    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let ns = Netns::open(&self.ns.path()).ok()?;
        let stream = ns
            .run(|| {
                TcpStream::connect_timeout(&"127.0.0.1:9099".parse().ok()?, Duration::from_secs(1))
                    .ok()
            })
            .ok()??;
        http_request(stream, path)
    }

    pub fn wait_ready(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if matches!(self.http_get("/readiness"), Some((200, _))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

pub fn http_request(mut stream: TcpStream, path: &str) -> Option<(u16, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// A running process (calico-node or etcd), killed on drop.
pub struct Running(Option<ReadChild>);

impl Running {
    pub fn spawn(mut command: Command) -> Running {
        Running(Some(ReadChild::spawn(&mut command).expect("spawn")))
    }

    pub fn is_running(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| c.try_wait().is_none())
    }

    /// SIGKILL it and return what it wrote to stderr.
    pub fn stop(mut self) -> String {
        let Some(mut child) = self.0.take() else {
            return String::new();
        };
        child.kill();
        let status = child
            .wait_timeout(Duration::from_secs(5))
            .expect("killed process exits");
        String::from_utf8_lossy(&child.into_output(status).stderr).into_owned()
    }

    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.0.as_mut()?.next_line(timeout)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // `ip netns exec` execs into the program, so the child pid is the program itself.
        if let Some(child) = self.0.as_mut() {
            child.kill();
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn open_store(path: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(path).expect("open embedded store"))
}

/// A real etcd inside `host`'s namespace serving `endpoint` (`http://127.0.0.1:PORT`), where calico-node
/// can reach it; killed on drop, its data directory removed with the returned guard.
pub fn etcd_in(host: &Host, endpoint: &str) -> (Running, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("etcd dir");
    let peer_port = calico_testutil::free_port();
    let mut etcd = Command::new("ip");
    etcd.args(["netns", "exec", host.ns.name(), "etcd", "--name", "t"])
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--listen-client-urls",
            endpoint,
            "--advertise-client-urls",
            endpoint,
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
            "--initial-cluster",
            &format!("t=http://127.0.0.1:{peer_port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    (Running::spawn(etcd), data)
}

impl Running {
    /// The process id (`ip netns exec` execs into the program, so this is the program itself).
    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(ReadChild::id)
    }
}
