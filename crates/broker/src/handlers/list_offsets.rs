//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), and by timestamp.
//!
//! By timestamp, the index finds the first batch whose max timestamp reaches the target; that
//! batch is decoded (decompressing if needed) to find the first record at or after it, since
//! records inside a batch need not be in timestamp order.

use std::sync::Arc;

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

/// `(timestamp, offset)` answered for `target`, or an error code.
fn lookup(broker: &Broker, p: &Partition, target: i64) -> Result<(i64, i64), i16> {
    // The batch to decode, chosen under the lock without copying the index: the one with the
    // largest max timestamp (first such), or the first whose max timestamp reaches the target.
    let entry = {
        let st = p
            .state
            .lock()
            .map_err(|_| ResponseError::UnknownServerError.code())?;
        let mut visible = st
            .index
            .iter()
            .take_while(|e| e.end_offset <= st.high_watermark);
        match target {
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
        }
    };
    let Some(entry) = entry else {
        return Ok((-1, -1));
    };
    let bytes = broker
        .segments
        .read(&entry.pos)
        .map_err(|_| ResponseError::KafkaStorageError.code())?;
    // Capped: a compressed batch from a hostile producer must not expand without bound.
    let set = sediment_protocol::decompress::decode_batch(
        &bytes,
        sediment_protocol::decompress::MAX_DECOMPRESSED_BATCH,
    )
    .map_err(|_| ResponseError::CorruptMessage.code())?;
    let found = if target == MAX_TIMESTAMP {
        set.records
            .iter()
            .filter(|r| r.timestamp == entry.max_timestamp)
            .map(|r| (r.timestamp, r.offset))
            .next()
    } else {
        set.records
            .iter()
            .find(|r| r.timestamp >= target)
            .map(|r| (r.timestamp, r.offset))
    };
    Ok(found.unwrap_or((entry.max_timestamp, entry.base_offset)))
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let broker = broker.clone();
    let work = tokio::task::spawn_blocking(move || {
        let mut resp = ListOffsetsResponse::default();
        for t in req.topics {
            let topic = broker.registry.topic(t.name.as_str());
            let mut tr = ListOffsetsTopicResponse::default();
            tr.name = t.name;
            for p in t.partitions {
                let mut pr = ListOffsetsPartitionResponse::default();
                pr.partition_index = p.partition_index;
                pr.timestamp = -1;
                pr.offset = -1;
                match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                    None => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    Some(part) => match lookup(&broker, part, p.timestamp) {
                        Ok((ts, off)) => {
                            pr.timestamp = ts;
                            pr.offset = off;
                            if version >= 4 {
                                pr.leader_epoch =
                                    part.state.lock().map(|s| s.leader_epoch).unwrap_or(0);
                            }
                        }
                        Err(code) => pr.error_code = code,
                    },
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    });
    work.await.unwrap_or_default()
}
