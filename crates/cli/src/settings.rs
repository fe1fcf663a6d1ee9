//! `sediment serve` settings, layered: built-in defaults, then a TOML file (`--config`), then
//! `SEDIMENT_*` environment variables, then flags. `sediment serve --help` lists them all.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sediment_broker::config::defaults as D;
use serde::Deserialize;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags and environment variables. Every value is optional here so that the layers can be
/// told apart; defaults are applied in [`Settings::resolve`].
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with '_' for '-').
    #[arg(long, env = "SEDIMENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the Kafka listener binds
    #[arg(long, env = "SEDIMENT_KAFKA_ADDR")]
    pub kafka_addr: Option<String>,
    /// host:port given to clients in Metadata
    #[arg(long, env = "SEDIMENT_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,
    /// Directory for the WAL, metadata and the local object store
    #[arg(long, env = "SEDIMENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP endpoint serving /health and /metrics
    #[arg(long, env = "SEDIMENT_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Object store URL: file:///path or memory://
    #[arg(long, env = "SEDIMENT_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// This broker's id
    #[arg(long, env = "SEDIMENT_BROKER_ID")]
    pub broker_id: Option<i32>,
    /// Create unknown topics on Metadata and Produce
    #[arg(long, env = "SEDIMENT_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics
    #[arg(long, env = "SEDIMENT_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Largest request accepted, in bytes; larger frames close the connection
    #[arg(long, env = "SEDIMENT_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Default largest record batch, in bytes (topic config max.message.bytes overrides)
    #[arg(long, env = "SEDIMENT_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<usize>,
    /// Most record bytes in one fetch response
    #[arg(long, env = "SEDIMENT_FETCH_MAX_BYTES")]
    pub fetch_max_bytes: Option<usize>,
    /// Most concurrent client connections
    #[arg(long, env = "SEDIMENT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most produced bytes waiting for a WAL sync before producers wait
    #[arg(long, env = "SEDIMENT_MAX_PENDING_BYTES")]
    pub max_pending_bytes: Option<usize>,
    /// How long a new group waits for more members before its first rebalance completes,
    /// extended by each member that joins meanwhile
    #[arg(long, env = "SEDIMENT_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Archive a partition's durable batches as a Parquet segment once they reach this many
    /// bytes
    #[arg(long, env = "SEDIMENT_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// ... or once its oldest batch not yet archived has waited this many milliseconds
    #[arg(long, env = "SEDIMENT_SEGMENT_MS")]
    pub segment_ms: Option<u64>,
    /// Committed offsets of a group without members expire this many minutes after their
    /// commit
    #[arg(long, env = "SEDIMENT_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<u64>,
    /// Size at which the WAL starts a new segment file
    #[arg(long, env = "SEDIMENT_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// Memory for the archive read cache (bytes)
    #[arg(long, env = "SEDIMENT_CACHE_MEMORY_BYTES")]
    pub cache_memory_bytes: Option<usize>,
    /// Local disk for the archive read cache (bytes; below 64 MiB, memory only).
    #[arg(long, env = "SEDIMENT_CACHE_DISK_BYTES")]
    pub cache_disk_bytes: Option<usize>,
    /// Row groups read ahead of a consumer catching up from the archive.
    #[arg(long, env = "SEDIMENT_READAHEAD_CHUNKS")]
    pub readahead_chunks: Option<usize>,
    /// Most bytes the WAL may hold while object storage is unavailable; beyond it producers get a retriable error.
    #[arg(long, env = "SEDIMENT_WAL_BUDGET_BYTES")]
    pub wal_budget_bytes: Option<u64>,
    /// WAL bytes kept after they are archived, for consumers near the tail (0: release at once).
    #[arg(long, env = "SEDIMENT_WAL_RETAIN_BYTES")]
    pub wal_retain_bytes: Option<u64>,
    /// Default retention.ms of topics (-1: keep forever).
    #[arg(long, env = "SEDIMENT_RETENTION_MS")]
    pub retention_ms: Option<i64>,
    /// Default retention.bytes of a topic's partitions (-1: unlimited).
    #[arg(long, env = "SEDIMENT_RETENTION_BYTES")]
    pub retention_bytes: Option<i64>,
    /// How often retention runs (ms).
    #[arg(long, env = "SEDIMENT_RETENTION_CHECK_MS")]
    pub retention_check_ms: Option<u64>,
    /// Segments larger than this are uploaded in multipart parts of this size (at least 5 MiB).
    #[arg(long, env = "SEDIMENT_MULTIPART_PART_BYTES")]
    pub multipart_part_bytes: Option<usize>,
    /// Directory of the archive read cache's disk part.
    #[arg(long, env = "SEDIMENT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes a compressed batch may expand to when produce validates its records; larger
    /// batches get INVALID_RECORD.
    #[arg(long, env = "SEDIMENT_MAX_DECOMPRESSED_BATCH_BYTES")]
    pub max_decompressed_batch_bytes: Option<usize>,
    /// Cluster mode: etcd endpoints (http://host:port, comma-separated) holding the cluster's
    /// metadata, leadership and offsets
    #[arg(long, env = "SEDIMENT_ETCD_ENDPOINTS")]
    pub etcd_endpoints: Option<String>,
    /// Key prefix of this cluster in etcd (several clusters can share one etcd)
    #[arg(long, env = "SEDIMENT_ETCD_PREFIX")]
    pub etcd_prefix: Option<String>,
    /// Cluster mode: etcd user (etcd's `auth enable`); needs --etcd-password-file
    #[arg(long, env = "SEDIMENT_ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    /// Cluster mode: file holding the etcd user's password (its first line)
    #[arg(long, env = "SEDIMENT_ETCD_PASSWORD_FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// Cluster mode: PEM CA certificate that signed etcd's server certificates (TLS to etcd;
    /// endpoints must be https://)
    #[arg(long, env = "SEDIMENT_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// Cluster mode: PEM client certificate for etcd's --client-cert-auth (with --etcd-key-file)
    #[arg(long, env = "SEDIMENT_ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// Cluster mode: PEM private key of --etcd-cert-file
    #[arg(long, env = "SEDIMENT_ETCD_KEY_FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// Cluster mode: how long after a broker stops renewing its etcd lease it counts as dead
    #[arg(long, env = "SEDIMENT_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// Cluster mode: this broker's rack (replicas of a partition are spread across racks)
    #[arg(long, env = "SEDIMENT_RACK")]
    pub rack: Option<String>,
    /// Log lines as `text` (for people) or `json` (one object per line, for log pipelines);
    /// a flag or environment setting only, since logging starts before the config file is read
    #[arg(long, env = "SEDIMENT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Cluster mode: replicas of topics created with replication factor -1 (auto-created ones
    /// too)
    #[arg(long, env = "SEDIMENT_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i32>,
    /// Cluster mode: a follower that has not caught up with its leader for this long leaves
    /// the in-sync replicas
    #[arg(long, env = "SEDIMENT_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// Cluster mode: a broker gone this long has its replicas reassigned to live brokers
    /// (0: never)
    #[arg(long, env = "SEDIMENT_REPLICA_REPLACE_AFTER_MS")]
    pub replica_replace_after_ms: Option<u64>,
    /// A Kafka listener NAME://HOST:PORT (repeatable; comma-separated in the environment).
    /// NAME is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, or mapped to one by
    /// --listener-security-protocol-map. Without --kafka-addr given too, these are the only
    /// listeners.
    #[arg(long = "listener", env = "SEDIMENT_LISTENERS", value_delimiter = ',')]
    pub listener: Vec<String>,
    /// The address Metadata gives clients of a listener, NAME://HOST:PORT (repeatable)
    #[arg(
        long = "advertised-listener",
        env = "SEDIMENT_ADVERTISED_LISTENERS",
        value_delimiter = ','
    )]
    pub advertised_listener: Vec<String>,
    /// Listener names to security protocols, NAME:PROTOCOL,... (Kafka's
    /// listener.security.protocol.map)
    #[arg(long, env = "SEDIMENT_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// The listener peers replicate through (Kafka's inter.broker.listener.name)
    #[arg(long, env = "SEDIMENT_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// PEM certificate chain of SSL and SASL_SSL listeners (re-read when it changes)
    #[arg(long, env = "SEDIMENT_SSL_CERT_FILE")]
    pub ssl_cert_file: Option<PathBuf>,
    /// PEM private key of --ssl-cert-file (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "SEDIMENT_SSL_KEY_FILE")]
    pub ssl_key_file: Option<PathBuf>,
    /// PEM CA certificates trusted for client certificates, and for peers' certificates when
    /// the inter-broker listener uses TLS
    #[arg(long, env = "SEDIMENT_SSL_CA_FILE")]
    pub ssl_ca_file: Option<PathBuf>,
    /// Client certificates on TLS listeners: none, requested or required (Kafka's
    /// ssl.client.auth); a certificate's subject becomes the principal
    #[arg(long, env = "SEDIMENT_SSL_CLIENT_AUTH")]
    pub ssl_client_auth: Option<String>,
    /// How often the TLS files are checked for changes
    #[arg(long, env = "SEDIMENT_SSL_RELOAD_INTERVAL_MS")]
    pub ssl_reload_interval_ms: Option<u64>,
    /// SASL mechanisms SASL listeners accept, comma-separated: PLAIN, SCRAM-SHA-256,
    /// SCRAM-SHA-512
    #[arg(long, env = "SEDIMENT_SASL_ENABLED_MECHANISMS")]
    pub sasl_enabled_mechanisms: Option<String>,
    /// File of user:password lines that PLAIN checks instead of the SCRAM credentials
    #[arg(long, env = "SEDIMENT_SASL_PLAIN_USERS_FILE")]
    pub sasl_plain_users_file: Option<PathBuf>,
    /// SASL sessions last this long; a client must re-authenticate (KIP-368) before it ends
    /// (0: forever; Kafka's connections.max.reauth.ms)
    #[arg(long, env = "SEDIMENT_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// Delay before a failed authentication is answered (Kafka's
    /// connection.failed.authentication.delay.ms)
    #[arg(long, env = "SEDIMENT_FAILED_AUTHENTICATION_DELAY_MS")]
    pub failed_authentication_delay_ms: Option<u64>,
    /// Failed SASL authentications allowed per client address per minute; beyond that the
    /// address is refused without its credentials being checked
    #[arg(long, env = "SEDIMENT_MAX_FAILED_AUTHENTICATIONS_PER_MINUTE")]
    pub max_failed_authentications_per_minute: Option<u32>,
    /// `acl` checks every request against ACLs (Kafka's StandardAuthorizer); `none` lets
    /// every client do everything
    #[arg(long, env = "SEDIMENT_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// Principals allowed everything, ';'-separated (Kafka's super.users), e.g.
    /// User:admin;User:CN=broker-1
    #[arg(long, env = "SEDIMENT_SUPER_USERS")]
    pub super_users: Option<String>,
    /// Allow an operation on a resource no ACL names (Kafka's allow.everyone.if.no.acl.found)
    #[arg(long, env = "SEDIMENT_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
}

