//! Hundreds of plugin invocations at once, as a node under a burst of pod creations sees them: every ADD
//! succeeds with its own address (no address handed out twice, on one host or across hosts sharing a
//! datastore), addresses come from blocks affine to the host that asked, and the DELs that follow leave
//! no link, route, endpoint, allocation or handle behind.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use calico_api::Spec;
use calico_netlink::Netns;
use calico_testutil::EtcdServer;
use common::state::{StoreState, assert_ipam_check_problems};
use common::{Call, Datastore, Host, Pod, create_pool};
use ipnet::IpNet;
use serde_json::{Value, json};

/// This file's pool (no other test file uses it); /26 blocks, so 256 blocks: no host runs out.
const POOL: &str = "198.18.64.0/18";
const POOL_PREFIX: &str = "198.18.";
const NETWORK: &str = "concnet";
/// Upper bound for one phase (all ADDs or all DELs) of a scenario.
const PHASE_LIMIT: Duration = Duration::from_secs(240);

/// The scenarios of this file take turns: each alone already puts hundreds of processes on the machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn two_hundred_concurrent_adds_on_one_host_embedded() {
    let store_dir = tempfile::tempdir().expect("temp dir");
    let ds = Datastore::created_embedded(store_dir.path().join("calico.db"));
    run_scenario("one host, embedded", &ds, None, &["conc-solo"], 200);
}

#[test]
fn three_hosts_times_one_hundred_concurrent_adds_etcd() {
    let etcd = EtcdServer::start();
    let ds = Datastore::Etcd(etcd.endpoint());
    run_scenario(
        "three hosts, etcd",
        &ds,
        Some(&etcd),
        &["conc-e-a", "conc-e-b", "conc-e-c"],
        100,
    );
}

#[test]
fn three_hosts_times_one_hundred_concurrent_adds_embedded() {
    // One file shared by the three hosts, as if they were processes on one machine.
    let store_dir = tempfile::tempdir().expect("temp dir");
    let ds = Datastore::created_embedded(store_dir.path().join("calico.db"));
    run_scenario(
        "three hosts, embedded",
        &ds,
        None,
        &["conc-m-a", "conc-m-b", "conc-m-c"],
        100,
    );
}

