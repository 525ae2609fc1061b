//! `vigil run`: collector, embedded bus, indexer and HTTP API in one process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use vigil_bus::{BusLimits, EmbeddedBus, Transport};
use vigil_collector::{
    AuditLineProcessor, Checkpoint, CollectorConfig, FileCollector, FileQuarantine, FsyncPolicy,
    QuarantineSink, ReceiverConfig, SocketReceiver, SourceAddress, Spool, SpoolConfig,
    SyslogReceiver, TailerConfig,
};
use vigil_dashboards::{ApiToken, AppState, Metrics};
use vigil_event::{
    AuditHasher, DeviceOptions, HmacChecker, Keyring, Origin, ParseLimits, Redactor, SourceKind,
};
use vigil_indexer::{EventIndex, IndexConfig, IndexConsumer, SearchLimits};
use vigil_rules::{
    AlertConfig, AlertStore, RulesConsumer, RulesEngine, RulesStats, WatchLists, WebhookConfig,
    WebhookNotifier,
};

use crate::config::{Config, FileSource, ReceiverSource};
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
    #[command(flatten)]
    sources: SourceArgs,
    /// Address of the HTTP API.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Bearer token of the API (default: VIGIL_API_TOKEN, else generated in the data dir).
    #[arg(long, value_name = "T")]
    api_token: Option<String>,
}

/// The audit devices to read, as given on the command line (`vigil run`, `vigil collect`).
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A file audit device to tail; repeatable, added to the configured ones. A glob
    /// (`'/var/log/vault/*.log'`) tails every matching file present at start-up.
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// A socket audit device to receive: tcp://HOST:PORT or unix:///PATH; repeatable.
    #[arg(long = "socket", value_name = "ADDR")]
    sockets: Vec<String>,
    /// A syslog audit device to receive: unixgram:///PATH, udp://HOST:PORT or tcp://HOST:PORT;
    /// repeatable.
    #[arg(long = "syslog", value_name = "ADDR")]
    syslogs: Vec<String>,
}

impl SourceArgs {
    /// Adds these sources to the configured ones.
    pub fn add_to(self, config: &mut Config) {
        let sources = &mut config.sources;
        sources
            .file
            .extend(self.files.into_iter().map(FileSource::new));
        sources
            .socket
            .extend(self.sockets.into_iter().map(ReceiverSource::new));
        sources
            .syslog
            .extend(self.syslogs.into_iter().map(ReceiverSource::new));
    }
}

/// The consumer group of the indexer on the embedded bus.
pub const INDEXER_GROUP: &str = "indexer";
/// The consumer group of the rules engine on the embedded bus.
pub const RULES_GROUP: &str = "rules";

/// Loads the configuration and applies the command line on top.
pub fn resolve_config(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Config> {
    let mut config = Config::load(config, std::env::vars())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    Ok(config)
}

/// The keyring that signs and verifies envelopes: the key in `signing_key_file`, else in
/// `<data_dir>/signing.key` (generated on first start).
pub fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    let path = if config.signing_key_file.is_empty() {
        config.data_dir.join("signing.key")
    } else {
        let path = PathBuf::from(&config.signing_key_file);
        if !path.exists() {
            anyhow::bail!(
                "signing_key_file {} does not exist (every role must share one key)",
                path.display()
            );
        }
        path
    };
    let key = secrets::load_or_create(&path)?;
    Keyring::new([("local".to_owned(), key.value.into_bytes())]).context("signing key")
}

/// A task of a source: a collector, a receiver, or a spool's maintenance.
pub type SourceTasks = Vec<tokio::task::JoinHandle<anyhow::Result<()>>>;

/// The running sources: their tasks and their counters.
pub struct Sources {
    /// Every task to await at shutdown.
    pub tasks: SourceTasks,
    /// What `/metrics` reports of them.
    pub metrics: metrics::SourceMetrics,
    /// Where each receiver listens, for the start-up line.
    pub listening: Vec<String>,
}

impl Sources {
    /// What the sources read, for the start-up line: `tailing PATH`, `receiving KIND ADDR`.
    pub fn describe(&self, config: &Config) -> Vec<String> {
        let files = config.sources.file.iter();
        files
            .map(|f| format!("tailing {}", f.path.display()))
            .chain(self.listening.iter().map(|l| format!("receiving {l}")))
            .collect()
    }
}

