//! The typed resource client: every write is defaulted and validated, metadata is managed as Kubernetes
//! does (`uid`, `creationTimestamp`, `resourceVersion` = the key's mod revision), and updates are
//! compare-and-swap so concurrent writers never lose each other's changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use calico_api::parallel::par_map;
use calico_api::{FieldErrors, Kind, Resource, Spec};
use calico_model::keys::{self, IPAM_CONFIG_KEY};
use calico_model::resource::{
    CodecError, decode_kv, display_name, encode_resource, resource_key_of,
};
use futures::StreamExt;

use crate::{Revision, Store, StoreError, WriteOp};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}", invalid_message(kind, name, errors))]
    Invalid {
        kind: Kind,
        name: String,
        errors: FieldErrors,
    },
    #[error("resource already exists: {kind}({name})")]
    AlreadyExists { kind: Kind, name: String },
    #[error("resource does not exist: {kind}({name})")]
    NotFound { kind: Kind, name: String },
    #[error(
        "update conflict: {kind}({name}) was modified by someone else (resourceVersion {expected} is stale)"
    )]
    Conflict {
        kind: Kind,
        name: String,
        expected: String,
    },
    #[error("{kind}({name}) cannot be encoded for storage: {message}")]
    Encode {
        kind: Kind,
        name: String,
        message: String,
    },
    #[error("stored object at {key} cannot be read: {message}")]
    Decode { key: String, message: String },
    #[error(transparent)]
    Store(StoreError),
}

impl From<CodecError> for ClientError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Encode {
                kind,
                name,
                message,
            } => ClientError::Encode {
                kind,
                name,
                message,
            },
            CodecError::Decode { key, message } => ClientError::Decode { key, message },
        }
    }
}

fn invalid_message(kind: &Kind, name: &str, errors: &FieldErrors) -> String {
    let items: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    format!("{kind} {name:?} is invalid: {}", items.join("; "))
}

/// How a write treats an existing object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail if it exists.
    Create,
    /// Fail if it does not exist; compare-and-swap on the given (or current) resourceVersion.
    Replace,
    /// Create, or update what exists.
    Apply,
}

#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
}

impl Client {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Resource, ClientError> {
        let key = keys::resource_key(
            kind,
            namespace.or(kind.namespaced().then_some("default")),
            name,
        );
        match self.store.get(&key).await.map_err(ClientError::Store)? {
            Some(kv) => Ok(decode_kv(&kv)?),
            None => Err(ClientError::NotFound {
                kind,
                name: display_name(kind, namespace, name),
            }),
        }
    }

