//! The etcd v3 backend.
//!
//! Every [`Store`] write is one etcd transaction: the conditions of create, compare-and-swap and
//! conditional delete become `Compare`s, and the failure branch reads the keys involved in the same
//! transaction, so the error we report (`AlreadyExists`, `NotFound`, `Conflict { actual }`) describes the
//! state that made the write fail, not a later one. Every call is bounded by the request timeout, so an
//! unreachable cluster gives `Unavailable` instead of a hang.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions,
    GetOptions, Identity, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
    WatchResponse,
};

use crate::{
    EventKind, KeyValue, ListResult, Revision, Store, StoreError, WatchEvent, WatchStream, WriteOp,
};

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

/// Keys fetched per range request when listing, so big listings stay under gRPC message limits.
const LIST_PAGE_SIZE: i64 = 500;

/// gRPC status codes (numeric, as in the gRPC spec) that we treat specially.
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_OUT_OF_RANGE: i32 = 11;
const GRPC_UNAVAILABLE: i32 = 14;

/// etcd's message when a read, watch or compaction targets compacted history.
const COMPACTED_MESSAGE: &str = "required revision has been compacted";

/// How to reach an etcd cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port`, `https://host:port` or bare `host:port` (https when TLS files are given).
    pub endpoints: Vec<String>,
    pub ca_cert_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Time allowed to open a connection to an endpoint.
    pub connect_timeout: Duration,
    /// Time allowed for each request (a watch only for its set-up).
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            ca_cert_file: None,
            cert_file: None,
            key_file: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl EtcdConfig {
    fn uses_tls(&self) -> bool {
        self.ca_cert_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Endpoints as URLs with an explicit scheme.
    fn endpoint_urls(&self) -> Result<Vec<String>, StoreError> {
        let tls = self.uses_tls();
        let mut urls = Vec::new();
        for endpoint in &self.endpoints {
            let endpoint = endpoint.trim().trim_end_matches('/');
            if endpoint.is_empty() {
                continue;
            }
            let url = if endpoint.starts_with("https://") {
                endpoint.to_string()
            } else if endpoint.starts_with("http://") {
                if tls {
                    return Err(StoreError::Invalid(format!(
                        "etcd endpoint {endpoint} uses http:// but TLS certificate files are configured: use https://"
                    )));
                }
                endpoint.to_string()
            } else if endpoint.contains("://") {
                return Err(StoreError::Invalid(format!(
                    "etcd endpoint {endpoint} has an unsupported scheme: use http:// or https://"
                )));
            } else if tls {
                format!("https://{endpoint}")
            } else {
                format!("http://{endpoint}")
            };
            urls.push(url);
        }
        if urls.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints configured".into()));
        }
        Ok(urls)
    }

    fn tls_options(&self) -> Result<Option<TlsOptions>, StoreError> {
        if !self.uses_tls() {
            return Ok(None);
        }
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca_cert_file {
            tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca, "CA certificate")?));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let identity =
                    Identity::from_pem(read_pem(cert, "certificate")?, read_pem(key, "key")?);
                tls = tls.identity(identity);
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Invalid(
                    "etcd client certificate and key files must be given together".into(),
                ));
            }
        }
        Ok(Some(tls))
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|err| {
        StoreError::Invalid(format!(
            "cannot read etcd {what} file {}: {err}",
            path.display()
        ))
    })
}

