//! What Calico's confd computes for BIRD, as values calico-rs's BGP speaker takes: for one node
//! (this host), its BGP identity, the peers it should have (node-to-node mesh, global, per-node
//! and selector BGPPeers, reverse peerings between Calico nodes, route-reflector clients), the
//! prefixes it originates with their communities, and the problems found in the input.
//!
//! Everything here is pure: the datastore resources come in as decoded values and BGP passwords
//! are read through a function the caller passes, so the crate does no I/O. One bad resource
//! never hides the others: each problem is reported beside the result and only what it touches
//! is left out.
//!
//! The caller (calico-node) recomputes on every relevant datastore change and applies the
//! difference: [`BgpIdentity::speaker_config`] to start the speaker (or `set_identity` when it
//! changed), [`plan_peers`] for `set_peer`/`remove_peer`, [`plan_originations`] for
//! `originate`/`withdraw`, a host route per [`DesiredPeer::reachable_by`], and a log line per
//! [`ConfdProblem`].
//!
//! The behaviour follows confd's peer calculation and BIRD templates (calico-behaviour.md §6);
//! where the speaker cannot express what BIRD would do, the approximation errs towards fewer
//! routes and is reported as a problem.

mod filters;
mod peers;
mod plan;
mod prefixes;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use calico_api::ObjectMeta;
use calico_api::spec::bgpconfig::{
    BGPConfigurationSpec, BindMode, DEFAULT_AS_NUMBER, DEFAULT_LISTEN_PORT,
};
use calico_api::spec::bgpfilter::BGPFilterSpec;
use calico_api::spec::bgppeer::{BGPPeerSpec, SecretKeySelector};
use calico_api::spec::ippool::IPPoolSpec;
use calico_api::spec::node::NodeSpec;
use calico_bgp::speaker::{PeerSettings, SpeakerConfig};
use calico_bgp::wire::LargeCommunity;
use calico_model::ipam::block::BlockInfo;
use ipnet::IpNet;

pub use plan::{OriginationOps, PeerOps, plan_originations, plan_peers};

/// A resource as confd needs it: name, labels and spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Named<S> {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: S,
}

impl<S> Named<S> {
    pub fn new(name: impl Into<String>, spec: S) -> Self {
        Named {
            name: name.into(),
            labels: BTreeMap::new(),
            spec,
        }
    }

    /// From a decoded resource's metadata.
    pub fn from_meta(meta: &ObjectMeta, spec: S) -> Self {
        Named {
            name: meta.name.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
            spec,
        }
    }

    pub fn with_labels<K: Into<String>, V: Into<String>>(
        mut self,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.labels = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }
}

/// Everything the calculation reads. Slices may come in any order; the result does not depend
/// on it.
#[derive(Clone, Copy, Debug)]
pub struct ConfdInput<'a> {
    /// This host's Node name.
    pub node_name: &'a str,
    pub nodes: &'a [Named<NodeSpec>],
    /// `default` and `node.<name>` objects.
    pub bgp_configurations: &'a [Named<BGPConfigurationSpec>],
    pub bgp_peers: &'a [Named<BGPPeerSpec>],
    pub bgp_filters: &'a [Named<BGPFilterSpec>],
    pub ip_pools: &'a [Named<IPPoolSpec>],
    /// Every IPAM block of the cluster (affinity and the node of each allocation).
    pub blocks: &'a [BlockInfo],
    /// `CALICO_ROUTER_ID` when it names an address; otherwise the node's IPv4 address is used.
    pub router_id: Option<Ipv4Addr>,
}

/// Reads a BGP password from the Secret a `secretKeyRef` names; `Err` says why it could not.
pub type SecretReader<'a> = &'a dyn Fn(&SecretKeySelector) -> Result<String, String>;

/// This node's BGP identity (BIRD's `router id`, `local as`, `listen bgp port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpIdentity {
    /// The node has `spec.bgp` with an IPv4 address (and a valid AS): it runs BGP.
    pub enabled: bool,
    pub local_as: u32,
    pub router_id: Option<Ipv4Addr>,
    /// `spec.bgp.routeReflectorClusterID`: this node is a route reflector.
    pub cluster_id: Option<Ipv4Addr>,
    pub listen_port: u16,
    /// `bindMode: NodeIP`: listen on the node's address only (else on every address).
    pub listen_address: Option<IpAddr>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl BgpIdentity {
    /// The speaker's configuration for this identity (listening at the configured address and
    /// port), or `None` when the node does not run BGP.
    pub fn speaker_config(&self) -> Option<SpeakerConfig> {
        let router_id = self.router_id.filter(|_| self.enabled)?;
        let mut config = SpeakerConfig::new(self.local_as, router_id);
        let listen_ip = self
            .listen_address
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        config.listen = Some(SocketAddr::new(listen_ip, self.listen_port));
        config.cluster_id = self.cluster_id;
        Some(config)
    }
}

/// Where a peering comes from, as `calicoctl node status` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerKind {
    Mesh,
    NodeSpecific,
    Global,
}

