//! A [`MetaStore`] on etcd, for cluster mode: several brokers share one store, and every change
//! that depends on what is stored is one etcd transaction conditioned on the mod revisions it
//! read, retried a bounded number of times when it loses (ADR 0019).
//!
//! Key layout, everything under the store's prefix `P` (for example `/sediment`), so several
//! clusters can share one etcd:
//! - `P/cluster_id`: the cluster id, created once (a transaction on `create_revision == 0`),
//!   and `P/layout`: the version of this layout, written with it;
//! - `P/topics/<name>`: one topic, JSON [`TopicMeta`];
//! - `P/producer_ids`: the first producer id not handed out yet, in decimal;
//! - `P/offsets/<group>/<topic>/<block>`: a group's committed offsets of partitions
//!   `32 * block ..= 32 * block + 31` of a topic, JSON `{"<partition>": CommittedOffset}`;
//! - `P/segments/<topic id>/<partition>/head`: the partition's log start, archive end and newest
//!   leader epoch, JSON; `P/segments/<topic id>/<partition>/s/<base offset, 20 digits>`: one
//!   committed segment, JSON [`SegmentEntry`]. The padding makes key order offset order.
//!   With a manifest store ([`EtcdMetaStore::with_manifests`], ADR 0024), at most
//!   `fold_segments_at` segments stay as keys: adding one more folds them, with the older ones,
//!   into one immutable JSON object `<object prefix>/_index/<topic id>/<partition>/<end>-<uuid>.json`
//!   in the bucket, which the head names; etcd's share of a partition's index stays bounded
//!   however many segments accumulate.
//!
//! Group and topic names are escaped in keys (every byte other than `A-Z a-z 0-9 . _ -`
//! becomes `%XX`), so a `/` in a group name cannot reach into another group's keys.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    CommittedOffset, MetaError, MetaStore, OffsetEntry, PartitionIndex, Result, SegmentEntry,
    TopicMeta, UserCredential,
};

/// Times a request that could not reach an etcd member is sent again.
const UNREACHABLE_RETRIES: u32 = 10;

/// Whether a failed request never left this process: its connection to the member was
/// refused or could not be made. Such a request is safe to send again, even a transaction.
pub(crate) fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            format!("{:?}", s.code()) == "Unavailable" && s.message().contains("connect")
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Version of the key layout this build writes and reads (`P/layout`).
const LAYOUT_VERSION: u32 = 1;
/// Partitions of a topic whose committed offsets (for one group) share a key.
pub const OFFSET_BLOCK: i32 = 32;
/// Keys per range request; longer ranges are read in pages at one revision.
const PAGE: i64 = 500;
/// gRPC status code etcd answers a request it refuses outright with (too many operations in
/// a transaction, a request over `--max-request-bytes`, a key given twice).
const GRPC_INVALID_ARGUMENT: i32 = 3;

/// How the store talks to etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Bound on establishing a connection to an endpoint.
    pub connect_timeout: Duration,
    /// Bound on each request to etcd; a call makes one to a few (reads, then a transaction).
    pub request_timeout: Duration,
    /// Attempts of a read-compute-compare change before it fails as `Unavailable`.
    pub max_attempts: u32,
    /// Operations etcd allows in one transaction (its `--max-txn-ops`, 128 by default). An
    /// offset commit or delete touching more offset keys than this is refused as `Invalid`.
    pub max_txn_ops: usize,
    /// With a manifest store: a partition keeps at most this many segments as etcd keys; the
    /// next one folds them into a manifest object.
    pub fold_segments_at: usize,
    /// etcd's authentication (`etcdctl auth enable`): a user and its password.
    pub user: Option<EtcdUser>,
    /// TLS to etcd (endpoints then are `https://`).
    pub tls: Option<EtcdTls>,
}

/// An etcd user; the password is never printed.
#[derive(Clone)]
pub struct EtcdUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdUser")
            .field("name", &self.name)
            .field("password", &"(redacted)")
            .finish()
    }
}

/// TLS to etcd, from PEM files' contents: the CA that signed etcd's certificates (else the
/// system's roots are not used: give it), and a client certificate and key for etcd's
/// `--client-cert-auth`.
#[derive(Clone, Default)]
pub struct EtcdTls {
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .finish()
    }
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            max_attempts: 32,
            max_txn_ops: 128,
            fold_segments_at: 32,
            user: None,
            tls: None,
        }
    }
}

/// The etcd store. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct EtcdMetaStore {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    cluster_id: String,
    pub(crate) options: EtcdOptions,
    /// Where folded segment lists go (ADR 0024); `None`: every segment stays a key.
    manifests: Option<std::sync::Arc<Manifests>>,
}

impl std::fmt::Debug for EtcdMetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdMetaStore")
            .field("prefix", &self.keys.root)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// A partition's `head` key.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Head {
    log_start_offset: i64,
    end_offset: i64,
    /// Newest leader epoch that committed a segment (kept after retention removed it).
    newest_epoch: i32,
    /// The manifest object holding the segments folded out of etcd (the older ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<ManifestRef>,
}

/// Where a partition's folded segment list is, and how many entries it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ManifestRef {
    path: String,
    segments: usize,
}

/// The object store that keeps folded segment lists (manifests), with a cache: manifests are
/// immutable, so one read serves until the head names another.
pub(crate) struct Manifests {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: object_store::path::Path,
    cache: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Vec<SegmentEntry>>>>,
}

/// Manifests cached at most (one per partition read recently).
const MANIFEST_CACHE: usize = 4096;

impl Manifests {
    fn path(&self, topic_id: Uuid, partition: i32, end: i64) -> String {
        self.prefix
            .clone()
            .join("_index")
            .join(topic_id.to_string())
            .join(partition.to_string())
            .join(format!("{end:020}-{}.json", Uuid::new_v4().simple()))
            .to_string()
    }

    fn unavailable(what: &str, e: impl std::fmt::Display) -> MetaError {
        MetaError::Unavailable(format!("{what}: {e}"))
    }

