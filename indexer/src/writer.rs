//! Writing the index: opening or creating the directory, adding events idempotently,
//! commits (with the payload the Kafka consumer keeps its offsets in), and retention.
//!
//! There is one writer per directory (Tantivy holds a lock file); [`EventIndex`] owns it and
//! the read side together. Every method takes `&self`: adds and deletes go through Tantivy's
//! writer concurrently, and a commit briefly excludes them, so the index can be shared behind
//! an `Arc` between the consumer that writes and the API that searches.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tantivy::directory::error::LockError;
use tantivy::query::RangeQuery;
use tantivy::{Index, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError, Term};

use crate::config::IndexConfig;
use crate::document::{to_document, IndexedEvent};
use crate::error::{IndexError, Result};
use crate::schema::{build_schema, register_tokenizers, Fields};
use crate::search::{
    EventSearcher, FacetResponse, HistogramResponse, SearchRequest, SearchResponse,
};

/// Tantivy's floor on the memory budget of one indexing thread.
const MIN_THREAD_MEMORY: usize = 15_000_000;

/// What a commit made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStamp {
    /// Tantivy's operation stamp of the commit; increases with every commit.
    pub opstamp: u64,
    /// Events added (including replacements) since the previous commit.
    pub added: u64,
    /// Live documents once the commit is visible.
    pub num_docs: u64,
}

/// An index directory opened for writing, and its searcher.
pub struct EventIndex {
    dir: PathBuf,
    fields: Fields,
    writer: RwLock<IndexWriter<TantivyDocument>>,
    searcher: EventSearcher,
    added: AtomicU64,
}

impl std::fmt::Debug for EventIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Fails unless `index` has exactly the schema this version builds: an index from another
/// version would answer queries wrongly rather than fail.
pub(crate) fn check_schema(index: &Index, dir: &Path) -> Result<()> {
    let on_disk = serde_json::to_value(index.schema()).ok();
    let ours = serde_json::to_value(build_schema()).ok();
    if on_disk.is_none() || on_disk != ours {
        return Err(IndexError::SchemaMismatch(dir.to_path_buf()));
    }
    Ok(())
}

impl EventIndex {
    /// Opens the index in `dir` for writing, creating the directory and the index if they do
    /// not exist. Fails with [`IndexError::Locked`] if another writer has it open.
    pub fn open(dir: &Path, config: IndexConfig) -> Result<EventIndex> {
        let threads = config.writer_threads.max(1);
        if config.writer_memory_bytes / threads < MIN_THREAD_MEMORY {
            return Err(IndexError::Config(format!(
                "writer memory of {} bytes for {threads} thread(s) is below the minimum of {} \
                 bytes per thread",
                config.writer_memory_bytes, MIN_THREAD_MEMORY
            )));
        }
        std::fs::create_dir_all(dir).map_err(|source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let index = if dir.join("meta.json").exists() {
            let index = Index::open_in_dir(dir)?;
            check_schema(&index, dir)?;
            index
        } else {
            Index::create_in_dir(dir, build_schema())?
        };
        register_tokenizers(&index)?;
        let writer = index
            .writer_with_num_threads(threads, config.writer_memory_bytes)
            .map_err(|e| match e {
                TantivyError::LockFailure(LockError::LockBusy, _) => {
                    IndexError::Locked(dir.to_path_buf())
                }
                other => IndexError::Tantivy(other),
            })?;
        let fields = Fields::resolve(&index.schema())?;
        // This process reloads right after its own commits; the policy only matters if
        // something else commits, which the lock rules out.
        let searcher = EventSearcher::from_index(index, config.limits, ReloadPolicy::Manual)?;
        Ok(EventIndex {
            dir: dir.to_path_buf(),
            fields,
            writer: RwLock::new(writer),
            searcher,
            added: AtomicU64::new(0),
        })
    }

    /// The directory of the index.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The read side, to hand to whoever searches (cheap to clone).
    pub fn searcher(&self) -> &EventSearcher {
        &self.searcher
    }

    // A panic while holding the lock cannot leave Tantivy's writer half-updated (its own
    // state is behind its own locks), so a poisoned lock is still usable.
    fn writer_shared(&self) -> RwLockReadGuard<'_, IndexWriter<TantivyDocument>> {
        self.writer.read().unwrap_or_else(|e| e.into_inner())
    }

