//! Quarantine: where input that will not be published goes, with the reason, so that nothing
//! refused is lost silently — and so that refusing input can never take the collector down.
//!
//! Rejected lines (the processor refused them), oversize lines (the tailer or a receiver would
//! not read them), envelopes over the bus's size, records the bus refused for good, and
//! truncated or malformed input of the receivers are handed to a [`QuarantineSink`]. The collector syncs the sink before it moves
//! the checkpoint past them, so a quarantined line is durable before it is considered handled.
//!
//! [`FileQuarantine`] is the append-only JSON-lines implementation. Anyone who can reach a
//! receiver can make input be quarantined, so it is bounded in every way an attacker could
//! use against it:
//!
//! - **Secrets**: every entry is passed through the token scanner first
//!   ([`vigil_event::redact_tokens_in_bytes`], bytes and reason), so a plaintext token never
//!   reaches the disk, whatever the input was (not JSON, not UTF-8); the file is created 0600.
//! - **Runtime**: [`QuarantineSink::quarantine`] never does I/O. It hands the entry to a
//!   writer thread through a bounded queue; when the queue is full the entry is dropped and
//!   counted ([`QuarantineStats::dropped_queue_full`]). The writer redacts, encodes, appends,
//!   and syncs once whenever the queue runs empty (group commit). Only
//!   [`QuarantineSink::sync`] waits, and the collector calls it on a blocking thread.
//! - **Rate**: a token bucket ([`QuarantineConfig::max_entries_per_second`],
//!   [`QuarantineConfig::burst_entries`]) admits entries; beyond it they are dropped and
//!   counted ([`QuarantineStats::dropped_rate`]). A flood of garbage costs a counter increment
//!   per line.
//! - **Disk**: when an entry would take the file past [`QuarantineConfig::max_bytes`], the
//!   file is renamed to `<path>.1` (replacing an older one) and a new one is started, so
//!   quarantine never holds more than about twice `max_bytes`, and the most recent refusals
//!   are the ones kept ([`QuarantineStats::rotations`]).
//!
//! Dropped entries are lost on purpose: the alternative, making the stage wait, would let
//! garbage hold back the valid events behind it. The counters say how many.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Serialize;
use vigil_event::{AuditHasher, Redactor};

use crate::private_file;

/// Why a line is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineKind {
    /// The line processor rejected the line, its envelope is over the bus's size, or the bus
    /// refused its record for good.
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
    /// The line's bytes, its head for an oversize line, or the record's payload (the sealed
    /// envelope) for a record the bus refused after it was published.
    pub bytes: &'a [u8],
}

/// What can go wrong writing to quarantine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuarantineError {
    /// Creating, writing, rotating or syncing the quarantine file failed.
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
    /// The writer thread could not be started.
    #[error("cannot start the quarantine writer thread: {0}")]
    SpawnWriter(#[source] io::Error),
    /// The writer thread is gone (it panicked), so nothing more can be made durable.
    #[error("the quarantine writer of {0} stopped")]
    WriterStopped(PathBuf),
}

