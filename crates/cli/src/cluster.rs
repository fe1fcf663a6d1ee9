//! `sediment cluster status`: the brokers, how many partitions each leads, and which
//! partitions are under-replicated (ISR smaller than the replica set) or offline (no leader).

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use kafka_protocol::messages::MetadataRequest;

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    broker: crate::admin::BrokerAddr,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Brokers (with racks), leaders per broker, under-replicated and offline partitions.
    Status,
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let client = args.broker.connect().await?;
    match args.command {
        ClusterCommand::Status => {
            let mut req = MetadataRequest::default();
            req.topics = None; // every topic
            let resp = client.send(12, &req).await?;
            let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
            let mut under = Vec::new();
            let mut offline = Vec::new();
            let mut partitions = 0;
            for t in &resp.topics {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                for p in &t.partitions {
                    partitions += 1;
                    if p.leader_id.0 < 0 {
                        offline.push(format!("{name}-{}", p.partition_index));
                    } else {
                        *leads.entry(p.leader_id.0).or_default() += 1;
                    }
                    if p.isr_nodes.len() < p.replica_nodes.len() {
                        under.push(format!(
                            "{name}-{} (replicas {:?}, isr {:?})",
                            p.partition_index,
                            p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
                            p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>()
                        ));
                    }
                }
            }
            println!(
                "cluster {}: {} broker(s), {} topic(s), {partitions} partition(s)",
                resp.cluster_id.as_ref().map(|c| c.as_str()).unwrap_or("?"),
                resp.brokers.len(),
                resp.topics.len()
            );
            for b in &resp.brokers {
                let id = b.node_id.0;
                println!(
                    "  broker {id} at {}:{}{}{}: leads {} partition(s)",
                    b.host.as_str(),
                    b.port,
                    b.rack
                        .as_ref()
                        .map(|r| format!(" rack {}", r.as_str()))
                        .unwrap_or_default(),
                    if id == resp.controller_id.0 {
                        " (named controller)"
                    } else {
                        ""
                    },
                    leads.get(&id).copied().unwrap_or(0)
                );
            }
            println!("under-replicated partitions: {}", under.len());
            for u in &under {
                println!("  {u}");
            }
            println!("offline partitions: {}", offline.len());
            for o in &offline {
                println!("  {o}");
            }
        }
    }
    Ok(())
}
