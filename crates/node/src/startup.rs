//! Start-up: who this node is, its address, and the cluster objects calico-node owns (the Node, the
//! default pool, ClusterInformation, the VXLAN tunnel address).
//!
//! Everything that can be wrong with the local configuration is checked before anything is written to
//! the datastore or the kernel, so a bad setting leaves nothing half-done behind.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use calico_api::spec::clusterinfo::ClusterInformationSpec;
use calico_api::spec::ippool::{AllowedUse, EncapMode};
use calico_api::spec::node::{NodeBGPSpec, NodeSpec};
use calico_api::{Kind, ObjectMeta, Resource, Selector, Spec};
use calico_datastore::client::{Client, ClientError};
use calico_datastore::config::{DatastoreConfig, OpenMode};
use calico_datastore::{Store, StoreError};
use calico_ipam::block::{ATTR_NODE, ATTR_TYPE};
use calico_ipam::{AssignRequest, Ipam};
use ipnet::{IpNet, Ipv4Net};
use serde_json::json;

use crate::autodetect::{self, Method};
use crate::config::Settings;
use crate::status::Status;

/// What calico-node knows about its host before it talks to the datastore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub nodename: String,
    /// Address with its subnet, host bits kept (`spec.bgp.ipv4Address`).
    pub address: Option<Ipv4Net>,
    /// The interface holding `address`.
    pub uplink: Option<String>,
    pub uplink_mtu: u32,
    /// Its largest IPv4 GSO packet (above 65,536 with BIG TCP).
    pub uplink_gso_ipv4_max: u32,
}

/// This node's name: the flag/`NODENAME`, else `<state-dir>/nodename`, else the hostname.
pub fn nodename(settings: &Settings) -> anyhow::Result<String> {
    if let Some(name) = settings.nodename.as_deref().map(str::trim)
        && !name.is_empty()
    {
        return Ok(name.to_string());
    }
    if let Ok(text) = std::fs::read_to_string(
        settings
            .state_dir
            .join(calico_contracts::state::NODENAME_FILE),
    ) && !text.trim().is_empty()
    {
        return Ok(text.trim().to_string());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    anyhow::ensure!(
        !host.is_empty(),
        "no node name: set NODENAME (or --nodename); the hostname is empty"
    );
    Ok(host)
}

/// Resolve `IP` (autodetect / none / explicit) to this host's address, interface and MTU.
pub fn identity(settings: &Settings, nodename: String) -> anyhow::Result<Identity> {
    let ip = settings.ip.trim();
    let mut id = Identity {
        nodename,
        address: None,
        uplink: None,
        uplink_mtu: 1500,
        uplink_gso_ipv4_max: 0,
    };
    match ip.to_ascii_lowercase().as_str() {
        "none" => return Ok(id),
        "" | "autodetect" => {
            let method = Method::parse(&settings.ip_autodetection_method).map_err(|e| {
                anyhow::anyhow!(
                    "IP_AUTODETECTION_METHOD={:?}: {e}",
                    settings.ip_autodetection_method
                )
            })?;
            let found = autodetect::detect(&method)?;
            tracing::info!(address = %found.address, interface = %found.interface,
                method = %settings.ip_autodetection_method, "autodetected the node's IPv4 address");
            id.address = Some(found.address);
            id.uplink = Some(found.interface);
            id.uplink_mtu = found.mtu;
            id.uplink_gso_ipv4_max = found.gso_ipv4_max_size;
        }
        _ => {
            let address = calico_felix::model::parse_v4_net_keeping_host(ip).ok_or_else(|| {
                anyhow::anyhow!(
                    "IP={ip:?} is not valid: use autodetect, none, or an IPv4 address with prefix length such as 10.0.0.5/24"
                )
            })?;
            let ifaces = autodetect::interfaces()?;
            let holder = ifaces
                .iter()
                .find(|i| i.addresses.iter().any(|a| a.addr() == address.addr()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "IP={ip}: no interface here holds {}; interfaces: {}",
                        address.addr(),
                        describe_interfaces(&ifaces)
                    )
                })?;
            id.address = Some(address);
            id.uplink = Some(holder.name.clone());
            id.uplink_mtu = holder.mtu;
            id.uplink_gso_ipv4_max = holder.gso_ipv4_max_size;
        }
    }
    Ok(id)
}

