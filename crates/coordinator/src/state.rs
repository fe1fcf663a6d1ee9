//! One consumer group's state machine (the classic rebalance protocol).
//!
//! Pure logic: every transition takes `now`, and replies go out on the oneshot senders that
//! the requests brought, so the owning task ([`super::run_group`]) only has to feed it commands
//! and wake it at [`Group::next_deadline`]. Tests drive it with tokio's paused clock.
//!
//! States follow Kafka's: Empty -> PreparingRebalance (collecting JoinGroups) ->
//! CompletingRebalance (waiting for the leader's SyncGroup) -> Stable. A rebalance completes
//! when every known member has rejoined (and, for a group that was empty, after the initial
//! rebalance delay, extended by each new member), or when the rebalance timeout passes, in
//! which case members that did not rejoin are removed.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

/// Group settings (Kafka's broker-side group.* configs).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_millis(300),
            min_session_timeout: Duration::from_millis(6_000),
            max_session_timeout: Duration::from_millis(1_800_000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// What a JoinGroup is answered with.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, group instance id, metadata): only for the leader.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// KIP-814: the leader already assigned this generation; it must not assign again.
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(code: i16, member_id: &str) -> Self {
        Self {
            error: code,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What a SyncGroup is answered with.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(code: i16) -> Self {
        Self {
            error: code,
            ..Default::default()
        }
    }
}

/// A JoinGroup request's content.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394: v4+ clients must come back with the member id they are given.
    pub require_known_member_id: bool,
}

/// A SyncGroup request's content.
#[derive(Debug, Clone)]
pub struct SyncArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: State,
    pub protocol_type: String,
    pub protocol_name: String,
    pub generation: i32,
    pub members: Vec<MemberView>,
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join: Option<oneshot::Sender<JoinResult>>,
    sync: Option<oneshot::Sender<SyncResult>>,
    /// The session expires here unless a heartbeat (or join/sync) comes first.
    deadline: Instant,
}

