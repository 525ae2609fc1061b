//! `vigil index`: the indexer role. Consumes the audit topic as group `vigil-indexer`,
//! verifies each envelope, and writes the local index; refused messages go to the quarantine
//! topic. Offsets are committed to Kafka after each Tantivy commit and also kept in that
//! commit's payload, which is where a restarted indexer resumes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_bus::Transport;

use crate::app::kafka::KafkaBus;
use crate::app::metrics::IndexMetrics;
use crate::app::{self, api, index, keyring, INDEXER_GROUP};
use crate::settings::{CommonArgs, RoleArgs};
use crate::tasks::{exit_code, runtime, TaskSet};

/// Arguments of `vigil index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    role: RoleArgs,
}

/// Indexes until SIGINT or SIGTERM, or until a stage fails.
pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    let (settings, data_dir) = args.common.load()?;
    runtime()?.block_on(async move {
        let keyring = keyring(&settings, &data_dir)?;
        let index = index::open_index(&settings, &data_dir)?;
        let bus = KafkaBus::connect(&settings, &args.role).await?;
        let quarantine: Arc<dyn Transport> = Arc::new(bus.quarantine.clone());
        let consumer = index::consumer(&settings, &index, &keyring)
            .with_positions_in_commits()
            .context("reading the index's bus positions")?
            .with_quarantine(quarantine, app::redactor(&data_dir)?);
        let resume = consumer.resume_positions();
        let stats = consumer.stats();
        let subscription = bus.audit.subscribe_at(INDEXER_GROUP, &resume).await?;
        let shutdown = CancellationToken::new();
        let mut tasks = TaskSet::new();
        index::spawn(
            &settings,
            &index,
            consumer,
            subscription,
            || 0,
            &mut tasks,
            &shutdown,
        );
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
        let metrics: Vec<Arc<dyn vigil_dashboards::MetricsSource>> =
            vec![Arc::new(IndexMetrics(stats)), bus.metrics()];
        api::spawn_metrics(&settings, args.role.metrics, metrics, &mut tasks, &shutdown).await?;
        Ok(exit_code(tasks.supervise(&shutdown).await))
    })
}
