//! End-to-end scenarios on a real lab: `calico-lab` builds hosts (network namespaces on a shared underlay
//! bridge) each running the real `calico-node`, pods go through the real `calico` CNI plugin, and the
//! operator's view goes through the real `calicoctl`. Each test owns one lab (its name carries the test
//! and the process id) and removes it with `calico-lab down` from a drop guard, also when it fails.
//!
//! Needs root and the workspace's binaries: `cargo build --workspace` first.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use calico_netlink::Netns;
use calico_testutil::netns::{ReadChild, TestNetns, require_binary, run_with_timeout};
use serde_json::Value;

use common::{
    block_of, describe, lab_binary, preconditions, run, run_ok, text, tool, workspace_binary,
};

/// How long one short command (`ip`, `nft`, `calicoctl`, `calico-lab exec`) may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// `calico-lab up` waits for readiness and full reachability itself; this bounds the whole command.
const UP_LIMIT: Duration = Duration::from_secs(180);
/// Where `ip netns` keeps namespace files.
const NETNS_DIR: &str = "/run/netns";
/// calico-node's health port inside each host namespace.
const HEALTH_PORT: u16 = 9099;

// ---------------------------------------------------------------------------------------------------
// Commands

/// `ip netns exec <ns> <argv...>`, with the program resolved to a full path here (the test's `$PATH` may
/// lack the sbin directories).
fn in_ns(ns: &str, argv: &[&str]) -> Command {
    let (program, args) = argv.split_first().expect("a command to run");
    let program = if program.contains('/') {
        PathBuf::from(program)
    } else {
        require_binary(program, "iproute2/nftables").unwrap_or_else(|e| panic!("{e}"))
    };
    let mut command = Command::new(tool("ip", "iproute2"));
    command.args(["netns", "exec", ns]).arg(program).args(args);
    command
}

/// Stdout of a command that must succeed inside namespace `ns`.
fn ns_ok(ns: &str, argv: &[&str]) -> String {
    run_ok(&mut in_ns(ns, argv), COMMAND_LIMIT)
}

/// One ICMP echo from namespace `ns` to `ip` (busybox ping, one second to answer).
fn ping_once(ns: &str, ip: &str) -> bool {
    let busybox = tool("busybox", "busybox-static");
    let busybox = busybox.to_string_lossy();
    run(
        &mut in_ns(ns, &[&busybox, "ping", "-c", "1", "-W", "1", ip]),
        Duration::from_secs(5),
    )
    .status
    .success()
}

/// Polls `check` every `pause` until it returns true or `limit` passes; returns the time it took, or
/// None on timeout.
fn wait_for(limit: Duration, pause: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        thread::sleep(pause);
    }
}

fn open_netns(name: &str) -> Netns {
    Netns::open(&Path::new(NETNS_DIR).join(name))
        .unwrap_or_else(|e| panic!("opening network namespace {name}: {e}"))
}

// ---------------------------------------------------------------------------------------------------
// The lab

/// A lab that is up; `calico-lab down` when dropped.
struct Lab {
    name: String,
    /// `calico-lab up --json` output (hosts, pods, datastore).
    state: Value,
}