impl PeerKind {
    /// The "PEER TYPE" column of `calicoctl node status`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Mesh => "node-to-node mesh",
            PeerKind::NodeSpecific => "node specific",
            PeerKind::Global => "global",
        }
    }

    /// The prefix of BIRD's protocol name.
    fn name_prefix(self) -> &'static str {
        match self {
            PeerKind::Mesh => "Mesh",
            PeerKind::NodeSpecific => "Node",
            PeerKind::Global => "Global",
        }
    }
}

impl fmt::Display for PeerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One peering this node should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPeer {
    /// BIRD's protocol name: `Mesh_10_0_0_2`, `Node_10_0_0_5_port_1179`, `Global_fd00__1`.
    pub name: String,
    pub kind: PeerKind,
    pub settings: PeerSettings,
    /// The BGPPeer it comes from; `None` for the mesh.
    pub source: Option<String>,
    /// `reachableBy`: the caller adds a host route to the peer via this gateway.
    pub reachable_by: Option<IpAddr>,
}

/// Why a prefix is originated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OriginKind {
    /// An IPAM block affine to this node (blackholed locally, advertised whole).
    Block,
    /// An address this node uses from another node's block (/32 or /128).
    Borrowed,
    ServiceClusterIP,
    ServiceExternalIP,
    ServiceLoadBalancerIP,
}

/// A prefix to originate, with the communities `prefixAdvertisements` attach to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origination {
    pub prefix: IpNet,
    pub kind: OriginKind,
    /// Standard communities, `aa:nn` as `aa << 16 | nn`, sorted.
    pub communities: Vec<u32>,
    pub large_communities: Vec<LargeCommunity>,
}

/// Something wrong with the input, and what was left out because of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {resource:?}: {field}: {message}")]
pub struct ConfdProblem {
    /// The resource kind: `BGPPeer`, `BGPFilter`, `BGPConfiguration`, `Node`, `IPPool`.
    pub kind: &'static str,
    pub resource: String,
    /// Field path, e.g. `spec.peerSelector`.
    pub field: String,
    pub message: String,
}

impl ConfdProblem {
    fn new(
        kind: &'static str,
        resource: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfdProblem {
            kind,
            resource: resource.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The result for one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confd {
    pub identity: BgpIdentity,
    /// Sorted by name (as confd sorts BIRD's protocols); at most one per address.
    pub peers: Vec<DesiredPeer>,
    /// Sorted by prefix, one per prefix.
    pub originations: Vec<Origination>,
    /// Each problem once, in the order found.
    pub problems: Vec<ConfdProblem>,
}

/// What confd would configure BIRD with on `input.node_name`.
pub fn compute(input: &ConfdInput<'_>, secrets: SecretReader<'_>) -> Confd {
    let mut problems = Vec::new();
    let ctx = Context::new(input, &mut problems);
    let identity = ctx.identity();
    match ctx.me() {
        None => problems.push(ConfdProblem::new(
            "Node",
            input.node_name,
            "metadata.name",
            "no such Node: this host runs no BGP until it is registered",
        )),
        Some(me) if me.v4.is_some() && identity.local_as == 0 => problems.push(ConfdProblem::new(
            "Node",
            input.node_name,
            "spec.bgp.asNumber",
            "AS 0 is reserved (RFC 7607): this host runs no BGP",
        )),
        Some(me) => {
            if let Some(id) = me.cluster_id.filter(|id| id.parse::<Ipv4Addr>().is_err()) {
                problems.push(ConfdProblem::new(
                    "Node",
                    input.node_name,
                    "spec.bgp.routeReflectorClusterID",
                    format!("{id:?} is not an IPv4 address: the speaker uses its router id as cluster id"),
                ));
            }
        }
    }
    let (peers, originations) = if identity.enabled {
        (
            peers::desired_peers(&ctx, secrets, &mut problems),
            prefixes::originations(&ctx, &mut problems),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let mut unique: Vec<ConfdProblem> = Vec::with_capacity(problems.len());
    for p in problems {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    Confd {
        identity,
        peers,
        originations,
        problems: unique,
    }
}

/// What the calculation knows about a Node.
#[derive(Clone, Debug)]
pub(crate) struct NodeFacts<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// Its own AS, or the cluster's.
    pub asn: u32,
    /// `routeReflectorClusterID` as written (compared as a string, as confd does).
    pub cluster_id: Option<&'a str>,
    /// Its `node.<name>` BGPConfiguration's `listenPort`, else the cluster's.
    pub listen_port: Option<u16>,
}

impl NodeFacts<'_> {
    pub fn has_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4 == Some(a),
            IpAddr::V6(a) => self.v6 == Some(a),
        }
    }
}

/// The input indexed for the calculation.
pub(crate) struct Context<'a> {
    pub input: &'a ConfdInput<'a>,
    /// Every node with its facts, by name.
    pub nodes: Vec<NodeFacts<'a>>,
    /// This node's index in `nodes`, if it exists.
    pub me: Option<usize>,
    pub global: Option<&'a BGPConfigurationSpec>,
    pub global_name: &'a str,
    /// `node.<this node>`.
    pub mine: Option<&'a Named<BGPConfigurationSpec>>,
    pub global_as: u32,
}

impl<'a> Context<'a> {
    fn new(input: &'a ConfdInput<'a>, problems: &mut Vec<ConfdProblem>) -> Self {
        let global_named = input
            .bgp_configurations
            .iter()
            .find(|c| c.name == "default");
        let global = global_named.map(|c| &c.spec);
        let global_as = global.map_or(DEFAULT_AS_NUMBER, |g| g.effective_as_number());
        let global_port = global_named.and_then(|c| listen_port(c, problems));
        let mine_name = format!("node.{}", input.node_name);
        let mine = input
            .bgp_configurations
            .iter()
            .find(|c| c.name == mine_name);

        let mut sorted: Vec<&Named<NodeSpec>> = input.nodes.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut nodes = Vec::with_capacity(sorted.len());
        for node in sorted {
            let bgp = node.spec.bgp.as_ref();
            // An address that does not parse leaves the node out of BGP for that family.
            let mut check = |field: &str, written: Option<&str>, parsed: bool| {
                if let Some(text) = written.filter(|t| !t.is_empty() && !parsed) {
                    problems.push(ConfdProblem::new(
                        "Node",
                        &node.name,
                        format!("spec.bgp.{field}"),
                        format!("{text:?} is not an address with prefix length of this family; the node is left out of BGP over it"),
                    ));
                }
            };
            let v4 = bgp.and_then(|b| b.ipv4());
            let v6 = bgp.and_then(|b| b.ipv6());
            if let Some(b) = bgp {
                check("ipv4Address", b.ipv4_address.as_deref(), v4.is_some());
                check("ipv6Address", b.ipv6_address.as_deref(), v6.is_some());
            }
            let own_port = input
                .bgp_configurations
                .iter()
                .find(|c| c.name.strip_prefix("node.") == Some(node.name.as_str()))
                .and_then(|c| listen_port(c, problems));
            nodes.push(NodeFacts {
                name: &node.name,
                labels: &node.labels,
                v4,
                v6,
                asn: bgp.and_then(|b| b.as_number).unwrap_or(global_as),
                cluster_id: bgp
                    .and_then(|b| b.route_reflector_cluster_id.as_deref())
                    .filter(|s| !s.is_empty()),
                listen_port: own_port.or(global_port),
            });
        }
        let me = nodes.iter().position(|n| n.name == input.node_name);
        Context {
            input,
            nodes,
            me,
            global,
            global_name: global_named.map_or("default", |c| c.name.as_str()),
            mine,
            global_as,
        }
    }