/// A [`Store`] on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// The endpoints, for error messages.
    endpoints: String,
    request_timeout: Duration,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl EtcdStore {
    /// Connects and checks that the cluster answers; gives `Unavailable` if it does not within the
    /// connect timeout plus the request timeout.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, StoreError> {
        let store = Self::connect_unverified(config).await?;
        // The client connects lazily; one request proves the cluster is there.
        let budget = config.connect_timeout + config.request_timeout;
        let probing = EtcdStore {
            request_timeout: budget,
            ..store
        };
        probing.current_revision().await.map_err(|err| match err {
            StoreError::Unavailable(reason) => StoreError::Unavailable(format!(
                "cannot reach etcd at {}: {reason}",
                probing.endpoints
            )),
            other => other,
        })?;
        Ok(EtcdStore {
            request_timeout: config.request_timeout,
            ..probing
        })
    }

    /// Like [`EtcdStore::connect`] without the round trip that proves the cluster answers: for short-lived
    /// callers (the CNI plugin) whose first real request reports an unreachable cluster just as well.
    pub async fn connect_unverified(config: &EtcdConfig) -> Result<Self, StoreError> {
        let urls = config.endpoint_urls()?;
        let endpoints = urls.join(",");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            // Pings let a watch notice a dead connection instead of waiting forever for events.
            .with_keep_alive(Duration::from_secs(10), config.request_timeout)
            // Without a leader writes cannot commit; fail fast instead of waiting.
            .with_require_leader(true);
        if let Some(tls) = config.tls_options()? {
            options = options.with_tls(tls);
        }
        let budget = config.connect_timeout + config.request_timeout;
        let client = match tokio::time::timeout(budget, Client::connect(&urls, Some(options))).await
        {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => {
                return Err(match classify(err) {
                    StoreError::Unavailable(reason) => StoreError::Unavailable(format!(
                        "cannot connect to etcd at {endpoints}: {reason}"
                    )),
                    other => other,
                });
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to etcd at {endpoints}: no answer within {budget:?}"
                )));
            }
        };
        Ok(EtcdStore {
            client,
            endpoints,
            request_timeout: config.request_timeout,
        })
    }

    /// Runs one etcd call under the request timeout and maps its error.
    async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        self.call_raw(what, request)
            .await?
            .map_err(|err| self.classify(err))
    }

    /// [`classify`], naming the endpoints when the cluster could not be reached.
    fn classify(&self, err: etcd_client::Error) -> StoreError {
        match classify(err) {
            StoreError::Unavailable(reason) if !reason.contains(&self.endpoints) => {
                StoreError::Unavailable(format!("etcd at {}: {reason}", self.endpoints))
            }
            other => other,
        }
    }

    /// Like [`call`](Self::call) but hands back etcd's own error, for callers that treat some specially.
    async fn call_raw<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<Result<T, etcd_client::Error>, StoreError> {
        tokio::time::timeout(self.request_timeout, request)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "etcd at {} did not answer {what} within {:?}",
                    self.endpoints, self.request_timeout
                ))
            })
    }

    /// The revision history is compacted to, found by starting a watch below it: etcd reports the
    /// compaction revision on such a watch, while a compacted range read does not.
    /// `lower_bound` is what to report if etcd does not say.
    async fn compacted_error(&self, requested: Revision, lower_bound: Revision) -> StoreError {
        let fallback = StoreError::Compacted {
            requested,
            compacted: lower_bound,
        };
        // Watching from revision 1 is below any compaction point but 1 itself.
        let (start, end) = prefix_range("");
        let options = WatchOptions::new().with_range(end).with_start_revision(1);
        let mut watch_client = self.client.watch_client();
        let probe = async {
            let mut stream = watch_client.watch(start, Some(options)).await?;
            while let Some(response) = stream.message().await? {
                if response.compact_revision() > 0 {
                    return Ok(Some(response.compact_revision()));
                }
                if response.canceled() || !response.events().is_empty() {
                    return Ok(None);
                }
            }
            Ok(None)
        };
        match self.call("compaction probe", probe).await {
            Ok(Some(compacted)) => StoreError::Compacted {
                requested,
                compacted,
            },
            _ => fallback,
        }
    }

    /// Runs `ops` as one transaction. On failure, works out from the keys read in the failure branch
    /// which op failed first and returns its error.
    async fn transact(&self, ops: &[WriteOp]) -> Result<TxnResponse, StoreError> {
        if ops.len() > MAX_TXN_OPS {
            return Err(StoreError::Invalid(format!(
                "batch of {} writes exceeds etcd's limit of {MAX_TXN_OPS}",
                ops.len()
            )));
        }
        let mut seen = HashSet::new();
        for op in ops {
            if op.key().is_empty() {
                return Err(StoreError::Invalid("empty key".into()));
            }
            if !seen.insert(op.key()) {
                return Err(StoreError::Invalid(format!(
                    "key {} appears more than once in one batch",
                    op.key()
                )));
            }
        }

        let mut compares = Vec::new();
        let mut writes = Vec::new();
        // Conditional ops, in order, with the key read for them on failure.
        let mut checked = Vec::new();
        for op in ops {
            match op {
                WriteOp::Create { key, value } => {
                    compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
                    writes.push(TxnOp::put(key.as_str(), value.clone(), None));
                    checked.push(op);
                }
                WriteOp::Update {
                    key,
                    value,
                    expected_mod_revision,
                } => {
                    compares.push(mod_revision_is(key, *expected_mod_revision));
                    writes.push(TxnOp::put(key.as_str(), value.clone(), None));
                    checked.push(op);
                }
                WriteOp::Put { key, value } => {
                    writes.push(TxnOp::put(key.as_str(), value.clone(), None));
                }
                WriteOp::Delete {
                    key,
                    expected_mod_revision,
                } => {
                    compares.push(match expected_mod_revision {
                        Some(expected) => mod_revision_is(key, *expected),
                        None => Compare::version(key.as_str(), CompareOp::Greater, 0),
                    });
                    writes.push(TxnOp::delete(
                        key.as_str(),
                        Some(DeleteOptions::new().with_prev_key()),
                    ));
                    checked.push(op);
                }
            }
        }
        let reads: Vec<TxnOp> = checked
            .iter()
            .map(|op| TxnOp::get(op.key(), None))
            .collect();
        let txn = Txn::new().when(compares).and_then(writes).or_else(reads);
        let mut kv_client = self.client.kv_client();
        let response = self.call("transaction", kv_client.txn(txn)).await?;
        if response.succeeded() {
            return Ok(response);
        }

        let current = response.op_responses();
        for (op, read) in checked.iter().zip(current.iter()) {
            let found = match read {
                TxnOpResponse::Get(get) => get.kvs().first().map(convert_kv).transpose()?,
                _ => None,
            };
            if let Some(err) = condition_failure(op, found.as_ref()) {
                return Err(err);
            }
        }
        Err(StoreError::Other(
            "etcd rejected the transaction but every condition holds".into(),
        ))
    }
}