/// Keeps lines that are not published.
pub trait QuarantineSink: Send + Sync {
    /// Stores one item. It may be buffered until [`QuarantineSink::sync`], and an
    /// implementation may drop it under load (counting it); it must not block for long.
    fn quarantine(&self, item: &QuarantineItem<'_>) -> Result<(), QuarantineError>;

    /// Makes every item stored so far durable. May block: call it off the async runtime.
    fn sync(&self) -> Result<(), QuarantineError>;
}

/// How a [`FileQuarantine`] is bounded; see the module documentation.
#[derive(Debug, Clone)]
pub struct QuarantineConfig {
    /// The quarantine file; its rotated predecessor is `<path>.1`.
    pub path: PathBuf,
    /// Size at which the file is rotated to `<path>.1`. A single entry larger than this is
    /// still written (alone in its file).
    pub max_bytes: u64,
    /// Entries admitted per second on average; 0 admits every entry.
    pub max_entries_per_second: u32,
    /// Entries admitted at once after a quiet spell (the token bucket's depth).
    pub burst_entries: u32,
    /// Most entries waiting for the writer thread.
    pub queue_entries: usize,
    /// Most bytes of entries waiting for the writer thread.
    pub queue_bytes: usize,
    /// Replaces plaintext tokens by their HMAC before anything is written. Set it to the
    /// collector's redactor so the HMACs match those in redacted events; without one, a key
    /// made up for this process is used (tokens are still removed, but the HMACs cannot be
    /// compared with anything).
    pub redactor: Option<Redactor>,
}

/// [`QuarantineConfig::max_bytes`] by default: 256 MiB.
pub const DEFAULT_QUARANTINE_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// [`QuarantineConfig::max_entries_per_second`] by default.
pub const DEFAULT_QUARANTINE_ENTRIES_PER_SECOND: u32 = 1000;
/// [`QuarantineConfig::burst_entries`] by default.
pub const DEFAULT_QUARANTINE_BURST_ENTRIES: u32 = 10_000;

impl QuarantineConfig {
    /// The defaults for `path`: rotate at 256 MiB, 1000 entries/s with bursts of 10 000, a
    /// queue of 4096 entries or 64 MiB, no redactor (see [`QuarantineConfig::redactor`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: DEFAULT_QUARANTINE_MAX_BYTES,
            max_entries_per_second: DEFAULT_QUARANTINE_ENTRIES_PER_SECOND,
            burst_entries: DEFAULT_QUARANTINE_BURST_ENTRIES,
            queue_entries: 4096,
            queue_bytes: 64 * 1024 * 1024,
            redactor: None,
        }
    }

    /// Sets the redactor (see [`QuarantineConfig::redactor`]).
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = Some(redactor);
        self
    }
}

/// Live counters of a [`FileQuarantine`].
#[derive(Debug, Default)]
pub struct QuarantineStats {
    /// Entries written to the file.
    pub entries_written: AtomicU64,
    /// Bytes written to the file (encoded entries).
    pub bytes_written: AtomicU64,
    /// Entries in which at least one token was replaced by its HMAC.
    pub entries_redacted: AtomicU64,
    /// Entries dropped because they came faster than the rate limit.
    pub dropped_rate: AtomicU64,
    /// Entries dropped because the writer's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Times the file was rotated to `<path>.1`.
    pub rotations: AtomicU64,
    /// Entries lost because writing them failed (also reported by the next
    /// [`QuarantineSink::sync`]).
    pub write_errors: AtomicU64,
}

/// A copy of [`QuarantineStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuarantineStatsSnapshot {
    /// See [`QuarantineStats::entries_written`].
    pub entries_written: u64,
    /// See [`QuarantineStats::bytes_written`].
    pub bytes_written: u64,
    /// See [`QuarantineStats::entries_redacted`].
    pub entries_redacted: u64,
    /// See [`QuarantineStats::dropped_rate`].
    pub dropped_rate: u64,
    /// See [`QuarantineStats::dropped_queue_full`].
    pub dropped_queue_full: u64,
    /// See [`QuarantineStats::rotations`].
    pub rotations: u64,
    /// See [`QuarantineStats::write_errors`].
    pub write_errors: u64,
}

impl QuarantineStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> QuarantineStatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        QuarantineStatsSnapshot {
            entries_written: get(&self.entries_written),
            bytes_written: get(&self.bytes_written),
            entries_redacted: get(&self.entries_redacted),
            dropped_rate: get(&self.dropped_rate),
            dropped_queue_full: get(&self.dropped_queue_full),
            rotations: get(&self.rotations),
            write_errors: get(&self.write_errors),
        }
    }
}

fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

