//! IPAM consistency checks (see `calicoctl ipam check`).
//!
//! Everything here is pure: the caller reads blocks, handles, affinities, pools, workload endpoints and
//! nodes, and [`check`] cross-references them. Problems found:
//! - addresses allocated in a block that no endpoint or node uses (leaks);
//! - addresses an endpoint or node uses that IPAM never allocated, split into those outside every
//!   active pool and those inside one;
//! - addresses used by more than one endpoint or node;
//! - handle records no allocation refers to, and handles allocations name that have no record;
//! - blocks owned by nobody (no affinity, or no confirmed affinity record for the host they name);
//! - affinity records whose block is missing or belongs to another host.
//!
//! [`Report`] is the machine-readable form `calicoctl ipam check -o` writes, in Calico's shape, which
//! `calicoctl ipam release --from-report` reads back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_api::{Resource, Spec};
use calico_datastore::Revision;
use calico_model::ipam::block::{
    ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TIMESTAMP, ATTR_TYPE, AllocationAttribute, Block,
};
use calico_model::ipam::model::AffinityState;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::allocator::StoredAffinity;
use crate::pools::Pool;

/// The handle Windows nodes hold their blocks' reserved addresses under: those addresses are in use.
pub const WINDOWS_RESERVED_HANDLE: &str = "windows-reserved-ipam-handle";

/// Something outside IPAM that uses an address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    Workload {
        namespace: String,
        name: String,
    },
    /// A node's tunnel (IPIP, VXLAN, WireGuard) address.
    Node {
        name: String,
    },
    /// Reserved inside a block for Windows' own use.
    WindowsReserved,
}

impl Owner {
    /// How Calico names the owner in `ipam check` output: `Workload(ns/name)`, `Node(name)`.
    pub fn friendly_name(&self) -> String {
        match self {
            Owner::Workload { namespace, name } => format!("Workload({namespace}/{name})"),
            Owner::Node { name } => format!("Node({name})"),
            Owner::WindowsReserved => "Reserved for Windows".to_string(),
        }
    }
}

/// One address in use by one owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InUse {
    pub ip: IpAddr,
    pub owner: Owner,
}

/// An address as written in a resource: bare, or in CIDR form (`198.18.0.5/32`, `198.18.0.5/26`).
pub fn parse_ip_or_cidr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNet>().ok().map(|n| n.addr()))
}

/// The addresses a WorkloadEndpoint uses (`spec.ipNetworks`). Empty for other kinds.
pub fn workload_addresses(res: &Resource) -> Result<Vec<InUse>, String> {
    let Spec::WorkloadEndpoint(spec) = &res.spec else {
        return Ok(Vec::new());
    };
    let namespace = res.namespace().unwrap_or("default").to_string();
    let name = res.name().to_string();
    spec.ip_networks
        .iter()
        .map(|a| {
            let ip = parse_ip_or_cidr(a).ok_or_else(|| {
                format!("failed to parse IP ({a}) of workload {namespace}/{name}")
            })?;
            Ok(InUse {
                ip,
                owner: Owner::Workload {
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
            })
        })
        .collect()
}

/// The tunnel addresses a Node uses: `spec.ipv4VXLANTunnelAddr`, `spec.ipv6VXLANTunnelAddr`,
/// `spec.bgp.ipv4IPIPTunnelAddr` and the WireGuard interface addresses. Empty for other kinds.
pub fn node_addresses(res: &Resource) -> Result<Vec<InUse>, String> {
    let Spec::Node(spec) = &res.spec else {
        return Ok(Vec::new());
    };
    let name = res.name().to_string();
    let mut fields: Vec<(&str, &str)> = vec![
        ("ipv4VXLANTunnelAddr", spec.ipv4_vxlan_tunnel_addr.as_str()),
        ("ipv6VXLANTunnelAddr", spec.ipv6_vxlan_tunnel_addr.as_str()),
    ];
    if let Some(wg) = &spec.wireguard {
        fields.push((
            "wireguard.interfaceIPv4Address",
            wg.interface_ipv4_address.as_str(),
        ));
        fields.push((
            "wireguard.interfaceIPv6Address",
            wg.interface_ipv6_address.as_str(),
        ));
    }
    if let Some(bgp) = &spec.bgp
        && let Some(ipip) = bgp.ipv4_ipip_tunnel_addr.as_deref()
    {
        fields.push(("bgp.ipv4IPIPTunnelAddr", ipip));
    }
    fields
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(field, v)| {
            let ip = parse_ip_or_cidr(v)
                .ok_or_else(|| format!("failed to parse {field} ({v}) of node {name}"))?;
            Ok(InUse {
                ip,
                owner: Owner::Node { name: name.clone() },
            })
        })
        .collect()
}

