//! BGP in calico-node: the roles of Calico's confd and BIRD, in-process.
//!
//! - [`BgpModel`] keeps, on the calculation thread, the resources BGP depends on (Nodes,
//!   BGPConfigurations, BGPPeers, BGPFilters, IPPools) and computes from them and the Felix model's
//!   blocks what confd would render ([`calico_confd::compute`]): this node's AS and router id, its
//!   peers, and the prefixes it originates.
//! - [`run`] is the speaker's side, an async task on the multi-thread runtime: it starts our speaker
//!   ([`calico_bgp::speaker::Speaker`]), applies each new plan as a difference (unaffected sessions
//!   stay up), and turns the speaker's best paths into `proto bird` kernel routes, which it hands to
//!   the dataplane thread (the only one that writes to the kernel).
//!
//! BGP passwords (`password.secretKeyRef`) are read from files: `<secrets dir>/<secret name>/<key>`,
//! where the secrets directory is `CALICO_SECRETS_DIR` (default `<state dir>/secrets`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_api::spec::bgpconfig::BGPConfigurationSpec;
use calico_api::spec::bgpfilter::BGPFilterSpec;
use calico_api::spec::bgppeer::BGPPeerSpec;
use calico_api::spec::bgppeer::SecretKeySelector;
use calico_api::spec::ippool::{EncapMode, IPPoolSpec};
use calico_api::spec::node::NodeSpec;
use calico_api::{Kind, Spec};
use calico_bgp::session::State;
use calico_bgp::speaker::{Communities, RouteChange, RouteStream, Speaker, SpeakerConfig};
use calico_confd::{
    Confd, ConfdInput, DesiredPeer, Named, Origination, PeerKind, plan_originations, plan_peers,
};
use calico_dataplane::plan::bgp::BgpRoutes;
use calico_datastore::keys::parse_resource_key;
use calico_datastore::syncer::SyncEvent;
use calico_model::ipam::block::BlockInfo;
use calico_model::resource::decode_kv;
use ipnet::IpNet;
use tokio::sync::watch;

use crate::bgp_status::{self, NodeBgpStatus};
use crate::handoff::Handoff;
use crate::input::DataplaneInput;
use crate::status::Status;

/// How often the speaker's peer status is read (for readiness, metrics and `calicoctl node status`).
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// After a restart, how long `proto bird` routes the peers have not announced again are kept before
/// they count as stale anyway (BIRD's default graceful restart time).
const RESTART_PATIENCE: Duration = Duration::from_secs(120);
/// Marks that this node's speaker ran since the state directory was last cleared (a reboot clears
/// `/var/run`): a speaker that finds it is restarting, with the kernel routes of its last run still
/// forwarding traffic.
const RUNNING_MARKER: &str = "bgp-running";

/// What BGP depends on, folded from syncer events.
#[derive(Debug, Default)]
pub struct BgpModel {
    nodes: BTreeMap<String, Named<NodeSpec>>,
    configurations: BTreeMap<String, Named<BGPConfigurationSpec>>,
    peers: BTreeMap<String, Named<BGPPeerSpec>>,
    filters: BTreeMap<String, Named<BGPFilterSpec>>,
    pools: BTreeMap<String, Named<IPPoolSpec>>,
}

