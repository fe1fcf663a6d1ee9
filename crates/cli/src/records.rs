//! `sediment produce` and `sediment consume`: kcat-like record I/O from the shell.
//!
//! Both find each partition's leader with Metadata and talk to it directly (cluster mode
//! answers NOT_LEADER_OR_FOLLOWER elsewhere). Produce reads records from stdin, one per line,
//! and sends them in batches; keyed records go to `murmur2(key) % partitions` as Kafka's
//! default partitioner does, so a key lands where a Java or librdkafka producer would put it
//! (librdkafka with `partitioner=murmur2_random`), keyless ones round-robin by batch.
//! Consume prints records from a start offset (or a timestamp) as text or JSON lines.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use sediment_protocol::batch::{self, NewRecord, Producer};
use sediment_protocol::client::Client;

use crate::admin::{error_name, BrokerAddr};
use crate::bench_tier::Codec;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Acks {
    /// No answer awaited.
    #[value(name = "0")]
    None,
    /// The leader's append.
    #[value(name = "1")]
    Leader,
    /// Every in-sync replica.
    All,
}

#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    broker: BrokerAddr,
    /// Topic to produce to.
    topic: String,
    /// Split each line into key and value at the first occurrence of this string
    /// (without it, the whole line is the value and records have no key).
    #[arg(long, short = 'K')]
    key_delimiter: Option<String>,
    /// A header for every record, repeatable: -H source=cli
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Send every record to this partition (default: by key, or round-robin without one).
    #[arg(long, short)]
    partition: Option<i32>,
    #[arg(long, value_enum, default_value = "all")]
    acks: Acks,
    #[arg(long, value_enum, default_value = "none")]
    compression: Codec,
    /// Most records per batch.
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The value (with -K: key, delimiter, value), one record per line.
    Text,
    /// One JSON object per record: topic, partition, offset, timestamp, key, value, headers.
    Json,
}

#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    broker: BrokerAddr,
    /// Topic to read.
    topic: String,
    /// Only this partition (default: all).
    #[arg(long, short)]
    partition: Option<i32>,
    /// Where to start: beginning, end, or an offset (with -p; in every partition without).
    #[arg(long, short, default_value = "beginning")]
    offset: String,
    /// Start at the first record with a timestamp at or after this (ms since the epoch);
    /// overrides --offset.
    #[arg(long)]
    from_timestamp: Option<i64>,
    /// Stop after this many records.
    #[arg(long, short = 'c')]
    count: Option<u64>,
    /// Stop once every partition's end (its high watermark when reading began) is reached,
    /// instead of waiting for more.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Print key, this delimiter and value (text format).
    #[arg(long, short = 'K')]
    key_delimiter: Option<String>,
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    format: Format,
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`, seed 0x9747b28c), which its default
/// partitioner applies to the serialized key.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len() as u32;
    let mut h: u32 = 0x9747_b28c ^ len;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key` among `partitions`.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A topic's partitions and who leads each, with a connection per leader.
struct Route {
    leaders: BTreeMap<i32, i32>,
    addrs: HashMap<i32, String>,
    conns: HashMap<String, Client>,
    security: crate::admin::ClientSecurity,
}

impl Route {
    async fn of(broker: &BrokerAddr, topic: &str) -> anyhow::Result<Self> {
        let client = broker.connect().await?;
        let mut req = MetadataRequest::default();
        let mut t = MetadataRequestTopic::default();
        t.name = Some(name(topic));
        req.topics = Some(vec![t]);
        req.allow_auto_topic_creation = false;
        let resp = client.send(12, &req).await?;
        let Some(t) = resp.topics.first() else {
            bail!("{topic}: the broker returned no metadata");
        };
        if t.error_code != 0 {
            bail!(
                "{topic}: {} (create it with `sediment topics create {topic}`)",
                error_name(t.error_code)
            );
        }
        let leaders = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        let addrs = resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        Ok(Self {
            leaders,
            addrs,
            conns: HashMap::new(),
            security: broker.security.clone(),
        })
    }

    fn partitions(&self) -> i32 {
        self.leaders.len() as i32
    }

    async fn leader(&mut self, partition: i32) -> anyhow::Result<&Client> {
        let Some(leader) = self.leaders.get(&partition) else {
            bail!(
                "no partition {partition} (the topic has {})",
                self.partitions()
            );
        };
        if *leader < 0 {
            bail!("partition {partition} has no leader (offline); try again later");
        }
        let Some(addr) = self.addrs.get(leader).cloned() else {
            bail!("partition {partition}'s leader {leader} is not among the listed brokers");
        };
        if !self.conns.contains_key(&addr) {
            let c = self
                .security
                .connect(&addr)
                .await
                .with_context(|| format!("connecting to {addr} (leader of {partition})"))?;
            self.conns.insert(addr.clone(), c);
        }
        self.conns.get(&addr).context("connection vanished")
    }
}