impl Lab {
    /// `calico-lab up --name <tag>_<pid> --json <args>`; panics (after tearing down) if it fails.
    fn up(tag: &str, args: &[&str]) -> Lab {
        preconditions();
        let name = format!("{tag}_{}", std::process::id());
        let started = Instant::now();
        // The guard exists before `up` so a half-built lab is removed too.
        let mut lab = Lab {
            name,
            state: Value::Null,
        };
        let mut command = Command::new(lab_binary());
        command
            .args(["up", "--name", &lab.name, "--json"])
            .args(args);
        let output = run(&mut command, UP_LIMIT);
        assert!(
            output.status.success(),
            "calico-lab up --name {} {} failed: {}",
            lab.name,
            args.join(" "),
            describe(&output)
        );
        lab.state = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "calico-lab up --json printed no JSON ({e}): {}",
                describe(&output)
            )
        });
        eprintln!(
            "[{}] lab up in {:.2}s (stages: {})",
            lab.name,
            started.elapsed().as_secs_f64(),
            lab.state["timings_ms"]
        );
        lab
    }

    /// `calico-lab <verb> --name <lab> <args>`, which must succeed; returns stdout.
    fn cli(&self, verb: &str, args: &[&str]) -> String {
        let mut command = Command::new(lab_binary());
        command.args([verb, "--name", &self.name]).args(args);
        run_ok(&mut command, Duration::from_secs(90))
    }

    /// calicoctl against this lab's datastore.
    fn calicoctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(workspace_binary("calicoctl"));
        command
            .args(args)
            .env_remove("DATASTORE_TYPE")
            .env_remove("CALICO_DATASTORE_PATH")
            .env_remove("ETCD_ENDPOINTS");
        for (key, value) in self.datastore_env() {
            command.env(key, value);
        }
        run(&mut command, COMMAND_LIMIT)
    }

    fn calicoctl_ok(&self, args: &[&str]) -> String {
        let output = self.calicoctl(args);
        assert!(
            output.status.success(),
            "calicoctl {} failed: {}",
            args.join(" "),
            describe(&output)
        );
        text(&output.stdout)
    }

    /// The variables calico-node and calicoctl need to reach the datastore (as `calico-lab` sets them).
    fn datastore_env(&self) -> Vec<(String, String)> {
        let ds = &self.state["datastore"];
        match ds["kind"].as_str() {
            Some("embedded") => vec![
                ("DATASTORE_TYPE".into(), "embedded".into()),
                ("CALICO_DATASTORE_PATH".into(), str_of(&ds["path"]).into()),
            ],
            Some("etcd") => vec![
                ("DATASTORE_TYPE".into(), "etcdv3".into()),
                ("ETCD_ENDPOINTS".into(), str_of(&ds["endpoint"]).into()),
            ],
            other => panic!("unknown datastore kind {other:?} in the lab state"),
        }
    }

    fn host(&self, name: &str) -> &Value {
        self.state["hosts"]
            .as_array()
            .and_then(|hosts| hosts.iter().find(|h| h["name"] == name))
            .unwrap_or_else(|| panic!("no host {name} in the lab state"))
    }

    fn host_ns(&self, name: &str) -> String {
        format!("clab-{}-{name}", self.name)
    }

    fn host_names(&self) -> Vec<String> {
        self.state["hosts"]
            .as_array()
            .map(|hosts| {
                hosts
                    .iter()
                    .map(|h| str_of(&h["name"]).to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The pods as `calico-lab up` reported them: (name, host, namespace, ip).
    fn pods(&self) -> Vec<Pod> {
        self.state["pods"]
            .as_array()
            .map(|pods| {
                pods.iter()
                    .map(|p| Pod {
                        name: str_of(&p["name"]).into(),
                        host: str_of(&p["host"]).into(),
                        ns: str_of(&p["namespace"]).into(),
                        ip: str_of(&p["ip"]).into(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pod(&self, name: &str) -> Pod {
        self.pods()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name} in the lab state"))
    }

    /// `calico-lab add-pod`: the new pod (its output is `<pod> <ip>`).
    fn add_pod(&self, host: &str) -> Pod {
        let out = self.cli("add-pod", &[host]);
        let mut words = out.split_whitespace();
        let (Some(name), Some(ip)) = (words.next(), words.next()) else {
            panic!("add-pod printed {out:?}, expected `<pod> <ip>`");
        };
        Pod {
            name: name.into(),
            host: host.into(),
            ns: format!("clab-{}-{name}", self.name),
            ip: ip.into(),
        }
    }

    /// Starts calico-node for `host` again with `calico-lab restart-node` (which waits until it is
    /// ready) and returns its pid from `calico-lab status --json`.
    fn start_calico_node(&mut self, host: &str) -> u32 {
        let mut command = Command::new(lab_binary());
        command.args(["restart-node", "--name", &self.name, host]);
        let output = run(&mut command, Duration::from_secs(30));
        assert!(
            output.status.success(),
            "calico-lab restart-node {host} failed: {}",
            describe(&output)
        );
        let mut command = Command::new(lab_binary());
        command.args(["status", "--name", &self.name, "--json"]);
        let output = run(&mut command, Duration::from_secs(30));
        let status: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", describe(&output)));
        status["hosts"]
            .as_array()
            .and_then(|hosts| hosts.iter().find(|h| h["name"] == host))
            .and_then(|h| h["calico_node_pid"].as_u64())
            .and_then(|pid| u32::try_from(pid).ok())
            .unwrap_or_else(|| panic!("no calico-node pid for {host} in {status}"))
    }

    /// Whether calico-node on `host` answers GET /readiness with 200 (inside the host namespace).
    fn ready(&self, host: &str) -> bool {
        let ns = open_netns(&self.host_ns(host));
        http_status(
            &ns,
            SocketAddr::from((Ipv4Addr::LOCALHOST, HEALTH_PORT)),
            "/readiness",
        ) == Some(200)
    }

    fn log_tail(&self, host: &str) -> String {
        let text = std::fs::read_to_string(str_of(&self.host(host)["log"])).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A second try covers a transient failure (for instance the binary being rebuilt meanwhile).
        for attempt in 1..=2 {
            let mut command = Command::new(lab_binary());
            command.args(["down", "--name", &self.name]);
            match run_with_timeout(&mut command, Duration::from_secs(60)) {
                Ok(output) if output.status.success() => break,
                Ok(output) => eprintln!(
                    "warning: calico-lab down --name {} failed (attempt {attempt}): {}",
                    self.name,
                    describe(&output)
                ),
                Err(e) => eprintln!(
                    "warning: calico-lab down --name {} (attempt {attempt}): {e}",
                    self.name
                ),
            }
            thread::sleep(Duration::from_secs(1));
        }
    }
}

#[derive(Clone, Debug)]
struct Pod {
    name: String,
    host: String,
    ns: String,
    ip: String,
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// GET `path` from `addr`, connecting from inside `ns`; the status code, or None if there is no answer.
fn http_status(ns: &Netns, addr: SocketAddr, path: &str) -> Option<u16> {
    let limit = Duration::from_millis(500);
    let mut stream = ns
        .run(|| TcpStream::connect_timeout(&addr, limit))
        .ok()?
        .ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).ok()?;
    status_line.split_whitespace().nth(1)?.parse().ok()
}

/// Lines of `ip route show` in `ns`, trimmed.
fn routes(ns: &str) -> Vec<String> {
    ns_ok(ns, &["ip", "route", "show"])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The ifindex of `vxlan.calico` in `ns` (from `ip -d link show`).
fn vxlan_ifindex(ns: &str) -> u32 {
    let out = ns_ok(ns, &["ip", "-d", "link", "show", "vxlan.calico"]);
    out.split(':')
        .next()
        .and_then(|index| index.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in `ip -d link show vxlan.calico`: {out}"))
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
    nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn pid_of(lab: &Lab, host: &str) -> u32 {
    lab.host(host)["calico_node_pid"]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("no calico_node_pid for {host} in the lab state"))
}

// ---------------------------------------------------------------------------------------------------
// Scenarios

/// A pod added to a running lab is reachable from pods on the other hosts within seconds.
#[test]
fn new_pod_reachable_from_other_host() {
    let lab = Lab::up("newpod", &["--nodes", "3", "--pods-per-node", "1"]);
    let added_at = Instant::now();
    let new_pod = lab.add_pod("node2");
    let add_took = added_at.elapsed();
    assert!(
        new_pod.ip.starts_with("198.19."),
        "new pod's address {} is outside the pool",
        new_pod.ip
    );
    for from in ["node1-pod1", "node3-pod1"] {
        let source = lab.pod(from);
        let started = Instant::now();
        let took = wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            ping_once(&source.ns, &new_pod.ip)
        });
        let took = took.unwrap_or_else(|| {
            panic!(
                "{} ({}) cannot ping the new pod {} ({}) within 5s; routes on {}:\n{}",
                from,
                source.ip,
                new_pod.name,
                new_pod.ip,
                source.host,
                routes(&lab.host_ns(&source.host)).join("\n")
            )
        });
        eprintln!(
            "[{}] {from} -> {} ({}) answered {:.0} ms after the first ping ({:.0} ms after add-pod started; add-pod took {:.0} ms)",
            lab.name,
            new_pod.name,
            new_pod.ip,
            took.as_secs_f64() * 1000.0,
            (started.duration_since(added_at) + took).as_secs_f64() * 1000.0,
            add_took.as_secs_f64() * 1000.0
        );
    }
}

/// After `del-pod`, nothing of the pod is left: no /32 route on any host, no cali interface on its host,
/// no WorkloadEndpoint, no IPAM assignment.
#[test]
fn deleted_pod_routes_gone_everywhere() {
    let lab = Lab::up("delpod", &["--nodes", "3", "--pods-per-node", "2"]);
    let pod = lab.pod("node2-pod2");
    let host_ns = lab.host_ns(&pod.host);
    let host_route = |ns: &str| -> Option<String> {
        routes(ns).into_iter().find(|r| {
            let dest = r.split_whitespace().next().unwrap_or_default();
            dest == pod.ip || dest == format!("{}/32", pod.ip)
        })
    };

    // Before: the pod is wired and known everywhere it should be.
    let route = host_route(&host_ns)
        .unwrap_or_else(|| panic!("no route to {} on {} before the delete", pod.ip, pod.host));
    let iface = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        iface.starts_with("cali"),
        "route to the pod is not via a cali device: {route}"
    );
    let weps = lab.calicoctl_ok(&["get", "workloadendpoints", "-o", "wide"]);
    assert!(
        weps.contains(&format!("{}/32", pod.ip)),
        "pod not listed before the delete:\n{weps}"
    );
    let ipam = lab.calicoctl_ok(&["ipam", "show", &format!("--ip={}", pod.ip)]);
    assert!(
        ipam.contains(&format!("IP {} is in use", pod.ip)) && ipam.contains("pod: node2-pod2"),
        "calicoctl ipam show before the delete: {ipam}"
    );
    assert!(
        ping_once(&lab.pod("node1-pod1").ns, &pod.ip),
        "pod not reachable before the delete"
    );

    let started = Instant::now();
    lab.cli("del-pod", &[&pod.name]);
    eprintln!(
        "[{}] del-pod took {:.0} ms",
        lab.name,
        started.elapsed().as_secs_f64() * 1000.0
    );

    // Every host converges (the pod's own host synchronously, the others through calico-node).
    let hosts = lab.host_names();
    let gone = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        hosts.iter().all(|h| host_route(&lab.host_ns(h)).is_none())
    });
    for h in &hosts {
        let ns = lab.host_ns(h);
        assert!(
            host_route(&ns).is_none(),
            "{h} still routes the deleted pod's {}/32 10s after del-pod:\n{}",
            pod.ip,
            routes(&ns).join("\n")
        );
    }
    eprintln!(
        "[{}] /32 gone on every host {:.0} ms after del-pod returned",
        lab.name,
        gone.unwrap_or_default().as_secs_f64() * 1000.0
    );
    let links = ns_ok(&host_ns, &["ip", "-br", "link"]);
    assert!(
        !links
            .lines()
            .any(|l| l.split(['@', ' ']).next() == Some(iface.as_str())),
        "{iface} still exists on {}:\n{links}",
        pod.host
    );
    let weps = lab.calicoctl_ok(&["get", "workloadendpoints", "-o", "wide"]);
    assert!(
        !weps.contains(&format!("{}/32", pod.ip)) && !weps.contains("node2--pod2"),
        "the deleted pod is still a WorkloadEndpoint:\n{weps}"
    );
    assert!(
        weps.contains("node2--pod1"),
        "the other pod on node2 vanished too:\n{weps}"
    );
    let ipam = lab.calicoctl_ok(&["ipam", "show", &format!("--ip={}", pod.ip)]);
    assert_eq!(
        ipam.trim(),
        format!("{} is not assigned", pod.ip),
        "calicoctl ipam show after the delete"
    );
    // The rest of the lab is unharmed.
    let survivor = lab.pod("node2-pod1");
    assert!(
        ping_once(&lab.pod("node1-pod1").ns, &survivor.ip),
        "node2-pod1 unreachable after deleting its neighbour"
    );
}

/// A namespace outside the cluster, attached to the lab's underlay bridge: 198.18.0.200/24 and no route
/// to the pod network, so only NATed traffic can be answered. Removed on drop (with its veth).
struct External {
    ns: TestNetns,
}

const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);

impl External {
    fn attach(lab: &Lab) -> External {
        let ns = TestNetns::new("scext").unwrap_or_else(|e| panic!("{e}"));
        let underlay = format!("clab-{}-ul", lab.name);
        // Created inside our namespace with the peer moved straight into the underlay: the root
        // namespace never sees either end.
        let port = format!("ext{}", std::process::id() % 100_000);
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &underlay,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        ns.ip(&["addr", "add", &format!("{EXTERNAL_IP}/24"), "dev", "eth0"])
            .unwrap_or_else(|e| panic!("{e}"));
        ns.ip(&["link", "set", "eth0", "up"])
            .unwrap_or_else(|e| panic!("{e}"));
        ns_ok(
            &underlay,
            &["ip", "link", "set", &port, "master", "br0", "up"],
        );
        let table = ns.ip(&["route", "show"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !table.contains("198.19.") && !table.contains("default"),
            "the external namespace must have no route to the pods:\n{table}"
        );
        External { ns }
    }

    fn netns(&self) -> Netns {
        open_netns(self.ns.name())
    }
}

/// A listener in the external namespace that answers one line per connection with the peer address it
/// saw, and reports those addresses.
struct EchoPeer {
    port: u16,
    seen: std::sync::mpsc::Receiver<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoPeer {
    fn start(ns: &Netns) -> EchoPeer {
        let listener = ns
            .run(|| TcpListener::bind(SocketAddrV4::new(EXTERNAL_IP, 0)))
            .expect("entering the external namespace")
            .expect("binding the external listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("listener address").port();
        let (sender, seen) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = sender.send(peer);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
                        let mut line = String::new();
                        if let Ok(reader) = stream.try_clone() {
                            let _ = BufReader::new(reader).read_line(&mut line);
                        }
                        let _ = stream.write_all(format!("seen {peer} said {line}").as_bytes());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        EchoPeer {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connects from `pod_ns` to `addr`, says hello and returns the reply (or the error).
fn hello_from(pod_ns: &Netns, addr: SocketAddr, limit: Duration) -> std::io::Result<String> {
    let mut stream = pod_ns
        .run(|| TcpStream::connect_timeout(&addr, limit))
        .map_err(std::io::Error::other)??;
    stream.set_read_timeout(Some(limit))?;
    stream.write_all(b"hello\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// With natOutgoing, a pod's connection to a server outside the cluster leaves with its host's underlay
/// address and is answered; without it the server sees the pod address, cannot answer, and the
/// connection fails.
#[test]
fn nat_outgoing_uses_host_address() {
    let lab = Lab::up("nat", &["--nodes", "2", "--pods-per-node", "1"]);
    let external = External::attach(&lab);
    let peer = EchoPeer::start(&external.netns());
    let pod = lab.pod("node2-pod1");
    let pod_ns = open_netns(&pod.ns);
    let server = SocketAddr::from((EXTERNAL_IP, peer.port));
    let node2_address: Ipv4Addr = str_of(&lab.host("node2")["address"])
        .parse()
        .expect("node2 address");
    assert_eq!(node2_address, Ipv4Addr::new(198, 18, 0, 12));

    let started = Instant::now();
    let reply = hello_from(&pod_ns, server, Duration::from_secs(3)).unwrap_or_else(|e| {
        panic!(
            "{} could not talk to the external server {server}: {e}",
            pod.name
        )
    });
    let seen = peer
        .seen
        .recv_timeout(Duration::from_secs(3))
        .expect("the listener saw the connection");
    eprintln!(
        "[{}] {} ({}) -> {server}: listener saw {seen}, reply {:?} in {:.0} ms",
        lab.name,
        pod.name,
        pod.ip,
        reply.trim(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(
        seen.ip(),
        node2_address,
        "natOutgoing should hide the pod address {} behind node2's",
        pod.ip
    );
    assert_eq!(
        reply,
        format!("seen {seen} said hello\n"),
        "the reply did not come back intact"
    );

    // Negative control: without natOutgoing the pod's own address leaves the cluster and cannot be answered.
    let patched = lab.calicoctl_ok(&[
        "patch",
        "ippool",
        "default-ipv4-ippool",
        "-p",
        r#"{"spec":{"natOutgoing":false}}"#,
    ]);
    eprintln!("[{}] {}", lab.name, patched.trim());
    let node2_ns = lab.host_ns("node2");
    let masq_set_empty = || {
        let table = ns_ok(
            &node2_ns,
            &["nft", "list", "set", "ip", "calico", "masq-ipam-pools"],
        );
        !table.contains("elements")
    };
    let took = wait_for(
        Duration::from_secs(10),
        Duration::from_millis(100),
        masq_set_empty,
    )
    .unwrap_or_else(|| {
        panic!(
            "masq-ipam-pools on node2 still has elements 10s after natOutgoing=false:\n{}",
            ns_ok(&node2_ns, &["nft", "list", "table", "ip", "calico"])
        )
    });
    eprintln!(
        "[{}] masq-ipam-pools emptied {:.0} ms after the patch",
        lab.name,
        took.as_secs_f64() * 1000.0
    );
    let nat_pools = lab.calicoctl_ok(&["get", "ippool", "default-ipv4-ippool", "-o", "json"]);
    let pool: Value = serde_json::from_str(&nat_pools).expect("ippool JSON");
    // natOutgoing is omitted when false, as in Calico's API.
    assert!(
        matches!(
            pool["spec"]["natOutgoing"],
            Value::Null | Value::Bool(false)
        ),
        "the patch did not stick: {pool}"
    );

    let started = Instant::now();
    let result = hello_from(&pod_ns, server, Duration::from_secs(2));
    assert!(
        result.is_err(),
        "without natOutgoing the connection should fail (no route back to {}), but got {result:?}",
        pod.ip
    );
    eprintln!(
        "[{}] without natOutgoing: {:?} after {:.0} ms",
        lab.name,
        result.err().map(|e| e.kind()),
        started.elapsed().as_secs_f64() * 1000.0
    );
    // The SYN arrives from the pod address; the handshake cannot complete, so nothing is accepted.
    assert!(
        peer.seen.try_recv().is_err(),
        "the listener accepted a connection without NAT, so something answered for the pod address"
    );
}

/// What the TCP client saw over its whole run.
#[derive(Debug, Default)]
struct StreamReport {
    error: Option<String>,
    echoed_bytes: u64,
    max_gap: Duration,
    round_trips: u64,
}

/// A long-lived TCP stream between two pods on different hosts keeps flowing while calico-node on both
/// hosts is SIGKILLed and restarted; the restarted calico-node becomes ready without rebuilding the
/// dataplane.
#[test]
fn tcp_stream_survives_calico_node_sigkill() {
    stream_survives_calico_node_sigkill("kill", &["--encap", "vxlan"], true);
}

/// In BGP mode the other host keeps a killed calico-node's routes as a graceful-restart helper, and the
/// restarted one keeps the `proto bird` routes its previous run wrote until its peers have sent theirs
/// again: nothing is withdrawn or rewritten.
#[test]
fn tcp_stream_survives_calico_node_sigkill_in_bgp_mode() {
    stream_survives_calico_node_sigkill("killbgp", &["--encap", "none"], false);
}

/// A TCP stream between pods on two hosts while each host's calico-node is SIGKILLed and restarted in
/// turn: no reset, no stall over a second, and node1's routes, links and nftables never change.
fn stream_survives_calico_node_sigkill(tag: &str, extra_args: &[&str], vxlan: bool) {
    let mut args = vec!["--nodes", "2", "--pods-per-node", "1"];
    args.extend_from_slice(extra_args);
    let mut lab = Lab::up(tag, &args);
    let client_pod = lab.pod("node1-pod1");
    let server_pod = lab.pod("node2-pod1");
    let server_addr = SocketAddr::from((
        server_pod.ip.parse::<Ipv4Addr>().expect("pod address"),
        5001,
    ));

    // Echo server in pod B.
    let listener = open_netns(&server_pod.ns)
        .run(|| TcpListener::bind(server_addr))
        .expect("entering the server pod")
        .expect("binding the echo server");
    let server = thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut buf = [0u8; 4096];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            stream.write_all(&buf[..n])?;
            total += n as u64;
        }
    });

    // Client in pod A: 64-byte messages, each echoed before the next, until told to stop.
    let stream = open_netns(&client_pod.ns)
        .run(|| TcpStream::connect_timeout(&server_addr, Duration::from_secs(3)))
        .expect("entering the client pod")
        .unwrap_or_else(|e| panic!("{} cannot connect to {server_addr}: {e}", client_pod.name));
    let echoed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let echoed = Arc::clone(&echoed);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut report = StreamReport::default();
            let mut stream = stream;
            let run = |stream: &mut TcpStream, report: &mut StreamReport| -> std::io::Result<()> {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                stream.set_write_timeout(Some(Duration::from_secs(5)))?;
                stream.set_nodelay(true)?;
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut last = Instant::now();
                let mut sent = [0u8; 64];
                let mut back = [0u8; 64];
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    sequence += 1;
                    sent[..8].copy_from_slice(&sequence.to_be_bytes());
                    stream.write_all(&sent)?;
                    stream.read_exact(&mut back)?;
                    if back != sent {
                        return Err(std::io::Error::other(format!(
                            "echo {sequence} came back corrupted"
                        )));
                    }
                    let now = Instant::now();
                    report.max_gap = report.max_gap.max(now - last);
                    last = now;
                    report.round_trips += 1;
                    report.echoed_bytes += 64;
                    echoed.store(report.echoed_bytes, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            };
            if let Err(e) = run(&mut stream, &mut report) {
                report.error = Some(format!("{:?}: {e}", e.kind()));
            }
            drop(stream);
            report
        })
    };

    let node1_ns = lab.host_ns("node1");
    let routes_before = routes(&node1_ns);
    if !vxlan {
        assert!(
            routes_before.iter().any(|r| r.contains("proto bird")),
            "BGP mode: node1 routes node2's block over BGP: {routes_before:?}"
        );
    }
    let ifindex_before = vxlan.then(|| vxlan_ifindex(&node1_ns));
    let nat_before = ns_ok(&node1_ns, &["nft", "list", "table", "ip", "calico"]);
    // Every route and link change on node1 while its calico-node and node2's restart: a restart that
    // flushes and rebuilds would show deletions here even if the end state looks the same.
    let mut monitor = ReadChild::spawn(&mut in_ns(&node1_ns, &["ip", "monitor", "route", "link"]))
        .unwrap_or_else(|e| panic!("{e}"));
    thread::sleep(Duration::from_millis(200));
    let test_started = Instant::now();
    thread::sleep(Duration::from_secs(1));

    let mut marks = Vec::new();
    for host in ["node1", "node2"] {
        let pid = pid_of(&lab, host);
        assert!(
            alive(pid),
            "calico-node on {host} (pid {pid}) is not running before the kill"
        );
        let before = echoed.load(Ordering::Relaxed);
        signal(pid, nix::sys::signal::Signal::SIGKILL);
        let killed_at = test_started.elapsed();
        assert!(
            wait_for(
                Duration::from_secs(5),
                Duration::from_millis(10),
                || !alive(pid)
            )
            .is_some(),
            "calico-node pid {pid} survived SIGKILL"
        );
        assert!(
            !lab.ready(host),
            "{host} still answers readiness with calico-node killed"
        );
        // A second without calico-node: the dataplane must carry the stream on its own.
        thread::sleep(Duration::from_secs(1));
        let during = echoed.load(Ordering::Relaxed);
        assert!(
            during > before,
            "no bytes flowed while calico-node on {host} was dead"
        );
        let new_pid = lab.start_calico_node(host);
        let restarted_at = test_started.elapsed();
        let ready_after = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            lab.ready(host)
        })
        .unwrap_or_else(|| {
            panic!(
                "restarted calico-node on {host} (pid {new_pid}) not ready within 20s; log:\n{}",
                lab.log_tail(host)
            )
        });
        assert!(
            alive(new_pid),
            "restarted calico-node on {host} exited:\n{}",
            lab.log_tail(host)
        );
        // Let the restarted calico-node finish its first reconcile before checking its work.
        thread::sleep(Duration::from_millis(500));
        marks.push((
            host,
            killed_at,
            restarted_at,
            ready_after,
            echoed.load(Ordering::Relaxed),
        ));
        if host == "node1" {
            assert_eq!(
                vxlan.then(|| vxlan_ifindex(&node1_ns)),
                ifindex_before,
                "vxlan.calico on node1 was recreated by the restart"
            );
            assert_eq!(
                routes(&node1_ns),
                routes_before,
                "node1's routes changed across the restart"
            );
        }
    }
    let after_restarts = echoed.load(Ordering::Relaxed);
    thread::sleep(Duration::from_secs(2));
    monitor.kill();
    let changes = monitor
        .try_wait()
        .map(|status| text(&monitor.into_output(status).stdout))
        .unwrap_or_default();
    let at_end = echoed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let report = client.join().expect("client thread");
    let served = server.join().expect("server thread");

    for (host, killed_at, restarted_at, ready_after, bytes) in &marks {
        eprintln!(
            "[{}] {host}: SIGKILL at {:.2}s, restarted at {:.2}s, ready {:.0} ms later; {bytes} bytes echoed by then",
            lab.name,
            killed_at.as_secs_f64(),
            restarted_at.as_secs_f64(),
            ready_after.as_secs_f64() * 1000.0
        );
    }
    eprintln!(
        "[{}] stream: {} round trips, {} bytes echoed over {:.2}s, largest gap {:.0} ms, error {:?}; server echoed {:?}",
        lab.name,
        report.round_trips,
        report.echoed_bytes,
        test_started.elapsed().as_secs_f64(),
        report.max_gap.as_secs_f64() * 1000.0,
        report.error,
        served
    );
    assert_eq!(report.error, None, "the stream broke");
    assert!(served.is_ok(), "the server side broke: {served:?}");
    assert!(
        report.max_gap <= Duration::from_secs(1),
        "the stream stalled for {:?}",
        report.max_gap
    );
    assert!(
        at_end > after_restarts,
        "no bytes flowed after both restarts"
    );
    assert_eq!(
        vxlan.then(|| vxlan_ifindex(&node1_ns)),
        ifindex_before,
        "vxlan.calico on node1 was recreated"
    );
    assert_eq!(routes(&node1_ns), routes_before, "node1's routes changed");
    assert_eq!(
        ns_ok(&node1_ns, &["nft", "list", "table", "ip", "calico"]),
        nat_before,
        "node1's calico nftables table changed"
    );
    let deletions: Vec<&str> = changes
        .lines()
        .filter(|l| l.starts_with("Deleted"))
        .collect();
    assert!(
        deletions.is_empty(),
        "restarting calico-node deleted routes or links on node1 (a flush, not a reconcile):\n{changes}"
    );
    eprintln!(
        "[{}] route/link events on node1 during the restarts: {}",
        lab.name,
        if changes.trim().is_empty() {
            "none".to_string()
        } else {
            changes.trim().replace('\n', " | ")
        }
    );
}

/// Lines of `ip neigh show dev vxlan.calico` and `bridge fdb show dev vxlan.calico` in `ns`.
fn vtep_entries(ns: &str) -> (String, String) {
    (
        ns_ok(ns, &["ip", "neigh", "show", "dev", "vxlan.calico"]),
        ns_ok(ns, &["bridge", "fdb", "show", "dev", "vxlan.calico"]),
    )
}

/// Taking a host out of the cluster the operator's way (stop calico-node, remove the machine, `calicoctl
/// delete node`) withdraws its routes and VTEP from the remaining hosts, which keep talking.
#[test]
fn removed_host_routes_withdrawn() {
    let lab = Lab::up(
        "rmhost",
        &["--nodes", "3", "--pods-per-node", "1", "--encap", "vxlan"],
    );
    let node: Value =
        serde_json::from_str(&lab.calicoctl_ok(&["get", "node", "node3", "-o", "json"]))
            .expect("node JSON");
    let tunnel_ip = str_of(&node["spec"]["ipv4VXLANTunnelAddr"]).to_string();
    assert!(
        tunnel_ip.starts_with("198.19."),
        "node3 has no VXLAN tunnel address: {node}"
    );
    let node3_ns = lab.host_ns("node3");
    let link = ns_ok(&node3_ns, &["ip", "link", "show", "vxlan.calico"]);
    let vtep_mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {link}"))
        .to_string();
    let node3_address = str_of(&lab.host("node3")["address"]).to_string();
    let via = format!("via {tunnel_ip} ");
    let remaining = ["node1", "node2"];
    // node3's traces on a host: routes via its tunnel address, its neighbour entry, its FDB entry.
    let node3_traces = |host: &str| -> [Vec<String>; 3] {
        let ns = lab.host_ns(host);
        let routes: Vec<String> = routes(&ns)
            .into_iter()
            .filter(|r| format!("{r} ").contains(&via))
            .collect();
        let (neigh, fdb) = vtep_entries(&ns);
        let neigh: Vec<String> = neigh
            .lines()
            .filter(|l| l.starts_with(&format!("{tunnel_ip} ")))
            .map(String::from)
            .collect();
        let fdb: Vec<String> = fdb
            .lines()
            .filter(|l| l.starts_with(&vtep_mac) || l.contains(&format!("dst {node3_address} ")))
            .map(String::from)
            .collect();
        [routes, neigh, fdb]
    };
    let has_node3 = |host: &str| -> Vec<String> { node3_traces(host).concat() };
    for host in remaining {
        let [routes, neigh, fdb] = node3_traces(host);
        assert!(
            !routes.is_empty() && !neigh.is_empty() && !fdb.is_empty(),
            "{host} should route to node3 and know its VTEP before the removal: routes {routes:?}, neighbours {neigh:?}, fdb {fdb:?}"
        );
    }

    // Remove node3: stop calico-node, tear down its machine, delete the Node.
    let started = Instant::now();
    let pid = pid_of(&lab, "node3");
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    assert!(
        wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            !alive(pid)
        })
        .is_some(),
        "calico-node on node3 ignored SIGTERM for 10s"
    );
    let ip = tool("ip", "iproute2");
    for pod in lab.pods().iter().filter(|p| p.host == "node3") {
        run_ok(
            Command::new(&ip).args(["netns", "delete", &pod.ns]),
            COMMAND_LIMIT,
        );
    }
    run_ok(
        Command::new(&ip).args(["netns", "delete", &node3_ns]),
        COMMAND_LIMIT,
    );
    let deleted = lab.calicoctl_ok(&["delete", "node", "node3"]);
    eprintln!("[{}] {}", lab.name, deleted.trim());
    let nodes = lab.calicoctl_ok(&["get", "nodes"]);
    assert!(
        !nodes.contains("node3"),
        "node3 still listed after calicoctl delete node:\n{nodes}"
    );

    let withdrawn = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        remaining.iter().all(|h| has_node3(h).is_empty())
    });
    for host in remaining {
        let found = has_node3(host);
        assert!(
            found.is_empty(),
            "{host} still has node3's routes/VTEP 10s after `calicoctl delete node node3`: {found:?}"
        );
    }
    eprintln!(
        "[{}] node3's routes and VTEP withdrawn from node1 and node2 {:.0} ms after delete node ({:.0} ms after SIGTERM)",
        lab.name,
        withdrawn.unwrap_or_default().as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64() * 1000.0
    );
    let (a, b) = (lab.pod("node1-pod1"), lab.pod("node2-pod1"));
    assert!(
        ping_once(&a.ns, &b.ip),
        "node1-pod1 cannot ping node2-pod1 after node3 left"
    );
    assert!(
        ping_once(&b.ns, &a.ip),
        "node2-pod1 cannot ping node1-pod1 after node3 left"
    );
}

/// The same lab on etcd: `up` itself waits until every pod answers every other; spot-check with
/// `calico-lab ping` and a ping between every pair of pods on different hosts.
#[test]
fn lab_with_etcd_every_pod_reaches_every_pod() {
    tool("etcd", "etcd-server");
    let lab = Lab::up(
        "etcd",
        &[
            "--datastore",
            "etcd",
            "--nodes",
            "3",
            "--pods-per-node",
            "2",
        ],
    );
    assert_eq!(
        lab.state["datastore"]["kind"], "etcd",
        "the lab did not use etcd: {}",
        lab.state["datastore"]
    );
    let nodes = lab.calicoctl_ok(&["get", "nodes"]);
    for host in ["node1", "node2", "node3"] {
        assert!(
            nodes.contains(host),
            "{host} is not registered in etcd:\n{nodes}"
        );
    }
    let pods = lab.pods();
    assert_eq!(pods.len(), 6, "expected 6 pods: {pods:?}");
    for (from, to) in [
        ("node1-pod1", "node2-pod2"),
        ("node2-pod1", "node3-pod1"),
        ("node3-pod2", "node1-pod2"),
    ] {
        let out = lab.cli("ping", &[from, to]);
        assert!(
            out.contains("3 packets received"),
            "calico-lab ping {from} {to}:\n{out}"
        );
    }
    let started = Instant::now();
    let mut pairs = 0;
    for a in &pods {
        for b in pods.iter().filter(|b| b.host != a.host) {
            assert!(
                ping_once(&a.ns, &b.ip),
                "{} ({}) cannot ping {} ({})",
                a.name,
                a.ip,
                b.name,
                b.ip
            );
            pairs += 1;
        }
    }
    assert_eq!(pairs, 24);
    eprintln!(
        "[{}] all {pairs} cross-host pod pairs answer ({:.0} ms)",
        lab.name,
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// The `proto bird` routes in `ns`, as `<dst> via <gateway>`.
fn bird_routes(ns: &str) -> Vec<String> {
    ns_ok(ns, &["ip", "-4", "route", "show", "proto", "bird"])
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [dst, "via", gateway, ..] => Some(format!("{dst} via {gateway}")),
                _ => None,
            }
        })
        .collect()
}

/// Calico's BGP mode (`--encap none`): every host learns every other host's block over the
/// node-to-node mesh and routes it as `proto bird` via that host; pods talk with no tunnel. With the
/// mesh turned off the routes are withdrawn and cross-host traffic stops; turned on again, both return.
#[test]
fn bgp_mode_mesh_carries_pod_routes_and_turning_it_off_withdraws_them() {
    let lab = Lab::up(
        "bgpmesh",
        &["--nodes", "3", "--pods-per-node", "1", "--encap", "none"],
    );
    let hosts = lab.host_names();
    let address = |host: &str| -> String {
        str_of(&lab.host(host)["address"])
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let expected = |host: &str| -> Vec<String> {
        let mut want: Vec<String> = lab
            .pods()
            .iter()
            .filter(|p| p.host != host)
            .map(|p| format!("{} via {}", block_of(&p.ip), address(&p.host)))
            .collect();
        want.sort();
        want
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    for host in &hosts {
        let ns = lab.host_ns(host);
        assert_eq!(
            sorted(bird_routes(&ns)),
            expected(host),
            "{host}'s BGP routes; all routes:\n{}",
            routes(&ns).join("\n")
        );
        assert!(
            !routes(&ns).iter().any(|r| r.contains("vxlan.calico")),
            "no VXLAN in BGP mode on {host}"
        );
        let listening = ns_ok(&ns, &["ss", "-ltnp"]);
        assert!(
            listening
                .lines()
                .any(|l| l.contains(":179 ") && l.contains("calico-node")),
            "calico-node listens on port 179 on {host}:\n{listening}"
        );
    }
    let (a, b) = (lab.pod("node1-pod1"), lab.pod("node2-pod1"));
    assert!(ping_once(&a.ns, &b.ip), "pod to pod over BGP routes");

    // Mesh off: no peers, no routes, no cross-host traffic.
    let config = std::env::temp_dir().join(format!("{}-bgpconfig.yaml", lab.name));
    let write_config = |mesh: bool| {
        std::fs::write(
            &config,
            format!(
                "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: {mesh}\n  asNumber: 64512\n"
            ),
        )
        .expect("write the BGPConfiguration");
    };
    write_config(false);
    lab.calicoctl_ok(&["apply", "-f", &config.display().to_string()]);
    let withdrawn = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        hosts
            .iter()
            .all(|h| bird_routes(&lab.host_ns(h)).is_empty())
    });
    assert!(
        withdrawn.is_some(),
        "mesh off: routes withdrawn on every host; node1 has {:?}",
        bird_routes(&lab.host_ns("node1"))
    );
    assert!(!ping_once(&a.ns, &b.ip), "no route, no cross-host traffic");

    // Mesh on again: routes and traffic return.
    write_config(true);
    lab.calicoctl_ok(&["apply", "-f", &config.display().to_string()]);
    let back = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        hosts
            .iter()
            .all(|h| sorted(bird_routes(&lab.host_ns(h))) == expected(h))
    });
    assert!(
        back.is_some(),
        "mesh on: routes back on every host; node1 has {:?}",
        bird_routes(&lab.host_ns("node1"))
    );
    let back = back.expect("checked");
    eprintln!(
        "[{}] routes back on every host {:.0} ms after the mesh was turned on",
        lab.name,
        back.as_secs_f64() * 1000.0
    );
    assert!(
        wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
            ping_once(&a.ns, &b.ip)
        })
        .is_some(),
        "pod to pod again"
    );
    let _ = std::fs::remove_file(&config);
}

