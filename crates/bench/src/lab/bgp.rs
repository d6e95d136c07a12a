//! The `lab` section's BGP-mode parts (Calico's BGP mode: `--encap none`, calico-node's own BGP speaker
//! writing `<block> via <host> dev eth0 proto bird` routes).
//!
//! - `bgp-throughput`: the throughput figure of the VXLAN part ([`super::throughput`]) on a 2-host lab
//!   built with `calico-lab up --encap none`: pod-to-pod over the `proto bird` route vs the underlay.
//! - `bgp-mesh-scale`, `bgp-rr-scale`, `bgp-new-block`: labs built here from calico-lab's own pieces
//!   (underlay, embedded datastore, `calico_lab::node::start`), because what is measured starts with the
//!   calico-nodes: before any starts, the bench writes into the datastore with the libraries the default
//!   IPPool (as calico-node would create it), one block per host claimed through IPAM (`Ipam::assign_ip`
//!   for the host: the block, its affinity and an allocation, as a pod's ADD makes, without the pod's
//!   namespace), and for route reflection the Nodes of the reflectors (label `route-reflector=true`,
//!   `spec.bgp.routeReflectorClusterID: 244.0.0.1`), a BGPPeer `nodeSelector: all()`, `peerSelector:
//!   route-reflector == 'true'` and BGPConfiguration `default` with `nodeToNodeMeshEnabled: false`.
//!   The state file is written as `calico-lab up` writes it, so `calico-lab status/exec/down --name`
//!   work on these labs, and a drop guard runs `calico-lab down`.
//!
//! Every host gets permanent ARP entries for its BGP peers first (see
//! [`calico_lab::underlay::static_neighbours`]: the
//! kernel's ARP table limit is shared by every namespace on the machine).
//!
//! Routes are watched with one thread per host holding a NETLINK_ROUTE socket opened in that host's
//! namespace and subscribed to RTNLGRP_IPV4_ROUTE (what `ip monitor route` listens to): every RTM_NEWROUTE
//! with protocol bird (12) in the main table is stamped with the time the thread received it; the first
//! stamp per prefix counts. The monitors start before any calico-node, so nothing is missed; at the end a
//! netlink dump of every host confirms the routes are still there.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use calico_api::resource::Resource;
use calico_datastore::client::Client;
use calico_datastore::config::OpenMode;
use calico_ipam::Ipam;
use calico_lab::Encap;
use calico_lab::state::{DatastoreState, Pids, UnderlayState};
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use serde_json::json;

use super::*;

const NEW_BLOCK_P99_GOAL_MS: f64 = 100.0;
const MESH_CONVERGE_GOAL_SECONDS: f64 = 10.0;
const MESH_RSS_GOAL_MIB: f64 = 20.0;
const RR_CONVERGE_GOAL_SECONDS: f64 = 20.0;
/// How long one new block may take to reach every host before the trial counts it as missing.
const NEW_BLOCK_LIMIT: Duration = Duration::from_secs(10);
/// Quiet time between new-block trials, so one trial's updates do not queue behind the last one's.
const NEW_BLOCK_GAP: Duration = Duration::from_millis(500);
/// The route reflectors' cluster id (as in Calico's docs).
const RR_CLUSTER_ID: &str = "244.0.0.1";
/// `RTNLGRP_IPV4_ROUTE` from linux/rtnetlink.h.
const RTNLGRP_IPV4_ROUTE: u32 = 7;
/// Monitors' socket receive buffer: a full mesh's convergence is a burst of thousands of routes.
const MONITOR_RCVBUF: usize = 16 << 20;
const NETLINK_HEADER_LEN: usize = 16;

