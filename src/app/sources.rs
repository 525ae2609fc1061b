//! The collector stage: a [`FileCollector`] per file audit device (globs expanded), and a
//! receiver pipeline (receiver, spool, collector) per socket or syslog device, all sharing
//! the data dir's checkpoints and quarantine.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vigil_bus::Transport;
use vigil_collector::{
    expand_file_pattern, AuditLineProcessor, Checkpoint, CollectorConfig, FileCollector,
    FileQuarantine, QuarantineConfig, QuarantineSink, ReceiverConfig, ReceiverKind,
    ReceiverPipeline, Spool, SpoolConfig, TailerConfig,
};
use vigil_event::{DeviceOptions, HmacChecker, Keyring, Origin, ParseLimits, SourceKind};

use crate::app::metrics::SourceMetrics;
use crate::data_dir::DataDir;
use crate::settings::{FileSource, ReceiverSource, Settings};
use crate::tasks::TaskSet;

/// The running sources, as the start-up line and metrics see them.
#[derive(Default)]
pub struct Sources {
    /// What `/metrics` reports of them.
    pub metrics: SourceMetrics,
    /// `tailing PATH` and `receiving KIND ADDR`, for the start-up line.
    pub inputs: Vec<String>,
}

/// What one collector reads: a tailed file, or a receiver's spool.
struct CollectorPlan {
    origin: Origin,
    tailer: TailerConfig,
    prefix: Option<String>,
    hmac_accessor: Option<bool>,
}

/// One socket or syslog device to receive.
struct ReceiverPlan<'a> {
    kind: ReceiverKind,
    source: &'a ReceiverSource,
    device: String,
}

/// The default device name of the `i`-th receiver of a kind: `socket`, `socket2`, …
fn default_device(kind: ReceiverKind, i: usize) -> String {
    match i {
        0 => kind.as_str().to_owned(),
        _ => format!("{}{}", kind.as_str(), i + 1),
    }
}

