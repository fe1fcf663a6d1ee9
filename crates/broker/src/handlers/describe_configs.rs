//! DescribeConfigs for topics (resource type 2) and this broker (resource type 4).

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{str_bytes, ResponseError};
use crate::dynamic::DynamicConfigs;
use crate::topics::{default_value, ConfigDef, ConfigType, TOPIC_CONFIGS};
use crate::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources: 1 dynamic topic config, 2 dynamic config of this broker, 3 dynamic
/// cluster-wide default, 4 static broker config, 5 default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(
    version: i16,
    name: &str,
    value: String,
    source: i8,
    kind: ConfigType,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name);
    e.value = Some(str_bytes(value));
    e.config_source = source;
    e.read_only = read_only;
    if version >= 3 {
        e.config_type = kind as i8;
    }
    e
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: DescribeConfigsRequest,
    session: &crate::security::Session,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        if let Some((code, message)) = super::config_denied(
            broker,
            session,
            res.resource_type,
            res.resource_name.as_str(),
            sediment_auth::acl::op::DESCRIBE_CONFIGS,
        ) {
            r.error_code = code;
            r.error_message = Some(str_bytes(message));
            resp.results.push(r);
            continue;
        }
        let wanted = |name: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        match res.resource_type {
            TOPIC => match broker.registry.topic(res.resource_name.as_str()) {
                Some(t) => {
                    let dynamic = broker.dynamic.read().map(|d| d.clone()).unwrap_or_default();
                    for d in TOPIC_CONFIGS.iter().filter(|d| wanted(d.name)) {
                        let (value, source) = match t.meta.configs.get(d.name) {
                            Some(v) => (v.clone(), SOURCE_TOPIC),
                            None => broker_level(broker, &dynamic, d),
                        };
                        r.configs
                            .push(entry(version, d.name, value, source, d.kind, false));
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
                let fixed = [
                    ("broker.id", c.broker_id.to_string(), ConfigType::Int),
                    (
                        "socket.request.max.bytes",
                        c.max_request_bytes.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "auto.create.topics.enable",
                        c.auto_create_topics.to_string(),
                        ConfigType::Boolean,
                    ),
                    (
                        "num.partitions",
                        c.num_partitions.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "default.replication.factor",
                        broker.default_replication_factor().to_string(),
                        ConfigType::Int,
                    ),
                ];
                for (name, value, kind) in fixed.into_iter().filter(|(n, _, _)| wanted(n)) {
                    r.configs.push(entry(
                        version,
                        name,
                        value,
                        SOURCE_STATIC_BROKER,
                        kind,
                        true,
                    ));
                }
                // `broker.rack` as Kafka lists it: the rack, or no value when none is set.
                if wanted("broker.rack") {
                    let rack = broker.cluster().and_then(|c| c.settings.rack.clone());
                    let mut e = entry(
                        version,
                        "broker.rack",
                        String::new(),
                        SOURCE_STATIC_BROKER,
                        ConfigType::String,
                        true,
                    );
                    e.value = rack.map(str_bytes);
                    r.configs.push(e);
                }
                // The broker-level defaults of topic configs and max.connections, changeable
                // at run time.
                let dynamic = broker.dynamic.read().map(|d| d.clone()).unwrap_or_default();
                let name = crate::dynamic::MAX_CONNECTIONS;
                if wanted(name) {
                    let (value, source) = match dynamic.get(name) {
                        Some((v, scope)) => (v.to_string(), scope as i8),
                        None => (c.max_connections.to_string(), SOURCE_STATIC_BROKER),
                    };
                    r.configs
                        .push(entry(version, name, value, source, ConfigType::Int, false));
                }
                for d in TOPIC_CONFIGS {
                    let Some(name) = d.broker_name.filter(|n| wanted(n)) else {
                        continue;
                    };
                    let (value, source) = broker_level(broker, &dynamic, d);
                    r.configs
                        .push(entry(version, name, value, source, d.kind, false));
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

/// A topic config's broker-level value and its source: this broker's dynamic value, the
/// cluster's dynamic default, the static setting that feeds it, or Kafka's default.
fn broker_level(broker: &Broker, dynamic: &DynamicConfigs, d: &ConfigDef) -> (String, i8) {
    if let Some((v, scope)) = d.broker_name.and_then(|b| dynamic.get(b)) {
        return (v.to_string(), scope as i8);
    }
    let value = default_value(&broker.config, d);
    let source = if value == d.default {
        SOURCE_DEFAULT
    } else {
        SOURCE_STATIC_BROKER
    };
    (value, source)
}
