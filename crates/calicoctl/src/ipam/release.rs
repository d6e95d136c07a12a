//! `calicoctl ipam release`: one address, or the leaks check reports found. The releasing itself is
//! calico-ipam's; this module checks the reports and prints what happened.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use calico_datastore::client::Client;
use calico_ipam::Ipam;
use calico_ipam::check::{HandleInfo, Report, merge_reports};
use calico_ipam::cleanup::HandleDeletion;
use clap::Args;

use super::check::cluster_meta;
use super::parse_ip;

#[derive(Args)]
pub struct ReleaseArgs {
    /// IP address to release.
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// Release all leaked addresses from the report; with several reports, only those leaked in all.
    #[arg(long = "from-report")]
    pub from_report: Vec<PathBuf>,
    /// Release even though the data store is not locked or the report came from another version.
    #[arg(long = "force")]
    pub force: bool,
}

pub async fn run(client: &Client, ipam: &Ipam, args: ReleaseArgs, version: &str) -> Result<()> {
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
        match ipam.release_leaked(&leaked).await {
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
        delete_handles(ipam, &handles).await;
    }
    Ok(())
}

/// Delete leaked handles that have not changed since the report, printing progress as Calico does.
async fn delete_handles(ipam: &Ipam, handles: &[HandleInfo]) {
    println!("Deleting {} handles...", handles.len());
    println!("Key: '.' = Deleted OK; 'x' = skip, handle missing/changed.");
    let (mut deleted, mut skipped, mut errors) = (0, 0, 0);
    let mut progress = String::new();
    let mut failures = Vec::new();
    for (h, outcome) in handles
        .iter()
        .zip(ipam.delete_leaked_handles(handles).await)
    {
        match outcome {
            HandleDeletion::Deleted => {
                deleted += 1;
                progress.push('.');
            }
            HandleDeletion::Skipped => {
                skipped += 1;
                progress.push('x');
            }
            HandleDeletion::Failed(e) => {
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
