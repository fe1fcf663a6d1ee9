//! DescribeCluster: the live brokers (a single node: this one), and the broker named as
//! controller (see [`super::brokers`]).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, ResponseError};
use crate::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    req: DescribeClusterRequest,
    session: &crate::security::Session,
) -> DescribeClusterResponse {
    use sediment_auth::acl::{op, resource, CLUSTER_NAME};
    let mut resp = DescribeClusterResponse::default();
    if !broker.authorized_cluster(session, op::DESCRIBE) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return resp;
    }
    // endpoint_type 1 = brokers; 2 = controllers (KIP-919), which clients may not ask us for.
    if req.endpoint_type != 1 {
        resp.error_code = ResponseError::UnsupportedEndpointType.code();
        resp.error_message = Some(str_bytes("only the brokers endpoint type is served"));
        return resp;
    }
    let (brokers, controller) = super::brokers(broker, &session.listener);
    resp.cluster_id = str_bytes(broker.cluster_id());
    resp.controller_id = BrokerId(controller);
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = super::operations(
            broker,
            session,
            resource::CLUSTER,
            CLUSTER_NAME,
            super::CLUSTER_OPERATIONS,
        );
    }
    resp.brokers = brokers
        .into_iter()
        .map(|(id, host, port, rack)| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(id);
            b.host = str_bytes(host);
            b.port = port;
            b.rack = rack.map(str_bytes);
            b
        })
        .collect();
    resp
}