/// The same settings as read from a TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    kafka_addr: Option<String>,
    advertised_addr: Option<String>,
    data_dir: Option<PathBuf>,
    http_addr: Option<String>,
    object_store: Option<String>,
    broker_id: Option<i32>,
    auto_create_topics: Option<bool>,
    num_partitions: Option<i32>,
    max_request_bytes: Option<usize>,
    message_max_bytes: Option<usize>,
    fetch_max_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_pending_bytes: Option<usize>,
    group_initial_rebalance_delay_ms: Option<u64>,
    offsets_retention_minutes: Option<u64>,
    segment_bytes: Option<u64>,
    segment_ms: Option<u64>,
    wal_segment_bytes: Option<u64>,
    cache_memory_bytes: Option<usize>,
    cache_disk_bytes: Option<usize>,
    readahead_chunks: Option<usize>,
    wal_budget_bytes: Option<u64>,
    wal_retain_bytes: Option<u64>,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    retention_check_ms: Option<u64>,
    multipart_part_bytes: Option<usize>,
    cache_dir: Option<PathBuf>,
    max_decompressed_batch_bytes: Option<usize>,
    etcd_endpoints: Option<String>,
    etcd_prefix: Option<String>,
    etcd_username: Option<String>,
    etcd_password_file: Option<PathBuf>,
    etcd_ca_file: Option<PathBuf>,
    etcd_cert_file: Option<PathBuf>,
    etcd_key_file: Option<PathBuf>,
    broker_session_timeout_ms: Option<u64>,
    rack: Option<String>,
    default_replication_factor: Option<i32>,
    replica_lag_time_max_ms: Option<u64>,
    replica_replace_after_ms: Option<u64>,
    listeners: Option<Vec<String>>,
    advertised_listeners: Option<Vec<String>>,
    listener_security_protocol_map: Option<String>,
    inter_broker_listener_name: Option<String>,
    ssl_cert_file: Option<PathBuf>,
    ssl_key_file: Option<PathBuf>,
    ssl_ca_file: Option<PathBuf>,
    ssl_client_auth: Option<String>,
    ssl_reload_interval_ms: Option<u64>,
    sasl_enabled_mechanisms: Option<String>,
    sasl_plain_users_file: Option<PathBuf>,
    connections_max_reauth_ms: Option<u64>,
    failed_authentication_delay_ms: Option<u64>,
    max_failed_authentications_per_minute: Option<u32>,
    authorizer: Option<String>,
    super_users: Option<String>,
    allow_everyone_if_no_acl_found: Option<bool>,
    // S3 settings under the names AWS tools use; the environment wins over them.
    aws_endpoint_url: Option<String>,
    aws_region: Option<String>,
    aws_access_key_id: Option<String>,
    aws_secret_access_key: Option<String>,
    aws_session_token: Option<String>,
    aws_allow_http: Option<bool>,
}

