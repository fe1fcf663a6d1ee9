//! Cluster mode: this broker as one member of several, with metadata and leadership in etcd
//! (ADR 0021) and replication by follower fetch (ADR 0022).
//!
//! The shape: every broker keeps a cache of the live brokers and of every partition's state
//! (replicas, leader, leader epoch, ISR), fed only by the etcd watch (and by the results of its
//! own compare-and-sets). One reconcile pass, run after every change and every tick, turns the
//! cached states into each local partition's [`Role`]: leader at an epoch, follower of a broker,
//! or absent; elects this broker where a partition's leader is gone and this broker is in its
//! ISR; and, where it leads, shrinks the ISR of followers that stopped confirming and grows it
//! with those that caught up. Each of those is a compare-and-set on the state's version, so two
//! brokers deciding at once cannot both win.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sediment_meta::cluster::{
    BrokerRegistration, ClusterEvent, ClusterMeta, PartitionState as Placement, Registration,
    Versioned,
};
use sediment_meta::MetaError;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};
use uuid::Uuid;

use sediment_replication::isr;

use crate::log::{Partition, Role, Topic};
use crate::Broker;

/// Cluster-mode settings (the `serve` flags of the same names).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Kafka's `broker.session.timeout.ms`: how long after a broker stops renewing its lease
    /// it counts as dead.
    pub session_timeout: Duration,
    /// Kafka's `broker.rack`.
    pub rack: Option<String>,
    /// Replicas of a topic created with replication factor -1; `None`: min(3, live brokers).
    pub default_replication_factor: Option<i32>,
    /// Kafka's `replica.lag.time.max.ms`: a follower that has not caught up for this long
    /// leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// A broker gone this long has its replicas reassigned to live brokers (`None`: never).
    pub replica_replace_after: Option<Duration>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_millis(3000),
            rack: None,
            default_replication_factor: None,
            replica_lag_time_max: Duration::from_millis(30_000),
            replica_replace_after: Some(Duration::from_secs(600)),
        }
    }
}

/// How long a leader leads before it hands a partition back to its preferred replica.
pub const PREFERRED_AFTER: Duration = Duration::from_secs(5);

/// What this broker knows of the cluster.
pub struct Cluster {
    pub meta: Arc<dyn ClusterMeta>,
    pub settings: ClusterSettings,
    /// This process's incarnation: a restart is a new one (KIP-903).
    pub incarnation: Uuid,
    brokers: RwLock<BTreeMap<i32, BrokerRegistration>>,
    states: RwLock<HashMap<(Uuid, i32), Versioned<Placement>>>,
    registration: Mutex<Option<Registration>>,
    lost: Mutex<Option<watch::Receiver<bool>>>,
    /// This broker's registration as it joined (kept to register again after losing it).
    me: Mutex<Option<BrokerRegistration>>,
    /// Leaders this broker runs a replica fetcher for.
    fetchers: Mutex<HashSet<i32>>,
    /// Wakes the reconcile loop.
    kick: Notify,
    /// Shutting down: no elections, no taking leadership back.
    leaving: std::sync::atomic::AtomicBool,
    /// Since when each broker named as a replica has been missing from the live brokers
    /// (broker clock, monotonic), as this broker has seen it.
    missing_since: Mutex<HashMap<i32, Duration>>,
}

impl Cluster {
    pub fn new(meta: Arc<dyn ClusterMeta>, settings: ClusterSettings) -> Self {
        Self {
            meta,
            settings,
            incarnation: Uuid::new_v4(),
            brokers: RwLock::default(),
            states: RwLock::default(),
            registration: Mutex::default(),
            lost: Mutex::default(),
            me: Mutex::default(),
            fetchers: Mutex::default(),
            kick: Notify::new(),
            leaving: std::sync::atomic::AtomicBool::new(false),
            missing_since: Mutex::default(),
        }
    }

    /// Every live broker, by id.
    pub fn live_brokers(&self) -> Vec<BrokerRegistration> {
        self.brokers
            .read()
            .map(|b| b.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn broker(&self, id: i32) -> Option<BrokerRegistration> {
        self.brokers.read().ok()?.get(&id).cloned()
    }

    /// The incarnation a live broker registered with (no copy of its registration: asked for
    /// every partition of every follower fetch).
    pub fn incarnation_of(&self, id: i32) -> Option<Uuid> {
        self.brokers.read().ok()?.get(&id).map(|r| r.incarnation)
    }

    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.read().is_ok_and(|b| b.contains_key(&id))
    }

    /// A partition's state as last seen.
    pub fn state(&self, topic_id: Uuid, partition: i32) -> Option<Versioned<Placement>> {
        self.states
            .read()
            .ok()?
            .get(&(topic_id, partition))
            .cloned()
    }

    /// Whether this broker's registration is current (not lost to an etcd outage or a pause
    /// longer than the session): a broker whose registration is lost leads nothing.
    pub fn is_member(&self) -> bool {
        self.lost
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|rx| !*rx.borrow()))
            .unwrap_or(false)
    }

    fn keep(&self, registration: Registration) {
        if let Ok(mut l) = self.lost.lock() {
            *l = Some(registration.lost.clone());
        }
        if let Ok(mut r) = self.registration.lock() {
            *r = Some(registration);
        }
    }

    fn put_state(&self, topic_id: Uuid, partition: i32, state: Versioned<Placement>) {
        if let Ok(mut s) = self.states.write() {
            let newer = s
                .get(&(topic_id, partition))
                .is_none_or(|old| old.version < state.version);
            if newer {
                s.insert((topic_id, partition), state);
            }
        }
    }

    fn forget_topic(&self, topic_id: Uuid) {
        if let Ok(mut s) = self.states.write() {
            s.retain(|(t, _), _| *t != topic_id);
        }
    }

    /// Asks the reconcile loop to run now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// The broker that coordinates `group`: one of the live brokers, chosen by a hash of the
    /// group id, so every broker with the same view answers the same one. Committed offsets
    /// are in etcd, so a group that moves (a broker joined or left) keeps them; its members
    /// rejoin at the new coordinator.
    pub fn coordinator_for(&self, group: &str) -> Option<BrokerRegistration> {
        let brokers = self.brokers.read().ok()?;
        if brokers.is_empty() {
            return None;
        }
        // FNV-1a: stable across processes and releases (std's hasher is not).
        let hash = group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        brokers
            .values()
            .nth((hash % brokers.len() as u64) as usize)
            .cloned()
    }
}

