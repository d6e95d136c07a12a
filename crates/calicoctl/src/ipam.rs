//! `calicoctl ipam show | check | release | configure`: IP address management as Calico's calicoctl
//! (≤ 3.31) presents it, over the same datastore the other verbs use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use calico_api::{Kind, Spec};
use calico_datastore::client::{Client, ClientError};
use calico_datastore::{Store, StoreError, WriteOp};
use calico_ipam::block::{ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TYPE};
use calico_ipam::check::{
    Allocation, CheckInput, CheckResult, ClusterMeta, HandleInfo, HandleRecord, InUse, Report,
    check, merge_reports, node_addresses, workload_addresses,
};
use calico_ipam::model::{HANDLE_PREFIX, block_key, handle_key};
use calico_ipam::{AffinityState, Block, Handle, Ipam};
use clap::{Args, Subcommand};
use ipnet::IpNet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Args)]
pub struct IpamArgs {
    #[command(subcommand)]
    command: IpamCommand,
}

#[derive(Subcommand)]
enum IpamCommand {
    /// Show IP usage per pool and block, one address, borrowed addresses or the configuration.
    Show(ShowArgs),
    /// Check IPAM's records against workload endpoints and nodes.
    Check(CheckArgs),
    /// Release an address, or the leaks a check report found.
    Release(ReleaseArgs),
    /// Change IPAM's configuration.
    Configure(ConfigureArgs),
}

#[derive(Args)]
#[group(multiple = false)]
struct ShowArgs {
    /// Report whether this specific IP address is in use.
    #[arg(long = "ip")]
    ip: Option<String>,
    /// Show detailed information for IP blocks as well as pools.
    #[arg(long = "show-blocks")]
    show_blocks: bool,
    /// Show detailed information for "borrowed" IP addresses.
    #[arg(long = "show-borrowed")]
    show_borrowed: bool,
    /// Show current Calico IPAM configuration.
    #[arg(long = "show-configuration")]
    show_configuration: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Print all IPs that are checked.
    #[arg(long = "show-all-ips")]
    show_all_ips: bool,
    /// Print all IPs that are leaked or not allocated properly.
    #[arg(long = "show-problem-ips")]
    show_problem_ips: bool,
    /// Path to output report file.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Accepted for compatibility (calico-rs reads endpoints from its own datastore).
    #[arg(long = "kubeconfig")]
    kubeconfig: Option<String>,
}

#[derive(Args)]
struct ReleaseArgs {
    /// IP address to release.
    #[arg(long = "ip")]
    ip: Option<String>,
    /// Release all leaked addresses from the report; with several reports, only those leaked in all.
    #[arg(long = "from-report")]
    from_report: Vec<PathBuf>,
    /// Release even though the data store is not locked or the report came from another version.
    #[arg(long = "force")]
    force: bool,
}

#[derive(Args)]
struct ConfigureArgs {
    /// Set StrictAffinity to true/false. When StrictAffinity is true, borrowing IP addresses is not allowed.
    #[arg(long = "strictaffinity")]
    strict_affinity: Option<String>,
    /// Set the maximum number of blocks that can be affine to a host.
    #[arg(long = "max-blocks-per-host")]
    max_blocks_per_host: Option<String>,
}

pub async fn run(client: &Client, args: IpamArgs, version: &str) -> Result<()> {
    let ipam = Ipam::new(client.store().clone());
    match args.command {
        IpamCommand::Show(a) => show(&ipam, a).await,
        IpamCommand::Check(a) => check_command(client, &ipam, a, version).await,
        IpamCommand::Release(a) => release(client, &ipam, a, version).await,
        IpamCommand::Configure(a) => configure(&ipam, a).await,
    }
}

fn parse_ip(s: &str) -> Result<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| anyhow!("invalid IP address specified: {s:?}"))
}

// ---------------------------------------------------------------------------------------------------
// Tables as olekukonko/tablewriter draws them (calicoctl ≤ 3.31): a `+---+` box, centred headers,
// numbers right-aligned and everything else left-aligned.

fn is_number(cell: &str) -> bool {
    let s = cell.trim();
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let int_ok = digits(int)
        || int
            .split(',')
            .enumerate()
            .all(|(i, g)| digits(g) && if i == 0 { g.len() <= 3 } else { g.len() == 3 })
            && int.contains(',');
    int_ok && frac.is_none_or(digits)
}