/// Fully resolved settings.
#[derive(Debug)]
pub struct Settings {
    /// The PLAINTEXT listener of --kafka-addr: given, or the default when no --listener is.
    pub kafka_addr: Option<String>,
    pub advertised_addr: Option<String>,
    pub data_dir: PathBuf,
    pub http_addr: String,
    pub object_store: Option<String>,
    pub broker_id: i32,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub max_request_bytes: usize,
    pub message_max_bytes: usize,
    pub fetch_max_bytes: usize,
    pub max_connections: usize,
    pub max_pending_bytes: usize,
    pub group_initial_rebalance_delay_ms: u64,
    pub offsets_retention_minutes: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub wal_segment_bytes: u64,
    pub cache_memory_bytes: usize,
    pub cache_disk_bytes: usize,
    pub readahead_chunks: usize,
    pub wal_budget_bytes: Option<u64>,
    pub wal_retain_bytes: u64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub retention_check_ms: u64,
    pub multipart_part_bytes: usize,
    pub cache_dir: Option<PathBuf>,
    pub max_decompressed_batch_bytes: usize,
    /// Cluster mode when not empty.
    pub etcd_endpoints: Vec<String>,
    pub etcd_prefix: String,
    pub etcd_username: Option<String>,
    pub etcd_password_file: Option<PathBuf>,
    pub etcd_ca_file: Option<PathBuf>,
    pub etcd_cert_file: Option<PathBuf>,
    pub etcd_key_file: Option<PathBuf>,
    pub broker_session_timeout_ms: u64,
    pub rack: Option<String>,
    pub default_replication_factor: Option<i32>,
    pub replica_lag_time_max_ms: u64,
    pub replica_replace_after_ms: u64,
    pub listeners: Vec<String>,
    pub advertised_listeners: Vec<String>,
    pub listener_security_protocol_map: Option<String>,
    pub inter_broker_listener_name: Option<String>,
    pub ssl_cert_file: Option<PathBuf>,
    pub ssl_key_file: Option<PathBuf>,
    pub ssl_ca_file: Option<PathBuf>,
    pub ssl_client_auth: Option<String>,
    pub ssl_reload_interval_ms: u64,
    pub sasl_enabled_mechanisms: Option<String>,
    pub sasl_plain_users_file: Option<PathBuf>,
    pub connections_max_reauth_ms: u64,
    pub failed_authentication_delay_ms: u64,
    pub max_failed_authentications_per_minute: u32,
    /// The authorizer's settings when `--authorizer acl`.
    pub authorizer: Option<sediment_broker::authz::AuthorizerConfig>,
    pub s3: sediment_storage::S3Settings,
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file: FileSettings = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileSettings::default(),
        };
        let listeners = if args.listener.is_empty() {
            file.listeners.unwrap_or_default()
        } else {
            args.listener
        };
        let kafka_addr = match args.kafka_addr.or(file.kafka_addr) {
            Some(a) => Some(a),
            None if listeners.is_empty() => Some(D::KAFKA_ADDR.into()),
            None => None,
        };
        let authorizer = match args.authorizer.or(file.authorizer).as_deref() {
            None | Some("none") => {
                let stray = [
                    (
                        "--super-users",
                        args.super_users.is_some() || file.super_users.is_some(),
                    ),
                    (
                        "--allow-everyone-if-no-acl-found",
                        args.allow_everyone_if_no_acl_found.is_some()
                            || file.allow_everyone_if_no_acl_found.is_some(),
                    ),
                ];
                if let Some((flag, _)) = stray.iter().find(|(_, set)| *set) {
                    bail!("{flag} needs --authorizer acl");
                }
                None
            }
            Some("acl") => {
                let mut super_users = std::collections::HashSet::new();
                for p in args
                    .super_users
                    .or(file.super_users)
                    .unwrap_or_default()
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                {
                    if !p
                        .split_once(':')
                        .is_some_and(|(k, n)| !k.is_empty() && !n.is_empty())
                    {
                        bail!("--super-users: {p:?} is not a principal like User:alice");
                    }
                    super_users.insert(p.to_string());
                }
                Some(sediment_broker::authz::AuthorizerConfig {
                    super_users,
                    allow_if_no_acl: args
                        .allow_everyone_if_no_acl_found
                        .or(file.allow_everyone_if_no_acl_found)
                        .unwrap_or(false),
                })
            }
            Some(other) => bail!("--authorizer {other:?}: expected acl or none"),
        };
        let s = Settings {
            authorizer,
            kafka_addr,
            listeners,
            advertised_listeners: if args.advertised_listener.is_empty() {
                file.advertised_listeners.unwrap_or_default()
            } else {
                args.advertised_listener
            },
            listener_security_protocol_map: args
                .listener_security_protocol_map
                .or(file.listener_security_protocol_map),
            inter_broker_listener_name: args
                .inter_broker_listener_name
                .or(file.inter_broker_listener_name),
            ssl_cert_file: args.ssl_cert_file.or(file.ssl_cert_file),
            ssl_key_file: args.ssl_key_file.or(file.ssl_key_file),
            ssl_ca_file: args.ssl_ca_file.or(file.ssl_ca_file),
            ssl_client_auth: args.ssl_client_auth.or(file.ssl_client_auth),
            ssl_reload_interval_ms: args
                .ssl_reload_interval_ms
                .or(file.ssl_reload_interval_ms)
                .unwrap_or(D::SSL_RELOAD_INTERVAL_MS),
            sasl_enabled_mechanisms: args
                .sasl_enabled_mechanisms
                .or(file.sasl_enabled_mechanisms),
            sasl_plain_users_file: args.sasl_plain_users_file.or(file.sasl_plain_users_file),
            connections_max_reauth_ms: args
                .connections_max_reauth_ms
                .or(file.connections_max_reauth_ms)
                .unwrap_or(0),
            failed_authentication_delay_ms: args
                .failed_authentication_delay_ms
                .or(file.failed_authentication_delay_ms)
                .unwrap_or(D::FAILED_AUTHENTICATION_DELAY_MS),
            max_failed_authentications_per_minute: args
                .max_failed_authentications_per_minute
                .or(file.max_failed_authentications_per_minute)
                .unwrap_or(D::MAX_FAILED_AUTHENTICATIONS_PER_MINUTE),
            advertised_addr: args.advertised_addr.or(file.advertised_addr),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| D::DATA_DIR.into()),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| D::HTTP_ADDR.into()),
            object_store: args.object_store.or(file.object_store),
            broker_id: args.broker_id.or(file.broker_id).unwrap_or(D::BROKER_ID),
            auto_create_topics: args
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(D::AUTO_CREATE_TOPICS),
            num_partitions: args
                .num_partitions
                .or(file.num_partitions)
                .unwrap_or(D::NUM_PARTITIONS),
            max_request_bytes: args
                .max_request_bytes
                .or(file.max_request_bytes)
                .unwrap_or(D::MAX_REQUEST_BYTES),
            message_max_bytes: args
                .message_max_bytes
                .or(file.message_max_bytes)
                .unwrap_or(D::MESSAGE_MAX_BYTES),
            fetch_max_bytes: args
                .fetch_max_bytes
                .or(file.fetch_max_bytes)
                .unwrap_or(D::FETCH_MAX_BYTES),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(D::MAX_CONNECTIONS),
            max_pending_bytes: args
                .max_pending_bytes
                .or(file.max_pending_bytes)
                .unwrap_or(D::MAX_PENDING_BYTES),
            group_initial_rebalance_delay_ms: args
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms)
                .unwrap_or(D::GROUP_INITIAL_REBALANCE_DELAY_MS),
            offsets_retention_minutes: args
                .offsets_retention_minutes
                .or(file.offsets_retention_minutes)
                .unwrap_or(D::OFFSETS_RETENTION_MINUTES),
            segment_bytes: args
                .segment_bytes
                .or(file.segment_bytes)
                .unwrap_or(D::SEGMENT_BYTES),
            segment_ms: args.segment_ms.or(file.segment_ms).unwrap_or(D::SEGMENT_MS),
            wal_segment_bytes: args
                .wal_segment_bytes
                .or(file.wal_segment_bytes)
                .unwrap_or(D::WAL_SEGMENT_BYTES),
            cache_memory_bytes: args
                .cache_memory_bytes
                .or(file.cache_memory_bytes)
                .unwrap_or_else(default_cache_memory_bytes),
            cache_disk_bytes: args
                .cache_disk_bytes
                .or(file.cache_disk_bytes)
                .unwrap_or(D::CACHE_DISK_BYTES),
            readahead_chunks: args
                .readahead_chunks
                .or(file.readahead_chunks)
                .unwrap_or(D::READAHEAD_CHUNKS),
            wal_retain_bytes: args
                .wal_retain_bytes
                .or(file.wal_retain_bytes)
                .unwrap_or(D::WAL_RETAIN_BYTES),
            wal_budget_bytes: args.wal_budget_bytes.or(file.wal_budget_bytes),
            retention_ms: args
                .retention_ms
                .or(file.retention_ms)
                .unwrap_or(D::RETENTION_MS),
            retention_bytes: args
                .retention_bytes
                .or(file.retention_bytes)
                .unwrap_or(D::RETENTION_BYTES),
            retention_check_ms: args
                .retention_check_ms
                .or(file.retention_check_ms)
                .unwrap_or(D::RETENTION_CHECK_MS),
            multipart_part_bytes: args
                .multipart_part_bytes
                .or(file.multipart_part_bytes)
                .unwrap_or(D::MULTIPART_PART_BYTES),
            cache_dir: args.cache_dir.or(file.cache_dir),
            max_decompressed_batch_bytes: args
                .max_decompressed_batch_bytes
                .or(file.max_decompressed_batch_bytes)
                .unwrap_or(D::MAX_DECOMPRESSED_BATCH_BYTES),
            etcd_endpoints: args
                .etcd_endpoints
                .or(file.etcd_endpoints)
                .map(|e| {
                    e.split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            etcd_prefix: args
                .etcd_prefix
                .or(file.etcd_prefix)
                .unwrap_or_else(|| D::ETCD_PREFIX.into()),
            etcd_username: args.etcd_username.or(file.etcd_username),
            etcd_password_file: args.etcd_password_file.or(file.etcd_password_file),
            etcd_ca_file: args.etcd_ca_file.or(file.etcd_ca_file),
            etcd_cert_file: args.etcd_cert_file.or(file.etcd_cert_file),
            etcd_key_file: args.etcd_key_file.or(file.etcd_key_file),
            broker_session_timeout_ms: args
                .broker_session_timeout_ms
                .or(file.broker_session_timeout_ms)
                .unwrap_or(D::BROKER_SESSION_TIMEOUT_MS),
            rack: args.rack.or(file.rack),
            default_replication_factor: args
                .default_replication_factor
                .or(file.default_replication_factor),
            replica_lag_time_max_ms: args
                .replica_lag_time_max_ms
                .or(file.replica_lag_time_max_ms)
                .unwrap_or(D::REPLICA_LAG_TIME_MAX_MS),
            replica_replace_after_ms: args
                .replica_replace_after_ms
                .or(file.replica_replace_after_ms)
                .unwrap_or(D::REPLICA_REPLACE_AFTER_MS),
            s3: sediment_storage::S3Settings {
                aws_endpoint_url: file.aws_endpoint_url,
                aws_region: file.aws_region,
                aws_access_key_id: file.aws_access_key_id,
                aws_secret_access_key: file.aws_secret_access_key,
                aws_session_token: file.aws_session_token,
                aws_allow_http: file.aws_allow_http,
            },
        };
        if s.num_partitions < 1 {
            bail!("--num-partitions must be at least 1");
        }
        if s.max_request_bytes < 1024 || s.max_request_bytes > i32::MAX as usize {
            bail!("--max-request-bytes must be between 1024 and {}", i32::MAX);
        }
        if s.message_max_bytes < 100 {
            bail!("--message-max-bytes must be at least 100");
        }
        if s.segment_bytes == 0 || s.segment_ms == 0 {
            bail!("--segment-bytes and --segment-ms must be positive");
        }
        if s.retention_ms < -1 || s.retention_bytes < -1 {
            bail!("--retention-ms and --retention-bytes must be -1 (unlimited) or more");
        }
        if s.retention_check_ms == 0 {
            bail!("--retention-check-ms must be positive");
        }
        if s.max_decompressed_batch_bytes < s.message_max_bytes {
            bail!("--max-decompressed-batch-bytes must be at least --message-max-bytes");
        }
        if s.broker_id < 0 {
            bail!("--broker-id must not be negative");
        }
        if s.broker_session_timeout_ms < 1000 {
            bail!("--broker-session-timeout-ms must be at least 1000 (etcd leases count whole seconds)");
        }
        if s.replica_lag_time_max_ms == 0 {
            bail!("--replica-lag-time-max-ms must be positive");
        }
        if s.default_replication_factor.is_some_and(|n| n < 1) {
            bail!("--default-replication-factor must be at least 1");
        }
        if s.etcd_username.is_some() != s.etcd_password_file.is_some() {
            bail!("--etcd-username and --etcd-password-file go together");
        }
        if s.etcd_cert_file.is_some() != s.etcd_key_file.is_some() {
            bail!("--etcd-cert-file and --etcd-key-file go together");
        }
        let tls = s.etcd_ca_file.is_some() || s.etcd_cert_file.is_some();
        if tls && s.etcd_endpoints.iter().any(|e| !e.starts_with("https://")) {
            bail!("etcd TLS settings need https:// etcd endpoints");
        }
        if s.ssl_reload_interval_ms == 0 {
            bail!("--ssl-reload-interval-ms must be positive");
        }
        if s.etcd_endpoints.is_empty() {
            let cluster_only = [
                ("--rack", s.rack.is_some()),
                (
                    "--default-replication-factor",
                    s.default_replication_factor.is_some(),
                ),
                ("--etcd-username", s.etcd_username.is_some()),
                ("--etcd-password-file", s.etcd_password_file.is_some()),
                ("--etcd-ca-file", s.etcd_ca_file.is_some()),
                ("--etcd-cert-file", s.etcd_cert_file.is_some()),
                ("--etcd-key-file", s.etcd_key_file.is_some()),
            ];
            if let Some((flag, _)) = cluster_only.iter().find(|(_, set)| *set) {
                bail!("{flag} applies to cluster mode only: give --etcd-endpoints too");
            }
        }
        Ok(s)
    }
}

