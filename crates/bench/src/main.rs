//! calico-bench: the foundation benchmark. Prints figures side by side with in-run references; it makes no
//! pass/fail decision on time, only states which goals this run met.

mod apply;
mod bgp;
mod cni;
mod interrupt;
mod lab;
mod measure;
mod node;
mod policies;
mod report;
mod selector_bench;
mod watch;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::report::Goal;

#[derive(Parser)]
#[command(
    name = "calico-bench",
    about = "The calico-rs foundation benchmark: calicoctl apply/get, watch latency, selector speed, CNI plugin and IPAM"
)]
struct Cli {
    #[command(subcommand)]
    section: Option<Section>,
    /// How many NetworkPolicies the apply section writes and reads back.
    #[arg(long, global = true, default_value_t = 10_000)]
    count: usize,
}

#[derive(Subcommand)]
enum Section {
    /// Every section (the default).
    All,
    /// calicoctl apply -f / get -o yaml on both backends, with plain batched puts as the reference.
    Apply,
    /// Cross-process watch latency on both backends.
    Watch,
    /// Selector evaluations per second against hand-coded Rust.
    Selector,
    /// CNI plugin ADD/DEL latency and bursts beside ptp + host-local, and IPAM allocation speed.
    Cni(cni::CniArgs),
    /// (root) A multi-host calico-lab: VXLAN throughput, CNI ADD -> reachable, calico-node memory/CPU,
    /// `calico-lab up` time; BGP mode: throughput, a new block's route on every host, mesh and
    /// route-reflector convergence (`--only bgp-...`). Not part of `all`.
    Lab(lab::LabArgs),
    /// (root) calico-node's core: calculation time per event at 1k and 10k endpoints, and reconciling
    /// 5,000 remote block routes from empty. Not part of `all`.
    Node(node::NodeArgs),
    /// (root) The BGP speaker beside BIRD 2 in test namespaces: ingest of 1 and 10 peers × 100,000
    /// prefixes (time, memory per route), best-path changes, 2,500 route-reflector clients with a route each.
    /// Not part of `all`.
    Bgp(bgp::BgpArgs),
    /// Write the apply section's input (a multi-document YAML of --count policies) to a file.
    Generate {
        #[arg(long)]
        out: std::path::PathBuf,
        /// One NetworkPolicyList document instead of one document per policy.
        #[arg(long)]
        list: bool,
    },
    /// Internal: the writing side of the watch benchmark.
    #[command(hide = true)]
    Writer(watch::WriterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("calico-bench: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("calico-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let section = cli.section.unwrap_or(Section::All);
    match section {
        Section::Writer(args) => return watch::writer(args).await,
        Section::Generate { out, list } => {
            let policies = policies::generate(cli.count, apply::POLICY_SEED);
            let text = if list {
                policies::to_list_yaml(&policies)
            } else {
                policies::to_multi_document_yaml(&policies)
            }?;
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} NetworkPolicies to {}", cli.count, out.display());
            return Ok(());
        }
        _ => {}
    }
    let (run_apply, run_watch, run_selector) = match section {
        Section::All | Section::Writer(_) | Section::Generate { .. } => (true, true, true),
        Section::Apply => (true, false, false),
        Section::Watch => (false, true, false),
        Section::Selector => (false, false, true),
        Section::Cni(_) | Section::Lab(_) | Section::Node(_) | Section::Bgp(_) => {
            (false, false, false)
        }
    };
    let cni_args = match &section {
        Section::All => Some(cni::CniArgs::default()),
        Section::Cni(args) => Some(args.clone()),
        _ => None,
    };
    let started = Instant::now();
    let mut goals: Vec<Goal> = Vec::new();
    if run_apply {
        let (table, section_goals) = apply::run(cli.count).await?;
        println!("{}", table.render());
        goals.extend(section_goals);
    }
    if run_watch {
        let (table, section_goals) = watch::run().await?;
        println!("{}", table.render());
        goals.extend(section_goals);
    }
    if run_selector {
        // CPU-bound: keep it off the async worker threads.
        let (table, section_goals) = tokio::task::spawn_blocking(selector_bench::run).await??;
        println!("{}", table.render());
        goals.extend(section_goals);
    }
    if let Some(args) = cni_args {
        let (text, section_goals) = cni::run(&args).await?;
        println!("{text}");
        goals.extend(section_goals);
    }
    if let Section::Lab(args) = &section {
        let (text, section_goals) = lab::run(args).await?;
        println!("{text}");
        goals.extend(section_goals);
    }
    if let Section::Node(args) = &section {
        // CPU-bound and blocking netlink work: off the async worker threads.
        let (text, section_goals) = node::run_async(args).await?;
        println!("{text}");
        goals.extend(section_goals);
    }
    if let Section::Bgp(args) = &section {
        let (text, section_goals) = bgp::run_async(args).await?;
        println!("{text}");
        goals.extend(section_goals);
    }
    println!("\n## Goals\n");
    for goal in &goals {
        println!("{}", goal.line());
    }
    println!(
        "\n(total benchmark time {:.1} s; figures vary run to run, compare rows within one run)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
