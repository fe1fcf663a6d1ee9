//! DeleteRecords: moves partitions' log start offsets forward by hand.
//!
//! Offset -1 means the high watermark. An offset above the high watermark is OFFSET_OUT_OF_RANGE;
//! one at or below the current log start changes nothing. Archive segments wholly below the new
//! start are deleted at once; the rest of the prefix becomes unreadable (fetches below it get
//! OFFSET_OUT_OF_RANGE, ListOffsets(earliest) returns it) and goes with its segment later.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{meta_error_code, ResponseError};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    req: DeleteRecordsRequest,
    session: &crate::security::Session,
) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let allowed =
            broker.authorized_topic(session, sediment_auth::acl::op::DELETE, t.name.as_str());
        let topic = broker.registry.topic(t.name.as_str());
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            if !allowed {
                pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                tr.partitions.push(pr);
                continue;
            }
            let Some((topic, part)) = topic
                .as_ref()
                .and_then(|t| Some((t, t.partition(p.partition_index)?)))
            else {
                pr.error_code = ResponseError::UnknownTopicOrPartition.code();
                tr.partitions.push(pr);
                continue;
            };
            let (hw, start) = match part.state.lock() {
                // In a cluster only the leader moves the log start (the index is shared).
                Ok(st) if super::check_leader(&st, -1).is_some() => {
                    pr.error_code = ResponseError::NotLeaderOrFollower.code();
                    tr.partitions.push(pr);
                    continue;
                }
                Ok(st) => (st.high_watermark, st.log_start_offset),
                Err(_) => {
                    pr.error_code = ResponseError::UnknownServerError.code();
                    tr.partitions.push(pr);
                    continue;
                }
            };
            let target = if p.offset == -1 { hw } else { p.offset };
            if target < 0 || target > hw {
                pr.error_code = ResponseError::OffsetOutOfRange.code();
            } else if target <= start {
                pr.low_watermark = start;
            } else {
                match broker
                    .advance_log_start(topic, p.partition_index, target)
                    .await
                {
                    Ok(_) => pr.low_watermark = target,
                    Err(e) => pr.error_code = meta_error_code(&e),
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
