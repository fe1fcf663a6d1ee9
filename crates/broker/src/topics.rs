//! Topic names and topic-level configs: what is valid, and the defaults.

use std::collections::BTreeMap;

/// Longest topic name Kafka accepts.
pub const MAX_NAME_LEN: usize = 249;

/// Checks a topic name the way Kafka does: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "topic name is {} characters; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Kind of a config value, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// A topic config Sediment knows: name, type, default (rendered as Kafka renders it).
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
}

/// Topic configs accepted by CreateTopics and listed by DescribeConfigs.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        default: "delete",
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigType::String,
        default: "producer",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        default: "1048588",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        default: "CreateTime",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        default: "1",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigType::Long,
        default: "-1",
    },
    ConfigDef {
        name: "retention.ms",
        kind: ConfigType::Long,
        default: "604800000",
    },
    ConfigDef {
        name: "segment.bytes",
        kind: ConfigType::Int,
        default: "1073741824",
    },
    ConfigDef {
        name: "segment.ms",
        kind: ConfigType::Long,
        default: "604800000",
    },
];

/// A topic config's value when the topic does not set it: the broker's setting where one feeds
/// it (what is in force, not Kafka's stock default), else the definition's default.
pub fn default_value(config: &crate::BrokerConfig, def: &ConfigDef) -> String {
    match def.name {
        "max.message.bytes" => config.message_max_bytes.to_string(),
        "retention.ms" => config.retention_ms.to_string(),
        "retention.bytes" => config.retention_bytes.to_string(),
        "segment.bytes" => config.segment_bytes.to_string(),
        "segment.ms" => config.segment_interval.as_millis().to_string(),
        _ => def.default.to_string(),
    }
}

/// Looks up a known topic config.
pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Validates CreateTopics configs: known names, values of the right type and range, and only
/// values the broker actually honours. A value Kafka knows but Sediment does not implement is
/// refused with a message saying so, never stored and ignored.
pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in configs {
        let def = config_def(k).ok_or_else(|| format!("unknown topic config {k:?}"))?;
        let unsupported = match k.as_str() {
            "cleanup.policy" => v
                .split(',')
                .any(|p| p.trim() == "compact")
                .then_some("log compaction is not supported yet; use cleanup.policy=delete"),
            "compression.type" => (v != "producer").then_some(
                "recompressing on the broker is not supported yet; batches are stored as the \
                 producer compressed them (compression.type=producer)",
            ),
            _ => None,
        };
        if let Some(why) = unsupported {
            return Err(format!("{k}={v} is not supported: {why}"));
        }
        let ok = match (def.kind, k.as_str()) {
            (_, "max.message.bytes") => v.parse::<i32>().is_ok_and(|n| n > 0),
            (_, "min.insync.replicas") => v.parse::<i32>().is_ok_and(|n| n >= 1),
            (_, "retention.ms" | "retention.bytes") => v.parse::<i64>().is_ok_and(|n| n >= -1),
            (_, "cleanup.policy") => v
                .split(',')
                .all(|p| matches!(p.trim(), "delete" | "compact")),
            (_, "compression.type") => matches!(
                v.as_str(),
                "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
            ),
            (_, "message.timestamp.type") => matches!(v.as_str(), "CreateTime" | "LogAppendTime"),
            (ConfigType::Int, _) => v.parse::<i32>().is_ok_and(|n| n > 0),
            (ConfigType::Long, _) => v.parse::<i64>().is_ok_and(|n| n > 0),
            _ => true,
        };
        if !ok {
            return Err(format!("invalid value {v:?} for topic config {k:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"x".repeat(249)).is_ok());
    }

    #[test]
    fn configs_are_checked() {
        let ok: BTreeMap<_, _> = [("retention.ms".to_string(), "1000".to_string())].into();
        assert!(validate_configs(&ok).is_ok());
        for (k, v) in [
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "delete,compact"),
            ("compression.type", "zstd"),
            ("compression.type", "uncompressed"),
        ] {
            let c: BTreeMap<_, _> = [(k.to_string(), v.to_string())].into();
            let e = validate_configs(&c).unwrap_err();
            assert!(e.contains("not supported"), "{k}={v}: {e}");
        }
        for (k, v) in [
            ("cleanup.policy", "delete"),
            ("message.timestamp.type", "LogAppendTime"),
            ("segment.ms", "1000"),
            ("segment.bytes", "1048576"),
        ] {
            let c: BTreeMap<_, _> = [(k.to_string(), v.to_string())].into();
            assert!(validate_configs(&c).is_ok(), "{k}={v}");
        }
        let unknown: BTreeMap<_, _> = [("nope".to_string(), "1".to_string())].into();
        assert!(validate_configs(&unknown).is_err());
        let bad: BTreeMap<_, _> = [("max.message.bytes".to_string(), "-5".to_string())].into();
        assert!(validate_configs(&bad).is_err());
    }
}