/// Every `serve` flag's default as `--help` and README's settings table show it, by argument
/// id (the field name). The values are the constants [`Settings::resolve`] applies.
pub fn shown_defaults() -> Vec<(&'static str, String)> {
    vec![
        ("kafka_addr", D::KAFKA_ADDR.to_string()),
        ("advertised_addr", "the bound address".into()),
        ("data_dir", D::DATA_DIR.to_string()),
        ("http_addr", D::HTTP_ADDR.to_string()),
        ("object_store", "file://<data-dir>/objects".into()),
        ("broker_id", D::BROKER_ID.to_string()),
        ("auto_create_topics", D::AUTO_CREATE_TOPICS.to_string()),
        ("num_partitions", D::NUM_PARTITIONS.to_string()),
        ("max_request_bytes", D::MAX_REQUEST_BYTES.to_string()),
        ("message_max_bytes", D::MESSAGE_MAX_BYTES.to_string()),
        ("fetch_max_bytes", D::FETCH_MAX_BYTES.to_string()),
        ("max_connections", D::MAX_CONNECTIONS.to_string()),
        ("max_pending_bytes", D::MAX_PENDING_BYTES.to_string()),
        (
            "group_initial_rebalance_delay_ms",
            D::GROUP_INITIAL_REBALANCE_DELAY_MS.to_string(),
        ),
        ("segment_bytes", D::SEGMENT_BYTES.to_string()),
        ("segment_ms", D::SEGMENT_MS.to_string()),
        (
            "offsets_retention_minutes",
            D::OFFSETS_RETENTION_MINUTES.to_string(),
        ),
        ("wal_segment_bytes", D::WAL_SEGMENT_BYTES.to_string()),
        (
            "wal_budget_bytes",
            format!(
                "half of the data filesystem less the disk cache, at most {}",
                D::WAL_BUDGET_MAX_BYTES
            ),
        ),
        ("wal_retain_bytes", D::WAL_RETAIN_BYTES.to_string()),
        ("multipart_part_bytes", D::MULTIPART_PART_BYTES.to_string()),
        (
            "cache_memory_bytes",
            format!(
                "a quarter of the memory (machine or cgroup limit), at least {}",
                D::CACHE_MEMORY_MIN_BYTES
            ),
        ),
        (
            "cache_disk_bytes",
            format!(
                "{}, at most a quarter of its filesystem",
                D::CACHE_DISK_BYTES
            ),
        ),
        ("cache_dir", "<data-dir>/cache".into()),
        ("readahead_chunks", D::READAHEAD_CHUNKS.to_string()),
        ("retention_ms", D::RETENTION_MS.to_string()),
        ("retention_bytes", D::RETENTION_BYTES.to_string()),
        ("retention_check_ms", D::RETENTION_CHECK_MS.to_string()),
        (
            "max_decompressed_batch_bytes",
            D::MAX_DECOMPRESSED_BATCH_BYTES.to_string(),
        ),
        ("etcd_endpoints", "none: a single embedded node".into()),
        ("etcd_prefix", D::ETCD_PREFIX.to_string()),
        (
            "broker_session_timeout_ms",
            D::BROKER_SESSION_TIMEOUT_MS.to_string(),
        ),
        ("rack", "none".into()),
        ("log_format", "text".into()),
        ("etcd_username", "none".into()),
        ("etcd_password_file", "none".into()),
        ("etcd_ca_file", "none".into()),
        ("etcd_cert_file", "none".into()),
        ("etcd_key_file", "none".into()),
        ("default_replication_factor", "min(3, live brokers)".into()),
        ("listener", "none (only --kafka-addr)".into()),
        (
            "advertised_listener",
            "each listener's bound address".into(),
        ),
        (
            "listener_security_protocol_map",
            "each name is its protocol".into(),
        ),
        (
            "inter_broker_listener_name",
            "PLAINTEXT of --kafka-addr, else the first --listener".into(),
        ),
        ("ssl_cert_file", "none".into()),
        ("ssl_key_file", "none".into()),
        ("ssl_ca_file", "none".into()),
        ("ssl_client_auth", "none".into()),
        (
            "ssl_reload_interval_ms",
            D::SSL_RELOAD_INTERVAL_MS.to_string(),
        ),
        (
            "sasl_enabled_mechanisms",
            "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
        ),
        (
            "sasl_plain_users_file",
            "none: PLAIN checks SCRAM credentials".into(),
        ),
        ("connections_max_reauth_ms", "0".into()),
        (
            "failed_authentication_delay_ms",
            D::FAILED_AUTHENTICATION_DELAY_MS.to_string(),
        ),
        (
            "max_failed_authentications_per_minute",
            D::MAX_FAILED_AUTHENTICATIONS_PER_MINUTE.to_string(),
        ),
        ("authorizer", "none".into()),
        ("super_users", "none".into()),
        ("allow_everyone_if_no_acl_found", "false".into()),
        (
            "replica_lag_time_max_ms",
            D::REPLICA_LAG_TIME_MAX_MS.to_string(),
        ),
        (
            "replica_replace_after_ms",
            D::REPLICA_REPLACE_AFTER_MS.to_string(),
        ),
    ]
}