/// Sends SIGCONT to a process stopped by a test when dropped, so a failing test does not leave it stopped.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    }
}

/// BGP mode on etcd with the datastore cut off from every host for 60 s (the relay that carries the
/// hosts' etcd connections is stopped, so their packets go unanswered as in a partition): the BGP
/// sessions stay Established, the `proto bird` routes stay, and pods keep talking. A change made
/// meanwhile (the mesh turned off, straight into etcd from outside the hosts) takes effect once the
/// datastore is back.
#[test]
fn bgp_sessions_and_routes_stay_while_the_datastore_is_unreachable_for_60_s() {
    tool("etcd", "etcd-server");
    let lab = Lab::up(
        "bgpdsgone",
        &[
            "--datastore",
            "etcd",
            "--nodes",
            "3",
            "--pods-per-node",
            "1",
            "--encap",
            "none",
        ],
    );
    let hosts = lab.host_names();
    let before: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let mut r = bird_routes(&lab.host_ns(h));
            r.sort();
            r
        })
        .collect();
    for (host, routes) in hosts.iter().zip(&before) {
        assert_eq!(
            routes.len(),
            2,
            "{host} starts with a route to each other host's block: {routes:?}"
        );
    }
    let node_pids: Vec<u32> = hosts.iter().map(|h| pid_of(&lab, h)).collect();
    let relay = lab.state["pids"]["relay"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no relay pid in the lab state: {}", lab.state["pids"]));
    let (a, b) = (lab.pod("node1-pod1"), lab.pod("node3-pod1"));
    assert!(ping_once(&a.ns, &b.ip), "pod to pod before the outage");

    let stopped = Stopped::stop(relay);
    let started = Instant::now();
    let config = std::env::temp_dir().join(format!("{}-bgpconfig.yaml", lab.name));
    std::fs::write(
        &config,
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: false\n  asNumber: 64512\n",
    )
    .expect("write the BGPConfiguration");
    // calicoctl runs outside the hosts and reaches etcd directly, not through the stopped relay.
    lab.calicoctl_ok(&["apply", "-f", &config.display().to_string()]);
    let _ = std::fs::remove_file(&config);
    let mut checks = 0;
    while started.elapsed() < Duration::from_secs(60) {
        thread::sleep(Duration::from_secs(5));
        checks += 1;
        for ((host, routes), pid) in hosts.iter().zip(&before).zip(&node_pids) {
            assert!(
                alive(*pid),
                "{host}'s calico-node exited during the outage:\n{}",
                lab.log_tail(host)
            );
            let mut now = bird_routes(&lab.host_ns(host));
            now.sort();
            assert_eq!(
                &now,
                routes,
                "{host}'s BGP routes changed {:.0} s into the outage",
                started.elapsed().as_secs_f64()
            );
            let status = node_status(&lab, host);
            let established = status.lines().filter(|l| l.contains("Established")).count();
            assert_eq!(
                established,
                2,
                "{host}'s sessions {:.0} s into the outage:\n{status}",
                started.elapsed().as_secs_f64()
            );
        }
        assert!(
            ping_once(&a.ns, &b.ip),
            "pod to pod {:.0} s into the outage",
            started.elapsed().as_secs_f64()
        );
    }
    assert!(checks >= 10, "only {checks} checks in 60 s");

    // The datastore is back: the mesh-off change made meanwhile applies.
    drop(stopped);
    let applied = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        hosts
            .iter()
            .all(|h| bird_routes(&lab.host_ns(h)).is_empty())
    });
    assert!(
        applied.is_some(),
        "the mesh was turned off during the outage, but node1 still has {:?} 60 s after the datastore came back:\n{}",
        bird_routes(&lab.host_ns("node1")),
        lab.log_tail("node1")
    );
    eprintln!(
        "[{}] the change made during the outage applied on every host {:.1} s after the datastore came back",
        lab.name,
        applied.expect("checked").as_secs_f64()
    );
    assert!(
        !ping_once(&a.ns, &b.ip),
        "mesh off: no route between the pods"
    );
}