pub(super) fn figures(
    tools: &Tools,
    args: &LabArgs,
    figures: &mut Vec<Figure>,
    details: &mut String,
) {
    if args.wants(Part::BgpThroughput) {
        // The kernel's default 64 KiB GSO packets, then an underlay with BIG TCP that pods inherit.
        for (path, extra) in [
            (PodPath::Bgp, &[][..]),
            (PodPath::BgpBigTcp, &["--big-tcp"][..]),
        ] {
            progress(format!(
                "bgp-throughput: 2 hosts x 1 pod, --encap none {}: up",
                extra.join(" ")
            ));
            match Lab::up_with(tools, 2, 1, Encap::None, extra) {
                Ok((lab, _)) => {
                    progress(format!(
                        "bgp-throughput: {} x {} s per path",
                        args.iperf_runs, args.iperf_seconds
                    ));
                    match throughput(tools, &lab, args, path) {
                        Ok((figure, table)) => {
                            figures.push(figure);
                            details.push_str(&table.render());
                        }
                        Err(e) => {
                            figures.push(Figure::failed(path.figure_name(), path.goal_text(), &e))
                        }
                    }
                    drop(lab);
                }
                Err(e) => figures.push(Figure::failed(path.figure_name(), path.goal_text(), &e)),
            }
        }
    }
    if args.wants(Part::BgpNewBlock) && args.new_block_hosts >= 2 {
        let name = NEW_BLOCK_FIGURE;
        match new_block(tools, args) {
            Ok((figure, text)) => {
                figures.push(figure);
                details.push_str(&text);
            }
            Err(e) => figures.push(Figure::failed(name, new_block_goal(), &e)),
        }
    }
    if args.wants(Part::BgpMeshScale) && args.mesh_hosts >= 2 {
        match mesh_scale(tools, args) {
            Ok((found, text)) => {
                figures.extend(found);
                details.push_str(&text);
            }
            Err(e) => {
                figures.push(Figure::failed(MESH_CONVERGE_FIGURE, mesh_goal(), &e));
                figures.push(Figure::failed(MESH_RSS_FIGURE, mesh_rss_goal(), &e));
            }
        }
    }
    if args.wants(Part::BgpRrScale) && args.rr_hosts >= 2 {
        match rr_scale(tools, args) {
            Ok((figure, text)) => {
                figures.push(figure);
                details.push_str(&text);
            }
            Err(e) => figures.push(Figure::failed(RR_CONVERGE_FIGURE, rr_goal(), &e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Watching routes.

/// Shared between a monitor thread and the bench.
#[derive(Default)]
struct Seen {
    /// First time each `proto bird` prefix was seen added.
    first: Mutex<HashMap<Ipv4Net, Instant>>,
    /// The kernel dropped notifications (ENOBUFS): a dump fills the gap.
    overruns: AtomicU64,
    stop: AtomicBool,
}

/// One thread per host namespace stamping `proto bird` route additions.
struct RouteMonitor {
    host: String,
    namespace: String,
    seen: Arc<Seen>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn bird_route_prefix(message: &RouteMessage) -> Option<Ipv4Net> {
    if message.header.protocol != RouteProtocol::Bird
        || u32::from(message.header.table) != calico_netlink::TABLE_MAIN
            && !message
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Table(t) if *t == calico_netlink::TABLE_MAIN))
    {
        return None;
    }
    message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(addr)) => {
            Ipv4Net::new(*addr, message.header.destination_prefix_length).ok()
        }
        _ => None,
    })
}

/// The `proto bird` prefixes now in the main table of `namespace`.
fn bird_routes_now(namespace: &str) -> Result<BTreeSet<Ipv4Net>> {
    let ns = calico_lab::netns::open(namespace)?;
    let mut nl = calico_netlink::Netlink::in_netns(&ns)?;
    Ok(nl
        .routes(calico_netlink::Family::V4, Some(calico_netlink::TABLE_MAIN))?
        .into_iter()
        .filter(|r| r.protocol == calico_contracts::route::PROTO_BGP)
        .filter_map(|r| match r.dst {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .collect())
}

impl RouteMonitor {
    fn start(host: &str, namespace: &str) -> Result<RouteMonitor> {
        let ns = calico_lab::netns::open(namespace)?;
        let socket = ns
            .run(|| -> std::io::Result<netlink_sys::Socket> {
                let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
                socket.bind_auto()?;
                socket.add_membership(RTNLGRP_IPV4_ROUTE)?;
                let _ = socket.set_rx_buf_sz(MONITOR_RCVBUF);
                Ok(socket)
            })?
            .with_context(|| format!("subscribing to route changes in {namespace}"))?;
        let timeout = nix::sys::time::TimeVal::new(0, 200_000);
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
            .context("setting the monitor's receive timeout")?;
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        let ns_name = namespace.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("mon-{host}"))
            .stack_size(256 << 10)
            .spawn(move || monitor_loop(&socket, &shared, &ns_name))
            .context("starting a route monitor thread")?;
        Ok(RouteMonitor {
            host: host.to_string(),
            namespace: namespace.to_string(),
            seen,
            thread: Some(thread),
        })
    }

    /// When `prefix` was first seen on this host.
    fn first_seen(&self, prefix: &Ipv4Net) -> Option<Instant> {
        self.seen.first.lock().ok()?.get(prefix).copied()
    }

    /// The latest first-seen time over `wanted`, if every one was seen.
    fn all_seen_at(&self, wanted: &[Ipv4Net]) -> Option<Instant> {
        let first = self.seen.first.lock().ok()?;
        if first.len() < wanted.len() {
            return None;
        }
        wanted
            .iter()
            .map(|p| first.get(p).copied())
            .try_fold(None::<Instant>, |latest, t| {
                t.map(|t| Some(latest.map_or(t, |l| l.max(t))))
            })
            .flatten()
    }

    fn count(&self) -> usize {
        self.seen.first.lock().map(|f| f.len()).unwrap_or(0)
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        self.seen.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn monitor_loop(socket: &netlink_sys::Socket, seen: &Seen, namespace: &str) {
    while !seen.stop.load(Ordering::Relaxed) {
        let datagram = match socket.recv_from_full() {
            Ok((datagram, _)) => datagram,
            Err(e) => {
                match e.raw_os_error() {
                    Some(code) if code == nix::libc::ENOBUFS => {
                        // Notifications were dropped: whatever is in the table now was added by now.
                        seen.overruns.fetch_add(1, Ordering::Relaxed);
                        if let Ok(now_there) = bird_routes_now(namespace)
                            && let Ok(mut first) = seen.first.lock()
                        {
                            let now = Instant::now();
                            for prefix in now_there {
                                first.entry(prefix).or_insert(now);
                            }
                        }
                    }
                    Some(code) if code == nix::libc::EAGAIN || code == nix::libc::EINTR => {}
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
                continue;
            }
        };
        let received = Instant::now();
        let mut added = Vec::new();
        let mut offset = 0;
        while datagram.len().saturating_sub(offset) >= NETLINK_HEADER_LEN {
            let rest = &datagram[offset..];
            let length = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if length < NETLINK_HEADER_LEN || length > rest.len() {
                break;
            }
            if let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..length])
                && let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) =
                    message.payload
                && let Some(prefix) = bird_route_prefix(&route)
            {
                added.push(prefix);
            }
            offset += (length + 3) & !3;
        }
        if !added.is_empty()
            && let Ok(mut first) = seen.first.lock()
        {
            for prefix in added {
                first.entry(prefix).or_insert(received);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// A BGP lab built from calico-lab's pieces.

/// Fields drop in order: the monitors stop before `down` takes the lab down.
struct BgpLab<'a> {
    monitors: Vec<RouteMonitor>,
    state: State,
    /// Each host's block, claimed before calico-node started (index = host index).
    blocks: Vec<Ipv4Net>,
    first_start: Instant,
    last_start: Instant,
    /// The bench's own connection to the lab's embedded store.
    runtime: tokio::runtime::Runtime,
    ipam: Ipam,
    down: DownOnDrop<'a>,
}

/// Host `i`'s (0-based) block: 198.19.0.0/26, 198.19.0.64/26, ... (a /16 pool holds 1,024).
fn host_block(i: usize) -> Result<Ipv4Net> {
    let base = u32::from(Ipv4Addr::new(198, 19, 0, 0));
    let offset = u32::try_from(i * 64).context("host index")?;
    if i >= 1024 {
        bail!("only 1,024 /26 blocks in 198.19.0.0/16");
    }
    Ok(Ipv4Net::new(Ipv4Addr::from(base + offset), 26)?)
}

/// Trial `k`'s fresh block, counted down from the top of the pool (far from the hosts' blocks).
fn fresh_block(k: usize) -> Result<Ipv4Net> {
    host_block(1023usize.checked_sub(k).context("too many new blocks")?)
}

/// The resources that set up route reflection before any calico-node starts.
fn route_reflector_resources(reflectors: &[HostState], prefix_len: u8) -> Result<Vec<Resource>> {
    let mut values = vec![
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": false, "asNumber": 64512},
        }),
        json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "peer-with-route-reflectors"},
            "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
        }),
    ];
    for host in reflectors {
        values.push(json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": host.name, "labels": {"route-reflector": "true"}},
            "spec": {"bgp": {
                "ipv4Address": format!("{}/{prefix_len}", host.address),
                "routeReflectorClusterID": RR_CLUSTER_ID,
            }},
        }));
    }
    values
        .into_iter()
        .map(|v| Resource::from_value(v).map_err(|e| anyhow!("bench resource: {e:?}")))
        .collect()
}