pub fn box_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    let line = |out: &mut String| {
        out.push('+');
        for w in &widths {
            out.push_str(&"-".repeat(w + 2));
            out.push('+');
        }
        out.push('\n');
    };
    line(&mut out);
    out.push('|');
    for (h, w) in headers.iter().zip(&widths) {
        let gap = w - width(h);
        let left = gap / 2;
        let _ = write!(out, " {}{h}{} |", " ".repeat(left), " ".repeat(gap - left));
    }
    out.push('\n');
    line(&mut out);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            let pad = " ".repeat(w - width(cell));
            if is_number(cell) {
                let _ = write!(out, " {pad}{cell} |");
            } else {
                let _ = write!(out, " {cell}{pad} |");
            }
        }
        out.push('\n');
    }
    line(&mut out);
    out
}

/// Go's `%.5g` for a count.
pub fn go_g5(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let sci = format!("{value:.4e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..5).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(4 - exp).unwrap_or(0);
        trim(&format!("{value:.decimals$}"))
    }
}

fn with_percentage(n: f64, capacity: f64) -> String {
    format!("{} ({:.0}%)", go_g5(n), 100.0 * n / capacity)
}

// ---------------------------------------------------------------------------------------------------
// show

async fn show(ipam: &Ipam, args: ShowArgs) -> Result<()> {
    if let Some(ip) = &args.ip {
        return show_ip(ipam, parse_ip(ip)?).await;
    }
    if args.show_borrowed {
        return show_borrowed(ipam).await;
    }
    if args.show_configuration {
        return show_configuration(ipam).await;
    }
    show_utilization(ipam, args.show_blocks).await
}

async fn show_ip(ipam: &Ipam, ip: IpAddr) -> Result<()> {
    match ipam.assignment_of(ip).await? {
        None => println!("{ip} is not assigned"),
        Some((_, attr)) => {
            println!("IP {ip} is in use");
            if attr.secondary.is_empty() {
                println!("No attributes defined");
            } else {
                println!("Attributes:");
                for (k, v) in &attr.secondary {
                    println!("  {k}: {v}");
                }
            }
        }
    }
    Ok(())
}

async fn show_utilization(ipam: &Ipam, show_blocks: bool) -> Result<()> {
    let pools = ipam.pools().await?;
    let mut blocks: Vec<Block> = ipam.blocks().await?.into_iter().map(|b| b.block).collect();
    blocks.sort_by_key(|b| block_key(b.cidr));
    let block_row = |b: &Block| {
        let capacity = b.size() as f64;
        let used = (b.size() - b.free_count()) as f64;
        vec![
            "Block".to_string(),
            b.cidr.to_string(),
            go_g5(capacity),
            with_percentage(used, capacity),
            with_percentage(capacity - used, capacity),
        ]
    };
    let mut rows = Vec::new();
    let mut claimed = vec![false; blocks.len()];
    for pool in &pools {
        let mut used = 0f64;
        let mut block_rows = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            if claimed[i] || !overlaps(pool.cidr, b.cidr) {
                continue;
            }
            claimed[i] = true;
            used += (b.size() - b.free_count()) as f64;
            block_rows.push(block_row(b));
        }
        let host_bits = match pool.cidr {
            IpNet::V4(_) => 32,
            IpNet::V6(_) => 128,
        } - i32::from(pool.cidr.prefix_len());
        let capacity = 2f64.powi(host_bits);
        rows.push(vec![
            "IP Pool".to_string(),
            pool.cidr.to_string(),
            go_g5(capacity),
            with_percentage(used, capacity),
            with_percentage(capacity - used, capacity),
        ]);
        if show_blocks {
            rows.extend(block_rows);
        }
    }
    // Blocks of deleted pools are listed (with --show-blocks) without a pool row.
    if show_blocks {
        for (i, b) in blocks.iter().enumerate() {
            if !claimed[i] {
                rows.push(block_row(b));
            }
        }
    }
    print!(
        "{}",
        box_table(
            &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
            &rows
        )
    );
    Ok(())
}

fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