/// A compare that holds when `key`'s mod revision is `expected`. A key that exists always has a mod
/// revision of at least 1, so for `expected < 1` the compare must never hold (etcd reports a missing
/// key's mod revision as 0, which would otherwise match).
fn mod_revision_is(key: &str, expected: Revision) -> Compare {
    if expected >= 1 {
        Compare::mod_revision(key, CompareOp::Equal, expected)
    } else {
        Compare::version(key, CompareOp::Less, 0)
    }
}

/// The error `op` fails with when its key currently is `found`, or `None` if its condition holds.
fn condition_failure(op: &WriteOp, found: Option<&KeyValue>) -> Option<StoreError> {
    let key = op.key().to_string();
    match (op, found) {
        (WriteOp::Create { .. }, Some(_)) => Some(StoreError::AlreadyExists { key }),
        (WriteOp::Update { .. } | WriteOp::Delete { .. }, None) => {
            Some(StoreError::NotFound { key })
        }
        (
            WriteOp::Update {
                expected_mod_revision: expected,
                ..
            }
            | WriteOp::Delete {
                expected_mod_revision: Some(expected),
                ..
            },
            Some(kv),
        ) if kv.mod_revision != *expected => Some(StoreError::Conflict {
            key,
            expected: *expected,
            actual: kv.mod_revision,
        }),
        _ => None,
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid("empty key".into()));
        }
        let mut kv_client = self.client.kv_client();
        let response = self.call("get", kv_client.get(key, None)).await?;
        response.kvs().first().map(convert_kv).transpose()
    }

    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError> {
        if let Some(revision) = at
            && revision < 1
        {
            return Err(StoreError::Invalid(format!(
                "cannot list at revision {revision}"
            )));
        }
        let (start, end) = prefix_range(prefix);
        // Later pages are read at the first page's revision, so the listing is one consistent snapshot.
        let mut revision = at.unwrap_or(0);
        let mut next_key = start;
        let mut kvs = Vec::new();
        let mut kv_client = self.client.kv_client();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE_SIZE)
                .with_revision(revision);
            let page = self
                .call_raw("list", kv_client.get(next_key.clone(), Some(options)))
                .await?;
            let page = match page {
                Ok(page) => page,
                Err(err) if is_compacted(&err) => {
                    // The history at `revision` is gone, so the oldest kept is at least the next one.
                    return Err(self.compacted_error(revision, revision + 1).await);
                }
                Err(err) => return Err(self.classify(err)),
            };
            if revision == 0 {
                revision = header_revision(page.header())?;
            }
            for kv in page.kvs() {
                kvs.push(convert_kv(kv)?);
            }
            match page.kvs().last() {
                Some(last) if page.more() => {
                    // The smallest key after `last`.
                    next_key = last.key().to_vec();
                    next_key.push(0);
                }
                _ => break,
            }
        }
        Ok(ListResult { kvs, revision })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let op = WriteOp::Create {
            key: key.to_string(),
            value,
        };
        let response = self.transact(&[op]).await?;
        header_revision(response.header())
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, StoreError> {
        let op = WriteOp::Update {
            key: key.to_string(),
            value,
            expected_mod_revision,
        };
        let response = self.transact(&[op]).await?;
        header_revision(response.header())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid("empty key".into()));
        }
        let mut kv_client = self.client.kv_client();
        let response = self.call("put", kv_client.put(key, value, None)).await?;
        header_revision(response.header())
    }

    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<Revision, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Invalid("empty key".into()));
        }
        // etcd counts lease TTLs in whole seconds; round up so a key never expires early.
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000))
            .map_err(|_| StoreError::Invalid(format!("TTL {ttl:?} is too long")))?
            .max(1);
        let mut lease_client = self.client.lease_client();
        let lease = self
            .call("grant a lease", lease_client.grant(seconds, None))
            .await?;
        let mut kv_client = self.client.kv_client();
        let options = etcd_client::PutOptions::new().with_lease(lease.id());
        let response = self
            .call("put", kv_client.put(key, value, Some(options)))
            .await?;
        header_revision(response.header())
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let op = WriteOp::Delete {
            key: key.to_string(),
            expected_mod_revision,
        };
        let response = self.transact(&[op]).await?;
        let deleted = response
            .op_responses()
            .into_iter()
            .find_map(|result| match result {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().map(convert_kv),
                _ => None,
            });
        match deleted {
            Some(kv) => kv,
            // The version compare guarantees the key existed; etcd should always return it.
            None => Err(StoreError::Other(format!(
                "etcd deleted {key} but did not return its previous value"
            ))),
        }
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<Revision, StoreError> {
        if ops.is_empty() {
            return self.current_revision().await;
        }
        let response = self.transact(&ops).await?;
        header_revision(response.header())
    }

    fn max_batch_ops(&self) -> usize {
        MAX_TXN_OPS
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        // "Every event at or after revision 0" means all retained history, as from revision 1 (etcd would
        // read 0 as "from now").
        let from_revision = from_revision.max(1);
        let (start, end) = prefix_range(prefix);
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(from_revision);
        let mut watch_client = self.client.watch_client();
        let mut stream = self
            .call("watch", watch_client.watch(start, Some(options)))
            .await?;
        // Wait for etcd to confirm the watch, so set-up failures surface here rather than as a stream item.
        let first = self.call("watch", stream.message()).await?;
        let mut state = WatchState {
            stream: Some(stream),
            pending: VecDeque::new(),
            next_revision: from_revision,
        };
        match first {
            Some(response) => state.absorb(response),
            None => state.pending.push_back(Err(StoreError::Unavailable(
                "etcd closed the watch before confirming it".into(),
            ))),
        }
        Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut kv_client = self.client.kv_client();
        let options = CompactionOptions::new().with_physical();
        match self
            .call_raw("compact", kv_client.compact(revision, Some(options)))
            .await?
        {
            Ok(_) => Ok(()),
            // Like etcd itself: compacting at or below the compaction point is an error.
            Err(err) if is_compacted(&err) => Err(self.compacted_error(revision, revision).await),
            Err(err) => Err(self.classify(err)),
        }
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let mut kv_client = self.client.kv_client();
        let options = GetOptions::new().with_count_only();
        let response = self
            .call("revision read", kv_client.get(vec![0u8], Some(options)))
            .await?;
        header_revision(response.header())
    }
}