    /// The manifest at `path`; `None` if it is gone (folded again and deleted meanwhile).
    async fn load(&self, path: &str) -> Result<Option<std::sync::Arc<Vec<SegmentEntry>>>> {
        use object_store::ObjectStoreExt;
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(path).cloned()) {
            return Ok(Some(hit));
        }
        let location = object_store::path::Path::from(path);
        let bytes = match self.store.get(&location).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(|e| Self::unavailable(&format!("reading manifest {path}"), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Self::unavailable(&format!("reading manifest {path}"), e)),
        };
        let list: Vec<SegmentEntry> = serde_json::from_slice(&bytes).map_err(|e| {
            MetaError::Invalid(format!("manifest {path} is not a segment list: {e}"))
        })?;
        let list = std::sync::Arc::new(list);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MANIFEST_CACHE {
                c.clear();
            }
            c.insert(path.to_string(), list.clone());
        }
        Ok(Some(list))
    }

    async fn put(&self, path: &str, list: &[SegmentEntry]) -> Result<()> {
        use object_store::ObjectStoreExt;
        let body = serde_json::to_vec(list).map_err(|e| MetaError::Invalid(e.to_string()))?;
        self.store
            .put(&object_store::path::Path::from(path), body.into())
            .await
            .map_err(|e| Self::unavailable(&format!("writing manifest {path}"), e))?;
        Ok(())
    }

    /// Best effort: a manifest left behind is only unreferenced bytes.
    async fn delete(&self, path: &str) {
        use object_store::ObjectStoreExt;
        if let Ok(mut c) = self.cache.lock() {
            c.remove(path);
        }
        if let Err(e) = self
            .store
            .delete(&object_store::path::Path::from(path))
            .await
        {
            tracing::debug!(path, error = %e, "deleting a replaced manifest failed");
        }
    }

    /// Best effort: every manifest of a deleted topic.
    async fn delete_topic(&self, topic_id: Uuid) {
        use futures::StreamExt;
        use object_store::ObjectStoreExt;
        let dir = self
            .prefix
            .clone()
            .join("_index")
            .join(topic_id.to_string());
        let found: Vec<_> = self.store.list(Some(&dir)).collect().await;
        for meta in found.into_iter().flatten() {
            let _ = self.store.delete(&meta.location).await;
        }
    }
}

/// A key's value and the revision of its last change, as read.
pub(crate) struct Stored {
    pub(crate) value: Vec<u8>,
    pub(crate) mod_revision: i64,
}

impl From<KeyValue> for Stored {
    fn from(kv: KeyValue) -> Self {
        let mod_revision = kv.mod_revision();
        let (_, value) = kv.into_key_value();
        Self {
            value,
            mod_revision,
        }
    }
}

/// The compare that holds only while `key` is as it was read (absent reads as revision 0,
/// which etcd compares a missing key against).
fn unchanged(key: &str, read: Option<&Stored>) -> Compare {
    Compare::mod_revision(key, CompareOp::Equal, read.map_or(0, |s| s.mod_revision))
}

