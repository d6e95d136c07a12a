//! The `lab` section: a multi-host Calico cluster built by `calico-lab` (hosts are network namespaces on one
//! underlay bridge, one `calico-node` each, pods wired by the real `calico` CNI plugin), measured as a user
//! would see it.
//!
//! Figures (release binaries next to this one, as root):
//! 1. TCP throughput pod to pod across two hosts over VXLAN beside the raw underlay between the same two
//!    hosts: iperf3 servers in node2's pod and in node2's host namespace, clients in node1's pod and host;
//!    runs interleaved (the order alternates), median of the per-run ratio VXLAN / underlay.
//! 2. CNI ADD → reachable from another host: pods added one at a time on node1 by calico-lab's own
//!    add-pod code (the plugin run in the host's namespace); from the moment ADD returns, a thread inside
//!    node2's pod sends a TCP SYN to a closed port of the new pod every millisecond until a reset (or an
//!    accept) comes back.
//! 3. calico-node memory and CPU on a 3-host lab: idle after `up`, then with `--pods-per-host` pods per
//!    host once they all answer and calico-node has gone quiet.
//! 4. `calico-lab up` wall time for 3 hosts × 2 pods and for 20 hosts × 10 pods, with calico-lab's own
//!    per-stage timings.
//!
//! 5. Calico's BGP mode (`--encap none`, module [`bgp`]): figure 1 over the `proto bird` route; a new
//!    block's route reaching every host of a mesh; full-mesh and route-reflector convergence and memory.
//!
//! Every lab gets a unique name and is removed with `calico-lab down --name <name>` by a drop guard (also
//! on error or Ctrl-C). Everything runs inside the labs' namespaces; the root namespace is left alone.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use calico_lab::cni::Added;
use calico_lab::state::{HostState, PodState, STAGES, State};
use calico_process::{Finished, RunError};
use serde_json::Value;
use tokio::net::TcpSocket;
use tokio::task::JoinSet;

use crate::measure::percentile;
use crate::report::{Goal, Table};

mod bgp;

const IPERF3: &str = "/usr/bin/iperf3";
const IPERF_PORT: u16 = 5201;
/// Nothing listens on it in a pod: a SYN there is answered by a reset once the path works.
const PROBE_PORT: u16 = 9;
const PROBE_INTERVAL: Duration = Duration::from_millis(1);
const PROBE_LIMIT: Duration = Duration::from_secs(5);
/// Unanswered connects kept open at once (older ones are abandoned; their SYNs are lost anyway).
const PROBES_IN_FLIGHT: usize = 256;
/// How long one `calico-lab up` may take before it is killed.
const UP_LIMIT: Duration = Duration::from_secs(400);
const DOWN_LIMIT: Duration = Duration::from_secs(180);
/// Seconds per core-second in /proc/<pid>/stat: USER_HZ, 100 on every Linux architecture this runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
/// calico-node counts as quiet when it used less than this share of a core over one second.
const QUIET_CPU_PERCENT: f64 = 5.0;
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
const REACH_ALL_LIMIT: Duration = Duration::from_secs(60);
/// Plugin processes adding pods at once for the memory figure (the machine has two CPUs).
const ADD_WORKERS: usize = 4;

const THROUGHPUT_RATIO_GOAL: f64 = 0.85;
const BGP_THROUGHPUT_RATIO_GOAL: f64 = 0.95;
const REACH_P99_GOAL_MS: f64 = 200.0;
const IDLE_RSS_GOAL_MIB: f64 = 20.0;
const SMALL_UP_GOAL_SECONDS: f64 = 5.0;

/// Set by Ctrl-C / SIGTERM: waits stop, child processes are killed, and the drop guards take labs down.
static CANCELLED: AtomicBool = AtomicBool::new(false);
/// Makes lab names unique within this process.
static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn check_cancelled() -> Result<()> {
    if CANCELLED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Parts of the section, for `--only`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Throughput,
    Reach,
    Resources,
    Up,
    /// CNI ADD wall time in a 1-host lab beside the same in a large lab.
    CniScale,
    /// BGP mode (`--encap none`): pod-to-pod TCP across two hosts beside the underlay.
    BgpThroughput,
    /// BGP mode, node-to-node mesh: a new block on one host -> its `proto bird` route on every other host.
    BgpNewBlock,
    /// BGP mode, full mesh of `--mesh-hosts`: convergence from the last calico-node start, RSS.
    BgpMeshScale,
    /// BGP mode, `--rr-hosts` with `--route-reflectors` reflectors and the mesh off: convergence.
    BgpRrScale,
}

/// Sizes of the `lab` section.
#[derive(clap::Args, Clone, Debug)]
pub struct LabArgs {
    /// iperf3 runs per path (pods and underlay take turns); single runs on a small virtual machine swing
    /// by ±15 %, so the median needs several.
    #[arg(long, default_value_t = 9)]
    pub iperf_runs: usize,
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 3)]
    pub iperf_seconds: u64,
    /// Pods added one by one for the ADD → reachable figure.
    #[arg(long, default_value_t = 100)]
    pub reach_pods: usize,
    /// Pods per host for the loaded calico-node memory/CPU figure.
    #[arg(long, default_value_t = 100)]
    pub pods_per_host: usize,
    /// Seconds to wait after `up` before the idle measurement, and the CPU measurement window.
    #[arg(long, default_value_t = 10)]
    pub cpu_window: u64,
    /// `calico-lab up` runs per size (median reported).
    #[arg(long, default_value_t = 3)]
    pub up_runs: usize,
    /// Hosts of the large `up` case (0 skips it).
    #[arg(long, default_value_t = 20)]
    pub big_nodes: usize,
    /// Pods per host of the large `up` case.
    #[arg(long, default_value_t = 10)]
    pub big_pods: usize,
    /// Pods added one by one on node1 of each lab for the CNI ADD scaling figure.
    #[arg(long, default_value_t = 40)]
    pub scale_pods: usize,
    /// Hosts of the BGP new-block lab (node-to-node mesh).
    #[arg(long, default_value_t = 50)]
    pub new_block_hosts: usize,
    /// New blocks claimed (one at a time, on hosts in turn) in the BGP new-block lab.
    #[arg(long, default_value_t = 10)]
    pub new_blocks: usize,
    /// Hosts of the BGP full-mesh lab.
    #[arg(long, default_value_t = 100)]
    pub mesh_hosts: usize,
    /// Hosts of the BGP route-reflector lab (node-to-node mesh off).
    #[arg(long, default_value_t = 250)]
    pub rr_hosts: usize,
    /// Route reflectors among the route-reflector lab's hosts (node1, node2, ...).
    #[arg(long, default_value_t = 2)]
    pub route_reflectors: usize,
    /// Seconds a BGP lab may take to converge (every host holding every other host's block route)
    /// before the figure is reported as not converged.
    #[arg(long, default_value_t = 90)]
    pub converge_limit: u64,
    /// Run only these parts (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Copy every lab's logs (calico-node, CNI plugin) into this directory before taking it down.
    #[arg(long)]
    pub keep_logs: Option<PathBuf>,
}

