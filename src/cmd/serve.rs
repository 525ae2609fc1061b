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
use crate::tasks::{exit_code, runtime, wait_for_signal, TaskSet};

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
        let dir = data_dir.index();
        let limits = index::search_limits(&settings);
        // `vigil index` creates the index on its first start; until then there is nothing
        // to serve.
        let mut waited = false;
        let searcher = loop {
            match EventSearcher::open_read_only(&dir, limits.clone()) {
                Ok(searcher) => break searcher,
                Err(IndexError::NotFound(_)) => {
                    if !waited {
                        eprintln!("vigil: waiting for an index in {}", dir.display());
                        waited = true;
                    }
                    tokio::select! {
                        _ = wait_for_signal() => return Ok(ExitCode::SUCCESS),
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("opening index {}", dir.display()))
                }
            }
        };
        let listener = api::bind(settings.api.listen).await?;
        let state = AppState {
            searcher,
            token: token.token,
            metrics: Arc::new(Metrics::new(Vec::new())),
            query_timeout: Duration::from_millis(settings.api.query_timeout_ms),
            alerts: None,
        };
        println!(
            "vigil: API on http://{} ({}); serving index {}",
            listener.local_addr()?,
            token.where_from,
            dir.display()
        );
        let shutdown = CancellationToken::new();
        let mut tasks = TaskSet::new();
        api::spawn_api(listener, state, &mut tasks, &shutdown);
        Ok(exit_code(tasks.supervise(&shutdown).await))
    })
}
