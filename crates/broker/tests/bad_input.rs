//! Bad input over raw TCP: each case gets Kafka's error code or a closed connection, and the
//! broker keeps serving everyone else with nothing acknowledged lost.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, MetadataRequest, ResponseHeader,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes and reports whether the broker closed the connection (without answering).
async fn closes_after(addr: &str, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A request header v1 (api key, version, correlation id, client id "t") plus `rest`.
fn request(api_key: i16, version: i16, rest: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(7);
    b.put_i16(1);
    b.put_u8(b't');
    b.put_slice(rest);
    frame(&b)
}

async fn still_serves(tb: &TestBroker) {
    let c = tb.client().await;
    let resp = c.send(3, &ApiVersionsRequest::default()).await.unwrap();
    assert_eq!(resp.error_code, 0);
    let (code, _) = produce(&c, "health", 0, batch(&["ok"])).await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn garbage_and_broken_frames_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), |c| c.max_request_bytes = 64 * 1024).await;
    let c = tb.client().await;
    let (code, _) = produce(&c, "keep", 0, batch(&["before"])).await;
    assert_eq!(code, 0);

    // Random garbage: the size prefix decodes to something absurd.
    assert!(closes_after(&tb.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await);
    // Negative and zero sizes.
    assert!(closes_after(&tb.addr, &(-5i32).to_be_bytes()).await);
    assert!(closes_after(&tb.addr, &0i32.to_be_bytes()).await);
    // Over the configured maximum request size.
    assert!(closes_after(&tb.addr, &(64 * 1024 + 1i32).to_be_bytes()).await);
    // Shorter than a request header.
    assert!(closes_after(&tb.addr, &frame(&[0, 18])).await);
    // Unknown api key.
    assert!(closes_after(&tb.addr, &request(999, 0, &[])).await);
    // Known api key, version not served (Produce v2 predates the v3 floor).
    assert!(closes_after(&tb.addr, &request(0, 2, &[])).await);
    // Valid header, body cut short (a Metadata v1 topic array claiming 5 entries).
    assert!(closes_after(&tb.addr, &request(3, 1, &[0, 0, 0, 5])).await);
    // A frame that promises more bytes than it sends, then the client goes away.
    {
        let mut s = TcpStream::connect(&tb.addr).await.unwrap();
        s.write_all(&100i32.to_be_bytes()).await.unwrap();
        s.write_all(&[1, 2, 3]).await.unwrap();
    }

    still_serves(&tb).await;
    let got = values(&fetch(&c, "keep", 0, 0).await);
    assert_eq!(got, vec![(0, "before".to_string())]);
    tb.stop().await;
}

#[tokio::test]
async fn unsupported_api_versions_version_gets_a_v0_answer() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let mut s = TcpStream::connect(&tb.addr).await.unwrap();
    s.write_all(&request(18, 99, &[])).await.unwrap();
    let len = s.read_i32().await.unwrap();
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await.unwrap();
    let mut b = bytes::Bytes::from(body);
    let header = ResponseHeader::decode(&mut b, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let resp = ApiVersionsResponse::decode(&mut b, 0).unwrap();
    assert_eq!(resp.error_code, ResponseError::UnsupportedVersion.code());
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == 0 && k.min_version == 3));
    tb.stop().await;
}

#[tokio::test]
async fn bad_batches_get_kafka_error_codes_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), |c| c.message_max_bytes = 2048).await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "t", 0, batch(&["a", "b"])).await, (0, 0));

    let good = batch(&["c"]);
    let mut crc = good.to_vec();
    let last = crc.len() - 1;
    crc[last] ^= 0x55;
    assert_eq!(
        produce(&c, "t", 0, crc.into()).await.0,
        ResponseError::CorruptMessage.code()
    );

    let mut magic = good.to_vec();
    magic[16] = 1;
    assert_eq!(
        produce(&c, "t", 0, magic.into()).await.0,
        ResponseError::UnsupportedForMessageFormat.code()
    );

    let truncated = good.slice(..good.len() - 3);
    assert_eq!(
        produce(&c, "t", 0, truncated).await.0,
        ResponseError::CorruptMessage.code()
    );

    let big = "x".repeat(4000);
    assert_eq!(
        produce(&c, "t", 0, batch(&[&big])).await.0,
        ResponseError::MessageTooLarge.code()
    );

    assert_eq!(
        produce(&c, "t", 7, batch(&["nope"])).await.0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        produce(&c, "bad/name", 0, batch(&["nope"])).await.0,
        ResponseError::InvalidTopicException.code()
    );
    let resp = c
        .send(9, &produce_request("t", 0, batch(&["x"]), 5))
        .await
        .unwrap();
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRequiredAcks.code()
    );

    // Nothing refused reached the log; offsets continue densely.
    assert_eq!(produce(&c, "t", 0, batch(&["c"])).await, (0, 2));
    let got = values(&fetch(&c, "t", 0, 0).await);
    assert_eq!(got, vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);
    tb.stop().await;
}

#[tokio::test]
async fn invalid_topic_names_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let long = "x".repeat(250);
    for name in ["bad name", "a/b", "..", long.as_str(), ""] {
        let mut t = CreatableTopic::default();
        t.name = topic_name(name);
        t.num_partitions = 1;
        t.replication_factor = 1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        let resp = c.send(5, &req).await.unwrap();
        assert_eq!(
            resp.topics[0].error_code,
            ResponseError::InvalidTopicException.code(),
            "{name:?}"
        );

        let mut mt = MetadataRequestTopic::default();
        mt.name = Some(topic_name(name));
        let mut mreq = MetadataRequest::default();
        mreq.topics = Some(vec![mt]);
        mreq.allow_auto_topic_creation = true;
        let mresp = c.send(9, &mreq).await.unwrap();
        assert_eq!(
            mresp.topics[0].error_code,
            ResponseError::InvalidTopicException.code(),
            "{name:?}"
        );
    }
    let all = c.send(1, &MetadataRequest::default()).await.unwrap();
    assert!(all.topics.is_empty(), "no topic was created");
    tb.stop().await;
}