impl LabArgs {
    fn wants(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// Runs the section; returns the rendered tables and the goals.
pub async fn run(args: &LabArgs) -> Result<(String, Vec<Goal>)> {
    let interrupt_watch = tokio::spawn(watch_for_interrupt());
    let args = args.clone();
    let outcome = tokio::task::spawn_blocking(move || sections(&args))
        .await
        .map_err(|e| anyhow!("the lab benchmark thread failed: {e}"));
    interrupt_watch.abort();
    outcome?
}

async fn watch_for_interrupt() {
    crate::interrupt::wait_for_interrupt().await;
    CANCELLED.store(true, Ordering::Relaxed);
    eprintln!("calico-bench lab: interrupted; taking the labs down");
}

fn progress(message: impl AsRef<str>) {
    eprintln!("[lab] {}", message.as_ref());
}

/// One row of the summary table and its goal.
struct Figure {
    name: &'static str,
    result: String,
    detail: String,
    goal: Option<String>,
    met: Option<bool>,
}

impl Figure {
    fn failed(name: &'static str, goal: Option<String>, error: &anyhow::Error) -> Figure {
        Figure {
            name,
            result: "error".into(),
            detail: one_line(&format!("{error:#}")),
            goal,
            met: None,
        }
    }

    fn to_goal(&self) -> Goal {
        Goal {
            name: format!("lab: {}", self.name),
            met: self.met,
            informational: self.goal.is_none(),
            detail: format!(
                "{}{}",
                self.result,
                self.goal
                    .as_ref()
                    .map(|g| format!("; goal {g}"))
                    .unwrap_or_default()
            ),
        }
    }
}

fn sections(args: &LabArgs) -> Result<(String, Vec<Goal>)> {
    calico_testutil::netns::require_root().map_err(|e| anyhow!(e))?;
    let tools = Tools::locate(args.keep_logs.clone())?;
    let started = Instant::now();
    let load_before = load_average();
    let mut figures: Vec<Figure> = Vec::new();
    let mut details = String::new();

    if args.wants(Part::Throughput) || args.wants(Part::Reach) {
        two_host_figures(&tools, args, &mut figures, &mut details);
    }
    if args.wants(Part::Up) || args.wants(Part::Resources) {
        small_lab_figures(&tools, args, &mut figures, &mut details);
    }
    if args.wants(Part::Up) && args.big_nodes > 0 {
        let name = "up: 20 hosts x 10 pods (median wall s)";
        match up_series(&tools, args.big_nodes, args.big_pods, args.up_runs, false) {
            Ok((runs, _)) => {
                let median = median(runs.iter().map(|r| r.wall.as_secs_f64()).collect());
                details.push_str(&up_table(args.big_nodes, args.big_pods, &runs).render());
                figures.push(Figure {
                    name,
                    result: format!("{median:.2} s"),
                    detail: format!(
                        "{} hosts x {} pods, {} runs: {}",
                        args.big_nodes,
                        args.big_pods,
                        runs.len(),
                        runs.iter()
                            .map(|r| format!("{:.2}", r.wall.as_secs_f64()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    goal: None,
                    met: None,
                });
            }
            Err(e) => figures.push(Figure::failed(name, None, &e)),
        }
    }

    if args.wants(Part::CniScale) && args.big_nodes > 0 {
        let (name, goal) = (CNI_SCALE_FIGURE, cni_scale_goal());
        match cni_scale(&tools, args.big_nodes, args.scale_pods) {
            Ok((figure, table)) => {
                figures.push(figure);
                details.push_str(&table.render());
            }
            Err(e) => figures.push(Figure::failed(name, goal, &e)),
        }
    }

    bgp::figures(&tools, args, &mut figures, &mut details);

    let mut summary = Table::new(
        "calico-lab: multi-host figures",
        &["figure", "result", "goal", "verdict", "detail"],
    );
    for f in &figures {
        let verdict = match (&f.goal, f.met) {
            (None, _) => "-",
            (Some(_), Some(true)) => "met",
            (Some(_), Some(false)) => "NOT met",
            (Some(_), None) => "not measured",
        };
        summary.push(vec![
            f.name.to_string(),
            f.result.clone(),
            f.goal.clone().unwrap_or_else(|| "-".into()),
            verdict.to_string(),
            f.detail.clone(),
        ]);
    }
    let mut out = summary.render();
    out.push_str(&details);
    let _ = writeln!(
        out,
        "\n(lab section: {:.0} s; load average (1 min) {load_before} before, {} after: other work on this \
         2-CPU machine shows up as latency outliers; pod MTU: 1450 over VXLAN (underlay 1500 - 50 bytes), \
         1500 in BGP mode)",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    let goals = figures.iter().map(Figure::to_goal).collect();
    Ok((out, goals))
}

/// The 1-minute load average, as text.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------------------------------------
// Binaries, processes.

/// The executables: calico-lab and the plugin beside this binary, iperf3 and ip from the system.
struct Tools {
    lab: PathBuf,
    plugin: PathBuf,
    ip: PathBuf,
    iperf3: PathBuf,
    keep_logs: Option<PathBuf>,
}

impl Tools {
    fn locate(keep_logs: Option<PathBuf>) -> Result<Tools> {
        let exe = std::env::current_exe().context("finding this binary's path")?;
        let dir = exe
            .parent()
            .context("this binary's path has no directory")?;
        for name in ["calico-lab", "calico-node", "calico"] {
            if !dir.join(name).is_file() {
                bail!(
                    "{} not found: build the workspace with `cargo build --release --workspace` (scripts/bench.sh lab does)",
                    dir.join(name).display()
                );
            }
        }
        let ip = calico_process::find_program("ip").context("`ip` not found: install iproute2")?;
        let iperf3 = PathBuf::from(IPERF3);
        if !iperf3.is_file() {
            bail!("{IPERF3} not found: install iperf3 (scripts/bench.sh lab does)");
        }
        Ok(Tools {
            lab: dir.join("calico-lab"),
            plugin: dir.join("calico"),
            ip,
            iperf3,
            keep_logs,
        })
    }

    /// `ip netns exec <ns> <program>`.
    fn in_netns(&self, ns: &str, program: &Path) -> Command {
        let mut command = Command::new(&self.ip);
        command.args(["netns", "exec", ns]).arg(program);
        command
    }
}

/// Runs `command` to the end with `input` on stdin, killed after `limit` or on Ctrl-C. The exit time
/// (`exited_at`) is exact: the ADD → reachable clock starts there.
fn run_bounded(mut command: Command, input: Option<&[u8]>, limit: Duration) -> Result<Finished> {
    check_cancelled()?;
    match calico_process::run_cancellable(&mut command, input, limit, Some(&CANCELLED)) {
        Ok(finished) => Ok(finished),
        Err(RunError::TimedOut {
            program, output, ..
        }) => bail!(
            "{program} did not finish within {limit:?} and was killed: {}",
            tail(&output.text(), 10)
        ),
        Err(RunError::Cancelled { .. }) => bail!("interrupted"),
        Err(e) => Err(e.into()),
    }
}

/// A long-running child (an iperf3 server) killed and reaped when dropped.
struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 160 {
        flat.chars().take(157).collect::<String>() + "..."
    } else {
        flat
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Labs.

/// Runs `calico-lab down --name <name>` when dropped, whatever happened (error, panic, Ctrl-C).
struct DownOnDrop<'a> {
    tools: &'a Tools,
    name: String,
}

/// A lab brought up by `calico-lab up`.
struct Lab<'a> {
    down: DownOnDrop<'a>,
    /// What `up --json` printed: calico-lab's own state file.
    state: State,
}

/// What one `calico-lab up` took.
struct UpRun {
    wall: Duration,
    /// calico-lab's own stage timings (ms).
    stages: BTreeMap<String, u64>,
}

impl<'a> Lab<'a> {
    /// Brings up a lab with a fresh name; the guard exists before `up` starts, so a failed `up` is cleaned
    /// up too.
    fn up(tools: &'a Tools, nodes: usize, pods_per_node: usize) -> Result<(Lab<'a>, UpRun)> {
        Lab::up_with_encap(tools, nodes, pods_per_node, calico_lab::Encap::Vxlan)
    }

    /// [`Lab::up`] with `--encap` (`none` is Calico's BGP mode).
    fn up_with_encap(
        tools: &'a Tools,
        nodes: usize,
        pods_per_node: usize,
        encap: calico_lab::Encap,
    ) -> Result<(Lab<'a>, UpRun)> {
        Self::up_with(tools, nodes, pods_per_node, encap, &[])
    }

    /// [`Lab::up_with_encap`] with more `calico-lab up` arguments (`--big-tcp`).
    fn up_with(
        tools: &'a Tools,
        nodes: usize,
        pods_per_node: usize,
        encap: calico_lab::Encap,
        extra: &[&str],
    ) -> Result<(Lab<'a>, UpRun)> {
        let down = DownOnDrop {
            tools,
            name: format!(
                "bench{}_{}",
                std::process::id(),
                LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let mut command = Command::new(&tools.lab);
        command
            .args(["up", "--json", "--timeout", "120", "--name", &down.name])
            .args(["--nodes", &nodes.to_string()])
            .args(["--pods-per-node", &pods_per_node.to_string()])
            .args(["--encap", encap.name()])
            .args(extra);
        let out = run_bounded(command, None, UP_LIMIT)?;
        if !out.status.success() {
            bail!(
                "calico-lab up --nodes {nodes} --pods-per-node {pods_per_node} --encap {} failed ({}):\n{}",
                encap.name(),
                out.status,
                tail(&out.text(), 20)
            );
        }
        let state: State = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "calico-lab up --json printed no lab state: {}",
                tail(&out.text(), 5)
            )
        })?;
        let up = UpRun {
            wall: out.elapsed,
            stages: state.timings_ms.clone(),
        };
        Ok((Lab { down, state }, up))
    }

    fn name(&self) -> &str {
        &self.down.name
    }

    fn prefix(&self) -> String {
        format!("clab-{}-", self.name())
    }

    fn host(&self, name: &str) -> Result<&HostState> {
        self.state
            .host(name)
            .with_context(|| format!("lab {} has no host {name}", self.name()))
    }

    fn pod(&self, name: &str) -> Result<&PodState> {
        self.state
            .pod(name)
            .with_context(|| format!("lab {} has no pod {name}", self.name()))
    }
}

impl DownOnDrop<'_> {
    /// Copies the lab's `*.log` files (per host: calico-node's and the plugin's) to `into/<lab>/`.
    fn copy_logs(&self, into: &Path) -> std::io::Result<()> {
        let target = into.join(&self.name);
        std::fs::create_dir_all(&target)?;
        let dir = Path::new("/run/calico-lab").join(&self.name);
        for host in std::fs::read_dir(&dir)?.flatten() {
            let Ok(files) = std::fs::read_dir(host.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    let host_name = host.file_name().to_string_lossy().into_owned();
                    std::fs::copy(file.path(), target.join(format!("{host_name}-{name}")))?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(into) = &self.tools.keep_logs
            && let Err(e) = self.copy_logs(into)
        {
            eprintln!("warning: copying the logs of lab {}: {e}", self.name);
        }
        // Not cancellable: down must run even after Ctrl-C.
        let mut command = Command::new(&self.tools.lab);
        command.args(["down", "--name", &self.name]);
        match calico_process::run(&mut command, None, DOWN_LIMIT) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: calico-lab down --name {} failed ({}): {}",
                self.name,
                out.status,
                tail(&out.text(), 10)
            ),
            Err(e) => eprintln!("warning: calico-lab down --name {}: {e}", self.name),
        }
    }
}

/// Adds pod `pod` to `host` through the plugin, exactly as `calico-lab add-pod` does (the namespace is
/// under the lab's prefix, so `calico-lab down` removes it).
fn add_pod(tools: &Tools, lab: &Lab, host: &HostState, pod: &str) -> Result<Added> {
    check_cancelled()?;
    calico_lab::cni::add_pod(
        &tools.plugin,
        &lab.prefix(),
        host,
        calico_lab::cni::POD_NAMESPACE,
        pod,
    )
}

// ---------------------------------------------------------------------------------------------------------
// Probing.

/// One connect to `ip`'s closed port: the instant an answer (reset or accept) came, or None.
async fn probe_once(ip: IpAddr) -> Option<Instant> {
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .ok()?;
    match socket.connect(SocketAddr::new(ip, PROBE_PORT)).await {
        Ok(_) => Some(Instant::now()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(Instant::now()),
        Err(_) => None,
    }
}

/// A new connect every [`PROBE_INTERVAL`] from `start` until one is answered; the time from `start` to
/// that answer, or None after [`PROBE_LIMIT`].
async fn time_to_answer(ip: IpAddr, start: Instant) -> Option<Duration> {
    let deadline = start + PROBE_LIMIT;
    let mut attempts: JoinSet<Option<Instant>> = JoinSet::new();
    let mut oldest = VecDeque::new();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                if let Ok(Some(answered_at)) = done {
                    return Some(answered_at.saturating_duration_since(start));
                }
            }
            _ = tick.tick() => {
                if Instant::now() >= deadline {
                    return None;
                }
                oldest.push_back(attempts.spawn(probe_once(ip)));
                if oldest.len() > PROBES_IN_FLIGHT
                    && let Some(handle) = oldest.pop_front()
                {
                    handle.abort();
                }
            }
        }
    }
}

/// A thread inside one namespace that times how long targets take to answer, on request.
struct Prober {
    requests: Option<mpsc::Sender<(IpAddr, Instant)>>,
    answers: mpsc::Receiver<Option<Duration>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Prober {
    fn start(ns: &str) -> Result<Prober> {
        let netns = calico_lab::netns::open(ns)?;
        let (requests, incoming) = mpsc::channel::<(IpAddr, Instant)>();
        let (reply, answers) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lab-prober".into())
            .spawn(move || -> Result<()> {
                netns.run(move || -> Result<()> {
                    // Sockets are opened on this thread, inside the namespace.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("starting the async runtime")?;
                    while let Ok((ip, start)) = incoming.recv() {
                        let answer = runtime.block_on(time_to_answer(ip, start));
                        if reply.send(answer).is_err() {
                            break;
                        }
                    }
                    Ok(())
                })?
            })
            .context("starting the prober thread")?;
        Ok(Prober {
            requests: Some(requests),
            answers,
            thread: Some(thread),
        })
    }

    fn time(&self, ip: IpAddr, start: Instant) -> Result<Option<Duration>> {
        self.requests
            .as_ref()
            .context("prober stopped")?
            .send((ip, start))
            .map_err(|_| anyhow!("the prober thread ended"))?;
        self.answers
            .recv_timeout(PROBE_LIMIT + Duration::from_secs(5))
            .map_err(|e| anyhow!("no answer from the prober thread: {e}"))
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take()
            && let Ok(Err(e)) = thread.join()
        {
            eprintln!("warning: prober: {e:#}");
        }
    }
}

/// Of `targets`, the ones that answer (within 700 ms) from inside namespace `ns`.
fn answering_from(ns: &str, targets: Vec<IpAddr>) -> Result<BTreeSet<IpAddr>> {
    let reached = calico_lab::reach::probe_from(ns, targets, Duration::from_millis(700))?;
    Ok(reached.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------------------
// Figures 1 and 2: a 2-host lab with one pod per host.

fn two_host_figures(
    tools: &Tools,
    args: &LabArgs,
    figures: &mut Vec<Figure>,
    details: &mut String,
) {
    let throughput_name = "TCP throughput VXLAN / underlay (median ratio)";
    let throughput_goal = Some(format!(">= {THROUGHPUT_RATIO_GOAL:.2}"));
    let reach_name = "CNI ADD -> reachable from node2 (p99)";
    let reach_goal = Some(format!("<= {REACH_P99_GOAL_MS:.0} ms"));
    progress("2 hosts x 1 pod: up");
    let lab = match Lab::up(tools, 2, 1) {
        Ok((lab, _)) => lab,
        Err(e) => {
            if args.wants(Part::Throughput) {
                figures.push(Figure::failed(throughput_name, throughput_goal, &e));
            }
            if args.wants(Part::Reach) {
                figures.push(Figure::failed(reach_name, reach_goal, &e));
            }
            return;
        }
    };
    if args.wants(Part::Throughput) {
        progress(format!(
            "throughput: {} x {} s per path",
            args.iperf_runs, args.iperf_seconds
        ));
        match throughput(tools, &lab, args, PodPath::Vxlan) {
            Ok((figure, table)) => {
                figures.push(figure);
                details.push_str(&table.render());
            }
            Err(e) => figures.push(Figure::failed(throughput_name, throughput_goal, &e)),
        }
    }
    if args.wants(Part::Reach) {
        progress(format!(
            "reach: {} pods one by one on node1",
            args.reach_pods
        ));
        match reach(tools, &lab, args.reach_pods) {
            Ok((figure, table)) => {
                figures.push(figure);
                details.push_str(&table.render());
            }
            Err(e) => figures.push(Figure::failed(reach_name, reach_goal, &e)),
        }
    }
    progress("2 hosts: down");
    drop(lab);
}

/// Starts `iperf3 -s` in namespace `ns` and waits until it listens.
fn iperf_server(tools: &Tools, ns: &str) -> Result<Daemon> {
    let mut command = tools.in_netns(ns, &tools.iperf3);
    command
        .args(["-s", "-p", &IPERF_PORT.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = command
        .spawn()
        .with_context(|| format!("starting iperf3 -s in {ns}"))?;
    let pid = child.id();
    let daemon = Daemon { child };
    // /proc/<pid>/net/tcp lists the sockets of the process's namespace: wait for the listener there.
    let port = format!(":{IPERF_PORT:04X}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listening = ["tcp", "tcp6"].iter().any(|file| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).is_ok_and(|table| {
                table.lines().any(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // Columns: sl, local address, remote address, state (0A = LISTEN).
                    fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "0A"
                })
            })
        });
        if listening {
            return Ok(daemon);
        }
        if Instant::now() >= deadline {
            bail!("iperf3 -s in {ns} did not listen on port {IPERF_PORT} within 10 s");
        }
        check_cancelled()?;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one iperf3 client run reported.
struct IperfRun {
    bits_per_second: f64,
    bytes: u64,
    retransmits: u64,
}

/// One iperf3 client run from namespace `ns` to `server`.
fn iperf_client(tools: &Tools, ns: &str, server: IpAddr, seconds: u64) -> Result<IperfRun> {
    let mut command = tools.in_netns(ns, &tools.iperf3);
    command
        .args(["-c", &server.to_string(), "-p", &IPERF_PORT.to_string()])
        .args(["-t", &seconds.to_string(), "-J"]);
    let out = run_bounded(command, None, Duration::from_secs(seconds + 30))?;
    let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 -c {server} from {ns} printed no JSON ({}): {}",
            out.status,
            one_line(&out.text())
        )
    })?;
    if let Some(error) = report.get("error").and_then(Value::as_str) {
        bail!("iperf3 -c {server} from {ns}: {error}");
    }
    let end = report.get("end").context("iperf3 report without `end`")?;
    let bits = end
        .pointer("/sum_received/bits_per_second")
        .and_then(Value::as_f64)
        .context("iperf3 report without end.sum_received.bits_per_second")?;
    let bytes = end
        .pointer("/sum_received/bytes")
        .and_then(Value::as_u64)
        .context("iperf3 report without end.sum_received.bytes")?;
    let retransmits = end
        .pointer("/sum_sent/retransmits")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(IperfRun {
        bits_per_second: bits,
        bytes,
        retransmits,
    })
}

