//! `calicoctl ipam show`: usage per pool and block, one address, borrowed addresses, the configuration.

use std::net::IpAddr;

use anyhow::{Result, anyhow};
use calico_ipam::block::{ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TYPE};
use calico_ipam::model::block_key;
use calico_ipam::{Block, Ipam};
use clap::Args;
use ipnet::IpNet;

use super::parse_ip;
use super::table::{go_g5, with_percentage};
use crate::table::box_table;

#[derive(Args)]
#[group(multiple = false)]
pub struct ShowArgs {
    /// Report whether this specific IP address is in use.
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// Show detailed information for IP blocks as well as pools.
    #[arg(long = "show-blocks")]
    pub show_blocks: bool,
    /// Show detailed information for "borrowed" IP addresses.
    #[arg(long = "show-borrowed")]
    pub show_borrowed: bool,
    /// Show current Calico IPAM configuration.
    #[arg(long = "show-configuration")]
    pub show_configuration: bool,
}

pub async fn run(ipam: &Ipam, args: ShowArgs) -> Result<()> {
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

/// As Calico's calicoctl prints one address: its handle, then the owner's attributes sorted by key.
async fn show_ip(ipam: &Ipam, ip: IpAddr) -> Result<()> {
    match ipam.assignment_of(ip).await? {
        None => println!("{ip} is not assigned"),
        Some((_, attr)) => {
            println!("IP {ip} is in use");
            println!(
                "Handle ID: {}",
                attr.handle_id.as_deref().unwrap_or("<none>")
            );
            if attr.secondary.is_empty() {
                println!("No Active Owner attributes defined");
            } else {
                println!("Active Owner Attributes:");
                for (k, v) in &attr.secondary {
                    println!("  {k}: {v}");
                }
            }
        }
    }
    Ok(())
}

async fn show_utilization(ipam: &Ipam, show_blocks: bool) -> Result<()> {
    let mut pools = ipam.pools().await?;
    // Listed by CIDR (IPv4 first), as Calico lists them, whatever the pools are named.
    pools.sort_by_key(|p| p.cidr);
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
