//! `vigil serve`: the HTTP API over an index that another process (`vigil index`) writes.
//! The index is opened read-only and follows the writer's commits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_dashboards::{AppState, Metrics};
use vigil_indexer::{EventSearcher, IndexError, SearchLimits};

use crate::cmd::run::{api_token_for, exit_code, resolve_config, runtime, until_signal_or_exit};

/// Arguments of `vigil serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); see vigil.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data dir whose index to serve (`<DIR>/index`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Bearer token of the API (default: VIGIL_API_TOKEN, else generated in the data dir).
    #[arg(long, value_name = "T")]
    api_token: Option<String>,
}

/// Serves until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = resolve_config(args.config.as_deref(), args.data_dir)?;
    if let Some(listen) = args.listen {
        config.api.listen = listen;
    }
    let token = api_token_for(&config, args.api_token)?;
    runtime()?.block_on(async move {
        let dir = config.data_dir.join("index");
        let limits = SearchLimits {
            max_hits: config.api.max_results,
            query_timeout: Duration::from_millis(config.api.query_timeout_ms),
            ..SearchLimits::default()
        };
        let shutdown = CancellationToken::new();
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
                        _ = crate::cmd::run::wait_for_signal() => return Ok(ExitCode::SUCCESS),
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("opening index {}", dir.display()))
                }
            }
        };
        let listener = tokio::net::TcpListener::bind(&config.api.listen)
            .await
            .with_context(|| format!("listening on {}", config.api.listen))?;
        let state = AppState {
            searcher,
            token: token.token,
            metrics: Arc::new(Metrics::new(Vec::new())),
            query_timeout: Duration::from_millis(config.api.query_timeout_ms),
            alerts: None,
        };
        println!(
            "vigil: API on http://{} ({}); serving index {}",
            listener.local_addr()?,
            token.where_from,
            dir.display()
        );
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                vigil_dashboards::serve(listener, state, shutdown)
                    .await
                    .context("API server")
            }
        });
        Ok(exit_code(
            until_signal_or_exit(vec![server], &shutdown).await,
        ))
    })
}
