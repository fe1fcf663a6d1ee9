//! The group coordinator: one task per consumer group, owning that group's state.
//!
//! Handlers send a [`Command`] to the group's task and await the answer on a oneshot, so each
//! group's state has a single writer and no lock is held while a JoinGroup or SyncGroup waits
//! for the rest of the group. Committed offsets are not kept here: they live in the
//! `MetaStore`; the group only validates that a commit comes from a current member.

pub mod state;

use std::collections::HashMap;
use std::sync::Mutex;

use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use state::Group;
pub use state::{GroupConfig, GroupView, JoinArgs, JoinResult, State, SyncArgs, SyncResult};

/// A request to a group's task.
pub enum Command {
    Join(JoinArgs, oneshot::Sender<JoinResult>),
    Sync(SyncArgs, oneshot::Sender<SyncResult>),
    Heartbeat {
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        reply: oneshot::Sender<i16>,
    },
    Leave(Vec<(String, Option<String>)>, oneshot::Sender<Vec<i16>>),
    CheckCommit {
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        reply: oneshot::Sender<Result<(), i16>>,
    },
    View(oneshot::Sender<GroupView>),
    /// Deletes the group if it has no members.
    Delete(oneshot::Sender<Result<(), i16>>),
}

async fn run_group(mut group: Group, mut rx: mpsc::UnboundedReceiver<Command>) {
    loop {
        let deadline = group.next_deadline();
        let cmd = tokio::select! {
            cmd = rx.recv() => cmd,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                group.on_timer(Instant::now());
                continue;
            }
        };
        let Some(cmd) = cmd else { break };
        let now = Instant::now();
        match cmd {
            Command::Join(args, reply) => group.join(args, reply, now),
            Command::Sync(args, reply) => group.sync(args, reply, now),
            Command::Heartbeat {
                member_id,
                instance_id,
                generation,
                reply,
            } => {
                let _ = reply.send(group.heartbeat(&member_id, &instance_id, generation, now));
            }
            Command::Leave(who, reply) => {
                let _ = reply.send(group.leave(&who, now));
            }
            Command::CheckCommit {
                member_id,
                instance_id,
                generation,
                reply,
            } => {
                let _ = reply.send(group.check_commit(&member_id, &instance_id, generation, now));
            }
            Command::View(reply) => {
                let _ = reply.send(group.view());
            }
            Command::Delete(reply) => {
                if group.is_empty() {
                    group.kill();
                    let _ = reply.send(Ok(()));
                    break;
                }
                let _ = reply.send(Err(ResponseError::NonEmptyGroup.code()));
            }
        }
    }
}

/// All groups of this broker.
pub struct Coordinator {
    groups: Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>,
    config: GroupConfig,
}

impl Coordinator {
    pub fn new(config: GroupConfig) -> Self {
        Self {
            groups: Mutex::default(),
            config,
        }
    }

    /// The group's task, started if `create` and absent.
    fn group(&self, id: &str, create: bool) -> Option<mpsc::UnboundedSender<Command>> {
        let mut groups = self.groups.lock().ok()?;
        if let Some(tx) = groups.get(id).filter(|tx| !tx.is_closed()) {
            return Some(tx.clone());
        }
        if !create {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_group(
            Group::new(id.to_string(), self.config.clone()),
            rx,
        ));
        groups.insert(id.to_string(), tx.clone());
        Some(tx)
    }

    /// Sends a command built around a fresh oneshot and awaits the answer. `None` if the group
    /// does not exist (and `create` is false) or went away meanwhile.
    async fn ask<T>(
        &self,
        id: &str,
        create: bool,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Option<T> {
        let tx = self.group(id, create)?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply)).ok()?;
        rx.await.ok()
    }

    pub async fn join(&self, id: &str, args: JoinArgs) -> JoinResult {
        let member_id = args.member_id.clone();
        self.ask(id, true, |r| Command::Join(args, r))
            .await
            .unwrap_or_else(|| JoinResult {
                error: ResponseError::CoordinatorNotAvailable.code(),
                generation: -1,
                member_id,
                ..Default::default()
            })
    }

    pub async fn sync(&self, id: &str, args: SyncArgs) -> SyncResult {
        self.ask(id, false, |r| Command::Sync(args, r))
            .await
            .unwrap_or_else(|| SyncResult {
                error: ResponseError::UnknownMemberId.code(),
                ..Default::default()
            })
    }

    pub async fn heartbeat(
        &self,
        id: &str,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    ) -> i16 {
        self.ask(id, false, |reply| Command::Heartbeat {
            member_id,
            instance_id,
            generation,
            reply,
        })
        .await
        .unwrap_or(ResponseError::UnknownMemberId.code())
    }

    pub async fn leave(&self, id: &str, who: Vec<(String, Option<String>)>) -> Vec<i16> {
        let n = who.len();
        self.ask(id, false, |r| Command::Leave(who, r))
            .await
            .unwrap_or_else(|| vec![ResponseError::UnknownMemberId.code(); n])
    }

    /// Whether a commit with this identity may be stored. A group that does not exist here
    /// accepts only commits from outside the group protocol (generation < 0, no member id);
    /// others get GROUP_ID_NOT_FOUND, as Kafka answers OffsetCommit v9+ (the handler turns it
    /// into ILLEGAL_GENERATION for older versions, as Kafka does).
    pub async fn check_commit(
        &self,
        id: &str,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    ) -> Result<(), i16> {
        let outsider = generation < 0 && member_id.is_empty();
        match self
            .ask(id, false, |reply| Command::CheckCommit {
                member_id,
                instance_id,
                generation,
                reply,
            })
            .await
        {
            Some(r) => r,
            None if outsider => Ok(()),
            None => Err(ResponseError::GroupIdNotFound.code()),
        }
    }

    /// The group as it is now, if it has a task.
    pub async fn view(&self, id: &str) -> Option<GroupView> {
        self.ask(id, false, Command::View).await
    }

    /// Deletes an empty group's state. `Ok(false)` if there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, i16> {
        let result = self.ask(id, false, Command::Delete).await;
        match result {
            None => Ok(false),
            Some(Ok(())) => {
                if let Ok(mut groups) = self.groups.lock() {
                    groups.remove(id);
                }
                Ok(true)
            }
            Some(Err(code)) => Err(code),
        }
    }

    /// Ids of groups that have a task.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|(_, tx)| !tx.is_closed())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
