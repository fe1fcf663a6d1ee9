//! HTTP endpoint: `/health` for probes, `/metrics` for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::Broker;

async fn health(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    if *b.shutdown_signal().borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn metrics(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    // Gauges that are cheap to compute are taken now rather than at the last uploader pass.
    b.metrics.upload_lag_bytes.set(b.upload_lag_bytes() as i64);
    b.metrics.wal_disk_bytes.set(b.segments.disk_bytes() as i64);
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
        .route("/metrics", get(metrics))
        .with_state(broker);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            crate::wait_stopped(&mut stop).await;
        })
        .await
}