/// A handle record as listed, with the revision a later delete must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleRecord {
    pub id: String,
    pub revision: Revision,
}

/// A leaked handle in a report (Calico's `HandleInfo`, whose fields carry no JSON tags).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleInfo {
    #[serde(rename = "ID")]
    pub id: String,
    /// Kubernetes UID of the handle object; always null on etcd.
    #[serde(rename = "UID", default)]
    pub uid: Option<String>,
    #[serde(rename = "Revision", default)]
    pub revision: String,
}

/// One allocated address, cross-referenced with its users (Calico's report `Allocation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    #[serde(
        rename = "sequenceNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub alloc_type: String,
    #[serde(
        rename = "creationTimestamp",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub creation_timestamp: String,
    /// Some endpoint or node uses the address.
    #[serde(rename = "inUse", default)]
    pub in_use: bool,
    /// Allocated by a node other than the block's owner.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub borrowed: bool,
    /// Friendly names of the users; null when none (as Go writes a nil slice).
    #[serde(default)]
    pub owners: Option<Vec<String>>,
    /// The block the address is in (not part of the report).
    #[serde(skip)]
    pub block: Option<IpNet>,
    /// `Main:<handle> Extra:k=v,...` as `ipam check` prints it (not part of the report).
    #[serde(skip)]
    pub attrs: String,
}

/// A block no host owns properly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnownedBlock {
    pub cidr: IpNet,
    /// The block's `affinity` field (`host:<node>`), if set.
    pub affinity: Option<String>,
}

/// An affinity record with no block to match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanAffinity {
    pub host: String,
    pub cidr: IpNet,
    pub state: AffinityState,
    /// The host the block names instead, when the block exists but belongs to someone else.
    pub block_owner: Option<String>,
}

/// What [`check`] reads.
#[derive(Clone, Copy, Debug)]
pub struct CheckInput<'a> {
    pub blocks: &'a [Block],
    pub handles: &'a [HandleRecord],
    pub affinities: &'a [StoredAffinity],
    pub pools: &'a [Pool],
    /// Addresses endpoints and nodes use (see [`workload_addresses`], [`node_addresses`]).
    pub in_use: &'a [InUse],
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckResult {
    /// Every allocation, by address (normally one per address).
    pub allocations: BTreeMap<IpAddr, Vec<Allocation>>,
    /// Every address in use, with its users.
    pub in_use: BTreeMap<IpAddr, Vec<Owner>>,
    /// Allocations per node (the block owner, or the `node` attribute when set).
    pub allocations_by_node: BTreeMap<String, usize>,
    /// Allocated but used by nobody.
    pub leaked: Vec<IpAddr>,
    /// Used, not allocated, and outside every active pool.
    pub not_in_pool: Vec<IpAddr>,
    /// Used, not allocated, inside an active pool.
    pub not_allocated: Vec<IpAddr>,
    /// Used by more than one owner.
    pub multiple_owners: Vec<IpAddr>,
    /// Handle records no allocation refers to.
    pub leaked_handles: Vec<HandleRecord>,
    /// Handle records some allocation refers to.
    pub good_handles: usize,
    /// Handles allocations refer to that have no record.
    pub missing_handles: Vec<String>,
    pub unowned_blocks: Vec<UnownedBlock>,
    pub orphan_affinities: Vec<OrphanAffinity>,
}

impl CheckResult {
    /// Every problem found, one per address, handle, block or affinity.
    pub fn problem_count(&self) -> usize {
        self.leaked.len()
            + self.not_in_pool.len()
            + self.not_allocated.len()
            + self.multiple_owners.len()
            + self.leaked_handles.len()
            + self.missing_handles.len()
            + self.unowned_blocks.len()
            + self.orphan_affinities.len()
    }

    /// Nodes by allocation count, most first (ties by name).
    pub fn top_nodes(&self) -> Vec<(&str, usize)> {
        let mut nodes: Vec<(&str, usize)> = self
            .allocations_by_node
            .iter()
            .map(|(n, c)| (n.as_str(), *c))
            .collect();
        nodes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        nodes
    }
}

