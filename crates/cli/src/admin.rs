//! What the admin commands (`topics`, `groups`) share: the broker address and error names.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use kafka_protocol::ResponseError;
use sediment_auth::Mechanism;
use sediment_protocol::client::{Client, SaslLogin, Transport};

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
    #[command(flatten)]
    pub security: ClientSecurity,
}

impl BrokerAddr {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        self.security.connect(&self.bootstrap).await
    }

    /// A connection to another broker of the cluster, with the same security.
    pub async fn connect_to(&self, addr: &str) -> anyhow::Result<Client> {
        self.security.connect(addr).await
    }
}

/// How the CLI reaches a listener: Kafka's client security settings.
#[derive(Args, Debug, Clone)]
pub struct ClientSecurity {
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(
        long,
        env = "SEDIMENT_SECURITY_PROTOCOL",
        default_value = "PLAINTEXT",
        global = true
    )]
    pub security_protocol: String,
    /// PEM CAs to trust for the broker's certificate [default: the system's CA bundle].
    #[arg(
        long = "ssl-ca-file",
        env = "SEDIMENT_CLIENT_SSL_CA_FILE",
        global = true
    )]
    pub ssl_ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate, for listeners that ask for one (with --ssl-key-file).
    #[arg(
        long = "ssl-cert-file",
        env = "SEDIMENT_CLIENT_SSL_CERT_FILE",
        global = true
    )]
    pub ssl_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of --ssl-cert-file.
    #[arg(
        long = "ssl-key-file",
        env = "SEDIMENT_CLIENT_SSL_KEY_FILE",
        global = true
    )]
    pub ssl_key_file: Option<std::path::PathBuf>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(
        long,
        env = "SEDIMENT_SASL_MECHANISM",
        default_value = "SCRAM-SHA-512",
        global = true
    )]
    pub sasl_mechanism: String,
    /// SASL user.
    #[arg(long, env = "SEDIMENT_SASL_USERNAME", global = true)]
    pub sasl_username: Option<String>,
    /// SASL password (prefer --sasl-password-file: arguments show in the process list).
    #[arg(
        long,
        env = "SEDIMENT_SASL_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
    /// File whose first line is the SASL password.
    #[arg(long, env = "SEDIMENT_SASL_PASSWORD_FILE", global = true)]
    pub sasl_password_file: Option<std::path::PathBuf>,
}

const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl ClientSecurity {
    fn transport(&self, tls: bool) -> anyhow::Result<Transport> {
        if !tls {
            if self.ssl_ca_file.is_some() || self.ssl_cert_file.is_some() {
                bail!("--ssl-* files need --security-protocol SSL or SASL_SSL");
            }
            return Ok(Transport::Plain);
        }
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let ca = self
            .ssl_ca_file
            .clone()
            .unwrap_or_else(|| SYSTEM_CA_BUNDLE.into());
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&ca)
            .with_context(|| format!("--ssl-ca-file {}", ca.display()))?;
        for cert in certs {
            let cert = cert.with_context(|| format!("--ssl-ca-file {}", ca.display()))?;
            // The system bundle holds a few certificates rustls cannot use; skip those.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            bail!("--ssl-ca-file {}: no usable CA certificate", ca.display());
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
        let config = match (&self.ssl_cert_file, &self.ssl_key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(c), Some(k)) => {
                let chain = CertificateDer::pem_file_iter(c)
                    .with_context(|| format!("--ssl-cert-file {}", c.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("--ssl-cert-file {}", c.display()))?;
                let key = PrivateKeyDer::from_pem_file(k)
                    .with_context(|| format!("--ssl-key-file {}", k.display()))?;
                builder.with_client_auth_cert(chain, key)?
            }
            _ => bail!("--ssl-cert-file and --ssl-key-file go together"),
        };
        Ok(Transport::Tls(Arc::new(config)))
    }

    fn login(&self, sasl: bool) -> anyhow::Result<Option<SaslLogin>> {
        if !sasl {
            if self.sasl_username.is_some() {
                bail!("--sasl-username needs --security-protocol SASL_PLAINTEXT or SASL_SSL");
            }
            return Ok(None);
        }
        let mechanism = Mechanism::from_name(&self.sasl_mechanism.to_ascii_uppercase())
            .with_context(|| {
                format!(
                    "--sasl-mechanism {}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    self.sasl_mechanism
                )
            })?;
        let username = self
            .sasl_username
            .clone()
            .context("SASL needs --sasl-username")?;
        let password = match (&self.sasl_password, &self.sasl_password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("--sasl-password-file {}", f.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, None) => bail!("SASL needs --sasl-password or --sasl-password-file"),
        };
        Ok(Some(SaslLogin {
            mechanism,
            username,
            password,
        }))
    }

    /// Connects to `addr` with these settings.
    pub async fn connect(&self, addr: &str) -> anyhow::Result<Client> {
        let (tls, sasl) = match self.security_protocol.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => bail!(
                "--security-protocol {other}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ),
        };
        let transport = self.transport(tls)?;
        let login = self.login(sasl)?;
        Client::connect_secure(addr, &transport, login.as_ref())
            .await
            .with_context(|| format!("connecting to {addr}"))
    }
}

/// Kafka's name for an error code (UNKNOWN_TOPIC_OR_PARTITION as `UnknownTopicOrPartition`).
pub fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| code.to_string())
}
