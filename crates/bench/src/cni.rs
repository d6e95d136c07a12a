//! The `cni` section: how fast the `calico` CNI plugin wires and unwires pods, and how fast Calico IPAM
//! hands out addresses, beside Debian's reference plugins (`ptp` delegating to `host-local`) in the same run.
//!
//! What is measured (release build of `calico`, as root):
//! 1. Sequential latency: the wall time of each plugin process as a runtime sees it (fork, exec, run, exit),
//!    for ADD and DEL of `--pods` pods, one empty pod netns each. Variants: ours on the embedded store, ours
//!    on a real etcd, and the reference `ptp` + `host-local`. Every plugin runs inside a "host" netns the
//!    bench creates (entered with setns on a dedicated thread, so no `ip netns exec` is timed). The variants
//!    take turns in rounds of `--round` pods (ADD all, then DEL all), in an order rotated each round, so
//!    machine noise hits all of them alike; two warm-up pods per variant are not counted. Peak RSS of one
//!    ADD process comes from GNU time.
//! 2. Burst: `--burst` ADDs started at the same instant on one host (a barrier releases one thread per pod),
//!    then the same number of DELs: time until the last one finished, and p50/p99 of each process.
//! 3. IPAM in-process through `calico_ipam::Ipam` (no plugin processes), on etcd and embedded: allocations
//!    per second for one host allocating sequentially and for three hosts at once (own `Ipam` and store
//!    connection each); and datastore operations per allocation once the host owns a block with room:
//!    store revisions (one per write transaction), plus reads counted by a `Store` adapter.
//!
//! Everything lives in namespaces, temp dirs and processes this section creates and removes (drop guards,
//! also on error; Ctrl-C/SIGTERM stop the run at the next pod and clean up). Addresses: 198.18.192.0/18 only.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use async_trait::async_trait;
use calico_api::Resource;
use calico_datastore::client::Client;
use calico_datastore::embedded::EmbeddedStore;
use calico_datastore::etcd::{EtcdConfig, EtcdStore};
use calico_datastore::{KeyValue, ListResult, Revision, Store, StoreError, WatchStream, WriteOp};
use calico_ipam::{AssignRequest, Ipam};
use calico_testutil::EtcdServer;
use calico_testutil::netns::{TestNetns, require_root};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::measure::percentile;
use crate::report::{Goal, Table, mib_from_kib, ratio, thousands};

/// Where Debian's containernetworking-plugins are installed.
const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";
/// GNU time, for the peak RSS of one plugin process.
const GNU_TIME: &str = "/usr/bin/time";
/// Our plugin's pool (in its own datastores; each variant has its own host netns).
const CALICO_POOL: &str = "198.18.192.0/19";
/// The IPAM section's pool (again in its own datastores): room for every block its hosts claim.
const IPAM_POOL: &str = "198.18.192.0/18";
/// host-local's range for the reference plugin.
const REFERENCE_SUBNET: &str = "198.18.240.0/22";
const MTU: u32 = 1450;
const NODE: &str = "bench-node";
/// A plugin process that takes longer than this is killed and the run fails.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Pods per variant run before the measured rounds (page cache, first block claim).
const WARM_UP_PODS: usize = 2;
/// Pause after deleting pod namespaces, for the kernel's asynchronous teardown.
const SETTLE: Duration = Duration::from_millis(1000);
/// VERSION runs per executable for the process start floor.
const FLOOR_RUNS: usize = 50;
/// Reads and writes timed for the datastore primitives table.
const PRIMITIVE_OPS: usize = 100;
/// Hosts allocating at once in the IPAM section.
const IPAM_HOSTS: usize = 3;
/// Allocations measured inside an already claimed /26 (which has 63 free addresses after the warm-up).
const IN_BLOCK_ALLOCATIONS: usize = 60;
/// Blocks one host may own in the IPAM section (2,000 addresses need 32 /26 blocks; the default cap is 20).
const IPAM_MAX_BLOCKS_PER_HOST: u32 = 64;

const ADD_RATIO_GOAL: f64 = 1.0;
const BURST_GOAL_SECONDS: f64 = 2.0;
const WRITES_PER_ALLOCATION_GOAL: f64 = 1.0;

/// Set by Ctrl-C / SIGTERM: loops stop at the next step and the drop guards clean up.
static CANCELLED: AtomicBool = AtomicBool::new(false);