/// State of one watch stream as seen by the caller: events already received but not yet handed out, and
/// the connection to etcd (dropped once the stream has ended).
struct WatchState {
    stream: Option<etcd_client::WatchStream>,
    pending: VecDeque<Result<WatchEvent, StoreError>>,
    /// The revision the caller needs next: what a compaction error reports as requested.
    next_revision: Revision,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<WatchEvent, StoreError>, WatchState)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if item.is_err() {
                    // An error ends the stream: nothing after it is delivered.
                    self.pending.clear();
                    self.stream = None;
                }
                return Some((item, self));
            }
            let stream = self.stream.as_mut()?;
            match stream.message().await {
                Ok(Some(response)) => self.absorb(response),
                Ok(None) => self.pending.push_back(Err(StoreError::Unavailable(
                    "etcd closed the watch stream".into(),
                ))),
                Err(err) => self.pending.push_back(Err(StoreError::Unavailable(format!(
                    "watch stream broken: {err}"
                )))),
            }
        }
    }

    fn absorb(&mut self, response: WatchResponse) {
        if response.compact_revision() > 0 {
            self.pending.push_back(Err(StoreError::Compacted {
                requested: self.next_revision,
                compacted: response.compact_revision(),
            }));
            return;
        }
        if response.canceled() {
            let reason = response.cancel_reason();
            self.pending.push_back(Err(StoreError::Unavailable(format!(
                "etcd cancelled the watch: {}",
                if reason.is_empty() {
                    "no reason given"
                } else {
                    reason
                }
            ))));
            return;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else {
                continue;
            };
            let converted = convert_kv(kv).map(|kv| {
                let kind = match event.event_type() {
                    etcd_client::EventType::Put => EventKind::Put,
                    etcd_client::EventType::Delete => EventKind::Delete,
                };
                WatchEvent { kind, kv }
            });
            if let Ok(event) = &converted {
                self.next_revision = event.kv.mod_revision + 1;
            }
            self.pending.push_back(converted);
        }
    }
}

