//! Produce: validate, assign offsets, append to the WAL, acknowledge per `acks`.
//!
//! The synchronous part (validation, offset assignment, queueing on the WAL) runs before the
//! connection reads its next request; the wait for durability runs in the response future, so
//! pipelined produce requests share a group commit. acks=0 and acks=1 are answered once the
//! batch is written to the WAL file (it then survives a crash of the process); acks=all once it
//! is covered by fdatasync (it then survives a crash of the machine, on one node).

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sediment_protocol::batch::{self, BatchError, BatchInfo, TimestampType};
use sediment_protocol::records::{self, RecordError};
use sediment_wal::{Append, Durability, EntryMeta, Position, WalError};
use tokio::sync::oneshot;
use tracing::warn;

use super::{encode, str_bytes, ResponseError};
use crate::log::{SeqCheck, Topic};
use crate::server::Reply;
use crate::Broker;

fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::Corrupt(_) | BatchError::Crc { .. } => ResponseError::CorruptMessage.code(),
        BatchError::Magic(_) => ResponseError::UnsupportedForMessageFormat.code(),
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        BatchError::Invalid(_) => ResponseError::InvalidRecord.code(),
    }
}

fn record_error_code(e: &RecordError) -> i16 {
    match e {
        RecordError::Corrupt(_) | RecordError::Codec(_) => ResponseError::CorruptMessage.code(),
        RecordError::TooLarge { .. } | RecordError::Record { .. } | RecordError::Batch(_) => {
            ResponseError::InvalidRecord.code()
        }
    }
}

thread_local! {
    /// Decompressed records of the batch being validated, reused between batches.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Walks a batch's records (decompressing into this thread's scratch buffer).
fn check_records(
    batch: &[u8],
    info: &BatchInfo,
    limit: usize,
) -> Result<records::RecordsSummary, RecordError> {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let out = records::check(batch, info, limit, &mut s);
        // Keep a typical batch's buffer, not the largest one ever seen.
        if s.capacity() > 16 << 20 {
            *s = Vec::new();
        }
        out
    })
}

/// A partition's outcome: an error now, or appends to wait for.
enum Outcome {
    /// Refused: error code, message, and the index of the offending record if one is to blame
    /// (Produce v8+ record errors).
    Failed(i16, String, Option<i32>),
    Queued {
        base_offset: i64,
        log_start_offset: i64,
        /// The broker's append time, for a LogAppendTime topic.
        log_append_time: Option<i64>,
        waits: Vec<oneshot::Receiver<Result<Position, WalError>>>,
        /// acks=all on a cluster leader: also wait for the in-sync replicas (to this end).
        replicated: Option<(Replicated, i64)>,
    },
    /// An idempotent producer's retry of a batch already appended: answered with the original
    /// offsets once that batch is durable.
    Duplicate {
        base_offset: i64,
        end_offset: i64,
        log_start_offset: i64,
        partition: Arc<crate::log::Partition>,
        /// The partition's rollback count when the duplicate was recognised: if the original
        /// batch's write failed and was rolled back meanwhile, the offsets are not its own.
        rollbacks: u64,
    },
}

fn failed(code: i16, msg: impl Into<String>) -> Outcome {
    Outcome::Failed(code, msg.into(), None)
}

