//! What cluster mode keeps beside [`crate::MetaStore`]: live brokers (registered under leases
//! that expire when a broker stops renewing them), each partition's replicas, leader, leader
//! epoch and ISR, and a stream of changes so every broker's view stays current (ADR 0021).
//!
//! Only the etcd store implements it ([`crate::etcd::EtcdMetaStore`]); the embedded store is a
//! single broker and needs none of it. Every change to a partition's state is a compare-and-set
//! on the version it was decided under, so two brokers racing to lead a partition cannot both
//! win: the loser gets `Fenced` and must re-read.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::Result;

/// A live broker as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// The address clients and peers connect to (the advertised Kafka listener).
    pub host: String,
    pub port: i32,
    /// Kafka's `broker.rack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Fresh at every start: a broker that restarted (or lost its disk) is a new incarnation,
    /// and must never count as in sync on the strength of its previous life (KIP-903).
    pub incarnation: Uuid,
    /// Every advertised listener, so Metadata can answer with the addresses of the listener a
    /// client came in on. Empty in registrations of brokers that had only `host`/`port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Endpoint>,
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl BrokerRegistration {
    /// The broker's address on listener `name`; `None` if it has no such listener (Kafka leaves
    /// such brokers out of Metadata). A registration without listeners has one, everywhere.
    pub fn endpoint(&self, name: &str) -> Option<(String, i32)> {
        if self.listeners.is_empty() {
            return Some((self.host.clone(), self.port));
        }
        self.listeners
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.host.clone(), e.port))
    }
}

/// A partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Broker ids, preferred leader first.
    pub replicas: Vec<i32>,
    /// The leader's broker id, or -1 while the partition has none (offline).
    pub leader: i32,
    /// Raised at every leader change; a write or commit decided under an older epoch is fenced.
    pub leader_epoch: i32,
    /// The in-sync replicas (the leader among them while there is one).
    pub isr: Vec<i32>,
}

/// A value and the version it was read at, for compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    /// Changes with every write; a write naming an older version is `Fenced`.
    pub version: i64,
}

/// A change another broker (or this one) made, as the watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A topic was created or changed (partitions, configs).
    TopicChanged(String),
    TopicDeleted(String),
    /// A broker registered, or its registration went (lease expired or revoked).
    BrokerUp(BrokerRegistration),
    BrokerDown(i32),
    /// A partition's state changed; the new state and version.
    PartitionChanged {
        topic_id: Uuid,
        partition: i32,
        state: Versioned<PartitionState>,
    },
    /// Dynamic broker configs of a scope (`""` or a broker id) changed.
    BrokerConfigsChanged(String),
    /// Events may have been missed (the watch was cut or etcd compacted past it): reload
    /// everything, then carry on with the events that follow.
    Resync,
}

/// A broker's registration, kept alive in the background until released or lost.
pub struct Registration {
    /// Turns `true` when the lease could not be renewed and has expired (or may have): the
    /// broker must stop acting as a member (no leading, no acknowledging) until it registers
    /// again.
    pub lost: watch::Receiver<bool>,
    pub(crate) release: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
}

impl Registration {
    /// Revokes the lease now (controlled shutdown), so peers see this broker leave at once
    /// instead of after the session timeout.
    pub async fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Dropped without release: stop renewing; the lease expires after its TTL.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The cluster-mode metadata operations.
#[async_trait]
pub trait ClusterMeta: Send + Sync + 'static {
    /// Registers a broker under a lease of `session_timeout`, renewed in the background.
    /// `AlreadyExists` if a live registration (another process's lease) holds the id: the
    /// caller may wait out the session timeout and try again, since a crashed process's lease
    /// only expires then.
    async fn register_broker(
        &self,
        registration: &BrokerRegistration,
        session_timeout: Duration,
    ) -> Result<Registration>;
    /// Every live broker, by id.
    async fn live_brokers(&self) -> Result<Vec<BrokerRegistration>>;
    /// Creates the states of a topic's partitions, each only if absent (a topic's creator
    /// places it; a second writer of the same partition gets `AlreadyExists`).
    async fn create_partition_states(
        &self,
        topic_id: Uuid,
        states: Vec<(i32, PartitionState)>,
    ) -> Result<()>;
    /// Every partition state of a topic, by partition.
    async fn partition_states(
        &self,
        topic_id: Uuid,
    ) -> Result<Vec<(i32, Versioned<PartitionState>)>>;
    /// Replaces a partition's state if it is still at `version` (else `Fenced`, and the caller
    /// re-reads); returns the new version. Leader epochs never go back: a new state with a
    /// lower epoch than the stored one is `Invalid`.
    async fn update_partition_state(
        &self,
        topic_id: Uuid,
        partition: i32,
        version: i64,
        state: PartitionState,
    ) -> Result<i64>;
    /// Removes the partition states of a deleted topic.
    async fn delete_partition_states(&self, topic_id: Uuid) -> Result<()>;
    /// Streams every change from now on. The channel closes only when the store is dropped;
    /// a cut watch is re-established and announced with [`ClusterEvent::Resync`].
    async fn watch(&self) -> Result<mpsc::Receiver<ClusterEvent>>;
}