fn check_cancelled() -> Result<()> {
    if CANCELLED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sizes of the `cni` section.
#[derive(clap::Args, Clone, Debug)]
pub struct CniArgs {
    /// Sequential pods per variant for ADD/DEL latency.
    #[arg(long, default_value_t = 200)]
    pub pods: usize,
    /// Pods per variant per round; variants take turns round by round.
    #[arg(long, default_value_t = 50)]
    pub round: usize,
    /// Concurrent ADDs (then DELs) in the burst.
    #[arg(long, default_value_t = 100)]
    pub burst: usize,
    /// Sequential in-process allocations by one host (the three-host case does half as many each).
    #[arg(long, default_value_t = 2000)]
    pub ipam_allocations: usize,
}

impl Default for CniArgs {
    fn default() -> Self {
        CniArgs {
            pods: 200,
            round: 50,
            burst: 100,
            ipam_allocations: 2000,
        }
    }
}

/// Runs the section; returns the rendered tables and notes, and the goals.
pub async fn run(args: &CniArgs) -> Result<(String, Vec<Goal>)> {
    let interrupt_watch = tokio::spawn(watch_for_interrupt());
    let outcome = run_sections(args).await;
    interrupt_watch.abort();
    match outcome {
        Err(e) if !CANCELLED.load(Ordering::Relaxed) => {
            // Other sections' figures and goals still get printed; this one says why it has none.
            let goal = Goal {
                name: "cni section".into(),
                met: None,
                informational: false,
                detail: one_line(&format!("{e:#}")),
            };
            Ok((
                format!("\n## CNI plugin and IPAM\n\nERROR: {e:#}\n"),
                vec![goal],
            ))
        }
        other => other,
    }
}

async fn watch_for_interrupt() {
    crate::interrupt::wait_for_interrupt().await;
    CANCELLED.store(true, Ordering::Relaxed);
    eprintln!("calico-bench cni: interrupted; removing namespaces, processes and temp files");
}

async fn run_sections(args: &CniArgs) -> Result<(String, Vec<Goal>)> {
    require_root().map_err(|e| anyhow!(e))?;
    let mut out = String::new();
    let mut goals = Vec::new();
    let fixtures = Fixtures::locate()?;
    let scratch = tempfile::Builder::new()
        .prefix("calico-bench-cni-")
        .tempdir()
        .context("creating a temporary directory")?;
    let embedded_path = scratch.path().join("calico.db");
    let embedded: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(&embedded_path)
            .with_context(|| format!("opening {}", embedded_path.display()))?,
    );
    create_pool(&embedded, "bench-cni", CALICO_POOL).await?;

    let scratch_path = scratch.path().to_path_buf();
    let plugin_args = args.clone();
    let plugin_part = tokio::task::spawn_blocking(move || {
        plugin_sections(&plugin_args, &fixtures, &scratch_path, &embedded_path)
    })
    .await
    .map_err(|e| anyhow!("plugin benchmark thread failed: {e}"))?;
    let (plugin_text, plugin_goals) = plugin_part?;
    out.push_str(&plugin_text);
    goals.extend(plugin_goals);

    check_cancelled()?;
    let (ipam_text, ipam_goals) = ipam_section(args, scratch.path()).await?;
    out.push_str(&ipam_text);
    goals.extend(ipam_goals);
    Ok((out, goals))
}

/// The executables: ours beside this binary, the reference in /usr/lib/cni.
#[derive(Clone)]
struct Fixtures {
    calico: PathBuf,
    ptp: PathBuf,
}

