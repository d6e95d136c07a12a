//! `calicoctl ipam check`: IPAM's records against workload endpoints and nodes, and the report file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use calico_api::{Kind, Spec};
use calico_datastore::Store;
use calico_datastore::client::{Client, ClientError};
use calico_ipam::check::{
    CheckInput, CheckResult, ClusterMeta, HandleRecord, InUse, Report, check, node_addresses,
    workload_addresses,
};
use calico_ipam::model::{HANDLE_PREFIX, block_key};
use calico_ipam::{AffinityState, Block, Handle, Ipam};
use clap::Args;

#[derive(Args)]
pub struct CheckArgs {
    /// Print all IPs that are checked.
    #[arg(long = "show-all-ips")]
    pub show_all_ips: bool,
    /// Print all IPs that are leaked or not allocated properly.
    #[arg(long = "show-problem-ips")]
    pub show_problem_ips: bool,
    /// Path to output report file.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Accepted for compatibility (calico-rs reads endpoints from its own datastore).
    #[arg(long = "kubeconfig")]
    pub kubeconfig: Option<String>,
}

/// ClusterInformation `default` as a report records it; empty when there is none yet.
pub(super) async fn cluster_meta(client: &Client) -> Result<ClusterMeta> {
    match client.get(Kind::ClusterInformation, None, "default").await {
        Ok(info) => {
            let Spec::ClusterInformation(spec) = &info.spec else {
                return Ok(ClusterMeta::default());
            };
            Ok(ClusterMeta {
                cluster_guid: spec.cluster_guid.clone(),
                cluster_type: spec.cluster_type.clone(),
                revision: info.metadata.resource_version.clone().unwrap_or_default(),
                datastore_locked: spec.datastore_ready == Some(false),
            })
        }
        Err(ClientError::NotFound { .. }) => Ok(ClusterMeta::default()),
        Err(e) => Err(anyhow!("failed to read ClusterInformation: {e}")),
    }
}

async fn handle_records(store: &Arc<dyn Store>) -> Result<Vec<HandleRecord>> {
    let listed = store
        .list(HANDLE_PREFIX, None)
        .await
        .context("failed to list handles")?;
    let mut out = Vec::new();
    for kv in listed.kvs {
        let Some(id) = kv.key.strip_prefix(HANDLE_PREFIX) else {
            continue;
        };
        let handle: Handle = serde_json::from_slice(&kv.value)
            .with_context(|| format!("handle {id} cannot be read"))?;
        if !handle.deleted {
            out.push(HandleRecord {
                id: id.to_string(),
                revision: kv.mod_revision,
            });
        }
    }
    Ok(out)
}

pub async fn run(client: &Client, ipam: &Ipam, args: CheckArgs, version: &str) -> Result<()> {
    let _ = &args.kubeconfig;
    let show_all = args.show_all_ips;
    let show_problems = show_all || args.show_problem_ips;
    println!("Checking IPAM for inconsistencies...");
    println!();
    let meta = cluster_meta(client).await?;

    println!("Loading all IPAM blocks...");
    let mut blocks: Vec<Block> = ipam
        .blocks()
        .await
        .map_err(|e| anyhow!("failed to list IPAM blocks: {e}"))?
        .into_iter()
        .map(|b| b.block)
        .collect();
    blocks.sort_by_key(|b| block_key(b.cidr));
    println!("Found {} IPAM blocks.", blocks.len());
    let mut allocations = 0;
    for b in &blocks {
        println!(
            " IPAM block {} affinity={}:",
            b.cidr,
            b.affinity.as_deref().unwrap_or("<none>")
        );
        for (ip, attr) in b.allocated() {
            if attr.released_at.is_some() {
                continue;
            }
            allocations += 1;
            if show_all {
                println!(
                    "  {ip} allocated; attrs {}",
                    calico_ipam::check::format_attrs(attr)
                );
            }
        }
    }
    println!("IPAM blocks record {allocations} allocations.");
    println!();

    println!("Loading all IPAM pools...");
    let pools = ipam
        .pools()
        .await
        .map_err(|e| anyhow!("failed to load IP pools: {e}"))?;
    let active: Vec<_> = pools.iter().filter(|p| !p.disabled).collect();
    for p in &active {
        println!("  {}", p.cidr);
    }
    println!("Found {} active IP pools.", active.len());
    println!();

    let mut in_use: Vec<InUse> = Vec::new();
    let print_owned = |used: &[InUse]| {
        if show_all {
            for u in used {
                println!("  {} belongs to {}", u.ip, u.owner.friendly_name());
            }
        }
    };
    println!("Loading all nodes.");
    let (nodes, _) = client
        .list(Kind::Node, None)
        .await
        .map_err(|e| anyhow!("failed to list nodes: {e}"))?;
    let mut node_ips = 0;
    for n in &nodes {
        let used = node_addresses(n).map_err(|e| anyhow!(e))?;
        print_owned(&used);
        node_ips += used.len();
        in_use.extend(used);
    }
    println!("Found {node_ips} node tunnel IPs.");
    println!();

    println!("Loading all workload endpoints.");
    let (weps, _) = client
        .list(Kind::WorkloadEndpoint, None)
        .await
        .map_err(|e| anyhow!("failed to list workload endpoints: {e}"))?;
    let mut wep_ips = 0;
    for w in &weps {
        let used = workload_addresses(w).map_err(|e| anyhow!(e))?;
        print_owned(&used);
        wep_ips += used.len();
        in_use.extend(used);
    }
    println!("Found {wep_ips} workload IPs.");

    let handles = handle_records(ipam.store()).await?;
    let affinities = ipam.affinities(None).await?;
    let result = check(CheckInput {
        blocks: &blocks,
        handles: &handles,
        affinities: &affinities,
        pools: &pools,
        in_use: &in_use,
    });
    println!("Workloads and nodes are using {} IPs.", result.in_use.len());
    println!();
    println!("Loading all handles");

    const NODES_TO_PRINT: usize = 20;
    println!("Looking for top (up to {NODES_TO_PRINT}) nodes by allocations...");
    let top = result.top_nodes();
    for (node, count) in top.iter().take(NODES_TO_PRINT) {
        println!("  {node} has {count} allocations");
    }
    if let Some((_, most)) = top.first() {
        let median = top[top.len() / 2].1;
        println!("Node with most allocations has {most}; median is {median}");
    }
    println!();

    print_findings(&result, show_all, show_problems);
    println!("Check complete; found {} problems.", result.problem_count());

    if let Some(path) = &args.output {
        let report = Report::new(&result, version, &meta);
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text)
            .with_context(|| format!("failed to write the report to {}", path.display()))?;
    }
    Ok(())
}

