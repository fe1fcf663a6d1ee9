//! Tiered storage through a real listener: WAL space released after upload, reads below the
//! WAL served from archive segments (also after a restart), idempotent producer state kept
//! across the release, ListOffsets by time over the archive, retention, DeleteRecords,
//! IncrementalAlterConfigs, and back-pressure when the WAL budget is full.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use kafka_protocol::ResponseError;
use sediment_protocol::client::Client;

/// Batch `i` of the test: 4 records with keys, headers and a varying codec, timestamps
/// 10_000 * i + n, written by idempotent producer 77 with sequence 4 * i.
fn test_batch(i: i64) -> Bytes {
    let records: Vec<NewRecord> = (0..4)
        .map(|n| NewRecord {
            key: Some(Bytes::from(format!("k{i}-{n}"))),
            value: Some(Bytes::from(format!("value {i}/{n} {}", "x".repeat(40)))),
            timestamp: 10_000 * i + n,
            headers: vec![("h".into(), Some(Bytes::from(format!("{i}"))))],
        })
        .collect();
    let codec = [Compression::None, Compression::Lz4, Compression::Zstd][(i % 3) as usize];
    let producer = Producer {
        id: 77,
        epoch: 0,
        first_sequence: (4 * i) as i32,
    };
    sediment_protocol::batch::encode(&records, producer, codec).unwrap()
}

/// Every record from `offset` on, fetching until the high watermark: (offset, key, value,
/// producer id, sequence, codec).
async fn read_all(
    c: &Client,
    topic: &str,
    mut offset: i64,
) -> Vec<(i64, String, String, i64, i32, Compression)> {
    let mut out = Vec::new();
    loop {
        let resp = fetch(c, topic, 0, offset).await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {offset}");
        let mut bytes = p.records.clone().unwrap_or_default();
        if bytes.is_empty() {
            assert_eq!(
                offset, p.high_watermark,
                "stopped before the high watermark"
            );
            return out;
        }
        for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
            for r in set.records {
                if r.offset < offset {
                    continue;
                }
                out.push((
                    r.offset,
                    String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                    r.producer_id,
                    r.sequence,
                    set.compression,
                ));
                offset = r.offset + 1;
            }
        }
    }
}

fn small_wal(c: &mut sediment_broker::BrokerConfig) {
    c.wal_segment_bytes = 2048;
    c.readahead_chunks = 2;
}

#[tokio::test]
async fn archived_offsets_are_read_back_from_segments_once_the_wal_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), small_wal).await;
    let c = tb.client().await;
    for i in 0..30 {
        assert_eq!(produce(&c, "tier", 0, test_batch(i)).await, (0, 4 * i));
    }
    let before = read_all(&c, "tier", 0).await;
    assert_eq!(before.len(), 120);
    let wal_before = tb.broker.segments.disk_bytes();
    assert!(tb.broker.upload_due(true).await >= 1);
    let wal_after = tb.broker.segments.disk_bytes();
    assert!(
        wal_after < wal_before / 2 && wal_after <= 2048 + 1024,
        "wal space released down to the active segment: {wal_before} -> {wal_after} bytes"
    );
    {
        let topic = tb.broker.registry.topic("tier").unwrap();
        let st = topic.partitions[0].state.lock().unwrap();
        assert!(
            st.index.first().is_none_or(|e| e.base_offset > 0),
            "offset 0 is no longer in the wal"
        );
    }
    // Everything comes back from the archive with what the producer sent: keys, values,
    // producer id, sequences and codec.
    assert_eq!(read_all(&c, "tier", 0).await, before);
    // From the middle of a batch: that batch first, whole.
    let mid = fetch(&c, "tier", 0, 42).await;
    let mut bytes = mid.responses[0].partitions[0].records.clone().unwrap();
    let first = RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .remove(0);
    assert_eq!(first.records[0].offset, 40);
    // More data after the release: the wal tail and the archive join up.
    for i in 30..35 {
        assert_eq!(produce(&c, "tier", 0, test_batch(i)).await, (0, 4 * i));
    }
    let all = read_all(&c, "tier", 0).await;
    assert_eq!(all.len(), 140);
    drop(c);
    tb.stop().await;

    // After a restart: the archive still serves offset 0, offsets continue, and the idempotent
    // producer's state survived the release (a retry of its last batch is a duplicate, its
    // next batch is in sequence).
    let tb = TestBroker::start_with(dir.path(), small_wal).await;
    let c = tb.client().await;
    assert_eq!(read_all(&c, "tier", 0).await, all);
    assert_eq!(
        produce(&c, "tier", 0, test_batch(34)).await,
        (0, 136),
        "duplicate"
    );
    assert_eq!(produce(&c, "tier", 0, test_batch(35)).await, (0, 140));
    assert_eq!(
        produce(&c, "tier", 0, test_batch(40)).await.0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    drop(c);
    tb.stop().await;
}