impl Fixtures {
    fn locate() -> Result<Fixtures> {
        let exe = std::env::current_exe().context("finding this binary's path")?;
        let dir = exe
            .parent()
            .context("this binary's path has no directory")?;
        let calico = dir.join("calico");
        if !calico.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p calico-cni` (scripts/bench.sh cni does)",
                calico.display()
            );
        }
        let reference_dir = Path::new(REFERENCE_PLUGIN_DIR);
        for name in ["ptp", "host-local"] {
            if !reference_dir.join(name).is_file() {
                bail!(
                    "{}/{name} not found: install containernetworking-plugins (scripts/setup.sh does)",
                    reference_dir.display()
                );
            }
        }
        Ok(Fixtures {
            calico,
            ptp: reference_dir.join("ptp"),
        })
    }
}

fn require_etcd() -> Result<()> {
    if calico_testutil::etcd_binary().is_none() {
        bail!("etcd not found: install etcd-server (scripts/bench.sh does)");
    }
    Ok(())
}

async fn start_etcd() -> Result<EtcdServer> {
    require_etcd()?;
    // EtcdServer::start panics (with etcd's log) if the server does not come up.
    tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .map_err(|e| anyhow!("starting etcd: {e}"))
}

/// etcd for the etcd variant, started inside that variant's host netns so the plugin reaches it on the
/// netns's loopback (as a node reaches its etcd over its own network); our pool is created from in there too.
fn start_etcd_in(host: &TestNetns) -> Result<EtcdServer> {
    require_etcd()?;
    in_netns(&host.path(), || {
        // EtcdServer::start panics (printing etcd's log) if the server does not come up.
        let server = std::panic::catch_unwind(EtcdServer::start)
            .map_err(|_| anyhow!("etcd did not start (see the message above)"))?;
        // A runtime on this thread, so every socket the client opens is opened inside the netns.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting an async runtime")?;
        runtime.block_on(async {
            let store = connect_etcd(&server.endpoint()).await?;
            create_pool(&store, "bench-cni", CALICO_POOL).await
        })?;
        Ok(server)
    })
}

async fn connect_etcd(endpoint: &str) -> Result<Arc<dyn Store>> {
    let config = EtcdConfig {
        endpoints: vec![endpoint.to_string()],
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect(&config)
        .await
        .with_context(|| format!("connecting to etcd at {endpoint}"))?;
    Ok(Arc::new(store))
}

async fn create_pool(store: &Arc<dyn Store>, name: &str, cidr: &str) -> Result<()> {
    let pool = Resource::from_value(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "blockSize": 26},
    }))
    .map_err(|e| anyhow!("building the IPPool: {e:?}"))?;
    Client::new(store.clone())
        .create(pool)
        .await
        .with_context(|| format!("creating IPPool {name} ({cidr})"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Running plugin processes.

/// Kills plugin processes that overrun [`PLUGIN_TIMEOUT`] (or all of them once the run is interrupted), so
/// no wait can hang the benchmark.
struct Watchdog {
    shared: Arc<WatchdogShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct WatchdogShared {
    running: Mutex<HashMap<u32, Instant>>,
    stop: AtomicBool,
}

impl Watchdog {
    fn start() -> Result<Watchdog> {
        let shared = Arc::new(WatchdogShared::default());
        let watched = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cni-watchdog".into())
            .spawn(move || {
                while !watched.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let cancelled = CANCELLED.load(Ordering::Relaxed);
                    let now = Instant::now();
                    let running = watched
                        .running
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    for (pid, deadline) in running.iter() {
                        if (cancelled || now > *deadline)
                            && let Ok(raw) = i32::try_from(*pid)
                        {
                            // It may have exited just now: then there is nothing to kill.
                            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                        }
                    }
                }
            })
            .context("starting the watchdog thread")?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    fn watch(&self, pid: u32) {
        self.lock().insert(pid, Instant::now() + PLUGIN_TIMEOUT);
    }

    fn release(&self, pid: u32) {
        self.lock().remove(&pid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Instant>> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Moves the calling thread into a network namespace. Only for threads this file spawns for the purpose
/// (they end afterwards); children forked by the thread start in that namespace, as under a runtime.
fn enter_netns(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {}", path.display()))
}

/// Runs `work` on a new thread inside the namespace at `path`.
fn in_netns<T: Send>(path: &Path, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cni-host".into())
            .spawn_scoped(scope, || {
                enter_netns(path)?;
                work()
            })
            .context("starting a thread")?
            .join()
            .map_err(|_| anyhow!("a benchmark thread panicked"))?
    })
}

/// One plugin configuration on one host netns.
struct Variant {
    plugin: &'static str,
    datastore: &'static str,
    program: PathBuf,
    cni_path: String,
    conf: Vec<u8>,
    host: TestNetns,
    /// Our plugin's log file (for failure messages).
    log_file: Option<PathBuf>,
    /// Distinguishes container IDs between variants.
    tag: &'static str,
    is_reference: bool,
}

impl Variant {
    fn label(&self) -> String {
        format!("{} / {}", self.plugin, self.datastore)
    }
}

/// What one plugin process took and said.
struct PluginRun {
    seconds: f64,
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    peak_rss_kib: Option<u64>,
}

/// Runs `command` (ADD/DEL) of `variant` for one container, from the calling thread (which must be in the
/// variant's host netns), optionally under GNU time writing the peak RSS to `rss_report`.
fn invoke(
    variant: &Variant,
    command: &str,
    container_id: &str,
    pod_netns: &Path,
    watchdog: &Watchdog,
    rss_report: Option<&Path>,
) -> Result<PluginRun> {
    let mut process = match rss_report {
        Some(report) => {
            let mut p = Command::new(GNU_TIME);
            p.arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(report)
                .arg(&variant.program);
            p
        }
        None => Command::new(&variant.program),
    };
    // A runtime passes the CNI variables and little else; nothing from this process's environment leaks in.
    process
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", pod_netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", "")
        .env("CNI_PATH", &variant.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = process
        .spawn()
        .with_context(|| format!("starting {}", variant.program.display()))?;
    let pid = child.id();
    watchdog.watch(pid);
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(&variant.conf))
        .transpose();
    let output = child.wait_with_output();
    let seconds = started.elapsed().as_secs_f64();
    watchdog.release(pid);
    let output = output.with_context(|| format!("waiting for {}", variant.program.display()))?;
    written.context("writing the network config to the plugin")?;
    let peak_rss_kib = rss_report.and_then(|report| {
        let text = std::fs::read_to_string(report).ok()?;
        let _ = std::fs::remove_file(report);
        text.lines().last()?.trim().parse().ok()
    });
    Ok(PluginRun {
        seconds,
        success: output.status.success(),
        status: output.status.to_string(),
        stdout: output.stdout,
        stderr: output.stderr,
        peak_rss_kib,
    })
}

/// Fails unless the run succeeded (and, for ADD, returned an address), with the plugin's output and log.
fn check_run(variant: &Variant, command: &str, container_id: &str, run: &PluginRun) -> Result<()> {
    check_cancelled()?;
    let mut problem = None;
    if !run.success {
        problem = Some(format!("exited with {}", run.status));
    } else if command == "ADD" {
        let address = serde_json::from_slice::<Value>(&run.stdout)
            .ok()
            .and_then(|v| v["ips"][0]["address"].as_str().map(str::to_string));
        if address.is_none() {
            problem = Some("returned no address".into());
        }
    }
    let Some(problem) = problem else {
        return Ok(());
    };
    let log_tail = variant
        .log_file
        .as_ref()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(10)..].join("\n")
        })
        .unwrap_or_default();
    bail!(
        "{} {command} {container_id} {problem}: stdout={} stderr={}\nlog:\n{log_tail}",
        variant.label(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    )
}

fn new_pods(count: usize) -> Result<Vec<TestNetns>> {
    (0..count)
        .map(|_| {
            check_cancelled()?;
            TestNetns::new("cnib-pod").map_err(|e| anyhow!(e))
        })
        .collect()
}

/// ADD then DEL of every pod, one after another, inside the variant's host netns. Returns the ADD and DEL
/// times in seconds.
fn add_then_del(
    variant: &Variant,
    pods: &[TestNetns],
    id_prefix: &str,
    watchdog: &Watchdog,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let host_path = variant.host.path();
    let (adds, dels) = in_netns(&host_path, || {
        let mut adds = Vec::with_capacity(pods.len());
        let mut dels = Vec::with_capacity(pods.len());
        let ids: Vec<String> = (0..pods.len())
            .map(|i| format!("{id_prefix}{}{i:04}", variant.tag))
            .collect();
        for (pod, id) in pods.iter().zip(&ids) {
            let run = invoke(variant, "ADD", id, &pod.path(), watchdog, None)?;
            check_run(variant, "ADD", id, &run)?;
            adds.push(run.seconds);
        }
        for (pod, id) in pods.iter().zip(&ids) {
            let run = invoke(variant, "DEL", id, &pod.path(), watchdog, None)?;
            check_run(variant, "DEL", id, &run)?;
            dels.push(run.seconds);
        }
        Ok((adds, dels))
    })?;
    ensure_host_clean(variant)?;
    Ok((adds, dels))
}

/// After every DEL, the host netns holds no pod interface any more.
fn ensure_host_clean(variant: &Variant) -> Result<()> {
    let links = variant.host.link_names().map_err(|e| anyhow!(e))?;
    if links.iter().any(|l| l != "lo") {
        bail!(
            "{}: interfaces left on the host after DEL: {links:?}",
            variant.label()
        );
    }
    Ok(())
}

/// The three variants, and the etcd server the etcd one uses.
fn make_variants(
    fixtures: &Fixtures,
    scratch: &Path,
    embedded_path: &Path,
) -> Result<(Vec<Variant>, EtcdServer)> {
    let ours = |datastore: &'static str,
                tag: &'static str,
                host: TestNetns,
                fields: Value|
     -> Result<Variant> {
        // Proxy ARP on the host end answers for 169.254.1.1 only if the host routes it elsewhere.
        host.ip(&["route", "add", "169.254.1.1/32", "dev", "lo"])
            .map_err(|e| anyhow!(e))?;
        let dir = scratch.join(format!("calico-{tag}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log_file = dir.join("cni.log");
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": "benchnet",
            "type": "calico",
            "nodename": NODE,
            "log_file_path": log_file,
            "log_level": "info",
            "ipam_lock_file": dir.join("ipam.lock"),
            "mtu": MTU,
            "ipam": {"type": "calico-ipam"},
        });
        if let (Some(base), Value::Object(extra)) = (conf.as_object_mut(), fields) {
            base.extend(extra);
        }
        let cni_path = fixtures
            .calico
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Ok(Variant {
            plugin: "calico",
            datastore,
            program: fixtures.calico.clone(),
            cni_path,
            conf: conf.to_string().into_bytes(),
            host,
            log_file: Some(log_file),
            tag,
            is_reference: false,
        })
    };
    let new_host = || TestNetns::new("cnib-host").map_err(|e| anyhow!(e));
    let embedded = ours(
        "embedded",
        "e",
        new_host()?,
        json!({"datastore_type": "embedded", "datastore_path": embedded_path}),
    )?;
    let etcd_host = new_host()?;
    let etcd_server = start_etcd_in(&etcd_host)?;
    let etcd = ours(
        "etcd",
        "k",
        etcd_host,
        json!({"datastore_type": "etcdv3", "etcd_endpoints": etcd_server.endpoint()}),
    )?;
    let reference_host = TestNetns::new("cnib-host").map_err(|e| anyhow!(e))?;
    let reference_conf = json!({
        "cniVersion": "1.0.0",
        "name": "refnet",
        "type": "ptp",
        "mtu": MTU,
        "ipam": {
            "type": "host-local",
            "subnet": REFERENCE_SUBNET,
            "dataDir": scratch.join("host-local"),
        },
    });
    let reference = Variant {
        plugin: "ptp + host-local",
        datastore: "files",
        program: fixtures.ptp.clone(),
        cni_path: REFERENCE_PLUGIN_DIR.to_string(),
        conf: reference_conf.to_string().into_bytes(),
        host: reference_host,
        log_file: None,
        tag: "r",
        is_reference: true,
    };
    Ok((vec![embedded, etcd, reference], etcd_server))
}

/// Per-variant results of the sequential and burst runs.
#[derive(Default)]
struct VariantResults {
    adds: Vec<f64>,
    dels: Vec<f64>,
    add_rss_kib: Option<u64>,
    burst: Option<Burst>,
    error: Option<String>,
}

struct Burst {
    add_wall: f64,
    adds: Vec<f64>,
    del_wall: f64,
    dels: Vec<f64>,
}

fn plugin_sections(
    args: &CniArgs,
    fixtures: &Fixtures,
    scratch: &Path,
    embedded_path: &Path,
) -> Result<(String, Vec<Goal>)> {
    let watchdog = Watchdog::start()?;
    let (variants, _etcd) = make_variants(fixtures, scratch, embedded_path)?;
    let mut results: Vec<VariantResults> = variants.iter().map(|_| Default::default()).collect();
    let round = args.round.max(1);
    let rounds = args.pods.div_ceil(round);
    let started = Instant::now();

    // Warm-up: binaries into the page cache, our first block claimed, etcd connections exercised.
    for (variant, result) in variants.iter().zip(results.iter_mut()) {
        let pods = new_pods(WARM_UP_PODS)?;
        if let Err(e) = add_then_del(variant, &pods, "warm", &watchdog) {
            check_cancelled()?;
            result.error = Some(format!("warm-up: {e:#}"));
        }
    }
    for r in 0..rounds {
        let count = round.min(args.pods - r * round);
        // Every variant's pods exist before the round and go after it, then the kernel gets time to tear
        // the namespaces down, so no variant's ADDs compete with another's namespace cleanup.
        let pods: Vec<Vec<TestNetns>> = variants
            .iter()
            .map(|_| new_pods(count))
            .collect::<Result<_>>()?;
        for k in 0..variants.len() {
            let index = (r + k) % variants.len();
            if results[index].error.is_some() {
                continue;
            }
            match add_then_del(&variants[index], &pods[index], &format!("r{r}"), &watchdog) {
                Ok((adds, dels)) => {
                    results[index].adds.extend(adds);
                    results[index].dels.extend(dels);
                }
                Err(e) => {
                    check_cancelled()?;
                    results[index].error = Some(format!("{e:#}"));
                }
            }
        }
        drop(pods);
        settle()?;
    }
    let sequential_seconds = started.elapsed().as_secs_f64();

    // One more pod each under GNU time, for the peak RSS of an ADD.
    if Path::new(GNU_TIME).is_file() {
        for (variant, result) in variants.iter().zip(results.iter_mut()) {
            if result.error.is_some() {
                continue;
            }
            let pods = new_pods(1)?;
            let report = scratch.join(format!("rss-{}.txt", variant.tag));
            let id = format!("rss{}", variant.tag);
            let pod_path = pods[0].path();
            let measured = in_netns(&variant.host.path(), || {
                let add = invoke(variant, "ADD", &id, &pod_path, &watchdog, Some(&report))?;
                check_run(variant, "ADD", &id, &add)?;
                let del = invoke(variant, "DEL", &id, &pod_path, &watchdog, None)?;
                check_run(variant, "DEL", &id, &del)?;
                Ok(add.peak_rss_kib)
            });
            match measured {
                Ok(kib) => result.add_rss_kib = kib,
                Err(e) => {
                    check_cancelled()?;
                    result.error = Some(format!("{e:#}"));
                }
            }
        }
    }

    // Bursts, one variant after another.
    for (variant, result) in variants.iter().zip(results.iter_mut()) {
        if result.error.is_some() || args.burst == 0 {
            continue;
        }
        settle()?;
        match burst(variant, args.burst, &watchdog) {
            Ok(b) => result.burst = Some(b),
            Err(e) => {
                check_cancelled()?;
                result.error = Some(format!("burst: {e:#}"));
            }
        }
    }
    let floor = process_start_floor(fixtures, &watchdog);
    drop(watchdog);
    let (mut text, goals) =
        render_plugin_results(args, &variants, &results, rounds, sequential_seconds);
    text.push_str(&floor);
    Ok((text, goals))
}

/// Lets the kernel finish tearing down deleted namespaces (it does so asynchronously, under locks that
/// netlink requests also need) before the next measurement.
fn settle() -> Result<()> {
    check_cancelled()?;
    std::thread::sleep(SETTLE);
    check_cancelled()
}

/// The cost of starting and ending each executable at all: `CNI_COMMAND=VERSION`, which does no work.
fn process_start_floor(fixtures: &Fixtures, watchdog: &Watchdog) -> String {
    let reference_dir = Path::new(REFERENCE_PLUGIN_DIR);
    let programs = [
        ("calico", fixtures.calico.clone()),
        ("ptp", reference_dir.join("ptp")),
        ("host-local", reference_dir.join("host-local")),
    ];
    let mut table = Table::new(
        &format!("Process start floor: CNI_COMMAND=VERSION, {FLOOR_RUNS} runs each"),
        &["executable", "size MiB", "p50 ms", "p99 ms"],
    );
    for (name, program) in programs {
        let mut times = Vec::with_capacity(FLOOR_RUNS);
        for _ in 0..FLOOR_RUNS {
            if CANCELLED.load(Ordering::Relaxed) {
                break;
            }
            let started = Instant::now();
            let Ok(mut child) = Command::new(&program)
                .env_clear()
                .env("CNI_COMMAND", "VERSION")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                break;
            };
            watchdog.watch(child.id());
            let waited = child.wait();
            watchdog.release(child.id());
            if waited.is_ok() {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        let times = sorted(&times);
        let size = std::fs::metadata(&program)
            .map(|m| format!("{:.1}", m.len() as f64 / 1_048_576.0))
            .unwrap_or_else(|_| "n/a".into());
        table.push(vec![name.into(), size, ms(&times, 50.0), ms(&times, 99.0)]);
    }
    table.render()
}

/// `count` ADDs released at once by a barrier (one thread per pod, each already in the host netns), then
/// `count` DELs the same way.
fn burst(variant: &Variant, count: usize, watchdog: &Watchdog) -> Result<Burst> {
    let pods = new_pods(count)?;
    let ids: Vec<String> = (0..count)
        .map(|i| format!("burst{}{i:04}", variant.tag))
        .collect();
    let (add_wall, adds) = concurrent(variant, "ADD", &pods, &ids, watchdog)?;
    let (del_wall, dels) = concurrent(variant, "DEL", &pods, &ids, watchdog)?;
    ensure_host_clean(variant)?;
    Ok(Burst {
        add_wall,
        adds,
        del_wall,
        dels,
    })
}

fn concurrent(
    variant: &Variant,
    command: &str,
    pods: &[TestNetns],
    ids: &[String],
    watchdog: &Watchdog,
) -> Result<(f64, Vec<f64>)> {
    let barrier = Barrier::new(pods.len());
    let host_path = variant.host.path();
    let outcomes: Vec<Result<(Instant, Instant, PluginRun)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .zip(ids)
            .map(|(pod, id)| {
                let barrier = &barrier;
                let host_path = &host_path;
                scope.spawn(move || {
                    // Every thread reaches the barrier, even one that failed, so none waits forever.
                    let entered = enter_netns(host_path);
                    barrier.wait();
                    entered?;
                    let started = Instant::now();
                    let run = invoke(variant, command, id, &pod.path(), watchdog, None)?;
                    let finished = Instant::now();
                    Ok((started, finished, run))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("a burst thread panicked"))
                    .and_then(|r| r)
            })
            .collect()
    });
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    let mut times = Vec::with_capacity(pods.len());
    for (outcome, id) in outcomes.into_iter().zip(ids) {
        let (started, finished, run) = outcome?;
        check_run(variant, command, id, &run)?;
        first_start = Some(first_start.map_or(started, |s| s.min(started)));
        last_end = Some(last_end.map_or(finished, |e| e.max(finished)));
        times.push(run.seconds);
    }
    let wall = match (first_start, last_end) {
        (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
        _ => 0.0,
    };
    Ok((wall, times))
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn ms(sorted_values: &[f64], p: f64) -> String {
    percentile(sorted_values, p).map_or_else(|| "n/a".into(), |s| format!("{:.1}", s * 1000.0))
}

fn render_plugin_results(
    args: &CniArgs,
    variants: &[Variant],
    results: &[VariantResults],
    rounds: usize,
    sequential_seconds: f64,
) -> (String, Vec<Goal>) {
    let mut out = String::new();
    let mut goals = Vec::new();
    let reference_p50 = variants
        .iter()
        .zip(results)
        .find(|(v, _)| v.is_reference)
        .and_then(|(_, r)| percentile(&sorted(&r.adds), 50.0));

    let mut latency = Table::new(
        &format!(
            "CNI ADD/DEL latency: {} sequential pods per variant (wall time of each plugin process)",
            args.pods
        ),
        &[
            "plugin",
            "datastore",
            "ADD p50 ms",
            "ADD p99 ms",
            "DEL p50 ms",
            "DEL p99 ms",
            "ADD p50 vs reference",
            "ADD peak RSS MiB",
            "note",
        ],
    );
    for (variant, result) in variants.iter().zip(results) {
        let adds = sorted(&result.adds);
        let dels = sorted(&result.dels);
        let add_p50 = percentile(&adds, 50.0);
        let vs_reference = match (add_p50, reference_p50) {
            (Some(ours), Some(reference)) if reference > 0.0 => ours / reference,
            _ => f64::NAN,
        };
        latency.push(vec![
            variant.plugin.into(),
            variant.datastore.into(),
            ms(&adds, 50.0),
            ms(&adds, 99.0),
            ms(&dels, 50.0),
            ms(&dels, 99.0),
            ratio(vs_reference),
            mib_from_kib(result.add_rss_kib),
            result
                .error
                .as_deref()
                .map(|e| format!("ERROR: {}", one_line(e)))
                .unwrap_or_default(),
        ]);
        if !variant.is_reference {
            goals.push(Goal {
                name: format!(
                    "{}: ADD p50 <= {ADD_RATIO_GOAL:.1} x reference (ptp + host-local)",
                    variant.label()
                ),
                met: vs_reference
                    .is_finite()
                    .then_some(vs_reference <= ADD_RATIO_GOAL),
                informational: false,
                detail: ratio(vs_reference),
            });
        }
    }
    out.push_str(&latency.render());
    let _ = writeln!(
        out,
        "\nHow: {} pods per variant in {rounds} rounds of up to {}; each round runs the {} variants one after another \
         (order rotated each round), each doing ADD for all its pods then DEL for all, one pod netns per pod \
         created before the round and deleted after it (then a {:.1} s pause for the kernel's netns teardown), \
         {WARM_UP_PODS} warm-up pods per variant not counted. Each plugin is forked by a thread that has \
         entered the variant's host netns (no `ip netns exec` in the timing). Ratio goal: ours ADD p50 <= \
         {ADD_RATIO_GOAL:.1} x reference. Sequential part took {sequential_seconds:.1} s.",
        args.pods,
        args.round.max(1),
        variants.len(),
        SETTLE.as_secs_f64()
    );

    if args.burst > 0 {
        let mut table = Table::new(
            &format!(
                "CNI burst: {} ADDs at once on one host, then {} DELs at once",
                args.burst, args.burst
            ),
            &[
                "plugin",
                "datastore",
                "ADD all done s",
                "ADD p50 ms",
                "ADD p99 ms",
                "DEL all done s",
                "DEL p50 ms",
                "DEL p99 ms",
            ],
        );
        for (variant, result) in variants.iter().zip(results) {
            let Some(b) = &result.burst else {
                table.push(vec![
                    variant.plugin.into(),
                    variant.datastore.into(),
                    "n/a".into(),
                ]);
                if !variant.is_reference {
                    goals.push(Goal {
                        name: format!(
                            "{}: burst of {} ADDs done <= {BURST_GOAL_SECONDS:.0} s",
                            variant.label(),
                            args.burst
                        ),
                        met: None,
                        informational: false,
                        detail: one_line(result.error.as_deref().unwrap_or_default()),
                    });
                }
                continue;
            };
            let adds = sorted(&b.adds);
            let dels = sorted(&b.dels);
            table.push(vec![
                variant.plugin.into(),
                variant.datastore.into(),
                format!("{:.2}", b.add_wall),
                ms(&adds, 50.0),
                ms(&adds, 99.0),
                format!("{:.2}", b.del_wall),
                ms(&dels, 50.0),
                ms(&dels, 99.0),
            ]);
            if !variant.is_reference {
                goals.push(Goal {
                    name: format!(
                        "{}: burst of {} ADDs done <= {BURST_GOAL_SECONDS:.0} s",
                        variant.label(),
                        args.burst
                    ),
                    met: Some(b.add_wall <= BURST_GOAL_SECONDS),
                    informational: false,
                    detail: format!("{:.2} s", b.add_wall),
                });
            }
        }
        out.push_str(&table.render());
        let _ = writeln!(
            out,
            "\nHow: one thread per pod enters the host netns and waits at a barrier; all start their plugin at \
             once. \"all done\" = first start to last exit. Variants run one after another, after the sequential \
             part (so ours already owns an empty block). {} vCPUs.",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    (out, goals)
}

fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 120 {
        flat.chars().take(117).collect::<String>() + "..."
    } else {
        flat
    }
}

// ---------------------------------------------------------------------------------------------------------
// IPAM in-process.

/// Datastore operations seen by [`CountingStore`].
#[derive(Default)]
struct OpCounts {
    gets: AtomicU64,
    lists: AtomicU64,
    listed_keys: AtomicU64,
    writes: AtomicU64,
}

impl OpCounts {
    fn snapshot(&self) -> [u64; 4] {
        [
            self.gets.load(Ordering::Relaxed),
            self.lists.load(Ordering::Relaxed),
            self.listed_keys.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        ]
    }
}

/// A `Store` that counts the calls passed through to the real one.
struct CountingStore {
    inner: Arc<dyn Store>,
    counts: Arc<OpCounts>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        bump(&self.counts.gets);
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError> {
        bump(&self.counts.lists);
        let listed = self.inner.list(prefix, at).await?;
        self.counts
            .listed_keys
            .fetch_add(listed.kvs.len() as u64, Ordering::Relaxed);
        Ok(listed)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        bump(&self.counts.writes);
        self.inner.create(key, value).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, StoreError> {
        bump(&self.counts.writes);
        self.inner.update(key, value, expected_mod_revision).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        bump(&self.counts.writes);
        self.inner.put(key, value).await
    }

    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<Revision, StoreError> {
        bump(&self.counts.writes);
        self.inner.put_with_ttl(key, value, ttl).await
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        bump(&self.counts.writes);
        self.inner.delete(key, expected_mod_revision).await
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<Revision, StoreError> {
        bump(&self.counts.writes);
        self.inner.batch(ops).await
    }

    fn max_batch_ops(&self) -> usize {
        self.inner.max_batch_ops()
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        self.inner.watch(prefix, from_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }
}

/// How to open another connection to one backend (each IPAM host gets its own).
#[derive(Clone)]
enum Backend {
    Embedded(PathBuf),
    Etcd(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
            Backend::Etcd(_) => "etcd",
        }
    }

    async fn connect(&self) -> Result<Arc<dyn Store>> {
        match self {
            Backend::Embedded(path) => Ok(Arc::new(
                EmbeddedStore::open(path).with_context(|| format!("opening {}", path.display()))?,
            )),
            Backend::Etcd(endpoint) => connect_etcd(endpoint).await,
        }
    }
}

/// One row of the IPAM table.
struct IpamRow {
    case: String,
    backend: &'static str,
    allocations: usize,
    seconds: f64,
    /// Store revisions, gets, lists, keys listed, write calls, each per allocation.
    revisions: f64,
    counts: [f64; 4],
}

async fn ipam_section(args: &CniArgs, scratch: &Path) -> Result<(String, Vec<Goal>)> {
    let mut out = String::new();
    let mut goals = Vec::new();
    let mut rows: Vec<IpamRow> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let etcd = start_etcd().await?;
    let backends = [
        Backend::Etcd(etcd.endpoint()),
        Backend::Embedded(scratch.join("ipam.db")),
    ];
    let mut primitives = Table::new(
        &format!("Datastore primitives seen by IPAM: {PRIMITIVE_OPS} sequential calls each"),
        &[
            "backend",
            "get p50 ms",
            "list p50 ms",
            "write p50 ms",
            "write p99 ms",
        ],
    );
    for backend in &backends {
        match store_primitives(backend).await {
            Ok(row) => primitives.push(row),
            Err(e) => {
                check_cancelled()?;
                errors.push(format!("{} primitives: {e:#}", backend.name()));
            }
        }
    }
    for backend in &backends {
        match ipam_backend(args, backend).await {
            Ok(backend_rows) => {
                let in_block = backend_rows
                    .iter()
                    .find(|r| r.case.starts_with("within"))
                    .map(|r| r.revisions);
                goals.push(Goal {
                    name: format!(
                        "{}: store writes per allocation within an affine block <= {WRITES_PER_ALLOCATION_GOAL:.1}",
                        backend.name()
                    ),
                    met: in_block.map(|w| w <= WRITES_PER_ALLOCATION_GOAL),
                    informational: false,
                    detail: in_block.map_or_else(|| "n/a".into(), |w| format!("{w:.2}")),
                });
                rows.extend(backend_rows);
            }
            Err(e) => {
                check_cancelled()?;
                goals.push(Goal {
                    name: format!(
                        "{}: store writes per allocation within an affine block <= {WRITES_PER_ALLOCATION_GOAL:.1}",
                        backend.name()
                    ),
                    met: None,
                    informational: false,
                    detail: one_line(&format!("{e:#}")),
                });
                errors.push(format!("{}: {e:#}", backend.name()));
            }
        }
    }
    drop(etcd);
    let mut table = Table::new(
        "IPAM in-process (calico_ipam::Ipam::auto_assign, one address per call)",
        &[
            "case",
            "backend",
            "allocations",
            "seconds",
            "allocations/s",
            "revisions/alloc",
            "write calls/alloc",
            "gets/alloc",
            "lists/alloc",
            "keys listed/alloc",
        ],
    );
    for row in &rows {
        let [gets, lists, listed, writes] = row.counts;
        table.push(vec![
            row.case.clone(),
            row.backend.into(),
            row.allocations.to_string(),
            format!("{:.2}", row.seconds),
            thousands(row.allocations as f64 / row.seconds.max(f64::MIN_POSITIVE)),
            format!("{:.2}", row.revisions),
            format!("{writes:.2}"),
            format!("{gets:.2}"),
            format!("{lists:.2}"),
            format!("{listed:.1}"),
        ]);
    }
    out.push_str(&table.render());
    out.push_str(&primitives.render());
    let _ = writeln!(
        out,
        "\nHow: pool {IPAM_POOL} (/26 blocks), maxBlocksPerHost {IPAM_MAX_BLOCKS_PER_HOST}. \"within a block\": \
         after one warm-up allocation claimed the host's block, {IN_BLOCK_ALLOCATIONS} allocations that fit in \
         it; revisions = store revision delta (one per write transaction). Sequential and {IPAM_HOSTS}-host rows \
         include block claims; the {IPAM_HOSTS} hosts run as tasks with their own Ipam and store connection. \
         Reads counted by a Store adapter around each connection."
    );
    for error in errors {
        let _ = writeln!(out, "ERROR: {}", one_line(&error));
    }
    Ok((out, goals))
}

/// p50 of a point read, a prefix list (two keys) and a single-key write (one transaction each), on a fresh
/// connection: what one IPAM round trip and one IPAM write cost on this machine.
async fn store_primitives(backend: &Backend) -> Result<Vec<String>> {
    let store = backend.connect().await?;
    let value = vec![b'x'; 512];
    store.put("/bench/primitives/a", value.clone()).await?;
    store.put("/bench/primitives/b", value.clone()).await?;
    let mut gets = Vec::with_capacity(PRIMITIVE_OPS);
    let mut lists = Vec::with_capacity(PRIMITIVE_OPS);
    let mut writes = Vec::with_capacity(PRIMITIVE_OPS);
    for _ in 0..PRIMITIVE_OPS {
        check_cancelled()?;
        let started = Instant::now();
        store.get("/bench/primitives/a").await?;
        gets.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        store.list("/bench/primitives/", None).await?;
        lists.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        store.put("/bench/primitives/a", value.clone()).await?;
        writes.push(started.elapsed().as_secs_f64());
    }
    let (gets, lists, writes) = (sorted(&gets), sorted(&lists), sorted(&writes));
    Ok(vec![
        backend.name().into(),
        ms_precise(&gets, 50.0),
        ms_precise(&lists, 50.0),
        ms_precise(&writes, 50.0),
        ms_precise(&writes, 99.0),
    ])
}

fn ms_precise(sorted_values: &[f64], p: f64) -> String {
    percentile(sorted_values, p).map_or_else(|| "n/a".into(), |s| format!("{:.3}", s * 1000.0))
}

/// A counting connection to `backend`, and its counters.
async fn counted(backend: &Backend) -> Result<(Ipam, Arc<OpCounts>)> {
    let counts = Arc::new(OpCounts::default());
    let store: Arc<dyn Store> = Arc::new(CountingStore {
        inner: backend.connect().await?,
        counts: counts.clone(),
    });
    Ok((Ipam::new(store), counts))
}

fn per_allocation(before: [u64; 4], after: [u64; 4], allocations: usize) -> [f64; 4] {
    let n = allocations.max(1) as f64;
    [0, 1, 2, 3].map(|i| after[i].saturating_sub(before[i]) as f64 / n)
}

async fn allocate(ipam: &Ipam, host: &str, handle: &str) -> Result<()> {
    let got = ipam
        .auto_assign(&AssignRequest::workload(1, handle, host))
        .await
        .with_context(|| format!("allocating for {handle} on {host}"))?;
    if got.v4.len() != 1 {
        bail!("allocation for {handle} returned {:?}", got.v4);
    }
    Ok(())
}

async fn ipam_backend(args: &CniArgs, backend: &Backend) -> Result<Vec<IpamRow>> {
    let mut rows = Vec::new();
    let setup = backend.connect().await?;
    create_pool(&setup, "bench-ipam", IPAM_POOL).await?;
    Ipam::new(setup.clone())
        .configure(None, Some(IPAM_MAX_BLOCKS_PER_HOST))
        .await
        .context("raising maxBlocksPerHost")?;

    // Within a block: claim it with one allocation, then count what the next ones cost.
    let (ipam, counts) = counted(backend).await?;
    allocate(&ipam, "wpa-host", "bench.warm").await?;
    let revision_before = setup.current_revision().await?;
    let before = counts.snapshot();
    let started = Instant::now();
    for i in 0..IN_BLOCK_ALLOCATIONS {
        check_cancelled()?;
        allocate(&ipam, "wpa-host", &format!("bench.wpa{i}")).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let revision_after = setup.current_revision().await?;
    let blocks = ipam.affinities(Some("wpa-host")).await?.len();
    if blocks != 1 {
        bail!("the in-block allocations claimed more blocks ({blocks}) than the warm-up one");
    }
    rows.push(IpamRow {
        case: "within a block, 1 host".into(),
        backend: backend.name(),
        allocations: IN_BLOCK_ALLOCATIONS,
        seconds,
        revisions: (revision_after - revision_before) as f64 / IN_BLOCK_ALLOCATIONS as f64,
        counts: per_allocation(before, counts.snapshot(), IN_BLOCK_ALLOCATIONS),
    });

    // One host, sequential.
    let n = args.ipam_allocations;
    let (ipam, counts) = counted(backend).await?;
    let revision_before = setup.current_revision().await?;
    let before = counts.snapshot();
    let started = Instant::now();
    for i in 0..n {
        check_cancelled()?;
        allocate(&ipam, "seq-host", &format!("bench.seq{i}")).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let revision_after = setup.current_revision().await?;
    rows.push(IpamRow {
        case: "sequential, 1 host".into(),
        backend: backend.name(),
        allocations: n,
        seconds,
        revisions: (revision_after - revision_before) as f64 / n.max(1) as f64,
        counts: per_allocation(before, counts.snapshot(), n),
    });

    // Three hosts at once, each with its own connection.
    let each = n / 2;
    let shared_counts = Arc::new(OpCounts::default());
    let mut hosts = Vec::new();
    for h in 0..IPAM_HOSTS {
        let store: Arc<dyn Store> = Arc::new(CountingStore {
            inner: backend.connect().await?,
            counts: shared_counts.clone(),
        });
        hosts.push((h, Ipam::new(store)));
    }
    let revision_before = setup.current_revision().await?;
    let started = Instant::now();
    let tasks: Vec<_> = hosts
        .into_iter()
        .map(|(h, ipam)| {
            tokio::spawn(async move {
                let host = format!("con-host-{h}");
                for i in 0..each {
                    check_cancelled()?;
                    allocate(&ipam, &host, &format!("bench.con{h}-{i}")).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.map_err(|e| anyhow!("an allocating task failed: {e}"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let revision_after = setup.current_revision().await?;
    let total = each * IPAM_HOSTS;
    rows.push(IpamRow {
        case: format!("{IPAM_HOSTS} hosts at once, {each} each"),
        backend: backend.name(),
        allocations: total,
        seconds,
        revisions: (revision_after - revision_before) as f64 / total.max(1) as f64,
        counts: per_allocation([0; 4], shared_counts.snapshot(), total),
    });
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_allocation_divides_the_deltas() {
        assert_eq!(
            per_allocation([1, 2, 3, 4], [11, 22, 33, 44], 10),
            [1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(per_allocation([0; 4], [5; 4], 0), [5.0; 4]);
    }

    #[test]
    fn percentiles_in_milliseconds() {
        let values = sorted(&[0.003, 0.001, 0.002]);
        assert_eq!(ms(&values, 50.0), "2.0");
        assert_eq!(ms(&values, 99.0), "3.0");
        assert_eq!(ms(&[], 50.0), "n/a");
    }
}
