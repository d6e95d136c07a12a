//! The seed article 002 (Calico's BGP mode and route reflector mode) on a real lab, step by step as
//! `scripts/seed-002-bgp.sh` runs it, each step checked by its effect on the network: `proto bird`
//! routes per host, pings across hosts, `calicoctl node status` rows, the BGPPeer listed. Commands run
//! inside the hosts through `calico-lab exec`, as an operator runs them. Each test owns one lab (named
//! after the test and the process id), removed by a drop guard also when the test fails.
//!
//! Needs root and the workspace's binaries: `cargo build --workspace --bins` first.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use calico_testutil::netns::run_with_timeout;
use serde_json::Value;

use common::{block_of, describe, lab_binary, preconditions, run, text};

const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How long sessions with a route reflector may take to come up when the article's BGPPeer is applied
/// on a running cluster. Both ends of such a peering connect at the same moment; the speaker settles
/// the collision on the first OPEN, retries with jitter, and takes the peer's connection while it
/// waits, so this takes seconds (7-13 s for the whole walk measured); the bound is generous for a
/// loaded machine, not a performance figure.
const RR_LIMIT: Duration = Duration::from_secs(60);
/// `up --route-reflectors` has no collision to resolve.
const RR_FLAG_LIMIT: Duration = Duration::from_secs(20);
/// What a timeout of [`RR_LIMIT`] most likely means.
const KNOWN_ISSUE: &str = "if both ends show Idle or Active, the two speakers keep failing to settle their connection collision (crates/bgp session, RFC 4271 §6.8)";

/// The labs of this file run one at a time: BGP session set-up is timing-sensitive (above), and two
/// labs starting at once on a small machine only add noise to it.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());
const UP_LIMIT: Duration = Duration::from_secs(200);

/// Polls `check` every 100 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A lab that is up; `calico-lab down` when dropped (also when the test panics).
struct Lab {
    name: String,
    state: Value,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Lab {
    fn up(tag: &str, args: &[&str]) -> Lab {
        preconditions();
        // A test that panicked while holding the turn leaves nothing behind (its guard ran `down`).
        let turn = ONE_LAB
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut lab = Lab {
            name: format!("{tag}_{}", std::process::id()),
            state: Value::Null,
            _turn: turn,
        };
        let started = Instant::now();
        let mut command = Command::new(lab_binary());
        command
            .args(["up", "--name", &lab.name, "--json"])
            .args(args);
        let output = run(&mut command, UP_LIMIT);
        assert!(
            output.status.success(),
            "calico-lab up {} failed: {}",
            args.join(" "),
            describe(&output)
        );
        lab.state = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("up --json printed no JSON ({e}): {}", describe(&output)));
        eprintln!(
            "[{}] up in {:.2}s",
            lab.name,
            started.elapsed().as_secs_f64()
        );
        lab
    }

    /// `calico-lab exec <target> -- <argv>`.
    fn exec(&self, target: &str, argv: &[&str]) -> Output {
        let mut command = Command::new(lab_binary());
        command
            .args(["exec", "--name", &self.name, target, "--"])
            .args(argv)
            // The lab's own settings must reach calicoctl, not the test's environment.
            .env_remove("DATASTORE_TYPE")
            .env_remove("CALICO_DATASTORE_PATH")
            .env_remove("ETCD_ENDPOINTS");
        run(&mut command, COMMAND_LIMIT)
    }

    fn exec_ok(&self, target: &str, argv: &[&str]) -> String {
        let output = self.exec(target, argv);
        assert!(
            output.status.success(),
            "calico-lab exec {target} -- {} failed: {}",
            argv.join(" "),
            describe(&output)
        );
        text(&output.stdout)
    }

    /// `calicoctl <args>` run in `host`.
    fn calicoctl(&self, host: &str, args: &[&str]) -> String {
        let mut argv = vec!["calicoctl"];
        argv.extend_from_slice(args);
        self.exec_ok(host, &argv)
    }