impl<'a> BgpLab<'a> {
    /// Underlay, datastore (pool, one block per host, route reflection when `reflectors > 0`), route
    /// monitors, then every calico-node.
    fn build(tools: &'a Tools, hosts: usize, reflectors: usize) -> Result<BgpLab<'a>> {
        check_cancelled()?;
        let down = DownOnDrop {
            tools,
            name: format!(
                "bench{}_{}",
                std::process::id(),
                LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let lab = calico_lab::paths::Lab::new(&down.name)?;
        let calico_node = calico_lab::paths::find_binary("calico-node")?;
        std::fs::create_dir_all(lab.dir())
            .with_context(|| format!("creating {}", lab.dir().display()))?;
        let names: Vec<String> = (1..=hosts).map(calico_lab::paths::host_name).collect();
        let stage = Instant::now();
        let (addresses, prefix_len) = build_underlay(&lab, &names)?;
        let mut host_states = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let dir = lab.host_dir(name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            host_states.push(HostState {
                name: name.clone(),
                namespace: lab.ns(name),
                address: addresses[i].to_string(),
                state_dir: dir.display().to_string(),
                log: dir.join("calico-node.log").display().to_string(),
                cni_conf: dir.join("10-calico.conf").display().to_string(),
                calico_node_pid: None,
            });
        }
        let entries = calico_lab::underlay::static_neighbours(&host_states, 1, reflectors)?;
        progress(format!(
            "  underlay: {hosts} hosts, {entries} permanent ARP entries, in {:.1} s",
            stage.elapsed().as_secs_f64()
        ));
        let ds: DatastoreState = calico_lab::datastore::init_embedded(&lab)?;
        let mut state = State {
            name: lab.name.clone(),
            encap: Encap::None.name().to_string(),
            underlay: UnderlayState {
                namespace: lab.underlay_ns(),
                bridge: calico_lab::underlay::BRIDGE.to_string(),
                address: format!("{}/{prefix_len}", calico_lab::underlay::GATEWAY),
            },
            datastore: ds,
            hosts: host_states,
            pods: Vec::new(),
            pids: Pids::default(),
            timings_ms: BTreeMap::new(),
            backend: Some(calico_lab::Backend::Bird.name().to_string()),
            route_reflectors: 0,
        };
        state.save(&lab)?;

        let runtime = calico_lab::datastore::runtime()?;
        let store = runtime
            .block_on(calico_lab::datastore::config(&state.datastore).connect(OpenMode::MustExist))
            .context("connecting to the lab's datastore")?;
        let client = Client::new(store.clone());
        let ipam = Ipam::new(store);
        let stage = Instant::now();
        let blocks: Vec<Ipv4Net> = (0..hosts).map(host_block).collect::<Result<_>>()?;
        runtime.block_on(async {
            let pool = Resource::from_value(json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": "default-ipv4-ippool"},
                "spec": {
                    "cidr": calico_lab::node::POOL_CIDR,
                    "blockSize": 26,
                    "natOutgoing": true,
                    "vxlanMode": "Never",
                    "ipipMode": "Never",
                    "nodeSelector": "all()",
                },
            }))
            .map_err(|e| anyhow!("bench IPPool: {e:?}"))?;
            client.create(pool).await.context("creating the IPPool")?;
            if reflectors > 0 {
                let resources =
                    route_reflector_resources(&state.hosts[..reflectors.min(hosts)], prefix_len)?;
                for resource in resources {
                    let what = format!("{:?} {}", resource.kind(), resource.name());
                    client
                        .create(resource)
                        .await
                        .with_context(|| format!("creating {what}"))?;
                }
            }
            for (host, block) in state.hosts.iter().zip(&blocks) {
                claim(&ipam, host, *block).await?;
            }
            anyhow::Ok(())
        })?;
        progress(format!(
            "  datastore: pool, {hosts} blocks{} in {:.1} s",
            if reflectors > 0 {
                format!(", {reflectors} route reflectors, mesh off")
            } else {
                String::new()
            },
            stage.elapsed().as_secs_f64()
        ));

        let monitors = state
            .hosts
            .iter()
            .map(|h| RouteMonitor::start(&h.name, &h.namespace))
            .collect::<Result<Vec<_>>>()?;

        let first_start = Instant::now();
        let mut last_start = first_start;
        for i in 0..state.hosts.len() {
            check_cancelled()?;
            let pid = calico_lab::node::start(
                &lab.name,
                &calico_node,
                &state.hosts[i],
                &state.datastore,
                Encap::None,
                calico_lab::Backend::Bird,
            )?;
            last_start = Instant::now();
            state.hosts[i].calico_node_pid = Some(pid);
        }
        state.save(&lab)?;
        progress(format!(
            "  calico-node: {hosts} started in {:.2} s (lab {}: calico-lab status --name {})",
            (last_start - first_start).as_secs_f64(),
            down.name,
            down.name
        ));
        Ok(BgpLab {
            down,
            state,
            blocks,
            monitors,
            first_start,
            last_start,
            runtime,
            ipam,
        })
    }

    /// What every host must hold: every other host's block.
    fn wanted(&self, host: usize) -> Vec<Ipv4Net> {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != host)
            .map(|(_, b)| *b)
            .collect()
    }