/// Bytes received so far by `device` in the network namespace of process `pid`.
fn rx_bytes(pid: u32, device: &str) -> Result<u64> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .with_context(|| format!("reading /proc/{pid}/net/dev"))?;
    table
        .lines()
        .find_map(|line| {
            let (name, counters) = line.split_once(':')?;
            (name.trim() == device).then(|| counters.split_whitespace().next()?.parse().ok())?
        })
        .with_context(|| format!("no device {device} in /proc/{pid}/net/dev"))
}

/// How pod traffic crosses between the two hosts in a throughput figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodPath {
    /// VXLAN (`--encap vxlan`): encapsulated through `vxlan.calico`.
    Vxlan,
    /// Calico's BGP mode (`--encap none`): plain routing over the `proto bird` route to the block.
    Bgp,
    /// BGP mode on an underlay with BIG TCP (`--big-tcp`), which pods inherit.
    BgpBigTcp,
}

impl PodPath {
    fn figure_name(self) -> &'static str {
        match self {
            PodPath::Vxlan => "TCP throughput VXLAN / underlay (median ratio)",
            PodPath::Bgp => "TCP throughput BGP (no encap) / underlay (median ratio)",
            PodPath::BgpBigTcp => "TCP throughput BGP, BIG TCP underlay / underlay (median ratio)",
        }
    }

    fn goal(self) -> f64 {
        match self {
            PodPath::Vxlan => THROUGHPUT_RATIO_GOAL,
            PodPath::Bgp | PodPath::BgpBigTcp => BGP_THROUGHPUT_RATIO_GOAL,
        }
    }

    fn goal_text(self) -> Option<String> {
        Some(format!(">= {:.2}", self.goal()))
    }

    fn label(self) -> &'static str {
        match self {
            PodPath::Vxlan => "VXLAN",
            PodPath::Bgp => "BGP",
            PodPath::BgpBigTcp => "BGP+BIG TCP",
        }
    }
}

