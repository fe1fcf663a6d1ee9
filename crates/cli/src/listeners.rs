//! Turns the listener, TLS and SASL settings into bound listeners, refusing every setting
//! that would be ignored (TLS files without a TLS listener, SASL settings without a SASL one).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sediment_auth::plain::PasswordFile;
use sediment_auth::Mechanism;
use sediment_broker::security::{
    ClientAuth, Listener, ListenerRuntime, SaslSettings, SecurityProtocol, Tls, TlsFiles,
};
use tokio::net::TcpListener;

use crate::settings::Settings;

/// A listener bound and ready to serve.
pub struct Bound {
    pub socket: TcpListener,
    pub runtime: Arc<ListenerRuntime>,
}

/// The listeners, the one peers use, and how this broker reaches peers.
pub struct Listeners {
    pub bound: Vec<Bound>,
    pub inter_broker: String,
    pub peer_transport: sediment_protocol::client::Transport,
    pub peer_tls: Option<Arc<Tls>>,
}

fn split_host_port(addr: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("{addr:?} is not host:port"))?;
    let port: i32 = port
        .parse()
        .with_context(|| format!("bad port in {addr:?}"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// `NAME://HOST:PORT` as (NAME, HOST:PORT).
fn parse_listener(spec: &str, flag: &str) -> anyhow::Result<(String, String)> {
    let (name, addr) = spec
        .split_once("://")
        .with_context(|| format!("{flag} {spec:?}: expected NAME://HOST:PORT"))?;
    let name = name.trim().to_ascii_uppercase();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("{flag} {spec:?}: the listener name must be letters, digits and _");
    }
    split_host_port(addr).with_context(|| format!("{flag} {spec:?}"))?;
    Ok((name, addr.to_string()))
}

fn protocol_map(s: &Settings) -> anyhow::Result<HashMap<String, SecurityProtocol>> {
    let mut map = HashMap::new();
    if let Some(text) = &s.listener_security_protocol_map {
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, proto) = pair.split_once(':').with_context(|| {
                format!("--listener-security-protocol-map: {pair:?} is not NAME:PROTOCOL")
            })?;
            let proto = SecurityProtocol::parse(proto.trim()).with_context(|| {
                format!(
                    "--listener-security-protocol-map: unknown protocol {proto:?} (PLAINTEXT, SSL, \
                     SASL_PLAINTEXT or SASL_SSL)"
                )
            })?;
            map.insert(name.trim().to_ascii_uppercase(), proto);
        }
    }
    Ok(map)
}

fn tls_settings(s: &Settings, needed: bool) -> anyhow::Result<Option<Arc<Tls>>> {
    let given = [
        ("--ssl-cert-file", s.ssl_cert_file.is_some()),
        ("--ssl-key-file", s.ssl_key_file.is_some()),
        ("--ssl-ca-file", s.ssl_ca_file.is_some()),
        ("--ssl-client-auth", s.ssl_client_auth.is_some()),
    ];
    if !needed {
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            bail!("{flag} applies to SSL and SASL_SSL listeners only: add one with --listener");
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&s.ssl_cert_file, &s.ssl_key_file) else {
        bail!("SSL and SASL_SSL listeners need --ssl-cert-file and --ssl-key-file");
    };
    let client_auth = match &s.ssl_client_auth {
        None => ClientAuth::None,
        Some(v) => ClientAuth::parse(v).with_context(|| {
            format!("--ssl-client-auth {v:?}: expected none, requested or required")
        })?,
    };
    if client_auth != ClientAuth::None && s.ssl_ca_file.is_none() {
        bail!(
            "--ssl-client-auth {client_auth:?} needs --ssl-ca-file (the CA of client certificates)"
        );
    }
    let files = TlsFiles {
        cert_file: cert.clone(),
        key_file: key.clone(),
        ca_file: s.ssl_ca_file.clone(),
        client_auth,
        reload_interval: Duration::from_millis(s.ssl_reload_interval_ms),
    };
    Ok(Some(Arc::new(
        Tls::load(files).map_err(anyhow::Error::msg)?,
    )))
}

fn sasl_settings(s: &Settings, needed: bool) -> anyhow::Result<Option<Arc<SaslSettings>>> {
    let given = [
        (
            "--sasl-enabled-mechanisms",
            s.sasl_enabled_mechanisms.is_some(),
        ),
        ("--sasl-plain-users-file", s.sasl_plain_users_file.is_some()),
        (
            "--connections-max-reauth-ms",
            s.connections_max_reauth_ms > 0,
        ),
    ];
    if !needed {
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            bail!(
                "{flag} applies to SASL_PLAINTEXT and SASL_SSL listeners only: add one with \
                 --listener"
            );
        }
        return Ok(None);
    }
    let mechanisms = match &s.sasl_enabled_mechanisms {
        None => Mechanism::ALL.to_vec(),
        Some(list) => {
            let mut ms = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let m = Mechanism::from_name(name).with_context(|| {
                    format!(
                        "--sasl-enabled-mechanisms: {name:?} is not one of PLAIN, SCRAM-SHA-256, \
                         SCRAM-SHA-512"
                    )
                })?;
                if !ms.contains(&m) {
                    ms.push(m);
                }
            }
            if ms.is_empty() {
                bail!("--sasl-enabled-mechanisms is empty");
            }
            ms
        }
    };
    let plain_file =
        match &s.sasl_plain_users_file {
            None => None,
            Some(path) => {
                if !mechanisms.contains(&Mechanism::Plain) {
                    bail!("--sasl-plain-users-file needs PLAIN in --sasl-enabled-mechanisms");
                }
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--sasl-plain-users-file {}", path.display()))?;
                Some(PasswordFile::parse(&text).map_err(|e| {
                    anyhow::anyhow!("--sasl-plain-users-file {}: {e}", path.display())
                })?)
            }
        };
    Ok(Some(Arc::new(SaslSettings::new(
        mechanisms,
        plain_file,
        (s.connections_max_reauth_ms > 0)
            .then(|| Duration::from_millis(s.connections_max_reauth_ms)),
        Duration::from_millis(s.failed_authentication_delay_ms),
        s.max_failed_authentications_per_minute,
    ))))
}

