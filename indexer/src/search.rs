//! Reading the index: search with cursor pagination, facets and histograms.
//!
//! [`EventSearcher`] is the read side. It can be opened on its own, read-only, by a process
//! that does not own the writer (`vigil search`, the HTTP API), and then follows the writer's
//! commits by itself; or it is the read side of an [`crate::EventIndex`], which reloads it
//! right after each commit. Every answer comes from one Tantivy searcher snapshot, so totals,
//! hits and buckets of one call agree with each other.
//!
//! One request cannot hurt the service (issue 12): the query's shape is checked before it is
//! parsed (see `query.rs`); every parameter is range-checked with checked arithmetic; a
//! histogram's bucket count is computed from the range and interval, and refused, before
//! anything is collected; facets keep a bounded number of values per segment; every search
//! gives up at its deadline; and at most [`SearchLimits::max_concurrent_searches`] run at
//! once per searcher (its clones share the slots), so that searches abandoned by an impatient
//! caller (whose threads run on until their deadline) cannot pile up: one more fails at once
//! with [`IndexError::Busy`].

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::Value as _;
use tantivy::{
    DocAddress, Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, TantivyError, Term,
};
use vigil_event::{AuditEvent, SyslogMeta};

use crate::collect::{align, Deadline, SortKey, TimeBuckets, TopHits, ValueCounts};
use crate::config::SearchLimits;
use crate::cursor;
use crate::error::{IndexError, Result};
use crate::query::QueryCompiler;
use crate::schema::{self, field_spec, Fields};

/// A search: query text, an optional time range, and a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Tantivy query language over the dotted field names; `*` or empty matches everything.
    #[serde(default)]
    pub query: String,
    /// Inclusive lower bound on `time`.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `time`.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// Hits per page, at most [`SearchLimits::max_hits`]; 0 only counts.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// The `cursor` of the previous page, to continue after it.
    #[serde(default)]
    pub cursor: Option<String>,
}

fn default_limit() -> usize {
    100
}

impl SearchRequest {
    /// The first page of up to 100 hits for `query`, over all time.
    pub fn new(query: impl Into<String>) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            from: None,
            to: None,
            limit: default_limit(),
            cursor: None,
        }
    }
}

/// One page of hits, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// How many events match the query in the time range (all pages together).
    pub total: u64,
    /// This page.
    pub hits: Vec<Hit>,
    /// Pass this back as [`SearchRequest::cursor`] for the next page; `None` on the last page.
    pub cursor: Option<String>,
}

/// One matching event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Vigil's event id.
    pub id: String,
    /// The event time, RFC 3339 in UTC with as many fractional digits as needed.
    pub time: String,
    /// `request` or `response`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `request.id`.
    pub request_id: Option<String>,
    /// `request.operation`.
    pub operation: Option<String>,
    /// `request.path`.
    pub path: Option<String>,
    /// `request.mount_point`.
    pub mount_point: Option<String>,
    /// `auth.display_name`.
    pub display_name: Option<String>,
    /// `request.remote_address`.
    pub remote_address: Option<String>,
    /// `ok`, `denied` or `error`.
    pub outcome: String,
    /// `error`.
    pub error: Option<String>,
    /// Where the event was read.
    pub origin: HitOrigin,
    /// The raw audit line as JSON (a JSON string if it somehow no longer parses).
    pub raw: serde_json::Value,
}

/// The origin of a hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitOrigin {
    /// Collector node.
    pub node: String,
    /// Audit device.
    pub device: String,
    /// `file`, `socket` or `syslog`.
    pub source: String,
    /// The syslog header the event arrived with (syslog devices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogMeta>,
}

/// The most frequent values of one field among the matching events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetResponse {
    /// The field, as asked.
    pub field: String,
    /// Matching events.
    pub total: u64,
    /// Matching events without a value for the field.
    pub missing: u64,
    /// How many distinct values the matching events have.
    pub distinct: u64,
    /// Occurrences of the values not in `buckets`.
    pub other: u64,
    /// Whether the counts are lower bounds: each index segment keeps only its most frequent
    /// values (at least 256, and 4 times the number asked for), so that the work is bounded
    /// whatever the field's cardinality; when a segment had more distinct values than that,
    /// a value's occurrences outside its segment's top may be missing from its count, and
    /// `distinct` is a lower bound. `total`, `missing` and the sum of counts and `other` stay
    /// exact.
    #[serde(default)]
    pub approximate: bool,
    /// The top values, most frequent first (ties by value).
    pub buckets: Vec<FacetBucket>,
}

