//! Topic configs either work as in Kafka or are refused with INVALID_CONFIG: never stored and
//! ignored. DescribeConfigs reports what is in force.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};
use kafka_protocol::ResponseError;
use sediment_broker::clock::ManualClock;
use sediment_protocol::client::Client;

const NOW: i64 = 1_800_000_000_000;

async fn create(c: &Client, name: &str, configs: &[(&str, &str)]) -> (i16, Option<String>) {
    let mut t = CreatableTopic::default();
    t.name = topic_name(name);
    t.num_partitions = 1;
    t.replication_factor = 1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.value = Some(StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5_000;
    let resp = c.send(7, &req).await.unwrap();
    let r = &resp.topics[0];
    (
        r.error_code,
        r.error_message.as_ref().map(|m| m.to_string()),
    )
}

async fn alter(c: &Client, topic: &str, key: &str, value: &str) -> (i16, Option<String>) {
    let mut cfg = AlterableConfig::default();
    cfg.name = StrBytes::from_string(key.to_string());
    cfg.config_operation = 0;
    cfg.value = Some(StrBytes::from_string(value.to_string()));
    let mut res = AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_string(topic.to_string());
    res.configs = vec![cfg];
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp = c.send(1, &req).await.unwrap();
    let r = &resp.responses[0];
    (
        r.error_code,
        r.error_message.as_ref().map(|m| m.to_string()),
    )
}

async fn describe(c: &Client, topic: &str) -> Vec<(String, String, i8)> {
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_string(topic.to_string());
    res.configuration_keys = None; // all of them
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let resp = c.send(4, &req).await.unwrap();
    resp.results[0]
        .configs
        .iter()
        .map(|e| {
            (
                e.name.to_string(),
                e.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                e.config_source,
            )
        })
        .collect()
}

fn value_of(configs: &[(String, String, i8)], name: &str) -> String {
    configs
        .iter()
        .find(|c| c.0 == name)
        .map(|c| c.1.clone())
        .unwrap_or_else(|| panic!("{name} not described"))
}

#[tokio::test]
async fn configs_that_are_not_implemented_are_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    for (k, v) in [
        ("cleanup.policy", "compact"),
        ("cleanup.policy", "compact,delete"),
        ("compression.type", "gzip"),
        ("compression.type", "uncompressed"),
    ] {
        let (code, msg) = create(&c, "refused", &[(k, v)]).await;
        assert_eq!(code, ResponseError::InvalidConfig.code(), "{k}={v}");
        assert!(msg.unwrap().contains("not supported"), "{k}={v}");
    }
    assert!(tb.broker.registry.topic("refused").is_none());

    assert_eq!(create(&c, "plain", &[]).await.0, 0);
    let (code, msg) = alter(&c, "plain", "cleanup.policy", "compact").await;
    assert_eq!(code, ResponseError::InvalidConfig.code());
    assert!(msg.unwrap().contains("compaction is not supported"));
    assert_eq!(
        value_of(&describe(&c, "plain").await, "cleanup.policy"),
        "delete"
    );
    tb.stop().await;
}

#[tokio::test]
async fn describe_configs_reports_the_segment_settings_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), |c| {
        c.segment_bytes = 12345678;
        c.segment_interval = Duration::from_millis(4321);
    })
    .await;
    let c = tb.client().await;
    assert_eq!(create(&c, "t", &[("segment.ms", "777")]).await.0, 0);
    let d = describe(&c, "t").await;
    assert_eq!(value_of(&d, "segment.bytes"), "12345678");
    assert_eq!(value_of(&d, "segment.ms"), "777");
    tb.stop().await;
}

