//! `vigil run`: collector, embedded bus, indexer, rules engine and HTTP API in one process.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_dashboards::{AppState, Metrics};

use crate::app::api;
use crate::app::pipeline::EmbeddedPipeline;
use crate::settings::{ApiArgs, CommonArgs, SourceArgs};
use crate::tasks::{exit_code, runtime, TaskSet};

/// Arguments of `vigil run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    sources: SourceArgs,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs everything until SIGINT or SIGTERM, or until a stage fails.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (mut settings, data_dir) = args.common.load()?;
    args.sources.add_to(&mut settings.sources);
    args.api.apply(&mut settings.api);
    runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let mut tasks = TaskSet::new();
        let mut pipeline =
            EmbeddedPipeline::start(&settings, &data_dir, &mut tasks, &shutdown).await?;
        let token = api::api_token(&settings, &data_dir)?;
        let listener = api::bind(settings.api.listen).await?;
        let state = AppState {
            searcher: pipeline.index.searcher().clone(),
            token: token.token,
            metrics: Arc::new(Metrics::new(pipeline.metrics())),
            query_timeout: Duration::from_millis(settings.api.query_timeout_ms),
            alerts: pipeline.rules.as_ref().map(|r| Arc::clone(&r.store)),
        };
        println!(
            "vigil: API on http://{} ({}); index in {}; {}",
            listener.local_addr()?,
            token.where_from,
            data_dir.index().display(),
            if pipeline.sources.inputs.is_empty() {
                "no sources (add --file PATH, --socket ADDR or --syslog ADDR)".to_owned()
            } else {
                pipeline.sources.inputs.join(", ")
            }
        );
        let router = vigil_dashboards::router_with(state, api::options(&settings, tasks.health()));
        api::spawn_server(&settings, listener, router, &mut tasks, &shutdown);
        Ok(exit_code(tasks.supervise(&shutdown).await))
    })
}
