//! What the admin commands (`topics`, `groups`) share: the broker address and error names.

use anyhow::Context;
use clap::Args;
use kafka_protocol::ResponseError;
use sediment_protocol::client::Client;

/// The broker an admin command talks to.
#[derive(Args)]
pub struct BrokerAddr {
    /// Broker to talk to.
    #[arg(
        long,
        short = 'b',
        env = "SEDIMENT_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
}

impl BrokerAddr {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.bootstrap)
            .await
            .with_context(|| format!("connecting to {}", self.bootstrap))
    }
}

/// Kafka's name for an error code (UNKNOWN_TOPIC_OR_PARTITION as `UnknownTopicOrPartition`).
pub fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| code.to_string())
}