#[tokio::test]
async fn topic_segment_ms_decides_when_its_data_is_archived() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let tb = TestBroker::start_with(dir.path(), |c| {
        c.segment_interval = Duration::from_secs(3600);
        c.clock = clock.clone();
    })
    .await;
    let c = tb.client().await;
    assert_eq!(create(&c, "fast", &[("segment.ms", "1000")]).await.0, 0);
    assert_eq!(create(&c, "slow", &[]).await.0, 0);
    assert_eq!(produce(&c, "fast", 0, batch(&["a"])).await, (0, 0));
    assert_eq!(produce(&c, "slow", 0, batch(&["b"])).await, (0, 0));
    assert_eq!(tb.broker.upload_due(false).await, 0, "nothing due yet");
    clock.advance(Duration::from_millis(1500));
    assert_eq!(
        tb.broker.upload_due(false).await,
        1,
        "the topic's 1 s has passed"
    );
    assert_eq!(
        tb.broker.upload_due(false).await,
        0,
        "the other waits for the broker's hour"
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(tb.broker.upload_due(false).await, 1);
    tb.stop().await;
}

#[tokio::test]
async fn min_insync_replicas_above_one_refuses_acks_all_on_one_broker() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(
        create(&c, "isr", &[("min.insync.replicas", "2")]).await.0,
        0
    );
    assert_eq!(
        produce(&c, "isr", 0, batch(&["x"])).await.0,
        ResponseError::NotEnoughReplicas.code()
    );
    let resp = c
        .send(9, &produce_request("isr", 0, batch(&["y"]), 1))
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "acks=1 needs no ISR");
    tb.stop().await;
}

fn batch_timestamps(resp: &kafka_protocol::messages::FetchResponse) -> Vec<(bool, i64)> {
    let p = &resp.responses[0].partitions[0];
    let mut data = p.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    while !data.is_empty() {
        let h = sediment_protocol::batch::validate(&data, usize::MAX).unwrap();
        let set = RecordBatchDecoder::decode(&mut data).unwrap();
        assert!(set
            .records
            .iter()
            .all(|r| (r.timestamp_type == TimestampType::LogAppend) == h[0].log_append_time()));
        out.push((h[0].log_append_time(), h[0].max_timestamp));
    }
    out
}

#[tokio::test]
async fn log_append_time_topics_get_the_broker_time_from_the_wal_and_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(NOW);
    let tb = TestBroker::start_with(dir.path(), |c| c.clock = clock.clone()).await;
    let c = tb.client().await;
    assert_eq!(
        create(&c, "lat", &[("message.timestamp.type", "LogAppendTime")])
            .await
            .0,
        0
    );
    assert_eq!(create(&c, "ct", &[]).await.0, 0);
    // The producer's timestamps are 1000 and 2000.
    let resp = c
        .send(9, &produce_request("lat", 0, batch(&["a", "b"]), -1))
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.log_append_time_ms), (0, NOW));
    clock.advance(Duration::from_secs(5));
    assert_eq!(produce(&c, "lat", 0, batch(&["c"])).await, (0, 2));
    assert_eq!(produce(&c, "ct", 0, batch(&["d", "e"])).await, (0, 0));

    let want = vec![(true, NOW), (true, NOW + 5000)];
    assert_eq!(batch_timestamps(&fetch(&c, "lat", 0, 0).await), want);
    assert_eq!(
        batch_timestamps(&fetch(&c, "ct", 0, 0).await),
        vec![(false, 2000)],
        "CreateTime keeps the producer's"
    );
    // Archived (the WAL is released at once in these tests) and read back from Parquet.
    assert_eq!(tb.broker.upload_due(true).await, 2);
    assert!(tb.broker.segments.disk_bytes() < 1 << 20);
    let archived = fetch(&c, "lat", 0, 0).await;
    assert_eq!(batch_timestamps(&archived), want);
    assert_eq!(
        list_offset(&c, "lat", NOW + 1).await,
        (0, NOW + 5000, 2),
        "ListOffsets by time sees the append time"
    );
    tb.stop().await;
    let _ = Arc::clone(&clock);
}

