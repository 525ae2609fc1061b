//! `vigil run`: collector, embedded bus, indexer and HTTP API in one process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_bus::{BusLimits, EmbeddedBus, Transport};
use vigil_collector::CollectorStats;
use vigil_collector::{
    AuditLineProcessor, Checkpoint, CollectorConfig, FileCollector, FileQuarantine, TailerConfig,
};
use vigil_dashboards::{ApiToken, AppState, Metrics};
use vigil_event::{
    AuditHasher, DeviceOptions, HmacChecker, Keyring, Origin, ParseLimits, Redactor, SourceKind,
};
use vigil_indexer::{EventIndex, IndexConfig, IndexConsumer, SearchLimits};

use crate::config::{Config, FileSource};
use crate::{metrics, secrets};

/// Arguments of `vigil run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); see vigil.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the index, checkpoints, keys and quarantine live.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A file audit device to tail; repeatable, added to the configured ones.
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Address of the HTTP API.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Bearer token of the API (default: VIGIL_API_TOKEN, else generated in the data dir).
    #[arg(long, value_name = "T")]
    api_token: Option<String>,
}

/// The consumer group of the indexer on the bus.
pub const INDEXER_GROUP: &str = "indexer";

/// Loads the configuration and applies the command line on top.
pub fn resolve_config(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
    files: Vec<PathBuf>,
) -> anyhow::Result<Config> {
    let mut config = Config::load(config, std::env::vars())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    config
        .sources
        .file
        .extend(files.into_iter().map(FileSource::new));
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    Ok(config)
}

/// The keyring that signs envelopes: the key in `<data_dir>/signing.key`.
pub fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    let key = secrets::load_or_create(&config.data_dir.join("signing.key"))?;
    Keyring::new([("local".to_owned(), key.value.into_bytes())]).context("signing key")
}

/// A collector task per configured file.
pub type CollectorTasks = Vec<tokio::task::JoinHandle<anyhow::Result<()>>>;
/// The counters of each collector, by source key.
pub type CollectorStatsBySource = Vec<(String, Arc<CollectorStats>)>;

/// Starts one collector per configured file; returns their tasks and their counters by source.
pub fn spawn_collectors(
    config: &Config,
    transport: Arc<dyn Transport>,
    keyring: &Keyring,
    shutdown: &CancellationToken,
) -> anyhow::Result<(CollectorTasks, CollectorStatsBySource)> {
    let checkpoint = Arc::new(Checkpoint::open(&config.data_dir).context("opening checkpoints")?);
    let quarantine_path = config.data_dir.join("quarantine.jsonl");
    let quarantine = Arc::new(
        FileQuarantine::open(&quarantine_path)
            .with_context(|| format!("opening {}", quarantine_path.display()))?,
    );
    let redaction = secrets::load_or_create(&config.data_dir.join("redaction.key"))?;
    let redactor = Redactor::new(AuditHasher::new(redaction.value.as_bytes()));
    let mut tasks = Vec::new();
    let mut stats = Vec::new();
    for source in &config.sources.file {
        let origin = Origin::new(
            config.node_name.clone(),
            source.device_name(),
            SourceKind::File,
        );
        let key = origin.key();
        let processor = AuditLineProcessor::new(
            origin,
            HmacChecker::new(DeviceOptions {
                hmac_accessor: source.hmac_accessor,
            }),
            redactor.clone(),
            keyring.clone(),
        )
        .with_prefix(source.prefix.clone())
        .with_limits(ParseLimits {
            max_line_bytes: config.collector.max_line_bytes,
        });
        let mut tailer = TailerConfig::new(&source.path);
        tailer.start_at = source.start_at;
        tailer.poll_interval = Duration::from_millis(config.collector.poll_interval_ms);
        tailer.max_line_bytes = config.collector.max_line_bytes;
        let mut collector_config = CollectorConfig::new(key.clone(), tailer);
        collector_config.max_batch_lines = config.collector.batch_lines;
        collector_config.max_in_flight = config.collector.max_in_flight_batches;
        let collector = FileCollector::new(
            collector_config,
            Arc::clone(&checkpoint),
            Arc::clone(&transport),
            Arc::new(processor),
            quarantine.clone(),
        );
        stats.push((key, collector.stats()));
        let shutdown = shutdown.clone();
        let path = source.path.display().to_string();
        tasks.push(tokio::spawn(async move {
            collector
                .run(shutdown)
                .await
                .with_context(|| format!("collector for {path}"))
        }));
    }
    Ok((tasks, stats))
}

/// Runs everything until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = resolve_config(args.config.as_deref(), args.data_dir, args.files)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(config, args.listen, args.api_token))
}

