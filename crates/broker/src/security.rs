//! Listeners and who is on a connection: security protocols, TLS (reloaded from disk when the
//! files change), SASL settings and each connection's authentication state.
//!
//! The SASL mechanisms themselves (PLAIN, SCRAM) are pure functions in `sediment-auth`; this
//! module reads credentials from the metadata store, keeps per-connection state, limits failed
//! attempts per address and builds the TLS configurations.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sediment_auth::plain::PasswordFile;
use sediment_auth::Mechanism;
use tracing::{info, warn};

/// A listener's security protocol (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Self::Plaintext,
            "SSL" => Self::Ssl,
            "SASL_PLAINTEXT" => Self::SaslPlaintext,
            "SASL_SSL" => Self::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// One Kafka listener as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Kafka's listener name (`PLAINTEXT`, `SASL_SSL`, or one mapped to a protocol).
    pub name: String,
    pub protocol: SecurityProtocol,
    /// The address Metadata gives clients that came in on this listener.
    pub advertised_host: String,
    pub advertised_port: i32,
}

/// The principal of a connection nobody authenticated (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct Session {
    /// The listener's name (Metadata answers with that listener's addresses).
    pub listener: Arc<str>,
    /// The client's IP address.
    pub peer: String,
    /// `User:…`: from SASL, from the client certificate, or [`ANONYMOUS`].
    pub principal: String,
}

impl Session {
    /// A session on the default listener, for tests and internal callers.
    pub fn anonymous(listener: &str, peer: &str) -> Self {
        Session {
            listener: Arc::from(listener),
            peer: peer.to_string(),
            principal: ANONYMOUS.to_string(),
        }
    }
}

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "requested" => Self::Requested,
            "required" => Self::Required,
            _ => return None,
        })
    }
}

/// Where the TLS material is and how often it is looked at again.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CAs trusted for client certificates, and for peers when this broker is the client.
    pub ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub reload_interval: Duration,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The bytes of the three files, to notice a change.
type Fingerprint = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

fn read_all(files: &TlsFiles) -> Result<Fingerprint, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    Ok((
        read(&files.cert_file)?,
        read(&files.key_file)?,
        files.ca_file.as_ref().map(read).transpose()?,
    ))
}

fn certs_of(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no PEM certificate"));
    }
    Ok(certs)
}