#[tokio::test]
async fn list_offsets_by_time_searches_the_archive_then_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), small_wal).await;
    let c = tb.client().await;
    for i in 0..20 {
        produce(&c, "times", 0, test_batch(i)).await;
    }
    tb.broker.upload_due(true).await;
    for i in 20..24 {
        produce(&c, "times", 0, test_batch(i)).await;
    }
    // Batch i holds timestamps 10_000 i .. 10_000 i + 3 at offsets 4 i ..
    assert_eq!(list_offset(&c, "times", 50_002).await, (0, 50_002, 22));
    assert_eq!(list_offset(&c, "times", 50_005).await, (0, 60_000, 24));
    assert_eq!(list_offset(&c, "times", 0).await, (0, 0, 0));
    assert_eq!(
        list_offset(&c, "times", 210_001).await,
        (0, 210_001, 85),
        "in the wal"
    );
    assert_eq!(
        list_offset(&c, "times", -3).await,
        (0, 230_003, 95),
        "max timestamp"
    );
    assert_eq!(list_offset(&c, "times", 10_000_000).await, (0, -1, -1));
    drop(c);
    tb.stop().await;
}

async fn alter(c: &Client, topic: &str, key: &str, value: Option<&str>, op: i8) -> i16 {
    let mut cfg = AlterableConfig::default();
    cfg.name = StrBytes::from_string(key.into());
    cfg.config_operation = op;
    cfg.value = value.map(|v| StrBytes::from_string(v.into()));
    let mut res = AlterConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_string(topic.into());
    res.configs = vec![cfg];
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp: IncrementalAlterConfigsResponse = c.send(1, &req).await.unwrap();
    resp.responses[0].error_code
}

