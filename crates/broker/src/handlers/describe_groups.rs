//! DescribeGroups: state, protocol and members (with metadata and assignment) of each group.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str_bytes;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: DescribeGroupsRequest,
    session: &crate::security::Session,
) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut g = DescribedGroup::default();
        let allowed =
            broker.authorized_group(session, sediment_auth::acl::op::DESCRIBE, id.as_str());
        let checked = broker.check_group_id(id.as_str()).and_then(|()| {
            if allowed {
                Ok(())
            } else {
                Err(kafka_protocol::ResponseError::GroupAuthorizationFailed.code())
            }
        });
        if let Err(code) = checked {
            g.error_code = code;
            g.group_id = id;
            resp.groups.push(g);
            continue;
        }
        match broker.coordinator.view(id.as_str()).await {
            Some(view) => {
                g.group_state = str_bytes(view.state.name());
                g.protocol_type = str_bytes(view.protocol_type);
                g.protocol_data = str_bytes(view.protocol_name);
                g.members = view
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = str_bytes(m.member_id);
                        if version >= 4 {
                            dm.group_instance_id = m.instance_id.map(str_bytes);
                        }
                        dm.client_id = str_bytes(m.client_id);
                        dm.client_host = str_bytes(m.client_host);
                        dm.member_metadata = m.metadata;
                        dm.member_assignment = m.assignment;
                        dm
                    })
                    .collect();
            }
            None => {
                // Kafka describes a group it knows only by its offsets as Empty, and one it
                // does not know at all as Dead; neither is an error.
                let has_offsets = broker
                    .meta
                    .committed_offsets(id.as_str())
                    .await
                    .map(|o| !o.is_empty())
                    .unwrap_or(false);
                g.group_state = str_bytes(if has_offsets { "Empty" } else { "Dead" });
            }
        }
        g.group_id = id;
        resp.groups.push(g);
    }
    resp
}
