//! CreateTopics: validate name, partitions, replication and configs, then create in the
//! MetaStore.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use tracing::info;

use super::{str_bytes, ResponseError};
use crate::topics::{default_value, validate_configs, validate_name, TOPIC_CONFIGS};
use crate::Broker;

/// Checks a topic request; on success the partition count and configs to create with.
fn check(broker: &Broker, t: &CreatableTopic) -> Result<Checked, (i16, String)> {
    validate_name(t.name.as_str()).map_err(|m| (ResponseError::InvalidTopicException.code(), m))?;
    let clustered = broker.cluster().is_some();
    let mut assignment = None;
    let partitions = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest.code(),
                "give either assignments or partitions and replication factor, not both".into(),
            ));
        }
        let me = broker.config.broker_id;
        if t.assignments.iter().any(|a| a.broker_ids.is_empty())
            || (!clustered
                && t.assignments
                    .iter()
                    .any(|a| a.broker_ids.iter().any(|b| b.0 != me)))
        {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!("this cluster has one broker, id {me}"),
            ));
        }
        let mut by_index: Vec<_> = t.assignments.iter().collect();
        by_index.sort_by_key(|a| a.partition_index);
        if by_index
            .iter()
            .enumerate()
            .any(|(i, a)| a.partition_index != i as i32)
        {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                "assignments must name partitions 0, 1, 2, ... each once".into(),
            ));
        }
        assignment = Some(
            by_index
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect(),
        );
        t.assignments.len() as i32
    } else {
        match t.num_partitions {
            -1 => broker.config.num_partitions,
            n if n >= 1 => n,
            n => {
                return Err((
                    ResponseError::InvalidPartitions.code(),
                    format!("number of partitions must be at least 1, got {n}"),
                ))
            }
        }
    };
    match t.replication_factor {
        -1 | 1 => {}
        n if clustered && n > 1 => {}
        n if n > 1 => {
            return Err((
                ResponseError::InvalidReplicationFactor.code(),
                format!("replication factor {n} is larger than the 1 available broker"),
            ))
        }
        n => {
            return Err((
                ResponseError::InvalidReplicationFactor.code(),
                format!("replication factor must be at least 1, got {n}"),
            ))
        }
    }
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        match &c.value {
            Some(v) => {
                configs.insert(c.name.to_string(), v.to_string());
            }
            None => {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!("config {} has a null value", c.name.as_str()),
                ))
            }
        }
    }
    validate_configs(&configs).map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
    if clustered && assignment.is_none() {
        // Placement is checked before anything is created (and for validate_only).
        broker.place_replicas(0, partitions, t.replication_factor.into())?;
    }
    Ok(Checked {
        partitions,
        configs,
        assignment,
    })
}

struct Checked {
    partitions: i32,
    configs: BTreeMap<String, String>,
    assignment: Option<Vec<Vec<i32>>>,
}

/// The replication factor a topic is (or would be) created with.
fn replication(broker: &Broker, c: &Checked, t: &CreatableTopic) -> i16 {
    match (&c.assignment, t.replication_factor) {
        (Some(a), _) => a.first().map_or(1, |r| r.len() as i16),
        (None, -1) => broker.default_replication_factor() as i16,
        (None, n) => n,
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: CreateTopicsRequest,
    session: &crate::security::Session,
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let result = match check(broker, &t) {
            _ if !broker.may_create_topic(session, t.name.as_str()) => Err((
                ResponseError::TopicAuthorizationFailed.code(),
                "not authorized to create the topic".to_string(),
            )),
            Err(e) => Err(e),
            Ok(c) if req.validate_only => {
                if broker.registry.topic(t.name.as_str()).is_some() {
                    Err((
                        ResponseError::TopicAlreadyExists.code(),
                        format!("topic {} already exists", t.name.as_str()),
                    ))
                } else {
                    {
                        let rf = replication(broker, &c, &t);
                        Ok((None, c.partitions, c.configs, rf))
                    }
                }
            }
            Ok(c) => {
                let rf = replication(broker, &c, &t);
                match broker
                    .create_topic_placed(
                        t.name.as_str(),
                        c.partitions,
                        c.configs.clone(),
                        t.replication_factor.into(),
                        c.assignment.clone(),
                    )
                    .await
                {
                    Ok(meta) => {
                        info!(topic = %meta.name, partitions = c.partitions, "created topic");
                        let id = meta.id;
                        let configs = meta.configs.clone();
                        broker.registry.upsert_topic(meta);
                        Ok((Some(id), c.partitions, configs, rf))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok((id, partitions, configs, rf)) => {
                if version >= 5 {
                    r.num_partitions = partitions;
                    r.replication_factor = rf;
                    r.configs = Some(
                        TOPIC_CONFIGS
                            .iter()
                            .map(|d| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = str_bytes(d.name);
                                let v = configs
                                    .get(d.name)
                                    .cloned()
                                    .unwrap_or_else(|| default_value(&broker.config, d));
                                c.value = Some(str_bytes(v));
                                c.config_source = if configs.contains_key(d.name) { 1 } else { 5 };
                                c
                            })
                            .collect(),
                    );
                }
                if version >= 7 {
                    r.topic_id = id.unwrap_or_default();
                }
            }
            Err((code, msg)) => {
                r.error_code = code;
                r.error_message = Some(str_bytes(msg));
            }
        }
        resp.topics.push(r);
    }
    resp
}
