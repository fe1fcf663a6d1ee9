//! Fetch: batches from the WAL-resident tail or, below it, from the archive; with long polling.
//!
//! WAL-resident batches are returned exactly as stored (as the producer sent them, offsets stamped in), up to
//! the high watermark. A fetch offset inside a batch returns that whole batch; clients skip the
//! records before the offset they asked for, as with Kafka. Offsets below the WAL are served by
//! [`crate::archive`]: batches rebuilt from the Parquet segment, carrying the producer's fields. Limits follow KIP-74: `max_bytes`
//! and `partition_max_bytes` bound the response, except that the first batch of the first
//! non-empty partition is always returned so a consumer can make progress past a large batch.
//! Fetch sessions (KIP-227) are not kept: every response has session id 0, which tells clients
//! to send full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use sediment_meta::SegmentEntry;
use sediment_wal::Position;
use tokio::time::Instant;

use super::{encode, ResponseError};
use crate::log::Topic;
use crate::server::Reply;
use crate::Broker;

/// Longest long poll honoured, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Where a partition's data comes from.
enum Source {
    Nothing,
    Wal(Vec<Position>),
    Archive {
        topic_id: uuid::Uuid,
        segments: Arc<Vec<SegmentEntry>>,
        offset: i64,
        /// Bytes the partition may still take.
        limit: usize,
    },
}

struct Plan {
    topic: usize,
    /// The topic, when it exists (its traffic counters).
    of: Option<Arc<Topic>>,
    data: PartitionData,
    source: Source,
}

