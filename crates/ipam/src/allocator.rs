//! Allocation and release over the [`Store`].
//!
//! Correctness rests on compare-and-swap alone, never on a lock: every change to a block is written with
//! the block's revision as a precondition, together with its handle (and, when a block is claimed, its
//! affinity) in one atomic batch. A writer that loses a race re-reads and tries again (bounded), so no
//! address is ever handed out twice and no crash can leave a block and its handle disagreeing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use calico_api::spec::ippool::AllowedUse;
use calico_api::{Kind, Spec};
use calico_datastore::client::{Client, ClientError};
use calico_datastore::{KeyValue, Revision, Store, StoreError, WriteOp};
use calico_model::ipam::addr::{containing, host_net, with_prefix};
use calico_model::ipam::block::{
    ATTR_NODE, ATTR_TIMESTAMP, AllocationAttribute, Block, BlockError,
};
use calico_model::ipam::model::{
    Affinity, AffinityState, BLOCK_PREFIX, CONFIG_KEY, DEFAULT_MAX_BLOCKS_PER_HOST, HANDLE_PREFIX,
    HOST_PREFIX, Handle, IpamConfig, affinity_key, block_key, encode_json, handle_key,
    host_affinities_prefix, parse_affinity_key, parse_block_key,
};
use ipnet::IpNet;
use rand::Rng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::IpamError;
use crate::order::candidate_blocks;
use crate::pools::{Pool, parse_reserved, pool_of, select_pools};

/// How often a writer that lost a compare-and-swap race re-reads and tries again.
pub const MAX_CAS_ATTEMPTS: usize = 100;

/// One request for addresses (Calico's AutoAssign).
#[derive(Clone, Debug)]
pub struct AssignRequest {
    pub num_v4: usize,
    pub num_v6: usize,
    /// Who holds the addresses, e.g. `k8s-pod-network.<containerID>`.
    pub handle: String,
    /// Recorded with every address (pod, namespace, node, timestamp, type...).
    pub attrs: BTreeMap<String, String>,
    pub host: String,
    /// Pool names or CIDRs to draw from; empty = every pool that suits the node.
    pub v4_pools: Vec<String>,
    pub v6_pools: Vec<String>,
    pub intended_use: AllowedUse,
    /// The request's own cap on blocks per host (the configuration's, if lower, wins).
    pub max_blocks_per_host: Option<u32>,
    /// If the handle already holds addresses (a repeated request for the same container), return those
    /// instead of assigning more.
    pub reuse_existing: bool,
}

impl AssignRequest {
    pub fn workload(num_v4: usize, handle: &str, host: &str) -> AssignRequest {
        AssignRequest {
            num_v4,
            num_v6: 0,
            handle: handle.to_string(),
            attrs: BTreeMap::from([(ATTR_NODE.to_string(), host.to_string())]),
            host: host.to_string(),
            v4_pools: Vec::new(),
            v6_pools: Vec::new(),
            intended_use: AllowedUse::Workload,
            max_blocks_per_host: None,
            reuse_existing: false,
        }
    }
}

/// Addresses handed out, each with its block's prefix length (e.g. `198.18.0.5/26`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assigned {
    pub v4: Vec<IpNet>,
    pub v6: Vec<IpNet>,
}

/// What IPAM reads before it decides: pools, reservations, configuration and the node's labels.
struct Context {
    config: IpamConfig,
    pools: Vec<Pool>,
    reserved: Vec<IpNet>,
}

impl Context {
    fn is_reserved(&self, ip: IpAddr) -> bool {
        self.reserved.iter().any(|r| r.contains(&ip))
    }

    fn wholly_reserved(&self, block: IpNet) -> bool {
        self.reserved.iter().any(|r| r.contains(&block))
    }
}

/// A block as read, with the revision its next write must match.
#[derive(Clone, Debug)]
pub struct StoredBlock {
    pub block: Block,
    pub revision: Revision,
}

/// A host's claim on a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAffinity {
    pub host: String,
    pub cidr: IpNet,
    pub affinity: Affinity,
    pub revision: Revision,
}

/// IPAM over one datastore. Cheap to clone.
#[derive(Clone)]
pub struct Ipam {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) client: Client,
}

/// The current time as Calico stamps it. Formatting fails only for years beyond 9999; even then the
/// caller gets the error rather than an empty stamp in the stored data.
fn now_rfc3339() -> Result<String, IpamError> {
    Ok(OffsetDateTime::now_utc().format(&Rfc3339)?)
}

pub(crate) fn store_err(e: StoreError) -> IpamError {
    IpamError::Store(e)
}

pub(crate) fn client_err(e: ClientError) -> IpamError {
    match e {
        ClientError::Store(s) => IpamError::Store(s),
        other => IpamError::Datastore(other.to_string()),
    }
}