/// A token bucket: `rate` admissions per second on average, `burst` at once.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket; a `rate` of 0 admits everything.
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An entry on its way to the writer thread: the item, owned, not yet redacted.
struct Pending {
    quarantined_at_ms: u128,
    kind: QuarantineKind,
    reason: String,
    source: String,
    path: String,
    offset: u64,
    length: u64,
    bytes: Vec<u8>,
}

impl Pending {
    fn queued_bytes(&self) -> usize {
        self.bytes.len() + self.reason.len() + self.source.len() + self.path.len()
    }
}

enum Message {
    Entry(Pending),
    /// Write and sync everything before this message, then answer.
    Sync(mpsc::Sender<Result<(), QuarantineError>>),
}

/// Appends one JSON object per line to a file, from a writer thread; see the module
/// documentation for its bounds.
///
/// Each entry holds `quarantined_at_ms`, `kind`, `reason`, `source`, `path`, `offset`,
/// `length`, `truncated` (only the head of the line is kept), `redacted` (tokens were
/// replaced) and `bytes_base64`: base64 keeps bytes that are not UTF-8 exactly as they were.
///
/// Dropping it writes and syncs what is queued, then stops the writer thread.
#[derive(Debug)]
pub struct FileQuarantine {
    path: PathBuf,
    sender: Option<SyncSender<Message>>,
    writer: Option<JoinHandle<()>>,
    bucket: TokenBucket,
    queued_bytes: Arc<AtomicU64>,
    queue_bytes: u64,
    stats: Arc<QuarantineStats>,
}

#[derive(Serialize)]
struct Entry<'a> {
    quarantined_at_ms: u128,
    kind: QuarantineKind,
    reason: &'a str,
    source: &'a str,
    path: &'a str,
    offset: u64,
    length: u64,
    truncated: bool,
    redacted: bool,
    bytes_base64: String,
}

impl FileQuarantine {
    /// Opens `path` with the default bounds ([`QuarantineConfig::new`]); see
    /// [`FileQuarantine::open_with`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, QuarantineError> {
        Self::open_with(QuarantineConfig::new(path))
    }

    /// Opens the quarantine file for appending, creating it (mode 0600) and its directory if
    /// needed, and starts its writer thread.
    pub fn open_with(config: QuarantineConfig) -> Result<Self, QuarantineError> {
        let path = config.path.clone();
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
        let file = private_file::open_append(&path, false).map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        let stats = Arc::new(QuarantineStats::default());
        let queued_bytes = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            path: path.clone(),
            file: Some(file),
            len,
            max_bytes: config.max_bytes.max(1),
            redactor: config.redactor.unwrap_or_else(process_redactor),
            stats: Arc::clone(&stats),
            queued_bytes: Arc::clone(&queued_bytes),
            dirty: false,
            failure: None,
        };
        let (sender, receiver) = mpsc::sync_channel(config.queue_entries.max(1));
        let handle = std::thread::Builder::new()
            .name("vigil-quarantine".to_owned())
            .spawn(move || writer.run(&receiver))
            .map_err(QuarantineError::SpawnWriter)?;
        Ok(Self {
            path,
            sender: Some(sender),
            writer: Some(handle),
            bucket: TokenBucket::new(config.max_entries_per_second, config.burst_entries),
            queued_bytes,
            queue_bytes: config.queue_bytes.max(1) as u64,
            stats,
        })
    }

    /// The quarantine file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file is rotated to: `<path>.1`.
    pub fn rotated_path(&self) -> PathBuf {
        rotated_path(&self.path)
    }

    /// The quarantine's counters; they stay readable while it is used.
    pub fn stats(&self) -> Arc<QuarantineStats> {
        Arc::clone(&self.stats)
    }

    fn stopped(&self) -> QuarantineError {
        QuarantineError::WriterStopped(self.path.clone())
    }
}