    /// Waits until every host has every other host's block route (or `limit` after the last start);
    /// per host, the time its last missing route arrived.
    fn converge(&self, limit: Duration) -> Result<Convergence> {
        let deadline = self.last_start + limit;
        let wanted: Vec<Vec<Ipv4Net>> = (0..self.monitors.len()).map(|h| self.wanted(h)).collect();
        let mut done: Vec<Option<Instant>> = vec![None; self.monitors.len()];
        let mut next_report = Instant::now() + Duration::from_secs(5);
        loop {
            check_cancelled()?;
            for (h, monitor) in self.monitors.iter().enumerate() {
                if done[h].is_none() {
                    done[h] = monitor.all_seen_at(&wanted[h]);
                }
            }
            let complete = done.iter().filter(|d| d.is_some()).count();
            if complete == done.len() || Instant::now() >= deadline {
                break;
            }
            if Instant::now() >= next_report {
                let routes: usize = self.monitors.iter().map(RouteMonitor::count).sum();
                let total: usize = wanted.iter().map(Vec::len).sum();
                progress(format!(
                    "  lab {}: {:.0} s after the last start: {complete}/{} hosts complete, {routes}/{total} routes",
                    self.down.name,
                    self.last_start.elapsed().as_secs_f64(),
                    done.len()
                ));
                self.check_alive()?;
                next_report += Duration::from_secs(5);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let missing: Vec<(String, Vec<Ipv4Net>)> = self
            .monitors
            .iter()
            .zip(&wanted)
            .zip(&done)
            .filter(|(_, d)| d.is_none())
            .map(|((m, w), _)| {
                let lacking = w
                    .iter()
                    .filter(|p| m.first_seen(p).is_none())
                    .copied()
                    .collect();
                (m.host.clone(), lacking)
            })
            .collect();
        Ok(Convergence {
            per_host: done,
            missing,
            overruns: self
                .monitors
                .iter()
                .map(|m| m.seen.overruns.load(Ordering::Relaxed))
                .sum(),
        })
    }

    /// Fails when a calico-node has exited (its log's tail in the error).
    fn check_alive(&self) -> Result<()> {
        for host in &self.state.hosts {
            if !host.calico_node_pid.is_some_and(calico_lab::procs::alive) {
                bail!(
                    "calico-node on {} exited; last lines of {}:\n{}",
                    host.name,
                    host.log,
                    calico_lab::node::log_tail(Path::new(&host.log), 10)
                );
            }
        }
        Ok(())
    }

    /// A netlink dump of every host: the hosts (name, missing count) whose kernel lacks some of the
    /// routes it should hold now.
    fn verify_kernel(&self) -> Result<Vec<(String, usize)>> {
        let mut lacking = Vec::new();
        for (h, monitor) in self.monitors.iter().enumerate() {
            let have = bird_routes_now(&monitor.namespace)?;
            let missing = self.wanted(h).iter().filter(|p| !have.contains(p)).count();
            if missing > 0 {
                lacking.push((monitor.host.clone(), missing));
            }
        }
        Ok(lacking)
    }
}

/// Wider than calico-lab's /24 (whose addressing, 198.18.<segment>.(10+i), stops at
/// [`calico_lab::underlay::MAX_HOSTS`]): one bridge, 198.18.0.1/22, host *i* at 198.18.0.0 + 10 + *i*.
const WIDE_PREFIX_LEN: u8 = 22;
const WIDE_MAX_HOSTS: usize = 1000;

/// Host `index`'s (1-based) address on the wide underlay.
fn wide_host_address(index: usize) -> Result<Ipv4Addr> {
    if index == 0 || index > WIDE_MAX_HOSTS {
        bail!("host index {index} out of range 1..={WIDE_MAX_HOSTS}");
    }
    let offset = u32::try_from(10 + index).context("host index")?;
    Ok(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 18, 0, 0)) + offset,
    ))
}

