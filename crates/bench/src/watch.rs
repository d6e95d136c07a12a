//! Section 2: latency from a write in one process to the watch event in another.
//!
//! This process watches a prefix; a child (this binary's hidden `writer` subcommand) writes keys whose
//! values are the wall-clock time just before the write. Latency = time the event arrived − that stamp.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use calico_datastore::embedded::EmbeddedStore;
use calico_datastore::etcd::{EtcdConfig, EtcdStore};
use calico_datastore::{EventKind, Store};
use calico_testutil::EtcdServer;
use clap::{Args, ValueEnum};
use futures::StreamExt;

use crate::measure::percentile;
use crate::report::{Goal, Table};

const WATCH_PREFIX: &str = "/bench-watch/";
/// Writes the child makes before the measured ones, so connection set-up is not measured.
const WARMUP_WRITES: usize = 20;
/// Measured writes per backend.
const MEASURED_WRITES: usize = 1_000;
/// Gap between writes: long enough that each write is seen before the next, so we measure latency, not
/// queueing.
const WRITE_INTERVAL_MS: u64 = 3;
/// Give up on missing events this long after the writer has finished.
const DRAIN_AFTER_WRITER_EXIT: Duration = Duration::from_secs(3);
const OVERALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    Embedded,
    Etcd,
}

impl BackendKind {
    fn name(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Etcd => "etcd",
        }
    }

    /// p99 target in milliseconds.
    fn p99_goal_ms(self) -> f64 {
        match self {
            BackendKind::Embedded => 10.0,
            BackendKind::Etcd => 5.0,
        }
    }
}

/// Arguments of the hidden `writer` subcommand.
#[derive(Args, Debug)]
pub struct WriterArgs {
    #[arg(long, value_enum)]
    backend: BackendKind,
    /// The embedded store's file, or etcd's endpoint URL.
    #[arg(long)]
    target: String,
    #[arg(long, default_value = WATCH_PREFIX)]
    prefix: String,
    #[arg(long, default_value_t = MEASURED_WRITES)]
    writes: usize,
    #[arg(long, default_value_t = WARMUP_WRITES)]
    warmup: usize,
    #[arg(long, default_value_t = WRITE_INTERVAL_MS)]
    interval_ms: u64,
}