fn roots_of(pem: &[u8], what: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_of(pem, what)? {
        roots
            .add(cert)
            .map_err(|e| format!("{what}: not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

fn server_config(files: &TlsFiles, fp: &Fingerprint) -> Result<rustls::ServerConfig, String> {
    let cert_what = format!("--ssl-cert-file {}", files.cert_file.display());
    let key_what = format!("--ssl-key-file {}", files.key_file.display());
    let chain = certs_of(&fp.0, &cert_what)?;
    let key = PrivateKeyDer::from_pem_slice(&fp.1).map_err(|e| format!("{key_what}: {e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match (files.client_auth, &fp.2) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err("--ssl-client-auth needs --ssl-ca-file".into()),
        (auth, Some(ca)) => {
            let roots = roots_of(ca, "--ssl-ca-file")?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            );
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client certificate verifier: {e}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{cert_what} and {key_what}: {e}"))?;
    // Kafka clients do not negotiate ALPN; nothing to set. Session resumption by tickets
    // spares reconnecting clients a full handshake.
    config.send_tls13_tickets = 2;
    Ok(config)
}

/// The server side of TLS: the current configuration, replaced when the files change.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<(Arc<rustls::ServerConfig>, Fingerprint)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files; an error names the file that is wrong.
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let fp = read_all(&files)?;
        let config = server_config(&files, &fp)?;
        Ok(Tls {
            files,
            current: RwLock::new((Arc::new(config), fp)),
        })
    }

    /// The acceptor new connections use.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => c.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        };
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Reads the files again and swaps the configuration if they changed and parse; a bad
    /// file (half-written by a rotation) keeps the old configuration. `true` if swapped.
    pub fn reload(&self) -> bool {
        let fp = match read_all(&self.files) {
            Ok(fp) => fp,
            Err(e) => {
                warn!(error = %e, "TLS files unreadable; keeping the current certificate");
                return false;
            }
        };
        let same = match self.current.read() {
            Ok(c) => c.1 == fp,
            Err(_) => false,
        };
        if same {
            return false;
        }
        match server_config(&self.files, &fp) {
            Ok(config) => {
                if let Ok(mut c) = self.current.write() {
                    *c = (Arc::new(config), fp);
                }
                info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                warn!(error = %e, "new TLS files do not load; keeping the current certificate");
                false
            }
        }
    }

    pub fn reload_interval(&self) -> Duration {
        self.files.reload_interval
    }

    /// The client side for connections to peers over TLS: trusts `--ssl-ca-file`, and presents
    /// this broker's certificate when listeners ask clients for one.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let fp = read_all(&self.files)?;
        let ca = fp
            .2
            .as_ref()
            .ok_or("TLS to peers needs --ssl-ca-file (the CA that signed their certificates)")?;
        let roots = roots_of(ca, "--ssl-ca-file")?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(roots);
        let config = if self.files.client_auth == ClientAuth::None {
            builder.with_no_client_auth()
        } else {
            let chain = certs_of(&fp.0, "--ssl-cert-file")?;
            let key =
                PrivateKeyDer::from_pem_slice(&fp.1).map_err(|e| format!("--ssl-key-file: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        };
        Ok(Arc::new(config))
    }
}

/// How SASL listeners authenticate.
pub struct SaslSettings {
    pub mechanisms: Vec<Mechanism>,
    /// PLAIN passwords from a file; without one, PLAIN checks the SCRAM credentials.
    pub plain_file: Option<PasswordFile>,
    /// Kafka's `connections.max.reauth.ms`: sessions last this long (KIP-368).
    pub reauth: Option<Duration>,
    /// Kafka's `connection.failed.authentication.delay.ms`.
    pub failed_delay: Duration,
    pub limiter: FailureLimiter,
    /// Seeds the made-up SCRAM salts of unknown users (random per process).
    pub secret: [u8; 32],
}

impl SaslSettings {
    pub fn new(
        mechanisms: Vec<Mechanism>,
        plain_file: Option<PasswordFile>,
        reauth: Option<Duration>,
        failed_delay: Duration,
        max_failures_per_minute: u32,
    ) -> Self {
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
        SaslSettings {
            mechanisms,
            plain_file,
            reauth,
            failed_delay,
            limiter: FailureLimiter::new(max_failures_per_minute, Duration::from_secs(60)),
            secret,
        }
    }

    pub fn enabled(&self, m: Mechanism) -> bool {
        self.mechanisms.contains(&m)
    }
}

impl std::fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanisms", &self.mechanisms)
            .field("reauth", &self.reauth)
            .finish_non_exhaustive()
    }
}

/// Counts failed authentications per client address over a sliding window; an address over
/// the limit is refused without its credentials being looked at, until the window clears.
pub struct FailureLimiter {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Addresses tracked before old entries are swept.
const LIMITER_SWEEP_AT: usize = 10_000;

impl FailureLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        FailureLimiter {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `addr` may try to authenticate now.
    pub fn allowed(&self, addr: &str, now: Instant) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return true;
        };
        match map.get_mut(addr) {
            None => true,
            Some(times) => {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    times.pop_front();
                }
                let ok = (times.len() as u64) < u64::from(self.limit);
                if times.is_empty() {
                    map.remove(addr);
                }
                ok
            }
        }
    }

    /// Records a failure of `addr`.
    pub fn failed(&self, addr: &str, now: Instant) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= LIMITER_SWEEP_AT {
            let window = self.window;
            map.retain(|_, t| t.back().is_some_and(|l| now.duration_since(*l) < window));
        }
        let times = map.entry(addr.to_string()).or_default();
        times.push_back(now);
        // Only the newest `limit` failures matter.
        while times.len() > self.limit.max(1) as usize {
            times.pop_front();
        }
    }
}

/// A listener as the server runs it.
pub struct ListenerRuntime {
    pub listener: Listener,
    pub tls: Option<Arc<Tls>>,
    pub sasl: Option<Arc<SaslSettings>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_refuses_an_address_over_the_limit_until_the_window_clears() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.allowed("10.0.0.1", t0), "attempt {i}");
            l.failed("10.0.0.1", t0);
        }
        assert!(!l.allowed("10.0.0.1", t0 + Duration::from_secs(59)));
        assert!(
            l.allowed("10.0.0.2", t0),
            "other addresses are not affected"
        );
        assert!(l.allowed("10.0.0.1", t0 + Duration::from_secs(60)));
    }

    #[test]
    fn protocols_parse() {
        for p in [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ] {
            assert_eq!(SecurityProtocol::parse(p.name()), Some(p));
        }
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(SecurityProtocol::parse("TLS"), None);
        assert!(SecurityProtocol::SaslSsl.tls() && SecurityProtocol::SaslSsl.sasl());
        assert!(!SecurityProtocol::Ssl.sasl() && !SecurityProtocol::SaslPlaintext.tls());
    }
}
