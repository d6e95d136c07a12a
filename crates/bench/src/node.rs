//! The calico-node core: calculation time per event at two cluster sizes (in-process), and one
//! reconcile of a 5,000-node cluster's remote block routes in a test network namespace (root).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use calico_api::Resource;
use calico_datastore::KeyValue;
use calico_datastore::client::{encode, resource_key_of};
use calico_datastore::syncer::SyncEvent;
use calico_felix::dataplane::Dataplane;
use calico_felix::desired::{
    Desired, DesiredRoute, HostContext, RouteTarget, VXLAN_OVERHEAD, VXLAN_PORT, VXLAN_VNI, Vtep,
    VxlanDevice, compute, derived_vxlan_mac,
};
use calico_felix::model::Model;
use calico_ipam::block::{ATTR_NODE, AllocationAttribute, Block};
use calico_ipam::model::block_key;
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
}

#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// Events timed per kind and cluster size in the calculation part.
    #[arg(long, default_value_t = 190)]
    pub events: usize,
    /// Remote nodes (one block route and one VTEP each) in the reconcile part.
    #[arg(long, default_value_t = 5_000)]
    pub remote_nodes: usize,
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
            "name": format!("{}-k8s-{pod}-eth0", node_name(node)),
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
/// host's context, each node's blocks (the last one has room), and the next free block base.
struct Cluster {
    model: Model,
    host: HostContext,
    blocks: Vec<Vec<Block>>,
    next_block: u32,
}

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
    let mut blocks = Vec::new();
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
        blocks.push(node_blocks);
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
    };
    Ok(Cluster {
        model,
        host,
        blocks,
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
                    let block = cluster.blocks[remote]
                        .last_mut()
                        .context("a node without blocks")?;
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
            "calico-node calculation per event (model.apply + compute when it changes), {CLUSTER_NODES} nodes, 500 endpoints on this host, {events} events per kind"
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
    let fill = |endpoints: usize| (endpoints - LOCAL_ENDPOINTS) / (CLUSTER_NODES - 1) % 64 + 1;
    table.push(vec![
        format!(
            "(a block event decodes that block: its allocations are ~{} at 1k and ~{} at 10k here, ≤ 64 at any size)",
            fill(1_000),
            fill(10_000)
        ),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
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
    let passes = handle.run(|| -> Result<Vec<(Duration, usize, Vec<String>)>> {
        let mut dataplane = Dataplane::new()?;
        let mut passes = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let report = dataplane.apply(&desired)?;
            passes.push((started.elapsed(), report.writes(), report.failures.clone()));
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
        &["pass", "time (ms)", "kernel writes", "failures"],
    );
    for (i, (time, writes, failures)) in passes.iter().enumerate() {
        table.push(vec![
            if i == 0 {
                "first (from empty)"
            } else {
                "second (no change)"
            }
            .into(),
            format!("{:.1}", time.as_secs_f64() * 1e3),
            thousands(*writes as f64),
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
                "{:.1} ms, {} kernel writes",
                passes[0].0.as_secs_f64() * 1e3,
                thousands(passes[0].1 as f64)
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
