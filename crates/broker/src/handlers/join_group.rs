//! JoinGroup: hand the request to the group's task and wait for the rebalance to complete.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{str_bytes, ResponseError};
use crate::groups::JoinArgs;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: JoinGroupRequest,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default();
    resp.member_id = req.member_id.clone();
    resp.generation_id = -1;
    if version < 7 {
        resp.protocol_name = Some(Default::default());
    }
    let group = req.group_id.as_str();
    if let Err(code) = broker.check_group_id(group) {
        resp.error_code = code;
        return resp;
    }
    let args = JoinArgs {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        // v0 had no rebalance timeout: it was the session timeout.
        rebalance_timeout: Duration::from_millis(if req.rebalance_timeout_ms > 0 {
            req.rebalance_timeout_ms as u64
        } else {
            req.session_timeout_ms.max(0) as u64
        }),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let r = broker.coordinator.join(group, args).await;
    resp.error_code = r.error;
    resp.generation_id = r.generation;
    if version >= 9 {
        resp.skip_assignment = r.skip_assignment;
    }
    resp.member_id = str_bytes(r.member_id);
    resp.leader = str_bytes(r.leader);
    if version >= 7 {
        resp.protocol_type = r.protocol_type.map(str_bytes);
        resp.protocol_name = r.protocol_name.map(str_bytes);
    } else {
        resp.protocol_name = Some(str_bytes(r.protocol_name.unwrap_or_default()));
    }
    resp.members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = str_bytes(id);
            if version >= 5 {
                m.group_instance_id = instance.map(str_bytes);
            }
            m.metadata = metadata;
            m
        })
        .collect();
    if resp.error_code == ResponseError::MemberIdRequired.code() {
        resp.generation_id = -1;
    }
    resp
}