impl BgpModel {
    /// Folds one event in; whether a resource BGP depends on changed. Blocks are not kept here: the
    /// Felix model already decodes them into what routing needs ([`BlockInfo`]), and its change of a
    /// block is what tells (see [`plan`](Self::plan)). Values that do not decode are dropped (the
    /// Felix model reports them).
    pub fn apply(&mut self, event: &SyncEvent) -> bool {
        match event {
            SyncEvent::Put(kv) => {
                let Some(id) = parse_resource_key(&kv.key) else {
                    return false;
                };
                if !matches!(
                    id.kind,
                    Kind::Node
                        | Kind::BGPConfiguration
                        | Kind::BGPPeer
                        | Kind::BGPFilter
                        | Kind::IPPool
                ) {
                    return false;
                }
                let Ok(resource) = decode_kv(kv) else {
                    return self.remove(&kv.key);
                };
                let meta = &resource.metadata;
                match resource.spec {
                    Spec::Node(spec) => {
                        replace(&mut self.nodes, &kv.key, Some(Named::from_meta(meta, spec)))
                    }
                    Spec::BGPConfiguration(spec) => replace(
                        &mut self.configurations,
                        &kv.key,
                        Some(Named::from_meta(meta, spec)),
                    ),
                    Spec::BGPPeer(spec) => {
                        replace(&mut self.peers, &kv.key, Some(Named::from_meta(meta, spec)))
                    }
                    Spec::BGPFilter(spec) => replace(
                        &mut self.filters,
                        &kv.key,
                        Some(Named::from_meta(meta, spec)),
                    ),
                    Spec::IPPool(spec) => {
                        replace(&mut self.pools, &kv.key, Some(Named::from_meta(meta, spec)))
                    }
                    _ => false,
                }
            }
            SyncEvent::Delete { key, .. } => self.remove(key),
            SyncEvent::InSync { .. } | SyncEvent::Resyncing { .. } => false,
        }
    }

    fn remove(&mut self, key: &str) -> bool {
        replace(&mut self.nodes, key, None)
            | replace(&mut self.configurations, key, None)
            | replace(&mut self.peers, key, None)
            | replace(&mut self.filters, key, None)
            | replace(&mut self.pools, key, None)
    }

    /// What confd would render for `node` given the cluster's `blocks`, and which learned routes
    /// the kernel gets.
    pub fn plan<'a>(
        &self,
        node: &str,
        router_id: Option<Ipv4Addr>,
        secrets: &Path,
        blocks: impl IntoIterator<Item = &'a BlockInfo>,
    ) -> BgpPlan {
        let nodes: Vec<_> = self.nodes.values().cloned().collect();
        let configurations: Vec<_> = self.configurations.values().cloned().collect();
        let peers: Vec<_> = self.peers.values().cloned().collect();
        let filters: Vec<_> = self.filters.values().cloned().collect();
        let pools: Vec<_> = self.pools.values().cloned().collect();
        let blocks: Vec<BlockInfo> = blocks.into_iter().cloned().collect();
        let input = ConfdInput {
            node_name: node,
            nodes: &nodes,
            bgp_configurations: &configurations,
            bgp_peers: &peers,
            bgp_filters: &filters,
            ip_pools: &pools,
            blocks: &blocks,
            router_id,
        };
        let read = |selector: &SecretKeySelector| read_secret(secrets, selector);
        let confd = calico_confd::compute(&input, &read);
        BgpPlan {
            confd,
            felix_pools: felix_routed_pools(&pools),
        }
    }
}

/// Insert, replace or remove `key`; true when the map changed.
fn replace<T: PartialEq>(map: &mut BTreeMap<String, T>, key: &str, value: Option<T>) -> bool {
    match value {
        Some(v) => {
            if map.get(key) == Some(&v) {
                return false;
            }
            map.insert(key.to_string(), v);
            true
        }
        None => map.remove(key).is_some(),
    }
}

/// A BGP password from `<secrets>/<name>/<key>`, trailing newline removed.
fn read_secret(secrets: &Path, selector: &SecretKeySelector) -> Result<String, String> {
    let invalid = |part: &str| part.is_empty() || part.contains('/') || part == "..";
    if invalid(&selector.name) || invalid(&selector.key) {
        return Err(format!(
            "secret {:?} key {:?} is not a valid secret reference",
            selector.name, selector.key
        ));
    }
    let path = secrets.join(&selector.name).join(&selector.key);
    std::fs::read_to_string(&path)
        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("cannot read secret {}: {e}", path.display()))
}

/// Pools whose routes Felix programs (VXLAN, always or across subnets): routes learned for
/// addresses in them stay out of the kernel, as Calico's `calico_kernel_programming` filter does.
fn felix_routed_pools(pools: &[Named<IPPoolSpec>]) -> Vec<IpNet> {
    pools
        .iter()
        .filter(|p| p.spec.vxlan() != EncapMode::Never)
        .filter_map(|p| p.spec.net())
        .collect()
}

/// The calculation's instructions to the speaker.
#[derive(Clone, Debug)]
pub struct BgpPlan {
    pub confd: Confd,
    /// Learned routes inside these pools are Felix's business.
    pub felix_pools: Vec<IpNet>,
}

