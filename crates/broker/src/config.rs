//! Broker settings (the parts the `sediment serve` flags feed).

use std::path::PathBuf;

/// The default of every setting, in one place: [`BrokerConfig::new`], the `sediment serve`
/// flags and their `--help` read these (and a test holds README's table to `--help`).
pub mod defaults {
    pub const KAFKA_ADDR: &str = "127.0.0.1:9092";
    pub const HTTP_ADDR: &str = "127.0.0.1:9464";
    pub const DATA_DIR: &str = "./sediment-data";
    pub const BROKER_ID: i32 = 0;
    pub const AUTO_CREATE_TOPICS: bool = true;
    pub const NUM_PARTITIONS: i32 = 1;
    /// Kafka's socket.request.max.bytes.
    pub const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;
    /// Kafka's message.max.bytes.
    pub const MESSAGE_MAX_BYTES: usize = 1_048_588;
    /// Kafka's fetch.max.bytes.
    pub const FETCH_MAX_BYTES: usize = 55 * 1024 * 1024;
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const MAX_PENDING_BYTES: usize = 256 * 1024 * 1024;
    pub const GROUP_INITIAL_REBALANCE_DELAY_MS: u64 = 300;
    pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
    pub const SEGMENT_MS: u64 = 60_000;
    /// Kafka's offsets.retention.minutes (7 days).
    pub const OFFSETS_RETENTION_MINUTES: u64 = 7 * 24 * 60;
    pub const WAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
    /// The WAL budget when the filesystem does not make it smaller.
    pub const WAL_BUDGET_MAX_BYTES: u64 = 4 * 1024 * 1024 * 1024;
    pub const WAL_RETAIN_BYTES: u64 = 1024 * 1024 * 1024;
    /// A segment object smaller than this is one PUT; a larger one is a multipart upload of
    /// parts this size. Twice the default segment size, so default segments (whose Parquet
    /// files come out near `SEGMENT_BYTES`) cost one request each: 16 PUTs per GiB.
    pub const MULTIPART_PART_BYTES: usize = 128 * 1024 * 1024;
    /// The archive cache's memory when the machine's size is not taken into account.
    pub const CACHE_MEMORY_MIN_BYTES: usize = 256 * 1024 * 1024;
    pub const CACHE_DISK_BYTES: usize = 1024 * 1024 * 1024;
    pub const READAHEAD_CHUNKS: usize = 8;
    /// Kafka's log.retention.ms (7 days) and log.retention.bytes.
    pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
    pub const RETENTION_BYTES: i64 = -1;
    pub const RETENTION_CHECK_MS: u64 = 30_000;
    pub const ETCD_PREFIX: &str = "/sediment";
    /// Kafka's broker.session.timeout.ms (9000 there; 3000 here, as issue 10 sets).
    pub const BROKER_SESSION_TIMEOUT_MS: u64 = 3000;
    /// Kafka's replica.lag.time.max.ms.
    pub const REPLICA_LAG_TIME_MAX_MS: u64 = 30_000;
    /// A broker gone this long has its replicas reassigned (10 minutes; 0 = never).
    pub const REPLICA_REPLACE_AFTER_MS: u64 = 600_000;
    pub const SSL_RELOAD_INTERVAL_MS: u64 = 5000;
    pub const FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;
    pub const MAX_FAILED_AUTHENTICATIONS_PER_MINUTE: u32 = 60;
    pub const MAX_DECOMPRESSED_BATCH_BYTES: usize =
        sediment_protocol::decompress::MAX_DECOMPRESSED_BATCH;
}

/// Settings the broker runs with. Defaults match a Kafka broker's where one exists.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub broker_id: i32,
    /// Host and port given to clients in Metadata, and to peers (the inter-broker listener).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Name of the listener peers use (Kafka's `inter.broker.listener.name`).
    pub inter_broker_listener: String,
    /// Every listener, advertised; empty means one `PLAINTEXT` at the address above.
    pub listeners: Vec<crate::security::Listener>,
    /// How this broker reaches its peers' inter-broker listener.
    pub peer_transport: sediment_protocol::client::Transport,
    /// When that listener is TLS: the files, read again at every new connection to a peer
    /// (so a rotated certificate or CA applies without a restart).
    pub peer_tls: Option<std::sync::Arc<crate::security::Tls>>,
    /// ACL checks on every request (`None`: everyone may do everything).
    pub authorizer: Option<crate::authz::AuthorizerConfig>,
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
    /// ... or once its oldest batch not yet archived has waited this long (Kafka's segment.ms
    /// counts from a segment's first record the same way).
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
    /// The advertised address of listener `name`; the main address if there is no such
    /// listener (only a broker's own listeners are ever asked for).
    pub fn endpoint(&self, name: &str) -> (String, i32) {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| (l.advertised_host.clone(), l.advertised_port))
            .unwrap_or_else(|| (self.advertised_host.clone(), self.advertised_port))
    }

    /// Defaults for a broker storing under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            broker_id: defaults::BROKER_ID,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            inter_broker_listener: "PLAINTEXT".into(),
            listeners: Vec::new(),
            peer_transport: Default::default(),
            peer_tls: None,
            authorizer: None,
            data_dir: data_dir.into(),
            max_request_bytes: defaults::MAX_REQUEST_BYTES,
            message_max_bytes: defaults::MESSAGE_MAX_BYTES,
            auto_create_topics: defaults::AUTO_CREATE_TOPICS,
            num_partitions: defaults::NUM_PARTITIONS,
            fetch_max_bytes: defaults::FETCH_MAX_BYTES,
            max_connections: defaults::MAX_CONNECTIONS,
            max_inflight_per_connection: 32,
            max_pending_bytes: defaults::MAX_PENDING_BYTES,
            wal_segment_bytes: defaults::WAL_SEGMENT_BYTES,
            wal_sync: true,
            groups: crate::groups::GroupConfig {
                initial_rebalance_delay: std::time::Duration::from_millis(
                    defaults::GROUP_INITIAL_REBALANCE_DELAY_MS,
                ),
                ..Default::default()
            },
            max_group_id_len: 1024,
            offsets_retention: std::time::Duration::from_secs(
                defaults::OFFSETS_RETENTION_MINUTES * 60,
            ),
            segment_bytes: defaults::SEGMENT_BYTES,
            segment_interval: std::time::Duration::from_millis(defaults::SEGMENT_MS),
            cache_memory_bytes: defaults::CACHE_MEMORY_MIN_BYTES,
            cache_disk_bytes: defaults::CACHE_DISK_BYTES,
            cache_dir: None,
            readahead_chunks: defaults::READAHEAD_CHUNKS,
            wal_budget_bytes: None,
            wal_retain_bytes: defaults::WAL_RETAIN_BYTES,
            retention_ms: defaults::RETENTION_MS,
            retention_bytes: defaults::RETENTION_BYTES,
            retention_check_interval: std::time::Duration::from_millis(
                defaults::RETENTION_CHECK_MS,
            ),
            multipart_part_bytes: defaults::MULTIPART_PART_BYTES,
            max_decompressed_batch_bytes: defaults::MAX_DECOMPRESSED_BATCH_BYTES,
            clock: std::sync::Arc::new(crate::clock::SystemClock::default()),
        }
    }
}
