//! `sediment topics`: list, create, describe, delete.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

#[derive(Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    broker: crate::admin::BrokerAddr,
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// List topics with their partition counts.
    List,
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short, default_value_t = 1)]
        partitions: i32,
        /// Replicas per partition (cluster mode; -1: the broker's default)
        #[arg(long, short, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config, repeatable: --config retention.ms=86400000
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
    },
    /// Show a topic's partitions and configs.
    Describe { name: String },
    /// Delete a topic.
    Delete { name: String },
    /// Add partitions to a topic, or change its configs.
    Alter {
        name: String,
        /// The new partition count (partitions can only be added, as in Kafka).
        #[arg(long, short)]
        partitions: Option<i32>,
        /// A config to set, repeatable: --config retention.ms=3600000
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
        /// A config to delete (back to its default), repeatable.
        #[arg(long = "delete-config")]
        delete_configs: Vec<String>,
    },
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let err = crate::admin::error_name(code);
    match message {
        Some(m) => bail!("{what}: {err}: {}", m.as_str()),
        None => bail!("{what}: {err}"),
    }
}

/// A partition's log start and end offsets, asked of its leader (as text; "?" if it does not
/// answer).
async fn log_bounds(
    broker: &crate::admin::BrokerAddr,
    leader: &str,
    topic: &str,
    partition: i32,
) -> (String, String) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::ListOffsetsRequest;
    let Ok(c) = broker.connect_to(leader).await else {
        return ("?".into(), "?".into());
    };
    let mut out = Vec::new();
    for ts in [-2i64, -1] {
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = ts;
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = kafka_protocol::messages::BrokerId(-1);
        req.topics = vec![t];
        let got = c.send(4, &req).await.ok().and_then(|r| {
            let p = r.topics.first()?.partitions.first()?;
            (p.error_code == 0).then_some(p.offset)
        });
        out.push(got.map_or("?".to_string(), |o| o.to_string()));
    }
    (out[0].clone(), out[1].clone())
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let client = args.broker.connect().await?;
    let name_of = |s: &str| TopicName(StrBytes::from_string(s.to_string()));
    match args.command {
        TopicsCommand::List => {
            // A null topic list asks for every topic (an empty one asks for none).
            let mut req = MetadataRequest::default();
            req.topics = None;
            let resp = client.send(1, &req).await?;
            for t in resp.topics {
                let name = t.name.map(|n| n.to_string()).unwrap_or_default();
                println!("{name}\t{} partitions", t.partitions.len());
            }
        }
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut t = CreatableTopic::default();
            t.name = name_of(&name);
            t.num_partitions = partitions;
            t.replication_factor = replication_factor;
            for kv in configs {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--config {kv:?} is not key=value"))?;
                let mut c = CreatableTopicConfig::default();
                c.name = StrBytes::from_string(k.into());
                c.value = Some(StrBytes::from_string(v.into()));
                t.configs.push(c);
            }
            let mut req = CreateTopicsRequest::default();
            req.topics = vec![t];
            req.timeout_ms = 30_000;
            let resp = client.send(5, &req).await?;
            for r in resp.topics {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("creating {name}"),
                )?;
            }
            println!("created {name}");
        }
        TopicsCommand::Describe { name } => {
            let mut req = MetadataRequest::default();
            let mut t = MetadataRequestTopic::default();
            t.name = Some(name_of(&name));
            req.topics = Some(vec![t]);
            req.allow_auto_topic_creation = false;
            let resp = client.send(9, &req).await?;
            for t in resp.topics {
                check(t.error_code, None, &format!("describing {name}"))?;
                println!("topic {name}: {} partitions", t.partitions.len());
                let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                    v.iter()
                        .map(|b| b.0.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let addrs: std::collections::HashMap<i32, String> = resp
                    .brokers
                    .iter()
                    .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                    .collect();
                for p in &t.partitions {
                    let (start, end) = match addrs.get(&p.leader_id.0) {
                        Some(a) => log_bounds(&args.broker, a, &name, p.partition_index).await,
                        None => ("?".into(), "?".into()),
                    };
                    println!(
                        "  partition {} leader {} epoch {} replicas [{}] isr [{}]{} log {start}..{end}",
                        p.partition_index,
                        p.leader_id.0,
                        p.leader_epoch,
                        ids(&p.replica_nodes),
                        ids(&p.isr_nodes),
                        if p.offline_replicas.is_empty() {
                            String::new()
                        } else {
                            format!(" offline [{}]", ids(&p.offline_replicas))
                        }
                    );
                }
            }
            let mut dreq = DescribeConfigsRequest::default();
            let mut res = DescribeConfigsResource::default();
            res.configuration_keys = None; // every config
            res.resource_type = 2;
            res.resource_name = StrBytes::from_string(name.clone());
            dreq.resources = vec![res];
            let dresp = client.send(1, &dreq).await?;
            for r in dresp.results {
                check(r.error_code, r.error_message.as_ref(), "describing configs")?;
                println!("configs:");
                for c in r.configs {
                    println!(
                        "  {}={}",
                        c.name.as_str(),
                        c.value.as_ref().map(|v| v.as_str()).unwrap_or("")
                    );
                }
            }
        }
        TopicsCommand::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to change: give --partitions, --config or --delete-config");
            }
            if let Some(count) = partitions {
                use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
                let mut t = CreatePartitionsTopic::default();
                t.name = name_of(&name);
                t.count = count;
                t.assignments = None;
                let mut req = kafka_protocol::messages::CreatePartitionsRequest::default();
                req.topics = vec![t];
                req.timeout_ms = 30_000;
                let resp = client.send(1, &req).await?;
                for r in resp.results {
                    check(
                        r.error_code,
                        r.error_message.as_ref(),
                        &format!("adding partitions to {name}"),
                    )?;
                }
                println!("{name} now has {count} partitions");
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                crate::configs::alter(&client, (2, name.clone()), &configs, &delete_configs)
                    .await?;
                println!(
                    "altered {} config(s) of {name}",
                    configs.len() + delete_configs.len()
                );
            }
        }
        TopicsCommand::Delete { name } => {
            let mut req = DeleteTopicsRequest::default();
            req.topic_names = vec![name_of(&name)];
            req.timeout_ms = 30_000;
            let resp = client.send(4, &req).await?;
            for r in resp.responses {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("deleting {name}"),
                )?;
            }
            println!("deleted {name}");
        }
    }
    Ok(())
}
