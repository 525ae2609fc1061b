//! Writing the index: opening or creating the directory, adding events idempotently (and
//! telling a new event from a re-delivered one), commits (with the payload the Kafka consumer
//! keeps its offsets in), and deleting events by age (which [`crate::retention`] schedules).
//!
//! There is one writer per directory (Tantivy holds a lock file); [`EventIndex`] owns it and
//! the read side together. Every method takes `&self`: adds and deletes go through Tantivy's
//! writer concurrently, and a commit briefly excludes them, so the index can be shared behind
//! an `Arc` between the consumer that writes and the API that searches.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tantivy::directory::error::LockError;
use tantivy::query::RangeQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocSet, Index, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError, Term};

use crate::config::IndexConfig;
use crate::document::{id_key, to_document, IndexedEvent};
use crate::error::{IndexError, Result};
use crate::schema::{build_schema, check_schema, register_tokenizers, Fields};
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
    /// Events added since the previous commit, replacements included.
    pub added: u64,
    /// Of those, how many replaced a document with the same event id (a re-delivery).
    pub replaced: u64,
    /// Live documents once the commit is visible.
    pub num_docs: u64,
}

/// What [`EventIndex::add`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// No document had the event's id: the index holds one more event after the commit.
    New,
    /// A document with the same id was committed or added since the last commit; the event
    /// replaces it, and the count of events does not change.
    Replaced,
}

/// What a commit stores as its payload.
#[derive(Clone, Copy)]
enum Payload<'a> {
    New(&'a str),
    KeepLast,
}

/// An index directory opened for writing, and its searcher.
pub struct EventIndex {
    dir: PathBuf,
    fields: Fields,
    writer: RwLock<IndexWriter<TantivyDocument>>,
    searcher: EventSearcher,
    added: AtomicU64,
    replaced: AtomicU64,
    /// Id keys of the events added since the last commit: the committed snapshot cannot
    /// see them, and an id added twice in one batch is a replacement too.
    uncommitted: Mutex<HashSet<u128>>,
}