impl BgpPlan {
    fn to_kernel(&self, prefix: &IpNet) -> bool {
        !self.felix_pools.iter().any(|pool| pool.contains(prefix))
    }
}

/// Runs the speaker side until the plans stop coming (calico-node is shutting down).
pub async fn run(
    mut plans: watch::Receiver<Option<Arc<BgpPlan>>>,
    state_dir: PathBuf,
    dataplane: Arc<Handoff<DataplaneInput>>,
    status: Arc<Status>,
    view: watch::Sender<NodeBgpStatus>,
) {
    let marker = state_dir.join(RUNNING_MARKER);
    let restarting = marker.exists();
    let started = Instant::now();
    let mut speaker: Option<(Speaker, SpeakerConfig)> = None;
    let mut routes: Option<RouteStream> = None;
    let mut peers: Vec<DesiredPeer> = Vec::new();
    let mut originated: Vec<Origination> = Vec::new();
    let mut learned = BgpRoutes::default();
    let mut plan: Option<Arc<BgpPlan>> = None;
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    // Not ready until the first plan is applied and the sessions are looked at.
    status.set_bgp_problems(vec![
        "BIRD is not ready: waiting for the BGP configuration from the datastore".to_string(),
    ]);
    loop {
        tokio::select! {
            changed = plans.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(next) = plans.borrow_and_update().clone() else {
                    continue;
                };
                let Some(config) = next.confd.identity.speaker_config() else {
                    if let Some((old, _)) = speaker.take() {
                        tracing::info!("BGP is off for this node (no IPv4 address); stopping the speaker");
                        old.shutdown().await;
                        routes = None;
                        peers.clear();
                        originated.clear();
                        learned.routes.clear();
                        learned.complete = true;
                        offer(&dataplane, learned.clone());
                    }
                    status.set_bgp_problems(Vec::new());
                    view.send_replace(NodeBgpStatus { speaker_running: false, peers: Vec::new() });
                    plan = Some(next);
                    continue;
                };
                if speaker.is_none() {
                    let config = SpeakerConfig { restarting, ..config.clone() };
                    match Speaker::start(config.clone()).await {
                        Ok((started_speaker, stream)) => {
                            if let Err(e) = std::fs::write(&marker, b"") {
                                tracing::warn!(error = %e, path = %marker.display(), "cannot mark the speaker as running");
                            }
                            tracing::info!(as_number = config.local_as, router_id = %config.router_id, listen = ?config.listen, restarting, "BGP speaker started");
                            speaker = Some((started_speaker, config));
                            routes = Some(stream);
                            view.send_modify(|v| v.speaker_running = true);
                        }
                        Err(e) => {
                            status.set_bgp_problems(vec![format!("BIRD is not ready: cannot start the BGP speaker: {e}")]);
                            tracing::error!(error = %e, "cannot start the BGP speaker; will retry on the next change");
                            continue;
                        }
                    }
                }
                let Some((running, current)) = speaker.as_mut() else { continue };
                if (current.local_as, current.router_id, current.cluster_id)
                    != (config.local_as, config.router_id, config.cluster_id)
                {
                    if let Err(e) = running.set_identity(config.local_as, config.router_id, config.cluster_id).await {
                        tracing::warn!(error = %e, "cannot change the speaker's AS or router id");
                    }
                    current.local_as = config.local_as;
                    current.router_id = config.router_id;
                    current.cluster_id = config.cluster_id;
                }
                if current.listen != config.listen {
                    // Sessions already up stay up; peers connect at the new address from now on.
                    match running.set_listen(config.listen).await {
                        Ok(bound) => {
                            tracing::info!(was = ?current.listen, listen = ?bound, "the BGP listener moved");
                            current.listen = config.listen;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, now = ?current.listen, wanted = ?config.listen, "cannot move the BGP listener; the old one is kept (tried again on the next change)");
                        }
                    }
                }
                let ops = plan_peers(&peers, &next.confd.peers);
                for peer in &ops.remove {
                    if let Err(e) = running.remove_peer(peer.settings.address).await {
                        tracing::warn!(error = %e, peer = %peer.name, "cannot remove a BGP peer");
                    }
                }
                for peer in &ops.add_or_change {
                    if let Err(e) = running.set_peer(peer.settings.clone()).await {
                        tracing::warn!(error = %e, peer = %peer.name, "cannot configure a BGP peer");
                    }
                }
                peers = next.confd.peers.clone();
                let ops = plan_originations(&originated, &next.confd.originations);
                for prefix in &ops.withdraw {
                    let _ = running.withdraw(*prefix).await;
                }
                for origination in &ops.originate {
                    let communities = Communities {
                        standard: origination.communities.clone(),
                        large: origination.large_communities.clone(),
                    };
                    if let Err(e) = running.originate(origination.prefix, None, communities).await {
                        tracing::warn!(error = %e, prefix = %origination.prefix, "cannot originate a prefix");
                    }
                }
                originated = next.confd.originations.clone();
                if restarting {
                    // Everything the datastore says we originate is in: peers may have our routes.
                    let _ = running.initial_routes_done().await;
                }
                // Readiness and `calicoctl node status` see the new peers at once, not a second later.
                tick.reset_immediately();
                for problem in &next.confd.problems {
                    tracing::warn!(resource = %problem.resource, field = %problem.field, message = %problem.message, "BGP configuration problem");
                }
                // Pools may have changed what the kernel gets.
                let pools_changed = plan.as_ref().map(|p| &p.felix_pools) != Some(&next.felix_pools);
                plan = Some(next);
                if pools_changed {
                    offer(&dataplane, kernel_view(&learned, plan.as_deref()));
                }
            }
            batch = next_batch(&mut routes) => {
                let Some(batch) = batch else {
                    routes = None;
                    continue;
                };
                for change in batch {
                    match change {
                        RouteChange::Best { prefix, next_hops } => learned.set(prefix, Some(next_hops.to_vec())),
                        RouteChange::Withdrawn { prefix } => learned.set(prefix, None),
                    }
                }
                offer(&dataplane, kernel_view(&learned, plan.as_deref()));
            }
            _ = tick.tick() => {
                let Some((running, _)) = speaker.as_ref() else { continue };
                let Ok(statuses) = running.status().await else { continue };
                let complete = !restarting
                    || started.elapsed() >= RESTART_PATIENCE
                    || statuses.iter().all(|s| s.initial_routes_received);
                if complete != learned.complete {
                    learned.complete = complete;
                    offer(&dataplane, kernel_view(&learned, plan.as_deref()));
                }
                let kinds: BTreeMap<IpAddr, PeerKind> = peers.iter().map(|p| (p.settings.address, p.kind)).collect();
                let kind_of = |address: &IpAddr| kinds.get(address).copied().unwrap_or(PeerKind::Global);
                let rows = bgp_status::peer_rows(
                    statuses.iter().map(|s| (bgp_status::peer_kind(kind_of(&s.address)), s.clone())),
                );
                let reasons = bgp_status::not_ready_reasons(
                    &rows,
                    started.elapsed() < bgp_status::READINESS_THRESHOLD,
                );
                status.set_bgp_problems(reasons);
                let established = statuses.iter().filter(|s| s.state == State::Established).count();
                status.metrics.bgp_peers_established.set(established as i64);
                status.metrics.bgp_peers_not_established.set((statuses.len() - established) as i64);
                view.send_replace(NodeBgpStatus { speaker_running: true, peers: rows });
            }
        }
    }
    if let Some((running, _)) = speaker {
        running.shutdown().await;
    }
}

