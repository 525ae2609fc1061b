//! [`LineProcessor`]: what turns a raw audit line into a record for the bus.
//!
//! The collector owns reading, batching, delivery and checkpoints; what a line *means*
//! (parsing, HMAC checks, signing) belongs to the processor, implemented on top of
//! `vigil-event`. Keeping it behind a trait lets the collector be tested without it.

use std::path::Path;

use vigil_bus::Record;

use crate::identity::FileIdentity;

/// Where a line comes from.
#[derive(Debug, Clone, Copy)]
pub struct LineOrigin<'a> {
    /// The configured source name (node and audit device); the bus key of its records.
    pub source: &'a str,
    /// The tailed path.
    pub path: &'a Path,
    /// The file the line was read from.
    pub file: FileIdentity,
    /// Offset of the line's first byte in that file.
    pub offset: u64,
}

/// What a processor decided about one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// Publish this record.
    Publish(Record),
    /// Do not publish; quarantine the line and count it.
    Reject {
        /// Why, for the quarantine entry and the logs.
        reason: String,
    },
}

/// Turns raw lines into records.
///
/// Called on the collector's task for every line, in file order; it should be CPU work only.
pub trait LineProcessor: Send + Sync {
    /// Decides what to do with `line` (newline excluded).
    fn process(&self, line: &[u8], origin: &LineOrigin<'_>) -> LineOutcome;
}
