//! The one error type of the crate, [`IndexError`].
//!
//! Variants are split by who is at fault: the caller's query or request (the HTTP layer maps
//! those to 400), the state of the index directory (missing, locked, built with another
//! schema), or the storage underneath (I/O and Tantivy internals, a 500).

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong opening, writing or searching an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The query text does not parse, or asks for something the index cannot answer.
    #[error("invalid query: {reason}")]
    InvalidQuery {
        /// What is wrong, naming the offending part of the query.
        reason: String,
    },
    /// The query or request names a field the index does not have.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A facet was asked for a field that has no per-document values to count (e.g. `raw`).
    #[error("field `{0}` cannot be faceted")]
    NotFacetable(String),
    /// A pagination cursor that this index did not hand out.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A request parameter is out of range (limit, interval, time range).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The search ran longer than the configured limit and was abandoned.
    #[error("query exceeded the time limit of {0:?}")]
    Timeout(Duration),
    /// There is no index in the directory (read-only opens never create one).
    #[error("no index at {0}")]
    NotFound(PathBuf),
    /// Another writer holds the index directory.
    #[error("index at {0} is locked by another writer")]
    Locked(PathBuf),
    /// The directory holds an index built with a different schema.
    #[error("index at {0} was built with a different schema; rebuild it or use another directory")]
    SchemaMismatch(PathBuf),
    /// The writer's memory budget leaves a thread less than Tantivy's floor.
    #[error(
        "writer memory of {bytes} bytes for {threads} thread(s) is below the minimum of \
         {min_per_thread} bytes per thread"
    )]
    WriterMemoryTooSmall {
        /// The budget asked for, shared by the threads.
        bytes: usize,
        /// The indexing threads.
        threads: usize,
        /// Tantivy's floor per thread.
        min_per_thread: usize,
    },
    /// Creating or reading the index directory failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Any other failure inside Tantivy.
    #[error("index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

impl IndexError {
    /// Whether the error is the caller's fault (a bad query or request), as opposed to a
    /// failure of the index; the HTTP layer answers the former with 400.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            IndexError::InvalidQuery { .. }
                | IndexError::UnknownField(_)
                | IndexError::NotFacetable(_)
                | IndexError::InvalidCursor
                | IndexError::InvalidRequest(_)
        )
    }

    pub(crate) fn invalid_query(reason: impl Into<String>) -> IndexError {
        IndexError::InvalidQuery {
            reason: reason.into(),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