/// The lab's underlay and host namespaces: calico-lab's own (`underlay::build`) up to its
/// [`calico_lab::underlay::MAX_HOSTS`], else the same wiring on a /22 (the Linux bridge takes up to
/// 1,024 ports); the hosts' addresses and the prefix length. Everything is created inside the lab's
/// namespaces (named with its prefix, so `calico-lab down` removes them).
fn build_underlay(lab: &calico_lab::paths::Lab, hosts: &[String]) -> Result<(Vec<Ipv4Addr>, u8)> {
    use calico_lab::underlay::{BRIDGE, GATEWAY, MAX_HOSTS, PREFIX_LEN};
    if hosts.len() <= MAX_HOSTS {
        calico_lab::underlay::build(lab, hosts)?;
        let addresses = (1..=hosts.len())
            .map(calico_lab::underlay::host_address)
            .collect::<Result<_>>()?;
        return Ok((addresses, PREFIX_LEN));
    }
    let net =
        |addr: Ipv4Addr| -> Result<IpNet> { Ok(IpNet::V4(Ipv4Net::new(addr, WIDE_PREFIX_LEN)?)) };
    let underlay = lab.underlay_ns();
    let mut names = vec![underlay.clone()];
    names.extend(hosts.iter().map(|h| lab.ns(h)));
    calico_lab::netns::add(&names)?;
    let ul_ns = calico_lab::netns::open(&underlay)?;
    let mut ul = calico_netlink::Netlink::in_netns(&ul_ns)?;
    let lo = ul.link_by_name("lo")?.context("no loopback device")?;
    ul.set_link_up(lo.index)?;
    ul.add_bridge(BRIDGE)?;
    let bridge = ul.link_by_name(BRIDGE)?.context("bridge vanished")?;
    ul.add_address(bridge.index, net(GATEWAY)?)?;
    ul.set_link_up(bridge.index)?;
    let mut addresses = Vec::with_capacity(hosts.len());
    for (i, host) in hosts.iter().enumerate() {
        let address = wide_host_address(i + 1)?;
        let host_ns = calico_lab::netns::open(&lab.ns(host))?;
        ul.add_veth(host, "eth0", Some(&host_ns), None)?;
        let port = ul.link_by_name(host)?.context("veth vanished")?;
        ul.set_link_master(port.index, bridge.index)?;
        ul.set_link_up(port.index)?;
        let mut nl = calico_netlink::Netlink::in_netns(&host_ns)?;
        let lo = nl.link_by_name("lo")?.context("no loopback device")?;
        nl.set_link_up(lo.index)?;
        let eth0 = nl.link_by_name("eth0")?.context("eth0 vanished")?;
        nl.add_address(eth0.index, net(address)?)?;
        nl.set_link_up(eth0.index)?;
        nl.add_route(&calico_netlink::Route::via(
            IpNet::V4(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0)?),
            IpAddr::V4(GATEWAY),
            eth0.index,
        ))?;
        host_ns
            .run(|| calico_netlink::sysctl::set("net/ipv4/ip_forward", "1"))?
            .with_context(|| format!("enabling forwarding in {host}"))?;
        addresses.push(address);
    }
    Ok((addresses, WIDE_PREFIX_LEN))
}

