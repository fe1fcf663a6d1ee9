//! `sediment groups`: list, describe (with lag), delete, and reset offsets of a stopped group.

use std::collections::{BTreeMap, HashMap};

use crate::admin::error_name;
use anyhow::{bail, Context};
use bytes::Buf;
use clap::{Args, Subcommand};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use sediment_protocol::client::Client;

#[derive(Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    broker: crate::admin::BrokerAddr,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Subcommand)]
enum GroupsCommand {
    /// List consumer groups with their state.
    List,
    /// Show a group's state, members, and per partition its committed offset, log end and lag.
    Describe { group: String },
    /// Delete a group that has no active members (its committed offsets go too).
    Delete { group: String },
    /// Set a stopped group's committed offsets for a topic.
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all of the topic's partitions).
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long, group = "to", required = true)]
        to_earliest: bool,
        #[arg(long, group = "to", required = true)]
        to_latest: bool,
        #[arg(long, group = "to", required = true)]
        to_offset: Option<i64>,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Partitions a member owns, from its consumer-protocol assignment.
fn assigned(bytes: &bytes::Bytes) -> Vec<(String, i32)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let mut b = bytes.clone();
    let version = b.get_i16();
    ConsumerProtocolAssignment::decode(&mut b, version.clamp(0, 3))
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .flat_map(|tp| {
                    let t = tp.topic.to_string();
                    tp.partitions.into_iter().map(move |p| (t.clone(), p))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Latest (-1) or earliest (-2) offsets of the given partitions, each asked of its leader
/// (found with Metadata through `bootstrap`; in a cluster other brokers refuse).
async fn list_offsets(
    broker: &crate::admin::BrokerAddr,
    bootstrap: &Client,
    partitions: &[(String, i32)],
    which: i64,
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let mut topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    let mut mreq = MetadataRequest::default();
    mreq.topics = Some(
        topics
            .iter()
            .map(|t| {
                let mut mt = MetadataRequestTopic::default();
                mt.name = Some(TopicName(s(t)));
                mt
            })
            .collect(),
    );
    let md = bootstrap.send(9, &mreq).await?;
    let addrs: HashMap<i32, String> = md
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let mut leader_of: HashMap<(String, i32), String> = HashMap::new();
    for t in &md.topics {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        for p in &t.partitions {
            if let Some(a) = addrs.get(&p.leader_id.0) {
                leader_of.insert((name.clone(), p.partition_index), a.clone());
            }
        }
    }
    let mut by_leader: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
    for tp in partitions {
        if let Some(a) = leader_of.get(tp) {
            by_leader.entry(a.clone()).or_default().push(tp.clone());
        }
    }
    let mut out = HashMap::new();
    for (addr, tps) in by_leader {
        let leader = broker
            .connect_to(&addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        out.extend(list_offsets_at(&leader, &tps, which).await?);
    }
    Ok(out)
}

/// [`list_offsets`] of partitions that `client` leads.
async fn list_offsets_at(
    client: &Client,
    partitions: &[(String, i32)],
    which: i64,
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut req = ListOffsetsRequest::default();
    for (t, ps) in by_topic {
        let mut lt = ListOffsetsTopic::default();
        lt.name = TopicName(s(t));
        lt.partitions = ps
            .into_iter()
            .map(|p| {
                let mut lp = ListOffsetsPartition::default();
                lp.partition_index = p;
                lp.timestamp = which;
                lp
            })
            .collect();
        req.topics.push(lt);
    }
    let resp = client.send(5, &req).await?;
    let mut out = HashMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code == 0 {
                out.insert((t.name.to_string(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

async fn describe_one(
    client: &Client,
    group: &str,
) -> anyhow::Result<kafka_protocol::messages::describe_groups_response::DescribedGroup> {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(s(group))];
    let resp = client.send(5, &req).await?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .context("empty DescribeGroups response")?;
    if g.error_code != 0 {
        bail!("describing group {group}: {}", error_name(g.error_code));
    }
    Ok(g)
}

/// A connection to `group`'s coordinator (FindCoordinator through `bootstrap`): in a cluster
/// only that broker answers for the group; on a single node it is the broker itself.
async fn coordinator(
    broker: &crate::admin::BrokerAddr,
    bootstrap: &Client,
    group: &str,
) -> anyhow::Result<Client> {
    use kafka_protocol::messages::FindCoordinatorRequest;
    let mut req = FindCoordinatorRequest::default();
    req.key = s(group);
    req.key_type = 0;
    let resp = bootstrap.send(2, &req).await?;
    if resp.error_code != 0 {
        bail!(
            "finding the coordinator of {group}: {}",
            error_name(resp.error_code)
        );
    }
    let addr = format!("{}:{}", resp.host.as_str(), resp.port);
    broker
        .connect_to(&addr)
        .await
        .with_context(|| format!("connecting to {group}'s coordinator at {addr}"))
}

pub async fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let bootstrap = args.broker.connect().await?;
    let coordinator = match &args.command {
        GroupsCommand::List => None,
        GroupsCommand::Describe { group }
        | GroupsCommand::Delete { group }
        | GroupsCommand::ResetOffsets { group, .. } => {
            Some(coordinator(&args.broker, &bootstrap, group).await?)
        }
    };
    let client = coordinator.as_ref().unwrap_or(&bootstrap);
    match args.command {
        GroupsCommand::List => {
            let resp = client.send(4, &ListGroupsRequest::default()).await?;
            if resp.error_code != 0 {
                bail!("listing groups: {}", error_name(resp.error_code));
            }
            println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
            for g in resp.groups {
                println!(
                    "{:<40} {:<20} {}",
                    g.group_id.as_str(),
                    g.group_state.as_str(),
                    g.protocol_type.as_str()
                );
            }
        }
        GroupsCommand::Describe { group } => {
            let g = describe_one(client, &group).await?;
            let mut owner: HashMap<(String, i32), (String, String)> = HashMap::new();
            for m in &g.members {
                for tp in assigned(&m.member_assignment) {
                    owner.insert(tp, (m.member_id.to_string(), m.client_id.to_string()));
                }
            }
            let mut freq = OffsetFetchRequest::default();
            freq.group_id = GroupId(s(&group));
            freq.topics = None;
            let fresp = client.send(7, &freq).await?;
            if fresp.error_code != 0 {
                bail!(
                    "fetching offsets of {group}: {}",
                    error_name(fresp.error_code)
                );
            }
            let mut rows: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
            for t in fresp.topics {
                for p in t.partitions {
                    rows.insert(
                        (t.name.to_string(), p.partition_index),
                        (p.committed_offset >= 0).then_some(p.committed_offset),
                    );
                }
            }
            for tp in owner.keys() {
                rows.entry(tp.clone()).or_insert(None);
            }
            let keys: Vec<(String, i32)> = rows.keys().cloned().collect();
            let ends = list_offsets(&args.broker, &bootstrap, &keys, -1).await?;
            println!(
                "group {group}: state {}, {} member(s), protocol {}",
                g.group_state.as_str(),
                g.members.len(),
                if g.protocol_data.is_empty() {
                    "-"
                } else {
                    g.protocol_data.as_str()
                }
            );
            println!();
            println!(
                "{:<24} {:<24} {:>9} {:>14} {:>15} {:>8}  {:<40} CLIENT-ID",
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "MEMBER-ID"
            );
            for ((topic, partition), committed) in rows {
                let end = ends.get(&(topic.clone(), partition)).copied();
                let lag = match (committed, end) {
                    (Some(c), Some(e)) => (e - c).max(0).to_string(),
                    _ => "-".into(),
                };
                let (member, client_id) = owner
                    .get(&(topic.clone(), partition))
                    .cloned()
                    .unwrap_or_else(|| ("-".into(), "-".into()));
                println!(
                    "{:<24} {:<24} {:>9} {:>14} {:>15} {:>8}  {:<40} {}",
                    group,
                    topic,
                    partition,
                    committed.map_or("-".into(), |c| c.to_string()),
                    end.map_or("-".into(), |e| e.to_string()),
                    lag,
                    member,
                    client_id
                );
            }
        }
        GroupsCommand::Delete { group } => {
            let mut req = DeleteGroupsRequest::default();
            req.groups_names = vec![GroupId(s(&group))];
            let resp = client.send(2, &req).await?;
            for r in resp.results {
                if r.error_code != 0 {
                    bail!("deleting group {group}: {}", error_name(r.error_code));
                }
            }
            println!("deleted group {group}");
        }
        GroupsCommand::ResetOffsets {
            group,
            topic,
            partition,
            to_earliest,
            to_latest,
            to_offset,
        } => {
            let g = describe_one(client, &group).await?;
            if !g.members.is_empty() {
                bail!(
                    "group {group} has {} active member(s) (state {}): stop its consumers before resetting offsets",
                    g.members.len(),
                    g.group_state.as_str()
                );
            }
            let mut mreq = MetadataRequest::default();
            let mut mt = MetadataRequestTopic::default();
            mt.name = Some(TopicName(s(&topic)));
            mreq.topics = Some(vec![mt]);
            mreq.allow_auto_topic_creation = false;
            let mresp = client.send(9, &mreq).await?;
            let t = mresp
                .topics
                .into_iter()
                .next()
                .context("empty Metadata response")?;
            if t.error_code != 0 {
                bail!("topic {topic}: {}", error_name(t.error_code));
            }
            let mut partitions: Vec<(String, i32)> = t
                .partitions
                .iter()
                .map(|p| (topic.clone(), p.partition_index))
                .filter(|(_, p)| partition.is_none_or(|want| want == *p))
                .collect();
            partitions.sort();
            if partitions.is_empty() {
                bail!("topic {topic} has no partition {}", partition.unwrap_or(-1));
            }
            let targets: HashMap<(String, i32), i64> = match (to_earliest, to_latest, to_offset) {
                (true, _, _) => list_offsets(&args.broker, &bootstrap, &partitions, -2).await?,
                (_, true, _) => list_offsets(&args.broker, &bootstrap, &partitions, -1).await?,
                (_, _, Some(o)) => {
                    let earliest = list_offsets(&args.broker, &bootstrap, &partitions, -2).await?;
                    let latest = list_offsets(&args.broker, &bootstrap, &partitions, -1).await?;
                    // Like kafka-consumer-groups: clamp into the partition's range.
                    partitions
                        .iter()
                        .map(|tp| {
                            let lo = earliest.get(tp).copied().unwrap_or(0);
                            let hi = latest.get(tp).copied().unwrap_or(o);
                            (tp.clone(), o.clamp(lo, hi.max(lo)))
                        })
                        .collect()
                }
                _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
            };
            let mut req = OffsetCommitRequest::default();
            req.group_id = GroupId(s(&group));
            req.generation_id_or_member_epoch = -1;
            let mut ct = OffsetCommitRequestTopic::default();
            ct.name = TopicName(s(&topic));
            for tp in &partitions {
                let mut cp = OffsetCommitRequestPartition::default();
                cp.partition_index = tp.1;
                cp.committed_offset = *targets.get(tp).context("no offset for a partition")?;
                cp.committed_leader_epoch = -1;
                ct.partitions.push(cp);
            }
            req.topics = vec![ct];
            let resp = client.send(8, &req).await?;
            println!(
                "{:<24} {:<24} {:>9} {:>14}",
                "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
            );
            for t in resp.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        bail!(
                            "resetting {}:{}: {}",
                            t.name.as_str(),
                            p.partition_index,
                            error_name(p.error_code)
                        );
                    }
                    let tp = (t.name.to_string(), p.partition_index);
                    println!(
                        "{:<24} {:<24} {:>9} {:>14}",
                        group,
                        tp.0,
                        tp.1,
                        targets.get(&tp).copied().unwrap_or(-1)
                    );
                }
            }
        }
    }
    Ok(())
}
