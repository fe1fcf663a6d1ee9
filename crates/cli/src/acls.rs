//! `sediment acls create|list|delete` (Kafka's kafka-acls.sh), through CreateAcls,
//! DescribeAcls and DeleteAcls.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use sediment_auth::acl::{op, pattern, permission, resource, CLUSTER_NAME};

use crate::admin::{error_name, BrokerAddr};

#[derive(Args)]
pub struct AclsArgs {
    #[command(flatten)]
    broker: BrokerAddr,
    #[command(subcommand)]
    command: AclsCommand,
}

/// The resource an ACL is about: one of --topic, --group, --cluster, --transactional-id.
#[derive(Args, Clone, Default)]
struct Resource {
    /// A topic (with --prefixed: every topic starting with this).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group.
    #[arg(long)]
    group: Option<String>,
    /// The cluster.
    #[arg(long)]
    cluster: bool,
    /// A transactional id.
    #[arg(long)]
    transactional_id: Option<String>,
    /// The name is a prefix (Kafka's PREFIXED pattern), not a literal name.
    #[arg(long)]
    prefixed: bool,
}

impl Resource {
    /// (resource type, name) if one is named.
    fn named(&self) -> anyhow::Result<Option<(i8, String)>> {
        let mut given = Vec::new();
        if let Some(t) = &self.topic {
            given.push((resource::TOPIC, t.clone()));
        }
        if let Some(g) = &self.group {
            given.push((resource::GROUP, g.clone()));
        }
        if self.cluster {
            given.push((resource::CLUSTER, CLUSTER_NAME.to_string()));
        }
        if let Some(t) = &self.transactional_id {
            given.push((resource::TRANSACTIONAL_ID, t.clone()));
        }
        match given.len() {
            0 => Ok(None),
            1 => Ok(given.pop()),
            _ => bail!("name one resource: --topic, --group, --cluster or --transactional-id"),
        }
    }

    fn pattern(&self) -> i8 {
        if self.prefixed {
            pattern::PREFIXED
        } else {
            pattern::LITERAL
        }
    }
}

const OPERATIONS: &[(&str, i8)] = &[
    ("all", op::ALL),
    ("read", op::READ),
    ("write", op::WRITE),
    ("create", op::CREATE),
    ("delete", op::DELETE),
    ("alter", op::ALTER),
    ("describe", op::DESCRIBE),
    ("cluster-action", op::CLUSTER_ACTION),
    ("describe-configs", op::DESCRIBE_CONFIGS),
    ("alter-configs", op::ALTER_CONFIGS),
    ("idempotent-write", op::IDEMPOTENT_WRITE),
];

fn operation(name: &str) -> anyhow::Result<i8> {
    let n = name.to_ascii_lowercase().replace('_', "-");
    let n = match n.as_str() {
        "clusteraction" => "cluster-action".to_string(),
        "describeconfigs" => "describe-configs".to_string(),
        "alterconfigs" => "alter-configs".to_string(),
        "idempotentwrite" => "idempotent-write".to_string(),
        _ => n,
    };
    OPERATIONS
        .iter()
        .find(|(o, _)| *o == n)
        .map(|&(_, code)| code)
        .with_context(|| {
            let names: Vec<&str> = OPERATIONS.iter().map(|(o, _)| *o).collect();
            format!("unknown operation {name:?}; one of {}", names.join(", "))
        })
}

fn operation_name(code: i8) -> String {
    OPERATIONS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| code.to_string(), |(n, _)| n.to_string())
}

fn resource_name(code: i8) -> &'static str {
    match code {
        resource::TOPIC => "topic",
        resource::GROUP => "group",
        resource::CLUSTER => "cluster",
        resource::TRANSACTIONAL_ID => "transactional-id",
        _ => "unknown",
    }
}