/// `calicoctl node status` of one host, summarised: how many sessions are Established, of how many, and
/// the INFO column of the others with counts (e.g. `Idle Socket: Connection closed x9`). Asked on the
/// host's node-status socket, as calicoctl asks it.
fn session_census(host: &HostState) -> Result<String> {
    use calico_contracts::node_status::{SessionState, node_status_socket, query};
    let status = query(&node_status_socket(Path::new(&host.state_dir)))
        .with_context(|| format!("{}'s node status", host.name))?;
    let total = status.peers.len();
    let established = status
        .peers
        .iter()
        .filter(|p| p.session == SessionState::Established)
        .count();
    let mut others: BTreeMap<String, usize> = BTreeMap::new();
    for peer in status
        .peers
        .iter()
        .filter(|p| p.session != SessionState::Established)
    {
        *others.entry(peer.info()).or_default() += 1;
    }
    Ok(format!(
        "{}: {established}/{total} sessions Established{}",
        host.name,
        if others.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                others
                    .iter()
                    .map(|(info, n)| format!("{info} x{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ))
}

async fn claim(ipam: &Ipam, host: &HostState, block: Ipv4Net) -> Result<()> {
    let ip = IpAddr::V4(block.network());
    let handle = format!("bench.{}.{}", host.name, block.network());
    let attrs = BTreeMap::from([("node".to_string(), host.name.clone())]);
    ipam.assign_ip(ip, &handle, &attrs, &host.name, None)
        .await
        .with_context(|| format!("claiming {block} for {} (IPAM assign_ip {ip})", host.name))?;
    Ok(())
}

/// When each host had all its routes (None: not within the limit).
struct Convergence {
    per_host: Vec<Option<Instant>>,
    /// Hosts still missing routes at the limit, with the prefixes they lack.
    missing: Vec<(String, Vec<Ipv4Net>)>,
    overruns: u64,
}

impl Convergence {
    fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// Seconds from `from` to each complete host's last route, sorted.
    fn seconds_from(&self, from: Instant) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .per_host
            .iter()
            .flatten()
            .map(|t| t.saturating_duration_since(from).as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn missing_text(&self) -> String {
        let routes: usize = self.missing.iter().map(|(_, n)| n.len()).sum();
        format!(
            "{} hosts still missing {routes} routes (first: {})",
            self.missing.len(),
            self.missing
                .iter()
                .take(5)
                .map(|(h, n)| {
                    let shown: Vec<String> = n.iter().take(3).map(|p| p.to_string()).collect();
                    format!(
                        "{h} lacks {}{}",
                        shown.join(" "),
                        if n.len() > shown.len() { " ..." } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Builds a lab, waits for convergence; the convergence table and the figure's (result, detail, met).
fn converge_figure(
    lab: &BgpLab,
    args: &LabArgs,
    what: &str,
    goal_seconds: f64,
    reflectors: usize,
) -> Result<(Convergence, Table, String, String, bool)> {
    let hosts = lab.monitors.len();
    let limit = Duration::from_secs(args.converge_limit);
    let convergence = lab.converge(limit)?;
    let from_last = convergence.seconds_from(lab.last_start);
    let from_first = convergence.seconds_from(lab.first_start);
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    let lacking = if convergence.complete() {
        lab.verify_kernel()?
    } else {
        Vec::new()
    };
    let starts = (lab.last_start - lab.first_start).as_secs_f64();
    let mut table = Table::new(
        &format!(
            "lab: {what}: every host's kernel holding every other host's block route ({hosts} hosts, {} routes; calico-nodes started one after another over {starts:.2} s)",
            hosts * (hosts - 1)
        ),
        &["hosts complete", "from", "p50 s", "p90 s", "max s"],
    );
    // No host complete: no figure ("-"), not NaN.
    let secs = |v: &[f64], q: f64| percentile(v, q).map_or("-".to_string(), |x| format!("{x:.2}"));
    for (label, v) in [
        ("the last calico-node start", &from_last),
        ("the first calico-node start", &from_first),
    ] {
        table.push(vec![
            format!("{}/{hosts}", v.len()),
            label.to_string(),
            secs(v, 50.0),
            secs(v, 90.0),
            secs(v, 100.0),
        ]);
    }
    let worst = p(&from_last, 100.0);
    let mut notes = Vec::new();
    if convergence.overruns > 0 {
        notes.push(format!(
            "{} monitor overruns (filled from dumps)",
            convergence.overruns
        ));
    }
    if !lacking.is_empty() {
        notes.push(format!(
            "at the end {} hosts lacked routes again (first: {} {})",
            lacking.len(),
            lacking[0].0,
            lacking[0].1
        ));
    }
    let (result, met) = if convergence.complete() {
        (
            format!("{worst:.2} s"),
            worst <= goal_seconds && lacking.is_empty(),
        )
    } else {
        notes.push(convergence.missing_text());
        // Why: the BGP sessions of the reflectors (or of the first hosts missing routes).
        let asked: Vec<&HostState> = if reflectors > 0 {
            lab.state.hosts.iter().take(reflectors).collect()
        } else {
            convergence
                .missing
                .iter()
                .take(2)
                .filter_map(|(h, _)| lab.state.host(h))
                .collect()
        };
        for host in asked {
            notes.push(session_census(host).unwrap_or_else(|e| format!("{}: {e:#}", host.name)));
        }
        (format!("not converged in {} s", args.converge_limit), false)
    };
    let detail = format!(
        "{hosts} hosts; from the last start p50 {} s, max {} s; from the first start max {} s{}",
        secs(&from_last, 50.0),
        secs(&from_last, 100.0),
        secs(&from_first, 100.0),
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    );
    Ok((convergence, table, result, detail, met))
}

// ---------------------------------------------------------------------------------------------------------
// bgp-mesh-scale.

const MESH_CONVERGE_FIGURE: &str = "BGP full mesh: last calico-node start -> all routes";
const MESH_RSS_FIGURE: &str = "BGP full mesh: calico-node RSS (max)";

fn mesh_goal() -> Option<String> {
    Some(format!("<= {MESH_CONVERGE_GOAL_SECONDS:.0} s"))
}

fn mesh_rss_goal() -> Option<String> {
    Some(format!("<= {MESH_RSS_GOAL_MIB:.0} MiB"))
}

/// Hosts of the reference mesh whose calico-node memory is measured in the same run.
const REFERENCE_MESH_HOSTS: usize = 3;

/// One calico-node's memory (KiB, from /proc/<pid>/status).
struct Memory {
    rss: u64,
    /// Private anonymous pages (heap, stacks): what this calico-node costs on its own.
    anon: u64,
    /// File-backed pages: mostly calico-node's own binary, shared by every calico-node on the machine.
    file: u64,
    peak: u64,
}

fn memory_of(pid: u32) -> Result<Memory> {
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
    Ok(Memory {
        rss: kib("VmRSS:")?,
        anon: kib("RssAnon:")?,
        file: kib("RssFile:")?,
        peak: kib("VmHWM:")?,
    })
}

/// A converged mesh lab's calico-node memory, 5 s after convergence.
fn mesh_memory(lab: &BgpLab) -> Result<Vec<Memory>> {
    std::thread::sleep(Duration::from_secs(5));
    lab.check_alive()?;
    calico_node_pids(&lab.state.hosts)?
        .iter()
        .map(|p| memory_of(*p))
        .collect()
}

fn mesh_scale(tools: &Tools, args: &LabArgs) -> Result<(Vec<Figure>, String)> {
    let hosts = args.mesh_hosts;
    // The reference: the same measurement with few peers, in this run.
    progress(format!(
        "bgp-mesh-scale: reference, {REFERENCE_MESH_HOSTS} hosts"
    ));
    let reference = {
        let lab = BgpLab::build(tools, REFERENCE_MESH_HOSTS, 0)?;
        let convergence = lab.converge(Duration::from_secs(args.converge_limit))?;
        if !convergence.complete() {
            bail!(
                "the {REFERENCE_MESH_HOSTS}-host reference mesh did not converge: {}",
                convergence.missing_text()
            );
        }
        mesh_memory(&lab)?
    };
    progress(format!(
        "bgp-mesh-scale: {hosts} hosts, node-to-node mesh, one block each"
    ));
    let lab = BgpLab::build(tools, hosts, 0)?;
    let (_, table, result, detail, met) =
        converge_figure(&lab, args, "BGP full mesh", MESH_CONVERGE_GOAL_SECONDS, 0)?;
    let mut text = table.render();
    let mut found = vec![Figure {
        name: MESH_CONVERGE_FIGURE,
        result,
        detail,
        goal: mesh_goal(),
        met: Some(met),
    }];
    // Memory with every session up and the routes in: after a few quiet seconds.
    progress("bgp-mesh-scale: converged; memory after 5 s");
    let memory = mesh_memory(&lab)?;
    let mib = |v: &[Memory], f: fn(&Memory) -> u64| -> Vec<f64> {
        let mut m: Vec<f64> = v.iter().map(|x| f(x) as f64 / 1024.0).collect();
        m.sort_by(f64::total_cmp);
        m
    };
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    let mut rss_table = Table::new(
        &format!(
            "lab: calico-node memory, {hosts}-host full mesh ({} peers each) beside a {REFERENCE_MESH_HOSTS}-host mesh ({} peers), 5 s after convergence",
            hosts - 1,
            REFERENCE_MESH_HOSTS - 1
        ),
        &[
            "hosts",
            "RSS median MiB",
            "RSS max MiB",
            "anonymous median MiB",
            "anonymous max MiB",
            "file-backed median MiB",
            "peak RSS max MiB",
        ],
    );
    for (n, v) in [(REFERENCE_MESH_HOSTS, &reference), (hosts, &memory)] {
        let (rss, anon, file, peak) = (
            mib(v, |m| m.rss),
            mib(v, |m| m.anon),
            mib(v, |m| m.file),
            mib(v, |m| m.peak),
        );
        rss_table.push(vec![
            n.to_string(),
            format!("{:.1}", median(rss.clone())),
            format!("{:.1}", p(&rss, 100.0)),
            format!("{:.1}", median(anon.clone())),
            format!("{:.1}", p(&anon, 100.0)),
            format!("{:.1}", median(file)),
            format!("{:.1}", p(&peak, 100.0)),
        ]);
    }
    text.push_str(&rss_table.render());
    let rss = mib(&memory, |m| m.rss);
    let anon = mib(&memory, |m| m.anon);
    let file = mib(&memory, |m| m.file);
    let reference_anon = median(mib(&reference, |m| m.anon));
    let max = p(&rss, 100.0);
    found.push(Figure {
        name: MESH_RSS_FIGURE,
        result: format!("{max:.1} MiB"),
        detail: format!(
            "{} peers each; median {:.1} MiB = anonymous {:.1} + file-backed {:.1} (the binary's pages, shared by all calico-nodes); anonymous {:.1} MiB with {} peers",
            hosts - 1,
            median(rss.clone()),
            median(anon),
            median(file),
            reference_anon,
            REFERENCE_MESH_HOSTS - 1
        ),
        goal: mesh_rss_goal(),
        met: Some(max <= MESH_RSS_GOAL_MIB),
    });
    progress("bgp-mesh-scale: down");
    drop(lab);
    Ok((found, text))
}

// ---------------------------------------------------------------------------------------------------------
// bgp-rr-scale.

const RR_CONVERGE_FIGURE: &str = "BGP route reflectors: last calico-node start -> all routes";

fn rr_goal() -> Option<String> {
    Some(format!("<= {RR_CONVERGE_GOAL_SECONDS:.0} s"))
}

fn rr_scale(tools: &Tools, args: &LabArgs) -> Result<(Figure, String)> {
    let hosts = args.rr_hosts;
    let reflectors = args.route_reflectors.clamp(1, hosts);
    progress(format!(
        "bgp-rr-scale: {hosts} hosts, {reflectors} route reflectors, mesh off, one block each"
    ));
    let lab = BgpLab::build(tools, hosts, reflectors)?;
    let (_, table, result, detail, met) = converge_figure(
        &lab,
        args,
        &format!("BGP, {reflectors} route reflectors, mesh off"),
        RR_CONVERGE_GOAL_SECONDS,
        reflectors,
    )?;
    let usage: Vec<(String, f64)> = lab
        .state
        .hosts
        .iter()
        .take(reflectors + 1)
        .filter_map(|h| {
            let pid = h.calico_node_pid?;
            let u = read_usage(pid).ok()?;
            Some((h.name.clone(), u.rss_kib as f64 / 1024.0))
        })
        .collect();
    progress("bgp-rr-scale: down");
    drop(lab);
    Ok((
        Figure {
            name: RR_CONVERGE_FIGURE,
            result,
            detail: format!(
                "{detail}; RSS {} (reflectors first, then a client)",
                usage
                    .iter()
                    .map(|(h, m)| format!("{h} {m:.1} MiB"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            goal: rr_goal(),
            met: Some(met),
        },
        table.render(),
    ))
}

// ---------------------------------------------------------------------------------------------------------
// bgp-new-block.

const NEW_BLOCK_FIGURE: &str = "BGP mesh: new block -> proto bird route on every other host (p99)";

fn new_block_goal() -> Option<String> {
    Some(format!("<= {NEW_BLOCK_P99_GOAL_MS:.0} ms"))
}

fn new_block(tools: &Tools, args: &LabArgs) -> Result<(Figure, String)> {
    let hosts = args.new_block_hosts;
    progress(format!(
        "bgp-new-block: {hosts} hosts, node-to-node mesh: up and converge"
    ));
    let lab = BgpLab::build(tools, hosts, 0)?;
    let convergence = lab.converge(Duration::from_secs(args.converge_limit))?;
    if !convergence.complete() {
        bail!(
            "the {hosts}-host mesh did not converge within {} s: {}",
            args.converge_limit,
            convergence.missing_text()
        );
    }
    let converged_in = convergence
        .seconds_from(lab.last_start)
        .last()
        .copied()
        .unwrap_or(f64::NAN);
    // Let the start-up's keepalives and status reports pass.
    std::thread::sleep(Duration::from_secs(2));
    progress(format!(
        "bgp-new-block: converged {converged_in:.2} s after the last start; {} new blocks",
        args.new_blocks
    ));
    let mut all_ms: Vec<f64> = Vec::new();
    let mut per_trial = Table::new(
        &format!(
            "lab: BGP mesh of {hosts} hosts: a new block claimed through IPAM on one host -> its proto bird route in every other host's kernel (netlink route monitor per host)"
        ),
        &[
            "trial",
            "claimed on",
            "block",
            "IPAM claim ms",
            "hosts",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
    );
    let mut missing_total = 0usize;
    let mut claims_ms: Vec<f64> = Vec::new();
    for k in 0..args.new_blocks {
        check_cancelled()?;
        let owner = k % hosts;
        let host = &lab.state.hosts[owner];
        let block = fresh_block(k)?;
        let started = Instant::now();
        lab.runtime.block_on(claim(&lab.ipam, host, block))?;
        let claim_ms = started.elapsed().as_secs_f64() * 1000.0;
        claims_ms.push(claim_ms);
        let deadline = started + NEW_BLOCK_LIMIT;
        let others: Vec<&RouteMonitor> = lab
            .monitors
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != owner)
            .map(|(_, m)| m)
            .collect();
        loop {
            if others.iter().all(|m| m.first_seen(&block).is_some()) || Instant::now() >= deadline {
                break;
            }
            check_cancelled()?;
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut trial: Vec<f64> = others
            .iter()
            .filter_map(|m| m.first_seen(&block))
            .map(|t| t.saturating_duration_since(started).as_secs_f64() * 1000.0)
            .collect();
        let missing = others.len() - trial.len();
        missing_total += missing;
        trial.sort_by(f64::total_cmp);
        let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
        per_trial.push(vec![
            (k + 1).to_string(),
            host.name.clone(),
            block.to_string(),
            format!("{claim_ms:.1}"),
            format!(
                "{}/{}{}",
                trial.len(),
                others.len(),
                if missing > 0 { " (missing)" } else { "" }
            ),
            format!("{:.1}", p(&trial, 50.0)),
            format!("{:.1}", p(&trial, 99.0)),
            format!("{:.1}", p(&trial, 100.0)),
        ]);
        all_ms.extend(trial);
        // Missing hosts count as the limit, so the p99 cannot hide them.
        all_ms.extend(std::iter::repeat_n(
            NEW_BLOCK_LIMIT.as_secs_f64() * 1000.0,
            missing,
        ));
        std::thread::sleep(NEW_BLOCK_GAP);
    }
    all_ms.sort_by(f64::total_cmp);
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    per_trial.push(vec![
        "all".into(),
        String::new(),
        String::new(),
        String::new(),
        all_ms.len().to_string(),
        format!("{:.1}", p(&all_ms, 50.0)),
        format!("{:.1}", p(&all_ms, 99.0)),
        format!("{:.1}", p(&all_ms, 100.0)),
    ]);
    let p99 = p(&all_ms, 99.0);
    progress("bgp-new-block: down");
    drop(lab);
    Ok((
        Figure {
            name: NEW_BLOCK_FIGURE,
            result: format!("{p99:.1} ms"),
            detail: format!(
                "{} blocks x {} hosts; p50 {:.1} ms, max {:.1} ms; clock from the IPAM claim's start (the claim itself: median {:.1} ms){}",
                args.new_blocks,
                hosts - 1,
                p(&all_ms, 50.0),
                p(&all_ms, 100.0),
                median(claims_ms),
                if missing_total > 0 {
                    format!(
                        "; {missing_total} never arrived within {NEW_BLOCK_LIMIT:?} (counted as the limit)"
                    )
                } else {
                    String::new()
                }
            ),
            goal: new_block_goal(),
            met: Some(p99 <= NEW_BLOCK_P99_GOAL_MS),
        },
        per_trial.render(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_blocks_and_fresh_blocks_do_not_meet() {
        assert_eq!(host_block(0).unwrap().to_string(), "198.19.0.0/26");
        assert_eq!(host_block(4).unwrap().to_string(), "198.19.1.0/26");
        assert_eq!(fresh_block(0).unwrap().to_string(), "198.19.255.192/26");
        assert_eq!(fresh_block(1).unwrap().to_string(), "198.19.255.128/26");
        assert!(host_block(1024).is_err());
        let hosts: BTreeSet<Ipv4Net> = (0..250).map(|i| host_block(i).unwrap()).collect();
        assert!((0..10).all(|k| !hosts.contains(&fresh_block(k).unwrap())));
    }

    #[test]
    fn wide_underlay_addresses_stay_in_their_subnet() {
        assert_eq!(wide_host_address(1).unwrap(), Ipv4Addr::new(198, 18, 0, 11));
        assert_eq!(
            wide_host_address(250).unwrap(),
            Ipv4Addr::new(198, 18, 1, 4)
        );
        let subnet = Ipv4Net::new(Ipv4Addr::new(198, 18, 0, 1), WIDE_PREFIX_LEN)
            .unwrap()
            .trunc();
        let last = wide_host_address(WIDE_MAX_HOSTS).unwrap();
        assert!(subnet.contains(&last) && last != subnet.broadcast());
        assert!(wide_host_address(0).is_err() && wide_host_address(WIDE_MAX_HOSTS + 1).is_err());
    }

    #[test]
    fn only_bird_routes_of_the_main_table_are_counted() {
        let mut message = RouteMessage::default();
        message.header.protocol = RouteProtocol::Bird;
        message.header.table = 254;
        message.header.destination_prefix_length = 26;
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                Ipv4Addr::new(198, 19, 0, 64),
            )));
        assert_eq!(
            bird_route_prefix(&message).map(|p| p.to_string()),
            Some("198.19.0.64/26".to_string())
        );
        let mut other = message.clone();
        other.header.protocol = RouteProtocol::Static;
        assert_eq!(bird_route_prefix(&other), None);
        let mut elsewhere = message.clone();
        elsewhere.header.table = 100;
        assert_eq!(bird_route_prefix(&elsewhere), None);
    }

    #[test]
    fn route_reflector_resources_decode() {
        let reflector = HostState {
            name: "node1".into(),
            namespace: "ns".into(),
            address: "198.18.0.11".into(),
            state_dir: String::new(),
            log: String::new(),
            cni_conf: String::new(),
            calico_node_pid: None,
        };
        let resources = route_reflector_resources(&[reflector], 24).unwrap();
        assert_eq!(resources.len(), 3);
        assert_eq!(resources[2].name(), "node1");
    }
}