/// What one source feeds its collector: a tailed file, or a receiver's spool.
struct SourcePlan {
    origin: Origin,
    tailer: TailerConfig,
    prefix: Option<String>,
    hmac_accessor: Option<bool>,
}

/// Expands file sources whose path is a glob (`*`, `?`, `[`) into one source per matching
/// file, at start-up. Rotated files (`audit.log.1` beside `audit.log`) are left out: the
/// tailer of the live file reads them itself when it needs to. A pattern that matches nothing
/// is an error, so that a typo does not silently watch nothing.
fn expand_globs(sources: &[FileSource]) -> anyhow::Result<Vec<FileSource>> {
    let mut out = Vec::new();
    for source in sources {
        let pattern = source.path.to_string_lossy();
        if !pattern.contains(['*', '?', '[']) {
            out.push(source.clone());
            continue;
        }
        let mut matched: Vec<PathBuf> = glob::glob(&pattern)
            .with_context(|| format!("file source pattern {pattern:?}"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        matched.sort();
        let live: Vec<PathBuf> = matched
            .iter()
            .filter(|p| {
                !matched
                    .iter()
                    .any(|other| other != *p && is_rotation_of(p, other))
            })
            .cloned()
            .collect();
        if live.is_empty() {
            anyhow::bail!("file source pattern {pattern:?} matches no file");
        }
        for path in live {
            out.push(FileSource {
                path,
                ..source.clone()
            });
        }
    }
    Ok(out)
}

/// Whether `path` is a rotated copy of `live` (same directory, name continues `live`'s).
fn is_rotation_of(path: &std::path::Path, live: &std::path::Path) -> bool {
    let (Some(name), Some(live_name)) = (path.file_name(), live.file_name()) else {
        return false;
    };
    let (name, live_name) = (name.to_string_lossy(), live_name.to_string_lossy());
    path.parent() == live.parent()
        && name.len() > live_name.len()
        && name.starts_with(live_name.as_ref())
}

/// Starts every configured source: a collector per file, and a receiver, its spool and a
/// collector per socket or syslog address.
pub async fn spawn_sources(
    config: &Config,
    transport: Arc<dyn Transport>,
    keyring: &Keyring,
    shutdown: &CancellationToken,
) -> anyhow::Result<Sources> {
    let checkpoint = Arc::new(Checkpoint::open(&config.data_dir).context("opening checkpoints")?);
    let quarantine_path = config.data_dir.join("quarantine.jsonl");
    let quarantine: Arc<dyn QuarantineSink> = Arc::new(
        FileQuarantine::open(&quarantine_path)
            .with_context(|| format!("opening {}", quarantine_path.display()))?,
    );
    let redaction = secrets::load_or_create(&config.data_dir.join("redaction.key"))?;
    let redactor = Redactor::new(AuditHasher::new(redaction.value.as_bytes()));
    let poll = Duration::from_millis(config.collector.poll_interval_ms);
    let mut sources = Sources {
        tasks: Vec::new(),
        metrics: metrics::SourceMetrics::default(),
        listening: Vec::new(),
    };
    let mut plans = Vec::new();
    for source in expand_globs(&config.sources.file)? {
        let mut tailer = TailerConfig::new(&source.path);
        tailer.start_at = source.start_at;
        plans.push(SourcePlan {
            origin: Origin::new(
                config.node_name.clone(),
                source.device_name(),
                SourceKind::File,
            ),
            tailer,
            prefix: source.prefix.clone(),
            hmac_accessor: source.hmac_accessor,
        });
    }
    let receivers = config
        .sources
        .socket
        .iter()
        .enumerate()
        .map(|(i, s)| (SourceKind::Socket, i, s))
        .chain(
            config
                .sources
                .syslog
                .iter()
                .enumerate()
                .map(|(i, s)| (SourceKind::Syslog, i, s)),
        );
    let fsync: FsyncPolicy = config.spool.fsync.parse()?;
    for (kind, i, source) in receivers {
        let device = source.device.clone().unwrap_or_else(|| {
            if i == 0 {
                kind.as_str().to_owned()
            } else {
                format!("{}{}", kind.as_str(), i + 1)
            }
        });
        let origin = Origin::new(config.node_name.clone(), device.clone(), kind);
        let spool_dir = config.data_dir.join("spool");
        std::fs::create_dir_all(&spool_dir)
            .with_context(|| format!("creating {}", spool_dir.display()))?;
        let spool_config = SpoolConfig {
            max_bytes: config.spool.max_bytes,
            fsync,
            ..SpoolConfig::new(spool_dir.join(format!("{}-{device}.spool", kind.as_str())))
        };
        let spool = Spool::open(spool_config, Some(&checkpoint))
            .with_context(|| format!("opening the spool of {}", source.address))?;
        let mut receiver_config = ReceiverConfig::new(
            origin.key(),
            match kind {
                SourceKind::Syslog => SourceAddress::parse_syslog(&source.address),
                _ => SourceAddress::parse_socket(&source.address),
            }
            .with_context(|| format!("{} address {:?}", kind.as_str(), source.address))?,
        );
        receiver_config.max_line_bytes = config.collector.max_line_bytes;
        receiver_config.max_connections = config.collector.max_connections;
        let address = source.address.clone();
        let token = shutdown.clone();
        let receiver_stats = match kind {
            SourceKind::Syslog => {
                let r =
                    SyslogReceiver::bind(receiver_config, spool.clone(), Arc::clone(&quarantine))
                        .await
                        .with_context(|| format!("syslog receiver on {address}"))?;
                let stats = r.stats();
                sources.tasks.push(tokio::spawn(async move {
                    r.run(token)
                        .await
                        .with_context(|| format!("syslog receiver on {address}"))
                }));
                stats
            }
            _ => {
                let r =
                    SocketReceiver::bind(receiver_config, spool.clone(), Arc::clone(&quarantine))
                        .await
                        .with_context(|| format!("socket receiver on {address}"))?;
                let stats = r.stats();
                sources.tasks.push(tokio::spawn(async move {
                    r.run(token)
                        .await
                        .with_context(|| format!("socket receiver on {address}"))
                }));
                stats
            }
        };
        sources
            .listening
            .push(format!("{} {}", kind.as_str(), source.address));
        sources
            .metrics
            .receivers
            .push((origin.key(), receiver_stats, spool.stats()));
        let tailer = spool.tailer_config();
        let maintenance = spool.clone();
        let (checkpoint, token) = (Arc::clone(&checkpoint), shutdown.clone());
        sources.tasks.push(tokio::spawn(async move {
            maintenance
                .run_maintenance(Some(checkpoint), token)
                .await
                .context("spool maintenance")
        }));
        plans.push(SourcePlan {
            origin,
            tailer,
            prefix: None,
            hmac_accessor: source.hmac_accessor,
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
            max_line_bytes: config.collector.max_line_bytes,
        });
        let mut tailer = plan.tailer;
        tailer.poll_interval = poll;
        tailer.max_line_bytes = config.collector.max_line_bytes;
        let path = tailer.path.display().to_string();
        let mut collector_config = CollectorConfig::new(key.clone(), tailer);
        collector_config.max_batch_lines = config.collector.batch_lines;
        collector_config.max_in_flight = config.collector.max_in_flight_batches;
        let collector = FileCollector::new(
            collector_config,
            Arc::clone(&checkpoint),
            Arc::clone(&transport),
            Arc::new(processor),
            Arc::clone(&quarantine),
        );
        sources.metrics.collectors.push((key, collector.stats()));
        let token = shutdown.clone();
        sources.tasks.push(tokio::spawn(async move {
            collector
                .run(token)
                .await
                .with_context(|| format!("collector for {path}"))
        }));
    }
    Ok(sources)
}

/// Runs everything until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = resolve_config(args.config.as_deref(), args.data_dir)?;
    args.sources.add_to(&mut config);
    runtime()?.block_on(run_async(config, args.listen, args.api_token))
}

/// The runtime every long-running command runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Awaits every task, logging each failure; returns whether all succeeded.
pub async fn join_tasks(tasks: SourceTasks) -> bool {
    let mut ok = true;
    for task in tasks {
        if let Err(e) = task.await.map_err(anyhow::Error::from).and_then(|r| r) {
            tracing::error!("{e:#}");
            ok = false;
        }
    }
    ok
}

/// Runs until SIGINT or SIGTERM, or until one of `tasks` stops by itself (a role's tasks
/// only stop on an error, and a half-running role is worse than a restarted one); then
/// cancels `shutdown` and waits for the rest. Returns whether every task succeeded.
pub async fn until_signal_or_exit(tasks: SourceTasks, shutdown: &CancellationToken) -> bool {
    let mut set = tokio::task::JoinSet::new();
    for task in tasks {
        set.spawn(async move { task.await.map_err(anyhow::Error::from).and_then(|r| r) });
    }
    let mut ok = true;
    let mut report = |joined: Result<anyhow::Result<()>, tokio::task::JoinError>| {
        if let Err(e) = joined.map_err(anyhow::Error::from).and_then(|r| r) {
            tracing::error!("{e:#}");
            ok = false;
        }
    };
    tokio::select! {
        _ = wait_for_signal() => tracing::info!("shutting down"),
        Some(joined) = set.join_next() => {
            report(joined);
            tracing::error!("a task stopped by itself; shutting down");
        }
    }
    shutdown.cancel();
    while let Some(joined) = set.join_next().await {
        report(joined);
    }
    ok
}

/// The exit code of a command whose tasks succeeded or not.
pub fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
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
    let groups: &[&str] = if config.rules.enabled {
        &[INDEXER_GROUP, RULES_GROUP]
    } else {
        &[INDEXER_GROUP]
    };
    let bus = EmbeddedBus::new(groups.iter().copied(), BusLimits::default())?;
    let transport: Arc<dyn Transport> = Arc::new(bus.clone());
    let alerts = if config.rules.enabled {
        let subscription = transport.subscribe(RULES_GROUP).await?;
        Some(spawn_rules(
            &config,
            subscription,
            None,
            &keyring,
            &shutdown,
        )?)
    } else {
        None
    };

    let consumer = IndexConsumer::new(
        Arc::clone(&index),
        keyring.clone(),
        Duration::from_millis(config.index.commit_interval_ms),
    );
    let index_stats = consumer.stats();
    let subscription = transport.subscribe(INDEXER_GROUP).await?;
    let indexer = spawn_indexer(consumer, subscription, &shutdown);

    let mut sources = spawn_sources(&config, transport, &keyring, &shutdown).await?;
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
        metrics: Arc::new(Metrics::new({
            let mut m: Vec<Arc<dyn vigil_dashboards::MetricsSource>> = vec![
                Arc::new(std::mem::take(&mut sources.metrics)),
                Arc::new(metrics::IndexMetrics(index_stats)),
            ];
            if let Some(rules) = &alerts {
                m.push(Arc::new(metrics::RulesMetrics(Arc::clone(&rules.stats))));
            }
            m
        })),
        query_timeout: Duration::from_millis(config.api.query_timeout_ms),
        alerts: alerts.as_ref().map(|a| Arc::clone(&a.store)),
    };
    let inputs = sources.describe(&config);
    println!(
        "vigil: API on http://{} ({}); index in {}; {}",
        listener.local_addr()?,
        token.where_from,
        config.data_dir.join("index").display(),
        if inputs.is_empty() {
            "no sources (add --file PATH, --socket ADDR or --syslog ADDR)".to_owned()
        } else {
            inputs.join(", ")
        }
    );
    let server = tokio::spawn(vigil_dashboards::serve(listener, state, shutdown.clone()));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let mut ok = join_tasks(sources.tasks).await;
    ok &= join_tasks(vec![indexer]).await;
    if let Some(rules) = alerts {
        ok &= join_tasks(rules.tasks).await;
    }
    let _ = retention.await;
    let _ = server.await;
    Ok(exit_code(ok))
}

