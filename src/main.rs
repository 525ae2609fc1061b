//! The `vigil` binary: parses arguments and hands them to the command that wires the stages.

mod cmd;
mod config;
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
    /// Test rules over audit logs, or lint a rule directory.
    #[command(subcommand)]
    Rules(cmd::rules::RulesCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Hash(args) => cmd::hash::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Search(args) => cmd::search::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Rules(command) => cmd::rules::run(command),
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