/// `Main:<handle> Extra:k=v,...` (keys sorted), as Calico prints an allocation's attributes.
pub fn format_attrs(attr: &AllocationAttribute) -> String {
    let extra: Vec<String> = attr
        .secondary
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "Main:{} Extra:{}",
        attr.handle_id.as_deref().unwrap_or("<none>"),
        extra.join(",")
    )
}

/// Cross-reference IPAM's records with what endpoints and nodes use.
pub fn check(input: CheckInput<'_>) -> CheckResult {
    let mut result = CheckResult::default();
    let mut referenced_handles: BTreeSet<String> = BTreeSet::new();
    let mut in_use: BTreeMap<IpAddr, Vec<Owner>> = BTreeMap::new();

    for block in input.blocks {
        let owner = block.host().unwrap_or("").to_string();
        for (ip, attr) in block.allocated() {
            // A cooling-down address was released: nobody holds it.
            if attr.released_at.is_some() {
                continue;
            }
            let handle = attr.handle_id.clone();
            if handle.as_deref() == Some(WINDOWS_RESERVED_HANDLE) {
                in_use.entry(ip).or_default().push(Owner::WindowsReserved);
            } else if let Some(h) = &handle {
                referenced_handles.insert(h.clone());
            }
            let get = |k: &str| attr.secondary.get(k).cloned().unwrap_or_default();
            let node = match get(ATTR_NODE) {
                n if n.is_empty() => owner.clone(),
                n => n,
            };
            let allocation = Allocation {
                ip: ip.to_string(),
                handle: handle.filter(|h| h != WINDOWS_RESERVED_HANDLE),
                sequence_number: Some(block.sequence_of(ip).unwrap_or(0)),
                pod: get(ATTR_POD),
                namespace: get(ATTR_NAMESPACE),
                borrowed: node != owner,
                node: node.clone(),
                alloc_type: get(ATTR_TYPE),
                creation_timestamp: get(ATTR_TIMESTAMP),
                in_use: false,
                owners: None,
                block: Some(block.cidr),
                attrs: format_attrs(attr),
            };
            *result.allocations_by_node.entry(node).or_default() += 1;
            result.allocations.entry(ip).or_default().push(allocation);
        }
    }

    for used in input.in_use {
        in_use.entry(used.ip).or_default().push(used.owner.clone());
    }
    for (ip, owners) in &in_use {
        if let Some(allocs) = result.allocations.get_mut(ip) {
            let names: Vec<String> = owners.iter().map(Owner::friendly_name).collect();
            for a in allocs {
                a.in_use = true;
                a.owners = Some(names.clone());
            }
        }
    }

    result.leaked = result
        .allocations
        .keys()
        .filter(|ip| !in_use.contains_key(ip))
        .copied()
        .collect();

    let active: Vec<IpNet> = input
        .pools
        .iter()
        .filter(|p| !p.disabled)
        .map(|p| p.cidr)
        .collect();
    for (ip, owners) in &in_use {
        if owners.len() > 1 {
            result.multiple_owners.push(*ip);
        }
        if result.allocations.contains_key(ip) {
            continue;
        }
        if active.iter().any(|c| c.contains(ip)) {
            result.not_allocated.push(*ip);
        } else {
            result.not_in_pool.push(*ip);
        }
    }
    result.in_use = in_use;

    let recorded: BTreeSet<&str> = input.handles.iter().map(|h| h.id.as_str()).collect();
    for h in input.handles {
        if referenced_handles.contains(&h.id) {
            result.good_handles += 1;
        } else {
            result.leaked_handles.push(h.clone());
        }
    }
    result.leaked_handles.sort_by(|a, b| a.id.cmp(&b.id));
    result.missing_handles = referenced_handles
        .iter()
        .filter(|h| !recorded.contains(h.as_str()))
        .cloned()
        .collect();

    let confirmed: BTreeSet<(&str, IpNet)> = input
        .affinities
        .iter()
        .filter(|a| a.affinity.state == AffinityState::Confirmed)
        .map(|a| (a.host.as_str(), a.cidr))
        .collect();
    for block in input.blocks {
        let owned = match block.affinity.as_deref() {
            None => false,
            Some(aff) => match aff.strip_prefix("host:") {
                Some(host) => confirmed.contains(&(host, block.cidr)),
                // `virtual:` (load-balancer) blocks have no host affinity record to match.
                None => true,
            },
        };
        if !owned {
            result.unowned_blocks.push(UnownedBlock {
                cidr: block.cidr,
                affinity: block.affinity.clone(),
            });
        }
    }
    result.unowned_blocks.sort_by_key(|b| b.cidr);

    let blocks: BTreeMap<IpNet, &Block> = input.blocks.iter().map(|b| (b.cidr, b)).collect();
    for aff in input.affinities {
        match blocks.get(&aff.cidr) {
            Some(b) if b.host() == Some(aff.host.as_str()) => {}
            found => result.orphan_affinities.push(OrphanAffinity {
                host: aff.host.clone(),
                cidr: aff.cidr,
                state: aff.affinity.state,
                block_owner: found.and_then(|b| b.affinity.clone()),
            }),
        }
    }
    result
        .orphan_affinities
        .sort_by(|a, b| (a.cidr, &a.host).cmp(&(b.cidr, &b.host)));
    result
}

