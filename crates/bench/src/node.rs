//! The calico-node core: calculation time per event at two cluster sizes (in-process), and one
//! reconcile of a 5,000-node cluster's remote block routes in a test network namespace (root).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use calico_api::Resource;
use calico_dataplane::Dataplane;
use calico_datastore::KeyValue;
use calico_datastore::syncer::SyncEvent;
use calico_felix::desired::{
    Desired, DesiredRoute, HostContext, RouteTarget, VXLAN_OVERHEAD, VXLAN_PORT, VXLAN_VNI, Vtep,
    VxlanDevice, compute, derived_vxlan_mac,
};
use calico_felix::model::Model;
use calico_ipam::block::{ATTR_NODE, AllocationAttribute, Block};
use calico_ipam::model::block_key;
use calico_model::resource::{encode, resource_key_of};
use calico_netlink::Netns;
use calico_testutil::netns::{TestNetns, require_binary, require_root};
use ipnet::{IpNet, Ipv4Net};
use serde_json::json;

use crate::measure::percentile;
use crate::report::{Goal, Table, ratio, thousands};

/// Parts of the section, for `--only`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Calc,
    Reconcile,
    Route,
}

#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// Events timed per kind and cluster size in the calculation part.
    #[arg(long, default_value_t = 190)]
    pub events: usize,
    /// Remote nodes (one block route and one VTEP each) in the reconcile part.
    #[arg(long, default_value_t = 5_000)]
    pub remote_nodes: usize,
    /// Endpoints in the cluster of the route part (500 of them on calico-node's host).
    #[arg(long, default_value_t = 10_000)]
    pub route_endpoints: usize,
    /// Endpoint writes timed in the route part.
    #[arg(long, default_value_t = 200)]
    pub route_writes: usize,
    /// Run only these parts (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
}

impl NodeArgs {
    fn wants(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// Goal of issue 9: per-event calculation time is flat from 1k to 10k endpoints; "flat" is read as the
/// 10k p50 within this factor of the 1k p50.
const FLAT_RATIO: f64 = 1.5;

/// Set by Ctrl-C / SIGTERM: the waits stop, and the drop guards remove the namespaces and calico-node.
static CANCELLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn check_cancelled() -> Result<()> {
    if CANCELLED.load(std::sync::atomic::Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the section on a blocking thread; an interrupt makes it stop and clean up.
pub async fn run_async(args: &NodeArgs) -> Result<(String, Vec<Goal>)> {
    let interrupt_watch = tokio::spawn(async {
        crate::interrupt::wait_for_interrupt().await;
        CANCELLED.store(true, std::sync::atomic::Ordering::Relaxed);
        eprintln!("calico-bench node: interrupted; removing the namespaces and calico-node");
    });
    let args = args.clone();
    let outcome = tokio::task::spawn_blocking(move || run(&args))
        .await
        .map_err(|e| anyhow!("the node benchmark thread failed: {e}"));
    interrupt_watch.abort();
    outcome?
}

pub fn run(args: &NodeArgs) -> Result<(String, Vec<Goal>)> {
    let mut text = String::new();
    let mut goals = Vec::new();
    if args.wants(Part::Calc) {
        let (table, section_goals) = calculation(args.events)?;
        text.push_str(&table.render());
        text.push('\n');
        goals.extend(section_goals);
    }
    if args.wants(Part::Reconcile) {
        let (table, section_goals) = reconcile(args.remote_nodes)?;
        text.push_str(&table.render());
        text.push('\n');
        goals.extend(section_goals);
    }
    if args.wants(Part::Route) {
        if args.route_endpoints < LOCAL_ENDPOINTS {
            bail!("--route-endpoints must be at least {LOCAL_ENDPOINTS}");
        }
        let (table, section_goals) =
            route_latency(args.route_endpoints, LOCAL_ENDPOINTS, args.route_writes)?;
        text.push_str(&table.render());
        text.push('\n');
        goals.extend(section_goals);
    }
    Ok((text, goals))
}

// ---------------------------------------------------------------------------------------------
// Calculation per event

const CLUSTER_NODES: usize = 20;
const LOCAL_ENDPOINTS: usize = 500;
const HOST: &str = "bench-node-0";
/// Pool of the calculation cluster: blocks are carved from it in order.
const POOL_BASE: u32 = u32::from_be_bytes([198, 19, 0, 0]);
/// Addresses of endpoints added during timing (kept out of the pool's prefilled blocks).
const EXTRA_BASE: u32 = u32::from_be_bytes([198, 18, 128, 0]);
const BLOCK_SIZE: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    LocalEndpoint,
    RemoteEndpoint,
    BlockAllocation,
    NewRemoteBlock,
}

const KINDS: [(EventKind, &str); 4] = [
    (EventKind::LocalEndpoint, "local endpoint added"),
    (EventKind::RemoteEndpoint, "remote endpoint added"),
    (EventKind::BlockAllocation, "pod added to a remote block"),
    (EventKind::NewRemoteBlock, "new remote block"),
];

fn node_name(i: usize) -> String {
    format!("bench-node-{i}")
}

fn kv(key: String, value: Vec<u8>) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: 1,
        mod_revision: 1,
        version: 1,
    }
}

fn put_resource(value: serde_json::Value) -> Result<SyncEvent> {
    let resource = Resource::from_value(value).map_err(|e| anyhow!("bench resource: {e}"))?;
    Ok(SyncEvent::Put(kv(
        resource_key_of(&resource),
        encode(&resource),
    )))
}

fn v4(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(n)
}

fn node_event(i: usize, tunnel: Ipv4Addr) -> Result<SyncEvent> {
    put_resource(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": node_name(i)},
        "spec": {
            "bgp": {"ipv4Address": format!("198.18.0.{}/24", 10 + i)},
            "ipv4VXLANTunnelAddr": tunnel.to_string(),
        },
    }))
}

