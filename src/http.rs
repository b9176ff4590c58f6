//! HTTP for operations: `/healthz`, `/readyz` and `/metrics` (contract §6), and a page at `/`
//! that links them.

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
        .route("/", get(landing))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// A page for a person who opens the address in a browser: what this is, and the endpoints.
async fn landing() -> Response {
    let page = concat!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fristvakt</title></head>\n",
        "<body><h1>fristvakt ",
        env!("CARGO_PKG_VERSION"),
        "</h1>\n<p>Watches the statutory deadlines of child-welfare cases.</p>\n<ul>\n",
        "<li><a href=\"/healthz\">/healthz</a>: 200 while the process lives</li>\n",
        "<li><a href=\"/readyz\">/readyz</a>: 200 when the databases answer and the last poll is recent, ",
        "else 503 with the reason</li>\n",
        "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\n",
        "</ul>\n<p>Documentation: <code>man fristvakt</code>, /usr/share/doc/fristvakt/README.md</p>\n",
        "</body></html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
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
        shared.metrics.render() + &shared.delivery_metrics.render() + &crate::metrics::process_metrics(shared.started),
    )
        .into_response()
}
