//! `calicoctl label`: set, change or remove one label.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use calico_datastore::client::Client;
use clap::Args;

use super::{describe_error, parse_kind};

#[derive(Args)]
pub struct LabelArgs {
    pub kind: String,
    pub name: String,
    /// `key=value` to set, or `key` with --remove.
    pub label: String,
    #[arg(long = "remove")]
    pub remove: bool,
    #[arg(long = "overwrite")]
    pub overwrite: bool,
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

pub async fn label(client: &Client, args: LabelArgs) -> Result<()> {
    let kind = parse_kind(&args.kind)?;
    let ns = kind
        .namespaced()
        .then(|| args.namespace.clone().unwrap_or_else(|| "default".into()));
    let mut res = client
        .get(kind, ns.as_deref(), &args.name)
        .await
        .map_err(|e| anyhow!("Failed to get resource: {e}"))?;
    let labels = res.metadata.labels.get_or_insert_with(BTreeMap::new);
    let key = if args.remove {
        let key = args.label.clone();
        if labels.remove(&key).is_none() {
            bail!(
                "can not remove label: label {key} is not found on {} {}",
                args.kind,
                args.name
            );
        }
        key
    } else {
        let Some((key, value)) = args.label.split_once('=') else {
            bail!(
                "invalid label {:?}: expected key=value (or key with --remove)",
                args.label
            );
        };
        if let Some(old) = labels.get(key)
            && old != value
            && !args.overwrite
        {
            bail!(
                "failed to update label: label {key} already exists with value {old}; use --overwrite to change it"
            );
        }
        labels.insert(key.to_string(), value.to_string());
        key.to_string()
    };
    client
        .replace(res)
        .await
        .map_err(|e| anyhow!("Failed to update label: {}", describe_error(&e)))?;
    if args.remove {
        println!(
            "Successfully removed label {key} from {} {}",
            args.kind, args.name
        );
    } else {
        println!(
            "Successfully set label {key} on {} {}",
            args.kind, args.name
        );
    }
    Ok(())
}