fn endpoint_event(id: usize, node: usize, ip: Ipv4Addr) -> Result<SyncEvent> {
    let pod = format!("pod-{id}");
    put_resource(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            // Calico's name for it: the identifiers with their dashes doubled, joined by dashes.
            "name": format!(
                "{}-k8s-{}-eth0",
                node_name(node).replace('-', "--"),
                pod.replace('-', "--")
            ),
            "namespace": "default",
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node_name(node),
            "pod": pod,
            "endpoint": "eth0",
            "interfaceName": format!("cali{id:011x}"),
            "ipNetworks": [format!("{ip}/32")],
            "mac": "ee:ee:ee:ee:ee:ee",
        },
    }))
}

fn block_event(block: &Block) -> SyncEvent {
    SyncEvent::Put(kv(block_key(block.cidr), block.to_json()))
}

fn allocation(node: usize, id: usize) -> AllocationAttribute {
    let mut attr = AllocationAttribute {
        handle_id: Some(format!("k8s-pod-network.bench-{id}")),
        ..Default::default()
    };
    attr.secondary.insert(ATTR_NODE.into(), node_name(node));
    attr
}

/// A cluster with `endpoints` workload endpoints, 500 of them on [`HOST`]: the model fed with it, the
/// host's context, each node's probe block, and the next free block base.
struct Cluster {
    model: Model,
    host: HostContext,
    /// Per node, one more block holding [`PROBE_FILL`] allocations whatever the cluster's size: the
    /// allocation events go there, so both sizes decode blocks of the same fill.
    probe: Vec<Block>,
    next_block: u32,
}

/// Allocations in a probe block before the allocation events add theirs.
const PROBE_FILL: u32 = 32;

fn cluster(endpoints: usize) -> Result<Cluster> {
    let mut events = vec![put_resource(json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "bench-pool"},
        "spec": {"cidr": "198.19.0.0/16", "vxlanMode": "Always", "natOutgoing": true, "blockSize": 26},
    }))?];
    let remote = endpoints - LOCAL_ENDPOINTS;
    let per_node: Vec<usize> = (0..CLUSTER_NODES)
        .map(|i| {
            if i == 0 {
                LOCAL_ENDPOINTS
            } else {
                remote / (CLUSTER_NODES - 1) + usize::from(i <= remote % (CLUSTER_NODES - 1))
            }
        })
        .collect();
    let mut next_block = POOL_BASE;
    let mut probe = Vec::new();
    let mut id = 0;
    for (node, &count) in per_node.iter().enumerate() {
        // One address for the tunnel, then the pods; at least one block left with room for more.
        let needed = count as u32 + 1;
        let block_count = needed / BLOCK_SIZE + 1;
        let mut node_blocks = Vec::new();
        for _ in 0..block_count {
            let cidr = IpNet::V4(Ipv4Net::new(v4(next_block), 26)?);
            next_block += BLOCK_SIZE;
            node_blocks.push(Block::new(
                cidr,
                Some(format!("host:{}", node_name(node))),
                None,
            ));
        }
        let first = match node_blocks[0].cidr {
            IpNet::V4(net) => net.network(),
            IpNet::V6(_) => bail!("IPv4 blocks only"),
        };
        events.push(node_event(node, first)?);
        for k in 0..needed {
            let ip = v4(u32::from(first) + k);
            let block = &mut node_blocks[(k / BLOCK_SIZE) as usize];
            block
                .assign(IpAddr::V4(ip), &allocation(node, id))
                .map_err(|e| anyhow!("prefilling a block: {e}"))?;
            if k > 0 {
                events.push(endpoint_event(id, node, ip)?);
            }
            id += 1;
        }
        for block in &node_blocks {
            events.push(block_event(block));
        }
        let probe_base = next_block;
        let cidr = IpNet::V4(Ipv4Net::new(v4(probe_base), 26)?);
        next_block += BLOCK_SIZE;
        let mut block = Block::new(cidr, Some(format!("host:{}", node_name(node))), None);
        for k in 0..PROBE_FILL {
            block
                .assign(IpAddr::V4(v4(probe_base + k)), &allocation(node, id))
                .map_err(|e| anyhow!("prefilling a block: {e}"))?;
            id += 1;
        }
        events.push(block_event(&block));
        probe.push(block);
    }
    let mut model = Model::for_host(HOST);
    for event in &events {
        model.apply(event);
    }
    if model.endpoint_count() != endpoints {
        bail!(
            "the model holds {} endpoints, {endpoints} were written",
            model.endpoint_count()
        );
    }
    let host = HostContext {
        nodename: HOST.into(),
        address: Some("198.18.0.10/24".parse()?),
        uplink: Some("eth0".into()),
        uplink_mtu: 1500,
        uplink_gso_ipv4_max: 0,
        bgp: false,
    };
    Ok(Cluster {
        model,
        host,
        probe,
        next_block,
    })
}

