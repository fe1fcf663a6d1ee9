//! `EtcdMetaStore` against a real etcd: the conformance suite, brokers racing on the same
//! change, restarts, etcd down, and what segments cost in etcd.
//!
//! Each test starts its own `etcd` (Debian's `etcd-server` package; `tests/run.sh` installs
//! it) on free loopback ports with a temporary data directory. Without etcd these tests fail:
//! they never skip.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sediment_meta::etcd::{EtcdMetaStore, EtcdOptions};
use sediment_meta::{CommittedOffset, MetaError, MetaStore, OffsetEntry, SegmentEntry};
use tokio::sync::Barrier;
use uuid::Uuid;

/// One etcd process, killed on drop. Its data directory outlives `stop` so `start` can bring
/// the same member back.
struct Etcd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

const INSTALL_ETCD: &str = "these tests run against a real etcd. Install it with \
    `apt-get install etcd-server` (Debian; tests/run.sh does this), or set ETCD_BIN to an etcd \
    binary";

fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ETCD_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "ETCD_BIN={} is not a file: {INSTALL_ETCD}",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/bin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("etcd is not on PATH: {INSTALL_ETCD}"))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

impl Etcd {
    async fn start() -> Etcd {
        let mut last = String::new();
        // A port picked free can be taken before etcd binds it: try fresh ones a few times.
        for _ in 0..3 {
            let mut etcd = Etcd {
                bin: etcd_binary(),
                dir: tempfile::tempdir().expect("temp dir"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            };
            if etcd.client_port == etcd.peer_port {
                continue;
            }
            match etcd.try_start().await {
                Ok(()) => return etcd,
                Err(e) => last = e,
            }
        }
        panic!("etcd did not start: {last}");
    }

    fn endpoints(&self) -> Vec<String> {
        vec![format!("http://127.0.0.1:{}", self.client_port)]
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Starts the member (again, after `stop`) and waits until it answers.
    async fn try_start(&mut self) -> Result<(), String> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .arg("--name")
            .arg("t")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("t={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("etcd exited ({status}):\n{}", self.log_tail()));
            }
            if self.answers().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "etcd did not answer within 30s:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start_again(&mut self) {
        if let Err(e) = self.try_start().await {
            panic!("etcd did not restart: {e}");
        }
    }

    async fn answers(&self) -> bool {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1));
        let attempt = async {
            let mut client = etcd_client::Client::connect(self.endpoints(), Some(options))
                .await
                .ok()?;
            client.get("probe", None).await.ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), attempt).await,
            Ok(Some(_))
        )
    }

    async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None)
            .await
            .expect("etcd client")
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process: a stopped etcd keeps its connections
    /// open and answers nothing, as a hung or partitioned one does.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("etcd is running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// Kills the process; the data directory stays.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn store(etcd: &Etcd, prefix: &str) -> EtcdMetaStore {
    EtcdMetaStore::connect(&etcd.endpoints(), prefix)
        .await
        .expect("connect to etcd")
}

fn seg(base: i64, end: i64, epoch: i32) -> SegmentEntry {
    SegmentEntry {
        base_offset: base,
        end_offset: end,
        min_timestamp: base,
        max_timestamp: end,
        size_bytes: 1000,
        leader_epoch: epoch,
        path: format!("topics/t/partition=0/{base:020}-{epoch}.parquet"),
    }
}

fn offset(topic: &str, partition: i32, at: i64) -> OffsetEntry {
    OffsetEntry {
        topic: topic.into(),
        partition,
        committed: CommittedOffset {
            offset: at,
            leader_epoch: 1,
            metadata: None,
            commit_timestamp_ms: 1_700_000_000_000,
        },
    }
}

#[tokio::test]
async fn the_conformance_suite_passes_and_prefixes_are_separate_clusters() {
    let etcd = Etcd::start().await;
    // Two clusters in one etcd, one prefix the start of the other's, run side by side.
    let a = store(&etcd, "/sediment").await;
    let b = store(&etcd, "/sediment-b/").await;
    tokio::join!(
        sediment_meta::conformance::run(&a),
        sediment_meta::conformance::run(&b)
    );
    assert_ne!(a.cluster_id().await.unwrap(), b.cluster_id().await.unwrap());

    // What the suite left is durable and seen by a new connection, under the same id.
    let again = store(&etcd, "/sediment").await;
    assert_eq!(
        again.cluster_id().await.unwrap(),
        a.cluster_id().await.unwrap()
    );
    assert!(again.topic("conformance-kept").await.unwrap().is_some());
    assert_eq!(
        again.user_credential("bob", "SCRAM-SHA-256").await.unwrap(),
        Some("plain-bob".to_string())
    );
    assert_eq!(again.topics().await.unwrap(), a.topics().await.unwrap());

    // An unused prefix is an empty cluster.
    let empty = store(&etcd, "/other").await;
    assert_eq!(empty.topics().await.unwrap(), vec![]);
    assert_eq!(empty.offset_groups().await.unwrap(), Vec::<String>::new());
}