/// Binds every listener the settings name.
pub async fn bind(s: &Settings) -> anyhow::Result<Listeners> {
    let map = protocol_map(s)?;
    // (name, protocol, bind address, advertised address if given)
    let mut specs: Vec<(String, SecurityProtocol, String, Option<String>)> = Vec::new();
    if let Some(addr) = &s.kafka_addr {
        specs.push((
            "PLAINTEXT".into(),
            SecurityProtocol::Plaintext,
            addr.clone(),
            s.advertised_addr.clone(),
        ));
    } else if s.advertised_addr.is_some() {
        bail!("--advertised-addr goes with --kafka-addr; use --advertised-listener for --listener");
    }
    for spec in &s.listeners {
        let (name, addr) = parse_listener(spec, "--listener")?;
        if specs.iter().any(|(n, ..)| *n == name) {
            bail!(
                "--listener {spec:?}: a listener named {name} already exists{}",
                if name == "PLAINTEXT" && s.kafka_addr.is_some() {
                    " (--kafka-addr is the PLAINTEXT listener)"
                } else {
                    ""
                }
            );
        }
        let protocol = match map.get(&name) {
            Some(p) => *p,
            None => SecurityProtocol::parse(&name).with_context(|| {
                format!(
                    "--listener {spec:?}: {name} is not a security protocol; map it with \
                     --listener-security-protocol-map {name}:PROTOCOL"
                )
            })?,
        };
        specs.push((name, protocol, addr, None));
    }
    for spec in &s.advertised_listeners {
        let (name, addr) = parse_listener(spec, "--advertised-listener")?;
        match specs.iter_mut().find(|(n, ..)| *n == name) {
            Some(entry) => entry.3 = Some(addr),
            None => bail!("--advertised-listener {spec:?}: no listener is named {name}"),
        }
    }
    let inter_broker = match &s.inter_broker_listener_name {
        Some(n) => {
            let n = n.to_ascii_uppercase();
            if !specs.iter().any(|(name, ..)| *name == n) {
                bail!("--inter-broker-listener-name {n}: no listener has that name");
            }
            n
        }
        None => specs
            .first()
            .map(|(n, ..)| n.clone())
            .context("no Kafka listener: give --kafka-addr or --listener")?,
    };
    let tls = tls_settings(s, specs.iter().any(|(_, p, ..)| p.tls()))?;
    let sasl = sasl_settings(s, specs.iter().any(|(_, p, ..)| p.sasl()))?;

    let mut peer_transport = sediment_protocol::client::Transport::Plain;
    let mut peer_tls = None;
    if let Some((_, proto, ..)) = specs.iter().find(|(n, ..)| *n == inter_broker) {
        if proto.sasl() && !s.etcd_endpoints.is_empty() {
            bail!(
                "--inter-broker-listener-name {inter_broker}: brokers cannot authenticate to each \
                 other with SASL yet; use an SSL listener (with --ssl-client-auth required for \
                 mutual TLS) or PLAINTEXT on a private network"
            );
        }
        if proto.tls() && !s.etcd_endpoints.is_empty() {
            let tls = tls.as_ref().context("TLS listener without TLS settings")?;
            peer_transport = sediment_protocol::client::Transport::Tls(
                tls.client_config().map_err(anyhow::Error::msg)?,
            );
            peer_tls = Some(tls.clone());
        }
    }

    let mut bound = Vec::new();
    for (name, protocol, addr, advertised) in specs {
        let socket = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding the {name} listener to {addr}"))?;
        let local = socket.local_addr()?;
        let advertised = match advertised {
            Some(a) => a,
            None if local.ip().is_unspecified() => {
                if name == "PLAINTEXT" && s.kafka_addr.as_deref() == Some(addr.as_str()) {
                    bail!("--kafka-addr {local} binds every interface; set --advertised-addr to the address clients should use")
                }
                bail!("listener {name} at {local} binds every interface; set --advertised-listener {name}://HOST:PORT")
            }
            None => local.to_string(),
        };
        let (host, port) = split_host_port(&advertised)?;
        let runtime = ListenerRuntime {
            listener: Listener {
                name,
                protocol,
                advertised_host: host,
                advertised_port: port,
            },
            tls: protocol.tls().then(|| tls.clone()).flatten(),
            sasl: protocol.sasl().then(|| sasl.clone()).flatten(),
        };
        bound.push(Bound {
            socket,
            runtime: Arc::new(runtime),
        });
    }
    Ok(Listeners {
        bound,
        inter_broker,
        peer_transport,
        peer_tls,
    })
}
