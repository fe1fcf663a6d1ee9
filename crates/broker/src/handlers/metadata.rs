//! Metadata: brokers, topics and partition leaders; auto-creates requested topics.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use sediment_auth::acl::op;

use super::{str_bytes, ResponseError};
use crate::log::Topic;
use crate::Broker;

fn describe(
    broker: &Broker,
    session: &crate::security::Session,
    t: &Topic,
    version: i16,
    ops: bool,
) -> MetadataResponseTopic {
    let id = BrokerId(broker.config.broker_id);
    let mut out = MetadataResponseTopic::default();
    out.name = Some(TopicName(str_bytes(t.meta.name.clone())));
    if version >= 8 && ops {
        out.topic_authorized_operations = super::operations(
            broker,
            session,
            sediment_auth::acl::resource::TOPIC,
            &t.meta.name,
            super::TOPIC_OPERATIONS,
        );
    }
    if version >= 10 {
        out.topic_id = t.meta.id;
    }
    out.partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = i as i32;
            let local_epoch = p.state.lock().map(|s| s.leader_epoch).unwrap_or(0);
            match broker.cluster() {
                None => {
                    mp.leader_id = id;
                    if version >= 7 {
                        mp.leader_epoch = local_epoch;
                    }
                    mp.replica_nodes = vec![id];
                    mp.isr_nodes = vec![id];
                }
                Some(cluster) => match cluster.state(t.meta.id, i as i32) {
                    Some(state) => {
                        let s = state.value;
                        let live = s.leader >= 0 && cluster.is_live(s.leader);
                        mp.leader_id = BrokerId(if live { s.leader } else { -1 });
                        if !live {
                            mp.error_code = ResponseError::LeaderNotAvailable.code();
                        }
                        if version >= 7 {
                            mp.leader_epoch = s.leader_epoch;
                        }
                        mp.replica_nodes = s.replicas.iter().map(|b| BrokerId(*b)).collect();
                        mp.isr_nodes = s.isr.iter().map(|b| BrokerId(*b)).collect();
                        if version >= 5 {
                            mp.offline_replicas = s
                                .replicas
                                .iter()
                                .filter(|b| !cluster.is_live(**b))
                                .map(|b| BrokerId(*b))
                                .collect();
                        }
                    }
                    None => {
                        mp.error_code = ResponseError::LeaderNotAvailable.code();
                        mp.leader_id = BrokerId(-1);
                    }
                },
            }
            mp
        })
        .collect();
    out
}

fn missing(name: Option<TopicName>, id: Uuid, code: i16, version: i16) -> MetadataResponseTopic {
    let mut out = MetadataResponseTopic::default();
    out.error_code = code;
    out.name = name;
    if version >= 10 {
        out.topic_id = id;
    }
    out
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: MetadataRequest,
    session: &crate::security::Session,
) -> MetadataResponse {
    let mut resp = MetadataResponse::default();
    let (brokers, controller) = super::brokers(broker, &session.listener);
    resp.brokers = brokers
        .into_iter()
        .map(|(node, host, port, rack)| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(node);
            b.host = str_bytes(host);
            b.port = port;
            if version >= 1 {
                b.rack = rack.map(str_bytes);
            }
            b
        })
        .collect();
    if version >= 2 {
        resp.cluster_id = Some(str_bytes(broker.cluster_id()));
    }
    if version >= 1 {
        resp.controller_id = BrokerId(controller);
    }
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = super::operations(
            broker,
            session,
            sediment_auth::acl::resource::CLUSTER,
            sediment_auth::acl::CLUSTER_NAME,
            super::CLUSTER_OPERATIONS,
        );
    }
    let ops = req.include_topic_authorized_operations;
    // v0: an empty list means every topic. v1+: null means every topic.
    let all = match &req.topics {
        None => true,
        Some(t) => version == 0 && t.is_empty(),
    };
    // v4 added the flag; before it, Metadata always auto-created.
    let auto_create = version < 4 || req.allow_auto_topic_creation;
    if all {
        resp.topics = broker
            .registry
            .topics()
            .iter()
            // Only what the principal may describe; the rest is not even named.
            .filter(|t| broker.authorized_topic(session, op::DESCRIBE, &t.meta.name))
            .map(|t| describe(broker, session, t, version, ops))
            .collect();
        return resp;
    }
    for wanted in req.topics.unwrap_or_default() {
        let denied = Err(ResponseError::TopicAuthorizationFailed.code());
        let topic = match &wanted.name {
            Some(name) if !broker.authorized_topic(session, op::DESCRIBE, name) => denied,
            Some(name) => {
                let create = auto_create && broker.may_create_topic(session, name);
                match broker.ensure_topic(name.as_str(), create).await {
                    // Kafka: a missing topic the client asked to auto-create but may not is
                    // TOPIC_AUTHORIZATION_FAILED, so the client fails at once.
                    Err(code)
                        if auto_create
                            && !create
                            && code == ResponseError::UnknownTopicOrPartition.code() =>
                    {
                        denied
                    }
                    other => other,
                }
            }
            None if !wanted.topic_id.is_nil() => {
                match broker.registry.topic_by_id(&wanted.topic_id) {
                    Some(t) if !broker.authorized_topic(session, op::DESCRIBE, &t.meta.name) => {
                        denied
                    }
                    Some(t) => Ok(t),
                    None => Err(ResponseError::UnknownTopicId.code()),
                }
            }
            None => Err(ResponseError::InvalidRequest.code()),
        };
        resp.topics.push(match topic {
            Ok(t) => describe(broker, session, &t, version, ops),
            Err(code) => missing(wanted.name, wanted.topic_id, code, version),
        });
    }
    resp
}
