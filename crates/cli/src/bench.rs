//! `sediment bench`: produce and consume throughput and produce latency against a running
//! broker, next to the disk's own sequential write+fdatasync bandwidth measured the same way.
//!
//! The producer sends pre-encoded, uncompressed, incompressible batches (one per request,
//! partitions in turn) with up to `--inflight` requests outstanding on one connection, as
//! librdkafka pipelines. Latency is measured per request, from send to acknowledgement.
//! `--rate-mib` paces sends to measure latency below saturation.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use futures_lite::FuturesUnordered;
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rand::RngCore;
use sediment_protocol::client::Client;

use crate::bench_tier;

mod futures_lite {
    pub use futures::stream::FuturesUnordered;
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Broker to measure.
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[command(flatten)]
    security: crate::admin::ClientSecurity,
    /// Topic to create and use [default: sediment-bench-<unix time>]
    #[arg(long)]
    topic: Option<String>,
    /// Records to produce.
    #[arg(long, default_value_t = 500_000)]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Acknowledgement: all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Bytes per record batch (one batch per produce request).
    #[arg(long, default_value_t = 64 * 1024)]
    batch_bytes: usize,
    /// Produce requests outstanding at once.
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    /// Pace production at this many MiB/s (0 = as fast as acknowledged).
    #[arg(long, default_value_t = 0.0)]
    rate_mib: f64,
    /// Skip the consume phase.
    #[arg(long)]
    no_consume: bool,
    /// Instead of produce/consume: commit offsets for this many partitions per OffsetCommit,
    /// `--commits` times, one request at a time, and report the latency.
    #[arg(long)]
    offset_commit_partitions: Option<i32>,
    /// Number of OffsetCommit requests in the offset-commit benchmark.
    #[arg(long, default_value_t = 2000)]
    commits: u32,
    /// After the full-speed phase, produce half as many records again paced at half the
    /// measured throughput, and report that latency.
    #[arg(long)]
    latency_at_half: bool,
    /// Also measure sequential write+fdatasync bandwidth of a file in this directory (use the
    /// broker's data directory's filesystem).
    #[arg(long)]
    disk_dir: Option<PathBuf>,
    /// Bytes written per fdatasync in the disk measurement.
    #[arg(long, default_value_t = 1024 * 1024)]
    disk_chunk: usize,
    /// Total bytes written by the disk measurement [default: as many as the produce phase
    /// sends, so that a disk fast in bursts and slower when sustained is measured as it is
    /// used]
    #[arg(long)]
    disk_bytes: Option<usize>,
    /// What records carry.
    #[arg(long, value_enum, default_value_t = bench_tier::Payload::Random)]
    payload: bench_tier::Payload,
    /// Instead of produce/consume: time the broker's record validation (decompress and walk
    /// every record, as Produce does before acknowledging) of the generated batches, in this
    /// process on one thread, and report its throughput for `--compression`.
    #[arg(long)]
    validation: bool,
    /// Codec of the produced batches (`--batch-bytes` counts the records before compression).
    #[arg(long, value_enum, default_value_t = bench_tier::Codec::None)]
    compression: bench_tier::Codec,
    /// Distinct batches generated and sent in turn (so the archive compresses what a real
    /// stream would, not one batch repeated).
    #[arg(long, default_value_t = 256)]
    distinct_batches: usize,
    /// The broker's metrics page (http://host:port/metrics): samples upload lag while
    /// producing, waits for it to drain, and reports the archive's size against the raw bytes.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Catch-up benchmark: after producing and archiving, read the topic's segments straight
    /// from this object store (parallel ranged GETs), then consume the topic from offset 0
    /// twice through the broker (cold, then warm cache). Needs --metrics-url.
    #[arg(long)]
    catchup_object_store: Option<String>,
    /// Ranged GETs in flight when reading segments directly.
    #[arg(long, default_value_t = 8)]
    get_concurrency: usize,
    /// Bytes per ranged GET when reading segments directly.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    get_range_bytes: u64,
    /// Cluster mode: create the topic with these replicas for every partition (broker ids,
    /// comma-separated, the first leads), so every produce goes to the --bootstrap broker,
    /// which must be the first.
    #[arg(long, value_delimiter = ',')]
    replicas: Vec<i32>,
}

