//! `calicoctl get`: tables, YAML or JSON of one or many resources.

use std::io::Write;

use anyhow::{Result, anyhow, bail};
use calico_api::{Kind, Resource};
use calico_datastore::client::Client;
use clap::Args;
use serde_json::Value;

use super::{apply_namespace, parse_kind};
use crate::input::read_sources;
use crate::output::{OutputFormat, TableContext, document, print_table};

#[derive(Args)]
pub struct GetArgs {
    /// Kind (or alias) optionally followed by names.
    pub args: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    pub filename: Option<String>,
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,
    /// ps, wide, yaml, json, custom-columns=<COL>[,<COL>...]
    #[arg(short = 'o', long = "output", default_value = "ps")]
    pub output: String,
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', visible_short_alias = 'a', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Strip cluster-specific metadata (uid, resourceVersion, creationTimestamp).
    #[arg(long = "export")]
    pub export: bool,
}

pub async fn get(client: &Client, args: GetArgs) -> Result<()> {
    let format = OutputFormat::parse(&args.output)?;
    let mut groups: Vec<(Kind, Vec<Resource>, bool)> = Vec::new();
    // The revision a printed list reflects: the listing's own, else read when a list is printed.
    let mut revision = None;
    match (&args.filename, args.args.as_slice()) {
        (Some(f), []) => {
            for src in read_sources(f, args.recursive)? {
                for doc in src.documents {
                    let mut r = doc
                        .resource
                        .map_err(|e| anyhow!("{}: document {}: {e}", src.source, doc.index))?;
                    apply_namespace(&mut r, args.namespace.as_deref())?;
                    r.apply_defaults();
                    let got = client
                        .get(r.kind(), r.namespace(), r.name())
                        .await
                        .map_err(|e| anyhow!("Failed to get resources: {e}"))?;
                    match groups.last_mut() {
                        Some((k, items, _)) if *k == got.kind() => items.push(got),
                        _ => groups.push((got.kind(), vec![got], false)),
                    }
                }
            }
        }
        (None, [kind, names @ ..]) => {
            let kind = parse_kind(kind)?;
            let ns = if !kind.namespaced() || (args.all_namespaces && names.is_empty()) {
                None
            } else {
                Some(args.namespace.clone().unwrap_or_else(|| "default".into()))
            };
            if names.is_empty() {
                let (items, rev) = client
                    .list(kind, ns.as_deref())
                    .await
                    .map_err(|e| anyhow!("Failed to get resources: {e}"))?;
                revision = Some(rev);
                groups.push((kind, items, true));
            } else {
                let mut items = Vec::new();
                for n in names {
                    items.push(
                        client
                            .get(kind, ns.as_deref(), n)
                            .await
                            .map_err(|e| anyhow!("Failed to get resources: {e}"))?,
                    );
                }
                groups.push((kind, items, names.len() > 1));
            }
        }
        (Some(_), _) => {
            bail!("Failed to execute command: give either -f FILE or KIND [NAME...], not both")
        }
        (None, []) => bail!(
            "Failed to execute command: a resource type is required (e.g. 'calicoctl get ippools')"
        ),
    }
    if args.export {
        for (_, items, _) in &mut groups {
            for r in items.iter_mut() {
                r.metadata.uid = None;
                r.metadata.resource_version = None;
                r.metadata.creation_timestamp = None;
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &format {
        OutputFormat::Yaml | OutputFormat::Json => {
            let revision = match revision {
                Some(rev) => rev,
                None if groups.iter().any(|(_, _, as_list)| *as_list) => client
                    .store()
                    .current_revision()
                    .await
                    .map_err(|e| anyhow!("Failed to get resources: {e}"))?,
                None => 0,
            };
            let docs: Vec<Value> = groups
                .iter()
                .map(|(kind, items, as_list)| document(*kind, items, *as_list, revision))
                .collect();
            for (i, doc) in docs.iter().enumerate() {
                if matches!(format, OutputFormat::Yaml) {
                    if i > 0 {
                        writeln!(out, "---")?;
                    }
                    write!(out, "{}", calico_api::documents::to_yaml(doc)?)?;
                } else {
                    writeln!(out, "{}", serde_json::to_string_pretty(doc)?)?;
                }
            }
        }
        _ => {
            // Only node tables show the inherited AS number: read the BGP configuration just for them.
            let global_as = if groups.iter().any(|(kind, _, _)| *kind == Kind::Node) {
                global_as_number(client).await
            } else {
                String::new()
            };
            let ctx = TableContext {
                global_as,
                namespace_column: args.namespace.is_some() || args.all_namespaces,
            };
            for (kind, items, _) in &groups {
                print_table(&mut out, *kind, items, &format, &ctx)?;
            }
        }
    }
    Ok(())
}

/// The cluster-wide AS number nodes inherit.
async fn global_as_number(client: &Client) -> String {
    client
        .get(Kind::BGPConfiguration, None, "default")
        .await
        .ok()
        .and_then(|r| r.spec.to_value().get("asNumber").map(|v| v.to_string()))
        .unwrap_or_else(|| "64512".into())
}
