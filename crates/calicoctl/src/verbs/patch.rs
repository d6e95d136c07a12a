//! `calicoctl patch`: strategic/merge or RFC 6902 JSON patches, validated like any write.

use anyhow::{Result, anyhow, bail};
use calico_api::{FieldErrors, Resource};
use calico_datastore::client::Client;
use clap::Args;
use serde_json::Value;

use super::{describe_error, parse_kind};

#[derive(Args)]
pub struct PatchArgs {
    pub kind: String,
    pub name: String,
    /// The patch, as JSON.
    #[arg(short = 'p', long = "patch")]
    pub patch: String,
    /// strategic (default), merge, or json (RFC 6902).
    #[arg(short = 't', long = "type", default_value = "strategic")]
    pub patch_type: String,
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

pub async fn patch(client: &Client, args: PatchArgs) -> Result<()> {
    let kind = parse_kind(&args.kind)?;
    let ns = kind
        .namespaced()
        .then(|| args.namespace.clone().unwrap_or_else(|| "default".into()));
    let current = client
        .get(kind, ns.as_deref(), &args.name)
        .await
        .map_err(|e| anyhow!("Failed to patch resource: {e}"))?;
    let mut doc = current.to_value();
    let patch: Value = serde_json::from_str(&args.patch)
        .map_err(|e| anyhow!("Failed to patch resource: invalid patch JSON: {e}"))?;
    match args.patch_type.as_str() {
        "strategic" | "merge" => json_patch::merge(&mut doc, &patch),
        "json" => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| anyhow!("Failed to patch resource: invalid JSON patch: {e}"))?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| anyhow!("Failed to patch resource: {e}"))?;
        }
        other => bail!(
            "Failed to patch resource: unknown patch type {other:?}: use strategic, merge or json"
        ),
    }
    let mut patched =
        Resource::from_value(doc).map_err(|e| invalid("Failed to patch resource", &e))?;
    if patched.kind() != kind || patched.name() != current.name() {
        bail!("Failed to patch resource: a patch may not change the kind or name");
    }
    patched.metadata.resource_version = current.metadata.resource_version.clone();
    client
        .replace(patched)
        .await
        .map_err(|e| anyhow!("Failed to patch resource: {}", describe_error(&e)))?;
    println!("Successfully patched 1 '{kind}' resource");
    Ok(())
}

pub fn invalid(context: &str, errors: &FieldErrors) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    anyhow!("{context}: {}", lines.join("; "))
}