fn describe_interfaces(ifaces: &[autodetect::HostInterface]) -> String {
    let list: Vec<String> = ifaces
        .iter()
        .map(|i| {
            let addrs: Vec<String> = i.addresses.iter().map(ToString::to_string).collect();
            format!("{} [{}]", i.name, addrs.join(" "))
        })
        .collect();
    list.join(", ")
}

/// The default pool from `CALICO_IPV4POOL_*`, validated, or `None` with `NO_DEFAULT_POOLS`.
/// A pool that overlaps the node's own subnet is refused: its routes would cut the host off.
pub fn default_pool(
    settings: &Settings,
    address: Option<Ipv4Net>,
) -> anyhow::Result<Option<Resource>> {
    if settings.no_default_pools {
        return Ok(None);
    }
    let block_size: u32 = settings.ipv4_pool_block_size.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "CALICO_IPV4POOL_BLOCK_SIZE={:?} is not a number (IPv4 block sizes are 20 to 32)",
            settings.ipv4_pool_block_size
        )
    })?;
    let mode = |var: &str, value: &str| -> anyhow::Result<&'static str> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "never" | "off" | "false" => Ok("Never"),
            "always" | "true" => Ok("Always"),
            "crosssubnet" | "cross-subnet" => Ok("CrossSubnet"),
            _ => anyhow::bail!("{var}={value:?} is not valid: use Never, Always or CrossSubnet"),
        }
    };
    let vxlan = mode("CALICO_IPV4POOL_VXLAN", &settings.ipv4_pool_vxlan)?;
    let ipip = mode("CALICO_IPV4POOL_IPIP", &settings.ipv4_pool_ipip)?;
    anyhow::ensure!(
        !(vxlan != "Never" && ipip != "Never"),
        "CALICO_IPV4POOL_VXLAN={vxlan} and CALICO_IPV4POOL_IPIP={ipip}: a pool uses one encapsulation, not both"
    );
    let value = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {
            "cidr": settings.ipv4_pool_cidr.trim(),
            "blockSize": block_size,
            "vxlanMode": vxlan,
            "ipipMode": ipip,
            "natOutgoing": settings.ipv4_pool_nat_outgoing,
            "nodeSelector": settings.ipv4_pool_node_selector,
        }
    });
    let mut pool = Resource::from_value(value)
        .map_err(|e| anyhow::anyhow!("the default pool from CALICO_IPV4POOL_*: {e}"))?;
    pool.apply_defaults();
    pool.validate().map_err(|e| {
        anyhow::anyhow!(
            "the default pool from CALICO_IPV4POOL_CIDR={:?} is invalid: {e}",
            settings.ipv4_pool_cidr
        )
    })?;
    if let (Some(address), Spec::IPPool(spec)) = (address, &pool.spec)
        && let Some(IpNet::V4(cidr)) = spec.net()
    {
        let subnet = address.trunc();
        anyhow::ensure!(
            !(cidr.contains(&subnet.network()) || subnet.contains(&cidr.network())),
            "CALICO_IPV4POOL_CIDR={cidr} overlaps this node's network {subnet} (address {address}): \
             pods would be routed over the host's own subnet; choose a pool outside it"
        );
    }
    Ok(Some(pool))
}