/// `calico-lab probe` as a user checks reachability: every pair answered over TCP; UDP answered only
/// where a server listens (a pod added in another namespace, made as kube-controllers make one, with
/// named ports, which its WorkloadEndpoint carries), refused elsewhere; a drop rule on a host turns exactly the pairs it
/// covers into `X`; a deleted pod's probe server goes with it.
#[test]
fn probe_matrix_shows_allowed_refused_and_dropped_pairs() {
    let lab = Lab::up("probe", &["--nodes", "2", "--pods-per-node", "1"]);
    // A pod in a namespace that does not exist is refused, as Kubernetes refuses it.
    let mut refused = Command::new(lab_binary());
    refused.args([
        "add-pod",
        "--name",
        &lab.name,
        "node2",
        "--namespace",
        "prod",
    ]);
    let refused = run(&mut refused, COMMAND_LIMIT);
    assert!(
        !refused.status.success()
            && text(&refused.stderr).contains("calico-lab add-namespace prod"),
        "add-pod into a missing namespace: {}",
        describe(&refused)
    );
    lab.cli("add-namespace", &["prod", "--labels", "env=production"]);
    let profiles = lab.calicoctl_ok(&["get", "profiles", "-o", "yaml"]);
    for needle in [
        "name: kns.default",
        "name: kns.prod",
        "pcns.env: production",
        "pcns.projectcalico.org/name: prod",
    ] {
        assert!(
            profiles.contains(needle),
            "{needle} missing in the profiles:\n{profiles}"
        );
    }
    let out = lab.cli(
        "add-pod",
        &[
            "node2",
            "--namespace",
            "prod",
            "--labels",
            "app=web",
            "--ports",
            "http=8080/tcp,dns=53/udp",
        ],
    );
    assert!(out.starts_with("node2-pod2 "), "add-pod printed {out:?}");
    let wep = lab.calicoctl_ok(&["get", "workloadendpoints", "-n", "prod", "-o", "yaml"]);
    for needle in [
        "name: http",
        "port: 8080",
        "name: dns",
        "port: 53",
        "protocol: UDP",
        "kns.prod",
    ] {
        assert!(
            wep.contains(needle),
            "{needle} missing in the prod pod's endpoint:\n{wep}"
        );
    }
    let probe = |args: &[&str]| probe_results(&lab, args);
    let pods = ["node1-pod1", "node2-pod1", "node2-pod2"];
    let pairs = |verdict: &dyn Fn(&str, &str) -> &'static str| every_pair(&pods, verdict);
    assert_eq!(
        probe(&[]),
        pairs(&|_, _| "allowed"),
        "tcp/80 between all pods"
    );
    assert_eq!(
        probe(&["--protocol", "udp", "--port", "53"]),
        pairs(&|_, to| if to == "node2-pod2" {
            "allowed"
        } else {
            "refused"
        }),
        "udp/53 only where it is served"
    );

    // A drop rule on node2 for tcp/80 to node2-pod1 (forwarded traffic, from either host).
    let target = lab.pod("node2-pod1").ip;
    drop_forwarded(
        &lab,
        "node2",
        &["ip", "daddr", &target, "tcp", "dport", "80"],
    );
    assert_eq!(
        probe(&[]),
        pairs(&|_, to| if to == "node2-pod1" {
            "denied"
        } else {
            "allowed"
        }),
        "tcp/80 dropped on the way to node2-pod1 only"
    );
    let text = lab.cli(
        "probe",
        &[
            "--from",
            "node1-pod1",
            "--to",
            "node2-pod1,node2-pod2",
            "--timeout-ms",
            "3000",
        ],
    );
    assert!(
        text.lines().any(|l| l.trim_end() == "node1-pod1  X ."),
        "the matrix row for node1-pod1:\n{text}"
    );

    let server = lab_state(&lab)["pods"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p["name"] == "node2-pod2"))
        .and_then(|p| p["server_pid"].as_u64())
        .and_then(|p| u32::try_from(p).ok())
        .expect("node2-pod2's probe server pid in the lab state");
    assert!(alive(server), "node2-pod2's probe server runs");
    lab.cli("del-pod", &["node2-pod2"]);
    assert!(
        !alive(server),
        "node2-pod2's probe server stopped with the pod"
    );
}

