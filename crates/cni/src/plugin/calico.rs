//! The `calico` plugin's verbs: ADD wires a container and records its endpoint, DEL undoes it (idempotently),
//! CHECK compares the live state with what ADD made, STATUS says whether ADD can work, GC removes what the
//! runtime no longer knows about.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use calico_api::{Kind, Spec};
use calico_datastore::Store;
use calico_datastore::client::Client;
use calico_ipam::addr::host_net;
use calico_netlink::format_mac;
use ipnet::IpNet;

use crate::delegate;
use crate::spec::{CniError, CniResult, Command, Interface, IpConfig, RouteConf};

use super::context::{Invocation, failure};
use super::dataplane::{self, GATEWAY_V4, GATEWAY_V6, HOST_MAC, WireSpec};
use super::endpoint::{self, EndpointFacts};
use super::ipam;
use super::names::Workload;

const CALICO_IPAM: &str = "calico-ipam";

fn uses_calico_ipam(inv: &Invocation) -> bool {
    inv.conf.ipam.ipam_type.is_empty() || inv.conf.ipam.ipam_type == CALICO_IPAM
}

pub async fn run(inv: &Invocation) -> Result<Option<CniResult>, CniError> {
    match inv.env.command {
        Command::Add => add(inv).await.map(Some),
        Command::Del => del(inv).await.map(|()| None),
        Command::Check => check(inv).await.map(|()| None),
        Command::Status => status(inv).await.map(|()| None),
        Command::Gc => gc(inv).await.map(|()| None),
        Command::Version => Ok(None),
    }
}

/// Addresses for the attachment, from Calico IPAM in-process or from the configured IPAM plugin.
async fn assign(
    inv: &Invocation,
    store: &Arc<dyn Store>,
    node: &str,
) -> Result<Vec<IpNet>, CniError> {
    if uses_calico_ipam(inv) {
        ipam::assign(inv, store.clone(), node).await
    } else {
        let result = delegate::add(&inv.conf.ipam.ipam_type, &inv.stdin, &inv.env)?;
        Ok(result.ips.into_iter().map(|ip| ip.address).collect())
    }
}

async fn release(inv: &Invocation, store: &Arc<dyn Store>) -> Result<(), CniError> {
    if uses_calico_ipam(inv) {
        ipam::release(inv, store.clone()).await.map(drop)
    } else {
        delegate::del(&inv.conf.ipam.ipam_type, &inv.stdin, &inv.env)
    }
}

/// DEL's release through a delegated IPAM plugin: one that is not installed is logged and skipped (it
/// cannot release anything), so the rest of DEL still runs.
fn release_delegated_for_del(inv: &Invocation) -> Result<(), CniError> {
    let ipam_type = &inv.conf.ipam.ipam_type;
    if let delegate::Deleted::Absent(why) =
        delegate::del_if_present(ipam_type, &inv.stdin, &inv.env)?
    {
        tracing::warn!(ipam = %ipam_type, reason = %why,
            "the IPAM plugin is not available; DEL goes on without releasing through it");
    }
    Ok(())
}

