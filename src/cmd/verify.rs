//! `vigil verify`: reads audit log files (plain or syslog-framed) and reports every HMAC
//! finding, with a summary on standard error.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use vigil_event::{parse_line, DeviceOptions, HmacChecker, ParseLimits, DEFAULT_MAX_LINE_BYTES};

/// Output format of findings.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// `file:line: severity kind field (request id)`.
    Text,
    /// One JSON object per finding and line.
    Json,
}

/// Arguments of `vigil verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Audit log files written by a file, socket or syslog device.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The device's `hmac_accessor` option; inferred per entry when not given.
    #[arg(long, value_name = "BOOL")]
    hmac_accessor: Option<bool>,
    /// The file device's `prefix` option, removed from each line.
    #[arg(long)]
    prefix: Option<String>,
    /// Longest line accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
}

#[derive(Serialize)]
struct FindingLine<'a> {
    file: &'a str,
    line: u64,
    request_id: Option<&'a str>,
    #[serde(rename = "type")]
    kind_of_entry: &'a str,
    field: &'a str,
    kind: &'a str,
    severity: &'a str,
}

#[derive(Default)]
struct Summary {
    lines: u64,
    events: u64,
    unparseable: u64,
    findings: BTreeMap<&'static str, u64>,
}

/// Runs the checks over every file; exit 0 when it ran, whatever it found.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let checker = HmacChecker::new(DeviceOptions {
        hmac_accessor: args.hmac_accessor,
    });
    let limits = ParseLimits {
        max_line_bytes: args.max_line_bytes,
    };
    let mut summary = Summary::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for path in &args.files {
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("opening {name}"))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            let Some(over) = read_line_capped(&mut reader, &mut buf, limits.max_line_bytes)
                .with_context(|| format!("reading {name}"))?
            else {
                break;
            };
            line_no += 1;
            summary.lines += 1;
            let parsed = if over {
                Err(format!("line longer than {} bytes", limits.max_line_bytes))
            } else {
                parse_line(&buf, args.prefix.as_deref(), limits)
                    .map(|(_, event)| event)
                    .map_err(|e| e.to_string())
            };
            let event = match parsed {
                Ok(event) => event,
                Err(reason) => {
                    summary.unparseable += 1;
                    eprintln!("{name}:{line_no}: unparseable: {reason}");
                    continue;
                }
            };
            summary.events += 1;
            for f in checker.check(&event) {
                *summary.findings.entry(f.kind.as_str()).or_default() += 1;
                let record = FindingLine {
                    file: &name,
                    line: line_no,
                    request_id: event.entry().request_id(),
                    kind_of_entry: event.entry().kind.as_str(),
                    field: &f.field,
                    kind: f.kind.as_str(),
                    severity: f.severity.as_str(),
                };
                match args.format {
                    Format::Json => {
                        serde_json::to_writer(&mut out, &record)?;
                        writeln!(out)?;
                    }
                    Format::Text => writeln!(
                        out,
                        "{}:{}: {} {} {} (request {})",
                        record.file,
                        record.line,
                        record.severity,
                        record.kind,
                        record.field,
                        record.request_id.unwrap_or("-")
                    )?,
                }
            }
        }
    }
    out.flush()?;
    let total: u64 = summary.findings.values().sum();
    let by_kind: Vec<String> = summary
        .findings
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    eprintln!(
        "vigil verify: {} lines, {} events, {} unparseable, {} findings{}{}",
        summary.lines,
        summary.events,
        summary.unparseable,
        total,
        if by_kind.is_empty() { "" } else { ": " },
        by_kind.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads one line into `buf` without holding more than `max` bytes of it. Returns `None` at
/// end of input, `Some(true)` when the line was longer than `max` (the rest is skipped).
fn read_line_capped(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut over = false;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(over));
        }
        any = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if buf.len() + part.len() > max {
            over = true;
        } else {
            buf.extend_from_slice(part);
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(over));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reader_skips_long_lines_and_keeps_the_next() {
        let data = b"short\nthis line is too long\nlast";
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_capped(&mut r, &mut buf, 10).unwrap(), Some(false));
        assert_eq!(buf, b"short");
        assert_eq!(read_line_capped(&mut r, &mut buf, 10).unwrap(), Some(true));
        assert_eq!(read_line_capped(&mut r, &mut buf, 10).unwrap(), Some(false));
        assert_eq!(buf, b"last");
        assert_eq!(read_line_capped(&mut r, &mut buf, 10).unwrap(), None);
    }
}