/// `calico-lab probe --json <args>` as (from, to, outcome) triples. A loaded CI machine can take a
/// while to schedule a pod's server: 3 s before "no answer" unless `args` give `--timeout-ms`.
fn probe_results(lab: &Lab, args: &[&str]) -> Vec<(String, String, String)> {
    let mut all = vec!["--json"];
    if !args.contains(&"--timeout-ms") {
        all.extend(["--timeout-ms", "3000"]);
    }
    all.extend_from_slice(args);
    let json: Value = serde_json::from_str(&lab.cli("probe", &all))
        .unwrap_or_else(|e| panic!("probe {args:?} printed no JSON: {e}"));
    json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                str_of(&r["from"]).to_string(),
                str_of(&r["to"]).to_string(),
                r["outcome"]
                    .as_str()
                    .map_or_else(|| r["outcome"].to_string(), str::to_string),
            )
        })
        .collect()
}

/// Every pair of different `pods` with the outcome `verdict` expects, in `probe`'s order.
fn every_pair(
    pods: &[&str],
    verdict: &dyn Fn(&str, &str) -> &'static str,
) -> Vec<(String, String, String)> {
    let mut want = Vec::new();
    for from in pods {
        for to in pods.iter().filter(|t| *t != from) {
            want.push((
                from.to_string(),
                to.to_string(),
                verdict(from, to).to_string(),
            ));
        }
    }
    want
}