/// Ends a progress line and prints a phase's throughput; returns its seconds.
fn report(label: &str, records: u64, bytes: u64, start: Instant) -> f64 {
    let secs = start.elapsed().as_secs_f64();
    eprintln!();
    println!(
        "{label}: {records} records, {:.1} MiB in {secs:.2} s: {:.1} MiB/s, {:.0} records/s",
        mib(bytes as f64),
        mib(bytes as f64) / secs,
        records as f64 / secs
    );
    secs
}

pub(crate) fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn disk_baseline(dir: &std::path::Path, chunk: usize, total: usize) -> anyhow::Result<f64> {
    use std::os::unix::fs::FileExt;
    let path = dir.join(format!(".sediment-bench-disk-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; chunk];
    rand::rng().fill_bytes(&mut buf);
    let start = Instant::now();
    let mut written = 0usize;
    while written < total {
        file.write_all_at(&buf, written as u64)?;
        file.sync_data()?;
        written += chunk;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(mib(written as f64) / secs)
}

fn check_produce(resp: &ProduceResponse) -> anyhow::Result<()> {
    for t in &resp.responses {
        for p in &t.partition_responses {
            if p.error_code != 0 {
                bail!(
                    "produce to partition {} failed with error code {}",
                    p.index,
                    p.error_code
                );
            }
        }
    }
    Ok(())
}

struct Progress {
    last: Instant,
    label: &'static str,
}

impl Progress {
    fn tick(&mut self, done: u64, total: u64, bytes: u64, start: Instant) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprint!(
                "\r{}: {done}/{total} records ({:.0}%), {:.1} MiB/s   ",
                self.label,
                100.0 * done as f64 / total as f64,
                mib(bytes as f64) / secs
            );
            let _ = std::io::stderr().flush();
        }
    }
}

/// The distinct batches the benchmark sends in turn, as `args` describe them.
fn generated_batches(args: &BenchArgs) -> anyhow::Result<(Vec<Bytes>, Vec<bench_tier::BatchSize>)> {
    bench_tier::batches(
        args.payload,
        args.distinct_batches.max(1),
        args.batch_bytes,
        args.record_size,
        args.compression,
    )
}

/// Record validation throughput on one thread: raw record bytes (before compression) walked per
/// second, and the time per batch.
fn validation_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let (batches, sizes) = generated_batches(args)?;
    let infos: Vec<_> = batches
        .iter()
        .map(|b| {
            sediment_protocol::batch::validate(b, usize::MAX)
                .map_err(|e| anyhow::anyhow!("generated batch does not validate: {e}"))
                .map(|i| i[0])
        })
        .collect::<anyhow::Result<_>>()?;
    let wire: usize = batches.iter().map(|b| b.len()).sum();
    let raw: usize = sizes.iter().map(|s| s.1).sum();
    let records_per_round: usize = sizes.iter().map(|s| s.0).sum();
    let rounds = (args.records as usize)
        .div_ceil(records_per_round.max(1))
        .max(1);
    println!(
        "validation of {:?} {:?} batches: {} distinct, {:.1} KiB raw and {:.1} KiB on the wire each, {rounds} rounds",
        args.compression,
        args.payload,
        batches.len(),
        raw as f64 / batches.len() as f64 / 1024.0,
        wire as f64 / batches.len() as f64 / 1024.0,
    );
    let mut scratch = Vec::new();
    let start = Instant::now();
    let mut last = Instant::now();
    for round in 0..rounds {
        for (b, info) in batches.iter().zip(&infos) {
            sediment_protocol::records::check(
                b,
                info,
                sediment_protocol::decompress::MAX_DECOMPRESSED_BATCH,
                &mut scratch,
            )
            .map_err(|e| anyhow::anyhow!("generated batch refused: {e}"))?;
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            eprintln!("  {}/{rounds} rounds", round + 1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n = (rounds * batches.len()) as f64;
    println!(
        "validated {:.0} batches in {secs:.2} s: {:.1} MiB/s of records ({:.1} MiB/s on the \
         wire), {:.1} us per batch",
        n,
        mib((rounds * raw) as f64) / secs,
        mib((rounds * wire) as f64) / secs,
        secs / n * 1e6
    );
    Ok(())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let acks: i16 = match args.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks must be all, 1 or 0, not {other:?}"),
    };
    if args.partitions < 1 || args.records == 0 || args.record_size == 0 || args.inflight == 0 {
        bail!("--partitions, --records, --record-size and --inflight must be positive");
    }
    if let Some(partitions) = args.offset_commit_partitions {
        return commit_bench(&args, partitions).await;
    }
    if args.validation {
        return validation_bench(&args);
    }
    println!(
        "sediment bench: {} records of {} B, {} partitions, acks={}, batch {} B, inflight {}",
        args.records, args.record_size, args.partitions, args.acks, args.batch_bytes, args.inflight
    );
    // The disk is measured right before and right after the full-speed produce phase, so a
    // disk whose speed drifts (as virtual disks do) is compared fairly.
    let disk = |when: &str| -> anyhow::Result<Option<f64>> {
        let Some(dir) = &args.disk_dir else {
            return Ok(None);
        };
        let produced = args.records as usize * (args.record_size + 20);
        let bytes = args.disk_bytes.unwrap_or(produced).max(args.disk_chunk);
        let bw = disk_baseline(dir, args.disk_chunk, bytes)?;
        println!(
            "disk {when}: sequential write+fdatasync of {:.0} MiB, {} KiB per sync: {bw:.1} MiB/s",
            mib(bytes as f64),
            args.disk_chunk / 1024
        );
        Ok(Some(bw))
    };
    let disk_before = disk("before")?;

    let client = args.security.connect(&args.bootstrap).await?;
    let topic = args.topic.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("sediment-bench-{t}")
    });
    let mut ct = CreatableTopic::default();
    ct.name = TopicName(StrBytes::from_string(topic.clone()));
    ct.num_partitions = args.partitions;
    ct.replication_factor = -1;
    if !args.replicas.is_empty() {
        ct.num_partitions = -1;
        ct.assignments = (0..args.partitions)
            .map(|p| {
                let mut a = kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment::default();
                a.partition_index = p;
                a.broker_ids = args
                    .replicas
                    .iter()
                    .map(|b| kafka_protocol::messages::BrokerId(*b))
                    .collect();
                a
            })
            .collect();
    }
    let mut creq = CreateTopicsRequest::default();
    creq.topics = vec![ct];
    let cresp = client.send(5, &creq).await?;
    for r in cresp.topics {
        if r.error_code != 0 && r.error_code != 36 {
            bail!("creating topic {topic}: error code {}", r.error_code);
        }
    }

    // Produce as fast as acknowledged (or at --rate-mib).
    let (batches, sizes) = generated_batches(&args)?;
    let phase = Phase {
        client: &client,
        topic: &topic,
        batches: &batches,
        sizes: &sizes,
        acks,
        args: &args,
    };
    let lag = args.metrics_url.clone().map(bench_tier::LagWatch::start);
    let produced = phase
        .produce(args.records, args.rate_mib, "produce")
        .await?;
    if let Some(lag) = lag {
        bench_tier::report_lag(&lag.finish().await);
    }
    if let (Some(before), Some(after)) = (disk_before, disk("after")?) {
        let mean = (before + after) / 2.0;
        println!(
            "produce / disk: {:.0}% of the mean disk bandwidth ({mean:.1} MiB/s)",
            100.0 * produced.rate / mean
        );
    }
    let mut total_records = produced.records;
    let mut raw_bytes = produced.raw_bytes;
    if args.latency_at_half && acks != 0 {
        // The latency target is stated at half the throughput just measured.
        let half = phase
            .produce(
                args.records / 2,
                produced.rate / 2.0,
                "produce at half that rate",
            )
            .await?;
        total_records += half.records;
        raw_bytes += half.raw_bytes;
    }
    if let Some(url) = &args.metrics_url {
        let took = bench_tier::wait_drained(url, Duration::from_secs(900)).await?;
        let m = bench_tier::scrape(url).await?;
        let archived = m
            .get("sediment_segment_bytes_uploaded_total")
            .copied()
            .unwrap_or(0.0);
        raw_bytes = raw_bytes.max(1);
        println!(
            "archive: upload lag drained {:.2} s after producing ended; segments {:.1} MiB for {:.1} MiB of keys and values produced: {:.1}%",
            took.as_secs_f64(),
            mib(archived),
            mib(raw_bytes as f64),
            100.0 * archived / raw_bytes as f64
        );
    }

    if let Some(url) = &args.catchup_object_store {
        let store = sediment_storage::from_url(url)?;
        // The object server is measured right before and right after the catch-up reads, and
        // they are compared with the mean: its speed drifts between runs on a shared machine.
        let raw = || async {
            let (bytes, secs) = bench_tier::raw_get_throughput(
                &store,
                &topic,
                args.get_range_bytes,
                args.get_concurrency,
            )
            .await?;
            let rate = mib(bytes as f64) / secs;
            println!(
                "object server: {:.1} MiB of segments in {secs:.2} s with {} ranged GETs of {} MiB in flight: {rate:.1} MiB/s",
                mib(bytes as f64),
                args.get_concurrency,
                args.get_range_bytes / (1024 * 1024)
            );
            Ok::<_, anyhow::Error>((bytes, rate))
        };
        let (bytes, before) = raw().await?;
        let mut rates = Vec::new();
        for label in ["catch-up (cold cache)", "catch-up (warm cache)"] {
            let (_, _, secs) =
                consume(&client, &topic, args.partitions, total_records, label).await?;
            rates.push((label, mib(bytes as f64) / secs));
        }
        let (_, after) = raw().await?;
        let server = (before + after) / 2.0;
        for (label, rate) in &rates {
            println!(
                "{label}: segment bytes read at {rate:.1} MiB/s = {:.0}% of the object server's mean rate ({server:.1} MiB/s)",
                100.0 * rate / server
            );
        }
        println!("warm / cold: {:.1}x", rates[1].1 / rates[0].1);
        return Ok(());
    }

    if args.no_consume {
        return Ok(());
    }
    consume(&client, &topic, args.partitions, total_records, "consume").await?;
    Ok(())
}

