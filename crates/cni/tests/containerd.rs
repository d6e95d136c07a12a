//! The plugin under a real CNI client: containerd's `ctr run --cni --rm`, with libcni reading a
//! conflist and calling `calico` (and `calico-ipam`) the way a node's runtime does. Containers get
//! addresses from a Calico pool, reach each other, chained reference plugins (portmap, bandwidth,
//! tuning) work on top of Calico's result, and `--rm`'s DEL (with an empty netns path) leaves nothing
//! behind: no veth, route, WorkloadEndpoint, IPAM handle, iptables rule, container or mount.
//!
//! Needs root, containerd, runc, busybox-static, containernetworking-plugins, iptables and etcd
//! (scripts/setup.sh), and calicoctl built next to the plugin (`cargo build -p calicoctl`).
//! Pools: 198.18.32.0/20 only.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use calico_datastore::config::{DatastoreConfig, OpenMode};
use calico_ipam::Ipam;
use calico_testutil::containerd::{Containerd, copy_reference_plugins};
use calico_testutil::etcd_binary;
use calico_testutil::netns::{TestNetns, require_binary, run_with_timeout};
use common::{Datastore, Host, calicoctl_binary, plugin_binary};
use serde_json::{Value, json};

/// The pool every test here allocates from (inside this file's 198.18.32.0/20).
const POOL_CIDR: &str = "198.18.32.0/22";
/// The start of the pool's addresses, to spot leftover routes.
const POOL_PREFIX: &str = "198.18.3";
/// An address of the host netns (on lo, outside the pool) that portmap's DNAT answers on.
const HOST_ADDRESS: &str = "198.18.47.1";
/// The etcd client URL inside a test's host netns (private to it, so a fixed port is safe).
const NETNS_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";

/// Bounds for the steps of a scenario.
const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(20);
const CONTAINER_TIMEOUT: Duration = Duration::from_secs(30);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// A simulated node running containerd: host netns (with the proxy-ARP route), plugin and config
/// dirs for libcni, and a datastore.
struct Node {
    host: Host,
    datastore: Datastore,
    network: String,
    conf_dir: PathBuf,
    bin_dir: PathBuf,
}

impl Node {
    /// A node whose CNI bin dir holds copies of the plugin as `calico` and `calico-ipam` (copies,
    /// not links: only the bin dir is mounted where ctr looks for plugins).
    fn new(prefix: &str, network: &str, datastore: impl FnOnce(&Host) -> Datastore) -> Node {
        let host = Host::new(prefix, &format!("{prefix}-node"));
        let conf_dir = host.dir.path().join("net.d");
        let bin_dir = host.dir.path().join("ctr-bin");
        for dir in [&conf_dir, &bin_dir] {
            fs::create_dir_all(dir).expect("create dir");
        }
        for name in ["calico", "calico-ipam"] {
            fs::copy(plugin_binary(), bin_dir.join(name)).expect("copy the plugin");
        }
        let datastore = datastore(&host);
        Node {
            host,
            datastore,
            network: network.to_string(),
            conf_dir,
            bin_dir,
        }
    }

    /// Calico's entry of the conflist: the plugin with its own datastore, log and lock in the
    /// node's temp dir.
    fn calico_plugin(&self) -> Value {
        let mut plugin = json!({
            "type": "calico",
            "nodename": self.host.node,
            "log_file_path": self.host.log_file(),
            "log_level": "debug",
            "ipam_lock_file": self.host.dir.path().join("ipam.lock"),
            "mtu": 1450,
            "ipam": {"type": "calico-ipam"},
        });
        if let (Value::Object(plugin), Value::Object(fields)) =
            (&mut plugin, self.datastore.conf_fields())
        {
            plugin.extend(fields);
        }
        plugin
    }