async fn append_partition(
    broker: &Arc<Broker>,
    topic: &Topic,
    index: i32,
    records: Option<Bytes>,
    durability: Durability,
) -> Outcome {
    let Some(partition) = topic.partition(index) else {
        return failed(
            ResponseError::UnknownTopicOrPartition.code(),
            "no such partition",
        );
    };
    let Some(records) = records else {
        return failed(ResponseError::InvalidRecord.code(), "null record set");
    };
    if let Some(why) = broker.disk_refusal() {
        broker.metrics.produce_backpressure.inc();
        return failed(ResponseError::KafkaStorageError.code(), why);
    }
    let wal_bytes = broker.segments.disk_bytes();
    if wal_bytes > broker.wal_budget {
        // Object storage is down or behind: the WAL holds all it may. A retriable error makes
        // producers back off and retry instead of the disk filling up.
        broker.metrics.produce_backpressure.inc();
        return failed(
            ResponseError::KafkaStorageError.code(),
            format!(
                "the write-ahead log holds {wal_bytes} bytes not yet archived, over its budget of {}; \
                 object storage is unavailable or behind, retry later",
                broker.wal_budget
            ),
        );
    }
    if durability == Durability::Synced
        && broker.cluster().is_none()
        && topic.min_insync_replicas > 1
    {
        // One broker is one replica: acks=all cannot be met, as Kafka answers a partition
        // whose ISR is smaller than min.insync.replicas (never a silent downgrade).
        return failed(
            ResponseError::NotEnoughReplicas.code(),
            format!(
                "min.insync.replicas={} but this partition has 1 in-sync replica",
                topic.min_insync_replicas
            ),
        );
    }
    // flush.messages=1 / flush.ms=0: every append is flushed before it is acknowledged, as
    // Kafka flushes on append; otherwise the WAL syncer covers each write within one fsync.
    let durability = if topic.flush_on_append {
        Durability::Synced
    } else {
        durability
    };
    let max = topic
        .max_message_bytes
        .unwrap_or(broker.config.message_max_bytes);
    let infos = match batch::validate(&records, max) {
        Ok(i) => i,
        Err(e) => {
            warn!(topic = %topic.meta.name, partition = index, error = %e, "refused record batch");
            return failed(batch_error_code(&e), e.to_string());
        }
    };
    // Kafka accepts exactly one record batch per partition in Produce v3 and later.
    if infos.len() != 1 {
        return failed(
            ResponseError::InvalidRecord.code(),
            "a produce request carries exactly one record batch per partition",
        );
    }
    let info = infos[0];
    if info.is_control() {
        return failed(
            ResponseError::InvalidRecord.code(),
            "clients may not write control batches",
        );
    }
    if info.is_transactional() {
        return failed(
            ResponseError::InvalidRecord.code(),
            "transactional batches need a transactional id; transactions are not supported",
        );
    }
    let whole = records.slice(info.start..info.start + info.len);
    // Every record is walked before anything is stored, as Kafka's log validator does: a batch
    // acknowledged here must decode for every consumer and for the archive.
    let summary = match check_records(&whole, &info, broker.config.max_decompressed_batch_bytes) {
        Ok(t) => t,
        Err(e) => {
            warn!(topic = %topic.meta.name, partition = index, error = %e, "refused record batch");
            let at = match e {
                RecordError::Record { index, .. } => Some(index),
                _ => None,
            };
            return Outcome::Failed(record_error_code(&e), e.to_string(), at);
        }
    };
    let max_timestamp = summary.max_timestamp;
    // A CreateTime record's timestamp must lie within the topic's bounds around the broker's
    // clock (message.timestamp.before.max.ms / after.max.ms), as Kafka's log validator checks.
    if !topic.log_append_time {
        let now = broker.config.clock.wall_ms();
        let early = now.saturating_sub(topic.timestamp_before_max_ms);
        let late = now.saturating_add(topic.timestamp_after_max_ms);
        let offending = if summary.min_timestamp < early {
            Some((
                summary.min_index,
                summary.min_timestamp,
                "before",
                topic.timestamp_before_max_ms,
            ))
        } else if summary.max_timestamp > late {
            Some((
                summary.max_index,
                summary.max_timestamp,
                "after",
                topic.timestamp_after_max_ms,
            ))
        } else {
            None
        };
        if let Some((at, ts, side, bound)) = offending {
            return Outcome::Failed(
                ResponseError::InvalidTimestamp.code(),
                format!(
                    "record {at} has timestamp {ts}, more than {bound} ms {side} the broker's \
                     time {now} (message.timestamp.{side}.max.ms)"
                ),
                Some(at),
            );
        }
    }
    // The stored timestamps: the broker's clock for a LogAppendTime topic; otherwise the
    // producer's, with a max timestamp that disagrees with the records (or a LogAppendTime bit
    // the topic does not have) corrected as Kafka does.
    let (whole, max_timestamp, log_append_time) = if topic.log_append_time {
        let now = broker.config.clock.wall_ms();
        (
            batch::with_timestamp(&whole, TimestampType::LogAppendTime, now),
            now,
            Some(now),
        )
    } else if info.log_append_time() || info.max_timestamp != max_timestamp {
        (
            batch::with_timestamp(&whole, TimestampType::CreateTime, max_timestamp),
            max_timestamp,
            None,
        )
    } else {
        (whole, max_timestamp, None)
    };
    let idempotent = info.producer_id >= 0;
    // Wait for room in the pending-bytes budget first, so a producer outrunning the disk is
    // slowed here instead of growing memory.
    let kib = (records.len() / 1024 + 1) as u32;
    let permits = kib.min(broker.pending_permits_total());
    let Ok(permit) = broker.pending.clone().acquire_many_owned(permits).await else {
        return failed(
            ResponseError::KafkaStorageError.code(),
            "broker is shutting down",
        );
    };
    let mut permit = Some(permit);
    let Ok(mut st) = partition.state.lock() else {
        return failed(
            ResponseError::UnknownServerError.code(),
            "partition state poisoned",
        );
    };
    if let Some(code) = super::check_leader(&st, -1) {
        return failed(code, "this broker does not lead the partition");
    }
    // In a cluster, acks=all needs min.insync.replicas in the ISR before anything is appended.
    let replicated = match &st.role {
        crate::log::Role::Leader { isr, .. } if durability == Durability::Synced => {
            let in_sync = isr.len() as i32 + 1;
            if in_sync < topic.min_insync_replicas {
                return failed(
                    ResponseError::NotEnoughReplicas.code(),
                    format!(
                        "min.insync.replicas={} but the partition has {in_sync} in-sync replica(s)",
                        topic.min_insync_replicas
                    ),
                );
            }
            Some(Replicated {
                partition: partition.clone(),
                epoch: st.leader_epoch,
                min_insync: topic.min_insync_replicas,
            })
        }
        _ => None,
    };
    if idempotent {
        let i = &info;
        match st.check_sequence(
            i.producer_id,
            i.producer_epoch,
            i.base_sequence,
            i.record_count,
        ) {
            SeqCheck::Fresh => {}
            SeqCheck::Error(code) => {
                warn!(
                    topic = %topic.meta.name, partition = index, producer_id = i.producer_id,
                    epoch = i.producer_epoch, sequence = i.base_sequence, code,
                    "refused idempotent batch"
                );
                return failed(
                    code,
                    "sequence or epoch does not follow the producer's last batch",
                );
            }
            SeqCheck::Duplicate {
                base_offset,
                end_offset,
            } => {
                return Outcome::Duplicate {
                    base_offset,
                    end_offset,
                    log_start_offset: st.log_start_offset,
                    partition: partition.clone(),
                    rollbacks: st.rollbacks,
                };
            }
        }
    }
    let base_offset = st.next_offset;
    // The stamped 16-byte prefix plus the body as received: no copy of the batch.
    let data = vec![
        batch::stamped_prefix(&whole, base_offset, st.leader_epoch),
        whole.slice(batch::PREFIX_LEN..),
    ];
    let (tx, rx) = oneshot::channel();
    let append = Append {
        meta: EntryMeta {
            topic_id: topic.meta.id,
            partition: index,
            leader_epoch: st.leader_epoch,
            base_offset,
            record_count: info.record_count,
            max_timestamp,
        },
        data,
        durability,
        done: Some(tx),
        guard: permit.take().map(|p| Box::new(p) as Box<dyn Send>),
    };
    if let Err(e) = broker.submit(append) {
        return failed(ResponseError::KafkaStorageError.code(), e.to_string());
    }
    if idempotent {
        st.record_sequence(
            info.producer_id,
            info.producer_epoch,
            info.base_sequence,
            info.record_count,
            base_offset,
        );
    }
    st.next_offset += i64::from(info.record_count);
    broker
        .metrics
        .produced_records
        .inc_by(info.record_count as u64);
    broker.metrics.produced_bytes.inc_by(records.len() as u64);
    topic.io.records_in.inc_by(info.record_count as u64);
    topic.io.bytes_in.inc_by(records.len() as u64);
    Outcome::Queued {
        base_offset,
        log_start_offset: st.log_start_offset,
        log_append_time,
        waits: vec![rx],
        replicated: replicated.map(|r| (r, base_offset + i64::from(info.record_count))),
    }
}