/// Consumes `total_records` from offset 0 of every partition, one fetch in flight with
/// librdkafka's default limits. Returns (records, bytes, seconds).
async fn consume(
    client: &Client,
    topic: &str,
    partitions: i32,
    total_records: u64,
    label: &'static str,
) -> anyhow::Result<(u64, u64, f64)> {
    let mut next: HashMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    let mut consumed = 0u64;
    let mut consumed_bytes = 0u64;
    let start = Instant::now();
    let mut progress = Progress {
        last: Instant::now(),
        label,
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    while consumed < total_records {
        if Instant::now() > deadline {
            bail!("{label} did not finish: {consumed} of {total_records} records");
        }
        let mut ft = FetchTopic::default();
        ft.topic = TopicName(StrBytes::from_string(topic.to_string()));
        ft.partitions = next
            .iter()
            .map(|(&p, &off)| {
                let mut fp = FetchPartition::default();
                fp.partition = p;
                fp.fetch_offset = off;
                fp.partition_max_bytes = 1024 * 1024;
                fp
            })
            .collect();
        let mut req = FetchRequest::default();
        req.max_wait_ms = 500;
        req.min_bytes = 1;
        req.max_bytes = 50 * 1024 * 1024;
        req.topics = vec![ft];
        let resp = client.send(11, &req).await?;
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    bail!(
                        "fetch of partition {} failed with error code {}",
                        p.partition_index,
                        p.error_code
                    );
                }
                let records = p.records.unwrap_or_default();
                consumed_bytes += records.len() as u64;
                for b in sediment_protocol::batch::spans(&records) {
                    consumed += b.record_count.max(0) as u64;
                    next.insert(p.partition_index, b.end_offset);
                }
            }
        }
        progress.tick(consumed, total_records, consumed_bytes, start);
    }
    let secs = report(label, consumed, consumed_bytes, start);
    Ok((consumed, consumed_bytes, secs))
}