impl std::fmt::Debug for EventIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl EventIndex {
    /// Opens the index in `dir` for writing, creating the directory and the index if they do
    /// not exist. Fails with [`IndexError::Locked`] if another writer has it open.
    pub fn open(dir: &Path, config: IndexConfig) -> Result<EventIndex> {
        let threads = config.writer_threads.max(1);
        if config.writer_memory_bytes / threads < MIN_THREAD_MEMORY {
            return Err(IndexError::WriterMemoryTooSmall {
                bytes: config.writer_memory_bytes,
                threads,
                min_per_thread: MIN_THREAD_MEMORY,
            });
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
            replaced: AtomicU64::new(0),
            uncommitted: Mutex::new(HashSet::new()),
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

    fn uncommitted(&self) -> std::sync::MutexGuard<'_, HashSet<u128>> {
        // A set of ids cannot be left half-updated by a panic: still usable when poisoned.
        self.uncommitted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `event`, replacing any document with the same event id, so that a second delivery
    /// leaves one document, and says which of the two it was. Visible to searches after the
    /// next commit.
    ///
    /// An event counts as [`Added::Replaced`] when its id is in the last commit or was added
    /// since; documents deleted by [`delete_older_than`](Self::delete_older_than) count as
    /// present until the commit that removes them.
    pub fn add(&self, event: &IndexedEvent) -> Result<Added> {
        let (doc, _) = to_document(&self.fields, event);
        let term = Term::from_field_text(self.fields.event_id, event.id.as_str());
        // The shared lock keeps a commit (which clears the set and reloads the snapshot
        // together) from running between the look-up and the add.
        let writer = self.writer_shared();
        let key = id_key(event.id.as_str());
        let seen_in_batch = !self.uncommitted().insert(key);
        let outcome = (|| {
            let added = if seen_in_batch || self.committed_contains(&term)? {
                Added::Replaced
            } else {
                Added::New
            };
            // The delete applies to documents added before it, including earlier in this
            // batch; the add that follows gets a later opstamp and survives it.
            writer.delete_term(term);
            writer.add_document(doc)?;
            Ok(added)
        })();
        let added = match outcome {
            Ok(added) => added,
            Err(e) => {
                // Not added after all: a later add of the id must not count as a replacement.
                if !seen_in_batch {
                    self.uncommitted().remove(&key);
                }
                return Err(e);
            }
        };
        self.added.fetch_add(1, Ordering::Relaxed);
        if added == Added::Replaced {
            self.replaced.fetch_add(1, Ordering::Relaxed);
        }
        Ok(added)
    }

    /// Whether a live document of the last commit has the id `term`: a walk of the term's
    /// postings in each segment, which for a unique id is one entry or none.
    fn committed_contains(&self, term: &Term) -> Result<bool> {
        let snapshot = self.searcher.snapshot();
        for segment in snapshot.segment_readers() {
            let inverted = segment.inverted_index(term.field())?;
            let postings = inverted
                .read_postings(term, IndexRecordOption::Basic)
                .map_err(|source| IndexError::Io {
                    path: self.dir.clone(),
                    source,
                })?;
            let Some(mut postings) = postings else {
                continue;
            };
            let alive = segment.alive_bitset();
            let mut doc = postings.doc();
            while doc != tantivy::TERMINATED {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    return Ok(true);
                }
                doc = postings.advance();
            }
        }
        Ok(false)
    }

    /// Makes everything added or deleted so far durable and visible to searches.
    pub fn commit(&self) -> Result<CommitStamp> {
        self.commit_inner(None)
    }

    /// Like [`commit`](Self::commit), and stores `payload` with the commit, atomically: after
    /// a crash, [`last_commit_payload`](Self::last_commit_payload) names exactly what the
    /// index holds. The Kafka consumer keeps its offsets there.
    pub fn commit_with_payload(&self, payload: &str) -> Result<CommitStamp> {
        self.commit_inner(Some(Payload::New(payload)))
    }

    /// Like [`commit`](Self::commit), carrying the last commit's payload forward: for commits
    /// made on behalf of someone other than the consumer that owns the payload (retention), so
    /// that the bus positions it keeps there survive. Events the consumer added since its own
    /// last commit become durable too, under the older positions: after a crash they are
    /// delivered again and replace themselves, which is harmless and counted as replaced.
    pub fn commit_keeping_payload(&self) -> Result<CommitStamp> {
        self.commit_inner(Some(Payload::KeepLast))
    }

    fn commit_inner(&self, payload: Option<Payload<'_>>) -> Result<CommitStamp> {
        let mut writer = self.writer_exclusive();
        // Read under the exclusive lock: no other commit can land between the read and ours.
        let kept = match payload {
            Some(Payload::KeepLast) => self.last_commit_payload()?,
            _ => None,
        };
        let mut prepared = writer.prepare_commit()?;
        match (payload, kept.as_deref()) {
            (Some(Payload::New(payload)), _) | (Some(Payload::KeepLast), Some(payload)) => {
                prepared.set_payload(payload);
            }
            _ => {}
        }
        let opstamp = prepared.commit()?;
        // Still under the exclusive lock: an add must see either the batch's ids or the new
        // snapshot that holds them, never neither.
        self.searcher.reload()?;
        self.uncommitted().clear();
        let added = self.added.swap(0, Ordering::Relaxed);
        let replaced = self.replaced.swap(0, Ordering::Relaxed);
        drop(writer);
        Ok(CommitStamp {
            opstamp,
            added,
            replaced,
            num_docs: self.searcher.num_docs(),
        })
    }

    /// The payload of the last commit, if it had one.
    pub fn last_commit_payload(&self) -> Result<Option<String>> {
        self.searcher.last_commit_payload()
    }

    /// Discards everything added or deleted since the last commit.
    pub fn rollback(&self) -> Result<()> {
        let mut writer = self.writer_exclusive();
        writer.rollback()?;
        self.uncommitted().clear();
        self.added.store(0, Ordering::Relaxed);
        self.replaced.store(0, Ordering::Relaxed);
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
        let count = self.searcher.count_unslotted("*", None, Some(cutoff))?;
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

#[cfg(test)]
mod tests {
    use vigil_event::{AuditEvent, Origin, SourceKind};

    use super::*;

    fn event(id: &str) -> IndexedEvent {
        let line = format!(
            r#"{{"time":"2026-11-22T16:33:32Z","type":"request","request":{{"id":"{id}"}}}}"#
        );
        let event = AuditEvent::parse(line.as_bytes()).expect("valid line");
        IndexedEvent::new(event, Origin::new("n1", "main", SourceKind::File))
    }

    fn open() -> (tempfile::TempDir, EventIndex) {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = EventIndex::open(dir.path(), IndexConfig::default()).expect("open");
        (dir, index)
    }

    #[test]
    fn the_same_event_twice_in_one_batch_is_one_document_and_one_replacement() {
        let (_dir, index) = open();
        assert_eq!(index.add(&event("r1")).expect("add"), Added::New);
        assert_eq!(index.add(&event("r1")).expect("add"), Added::Replaced);
        let stamp = index.commit().expect("commit");
        assert_eq!((stamp.added, stamp.replaced, stamp.num_docs), (2, 1, 1));
    }

    #[test]
    fn distinct_events_replace_nothing() {
        let (_dir, index) = open();
        assert_eq!(index.add(&event("r1")).expect("add"), Added::New);
        assert_eq!(index.add(&event("r2")).expect("add"), Added::New);
        let stamp = index.commit().expect("commit");
        assert_eq!((stamp.added, stamp.replaced, stamp.num_docs), (2, 0, 2));
    }

    #[test]
    fn an_event_committed_before_counts_as_replaced_after_the_commit_too() {
        let (_dir, index) = open();
        index.add(&event("r1")).expect("add");
        index.add(&event("r2")).expect("add");
        index.commit().expect("commit");
        assert_eq!(index.add(&event("r1")).expect("add"), Added::Replaced);
        assert_eq!(index.add(&event("r3")).expect("add"), Added::New);
        let stamp = index.commit().expect("commit");
        assert_eq!((stamp.added, stamp.replaced, stamp.num_docs), (2, 1, 3));
        // And once more after a third commit: the replacement is itself committed.
        assert_eq!(index.add(&event("r1")).expect("add"), Added::Replaced);
        assert_eq!(index.commit().expect("commit").num_docs, 3);
    }

    #[test]
    fn a_rolled_back_event_is_new_again() {
        let (_dir, index) = open();
        assert_eq!(index.add(&event("r1")).expect("add"), Added::New);
        index.rollback().expect("rollback");
        assert_eq!(index.add(&event("r1")).expect("add"), Added::New);
        let stamp = index.commit().expect("commit");
        assert_eq!((stamp.added, stamp.replaced, stamp.num_docs), (1, 0, 1));
    }

    #[test]
    fn an_event_deleted_by_age_and_committed_is_new_again() {
        let (_dir, index) = open();
        index.add(&event("r1")).expect("add");
        index.commit().expect("commit");
        let cutoff = chrono::Utc::now();
        assert_eq!(index.delete_older_than(cutoff).expect("delete"), 1);
        index.commit().expect("commit");
        assert_eq!(index.num_docs(), 0);
        assert_eq!(index.add(&event("r1")).expect("add"), Added::New);
    }

    #[test]
    fn too_small_a_memory_budget_is_refused_with_the_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = IndexConfig {
            writer_memory_bytes: 1_000_000,
            writer_threads: 2,
            ..IndexConfig::default()
        };
        let err = EventIndex::open(dir.path(), config).expect_err("below the floor");
        assert!(
            matches!(
                err,
                IndexError::WriterMemoryTooSmall {
                    bytes: 1_000_000,
                    threads: 2,
                    min_per_thread: MIN_THREAD_MEMORY
                }
            ),
            "{err}"
        );
    }
}