async fn open_store(backend: BackendKind, target: &str) -> Result<Arc<dyn Store>> {
    Ok(match backend {
        BackendKind::Embedded => {
            Arc::new(EmbeddedStore::open(target).with_context(|| format!("opening {target}"))?)
        }
        BackendKind::Etcd => {
            let config = EtcdConfig {
                endpoints: vec![target.to_string()],
                ..EtcdConfig::default()
            };
            Arc::new(
                EtcdStore::connect(&config)
                    .await
                    .with_context(|| format!("connecting to {target}"))?,
            )
        }
    })
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn warmup_key(prefix: &str, index: usize) -> String {
    format!("{prefix}w-{index:05}")
}

fn measured_key(prefix: &str, index: usize) -> String {
    format!("{prefix}k-{index:05}")
}

/// The child side: warm-up writes, then the measured writes, each value the send time in nanoseconds.
pub async fn writer(args: WriterArgs) -> Result<()> {
    let store = open_store(args.backend, &args.target).await?;
    let interval = Duration::from_millis(args.interval_ms);
    for index in 0..args.warmup {
        store
            .put(
                &warmup_key(&args.prefix, index),
                now_nanos().to_string().into_bytes(),
            )
            .await?;
        tokio::time::sleep(interval).await;
    }
    for index in 0..args.writes {
        let sent = now_nanos();
        store
            .put(
                &measured_key(&args.prefix, index),
                sent.to_string().into_bytes(),
            )
            .await?;
        tokio::time::sleep(interval).await;
    }
    Ok(())
}

/// Latencies (ms) of the measured writes this process saw, and how many writes were expected.
struct Observed {
    latencies_ms: Vec<f64>,
    expected: usize,
}

async fn observe(backend: BackendKind, target: &str) -> Result<Observed> {
    let store = open_store(backend, target).await?;
    let from = store.current_revision().await? + 1;
    let mut events = store.watch(WATCH_PREFIX, from).await?;
    let exe = std::env::current_exe().context("finding this binary's path")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("writer")
        .arg("--backend")
        .arg(backend.name())
        .arg("--target")
        .arg(target)
        .arg("--writes")
        .arg(MEASURED_WRITES.to_string())
        .arg("--interval-ms")
        .arg(WRITE_INTERVAL_MS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the writer process")?;
    let measured_prefix = format!("{WATCH_PREFIX}k-");
    let mut latencies_ms = Vec::with_capacity(MEASURED_WRITES);
    let mut deadline = tokio::time::Instant::now() + OVERALL_TIMEOUT;
    let mut writer_status = None;
    while latencies_ms.len() < MEASURED_WRITES {
        tokio::select! {
            event = events.next() => {
                let received = now_nanos();
                match event {
                    Some(Ok(event)) => {
                        if event.kind != EventKind::Put || !event.kv.key.starts_with(&measured_prefix) {
                            continue;
                        }
                        let sent: u128 = std::str::from_utf8(&event.kv.value)
                            .ok()
                            .and_then(|text| text.parse().ok())
                            .with_context(|| format!("value of {} is not a timestamp", event.kv.key))?;
                        latencies_ms.push(received.saturating_sub(sent) as f64 / 1e6);
                    }
                    Some(Err(err)) => bail!("watch failed: {err}"),
                    None => bail!("watch ended early"),
                }
            }
            status = child.wait(), if writer_status.is_none() => {
                let status = status.context("waiting for the writer")?;
                if !status.success() {
                    bail!("writer process failed: {status}");
                }
                writer_status = Some(status);
                deadline = deadline.min(tokio::time::Instant::now() + DRAIN_AFTER_WRITER_EXIT);
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if writer_status.is_none() {
        let status = child.wait().await.context("waiting for the writer")?;
        if !status.success() {
            bail!("writer process failed: {status}");
        }
    }
    Ok(Observed {
        latencies_ms,
        expected: MEASURED_WRITES,
    })
}

pub async fn run() -> Result<(Table, Vec<Goal>)> {
    let mut table = Table::new(
        &format!(
            "2. watch latency, write in one process -> event in another ({MEASURED_WRITES} writes, {WRITE_INTERVAL_MS} ms apart, {ROUNDS} rounds; stores under {}, which TMPDIR sets)",
            std::env::temp_dir().display()
        ),
        &[
            "backend", "writes", "received", "p50 ms", "p99 ms", "max ms", "goal p99", "note",
        ],
    );
    let mut goals = Vec::new();
    let scratch = tempfile::Builder::new()
        .prefix("calico-bench-watch-")
        .tempdir()
        .context("creating a temporary directory")?;
    // This machine's disk and CPU jitter moves a single p99 a lot: run several rounds, each on a
    // fresh store, and judge the goal on the median round.
    let mut embedded = Vec::new();
    for round in 0..ROUNDS {
        let path: PathBuf = scratch.path().join(format!("watch-{round}.db"));
        embedded.push(observe(BackendKind::Embedded, &path.to_string_lossy()).await);
    }
    record_rounds(&mut table, &mut goals, BackendKind::Embedded, embedded);

    if calico_testutil::etcd_binary().is_none() {
        record_rounds(
            &mut table,
            &mut goals,
            BackendKind::Etcd,
            vec![Err(anyhow::anyhow!(
                "etcd not found: install etcd-server (scripts/bench.sh does)"
            ))],
        );
    } else {
        let mut etcd = Vec::new();
        for _ in 0..ROUNDS {
            let server = EtcdServer::start();
            etcd.push(observe(BackendKind::Etcd, &server.endpoint()).await);
            drop(server);
        }
        record_rounds(&mut table, &mut goals, BackendKind::Etcd, etcd);
    }
    Ok((table, goals))
}

/// Rounds of the latency measurement per backend.
const ROUNDS: usize = 3;

/// One table row per round; the goal is judged on the round with the median p99.
fn record_rounds(
    table: &mut Table,
    goals: &mut Vec<Goal>,
    backend: BackendKind,
    rounds: Vec<Result<Observed>>,
) {
    let goal_ms = backend.p99_goal_ms();
    let name = format!("{}: watch latency p99 <= {goal_ms} ms", backend.name());
    let mut p99s = Vec::new();
    let mut problem = None;
    for observed in rounds {
        match record(table, backend, observed) {
            Ok(p99) => p99s.push(p99),
            Err(message) => problem = problem.or(Some(message)),
        }
    }
    // A round with an error or missing events decides the goal by itself.
    if let Some(detail) = problem {
        goals.push(Goal {
            informational: false,
            name,
            met: None,
            detail,
        });
        return;
    }
    p99s.sort_by(f64::total_cmp);
    let median = p99s.get(p99s.len() / 2).copied();
    goals.push(Goal {
        informational: false,
        name,
        met: median.map(|m| m <= goal_ms),
        detail: format!(
            "median p99 of {} rounds {} ms (rounds: {})",
            p99s.len(),
            median.map_or("n/a".into(), |m| format!("{m:.2}")),
            p99s.iter()
                .map(|p| format!("{p:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
}

/// Add one round's row; its p99, or what went wrong.
fn record(
    table: &mut Table,
    backend: BackendKind,
    observed: Result<Observed>,
) -> Result<f64, String> {
    let goal_ms = backend.p99_goal_ms();
    match observed {
        Ok(Observed {
            mut latencies_ms,
            expected,
        }) => {
            latencies_ms.sort_by(f64::total_cmp);
            let p50 = percentile(&latencies_ms, 50.0);
            let p99 = percentile(&latencies_ms, 99.0);
            let max = latencies_ms.last().copied();
            let show = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.2}"));
            let missing = expected - latencies_ms.len();
            table.push(vec![
                backend.name().into(),
                expected.to_string(),
                latencies_ms.len().to_string(),
                show(p50),
                show(p99),
                show(max),
                format!("{goal_ms:.1}"),
                if missing == 0 {
                    String::new()
                } else {
                    format!("ERROR: {missing} events never arrived")
                },
            ]);
            match p99 {
                Some(p) if missing == 0 => Ok(p),
                Some(p) => Err(format!(
                    "p99 {p:.2} ms, but only {} of {expected} events arrived",
                    latencies_ms.len()
                )),
                None => Err("no events arrived".into()),
            }
        }
        Err(err) => {
            let message = format!("ERROR: {err:#}").replace('\n', " ");
            table.push(vec![
                backend.name().into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{goal_ms:.1}"),
                message.clone(),
            ]);
            Err(message)
        }
    }
}