/// node1's `proto bird` route that carries traffic to `ip` (in a block of another host), as text.
fn bird_route_to(lab: &Lab, host: &HostState, ip: IpAddr) -> Result<String> {
    let ns = calico_lab::netns::open(&host.namespace)?;
    let mut nl = calico_netlink::Netlink::in_netns(&ns)?;
    let routes = nl.routes(calico_netlink::Family::V4, Some(calico_netlink::TABLE_MAIN))?;
    let route = routes
        .iter()
        .filter(|r| r.protocol == calico_contracts::route::PROTO_BGP && r.dst.contains(&ip))
        .max_by_key(|r| r.dst.prefix_len())
        .with_context(|| {
            format!(
                "{} of lab {} has no proto bird route to {ip}",
                host.name,
                lab.name()
            )
        })?;
    let via = route
        .gateway
        .map(|g| g.to_string())
        .unwrap_or_else(|| "?".into());
    Ok(format!("{} via {via} proto bird", route.dst))
}

fn throughput(tools: &Tools, lab: &Lab, args: &LabArgs, path: PodPath) -> Result<(Figure, Table)> {
    let node1 = lab.host("node1")?;
    let node2 = lab.host("node2")?;
    let pod1 = lab.pod("node1-pod1")?;
    let pod2 = lab.pod("node2-pod1")?;
    let underlay_server: IpAddr = node2
        .address
        .parse()
        .with_context(|| format!("node2's address {:?}", node2.address))?;
    // In BGP mode, proof the pod traffic is routed, not tunnelled: node1's route to pod2's block is
    // calico-node's `proto bird` route via node2's underlay address.
    let bgp_route = match path {
        PodPath::Bgp | PodPath::BgpBigTcp => {
            let route = bird_route_to(lab, node1, pod2.ip)?;
            if !route.contains(&format!("via {underlay_server} ")) {
                bail!("node1's route to {} is {route}, not via node2", pod2.ip);
            }
            Some(route)
        }
        PodPath::Vxlan => None,
    };
    let _pod_server = iperf_server(tools, &pod2.namespace)?;
    let host_server = iperf_server(tools, &node2.namespace)?;
    // The host server's /proc entry shows node2's host namespace, where vxlan.calico decapsulates.
    let node2_pid = host_server.child.id();
    let label = path.label();
    let mut table = Table::new(
        &format!(
            "lab: TCP throughput node1 -> node2 (iperf3, one stream), {label} pod->pod vs underlay"
        ),
        &[
            "run",
            &format!("{label} pod->pod Gbit/s"),
            "retr",
            "underlay host->host Gbit/s",
            "retr",
            "ratio",
            match path {
                PodPath::Vxlan => "via vxlan.calico",
                PodPath::Bgp | PodPath::BgpBigTcp => "node1's route to pod2",
            },
        ],
    );
    let mut ratios = Vec::new();
    let mut pod_all = Vec::new();
    let mut underlay_all = Vec::new();
    for run in 0..args.iperf_runs {
        check_cancelled()?;
        // Alternate which path goes first so a drift in machine load hits both alike.
        let mut pods = None;
        let mut underlay = None;
        for turn in 0..2 {
            if (run + turn) % 2 == 0 {
                let result = match path {
                    PodPath::Vxlan => {
                        let before = rx_bytes(node2_pid, "vxlan.calico")?;
                        let result =
                            iperf_client(tools, &pod1.namespace, pod2.ip, args.iperf_seconds)?;
                        let tunnelled = rx_bytes(node2_pid, "vxlan.calico")?.saturating_sub(before);
                        // Proof the pod traffic took the tunnel: its bytes (plus headers) came out of
                        // vxlan.calico.
                        let share = tunnelled as f64 / result.bytes.max(1) as f64;
                        if share < 0.9 {
                            bail!(
                                "only {:.0} % of the pod-to-pod bytes came through node2's vxlan.calico",
                                share * 100.0
                            );
                        }
                        (result, format!("{:.0}%", share * 100.0))
                    }
                    PodPath::Bgp | PodPath::BgpBigTcp => (
                        iperf_client(tools, &pod1.namespace, pod2.ip, args.iperf_seconds)?,
                        bgp_route.clone().unwrap_or_default(),
                    ),
                };
                pods = Some(result);
            } else {
                underlay = Some(iperf_client(
                    tools,
                    &node1.namespace,
                    underlay_server,
                    args.iperf_seconds,
                )?);
            }
        }
        let (Some((p_run, check)), Some(u_run)) = (pods, underlay) else {
            bail!("an iperf3 run is missing");
        };
        let (p, p_retr) = (p_run.bits_per_second, p_run.retransmits);
        let (u, u_retr) = (u_run.bits_per_second, u_run.retransmits);
        let ratio = p / u;
        ratios.push(ratio);
        pod_all.push(p);
        underlay_all.push(u);
        table.push(vec![
            (run + 1).to_string(),
            format!("{:.2}", p / 1e9),
            p_retr.to_string(),
            format!("{:.2}", u / 1e9),
            u_retr.to_string(),
            format!("{ratio:.3}"),
            check,
        ]);
    }
    let median_ratio = median(ratios);
    let (median_p, median_u) = (median(pod_all), median(underlay_all));
    table.push(vec![
        "median".into(),
        format!("{:.2}", median_p / 1e9),
        String::new(),
        format!("{:.2}", median_u / 1e9),
        String::new(),
        format!("{median_ratio:.3}"),
    ]);
    let figure = Figure {
        name: path.figure_name(),
        result: format!("{median_ratio:.3}"),
        detail: format!(
            "{label} {:.2} Gbit/s vs underlay {:.2} Gbit/s (medians, {} x {} s each)",
            median_p / 1e9,
            median_u / 1e9,
            args.iperf_runs,
            args.iperf_seconds
        ),
        goal: path.goal_text(),
        met: Some(median_ratio >= path.goal()),
    };
    Ok((figure, table))
}

