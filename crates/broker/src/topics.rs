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
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// The values a config may take (Kafka's validator for it).
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// An integer in `min..=max` (an INT or a LONG).
    Range(i64, i64),
    /// A number in `min..=max`.
    Ratio(f64, f64),
    Bool,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these words.
    ListOf(&'static [&'static str]),
    /// `*`, or a list of `partition:broker` pairs (the replication throttle lists).
    Replicas,
}

/// What Sediment does with a valid value. Every config Kafka 4.x knows is accepted or refused
/// for a stated reason: none is stored and silently ignored.
#[derive(Debug, Clone, Copy)]
pub enum Effect {
    /// Applied as Kafka applies it.
    Applied,
    /// Stored and reported, as Kafka does, but it only acts under a setting this topic cannot
    /// have here (the reason says which).
    Dormant(&'static str),
    /// Any valid value is met: what Sediment always does is at least what the setting asks.
    Met(&'static str),
    /// Only these values (compared as numbers for numeric configs): Sediment lacks the effect of
    /// the others, which are refused with INVALID_CONFIG and the reason.
    Only(&'static [&'static str], &'static str),
}

/// A topic config Kafka 4.x defines: name, its broker-level synonym (the setting that gives
/// its default, changeable at run time on the broker resource), type, default (as Kafka renders
/// it), valid values, and what Sediment does with it.
pub struct ConfigDef {
    pub name: &'static str,
    pub broker_name: Option<&'static str>,
    pub kind: ConfigType,
    pub default: &'static str,
    pub check: Check,
    pub effect: Effect,
}

const LONG_MAX: &str = "9223372036854775807";
const NOT_COMPACTED: &str = "it acts only with cleanup.policy=compact, which Sediment does not \
                             support yet";
const NOT_RECOMPRESSED: &str = "it acts only when the broker recompresses (compression.type \
                                other than producer), which Sediment does not support yet";
const NO_LOCAL_FILES: &str = "Sediment's segments are Parquet objects with their own row-group \
                              index, not Kafka's log and index files";
const UPLOADED_AT_ONCE: &str =
    "segments are uploaded as soon as they are complete (segment.bytes, segment.ms)";
const WAL_PER_BROKER: &str =
    "the local write-ahead log is kept per broker, not per topic (--wal-retain-bytes)";
const NO_THROTTLE: &str = "replication throttling is not supported yet";
const ALWAYS_ARCHIVED: &str = "every Sediment topic is archived to the object store";
const SYNCED: &str = "the write-ahead log syncer covers every write with an fdatasync as soon \
                      as the previous one ends; flush.messages=1 or flush.ms=0 also makes acks=1 \
                      wait for it, as Kafka flushes on append";

const fn def(
    name: &'static str,
    broker_name: Option<&'static str>,
    kind: ConfigType,
    default: &'static str,
    check: Check,
    effect: Effect,
) -> ConfigDef {
    ConfigDef {
        name,
        broker_name,
        kind,
        default,
        check,
        effect,
    }
}

use Check::{Bool, ListOf, OneOf, Range, Ratio, Replicas};
use ConfigType as T;
use Effect::{Applied, Dormant, Met, Only};

/// Every topic config of Apache Kafka 4.x, in Kafka's alphabetical order.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    def(
        "cleanup.policy",
        Some("log.cleanup.policy"),
        T::List,
        "delete",
        ListOf(&["delete", "compact"]),
        Only(
            &["delete"],
            "log compaction is not supported yet; use cleanup.policy=delete",
        ),
    ),
    def(
        "compression.gzip.level",
        Some("compression.gzip.level"),
        T::Int,
        "-1",
        Range(-1, 9),
        Dormant(NOT_RECOMPRESSED),
    ),
    def(
        "compression.lz4.level",
        Some("compression.lz4.level"),
        T::Int,
        "9",
        Range(1, 17),
        Dormant(NOT_RECOMPRESSED),
    ),
    def(
        "compression.type",
        Some("compression.type"),
        T::String,
        "producer",
        OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        Only(
            &["producer"],
            "recompressing on the broker is not supported yet; batches are stored as the \
             producer compressed them (compression.type=producer)",
        ),
    ),
    def(
        "compression.zstd.level",
        Some("compression.zstd.level"),
        T::Int,
        "3",
        Range(-131072, 22),
        Dormant(NOT_RECOMPRESSED),
    ),
    def(
        "delete.retention.ms",
        Some("log.cleaner.delete.retention.ms"),
        T::Long,
        "86400000",
        Range(0, i64::MAX),
        Dormant(NOT_COMPACTED),
    ),
    def(
        "file.delete.delay.ms",
        Some("log.segment.delete.delay.ms"),
        T::Long,
        "0",
        Range(0, i64::MAX),
        Only(
            &["0"],
            "archived segments are deleted as soon as retention drops them (Kafka waits 60000 ms)",
        ),
    ),
    def(
        "flush.messages",
        Some("log.flush.interval.messages"),
        T::Long,
        LONG_MAX,
        Range(1, i64::MAX),
        Met(SYNCED),
    ),
    def(
        "flush.ms",
        Some("log.flush.interval.ms"),
        T::Long,
        LONG_MAX,
        Range(0, i64::MAX),
        Met(SYNCED),
    ),
    def(
        "follower.replication.throttled.replicas",
        None,
        T::List,
        "",
        Replicas,
        Only(&[""], NO_THROTTLE),
    ),
    def(
        "index.interval.bytes",
        Some("log.index.interval.bytes"),
        T::Int,
        "4096",
        Range(0, i32::MAX as i64),
        Only(&["4096"], NO_LOCAL_FILES),
    ),
    def(
        "leader.replication.throttled.replicas",
        None,
        T::List,
        "",
        Replicas,
        Only(&[""], NO_THROTTLE),
    ),
    def(
        "local.retention.bytes",
        Some("log.local.retention.bytes"),
        T::Long,
        "-2",
        Range(-2, i64::MAX),
        Only(&["-2"], WAL_PER_BROKER),
    ),
    def(
        "local.retention.ms",
        Some("log.local.retention.ms"),
        T::Long,
        "-2",
        Range(-2, i64::MAX),
        Only(&["-2"], WAL_PER_BROKER),
    ),
    def(
        "max.compaction.lag.ms",
        Some("log.cleaner.max.compaction.lag.ms"),
        T::Long,
        LONG_MAX,
        Range(1, i64::MAX),
        Dormant(NOT_COMPACTED),
    ),
    def(
        "max.message.bytes",
        Some("message.max.bytes"),
        T::Int,
        "1048588",
        Range(0, i32::MAX as i64),
        Applied,
    ),
    def(
        "message.timestamp.after.max.ms",
        Some("log.message.timestamp.after.max.ms"),
        T::Long,
        "3600000",
        Range(0, i64::MAX),
        Applied,
    ),
    def(
        "message.timestamp.before.max.ms",
        Some("log.message.timestamp.before.max.ms"),
        T::Long,
        LONG_MAX,
        Range(0, i64::MAX),
        Applied,
    ),
    def(
        "message.timestamp.type",
        Some("log.message.timestamp.type"),
        T::String,
        "CreateTime",
        OneOf(&["CreateTime", "LogAppendTime"]),
        Applied,
    ),
    def(
        "min.cleanable.dirty.ratio",
        Some("log.cleaner.min.cleanable.ratio"),
        T::Double,
        "0.5",
        Ratio(0.0, 1.0),
        Dormant(NOT_COMPACTED),
    ),
    def(
        "min.compaction.lag.ms",
        Some("log.cleaner.min.compaction.lag.ms"),
        T::Long,
        "0",
        Range(0, i64::MAX),
        Dormant(NOT_COMPACTED),
    ),
    def(
        "min.insync.replicas",
        Some("min.insync.replicas"),
        T::Int,
        "1",
        Range(1, i32::MAX as i64),
        Applied,
    ),
    def(
        "preallocate",
        Some("log.preallocate"),
        T::Boolean,
        "false",
        Bool,
        Only(&["false"], NO_LOCAL_FILES),
    ),
    def(
        "remote.copy.lag.bytes",
        None,
        T::Long,
        "0",
        Range(-1, i64::MAX),
        Only(&["0"], UPLOADED_AT_ONCE),
    ),
    def(
        "remote.copy.lag.ms",
        None,
        T::Long,
        "0",
        Range(-1, i64::MAX),
        Only(&["0"], UPLOADED_AT_ONCE),
    ),
    def(
        "remote.log.copy.disable",
        None,
        T::Boolean,
        "false",
        Bool,
        Only(&["false"], ALWAYS_ARCHIVED),
    ),
    def(
        "remote.log.delete.on.disable",
        None,
        T::Boolean,
        "false",
        Bool,
        Dormant(
            "it acts only when remote.storage.enable is turned off, which Sediment does not \
             allow",
        ),
    ),
    def(
        "remote.storage.enable",
        None,
        T::Boolean,
        "true",
        Bool,
        Only(&["true"], ALWAYS_ARCHIVED),
    ),
    def(
        "retention.bytes",
        Some("log.retention.bytes"),
        T::Long,
        "-1",
        Range(i64::MIN, i64::MAX),
        Applied,
    ),
    def(
        "retention.ms",
        Some("log.retention.ms"),
        T::Long,
        "604800000",
        Range(-1, i64::MAX),
        Applied,
    ),
    def(
        "segment.bytes",
        Some("log.segment.bytes"),
        T::Int,
        "1073741824",
        Range(1024 * 1024, i32::MAX as i64),
        Applied,
    ),
    def(
        "segment.index.bytes",
        Some("log.index.size.max.bytes"),
        T::Int,
        "10485760",
        Range(4, i32::MAX as i64),
        Only(&["10485760"], NO_LOCAL_FILES),
    ),
    def(
        "segment.jitter.ms",
        Some("log.roll.jitter.ms"),
        T::Long,
        "0",
        Range(0, i64::MAX),
        Only(
            &["0"],
            "segments are rolled on segment.ms exactly, without jitter",
        ),
    ),
    def(
        "segment.ms",
        Some("log.roll.ms"),
        T::Long,
        "604800000",
        Range(1, i64::MAX),
        Applied,
    ),
    def(
        "unclean.leader.election.enable",
        Some("unclean.leader.election.enable"),
        T::Boolean,
        "false",
        Bool,
        Applied,
    ),
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

/// Looks up a topic config by its topic-level name.
pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Looks up a topic config by its broker-level synonym (`log.retention.ms`, ...).
pub fn broker_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.broker_name == Some(name))
}

