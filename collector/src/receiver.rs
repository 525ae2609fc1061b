//! What the socket and syslog receivers share: their configuration ([`ReceiverConfig`]),
//! counters ([`ReceiverStats`]), errors ([`ReceiverError`]), binding listeners, and the way
//! they hand bad input to quarantine without ever logging its content.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::address::SourceAddress;
use crate::quarantine::{QuarantineItem, QuarantineKind, QuarantineSink};
use crate::spool::Spool;

/// How one receiver listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Source name (node and audit device), written into quarantine entries and logs.
    pub source: String,
    /// Where to listen.
    pub address: SourceAddress,
    /// Longest line, syslog frame or datagram accepted, in bytes; longer input is quarantined
    /// by its head.
    pub max_line_bytes: usize,
    /// Most connections open at once (stream sockets); more are closed at once and counted.
    pub max_connections: usize,
    /// Bytes read from a connection per system call.
    pub read_buffer_bytes: usize,
}

impl ReceiverConfig {
    /// The defaults: lines up to 1 MiB (as the file tailer), 64 connections, 64 KiB reads.
    pub fn new(source: impl Into<String>, address: SourceAddress) -> Self {
        Self {
            source: source.into(),
            address,
            max_line_bytes: 1024 * 1024,
            max_connections: 64,
            read_buffer_bytes: 64 * 1024,
        }
    }
}

/// Why a receiver could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiverError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SourceAddress,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The address is not one this receiver accepts.
    #[error("the {receiver} receiver cannot listen on {address}")]
    UnsupportedAddress {
        /// Which receiver.
        receiver: &'static str,
        /// The address.
        address: SourceAddress,
    },
    /// A path given for a unix socket holds something that is not a socket; it is left alone.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
}

/// Live counters of one receiver.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Connections accepted (stream sockets).
    pub connections_accepted: AtomicU64,
    /// Connections open now.
    pub connections_active: AtomicU64,
    /// Connections closed at once because [`ReceiverConfig::max_connections`] were open.
    pub connections_refused: AtomicU64,
    /// Bytes received.
    pub bytes_received: AtomicU64,
    /// Lines or syslog messages written to the spool.
    pub lines: AtomicU64,
    /// Lines or messages the spool dropped because it was full.
    pub spool_dropped: AtomicU64,
    /// Over-long lines, frames or datagrams (quarantined by their head).
    pub oversize: AtomicU64,
    /// Partial lines left when a connection closed (quarantined).
    pub truncated: AtomicU64,
    /// Input that could not be framed (quarantined).
    pub malformed: AtomicU64,
    /// Accept, read or quarantine errors.
    pub errors: AtomicU64,
}

/// A copy of [`ReceiverStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStatsSnapshot {
    /// See [`ReceiverStats::connections_accepted`].
    pub connections_accepted: u64,
    /// See [`ReceiverStats::connections_active`].
    pub connections_active: u64,
    /// See [`ReceiverStats::connections_refused`].
    pub connections_refused: u64,
    /// See [`ReceiverStats::bytes_received`].
    pub bytes_received: u64,
    /// See [`ReceiverStats::lines`].
    pub lines: u64,
    /// See [`ReceiverStats::spool_dropped`].
    pub spool_dropped: u64,
    /// See [`ReceiverStats::oversize`].
    pub oversize: u64,
    /// See [`ReceiverStats::truncated`].
    pub truncated: u64,
    /// See [`ReceiverStats::malformed`].
    pub malformed: u64,
    /// See [`ReceiverStats::errors`].
    pub errors: u64,
}

impl ReceiverStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> ReceiverStatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ReceiverStatsSnapshot {
            connections_accepted: get(&self.connections_accepted),
            connections_active: get(&self.connections_active),
            connections_refused: get(&self.connections_refused),
            bytes_received: get(&self.bytes_received),
            lines: get(&self.lines),
            spool_dropped: get(&self.spool_dropped),
            oversize: get(&self.oversize),
            truncated: get(&self.truncated),
            malformed: get(&self.malformed),
            errors: get(&self.errors),
        }
    }
}

pub(crate) fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

/// One piece of bad input, described for quarantine.
pub(crate) struct Bad<'a> {
    pub kind: QuarantineKind,
    pub reason: String,
    /// Offset in the connection's stream (0 for datagrams).
    pub offset: u64,
    /// Full length of the input (may exceed `bytes.len()`).
    pub length: u64,
    pub bytes: &'a [u8],
}