async fn alter_replace(
    c: &Client,
    topic: &str,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut res = AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_string(topic.to_string());
    res.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut a = AlterableConfig::default();
            a.name = StrBytes::from_string(k.to_string());
            a.value = Some(StrBytes::from_string(v.to_string()));
            a
        })
        .collect();
    let mut req = kafka_protocol::messages::AlterConfigsRequest::default();
    req.resources = vec![res];
    req.validate_only = validate_only;
    let resp = c.send(2, &req).await.unwrap();
    resp.responses[0].error_code
}

#[tokio::test]
async fn alter_configs_replaces_a_topics_configs_and_refuses_what_is_not_implemented() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let created = create(
        &c,
        "t",
        &[("retention.ms", "1000"), ("max.message.bytes", "2000")],
    )
    .await;
    assert_eq!(created.0, 0);
    // validate_only changes nothing.
    assert_eq!(
        alter_replace(&c, "t", &[("retention.ms", "5000")], true).await,
        0
    );
    assert_eq!(value_of(&describe(&c, "t").await, "retention.ms"), "1000");
    // The whole set is replaced: max.message.bytes goes back to the broker's value.
    assert_eq!(
        alter_replace(&c, "t", &[("retention.ms", "5000")], false).await,
        0
    );
    let d = describe(&c, "t").await;
    assert_eq!(value_of(&d, "retention.ms"), "5000");
    assert_eq!(value_of(&d, "max.message.bytes"), "1048588");
    assert_eq!(
        alter_replace(&c, "t", &[("cleanup.policy", "compact")], false).await,
        ResponseError::InvalidConfig.code()
    );
    assert_eq!(
        alter_replace(&c, "nope", &[("retention.ms", "1")], false).await,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(value_of(&describe(&c, "t").await, "retention.ms"), "5000");
    tb.stop().await;
}

