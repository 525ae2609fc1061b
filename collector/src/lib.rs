//! Sources: file tailing with checkpoints, the socket and syslog receivers, and the spool
//! between them.
//!
//! The pieces, each in its own module:
//!
//! - [`FileTailer`] reads whole lines from one growing file and reports oversize lines and
//!   truncation;
//! - [`FileIdentity`] knows a file by device, inode and a fingerprint of its head;
//! - [`Checkpoint`] keeps, in redb, where each file resumes;
//! - [`LineProcessor`] turns a line into a record (implemented elsewhere, over `vigil-event`);
//! - [`QuarantineSink`] keeps what is not published ([`FileQuarantine`] writes JSON lines);
//! - [`FileCollector`] runs the loop and moves the checkpoint only after the bus acknowledged;
//! - [`CollectorStats`] counts what happens, for the metrics endpoint;
//! - [`SourceAddress`] parses where a receiver listens;
//! - [`Spool`] is the append-only file receivers write to and a [`FileCollector`] tails, so
//!   that a receiver never pushes back on Vault;
//! - [`SocketReceiver`] receives Vault's socket audit device (TCP, unix stream);
//! - [`SyslogReceiver`] receives Vault's syslog audit device (unix datagram, UDP, TCP).
//!
//! # Wiring a receiver (what `vigil run --socket ADDR` / `--syslog ADDR` does)
//!
//! ```text
//! checkpoint = Arc<Checkpoint>            one per data directory, shared
//! spool      = Spool::open(SpoolConfig::new(<data>/spool/<name>.spool), Some(&checkpoint))
//! receiver   = SocketReceiver::bind(ReceiverConfig::new(source, SourceAddress::parse_socket(ADDR)?),
//!                                   spool.clone(), quarantine).await?      (SyslogReceiver alike)
//! collector  = FileCollector::new(CollectorConfig::new(source, spool.tailer_config()),
//!                                 checkpoint.clone(), transport, processor, quarantine)
//!              processor: AuditLineProcessor with Origin::new(node, device, SourceKind::Socket|Syslog)
//! spawn receiver.run(token), collector.run(token), spool.run_maintenance(Some(checkpoint), token)
//! metrics: receiver.stats(), spool.stats(), collector.stats()
//! ```
//!
//! # Rotation
//!
//! A [`FileCollector`] follows one path across rename-and-create and copytruncate rotation,
//! several rotations while it is behind or down, deleted files and files that come back (see
//! [`FileTailer`]); its rotated files are found as siblings of the path (`audit.log.1`,
//! `audit.log-20261122`, not compressed). Globs are not expanded here: one [`FileCollector`]
//! per matching live file is the intended wiring (a pattern such as `*.log` matches live files
//! and not their rotated names), left to the binary.
//!
//! The crate is Unix-only: file identity uses device and inode numbers.

#![warn(missing_docs)]

mod address;
mod audit_processor;
mod checkpoint;
mod file_collector;
pub mod identity;
mod processor;
mod quarantine;
mod receiver;
mod socket;
mod spool;
mod stats;
mod syslog;
mod tailer;

pub use address::{AddressError, SourceAddress};
pub use audit_processor::AuditLineProcessor;
pub use checkpoint::{Checkpoint, CheckpointError};
pub use file_collector::{CollectorConfig, CollectorError, FileCollector};
pub use identity::FileIdentity;
pub use processor::{LineOrigin, LineOutcome, LineProcessor};
pub use quarantine::{
    FileQuarantine, QuarantineError, QuarantineItem, QuarantineKind, QuarantineSink,
};
pub use receiver::{ReceiverConfig, ReceiverError, ReceiverStats, ReceiverStatsSnapshot};
pub use socket::SocketReceiver;
pub use spool::{
    Appended, FsyncPolicy, FsyncPolicyError, Spool, SpoolConfig, SpoolError, SpoolStats,
    SpoolStatsSnapshot, HEAD_KEEP_BYTES,
};
pub use stats::{CollectorStats, StatsSnapshot};
pub use syslog::SyslogReceiver;
pub use tailer::{FileTailer, Line, OversizeLine, StartAt, TailError, TailItem, TailerConfig};
pub use tokio_util::sync::CancellationToken;
