//! Prometheus metrics.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of per-API counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ApiLabel {
    pub api: String,
}

/// Labels of per-topic counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

/// Labels of per-listener gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: String,
}

/// Labels of SASL authentication counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct SaslLabel {
    pub mechanism: String,
    /// `success` or `failure`.
    pub result: String,
}

/// Labels of consumer-group lag gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct GroupPartitionLabel {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 100 us to about 13 s.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// fdatasync latencies: 25 us to about 1.6 s.
fn sync_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000025, 2.0, 17))
}

/// Entries per group commit: 1 to 4096.
fn group_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// One topic's traffic counters, taken once when the topic is loaded so the hot paths do not
/// look labels up.
#[derive(Debug, Clone, Default)]
pub struct TopicCounters {
    pub bytes_in: Counter,
    pub records_in: Counter,
    pub bytes_out: Counter,
    pub records_out: Counter,
}

/// Labels of per-partition gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: i32,
}

/// Labels of per-replica gauges (cluster mode, on the leader).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReplicaLabel {
    pub topic: String,
    pub partition: i32,
    pub replica: i32,
}

/// The broker's metrics.
pub struct Metrics {
    pub requests: Family<ApiLabel, Counter>,
    /// Time from a request's arrival to its response being ready (long polls included, as
    /// Kafka's TotalTimeMs), by API.
    pub request_seconds: Histograms<ApiLabel>,
    pub topic_bytes_in: Family<TopicLabel, Counter>,
    pub topic_records_in: Family<TopicLabel, Counter>,
    pub topic_bytes_out: Family<TopicLabel, Counter>,
    pub topic_records_out: Family<TopicLabel, Counter>,
    /// fdatasync latency of the WAL, and entries per group commit.
    pub wal_sync_seconds: Histogram,
    pub wal_group_commit_entries: Histogram,
    /// Durable bytes not yet archived, per partition this broker archives.
    pub partition_upload_lag_bytes: Family<PartitionLabel, Gauge>,
    /// Archive chunk lookups in the read cache (hits = lookups - misses).
    pub archive_cache_lookups: Counter,
    /// Per group this broker coordinates: the partition's high watermark minus the
    /// committed offset.
    pub group_lag_offsets: Family<GroupPartitionLabel, Gauge>,
    /// Open connections by listener.
    pub listener_connections: Family<ListenerLabel, Gauge>,
    /// SASL authentications by mechanism and result.
    pub sasl_authentications: Family<SaslLabel, Counter>,
    /// TLS handshakes that failed or timed out (plaintext to a TLS port, untrusted or expired
    /// client certificates).
    pub tls_handshake_failures: Counter,
    /// Each API key's request counter and latency histogram, looked up once.
    apis: std::sync::RwLock<std::collections::HashMap<i16, (Counter, Histogram)>>,
    pub produced_bytes: Counter,
    pub produced_records: Counter,
    pub fetched_bytes: Counter,
    pub wal_written_bytes: Counter,
    pub wal_syncs: Counter,
    pub connections: Gauge,
    pub bad_requests: Counter,
    pub segments_uploaded: Counter,
    pub segment_bytes_uploaded: Counter,
    pub upload_errors: Counter,
    /// 1 while a partition's uploads fail for a reason retrying will not fix.
    pub upload_stuck: Family<PartitionLabel, Gauge>,
    /// Durable bytes not yet in archive segments, summed over partitions.
    pub upload_lag_bytes: Gauge,
    pub wal_disk_bytes: Gauge,
    pub wal_released_bytes: Counter,
    pub archive_read_bytes: Counter,
    pub archive_cache_misses: Counter,
    pub archive_gets: Counter,
    /// Archive reads that failed because a segment does not decode (not an outage).
    pub archive_corrupt_reads: Counter,
    pub segments_deleted: Counter,
    pub produce_backpressure: Counter,
    /// Cluster mode: elections this broker won, ISR shrinks and expands it wrote as leader.
    pub leader_elections: Counter,
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
    /// Partitions this broker leads whose ISR is smaller than their replica set.
    pub under_replicated_partitions: Gauge,
    /// Partitions without a live leader, as this broker sees them.
    pub offline_partitions: Gauge,
    /// Per follower of a partition this broker leads: offsets, bytes and milliseconds it is
    /// behind (time since it was last caught up).
    pub replica_lag_offsets: Family<ReplicaLabel, Gauge>,
    pub replica_lag_bytes: Family<ReplicaLabel, Gauge>,
    pub replica_lag_ms: Family<ReplicaLabel, Gauge>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sediment");
        let requests = Family::<ApiLabel, Counter>::default();
        let m = Self {
            requests: requests.clone(),
            request_seconds: Family::new_with_constructor(request_buckets),
            topic_bytes_in: Family::default(),
            topic_records_in: Family::default(),
            topic_bytes_out: Family::default(),
            topic_records_out: Family::default(),
            wal_sync_seconds: sync_buckets(),
            wal_group_commit_entries: group_buckets(),
            partition_upload_lag_bytes: Family::default(),
            archive_cache_lookups: Counter::default(),
            group_lag_offsets: Family::default(),
            listener_connections: Family::default(),
            sasl_authentications: Family::default(),
            tls_handshake_failures: Counter::default(),
            apis: Default::default(),
            produced_bytes: Counter::default(),
            produced_records: Counter::default(),
            fetched_bytes: Counter::default(),
            wal_written_bytes: Counter::default(),
            wal_syncs: Counter::default(),
            connections: Gauge::default(),
            bad_requests: Counter::default(),
            segments_uploaded: Counter::default(),
            segment_bytes_uploaded: Counter::default(),
            upload_errors: Counter::default(),
            upload_stuck: Family::default(),
            upload_lag_bytes: Gauge::default(),
            wal_disk_bytes: Gauge::default(),
            wal_released_bytes: Counter::default(),
            archive_read_bytes: Counter::default(),
            archive_cache_misses: Counter::default(),
            archive_corrupt_reads: Counter::default(),
            archive_gets: Counter::default(),
            segments_deleted: Counter::default(),
            produce_backpressure: Counter::default(),
            leader_elections: Counter::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            under_replicated_partitions: Gauge::default(),
            offline_partitions: Gauge::default(),
            replica_lag_offsets: Family::default(),
            replica_lag_bytes: Family::default(),
            replica_lag_ms: Family::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Kafka requests handled, by API", requests);
        registry.register(
            "request_seconds",
            "Time from a request's arrival to its response (long polls included), by API",
            m.request_seconds.clone(),
        );
        registry.register(
            "topic_bytes_in",
            "Record batch bytes produced, by topic",
            m.topic_bytes_in.clone(),
        );
        registry.register(
            "topic_records_in",
            "Records produced, by topic",
            m.topic_records_in.clone(),
        );
        registry.register(
            "topic_bytes_out",
            "Record batch bytes returned to consumers and followers, by topic",
            m.topic_bytes_out.clone(),
        );
        registry.register(
            "topic_records_out",
            "Records returned to consumers and followers, by topic",
            m.topic_records_out.clone(),
        );
        registry.register(
            "wal_sync_seconds",
            "WAL fdatasync latency",
            m.wal_sync_seconds.clone(),
        );
        registry.register(
            "wal_group_commit_entries",
            "WAL entries made durable by one fdatasync",
            m.wal_group_commit_entries.clone(),
        );
        registry.register(
            "partition_upload_lag_bytes",
            "Durable bytes not yet archived, by partition",
            m.partition_upload_lag_bytes.clone(),
        );
        registry.register(
            "archive_cache_lookups",
            "Archive row-group lookups in the read cache (hit ratio: 1 - misses / lookups)",
            m.archive_cache_lookups.clone(),
        );
        registry.register(
            "group_lag_offsets",
            "Consumer-group lag (high watermark minus committed offset), by group and partition, on the group's coordinator",
            m.group_lag_offsets.clone(),
        );
        registry.register(
            "listener_connections",
            "Open client connections, by listener",
            m.listener_connections.clone(),
        );
        registry.register(
            "produced_bytes",
            "Record batch bytes accepted",
            m.produced_bytes.clone(),
        );
        registry.register(
            "produced_records",
            "Records accepted",
            m.produced_records.clone(),
        );
        registry.register(
            "fetched_bytes",
            "Record batch bytes returned to fetches",
            m.fetched_bytes.clone(),
        );
        registry.register(
            "wal_written_bytes",
            "Batch bytes written to the WAL",
            m.wal_written_bytes.clone(),
        );
        registry.register(
            "wal_syncs",
            "WAL fdatasync calls (group commits)",
            m.wal_syncs.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "sasl_authentications",
            "SASL authentications by mechanism and result",
            m.sasl_authentications.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "bad_requests",
            "Requests refused as malformed or unsupported",
            m.bad_requests.clone(),
        );
        registry.register(
            "segments_uploaded",
            "Archive segments committed",
            m.segments_uploaded.clone(),
        );
        registry.register(
            "segment_bytes_uploaded",
            "Parquet bytes uploaded",
            m.segment_bytes_uploaded.clone(),
        );
        registry.register(
            "upload_errors",
            "Failed segment uploads (retried)",
            m.upload_errors.clone(),
        );
        registry.register(
            "partition_upload_stuck",
            "1 while a partition's segment uploads fail permanently (see /ready and the log)",
            m.upload_stuck.clone(),
        );
        registry.register(
            "upload_lag_bytes",
            "Durable batch bytes not yet archived",
            m.upload_lag_bytes.clone(),
        );
        registry.register(
            "wal_disk_bytes",
            "Bytes of WAL segment files on disk",
            m.wal_disk_bytes.clone(),
        );
        registry.register(
            "wal_released_bytes",
            "WAL bytes deleted after their batches were archived",
            m.wal_released_bytes.clone(),
        );
        registry.register(
            "archive_read_bytes",
            "Record batch bytes served to fetches from archive segments",
            m.archive_read_bytes.clone(),
        );
        registry.register(
            "archive_cache_misses",
            "Archive row groups read from object storage (not from the cache)",
            m.archive_cache_misses.clone(),
        );
        registry.register(
            "archive_gets",
            "Ranged GETs of segment data issued by archive reads (footers not counted)",
            m.archive_gets.clone(),
        );
        registry.register(
            "archive_corrupt_reads",
            "Archive reads refused because a segment does not decode (damage, not an outage)",
            m.archive_corrupt_reads.clone(),
        );
        registry.register(
            "segments_deleted",
            "Archive segments deleted by retention or DeleteRecords",
            m.segments_deleted.clone(),
        );
        registry.register(
            "produce_backpressure",
            "Produce partitions refused because the WAL budget was full",
            m.produce_backpressure.clone(),
        );
        registry.register(
            "leader_elections",
            "Partition leader elections this broker won (cluster mode)",
            m.leader_elections.clone(),
        );
        registry.register(
            "isr_shrinks",
            "In-sync replica sets this broker shrank as leader (cluster mode)",
            m.isr_shrinks.clone(),
        );
        registry.register(
            "isr_expands",
            "In-sync replica sets this broker grew as leader (cluster mode)",
            m.isr_expands.clone(),
        );
        registry.register(
            "under_replicated_partitions",
            "Partitions this broker leads with fewer in-sync replicas than replicas",
            m.under_replicated_partitions.clone(),
        );
        registry.register(
            "offline_partitions",
            "Partitions without a live leader, as this broker sees the cluster",
            m.offline_partitions.clone(),
        );
        registry.register(
            "replica_lag_offsets",
            "Offsets a follower is behind this leader",
            m.replica_lag_offsets.clone(),
        );
        registry.register(
            "replica_lag_bytes",
            "WAL bytes a follower is behind this leader",
            m.replica_lag_bytes.clone(),
        );
        registry.register(
            "replica_lag_ms",
            "Milliseconds since a follower was last caught up with this leader",
            m.replica_lag_ms.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Counts one SASL authentication.
    pub fn sasl_result(&self, mechanism: &str, ok: bool) {
        self.sasl_authentications
            .get_or_create(&SaslLabel {
                mechanism: mechanism.to_string(),
                result: if ok { "success" } else { "failure" }.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    /// The request counter and latency histogram of API `key` (its name as the label; an
    /// unknown key counts under its number).
    pub fn api(&self, key: i16) -> (Counter, Histogram) {
        if let Some(h) = self.apis.read().ok().and_then(|m| m.get(&key).cloned()) {
            return h;
        }
        let name = kafka_protocol::messages::ApiKey::try_from(key)
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|_| key.to_string());
        let label = ApiLabel { api: name };
        let pair = (
            self.requests.get_or_create(&label).clone(),
            self.request_seconds.get_or_create(&label).clone(),
        );
        if let Ok(mut m) = self.apis.write() {
            m.insert(key, pair.clone());
        }
        pair
    }

    /// The traffic counters of `topic`.
    pub fn topic_counters(&self, topic: &str) -> TopicCounters {
        let l = TopicLabel {
            topic: topic.to_string(),
        };
        TopicCounters {
            bytes_in: self.topic_bytes_in.get_or_create(&l).clone(),
            records_in: self.topic_records_in.get_or_create(&l).clone(),
            bytes_out: self.topic_bytes_out.get_or_create(&l).clone(),
            records_out: self.topic_records_out.get_or_create(&l).clone(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