    pub fn me(&self) -> Option<&NodeFacts<'a>> {
        self.me.map(|i| &self.nodes[i])
    }

    /// This node's address of `ip`'s family.
    pub fn my_ip_like(&self, ip: IpAddr) -> Option<IpAddr> {
        let me = self.me()?;
        match ip {
            IpAddr::V4(_) => me.v4.map(IpAddr::V4),
            IpAddr::V6(_) => me.v6.map(IpAddr::V6),
        }
    }

    pub fn local_as(&self) -> u32 {
        self.me().map_or(self.global_as, |m| m.asn)
    }

    pub fn cluster_id(&self) -> Option<&'a str> {
        self.me().and_then(|m| m.cluster_id)
    }

    fn identity(&self) -> BgpIdentity {
        let me = self.me();
        let ipv4 = me.and_then(|m| m.v4);
        let local_as = self.local_as();
        // The port the other nodes dial us at (worked out, with its problems, in `Context::new`).
        let listen_port = me
            .and_then(|m| m.listen_port)
            .unwrap_or(DEFAULT_LISTEN_PORT);
        BgpIdentity {
            // AS 0 is reserved (RFC 7607): no session could be opened with it.
            enabled: ipv4.is_some() && local_as != 0,
            local_as,
            router_id: self.input.router_id.or(ipv4),
            cluster_id: self.cluster_id().and_then(|c| c.parse().ok()),
            listen_port,
            listen_address: ipv4
                .filter(|_| self.global.and_then(|g| g.bind_mode) == Some(BindMode::NodeIP))
                .map(IpAddr::V4),
            ipv4,
            ipv6: me.and_then(|m| m.v6),
        }
    }
}

/// A BGPConfiguration's `listenPort`, checked.
fn listen_port(
    config: &Named<BGPConfigurationSpec>,
    problems: &mut Vec<ConfdProblem>,
) -> Option<u16> {
    let port = config.spec.listen_port?;
    match u16::try_from(port) {
        Ok(p) if p != 0 => Some(p),
        _ => {
            problems.push(ConfdProblem::new(
                "BGPConfiguration",
                &config.name,
                "spec.listenPort",
                format!("{port} is not a port (1-65535); the default 179 is used"),
            ));
            None
        }
    }
}