async fn show_borrowed(ipam: &Ipam) -> Result<()> {
    let mut blocks: Vec<Block> = ipam.blocks().await?.into_iter().map(|b| b.block).collect();
    blocks.sort_by_key(|b| block_key(b.cidr));
    let mut rows = Vec::new();
    let mut unclassified = 0;
    for b in &blocks {
        let owner = b
            .affinity
            .as_deref()
            .map(|a| a.split_once(':').map_or(a, |(_, host)| host))
            .unwrap_or("")
            .to_string();
        for (ip, attr) in b.allocated() {
            if attr.released_at.is_some() {
                continue;
            }
            let Some(node) = attr.secondary.get(ATTR_NODE) else {
                unclassified += 1;
                continue;
            };
            if *node == owner {
                continue;
            }
            let (kind, allocated_to) = match attr.secondary.get(ATTR_POD) {
                Some(pod) => (
                    "pod".to_string(),
                    format!(
                        "{}/{pod}",
                        attr.secondary
                            .get(ATTR_NAMESPACE)
                            .map_or("", String::as_str)
                    ),
                ),
                None => (
                    attr.secondary.get(ATTR_TYPE).cloned().unwrap_or_default(),
                    String::new(),
                ),
            };
            rows.push(vec![
                ip.to_string(),
                node.clone(),
                b.cidr.to_string(),
                owner.clone(),
                kind,
                allocated_to,
            ]);
        }
    }
    print!(
        "{}",
        box_table(
            &[
                "IP",
                "BORROWING-NODE",
                "BLOCK",
                "BLOCK OWNER",
                "TYPE",
                "ALLOCATED-TO"
            ],
            &rows
        )
    );
    if unclassified != 0 {
        println!(
            "\nNote: found {unclassified} IP allocations without an explicit node association. Unable to determine if they are borrowed."
        );
    }
    Ok(())
}

