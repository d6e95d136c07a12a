//! How `calicoctl get` prints: tables with calicoctl's column sets (`ps`, `wide`, `custom-columns`),
//! YAML and JSON.

use std::io::Write;

use anyhow::{Result, bail};
use calico_api::{Kind, Resource};
use serde_json::{Map, Value};
use tabwriter::TabWriter;

/// `-o` as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Ps,
    Wide,
    Yaml,
    Json,
    CustomColumns(Vec<String>),
}

impl OutputFormat {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ps" => OutputFormat::Ps,
            "wide" => OutputFormat::Wide,
            "yaml" => OutputFormat::Yaml,
            "json" => OutputFormat::Json,
            other => match other.strip_prefix("custom-columns=") {
                Some(cols) if !cols.is_empty() => OutputFormat::CustomColumns(
                    cols.split(',').map(|c| c.trim().to_uppercase()).collect(),
                ),
                _ => bail!(
                    "unrecognized output format '{other}': use ps, wide, yaml, json or custom-columns=<COL>[,<COL>...]"
                ),
            },
        })
    }
}

/// Values some columns need from outside the resource itself.
pub struct TableContext {
    /// The global AS number (BGPConfiguration `default`, else 64512), shown as `(64512)` for nodes
    /// that inherit it.
    pub global_as: String,
    /// Prepend a NAMESPACE column for namespaced kinds (`-n` or `-A` given).
    pub namespace_column: bool,
}

type Extract = fn(&Resource, &Value, &TableContext) -> String;

struct Column {
    header: &'static str,
    extract: Extract,
}

const fn col(header: &'static str, extract: Extract) -> Column {
    Column { header, extract }
}

fn name(r: &Resource, _: &Value, _: &TableContext) -> String {
    r.name().to_string()
}

/// A field of the spec rendered as calicoctl does: lists comma-joined, absent as empty.
/// calicoctl's WORKLOAD column: `spec.workload`, or for Kubernetes endpoints (which have none) the pod.
fn workload_of(spec: &Value) -> String {
    let workload = field(spec, &["workload"]);
    if workload.is_empty() {
        field(spec, &["pod"])
    } else {
        workload
    }
}