/// The only rule of the test's own forward chain on `host` (table `probetest`, made on first use):
/// forwarded packets matching `matches` get `verdict` (`drop`, `reject with ...`).
fn forward_rule(lab: &Lab, host: &str, matches: &[&str], verdict: &[&str]) {
    let ns = lab.host_ns(host);
    ns_ok(&ns, &["nft", "add", "table", "ip", "probetest"]);
    ns_ok(
        &ns,
        &[
            "nft",
            "add chain ip probetest blockit { type filter hook forward priority 0; }",
        ],
    );
    ns_ok(
        &ns,
        &["nft", "flush", "chain", "ip", "probetest", "blockit"],
    );
    let mut rule = vec!["nft", "add", "rule", "ip", "probetest", "blockit"];
    rule.extend_from_slice(matches);
    rule.extend_from_slice(verdict);
    ns_ok(&ns, &rule);
}

/// [`forward_rule`] dropping what matches.
fn drop_forwarded(lab: &Lab, host: &str, matches: &[&str]) {
    forward_rule(lab, host, matches, &["drop"]);
}

/// `calico-lab probe --protocol sctp` on a kernel without SCTP: the pod with an SCTP port answers
/// the INIT with an INIT-ACK naming itself (allowed), the others with an ABORT (refused); an nft
/// drop rule for SCTP to that port turns exactly the pairs it covers into `denied`, a reject rule
/// (ICMP host unreachable) into `unreachable`.
#[test]
fn probe_over_sctp_tells_allowed_refused_and_dropped_pairs() {
    let lab = Lab::up("sctp", &["--nodes", "2", "--pods-per-node", "1"]);
    let out = lab.cli("add-pod", &["node2", "--ports", "assoc=9000/sctp"]);
    assert!(out.starts_with("node2-pod2 "), "add-pod printed {out:?}");
    let wep = lab.calicoctl_ok(&["get", "workloadendpoints", "-o", "yaml"]);
    for needle in ["name: assoc", "port: 9000", "protocol: SCTP"] {
        assert!(
            wep.contains(needle),
            "{needle} missing in the endpoints:\n{wep}"
        );
    }
    // Conntrack on node2 checks each SCTP packet it forwards (CRC32c included): none is invalid.
    let ns = lab.host_ns("node2");
    ns_ok(&ns, &["nft", "add", "table", "ip", "sctptest"]);
    ns_ok(
        &ns,
        &[
            "nft",
            "add chain ip sctptest invalid { type filter hook prerouting priority 10; }",
        ],
    );
    ns_ok(
        &ns,
        &[
            "nft", "add", "rule", "ip", "sctptest", "invalid", "meta", "l4proto", "sctp", "ct",
            "state", "invalid", "counter",
        ],
    );
    let pods = ["node1-pod1", "node2-pod1", "node2-pod2"];
    let sctp = ["--protocol", "sctp", "--port", "9000"];
    assert_eq!(
        probe_results(&lab, &sctp),
        every_pair(&pods, &|_, to| if to == "node2-pod2" {
            "allowed"
        } else {
            "refused"
        }),
        "sctp/9000 answered only where it is served"
    );
    let counted = ns_ok(&ns, &["nft", "list", "chain", "ip", "sctptest", "invalid"]);
    assert!(
        counted.contains("counter packets 0 "),
        "conntrack on node2 found SCTP packets invalid:\n{counted}"
    );

    let target = out
        .split_whitespace()
        .nth(1)
        .expect("add-pod prints the address");
    let sctp_to_target = [
        "ip", "daddr", target, "meta", "l4proto", "sctp", "sctp", "dport", "9000",
    ];
    drop_forwarded(&lab, "node2", &sctp_to_target);
    assert_eq!(
        probe_results(&lab, &sctp),
        every_pair(&pods, &|_, to| if to == "node2-pod2" {
            "denied"
        } else {
            "refused"
        }),
        "sctp/9000 dropped on the way to node2-pod2 only"
    );
    // Rejected with an ICMP error instead: those pairs are unreachable.
    forward_rule(
        &lab,
        "node2",
        &sctp_to_target,
        &["reject", "with", "icmp", "type", "host-unreachable"],
    );
    assert_eq!(
        probe_results(&lab, &sctp),
        every_pair(&pods, &|_, to| if to == "node2-pod2" {
            "unreachable"
        } else {
            "refused"
        }),
        "sctp/9000 to node2-pod2 rejected with ICMP host unreachable"
    );
    drop_forwarded(&lab, "node2", &sctp_to_target);
    let text = lab.cli("probe", &[&sctp[..], &["--from", "node1-pod1"]].concat());
    assert!(
        text.starts_with("probe sctp/9000:")
            && text.lines().any(|l| l.trim_end() == "node1-pod1  - R X"),
        "the matrix for node1-pod1:\n{text}"
    );
}

