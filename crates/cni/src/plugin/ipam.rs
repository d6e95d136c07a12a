//! `calico-ipam`: addresses from Calico IPAM for one container attachment. The `calico` plugin calls these
//! functions in-process when its `ipam.type` is `calico-ipam`; the `calico-ipam` executable serves them to
//! any other plugin that delegates to it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use calico_datastore::Store;
use calico_ipam::block::{ATTR_NAMESPACE, ATTR_NODE, ATTR_POD};
use calico_ipam::{AssignRequest, Ipam, IpamError};
use ipnet::IpNet;

use crate::spec::{CniError, CniResult, Command, IpConfig};

use super::context::{Invocation, IpamLock, failure, store_error};
use super::names::Workload;

fn ipam_error(what: &str, e: IpamError) -> CniError {
    match e {
        IpamError::Store(s) => store_error(what, &s),
        other => failure(format!("{what}: {other}"), ""),
    }
}

/// Assign this attachment's addresses (each with its block's prefix length). An `IP` in `CNI_ARGS` asks
/// for that address; otherwise one address per enabled family from the configured (or all suitable) pools.
pub async fn assign(
    inv: &Invocation,
    store: Arc<dyn Store>,
    node: &str,
) -> Result<Vec<IpNet>, CniError> {
    let ipam = Ipam::new(store);
    let handle = inv.handle();
    let mut attrs = BTreeMap::from([(ATTR_NODE.to_string(), node.to_string())]);
    if let Workload::Kubernetes { namespace, pod } = inv.workload() {
        attrs.insert(ATTR_NAMESPACE.to_string(), namespace);
        attrs.insert(ATTR_POD.to_string(), pod);
    }
    let _lock = IpamLock::acquire(&inv.ipam_lock_path());
    if let Some(ip) = inv.env.args.ip {
        tracing::info!(%ip, %handle, "assigning the requested address");
        let assigned = ipam
            .assign_ip(
                ip,
                &handle,
                &attrs,
                node,
                Some(calico_api::spec::ippool::AllowedUse::Workload),
            )
            .await;
        return match assigned {
            Ok(got) => Ok(vec![got]),
            // A repeated ADD for the same container: the address is already its own.
            Err(IpamError::InUse(_)) => {
                let held = ipam
                    .held_by_handle(&handle)
                    .await
                    .map_err(|e| ipam_error("reading the container's addresses", e))?;
                match held.v4.iter().chain(&held.v6).find(|n| n.addr() == ip) {
                    Some(net) => Ok(vec![*net]),
                    None => Err(ipam_error(
                        &format!("assigning requested address {ip}"),
                        IpamError::InUse(ip),
                    )),
                }
            }
            Err(e) => Err(ipam_error(&format!("assigning requested address {ip}"), e)),
        };
    }
    let mut req = AssignRequest::workload(usize::from(inv.conf.ipam.assign_ipv4()), &handle, node);
    req.num_v6 = usize::from(inv.conf.ipam.assign_ipv6());
    req.attrs = attrs;
    // A repeated ADD for the same container gets the addresses it already holds.
    req.reuse_existing = true;
    req.v4_pools = inv.conf.ipam.ipv4_pools.clone();
    req.v6_pools = inv.conf.ipam.ipv6_pools.clone();
    let got = ipam
        .auto_assign(&req)
        .await
        .map_err(|e| ipam_error("assigning an address", e))?;
    tracing::info!(%handle, v4 = ?got.v4, v6 = ?got.v6, "assigned");
    Ok(got.v4.into_iter().chain(got.v6).collect())
}

/// Release this attachment's addresses: by handle, then (for a pod) by Calico's older
/// `<namespace>.<pod>` handle. Nothing to release is success.
pub async fn release(inv: &Invocation, store: Arc<dyn Store>) -> Result<Vec<IpAddr>, CniError> {
    let ipam = Ipam::new(store);
    let _lock = IpamLock::acquire(&inv.ipam_lock_path());
    let mut released = ipam
        .release_by_handle(&inv.handle())
        .await
        .map_err(|e| ipam_error("releasing the container's addresses", e))?;
    if let Workload::Kubernetes { namespace, pod } = inv.workload() {
        released.extend(
            ipam.release_by_handle(&format!("{namespace}.{pod}"))
                .await
                .map_err(|e| ipam_error("releasing the pod's addresses", e))?,
        );
    }
    tracing::info!(handle = %inv.handle(), ?released, "released");
    Ok(released)
}

