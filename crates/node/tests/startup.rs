//! calico-node as a process inside a test-made host namespace: bad local settings stop it with a clear
//! message before anything is written; an unreachable datastore is retried with backoff (no crash loop)
//! until it appears; a restart reconciles the kernel without deleting anything.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_api::{ObjectMeta, Resource, Spec};
use calico_datastore::Store;
use calico_datastore::client::Client;
use calico_datastore::embedded::EmbeddedStore;
use calico_ipam::block::{ATTR_NODE, AllocationAttribute, Block};
use calico_ipam::model::{Affinity, affinity_key, block_key};
use calico_netlink::Netns;
use calico_testutil::free_port;
use calico_testutil::netns::{ReadChild, TestNetns, require_root, veth_pair};

const NODE: &str = env!("CARGO_BIN_EXE_calico-node");

/// A host namespace with `eth0` (198.18.<subnet>.2/24) cabled to a peer namespace, plus a state dir.
struct Host {
    ns: TestNetns,
    _peer: TestNetns,
    dir: tempfile::TempDir,
}

fn host(subnet: u8) -> Host {
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
        _peer: peer,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Host {
    fn datastore(&self) -> PathBuf {
        self.dir.path().join("datastore.db")
    }

    /// calico-node in this namespace on the embedded store, with `extra` env on top.
    fn command(&self, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns.name(), NODE])
            .env("NODENAME", "testnode")
            .env("CALICO_STATE_DIR", self.dir.path())
            .env("DATASTORE_TYPE", "embedded")
            .env("CALICO_DATASTORE_PATH", self.datastore())
            .env("IP_AUTODETECTION_METHOD", "interface=^eth0$")
            .env("CALICO_IPV4POOL_CIDR", "198.19.0.0/16")
            .env("CALICO_IPV4POOL_VXLAN", "Always")
            .env_remove("ETCD_ENDPOINTS");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run to completion (bounded); returns the exit status and stderr.
    fn run_to_exit(&self, extra: &[(&str, &str)]) -> (ExitStatus, String) {
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

    fn links(&self) -> Vec<String> {
        self.ns.link_names().expect("links")
    }

    fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let ns = Netns::open(&self.ns.path()).ok()?;
        let stream = ns
            .run(|| {
                TcpStream::connect_timeout(&"127.0.0.1:9099".parse().ok()?, Duration::from_secs(1))
                    .ok()
            })
            .ok()??;
        http_request(stream, path)
    }

    fn wait_ready(&self, within: Duration) -> bool {
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

fn http_request(mut stream: TcpStream, path: &str) -> Option<(u16, String)> {
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
struct Running(Option<ReadChild>);

impl Running {
    fn spawn(mut command: Command) -> Running {
        Running(Some(ReadChild::spawn(&mut command).expect("spawn")))
    }

    fn is_running(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| c.try_wait().is_none())
    }

    /// SIGKILL it and return what it wrote to stderr.
    fn stop(mut self) -> String {
        let Some(mut child) = self.0.take() else {
            return String::new();
        };
        child.kill();
        let status = child
            .wait_timeout(Duration::from_secs(5))
            .expect("killed process exits");
        String::from_utf8_lossy(&child.into_output(status).stderr).into_owned()
    }

    fn next_line(&mut self, timeout: Duration) -> Option<String> {
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn open_store(path: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(path).expect("open embedded store"))
}

#[test]
fn no_usable_address_stops_with_a_clear_message_and_writes_nothing() {
    let h = host(31);
    h.ns.ip(&["link", "set", "eth0", "down"])
        .expect("eth0 down");
    let (status, stderr) = h.run_to_exit(&[("IP_AUTODETECTION_METHOD", "first-found")]);
    assert!(
        !status.success(),
        "calico-node should fail; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("found no usable IPv4 address") && stderr.contains("eth0 (down)"),
        "the message should say what was searched; got:\n{stderr}"
    );
    assert!(
        !h.datastore().exists(),
        "nothing may be written to the datastore"
    );
    assert_eq!(h.links(), vec!["lo".to_string(), "eth0".to_string()]);
}

#[test]
fn unknown_interface_is_named_with_the_interfaces_that_exist() {
    let h = host(32);
    let (status, stderr) = h.run_to_exit(&[("IP_AUTODETECTION_METHOD", "interface=eth9")]);
    assert!(!status.success());
    assert!(
        stderr.contains("no interface matches eth9") && stderr.contains("eth0"),
        "got:\n{stderr}"
    );
    assert!(!h.datastore().exists());
}

#[test]
fn a_default_pool_overlapping_the_underlay_is_refused_before_anything_is_written() {
    let h = host(33);
    let (status, stderr) = h.run_to_exit(&[("CALICO_IPV4POOL_CIDR", "198.18.0.0/16")]);
    assert!(!status.success());
    assert!(
        stderr.contains(
            "CALICO_IPV4POOL_CIDR=198.18.0.0/16 overlaps this node's network 198.18.33.0/24"
        ),
        "got:\n{stderr}"
    );
    assert!(!h.datastore().exists());
    assert_eq!(h.links(), vec!["lo".to_string(), "eth0".to_string()]);
    let routes = h.ns.ip(&["route", "show"]).expect("routes");
    assert!(
        !routes.contains("198.19.") && !routes.contains("blackhole"),
        "{routes}"
    );
}

#[test]
fn bad_pool_settings_name_the_variable() {
    let h = host(34);
    let (status, stderr) = h.run_to_exit(&[("CALICO_IPV4POOL_BLOCK_SIZE", "big")]);
    assert!(!status.success());
    assert!(
        stderr.contains("CALICO_IPV4POOL_BLOCK_SIZE=\"big\""),
        "got:\n{stderr}"
    );
    let (status, stderr) = h.run_to_exit(&[("CALICO_IPV4POOL_VXLAN", "Sometimes")]);
    assert!(!status.success());
    assert!(
        stderr.contains("CALICO_IPV4POOL_VXLAN=\"Sometimes\" is not valid"),
        "got:\n{stderr}"
    );
    assert!(!h.datastore().exists());
}

#[test]
fn unreachable_datastore_is_retried_with_backoff_until_it_appears() {
    let h = host(35);
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut running =
        Running::spawn(h.command(&[("DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", &endpoint)]));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        running.is_running(),
        "calico-node must keep retrying, not exit"
    );
    let (code, body) = h.http_get("/readiness").expect("health endpoint answers");
    assert_eq!(code, 503);
    assert!(
        body.contains("unreachable"),
        "readiness should say why: {body}"
    );
    assert_eq!(h.http_get("/liveness").map(|r| r.0), Some(200));
    assert!(!h.links().iter().any(|l| l == "vxlan.calico"));

    // The datastore appears (inside the host namespace, where calico-node can reach it).
    let data = tempfile::tempdir().expect("etcd dir");
    let peer_port = free_port();
    let mut etcd = Command::new("ip");
    etcd.args(["netns", "exec", h.ns.name(), "etcd", "--name", "t"])
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--listen-client-urls",
            &endpoint,
            "--advertise-client-urls",
            &endpoint,
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
            "--initial-cluster",
            &format!("t=http://127.0.0.1:{peer_port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let etcd = Running::spawn(etcd);
    // Backoff doubles from 1 s; after 4 s the next attempt comes within 8 s more.
    assert!(
        h.wait_ready(Duration::from_secs(30)),
        "calico-node did not become ready after etcd appeared"
    );
    let stderr = running.stop();
    drop(etcd);
    let retries = stderr
        .matches("cannot reach the datastore; retrying")
        .count();
    assert!(
        retries >= 2,
        "expected logged retries, got {retries}:\n{stderr}"
    );
    assert!(
        stderr.contains("retry_in=1s") && stderr.contains("retry_in=2s"),
        "backoff should grow:\n{stderr}"
    );
}

#[test]
fn ipip_pool_is_reported_not_fatal() {
    let h = host(36);
    let mut running = Running::spawn(h.command(&[
        ("CALICO_IPV4POOL_VXLAN", "Never"),
        ("CALICO_IPV4POOL_IPIP", "Always"),
    ]));
    assert!(
        h.wait_ready(Duration::from_secs(20)),
        "calico-node should become ready"
    );
    assert!(running.is_running());
    let (code, body) = h.http_get("/readiness").expect("readiness");
    assert_eq!(code, 200);
    assert!(
        body.contains("warning: ") && body.contains("no ipip support"),
        "readiness should carry the IPIP warning: {body}"
    );
    let stderr = running.stop();
    assert!(
        stderr.contains("default-ipv4-ippool") && stderr.contains("no ipip support"),
        "the log should say the kernel cannot do IPIP:\n{stderr}"
    );
}

/// Add a remote node with a VXLAN tunnel address and a block affine to it.
fn add_remote_node(store: &Arc<dyn Store>) {
    let rt = runtime();
    rt.block_on(async {
        let client = Client::new(store.clone());
        let mut spec = calico_api::spec::node::NodeSpec::default();
        spec.bgp = Some(calico_api::spec::node::NodeBGPSpec {
            ipv4_address: Some("198.18.37.9/24".into()),
            ..Default::default()
        });
        spec.ipv4_vxlan_tunnel_addr = "198.19.200.0".into();
        let meta = ObjectMeta {
            name: "remote".into(),
            ..Default::default()
        };
        client
            .create(Resource::new(meta, Spec::Node(spec)))
            .await
            .expect("create remote node");
        let cidr = "198.19.200.0/26".parse().expect("cidr");
        let mut block = Block::new(cidr, Some("host:remote".into()), None);
        let mut attr = AllocationAttribute {
            handle_id: Some("vxlan-tunnel-addr-remote".into()),
            ..Default::default()
        };
        attr.secondary.insert(ATTR_NODE.into(), "remote".into());
        block
            .assign("198.19.200.0".parse().expect("ip"), &attr)
            .expect("assign");
        store
            .create(&block_key(cidr), block.to_json())
            .await
            .expect("block");
        store
            .create(
                &affinity_key("remote", cidr),
                Affinity::confirmed().to_json(),
            )
            .await
            .expect("affinity");
    });
}

#[test]
fn restart_reconciles_without_deleting_anything() {
    let h = host(37);
    let first = Running::spawn(h.command(&[]));
    assert!(
        h.wait_ready(Duration::from_secs(20)),
        "first start not ready"
    );
    add_remote_node(&open_store(&h.datastore()));
    let want = "198.19.200.0/26 via 198.19.200.0 dev vxlan.calico proto 80 onlink";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut routes = String::new();
    while Instant::now() < deadline {
        routes = h.ns.ip(&["route", "show"]).expect("routes");
        if routes.contains(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        routes.contains(want),
        "remote block route missing:\n{routes}"
    );
    let index_before =
        h.ns.ip(&["-o", "link", "show", "vxlan.calico"])
            .expect("vxlan");

    let mut monitor_cmd = Command::new("ip");
    monitor_cmd.args([
        "-n",
        h.ns.name(),
        "monitor",
        "route",
        "link",
        "neigh",
        "address",
    ]);
    let mut monitor = Running::spawn(monitor_cmd);
    std::thread::sleep(Duration::from_millis(200));

    drop(first); // SIGKILL: no chance to clean anything up
    let _second = Running::spawn(h.command(&[]));
    assert!(h.wait_ready(Duration::from_secs(20)), "restart not ready");
    std::thread::sleep(Duration::from_millis(500));

    // Positive control: the monitor does see changes in this namespace.
    h.ns.ip(&["route", "add", "198.18.37.128/25", "dev", "eth0"])
        .expect("control route");
    let mut events = Vec::new();
    while let Some(line) = monitor.next_line(Duration::from_millis(300)) {
        events.push(line);
    }
    assert!(
        events.iter().any(|l| l.starts_with("198.18.37.128/25")),
        "ip monitor saw nothing, so it proves nothing: {events:?}"
    );
    h.ns.ip(&["route", "del", "198.18.37.128/25", "dev", "eth0"])
        .expect("control route removed");
    let deletions: Vec<&String> = events.iter().filter(|l| l.starts_with("Deleted")).collect();
    assert!(
        deletions.is_empty(),
        "a restart must not delete kernel state: {deletions:?}"
    );
    let routes_after = h.ns.ip(&["route", "show"]).expect("routes");
    assert_eq!(routes_after, routes, "routes changed across the restart");
    assert_eq!(
        h.ns.ip(&["-o", "link", "show", "vxlan.calico"])
            .expect("vxlan"),
        index_before,
        "vxlan.calico was recreated or changed"
    );
}
