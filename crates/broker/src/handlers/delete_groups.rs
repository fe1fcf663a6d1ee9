//! DeleteGroups: an empty group's state and committed offsets go; a group with members stays.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use tracing::info;

use super::ResponseError;
use crate::Broker;

pub async fn delete_group(broker: &Broker, id: &str) -> i16 {
    if let Err(code) = broker.check_group_id(id) {
        return code;
    }
    let had_state = match broker.coordinator.delete(id).await {
        Ok(had) => had,
        Err(code) => return code,
    };
    let offsets = broker.meta.committed_offsets(id).await.unwrap_or_default();
    if !had_state && offsets.is_empty() {
        return ResponseError::GroupIdNotFound.code();
    }
    if !offsets.is_empty() {
        if let Err(e) = broker.meta.delete_group_offsets(id).await {
            tracing::warn!(group = id, error = %e, "deleting group offsets failed");
            return ResponseError::CoordinatorNotAvailable.code();
        }
    }
    info!(group = id, "deleted group");
    0
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: DeleteGroupsRequest,
    session: &crate::security::Session,
) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut r = DeletableGroupResult::default();
        r.error_code =
            if broker.authorized_group(session, sediment_auth::acl::op::DELETE, id.as_str()) {
                delete_group(broker, id.as_str()).await
            } else {
                kafka_protocol::ResponseError::GroupAuthorizationFailed.code()
            };
        r.group_id = id;
        resp.results.push(r);
    }
    resp
}