/// Starts every configured source, publishing into `transport` envelopes of at most
/// `max_envelope_bytes` (what the bus accepts; larger ones are quarantined).
pub async fn spawn(
    settings: &Settings,
    data_dir: &DataDir,
    transport: Arc<dyn Transport>,
    max_envelope_bytes: usize,
    keyring: &Keyring,
    tasks: &mut TaskSet,
    shutdown: &CancellationToken,
) -> anyhow::Result<Sources> {
    let checkpoint = Arc::new(Checkpoint::open(data_dir.root()).context("opening checkpoints")?);
    let redactor = crate::app::redactor(data_dir)?;
    let quarantine_path = data_dir.quarantine();
    let quarantine = FileQuarantine::open_with(QuarantineConfig {
        max_bytes: settings.quarantine.max_bytes,
        max_entries_per_second: settings.quarantine.max_entries_per_second,
        burst_entries: settings.quarantine.burst_entries,
        ..QuarantineConfig::new(&quarantine_path).with_redactor(redactor.clone())
    })
    .with_context(|| format!("opening {}", quarantine_path.display()))?;
    let mut sources = Sources::default();
    sources.metrics.quarantine = Some(quarantine.stats());
    let quarantine: Arc<dyn QuarantineSink> = Arc::new(quarantine);
    let mut plans = file_plans(settings, &mut sources)?;

    let kinds = [
        (ReceiverKind::Socket, &settings.sources.socket),
        (ReceiverKind::Syslog, &settings.sources.syslog),
    ];
    let receivers = kinds.into_iter().flat_map(|(kind, list)| {
        list.iter()
            .enumerate()
            .map(move |(i, source)| ReceiverPlan {
                kind,
                source,
                device: source
                    .device
                    .clone()
                    .unwrap_or_else(|| default_device(kind, i)),
            })
    });
    for plan in receivers {
        let kind = plan.kind.as_str();
        let origin = Origin::new(
            settings.node_name.clone(),
            plan.device.clone(),
            plan.kind.source_kind(),
        );
        let spool_config = SpoolConfig {
            max_bytes: settings.spool.max_bytes,
            fsync: settings.spool.fsync,
            ..SpoolConfig::new(data_dir.spool(kind, &plan.device)?)
        };
        let spool = Spool::open(spool_config, Some(&checkpoint))
            .with_context(|| format!("opening the spool of {}", plan.source.address))?;
        let mut receiver_config = ReceiverConfig::new(origin.key(), plan.source.address.clone());
        receiver_config.max_line_bytes = settings.collector.max_line_bytes;
        receiver_config.max_connections = settings.collector.max_connections;
        receiver_config.max_connections_per_peer = settings.collector.max_connections_per_peer;
        receiver_config.idle_timeout = Some(settings.collector.idle_timeout_secs)
            .filter(|&s| s > 0)
            .map(Duration::from_secs);
        receiver_config.allow = plan.source.allow.clone();
        receiver_config.unix_mode = plan.source.unix_mode;
        receiver_config.unix_owner = plan.source.unix_owner;
        let pipeline =
            ReceiverPipeline::bind(plan.kind, receiver_config, spool, Arc::clone(&quarantine))
                .await
                .with_context(|| format!("{kind} receiver on {}", plan.source.address))?;
        sources
            .inputs
            .push(format!("receiving {kind} {}", plan.source.address));
        sources.metrics.receivers.push((
            origin.key(),
            pipeline.receiver_stats(),
            pipeline.spool_stats(),
        ));
        plans.push(CollectorPlan {
            origin,
            tailer: pipeline.tailer_config(),
            prefix: None,
            hmac_accessor: plan.source.hmac_accessor,
        });
        let (checkpoint, token, name) = (
            Arc::clone(&checkpoint),
            shutdown.clone(),
            format!("{kind} receiver on {}", plan.source.address),
        );
        tasks.spawn(name.clone(), async move {
            pipeline.run(checkpoint, token).await.context(name)
        });
    }

    for plan in plans {
        let key = plan.origin.key();
        let processor = AuditLineProcessor::new(
            plan.origin,
            HmacChecker::new(DeviceOptions {
                hmac_accessor: plan.hmac_accessor,
            }),
            redactor.clone(),
            keyring.clone(),
        )
        .with_prefix(plan.prefix)
        .with_limits(ParseLimits {
            max_line_bytes: settings.collector.max_line_bytes,
        });
        let mut tailer = plan.tailer;
        tailer.poll_interval = Duration::from_millis(settings.collector.poll_interval_ms);
        tailer.max_line_bytes = settings.collector.max_line_bytes;
        let name = format!("collector for {}", tailer.path.display());
        let mut collector_config = CollectorConfig::new(key.clone(), tailer);
        collector_config.max_batch_lines = settings.collector.batch_lines;
        collector_config.max_in_flight = settings.collector.max_in_flight_batches;
        collector_config.max_envelope_bytes = max_envelope_bytes;
        let collector = FileCollector::new(
            collector_config,
            Arc::clone(&checkpoint),
            Arc::clone(&transport),
            Arc::new(processor),
            Arc::clone(&quarantine),
        );
        sources.metrics.collectors.push((key, collector.stats()));
        let token = shutdown.clone();
        tasks.spawn(name.clone(), async move {
            collector.run(token).await.context(name)
        });
    }
    Ok(sources)
}

/// A collector plan per file source, globs expanded.
fn file_plans(settings: &Settings, sources: &mut Sources) -> anyhow::Result<Vec<CollectorPlan>> {
    let mut plans = Vec::new();
    for source in &settings.sources.file {
        for path in expand_file_pattern(&source.path)
            .with_context(|| format!("file source {}", source.path.display()))?
        {
            let source = FileSource {
                path,
                ..source.clone()
            };
            let mut tailer = TailerConfig::new(&source.path);
            tailer.start_at = source.start_at;
            sources
                .inputs
                .push(format!("tailing {}", source.path.display()));
            plans.push(CollectorPlan {
                origin: Origin::new(
                    settings.node_name.clone(),
                    source.device_name(),
                    SourceKind::File,
                ),
                tailer,
                prefix: source.prefix.clone(),
                hmac_accessor: source.hmac_accessor,
            });
        }
    }
    Ok(plans)
}
