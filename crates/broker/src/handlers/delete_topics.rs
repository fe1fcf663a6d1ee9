//! DeleteTopics: by name (all versions) or by id (v6+).
//!
//! The topic leaves the MetaStore and the registry at once. Its batches stay in the WAL until
//! their space is released; they carry the old topic id, so a re-created topic of the same name
//! never sees them.

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use tracing::info;
use uuid::Uuid;

use super::{meta_error_code, str_bytes, ResponseError};
use crate::Broker;

async fn delete(
    broker: &Broker,
    session: &crate::security::Session,
    name: Option<TopicName>,
    id: Uuid,
    version: i16,
) -> DeletableTopicResult {
    let mut r = DeletableTopicResult::default();
    let resolved = match (&name, id.is_nil()) {
        (Some(n), _) => Some(n.to_string()),
        (None, false) => broker
            .registry
            .topic_by_id(&id)
            .map(|t| t.meta.name.clone()),
        (None, true) => None,
    };
    r.name = name
        .clone()
        .or_else(|| resolved.clone().map(|n| TopicName(str_bytes(n))));
    if version >= 6 {
        r.topic_id = id;
    }
    let Some(topic) = resolved else {
        r.error_code = if id.is_nil() {
            ResponseError::InvalidRequest.code()
        } else {
            ResponseError::UnknownTopicId.code()
        };
        return r;
    };
    if !broker.authorized_topic(session, sediment_auth::acl::op::DELETE, &topic) {
        r.error_code = ResponseError::TopicAuthorizationFailed.code();
        if name.is_none() {
            // Asked by id: the name of a topic the principal may not delete stays unsaid.
            r.name = None;
        }
        return r;
    }
    match broker.meta.delete_topic(&topic).await {
        Ok(meta) => {
            if let Some(gone) = broker.registry.remove_topic(&topic) {
                // Its archive goes too (the index entries went with the topic's metadata).
                let segments: Vec<_> = gone
                    .partitions
                    .iter()
                    .filter_map(|p| p.state.lock().ok().map(|st| st.archive.clone()))
                    .flat_map(|a| a.iter().cloned().collect::<Vec<_>>())
                    .collect();
                broker.delete_objects(&segments).await;
            }
            if let Some(cluster) = broker.cluster() {
                if let Err(e) = cluster.meta.delete_partition_states(meta.id).await {
                    tracing::warn!(topic, error = %e, "removing the deleted topic's partition states failed");
                }
            }
            if version >= 6 {
                r.topic_id = meta.id;
            }
            info!(topic, "deleted topic");
        }
        Err(e) => {
            r.error_code = meta_error_code(&e);
            if version >= 5 {
                r.error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    r
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: DeleteTopicsRequest,
    session: &crate::security::Session,
) -> DeleteTopicsResponse {
    let mut resp = DeleteTopicsResponse::default();
    if version >= 6 {
        for t in req.topics {
            resp.responses
                .push(delete(broker, session, t.name, t.topic_id, version).await);
        }
    } else {
        for name in req.topic_names {
            resp.responses
                .push(delete(broker, session, Some(name), Uuid::nil(), version).await);
        }
    }
    resp
}