/// The running rules engine: its store (for the API) and its tasks.
pub struct RulesTasks {
    /// Alerts, outbox and engine state.
    pub store: Arc<AlertStore>,
    /// The rules consumer's counters.
    pub stats: Arc<RulesStats>,
    /// The consumer and the notifier.
    pub tasks: SourceTasks,
}

/// Runs `consumer` on `subscription` until `shutdown`, as a task of the process.
pub fn spawn_indexer(
    consumer: IndexConsumer,
    subscription: Box<dyn vigil_bus::Subscription>,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        consumer
            .run(subscription, shutdown)
            .await
            .context("indexer")
    })
}

/// Starts the rules engine on `subscription`, and the webhook notifier. With `alert_topic`,
/// every alert revision is also published there.
pub fn spawn_rules(
    config: &Config,
    subscription: Box<dyn vigil_bus::Subscription>,
    alert_topic: Option<Arc<dyn Transport>>,
    keyring: &Keyring,
    shutdown: &CancellationToken,
) -> anyhow::Result<RulesTasks> {
    let ruleset = crate::cmd::rules::load_ruleset(
        Some(config.rules.dir.as_str())
            .filter(|d| !d.is_empty())
            .map(std::path::Path::new),
    )?;
    let mut lists = WatchLists::new();
    for list in &config.rules.watchlist {
        lists
            .add_file(&list.name, list.device.as_deref(), &list.file)
            .with_context(|| format!("watch list {}", list.name))?;
    }
    let store_path = config.data_dir.join("alerts.redb");
    let store = Arc::new(
        AlertStore::open(&store_path)
            .with_context(|| format!("opening {}", store_path.display()))?,
    );
    let alert_config = AlertConfig {
        suppress_secs: config.rules.suppress_secs,
        ..AlertConfig::default()
    };
    let engine = match store.engine_state()? {
        Some(state) => RulesEngine::with_state(ruleset, lists, alert_config, state),
        None => RulesEngine::new(ruleset, lists, alert_config),
    };
    let mut consumer = RulesConsumer::new(engine, Arc::clone(&store), keyring.clone());
    if let Some(topic) = alert_topic {
        consumer = consumer.with_alert_topic(topic);
    }
    let stats = consumer.stats();
    let token = shutdown.clone();
    let mut tasks: SourceTasks = vec![tokio::spawn(async move {
        consumer
            .run(subscription, token)
            .await
            .context("rules engine")
    })];
    if !config.alerts.webhook_url.is_empty() {
        let mut webhook = WebhookConfig::new(config.alerts.webhook_url.clone());
        webhook.secret = Some(config.alerts.webhook_secret.clone()).filter(|s| !s.is_empty());
        let notifier =
            WebhookNotifier::new(webhook, Arc::clone(&store)).context("webhook client")?;
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            notifier.run(token).await.context("webhook notifier")
        }));
    }
    Ok(RulesTasks {
        store,
        stats,
        tasks,
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

/// The API token and where it came from, for the start-up line.
pub struct ResolvedToken {
    /// The token.
    pub token: ApiToken,
    /// Where it came from.
    pub where_from: String,
}

/// The API token: `--api-token`, else `api.token` / `VIGIL_API_TOKEN`, else the one stored in
/// the data dir, generated and printed on first start.
pub fn api_token_for(config: &Config, flag: Option<String>) -> anyhow::Result<ResolvedToken> {
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

/// Deletes events past the retention period, hourly, until `shutdown`.
pub async fn retention_loop(index: Arc<EventIndex>, days: u64, shutdown: CancellationToken) {
    if days == 0 {
        shutdown.cancelled().await;
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

/// Returns on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_expand_to_live_files_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.log", "a.log.1", "a.log-2026.gz", "b.log", "notes.txt"] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        let pattern = FileSource::new(dir.path().join("*.log*"));
        let got: Vec<String> = expand_globs(&[pattern])
            .unwrap()
            .iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, ["a.log", "b.log"]);
        let plain = FileSource::new(dir.path().join("missing.log"));
        assert_eq!(
            expand_globs(std::slice::from_ref(&plain)).unwrap(),
            vec![plain]
        );
        let err = expand_globs(&[FileSource::new(dir.path().join("*.json"))]).unwrap_err();
        assert!(err.to_string().contains("matches no file"), "{err}");
    }
}
