//! Dynamic broker configs: the broker-level defaults of topic configs (`log.retention.ms`,
//! `log.segment.bytes`, `message.max.bytes`, ...), changed at run time through
//! IncrementalAlterConfigs / AlterConfigs on the broker resource, as Kafka allows.
//!
//! Two scopes, as in Kafka: the cluster-wide default (resource name `""`) and one broker (its
//! id); the broker's own value wins over the cluster default, which wins over the static
//! setting from the command line or config file. Both scopes live in the metadata store, so they
//! survive restarts. A topic's own config wins over all of them. Besides the topic defaults,
//! `max.connections` is dynamic, as in Kafka. Other broker settings (listeners, threads, ...)
//! are static in Sediment and refused here.

use std::collections::BTreeMap;

use crate::topics::{broker_config_def, check_value};

/// The dynamic broker configs in force, by broker-level name.
#[derive(Debug, Clone, Default)]
pub struct DynamicConfigs {
    /// The cluster-wide default (resource name `""`).
    pub cluster: BTreeMap<String, String>,
    /// This broker's own (resource name = its id).
    pub broker: BTreeMap<String, String>,
}

/// Where a dynamic value comes from (DescribeConfigs config sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// DYNAMIC_BROKER_CONFIG (2).
    Broker = 2,
    /// DYNAMIC_DEFAULT_BROKER_CONFIG (3).
    Cluster = 3,
}

impl DynamicConfigs {
    /// The value of a broker-level config and its scope, if either scope sets it.
    pub fn get(&self, broker_name: &str) -> Option<(&str, Scope)> {
        if let Some(v) = self.broker.get(broker_name) {
            return Some((v, Scope::Broker));
        }
        self.cluster
            .get(broker_name)
            .map(|v| (v.as_str(), Scope::Cluster))
    }

    /// `max.connections` in force: this broker's, else the cluster default, else `fallback`
    /// (the static setting).
    pub fn max_connections(&self, fallback: usize) -> usize {
        self.get(MAX_CONNECTIONS)
            .and_then(|(v, _)| v.trim().parse().ok())
            .unwrap_or(fallback)
    }

    /// The defaults they give topics, by topic-config name.
    pub fn topic_defaults(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        // The cluster default first, so this broker's own value overwrites it.
        for scope in [&self.cluster, &self.broker] {
            for (k, v) in scope {
                if let Some(def) = broker_config_def(k) {
                    out.insert(def.name.to_string(), v.clone());
                }
            }
        }
        out
    }
}

/// Kafka's `max.connections`, the one dynamic broker setting that is not a topic default: the
/// listener refuses new connections beyond it (open ones stay), as `--max-connections` does.
pub const MAX_CONNECTIONS: &str = "max.connections";

/// Checks one dynamic broker config: `max.connections`, or a broker-level synonym of a topic
/// config with a value that topic config accepts.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    if name == MAX_CONNECTIONS {
        return match value.trim().parse::<i64>() {
            Ok(n) if (1..=i32::MAX as i64).contains(&n) => Ok(()),
            _ => Err(format!(
                "invalid value {value:?} for {name}: it must be an integer of at least 1"
            )),
        };
    }
    let def = broker_config_def(name).ok_or_else(|| {
        format!(
            "{name} cannot be changed at run time: Sediment's dynamic broker configs are the \
             broker-level defaults of topic configs (log.retention.ms, log.retention.bytes, \
             log.segment.bytes, log.roll.ms, message.max.bytes, log.message.timestamp.type, \
             min.insync.replicas, ...) and max.connections; other broker settings are set at \
             start-up"
        )
    })?;
    check_value(def, name, value)
}

/// Checks a whole new set for one scope.
pub fn check_all(configs: &BTreeMap<String, String>) -> Result<(), String> {
    configs.iter().try_for_each(|(k, v)| check(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_scope_wins_and_names_translate() {
        let d = DynamicConfigs {
            cluster: BTreeMap::from([
                ("log.retention.ms".into(), "1000".into()),
                ("log.segment.bytes".into(), "2097152".into()),
            ]),
            broker: BTreeMap::from([("log.retention.ms".into(), "2000".into())]),
        };
        assert_eq!(d.get("log.retention.ms"), Some(("2000", Scope::Broker)));
        assert_eq!(
            d.get("log.segment.bytes"),
            Some(("2097152", Scope::Cluster))
        );
        assert_eq!(d.get("log.roll.ms"), None);
        let t = d.topic_defaults();
        assert_eq!(t.get("retention.ms").map(String::as_str), Some("2000"));
        assert_eq!(t.get("segment.bytes").map(String::as_str), Some("2097152"));
    }

    #[test]
    fn only_topic_defaults_with_valid_values() {
        assert!(check("log.retention.ms", "5000").is_ok());
        assert!(check("message.max.bytes", "2000").is_ok());
        assert!(check("log.cleanup.policy", "delete").is_ok());
        assert!(check("max.connections", "50").is_ok());
        assert!(check("max.connections", "0").is_err());
        assert!(check("log.cleanup.policy", "compact")
            .unwrap_err()
            .contains("not supported"));
        assert!(check("log.retention.ms", "soon")
            .unwrap_err()
            .contains("must be"));
        assert!(check("background.threads", "9")
            .unwrap_err()
            .contains("cannot be changed at run time"));
        // The topic-level name is not the broker-level one.
        assert!(check("retention.ms", "5000").is_err());
    }
}
