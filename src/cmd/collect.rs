//! `vigil collect`: the collector role. Reads the audit devices like `vigil run` and publishes
//! the signed envelopes to Kafka; checkpoints move once the brokers have them (`acks=all`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_bus::Transport;

use crate::cmd::run::{
    exit_code, keyring, resolve_config, runtime, spawn_sources, until_signal_or_exit, SourceArgs,
};
use crate::kafka::{spawn_metrics, KafkaBus, RoleArgs};

/// Arguments of `vigil collect`.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Configuration file (TOML); see vigil.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where checkpoints, spools, keys and the quarantine live.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    role: RoleArgs,
    #[command(flatten)]
    sources: SourceArgs,
}

/// Collects until SIGINT or SIGTERM.
pub fn run(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let mut config = resolve_config(args.config.as_deref(), args.data_dir)?;
    args.sources.add_to(&mut config);
    if config.sources.file.is_empty()
        && config.sources.socket.is_empty()
        && config.sources.syslog.is_empty()
    {
        anyhow::bail!("no sources: add --file PATH, --socket ADDR or --syslog ADDR");
    }
    runtime()?.block_on(async move {
        let keyring = keyring(&config)?;
        let bus = KafkaBus::connect(&config, &args.role).await?;
        let shutdown = CancellationToken::new();
        let transport: Arc<dyn Transport> = Arc::new(bus.audit.clone());
        let mut sources = spawn_sources(&config, transport, &keyring, &shutdown).await?;
        let source_metrics = std::mem::take(&mut sources.metrics);
        let metrics: Vec<Arc<dyn vigil_dashboards::MetricsSource>> = vec![Arc::new(source_metrics)];
        sources
            .tasks
            .extend(spawn_metrics(args.role.metrics.as_deref(), metrics, &shutdown).await?);
        let inputs = sources.describe(&config);
        println!(
            "vigil: collecting into Kafka topic {} at {}; {}",
            bus.audit.topic(),
            bus.brokers,
            inputs.join(", ")
        );
        Ok(exit_code(
            until_signal_or_exit(sources.tasks, &shutdown).await,
        ))
    })
}