/// IncrementalAlterConfigs on a broker resource: `name` "" is the cluster-wide default.
async fn alter_broker(c: &Client, name: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    let mut res = AlterConfigsResource::default();
    res.resource_type = 4;
    res.resource_name = StrBytes::from_string(name.to_string());
    res.configs = ops
        .iter()
        .map(|(k, op, v)| {
            let mut cfg = AlterableConfig::default();
            cfg.name = StrBytes::from_string(k.to_string());
            cfg.config_operation = *op;
            cfg.value = v.map(|v| StrBytes::from_string(v.to_string()));
            cfg
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp = c.send(1, &req).await.unwrap();
    resp.responses[0].error_code
}

fn source_of(configs: &[(String, String, i8)], name: &str) -> i8 {
    configs
        .iter()
        .find(|c| c.0 == name)
        .map(|c| c.2)
        .unwrap_or_else(|| panic!("{name} not described"))
}

#[tokio::test]
async fn the_cluster_default_and_the_broker_scope_layer_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(create(&c, "t", &[]).await.0, 0);
    assert_eq!(create(&c, "own", &[("retention.ms", "1")]).await.0, 0);
    // The cluster default (""), then this broker's own value over it.
    let set = |k, v| (k, 0i8, Some(v));
    assert_eq!(
        alter_broker(
            &c,
            "",
            &[set("log.retention.ms", "1000"), set("log.roll.ms", "5000")]
        )
        .await,
        0
    );
    let d = describe(&c, "t").await;
    assert_eq!(value_of(&d, "retention.ms"), "1000");
    assert_eq!(source_of(&d, "retention.ms"), 3);
    assert_eq!(value_of(&d, "segment.ms"), "5000");
    let t = tb.broker.registry.topic("t").unwrap();
    assert_eq!(tb.broker.retention_of(&t).0, 1000);
    assert_eq!(t.segment_interval, Some(Duration::from_millis(5000)));
    assert_eq!(
        alter_broker(&c, "0", &[set("log.retention.ms", "2000")]).await,
        0
    );
    let d = describe(&c, "t").await;
    assert_eq!(value_of(&d, "retention.ms"), "2000");
    assert_eq!(source_of(&d, "retention.ms"), 2);
    // A topic's own value wins over both.
    assert_eq!(value_of(&describe(&c, "own").await, "retention.ms"), "1");
    // flush.ms=0 (the topic's, or a broker default) makes acks=1 wait for the WAL sync.
    assert_eq!(create(&c, "flushed", &[("flush.ms", "0")]).await.0, 0);
    assert!(tb.broker.registry.topic("flushed").unwrap().flush_on_append);
    assert!(!tb.broker.registry.topic("t").unwrap().flush_on_append);
    assert_eq!(
        alter_broker(&c, "", &[set("log.flush.interval.messages", "1")]).await,
        0
    );
    assert!(tb.broker.registry.topic("t").unwrap().flush_on_append);
    // Another broker's id, a static setting, a bad value: refused, nothing changes.
    assert_eq!(
        alter_broker(&c, "9", &[set("log.retention.ms", "5")]).await,
        ResponseError::InvalidRequest.code()
    );
    assert_eq!(
        alter_broker(&c, "", &[set("num.io.threads", "5")]).await,
        ResponseError::InvalidConfig.code()
    );
    assert_eq!(
        alter_broker(&c, "", &[set("log.retention.ms", "-7")]).await,
        ResponseError::InvalidConfig.code()
    );
    // APPEND on a broker-level list: compaction is refused there too.
    assert_eq!(
        alter_broker(&c, "", &[("log.cleanup.policy", 2, Some("compact"))]).await,
        ResponseError::InvalidConfig.code()
    );
    tb.stop().await;

    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let d = describe(&c, "t").await;
    assert_eq!(value_of(&d, "retention.ms"), "2000");
    assert_eq!(value_of(&d, "segment.ms"), "5000");
    // DELETE of the broker's own value falls back to the cluster default.
    assert_eq!(
        alter_broker(&c, "0", &[("log.retention.ms", 1, None)]).await,
        0
    );
    assert_eq!(value_of(&describe(&c, "t").await, "retention.ms"), "1000");
    tb.stop().await;
}

/// Whether a new connection is served: ApiVersions through it answers.
async fn served(addr: &str) -> bool {
    let Ok(c) = Client::connect(addr).await else {
        return false;
    };
    let req = kafka_protocol::messages::ApiVersionsRequest::default();
    matches!(
        tokio::time::timeout(Duration::from_secs(5), c.send(0, &req)).await,
        Ok(Ok(_))
    )
}

#[tokio::test]
async fn max_connections_changes_at_run_time_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let _second = tb.client().await;
    assert!(served(&tb.addr).await, "under the static limit");
    // Two open (c and _second): a limit of 2 refuses the third; the open ones stay.
    assert_eq!(
        alter_broker(&c, "", &[("max.connections", 0, Some("2"))]).await,
        0
    );
    assert!(!served(&tb.addr).await, "a third connection is refused");
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 4;
    res.resource_name = StrBytes::from_static_str("0");
    res.configuration_keys = Some(vec![StrBytes::from_static_str("max.connections")]);
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let d = c.send(4, &req).await.unwrap();
    let e = &d.results[0].configs[0];
    assert_eq!(
        (e.value.as_deref().map(|v| v.to_string()), e.config_source),
        (Some("2".into()), 3)
    );
    assert_eq!(
        alter_broker(&c, "", &[("max.connections", 0, Some("0"))]).await,
        ResponseError::InvalidConfig.code()
    );
    tb.stop().await;
    // Kept in the metadata store: after a restart one connection is the limit's first...
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let _second = tb.client().await;
    assert!(!served(&tb.addr).await, "the limit survived the restart");
    // ...and DELETE goes back to --max-connections.
    assert_eq!(
        alter_broker(&c, "", &[("max.connections", 1, None)]).await,
        0
    );
    assert!(served(&tb.addr).await);
    tb.stop().await;
}