/// The lab's state file as `calico-lab status --json` shows it.
fn lab_state(lab: &Lab) -> Value {
    let out = lab.cli("status", &["--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}"))
}

/// The IPv4 GSO maximum of link `name` in namespace `ns`, as the kernel reports it.
fn gso_ipv4_max(ns: &str, name: &str) -> u32 {
    let netns = open_netns(ns);
    let mut nl = calico_netlink::Netlink::in_netns(&netns).expect("netlink in the namespace");
    nl.link_by_name(name)
        .expect("link lookup")
        .unwrap_or_else(|| panic!("no {name} in {ns}"))
        .gso_ipv4_max_size
}

/// The host end (`cali…`) of a pod's veth on its host.
fn host_end_of(lab: &Lab, pod: &Pod) -> String {
    let netns = open_netns(&lab.host_ns(&pod.host));
    let mut nl = calico_netlink::Netlink::in_netns(&netns).expect("netlink in the host");
    let route = nl
        .routes(calico_netlink::Family::V4, Some(calico_netlink::TABLE_MAIN))
        .expect("routes")
        .into_iter()
        .find(|r| r.dst.to_string() == format!("{}/32", pod.ip))
        .unwrap_or_else(|| panic!("no route to {} on {}", pod.ip, pod.host));
    let oif = route.oif.expect("the pod's route names its interface");
    nl.link_by_index(oif)
        .expect("link")
        .expect("the pod's host end")
        .name
}

/// With `--big-tcp` the underlay's links carry IPv4 GSO/GRO up to 192 KiB, as a NIC with BIG TCP: in BGP
/// mode calico-node hands that size on and the CNI plugin gives it to both ends of every pod's veth, so
/// routed pod traffic is not cut into packets three times smaller than the host's own. A VXLAN lab's
/// pods keep the kernel's 64 KiB, and so does a lab without `--big-tcp`.
#[test]
fn pods_inherit_the_uplinks_big_tcp_size_when_routed_without_encapsulation() {
    const BIG: u32 = 196_608;
    const DEFAULT: u32 = 65_536;
    for (tag, args, want) in [
        (
            "bigtcp",
            vec!["--nodes", "2", "--pods-per-node", "1", "--big-tcp"],
            BIG,
        ),
        (
            "bigtcpvx",
            vec![
                "--nodes",
                "2",
                "--pods-per-node",
                "1",
                "--big-tcp",
                "--encap",
                "vxlan",
            ],
            DEFAULT,
        ),
        (
            "nobigtcp",
            vec!["--nodes", "2", "--pods-per-node", "1"],
            DEFAULT,
        ),
    ] {
        let lab = Lab::up(tag, &args);
        let uplink = gso_ipv4_max(&lab.host_ns("node1"), "eth0");
        let big = args.contains(&"--big-tcp");
        assert_eq!(
            uplink,
            if big { BIG } else { DEFAULT },
            "{tag}: node1's eth0"
        );
        // A pod added after calico-node is up gets it too.
        let added = lab.add_pod("node2");
        for pod in lab.pods().iter().chain([&added]) {
            assert_eq!(
                gso_ipv4_max(&pod.ns, "eth0"),
                want,
                "{tag}: {}'s eth0",
                pod.name
            );
            let host_end = host_end_of(&lab, pod);
            assert_eq!(
                gso_ipv4_max(&lab.host_ns(&pod.host), &host_end),
                want,
                "{tag}: {}'s host end {host_end}",
                pod.name
            );
        }
        assert!(
            wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
                ping_once(&lab.pod("node1-pod1").ns, &added.ip)
            })
            .is_some(),
            "{tag}: node1-pod1 reaches the added pod"
        );
    }
}

/// The first line a TCP server at `addr` sends, read from inside `ns` (None: no answer in time).
fn greeting_from(ns: &Netns, addr: SocketAddr) -> Option<String> {
    let mut stream = ns
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(1)))
        .ok()?
        .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text.trim().to_string())
}

/// A floating IP (the seed's `cali-fip-dnat`/`cali-fip-snat`): a WorkloadEndpoint's `ipNATs` makes its
/// host DNAT the external address to the pod, so a client outside the cluster (routing that address to
/// the pod's host) reaches the pod's server; the pod itself reaches its own floating IP (hairpin SNAT);
/// removing the mapping removes both.
#[test]
fn floating_ip_reaches_the_pod_from_outside_and_back_to_itself() {
    const FLOATING: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 10);
    let lab = Lab::up("fip", &["--nodes", "2", "--pods-per-node", "1"]);
    let pod = lab.pod("node2-pod1");
    let wep = "node2-k8s-node2--pod1-eth0";
    // The pod's probe server starts on first use.
    lab.cli("probe", &["--from", "node1-pod1", "--to", "node2-pod1"]);
    let external = External::attach(&lab);
    let node2 = str_of(&lab.host("node2")["address"]).to_string();
    external
        .ns
        .ip(&["route", "add", &format!("{FLOATING}/32"), "via", &node2])
        .unwrap_or_else(|e| panic!("{e}"));
    let outside = external.netns();
    let target = SocketAddr::from((FLOATING, 80));
    assert_eq!(greeting_from(&outside, target), None, "no floating IP yet");

    let patch = format!(
        r#"{{"spec":{{"ipNATs":[{{"internalIP":"{}","externalIP":"{FLOATING}"}}]}}}}"#,
        pod.ip
    );
    lab.calicoctl_ok(&[
        "patch",
        "workloadendpoint",
        wep,
        "-n",
        "default",
        "-p",
        &patch,
    ]);
    let reached = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        greeting_from(&outside, target).as_deref() == Some("node2-pod1")
    });
    assert!(
        reached.is_some(),
        "the outside reaches node2-pod1 at {FLOATING}; node2's table:\n{}",
        ns_ok(
            &lab.host_ns("node2"),
            &["nft", "list", "table", "ip", "calico"]
        )
    );
    let chain = ns_ok(
        &lab.host_ns("node2"),
        &["nft", "list", "chain", "ip", "calico", "cali-fip-dnat"],
    );
    assert!(
        chain.contains(&format!("ip daddr {FLOATING} dnat to {}", pod.ip)),
        "{chain}"
    );
    assert_eq!(
        greeting_from(&open_netns(&pod.ns), target).as_deref(),
        Some("node2-pod1"),
        "the pod reaches its own floating IP"
    );

    lab.calicoctl_ok(&[
        "patch",
        "workloadendpoint",
        wep,
        "-n",
        "default",
        "-p",
        r#"{"spec":{"ipNATs":[]}}"#,
    ]);
    let gone = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        greeting_from(&outside, target).is_none()
    });
    assert!(
        gone.is_some(),
        "the floating IP stops answering once removed"
    );
}

/// `calicoctl node status` run inside `host` (it asks that host's calico-node over its socket).
fn node_status(lab: &Lab, host: &str) -> String {
    let calicoctl = workspace_binary("calicoctl");
    lab.cli(
        "exec",
        &[
            host,
            "--",
            &calicoctl.display().to_string(),
            "node",
            "status",
        ],
    )
}

/// The status row of `peer` in `calicoctl node status` output, cells trimmed.
fn status_row(status: &str, peer: &str) -> Option<Vec<String>> {
    status
        .lines()
        .find(|l| l.starts_with(&format!("| {peer} ")))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
}