/// Escapes a name for use as one key component.
pub(crate) fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`escape`]. `None` if `escaped` is not something it produced.
pub(crate) fn unescape(escaped: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        if escaped[i] == b'%' {
            let hex = std::str::from_utf8(escaped.get(i + 1..i + 3)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(escaped[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The first key after every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the keyspace.
    vec![0]
}

fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

pub(crate) fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| MetaError::Unavailable(format!("encoding the value of etcd key {key}: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| {
        MetaError::Unavailable(format!(
            "etcd key {} does not hold a valid {what}: {e}",
            shown(key)
        ))
    })
}

pub(crate) fn etcd_error(what: &str, e: etcd_client::Error) -> MetaError {
    if let etcd_client::Error::GRpcStatus(status) = &e {
        if status.code() as i32 == GRPC_INVALID_ARGUMENT {
            return MetaError::Invalid(format!("etcd refused {what}: {}", status.message()));
        }
    }
    MetaError::Unavailable(format!("etcd, {what}: {e}"))
}

/// Where each piece of metadata lives.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The prefix without a trailing `/`.
    pub(crate) root: String,
}

impl Keys {
    fn cluster_id(&self) -> String {
        format!("{}/cluster_id", self.root)
    }

    fn layout(&self) -> String {
        format!("{}/layout", self.root)
    }

    pub(crate) fn topics(&self) -> String {
        format!("{}/topics/", self.root)
    }

    fn topic(&self, name: &str) -> String {
        format!("{}/topics/{}", self.root, escape(name))
    }

    pub(crate) fn broker_configs(&self, scope: &str) -> String {
        format!("{}/broker_configs/{}", self.root, escape(scope))
    }

    /// Every user's credentials live under here, one key per user and mechanism.
    fn users(&self) -> String {
        format!("{}/users/", self.root)
    }

    fn acls(&self) -> String {
        format!("{}/acls/", self.root)
    }

    fn user_credential(&self, user: &str, mechanism: &str) -> String {
        format!("{}/users/{}/{}", self.root, escape(user), escape(mechanism))
    }

    fn producer_ids(&self) -> String {
        format!("{}/producer_ids", self.root)
    }

    fn offsets(&self) -> String {
        format!("{}/offsets/", self.root)
    }

    fn group(&self, group: &str) -> String {
        format!("{}/offsets/{}/", self.root, escape(group))
    }

    fn offsets_block(&self, group: &str, topic: &str, partition: i32) -> String {
        format!(
            "{}{}/{}",
            self.group(group),
            escape(topic),
            partition.div_euclid(OFFSET_BLOCK)
        )
    }

    fn topic_segments(&self, topic_id: Uuid) -> String {
        format!("{}/segments/{topic_id}/", self.root)
    }

    /// Prefix of every key of one partition's segment index.
    fn partition(&self, topic_id: Uuid, partition: i32) -> String {
        format!("{}{partition}/", self.topic_segments(topic_id))
    }
}

fn head_key(partition_prefix: &str) -> String {
    format!("{partition_prefix}head")
}

/// Key of the segment starting at `base`; also the (exclusive) end of the range of segments
/// starting below `base`.
fn segment_key(partition_prefix: &str, base: i64) -> String {
    format!("{partition_prefix}s/{base:020}")
}

fn segments_start(partition_prefix: &str) -> String {
    format!("{partition_prefix}s/")
}

impl EtcdMetaStore {
    /// Keeps folded segment lists (manifests) in `store` under `prefix` (the bucket and prefix
    /// the segments themselves are in), so etcd holds at most `fold_segments_at` segment keys
    /// per partition (ADR 0024). Every broker of a cluster must be given the same store.
    pub fn with_manifests(
        mut self,
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        prefix: object_store::path::Path,
    ) -> Self {
        self.manifests = Some(std::sync::Arc::new(Manifests {
            store,
            prefix,
            cache: Default::default(),
        }));
        self
    }

    /// A partition's head (and its stored form, for compare-and-set) and the segments still
    /// kept as keys, at one revision.
    async fn read_partition(
        &self,
        prefix: &str,
    ) -> Result<(Head, Option<Stored>, Vec<SegmentEntry>)> {
        let head_key = head_key(prefix);
        let segments = segments_start(prefix);
        let mut head = (Head::default(), None);
        let mut tail = Vec::new();
        for kv in self.range_prefix(prefix).await? {
            if kv.key() == head_key.as_bytes() {
                let value: Head = decode(kv.key(), kv.value(), "partition head")?;
                head = (value, Some(Stored::from(kv)));
            } else if kv.key().starts_with(segments.as_bytes()) {
                tail.push(decode(kv.key(), kv.value(), "segment entry")?);
            }
        }
        Ok((head.0, head.1, tail))
    }

    /// The entries of a head's manifest (none without one); `None` if the manifest is gone,
    /// which means the head was replaced meanwhile: read again.
    async fn manifest_of(&self, head: &Head, prefix: &str) -> Result<Option<Vec<SegmentEntry>>> {
        let Some(r) = &head.manifest else {
            return Ok(Some(Vec::new()));
        };
        let Some(m) = &self.manifests else {
            return Err(MetaError::Invalid(format!(
                "the segment index of {prefix} is partly in manifest {}, and this store was                  opened without the object store holding it",
                r.path
            )));
        };
        Ok(m.load(&r.path).await?.map(|l| l.to_vec()))
    }

    /// Connects to etcd at `endpoints` (`http://host:port`) and opens the store under `prefix`,
    /// creating its cluster id if this prefix has none. Fails with `Unavailable` if etcd does
    /// not answer within the default timeouts.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self> {
        Self::connect_with(endpoints, prefix, EtcdOptions::default()).await
    }

    /// [`Self::connect`] with explicit options.
    pub async fn connect_with(
        endpoints: &[String],
        prefix: &str,
        options: EtcdOptions,
    ) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(MetaError::Invalid("no etcd endpoints given".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), options.request_timeout);
        if let Some(u) = &options.user {
            connect = connect.with_user(u.name.clone(), u.password.clone());
        }
        if let Some(tls) = &options.tls {
            if endpoints.iter().any(|e| !e.starts_with("https://")) {
                return Err(MetaError::Invalid(
                    "etcd TLS settings need https:// endpoints".into(),
                ));
            }
            let mut t = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            match (&tls.client_cert_pem, &tls.client_key_pem) {
                (Some(c), Some(k)) => t = t.identity(etcd_client::Identity::from_pem(c, k)),
                (None, None) => {}
                _ => {
                    return Err(MetaError::Invalid(
                        "an etcd client certificate needs its key, and a key its certificate"
                            .into(),
                    ))
                }
            }
            connect = connect.with_tls(t);
        }
        let client = match tokio::time::timeout(
            options.connect_timeout,
            Client::connect(endpoints, Some(connect)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(
                e @ (etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_)),
            )) => {
                return Err(MetaError::Invalid(format!(
                    "etcd endpoints {endpoints:?}: {e}"
                )))
            }
            Ok(Err(e)) => return Err(etcd_error("connecting", e)),
            Err(_) => {
                return Err(MetaError::Unavailable(format!(
                    "etcd at {endpoints:?} did not connect within {:?}",
                    options.connect_timeout
                )))
            }
        };
        let mut store = Self {
            client,
            keys: Keys {
                root: prefix.trim_end_matches('/').to_string(),
            },
            cluster_id: String::new(),
            options,
            manifests: None,
        };
        store.cluster_id = store.open_cluster().await?;
        tracing::info!(
            endpoints = ?endpoints,
            prefix = %store.keys.root,
            cluster_id = %store.cluster_id,
            "etcd metadata store open"
        );
        Ok(store)
    }

    /// Reads this prefix's cluster id, creating it (and the layout version) in one transaction
    /// if absent, so two brokers starting together agree on one.
    async fn open_cluster(&self) -> Result<String> {
        let id_key = self.keys.cluster_id();
        let layout_key = self.keys.layout();
        let fresh = Uuid::new_v4().simple().to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(
                id_key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then([
                TxnOp::put(id_key.as_str(), fresh.as_str(), None),
                TxnOp::put(layout_key.as_str(), LAYOUT_VERSION.to_string(), None),
            ])
            .or_else([
                TxnOp::get(id_key.as_str(), None),
                TxnOp::get(layout_key.as_str(), None),
            ]);
        let resp = self
            .call_again("opening the cluster", |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            tracing::info!(prefix = %self.keys.root, cluster_id = %fresh, "created a new cluster id in etcd");
            return Ok(fresh);
        }
        let mut values = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
            _ => None,
        });
        let id = values.next().flatten().ok_or_else(|| {
            MetaError::Unavailable(format!("etcd key {id_key} vanished while being read"))
        })?;
        let layout = values.next().flatten().ok_or_else(|| {
            MetaError::Unavailable(format!(
                "etcd key {id_key} exists but {layout_key} does not: not a Sediment store"
            ))
        })?;
        let version: u32 = std::str::from_utf8(layout.value())
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                MetaError::Unavailable(format!(
                    "etcd key {layout_key} does not hold a layout version"
                ))
            })?;
        if version > LAYOUT_VERSION {
            return Err(MetaError::Invalid(format!(
                "etcd key {layout_key} says layout version {version}; this build reads up to {LAYOUT_VERSION}"
            )));
        }
        let id = std::str::from_utf8(id.value())
            .ok()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                MetaError::Unavailable(format!("etcd key {id_key} does not hold a cluster id"))
            })?;
        Ok(id.to_string())
    }

    /// Runs one etcd request, bounded by the request timeout.
    pub(crate) async fn call<T>(
        &self,
        what: &str,
        request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.options.request_timeout, request).await {
            Ok(result) => result.map_err(|e| etcd_error(what, e)),
            Err(_) => Err(MetaError::Unavailable(format!(
                "etcd did not answer {what} within {:?}",
                self.options.request_timeout
            ))),
        }
    }

    /// [`Self::call`] for a KV request that can be made again (see [`Self::retry_unsent`]).
    pub(crate) async fn call_again<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T>
    where
        F: FnMut(etcd_client::KvClient) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.retry_unsent(what, || request(self.client.kv_client()))
            .await
    }

    /// [`Self::call`] for a request that can be made again: one that could not reach its etcd
    /// member (the connection was refused: it was never sent) is sent again, a few times, so
    /// that with several endpoints a dead member costs a retry and not a failed operation
    /// (the client's channel moves on to the next endpoint).
    pub(crate) async fn retry_unsent<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match tokio::time::timeout(self.options.request_timeout, request()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if attempt < UNREACHABLE_RETRIES && never_sent(&e) => {
                    tracing::debug!(what, error = %e, "an etcd member is unreachable; trying again");
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Ok(Err(e)) => return Err(etcd_error(what, e)),
                Err(_) => {
                    return Err(MetaError::Unavailable(format!(
                        "etcd did not answer {what} within {:?}",
                        self.options.request_timeout
                    )))
                }
            }
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Stored>> {
        let mut resp = self
            .call_again(&format!("reading {key}"), |mut kv| async move {
                kv.get(key, None).await
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next().map(Stored::from))
    }

    /// Reads several keys at one revision (one transaction of gets).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Stored>>> {
        if keys.len() <= 1 {
            let mut out = Vec::new();
            for key in keys {
                out.push(self.get(key).await?);
            }
            return Ok(out);
        }
        let gets: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
        let resp = self
            .call_again(
                &format!("reading {} keys from {}", keys.len(), keys[0]),
                |mut kv| {
                    let txn = Txn::new().and_then(gets.clone());
                    async move { kv.txn(txn).await }
                },
            )
            .await?;
        let out: Vec<Option<Stored>> = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next().map(Stored::from),
                _ => None,
            })
            .collect();
        if out.len() != keys.len() {
            return Err(MetaError::Unavailable(format!(
                "etcd answered {} of {} reads",
                out.len(),
                keys.len()
            )));
        }
        Ok(out)
    }

    /// Every key in `[start, end)`, read in pages at the revision of the first page, so the
    /// result is one consistent view however long the range.
    async fn range(&self, start: &str, end: Vec<u8>) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        let mut from = start.as_bytes().to_vec();
        let mut revision = 0;
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE)
                .with_revision(revision);
            let mut resp = self
                .call_again(&format!("reading {start}*"), |mut kv| {
                    let (from, options) = (from.clone(), options.clone());
                    async move { kv.get(from, Some(options)).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            let page = resp.take_kvs();
            let next = page.last().map(|last| {
                let mut next = last.key().to_vec();
                next.push(0);
                next
            });
            out.extend(page);
            match next {
                Some(next) if more => from = next,
                _ => return Ok(out),
            }
        }
    }

    pub(crate) async fn range_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        self.range(prefix, prefix_end(prefix)).await
    }

    /// Runs a transaction: `ops` if every compare holds. `false` if one did not.
    pub(crate) async fn commit(
        &self,
        what: &str,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<bool> {
        let resp = self
            .call_again(what, |mut kv| {
                let txn = Txn::new().when(compares.clone()).and_then(ops.clone());
                async move { kv.txn(txn).await }
            })
            .await?;
        Ok(resp.succeeded())
    }

    /// After a transaction lost its compare: waits a little (randomized, growing) before the
    /// next attempt, or gives up with `Unavailable` once the attempts are spent.
    async fn lost(&self, what: &str, attempt: &mut u32) -> Result<()> {
        *attempt += 1;
        if *attempt >= self.options.max_attempts {
            tracing::warn!(
                what,
                attempts = *attempt,
                "etcd change kept losing to concurrent changes"
            );
            return Err(MetaError::Unavailable(format!(
                "{what}: the etcd transaction lost its revision compare to concurrent changes {attempt} times in a row; try again"
            )));
        }
        let cap_ms = (2u64 << (*attempt).min(6)).min(100);
        let wait = Duration::from_millis(rand::random_range(0..=cap_ms));
        tracing::debug!(
            what,
            attempt = *attempt,
            ?wait,
            "etcd compare lost; retrying"
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }

    async fn topic_stored(&self, key: &str) -> Result<Option<(TopicMeta, Stored)>> {
        match self.get(key).await? {
            Some(stored) => Ok(Some((
                decode(key.as_bytes(), &stored.value, "topic")?,
                stored,
            ))),
            None => Ok(None),
        }
    }

    /// Read-compute-compare on one topic's key: `change` edits the topic (or refuses), and the
    /// edit is written only if the key is still as read.
    async fn update_topic(
        &self,
        name: &str,
        missing: impl Fn() -> MetaError + Send + Sync,
        change: impl Fn(&mut TopicMeta) -> Result<()> + Send + Sync,
    ) -> Result<TopicMeta> {
        let key = self.keys.topic(name);
        let what = format!("updating topic {name}");
        let mut attempt = 0;
        loop {
            let (mut topic, stored) = self.topic_stored(&key).await?.ok_or_else(&missing)?;
            change(&mut topic)?;
            let put = TxnOp::put(key.as_str(), encode(&key, &topic)?, None);
            if self
                .commit(&what, vec![unchanged(&key, Some(&stored))], vec![put])
                .await?
            {
                return Ok(topic);
            }
            self.lost(&what, &mut attempt).await?;
        }
    }

    /// The offset keys a set of partitions of `group` live in, each with its partitions in the
    /// order given. `Invalid` if a transaction could not hold them.
    fn blocks<T>(
        &self,
        group: &str,
        items: Vec<(String, i32, T)>,
    ) -> Result<BTreeMap<String, Vec<(i32, T)>>> {
        let mut blocks: BTreeMap<String, Vec<(i32, T)>> = BTreeMap::new();
        for (topic, partition, item) in items {
            blocks
                .entry(self.keys.offsets_block(group, &topic, partition))
                .or_default()
                .push((partition, item));
        }
        if blocks.len() > self.options.max_txn_ops {
            return Err(MetaError::Invalid(format!(
                "the change touches {} offset keys of group {group} (partitions are stored {OFFSET_BLOCK} to a key); one etcd transaction holds at most {}",
                blocks.len(),
                self.options.max_txn_ops
            )));
        }
        Ok(blocks)
    }

    /// Read-compute-compare on a set of offset keys: `change` edits each key's partitions;
    /// keys left empty are deleted.
    async fn update_offsets<T>(
        &self,
        what: &str,
        blocks: BTreeMap<String, Vec<(i32, T)>>,
        change: impl Fn(&mut BTreeMap<i32, CommittedOffset>, i32, &T),
    ) -> Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = blocks.keys().cloned().collect();
        let mut attempt = 0;
        loop {
            let current = self.get_many(&keys).await?;
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            for ((key, items), stored) in blocks.iter().zip(&current) {
                let mut offsets: BTreeMap<i32, CommittedOffset> = match stored {
                    Some(s) => decode(key.as_bytes(), &s.value, "offsets block")?,
                    None => BTreeMap::new(),
                };
                let before = offsets.clone();
                for (partition, item) in items {
                    change(&mut offsets, *partition, item);
                }
                if offsets == before && stored.is_some() {
                    continue;
                }
                if offsets.is_empty() {
                    if stored.is_some() {
                        ops.push(TxnOp::delete(key.as_str(), None));
                        compares.push(unchanged(key, stored.as_ref()));
                    }
                    continue;
                }
                ops.push(TxnOp::put(key.as_str(), encode(key, &offsets)?, None));
                compares.push(unchanged(key, stored.as_ref()));
            }
            if ops.is_empty() || self.commit(what, compares, ops).await? {
                return Ok(());
            }
            self.lost(what, &mut attempt).await?;
        }
    }
}