#[tokio::test]
async fn two_batches_for_one_partition_are_refused_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start(dir.path()).await;
    let c = tb.client().await;
    let mut two = batch(&["a"]).to_vec();
    two.extend_from_slice(&batch(&["b"]));
    assert_eq!(
        produce(&c, "t", 0, two.into()).await.0,
        ResponseError::InvalidRecord.code()
    );
    assert_eq!(produce(&c, "t", 0, batch(&["c"])).await, (0, 0));
    tb.stop().await;
}

/// A batch whose records section is `body` (under codec bits `codec`) with a valid length and
/// CRC: only the record-level check can tell it is wrong.
fn with_body(template: &[u8], body: &[u8], count: i32, codec: i16, attr_bits: i16) -> bytes::Bytes {
    use sediment_protocol::batch::HEADER_LEN;
    let mut b = template[..HEADER_LEN].to_vec();
    b.extend_from_slice(body);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let attrs = (i16::from_be_bytes([b[21], b[22]]) & !0x7) | codec | attr_bits;
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.into()
}

fn encoded(values: &[&str], c: kafka_protocol::records::Compression) -> bytes::Bytes {
    let records: Vec<NewRecord> = values
        .iter()
        .map(|v| NewRecord {
            value: Some(bytes::Bytes::from(v.to_string())),
            timestamp: 5_000,
            ..Default::default()
        })
        .collect();
    sediment_protocol::batch::encode(&records, Producer::NONE, c).unwrap()
}

#[tokio::test]
async fn poison_batches_with_valid_crcs_are_refused_and_the_partition_still_archives() {
    use kafka_protocol::records::Compression;
    use sediment_protocol::batch::HEADER_LEN;
    let dir = tempfile::tempdir().unwrap();
    let tb = TestBroker::start_with(dir.path(), |c| {
        c.max_decompressed_batch_bytes = 1 << 20;
    })
    .await;
    let c = tb.client().await;
    assert_eq!(produce(&c, "p", 0, batch(&["first"])).await, (0, 0));

    let plain = encoded(&["a", "b", "c"], Compression::None);
    let garbage = b"definitely not a compressed stream, whatever the codec says";
    let mut cases: Vec<(&str, bytes::Bytes, ResponseError, Option<i32>)> = Vec::new();
    for (codec, name) in [(1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")] {
        cases.push((
            name,
            with_body(&plain, garbage, 3, codec, 0),
            ResponseError::CorruptMessage,
            None,
        ));
    }
    // Uncompressed garbage: the first record's length runs past the batch.
    cases.push((
        "uncompressed garbage",
        with_body(&plain, &[0x7e, 1, 2, 3], 1, 0, 0),
        ResponseError::InvalidRecord,
        Some(0),
    ));
    // The header says 4 records, the (uncompressed and the zstd) body holds 3.
    cases.push((
        "count mismatch",
        with_body(&plain, &plain[HEADER_LEN..], 4, 0, 0),
        ResponseError::InvalidRecord,
        None,
    ));
    let z = encoded(&["a", "b", "c"], Compression::Zstd);
    cases.push((
        "zstd count mismatch",
        with_body(&z, &z[HEADER_LEN..], 4, 4, 0),
        ResponseError::InvalidRecord,
        None,
    ));
    // 4 MiB of zeros compress to a few KiB: past the 1 MiB cap, however small on the wire.
    let bomb = sediment_protocol::batch::encode(
        &[NewRecord {
            value: Some(bytes::Bytes::from(vec![0u8; 4 << 20])),
            ..Default::default()
        }],
        Producer::NONE,
        Compression::Zstd,
    )
    .unwrap();
    assert!(bomb.len() < 64 * 1024);
    cases.push((
        "decompression bomb",
        bomb,
        ResponseError::InvalidRecord,
        None,
    ));
    // Control and transactional batches from a client.
    cases.push((
        "control",
        with_body(&plain, &plain[HEADER_LEN..], 3, 0, 0x20),
        ResponseError::InvalidRecord,
        None,
    ));
    cases.push((
        "transactional",
        with_body(&plain, &plain[HEADER_LEN..], 3, 0, 0x10),
        ResponseError::InvalidRecord,
        None,
    ));
    for (name, records, want, record) in cases {
        let resp = c
            .send(9, &produce_request("p", 0, records, -1))
            .await
            .unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, want.code(), "{name}: {:?}", p.error_message);
        assert_eq!(p.base_offset, -1, "{name}");
        assert!(p.error_message.is_some(), "{name}: v8+ carries a message");
        let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, record.into_iter().collect::<Vec<_>>(), "{name}");
    }

    // Nothing refused was stored: the offsets go on densely, and the partition archives.
    assert_eq!(produce(&c, "p", 0, batch(&["second"])).await, (0, 1));
    let errors_before = tb.broker.metrics.upload_errors.get();
    assert_eq!(tb.broker.upload_due(true).await, 1, "one segment committed");
    assert_eq!(tb.broker.metrics.upload_errors.get(), errors_before);
    let got = values(&fetch(&c, "p", 0, 0).await);
    assert_eq!(got, vec![(0, "first".into()), (1, "second".into())]);
    tb.stop().await;
}