/// A store that folds segments into manifests in `objects` after `fold_at` keys.
async fn folding_store(
    etcd: &Etcd,
    prefix: &str,
    objects: Arc<dyn object_store::ObjectStore>,
    fold_at: usize,
) -> EtcdMetaStore {
    let options = EtcdOptions {
        fold_segments_at: fold_at,
        ..EtcdOptions::default()
    };
    EtcdMetaStore::connect_with(&etcd.endpoints(), prefix, options)
        .await
        .expect("connect to etcd")
        .with_manifests(objects, object_store::path::Path::from("archive"))
}

async fn manifest_count(objects: &Arc<dyn object_store::ObjectStore>) -> usize {
    use futures::StreamExt;
    objects
        .list(Some(&object_store::path::Path::from("archive/_index")))
        .collect::<Vec<_>>()
        .await
        .len()
}

#[tokio::test]
async fn with_manifests_the_conformance_suite_passes_folding_every_three_segments() {
    let etcd = Etcd::start().await;
    let objects: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::memory::InMemory::new());
    let s = folding_store(&etcd, "/folding", objects.clone(), 3).await;
    sediment_meta::conformance::run(&s).await;
    assert!(
        manifest_count(&objects).await > 0,
        "the suite's segments were never folded into a manifest"
    );
}

