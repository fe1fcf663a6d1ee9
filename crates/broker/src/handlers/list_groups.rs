//! ListGroups: groups with members or committed offsets, optionally filtered by state (v4+).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: ListGroupsRequest,
    session: &crate::security::Session,
) -> ListGroupsResponse {
    use sediment_auth::acl::op;
    // DESCRIBE on the cluster lists every group; otherwise only those the principal may
    // describe (Kafka's rule).
    let all = broker.authorized_cluster(session, op::DESCRIBE);
    let mut found: BTreeMap<String, (String, String)> = BTreeMap::new();
    for id in broker.meta.offset_groups().await.unwrap_or_default() {
        // Known only by offsets committed from outside the group protocol: Kafka lists such
        // a group with an empty protocol type (librdkafka calls it "simple").
        found.insert(id, ("Empty".into(), String::new()));
    }
    for id in broker.coordinator.group_ids() {
        if let Some(view) = broker.coordinator.view(&id).await {
            let protocol_type = view.protocol_type;
            found.insert(id, (view.state.name().to_string(), protocol_type));
        }
    }
    let mut resp = ListGroupsResponse::default();
    for (id, (state, protocol_type)) in found {
        let wanted = req.states_filter.is_empty()
            || req
                .states_filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(&state));
        if !wanted || state == "Dead" {
            continue;
        }
        if !all && !broker.authorized_group(session, op::DESCRIBE, &id) {
            continue;
        }
        let mut g = ListedGroup::default();
        g.group_id = GroupId(str_bytes(id));
        g.protocol_type = str_bytes(protocol_type);
        if version >= 4 {
            g.group_state = str_bytes(state);
        }
        resp.groups.push(g);
    }
    resp
}
