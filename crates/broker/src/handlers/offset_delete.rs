//! OffsetDelete: forget committed offsets of partitions no current member subscribes to.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetDeleteRequest, OffsetDeleteResponse,
};
use kafka_protocol::protocol::Decodable;

use super::ResponseError;
use crate::Broker;

/// Topics a consumer-protocol member subscribes to, from its JoinGroup metadata.
fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    if metadata.len() < 2 {
        return Vec::new();
    }
    let mut buf = metadata.clone();
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3))
        .map(|s| s.topics.into_iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: OffsetDeleteRequest,
    session: &crate::security::Session,
) -> OffsetDeleteResponse {
    use sediment_auth::acl::op;
    let mut resp = OffsetDeleteResponse::default();
    let group = req.group_id.as_str();
    if let Err(code) = broker.check_group_id(group) {
        resp.error_code = code;
        return resp;
    }
    if !broker.authorized_group(session, op::DELETE, group) {
        resp.error_code = ResponseError::GroupAuthorizationFailed.code();
        return resp;
    }
    let view = broker.coordinator.view(group).await;
    let offsets = broker
        .meta
        .committed_offsets(group)
        .await
        .unwrap_or_default();
    if view.as_ref().is_none_or(|v| v.members.is_empty()) && offsets.is_empty() {
        resp.error_code = ResponseError::GroupIdNotFound.code();
        return resp;
    }
    let subscribed: HashSet<String> = view
        .iter()
        .flat_map(|v| v.members.iter())
        .filter(|_| view.as_ref().is_some_and(|v| v.protocol_type == "consumer"))
        .flat_map(|m| subscribed_topics(&m.metadata))
        .collect();
    let mut delete = Vec::new();
    for t in req.topics {
        let mut tr = OffsetDeleteResponseTopic::default();
        let busy = subscribed.contains(t.name.as_str());
        let allowed = broker.authorized_topic(session, op::READ, t.name.as_str());
        for p in t.partitions {
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            if !allowed {
                pr.error_code = ResponseError::TopicAuthorizationFailed.code();
            } else if busy {
                pr.error_code = ResponseError::GroupSubscribedToTopic.code();
            } else {
                delete.push((t.name.to_string(), p.partition_index));
            }
            tr.partitions.push(pr);
        }
        tr.name = t.name;
        resp.topics.push(tr);
    }
    if !delete.is_empty() {
        if let Err(e) = broker.meta.delete_offsets(group, delete).await {
            tracing::warn!(group, error = %e, "offset delete failed");
            resp.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    resp
}