/// Normalises a value for comparison: numbers as numbers, list items trimmed.
fn normal(kind: ConfigType, v: &str) -> String {
    match kind {
        T::Int | T::Long => v
            .trim()
            .parse::<i64>()
            .map_or_else(|_| v.trim().to_string(), |n| n.to_string()),
        T::Boolean => v.trim().to_ascii_lowercase(),
        T::List => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(","),
        _ => v.trim().to_string(),
    }
}

/// Checks one value against a definition: its type and range first (Kafka's validator), then
/// whether Sediment honours it. `name` is the name the client used (topic or broker-level).
pub fn check_value(def: &ConfigDef, name: &str, v: &str) -> Result<(), String> {
    let t = v.trim();
    let valid = match def.check {
        Range(min, max) => t.parse::<i64>().is_ok_and(|n| {
            let fits = def.kind != T::Int || i32::try_from(n).is_ok();
            fits && (min..=max).contains(&n)
        }),
        Ratio(min, max) => t
            .parse::<f64>()
            .is_ok_and(|x| x.is_finite() && x >= min && x <= max),
        Bool => t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false"),
        OneOf(words) => words.contains(&t),
        ListOf(words) => {
            let items: Vec<&str> = t.split(',').map(str::trim).collect();
            !items.is_empty() && items.iter().all(|i| words.contains(i))
        }
        Replicas => {
            t.is_empty()
                || t == "*"
                || t.split(',').all(|pair| {
                    pair.trim().split_once(':').is_some_and(|(p, b)| {
                        p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                    })
                })
        }
    };
    if !valid {
        let want = match def.check {
            Range(min, max)
                if max == i64::MAX || (def.kind == T::Int && max == i32::MAX as i64) =>
            {
                format!("an integer of at least {min}")
            }
            Range(min, max) => format!("an integer from {min} to {max}"),
            Ratio(min, max) => format!("a number from {min} to {max}"),
            Bool => "true or false".into(),
            OneOf(words) => format!("one of {}", words.join(", ")),
            ListOf(words) => format!("a list of {}", words.join(", ")),
            Replicas => "* or a list of partition:broker pairs".into(),
        };
        return Err(format!("invalid value {v:?} for {name}: it must be {want}"));
    }
    if let Only(allowed, why) = def.effect {
        let n = normal(def.kind, v);
        if !allowed.iter().any(|a| normal(def.kind, a) == n) {
            return Err(format!("{name}={v} is not supported: {why}"));
        }
    }
    Ok(())
}