impl Member {
    /// Takes what a (re)join says about the member, and restarts its session.
    fn refresh(&mut self, args: JoinArgs, now: Instant) {
        self.protocols = args.protocols;
        self.session_timeout = args.session_timeout;
        self.rebalance_timeout = args.rebalance_timeout;
        self.client_id = args.client_id;
        self.client_host = args.client_host;
        self.deadline = now + self.session_timeout;
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// One group.
pub struct Group {
    pub id: String,
    config: GroupConfig,
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order: the first is the leader if the old one is gone.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet back (KIP-394), with expiry.
    pending: Vec<(String, Instant)>,
    rebalance_deadline: Option<Instant>,
    join_not_before: Option<Instant>,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl Group {
    pub fn new(id: String, config: GroupConfig) -> Self {
        Self {
            id,
            config,
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: Vec::new(),
            rebalance_deadline: None,
            join_not_before: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn member_index(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// Protocols every member supports, in the order the first member prefers them.
    fn common_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    /// The protocol chosen for a generation: each member votes for its most preferred common
    /// protocol; most votes win, ties go to the first member's preference.
    fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols();
        let votes = |name: &String| {
            self.members
                .iter()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n)
                        .find(|n| common.contains(n))
                        == Some(name)
                })
                .count()
        };
        common
            .iter()
            .fold(None::<(&String, usize)>, |best, n| {
                let v = votes(n);
                match best {
                    Some((_, bv)) if bv >= v => best,
                    _ => Some((n, v)),
                }
            })
            .map(|(n, _)| n.clone())
    }

    pub fn join(&mut self, args: JoinArgs, reply: oneshot::Sender<JoinResult>, now: Instant) {
        let fail = |reply: oneshot::Sender<JoinResult>, e: ResponseError, id: &str| {
            let _ = reply.send(JoinResult::error(code(e), id));
        };
        if self.state == State::Dead {
            return fail(
                reply,
                ResponseError::CoordinatorNotAvailable,
                &args.member_id,
            );
        }
        if args.session_timeout < self.config.min_session_timeout
            || args.session_timeout > self.config.max_session_timeout
        {
            return fail(reply, ResponseError::InvalidSessionTimeout, &args.member_id);
        }
        if args.protocol_type.is_empty() || args.protocols.is_empty() {
            return fail(
                reply,
                ResponseError::InconsistentGroupProtocol,
                &args.member_id,
            );
        }
        if !self.members.is_empty() {
            let same_type = self.protocol_type.as_deref() == Some(args.protocol_type.as_str());
            let common = self.common_protocols();
            let overlaps = args.protocols.iter().any(|(n, _)| common.contains(n));
            if !same_type || !overlaps {
                return fail(
                    reply,
                    ResponseError::InconsistentGroupProtocol,
                    &args.member_id,
                );
            }
        }

        let mut is_new = false;
        let member_id = if args.member_id.is_empty() {
            let prefix = args.instance_id.as_deref().unwrap_or(&args.client_id);
            let new_id = format!("{prefix}-{}", Uuid::new_v4());
            if let Some(inst) = &args.instance_id {
                if let Some(i) = self
                    .members
                    .iter()
                    .position(|m| m.instance_id.as_ref() == Some(inst))
                {
                    return self.rejoin_static(i, new_id, args, reply, now);
                }
            }
            if args.require_known_member_id && args.instance_id.is_none() {
                self.pending
                    .push((new_id.clone(), now + args.session_timeout));
                let _ = reply.send(JoinResult::error(
                    code(ResponseError::MemberIdRequired),
                    &new_id,
                ));
                return;
            }
            self.add_member(new_id.clone(), &args, now);
            is_new = true;
            new_id
        } else if let Some(i) = self.member_index(&args.member_id) {
            if args.instance_id.is_some() && self.members[i].instance_id != args.instance_id {
                return fail(reply, ResponseError::FencedInstanceId, &args.member_id);
            }
            args.member_id.clone()
        } else if let Some(p) = self
            .pending
            .iter()
            .position(|(id, _)| *id == args.member_id)
        {
            self.pending.remove(p);
            self.add_member(args.member_id.clone(), &args, now);
            is_new = true;
            args.member_id.clone()
        } else {
            let fenced = args.instance_id.is_some()
                && self
                    .members
                    .iter()
                    .any(|m| m.instance_id == args.instance_id);
            let e = if fenced {
                ResponseError::FencedInstanceId
            } else {
                ResponseError::UnknownMemberId
            };
            return fail(reply, e, &args.member_id);
        };

        let Some(i) = self.member_index(&member_id) else {
            return fail(reply, ResponseError::UnknownMemberId, &member_id);
        };
        let unchanged = !is_new && self.members[i].protocols == args.protocols;
        self.members[i].refresh(args, now);
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            State::PreparingRebalance => {
                self.members[i].join = Some(reply);
                self.maybe_complete_join(now);
            }
            State::CompletingRebalance | State::Stable
                if unchanged && (!is_leader || self.state == State::CompletingRebalance) =>
            {
                // Nothing changed: answer with the current generation, no new rebalance.
                let result = self.join_result(&member_id);
                let _ = reply.send(result);
            }
            _ => {
                self.members[i].join = Some(reply);
                self.prepare_rebalance(now);
            }
        }
    }

    /// KIP-345: a static member came back with a new member id; it replaces the old one.
    fn rejoin_static(
        &mut self,
        i: usize,
        new_id: String,
        args: JoinArgs,
        reply: oneshot::Sender<JoinResult>,
        now: Instant,
    ) {
        let old_id = std::mem::replace(&mut self.members[i].id, new_id.clone());
        let m = &mut self.members[i];
        if let Some(old) = m.join.take() {
            let _ = old.send(JoinResult::error(
                code(ResponseError::FencedInstanceId),
                &old_id,
            ));
        }
        if let Some(old) = m.sync.take() {
            let _ = old.send(SyncResult::error(code(ResponseError::FencedInstanceId)));
        }
        m.refresh(args, now);
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        // A restarted static member whose metadata leaves the group's protocol as it is
        // takes its old place in the current generation: no rebalance (KIP-345). Its
        // metadata may differ (a cooperative assignor's owned partitions are empty after a
        // restart); only the protocol choice matters. A rejoining leader gets the member
        // list but is told to skip the assignment (KIP-814).
        if self.state == State::Stable && self.select_protocol() == self.protocol {
            let mut result = self.join_result(&new_id);
            result.skip_assignment = was_leader;
            let _ = reply.send(result);
            return;
        }
        self.members[i].join = Some(reply);
        if self.state == State::PreparingRebalance {
            self.maybe_complete_join(now);
        } else {
            self.prepare_rebalance(now);
        }
    }

    fn add_member(&mut self, id: String, args: &JoinArgs, now: Instant) {
        if self.members.is_empty() {
            self.protocol_type = Some(args.protocol_type.clone());
        }
        self.members.push(Member {
            id,
            instance_id: args.instance_id.clone(),
            client_id: args.client_id.clone(),
            client_host: args.client_host.clone(),
            session_timeout: args.session_timeout,
            rebalance_timeout: args.rebalance_timeout,
            protocols: args.protocols.clone(),
            assignment: Bytes::new(),
            join: None,
            sync: None,
            deadline: now + args.session_timeout,
        });
        // A new member during the initial delay pushes the delay out (bounded by the
        // rebalance deadline), so a group starting together settles in one generation.
        if let (Some(_), Some(deadline)) = (self.join_not_before, self.rebalance_deadline) {
            self.join_not_before = Some((now + self.config.initial_rebalance_delay).min(deadline));
        }
    }

    fn join_result(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .iter()
                    .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == State::CompletingRebalance {
            for m in &mut self.members {
                if let Some(s) = m.sync.take() {
                    let _ = s.send(SyncResult::error(code(ResponseError::RebalanceInProgress)));
                }
            }
        }
        let was_empty = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        let longest = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + longest);
        self.join_not_before =
            was_empty.then(|| (now + self.config.initial_rebalance_delay).min(now + longest));
        self.maybe_complete_join(now);
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.members.iter().all(|m| m.join.is_some()) && self.pending.is_empty();
        let delay_over = self.join_not_before.is_none_or(|t| now >= t);
        let timed_out = self.rebalance_deadline.is_some_and(|t| now >= t);
        if (all_joined && delay_over) || timed_out {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        // Members that did not rejoin in time are out.
        self.members.retain(|m| m.join.is_some());
        self.rebalance_deadline = None;
        self.join_not_before = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.iter().any(|m| &m.id == l))
        {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.state = State::CompletingRebalance;
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let result = self.join_result(&id);
            if let Some(i) = self.member_index(&id) {
                let m = &mut self.members[i];
                m.assignment = Bytes::new();
                m.deadline = now + m.session_timeout;
                if let Some(reply) = m.join.take() {
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn become_empty(&mut self) {
        self.state = State::Empty;
        self.protocol = None;
        // The protocol type stays, as in Kafka: an emptied consumer group is still one.
        self.leader = None;
    }

    fn check_member(&self, member_id: &str, instance_id: &Option<String>) -> Result<usize, i16> {
        // A static member replaced by a newer one with its instance id is fenced, as Kafka
        // answers (FENCED_INSTANCE_ID is fatal for the old consumer; UNKNOWN_MEMBER_ID would
        // make it rejoin and take the instance id back, for ever).
        if let Some(inst) = instance_id {
            if let Some(holder) = self
                .members
                .iter()
                .position(|m| m.instance_id.as_ref() == Some(inst))
            {
                return if self.members[holder].id == member_id {
                    Ok(holder)
                } else {
                    Err(code(ResponseError::FencedInstanceId))
                };
            }
        }
        match self.member_index(member_id) {
            None => Err(code(ResponseError::UnknownMemberId)),
            Some(i) if instance_id.is_some() && self.members[i].instance_id != *instance_id => {
                Err(code(ResponseError::FencedInstanceId))
            }
            Some(i) => Ok(i),
        }
    }

    pub fn sync(&mut self, args: SyncArgs, reply: oneshot::Sender<SyncResult>, now: Instant) {
        let fail = |reply: oneshot::Sender<SyncResult>, c: i16| {
            let _ = reply.send(SyncResult::error(c));
        };
        let i = match self.check_member(&args.member_id, &args.instance_id) {
            Ok(i) => i,
            Err(c) => return fail(reply, c),
        };
        if args.generation != self.generation {
            return fail(reply, code(ResponseError::IllegalGeneration));
        }
        let mismatched =
            |given: &Option<String>, have: &Option<String>| given.is_some() && given != have;
        if mismatched(&args.protocol_type, &self.protocol_type)
            || mismatched(&args.protocol_name, &self.protocol)
        {
            return fail(reply, code(ResponseError::InconsistentGroupProtocol));
        }
        self.members[i].deadline = now + self.members[i].session_timeout;
        match self.state {
            State::Empty | State::Dead => fail(reply, code(ResponseError::UnknownMemberId)),
            State::PreparingRebalance => fail(reply, code(ResponseError::RebalanceInProgress)),
            State::Stable => {
                let _ = reply.send(self.sync_result(i));
            }
            State::CompletingRebalance => {
                self.members[i].sync = Some(reply);
                if self.leader.as_deref() == Some(args.member_id.as_str()) {
                    for m in &mut self.members {
                        m.assignment = args
                            .assignments
                            .iter()
                            .find(|(id, _)| *id == m.id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                    }
                    self.state = State::Stable;
                    for i in 0..self.members.len() {
                        let result = self.sync_result(i);
                        if let Some(s) = self.members[i].sync.take() {
                            let _ = s.send(result);
                        }
                    }
                }
            }
        }
    }

    fn sync_result(&self, i: usize) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members[i].assignment.clone(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if matches!(self.state, State::Empty | State::Dead) {
            return code(ResponseError::UnknownMemberId);
        }
        let i = match self.check_member(member_id, instance_id) {
            Ok(i) => i,
            Err(c) => return c,
        };
        if generation != self.generation {
            return code(ResponseError::IllegalGeneration);
        }
        self.members[i].deadline = now + self.members[i].session_timeout;
        if self.state == State::PreparingRebalance {
            code(ResponseError::RebalanceInProgress)
        } else {
            0
        }
    }

    /// Validates an OffsetCommit against the group; `Ok` means the commit may be stored.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: &Option<String>,
        generation: i32,
        now: Instant,
    ) -> Result<(), i16> {
        if generation < 0 && member_id.is_empty() {
            // A commit from outside the group protocol (assign() consumers, admin tools):
            // allowed only while no member owns partitions.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(code(ResponseError::UnknownMemberId))
            };
        }
        // A group being removed: retriable, the client finds the coordinator again (Kafka).
        if self.state == State::Dead {
            return Err(code(ResponseError::CoordinatorNotAvailable));
        }
        if self.state == State::Empty {
            return Err(code(ResponseError::UnknownMemberId));
        }
        let i = self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(code(ResponseError::IllegalGeneration));
        }
        if self.state == State::CompletingRebalance {
            return Err(code(ResponseError::RebalanceInProgress));
        }
        self.members[i].deadline = now + self.members[i].session_timeout;
        Ok(())
    }

    /// Removes members (LeaveGroup); one error code per `(member id, instance id)`.
    pub fn leave(&mut self, who: &[(String, Option<String>)], now: Instant) -> Vec<i16> {
        let mut codes = Vec::with_capacity(who.len());
        let mut removed = false;
        for (member_id, instance_id) in who {
            let found = if member_id.is_empty() {
                instance_id.as_ref().and_then(|inst| {
                    self.members
                        .iter()
                        .position(|m| m.instance_id.as_ref() == Some(inst))
                })
            } else {
                match self.check_member(member_id, instance_id) {
                    Ok(i) => Some(i),
                    Err(c) => {
                        codes.push(c);
                        continue;
                    }
                }
            };
            match found {
                Some(i) => {
                    self.remove_member(i);
                    removed = true;
                    codes.push(0);
                }
                None => codes.push(code(ResponseError::UnknownMemberId)),
            }
        }
        if removed {
            self.after_removal(now);
        }
        codes
    }

    fn remove_member(&mut self, i: usize) {
        let m = self.members.remove(i);
        if let Some(j) = m.join {
            let _ = j.send(JoinResult::error(
                code(ResponseError::UnknownMemberId),
                &m.id,
            ));
        }
        if let Some(s) = m.sync {
            let _ = s.send(SyncResult::error(code(ResponseError::UnknownMemberId)));
        }
    }

    fn after_removal(&mut self, now: Instant) {
        if self.members.is_empty() && self.state != State::PreparingRebalance {
            self.generation += 1;
            self.become_empty();
        } else if self.state == State::PreparingRebalance {
            self.maybe_complete_join(now);
        } else {
            self.prepare_rebalance(now);
        }
    }

    /// Expires sessions and pending member ids, and completes a timed-out rebalance.
    pub fn on_timer(&mut self, now: Instant) {
        self.pending.retain(|(_, expiry)| *expiry > now);
        let preparing = self.state == State::PreparingRebalance;
        let mut expired = false;
        let mut i = 0;
        while i < self.members.len() {
            let m = &self.members[i];
            // A member waiting in JoinGroup is covered by the rebalance timeout instead.
            if m.deadline <= now && !(preparing && m.join.is_some()) {
                tracing::info!(group = %self.id, member = %m.id, "session expired; removing member");
                self.remove_member(i);
                expired = true;
            } else {
                i += 1;
            }
        }
        if expired {
            self.after_removal(now);
        } else {
            self.maybe_complete_join(now);
        }
    }

    /// When [`Group::on_timer`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let preparing = self.state == State::PreparingRebalance;
        let sessions = self
            .members
            .iter()
            .filter(|m| !(preparing && m.join.is_some()))
            .map(|m| m.deadline);
        let pending = self.pending.iter().map(|(_, t)| *t);
        sessions
            .chain(pending)
            .chain(self.rebalance_deadline)
            .chain(self.join_not_before.filter(|_| preparing))
            .min()
    }

    /// Marks the group deleted: every waiter is told, nothing more is accepted.
    pub fn kill(&mut self) {
        while !self.members.is_empty() {
            self.remove_member(0);
        }
        self.state = State::Dead;
    }

    pub fn view(&self) -> GroupView {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupView {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.clone(),
            generation: self.generation,
            members: self
                .members
                .iter()
                .map(|m| MemberView {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}