#[derive(Subcommand)]
enum AclsCommand {
    /// Add ACLs: allow (or deny) a principal some operations on a resource.
    Create {
        /// The principal, e.g. User:alice or User:CN=app,O=Example.
        #[arg(long)]
        principal: String,
        /// Operations, comma-separated: all, read, write, create, delete, alter, describe,
        /// cluster-action, describe-configs, alter-configs, idempotent-write.
        #[arg(long, value_delimiter = ',', required = true)]
        operation: Vec<String>,
        #[command(flatten)]
        resource: Resource,
        /// Deny instead of allow (a deny wins over any allow).
        #[arg(long)]
        deny: bool,
        /// The client address it applies to.
        #[arg(long, default_value = "*")]
        host: String,
    },
    /// List ACLs, all or those of a resource (and principal).
    List {
        #[command(flatten)]
        resource: Resource,
        #[arg(long)]
        principal: Option<String>,
    },
    /// Delete the ACLs that match: every given field must match.
    Delete {
        #[command(flatten)]
        resource: Resource,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long, value_delimiter = ',')]
        operation: Vec<String>,
        #[arg(long)]
        host: Option<String>,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub async fn run(args: AclsArgs) -> anyhow::Result<()> {
    let client = args.broker.connect().await?;
    match args.command {
        AclsCommand::Create {
            principal,
            operation: ops,
            resource: res,
            deny,
            host,
        } => {
            let (rt, name) = res
                .named()?
                .context("name the resource: --topic, --group, --cluster or --transactional-id")?;
            let mut req = CreateAclsRequest::default();
            for o in &ops {
                let mut c = AclCreation::default();
                c.resource_type = rt;
                c.resource_name = s(&name);
                c.resource_pattern_type = res.pattern();
                c.principal = s(&principal);
                c.host = s(&host);
                c.operation = operation(o)?;
                c.permission_type = if deny {
                    permission::DENY
                } else {
                    permission::ALLOW
                };
                req.creations.push(c);
            }
            let resp = client.send(3, &req).await?;
            for (o, r) in ops.iter().zip(resp.results) {
                if r.error_code != 0 {
                    bail!(
                        "{o}: {}: {}",
                        error_name(r.error_code),
                        r.error_message.as_deref().unwrap_or("")
                    );
                }
                println!(
                    "{} {principal} {o} on {} {name}{} from {host}",
                    if deny { "deny" } else { "allow" },
                    resource_name(rt),
                    if res.prefixed { "*" } else { "" }
                );
            }
        }
        AclsCommand::List {
            resource: res,
            principal,
        } => {
            let mut req = DescribeAclsRequest::default();
            match res.named()? {
                Some((rt, name)) => {
                    req.resource_type_filter = rt;
                    req.resource_name_filter = Some(s(&name));
                    req.pattern_type_filter = res.pattern();
                }
                None => {
                    req.resource_type_filter = resource::ANY;
                    req.resource_name_filter = None;
                    req.pattern_type_filter = pattern::ANY;
                }
            }
            // Null, not the codec's default "": an empty filter matches nothing.
            req.principal_filter = principal.as_deref().map(s);
            req.host_filter = None;
            req.operation = op::ANY;
            req.permission_type = permission::ANY;
            let resp = client.send(3, &req).await?;
            if resp.error_code != 0 {
                bail!(
                    "{}: {}",
                    error_name(resp.error_code),
                    resp.error_message.as_deref().unwrap_or("")
                );
            }
            for r in resp.resources {
                for a in r.acls {
                    println!(
                        "{} {}{} {} {} {} from {}",
                        resource_name(r.resource_type),
                        r.resource_name.as_str(),
                        if r.pattern_type == pattern::PREFIXED {
                            "*"
                        } else {
                            ""
                        },
                        if a.permission_type == permission::DENY {
                            "deny"
                        } else {
                            "allow"
                        },
                        a.principal.as_str(),
                        operation_name(a.operation),
                        a.host.as_str()
                    );
                }
            }
        }
        AclsCommand::Delete {
            resource: res,
            principal,
            operation: ops,
            host,
        } => {
            let mut base = DeleteAclsFilter::default();
            match res.named()? {
                Some((rt, name)) => {
                    base.resource_type_filter = rt;
                    base.resource_name_filter = Some(s(&name));
                    base.pattern_type_filter = res.pattern();
                }
                None => {
                    base.resource_type_filter = resource::ANY;
                    base.resource_name_filter = None;
                    base.pattern_type_filter = pattern::ANY;
                }
            }
            base.principal_filter = principal.as_deref().map(s);
            base.host_filter = host.as_deref().map(s);
            base.permission_type = permission::ANY;
            let codes: Vec<i8> = if ops.is_empty() {
                vec![op::ANY]
            } else {
                ops.iter()
                    .map(|o| operation(o))
                    .collect::<anyhow::Result<_>>()?
            };
            let mut req = DeleteAclsRequest::default();
            for code in codes {
                let mut f = base.clone();
                f.operation = code;
                req.filters.push(f);
            }
            let resp = client.send(3, &req).await?;
            let mut deleted = 0;
            for r in resp.filter_results {
                if r.error_code != 0 {
                    bail!(
                        "{}: {}",
                        error_name(r.error_code),
                        r.error_message.as_deref().unwrap_or("")
                    );
                }
                deleted += r.matching_acls.len();
            }
            println!("{deleted} ACLs deleted");
        }
    }
    Ok(())
}