/// Connect to the datastore, retrying with backoff (1 s doubling to 30 s) and saying why, until it
/// answers. Readiness stays false meanwhile; the process does not exit and restart in a loop.
pub async fn connect_with_backoff(config: &DatastoreConfig, status: &Status) -> Arc<dyn Store> {
    const MAX_DELAY: Duration = Duration::from_secs(30);
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .without_max_times()
        .build();
    loop {
        let connected = {
            let _request = status
                .datastore_requests
                .begin(format!("open {}", config.describe()));
            config.connect(OpenMode::Create).await
        };
        match connected {
            Ok(store) => return store,
            Err(e) => {
                let delay = delays.next().unwrap_or(MAX_DELAY);
                let reason = format!("datastore {} unreachable: {e}", config.describe());
                tracing::warn!(error = %e, datastore = %config.describe(), retry_in = ?delay,
                    "cannot reach the datastore; retrying");
                status.set_ready(false, &reason);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Retry a read-modify-write a few times on update conflicts (another writer got there first).
async fn update_node(
    client: &Client,
    name: &str,
    change: impl Fn(&mut NodeSpec) -> bool,
) -> Result<(), ClientError> {
    for _ in 0..10 {
        let mut node = client.get(Kind::Node, None, name).await?;
        let Spec::Node(spec) = &mut node.spec else {
            return Ok(());
        };
        if !change(spec) {
            return Ok(());
        }
        match client.replace(node).await {
            Err(ClientError::Conflict { .. }) => continue,
            other => return other.map(|_| ()),
        }
    }
    Err(ClientError::Store(StoreError::Other(format!(
        "Node {name} kept changing under us; giving up after 10 attempts"
    ))))
}

/// A start-up error that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Whether `e` is a [`Fatal`] error (anything else at start-up is retried with backoff).
pub fn is_fatal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Fatal>().is_some()
}

/// Create or update this host's Node with its address. Another node already using the same
/// address is an error (two nodes would claim one underlay address).
pub async fn register_node(client: &Client, id: &Identity) -> anyhow::Result<()> {
    let address = id.address.map(|a| a.to_string());
    if let Some(addr) = id.address {
        for other in client.list(Kind::Node, None).await?.0 {
            if other.metadata.name == id.nodename {
                continue;
            }
            if let Spec::Node(spec) = &other.spec
                && spec.bgp.as_ref().and_then(NodeBGPSpec::ipv4) == Some(addr.addr())
            {
                return Err(Fatal(format!(
                    "node {:?} already uses the IPv4 address {}: two nodes cannot share an address \
                     (delete that Node, or give this host another address)",
                    other.metadata.name,
                    addr.addr()
                ))
                .into());
            }
        }
    }
    match client.get(Kind::Node, None, &id.nodename).await {
        Ok(_) => {
            update_node(client, &id.nodename, |spec| {
                let bgp = spec.bgp.get_or_insert_with(NodeBGPSpec::default);
                if bgp.ipv4_address == address {
                    return false;
                }
                bgp.ipv4_address = address.clone();
                true
            })
            .await?;
        }
        Err(ClientError::NotFound { .. }) => {
            let spec = NodeSpec {
                bgp: address.clone().map(|a| NodeBGPSpec {
                    ipv4_address: Some(a),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let meta = ObjectMeta {
                name: id.nodename.clone(),
                ..Default::default()
            };
            match client.create(Resource::new(meta, Spec::Node(spec))).await {
                Ok(_) | Err(ClientError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(node = %id.nodename, address = ?address, "node registered");
    Ok(())
}

/// Create the default pool when the cluster has no IPv4 pool at all (as Calico does).
pub async fn ensure_default_pool(client: &Client, pool: Option<Resource>) -> anyhow::Result<()> {
    let Some(pool) = pool else { return Ok(()) };
    let has_v4 = client
        .list(Kind::IPPool, None)
        .await?
        .0
        .iter()
        .any(|p| matches!(&p.spec, Spec::IPPool(s) if matches!(s.net(), Some(IpNet::V4(_)))));
    if has_v4 {
        return Ok(());
    }
    match client.create(pool).await {
        Ok(p) => tracing::info!(pool = %p.metadata.name, "created the default IPv4 pool"),
        Err(ClientError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Create ClusterInformation `default` (cluster GUID, type, version) if it does not exist.
pub async fn ensure_cluster_information(client: &Client, cluster_type: &str) -> anyhow::Result<()> {
    if client
        .get(Kind::ClusterInformation, None, "default")
        .await
        .is_ok()
    {
        return Ok(());
    }
    let spec = ClusterInformationSpec {
        cluster_guid: uuid_hex(),
        cluster_type: cluster_type.to_string(),
        calico_version: format!("v{}", env!("CARGO_PKG_VERSION")),
        datastore_ready: Some(true),
        ..Default::default()
    };
    let meta = ObjectMeta {
        name: "default".into(),
        ..Default::default()
    };
    match client
        .create(Resource::new(meta, Spec::ClusterInformation(spec)))
        .await
    {
        Ok(_) | Err(ClientError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn uuid_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The IPAM handle of a node's VXLAN tunnel address, as Calico names it.
pub fn vxlan_handle(nodename: &str) -> String {
    format!("vxlan-tunnel-addr-{nodename}")
}

/// Make sure this node holds a VXLAN tunnel address when (and only when) an IPv4 pool that applies
/// to it asks for VXLAN, and that `spec.ipv4VXLANTunnelAddr` names it. Returns the address.
pub async fn ensure_vxlan_tunnel_address(
    client: &Client,
    ipam: &Ipam,
    nodename: &str,
) -> anyhow::Result<Option<Ipv4Addr>> {
    let node = client.get(Kind::Node, None, nodename).await?;
    let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
    let Spec::Node(spec) = &node.spec else {
        return Ok(None);
    };
    let mut vxlan_pools: Vec<(String, Ipv4Net)> = Vec::new();
    for pool in client.list(Kind::IPPool, None).await?.0 {
        let Spec::IPPool(p) = &pool.spec else {
            continue;
        };
        let Some(IpNet::V4(cidr)) = p.net() else {
            continue;
        };
        let selected = Selector::parse(p.effective_node_selector())
            .map(|s| s.matches(&labels))
            .unwrap_or(false);
        if p.disabled
            || p.vxlan() == EncapMode::Never
            || !p.effective_allowed_uses().contains(&AllowedUse::Tunnel)
            || !selected
        {
            continue;
        }
        vxlan_pools.push((pool.metadata.name.clone(), cidr));
    }
    let handle = vxlan_handle(nodename);
    let current: Option<Ipv4Addr> = spec.ipv4_vxlan_tunnel_addr.parse().ok();

    if vxlan_pools.is_empty() {
        if current.is_some() {
            ipam.release_by_handle(&handle).await?;
            update_node(client, nodename, |s| {
                let had = !s.ipv4_vxlan_tunnel_addr.is_empty();
                s.ipv4_vxlan_tunnel_addr.clear();
                had
            })
            .await?;
            tracing::info!(
                node = nodename,
                "no pool uses VXLAN: released the tunnel address"
            );
        }
        return Ok(None);
    }

    if let Some(addr) = current
        && vxlan_pools.iter().any(|(_, cidr)| cidr.contains(&addr))
        && let Some((_, attr)) = ipam.assignment_of(IpAddr::V4(addr)).await?
        && attr.handle_id.as_deref() == Some(handle.as_str())
    {
        return Ok(Some(addr));
    }

    // Missing, outside every VXLAN pool, or not held under our handle: start again.
    ipam.release_by_handle(&handle).await?;
    let request = AssignRequest {
        num_v4: 1,
        num_v6: 0,
        handle: handle.clone(),
        attrs: BTreeMap::from([
            (ATTR_NODE.to_string(), nodename.to_string()),
            (ATTR_TYPE.to_string(), "vxlanTunnelAddress".to_string()),
        ]),
        host: nodename.to_string(),
        v4_pools: vxlan_pools.iter().map(|(name, _)| name.clone()).collect(),
        v6_pools: Vec::new(),
        intended_use: AllowedUse::Tunnel,
        max_blocks_per_host: None,
        reuse_existing: false,
    };
    let assigned = ipam.auto_assign(&request).await?;
    let Some(IpNet::V4(net)) = assigned.v4.first().copied() else {
        anyhow::bail!("IPAM gave no VXLAN tunnel address for node {nodename}");
    };
    let addr = net.addr();
    update_node(client, nodename, |s| {
        let text = addr.to_string();
        if s.ipv4_vxlan_tunnel_addr == text {
            return false;
        }
        s.ipv4_vxlan_tunnel_addr = text;
        true
    })
    .await?;
    tracing::info!(node = nodename, address = %addr, "assigned the VXLAN tunnel address");
    Ok(Some(addr))
}

/// Write `contents` to `dir/name` atomically (temp file + rename), creating `dir`.
pub fn write_state_file(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, dir.join(name))
}
