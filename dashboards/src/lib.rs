//! Vigil's HTTP API (axum): what a responder or a dashboard asks of the index and the alerts.
//!
//! [`router`] serves `/api/v1/search`, `/events/{id}`, `/histogram`, `/facets` (over an
//! [`EventSearcher`]) and `/alerts` (over the [`vigil_rules::AlertStore`] when the rules
//! engine runs in the same process), all behind the bearer [`ApiToken`]; and `/healthz` and
//! `/metrics` open. [`metrics_router`] is the open part alone, for the roles that serve no
//! API. Parameters are checked in the handlers (a bad one is a 400 [`ApiError`] naming it),
//! and index work runs on blocking threads under the query time limit (503 past it).
//! `vigil run` and `vigil serve` mount it; the web UI is not built yet.

#![deny(missing_docs)]

pub mod auth;
pub mod error;
pub mod metrics;
mod search;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;
use vigil_indexer::EventSearcher;

pub use auth::ApiToken;
pub use error::ApiError;
pub use metrics::{Metrics, MetricsSource, Sample, SampleKind};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The index to search.
    pub searcher: EventSearcher,
    /// The token `/api` requires.
    pub token: ApiToken,
    /// The metrics `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// Longest a query may run before the API answers 503.
    pub query_timeout: Duration,
    /// Stored alerts, when the rules engine runs in this process.
    pub alerts: Option<Arc<vigil_rules::AlertStore>>,
}

/// The whole router: `/api/v1/*` behind the token, `/healthz` and `/metrics` open.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/search", get(search::search))
        .route("/events/{id}", get(search::event))
        .route("/histogram", get(search::histogram))
        .route("/facets", get(search::facets))
        .route("/alerts", get(search::alerts))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let metrics = Arc::clone(&state.metrics);
    Router::new()
        .nest("/api/v1", api.with_state(state))
        .merge(metrics_router(metrics))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
}

/// `/healthz` and `/metrics` alone, open: for the roles that serve no API (`vigil collect`,
/// `vigil index`, `vigil rules`).
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn render_metrics(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Serves `router(state)` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}
