//! [`ClusterMeta`] on etcd (ADR 0021). Keys, under the store's prefix `P`:
//! - `P/brokers/<id>`: JSON [`BrokerRegistration`], attached to the broker's lease, so it goes
//!   when the broker stops renewing it;
//! - `P/partitions/<topic id>/<partition>`: JSON [`PartitionState`]; its mod revision is the
//!   version compare-and-set works on.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, EventType, PutOptions, TxnOp, WatchOptions};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::cluster::{
    BrokerRegistration, ClusterEvent, ClusterMeta, PartitionState, Registration, Versioned,
};
use crate::etcd::{decode, encode, etcd_error, unescape, EtcdMetaStore};
use crate::{MetaError, Result};

impl EtcdMetaStore {
    fn brokers_prefix(&self) -> String {
        format!("{}/brokers/", self.keys.root)
    }

    fn broker_key(&self, id: i32) -> String {
        format!("{}/brokers/{id}", self.keys.root)
    }

    fn partitions_prefix(&self, topic_id: Uuid) -> String {
        format!("{}/partitions/{topic_id}/", self.keys.root)
    }

    fn partition_key(&self, topic_id: Uuid, partition: i32) -> String {
        format!("{}/partitions/{topic_id}/{partition}", self.keys.root)
    }

    /// Turns one watched key change into an event (`None` for keys no one needs to hear of).
    fn event_of(
        &self,
        kind: EventType,
        key: &[u8],
        value: &[u8],
        revision: i64,
    ) -> Option<ClusterEvent> {
        let root = format!("{}/", self.keys.root);
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&root)?;
        let put = kind == EventType::Put;
        if let Some(name) = rest.strip_prefix("topics/") {
            let name = unescape(name.as_bytes())?;
            return Some(if put {
                ClusterEvent::TopicChanged(name)
            } else {
                ClusterEvent::TopicDeleted(name)
            });
        }
        if let Some(id) = rest.strip_prefix("brokers/") {
            let id: i32 = id.parse().ok()?;
            if !put {
                return Some(ClusterEvent::BrokerDown(id));
            }
            return decode(key, value, "broker registration")
                .ok()
                .map(ClusterEvent::BrokerUp);
        }
        if let Some(path) = rest.strip_prefix("partitions/") {
            let (topic, partition) = path.split_once('/')?;
            let (topic_id, partition) = (Uuid::parse_str(topic).ok()?, partition.parse().ok()?);
            if !put {
                return None;
            }
            let state = decode(key, value, "partition state").ok()?;
            return Some(ClusterEvent::PartitionChanged {
                topic_id,
                partition,
                state: Versioned {
                    value: state,
                    version: revision,
                },
            });
        }
        if let Some(scope) = rest.strip_prefix("broker_configs/") {
            return Some(ClusterEvent::BrokerConfigsChanged(unescape(
                scope.as_bytes(),
            )?));
        }
        None
    }
}

/// etcd leases are granted in whole seconds.
fn ttl_seconds(session_timeout: Duration) -> i64 {
    (session_timeout.as_millis().div_ceil(1000) as i64).max(1)
}

