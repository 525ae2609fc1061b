//! Vigil's HTTP API (axum): what a responder or a dashboard asks of the index and the alerts,
//! and what an orchestrator asks of the process's health.
//!
//! [`router`] serves `/api/v1/search`, `/events/{id}`, `/histogram`, `/facets` (over an
//! [`EventSearcher`]) and `/alerts` (over the [`vigil_rules::AlertStore`] when the rules
//! engine runs in the same process), all behind the bearer [`ApiToken`]; and open:
//! `/api/v1/openapi.json` (the OpenAPI document of all of it, see [`openapi`]), `/healthz`
//! (liveness), `/readyz` (readiness) from the stages' [`Health`], and `/metrics`.
//! [`health_router`] is the open part alone, for the roles that serve no API.
//!
//! No single request can hurt the service: parameters are checked in the handlers (a bad
//! one is a 400 [`ApiError`] naming it), searches run on blocking threads under the query
//! time limit (503 past it) and at most [`ApiLimits::max_concurrent_searches`] at once (a
//! request waits its turn for a while, then 429), and [`serve_with_limits`] bounds what a
//! connection may hold ([`ServerLimits`]). `vigil run` and `vigil serve` mount it; the web
//! UI is not built yet.

#![deny(missing_docs)]

pub mod auth;
pub mod error;
pub mod health;
pub mod metrics;
pub mod model;
pub mod openapi;
mod search;
pub mod server;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::Semaphore;
use vigil_indexer::EventSearcher;

pub use auth::ApiToken;
pub use error::ApiError;
pub use health::{Health, HealthReport, StageHandle, StageReport, StageStatus};
pub use metrics::{Metrics, MetricsSource, Sample, SampleKind};
pub use server::{serve_with_limits, ServerLimits};

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

/// Default [`ApiLimits::max_alerts_page`].
pub const DEFAULT_MAX_ALERTS_PAGE: usize = 1000;
/// Default [`ApiLimits::search_queue_timeout`].
pub const DEFAULT_SEARCH_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds on what API requests may ask for, beside the index's own
/// [`vigil_indexer::SearchLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Searches (search, event, histogram, facets, alerts) running at once. A search
    /// abandoned at its time limit keeps its place until its thread really finishes, so slow
    /// queries cannot pile up. Default: the number of CPUs, at least 2, like the index's own
    /// `max_concurrent_searches`: at or under it, requests wait their turn here (in order)
    /// rather than being refused by the index.
    pub max_concurrent_searches: usize,
    /// How long a search waits for a place before it is answered 429 with `Retry-After`.
    /// Waiting in order, rather than refusing at once, keeps a few clients in a loop from
    /// taking every place from the others. Default 2 s.
    pub search_queue_timeout: Duration,
    /// Largest `limit` of `/api/v1/alerts`. Default 1000.
    pub max_alerts_page: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_concurrent_searches: std::thread::available_parallelism()
                .map_or(2, usize::from)
                .max(2),
            search_queue_timeout: DEFAULT_SEARCH_QUEUE_TIMEOUT,
            max_alerts_page: DEFAULT_MAX_ALERTS_PAGE,
        }
    }
}

/// How the router is built beyond its [`AppState`]: request limits and the health registry.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// Request limits.
    pub limits: ApiLimits,
    /// The stages' health, served by `/healthz` and `/readyz`.
    pub health: Health,
}

/// The state the routes share: the app state once the index is open, and the limits.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) token: ApiToken,
    app: Arc<OnceLock<AppState>>,
    pub(crate) searches: Arc<Semaphore>,
    pub(crate) limits: ApiLimits,
}

impl Shared {
    /// The app state, or 503 while the index is not open yet.
    pub(crate) fn app(&self) -> Result<&AppState, ApiError> {
        self.app.get().ok_or(ApiError::NotReady)
    }
}

/// The whole router: `/api/v1/*` behind the token; `/api/v1/openapi.json`, `/healthz`,
/// `/readyz` and `/metrics` open. Default [`ApiOptions`]: no stages in the health registry.
pub fn router(state: AppState) -> Router {
    router_with(state, ApiOptions::default())
}

/// [`router`] with `options`.
pub fn router_with(state: AppState, options: ApiOptions) -> Router {
    let token = state.token.clone();
    let metrics = Arc::clone(&state.metrics);
    let (router, slot) = waiting_router(token, metrics, options);
    slot.open(state);
    router
}

/// Fills the router of [`waiting_router`] once the index is open.
#[derive(Clone)]
pub struct ApiSlot(Arc<OnceLock<AppState>>);

impl ApiSlot {
    /// Serves `state` from now on; `/readyz` stops reporting the index as not open. The
    /// router keeps the token and metrics it was built with. A second call is ignored.
    pub fn open(&self, state: AppState) {
        let _ = self.0.set(state);
    }
}

/// The router of a server that listens before its index is open (`vigil serve` waiting for
/// the writer to create it): until [`ApiSlot::open`], `/api/v1/*` answers 503 and `/readyz`
/// reports an `index` stage that is starting.
pub fn waiting_router(
    token: ApiToken,
    metrics: Arc<Metrics>,
    options: ApiOptions,
) -> (Router, ApiSlot) {
    let (router, slot, _) = build(token, metrics, options);
    (router, slot)
}

