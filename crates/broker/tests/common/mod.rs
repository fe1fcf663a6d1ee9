//! Shared set-up for the broker's integration tests: a real broker on a loopback port.

#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sediment_broker::{server, Broker, BrokerConfig};
use sediment_meta::embedded::EmbeddedMetaStore;
pub use sediment_protocol::batch::{NewRecord, Producer};
use sediment_protocol::client::Client;
use tokio::net::TcpListener;

pub struct TestBroker {
    pub broker: Arc<Broker>,
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl TestBroker {
    pub async fn start(dir: &std::path::Path) -> Self {
        Self::start_with(dir, |_| {}).await
    }

    pub async fn start_with(dir: &std::path::Path, tweak: impl FnOnce(&mut BrokerConfig)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = BrokerConfig::new(dir);
        config.advertised_port = addr.port() as i32;
        config.cache_memory_bytes = 8 << 20;
        config.cache_disk_bytes = 64 << 20;
        // Release archived WAL segments at once, so tests see reads from the archive.
        config.wal_retain_bytes = 0;
        tweak(&mut config);
        let meta = Arc::new(EmbeddedMetaStore::open(dir.join("meta")).unwrap());
        // A real directory, so the archive outlives a restart as it would in a bucket.
        let store =
            sediment_storage::from_url(&format!("file://{}", dir.join("objects").display()))
                .unwrap();
        let broker = Broker::open(config, meta, store).await.unwrap();
        let task = tokio::spawn(server::run(broker.clone(), listener));
        Self {
            broker,
            addr: addr.to_string(),
            task,
        }
    }

    /// Graceful stop: drain connections, sync and close the WAL.
    pub async fn stop(self) {
        self.broker.begin_shutdown();
        let _ = self.task.await;
        self.broker.close_wal();
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.addr).await.unwrap()
    }
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// One plain batch of `values`, timestamps 1000, 2000, ...
pub fn batch(values: &[&str]) -> Bytes {
    batch_from(values, Producer::NONE)
}

/// One batch of `values` carrying the given producer identity.
pub fn batch_from(values: &[&str], producer: Producer) -> Bytes {
    let records: Vec<NewRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| NewRecord {
            value: Some(Bytes::from(v.to_string())),
            timestamp: 1_000 * (i as i64 + 1),
            ..Default::default()
        })
        .collect();
    sediment_protocol::batch::encode(&records, producer, Compression::None).unwrap()
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(records);
    let mut td = TopicProduceData::default();
    td.name = topic_name(topic);
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = 5_000;
    req.topic_data = vec![td];
    req
}

pub async fn produce(c: &Client, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let resp: ProduceResponse = c
        .send(9, &produce_request(topic, partition, records, -1))
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub async fn fetch(c: &Client, topic: &str, partition: i32, offset: i64) -> FetchResponse {
    let mut fp = FetchPartition::default();
    fp.partition = partition;
    fp.fetch_offset = offset;
    fp.partition_max_bytes = 1 << 20;
    let mut ft = FetchTopic::default();
    ft.topic = topic_name(topic);
    ft.partitions = vec![fp];
    let mut req = FetchRequest::default();
    req.max_wait_ms = 0;
    req.max_bytes = 1 << 24;
    req.topics = vec![ft];
    c.send(11, &req).await.unwrap()
}

/// ListOffsets for partition 0 of `topic` at `ts` (-1 latest, -2 earliest, -3 max timestamp):
/// (error code, timestamp, offset).
pub async fn list_offset(c: &Client, topic: &str, ts: i64) -> (i16, i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = ts;
    let mut t = ListOffsetsTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.topics = vec![t];
    let resp: ListOffsetsResponse = c.send(7, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.timestamp, p.offset)
}

/// Values of every record in a fetch response's first partition.
pub fn values(resp: &FetchResponse) -> Vec<(i64, String)> {
    let mut bytes = resp.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    let mut out = Vec::new();
    for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
        for r in set.records {
            out.push((
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    out
}