fn print_findings(result: &CheckResult, show_all: bool, show_problems: bool) {
    let owners_of = |ip: &IpAddr| result.in_use.get(ip).cloned().unwrap_or_default();

    println!("Scanning for IPs that are allocated but not actually in use...");
    for ip in &result.leaked {
        if show_problems {
            for a in result.allocations.get(ip).into_iter().flatten() {
                println!("  {ip} leaked; attrs {}", a.attrs);
            }
        }
    }
    println!(
        "Found {} IPs that are allocated in IPAM but not actually in use.",
        result.leaked.len()
    );

    println!("Scanning for IPs that are in use by a workload or node but not allocated in IPAM...");
    if show_problems {
        for ip in &result.multiple_owners {
            println!("  {ip} has multiple owners.");
        }
        for ip in &result.not_in_pool {
            for o in owners_of(ip) {
                println!(
                    "  {ip} in use by {} is not in any active IP pool.",
                    o.friendly_name()
                );
            }
        }
        for ip in &result.not_allocated {
            for o in owners_of(ip) {
                println!(
                    "  {ip} in use by {} and in active IPAM pool but has no IPAM allocation.",
                    o.friendly_name()
                );
            }
        }
    }
    println!(
        "Found {} in-use IPs that are not in active IP pools.",
        result.not_in_pool.len()
    );
    println!(
        "Found {} in-use IPs that are in active IP pools but have no corresponding IPAM allocation.",
        result.not_allocated.len()
    );
    println!(
        "Found {} in-use IPs that have multiple owners.",
        result.multiple_owners.len()
    );
    println!();

    println!("Scanning for IPAM handles with no matching IPs...");
    if show_all {
        for h in &result.leaked_handles {
            println!("  {} doesn't have any active IPs.", h.id);
        }
    }
    println!(
        "Found {} handles with no matching IPs (and {} handles with matches).",
        result.leaked_handles.len(),
        result.good_handles
    );
    println!("Scanning for IPs with missing handle...");
    if show_problems {
        for h in &result.missing_handles {
            println!("  {h} is in use in a block but doesn't exist.");
        }
    }
    println!(
        "Found {} handles mentioned in blocks with no matching handle resource.",
        result.missing_handles.len()
    );

    println!("Scanning for IPAM blocks with no matching affinity...");
    if show_problems {
        for b in &result.unowned_blocks {
            println!(
                "  {} (affinity={}) has no confirmed affinity.",
                b.cidr,
                b.affinity.as_deref().unwrap_or("<none>")
            );
        }
    }
    println!(
        "Found {} IPAM blocks with no matching affinity.",
        result.unowned_blocks.len()
    );
    println!("Scanning for block affinities with no matching block...");
    if show_problems {
        for a in &result.orphan_affinities {
            let why = match &a.block_owner {
                Some(owner) => format!("the block belongs to {owner}"),
                None => "the block does not exist".to_string(),
            };
            println!(
                "  affinity of {} for {} ({}): {why}.",
                a.host,
                a.cidr,
                state_name(a.state)
            );
        }
    }
    println!(
        "Found {} block affinities with no matching block.",
        result.orphan_affinities.len()
    );
}

/// An affinity state as stored (`pending`, `confirmed`, `pendingDeletion`).
fn state_name(state: AffinityState) -> &'static str {
    match state {
        AffinityState::Pending => "pending",
        AffinityState::Confirmed => "confirmed",
        AffinityState::PendingDeletion => "pendingDeletion",
    }
}
