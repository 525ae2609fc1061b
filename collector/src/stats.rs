//! [`CollectorStats`]: counters the binary exposes as Prometheus metrics.
//!
//! Plain atomics with relaxed ordering: each counter is read on its own, and a scrape seeing
//! one counter slightly ahead of another is harmless.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one file collector.
#[derive(Debug, Default)]
pub struct CollectorStats {
    /// Lines read from the file (published or rejected; oversize lines excluded).
    pub lines_read: AtomicU64,
    /// Bytes read from the file, newlines included.
    pub bytes_read: AtomicU64,
    /// Records whose delivery the bus confirmed (records it refused excluded).
    pub events_published: AtomicU64,
    /// Lines the processor rejected (and quarantined).
    pub rejected: AtomicU64,
    /// Lines longer than the maximum (quarantined by their head).
    pub oversize: AtomicU64,
    /// Lines whose envelope was over [`crate::CollectorConfig::max_envelope_bytes`]
    /// (quarantined, not published).
    pub envelopes_oversize: AtomicU64,
    /// Records the bus refused for good after they were published (its receipt named them:
    /// a topic size limit under ours, a record the broker calls invalid); quarantined with
    /// the bus's reason, not counted in [`events_published`](Self::events_published).
    pub envelopes_refused: AtomicU64,
    /// Times the file was found truncated.
    pub truncations: AtomicU64,
    /// Times the path was found to name a new file (rename-and-create rotation).
    pub rotations: AtomicU64,
    /// Offset stored by the last checkpoint commit.
    pub checkpoint_offset: AtomicU64,
    /// File length minus the checkpoint offset: bytes not yet acknowledged downstream.
    pub lag_bytes: AtomicU64,
}

/// A copy of [`CollectorStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`CollectorStats::lines_read`].
    pub lines_read: u64,
    /// See [`CollectorStats::bytes_read`].
    pub bytes_read: u64,
    /// See [`CollectorStats::events_published`].
    pub events_published: u64,
    /// See [`CollectorStats::rejected`].
    pub rejected: u64,
    /// See [`CollectorStats::oversize`].
    pub oversize: u64,
    /// See [`CollectorStats::envelopes_oversize`].
    pub envelopes_oversize: u64,
    /// See [`CollectorStats::envelopes_refused`].
    pub envelopes_refused: u64,
    /// See [`CollectorStats::truncations`].
    pub truncations: u64,
    /// See [`CollectorStats::rotations`].
    pub rotations: u64,
    /// See [`CollectorStats::checkpoint_offset`].
    pub checkpoint_offset: u64,
    /// See [`CollectorStats::lag_bytes`].
    pub lag_bytes: u64,
}

impl CollectorStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            lines_read: get(&self.lines_read),
            bytes_read: get(&self.bytes_read),
            events_published: get(&self.events_published),
            rejected: get(&self.rejected),
            oversize: get(&self.oversize),
            envelopes_oversize: get(&self.envelopes_oversize),
            envelopes_refused: get(&self.envelopes_refused),
            truncations: get(&self.truncations),
            rotations: get(&self.rotations),
            checkpoint_offset: get(&self.checkpoint_offset),
            lag_bytes: get(&self.lag_bytes),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub(crate) fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Ordering::Relaxed);
    }
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
    /// Connections closed at once because their peer had
    /// [`ReceiverConfig::max_connections_per_peer`] open.
    pub connections_refused_per_peer: AtomicU64,
    /// Connections and datagrams refused because their peer is not in
    /// [`ReceiverConfig::allow`].
    pub refused_not_allowed: AtomicU64,
    /// Connections closed after [`ReceiverConfig::idle_timeout`] without input.
    pub connections_idle_closed: AtomicU64,
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
    /// See [`ReceiverStats::connections_refused_per_peer`].
    pub connections_refused_per_peer: u64,
    /// See [`ReceiverStats::refused_not_allowed`].
    pub refused_not_allowed: u64,
    /// See [`ReceiverStats::connections_idle_closed`].
    pub connections_idle_closed: u64,
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
            connections_refused_per_peer: get(&self.connections_refused_per_peer),
            refused_not_allowed: get(&self.refused_not_allowed),
            connections_idle_closed: get(&self.connections_idle_closed),
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