async fn show_configuration(ipam: &Ipam) -> Result<()> {
    let config = ipam.config().await.map_err(|e| anyhow!("error: {e}"))?;
    let rows = vec![
        vec!["StrictAffinity".into(), config.strict_affinity.to_string()],
        vec![
            "AutoAllocateBlocks".into(),
            config.auto_allocate_blocks.to_string(),
        ],
        vec![
            "MaxBlocksPerHost".into(),
            config.max_blocks_per_host.to_string(),
        ],
    ];
    print!("{}", box_table(&["PROPERTY", "VALUE"], &rows));
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// check

/// ClusterInformation `default` as a report records it; empty when there is none yet.
async fn cluster_meta(client: &Client) -> Result<ClusterMeta> {
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

async fn check_command(client: &Client, ipam: &Ipam, args: CheckArgs, version: &str) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------------
// release

async fn release(client: &Client, ipam: &Ipam, args: ReleaseArgs, version: &str) -> Result<()> {
    if !args.from_report.is_empty() {
        release_from_reports(client, ipam, &args.from_report, args.force, version).await?;
        println!("You may now unlock the data store.");
        return Ok(());
    }
    let Some(ip) = &args.ip else {
        bail!("give --ip=<IP> or --from-report=<REPORT>");
    };
    let ip = parse_ip(ip)?;
    let released = ipam
        .release_ips(&[ip])
        .await
        .map_err(|e| anyhow!("error: {e}"))?;
    if released.is_empty() {
        bail!("IP address {ip} is not assigned");
    }
    println!("Successfully released IP address {ip}");
    Ok(())
}

async fn release_from_reports(
    client: &Client,
    ipam: &Ipam,
    files: &[PathBuf],
    force: bool,
    version: &str,
) -> Result<()> {
    let meta = cluster_meta(client).await?;
    let mut reports = Vec::new();
    let mut found_current = false;
    for file in files {
        let text = std::fs::read(file)
            .with_context(|| format!("failed to read the report {}", file.display()))?;
        let report: Report = serde_json::from_slice(&text)
            .with_context(|| format!("the report {} is not valid", file.display()))?;
        // Never overridable: releasing another cluster's leaks here would free addresses in use.
        if report.cluster_guid != meta.cluster_guid {
            bail!(
                "cluster does not match the provided report ({}): mismatched cluster GUID. Refusing to release",
                file.display()
            );
        }
        if report.version != version {
            if !force {
                bail!(
                    "the provided report ({}) was produced using a different version ({}) of calicoctl. Refusing to release",
                    file.display(),
                    report.version
                );
            }
            println!(
                "WARNING: Report was produced using a different version of calicoctl. Ignoring due to --force option"
            );
        }
        if report.cluster_info_revision == meta.revision {
            found_current = true;
        }
        reports.push(report);
    }
    if !found_current {
        bail!(
            "the provided reports are all stale - at least one should be up-to-date. Please generate a new report while the data store is locked and try again"
        );
    }
    if !meta.datastore_locked {
        if !force {
            bail!("data store is not locked. Either lock the data store, or re-run with --force");
        }
        println!("WARNING: Data store is not locked. Ignoring due to --force option");
    }

    let (leaked, handles) = merge_reports(&reports);
    if leaked.is_empty() {
        println!("Report didn't contain any leaked IPs to clean up.");
    } else {
        println!("Releasing {} old IPs...", leaked.len());
        match release_unchanged(ipam, &leaked).await {
            Ok(released) => {
                println!("Released {released} IPs successfully");
                let skipped = leaked.len() - released;
                if skipped != 0 {
                    println!(
                        "{skipped} addresses marked as leaked in the report had already been cleaned up."
                    );
                }
            }
            Err(e) => println!(
                "An error occurred while releasing some IPs: {e:#}.  Problems are often caused by an out-of-date IPAM report.  Try regenerating the IPAM report and retry."
            ),
        }
    }
    if handles.is_empty() {
        println!("Report didn't contain any handles to clean up.");
    } else {
        delete_handles(ipam.store(), &handles).await;
    }
    Ok(())
}

/// How often a release that lost a write race re-reads the block.
const RELEASE_ATTEMPTS: usize = 20;

fn is_race(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Conflict { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. }
    )
}

/// Release the report's leaked addresses that are still held by the same handle with the same sequence
/// number: an address released and handed out again since the report is left alone. Each block is
/// changed with one compare-and-swap write together with its handles. Returns how many were released.
async fn release_unchanged(ipam: &Ipam, leaked: &[Allocation]) -> Result<usize> {
    let blocks: Vec<IpNet> = ipam
        .blocks()
        .await?
        .into_iter()
        .map(|b| b.block.cidr)
        .collect();
    let mut by_block: BTreeMap<IpNet, Vec<(IpAddr, &Allocation)>> = BTreeMap::new();
    for a in leaked {
        let Ok(ip) = a.ip.parse::<IpAddr>() else {
            continue;
        };
        if let Some(cidr) = blocks.iter().find(|c| c.contains(&ip)) {
            by_block.entry(*cidr).or_default().push((ip, a));
        }
    }
    let cooldown = ipam.config().await?.ip_cooldown_seconds;
    let mut released = 0;
    for (cidr, wanted) in by_block {
        released += release_in_block(ipam, cidr, &wanted, cooldown).await?;
    }
    Ok(released)
}

async fn release_in_block(
    ipam: &Ipam,
    cidr: IpNet,
    wanted: &[(IpAddr, &Allocation)],
    cooldown_seconds: u64,
) -> Result<usize> {
    let store = ipam.store();
    for _ in 0..RELEASE_ATTEMPTS {
        let Some(stored) = ipam.get_block(cidr).await? else {
            return Ok(0);
        };
        let mut block = stored.block;
        let ips: Vec<IpAddr> = wanted
            .iter()
            .filter(|(ip, a)| {
                block.attribute_of(*ip).is_some_and(|attr| {
                    attr.released_at.is_none()
                        && attr.handle_id == a.handle
                        && a.sequence_number
                            .is_none_or(|seq| block.sequence_of(*ip) == Some(seq))
                })
            })
            .map(|(ip, _)| *ip)
            .collect();
        if ips.is_empty() {
            return Ok(0);
        }
        let now = OffsetDateTime::now_utc();
        let stamp = (cooldown_seconds > 0).then(|| now.format(&Rfc3339).unwrap_or_default());
        let counts = block.release(&ips, stamp.as_deref());
        let cutoff = now - time::Duration::seconds(i64::try_from(cooldown_seconds).unwrap_or(0));
        block.expire_cooldowns(&|at| {
            OffsetDateTime::parse(at, &Rfc3339).map_or(true, |t| t <= cutoff)
        });
        let mut ops = vec![WriteOp::Update {
            key: block_key(cidr),
            value: block.to_json(),
            expected_mod_revision: stored.revision,
        }];
        for (handle, count) in &counts {
            let key = handle_key(handle);
            let Some(kv) = store.get(&key).await? else {
                continue;
            };
            let mut h: Handle = serde_json::from_slice(&kv.value)
                .with_context(|| format!("handle {handle} cannot be read"))?;
            let entry = h.block.entry(cidr.to_string()).or_default();
            *entry = entry.saturating_sub(*count);
            if *entry == 0 {
                h.block.remove(&cidr.to_string());
            }
            ops.push(if h.block.is_empty() {
                WriteOp::Delete {
                    key,
                    expected_mod_revision: Some(kv.mod_revision),
                }
            } else {
                WriteOp::Update {
                    key,
                    value: h.to_json(),
                    expected_mod_revision: kv.mod_revision,
                }
            });
        }
        match store.batch(ops).await {
            Ok(_) => return Ok(ips.len()),
            Err(e) if is_race(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("gave up releasing addresses in block {cidr} after repeated write conflicts")
}

/// Delete leaked handles that have not changed since the report.
async fn delete_handles(store: &Arc<dyn Store>, handles: &[HandleInfo]) {
    println!("Deleting {} handles...", handles.len());
    println!("Key: '.' = Deleted OK; 'x' = skip, handle missing/changed.");
    let (mut deleted, mut skipped, mut errors) = (0, 0, 0);
    let mut progress = String::new();
    let mut failures = Vec::new();
    for h in handles {
        let Ok(revision) = h.revision.parse::<i64>() else {
            skipped += 1;
            progress.push('x');
            continue;
        };
        match store.delete(&handle_key(&h.id), Some(revision)).await {
            Ok(_) => {
                deleted += 1;
                progress.push('.');
            }
            Err(e) if is_race(&e) => {
                skipped += 1;
                progress.push('x');
            }
            Err(e) => {
                errors += 1;
                failures.push(format!("Deleting handle {} failed: {e}.", h.id));
            }
        }
    }
    println!("{progress}");
    for f in failures {
        println!("{f}");
    }
    println!("Released {deleted} handles; {skipped} skipped; {errors} errors.");
}

// ---------------------------------------------------------------------------------------------------
// configure

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

async fn configure(ipam: &Ipam, args: ConfigureArgs) -> Result<()> {
    let strict = args
        .strict_affinity
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse_go_bool(s)
                .ok_or_else(|| anyhow!("invalid value. Use true or false to set strictaffinity"))
        })
        .transpose()?;
    let max_blocks = args
        .max_blocks_per_host
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .ok()
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| anyhow!("invalid value for maxblockhost. Use a valid number"))
        })
        .transpose()?;
    if strict.is_none() && max_blocks.is_none() {
        bail!("at least one configuration option must be specified");
    }
    let current = ipam.config().await.map_err(|e| anyhow!("error: {e}"))?;
    let new_strict = strict.unwrap_or(current.strict_affinity);
    let new_max = max_blocks.unwrap_or(current.max_blocks_per_host);
    if !new_strict && !current.auto_allocate_blocks {
        bail!("error: Cannot disable 'StrictAffinity' and 'AutoAllocateBlocks' at the same time");
    }
    if new_max > 0 && !new_strict {
        bail!("error: MaxBlocksPerHost requires StrictAffinity to be enabled");
    }
    ipam.configure(strict, max_blocks)
        .await
        .map_err(|e| anyhow!("error: {e}"))?;
    if let Some(s) = strict {
        println!("Successfully set StrictAffinity to: {s}");
    }
    if let Some(m) = max_blocks {
        println!("Successfully set MaxBlocksPerHost to: {m}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_gos_percent_5g() {
        assert_eq!(go_g5(0.0), "0");
        assert_eq!(go_g5(64.0), "64");
        assert_eq!(go_g5(65536.0), "65536");
        assert_eq!(go_g5(99999.0), "99999");
        assert_eq!(go_g5(100000.0), "1e+05");
        assert_eq!(go_g5(1048576.0), "1.0486e+06");
        assert_eq!(go_g5(16777216.0), "1.6777e+07");
        assert_eq!(go_g5(2f64.powi(80)), "1.2089e+24");
        assert_eq!(with_percentage(3.0, 64.0), "3 (5%)");
        assert_eq!(with_percentage(15381.0, 16384.0), "15381 (94%)");
    }

    #[test]
    fn tables_look_like_tablewriters() {
        let t = box_table(
            &["PROPERTY", "VALUE"],
            &[
                vec!["StrictAffinity".into(), "false".into()],
                vec!["MaxBlocksPerHost".into(), "0".into()],
            ],
        );
        assert_eq!(
            t,
            "+------------------+-------+\n\
             |     PROPERTY     | VALUE |\n\
             +------------------+-------+\n\
             | StrictAffinity   | false |\n\
             | MaxBlocksPerHost |     0 |\n\
             +------------------+-------+\n"
        );
        let empty = box_table(&["IP", "SINCE"], &[]);
        assert_eq!(
            empty,
            "+----+-------+\n| IP | SINCE |\n+----+-------+\n+----+-------+\n"
        );
        assert!(is_number("65536") && is_number("1,024") && is_number("-1.5"));
        assert!(!is_number("3 (5%)") && !is_number("1e+05") && !is_number("") && !is_number("1,0"));
    }

    #[test]
    fn go_booleans() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