/// The /26 block an IPv4 address falls in (the lab's pools use blockSize 26).
fn block_of(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(Ipv4Addr::from(u32::from(v4) & !0x3f)),
        IpAddr::V6(_) => None,
    }
}

fn reach(tools: &Tools, lab: &Lab, count: usize) -> Result<(Figure, Table)> {
    let node1 = lab.host("node1")?;
    let observer = lab.pod("node2-pod1")?;
    let prober = Prober::start(&observer.namespace)?;
    // Blocks node1 already owns (its first pod's); pods outside them made node1 claim a new block.
    let mut known_blocks: BTreeSet<Ipv4Addr> = lab
        .state
        .pods
        .iter()
        .filter(|p| p.host == node1.name)
        .filter_map(|p| block_of(p.ip))
        .collect();
    let existing = lab
        .state
        .pods
        .iter()
        .filter(|p| p.host == node1.name)
        .count();
    let mut all_ms = Vec::new();
    let mut new_block: Vec<(usize, f64)> = Vec::new();
    let mut same_block_ms = Vec::new();
    let mut add_ms = Vec::new();
    let mut unreachable = 0usize;
    let mut slow: Vec<(usize, IpAddr, f64)> = Vec::new();
    for i in 1..=count {
        check_cancelled()?;
        let pod = format!("node1-pod{}", existing + i);
        let added = add_pod(tools, lab, node1, &pod)?;
        let answer = prober.time(added.pod.ip, added.plugin_returned_at)?;
        let ms = match answer {
            Some(d) => d.as_secs_f64() * 1000.0,
            None => {
                unreachable += 1;
                PROBE_LIMIT.as_secs_f64() * 1000.0
            }
        };
        all_ms.push(ms);
        if ms > REACH_P99_GOAL_MS {
            slow.push((i, added.pod.ip, ms));
        }
        add_ms.push(added.plugin_took.as_secs_f64() * 1000.0);
        match block_of(added.pod.ip) {
            Some(block) if known_blocks.insert(block) => new_block.push((i, ms)),
            _ => same_block_ms.push(ms),
        }
    }
    all_ms.sort_by(f64::total_cmp);
    same_block_ms.sort_by(f64::total_cmp);
    add_ms.sort_by(f64::total_cmp);
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    let mut table = Table::new(
        &format!(
            "lab: CNI ADD on node1 -> answers from a pod on node2 ({count} pods, probe every 1 ms)"
        ),
        &["pods", "n", "p50 ms", "p99 ms", "max ms"],
    );
    table.push(vec![
        "all".into(),
        all_ms.len().to_string(),
        format!("{:.1}", p(&all_ms, 50.0)),
        format!("{:.1}", p(&all_ms, 99.0)),
        format!("{:.1}", p(&all_ms, 100.0)),
    ]);
    table.push(vec![
        "in a block node1 already had".into(),
        same_block_ms.len().to_string(),
        format!("{:.1}", p(&same_block_ms, 50.0)),
        format!("{:.1}", p(&same_block_ms, 99.0)),
        format!("{:.1}", p(&same_block_ms, 100.0)),
    ]);
    for (i, ms) in &new_block {
        table.push(vec![
            format!("pod #{i} (claimed a new block)"),
            "1".into(),
            format!("{ms:.1}"),
            String::new(),
            String::new(),
        ]);
    }
    table.push(vec![
        "(CNI ADD itself, process wall time)".into(),
        add_ms.len().to_string(),
        format!("{:.1}", p(&add_ms, 50.0)),
        format!("{:.1}", p(&add_ms, 99.0)),
        format!("{:.1}", p(&add_ms, 100.0)),
    ]);
    if !slow.is_empty() {
        table.push(vec![
            format!(
                "over {REACH_P99_GOAL_MS:.0} ms: {}",
                slow.iter()
                    .map(|(i, ip, ms)| format!("#{i} {ip} {ms:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            slow.len().to_string(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    let p99 = p(&all_ms, 99.0);
    let figure = Figure {
        name: "CNI ADD -> reachable from node2 (p99)",
        result: format!("{p99:.1} ms"),
        detail: format!(
            "p50 {:.1} ms, max {:.1} ms over {count} pods; new-block pods {}{}",
            p(&all_ms, 50.0),
            p(&all_ms, 100.0),
            new_block
                .iter()
                .map(|(i, ms)| format!("#{i} {ms:.0} ms"))
                .collect::<Vec<_>>()
                .join(", "),
            if unreachable > 0 {
                format!("; {unreachable} never answered within 5 s (counted as 5000 ms)")
            } else {
                String::new()
            }
        ),
        goal: Some(format!("<= {REACH_P99_GOAL_MS:.0} ms")),
        met: Some(p99 <= REACH_P99_GOAL_MS),
    };
    Ok((figure, table))
}

// ---------------------------------------------------------------------------------------------------------
// Figures 3 and 4: `up` timings; calico-node resources on the last small lab.

/// `runs` labs of `nodes` × `pods`; each is taken down before the next, except the last when `keep_last`.
fn up_series<'a>(
    tools: &'a Tools,
    nodes: usize,
    pods: usize,
    runs: usize,
    keep_last: bool,
) -> Result<(Vec<UpRun>, Option<Lab<'a>>)> {
    let mut results = Vec::new();
    let mut kept = None;
    for run in 0..runs {
        check_cancelled()?;
        progress(format!(
            "up {nodes} hosts x {pods} pods, run {}/{runs}",
            run + 1
        ));
        let (lab, up) = Lab::up(tools, nodes, pods)?;
        progress(format!("  {:.2} s", up.wall.as_secs_f64()));
        results.push(up);
        if keep_last && run + 1 == runs {
            kept = Some(lab);
        } else {
            drop(lab);
        }
    }
    Ok((results, kept))
}

fn up_table(nodes: usize, pods: usize, runs: &[UpRun]) -> Table {
    let mut headers = vec!["run", "wall s"];
    headers.extend(STAGES.iter().map(|s| match *s {
        "calico_node" => "calico-node s",
        "total" => "lab total s",
        other => other,
    }));
    let mut table = Table::new(
        &format!(
            "lab: calico-lab up, {nodes} hosts x {pods} pods (stages as calico-lab reports them)"
        ),
        &headers,
    );
    let stage_s = |run: &UpRun, stage: &str| {
        run.stages
            .get(stage)
            .map(|ms| *ms as f64 / 1000.0)
            .unwrap_or(f64::NAN)
    };
    for (i, run) in runs.iter().enumerate() {
        let mut row = vec![
            (i + 1).to_string(),
            format!("{:.2}", run.wall.as_secs_f64()),
        ];
        row.extend(STAGES.iter().map(|s| format!("{:.2}", stage_s(run, s))));
        table.push(row);
    }
    let mut row = vec![
        "median".to_string(),
        format!(
            "{:.2}",
            median(runs.iter().map(|r| r.wall.as_secs_f64()).collect())
        ),
    ];
    row.extend(STAGES.iter().map(|s| {
        format!(
            "{:.2}",
            median(runs.iter().map(|r| stage_s(r, s)).collect())
        )
    }));
    table.push(row);
    table
}

fn small_lab_figures(
    tools: &Tools,
    args: &LabArgs,
    figures: &mut Vec<Figure>,
    details: &mut String,
) {
    let up_name = "up: 3 hosts x 2 pods (median wall s)";
    let up_goal = Some(format!("<= {SMALL_UP_GOAL_SECONDS:.0} s"));
    let idle_name = "calico-node RSS, 3 hosts idle (max)";
    let idle_goal = Some(format!("<= {IDLE_RSS_GOAL_MIB:.0} MiB"));
    let loaded_name = "calico-node RSS, 3 hosts x pods (max)";
    let runs = if args.wants(Part::Up) {
        args.up_runs.max(1)
    } else {
        1
    };
    let (runs, lab) = match up_series(tools, 3, 2, runs, args.wants(Part::Resources)) {
        Ok(result) => result,
        Err(e) => {
            if args.wants(Part::Up) {
                figures.push(Figure::failed(up_name, up_goal, &e));
            }
            if args.wants(Part::Resources) {
                figures.push(Figure::failed(idle_name, idle_goal, &e));
            }
            return;
        }
    };
    if args.wants(Part::Up) {
        let wall = median(runs.iter().map(|r| r.wall.as_secs_f64()).collect());
        details.push_str(&up_table(3, 2, &runs).render());
        figures.push(Figure {
            name: up_name,
            result: format!("{wall:.2} s"),
            detail: format!(
                "{} runs: {}",
                runs.len(),
                runs.iter()
                    .map(|r| format!("{:.2}", r.wall.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            goal: up_goal,
            met: Some(wall <= SMALL_UP_GOAL_SECONDS),
        });
    }
    if let Some(lab) = lab {
        match resources(tools, &lab, args, figures) {
            Ok(table) => details.push_str(&table.render()),
            Err(e) => {
                if !figures.iter().any(|f| f.name == idle_name) {
                    figures.push(Figure::failed(idle_name, idle_goal, &e));
                }
                figures.push(Figure::failed(loaded_name, None, &e));
            }
        }
        progress("3 hosts: down");
        drop(lab);
    }
}

/// A calico-node's figures at one moment.
struct Usage {
    rss_kib: u64,
    peak_rss_kib: u64,
    /// utime + stime in clock ticks.
    cpu_ticks: u64,
}

fn read_usage(pid: u32) -> Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("calico-node (pid {pid}) is gone"))?;
    let kib = |key: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} in /proc/{pid}/status"))
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised name start at field 3 (state); utime is field 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("field {n} of /proc/{pid}/stat"))
    };
    Ok(Usage {
        rss_kib: kib("VmRSS:")?,
        peak_rss_kib: kib("VmHWM:")?,
        cpu_ticks: field(14)? + field(15)?,
    })
}

/// Checks the pids are calico-node processes (a recorded pid could be stale).
fn calico_node_pids(hosts: &[HostState]) -> Result<Vec<u32>> {
    hosts
        .iter()
        .map(|h| {
            let pid = h.calico_node_pid.with_context(|| {
                format!("calico-lab recorded no calico-node pid for {}", h.name)
            })?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() != "calico-node" {
                bail!(
                    "calico-node of {} (pid {pid}) is not running (log {})",
                    h.name,
                    h.log
                );
            }
            Ok(pid)
        })
        .collect()
}

/// Per-process share of one core over `window`, plus usage at the end.
fn measure_window(pids: &[u32], window: Duration) -> Result<Vec<(f64, Usage)>> {
    let before: Vec<Usage> = pids.iter().map(|p| read_usage(*p)).collect::<Result<_>>()?;
    let started = Instant::now();
    let deadline = started + window;
    while Instant::now() < deadline {
        check_cancelled()?;
        std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now()));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after: Vec<Usage> = pids.iter().map(|p| read_usage(*p)).collect::<Result<_>>()?;
    Ok(before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let seconds = a.cpu_ticks.saturating_sub(b.cpu_ticks) as f64 / CLOCK_TICKS_PER_SECOND;
            (100.0 * seconds / elapsed, a)
        })
        .collect())
}

