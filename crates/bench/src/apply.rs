//! Section 1: `calicoctl apply -f` of many NetworkPolicies and `calicoctl get -o yaml` of them, on both
//! backends, beside plain batched puts of the same bytes as a reference.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use calico_datastore::embedded::EmbeddedStore;
use calico_datastore::etcd::{EtcdConfig, EtcdStore};
use calico_datastore::{Store, WriteOp};
use calico_testutil::EtcdServer;
use futures::StreamExt;
use serde_json::Value;

use crate::measure::{ChildCommand, ChildRun, run_child};
use crate::policies;
use crate::report::{Goal, Table, mib_from_kib, ratio, seconds, thousands};

/// Seed for the generated policies, so every run applies the same input.
pub const POLICY_SEED: u64 = 0x00ca_11c0;
/// Batches in flight for the reference writer (the same concurrency calicoctl's client uses).
const BATCHES_IN_FLIGHT: usize = 8;
/// Target for calicoctl apply on the embedded store, resources/s.
const EMBEDDED_APPLY_RATE_GOAL: f64 = 5_000.0;
/// Target for calicoctl apply rate / plain put rate on etcd.
const ETCD_APPLY_RATIO_GOAL: f64 = 0.5;

/// Where to find `calicoctl`: beside this binary (both are built into target/release).
fn locate_calicoctl() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this binary's path")?;
    let dir = exe
        .parent()
        .context("this binary's path has no directory")?;
    let candidate = dir.join("calicoctl");
    if !candidate.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p calicoctl -p calico-bench` (scripts/bench.sh does)",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// One backend's connection, as calicoctl's environment and as an in-process store.
struct Backend {
    name: &'static str,
    env: Vec<(String, OsString)>,
}

/// The policies as one multi-document YAML file.
struct InputFiles {
    yaml: PathBuf,
}

struct Section {
    table: Table,
    goals: Vec<Goal>,
}

pub async fn run(count: usize) -> Result<(Table, Vec<Goal>)> {
    let mut section = Section {
        table: Table::new(
            &format!("1. apply {count} NetworkPolicies from one file, then get -o yaml"),
            &[
                "case",
                "backend",
                "items",
                "seconds",
                "items/s",
                "peak RSS MiB",
                "ratio",
                "note",
            ],
        ),
        goals: Vec::new(),
    };
    let calicoctl = match locate_calicoctl() {
        Ok(path) => path,
        Err(err) => {
            section.table.push(error_row("calicoctl", "-", &err));
            section.goals.push(Goal {
                informational: false,
                name: "etcd: calicoctl apply rate >= 0.5 x plain batched puts".into(),
                met: None,
                detail: format!("{err:#}"),
            });
            return Ok((section.table, section.goals));
        }
    };
    let scratch = tempfile::Builder::new()
        .prefix("calico-bench-apply-")
        .tempdir()
        .context("creating a temporary directory")?;
    let generated = policies::generate(count, POLICY_SEED);
    let yaml_path = scratch.path().join("policies.yaml");
    let yaml = policies::to_multi_document_yaml(&generated)?;
    std::fs::write(&yaml_path, &yaml)
        .with_context(|| format!("writing {}", yaml_path.display()))?;
    let inputs = InputFiles { yaml: yaml_path };
    let payloads: Vec<(String, Vec<u8>)> = generated
        .iter()
        .enumerate()
        .map(|(index, policy)| {
            let bytes = serde_json::to_vec(policy).unwrap_or_default();
            (policies::policy_name(index), bytes)
        })
        .collect();
    println!(
        "apply: generated {count} policies, {:.1} MiB of YAML, {:.1} MiB of JSON",
        yaml.len() as f64 / 1_048_576.0,
        payloads.iter().map(|(_, b)| b.len()).sum::<usize>() as f64 / 1_048_576.0
    );

    // Embedded: a fresh file for calicoctl and another for the reference.
    let embedded_file = scratch.path().join("embedded.db");
    // calicoctl only opens a store that exists: create it as calico-node would.
    drop(EmbeddedStore::open(&embedded_file)?);
    let embedded = Backend {
        name: "embedded",
        env: vec![
            ("DATASTORE_TYPE".into(), "embedded".into()),
            (
                "CALICO_DATASTORE_PATH".into(),
                embedded_file.into_os_string(),
            ),
        ],
    };
    let reference_file = scratch.path().join("embedded-reference.db");
    let embedded_reference = async {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&reference_file)?);
        Ok::<_, anyhow::Error>(store)
    };
    run_backend(
        &mut section,
        &calicoctl,
        scratch.path(),
        &inputs,
        count,
        &embedded,
        embedded_reference,
        &payloads,
    )
    .await;

    // etcd: one fresh server; calicoctl first, then the reference under its own prefix.
    if calico_testutil::etcd_binary().is_none() {
        let err = anyhow::anyhow!("etcd not found: install etcd-server (scripts/bench.sh does)");
        section.table.push(error_row("etcd", "etcd", &err));
        section.goals.push(Goal {
            informational: false,
            name: "etcd: calicoctl apply rate >= 0.5 x plain batched puts".into(),
            met: None,
            detail: format!("{err:#}"),
        });
    } else {
        let server = EtcdServer::start();
        let endpoint = server.endpoint();
        let etcd = Backend {
            name: "etcd",
            env: vec![
                ("DATASTORE_TYPE".into(), "etcdv3".into()),
                ("ETCD_ENDPOINTS".into(), endpoint.clone().into()),
            ],
        };
        let etcd_reference = async {
            let config = EtcdConfig {
                endpoints: vec![endpoint.clone()],
                ..EtcdConfig::default()
            };
            let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&config).await?);
            Ok::<_, anyhow::Error>(store)
        };
        run_backend(
            &mut section,
            &calicoctl,
            scratch.path(),
            &inputs,
            count,
            &etcd,
            etcd_reference,
            &payloads,
        )
        .await;
        drop(server);
    }
    Ok((section.table, section.goals))
}

/// Longest error note, so one failure does not stretch the table off the screen.
const MAX_ERROR_NOTE: usize = 140;

fn error_row(case: &str, backend: &str, err: &anyhow::Error) -> Vec<String> {
    let flat = format!("{err:#}").replace('\n', " ");
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut message = format!("ERROR: {flat}");
    if message.chars().count() > MAX_ERROR_NOTE {
        message = message.chars().take(MAX_ERROR_NOTE - 3).collect::<String>() + "...";
    }
    vec![
        case.into(),
        backend.into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        message,
    ]
}

#[allow(clippy::too_many_arguments)]
async fn run_backend(
    section: &mut Section,
    calicoctl: &Path,
    scratch: &Path,
    inputs: &InputFiles,
    count: usize,
    backend: &Backend,
    reference_store: impl Future<Output = Result<Arc<dyn Store>>>,
    payloads: &[(String, Vec<u8>)],
) {
    // calicoctl apply -f: the YAML file; a rejection is an error row, never another measurement.
    let applied = match apply_file(calicoctl, backend, scratch, &inputs.yaml, count).await {
        Ok(run) => Some(run),
        Err(err) => {
            section.table.push(error_row(
                "calicoctl apply -f policies.yaml",
                backend.name,
                &err,
            ));
            None
        }
    };
    let apply_rate = applied.as_ref().map(|run| count as f64 / run.seconds);

    // Plain batched puts of the same objects' JSON.
    let reference = async {
        let store = reference_store.await?;
        put_all(
            store.as_ref(),
            "/bench-reference/networkpolicies/bench/",
            payloads,
        )
        .await
    }
    .await;
    let reference_rate = match &reference {
        Ok(elapsed) => Some(payloads.len() as f64 / elapsed),
        Err(err) => {
            section
                .table
                .push(error_row("plain batched put", backend.name, err));
            None
        }
    };

    let apply_ratio = match (apply_rate, reference_rate) {
        (Some(a), Some(r)) => Some(a / r),
        _ => None,
    };
    if let (Some(run), Some(rate)) = (&applied, apply_rate) {
        section.table.push(vec![
            "calicoctl apply -f policies.yaml".into(),
            backend.name.into(),
            count.to_string(),
            seconds(run.seconds),
            thousands(rate),
            mib_from_kib(run.peak_rss_kib),
            apply_ratio.map_or("n/a".into(), ratio),
            "ratio = apply rate / plain put rate".into(),
        ]);
    }
    if let (Ok(elapsed), Some(rate)) = (&reference, reference_rate) {
        section.table.push(vec![
            "plain batched put (reference)".into(),
            backend.name.into(),
            payloads.len().to_string(),
            seconds(*elapsed),
            thousands(rate),
            "-".into(),
            ratio(1.0),
            "in-process Store::batch of the same JSON, 8 batches in flight".into(),
        ]);
    }
    if backend.name == "etcd" {
        section.goals.push(Goal {
            informational: false,
            name: format!(
                "etcd: calicoctl apply rate >= {ETCD_APPLY_RATIO_GOAL} x plain batched puts"
            ),
            met: apply_ratio.map(|r| r >= ETCD_APPLY_RATIO_GOAL),
            detail: match (apply_ratio, apply_rate, reference_rate) {
                (Some(r), Some(a), Some(p)) => {
                    format!("{}, {} vs {} items/s", ratio(r), thousands(a), thousands(p))
                }
                _ => "a run failed; see the table".into(),
            },
        });
    } else {
        section.goals.push(Goal {
            informational: false,
            name: format!(
                "{}: calicoctl apply >= {EMBEDDED_APPLY_RATE_GOAL} resources/s",
                backend.name
            ),
            met: apply_rate.map(|r| r >= EMBEDDED_APPLY_RATE_GOAL),
            detail: match (apply_rate, apply_ratio) {
                (Some(a), Some(r)) => format!(
                    "{} resources/s ({} of plain batched puts)",
                    thousands(a),
                    ratio(r)
                ),
                _ => "a run failed; see the table".into(),
            },
        });
    }

    // calicoctl get -o yaml, only meaningful once the apply worked.
    if apply_rate.is_none() {
        return;
    }
    let output_path = scratch.join(format!("get-{}.yaml", backend.name));
    let get = run_calicoctl(
        calicoctl,
        backend,
        scratch,
        &[
            "get".into(),
            "networkpolicy".into(),
            "-n".into(),
            policies::NAMESPACE.into(),
            "-o".into(),
            "yaml".into(),
        ],
        Some(output_path.clone()),
    )
    .await;
    match get {
        Ok(run) if run.success => {
            let text = std::fs::read_to_string(&output_path).unwrap_or_default();
            let items = policies::count_items(&text);
            let note = if items == count {
                format!("{:.1} MiB of YAML", text.len() as f64 / 1_048_576.0)
            } else {
                format!("ERROR: output holds {items} items, expected {count}")
            };
            section.table.push(vec![
                "calicoctl get -o yaml".into(),
                backend.name.into(),
                items.to_string(),
                seconds(run.seconds),
                thousands(items as f64 / run.seconds),
                mib_from_kib(run.peak_rss_kib),
                "-".into(),
                note,
            ]);
        }
        Ok(run) => {
            let err = anyhow::anyhow!(
                "calicoctl get {}: {}",
                run.exit_description,
                first_lines(&run.stderr, 2)
            );
            section
                .table
                .push(error_row("calicoctl get -o yaml", backend.name, &err));
        }
        Err(err) => section
            .table
            .push(error_row("calicoctl get -o yaml", backend.name, &err)),
    }
    let _ = std::fs::remove_file(&output_path);
}

/// `calicoctl apply -f file`, which must report every policy applied.
async fn apply_file(
    calicoctl: &Path,
    backend: &Backend,
    scratch: &Path,
    file: &Path,
    count: usize,
) -> Result<ChildRun> {
    let run = run_calicoctl(
        calicoctl,
        backend,
        scratch,
        &["apply".into(), "-f".into(), file.as_os_str().to_owned()],
        None,
    )
    .await?;
    let expected = format!("Successfully applied {count} 'NetworkPolicy' resource(s)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !run.success || !stdout.contains(&expected) {
        bail!(
            "calicoctl apply {}: {} {}",
            run.exit_description,
            stdout.trim(),
            first_lines(&run.stderr, 1).replace(&format!("{}: ", file.display()), "")
        );
    }
    Ok(run)
}

async fn run_calicoctl(
    calicoctl: &Path,
    backend: &Backend,
    scratch: &Path,
    args: &[OsString],
    stdout_file: Option<PathBuf>,
) -> Result<ChildRun> {
    let mut args = args.to_vec();
    // A machine-wide calicoctl.cfg would win over the environment; point -c at our own settings instead.
    if Path::new(calico_datastore::config::DEFAULT_CONFIG_FILE).exists() {
        let config_path = scratch.join(format!("calicoctl-{}.cfg", backend.name));
        std::fs::write(&config_path, config_text(backend))
            .with_context(|| format!("writing {}", config_path.display()))?;
        args.insert(0, config_path.into_os_string());
        args.insert(0, "-c".into());
    }
    run_child(
        &ChildCommand {
            program: calicoctl.to_path_buf(),
            args,
            env: backend.env.clone(),
            stdout_file,
        },
        scratch,
    )
    .await
}

/// The same settings as `backend.env`, as a CalicoAPIConfig document.
fn config_text(backend: &Backend) -> String {
    let get = |name: &str| {
        backend
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut text = String::from(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec:\n",
    );
    text.push_str(&format!(
        "  datastoreType: {}\n",
        Value::from(get("DATASTORE_TYPE"))
    ));
    if backend.name == "etcd" {
        text.push_str(&format!(
            "  etcdEndpoints: {}\n",
            Value::from(get("ETCD_ENDPOINTS"))
        ));
    } else {
        text.push_str(&format!(
            "  datastorePath: {}\n",
            Value::from(get("CALICO_DATASTORE_PATH"))
        ));
    }
    text
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join(" / ")
}

/// Write every payload with unconditional puts, in batches of the store's largest size with several in
/// flight. Returns the elapsed seconds.
pub async fn put_all(
    store: &dyn Store,
    prefix: &str,
    payloads: &[(String, Vec<u8>)],
) -> Result<f64> {
    let batch_size = store.max_batch_ops().max(1);
    let batches: Vec<Vec<WriteOp>> = payloads
        .chunks(batch_size)
        .map(|chunk| {
            chunk
                .iter()
                .map(|(name, value)| WriteOp::Put {
                    key: format!("{prefix}{name}"),
                    value: value.clone(),
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(batches)
        .map(|ops| store.batch(ops))
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    for result in results {
        result.context("plain batched put")?;
    }
    let written = store.list(prefix, None).await?.kvs.len();
    if written != payloads.len() {
        bail!(
            "plain batched put stored {written} keys, expected {}",
            payloads.len()
        );
    }
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_all_writes_every_payload_to_an_embedded_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("s.db")).unwrap();
        let payloads: Vec<(String, Vec<u8>)> = (0..300)
            .map(|i| (format!("p{i:04}"), vec![b'x'; 100]))
            .collect();
        let elapsed = put_all(&store, "/ref/", &payloads).await.unwrap();
        assert!(elapsed > 0.0);
        let listed = store.list("/ref/", None).await.unwrap();
        assert_eq!(listed.kvs.len(), 300);
        assert_eq!(listed.kvs[0].key, "/ref/p0000");
    }

    #[test]
    fn config_file_mirrors_the_environment() {
        let backend = Backend {
            name: "embedded",
            env: vec![
                ("DATASTORE_TYPE".into(), "embedded".into()),
                ("CALICO_DATASTORE_PATH".into(), "/tmp/x.db".into()),
            ],
        };
        let parsed =
            calico_datastore::config::DatastoreConfig::from_config_text(&config_text(&backend))
                .unwrap();
        assert_eq!(
            parsed,
            calico_datastore::config::DatastoreConfig::Embedded {
                path: "/tmp/x.db".into()
            }
        );
    }
}
