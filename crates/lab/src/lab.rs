//! The commands: up, status, exec, ping, add-pod, del-pod, down.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::parallel;
use crate::paths::{self, Lab, find_binary, host_name, pod_name};
use crate::state::{
    DatastoreKind, DatastoreState, HostState, LabLock, Pids, PodPort, PodState, STAGES, State,
    Transport, UnderlayState,
};
use crate::tor::{self, Tor};
use crate::{
    Backend, DatastoreChoice, Encap, cni, datastore, namespaces, netns, node, probe, procs, reach,
    reflectors, serve, underlay,
};

/// Pods added at the same time (each is one plugin process).
const POD_WORKERS: usize = 8;
/// Upper bounds that keep the lab inside its address plan and the machine's patience.
const MAX_PODS_PER_NODE: usize = 250;

pub struct UpOptions {
    pub name: String,
    /// The hosts, in order (see [`host_names`]).
    pub host_names: Vec<String>,
    pub pods_per_node: usize,
    pub datastore: DatastoreChoice,
    pub encap: Encap,
    pub backend: Backend,
    /// The first this many hosts become route reflectors (0: the node-to-node mesh).
    pub route_reflectors: usize,
    /// L2 segments the hosts are spread over, routed by the underlay namespace.
    pub subnets: usize,
    /// A top-of-rack router in the underlay namespace, peering with every host.
    pub tor: Option<Tor>,
    /// BIG TCP on the underlay's links (pods inherit it through calico-node and the CNI plugin).
    pub big_tcp: bool,
    pub timeout: Duration,
    pub json: bool,
}

/// The hosts of `up`: `--node-names` (whose count `--nodes` must match when both are given), else
/// node1..N (N = `--nodes`, default 3).
pub fn host_names(nodes: Option<usize>, names: Option<Vec<String>>) -> Result<Vec<String>> {
    match names {
        Some(names) => {
            if let Some(n) = nodes.filter(|n| *n != names.len()) {
                bail!(
                    "--nodes {n} does not match the {} name(s) of --node-names",
                    names.len()
                );
            }
            paths::validate_host_names(&names)?;
            Ok(names)
        }
        None => Ok((1..=nodes.unwrap_or(3)).map(host_name).collect()),
    }
}

