//! `calicoctl delete`: by file or by kind and names. A deleted node's endpoints, addresses and
//! affinities are released by calico-ipam. A file of Kubernetes objects deletes the Calico
//! resources they were stored as.

use anyhow::{Result, bail};
use calico_api::Kind;
use calico_datastore::client::{Client, ClientError};
use clap::Args;

use super::{apply_namespace, parse_kind};
use crate::input::read_sources;

#[derive(Args)]
pub struct DeleteArgs {
    /// Kind (or alias) followed by names, when no file is given.
    pub args: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    pub filename: Option<String>,
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,
    #[arg(long = "skip-empty")]
    pub skip_empty: bool,
    /// Succeed for resources that do not exist.
    #[arg(short = 's', long = "skip-not-exists")]
    pub skip_not_exists: bool,
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

pub async fn delete(client: &Client, args: DeleteArgs) -> Result<()> {
    let targets: Vec<(Kind, Option<String>, String)> = match (&args.filename, args.args.as_slice())
    {
        (Some(f), []) => {
            let sources = read_sources(f, args.recursive)?;
            let mut out = Vec::new();
            let mut problems = Vec::new();
            for src in sources {
                for doc in src.documents {
                    match doc.resource {
                        Ok(mut r) => {
                            apply_namespace(&mut r, args.namespace.as_deref())?;
                            r.apply_defaults();
                            // A Kubernetes object is stored as the Calico resource it became.
                            let (kind, name) = calico_api::k8s::stored_identity(r.kind(), r.name())
                                .unwrap_or_else(|| (r.kind(), r.name().to_string()));
                            let namespace = kind
                                .namespaced()
                                .then(|| r.namespace().map(String::from))
                                .flatten();
                            out.push((kind, namespace, name));
                        }
                        Err(errs) => problems.extend(
                            errs.iter()
                                .map(|e| format!("{}: document {}: {e}", src.source, doc.index)),
                        ),
                    }
                }
            }
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                bail!(
                    "Failed to execute command: {} problem(s) found in the input; nothing was deleted",
                    problems.len()
                );
            }
            out
        }
        (None, [kind, names @ ..]) if !names.is_empty() => {
            let kind = parse_kind(kind)?;
            let ns = kind
                .namespaced()
                .then(|| args.namespace.clone().unwrap_or_else(|| "default".into()));
            names
                .iter()
                .map(|n| (kind, ns.clone(), n.clone()))
                .collect()
        }
        (None, [_]) => bail!("Failed to execute command: a resource name is required to delete"),
        _ => bail!("Failed to execute command: give either -f FILE or KIND NAME..."),
    };
    if targets.is_empty() {
        if args.skip_empty {
            return Ok(());
        }
        bail!("no resources specified");
    }
    let single = targets
        .iter()
        .all(|t| t.0 == targets[0].0)
        .then_some(targets[0].0);
    let mut deleted = 0;
    let mut errors = Vec::new();
    for (kind, ns, name) in &targets {
        match client.delete(*kind, ns.as_deref(), name, None).await {
            Ok(_) if *kind == Kind::Node => {
                deleted += 1;
                let ipam = calico_ipam::Ipam::new(client.store().clone());
                if let Err(e) = ipam.release_node(name).await {
                    errors.push(ClientError::Store(calico_datastore::StoreError::Other(format!(
                        "node {name} was deleted but its endpoints and addresses were not all released: {e:#}"
                    ))));
                }
            }
            Ok(_) => deleted += 1,
            Err(ClientError::NotFound { .. }) if args.skip_not_exists => deleted += 1,
            Err(e) => errors.push(e),
        }
    }
    let kind_text = single.map(|k| format!(" '{k}'")).unwrap_or_default();
    if errors.is_empty() {
        println!("Successfully deleted {deleted}{kind_text} resource(s)");
        return Ok(());
    }
    if deleted > 0 {
        println!(
            "Partial success: deleted {deleted} out of {}{kind_text} resources:",
            targets.len()
        );
    }
    for e in &errors {
        eprintln!("{e}");
    }
    bail!("Hit error: {} resource(s) were not deleted", errors.len())
}