#[async_trait]
impl ClusterMeta for EtcdMetaStore {
    async fn register_broker(
        &self,
        registration: &BrokerRegistration,
        session_timeout: Duration,
    ) -> Result<Registration> {
        let ttl = ttl_seconds(session_timeout);
        let mut lease_client = self.client.lease_client();
        let lease = self
            .retry_unsent("granting a broker lease", || {
                let mut leases = self.client.lease_client();
                async move { leases.grant(ttl, None).await }
            })
            .await?
            .id();
        let key = self.broker_key(registration.broker_id);
        let value = encode(&key, registration)?;
        let put = TxnOp::put(
            key.as_str(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        );
        let won = self
            .commit(
                &format!("registering broker {}", registration.broker_id),
                vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)],
                vec![put],
            )
            .await;
        if !matches!(won, Ok(true)) {
            let _ = self
                .call("revoking an unused lease", lease_client.revoke(lease))
                .await;
            return match won {
                Ok(_) => Err(MetaError::AlreadyExists(format!(
                    "broker id {} is registered by a live process",
                    registration.broker_id
                ))),
                Err(e) => Err(e),
            };
        }
        let stream = self
            .retry_unsent("keeping a broker lease alive", || {
                let mut leases = self.client.lease_client();
                async move { leases.keep_alive(lease).await }
            })
            .await?;
        let (lost_tx, lost) = watch::channel(false);
        let (release, mut released) = oneshot::channel::<()>();
        let store = self.clone();
        let id = registration.broker_id;
        let task = tokio::spawn(async move {
            // Renew three times per TTL; the lease counts as lost once a whole TTL has passed
            // since the last renewal etcd confirmed. A broken renewal stream (its etcd member
            // died) is opened again, through whichever member answers.
            let every = Duration::from_millis((ttl as u64 * 1000 / 3).max(100));
            let mut confirmed = tokio::time::Instant::now();
            let mut stream = Some(stream);
            let mut retry_now = false;
            loop {
                let wait = if std::mem::take(&mut retry_now) {
                    Duration::from_millis(50)
                } else {
                    every
                };
                tokio::select! {
                    _ = &mut released => {
                        let mut leases = store.client.lease_client();
                        if let Err(e) = store.call("revoking the broker lease", leases.revoke(lease)).await {
                            tracing::warn!(broker = id, error = %e, "revoking the broker lease failed; it expires by itself");
                        }
                        return;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                // A few tries, each bounded by the renewal period (each may be routed to
                // another member), never past the session.
                for _ in 0..4 {
                    if stream.is_some() || confirmed.elapsed() >= Duration::from_secs(ttl as u64) {
                        break;
                    }
                    let mut leases = store.client.lease_client();
                    match tokio::time::timeout(every, leases.keep_alive(lease)).await {
                        Ok(Ok(s)) => stream = Some(s),
                        Ok(Err(e)) => {
                            tracing::warn!(broker = id, error = %e, "reopening the lease renewal failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(_) => {
                            tracing::warn!(broker = id, "reopening the lease renewal timed out")
                        }
                    }
                }
                let outcome = match stream.as_mut() {
                    None => Err(MetaError::Unavailable("no lease renewal stream".into())),
                    Some((keeper, responses)) => {
                        let renewed = async {
                            keeper
                                .keep_alive()
                                .await
                                .map_err(|e| etcd_error("renewing", e))?;
                            match responses.message().await {
                                Ok(Some(r)) => Ok(r.ttl()),
                                Ok(None) => {
                                    Err(MetaError::Unavailable("lease stream closed".into()))
                                }
                                Err(e) => Err(etcd_error("renewing", e)),
                            }
                        };
                        tokio::time::timeout(every, renewed)
                            .await
                            .unwrap_or_else(|_| {
                                Err(MetaError::Unavailable("renewal timed out".into()))
                            })
                    }
                };
                match outcome {
                    Ok(left) if left > 0 => confirmed = tokio::time::Instant::now(),
                    Ok(_) => {
                        tracing::error!(broker = id, "broker lease expired");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(broker = id, error = %e, "renewing the broker lease failed");
                        stream = None;
                        retry_now = true;
                    }
                }
                if confirmed.elapsed() >= Duration::from_secs(ttl as u64) {
                    tracing::error!(
                        broker = id,
                        "broker lease not renewed for a whole session timeout; counting it lost"
                    );
                    let _ = lost_tx.send(true);
                    return;
                }
            }
        });
        Ok(Registration {
            lost,
            release: Some(release),
            task: Some(task),
        })
    }

    async fn live_brokers(&self) -> Result<Vec<BrokerRegistration>> {
        let mut out: Vec<BrokerRegistration> = self
            .range_prefix(&self.brokers_prefix())
            .await?
            .iter()
            .map(|kv| decode(kv.key(), kv.value(), "broker registration"))
            .collect::<Result<_>>()?;
        out.sort_by_key(|b| b.broker_id);
        Ok(out)
    }

    async fn create_partition_states(
        &self,
        topic_id: Uuid,
        states: Vec<(i32, PartitionState)>,
    ) -> Result<()> {
        // In transactions of at most max_txn_ops keys: each key only if absent.
        let chunk = self.options.max_txn_ops.max(1);
        for part in states.chunks(chunk) {
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            for (p, state) in part {
                let key = self.partition_key(topic_id, *p);
                compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
                ops.push(TxnOp::put(key.as_str(), encode(&key, state)?, None));
            }
            if !self
                .commit(&format!("placing partitions of {topic_id}"), compares, ops)
                .await?
            {
                return Err(MetaError::AlreadyExists(format!(
                    "partition states of topic {topic_id}"
                )));
            }
        }
        Ok(())
    }

    async fn partition_states(
        &self,
        topic_id: Uuid,
    ) -> Result<Vec<(i32, Versioned<PartitionState>)>> {
        let prefix = self.partitions_prefix(topic_id);
        let mut out = Vec::new();
        for kv in self.range_prefix(&prefix).await? {
            let Some(p) = std::str::from_utf8(kv.key())
                .ok()
                .and_then(|k| k.strip_prefix(prefix.as_str()))
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            out.push((
                p,
                Versioned {
                    value: decode(kv.key(), kv.value(), "partition state")?,
                    version: kv.mod_revision(),
                },
            ));
        }
        out.sort_by_key(|(p, _)| *p);
        Ok(out)
    }

    async fn update_partition_state(
        &self,
        topic_id: Uuid,
        partition: i32,
        version: i64,
        state: PartitionState,
    ) -> Result<i64> {
        let key = self.partition_key(topic_id, partition);
        let current = self
            .get(&key)
            .await?
            .ok_or_else(|| MetaError::NotFound(format!("partition {topic_id}/{partition}")))?;
        if current.mod_revision != version {
            return Err(MetaError::Fenced(format!(
                "partition {topic_id}/{partition} is at version {}, not {version}",
                current.mod_revision
            )));
        }
        let stored: PartitionState = decode(key.as_bytes(), &current.value, "partition state")?;
        if state.leader_epoch < stored.leader_epoch {
            return Err(MetaError::Invalid(format!(
                "leader epoch {} is older than the stored {}",
                state.leader_epoch, stored.leader_epoch
            )));
        }
        let txn = etcd_client::Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                version,
            )])
            .and_then([TxnOp::put(key.as_str(), encode(&key, &state)?, None)]);
        let resp = self
            .call_again(
                &format!("changing partition {topic_id}/{partition}"),
                |mut kv| {
                    let txn = txn.clone();
                    async move { kv.txn(txn).await }
                },
            )
            .await?;
        if !resp.succeeded() {
            return Err(MetaError::Fenced(format!(
                "partition {topic_id}/{partition} changed after version {version}"
            )));
        }
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn delete_partition_states(&self, topic_id: Uuid) -> Result<()> {
        let prefix = self.partitions_prefix(topic_id);
        self.call_again(&format!("deleting partitions of {topic_id}"), |mut kv| {
            let prefix = prefix.clone();
            async move {
                kv.delete(
                    prefix.as_str(),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await
            }
        })
        .await?;
        Ok(())
    }

    async fn watch(&self) -> Result<mpsc::Receiver<ClusterEvent>> {
        let (tx, rx) = mpsc::channel(1024);
        let store = self.clone();
        let root = format!("{}/", self.keys.root);
        // The first watch is made here so a caller that reads state after `watch` returns
        // misses nothing; later ones are re-made by the task.
        let mut stream = self
            .retry_unsent("watching the cluster", || {
                let (mut watcher, root) = (self.client.watch_client(), root.clone());
                async move {
                    watcher
                        .watch(root.as_str(), Some(WatchOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        tokio::spawn(async move {
            let mut next_revision = 0i64;
            loop {
                loop {
                    let msg = match stream.message().await {
                        Ok(Some(m)) => m,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "the etcd watch failed; re-watching");
                            break;
                        }
                    };
                    if msg.canceled() || msg.compact_revision() > 0 {
                        tracing::warn!(
                            reason = msg.cancel_reason(),
                            "the etcd watch was cancelled; re-watching"
                        );
                        next_revision = 0;
                        break;
                    }
                    for ev in msg.events() {
                        let Some(kv) = ev.kv() else { continue };
                        next_revision = kv.mod_revision() + 1;
                        if let Some(e) =
                            store.event_of(ev.event_type(), kv.key(), kv.value(), kv.mod_revision())
                        {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut options = WatchOptions::new().with_prefix();
                if next_revision > 0 {
                    options = options.with_start_revision(next_revision);
                }
                let mut watcher = store.client.watch_client();
                match store
                    .call(
                        "re-watching the cluster",
                        watcher.watch(root.as_str(), Some(options)),
                    )
                    .await
                {
                    Ok(s) => {
                        stream = s;
                        // Resumed from a known revision nothing is missed; otherwise reload.
                        if next_revision == 0 && tx.send(ClusterEvent::Resync).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "re-watching etcd failed; retrying"),
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_whole_seconds_of_at_least_one() {
        assert_eq!(ttl_seconds(Duration::from_millis(3000)), 3);
        assert_eq!(ttl_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(ttl_seconds(Duration::from_millis(10)), 1);
    }
}