/// Reads everything the request can get now. Returns the response and its record bytes, and
/// whether any partition carries an error (which ends a long poll at once, as in Kafka).
/// Offsets still in the WAL are `pread` from it; offsets below it come from the archive.
async fn read_now(
    broker: &Arc<Broker>,
    version: i16,
    req: &FetchRequest,
    denied: &std::collections::HashSet<usize>,
) -> (FetchResponse, usize, bool) {
    let mut resp = FetchResponse::default();
    let mut plans: Vec<Plan> = Vec::new();
    let mut has_error = false;
    let max_total = match req.max_bytes {
        n if n > 0 => (n as usize).min(broker.config.fetch_max_bytes),
        _ => broker.config.fetch_max_bytes,
    };
    let mut total = 0usize;
    // A follower's fetch (ADR 0022) names its broker id; consumers send -1.
    let replica = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let mut moved = Vec::new();
    for (ti, ft) in req.topics.iter().enumerate() {
        let mut tr = FetchableTopicResponse::default();
        let topic = if version >= 13 {
            tr.topic_id = ft.topic_id;
            broker.registry.topic_by_id(&ft.topic_id)
        } else {
            tr.topic = ft.topic.clone();
            broker.registry.topic(ft.topic.as_str())
        };
        resp.responses.push(tr);
        for fp in &ft.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            let partition = topic
                .as_ref()
                .filter(|_| !denied.contains(&ti))
                .and_then(|t| t.partition(fp.partition));
            let (Some(partition), Some(topic)) = (partition, topic.as_ref()) else {
                pd.error_code = if denied.contains(&ti) {
                    ResponseError::TopicAuthorizationFailed.code()
                } else if version >= 13 && topic.is_none() {
                    ResponseError::UnknownTopicId.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                has_error = true;
                plans.push(Plan {
                    topic: ti,
                    of: None,
                    data: pd,
                    source: Source::Nothing,
                });
                continue;
            };
            let limit = fp.partition_max_bytes.max(0) as usize;
            let mut source = Source::Nothing;
            if let Ok(mut st) = partition.state.lock() {
                // Who may fetch: on a single node anyone; in a cluster consumers only from the
                // leader, followers only from the leader they follow (which notes their
                // progress). A stale or future leader epoch is refused (KIP-320).
                let refused = if replica >= 0 {
                    match broker.note_follower(
                        &mut st,
                        replica,
                        fp.fetch_offset,
                        fp.current_leader_epoch,
                    ) {
                        Ok(true) => {
                            moved.push(partition.clone());
                            None
                        }
                        Ok(false) => None,
                        Err(code) => Some(code),
                    }
                } else {
                    super::check_leader(&st, fp.current_leader_epoch)
                };
                if let Some(code) = refused {
                    pd.error_code = code;
                    has_error = true;
                    drop(st);
                    plans.push(Plan {
                        topic: ti,
                        of: None,
                        data: pd,
                        source: Source::Nothing,
                    });
                    continue;
                }
                // Followers read up to the leader's durable end; consumers up to the high
                // watermark.
                let visible = if replica >= 0 {
                    st.durable_end
                } else {
                    st.high_watermark
                };
                pd.high_watermark = st.high_watermark;
                pd.last_stable_offset = st.high_watermark;
                pd.log_start_offset = st.log_start_offset;
                let in_wal = st
                    .index
                    .first()
                    .is_some_and(|e| e.base_offset <= fp.fetch_offset);
                if fp.fetch_offset < st.log_start_offset || fp.fetch_offset > st.next_offset {
                    pd.error_code = ResponseError::OffsetOutOfRange.code();
                    has_error = true;
                } else if !in_wal && fp.fetch_offset < st.uploaded_end {
                    // Below the WAL: the archive. Its size is unknown until read, so it gets
                    // what is left of the response's budget.
                    let left = max_total.saturating_sub(total);
                    if left > 0 || total == 0 {
                        source = Source::Archive {
                            topic_id: topic.meta.id,
                            segments: st.archive.clone(),
                            offset: fp.fetch_offset,
                            limit: limit.min(left),
                        };
                    }
                } else {
                    let mut reads = Vec::new();
                    let mut part_bytes = 0usize;
                    for e in &st.index[st.find(fp.fetch_offset)..] {
                        if e.end_offset > visible {
                            break;
                        }
                        let len = e.pos.len as usize;
                        let first_overall = total == 0;
                        let fits = part_bytes + len <= limit && total + len <= max_total;
                        if !(fits || first_overall) {
                            break;
                        }
                        part_bytes += len;
                        total += len;
                        reads.push(e.pos);
                    }
                    source = Source::Wal(reads);
                }
            } else {
                pd.error_code = ResponseError::UnknownServerError.code();
                has_error = true;
            }
            plans.push(Plan {
                topic: ti,
                of: Some(topic.clone()),
                data: pd,
                source,
            });
        }
    }
    // Archive reads, in request order, each taking what the response has left.
    for plan in plans.iter_mut() {
        let Source::Archive {
            topic_id,
            segments,
            offset,
            limit,
        } = &plan.source
        else {
            continue;
        };
        // The first batch of a response is returned whatever its size (KIP-74).
        let budget = if total == 0 { (*limit).max(1) } else { *limit };
        match broker
            .archive
            .read(*topic_id, segments.clone(), *offset, budget)
            .await
        {
            Ok(mut pieces) => {
                // Usually one slice of one cached chunk: no copy.
                let records = if pieces.len() == 1 {
                    pieces.remove(0)
                } else {
                    let mut buf = BytesMut::with_capacity(pieces.iter().map(|b| b.len()).sum());
                    for b in &pieces {
                        buf.extend_from_slice(b);
                    }
                    buf.freeze()
                };
                total += records.len();
                plan.data.records = Some(records);
            }
            Err(e) if e.is_permanent() => {
                broker.metrics.archive_corrupt_reads.inc();
                tracing::error!(error = %e, "archived segment does not decode");
                plan.data.error_code = ResponseError::KafkaStorageError.code();
                has_error = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "archive read failed; the client will retry");
                plan.data.error_code = ResponseError::KafkaStorageError.code();
                has_error = true;
            }
        }
        plan.source = Source::Nothing;
    }
    // A follower's confirmation moved the high watermark: acks=all producers and consumers
    // waiting on it wake.
    for p in moved {
        p.changed.notify_waiters();
    }
    let b = broker.clone();
    let wal_reads = tokio::task::spawn_blocking(move || {
        for plan in plans.iter_mut() {
            let Source::Wal(reads) = &plan.source else {
                continue;
            };
            let bytes: usize = reads.iter().map(|p| p.len as usize).sum();
            let mut buf = BytesMut::with_capacity(bytes);
            for pos in reads {
                match b.segments.read(pos) {
                    Ok(data) => buf.extend_from_slice(&data),
                    // Released after the plan was made (it was archived meanwhile): return what
                    // was read; the consumer's next fetch goes to the archive.
                    Err(e) if !buf.is_empty() => {
                        tracing::debug!(error = %e, "wal segment released during a fetch");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "wal read failed");
                        plan.data.error_code = ResponseError::KafkaStorageError.code();
                        break;
                    }
                }
            }
            plan.data.records = Some(buf.freeze());
        }
        plans
    })
    .await;
    let Ok(plans) = wal_reads else {
        return (resp, 0, true);
    };
    for mut plan in plans {
        has_error |= plan.data.error_code != 0;
        if plan.data.records.is_none() && plan.data.error_code == 0 {
            plan.data.records = Some(Default::default());
        }
        if version < 11 {
            plan.data.preferred_read_replica = (-1).into();
        }
        if let (Some(t), Some(records)) = (&plan.of, &plan.data.records) {
            if !records.is_empty() {
                t.io.bytes_out.inc_by(records.len() as u64);
                let spans = sediment_protocol::batch::spans(records);
                t.io.records_out
                    .inc_by(spans.iter().map(|s| s.record_count.max(0) as u64).sum());
            }
        }
        resp.responses[plan.topic].partitions.push(plan.data);
    }
    broker.metrics.fetched_bytes.inc_by(total as u64);
    (resp, total, has_error)
}

