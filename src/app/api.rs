//! The HTTP side: the API token, the API server, and the metrics-only server of the roles
//! that serve no API.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vigil_dashboards::{ApiToken, AppState, Metrics, MetricsSource};

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

/// Serves the API (`state`) on `listener` until `shutdown`.
pub fn spawn_api(
    listener: TcpListener,
    state: AppState,
    tasks: &mut TaskSet,
    shutdown: &CancellationToken,
) {
    let shutdown = shutdown.clone();
    tasks.spawn("API server", async move {
        vigil_dashboards::serve(listener, state, shutdown)
            .await
            .context("API server")
    });
}

/// Serves `/metrics` and `/healthz` of `sources` on `addr` until `shutdown`, when asked to.
pub async fn spawn_metrics(
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
    let router = vigil_dashboards::metrics_router(Arc::new(Metrics::new(sources)));
    let shutdown = shutdown.clone();
    tasks.spawn("metrics server", async move {
        vigil_dashboards::serve_router(listener, router, shutdown)
            .await
            .context("metrics server")
    });
    Ok(())
}
