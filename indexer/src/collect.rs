//! Tantivy collectors for the three kinds of answers: the newest hits after a cursor, exact
//! value counts for facets, and time buckets for histograms.
//!
//! All three read fast columns only (never the document store) and honour a [`Deadline`].
//! Hits and histograms count exactly. Facets count exactly per segment (by term ordinal, no
//! strings), but each segment hands on only its most frequent values (a bound set by the
//! caller), so that memory and merge work stay bounded whatever the field's cardinality (an
//! `event_id` facet over millions of events); the answer says when that made it approximate. Tantivy cannot interrupt a running scorer, so the deadline is checked when a
//! segment starts (which aborts the search) and every few thousand documents inside one
//! (after which the rest of the segment's documents are skipped, cheaply).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

use crate::schema::{ID_HI, ID_LO};

/// The sort key of a document: newest first, then the larger event id first. Unique per
/// document, since event ids are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SortKey {
    pub time: i64,
    pub id: u128,
}

/// A point in time after which a search gives up, shared by all segment collectors.
#[derive(Debug, Clone)]
pub(crate) struct Deadline {
    at: Instant,
    limit: Duration,
    expired: Arc<AtomicBool>,
}

impl Deadline {
    pub(crate) fn after(limit: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
            expired: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Whether the deadline has passed; remembers it once it has.
    fn check(&self) -> bool {
        if self.expired.load(Ordering::Relaxed) {
            return true;
        }
        if Instant::now() >= self.at {
            self.expired.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub(crate) fn expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    fn check_segment(&self) -> tantivy::Result<()> {
        if self.check() {
            return Err(TantivyError::InternalError(
                "query deadline exceeded".into(),
            ));
        }
        Ok(())
    }
}

/// Checks the clock only every `EVERY` documents: `Instant::now` is cheap but not free.
const EVERY: u32 = 4096;

struct Ticker {
    deadline: Deadline,
    count: u32,
    stopped: bool,
}

impl Ticker {
    fn new(deadline: Deadline) -> Ticker {
        Ticker {
            deadline,
            count: 0,
            stopped: false,
        }
    }

    /// False once the deadline has passed: the caller skips the document.
    #[inline]
    fn go(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        self.count += 1;
        if self.count % EVERY == 0 && self.deadline.check() {
            self.stopped = true;
            return false;
        }
        true
    }
}

fn time_column(segment: &SegmentReader) -> tantivy::Result<Column<tantivy::DateTime>> {
    segment.fast_fields().date("time")
}

// ---------------------------------------------------------------------------------------------
// Top hits

/// Collects the total number of matches and the `limit` matches with the greatest
/// [`SortKey`] strictly below `before` (the cursor), greatest first.
pub(crate) struct TopHits {
    pub limit: usize,
    pub before: Option<SortKey>,
    pub deadline: Deadline,
}

/// What [`TopHits`] found.
#[derive(Debug, Default)]
pub(crate) struct TopHitsFruit {
    pub total: u64,
    /// Matches after the cursor (all of them without one).
    pub after_cursor: u64,
    /// Greatest key first.
    pub hits: Vec<(SortKey, DocAddress)>,
}

pub(crate) struct TopHitsSegment {
    segment: SegmentOrdinal,
    time: Column<tantivy::DateTime>,
    hi: Column<u64>,
    lo: Column<u64>,
    limit: usize,
    before: Option<SortKey>,
    total: u64,
    after_cursor: u64,
    // A min-heap of the best `limit` keys seen: the root is the one to evict.
    heap: BinaryHeap<Reverse<(SortKey, DocId)>>,
    ticker: Ticker,
}

impl Collector for TopHits {
    type Fruit = TopHitsFruit;
    type Child = TopHitsSegment;

    fn for_segment(
        &self,
        segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<TopHitsSegment> {
        self.deadline.check_segment()?;
        let ff = segment.fast_fields();
        Ok(TopHitsSegment {
            segment: segment_local_id,
            time: time_column(segment)?,
            hi: ff.u64(ID_HI)?,
            lo: ff.u64(ID_LO)?,
            limit: self.limit,
            before: self.before,
            total: 0,
            after_cursor: 0,
            heap: BinaryHeap::with_capacity(self.limit.min(4096) + 1),
            ticker: Ticker::new(self.deadline.clone()),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<TopHitsFruit>) -> tantivy::Result<TopHitsFruit> {
        let mut total = 0;
        let mut after_cursor = 0;
        let mut hits = Vec::new();
        for fruit in fruits {
            total += fruit.total;
            after_cursor += fruit.after_cursor;
            hits.extend(fruit.hits);
        }
        hits.sort_unstable_by_key(|h| Reverse(h.0));
        hits.truncate(self.limit);
        Ok(TopHitsFruit {
            total,
            after_cursor,
            hits,
        })
    }
}

impl SegmentCollector for TopHitsSegment {
    type Fruit = TopHitsFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if !self.ticker.go() {
            return;
        }
        self.total += 1;
        if self.limit == 0 && self.before.is_none() {
            self.after_cursor += 1;
            return;
        }
        let key = SortKey {
            time: self
                .time
                .first(doc)
                .map_or(i64::MIN, |t| t.into_timestamp_nanos()),
            id: (u128::from(self.hi.first(doc).unwrap_or(0)) << 64)
                | u128::from(self.lo.first(doc).unwrap_or(0)),
        };
        if self.before.is_some_and(|before| key >= before) {
            return;
        }
        self.after_cursor += 1;
        if self.limit == 0 {
            return;
        }
        if self.heap.len() == self.limit {
            match self.heap.peek() {
                Some(Reverse((worst, _))) if key > *worst => {
                    self.heap.pop();
                }
                _ => return,
            }
        }
        self.heap.push(Reverse((key, doc)));
    }

    fn harvest(self) -> TopHitsFruit {
        let segment = self.segment;
        let mut hits: Vec<(SortKey, DocAddress)> = self
            .heap
            .into_iter()
            .map(|Reverse((key, doc))| (key, DocAddress::new(segment, doc)))
            .collect();
        hits.sort_unstable_by_key(|h| Reverse(h.0));
        TopHitsFruit {
            total: self.total,
            after_cursor: self.after_cursor,
            hits,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Facets

/// Counts the values of one keyword column over the matching documents; each segment keeps
/// its `keep` most frequent values (ties: the smaller value first).
pub(crate) struct ValueCounts {
    pub column: String,
    pub keep: usize,
    pub deadline: Deadline,
}

/// What [`ValueCounts`] found.
#[derive(Debug, Default)]
pub(crate) struct ValueCountsFruit {
    /// Matching documents.
    pub docs: u64,
    /// Matching documents without any value.
    pub missing: u64,
    /// Occurrences of all values (a document counts once per value), kept or not.
    pub occurrences: u64,
    /// The largest number of distinct values one segment had: a lower bound on the distinct
    /// values overall.
    pub min_distinct: u64,
    /// Whether some segment had more distinct values than it kept.
    pub truncated: bool,
    /// The kept values and their counts, summed over segments.
    pub counts: HashMap<String, u64>,
}

pub(crate) struct ValueCountsSegment {
    column: Option<StrColumn>,
    keep: usize,
    counts: Vec<u64>,
    docs: u64,
    missing: u64,
    ticker: Ticker,
}

impl Collector for ValueCounts {
    type Fruit = ValueCountsFruit;
    type Child = ValueCountsSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<ValueCountsSegment> {
        self.deadline.check_segment()?;
        // A segment where no document had the field has no column at all.
        let column = segment.fast_fields().str(&self.column)?;
        let terms = column.as_ref().map_or(0, |c| c.num_terms());
        Ok(ValueCountsSegment {
            column,
            keep: self.keep,
            counts: vec![0; terms],
            docs: 0,
            missing: 0,
            ticker: Ticker::new(self.deadline.clone()),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        fruits: Vec<tantivy::Result<ValueCountsFruit>>,
    ) -> tantivy::Result<ValueCountsFruit> {
        let mut merged = ValueCountsFruit::default();
        for fruit in fruits {
            let fruit = fruit?;
            merged.docs += fruit.docs;
            merged.missing += fruit.missing;
            merged.occurrences += fruit.occurrences;
            merged.min_distinct = merged.min_distinct.max(fruit.min_distinct);
            merged.truncated |= fruit.truncated;
            for (value, count) in fruit.counts {
                *merged.counts.entry(value).or_default() += count;
            }
        }
        Ok(merged)
    }
}

impl SegmentCollector for ValueCountsSegment {
    type Fruit = tantivy::Result<ValueCountsFruit>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if !self.ticker.go() {
            return;
        }
        self.docs += 1;
        let mut any = false;
        if let Some(column) = &self.column {
            for ord in column.term_ords(doc) {
                any = true;
                if let Some(slot) = usize::try_from(ord)
                    .ok()
                    .and_then(|o| self.counts.get_mut(o))
                {
                    *slot += 1;
                }
            }
        }
        if !any {
            self.missing += 1;
        }
    }

    fn harvest(self) -> tantivy::Result<ValueCountsFruit> {
        let mut counts = HashMap::new();
        let (mut occurrences, mut distinct) = (0u64, 0u64);
        // The `keep` best (count, then smaller ordinal: ordinals follow the values' order)
        // in a min-heap whose root is the one to evict; only those become strings.
        let mut best: BinaryHeap<Reverse<(u64, Reverse<usize>)>> =
            BinaryHeap::with_capacity(self.keep.min(4096) + 1);
        for (ord, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            occurrences += count;
            distinct += 1;
            let entry = (count, Reverse(ord));
            if best.len() < self.keep {
                best.push(Reverse(entry));
            } else if best.peek().is_some_and(|Reverse(worst)| entry > *worst) {
                best.pop();
                best.push(Reverse(entry));
            }
        }
        if let Some(column) = &self.column {
            let mut value = String::new();
            for Reverse((count, Reverse(ord))) in best {
                value.clear();
                if column.ord_to_str(ord as u64, &mut value)? {
                    counts.insert(value.clone(), count);
                }
            }
        }
        Ok(ValueCountsFruit {
            docs: self.docs,
            missing: self.missing,
            occurrences,
            min_distinct: distinct,
            truncated: distinct > self.keep as u64,
            counts,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Histogram

/// Counts matching documents per time bucket of `interval` nanoseconds, buckets aligned to
/// multiples of the interval since the Unix epoch. Bucket starts are `i128`: a time near the
/// lower end of the `i64` range aligns down below it. The caller bounds how many buckets the
/// matching documents can fall into before collecting.
pub(crate) struct TimeBuckets {
    pub interval: i64,
    pub deadline: Deadline,
}

/// Bucket start (nanoseconds since the epoch) to count.
pub(crate) type TimeBucketsFruit = BTreeMap<i128, u64>;

pub(crate) struct TimeBucketsSegment {
    time: Column<tantivy::DateTime>,
    interval: i128,
    buckets: TimeBucketsFruit,
    ticker: Ticker,
}

impl Collector for TimeBuckets {
    type Fruit = TimeBucketsFruit;
    type Child = TimeBucketsSegment;

    fn for_segment(
        &self,
        _segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<TimeBucketsSegment> {
        self.deadline.check_segment()?;
        Ok(TimeBucketsSegment {
            time: time_column(segment)?,
            interval: i128::from(self.interval.max(1)),
            buckets: BTreeMap::new(),
            ticker: Ticker::new(self.deadline.clone()),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<TimeBucketsFruit>) -> tantivy::Result<TimeBucketsFruit> {
        let mut merged = BTreeMap::new();
        for fruit in fruits {
            for (start, count) in fruit {
                *merged.entry(start).or_default() += count;
            }
        }
        Ok(merged)
    }
}

impl SegmentCollector for TimeBucketsSegment {
    type Fruit = TimeBucketsFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if !self.ticker.go() {
            return;
        }
        if let Some(t) = self.time.first(doc) {
            let start = align(i128::from(t.into_timestamp_nanos()), self.interval);
            *self.buckets.entry(start).or_default() += 1;
        }
    }

    fn harvest(self) -> TimeBucketsFruit {
        self.buckets
    }
}
/// `t` aligned down to a multiple of `interval` since the epoch. In `i128`: near the ends of
/// the `i64` range the aligned value may not fit in an `i64`.
pub(crate) fn align(t: i128, interval: i128) -> i128 {
    t.div_euclid(interval) * interval
}
