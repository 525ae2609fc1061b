//! `vigil serve`: the HTTP API over an index that another process (`vigil index`) writes.
//! The index is opened read-only and follows the writer's commits.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_dashboards::{AppState, Metrics};
use vigil_indexer::{EventSearcher, IndexError};

use crate::app::{api, index};
use crate::settings::{ApiArgs, CommonArgs};
use crate::tasks::{exit_code, runtime, TaskSet};

/// Arguments of `vigil serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    api: ApiArgs,
}

/// Serves until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (mut settings, data_dir) = args.common.load()?;
    args.api.apply(&mut settings.api);
    let token = api::api_token(&settings, &data_dir)?;
    runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let mut tasks = TaskSet::new();
        // Listen at once: until the index exists (`vigil index` creates it on its first
        // start), `/readyz` and the API answer 503 rather than refusing connections.
        let listener = api::bind(settings.api.listen).await?;
        let metrics = Arc::new(Metrics::new(Vec::new()));
        let (router, slot) = vigil_dashboards::waiting_router(
            token.token.clone(),
            Arc::clone(&metrics),
            api::options(&settings, tasks.health()),
        );
        let dir = data_dir.index();
        println!(
            "vigil: API on http://{} ({}); serving index {}",
            listener.local_addr()?,
            token.where_from,
            dir.display()
        );
        api::spawn_server(&settings, listener, router, &mut tasks, &shutdown);
        let limits = index::search_limits(&settings);
        let query_timeout = Duration::from_millis(settings.api.query_timeout_ms);
        let token = token.token;
        let opener_shutdown = shutdown.clone();
        tasks.spawn("index opener", async move {
            let mut waited = false;
            loop {
                match EventSearcher::open_read_only(&dir, limits.clone()) {
                    Ok(searcher) => {
                        slot.open(AppState {
                            searcher,
                            token: token.clone(),
                            metrics: Arc::clone(&metrics),
                            query_timeout,
                            alerts: None,
                        });
                        // Its job is done; it stays "running" (a stage that stops is dead)
                        // until shutdown.
                        opener_shutdown.cancelled().await;
                        return Ok(());
                    }
                    Err(IndexError::NotFound(_)) => {
                        if !waited {
                            eprintln!("vigil: waiting for an index in {}", dir.display());
                            waited = true;
                        }
                        tokio::select! {
                            _ = opener_shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("opening index {}", dir.display()))
                    }
                }
            }
        });
        Ok(exit_code(tasks.supervise(&shutdown).await))
    })
}