    /// Writes the conflist ctr will read from /etc/cni/net.d.
    fn write_conflist(&self, plugins: Vec<Value>) {
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": plugins,
        });
        fs::write(
            self.conf_dir.join("10-calico.conflist"),
            serde_json::to_string_pretty(&conflist).expect("conflist"),
        )
        .expect("write conflist");
    }

    fn start_containerd(&self) -> Containerd {
        let clock = Instant::now();
        let containerd = self.start_harness();
        containerd
            .import_busybox()
            .unwrap_or_else(|err| panic!("cannot import busybox: {err}"));
        eprintln!(
            "{}: containerd start and busybox import took {:?}",
            self.network,
            clock.elapsed()
        );
        containerd
    }

    fn start_harness(&self) -> Containerd {
        Containerd::start(self.host.netns.name(), &self.conf_dir, &self.bin_dir)
            .unwrap_or_else(|err| panic!("cannot start containerd: {err}"))
    }

    /// calicoctl against this node's datastore, run inside the host netns (where an etcd of the
    /// node is reachable); output whatever its status.
    fn calicoctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(tool("ip", "iproute2"));
        command
            .args(["netns", "exec", self.host.netns.name()])
            .arg(calicoctl_binary())
            .args(args);
        for (key, value) in self.datastore.calicoctl_env() {
            command.env(key, value);
        }
        run_with_timeout(&mut command, TOOL_TIMEOUT).unwrap_or_else(|err| panic!("{err}"))
    }

    /// calicoctl that must succeed; its stdout.
    fn calicoctl_ok(&self, args: &[&str]) -> String {
        let output = self.calicoctl(args);
        assert!(
            output.status.success(),
            "calicoctl {} failed: {}",
            args.join(" "),
            output_text(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn create_pool(&self) {
        let file = self.host.dir.path().join("pool.yaml");
        fs::write(
            &file,
            format!(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: ctrd-pool\nspec:\n  cidr: {POOL_CIDR}\n  blockSize: 26\n"
            ),
        )
        .expect("write pool");
        self.calicoctl_ok(&["apply", "-f", &file.display().to_string()]);
    }

    /// `calicoctl get workloadendpoints -o wide` (namespace default, where plain CNI puts them).
    fn workload_endpoints(&self) -> String {
        self.calicoctl_ok(&["get", "workloadendpoints", "-o", "wide"])
    }

    /// IDs of the IPAM handles in the datastore. The embedded file is read with the IPAM library;
    /// an etcd inside the host netns is read with etcdctl from there (raw Calico keys).
    fn ipam_handles(&self) -> Vec<String> {
        match &self.datastore {
            Datastore::Embedded(path) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async {
                    let store = DatastoreConfig::Embedded { path: path.clone() }
                        .connect(OpenMode::MustExist)
                        .await
                        .expect("open the embedded datastore");
                    Ipam::new(store)
                        .handles()
                        .await
                        .expect("list IPAM handles")
                        .into_iter()
                        .map(|handle| handle.handle_id)
                        .collect()
                })
            }
            Datastore::Etcd(endpoint) => {
                let etcdctl = tool("etcdctl", "etcd-client");
                let endpoints = format!("--endpoints={endpoint}");
                let output = self
                    .host
                    .netns
                    .exec(&[
                        &tool("env", "coreutils"),
                        "ETCDCTL_API=3",
                        &etcdctl,
                        &endpoints,
                        "get",
                        "--prefix",
                        "--keys-only",
                        calico_ipam::model::HANDLE_PREFIX,
                    ])
                    .unwrap_or_else(|err| panic!("{err}"));
                assert!(output.status.success(), "etcdctl: {}", output_text(&output));
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .filter_map(|key| key.strip_prefix(calico_ipam::model::HANDLE_PREFIX))
                    .map(str::to_string)
                    .collect()
            }
        }
    }

    fn cali_links(&self) -> Vec<String> {
        self.links_starting("cali")
    }

    fn links_starting(&self, prefix: &str) -> Vec<String> {
        self.host
            .links()
            .into_iter()
            .filter(|name| name.starts_with(prefix))
            .collect()
    }

    /// Waits (bounded) until no link with `prefix` is left: the kernel removes a veth whose peer was
    /// in a container netns asynchronously once that netns is gone.
    fn wait_no_links_starting(&self, prefix: &str) -> Vec<String> {
        let deadline = Instant::now() + CLEANUP_TIMEOUT;
        loop {
            let left = self.links_starting(prefix);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `iptables -t nat -S` in the host netns.
    fn nat_rules(&self) -> String {
        let iptables = tool("iptables", "iptables");
        self.host
            .netns
            .exec_ok(&[&iptables, "-w", "5", "-t", "nat", "-S"])
            .unwrap_or_else(|err| panic!("{err}"))
    }

    fn tc_qdiscs(&self, device: &str) -> String {
        let tc = tool("tc", "iproute2");
        self.host
            .netns
            .exec_ok(&[&tc, "qdisc", "show", "dev", device])
            .unwrap_or_else(|err| panic!("{err}"))
    }
}

/// An etcd of the node, started inside its host netns: the plugin runs there (containerd starts it
/// there), and a loopback etcd of the machine's own netns is not reachable from it.
struct NetnsEtcd {
    child: Child,
    dir: tempfile::TempDir,
}

impl NetnsEtcd {
    fn start(netns: &TestNetns) -> NetnsEtcd {
        let etcd = etcd_binary().expect("etcd not found: install etcd-server (scripts/setup.sh)");
        let dir = tempfile::Builder::new()
            .prefix("calico-ctrd-etcd-")
            .tempdir()
            .expect("temp dir");
        let log = fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let peer = "http://127.0.0.1:2380";
        // `ip netns exec` execs etcd in place, so this child is etcd itself.
        let child = Command::new(tool("ip", "iproute2"))
            .args(["netns", "exec", netns.name()])
            .arg(etcd)
            .arg("--name=default")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={NETNS_ETCD_ENDPOINT}"))
            .arg(format!("--advertise-client-urls={NETNS_ETCD_ENDPOINT}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let mut etcd = NetnsEtcd { child, dir };
        let health = format!("{NETNS_ETCD_ENDPOINT}/health");
        let busybox = tool("busybox", "busybox-static");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                panic!("etcd exited ({status}):\n{}", etcd.log_tail());
            }
            let answer = netns.exec(&[&busybox, "wget", "-q", "-O", "-", &health]);
            if answer.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("true")) {
                return etcd;
            }
            assert!(
                Instant::now() < deadline,
                "etcd in netns {} not healthy in time:\n{}",
                netns.name(),
                etcd.log_tail()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for NetnsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The full path of a tool the test needs (failing clearly when it is missing).
fn tool(name: &str, package: &str) -> String {
    require_binary(name, package)
        .unwrap_or_else(|err| panic!("{err}"))
        .display()
        .to_string()
}

fn output_text(output: &Output) -> String {
    format!(
        "({}) stdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The IPv4 address in a line of `ip -4 -o addr show dev eth0`.
fn parse_eth0_address(line: &str) -> String {
    line.split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address in {line:?}"))
        .to_string()
}

/// The container IDs libcni holds cached ADD results for (what it passed as CNI_CONTAINERID).
fn cached_container_ids(containerd: &Containerd) -> Vec<String> {
    let Ok(entries) = fs::read_dir(containerd.cni_cache_dir().join("results")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| {
            let text = fs::read_to_string(entry.path()).expect("read cached result");
            let cached: Value = serde_json::from_str(&text).expect("cached result is JSON");
            cached["containerId"]
                .as_str()
                .unwrap_or_else(|| panic!("no containerId in {text}"))
                .to_string()
        })
        .collect()
}

/// Asserts that the host has exactly one `cali` veth, with Calico's MAC and a /32 route to `ip`.
fn assert_wired(node: &Node, ip: &str) -> String {
    let calis = node.cali_links();
    assert_eq!(calis.len(), 1, "one cali veth expected: {calis:?}");
    let cali = calis[0].clone();
    let link = node
        .host
        .netns
        .ip(&["-o", "link", "show", "dev", &cali])
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        link.contains("link/ether ee:ee:ee:ee:ee:ee"),
        "host veth without Calico's MAC: {link}"
    );
    let route = node
        .host
        .netns
        .ip(&["route", "show", &format!("{ip}/32")])
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        route.contains(&format!("dev {cali}")),
        "no /32 route to {ip} via {cali}: {route:?}"
    );
    cali
}

/// Asserts the datastore holds container `cni_id`'s endpoint and handle, and IPAM sees `ip` in use.
fn assert_recorded(node: &Node, cni_id: &str, ip: &str, cali: &str) {
    let endpoints = node.workload_endpoints();
    assert!(
        endpoints
            .lines()
            .any(|line| line.contains(&format!("{ip}/32"))
                && line.contains(cali)
                && line.contains(cni_id)),
        "no WorkloadEndpoint for {cni_id} with {ip} on {cali}:\n{endpoints}"
    );
    let handle = format!("{}.{cni_id}", node.network);
    let handles = node.ipam_handles();
    assert!(
        handles.contains(&handle),
        "IPAM handle {handle} missing: {handles:?}"
    );
    let shown = node.calicoctl_ok(&["ipam", "show", &format!("--ip={ip}")]);
    assert!(shown.contains("in use"), "ipam show --ip={ip}: {shown}");
}

/// Asserts nothing of the plugin or of the containers is left on the node.
fn assert_nothing_left(node: &Node, containerd: &Containerd) {
    let clock = Instant::now();
    assert_eq!(
        node.wait_no_links_starting("cali"),
        Vec::<String>::new(),
        "cali veths left"
    );
    let routes = node.host.routes();
    assert!(
        !routes.contains(POOL_PREFIX),
        "routes to pool addresses left:\n{routes}"
    );
    let handles: Vec<String> = node
        .ipam_handles()
        .into_iter()
        .filter(|handle| handle.starts_with(&format!("{}.", node.network)))
        .collect();
    assert_eq!(handles, Vec::<String>::new(), "IPAM handles left");
    let endpoints = node.workload_endpoints();
    assert_eq!(
        endpoints.lines().count(),
        1,
        "WorkloadEndpoints left (only the header expected):\n{endpoints}"
    );
    let check = node.calicoctl_ok(&["ipam", "check"]);
    assert!(
        check.contains("found 0 problems"),
        "calicoctl ipam check:\n{check}"
    );
    assert_eq!(
        containerd.list_ids("tasks").expect("tasks"),
        Vec::<String>::new()
    );
    assert_eq!(
        containerd.list_ids("containers").expect("containers"),
        Vec::<String>::new()
    );
    assert_eq!(
        containerd.nsfs_mounts().expect("mountinfo"),
        Vec::<String>::new(),
        "namespace mounts left"
    );
    assert_eq!(
        cached_container_ids(containerd),
        Vec::<String>::new(),
        "libcni still caches results (DEL did not complete)"
    );
    eprintln!(
        "{}: the leftover checks took {:?}",
        node.network,
        clock.elapsed()
    );
}

/// Container A prints its address and waits for a TCP message on port 7777; container B pings it
/// and then sends that message. Checks the wiring and the datastore while A runs, and that `--rm`
/// removed everything afterwards. Returns how long the containers took.
fn two_containers_scenario(node: &Node) -> Duration {
    node.create_pool();
    node.write_conflist(vec![node.calico_plugin()]);
    let containerd = node.start_containerd();
    let clock = Instant::now();

    let mut server = containerd
        .spawn(
            "ctr-a",
            &[
                "sh",
                "-c",
                "ip -4 -o addr show dev eth0 && exec timeout 40 nc -l -p 7777",
            ],
        )
        .expect("spawn container a");
    let line = server.next_line(FIRST_LINE_TIMEOUT).unwrap_or_else(|err| {
        panic!(
            "{err}\ncontainerd log:\n{}\nplugin log:\n{}",
            containerd.log_tail(),
            node.host.log_tail()
        )
    });
    let server_ip = parse_eth0_address(&line);
    assert!(
        server_ip.starts_with("198.18.3"),
        "container a got {server_ip}, outside the pool {POOL_CIDR}"
    );

    // While A runs: host side wired, datastore records it under the ID ctr passed to CNI.
    let cni_ids = cached_container_ids(&containerd);
    assert_eq!(cni_ids.len(), 1, "one cached ADD result: {cni_ids:?}");
    let cni_id = &cni_ids[0];
    assert!(cni_id.contains("ctr-a"), "CNI container ID {cni_id}");
    let cali = assert_wired(node, &server_ip);
    assert_recorded(node, cni_id, &server_ip, &cali);

    let client_script = format!(
        "ping -c 3 -W 2 {server_ip}; ok=$?; echo hello-from-b | nc -w 5 {server_ip} 7777; exit $ok"
    );
    let client = containerd
        .run("ctr-b", &["sh", "-c", &client_script], CONTAINER_TIMEOUT)
        .expect("ctr run b");
    assert!(
        client.status.success(),
        "container b could not ping a at {server_ip}: {}\nplugin log:\n{}",
        output_text(&client),
        node.host.log_tail()
    );
    assert!(
        String::from_utf8_lossy(&client.stdout).contains("3 packets received"),
        "{}",
        output_text(&client)
    );
    let server = server.wait(CONTAINER_TIMEOUT).expect("container a exits");
    assert!(server.status.success(), "a: {}", output_text(&server));
    assert!(
        String::from_utf8_lossy(&server.stdout).contains("hello-from-b"),
        "a did not receive b's TCP message: {}",
        output_text(&server)
    );
    let containers_time = clock.elapsed();

    assert_nothing_left(node, &containerd);
    containers_time
}

#[test]
fn two_containers_ping_each_other_and_nothing_is_left() {
    let clock = Instant::now();
    let node = Node::new("ctrd-emb", "ctrnet", |host| {
        Datastore::created_embedded(host.dir.path().join("calico.db"))
    });
    let containers = two_containers_scenario(&node);
    eprintln!(
        "embedded: containers {containers:?}, whole test {:?}",
        clock.elapsed()
    );
}

#[test]
fn two_containers_on_etcd_ping_each_other_and_nothing_is_left() {
    let clock = Instant::now();
    let mut etcd = None;
    let node = Node::new("ctrd-etcd", "ctrnet", |host| {
        etcd = Some(NetnsEtcd::start(&host.netns));
        Datastore::Etcd(NETNS_ETCD_ENDPOINT.to_string())
    });
    let containers = two_containers_scenario(&node);
    // etcd goes before the node's netns.
    drop(etcd);
    eprintln!(
        "etcd: containers {containers:?}, whole test {:?}",
        clock.elapsed()
    );
}

#[test]
fn chained_with_portmap_bandwidth_tuning() {
    let clock = Instant::now();
    let node = Node::new("ctrd-chain", "chainnet", |host| {
        Datastore::created_embedded(host.dir.path().join("calico.db"))
    });
    copy_reference_plugins(&node.bin_dir, &["portmap", "bandwidth", "tuning"])
        .unwrap_or_else(|err| panic!("{err}"));
    // portmap DNATs traffic to the host's own addresses; give the host one besides loopback.
    node.host
        .netns
        .ip(&["addr", "add", &format!("{HOST_ADDRESS}/32"), "dev", "lo"])
        .unwrap_or_else(|err| panic!("{err}"));
    node.create_pool();
    let tuned_mac = "0e:c6:12:20:00:0a";
    node.write_conflist(vec![
        node.calico_plugin(),
        // ctr passes no port mappings, so libcni injects none and this static runtimeConfig stays.
        json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [
                {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}
            ]},
        }),
        json!({
            "type": "bandwidth",
            "ingressRate": 8_000_000,
            "ingressBurst": 800_000,
            "egressRate": 16_000_000,
            "egressBurst": 800_000,
        }),
        json!({
            "type": "tuning",
            "mac": tuned_mac,
            "sysctl": {"net.core.somaxconn": "1234"},
        }),
    ]);
    let containerd = node.start_containerd();
    let containers_clock = Instant::now();

    let mut server = containerd
        .spawn(
            "chain-a",
            &[
                "sh",
                "-c",
                "ip -4 -o addr show dev eth0 && cat /sys/class/net/eth0/address && \
                 cat /proc/sys/net/core/somaxconn && exec timeout 40 nc -l -p 8080",
            ],
        )
        .expect("spawn container a");
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.push(server.next_line(FIRST_LINE_TIMEOUT).unwrap_or_else(|err| {
            panic!(
                "{err}\ncontainerd log:\n{}\nplugin log:\n{}",
                containerd.log_tail(),
                node.host.log_tail()
            )
        }));
    }
    let server_ip = parse_eth0_address(&lines[0]);
    assert!(server_ip.starts_with("198.18.3"), "a got {server_ip}");

    // tuning ran in the container's netns: MAC and sysctl as configured.
    assert!(
        lines[1].trim() == tuned_mac,
        "tuning did not set eth0's MAC: {}",
        lines[1]
    );
    assert_eq!(lines[2].trim(), "1234", "tuning did not set somaxconn");

    // calico wired it and recorded it.
    let cni_ids = cached_container_ids(&containerd);
    assert_eq!(cni_ids.len(), 1, "one cached ADD result: {cni_ids:?}");
    let cali = assert_wired(&node, &server_ip);
    assert_recorded(&node, &cni_ids[0], &server_ip, &cali);

    // bandwidth: ingress shaping is a tbf on the host veth; egress goes through an ifb device.
    let cali_qdiscs = node.tc_qdiscs(&cali);
    assert!(
        cali_qdiscs.contains("qdisc tbf") && cali_qdiscs.contains("rate 8Mbit"),
        "no 8 Mbit/s tbf on {cali}:\n{cali_qdiscs}"
    );
    assert!(
        cali_qdiscs.contains("qdisc ingress"),
        "no ingress qdisc (egress redirect) on {cali}:\n{cali_qdiscs}"
    );
    let ifbs = node.links_starting("bwp");
    assert_eq!(ifbs.len(), 1, "one bandwidth ifb expected: {ifbs:?}");
    let ifb_qdiscs = node.tc_qdiscs(&ifbs[0]);
    assert!(
        ifb_qdiscs.contains("qdisc tbf") && ifb_qdiscs.contains("rate 16Mbit"),
        "no 16 Mbit/s tbf on {}:\n{ifb_qdiscs}",
        ifbs[0]
    );

    // portmap: a DNAT of host port 18080 to a's address, and it carries traffic from b.
    let nat = node.nat_rules();
    assert!(
        nat.contains("CNI-HOSTPORT-DNAT")
            && nat.contains(&format!("--to-destination {server_ip}:8080")),
        "no portmap DNAT to {server_ip}:8080:\n{nat}"
    );
    let client_script = format!("echo through-portmap | nc -w 5 {HOST_ADDRESS} 18080");
    let client = containerd
        .run("chain-b", &["sh", "-c", &client_script], CONTAINER_TIMEOUT)
        .expect("ctr run b");
    assert!(client.status.success(), "b: {}", output_text(&client));
    let server = server.wait(CONTAINER_TIMEOUT).expect("container a exits");
    assert!(server.status.success(), "a: {}", output_text(&server));
    assert!(
        String::from_utf8_lossy(&server.stdout).contains("through-portmap"),
        "b's message did not reach a through host port 18080: {}",
        output_text(&server)
    );
    let containers_time = containers_clock.elapsed();

    // DEL ran through the whole chain: no ifb, no per-container NAT chain or rule, nothing of calico.
    assert_eq!(
        node.wait_no_links_starting("bwp"),
        Vec::<String>::new(),
        "bandwidth's ifb left"
    );
    let nat = node.nat_rules();
    assert!(
        !nat.contains("CNI-DN-") && !nat.contains(POOL_PREFIX) && !nat.contains("18080"),
        "portmap rules left:\n{nat}"
    );
    assert_nothing_left(&node, &containerd);
    eprintln!(
        "chained: containers {containers_time:?}, whole test {:?}",
        clock.elapsed()
    );
}
