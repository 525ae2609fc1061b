//! The HTTP side: the API token, the API server, and the metrics-only server of the roles
//! that serve no API.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use axum::Router;
use vigil_dashboards::{
    health_router, serve_with_limits, ApiLimits, ApiOptions, ApiToken, Health, Metrics,
    MetricsSource, ServerLimits,
};

use crate::app::secrets;
use crate::data_dir::DataDir;
use crate::settings::Settings;
use crate::tasks::TaskSet;

/// The API token and where it came from, for the start-up line.
pub struct ResolvedToken {
    /// The token.
    pub token: ApiToken,
    /// Where it came from.
    pub where_from: String,
}

/// The API token: `api.token` (flag or `VIGIL_API_TOKEN`), else `api.token_file`, else the
/// one stored in the data dir (generated on first start). Its value is never printed or logged.
pub fn api_token(settings: &Settings, data_dir: &DataDir) -> anyhow::Result<ResolvedToken> {
    if let Some(t) = &settings.api.token {
        return Ok(ResolvedToken {
            token: ApiToken::new(t.clone()).context("empty API token")?,
            where_from: "token as configured".to_owned(),
        });
    }
    if let Some(path) = &settings.api.token_file {
        return Ok(ResolvedToken {
            token: ApiToken::new(secrets::read(path)?).context("empty API token")?,
            where_from: format!("token in {}", path.display()),
        });
    }
    let path = data_dir.api_token();
    let stored = secrets::load_or_create(&path)?;
    let where_from = if stored.created {
        format!("token generated into {}", path.display())
    } else {
        format!("token in {}", path.display())
    };
    Ok(ResolvedToken {
        token: ApiToken::new(stored.value).context("empty API token")?,
        where_from,
    })
}

/// Listens on `addr`.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))
}

/// The request limits and the health registry the API is built with.
pub fn options(settings: &Settings, health: &Health) -> ApiOptions {
    ApiOptions {
        limits: ApiLimits {
            max_concurrent_searches: settings.api.concurrent_searches(),
            search_queue_timeout: Duration::from_millis(settings.api.search_queue_timeout_ms),
            max_alerts_page: settings.api.max_alerts_page,
        },
        health: health.clone(),
    }
}

/// What one client may hold of the server.
pub fn server_limits(settings: &Settings) -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_secs(settings.api.header_read_timeout_secs),
        request_timeout: Duration::from_secs(settings.api.request_timeout_secs),
        idle_timeout: Duration::from_secs(settings.api.idle_timeout_secs),
        max_connections: settings.api.max_connections,
    }
}

/// Serves `router` on `listener` under the settings' limits until `shutdown`.
pub fn spawn_server(
    settings: &Settings,
    listener: TcpListener,
    router: Router,
    tasks: &mut TaskSet,
    shutdown: &CancellationToken,
) {
    let (limits, shutdown) = (server_limits(settings), shutdown.clone());
    tasks.spawn("API server", async move {
        serve_with_limits(listener, router, limits, shutdown)
            .await
            .context("API server")
    });
}

/// Serves `/metrics`, `/healthz` and `/readyz` of `sources` and the stages of `tasks` on
/// `addr` until `shutdown`, when asked to.
pub async fn spawn_metrics(
    settings: &Settings,
    addr: Option<SocketAddr>,
    sources: Vec<Arc<dyn MetricsSource>>,
    tasks: &mut TaskSet,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(addr) = addr else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics: listening on {addr}"))?;
    eprintln!(
        "vigil: metrics on http://{}/metrics",
        listener.local_addr()?
    );
    let router = health_router(Arc::new(Metrics::new(sources)), tasks.health().clone());
    spawn_server(settings, listener, router, tasks, shutdown);
    Ok(())
}