/// Bad BGP peers in BGP mode: a BGPPeer at an address where nobody answers, and node-to-node mesh
/// passwords that differ between two hosts. Neither session comes up, `calicoctl node status` and
/// `/readiness` say which peer and why, and the sessions and routes that are fine stay as they were.
/// Setting the same password on both sides brings that session up.
#[test]
fn bad_bgp_peers_never_come_up_and_leave_the_others_alone() {
    let lab = Lab::up(
        "bgpbad",
        &["--nodes", "3", "--pods-per-node", "1", "--encap", "none"],
    );
    let dir = std::env::temp_dir().join(format!("{}-bgp", lab.name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let apply = |file: &str, yaml: &str| {
        let path = dir.join(file);
        std::fs::write(&path, yaml).expect("write a resource file");
        lab.calicoctl_ok(&["apply", "-f", &path.display().to_string()]);
    };
    let established = |host: &str, peer: &str| {
        status_row(&node_status(&lab, host), peer)
            .is_some_and(|row| row.get(2).is_some_and(|s| s == "up"))
    };

    // Nobody answers at 198.18.0.99 (inside the lab's underlay subnet, no host there).
    apply(
        "nobody.yaml",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: nobody\nspec:\n  peerIP: 198.18.0.99\n  asNumber: 64512\n",
    );
    let listed = wait_for(Duration::from_secs(10), Duration::from_millis(200), || {
        status_row(&node_status(&lab, "node1"), "198.18.0.99").is_some()
    });
    assert!(listed.is_some(), "{}", node_status(&lab, "node1"));
    thread::sleep(Duration::from_secs(2));
    let status = node_status(&lab, "node1");
    let row = status_row(&status, "198.18.0.99").expect("listed");
    assert_eq!(row[1], "global", "{status}");
    assert_eq!(row[2], "start", "never up: {status}");
    assert_ne!(row[4], "Established", "{status}");
    for peer in ["198.18.0.12", "198.18.0.13"] {
        assert!(established("node1", peer), "the mesh stays up: {status}");
    }
    let (a, c) = (lab.pod("node1-pod1"), lab.pod("node3-pod1"));
    assert!(ping_once(&a.ns, &c.ip), "pods still reach each other");

    // Mesh passwords that differ: node1 and node3 read different secrets (each host its own secrets
    // directory), so TCP-MD5 drops their segments and the session never comes up; node2 matches node1.
    for (host, password) in [("node1", "right"), ("node2", "right"), ("node3", "wrong")] {
        let secrets = Path::new(str_of(&lab.host(host)["state_dir"])).join("secrets/bgp-secrets");
        std::fs::create_dir_all(&secrets).expect("secrets dir");
        std::fs::write(secrets.join("mesh-password"), format!("{password}\n"))
            .expect("write the secret");
    }
    apply(
        "bgpconfig.yaml",
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: true\n  asNumber: 64512\n  nodeMeshPassword:\n    secretKeyRef:\n      name: bgp-secrets\n      key: mesh-password\n",
    );
    let node1_node2 = wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        established("node1", "198.18.0.12") && established("node2", "198.18.0.11")
    });
    assert!(
        node1_node2.is_some(),
        "matching passwords: node1-node2 up; {}",
        node_status(&lab, "node1")
    );
    thread::sleep(Duration::from_secs(3));
    assert!(
        !established("node1", "198.18.0.13") && !established("node3", "198.18.0.11"),
        "different passwords never come up: {}",
        node_status(&lab, "node1")
    );
    let readiness = open_netns(&lab.host_ns("node3"))
        .run(|| {
            let mut stream = TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, HEALTH_PORT)),
                Duration::from_secs(1),
            )?;
            stream.write_all(b"GET /readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok::<_, std::io::Error>(answer)
        })
        .expect("enter node3")
        .expect("node3's readiness answers");
    assert!(
        readiness.contains("BGP not established with 198.18.0.11"),
        "node3's readiness names the peer it cannot reach: {readiness}"
    );

    // The same password on node3: the session comes up and node1 routes node3's block over it.
    let secrets = Path::new(str_of(&lab.host("node3")["state_dir"])).join("secrets/bgp-secrets");
    std::fs::write(secrets.join("mesh-password"), "right\n").expect("write the secret");
    // Secrets are read when the BGP configuration is computed: a datastore change makes that happen.
    apply(
        "bgpconfig.yaml",
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMeshEnabled: true\n  asNumber: 64512\n  logSeverityScreen: Info\n  nodeMeshPassword:\n    secretKeyRef:\n      name: bgp-secrets\n      key: mesh-password\n",
    );
    let up = wait_for(Duration::from_secs(15), Duration::from_millis(200), || {
        established("node1", "198.18.0.13")
    });
    assert!(
        up.is_some(),
        "same password: up; {}",
        node_status(&lab, "node1")
    );
    assert!(
        wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
            ping_once(&a.ns, &c.ip)
        })
        .is_some(),
        "node1's pod reaches node3's again"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Hosts on two L2 segments with a top-of-rack router between them (BIRD or FRR in the underlay
/// namespace, eBGP with every host through a global BGPPeer), in BGP mode: the router learns each
/// block with its own host as next hop and puts it in its kernel; a host reaches a block on the other
/// segment through the router (the speaker's next hop resolved recursively), and pods on different
/// segments reach each other with no encapsulation.
fn tor_carries_pods_across_segments(tor: &str) {
    let lab = Lab::up(
        &format!("tor{tor}"),
        &[
            "--nodes",
            "4",
            "--pods-per-node",
            "1",
            "--encap",
            "none",
            "--subnets",
            "2",
            "--tor",
            tor,
        ],
    );
    let router = str_of(&lab.state["underlay"]["namespace"]).to_string();
    let router_routes = routes(&router);
    for pod in lab.pods() {
        let host = str_of(&lab.host(&pod.host)["address"]).to_string();
        let want = format!("{} ", block_of(&pod.ip));
        assert!(
            router_routes
                .iter()
                .any(|r| r.starts_with(&want) && r.contains(&format!("via {host} "))),
            "the router routes {}'s block to {host}: {router_routes:?}",
            pod.host
        );
    }
    for host in lab.host_names() {
        let status = node_status(&lab, &host);
        let row = status_row(&status, "198.18.0.1").expect("the ToR peer is listed");
        assert_eq!(
            (row[1].as_str(), row[2].as_str()),
            ("global", "up"),
            "{status}"
        );
    }
    // node1 (198.18.0.11) and node2 (198.18.1.12) sit on different segments.
    let node2_block = block_of(&lab.pod("node2-pod1").ip);
    assert!(
        bird_routes(&lab.host_ns("node1")).contains(&format!("{node2_block} via 198.18.0.1")),
        "node1 reaches node2's block through the router: {:?}",
        routes(&lab.host_ns("node1"))
    );
    let (a, b) = (lab.pod("node1-pod1"), lab.pod("node2-pod1"));
    assert!(ping_once(&a.ns, &b.ip), "pods on different segments");
    assert!(
        !routes(&lab.host_ns("node1"))
            .iter()
            .any(|r| r.contains("vxlan.calico")),
        "no encapsulation"
    );
}

#[test]
fn bird_as_tor_carries_pods_across_segments() {
    tor_carries_pods_across_segments("bird");
}

#[test]
fn frr_as_tor_carries_pods_across_segments() {
    tor_carries_pods_across_segments("frr");
}

/// `vxlanMode: CrossSubnet` on two segments: a same-segment host's block is routed straight over the
/// underlay, another segment's through the VXLAN tunnel, and BGP (running) leaves both to Felix.
#[test]
fn vxlan_crosssubnet_routes_plainly_within_a_segment_and_tunnels_across() {
    let lab = Lab::up(
        "xsub",
        &[
            "--nodes",
            "3",
            "--pods-per-node",
            "1",
            "--encap",
            "vxlan-crosssubnet",
            "--subnets",
            "2",
        ],
    );
    let node1 = routes(&lab.host_ns("node1"));
    // node3 (198.18.0.13) shares node1's segment; node2 (198.18.1.12) does not.
    let node3_block = block_of(&lab.pod("node3-pod1").ip);
    let node2_block = block_of(&lab.pod("node2-pod1").ip);
    assert!(
        node1.iter().any(
            |r| r.starts_with(&format!("{node3_block} via 198.18.0.13 ")) && r.contains("proto 80")
        ),
        "same segment: straight to node3: {node1:?}"
    );
    assert!(
        node1.iter().any(
            |r| r.starts_with(&format!("{node2_block} via ")) && r.contains("dev vxlan.calico")
        ),
        "other segment: through the tunnel: {node1:?}"
    );
    assert!(
        bird_routes(&lab.host_ns("node1")).is_empty(),
        "routes of a VXLAN pool are Felix's, not BGP's: {node1:?}"
    );
    let (a, b, c) = (
        lab.pod("node1-pod1"),
        lab.pod("node2-pod1"),
        lab.pod("node3-pod1"),
    );
    assert!(ping_once(&a.ns, &b.ip) && ping_once(&a.ns, &c.ip));
}
