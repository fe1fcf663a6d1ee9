//! The broker: partitions, the Kafka API handlers, and the HTTP health/metrics endpoint.
//!
//! Follow a produce request from [`server`] (one task per connection, responses written in
//! request order) to [`handlers::produce`] (validate, assign offsets under the partition's lock,
//! hand the batch to the WAL) and on to [`log`], where the WAL's writer thread reports what it
//! wrote and synced so that the partition index and high watermark advance in log order.
//! A fetch reads the same index and `pread`s batch bytes back out of the WAL segment files.

pub mod archive;
pub mod clock;
pub mod config;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod log;
pub mod metrics;
pub mod retention;
pub mod server;
pub mod topics;
pub mod uploader;

use std::sync::{Arc, Mutex};

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
    pub registry: Arc<Registry>,
    pub segments: Segments,
    pub metrics: Arc<Metrics>,
    pub object_store: Store,
    pub archive: Arc<archive::Archive>,
    encoders: uploader::EncoderPool,
    pub coordinator: groups::Coordinator,
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
        object_store.check().await?;
        let cluster_id = meta.cluster_id().await?;
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::new(metrics.clone(), config.clock.clone()));
        for t in meta.topics().await? {
            registry.upsert_topic(t);
        }
        // The archive first: partitions continue where it ends, and the WAL is replayed on top.
        Self::load_archive_state(meta.as_ref(), &registry).await?;
        let snapshot = log::ProducerSnapshot::load(&config.data_dir).map_err(StartError::State)?;
        let archive = Arc::new(
            archive::Archive::open(&config, object_store.store.clone(), metrics.clone())
                .await
                .map_err(StartError::State)?,
        );
        let mut wal_config = WalConfig::new(config.data_dir.join("wal"));
        wal_config.segment_bytes = config.wal_segment_bytes;
        wal_config.sync = config.wal_sync;
        let (wal, recovered) = Wal::open(wal_config, registry.clone())?;
        let entries = recovered.entries.len();
        registry.recover(&recovered.entries, &wal.segments(), &snapshot);
        info!(
            entries,
            topics = registry.topic_count(),
            truncated_bytes = recovered.truncated_bytes,
            "partitions rebuilt from the wal"
        );
        let permits = (config.max_pending_bytes / 1024).max(1);
        let config_groups = config.groups.clone();
        let (shutdown, _) = watch::channel(false);
        let broker = Arc::new(Self {
            segments: wal.segments(),
            wal: Mutex::new(Some(wal)),
            pending: Arc::new(Semaphore::new(permits)),
            config,
            meta,
            registry,
            metrics,
            object_store,
            archive,
            // One encoder per core but one: uploads keep up without starving request handling.
            encoders: uploader::EncoderPool::new(
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)),
            ),
            coordinator: groups::Coordinator::new(config_groups),
            cluster_id,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            shutdown,
        });
        broker
            .metrics
            .wal_disk_bytes
            .set(broker.segments.disk_bytes() as i64);
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
        &self,
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
            .meta
            .create_topic(name, self.config.num_partitions, Default::default())
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
            Err(sediment_meta::MetaError::AlreadyExists(_)) => match self.meta.topic(name).await {
                Ok(Some(meta)) => Ok(self.registry.upsert_topic(meta)),
                _ => Err(ResponseError::UnknownTopicOrPartition.code()),
            },
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "auto-create failed");
                Err(handlers::meta_error_code(&e))
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
    /// with every committed offset).
    pub fn check_group_id(&self, id: &str) -> Result<(), i16> {
        if id.is_empty() || id.len() > self.config.max_group_id_len {
            Err(kafka_protocol::ResponseError::InvalidGroupId.code())
        } else {
            Ok(())
        }
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