async fn run_async(
    mut config: Config,
    listen: Option<String>,
    api_token: Option<String>,
) -> anyhow::Result<ExitCode> {
    if let Some(listen) = listen {
        config.api.listen = listen;
    }
    let shutdown = CancellationToken::new();
    let keyring = keyring(&config)?;
    let index = Arc::new(open_index(&config)?);
    let bus = EmbeddedBus::new([INDEXER_GROUP], BusLimits::default())?;
    let transport: Arc<dyn Transport> = Arc::new(bus.clone());

    let consumer = IndexConsumer::new(
        Arc::clone(&index),
        keyring.clone(),
        Duration::from_millis(config.index.commit_interval_ms),
    );
    let index_stats = consumer.stats();
    let subscription = transport.subscribe(INDEXER_GROUP).await?;
    let indexer = tokio::spawn(consumer.run(subscription, shutdown.clone()));

    let (collectors, collector_stats) = spawn_collectors(&config, transport, &keyring, &shutdown)?;
    let retention = tokio::spawn(retention_loop(
        Arc::clone(&index),
        config.index.retention_days,
        shutdown.clone(),
    ));

    let token = api_token_for(&config, api_token)?;
    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .with_context(|| format!("listening on {}", config.api.listen))?;
    let state = AppState {
        searcher: index.searcher().clone(),
        token: token.token,
        metrics: Arc::new(Metrics::new(vec![
            Arc::new(metrics::CollectorMetrics(collector_stats)),
            Arc::new(metrics::IndexMetrics(index_stats)),
        ])),
        query_timeout: Duration::from_millis(config.api.query_timeout_ms),
    };
    let tailing: Vec<String> = config
        .sources
        .file
        .iter()
        .map(|f| f.path.display().to_string())
        .collect();
    println!(
        "vigil: API on http://{} ({}); index in {}; tailing {}",
        listener.local_addr()?,
        token.where_from,
        config.data_dir.join("index").display(),
        if tailing.is_empty() {
            "nothing (add --file PATH)".to_owned()
        } else {
            tailing.join(", ")
        }
    );
    let server = tokio::spawn(vigil_dashboards::serve(listener, state, shutdown.clone()));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let mut failed = false;
    for task in collectors {
        if let Err(e) = task.await.map_err(anyhow::Error::from).and_then(|r| r) {
            tracing::error!("{e:#}");
            failed = true;
        }
    }
    if let Err(e) = indexer
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r.map_err(anyhow::Error::from))
    {
        tracing::error!("indexer: {e:#}");
        failed = true;
    }
    let _ = retention.await;
    let _ = server.await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The index under `<data_dir>/index`, opened for writing.
pub fn open_index(config: &Config) -> anyhow::Result<EventIndex> {
    let dir = config.data_dir.join("index");
    let defaults = IndexConfig::default();
    let index_config = IndexConfig {
        writer_memory_bytes: config.index.writer_memory_mb * 1024 * 1024,
        limits: SearchLimits {
            max_hits: config.api.max_results,
            query_timeout: Duration::from_millis(config.api.query_timeout_ms),
            ..defaults.limits
        },
        ..defaults
    };
    EventIndex::open(&dir, index_config).with_context(|| format!("opening index {}", dir.display()))
}

struct ResolvedToken {
    token: ApiToken,
    where_from: String,
}

/// The API token: `--api-token`, else `api.token` / `VIGIL_API_TOKEN`, else the one stored in
/// the data dir, generated and printed on first start.
fn api_token_for(config: &Config, flag: Option<String>) -> anyhow::Result<ResolvedToken> {
    let given = flag
        .or_else(|| Some(config.api.token.clone()))
        .filter(|t| !t.trim().is_empty());
    if let Some(t) = given {
        let token = ApiToken::new(t).context("empty API token")?;
        return Ok(ResolvedToken {
            token,
            where_from: "token as configured".to_owned(),
        });
    }
    let path = config.data_dir.join("api-token");
    let stored = secrets::load_or_create(&path)?;
    if stored.created {
        // Printed once, on the terminal of whoever started Vigil; never logged.
        println!(
            "vigil: generated API token {} (stored in {})",
            stored.value,
            path.display()
        );
    }
    let token = ApiToken::new(stored.value).context("empty API token")?;
    Ok(ResolvedToken {
        token,
        where_from: format!("token in {}", path.display()),
    })
}

async fn retention_loop(index: Arc<EventIndex>, days: u64, shutdown: CancellationToken) {
    if days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = chrono::Utc::now() - chrono::Duration::days(days as i64);
        let index = Arc::clone(&index);
        match tokio::task::spawn_blocking(move || index.delete_older_than(cutoff)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(
                deleted = n,
                "retention: deleted events older than {days} days"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("retention: {e}"),
            Err(e) => tracing::error!("retention task: {e}"),
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
}
