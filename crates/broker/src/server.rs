//! The Kafka listener: one task per connection, responses in request order.
//!
//! A connection's reader decodes each request and runs its synchronous part at once (a produce
//! is validated, given offsets and queued on the WAL before the next request is read, which keeps
//! a producer's batches in order), then hands the writer either a finished response or a future
//! that finishes it (waiting for the WAL sync, or a fetch's long poll). The writer awaits those in
//! order, so several produce requests from one connection share one group commit while responses
//! still leave in the order the requests came, as Kafka clients require.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use sediment_protocol::frame::{read_frame, write_frame, FrameError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::handlers;
use crate::security::{ListenerRuntime, Session, ANONYMOUS};
use crate::Broker;

/// What the writer does for one request.
pub enum Reply {
    /// An encoded response (header and body, without the size prefix).
    Ready(Bytes),
    /// A response still being worked on; `None` from it closes the connection.
    Later(BoxFuture<'static, Option<Bytes>>),
    /// No response (Produce with acks=0).
    Nothing,
    /// Close the connection after the responses already queued.
    Close,
    /// Send this reply, then close the connection (a failed authentication).
    ThenClose(Box<Reply>),
}

/// Longest a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for connections to finish their in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on a plaintext listener named `PLAINTEXT` until shutdown (tests and
/// embedded use).
pub async fn run(broker: Arc<Broker>, listener: TcpListener) {
    let c = &broker.config;
    let rt = ListenerRuntime {
        listener: crate::security::Listener {
            name: "PLAINTEXT".into(),
            protocol: crate::security::SecurityProtocol::Plaintext,
            advertised_host: c.advertised_host.clone(),
            advertised_port: c.advertised_port,
        },
        tls: None,
        sasl: None,
    };
    run_listener(broker, listener, Arc::new(rt)).await
}

/// Accepts connections on one listener until shutdown, then waits for them to drain.
pub async fn run_listener(broker: Arc<Broker>, listener: TcpListener, rt: Arc<ListenerRuntime>) {
    if let Some(tls) = rt.tls.clone() {
        let mut stop = broker.shutdown_signal();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = crate::wait_stopped(&mut stop) => return,
                    _ = tokio::time::sleep(tls.reload_interval()) => {}
                }
                let t = tls.clone();
                let _ = tokio::task::spawn_blocking(move || t.reload()).await;
            }
        });
    }
    let listener_name: Arc<str> = Arc::from(rt.listener.name.as_str());
    // Counted rather than a semaphore's permits, so the dynamic `max.connections` can move the
    // limit at any time (connections already open stay, as in Kafka).
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut stop = broker.shutdown_signal();
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = crate::wait_stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let limit = broker.connection_limit.load(Ordering::Relaxed);
                    if open.fetch_add(1, Ordering::AcqRel) >= limit {
                        open.fetch_sub(1, Ordering::AcqRel);
                        warn!(%peer, limit, "connection limit reached; refusing connection");
                        continue;
                    }
                    let (b, open, rt) = (broker.clone(), open.clone(), rt.clone());
                    let name = listener_name.clone();
                    conns.spawn(async move {
                        let by_listener = b
                            .metrics
                            .listener_connections
                            .get_or_create(&crate::metrics::ListenerLabel {
                                listener: name.to_string(),
                            })
                            .clone();
                        b.metrics.connections.inc();
                        by_listener.inc();
                        let _ = stream.set_nodelay(true);
                        let mut session = Session {
                            listener: name,
                            peer: peer.ip().to_string(),
                            principal: ANONYMOUS.to_string(),
                        };
                        match rt.tls.as_ref().map(|t| t.acceptor()) {
                            None => {
                                let (rd, wr) = stream.into_split();
                                serve_connection(b.clone(), rt, session, rd, wr).await;
                            }
                            Some(acceptor) => {
                                match tokio::time::timeout(
                                    TLS_HANDSHAKE_TIMEOUT,
                                    acceptor.accept(stream),
                                )
                                .await
                                {
                                    Ok(Ok(tls)) => {
                                        let cert = tls
                                            .get_ref()
                                            .1
                                            .peer_certificates()
                                            .and_then(|c| c.first());
                                        if let Some(cert) = cert {
                                            match sediment_auth::principal::principal_of(cert) {
                                                Ok(p) => session.principal = p,
                                                Err(e) => {
                                                    warn!(%peer, error = %e, "client certificate has no usable subject");
                                                }
                                            }
                                        }
                                        let (rd, wr) = tokio::io::split(tls);
                                        serve_connection(b.clone(), rt, session, rd, wr).await;
                                    }
                                    Ok(Err(e)) => {
                                        b.metrics.tls_handshake_failures.inc();
                                        info!(%peer, error = %e, "TLS handshake failed");
                                    }
                                    Err(_) => {
                                        b.metrics.tls_handshake_failures.inc();
                                        info!(%peer, "TLS handshake timed out");
                                    }
                                }
                            }
                        }
                        b.metrics.connections.dec();
                        by_listener.dec();
                        open.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
    info!(
        connections = conns.len(),
        "listener stopped; draining connections"
    );
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("connections did not drain in time; closing them");
        conns.shutdown().await;
    }
}

