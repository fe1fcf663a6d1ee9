//! `sediment configs describe|alter`: topic and broker configs (Kafka's kafka-configs.sh),
//! through DescribeConfigs and IncrementalAlterConfigs. `topics alter` uses the same calls.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use sediment_protocol::client::Client;

use crate::admin::{error_name, BrokerAddr};

#[derive(Args)]
pub struct ConfigsArgs {
    #[command(flatten)]
    broker: BrokerAddr,
    #[command(subcommand)]
    command: ConfigsCommand,
}

/// Which configs: one of --topic, --broker, --cluster.
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
pub struct Entity {
    /// A topic's configs.
    #[arg(long)]
    topic: Option<String>,
    /// One broker's dynamic configs (by id).
    #[arg(long)]
    broker: Option<i32>,
    /// The cluster-wide default broker configs.
    #[arg(long)]
    cluster: bool,
}

impl Entity {
    /// Kafka's resource type and name.
    fn resource(&self) -> (i8, String) {
        match (&self.topic, self.broker) {
            (Some(t), _) => (2, t.clone()),
            (None, Some(b)) => (4, b.to_string()),
            (None, None) => (4, String::new()),
        }
    }
}

#[derive(Subcommand)]
enum ConfigsCommand {
    /// Show configs with their values and where each comes from.
    Describe {
        #[command(flatten)]
        entity: Entity,
    },
    /// Set or delete configs.
    Alter {
        #[command(flatten)]
        entity: Entity,
        /// key=value to set, repeatable.
        #[arg(long = "set", short = 's')]
        set: Vec<String>,
        /// A config to delete (back to its default), repeatable.
        #[arg(long = "delete", short = 'd')]
        delete: Vec<String>,
    },
}

fn source_name(s: i8) -> &'static str {
    match s {
        1 => "topic",
        2 => "dynamic broker",
        3 => "dynamic default broker",
        4 => "static broker",
        5 => "default",
        _ => "unknown",
    }
}

/// Prints the configs of `resource` as a table: name, value, source.
pub async fn describe(client: &Client, resource: (i8, String)) -> anyhow::Result<()> {
    let mut req = DescribeConfigsRequest::default();
    let mut res = DescribeConfigsResource::default();
    res.resource_type = resource.0;
    res.resource_name = StrBytes::from_string(resource.1.clone());
    res.configuration_keys = None;
    req.resources = vec![res];
    let resp = client.send(1, &req).await?;
    for r in resp.results {
        if r.error_code != 0 {
            let m = r.error_message.as_ref().map(|m| m.as_str()).unwrap_or("");
            bail!("describing configs: {} {m}", error_name(r.error_code));
        }
        let width = r
            .configs
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!("{:width$}  {:30}  SOURCE", "NAME", "VALUE");
        for c in r.configs {
            let value = if c.is_sensitive {
                "(sensitive)".to_string()
            } else {
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()
            };
            println!(
                "{:width$}  {:30}  {}",
                c.name.as_str(),
                value,
                source_name(c.config_source)
            );
        }
    }
    Ok(())
}

/// Sets (`key=value`) and deletes configs of `resource` in one IncrementalAlterConfigs.
pub async fn alter(
    client: &Client,
    resource: (i8, String),
    set: &[String],
    delete: &[String],
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set key=value or --delete key");
    }
    let mut res = AlterConfigsResource::default();
    res.resource_type = resource.0;
    res.resource_name = StrBytes::from_string(resource.1.clone());
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("{kv:?} is not key=value"))?;
        let mut c = AlterableConfig::default();
        c.name = StrBytes::from_string(k.to_string());
        c.config_operation = 0; // SET
        c.value = Some(StrBytes::from_string(v.to_string()));
        res.configs.push(c);
    }
    for k in delete {
        let mut c = AlterableConfig::default();
        c.name = StrBytes::from_string(k.to_string());
        c.config_operation = 1; // DELETE
        res.configs.push(c);
    }
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    let resp = client.send(1, &req).await?;
    for r in resp.responses {
        if r.error_code != 0 {
            let m = r.error_message.as_ref().map(|m| m.as_str()).unwrap_or("");
            bail!("altering configs: {}: {m}", error_name(r.error_code));
        }
    }
    Ok(())
}

pub async fn run(args: ConfigsArgs) -> anyhow::Result<()> {
    let client = args.broker.connect().await?;
    match args.command {
        ConfigsCommand::Describe { entity } => describe(&client, entity.resource()).await,
        ConfigsCommand::Alter {
            entity,
            set,
            delete,
        } => {
            alter(&client, entity.resource(), &set, &delete).await?;
            println!("altered {} config(s)", set.len() + delete.len());
            Ok(())
        }
    }
}