async fn delete_records(c: &Client, topic: &str, offset: i64) -> (i16, i64) {
    let mut p = DeleteRecordsPartition::default();
    p.partition_index = 0;
    p.offset = offset;
    let mut t = DeleteRecordsTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 1000;
    let resp: DeleteRecordsResponse = c.send(2, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

fn objects(dir: &std::path::Path, topic: &str) -> usize {
    std::fs::read_dir(dir.join("objects/topics").join(topic).join("partition=0"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn retention_deletes_whole_segments_and_the_log_start_follows() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), small_wal).await;
    let c = tb.client().await;
    // Three segments of 10 batches (40 records) each.
    for s in 0..3 {
        for i in 0..10 {
            produce(&c, "ret", 0, test_batch(10 * s + i)).await;
        }
        assert_eq!(tb.broker.upload_due(true).await, 1);
    }
    assert_eq!(objects(dir.path(), "ret"), 3);
    // Unknown configs, bad values and unknown topics are refused.
    assert_eq!(
        alter(&c, "ret", "retention.ms", Some("soon"), 0).await,
        ResponseError::InvalidConfig.code()
    );
    assert_eq!(
        alter(&c, "ret", "no.such.config", Some("1"), 0).await,
        ResponseError::InvalidConfig.code()
    );
    assert_eq!(
        alter(&c, "nope", "retention.ms", Some("1"), 0).await,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // Timestamps of segment s are 100_000 s ..; with retention.ms = 1000 at "now" = 150_000
    // only the first segment (max timestamp 90_003) is older than 149_000.
    assert_eq!(alter(&c, "ret", "retention.ms", Some("100000"), 0).await, 0);
    let topic = tb.broker.registry.topic("ret").unwrap();
    assert_eq!(tb.broker.retention_of(&topic), (100_000, -1));
    assert_eq!(tb.broker.apply_retention(200_000).await, 1);
    assert_eq!(objects(dir.path(), "ret"), 2);
    assert_eq!(list_offset(&c, "ret", -2).await.2, 40, "earliest follows");
    assert_eq!(
        fetch(&c, "ret", 0, 0).await.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(read_all(&c, "ret", 40).await.len(), 80);
    // retention.bytes keeps at least that many bytes: the newest segment alone.
    assert_eq!(alter(&c, "ret", "retention.ms", None, 1).await, 0);
    assert_eq!(alter(&c, "ret", "retention.bytes", Some("1"), 0).await, 0);
    assert_eq!(tb.broker.apply_retention(200_000).await, 1);
    assert_eq!(objects(dir.path(), "ret"), 1);
    assert_eq!(list_offset(&c, "ret", -2).await.2, 80);

    // DeleteRecords: beyond the high watermark is refused; inside a segment moves the start
    // without deleting it; -1 means the high watermark and takes the last segment.
    assert_eq!(
        delete_records(&c, "ret", 1000).await.0,
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(delete_records(&c, "ret", 90).await, (0, 90));
    assert_eq!(list_offset(&c, "ret", -2).await.2, 90);
    assert_eq!(read_all(&c, "ret", 90).await.first().map(|r| r.0), Some(90));
    assert_eq!(objects(dir.path(), "ret"), 1);
    assert_eq!(delete_records(&c, "ret", -1).await, (0, 120));
    assert_eq!(objects(dir.path(), "ret"), 0);
    assert_eq!(list_offset(&c, "ret", -2).await.2, 120);
    drop(c);
    tb.stop().await;

    // The log start and the offsets survive a restart, though no segment is left.
    let tb = TestBroker::start_with(dir.path(), small_wal).await;
    let c = tb.client().await;
    assert_eq!(list_offset(&c, "ret", -2).await.2, 120);
    assert_eq!(produce(&c, "ret", 0, batch(&["after"])).await, (0, 120));
    drop(c);
    tb.stop().await;
}

#[tokio::test]
async fn a_full_wal_budget_answers_producers_with_a_retriable_error_until_uploads_free_it() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), |c| {
        c.wal_segment_bytes = 1024;
        c.wal_budget_bytes = Some(4096);
    })
    .await;
    let c = tb.client().await;
    let mut accepted = 0;
    let refused = loop {
        let (code, _) = produce(&c, "budget", 0, batch(&[&"y".repeat(300)])).await;
        if code != 0 {
            break code;
        }
        accepted += 1;
        assert!(accepted < 100, "the budget never filled");
    };
    assert_eq!(refused, ResponseError::KafkaStorageError.code());
    assert!(ResponseError::KafkaStorageError.is_retriable());
    // Nothing acknowledged is lost, nothing refused was written.
    assert_eq!(
        values(&fetch(&c, "budget", 0, 0).await).len(),
        accepted as usize
    );
    let hw = fetch(&c, "budget", 0, 0).await.responses[0].partitions[0].high_watermark;
    assert_eq!(hw, accepted);
    // Storage is back: the backlog is archived, the WAL released, producers accepted again.
    assert!(tb.broker.upload_due(true).await >= 1);
    assert!(tb.broker.segments.disk_bytes() <= 4096);
    assert_eq!(
        produce(&c, "budget", 0, batch(&["again"])).await,
        (0, accepted)
    );
    drop(c);
    tb.stop().await;
}

#[tokio::test]
async fn archived_wal_segments_stay_until_the_wal_outgrows_its_retain_size() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), |c| {
        c.wal_segment_bytes = 2048;
        c.wal_retain_bytes = 16 * 1024;
    })
    .await;
    let c = tb.client().await;
    for i in 0..10 {
        produce(&c, "keep", 0, test_batch(i)).await;
    }
    let small = tb.broker.segments.disk_bytes();
    assert!(small < 16 * 1024, "{small} bytes");
    assert_eq!(tb.broker.upload_due(true).await, 1);
    assert_eq!(
        tb.broker.segments.disk_bytes(),
        small,
        "archived, but within the retain size: kept for tail readers"
    );
    let mut i = 10;
    while tb.broker.segments.disk_bytes() <= 24 * 1024 {
        assert_eq!(produce(&c, "keep", 0, test_batch(i)).await, (0, 4 * i));
        i += 1;
    }
    let big = tb.broker.segments.disk_bytes();
    assert!(big > 16 * 1024, "{big} bytes");
    assert_eq!(tb.broker.upload_due(true).await, 1);
    let after = tb.broker.segments.disk_bytes();
    assert!(
        after <= 8 * 1024 + 2048 + 1024,
        "released down to about half the retain size: {big} -> {after}"
    );
    assert_eq!(read_all(&c, "keep", 0).await.len(), 4 * i as usize);
    drop(c);
    tb.stop().await;
}

