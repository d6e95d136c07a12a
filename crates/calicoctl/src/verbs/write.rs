//! `calicoctl create | apply | replace | validate -f`: every document checked before anything is written.
//! Kubernetes NetworkPolicy and Namespace documents are written as the Calico policy and profile
//! kube-controllers would sync them to.

use anyhow::{Result, bail};
use calico_api::Resource;
use calico_datastore::client::{Client, ClientError, WriteMode};
use clap::Args;

use super::{Input, count_message, describe_error, load, single_kind};

#[derive(Args)]
pub struct WriteArgs {
    /// File, directory or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    pub filename: String,
    /// Descend into sub-directories of a directory given with -f.
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,
    /// Do nothing (and succeed) when the input holds no resources.
    #[arg(long = "skip-empty")]
    pub skip_empty: bool,
    /// With create: skip resources that already exist.
    #[arg(long = "skip-exists")]
    pub skip_exists: bool,
    /// Namespace for namespaced resources that do not name one.
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

/// `calicoctl validate`: decode, default and validate every document; write nothing.
pub fn validate(args: WriteArgs) -> Result<()> {
    let input = load(
        &args.filename,
        args.recursive,
        args.namespace.as_deref(),
        true,
    )?;
    Input::fail_on_problems(&input.problems)?;
    let resources: Vec<Resource> = input.items.into_iter().map(|(_, r)| r).collect();
    if resources.is_empty() && !args.skip_empty {
        bail!("no resources specified in file {}", args.filename);
    }
    println!("Successfully validated {}", count_message(&resources));
    Ok(())
}

pub async fn write(client: &Client, args: WriteArgs, mode: WriteMode) -> Result<()> {
    let started = std::time::Instant::now();
    let Input {
        items,
        mut problems,
    } = load(
        &args.filename,
        args.recursive,
        args.namespace.as_deref(),
        false,
    )?;
    tracing::debug!(elapsed = ?started.elapsed(), count = items.len(), "read the input");
    let verb = match mode {
        WriteMode::Create => "created",
        WriteMode::Apply => "applied",
        WriteMode::Replace => "replaced",
    };
    if items.is_empty() && problems.is_empty() {
        if args.skip_empty {
            return Ok(());
        }
        bail!("no resources specified in file {}", args.filename);
    }
    let total = items.len();
    let (described, resources): (Vec<String>, Vec<Resource>) = items.into_iter().unzip();
    let kind = single_kind(&resources);
    // Validation and the checks against stored objects, for every document, before any write.
    let prepared = client.prepare_many(resources, mode).await;
    tracing::debug!(elapsed = ?started.elapsed(), "validated and checked against the datastore");
    let mut to_write = Vec::new();
    let mut skipped = 0;
    for (what, p) in described.iter().zip(prepared) {
        match p {
            Ok(w) => to_write.push(Ok(w)),
            Err(ClientError::AlreadyExists { .. })
                if args.skip_exists && mode == WriteMode::Create =>
            {
                skipped += 1
            }
            Err(ClientError::Invalid { errors, .. }) => {
                problems.extend(errors.iter().map(|e| format!("{what}: {e}")))
            }
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    Input::fail_on_problems(&problems)?;
    let results = client.submit(to_write).await;
    tracing::debug!(elapsed = ?started.elapsed(), "written");
    let failed: Vec<&ClientError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let done = results.len() - failed.len() + skipped;
    let kind_text = kind.map(|k| format!(" '{k}'")).unwrap_or_default();
    if failed.is_empty() {
        println!("Successfully {verb} {done}{kind_text} resource(s)");
        return Ok(());
    }
    if done > 0 {
        println!("Partial success: {verb} {done} out of {total}{kind_text} resources:");
    }
    for e in &failed {
        eprintln!("{}", describe_error(e));
    }
    bail!("Hit error: {} resource(s) were not {verb}", failed.len())
}