/// Validates a topic's whole set of configs: known names, values of the right type and range,
/// only values the broker actually honours, and Kafka's cross-checks. A value Kafka knows but
/// Sediment does not implement is refused with a message saying so, never stored and ignored.
pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in configs {
        let def = config_def(k).ok_or_else(|| format!("unknown topic config {k:?}"))?;
        check_value(def, k, v)?;
    }
    let num = |k: &str, d: i64| {
        configs
            .get(k)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(d)
    };
    let (min_lag, max_lag) = (
        num("min.compaction.lag.ms", 0),
        num("max.compaction.lag.ms", i64::MAX),
    );
    if min_lag > max_lag {
        return Err(format!(
            "min.compaction.lag.ms ({min_lag}) is greater than max.compaction.lag.ms ({max_lag})"
        ));
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
        for (k, v) in [
            // Stored: they act only under compaction or broker recompression.
            ("delete.retention.ms", "900"),
            ("max.compaction.lag.ms", "3600000"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("compression.zstd.level", "19"),
            // Met by syncing every batch before the ack.
            ("flush.ms", "12345678"),
            ("flush.messages", "1"),
            ("message.timestamp.before.max.ms", "1000"),
            ("remote.storage.enable", "TRUE"),
            ("leader.replication.throttled.replicas", ""),
        ] {
            let c: BTreeMap<_, _> = [(k.to_string(), v.to_string())].into();
            assert!(validate_configs(&c).is_ok(), "{k}={v}");
        }
        for (k, v, why) in [
            ("preallocate", "true", "not supported"),
            ("segment.jitter.ms", "10", "not supported"),
            ("local.retention.ms", "1000", "not supported"),
            ("remote.storage.enable", "false", "not supported"),
            (
                "leader.replication.throttled.replicas",
                "0:1",
                "not supported",
            ),
            ("leader.replication.throttled.replicas", "x", "must be"),
            ("segment.bytes", "1000", "at least 1048576"),
            ("min.cleanable.dirty.ratio", "1.5", "from 0 to 1"),
            ("compression.gzip.level", "10", "from -1 to 9"),
            ("max.message.bytes", "3000000000", "must be"),
            ("preallocate", "yes", "true or false"),
        ] {
            let c: BTreeMap<_, _> = [(k.to_string(), v.to_string())].into();
            let e = validate_configs(&c).unwrap_err();
            assert!(e.contains(why), "{k}={v}: {e}");
        }
        let lag: BTreeMap<_, _> = [
            ("min.compaction.lag.ms".to_string(), "10".to_string()),
            ("max.compaction.lag.ms".to_string(), "5".to_string()),
        ]
        .into();
        assert!(validate_configs(&lag).is_err());
        // Kafka 4 removed these; it refuses them as unknown, and so does Sediment.
        for removed in ["message.format.version", "message.downconversion.enable"] {
            let c: BTreeMap<_, _> = [(removed.to_string(), "x".to_string())].into();
            assert!(validate_configs(&c).unwrap_err().contains("unknown"));
        }
        let unknown: BTreeMap<_, _> = [("nope".to_string(), "1".to_string())].into();
        assert!(validate_configs(&unknown).is_err());
        let bad: BTreeMap<_, _> = [("max.message.bytes".to_string(), "-5".to_string())].into();
        assert!(validate_configs(&bad).is_err());
    }

    /// Every topic config Kafka 4.x defines is in the table, and each one's own default is valid.
    #[test]
    fn the_table_is_kafkas_and_defaults_pass() {
        let kafka = [
            "cleanup.policy",
            "compression.gzip.level",
            "compression.lz4.level",
            "compression.type",
            "compression.zstd.level",
            "delete.retention.ms",
            "file.delete.delay.ms",
            "flush.messages",
            "flush.ms",
            "follower.replication.throttled.replicas",
            "index.interval.bytes",
            "leader.replication.throttled.replicas",
            "local.retention.bytes",
            "local.retention.ms",
            "max.compaction.lag.ms",
            "max.message.bytes",
            "message.timestamp.after.max.ms",
            "message.timestamp.before.max.ms",
            "message.timestamp.type",
            "min.cleanable.dirty.ratio",
            "min.compaction.lag.ms",
            "min.insync.replicas",
            "preallocate",
            "remote.copy.lag.bytes",
            "remote.copy.lag.ms",
            "remote.log.copy.disable",
            "remote.log.delete.on.disable",
            "remote.storage.enable",
            "retention.bytes",
            "retention.ms",
            "segment.bytes",
            "segment.index.bytes",
            "segment.jitter.ms",
            "segment.ms",
            "unclean.leader.election.enable",
        ];
        let ours: Vec<&str> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
        assert_eq!(ours, kafka);
        // docs/configs.md has a row for each, saying what Sediment does with it.
        let doc = include_str!("../../../docs/configs.md");
        for d in TOPIC_CONFIGS {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", d.name)))
                .unwrap_or_else(|| panic!("docs/configs.md has no row for {}", d.name));
            let says = match d.effect {
                Applied => "| applied |",
                Dormant(_) => "| stored and reported |",
                Met(_) => "| any value met |",
                Only(..) => "| only ",
            };
            assert!(row.contains(says), "docs/configs.md: {row}");
        }
        for d in TOPIC_CONFIGS {
            assert!(check_value(d, d.name, d.default).is_ok(), "{}", d.name);
            if let Some(b) = d.broker_name {
                assert_eq!(broker_config_def(b).map(|x| x.name), Some(d.name));
            }
        }
    }
}
