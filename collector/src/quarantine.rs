//! Quarantine: where lines that will not be published go, so that none is ever lost.
//!
//! Rejected lines (the processor refused them), oversize lines (the tailer or a receiver would
//! not read them), and truncated or malformed input of the receivers are handed to a
//! [`QuarantineSink`]. The collector syncs the sink before it moves the checkpoint past them,
//! so a quarantined line is durable before it is considered handled; receivers sync it before
//! they read on.
//! [`FileQuarantine`] is the append-only JSON-lines implementation.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Serialize;

/// Why a line is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineKind {
    /// The line processor rejected the line.
    Rejected,
    /// The line was longer than the configured maximum; only its head is kept.
    Oversize,
    /// A receiver's connection closed in the middle of a line: the partial line is kept and
    /// never glued to data from another connection.
    Truncated,
    /// A receiver got input it cannot frame (a syslog message without a valid header, a bad
    /// octet count, a datagram holding a newline).
    Malformed,
}

/// One quarantined line.
#[derive(Debug, Clone, Copy)]
pub struct QuarantineItem<'a> {
    /// Why the line is quarantined.
    pub kind: QuarantineKind,
    /// Human-readable reason.
    pub reason: &'a str,
    /// The configured source name.
    pub source: &'a str,
    /// The tailed path.
    pub path: &'a Path,
    /// Offset of the line's first byte.
    pub offset: u64,
    /// Length of the whole line, newline excluded (more than `bytes.len()` for oversize lines).
    pub length: u64,
    /// The line's bytes, or its head for an oversize line.
    pub bytes: &'a [u8],
}

/// What can go wrong writing to quarantine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuarantineError {
    /// Writing or syncing the quarantine file failed.
    #[error("cannot write quarantine file {path}: {source}")]
    Io {
        /// The quarantine file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Encoding an entry failed.
    #[error("cannot encode quarantine entry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Keeps lines that are not published.
pub trait QuarantineSink: Send + Sync {
    /// Stores one item. It may be buffered until [`QuarantineSink::sync`].
    fn quarantine(&self, item: &QuarantineItem<'_>) -> Result<(), QuarantineError>;

    /// Makes every item stored so far durable.
    fn sync(&self) -> Result<(), QuarantineError>;
}

/// Appends one JSON object per line to a file.
///
/// Each entry holds `quarantined_at_ms`, `kind`, `reason`, `source`, `path`, `offset`,
/// `length`, `truncated` (only the head of the line is kept) and `bytes_base64`: base64 keeps
/// bytes that are not UTF-8 exactly as they were.
#[derive(Debug)]
pub struct FileQuarantine {
    path: PathBuf,
    file: Mutex<File>,
}

#[derive(Serialize)]
struct Entry<'a> {
    quarantined_at_ms: u128,
    kind: QuarantineKind,
    reason: &'a str,
    source: &'a str,
    path: String,
    offset: u64,
    length: u64,
    truncated: bool,
    bytes_base64: String,
}

impl FileQuarantine {
    /// Opens `path` for appending, creating it and its directory if needed.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, QuarantineError> {
        let path = path.into();
        let io_error = |source| QuarantineError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The quarantine file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, source: io::Error) -> QuarantineError {
        QuarantineError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl QuarantineSink for FileQuarantine {
    fn quarantine(&self, item: &QuarantineItem<'_>) -> Result<(), QuarantineError> {
        let entry = Entry {
            quarantined_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|since| since.as_millis())
                .unwrap_or(0),
            kind: item.kind,
            reason: item.reason,
            source: item.source,
            path: item.path.display().to_string(),
            offset: item.offset,
            length: item.length,
            truncated: (item.bytes.len() as u64) < item.length,
            bytes_base64: base64::engine::general_purpose::STANDARD.encode(item.bytes),
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        // One write per entry on an append-only file: entries never interleave.
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line).map_err(|error| self.io_error(error))
    }

    fn sync(&self) -> Result<(), QuarantineError> {
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.sync_data().map_err(|error| self.io_error(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_json_line_per_item() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q").join("quarantine.jsonl");
        let sink = FileQuarantine::open(&path).unwrap();
        let item = QuarantineItem {
            kind: QuarantineKind::Rejected,
            reason: "not json",
            source: "node-1/file",
            path: Path::new("/var/log/audit.log"),
            offset: 12,
            length: 4,
            bytes: b"\xffab\n",
        };
        sink.quarantine(&item).unwrap();
        sink.quarantine(&QuarantineItem {
            kind: QuarantineKind::Oversize,
            length: 4096,
            ..item
        })
        .unwrap();
        sink.sync().unwrap();
        drop(sink);

        // Reopening appends rather than overwriting.
        FileQuarantine::open(&path)
            .unwrap()
            .quarantine(&item)
            .unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let entries: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["kind"], "rejected");
        assert_eq!(entries[0]["reason"], "not json");
        assert_eq!(entries[0]["source"], "node-1/file");
        assert_eq!(entries[0]["offset"], 12);
        assert_eq!(entries[0]["truncated"], false);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(entries[0]["bytes_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes, b"\xffab\n");
        assert_eq!(entries[1]["kind"], "oversize");
        assert_eq!(entries[1]["truncated"], true);
    }
}