/// `pods_per_host` concurrent ADDs on every host at once, checks, then as many concurrent DELs, checks.
fn run_scenario(
    title: &str,
    ds: &Datastore,
    etcd: Option<&EtcdServer>,
    nodes: &[&str],
    pods_per_host: usize,
) {
    let hosts: Vec<Host> = nodes.iter().map(|n| Host::new("cni-conc-h", n)).collect();
    let _relays: Vec<LoopbackRelay> = match ds {
        Datastore::Etcd(url) => hosts.iter().map(|h| LoopbackRelay::new(h, url)).collect(),
        Datastore::Embedded(_) => Vec::new(),
    };
    create_pool(ds, "conc", POOL, 26);
    let confs: Vec<Value> = hosts
        .iter()
        .map(|h| h.conf("1.0.0", NETWORK, ds, json!({})))
        .collect();
    // Namespaces first: creating them is not what this test measures.
    let pods: Vec<Vec<Pod>> = hosts
        .iter()
        .map(|_| make_pods("cni-conc-p", pods_per_host))
        .collect();
    let container_id = |h: usize, p: usize| format!("c{h}x{p}");
    let total = hosts.len() * pods_per_host;
    // (host, pod) with hosts interleaved, so every host has invocations in flight from the start.
    let launch_order: Vec<(usize, usize)> = (0..pods_per_host)
        .flat_map(|p| (0..hosts.len()).map(move |h| (h, p)))
        .collect();

    let turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());

    // ADD: every invocation started before any is waited for, hosts interleaved so all run together.
    let started = Instant::now();
    let mut flight = Flight::new();
    for &(h, p) in &launch_order {
        let call = Call::new("ADD", &container_id(h, p), Some(pods[h][p].path()));
        flight.launch(&hosts[h], h, &call, &confs[h]);
    }
    let launched = started.elapsed();
    let adds = flight.wait_all(PHASE_LIMIT);
    let add_time = started.elapsed();
    println!(
        "[{title}] {total} concurrent ADDs: all started after {launched:?}, all finished after {add_time:?}"
    );
    assert_all_succeeded("ADD", &adds, &hosts, etcd);

    // Every result names one address; no address twice, on any host.
    let mut result_ip: BTreeMap<String, IpAddr> = BTreeMap::new();
    let mut owner_of: BTreeMap<IpAddr, String> = BTreeMap::new();
    for done in &adds {
        let result: Value = serde_json::from_str(&done.stdout).unwrap_or_else(|e| {
            panic!("ADD {} printed no JSON ({e}): {}", done.label, done.stdout)
        });
        let ips = result["ips"].as_array().expect("ips in the result");
        assert_eq!(ips.len(), 1, "one address per pod: {result}");
        let ip = ips[0]["address"]
            .as_str()
            .and_then(|a| a.parse::<IpNet>().ok())
            .unwrap_or_else(|| panic!("bad address in {result}"))
            .addr();
        if let Some(other) = owner_of.insert(ip, done.label.clone()) {
            panic!("{ip} was handed to both {other} and {}", done.label);
        }
        result_ip.insert(done.label.clone(), ip);
    }
    assert_eq!(result_ip.len(), total);

    // What the pods really have on eth0.
    for (h, host_pods) in pods.iter().enumerate() {
        let on_eth0 = pod_addresses(host_pods);
        for (p, addr) in on_eth0.iter().enumerate() {
            let id = container_id(h, p);
            let addr = addr
                .as_deref()
                .unwrap_or_else(|| panic!("pod of {id} has no IPv4 address on eth0"));
            assert_eq!(
                addr.parse::<IpAddr>().ok(),
                Some(result_ip[&id]),
                "pod of {id}: eth0 has {addr}, the ADD result said {}",
                result_ip[&id]
            );
        }
    }

    // The endpoints agree with the results, and name no address twice either.
    let state = StoreState::read(ds);
    assert_eq!(state.weps.len(), total, "one endpoint per pod");
    let mut wep_owner: BTreeMap<IpAddr, String> = BTreeMap::new();
    for wep in &state.weps {
        let Spec::WorkloadEndpoint(spec) = &wep.spec else {
            panic!("not an endpoint: {}", wep.name());
        };
        let id = spec
            .container_id
            .clone()
            .expect("containerID on the endpoint");
        let ips: Vec<IpAddr> = spec
            .ip_networks
            .iter()
            .map(|n| n.parse::<IpNet>().expect("ipNetworks entry").addr())
            .collect();
        assert_eq!(ips, vec![result_ip[&id]], "endpoint of {id}");
        if let Some(other) = wep_owner.insert(ips[0], id.clone()) {
            panic!("endpoints of {other} and {id} both claim {}", ips[0]);
        }
    }

    // Each host's pods got addresses from blocks affine to that host: with 256 blocks in the pool no
    // host reaches a block limit, so nothing needs to be borrowed.
    let mut borrowed = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        for p in 0..pods_per_host {
            let id = container_id(h, p);
            let ip = result_ip[&id];
            let block = state
                .block_of(ip)
                .unwrap_or_else(|| panic!("{ip} of {id} is in no block"));
            if block.host() != Some(host.node.as_str()) {
                borrowed.push(format!(
                    "{id} on {} got {ip} from {} (affine to {:?})",
                    host.node,
                    block.cidr,
                    block.host()
                ));
            }
        }
    }
    assert!(
        borrowed.is_empty(),
        "{} addresses were borrowed although no host hit a block limit:\n{}",
        borrowed.len(),
        borrowed.join("\n")
    );
    let blocks_used: BTreeSet<IpNet> = result_ip
        .values()
        .filter_map(|ip| state.block_of(*ip).map(|b| b.cidr))
        .collect();
    println!(
        "[{title}] {total} addresses from {} blocks",
        blocks_used.len()
    );
    assert_eq!(state.problems, 0, "IPAM check after ADD: {}", state.summary);

    // Each host routes its own pods (and only those) to their cali interfaces.
    for (h, host) in hosts.iter().enumerate() {
        let routes = host.routes();
        let pool_routes = routes
            .lines()
            .filter(|l| l.starts_with(POOL_PREFIX))
            .count();
        assert_eq!(
            pool_routes, pods_per_host,
            "routes on {}:\n{routes}",
            host.node
        );
        for p in 0..pods_per_host {
            let ip = result_ip[&container_id(h, p)].to_string();
            assert!(
                routes
                    .lines()
                    .any(|l| l.starts_with(&format!("{ip} dev cali"))),
                "no route to {ip} on {}",
                host.node
            );
        }
    }

    // DEL, all at once as well.
    let started = Instant::now();
    let mut flight = Flight::new();
    for &(h, p) in &launch_order {
        let call = Call::new("DEL", &container_id(h, p), Some(pods[h][p].path()));
        flight.launch(&hosts[h], h, &call, &confs[h]);
    }
    let dels = flight.wait_all(PHASE_LIMIT);
    println!(
        "[{title}] {total} concurrent DELs finished after {:?}",
        started.elapsed()
    );
    assert_all_succeeded("DEL", &dels, &hosts, etcd);
    drop(turn);

    for host in &hosts {
        assert_eq!(
            host.links(),
            vec!["lo".to_string()],
            "links on {}",
            host.node
        );
        let routes = host.routes();
        assert!(
            !routes.contains(POOL_PREFIX),
            "pool routes left on {}:\n{routes}",
            host.node
        );
    }
    StoreState::read(ds).assert_nothing_allocated();
    assert_ipam_check_problems(ds, 0);
}