#[tokio::test]
async fn a_partitions_etcd_keys_stay_bounded_as_segments_accumulate() {
    let etcd = Etcd::start().await;
    let objects: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::memory::InMemory::new());
    let s = folding_store(&etcd, "/bounded", objects.clone(), 32).await;
    let mut raw = etcd.client().await;
    let topic = s.create_topic("orders", 1, BTreeMap::new()).await.unwrap();
    let n = 1000i64;
    let mut max_keys = 0usize;
    let mut max_bytes = 0usize;
    for i in 0..n {
        let base = i * 60_000;
        let entry = SegmentEntry {
            base_offset: base,
            end_offset: base + 60_000,
            min_timestamp: 1_767_225_600_000 + i * 60_000,
            max_timestamp: 1_767_225_600_000 + i * 60_000 + 59_999,
            size_bytes: 8_388_608,
            leader_epoch: 7,
            path: format!("topics/orders/partition=0/{base:020}-7.parquet"),
        };
        s.add_segment(topic.id, 0, entry).await.unwrap();
        let kvs = raw
            .get(
                format!("/bounded/segments/{}/0/", topic.id),
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .unwrap();
        let bytes: usize = kvs
            .kvs()
            .iter()
            .map(|kv| kv.key().len() + kv.value().len())
            .sum();
        max_keys = max_keys.max(kvs.kvs().len());
        max_bytes = max_bytes.max(bytes);
    }
    println!(
        "{n} one-minute segments of one partition: at most {max_keys} etcd keys and {max_bytes} B          of keys and values at any time (fold at 32)"
    );
    assert!(max_keys <= 33, "{max_keys} keys: not bounded by the fold");
    // Every segment is still in the index, in order, after 31 folds.
    let index = s.partition_index(topic.id, 0).await.unwrap();
    assert_eq!(index.segments.len() as i64, n);
    assert!(index
        .segments
        .windows(2)
        .all(|w| w[0].end_offset == w[1].base_offset));
    assert_eq!(index.end_offset, n * 60_000);
    // Replaced manifests are deleted: one remains.
    assert_eq!(manifest_count(&objects).await, 1);
    // Retention across folded and unfolded segments: exactly the ones passed, once each.
    let removed = s
        .advance_log_start(topic.id, 0, 500 * 60_000)
        .await
        .unwrap();
    assert_eq!(removed.len(), 500);
    assert_eq!(removed[0].base_offset, 0);
    assert_eq!(removed[499].end_offset, 500 * 60_000);
    assert!(s
        .advance_log_start(topic.id, 0, 500 * 60_000)
        .await
        .unwrap()
        .is_empty());
    let index = s.partition_index(topic.id, 0).await.unwrap();
    assert_eq!(index.segments.len(), 500);
    assert_eq!(index.segments[0].base_offset, 500 * 60_000);
    let removed = s.advance_log_start(topic.id, 0, n * 60_000).await.unwrap();
    assert_eq!(removed.len(), 500, "the rest, folded and not");
    assert!(s
        .partition_index(topic.id, 0)
        .await
        .unwrap()
        .segments
        .is_empty());
    // A second broker's store reads the same index through the manifest.
    let other = folding_store(&etcd, "/bounded", objects.clone(), 32).await;
    assert_eq!(
        other.partition_index(topic.id, 0).await.unwrap(),
        s.partition_index(topic.id, 0).await.unwrap()
    );
    // A deleted topic takes its manifests with it.
    s.delete_topic("orders").await.unwrap();
    assert_eq!(manifest_count(&objects).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_segment_commits_across_folds_commit_each_segment_once() {
    let etcd = Etcd::start().await;
    let objects: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::memory::InMemory::new());
    let a = folding_store(&etcd, "/race-fold", objects.clone(), 4).await;
    let b = folding_store(&etcd, "/race-fold", objects.clone(), 4).await;
    let topic = a.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    for i in 0..40i64 {
        let entry = seg(i * 10, i * 10 + 10, 1);
        let (x, y) = tokio::join!(
            a.add_segment(topic.id, 0, entry.clone()),
            b.add_segment(topic.id, 0, entry)
        );
        assert!(x.is_ok() != y.is_ok(), "round {i}: {x:?} / {y:?}");
    }
    let index = b.partition_index(topic.id, 0).await.unwrap();
    assert_eq!(index.segments.len(), 40);
    assert!(index
        .segments
        .windows(2)
        .all(|w| w[0].end_offset == w[1].base_offset));
    assert_eq!(
        manifest_count(&objects).await,
        1,
        "losers' manifests are removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_segment_commits_from_two_brokers_commit_exactly_one() {
    let etcd = Etcd::start().await;
    let brokers = [store(&etcd, "/s").await, store(&etcd, "/s").await];
    let topic = Uuid::new_v4();
    brokers[0]
        .add_segment(topic, 0, seg(0, 100, 2))
        .await
        .unwrap();

    // 20 uploads of the same next segment (different ends and epochs), from both brokers at once.
    let start = Arc::new(Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = brokers[i % 2].clone();
        let start = start.clone();
        let entry = seg(100, 200 + i as i64, 2 + (i % 3) as i32);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let result = store.add_segment(topic, 0, entry.clone()).await;
            (entry, result)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let winners: Vec<&SegmentEntry> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(e, _)| e)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = winners[0].clone();
    for (entry, result) in &results {
        match result {
            Ok(()) => {}
            Err(MetaError::Fenced(_)) => assert!(entry.leader_epoch < winner.leader_epoch),
            Err(MetaError::Invalid(_)) => assert!(entry.leader_epoch >= winner.leader_epoch),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    for broker in &brokers {
        let index = broker.partition_index(topic, 0).await.unwrap();
        assert_eq!(index.segments, vec![seg(0, 100, 2), winner.clone()]);
        assert_eq!(index.end_offset, winner.end_offset);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_producer_id_allocations_hand_out_disjoint_ranges() {
    let etcd = Etcd::start().await;
    let brokers = [store(&etcd, "/s").await, store(&etcd, "/s").await];
    let tasks_n = 16;
    let start = Arc::new(Barrier::new(tasks_n));
    let mut tasks = Vec::new();
    for i in 0..tasks_n {
        let store = brokers[i % 2].clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut got = Vec::new();
            for j in 0..8 {
                let count = ((i + j) % 7 + 1) as i64 * 10;
                got.push((store.allocate_producer_ids(count).await.unwrap(), count));
            }
            got
        }));
    }
    let mut ranges = Vec::new();
    for t in tasks {
        ranges.extend(t.await.unwrap());
    }
    ranges.sort();
    assert_eq!(ranges.len(), tasks_n * 8);
    for pair in ranges.windows(2) {
        let ((a, n), (b, _)) = (pair[0], pair[1]);
        assert!(a + n <= b, "ranges {a}+{n} and {b} overlap");
    }
    let (last, n) = ranges[ranges.len() - 1];
    assert!(brokers[1].allocate_producer_ids(1).await.unwrap() >= last + n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_topic_creation_has_one_winner() {
    let etcd = Etcd::start().await;
    let brokers = [store(&etcd, "/s").await, store(&etcd, "/s").await];
    let start = Arc::new(Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = brokers[i % 2].clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store
                .create_topic("raced", i as i32 + 1, BTreeMap::new())
                .await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(topic) => won.push(topic),
            Err(e) => assert_eq!(e, MetaError::AlreadyExists("raced".into())),
        }
    }
    assert_eq!(won.len(), 1);
    for broker in &brokers {
        assert_eq!(broker.topic("raced").await.unwrap().as_ref(), Some(&won[0]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_offset_commits_sharing_a_key_lose_nothing() {
    let etcd = Etcd::start().await;
    let brokers = [store(&etcd, "/s").await, store(&etcd, "/s").await];
    // 32 members each committing their own partition of one topic: all in one offsets key,
    // so every commit is a read-merge-compare that must not drop the others'.
    let start = Arc::new(Barrier::new(32));
    let mut tasks = Vec::new();
    for p in 0..32 {
        let store = brokers[p as usize % 2].clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for round in 0..3 {
                store
                    .commit_offsets("g", vec![offset("t", p, i64::from(p) * 10 + round)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want: Vec<OffsetEntry> = (0..32)
        .map(|p| offset("t", p, i64::from(p) * 10 + 2))
        .collect();
    assert_eq!(brokers[0].committed_offsets("g").await.unwrap(), want);
    assert_eq!(brokers[1].committed_offsets("g").await.unwrap(), want);
}

#[tokio::test]
async fn offset_commits_up_to_a_transaction_are_atomic_and_larger_ones_refused_whole() {
    let etcd = Etcd::start().await;
    let s = store(&etcd, "/s").await;
    // 4,096 partitions of one topic fill 128 keys: one transaction.
    let big: Vec<OffsetEntry> = (0..4096).map(|p| offset("wide", p, 7)).collect();
    s.commit_offsets("g", big.clone()).await.unwrap();
    assert_eq!(s.committed_offsets("g").await.unwrap(), big);
    // One more key than a transaction holds: refused, and nothing of it stored.
    let mut too_big: Vec<OffsetEntry> = (0..129)
        .map(|t| offset(&format!("t{t:03}"), 0, 1))
        .collect();
    too_big.push(offset("wide", 0, 8));
    assert!(matches!(
        s.commit_offsets("g", too_big).await,
        Err(MetaError::Invalid(_))
    ));
    assert_eq!(s.committed_offsets("g").await.unwrap(), big);

    // Deleting some partitions rewrites their keys; deleting all of a key's removes it.
    s.delete_offsets("g", (0..32).map(|p| ("wide".to_string(), p)).collect())
        .await
        .unwrap();
    s.delete_offsets("g", vec![("wide".into(), 40), ("absent".into(), 3)])
        .await
        .unwrap();
    let left = s.committed_offsets("g").await.unwrap();
    assert_eq!(left.len(), 4096 - 33);
    assert_eq!(left[0].partition, 32);
    assert!(left.iter().all(|e| e.partition != 40));
}

#[tokio::test]
async fn long_listings_are_read_in_pages_and_names_are_escaped() {
    let etcd = Etcd::start().await;
    let s = store(&etcd, "/s").await;
    // 600 offsets keys in one group (more than a page), beside groups whose names sort
    // right around its keys and a group with a slash in its name.
    for chunk in 0..5 {
        let entries: Vec<OffsetEntry> = (0..120)
            .map(|t| offset(&format!("topic{:03}", chunk * 120 + t), 0, 1))
            .collect();
        s.commit_offsets("g", entries).await.unwrap();
    }
    for group in ["g-1", "g0", "h", "g/0", "", "ü"] {
        s.commit_offsets(group, vec![offset("t/x", 3, 9)])
            .await
            .unwrap();
    }
    assert_eq!(
        s.offset_groups().await.unwrap(),
        vec!["", "g", "g-1", "g/0", "g0", "h", "ü"]
    );
    assert_eq!(s.committed_offsets("g").await.unwrap().len(), 600);
    assert_eq!(
        s.committed_offsets("g/0").await.unwrap(),
        vec![offset("t/x", 3, 9)]
    );
    s.delete_group_offsets("g").await.unwrap();
    assert_eq!(s.committed_offsets("g").await.unwrap(), vec![]);
    assert_eq!(
        s.committed_offsets("g/0").await.unwrap(),
        vec![offset("t/x", 3, 9)],
        "a group's deletion stays inside its escaped name"
    );

    // A partition index longer than a page.
    let topic = Uuid::new_v4();
    for i in 0..700 {
        s.add_segment(topic, 0, seg(i * 10, i * 10 + 10, 1))
            .await
            .unwrap();
    }
    let index = s.partition_index(topic, 0).await.unwrap();
    assert_eq!(index.segments.len(), 700);
    assert!(index
        .segments
        .windows(2)
        .all(|w| w[0].end_offset == w[1].base_offset));
    let removed = s.advance_log_start(topic, 0, 6005).await.unwrap();
    assert_eq!(removed.len(), 600);
    assert_eq!(removed.last().unwrap().end_offset, 6000);
    let index = s.partition_index(topic, 0).await.unwrap();
    assert_eq!(
        (
            index.segments.len(),
            index.log_start_offset,
            index.end_offset
        ),
        (100, 6005, 7000)
    );
}

#[tokio::test]
async fn undecodable_values_name_their_key_and_newer_layouts_are_refused() {
    let etcd = Etcd::start().await;
    let s = store(&etcd, "/s").await;
    let mut raw = etcd.client().await;
    raw.put("/s/topics/broken", "{not json", None)
        .await
        .unwrap();
    match s.topic("broken").await {
        Err(MetaError::Unavailable(m)) => assert!(m.contains("/s/topics/broken"), "{m}"),
        other => panic!("expected an error naming the key, got {other:?}"),
    }
    raw.put("/s/producer_ids", "many", None).await.unwrap();
    match s.allocate_producer_ids(1).await {
        Err(MetaError::Unavailable(m)) => assert!(m.contains("/s/producer_ids"), "{m}"),
        other => panic!("expected an error naming the key, got {other:?}"),
    }

    assert!(matches!(
        EtcdMetaStore::connect(&["http://no such host:1".to_string()], "/s").await,
        Err(MetaError::Invalid(_))
    ));
    assert!(matches!(
        EtcdMetaStore::connect(&[], "/s").await,
        Err(MetaError::Invalid(_))
    ));

    raw.put("/new/cluster_id", "x", None).await.unwrap();
    raw.put("/new/layout", "2", None).await.unwrap();
    assert!(matches!(
        EtcdMetaStore::connect(&etcd.endpoints(), "/new").await,
        Err(MetaError::Invalid(_))
    ));
}

#[tokio::test]
async fn everything_survives_an_etcd_restart() {
    let mut etcd = Etcd::start().await;
    let s = store(&etcd, "/s").await;
    let topic = s
        .create_topic("kept", 2, BTreeMap::from([("a".into(), "b".into())]))
        .await
        .unwrap();
    s.commit_offsets("g", vec![offset("kept", 1, 5)])
        .await
        .unwrap();
    s.add_segment(topic.id, 1, seg(0, 10, 3)).await.unwrap();
    let first = s.allocate_producer_ids(100).await.unwrap();
    let cluster_id = s.cluster_id().await.unwrap();

    etcd.stop();
    assert!(matches!(
        s.topic("kept").await,
        Err(MetaError::Unavailable(_))
    ));
    etcd.start_again().await;

    // The same store reconnects by itself...
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        match s.topic("kept").await {
            Ok(t) => break t,
            Err(MetaError::Unavailable(e)) if Instant::now() < deadline => {
                eprintln!("waiting for the old connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the store did not come back: {e}"),
        }
    };
    assert_eq!(seen, Some(topic.clone()));
    // ...and a new one sees everything.
    let fresh = store(&etcd, "/s").await;
    for st in [&s, &fresh] {
        assert_eq!(st.cluster_id().await.unwrap(), cluster_id);
        assert_eq!(st.topics().await.unwrap(), vec![topic.clone()]);
        assert_eq!(
            st.committed_offsets("g").await.unwrap(),
            vec![offset("kept", 1, 5)]
        );
        assert_eq!(
            st.partition_index(topic.id, 1).await.unwrap().segments,
            vec![seg(0, 10, 3)]
        );
        assert!(matches!(
            st.add_segment(topic.id, 1, seg(10, 20, 2)).await,
            Err(MetaError::Fenced(_))
        ));
    }
    assert!(fresh.allocate_producer_ids(1).await.unwrap() >= first + 100);
}

#[tokio::test]
async fn calls_fail_as_unavailable_within_seconds_when_etcd_is_down() {
    let mut etcd = Etcd::start().await;
    let s = store(&etcd, "/s").await;
    let topic = s.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    etcd.stop();
    // Default options: each request is bounded by a 3 s timeout.
    let bound = Duration::from_secs(8);
    macro_rules! unavailable {
        ($call:expr) => {{
            let started = Instant::now();
            let result = $call.await;
            let took = started.elapsed();
            assert!(
                matches!(result, Err(MetaError::Unavailable(_))),
                "{}: {result:?}",
                stringify!($call)
            );
            assert!(took < bound, "{} took {took:?}", stringify!($call));
        }};
    }
    unavailable!(s.topic("t"));
    unavailable!(s.topics());
    unavailable!(s.create_topic("u", 1, BTreeMap::new()));
    unavailable!(s.delete_topic("t"));
    unavailable!(s.commit_offsets("g", vec![offset("t", 0, 1)]));
    unavailable!(s.committed_offsets("g"));
    unavailable!(s.offset_groups());
    unavailable!(s.allocate_producer_ids(1));
    unavailable!(s.add_segment(topic.id, 0, seg(0, 1, 1)));
    unavailable!(s.partition_index(topic.id, 0));
    unavailable!(s.advance_log_start(topic.id, 0, 1));
    unavailable!(EtcdMetaStore::connect(&etcd.endpoints(), "/s"));

    // Shorter timeouts are honoured too.
    let options = EtcdOptions {
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(500),
        ..EtcdOptions::default()
    };
    let started = Instant::now();
    let result = EtcdMetaStore::connect_with(&etcd.endpoints(), "/s", options).await;
    assert!(matches!(result, Err(MetaError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn calls_time_out_as_unavailable_when_etcd_hangs() {
    let etcd = Etcd::start().await;
    let s = store(&etcd, "/s").await;
    let topic = s.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    etcd.signal("STOP");
    // Each request is bounded by the 3 s request timeout; a change makes two.
    let bound = Duration::from_secs(8);
    let started = Instant::now();
    let read = s.topic("t").await;
    let read_took = started.elapsed();
    let started = Instant::now();
    let write = s.add_segment(topic.id, 0, seg(0, 1, 1)).await;
    let write_took = started.elapsed();
    let started = Instant::now();
    let connect = EtcdMetaStore::connect(&etcd.endpoints(), "/s").await;
    let connect_took = started.elapsed();
    etcd.signal("CONT");
    assert!(matches!(read, Err(MetaError::Unavailable(_))), "{read:?}");
    assert!(matches!(write, Err(MetaError::Unavailable(_))), "{write:?}");
    assert!(
        matches!(connect, Err(MetaError::Unavailable(_))),
        "{connect:?}"
    );
    for took in [read_took, write_took, connect_took] {
        assert!(took < bound, "a call took {took:?} against a hung etcd");
    }
    // Once etcd answers again, so does the store.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match s.topic("t").await {
            Ok(t) => break assert_eq!(t, Some(topic.clone())),
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for etcd to answer again: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the store did not recover: {e}"),
        }
    }
    s.add_segment(topic.id, 0, seg(0, 1, 1)).await.unwrap();
}

/// What segments cost in etcd's database, and that retention gives the space back. Prints
/// the numbers ADR 0019 quotes.
#[tokio::test]
async fn segment_index_cost_in_etcd_is_measured_and_bounded_by_retention() {
    let etcd = Etcd::start().await;
    let s = store(&etcd, "/sediment").await;
    let mut raw = etcd.client().await;
    let topic = s.create_topic("orders", 4, BTreeMap::new()).await.unwrap();
    let compact_all = |mut raw: etcd_client::Client| async move {
        let rev = raw
            .get("/sediment/cluster_id", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        raw.compact(
            rev,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
        raw.status().await.unwrap().raft_used_db_size()
    };
    let before = compact_all(raw.clone()).await;

    // Realistic offsets: the archive of each partition starts at 10^9. Raising the log start
    // there and committing a segment that ends exactly at it stores no segment, only the end.
    let origin = 1_000_000_000i64;
    let per_partition = 500i64;
    let mut tasks = Vec::new();
    for p in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.advance_log_start(topic.id, p, origin).await.unwrap();
            s.add_segment(topic.id, p, seg(0, origin, 7)).await.unwrap();
            for i in 0..per_partition {
                let base = origin + i * 60_000;
                let entry = SegmentEntry {
                    base_offset: base,
                    end_offset: base + 60_000,
                    min_timestamp: 1_767_225_600_000 + i * 60_000,
                    max_timestamp: 1_767_225_600_000 + i * 60_000 + 59_999,
                    size_bytes: 8_388_608,
                    leader_epoch: 7,
                    path: format!("topics/orders/partition={p}/{base:020}-7.parquet"),
                };
                s.add_segment(topic.id, p, entry).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = 4 * per_partition;
    let used = raw.status().await.unwrap().raft_used_db_size();
    let compacted = compact_all(raw.clone()).await;
    println!(
        "etcd db in use per segment: {:.0} B with history, {:.0} B after compaction \
         ({n} segments, {before} B before)",
        (used - before) as f64 / n as f64,
        (compacted - before) as f64 / n as f64
    );
    assert!(
        (compacted - before) as f64 / (n as f64) < 1024.0,
        "a segment costs more than 1 KiB"
    );

    // Retention removes the entries and, once etcd compacts, their space.
    for p in 0..4 {
        let removed = s.advance_log_start(topic.id, p, i64::MAX).await.unwrap();
        assert_eq!(removed.len() as i64, per_partition);
    }
    let after = compact_all(raw).await;
    println!("etcd db in use after retention removed every segment: {after} B (was {compacted} B)");
    assert!(after < before + (compacted - before) / 4);
}

// ------------------------------------------------------------------ cluster metadata

use sediment_meta::cluster::{BrokerRegistration, ClusterEvent, ClusterMeta, PartitionState};

fn registration(id: i32) -> BrokerRegistration {
    BrokerRegistration {
        broker_id: id,
        host: "127.0.0.1".into(),
        port: 9000 + id,
        rack: Some(format!("rack-{}", id % 2)),
        incarnation: Uuid::new_v4(),
        listeners: Vec::new(),
    }
}

async fn live_ids(store: &EtcdMetaStore) -> Vec<i32> {
    store
        .live_brokers()
        .await
        .expect("live brokers")
        .iter()
        .map(|b| b.broker_id)
        .collect()
}

#[tokio::test]
async fn a_broker_id_is_held_by_one_live_process_until_released_or_expired() {
    let etcd = Etcd::start().await;
    let (a, b) = (store(&etcd, "/c").await, store(&etcd, "/c").await);
    let session = Duration::from_secs(1);
    let first = a
        .register_broker(&registration(1), session)
        .await
        .expect("register");
    let two = a
        .register_broker(&registration(2), session)
        .await
        .expect("register 2");
    // Another process with the same id is refused while the first is alive, however long it
    // keeps trying within the session (the lease is renewed in the background).
    for _ in 0..3 {
        assert!(matches!(
            b.register_broker(&registration(1), session).await,
            Err(MetaError::AlreadyExists(_))
        ));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(live_ids(&b).await, vec![1, 2]);
    let listed = b.live_brokers().await.unwrap();
    assert_eq!(listed[0].rack.as_deref(), Some("rack-1"));
    // Released (controlled shutdown): gone at once, and the id is free.
    first.release().await;
    assert_eq!(live_ids(&b).await, vec![2]);
    let again = b
        .register_broker(&registration(1), session)
        .await
        .expect("re-register");
    // Dropped without release (a crash): the registration goes once the lease expires.
    drop(two);
    let start = Instant::now();
    while live_ids(&b).await.contains(&2) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "broker 2's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "it went before its lease ran out"
    );
    assert_eq!(live_ids(&b).await, vec![1]);
    assert!(!*again.lost.borrow());
}

#[tokio::test]
async fn a_broker_cut_off_from_etcd_learns_its_registration_is_lost_within_the_session() {
    let mut etcd = Etcd::start().await;
    let a = store(&etcd, "/c").await;
    let reg = a
        .register_broker(&registration(1), Duration::from_secs(2))
        .await
        .expect("register");
    let mut lost = reg.lost.clone();
    etcd.signal("STOP");
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), lost.wait_for(|l| *l))
        .await
        .expect("the loss was noticed within the session timeout plus renewal slack")
        .expect("lost flag");
    let took = start.elapsed();
    etcd.signal("CONT");
    assert!(
        took <= Duration::from_millis(3500),
        "noticed after {took:?}"
    );
    drop(reg);
    etcd.stop();
}

#[tokio::test]
async fn racing_leader_elections_of_one_partition_have_exactly_one_winner() {
    let etcd = Etcd::start().await;
    let stores = [store(&etcd, "/c").await, store(&etcd, "/c").await];
    let topic = Uuid::new_v4();
    let initial = PartitionState {
        replicas: vec![1, 2, 3],
        leader: 1,
        leader_epoch: 0,
        isr: vec![1, 2, 3],
    };
    stores[0]
        .create_partition_states(topic, vec![(0, initial.clone()), (1, initial.clone())])
        .await
        .expect("create");
    assert!(matches!(
        stores[1]
            .create_partition_states(topic, vec![(1, initial.clone())])
            .await,
        Err(MetaError::AlreadyExists(_))
    ));
    for round in 0..10 {
        let read = stores[0].partition_states(topic).await.unwrap();
        let (_, current) = &read[0];
        let barrier = Arc::new(Barrier::new(2));
        let mut tasks = Vec::new();
        for (i, s) in stores.iter().enumerate() {
            let (s, barrier, current) = (s.clone(), barrier.clone(), current.clone());
            tasks.push(tokio::spawn(async move {
                let mut next = current.value.clone();
                next.leader = 2 + i as i32;
                next.leader_epoch += 1;
                next.isr.retain(|b| *b != current.value.leader);
                barrier.wait().await;
                s.update_partition_state(topic, 0, current.version, next)
                    .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                Err(MetaError::Fenced(_)) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(won, 1, "round {round}: exactly one election wins");
        let after = stores[1].partition_states(topic).await.unwrap();
        assert_eq!(
            after[0].1.value.leader_epoch,
            current.value.leader_epoch + 1
        );
        // A write decided under the old version is fenced.
        assert!(matches!(
            stores[1]
                .update_partition_state(topic, 0, current.version, current.value.clone())
                .await,
            Err(MetaError::Fenced(_))
        ));
    }
    // Epochs never go back, even at the right version.
    let read = stores[0].partition_states(topic).await.unwrap();
    let mut older = read[0].1.value.clone();
    older.leader_epoch -= 1;
    assert!(matches!(
        stores[0]
            .update_partition_state(topic, 0, read[0].1.version, older)
            .await,
        Err(MetaError::Invalid(_))
    ));
    assert_eq!(read[1].1.value, initial, "partition 1 untouched");
    stores[0].delete_partition_states(topic).await.unwrap();
    assert!(stores[1].partition_states(topic).await.unwrap().is_empty());
}

/// Waits for an event matching `want`, skipping others; fails after `within`.
async fn expect_event(
    rx: &mut tokio::sync::mpsc::Receiver<ClusterEvent>,
    within: Duration,
    want: impl Fn(&ClusterEvent) -> bool,
) -> ClusterEvent {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the watch closed"),
            Err(_) => panic!("no matching event within {within:?}"),
        }
    }
}

#[tokio::test]
async fn the_watch_shows_other_brokers_changes_within_a_second_and_resyncs_after_an_outage() {
    let mut etcd = Etcd::start().await;
    let (watcher, writer) = (store(&etcd, "/c").await, store(&etcd, "/c").await);
    let other = store(&etcd, "/other").await;
    let mut rx = watcher.watch().await.expect("watch");
    let second = Duration::from_secs(1);

    let t = writer
        .create_topic("orders", 2, BTreeMap::new())
        .await
        .unwrap();
    other
        .create_topic("elsewhere", 1, BTreeMap::new())
        .await
        .unwrap();
    let e = expect_event(&mut rx, second, |e| {
        matches!(e, ClusterEvent::TopicChanged(_))
    })
    .await;
    assert_eq!(
        e,
        ClusterEvent::TopicChanged("orders".into()),
        "another prefix leaked in"
    );
    let reg = writer
        .register_broker(&registration(7), Duration::from_secs(2))
        .await
        .unwrap();
    let e = expect_event(&mut rx, second, |e| matches!(e, ClusterEvent::BrokerUp(_))).await;
    assert!(matches!(e, ClusterEvent::BrokerUp(b) if b.broker_id == 7));
    let state = PartitionState {
        replicas: vec![7],
        leader: 7,
        leader_epoch: 0,
        isr: vec![7],
    };
    writer
        .create_partition_states(t.id, vec![(1, state.clone())])
        .await
        .unwrap();
    let e = expect_event(&mut rx, second, |e| {
        matches!(e, ClusterEvent::PartitionChanged { .. })
    })
    .await;
    let ClusterEvent::PartitionChanged {
        topic_id,
        partition,
        state: got,
    } = e
    else {
        unreachable!()
    };
    assert_eq!((topic_id, partition, &got.value), (t.id, 1, &state));
    // The version the watch reports is the one compare-and-set takes.
    let mut next = state.clone();
    next.leader_epoch = 1;
    writer
        .update_partition_state(t.id, 1, got.version, next)
        .await
        .expect("the watched version is current");
    writer
        .set_broker_configs(
            "",
            BTreeMap::from([("log.retention.ms".into(), "5".into())]),
        )
        .await
        .unwrap();
    let e = expect_event(&mut rx, second, |e| {
        matches!(e, ClusterEvent::BrokerConfigsChanged(_))
    })
    .await;
    assert_eq!(e, ClusterEvent::BrokerConfigsChanged(String::new()));
    reg.release().await;
    let e = expect_event(&mut rx, second, |e| {
        matches!(e, ClusterEvent::BrokerDown(_))
    })
    .await;
    assert_eq!(e, ClusterEvent::BrokerDown(7));
    writer.delete_topic("orders").await.unwrap();
    let e = expect_event(&mut rx, second, |e| {
        matches!(e, ClusterEvent::TopicDeleted(_))
    })
    .await;
    assert_eq!(e, ClusterEvent::TopicDeleted("orders".into()));

    // etcd restarts: the watch comes back by itself and nothing made meanwhile is missed.
    etcd.stop();
    etcd.start_again().await;
    let writer = store(&etcd, "/c").await;
    writer
        .create_topic("after", 1, BTreeMap::new())
        .await
        .unwrap();
    let e = expect_event(
        &mut rx,
        Duration::from_secs(10),
        |e| matches!(e, ClusterEvent::TopicChanged(n) if n == "after"),
    )
    .await;
    assert_eq!(e, ClusterEvent::TopicChanged("after".into()));
}

#[tokio::test]
async fn a_broker_registers_and_watches_when_its_first_etcd_endpoint_is_dead() {
    let etcd = Etcd::start().await;
    // The first endpoint refuses connections (nothing listens there), as when one member of
    // a three-member etcd is down while a broker starts.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut endpoints = vec![dead];
    endpoints.extend(etcd.endpoints());
    for round in 0..5 {
        let store = EtcdMetaStore::connect(&endpoints, &format!("/dead-first-{round}"))
            .await
            .expect("connect");
        let reg = store
            .register_broker(&registration(1), Duration::from_secs(2))
            .await
            .expect("registering with a dead first endpoint");
        let _events = store
            .watch()
            .await
            .expect("watching with a dead first endpoint");
        assert_eq!(live_ids(&store).await, vec![1]);
        reg.release().await;
    }
}