/// What a produce phase did.
struct Produced {
    records: u64,
    /// Key and value bytes sent.
    raw_bytes: u64,
    /// MiB/s of batch bytes.
    rate: f64,
}

struct Phase<'a> {
    client: &'a Client,
    topic: &'a str,
    batches: &'a [Bytes],
    /// Records and key+value bytes of each batch.
    sizes: &'a [(usize, usize)],
    acks: i16,
    args: &'a BenchArgs,
}

impl Phase<'_> {
    /// Produces at least `records` (whole batches, partitions in turn, the distinct batches in
    /// turn), paced at `rate_mib` if positive; prints throughput and latency.
    async fn produce(
        &self,
        records: u64,
        rate_mib: f64,
        label: &'static str,
    ) -> anyhow::Result<Produced> {
        use futures::StreamExt;
        let (acks, args) = (self.acks, self.args);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        // Each request's response is awaited by its own task, so its latency is taken when the
        // response arrives, not when this loop next looks.
        let mut inflight = FuturesUnordered::new();
        let start = Instant::now();
        let mut progress = Progress {
            last: Instant::now(),
            label,
        };
        let mean_batch =
            self.batches.iter().map(Bytes::len).sum::<usize>() as f64 / self.batches.len() as f64;
        let pace = (rate_mib > 0.0).then(|| Duration::from_secs_f64(mib(mean_batch) / rate_mib));
        let version = 9;
        let partitions = args.partitions as usize;
        // One pre-encoded request per (batch, partition), sent under a fresh header each time:
        // the client's CPU is shared with the broker here, so it should spend little.
        let mut bodies = Vec::with_capacity(self.batches.len() * partitions);
        for batch in self.batches {
            for p in 0..args.partitions {
                let mut pd = PartitionProduceData::default();
                pd.index = p;
                pd.records = Some(batch.clone());
                let mut td = TopicProduceData::default();
                td.name = TopicName(StrBytes::from_string(self.topic.to_string()));
                td.partition_data = vec![pd];
                let mut req = ProduceRequest::default();
                req.acks = acks;
                req.timeout_ms = 30_000;
                req.topic_data = vec![td];
                bodies.push(Client::encode_body(version, &req)?);
            }
        }
        type Done =
            Result<(Duration, u64, anyhow::Result<ProduceResponse>), tokio::task::JoinError>;
        let record = |done: Done, hist: &mut Histogram<u64>| -> anyhow::Result<u64> {
            let (latency, count, resp) = done?;
            check_produce(&resp?)?;
            hist.record(latency.as_micros().max(1) as u64)?;
            Ok(count)
        };
        let (mut sent, mut acked, mut bytes, mut raw) = (0u64, 0u64, 0u64, 0u64);
        let mut i = 0usize;
        while sent < records {
            if let Some(p) = pace {
                let due = tokio::time::Instant::from_std(start + p * i as u32);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => break,
                        Some(done) = inflight.next(), if !inflight.is_empty() => {
                            acked += record(done, &mut hist)?;
                        }
                    }
                }
            }
            while inflight.len() >= args.inflight {
                if let Some(done) = inflight.next().await {
                    acked += record(done, &mut hist)?;
                }
            }
            let j = (i / partitions) % self.batches.len();
            let body = bodies[j * partitions + i % partitions].clone();
            let (count, batch_raw) = self.sizes[j];
            sent += count as u64;
            bytes += self.batches[j].len() as u64;
            raw += batch_raw as u64;
            i += 1;
            if acks == 0 {
                self.client
                    .send_oneway_encoded::<ProduceRequest>(version, body)
                    .await?;
                acked += count as u64;
            } else {
                let t0 = Instant::now();
                let rx = self
                    .client
                    .start_encoded::<ProduceRequest>(version, body)
                    .await?;
                inflight.push(tokio::spawn(async move {
                    let r = Client::finish::<ProduceRequest>(version, rx)
                        .await
                        .map_err(anyhow::Error::from);
                    (t0.elapsed(), count as u64, r)
                }));
            }
            progress.tick(acked, records, bytes, start);
        }
        while let Some(done) = inflight.next().await {
            acked += record(done, &mut hist)?;
        }
        let secs = report(label, acked, bytes, start);
        if acks != 0 {
            println!(
                "{label}: latency per request ({:.0} B batches): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                mean_batch,
                hist.value_at_quantile(0.50) as f64 / 1000.0,
                hist.value_at_quantile(0.99) as f64 / 1000.0,
                hist.max() as f64 / 1000.0
            );
        }
        Ok(Produced {
            records: acked,
            raw_bytes: raw,
            rate: mib(bytes as f64) / secs,
        })
    }
}