fn resources(tools: &Tools, lab: &Lab, args: &LabArgs, figures: &mut Vec<Figure>) -> Result<Table> {
    let hosts = &lab.state.hosts;
    let pids = calico_node_pids(hosts)?;
    let window = Duration::from_secs(args.cpu_window);
    progress(format!(
        "resources: idle, waiting {} s then measuring {} s",
        args.cpu_window, args.cpu_window
    ));
    let wait_until = Instant::now() + window;
    while Instant::now() < wait_until {
        check_cancelled()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let idle = measure_window(&pids, window)?;
    let idle_max_mib = idle.iter().map(|(_, u)| u.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    figures.push(Figure {
        name: "calico-node RSS, 3 hosts idle (max)",
        result: format!("{idle_max_mib:.1} MiB"),
        detail: format!(
            "RSS {} MiB; CPU {} % of a core over {} s",
            idle.iter()
                .map(|(_, u)| format!("{:.1}", u.rss_kib as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" / "),
            idle.iter()
                .map(|(c, _)| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join(" / "),
            args.cpu_window
        ),
        goal: Some(format!("<= {IDLE_RSS_GOAL_MIB:.0} MiB")),
        met: Some(idle_max_mib <= IDLE_RSS_GOAL_MIB),
    });

    // Pods up to --pods-per-host on every host, several plugin processes at once.
    let existing = &lab.state.pods;
    let mut wanted: Vec<(usize, String)> = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        let have = existing.iter().filter(|p| p.host == host.name).count();
        for j in have + 1..=args.pods_per_host {
            wanted.push((h, format!("{}-pod{j}", host.name)));
        }
    }
    let adding = wanted.len();
    progress(format!("resources: adding {adding} pods"));
    let add_started = Instant::now();
    // After an interrupt the pods not started yet are skipped (None).
    let outcomes = calico_lab::parallel::map(wanted, ADD_WORKERS, |(h, pod)| {
        if CANCELLED.load(Ordering::Relaxed) {
            return None;
        }
        Some(add_pod(tools, lab, &hosts[h], &pod).map(|a| (h, a.pod.ip)))
    })?;
    check_cancelled()?;
    let mut added: Vec<(usize, IpAddr)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for outcome in outcomes.into_iter().flatten() {
        match outcome {
            Ok(pod) => added.push(pod),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if let Some(first) = failures.first() {
        bail!(
            "{} of {adding} pods could not be added; first: {first}",
            failures.len()
        );
    }
    let add_seconds = add_started.elapsed().as_secs_f64();

    // Stable = every pod answers from a pod on another host, then calico-node has gone quiet.
    let mut all: Vec<(usize, IpAddr)> = added;
    all.extend(existing.iter().filter_map(|p| {
        hosts
            .iter()
            .position(|h| h.name == p.host)
            .map(|h| (h, p.ip))
    }));
    let observers: Vec<&PodState> = hosts
        .iter()
        .take(2)
        .map(|h| lab.pod(&format!("{}-pod1", h.name)))
        .collect::<Result<_>>()?;
    let reach_started = Instant::now();
    let deadline = reach_started + REACH_ALL_LIMIT;
    // observer on host 0 checks the pods of hosts 1.., observer on host 1 the pods of host 0.
    let mut pending: Vec<BTreeSet<IpAddr>> = vec![
        all.iter()
            .filter(|(h, _)| *h != 0)
            .map(|(_, ip)| *ip)
            .collect(),
        all.iter()
            .filter(|(h, _)| *h == 0)
            .map(|(_, ip)| *ip)
            .collect(),
    ];
    loop {
        check_cancelled()?;
        for (observer, targets) in observers.iter().zip(pending.iter_mut()) {
            if !targets.is_empty() {
                let reached =
                    answering_from(&observer.namespace, targets.iter().copied().collect())?;
                targets.retain(|ip| !reached.contains(ip));
            }
        }
        let left: usize = pending.iter().map(BTreeSet::len).sum();
        if left == 0 {
            break;
        }
        if Instant::now() >= deadline {
            bail!("{left} pods still do not answer from another host after {REACH_ALL_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let reach_seconds = reach_started.elapsed().as_secs_f64();
    progress("resources: waiting for calico-node to go quiet");
    let settle_started = Instant::now();
    let mut quiet_in_a_row = 0;
    while quiet_in_a_row < 2 && settle_started.elapsed() < SETTLE_LIMIT {
        let sample = measure_window(&pids, Duration::from_secs(1))?;
        if sample.iter().all(|(cpu, _)| *cpu < QUIET_CPU_PERCENT) {
            quiet_in_a_row += 1;
        } else {
            quiet_in_a_row = 0;
        }
    }
    let settle_seconds = settle_started.elapsed().as_secs_f64();
    progress(format!(
        "resources: loaded, measuring {} s",
        args.cpu_window
    ));
    let loaded = measure_window(&pids, window)?;
    let loaded_max_mib = loaded.iter().map(|(_, u)| u.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    figures.push(Figure {
        name: "calico-node RSS, 3 hosts x pods (max)",
        result: format!("{loaded_max_mib:.1} MiB"),
        detail: format!(
            "{} pods per host; CPU {} % of a core over {} s{}",
            args.pods_per_host,
            loaded
                .iter()
                .map(|(c, _)| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join(" / "),
            args.cpu_window,
            if quiet_in_a_row < 2 {
                format!("; still busy after {SETTLE_LIMIT:?}")
            } else {
                String::new()
            }
        ),
        goal: None,
        met: None,
    });

    let mut table = Table::new(
        &format!(
            "lab: calico-node per host, idle and with {} pods per host ({adding} added in {add_seconds:.1} s; all answered after another {reach_seconds:.1} s; quiet after {settle_seconds:.1} s)",
            args.pods_per_host
        ),
        &[
            "host",
            "idle RSS MiB",
            "idle peak MiB",
            "idle CPU %",
            "loaded RSS MiB",
            "loaded peak MiB",
            "loaded CPU %",
        ],
    );
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    for ((host, (idle_cpu, idle_use)), (loaded_cpu, loaded_use)) in
        hosts.iter().zip(&idle).zip(&loaded)
    {
        table.push(vec![
            host.name.clone(),
            mib(idle_use.rss_kib),
            mib(idle_use.peak_rss_kib),
            format!("{idle_cpu:.2}"),
            mib(loaded_use.rss_kib),
            mib(loaded_use.peak_rss_kib),
            format!("{loaded_cpu:.2}"),
        ]);
    }
    Ok(table)
}

// ---------------------------------------------------------------------------------------------------------
// CNI ADD in a large lab against a 1-host lab.

/// Goal: an ADD in a large lab takes at most this many times as long as in a 1-host lab.
const CNI_SCALE_GOAL: f64 = 1.2;
const CNI_SCALE_FIGURE: &str = "CNI ADD p50, large lab / 1-host lab";

fn cni_scale_goal() -> Option<String> {
    Some(format!("<= {CNI_SCALE_GOAL:.1}x"))
}

/// CNI ADD wall time (the plugin process, IPAM and endpoint writes included) for `pods` pods added one
/// by one on node1 of a 1-host lab and of a `nodes`-host lab, in this run: every other host's
/// calico-node watches the same datastore, so what their wake-ups cost shows up as the difference.
///
/// Both labs are up together (each has its own datastore, so neither wakes for the other's writes)
/// and the ADDs alternate between them, which one goes first swapping every pod: load from outside
/// the benchmark (this is a shared 2-CPU machine) then falls on both series alike instead of on
/// whichever lab happened to run while it lasted. Each lab still gets the same `pods` ADDs in order.
fn cni_scale(tools: &Tools, nodes: usize, pods: usize) -> Result<(Figure, Table)> {
    progress(format!(
        "cni-scale: a 1-host and a {nodes}-host lab, {pods} pods one by one on each node1, alternating"
    ));
    let labs = [1, nodes]
        .into_iter()
        .map(|hosts| Lab::up(tools, hosts, 1).map(|(lab, _)| (hosts, lab)))
        .collect::<Result<Vec<_>>>()?;
    let mut rows: Vec<(usize, Vec<f64>)> = labs
        .iter()
        .map(|(hosts, _)| (*hosts, Vec::with_capacity(pods)))
        .collect();
    for i in 0..pods {
        let mut order = [0, 1];
        if i % 2 == 1 {
            order.reverse();
        }
        for which in order {
            let lab = &labs[which].1;
            let node1 = lab.host("node1")?;
            let added = add_pod(tools, lab, node1, &format!("node1-pod{}", i + 2))?;
            rows[which].1.push(added.plugin_took.as_secs_f64() * 1000.0);
        }
    }
    drop(labs);
    for (_, took) in &mut rows {
        took.sort_by(f64::total_cmp);
    }
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    let mut table = Table::new(
        &format!(
            "lab: CNI ADD wall time on node1, {pods} pods one by one, 1-host lab vs {nodes}-host lab"
        ),
        &["hosts", "n", "p50 ms", "p95 ms", "max ms"],
    );
    for (hosts, took) in &rows {
        table.push(vec![
            hosts.to_string(),
            took.len().to_string(),
            format!("{:.1}", p(took, 50.0)),
            format!("{:.1}", p(took, 95.0)),
            format!("{:.1}", p(took, 100.0)),
        ]);
    }
    let one = p(&rows[0].1, 50.0);
    let many = p(&rows[1].1, 50.0);
    let ratio = many / one;
    let figure = Figure {
        name: CNI_SCALE_FIGURE,
        result: format!("{ratio:.2}x"),
        detail: format!("{many:.1} ms with {nodes} hosts, {one:.1} ms with 1 host"),
        goal: cni_scale_goal(),
        met: Some(ratio <= CNI_SCALE_GOAL),
    };
    Ok((figure, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn blocks_are_slash_26() {
        let block = |s: &str| block_of(s.parse().unwrap()).unwrap().to_string();
        assert_eq!(block("198.19.0.63"), "198.19.0.0");
        assert_eq!(block("198.19.0.64"), "198.19.0.64");
        assert_eq!(block("198.19.1.130"), "198.19.1.128");
    }

    #[test]
    fn own_process_usage_is_readable() {
        let usage = read_usage(std::process::id()).unwrap();
        assert!(usage.rss_kib > 0);
        assert!(usage.peak_rss_kib >= usage.rss_kib);
    }
}
