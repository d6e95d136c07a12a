//! The Felix loop, one job per thread:
//!
//! - the **syncer** (on a thread with a runtime of its own) lists and watches the datastore and sends
//!   events;
//! - the **calculation** thread folds them into the model and computes this host's desired dataplane,
//!   handing the newest one to the dataplane thread (coalesced: a newer one replaces one not applied yet);
//! - the **dataplane** thread alone owns the netlink socket and runs `nft`: it plans and applies the
//!   desired state, retries failures and reconciles everything again every route-refresh interval;
//! - async tasks on the multi-thread runtime serve health and metrics, probe the datastore and keep the
//!   VXLAN tunnel address assigned.
//!
//! A stalled `nft`, netlink call or datastore request therefore holds up only its own thread or task;
//! `/liveness` and `/readiness` keep answering and say what is stuck.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use calico_api::Kind;
use calico_dataplane::Dataplane;
use calico_dataplane::activity::Activity;
use calico_dataplane::plan::bgp::BgpRoutes;
use calico_datastore::Store;
use calico_datastore::client::Client;
use calico_datastore::keys::parse_resource_key;
use calico_datastore::syncer::{SyncEvent, Syncer};
use calico_felix::desired::{Desired, HostContext, compute};
use calico_felix::model::{Model, sync_prefixes};
use calico_ipam::Ipam;
use calico_model::KeyValue;
use calico_model::ipam::model::parse_block_key;
use tokio::sync::{mpsc, watch};

use crate::bgp::{BgpModel, BgpPlan};
use crate::bgp_status::NodeBgpStatus;
use crate::config::Settings;
use crate::handoff::{Handoff, Taken};
use crate::input::DataplaneInput;
use crate::startup::{self, Identity};
use crate::status::Status;

/// First re-check after an apply found an endpoint whose interface is not ready yet.
const FIRST_MISSING_RETRY: Duration = Duration::from_millis(50);
/// How often the datastore is probed for reachability while the syncer waits on its watch.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// A probe that takes longer than this counts as the datastore being unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait before assigning the VXLAN tunnel address again after a failure.
const TUNNEL_RETRY: Duration = Duration::from_secs(2);

/// Run until `shutdown` completes. The dataplane is left as it is on exit: a restarted calico-node
/// reconciles it rather than rebuilding it, so established traffic is never interrupted.
pub async fn run(
    settings: &Settings,
    identity: &Identity,
    store: Arc<dyn Store>,
    status: Arc<Status>,
    bgp_status: watch::Sender<NodeBgpStatus>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = Client::new(store.clone());
    let ipam = Ipam::new(store.clone());
    let (events_tx, events_rx) = mpsc::channel(4096);
    let syncer = Syncer::new(store.clone(), sync_prefixes())
        .spawn_on_own_thread("syncer", events_tx)
        .context("cannot start the syncer thread")?;
    let handoff: Arc<Handoff<DataplaneInput>> = Arc::new(Handoff::default());
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<String>();
    let (tunnel_tx, tunnel_rx) = mpsc::unbounded_channel::<()>();

    start_dataplane(
        DataplaneSettings {
            state_dir: settings.state_dir.clone(),
            refresh: settings.route_refresh(),
        },
        Arc::clone(&status),
        Arc::clone(&handoff),
        ended_tx.clone(),
    )?;
    let host = HostContext {
        nodename: identity.nodename.clone(),
        address: identity.address,
        uplink: identity.uplink.clone(),
        uplink_mtu: identity.uplink_mtu,
        uplink_gso_ipv4_max: identity.uplink_gso_ipv4_max,
        bgp: settings.bgp(),
    };
    let (bgp_calc, bgp_task) = if settings.bgp() {
        let (plans_tx, plans_rx) = watch::channel(None);
        let task = tokio::spawn(crate::bgp::run(
            plans_rx,
            settings.state_dir.clone(),
            Arc::clone(&handoff),
            Arc::clone(&status),
            bgp_status,
        ));
        let calc = BgpCalc {
            model: BgpModel::default(),
            plans: plans_tx,
            secrets: settings.secrets_dir(),
            router_id: settings.router_id,
        };
        (Some(calc), Some(task))
    } else {
        (None, None)
    };
    start_calculation(
        host,
        bgp_calc,
        events_rx,
        Arc::clone(&status),
        Arc::clone(&handoff),
        tunnel_tx.clone(),
        ended_tx,
    )?;
    let tunnel = identity.address.is_some().then(|| {
        tokio::spawn(keep_tunnel_address(
            client,
            ipam,
            identity.nodename.clone(),
            tunnel_tx,
            tunnel_rx,
        ))
    });
    let reports = (settings.reporting_interval_secs > 0).then(|| {
        tokio::spawn(report_status(
            Arc::clone(&store),
            calico_datastore::keys::felix_status_key(&identity.nodename),
            Duration::from_secs(settings.reporting_interval_secs),
            Duration::from_secs(settings.reporting_ttl_secs.max(1)),
        ))
    });
    let probe = tokio::spawn(probe_datastore(store, Arc::clone(&status)));

    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            _ = heartbeat.tick() => status.heartbeat(),
            ended = ended_rx.recv() => {
                break Err(anyhow::anyhow!(
                    ended.unwrap_or_else(|| "a worker thread ended".to_string())
                ));
            }
        }
    };
    // The threads are not joined: the dataplane thread may be inside an nft run that takes up to its
    // time limit, and the process is about to exit anyway.
    handoff.close();
    syncer.abort();
    probe.abort();
    for task in [tunnel, reports, bgp_task].into_iter().flatten() {
        task.abort();
    }
    result
}