    fn writer_exclusive(&self) -> RwLockWriteGuard<'_, IndexWriter<TantivyDocument>> {
        self.writer.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `event`, replacing any document with the same event id, so that a second delivery
    /// leaves one document. Visible to searches after the next commit.
    pub fn add(&self, event: &IndexedEvent) -> Result<()> {
        let doc = to_document(&self.fields, event)?;
        let writer = self.writer_shared();
        // The delete applies to documents added before it, including earlier in this batch;
        // the add that follows gets a later opstamp and survives it.
        writer.delete_term(Term::from_field_text(
            self.fields.event_id,
            event.id.as_str(),
        ));
        writer.add_document(doc)?;
        self.added.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes everything added or deleted so far durable and visible to searches.
    pub fn commit(&self) -> Result<CommitStamp> {
        self.commit_inner(None)
    }

    /// Like [`commit`](Self::commit), and stores `payload` with the commit, atomically: after
    /// a crash, [`last_commit_payload`](Self::last_commit_payload) names exactly what the
    /// index holds. The Kafka consumer keeps its offsets there.
    pub fn commit_with_payload(&self, payload: &str) -> Result<CommitStamp> {
        self.commit_inner(Some(payload))
    }

    fn commit_inner(&self, payload: Option<&str>) -> Result<CommitStamp> {
        let opstamp = {
            let mut writer = self.writer_exclusive();
            let mut prepared = writer.prepare_commit()?;
            if let Some(payload) = payload {
                prepared.set_payload(payload);
            }
            prepared.commit()?
        };
        let added = self.added.swap(0, Ordering::Relaxed);
        self.searcher.reload()?;
        Ok(CommitStamp {
            opstamp,
            added,
            num_docs: self.searcher.num_docs(),
        })
    }

    /// The payload of the last commit, if it had one.
    pub fn last_commit_payload(&self) -> Result<Option<String>> {
        self.searcher.last_commit_payload()
    }

    /// Discards everything added or deleted since the last commit.
    pub fn rollback(&self) -> Result<()> {
        self.writer_exclusive().rollback()?;
        self.added.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes every event older than `cutoff` (strictly). Takes effect at the next commit.
    /// Returns how many committed events it will delete (events added since the last commit
    /// are deleted too, but not counted).
    pub fn delete_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let nanos = cutoff.timestamp_nanos_opt().ok_or_else(|| {
            IndexError::InvalidRequest(format!("retention cutoff {cutoff} is out of range"))
        })?;
        let upper = Term::from_field_date(
            self.fields.time,
            tantivy::DateTime::from_timestamp_nanos(nanos),
        );
        let count = self.searcher.count("*", None, Some(cutoff))?;
        let query = RangeQuery::new(Bound::Unbounded, Bound::Excluded(upper));
        self.writer_shared().delete_query(Box::new(query))?;
        Ok(count)
    }

    /// See [`EventSearcher::search`].
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        self.searcher.search(request)
    }

    /// See [`EventSearcher::facets`].
    pub fn facets(
        &self,
        field: &str,
        query: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        n: usize,
    ) -> Result<FacetResponse> {
        self.searcher.facets(field, query, from, to, n)
    }

    /// See [`EventSearcher::histogram`].
    pub fn histogram(
        &self,
        query: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        interval: Option<std::time::Duration>,
    ) -> Result<HistogramResponse> {
        self.searcher.histogram(query, from, to, interval)
    }

    /// Live documents in the last commit.
    pub fn num_docs(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// Waits for background merges to finish and releases the writer lock. Dropping the index
    /// also releases the lock, without waiting.
    pub fn close(self) -> Result<()> {
        let writer = self.writer.into_inner().unwrap_or_else(|e| e.into_inner());
        writer.wait_merging_threads()?;
        Ok(())
    }
}
