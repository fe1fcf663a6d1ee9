//! Broker settings (the parts the `sediment serve` flags feed).

use std::path::PathBuf;

/// Settings the broker runs with. Defaults match a Kafka broker's where one exists.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub broker_id: i32,
    /// Host and port given to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub data_dir: PathBuf,
    /// Largest request frame accepted (Kafka: socket.request.max.bytes, 100 MiB).
    pub max_request_bytes: usize,
    /// Default largest record batch (Kafka: message.max.bytes, 1048588).
    pub message_max_bytes: usize,
    /// Create unknown topics on Metadata and Produce (Kafka: auto.create.topics.enable).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (Kafka: num.partitions).
    pub num_partitions: i32,
    /// Most record bytes in one fetch response, whatever the client asks (Kafka:
    /// fetch.max.bytes, 55 MiB). The first batch is returned even if larger (KIP-74).
    pub fetch_max_bytes: usize,
    /// Most concurrent client connections.
    pub max_connections: usize,
    /// Most requests read ahead of their responses on one connection.
    pub max_inflight_per_connection: usize,
    /// Most produced bytes waiting for the WAL's sync before producers are made to wait.
    pub max_pending_bytes: usize,
    pub wal_segment_bytes: u64,
    /// fdatasync the WAL (turning this off loses acks=all durability; for experiments only).
    pub wal_sync: bool,
    /// Consumer-group settings (initial rebalance delay, session timeout bounds).
    pub groups: crate::groups::GroupConfig,
    /// Longest group id accepted.
    pub max_group_id_len: usize,
    /// A partition's durable batches are uploaded as a segment once they reach this many bytes
    pub segment_bytes: u64,
    /// ... or once this long has passed since its last upload.
    pub segment_interval: std::time::Duration,
    /// Committed offsets of a group without members expire this long after their commit
    /// (Kafka: offsets.retention.minutes, 7 days).
    pub offsets_retention: std::time::Duration,
    /// Memory for the archive read cache (rebuilt record batches and segment footers).
    pub cache_memory_bytes: usize,
    /// Local disk for the archive read cache (foyer's block engine), under `cache_dir`.
    pub cache_disk_bytes: usize,
    /// Where the disk cache lives (default: `<data_dir>/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Row groups fetched ahead of a consumer reading the archive.
    pub readahead_chunks: usize,
    /// Most bytes the WAL may hold on disk; beyond it (object storage down or slow) produce
    /// requests get the retriable KAFKA_STORAGE_ERROR until uploads free space.
    /// `None`: sized from the data directory's filesystem at start-up
    /// ([`crate::disk::default_wal_budget`]).
    pub wal_budget_bytes: Option<u64>,
    /// WAL bytes kept after their batches are archived (Kafka's local retention): consumers
    /// near the tail read them from the WAL; above it, archived WAL segments are deleted
    /// oldest first down to half of it.
    pub wal_retain_bytes: u64,
    /// Broker defaults for topics without overrides (Kafka's log.retention.ms and
    /// log.retention.bytes; -1 = unlimited).
    pub retention_ms: i64,
    pub retention_bytes: i64,
    /// How often retention runs.
    pub retention_check_interval: std::time::Duration,
    /// Segments larger than this are uploaded as multipart uploads of parts this size.
    pub multipart_part_bytes: usize,
    /// Most bytes a compressed batch may expand to when the broker validates its records.
    pub max_decompressed_batch_bytes: usize,
    /// The clock every time-based decision reads (tests pass a manual one).
    pub clock: crate::clock::SharedClock,
}

impl BrokerConfig {
    /// Defaults for a broker storing under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            broker_id: 0,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            data_dir: data_dir.into(),
            max_request_bytes: 100 * 1024 * 1024,
            message_max_bytes: 1_048_588,
            auto_create_topics: true,
            num_partitions: 1,
            fetch_max_bytes: 55 * 1024 * 1024,
            max_connections: 10_000,
            max_inflight_per_connection: 32,
            max_pending_bytes: 256 * 1024 * 1024,
            wal_segment_bytes: 64 * 1024 * 1024,
            wal_sync: true,
            groups: Default::default(),
            max_group_id_len: 1024,
            offsets_retention: std::time::Duration::from_secs(7 * 24 * 3600),
            segment_bytes: 64 * 1024 * 1024,
            segment_interval: std::time::Duration::from_secs(60),
            cache_memory_bytes: 256 * 1024 * 1024,
            cache_disk_bytes: 1024 * 1024 * 1024,
            cache_dir: None,
            readahead_chunks: 8,
            wal_budget_bytes: None,
            wal_retain_bytes: 1024 * 1024 * 1024,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_check_interval: std::time::Duration::from_secs(30),
            multipart_part_bytes: 8 * 1024 * 1024,
            max_decompressed_batch_bytes: sediment_protocol::decompress::MAX_DECOMPRESSED_BATCH,
            clock: std::sync::Arc::new(crate::clock::SystemClock::default()),
        }
    }
}