async fn add(inv: &Invocation) -> Result<CniResult, CniError> {
    let netns = inv
        .env
        .netns
        .clone()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS is required for ADD", ""))?;
    if !Path::new(&netns).exists() {
        return Err(CniError::new(
            CniError::UNKNOWN_CONTAINER,
            format!("container network namespace {netns} does not exist"),
            "",
        ));
    }
    // An interface of that name already in the container belongs to an earlier ADD (or another network):
    // then ADD must touch neither IPAM nor the host end, which both still serve it. Looked up on its own
    // thread while the datastore is opened.
    let existing_iface = {
        let netns = netns.clone();
        let ifname = inv.env.ifname.clone();
        std::thread::spawn(move || dataplane::pod_has_interface(Path::new(&netns), &ifname))
    };
    let node = inv.node_name()?;
    let mtu = inv.mtu()?;
    let gso_ipv4_max = inv.gso_ipv4_max()?;
    let workload = inv.workload();
    let host_iface = inv.host_iface();
    let wep_name = inv.endpoint_name(&node);
    let network = network_name(inv);
    let store = inv.connect().await?;
    match existing_iface
        .join()
        .unwrap_or_else(|_| Err("the interface lookup stopped".to_string()))
    {
        Ok(false) => {}
        Ok(true) => {
            return Err(failure(
                format!(
                    "interface {} already exists in container namespace {netns}: the container is already attached (DEL it first)",
                    inv.env.ifname
                ),
                "",
            ));
        }
        Err(e) => {
            return Err(CniError::new(
                CniError::UNKNOWN_CONTAINER,
                format!("cannot enter container network namespace {netns}"),
                e,
            ));
        }
    }
    tracing::info!(container = %inv.env.container_id, %node, %host_iface, endpoint = %wep_name, "ADD");

    let assigned = assign(inv, &store, &node).await?;
    if assigned.is_empty() {
        release(inv, &store).await.ok();
        return Err(failure("IPAM returned no address", ""));
    }
    let pod_ips: Vec<IpNet> = assigned.iter().map(|n| host_net(n.addr())).collect();

    // From here on, a failure undoes what was done: the links, then the addresses.
    let undo = |stage: &'static str| {
        let store = store.clone();
        let host_iface = host_iface.clone();
        let netns = netns.clone();
        let wep_name = wep_name.clone();
        let namespace = workload.namespace().to_string();
        async move {
            tracing::warn!(stage, "ADD failed; undoing");
            let _ = endpoint::delete_if_owned(&store, &namespace, &wep_name, &inv.env.container_id)
                .await;
            let _ = dataplane::unwire(&host_iface, &inv.env.ifname, Some(Path::new(&netns)));
            if let Err(e) = release(inv, &store).await {
                tracing::error!(error = %e, "could not release addresses after a failed ADD");
            }
        }
    };

    // The pod's MAC is chosen here rather than by the kernel, so the endpoint (which records it) can be
    // written while the interfaces are being built: the two take turns on neither the CPU nor the datastore.
    let pod_mac_bytes = dataplane::random_mac();
    let pod_mac = format_mac(pod_mac_bytes);
    let (wired_tx, wired_rx) = tokio::sync::oneshot::channel();
    {
        let host_iface = host_iface.clone();
        let ifname = inv.env.ifname.clone();
        let netns = netns.clone();
        let ips = pod_ips.clone();
        let allow_ip_forwarding = inv.conf.container_settings.allow_ip_forwarding;
        std::thread::spawn(move || {
            let spec = WireSpec {
                host_iface: &host_iface,
                ifname: &ifname,
                netns: Path::new(&netns),
                ips: &ips,
                mtu,
                gso_ipv4_max,
                pod_mac: pod_mac_bytes,
                allow_ip_forwarding,
            };
            let _ = wired_tx.send(dataplane::wire(&spec));
        });
    }

    let facts = EndpointFacts {
        name: &wep_name,
        node: &node,
        workload: &workload,
        network: &network,
        container_id: &inv.env.container_id,
        endpoint: &inv.env.ifname,
        host_iface: &host_iface,
        mac: &pod_mac,
        ips: &pod_ips,
    };
    // The endpoint and (for plain CNI containers) the network's Profile are independent: write both at once.
    let profile = async {
        match workload {
            Workload::Cni { .. } => endpoint::ensure_network_profile(&store, &network).await,
            Workload::Kubernetes { .. } => Ok(()),
        }
    };
    let wep = async {
        match endpoint::build(&facts) {
            Ok(wep) => endpoint::write(&store, wep).await.map(drop),
            Err(e) => Err(e),
        }
    };
    let (profile, written, wired) = tokio::join!(profile, wep, wired_rx);
    let wired = wired.unwrap_or_else(|_| Err("the wiring thread stopped".to_string()));
    if let Err(e) = wired {
        // wire() removed what it created; an interface already in the pod is not ours to delete.
        let _ = endpoint::delete_if_owned(
            &store,
            workload.namespace(),
            &wep_name,
            &inv.env.container_id,
        )
        .await;
        if let Err(re) = release(inv, &store).await {
            tracing::error!(error = %re, "could not release addresses after a failed ADD");
        }
        return Err(failure(format!("failed to wire the container: {e}"), ""));
    }
    if let Err(e) = profile.and(written) {
        undo("endpoint").await;
        return Err(e);
    }

    let mut result = match inv.conf.prev_result()? {
        Some(prev) => prev,
        None => CniResult::new(inv.version),
    };
    result.cni_version = inv.version;
    result.interfaces.push(Interface {
        name: host_iface.clone(),
        mac: Some(format_mac(HOST_MAC)),
        ..Interface::default()
    });
    let pod_index = result.interfaces.len();
    result.interfaces.push(Interface {
        name: inv.env.ifname.clone(),
        mac: Some(pod_mac),
        mtu: Some(mtu),
        sandbox: Some(netns.clone()),
        ..Interface::default()
    });
    for ip in &pod_ips {
        result.ips.push(IpConfig {
            address: *ip,
            gateway: None,
            interface: Some(pod_index),
        });
    }
    if pod_ips.iter().any(|n| n.addr().is_ipv4()) {
        result.routes.push(RouteConf::new(
            IpNet::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0)
                .map_err(|e| failure(e.to_string(), ""))?,
            Some(IpAddr::V4(GATEWAY_V4)),
        ));
    }
    if pod_ips.iter().any(|n| n.addr().is_ipv6()) {
        result.routes.push(RouteConf::new(
            IpNet::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0)
                .map_err(|e| failure(e.to_string(), ""))?,
            Some(IpAddr::V6(GATEWAY_V6)),
        ));
    }
    if let Some(dns) = &inv.conf.dns {
        result.dns = dns.clone();
    }
    tracing::info!(ips = ?pod_ips, "ADD done");
    Ok(result)
}