/// A redactor whose key only this process knows, for a quarantine configured without one:
/// the HMACs it writes cannot be reversed, nor compared across runs. The key comes from the
/// standard library's per-process random hash seeds, which is all the randomness needed here.
fn process_redactor() -> Redactor {
    use std::hash::{BuildHasher, Hasher};
    let mut key = Vec::with_capacity(32);
    for round in 0u64..4 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(round);
        key.extend_from_slice(&hasher.finish().to_le_bytes());
    }
    Redactor::new(AuditHasher::new(&key))
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    PathBuf::from(rotated)
}

impl QuarantineSink for FileQuarantine {
    fn quarantine(&self, item: &QuarantineItem<'_>) -> Result<(), QuarantineError> {
        if !self.bucket.try_take() {
            add(&self.stats.dropped_rate, 1);
            return Ok(());
        }
        let sender = self.sender.as_ref().ok_or_else(|| self.stopped())?;
        let pending = Pending {
            quarantined_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|since| since.as_millis())
                .unwrap_or(0),
            kind: item.kind,
            reason: item.reason.to_owned(),
            source: item.source.to_owned(),
            path: item.path.display().to_string(),
            offset: item.offset,
            length: item.length,
            bytes: item.bytes.to_vec(),
        };
        let size = pending.queued_bytes() as u64;
        if self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size > self.queue_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            add(&self.stats.dropped_queue_full, 1);
            return Ok(());
        }
        match sender.try_send(Message::Entry(pending)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                add(&self.stats.dropped_queue_full, 1);
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(self.stopped()),
        }
    }

    fn sync(&self) -> Result<(), QuarantineError> {
        let sender = self.sender.as_ref().ok_or_else(|| self.stopped())?;
        let (reply, answer) = mpsc::channel();
        // Blocking send: a sync must not be dropped, and its caller may wait.
        sender
            .send(Message::Sync(reply))
            .map_err(|_| self.stopped())?;
        answer.recv().map_err(|_| self.stopped())?
    }
}

impl Drop for FileQuarantine {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued, sync and exit.
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    /// `None` after a rotation that could not open the new file; retried on the next entry.
    file: Option<File>,
    len: u64,
    max_bytes: u64,
    redactor: Redactor,
    stats: Arc<QuarantineStats>,
    queued_bytes: Arc<AtomicU64>,
    /// Written since the last sync.
    dirty: bool,
    /// The first failure since the last [`QuarantineSink::sync`], which reports it.
    failure: Option<QuarantineError>,
}

