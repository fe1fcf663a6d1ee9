//! IncrementalAlterConfigs for topic configs and dynamic broker configs: SET, DELETE, and
//! APPEND / SUBTRACT on list configs (`cleanup.policy`, the throttled-replica lists). The
//! resulting set is validated as CreateTopics validates it (a config Sediment does not
//! implement is INVALID_CONFIG), stored in the metadata store and applied at once. The broker
//! resource takes the broker-level defaults of topic configs ([`crate::dynamic`]), for the
//! whole cluster (name `""`) or this broker (its id).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::{meta_error_code, str_bytes, ResponseError};
use crate::topics::{broker_config_def, config_def, validate_configs, ConfigDef, ConfigType};
use crate::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    session: &crate::security::Session,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str();
        let denied = super::config_denied(
            broker,
            session,
            res.resource_type,
            name,
            sediment_auth::acl::op::ALTER_CONFIGS,
        );
        let outcome = match res.resource_type {
            _ if denied.is_some() => Err(denied.unwrap_or_default()),
            TOPIC => alter_topic(broker, name, &res.configs, req.validate_only).await,
            BROKER => alter_broker(broker, name, &res.configs, req.validate_only).await,
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

fn invalid(message: String) -> (i16, String) {
    (ResponseError::InvalidConfig.code(), message)
}

/// Applies the operations to `configs`. `def` finds a name's definition; `base` gives the value
/// in force when `configs` does not set it (what APPEND and SUBTRACT start from).
fn apply_ops(
    configs: &mut BTreeMap<String, String>,
    ops: &[AlterableConfig],
    def: impl Fn(&str) -> Option<&'static ConfigDef>,
    base: impl Fn(&ConfigDef) -> String,
) -> Result<(), (i16, String)> {
    for c in ops {
        let key = c.name.to_string();
        match c.config_operation {
            SET => match &c.value {
                Some(v) => {
                    configs.insert(key, v.to_string());
                }
                None => return Err(invalid(format!("config {key} is set to null"))),
            },
            DELETE => {
                configs.remove(&key);
            }
            op @ (APPEND | SUBTRACT) => {
                let d = def(&key).ok_or_else(|| invalid(format!("unknown config {key:?}")))?;
                if d.kind != ConfigType::List {
                    return Err(invalid(format!(
                        "{} is only for list configs; {key} is not one",
                        if op == APPEND { "APPEND" } else { "SUBTRACT" }
                    )));
                }
                let current = configs.get(&key).cloned().unwrap_or_else(|| base(d));
                let mut items: Vec<String> = current
                    .split(',')
                    .map(|i| i.trim().to_string())
                    .filter(|i| !i.is_empty())
                    .collect();
                let given = c.value.as_deref().unwrap_or("");
                for item in given.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    if op == APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                configs.insert(key, items.join(","));
            }
            op => {
                return Err(invalid(format!(
                    "operation {op} is not supported for {key}"
                )))
            }
        }
    }
    Ok(())
}

async fn alter_topic(
    broker: &Arc<Broker>,
    name: &str,
    ops: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let Some(topic) = broker.registry.topic(name) else {
        return Err(unknown_topic(name));
    };
    let mut configs = topic.meta.configs.clone();
    for c in ops {
        if c.config_operation == DELETE && config_def(c.name.as_str()).is_none() {
            return Err(invalid(format!(
                "unknown topic config {:?}",
                c.name.as_str()
            )));
        }
    }
    apply_ops(&mut configs, ops, config_def, |d| {
        topic.setting(d.name).map_or_else(
            || crate::topics::default_value(&broker.config, d),
            str::to_string,
        )
    })?;
    store_topic_configs(broker, name, configs, validate_only).await
}

/// The dynamic-config scope a broker resource names: `""` (cluster default) or this broker.
pub(crate) fn broker_scope(broker: &Broker, name: &str) -> Result<String, (i16, String)> {
    if name.is_empty() || name == broker.config.broker_id.to_string() {
        Ok(name.to_string())
    } else {
        Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "broker {name} is not this broker ({}); name it, or \"\" for the cluster default",
                broker.config.broker_id
            ),
        ))
    }
}

async fn alter_broker(
    broker: &Arc<Broker>,
    name: &str,
    ops: &[AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let scope = broker_scope(broker, name)?;
    let (mut configs, others) = {
        let d = broker
            .dynamic
            .read()
            .map_err(|_| invalid("dynamic configs unavailable".into()))?;
        if scope.is_empty() {
            (d.cluster.clone(), BTreeMap::new())
        } else {
            (d.broker.clone(), d.cluster.clone())
        }
    };
    apply_ops(&mut configs, ops, broker_config_def, |d| {
        d.broker_name
            .and_then(|b| others.get(b).cloned())
            .unwrap_or_else(|| crate::topics::default_value(&broker.config, d))
    })?;
    store_broker_configs(broker, &scope, configs, validate_only).await
}

/// Validates a scope's whole new set of dynamic broker configs and, unless `validate_only`,
/// stores it and applies it to every topic at once (shared with AlterConfigs).
pub(crate) async fn store_broker_configs(
    broker: &Arc<Broker>,
    scope: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    crate::dynamic::check_all(&configs).map_err(invalid)?;
    if validate_only {
        return Ok(());
    }
    broker
        .meta
        .set_broker_configs(scope, configs.clone())
        .await
        .map_err(|e| (meta_error_code(&e), e.to_string()))?;
    let defaults = {
        let mut d = broker
            .dynamic
            .write()
            .map_err(|_| invalid("dynamic configs unavailable".into()))?;
        if scope.is_empty() {
            d.cluster = configs;
        } else {
            d.broker = configs;
        }
        broker.connection_limit.store(
            d.max_connections(broker.config.max_connections),
            std::sync::atomic::Ordering::Relaxed,
        );
        d.topic_defaults()
    };
    broker.registry.set_defaults(defaults);
    tracing::info!(scope, "dynamic broker configs changed");
    Ok(())
}

/// The refusal for altering a resource other than a topic or a broker (shared with
/// AlterConfigs).
pub(crate) fn not_a_topic(resource_type: i8) -> (i16, String) {
    (
        ResponseError::InvalidRequest.code(),
        format!(
            "resource type {resource_type} is not supported (topics are 2, brokers 4; group \
             configs of KIP-848 groups are not supported)"
        ),
    )
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