#[async_trait]
impl MetaStore for EtcdMetaStore {
    async fn cluster_id(&self) -> Result<String> {
        Ok(self.cluster_id.clone())
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        if partitions < 1 {
            return Err(MetaError::Invalid(format!("{partitions} partitions")));
        }
        let key = self.keys.topic(name);
        let topic = TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        let put = TxnOp::put(key.as_str(), encode(&key, &topic)?, None);
        // The compare fails only if the key exists, so there is nothing to retry.
        if self
            .commit(
                &format!("creating topic {name}"),
                vec![unchanged(&key, None)],
                vec![put],
            )
            .await?
        {
            Ok(topic)
        } else {
            Err(MetaError::AlreadyExists(name.to_string()))
        }
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        let key = self.keys.topic(name);
        let what = format!("deleting topic {name}");
        let mut attempt = 0;
        loop {
            let (topic, stored) = self
                .topic_stored(&key)
                .await?
                .ok_or_else(|| MetaError::NotFound(name.to_string()))?;
            let segments = self.keys.topic_segments(topic.id);
            let ops = vec![
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(segments.as_str(), Some(DeleteOptions::new().with_prefix())),
            ];
            if self
                .commit(&what, vec![unchanged(&key, Some(&stored))], ops)
                .await?
            {
                if let Some(m) = &self.manifests {
                    m.delete_topic(topic.id).await;
                }
                return Ok(topic);
            }
            self.lost(&what, &mut attempt).await?;
        }
    }