impl Writer {
    fn run(mut self, receiver: &Receiver<Message>) {
        while let Ok(message) = receiver.recv() {
            self.handle(message);
            // Group commit: everything queued meanwhile shares one sync.
            while let Ok(message) = receiver.try_recv() {
                self.handle(message);
            }
            self.sync();
        }
        self.sync();
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Entry(pending) => {
                self.queued_bytes
                    .fetch_sub(pending.queued_bytes() as u64, Ordering::Relaxed);
                if let Err(error) = self.write(&pending) {
                    add(&self.stats.write_errors, 1);
                    tracing::error!(path = %self.path.display(), %error, "quarantine entry lost");
                    self.failure.get_or_insert(error);
                }
            }
            Message::Sync(reply) => {
                self.sync();
                let _ = reply.send(self.failure.take().map_or(Ok(()), Err));
            }
        }
    }

    fn io_error(&self, source: io::Error) -> QuarantineError {
        QuarantineError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write(&mut self, pending: &Pending) -> Result<(), QuarantineError> {
        let bytes = self.redactor.redact_tokens_in_bytes(&pending.bytes);
        let reason = self
            .redactor
            .redact_tokens_in_bytes(pending.reason.as_bytes());
        let redacted = matches!(bytes, std::borrow::Cow::Owned(_));
        let entry = Entry {
            quarantined_at_ms: pending.quarantined_at_ms,
            kind: pending.kind,
            // Redaction only swaps ASCII for ASCII in a string that was UTF-8.
            reason: &String::from_utf8_lossy(&reason),
            source: &pending.source,
            path: &pending.path,
            offset: pending.offset,
            length: pending.length,
            truncated: (pending.bytes.len() as u64) < pending.length,
            redacted,
            bytes_base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        if self.len > 0 && self.len + line.len() as u64 > self.max_bytes {
            self.rotate().map_err(|error| self.io_error(error))?;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(
                private_file::open_append(&self.path, false)
                    .map_err(|error| self.io_error(error))?,
            ),
        };
        // One write per entry on an append-only file: entries never interleave.
        file.write_all(&line)
            .map_err(|error| self.io_error(error))?;
        self.len += line.len() as u64;
        self.dirty = true;
        add(&self.stats.entries_written, 1);
        add(&self.stats.bytes_written, line.len() as u64);
        if redacted {
            add(&self.stats.entries_redacted, 1);
        }
        Ok(())
    }

    /// Moves the full file to `<path>.1` (replacing the older one) and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_data()?;
        }
        self.dirty = false;
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        self.len = 0;
        add(&self.stats.rotations, 1);
        self.file = Some(private_file::open_append(&self.path, false)?);
        Ok(())
    }

    fn sync(&mut self) {
        if !self.dirty {
            return;
        }
        let Some(file) = &self.file else {
            return;
        };
        match file.sync_data() {
            Ok(()) => self.dirty = false,
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "cannot sync quarantine");
                let error = self.io_error(error);
                self.failure.get_or_insert(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const TOKEN: &str = "s.cCNrEKC1aBbog162djzX4FuB";

    fn item(bytes: &[u8]) -> QuarantineItem<'_> {
        QuarantineItem {
            kind: QuarantineKind::Rejected,
            reason: "not json",
            source: "node-1/file",
            path: Path::new("/var/log/audit.log"),
            offset: 12,
            length: bytes.len() as u64,
            bytes,
        }
    }

    fn entries(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn decoded(entry: &serde_json::Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(entry["bytes_base64"].as_str().unwrap())
            .unwrap()
    }

    #[test]
    fn appends_one_json_line_per_item_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q").join("quarantine.jsonl");
        let sink = FileQuarantine::open(&path).unwrap();
        sink.quarantine(&item(b"\xffab\n")).unwrap();
        sink.quarantine(&QuarantineItem {
            kind: QuarantineKind::Oversize,
            length: 4096,
            ..item(b"\xffab\n")
        })
        .unwrap();
        sink.sync().unwrap();
        // Synced means written: readable before the sink is dropped.
        assert_eq!(entries(&path).len(), 2);
        drop(sink);

        // Reopening appends rather than overwriting.
        let sink = FileQuarantine::open(&path).unwrap();
        sink.quarantine(&item(b"x")).unwrap();
        drop(sink);

        let entries = entries(&path);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["kind"], "rejected");
        assert_eq!(entries[0]["reason"], "not json");
        assert_eq!(entries[0]["source"], "node-1/file");
        assert_eq!(entries[0]["offset"], 12);
        assert_eq!(entries[0]["truncated"], false);
        assert_eq!(entries[0]["redacted"], false);
        assert_eq!(decoded(&entries[0]), b"\xffab\n");
        assert_eq!(entries[1]["kind"], "oversize");
        assert_eq!(entries[1]["truncated"], true);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn tokens_are_redacted_in_the_bytes_and_the_reason_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.jsonl");
        let redactor = Redactor::new(AuditHasher::new(b"collector-key"));
        let sink = FileQuarantine::open_with(QuarantineConfig::new(&path).with_redactor(redactor))
            .unwrap();
        let stats = sink.stats();
        let bytes = format!("\u{0}{{\"auth\":{{\"client_token\":\"{TOKEN}\"").into_bytes();
        let mut not_utf8 = b"\xfe\xff ".to_vec();
        not_utf8.extend_from_slice(TOKEN.as_bytes());
        let reason = format!("invalid type: string \"{TOKEN}\"");
        sink.quarantine(&QuarantineItem {
            reason: &reason,
            ..item(&bytes)
        })
        .unwrap();
        sink.quarantine(&item(&not_utf8)).unwrap();
        drop(sink);

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(TOKEN), "{text}");
        let entries = entries(&path);
        let hmac = AuditHasher::new(b"collector-key").hash(TOKEN);
        assert_eq!(entries[0]["redacted"], true);
        assert_eq!(
            entries[0]["reason"],
            format!("invalid type: string \"{hmac}\"")
        );
        assert!(String::from_utf8_lossy(&decoded(&entries[0])).contains(&hmac));
        assert_eq!(
            decoded(&entries[1]),
            [&b"\xfe\xff "[..], hmac.as_bytes()].concat()
        );
        assert_eq!(stats.snapshot().entries_redacted, 2);
    }

    #[test]
    fn without_a_redactor_tokens_are_still_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.jsonl");
        let sink = FileQuarantine::open(&path).unwrap();
        sink.quarantine(&item(TOKEN.as_bytes())).unwrap();
        drop(sink);
        let entries = entries(&path);
        let bytes = decoded(&entries[0]);
        assert!(bytes.starts_with(b"hmac-sha256:"), "{bytes:?}");
    }

    #[test]
    fn rotates_once_to_dot_one_at_the_size_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.jsonl");
        let config = QuarantineConfig {
            max_bytes: 2000,
            ..QuarantineConfig::new(&path)
        };
        let sink = FileQuarantine::open_with(config).unwrap();
        let stats = sink.stats();
        let rotated = sink.rotated_path();
        for n in 0..100u32 {
            sink.quarantine(&item(format!("line {n:04}").as_bytes()))
                .unwrap();
        }
        drop(sink);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.entries_written, 100);
        assert!(snapshot.rotations >= 2, "{snapshot:?}");
        for file in [&path, &rotated] {
            let len = std::fs::metadata(file).unwrap().len();
            assert!(len > 0 && len <= 2000, "{} is {len} bytes", file.display());
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // The newest entries are kept, in order, across the two files.
        let kept: Vec<Vec<u8>> = entries(&rotated)
            .iter()
            .chain(&entries(&path))
            .map(decoded)
            .collect();
        assert_eq!(kept.last().unwrap(), b"line 0099");
        assert!(kept.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(!dir.path().join("quarantine.jsonl.2").exists());
    }

    #[test]
    fn a_flood_beyond_the_rate_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.jsonl");
        let config = QuarantineConfig {
            max_entries_per_second: 1,
            burst_entries: 5,
            ..QuarantineConfig::new(&path)
        };
        let sink = FileQuarantine::open_with(config).unwrap();
        let stats = sink.stats();
        for _ in 0..1000 {
            sink.quarantine(&item(b"garbage")).unwrap();
        }
        sink.sync().unwrap();
        let snapshot = stats.snapshot();
        // The burst, plus at most a token or two refilled while the loop ran.
        assert!((5..=7).contains(&snapshot.entries_written), "{snapshot:?}");
        assert_eq!(snapshot.entries_written + snapshot.dropped_rate, 1000);
        assert_eq!(entries(&path).len() as u64, snapshot.entries_written);
    }

    #[test]
    fn entries_beyond_the_queue_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quarantine.jsonl");
        let config = QuarantineConfig {
            queue_bytes: 100,
            ..QuarantineConfig::new(&path)
        };
        let sink = FileQuarantine::open_with(config).unwrap();
        sink.quarantine(&item(&[b'x'; 200])).unwrap();
        sink.quarantine(&item(b"small")).unwrap();
        sink.sync().unwrap();
        let snapshot = sink.stats().snapshot();
        assert_eq!(
            (snapshot.dropped_queue_full, snapshot.entries_written),
            (1, 1)
        );
    }
}
