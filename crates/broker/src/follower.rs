//! The broker's side of the follower fetch loop (`sediment_replication::fetcher`): the
//! partitions this broker follows, seen through [`ReplicaLog`], and the broker through
//! [`ReplicaHost`]. Everything that changes a partition here does so under its lock and
//! only while it still follows the same leader at the same epoch.

use std::sync::Arc;

use sediment_replication::fetcher::{
    fit, Fit, FollowPosition, Followed, LeaderBatch, Pending, ReplicaHost, ReplicaLog,
};
use sediment_wal::{Append, Durability, EntryMeta};
use tokio::sync::{oneshot, watch};
use tracing::warn;

use crate::log::{Partition, Role, Topic};
use crate::Broker;

/// A partition this broker follows.
pub struct FollowedPartition {
    broker: Arc<Broker>,
    topic: Arc<Topic>,
    index: i32,
    p: Arc<Partition>,
}

/// The broker as the fetch loop's host.
pub struct FollowerHost(pub Arc<Broker>);

impl ReplicaHost for FollowerHost {
    type Log = FollowedPartition;

    fn broker_id(&self) -> i32 {
        self.0.config.broker_id
    }

    fn followed(&self, leader: i32) -> Vec<Followed<FollowedPartition>> {
        self.0
            .followed(leader)
            .into_iter()
            .map(|(topic, index, p)| Followed {
                topic: topic.meta.name.clone(),
                partition: index,
                log: FollowedPartition {
                    broker: self.0.clone(),
                    topic,
                    index,
                    p,
                },
            })
            .collect()
    }

    fn leader_addr(&self, leader: i32) -> Option<String> {
        let r = self.0.cluster().and_then(|c| c.broker(leader))?;
        // The leader's address on the inter-broker listener this broker uses.
        let (host, port) = r.endpoint(&self.0.config.inter_broker_listener)?;
        Some(format!("{host}:{port}"))
    }

    fn transport(&self) -> sediment_protocol::client::Transport {
        let c = &self.0.config;
        match &c.peer_tls {
            // Read again for each connection: rotated files apply to the next one.
            Some(tls) => match tls.client_config() {
                Ok(config) => sediment_protocol::client::Transport::Tls(config),
                Err(e) => {
                    tracing::warn!(error = %e, "TLS files for peers do not load; using the ones read before");
                    c.peer_transport.clone()
                }
            },
            None => c.peer_transport.clone(),
        }
    }

    fn fetcher_done(&self, leader: i32) -> bool {
        self.0.fetcher_done(leader)
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.0.shutdown_signal()
    }
}

impl FollowedPartition {
    /// Queues a truncation record (a zero-record WAL entry) saying the partition's log ends,
    /// or starts over, at `offset`; recovery replays it in order with the batches around it.
    fn queue_marker(&self, offset: i64, epoch: i32) -> Result<Pending, String> {
        let (tx, rx) = oneshot::channel();
        let marker = Append {
            meta: EntryMeta {
                topic_id: self.topic.meta.id,
                partition: self.index,
                leader_epoch: epoch,
                base_offset: offset,
                record_count: 0,
                max_timestamp: -1,
            },
            data: Vec::new(),
            durability: Durability::Synced,
            done: Some(tx),
            guard: None,
        };
        self.broker.submit(marker).map_err(|e| e.to_string())?;
        Ok(rx)
    }
}

impl ReplicaLog for FollowedPartition {
    fn following(&self, leader: i32) -> Option<FollowPosition> {
        let st = self.p.state.lock().ok()?;
        match st.role {
            Role::Follower {
                leader: l, checked, ..
            } if l == leader => Some(FollowPosition {
                epoch: st.leader_epoch,
                next_offset: st.next_offset,
                last_epoch: st.epochs.last_epoch().unwrap_or(-1),
                checked,
            }),
            _ => None,
        }
    }

    fn mark_checked(&self, leader: i32, epoch: i32) {
        if let Ok(mut st) = self.p.state.lock() {
            let at_epoch = st.leader_epoch == epoch;
            if let Role::Follower {
                leader: l, checked, ..
            } = &mut st.role
            {
                if *l == leader && at_epoch {
                    *checked = true;
                }
            }
        }
    }

    fn recheck(&self) {
        if let Ok(mut st) = self.p.state.lock() {
            if let Role::Follower { checked, .. } = &mut st.role {
                *checked = false;
            }
        }
    }

    fn truncate(&self, offset: i64, epoch: i32) -> Result<Option<Pending>, String> {
        let Ok(mut st) = self.p.state.lock() else {
            return Err("partition state poisoned".into());
        };
        if offset >= st.next_offset {
            return Ok(None);
        }
        let end = st.truncate_to(offset);
        self.queue_marker(end, epoch).map(Some)
    }

    fn restart_at(&self, offset: i64, epoch: i32) -> Result<Option<Pending>, String> {
        let Ok(mut st) = self.p.state.lock() else {
            return Err("partition state poisoned".into());
        };
        if offset <= st.next_offset {
            return Ok(None);
        }
        st.reset_to(offset);
        self.queue_marker(offset, epoch).map(Some)
    }

    fn append(
        &self,
        leader: i32,
        epoch: i32,
        batches: &[LeaderBatch],
    ) -> Result<Vec<Pending>, String> {
        let Ok(mut st) = self.p.state.lock() else {
            return Err("partition state poisoned".into());
        };
        let still = st.leader_epoch == epoch
            && matches!(st.role, Role::Follower { leader: l, .. } if l == leader);
        if !still {
            return Ok(Vec::new()); // the role changed while the fetch was out
        }
        let mut waits = Vec::new();
        for b in batches {
            match fit(b, st.next_offset, st.index.is_empty()) {
                Fit::Have => continue,
                Fit::Append => {}
                Fit::Gap => {
                    warn!(
                        topic = %self.topic.meta.name, partition = self.index,
                        expected = st.next_offset, got = b.base_offset,
                        "leader's batch does not continue this replica's log; fetching again"
                    );
                    break;
                }
            }
            let (tx, rx) = oneshot::channel();
            let append = Append {
                meta: EntryMeta {
                    topic_id: self.topic.meta.id,
                    partition: self.index,
                    leader_epoch: b.leader_epoch,
                    base_offset: b.base_offset,
                    record_count: b.record_count,
                    max_timestamp: b.max_timestamp,
                },
                data: vec![b.bytes.clone()],
                durability: Durability::Synced,
                done: Some(tx),
                guard: None,
            };
            self.broker.submit(append).map_err(|e| e.to_string())?;
            if b.producer_id >= 0 {
                // Followers keep producer state too, so an idempotent producer's dedupe
                // survives a failover.
                st.record_sequence(
                    b.producer_id,
                    b.producer_epoch,
                    b.base_sequence,
                    b.record_count,
                    b.base_offset,
                );
            }
            st.next_offset = b.end_offset();
            waits.push(rx);
        }
        Ok(waits)
    }

    fn leader_high_watermark(&self, leader: i32, epoch: i32, hw: i64) {
        let moved = self.p.state.lock().is_ok_and(|mut st| {
            let at_epoch = st.leader_epoch == epoch;
            match &mut st.role {
                Role::Follower {
                    leader: l,
                    leader_hw,
                    ..
                } if *l == leader && at_epoch => {
                    *leader_hw = (*leader_hw).max(hw);
                    st.advance_high_watermark()
                }
                _ => false,
            }
        });
        if moved {
            self.p.changed.notify_waiters();
        }
    }
}