async fn next_batch(routes: &mut Option<RouteStream>) -> Option<Vec<RouteChange>> {
    match routes {
        Some(stream) => stream.recv_batch().await,
        None => std::future::pending().await,
    }
}

/// The learned routes the kernel gets: those outside Felix's pools.
fn kernel_view(learned: &BgpRoutes, plan: Option<&BgpPlan>) -> BgpRoutes {
    BgpRoutes {
        routes: learned
            .routes
            .iter()
            .filter(|(prefix, _)| plan.is_none_or(|p| p.to_kernel(prefix)))
            .map(|(prefix, hops)| (*prefix, hops.clone()))
            .collect(),
        complete: learned.complete,
    }
}

fn offer(dataplane: &Handoff<DataplaneInput>, routes: BgpRoutes) {
    dataplane.update(|input| input.bgp = Some(routes));
}

#[cfg(test)]
mod tests {
    use calico_api::Resource;
    use calico_model::resource::{encode, resource_key_of};

    use super::*;

    fn put(value: serde_json::Value) -> SyncEvent {
        let resource = Resource::from_value(value).expect("a valid resource");
        SyncEvent::Put(calico_model::KeyValue {
            key: resource_key_of(&resource),
            value: encode(&resource),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        })
    }

    fn node(name: &str, address: &str) -> SyncEvent {
        put(serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": name},
            "spec": {"bgp": {"ipv4Address": address}},
        }))
    }

    fn pool(name: &str, cidr: &str, vxlan: &str) -> SyncEvent {
        put(serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "vxlanMode": vxlan},
        }))
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
    }

    #[test]
    fn only_the_resources_bgp_depends_on_change_the_model() {
        let mut model = BgpModel::default();
        assert!(model.apply(&node("a", "198.18.0.11/24")));
        assert!(
            !model.apply(&node("a", "198.18.0.11/24")),
            "the same value again"
        );
        assert!(model.apply(&pool("p", "198.19.0.0/16", "Never")));
        let endpoint = put(serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": "a-k8s-pod-eth0", "namespace": "default"},
            "spec": {"node": "a", "ipNetworks": ["198.19.0.1/32"]},
        }));
        assert!(!model.apply(&endpoint));
        let key = resource_key_of(
            &Resource::from_value(serde_json::json!({
                "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                "metadata": {"name": "p"}, "spec": {"cidr": "198.19.0.0/16"},
            }))
            .expect("pool"),
        );
        assert!(model.apply(&SyncEvent::Delete { key, revision: 2 }));
    }

    #[test]
    fn the_plan_meshes_other_nodes_and_originates_this_nodes_blocks() {
        let mut model = BgpModel::default();
        for event in [
            node("a", "198.18.0.11/24"),
            node("b", "198.18.0.12/24"),
            pool("plain", "198.19.0.0/17", "Never"),
            pool("tunnelled", "198.19.128.0/17", "Always"),
        ] {
            model.apply(&event);
        }
        let blocks = [
            BlockInfo {
                cidr: net("198.19.0.0/26"),
                affinity: Some("a".into()),
                borrowed: vec![],
            },
            BlockInfo {
                cidr: net("198.19.0.64/26"),
                affinity: Some("b".into()),
                borrowed: vec![("198.19.0.70".parse().expect("ip"), "a".into())],
            },
        ];
        let plan = model.plan("a", None, Path::new("/nonexistent"), &blocks);
        let peers: Vec<IpAddr> = plan
            .confd
            .peers
            .iter()
            .map(|p| p.settings.address)
            .collect();
        assert_eq!(peers, vec!["198.18.0.12".parse::<IpAddr>().expect("ip")]);
        let originated: Vec<IpNet> = plan.confd.originations.iter().map(|o| o.prefix).collect();
        assert_eq!(
            originated,
            vec![net("198.19.0.0/26"), net("198.19.0.70/32")]
        );
        assert_eq!(plan.felix_pools, vec![net("198.19.128.0/17")]);
    }

    #[test]
    fn learned_routes_inside_felix_pools_stay_out_of_the_kernel() {
        let mut learned = BgpRoutes::default();
        let hop: IpAddr = "198.18.0.12".parse().expect("ip");
        learned.set(net("198.19.0.64/26"), Some(vec![hop]));
        learned.set(net("198.19.128.64/26"), Some(vec![hop]));
        learned.complete = true;
        let plan = BgpPlan {
            felix_pools: vec![net("198.19.128.0/17")],
            ..BgpModel::default().plan("a", None, Path::new("/nonexistent"), &[])
        };
        let kernel = kernel_view(&learned, Some(&plan));
        assert_eq!(
            kernel.routes.keys().copied().collect::<Vec<_>>(),
            vec![net("198.19.0.64/26")]
        );
        assert!(kernel.complete);
        assert_eq!(
            kernel_view(&learned, None).routes.len(),
            2,
            "no plan yet: nothing filtered"
        );
    }
}
