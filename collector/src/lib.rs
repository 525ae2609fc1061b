//! Sources: everything between a Vault audit device and the bus. A [`FileCollector`] tails one
//! file, turns each line into a record ([`LineProcessor`]) and moves its [`Checkpoint`] only
//! after the bus acknowledged; what cannot be published goes to quarantine ([`QuarantineSink`]).
//! The socket and syslog devices are received by a [`Receiver`] into a [`Spool`] (so that Vault
//! never waits for us), and a [`FileCollector`] tails the spool like any file.
//!
//! Where each part lives:
//!
//! - [`FileTailer`] reads whole lines from one growing file across truncation and rotation;
//!   [`FileIdentity`] knows a file by device, inode and a fingerprint of its head;
//! - [`is_rotated_copy`] is the one rule for which files are rotated copies of a live file, and
//!   [`expand_file_pattern`] turns a configured path or glob into the live files to tail (one
//!   [`FileCollector`] each);
//! - [`ReceiverPipeline`] is a receiver and its spool run as one unit, the same for both
//!   [`ReceiverKind`]s (they differ in framing only); [`SourceAddress::parse_for`] parses where
//!   it listens;
//! - [`AuditLineProcessor`] is the [`LineProcessor`] for Vault audit lines (over `vigil-event`);
//! - [`CollectorStats`], [`ReceiverStats`] and [`SpoolStats`] count what happens, for metrics.
//!
//! One receiver source is wired as: one shared `Arc<Checkpoint>` per data directory, a
//! [`Spool::open`], [`ReceiverPipeline::bind`], a [`FileCollector`] over
//! [`ReceiverPipeline::tailer_config`], then [`ReceiverPipeline::run`] and
//! [`FileCollector::run`] on the same shutdown token.
//!
//! The crate is Unix-only: file identity uses device and inode numbers.

#![warn(missing_docs)]

mod address;
mod audit_processor;
mod checkpoint;
mod file_collector;
pub mod identity;
mod peer_net;
mod pipeline;
mod private_file;
mod processor;
mod quarantine;
mod receiver;
mod rotation;
mod sink;
mod socket;
mod spool;
mod stats;
mod syslog;
mod tailer;

pub use address::{AddressError, ReceiverKind, SourceAddress};
pub use audit_processor::AuditLineProcessor;
pub use checkpoint::{Checkpoint, CheckpointError};
pub use file_collector::{
    CollectorConfig, CollectorError, FileCollector, DEFAULT_MAX_ENVELOPE_BYTES,
};
pub use identity::FileIdentity;
pub use peer_net::{PeerNet, PeerNetError};
pub use pipeline::ReceiverPipeline;
pub use private_file::PRIVATE_FILE_MODE;
pub use processor::{LineOrigin, LineOutcome, LineProcessor};
pub use quarantine::{
    FileQuarantine, QuarantineConfig, QuarantineError, QuarantineItem, QuarantineKind,
    QuarantineSink, QuarantineStats, QuarantineStatsSnapshot, DEFAULT_QUARANTINE_BURST_ENTRIES,
    DEFAULT_QUARANTINE_ENTRIES_PER_SECOND, DEFAULT_QUARANTINE_MAX_BYTES,
};
pub use receiver::{
    Receiver, ReceiverConfig, ReceiverError, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_PEER,
};
pub use rotation::{expand_file_pattern, is_rotated_copy, PatternError};
pub use spool::{
    Appended, FsyncPolicy, FsyncPolicyError, Spool, SpoolConfig, SpoolError, SpoolStats,
    SpoolStatsSnapshot, HEAD_KEEP_BYTES,
};
pub use stats::{CollectorStats, ReceiverStats, ReceiverStatsSnapshot, StatsSnapshot};
pub use tailer::{FileTailer, Line, OversizeLine, StartAt, TailError, TailItem, TailerConfig};
pub use tokio_util::sync::CancellationToken;
