//! HTTP endpoint: `/health` for probes, `/metrics` for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::Broker;

/// Liveness: every part of the broker is running (a failed background task or WAL fails it;
/// a restart is what fixes those). Shutting down is still alive.
async fn health(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let r = b.health_report();
    let status = if r.live {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        body(if r.live { "ok" } else { "failed" }, &r.problems),
    )
}

/// Readiness: the broker takes traffic (not failed, not shutting down). Partitions whose
/// uploads fail permanently make it `degraded` (still 200: the broker serves, an operator
/// must look).
async fn ready(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    let r = b.health_report();
    let (status, word) = match (r.ready, r.problems.is_empty()) {
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
    };
    (status, body(word, &r.problems))
}

fn body(first: &str, problems: &[String]) -> String {
    let mut s = format!("{first}\n");
    for p in problems {
        s.push_str(p);
        s.push('\n');
    }
    s
}

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    // Gauges that are cheap to compute are taken now rather than at the last uploader pass.
    b.metrics.upload_lag_bytes.set(b.upload_lag_bytes() as i64);
    b.metrics.wal_disk_bytes.set(b.segments.disk_bytes() as i64);
    b.refresh_group_lag().await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        b.metrics.render(),
    )
}

/// Serves until the broker shuts down.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener) -> std::io::Result<()> {
    let mut stop = broker.shutdown_signal();
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(broker);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            crate::wait_stopped(&mut stop).await;
        })
        .await
}
