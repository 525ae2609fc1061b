//! The `vigil` binary: parses arguments and hands them to the command that wires the stages.
//!
//! - [`settings`]: the configuration file, environment and shared flags, read once into types;
//! - [`data_dir`]: where everything lives on disk;
//! - [`app`]: builds the stages from settings and starts them;
//! - [`tasks`]: the runtime, logging, signals and supervision of the stages;
//! - [`cmd`]: one module per subcommand, using only the four above.

mod app;
mod cmd;
mod data_dir;
mod settings;
mod tasks;

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
    tasks::init_logging();
    // Everything Vigil writes (index, redb stores, spools, quarantine, keys) holds audit data
    // or secrets: readable by the owner only, whatever the caller's umask.
    // SAFETY: umask only sets the process's file creation mask.
    unsafe { libc::umask(0o077) };
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
