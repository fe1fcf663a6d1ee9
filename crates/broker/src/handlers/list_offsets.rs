//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), and by timestamp.
//!
//! By timestamp, the segment index and row-group statistics find the archived chunk to look in,
//! and the WAL index finds the first resident batch whose max timestamp reaches the target; that
//! batch is decoded (decompressing if needed) to find the first record at or after it, since
//! records inside a batch need not be in timestamp order.

use std::sync::Arc;

use bytes::Bytes;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::ResponseError;
use crate::log::Partition;
use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// The first record of a stored batch whose timestamp is at least `timestamp`, as
/// `(offset, timestamp)`. Decompression is capped: a hostile producer's batch must not expand
/// without bound.
pub(crate) fn first_at_or_after(batch: &Bytes, timestamp: i64) -> Option<(i64, i64)> {
    let set = sediment_protocol::decompress::decode_batch(
        batch,
        sediment_protocol::decompress::MAX_DECOMPRESSED_BATCH,
    )
    .ok()?;
    set.records
        .iter()
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp))
}

/// `(timestamp, offset)` answered for `target`, or an error code. Archived segments are
/// searched first (their index entries carry timestamp ranges, their row groups timestamp
/// statistics), then the WAL-resident batches.
async fn lookup(
    broker: &Arc<Broker>,
    topic_id: uuid::Uuid,
    p: &Partition,
    target: i64,
) -> Result<(i64, i64), i16> {
    // Chosen under the lock without copying the index: the WAL batch with the largest max
    // timestamp (first such), or the first whose max timestamp reaches the target.
    let (entry, archive, log_start) = {
        let st = p
            .state
            .lock()
            .map_err(|_| ResponseError::UnknownServerError.code())?;
        let log_start = st.log_start_offset;
        let mut visible = st
            .index
            .iter()
            .filter(|e| e.end_offset > log_start && e.end_offset > st.uploaded_end)
            .take_while(|e| e.end_offset <= st.high_watermark);
        let entry = match target {
            LATEST => return Ok((-1, st.high_watermark)),
            EARLIEST => return Ok((-1, st.log_start_offset)),
            MAX_TIMESTAMP => visible
                .fold(
                    None,
                    |best: Option<&crate::log::IndexEntry>, e| match best {
                        Some(b) if b.max_timestamp >= e.max_timestamp => Some(b),
                        _ => Some(e),
                    },
                )
                .copied(),
            t if t >= 0 => visible.find(|e| e.max_timestamp >= t).copied(),
            _ => return Err(ResponseError::InvalidRequest.code()),
        };
        (entry, st.archive.clone(), log_start)
    };
    let storage_error = |e: crate::archive::ArchiveError| {
        tracing::warn!(error = %e, "listoffsets could not read the archive");
        ResponseError::KafkaStorageError.code()
    };
    let live: Vec<_> = archive
        .iter()
        .filter(|s| s.end_offset > log_start)
        .cloned()
        .collect();
    let wanted = if target == MAX_TIMESTAMP {
        let best = live.iter().map(|s| s.max_timestamp).max();
        match (best, entry) {
            (Some(a), Some(e)) if a >= e.max_timestamp => Some(a),
            (Some(a), None) => Some(a),
            _ => None,
        }
    } else {
        Some(target)
    };
    if let Some(ts) = wanted {
        let found = broker
            .archive
            .offset_for_time(topic_id, &live, log_start, ts)
            .await
            .map_err(storage_error)?;
        if let Some((offset, timestamp)) = found {
            return Ok((timestamp, offset));
        }
    }
    let Some(entry) = entry else {
        return Ok((-1, -1));
    };
    let segments = broker.segments.clone();
    let found = tokio::task::spawn_blocking(move || {
        let bytes = segments
            .read(&entry.pos)
            .map_err(|_| ResponseError::KafkaStorageError.code())?;
        let ts = if target == MAX_TIMESTAMP {
            entry.max_timestamp
        } else {
            target
        };
        Ok::<_, i16>(first_at_or_after(&bytes, ts))
    })
    .await
    .map_err(|_| ResponseError::UnknownServerError.code())??;
    Ok(found
        .map(|(o, t)| (t, o.max(log_start)))
        .unwrap_or((entry.max_timestamp, entry.base_offset.max(log_start))))
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: ListOffsetsRequest,
    session: &crate::security::Session,
) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let allowed =
            broker.authorized_topic(session, sediment_auth::acl::op::DESCRIBE, t.name.as_str());
        let topic = broker.registry.topic(t.name.as_str());
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            let found = topic
                .as_ref()
                .and_then(|t| Some((t.meta.id, t.partition(p.partition_index)?.clone())));
            match found {
                _ if !allowed => pr.error_code = ResponseError::TopicAuthorizationFailed.code(),
                None => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some((topic_id, part)) => {
                    let refused = part
                        .state
                        .lock()
                        .map_or(Some(ResponseError::UnknownServerError.code()), |st| {
                            super::check_leader(&st, p.current_leader_epoch)
                        });
                    let found = match refused {
                        Some(code) => Err(code),
                        None => lookup(broker, topic_id, &part, p.timestamp).await,
                    };
                    match found {
                        Ok((ts, off)) => {
                            pr.timestamp = ts;
                            pr.offset = off;
                            if version >= 4 {
                                pr.leader_epoch =
                                    part.state.lock().map(|s| s.leader_epoch).unwrap_or(0);
                            }
                        }
                        Err(code) => pr.error_code = code,
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
