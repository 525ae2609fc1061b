//! `vigil search`: queries the local index directly, also while `vigil run` writes to it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use vigil_indexer::{EventSearcher, SearchLimits, SearchRequest};

use crate::settings::CommonArgs;

/// Output format of hits.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One aligned row per hit.
    Table,
    /// One JSON object per hit, with the raw event.
    Json,
}

/// Arguments of `vigil search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Query in Tantivy's language with the event's dotted field names; `*` matches all.
    query: String,
    /// Only events at or after this RFC 3339 time.
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Only events before this RFC 3339 time.
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// Most hits to print (newest first).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    common: CommonArgs,
}

/// Prints the hits; the total goes to standard error.
pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let (_, data_dir) = args.common.load()?;
    let dir = data_dir.index();
    let searcher = EventSearcher::open_read_only(&dir, SearchLimits::default())
        .with_context(|| format!("opening index {}", dir.display()))?;
    let response = searcher.search(&SearchRequest {
        query: args.query,
        from: args.from,
        to: args.to,
        limit: args.limit.clamp(1, searcher.limits().max_hits),
        cursor: None,
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        Format::Json => {
            for hit in &response.hits {
                serde_json::to_writer(&mut out, hit)?;
                writeln!(out)?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "{:<30}  {:<8}  {:<6}  {:<7}  {:<24}  {:<15}  PATH",
                "TIME", "TYPE", "RESULT", "OP", "WHO", "FROM"
            )?;
            for h in &response.hits {
                writeln!(
                    out,
                    "{:<30}  {:<8}  {:<6}  {:<7}  {:<24}  {:<15}  {}",
                    h.time,
                    h.kind,
                    h.outcome,
                    h.operation.as_deref().unwrap_or("-"),
                    h.display_name.as_deref().unwrap_or("-"),
                    h.remote_address.as_deref().unwrap_or("-"),
                    h.path.as_deref().unwrap_or("-")
                )?;
            }
        }
    }
    out.flush()?;
    eprintln!(
        "{} of {} matching events",
        response.hits.len(),
        response.total
    );
    Ok(ExitCode::SUCCESS)
}