/// `println!` that ignores a closed stdout (`calico-lab status | head` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn progress(message: impl AsRef<str>) {
    eprintln!("==> {}", message.as_ref());
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn secs(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

/// The lab is up: its state file exists and so do its namespaces.
fn is_up(lab: &Lab) -> bool {
    match State::load(lab) {
        Ok(Some(state)) => {
            netns::exists(&state.underlay.namespace)
                && state.hosts.iter().all(|h| netns::exists(&h.namespace))
        }
        _ => false,
    }
}

/// Anything of this lab left on the machine.
fn has_leftovers(lab: &Lab) -> bool {
    !netns::with_prefix(&lab.prefix()).is_empty()
        || crate::state::exists(&lab.dir())
        || !procs::lab_processes(&lab.name).is_empty()
}

pub fn up(opts: &UpOptions) -> Result<ExitCode> {
    let lab = Lab::new(&opts.name)?;
    let mut created = false;
    build(opts, &mut created).map_err(|e| {
        if created && has_leftovers(&lab) {
            e.context(format!(
                "building lab {:?} failed; what was built is left for inspection (remove it with `calico-lab down --name {}`)",
                lab.name, lab.name
            ))
        } else {
            e
        }
    })
}

/// `created` turns true once something of the lab exists on the machine.
fn build(opts: &UpOptions, created: &mut bool) -> Result<ExitCode> {
    let started = Instant::now();
    let lab = Lab::new(&opts.name)?;
    let nodes = opts.host_names.len();
    if nodes == 0 || nodes > underlay::MAX_HOSTS {
        bail!("--nodes must be between 1 and {}", underlay::MAX_HOSTS);
    }
    paths::validate_host_names(&opts.host_names)?;
    if opts.route_reflectors > nodes {
        bail!(
            "--route-reflectors {} exceeds the {nodes} host(s)",
            opts.route_reflectors
        );
    }
    if opts.route_reflectors > 0 && opts.backend != Backend::Bird {
        bail!("--route-reflectors needs BGP: use --backend bird");
    }
    if opts.subnets == 0 || opts.subnets > underlay::MAX_SUBNETS {
        bail!("--subnets must be between 1 and {}", underlay::MAX_SUBNETS);
    }
    if opts.tor.is_some() && opts.backend != Backend::Bird {
        bail!("--tor peers over BGP: use --backend bird");
    }
    if opts.subnets > 1 && opts.encap == Encap::None && opts.tor.is_none() {
        bail!(
            "--subnets {} with --encap none: pods on different subnets are only reachable when the \
             router between them learns their routes; add --tor bird|frr, or use --encap vxlan or \
             vxlan-crosssubnet",
            opts.subnets
        );
    }
    if opts.pods_per_node > MAX_PODS_PER_NODE {
        bail!("--pods-per-node must be at most {MAX_PODS_PER_NODE}");
    }
    let calico_node = find_binary("calico-node")?;
    let plugin = find_binary("calico")?;
    paths::system_binary("ip", "iproute2")?;

    let _lock = LabLock::acquire(&lab)?;
    if is_up(&lab) {
        bail!(
            "lab {:?} is already up: remove it first with `calico-lab down --name {}`",
            lab.name,
            lab.name
        );
    }
    if has_leftovers(&lab) {
        progress(format!(
            "cleaning up leftovers of an earlier run of lab {:?}",
            lab.name
        ));
        teardown(&lab, true)?;
    }
    *created = true;
    std::fs::create_dir_all(lab.dir())
        .with_context(|| format!("creating {}", lab.dir().display()))?;

    let host_names = &opts.host_names;
    let mut timings = BTreeMap::new();

    // 1. Underlay.
    let stage = Instant::now();
    underlay::build_segments(&lab, host_names, opts.subnets, opts.big_tcp)?;
    let mut hosts = Vec::new();
    for (i, name) in host_names.iter().enumerate() {
        let dir = lab.host_dir(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        hosts.push(HostState {
            name: name.clone(),
            namespace: lab.ns(name),
            address: underlay::host_address_on(i + 1, opts.subnets)?.to_string(),
            state_dir: dir.display().to_string(),
            log: dir.join("calico-node.log").display().to_string(),
            cni_conf: dir.join("10-calico.conf").display().to_string(),
            calico_node_pid: None,
        });
    }
    let neighbours = if hosts.len() >= underlay::STATIC_NEIGHBOURS_FROM {
        let written = underlay::static_neighbours(&hosts, opts.subnets, opts.route_reflectors)?;
        format!(", {written} permanent ARP entries")
    } else {
        String::new()
    };
    timings.insert("underlay".to_string(), ms(stage.elapsed()));
    progress(format!(
        "underlay: {} hosts on {} in {}{neighbours} ({})",
        hosts.len(),
        underlay::BRIDGE,
        lab.underlay_ns(),
        secs(ms(stage.elapsed()))
    ));

    // 2. Datastore. The state is saved from here on, so `down` and `status` see what exists.
    let stage = Instant::now();
    let mut pids = Pids::default();
    let ds = match opts.datastore {
        DatastoreChoice::Embedded => datastore::init_embedded(&lab)?,
        DatastoreChoice::Etcd => {
            let etcd = datastore::start_etcd(&lab)?;
            pids.etcd = Some(etcd.pid);
            let namespaces: Vec<String> = hosts.iter().map(|h| h.namespace.clone()).collect();
            let relay = datastore::start_relay(&lab, etcd.port, &namespaces)?;
            pids.relay = Some(relay);
            DatastoreState {
                kind: DatastoreKind::Etcd,
                path: None,
                endpoint: Some(format!("http://127.0.0.1:{}", etcd.port)),
            }
        }
    };
    let mut state = State {
        name: lab.name.clone(),
        encap: opts.encap.name().to_string(),
        backend: Some(opts.backend.name().to_string()),
        route_reflectors: opts.route_reflectors,
        underlay: UnderlayState {
            namespace: lab.underlay_ns(),
            bridge: underlay::BRIDGE.to_string(),
            address: format!("{}/{}", underlay::GATEWAY, underlay::PREFIX_LEN),
        },
        datastore: ds,
        hosts,
        pods: Vec::new(),
        pids,
        timings_ms: BTreeMap::new(),
    };
    state.save(&lab)?;
    timings.insert("datastore".to_string(), ms(stage.elapsed()));
    progress(format!(
        "datastore: {} ({})",
        match state.datastore.kind {
            DatastoreKind::Embedded => format!(
                "embedded, {}",
                state.datastore.path.clone().unwrap_or_default()
            ),
            DatastoreKind::Etcd => format!(
                "etcd at {} (relayed into every host)",
                state.datastore.endpoint.clone().unwrap_or_default()
            ),
        },
        secs(ms(stage.elapsed()))
    ));

    // The pods' namespace, as kube-controllers would have synced it (its profile `kns.default`).
    namespaces::apply(
        &state.datastore,
        cni::POD_NAMESPACE,
        &std::collections::BTreeMap::new(),
    )?;

    // Route reflection's cluster-wide resources exist before calico-node starts, so the mesh never
    // comes up only to be torn down.
    if let Some(tor) = opts.tor {
        tor::configure(&state.datastore)?;
        let addresses = state
            .hosts
            .iter()
            .map(|h| h.address.parse())
            .collect::<Result<Vec<std::net::Ipv4Addr>, _>>()
            .context("a host address of the lab's state")?;
        tor::start(&lab, tor, &addresses, tor::HOST_AS)?;
        progress(format!(
            "ToR: {} in {} (AS {}), BGPPeer {} at {}",
            tor.name(),
            lab.underlay_ns(),
            tor::TOR_AS,
            tor::TOR_PEER,
            underlay::GATEWAY
        ));
    }
    if opts.route_reflectors > 0 {
        reflectors::configure_cluster(&state.datastore)?;
        progress(
            "BGPPeer peer-with-route-reflectors applied, BGPConfiguration default: nodeToNodeMeshEnabled false",
        );
    }

    // 3. calico-node on every host, all at once; with route reflectors, the reflectors first. A
    // reflector then learns each client's Node before the client's BGP speaker listens, so only the
    // client's connection succeeds: the two ends never connect at the same moment, which calico-rs's
    // speaker resolves badly (both connections lost, retried in step).
    let stage = Instant::now();
    let reflectors_first = opts.route_reflectors;
    let all = state.hosts.len();
    let waves: Vec<(usize, usize)> = if reflectors_first > 0 {
        vec![(0, reflectors_first), (reflectors_first, all)]
    } else {
        vec![(0, all)]
    };
    for (wave, (from, to)) in waves.into_iter().enumerate() {
        let range = from..to;
        for host in &mut state.hosts[range.clone()] {
            host.calico_node_pid = Some(node::start(
                &lab.name,
                &calico_node,
                host,
                &state.datastore,
                opts.encap,
                opts.backend,
            )?);
        }
        state.save(&lab)?;
        node::wait_ready(&state.hosts[range.clone()], opts.timeout)?;
        // The reflectors are chosen once their Nodes exist, before any client or pod does.
        if wave == 0 && reflectors_first > 0 {
            let chosen = &host_names[range];
            reflectors::make_reflectors(&state.datastore, chosen)?;
            progress(format!(
                "route reflectors: {} labelled {}={}, routeReflectorClusterID {}",
                chosen.join(", "),
                reflectors::LABEL.0,
                reflectors::LABEL.1,
                reflectors::CLUSTER_ID,
            ));
        }
    }
    timings.insert("calico_node".to_string(), ms(stage.elapsed()));
    progress(format!(
        "calico-node: ready on {} hosts ({})",
        state.hosts.len(),
        secs(ms(stage.elapsed()))
    ));

    // 4. Pods through the CNI plugin.
    let stage = Instant::now();
    for host in &state.hosts {
        cni::write_config(host, &state.datastore)?;
    }
    let wanted: Vec<(usize, String)> = state
        .hosts
        .iter()
        .enumerate()
        .flat_map(|(h, host)| (1..=opts.pods_per_node).map(move |j| (h, pod_name(&host.name, j))))
        .collect();
    let added = add_pods(&plugin, &lab, &state.hosts, wanted)?;
    let mut failures = Vec::new();
    for result in added {
        match result {
            Ok(pod) => state.pods.push(pod),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    sort_pods(&mut state.pods, &state.hosts);
    state.save(&lab)?;
    if !failures.is_empty() {
        bail!(
            "{} pod(s) could not be added:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    timings.insert("pods".to_string(), ms(stage.elapsed()));
    progress(format!(
        "pods: {} added through the calico CNI plugin ({})",
        state.pods.len(),
        secs(ms(stage.elapsed()))
    ));

    // 5. Every pod reaches every other pod.
    let stage = Instant::now();
    let unreachable = reach::full_mesh(&state.pods, opts.timeout)?;
    if !unreachable.is_empty() {
        let shown: Vec<String> = unreachable
            .iter()
            .take(30)
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect();
        bail!(
            "{} of {} pod pairs cannot reach each other after {:?}:\n  {}{}",
            unreachable.len(),
            state.pods.len() * state.pods.len().saturating_sub(1),
            opts.timeout,
            shown.join("\n  "),
            if unreachable.len() > shown.len() {
                "\n  ..."
            } else {
                ""
            }
        );
    }
    timings.insert("reachability".to_string(), ms(stage.elapsed()));
    let pairs = state.pods.len() * state.pods.len().saturating_sub(1);
    progress(format!(
        "reachability: all {pairs} pod pairs answer ({})",
        secs(ms(stage.elapsed()))
    ));

    timings.insert("total".to_string(), ms(started.elapsed()));
    state.timings_ms = timings;
    state.save(&lab)?;
    if opts.json {
        say!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        print_summary(&state);
    }
    Ok(ExitCode::SUCCESS)
}

/// Pods in host order (as the hosts were given), then by pod number.
fn sort_pods(pods: &mut [PodState], hosts: &[HostState]) {
    let key = |p: &PodState| {
        let host_index = hosts
            .iter()
            .position(|h| h.name == p.host)
            .unwrap_or(usize::MAX);
        let pod_index: usize = p
            .name
            .rsplit_once("-pod")
            .and_then(|(_, j)| j.parse().ok())
            .unwrap_or(usize::MAX);
        (host_index, pod_index)
    };
    pods.sort_by_key(key);
}

/// Adds pods (host index, pod name), [`POD_WORKERS`] at a time; one result per pod.
fn add_pods(
    plugin: &Path,
    lab: &Lab,
    hosts: &[HostState],
    wanted: Vec<(usize, String)>,
) -> Result<Vec<Result<PodState>>> {
    let prefix = lab.prefix();
    parallel::map(wanted, POD_WORKERS, |(h, pod)| {
        cni::add_pod(plugin, &prefix, &hosts[h], cni::POD_NAMESPACE, &pod).map(|added| added.pod)
    })
}

fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
                .collect();
            cells.join("   ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_summary(state: &State) {
    say!(
        "\nlab {:?} is up: {} hosts, {} pods, datastore {}, encapsulation {}, backend {}{}\n",
        state.name,
        state.hosts.len(),
        state.pods.len(),
        match state.datastore.kind {
            DatastoreKind::Embedded => "embedded",
            DatastoreKind::Etcd => "etcd",
        },
        state.encap,
        state.backend.as_deref().unwrap_or("-"),
        match state.route_reflectors {
            0 => String::new(),
            n => format!(", {n} route reflector(s)"),
        }
    );
    let mut rows = vec![vec![
        "HOST".to_string(),
        "NAMESPACE".into(),
        "ADDRESS".into(),
        "LOG".into(),
    ]];
    for h in &state.hosts {
        rows.push(vec![
            h.name.clone(),
            h.namespace.clone(),
            h.address.clone(),
            h.log.clone(),
        ]);
    }
    say!("{}\n", table(&rows));
    let mut rows = vec![vec![
        "POD".to_string(),
        "HOST".into(),
        "ADDRESS".into(),
        "NAMESPACE".into(),
    ]];
    for p in &state.pods {
        rows.push(vec![
            p.name.clone(),
            p.host.clone(),
            p.ip.to_string(),
            p.namespace.clone(),
        ]);
    }
    say!("{}\n", table(&rows));
    let timings: Vec<String> = STAGES
        .iter()
        .filter_map(|k| {
            state
                .timings_ms
                .get(*k)
                .map(|v| format!("{} {}", k.replace('_', "-"), secs(*v)))
        })
        .collect();
    say!("time: {}\n", timings.join(", "));
    let calicoctl = find_binary("calicoctl")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "calicoctl (not built: cargo build --workspace)".to_string());
    say!(
        "calicoctl against this lab:\n  {}\n  {calicoctl} get nodes\n",
        state.datastore.export_line()
    );
    let name_flag = if state.name == "lab" {
        String::new()
    } else {
        format!(" --name {}", state.name)
    };
    if let (Some(a), Some(b)) = (state.pods.first(), state.pods.last()) {
        say!("try:\n  calico-lab ping{name_flag} {} {}", a.name, b.name);
        say!("  calico-lab exec{name_flag} {} -- ip route", a.name);
    }
    say!("  calico-lab status{name_flag}\n  calico-lab down{name_flag}");
}

/// Each host's last status report (Felix's `time`, `uptime`, `first_update`), by host name; hosts
/// without one (never reported, or dead for longer than the report's TTL) are absent. A datastore that
/// cannot be read gives no reports and a warning, not a failed status.
fn last_status_reports(state: &State) -> BTreeMap<String, Value> {
    let cfg = datastore::config(&state.datastore);
    let read = || -> Result<BTreeMap<String, Value>> {
        datastore::runtime()?.block_on(async {
            let store = cfg
                .connect(calico_datastore::config::OpenMode::MustExist)
                .await
                .context("connecting to the datastore")?;
            let mut reports = BTreeMap::new();
            for host in &state.hosts {
                let key = calico_datastore::keys::felix_status_key(&host.name);
                if let Some(kv) = store
                    .get(&key)
                    .await
                    .with_context(|| format!("reading {key}"))?
                {
                    let report: Value = serde_json::from_slice(&kv.value)
                        .with_context(|| format!("{key} is not JSON"))?;
                    reports.insert(host.name.clone(), report);
                }
            }
            Ok(reports)
        })
    };
    read().unwrap_or_else(|e| {
        eprintln!("warning: cannot read the hosts' status reports: {e:#}");
        BTreeMap::new()
    })
}

pub fn status(name: &str, json_out: bool) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    let state = State::load_required(&lab)?;
    let lab_name = lab.name.as_str();
    let checks: Vec<(bool, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = state
            .hosts
            .iter()
            .map(|h| {
                scope.spawn(move || {
                    let running = h
                        .calico_node_pid
                        .is_some_and(|pid| procs::alive(pid) && procs::belongs_to(pid, lab_name));
                    (running, running && node::ready(h))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((false, false)))
            .collect()
    });
    let alive =
        |pid: Option<u32>| pid.is_some_and(|p| procs::alive(p) && procs::belongs_to(p, &lab.name));
    let reports = last_status_reports(&state);
    if json_out {
        let mut value = serde_json::to_value(&state)?;
        if let Some(hosts) = value.get_mut("hosts").and_then(Value::as_array_mut) {
            for (h, (running, ready)) in hosts.iter_mut().zip(&checks) {
                if let Value::Object(map) = h {
                    map.insert("calico_node_running".into(), json!(running));
                    map.insert("calico_node_ready".into(), json!(ready));
                    let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
                    let report = reports.get(name).cloned().unwrap_or(Value::Null);
                    map.insert("last_status_report".into(), report);
                }
            }
        }
        if let Some(pods) = value.get_mut("pods").and_then(Value::as_array_mut) {
            for p in pods.iter_mut() {
                let exists = p
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_some_and(netns::exists);
                if let Value::Object(map) = p {
                    map.insert("namespace_exists".into(), json!(exists));
                }
            }
        }
        if let Value::Object(map) = &mut value {
            map.insert("etcd_running".into(), json!(alive(state.pids.etcd)));
            map.insert("relay_running".into(), json!(alive(state.pids.relay)));
            map.insert(
                "calicoctl_env".into(),
                json!(
                    state
                        .datastore
                        .env()
                        .into_iter()
                        .collect::<BTreeMap<_, _>>()
                ),
            );
        }
        say!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut rows = vec![vec![
        "HOST".to_string(),
        "ADDRESS".into(),
        "CALICO-NODE".into(),
        "READY".into(),
        "LAST REPORT".into(),
        "NAMESPACE".into(),
    ]];
    for (h, (running, ready)) in state.hosts.iter().zip(&checks) {
        rows.push(vec![
            h.name.clone(),
            h.address.clone(),
            if *running {
                format!("running (pid {})", h.calico_node_pid.unwrap_or_default())
            } else {
                "not running".into()
            },
            yes_no(*ready),
            reports
                .get(&h.name)
                .and_then(|r| r.get("time"))
                .and_then(Value::as_str)
                .unwrap_or("none")
                .to_string(),
            h.namespace.clone(),
        ]);
    }
    say!(
        "lab {:?}: datastore {}",
        state.name,
        state.datastore.export_line()
    );
    if state.datastore.kind == DatastoreKind::Etcd {
        say!(
            "etcd {}, relay {}",
            if alive(state.pids.etcd) {
                "running"
            } else {
                "NOT running"
            },
            if alive(state.pids.relay) {
                "running"
            } else {
                "NOT running"
            }
        );
    }
    say!("\n{}\n", table(&rows));
    let mut rows = vec![vec![
        "POD".to_string(),
        "HOST".into(),
        "ADDRESS".into(),
        "LABELS".into(),
    ]];
    for p in &state.pods {
        let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(vec![
            p.name.clone(),
            p.host.clone(),
            p.ip.to_string(),
            labels.join(","),
        ]);
    }
    say!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// The namespace of `target`: `underlay`, a host or a pod of the lab.
fn target_namespace(lab: &Lab, target: &str) -> Result<String> {
    let ns = if target == "underlay" {
        lab.underlay_ns()
    } else {
        lab.ns(target)
    };
    if target.is_empty() || target.contains('/') || !netns::exists(&ns) {
        let known: Vec<String> = netns::with_prefix(&lab.prefix())
            .into_iter()
            .map(|n| {
                let member = n.trim_start_matches(&lab.prefix()).to_string();
                if member == "ul" {
                    "underlay".to_string()
                } else {
                    member
                }
            })
            .collect();
        bail!(
            "no pod or host {target:?} in lab {:?}{}",
            lab.name,
            if known.is_empty() {
                " (the lab is not up)".to_string()
            } else {
                format!("; known: {}", known.join(", "))
            }
        );
    }
    Ok(ns)
}

fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Killed by a signal: the shell convention.
        None => ExitCode::from(
            128u8.wrapping_add(
                std::os::unix::process::ExitStatusExt::signal(&status)
                    .and_then(|s| u8::try_from(s).ok())
                    .unwrap_or(1),
            ),
        ),
    }
}

pub fn exec(name: &str, target: &str, command: &[String]) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    let ns = target_namespace(&lab, target)?;
    let (program, args) = command.split_first().context("no command given")?;
    let mut cmd = netns::exec_command(&ns, program)?;
    // A host is set up as a Calico host is for its operator: calicoctl on the PATH (the lab's own
    // directory first), configured for the lab's datastore, and its own state dir, where `calicoctl
    // node status` finds that host's calico-node.
    if let Some(state) = State::load(&lab).ok().flatten()
        && let Some(host) = state.host(target)
    {
        cmd.env(
            calico_contracts::node_status::STATE_DIR_ENV,
            &host.state_dir,
        );
        cmd.env_remove("ETCD_ENDPOINTS")
            .env_remove("CALICO_DATASTORE_PATH");
        for (key, value) in state.datastore.env() {
            cmd.env(key, value);
        }
        if let Some(path) = path_with_lab_dir() {
            cmd.env("PATH", path);
        }
    }
    let status = cmd
        .args(args)
        .status()
        .with_context(|| format!("running {program} in {ns}"))?;
    Ok(exit_code_of(status))
}

/// `$PATH` with calico-lab's own directory (where the workspace's `calicoctl` is built) in front.
fn path_with_lab_dir() -> Option<std::ffi::OsString> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir).chain(std::env::split_paths(&rest).collect::<Vec<_>>());
    std::env::join_paths(dirs).ok()
}

pub fn ping(name: &str, from: &str, to: &str) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    let state = State::load_required(&lab)?;
    let source = state
        .pod(from)
        .with_context(|| format!("no pod {from:?} in lab {:?}", lab.name))?;
    let dest = state
        .pod(to)
        .with_context(|| format!("no pod {to:?} in lab {:?}", lab.name))?;
    // iputils' ping if installed, else busybox's.
    let mut cmd = match paths::system_binary("ping", "iputils-ping") {
        Ok(ping) => netns::exec_command(&source.namespace, ping)?,
        Err(_) => {
            let busybox = paths::system_binary("busybox", "busybox-static")
                .context("neither ping nor busybox is installed")?;
            let mut c = netns::exec_command(&source.namespace, busybox)?;
            c.arg("ping");
            c
        }
    };
    say!(
        "{} ({}) -> {} ({})",
        source.name,
        source.ip,
        dest.name,
        dest.ip
    );
    let status = cmd
        .args(["-c", "3", "-W", "2", &dest.ip.to_string()])
        .status()
        .context("running ping")?;
    Ok(exit_code_of(status))
}

/// What `calico-lab add-pod` takes besides the host.
#[derive(Clone, Debug, Default)]
pub struct NewPod {
    /// `k=v,k2=v2`
    pub labels: Option<String>,
    /// The Kubernetes namespace (default `default`).
    pub namespace: Option<String>,
    /// Named ports: `name=port/proto,...`
    pub ports: Option<String>,
}

pub fn add_pod(name: &str, host: &str, new: &NewPod) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    let labels = new
        .labels
        .as_deref()
        .map(cni::parse_labels)
        .transpose()?
        .unwrap_or_default();
    let ports = new
        .ports
        .as_deref()
        .map(PodPort::parse_list)
        .transpose()?
        .unwrap_or_default();
    let k8s_namespace = new.namespace.as_deref().unwrap_or(cni::POD_NAMESPACE);
    paths::validate_k8s_namespace(k8s_namespace)?;
    let plugin = find_binary("calico")?;
    let _lock = LabLock::acquire(&lab)?;
    let mut state = State::load_required(&lab)?;
    if !namespaces::exists(&state.datastore, k8s_namespace)? {
        bail!(
            "namespace {k8s_namespace:?} does not exist in lab {:?}: create it first with `calico-lab add-namespace {k8s_namespace}`",
            lab.name
        );
    }
    let host_state = state
        .host(host)
        .with_context(|| {
            let hosts: Vec<&str> = state.hosts.iter().map(|h| h.name.as_str()).collect();
            format!(
                "no host {host:?} in lab {:?}; hosts: {}",
                lab.name,
                hosts.join(", ")
            )
        })?
        .clone();
    let next = (1..)
        .map(|j| pod_name(host, j))
        .find(|p| state.pod(p).is_none() && !netns::exists(&lab.ns(p)))
        .context("no free pod name")?;
    let mut pod = cni::add_pod(&plugin, &lab.prefix(), &host_state, k8s_namespace, &next)?.pod;
    if !labels.is_empty() || !ports.is_empty() {
        if let Err(failed) = cni::annotate_pod(&state.datastore, &pod, &labels, &ports) {
            // The pod is not in the state file yet: take it down rather than leave it unknown to the lab.
            let undone = cni::del_pod(&plugin, &host_state, &pod, Duration::from_secs(60))
                .and_then(|()| netns::delete(std::slice::from_ref(&pod.namespace)));
            return Err(match undone {
                Ok(()) => failed,
                Err(e) => failed.context(format!("removing {} again also failed: {e:#}", pod.name)),
            });
        }
        pod.labels = labels;
        pod.ports = ports;
    }
    say!("{} {}", pod.name, pod.ip);
    state.pods.push(pod);
    sort_pods(&mut state.pods, &state.hosts);
    state.save(&lab)?;
    Ok(ExitCode::SUCCESS)
}

/// `calico-lab add-namespace`: a Kubernetes namespace (the profile `kns.<name>`), created or its labels
/// replaced.
pub fn add_namespace(name: &str, namespace: &str, labels: Option<&str>) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    paths::validate_k8s_namespace(namespace)?;
    let labels = labels
        .map(cni::parse_labels)
        .transpose()?
        .unwrap_or_default();
    let _lock = LabLock::acquire(&lab)?;
    let state = State::load_required(&lab)?;
    namespaces::apply(&state.datastore, namespace, &labels)?;
    say!(
        "namespace {namespace} (profile {}{namespace})",
        calico_api::k8s::PROFILE_NAME_PREFIX
    );
    Ok(ExitCode::SUCCESS)
}

