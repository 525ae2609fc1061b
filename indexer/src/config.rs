//! Tunables of the writer and of searches, with defaults fit for a small node (2 cores).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How an [`crate::EventIndex`] is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexConfig {
    /// Memory the writer may buffer before it flushes a segment, shared by its threads;
    /// each thread needs at least 15 MB (Tantivy's floor). Default 50 MB.
    pub writer_memory_bytes: usize,
    /// Indexing threads. Default: 2, or 1 on a single-core machine.
    pub writer_threads: usize,
    /// Limits applied to searches through this index.
    pub limits: SearchLimits,
}

impl Default for IndexConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        IndexConfig {
            writer_memory_bytes: 50_000_000,
            writer_threads: cores.clamp(1, 2),
            limits: SearchLimits::default(),
        }
    }
}

/// Default [`SearchLimits::max_query_depth`]: deep enough for any query a person writes, far
/// below what overflows a search thread's stack.
pub const DEFAULT_MAX_QUERY_DEPTH: usize = 32;
/// Default [`SearchLimits::max_query_clauses`].
pub const DEFAULT_MAX_QUERY_CLAUSES: usize = 1024;
/// Default [`SearchLimits::max_regex_bytes`].
pub const DEFAULT_MAX_REGEX_BYTES: usize = 256;
/// Default [`SearchLimits::max_wildcards`].
pub const DEFAULT_MAX_WILDCARDS: usize = 8;

/// Bounds on what one search may ask for, so that one request cannot take the node down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchLimits {
    /// Largest page of hits. Default 1000.
    pub max_hits: usize,
    /// Most facet values one call returns. Default 1000.
    pub max_facet_values: usize,
    /// Most histogram buckets one call returns. Default 10 000.
    pub max_buckets: usize,
    /// Longest query text in bytes. Default 16 KiB.
    pub max_query_bytes: usize,
    /// Deepest nesting of groups `( … )` and `NOT` chains in a query, checked by a flat scan
    /// of the text before anything recursive (Tantivy's grammar) runs. Default 32.
    pub max_query_depth: usize,
    /// Most terms and operators in a query (words, quoted phrases, regexes, set elements,
    /// `AND`/`OR`/`NOT`), checked with the depth. Default 1024.
    pub max_query_clauses: usize,
    /// Longest `/regex/` in bytes. Default 256.
    pub max_regex_bytes: usize,
    /// Most `*` wildcards in one value (`request.path:a*b*`). Default 8.
    pub max_wildcards: usize,
    /// Searches (searches, facets, histograms, counts) that may run at once on one
    /// [`crate::EventSearcher`] and its clones; one more fails at once with
    /// [`crate::IndexError::Busy`]. Default: the number of CPUs, at least 2.
    pub max_concurrent_searches: usize,
    /// Time after which a search is abandoned with [`crate::IndexError::Timeout`]. Checked
    /// between segments and every 4096 matching documents (Tantivy cannot interrupt a
    /// scorer), so a query may overrun it by the time one such step takes. Default 10 s.
    #[serde(with = "millis")]
    pub query_timeout: Duration,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            max_hits: 1000,
            max_facet_values: 1000,
            max_buckets: 10_000,
            max_query_bytes: 16 * 1024,
            max_query_depth: DEFAULT_MAX_QUERY_DEPTH,
            max_query_clauses: DEFAULT_MAX_QUERY_CLAUSES,
            max_regex_bytes: DEFAULT_MAX_REGEX_BYTES,
            max_wildcards: DEFAULT_MAX_WILDCARDS,
            max_concurrent_searches: std::thread::available_parallelism()
                .map_or(2, usize::from)
                .max(2),
            query_timeout: Duration::from_secs(10),
        }
    }
}

/// Serializes a duration as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