/// The router, its slot, and the state its API routes share (for tests to hold places).
fn build(token: ApiToken, metrics: Arc<Metrics>, options: ApiOptions) -> (Router, ApiSlot, Shared) {
    let app = Arc::new(OnceLock::new());
    let shared = Shared {
        token,
        app: Arc::clone(&app),
        searches: Arc::new(Semaphore::new(
            options.limits.max_concurrent_searches.max(1),
        )),
        limits: options.limits,
    };
    let api = Router::new()
        .route("/search", get(search::search))
        .route("/events/{id}", get(search::event))
        .route("/histogram", get(search::histogram))
        .route("/facets", get(search::facets))
        .route("/alerts", get(search::alerts))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::require_token,
        ))
        .with_state(shared.clone())
        .route("/openapi.json", get(openapi::serve));
    let index_open = {
        let app = Arc::clone(&app);
        move || app.get().is_some()
    };
    let router = Router::new()
        .nest("/api/v1", api)
        .merge(open_routes(
            metrics,
            options.health,
            Some(Arc::new(index_open)),
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024));
    (router, ApiSlot(app), shared)
}

/// `/healthz`, `/readyz` (from `health`) and `/metrics`, open: for the roles that serve no
/// API (`vigil collect`, `vigil index`, `vigil rules`).
pub fn health_router(metrics: Arc<Metrics>, health: Health) -> Router {
    open_routes(metrics, health, None)
}

type IndexOpen = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
struct OpenState {
    metrics: Arc<Metrics>,
    health: Health,
    /// Whether the API's index is open; `None` where no API is served.
    index_open: Option<IndexOpen>,
}

impl OpenState {
    fn report(&self) -> HealthReport {
        let report = self.health.report();
        match &self.index_open {
            Some(open) if !open() => report.with_stage(StageReport {
                name: "index".to_owned(),
                status: StageStatus::Starting,
                reason: Some("the index is not open yet".to_owned()),
                last_commit: None,
                commit_age_secs: None,
                lag: 0,
            }),
            _ => report,
        }
    }
}

fn open_routes(metrics: Arc<Metrics>, health: Health, index_open: Option<IndexOpen>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(OpenState {
            metrics,
            health,
            index_open,
        })
}

/// `GET /healthz`: 200 while no stage is dead, else 503; the body lists every stage.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses(
        (status = 200, description = "Alive: no stage is dead", body = HealthReport),
        (status = 503, description = "A stage is dead", body = HealthReport),
    )
)]
async fn healthz(State(state): State<OpenState>) -> impl IntoResponse {
    let report = state.report();
    health_answer(report.alive, report)
}

/// 200 with the report when `ok`, else 503 with it.
fn health_answer(ok: bool, report: HealthReport) -> impl IntoResponse {
    let status = match ok {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(report))
}

/// `GET /readyz`: 200 when every stage runs and none is stuck, else 503.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready: every stage runs, none is stuck", body = HealthReport),
        (status = 503, description = "Not ready: a stage is starting, stuck or dead", body = HealthReport),
    )
)]
async fn readyz(State(state): State<OpenState>) -> impl IntoResponse {
    let report = state.report();
    health_answer(report.ready, report)
}

/// `GET /metrics`: the OpenMetrics text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Every stage's counters", body = String,
         content_type = "application/openmetrics-text"),
    )
)]
async fn render_metrics(State(state): State<OpenState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    const TOKEN: &str = "unit-test-token";

    fn request(uri: &str) -> Request<Body> {
        Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn searches_wait_for_a_place_then_are_answered_429_with_retry_after() {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = vigil_indexer::EventIndex::open(
            &dir.path().join("index"),
            vigil_indexer::IndexConfig::default(),
        )
        .expect("index");
        let token = ApiToken::new(TOKEN).expect("token");
        let metrics = Arc::new(Metrics::new(Vec::new()));
        let options = ApiOptions {
            limits: ApiLimits {
                max_concurrent_searches: 2,
                search_queue_timeout: Duration::from_millis(200),
                ..ApiLimits::default()
            },
            ..ApiOptions::default()
        };
        let (router, slot, shared) = build(token.clone(), Arc::clone(&metrics), options);
        slot.open(AppState {
            searcher: index.searcher().clone(),
            token,
            metrics,
            query_timeout: Duration::from_secs(10),
            alerts: None,
        });
        // Two searches in progress (their places held here) fill the pool.
        let held = Arc::clone(&shared.searches)
            .try_acquire_many_owned(2)
            .expect("two places");
        for uri in [
            "/api/v1/search?q=*",
            "/api/v1/histogram",
            "/api/v1/facets?field=request.path",
            "/api/v1/events/0123456789abcdef0123456789abcdef",
        ] {
            let started = std::time::Instant::now();
            let response = router
                .clone()
                .oneshot(request(uri))
                .await
                .expect("infallible");
            assert!(
                started.elapsed() >= Duration::from_millis(150),
                "{uri}: refused after {:?}, without waiting its turn",
                started.elapsed()
            );
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{uri}");
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
                Some("1"),
                "{uri}"
            );
        }
        // A bad parameter is still a 400, checked before a place is needed.
        let response = router
            .clone()
            .oneshot(request("/api/v1/search?limit=0"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        // A search that waits gets the place as soon as it is given back.
        let waiting = tokio::spawn(router.clone().oneshot(request("/api/v1/search?q=*")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        let response = waiting.await.expect("no panic").expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            shared.searches.available_permits(),
            2,
            "the place is given back"
        );
    }
}
