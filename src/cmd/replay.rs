//! `vigil replay`: backfills audit log files into the local index, through the same
//! processing as live collection (HMAC checks, redaction, signed envelope), with a progress
//! bar. Event ids make a second replay of the same file harmless.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use vigil_collector::{
    AuditLineProcessor, FileIdentity, FileQuarantine, LineOrigin, LineOutcome, LineProcessor,
    QuarantineItem, QuarantineKind, QuarantineSink,
};
use vigil_event::{AuditEvent, HmacChecker, Origin, ParseLimits, SourceKind};
use vigil_indexer::IndexedEvent;

use crate::app::{self, index, keyring};
use crate::settings::CommonArgs;

/// Arguments of `vigil replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Audit log files to backfill (plain or syslog-framed lines).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Device name stamped on the events (default: each file's stem).
    #[arg(long)]
    device: Option<String>,
}

const COMMIT_EVERY: u64 = 100_000;

/// Indexes every line of every file; prints events/s at the end.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (config, data_dir) = args.common.load()?;
    let keyring = keyring(&config, &data_dir)?;
    let redactor = app::redactor(&data_dir)?;
    let index = index::open_index(&config, &data_dir)?;
    let quarantine_path = data_dir.quarantine();
    let quarantine = FileQuarantine::open(&quarantine_path)?;
    let started = Instant::now();
    let (mut indexed, mut rejected) = (0u64, 0u64);
    for path in &args.files {
        let device = args.device.clone().unwrap_or_else(|| {
            path.file_stem()
                .map_or_else(|| "file".to_owned(), |s| s.to_string_lossy().into_owned())
        });
        let origin = Origin::new(config.node_name.clone(), device, SourceKind::File);
        let key = origin.key();
        let processor = AuditLineProcessor::new(
            origin,
            HmacChecker::default(),
            redactor.clone(),
            keyring.clone(),
        )
        .with_limits(ParseLimits {
            max_line_bytes: config.collector.max_line_bytes,
        });
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata()?.len();
        let bar = ProgressBar::new(len).with_message(path.display().to_string());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        let mut offset = 0u64;
        let line_origin = |offset| LineOrigin {
            source: &key,
            path,
            file: FileIdentity {
                device: 0,
                inode: 0,
                fingerprint: 0,
            },
            offset,
        };
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            match processor.process(body, &line_origin(offset)) {
                LineOutcome::Publish(record) => {
                    let envelope = keyring.open(&record.payload)?;
                    let event = AuditEvent::parse(&envelope.raw)?;
                    index.add(&IndexedEvent::new(event, envelope.origin))?;
                    indexed += 1;
                    if indexed % COMMIT_EVERY == 0 {
                        index.commit()?;
                    }
                }
                LineOutcome::Reject { reason } => {
                    rejected += 1;
                    quarantine.quarantine(&QuarantineItem {
                        kind: QuarantineKind::Rejected,
                        reason: &reason,
                        source: &key,
                        path,
                        offset,
                        length: body.len() as u64,
                        bytes: body,
                    })?;
                    bar.suspend(|| {
                        eprintln!("{}: byte {offset}: quarantined: {reason}", path.display())
                    });
                }
            }
            offset += n as u64;
            bar.set_position(offset);
        }
        bar.finish();
    }
    index.commit()?;
    quarantine.sync()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "vigil replay: {indexed} events indexed, {rejected} lines quarantined{}, in {secs:.1} s ({:.0} events/s)",
        if rejected > 0 { format!(" (in {})", quarantine_path.display()) } else { String::new() },
        indexed as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
