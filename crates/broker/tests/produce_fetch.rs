//! Produce and fetch through a real listener: offsets, limits, long polls, restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::ResponseError;

#[tokio::test]
async fn offsets_are_dense_and_fetch_returns_the_batch_holding_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "t", 0, batch(&["a", "b", "c"])).await, (0, 0));
    assert_eq!(produce(&c, "t", 0, batch(&["d"])).await, (0, 3));
    // Offset 1 is inside the first batch: the whole batch comes back.
    let resp = fetch(&c, "t", 0, 1).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 4));
    assert_eq!(values(&resp).first().map(|v| v.0), Some(0));
    assert_eq!(values(&resp).len(), 4);
    // At the high watermark: empty, no error. Past the end: OFFSET_OUT_OF_RANGE.
    assert!(values(&fetch(&c, "t", 0, 4).await).is_empty());
    let oor = fetch(&c, "t", 0, 5).await;
    assert_eq!(
        oor.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    let neg = fetch(&c, "t", 0, -1).await;
    assert_eq!(
        neg.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );

    // ListOffsets: earliest, latest, by time (timestamps are 1000, 2000, 3000 then 1000).
    assert_eq!(list_offset(&c, "t", -2).await, (0, -1, 0));
    assert_eq!(list_offset(&c, "t", -1).await, (0, -1, 4));
    assert_eq!(list_offset(&c, "t", 1500).await, (0, 2000, 1));
    assert_eq!(list_offset(&c, "t", 3000).await, (0, 3000, 2));
    assert_eq!(list_offset(&c, "t", 9000).await, (0, -1, -1));
    assert_eq!(list_offset(&c, "t", -3).await, (0, 3000, 2));
    tb.stop().await;
}

#[tokio::test]
async fn long_poll_waits_for_data_and_returns_when_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "lp", 0, batch(&["first"])).await.0, 0);

    // Nothing new: the poll waits its max_wait and returns empty.
    let mut req = kafka_protocol::messages::FetchRequest::default();
    let mut fp = kafka_protocol::messages::fetch_request::FetchPartition::default();
    fp.fetch_offset = 1;
    fp.partition_max_bytes = 1 << 20;
    let mut ft = kafka_protocol::messages::fetch_request::FetchTopic::default();
    ft.topic = topic_name("lp");
    ft.partitions = vec![fp];
    req.topics = vec![ft];
    req.max_wait_ms = 300;
    req.min_bytes = 1;
    req.max_bytes = 1 << 20;
    let t0 = Instant::now();
    let resp = c.send(11, &req).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert!(values(&resp).is_empty());

    // A produce during the poll ends it early with the new batch.
    req.max_wait_ms = 10_000;
    let c2 = tb.client().await;
    let poll = tokio::spawn(async move { c2.send(11, &req).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    assert_eq!(produce(&c, "lp", 0, batch(&["second"])).await.0, 0);
    let resp = poll.await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(values(&resp), vec![(1, "second".to_string())]);
    tb.stop().await;
}

#[tokio::test]
async fn fetch_limits_still_return_one_oversized_batch() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let big = "y".repeat(5000);
    for _ in 0..3 {
        assert_eq!(produce(&c, "lim", 0, batch(&[&big])).await.0, 0);
    }
    let mut req = kafka_protocol::messages::FetchRequest::default();
    let mut fp = kafka_protocol::messages::fetch_request::FetchPartition::default();
    fp.partition_max_bytes = 100;
    let mut ft = kafka_protocol::messages::fetch_request::FetchTopic::default();
    ft.topic = topic_name("lim");
    ft.partitions = vec![fp];
    req.topics = vec![ft];
    req.max_bytes = 100;
    let resp = c.send(11, &req).await.unwrap();
    assert_eq!(
        values(&resp).len(),
        1,
        "exactly the first batch, despite the limits"
    );
    tb.stop().await;
}

#[tokio::test]
async fn acknowledged_data_survives_restart_and_offsets_continue() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    for i in 0..50 {
        let (code, off) = produce(&c, "r", 0, batch(&[&format!("v{i}")])).await;
        assert_eq!((code, off), (0, i));
    }
    drop(c);
    tb.stop().await;

    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let got = values(&fetch(&c, "r", 0, 0).await);
    assert_eq!(got.len(), 50);
    for (i, (off, v)) in got.iter().enumerate() {
        assert_eq!((*off, v.as_str()), (i as i64, format!("v{i}").as_str()));
    }
    assert_eq!(produce(&c, "r", 0, batch(&["after"])).await, (0, 50));
    tb.stop().await;
}

#[tokio::test]
async fn deleted_and_recreated_topic_starts_empty_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "d", 0, batch(&["old"])).await, (0, 0));
    let mut req = kafka_protocol::messages::DeleteTopicsRequest::default();
    req.topic_names = vec![topic_name("d")];
    let resp = c.send(4, &req).await.unwrap();
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(produce(&c, "d", 0, batch(&["new"])).await, (0, 0));
    drop(c);
    tb.stop().await;
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    assert_eq!(
        values(&fetch(&c, "d", 0, 0).await),
        vec![(0, "new".to_string())]
    );
    tb.stop().await;
}

#[tokio::test]
async fn durable_batches_are_archived_as_segments_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    for i in 0..5 {
        let v = format!("v{i}");
        assert_eq!(produce(&c, "arch", 0, batch(&[&v, "x"])).await, (0, 2 * i));
    }
    assert_eq!(tb.broker.upload_due(true).await, 1);
    assert_eq!(
        tb.broker.upload_due(true).await,
        0,
        "nothing new to archive"
    );
    let topic = tb.broker.registry.topic("arch").unwrap();
    let segments = tb
        .broker
        .meta
        .partition_index(topic.meta.id, 0)
        .await
        .unwrap()
        .segments;
    assert_eq!(segments.len(), 1);
    assert_eq!((segments[0].base_offset, segments[0].end_offset), (0, 10));
    assert_eq!(
        segments[0].path,
        "topics/arch/partition=0/00000000000000000000-0.parquet"
    );
    let store = &tb.broker.object_store;
    let path = object_store::path::Path::from(segments[0].path.as_str());
    let data = object_store::ObjectStoreExt::get(&*store.store, &path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let batches = sediment_storage::segment::decode_segment(data, 0, usize::MAX).unwrap();
    assert_eq!(batches.len(), 5, "one rebuilt batch per produced batch");

    // More data: the next segment continues where the index ends.
    assert_eq!(produce(&c, "arch", 0, batch(&["late"])).await, (0, 10));
    assert_eq!(tb.broker.upload_due(true).await, 1);
    let segments = tb
        .broker
        .meta
        .partition_index(topic.meta.id, 0)
        .await
        .unwrap()
        .segments;
    assert_eq!((segments[1].base_offset, segments[1].end_offset), (10, 11));
    drop(c);
    tb.stop().await;

    // After a restart the broker knows what is archived and does not upload it again.
    let tb = TestBroker::start(dir.path()).await;
    assert_eq!(tb.broker.upload_due(true).await, 0);
    tb.stop().await;
}
