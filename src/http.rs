//! HTTP for operations: `/healthz`, `/readyz` and `/metrics` (contract §6).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;

/// The router; the application carries the probes and the metrics.
pub fn router(shared: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// 200 while the process lives.
async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 only when the register and the state database answer and the last successful poll is
/// recent ([`App::readiness`]); else 503 with a short reason. Answered at once from the daemon's
/// background check ([`App::checked_readiness`]), never by waiting on a database.
async fn readyz(State(shared): State<Arc<App>>) -> Response {
    match shared.checked_readiness() {
        Ok(()) if shared.holds_poll_lease() => {
            (StatusCode::OK, "ready; this replica polls the register\n").into_response()
        }
        Ok(()) => (StatusCode::OK, "ready; another replica polls the register\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}

async fn metrics(State(shared): State<Arc<App>>) -> Response {
    shared.refresh_gauges().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        shared.metrics.render() + &shared.delivery_metrics.render(),
    )
        .into_response()
}