/// A short random pause before retrying a lost race, growing with the attempt, so racers spread out.
async fn backoff(attempt: usize) {
    let cap_us = 200 * (attempt.min(20) as u64 + 1);
    let pause = rand::rng().random_range(0..cap_us);
    tokio::time::sleep(Duration::from_micros(pause)).await;
}

/// What one write attempt came to.
enum Outcome<T> {
    Done(T),
    /// Someone else wrote first: read again.
    Retry,
}

pub(crate) fn is_race(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Conflict { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. }
    )
}

impl Ipam {
    pub fn new(store: Arc<dyn Store>) -> Ipam {
        let client = Client::new(store.clone());
        Ipam { store, client }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// IPAM's configuration; defaults when none is stored.
    pub async fn config(&self) -> Result<IpamConfig, IpamError> {
        match self.store.get(CONFIG_KEY).await.map_err(store_err)? {
            None => Ok(IpamConfig::default()),
            Some(kv) => serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
                key: CONFIG_KEY.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Change the strict-affinity and max-blocks settings (`calicoctl ipam configure`), keeping the rest.
    pub async fn configure(
        &self,
        strict_affinity: Option<bool>,
        max_blocks_per_host: Option<u32>,
    ) -> Result<IpamConfig, IpamError> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let current = self.store.get(CONFIG_KEY).await.map_err(store_err)?;
            let mut value: serde_json::Map<String, serde_json::Value> = match &current {
                Some(kv) => serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
                    key: CONFIG_KEY.to_string(),
                    reason: e.to_string(),
                })?,
                None => serde_json::Map::new(),
            };
            if let Some(s) = strict_affinity {
                value.insert("strict_affinity".into(), s.into());
            }
            if let Some(m) = max_blocks_per_host {
                value.insert("maxBlocksPerHost".into(), m.into());
            }
            value
                .entry("auto_allocate_blocks")
                .or_insert(serde_json::Value::Bool(true));
            let bytes = encode_json("IPAM configuration", &value).map_err(IpamError::from)?;
            let written = match &current {
                Some(kv) => self.store.update(CONFIG_KEY, bytes, kv.mod_revision).await,
                None => self.store.create(CONFIG_KEY, bytes).await,
            };
            match written {
                Ok(_) => return self.config().await,
                Err(e) if is_race(&e) => backoff(attempt).await,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(IpamError::TooManyRetries("configure IPAM".into()))
    }

    /// Every pool as IPAM sees it.
    pub async fn pools(&self) -> Result<Vec<Pool>, IpamError> {
        let (pools, _) = self
            .client
            .list(Kind::IPPool, None)
            .await
            .map_err(client_err)?;
        Ok(pools.iter().filter_map(Pool::from_resource).collect())
    }

    /// Configuration, pools and reservations, read concurrently (three independent round trips on etcd).
    async fn context(&self) -> Result<Context, IpamError> {
        let (config, pools, reservations) = tokio::join!(
            self.config(),
            self.pools(),
            self.client.list(Kind::IPReservation, None)
        );
        let (config, pools) = (config?, pools?);
        let (reservations, _) = reservations.map_err(client_err)?;
        let reserved = reservations
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::IPReservation(s) => Some(s.reserved_cidrs.clone()),
                _ => None,
            })
            .flatten()
            .filter_map(|c| parse_reserved(&c))
            .collect();
        Ok(Context {
            config,
            pools,
            reserved,
        })
    }

    /// The node's labels, for pools' node selectors (none if the Node is not registered).
    async fn node_labels(&self, host: &str) -> Result<BTreeMap<String, String>, IpamError> {
        match self.client.get(Kind::Node, None, host).await {
            Ok(node) => Ok(node.metadata.labels.clone().unwrap_or_default()),
            Err(ClientError::NotFound { .. }) => Ok(BTreeMap::new()),
            Err(e) => Err(client_err(e)),
        }
    }

    pub async fn get_block(&self, cidr: IpNet) -> Result<Option<StoredBlock>, IpamError> {
        let key = block_key(cidr);
        match self.store.get(&key).await.map_err(store_err)? {
            None => Ok(None),
            Some(kv) => decode_block(&kv).map(|b| (!b.block.deleted).then_some(b)),
        }
    }

    /// Every block (both families).
    pub async fn blocks(&self) -> Result<Vec<StoredBlock>, IpamError> {
        let listed = self
            .store
            .list(BLOCK_PREFIX, None)
            .await
            .map_err(store_err)?;
        let mut out = Vec::with_capacity(listed.kvs.len());
        for kv in &listed.kvs {
            if parse_block_key(&kv.key).is_none() {
                continue;
            }
            let b = decode_block(kv)?;
            if !b.block.deleted {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Every affinity, of every host, or of one host.
    pub async fn affinities(&self, host: Option<&str>) -> Result<Vec<StoredAffinity>, IpamError> {
        let prefix = host.map_or_else(|| HOST_PREFIX.to_string(), host_affinities_prefix);
        let listed = self.store.list(&prefix, None).await.map_err(store_err)?;
        let mut out = Vec::new();
        for kv in &listed.kvs {
            let Some((host, cidr)) = parse_affinity_key(&kv.key) else {
                continue;
            };
            let affinity: Affinity =
                serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
                    key: kv.key.clone(),
                    reason: e.to_string(),
                })?;
            if affinity.deleted {
                continue;
            }
            out.push(StoredAffinity {
                host,
                cidr,
                affinity,
                revision: kv.mod_revision,
            });
        }
        Ok(out)
    }

    /// Every handle with its per-block counts.
    pub async fn handles(&self) -> Result<Vec<Handle>, IpamError> {
        let listed = self
            .store
            .list(HANDLE_PREFIX, None)
            .await
            .map_err(store_err)?;
        let mut out = Vec::new();
        for kv in &listed.kvs {
            let mut h: Handle =
                serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
                    key: kv.key.clone(),
                    reason: e.to_string(),
                })?;
            if let Some(id) = kv.key.strip_prefix(HANDLE_PREFIX) {
                h.handle_id = id.to_string();
            }
            if !h.deleted {
                out.push(h);
            }
        }
        Ok(out)
    }

    async fn get_handle(&self, handle: &str) -> Result<Option<(Handle, Revision)>, IpamError> {
        let key = handle_key(handle);
        match self.store.get(&key).await.map_err(store_err)? {
            None => Ok(None),
            Some(kv) => {
                let h: Handle =
                    serde_json::from_slice(&kv.value).map_err(|e| IpamError::Corrupt {
                        key: key.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(Some((h, kv.mod_revision)))
            }
        }
    }

    /// The write that records `count` more addresses of `handle` in `cidr`.
    async fn handle_increment(
        &self,
        handle: &str,
        cidr: IpNet,
        count: u64,
    ) -> Result<WriteOp, IpamError> {
        handle_increment_op(handle, self.get_handle(handle).await?, cidr, count)
    }

    /// The writes that take released counts off handles (deleting a handle that reaches zero).
    async fn handle_decrements(
        &self,
        cidr: IpNet,
        released: &BTreeMap<String, u64>,
    ) -> Result<Vec<WriteOp>, IpamError> {
        let mut ops = Vec::new();
        for (handle, count) in released {
            let Some((mut h, rev)) = self.get_handle(handle).await? else {
                continue;
            };
            let key = handle_key(handle);
            let entry = h.block.entry(cidr.to_string()).or_default();
            *entry = entry.saturating_sub(*count);
            if *entry == 0 {
                h.block.remove(&cidr.to_string());
            }
            ops.push(if h.block.is_empty() {
                WriteOp::Delete {
                    key,
                    expected_mod_revision: Some(rev),
                }
            } else {
                WriteOp::Update {
                    key,
                    value: h.encode()?,
                    expected_mod_revision: rev,
                }
            });
        }
        Ok(ops)
    }

    /// Hand out addresses (Calico's AutoAssign): the host's own blocks first, then a newly claimed block,
    /// then (unless strict affinity) free addresses in other hosts' blocks. All or nothing: a request that
    /// cannot be met in full releases what it took and fails.
    pub async fn auto_assign(&self, req: &AssignRequest) -> Result<Assigned, IpamError> {
        let existing = async {
            if req.reuse_existing {
                self.get_handle(&req.handle).await
            } else {
                Ok(None)
            }
        };
        let (ctx, affinities, existing) =
            tokio::join!(self.context(), self.affinities(Some(&req.host)), existing);
        let ctx = ctx?;
        if existing?.is_some_and(|(h, _)| h.total() > 0) {
            return Ok(with_block_prefixes(
                &ctx.pools,
                self.ips_by_handle(&req.handle).await?,
            ));
        }
        let mut prefetched = Some(affinities?);
        let needs_labels = ctx
            .pools
            .iter()
            .any(|p| p.node_selector.as_ref().is_ok_and(|s| !s.is_all()));
        let labels = if needs_labels {
            self.node_labels(&req.host).await?
        } else {
            BTreeMap::new()
        };
        let mut out = Assigned::default();
        for (v4, num, requested) in [
            (true, req.num_v4, &req.v4_pools),
            (false, req.num_v6, &req.v6_pools),
        ] {
            if num == 0 {
                continue;
            }
            let result = async {
                let pools = select_pools(&ctx.pools, requested, &labels, req.intended_use, v4)?;
                if pools.is_empty() {
                    return Err(IpamError::NoPools {
                        host: req.host.clone(),
                        family: if v4 { "IPv4" } else { "IPv6" },
                    });
                }
                self.assign_from_pools(&ctx, req, &pools, num, v4, prefetched.take())
                    .await
            }
            .await;
            match result {
                Ok(ips) if v4 => out.v4 = ips,
                Ok(ips) => out.v6 = ips,
                Err(e) => {
                    let taken: Vec<IpAddr> = out.v4.iter().map(IpNet::addr).collect();
                    if !taken.is_empty() {
                        self.release_ips(&taken).await?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// What a handle already holds, each address with its pool's block prefix.
    /// What a handle already holds, each address with its pool's block prefix (as an assignment returns
    /// them).
    pub async fn held_by_handle(&self, handle: &str) -> Result<Assigned, IpamError> {
        let (pools, ips) = tokio::join!(self.pools(), self.ips_by_handle(handle));
        Ok(with_block_prefixes(&pools?, ips?))
    }

    async fn assign_from_pools(
        &self,
        ctx: &Context,
        req: &AssignRequest,
        pools: &[Pool],
        num: usize,
        v4: bool,
        affinities: Option<Vec<StoredAffinity>>,
    ) -> Result<Vec<IpNet>, IpamError> {
        let mut got: Vec<IpNet> = Vec::new();
        let result = self
            .assign_loop(ctx, req, pools, num, v4, affinities, &mut got)
            .await;
        match result {
            Ok(()) if got.len() == num => Ok(got),
            Ok(()) | Err(IpamError::Exhausted { .. }) => {
                let assigned = got.len();
                if !got.is_empty() {
                    let ips: Vec<IpAddr> = got.iter().map(IpNet::addr).collect();
                    self.release_ips(&ips).await?;
                }
                Err(IpamError::Exhausted {
                    requested: num,
                    assigned,
                    family: if v4 { "IPv4" } else { "IPv6" },
                })
            }
            Err(e) => {
                if !got.is_empty() {
                    let ips: Vec<IpAddr> = got.iter().map(IpNet::addr).collect();
                    // Best effort: the original error is the one to report.
                    let _ = self.release_ips(&ips).await;
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn assign_loop(
        &self,
        ctx: &Context,
        req: &AssignRequest,
        pools: &[Pool],
        num: usize,
        v4: bool,
        mut prefetched: Option<Vec<StoredAffinity>>,
        got: &mut Vec<IpNet>,
    ) -> Result<(), IpamError> {
        let mut attr = AllocationAttribute {
            handle_id: Some(req.handle.clone()),
            secondary: req.attrs.clone(),
            released_at: None,
        };
        attr.secondary
            .entry(ATTR_TIMESTAMP.to_string())
            .or_insert(now_rfc3339()?);
        let max_blocks = {
            let configured = match ctx.config.max_blocks_per_host {
                0 => DEFAULT_MAX_BLOCKS_PER_HOST,
                n => n,
            };
            req.max_blocks_per_host
                .map_or(configured, |r| r.min(configured))
        };
        let in_pools = |cidr: &IpNet| pools.iter().any(|p| p.cidr.contains(cidr));
        let mut attempts = 0;
        'outer: while got.len() < num {
            attempts += 1;
            if attempts > MAX_CAS_ATTEMPTS {
                return Err(IpamError::TooManyRetries(format!(
                    "assign addresses for {}",
                    req.handle
                )));
            }
            if attempts > 1 {
                backoff(attempts).await;
            }
            // 1. Blocks this host owns.
            let listed = match prefetched.take() {
                Some(affs) => affs,
                None => self.affinities(Some(&req.host)).await?,
            };
            let affine: Vec<StoredAffinity> = listed
                .into_iter()
                .filter(|a| {
                    a.affinity.state == AffinityState::Confirmed
                        && a.cidr.addr().is_ipv4() == v4
                        && in_pools(&a.cidr)
                })
                .collect();
            // All the host's blocks in one round of concurrent reads, then the first with room is used.
            let (blocks, handle) = tokio::join!(
                futures::future::try_join_all(affine.iter().map(|a| self.get_block(a.cidr))),
                self.get_handle(&req.handle)
            );
            // The handle as read serves the first write only; later ones read it again.
            let mut handle = Some(handle?);
            for (aff, block) in affine.iter().zip(blocks?) {
                let want = num - got.len();
                let current = match handle.take() {
                    Some(h) => h,
                    None => self.get_handle(&req.handle).await?,
                };
                match self
                    .allocate_in_block(ctx, aff, block, current, req, &attr, want)
                    .await?
                {
                    Outcome::Retry => continue 'outer,
                    Outcome::Done(ips) => got.extend(ips),
                }
                if got.len() == num {
                    return Ok(());
                }
            }
            // 2. A new block for this host.
            if ctx.config.auto_allocate_blocks && (affine.len() as u64) < u64::from(max_blocks) {
                match self
                    .claim_new_block(ctx, req, &attr, pools, num - got.len())
                    .await?
                {
                    Outcome::Retry => continue 'outer,
                    Outcome::Done(Some(ips)) => {
                        got.extend(ips);
                        continue 'outer;
                    }
                    Outcome::Done(None) => {}
                }
            }
            // 3. Borrow from other hosts' blocks.
            if !ctx.config.strict_affinity {
                match self.borrow(ctx, req, &attr, pools, num - got.len()).await? {
                    Outcome::Retry => continue 'outer,
                    Outcome::Done(ips) => got.extend(ips),
                }
            }
            break;
        }
        Ok(())
    }

    /// Allocate from one affine block; repairs an affinity whose block is missing by creating it.
    #[allow(clippy::too_many_arguments)]
    async fn allocate_in_block(
        &self,
        ctx: &Context,
        aff: &StoredAffinity,
        existing: Option<StoredBlock>,
        handle: Option<(Handle, Revision)>,
        req: &AssignRequest,
        attr: &AllocationAttribute,
        want: usize,
    ) -> Result<Outcome<Vec<IpNet>>, IpamError> {
        let (mut block, revision) = match existing {
            Some(sb) => {
                if sb.block.host() != Some(req.host.as_str()) {
                    // The affinity is stale: the block went to someone else. Leave it to release/check.
                    return Ok(Outcome::Done(Vec::new()));
                }
                (sb.block, Some(sb.revision))
            }
            None => (
                Block::new(
                    aff.cidr,
                    Some(format!("host:{}", req.host)),
                    Some(now_rfc3339()?),
                ),
                None,
            ),
        };
        let cooled = expire_cooldowns(&mut block, ctx.config.ip_cooldown_seconds);
        let ips = block.allocate(want, attr, &|ip| ctx.is_reserved(ip));
        if ips.is_empty() {
            if cooled > 0
                && let Some(rev) = revision
            {
                // Worth writing the returned addresses back even though none was taken.
                let _ = self
                    .store
                    .update(&block_key(aff.cidr), block.encode()?, rev)
                    .await;
            }
            return Ok(Outcome::Done(Vec::new()));
        }
        let mut ops = vec![match revision {
            Some(rev) => WriteOp::Update {
                key: block_key(aff.cidr),
                value: block.encode()?,
                expected_mod_revision: rev,
            },
            None => WriteOp::Create {
                key: block_key(aff.cidr),
                value: block.encode()?,
            },
        }];
        ops.push(handle_increment_op(
            &req.handle,
            handle,
            aff.cidr,
            ips.len() as u64,
        )?);
        match self.store.batch(ops).await {
            Ok(_) => Ok(Outcome::Done(
                ips.into_iter()
                    .map(|ip| with_prefix(ip, aff.cidr.prefix_len()))
                    .collect(),
            )),
            Err(e) if is_race(&e) => Ok(Outcome::Retry),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Claim the first free block (in the host's seeded order) of the first pool that has one, and take
    /// addresses from it, all in one atomic write: affinity, block and handle.
    async fn claim_new_block(
        &self,
        ctx: &Context,
        req: &AssignRequest,
        attr: &AllocationAttribute,
        pools: &[Pool],
        want: usize,
    ) -> Result<Outcome<Option<Vec<IpNet>>>, IpamError> {
        let existing: BTreeSet<IpNet> = self
            .store
            .list(BLOCK_PREFIX, None)
            .await
            .map_err(store_err)?
            .kvs
            .iter()
            .filter_map(|kv| parse_block_key(&kv.key))
            .collect();
        for pool in pools {
            let free = candidate_blocks(pool.cidr, pool.block_prefix, &req.host)
                .find(|c| !existing.contains(c) && !ctx.wholly_reserved(*c));
            let Some(cidr) = free else { continue };
            let mut block = Block::new(
                cidr,
                Some(format!("host:{}", req.host)),
                Some(now_rfc3339()?),
            );
            let ips = block.allocate(want, attr, &|ip| ctx.is_reserved(ip));
            let mut ops = vec![
                WriteOp::Create {
                    key: affinity_key(&req.host, cidr),
                    value: Affinity::confirmed().encode()?,
                },
                WriteOp::Create {
                    key: block_key(cidr),
                    value: block.encode()?,
                },
            ];
            if !ips.is_empty() {
                ops.push(
                    self.handle_increment(&req.handle, cidr, ips.len() as u64)
                        .await?,
                );
            }
            return match self.store.batch(ops).await {
                Ok(_) => {
                    tracing::info!(host = %req.host, block = %cidr, "claimed block");
                    Ok(Outcome::Done(Some(
                        ips.into_iter()
                            .map(|ip| with_prefix(ip, cidr.prefix_len()))
                            .collect(),
                    )))
                }
                Err(e) if is_race(&e) => Ok(Outcome::Retry),
                Err(e) => Err(store_err(e)),
            };
        }
        Ok(Outcome::Done(None))
    }

    /// Take free addresses from blocks other hosts own; the block keeps its owner.
    async fn borrow(
        &self,
        ctx: &Context,
        req: &AssignRequest,
        attr: &AllocationAttribute,
        pools: &[Pool],
        want: usize,
    ) -> Result<Outcome<Vec<IpNet>>, IpamError> {
        let blocks = self.blocks().await?;
        let mut got = Vec::new();
        for pool in pools {
            let mut in_pool: Vec<&StoredBlock> = blocks
                .iter()
                .filter(|b| pool.cidr.contains(&b.block.cidr))
                .collect();
            // Host-seeded order, as for claims, so hosts spread over the blocks they borrow from.
            let order: BTreeMap<IpNet, usize> =
                candidate_blocks(pool.cidr, pool.block_prefix, &req.host)
                    .take(in_pool.len().max(1) * 64)
                    .enumerate()
                    .map(|(i, c)| (c, i))
                    .collect();
            in_pool.sort_by_key(|b| order.get(&b.block.cidr).copied().unwrap_or(usize::MAX));
            for sb in in_pool {
                let mut block = sb.block.clone();
                expire_cooldowns(&mut block, ctx.config.ip_cooldown_seconds);
                let ips = block.allocate(want - got.len(), attr, &|ip| ctx.is_reserved(ip));
                if ips.is_empty() {
                    continue;
                }
                let ops = vec![
                    WriteOp::Update {
                        key: block_key(block.cidr),
                        value: block.encode()?,
                        expected_mod_revision: sb.revision,
                    },
                    self.handle_increment(&req.handle, block.cidr, ips.len() as u64)
                        .await?,
                ];
                match self.store.batch(ops).await {
                    Ok(_) => got.extend(
                        ips.into_iter()
                            .map(|ip| with_prefix(ip, block.cidr.prefix_len())),
                    ),
                    Err(e) if is_race(&e) => {
                        return if got.is_empty() {
                            Ok(Outcome::Retry)
                        } else {
                            Ok(Outcome::Done(got))
                        };
                    }
                    Err(e) => return Err(store_err(e)),
                }
                if got.len() == want {
                    break;
                }
            }
            if got.len() == want {
                break;
            }
        }
        Ok(Outcome::Done(got))
    }

    /// Assign one specific address (Calico's AssignIP), claiming its block for `host` if nobody has.
    pub async fn assign_ip(
        &self,
        ip: IpAddr,
        handle: &str,
        attrs: &BTreeMap<String, String>,
        host: &str,
        intended_use: Option<AllowedUse>,
    ) -> Result<IpNet, IpamError> {
        let ctx = self.context().await?;
        let pool = pool_of(&ctx.pools, ip)
            .ok_or(IpamError::NotInPool(ip))?
            .clone();
        if let Some(use_) = intended_use
            && !pool.allowed_uses.contains(&use_)
        {
            return Err(IpamError::UseNotAllowed {
                ip,
                pool: pool.name.clone(),
            });
        }
        if ctx.is_reserved(ip) {
            return Err(IpamError::Reserved(ip));
        }
        let cidr = containing(ip, pool.block_prefix).ok_or(IpamError::NotInPool(ip))?;
        let mut attr = AllocationAttribute {
            handle_id: Some(handle.to_string()),
            secondary: attrs.clone(),
            released_at: None,
        };
        attr.secondary
            .entry(ATTR_TIMESTAMP.to_string())
            .or_insert(now_rfc3339()?);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let existing = self.get_block(cidr).await?;
            let mut ops = Vec::new();
            // The block's revision when it exists (an update), `None` when this creates it.
            let (mut block, block_revision) = match existing {
                Some(sb) => {
                    if ctx.config.strict_affinity && sb.block.host() != Some(host) {
                        return Err(IpamError::StrictAffinity {
                            ip,
                            owner: sb.block.affinity.clone().unwrap_or_default(),
                        });
                    }
                    (sb.block, Some(sb.revision))
                }
                None => {
                    ops.push(WriteOp::Create {
                        key: affinity_key(host, cidr),
                        value: Affinity::confirmed().encode()?,
                    });
                    let block =
                        Block::new(cidr, Some(format!("host:{host}")), Some(now_rfc3339()?));
                    (block, None)
                }
            };
            expire_cooldowns(&mut block, ctx.config.ip_cooldown_seconds);
            block.assign(ip, &attr).map_err(|e| match e {
                BlockError::InUse { ip } => IpamError::InUse(ip),
                BlockError::CoolingDown { ip } => IpamError::CoolingDown(ip),
                other => IpamError::Corrupt {
                    key: block_key(cidr),
                    reason: other.to_string(),
                },
            })?;
            let value = block.encode()?;
            let key = block_key(cidr);
            ops.push(match block_revision {
                Some(expected_mod_revision) => WriteOp::Update {
                    key,
                    value,
                    expected_mod_revision,
                },
                None => WriteOp::Create { key, value },
            });
            ops.push(self.handle_increment(handle, cidr, 1).await?);
            match self.store.batch(ops).await {
                Ok(_) => return Ok(with_prefix(ip, cidr.prefix_len())),
                Err(e) if is_race(&e) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(IpamError::TooManyRetries(format!("assign {ip}")))
    }

    /// Release addresses, whoever holds them. Returns those that were allocated and are now released;
    /// an address that was not allocated is not an error.
    pub async fn release_ips(&self, ips: &[IpAddr]) -> Result<Vec<IpAddr>, IpamError> {
        let (config, blocks) = tokio::join!(self.config(), self.blocks());
        let (cooldown, blocks) = (config?.ip_cooldown_seconds, blocks?);
        // Only stored blocks can hold an allocation (also those of a pool deleted since).
        let mut by_block: BTreeMap<IpNet, Vec<IpAddr>> = BTreeMap::new();
        for &ip in ips {
            if let Some(b) = blocks.iter().find(|b| b.block.cidr.contains(&ip)) {
                by_block.entry(b.block.cidr).or_default().push(ip);
            }
        }
        let mut released = Vec::new();
        for (cidr, ips) in by_block {
            released.extend(
                self.release_in_block(cidr, cooldown, &|b| {
                    ips.iter()
                        .copied()
                        .filter(|ip| b.attribute_of(*ip).is_some())
                        .collect()
                })
                .await?,
            );
        }
        Ok(released)
    }

    /// Release every address `handle` holds. Returns them (empty if the handle holds none).
    pub async fn release_by_handle(&self, handle: &str) -> Result<Vec<IpAddr>, IpamError> {
        let (config, current) = tokio::join!(self.config(), self.get_handle(handle));
        let Some((h, rev)) = current? else {
            return Ok(Vec::new());
        };
        let cooldown = config?.ip_cooldown_seconds;
        let mut released = Vec::new();
        for cidr in h.block.keys() {
            let Ok(cidr) = cidr.parse::<IpNet>() else {
                continue;
            };
            released.extend(
                self.release_in_block(cidr, cooldown, &|b| b.ips_of_handle(handle))
                    .await?,
            );
        }
        // Releasing takes the counts off the handle and deletes it at zero. A handle whose blocks hold none of
        // its addresses (written by someone else, or half of a foreign tool's write) is removed as it was read.
        if released.is_empty() {
            let _ = self.store.delete(&handle_key(handle), Some(rev)).await;
        }
        Ok(released)
    }

    pub(crate) async fn release_in_block(
        &self,
        cidr: IpNet,
        cooldown: u64,
        pick: &(dyn Fn(&Block) -> Vec<IpAddr> + Sync),
    ) -> Result<Vec<IpAddr>, IpamError> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(sb) = self.get_block(cidr).await? else {
                return Ok(Vec::new());
            };
            let mut block = sb.block;
            let ips = pick(&block);
            if ips.is_empty() {
                return Ok(Vec::new());
            }
            let stamp = (cooldown > 0).then(now_rfc3339).transpose()?;
            let counts = block.release(&ips, stamp.as_deref());
            expire_cooldowns(&mut block, cooldown);
            let mut ops = vec![WriteOp::Update {
                key: block_key(cidr),
                value: block.encode()?,
                expected_mod_revision: sb.revision,
            }];
            ops.extend(self.handle_decrements(cidr, &counts).await?);
            match self.store.batch(ops).await {
                Ok(_) => return Ok(ips),
                Err(e) if is_race(&e) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(IpamError::TooManyRetries(format!(
            "release in block {cidr}"
        )))
    }

    /// Addresses a handle holds, from the blocks its counts point at.
    pub async fn ips_by_handle(&self, handle: &str) -> Result<Vec<IpAddr>, IpamError> {
        let Some((h, _)) = self.get_handle(handle).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for cidr in h.block.keys() {
            if let Ok(cidr) = cidr.parse::<IpNet>()
                && let Some(sb) = self.get_block(cidr).await?
            {
                out.extend(sb.block.ips_of_handle(handle));
            }
        }
        Ok(out)
    }

    /// Who holds `ip`, if anyone: the block and the allocation's attribute.
    pub async fn assignment_of(
        &self,
        ip: IpAddr,
    ) -> Result<Option<(Block, AllocationAttribute)>, IpamError> {
        for sb in self.blocks().await? {
            if sb.block.cidr.contains(&ip) {
                let attr = sb.block.attribute_of(ip).cloned();
                return Ok(attr
                    .filter(|a| a.released_at.is_none())
                    .map(|a| (sb.block, a)));
            }
        }
        Ok(None)
    }

    /// Give up `host`'s claim on a block: an empty block is deleted, a non-empty one keeps its addresses and
    /// loses its owner. With `only_if_empty`, a block with addresses is left alone. Returns whether the
    /// affinity was released.
    pub async fn release_affinity(
        &self,
        host: &str,
        cidr: IpNet,
        only_if_empty: bool,
    ) -> Result<bool, IpamError> {
        let cooldown = self.config().await?.ip_cooldown_seconds;
        for attempt in 0..MAX_CAS_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let aff_key = affinity_key(host, cidr);
            let Some(aff_kv) = self.store.get(&aff_key).await.map_err(store_err)? else {
                return Ok(false);
            };
            let mut ops = Vec::new();
            if let Some(sb) = self.get_block(cidr).await? {
                let mut block = sb.block;
                expire_cooldowns(&mut block, cooldown);
                if block.host() == Some(host) {
                    if block.is_empty() {
                        ops.push(WriteOp::Delete {
                            key: block_key(cidr),
                            expected_mod_revision: Some(sb.revision),
                        });
                    } else if only_if_empty {
                        return Ok(false);
                    } else {
                        block.affinity = None;
                        block.affinity_claim_time = None;
                        ops.push(WriteOp::Update {
                            key: block_key(cidr),
                            value: block.encode()?,
                            expected_mod_revision: sb.revision,
                        });
                    }
                }
            }
            ops.push(WriteOp::Delete {
                key: aff_key,
                expected_mod_revision: Some(aff_kv.mod_revision),
            });
            match self.store.batch(ops).await {
                Ok(_) => {
                    tracing::info!(%host, block = %cidr, "released block affinity");
                    return Ok(true);
                }
                Err(e) if is_race(&e) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(IpamError::TooManyRetries(format!(
            "release affinity of {host} for {cidr}"
        )))
    }

    /// Release the affinities of every empty block `host` owns (so other hosts can claim them). Returns the
    /// blocks released.
    pub async fn release_empty_affinities(&self, host: &str) -> Result<Vec<IpNet>, IpamError> {
        let mut released = Vec::new();
        for aff in self.affinities(Some(host)).await? {
            if self.release_affinity(host, aff.cidr, true).await? {
                released.push(aff.cidr);
            }
        }
        Ok(released)
    }

    /// Release every affinity of `host` (a node leaving the cluster); blocks with addresses keep them.
    pub async fn release_host_affinities(&self, host: &str) -> Result<Vec<IpNet>, IpamError> {
        let mut released = Vec::new();
        for aff in self.affinities(Some(host)).await? {
            if self.release_affinity(host, aff.cidr, false).await? {
                released.push(aff.cidr);
            }
        }
        Ok(released)
    }
}

/// Addresses with the block prefix of the pool they are in (a host prefix outside every pool).
fn with_block_prefixes(pools: &[Pool], ips: Vec<IpAddr>) -> Assigned {
    let mut out = Assigned::default();
    for ip in ips {
        let len =
            pool_of(pools, ip).map_or(if ip.is_ipv4() { 32 } else { 128 }, |p| p.block_prefix);
        let net = with_prefix(ip, len);
        if ip.is_ipv4() {
            out.v4.push(net);
        } else {
            out.v6.push(net);
        }
    }
    out
}

/// The write that records `count` more addresses of `handle` in `cidr`, given the handle as last read.
fn handle_increment_op(
    handle: &str,
    current: Option<(Handle, Revision)>,
    cidr: IpNet,
    count: u64,
) -> Result<WriteOp, IpamError> {
    let key = handle_key(handle);
    Ok(match current {
        Some((mut h, rev)) => {
            *h.block.entry(cidr.to_string()).or_default() += count;
            h.deleted = false;
            WriteOp::Update {
                key,
                value: h.encode()?,
                expected_mod_revision: rev,
            }
        }
        None => {
            let h = Handle {
                handle_id: handle.to_string(),
                block: BTreeMap::from([(cidr.to_string(), count)]),
                deleted: false,
            };
            WriteOp::Create {
                key,
                value: h.encode()?,
            }
        }
    })
}

/// Return addresses whose cooldown has passed to the free list.
fn expire_cooldowns(block: &mut Block, cooldown_seconds: u64) -> usize {
    let cutoff = OffsetDateTime::now_utc() - time::Duration::seconds(cooldown_seconds as i64);
    block.expire_cooldowns(&|at| OffsetDateTime::parse(at, &Rfc3339).map_or(true, |t| t <= cutoff))
}

fn decode_block(kv: &KeyValue) -> Result<StoredBlock, IpamError> {
    let block = Block::from_json(&kv.value).map_err(|reason| IpamError::Corrupt {
        key: kv.key.clone(),
        reason,
    })?;
    Ok(StoredBlock {
        block,
        revision: kv.mod_revision,
    })
}

/// The host prefix form (/32, /128) of an assigned address.
pub fn narrow(net: IpNet) -> IpNet {
    host_net(net.addr())
}
