//! Sources: file tailing with checkpoints (socket and syslog receivers and the spool come later).
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
//! - [`CollectorStats`] counts what happens, for the metrics endpoint.
//!
//! The crate is Unix-only: file identity uses device and inode numbers.

#![warn(missing_docs)]

mod audit_processor;
mod checkpoint;
mod file_collector;
pub mod identity;
mod processor;
mod quarantine;
mod stats;
mod tailer;

pub use audit_processor::AuditLineProcessor;
pub use checkpoint::{Checkpoint, CheckpointError};
pub use file_collector::{CollectorConfig, CollectorError, FileCollector};
pub use identity::FileIdentity;
pub use processor::{LineOrigin, LineOutcome, LineProcessor};
pub use quarantine::{
    FileQuarantine, QuarantineError, QuarantineItem, QuarantineKind, QuarantineSink,
};
pub use stats::{CollectorStats, StatsSnapshot};
pub use tailer::{FileTailer, Line, OversizeLine, StartAt, TailError, TailItem, TailerConfig};
pub use tokio_util::sync::CancellationToken;