/// What every receiver task holds: where lines go and what to count.
#[derive(Clone)]
pub(crate) struct Sink {
    pub source: Arc<str>,
    /// The listening address as text, used as the quarantine entry's `path`.
    pub address: Arc<Path>,
    pub spool: Spool,
    pub quarantine: Arc<dyn QuarantineSink>,
    pub stats: Arc<ReceiverStats>,
}

impl Sink {
    pub fn new(
        config: &ReceiverConfig,
        spool: Spool,
        quarantine: Arc<dyn QuarantineSink>,
        stats: Arc<ReceiverStats>,
    ) -> Self {
        Self {
            source: Arc::from(config.source.as_str()),
            address: Arc::from(Path::new(&config.address.to_string())),
            spool,
            quarantine,
            stats,
        }
    }

    /// Appends whole lines to the spool and counts them; never fails the sender.
    pub fn spool_lines(&self, lines: &[&[u8]]) {
        if lines.is_empty() {
            return;
        }
        match self.spool.append_lines(lines) {
            Ok(appended) => {
                add(&self.stats.lines, appended.written as u64);
                add(&self.stats.spool_dropped, appended.dropped as u64);
            }
            Err(error) => {
                // Only a newline inside a line, which the framers rule out: a bug, counted.
                add(&self.stats.errors, 1);
                tracing::error!(source = %self.source, %error, "lines not spooled");
            }
        }
    }

    /// Counts, logs (without content) and quarantines one piece of bad input.
    pub fn reject(&self, bad: Bad<'_>, peer: &str) {
        let counter = match bad.kind {
            QuarantineKind::Oversize => &self.stats.oversize,
            QuarantineKind::Truncated => &self.stats.truncated,
            QuarantineKind::Malformed | QuarantineKind::Rejected => &self.stats.malformed,
        };
        add(counter, 1);
        tracing::warn!(
            source = %self.source,
            address = %self.address.display(),
            peer,
            kind = ?bad.kind,
            offset = bad.offset,
            length = bad.length,
            reason = %bad.reason,
            "input quarantined"
        );
        let item = QuarantineItem {
            kind: bad.kind,
            reason: &bad.reason,
            source: &self.source,
            path: &self.address,
            offset: bad.offset,
            length: bad.length,
            bytes: bad.bytes,
        };
        // Synced at once: the sender considers this input delivered, and quarantine is rare.
        let result = self
            .quarantine
            .quarantine(&item)
            .and_then(|()| self.quarantine.sync());
        if let Err(error) = result {
            add(&self.stats.errors, 1);
            tracing::error!(source = %self.source, %error, "cannot write to quarantine");
        }
    }
}

/// Removes a stale unix socket left by an earlier run, refusing to remove anything else.
pub(crate) fn remove_stale_socket(path: &Path) -> Result<(), ReceiverError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            std::fs::remove_file(path).or_else(|error| match error.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(ReceiverError::NotASocket(path.to_owned())),
            })
        }
        Ok(_) => Err(ReceiverError::NotASocket(path.to_owned())),
        Err(_) => Ok(()),
    }
}

/// Reads a stream connection until it ends, fails or `shutdown`, counting bytes and read
/// errors, and hands each chunk to `on_chunk` (the caller's framer).
pub(crate) async fn read_chunks<S>(
    stream: &mut S,
    peer: &str,
    sink: &Sink,
    buffer_bytes: usize,
    shutdown: &tokio_util::sync::CancellationToken,
    mut on_chunk: impl FnMut(&[u8]),
) where
    S: tokio::io::AsyncRead + Unpin + ?Sized,
{
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; buffer_bytes];
    loop {
        let read = tokio::select! {
            () = shutdown.cancelled() => break,
            read = stream.read(&mut buffer) => read,
        };
        let got = match read {
            Ok(0) => break,
            Ok(got) => got,
            Err(error) => {
                add(&sink.stats.errors, 1);
                tracing::warn!(source = %sink.source, peer, %error, "connection read failed");
                break;
            }
        };
        add(&sink.stats.bytes_received, got as u64);
        on_chunk(&buffer[..got]);
    }
}