/// Adds `[default: ...]` from [`shown_defaults`] to each flag's help of the `serve` command.
pub fn with_defaults(mut cmd: clap::Command) -> clap::Command {
    for (id, default) in shown_defaults() {
        cmd = cmd.mut_arg(id, |a| {
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            a.help(format!("{help} [default: {default}]"))
        });
    }
    cmd
}

/// Default memory of the archive cache: a quarter of the memory this process may use (the
/// machine's, or its cgroup's limit when lower), at least 256 MiB. The WAL tail is read through
/// the page cache, which gets the rest.
pub fn default_cache_memory_bytes() -> usize {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    cache_memory_for(meminfo.as_deref(), cgroup.as_deref())
}

fn cache_memory_for(meminfo: Option<&str>, cgroup_max: Option<&str>) -> usize {
    const FLOOR: u64 = D::CACHE_MEMORY_MIN_BYTES as u64;
    let total = meminfo.and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    // "max" (no limit) does not parse and is ignored.
    let limit = cgroup_max.and_then(|c| c.trim().parse::<u64>().ok());
    let usable = match (total, limit) {
        (Some(t), Some(l)) => t.min(l),
        (t, l) => t.or(l).unwrap_or(0),
    };
    usize::try_from((usable / 4).max(FLOOR)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_keys_and_tiering_settings_come_from_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            concat!(
                "object_store = \"s3://bucket/archive\"\n",
                "aws_endpoint_url = \"http://127.0.0.1:4566\"\n",
                "aws_region = \"eu-west-1\"\n",
                "aws_access_key_id = \"AKID\"\n",
                "aws_secret_access_key = \"SECRET\"\n",
                "aws_allow_http = true\n",
                "wal_budget_bytes = 1048576\n",
                "retention_ms = -1\n",
                "cache_disk_bytes = 0\n",
            ),
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(path),
            retention_bytes: Some(5000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.s3.aws_endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!(s.s3.aws_region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.s3.aws_access_key_id.as_deref(), Some("AKID"));
        assert_eq!(s.s3.aws_secret_access_key.as_deref(), Some("SECRET"));
        assert_eq!(s.s3.aws_allow_http, Some(true));
        assert_eq!(
            (s.wal_budget_bytes, s.retention_ms, s.retention_bytes),
            (Some(1 << 20), -1, 5000)
        );
        assert_eq!(s.cache_disk_bytes, 0);
        assert_eq!(
            s.cache_memory_bytes,
            default_cache_memory_bytes(),
            "default kept"
        );
        // The store builds from them (no request is made until it is used).
        assert!(sediment_storage::from_url_with("s3://bucket/archive", &s.s3).is_ok());
        assert!(Settings::resolve(ServeArgs {
            retention_ms: Some(-2),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "kafka_addr = \"127.0.0.1:1\"\nnum_partitions = 4\n").unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            num_partitions: Some(7),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.kafka_addr.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(s.num_partitions, 7);
        assert_eq!(s.http_addr, "127.0.0.1:9464");

        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let err = Settings::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        });
        assert!(err.is_err());
        let err = Settings::resolve(ServeArgs {
            num_partitions: Some(0),
            ..Default::default()
        });
        assert!(err.is_err());
    }

    #[test]
    fn cache_memory_defaults_to_a_quarter_of_usable_memory() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  1000 kB\n";
        let gib = 1024 * 1024 * 1024;
        assert_eq!(cache_memory_for(Some(meminfo), None), 24576000 * 1024 / 4);
        assert_eq!(
            cache_memory_for(Some(meminfo), Some("max\n")),
            24576000 * 1024 / 4
        );
        assert_eq!(
            cache_memory_for(Some(meminfo), Some("4294967296\n")),
            gib,
            "a container's limit wins"
        );
        assert_eq!(cache_memory_for(None, None), 256 * 1024 * 1024, "floor");
        assert_eq!(
            cache_memory_for(Some("MemTotal: 524288 kB\n"), None),
            256 * 1024 * 1024
        );
    }
}
