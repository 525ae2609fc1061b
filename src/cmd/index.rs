//! `vigil index`: the indexer role. Consumes the audit topic as group `vigil-indexer`,
//! verifies each envelope, and writes the local index; refused messages go to the quarantine
//! topic. Offsets are committed to Kafka after each Tantivy commit and also kept in that
//! commit's payload, which is where a restarted indexer resumes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_bus::Transport;
use vigil_indexer::IndexConsumer;

use crate::cmd::run::{
    exit_code, keyring, open_index, resolve_config, retention_loop, runtime, spawn_indexer,
    until_signal_or_exit,
};
use crate::kafka::{spawn_metrics, KafkaBus, RoleArgs, INDEXER_GROUP};
use crate::metrics::IndexMetrics;

/// Arguments of `vigil index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Configuration file (TOML); see vigil.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the index lives (`<DIR>/index`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    role: RoleArgs,
}

/// Indexes until SIGINT or SIGTERM.
pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    let config = resolve_config(args.config.as_deref(), args.data_dir)?;
    runtime()?.block_on(async move {
        let keyring = keyring(&config)?;
        let index = Arc::new(open_index(&config)?);
        let bus = KafkaBus::connect(&config, &args.role).await?;
        let quarantine: Arc<dyn Transport> = Arc::new(bus.quarantine.clone());
        let consumer = IndexConsumer::new(
            Arc::clone(&index),
            keyring,
            Duration::from_millis(config.index.commit_interval_ms),
        )
        .with_positions_in_commits()
        .context("reading the index's bus positions")?
        .with_quarantine(quarantine);
        let resume = consumer.resume_positions();
        let stats = consumer.stats();
        let subscription = bus.audit.subscribe_at(INDEXER_GROUP, &resume).await?;
        let shutdown = CancellationToken::new();
        let indexer = spawn_indexer(consumer, subscription, &shutdown);
        let retention = tokio::spawn({
            let (index, shutdown) = (Arc::clone(&index), shutdown.clone());
            let days = config.index.retention_days;
            async move {
                retention_loop(index, days, shutdown).await;
                Ok(())
            }
        });
        println!(
            "vigil: indexing Kafka topic {} at {} into {} (resuming at {})",
            bus.audit.topic(),
            bus.brokers,
            index.dir().display(),
            if resume.is_empty() {
                "the group's committed offsets".to_owned()
            } else {
                resume
                    .iter()
                    .map(|(p, o)| format!("{p}:{o}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        );
        let mut tasks = vec![indexer, retention];
        let metrics: Vec<Arc<dyn vigil_dashboards::MetricsSource>> =
            vec![Arc::new(IndexMetrics(stats))];
        tasks.extend(spawn_metrics(args.role.metrics.as_deref(), metrics, &shutdown).await?);
        let ok = until_signal_or_exit(tasks, &shutdown).await;
        Ok(exit_code(ok))
    })
}
