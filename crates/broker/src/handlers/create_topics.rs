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

use super::{meta_error_code, str_bytes, ResponseError};
use crate::topics::{default_value, validate_configs, validate_name, TOPIC_CONFIGS};
use crate::Broker;

/// Checks a topic request; on success the partition count and configs to create with.
fn check(
    broker: &Broker,
    t: &CreatableTopic,
) -> Result<(i32, BTreeMap<String, String>), (i16, String)> {
    validate_name(t.name.as_str()).map_err(|m| (ResponseError::InvalidTopicException.code(), m))?;
    let partitions = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest.code(),
                "give either assignments or partitions and replication factor, not both".into(),
            ));
        }
        let me = broker.config.broker_id;
        if t.assignments
            .iter()
            .any(|a| a.broker_ids.iter().any(|b| b.0 != me) || a.broker_ids.is_empty())
        {
            return Err((
                ResponseError::InvalidReplicaAssignment.code(),
                format!("this cluster has one broker, id {me}"),
            ));
        }
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
    Ok((partitions, configs))
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let result = match check(broker, &t) {
            Err(e) => Err(e),
            Ok((partitions, configs)) if req.validate_only => {
                if broker.registry.topic(t.name.as_str()).is_some() {
                    Err((
                        ResponseError::TopicAlreadyExists.code(),
                        format!("topic {} already exists", t.name.as_str()),
                    ))
                } else {
                    Ok((None, partitions, configs))
                }
            }
            Ok((partitions, configs)) => {
                match broker
                    .meta
                    .create_topic(t.name.as_str(), partitions, configs.clone())
                    .await
                {
                    Ok(meta) => {
                        info!(topic = %meta.name, partitions, "created topic");
                        let id = meta.id;
                        broker.registry.upsert_topic(meta);
                        Ok((Some(id), partitions, configs))
                    }
                    Err(e) => Err((meta_error_code(&e), e.to_string())),
                }
            }
        };
        match result {
            Ok((id, partitions, configs)) => {
                if version >= 5 {
                    r.num_partitions = partitions;
                    r.replication_factor = 1;
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
