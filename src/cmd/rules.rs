//! `vigil rules`: the rules role (Kafka → alerts), and its subcommands `vigil rules test`
//! (run the rules over audit log files in event-time order and print what fires) and
//! `vigil rules lint` (check a rule directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use vigil_bus::Transport;
use vigil_event::{parse_line, AuditEvent, HmacChecker, Origin, ParseLimits, SourceKind};
use vigil_rules::{Alert, AlertConfig, RulesEngine, Ruleset, WatchListSpec, WatchLists};

use crate::app::kafka::KafkaBus;
use crate::app::metrics::RulesMetrics;
use crate::app::{api, keyring, rules, RULES_GROUP};
use crate::settings::{CommonArgs, RoleArgs};
use crate::tasks::{exit_code, runtime, TaskSet};

/// `vigil rules [--kafka BROKERS]` or `vigil rules test|lint …`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: Option<RulesCommand>,
    #[command(flatten)]
    role: RulesRoleArgs,
}

/// Arguments of the rules role.
#[derive(Debug, Args)]
pub struct RulesRoleArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    role: RoleArgs,
}

/// `vigil rules …` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Run the rules over audit log files and print each alert.
    Test(TestArgs),
    /// Load a rule directory (with the built-in pack) and report every problem.
    Lint(LintArgs),
}

/// Output format of alerts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One line per alert.
    Text,
    /// One JSON object per alert.
    Json,
}

/// Arguments of `vigil rules test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Audit log files (plain or syslog-framed lines).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A directory of Sigma rules laid over the built-in pack (same file name replaces).
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// A watch list: NAME=FILE (any device) or NAME@DEVICE=FILE, one HMAC a line (the output
    /// of `vigil hash`); repeatable.
    #[arg(long = "watchlist", value_name = "NAME=FILE")]
    watchlists: Vec<WatchListSpec>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Seconds after an alert fires during which more hits merge into it.
    #[arg(long, default_value_t = 3600)]
    suppress_secs: i64,
}

/// Arguments of `vigil rules lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// A directory of rules laid over the built-in pack; without it the pack alone is checked.
    dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct AlertLine<'a> {
    rule: &'a str,
    title: &'a str,
    severity: String,
    group_key: &'a str,
    count: u64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    request_ids: &'a [String],
    tags: &'a [String],
}

/// Runs the rules role, or a `vigil rules` subcommand.
pub fn run(args: RulesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(RulesCommand::Test(args)) => test(args),
        Some(RulesCommand::Lint(args)) => lint(args),
        None => role(args.role),
    }
}

/// Consumes the audit topic as group `vigil-rules`; alerts go to `alerts.redb`, the webhook
/// and the alerts topic. State and alerts are stored before offsets are committed.
fn role(args: RulesRoleArgs) -> anyhow::Result<ExitCode> {
    let (settings, data_dir) = args.common.load()?;
    runtime()?.block_on(async move {
        let keyring = keyring(&settings, &data_dir)?;
        let bus = KafkaBus::connect(&settings, &args.role).await?;
        let subscription = bus.audit.subscribe(RULES_GROUP).await?;
        let alert_topic: Arc<dyn Transport> = Arc::new(bus.alerts.clone());
        let shutdown = CancellationToken::new();
        let mut tasks = TaskSet::new();
        let stage = rules::spawn(
            &settings,
            &data_dir,
            subscription,
            Some(alert_topic),
            &keyring,
            &mut tasks,
            &shutdown,
        )?;
        println!(
            "vigil: evaluating rules on Kafka topic {} at {}; alerts to {} and {}",
            bus.audit.topic(),
            bus.brokers,
            data_dir.alerts_store().display(),
            bus.alerts.topic()
        );
        let metrics: Vec<Arc<dyn vigil_dashboards::MetricsSource>> = vec![
            Arc::new(RulesMetrics(stage.stats, stage.notify)),
            bus.metrics(),
        ];
        api::spawn_metrics(&settings, args.role.metrics, metrics, &mut tasks, &shutdown).await?;
        Ok(exit_code(tasks.supervise(&shutdown).await))
    })
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let ruleset = Ruleset::load(args.rules.as_deref())?;
    let mut lists = WatchLists::new();
    for spec in &args.watchlists {
        lists.add_spec(spec)?;
    }
    let checker = HmacChecker::default();
    // Event-time order across files: read everything, then sort (stable, so lines with the
    // same time keep file order).
    let mut events: Vec<(AuditEvent, Origin)> = Vec::new();
    let mut unparseable = 0u64;
    for path in &args.files {
        let device = path
            .file_stem()
            .map_or_else(|| "file".to_owned(), |s| s.to_string_lossy().into_owned());
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = parse_line(line, None, ParseLimits::default());
            match parsed {
                Ok((syslog, event)) => {
                    let mut origin = Origin::new("local", device.clone(), SourceKind::File);
                    origin.syslog = syslog;
                    origin.findings = checker.check(&event);
                    events.push((event, origin));
                }
                Err(reason) => {
                    unparseable += 1;
                    eprintln!("{}:{}: unparseable: {reason}", path.display(), i + 1);
                }
            }
        }
    }
    events.sort_by_key(|(event, _)| event.time());
    let mut engine = RulesEngine::new(
        ruleset,
        lists,
        AlertConfig {
            suppress_secs: args.suppress_secs,
            ..AlertConfig::default()
        },
    );
    // Alerts are revised as more events merge in: keep the latest revision of each.
    let mut alerts: BTreeMap<String, Alert> = BTreeMap::new();
    let mut upsert = |batch: Vec<Alert>| {
        for alert in batch {
            alerts.insert(alert.id.clone(), alert);
        }
    };
    for (event, origin) in &events {
        upsert(engine.evaluate(event, origin));
    }
    upsert(engine.flush());
    let mut ordered: Vec<&Alert> = alerts.values().collect();
    ordered.sort_by(|a, b| {
        a.first_seen
            .cmp(&b.first_seen)
            .then_with(|| a.rule_id.cmp(&b.rule_id))
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for alert in &ordered {
        let line = AlertLine {
            rule: &alert.rule_id,
            title: &alert.title,
            severity: format!("{:?}", alert.severity).to_lowercase(),
            group_key: &alert.group_key,
            count: alert.count,
            first_seen: alert.first_seen,
            last_seen: alert.last_seen,
            request_ids: &alert.request_ids,
            tags: &alert.tags,
        };
        match args.format {
            Format::Json => {
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)?;
            }
            Format::Text => writeln!(
                out,
                "{}  {:<8}  {}  [{}] {} events{}",
                line.first_seen.to_rfc3339(),
                line.severity,
                line.title,
                line.rule,
                line.count,
                if line.group_key.is_empty() {
                    String::new()
                } else {
                    format!(", group {}", line.group_key)
                }
            )?,
        }
    }
    out.flush()?;
    eprintln!(
        "vigil rules test: {} events, {} unparseable lines, {} alerts",
        events.len(),
        unparseable,
        ordered.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn lint(args: LintArgs) -> anyhow::Result<ExitCode> {
    match Ruleset::load(args.dir.as_deref()) {
        Ok(ruleset) => {
            println!(
                "ok: {} rules, {} correlations, {} detectors",
                ruleset.rules().len(),
                ruleset.correlations().len(),
                ruleset.detectors().len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("vigil rules lint: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}
