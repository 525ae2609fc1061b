//! The `vigil` binary: parses arguments and hands them to the command that wires the stages.

mod cmd;
mod config;
mod kafka;
mod metrics;
mod secrets;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Audit-log ingestion and anomaly alerting for HashiCorp Vault and OpenBao.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute Vault audit hashes (HMAC-SHA256 under a device's salt) of values.
    Hash(cmd::hash::HashArgs),
    /// Check audit log files for plaintext where Vault should have written an HMAC.
    Verify(cmd::verify::VerifyArgs),
    /// Run collector, indexer and API in one process (embedded bus, local index).
    Run(cmd::run::RunArgs),
    /// Search the local index (works while `vigil run` is running).
    Search(cmd::search::SearchArgs),
    /// Backfill audit log files into the local index.
    Replay(cmd::replay::ReplayArgs),
    /// Measure the pipeline: events/s indexed and event->searchable latency.
    Bench(cmd::bench::BenchArgs),
    /// Collect audit devices into Kafka (the collector role; `run` needs no broker).
    Collect(cmd::collect::CollectArgs),
    /// Index the Kafka audit topic into the local index (the indexer role).
    Index(cmd::index::IndexArgs),
    /// Evaluate rules on the Kafka audit topic (the rules role); or test rules over audit
    /// logs (`rules test`), or lint a rule directory (`rules lint`).
    Rules(cmd::rules::RulesArgs),
    /// Serve the HTTP API over an index another process writes (`vigil index`).
    Serve(cmd::serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Hash(args) => cmd::hash::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Search(args) => cmd::search::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Collect(args) => cmd::collect::run(args),
        Command::Index(args) => cmd::index::run(args),
        Command::Rules(args) => cmd::rules::run(args),
        Command::Serve(args) => cmd::serve::run(args),
    };
    match result {
        Ok(code) => code,
        // A reader that stops early (`vigil verify … | head`) is not an error.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("vigil: {err:#}");
            cmd::EXIT_USAGE.into()
        }
    }
}

/// Logs go to standard error, filtered by `VIGIL_LOG` (`info` unless set; `warn`,
/// `vigil_bus=debug`, … as `RUST_LOG` takes them). librdkafka's own lines come through here.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