fn field(spec: &Value, path: &[&str]) -> String {
    let mut v = spec;
    for p in path {
        match v.get(*p) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    render(v)
}

fn render(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(","),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", render(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

fn mode(spec: &Value, key: &str) -> String {
    match field(spec, &[key]) {
        s if s.is_empty() => "Never".into(),
        s => s,
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

fn labels(r: &Resource) -> String {
    r.metadata
        .labels()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Default (`ps`) and `wide` column sets per kind, as calicoctl prints them.
fn columns(kind: Kind, wide: bool) -> Vec<Column> {
    match (kind, wide) {
        (Kind::IPPool, false) => vec![
            col("NAME", name),
            col("CIDR", |_, s, _| field(s, &["cidr"])),
            col("SELECTOR", |_, s, _| field(s, &["nodeSelector"])),
        ],
        (Kind::IPPool, true) => vec![
            col("NAME", name),
            col("CIDR", |_, s, _| field(s, &["cidr"])),
            col("NAT", |_, s, _| or_false(field(s, &["natOutgoing"]))),
            col("IPIPMODE", |_, s, _| mode(s, "ipipMode")),
            col("VXLANMODE", |_, s, _| mode(s, "vxlanMode")),
            col("DISABLED", |_, s, _| or_false(field(s, &["disabled"]))),
            col("SELECTOR", |_, s, _| field(s, &["nodeSelector"])),
        ],
        (Kind::Node, false) => vec![col("NAME", name)],
        (Kind::Node, true) => vec![
            col("NAME", name),
            col("ASN", |_, s, ctx| match s.get("bgp") {
                None | Some(Value::Null) => String::new(),
                Some(bgp) => match field(bgp, &["asNumber"]) {
                    a if a.is_empty() => format!("({})", ctx.global_as),
                    a => a,
                },
            }),
            col("IPV4", |_, s, _| field(s, &["bgp", "ipv4Address"])),
            col("IPV6", |_, s, _| field(s, &["bgp", "ipv6Address"])),
        ],
        (Kind::BGPPeer, _) => vec![
            col("NAME", name),
            col("PEERIP", |_, s, _| field(s, &["peerIP"])),
            col("NODE", |_, s, _| {
                let node = field(s, &["node"]);
                let sel = field(s, &["nodeSelector"]);
                if !node.is_empty() {
                    node
                } else if !sel.is_empty() {
                    sel
                } else {
                    "(global)".into()
                }
            }),
            col("ASN", |_, s, _| match field(s, &["asNumber"]) {
                a if a.is_empty() => "0".into(),
                a => a,
            }),
        ],
        (Kind::BGPConfiguration, _) => vec![
            col("NAME", name),
            col("LOGSEVERITY", |_, s, _| field(s, &["logSeverityScreen"])),
            col("MESHENABLED", |_, s, _| {
                or_dash(field(s, &["nodeToNodeMeshEnabled"]))
            }),
            col("ASNUMBER", |_, s, _| or_dash(field(s, &["asNumber"]))),
        ],
        (Kind::WorkloadEndpoint, false) => vec![
            col("WORKLOAD", |_, s, _| workload_of(s)),
            col("NODE", |_, s, _| field(s, &["node"])),
            col("NETWORKS", |_, s, _| field(s, &["ipNetworks"])),
            col("INTERFACE", |_, s, _| field(s, &["interfaceName"])),
        ],
        (Kind::WorkloadEndpoint, true) => vec![
            col("NAME", name),
            col("WORKLOAD", |_, s, _| workload_of(s)),
            col("NODE", |_, s, _| field(s, &["node"])),
            col("NETWORKS", |_, s, _| field(s, &["ipNetworks"])),
            col("INTERFACE", |_, s, _| field(s, &["interfaceName"])),
            col("PROFILES", |_, s, _| field(s, &["profiles"])),
            col("NATS", |_, s, _| match s.get("ipNATs") {
                Some(Value::Array(nats)) => nats
                    .iter()
                    .map(|n| {
                        format!(
                            "{}<->{}",
                            field(n, &["internalIP"]),
                            field(n, &["externalIP"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                _ => String::new(),
            }),
        ],
        (Kind::HostEndpoint, false) => vec![
            col("NAME", name),
            col("NODE", |_, s, _| field(s, &["node"])),
        ],
        (Kind::HostEndpoint, true) => vec![
            col("NAME", name),
            col("NODE", |_, s, _| field(s, &["node"])),
            col("INTERFACE", |_, s, _| field(s, &["interfaceName"])),
            col("IPS", |_, s, _| field(s, &["expectedIPs"])),
            col("PROFILES", |_, s, _| field(s, &["profiles"])),
        ],
        (Kind::Profile, false) => vec![col("NAME", name)],
        (Kind::Profile, true) => vec![col("NAME", name), col("LABELS", |r, _, _| labels(r))],
        (Kind::NetworkPolicy | Kind::GlobalNetworkPolicy | Kind::StagedNetworkPolicy, false) => {
            vec![col("NAME", name), col("TIER", |_, s, _| tier(s))]
        }
        (Kind::NetworkPolicy | Kind::GlobalNetworkPolicy | Kind::StagedNetworkPolicy, true) => {
            vec![
                col("NAME", name),
                col("TIER", |_, s, _| tier(s)),
                col("ORDER", |_, s, _| field(s, &["order"])),
                col("SELECTOR", |_, s, _| field(s, &["selector"])),
            ]
        }
        (Kind::Tier, _) => vec![
            col("NAME", name),
            col("ORDER", |_, s, _| field(s, &["order"])),
        ],
        (Kind::NetworkSet | Kind::GlobalNetworkSet, false) => vec![col("NAME", name)],
        (Kind::NetworkSet | Kind::GlobalNetworkSet, true) => {
            vec![
                col("NAME", name),
                col("NETS", |_, s, _| field(s, &["nets"])),
            ]
        }
        (Kind::IPReservation, false) => vec![col("NAME", name)],
        (Kind::IPReservation, true) => vec![
            col("NAME", name),
            col("CIDRS", |_, s, _| field(s, &["reservedCIDRs"])),
        ],
        (Kind::ClusterInformation, _) => vec![
            col("NAME", name),
            col("CLUSTERGUID", |_, s, _| field(s, &["clusterGUID"])),
            col("CLUSTERTYPE", |_, s, _| field(s, &["clusterType"])),
            col("CALICOVERSION", |_, s, _| field(s, &["calicoVersion"])),
            col("DATASTOREREADY", |_, s, _| field(s, &["datastoreReady"])),
        ],
        (Kind::IPAMConfiguration, false) => vec![
            col("NAME", name),
            col("STRICTAFFINITY", |_, s, _| {
                or_false(field(s, &["strictAffinity"]))
            }),
            col("AUTOALLOCATEBLOCKS", |_, s, _| {
                field(s, &["autoAllocateBlocks"])
            }),
        ],
        (Kind::IPAMConfiguration, true) => vec![
            col("NAME", name),
            col("STRICTAFFINITY", |_, s, _| {
                or_false(field(s, &["strictAffinity"]))
            }),
            col("AUTOALLOCATEBLOCKS", |_, s, _| {
                field(s, &["autoAllocateBlocks"])
            }),
            col("MAXBLOCKSPERHOST", |_, s, _| {
                match field(s, &["maxBlocksPerHost"]) {
                    m if m.is_empty() => "0".into(),
                    m => m,
                }
            }),
        ],
        (Kind::BGPFilter, _) => vec![
            col("NAME", name),
            col("NUMEXPORTV4", |_, s, _| count(s, "exportV4")),
            col("NUMIMPORTV4", |_, s, _| count(s, "importV4")),
            col("NUMEXPORTV6", |_, s, _| count(s, "exportV6")),
            col("NUMIMPORTV6", |_, s, _| count(s, "importV6")),
        ],
        (Kind::FelixConfiguration, _) => vec![col("NAME", name)],
        (Kind::KubernetesNetworkPolicy, _) => vec![
            col("NAME", name),
            col("POD-SELECTOR", |_, s, _| field(s, &["podSelector"])),
        ],
        (Kind::KubernetesNamespace, _) => vec![col("NAME", name)],
    }
}

fn or_false(s: String) -> String {
    if s.is_empty() { "false".into() } else { s }
}

fn tier(spec: &Value) -> String {
    match field(spec, &["tier"]) {
        t if t.is_empty() => "default".into(),
        t => t,
    }
}

fn count(spec: &Value, key: &str) -> String {
    spec.get(key)
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        .to_string()
}

/// Print `resources` (all of `kind`) as a table.
pub fn print_table(
    out: &mut dyn Write,
    kind: Kind,
    resources: &[Resource],
    format: &OutputFormat,
    ctx: &TableContext,
) -> Result<()> {
    let mut cols = match format {
        OutputFormat::Wide => columns(kind, true),
        OutputFormat::CustomColumns(wanted) => {
            let available = columns(kind, true);
            let mut picked = Vec::new();
            for w in wanted {
                match available.iter().position(|c| c.header == w.as_str()) {
                    Some(i) => picked.push(Column {
                        header: available[i].header,
                        extract: available[i].extract,
                    }),
                    None if w == "NAMESPACE" && kind.namespaced() => picked
                        .push(col("NAMESPACE", |r, _, _| {
                            r.namespace().unwrap_or_default().to_string()
                        })),
                    None => bail!(
                        "unknown column {w:?} for {kind}: available columns are {}",
                        available
                            .iter()
                            .map(|c| c.header)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
            picked
        }
        _ => columns(kind, false),
    };
    if ctx.namespace_column
        && kind.namespaced()
        && !matches!(format, OutputFormat::CustomColumns(_))
    {
        cols.insert(
            0,
            col("NAMESPACE", |r, _, _| {
                r.namespace().unwrap_or_default().to_string()
            }),
        );
    }
    // calicoctl uses Go's tabwriter with minwidth 5 and padding 3, where minwidth includes the padding:
    // width = max(5, len + 3). This crate computes max(minwidth, len) + padding, so minwidth 2 gives
    // the same widths for every cell length. Every cell is tab-terminated, as calicoctl writes them.
    let mut tw = TabWriter::new(Vec::new()).minwidth(2).padding(3);
    let header: String = cols.iter().map(|c| format!("{}\t", c.header)).collect();
    writeln!(tw, "{header}")?;
    for r in resources {
        let spec = r.spec.to_value();
        let row: String = cols
            .iter()
            .map(|c| format!("{}\t", sanitize((c.extract)(r, &spec, ctx))))
            .collect();
        writeln!(tw, "{row}")?;
    }
    tw.flush()?;
    let bytes = tw
        .into_inner()
        .map_err(|e| anyhow::anyhow!("table output: {e}"))?;
    out.write_all(&bytes)?;
    Ok(())
}

/// Cells must not contain tabs or newlines, which would break the table.
fn sanitize(s: String) -> String {
    if s.contains(['\t', '\n']) {
        s.replace(['\t', '\n'], " ")
    } else {
        s
    }
}

/// The object, or a `<Kind>List` when `as_list`.
pub fn document(kind: Kind, resources: &[Resource], as_list: bool, revision: i64) -> Value {
    if !as_list && resources.len() == 1 {
        return resources[0].to_value();
    }
    let mut list = Map::new();
    list.insert("apiVersion".into(), Value::from(kind.api_version()));
    list.insert(
        "items".into(),
        Value::Array(resources.iter().map(Resource::to_value).collect()),
    );
    list.insert("kind".into(), Value::from(format!("{}List", kind.name())));
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), Value::from(revision.to_string()));
    list.insert("metadata".into(), Value::Object(meta));
    Value::Object(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_parse() {
        assert_eq!(OutputFormat::parse("wide").unwrap(), OutputFormat::Wide);
        assert_eq!(
            OutputFormat::parse("custom-columns=name,cidr").unwrap(),
            OutputFormat::CustomColumns(vec!["NAME".into(), "CIDR".into()])
        );
        let err = OutputFormat::parse("xml").unwrap_err().to_string();
        assert!(err.contains("unrecognized output format 'xml'"), "{err}");
    }
}