/// One value and how many matching events carry it. For multi-valued fields
/// (`auth.policies`) an event counts once for each of its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetBucket {
    /// The value.
    pub value: String,
    /// How many matching events have it.
    pub count: u64,
}

/// Matching events per time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramResponse {
    /// Bucket width in milliseconds.
    pub interval_ms: u64,
    /// Matching events (the sum of the buckets).
    pub total: u64,
    /// Consecutive buckets, oldest first, empty ones included, from the start of the range
    /// (or the first match) to its end (or the last match).
    pub buckets: Vec<HistogramBucket>,
}

/// Runs one search, turning a panic inside the search engine (a Tantivy bug that some query
/// shape reaches, as the fuzzer found with `-2-2`) into an error about that query, so that
/// no query can take a worker thread, or a process running the search in line, down.
fn guarded<T>(search: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(search)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!("search engine failed on a query: {what}");
        Err(IndexError::QueryFailed)
    })
}

/// The search slots of a searcher and its clones.
#[derive(Debug)]
struct Slots {
    in_use: AtomicUsize,
    max: usize,
}

/// One taken search slot, given back when dropped.
struct Slot(Arc<Slots>);

impl Slots {
    fn take(self: &Arc<Slots>) -> Result<Slot> {
        let taken = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(Arc::clone(self))),
            Err(_) => Err(IndexError::Busy { max: self.max }),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One histogram bucket: `[start, start + interval)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramBucket {
    /// Start of the bucket, aligned to a multiple of the interval since the Unix epoch.
    pub start: DateTime<Utc>,
    /// Matching events in the bucket.
    pub count: u64,
}

/// Intervals the automatic histogram picks from, in seconds.
const AUTO_INTERVALS: &[i64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    172_800, 604_800, 2_592_000,
];
/// The automatic interval is the smallest that gives at most this many buckets.
const AUTO_TARGET_BUCKETS: i64 = 100;
const NANOS_PER_MS: i64 = 1_000_000;

/// The read side of an event index.
#[derive(Clone)]
pub struct EventSearcher {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    compiler: QueryCompiler,
    limits: SearchLimits,
    slots: Arc<Slots>,
}

impl std::fmt::Debug for EventSearcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSearcher")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl EventSearcher {
    /// Opens the index in `dir` for searching only. Never creates or modifies anything, takes
    /// no writer lock, and works while another process writes; new commits become visible
    /// shortly after they land (Tantivy watches `meta.json`).
    pub fn open_read_only(dir: &Path, limits: SearchLimits) -> Result<EventSearcher> {
        if !dir.join("meta.json").exists() {
            return Err(IndexError::NotFound(dir.to_path_buf()));
        }
        let index = Index::open_in_dir(dir)?;
        schema::check_schema(&index, dir)?;
        Self::from_index(index, limits, ReloadPolicy::OnCommitWithDelay)
    }

    pub(crate) fn from_index(
        index: Index,
        limits: SearchLimits,
        policy: ReloadPolicy,
    ) -> Result<EventSearcher> {
        schema::register_tokenizers(&index)?;
        let fields = Fields::resolve(&index.schema())?;
        let compiler = QueryCompiler::new(&index, &limits)?;
        let reader = index.reader_builder().reload_policy(policy).try_into()?;
        let slots = Arc::new(Slots {
            in_use: AtomicUsize::new(0),
            max: limits.max_concurrent_searches.max(1),
        });
        Ok(EventSearcher {
            index,
            reader,
            fields,
            compiler,
            limits,
            slots,
        })
    }

    /// Makes the latest commit visible now instead of after the reload delay.
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    /// The current Tantivy snapshot, for the writer's look-ups.
    pub(crate) fn snapshot(&self) -> Searcher {
        self.reader.searcher()
    }

    /// The limits this searcher enforces.
    pub fn limits(&self) -> &SearchLimits {
        &self.limits
    }

    /// Searches running now on this searcher and its clones (for metrics).
    pub fn searches_in_flight(&self) -> usize {
        self.slots.in_use.load(Ordering::Acquire)
    }

    /// Live documents in the current snapshot.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The payload of the last commit (see [`crate::EventIndex::commit_with_payload`]), as
    /// stored on disk now.
    pub fn last_commit_payload(&self) -> Result<Option<String>> {
        Ok(self.index.load_metas()?.payload)
    }

    /// Checks `query` without running it: `Ok` if [`search`](Self::search) would accept it.
    pub fn validate_query(&self, query: &str) -> Result<()> {
        let _slot = self.slots.take()?;
        guarded(|| self.build_query(query, None, None).map(drop))
    }

    /// Counts the events matching `query` in `[from, to)`.
    pub fn count(
        &self,
        query: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<u64> {
        let _slot = self.slots.take()?;
        guarded(|| self.count_unslotted(query, from, to))
    }

    /// [`count`](Self::count) without taking a slot: for the writer's own housekeeping
    /// (retention), which must not fail because searches fill the slots.
    pub(crate) fn count_unslotted(
        &self,
        query: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<u64> {
        let query = self.build_query(query, from, to)?;
        let searcher = self.reader.searcher();
        let deadline = Deadline::after(self.limits.query_timeout);
        // Top hits with no page is a count that honours the deadline.
        let collector = TopHits {
            limit: 0,
            before: None,
            deadline: deadline.clone(),
        };
        Ok(run(&searcher, &query, &collector, &deadline)?.total)
    }

    /// One page of events matching the request, newest first (ties by event id, descending).
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        let _slot = self.slots.take()?;
        guarded(|| {
            if request.limit > self.limits.max_hits {
                return Err(IndexError::InvalidRequest(format!(
                    "limit {} exceeds the maximum of {}",
                    request.limit, self.limits.max_hits
                )));
            }
            let before = request.cursor.as_deref().map(cursor::decode).transpose()?;
            let query = self.build_query(&request.query, request.from, request.to)?;
            let searcher = self.reader.searcher();
            let deadline = Deadline::after(self.limits.query_timeout);
            let collector = TopHits {
                limit: request.limit,
                before,
                deadline: deadline.clone(),
            };
            let fruit = run(&searcher, &query, &collector, &deadline)?;
            let hits = fruit
                .hits
                .iter()
                .map(|(key, addr)| self.hit(&searcher, *key, *addr))
                .collect::<Result<Vec<_>>>()?;
            let more = fruit.after_cursor > fruit.hits.len() as u64;
            let cursor = match fruit.hits.last() {
                Some((key, _)) if more => Some(cursor::encode(*key)),
                _ => None,
            };
            Ok(SearchResponse {
                total: fruit.total,
                hits,
                cursor,
            })
        })
    }

    /// The `n` most frequent values of `field` among the events matching `query` in
    /// `[from, to)`. Text and IP fields are counted by their exact form (`request.path` by the
    /// whole path); `time` and `raw` cannot be faceted.
    pub fn facets(
        &self,
        field: &str,
        query: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        n: usize,
    ) -> Result<FacetResponse> {
        let spec = field_spec(field).ok_or_else(|| IndexError::UnknownField(field.to_string()))?;
        let column = spec
            .exact_field()
            .ok_or_else(|| IndexError::NotFacetable(field.to_string()))?;
        if n > self.limits.max_facet_values {
            return Err(IndexError::InvalidRequest(format!(
                "{n} facet values exceed the maximum of {}",
                self.limits.max_facet_values
            )));
        }
        let _slot = self.slots.take()?;
        guarded(|| {
            let query = self.build_query(query, from, to)?;
            let searcher = self.reader.searcher();
            let deadline = Deadline::after(self.limits.query_timeout);
            let collector = ValueCounts {
                column: column.to_string(),
                keep: n.saturating_mul(FACET_KEEP_FACTOR).max(FACET_KEEP_MIN),
                deadline: deadline.clone(),
            };
            let fruit = run(&searcher, &query, &collector, &deadline)?;
            let distinct = (fruit.counts.len() as u64).max(fruit.min_distinct);
            let mut all: Vec<FacetBucket> = fruit
                .counts
                .into_iter()
                .map(|(value, count)| FacetBucket { value, count })
                .collect();
            all.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
            all.truncate(n);
            let shown: u64 = all.iter().map(|b| b.count).sum();
            Ok(FacetResponse {
                field: field.to_string(),
                total: fruit.docs,
                missing: fruit.missing,
                distinct,
                other: fruit.occurrences.saturating_sub(shown),
                approximate: fruit.truncated,
                buckets: all,
            })
        })
    }

    /// Events matching `query` in `[from, to)` per time bucket. Without `interval`, picks the
    /// smallest of 1s, 2s, 5s, …, 1h, …, 1d, 7d, 30d that gives at most 100 buckets over the
    /// range (or over the indexed data where the range is open).
    pub fn histogram(
        &self,
        query: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        interval: Option<Duration>,
    ) -> Result<HistogramResponse> {
        let _slot = self.slots.take()?;
        guarded(|| {
            let compiled = self.build_query(query, from, to)?;
            let searcher = self.reader.searcher();
            let interval = match interval {
                Some(d) => {
                    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                    if ms < 1 {
                        return Err(IndexError::InvalidRequest(
                            "histogram interval must be at least 1ms".into(),
                        ));
                    }
                    ms.saturating_mul(NANOS_PER_MS)
                }
                None => self.auto_interval(&searcher, from, to)?,
            };
            // The buckets the answer can have, from the range asked for or, where it is open, the
            // times in the index: refused before anything is collected. (`build_query` has
            // checked that `from` and `to` are in range.)
            let from_nanos = from.and_then(|t| t.timestamp_nanos_opt());
            let to_nanos = to.and_then(|t| t.timestamp_nanos_opt());
            let (lo, hi) = match (from_nanos, to_nanos) {
                (Some(lo), Some(hi)) => (Some(lo), Some(hi)),
                _ => {
                    let (min, max) = indexed_time_range(&searcher)?.unzip();
                    (from_nanos.or(min), to_nanos.or(max))
                }
            };
            if let (Some(lo), Some(hi)) = (lo, hi) {
                let buckets = bucket_count(lo, hi, interval);
                if buckets > self.limits.max_buckets as u128 {
                    return Err(IndexError::TooManyBuckets {
                        buckets,
                        max: self.limits.max_buckets,
                    });
                }
            }
            let deadline = Deadline::after(self.limits.query_timeout);
            let collector = TimeBuckets {
                interval,
                deadline: deadline.clone(),
            };
            let counts = run(&searcher, &compiled, &collector, &deadline)?;
            let interval = i128::from(interval);
            let first = from_nanos
                .map(|t| align(i128::from(t), interval))
                .or_else(|| counts.keys().next().copied());
            let last = to_nanos
                .map(|t| align(i128::from(t) - 1, interval))
                .or_else(|| counts.keys().next_back().copied());
            let mut buckets = Vec::new();
            if let (Some(first), Some(last)) = (first, last) {
                // At most what was checked above; checked again since it is cheap.
                let n = (last - first) / interval + 1;
                if n > self.limits.max_buckets as i128 {
                    return Err(IndexError::TooManyBuckets {
                        buckets: u128::try_from(n).unwrap_or(0),
                        max: self.limits.max_buckets,
                    });
                }
                let mut start = first;
                while start <= last {
                    // A bucket starting before 1677 (a time near the lower end of the range,
                    // aligned down) is shown at the earliest representable time.
                    let shown =
                        i64::try_from(start).unwrap_or(if start < 0 { i64::MIN } else { i64::MAX });
                    buckets.push(HistogramBucket {
                        start: DateTime::from_timestamp_nanos(shown),
                        count: counts.get(&start).copied().unwrap_or(0),
                    });
                    start += interval;
                }
            }
            Ok(HistogramResponse {
                interval_ms: u64::try_from(interval / i128::from(NANOS_PER_MS)).unwrap_or(u64::MAX),
                total: counts.values().sum(),
                buckets,
            })
        })
    }

    /// The automatic histogram interval in nanoseconds for the range, filling open ends with
    /// the oldest and newest indexed times.
    fn auto_interval(
        &self,
        searcher: &Searcher,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<i64> {
        let mut lo = from.and_then(|t| t.timestamp_nanos_opt());
        let mut hi = to.and_then(|t| t.timestamp_nanos_opt());
        if lo.is_none() || hi.is_none() {
            if let Some((min, max)) = indexed_time_range(searcher)? {
                lo = lo.or(Some(min));
                hi = hi.or(Some(max));
            }
        }
        let span = match (lo, hi) {
            (Some(lo), Some(hi)) => hi.saturating_sub(lo).max(0),
            _ => 0,
        };
        let secs = AUTO_INTERVALS
            .iter()
            .copied()
            .find(|s| span / (s * 1_000_000_000) < AUTO_TARGET_BUCKETS)
            .unwrap_or(AUTO_INTERVALS[AUTO_INTERVALS.len() - 1]);
        Ok(secs * 1_000_000_000)
    }

    /// The user's query restricted to `[from, to)`.
    fn build_query(
        &self,
        text: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Box<dyn Query>> {
        if text.len() > self.limits.max_query_bytes {
            return Err(IndexError::invalid_query(format!(
                "query of {} bytes exceeds the limit of {} bytes",
                text.len(),
                self.limits.max_query_bytes
            )));
        }
        let query = self.compiler.compile(text)?;
        if from.is_none() && to.is_none() {
            return Ok(query);
        }
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                return Err(IndexError::InvalidRequest(
                    "`from` must be before `to`".into(),
                ));
            }
        }
        let term = |t: DateTime<Utc>| -> Result<Term> {
            let nanos = t
                .timestamp_nanos_opt()
                .ok_or_else(|| IndexError::InvalidRequest(format!("time {t} is out of range")))?;
            // `from_field_date`, not `…_for_search`: the range runs over the fast column,
            // which keeps nanoseconds, so the bound must not be truncated to seconds.
            Ok(Term::from_field_date(
                self.fields.time,
                tantivy::DateTime::from_timestamp_nanos(nanos),
            ))
        };
        let lower = match from {
            Some(t) => std::ops::Bound::Included(term(t)?),
            None => std::ops::Bound::Unbounded,
        };
        let upper = match to {
            Some(t) => std::ops::Bound::Excluded(term(t)?),
            None => std::ops::Bound::Unbounded,
        };
        let range: Box<dyn Query> = Box::new(RangeQuery::new(lower, upper));
        Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Must, query),
            (Occur::Must, range),
        ])))
    }

    /// Rebuilds a hit from the stored fields of `addr`.
    fn hit(&self, searcher: &Searcher, key: SortKey, addr: DocAddress) -> Result<Hit> {
        let doc: TantivyDocument = searcher.doc(addr)?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let raw = text(self.fields.raw);
        let time =
            DateTime::from_timestamp_nanos(key.time).to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let optional = |field| Some(text(field)).filter(|s| !s.is_empty());
        let syslog = optional(self.fields.syslog_facility).map(|facility| SyslogMeta {
            facility: facility.parse().unwrap_or_default(),
            severity: text(self.fields.syslog_severity)
                .parse()
                .unwrap_or_default(),
            timestamp: None,
            host: optional(self.fields.syslog_host),
            tag: optional(self.fields.syslog_tag),
            pid: optional(self.fields.syslog_pid),
        });
        let origin = HitOrigin {
            node: text(self.fields.origin_node),
            device: text(self.fields.origin_device),
            source: text(self.fields.origin_source),
            syslog,
        };
        let id = text(self.fields.event_id);
        // The raw line was parsed once before it was indexed; parsing it again cannot fail
        // unless the store is corrupt, in which case the hit still shows the bytes.
        let Ok(event) = AuditEvent::parse(raw.as_bytes()) else {
            return Ok(Hit {
                id,
                time,
                kind: String::new(),
                request_id: None,
                operation: None,
                path: None,
                mount_point: None,
                display_name: None,
                remote_address: None,
                outcome: String::new(),
                error: None,
                origin,
                raw: serde_json::Value::String(raw),
            });
        };
        let entry = event.entry();
        let request = entry.request.as_ref();
        Ok(Hit {
            id,
            time,
            kind: entry.kind.as_str().to_string(),
            request_id: entry.request_id().map(str::to_string),
            operation: entry.operation().map(str::to_string),
            path: entry.path().map(str::to_string),
            mount_point: request.and_then(|r| r.mount_point.clone()),
            display_name: entry.auth.as_ref().and_then(|a| a.display_name.clone()),
            remote_address: request.and_then(|r| r.remote_address.clone()),
            outcome: entry.outcome().as_str().to_string(),
            error: entry.error.clone().filter(|e| !e.is_empty()),
            origin,
            raw: serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw)),
        })
    }
}

/// The oldest and newest time in the index's columns (deleted documents included, which only
/// widens the range), or `None` for an empty index.
fn indexed_time_range(searcher: &Searcher) -> Result<Option<(i64, i64)>> {
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for segment in searcher.segment_readers() {
        if segment.num_docs() == 0 {
            continue;
        }
        let column = segment.fast_fields().date("time")?;
        min = min.min(column.min_value().into_timestamp_nanos());
        max = max.max(column.max_value().into_timestamp_nanos());
    }
    Ok((min <= max).then_some((min, max)))
}

/// How many buckets of `interval` nanoseconds cover `[lo, hi]` (0 when `hi < lo`), without
/// overflow whatever the values.
fn bucket_count(lo: i64, hi: i64, interval: i64) -> u128 {
    let interval = i128::from(interval.max(1));
    let (first, last) = (
        align(i128::from(lo), interval),
        align(i128::from(hi), interval),
    );
    if last < first {
        return 0;
    }
    u128::try_from((last - first) / interval + 1).unwrap_or(0)
}

/// Each segment keeps at least this many of its most frequent facet values...
const FACET_KEEP_MIN: usize = 256;
/// ... and this many times the number of values asked for.
const FACET_KEEP_FACTOR: usize = 4;

/// Runs a collector, turning a deadline abort (an error from a segment that started late, or
/// documents skipped inside one) into [`IndexError::Timeout`].
fn run<C: tantivy::collector::Collector>(
    searcher: &Searcher,
    query: &dyn Query,
    collector: &C,
    deadline: &Deadline,
) -> Result<C::Fruit> {
    let result = searcher.search(query, collector);
    if deadline.expired() {
        return Err(IndexError::Timeout(deadline.limit()));
    }
    result.map_err(|e| match e {
        TantivyError::InvalidArgument(reason) => IndexError::invalid_query(reason),
        other => IndexError::Tantivy(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_beyond_the_slots_are_busy_until_one_ends() {
        let index = Index::create_in_ram(schema::build_schema());
        let limits = SearchLimits {
            max_concurrent_searches: 2,
            ..SearchLimits::default()
        };
        let searcher =
            EventSearcher::from_index(index, limits, ReloadPolicy::Manual).expect("searcher");
        let clone = searcher.clone();
        let first = searcher.slots.take().expect("first slot");
        let second = clone.slots.take().expect("second slot");
        assert_eq!(searcher.searches_in_flight(), 2);
        for result in [
            searcher.search(&SearchRequest::new("*")).map(drop),
            clone.count("*", None, None).map(drop),
            searcher.facets("type", "*", None, None, 5).map(drop),
            searcher.histogram("*", None, None, None).map(drop),
        ] {
            assert!(
                matches!(result, Err(IndexError::Busy { max: 2 })),
                "{result:?}"
            );
        }
        drop(first);
        assert_eq!(
            searcher
                .search(&SearchRequest::new("*"))
                .expect("a slot")
                .total,
            0
        );
        drop(second);
        assert_eq!(clone.searches_in_flight(), 0);
    }

    #[test]
    fn bucket_counts_do_not_overflow() {
        assert_eq!(bucket_count(0, 0, 1), 1);
        assert_eq!(bucket_count(10, 0, 1), 0);
        assert_eq!(bucket_count(i64::MIN, i64::MAX, 1), 1u128 << 64);
        // MIN aligns down to -2 * MAX: buckets start at -2M, -M, 0 and M.
        assert_eq!(bucket_count(i64::MIN, i64::MAX, i64::MAX), 4);
        assert_eq!(align(i128::from(i64::MIN) + 1, 10) % 10, 0);
    }
}
