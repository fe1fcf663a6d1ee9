//! SyncGroup: the leader hands out assignments; every member waits for its own.

use std::sync::Arc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::groups::SyncArgs;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default();
    let group = req.group_id.as_str();
    if let Err(code) = broker.check_group_id(group) {
        resp.error_code = code;
        return resp;
    }
    let args = SyncArgs {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let r = broker.coordinator.sync(group, args).await;
    resp.error_code = r.error;
    resp.assignment = r.assignment;
    if version >= 5 && r.error == 0 {
        resp.protocol_type = r.protocol_type.map(str_bytes);
        resp.protocol_name = r.protocol_name.map(str_bytes);
    }
    resp
}
