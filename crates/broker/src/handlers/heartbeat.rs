//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, req: HeartbeatRequest) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    let group = req.group_id.as_str();
    resp.error_code = match broker.check_group_id(group) {
        Err(code) => code,
        Ok(()) => {
            broker
                .coordinator
                .heartbeat(
                    group,
                    req.member_id.to_string(),
                    req.group_instance_id.as_ref().map(|s| s.to_string()),
                    req.generation_id,
                )
                .await
        }
    };
    resp
}