    async fn topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        Ok(self
            .topic_stored(&self.keys.topic(name))
            .await?
            .map(|(t, _)| t))
    }

    async fn topics(&self) -> Result<Vec<TopicMeta>> {
        let mut topics = Vec::new();
        for kv in self.range_prefix(&self.keys.topics()).await? {
            topics.push(decode::<TopicMeta>(kv.key(), kv.value(), "topic")?);
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    async fn add_partitions(&self, name: &str, total: i32) -> Result<TopicMeta> {
        self.update_topic(
            name,
            || MetaError::NotFound(name.to_string()),
            |t| {
                if total <= t.partitions {
                    return Err(MetaError::Invalid(format!(
                        "topic {name} has {} partitions; the new count {total} must be larger",
                        t.partitions
                    )));
                }
                t.partitions = total;
                Ok(())
            },
        )
        .await
    }

    async fn commit_offsets(&self, group: &str, offsets: Vec<OffsetEntry>) -> Result<()> {
        let blocks = self.blocks(
            group,
            offsets
                .into_iter()
                .map(|e| (e.topic, e.partition, e.committed))
                .collect(),
        )?;
        self.update_offsets(
            &format!("committing offsets of group {group}"),
            blocks,
            |offsets, partition, committed| {
                offsets.insert(partition, committed.clone());
            },
        )
        .await
    }

    async fn committed_offsets(&self, group: &str) -> Result<Vec<OffsetEntry>> {
        let prefix = self.keys.group(group);
        let mut out = Vec::new();
        for kv in self.range_prefix(&prefix).await? {
            let rest = kv.key().get(prefix.len()..).unwrap_or_default();
            let topic = rest
                .split(|b| *b == b'/')
                .next()
                .and_then(unescape)
                .ok_or_else(|| {
                    MetaError::Unavailable(format!(
                        "etcd key {} does not name a topic",
                        shown(kv.key())
                    ))
                })?;
            let offsets: BTreeMap<i32, CommittedOffset> =
                decode(kv.key(), kv.value(), "offsets block")?;
            out.extend(
                offsets
                    .into_iter()
                    .map(|(partition, committed)| OffsetEntry {
                        topic: topic.clone(),
                        partition,
                        committed,
                    }),
            );
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    async fn delete_offsets(&self, group: &str, partitions: Vec<(String, i32)>) -> Result<()> {
        let blocks = self.blocks(
            group,
            partitions.into_iter().map(|(t, p)| (t, p, ())).collect(),
        )?;
        self.update_offsets(
            &format!("deleting offsets of group {group}"),
            blocks,
            |offsets, partition, ()| {
                offsets.remove(&partition);
            },
        )
        .await
    }

    async fn delete_group_offsets(&self, group: &str) -> Result<()> {
        let prefix = self.keys.group(group);
        self.call_again(&format!("deleting offsets of group {group}"), |mut kv| {
            let prefix = prefix.clone();
            async move {
                kv.delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix()))
                    .await
            }
        })
        .await?;
        Ok(())
    }

    async fn offset_groups(&self) -> Result<Vec<String>> {
        // Keys only, in pages at one revision; after each page, skip the rest of the last
        // group's keys, so a group with many offset keys costs one page, not many.
        let base = self.keys.offsets();
        let end = prefix_end(&base);
        let mut from = base.as_bytes().to_vec();
        let mut revision = 0;
        let mut escaped: Vec<Vec<u8>> = Vec::new();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(PAGE)
                .with_keys_only()
                .with_revision(revision);
            let resp = self
                .call_again("listing offset groups", |mut kv| {
                    let (from, options) = (from.clone(), options.clone());
                    async move { kv.get(from, Some(options)).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                let rest = kv.key().get(base.len()..).unwrap_or_default();
                let group = rest.split(|b| *b == b'/').next().unwrap_or_default();
                if escaped.last().map(Vec::as_slice) != Some(group) {
                    escaped.push(group.to_vec());
                }
            }
            match escaped.last() {
                Some(last) if resp.more() => {
                    // `0` follows `/`: past every key of this group, before any later group.
                    from = format!("{base}{}0", String::from_utf8_lossy(last)).into_bytes();
                }
                _ => break,
            }
        }
        let mut groups = escaped
            .iter()
            .map(|g| {
                unescape(g).ok_or_else(|| {
                    MetaError::Unavailable(format!(
                        "etcd keys under {base}{} do not name a group",
                        shown(g)
                    ))
                })
            })
            .collect::<Result<Vec<String>>>()?;
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    async fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        if count < 1 {
            return Err(MetaError::Invalid(format!(
                "cannot allocate {count} producer ids"
            )));
        }
        let key = self.keys.producer_ids();
        let what = "allocating producer ids";
        let mut attempt = 0;
        loop {
            let stored = self.get(&key).await?;
            let first = match &stored {
                Some(s) => std::str::from_utf8(&s.value)
                    .ok()
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| {
                        MetaError::Unavailable(format!(
                            "etcd key {key} does not hold a producer id"
                        ))
                    })?,
                None => 0,
            };
            let next = first
                .checked_add(count)
                .ok_or_else(|| MetaError::Invalid("producer ids exhausted".into()))?;
            let put = TxnOp::put(key.as_str(), next.to_string(), None);
            if self
                .commit(what, vec![unchanged(&key, stored.as_ref())], vec![put])
                .await?
            {
                return Ok(first);
            }
            self.lost(what, &mut attempt).await?;
        }
    }

    async fn add_segment(&self, topic_id: Uuid, partition: i32, entry: SegmentEntry) -> Result<()> {
        let prefix = self.keys.partition(topic_id, partition);
        let head_key = head_key(&prefix);
        let tail_start = segments_start(&prefix);
        let what = format!("adding segment {} to {prefix}", entry.base_offset);
        let mut attempt = 0;
        loop {
            let (head, stored, tail) = self.read_partition(&prefix).await?;
            crate::check_new_segment(&entry, head.newest_epoch, head.end_offset)?;
            let mut new_head = Head {
                log_start_offset: head.log_start_offset,
                end_offset: entry.end_offset,
                newest_epoch: entry.leader_epoch,
                manifest: head.manifest.clone(),
            };
            // A segment wholly below the log start (raised past the archive's end) is not
            // readable: only the index end moves.
            let keep = entry.end_offset > head.log_start_offset;
            let fold = self
                .manifests
                .as_ref()
                .filter(|_| keep && tail.len() + 1 >= self.options.fold_segments_at.max(1));
            let mut ops = Vec::new();
            let mut written = None;
            if let Some(m) = fold {
                // The keys and the older manifest become one new manifest; the keys go.
                let Some(older) = self.manifest_of(&head, &prefix).await? else {
                    self.lost(&what, &mut attempt).await?;
                    continue;
                };
                let start = head.log_start_offset;
                let mut all: Vec<SegmentEntry> = older
                    .into_iter()
                    .chain(tail)
                    .filter(|e| e.end_offset > start)
                    .collect();
                all.push(entry.clone());
                let path = m.path(topic_id, partition, entry.end_offset);
                m.put(&path, &all).await?;
                new_head.manifest = Some(ManifestRef {
                    path: path.clone(),
                    segments: all.len(),
                });
                ops.push(TxnOp::delete(
                    tail_start.as_str(),
                    Some(DeleteOptions::new().with_prefix()),
                ));
                written = Some((m, path));
            } else if keep {
                let key = segment_key(&prefix, entry.base_offset);
                ops.push(TxnOp::put(key.as_str(), encode(&key, &entry)?, None));
            }
            ops.insert(
                0,
                TxnOp::put(head_key.as_str(), encode(&head_key, &new_head)?, None),
            );
            if self
                .commit(&what, vec![unchanged(&head_key, stored.as_ref())], ops)
                .await?
            {
                if let (Some((m, _)), Some(old)) = (&written, &head.manifest) {
                    m.delete(&old.path).await;
                }
                return Ok(());
            }
            if let Some((m, path)) = &written {
                m.delete(path).await;
            }
            self.lost(&what, &mut attempt).await?;
        }
    }

    async fn partition_index(&self, topic_id: Uuid, partition: i32) -> Result<PartitionIndex> {
        let prefix = self.keys.partition(topic_id, partition);
        let what = format!("reading the segment index of {prefix}");
        let mut attempt = 0;
        loop {
            let (head, _, tail) = self.read_partition(&prefix).await?;
            let Some(older) = self.manifest_of(&head, &prefix).await? else {
                // Folded again (and the manifest read replaced) between the two reads.
                self.lost(&what, &mut attempt).await?;
                continue;
            };
            let start = head.log_start_offset;
            return Ok(PartitionIndex {
                log_start_offset: start,
                end_offset: head.end_offset,
                segments: older
                    .into_iter()
                    .chain(tail)
                    .filter(|e| e.end_offset > start)
                    .collect(),
            });
        }
    }

    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<Vec<SegmentEntry>> {
        if offset <= 0 {
            // The log start is never below 0 and never moves back.
            return Ok(Vec::new());
        }
        let prefix = self.keys.partition(topic_id, partition);
        let head_key = head_key(&prefix);
        let segments = segments_start(&prefix);
        let what = format!("advancing the log start of {prefix} to {offset}");
        let mut attempt = 0;
        loop {
            // The head and every segment starting below `offset`, at one revision.
            let kvs = self
                .range(&prefix, segment_key(&prefix, offset).into_bytes())
                .await?;
            let mut head = None;
            let mut below = Vec::new();
            for kv in kvs {
                if kv.key() == head_key.as_bytes() {
                    let value: Head = decode(kv.key(), kv.value(), "partition head")?;
                    head = Some((value, Stored::from(kv)));
                } else if kv.key().starts_with(segments.as_bytes()) {
                    below.push(decode::<SegmentEntry>(
                        kv.key(),
                        kv.value(),
                        "segment entry",
                    )?);
                }
            }
            let (mut value, stored) = match head {
                Some((value, stored)) => (value, Some(stored)),
                None => (Head::default(), None),
            };
            if offset <= value.log_start_offset {
                return Ok(Vec::new());
            }
            let Some(folded) = self.manifest_of(&value, &prefix).await? else {
                self.lost(&what, &mut attempt).await?;
                continue;
            };
            let old_start = value.log_start_offset;
            value.log_start_offset = offset;
            // The folded segments it passes are dropped from the manifest at its next fold
            // (reads skip them meanwhile); the keys it passes are deleted now.
            let mut removed: Vec<SegmentEntry> = folded
                .into_iter()
                .filter(|e| e.end_offset > old_start && e.end_offset <= offset)
                .collect();
            let tail_removed: Vec<SegmentEntry> = below
                .into_iter()
                .take_while(|e| e.end_offset <= offset)
                .collect();
            let last_key = tail_removed.last().map(|e| e.base_offset);
            removed.extend(tail_removed);
            let mut ops = vec![TxnOp::put(
                head_key.as_str(),
                encode(&head_key, &value)?,
                None,
            )];
            if let Some(last) = last_key {
                let mut end = segment_key(&prefix, last).into_bytes();
                end.push(0);
                ops.push(TxnOp::delete(
                    segments.as_str(),
                    Some(DeleteOptions::new().with_range(end)),
                ));
            }
            if self
                .commit(&what, vec![unchanged(&head_key, stored.as_ref())], ops)
                .await?
            {
                return Ok(removed);
            }
            self.lost(&what, &mut attempt).await?;
        }
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        self.update_topic(
            name,
            || MetaError::NotFound(format!("topic {name}")),
            |t| {
                t.configs = configs.clone();
                Ok(())
            },
        )
        .await
    }

    async fn acls(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for kv in self.range_prefix(&self.keys.acls()).await? {
            out.push(decode::<String>(kv.key(), kv.value(), "ACL")?);
        }
        out.sort();
        Ok(out)
    }

    async fn add_acls(&self, mut acls: Vec<String>) -> Result<()> {
        // One key per ACL (its text, escaped): adding twice is one key, and concurrent
        // changes of different ACLs never race. etcd refuses a key twice in one transaction.
        acls.sort();
        acls.dedup();
        let mut ops = Vec::new();
        for a in &acls {
            let key = format!("{}{}", self.keys.acls(), escape(a));
            ops.push(TxnOp::put(key.as_str(), encode(&key, a)?, None));
        }
        for chunk in ops.chunks(64) {
            self.commit("storing ACLs", Vec::new(), chunk.to_vec())
                .await?;
        }
        Ok(())
    }

    async fn remove_acls(&self, mut acls: Vec<String>) -> Result<()> {
        acls.sort();
        acls.dedup();
        let ops: Vec<TxnOp> = acls
            .iter()
            .map(|a| TxnOp::delete(format!("{}{}", self.keys.acls(), escape(a)), None))
            .collect();
        for chunk in ops.chunks(64) {
            self.commit("removing ACLs", Vec::new(), chunk.to_vec())
                .await?;
        }
        Ok(())
    }

    async fn user_credentials(&self) -> Result<Vec<UserCredential>> {
        let prefix = self.keys.users();
        let mut out = Vec::new();
        for kv in self.range_prefix(&prefix).await? {
            let rest = kv.key().get(prefix.len()..).unwrap_or_default();
            let parsed = rest
                .iter()
                .position(|&b| b == b'/')
                .and_then(|slash| Some((unescape(&rest[..slash])?, unescape(&rest[slash + 1..])?)));
            let Some((user, mechanism)) = parsed else {
                return Err(MetaError::Invalid(format!(
                    "unexpected key {} under {prefix}",
                    String::from_utf8_lossy(kv.key())
                )));
            };
            let credential = decode::<String>(kv.key(), kv.value(), "user credential")?;
            out.push(UserCredential {
                user,
                mechanism,
                credential,
            });
        }
        out.sort_by(|a, b| (&a.user, &a.mechanism).cmp(&(&b.user, &b.mechanism)));
        Ok(out)
    }

    async fn user_credential(&self, user: &str, mechanism: &str) -> Result<Option<String>> {
        let key = self.keys.user_credential(user, mechanism);
        match self.get(&key).await? {
            Some(stored) => decode(key.as_bytes(), &stored.value, "user credential").map(Some),
            None => Ok(None),
        }
    }

    async fn put_user_credential(
        &self,
        user: &str,
        mechanism: &str,
        credential: String,
    ) -> Result<()> {
        let key = self.keys.user_credential(user, mechanism);
        let value = encode(&key, &credential)?;
        self.call_again(&format!("writing {key}"), |mut kv| {
            let (key, value) = (key.clone(), value.clone());
            async move { kv.put(key.as_str(), value, None).await }
        })
        .await?;
        Ok(())
    }

    async fn delete_user_credential(&self, user: &str, mechanism: &str) -> Result<bool> {
        let key = self.keys.user_credential(user, mechanism);
        let resp = self
            .call_again(&format!("deleting {key}"), |mut kv| {
                let key = key.clone();
                async move { kv.delete(key.as_str(), None).await }
            })
            .await?;
        Ok(resp.deleted() > 0)
    }

    async fn broker_configs(&self, scope: &str) -> Result<BTreeMap<String, String>> {
        let key = self.keys.broker_configs(scope);
        match self.get(&key).await? {
            Some(stored) => decode(key.as_bytes(), &stored.value, "broker config set"),
            None => Ok(BTreeMap::new()),
        }
    }

    async fn set_broker_configs(
        &self,
        scope: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        // The whole set is replaced: one put (or delete), no read-modify-write to race.
        let key = self.keys.broker_configs(scope);
        if configs.is_empty() {
            self.call_again(&format!("deleting {key}"), |mut kv| {
                let key = key.clone();
                async move { kv.delete(key.as_str(), None).await }
            })
            .await?;
        } else {
            let value = encode(&key, &configs)?;
            self.call_again(&format!("writing {key}"), |mut kv| {
                let (key, value) = (key.clone(), value.clone());
                async move { kv.put(key.as_str(), value, None).await }
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_keeps_slashes_out() {
        for name in ["plain-name_1.x", "a/b", "100%", "", "ü ñ", "%2F", "a\u{0}b"] {
            let e = escape(name);
            assert!(!e.contains('/'), "{e}");
            assert_eq!(unescape(e.as_bytes()).as_deref(), Some(name));
        }
        assert_eq!(escape("orders.v2-eu_1"), "orders.v2-eu_1");
        assert_eq!(escape("a/b"), "a%2Fb");
        for bad in ["%", "%4", "%zz", "%FF"] {
            assert_eq!(unescape(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn segment_keys_sort_in_offset_order() {
        let prefix = "/p/segments/x/0/";
        let mut bases = [0i64, 9, 10, 99, 100, 1_000_000, i64::MAX];
        let mut keys: Vec<String> = bases.iter().map(|b| segment_key(prefix, *b)).collect();
        keys.sort();
        bases.sort();
        assert_eq!(
            keys,
            bases
                .iter()
                .map(|b| segment_key(prefix, *b))
                .collect::<Vec<_>>()
        );
        assert!(head_key(prefix) < segments_start(prefix));
        assert!(segment_key(prefix, i64::MAX).as_bytes() < prefix_end(prefix).as_slice());
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("ab"), b"ac".to_vec());
        let keys = Keys { root: "/s".into() };
        // Partition 1's range does not reach partition 10's keys.
        let id = Uuid::new_v4();
        let p1 = keys.partition(id, 1);
        let p10 = keys.partition(id, 10);
        assert!(p10.as_bytes() >= prefix_end(&p1).as_slice());
        // Nor a group's range the keys of other groups whose names it starts.
        let g = keys.group("g");
        for other in ["g-1", "g0", "g.x", "g%", "gg", "g/h"] {
            let key = keys.offsets_block(other, "t", 0);
            assert!(
                key.as_str() < g.as_str() || key.as_bytes() >= prefix_end(&g).as_slice(),
                "{key} is inside {g}*"
            );
        }
    }

    #[test]
    fn offset_blocks_group_partitions_by_32() {
        let keys = Keys {
            root: "/s/".trim_end_matches('/').into(),
        };
        assert_eq!(keys.offsets_block("g", "t", 0), "/s/offsets/g/t/0");
        assert_eq!(keys.offsets_block("g", "t", 31), "/s/offsets/g/t/0");
        assert_eq!(keys.offsets_block("g", "t", 32), "/s/offsets/g/t/1");
        assert_eq!(keys.offsets_block("g/h", "t", 5), "/s/offsets/g%2Fh/t/0");
    }

    /// What a segment costs in etcd, before etcd's own per-key overhead (measured against a
    /// real etcd in `tests/etcd.rs`). Printed so the numbers in ADR 0019 can be re-measured.
    #[test]
    fn bytes_per_segment_entry() {
        let topic = "orders";
        let keys = Keys {
            root: "/sediment".into(),
        };
        let id = Uuid::new_v4();
        let n = 10_000i64;
        let prefix = keys.partition(id, 123);
        let mut key_bytes = 0usize;
        let mut value_bytes = 0usize;
        let mut entries = Vec::new();
        for i in 0..n {
            // One-minute segments of ~60k records, with realistic timestamps.
            let base = 1_000_000_000 + i * 60_000;
            let entry = SegmentEntry {
                base_offset: base,
                end_offset: base + 60_000,
                min_timestamp: 1_767_225_600_000 + i * 60_000,
                max_timestamp: 1_767_225_600_000 + i * 60_000 + 59_999,
                size_bytes: 8_388_608 + (i as u64 % 1000),
                leader_epoch: 7,
                path: format!("topics/{topic}/partition=123/{base:020}-7.parquet"),
            };
            key_bytes += segment_key(&prefix, base).len();
            value_bytes += serde_json::to_vec(&entry).unwrap().len();
            entries.push(entry);
        }
        let one_value = serde_json::to_vec(&entries).unwrap().len();
        let (per_key, per_value) = (key_bytes as f64 / n as f64, value_bytes as f64 / n as f64);
        println!(
            "segment entry: key {per_key:.0} B + value {per_value:.0} B per segment; \
             as one JSON array per partition {:.0} B per segment",
            one_value as f64 / n as f64
        );
        assert!(
            per_value < 300.0 && per_key < 100.0,
            "{per_key} + {per_value}"
        );
    }
}
