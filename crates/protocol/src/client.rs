//! A small pipelining Kafka client, for the CLI and the benchmark.
//!
//! Requests go out through one writer task and responses are matched to callers by correlation
//! id, so many requests can be in flight on one connection (as librdkafka does). It speaks only
//! what the CLI needs; it is not a general-purpose client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::BufWriter;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::frame::read_frame;

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed")]
    Closed,
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("authentication failed: {0}")]
    Auth(String),
}

/// A SASL login the client performs right after connecting.
#[derive(Clone)]
pub struct SaslLogin {
    pub mechanism: sediment_auth::Mechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<Bytes>>>>;

/// How a connection is carried.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    #[default]
    Plain,
    /// TLS with this configuration; the server name is the address's host.
    Tls(Arc<rustls::ClientConfig>),
}

/// One connection to a broker.
pub struct Client {
    next_id: AtomicI32,
    pending: Pending,
    /// Frames to write, as (header, body): the body of a pre-encoded request is sent as is.
    out: mpsc::Sender<(Bytes, Bytes)>,
    client_id: StrBytes,
}

impl Client {
    /// Connects in plaintext and starts the reader and writer tasks.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        Self::connect_via(addr, &Transport::Plain).await
    }

    /// Connects over `transport` and starts the reader and writer tasks.
    pub async fn connect_via(addr: &str, transport: &Transport) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        match transport {
            Transport::Plain => {
                let (rd, wr) = stream.into_split();
                Ok(Self::start_tasks(rd, wr))
            }
            Transport::Tls(config) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| ClientError::Protocol(format!("TLS server name {host:?}: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await?;
                let (rd, wr) = tokio::io::split(tls);
                Ok(Self::start_tasks(rd, wr))
            }
        }
    }

    /// Connects over `transport`, then authenticates with `login` if one is given.
    pub async fn connect_secure(
        addr: &str,
        transport: &Transport,
        login: Option<&SaslLogin>,
    ) -> Result<Self, ClientError> {
        let client = Self::connect_via(addr, transport).await?;
        if let Some(login) = login {
            client.authenticate(login).await?;
        }
        Ok(client)
    }

    /// SaslHandshake v1, then SaslAuthenticate rounds for the login's mechanism (KIP-152).
    pub async fn authenticate(&self, login: &SaslLogin) -> Result<(), ClientError> {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
        use sediment_auth::scram::ClientExchange;
        let mut hs = SaslHandshakeRequest::default();
        hs.mechanism = StrBytes::from_static_str(login.mechanism.name());
        let resp = self.send(1, &hs).await?;
        if resp.error_code != 0 {
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(ClientError::Auth(format!(
                "the broker does not take {} (error {}; it offers {})",
                login.mechanism,
                resp.error_code,
                offered.join(", ")
            )));
        }
        let round = |bytes: Vec<u8>| async move {
            let mut req = SaslAuthenticateRequest::default();
            req.auth_bytes = Bytes::from(bytes);
            let resp = self.send(2, &req).await?;
            if resp.error_code != 0 {
                return Err(ClientError::Auth(
                    resp.error_message
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| format!("error {}", resp.error_code)),
                ));
            }
            Ok::<_, ClientError>(resp.auth_bytes)
        };
        match login.mechanism.scram_hash() {
            None => {
                let msg = format!("\0{}\0{}", login.username, login.password);
                round(msg.into_bytes()).await?;
            }
            Some(hash) => {
                let mut ex = ClientExchange::new(hash, &login.username, &login.password);
                let server_first = round(ex.first()).await?;
                let fin = ex
                    .answer(&server_first)
                    .map_err(|e| ClientError::Auth(e.to_string()))?;
                let server_final = round(fin).await?;
                ex.verify(&server_final).map_err(|_| {
                    ClientError::Auth("the broker's SCRAM signature is wrong".into())
                })?;
            }
        }
        Ok(())
    }

    fn start_tasks<R, W>(mut rd: R, wr: W) -> Self
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let pending: Pending = Arc::default();
        let (out, mut out_rx) = mpsc::channel::<(Bytes, Bytes)>(1024);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut wr = BufWriter::with_capacity(256 * 1024, wr);
            while let Some((head, body)) = out_rx.recv().await {
                let len = (head.len() + body.len()) as i32;
                let written = async {
                    wr.write_all(&len.to_be_bytes()).await?;
                    wr.write_all(&head).await?;
                    wr.write_all(&body).await
                };
                if written.await.is_err() {
                    break;
                }
                // Flush only when nothing else is queued, so bursts share a syscall.
                if out_rx.is_empty() && tokio::io::AsyncWriteExt::flush(&mut wr).await.is_err() {
                    break;
                }
            }
        });
        let reader_pending = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = read_frame(&mut rd, 1 << 30).await {
                if frame.len() < 4 {
                    break;
                }
                let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let waiter = match reader_pending.lock() {
                    Ok(mut map) => map.remove(&id),
                    Err(_) => break,
                };
                if let Some(tx) = waiter {
                    let _ = tx.send(frame);
                }
            }
            // Dropping every sender wakes all waiters with Closed.
            if let Ok(mut map) = reader_pending.lock() {
                map.clear();
            }
        });
        Self {
            next_id: AtomicI32::new(1),
            pending,
            out,
            client_id: StrBytes::from_static_str("sediment-cli"),
        }
    }

    fn encode<R: Request>(&self, version: i16, req: &R, id: i32) -> Result<Bytes, ClientError> {
        let mut buf = BytesMut::from(&self.encode_header::<R>(version, id)?[..]);
        req.encode(&mut buf, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(buf.freeze())
    }

    /// Sends a request and waits for its response.
    pub async fn send<R: Request>(
        &self,
        version: i16,
        req: &R,
    ) -> Result<R::Response, ClientError> {
        let rx = self.start(version, req).await?;
        Self::finish::<R>(version, rx).await
    }

    /// Sends a request and returns a handle to await its response later (pipelining).
    pub async fn start<R: Request>(
        &self,
        version: i16,
        req: &R,
    ) -> Result<oneshot::Receiver<Bytes>, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(version, req, id)?;
        self.start_frame(id, frame, Bytes::new()).await
    }

    async fn start_frame(
        &self,
        id: i32,
        head: Bytes,
        body: Bytes,
    ) -> Result<oneshot::Receiver<Bytes>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| ClientError::Closed)?
            .insert(id, tx);
        self.out
            .send((head, body))
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(rx)
    }

    /// Encodes a request body once, for sending many times with [`Client::start_encoded`]
    /// (a benchmark's identical produce requests).
    pub fn encode_body<R: Request>(version: i16, req: &R) -> Result<Bytes, ClientError> {
        let mut buf = BytesMut::new();
        req.encode(&mut buf, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(buf.freeze())
    }

    /// Sends a body made by [`Client::encode_body`] under a fresh header.
    pub async fn start_encoded<R: Request>(
        &self,
        version: i16,
        body: Bytes,
    ) -> Result<oneshot::Receiver<Bytes>, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let head = self.encode_header::<R>(version, id)?;
        self.start_frame(id, head, body).await
    }

    fn encode_header<R: Request>(&self, version: i16, id: i32) -> Result<Bytes, ClientError> {
        let api_key = ApiKey::try_from(R::KEY)
            .map_err(|_| ClientError::Protocol("unknown api key".into()))?;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(self.client_id.clone());
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(buf.freeze())
    }

    /// Sends a request that gets no response (Produce with acks=0).
    pub async fn send_oneway<R: Request>(&self, version: i16, req: &R) -> Result<(), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(version, req, id)?;
        self.out
            .send((frame, Bytes::new()))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a pre-encoded body that gets no response (Produce with acks=0).
    pub async fn send_oneway_encoded<R: Request>(
        &self,
        version: i16,
        body: Bytes,
    ) -> Result<(), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let head = self.encode_header::<R>(version, id)?;
        self.out
            .send((head, body))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Waits for and decodes a response started with [`Client::start`].
    pub async fn finish<R: Request>(
        version: i16,
        rx: oneshot::Receiver<Bytes>,
    ) -> Result<R::Response, ClientError> {
        let mut frame = rx.await.map_err(|_| ClientError::Closed)?;
        ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        R::Response::decode(&mut frame, version).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