/// Per kind: the sorted times in µs of `model.apply` + (on a change) `compute`.
fn time_events(endpoints: usize, events: usize) -> Result<Vec<Vec<f64>>> {
    let mut cluster = cluster(endpoints)?;
    // Warm up: one full calculation, as calico-node does after its initial sync.
    let baseline = compute(&cluster.model, &cluster.host);
    if baseline.workloads.len() != LOCAL_ENDPOINTS {
        bail!(
            "this host should have {LOCAL_ENDPOINTS} workloads, the calculation gives {}",
            baseline.workloads.len()
        );
    }
    let mut next_id = 10_000_000;
    let mut extra = EXTRA_BASE;
    let mut results = Vec::new();
    for (kind, _) in KINDS {
        let mut times = Vec::with_capacity(events);
        for i in 0..events {
            let remote = 1 + i % (CLUSTER_NODES - 1);
            let event = match kind {
                EventKind::LocalEndpoint => {
                    extra += 1;
                    endpoint_event(next_id, 0, v4(extra))?
                }
                EventKind::RemoteEndpoint => {
                    extra += 1;
                    endpoint_event(next_id, remote, v4(extra))?
                }
                EventKind::BlockAllocation => {
                    let block = &mut cluster.probe[remote];
                    let free = first_free(block)?;
                    block
                        .assign(free, &allocation(remote, next_id))
                        .map_err(|e| anyhow!("allocating in a block: {e}"))?;
                    block_event(block)
                }
                EventKind::NewRemoteBlock => {
                    let cidr = IpNet::V4(Ipv4Net::new(v4(cluster.next_block), 26)?);
                    cluster.next_block += BLOCK_SIZE;
                    block_event(&Block::new(
                        cidr,
                        Some(format!("host:{}", node_name(remote))),
                        None,
                    ))
                }
            };
            next_id += 1;
            let started = Instant::now();
            if cluster.model.apply(&event) {
                std::hint::black_box(compute(&cluster.model, &cluster.host));
            }
            times.push(started.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        results.push(times);
    }
    Ok(results)
}

fn first_free(block: &Block) -> Result<IpAddr> {
    let IpNet::V4(net) = block.cidr else {
        bail!("IPv4 blocks only");
    };
    let used: std::collections::HashSet<IpAddr> = block.allocated().map(|(ip, _)| ip).collect();
    net.hosts()
        .chain(std::iter::once(net.network()))
        .map(IpAddr::V4)
        .find(|ip| !used.contains(ip))
        .context("the block is full; ask for fewer --events")
}

fn calculation(events: usize) -> Result<(Table, Vec<Goal>)> {
    let small = time_events(1_000, events)?;
    let large = time_events(10_000, events)?;
    let mut table = Table::new(
        &format!(
            "calico-node calculation per event (model.apply + compute when it changes), {CLUSTER_NODES} nodes, 500 endpoints on this host, {events} events per kind; allocation events re-put a block holding {PROBE_FILL}+ allocations at both sizes"
        ),
        &[
            "event",
            "1k p50 µs",
            "1k p99 µs",
            "10k p50 µs",
            "10k p99 µs",
            "10k/1k p50",
            "10k/1k p99",
        ],
    );
    let mut goals = Vec::new();
    let mut worst: f64 = 0.0;
    for ((_, name), (s, l)) in KINDS.iter().zip(small.iter().zip(&large)) {
        let pick = |v: &[f64], p| percentile(v, p).unwrap_or(f64::NAN);
        let (s50, s99, l50, l99) = (pick(s, 50.0), pick(s, 99.0), pick(l, 50.0), pick(l, 99.0));
        worst = worst.max(l50 / s50);
        table.push(vec![
            (*name).into(),
            format!("{s50:.1}"),
            format!("{s99:.1}"),
            format!("{l50:.1}"),
            format!("{l99:.1}"),
            ratio(l50 / s50),
            ratio(l99 / s99),
        ]);
    }
    goals.push(Goal {
        name: format!("calculation per event flat from 1k to 10k endpoints (10k/1k p50 ≤ {FLAT_RATIO}x for every kind)"),
        met: Some(worst <= FLAT_RATIO),
        informational: false,
        detail: format!("largest 10k/1k p50 ratio {}", ratio(worst)),
    });
    Ok((table, goals))
}

// ---------------------------------------------------------------------------------------------
// Reconcile from empty

/// Remote blocks of the reconcile part are /28, not Calico's /26: 5,000 /26 blocks (320,000
/// addresses) do not fit in 198.18.0.0/15, the only range test addresses may use. The kernel's work per
/// route does not depend on the prefix length.
const RECONCILE_BLOCK_PREFIX: u8 = 28;
const UPLINK: &str = "bench-up0";
const UPLINK_PEER: &str = "bench-up1";

fn reconcile_desired(remote_nodes: usize) -> Result<Desired> {
    let block_size = 1u32 << (32 - RECONCILE_BLOCK_PREFIX);
    let blocks_base = u32::from_be_bytes([198, 18, 64, 0]);
    let last = blocks_base as u64 + (remote_nodes as u64 + 1) * block_size as u64;
    if last > u64::from(u32::from_be_bytes([198, 20, 0, 0])) || remote_nodes > 16_000 {
        bail!("{remote_nodes} remote nodes do not fit in 198.18.0.0/15");
    }
    let local = Ipv4Addr::new(198, 18, 0, 1);
    let mut desired = Desired {
        vxlan: Some(VxlanDevice {
            vni: VXLAN_VNI,
            port: VXLAN_PORT,
            local,
            parent: UPLINK.into(),
            mac: derived_vxlan_mac("bench-node-0"),
            mtu: 1500 - VXLAN_OVERHEAD,
            address: v4(blocks_base),
        }),
        pod_mtu: 1500 - VXLAN_OVERHEAD,
        ..Desired::default()
    };
    for i in 1..=remote_nodes as u32 {
        let name = format!("bench-node-{i}");
        let block = blocks_base + i * block_size;
        let tunnel = v4(block);
        desired.vteps.insert(Vtep {
            node: name.clone(),
            tunnel_address: tunnel,
            mac: derived_vxlan_mac(&name),
            host_address: v4(u32::from(local) + i),
        });
        desired.routes.insert(DesiredRoute {
            dst: IpNet::V4(Ipv4Net::new(tunnel, RECONCILE_BLOCK_PREFIX)?),
            target: RouteTarget::Vxlan { gateway: tunnel },
        });
    }
    Ok(desired)
}

/// One reconcile pass: time, kernel writes, failures, netlink requests sent.
type ReconcilePass = (Duration, usize, Vec<String>, u64);

fn reconcile(remote_nodes: usize) -> Result<(Table, Vec<Goal>)> {
    require_root().map_err(|e| anyhow!(e))?;
    require_binary("ip", "iproute2").map_err(|e| anyhow!(e))?;
    require_binary("nft", "nftables").map_err(|e| anyhow!(e))?;
    let desired = reconcile_desired(remote_nodes)?;
    let netns = TestNetns::new("cb-node").map_err(|e| anyhow!("creating a test namespace: {e}"))?;
    netns
        // No dummy links on this kernel: a veth pair whose peer stays in the namespace.
        .ip(&[
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            UPLINK_PEER,
        ])
        .and_then(|_| netns.ip(&["link", "set", UPLINK_PEER, "up"]))
        .and_then(|_| netns.ip(&["addr", "add", "198.18.0.1/18", "dev", UPLINK]))
        .and_then(|_| netns.ip(&["link", "set", UPLINK, "up"]))
        .map_err(|e| anyhow!("preparing the underlay in {}: {e}", netns.name()))?;
    let handle = Netns::open(&netns.path())?;
    let passes = handle.run(|| -> Result<Vec<ReconcilePass>> {
        let mut dataplane = Dataplane::new()?;
        let mut passes = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let sent_before = dataplane.netlink_requests();
            let report = dataplane.apply(&desired)?;
            passes.push((
                started.elapsed(),
                report.writes(),
                report.failures.clone(),
                dataplane.netlink_requests() - sent_before,
            ));
        }
        Ok(passes)
    })??;
    let routes = netns
        .ip(&["-4", "route", "show", "dev", "vxlan.calico"])
        .map_err(|e| anyhow!(e))?
        .lines()
        .count();
    drop(netns);
    let mut table = Table::new(
        &format!(
            "Reconcile from empty: VXLAN device, {remote_nodes} VTEPs and {remote_nodes} remote block routes (/{RECONCILE_BLOCK_PREFIX}) in a test namespace"
        ),
        &[
            "pass",
            "time (ms)",
            "kernel writes",
            "netlink requests",
            "failures",
        ],
    );
    for (i, (time, writes, failures, requests)) in passes.iter().enumerate() {
        table.push(vec![
            if i == 0 {
                "first (from empty)"
            } else {
                "second (no change)"
            }
            .into(),
            format!("{:.1}", time.as_secs_f64() * 1e3),
            thousands(*writes as f64),
            thousands(*requests as f64),
            failures.len().to_string(),
        ]);
    }
    let failures: Vec<&String> = passes.iter().flat_map(|p| &p.2).collect();
    if let Some(first) = failures.first() {
        bail!("{} writes failed, the first: {first}", failures.len());
    }
    if routes < remote_nodes {
        bail!("only {routes} of {remote_nodes} routes are on vxlan.calico after the apply");
    }
    let second_writes = passes.get(1).map_or(usize::MAX, |p| p.1);
    let goals = vec![
        Goal {
            name: format!("reconcile {remote_nodes} remote block routes from empty"),
            met: None,
            informational: true,
            detail: format!(
                "{:.1} ms, {} kernel writes, {} netlink requests",
                passes[0].0.as_secs_f64() * 1e3,
                thousands(passes[0].1 as f64),
                thousands(passes[0].3 as f64)
            ),
        },
        Goal {
            name: "second reconcile writes nothing".into(),
            met: Some(second_writes == 0),
            informational: false,
            detail: format!("{second_writes} writes"),
        },
    ];
    Ok((table, goals))
}

// ---------------------------------------------------------------------------------------------
// WorkloadEndpoint write -> route in the kernel, through a real calico-node

const ROUTE_GOAL_P99_MS: f64 = 10.0;
/// Local endpoints' addresses (outside every block: Felix routes an endpoint's addresses as written).
const LOCAL_BASE: u32 = u32::from_be_bytes([198, 19, 200, 0]);
/// Remote nodes' blocks start here, clear of the block calico-node claims for its tunnel address.
const REMOTE_BLOCK_BASE: u32 = u32::from_be_bytes([198, 19, 64, 0]);
/// Endpoint numbers (and so interface names) of this host's prefilled endpoints and the timed ones.
const LOCAL_ID_BASE: usize = 1_000_000;
const WRITTEN_ID_BASE: usize = 2_000_000;
/// How often the kernel's routes are dumped while waiting for one.
const POLL: Duration = Duration::from_micros(500);

fn host_iface(id: usize) -> String {
    format!("cali{id:011x}")
}

fn peer_iface(id: usize) -> String {
    format!("bp{id:011x}")
}

/// `ip -batch` lines for the host namespace making endpoint `id`'s veth pair, its peer in `pod_ns`.
fn veth_lines(id: usize, pod_ns: &str) -> String {
    let (host, peer) = (host_iface(id), peer_iface(id));
    format!("link add {host} type veth peer name {peer} netns {pod_ns}\nlink set {host} up\n")
}

/// `ip -batch` lines for the pod namespace bringing endpoint `id`'s peer up.
fn peer_up_lines(id: usize) -> String {
    format!("link set {} up\n", peer_iface(id))
}

/// Endpoint `id`'s veth pair, both ends up: the host end in `host`, the peer in `pod` (one namespace
/// holds every peer, so the host namespace has one link per endpoint, as with real pods).
fn make_veths(
    ids: &[usize],
    host: &TestNetns,
    pod: &TestNetns,
    dir: &std::path::Path,
) -> Result<()> {
    let lines: String = ids.iter().map(|&id| veth_lines(id, pod.name())).collect();
    ip_batch(host, &lines, dir)?;
    let lines: String = ids.iter().map(|&id| peer_up_lines(id)).collect();
    ip_batch(pod, &lines, dir)
}

fn ip_batch(netns: &TestNetns, lines: &str, dir: &std::path::Path) -> Result<()> {
    let file = dir.join("ip-batch");
    std::fs::write(&file, lines)?;
    let path = file.to_string_lossy().into_owned();
    netns
        .ip(&["-batch", &path])
        .map_err(|e| anyhow!("ip -batch in {}: {e}", netns.name()))?;
    Ok(())
}

fn wep_resource(id: usize, node: usize, ip: Ipv4Addr) -> Result<Resource> {
    match endpoint_event(id, node, ip)? {
        SyncEvent::Put(kv) => {
            calico_model::resource::decode_kv(&kv).map_err(|e| anyhow!("bench endpoint: {e}"))
        }
        _ => bail!("an endpoint event is a put"),
    }
}

/// The cluster of the route part as raw writes: 19 remote nodes with their blocks, 9,500 remote
/// endpoints and 500 local ones (this host's Node and the pool are calico-node's own at startup).
fn route_cluster(endpoints: usize, local: usize) -> Result<Vec<calico_datastore::WriteOp>> {
    let mut ops = Vec::new();
    let put = |event: SyncEvent| match event {
        SyncEvent::Put(kv) => Ok(calico_datastore::WriteOp::Put {
            key: kv.key,
            value: kv.value,
        }),
        _ => Err(anyhow!("a cluster object is a put")),
    };
    let remote = endpoints - local;
    let mut next_block = REMOTE_BLOCK_BASE;
    let mut id = 0;
    for node in 1..CLUSTER_NODES {
        let count =
            remote / (CLUSTER_NODES - 1) + usize::from(node <= remote % (CLUSTER_NODES - 1));
        let first = v4(next_block);
        ops.push(put(node_event(node, first)?)?);
        let needed = count as u32 + 1;
        let mut block: Option<Block> = None;
        for k in 0..needed {
            if k % BLOCK_SIZE == 0 {
                if let Some(full) = block.take() {
                    ops.push(put(block_event(&full))?);
                }
                let cidr = IpNet::V4(Ipv4Net::new(v4(next_block), 26)?);
                next_block += BLOCK_SIZE;
                block = Some(Block::new(
                    cidr,
                    Some(format!("host:{}", node_name(node))),
                    None,
                ));
            }
            let ip = v4(u32::from(first) + k);
            if let Some(block) = block.as_mut() {
                block
                    .assign(IpAddr::V4(ip), &allocation(node, id))
                    .map_err(|e| anyhow!("prefilling a block: {e}"))?;
            }
            if k > 0 {
                ops.push(put(endpoint_event(id, node, ip)?)?);
            }
            id += 1;
        }
        if let Some(block) = block {
            ops.push(put(block_event(&block))?);
        }
    }
    for n in 0..local {
        ops.push(put(endpoint_event(
            LOCAL_ID_BASE + n,
            0,
            v4(LOCAL_BASE + n as u32),
        )?)?);
    }
    Ok(ops)
}

fn calico_node_binary() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("calico-bench has no directory")?
        .join("calico-node");
    if !path.is_file() {
        bail!(
            "{} is missing: build it (cargo build --release -p calico-node, or run scripts/bench.sh node)",
            path.display()
        );
    }
    Ok(path)
}