/// OffsetCommit latency: one group, `partitions` partitions per request, one request at a time.
async fn commit_bench(args: &BenchArgs, partitions: i32) -> anyhow::Result<()> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest};
    let client = args.security.connect(&args.bootstrap).await?;
    let topic = format!(
        "sediment-commit-bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let mut ct = CreatableTopic::default();
    ct.name = TopicName(StrBytes::from_string(topic.clone()));
    ct.num_partitions = partitions;
    ct.replication_factor = -1;
    let mut creq = CreateTopicsRequest::default();
    creq.topics = vec![ct];
    let cresp = client.send(5, &creq).await?;
    if let Some(r) = cresp.topics.first().filter(|r| r.error_code != 0) {
        bail!("creating topic {topic}: error code {}", r.error_code);
    }
    println!(
        "sediment bench: OffsetCommit of {partitions} partitions, {} requests, one at a time",
        args.commits
    );
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut progress = Progress {
        last: Instant::now(),
        label: "offset commits",
    };
    let start = Instant::now();
    for i in 0..args.commits {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.clone()));
        t.partitions = (0..partitions)
            .map(|p| {
                let mut cp = OffsetCommitRequestPartition::default();
                cp.partition_index = p;
                cp.committed_offset = i64::from(i);
                cp.committed_leader_epoch = -1;
                cp
            })
            .collect();
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(StrBytes::from_static_str("sediment-commit-bench"));
        req.generation_id_or_member_epoch = -1;
        req.topics = vec![t];
        let t0 = Instant::now();
        let resp = client.send(8, &req).await?;
        hist.record(t0.elapsed().as_micros().max(1) as u64)?;
        for t in &resp.topics {
            if let Some(p) = t.partitions.iter().find(|p| p.error_code != 0) {
                bail!(
                    "commit of partition {} failed with error code {}",
                    p.partition_index,
                    p.error_code
                );
            }
        }
        progress.tick(u64::from(i) + 1, u64::from(args.commits), 0, start);
    }
    eprintln!();
    println!(
        "offset commit ({partitions} partitions): {:.0} commits/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        f64::from(args.commits) / start.elapsed().as_secs_f64(),
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );
    Ok(())
}