/// The partitions a fetch names that exist.
fn requested_partitions(
    broker: &Broker,
    version: i16,
    req: &FetchRequest,
    denied: &std::collections::HashSet<usize>,
) -> Vec<Arc<crate::log::Partition>> {
    let mut out = Vec::new();
    for (ti, ft) in req.topics.iter().enumerate() {
        if denied.contains(&ti) {
            continue;
        }
        let topic = if version >= 13 {
            broker.registry.topic_by_id(&ft.topic_id)
        } else {
            broker.registry.topic(ft.topic.as_str())
        };
        if let Some(t) = topic {
            out.extend(
                ft.partitions
                    .iter()
                    .filter_map(|fp| t.partition(fp.partition).cloned()),
            );
        }
    }
    out
}

/// The topics (by index in the request) the session may not read. A follower's fetch needs
/// CLUSTER_ACTION on the cluster (so a process that is not a broker cannot pose as one); a
/// consumer's needs READ on each topic.
fn denied_topics(
    broker: &Broker,
    session: &crate::security::Session,
    version: i16,
    req: &FetchRequest,
) -> std::collections::HashSet<usize> {
    use sediment_auth::acl::op;
    if broker.authorizer.is_none() {
        return Default::default();
    }
    let replica = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    if replica >= 0 {
        if broker.authorized_cluster(session, op::CLUSTER_ACTION) {
            return Default::default();
        }
        return (0..req.topics.len()).collect();
    }
    req.topics
        .iter()
        .enumerate()
        .filter(|(_, ft)| {
            let name = if version >= 13 {
                broker
                    .registry
                    .topic_by_id(&ft.topic_id)
                    .map(|t| t.meta.name.clone())
            } else {
                Some(ft.topic.to_string())
            };
            // An unknown topic id is answered UNKNOWN_TOPIC_ID, as to anyone.
            name.is_some_and(|n| !broker.authorized_topic(session, op::READ, &n))
        })
        .map(|(i, _)| i)
        .collect()
}

pub fn handle(
    broker: &Arc<Broker>,
    session: &crate::security::Session,
    cid: i32,
    version: i16,
    req: FetchRequest,
) -> Reply {
    let denied = denied_topics(broker, session, version, &req);
    let broker = broker.clone();
    let req = Arc::new(req);
    let fut = async move {
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
        let deadline = Instant::now() + wait;
        let min_bytes = req.min_bytes.max(0) as usize;
        let mut stop = broker.shutdown_signal();
        loop {
            // Registered before reading, so a high watermark that moves in between still
            // wakes this poll. Only the partitions asked for wake it.
            let partitions = requested_partitions(&broker, version, &req, &denied);
            let wakes: Vec<_> = partitions
                .iter()
                .map(|p| Box::pin(p.changed.notified()))
                .collect();
            let (resp, bytes, has_error) = read_now(&broker, version, &req, &denied).await;
            let done = bytes >= min_bytes || has_error || Instant::now() >= deadline;
            if done || *stop.borrow() || wakes.is_empty() {
                return encode(cid, version, &resp);
            }
            tokio::select! {
                _ = futures::future::select_all(wakes) => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = crate::wait_stopped(&mut stop) => {}
            }
        }
    };
    Reply::Later(fut.boxed())
}