fn network_name(inv: &Invocation) -> String {
    if inv.conf.name.is_empty() {
        super::names::DEFAULT_NETWORK.to_string()
    } else {
        inv.conf.name.clone()
    }
}

async fn del(inv: &Invocation) -> Result<(), CniError> {
    let node = inv.node_name()?;
    let workload = inv.workload();
    let host_iface = inv.host_iface();
    let wep_name = inv.endpoint_name(&node);
    tracing::info!(container = %inv.env.container_id, %host_iface, endpoint = %wep_name, "DEL");
    let store = inv.connect().await?;
    let netns = inv.env.netns.clone().filter(|n| !n.is_empty());
    dataplane::unwire(
        &host_iface,
        &inv.env.ifname,
        netns.as_deref().map(Path::new),
    )
    .map_err(|e| {
        failure(
            format!("failed to remove the container's interfaces: {e}"),
            "",
        )
    })?;
    // Our own IPAM fails only when the datastore does, and then so would the endpoint's removal: the
    // runtime retries the whole DEL. A delegated plugin that ran and failed still leaves the endpoint to
    // remove; its error comes after, so the runtime retries and the plugin can release then.
    let released = if uses_calico_ipam(inv) {
        ipam::release(inv, store.clone()).await?;
        Ok(())
    } else {
        release_delegated_for_del(inv)
    };
    endpoint::delete_if_owned(
        &store,
        workload.namespace(),
        &wep_name,
        &inv.env.container_id,
    )
    .await?;
    released
}