/// What `calico-lab probe` takes.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    pub port: u16,
    pub protocol: Transport,
    /// Pod names; all pods when empty.
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub limit: Duration,
    pub json: bool,
}

/// `calico-lab probe`: starts the probe servers of the target pods that have none running, then
/// probes every pair and prints the matrix.
pub fn probe(name: &str, opts: &ProbeOptions) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    let (from, to) = {
        let _lock = LabLock::acquire(&lab)?;
        let mut state = State::load_required(&lab)?;
        let pick = |names: &[String]| -> Result<Vec<PodState>> {
            if names.is_empty() {
                return Ok(state.pods.clone());
            }
            names
                .iter()
                .map(|n| {
                    state.pod(n).cloned().with_context(|| {
                        format!(
                            "no pod {n:?} in lab {:?} (calico-lab status lists them)",
                            lab.name
                        )
                    })
                })
                .collect()
        };
        let from = pick(&opts.from)?;
        let to = pick(&opts.to)?;
        // Servers not running yet are started together (each waits until it listens).
        let missing: Vec<&PodState> = to
            .iter()
            .filter(|t| {
                !t.server_pid
                    .is_some_and(|pid| procs::belongs_to(pid, &lab.name))
            })
            .collect();
        if !missing.is_empty() {
            let started = parallel::map(missing, POD_WORKERS, |pod| {
                serve::start(&lab, pod).map(|pid| (pod.name.clone(), pid))
            })?;
            // Every server that did start is recorded before a failure is reported.
            let mut failed = None;
            for result in started {
                match result {
                    Ok((name, pid)) => {
                        if let Some(p) = state.pods.iter_mut().find(|p| p.name == name) {
                            p.server_pid = Some(pid);
                        }
                    }
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            state.save(&lab)?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        (from, to)
    };
    let matrix = probe::probe(&from, &to, opts.protocol, opts.port, opts.limit)?;
    if opts.json {
        say!("{}", serde_json::to_string_pretty(&matrix)?);
    } else {
        say!("{}", matrix.render().trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn del_pod(name: &str, pod: &str) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    let plugin = find_binary("calico")?;
    let _lock = LabLock::acquire(&lab)?;
    let mut state = State::load_required(&lab)?;
    let pod_state = state
        .pod(pod)
        .with_context(|| format!("no pod {pod:?} in lab {:?}", lab.name))?
        .clone();
    let host = state
        .host(&pod_state.host)
        .with_context(|| format!("pod {pod} names an unknown host {:?}", pod_state.host))?;
    // Its probe server holds sockets in the pod's namespace: stopped first, so the namespace goes.
    serve::stop(&lab, &pod_state);
    cni::del_pod(&plugin, host, &pod_state, Duration::from_secs(60))?;
    netns::delete(std::slice::from_ref(&pod_state.namespace))?;
    state.pods.retain(|p| p.name != pod);
    state.save(&lab)?;
    say!("{pod} deleted");
    Ok(ExitCode::SUCCESS)
}

/// Stop one host's calico-node (SIGTERM, or SIGKILL as in a crash) and start it again; the new process
/// reconciles the kernel it finds instead of rebuilding it.
pub fn restart_node(name: &str, host_name: &str, kill: bool) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    let binary = find_binary("calico-node")?;
    let _lock = LabLock::acquire(&lab)?;
    let mut state = State::load_required(&lab)?;
    let host = state
        .host(host_name)
        .with_context(|| format!("no host {host_name:?} in lab {:?}", lab.name))?
        .clone();
    if let Some(pid) = host
        .calico_node_pid
        .filter(|pid| procs::belongs_to(*pid, &lab.name))
    {
        if kill {
            procs::kill_now(&[pid]);
        } else {
            procs::stop(&[pid], Duration::from_secs(5));
        }
    }
    let started = Instant::now();
    let encap = Encap::from_name(&state.encap).with_context(|| {
        format!(
            "the lab's state names an unknown encapsulation {:?}",
            state.encap
        )
    })?;
    let backend = match &state.backend {
        Some(name) => Backend::from_name(name)
            .with_context(|| format!("the lab's state names an unknown backend {name:?}"))?,
        None => encap.default_backend(),
    };
    let pid = node::start(&lab.name, &binary, &host, &state.datastore, encap, backend)?;
    let restarted = {
        let h = state
            .hosts
            .iter_mut()
            .find(|h| h.name == host_name)
            .context("host vanished from the state")?;
        h.calico_node_pid = Some(pid);
        h.clone()
    };
    state.save(&lab)?;
    node::wait_ready(std::slice::from_ref(&restarted), Duration::from_secs(60))?;
    say!(
        "calico-node on {host_name} restarted (pid {pid}, ready in {:.2}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn down(name: &str) -> Result<ExitCode> {
    let lab = Lab::new(name)?;
    let _lock = LabLock::acquire(&lab)?;
    teardown(&lab, false)?;
    // Nothing waits on a lab that is gone; a waiter that raced us just locks a fresh file.
    let _ = std::fs::remove_file(lab.lock_file());
    Ok(ExitCode::SUCCESS)
}

/// Removes everything of `lab`: pods (CNI DEL, best effort), processes, namespaces, the state directory.
/// Works from the state file when it is readable and finds the rest by name and marker.
fn teardown(lab: &Lab, quiet: bool) -> Result<()> {
    let state = match State::load(lab) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("warning: {e:#}; cleaning up by name instead");
            None
        }
    };
    let mut released = 0;
    if let Some(state) = &state {
        released = release_pods(lab, state);
    }

    let mut pids = procs::lab_processes(&lab.name);
    if let Some(state) = &state {
        let recorded = state
            .hosts
            .iter()
            .filter_map(|h| h.calico_node_pid)
            .chain(state.pids.etcd)
            .chain(state.pids.relay);
        for pid in recorded {
            // A recorded pid may have been reused by an unrelated process: only ours are stopped.
            if procs::belongs_to(pid, &lab.name) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    procs::stop(&pids, Duration::from_secs(5));
    let survivors: Vec<u32> = pids.iter().copied().filter(|p| procs::alive(*p)).collect();

    let namespaces = netns::with_prefix(&lab.prefix());
    netns::delete(&namespaces)?;

    let dir = lab.dir();
    if crate::state::exists(&dir) {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    if !survivors.is_empty() {
        bail!(
            "processes of lab {:?} did not stop: {survivors:?}",
            lab.name
        );
    }
    if !quiet {
        say!(
            "lab {:?} is down: {} pod(s) released, {} process(es) stopped, {} namespace(s) removed",
            lab.name,
            released,
            pids.len(),
            namespaces.len()
        );
    }
    Ok(())
}

/// CNI DEL for every pod whose host still exists, in parallel with short limits; returns how many
/// succeeded. Failures are warnings: the namespaces go anyway.
fn release_pods(lab: &Lab, state: &State) -> usize {
    if state.pods.is_empty() {
        return 0;
    }
    let Ok(plugin) = find_binary("calico") else {
        eprintln!("warning: the calico CNI plugin is missing; pods are removed without CNI DEL");
        return 0;
    };
    let store_alive = match state.datastore.kind {
        DatastoreKind::Embedded => true,
        DatastoreKind::Etcd => {
            let up = |pid: Option<u32>| {
                pid.is_some_and(|p| procs::alive(p) && procs::belongs_to(p, &lab.name))
            };
            up(state.pids.etcd) && up(state.pids.relay)
        }
    };
    if !store_alive {
        return 0;
    }
    let released = parallel::map(state.pods.iter().collect(), POD_WORKERS, |pod| {
        let Some(host) = state
            .host(&pod.host)
            .filter(|h| netns::exists(&h.namespace))
        else {
            return false;
        };
        match cni::del_pod(&plugin, host, pod, Duration::from_secs(10)) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("warning: {e:#}");
                false
            }
        }
    });
    match released {
        Ok(released) => released.into_iter().filter(|done| *done).count(),
        Err(e) => {
            eprintln!("warning: {e:#}; pods are removed without CNI DEL");
            0
        }
    }
}