/// An acks=all append on a cluster leader, which is acknowledged once the high watermark
/// (the in-sync replicas' lowest durable end) passes it.
struct Replicated {
    partition: Arc<crate::log::Partition>,
    /// The leader epoch it was appended under: a leader that lost the partition meanwhile
    /// acknowledges nothing.
    epoch: i32,
    min_insync: i32,
}

/// Waits for an acks=all batch ending at `end` to reach every in-sync replica, up to
/// `timeout`. The error code to answer with if it does not.
async fn wait_replicated(
    r: &Replicated,
    end: i64,
    timeout: std::time::Duration,
) -> Result<(), i16> {
    use crate::log::Role;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let moved = r.partition.changed.notified();
        let verdict = match r.partition.state.lock() {
            Ok(st) => match &st.role {
                Role::Leader { isr, .. } if st.leader_epoch == r.epoch => {
                    if st.high_watermark >= end {
                        if (isr.len() as i32 + 1) < r.min_insync {
                            Some(Err(ResponseError::NotEnoughReplicasAfterAppend.code()))
                        } else {
                            Some(Ok(()))
                        }
                    } else {
                        None
                    }
                }
                _ => Some(Err(ResponseError::NotLeaderOrFollower.code())),
            },
            Err(_) => Some(Err(ResponseError::UnknownServerError.code())),
        };
        if let Some(v) = verdict {
            return v;
        }
        tokio::select! {
            _ = moved => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(ResponseError::RequestTimedOut.code());
            }
        }
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    session: &crate::security::Session,
    cid: i32,
    version: i16,
    req: ProduceRequest,
) -> Reply {
    let acks = req.acks;
    // How long acks=all waits for the in-sync replicas (the request's timeout, as in Kafka).
    let timeout = std::time::Duration::from_millis(req.timeout_ms.clamp(1, 300_000) as u64);
    if req.transactional_id.is_some() {
        // Transactions are not implemented; say so per partition rather than pretend.
        return respond_all(
            cid,
            version,
            &req,
            ResponseError::TransactionalIdAuthorizationFailed.code(),
        );
    }
    let durability = match acks {
        -1 => Some(Durability::Synced),
        0 | 1 => Some(Durability::Written),
        _ => None,
    };
    let Some(durability) = durability else {
        return respond_all(
            cid,
            version,
            &req,
            ResponseError::InvalidRequiredAcks.code(),
        );
    };
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for td in req.topic_data {
        let name = td.name.clone();
        let topic = if broker.authorized_topic(session, sediment_auth::acl::op::WRITE, &name) {
            let create = broker.may_create_topic(session, &name);
            broker.ensure_topic(name.as_str(), create).await
        } else {
            Err(ResponseError::TopicAuthorizationFailed.code())
        };
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for pd in td.partition_data {
            let outcome = match &topic {
                Ok(t) => append_partition(broker, t, pd.index, pd.records, durability).await,
                Err(code) if *code == ResponseError::TopicAuthorizationFailed.code() => {
                    failed(*code, "not authorized to write to the topic")
                }
                Err(code) => failed(*code, "unknown topic"),
            };
            parts.push((pd.index, outcome));
        }
        topics.push((name, parts));
    }
    if acks == 0 {
        // No response is sent; Kafka closes the connection on a failed acks=0 produce so the
        // client notices and refreshes its metadata.
        let any_failed = topics
            .iter()
            .any(|(_, ps)| ps.iter().any(|(_, o)| matches!(o, Outcome::Failed(..))));
        return if any_failed {
            Reply::Close
        } else {
            Reply::Nothing
        };
    }
    let fut = async move {
        let mut resp = ProduceResponse::default();
        for (name, parts) in topics {
            let mut tr = TopicProduceResponse::default();
            tr.name = name;
            for (index, outcome) in parts {
                let mut pr = PartitionProduceResponse::default();
                pr.index = index;
                match outcome {
                    Outcome::Failed(code, msg, at) => {
                        pr.error_code = code;
                        pr.base_offset = -1;
                        if version >= 8 {
                            if let Some(at) = at {
                                let mut e = BatchIndexAndErrorMessage::default();
                                e.batch_index = at;
                                e.batch_index_error_message = Some(str_bytes(msg.clone()));
                                pr.record_errors.push(e);
                            }
                            pr.error_message = Some(str_bytes(msg));
                        }
                    }
                    Outcome::Duplicate {
                        base_offset,
                        end_offset,
                        log_start_offset,
                        partition,
                        rollbacks,
                    } => {
                        pr.base_offset = base_offset;
                        pr.log_start_offset = log_start_offset;
                        if !wait_durable(&partition, end_offset).await {
                            pr.error_code = ResponseError::RequestTimedOut.code();
                            pr.base_offset = -1;
                        } else if partition
                            .state
                            .lock()
                            .map_or(true, |st| st.rollbacks != rollbacks)
                        {
                            // The original's write failed and its offsets went back to the
                            // pool: the producer must send the batch again.
                            pr.error_code = ResponseError::KafkaStorageError.code();
                            pr.base_offset = -1;
                        }
                    }
                    Outcome::Queued {
                        base_offset,
                        log_start_offset,
                        log_append_time,
                        waits,
                        replicated,
                    } => {
                        pr.base_offset = base_offset;
                        pr.log_start_offset = log_start_offset;
                        pr.log_append_time_ms = log_append_time.unwrap_or(-1);
                        for w in waits {
                            match w.await {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) => {
                                    warn!(error = %e, "wal append failed");
                                    pr.error_code = ResponseError::KafkaStorageError.code();
                                    pr.base_offset = -1;
                                    break;
                                }
                                Err(_) => {
                                    pr.error_code = ResponseError::KafkaStorageError.code();
                                    pr.base_offset = -1;
                                    break;
                                }
                            }
                        }
                        if let (0, Some((r, end))) = (pr.error_code, replicated) {
                            if let Err(code) = wait_replicated(&r, end, timeout).await {
                                pr.error_code = code;
                                pr.base_offset = -1;
                            }
                        }
                    }
                }
                tr.partition_responses.push(pr);
            }
            resp.responses.push(tr);
        }
        encode(cid, version, &resp)
    };
    Reply::Later(fut.boxed())
}

/// Waits (up to 30 s) until `partition`'s high watermark covers `end_offset`.
async fn wait_durable(partition: &crate::log::Partition, end_offset: i64) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let moved = partition.changed.notified();
        let reached = partition
            .state
            .lock()
            .map(|s| s.high_watermark >= end_offset)
            .unwrap_or(false);
        if reached {
            return true;
        }
        tokio::select! {
            _ = moved => {}
            _ = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

fn respond_all(cid: i32, version: i16, req: &ProduceRequest, code: i16) -> Reply {
    if req.acks == 0 {
        return Reply::Close;
    }
    let mut resp = ProduceResponse::default();
    for td in &req.topic_data {
        let mut tr = TopicProduceResponse::default();
        tr.name = td.name.clone();
        for pd in &td.partition_data {
            let mut pr = PartitionProduceResponse::default();
            pr.index = pd.index;
            pr.error_code = code;
            pr.base_offset = -1;
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    encode(cid, version, &resp).map_or(Reply::Close, Reply::Ready)
}
