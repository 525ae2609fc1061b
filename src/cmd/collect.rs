//! `vigil collect`: the collector role. Reads the audit devices like `vigil run` and publishes
//! the signed envelopes to Kafka; checkpoints move once the brokers have them (`acks=all`).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_bus::Transport;

use crate::app::kafka::KafkaBus;
use crate::app::{api, keyring, sources};
use crate::settings::{CommonArgs, RoleArgs, SourceArgs};
use crate::tasks::{exit_code, runtime, TaskSet};

/// Arguments of `vigil collect`.
#[derive(Debug, Args)]
pub struct CollectArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    role: RoleArgs,
    #[command(flatten)]
    sources: SourceArgs,
}

/// Collects until SIGINT or SIGTERM, or until a stage fails.
pub fn run(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let (mut settings, data_dir) = args.common.load()?;
    args.sources.add_to(&mut settings.sources);
    if settings.sources.is_empty() {
        anyhow::bail!("no sources: add --file PATH, --socket ADDR or --syslog ADDR");
    }
    runtime()?.block_on(async move {
        let keyring = keyring(&settings, &data_dir)?;
        let bus = KafkaBus::connect(&settings, &args.role).await?;
        let shutdown = CancellationToken::new();
        let mut tasks = TaskSet::new();
        let transport: Arc<dyn Transport> = Arc::new(bus.audit.clone());
        let sources = sources::spawn(
            &settings,
            &data_dir,
            transport,
            KafkaBus::max_envelope_bytes(&settings),
            &keyring,
            &mut tasks,
            &shutdown,
        )
        .await?;
        let metrics: Vec<Arc<dyn vigil_dashboards::MetricsSource>> =
            vec![Arc::new(sources.metrics), bus.metrics()];
        api::spawn_metrics(&settings, args.role.metrics, metrics, &mut tasks, &shutdown).await?;
        println!(
            "vigil: collecting into Kafka topic {} at {}; {}",
            bus.audit.topic(),
            bus.brokers,
            sources.inputs.join(", ")
        );
        Ok(exit_code(tasks.supervise(&shutdown).await))
    })
}
