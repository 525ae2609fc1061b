//! The one error type of the crate, [`IndexError`].
//!
//! Variants are split by who is at fault: the caller's query or request (the HTTP layer maps
//! those to 400), the state of the index directory (missing, locked, built with another
//! schema), or the storage underneath (I/O and Tantivy internals, a 500). [`IndexError::Busy`]
//! is neither: the searcher is saturated, and the caller should retry (a 429).

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong opening, writing or searching an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The search engine failed on this query (a bug it has for some query shapes); the
    /// query is refused, the service carries on.
    #[error("the search engine could not run this query; rephrase it")]
    QueryFailed,
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
    /// The query text is over one of the [`crate::SearchLimits`] on its shape (nesting, clauses,
    /// regex length, wildcards); refused before it is parsed or run.
    #[error("query too complex: {what} is {found}, over the limit of {max}")]
    QueryTooComplex {
        /// Which limit.
        what: QueryLimit,
        /// What the query has (at least: counting stops at the first excess).
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A histogram over the range and interval asked for would have more buckets than
    /// [`crate::SearchLimits::max_buckets`]; refused before anything is collected.
    #[error("{buckets} histogram buckets exceed the maximum of {max}; use a larger interval")]
    TooManyBuckets {
        /// Buckets the range and interval give.
        buckets: u128,
        /// The limit.
        max: usize,
    },
    /// All [`crate::SearchLimits::max_concurrent_searches`] search slots are taken; the
    /// caller should retry later (HTTP 429).
    #[error("too many searches running (at most {max} at once); retry later")]
    Busy {
        /// The limit.
        max: usize,
    },
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
                | IndexError::QueryTooComplex { .. }
                | IndexError::TooManyBuckets { .. }
                | IndexError::QueryFailed
        )
    }

    pub(crate) fn invalid_query(reason: impl Into<String>) -> IndexError {
        IndexError::InvalidQuery {
            reason: reason.into(),
        }
    }
}

/// The limits on a query's shape that [`IndexError::QueryTooComplex`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLimit {
    /// Nesting of groups and `NOT` chains ([`crate::SearchLimits::max_query_depth`]).
    Depth,
    /// Terms and operators ([`crate::SearchLimits::max_query_clauses`]).
    Clauses,
    /// Bytes of one `/regex/` ([`crate::SearchLimits::max_regex_bytes`]).
    RegexBytes,
    /// `*` in one value ([`crate::SearchLimits::max_wildcards`]).
    Wildcards,
}

impl std::fmt::Display for QueryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueryLimit::Depth => "the nesting depth",
            QueryLimit::Clauses => "the number of terms and operators",
            QueryLimit::RegexBytes => "the length of a regex in bytes",
            QueryLimit::Wildcards => "the number of wildcards in a value",
        })
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
