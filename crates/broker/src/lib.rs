//! The broker: partitions, the Kafka API handlers, and the HTTP health/metrics endpoint.
//!
//! Follow a produce request from [`server`] (one task per connection, responses written in
//! request order) to [`handlers::produce`] (validate, assign offsets under the partition's lock,
//! hand the batch to the WAL) and on to [`log`], where the WAL's writer thread reports what it
//! wrote and synced so that the partition index and high watermark advance in log order.
//! A fetch reads the same index and `pread`s batch bytes back out of the WAL segment files.

pub mod archive;
pub mod authz;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod disk;
pub mod dynamic;
pub mod follower;
/// The group coordinator (its own crate: it depends on nothing else of the broker).
pub use sediment_coordinator as groups;
pub mod handlers;
pub mod health;
pub mod http;
pub mod log;
pub mod metrics;
pub mod retention;
pub mod security;
pub mod server;
pub mod topics;
pub mod uploader;

use std::sync::{Arc, Mutex, RwLock};

use sediment_meta::MetaStore;
use sediment_storage::Store;
use sediment_wal::{Segments, Wal, WalConfig};
use tokio::sync::{watch, Semaphore};
use tracing::info;

pub use config::BrokerConfig;

use crate::log::Registry;
use crate::metrics::Metrics;