    fn hosts(&self) -> Vec<(String, String)> {
        self.state["hosts"]
            .as_array()
            .map(|hosts| {
                hosts
                    .iter()
                    .map(|h| {
                        (
                            h["name"].as_str().unwrap_or_default().to_string(),
                            h["address"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn address(&self, host: &str) -> String {
        self.hosts()
            .into_iter()
            .find(|(name, _)| name == host)
            .map(|(_, address)| address)
            .unwrap_or_else(|| panic!("no host {host}"))
    }

    /// (pod, host, ip) of every pod.
    fn pods(&self) -> Vec<(String, String, String)> {
        self.state["pods"]
            .as_array()
            .map(|pods| {
                pods.iter()
                    .map(|p| {
                        let field = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                        (field("name"), field("host"), field("ip"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pod_ip(&self, pod: &str) -> String {
        self.pods()
            .into_iter()
            .find(|(name, _, _)| name == pod)
            .map(|(_, _, ip)| ip)
            .unwrap_or_else(|| panic!("no pod {pod}"))
    }

    /// `proto bird` routes in `host`, as sorted `<dst> via <gateway>`.
    fn bird_routes(&self, host: &str) -> Vec<String> {
        let out = self.exec_ok(host, &["ip", "-4", "route", "show", "proto", "bird"]);
        let mut routes: Vec<String> = out
            .lines()
            .filter_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    [dst, "via", gateway, ..] => Some(format!("{dst} via {gateway}")),
                    _ => None,
                },
            )
            .collect();
        routes.sort();
        routes
    }

    /// What BGP should give `host`: every other host's pod block via that host.
    fn expected_bird_routes(&self, host: &str) -> Vec<String> {
        let mut want: Vec<String> = self
            .pods()
            .into_iter()
            .filter(|(_, h, _)| h != host)
            .map(|(_, h, ip)| format!("{} via {}", block_of(&ip), self.address(&h)))
            .collect();
        want.sort();
        want.dedup();
        want
    }

    fn vxlan_routes(&self, host: &str) -> usize {
        self.exec_ok(host, &["ip", "-4", "route", "show"])
            .lines()
            .filter(|l| l.contains("dev vxlan.calico"))
            .count()
    }

    /// One ping (1 s to answer) from `target` (a host or a pod) to `ip`.
    fn ping(&self, target: &str, ip: &str) -> bool {
        self.exec(target, &["busybox", "ping", "-c", "1", "-W", "1", ip])
            .status
            .success()
    }

    /// `calicoctl node status` in `host`: its IPv4 rows, or None when it says `No IPv4 peers found.`.
    fn node_status(&self, host: &str) -> Option<Vec<PeerRow>> {
        let out = self.calicoctl(host, &["node", "status"]);
        assert!(
            out.starts_with("Calico process is running."),
            "node status on {host}:\n{out}"
        );
        let v4 = out
            .split("IPv6 BGP status")
            .next()
            .unwrap_or_default()
            .to_string();
        if v4.contains("No IPv4 peers found.") {
            return None;
        }
        Some(
            v4.lines()
                .filter(|l| l.starts_with('|'))
                .filter_map(|l| {
                    let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                    match cells[..] {
                        ["", address, kind, state, _since, info, ""]
                            if !address.is_empty() && address != "PEER ADDRESS" =>
                        {
                            Some(PeerRow {
                                address: address.to_string(),
                                kind: kind.to_string(),
                                state: state.to_string(),
                                info: info.to_string(),
                            })
                        }
                        _ => None,
                    }
                })
                .collect(),
        )
    }

    /// Waits until `host`'s node status has exactly these (address, type) peers, all Established.
    fn wait_peers(&self, host: &str, want: &[(&str, &str)], limit: Duration) {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, k)| (a.to_string(), k.to_string()))
            .collect();
        let mut last = None;
        let ok = wait_for(limit, || {
            let rows = self.node_status(host).unwrap_or_default();
            let got: Vec<(String, String)> = rows
                .iter()
                .filter(|r| r.state == "up" && r.info == "Established")
                .map(|r| (r.address.clone(), r.kind.clone()))
                .collect();
            let done = got == want && rows.len() == want.len();
            last = Some(rows);
            done
        });
        assert!(
            ok,
            "{host}: want {want:?} Established within {limit:?}, node status has {last:?}; {KNOWN_ISSUE}"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut command = Command::new(lab_binary());
        command.args(["down", "--name", &self.name]);
        match run_with_timeout(&mut command, Duration::from_secs(60)) {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!("warning: down {} failed: {}", self.name, describe(&output)),
            Err(e) => eprintln!("warning: down {}: {e}", self.name),
        }
    }
}

#[derive(Debug)]
#[allow(dead_code)] // read through Debug in failure messages
struct PeerRow {
    address: String,
    kind: String,
    state: String,
    info: String,
}

/// `routeReflectorClusterID: 244.0.0.1` in a Node's YAML (calicoctl quotes it; Go's YAML would not).
fn has_cluster_id(yaml: &str) -> bool {
    yaml.lines().any(|l| {
        l.trim()
            .strip_prefix("routeReflectorClusterID:")
            .map(str::trim)
            .is_some_and(|v| v.trim_matches('"') == "244.0.0.1")
    })
}

/// The rows (after the header) of a calicoctl table, split into cells.
fn table_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .filter(|cells: &Vec<String>| !cells.is_empty())
        .collect()
}

/// A temporary file for what the article saves with `> file`.
struct TempFile(PathBuf);

impl TempFile {
    fn new(lab: &Lab, name: &str, content: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("{}-{name}", lab.name));
        std::fs::write(&path, content).expect("write a temporary file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temporary paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const MASTER: &str = "k8s-master";
const NODE1: &str = "k8s-node1";
const NODE2: &str = "k8s-node2";

/// The article's walk: the pool leaves encapsulation for BGP with a ping running, the mesh is seen and
/// then turned off (routes and traffic gone), and k8s-node2 becomes a route reflector by label, cluster
/// ID and BGPPeer: every host gets its `node specific` peers, the reflector's sessions come up (both
/// ends connect at once, as with Calico's BGPPeer), routes and traffic are back, and k8s-master has one
/// established `node specific` peer.
#[test]
fn seed_002_bgp_mode_then_route_reflector() {
    let started = Instant::now();
    let lab = Lab::up(
        "seedbgp",
        &[
            "--node-names",
            "k8s-master,k8s-node1,k8s-node2",
            "--encap",
            "vxlan",
            "--backend",
            "bird",
            "--pods-per-node",
            "1",
        ],
    );
    let hosts = [MASTER, NODE1, NODE2];
    let target = lab.pod_ip("k8s-node2-pod1");

    // The pool starts on VXLAN: Felix routes other hosts' blocks through the tunnel, BGP writes none.
    let pools = lab.calicoctl(MASTER, &["get", "ippool", "-o", "wide"]);
    let rows = table_rows(&pools);
    assert_eq!(rows.len(), 1, "{pools}");
    assert_eq!(rows[0][4], "Always", "VXLANMODE: {pools}");
    for host in hosts {
        assert!(
            lab.bird_routes(host).is_empty(),
            "{host}: no proto bird yet"
        );
        assert_eq!(
            lab.vxlan_routes(host),
            2,
            "{host}: VXLAN routes to 2 blocks"
        );
    }

    // `calicoctl get ippool -o yaml > ippool.yaml`, vxlanMode: Always -> Never, applied with a ping
    // running from k8s-master to k8s-node2's pod.
    let yaml = lab.calicoctl(MASTER, &["get", "ippool", "-o", "yaml"]);
    assert!(yaml.contains("vxlanMode: Always"), "{yaml}");
    let pool_file = TempFile::new(
        &lab,
        "ippool.yaml",
        &yaml.replace("vxlanMode: Always", "vxlanMode: Never"),
    );
    let mut ping = Command::new(lab_binary());
    ping.args(["exec", "--name", &lab.name, MASTER, "--"])
        .args([
            "busybox", "ping", "-c", "30", "-i", "0.1", "-W", "1", &target,
        ]);
    let pinger = thread::spawn(move || run(&mut ping, Duration::from_secs(30)));
    thread::sleep(Duration::from_millis(700));
    let applied = lab.calicoctl(MASTER, &["apply", "-f", pool_file.path()]);
    assert_eq!(
        applied.trim(),
        "Successfully applied 1 'IPPool' resource(s)"
    );
    let pinged = pinger.join().expect("the ping thread");
    let out = text(&pinged.stdout);
    let received: usize = out
        .lines()
        .find(|l| l.contains("packets received"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {}", describe(&pinged)));
    // The hand-over from Felix's tunnel route to BGP's route usually costs one ping at most; a
    // few lost are tolerated, traffic cut off is not.
    assert!(
        received >= 24,
        "pings continue across the change: {received} of 30 answered\n{out}"
    );
    eprintln!(
        "[{}] {received}/30 pings answered across the pool change",
        lab.name
    );
    let pools = lab.calicoctl(MASTER, &["get", "ippool", "-o", "wide"]);
    assert_eq!(table_rows(&pools)[0][4], "Never", "{pools}");

    // BGP mode: every host routes the others' blocks `proto bird` via their hosts, no tunnel.
    for host in hosts {
        let want = lab.expected_bird_routes(host);
        assert_eq!(want.len(), 2);
        assert!(
            wait_for(Duration::from_secs(5), || lab.bird_routes(host) == want),
            "{host}: proto bird routes {:?}, want {want:?}",
            lab.bird_routes(host)
        );
        assert_eq!(lab.vxlan_routes(host), 0, "{host}: no VXLAN route left");
    }
    assert!(lab.ping(MASTER, &target), "host to pod over BGP routes");
    assert!(
        lab.ping("k8s-master-pod1", &lab.pod_ip("k8s-node1-pod1")),
        "pod to pod over BGP routes"
    );

    // The node-to-node mesh: two mesh peers on every host, two established TCP sessions on 179.
    for host in hosts {
        let others: Vec<String> = hosts
            .iter()
            .filter(|h| **h != host)
            .map(|h| lab.address(h))
            .collect();
        let want: Vec<(&str, &str)> = others
            .iter()
            .map(|a| (a.as_str(), "node-to-node mesh"))
            .collect();
        lab.wait_peers(host, &want, Duration::from_secs(10));
        let ss = lab.exec_ok(host, &["ss", "-antp"]);
        let sessions: Vec<&str> = ss
            .lines()
            .filter(|l| l.starts_with("ESTAB") && l.contains(":179 ") && l.contains("calico-node"))
            .collect();
        assert_eq!(sessions.len(), 2, "{host}: ss -antp | grep 179\n{ss}");
    }

    // Mesh off with the article's BGPConfiguration, verbatim.
    let before = lab.calicoctl(MASTER, &["get", "bgpconfig"]);
    assert!(
        table_rows(&before).is_empty(),
        "no BGPConfiguration yet: {before}"
    );
    let config = TempFile::new(
        &lab,
        "bgpconfig.yaml",
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  logSeverityScreen: Info\n  nodeToNodeMeshEnabled: false \n  asNumber: 64512\n",
    );
    lab.calicoctl(MASTER, &["apply", "-f", config.path()]);
    let after = lab.calicoctl(MASTER, &["get", "bgpconfig"]);
    assert_eq!(
        table_rows(&after),
        vec![vec!["default", "Info", "false", "64512"]],
        "{after}"
    );
    for host in hosts {
        assert!(
            wait_for(Duration::from_secs(5), || lab.bird_routes(host).is_empty()),
            "{host}: routes withdrawn with the mesh off; has {:?}",
            lab.bird_routes(host)
        );
    }
    assert!(!lab.ping(MASTER, &target), "no route, no cross-host ping");
    assert!(
        lab.node_status(MASTER).is_none(),
        "No IPv4 peers found. on k8s-master"
    );

    // k8s-node2 becomes a route reflector: label, cluster ID through get -o yaml / edit / apply.
    let labelled = lab.calicoctl(MASTER, &["label", "nodes", NODE2, "route-reflector=true"]);
    assert!(labelled.contains("Successfully set label"), "{labelled}");
    let node = lab.calicoctl(MASTER, &["get", "node", NODE2, "-o", "yaml"]);
    let address_line = node
        .lines()
        .find(|l| l.trim_start().starts_with("ipv4Address:"))
        .unwrap_or_else(|| panic!("no ipv4Address in\n{node}"));
    let indent = &address_line[..address_line.len() - address_line.trim_start().len()];
    let edited = node.replace(
        address_line,
        &format!("{address_line}\n{indent}routeReflectorClusterID: 244.0.0.1"),
    );
    let node_file = TempFile::new(&lab, "rr-node.yaml", &edited);
    lab.calicoctl(MASTER, &["apply", "-f", node_file.path()]);
    let node = lab.calicoctl(MASTER, &["get", "node", NODE2, "-o", "yaml"]);
    assert!(
        has_cluster_id(&node) && node.contains("route-reflector: \"true\""),
        "{node}"
    );
    // A cluster ID alone peers with nobody yet.
    assert!(
        lab.node_status(NODE2).is_none(),
        "no peers before the BGPPeer"
    );

    // The article's BGPPeer: every node peers with the reflectors.
    let peer = TempFile::new(
        &lab,
        "bgppeer.yaml",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: peer-with-route-reflectors\nspec:\n  nodeSelector: all()\n  peerSelector: route-reflector == 'true'\n",
    );
    lab.calicoctl(MASTER, &["apply", "-f", peer.path()]);
    let peers = lab.calicoctl(MASTER, &["get", "bgppeer"]);
    assert_eq!(
        table_rows(&peers),
        vec![vec!["peer-with-route-reflectors", "all()", "0"]],
        "{peers}"
    );

    // Clients have one `node specific` peer (the reflector), the reflector both clients.
    let reflector = lab.address(NODE2);
    let (a, b) = (lab.address(MASTER), lab.address(NODE1));
    for (host, want) in [
        (MASTER, vec![reflector.clone()]),
        (NODE1, vec![reflector.clone()]),
        (NODE2, vec![a.clone(), b.clone()]),
    ] {
        let mut last = None;
        let configured = wait_for(Duration::from_secs(5), || {
            let rows = lab.node_status(host).unwrap_or_default();
            let got: Vec<(String, String)> = rows
                .iter()
                .map(|r| (r.address.clone(), r.kind.clone()))
                .collect();
            last = Some(rows);
            got == want
                .iter()
                .map(|a| (a.clone(), "node specific".to_string()))
                .collect::<Vec<_>>()
        });
        assert!(
            configured,
            "{host}: node specific peers {want:?}; has {last:?}"
        );
    }
    // Both ends of a BGPPeer peering connect at once; the collision is settled on the first OPEN.
    let limit = RR_LIMIT;
    lab.wait_peers(MASTER, &[(&reflector, "node specific")], limit);
    lab.wait_peers(NODE1, &[(&reflector, "node specific")], limit);
    let converging = Instant::now();
    lab.wait_peers(
        NODE2,
        &[(&a, "node specific"), (&b, "node specific")],
        limit,
    );
    eprintln!(
        "[{}] reflector sessions up {:.1}s after k8s-master's",
        lab.name,
        converging.elapsed().as_secs_f64()
    );
    // Routes are back on every host, with the owners as next hops (reflected, not via k8s-node2).
    for host in hosts {
        let want = lab.expected_bird_routes(host);
        assert!(
            wait_for(Duration::from_secs(5), || lab.bird_routes(host) == want),
            "{host}: proto bird routes {:?}, want {want:?}",
            lab.bird_routes(host)
        );
    }
    assert!(
        lab.ping(MASTER, &target),
        "host to pod through the reflector's routes"
    );
    assert!(
        lab.ping("k8s-master-pod1", &lab.pod_ip("k8s-node1-pod1")),
        "client to client, routes reflected"
    );
    let ss = lab.exec_ok(MASTER, &["ss", "-antp"]);
    let sessions: Vec<&str> = ss
        .lines()
        .filter(|l| l.starts_with("ESTAB") && l.contains(":179 "))
        .collect();
    assert_eq!(sessions.len(), 1, "k8s-master: one BGP session\n{ss}");
    assert!(sessions[0].contains(&format!("{reflector}:")), "{ss}");
    eprintln!(
        "[{}] seed 002 walk done in {:.1}s",
        lab.name,
        started.elapsed().as_secs_f64()
    );
}

/// `up --route-reflectors 1` on 4 hosts: node1 reflects, the mesh is off, every host reaches every
/// pod, clients see one `node specific` peer and the reflector three.
#[test]
fn route_reflectors_flag_four_hosts() {
    let lab = Lab::up(
        "rrflag",
        &[
            "--nodes",
            "4",
            "--route-reflectors",
            "1",
            "--encap",
            "none",
            "--pods-per-node",
            "1",
            "--timeout",
            "30",
        ],
    );
    let hosts: Vec<String> = lab.hosts().into_iter().map(|(name, _)| name).collect();
    assert_eq!(hosts, ["node1", "node2", "node3", "node4"]);
    let bgpconfig = lab.calicoctl("node2", &["get", "bgpconfig"]);
    assert_eq!(
        table_rows(&bgpconfig)[0][2],
        "false",
        "mesh off: {bgpconfig}"
    );
    let peers = lab.calicoctl("node2", &["get", "bgppeer"]);
    assert_eq!(
        table_rows(&peers),
        vec![vec!["peer-with-route-reflectors", "all()", "0"]]
    );
    let node1 = lab.calicoctl("node2", &["get", "node", "node1", "-o", "yaml"]);
    assert!(
        has_cluster_id(&node1) && node1.contains("route-reflector: \"true\""),
        "{node1}"
    );

    let reflector = lab.address("node1");
    let limit = RR_FLAG_LIMIT;
    let converging = Instant::now();
    lab.wait_peers("node2", &[(&reflector, "node specific")], limit);
    let clients: Vec<String> = hosts[1..].iter().map(|h| lab.address(h)).collect();
    let want: Vec<(&str, &str)> = clients
        .iter()
        .map(|a| (a.as_str(), "node specific"))
        .collect();
    lab.wait_peers("node1", &want, limit);
    eprintln!(
        "[{}] reflector sessions up {:.1}s after up returned",
        lab.name,
        converging.elapsed().as_secs_f64()
    );

    for host in &hosts {
        assert_eq!(
            lab.bird_routes(host),
            lab.expected_bird_routes(host),
            "{host}"
        );
        for (pod, _, ip) in lab.pods() {
            assert!(lab.ping(host, &ip), "{host} reaches {pod} ({ip})");
        }
    }
}

/// Options that cannot make a lab are refused before anything is built.
#[test]
fn up_refuses_inconsistent_options() {
    preconditions();
    let name = format!("badopts_{}", std::process::id());
    for (args, message) in [
        (
            vec!["--nodes", "2", "--node-names", "a,b,c"],
            "does not match",
        ),
        (vec!["--node-names", "a,a"], "given twice"),
        (vec!["--node-names", "a-pod1"], "pods' names"),
        (
            vec!["--route-reflectors", "1", "--encap", "vxlan"],
            "--backend bird",
        ),
        (
            vec!["--nodes", "2", "--route-reflectors", "3", "--encap", "none"],
            "exceeds",
        ),
        (vec!["--subnets", "0"], "--subnets must be between"),
        (
            vec!["--nodes", "4", "--subnets", "2", "--encap", "none"],
            "add --tor bird|frr",
        ),
        (
            vec!["--tor", "bird", "--encap", "vxlan"],
            "--tor peers over BGP",
        ),
    ] {
        let mut command = Command::new(lab_binary());
        command.args(["up", "--name", &name]).args(&args);
        let output = run(&mut command, COMMAND_LIMIT);
        if output.status.success() {
            // Built after all: remove it before failing, so nothing is left on the machine.
            let _ = run(
                Command::new(lab_binary()).args(["down", "--name", &name]),
                COMMAND_LIMIT,
            );
        }
        assert!(!output.status.success(), "{args:?} accepted");
        assert!(
            text(&output.stderr).contains(message),
            "{args:?}: {}",
            describe(&output)
        );
    }
    let netns = std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok()).any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("clab-{name}-"))
            })
        })
        .unwrap_or(false);
    assert!(!netns, "nothing built for refused options");
}
