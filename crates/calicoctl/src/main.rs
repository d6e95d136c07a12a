//! calicoctl: create, read, update and delete `projectcalico.org/v3` resources in the calico-rs
//! datastore, with the verbs, flags, messages and table layouts Calico users know.

mod input;
mod ipam;
mod output;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use calico_api::{FieldErrors, Kind, Resource};
use calico_datastore::Store;
use calico_datastore::client::{Client, ClientError, WriteMode};
use calico_datastore::config::{DEFAULT_CONFIG_FILE, DatastoreConfig};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::input::read_sources;
use crate::output::{OutputFormat, TableContext, document, print_table};

// Parsing and validating thousands of documents is allocation-heavy: mimalloc makes it markedly faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

#[derive(Parser)]
#[command(name = "calicoctl", version = VERSION, about = "Manage calico-rs (Calico-compatible) resources")]
struct Cli {
    /// Path to the connection configuration file (CalicoAPIConfig).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Log level: panic, fatal, error, warn, info, debug.
    #[arg(
        short = 'l',
        long = "log-level",
        global = true,
        default_value = "panic"
    )]
    log_level: String,
    /// Accepted for compatibility; calico-rs does not check versions.
    #[arg(long = "allow-version-mismatch", global = true)]
    allow_version_mismatch: bool,
    /// Accepted for compatibility (Kubernetes contexts are not used).
    #[arg(long = "context", global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create resources by file name or stdin.
    Create(WriteArgs),
    /// Create or update resources by file name or stdin.
    Apply(WriteArgs),
    /// Replace existing resources by file name or stdin.
    Replace(WriteArgs),
    /// Delete resources identified by file, stdin, or kind and names.
    Delete(DeleteArgs),
    /// Check resources in a file without writing anything.
    Validate(WriteArgs),
    /// Display one or many resources.
    Get(GetArgs),
    /// Update fields of a resource with a JSON patch.
    Patch(PatchArgs),
    /// Add, change or remove a label on a resource.
    Label(LabelArgs),
    /// Print the client and cluster versions.
    Version(VersionArgs),
    /// IP address management: show, check, release, configure.
    Ipam(ipam::IpamArgs),
}