/// Failure to start the broker.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Meta(#[from] sediment_meta::MetaError),
    #[error(transparent)]
    Wal(#[from] sediment_wal::WalError),
    #[error(transparent)]
    Storage(#[from] sediment_storage::StorageError),
    #[error("{0}")]
    State(String),
}

/// Everything the handlers share.
pub struct Broker {
    pub config: BrokerConfig,
    pub meta: Arc<dyn MetaStore>,
    /// ACL checks, when an authorizer is configured.
    pub authorizer: Option<authz::Authorizer>,
    /// Cluster mode (etcd): the live brokers and partition states; `None` on a single node.
    cluster: Option<Arc<cluster::Cluster>>,
    pub registry: Arc<Registry>,
    pub segments: Segments,
    pub metrics: Arc<Metrics>,
    pub object_store: Store,
    pub archive: Arc<archive::Archive>,
    encoders: uploader::EncoderPool,
    pub coordinator: groups::Coordinator,
    /// What `/health` and `/ready` report.
    pub health: Arc<health::Health>,
    /// Dynamic broker configs in force (see [`dynamic`]).
    pub dynamic: RwLock<dynamic::DynamicConfigs>,
    /// Most open Kafka connections (`--max-connections`, or the dynamic `max.connections`).
    pub connection_limit: std::sync::atomic::AtomicUsize,
    /// Most WAL bytes on disk before producers are refused (from the config, or sized from
    /// the filesystem).
    pub wal_budget: u64,
    /// Free space on the WAL's filesystem below which producers are refused, and the free
    /// space last measured (by [`Broker::run_disk_watch`]).
    pub disk_reserve: u64,
    disk_free: std::sync::atomic::AtomicU64,
    /// The background loops, owned here and awaited at shutdown.
    background: Mutex<Option<tokio::task::JoinSet<()>>>,
    cluster_id: String,
    /// The current block of producer ids: next to hand out, end of block.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    wal: Mutex<Option<Wal>>,
    /// Bytes (in KiB permits) produced but not yet synced: bounds memory when producers outrun
    /// the disk. A producer waits for permits before its batch is queued.
    pending: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
}

impl Broker {
    /// Opens metadata and the WAL, rebuilds every partition from the WAL, and returns the broker
    /// ready to serve.
    pub async fn open(
        config: BrokerConfig,
        meta: Arc<dyn MetaStore>,
        object_store: Store,
    ) -> Result<Arc<Self>, StartError> {
        Self::open_in(config, meta, None, object_store).await
    }

    /// [`Broker::open`] for a member of a cluster: partitions start without a role until
    /// [`Broker::join_cluster`] has registered this broker and loaded their states.
    pub async fn open_in(
        config: BrokerConfig,
        meta: Arc<dyn MetaStore>,
        cluster: Option<Arc<cluster::Cluster>>,
        object_store: Store,
    ) -> Result<Arc<Self>, StartError> {
        match object_store.check().await {
            Ok(()) => {}
            // A local store on a full disk: start anyway, so what is stored can be read and
            // uploads resume once space is back.
            Err(e) if object_store.local.is_some() && disk::is_no_space(&e) => {
                tracing::warn!(error = %e, "the local object store's disk is full; starting to serve reads");
            }
            Err(e) => return Err(e.into()),
        }
        let cluster_id = meta.cluster_id().await?;
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::new(metrics.clone(), config.clock.clone()));
        let dynamic = dynamic::DynamicConfigs {
            cluster: meta.broker_configs("").await?,
            broker: meta.broker_configs(&config.broker_id.to_string()).await?,
        };
        registry.set_defaults(dynamic.topic_defaults());
        let connection_limit = dynamic.max_connections(config.max_connections);
        for t in meta.topics().await? {
            registry.upsert_topic(t);
        }
        // The archive first: partitions continue where it ends, and the WAL is replayed on top.
        Self::load_archive_state(meta.as_ref(), &registry).await?;
        let snapshot = log::ProducerSnapshot::load(&config.data_dir)
            .map_err(|e| StartError::State(e.to_string()))?;
        let archive = Arc::new(
            archive::Archive::open(&config, object_store.store.clone(), metrics.clone())
                .await
                .map_err(StartError::State)?,
        );
        let wal_dir = config.data_dir.join("wal");
        std::fs::create_dir_all(&wal_dir)
            .map_err(|e| StartError::State(format!("creating {}: {e}", wal_dir.display())))?;
        let fs = disk::space(&wal_dir).map_err(|e| {
            StartError::State(format!(
                "reading the size of {}'s filesystem: {e}",
                wal_dir.display()
            ))
        })?;
        let cache_dir = config
            .cache_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("cache"));
        let cache_here = if disk::same_fs(&wal_dir, &cache_dir) {
            disk::fitting_cache_bytes(config.cache_disk_bytes, fs.total) as u64
        } else {
            0
        };
        let wal_budget = config
            .wal_budget_bytes
            .unwrap_or_else(|| disk::default_wal_budget(fs.total, cache_here));
        let disk_reserve = disk::reserve_bytes(fs.total);
        info!(
            filesystem_bytes = fs.total,
            available_bytes = fs.available,
            wal_budget,
            disk_reserve,
            "wal disk"
        );
        let mut wal_config = WalConfig::new(wal_dir);
        wal_config.segment_bytes = config.wal_segment_bytes;
        wal_config.sync = config.wal_sync;
        let (wal, recovered) = Wal::open(wal_config, registry.clone())?;
        let entries = recovered.entries.len();
        registry.recover(&recovered.entries, &wal.segments(), &snapshot);
        if cluster.is_some() {
            registry.set_clustered();
        }
        info!(
            entries,
            topics = registry.topic_count(),
            truncated_bytes = recovered.truncated_bytes,
            "partitions rebuilt from the wal"
        );
        let permits = (config.max_pending_bytes / 1024).max(1);
        let config_groups = config.groups.clone();
        let (shutdown, _) = watch::channel(false);
        let authorizer = config.authorizer.clone().map(authz::Authorizer::new);
        let broker = Arc::new(Self {
            authorizer,
            segments: wal.segments(),
            wal: Mutex::new(Some(wal)),
            pending: Arc::new(Semaphore::new(permits)),
            config,
            meta,
            cluster,
            registry,
            metrics,
            object_store,
            archive,
            // One encoder per core but one: uploads keep up without starving request handling.
            encoders: uploader::EncoderPool::new(
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)),
            ),
            coordinator: groups::Coordinator::new(config_groups),
            health: Arc::default(),
            connection_limit: std::sync::atomic::AtomicUsize::new(connection_limit),
            dynamic: RwLock::new(dynamic),
            wal_budget,
            disk_reserve,
            disk_free: std::sync::atomic::AtomicU64::new(fs.available),
            background: Mutex::new(Some(tokio::task::JoinSet::new())),
            cluster_id,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            shutdown,
        });
        broker
            .metrics
            .wal_disk_bytes
            .set(broker.segments.disk_bytes() as i64);
        if broker.authorizer.is_some() {
            // Denied until loaded would refuse everyone at start; allowed would be worse.
            let stored = broker.meta.acls().await?;
            if let Some(a) = &broker.authorizer {
                a.load(&stored);
            }
        }
        Ok(broker)
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Subscribes to the shutdown signal.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Asks every connection to stop taking requests.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Starts the background loops (uploader every `uploader_tick`, retention, offset expiry)
    /// under the broker's supervision: one that ends before shutdown, or panics, is recorded
    /// in [`Broker::health`] and fails `/health`.
    pub fn start_background(self: &Arc<Self>, uploader_tick: std::time::Duration) {
        let b = self.clone();
        self.supervise(
            "uploader",
            async move { b.run_uploader(uploader_tick).await },
        );
        let b = self.clone();
        self.supervise("retention", async move { b.run_retention().await });
        if self.authorizer.is_some() {
            let b = self.clone();
            self.supervise("acl refresh", b.run_acl_refresh());
        }
        let b = self.clone();
        self.supervise("disk watch", async move {
            b.run_disk_watch(std::time::Duration::from_millis(100))
                .await
        });
        let b = self.clone();
        self.supervise("offset expiry", async move {
            b.run_offset_expiry(std::time::Duration::from_secs(60))
                .await
        });
    }

    /// Runs `task` in the broker's set of background tasks, recording how it ends.
    pub fn supervise(
        self: &Arc<Self>,
        name: &'static str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        use futures::FutureExt;
        let (health, stop) = (self.health.clone(), self.shutdown_signal());
        let wrapped = async move {
            match std::panic::AssertUnwindSafe(task).catch_unwind().await {
                Ok(()) if *stop.borrow() => {}
                Ok(()) => {
                    tracing::error!(task = name, "background task stopped unexpectedly");
                    health.fail(name, "stopped unexpectedly");
                }
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panicked".into());
                    tracing::error!(task = name, panic = %why, "background task panicked");
                    health.fail(name, format!("panicked: {why}"));
                }
            }
        };
        match self.background.lock() {
            Ok(mut set) => match set.as_mut() {
                Some(set) => {
                    set.spawn(wrapped);
                }
                None => tracing::warn!(task = name, "not started: the broker is stopping"),
            },
            Err(_) => tracing::warn!(task = name, "not started: supervisor poisoned"),
        }
    }

    /// Waits for every background task to finish (call after [`Broker::begin_shutdown`]).
    pub async fn stop_background(&self) {
        let set = self.background.lock().ok().and_then(|mut s| s.take());
        if let Some(mut set) = set {
            while set.join_next().await.is_some() {}
        }
    }

    /// What the health endpoints report now.
    pub fn health_report(&self) -> health::Report {
        let wal = match self.wal.lock() {
            Ok(w) => w.as_ref().and_then(Wal::problem),
            Err(_) => Some("wal lock poisoned".into()),
        };
        let mut report = self.health.report(wal, *self.shutdown.borrow());
        if let Some(why) = self.disk_refusal() {
            // Reads go on: degraded, not unready.
            report
                .problems
                .push(format!("degraded: produce refused: {why}"));
        }
        report
    }

    /// Writes and syncs whatever the WAL holds, then closes it.
    pub fn close_wal(&self) {
        let wal = self.wal.lock().ok().and_then(|mut w| w.take());
        if let Some(mut wal) = wal {
            wal.close();
            info!("wal synced and closed");
        }
    }
}

