//! OffsetCommit: validate the committer against the group, then store durably.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use sediment_meta::{CommittedOffset, OffsetEntry};

use super::ResponseError;
use crate::Broker;

/// Longest metadata string kept with an offset (Kafka: offset.metadata.max.bytes).
const MAX_METADATA: usize = 4096;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: OffsetCommitRequest,
    session: &crate::security::Session,
) -> OffsetCommitResponse {
    use sediment_auth::acl::op;
    let group = req.group_id.as_str();
    let verdict = match broker.check_group_id(group) {
        Err(code) => Err(code),
        Ok(()) if !broker.authorized_group(session, op::READ, group) => {
            Err(ResponseError::GroupAuthorizationFailed.code())
        }
        Ok(()) => {
            broker
                .coordinator
                .check_commit(
                    group,
                    req.member_id.to_string(),
                    req.group_instance_id.as_ref().map(|s| s.to_string()),
                    req.generation_id_or_member_epoch,
                )
                .await
        }
    };
    // A commit with a generation for a group this coordinator does not have: Kafka answers
    // GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before.
    let verdict = match verdict {
        Err(c) if c == ResponseError::GroupIdNotFound.code() && version < 9 => {
            Err(ResponseError::IllegalGeneration.code())
        }
        v => v,
    };
    let now_ms = broker.config.clock.wall_ms();
    // (topic index, partition index, code); offsets to store alongside.
    let mut codes: Vec<Vec<i16>> = Vec::with_capacity(req.topics.len());
    let mut to_store = Vec::new();
    for t in &req.topics {
        let topic = broker.registry.topic(t.name.as_str());
        let topic_ok = broker.authorized_topic(session, op::READ, t.name.as_str());
        let mut tc = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let code = if let Err(c) = verdict {
                c
            } else if !topic_ok {
                ResponseError::TopicAuthorizationFailed.code()
            } else if topic
                .as_ref()
                .and_then(|t| t.partition(p.partition_index))
                .is_none()
            {
                ResponseError::UnknownTopicOrPartition.code()
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA)
            {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                to_store.push(OffsetEntry {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    committed: CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_timestamp_ms: now_ms,
                    },
                });
                0
            };
            tc.push(code);
        }
        codes.push(tc);
    }
    if !to_store.is_empty() {
        if let Err(e) = broker.meta.commit_offsets(group, to_store).await {
            tracing::warn!(group, error = %e, "offset commit failed");
            for tc in &mut codes {
                for c in tc.iter_mut().filter(|c| **c == 0) {
                    *c = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        }
    }
    let mut resp = OffsetCommitResponse::default();
    for (t, tc) in req.topics.into_iter().zip(codes) {
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name;
        for (p, code) in t.partitions.into_iter().zip(tc) {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = code;
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
