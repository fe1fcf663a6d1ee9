//! LeaveGroup: one member (v0-2) or a batch of members by id or instance id (v3+).

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let mut resp = LeaveGroupResponse::default();
    let group = req.group_id.as_str();
    if let Err(code) = broker.check_group_id(group) {
        resp.error_code = code;
        return resp;
    }
    if version < 3 {
        let codes = broker
            .coordinator
            .leave(group, vec![(req.member_id.to_string(), None)])
            .await;
        resp.error_code = codes.first().copied().unwrap_or(0);
        return resp;
    }
    let who: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|s| s.to_string()),
            )
        })
        .collect();
    let codes = broker.coordinator.leave(group, who).await;
    for (m, code) in req.members.into_iter().zip(codes) {
        let mut r = MemberResponse::default();
        r.member_id = m.member_id;
        r.group_instance_id = m.group_instance_id;
        r.error_code = code;
        resp.members.push(r);
    }
    resp
}
