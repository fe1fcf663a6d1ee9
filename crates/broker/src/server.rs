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
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::handlers;
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
}

/// The name of the (one) Kafka listener in metrics.
const LISTENER: &str = "kafka";

/// How long shutdown waits for connections to finish their in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until shutdown, then waits for them to drain.
pub async fn run(broker: Arc<Broker>, listener: TcpListener) {
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
                    let (b, open) = (broker.clone(), open.clone());
                    conns.spawn(async move {
                        let by_listener = b
                            .metrics
                            .listener_connections
                            .get_or_create(&crate::metrics::ListenerLabel {
                                listener: LISTENER.to_string(),
                            })
                            .clone();
                        b.metrics.connections.inc();
                        by_listener.inc();
                        serve_connection(b.clone(), stream).await;
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

async fn serve_connection(broker: Arc<Broker>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
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
                Reply::Close => break,
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
    let peer_name = peer.map(|p| p.ip().to_string()).unwrap_or_default();
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
        let (count, latency) = broker.metrics.api(
            frame
                .get(..2)
                .map_or(-1, |k| i16::from_be_bytes([k[0], k[1]])),
        );
        count.inc();
        let began = std::time::Instant::now();
        let reply = match handlers::dispatch(&broker, frame, &peer_name).await {
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
        let close = matches!(reply, Reply::Close);
        if tx.send(reply).await.is_err() || close {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
