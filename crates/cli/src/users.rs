//! `sediment users create|list|delete`: SCRAM credentials (Kafka's
//! `kafka-configs.sh --entity-type users --alter --add-config SCRAM-SHA-256=[...]`), through
//! AlterUserScramCredentials and DescribeUserScramCredentials (KIP-554). The password is
//! salted and iterated here: only the salted password crosses the network.

use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use sediment_auth::scram::{self, Credential};
use sediment_auth::Mechanism;

use crate::admin::{error_name, BrokerAddr};

#[derive(Args)]
pub struct UsersArgs {
    #[command(flatten)]
    broker: BrokerAddr,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScramMechanism {
    #[value(name = "SCRAM-SHA-256")]
    Sha256,
    #[value(name = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    fn mechanism(self) -> Mechanism {
        match self {
            ScramMechanism::Sha256 => Mechanism::ScramSha256,
            ScramMechanism::Sha512 => Mechanism::ScramSha512,
        }
    }

    /// KIP-554's code.
    fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }
}

fn mechanism_name(code: i8) -> &'static str {
    match code {
        1 => "SCRAM-SHA-256",
        2 => "SCRAM-SHA-512",
        _ => "unknown",
    }
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user's SCRAM credential, or replace it (a new password).
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "SCRAM-SHA-256")]
        mechanism: ScramMechanism,
        /// The password (visible to other local users in the process list: prefer
        /// --password-file)
        #[arg(long, conflicts_with = "password_file")]
        password: Option<String>,
        /// File whose first line is the password
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// PBKDF2 iterations (4096 to 16384)
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
    /// List users with their SCRAM mechanisms and iteration counts.
    List,
    /// Delete a user's credential for one mechanism, or all of them.
    Delete {
        name: String,
        #[arg(long, value_enum)]
        mechanism: Option<ScramMechanism>,
    },
}

pub async fn run(args: UsersArgs) -> anyhow::Result<()> {
    let client = args.broker.connect().await?;
    match args.command {
        UsersCommand::Create {
            name,
            mechanism,
            password,
            password_file,
            iterations,
        } => {
            if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations) {
                bail!(
                    "--iterations must be between {} and {}",
                    scram::MIN_ITERATIONS,
                    scram::MAX_ITERATIONS
                );
            }
            let password = match (password, password_file) {
                (Some(p), _) => p,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("--password-file {}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                (None, None) => bail!("give --password or --password-file"),
            };
            if password.is_empty() {
                bail!("the password is empty");
            }
            let hash = mechanism
                .mechanism()
                .scram_hash()
                .context("not a SCRAM mechanism")?;
            let salt = Credential::random_salt(hash);
            let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
            let mut up = ScramCredentialUpsertion::default();
            up.name = StrBytes::from_string(name.clone());
            up.mechanism = mechanism.code();
            up.iterations = iterations as i32;
            up.salt = Bytes::from(salt);
            up.salted_password = Bytes::from(salted);
            let mut req = AlterUserScramCredentialsRequest::default();
            req.upsertions = vec![up];
            alter(&client, req).await?;
            println!("{name}: {} credential stored", mechanism.mechanism());
        }
        UsersCommand::List => {
            let resp = client
                .send(0, &DescribeUserScramCredentialsRequest::default())
                .await?;
            if resp.error_code != 0 {
                bail!(
                    "{}: {}",
                    error_name(resp.error_code),
                    resp.error_message.as_deref().unwrap_or("")
                );
            }
            for r in resp.results {
                for c in r.credential_infos {
                    println!(
                        "{} {} {}",
                        r.user.as_str(),
                        mechanism_name(c.mechanism),
                        c.iterations
                    );
                }
            }
        }
        UsersCommand::Delete { name, mechanism } => {
            let codes: Vec<i8> = match mechanism {
                Some(m) => vec![m.code()],
                None => {
                    // Every mechanism the user has.
                    let mut req = DescribeUserScramCredentialsRequest::default();
                    let mut u = kafka_protocol::messages::describe_user_scram_credentials_request::UserName::default();
                    u.name = StrBytes::from_string(name.clone());
                    req.users = Some(vec![u]);
                    let resp = client.send(0, &req).await?;
                    let r = resp.results.first().context("empty answer")?;
                    if r.error_code != 0 {
                        bail!(
                            "{name}: {}: {}",
                            error_name(r.error_code),
                            r.error_message.as_deref().unwrap_or("")
                        );
                    }
                    r.credential_infos.iter().map(|c| c.mechanism).collect()
                }
            };
            let mut req = AlterUserScramCredentialsRequest::default();
            req.deletions = codes
                .iter()
                .map(|&code| {
                    let mut d = ScramCredentialDeletion::default();
                    d.name = StrBytes::from_string(name.clone());
                    d.mechanism = code;
                    d
                })
                .collect();
            alter(&client, req).await?;
            for code in codes {
                println!("{name}: {} credential deleted", mechanism_name(code));
            }
        }
    }
    Ok(())
}

async fn alter(
    client: &sediment_protocol::client::Client,
    req: AlterUserScramCredentialsRequest,
) -> anyhow::Result<()> {
    let resp = client.send(0, &req).await?;
    for r in resp.results {
        if r.error_code != 0 {
            bail!(
                "{}: {}: {}",
                r.user.as_str(),
                error_name(r.error_code),
                r.error_message.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