#[tokio::test]
async fn segment_ms_counts_from_the_first_batch_waiting_not_from_the_last_upload() {
    let dir = tempfile::tempdir().unwrap();
    let clock = sediment_broker::clock::ManualClock::new(1_700_000_000_000);
    let tb = TestBroker::start_with(dir.path(), |c| {
        c.segment_bytes = 1 << 30;
        c.segment_interval = std::time::Duration::from_millis(300);
        c.clock = clock.clone();
    })
    .await;
    let ms = std::time::Duration::from_millis;
    let c = tb.client().await;
    produce(&c, "aging", 0, test_batch(0)).await;
    assert_eq!(
        tb.broker.upload_due(false).await,
        0,
        "a new partition waits too"
    );
    clock.advance(ms(299));
    assert_eq!(tb.broker.upload_due(false).await, 0, "1 ms early");
    clock.advance(ms(1));
    assert_eq!(tb.broker.upload_due(false).await, 1);
    // Idle for longer than segment_ms: the next batch still waits its full interval.
    clock.advance(ms(400));
    produce(&c, "aging", 0, test_batch(1)).await;
    assert_eq!(tb.broker.upload_due(false).await, 0);
    clock.advance(ms(299));
    assert_eq!(tb.broker.upload_due(false).await, 0);
    clock.advance(ms(1));
    assert_eq!(tb.broker.upload_due(false).await, 1);
    drop(c);
    tb.stop().await;
}

#[tokio::test]
async fn failed_uploads_back_off_on_the_broker_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = sediment_broker::clock::ManualClock::new(1_700_000_000_000);
    let tb = TestBroker::start_with(dir.path(), |c| {
        c.segment_bytes = 1;
        c.clock = clock.clone();
    })
    .await;
    let ms = std::time::Duration::from_millis;
    let c = tb.client().await;
    produce(&c, "flaky", 0, test_batch(0)).await;
    // The partition's archive directory cannot be made (a file stands where it goes): every
    // upload fails, retriably, until it is removed. (Permissions would not stop root.)
    let topic_dir = dir.path().join("objects").join("topics").join("flaky");
    std::fs::create_dir_all(&topic_dir).unwrap();
    let blocker = topic_dir.join("partition=0");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let errors = || tb.broker.metrics.upload_errors.get();
    assert_eq!(tb.broker.upload_due(false).await, 0);
    assert_eq!(errors(), 1);
    assert_eq!(tb.broker.upload_due(false).await, 0);
    assert_eq!(errors(), 1, "no attempt during the 250 ms backoff");
    clock.advance(ms(250));
    assert_eq!(tb.broker.upload_due(false).await, 0);
    assert_eq!(errors(), 2, "retried once the backoff passed");
    clock.advance(ms(250));
    assert_eq!(tb.broker.upload_due(false).await, 0);
    assert_eq!(errors(), 2, "the second failure doubled the wait");
    clock.advance(ms(250));
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(
        tb.broker.upload_due(false).await,
        1,
        "uploads once writable"
    );
    assert_eq!(errors(), 2);
    assert!(
        tb.broker.health.stuck().is_empty(),
        "retriable failures never mark stuck"
    );
    drop(c);
    tb.stop().await;
}

#[tokio::test]
async fn data_deleted_before_it_is_archived_leaves_no_object_behind() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), small_wal).await;
    let c = tb.client().await;
    for i in 0..10 {
        produce(&c, "gone", 0, test_batch(i)).await;
    }
    assert_eq!(delete_records(&c, "gone", -1).await, (0, 40));
    assert_eq!(tb.broker.upload_due(true).await, 1);
    assert_eq!(
        objects(dir.path(), "gone"),
        0,
        "the segment below the log start was removed"
    );
    assert_eq!(list_offset(&c, "gone", -2).await.2, 40);
    assert_eq!(produce(&c, "gone", 0, test_batch(10)).await, (0, 40));
    assert_eq!(read_all(&c, "gone", 40).await.len(), 4);
    drop(c);
    tb.stop().await;
}