async fn check(inv: &Invocation) -> Result<(), CniError> {
    let node = inv.node_name()?;
    let workload = inv.workload();
    let host_iface = inv.host_iface();
    let wep_name = inv.endpoint_name(&node);
    let netns = inv
        .env
        .netns
        .clone()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS is required for CHECK", ""))?;
    let store = inv.connect().await?;
    let wep = endpoint::get(&store, workload.namespace(), &wep_name)
        .await?
        .ok_or_else(|| failure(format!("WorkloadEndpoint {wep_name} does not exist"), ""))?;
    let Spec::WorkloadEndpoint(spec) = &wep.spec else {
        return Err(failure("stored endpoint has the wrong kind", ""));
    };
    let ips: Vec<IpNet> = spec
        .ip_networks
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    if spec.interface_name.as_deref() != Some(host_iface.as_str()) {
        return Err(failure(
            format!(
                "endpoint {wep_name} names interface {:?}, expected {host_iface}",
                spec.interface_name
            ),
            "",
        ));
    }
    if let Some(prev) = inv.conf.prev_result()? {
        for ip in prev.ips.iter().map(|c| host_net(c.address.addr())) {
            if !ips.contains(&ip) {
                return Err(failure(
                    format!("address {ip} of the previous result is not on endpoint {wep_name}"),
                    "",
                ));
            }
        }
    }
    if uses_calico_ipam(inv) {
        let held = calico_ipam::Ipam::new(store.clone())
            .ips_by_handle(&inv.handle())
            .await
            .map_err(|e| failure(format!("reading IPAM: {e}"), ""))?;
        for ip in &ips {
            if !held.contains(&ip.addr()) {
                return Err(failure(
                    format!(
                        "address {ip} is not allocated to handle {} in IPAM",
                        inv.handle()
                    ),
                    "",
                ));
            }
        }
    } else {
        delegate::check(&inv.conf.ipam.ipam_type, &inv.stdin, &inv.env)?;
    }
    dataplane::check(&host_iface, &inv.env.ifname, Path::new(&netns), &ips)
        .map_err(|e| failure(e, ""))
}

async fn status(inv: &Invocation) -> Result<(), CniError> {
    let store = inv.connect().await.map_err(|e| {
        CniError::new(
            CniError::PLUGIN_NOT_AVAILABLE,
            e.msg.clone(),
            e.details.clone(),
        )
    })?;
    if uses_calico_ipam(inv) {
        ipam::status(store).await
    } else {
        Client::new(store)
            .list(Kind::IPPool, None)
            .await
            .map_err(|e| {
                CniError::new(
                    CniError::PLUGIN_NOT_AVAILABLE,
                    "the datastore does not answer",
                    e.to_string(),
                )
            })?;
        delegate::status(&inv.conf.ipam.ipam_type, &inv.stdin, &inv.env)
    }
}

/// Remove endpoints (and their host interfaces) of this network on this node whose container the runtime
/// no longer lists, then the addresses of such containers.
async fn gc(inv: &Invocation) -> Result<(), CniError> {
    let node = inv.node_name()?;
    let network = network_name(inv);
    let valid = ipam::valid_ids(inv);
    let store = inv.connect().await?;
    let (weps, _) = Client::new(store.clone())
        .list(Kind::WorkloadEndpoint, None)
        .await
        .map_err(|e| failure(format!("listing endpoints: {e}"), ""))?;
    for wep in weps {
        let Spec::WorkloadEndpoint(spec) = &wep.spec else {
            continue;
        };
        let ours = spec.node.as_deref() == Some(node.as_str())
            && match spec.orchestrator.as_deref() {
                Some("cni") => spec.profiles.contains(&network),
                Some("k8s") => true,
                _ => false,
            };
        let Some(container_id) = spec.container_id.as_deref() else {
            continue;
        };
        if !ours || valid.contains(container_id) {
            continue;
        }
        tracing::info!(endpoint = %wep.name(), %container_id, "garbage-collecting a stale endpoint");
        if let Some(iface) = spec.interface_name.as_deref() {
            let _ = dataplane::unwire(iface, "", None);
        }
        let ns = wep.namespace().unwrap_or("default").to_string();
        endpoint::delete_if_owned(&store, &ns, wep.name(), container_id).await?;
    }
    if uses_calico_ipam(inv) {
        ipam::gc(inv, store, &node, &valid).await.map(drop)
    } else {
        delegate::gc(&inv.conf.ipam.ipam_type, &inv.stdin, &inv.env)
    }
}
