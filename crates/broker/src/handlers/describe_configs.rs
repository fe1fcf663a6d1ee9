//! DescribeConfigs for topics (resource type 2) and this broker (resource type 4).

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{str_bytes, ResponseError};
use crate::topics::{default_value, ConfigType, TOPIC_CONFIGS};
use crate::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources: 1 dynamic topic config, 4 static broker config, 5 default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(
    version: i16,
    name: &str,
    value: String,
    source: i8,
    kind: ConfigType,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name);
    e.value = Some(str_bytes(value));
    e.config_source = source;
    e.read_only = source == SOURCE_STATIC_BROKER;
    if version >= 3 {
        e.config_type = kind as i8;
    }
    e
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let wanted = |name: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        match res.resource_type {
            TOPIC => match broker.registry.topic(res.resource_name.as_str()) {
                Some(t) => {
                    for d in TOPIC_CONFIGS.iter().filter(|d| wanted(d.name)) {
                        let (value, source) = match t.meta.configs.get(d.name) {
                            Some(v) => (v.clone(), SOURCE_TOPIC),
                            None => (default_value(&broker.config, d), SOURCE_DEFAULT),
                        };
                        r.configs
                            .push(entry(version, d.name, value, source, d.kind));
                    }
                }
                None => {
                    r.error_code = ResponseError::UnknownTopicOrPartition.code();
                    r.error_message = Some(str_bytes(format!(
                        "topic {} does not exist",
                        res.resource_name.as_str()
                    )));
                }
            },
            BROKER
                if res.resource_name.as_str() == broker.config.broker_id.to_string()
                    || res.resource_name.is_empty() =>
            {
                let c = &broker.config;
                let all = [
                    ("broker.id", c.broker_id.to_string(), ConfigType::Int),
                    (
                        "message.max.bytes",
                        c.message_max_bytes.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "socket.request.max.bytes",
                        c.max_request_bytes.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "auto.create.topics.enable",
                        c.auto_create_topics.to_string(),
                        ConfigType::String,
                    ),
                    (
                        "num.partitions",
                        c.num_partitions.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "log.retention.ms",
                        c.retention_ms.to_string(),
                        ConfigType::Long,
                    ),
                    (
                        "log.retention.bytes",
                        c.retention_bytes.to_string(),
                        ConfigType::Long,
                    ),
                    (
                        "default.replication.factor",
                        "1".to_string(),
                        ConfigType::Int,
                    ),
                ];
                for (name, value, kind) in all.into_iter().filter(|(n, _, _)| wanted(n)) {
                    r.configs
                        .push(entry(version, name, value, SOURCE_STATIC_BROKER, kind));
                }
            }
            BROKER => {
                r.error_code = ResponseError::InvalidRequest.code();
                r.error_message = Some(str_bytes("unknown broker id"));
            }
            other => {
                r.error_code = ResponseError::InvalidRequest.code();
                r.error_message =
                    Some(str_bytes(format!("resource type {other} is not supported")));
            }
        }
        resp.results.push(r);
    }
    resp
}
