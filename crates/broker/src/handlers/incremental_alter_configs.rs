//! IncrementalAlterConfigs for topic configs: SET and DELETE of the configs CreateTopics accepts
//! (retention.ms, retention.bytes, max.message.bytes, ...), validated the same way, stored in
//! the metadata store and applied at once (retention runs on its next pass). APPEND and SUBTRACT
//! apply to list configs only; cleanup.policy is the one list, and only "delete" is served, so
//! they are refused. Broker configs are static (set at start-up): altering them is refused.

use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::{meta_error_code, str_bytes, ResponseError};
use crate::topics::validate_configs;
use crate::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;

pub async fn handle(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let outcome = match res.resource_type {
            TOPIC => alter_topic(broker, &res, req.validate_only).await,
            other => Err(not_a_topic(other)),
        };
        if let Err((code, message)) = outcome {
            r.error_code = code;
            r.error_message = Some(str_bytes(message));
        }
        resp.responses.push(r);
    }
    resp
}

async fn alter_topic(
    broker: &Arc<Broker>,
    res: &kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let name = res.resource_name.as_str();
    let Some(topic) = broker.registry.topic(name) else {
        return Err(unknown_topic(name));
    };
    let mut configs = topic.meta.configs.clone();
    for c in &res.configs {
        let key = c.name.to_string();
        match c.config_operation {
            SET => match &c.value {
                Some(v) => {
                    configs.insert(key, v.to_string());
                }
                None => {
                    return Err((
                        ResponseError::InvalidConfig.code(),
                        format!("config {key} is set to null"),
                    ))
                }
            },
            DELETE => {
                if crate::topics::config_def(&key).is_none() {
                    return Err((
                        ResponseError::InvalidConfig.code(),
                        format!("unknown topic config {key:?}"),
                    ));
                }
                configs.remove(&key);
            }
            op => {
                return Err((
                    ResponseError::InvalidConfig.code(),
                    format!("operation {op} is not supported for {key}"),
                ))
            }
        }
    }
    store_topic_configs(broker, name, configs, validate_only).await
}

/// The refusal for altering a resource other than a topic (shared with AlterConfigs).
pub(crate) fn not_a_topic(resource_type: i8) -> (i16, String) {
    let message = if resource_type == BROKER {
        "broker configs are static: set them on the command line or in the config file".into()
    } else {
        format!("resource type {resource_type} is not supported")
    };
    (ResponseError::InvalidRequest.code(), message)
}

fn unknown_topic(name: &str) -> (i16, String) {
    (
        ResponseError::UnknownTopicOrPartition.code(),
        format!("topic {name} does not exist"),
    )
}

/// Validates a topic's whole new set of configs and, unless `validate_only`, stores it and
/// applies it (shared with AlterConfigs, which replaces the set outright).
pub(crate) async fn store_topic_configs(
    broker: &Arc<Broker>,
    name: &str,
    configs: std::collections::BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if broker.registry.topic(name).is_none() {
        return Err(unknown_topic(name));
    }
    validate_configs(&configs).map_err(|m| (ResponseError::InvalidConfig.code(), m))?;
    if validate_only {
        return Ok(());
    }
    let meta = broker
        .meta
        .set_topic_configs(name, configs)
        .await
        .map_err(|e| (meta_error_code(&e), e.to_string()))?;
    broker.registry.upsert_topic(meta);
    Ok(())
}