/// Metadata a report carries about the cluster it describes (from ClusterInformation `default`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMeta {
    pub cluster_guid: String,
    pub cluster_type: String,
    /// ClusterInformation's resourceVersion when the report was made.
    pub revision: String,
    /// `datastoreReady: false`: writers are held off.
    pub datastore_locked: bool,
}

/// The JSON `calicoctl ipam check -o FILE` writes (Calico's report layout).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Version of the calicoctl that produced the report.
    #[serde(default)]
    pub version: String,
    #[serde(rename = "clusterGUID", default)]
    pub cluster_guid: String,
    #[serde(rename = "datastoreLocked", default)]
    pub datastore_locked: bool,
    #[serde(rename = "clusterInformationRevision", default)]
    pub cluster_info_revision: String,
    #[serde(rename = "clusterType", default)]
    pub cluster_type: String,
    /// Every allocation, by address.
    #[serde(default)]
    pub allocations: BTreeMap<String, Vec<Allocation>>,
    #[serde(
        rename = "leakedHandles",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub leaked_handles: Vec<HandleInfo>,
}

impl Report {
    pub fn new(result: &CheckResult, version: &str, meta: &ClusterMeta) -> Report {
        Report {
            version: version.to_string(),
            cluster_guid: meta.cluster_guid.clone(),
            datastore_locked: meta.datastore_locked,
            cluster_info_revision: meta.revision.clone(),
            cluster_type: meta.cluster_type.clone(),
            allocations: result
                .allocations
                .iter()
                .map(|(ip, a)| (ip.to_string(), a.clone()))
                .collect(),
            leaked_handles: result
                .leaked_handles
                .iter()
                .map(|h| HandleInfo {
                    id: h.id.clone(),
                    uid: None,
                    revision: h.revision.to_string(),
                })
                .collect(),
        }
    }

    /// Allocations the report found unused, in address order.
    pub fn leaked_allocations(&self) -> Vec<&Allocation> {
        let mut out: Vec<&Allocation> = self
            .allocations
            .values()
            .flatten()
            .filter(|a| !a.in_use)
            .collect();
        out.sort_by_key(|a| a.ip.parse::<IpAddr>().ok());
        out
    }
}