impl Broker {
    /// The topic `name`, auto-creating it when `auto_create` and the broker allow.
    /// On failure, the Kafka error code to answer with.
    pub async fn ensure_topic(
        self: &Arc<Self>,
        name: &str,
        auto_create: bool,
    ) -> Result<Arc<log::Topic>, i16> {
        use kafka_protocol::ResponseError;
        if let Some(t) = self.registry.topic(name) {
            return Ok(t);
        }
        if topics::validate_name(name).is_err() {
            return Err(ResponseError::InvalidTopicException.code());
        }
        if !(auto_create && self.config.auto_create_topics) {
            return Err(ResponseError::UnknownTopicOrPartition.code());
        }
        match self
            .create_topic_placed(
                name,
                self.config.num_partitions,
                Default::default(),
                -1,
                None,
            )
            .await
        {
            Ok(meta) => {
                info!(
                    topic = name,
                    partitions = meta.partitions,
                    "auto-created topic"
                );
                Ok(self.registry.upsert_topic(meta))
            }
            Err((code, _)) if code == ResponseError::TopicAlreadyExists.code() => {
                match self.meta.topic(name).await {
                    Ok(Some(meta)) => Ok(self.registry.upsert_topic(meta)),
                    _ => Err(ResponseError::UnknownTopicOrPartition.code()),
                }
            }
            Err((code, e)) => {
                tracing::warn!(topic = name, error = %e, "auto-create failed");
                Err(code)
            }
        }
    }
}

