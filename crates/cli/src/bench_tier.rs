//! The tiered-storage side of `sediment bench`: generated JSON records, the broker's upload lag
//! sampled from its /metrics while producing, and the object server's own ranged-GET throughput
//! for a topic's segments (the yardstick for catch-up reads from the archive).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::records::Compression;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::{Rng, RngCore};
use sediment_protocol::batch::{NewRecord, Producer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACTIONS: &[&str] = &[
    "view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "refund",
    "login",
    "logout",
];
const COUNTRIES: &[&str] = &[
    "DE", "FR", "US", "GB", "JP", "BR", "IN", "NL", "SE", "ES", "IT",
];
const DEVICES: &[&str] = &["mobile", "desktop", "tablet", "tv"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
];

fn pick<'a>(rng: &mut impl Rng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

fn hex(rng: &mut impl Rng, bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One clickstream-like event: ids, a timestamp, enums, numbers and free text, as a JSON
/// object of roughly 350-450 bytes. Every record differs.
pub fn json_record(rng: &mut impl Rng, seq: u64, now_ms: i64) -> String {
    let user = rng.random_range(1..2_000_000u32);
    let ms = now_ms + seq as i64;
    let (secs, milli) = (ms / 1000, ms % 1000);
    format!(
        concat!(
            "{{\"event_id\":\"{}\",\"seq\":{},\"ts\":\"{}.{:03}\",",
            "\"user\":{{\"id\":{},\"name\":\"user_{}\",\"country\":\"{}\"}},",
            "\"action\":\"{}\",\"sku\":\"SKU-{:06}\",\"price\":{}.{:02},\"quantity\":{},",
            "\"session\":\"{}\",\"device\":\"{}\",\"ua\":\"{}\",",
            "\"referrer\":\"https://shop.example.com/c/{}/p/{}?q={}\"}}"
        ),
        hex(rng, 16),
        seq,
        secs,
        milli,
        user,
        user,
        pick(rng, COUNTRIES),
        pick(rng, ACTIONS),
        rng.random_range(0..250_000u32),
        rng.random_range(1..500u32),
        rng.random_range(0..100u32),
        rng.random_range(1..6u32),
        hex(rng, 8),
        pick(rng, DEVICES),
        pick(rng, AGENTS),
        rng.random_range(1..400u32),
        rng.random_range(1..250_000u32),
        hex(rng, 3),
    )
}

/// What records carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// Incompressible random bytes of `--record-size`.
    Random,
    /// Generated JSON events (varied fields; `--record-size` is ignored).
    Json,
}

/// A batch codec on the command line (the benchmark's batches, `sediment produce`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// Records in a generated batch, and their key+value bytes.
pub type BatchSize = (usize, usize);

/// `count` distinct batches of about `batch_bytes` of records each (before compression with
/// `codec`), and the key+value bytes of each.
pub fn batches(
    payload: Payload,
    count: usize,
    batch_bytes: usize,
    record_size: usize,
    codec: Codec,
) -> anyhow::Result<(Vec<Bytes>, Vec<BatchSize>)> {
    let mut rng = rand::rng();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut out = Vec::with_capacity(count);
    let mut sizes = Vec::with_capacity(count);
    let mut seq = 0u64;
    for _ in 0..count {
        let mut records = Vec::new();
        let mut raw = 0usize;
        while raw < batch_bytes.saturating_sub(record_size.min(batch_bytes / 2))
            || records.is_empty()
        {
            let key = Bytes::from(format!("key-{seq}"));
            let value = match payload {
                Payload::Random => {
                    let mut v = vec![0u8; record_size];
                    rng.fill_bytes(&mut v);
                    Bytes::from(v)
                }
                Payload::Json => Bytes::from(json_record(&mut rng, seq, now)),
            };
            raw += key.len() + value.len();
            records.push(NewRecord {
                key: Some(key),
                value: Some(value),
                timestamp: now + seq as i64,
                headers: Vec::new(),
            });
            seq += 1;
        }
        sizes.push((records.len(), raw));
        out.push(
            sediment_protocol::batch::encode(&records, Producer::NONE, codec.compression())
                .map_err(|e| anyhow::anyhow!("encoding batch: {e}"))?,
        );
    }
    Ok((out, sizes))
}

/// Reads a Prometheus text page over plain HTTP/1.0: `name -> value` for unlabelled samples.
pub async fn scrape(url: &str) -> anyhow::Result<HashMap<String, f64>> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// metrics urls are supported"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .with_context(|| format!("connecting to {host}"))?;
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

/// Samples the broker's upload lag every 250 ms until told to stop; returns the samples.
pub struct LagWatch {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<(f64, f64)>>,
}

impl LagWatch {
    pub fn start(url: String) -> Self {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut samples = Vec::new();
            loop {
                if let Ok(m) = scrape(&url).await {
                    if let Some(lag) = m.get("sediment_upload_lag_bytes") {
                        samples.push((start.elapsed().as_secs_f64(), *lag));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = rx.changed() => return samples,
                }
            }
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> Vec<(f64, f64)> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Prints the lag series in brief: max, the mean of each quarter, and the last sample.
pub fn report_lag(samples: &[(f64, f64)]) {
    if samples.is_empty() {
        println!("upload lag: no samples (is --metrics-url right?)");
        return;
    }
    let max = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    let q = samples.len().div_ceil(4);
    let quarters: Vec<String> = samples
        .chunks(q.max(1))
        .map(|c| {
            format!(
                "{:.1}",
                crate::bench::mib(c.iter().map(|s| s.1).sum::<f64>() / c.len() as f64)
            )
        })
        .collect();
    println!(
        "upload lag while producing: max {:.1} MiB, mean per quarter of the run [{}] MiB, last {:.1} MiB ({} samples)",
        crate::bench::mib(max),
        quarters.join(", "),
        crate::bench::mib(samples.last().map_or(0.0, |s| s.1)),
        samples.len()
    );
}

/// Waits until the broker reports no upload lag; returns how long that took.
pub async fn wait_drained(url: &str, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let m = scrape(url).await?;
        if m.get("sediment_upload_lag_bytes").copied().unwrap_or(1.0) == 0.0 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("upload lag did not drain within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The object server's own read throughput for a topic's segments: every object under
/// `<prefix>/topics/<topic>/`, read with ranged GETs of `range` bytes, `concurrency` at once.
/// Returns (bytes, seconds).
pub async fn raw_get_throughput(
    store: &sediment_storage::Store,
    topic: &str,
    range: u64,
    concurrency: usize,
) -> anyhow::Result<(u64, f64)> {
    use futures::{StreamExt, TryStreamExt};
    let prefix = store.prefix.clone().join("topics").join(topic);
    let objects: Vec<_> = store.store.list(Some(&prefix)).try_collect().await?;
    let mut ranges: Vec<(ObjectPath, std::ops::Range<u64>)> = Vec::new();
    for o in &objects {
        let mut at = 0;
        while at < o.size {
            let end = (at + range).min(o.size);
            ranges.push((o.location.clone(), at..end));
            at = end;
        }
    }
    let s: Arc<dyn ObjectStore> = store.store.clone();
    let start = Instant::now();
    let total: u64 = futures::stream::iter(ranges)
        .map(|(path, r)| {
            let s = s.clone();
            async move { s.get_range(&path, r).await.map(|b| b.len() as u64) }
        })
        .buffer_unordered(concurrency.max(1))
        .try_fold(0u64, |a, n| async move { Ok(a + n) })
        .await?;
    Ok((total, start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_are_valid_varied_and_sized_as_documented() {
        let mut rng = rand::rng();
        let a = json_record(&mut rng, 1, 1_700_000_000_000);
        let b = json_record(&mut rng, 2, 1_700_000_000_000);
        assert_ne!(a, b);
        for r in [&a, &b] {
            assert!(r.starts_with("{\"event_id\":\"") && r.ends_with("}"), "{r}");
            assert_eq!(r.matches('{').count(), r.matches('}').count());
            assert!((300..520).contains(&r.len()), "{} bytes: {r}", r.len());
        }
        let (batches, sizes) = batches(Payload::Json, 3, 16 * 1024, 1024, Codec::None).unwrap();
        assert_eq!(batches.len(), 3);
        assert!(sizes.iter().all(|(n, raw)| *n > 10 && *raw >= 8 * 1024));
    }
}