/// Release the addresses of this network's attachments on this node that the runtime no longer lists.
pub async fn gc(
    inv: &Invocation,
    store: Arc<dyn Store>,
    node: &str,
    valid_container_ids: &BTreeSet<String>,
) -> Result<usize, CniError> {
    let ipam = Ipam::new(store);
    // Handles of this network: `<network>.<containerID>`.
    let prefix = super::names::handle_id(&inv.conf.name, "");
    let handles = ipam
        .handles()
        .await
        .map_err(|e| ipam_error("listing IPAM handles", e))?;
    let mut released = 0;
    for h in handles {
        let Some(container_id) = h.handle_id.strip_prefix(&prefix) else {
            continue;
        };
        if valid_container_ids.contains(container_id) {
            continue;
        }
        // Only this node's allocations: another node's runtime owns the rest.
        let ips = ipam
            .ips_by_handle(&h.handle_id)
            .await
            .map_err(|e| ipam_error("reading a handle", e))?;
        let mut ours = false;
        for ip in &ips {
            if let Some((_, attr)) = ipam
                .assignment_of(*ip)
                .await
                .map_err(|e| ipam_error("reading an allocation", e))?
            {
                ours |= attr.secondary.get(ATTR_NODE).map(String::as_str) == Some(node);
            }
        }
        if !ours {
            continue;
        }
        tracing::info!(handle = %h.handle_id, "garbage-collecting addresses of a stale attachment");
        released += ipam
            .release_by_handle(&h.handle_id)
            .await
            .map_err(|e| ipam_error("releasing a stale handle", e))?
            .len();
    }
    Ok(released)
}

/// Ready when the datastore answers and at least one pool is enabled.
pub async fn status(store: Arc<dyn Store>) -> Result<(), CniError> {
    let pools = Ipam::new(store).pools().await.map_err(|e| {
        CniError::new(
            CniError::PLUGIN_NOT_AVAILABLE,
            "the datastore does not answer",
            e.to_string(),
        )
    })?;
    if !pools.iter().any(|p| !p.disabled) {
        return Err(CniError::new(
            CniError::PLUGIN_NOT_AVAILABLE,
            "no enabled IP pool: create one (calicoctl apply -f pool.yaml) before starting containers",
            "",
        ));
    }
    Ok(())
}

/// The `calico-ipam` executable's verbs.
pub async fn run(inv: &Invocation) -> Result<Option<CniResult>, CniError> {
    match inv.env.command {
        Command::Add => {
            let node = inv.node_name()?;
            let store = inv.connect().await?;
            let ips = assign(inv, store, &node).await?;
            let mut result = CniResult::new(inv.version);
            result.ips = ips
                .into_iter()
                .map(|address| IpConfig {
                    address,
                    gateway: None,
                    interface: None,
                })
                .collect();
            Ok(Some(result))
        }
        Command::Del => {
            let store = inv.connect().await?;
            release(inv, store).await?;
            Ok(None)
        }
        Command::Check => {
            let store = inv.connect().await?;
            let held = Ipam::new(store)
                .ips_by_handle(&inv.handle())
                .await
                .map_err(|e| ipam_error("reading the container's addresses", e))?;
            if held.is_empty() {
                return Err(failure(
                    format!("no addresses are allocated to handle {}", inv.handle()),
                    "",
                ));
            }
            Ok(None)
        }
        Command::Status => {
            let store = inv.connect().await.map_err(|e| {
                CniError::new(
                    CniError::PLUGIN_NOT_AVAILABLE,
                    e.msg.clone(),
                    e.details.clone(),
                )
            })?;
            status(store).await?;
            Ok(None)
        }
        Command::Gc => {
            let node = inv.node_name()?;
            let store = inv.connect().await?;
            let valid = valid_ids(inv);
            gc(inv, store, &node, &valid).await?;
            Ok(None)
        }
        Command::Version => Ok(None),
    }
}

/// Container IDs the runtime still has (GC's `cni.dev/valid-attachments` / `cni.dev/attachments`).
pub fn valid_ids(inv: &Invocation) -> BTreeSet<String> {
    inv.conf
        .gc_valid_attachments()
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.container_id)
        .collect()
}