/// A partition's state changed here: wake what waits on it.
fn wake(p: &Partition) {
    p.changed.notify_waiters();
}

impl Broker {
    /// The cluster, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Registers this broker, loads the cluster's state and starts the watch, reconcile and
    /// replica-fetch work. A registration held by another process is waited out for the
    /// session timeout (a crashed process's lease expires only then), then refused.
    pub async fn join_cluster(self: &Arc<Self>) -> Result<(), String> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(());
        };
        let me = BrokerRegistration {
            broker_id: self.config.broker_id,
            host: self.config.advertised_host.clone(),
            port: self.config.advertised_port,
            rack: cluster.settings.rack.clone(),
            incarnation: cluster.incarnation,
            listeners: self
                .config
                .listeners
                .iter()
                .map(|l| sediment_meta::cluster::Endpoint {
                    name: l.name.clone(),
                    host: l.advertised_host.clone(),
                    port: l.advertised_port,
                })
                .collect(),
        };
        // Watch first, so nothing that happens after the initial load is missed.
        let events = cluster
            .meta
            .watch()
            .await
            .map_err(|e| format!("watching the cluster's metadata in etcd: {e}"))?;
        let session = cluster.settings.session_timeout;
        let deadline = tokio::time::Instant::now() + session + Duration::from_secs(1);
        let mut waited = false;
        let registration = loop {
            match cluster.meta.register_broker(&me, session).await {
                Ok(r) => break r,
                Err(MetaError::AlreadyExists(_)) if tokio::time::Instant::now() < deadline => {
                    if !waited {
                        info!(
                            broker_id = me.broker_id,
                            session_timeout_ms = session.as_millis() as u64,
                            "broker id still registered (a previous process's lease?); waiting \
                             out the session timeout"
                        );
                        waited = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(MetaError::AlreadyExists(_)) => {
                    return Err(format!(
                        "broker id {} is held by another live broker process: its registration \
                         in etcd was still renewed after waiting out the {} ms session timeout; \
                         stop that process or give this one another --broker-id",
                        me.broker_id,
                        session.as_millis()
                    ))
                }
                Err(e) => return Err(format!("registering broker {}: {e}", me.broker_id)),
            }
        };
        cluster.keep(registration);
        if let Ok(mut m) = cluster.me.lock() {
            *m = Some(me.clone());
        }
        self.resync().await.map_err(|e| e.to_string())?;
        let fresh = self.claim_data_dir()?;
        if fresh {
            self.leave_every_isr(&cluster).await?;
        }
        info!(
            broker_id = me.broker_id,
            fresh_data_dir = fresh,
            incarnation = %cluster.incarnation,
            brokers = cluster.live_brokers().len(),
            "joined the cluster"
        );
        let b = self.clone();
        self.supervise("cluster watch", async move { b.run_watch(events).await });
        let b = self.clone();
        self.supervise("cluster reconcile", async move { b.run_reconcile().await });
        self.reconcile().await;
        Ok(())
    }

    /// After the registration was lost (etcd unreachable, or this process paused, for longer
    /// than the session): this broker already leads nothing (every role went when `lost`
    /// rose); it registers again once its old lease is gone, and rejoins as a follower.
    async fn register_again(&self, cluster: &Cluster) {
        let Some(me) = cluster.me.lock().ok().and_then(|m| m.clone()) else {
            return;
        };
        let old = cluster.registration.lock().ok().and_then(|mut r| r.take());
        drop(old); // stops renewing what is left of it
        match cluster
            .meta
            .register_broker(&me, cluster.settings.session_timeout)
            .await
        {
            Ok(r) => {
                info!(
                    broker_id = me.broker_id,
                    "registration was lost; registered again"
                );
                cluster.keep(r);
                if let Err(e) = self.resync().await {
                    warn!(error = %e, "reloading cluster metadata failed; the next change retries");
                }
            }
            Err(e) => {
                debug!(error = %e, "registering again failed; will retry");
            }
        }
    }

    /// Controlled shutdown (as Kafka's): hands every partition this broker leads to another
    /// live in-sync replica (the first in replica order) by compare-and-set, leaving this
    /// broker out of the ISR, so clients get a retriable NOT_LEADER_OR_FOLLOWER and move on
    /// at once instead of waiting out the session. A partition with no other in-sync replica
    /// keeps this leader until it is gone. Returns how many partitions moved.
    pub async fn hand_over_leadership(self: &Arc<Self>) -> usize {
        let Some(cluster) = self.cluster.clone() else {
            return 0;
        };
        let me = self.config.broker_id;
        cluster
            .leaving
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut moved = 0;
        for topic in self.registry.topics() {
            for i in 0..topic.partitions.len() as i32 {
                let Some(state) = cluster.state(topic.meta.id, i) else {
                    continue;
                };
                let s = &state.value;
                if s.leader != me {
                    continue;
                }
                let Some(next) = s
                    .replicas
                    .iter()
                    .copied()
                    .find(|b| *b != me && s.isr.contains(b) && cluster.is_live(*b))
                else {
                    continue;
                };
                let new = Placement {
                    replicas: s.replicas.clone(),
                    leader: next,
                    leader_epoch: s.leader_epoch + 1,
                    isr: s.isr.iter().copied().filter(|b| *b != me).collect(),
                };
                match self
                    .change_state(&cluster, topic.meta.id, i, state.version, new)
                    .await
                {
                    Ok(true) => moved += 1,
                    Ok(false) => {}
                    Err(e) => {
                        warn!(topic = %topic.meta.name, partition = i, error = %e, "handing over leadership failed")
                    }
                }
            }
        }
        // Roles follow at once: waiting producers hear NOT_LEADER_OR_FOLLOWER.
        self.reconcile().await;
        if moved > 0 {
            info!(
                partitions = moved,
                "handed over leadership before shutting down"
            );
        }
        moved
    }

    /// Marks the data directory as this cluster's broker's (`<data dir>/cluster-member.json`).
    /// Returns whether it was fresh: new, or wiped since this broker last ran. A directory of
    /// another cluster or broker id is refused: it would serve someone else's log.
    fn claim_data_dir(&self) -> Result<bool, String> {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq)]
        struct Member {
            cluster_id: String,
            broker_id: i32,
        }
        let path = self.config.data_dir.join("cluster-member.json");
        let me = Member {
            cluster_id: self.cluster_id().to_string(),
            broker_id: self.config.broker_id,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let was: Member = serde_json::from_slice(&bytes).map_err(|e| {
                    format!("{} is not a cluster membership file: {e}", path.display())
                })?;
                if was != me {
                    return Err(format!(
                        "{} belongs to broker {} of cluster {}, not broker {} of cluster {}: give                          this broker its own --data-dir",
                        self.config.data_dir.display(),
                        was.broker_id,
                        was.cluster_id,
                        me.broker_id,
                        me.cluster_id
                    ));
                }
                Ok(false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let body = serde_json::to_vec(&me).map_err(|e| e.to_string())?;
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, body)
                    .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                Ok(true)
            }
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    /// A broker whose data directory is fresh holds none of what it held in a previous life:
    /// before it serves, it takes itself out of every ISR (and gives up leading what the
    /// etcd state still says it leads), so it can neither be elected nor count toward acks=all
    /// until a leader has seen it catch up (KIP-903's rule, by data directory).
    async fn leave_every_isr(&self, cluster: &Cluster) -> Result<(), String> {
        let me = self.config.broker_id;
        for topic in self.registry.topics() {
            for i in 0..topic.partitions.len() as i32 {
                for _attempt in 0..10 {
                    let Some(state) = cluster.state(topic.meta.id, i) else {
                        break;
                    };
                    let s = &state.value;
                    if !s.isr.contains(&me) && s.leader != me {
                        break;
                    }
                    let new = Placement {
                        replicas: s.replicas.clone(),
                        leader: if s.leader == me { -1 } else { s.leader },
                        leader_epoch: s.leader_epoch + i32::from(s.leader == me),
                        isr: s.isr.iter().copied().filter(|b| *b != me).collect(),
                    };
                    match self
                        .change_state(cluster, topic.meta.id, i, state.version, new)
                        .await
                    {
                        Ok(true) => {
                            info!(topic = %topic.meta.name, partition = i, "fresh data directory: left the ISR");
                            break;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            return Err(format!("leaving the ISR of {}-{i}: {e}", topic.meta.name))
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Revokes this broker's registration (shutdown), so peers see it leave at once.
    pub async fn leave_cluster(&self) {
        let Some(cluster) = &self.cluster else { return };
        let registration = cluster.registration.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = registration {
            r.release().await;
            info!("left the cluster");
        }
    }

    /// Reloads everything from the store: brokers, topics, partition states.
    async fn resync(&self) -> Result<(), MetaError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let brokers = cluster.meta.live_brokers().await?;
        if let Ok(mut b) = cluster.brokers.write() {
            *b = brokers.into_iter().map(|r| (r.broker_id, r)).collect();
        }
        let topics = self.meta.topics().await?;
        let names: HashSet<String> = topics.iter().map(|t| t.name.clone()).collect();
        for t in self.registry.topics() {
            if !names.contains(&t.meta.name) {
                self.registry.remove_topic(&t.meta.name);
                cluster.forget_topic(t.meta.id);
            }
        }
        for t in topics {
            let id = t.id;
            let changed = self
                .registry
                .topic_by_id(&id)
                .is_none_or(|old| old.meta != t);
            if changed {
                self.registry.upsert_topic(t);
            }
            for (p, state) in cluster.meta.partition_states(id).await? {
                cluster.put_state(id, p, state);
            }
        }
        Ok(())
    }

    async fn on_event(&self, event: ClusterEvent) {
        let Some(cluster) = &self.cluster else { return };
        match event {
            ClusterEvent::TopicChanged(name) => match self.meta.topic(&name).await {
                Ok(Some(meta)) => {
                    let fresh = self
                        .registry
                        .topic(&name)
                        .is_none_or(|old| old.meta != meta);
                    if fresh {
                        self.registry.upsert_topic(meta);
                    }
                }
                Ok(None) => {}
                Err(e) => warn!(topic = name, error = %e, "reading a changed topic failed"),
            },
            ClusterEvent::TopicDeleted(name) => {
                if let Some(t) = self.registry.remove_topic(&name) {
                    cluster.forget_topic(t.meta.id);
                }
            }
            ClusterEvent::BrokerUp(r) => {
                info!(broker_id = r.broker_id, host = %r.host, port = r.port, "broker up");
                if let Ok(mut b) = cluster.brokers.write() {
                    b.insert(r.broker_id, r);
                }
            }
            ClusterEvent::BrokerDown(id) => {
                info!(broker_id = id, "broker down");
                if let Ok(mut b) = cluster.brokers.write() {
                    b.remove(&id);
                }
            }
            ClusterEvent::PartitionChanged {
                topic_id,
                partition,
                state,
            } => cluster.put_state(topic_id, partition, state),
            ClusterEvent::BrokerConfigsChanged(_) => {
                if let Err(e) = self.reload_dynamic_configs().await {
                    warn!(error = %e, "reloading dynamic broker configs failed");
                }
            }
            ClusterEvent::Resync => {
                if let Err(e) = self.resync().await {
                    warn!(error = %e, "reloading cluster metadata failed; the next change retries");
                }
            }
        }
    }

    /// Re-reads the dynamic broker configs (another broker changed them) and applies them.
    pub async fn reload_dynamic_configs(&self) -> Result<(), MetaError> {
        let dynamic = crate::dynamic::DynamicConfigs {
            cluster: self.meta.broker_configs("").await?,
            broker: self
                .meta
                .broker_configs(&self.config.broker_id.to_string())
                .await?,
        };
        self.registry.set_defaults(dynamic.topic_defaults());
        self.connection_limit.store(
            dynamic.max_connections(self.config.max_connections),
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Ok(mut d) = self.dynamic.write() {
            *d = dynamic;
        }
        Ok(())
    }

    async fn run_watch(self: Arc<Self>, mut events: tokio::sync::mpsc::Receiver<ClusterEvent>) {
        let mut stop = self.shutdown_signal();
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = crate::wait_stopped(&mut stop) => return,
            };
            let Some(event) = event else {
                warn!("the cluster watch ended");
                return;
            };
            self.on_event(event).await;
            if let Some(c) = &self.cluster {
                c.kick();
            }
        }
    }

    async fn run_reconcile(self: Arc<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let mut stop = self.shutdown_signal();
        // Often enough that a lagging follower leaves the ISR close to replica.lag.time.max.ms.
        let tick = (cluster.settings.replica_lag_time_max / 4)
            .clamp(Duration::from_millis(50), Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = cluster.kick.notified() => {}
                _ = tokio::time::sleep(tick) => {}
                _ = crate::wait_stopped(&mut stop) => return,
            }
            if !cluster.is_member() {
                self.register_again(&cluster).await;
            }
            self.reconcile().await;
        }
    }

    /// One pass over every partition: roles from the cached states, elections where the
    /// leader is gone, ISR changes where this broker leads.
    pub async fn reconcile(self: &Arc<Self>) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let member = cluster.is_member();
        let leaving = cluster.leaving.load(std::sync::atomic::Ordering::Relaxed);
        let me = self.config.broker_id;
        let (mut under, mut offline) = (0i64, 0i64);
        self.metrics.replica_lag_offsets.clear();
        self.metrics.replica_lag_bytes.clear();
        self.metrics.replica_lag_ms.clear();
        for topic in self.registry.topics() {
            for (i, p) in topic.partitions.iter().enumerate() {
                let i = i as i32;
                let Some(state) = cluster.state(topic.meta.id, i) else {
                    set_role(p, Role::Absent, None);
                    continue;
                };
                let s = &state.value;
                if s.leader < 0 || !cluster.is_live(s.leader) {
                    offline += 1;
                }
                if s.leader == me {
                    if s.isr.len() < s.replicas.len() {
                        under += 1;
                    }
                    self.record_lag(&topic.meta.name, i, p);
                }
                if member && !leaving && self.should_elect(&cluster, &topic, s) {
                    self.elect(&cluster, &topic, i, &state).await;
                    continue; // the next pass applies what the election decided
                }
                self.apply(&cluster, &topic, i, p, &state.value, member);
                if member && state.value.leader == me {
                    self.maintain_isr(&cluster, &topic, i, p, &state).await;
                    if !leaving {
                        self.prefer_leader(&cluster, &topic, i, p, &state).await;
                    }
                }
            }
        }
        self.metrics.under_replicated_partitions.set(under);
        self.metrics.offline_partitions.set(offline);
        if member && !leaving {
            self.replace_gone_replicas(&cluster).await;
        }
    }

    /// `--replica-replace-after-ms`: a broker that has been gone that long is replaced, in the
    /// replica set of every partition naming it, by a live broker that holds no replica of the
    /// partition (rack-aware, least loaded first); the newcomer catches up as any follower
    /// does. Done by the broker named controller (the live broker with the lowest id), by
    /// compare-and-set, so brokers disagreeing about who that is cannot both apply a change.
    async fn replace_gone_replicas(&self, cluster: &Cluster) {
        let Some(after) = cluster.settings.replica_replace_after else {
            return;
        };
        let live = cluster.live_brokers();
        let now = self.config.clock.monotonic();
        let mut named: HashSet<i32> = HashSet::new();
        let mut load: HashMap<i32, usize> = live.iter().map(|b| (b.broker_id, 0)).collect();
        let mut states = Vec::new();
        for t in self.registry.topics() {
            for i in 0..t.partitions.len() as i32 {
                if let Some(st) = cluster.state(t.meta.id, i) {
                    for b in &st.value.replicas {
                        named.insert(*b);
                        if let Some(n) = load.get_mut(b) {
                            *n += 1;
                        }
                    }
                    states.push((t.clone(), i, st));
                }
            }
        }
        let gone: Vec<i32> = {
            let Ok(mut missing) = cluster.missing_since.lock() else {
                return;
            };
            missing.retain(|b, _| named.contains(b) && !cluster.is_live(*b));
            for b in &named {
                if !cluster.is_live(*b) {
                    missing.entry(*b).or_insert(now);
                }
            }
            missing
                .iter()
                .filter(|(_, since)| now.saturating_sub(**since) >= after)
                .map(|(b, _)| *b)
                .collect()
        };
        let controller = live.first().map(|b| b.broker_id);
        if gone.is_empty() || controller != Some(self.config.broker_id) {
            return;
        }
        for (topic, i, state) in states {
            let s = &state.value;
            if !s.replicas.iter().any(|b| gone.contains(b)) {
                continue;
            }
            let mut replicas = s.replicas.clone();
            let mut changed = false;
            for slot in replicas
                .clone()
                .iter()
                .enumerate()
                .filter(|(_, b)| gone.contains(b))
            {
                let racks: HashSet<Option<String>> = replicas
                    .iter()
                    .filter_map(|b| cluster.broker(*b))
                    .map(|r| r.rack)
                    .collect();
                let pick = live
                    .iter()
                    .filter(|c| !replicas.contains(&c.broker_id))
                    .min_by_key(|c| {
                        (
                            racks.contains(&c.rack),
                            load.get(&c.broker_id).copied().unwrap_or(0),
                            c.broker_id,
                        )
                    })
                    .map(|c| c.broker_id);
                if let Some(new) = pick {
                    replicas[slot.0] = new;
                    *load.entry(new).or_default() += 1;
                    changed = true;
                }
            }
            if !changed {
                continue;
            }
            let next = Placement {
                replicas: replicas.clone(),
                leader: s.leader,
                leader_epoch: s.leader_epoch,
                isr: s
                    .isr
                    .iter()
                    .copied()
                    .filter(|b| !gone.contains(b))
                    .collect(),
            };
            match self
                .change_state(cluster, topic.meta.id, i, state.version, next)
                .await
            {
                Ok(true) => info!(
                    topic = %topic.meta.name, partition = i, from = ?s.replicas, to = ?replicas,
                    "replaced the replicas of brokers gone longer than --replica-replace-after-ms"
                ),
                Ok(false) => {}
                Err(e) => {
                    warn!(topic = %topic.meta.name, partition = i, error = %e, "replacing replicas failed")
                }
            }
        }
    }

    /// Sets the lag gauges of every follower of a partition this broker leads.
    fn record_lag(&self, topic: &str, partition: i32, p: &Partition) {
        let now = self.config.clock.monotonic();
        let Ok(st) = p.state.lock() else { return };
        let Role::Leader { followers, .. } = &st.role else {
            return;
        };
        for (replica, f) in followers {
            let label = crate::metrics::ReplicaLabel {
                topic: topic.to_string(),
                partition,
                replica: *replica,
            };
            let behind = st.durable_end.saturating_sub(f.end).max(0);
            let bytes: u64 = st.index[st.find(f.end)..]
                .iter()
                .map(|e| u64::from(e.pos.len))
                .sum();
            let ms = if behind == 0 {
                0
            } else {
                now.saturating_sub(f.caught_up_at).as_millis() as i64
            };
            self.metrics
                .replica_lag_offsets
                .get_or_create(&label)
                .set(behind);
            self.metrics
                .replica_lag_bytes
                .get_or_create(&label)
                .set(bytes as i64);
            self.metrics.replica_lag_ms.get_or_create(&label).set(ms);
        }
    }

    /// Whether this broker should try to lead: the leader is gone (or there is none) and this
    /// broker is an in-sync replica (or any replica, for an unclean election the topic allows).
    fn should_elect(&self, cluster: &Cluster, topic: &Topic, state: &Placement) -> bool {
        let me = self.config.broker_id;
        if state.leader == me || (state.leader >= 0 && cluster.is_live(state.leader)) {
            return false;
        }
        if state.isr.contains(&me) {
            return true;
        }
        let unclean = topic
            .setting("unclean.leader.election.enable")
            .is_some_and(|v| v.trim() == "true");
        unclean && state.replicas.contains(&me) && !state.isr.iter().any(|b| cluster.is_live(*b))
    }

    async fn elect(
        &self,
        cluster: &Cluster,
        topic: &Topic,
        partition: i32,
        state: &Versioned<Placement>,
    ) {
        let me = self.config.broker_id;
        let mut isr: Vec<i32> = state
            .value
            .isr
            .iter()
            .copied()
            .filter(|b| *b == me || cluster.is_live(*b))
            .collect();
        if !isr.contains(&me) {
            isr = vec![me]; // unclean: this replica's log becomes the partition's
        }
        let next = Placement {
            replicas: state.value.replicas.clone(),
            leader: me,
            leader_epoch: state.value.leader_epoch + 1,
            isr,
        };
        let epoch = next.leader_epoch;
        match self
            .change_state(cluster, topic.meta.id, partition, state.version, next)
            .await
        {
            Ok(true) => {
                info!(
                    topic = %topic.meta.name, partition, epoch,
                    previous_leader = state.value.leader, "elected leader"
                );
                self.metrics.leader_elections.inc();
            }
            Ok(false) => {}
            Err(e) => warn!(topic = %topic.meta.name, partition, error = %e, "election failed"),
        }
    }

    /// Writes `next` over a partition state still at `version` (compare-and-set); on success
    /// caches it and wakes the reconcile loop. `Ok(false)`: another broker changed it first,
    /// and the cache was re-read.
    async fn change_state(
        &self,
        cluster: &Cluster,
        topic_id: Uuid,
        partition: i32,
        version: i64,
        next: Placement,
    ) -> Result<bool, MetaError> {
        match cluster
            .meta
            .update_partition_state(topic_id, partition, version, next.clone())
            .await
        {
            Ok(version) => {
                cluster.put_state(
                    topic_id,
                    partition,
                    Versioned {
                        value: next,
                        version,
                    },
                );
                cluster.kick();
                Ok(true)
            }
            Err(MetaError::Fenced(_)) => {
                self.reread(cluster, topic_id).await;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn reread(&self, cluster: &Cluster, topic_id: Uuid) {
        match cluster.meta.partition_states(topic_id).await {
            Ok(states) => {
                for (p, s) in states {
                    cluster.put_state(topic_id, p, s);
                }
            }
            Err(e) => warn!(error = %e, "re-reading partition states failed"),
        }
    }

    /// Sets a partition's role from its state.
    fn apply(
        self: &Arc<Self>,
        cluster: &Arc<Cluster>,
        topic: &Topic,
        partition: i32,
        p: &Arc<Partition>,
        state: &Placement,
        member: bool,
    ) {
        let me = self.config.broker_id;
        let now = self.config.clock.monotonic();
        let Ok(mut st) = p.state.lock() else { return };
        let others: Vec<i32> = state.isr.iter().copied().filter(|b| *b != me).collect();
        let changed = if state.leader == me && member {
            let same_epoch = st.leader_epoch == state.leader_epoch;
            match &mut st.role {
                Role::Leader { isr, .. } if same_epoch => {
                    *isr = others;
                    false
                }
                _ => {
                    st.role = Role::Leader {
                        isr: others,
                        followers: HashMap::new(),
                        since: now,
                    };
                    st.leader_epoch = state.leader_epoch;
                    info!(topic = %topic.meta.name, partition, epoch = state.leader_epoch, "leading");
                    true
                }
            }
        } else if state.leader >= 0 && state.replicas.contains(&me) && member {
            let same = matches!(&st.role, Role::Follower { leader, .. }
                if *leader == state.leader && st.leader_epoch == state.leader_epoch);
            if !same {
                let leader_hw = st.high_watermark;
                st.role = Role::Follower {
                    leader: state.leader,
                    leader_hw,
                    checked: false,
                };
                st.leader_epoch = state.leader_epoch;
                info!(
                    topic = %topic.meta.name, partition, leader = state.leader,
                    epoch = state.leader_epoch, "following"
                );
            }
            !same
        } else {
            let was = !matches!(st.role, Role::Absent);
            st.role = Role::Absent;
            st.leader_epoch = st.leader_epoch.max(state.leader_epoch);
            was
        };
        let moved = st.advance_high_watermark_at(now);
        let follows = match st.role {
            Role::Follower { leader, .. } => Some(leader),
            _ => None,
        };
        drop(st);
        if changed || moved {
            wake(p);
        }
        if let Some(leader) = follows {
            self.ensure_fetcher(cluster, leader);
        }
    }

    /// Shrinks the ISR of followers that stopped confirming (or left the cluster, or restarted
    /// as a new incarnation) and grows it with followers that caught up: one compare-and-set.
    async fn maintain_isr(
        &self,
        cluster: &Cluster,
        topic: &Topic,
        partition: i32,
        p: &Arc<Partition>,
        state: &Versioned<Placement>,
    ) {
        let me = self.config.broker_id;
        let now = self.config.clock.monotonic();
        let lag_max = cluster.settings.replica_lag_time_max;
        let wanted = {
            let Ok(st) = p.state.lock() else { return };
            let Role::Leader {
                isr,
                followers,
                since,
            } = &st.role
            else {
                return;
            };
            if st.leader_epoch != state.value.leader_epoch {
                return;
            }
            let view = isr::IsrView {
                me,
                replicas: &state.value.replicas,
                isr,
                followers,
                since: *since,
                now,
                lag_max,
                high_watermark: st.high_watermark,
                durable_end: st.durable_end,
                epoch_start: st
                    .epochs
                    .start_of(st.leader_epoch)
                    .unwrap_or(st.next_offset),
            };
            let next = isr::next_isr(&view, |b| cluster.is_live(b), |b| cluster.incarnation_of(b));
            let Some(next) = next else { return };
            next
        };
        let next = Placement {
            isr: wanted,
            ..state.value.clone()
        };
        let (from, to) = (state.value.isr.clone(), next.isr.clone());
        match self
            .change_state(cluster, topic.meta.id, partition, state.version, next)
            .await
        {
            Ok(true) => {
                info!(topic = %topic.meta.name, partition, ?from, ?to, "isr changed");
                if to.len() < from.len() {
                    self.metrics.isr_shrinks.inc();
                } else {
                    self.metrics.isr_expands.inc();
                }
            }
            Ok(false) => {}
            Err(e) => {
                warn!(topic = %topic.meta.name, partition, error = %e, "isr change failed; acks=all waits")
            }
        }
    }

    /// Kafka's auto leader rebalance: a partition led by another replica than its preferred
    /// one (the first) is handed back once the preferred replica is live, in sync and has
    /// everything committed, and this broker has led for [`PREFERRED_AFTER`] (so a broker
    /// that just returned is not handed load while it catches up, and leadership does not flap).
    async fn prefer_leader(
        &self,
        cluster: &Cluster,
        topic: &Topic,
        partition: i32,
        p: &Arc<Partition>,
        state: &Versioned<Placement>,
    ) {
        let me = self.config.broker_id;
        let s = &state.value;
        let Some(&preferred) = s.replicas.first() else {
            return;
        };
        let ready = p.state.lock().is_ok_and(|st| match &st.role {
            Role::Leader {
                followers, since, ..
            } => isr::hand_back_to_preferred(
                me,
                preferred,
                &s.isr,
                cluster.is_live(preferred),
                followers,
                st.high_watermark,
                self.config.clock.monotonic().saturating_sub(*since),
                PREFERRED_AFTER,
            ),
            _ => false,
        });
        if !ready {
            return;
        }
        let new = Placement {
            leader: preferred,
            leader_epoch: s.leader_epoch + 1,
            ..s.clone()
        };
        match self
            .change_state(cluster, topic.meta.id, partition, state.version, new)
            .await
        {
            Ok(true) => {
                info!(topic = %topic.meta.name, partition, to = preferred, "leadership back to the preferred replica");
            }
            Ok(false) => {}
            Err(e) => {
                warn!(topic = %topic.meta.name, partition, error = %e, "moving leadership failed")
            }
        }
    }

    /// Records what a follower's fetch says it has (its fetch offset: everything below is
    /// durable on it), on the partition it asks of this leader. Returns whether the high
    /// watermark moved. `Err` with the Kafka error code when this broker does not lead the
    /// partition at the epoch the follower names.
    pub(crate) fn note_follower(
        &self,
        st: &mut crate::log::PartitionState,
        replica: i32,
        fetch_offset: i64,
        current_leader_epoch: i32,
    ) -> Result<bool, i16> {
        let Some(cluster) = &self.cluster else {
            return Err(kafka_protocol::ResponseError::NotLeaderOrFollower.code());
        };
        let fetch = isr::FollowerFetch {
            replica,
            fetch_offset,
            leader_epoch: current_leader_epoch,
            incarnation: cluster.incarnation_of(replica).unwrap_or(Uuid::nil()),
        };
        let now = self.config.clock.monotonic();
        isr::note_fetch(&mut st.role, st.leader_epoch, st.durable_end, fetch, now)?;
        Ok(st.advance_high_watermark_at(now))
    }

    /// Starts a replica fetcher for `leader` unless one runs.
    fn ensure_fetcher(self: &Arc<Self>, cluster: &Arc<Cluster>, leader: i32) {
        let Ok(mut running) = cluster.fetchers.lock() else {
            return;
        };
        if !running.insert(leader) {
            return;
        }
        drop(running);
        let b = self.clone();
        tokio::spawn(async move {
            sediment_replication::fetcher::run(Arc::new(crate::follower::FollowerHost(b)), leader)
                .await;
        });
    }

    /// Called by a fetcher about to exit for lack of partitions: exits only if still none
    /// follow its leader (checked under the same lock [`Broker::ensure_fetcher`] takes).
    pub(crate) fn fetcher_done(&self, leader: i32) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let Ok(mut running) = cluster.fetchers.lock() else {
            return true;
        };
        if self.followed(leader).is_empty() {
            running.remove(&leader);
            true
        } else {
            false
        }
    }

    /// The partitions this broker follows `leader` for.
    pub(crate) fn followed(&self, leader: i32) -> Vec<(Arc<Topic>, i32, Arc<Partition>)> {
        let mut out = Vec::new();
        for t in self.registry.topics() {
            for (i, p) in t.partitions.iter().enumerate() {
                let follows = p.state.lock().is_ok_and(
                    |st| matches!(st.role, Role::Follower { leader: l, .. } if l == leader),
                );
                if follows {
                    out.push((t.clone(), i as i32, p.clone()));
                }
            }
        }
        out
    }

    /// Replicas of a topic created with replication factor -1: one on a single node; in a
    /// cluster `--default-replication-factor`, else min(3, live brokers).
    pub fn default_replication_factor(&self) -> i32 {
        match &self.cluster {
            None => 1,
            Some(c) => c
                .settings
                .default_replication_factor
                .unwrap_or_else(|| (c.live_brokers().len() as i32).clamp(1, 3)),
        }
    }

    /// Places a new topic's (or new partitions') replicas across the live brokers and racks.
    /// `replication_factor` -1 takes the default. Kafka's errors: INVALID_REPLICATION_FACTOR.
    pub fn place_replicas(
        &self,
        first: i32,
        count: i32,
        replication_factor: i32,
    ) -> Result<Vec<Vec<i32>>, (i16, String)> {
        use kafka_protocol::ResponseError;
        use sediment_meta::placement::{place, Candidate, PlacementError};
        let Some(cluster) = &self.cluster else {
            return Ok(vec![vec![self.config.broker_id]; count.max(0) as usize]);
        };
        let live = cluster.live_brokers();
        let rf = match replication_factor {
            -1 => self.default_replication_factor(),
            n => n,
        };
        let candidates: Vec<Candidate> = live
            .iter()
            .map(|b| Candidate {
                broker_id: b.broker_id,
                rack: b.rack.clone(),
            })
            .collect();
        // Leaders rotate from a point that differs per topic, so many small topics do not all
        // lead on the first broker.
        let start = (self.config.clock.wall_ms().unsigned_abs() as usize) % live.len().max(1);
        place(&candidates, first, count, i64::from(rf), start).map_err(|e| {
            let code = match e {
                PlacementError::BadPartitions(_) => ResponseError::InvalidPartitions.code(),
                _ => ResponseError::InvalidReplicationFactor.code(),
            };
            (code, e.to_string())
        })
    }

    /// Writes the states of newly created partitions (each led by its first replica, all
    /// replicas in sync: they are all empty) and caches them.
    pub async fn create_partition_states(
        &self,
        topic_id: Uuid,
        first: i32,
        assignment: &[Vec<i32>],
    ) -> Result<(), MetaError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let states: Vec<(i32, Placement)> = assignment
            .iter()
            .enumerate()
            .map(|(i, replicas)| {
                (
                    first + i as i32,
                    Placement {
                        replicas: replicas.clone(),
                        leader: replicas.first().copied().unwrap_or(-1),
                        leader_epoch: 0,
                        isr: replicas.clone(),
                    },
                )
            })
            .collect();
        cluster
            .meta
            .create_partition_states(topic_id, states)
            .await?;
        for (p, s) in cluster.meta.partition_states(topic_id).await? {
            cluster.put_state(topic_id, p, s);
        }
        cluster.kick();
        Ok(())
    }
}

/// Replaces a partition's role (waking its waiters) unless it already has that kind.
fn set_role(p: &Partition, role: Role, epoch: Option<i32>) {
    let Ok(mut st) = p.state.lock() else { return };
    if std::mem::discriminant(&st.role) == std::mem::discriminant(&role) {
        return;
    }
    st.role = role;
    if let Some(e) = epoch {
        st.leader_epoch = e;
    }
    drop(st);
    wake(p);
}

impl Broker {
    /// Creates a topic; in a cluster with its replicas placed (`assignment`, or across the
    /// live brokers by `replication_factor`, -1 for the default) and its partition states
    /// written. A topic of three or more replicas gets `min.insync.replicas=2` unless it
    /// names its own: with stateless brokers a disk can vanish, so acks=all means two copies.
    pub async fn create_topic_placed(
        self: &Arc<Self>,
        name: &str,
        partitions: i32,
        mut configs: BTreeMap<String, String>,
        replication_factor: i32,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<sediment_meta::TopicMeta, (i16, String)> {
        use kafka_protocol::ResponseError;
        let placed = match (&self.cluster, assignment) {
            (None, _) => None,
            (Some(cluster), Some(a)) => {
                for replicas in &a {
                    let mut seen = HashSet::new();
                    if replicas.is_empty()
                        || replicas
                            .iter()
                            .any(|b| !seen.insert(*b) || !cluster.is_live(*b))
                    {
                        return Err((
                            ResponseError::InvalidReplicaAssignment.code(),
                            format!(
                                "replica assignment {replicas:?} names a broker that is not \
                                 live, or one twice"
                            ),
                        ));
                    }
                }
                Some(a)
            }
            (Some(_), None) => Some(self.place_replicas(0, partitions, replication_factor)?),
        };
        if let Some(a) = &placed {
            if a.first().is_some_and(|r| r.len() >= 3) {
                configs
                    .entry("min.insync.replicas".into())
                    .or_insert_with(|| "2".into());
            }
        }
        let meta = self
            .meta
            .create_topic(name, partitions, configs)
            .await
            .map_err(|e| (crate::handlers::meta_error_code(&e), e.to_string()))?;
        if let Some(a) = &placed {
            if let Err(e) = self.create_partition_states(meta.id, 0, a).await {
                tracing::error!(topic = name, error = %e, "writing the new topic's partition states failed");
                return Err((crate::handlers::meta_error_code(&e), e.to_string()));
            }
            // Roles at once, so a produce right after the creation finds its leader ready.
            self.registry.upsert_topic(meta.clone());
            self.reconcile().await;
        }
        Ok(meta)
    }

    /// Adds partitions to a topic, placing the new ones in a cluster as
    /// [`Broker::create_topic_placed`] does (with the topic's replication factor).
    pub async fn add_partitions_placed(
        self: &Arc<Self>,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<sediment_meta::TopicMeta, (i16, String)> {
        let current = self.registry.topic(name);
        let placed = match (&self.cluster, current) {
            (Some(cluster), Some(t)) => {
                let first = t.meta.partitions;
                let rf = cluster
                    .state(t.meta.id, 0)
                    .map_or(-1, |s| s.value.replicas.len() as i32);
                Some(match assignment {
                    Some(a) => a,
                    None => self.place_replicas(first, count - first, rf)?,
                })
                .map(|a| (t.meta.id, first, a))
            }
            _ => None,
        };
        let meta = self
            .meta
            .add_partitions(name, count)
            .await
            .map_err(|e| (crate::handlers::meta_error_code(&e), e.to_string()))?;
        if let Some((id, first, a)) = placed {
            self.create_partition_states(id, first, &a)
                .await
                .map_err(|e| (crate::handlers::meta_error_code(&e), e.to_string()))?;
            self.registry.upsert_topic(meta.clone());
            self.reconcile().await;
        }
        Ok(meta)
    }
}