/// /32 routes in the main table, by destination.
fn host_routes(netlink: &mut calico_netlink::Netlink) -> Result<std::collections::HashSet<IpNet>> {
    Ok(netlink
        .routes(calico_netlink::Family::V4, Some(calico_netlink::TABLE_MAIN))?
        .into_iter()
        .filter(|r| r.dst.prefix_len() == 32)
        .map(|r| r.dst)
        .collect())
}

/// When set, the route part runs calico-node at debug severity and writes its log to this path.
const NODE_LOG_ENV: &str = "CALICO_BENCH_NODE_LOG";

fn route_latency(endpoints: usize, local: usize, writes: usize) -> Result<(Table, Vec<Goal>)> {
    require_root().map_err(|e| anyhow!(e))?;
    require_binary("ip", "iproute2").map_err(|e| anyhow!(e))?;
    require_binary("nft", "nftables").map_err(|e| anyhow!(e))?;
    let node_binary = calico_node_binary()?;
    let runtime = tokio::runtime::Handle::current();
    let dir = tempfile::tempdir()?;
    let datastore = dir.path().join("datastore.db");
    let host = TestNetns::new("cb-rhost").map_err(|e| anyhow!(e))?;
    let peer = TestNetns::new("cb-rpeer").map_err(|e| anyhow!(e))?;
    calico_testutil::netns::veth_pair(
        &host,
        "eth0",
        "198.18.0.2/24",
        &peer,
        "peer0",
        "198.18.0.1/24",
    )
    .map_err(|e| anyhow!(e))?;
    let pod = TestNetns::new("cb-rpod").map_err(|e| anyhow!(e))?;

    // The cluster, written before calico-node starts, so its first sync holds all of it.
    let ops = route_cluster(endpoints, local)?;
    let store: std::sync::Arc<dyn calico_datastore::Store> =
        std::sync::Arc::new(calico_datastore::embedded::EmbeddedStore::open(&datastore)?);
    runtime.block_on(async {
        let max = store.max_batch_ops().max(1);
        for chunk in ops.chunks(max) {
            store.batch(chunk.to_vec()).await?;
        }
        anyhow::Ok(())
    })?;
    let local_ids: Vec<usize> = (0..local).map(|n| LOCAL_ID_BASE + n).collect();
    make_veths(&local_ids, &host, &pod, dir.path())?;

    let mut command = std::process::Command::new("ip");
    command
        .args(["netns", "exec", host.name()])
        .arg(&node_binary)
        .env("NODENAME", node_name(0))
        .env("CALICO_STATE_DIR", dir.path())
        .env("DATASTORE_TYPE", "embedded")
        .env("CALICO_DATASTORE_PATH", &datastore)
        .env("IP_AUTODETECTION_METHOD", "interface=^eth0$")
        .env("CALICO_IPV4POOL_CIDR", "198.19.0.0/16")
        .env("CALICO_IPV4POOL_VXLAN", "Always")
        .env_remove("ETCD_ENDPOINTS");
    if std::env::var_os(NODE_LOG_ENV).is_some() {
        command.env("FELIX_LOGSEVERITYSCREEN", "debug");
    }
    let mut node =
        calico_testutil::netns::ReadChild::spawn(&mut command).map_err(|e| anyhow!(e))?;

    let handle = Netns::open(&host.path())?;
    let client = calico_datastore::client::Client::new(store);
    let outcome = handle.run(|| -> Result<(Vec<f64>, Vec<f64>, Duration)> {
        let mut netlink = calico_netlink::Netlink::new()?;
        // Ready: every local endpoint's route is in the kernel.
        let started = Instant::now();
        let expected: Vec<IpNet> = (0..local)
            .map(|n| IpNet::V4(Ipv4Net::from(v4(LOCAL_BASE + n as u32))))
            .collect();
        loop {
            let routes = host_routes(&mut netlink)?;
            if expected.iter().all(|dst| routes.contains(dst)) {
                break;
            }
            check_cancelled()?;
            if started.elapsed() > Duration::from_secs(40) {
                bail!(
                    "calico-node did not program the {local} local routes within 40 s ({} of them present)",
                    expected.iter().filter(|d| routes.contains(d)).count()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let ready = started.elapsed();
        let mut times = Vec::with_capacity(writes);
        let mut write_times = Vec::with_capacity(writes);
        for n in 0..writes {
            check_cancelled()?;
            let id = WRITTEN_ID_BASE + n;
            let ip = v4(LOCAL_BASE + 0x1000 + n as u32);
            make_veths(&[id], &host, &pod, dir.path())?;
            let resource = wep_resource(id, 0, ip)?;
            let dst = IpNet::V4(Ipv4Net::from(ip));
            let started = Instant::now();
            runtime
                .block_on(client.create(resource))
                .map_err(|e| anyhow!("writing endpoint {id}: {e}"))?;
            write_times.push(started.elapsed().as_secs_f64() * 1e3);
            loop {
                if host_routes(&mut netlink)?.contains(&dst) {
                    break;
                }
                if started.elapsed() > Duration::from_secs(5) {
                    bail!("the route to {ip} did not appear within 5 s of its endpoint's write");
                }
                std::thread::sleep(POLL);
            }
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        write_times.sort_by(f64::total_cmp);
        Ok((times, write_times, ready))
    })?;
    node.kill();
    let stderr = node
        .wait_timeout(Duration::from_secs(5))
        .map(|status| String::from_utf8_lossy(&node.into_output(status).stderr).into_owned())
        .unwrap_or_default();
    if let Some(path) = std::env::var_os(NODE_LOG_ENV) {
        std::fs::write(&path, &stderr)
            .map_err(|e| anyhow!("writing calico-node's log to {path:?}: {e}"))?;
    }
    let (times, write_times, ready) = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{error:#}\ncalico-node's last log lines:\n{}",
                tail.join("\n")
            );
        }
    };
    drop(pod);
    drop(host);
    drop(peer);
    let pick = |p| percentile(&times, p).unwrap_or(f64::NAN);
    let (p50, p95, p99, max) = (pick(50.0), pick(95.0), pick(99.0), pick(100.0));
    let mut table = Table::new(
        &format!(
            "WorkloadEndpoint write (datastore client, embedded store) → its /32 route in the kernel, a real calico-node, {} endpoints in the cluster ({local} on this host), {writes} writes; routes polled every {} µs",
            thousands(endpoints as f64),
            POLL.as_micros()
        ),
        &[
            "",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "start → local routes in (s)",
        ],
    );
    let w = |p| percentile(&write_times, p).unwrap_or(f64::NAN);
    table.push(vec![
        "the write itself (client.create returns)".into(),
        format!("{:.2}", w(50.0)),
        format!("{:.2}", w(95.0)),
        format!("{:.2}", w(99.0)),
        format!("{:.2}", w(100.0)),
        String::new(),
    ]);
    table.push(vec![
        "write → route in the kernel".into(),
        format!("{p50:.2}"),
        format!("{p95:.2}"),
        format!("{p99:.2}"),
        format!("{max:.2}"),
        format!("{:.2}", ready.as_secs_f64()),
    ]);
    let goals = vec![Goal {
        name: format!(
            "WorkloadEndpoint write → route p99 ≤ {ROUTE_GOAL_P99_MS} ms with {} endpoints",
            thousands(endpoints as f64)
        ),
        met: Some(p99 <= ROUTE_GOAL_P99_MS),
        informational: false,
        detail: format!("p99 {p99:.2} ms, p50 {p50:.2} ms"),
    }];
    Ok((table, goals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_test_range(ip: Ipv4Addr) -> bool {
        ip.octets()[0] == 198 && (ip.octets()[1] == 18 || ip.octets()[1] == 19)
    }

    #[test]
    fn reconcile_state_has_one_distinct_route_and_vtep_per_remote_node_in_the_test_range() {
        let desired = reconcile_desired(5_000).expect("5,000 nodes fit");
        assert_eq!(desired.routes.len(), 5_000);
        assert_eq!(desired.vteps.len(), 5_000);
        for route in &desired.routes {
            let IpNet::V4(dst) = route.dst else {
                panic!("an IPv6 route {:?}", route.dst)
            };
            assert_eq!(dst.prefix_len(), 28);
            assert!(
                in_test_range(dst.network()) && in_test_range(dst.broadcast()),
                "{dst}"
            );
        }
        let hosts: std::collections::HashSet<Ipv4Addr> =
            desired.vteps.iter().map(|v| v.host_address).collect();
        assert_eq!(hosts.len(), 5_000);
        assert!(hosts.iter().all(|ip| in_test_range(*ip)));
        assert_eq!(
            desired.vxlan.as_ref().map(|d| d.parent.as_str()),
            Some(UPLINK)
        );
    }

    #[test]
    fn reconcile_refuses_more_nodes_than_the_test_range_holds() {
        assert!(reconcile_desired(9_000).is_err());
    }

    #[test]
    fn calculation_cluster_holds_the_asked_endpoints_with_500_on_this_host() {
        for endpoints in [1_000, 10_000] {
            let cluster = cluster(endpoints).expect("cluster");
            assert_eq!(cluster.model.endpoint_count(), endpoints);
            assert_eq!(cluster.model.endpoints.len(), 500);
            assert_eq!(cluster.model.nodes.len(), 20);
            let desired = compute(&cluster.model, &cluster.host);
            assert_eq!(desired.workloads.len(), 500);
            // A VXLAN route to each of the 19 other nodes' blocks.
            let vxlan_routes = desired
                .routes
                .iter()
                .filter(|r| matches!(r.target, RouteTarget::Vxlan { .. }))
                .count();
            assert!(vxlan_routes >= 19, "{vxlan_routes} VXLAN routes");
        }
    }

    #[test]
    fn route_cluster_writes_every_endpoint_once() {
        let ops = route_cluster(10_000, 500).expect("cluster");
        let keys: Vec<&str> = ops
            .iter()
            .map(|op| match op {
                calico_datastore::WriteOp::Put { key, .. } => key.as_str(),
                other => panic!("not a put: {other:?}"),
            })
            .collect();
        let unique: std::collections::HashSet<&&str> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "a key written twice");
        let endpoints = keys
            .iter()
            .filter(|k| k.contains("/workloadendpoints/"))
            .count();
        assert_eq!(endpoints, 10_000);
    }
}