/// The calculation's BGP part: the resources BGP depends on, and where its plans go.
struct BgpCalc {
    model: BgpModel,
    plans: watch::Sender<Option<Arc<BgpPlan>>>,
    secrets: PathBuf,
    router_id: Option<std::net::Ipv4Addr>,
}

fn start_calculation(
    host: HostContext,
    bgp: Option<BgpCalc>,
    events: mpsc::Receiver<SyncEvent>,
    status: Arc<Status>,
    handoff: Arc<Handoff<DataplaneInput>>,
    tunnel: mpsc::UnboundedSender<()>,
    ended: mpsc::UnboundedSender<String>,
) -> anyhow::Result<()> {
    let activity = Arc::new(Activity::default());
    status.watch_activity("the calculation", Arc::clone(&activity));
    std::thread::Builder::new()
        .name("calculation".into())
        .spawn(move || {
            let reason = calculate(host, bgp, events, &status, &handoff, &tunnel, &activity);
            handoff.close();
            let _ = ended.send(reason);
        })
        .context("cannot start the calculation thread")?;
    Ok(())
}

/// Folds syncer events into the model and hands every new desired state to the dataplane thread, until
/// the syncer stops; returns why it stopped.
fn calculate(
    host: HostContext,
    mut bgp: Option<BgpCalc>,
    mut events: mpsc::Receiver<SyncEvent>,
    status: &Status,
    handoff: &Handoff<DataplaneInput>,
    tunnel: &mpsc::UnboundedSender<()>,
    activity: &Activity,
) -> String {
    let mut model = Model::for_host(&host.nodename);
    let mut in_sync = false;
    let mut dirty = false;
    let mut bgp_dirty = true;
    // The first pass checks the tunnel address once whatever the events say.
    let mut check_tunnel = true;
    loop {
        let Some(first) = events.blocking_recv() else {
            return "the datastore syncer stopped".to_string();
        };
        let started = Instant::now();
        let _busy = activity.begin("folding datastore events into the model");
        let mut batch = vec![first];
        while let Ok(more) = events.try_recv() {
            batch.push(more);
        }
        if let Some(bgp) = bgp.as_mut() {
            for event in &batch {
                bgp_dirty |= bgp.model.apply(event);
            }
        }
        for event in &batch {
            match event {
                SyncEvent::InSync { .. } => {
                    in_sync = true;
                    dirty = true;
                    status.set_datastore_problem("syncer", None);
                }
                SyncEvent::Resyncing { reason } => {
                    status.metrics.resyncs_started.inc();
                    status.set_datastore_problem(
                        "syncer",
                        Some(format!("cannot list or watch ({reason}); resyncing")),
                    );
                    tracing::info!(%reason, "resyncing with the datastore");
                }
                SyncEvent::Put(KeyValue { key, .. }) | SyncEvent::Delete { key, .. } => {
                    if model.apply(event) {
                        dirty = true;
                        check_tunnel |= affects_tunnel(key, &host.nodename);
                        // A block whose routing changed (affinity, borrowed addresses) may change
                        // what this node originates; other allocations change nothing.
                        bgp_dirty |= parse_block_key(key).is_some();
                    }
                }
            }
        }
        status
            .metrics
            .calc_graph_updates_processed
            .inc_by(batch.len() as u64);
        if in_sync && check_tunnel {
            check_tunnel = false;
            // The receiver only goes away at shutdown.
            let _ = tunnel.send(());
        }
        if in_sync && dirty {
            dirty = false;
            let desired = compute(&model, &host);
            tracing::debug!(
                events = batch.len(),
                took_us = started.elapsed().as_micros() as u64,
                "calculated the desired dataplane"
            );
            status
                .metrics
                .cluster_num_hosts
                .set(model.nodes.len() as i64);
            status
                .metrics
                .cluster_num_workload_endpoints
                .set(model.endpoint_count() as i64);
            handoff.update(|input| input.desired = Some(desired));
        }
        if in_sync
            && bgp_dirty
            && let Some(bgp) = bgp.as_ref()
        {
            bgp_dirty = false;
            let plan = bgp.model.plan(
                &host.nodename,
                bgp.router_id,
                &bgp.secrets,
                model.blocks.values(),
            );
            bgp.plans.send_replace(Some(Arc::new(plan)));
        }
        status
            .metrics
            .calc_graph_update_time_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

struct DataplaneSettings {
    state_dir: PathBuf,
    refresh: Duration,
}

/// Starts the dataplane thread; fails when the kernel cannot be talked to at all.
fn start_dataplane(
    settings: DataplaneSettings,
    status: Arc<Status>,
    handoff: Arc<Handoff<DataplaneInput>>,
    ended: mpsc::UnboundedSender<String>,
) -> anyhow::Result<()> {
    let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("dataplane".into())
        .spawn(move || {
            // The netlink socket is opened on this thread, which then owns it.
            let dataplane = match Dataplane::new() {
                Ok(dataplane) => {
                    let _ = opened_tx.send(Ok(()));
                    dataplane
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            status.watch_activity("the dataplane", dataplane.activity());
            apply_loop(dataplane, &settings, &status, &handoff);
            let _ = ended.send("the dataplane thread ended".to_string());
        })
        .context("cannot start the dataplane thread")?;
    match opened_rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("cannot open the dataplane"),
        Err(_) => anyhow::bail!("the dataplane thread ended while opening netlink"),
    }
}

/// Applies the newest desired state, again after failures and every refresh interval, until the
/// handoff is closed.
fn apply_loop(
    mut dataplane: Dataplane,
    settings: &DataplaneSettings,
    status: &Status,
    handoff: &Handoff<DataplaneInput>,
) {
    let mut current: Option<Desired> = None;
    let mut current_bgp: Option<BgpRoutes> = None;
    let mut retry_at: Option<Instant> = None;
    // BGP routes the kernel refused (a slot still held by Felix's route): retried with every apply
    // until written, so a desired-state change arriving before the retry cannot drop them.
    let mut bgp_pending = false;
    let mut refresh_at = Instant::now() + settings.refresh;
    let mut missing_delay = FIRST_MISSING_RETRY;
    let mut written_mtu: Option<u32> = None;
    let mut written_gso: Option<u32> = None;
    loop {
        let deadline = retry_at.map_or(refresh_at, |at| at.min(refresh_at));
        // A new desired state is applied as a change from the last one (only what differs is read
        // and written); a retry or the periodic refresh reconciles everything.
        let mut bgp_due = false;
        let full = match handoff.take(Some(deadline)) {
            Taken::Value(input) => {
                bgp_due = input.bgp.is_some();
                if let Some(routes) = input.bgp {
                    current_bgp = Some(routes);
                }
                match input.desired {
                    Some(desired) => current = Some(desired),
                    None => {
                        // Only the BGP routes changed.
                        bgp_pending =
                            apply_bgp(&mut dataplane, current_bgp.as_ref(), status, &mut retry_at);
                        continue;
                    }
                }
                false
            }
            Taken::Timeout => {
                let now = Instant::now();
                if now >= refresh_at {
                    // Periodic full reconciliation: the kernel may have been changed behind our back.
                    dataplane.recheck_all();
                    refresh_at = now + settings.refresh;
                }
                true
            }
            Taken::Closed => return,
        };
        retry_at = None;
        if full || bgp_due || bgp_pending {
            bgp_pending = apply_bgp(&mut dataplane, current_bgp.as_ref(), status, &mut retry_at);
        }
        let bgp_retry = retry_at.take();
        let Some(desired) = current.as_ref() else {
            retry_at = bgp_retry;
            continue;
        };

        let started = Instant::now();
        let applied = if full {
            dataplane.apply(desired)
        } else {
            dataplane.apply_change(desired)
        };
        let report = match applied {
            Ok(report) => report,
            Err(e) => {
                status.metrics.int_dataplane_failures.inc();
                tracing::error!(error = %e, "dataplane update failed; retrying");
                retry_at = Some(Instant::now() + Duration::from_secs(1));
                continue;
            }
        };
        let took = started.elapsed();
        status.metrics.int_dataplane_messages.inc();
        status
            .metrics
            .int_dataplane_apply_time_seconds
            .observe(took.as_secs_f64());
        let problems: Vec<String> = desired
            .problems
            .iter()
            .chain(&report.problems)
            .cloned()
            .collect();
        if problems != status.problems() {
            for problem in &problems {
                tracing::warn!(%problem, "dataplane problem");
            }
        }
        status.set_problems(problems);
        let mut next: Option<Instant> = None;
        let mut at = |when: Instant| next = Some(next.map_or(when, |n| n.min(when)));
        if !report.failures.is_empty() {
            status.metrics.int_dataplane_failures.inc();
            for failure in &report.failures {
                tracing::warn!(%failure, "a dataplane change failed; retrying");
            }
            at(Instant::now() + Duration::from_secs(1));
        }
        if report.workloads_missing > 0 {
            // The CNI plugin is still wiring an endpoint we already know: look again soon, backing
            // off in case the interface never comes (an endpoint left behind by a crashed runtime).
            at(Instant::now() + missing_delay);
            missing_delay = (missing_delay * 2).min(Duration::from_secs(10));
        } else {
            missing_delay = FIRST_MISSING_RETRY;
        }
        if report.routes_deferred > 0 {
            // Look again once the grace period of those interfaces is over.
            at(Instant::now() + dataplane.route_grace() + Duration::from_millis(100));
        }
        if bgp_pending {
            // This apply may have removed the Felix routes that held those slots (a pool that
            // stopped using VXLAN): write them now rather than a second later, so traffic does
            // not stop while the routes change hands. A retry already scheduled stays (harmless).
            let mut ignored = None;
            bgp_pending = apply_bgp(&mut dataplane, current_bgp.as_ref(), status, &mut ignored);
        }
        retry_at = match (next, bgp_retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tracing::debug!(
            full,
            writes = report.writes(),
            took_us = took.as_micros() as u64,
            "dataplane apply"
        );
        if report.writes() > 0 {
            tracing::info!(
                writes = report.writes(),
                took_ms = took.as_millis() as u64,
                routes_added = report.routes_added,
                routes_removed = report.routes_removed,
                "dataplane updated"
            );
        }
        // What the CNI plugin reads when it wires a pod, rewritten only when it changes.
        write_state_number(
            &settings.state_dir,
            calico_contracts::state::MTU_FILE,
            desired.pod_mtu,
            &mut written_mtu,
        );
        write_state_number(
            &settings.state_dir,
            calico_contracts::state::GSO_IPV4_MAX_FILE,
            desired.pod_gso_ipv4_max,
            &mut written_gso,
        );
        status
            .metrics
            .active_local_endpoints
            .set(desired.workloads.len() as i64);
        status.metrics.vxlan_vteps.set(desired.vteps.len() as i64);
        status.metrics.routes.set(desired.routes.len() as i64);
        if !status.is_ready() {
            tracing::info!("in sync with the datastore and the kernel");
            status.set_ready(true, "ok");
        }
    }
}

/// Writes `value` to `file` in the state directory unless `written` says it is already there; a
/// failure is logged and retried on the next apply.
fn write_state_number(dir: &std::path::Path, file: &str, value: u32, written: &mut Option<u32>) {
    if *written == Some(value) {
        return;
    }
    match startup::write_state_file(dir, file, &format!("{value}\n")) {
        Ok(()) => *written = Some(value),
        Err(e) => tracing::warn!(error = %e, dir = %dir.display(), file,
            "cannot write a state file for the CNI plugin"),
    }
}

/// Writes the BGP speaker's routes (`proto bird`) when there are any to write; a failure is retried
/// in a second. Returns whether something is left to write.
fn apply_bgp(
    dataplane: &mut Dataplane,
    routes: Option<&BgpRoutes>,
    status: &Status,
    retry_at: &mut Option<Instant>,
) -> bool {
    let Some(routes) = routes else {
        return false;
    };
    match dataplane.apply_bgp_routes(routes) {
        Ok(report) => {
            status.metrics.bgp_routes.set(routes.routes.len() as i64);
            if report.writes() > 0 {
                tracing::info!(
                    routes_added = report.routes_added,
                    routes_removed = report.routes_removed,
                    "BGP routes updated"
                );
            }
            for problem in &report.problems {
                tracing::warn!(%problem, "a BGP route is not programmed");
            }
            if !report.failures.is_empty() {
                for failure in &report.failures {
                    tracing::warn!(%failure, "a BGP route could not be written; retrying");
                }
                *retry_at = Some(Instant::now() + Duration::from_secs(1));
                return true;
            }
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "writing BGP routes failed; retrying");
            *retry_at = Some(Instant::now() + Duration::from_secs(1));
            true
        }
    }
}

/// Assigns this node's VXLAN tunnel address whenever the calculation asks (pools or this node changed),
/// retrying after a failure.
async fn keep_tunnel_address(
    client: Client,
    ipam: Ipam,
    nodename: String,
    again: mpsc::UnboundedSender<()>,
    mut requests: mpsc::UnboundedReceiver<()>,
) {
    while requests.recv().await.is_some() {
        // Requests that queued up while the last one ran are answered by this one.
        while requests.try_recv().is_ok() {}
        if let Err(e) = startup::ensure_vxlan_tunnel_address(&client, &ipam, &nodename).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot ensure the VXLAN tunnel address; will retry");
            let again = again.clone();
            tokio::spawn(async move {
                tokio::time::sleep(TUNNEL_RETRY).await;
                let _ = again.send(());
            });
        }
    }
}

/// Reads the datastore's revision every [`PROBE_INTERVAL`]: a datastore that does not answer (an etcd
/// that froze, a network partition) leaves the syncer waiting on a silent watch, so readiness learns of
/// it here.
async fn probe_datastore(store: Arc<dyn Store>, status: Arc<Status>) {
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    loop {
        interval.tick().await;
        let problem = match tokio::time::timeout(PROBE_TIMEOUT, store.current_revision()).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("unreachable: {e}")),
            Err(_) => Some(format!(
                "no answer within {} s",
                PROBE_TIMEOUT.as_secs_f64()
            )),
        };
        status.set_datastore_problem("probe", problem);
    }
}