/// The key range `[start, end)` holding exactly the keys that start with `prefix`.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let start = prefix.as_bytes().to_vec();
    // In etcd a range end of "\0" means "no upper bound".
    let mut end = start.clone();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            break;
        }
    }
    if end.is_empty() {
        end = vec![0];
    }
    let start = if start.is_empty() { vec![0] } else { start };
    (start, end)
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = kv
        .key_str()
        .map_err(|_| {
            StoreError::Other(format!(
                "etcd key is not UTF-8: {}",
                String::from_utf8_lossy(kv.key())
            ))
        })?
        .to_string();
    Ok(KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
    header
        .map(|header| header.revision())
        .ok_or_else(|| StoreError::Other("etcd response has no header".into()))
}

fn is_compacted(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(status) if status.message().contains(COMPACTED_MESSAGE))
}

/// `message` followed by the chain of underlying causes (where the useful detail, such as a TLS
/// handshake failure, usually is).
fn with_causes(message: &str, err: &dyn std::error::Error) -> String {
    let mut text = message.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// Maps an etcd client error to the store's error kinds.
fn classify(err: etcd_client::Error) -> StoreError {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let message = with_causes(status.message(), &status);
            match status.code() as i32 {
                GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED | GRPC_CANCELLED => {
                    StoreError::Unavailable(message)
                }
                // tonic reports a connection that could not be set up (refused, TLS handshake failed)
                // this way.
                GRPC_UNKNOWN if status.message().contains("transport error") => {
                    StoreError::Unavailable(message)
                }
                GRPC_INVALID_ARGUMENT | GRPC_OUT_OF_RANGE => StoreError::Invalid(message),
                _ => StoreError::Other(format!("etcd: {message}")),
            }
        }
        etcd_client::Error::TransportError(err) => {
            StoreError::Unavailable(with_causes(&err.to_string(), &err))
        }
        etcd_client::Error::IoError(err) => StoreError::Unavailable(err.to_string()),
        etcd_client::Error::InvalidArgs(message) => StoreError::Invalid(message),
        etcd_client::Error::InvalidUri(err) => {
            StoreError::Invalid(format!("invalid etcd endpoint: {err}"))
        }
        other => StoreError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_cover_exactly_the_prefix() {
        assert_eq!(prefix_range("/a/b"), (b"/a/b".to_vec(), b"/a/c".to_vec()));
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
    }

    #[test]
    fn endpoints_get_a_scheme_matching_tls() {
        let plain = EtcdConfig {
            endpoints: vec![
                "127.0.0.1:2379".into(),
                " http://10.0.0.1:2379/ ".into(),
                "".into(),
            ],
            ..EtcdConfig::default()
        };
        assert_eq!(
            plain.endpoint_urls().unwrap(),
            ["http://127.0.0.1:2379", "http://10.0.0.1:2379"]
        );
        let tls = EtcdConfig {
            endpoints: vec!["etcd.example:2379".into()],
            ca_cert_file: Some("/nonexistent/ca.pem".into()),
            ..EtcdConfig::default()
        };
        assert_eq!(tls.endpoint_urls().unwrap(), ["https://etcd.example:2379"]);
        let mixed = EtcdConfig {
            endpoints: vec!["http://etcd.example:2379".into()],
            ..tls.clone()
        };
        assert!(matches!(mixed.endpoint_urls(), Err(StoreError::Invalid(_))));
        let none = EtcdConfig {
            endpoints: vec![" ".into()],
            ..EtcdConfig::default()
        };
        assert!(matches!(none.endpoint_urls(), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn missing_tls_files_are_reported_by_name() {
        let config = EtcdConfig {
            ca_cert_file: Some("/nonexistent/ca.pem".into()),
            ..EtcdConfig::default()
        };
        let err = config.tls_options().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let half = EtcdConfig {
            cert_file: Some("/nonexistent/cert.pem".into()),
            ..EtcdConfig::default()
        };
        assert!(matches!(half.tls_options(), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn failed_conditions_name_the_right_error() {
        let kv = KeyValue {
            key: "/k".into(),
            value: b"v".to_vec(),
            create_revision: 3,
            mod_revision: 5,
            version: 2,
        };
        let create = WriteOp::Create {
            key: "/k".into(),
            value: vec![],
        };
        let update = WriteOp::Update {
            key: "/k".into(),
            value: vec![],
            expected_mod_revision: 4,
        };
        let delete_any = WriteOp::Delete {
            key: "/k".into(),
            expected_mod_revision: None,
        };
        assert_eq!(
            condition_failure(&create, Some(&kv)),
            Some(StoreError::AlreadyExists { key: "/k".into() })
        );
        assert_eq!(condition_failure(&create, None), None);
        assert_eq!(
            condition_failure(&update, Some(&kv)),
            Some(StoreError::Conflict {
                key: "/k".into(),
                expected: 4,
                actual: 5
            })
        );
        assert_eq!(
            condition_failure(&update, None),
            Some(StoreError::NotFound { key: "/k".into() })
        );
        assert_eq!(condition_failure(&delete_any, Some(&kv)), None);
    }
}