/// `count` empty pod namespaces, created by a few threads at once.
fn make_pods(prefix: &str, count: usize) -> Vec<Pod> {
    const WORKERS: usize = 4;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                s.spawn(move || {
                    (w..count)
                        .step_by(WORKERS)
                        .map(|i| (i, Pod::new(prefix)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Pod)> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("namespace worker"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, pod)| pod).collect()
    })
}

/// Each pod's IPv4 address on eth0, read by a few threads at once.
fn pod_addresses(pods: &[Pod]) -> Vec<Option<String>> {
    let chunk = pods.len().div_ceil(4).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = pods
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(Pod::ipv4).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("address reader"))
            .collect()
    })
}

/// Plugin processes started together; any still running when this is dropped are killed and reaped.
struct Flight {
    dir: tempfile::TempDir,
    runs: Vec<Run>,
}

struct Run {
    label: String,
    host: usize,
    child: Child,
    status: Option<ExitStatus>,
}

/// One invocation's outcome.
struct Finished {
    /// The container ID.
    label: String,
    host: usize,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Flight {
    fn new() -> Flight {
        Flight {
            dir: tempfile::tempdir().expect("temp dir"),
            runs: Vec::new(),
        }
    }

    /// Start the plugin for `call` on `host` (index `host_index`), as `Host::invoke` does, without
    /// waiting. Output goes to files, so no pipe can fill up while nobody reads it.
    fn launch(&mut self, host: &Host, host_index: usize, call: &Call, conf: &Value) {
        let n = self.runs.len();
        let stdout = File::create(self.dir.path().join(format!("{n}.out"))).expect("stdout file");
        let stderr = File::create(self.dir.path().join(format!("{n}.err"))).expect("stderr file");
        let mut cmd = host.command(call);
        cmd.stdout(stdout).stderr(stderr);
        let child = cmd.spawn().expect("start plugin");
        self.runs.push(Run {
            label: call.container_id.clone(),
            host: host_index,
            child,
            status: None,
        });
        // The config is far smaller than a pipe buffer: this write never waits for the plugin.
        let run = self.runs.last_mut().expect("just pushed");
        let mut stdin = run.child.stdin.take().expect("stdin");
        stdin
            .write_all(conf.to_string().as_bytes())
            .expect("write config");
    }

    /// Wait for every process, at most `limit` in all (then fail; the drop kills the rest).
    fn wait_all(&mut self, limit: Duration) -> Vec<Finished> {
        let deadline = Instant::now() + limit;
        loop {
            let mut running = 0;
            for run in self.runs.iter_mut().filter(|r| r.status.is_none()) {
                match run.child.try_wait().expect("wait for plugin") {
                    Some(status) => run.status = Some(status),
                    None => running += 1,
                }
            }
            if running == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{running} of {} plugin processes still running after {limit:?}",
                self.runs.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.runs
            .iter()
            .enumerate()
            .map(|(n, run)| Finished {
                label: run.label.clone(),
                host: run.host,
                status: run.status.expect("exited"),
                stdout: std::fs::read_to_string(self.dir.path().join(format!("{n}.out")))
                    .unwrap_or_default(),
                stderr: std::fs::read_to_string(self.dir.path().join(format!("{n}.err")))
                    .unwrap_or_default(),
            })
            .collect()
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        for run in self.runs.iter_mut().filter(|r| r.status.is_none()) {
            // An error means it already exited; wait() reaps it either way.
            let _ = run.child.kill();
            let _ = run.child.wait();
        }
    }
}

/// Every invocation exited 0; otherwise show the failures and what the plugins logged as wrong.
fn assert_all_succeeded(verb: &str, runs: &[Finished], hosts: &[Host], etcd: Option<&EtcdServer>) {
    let failed: Vec<&Finished> = runs.iter().filter(|r| !r.status.success()).collect();
    if failed.is_empty() {
        return;
    }
    let mut msg = format!("{} of {} {verb}s failed:\n", failed.len(), runs.len());
    for f in failed.iter().take(10) {
        msg.push_str(&format!(
            "  {} on {} ({}): stdout={} stderr={}\n",
            f.label,
            hosts[f.host].node,
            f.status,
            f.stdout.trim(),
            f.stderr.trim()
        ));
    }
    for host in hosts {
        let log = std::fs::read_to_string(host.log_file()).unwrap_or_default();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
            .collect();
        msg.push_str(&format!(
            "warnings and errors logged on {} (last 20 of {}):\n{}\n",
            host.node,
            bad.len(),
            bad[bad.len().saturating_sub(20)..].join("\n")
        ));
    }
    if let Some(etcd) = etcd {
        // Slow disk or starved CPU shows here ("took too long", "request timed out").
        msg.push_str(&format!("etcd log tail:\n{}\n", etcd.log_tail()));
    }
    panic!("{msg}");
}

/// The test's etcd listens on the root namespace's loopback, which a plugin running in a host namespace
/// cannot reach. This relay listens on `127.0.0.1:<etcd port>` inside the host namespace (the socket is
/// made there) and copies each connection to the real etcd from the root namespace, so the same endpoint
/// URL works for the plugin, calicoctl and the test. No link or address is added anywhere.
struct LoopbackRelay {
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl LoopbackRelay {
    fn new(host: &Host, etcd_url: &str) -> LoopbackRelay {
        let port: u16 = etcd_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no port in {etcd_url}"));
        let netns = Netns::open(&host.netns.path()).expect("open the host namespace");
        let listener = netns
            .run(|| TcpListener::bind(("127.0.0.1", port)))
            .expect("enter the host namespace")
            .expect("listen on the host namespace's loopback");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        // This thread (and the ones it starts) stay in the root namespace: they reach the real etcd.
        let acceptor = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inside, _)) => {
                        if let Err(e) = relay_connection(inside, port) {
                            eprintln!("etcd relay: {e}");
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        LoopbackRelay {
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for LoopbackRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Connection threads end when either side closes (the plugins have exited, etcd stops).
    }
}

fn relay_connection(inside: TcpStream, port: u16) -> std::io::Result<()> {
    inside.set_nonblocking(false)?;
    let outside = TcpStream::connect(("127.0.0.1", port))?;
    inside.set_nodelay(true)?;
    outside.set_nodelay(true)?;
    let (inside_read, outside_read) = (inside.try_clone()?, outside.try_clone()?);
    std::thread::spawn(move || pump(inside_read, outside));
    std::thread::spawn(move || pump(outside_read, inside));
    Ok(())
}

/// Copy until `from` closes, then pass the close on.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