async fn serve_connection<R, W>(
    broker: Arc<Broker>,
    rt: Arc<ListenerRuntime>,
    mut session: Session,
    rd: R,
    wr: W,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = session.peer.clone();
    // Buffered, so a frame's 4-byte size and small requests do not each cost a syscall.
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
    let (tx, mut rx) = mpsc::channel::<Reply>(broker.config.max_inflight_per_connection);

    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::with_capacity(256 * 1024, wr);
        while let Some(reply) = rx.recv().await {
            let frame = match reply {
                Reply::Ready(b) => b,
                Reply::Later(fut) => match fut.await {
                    Some(b) => b,
                    None => break,
                },
                Reply::Nothing => continue,
                Reply::Close | Reply::ThenClose(_) => break,
            };
            if write_frame(&mut wr, &frame).await.is_err() {
                return;
            }
            if rx.is_empty() && wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });

    let mut stop = broker.shutdown_signal();
    let mut auth = crate::handlers::sasl::ConnAuth::default();
    loop {
        let frame = tokio::select! {
            _ = crate::wait_stopped(&mut stop) => break,
            f = read_frame(&mut rd, broker.config.max_request_bytes) => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::BadSize { size, max }) => {
                broker.metrics.bad_requests.inc();
                warn!(
                    ?peer,
                    size, max, "request size outside the limit; closing connection"
                );
                break;
            }
            Err(e) => {
                debug!(?peer, error = %e, "connection ended");
                break;
            }
        };
        // Counted and timed by API (the frame's first two bytes), until the response is ready.
        let api_key = frame
            .get(..2)
            .map_or(-1, |k| i16::from_be_bytes([k[0], k[1]]));
        let (count, latency) = broker.metrics.api(api_key);
        count.inc();
        let began = std::time::Instant::now();
        let outcome = if auth.expects_raw_token() {
            handlers::sasl::handle_raw(&broker, &rt, &mut auth, &mut session, frame).await
        } else if handlers::sasl::is_sasl_api(api_key) {
            handlers::sasl::handle(&broker, &rt, &mut auth, &mut session, frame).await
        } else {
            match handlers::sasl::gate(&rt, &auth, api_key) {
                Ok(()) => handlers::dispatch(&broker, frame, &session).await,
                Err(why) => {
                    broker.metrics.bad_requests.inc();
                    info!(peer = %peer, api_key, why, "closing connection");
                    Reply::Close
                }
            }
        };
        let reply = match outcome {
            Reply::Later(fut) => Reply::Later(
                async move {
                    let r = fut.await;
                    latency.observe(began.elapsed().as_secs_f64());
                    r
                }
                .boxed(),
            ),
            other => {
                latency.observe(began.elapsed().as_secs_f64());
                other
            }
        };
        let (reply, close) = match reply {
            Reply::ThenClose(last) => (*last, true),
            Reply::Close => (Reply::Close, true),
            other => (other, false),
        };
        if tx.send(reply).await.is_err() || close {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