impl Broker {
    /// Queues an append on the WAL.
    pub(crate) fn submit(
        &self,
        append: sediment_wal::Append,
    ) -> Result<(), sediment_wal::WalError> {
        match self.wal.lock() {
            Ok(w) => match w.as_ref() {
                Some(w) => w.submit(append),
                None => Err(sediment_wal::WalError::Closed),
            },
            Err(_) => Err(sediment_wal::WalError::Failed),
        }
    }

    /// Kafka refuses an empty group id; a very long one is refused too (it would be stored
    /// with every committed offset). In a cluster, a group's requests go to its coordinator:
    /// NOT_COORDINATOR anywhere else, so the client looks it up again.
    pub fn check_group_id(&self, id: &str) -> Result<(), i16> {
        if id.is_empty() || id.len() > self.config.max_group_id_len {
            return Err(kafka_protocol::ResponseError::InvalidGroupId.code());
        }
        if let Some(cluster) = &self.cluster {
            let mine = cluster
                .coordinator_for(id)
                .is_some_and(|b| b.broker_id == self.config.broker_id);
            if !mine {
                return Err(kafka_protocol::ResponseError::NotCoordinator.code());
            }
        }
        Ok(())
    }

    /// A fresh producer id, from a block reserved in the MetaStore (1000 at a time, so a
    /// restart skips at most the rest of a block and never reuses an id).
    pub async fn next_producer_id(&self) -> Result<i64, sediment_meta::MetaError> {
        const BLOCK: i64 = 1000;
        // A tokio Mutex: the MetaStore call is awaited while it is held, on purpose, so two
        // requests do not both reserve a block.
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let first = self.meta.allocate_producer_ids(BLOCK).await?;
            *ids = (first, first + BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Deletes committed offsets older than the retention of groups that have no members
    /// (KIP-211: a group's offsets are kept while it has members). `now_ms` is passed in so
    /// tests need not wait. Returns how many offsets went.
    pub async fn expire_offsets(&self, now_ms: i64) -> usize {
        let retention_ms = self.config.offsets_retention.as_millis() as i64;
        let groups = self.meta.offset_groups().await.unwrap_or_default();
        let mut expired = 0;
        for group in groups {
            let active = self
                .coordinator
                .view(&group)
                .await
                .is_some_and(|v| !v.members.is_empty());
            if active {
                continue;
            }
            let old: Vec<(String, i32)> = self
                .meta
                .committed_offsets(&group)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.committed.commit_timestamp_ms.saturating_add(retention_ms) < now_ms)
                .map(|e| (e.topic, e.partition))
                .collect();
            if old.is_empty() {
                continue;
            }
            let n = old.len();
            match self.meta.delete_offsets(&group, old).await {
                Ok(()) => {
                    info!(group, offsets = n, "expired committed offsets");
                    expired += n;
                }
                Err(e) => tracing::warn!(group, error = %e, "expiring offsets failed"),
            }
        }
        expired
    }

    /// Runs [`Broker::expire_offsets`] every `every` until shutdown.
    pub async fn run_offset_expiry(self: Arc<Self>, every: std::time::Duration) {
        let mut stop = self.shutdown_signal();
        loop {
            tokio::select! {
                _ = wait_stopped(&mut stop) => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.expire_offsets(self.config.clock.wall_ms()).await;
        }
    }

    pub(crate) fn pending_permits_total(&self) -> u32 {
        (self.config.max_pending_bytes / 1024).max(1) as u32
    }
}

/// Resolves once `rx` reports shutdown (or its sender is gone).
pub async fn wait_stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

impl Broker {
    /// Why produce is refused right now for lack of disk, if it is: the WAL is suspended after
    /// a failed write, or free space on its filesystem is below the reserve.
    pub fn disk_refusal(&self) -> Option<String> {
        if self.wal_suspended() {
            return Some(
                "the write-ahead log's disk is full: writes resume once space is free; retry later"
                    .into(),
            );
        }
        let free = self.disk_free.load(std::sync::atomic::Ordering::Relaxed);
        (free < self.disk_reserve).then(|| {
            format!(
                "the write-ahead log's disk has {free} bytes free, below the {} kept in reserve; \
                 retry later",
                self.disk_reserve
            )
        })
    }

    /// Whether the WAL refuses writes after a failed one (see [`sediment_wal::Wal::resume`]).
    pub fn wal_suspended(&self) -> bool {
        self.wal
            .lock()
            .map(|w| w.as_ref().is_some_and(Wal::is_suspended))
            .unwrap_or(false)
    }

    /// Measures free space on the WAL's filesystem, and resumes a suspended WAL once there is
    /// room again. Returns whether it resumed.
    pub fn check_disk(&self) -> bool {
        let wal_dir = self.config.data_dir.join("wal");
        if let Ok(fs) = disk::space(&wal_dir) {
            self.disk_free
                .store(fs.available, std::sync::atomic::Ordering::Relaxed);
        }
        let free = self.disk_free.load(std::sync::atomic::Ordering::Relaxed);
        if self.wal_suspended() && free >= self.disk_reserve {
            return self.resume_wal();
        }
        false
    }

    /// Rolls every partition back to what the WAL wrote, then resumes the WAL.
    ///
    /// Offsets are handed out when a batch is queued, before it is written; the batches whose
    /// write failed (and everything queued behind them, which the suspended WAL failed too)
    /// hold offsets that now belong to nothing. With every partition's lock held, so that no
    /// batch is queued meanwhile, each partition's next offset goes back to the end of what
    /// was written, idempotent producer state forgets the failed batches (their retries must
    /// be appended, not answered as duplicates), and the resume is queued behind every failed
    /// append. Offsets stay dense, and nothing written is touched.
    fn resume_wal(&self) -> bool {
        let partitions: Vec<Arc<log::Partition>> = self
            .registry
            .topics()
            .iter()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect();
        let mut guards = Vec::with_capacity(partitions.len());
        for p in &partitions {
            match p.state.lock() {
                Ok(g) => guards.push(g),
                Err(_) => return false,
            }
        }
        let mut rolled_back = 0i64;
        for st in guards.iter_mut() {
            let written_end = st
                .index
                .last()
                .map_or(st.high_watermark.max(st.uploaded_end), |e| e.end_offset);
            if st.next_offset > written_end {
                rolled_back += st.next_offset - written_end;
                st.next_offset = written_end;
                st.rollbacks += 1;
                for p in st.producers.values_mut() {
                    p.batches.retain(|b| b.end_offset <= written_end);
                }
            }
        }
        let resumed = match self.wal.lock() {
            Ok(w) => w.as_ref().is_some_and(|w| w.resume().is_ok()),
            Err(_) => false,
        };
        drop(guards);
        if resumed {
            info!(
                offsets_rolled_back = rolled_back,
                "disk space is back: wal writes resume"
            );
        }
        resumed
    }

    /// Runs [`Broker::check_disk`] every `every` until shutdown.
    pub async fn run_disk_watch(self: Arc<Self>, every: std::time::Duration) {
        let mut stop = self.shutdown_signal();
        loop {
            tokio::select! {
                _ = wait_stopped(&mut stop) => return,
                _ = tokio::time::sleep(every) => {}
            }
            let b = self.clone();
            // statvfs and the partition locks: off the async workers.
            let _ = tokio::task::spawn_blocking(move || b.check_disk()).await;
        }
    }
}