/// Felix's status report: `{"time": <RFC 3339>, "uptime": <seconds>, "first_update": <bool>}` under
/// [`calico_datastore::keys::felix_status_key`] every `every`, living `ttl` unless renewed, so the
/// report of a host that died disappears.
async fn report_status(store: Arc<dyn Store>, key: String, every: Duration, ttl: Duration) {
    let started = Instant::now();
    let mut first = true;
    let mut interval = tokio::time::interval(every);
    loop {
        interval.tick().await;
        let time = match time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
        {
            Ok(time) => time,
            Err(e) => {
                tracing::warn!(error = %e, "cannot format the time for the status report");
                continue;
            }
        };
        let report = serde_json::json!({
            "time": time,
            "uptime": started.elapsed().as_secs_f64(),
            "first_update": first,
        });
        match store
            .put_with_ttl(&key, report.to_string().into_bytes(), ttl)
            .await
        {
            Ok(_) => first = false,
            Err(e) => {
                tracing::warn!(error = %e, %key, "cannot write the status report; will retry")
            }
        }
    }
}

/// Pools and this node's own Node decide whether it needs a VXLAN tunnel address.
fn affects_tunnel(key: &str, nodename: &str) -> bool {
    match parse_resource_key(key) {
        Some(id) => id.kind == Kind::IPPool || (id.kind == Kind::Node && id.name == nodename),
        None => false,
    }
}