fn header_pairs(headers: &[String]) -> anyhow::Result<Vec<(String, Option<Bytes>)>> {
    headers
        .iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Some(Bytes::from(v.to_string())))),
            _ => bail!("header {h:?}: give it as key=value"),
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let mut route = Route::of(&args.broker, &args.topic).await?;
    if let Some(p) = args.partition {
        if p < 0 || p >= route.partitions() {
            bail!(
                "--partition {p}: {} has partitions 0..{}",
                args.topic,
                route.partitions() - 1
            );
        }
    }
    let headers = header_pairs(&args.headers)?;
    let stdin = std::io::stdin();
    let mut pending: BTreeMap<i32, Vec<NewRecord>> = BTreeMap::new();
    let mut round_robin = 0i32;
    let (mut sent, mut lines) = (0u64, stdin.lock().lines());
    let started = Instant::now();
    let show_progress = std::io::stderr().is_terminal();
    let mut last_progress = Instant::now();
    loop {
        let line = match lines.next() {
            Some(l) => Some(l.context("reading stdin")?),
            None => None,
        };
        let done = line.is_none();
        if let Some(line) = line {
            let (key, value) = match &args.key_delimiter {
                Some(d) => match line.split_once(d.as_str()) {
                    Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                    None => (None, line),
                },
                None => (None, line),
            };
            let partition = match (args.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for(k, route.partitions()),
                (None, None) => round_robin,
            };
            let batch = pending.entry(partition).or_default();
            batch.push(NewRecord {
                key,
                value: Some(Bytes::from(value)),
                timestamp: now_ms(),
                headers: headers.clone(),
            });
            if batch.len() >= args.batch_records.max(1) && args.partition.is_none() {
                round_robin = (round_robin + 1) % route.partitions().max(1);
            }
        }
        let full: Vec<i32> = pending
            .iter()
            .filter(|(_, b)| done || b.len() >= args.batch_records.max(1))
            .map(|(p, _)| *p)
            .collect();
        for p in full {
            let Some(records) = pending.remove(&p) else {
                continue;
            };
            if records.is_empty() {
                continue;
            }
            send_batch(&mut route, &args, p, &records).await?;
            sent += records.len() as u64;
        }
        if show_progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprint!("\rproduced {sent} records   ");
        }
        if done {
            break;
        }
    }
    if show_progress {
        eprint!("\r");
    }
    eprintln!(
        "produced {sent} records to {} in {:.2} s",
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn send_batch(
    route: &mut Route,
    args: &ProduceArgs,
    partition: i32,
    records: &[NewRecord],
) -> anyhow::Result<()> {
    let body = batch::encode(records, Producer::NONE, args.compression.compression())
        .map_err(anyhow::Error::msg)?;
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(body);
    let mut td = TopicProduceData::default();
    td.name = name(&args.topic);
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = match args.acks {
        Acks::None => 0,
        Acks::Leader => 1,
        Acks::All => -1,
    };
    req.timeout_ms = 30_000;
    req.topic_data = vec![td];
    let client = route.leader(partition).await?;
    if req.acks == 0 {
        client.send_oneway(9, &req).await?;
        return Ok(());
    }
    let resp = client.send(9, &req).await?;
    for t in &resp.responses {
        for p in &t.partition_responses {
            if p.error_code != 0 {
                let hint = p
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {}", m.as_str()))
                    .unwrap_or_default();
                bail!(
                    "{}-{partition}: {}{hint}",
                    args.topic,
                    error_name(p.error_code)
                );
            }
        }
    }
    Ok(())
}

/// One partition's offset for `timestamp` (-2 earliest, -1 latest, or ms since the epoch),
/// from its leader; -1 if no record is that new.
async fn list_offset(
    route: &mut Route,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> anyhow::Result<i64> {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = partition;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let resp = route.leader(partition).await?.send(4, &req).await?;
    let Some(p) = resp.topics.first().and_then(|t| t.partitions.first()) else {
        bail!("{topic}-{partition}: no ListOffsets answer");
    };
    if p.error_code != 0 {
        bail!("{topic}-{partition}: {}", error_name(p.error_code));
    }
    Ok(p.offset)
}

fn json_bytes(b: &Option<Bytes>) -> serde_json::Value {
    match b {
        None => serde_json::Value::Null,
        Some(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
    }
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut route = Route::of(&args.broker, &args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if p < 0 || p >= route.partitions() => bail!(
            "--partition {p}: {} has partitions 0..{}",
            args.topic,
            route.partitions() - 1
        ),
        Some(p) => vec![p],
        None => (0..route.partitions()).collect(),
    };
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &partitions {
        let start = match (args.from_timestamp, args.offset.as_str()) {
            (Some(ts), _) => match list_offset(&mut route, &args.topic, p, ts).await? {
                -1 => list_offset(&mut route, &args.topic, p, -1).await?,
                o => o,
            },
            (None, "beginning") => list_offset(&mut route, &args.topic, p, -2).await?,
            (None, "end") => list_offset(&mut route, &args.topic, p, -1).await?,
            (None, o) => o
                .parse::<i64>()
                .map_err(|_| anyhow::anyhow!("--offset {o:?}: give beginning, end or a number"))?,
        };
        next.insert(p, start);
        if args.exit_at_end {
            ends.insert(p, list_offset(&mut route, &args.topic, p, -1).await?);
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let show_progress = args.count.is_some() && std::io::stderr().is_terminal();
    let mut last_progress = Instant::now();
    loop {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        let active: Vec<i32> = next
            .iter()
            .filter(|(p, o)| !args.exit_at_end || ends.get(p).is_some_and(|e| **o < *e))
            .map(|(p, _)| *p)
            .collect();
        if active.is_empty() {
            break;
        }
        // One fetch per leader, for that leader's partitions.
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in active {
            by_leader
                .entry(*route.leaders.get(&p).unwrap_or(&-1))
                .or_default()
                .push(p);
        }
        let mut got_any = false;
        for ps in by_leader.values() {
            let mut req = FetchRequest::default();
            req.replica_id = BrokerId(-1);
            req.max_wait_ms = 500;
            req.min_bytes = 1;
            req.max_bytes = 16 << 20;
            let mut ft = FetchTopic::default();
            ft.topic = name(&args.topic);
            for p in ps {
                let mut fp = FetchPartition::default();
                fp.partition = *p;
                fp.fetch_offset = next[p];
                fp.partition_max_bytes = 4 << 20;
                fp.current_leader_epoch = -1;
                fp.log_start_offset = -1;
                ft.partitions.push(fp);
            }
            req.topics = vec![ft];
            let Some(first) = ps.first() else { continue };
            let resp = route.leader(*first).await?.send(12, &req).await?;
            for t in &resp.responses {
                for pd in &t.partitions {
                    let p = pd.partition_index;
                    if pd.error_code != 0 {
                        bail!("{}-{p}: {}", args.topic, error_name(pd.error_code));
                    }
                    let Some(mut records) = pd.records.clone() else {
                        continue;
                    };
                    while !records.is_empty() {
                        let set = RecordBatchDecoder::decode(&mut records).map_err(|e| {
                            anyhow::anyhow!("{}-{p}: undecodable batch: {e}", args.topic)
                        })?;
                        for r in set.records {
                            if r.offset < next[&p] {
                                continue; // the batch began before the asked offset
                            }
                            if args.count.is_some_and(|c| printed >= c)
                                || (args.exit_at_end
                                    && ends.get(&p).is_some_and(|e| r.offset >= *e))
                            {
                                break;
                            }
                            next.insert(p, r.offset + 1);
                            got_any = true;
                            printed += 1;
                            match args.format {
                                Format::Json => {
                                    let headers: serde_json::Map<String, serde_json::Value> = r
                                        .headers
                                        .iter()
                                        .map(|(k, v)| (k.to_string(), json_bytes(v)))
                                        .collect();
                                    let line = serde_json::json!({
                                        "topic": args.topic,
                                        "partition": p,
                                        "offset": r.offset,
                                        "timestamp": r.timestamp,
                                        "key": json_bytes(&r.key),
                                        "value": json_bytes(&r.value),
                                        "headers": headers,
                                    });
                                    writeln!(out, "{line}")?;
                                }
                                Format::Text => {
                                    let value = r.value.as_deref().unwrap_or_default();
                                    if let Some(d) = &args.key_delimiter {
                                        out.write_all(r.key.as_deref().unwrap_or_default())?;
                                        out.write_all(d.as_bytes())?;
                                    }
                                    out.write_all(value)?;
                                    out.write_all(b"\n")?;
                                }
                            }
                        }
                    }
                }
            }
        }
        out.flush()?;
        if show_progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            if let Some(c) = args.count {
                eprint!("\rconsumed {printed}/{c} records   ");
            }
        }
        if !got_any && !args.exit_at_end {
            continue; // the long poll expired: wait again
        }
    }
    if show_progress {
        eprintln!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Values of the Java client's Utils.murmur2 (its own unit test vectors).
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
        assert!((0..10).contains(&partition_for(b"foobar", 10)));
    }
}
