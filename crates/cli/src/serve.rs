//! `sediment serve`.

use std::sync::Arc;

use anyhow::{bail, Context};
use sediment_broker::cluster::{Cluster, ClusterSettings};
use sediment_broker::{http, server, Broker, BrokerConfig};
use sediment_meta::embedded::EmbeddedMetaStore;
use sediment_meta::etcd::EtcdMetaStore;
use sediment_meta::MetaStore;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::settings::{ServeArgs, Settings};

/// How long a broker that handed its partitions over keeps serving before it stops.
const HAND_OVER_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let s = Settings::resolve(args)?;
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("creating data dir {}", s.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&s.data_dir)
        .with_context(|| format!("resolving data dir {}", s.data_dir.display()))?;
    let listeners = crate::listeners::bind(&s).await?;
    let inter = listeners
        .bound
        .iter()
        .find(|b| b.runtime.listener.name == listeners.inter_broker)
        .map(|b| b.runtime.listener.clone())
        .context("the inter-broker listener is not bound")?;
    let http_listener = TcpListener::bind(&s.http_addr)
        .await
        .with_context(|| format!("binding the HTTP listener to {}", s.http_addr))?;

    let mut config = BrokerConfig::new(&data_dir);
    config.broker_id = s.broker_id;
    config.advertised_host = inter.advertised_host.clone();
    config.advertised_port = inter.advertised_port;
    config.inter_broker_listener = inter.name.clone();
    config.listeners = listeners
        .bound
        .iter()
        .map(|b| b.runtime.listener.clone())
        .collect();
    config.peer_transport = listeners.peer_transport.clone();
    config.peer_tls = listeners.peer_tls.clone();
    config.authorizer = s.authorizer.clone();
    config.max_request_bytes = s.max_request_bytes;
    config.message_max_bytes = s.message_max_bytes;
    config.auto_create_topics = s.auto_create_topics;
    config.num_partitions = s.num_partitions;
    config.fetch_max_bytes = s.fetch_max_bytes;
    config.max_connections = s.max_connections;
    config.max_pending_bytes = s.max_pending_bytes;
    config.wal_segment_bytes = s.wal_segment_bytes;
    config.segment_bytes = s.segment_bytes;
    config.segment_interval = std::time::Duration::from_millis(s.segment_ms);
    config.offsets_retention = std::time::Duration::from_secs(s.offsets_retention_minutes * 60);
    config.cache_memory_bytes = s.cache_memory_bytes;
    config.cache_disk_bytes = s.cache_disk_bytes;
    config.cache_dir = s.cache_dir.clone();
    config.readahead_chunks = s.readahead_chunks;
    config.wal_budget_bytes = s.wal_budget_bytes;
    config.wal_retain_bytes = s.wal_retain_bytes;
    config.retention_ms = s.retention_ms;
    config.retention_bytes = s.retention_bytes;
    config.retention_check_interval = std::time::Duration::from_millis(s.retention_check_ms);
    config.multipart_part_bytes = s.multipart_part_bytes;
    config.max_decompressed_batch_bytes = s.max_decompressed_batch_bytes;
    config.groups.initial_rebalance_delay =
        std::time::Duration::from_millis(s.group_initial_rebalance_delay_ms);

    let object_url = s
        .object_store
        .clone()
        .unwrap_or_else(|| format!("file://{}", data_dir.join("objects").display()));
    let store = sediment_storage::from_url_with(&object_url, &s.s3)?;
    let (meta, cluster): (Arc<dyn MetaStore>, _) = if s.etcd_endpoints.is_empty() {
        // Opening replays the metadata logs from disk: off the async workers.
        let meta_dir = data_dir.join("meta");
        let meta = tokio::task::spawn_blocking(move || EmbeddedMetaStore::open(meta_dir))
            .await
            .context("opening the metadata store")??;
        (Arc::new(meta), None)
    } else {
        if object_url.starts_with("file://") {
            warn!(
                object_store = %object_url,
                "cluster mode with a file:// object store: every broker must see the same \
                 directory, so this only works with all brokers on one machine"
            );
        }
        let etcd =
            EtcdMetaStore::connect_with(&s.etcd_endpoints, &s.etcd_prefix, etcd_options(&s)?)
                .await
                .with_context(|| format!("connecting to etcd at {}", s.etcd_endpoints.join(",")))?;
        // Each partition's older segment entries live in manifest objects beside the segments,
        // so etcd's share stays bounded (ADR 0024).
        let etcd = Arc::new(etcd.with_manifests(store.store.clone(), store.prefix.clone()));
        let settings = ClusterSettings {
            session_timeout: std::time::Duration::from_millis(s.broker_session_timeout_ms),
            rack: s.rack.clone(),
            default_replication_factor: s.default_replication_factor,
            replica_lag_time_max: std::time::Duration::from_millis(s.replica_lag_time_max_ms),
            replica_replace_after: (s.replica_replace_after_ms > 0)
                .then(|| std::time::Duration::from_millis(s.replica_replace_after_ms)),
        };
        let cluster = Arc::new(Cluster::new(etcd.clone(), settings));
        (etcd as Arc<dyn MetaStore>, Some(cluster))
    };
    let clustered = cluster.is_some();
    let broker = Broker::open_in(config, meta, cluster, store).await?;
    if clustered {
        broker
            .join_cluster()
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    }

    let described: Vec<String> = listeners
        .bound
        .iter()
        .map(|b| {
            let l = &b.runtime.listener;
            let local = b
                .socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            format!(
                "{}://{local} ({}, advertised {}:{})",
                l.name,
                l.protocol.name(),
                l.advertised_host,
                l.advertised_port
            )
        })
        .collect();
    info!(
        listeners = %described.join(", "),
        inter_broker = %inter.name,
        http = %http_listener.local_addr()?,
        data_dir = %data_dir.display(),
        object_store = %object_url,
        "sediment is serving"
    );
    let http_task = tokio::spawn(http::serve(broker.clone(), http_listener));
    let mut kafka_tasks = Vec::new();
    for b in listeners.bound {
        kafka_tasks.push(tokio::spawn(server::run_listener(
            broker.clone(),
            b.socket,
            b.runtime,
        )));
    }
    let tick = std::time::Duration::from_millis(s.segment_ms.clamp(50, 1000));
    broker.start_background(tick);

    wait_for_signal().await?;
    info!("shutting down: draining connections");
    // Cluster mode: other in-sync replicas take over this broker's partitions first; then,
    // for a moment, this broker goes on answering (NOT_LEADER_OR_FOLLOWER to produce, the new
    // leaders in Metadata) so clients move over on open connections instead of finding them
    // closed and backing off.
    if broker.hand_over_leadership().await > 0 {
        tokio::time::sleep(HAND_OVER_GRACE).await;
    }
    broker.begin_shutdown();
    broker.leave_cluster().await;
    for t in kafka_tasks {
        let _ = t.await;
    }
    let _ = http_task.await;
    // The uploader finishes the segment it is writing (or aborts it) before the WAL closes.
    broker.stop_background().await;
    broker.close_wal();
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The etcd connection's user and TLS settings, read from the files the settings name.
fn etcd_options(s: &Settings) -> anyhow::Result<sediment_meta::etcd::EtcdOptions> {
    use sediment_meta::etcd::{EtcdOptions, EtcdTls, EtcdUser};
    let read = |flag: &str, p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("{flag} {}", p.display()))
    };
    let mut o = EtcdOptions::default();
    if let (Some(name), Some(file)) = (&s.etcd_username, &s.etcd_password_file) {
        let text = String::from_utf8(read("--etcd-password-file", file)?)
            .with_context(|| format!("--etcd-password-file {}: not UTF-8", file.display()))?;
        let password = text.lines().next().unwrap_or("").to_string();
        if password.is_empty() {
            bail!("--etcd-password-file {}: empty", file.display());
        }
        o.user = Some(EtcdUser {
            name: name.clone(),
            password,
        });
    }
    if s.etcd_ca_file.is_some() || s.etcd_cert_file.is_some() {
        let mut tls = EtcdTls::default();
        if let Some(p) = &s.etcd_ca_file {
            tls.ca_pem = Some(read("--etcd-ca-file", p)?);
        }
        if let (Some(c), Some(k)) = (&s.etcd_cert_file, &s.etcd_key_file) {
            tls.client_cert_pem = Some(read("--etcd-cert-file", c)?);
            tls.client_key_pem = Some(read("--etcd-key-file", k)?);
        }
        o.tls = Some(tls);
    }
    Ok(o)
}