#[derive(Args)]
struct WriteArgs {
    /// File, directory or `-` for stdin.
    #[arg(short = 'f', long = "filename")]
    filename: String,
    /// Descend into sub-directories of a directory given with -f.
    #[arg(short = 'R', long = "recursive")]
    recursive: bool,
    /// Do nothing (and succeed) when the input holds no resources.
    #[arg(long = "skip-empty")]
    skip_empty: bool,
    /// With create: skip resources that already exist.
    #[arg(long = "skip-exists")]
    skip_exists: bool,
    /// Namespace for namespaced resources that do not name one.
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

#[derive(Args)]
struct DeleteArgs {
    /// Kind (or alias) followed by names, when no file is given.
    args: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    filename: Option<String>,
    #[arg(short = 'R', long = "recursive")]
    recursive: bool,
    #[arg(long = "skip-empty")]
    skip_empty: bool,
    /// Succeed for resources that do not exist.
    #[arg(short = 's', long = "skip-not-exists")]
    skip_not_exists: bool,
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

#[derive(Args)]
struct GetArgs {
    /// Kind (or alias) optionally followed by names.
    args: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    filename: Option<String>,
    #[arg(short = 'R', long = "recursive")]
    recursive: bool,
    /// ps, wide, yaml, json, custom-columns=<COL>[,<COL>...]
    #[arg(short = 'o', long = "output", default_value = "ps")]
    output: String,
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', visible_short_alias = 'a', long = "all-namespaces")]
    all_namespaces: bool,
    /// Strip cluster-specific metadata (uid, resourceVersion, creationTimestamp).
    #[arg(long = "export")]
    export: bool,
}

#[derive(Args)]
struct PatchArgs {
    kind: String,
    name: String,
    /// The patch, as JSON.
    #[arg(short = 'p', long = "patch")]
    patch: String,
    /// strategic (default), merge, or json (RFC 6902).
    #[arg(short = 't', long = "type", default_value = "strategic")]
    patch_type: String,
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

#[derive(Args)]
struct LabelArgs {
    kind: String,
    name: String,
    /// `key=value` to set, or `key` with --remove.
    label: String,
    #[arg(long = "remove")]
    remove: bool,
    #[arg(long = "overwrite")]
    overwrite: bool,
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

#[derive(Args)]
struct VersionArgs {
    /// Client version only.
    #[arg(long = "client")]
    client: bool,
    /// Accepted for compatibility.
    #[arg(long = "poll")]
    poll: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Failed to start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = match level.to_ascii_lowercase().as_str() {
        "panic" | "fatal" => "off",
        "error" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" | "trace" => "debug",
        _ => "off",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<()> {
    let config = DatastoreConfig::load(cli.config.as_deref()).with_context(|| {
        format!(
            "Failed to load the datastore configuration (from {} or the environment)",
            cli.config
                .as_deref()
                .map_or(DEFAULT_CONFIG_FILE.into(), |p| p.display().to_string())
        )
    })?;
    match cli.command {
        Command::Validate(args) => {
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
        Command::Version(args) => version(&config, args).await,
        command => {
            let client = connect(&config).await?;
            match command {
                Command::Create(args) => write(&client, args, WriteMode::Create).await,
                Command::Apply(args) => write(&client, args, WriteMode::Apply).await,
                Command::Replace(args) => write(&client, args, WriteMode::Replace).await,
                Command::Delete(args) => delete(&client, args).await,
                Command::Get(args) => get(&client, args).await,
                Command::Patch(args) => patch(&client, args).await,
                Command::Label(args) => label(&client, args).await,
                Command::Ipam(args) => ipam::run(&client, args, VERSION).await,
                Command::Validate(_) | Command::Version(_) => Ok(()),
            }
        }
    }
}

async fn connect(config: &DatastoreConfig) -> Result<Client> {
    let store: Arc<dyn Store> = config
        .connect(calico_datastore::config::OpenMode::MustExist)
        .await
        .with_context(|| format!("Failed to connect to the {} datastore", config.describe()))?;
    Ok(Client::new(store))
}

/// `N 'Kind' resource(s)` when all share a kind, else `N resource(s)`.
fn count_message(resources: &[Resource]) -> String {
    match single_kind(resources) {
        Some(kind) => format!("{} '{}' resource(s)", resources.len(), kind),
        None => format!("{} resource(s)", resources.len()),
    }
}

fn single_kind(resources: &[Resource]) -> Option<Kind> {
    let first = resources.first()?.kind();
    resources.iter().all(|r| r.kind() == first).then_some(first)
}

/// Documents read from the input, each with a description naming its file, index, kind and name.
struct Input {
    items: Vec<(String, Resource)>,
    /// One line per problem found so far (decoding, namespace, duplicates, and validation if asked).
    problems: Vec<String>,
}

impl Input {
    /// Print every problem and fail, or carry on when there are none.
    fn fail_on_problems(problems: &[String]) -> Result<()> {
        if problems.is_empty() {
            return Ok(());
        }
        for p in problems {
            eprintln!("{p}");
        }
        bail!(
            "Failed to execute command: {} problem(s) found in the input; nothing was written",
            problems.len()
        )
    }
}

/// Decode and default every document of the input, and validate them when `validate` is set (the
/// write verbs leave validation to the client, which also checks the stored state, so every object
/// is validated once). Problems are collected, not returned early, so a bad file is reported whole.
fn load(filename: &str, recursive: bool, namespace: Option<&str>, validate: bool) -> Result<Input> {
    let sources = read_sources(filename, recursive)?;
    let docs: Vec<(String, usize, Result<Resource, FieldErrors>)> = sources
        .into_iter()
        .flat_map(|src| {
            let source = src.source;
            src.documents.into_iter().map(move |doc| {
                let what = if doc.kind.is_empty() {
                    format!("{source}: document {}", doc.index)
                } else {
                    format!(
                        "{source}: document {} ({} {:?})",
                        doc.index, doc.kind, doc.name
                    )
                };
                (what, doc.index, doc.resource)
            })
        })
        .collect();
    let lines = |what: &str, errs: FieldErrors| {
        errs.iter()
            .map(|e| format!("{what}: {e}"))
            .collect::<Vec<_>>()
    };
    // Independent per document: use every core.
    let checked = calico_api::parallel::par_map(docs, |(what, index, decoded)| {
        let outcome = decoded
            .map_err(|errs| lines(&what, errs))
            .and_then(|mut res| {
                apply_namespace(&mut res, namespace).map_err(|e| vec![format!("{what}: {e}")])?;
                res.apply_defaults();
                if validate {
                    res.validate().map_err(|errs| lines(&what, errs))?;
                }
                Ok(res)
            });
        (what, index, outcome)
    });
    let mut input = Input {
        items: Vec::with_capacity(checked.len()),
        problems: Vec::new(),
    };
    let mut seen: HashMap<(Kind, Option<String>, String), usize> = HashMap::new();
    for (what, index, outcome) in checked {
        match outcome {
            Err(problem_lines) => input.problems.extend(problem_lines),
            Ok(res) => {
                let id = (
                    res.kind(),
                    res.namespace().map(String::from),
                    res.name().to_string(),
                );
                if let Some(first) = seen.insert(id, index) {
                    input.problems.push(format!(
                        "{what}: metadata.name: duplicate of document {first}"
                    ));
                } else {
                    input.items.push((what, res));
                }
            }
        }
    }
    Ok(input)
}

/// `-n` fills in the namespace of namespaced resources; a different namespace in the file is an error.
fn apply_namespace(res: &mut Resource, namespace: Option<&str>) -> Result<()> {
    let Some(ns) = namespace else { return Ok(()) };
    if !res.kind().namespaced() {
        return Ok(());
    }
    match res.metadata.namespace.as_deref() {
        None | Some("") => res.metadata.namespace = Some(ns.to_string()),
        Some(own) if own == ns => {}
        Some(own) => {
            bail!("metadata.namespace: {own:?} does not match the namespace given with -n ({ns:?})")
        }
    }
    Ok(())
}

async fn write(client: &Client, args: WriteArgs, mode: WriteMode) -> Result<()> {
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

fn describe_error(e: &ClientError) -> String {
    match e {
        ClientError::Invalid { kind, name, errors } => errors
            .iter()
            .map(|fe| format!("{kind} {name:?}: {fe}"))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// The kind a user typed, or a clear error listing what is known.
fn parse_kind(name: &str) -> Result<Kind> {
    Kind::from_alias(name).ok_or_else(|| {
        anyhow!("Failed to execute command: resource type '{name}' is not supported")
    })
}

/// A deleted node's workload endpoints, addresses and block affinities go with it (as Calico's
/// node deletion does), so other hosts stop routing to it and its addresses can be reused.
async fn release_node_resources(client: &Client, node: &str) -> Result<()> {
    let (endpoints, _) = client.list(Kind::WorkloadEndpoint, None).await?;
    for wep in endpoints {
        let on_node = matches!(&wep.spec, calico_api::Spec::WorkloadEndpoint(s) if s.node.as_deref() == Some(node));
        if on_node {
            match client
                .delete(Kind::WorkloadEndpoint, wep.namespace(), wep.name(), None)
                .await
            {
                Ok(_) | Err(ClientError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let ipam = calico_ipam::Ipam::new(client.store().clone());
    let mut held = Vec::new();
    for stored in ipam.blocks().await? {
        for (ip, attr) in stored.block.allocated() {
            if attr
                .secondary
                .get(calico_ipam::block::ATTR_NODE)
                .map(String::as_str)
                == Some(node)
            {
                held.push(ip);
            }
        }
    }
    if !held.is_empty() {
        ipam.release_ips(&held).await?;
    }
    ipam.release_host_affinities(node).await?;
    Ok(())
}

async fn delete(client: &Client, args: DeleteArgs) -> Result<()> {
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
                            out.push((
                                r.kind(),
                                r.namespace().map(String::from),
                                r.name().to_string(),
                            ));
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
                if let Err(e) = release_node_resources(client, name).await {
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

async fn get(client: &Client, args: GetArgs) -> Result<()> {
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
                    write!(out, "{}", calico_api::documents::to_yaml(doc))?;
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

async fn patch(client: &Client, args: PatchArgs) -> Result<()> {
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

fn invalid(context: &str, errors: &FieldErrors) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    anyhow!("{context}: {}", lines.join("; "))
}

async fn label(client: &Client, args: LabelArgs) -> Result<()> {
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

async fn version(config: &DatastoreConfig, args: VersionArgs) -> Result<()> {
    println!("Client Version:    {VERSION}");
    println!("Git commit:        {}", env!("CALICO_GIT_COMMIT"));
    if args.client {
        return Ok(());
    }
    let client = connect(config).await?;
    match client.get(Kind::ClusterInformation, None, "default").await {
        Ok(info) => {
            let spec = info.spec.to_value();
            let field = |k: &str| {
                spec.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            println!("Cluster Version:   {}", field("calicoVersion"));
            println!("Cluster Type:      {}", field("clusterType"));
        }
        Err(ClientError::NotFound { .. }) => {
            println!(
                "Unable to retrieve Cluster Version or Type: ClusterInformation 'default' does not exist yet (calico-node creates it)"
            );
        }
        Err(e) => bail!("Unable to retrieve Cluster Version or Type: {e}"),
    }
    Ok(())
}