    /// Every object of `kind` (in `namespace`, or in all namespaces when `None`), in key order,
    /// with the revision the listing reflects.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<(Vec<Resource>, Revision), ClientError> {
        if kind == Kind::IPAMConfiguration {
            let rev = self
                .store
                .current_revision()
                .await
                .map_err(ClientError::Store)?;
            return match self
                .store
                .get(IPAM_CONFIG_KEY)
                .await
                .map_err(ClientError::Store)?
            {
                Some(kv) => Ok((vec![decode_kv(&kv)?], rev)),
                None => Ok((vec![], rev)),
            };
        }
        let prefix = keys::kind_prefix(kind, namespace);
        let listed = self
            .store
            .list(&prefix, None)
            .await
            .map_err(ClientError::Store)?;
        let mut out = Vec::with_capacity(listed.kvs.len());
        for kv in &listed.kvs {
            // A namespace prefix like `.../default/` must not pick up other layouts' keys.
            if keys::parse_resource_key(&kv.key).is_some_and(|id| id.kind == kind) {
                out.push(decode_kv(kv)?);
            }
        }
        Ok((out, listed.revision))
    }

    pub async fn create(&self, resource: Resource) -> Result<Resource, ClientError> {
        self.write(resource, WriteMode::Create).await
    }

    pub async fn replace(&self, resource: Resource) -> Result<Resource, ClientError> {
        self.write(resource, WriteMode::Replace).await
    }

    pub async fn apply(&self, resource: Resource) -> Result<Resource, ClientError> {
        self.write(resource, WriteMode::Apply).await
    }

    /// One write; see [`Client::write_many`] for many.
    pub async fn write(
        &self,
        resource: Resource,
        mode: WriteMode,
    ) -> Result<Resource, ClientError> {
        self.write_many(vec![resource], mode)
            .await
            .pop()
            .unwrap_or_else(|| Err(ClientError::Store(StoreError::Other("no result".into()))))
    }

    /// Validate every resource, then write them in atomic batches (falling back to one by one for a
    /// batch that hits a conflict, so each resource gets its own result). Results are in input order.
    pub async fn write_many(
        &self,
        resources: Vec<Resource>,
        mode: WriteMode,
    ) -> Vec<Result<Resource, ClientError>> {
        let prepared = self.prepare_many(resources, mode).await;
        self.submit(prepared).await
    }

    /// Default and validate every resource against the stored state (immutable fields, overlapping
    /// pools, existence for the mode) without writing anything. Callers that want all-or-nothing
    /// check every result before [`Client::submit`].
    pub async fn prepare_many(
        &self,
        resources: Vec<Resource>,
        mode: WriteMode,
    ) -> Vec<Result<PreparedWrite, ClientError>> {
        let existing = match self.existing_for(&resources).await {
            Ok(e) => e,
            Err(e) => return resources.iter().map(|_| Err(clone_store_err(&e))).collect(),
        };
        let pools = if resources.iter().any(|r| r.kind() == Kind::IPPool) {
            match self.list(Kind::IPPool, None).await {
                Ok((p, _)) => p,
                Err(e) => return resources.iter().map(|_| Err(clone_store_err(&e))).collect(),
            }
        } else {
            Vec::new()
        };
        let batch_pools: Vec<Resource> = resources
            .iter()
            .filter(|r| r.kind() == Kind::IPPool)
            .cloned()
            .collect();
        let batch_pools: Vec<&Resource> = batch_pools.iter().collect();
        // Defaulting, validation and encoding are pure CPU work: spread them over the cores.
        par_map(resources, |res| {
            let current = existing.get(&resource_key_of(&res));
            prepare(res, current, mode, &pools, &batch_pools)
                .map(|(resource, op)| PreparedWrite { resource, op })
        })
    }

    /// Write prepared resources; errors already in `prepared` are passed through.
    pub async fn submit(
        &self,
        prepared: Vec<Result<PreparedWrite, ClientError>>,
    ) -> Vec<Result<Resource, ClientError>> {
        let max = self.store.max_batch_ops().max(1);
        let mut results: Vec<Option<Result<Resource, ClientError>>> =
            Vec::with_capacity(prepared.len());
        let mut pending: Vec<(usize, PreparedWrite)> = Vec::new();
        for (i, p) in prepared.into_iter().enumerate() {
            match p {
                Ok(p) => {
                    results.push(None);
                    pending.push((i, p));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let chunks: Vec<Vec<(usize, PreparedWrite)>> = {
            let mut chunks = Vec::new();
            let mut it = pending.into_iter().peekable();
            while it.peek().is_some() {
                chunks.push(it.by_ref().take(max).collect());
            }
            chunks
        };
        // Several batches in flight let etcd group them into fewer disk syncs.
        let outcomes: Vec<Vec<(usize, Result<Resource, ClientError>)>> =
            futures::stream::iter(chunks)
                .map(|chunk| self.submit_chunk(chunk))
                .buffer_unordered(8)
                .collect()
                .await;
        for (i, r) in outcomes.into_iter().flatten() {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ClientError::Store(StoreError::Other(
                        "write was not attempted".into(),
                    )))
                })
            })
            .collect()
    }

    async fn submit_chunk(
        &self,
        chunk: Vec<(usize, PreparedWrite)>,
    ) -> Vec<(usize, Result<Resource, ClientError>)> {
        let ops: Vec<WriteOp> = chunk.iter().map(|(_, p)| p.op.clone()).collect();
        if chunk.len() > 1
            && let Ok(rev) = self.store.batch(ops).await
        {
            return chunk
                .into_iter()
                .map(|(i, p)| (i, Ok(p.written(rev))))
                .collect();
        }
        let mut out = Vec::with_capacity(chunk.len());
        for (i, p) in chunk {
            let result = match &p.op {
                WriteOp::Create { key, value } => self.store.create(key, value.clone()).await,
                WriteOp::Update {
                    key,
                    value,
                    expected_mod_revision,
                } => {
                    self.store
                        .update(key, value.clone(), *expected_mod_revision)
                        .await
                }
                WriteOp::Put { key, value } => self.store.put(key, value.clone()).await,
                WriteOp::Delete {
                    key,
                    expected_mod_revision,
                } => self
                    .store
                    .delete(key, *expected_mod_revision)
                    .await
                    .map(|kv| kv.mod_revision),
            };
            let outcome = match result {
                Ok(rev) => Ok(p.written(rev)),
                Err(e) => Err(p.error(e)),
            };
            out.push((i, outcome));
        }
        out
    }

    /// Delete one object, optionally only at `resource_version`. Returns what was deleted.
    pub async fn delete(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<Resource, ClientError> {
        let ns = namespace.or(kind.namespaced().then_some("default"));
        let key = keys::resource_key(kind, ns, name);
        let expected = match resource_version {
            Some(rv) => Some(rv.parse::<Revision>().map_err(|_| ClientError::Invalid {
                kind,
                name: name.into(),
                errors: FieldErrors::single(
                    "metadata.resourceVersion",
                    format!("invalid resourceVersion {rv:?}"),
                ),
            })?),
            None => None,
        };
        let shown = display_name(kind, ns, name);
        match self.store.delete(&key, expected).await {
            Ok(kv) => Ok(decode_kv(&kv)?),
            Err(StoreError::NotFound { .. }) => Err(ClientError::NotFound { kind, name: shown }),
            Err(StoreError::Conflict { .. }) => Err(ClientError::Conflict {
                kind,
                name: shown,
                expected: resource_version.unwrap_or_default().into(),
            }),
            Err(e) => Err(ClientError::Store(e)),
        }
    }

    /// Current stored objects for the keys `resources` will write: one listing per kind and namespace
    /// when many objects share it, else single reads.
    async fn existing_for(
        &self,
        resources: &[Resource],
    ) -> Result<HashMap<String, Resource>, ClientError> {
        let mut groups: BTreeMap<(Kind, Option<String>), Vec<String>> = BTreeMap::new();
        for r in resources {
            let ns = r
                .kind()
                .namespaced()
                .then(|| r.namespace().unwrap_or("default").to_string());
            groups
                .entry((r.kind(), ns))
                .or_default()
                .push(resource_key_of(r));
        }
        let mut out = HashMap::new();
        for ((kind, ns), wanted) in groups {
            if wanted.len() > 16 {
                for r in self.list(kind, ns.as_deref()).await?.0 {
                    out.insert(resource_key_of(&r), r);
                }
            } else {
                for key in wanted {
                    if let Some(kv) = self.store.get(&key).await.map_err(ClientError::Store)? {
                        out.insert(key, decode_kv(&kv)?);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn clone_store_err(e: &ClientError) -> ClientError {
    match e {
        ClientError::Store(s) => ClientError::Store(s.clone()),
        other => ClientError::Store(StoreError::Other(other.to_string())),
    }
}

/// A validated write, ready to submit.
pub struct PreparedWrite {
    resource: Resource,
    op: WriteOp,
}

impl PreparedWrite {
    /// The resource as it will be stored (defaults applied, metadata stamped).
    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    fn written(mut self, rev: Revision) -> Resource {
        self.resource.metadata.resource_version = Some(rev.to_string());
        self.resource
    }

    fn error(&self, e: StoreError) -> ClientError {
        let kind = self.resource.kind();
        let name = display_name(kind, self.resource.namespace(), self.resource.name());
        match e {
            StoreError::AlreadyExists { .. } => ClientError::AlreadyExists { kind, name },
            StoreError::NotFound { .. } => ClientError::NotFound { kind, name },
            StoreError::Conflict { expected, .. } => ClientError::Conflict {
                kind,
                name,
                expected: expected.to_string(),
            },
            other => ClientError::Store(other),
        }
    }
}

/// Default, validate and stamp metadata; decide the store operation.
fn prepare(
    mut res: Resource,
    current: Option<&Resource>,
    mode: WriteMode,
    pools: &[Resource],
    batch_pools: &[&Resource],
) -> Result<(Resource, WriteOp), ClientError> {
    res.apply_defaults();
    let kind = res.kind();
    let name = display_name(kind, res.namespace(), res.name());
    let mut errors = match res.validate() {
        Ok(()) => FieldErrors::new(),
        Err(e) => e,
    };
    if let Some(cur) = current {
        check_immutable(&res, cur, &mut errors);
    }
    if kind == Kind::IPPool {
        check_pool_overlap(&res, pools, batch_pools, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ClientError::Invalid {
            kind,
            name: res.name().to_string(),
            errors,
        });
    }
    let requested_rv = res.metadata.resource_version.take();
    let op_for_existing = |res: &mut Resource, cur: &Resource| -> Result<Revision, ClientError> {
        let current_rev: Revision = cur
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        let expected = match requested_rv.as_deref().filter(|v| !v.is_empty()) {
            Some(rv) => rv.parse::<Revision>().map_err(|_| ClientError::Invalid {
                kind,
                name: res.name().to_string(),
                errors: FieldErrors::single(
                    "metadata.resourceVersion",
                    format!("invalid resourceVersion {rv:?}"),
                ),
            })?,
            None => current_rev,
        };
        if expected != current_rev {
            return Err(ClientError::Conflict {
                kind,
                name: name.clone(),
                expected: expected.to_string(),
            });
        }
        res.metadata.uid = cur.metadata.uid.clone();
        res.metadata.creation_timestamp = cur.metadata.creation_timestamp.clone();
        if res.status.is_none() {
            res.status = cur.status.clone();
        }
        Ok(expected)
    };
    let key = resource_key_of(&res);
    match (mode, current) {
        (WriteMode::Create, Some(_)) => Err(ClientError::AlreadyExists { kind, name }),
        (WriteMode::Replace, None) => Err(ClientError::NotFound { kind, name }),
        (WriteMode::Create | WriteMode::Apply, None) => {
            res.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
            res.metadata.creation_timestamp =
                Some(now_rfc3339().map_err(|e| ClientError::Encode {
                    kind,
                    name: name.clone(),
                    message: format!("creation timestamp: {e}"),
                })?);
            let value = encode_resource(&res)?;
            Ok((res, WriteOp::Create { key, value }))
        }
        (WriteMode::Replace | WriteMode::Apply, Some(cur)) => {
            let expected = op_for_existing(&mut res, cur)?;
            let value = encode_resource(&res)?;
            Ok((
                res,
                WriteOp::Update {
                    key,
                    value,
                    expected_mod_revision: expected,
                },
            ))
        }
    }
}

/// Fields Calico does not let an update change.
fn check_immutable(new: &Resource, cur: &Resource, errors: &mut FieldErrors) {
    if let (Spec::IPPool(n), Spec::IPPool(c)) = (&new.spec, &cur.spec) {
        let immutable = "field is immutable: delete and re-create the pool to change it";
        if n.net() != c.net() {
            errors.push("spec.cidr", immutable);
        }
        if n.effective_block_size() != c.effective_block_size() {
            errors.push("spec.blockSize", immutable);
        }
    }
}

/// IP pools may not overlap one another (stored ones, or others in the same request).
fn check_pool_overlap(
    res: &Resource,
    stored: &[Resource],
    batch: &[&Resource],
    errors: &mut FieldErrors,
) {
    let cidr_of = |r: &Resource| match &r.spec {
        Spec::IPPool(pool) => pool.net(),
        _ => None,
    };
    let Some(mine) = cidr_of(res) else { return };
    let others = stored
        .iter()
        .chain(batch.iter().copied())
        .filter(|o| o.name() != res.name());
    for other in others {
        if let Some(theirs) = cidr_of(other)
            && (mine.contains(&theirs.network()) || theirs.contains(&mine.network()))
        {
            errors.push(
                "spec.cidr",
                format!(
                    "IPPool {} ({mine}) overlaps with IPPool {} ({theirs})",
                    res.name(),
                    other.name()
                ),
            );
            return;
        }
    }
}

/// Whole seconds, as Kubernetes stamps `creationTimestamp`. Formatting fails only for years beyond 9999;
/// then the write fails rather than storing an empty stamp.
fn now_rfc3339() -> Result<String, time::error::Format> {
    let now = time::OffsetDateTime::now_utc();
    // Zero nanoseconds is always in range; the fallback keeps the (valid) sub-second time.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
}
