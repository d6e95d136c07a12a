//! The Felix loop: fold datastore events into the model, compute this host's desired dataplane, and
//! reconcile the kernel to it — on every change (batched) and every route-refresh interval.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_api::Kind;
use calico_datastore::Store;
use calico_datastore::client::Client;
use calico_datastore::keys::parse_resource_key;
use calico_datastore::syncer::{SyncEvent, Syncer};
use calico_felix::dataplane::Dataplane;
use calico_felix::desired::{HostContext, compute};
use calico_felix::model::{Model, sync_prefixes};
use calico_ipam::Ipam;
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::startup::{self, Identity};
use crate::status::Status;

/// First re-check after an apply found an endpoint whose interface is not ready yet.
const FIRST_MISSING_RETRY: Duration = Duration::from_millis(50);

/// Run until `shutdown` completes. The dataplane is left as it is on exit: a restarted calico-node
/// reconciles it rather than rebuilding it, so established traffic is never interrupted.
pub async fn run(
    settings: &Settings,
    identity: &Identity,
    store: Arc<dyn Store>,
    status: Arc<Status>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = Client::new(store.clone());
    let ipam = Ipam::new(store.clone());
    let (tx, mut rx) = mpsc::channel(4096);
    let syncer = Syncer::new(store, sync_prefixes()).spawn(tx);
    let mut dataplane = Dataplane::new()?;
    let host = HostContext {
        nodename: identity.nodename.clone(),
        address: identity.address,
        uplink: identity.uplink.clone(),
        uplink_mtu: identity.uplink_mtu,
    };

    let mut model = Model::default();
    let mut in_sync = false;
    let mut dirty = false;
    let mut check_tunnel = true;
    let mut retry_at: Option<Instant> = None;
    let mut written_mtu: Option<u32> = None;
    let mut missing_delay = FIRST_MISSING_RETRY;
    let mut refresh = tokio::time::interval(settings.route_refresh());
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);

    let result = loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            _ = heartbeat.tick() => {
                status.heartbeat();
                continue;
            }
            _ = refresh.tick() => {
                // Periodic full reconciliation: the kernel may have been changed behind our back.
                dataplane.recheck_all();
                dirty = true;
                check_tunnel = true;
            }
            () = retry => {
                retry_at = None;
                dirty = true;
            }
            event = rx.recv() => {
                let Some(event) = event else {
                    break Err(anyhow::anyhow!("the datastore syncer stopped"));
                };
                let started = Instant::now();
                let mut batch = vec![event];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                for event in &batch {
                    match event {
                        SyncEvent::InSync { .. } => {
                            in_sync = true;
                            dirty = true;
                        }
                        SyncEvent::Resyncing { reason } => {
                            status.metrics.resyncs_started.inc();
                            tracing::info!(%reason, "resyncing with the datastore");
                        }
                        SyncEvent::Put(kv) => {
                            if model.apply(event) {
                                dirty = true;
                                check_tunnel |= affects_tunnel(&kv.key, &identity.nodename);
                            }
                        }
                        SyncEvent::Delete { key, .. } => {
                            if model.apply(event) {
                                dirty = true;
                                check_tunnel |= affects_tunnel(key, &identity.nodename);
                            }
                        }
                    }
                }
                status.metrics.calc_graph_updates_processed.inc_by(batch.len() as u64);
                status
                    .metrics
                    .calc_graph_update_time_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
        }
        if !in_sync || !dirty {
            continue;
        }
        dirty = false;

        if check_tunnel && identity.address.is_some() {
            check_tunnel = false;
            if let Err(e) =
                startup::ensure_vxlan_tunnel_address(&client, &ipam, &identity.nodename).await
            {
                tracing::warn!(error = %format!("{e:#}"), "cannot ensure the VXLAN tunnel address; will retry");
                check_tunnel = true;
                retry_at.get_or_insert(Instant::now() + Duration::from_secs(2));
            }
        }

        let desired = compute(&model, &host);
        let started = Instant::now();
        let report = match dataplane.apply(&desired) {
            Ok(r) => r,
            Err(e) => {
                status.metrics.int_dataplane_failures.inc();
                tracing::error!(error = %e, "dataplane update failed; retrying");
                retry_at.get_or_insert(Instant::now() + Duration::from_secs(1));
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
        if !report.failures.is_empty() {
            status.metrics.int_dataplane_failures.inc();
            for failure in &report.failures {
                tracing::warn!(%failure, "a dataplane change failed; retrying");
            }
            retry_at.get_or_insert(Instant::now() + Duration::from_secs(1));
        }
        if report.workloads_missing > 0 {
            // The CNI plugin is still wiring an endpoint we already know: look again soon, backing
            // off in case the interface never comes (an endpoint left behind by a crashed runtime).
            let at = Instant::now() + missing_delay;
            retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
            missing_delay = (missing_delay * 2).min(Duration::from_secs(10));
        } else {
            missing_delay = FIRST_MISSING_RETRY;
        }
        if report.routes_deferred > 0 {
            // Look again once the grace period of those interfaces is over.
            let at = Instant::now() + dataplane.route_grace() + Duration::from_millis(100);
            retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
        }
        if report.writes() > 0 {
            tracing::info!(
                writes = report.writes(),
                took_ms = took.as_millis() as u64,
                routes_added = report.routes_added,
                routes_removed = report.routes_removed,
                "dataplane updated"
            );
        }
        if written_mtu != Some(desired.pod_mtu) {
            match startup::write_state_file(
                &settings.state_dir,
                calico_contracts::state::MTU_FILE,
                &format!("{}\n", desired.pod_mtu),
            ) {
                Ok(()) => written_mtu = Some(desired.pod_mtu),
                Err(e) => tracing::warn!(error = %e, dir = %settings.state_dir.display(),
                    "cannot write the MTU file for the CNI plugin"),
            }
        }
        status
            .metrics
            .active_local_endpoints
            .set(desired.workloads.len() as i64);
        status
            .metrics
            .cluster_num_hosts
            .set(model.nodes.len() as i64);
        status
            .metrics
            .cluster_num_workload_endpoints
            .set(model.endpoints.len() as i64);
        status.metrics.vxlan_vteps.set(desired.vteps.len() as i64);
        status.metrics.routes.set(desired.routes.len() as i64);
        if !status.is_ready() {
            tracing::info!(
                nodes = model.nodes.len(),
                endpoints = model.endpoints.len(),
                "in sync with the datastore and the kernel"
            );
            status.set_ready(true, "ok");
        }
    };
    syncer.abort();
    result
}

/// Pools and this node's own Node decide whether it needs a VXLAN tunnel address.
fn affects_tunnel(key: &str, nodename: &str) -> bool {
    match parse_resource_key(key) {
        Some(id) => id.kind == Kind::IPPool || (id.kind == Kind::Node && id.name == nodename),
        None => false,
    }
}