/// What several reports agree is leaked: allocations unused in every report (keeping the last report's
/// handle and sequence number), and handles leaked in every report at the same revision.
pub fn merge_reports(reports: &[Report]) -> (Vec<Allocation>, Vec<HandleInfo>) {
    let mut ips: Option<BTreeMap<String, Allocation>> = None;
    let mut handles: Option<BTreeMap<String, HandleInfo>> = None;
    for report in reports {
        let this: BTreeMap<String, Allocation> = report
            .leaked_allocations()
            .into_iter()
            .filter(|a| ips.as_ref().is_none_or(|prev| prev.contains_key(&a.ip)))
            .map(|a| (a.ip.clone(), a.clone()))
            .collect();
        ips = Some(this);
        let this: BTreeMap<String, HandleInfo> = report
            .leaked_handles
            .iter()
            .filter(|h| {
                handles
                    .as_ref()
                    .is_none_or(|prev| prev.get(&h.id).is_some_and(|p| p.revision == h.revision))
            })
            .map(|h| (h.id.clone(), h.clone()))
            .collect();
        handles = Some(this);
    }
    let mut ips: Vec<Allocation> = ips.unwrap_or_default().into_values().collect();
    ips.sort_by_key(|a| a.ip.parse::<IpAddr>().ok());
    (ips, handles.unwrap_or_default().into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_api::Selector;
    use calico_api::spec::ippool::AllowedUse;
    use calico_model::ipam::model::Affinity;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn pool(cidr: &str, disabled: bool) -> Pool {
        Pool {
            name: format!("pool-{cidr}"),
            cidr: net(cidr),
            block_prefix: 26,
            disabled,
            node_selector: Ok(Selector::all()),
            allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
            manual: false,
        }
    }

    fn attr(handle: &str, node: &str, pod: Option<(&str, &str)>) -> AllocationAttribute {
        let mut secondary = BTreeMap::from([(ATTR_NODE.to_string(), node.to_string())]);
        if let Some((ns, p)) = pod {
            secondary.insert(ATTR_NAMESPACE.into(), ns.into());
            secondary.insert(ATTR_POD.into(), p.into());
        }
        AllocationAttribute {
            handle_id: Some(handle.into()),
            secondary,
            released_at: None,
        }
    }

    fn affinity(host: &str, cidr: &str, state: AffinityState) -> StoredAffinity {
        StoredAffinity {
            host: host.into(),
            cidr: net(cidr),
            affinity: Affinity {
                state,
                deleted: false,
            },
            revision: 1,
        }
    }

    fn workload(ns: &str, name: &str, addr: &str) -> InUse {
        InUse {
            ip: ip(addr),
            owner: Owner::Workload {
                namespace: ns.into(),
                name: name.into(),
            },
        }
    }

    fn handle(id: &str) -> HandleRecord {
        HandleRecord {
            id: id.into(),
            revision: 7,
        }
    }

    /// A healthy cluster: node-a owns 198.18.0.0/26 with two pods and its VXLAN tunnel address; node-b
    /// owns 198.18.0.64/26 with one pod.
    struct Cluster {
        blocks: Vec<Block>,
        handles: Vec<HandleRecord>,
        affinities: Vec<StoredAffinity>,
        pools: Vec<Pool>,
        in_use: Vec<InUse>,
    }

    impl Cluster {
        fn healthy() -> Cluster {
            let mut a = Block::new(net("198.18.0.0/26"), Some("host:node-a".into()), None);
            a.allocate(1, &attr("h-pod1", "node-a", Some(("ns", "pod1"))), &|_| {
                false
            });
            a.allocate(1, &attr("h-pod2", "node-a", Some(("ns", "pod2"))), &|_| {
                false
            });
            let mut tunnel = attr("vxlan-tunnel-addr-node-a", "node-a", None);
            tunnel
                .secondary
                .insert(ATTR_TYPE.into(), "vxlanTunnelAddress".into());
            a.allocate(1, &tunnel, &|_| false);
            let mut b = Block::new(net("198.18.0.64/26"), Some("host:node-b".into()), None);
            b.allocate(1, &attr("h-pod3", "node-b", Some(("ns", "pod3"))), &|_| {
                false
            });
            Cluster {
                blocks: vec![a, b],
                handles: ["h-pod1", "h-pod2", "vxlan-tunnel-addr-node-a", "h-pod3"]
                    .into_iter()
                    .map(handle)
                    .collect(),
                affinities: vec![
                    affinity("node-a", "198.18.0.0/26", AffinityState::Confirmed),
                    affinity("node-b", "198.18.0.64/26", AffinityState::Confirmed),
                ],
                pools: vec![pool("198.18.0.0/16", false)],
                in_use: vec![
                    workload("ns", "pod1", "198.18.0.0"),
                    workload("ns", "pod2", "198.18.0.1"),
                    InUse {
                        ip: ip("198.18.0.2"),
                        owner: Owner::Node {
                            name: "node-a".into(),
                        },
                    },
                    workload("ns", "pod3", "198.18.0.64"),
                ],
            }
        }

        fn check(&self) -> CheckResult {
            check(CheckInput {
                blocks: &self.blocks,
                handles: &self.handles,
                affinities: &self.affinities,
                pools: &self.pools,
                in_use: &self.in_use,
            })
        }
    }

    #[test]
    fn a_healthy_cluster_has_no_problems() {
        let r = Cluster::healthy().check();
        assert_eq!(r.problem_count(), 0, "{r:#?}");
        assert_eq!(r.allocations.len(), 4);
        assert!(r.allocations.values().flatten().all(|a| a.in_use));
        assert_eq!(r.good_handles, 4);
        assert_eq!(r.top_nodes(), vec![("node-a", 3), ("node-b", 1)]);
        let tunnel = &r.allocations[&ip("198.18.0.2")][0];
        assert_eq!(tunnel.owners, Some(vec!["Node(node-a)".to_string()]));
        assert_eq!(tunnel.alloc_type, "vxlanTunnelAddress");
        assert_eq!(tunnel.handle.as_deref(), Some("vxlan-tunnel-addr-node-a"));
        assert!(!tunnel.borrowed);
    }

    #[test]
    fn an_empty_cluster_has_no_problems() {
        let r = check(CheckInput {
            blocks: &[],
            handles: &[],
            affinities: &[],
            pools: &[],
            in_use: &[],
        });
        assert_eq!(r, CheckResult::default());
        assert_eq!(r.problem_count(), 0);
    }

    #[test]
    fn an_allocation_nobody_uses_is_a_leak() {
        let mut c = Cluster::healthy();
        c.in_use.retain(|u| u.ip != ip("198.18.0.1"));
        let r = c.check();
        assert_eq!(r.leaked, vec![ip("198.18.0.1")]);
        assert_eq!(r.problem_count(), 1);
        let a = &r.allocations[&ip("198.18.0.1")][0];
        assert!(!a.in_use);
        assert_eq!(a.owners, None);
        assert_eq!((a.pod.as_str(), a.namespace.as_str()), ("pod2", "ns"));
        assert_eq!(a.handle.as_deref(), Some("h-pod2"));
        assert_eq!(a.sequence_number, Some(1));
        assert_eq!(
            a.attrs,
            "Main:h-pod2 Extra:namespace=ns,node=node-a,pod=pod2"
        );
    }

    #[test]
    fn a_tunnel_allocation_is_a_leak_once_the_node_no_longer_uses_it() {
        let mut c = Cluster::healthy();
        c.in_use.retain(|u| !matches!(u.owner, Owner::Node { .. }));
        let r = c.check();
        assert_eq!(r.leaked, vec![ip("198.18.0.2")]);
        assert_eq!(r.problem_count(), 1);
    }

    #[test]
    fn used_but_unallocated_addresses_are_split_by_pool() {
        let mut c = Cluster::healthy();
        c.pools.push(pool("198.19.0.0/24", true));
        c.in_use.push(workload("ns", "inpool", "198.18.1.9"));
        c.in_use.push(workload("ns", "disabled-pool", "198.19.0.9"));
        c.in_use.push(workload("ns", "outside", "10.99.0.1"));
        let r = c.check();
        assert_eq!(r.not_allocated, vec![ip("198.18.1.9")]);
        assert_eq!(r.not_in_pool, vec![ip("10.99.0.1"), ip("198.19.0.9")]);
        assert_eq!(r.problem_count(), 3);
        assert!(r.leaked.is_empty());
    }

    #[test]
    fn an_address_used_twice_is_reported_once() {
        let mut c = Cluster::healthy();
        c.in_use.push(workload("other", "dup", "198.18.0.0"));
        let r = c.check();
        assert_eq!(r.multiple_owners, vec![ip("198.18.0.0")]);
        assert_eq!(r.problem_count(), 1);
        assert_eq!(
            r.allocations[&ip("198.18.0.0")][0].owners,
            Some(vec![
                "Workload(ns/pod1)".to_string(),
                "Workload(other/dup)".to_string()
            ])
        );
    }

    #[test]
    fn handle_records_and_allocations_must_refer_to_each_other() {
        let mut c = Cluster::healthy();
        c.handles.retain(|h| h.id != "h-pod3");
        c.handles.push(handle("h-gone"));
        let r = c.check();
        assert_eq!(r.leaked_handles, vec![handle("h-gone")]);
        assert_eq!(r.missing_handles, vec!["h-pod3".to_string()]);
        assert_eq!(r.good_handles, 3);
        assert_eq!(r.problem_count(), 2);
    }

    #[test]
    fn blocks_need_a_confirmed_affinity_of_the_host_they_name() {
        let mut c = Cluster::healthy();
        // node-b's affinity is still pending, and a third block lost its owner.
        c.affinities[1].affinity.state = AffinityState::Pending;
        let mut orphan = Block::new(net("198.18.0.128/26"), None, None);
        orphan.allocate(1, &attr("h-pod4", "node-c", Some(("ns", "pod4"))), &|_| {
            false
        });
        c.blocks.push(orphan);
        c.handles.push(handle("h-pod4"));
        c.in_use.push(workload("ns", "pod4", "198.18.0.128"));
        let r = c.check();
        assert_eq!(
            r.unowned_blocks,
            vec![
                UnownedBlock {
                    cidr: net("198.18.0.64/26"),
                    affinity: Some("host:node-b".into())
                },
                UnownedBlock {
                    cidr: net("198.18.0.128/26"),
                    affinity: None
                },
            ]
        );
        assert_eq!(r.problem_count(), 2);
        // The address in the ownerless block counts as borrowed by node-c.
        assert!(r.allocations[&ip("198.18.0.128")][0].borrowed);
    }

    #[test]
    fn affinities_need_their_block() {
        let mut c = Cluster::healthy();
        c.affinities.push(affinity(
            "node-c",
            "198.18.1.0/26",
            AffinityState::Confirmed,
        ));
        // node-c also claims node-a's block.
        c.affinities.push(affinity(
            "node-c",
            "198.18.0.0/26",
            AffinityState::Confirmed,
        ));
        let r = c.check();
        assert_eq!(
            r.orphan_affinities,
            vec![
                OrphanAffinity {
                    host: "node-c".into(),
                    cidr: net("198.18.0.0/26"),
                    state: AffinityState::Confirmed,
                    block_owner: Some("host:node-a".into()),
                },
                OrphanAffinity {
                    host: "node-c".into(),
                    cidr: net("198.18.1.0/26"),
                    state: AffinityState::Confirmed,
                    block_owner: None,
                },
            ]
        );
        assert_eq!(r.problem_count(), 2);
    }

    #[test]
    fn borrowed_addresses_are_marked_and_cooling_ones_ignored() {
        let mut c = Cluster::healthy();
        // node-b borrows from node-a's block; pod1's address was released and is cooling down.
        c.blocks[0].allocate(1, &attr("h-borrow", "node-b", Some(("ns", "b"))), &|_| {
            false
        });
        c.blocks[0].release(&[ip("198.18.0.0")], Some("2026-01-01T00:00:00Z"));
        c.handles.retain(|h| h.id != "h-pod1");
        c.handles.push(handle("h-borrow"));
        c.in_use.retain(|u| u.ip != ip("198.18.0.0"));
        c.in_use.push(workload("ns", "b", "198.18.0.3"));
        let r = c.check();
        assert_eq!(r.problem_count(), 0, "{r:#?}");
        assert!(!r.allocations.contains_key(&ip("198.18.0.0")));
        let b = &r.allocations[&ip("198.18.0.3")][0];
        assert!(b.borrowed);
        assert_eq!(b.node, "node-b");
        assert_eq!(r.allocations_by_node["node-b"], 2);
    }

    #[test]
    fn windows_reserved_addresses_are_in_use_without_a_handle() {
        let mut c = Cluster::healthy();
        c.blocks[1].allocate(1, &attr(WINDOWS_RESERVED_HANDLE, "node-b", None), &|_| {
            false
        });
        let r = c.check();
        assert_eq!(r.problem_count(), 0, "{r:#?}");
        assert_eq!(r.allocations[&ip("198.18.0.65")][0].handle, None);
    }

    #[test]
    fn every_kind_of_problem_adds_up() {
        let mut c = Cluster::healthy();
        c.in_use.retain(|u| u.ip != ip("198.18.0.64")); // leak
        c.in_use.push(workload("ns", "x", "198.18.5.5")); // not allocated
        c.in_use.push(workload("ns", "y", "10.0.0.1")); // not in a pool
        c.in_use.push(workload("ns", "z", "198.18.0.1")); // duplicate
        c.handles.push(handle("h-unused")); // leaked handle
        c.handles.retain(|h| h.id != "h-pod1"); // missing handle
        c.affinities.remove(1); // block without affinity
        c.affinities
            .push(affinity("node-d", "198.18.2.0/26", AffinityState::Pending)); // affinity without block
        let r = c.check();
        assert_eq!(r.leaked.len(), 1);
        assert_eq!(r.not_allocated.len(), 1);
        assert_eq!(r.not_in_pool.len(), 1);
        assert_eq!(r.multiple_owners.len(), 1);
        assert_eq!(r.leaked_handles.len(), 1);
        assert_eq!(r.missing_handles.len(), 1);
        assert_eq!(r.unowned_blocks.len(), 1);
        assert_eq!(r.orphan_affinities.len(), 1);
        assert_eq!(r.problem_count(), 8);
    }

    #[test]
    fn addresses_are_read_from_endpoints_and_nodes() {
        let wep = Resource::from_value(serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": "node--a-k8s-pod1-eth0", "namespace": "ns"},
            "spec": {"node": "node-a", "ipNetworks": ["198.18.0.5/32", "fd00:198::5/128"]}
        }))
        .unwrap();
        let got = workload_addresses(&wep).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].ip, ip("198.18.0.5"));
        assert_eq!(got[1].ip, ip("fd00:198::5"));
        assert_eq!(
            got[0].owner.friendly_name(),
            "Workload(ns/node--a-k8s-pod1-eth0)"
        );

        let node = Resource::from_value(serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "Node",
            "metadata": {"name": "node-a"},
            "spec": {
                "ipv4VXLANTunnelAddr": "198.18.0.1",
                "ipv6VXLANTunnelAddr": "fd00:198::1",
                "bgp": {"ipv4Address": "198.18.100.1/24", "ipv4IPIPTunnelAddr": "198.18.0.2"},
                "wireguard": {"interfaceIPv4Address": "198.18.0.3"}
            }
        }))
        .unwrap();
        let mut got: Vec<IpAddr> = node_addresses(&node)
            .unwrap()
            .into_iter()
            .map(|u| u.ip)
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ip("198.18.0.1"),
                ip("198.18.0.2"),
                ip("198.18.0.3"),
                ip("fd00:198::1")
            ]
        );
        assert!(node_addresses(&wep).unwrap().is_empty());
        assert_eq!(parse_ip_or_cidr("garbage"), None);
    }

    #[test]
    fn reports_use_calicos_field_names_and_round_trip() {
        let mut c = Cluster::healthy();
        c.in_use.retain(|u| u.ip != ip("198.18.0.1"));
        c.handles.push(handle("h-unused"));
        let r = c.check();
        let meta = ClusterMeta {
            cluster_guid: "guid-1".into(),
            cluster_type: "bgp".into(),
            revision: "42".into(),
            datastore_locked: false,
        };
        let report = Report::new(&r, "v1.0.0", &meta);
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["clusterGUID"], "guid-1");
        assert_eq!(v["clusterInformationRevision"], "42");
        assert_eq!(v["datastoreLocked"], false);
        assert_eq!(v["leakedHandles"][0]["ID"], "h-unused");
        assert_eq!(v["leakedHandles"][0]["Revision"], "7");
        assert!(v["leakedHandles"][0]["UID"].is_null());
        let leak = &v["allocations"]["198.18.0.1"][0];
        assert_eq!(leak["inUse"], false);
        assert_eq!(leak["handle"], "h-pod2");
        assert_eq!(leak["sequenceNumber"], 1);
        assert!(leak["owners"].is_null());
        assert!(leak.get("borrowed").is_none());
        assert_eq!(
            v["allocations"]["198.18.0.0"][0]["owners"][0],
            "Workload(ns/pod1)"
        );
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.leaked_allocations().len(), 1);
        assert_eq!(back.leaked_allocations()[0].ip, "198.18.0.1");
    }

    #[test]
    fn merging_reports_keeps_only_what_every_report_calls_leaked() {
        let mut c = Cluster::healthy();
        c.in_use.clear();
        c.handles.push(handle("h-unused"));
        c.handles.push(handle("h-changed"));
        let meta = ClusterMeta::default();
        let first = Report::new(&c.check(), "v", &meta);
        // Later, pod1 is running again and h-changed was rewritten.
        c.in_use.push(workload("ns", "pod1", "198.18.0.0"));
        c.handles.retain(|h| h.id != "h-changed");
        c.handles.push(HandleRecord {
            id: "h-changed".into(),
            revision: 99,
        });
        let second = Report::new(&c.check(), "v", &meta);
        let (ips, handles) = merge_reports(&[first.clone(), second]);
        let ips: Vec<&str> = ips.iter().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, vec!["198.18.0.1", "198.18.0.2", "198.18.0.64"]);
        let handles: Vec<&str> = handles.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(handles, vec!["h-unused"]);
        let (ips, handles) = merge_reports(&[first]);
        assert_eq!(ips.len(), 4);
        assert_eq!(handles.len(), 2);
        assert_eq!(merge_reports(&[]), (vec![], vec![]));
    }
}
