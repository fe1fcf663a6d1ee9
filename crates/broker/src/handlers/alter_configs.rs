//! AlterConfigs (the API before IncrementalAlterConfigs, still what librdkafka's and
//! confluent-kafka's `alter_configs` send): each topic's configs are *replaced* by the ones
//! given; configs left out go back to their defaults. Validated exactly as CreateTopics and
//! IncrementalAlterConfigs validate (a config Sediment does not implement is INVALID_CONFIG),
//! and stored in one change. The broker resource replaces the dynamic broker configs of its
//! scope the same way ([`crate::dynamic`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::incremental_alter_configs::{
    broker_scope, not_a_topic, store_broker_configs, store_topic_configs,
};
use super::{str_bytes, ResponseError};
use crate::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

pub async fn handle(
    broker: &Arc<Broker>,
    req: AlterConfigsRequest,
    session: &crate::security::Session,
) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let denied = super::config_denied(
            broker,
            session,
            res.resource_type,
            res.resource_name.as_str(),
            sediment_auth::acl::op::ALTER_CONFIGS,
        );
        let outcome = match res.resource_type {
            _ if denied.is_some() => Err(denied.unwrap_or_default()),
            TOPIC | BROKER => {
                let mut configs = BTreeMap::new();
                let mut null = None;
                for c in &res.configs {
                    match &c.value {
                        Some(v) => {
                            configs.insert(c.name.to_string(), v.to_string());
                        }
                        None => null = Some(c.name.to_string()),
                    }
                }
                match null {
                    Some(key) => Err((
                        ResponseError::InvalidConfig.code(),
                        format!("config {key} is set to null"),
                    )),
                    None if res.resource_type == TOPIC => {
                        store_topic_configs(
                            broker,
                            res.resource_name.as_str(),
                            configs,
                            req.validate_only,
                        )
                        .await
                    }
                    None => match broker_scope(broker, res.resource_name.as_str()) {
                        Ok(scope) => {
                            store_broker_configs(broker, &scope, configs, req.validate_only).await
                        }
                        Err(e) => Err(e),
                    },
                }
            }
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
